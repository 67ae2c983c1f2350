//! Rate-limited logging: a flood of the same event (resets during an RST
//! storm, rejections at the connection limit, accept failures) becomes one
//! line per interval that says how many it stands for.

use ricochet_core::{Duration, Instant};

/// At most one log line per `every`.
#[derive(Debug)]
pub(crate) struct Throttle {
    every: Duration,
    last: Option<Instant>,
    suppressed: u64,
}

impl Throttle {
    pub(crate) const fn new(every: Duration) -> Self {
        Throttle {
            every,
            last: None,
            suppressed: 0,
        }
    }

    /// An event happened at `now`: `Some(n)` if it may be logged, with the
    /// `n` events since the last line that were not; `None` if it is only
    /// counted.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last
            .is_none_or(|t| now.saturating_since(t) >= self.every);
        if due {
            self.last = Some(now);
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_logs_once_per_interval_and_counts_the_rest() {
        let mut t = Throttle::new(Duration::from_secs(10));
        let t0 = Instant::from_millis(1);
        assert_eq!(t.admit(t0), Some(0));
        for i in 1..=500 {
            assert_eq!(t.admit(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(t.admit(t0 + Duration::from_secs(10)), Some(500));
        assert_eq!(t.admit(t0 + Duration::from_secs(11)), None);
    }
}
