//! The exception and panic handlers, the defmt timestamp and logger: the
//! same on every MPS2 board, so they live here rather than in each binary.

use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m_rt::{ExceptionFrame, exception};
use defmt_semihosting as _;
use ricochet_compact_rt as _;
use ricochet_lan9118::Mmio;

defmt::timestamp!("{=u64:ms}", ricochet_cortex_m_clock::millis());

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

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    defmt::error!(
        "hard fault: pc {=u32:#010x} lr {=u32:#010x}",
        frame.pc(),
        frame.lr()
    );
    semihosting::process::exit(1)
}

/// Logs the panic through defmt and ends the QEMU process with status 1.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    static PANICKED: AtomicBool = AtomicBool::new(false);
    // A panic while logging must not recurse. Nothing of `info` is read:
    // then the compiler drops every panic site's location and message
    // (about 10 KiB of flash); our own panics go through defmt::panic!,
    // which logs its message first.
    if !PANICKED.swap(true, Ordering::Relaxed) {
        let _ = info;
        defmt::error!("panic");
    }
    semihosting::process::exit(1)
}
