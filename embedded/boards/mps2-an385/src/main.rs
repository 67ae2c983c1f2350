//! Ricochet on Arm's MPS2 with the AN385 FPGA image (Cortex-M3), as QEMU's
//! `mps2-an385` models it: echo on TCP and UDP port 7 through the LAN9118
//! Ethernet controller. Logs go out as defmt frames over semihosting: run
//! with `cargo run --release` (see `../qemu-run.sh`).
//!
//! Chip glue only: the AN385's addresses, clock and interrupt line. The
//! node's setup and the loop are `ricochet-mps2`, shared by the MPS2
//! boards; the fault and panic handlers come through it from
//! `ricochet-qemu-rt`.

#![no_std]
#![no_main]

use cortex_m_rt::{entry, exception};
use ricochet_mps2::{Board, Eth, EthernetAddress, Mmio};
use static_cell::ConstStaticCell;

/// The LAN9118's register window and NVIC line on the AN385.
const ETH_BASE: usize = 0x4020_0000;
const ETH_IRQ: u16 = 13;

// SAFETY: ETH_BASE is the AN385's LAN9118 window (256 bytes of device
// memory); this driver and `DefaultHandler` (INT_EN only) are its only users.
static ETH: ConstStaticCell<Eth<ETH_BASE>> = ConstStaticCell::new(Eth::new(unsafe { Mmio::new() }));

#[entry]
fn main() -> ! {
    let board = Board {
        name: defmt::intern!("mps2-an385"),
        // SYSCLK of the MPS2 FPGA images (QEMU `hw/arm/mps2.c`).
        core_hz: 25_000_000,
        eth_irq: ETH_IRQ,
        fallback_mac: EthernetAddress([0x02, 0x52, 0x43, 0x00, 0x03, 0x85]),
    };
    ricochet_mps2::run(board, ETH.take())
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    // SAFETY: ETH_BASE and ETH_IRQ are the AN385's LAN9118 window and line
    // (QEMU wires it to input 13 of the 32 the machine has).
    unsafe { ricochet_mps2::on_interrupt::<ETH_BASE>(irqn, ETH_IRQ) }
}
