//! What every Ricochet firmware image that runs in QEMU shares (the
//! `qemu-lm3s6965evb` board and, through `ricochet-mps2`, the MPS2
//! boards), written once:
//!
//! - the defmt logger, over semihosting (`defmt-semihosting`);
//! - the defmt timestamp: milliseconds of `ricochet-cortex-m-clock`;
//! - a `HardFault` handler that logs the faulting `pc` and `lr`, and a
//!   panic handler that logs the panic; both end the QEMU process with
//!   status 1, so a run that faults fails its test instead of hanging.
//!
//! A firmware gets all of it by linking the crate (`use ricochet_qemu_rt as
//! _;`). A panic logs only "panic": once the handler reads nothing of its
//! `PanicInfo`, the compiler drops every panic site's location and message
//! (file paths, `core::fmt`), about 10 KiB of flash. The `panic-location`
//! feature logs the file and line instead. Our own panics go through
//! `defmt::panic!`, which logs its message before getting here.
//!
//! Firmware only: on the host the crate is empty (see `Cargo.toml`).
//! Boards on real hardware have no semihosting host to exit to and do not
//! use it.

#![no_std]

#[cfg(target_os = "none")]
mod handlers;

/// Nothing, unless built with a `selftest-*` feature: then it panics
/// (`selftest-panic`) or executes an undefined instruction, a UsageFault
/// escalated to HardFault (`selftest-fault`; the firmware enables no
/// configurable fault handler). Boards call it once booted, after their
/// "up" line; CI's check of the handlers (`cargo xtask ci qemu`,
/// xtask/src/handlers.rs) needs both lines. Never in an image.
#[cfg(target_os = "none")]
#[inline(always)]
pub fn selftest() {
    #[cfg(all(feature = "selftest-panic", feature = "selftest-fault"))]
    compile_error!("selftest-panic and selftest-fault each end the run: enable one");
    #[cfg(feature = "selftest-panic")]
    core::panic!("self-test");
    #[cfg(feature = "selftest-fault")]
    cortex_m::asm::udf();
}
