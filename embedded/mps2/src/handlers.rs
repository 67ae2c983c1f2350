//! The interrupt handler's body, the same on every MPS2 board. The
//! fault and panic handlers, the defmt timestamp and logger come from
//! `ricochet-qemu-rt`, shared with the lm3s6965evb board.

use ricochet_compact_rt as _;
use ricochet_lan9118::Mmio;
use ricochet_qemu_rt as _;

/// The body of a board's `DefaultHandler`: masks the LAN9118's interrupt
/// (the main loop does the rest) when `irqn` is its line `eth_irq`, and
/// panics on any other line (none is unmasked).
///
/// # Safety
///
/// `BASE` must be the LAN9118's register window and `eth_irq` its NVIC
/// line; the window's only other user must be the board's driver, which
/// writes `INT_EN` only with interrupts masked.
pub unsafe fn on_interrupt<const BASE: usize>(irqn: i16, eth_irq: u16) {
    if irqn == eth_irq as i16 {
        // SAFETY: the caller's promise: the LAN9118's window, where
        // `on_interrupt` writes INT_EN only.
        ricochet_lan9118::on_interrupt(&mut unsafe { Mmio::<BASE>::new() });
    } else {
        defmt::panic!("unexpected interrupt {}", irqn);
    }
}
