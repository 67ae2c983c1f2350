//! The millisecond clock: SysTick at 1 kHz, and the only place where ticks
//! become network-stack time.
//!
//! SysTick counts the core clock (HCLK, 168 MHz here), so the reload value is
//! `HCLK / 1000 - 1` (167_999, well inside SysTick's 24 bits).
//!
//! The counter is two `AtomicU32` halves written only by the SysTick handler
//! and read lock-free (see [`now_ms`]), so it never wraps in practice
//! (2^64 ms).
//!
//! Every conversion from ticks to another crate's time type lives here:
//! today smoltcp's `Instant`/`Duration`; the core's own `Instant` (u64 µs)
//! goes here too when the shared `ricochet-embedded` crate is wired in.

use core::sync::atomic::{AtomicU32, Ordering};

use cortex_m::peripheral::SYST;
use cortex_m::peripheral::syst::SystClkSource;
use cortex_m_rt::exception;

/// Low 32 bits of the millisecond count.
static MS_LO: AtomicU32 = AtomicU32::new(0);
/// High 32 bits, bumped when `MS_LO` wraps.
static MS_HI: AtomicU32 = AtomicU32::new(0);

/// Starts SysTick at 1 kHz from a core clock of `hclk_hz`. Call once,
/// before anything reads the clock.
pub fn init(mut syst: SYST, hclk_hz: u32) {
    let reload = hclk_hz / 1_000 - 1;
    debug_assert!(reload < 1 << 24, "SysTick reload is 24 bits");
    syst.disable_counter();
    syst.set_clock_source(SystClkSource::Core);
    syst.set_reload(reload);
    syst.clear_current();
    syst.enable_interrupt();
    syst.enable_counter();
}

#[exception]
fn SysTick() {
    // Only this handler writes the counter, and nothing preempts it that
    // writes it too, so a load/store pair is enough.
    let lo = MS_LO.load(Ordering::Relaxed).wrapping_add(1);
    MS_LO.store(lo, Ordering::Release);
    if lo == 0 {
        MS_HI.fetch_add(1, Ordering::Release);
    }
}

/// Milliseconds since [`init`].
///
/// Reads high, low, high again and retries if the high half changed in
/// between, so a wrap of the low half during the read is never torn.
pub fn now_ms() -> u64 {
    loop {
        let hi = MS_HI.load(Ordering::Acquire);
        let lo = MS_LO.load(Ordering::Acquire);
        if MS_HI.load(Ordering::Acquire) == hi {
            return (u64::from(hi) << 32) | u64::from(lo);
        }
    }
}

/// The current time as smoltcp sees it.
pub fn smoltcp_now() -> smoltcp::time::Instant {
    to_smoltcp(now_ms())
}

/// A millisecond count as a smoltcp instant.
pub fn to_smoltcp(ms: u64) -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_millis(i64::try_from(ms).unwrap_or(i64::MAX))
}

/// The tick at which a smoltcp delay starting at `now_ms` ends, rounded up to
/// the next whole millisecond so a sub-millisecond delay never turns into a
/// busy loop.
pub fn deadline_ms(now_ms: u64, delay: smoltcp::time::Duration) -> u64 {
    now_ms.saturating_add(delay.total_micros().div_ceil(1_000))
}
