//! SysTick as a tickless clock: the register glue around [`Timeline`].
//!
//! SysTick counts the core clock (QEMU's SysTick has no usable reference
//! clock on the Stellaris and MPS2 machines, and the core clock is what
//! every Cortex-M has). Its exception fires once per period: the longest
//! the 24-bit reload allows, or sooner when [`Clock::sleep_until`] has a
//! deadline before the period would end. Time between exceptions comes
//! from the counter itself, so it has the core clock's resolution and
//! loses nothing to a late handler (only a handler later than a whole
//! period, 0.67 s at 25 MHz, would lose time).

use core::cell::Cell;
use core::fmt;

use cortex_m::interrupt::Mutex;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m::peripheral::{SCB, SYST};
use smoltcp::time::{Duration, Instant};

use crate::timeline::{Counter, RELOAD_MAX, Timeline};

/// The slowest core clock accepted, Hz.
const MIN_CORE_HZ: u32 = 1_000;

/// The clock's state, shared with the SysTick handler.
static TIMELINE: Mutex<Cell<Timeline>> = Mutex::new(Cell::new(Timeline::STOPPED));

/// Why [`Clock::start`] refused a core clock.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ClockError {
    /// Slower than 1 kHz: almost certainly a clock given in kHz or MHz
    /// instead of Hz.
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
                "core clock {core_hz} Hz is below {MIN_CORE_HZ} Hz: pass the core clock in Hz (for example 25_000_000)"
            ),
        }
    }
}

/// Checks a core clock for [`Clock::start`].
pub const fn check_core_hz(core_hz: u32) -> Result<u32, ClockError> {
    if core_hz < MIN_CORE_HZ {
        return Err(ClockError::CoreClockTooSlow { core_hz });
    }
    Ok(core_hz)
}

/// Milliseconds since [`Clock::start`] (0 before it): for log timestamps
/// (`defmt::timestamp!("{=u64:ms}", ricochet_cortex_m_clock::millis())`).
pub fn millis() -> u64 {
    micros_now() / 1_000
}

/// Microseconds since [`Clock::start`]: what [`millis`] and [`Clock::now`]
/// both read (one copy: flash is tight on the small boards).
#[inline(never)]
fn micros_now() -> u64 {
    cortex_m::interrupt::free(|cs| {
        let timeline = TIMELINE.borrow(cs);
        let mut t = timeline.get();
        let cycles = read(&mut t);
        timeline.set(t);
        t.micros(cycles)
    })
}

/// The SysTick registers, for [`Timeline::read`] and [`Timeline::restart`].
/// Accessed only in critical sections (or from the handler), and only by
/// the owner of [`Clock`] (which owns `SYST`).
struct Registers;

impl Counter for Registers {
    #[inline(always)]
    fn current(&mut self) -> u32 {
        SYST::get_current()
    }

    #[inline(always)]
    fn pending(&mut self) -> bool {
        SCB::is_pendst_pending()
    }

    #[inline(always)]
    fn set_reload(&mut self, reload: u32) {
        set_reload(reload);
    }

    #[inline(always)]
    fn clear(&mut self) {
        // SAFETY: as for `set_reload`; writing SYST_CVR only clears the
        // counter.
        unsafe { (*SYST::PTR).cvr.write(0) };
        SCB::clear_pendst();
    }
}

/// The cycle count now.
fn read(t: &mut Timeline) -> u64 {
    t.read(&mut Registers)
}

/// smoltcp's instant for a microsecond count (saturating; never in
/// practice: 292 000 years).
fn instant(micros: u64) -> Instant {
    Instant::from_micros(i64::try_from(micros).unwrap_or(i64::MAX))
}

/// Writes the reload register. Only the handler (for the period after the
/// current one) and a restart (inside a critical section) write it.
fn set_reload(reload: u32) {
    // SAFETY: SYST_RVR is a plain register; `Clock` owns SysTick, and its
    // writes and the handler's never interleave (the thread-mode ones run
    // in critical sections).
    unsafe { (*SYST::PTR).rvr.write(reload) }
}

#[cfg(target_os = "none")]
#[cortex_m_rt::exception]
fn SysTick() {
    cortex_m::interrupt::free(|cs| {
        let timeline = TIMELINE.borrow(cs);
        let mut t = timeline.get();
        t.wrap(&mut Registers);
        timeline.set(t);
    });
}

/// The board's clock: owns SysTick.
///
/// The SysTick exception handler is defined by this crate; a board that
/// links it must not define its own.
pub struct Clock {
    _syst: SYST,
    busy: Option<BusyTick>,
}

/// See [`Clock::tick_while_busy`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct BusyTick {
    period: Duration,
    linger: Duration,
    last_work: Option<Instant>,
}

impl BusyTick {
    /// What to sleep until: `deadline`, or sooner if work was seen less than
    /// `linger` ago.
    fn cap(&self, now: Instant, deadline: Option<Instant>) -> Option<Instant> {
        match self.last_work {
            Some(at) if now < at + self.linger => {
                Some(deadline.map_or(now + self.period, |d| d.min(now + self.period)))
            }
            _ => deadline,
        }
    }
}

impl Clock {
    /// Starts SysTick from the core clock, counting from 0. Call once,
    /// before anything reads the clock; `core_hz` is the clock SysTick's
    /// "processor clock" source sees (HCLK on STM32).
    pub fn start(mut syst: SYST, core_hz: u32) -> Result<Clock, ClockError> {
        let hz = check_core_hz(core_hz)?;
        syst.disable_counter();
        syst.set_clock_source(SystClkSource::Core);
        cortex_m::interrupt::free(|cs| {
            let mut t = Timeline::new(hz);
            set_reload(RELOAD_MAX);
            syst.clear_current();
            SCB::clear_pendst();
            t.restarted(0, RELOAD_MAX);
            TIMELINE.borrow(cs).set(t);
        });
        syst.enable_interrupt();
        syst.enable_counter();
        Ok(Clock {
            _syst: syst,
            busy: None,
        })
    }

    /// While work keeps coming (and for `linger` after `work` last reported
    /// some in [`sleep_until`](Self::sleep_until)), no `wfi` lasts longer
    /// than `period`; once idle, sleeps are as long as the deadline allows.
    ///
    /// For QEMU machines whose NIC model never wakes QEMU's main loop (the
    /// `lan9118`): slirp notices a new host connection, or data the host
    /// sent on it, only when that loop runs, and a SysTick expiry is what
    /// runs it. Without this a connection can wait up to slirp's 0.5 s
    /// timeout; real hardware does not need it.
    pub fn tick_while_busy(&mut self, period: Duration, linger: Duration) {
        self.busy = Some(BusyTick {
            period,
            linger,
            last_work: None,
        });
    }

    /// The current time as smoltcp sees it (microsecond resolution).
    pub fn now(&self) -> Instant {
        instant(micros_now())
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
    ///
    /// Before each `wfi`, SysTick is set to fire at the deadline if it would
    /// otherwise fire later, so the core sleeps through until then: no
    /// periodic tick.
    pub fn sleep_until(&mut self, deadline: Option<Instant>, mut work: impl FnMut() -> bool) {
        loop {
            let wake = cortex_m::interrupt::free(|cs| {
                let timeline = TIMELINE.borrow(cs);
                let mut t = timeline.get();
                let now = read(&mut t);
                timeline.set(t);
                if work() {
                    if let Some(busy) = &mut self.busy {
                        busy.last_work = Some(instant(t.micros(now)));
                    }
                    return true;
                }
                if deadline.is_some_and(|d| now >= t.cycles_at(micros(d))) {
                    return true;
                }
                let sleep_to = match &self.busy {
                    Some(busy) => busy.cap(instant(t.micros(now)), deadline),
                    None => deadline,
                };
                if let Some(at) = sleep_to
                    && let Some(reload) = t.plan(now, t.cycles_at(micros(at)))
                {
                    t.restart(&mut Registers, reload);
                    timeline.set(t);
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

/// An instant's microseconds (0 for one before the epoch).
fn micros(at: Instant) -> u64 {
    u64::try_from(at.total_micros()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    extern crate std;
    use std::string::ToString;

    use super::*;

    #[test]
    fn core_clocks_of_the_boards_are_accepted() {
        for hz in [12_500_000, 25_000_000, 168_000_000, u32::MAX] {
            assert_eq!(check_core_hz(hz), Ok(hz));
        }
    }

    #[test]
    fn core_clock_given_in_mhz_is_refused_with_the_fix() {
        assert_eq!(
            check_core_hz(25),
            Err(ClockError::CoreClockTooSlow { core_hz: 25 })
        );
        let text = check_core_hz(25).unwrap_err().to_string();
        assert!(text.contains("25 Hz") && text.contains("in Hz"), "{text}");
    }

    #[test]
    fn busy_tick_caps_sleeps_only_within_linger_of_the_last_work() {
        let ms = Instant::from_millis;
        let mut busy = BusyTick {
            period: Duration::from_millis(10),
            linger: Duration::from_secs(1),
            last_work: None,
        };
        assert_eq!(
            busy.cap(ms(0), None),
            None,
            "never busy: sleep as long as allowed"
        );
        assert_eq!(busy.cap(ms(0), Some(ms(500))), Some(ms(500)));
        busy.last_work = Some(ms(100));
        assert_eq!(busy.cap(ms(200), None), Some(ms(210)));
        assert_eq!(busy.cap(ms(200), Some(ms(500))), Some(ms(210)));
        assert_eq!(
            busy.cap(ms(200), Some(ms(205))),
            Some(ms(205)),
            "a sooner deadline stays"
        );
        assert_eq!(
            busy.cap(ms(1_100), None),
            None,
            "idle again after the linger"
        );
    }

    #[test]
    fn microseconds_become_smoltcp_instants_saturating() {
        assert_eq!(instant(1_500), Instant::from_micros(1_500));
        assert_eq!(instant(u64::MAX), Instant::from_micros(i64::MAX));
    }
}
