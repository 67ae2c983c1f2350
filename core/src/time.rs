//! Time as the core sees it: passed in by the caller, never read from a clock.
//!
//! [`Instant`] is a count of microseconds since an arbitrary epoch chosen by
//! the adapter (boot, process start...). [`Duration`] is a span of
//! microseconds. Both are plain `u64`s so they cost nothing on a
//! microcontroller and convert losslessly from smoltcp's and std's types in
//! the adapters. Arithmetic saturates instead of panicking.

use core::fmt;
use core::ops::{Add, AddAssign, Sub};

/// A point in time, in microseconds since an epoch the adapter chooses.
///
/// Contract: the instants an adapter passes to one state machine never go
/// backwards; a repeated instant is fine. A step back is a broken contract,
/// but it cannot corrupt a state machine: the core clamps it, treating it
/// as "no time passed".
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Instant(u64);

/// The spacing of a paced schedule, in nanoseconds: finer than
/// [`Duration`], so that a rate whose interval is not a whole number of
/// microseconds (8 connections at 118,000/s: 67.8 µs each) is kept exactly
/// over a run instead of rounded to 67 µs (1.2 % too fast).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Pace(u64);

impl Pace {
    /// One message every `nanos` nanoseconds (at least 1).
    pub const fn from_nanos(nanos: u64) -> Self {
        Pace(if nanos == 0 { 1 } else { nanos })
    }
    /// The spacing in nanoseconds.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }
    /// When message `index` of a schedule starting at `start` is due:
    /// `start + index × spacing`, to the microsecond below (saturating).
    ///
    /// In 64-bit arithmetic only: a 128-bit division costs a small part
    /// several kilobytes of flash (`__udivti3`).
    pub const fn at(self, start: Instant, index: u64) -> Instant {
        // index × nanos / 1000 = index × q + index × r / 1000 (nanos = 1000q + r),
        // and index × r / 1000 = a × r + b × r / 1000 (index = 1000a + b): exact.
        let (q, r) = (self.0 / 1_000, self.0 % 1_000);
        let (a, b) = (index / 1_000, index % 1_000);
        let micros = index
            .saturating_mul(q)
            .saturating_add(a * r)
            .saturating_add(b * r / 1_000);
        Instant(start.0.saturating_add(micros))
    }
    /// Whole spacings from `start` to `now`: `(now - start) / spacing`
    /// (0 if `now` is earlier). Exact while `now - start` is under 584
    /// years or the spacing under 213 days.
    pub const fn due_by(self, start: Instant, now: Instant) -> u64 {
        let elapsed = now.0.saturating_sub(start.0);
        if let Some(nanos) = elapsed.checked_mul(1_000) {
            return nanos / self.0;
        }
        // elapsed × 1000 / n = 1000 × (elapsed / n) + (elapsed % n) × 1000 / n.
        let (whole, rest) = (elapsed / self.0, elapsed % self.0);
        let part = match rest.checked_mul(1_000) {
            Some(x) => x / self.0,
            None => rest / (self.0 / 1_000),
        };
        whole.saturating_mul(1_000).saturating_add(part)
    }
}

impl From<Duration> for Pace {
    fn from(d: Duration) -> Self {
        Pace::from_nanos(d.0.saturating_mul(1_000))
    }
}

/// A span of time in microseconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Duration(u64);

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant(0);
    /// The latest representable instant; used as "never".
    pub const MAX: Instant = Instant(u64::MAX);

    /// An instant `micros` microseconds after the epoch.
    pub const fn from_micros(micros: u64) -> Self {
        Instant(micros)
    }
    /// An instant `millis` milliseconds after the epoch (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Instant(millis.saturating_mul(1_000))
    }
    /// Microseconds since the epoch.
    pub const fn as_micros(self) -> u64 {
        self.0
    }
    /// Milliseconds since the epoch (truncated).
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }
    /// Time elapsed from `earlier` to `self`, or zero if `earlier` is later.
    pub const fn saturating_since(self, earlier: Instant) -> Duration {
        Duration(self.0.saturating_sub(earlier.0))
    }
}

impl Duration {
    /// No time at all.
    pub const ZERO: Duration = Duration(0);
    /// The longest representable span.
    pub const MAX: Duration = Duration(u64::MAX);

    /// A span of `micros` microseconds.
    pub const fn from_micros(micros: u64) -> Self {
        Duration(micros)
    }
    /// A span of `millis` milliseconds (saturating).
    pub const fn from_millis(millis: u64) -> Self {
        Duration(millis.saturating_mul(1_000))
    }
    /// A span of `secs` seconds (saturating).
    pub const fn from_secs(secs: u64) -> Self {
        Duration(secs.saturating_mul(1_000_000))
    }
    /// The span in microseconds.
    pub const fn as_micros(self) -> u64 {
        self.0
    }
    /// The span in milliseconds (truncated).
    pub const fn as_millis(self) -> u64 {
        self.0 / 1_000
    }
}

/// The earliest of two optional deadlines, where `None` means "never".
///
/// ```
/// use ricochet_core::time::{earliest, Instant};
/// let (a, b) = (Instant::from_millis(5), Instant::from_millis(3));
/// assert_eq!(earliest(Some(a), Some(b)), Some(b));
/// assert_eq!(earliest(Some(a), None), Some(a));
/// assert_eq!(earliest(None, None), None);
/// ```
#[must_use]
pub fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, None) => a,
        (None, b) => b,
    }
}

impl From<core::time::Duration> for Duration {
    fn from(d: core::time::Duration) -> Self {
        Duration(u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
    }
}

impl From<Duration> for core::time::Duration {
    fn from(d: Duration) -> Self {
        core::time::Duration::from_micros(d.0)
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_add(rhs.0))
    }
}

impl AddAssign<Duration> for Instant {
    fn add_assign(&mut self, rhs: Duration) {
        *self = *self + rhs;
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    /// Saturating: an earlier minus a later instant is zero.
    fn sub(self, rhs: Instant) -> Duration {
        self.saturating_since(rhs)
    }
}

impl Sub<Duration> for Instant {
    type Output = Instant;
    /// Saturating at the epoch.
    fn sub(self, rhs: Duration) -> Instant {
        Instant(self.0.saturating_sub(rhs.0))
    }
}

impl Add for Duration {
    type Output = Duration;
    fn add(self, rhs: Duration) -> Duration {
        Duration(self.0.saturating_add(rhs.0))
    }
}

impl fmt::Display for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:06}s", self.0 / 1_000_000, self.0 % 1_000_000)
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0 >= 1_000_000 {
            write!(
                f,
                "{}.{:03}s",
                self.0 / 1_000_000,
                (self.0 % 1_000_000) / 1_000
            )
        } else if self.0 >= 1_000 {
            write!(f, "{}.{:03}ms", self.0 / 1_000, self.0 % 1_000)
        } else {
            write!(f, "{}us", self.0)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pace_keeps_sub_microsecond_spacing_over_a_schedule() {
        let pace = Pace::from_nanos(6_667);
        let t0 = Instant::from_micros(10);
        assert_eq!(pace.at(t0, 3).as_micros(), 10 + 20); // 20.001 us
        assert_eq!(pace.at(t0, 150_000).as_micros(), 10 + 1_000_050);
        assert_eq!(pace.due_by(t0, Instant::from_micros(10 + 20)), 2);
        assert_eq!(pace.due_by(t0, Instant::from_micros(10 + 21)), 3);
        assert_eq!(pace.due_by(t0, Instant::ZERO), 0, "earlier than the start");
        assert_eq!(Pace::from_nanos(0).as_nanos(), 1, "never a zero spacing");
        assert_eq!(Pace::from(Duration::from_micros(7)).as_nanos(), 7_000);
        assert_eq!(Pace::from_nanos(u64::MAX).at(t0, u64::MAX), Instant::MAX);
    }

    /// The 64-bit arithmetic of [`Pace`] against 128-bit arithmetic.
    mod pace_against_u128 {
        use super::*;
        use proptest::prelude::*;

        fn at_u128(nanos: u64, start: u64, index: u64) -> u64 {
            let micros = (u128::from(nanos) * u128::from(index)) / 1_000;
            start.saturating_add(u64::try_from(micros).unwrap_or(u64::MAX))
        }

        fn due_u128(nanos: u64, elapsed: u64) -> u64 {
            let n = (u128::from(elapsed) * 1_000) / u128::from(nanos);
            u64::try_from(n).unwrap_or(u64::MAX)
        }

        proptest! {
            #[test]
            fn at_is_exact(nanos in 1..u64::MAX, start in 0..u64::MAX / 2, index: u64) {
                let pace = Pace::from_nanos(nanos);
                prop_assert_eq!(
                    pace.at(Instant(start), index).0,
                    at_u128(nanos, start, index)
                );
            }

            #[test]
            fn at_is_exact_at_run_scales(nanos in 1..10_000_000_000u64, index in 0..10_000_000_000u64) {
                let pace = Pace::from_nanos(nanos);
                prop_assert_eq!(pace.at(Instant(7), index).0, at_u128(nanos, 7, index));
            }

            // Drawn so that the exact range (either side under 2^64 / 1000)
            // is most draws, not one in a thousand.
            #[test]
            fn due_by_is_exact(
                nanos in prop_oneof![1..=u64::MAX / 1_000, 1..u64::MAX],
                elapsed in prop_oneof![u64::MAX / 1_000.., 0..=u64::MAX / 1_000, any::<u64>()],
            ) {
                let pace = Pace::from_nanos(nanos);
                let got = pace.due_by(Instant(0), Instant(elapsed));
                if elapsed <= u64::MAX / 1_000 || nanos <= u64::MAX / 1_000 {
                    prop_assert_eq!(got, due_u128(nanos, elapsed));
                }
            }
        }
    }

    #[test]
    fn due_by_over_584_years_of_millisecond_spacing_is_exact() {
        // `elapsed × 1000` overflows: the whole and the remainder are
        // counted apart.
        let pace = Pace::from_nanos(1_000_000);
        let exact = u64::MAX / 1_000; // 18446744073709551
        assert_eq!(pace.due_by(Instant::ZERO, Instant::MAX), exact);
        assert_eq!(
            pace.due_by(Instant::from_micros(1_000), Instant::MAX),
            exact - 1
        );
    }

    #[test]
    fn due_by_of_a_spacing_over_213_days_and_a_long_run_counts_the_remainder() {
        // Spacing 3e18 ns: the remainder × 1000 overflows too.
        let pace = Pace::from_nanos(3_000_000_000_000_000_000);
        // u64::MAX × 1000 / 3e18 = 6148.9...
        assert_eq!(pace.due_by(Instant::ZERO, Instant::MAX), 6_148);
    }

    #[test]
    fn instant_in_millis_truncates_its_microseconds() {
        assert_eq!(Instant::from_micros(12_345_678).as_millis(), 12_345);
        assert_eq!(Instant::from_micros(999).as_millis(), 0);
        assert_eq!(Duration::from_micros(12_345_678).as_millis(), 12_345);
    }

    #[test]
    fn instant_plus_assign_moves_it_and_saturates_at_the_end_of_time() {
        let mut t = Instant::from_millis(1);
        t += Duration::from_millis(2);
        assert_eq!(t, Instant::from_millis(3));
        let mut end = Instant::from_micros(u64::MAX - 1);
        end += Duration::from_micros(5);
        assert_eq!(end, Instant::MAX);
    }

    #[test]
    fn instant_minus_duration_goes_back_and_saturates_at_the_epoch() {
        assert_eq!(
            Instant::from_millis(5) - Duration::from_millis(2),
            Instant::from_millis(3)
        );
        assert_eq!(
            Instant::from_millis(1) - Duration::from_millis(2),
            Instant::ZERO
        );
    }

    #[test]
    fn earliest_of_two_deadlines_is_the_sooner_and_none_is_never() {
        let (soon, late) = (Instant::from_millis(3), Instant::from_millis(5));
        assert_eq!(earliest(Some(late), Some(soon)), Some(soon));
        assert_eq!(earliest(Some(soon), Some(late)), Some(soon));
        assert_eq!(earliest(Some(late), None), Some(late));
        assert_eq!(earliest(None, Some(late)), Some(late));
        assert_eq!(earliest(None, None), None);
    }

    #[test]
    fn duration_sum_adds_and_saturates_at_the_longest_span() {
        assert_eq!(
            Duration::from_millis(1) + Duration::from_millis(2),
            Duration::from_millis(3)
        );
        assert_eq!(Duration::MAX + Duration::from_micros(1), Duration::MAX);
    }

    #[test]
    fn instant_prints_seconds_with_six_decimals() {
        assert_eq!(Instant::from_micros(12_000_345).to_string(), "12.000345s");
        assert_eq!(Instant::ZERO.to_string(), "0.000000s");
    }

    #[test]
    fn duration_prints_in_the_largest_unit_it_fills() {
        let printed = |us| Duration::from_micros(us).to_string();
        assert_eq!(printed(999), "999us");
        assert_eq!(printed(1_000), "1.000ms");
        assert_eq!(printed(999_999), "999.999ms");
        assert_eq!(printed(1_000_000), "1.000s");
        assert_eq!(printed(61_234_567), "61.234s");
    }

    #[test]
    fn instant_arithmetic_saturates() {
        assert_eq!(Instant::MAX + Duration::from_secs(1), Instant::MAX);
        assert_eq!(Instant::ZERO - Instant::from_millis(5), Duration::ZERO);
        assert_eq!(
            Instant::from_millis(5) - Instant::from_millis(2),
            Duration::from_millis(3)
        );
    }

    #[test]
    fn duration_converts_from_std_duration_saturating() {
        let d: Duration = core::time::Duration::from_millis(1500).into();
        assert_eq!(d, Duration::from_millis(1500));
        let huge: Duration = core::time::Duration::MAX.into();
        assert_eq!(huge, Duration::MAX);
        let back: core::time::Duration = Duration::from_micros(1_500_001).into();
        assert_eq!(back, core::time::Duration::from_micros(1_500_001));
    }
}
