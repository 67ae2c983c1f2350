//! SysTick as the monotonic clock of a Cortex-M board running smoltcp, and
//! the interrupt-safe sleep every board needs: one crate instead of a
//! `clock.rs` copied into each board.
//!
//! A board's loop is then:
//!
//! ```ignore
//! let mut clock = Clock::start(core.SYST, CORE_HZ)?;       // SysTick, 1 kHz
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
//! Today SysTick ticks at 1 kHz and each tick ends the `wfi`, which
//! re-checks and sleeps again. The API is built so that SysTick can become
//! a one-shot timer for the deadline (tickless) without changing a board.
//!
//! This crate is the only place where SysTick ticks become smoltcp time; the
//! node converts smoltcp time to the core's itself.

#![no_std]

mod every;
mod systick;

pub use every::{Every, earliest};
pub use systick::{Clock, ClockError, TICK_HZ, millis, reload_for};
