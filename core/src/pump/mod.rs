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
use crate::session::{Event, Session, SessionConfig};
use crate::time::Instant;

mod linger;
#[cfg(test)]
mod tests;
mod transport;

#[cfg(feature = "deliver_before_reset")]
use linger::Recheck;
pub use transport::{Failure, ReadOutcome, Transport, WriteOutcome};

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
    /// to reset an aborted session resets). A session that already ended
    /// cleanly but was not driven since ([`Pump::close`] with nothing left
    /// to echo) keeps that end: the next drive sends its FIN and lingers,
    /// and an abort then cuts the linger short.
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
    /// session ends, or `budget` bytes were read; then fires due deadlines
    /// (so input or room already known ready when one is reached moves
    /// first: the peer was not idle); counts into `counters`; says what to
    /// do next.
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
                // Bytes first, then deadlines: input (or room for echo)
                // ready when a deadline is reached means the peer was not
                // idle, and a shutdown's quiet (`close_when_idle`) must not
                // close a connection before reading what its peer sent
                // (the adapter may not have driven that readiness yet).
                // A deadline that ends or closes the session is served
                // again at once (a held line echoed, then FIN).
                let mut fired = false;
                let next = loop {
                    let next = self.serve(now, io, budget, counters);
                    // (A terminal session has no deadline to fire.)
                    if fired || !self.session.fire_timeout(now) {
                        break next;
                    }
                    fired = true;
                };
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
            counters.rebuffer(self.buffered, now);
            self.buffered = now;
        }
    }
}
