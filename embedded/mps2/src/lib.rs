//! What the Arm MPS2 firmware crates (`embedded/boards/mps2-an385`,
//! `mps2-an500`, `mps2-an505`) share, so each board crate keeps only what
//! differs between the FPGA images: the LAN9118's register window and NVIC
//! line, SysTick's clock, the machine's name, the target, `memory.x`.
//!
//! - `run`: starts the clock and the LAN9118, builds the echo node
//!   (every mode from one pool of 4 sockets, UDP echo, DHCP with a static
//!   fallback to QEMU's 10.0.2.15/24) and runs the poll/sleep loop.
//! - `on_interrupt`: the body of the board's `DefaultHandler`.
//! - Through `ricochet-qemu-rt`: the `HardFault` and panic handlers, the
//!   defmt timestamp, and the defmt logger (over semihosting): a board gets
//!   them by linking this crate.
//!
//! A board's `main.rs`, then:
//!
//! ```ignore
//! const ETH_BASE: usize = 0x4020_0000;
//! const ETH_IRQ: u16 = 13;
//! // SAFETY: the LAN9118's window; this driver and DefaultHandler use it.
//! static ETH: ConstStaticCell<Eth<ETH_BASE>> = ConstStaticCell::new(Eth::new(unsafe { Mmio::new() }));
//!
//! #[entry]
//! fn main() -> ! {
//!     ricochet_mps2::run(Board { name: defmt::intern!("mps2-an385"), core_hz: 25_000_000,
//!                                eth_irq: ETH_IRQ, fallback_mac: ... }, ETH.take())
//! }
//!
//! #[exception]
//! unsafe fn DefaultHandler(irqn: i16) {
//!     // SAFETY: ETH_BASE and ETH_IRQ are the LAN9118's window and line.
//!     unsafe { ricochet_mps2::on_interrupt::<ETH_BASE>(irqn, ETH_IRQ) }
//! }
//! ```
//!
//! The driver's static and `DefaultHandler` stay in the board: the window's
//! address is a type parameter (`Mmio<BASE>`, which keeps the driver in
//! `.bss`), and a static cannot be generic.
//!
//! Firmware only: on the host the crate is empty (see `Cargo.toml`).

#![no_std]

#[cfg(target_os = "none")]
mod handlers;
#[cfg(target_os = "none")]
mod run;

#[cfg(target_os = "none")]
pub use handlers::on_interrupt;
#[cfg(target_os = "none")]
pub use run::{Board, Eth, run};
#[cfg(target_os = "none")]
pub use {ricochet_embedded::smoltcp::wire::EthernetAddress, ricochet_lan9118::Mmio};
