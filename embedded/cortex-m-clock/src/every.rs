//! Periodic jobs in the poll loop (logging counters, checking a PHY).

use smoltcp::time::{Duration, Instant};

/// A job due once per `period`, measured on the board's clock.
///
/// After a long gap (the board slept or was busy) it is due once, not once
/// per missed period: the next one is a whole period after the call that
/// found it due.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Every {
    period: Duration,
    next: Instant,
}

impl Every {
    /// First due one `period` after the clock's zero (boot).
    pub const fn new(period: Duration) -> Every {
        Every {
            period,
            next: Instant::from_micros_const(period.total_micros() as i64),
        }
    }

    /// Whether the job is due at `now`; if so, the next one is scheduled a
    /// `period` after `now`.
    pub fn due(&mut self, now: Instant) -> bool {
        if now < self.next {
            return false;
        }
        self.next = now + self.period;
        true
    }

    /// When the job is next due.
    pub fn next(&self) -> Instant {
        self.next
    }

    /// The earlier of the next due time and `other` (a deadline from the
    /// network stack, `None` if it has none): what to sleep until.
    pub fn earliest(&self, other: Option<Instant>) -> Option<Instant> {
        Some(earliest(other, self.next))
    }
}

/// The earlier of an optional deadline and a fixed one.
pub fn earliest(deadline: Option<Instant>, other: Instant) -> Instant {
    deadline.map_or(other, |d| d.min(other))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_is_due_once_per_period_and_once_after_a_long_gap() {
        let mut stats = Every::new(Duration::from_secs(10));
        assert!(!stats.due(Instant::from_secs(0)));
        assert!(!stats.due(Instant::from_millis(9_999)));
        assert!(stats.due(Instant::from_secs(10)));
        assert!(!stats.due(Instant::from_secs(10)), "only once");
        assert_eq!(stats.next(), Instant::from_secs(20));
        // Slept through five periods: due once, then a whole period later.
        assert!(stats.due(Instant::from_secs(65)));
        assert!(!stats.due(Instant::from_secs(70)));
        assert_eq!(stats.next(), Instant::from_secs(75));
    }

    #[test]
    fn earliest_picks_the_stack_deadline_only_when_it_is_sooner() {
        let stats = Every::new(Duration::from_secs(10));
        assert_eq!(stats.earliest(None), Some(Instant::from_secs(10)));
        assert_eq!(
            stats.earliest(Some(Instant::from_millis(250))),
            Some(Instant::from_millis(250))
        );
        assert_eq!(
            stats.earliest(Some(Instant::from_secs(11))),
            Some(Instant::from_secs(10))
        );
    }
}
