//! The ring itself: setup with the best flags the kernel takes, the
//! availability probe, what each request's `user_data` encodes, and the
//! eventfd that wakes a worker.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{FromRawFd, OwnedFd};

use io_uring::{IoUring, Probe, opcode};

/// Submission queue entries per ring.
pub(crate) const SQ_ENTRIES: u32 = 4096;
/// Completion queue entries per ring (multishot receives post many per request).
pub(crate) const CQ_ENTRIES: u32 = 16384;

/// Creates a ring: `SINGLE_ISSUER | DEFER_TASKRUN` (completion work runs
/// only inside this thread's `io_uring_enter`, in batches) if the kernel
/// takes it, else `COOP_TASKRUN`, else no flags. Must be called on the
/// thread that will drive the ring.
pub(crate) fn build() -> io::Result<IoUring> {
    let mut last = io::Error::from_raw_os_error(libc::EINVAL);
    for attempt in 0..3 {
        let mut b = IoUring::builder();
        b.setup_submit_all().setup_cqsize(CQ_ENTRIES);
        match attempt {
            0 => {
                b.setup_single_issuer()
                    .setup_defer_taskrun()
                    .setup_taskrun_flag();
            }
            1 => {
                b.setup_coop_taskrun().setup_taskrun_flag();
            }
            _ => {}
        }
        match b.build(SQ_ENTRIES) {
            Ok(ring) => return Ok(ring),
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => last = e,
            Err(e) => return Err(e),
        }
    }
    Err(last)
}

/// Whether this process can run the io_uring backend; the reason if not.
///
/// The trial ring is created and dropped on a thread of its own: tearing a
/// ring down can leave task work for the thread that created it, which
/// interrupts that thread's next blocking call with a timeout (`EINTR`), and
/// the caller's thread must not see that.
pub(crate) fn probe() -> Result<(), String> {
    std::thread::Builder::new()
        .name("ricochet-probe-uring".into())
        .spawn(probe_here)
        .map_err(|e| {
            let hint = super::super::thread_limit_hint(&e);
            format!("cannot start a thread to try io_uring: {e}{hint}")
        })?
        .join()
        .unwrap_or_else(|_| Err("trying io_uring panicked".to_owned()))
}

fn probe_here() -> Result<(), String> {
    let ring = build().map_err(|e| {
        let errno = e.raw_os_error().unwrap_or(0);
        let sysctl = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled").ok();
        super::super::backend::explain_setup_error(errno, sysctl.as_deref())
    })?;
    if !ring.params().is_feature_skip_cqe_on_success() {
        // Echo sends complete without a completion (see `confirm_sends`).
        return Err(
            "the kernel's io_uring cannot skip completions (IORING_FEAT_CQE_SKIP, Linux 5.17)"
                .to_owned(),
        );
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(|e| format!("cannot ask the kernel which io_uring operations it has: {e}"))?;
    let needed = [
        ("accept", opcode::AcceptMulti::CODE),
        ("recv", opcode::RecvMulti::CODE),
        ("send", opcode::Send::CODE),
        ("recvmsg", opcode::RecvMsgMulti::CODE),
        ("sendmsg", opcode::SendMsg::CODE),
        ("async cancel", opcode::AsyncCancel::CODE),
        ("read", opcode::Read::CODE),
    ];
    for (name, code) in needed {
        if !probe.is_supported(code) {
            return Err(format!("the kernel's io_uring has no {name} operation"));
        }
    }
    too_old(&kernel_release()).map_or(Ok(()), Err)
}

/// Why a kernel of `release` cannot run the backend, if it is older than
/// 6.0, which brought multishot receive (and the provided-buffer ring). A
/// release that does not parse is let through: the probe above found the
/// operations.
fn too_old(release: &str) -> Option<String> {
    parse_release(release)
        .filter(|&version| version < (6, 0))
        .map(|_| format!("kernel {release} is older than 6.0 (multishot receive)"))
}

#[allow(unsafe_code)]
pub(crate) fn kernel_release() -> String {
    // SAFETY: `utsname` is plain data; `uname` fills it and returns 0, or
    // fails and it stays zeroed.
    let mut u: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a `utsname`.
    if unsafe { libc::uname(&mut u) } != 0 {
        return String::new();
    }
    let bytes: Vec<u8> = u
        .release
        .iter()
        .take_while(|&&c| c != 0)
        .map(|&c| c as u8)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

/// `"6.18.44-fc"` -> `(6, 18)`.
pub(crate) fn parse_release(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// Where a request finds its socket: a slot of the worker's registered
/// file table (no descriptor lookup and no reference count per request)
/// or a plain descriptor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    Fixed(u32),
    Fd(std::os::fd::RawFd),
}

/// Builds opcode `$op` (its `new`) on `$target` with the other arguments.
macro_rules! on_target {
    ($target:expr, $op:path $(, $arg:expr)* $(,)?) => {
        match $target {
            $crate::serve::uring::ring::Target::Fixed(i) => $op(io_uring::types::Fixed(i) $(, $arg)*),
            $crate::serve::uring::ring::Target::Fd(fd) => $op(io_uring::types::Fd(fd) $(, $arg)*),
        }
    };
}
pub(crate) use on_target;

/// What a completion belongs to (the top byte of its `user_data`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Op {
    /// A connection's multishot receive (`a` = slab key).
    Recv = 1,
    /// A connection's send (`a` = slab key).
    Send = 2,
    /// A listener's multishot accept (`a` = listener index).
    Accept = 3,
    /// A UDP socket's multishot recvmsg (`a` = UDP index).
    UdpRecv = 4,
    /// A datagram echo (`a` = UDP index, `b` = buffer id).
    UdpSend = 5,
    /// The waker's eventfd read.
    Wake = 6,
    /// A cancel request (its own completion carries nothing).
    Cancel = 7,
    /// A connection waits for its socket to take more (`a` = slab key).
    SendPoll = 8,
    /// The hosted epoll worker's descriptor became readable (multishot poll).
    Guest = 9,
}

/// Packs an operation and its two indices (`b` keeps 24 bits).
pub(crate) fn user_data(op: Op, a: u32, b: u32) -> u64 {
    (op as u64) << 56 | (u64::from(b) & 0xff_ffff) << 32 | u64::from(a)
}

/// Unpacks [`user_data`]; `None` for an unknown operation.
pub(crate) fn decode(ud: u64) -> Option<(Op, u32, u32)> {
    let op = match (ud >> 56) as u8 {
        1 => Op::Recv,
        2 => Op::Send,
        3 => Op::Accept,
        4 => Op::UdpRecv,
        5 => Op::UdpSend,
        6 => Op::Wake,
        7 => Op::Cancel,
        8 => Op::SendPoll,
        9 => Op::Guest,
        _ => return None,
    };
    Some((op, ud as u32, ((ud >> 32) & 0xff_ffff) as u32))
}

/// Wakes an io_uring worker: a write to the eventfd its ring reads.
#[derive(Debug)]
pub(crate) struct Waker {
    file: File,
}

impl Waker {
    /// A waker and the worker's side of its eventfd.
    pub(crate) fn new() -> io::Result<(Waker, OwnedFd)> {
        let fd = eventfd()?;
        let file = File::from(fd);
        let worker_side = OwnedFd::from(file.try_clone()?);
        Ok((Waker { file }, worker_side))
    }

    /// Makes the worker's pending eventfd read complete.
    pub(crate) fn wake(&self) {
        // A full counter (never in practice) already means "woken".
        let _ = (&self.file).write(&1u64.to_ne_bytes());
    }
}

#[allow(unsafe_code)]
fn eventfd() -> io::Result<OwnedFd> {
    // Blocking: a ring's read of a non-blocking eventfd completes at once
    // with EAGAIN instead of waiting. (A write blocks only on a full
    // counter, which a waker never reaches.)
    // SAFETY: plain system call with flags; returns a new descriptor or -1.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just created and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_data_round_trips_every_operation() {
        for op in [
            Op::Recv,
            Op::Send,
            Op::Accept,
            Op::UdpRecv,
            Op::UdpSend,
            Op::Wake,
            Op::Cancel,
            Op::SendPoll,
        ] {
            assert_eq!(
                decode(user_data(op, u32::MAX, 0xab_cdef)),
                Some((op, u32::MAX, 0xab_cdef))
            );
        }
        assert_eq!(decode(0), None);
    }

    #[test]
    fn ring_is_single_issuer_where_the_kernel_has_deferred_task_work() {
        // DEFER_TASKRUN (with SINGLE_ISSUER, which this reads back) came in
        // Linux 6.1: there the first, best set of flags must be the one taken.
        let ring = build().expect("a ring");
        let has_defer = parse_release(&kernel_release()).is_some_and(|v| v >= (6, 1));
        assert_eq!(ring.params().is_setup_single_issuer(), has_defer);
        assert_eq!(ring.params().cq_entries(), CQ_ENTRIES);
        assert_eq!(ring.params().sq_entries(), SQ_ENTRIES);
    }

    #[test]
    fn kernel_before_6_0_is_too_old_and_6_0_on_is_not() {
        let why = too_old("5.19.17-generic").expect("5.19 refused");
        assert_eq!(
            why,
            "kernel 5.19.17-generic is older than 6.0 (multishot receive)"
        );
        for ok in ["6.0.0", "6.18.44-fc-v1098", "7.1", "garbage"] {
            assert_eq!(too_old(ok), None, "{ok}");
        }
    }

    #[test]
    fn kernel_release_is_parsed_to_major_minor() {
        assert_eq!(parse_release("6.18.44-fc-v1098"), Some((6, 18)));
        assert_eq!(parse_release("5.15.0"), Some((5, 15)));
        assert_eq!(parse_release("garbage"), None);
    }
}
