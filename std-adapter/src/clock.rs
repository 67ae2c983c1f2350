//! The one conversion point from std time to the core's time.

use std::time::Instant as StdInstant;

use ricochet_core::Instant;

/// A monotonic clock whose epoch is its creation.
///
/// Core state machines take [`ricochet_core::Instant`]s; this turns
/// `std::time::Instant`s into them. Share one clock per thread or process
/// and pass `clock.now()` on every core call.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    epoch: StdInstant,
}

impl Clock {
    /// A clock whose epoch is now.
    pub fn new() -> Self {
        Clock {
            epoch: StdInstant::now(),
        }
    }

    /// The current instant in core time.
    pub fn now(&self) -> Instant {
        self.at(StdInstant::now())
    }

    /// Core time of a given std instant (saturating at the epoch).
    pub fn at(&self, t: StdInstant) -> Instant {
        let micros = t.saturating_duration_since(self.epoch).as_micros();
        Instant::from_micros(u64::try_from(micros).unwrap_or(u64::MAX))
    }

    /// The std instant of a core instant (for poll timeouts).
    pub fn to_std(&self, t: Instant) -> StdInstant {
        self.epoch + std::time::Duration::from_micros(t.as_micros())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}
