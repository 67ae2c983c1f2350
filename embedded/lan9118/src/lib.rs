//! An SMSC LAN9118-family Ethernet controller (LAN9118, LAN9220, and QEMU's
//! `lan9118` model on the Arm MPS2/MPS3 machines) as a
//! [`smoltcp::phy::Device`]: `#![no_std]`, no allocation, programmed I/O
//! through the controller's FIFO ports.
//!
//! The driver reaches the hardware only through the [`Registers`] trait:
//! [`Mmio`] on a board, a fake register block in the host tests
//! (`tests/`). A board does this much:
//!
//! ```ignore
//! static ETH: ConstStaticCell<Lan9118<Mmio<0x4020_0000>>> =
//!     ConstStaticCell::new(Lan9118::new(unsafe { Mmio::new() }));
//! let eth = ETH.take();
//! eth.init(FALLBACK_MAC)?;            // reset, PHY, MAC, RX/TX on; interrupt masked
//! // route the controller's IRQ line to `lan9118::on_interrupt`, unmask it in the NVIC
//! loop {
//!     let delay = node.poll(now, eth);
//!     // with interrupts masked: `eth.arm_wakeup()` true => poll again, else `wfi`
//! }
//! ```
//!
//! # Frames through the FIFOs
//!
//! - **Receive.** `RX_FIFO_INF` counts the status words waiting. Each frame
//!   has one status word (length including the 4-byte FCS, error summary)
//!   and then `ceil(length / 4)` little-endian data words (no offset, 4-byte
//!   end alignment: `RX_CFG = 0`). Exactly that many words are read, so the
//!   FIFO never loses its place; a frame with an error or an impossible
//!   length is read out, dropped and counted.
//! - **Transmit.** TX command A (first and last segment, buffer size), TX
//!   command B (a tag and the frame length), then the frame in little-endian
//!   words, the last one zero padded. The MAC adds padding and the FCS. A
//!   frame is written only when `TX_FIFO_INF` shows room for it; otherwise
//!   smoltcp gets no token and retries, and [`Lan9118::arm_wakeup`] keeps the
//!   board from sleeping until it has. TX status words are drained after
//!   each frame and errors counted (`TX_CFG.TXSAO` is set too, so an
//!   unread status never stops the transmitter).
//!
//! # Interrupts
//!
//! One source is used: the RX status FIFO level (`RSFL`, at least one frame
//! waiting). The handler only masks it ([`on_interrupt`]) so the core wakes
//! from `wfi`; [`Lan9118::arm_wakeup`] acknowledges it and re-enables it
//! right before the board sleeps. All frame handling is in thread mode.

#![no_std]

mod device;
mod driver;
pub mod regs;

pub use driver::{InitError, Lan9118, MAX_FRAME, Stats, Step};
pub use regs::{Mmio, Reg, Registers};

/// The interrupt handler's whole job: mask the controller's interrupt so its
/// line drops and the handler is not entered again; the main loop does the
/// rest and re-arms it with [`Lan9118::arm_wakeup`].
///
/// This writes `INT_EN` only, which the driver itself writes only from
/// [`Lan9118::init`] and [`Lan9118::arm_wakeup`] (call both with interrupts
/// masked, or before the interrupt is unmasked in the NVIC).
pub fn on_interrupt(regs: &mut impl Registers) {
    regs.write(regs::INT_EN, 0);
}
