//! The open-file limit: what the server reads (and raises) at bind time
//! to derive its connection limit, and the warnings when that limit
//! cannot hold the connections asked for.

/// Says that a configured connection limit cannot be reached: the
/// descriptors run out first, and what then happens (the fd-exhaustion
/// back-off) and how to fix it.
pub(super) fn warn_over_fd_limit(limit: usize, nofile: usize, room: usize) {
    tracing::warn!(
        "max-connections {limit} is more than the open-file limit of {nofile} allows \
         (about {room} connections after the listeners and a reserve): past that, new \
         connections wait in the listen backlog until descriptors are free. Raise the \
         limit (ulimit -n, or LimitNOFILE= in a systemd unit) or lower --max-connections"
    );
}

/// Says that the open-file limit leaves no descriptor for connections once
/// the listeners, the workers' event loops and the reserve have theirs.
pub(super) fn warn_no_fd_room(nofile: usize, needed: usize) {
    tracing::warn!(
        "the open-file limit of {nofile} leaves no descriptor for connections (the \
         listeners, the workers' event loops and a reserve take about {needed}): the server \
         allows one connection at a time and may refuse even that. Raise the limit well \
         above {needed} (ulimit -n, or LimitNOFILE= in a systemd unit), or run fewer \
         workers (--threads)"
    );
}

/// The soft `RLIMIT_NOFILE`, raised to the hard limit first if `raise`.
pub(crate) fn fd_limit(raise: bool) -> usize {
    use rlimit::Resource;
    if raise && let Err(e) = rlimit::increase_nofile_limit(u64::MAX) {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    match rlimit::getrlimit(Resource::NOFILE) {
        Ok((soft, _)) => usize::try_from(soft).unwrap_or(usize::MAX),
        Err(_) => 1024,
    }
}
