//! SysTick as the monotonic clock of a Cortex-M board running smoltcp, and
//! the interrupt-safe sleep every board needs: one crate instead of a
//! `clock.rs` copied into each board.
//!
//! A board's loop is then:
//!
//! ```ignore
//! let mut clock = Clock::start(core.SYST, CORE_HZ)?;       // SysTick, tickless
//! let mut stats = Every::new(Duration::from_secs(10));
//! loop {
//!     let now = clock.now();                                 // smoltcp Instant
//!     let wake = node.poll(now, eth).map(|delay| now + delay);
//!     if stats.due(now) {
//!         node.log_stats();
//!     }
//!     clock.sleep_until(stats.earliest(wake), || eth.arm_wakeup());
//! }
//! ```
//!
//! [`Clock::sleep_until`] masks interrupts, asks the device whether it has
//! work (and, if not, to arm its interrupt), checks the deadline, and only
//! then executes `wfi`: an interrupt that arrives after the check stays
//! pending and ends the `wfi` at once, so no wake-up is lost.
//!
//! SysTick is tickless: before each `wfi` it is set to fire at the
//! deadline (a one-shot period) if its current period would end later;
//! without a deadline it runs the longest period its 24-bit reload allows
//! (0.67 s at 25 MHz). Time between its exceptions is read from the counter
//! itself: microsecond resolution, and nothing lost to a late handler. An
//! idle board wakes a few times a second, not 1000.
//!
//! This crate is the only place where SysTick ticks become smoltcp time; the
//! node converts smoltcp time to the core's itself.

#![no_std]

mod every;
mod systick;
mod timeline;

pub use every::{Every, earliest};
pub use systick::{Clock, ClockError, check_core_hz, millis};
