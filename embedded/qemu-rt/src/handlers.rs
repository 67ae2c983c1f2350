//! The handlers, the timestamp and the logger (see the crate docs).

use core::sync::atomic::{AtomicBool, Ordering};

use cortex_m_rt::{ExceptionFrame, exception};
use defmt_semihosting as _;

defmt::timestamp!("{=u64:ms}", ricochet_cortex_m_clock::millis());

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    defmt::error!(
        "hard fault: pc {=u32:#010x} lr {=u32:#010x} (the faulting instruction: llvm-addr2line -e ELF PC; lr is a return address only where the function had not reused it)",
        frame.pc(),
        frame.lr()
    );
    semihosting::process::exit(1)
}

/// Logs the panic through defmt and ends the QEMU process with status 1.
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    static PANICKED: AtomicBool = AtomicBool::new(false);
    // A panic while logging (for example inside the defmt logger) must not
    // recurse.
    if !PANICKED.swap(true, Ordering::Relaxed) {
        #[cfg(feature = "panic-location")]
        match info.location() {
            Some(at) => defmt::error!("panic at {=str}:{=u32}", at.file(), at.line()),
            None => defmt::error!("panic (no location given)"),
        }
        #[cfg(not(feature = "panic-location"))]
        {
            let _ = info;
            defmt::error!(
                "panic (its file and line: build with the panic-location feature; defmt::panic! logs its message)"
            );
        }
    }
    semihosting::process::exit(1)
}
