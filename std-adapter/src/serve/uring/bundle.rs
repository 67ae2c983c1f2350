//! Bundle receives: one completion for several provided buffers
//! (`IORING_RECVSEND_BUNDLE`, Linux 6.10), at most a set number of bytes
//! per completion (the multishot receive's per-invocation length, in
//! kernels since about 6.15) and, where the kernel has it, in all: the
//! receive then ends by itself once it took that much (its total limit,
//! `optlen`, about 6.17). The check below decides, not the version.
//!
//! Why: a multishot receive without bundles posts one completion, and
//! makes one pass through TCP's receive path, per 4 KiB buffer. A bundle
//! takes what the socket holds, up to the cap, in one pass and one
//! completion (BENCHMARKS.md, "Receive bundles").
//!
//! Why the caps: without them one completion takes everything the socket
//! holds, up to the whole shared ring, and the other connections wait for
//! buffers while one session works through it. With them a connection
//! takes at most [`RX_CAP`](super::worker::RX_CAP) per arm: with the total
//! limit its receive ends there and is armed again once the session has
//! taken what came (no cancel, and no trip through poll and task work per
//! cap); with the per-completion cap alone it is paused (cancelled) there,
//! as without bundles.
//!
//! Each worker checks, on its own ring before serving, that the kernel
//! honours the cap (see [`check`]); if not, receives take one buffer per
//! completion as before.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use io_uring::squeue::Entry as Sqe;
use io_uring::types::{SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode};

use super::bufs::BufRing;
use super::ring::{Target, on_target};

/// Byte offset of `len` in the kernel's 64-byte `io_uring_sqe` (a `u32`).
const SQE_LEN_OFFSET: usize = 24;
/// Byte offset of `optlen` (a `u32`, the multishot receive's total limit).
const SQE_OPTLEN_OFFSET: usize = 44;

/// A multishot bundle receive on `fd` from buffer group `bgid` that takes
/// at most `cap` bytes per completion and, with [`Limit::Total`], `cap`
/// bytes in all (its last completion then has no `IORING_CQE_F_MORE`).
///
/// The `io-uring` crate's `RecvMultiBundle` (0.7) has neither field, so
/// they are written into the entry it builds, at their places in the
/// kernel's ABI (`len`, and `optlen` in the union after `personality`).
/// `optlen` is left zero for [`Limit::PerCompletion`]: kernels without the
/// total limit refuse a receive that sets it.
#[allow(unsafe_code)]
pub(crate) fn recv_bundle(target: Target, bgid: u16, cap: u32, limit: Limit) -> Sqe {
    const _: () = assert!(size_of::<Sqe>() == 64);
    let sqe = on_target!(target, opcode::RecvMultiBundle::new, bgid).build();
    // SAFETY: `Entry` is `repr(C)` around `io_uring_sqe`, 64 bytes of
    // plain integers and unions of integers with no padding (the kernel's
    // ABI), built from a zeroed entry: every byte is initialised, and any
    // 64 bytes are a valid entry.
    let mut raw: [u8; 64] = unsafe { std::mem::transmute(sqe) };
    raw[SQE_LEN_OFFSET..SQE_LEN_OFFSET + 4].copy_from_slice(&cap.to_ne_bytes());
    if limit == Limit::Total {
        raw[SQE_OPTLEN_OFFSET..SQE_OPTLEN_OFFSET + 4].copy_from_slice(&cap.to_ne_bytes());
    }
    // SAFETY: as above.
    unsafe { std::mem::transmute::<[u8; 64], Sqe>(raw) }
}

/// How the kernel bounds a bundle receive (see [`recv_bundle`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Limit {
    /// The cap per completion, and in all: the receive ends at the cap.
    Total,
    /// The cap per completion only: the receive runs until cancelled.
    PerCompletion,
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Limit::Total => "per arm (the receive ends at the cap)",
            Limit::PerCompletion => "per completion (the receive is paused at the cap)",
        })
    }
}

/// Why bundle receives are not used on this ring.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Unsupported {
    /// The ring does not advertise `IORING_FEAT_RECVSEND_BUNDLE` (Linux < 6.10).
    NoBundles,
    /// A multishot receive with a length failed (kernels before the
    /// per-invocation cap, about 6.15, refuse it).
    NoCap(i32),
    /// A completion took more than the cap.
    CapIgnored { cap: usize, took: usize },
    /// The bytes came back other than sent (buffers not in ring order).
    Garbled,
    /// The check itself could not run (a socket pair, a submission, no
    /// completion in time).
    CheckFailed(String),
    /// The check gave up (why) and its receive did not end even when
    /// cancelled: the kernel may still write into the ring's buffers, which
    /// must then never be freed (see [`Unsupported::receive_left`]).
    ReceiveLeft(String),
}

impl Unsupported {
    /// Whether the check's receive may still be in flight: the worker must
    /// count it among its requests, and its owner must not free the
    /// buffer ring while the ring lives.
    pub(crate) fn receive_left(&self) -> bool {
        matches!(self, Unsupported::ReceiveLeft(_))
    }
}

impl std::fmt::Display for Unsupported {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Unsupported::NoBundles => write!(f, "the kernel has no receive bundles (Linux < 6.10)"),
            Unsupported::NoCap(errno) => write!(
                f,
                "the kernel refuses a length on multishot receives (errno {errno}; kernels before about 6.15)"
            ),
            Unsupported::CapIgnored { cap, took } => {
                write!(f, "a bundle took {took} bytes past its cap of {cap}")
            }
            Unsupported::Garbled => write!(f, "a bundle's buffers were not in ring order"),
            Unsupported::CheckFailed(why) => write!(f, "the check could not run: {why}"),
            Unsupported::ReceiveLeft(why) => write!(
                f,
                "the check could not run ({why}) and its receive did not end when cancelled: \
                 its buffers stay allocated while the process runs"
            ),
        }
    }
}

/// The `user_data` of the check's receive: a receive of no connection, so
/// a completion that comes after the check (only if it said
/// [`Unsupported::ReceiveLeft`]) has its buffers recycled by the worker,
/// which then counts that receive among its requests in flight.
pub(super) fn check_user_data() -> u64 {
    super::ring::user_data(super::ring::Op::Recv, u32::MAX, 0)
}

/// The `user_data` of the cancel of the check's receive, when it gave up:
/// its completion may come after the check; the worker never counts it.
pub(super) fn check_cancel_user_data() -> u64 {
    super::ring::user_data(super::ring::Op::Cancel, u32::MAX, 0)
}

/// Checks on `ring` (not yet serving, `bufs` registered and all in the
/// ring, buffers of `size` bytes) that a bundle receive capped at two
/// buffers takes at most two buffers per completion, in ring order: three
/// and a bit buffers' worth of bytes queued on a socket pair must come back
/// whole and in order, in completions of at most the cap, from receives
/// armed one after another as each ends. First with the total limit set:
/// if a receive then ended by itself at the cap, the answer is
/// [`Limit::Total`]; if the kernel refused it, or ignored it, the check
/// runs again without it. The last receive is cancelled; every buffer is
/// back in the ring afterwards.
pub(crate) fn check(
    ring: &mut IoUring,
    bufs: &mut BufRing,
    size: usize,
) -> Result<Limit, Unsupported> {
    if !ring.params().is_feature_recvsend_bundle() {
        return Err(Unsupported::NoBundles);
    }
    match check_with(ring, bufs, size, Limit::Total) {
        Ok(true) => Ok(Limit::Total),
        Ok(false) | Err(Unsupported::NoCap(_)) => {
            check_with(ring, bufs, size, Limit::PerCompletion).map(|_| Limit::PerCompletion)
        }
        Err(e) => Err(e),
    }
}

/// How long [`check`] waits for its bytes to come back before it gives up.
const CHECK_TIME: Duration = Duration::from_secs(2);
/// How long a check that gave up waits for its receive to end.
const END_TIME: Duration = Duration::from_secs(1);

/// One run of [`check`] with receives bounded by `limit`: whether a
/// receive ended by itself with bytes (at its total limit).
fn check_with(
    ring: &mut IoUring,
    bufs: &mut BufRing,
    size: usize,
    limit: Limit,
) -> Result<bool, Unsupported> {
    check_within(ring, bufs, size, limit, CHECK_TIME)
}

/// [`check_with`], giving up once `time` has passed. Whichever way it
/// returns, its receive has ended (its last completion was seen, every
/// buffer it took is back in the ring) unless it says
/// [`Unsupported::ReceiveLeft`].
fn check_within(
    ring: &mut IoUring,
    bufs: &mut BufRing,
    size: usize,
    limit: Limit,
    time: Duration,
) -> Result<bool, Unsupported> {
    let failed = |e: std::io::Error| Unsupported::CheckFailed(e.to_string());
    let (mut tx, rx) = UnixStream::pair().map_err(failed)?;
    let sent: Vec<u8> = (0..3 * size + 100).map(pattern).collect();
    tx.write_all(&sent).map_err(failed)?;
    let cap = 2 * size;
    let mut got = Vec::with_capacity(sent.len());
    let mut armed = false;
    let mut cancelled = false;
    // A receive ended by itself with bytes in its last completion.
    let mut ended_at_cap = false;
    let deadline = Instant::now() + time;
    let mut exchange = || -> Result<(), Unsupported> {
        let mut verdict = Ok(());
        loop {
            let done = got.len() >= sent.len() || verdict.is_err();
            if !armed && !done {
                let sqe = recv_bundle(Target::Fd(rx.as_raw_fd()), bufs.bgid(), cap as u32, limit)
                    .user_data(check_user_data());
                push(ring, &sqe)?;
                armed = true;
            } else if armed && done && !cancelled {
                // Everything is back (or the check failed): end the receive.
                push(ring, &cancel_sqe())?;
                cancelled = true;
            } else if !armed && done {
                return verdict;
            }
            let (waited, cqes) = reap(ring, Duration::from_millis(100));
            waited.map_err(failed)?;
            for (ud, res, flags) in cqes {
                if ud != check_user_data() {
                    continue;
                }
                take_filled(bufs, res, flags, &mut got);
                if res < 0 && res != -libc::ECANCELED && verdict.is_ok() {
                    verdict = Err(Unsupported::NoCap(-res));
                } else if res > 0 && res as usize > cap && verdict.is_ok() {
                    verdict = Err(Unsupported::CapIgnored {
                        cap,
                        took: res as usize,
                    });
                }
                if !cqueue::more(flags) {
                    armed = false;
                    ended_at_cap |= res > 0 && !cancelled;
                }
            }
            if Instant::now() >= deadline {
                return Err(Unsupported::CheckFailed(format!(
                    "{} of {} bytes back after {time:?}",
                    got.len(),
                    sent.len()
                )));
            }
        }
    };
    let outcome = exchange();
    // The peer's end goes too: a receive not cancelled then ends at the
    // end of stream.
    drop(tx);
    if armed && !end_receive(ring, bufs, cancelled) {
        // The receive may not even be submitted yet (the enters failed):
        // then the kernel looks its descriptor up later, which must not
        // by then name another file. So it stays open for good.
        std::mem::forget(rx);
        let why = outcome.err().map(|e| e.to_string()).unwrap_or_default();
        return Err(Unsupported::ReceiveLeft(why));
    }
    outcome?;
    if got != sent {
        return Err(Unsupported::Garbled);
    }
    Ok(ended_at_cap)
}

/// Ends the check's receive when the check gave up with it armed: cancels
/// it (unless `cancelled` already) and waits, [`END_TIME`] at most, for
/// its last completion, giving back to the ring the buffers every
/// completion took. Returns whether it ended.
fn end_receive(ring: &mut IoUring, bufs: &mut BufRing, cancelled: bool) -> bool {
    if !cancelled {
        // Room in the submission queue first, if it was full.
        let _ = ring.submit();
        // If even this fails, the end of stream may still end it.
        let _ = push(ring, &cancel_sqe());
    }
    let deadline = Instant::now() + END_TIME;
    let mut late = Vec::new();
    loop {
        // A failed enter is tried again until the deadline.
        let (_, cqes) = reap(ring, Duration::from_millis(50));
        let mut ended = false;
        for (ud, res, flags) in cqes {
            if ud == check_user_data() {
                take_filled(bufs, res, flags, &mut late);
                ended |= !cqueue::more(flags);
            }
        }
        if ended {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
    }
}

/// Submits what is queued, waits up to `wait` for a completion, and takes
/// every completion there is (`user_data`, `res`, `flags`), with how the
/// enter went (running out of time, or a signal, is no failure).
fn reap(ring: &mut IoUring, wait: Duration) -> (std::io::Result<()>, Vec<(u64, i32, u32)>) {
    let ts = Timespec::from(wait);
    let waited = match ring
        .submitter()
        .submit_with_args(1, &SubmitArgs::new().timespec(&ts))
    {
        Err(e) if !matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => Err(e),
        _ => Ok(()),
    };
    let cqes = ring
        .completion()
        .map(|c| (c.user_data(), c.result(), c.flags()))
        .collect();
    (waited, cqes)
}

/// Appends what a receive completion (`res`, `flags`) brought to `into`
/// and gives its buffers back to the ring; returns how many it took.
fn take_filled(bufs: &mut BufRing, res: i32, flags: u32, into: &mut Vec<u8>) -> usize {
    let Some(first) = cqueue::buffer_select(flags) else {
        return 0;
    };
    let filled = bufs.take_completion(first, res.max(0) as usize);
    for k in 0..filled.count {
        let (bid, len) = bufs.nth(filled, k);
        into.extend_from_slice(bufs.filled(bid, len));
        bufs.recycle(bid);
    }
    bufs.publish();
    filled.count
}

fn push(ring: &mut IoUring, sqe: &Sqe) -> Result<(), Unsupported> {
    // SAFETY: the check's entries refer to its socket by descriptor, which
    // stays open until the receive ended or, if it may not have, for good
    // (a request not yet submitted looks it up only then); the buffers
    // they fill are the ring's, which outlive them (see `check_within`).
    #[allow(unsafe_code)]
    let pushed = unsafe { ring.submission().push(sqe) };
    pushed.map_err(|_| Unsupported::CheckFailed("submission queue full".into()))
}

/// A cancel of the check's receive (a completion after the check gave up
/// is handled by the worker, see [`check_user_data`]).
fn cancel_sqe() -> Sqe {
    opcode::AsyncCancel::new(check_user_data())
        .build()
        .user_data(check_cancel_user_data())
}

/// The check's byte `i`: differs between neighbouring buffers and within one.
fn pattern(i: usize) -> u8 {
    (i % 251) as u8 ^ (i / 4096) as u8
}

#[cfg(test)]
mod tests;
