//! The one place where smoltcp's time meets the core's.
//!
//! Both count microseconds: smoltcp's `Instant` as
//! an `i64` since an epoch the board picks, the core's
//! [`Instant`](ricochet_core::Instant) as a `u64` since the same epoch. The
//! board passes smoltcp instants to [`EchoNode::poll`](crate::EchoNode::poll);
//! the node converts them here and nowhere else. Conversions saturate: an
//! instant before the epoch is the epoch, and nothing overflows.

use ricochet_core::{Duration as CoreDuration, Instant as CoreInstant};
use smoltcp::time::{Duration, Instant};

/// A smoltcp instant as the core's (negative instants become the epoch).
pub fn to_core(now: Instant) -> CoreInstant {
    CoreInstant::from_micros(u64::try_from(now.total_micros()).unwrap_or(0))
}

/// A core instant as smoltcp's (saturating at `i64::MAX` microseconds).
pub fn to_smoltcp(at: CoreInstant) -> Instant {
    Instant::from_micros(i64::try_from(at.as_micros()).unwrap_or(i64::MAX))
}

/// A core duration as smoltcp's.
pub fn duration_to_smoltcp(d: CoreDuration) -> Duration {
    Duration::from_micros(d.as_micros())
}

/// A smoltcp duration as the core's.
pub fn duration_to_core(d: Duration) -> CoreDuration {
    CoreDuration::from_micros(d.total_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_round_trip_and_saturate() {
        let t = Instant::from_micros(1_234_567);
        assert_eq!(to_core(t), CoreInstant::from_micros(1_234_567));
        assert_eq!(to_smoltcp(to_core(t)), t);
        assert_eq!(to_core(Instant::from_micros(-5)), CoreInstant::ZERO);
        assert_eq!(to_smoltcp(CoreInstant::MAX), Instant::from_micros(i64::MAX));
    }

    #[test]
    fn durations_round_trip() {
        let d = CoreDuration::from_millis(1500);
        assert_eq!(duration_to_core(duration_to_smoltcp(d)), d);
    }
}
