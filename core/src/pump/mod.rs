//! The session pump: the one loop that drives a [`Session`] over a
//! [`Transport`], for every stream adapter (mio, blocking, smoltcp,
//! io_uring, TLS).
//!
//! The adapter implements three required I/O primitives on its connection
//! ([`Transport::read`] into a slice, [`Transport::write`] from a slice,
//! [`Transport::shutdown_write`]) and, where its transport needs them, the
//! provided ones: [`Transport::flush`] (push what a `more` write held back),
//! [`Transport::unacknowledged`] (undelivered bytes, for the linger),
//! [`Transport::output_failed`] (queued output that can no longer leave),
//! [`Transport::read_pending`] (input it already holds) and
//! [`Transport::pass_through`] (move held input straight to its output
//! while the session would echo it unchanged). It tells the pump when the
//! connection became readable or writable. [`Pump::drive`] then moves bytes until nothing
//! moves or the fairness budget is spent, counts them, applies the session's
//! decisions (backpressure, half-close, timeouts), and returns what the
//! adapter does next:
//!
//! ```text
//!   Next::Wait { read, write }  sleep until readiness or poll_timeout()
//!   Next::Yield                 budget spent with work left: drive again soon
//!   Next::Release(Teardown)     the connection is over: close, reset, or abandon it
//! ```
//!
//! After a graceful close the pump lingers: it has shut down the write side
//! (FIN after everything queued), and keeps reading and discarding input
//! until the peer's FIN, so that closing the socket cannot turn unread input
//! into a reset that destroys echo still in flight. The linger is bounded by
//! [`SessionConfig::linger`](crate::SessionConfig::linger), counted from the
//! last progress of the transport's delivery ([`Transport::unacknowledged`]
//! going down), so a slow but live peer is never cut off.
//!
//! Counting happens here and nowhere else: bytes as they move, the close or
//! abort reason once when the session ends, and the buffered-bytes gauge
//! ([`StreamCounters`]).
//!
//! ```
//! use ricochet_core::pump::{Next, Pump, ReadOutcome, Teardown, Transport, WriteOutcome};
//! use ricochet_core::{Instant, SessionConfig, StreamCounters};
//!
//! /// A peer that sent "hi" then FIN; what we write is collected.
//! struct Peer { input: &'static [u8], output: Vec<u8> }
//! impl Transport for Peer {
//!     fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
//!         let n = self.input.len().min(buf.len());
//!         buf[..n].copy_from_slice(&self.input[..n]);
//!         self.input = &self.input[n..];
//!         if n == 0 { ReadOutcome::Eof } else { ReadOutcome::Data(n) }
//!     }
//!     fn write(&mut self, buf: &[u8], _more: bool) -> WriteOutcome {
//!         self.output.extend_from_slice(buf);
//!         WriteOutcome::Sent(buf.len())
//!     }
//!     fn shutdown_write(&mut self) {}
//! }
//!
//! let mut counters = StreamCounters::default();
//! let mut pump = Pump::new([0u8; 64], SessionConfig::default(), Instant::ZERO);
//! let mut peer = Peer { input: b"hi", output: Vec::new() };
//! pump.set_read_closed(); // the readiness event also reported the peer's FIN
//! let next = pump.drive(Instant::ZERO, &mut peer, usize::MAX, &mut counters);
//! assert_eq!(next, Next::Release(Teardown::Close));
//! assert_eq!(peer.output, b"hi");
//! assert_eq!(counters.closed.peer_finished, 1);
//! ```

use crate::counters::StreamCounters;
use crate::session::{Event, Session, SessionConfig, State};
use crate::time::Instant;

#[cfg(test)]
mod tests;

/// What a read from the transport gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ReadOutcome {
    /// `n > 0` bytes were written at the start of the buffer (`Data(0)` is
    /// read as [`ReadOutcome::Eof`]).
    Data(usize),
    /// The peer finished sending (FIN).
    Eof,
    /// Nothing to read now; the adapter says when it becomes readable
    /// ([`Pump::set_readable`]). An interrupted call (`EINTR`) is retried by
    /// the transport, never reported as this.
    WouldBlock,
    /// The connection failed.
    Failed(Failure),
}

/// What a write to the transport gave.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum WriteOutcome {
    /// The transport took the first `n` bytes (a short write is normal;
    /// `Sent(0)` is read as [`WriteOutcome::WouldBlock`]).
    Sent(usize),
    /// No room now; the adapter says when it becomes writable
    /// ([`Pump::set_writable`]).
    WouldBlock,
    /// The connection failed.
    Failed(Failure),
}

/// How a connection failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Failure {
    /// Reset by the peer, broken pipe, or any other fatal error.
    Reset,
    /// The transport gave up (unanswered retransmissions, `ETIMEDOUT`).
    TimedOut,
}

/// The I/O primitives of one stream connection, as the adapter provides them.
pub trait Transport {
    /// Reads into `buf` (never empty).
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome;

    /// Writes from `buf` (never empty). `more` is a batching hint: the pump
    /// is about to write again, so a partial segment may be held back
    /// (`MSG_MORE`); the pump calls [`Transport::flush`] if it then does not.
    fn write(&mut self, buf: &[u8], more: bool) -> WriteOutcome;

    /// Sends what a `more` write held back, and whatever output the
    /// transport queued of its own (a TLS transport's records). Called after
    /// a `more` write, before [`Transport::shutdown_write`], and whenever
    /// the connection is writable while [`Transport::unacknowledged`] is
    /// above 0 (serving or lingering), so queued output leaves as soon as
    /// the connection takes it. Default: nothing to do.
    fn flush(&mut self) {}

    /// Shuts down the write side after everything queued (TCP: FIN). Called
    /// once, when the session closes gracefully.
    fn shutdown_write(&mut self);

    /// Whether the transport already holds input, or the end of it (EOF,
    /// an error), that a read would return without waiting for readiness.
    /// After a short read the pump reads again only if this is true (or the
    /// readiness event reported the peer's FIN): a transport that buffers
    /// (TLS decrypts whole records) may return a short read and still have
    /// the end of the stream to report. Default: false (a short read
    /// drained the transport).
    fn read_pending(&self) -> bool {
        false
    }

    /// Moves up to `max` bytes of input the transport already holds
    /// straight to its own output, in order, and returns how many it moved
    /// (each counts as read and as written). The pump calls it only when the
    /// session would echo that input unchanged and first
    /// ([`Session::can_pass_through`](crate::Session::can_pass_through)),
    /// so a transport that queues both directions in memory can send what
    /// it received without copying it through the session's buffer
    /// (io_uring lends its received buffers to its sends). It may move
    /// less than it holds (what is left is read as usual), and nothing
    /// (returns 0) when it holds no input or its output has no room; the end of the stream and
    /// failures are left for [`Transport::read`] and [`Transport::write`] to
    /// report. Default: 0 (the bytes go through the session's buffer).
    fn pass_through(&mut self, max: usize) -> usize {
        let _ = max;
        0
    }

    /// Whether a read now would certainly return
    /// [`ReadOutcome::WouldBlock`]: the transport holds no input, no end of
    /// the stream and no failure, and learns of more only through the
    /// adapter (a completion-based transport: io_uring's receive
    /// completions queue what arrives). The pump then does not offer its
    /// buffer for a read, so a raw session whose input always passes
    /// through ([`Transport::pass_through`]) never touches its storage, and
    /// the adapter may allocate that storage on first use. Default: false
    /// (a readiness-based transport cannot know without reading).
    fn read_would_block(&self) -> bool {
        false
    }

    /// The transport queues output of its own beyond the OS's socket
    /// buffer (io_uring sends in flight, TLS records): its writes succeed
    /// before the bytes are handed on, and may still fail after the session
    /// closed. A graceful close is then counted only once that output was
    /// delivered ([`Transport::unacknowledged`] reached 0), or as reset by
    /// the peer if it failed ([`Transport::output_failed`],
    /// [`Session::handle_output_lost`]), so the counters agree with a
    /// transport whose failing write aborts the session at once, and never
    /// need taking back. Default: false (count the close when the session
    /// closes).
    fn queues_output(&self) -> bool {
        false
    }

    /// Bytes written (and the FIN, counted as one) that the transport has
    /// not yet seen delivered. The linger after a graceful close ends only
    /// when this is 0, and restarts whenever it goes down. Default: 0 (the
    /// OS delivers after the socket is closed, as a kernel TCP stack does).
    fn unacknowledged(&self) -> usize {
        0
    }

    /// Bytes written that a reset would still discard: not yet delivered
    /// to the peer (a kernel TCP socket's send queue, `SIOCOUTQ`). A
    /// session aborted for what the peer sent (a line or frame too long, a
    /// frame cut short by the FIN) echoes the whole units before it first:
    /// the pump resets the connection only once this is 0, or after the
    /// linger time without progress, reading and discarding input
    /// meanwhile. Default: [`Transport::unacknowledged`].
    fn unsent_before_reset(&self) -> usize {
        self.unacknowledged()
    }

    /// Whether output this transport already took can no longer be
    /// delivered: a send it queued failed after [`Transport::write`]
    /// accepted the bytes (a transport that queues output of its own, as
    /// TLS records or an io_uring send queue). A lingering pump then
    /// releases the connection at once instead of waiting out the linger
    /// for bytes that will never leave (and, with
    /// [`Transport::queues_output`], counts the session as reset by the
    /// peer). Default: false (writes reach the
    /// kernel at once and report their failures themselves).
    fn output_failed(&self) -> bool {
        false
    }
}

/// What the adapter does with a connection next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[must_use]
pub enum Next {
    /// Nothing moves until the connection is `read`-able (input is wanted
    /// and the transport had none) or `write`-able (output is pending and
    /// the transport took no more), or until [`Pump::poll_timeout`].
    Wait {
        /// Input is wanted.
        read: bool,
        /// Output is pending.
        write: bool,
    },
    /// The budget ran out with work left: drive again after serving others.
    Yield,
    /// The connection is over: release it this way. Every later drive
    /// returns it again; the counters hold its end once.
    Release(Teardown),
}

/// How to release a finished connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Teardown {
    /// The session closed gracefully and its linger is over: everything was
    /// echoed and delivered and the peer finished, or the connection failed
    /// meanwhile and nothing more can be delivered (the counted end says
    /// which: a close, or an abort by the peer). Close the socket (the FIN
    /// already went out through [`Transport::shutdown_write`]).
    Close,
    /// The session aborted: reset the connection (TCP: RST, `SO_LINGER` 0,
    /// smoltcp `abort()`).
    Reset,
    /// The session closed gracefully but the peer did not finish, or the
    /// transport made no delivery progress, within the linger time: release
    /// the socket as the transport can (a kernel socket: close it, and the
    /// kernel delivers what it holds; smoltcp: `abort()`). A transport that
    /// still holds bytes of its own must not end with a clean FIN after a
    /// shortened echo: it hands them to the kernel first, or resets where
    /// the transport has a reset (TCP; not a Unix stream socket).
    Abandon,
}

/// How long no byte may have moved before [`Pump::close_when_idle`] takes
/// a connection as idle. A read that drains the socket does not mean the
/// peer is done: a peer that is sending has more on the way as soon as the
/// read opens its window (on loopback within microseconds, across a network
/// within a round trip). (Feature `shutdown`.)
#[cfg(feature = "shutdown")]
pub const IDLE_QUIET: crate::time::Duration = crate::time::Duration::from_millis(250);

/// Where the pump is in a connection's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The session runs.
    Serving,
    /// Closed gracefully; FIN sent; waiting for the peer's FIN and for
    /// delivery, since the last delivery progress. Or (`reset_after`)
    /// aborted for what the peer sent; no FIN; waiting for the echo before
    /// it to be delivered, then the reset.
    Lingering {
        since: Instant,
        unacknowledged: usize,
    },
    /// Release was returned.
    Released(Teardown),
}

/// A session and the state that drives it over a transport. See the
/// [module docs](self).
#[derive(Debug)]
pub struct Pump<S> {
    session: Session<S>,
    phase: Phase,
    readable: bool,
    writable: bool,
    /// The last readiness report included the peer's FIN or an error: read
    /// until the transport says so, even after a short read.
    read_closed: bool,
    /// Bytes this session holds, as last added to the counters' gauge.
    buffered: usize,
    /// [`Pump::abort`] was called while lingering.
    cut_short: bool,
    /// Lingering after a close not counted yet: its output is still queued
    /// in the transport (see [`Transport::queues_output`]).
    close_uncounted: bool,
    /// Lingering after an abort for what the peer sent, until its echo is
    /// delivered ([`Transport::unsent_before_reset`]); then the reset.
    /// (Feature `deliver_before_reset`.)
    #[cfg(feature = "deliver_before_reset")]
    reset_after: Option<Recheck>,
}

/// When a pump waiting to reset looks at delivery again: a kernel's send
/// queue drains as the peer acknowledges, with no readiness event, so the
/// pump asks to be driven again by itself, 1 ms after the abort and then
/// twice as long each time up to [`Recheck::LONGEST`] (on loopback the echo
/// is delivered within the first; a stalled reader costs a dozen wake-ups
/// over the linger). (Feature `deliver_before_reset`.)
#[cfg(feature = "deliver_before_reset")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Recheck {
    at: Instant,
    every: crate::time::Duration,
}

#[cfg(feature = "deliver_before_reset")]
impl Recheck {
    const FIRST: crate::time::Duration = crate::time::Duration::from_millis(1);
    const LONGEST: crate::time::Duration = crate::time::Duration::from_millis(250);

    fn after_abort(now: Instant) -> Recheck {
        Recheck {
            at: now + Recheck::FIRST,
            every: Recheck::FIRST,
        }
    }

    /// The next look, twice as far from `now` as the last (at most LONGEST).
    fn next(self, now: Instant) -> Recheck {
        let every = (self.every + self.every).min(Recheck::LONGEST);
        Recheck {
            at: now + every,
            every,
        }
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Pump<S> {
    /// A new connection over `storage` (see [`Session::new`]). Readiness is
    /// assumed, so the first drive reads whatever already arrived.
    pub fn new(storage: S, config: SessionConfig, now: Instant) -> Self {
        Pump::from_session(Session::new(storage, config, now))
    }

    /// Drives an existing session (e.g. one re-armed with [`Pump::reset`]).
    pub fn from_session(session: Session<S>) -> Self {
        Pump {
            session,
            phase: Phase::Serving,
            readable: true,
            writable: true,
            read_closed: false,
            buffered: 0,
            cut_short: false,
            close_uncounted: false,
            #[cfg(feature = "deliver_before_reset")]
            reset_after: None,
        }
    }

    /// A pump with no connection yet over `storage` (a slot of a fixed pool
    /// whose socket still listens): released, so [`Pump::reset`] arms it
    /// for its first connection without counting anything.
    pub fn vacant(storage: S, config: SessionConfig, now: Instant) -> Self {
        let mut pump = Pump::new(storage, config, now);
        pump.phase = Phase::Released(Teardown::Close);
        pump
    }

    /// Re-arms the pump for a new connection at `now`, keeping the storage.
    ///
    /// A pump whose connection is not released yet (running or lingering)
    /// is first stopped and counted as [`Pump::stop`] counts it; the
    /// returned [`Teardown`] says how to release that old connection's
    /// socket. `None`: it was released already (or the pump is
    /// [vacant](Pump::vacant)), nothing counted. The adapter counts the new
    /// connection in [`StreamCounters::accepted`] itself.
    #[must_use = "a running connection was stopped: release its socket this way"]
    pub fn reset(
        &mut self,
        config: SessionConfig,
        now: Instant,
        counters: &mut StreamCounters,
    ) -> Option<Teardown> {
        let old = self.stop(now, counters);
        self.session.reset(config, now);
        self.phase = Phase::Serving;
        self.readable = true;
        self.writable = true;
        self.read_closed = false;
        self.buffered = 0;
        self.cut_short = false;
        #[cfg(feature = "deliver_before_reset")]
        {
            self.reset_after = None;
        }
        old
    }

    /// The session (state, counters, buffer size).
    pub fn session(&self) -> &Session<S> {
        &self.session
    }

    /// The storage while the session holds no bytes in it
    /// ([`Session::idle_storage_mut`]): between drives, an adapter may take
    /// its memory back to a pool.
    pub fn idle_storage_mut(&mut self) -> Option<&mut S> {
        self.session.idle_storage_mut()
    }

    /// The connection may have input (a readiness event).
    pub fn set_readable(&mut self) {
        self.readable = true;
    }

    /// The connection has no input until a readiness event says so
    /// ([`Pump::set_readable`]). A new pump assumes both directions ready;
    /// an adapter whose registration reports input already there
    /// (edge-triggered epoll) calls this on a new connection, so the pump
    /// reads (and touches its storage) only once input arrived.
    pub fn clear_readable(&mut self) {
        self.readable = false;
    }

    /// The connection may take output (a readiness event).
    pub fn set_writable(&mut self) {
        self.writable = true;
    }

    /// The readiness event reported the peer's FIN or an error: the next
    /// drive reads until the transport reports it.
    pub fn set_read_closed(&mut self) {
        self.readable = true;
        self.read_closed = true;
    }

    /// Both directions may be ready: for level-triggered or polled
    /// transports (smoltcp, blocking sockets), call before every drive.
    ///
    /// A blocking transport must not block past [`Pump::poll_timeout`], or
    /// the idle, drain and linger deadlines never fire: give the socket
    /// read and write timeouts (at most `poll_timeout() - now`) and report a
    /// call that timed out as [`ReadOutcome::WouldBlock`] /
    /// [`WriteOutcome::WouldBlock`], not as a failure.
    pub fn set_ready(&mut self) {
        self.readable = true;
        self.writable = true;
    }

    /// Whether the session is over and the pump is lingering or released.
    pub fn is_finishing(&self) -> bool {
        self.phase != Phase::Serving
    }

    /// Whether the connection is released: [`Next::Release`] was returned,
    /// or the pump is [vacant](Pump::vacant).
    pub fn is_released(&self) -> bool {
        matches!(self.phase, Phase::Released(_))
    }

    /// Closes gracefully at once: what the session holds is still echoed,
    /// then FIN; input that arrives later is read and discarded while the
    /// pump lingers (a server shutdown wants [`Pump::close_when_idle`]).
    pub fn close(&mut self, now: Instant) {
        self.session.close(now);
    }

    /// A server's graceful shutdown: the connection goes on echoing what
    /// its peer sends, including bytes already sent but not read yet, and
    /// closes (FIN) once nothing is left to echo and no byte moved for
    /// [`IDLE_QUIET`] ([`Session::close_when_quiet`]); one quiet before
    /// closes on the next drive. A peer that never stops sending keeps it
    /// open: the adapter's grace period bounds that ([`Pump::abort`]).
    /// ([`Pump::close`] stopped taking input at once, and what the peer had
    /// sent was read after the FIN and discarded: an echo cut short behind
    /// a clean end.) It takes effect on the next [`Pump::drive`]. (Feature
    /// `shutdown`.)
    #[cfg(feature = "shutdown")]
    pub fn close_when_idle(&mut self) {
        self.session.close_when_quiet(IDLE_QUIET);
    }

    /// Aborts: the next drive releases with [`Teardown::Reset`] (or
    /// [`Teardown::Abandon`] while lingering after a close; a pump waiting
    /// to reset an aborted session resets).
    pub fn abort(&mut self, now: Instant) {
        match self.phase {
            Phase::Serving => self.session.abort(now),
            Phase::Lingering { .. } => self.cut_short = true,
            Phase::Released(_) => {}
        }
    }

    /// The adapter stops at once (a worker exiting on an abort): ends the
    /// session without further I/O and counts it as [`Pump::drive`] would
    /// after [`Pump::abort`]: a running session as aborted
    /// ([`AbortReason::Local`](crate::AbortReason::Local)), a linger as
    /// cut short ([`StreamCounters::lingered`]; an aborted session waiting
    /// for its echo's delivery was counted already, and is reset). Returns how to release the
    /// socket, or `None` if it was already released (nothing counted).
    pub fn stop(&mut self, now: Instant, counters: &mut StreamCounters) -> Option<Teardown> {
        // A running session ends now; a linger's close may not be counted
        // yet (see `Transport::queues_output`).
        let (counted, how) = match self.phase {
            Phase::Serving => {
                self.session.abort(now);
                (false, Teardown::Reset)
            }
            Phase::Lingering { .. } if self.resets_after() => (true, Teardown::Reset),
            Phase::Lingering { .. } => {
                counters.lingered += 1;
                (!self.close_uncounted, Teardown::Abandon)
            }
            Phase::Released(_) => return None,
        };
        if !counted {
            self.close_uncounted = false;
            self.count_end(counters);
        }
        let _ = self.release(how);
        self.update_gauge(counters);
        Some(how)
    }

    /// The next instant at which [`Pump::drive`] has work to do even without
    /// readiness: a session deadline, the end of the linger, or at once
    /// (`Instant::ZERO`) after [`Pump::close`] or [`Pump::abort`] ended the
    /// session (the next drive sends the FIN or the reset).
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.phase {
            // Ended by `close` or `abort`: the next drive sends the FIN or
            // the reset, at once.
            Phase::Serving => self.session.deadline(Some(Instant::ZERO)),
            Phase::Lingering { .. } if self.cut_short => Some(Instant::ZERO),
            Phase::Lingering { since, .. } => {
                let end = since + self.session.config().linger;
                #[cfg(feature = "deliver_before_reset")]
                if let Some(recheck) = self.reset_after {
                    return Some(end.min(recheck.at));
                }
                Some(end)
            }
            Phase::Released(_) => None,
        }
    }

    /// The session's next event to log (see [`Session::poll_event`]).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.session.poll_event()
    }

    /// Moves bytes between `io` and the session until nothing moves, the
    /// session ends, or `budget` bytes were read; fires due deadlines;
    /// counts into `counters`; says what to do next.
    ///
    /// A `budget` of 0 is taken as 1: every drive makes progress.
    /// Calling it without readiness or before a deadline is harmless.
    pub fn drive<T: Transport + ?Sized>(
        &mut self,
        now: Instant,
        io: &mut T,
        budget: usize,
        counters: &mut StreamCounters,
    ) -> Next {
        let budget = budget.max(1);
        let next = match self.phase {
            Phase::Serving => {
                let now = self.session.advance(now);
                self.session.handle_timeout(now);
                let next = self.serve(now, io, budget, counters);
                if self.session.is_terminal() {
                    self.finish(now, io, budget, counters)
                } else {
                    next
                }
            }
            // Time never goes backwards, in the linger too.
            Phase::Lingering { .. } => {
                let now = self.session.advance(now);
                self.linger(now, io, budget, counters)
            }
            Phase::Released(how) => Next::Release(how),
        };
        self.update_gauge(counters);
        next
    }

    /// The echo loop proper.
    fn serve<T: Transport + ?Sized>(
        &mut self,
        now: Instant,
        io: &mut T,
        budget: usize,
        counters: &mut StreamCounters,
    ) -> Next {
        let mut budget = budget;
        // Output first: what is pending leaves before more input is taken
        // (a blocking transport would otherwise sit in a read with echo
        // still queued). Streaming: a read that filled its buffer means
        // more input is waiting, so its echo is written with the `more`
        // hint and the transport sends a few large segments instead of one
        // per chunk. Ping-pong traffic (short reads) is written without it,
        // and anything held back is flushed before returning.
        let mut more_input = false;
        let mut held_back = false;
        loop {
            let mut progress = false;
            if self.writable {
                let out = self.session.transmit_buffer();
                if !out.is_empty() {
                    let offered = out.len();
                    let more = more_input && self.readable && budget > 0;
                    match io.write(out, more) {
                        WriteOutcome::Sent(n) if n > 0 => {
                            let n = n.min(offered);
                            held_back = more;
                            // n <= what was offered: cannot fail.
                            let _ = self.session.commit_sent(now, n);
                            counters.bytes_out += n as u64;
                            if n < offered {
                                self.writable = false;
                            }
                        }
                        WriteOutcome::Sent(_) | WriteOutcome::WouldBlock => {
                            self.writable = false;
                        }
                        WriteOutcome::Failed(failure) => {
                            self.writable = false;
                            self.fail(now, failure);
                        }
                    }
                    progress = true;
                }
            }
            if self.readable && self.writable && budget > 0 && self.session.can_pass_through() {
                // Raw echo with nothing held: what the transport already
                // holds goes straight to its output (see
                // `Transport::pass_through`); anything else takes the
                // buffered path below.
                let n = io.pass_through(budget).min(budget);
                if n > 0 {
                    // The session allowed it just now: cannot fail.
                    let _ = self.session.commit_passed_through(now, n);
                    counters.bytes_in += n as u64;
                    counters.bytes_out += n as u64;
                    budget -= n;
                    continue;
                }
            }
            if self.readable && budget > 0 && io.read_would_block() {
                // As a read returning `WouldBlock`, without the buffer.
                self.readable = false;
                progress = true;
            } else if self.readable && budget > 0 {
                let buf = self.session.receive_buffer();
                if !buf.is_empty() {
                    let want = buf.len().min(budget);
                    match io.read(&mut buf[..want]) {
                        ReadOutcome::Data(n) if n > 0 => {
                            let n = n.min(want);
                            // n <= want <= what was offered: cannot fail.
                            let _ = self.session.commit_received(now, n);
                            counters.bytes_in += n as u64;
                            budget -= n;
                            more_input = n == want;
                            // A short read drained the transport, unless a
                            // FIN or error is still to be read.
                            if n < want && !self.read_closed && !io.read_pending() {
                                self.readable = false;
                            }
                        }
                        ReadOutcome::Data(_) | ReadOutcome::Eof => {
                            self.readable = false;
                            self.session.handle_peer_fin(now);
                        }
                        ReadOutcome::WouldBlock => self.readable = false,
                        ReadOutcome::Failed(failure) => {
                            self.readable = false;
                            self.fail(now, failure);
                        }
                    }
                    progress = true;
                }
            }
            if !progress || self.session.is_terminal() {
                break;
            }
        }
        // Output the transport queued of its own (TLS records the socket
        // did not take) leaves when the connection is writable again.
        if held_back || (self.writable && io.unacknowledged() > 0) {
            io.flush();
        }
        let read = self.session.wants_read();
        let write = self.session.wants_write();
        if budget == 0 && ((self.readable && read) || (self.writable && write)) {
            Next::Yield
        } else {
            Next::Wait { read, write }
        }
    }

    fn fail(&mut self, now: Instant, failure: Failure) {
        match failure {
            Failure::Reset => self.session.handle_peer_reset(now),
            Failure::TimedOut => self.session.handle_transport_timeout(now),
        }
    }

    /// The session just ended: count it, then reset or start lingering.
    fn finish<T: Transport + ?Sized>(
        &mut self,
        now: Instant,
        io: &mut T,
        budget: usize,
        counters: &mut StreamCounters,
    ) -> Next {
        // A transport with output of its own still queued counts a graceful
        // close once it is delivered or failed (see `Transport::queues_output`).
        if io.queues_output() && matches!(self.session.state(), State::Closed(_)) {
            self.close_uncounted = true;
        } else {
            self.count_end(counters);
        }
        match self.session.state() {
            // What the peer sent ended it: the whole units before are
            // echoed, and the reset waits for them to be delivered.
            #[cfg(feature = "deliver_before_reset")]
            State::Aborted(
                crate::AbortReason::LineTooLong { .. }
                | crate::AbortReason::FrameTooLarge { .. }
                | crate::AbortReason::TruncatedFrame { .. },
            ) if io.unsent_before_reset() > 0 => {
                io.flush();
                self.reset_after = Some(Recheck::after_abort(now));
                self.phase = Phase::Lingering {
                    since: now,
                    unacknowledged: io.unsent_before_reset(),
                };
                self.linger(now, io, budget, counters)
            }
            State::Aborted(_) => self.release(Teardown::Reset),
            State::Closed(_) => {
                io.flush();
                io.shutdown_write();
                self.phase = Phase::Lingering {
                    since: now,
                    unacknowledged: io.unacknowledged(),
                };
                self.linger(now, io, budget, counters)
            }
            // Not terminal: unreachable from `drive`.
            _ => Next::Wait {
                read: false,
                write: false,
            },
        }
    }

    /// After a graceful close: discard input until the peer's FIN, and wait
    /// for delivery, within the linger time since the last progress.
    fn linger<T: Transport + ?Sized>(
        &mut self,
        now: Instant,
        io: &mut T,
        budget: usize,
        counters: &mut StreamCounters,
    ) -> Next {
        let Phase::Lingering {
            mut since,
            unacknowledged,
        } = self.phase
        else {
            return Next::Wait {
                read: false,
                write: false,
            };
        };
        // After an abort it ends in the reset, however it ends.
        let done = if self.resets_after() {
            Teardown::Reset
        } else {
            Teardown::Close
        };
        if self.cut_short {
            if self.resets_after() {
                return self.release(done);
            }
            self.count_deferred_close(io, counters);
            return self.abandon(counters);
        }
        let mut discarded = 0usize;
        while !self.session.peer_finished() && self.readable && discarded < budget {
            let scratch = self.session.scratch();
            let want = scratch.len().min(budget - discarded);
            if want == 0 {
                break;
            }
            match io.read(&mut scratch[..want]) {
                ReadOutcome::Data(n) if n > 0 => {
                    discarded += n;
                    counters.bytes_in += n as u64;
                    counters.bytes_discarded += n as u64;
                }
                ReadOutcome::Data(_) | ReadOutcome::Eof => self.session.handle_peer_fin(now),
                ReadOutcome::WouldBlock => self.readable = false,
                // Nothing can be delivered any more: done.
                ReadOutcome::Failed(_) => {
                    self.count_deferred_close(io, counters);
                    return self.release(done);
                }
            }
        }
        if self.writable && io.unacknowledged() > 0 {
            io.flush();
        }
        // Nothing can be delivered any more: done, as after a failed read.
        // A close not yet counted (see `Transport::queues_output`) never got
        // its echo to the peer: it ends as reset by the peer, as where the
        // write itself fails.
        if io.output_failed() {
            if io.queues_output() && self.close_uncounted {
                let _ = self.session.handle_output_lost();
            }
            self.count_deferred_close(io, counters);
            return self.release(done);
        }
        let left = if self.resets_after() {
            io.unsent_before_reset()
        } else {
            io.unacknowledged()
        };
        if left == 0 {
            // Delivered: the graceful close stands.
            self.count_deferred_close(io, counters);
        }
        if left < unacknowledged {
            since = now;
        }
        self.phase = Phase::Lingering {
            since,
            unacknowledged: left,
        };
        if left == 0 && (self.resets_after() || self.session.peer_finished()) {
            return self.release(done);
        }
        if now >= since + self.session.config().linger {
            if self.resets_after() {
                return self.release(done);
            }
            self.count_deferred_close(io, counters);
            return self.abandon(counters);
        }
        if discarded >= budget && self.readable {
            return Next::Yield;
        }
        #[cfg(feature = "deliver_before_reset")]
        if let Some(recheck) = self.reset_after
            && now >= recheck.at
        {
            self.reset_after = Some(recheck.next(now));
        }
        Next::Wait {
            read: !self.session.peer_finished(),
            // Only output of the transport's own waits for writability;
            // a kernel's send queue drains by itself.
            write: if self.resets_after() {
                io.unacknowledged() > 0
            } else {
                left > 0
            },
        }
    }

    /// Whether the linger ends in a reset: the session aborted for what the
    /// peer sent, and waits for its echo to be delivered first.
    fn resets_after(&self) -> bool {
        #[cfg(feature = "deliver_before_reset")]
        return self.reset_after.is_some();
        #[cfg(not(feature = "deliver_before_reset"))]
        false
    }

    /// Counts how the session ended: the bytes it discarded, and its
    /// reason, graceful or not. Once: when it becomes terminal, or for a
    /// close over a transport that queues output, when that output was
    /// delivered or failed ([`Transport::queues_output`]).
    fn count_end(&self, counters: &mut StreamCounters) {
        counters.bytes_discarded += self.session.stats().bytes_discarded;
        match self.session.state() {
            State::Aborted(reason) => counters.aborted.count(reason),
            State::Closed(reason) => counters.closed.count(reason),
            _ => {}
        }
    }

    /// Counts a close [`Pump::finish`] left uncounted, once.
    fn count_deferred_close<T: Transport + ?Sized>(
        &mut self,
        io: &T,
        counters: &mut StreamCounters,
    ) {
        if io.queues_output() && self.close_uncounted {
            self.close_uncounted = false;
            self.count_end(counters);
        }
    }

    /// Gives up on a linger (its time ran out, or it was cut short). The
    /// caller counted the close first.
    fn abandon(&mut self, counters: &mut StreamCounters) -> Next {
        counters.lingered += 1;
        self.release(Teardown::Abandon)
    }

    fn release(&mut self, how: Teardown) -> Next {
        self.phase = Phase::Released(how);
        Next::Release(how)
    }

    /// Keeps the counters' `buffered` gauge equal to the sum over live sessions.
    fn update_gauge(&mut self, counters: &mut StreamCounters) {
        let now = if self.is_released() {
            0
        } else {
            self.session.buffered()
        };
        if now != self.buffered {
            counters.buffered = counters
                .buffered
                .wrapping_add(now as u64)
                .wrapping_sub(self.buffered as u64);
            self.buffered = now;
        }
    }
}
