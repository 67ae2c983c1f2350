//! The steps of a worker's turn that go through its connection table:
//! the run queue, due timers, and the graceful drain. Both backends run
//! them; only driving one connection is theirs.

use ricochet_core::Instant;

use super::super::Phase;
use super::super::stats::Counters;
use super::{ConnTable, TIMER_BUDGET, Tracked};

/// A worker that drives connections kept in a [`ConnTable`].
///
/// A turn: [`Driver::follow_phase`], the backend's events (each ending in
/// [`Driver::drive`]), [`Driver::serve_run_queue`], [`Driver::fire_timers`],
/// then [`Driver::drained`].
pub(crate) trait Driver {
    /// The backend's connection.
    type Conn: Tracked;

    /// The worker's connection table.
    fn table(&mut self) -> &mut ConnTable<Self::Conn>;

    /// The worker's counters.
    fn counters(&self) -> &Counters;

    /// Runs connection `key`'s pump (if it is there and live), then files
    /// it with [`ConnTable::file`] and releases it if the pump says so.
    fn drive(&mut self, key: usize, now: Instant);

    /// Stops taking new work at the start of a graceful shutdown: no more
    /// accepts, no more datagrams.
    fn stop_accepting(&mut self);

    /// A connection was just [inserted](ConnTable::insert): drives it at
    /// once while draining (its session closes once idle, see
    /// `Pump::close_when_idle`), else schedules its deadline. Its first input arrives as any
    /// other (epoll: an edge right after registration).
    fn opened(&mut self, key: usize, now: Instant) {
        if self.table().is_draining() {
            self.drive(key, now);
        } else {
            self.table().schedule(key);
        }
    }

    /// Drives, once each, the connections that were in the run queue at
    /// the start of the call (one that yields again waits for the next turn).
    fn serve_run_queue(&mut self, now: Instant) {
        for _ in 0..self.table().queued() {
            if let Some(key) = self.table().pop_queued() {
                self.drive(key, now);
            }
        }
    }

    /// Drives the connections whose deadline is due (at most
    /// [`TIMER_BUDGET`] entries per turn), then compacts the heap if stale
    /// entries piled up.
    fn fire_timers(&mut self, now: Instant) {
        for _ in 0..TIMER_BUDGET {
            match self.table().pop_due(now) {
                None => break,
                Some(None) => {}
                Some(Some(key)) => self.drive(key, now),
            }
        }
        self.table().compact_timers();
    }

    /// A turn's start, after the wait: stops at once if the server aborts
    /// (a second signal); else runs `take_in` (the wakeup's readiness or
    /// completions, each connection they name driven), then follows the
    /// server's phase ([`Driver::follow_phase`]). In that order, input
    /// that arrived before a shutdown is read before its connection's
    /// quiet is judged (`Pump::close_when_idle`): with the drain started
    /// first, a connection quiet until then whose input came in the same
    /// wakeup closed with a FIN and none of that input echoed. Returns
    /// false when the worker must stop.
    fn begin_turn(&mut self, now: Instant, take_in: impl FnOnce(&mut Self)) -> bool
    where
        Self: Sized,
    {
        if self.table().shared.phase() == Phase::Abort {
            return false;
        }
        take_in(self);
        self.follow_phase(now)
    }

    /// Follows the server's phase (see [`Driver::begin_turn`]): the first
    /// turn after a graceful shutdown began starts the drain. Returns false
    /// when the worker must stop at once.
    fn follow_phase(&mut self, now: Instant) -> bool {
        match self.table().shared.phase() {
            Phase::Running => true,
            Phase::Draining => {
                if !self.table().is_draining() {
                    self.begin_drain(now);
                }
                true
            }
            Phase::Abort => false,
        }
    }

    /// Starts the graceful shutdown: the grace period, no new work, every
    /// session closed once idle (what the peer already sent is still
    /// echoed, see `Pump::close_when_idle`); the grace period's end resets
    /// what is left.
    fn begin_drain(&mut self, now: Instant) {
        self.table().start_grace(now);
        self.stop_accepting();
        for key in self.table().keys() {
            if let Some(conn) = self.table().get_mut(key)
                && conn.is_live()
            {
                conn.pump().close_when_idle();
                self.drive(key, now);
            }
        }
        let table = self.table();
        tracing::debug!(worker = table.worker, open = table.len(), "draining");
    }

    /// At the end of a turn: whether the drain is over, because every
    /// connection is gone or the grace period ended (what was left is
    /// then reset, see [`Driver::reset_remaining`]). False while running.
    fn drained(&mut self, now: Instant) -> bool {
        let Some(deadline) = self.table().grace_deadline else {
            return false;
        };
        if self.table().is_empty() {
            return true;
        }
        if now >= deadline {
            self.reset_remaining(now);
            return true;
        }
        false
    }

    /// The grace period is over: resets what is still echoing, releases
    /// what lingers, and logs how many were reset.
    fn reset_remaining(&mut self, now: Instant) {
        let local = |c: &Counters| c.tcp.aborted.local + c.unix.aborted.local + c.tls.aborted.local;
        let before = local(self.counters());
        for key in self.table().keys() {
            if let Some(conn) = self.table().get_mut(key)
                && conn.is_live()
            {
                conn.pump().abort(now);
                self.drive(key, now);
            }
        }
        let reset = local(self.counters()) - before;
        if reset > 0 {
            tracing::warn!(
                worker = self.table().worker,
                connections = reset,
                "grace period over: connections reset"
            );
        }
    }
}
