//! The end of a connection: counting how the session ended, then the
//! linger after a graceful close (discard input until the peer's FIN, wait
//! for delivery) or, for an abort over what the peer sent, the wait for the
//! echo before the reset (feature `deliver_before_reset`).

use super::{Next, Phase, Pump, ReadOutcome, Teardown, Transport};
use crate::counters::StreamCounters;
use crate::session::State;
use crate::time::Instant;

/// When a pump waiting to reset looks at delivery again: a kernel's send
/// queue drains as the peer acknowledges, with no readiness event, so the
/// pump asks to be driven again by itself, 1 ms after the abort and then
/// twice as long each time up to [`Recheck::LONGEST`] (on loopback the echo
/// is delivered within the first; a stalled reader costs a dozen wake-ups
/// over the linger). (Feature `deliver_before_reset`.)
#[cfg(feature = "deliver_before_reset")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Recheck {
    pub(super) at: Instant,
    every: crate::time::Duration,
}

#[cfg(feature = "deliver_before_reset")]
impl Recheck {
    const FIRST: crate::time::Duration = crate::time::Duration::from_millis(1);
    const LONGEST: crate::time::Duration = crate::time::Duration::from_millis(250);

    pub(super) fn after_abort(now: Instant) -> Recheck {
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
    /// The session just ended: count it, then reset or start lingering.
    pub(super) fn finish<T: Transport + ?Sized>(
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
    pub(super) fn linger<T: Transport + ?Sized>(
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
                    // As while serving: never more than was offered.
                    let n = n.min(want);
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
    pub(super) fn resets_after(&self) -> bool {
        #[cfg(feature = "deliver_before_reset")]
        return self.reset_after.is_some();
        #[cfg(not(feature = "deliver_before_reset"))]
        false
    }

    /// Counts how the session ended: the bytes it discarded, and its
    /// reason, graceful or not. Once: when it becomes terminal, or for a
    /// close over a transport that queues output, when that output was
    /// delivered or failed ([`Transport::queues_output`]).
    pub(super) fn count_end(&self, counters: &mut StreamCounters) {
        counters.bytes_discarded += self.session.stats().bytes_discarded;
        match self.session.state() {
            State::Aborted(reason) => counters.aborted.count(reason),
            State::Closed(reason) => counters.closed.count(reason),
            _ => {}
        }
    }

    /// Counts a close [`Pump::finish`] left uncounted, once.
    pub(super) fn count_deferred_close<T: Transport + ?Sized>(
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
    pub(super) fn abandon(&mut self, counters: &mut StreamCounters) -> Next {
        counters.lingered += 1;
        self.release(Teardown::Abandon)
    }
}
