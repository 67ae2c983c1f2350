//! The stream session: one echo connection (TCP, Unix stream, TLS), server side.
//!
//! ```text
//!                 commit_received / commit_sent
//!                  (echo what the mode releases)
//!                        +------+
//!                        v      |
//!   new() ---------->  [Open] --+-- close() / idle timeout --> [Closing] --+
//!                        |                                       |         |
//!             handle_peer_fin                       everything sent        |
//!                        v                                       v         |
//!                [PeerHalfClosed] -- everything sent -----> [Closed(reason)] |
//!                                                                          |
//!   any state but Closed, on: overlong line, oversized frame,              |
//!   truncated frame at FIN, drain timeout, transport failure, abort()     |
//!                        ----------------------------> [Aborted(reason)] <-+
//! ```
//!
//! The session works over storage the caller owns (an array, a boxed slice,
//! a `&mut [u8]` into a `static`): `[ sent | pending | held | free ]`. The
//! adapter reads into *free* ([`Session::receive_buffer`]) and writes from
//! *pending* ([`Session::transmit_buffer`]). The mode decides how much of
//! *held* becomes *pending*: everything (`raw`), up to the last `\n`
//! (`lines`), up to the last whole frame (`frames`). When nothing is free the
//! session offers an empty receive buffer: the adapter stops reading and TCP
//! flow control slows the peer. Bytes are never dropped, and the bytes moved
//! to reclaim space never exceed the bytes received plus the bytes sent
//! (`SessionStats::bytes_moved`).
//!
//! Most adapters do not call these methods one by one: the
//! [`Pump`](crate::pump::Pump) runs the whole read → commit → write →
//! commit → close-or-reset loop over a [`Transport`](crate::pump::Transport).

use core::fmt;

mod buffer;
mod ending;
mod reports;

use buffer::EchoBuffer;
pub use reports::{AbortReason, CloseReason, CommitError, Event, State};

use crate::frames::{self, FrameTooLarge};
use crate::lines;
use crate::mode::Mode;
use crate::time::{Duration, Instant};

/// How a session behaves; chosen per listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SessionConfig {
    /// How the stream is cut into echoed units.
    pub mode: Mode,
    /// Close gracefully after this long with no byte received or sent while
    /// nothing is pending. `None` disables it.
    pub idle_timeout: Option<Duration>,
    /// Abort when bytes are pending but the peer has taken none of them for
    /// this long (it stopped reading). `None` disables it.
    pub drain_timeout: Option<Duration>,
    /// After a graceful close, how long the [`Pump`](crate::pump::Pump)
    /// waits for the peer's FIN and for the transport to deliver what was
    /// sent, counted from the last progress of that delivery.
    pub linger: Duration,
}

impl SessionConfig {
    /// `raw` mode, 300 s idle timeout, 30 s drain timeout, 2 s linger.
    pub const DEFAULT: SessionConfig = SessionConfig {
        mode: Mode::Raw,
        idle_timeout: Some(Duration::from_secs(300)),
        drain_timeout: Some(Duration::from_secs(30)),
        linger: Duration::from_secs(2),
    };
}

impl Default for SessionConfig {
    /// [`SessionConfig::DEFAULT`].
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Counters for one session.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SessionStats {
    /// Bytes received from the peer.
    pub bytes_in: u64,
    /// Bytes echoed back to the peer.
    pub bytes_out: u64,
    /// Complete units released for echo: lines in `lines` mode, frames in
    /// `frames` mode (a final unterminated line at FIN counts as one). Always
    /// 0 in `raw` mode, which has no units.
    pub units: u64,
    /// Bytes received but never echoed because the session closed or aborted
    /// first (an incomplete frame at a local close, an incomplete unit at an
    /// idle timeout, or pending bytes at an abort; a `lines` remainder is
    /// echoed at a local close). Zero for every session that ends normally.
    pub bytes_discarded: u64,
    /// Bytes moved inside the buffer to reclaim space; never more than
    /// `bytes_in + bytes_out`.
    pub bytes_moved: u64,
}

/// One echo connection over caller-provided storage `S`. See the
/// [module docs](self).
#[derive(Clone)]
pub struct Session<S> {
    config: SessionConfig,
    state: State,
    buf: EchoBuffer<S>,
    /// Latest time seen (time never goes backwards inside the session).
    now: Instant,
    /// Last time a byte moved in either direction.
    last_activity: Instant,
    /// Since when the pending bytes have waited without progress.
    pending_since: Instant,
    /// Why a `Closing` session will be `Closed`.
    closing: CloseReason,
    /// Why the idle timeout closes it: `IdleTimeout`, or `Local` after
    /// [`Session::close_when_quiet`].
    #[cfg(feature = "shutdown")]
    idle_reason: CloseReason,
    /// The peer's FIN was seen (in any state).
    peer_finished: bool,
    /// `Event::PeerFinished` is waiting for `poll_event`.
    fin_event: bool,
    /// The terminal event was handed out.
    end_reported: bool,
    stats: SessionStats,
}

impl<S> fmt::Debug for Session<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("capacity", &self.buf.capacity())
            .field("state", &self.state)
            .field("stats", &self.stats)
            .finish()
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> Session<S> {
    /// A new open session over `storage`, whose length is the buffer size:
    /// the longest line (`lines`) or frame with its header (`frames`) that
    /// can be echoed, and the most bytes held for a peer that does not read.
    ///
    /// The storage must hold at least 1 byte (an empty one could never
    /// read: debug builds panic on it), and at least 2 in `frames` mode so
    /// that an empty frame (its 2-byte header) fits; a 1-byte buffer aborts
    /// on the first frame.
    pub fn new(storage: S, config: SessionConfig, now: Instant) -> Self {
        debug_assert!(
            !storage.as_ref().is_empty(),
            "Session::new: empty storage can never read; give it at least 1 byte"
        );
        Session {
            config,
            state: State::Open,
            buf: EchoBuffer::new(storage),
            now,
            last_activity: now,
            pending_since: now,
            closing: CloseReason::Local,
            #[cfg(feature = "shutdown")]
            idle_reason: CloseReason::IdleTimeout,
            peer_finished: false,
            fin_event: false,
            end_reported: false,
            stats: SessionStats::default(),
        }
    }

    /// Re-arms this session for a new connection in place, keeping its
    /// storage (fixed pools of sessions on a microcontroller). The old
    /// session is forgotten, whatever its state: nothing counts its end
    /// ([`Pump::reset`](crate::Pump::reset) does, and says how to release a
    /// connection that was still live).
    pub fn reset(&mut self, config: SessionConfig, now: Instant) {
        self.config = config;
        self.state = State::Open;
        self.buf.rearm();
        self.now = now;
        self.last_activity = now;
        self.pending_since = now;
        self.peer_finished = false;
        self.fin_event = false;
        self.end_reported = false;
        #[cfg(feature = "shutdown")]
        {
            self.idle_reason = CloseReason::IdleTimeout;
        }
        self.stats = SessionStats::default();
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// The current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// Whether the session is over (`Closed` or `Aborted`): the adapter
    /// releases the connection as [`State`] says.
    pub fn is_terminal(&self) -> bool {
        matches!(self.state, State::Closed(_) | State::Aborted(_))
    }

    /// Whether the peer's FIN was seen.
    pub fn peer_finished(&self) -> bool {
        self.peer_finished
    }

    /// The counters.
    pub fn stats(&self) -> SessionStats {
        SessionStats {
            bytes_moved: self.buf.moved(),
            ..self.stats
        }
    }

    /// The buffer size (the storage's length).
    pub fn capacity(&self) -> usize {
        self.buf.capacity()
    }

    /// The storage the session was given (its bytes in use are the ones
    /// [`Session::transmit_buffer`] names, and those held back in `lines`
    /// and `frames` mode). A caller's storage type can tell from it, for
    /// example, whether the session ever wrote into it.
    pub fn storage(&self) -> &S {
        self.buf.storage()
    }

    /// The storage, while the session holds no bytes in it (none pending,
    /// none held): its contents mean nothing then, and the session reaches
    /// its bytes through `AsRef`/`AsMut` each time it uses them, so the
    /// caller may take the memory back (to a pool of buffers that
    /// connections share) and give it out again on the next `as_mut`, as
    /// long as the storage keeps its length. None while bytes are held.
    pub fn idle_storage_mut(&mut self) -> Option<&mut S> {
        if self.buf.buffered() == 0 {
            Some(self.buf.storage_mut())
        } else {
            None
        }
    }

    /// Bytes held in the buffer (pending plus held), never more than the capacity.
    pub fn buffered(&self) -> usize {
        self.buf.buffered()
    }

    /// Whether the session accepts input now (a non-empty
    /// [`Session::receive_buffer`]).
    pub fn wants_read(&self) -> bool {
        self.accepts_input() && self.buf.free_len() > 0
    }

    /// `Open` and the peer not finished: in `frames` mode a session stays
    /// `Open` after the FIN while whole frames before an incomplete one are
    /// still to be sent ([`Session::handle_peer_fin`]).
    fn accepts_input(&self) -> bool {
        self.state == State::Open && !self.peer_finished
    }

    /// Whether bytes are waiting to be written to the peer.
    pub fn wants_write(&self) -> bool {
        self.buf.pending_len() > 0
    }

    /// The free space to read socket data into.
    ///
    /// Empty when the session accepts no input: the buffer is full
    /// (backpressure: stop reading until [`Session::commit_sent`] frees
    /// space), the session is no longer `Open`, or the peer finished (in
    /// `frames` mode a session stays `Open` after the FIN while whole frames
    /// before an incomplete one are sent). After writing `n` bytes at
    /// the start of it, call [`Session::commit_received`].
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        if !self.accepts_input() {
            return &mut [];
        }
        self.buf.free_mut()
    }

    /// Records that `n` bytes were written at the start of
    /// [`Session::receive_buffer`], and releases what the mode allows.
    ///
    /// `n == 0` is a no-op (end of stream is [`Session::handle_peer_fin`]).
    pub fn commit_received(&mut self, now: Instant, n: usize) -> Result<(), CommitError> {
        let now = self.advance(now);
        let available = if self.accepts_input() {
            self.buf.free_now()
        } else {
            0
        };
        if n > available {
            return Err(CommitError::TooMany { n, available });
        }
        if n == 0 {
            return Ok(());
        }
        self.buf.commit_received(n);
        self.stats.bytes_in += n as u64;
        self.last_activity = now;
        self.release(now, n);
        Ok(())
    }

    /// The peer finished sending (a read returned 0).
    ///
    /// In `Open`: in `lines` mode an unterminated last line is echoed as it
    /// is (nothing the peer sent is lost); in `frames` mode an incomplete
    /// last frame aborts the session with [`AbortReason::TruncatedFrame`]
    /// once the whole frames before it were sent (until then the session
    /// stays `Open`, taking no input). In any other state it is only recorded ([`Session::peer_finished`]):
    /// no state change and no second event.
    pub fn handle_peer_fin(&mut self, now: Instant) {
        let now = self.advance(now);
        let first = !self.peer_finished;
        self.peer_finished = true;
        if self.state != State::Open || !first {
            return;
        }
        let held = self.buf.held_len();
        if held > 0 {
            match self.config.mode {
                Mode::Frames => {
                    self.release_frames(now);
                    return;
                }
                Mode::Lines => {
                    self.stats.units += 1;
                    self.release_len(now, held);
                }
                // Raw releases everything as it arrives: nothing is held.
                Mode::Raw => {}
            }
        }
        self.state = State::PeerHalfClosed;
        self.fin_event = true;
        self.finish_if_drained(CloseReason::PeerFinished);
    }

    /// The connection was reset or failed (broken pipe, any fatal socket
    /// error): [`AbortReason::PeerReset`].
    pub fn handle_peer_reset(&mut self, now: Instant) {
        self.fail(now, AbortReason::PeerReset);
    }

    /// The transport gave up on the connection: [`AbortReason::TimedOut`].
    pub fn handle_transport_timeout(&mut self, now: Instant) {
        self.fail(now, AbortReason::TimedOut);
    }

    /// The transport could not deliver echo it had already taken (a send it
    /// queued failed after the session closed: the peer was gone). A
    /// `Closed` session becomes `Aborted(PeerReset)`, as it would have had
    /// the write itself failed, and its end is reported again
    /// ([`Session::poll_event`]). Returns the close it replaced; in any
    /// other state nothing changes and it returns `None`.
    pub fn handle_output_lost(&mut self) -> Option<CloseReason> {
        let State::Closed(reason) = self.state else {
            return None;
        };
        self.state = State::Aborted(AbortReason::PeerReset);
        self.end_reported = false;
        debug!("session aborted: its echo was not delivered");
        Some(reason)
    }

    /// Whether input may skip the buffer now: an open `raw` session holding
    /// no byte echoes whatever arrives next unchanged and first, so a
    /// transport that already holds received bytes may move them straight
    /// to its output ([`Session::commit_passed_through`]) without changing
    /// what the peer sees or its order. False in `lines` and `frames` mode
    /// (the mode decides what is echoed), after the peer's FIN or a close,
    /// and while any byte is held or pending.
    pub fn can_pass_through(&self) -> bool {
        self.config.mode == Mode::Raw && self.state == State::Open && self.buf.buffered() == 0
    }

    /// Records that `n` bytes went from the peer's input straight to its
    /// output while [`Session::can_pass_through`] held: counted as received
    /// and as sent, and as activity for the idle timeout. The buffer is not
    /// touched.
    pub fn commit_passed_through(&mut self, now: Instant, n: usize) -> Result<(), CommitError> {
        let now = self.advance(now);
        if n == 0 {
            return Ok(());
        }
        if !self.can_pass_through() {
            return Err(CommitError::NoPassThrough);
        }
        self.stats.bytes_in += n as u64;
        self.stats.bytes_out += n as u64;
        self.last_activity = now;
        self.pending_since = now;
        Ok(())
    }

    /// The bytes ready to be written to the peer. After `n` of them were
    /// written, call [`Session::commit_sent`].
    pub fn transmit_buffer(&self) -> &[u8] {
        self.buf.pending()
    }

    /// Records that the first `n` bytes of [`Session::transmit_buffer`] were
    /// written; a short write is normal, the rest stays pending.
    pub fn commit_sent(&mut self, now: Instant, n: usize) -> Result<(), CommitError> {
        let now = self.advance(now);
        let available = self.buf.pending_len();
        if n > available {
            return Err(CommitError::TooMany { n, available });
        }
        if n == 0 {
            return Ok(());
        }
        self.buf.commit_sent(n);
        self.stats.bytes_out += n as u64;
        self.last_activity = now;
        self.pending_since = now;
        match self.state {
            State::PeerHalfClosed => self.finish_if_drained(CloseReason::PeerFinished),
            State::Closing => self.finish_if_drained(self.closing),
            // A frame header announcing too much, or a frame the peer's FIN
            // cut short, waits behind the whole frames before it; with
            // those sent, it aborts the session.
            State::Open if self.config.mode == Mode::Frames && !self.wants_write() => {
                self.release_frames(now)
            }
            _ => {}
        }
        Ok(())
    }

    /// The whole storage as scratch space, once the session is terminal
    /// (no byte is held any more); empty before.
    pub(crate) fn scratch(&mut self) -> &mut [u8] {
        if self.is_terminal() {
            self.buf.scratch()
        } else {
            &mut []
        }
    }

    // --- internals ---

    /// Clamps `now` so time never goes backwards inside the session.
    pub(crate) fn advance(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    /// Releases what the mode allows from the held bytes, the last
    /// `received` of which just arrived.
    fn release(&mut self, now: Instant, received: usize) {
        let capacity = self.buf.capacity();
        let held = self.buf.held();
        let (len, units) = match self.config.mode {
            Mode::Raw => (held.len(), 0),
            Mode::Lines => {
                // What was held before has no `\n` (every line was
                // released): only the new bytes are looked at, or a long
                // line arriving in small reads costs time quadratic in its
                // length.
                let old = held.len().saturating_sub(received);
                let (len, units) = lines::complete_prefix(held.get(old..).unwrap_or_default());
                if len == 0 {
                    if held.len() == capacity {
                        // No line ends in a full buffer: none ever will.
                        self.abort_with(AbortReason::LineTooLong { limit: capacity });
                    }
                    return;
                }
                (old + len, units)
            }
            Mode::Frames => match frames::complete_prefix(held, capacity) {
                Ok(found) => found,
                // Behind frames not yet sent it waits for them:
                // `commit_sent` releases again once they are.
                Err(_) if self.wants_write() => return,
                Err(FrameTooLarge { len, limit }) => {
                    self.abort_with(AbortReason::FrameTooLarge { len, limit });
                    return;
                }
            },
        };
        self.stats.units += units;
        self.release_len(now, len);
    }

    /// `frames` mode: releases the whole frames held. Once the peer
    /// finished and they were all sent, what is left (a frame the FIN cut
    /// short) aborts the session; a header announcing too much is the
    /// cause instead, not the FIN ([`Session::release`]).
    fn release_frames(&mut self, now: Instant) {
        self.release(now, 0);
        let held = self.buf.held_len();
        if self.state == State::Open && self.peer_finished && held > 0 && !self.wants_write() {
            self.abort_with(AbortReason::TruncatedFrame { received: held });
        }
    }

    fn release_len(&mut self, now: Instant, len: usize) {
        if len > 0 && self.buf.release(len) {
            // Pending was empty: the drain clock starts now.
            self.pending_since = now;
        }
    }
}

#[cfg(test)]
mod tests;
