//! One io_uring worker: a ring, its listeners, UDP sockets and connections.
//!
//! Per turn the loop:
//!
//! 1. publishes recycled receive buffers, submits everything queued and
//!    waits for at least one completion, in **one** `io_uring_enter` (with
//!    the earliest deadline as its timeout: timer heap, paused listeners,
//!    grace period; or no wait at all if work was left over);
//! 2. files every completion of the batch: accepted sockets, received
//!    buffers, send progress, datagrams;
//! 3. drives each connection that had completions once (so a batch's
//!    buffers are echoed together), then the run queue, then due timers;
//! 4. queues one send per connection for everything it has to send, and
//!    publishes its counters.
//!
//! Every connection runs through the core's `Pump`, as on epoll. Fairness:
//! a connection reads at most [`BUDGET`] bytes per drive and yields to the
//! run queue; it holds at most [`RX_CAP`] bytes of received buffers before
//! its receive is cancelled (TCP flow control then slows the peer) and
//! re-armed once the session has taken them. When the shared buffer ring
//! runs dry, receives that ended with `ENOBUFS` are re-armed in turn as
//! buffers come back.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration as StdDuration;

use io_uring::squeue::{Entry as Sqe, Flags};
use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{CompletionQueue, SubmissionQueue, Submitter, cqueue, opcode};
use ricochet_core::{Duration, Instant, Next, Pump, SessionConfig, Teardown};
use slab::Slab;

use super::super::conn::Peer;
use super::super::error::Endpoint;
use super::super::stats::{Counters, StreamKind};
use super::super::throttle::Throttle;
use super::super::timer::{Entry, Timers};
use super::super::worker::{BUDGET, TIMER_BUDGET, Throttles, log_events};
use super::super::{Phase, Shared, SpawnError, StdListener, WorkerSockets};
use super::bufs::{BufRing, TxPool};
use super::conn::{Conn, ConnIo, Io, Socket};
use super::ring::{self, Op, user_data};
use super::udp::UdpEndpoint;

/// Provided receive buffers per worker (a power of two).
const RX_BUFS: u16 = 1024;
/// Bytes per provided receive buffer.
const RX_BUF_SIZE: usize = 4096;
/// Buffer group of the stream receive buffers (UDP sockets use 1, 2...).
const STREAM_BGID: u16 = 0;
/// Received bytes a connection may hold before its receive is paused.
pub(crate) const RX_CAP: usize = 64 * 1024;
/// Buffers that must be free before a receive waiting for buffers is re-armed.
const REARM_MIN_FREE: usize = 8;
/// Spare send buffers kept per worker.
const TX_SPARE: usize = 256;
/// First pause of a listener after running out of file descriptors; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause of a listener after running out of file descriptors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// How long the worker waits for the kernel to give back cancelled requests at exit.
const EXIT_DRAIN: StdDuration = StdDuration::from_secs(2);

/// A listening socket on the ring.
#[derive(Debug)]
struct Listener {
    socket: Option<StdListener>,
    endpoint: Endpoint,
    /// A multishot accept is in flight.
    armed: bool,
    /// Not accepting until then (out of descriptors).
    paused_until: Option<Instant>,
    backoff: Duration,
    warnings: Throttle,
}

impl Listener {
    fn fd(&self) -> Option<i32> {
        self.socket.as_ref().map(|s| match s {
            StdListener::Tcp(l) => l.as_raw_fd(),
            StdListener::Unix(l) => l.as_raw_fd(),
        })
    }

    fn kind(&self) -> StreamKind {
        match self.socket {
            Some(StdListener::Unix(_)) => StreamKind::Unix,
            _ => StreamKind::Tcp,
        }
    }
}

/// Prepares one worker: its waker now, its ring on its own thread.
pub(crate) fn starter(
    sockets: WorkerSockets,
    waker_fd: OwnedFd,
    ready: std::sync::mpsc::Sender<Result<(), SpawnError>>,
) -> super::super::Starter {
    Box::new(move |shared: Arc<Shared>| {
        let mut ring = match ring::build() {
            Ok(r) => r,
            Err(e) => {
                let _ = ready.send(Err(SpawnError::EventLoop(e)));
                return Ok(());
            }
        };
        let (result, leftovers) = serve(&mut ring, sockets, waker_fd, &ready, shared);
        // The ring goes first: the buffers it used are freed after it.
        drop(ring);
        if let Some(leftovers) = leftovers {
            // Requests the kernel never gave back may still write into these.
            std::mem::forget(leftovers);
        }
        result
    })
}

/// Buffers the kernel may still use if some request never came back.
type Leftovers = (BufRing, Vec<UdpEndpoint>);

/// Sets up and runs a worker on `ring`; returns its result and, if
/// requests are still in flight, the buffers that must outlive the ring.
fn serve(
    ring: &mut io_uring::IoUring,
    sockets: WorkerSockets,
    waker_fd: OwnedFd,
    ready: &std::sync::mpsc::Sender<Result<(), SpawnError>>,
    shared: Arc<Shared>,
) -> (io::Result<()>, Option<Leftovers>) {
    let bufs = match BufRing::new(RX_BUFS, RX_BUF_SIZE, STREAM_BGID) {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(SpawnError::EventLoop(e)));
            return (Ok(()), None);
        }
    };
    let (mut submitter, sq, cq) = ring.split();
    // Optional: saves a descriptor lookup per enter.
    let _ = submitter.register_ring_fd();
    let mut udp = Vec::new();
    let setup = (|| -> io::Result<()> {
        bufs.register(&submitter)?;
        for (i, u) in sockets.udp.into_iter().enumerate() {
            let e = UdpEndpoint::new(u, i as u32, STREAM_BGID + 1 + i as u16)?;
            e.register(&submitter)?;
            udp.push(e);
        }
        Ok(())
    })();
    if let Err(e) = setup {
        let _ = ready.send(Err(SpawnError::EventLoop(e)));
        return (Ok(()), None);
    }
    let listeners = sockets
        .listeners
        .into_iter()
        .map(|(endpoint, socket)| Listener {
            socket: Some(socket),
            endpoint,
            armed: false,
            paused_until: None,
            backoff: MIN_BACKOFF,
            warnings: Throttle::new(Duration::from_secs(10)),
        })
        .collect();
    let mut worker = Worker {
        index: sockets.index,
        session_config: shared.settings.session,
        buffer_size: shared.settings.buffer_size,
        clock: shared.clock,
        shared,
        submitter,
        sq,
        cq,
        bufs,
        pool: TxPool::new(TX_SPARE),
        listeners,
        udp,
        conns: Slab::new(),
        timers: Timers::default(),
        run_queue: VecDeque::new(),
        counters: Counters::default(),
        next_generation: 0,
        throttles: Throttles::new(),
        grace_deadline: None,
        inflight: 0,
        ready: Vec::new(),
        dirty: Vec::new(),
        unconfirmed: Vec::new(),
        buf_waiters: VecDeque::new(),
        cqes: Vec::with_capacity(1024),
        waker: waker_fd,
        wake_buf: Box::new([0u8; 8]),
        wake_armed: false,
    };
    let _ = ready.send(Ok(()));
    let result = worker.run();
    worker.release_all();
    worker.publish();
    let clean = worker.drain_ring();
    let Worker { bufs, udp, .. } = worker;
    (result, (!clean).then_some((bufs, udp)))
}

/// A running io_uring worker.
struct Worker<'r> {
    index: usize,
    shared: Arc<Shared>,
    clock: crate::clock::Clock,
    session_config: SessionConfig,
    buffer_size: usize,
    submitter: Submitter<'r>,
    sq: SubmissionQueue<'r>,
    cq: CompletionQueue<'r>,
    bufs: BufRing,
    pool: TxPool,
    listeners: Vec<Listener>,
    udp: Vec<UdpEndpoint>,
    conns: Slab<Conn>,
    timers: Timers,
    run_queue: VecDeque<(usize, u32)>,
    counters: Counters,
    next_generation: u32,
    throttles: Throttles,
    grace_deadline: Option<Instant>,
    /// Requests submitted (or queued) whose last completion has not come.
    inflight: usize,
    /// Connections with completions in this batch (drive once each).
    ready: Vec<usize>,
    /// Connections with bytes to submit at the end of the turn.
    dirty: Vec<usize>,
    /// Connections whose send was submitted and is confirmed after the next enter.
    unconfirmed: Vec<usize>,
    /// Connections whose receive waits for free buffers, in turn.
    buf_waiters: VecDeque<(usize, u32)>,
    cqes: Vec<(u64, i32, u32)>,
    waker: OwnedFd,
    wake_buf: Box<[u8; 8]>,
    wake_armed: bool,
}

impl Worker<'_> {
    fn run(&mut self) -> io::Result<()> {
        let now = self.clock.now();
        for i in 0..self.listeners.len() {
            self.arm_accept(i);
        }
        for i in 0..self.udp.len() {
            self.arm_udp(i);
        }
        self.arm_wake();
        let _ = now;
        loop {
            self.enter()?;
            let now = self.clock.now();
            match self.shared.phase() {
                Phase::Running => {}
                Phase::Draining => {
                    if self.grace_deadline.is_none() {
                        self.begin_drain(now);
                    }
                }
                Phase::Abort => return Ok(()),
            }
            // Fresh head: did the kernel take every queued request?
            self.sq.sync();
            let submitted_all = self.sq.is_empty();
            self.reap(now);
            if submitted_all {
                self.confirm_sends();
            }
            self.drive_ready(now);
            self.serve_leftovers(now);
            self.fire_timers(now);
            self.flush_sends();
            self.publish();
            if let Some(deadline) = self.grace_deadline {
                if self.conns.is_empty() {
                    return Ok(());
                }
                if now >= deadline {
                    self.reset_remaining(now);
                    self.flush_sends();
                    return Ok(());
                }
            }
        }
    }

    fn publish(&self) {
        self.shared.stats.worker(self.index).publish(&self.counters);
    }

    /// Queues a request whose last completion will come; if the
    /// submission queue is full, submits first.
    fn push(&mut self, sqe: &Sqe) {
        self.inflight += 1;
        self.push_uncounted(sqe);
    }

    /// Queues a request that may complete without a completion (a send
    /// with `SKIP_SUCCESS`, resolved inside the enter that submits it).
    fn push_uncounted(&mut self, sqe: &Sqe) {
        loop {
            // SAFETY (of the request): every pointer a request carries
            // points into memory this worker owns and keeps until the
            // request's last completion (connection send buffers, provided
            // buffers, UDP headers, the wake buffer) or until the ring is
            // gone (see `drain_ring`).
            #[allow(unsafe_code)]
            // SAFETY: see above.
            let pushed = unsafe { self.sq.push(sqe) };
            if pushed.is_ok() {
                return;
            }
            self.sq.sync();
            if let Err(e) = self.submitter.submit() {
                tracing::debug!(error = %e, "io_uring submit with a full queue");
            }
            self.sq.sync();
        }
    }

    /// Submits and waits: one `io_uring_enter` per turn.
    fn enter(&mut self) -> io::Result<()> {
        self.bufs.publish();
        for u in &mut self.udp {
            u.publish();
        }
        self.sq.sync();
        let busy = !self.run_queue.is_empty() || self.rearm_possible();
        let timeout = if busy {
            Some(StdDuration::ZERO)
        } else {
            let next = self
                .listeners
                .iter()
                .filter_map(|l| l.paused_until)
                .chain(self.grace_deadline)
                .fold(self.timers.next_deadline(), |a, b| {
                    ricochet_core::time::earliest(a, Some(b))
                });
            next.map(|t| StdDuration::from(t.saturating_since(self.clock.now())))
        };
        let result = match timeout {
            Some(t) => {
                let ts = Timespec::from(t);
                let args = SubmitArgs::new().timespec(&ts);
                self.submitter.submit_with_args(1, &args)
            }
            None => self.submitter.submit_and_wait(1),
        };
        if let Err(e) = result {
            match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                _ => return Err(e),
            }
        }
        self.cq.sync();
        Ok(())
    }

    /// Whether buffers came back for a receive waiting for them.
    fn rearm_possible(&self) -> bool {
        !self.buf_waiters.is_empty() && self.bufs.available() >= REARM_MIN_FREE
    }

    /// Files every completion of the batch.
    fn reap(&mut self, now: Instant) {
        // Re-arm receives that waited for buffers, before new completions take them.
        self.grant_buffers();
        let mut cqes = std::mem::take(&mut self.cqes);
        loop {
            cqes.clear();
            cqes.extend((&mut self.cq).map(|c| (c.user_data(), c.result(), c.flags())));
            if cqes.is_empty() {
                break;
            }
            for &(ud, res, flags) in &cqes {
                self.complete(ud, res, flags, now);
            }
            self.cq.sync();
        }
        self.cqes = cqes;
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32, now: Instant) {
        let Some((op, a, b)) = ring::decode(ud) else {
            return;
        };
        let last = !cqueue::more(flags);
        if last && op != Op::Send {
            // (Sends are not counted: most post no completion.)
            self.inflight = self.inflight.saturating_sub(1);
        }
        match op {
            Op::Recv => self.on_recv(a as usize, res, flags, last),
            Op::Send => self.on_send(a as usize, res),
            Op::Accept => self.on_accept(a as usize, res, last, now),
            Op::UdpRecv => {
                let i = a as usize;
                if let Some(u) = self.udp.get_mut(i) {
                    let echo = u.on_recv(res, flags, last, now, &mut self.counters.udp);
                    if let Some(sqe) = echo {
                        self.push(&sqe);
                    }
                    if last {
                        self.arm_udp(i);
                    }
                }
            }
            Op::UdpSend => {
                if let Some(u) = self.udp.get_mut(a as usize) {
                    u.on_sent(b as u16, res, &mut self.counters.udp);
                }
                // A receive that ran out of buffers resumes now that one is back.
                self.arm_udp(a as usize);
            }
            Op::SendPoll => self.on_send_poll(a as usize),
            Op::Wake => {
                self.wake_armed = false;
                self.arm_wake();
            }
            Op::Cancel => {}
        }
    }

    fn on_recv(&mut self, key: usize, res: i32, flags: u32, last: bool) {
        let Some(conn) = self.conns.get_mut(key) else {
            // Cannot happen (a slot is freed only with nothing in flight);
            // a buffer must still go back.
            if let Some(bid) = cqueue::buffer_select(flags) {
                self.bufs.taken();
                self.bufs.recycle(bid);
            }
            return;
        };
        if last {
            conn.io.recv_armed = false;
            conn.io.recv_cancelling = false;
        }
        if let Some(bid) = cqueue::buffer_select(flags) {
            self.bufs.taken();
            if res > 0 && conn.releasing.is_none() && !conn.io.rx_done() {
                conn.io.received(bid, res as usize);
            } else {
                self.bufs.recycle(bid);
            }
        }
        if conn.releasing.is_some() {
            self.try_free(key);
            return;
        }
        match res {
            r if r > 0 => conn.pump.set_readable(),
            0 => {
                conn.io.received_eof();
                conn.pump.set_read_closed();
            }
            r if r == -libc::ENOBUFS => {
                if !conn.io.buf_waiting {
                    conn.io.buf_waiting = true;
                    self.buf_waiters.push_back((key, conn.generation));
                }
            }
            r if r == -libc::ECANCELED => {}
            r => {
                conn.io.receive_failed(-r);
                conn.pump.set_read_closed();
            }
        }
        if conn.io.recv_armed && !conn.io.recv_cancelling && conn.io.rx_bytes() >= RX_CAP {
            // Holding enough: leave the rest in the socket (TCP flow control).
            conn.io.recv_cancelling = true;
            let sqe = opcode::AsyncCancel::new(user_data(Op::Recv, key as u32, 0))
                .build()
                .user_data(user_data(Op::Cancel, 0, 0));
            self.push(&sqe);
        }
        self.mark_ready(key);
    }

    /// A send's completion: failures and short sends, and full sends
    /// someone waits for (see [`Worker::flush_sends`]).
    fn on_send(&mut self, key: usize, res: i32) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if res >= 0 && conn.io.tx_inflight > 0 && res as usize == conn.io.tx_inflight {
            let wake = conn.io.confirm_sent(&mut self.pool);
            if conn.releasing.is_some() {
                conn.io.drop_send_buffer(&mut self.pool);
                self.try_free(key);
            } else if wake || conn.pump.is_finishing() {
                conn.pump.set_writable();
                self.mark_ready(key);
            }
            return;
        }
        let res = if conn.io.tx_inflight == 0 {
            // A completion for a send already taken as whole: the kernel
            // did not resolve it inside its enter. What the connection sent
            // is no longer known, so it is reset rather than risk a gap.
            tracing::error!(peer = %conn.peer, res, "io_uring send completed late; resetting the connection");
            -libc::EIO
        } else {
            res
        };
        let wait = conn.io.send_failed(res, &mut self.pool);
        if conn.releasing.is_some() {
            conn.io.drop_send_buffer(&mut self.pool);
            self.try_free(key);
            return;
        }
        if wait {
            let fd = conn.io.socket.raw_fd();
            let sqe = opcode::PollAdd::new(Fd(fd), libc::POLLOUT as u32)
                .build()
                .user_data(user_data(Op::SendPoll, key as u32, 0));
            self.push(&sqe);
        } else {
            // A failure: the pump's next write reports it.
            conn.pump.set_writable();
            self.mark_ready(key);
        }
    }

    /// The socket of a connection whose send stopped short can take more.
    fn on_send_poll(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.io.writable();
        if conn.releasing.is_some() {
            self.try_free(key);
            return;
        }
        conn.pump.set_writable();
        self.mark_dirty(key);
        self.mark_ready(key);
    }

    /// The enter that submitted this turn's sends took the whole
    /// submission queue and posted no failure for them: each was taken
    /// whole by the kernel.
    ///
    /// Why that holds: every send carries `MSG_DONTWAIT`, so io_uring issues
    /// it inline during the enter and never parks it to wait for room
    /// (`REQ_F_NOWAIT`); with `MSG_WAITALL`, one the socket takes only in
    /// part fails, reporting the bytes it took; and `SKIP_SUCCESS` drops the
    /// completion of a full send only. So a send completes within its
    /// enter, and one without a completion sent everything. This saves a
    /// completion, and at one connection a second `io_uring_enter`, per
    /// echo.
    fn confirm_sends(&mut self) {
        let unconfirmed = std::mem::take(&mut self.unconfirmed);
        for &key in &unconfirmed {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            let wake = conn.io.confirm_sent(&mut self.pool);
            if conn.releasing.is_some() {
                conn.io.drop_send_buffer(&mut self.pool);
                self.try_free(key);
            } else if wake || conn.pump.is_finishing() {
                conn.pump.set_writable();
                self.mark_ready(key);
            }
        }
        let mut unconfirmed = unconfirmed;
        unconfirmed.clear();
        unconfirmed.append(&mut self.unconfirmed);
        self.unconfirmed = unconfirmed;
    }

    fn mark_ready(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.ready
        {
            conn.ready = true;
            self.ready.push(key);
        }
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key)
            && !conn.dirty
        {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    fn drive_ready(&mut self, now: Instant) {
        let ready = std::mem::take(&mut self.ready);
        for &key in &ready {
            match self.conns.get_mut(key) {
                Some(conn) if conn.ready => {
                    conn.ready = false;
                    self.drive(key, now);
                }
                _ => {}
            }
        }
        let mut ready = ready;
        ready.clear();
        // Completions filed while driving (none today) would be in `self.ready`.
        ready.append(&mut self.ready);
        self.ready = ready;
    }

    /// Runs connection `key`'s pump, then files it: timer, run queue, or release.
    fn drive(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.releasing.is_some() {
            return;
        }
        let counters = self.counters.stream(conn.kind);
        let mut io = Io {
            io: &mut conn.io,
            bufs: &mut self.bufs,
            pool: &mut self.pool,
        };
        let next = conn.pump.drive(now, &mut io, BUDGET, counters);
        log_events(&mut conn.pump, &conn.peer, now, &mut self.throttles);
        let wants_send = conn.io.tx_pending() > 0 && conn.io.tx_inflight == 0 && !conn.io.tx_poll;
        match next {
            Next::Wait { read, .. } => {
                if read {
                    self.arm_recv(key);
                }
                self.schedule(key);
            }
            Next::Yield => {
                if !conn.queued {
                    conn.queued = true;
                    self.run_queue.push_back((key, conn.generation));
                }
                self.schedule(key);
            }
            Next::Release(how) => {
                self.release(key, how);
                return;
            }
        }
        if wants_send {
            self.mark_dirty(key);
        }
    }

    /// Arms the connection's multishot receive if it has none and wants input.
    fn arm_recv(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let io = &mut conn.io;
        if io.recv_armed
            || io.buf_waiting
            || io.rx_done()
            || io.rx_bytes() > 0
            || conn.releasing.is_some()
        {
            return;
        }
        if !self.buf_waiters.is_empty() && self.bufs.available() < REARM_MIN_FREE {
            // Buffers are scarce: take a turn.
            io.buf_waiting = true;
            self.buf_waiters.push_back((key, conn.generation));
            return;
        }
        io.recv_armed = true;
        let fd = io.socket.raw_fd();
        let sqe = opcode::RecvMulti::new(Fd(fd), self.bufs.bgid())
            .build()
            .user_data(user_data(Op::Recv, key as u32, 0));
        self.push(&sqe);
    }

    /// Re-arms waiting receives, in turn, while buffers are free.
    fn grant_buffers(&mut self) {
        let mut budget = self.bufs.available() / 4;
        while budget >= REARM_MIN_FREE {
            let Some((key, generation)) = self.buf_waiters.pop_front() else {
                return;
            };
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.generation != generation || !conn.io.buf_waiting {
                continue;
            }
            conn.io.buf_waiting = false;
            budget = budget.saturating_sub(32);
            self.arm_recv(key);
        }
    }

    fn flush_sends(&mut self) {
        let dirty = std::mem::take(&mut self.dirty);
        for &key in &dirty {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if !conn.dirty {
                continue;
            }
            conn.dirty = false;
            if conn.releasing.is_some() {
                continue;
            }
            let fd = conn.io.socket.raw_fd();
            // Someone waits for this send (the session for room, the linger
            // for delivery): its completion must wake the loop. Otherwise
            // (the usual echo) it completes silently (`confirm_sends`).
            let waited_for = conn.io.needs_wake() || conn.pump.is_finishing();
            if let Some((ptr, len)) = conn.io.next_send() {
                // Resolved inside the enter that submits it.
                let sqe = opcode::Send::new(Fd(fd), ptr, len as u32)
                    .flags(libc::MSG_NOSIGNAL | libc::MSG_WAITALL | libc::MSG_DONTWAIT)
                    .build();
                let sqe = if waited_for {
                    sqe
                } else {
                    sqe.flags(Flags::SKIP_SUCCESS)
                };
                self.push_uncounted(&sqe.user_data(user_data(Op::Send, key as u32, 0)));
                self.unconfirmed.push(key);
            }
        }
        let mut dirty = dirty;
        dirty.clear();
        dirty.append(&mut self.dirty);
        self.dirty = dirty;
    }

    /// Makes sure the heap holds the connection's next deadline (see `timer.rs`).
    fn schedule(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let want = conn.pump.poll_timeout().unwrap_or(Instant::MAX);
        if want < conn.scheduled {
            conn.scheduled = want;
            self.timers.push(Entry {
                deadline: want,
                key,
                generation: conn.generation,
            });
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        for _ in 0..TIMER_BUDGET {
            let Some(entry) = self.timers.pop_due(now) else {
                break;
            };
            let Some(conn) = self.conns.get_mut(entry.key) else {
                continue;
            };
            if conn.generation != entry.generation || conn.scheduled != entry.deadline {
                continue;
            }
            conn.scheduled = Instant::MAX;
            self.drive(entry.key, now);
        }
        if self.timers.len() > 2 * self.conns.len() + 1024 {
            let conns = &self.conns;
            self.timers.retain(|e| {
                conns
                    .get(e.key)
                    .is_some_and(|c| c.generation == e.generation && c.scheduled == e.deadline)
            });
        }
    }

    /// Serves the run queue and resumes paused listeners.
    fn serve_leftovers(&mut self, now: Instant) {
        for _ in 0..self.run_queue.len() {
            let Some((key, generation)) = self.run_queue.pop_front() else {
                break;
            };
            match self.conns.get_mut(key) {
                Some(conn) if conn.generation == generation => {
                    conn.queued = false;
                    self.drive(key, now);
                }
                _ => {}
            }
        }
        for i in 0..self.listeners.len() {
            if self.listeners[i].paused_until.is_some_and(|t| t <= now) {
                self.listeners[i].paused_until = None;
                self.arm_accept(i);
            }
        }
    }

    fn arm_accept(&mut self, i: usize) {
        let Some(l) = self.listeners.get_mut(i) else {
            return;
        };
        let Some(fd) = l.fd() else {
            return;
        };
        if l.armed || l.paused_until.is_some() || self.grace_deadline.is_some() {
            return;
        }
        l.armed = true;
        let sqe = opcode::AcceptMulti::new(Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(Op::Accept, i as u32, 0));
        self.push(&sqe);
    }

    fn on_accept(&mut self, i: usize, res: i32, last: bool, now: Instant) {
        if last && let Some(l) = self.listeners.get_mut(i) {
            l.armed = false;
        }
        if res >= 0 {
            #[allow(unsafe_code)]
            // SAFETY: the kernel just created this descriptor for us.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            let kind = self
                .listeners
                .get(i)
                .map_or(StreamKind::Tcp, Listener::kind);
            self.admit(fd, kind, now);
        } else if res != -libc::ECANCELED {
            let errno = -res;
            let pause = matches!(
                errno,
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM
            );
            if pause {
                self.pause_listener(i, now, errno);
            } else if errno != libc::ECONNABORTED && errno != libc::EINTR && errno != libc::EAGAIN {
                self.counters.accept_errors += 1;
            }
        } else if let Some(l) = self.listeners.get_mut(i)
            && self.grace_deadline.is_some()
        {
            // Cancelled at shutdown: nobody accepts here any more.
            l.socket = None;
        }
        if last && self.grace_deadline.is_none() {
            self.arm_accept(i);
        }
    }

    /// Out of descriptors (or memory): stop accepting for a while,
    /// doubling the pause up to a second.
    fn pause_listener(&mut self, i: usize, now: Instant, errno: i32) {
        let exhausted = matches!(errno, libc::EMFILE | libc::ENFILE);
        if exhausted {
            self.counters.accept_fd_exhausted += 1;
        } else {
            self.counters.accept_errors += 1;
        }
        let Some(l) = self.listeners.get_mut(i) else {
            return;
        };
        let pause = l.backoff;
        l.backoff = Duration::from_micros((pause.as_micros() * 2).min(MAX_BACKOFF.as_micros()));
        l.paused_until = Some(now + pause);
        if l.armed {
            let sqe = opcode::AsyncCancel::new(user_data(Op::Accept, i as u32, 0))
                .build()
                .user_data(user_data(Op::Cancel, 0, 0));
            self.push(&sqe);
        }
        let l = &mut self.listeners[i];
        if let Some(suppressed) = l.warnings.admit(now) {
            let hint = if exhausted {
                "out of file descriptors (raise `ulimit -n` or lower --max-connections)"
            } else {
                "accept failed"
            };
            tracing::warn!(
                endpoint = %l.endpoint,
                error = %io::Error::from_raw_os_error(errno),
                pause_ms = pause.as_millis(),
                suppressed,
                "{hint}; pausing accepts"
            );
        }
    }

    fn admit(&mut self, fd: OwnedFd, kind: StreamKind, now: Instant) {
        let (socket, peer) = match kind {
            StreamKind::Tcp => {
                let s = std::net::TcpStream::from(fd);
                // Echo is request/response-like: never hold a small echo back (Nagle).
                let _ = s.set_nodelay(true);
                let peer = s.peer_addr().map_or(Peer::Unix, Peer::Tcp);
                (Socket::Tcp(s), peer)
            }
            StreamKind::Unix => (
                Socket::Unix(std::os::unix::net::UnixStream::from(fd)),
                Peer::Unix,
            ),
        };
        if let Some(l) = self
            .listeners
            .iter_mut()
            .find(|l| l.kind() == kind && l.backoff != MIN_BACKOFF)
        {
            l.backoff = MIN_BACKOFF;
        }
        let open = self.shared.stats.open();
        let limit = self.shared.settings.max_connections;
        if open.fetch_add(1, Relaxed) >= limit {
            open.fetch_sub(1, Relaxed);
            self.counters.stream(kind).rejected += 1;
            if let Some(suppressed) = self.throttles.rejected.admit(now) {
                tracing::warn!(
                    %peer,
                    limit,
                    suppressed,
                    "connection rejected: --max-connections reached \
                     (raise it, or the open-file limit it is derived from)"
                );
            }
            return;
        }
        self.counters.stream(kind).accepted += 1;
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let storage = vec![0u8; self.buffer_size].into_boxed_slice();
        let mut pump = Pump::new(storage, self.session_config, now);
        if self.grace_deadline.is_some() {
            pump.close(now);
        }
        let key = self.conns.insert(Conn {
            io: ConnIo::new(socket),
            pump,
            kind,
            peer,
            generation,
            scheduled: Instant::MAX,
            queued: false,
            ready: false,
            dirty: false,
            releasing: None,
        });
        tracing::debug!(%peer, "connection opened");
        self.arm_recv(key);
        if self.grace_deadline.is_some() {
            self.drive(key, now);
        } else {
            self.schedule(key);
        }
    }

    /// The pump released the connection: cancel what is in flight, close
    /// when nothing is.
    fn release(&mut self, key: usize, how: Teardown) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.releasing = Some(how);
        conn.io.drop_received(&mut self.bufs);
        conn.io.drop_send_buffer(&mut self.pool);
        if how == Teardown::Reset {
            conn.io.socket.set_reset_on_close();
        }
        let mut cancels = Vec::new();
        if conn.io.recv_armed && !conn.io.recv_cancelling {
            conn.io.recv_cancelling = true;
            cancels.push(user_data(Op::Recv, key as u32, 0));
        }
        if conn.io.tx_poll {
            cancels.push(user_data(Op::SendPoll, key as u32, 0));
        }
        for target in cancels {
            let sqe = opcode::AsyncCancel::new(target)
                .build()
                .user_data(user_data(Op::Cancel, 0, 0));
            self.push(&sqe);
        }
        self.try_free(key);
    }

    /// Frees a released connection's slot once none of its requests is in flight.
    fn try_free(&mut self, key: usize) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.releasing.is_none()
            || conn.io.recv_armed
            || conn.io.tx_inflight > 0
            || conn.io.tx_poll
        {
            return;
        }
        let mut conn = self.conns.remove(key);
        conn.io.drop_received(&mut self.bufs);
        conn.io.drop_send_buffer(&mut self.pool);
        self.shared.stats.open().fetch_sub(1, Relaxed);
        // Dropping the socket closes it (FIN, or RST after `set_reset_on_close`).
    }

    /// Starts the graceful shutdown: stop accepting and receiving
    /// datagrams, close every session.
    fn begin_drain(&mut self, now: Instant) {
        let grace: Duration = self.shared.settings.grace.into();
        self.grace_deadline = Some(now + grace);
        for i in 0..self.listeners.len() {
            let l = &mut self.listeners[i];
            if l.armed {
                let sqe = opcode::AsyncCancel::new(user_data(Op::Accept, i as u32, 0))
                    .build()
                    .user_data(user_data(Op::Cancel, 0, 0));
                self.push(&sqe);
            } else {
                l.socket = None;
            }
        }
        for i in 0..self.udp.len() {
            if let Some(sqe) = self.udp[i].stop() {
                self.push(&sqe);
            }
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key)
                && conn.releasing.is_none()
            {
                conn.pump.close(now);
                self.drive(key, now);
            }
        }
        tracing::debug!(worker = self.index, open = self.conns.len(), "draining");
    }

    /// The grace period is over: reset what is still echoing, release what lingers.
    fn reset_remaining(&mut self, now: Instant) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        let before = self.counters.tcp.aborted.local + self.counters.unix.aborted.local;
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key)
                && conn.releasing.is_none()
            {
                conn.pump.abort(now);
                self.drive(key, now);
            }
        }
        let reset = self.counters.tcp.aborted.local + self.counters.unix.aborted.local - before;
        if reset > 0 {
            tracing::warn!(
                worker = self.index,
                connections = reset,
                "grace period over: connections reset"
            );
        }
    }

    /// Worker exit: sessions still echoing are reset.
    fn release_all(&mut self) {
        for (_, conn) in self.conns.iter_mut() {
            if conn.releasing.is_none() && !conn.pump.is_finishing() {
                conn.io.socket.set_reset_on_close();
            }
            conn.releasing.get_or_insert(Teardown::Reset);
        }
    }

    /// Cancels every request and waits (bounded) until the kernel gave each
    /// back; then the sockets close. Returns whether nothing is left in flight.
    fn drain_ring(&mut self) -> bool {
        let sqe = opcode::AsyncCancel2::new(CancelBuilder::any())
            .build()
            .user_data(user_data(Op::Cancel, 0, 0));
        self.push(&sqe);
        let start = std::time::Instant::now();
        while self.inflight > 0 && start.elapsed() < EXIT_DRAIN {
            self.sq.sync();
            let ts = Timespec::from(StdDuration::from_millis(50));
            let args = SubmitArgs::new().timespec(&ts);
            if let Err(e) = self.submitter.submit_with_args(1, &args)
                && !matches!(
                    e.raw_os_error(),
                    Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN)
                )
            {
                break;
            }
            self.cq.sync();
            let cqes: Vec<(u64, u32)> =
                (&mut self.cq).map(|c| (c.user_data(), c.flags())).collect();
            for (ud, flags) in cqes {
                let send = matches!(ring::decode(ud), Some((Op::Send, ..)));
                if !cqueue::more(flags) && !send {
                    self.inflight = self.inflight.saturating_sub(1);
                }
                if let Some((Op::SendPoll, a, _)) = ring::decode(ud)
                    && let Some(conn) = self.conns.get_mut(a as usize)
                {
                    conn.io.tx_poll = false;
                }
            }
            self.cq.sync();
        }
        let clean = self.inflight == 0;
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(mut conn) = self.conns.try_remove(key) {
                if clean {
                    conn.io.drop_send_buffer(&mut self.pool);
                } else {
                    // A send may still read it.
                    std::mem::forget(conn.io.take_send_buffer());
                }
                self.shared.stats.open().fetch_sub(1, Relaxed);
            }
        }
        self.listeners.clear();
        clean
    }

    fn arm_wake(&mut self) {
        if self.wake_armed {
            return;
        }
        self.wake_armed = true;
        let sqe = opcode::Read::new(Fd(self.waker.as_raw_fd()), self.wake_buf.as_mut_ptr(), 8)
            .build()
            .user_data(user_data(Op::Wake, 0, 0));
        self.push(&sqe);
    }

    fn arm_udp(&mut self, i: usize) {
        if let Some(sqe) = self.udp.get_mut(i).and_then(UdpEndpoint::arm) {
            self.push(&sqe);
        }
    }
}
