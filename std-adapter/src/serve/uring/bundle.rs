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
        }
    }
}

/// The `user_data` of the check's receive: a receive of no connection, so
/// a completion that comes after the check gave up still has its buffers
/// recycled by the worker.
pub(super) fn check_user_data() -> u64 {
    super::ring::user_data(super::ring::Op::Recv, u32::MAX, 0)
}

/// The `user_data` of the cancel of the check's receive, when it gave up.
pub(super) fn check_cancel_user_data() -> u64 {
    super::ring::user_data(super::ring::Op::Cancel, u32::MAX, 0)
}

/// Whether `user_data` is the check's receive or its cancel: requests the
/// worker's count of requests in flight never included, whose completions
/// can come after the check gave up.
pub(super) fn is_check(user_data: u64) -> bool {
    user_data == check_user_data() || user_data == check_cancel_user_data()
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

/// One run of [`check`] with receives bounded by `limit`: whether a
/// receive ended by itself with bytes (at its total limit).
fn check_with(
    ring: &mut IoUring,
    bufs: &mut BufRing,
    size: usize,
    limit: Limit,
) -> Result<bool, Unsupported> {
    let failed = |e: std::io::Error| Unsupported::CheckFailed(e.to_string());
    let (mut tx, rx) = UnixStream::pair().map_err(failed)?;
    let sent: Vec<u8> = (0..3 * size + 100).map(pattern).collect();
    tx.write_all(&sent).map_err(failed)?;
    let cap = 2 * size;
    let mut got = Vec::with_capacity(sent.len());
    let mut verdict = Ok(());
    let mut armed = false;
    let mut cancelled = false;
    // A receive ended by itself with bytes in its last completion.
    let mut ended_at_cap = false;
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let done = got.len() >= sent.len() || verdict.is_err();
        if !armed && !done {
            let sqe = recv_bundle(Target::Fd(rx.as_raw_fd()), bufs.bgid(), cap as u32, limit)
                .user_data(check_user_data());
            push(ring, &sqe)?;
            armed = true;
        } else if armed && done && !cancelled {
            // Everything is back (or the check failed): end the receive.
            cancelled = true;
            push(ring, &cancel_sqe())?;
        } else if !armed && done {
            break;
        }
        let ts = Timespec::from(Duration::from_millis(100));
        match ring
            .submitter()
            .submit_with_args(1, &SubmitArgs::new().timespec(&ts))
        {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
            Err(e) => return Err(failed(e)),
        }
        let cqes: Vec<_> = ring
            .completion()
            .map(|c| (c.user_data(), c.result(), c.flags()))
            .collect();
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
            if armed && !cancelled {
                let _ = push(ring, &cancel_sqe());
                let _ = ring.submit();
            }
            return Err(Unsupported::CheckFailed(format!(
                "{} of {} bytes back after 2 s",
                got.len(),
                sent.len()
            )));
        }
    }
    verdict?;
    if got != sent {
        return Err(Unsupported::Garbled);
    }
    Ok(ended_at_cap)
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
    // SAFETY: the check's entries refer to its socket, which outlives its
    // requests (the check waits for the receive's last completion; if it
    // gives up, the cancel ends the receive before the socket's last
    // reference, the ring's own, goes).
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
mod tests {
    use std::net::{TcpListener, TcpStream};

    use super::*;

    const SIZE: usize = 4096;

    fn ring_and_bufs() -> (IoUring, BufRing) {
        let ring = super::super::ring::build().expect("ring");
        let bufs = BufRing::new(16, SIZE, 0).expect("bufs");
        bufs.register(&ring.submitter()).expect("register");
        (ring, bufs)
    }

    /// A connected TCP pair on loopback (port 0).
    fn tcp_pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let a = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (b, _) = l.accept().expect("accept");
        (a, b)
    }

    /// `len` pattern bytes and a FIN queued on the receiving side of a
    /// TCP pair: that side, and the bytes.
    fn queued_with_fin(len: usize) -> (TcpStream, Vec<u8>) {
        let (mut a, b) = tcp_pair();
        let sent: Vec<u8> = (0..len).map(pattern).collect();
        a.write_all(&sent).expect("write");
        drop(a);
        (b, sent)
    }

    /// Runs `sqe` (user data 1) until its last completion (2 s at most):
    /// the bytes each completion brought and how many buffers it took,
    /// and everything received, in order. Every buffer goes back.
    fn run(ring: &mut IoUring, bufs: &mut BufRing, sqe: Sqe) -> (Vec<(i32, usize)>, Vec<u8>) {
        push(ring, &sqe.user_data(1)).expect("push");
        let (mut shots, mut got) = (Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let ts = Timespec::from(Duration::from_millis(50));
            let _ = ring
                .submitter()
                .submit_with_args(1, &SubmitArgs::new().timespec(&ts));
            let cqes: Vec<_> = ring.completion().map(|c| (c.result(), c.flags())).collect();
            for (res, flags) in cqes {
                let took = take_filled(bufs, res, flags, &mut got);
                shots.push((res, took));
                if !cqueue::more(flags) {
                    return (shots, got);
                }
            }
            assert!(
                Instant::now() < deadline,
                "no last completion; so far {shots:?}"
            );
        }
    }

    #[test]
    fn check_receive_is_a_receive_of_no_connection_and_its_cancel_a_cancel() {
        use super::super::ring::{Op, decode, user_data};
        // A late completion of the check's receive reaches the worker's
        // receive path, which finds no connection and recycles its buffers.
        assert_eq!(decode(check_user_data()), Some((Op::Recv, u32::MAX, 0)));
        assert_eq!(
            decode(check_cancel_user_data()),
            Some((Op::Cancel, u32::MAX, 0))
        );
        assert!(is_check(check_user_data()));
        assert!(is_check(check_cancel_user_data()));
        for other in [
            user_data(Op::Recv, 0, 0),
            user_data(Op::Cancel, 0, 0),
            user_data(Op::Send, u32::MAX, 0),
        ] {
            assert!(!is_check(other), "{other:#x} is not the check's");
        }
    }

    #[test]
    fn check_bytes_differ_from_one_buffer_to_the_next_and_byte_to_byte() {
        // Buffers out of ring order, or a byte repeated, must not come back
        // equal to what was sent.
        let sent: Vec<u8> = (0..3 * SIZE + 100).map(pattern).collect();
        assert!(
            sent.windows(2).all(|w| w[0] != w[1]),
            "a byte repeats its neighbour"
        );
        let chunks: Vec<&[u8]> = sent.chunks(SIZE).collect();
        for (i, a) in chunks.iter().enumerate() {
            for b in &chunks[i + 1..] {
                assert!(a[..b.len()] != **b, "two buffers start alike");
            }
        }
    }

    #[test]
    fn limits_and_reasons_say_what_they_are() {
        assert_eq!(
            Limit::Total.to_string(),
            "per arm (the receive ends at the cap)"
        );
        assert_eq!(
            Limit::PerCompletion.to_string(),
            "per completion (the receive is paused at the cap)"
        );
        for (why, says) in [
            (Unsupported::NoBundles, "no receive bundles"),
            (Unsupported::NoCap(22), "errno 22"),
            (
                Unsupported::CapIgnored {
                    cap: 8192,
                    took: 12288,
                },
                "took 12288 bytes past its cap of 8192",
            ),
            (Unsupported::Garbled, "not in ring order"),
            (Unsupported::CheckFailed("why".into()), "could not run: why"),
        ] {
            assert!(why.to_string().contains(says), "{why:?}: {why}");
        }
    }

    #[test]
    fn check_whose_receive_fails_reports_the_errno_and_leaves_the_buffers() {
        // No buffer group registered: every receive fails at once
        // (ENOENT), with the total limit and without it.
        let mut ring = super::super::ring::build().expect("ring");
        let mut bufs = BufRing::new(16, SIZE, 0).expect("bufs");
        assert_eq!(
            check(&mut ring, &mut bufs, SIZE),
            Err(Unsupported::NoCap(libc::ENOENT))
        );
        assert_eq!(bufs.available(), 16);
    }

    #[test]
    fn check_passes_on_this_kernel_and_leaves_every_buffer_in_the_ring() {
        let (mut ring, mut bufs) = ring_and_bufs();
        assert_eq!(check(&mut ring, &mut bufs, SIZE), Ok(Limit::Total));
        assert_eq!(bufs.available(), 16);
    }

    #[test]
    fn tcp_bundle_takes_several_buffers_in_one_completion_then_the_fin() {
        let (mut ring, mut bufs) = ring_and_bufs();
        let (b, sent) = queued_with_fin(3 * SIZE + 100);
        let (shots, got) = run(
            &mut ring,
            &mut bufs,
            recv_bundle(Target::Fd(b.as_raw_fd()), 0, 64 * 1024, Limit::Total),
        );
        assert!(got == sent, "bytes differ or out of order");
        assert!(
            shots.iter().any(|&(_, took)| took > 1),
            "no completion took more than one buffer: {shots:?}"
        );
        assert_eq!(
            shots.last(),
            Some(&(0, 0)),
            "ends with the end of stream: {shots:?}"
        );
        assert_eq!(bufs.available(), 16);
    }

    #[test]
    fn check_without_the_total_limit_passes_and_sees_no_receive_end_by_itself() {
        let (mut ring, mut bufs) = ring_and_bufs();
        assert_eq!(
            check_with(&mut ring, &mut bufs, SIZE, Limit::PerCompletion),
            Ok(false)
        );
        assert_eq!(bufs.available(), 16);
    }

    #[test]
    fn tcp_bundle_capped_per_completion_reads_past_the_cap_to_the_fin() {
        let (mut ring, mut bufs) = ring_and_bufs();
        let (b, sent) = queued_with_fin(5 * SIZE + 1);
        let (shots, got) = run(
            &mut ring,
            &mut bufs,
            recv_bundle(
                Target::Fd(b.as_raw_fd()),
                0,
                2 * SIZE as u32,
                Limit::PerCompletion,
            ),
        );
        assert!(got == sent, "bytes differ or out of order");
        assert!(
            shots
                .iter()
                .all(|&(res, took)| took <= 2 && res <= 2 * SIZE as i32),
            "a completion went past the cap: {shots:?}"
        );
        assert_eq!(
            shots.last(),
            Some(&(0, 0)),
            "one receive to the FIN: {shots:?}"
        );
        assert_eq!(bufs.available(), 16);
    }

    #[test]
    fn tcp_bundle_ends_at_its_cap_and_the_next_reads_on_to_the_fin() {
        let (mut ring, mut bufs) = ring_and_bufs();
        let (b, sent) = queued_with_fin(5 * SIZE + 1);
        let cap = 2 * SIZE;
        let mut got = Vec::new();
        let mut arms = 0;
        loop {
            arms += 1;
            assert!(arms <= 4, "more receives than 5 buffers and a FIN need");
            let (shots, part) = run(
                &mut ring,
                &mut bufs,
                recv_bundle(Target::Fd(b.as_raw_fd()), 0, cap as u32, Limit::Total),
            );
            let took: usize = shots.iter().map(|&(res, _)| res.max(0) as usize).sum();
            assert!(
                took <= cap && shots.iter().all(|&(_, bufs)| bufs <= 2),
                "a receive went past its cap: {shots:?}"
            );
            got.extend_from_slice(&part);
            if shots.last() == Some(&(0, 0)) {
                break;
            }
            assert_eq!(took, cap, "a receive ended short of its cap: {shots:?}");
        }
        assert!(got == sent, "bytes differ or out of order");
        // Two receives end at the cap; the third takes the rest, under the
        // cap, and so reads on to the FIN.
        assert_eq!(
            arms, 3,
            "two receives of the cap, then the rest and the FIN"
        );
        assert_eq!(bufs.available(), 16);
    }
}
