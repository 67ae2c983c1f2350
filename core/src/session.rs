//! The stream session: one echo connection (TCP or Unix stream), server side.
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
//!                [PeerHalfClosed] -- everything sent -------> [Closed]     |
//!                                                                          |
//!   any state but Closed, on: overlong line, oversized frame,              |
//!   truncated frame at FIN, drain timeout, peer reset, abort()             |
//!                        ----------------------------> [Aborted(reason)] <-+
//! ```
//!
//! The session owns a buffer of `N` bytes laid out as
//! `[ sent | pending: released, not yet sent | held: received, unit incomplete | free ]`.
//! The adapter reads into *free* ([`Session::receive_buffer`]) and writes from
//! *pending* ([`Session::transmit_buffer`]). The mode decides how much of
//! *held* becomes *pending*: everything (`raw`), up to the last `\n`
//! (`lines`), up to the last whole frame (`frames`). When nothing is free the
//! session offers an empty receive buffer: the adapter stops reading and TCP
//! flow control slows the peer. Bytes are never dropped.
//!
//! Space is reclaimed without copying when everything has been sent (the
//! common case) and otherwise by moving the live bytes to the front, only
//! when that gains at least as many bytes as it moves, so the cost per byte
//! stays bounded.

use core::fmt;

use heapless::Deque;

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
}

impl Default for SessionConfig {
    /// `raw` mode, 300 s idle timeout, 30 s drain timeout.
    fn default() -> Self {
        SessionConfig {
            mode: Mode::Raw,
            idle_timeout: Some(Duration::from_secs(300)),
            drain_timeout: Some(Duration::from_secs(30)),
        }
    }
}

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum State {
    /// Reading and echoing.
    Open,
    /// The peer sent FIN: no more input; echo what is queued, then close.
    PeerHalfClosed,
    /// We decided to close (local close or idle timeout): no more input;
    /// echo what is queued, then close.
    Closing,
    /// Done: the adapter closes the connection gracefully (FIN).
    Closed,
    /// Done with an error: the adapter resets the connection (RST).
    Aborted(AbortReason),
}

/// Why a session closed gracefully.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side and everything was echoed.
    PeerFinished,
    /// Nothing moved for the idle timeout.
    IdleTimeout,
    /// The adapter called [`Session::close`] (e.g. server shutdown).
    Local,
}

/// Why a session was aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AbortReason {
    /// `lines` mode: a line did not fit the session buffer.
    LineTooLong {
        /// The longest line accepted (the buffer size).
        limit: usize,
    },
    /// `frames` mode: a header announced a frame that cannot fit the buffer.
    FrameTooLarge {
        /// The frame's length on the wire, header included.
        len: usize,
        /// The largest frame accepted, header included.
        limit: usize,
    },
    /// `frames` mode: the peer finished in the middle of a frame.
    TruncatedFrame {
        /// The bytes of the incomplete frame that were received.
        received: usize,
    },
    /// Bytes were pending and the peer took none of them for the drain timeout.
    DrainTimeout,
    /// The connection was reset or failed.
    PeerReset,
    /// The adapter called [`Session::abort`].
    Local,
}

/// What a session reports to its adapter, for logging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event {
    /// The peer sent FIN.
    PeerFinished,
    /// The session closed gracefully.
    Closed(CloseReason),
    /// The session was aborted.
    Aborted(AbortReason),
}

/// The adapter committed more bytes than the buffer offered: an adapter bug.
/// The session is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CommitError {
    /// `n` bytes committed but only `available` were offered.
    TooMany {
        /// Bytes committed.
        n: usize,
        /// Bytes the buffer offered.
        available: usize,
    },
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
    /// first (an incomplete unit at a local close or idle timeout, or pending
    /// bytes at an abort). Zero for every session that ends normally.
    pub bytes_discarded: u64,
}

/// One echo connection with an `N`-byte buffer. See the [module docs](self).
#[derive(Clone)]
pub struct Session<const N: usize> {
    config: SessionConfig,
    state: State,
    buf: [u8; N],
    /// Start of pending bytes (everything before was sent).
    head: usize,
    /// End of pending bytes = start of held bytes.
    released: usize,
    /// End of received bytes = start of free space.
    tail: usize,
    /// Latest time seen (time never goes backwards inside the session).
    now: Instant,
    /// Last time a byte moved in either direction.
    last_activity: Instant,
    /// Since when the pending bytes have waited without progress.
    pending_since: Instant,
    events: Deque<Event, 4>,
    stats: SessionStats,
}

impl<const N: usize> fmt::Debug for Session<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Session")
            .field("capacity", &N)
            .field("state", &self.state)
            .field("pending", &(self.released - self.head))
            .field("held", &(self.tail - self.released))
            .field("stats", &self.stats)
            .finish()
    }
}

impl<const N: usize> Session<N> {
    /// A new open session.
    ///
    /// `N` must be at least 3 in `frames` mode so that an empty frame fits;
    /// smaller buffers abort on the first frame.
    pub fn new(config: SessionConfig, now: Instant) -> Self {
        Session {
            config,
            state: State::Open,
            buf: [0; N],
            head: 0,
            released: 0,
            tail: 0,
            now,
            last_activity: now,
            pending_since: now,
            events: Deque::new(),
            stats: SessionStats::default(),
        }
    }

    /// Re-arms this session for a new connection in place (no `N`-byte move;
    /// useful for fixed pools of sessions on a microcontroller).
    pub fn reset(&mut self, config: SessionConfig, now: Instant) {
        self.config = config;
        self.state = State::Open;
        self.head = 0;
        self.released = 0;
        self.tail = 0;
        self.now = now;
        self.last_activity = now;
        self.pending_since = now;
        self.events.clear();
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
        matches!(self.state, State::Closed | State::Aborted(_))
    }

    /// The counters.
    pub fn stats(&self) -> &SessionStats {
        &self.stats
    }

    /// Bytes held in the buffer (pending plus held), never more than `N`.
    pub fn buffered(&self) -> usize {
        self.tail - self.head
    }

    /// Whether the session accepts input now (see [`Session::receive_buffer`]).
    pub fn wants_read(&self) -> bool {
        self.state == State::Open && (self.tail < N || self.head > 0)
    }

    /// Whether bytes are waiting to be written to the peer.
    pub fn wants_write(&self) -> bool {
        self.released > self.head
    }

    /// The free space to read socket data into.
    ///
    /// Empty when the session accepts no input: the buffer is full
    /// (backpressure: stop reading until [`Session::commit_sent`] frees
    /// space) or the session is no longer `Open`. After writing `n` bytes at
    /// the start of it, call [`Session::commit_received`].
    pub fn receive_buffer(&mut self) -> &mut [u8] {
        if self.state != State::Open {
            return &mut [];
        }
        self.reclaim();
        &mut self.buf[self.tail..]
    }

    /// Records that `n` bytes were written at the start of
    /// [`Session::receive_buffer`], and releases what the mode allows.
    ///
    /// `n == 0` is a no-op (end of stream is [`Session::handle_peer_fin`]).
    pub fn commit_received(&mut self, now: Instant, n: usize) -> Result<(), CommitError> {
        let now = self.advance(now);
        let available = if self.state == State::Open {
            N - self.tail
        } else {
            0
        };
        if n > available {
            return Err(CommitError::TooMany { n, available });
        }
        if n == 0 {
            return Ok(());
        }
        self.tail += n;
        self.stats.bytes_in += n as u64;
        self.last_activity = now;
        self.release(now);
        Ok(())
    }

    /// The peer finished sending (a read returned 0).
    ///
    /// In `lines` mode an unterminated last line is echoed as it is (nothing
    /// the peer sent is lost); in `frames` mode an incomplete last frame
    /// aborts the session with [`AbortReason::TruncatedFrame`].
    pub fn handle_peer_fin(&mut self, now: Instant) {
        let now = self.advance(now);
        if !matches!(self.state, State::Open | State::Closing) {
            return;
        }
        let held = self.tail - self.released;
        if held > 0 {
            match self.config.mode {
                Mode::Frames => {
                    self.abort_with(AbortReason::TruncatedFrame { received: held });
                    return;
                }
                Mode::Lines => {
                    self.stats.units += 1;
                    self.release_to(now, self.tail);
                }
                Mode::Raw => self.release_to(now, self.tail),
            }
        }
        if self.state == State::Open {
            self.state = State::PeerHalfClosed;
        }
        self.push(Event::PeerFinished);
        self.finish_if_drained(CloseReason::PeerFinished);
    }

    /// The connection failed (reset, broken pipe, any fatal socket error).
    pub fn handle_peer_reset(&mut self, now: Instant) {
        self.advance(now);
        if !self.is_terminal() {
            self.abort_with(AbortReason::PeerReset);
        }
    }

    /// The bytes ready to be written to the peer. After `n` of them were
    /// written, call [`Session::commit_sent`].
    pub fn transmit_buffer(&self) -> &[u8] {
        &self.buf[self.head..self.released]
    }

    /// Records that the first `n` bytes of [`Session::transmit_buffer`] were
    /// written; a short write is normal, the rest stays pending.
    pub fn commit_sent(&mut self, now: Instant, n: usize) -> Result<(), CommitError> {
        let now = self.advance(now);
        let available = self.released - self.head;
        if n > available {
            return Err(CommitError::TooMany { n, available });
        }
        if n == 0 {
            return Ok(());
        }
        self.head += n;
        self.stats.bytes_out += n as u64;
        self.last_activity = now;
        self.pending_since = now;
        if self.head == self.tail {
            // Everything echoed: reclaim the whole buffer without copying.
            self.head = 0;
            self.released = 0;
            self.tail = 0;
        }
        match self.state {
            State::PeerHalfClosed => self.finish_if_drained(CloseReason::PeerFinished),
            State::Closing => self.finish_if_drained(CloseReason::Local),
            _ => {}
        }
        Ok(())
    }

    /// Closes gracefully: no more input; what is pending is still echoed,
    /// then the session is `Closed`. A `lines` remainder is echoed like at
    /// FIN; an incomplete frame cannot be and is counted as discarded.
    pub fn close(&mut self, now: Instant) {
        let now = self.advance(now);
        self.begin_close(now, CloseReason::Local);
    }

    /// Aborts at once ([`AbortReason::Local`]); pending bytes are discarded.
    pub fn abort(&mut self, now: Instant) {
        self.advance(now);
        if !self.is_terminal() {
            self.abort_with(AbortReason::Local);
        }
    }

    /// The next instant at which [`Session::handle_timeout`] has work to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_terminal() {
            None
        } else if self.wants_write() {
            self.config.drain_timeout.map(|d| self.pending_since + d)
        } else if self.state == State::Open {
            self.config.idle_timeout.map(|d| self.last_activity + d)
        } else {
            None
        }
    }

    /// Fires the deadlines that have passed; calling early does nothing.
    pub fn handle_timeout(&mut self, now: Instant) {
        let now = self.advance(now);
        match self.poll_timeout() {
            Some(deadline) if deadline <= now => {}
            _ => return,
        }
        if self.wants_write() {
            self.abort_with(AbortReason::DrainTimeout);
        } else {
            self.begin_close(now, CloseReason::IdleTimeout);
        }
    }

    /// The next event to log, oldest first.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    // --- internals ---

    /// Clamps `now` so time never goes backwards inside the session.
    fn advance(&mut self, now: Instant) -> Instant {
        if now > self.now {
            self.now = now;
        }
        self.now
    }

    fn push(&mut self, event: Event) {
        // At most three events are ever queued (PeerFinished, then one
        // terminal event), so the 4-slot queue cannot overflow; if an adapter
        // never polls, the oldest is kept and later ones are dropped.
        let _ = self.events.push_back(event);
    }

    /// Moves live bytes to the front when that gains at least as many bytes
    /// as it copies, or when there is no free space at all.
    fn reclaim(&mut self) {
        if self.head == 0 {
            return;
        }
        let live = self.tail - self.head;
        if self.head >= live || self.tail == N {
            self.buf.copy_within(self.head..self.tail, 0);
            self.released -= self.head;
            self.tail -= self.head;
            self.head = 0;
        }
    }

    /// Releases what the mode allows from the held bytes.
    fn release(&mut self, now: Instant) {
        let held = &self.buf[self.released..self.tail];
        let (len, units) = match self.config.mode {
            Mode::Raw => (held.len(), 0),
            Mode::Lines => lines::complete_prefix(held),
            Mode::Frames => match frames::complete_prefix(held, N) {
                Ok(found) => found,
                Err(FrameTooLarge { len, limit }) => {
                    self.abort_with(AbortReason::FrameTooLarge { len, limit });
                    return;
                }
            },
        };
        self.stats.units += units;
        self.release_to(now, self.released + len);
        if self.config.mode == Mode::Lines && self.tail - self.released == N {
            self.abort_with(AbortReason::LineTooLong { limit: N });
        }
    }

    fn release_to(&mut self, now: Instant, end: usize) {
        if end > self.released {
            if self.released == self.head {
                // Pending was empty: the drain clock starts now.
                self.pending_since = now;
            }
            self.released = end;
        }
    }

    fn begin_close(&mut self, now: Instant, reason: CloseReason) {
        if self.state != State::Open {
            return;
        }
        let held = self.tail - self.released;
        if held > 0 {
            if self.config.mode == Mode::Lines && reason == CloseReason::Local {
                self.stats.units += 1;
                self.release_to(now, self.tail);
            } else {
                self.stats.bytes_discarded += held as u64;
                self.tail = self.released;
            }
        }
        self.state = State::Closing;
        self.finish_if_drained(reason);
    }

    fn finish_if_drained(&mut self, reason: CloseReason) {
        if !self.wants_write() && matches!(self.state, State::PeerHalfClosed | State::Closing) {
            self.state = State::Closed;
            debug!("session closed");
            self.push(Event::Closed(reason));
        }
    }

    fn abort_with(&mut self, reason: AbortReason) {
        self.stats.bytes_discarded += (self.tail - self.head) as u64;
        self.head = 0;
        self.released = 0;
        self.tail = 0;
        self.state = State::Aborted(reason);
        debug!("session aborted");
        self.push(Event::Aborted(reason));
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::PeerFinished => "peer finished and everything was echoed",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::Local => "closed locally",
        })
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AbortReason::LineTooLong { limit } => {
                write!(f, "line longer than the {limit}-byte buffer")
            }
            AbortReason::FrameTooLarge { len, limit } => {
                write!(f, "frame of {len} bytes exceeds the {limit}-byte buffer")
            }
            AbortReason::TruncatedFrame { received } => {
                write!(
                    f,
                    "peer finished in the middle of a frame ({received} bytes of it received)"
                )
            }
            AbortReason::DrainTimeout => f.write_str("peer stopped reading (drain timeout)"),
            AbortReason::PeerReset => f.write_str("connection reset by peer"),
            AbortReason::Local => f.write_str("aborted locally"),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::PeerFinished => f.write_str("peer finished sending"),
            Event::Closed(reason) => write!(f, "closed: {reason}"),
            Event::Aborted(reason) => write!(f, "aborted: {reason}"),
        }
    }
}

impl fmt::Display for CommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommitError::TooMany { n, available } => {
                write!(f, "committed {n} bytes but only {available} were offered")
            }
        }
    }
}

impl core::error::Error for CommitError {}

#[cfg(test)]
mod tests;
