//! The registered file table: each connection's socket in a slot of the
//! worker's ring, so that its sends and receives name the slot
//! (`IOSQE_FIXED_FILE`) and the kernel skips the descriptor lookup and the
//! file reference count it otherwise takes per request.
//!
//! Connection `key` uses slot `key`. The slot is filled when the
//! connection is admitted and emptied, before its descriptor is closed,
//! when it is freed: the table holds a reference of its own, so a socket
//! left in it would stay open (no FIN) until the slot is reused or the
//! ring goes. A connection whose key is past the table, or whose slot the
//! kernel refused, uses its descriptor as before.
//!
//! Only on Linux 6.13 and later: before, a file taken out of the table was
//! released only once every fixed-file request issued before the removal
//! had finished, on any slot (liburing issue 1192), and an idle
//! connection's receive can run for as long as it lives, so the sockets of
//! closed connections would stay open.

use std::os::fd::RawFd;

use io_uring::Submitter;

/// The kernel's most (`IORING_MAX_FIXED_FILES`).
const MAX_SLOTS: usize = 1 << 20;
/// The first kernel that releases each file taken out of the table on
/// its own (per-slot resource nodes).
const SINCE: (u32, u32) = (6, 13);

/// Whether the kernel named by `release` (`uname -r`) takes files out of
/// the table at once; why not if it does not.
pub(super) fn usable(release: &str) -> Result<(), String> {
    match super::ring::parse_release(release) {
        Some(v) if v >= SINCE => Ok(()),
        Some(_) => Err(format!(
            "kernel {release} is older than 6.13: a socket taken out of the table could stay open"
        )),
        None => Err(format!("kernel release {release:?} not understood")),
    }
}

/// Slots for one of `workers` workers: twice its share of
/// `max_connections` (connections do not spread evenly), at most
/// `max_connections`, the descriptor limit (the kernel refuses more) and
/// 2^20. The kernel keeps 8 bytes per slot, and a few dozen per filled one.
pub(super) fn slots(max_connections: usize, workers: usize, nofile: usize) -> u32 {
    let share = max_connections.div_ceil(workers.max(1)).saturating_mul(2);
    share.min(max_connections).min(nofile).min(MAX_SLOTS) as u32
}

/// Registers an empty table of [`slots`] slots on a kernel that is
/// [`usable`]; 0 otherwise, or if the kernel refuses it (connections then
/// use descriptors). Logs which, at debug level.
pub(super) fn register_table(
    submitter: &Submitter<'_>,
    max_connections: usize,
    workers: usize,
) -> u32 {
    if let Err(why) = usable(&super::ring::kernel_release()) {
        tracing::debug!(%why, "io_uring file table not used: requests use descriptors");
        return 0;
    }
    let slots = slots(max_connections, workers, crate::serve::fd_limit(false));
    if slots == 0 {
        return 0;
    }
    match submitter.register_files_sparse(slots) {
        Ok(()) => {
            tracing::debug!(
                slots,
                "io_uring file table registered: connections use fixed files"
            );
            slots
        }
        Err(e) => {
            tracing::debug!(error = %e, slots, "io_uring file table not used: requests use descriptors");
            0
        }
    }
}

/// Puts `fd` in slot `key`; whether the kernel took it.
pub(super) fn fill(submitter: &Submitter<'_>, slots: u32, key: usize, fd: RawFd) -> Option<u32> {
    let slot = u32::try_from(key).ok().filter(|&s| s < slots)?;
    match submitter.register_files_update(slot, &[fd]) {
        Ok(1) => Some(slot),
        _ => None,
    }
}

/// Empties `slot`, if the connection has one (the socket closes once its
/// descriptor is closed too).
pub(super) fn empty(submitter: &Submitter<'_>, slot: Option<u32>) {
    let Some(slot) = slot else {
        return;
    };
    if let Err(e) = submitter.register_files_update(slot, &[-1]) {
        tracing::error!(error = %e, slot, "cannot empty an io_uring file slot: its socket stays open until the slot is reused or the worker stops");
    }
}

#[cfg(test)]
mod tests {
    use std::io::{ErrorKind, Read, Write};
    use std::os::fd::AsRawFd;
    use std::os::unix::net::UnixStream;
    use std::time::Duration;

    use io_uring::IoUring;

    use super::*;

    /// Whether `peer` saw its other end close (EOF) within a short wait;
    /// `false` when it timed out with the other end still open.
    fn sees_eof(peer: &mut UnixStream) -> bool {
        peer.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("timeout");
        let mut b = [0u8; 8];
        match peer.read(&mut b) {
            Ok(0) => true,
            Ok(n) => panic!("unexpected {n} bytes"),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => false,
            Err(e) => panic!("read: {e}"),
        }
    }

    /// A ring with a table of 4 slots, and a socket pair to put in it.
    fn table_of_four() -> (IoUring, UnixStream, UnixStream) {
        let ring = IoUring::new(8).expect("ring");
        assert_eq!(register_table(&ring.submitter(), 4, 1), 4);
        let (ours, peer) = UnixStream::pair().expect("pair");
        (ring, ours, peer)
    }

    #[test]
    fn socket_in_a_slot_stays_open_after_its_descriptor_closes_until_the_slot_is_emptied() {
        let (ring, ours, mut peer) = table_of_four();
        let submitter = ring.submitter();
        let slot = fill(&submitter, 4, 2, ours.as_raw_fd()).expect("slot filled");
        assert_eq!(slot, 2);
        drop(ours);
        // The table's reference keeps the socket open: why a connection's
        // slot must be emptied when it is freed.
        assert!(!sees_eof(&mut peer), "closed while still in the table");
        empty(&submitter, Some(slot));
        assert!(sees_eof(&mut peer), "still open after its slot was emptied");
    }

    #[test]
    fn key_past_the_table_gets_no_slot_and_a_table_of_none_fills_nothing() {
        let (ring, ours, mut peer) = table_of_four();
        let submitter = ring.submitter();
        assert_eq!(fill(&submitter, 4, 4, ours.as_raw_fd()), None);
        assert_eq!(fill(&submitter, 0, 0, ours.as_raw_fd()), None);
        assert_eq!(fill(&submitter, 4, 3, ours.as_raw_fd()), Some(3));
        empty(&submitter, Some(3));
        // Nothing else holds it: closing the descriptor closes it.
        (&ours).write_all(b"x").expect("write");
        drop(ours);
        let mut b = [0u8; 1];
        peer.read_exact(&mut b).expect("read");
        assert!(sees_eof(&mut peer));
    }

    #[test]
    fn table_is_twice_a_workers_share_within_every_bound() {
        assert_eq!(slots(100_000, 1, 20_000), 20_000, "the descriptor limit");
        assert_eq!(
            slots(100_000, 2, 1 << 30),
            100_000,
            "no more than the server's limit"
        );
        assert_eq!(slots(100_000, 128, 1 << 30), 1_564, "twice a 128th");
        assert_eq!(
            slots(10_000_000, 1, usize::MAX),
            1 << 20,
            "the kernel's most"
        );
        assert_eq!(slots(5, 0, 100), 5);
        let ring = IoUring::new(8).expect("ring");
        let got = register_table(&ring.submitter(), usize::MAX, 1);
        assert_eq!(got as usize, crate::serve::fd_limit(false).min(MAX_SLOTS));
    }

    #[test]
    fn kernels_before_6_13_keep_descriptors() {
        assert!(usable("6.13.0").is_ok());
        assert!(usable("6.18.44-fc").is_ok());
        assert!(usable("7.0.1").is_ok());
        let why = usable("6.12.9").unwrap_err();
        assert!(why.contains("6.13"), "{why}");
        assert!(usable("5.15.0").is_err());
        assert!(usable("garbage").is_err());
    }
}
