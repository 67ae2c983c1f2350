//! The interrupt vectors of the LM3S6965: 48 lines, every one to
//! `DefaultHandler` (which serves the Ethernet line, 42, and panics on any
//! other). With cortex-m-rt's `device` feature this table replaces the
//! generic one of 240 vectors: 192 bytes of flash instead of 960.

/// One vector: a handler.
#[repr(transparent)]
pub struct Vector(unsafe extern "C" fn());

unsafe extern "C" {
    /// cortex-m-rt's name for the board's `#[exception] DefaultHandler`.
    fn DefaultHandler();
}

/// Interrupt lines of the LM3S6965 (data sheet, table "Interrupts").
const LINES: usize = 48;

/// The interrupt part of the vector table, placed by cortex-m-rt's linker
/// script right after the system exceptions.
#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
pub static __INTERRUPTS: [Vector; LINES] = [const { Vector(DefaultHandler) }; LINES];
