//! SysTick at [`TICK_HZ`], the millisecond count it drives, and the sleep.
//!
//! The count is two `AtomicU32` halves written only by the SysTick handler
//! and read lock-free (see [`millis`]), so it never wraps in practice
//! (2^64 ms). SysTick counts the core clock (QEMU's SysTick has no usable
//! reference clock on the Stellaris and MPS2 machines, and the core clock is
//! what every Cortex-M has); `reload = core_hz / TICK_HZ - 1`.

use core::fmt;
use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use smoltcp::time::Instant;

/// SysTick interrupts per second.
pub const TICK_HZ: u32 = 1_000;
/// SysTick's reload register is 24 bits wide.
const RELOAD_MAX: u32 = (1 << 24) - 1;

/// Low 32 bits of the millisecond count.
static MS_LO: AtomicU32 = AtomicU32::new(0);
/// High 32 bits, bumped when `MS_LO` wraps.
static MS_HI: AtomicU32 = AtomicU32::new(0);

/// Why [`Clock::start`] refused a core clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClockError {
    /// Slower than two SysTick counts per tick: no usable reload value (a
    /// clock given in kHz or MHz instead of Hz, usually).
    CoreClockTooSlow {
        /// The core clock passed in, Hz.
        core_hz: u32,
    },
}

impl fmt::Display for ClockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClockError::CoreClockTooSlow { core_hz } => write!(
                f,
                "core clock {core_hz} Hz is too slow for a {TICK_HZ} Hz SysTick: pass the core clock in Hz (for example 25_000_000)"
            ),
        }
    }
}

/// The SysTick reload value for [`TICK_HZ`] ticks per second from a core
/// clock of `core_hz` (SysTick counts reload..=0, so `core_hz / TICK_HZ - 1`).
pub const fn reload_for(core_hz: u32) -> Result<u32, ClockError> {
    let per_tick = core_hz / TICK_HZ;
    if per_tick < 2 {
        return Err(ClockError::CoreClockTooSlow { core_hz });
    }
    // Any u32 clock divided by TICK_HZ fits SysTick's 24 bits.
    const _: () = assert!(u32::MAX / TICK_HZ - 1 <= RELOAD_MAX);
    Ok(per_tick - 1)
}

/// Milliseconds since [`Clock::start`] (0 before it): for log timestamps
/// (`defmt::timestamp!("{=u64:ms}", ricochet_cortex_m_clock::millis())`).
///
/// Reads high, low, high again and retries if the high half changed in
/// between, so a wrap of the low half during the read is never torn.
pub fn millis() -> u64 {
    loop {
        let hi = MS_HI.load(Ordering::Acquire);
        let lo = MS_LO.load(Ordering::Acquire);
        if MS_HI.load(Ordering::Acquire) == hi {
            return (u64::from(hi) << 32) | u64::from(lo);
        }
    }
}

/// A millisecond count as smoltcp's instant (saturating at `i64::MAX`
/// microseconds, 292 000 years: never in practice, but never a panic).
fn instant_from_millis(ms: u64) -> Instant {
    Instant::from_micros(i64::try_from(ms.saturating_mul(1_000)).unwrap_or(i64::MAX))
}

/// Whether `now` has reached `deadline` (`None`: never).
fn reached(now: Instant, deadline: Option<Instant>) -> bool {
    deadline.is_some_and(|d| now >= d)
}

/// One SysTick period: advances the count. Only the SysTick handler calls
/// this, and nothing that preempts it writes the count, so a load/store
/// pair is enough.
#[cfg(any(target_os = "none", test))]
fn tick() {
    let lo = MS_LO.load(Ordering::Relaxed).wrapping_add(1);
    MS_LO.store(lo, Ordering::Release);
    if lo == 0 {
        MS_HI.fetch_add(1, Ordering::Release);
    }
}

#[cfg(target_os = "none")]
#[cortex_m_rt::exception]
fn SysTick() {
    tick();
}

/// The board's clock: owns SysTick.
///
/// The SysTick exception handler is defined by this crate; a board that
/// links it must not define its own.
pub struct Clock {
    _syst: SYST,
}

impl Clock {
    /// Starts SysTick from the core clock at [`TICK_HZ`], counting from 0.
    /// Call once, before anything reads the clock; `core_hz` is the clock
    /// SysTick's "processor clock" source sees (HCLK on STM32).
    pub fn start(mut syst: SYST, core_hz: u32) -> Result<Clock, ClockError> {
        let reload = reload_for(core_hz)?;
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        syst.set_reload(reload);
        syst.clear_current();
        syst.enable_interrupt();
        syst.enable_counter();
        Ok(Clock { _syst: syst })
    }

    /// The current time as smoltcp sees it (millisecond resolution).
    pub fn now(&self) -> Instant {
        instant_from_millis(millis())
    }

    /// A few bits that differ from boot to boot (the SysTick phase, which
    /// follows host timing in QEMU): something to mix into smoltcp's random
    /// seed where the chip has no RNG. Not entropy in any cryptographic
    /// sense.
    pub fn jitter(&self) -> u32 {
        SYST::get_current()
    }

    /// Sleeps (`wfi`) until `deadline` (`None`: no deadline) or until
    /// `work` reports work.
    ///
    /// `work` runs with interrupts masked, before every `wfi`. It must
    /// return `true` if there is work now (a frame waiting), and otherwise
    /// arm the device's interrupt so that new work wakes the core, and
    /// return `false`. An interrupt that becomes pending after that check
    /// makes `wfi` return at once (a pending interrupt ends `wfi` even while
    /// masked); its handler runs as soon as the mask is lifted, before this
    /// checks again. Returns at once if there is work or the deadline has
    /// passed.
    pub fn sleep_until(&mut self, deadline: Option<Instant>, mut work: impl FnMut() -> bool) {
        loop {
            let wake = cortex_m::interrupt::free(|_| {
                if work() || reached(self.now(), deadline) {
                    return true;
                }
                cortex_m::asm::wfi();
                false
            });
            if wake {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    #[test]
    fn reload_gives_one_millisecond_on_the_boards_core_clocks() {
        assert_eq!(reload_for(12_500_000), Ok(12_499)); // lm3s6965evb in QEMU
        assert_eq!(reload_for(25_000_000), Ok(24_999)); // MPS2 FPGA images
        assert_eq!(reload_for(168_000_000), Ok(167_999)); // STM32F429 HCLK
    }

    #[test]
    fn core_clocks_systick_cannot_divide_are_refused_with_a_fix() {
        assert_eq!(
            reload_for(1_000),
            Err(ClockError::CoreClockTooSlow { core_hz: 1_000 })
        );
        assert_eq!(reload_for(u32::MAX), Ok(4_294_966), "fits 24 bits");
        let text = reload_for(25).unwrap_err().to_string();
        assert!(text.contains("25 Hz") && text.contains("in Hz"), "{text}");
    }

    #[test]
    fn ticks_become_smoltcp_milliseconds_across_the_low_half_wrapping() {
        // The count is global: this is the only test that ticks it.
        assert_eq!(millis(), 0);
        MS_LO.store(u32::MAX - 1, Ordering::Relaxed);
        tick();
        assert_eq!(millis(), u64::from(u32::MAX));
        tick();
        assert_eq!(millis(), 1 << 32, "the high half carries");
        assert_eq!(
            instant_from_millis(millis()),
            Instant::from_millis(1i64 << 32)
        );
        assert_eq!(
            instant_from_millis(u64::MAX),
            Instant::from_micros(i64::MAX)
        );
    }

    #[test]
    fn deadline_is_reached_at_or_after_it_and_never_without_one() {
        let at = Instant::from_millis(5);
        assert!(!reached(Instant::from_millis(4), Some(at)));
        assert!(reached(Instant::from_millis(5), Some(at)));
        assert!(reached(Instant::from_millis(6), Some(at)));
        assert!(!reached(Instant::from_millis(i64::from(u32::MAX)), None));
    }
}
