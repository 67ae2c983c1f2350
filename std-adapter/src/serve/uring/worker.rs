//! One io_uring worker: a ring, its listeners, UDP sockets and connections.
//!
//! Per turn the loop:
//!
//! 1. publishes recycled receive buffers, submits everything queued and
//!    waits for at least one completion, in **one** `io_uring_enter` (with
//!    the earliest deadline as its timeout: timer heap, paused listeners,
//!    grace period, its guest's deadline; or no wait at all if work was
//!    left over);
//! 2. files every completion of the batch: accepted sockets, received
//!    buffers (a bundle of up to [`RX_CAP`] bytes per completion on TCP
//!    where the kernel allows, see `bundle.rs`), send progress, datagrams;
//! 3. drives each connection that had completions once (so a batch's
//!    buffers are echoed together), then the run queue, then due timers;
//! 4. queues one send per connection for everything it has to send, and
//!    publishes its counters;
//! 5. with TLS listeners, runs a turn of their epoll loop, which it hosts
//!    (`host.rs`), if that loop's descriptor became readable or its
//!    deadline came.
//!
//! Every connection runs through the core's `Pump`, as on epoll, and lives
//! in the same connection table ([`super::super::conns`]: run queue, timer
//! heap, admission, drain). Fairness: a connection reads at most
//! [`BUDGET`](super::super::conns::BUDGET) bytes per drive and yields to
//! the run queue; it holds at most [`RX_CAP`] bytes (or [`RX_CAP_BUFFERS`]
//! buffers) of received buffers before its receive is cancelled (TCP flow
//! control then slows the peer) and re-armed once the session has taken
//! them. With receive bundles the kernel stops at the cap; without, the cap
//! is checked as each batch of completions is filed, so one turn can bring
//! more (what built up in the socket while the receive was paused), and
//! stalled connections give their buffers back when the ring runs short. When the shared buffer ring
//! runs dry, receives that ended with `ENOBUFS` are re-armed in turn as
//! buffers come back.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::time::Duration as StdDuration;

use io_uring::squeue::Entry as Sqe;
use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{CompletionQueue, SubmissionQueue, Submitter, cqueue, opcode};
use ricochet_core::{Instant, Teardown};

use super::super::Shared;
use super::super::busy_poll::BusyPoll;
use super::super::conns::{ConnTable, Driver};
use super::super::events::Throttles;
use super::super::stats::Counters;
use super::super::worker::Guest;
use super::accept::Listener;
use super::bufs::{BufRing, TxPool};
use super::bundle;
use super::conn::Conn;
use super::fixed;
use super::ring::{self, Op, user_data};
use super::udp::UdpEndpoint;

pub(crate) use start::starter;

/// Provided receive buffers per worker (a power of two).
pub(super) const RX_BUFS: u16 = 1024;
/// Bytes per provided receive buffer.
const RX_BUF_SIZE: usize = 4096;
/// Buffer group of the stream receive buffers (UDP sockets use 1, 2...).
const STREAM_BGID: u16 = 0;
/// Received bytes a connection may hold before its receive is paused.
pub(super) const RX_CAP: usize = 64 * 1024;
/// Received buffers a connection may hold before its receive is paused
/// (1-byte segments must not take the shared buffers by the thousand).
pub(super) const RX_CAP_BUFFERS: usize = 16;
/// Buffers that must be free before a receive waiting for buffers is re-armed.
pub(super) const REARM_MIN_FREE: usize = 8;
/// Spare send buffers kept per worker.
const TX_SPARE: usize = 256;
/// How long the worker waits for the kernel to give back cancelled requests at exit.
const EXIT_DRAIN: StdDuration = StdDuration::from_secs(2);

/// A running io_uring worker.
pub(super) struct Worker<'r> {
    pub(super) index: usize,
    pub(super) shared: Arc<Shared>,
    pub(super) clock: crate::clock::Clock,
    pub(super) submitter: Submitter<'r>,
    pub(super) sq: SubmissionQueue<'r>,
    pub(super) cq: CompletionQueue<'r>,
    pub(super) bufs: BufRing,
    pub(super) pool: TxPool,
    pub(super) listeners: Vec<Listener>,
    pub(super) udp: Vec<UdpEndpoint>,
    pub(super) conns: ConnTable<Conn>,
    pub(super) counters: Counters,
    pub(super) throttles: Throttles,
    /// Requests submitted (or queued) whose last completion has not come.
    pub(super) inflight: usize,
    /// Connections with completions in this batch (drive once each).
    pub(super) ready: Vec<usize>,
    /// Connections with bytes to submit at the end of the turn.
    pub(super) dirty: Vec<usize>,
    /// Connections whose send was submitted and is confirmed after the next enter.
    pub(super) unconfirmed: Vec<usize>,
    /// Connections whose receive waits for free buffers, in turn.
    pub(super) buf_waiters: VecDeque<(usize, u32)>,
    /// Connections whose send waits for their peer to read (each once).
    pub(super) stalled: Vec<(usize, u32)>,
    pub(super) cqes: Vec<(u64, i32, u32)>,
    pub(super) waker: OwnedFd,
    pub(super) wake_buf: Box<[u8; 8]>,
    pub(super) wake_armed: bool,
    /// How long to spin on the rings before sleeping.
    pub(super) busy: BusyPoll,
    /// TCP receives take bundles of buffers (`IORING_RECVSEND_BUNDLE`,
    /// Linux 6.10, capped at [`RX_CAP`] per completion and, with
    /// [`bundle::Limit::Total`], per arm; see `bundle.rs`): one completion,
    /// and one pass through TCP's receive path, for what the socket holds
    /// up to the cap, instead of one per 4 KiB buffer. `None`: one buffer
    /// per completion (the kernel failed the check).
    pub(super) bundles: Option<bundle::Limit>,
    /// Slots in the registered file table (0: none): connection `key`
    /// below this uses slot `key` (see `fixed.rs`).
    pub(super) fixed_slots: u32,
    /// The epoll worker of the TLS listeners this worker hosts (see
    /// [`Guest`]), until it is done.
    pub(super) guest: Option<Guest>,
    /// A multishot poll watches the guest's descriptor.
    pub(super) guest_armed: bool,
    /// The guest's descriptor became readable since its last turn.
    pub(super) guest_due: bool,
    /// The poll on the guest's descriptor failed (not cancelled).
    pub(super) guest_error: Option<io::Error>,
}

impl<'r> Worker<'r> {
    /// Worker `index` over the ring split into `submitter`, `sq` and `cq`,
    /// with `bufs` (registered) for its stream receives and the eventfd
    /// `waker`, busy polling as `shared`'s settings say. No listener, UDP
    /// socket, receive bundles or file table yet (the caller sets them),
    /// nothing in flight.
    pub(super) fn new(
        index: usize,
        shared: Arc<Shared>,
        (submitter, sq, cq): (Submitter<'r>, SubmissionQueue<'r>, CompletionQueue<'r>),
        bufs: BufRing,
        waker: OwnedFd,
    ) -> Self {
        Worker {
            index,
            clock: shared.clock,
            conns: ConnTable::new(index, Arc::clone(&shared)),
            busy: BusyPoll::new(shared.settings.busy_poll),
            shared,
            submitter,
            sq,
            cq,
            bufs,
            pool: TxPool::new(TX_SPARE),
            listeners: Vec::new(),
            udp: Vec::new(),
            counters: Counters::default(),
            throttles: Throttles::new(),
            inflight: 0,
            ready: Vec::new(),
            dirty: Vec::new(),
            unconfirmed: Vec::new(),
            buf_waiters: VecDeque::new(),
            stalled: Vec::new(),
            cqes: Vec::with_capacity(1024),
            waker,
            wake_buf: Box::new([0u8; 8]),
            wake_armed: false,
            bundles: None,
            fixed_slots: 0,
            guest: None,
            guest_armed: false,
            guest_due: false,
            guest_error: None,
        }
    }
}

impl Worker<'_> {
    fn run(&mut self) -> io::Result<()> {
        for i in 0..self.listeners.len() {
            self.arm_accept(i);
        }
        for i in 0..self.udp.len() {
            self.arm_udp(i);
        }
        self.arm_wake();
        self.arm_guest();
        loop {
            self.enter()?;
            let now = self.clock.now();
            if !self.turn(now) {
                return Ok(());
            }
            self.turn_guest();
            // Drained, this worker still runs its guest's turns until the
            // guest is drained too.
            if self.drained(now) && self.guest.is_none() {
                // What the grace period's resets queued (nothing if no connection is left).
                self.flush_sends();
                return Ok(());
            }
        }
    }

    /// One turn of the loop, after the enter that submitted and waited:
    /// the completions reaped, sends confirmed, connections driven,
    /// deadlines fired, buffers relieved, counters published. False if the
    /// server stopped at once (abort).
    fn turn(&mut self, now: Instant) -> bool {
        let go_on = self.begin_turn(now, |w| {
            // Fresh head: did the kernel take every queued request?
            w.sq.sync();
            let submitted_all = w.sq.is_empty();
            w.reap(now);
            // A send's failure may sit in the kernel's overflow list (the
            // completion queue was full): not seen yet, so no send can be
            // taken as whole this turn. The next enter flushes the list.
            if submitted_all && !w.sq.cq_overflow() {
                w.confirm_sends();
            }
            w.drive_ready(now);
        });
        if go_on {
            self.serve_leftovers(now);
            self.fire_timers(now);
            self.flush_sends();
            self.relieve_buffers();
            self.publish();
        }
        go_on
    }

    fn publish(&self) {
        self.shared.stats.worker(self.index).publish(&self.counters);
    }

    /// Queues a request whose last completion will come; if the
    /// submission queue is full, submits first.
    pub(super) fn push(&mut self, sqe: &Sqe) {
        self.inflight += 1;
        self.push_uncounted(sqe);
    }

    /// Queues a request that may complete without a completion (a send
    /// with `SKIP_SUCCESS`, resolved inside the enter that submits it).
    pub(super) fn push_uncounted(&mut self, sqe: &Sqe) {
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

    /// Submits and waits: one `io_uring_enter` per turn, or, while the
    /// busy-poll window is open, one submit and then checks of the rings
    /// (an enter only when the kernel flags deferred completions).
    fn enter(&mut self) -> io::Result<()> {
        self.bufs.publish();
        for u in &mut self.udp {
            u.publish();
        }
        self.sq.sync();
        let work_left = self.conns.has_queued() || self.rearm_possible();
        let timeout = if work_left {
            Some(StdDuration::ZERO)
        } else {
            let paused = self.listeners.iter().filter_map(|l| l.paused_until);
            let own = self.conns.wait_limit(paused, self.clock.now());
            let guest = self.guest.as_ref().and_then(Guest::timeout);
            [own, guest].into_iter().flatten().min()
        };
        let Worker {
            submitter,
            sq,
            cq,
            busy,
            ..
        } = self;
        let mut submitted = false;
        let result = busy.wait(timeout, |t| match t {
            Some(t) if t.is_zero() => {
                // A check: submit once, then enter again only when the
                // kernel flags deferred completions (only an enter with
                // GETEVENTS runs them).
                if !submitted || sq.taskrun() {
                    submitter.submit_with_args(0, &SubmitArgs::new())?;
                    submitted = true;
                }
                cq.sync();
                Ok(!CompletionQueue::is_empty(cq))
            }
            Some(t) => {
                let ts = Timespec::from(t);
                submitter.submit_with_args(1, &SubmitArgs::new().timespec(&ts))?;
                Ok(true)
            }
            None => submitter.submit_and_wait(1).map(|_| true),
        });
        if let Err(e) = result {
            match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                _ => return Err(e),
            }
        }
        self.cq.sync();
        Ok(())
    }

    /// Whether enough buffers came back to re-arm a receive waiting for
    /// them. It must agree with [`grant_buffers`](Self::grant_buffers): a
    /// turn that cannot grant must not be taken at once (it spun, with a
    /// handful of buffers free and receives waiting, until they came back).
    fn rearm_possible(&self) -> bool {
        rearm_possible(self.buf_waiters.len(), self.bufs.available())
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
            self.prefetch_receivers(&cqes);
            for &(ud, res, flags) in &cqes {
                self.complete(ud, res, flags, now);
            }
            self.cq.sync();
        }
        self.cqes = cqes;
    }

    /// Starts loading what the batch's receive completions will touch:
    /// first each connection's row, then (from the rows, by then on
    /// their way) the storage of its received-buffer and output queues.
    /// Their cache misses then overlap instead of stalling one
    /// connection after another (BENCHMARKS.md, "Where C io_uring's lead
    /// on CPU comes from"). Only with enough connections to miss the cache
    /// at all.
    fn prefetch_receivers(&self, cqes: &[(u64, i32, u32)]) {
        if !self.conns.worth_prefetching() {
            return;
        }
        let receivers = || {
            cqes.iter()
                .filter_map(|&(ud, _, _)| match ring::decode(ud) {
                    Some((Op::Recv, key, _)) => Some(key as usize),
                    _ => None,
                })
        };
        for key in receivers() {
            self.conns.prefetch(key);
        }
        for key in receivers() {
            if let Some(conn) = self.conns.get(key) {
                conn.io.prefetch_queues();
            }
        }
    }

    fn complete(&mut self, ud: u64, res: i32, flags: u32, now: Instant) {
        let Some((op, a, b)) = ring::decode(ud) else {
            return;
        };
        let last = !cqueue::more(flags);
        if ends_counted(ud, flags) {
            self.inflight = self.inflight.saturating_sub(1);
        }
        match op {
            Op::Recv => self.on_recv(a as usize, res, flags, last),
            Op::Send => self.on_send(a as usize, res, now),
            Op::Accept => self.on_accept(a as usize, res, last, now),
            Op::UdpRecv => {
                let i = a as usize;
                if let Some(u) = self.udp.get_mut(i) {
                    let echo = u.on_recv(res, flags, last, now, &mut self.counters.udp);
                    self.counters.udp_queue_drops += u.take_queue_drops();
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
            Op::Guest => self.on_guest(res, last),
            Op::Wake => {
                self.wake_armed = false;
                self.arm_wake();
            }
            Op::Cancel => {}
        }
    }

    /// Serves the run queue and resumes paused listeners.
    fn serve_leftovers(&mut self, now: Instant) {
        self.serve_run_queue(now);
        for i in 0..self.listeners.len() {
            if self.listeners[i].paused_until.is_some_and(|t| t <= now) {
                self.listeners[i].paused_until = None;
                self.arm_accept(i);
            }
        }
    }

    /// Worker exit: the guest finished; sessions still echoing, and
    /// lingering connections whose echo has not all left the process, are
    /// reset.
    fn release_all(&mut self) {
        self.finish_guest();
        let now = self.clock.now();
        // A lingering connection whose echo (or FIN) still waits here is
        // cut short too (`Tracked::undelivered`): no clean FIN for it.
        self.conns.reset_unfinished(now, &mut self.counters);
        for conn in self.conns.iter_mut() {
            conn.releasing.get_or_insert(Teardown::Reset);
            conn.sync_gauge(&mut self.counters);
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
                if ends_counted(ud, flags) {
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
        let submitter = &self.submitter;
        self.conns.release_all(|mut conn| {
            // A request still in flight keeps its own reference.
            fixed::empty(submitter, conn.io.fixed);
            if clean {
                conn.io.drop_send_buffer(&mut self.bufs, &mut self.pool);
            } else {
                // A send may still read it.
                std::mem::forget(conn.io.take_send_buffer());
            }
        });
        self.listeners.clear();
        clean
    }

    /// Counts the bundle check's receive among the requests in flight:
    /// the check gave up and could not end it ([`bundle::Unsupported`]'s
    /// `ReceiveLeft`), so the exit must wait for it like any other before
    /// the buffers it may fill are freed.
    fn count_check_receive(&mut self) {
        self.inflight += 1;
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

/// Whether a completion ends a request counted in [`Worker::inflight`]:
/// its last one, unless it is a send (not counted: most post no
/// completion) or the cancel of the bundle check's receive, which can
/// complete after the check and is never counted. (The check's receive
/// itself is counted when the check left it in flight, see
/// [`Worker::count_check_receive`]; otherwise it never completes here.)
fn ends_counted(user_data: u64, flags: u32) -> bool {
    !cqueue::more(flags)
        && !matches!(ring::decode(user_data), Some((Op::Send, ..)))
        && user_data != bundle::check_cancel_user_data()
}

/// [`Worker::rearm_possible`] for `waiting` receives and `available` free buffers.
fn rearm_possible(waiting: usize, available: usize) -> bool {
    waiting > 0 && super::stream::grants(available) > 0
}

mod host;
mod start;
#[cfg(test)]
mod tests;
