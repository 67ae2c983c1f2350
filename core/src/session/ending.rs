//! How a session ends: the graceful close, the abort, the idle and drain
//! deadlines that lead to either, and the events that report them.

use super::{AbortReason, CloseReason, Event, Session, State};
use crate::mode::Mode;
#[cfg(feature = "shutdown")]
use crate::time::Duration;
use crate::time::Instant;

impl<S: AsRef<[u8]> + AsMut<[u8]>> Session<S> {
    /// Closes gracefully: no more input; what is pending is still echoed,
    /// then the session is `Closed`. A `lines` remainder is echoed like at
    /// FIN; an incomplete frame cannot be and is counted as discarded.
    pub fn close(&mut self, now: Instant) {
        let now = self.advance(now);
        self.begin_close(now, CloseReason::Local);
    }

    /// Closes gracefully once no byte has moved for `quiet` (a server's
    /// graceful shutdown): until then it goes on echoing what the peer
    /// sends; then, as [`Session::close`] does (a `lines` remainder echoed,
    /// `Closed(Local)`). It is the idle timeout, shortened to `quiet`, so
    /// echo still pending holds it off and the drain timeout still applies.
    /// [`Session::close`] instead stops taking input at once: what the
    /// peer had sent meanwhile was never echoed. (Feature `shutdown`.)
    #[cfg(feature = "shutdown")]
    pub fn close_when_quiet(&mut self, quiet: Duration) {
        if self.state == State::Open {
            self.idle_reason = CloseReason::Local;
            let idle = self.config.idle_timeout.map_or(quiet, |t| t.min(quiet));
            self.config.idle_timeout = Some(idle);
        }
    }

    /// Aborts at once ([`AbortReason::Local`]); pending bytes are discarded.
    pub fn abort(&mut self, now: Instant) {
        self.fail(now, AbortReason::Local);
    }

    /// The next instant at which [`Session::handle_timeout`] has work to do.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.deadline(None)
    }

    /// [`Session::poll_timeout`], or `ended` once the session is terminal
    /// (the pump's: its next drive sends the FIN or the reset).
    pub(crate) fn deadline(&self, ended: Option<Instant>) -> Option<Instant> {
        if self.is_terminal() {
            ended
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
        let _ = self.fire_timeout(now);
    }

    /// [`Session::handle_timeout`], saying whether a deadline fired (the
    /// session then closes or ends).
    pub(crate) fn fire_timeout(&mut self, now: Instant) -> bool {
        let now = self.advance(now);
        match self.poll_timeout() {
            Some(deadline) if deadline <= now => {}
            _ => return false,
        }
        if self.wants_write() {
            self.abort_with(AbortReason::DrainTimeout);
        } else {
            #[cfg(feature = "shutdown")]
            let reason = self.idle_reason;
            #[cfg(not(feature = "shutdown"))]
            let reason = CloseReason::IdleTimeout;
            self.begin_close(now, reason);
        }
        true
    }

    /// The next event to log, oldest first: `PeerFinished` (once), then the
    /// terminal event (once).
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        if self.fin_event {
            self.fin_event = false;
            return Some(Event::PeerFinished);
        }
        if self.end_reported {
            return None;
        }
        let event = match self.state {
            State::Closed(reason) => Event::Closed(reason),
            State::Aborted(reason) => Event::Aborted(reason),
            _ => return None,
        };
        self.end_reported = true;
        Some(event)
    }

    pub(super) fn fail(&mut self, now: Instant, reason: AbortReason) {
        self.advance(now);
        if !self.is_terminal() {
            self.abort_with(reason);
        }
    }

    pub(super) fn begin_close(&mut self, now: Instant, reason: CloseReason) {
        if self.state != State::Open {
            return;
        }
        let held = self.buf.held_len();
        if held > 0 {
            if self.config.mode == Mode::Lines && reason == CloseReason::Local {
                self.stats.units += 1;
                self.release_len(now, held);
            } else {
                self.stats.bytes_discarded += self.buf.discard_held() as u64;
            }
        }
        self.state = State::Closing;
        self.closing = reason;
        self.finish_if_drained(reason);
    }

    pub(super) fn finish_if_drained(&mut self, reason: CloseReason) {
        if !self.wants_write() && matches!(self.state, State::PeerHalfClosed | State::Closing) {
            self.state = State::Closed(reason);
            debug!("session closed");
        }
    }

    pub(super) fn abort_with(&mut self, reason: AbortReason) {
        self.stats.bytes_discarded += self.buf.buffered() as u64;
        self.buf.clear();
        self.state = State::Aborted(reason);
        debug!("session aborted");
    }
}
