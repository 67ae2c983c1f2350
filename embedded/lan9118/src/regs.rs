//! The controller's register window: offsets, bits, and the one trait the
//! driver reaches the hardware through.
//!
//! Offsets and bits are from the SMSC LAN9118/LAN9220 data sheets (the
//! "system control and status registers" and the indirectly addressed MAC
//! registers), checked against QEMU's model (`hw/net/lan9118.c`). Only what
//! the driver uses is named here.

/// A register of the controller's 256-byte window: a byte offset from its
/// base. Only the constants in this module exist (the field is private), so
/// code outside the crate can name a register but never invent an address:
/// [`Mmio`] can therefore offer safe `read`/`write`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reg(u8);

impl Reg {
    /// The byte offset from the window's base (for fakes in tests).
    pub const fn offset(self) -> usize {
        self.0 as usize
    }
}

/// RX data FIFO port (0x00..0x1C alias one port): pops one word.
pub const RX_DATA_FIFO: Reg = Reg(0x00);
/// TX data FIFO port (0x20..0x3C alias one port): pushes one word.
pub const TX_DATA_FIFO: Reg = Reg(0x20);
/// RX status FIFO port: pops one frame's status word.
pub const RX_STATUS_FIFO: Reg = Reg(0x40);
/// TX status FIFO port: pops one sent frame's status word.
pub const TX_STATUS_FIFO: Reg = Reg(0x48);
/// Chip id (bits 16..32) and revision (bits 0..16).
pub const ID_REV: Reg = Reg(0x50);
/// Interrupt pin configuration.
pub const IRQ_CFG: Reg = Reg(0x54);
/// Interrupt status; write 1s to clear.
pub const INT_STS: Reg = Reg(0x58);
/// Interrupt enables.
pub const INT_EN: Reg = Reg(0x5C);
/// Reads [`BYTE_TEST_PATTERN`] when the bus works and the byte order is right.
pub const BYTE_TEST: Reg = Reg(0x64);
/// FIFO level interrupt thresholds.
pub const FIFO_INT: Reg = Reg(0x68);
/// Receive configuration (end alignment, data offset, dump).
pub const RX_CFG: Reg = Reg(0x6C);
/// Transmit configuration.
pub const TX_CFG: Reg = Reg(0x70);
/// Hardware configuration (soft reset, FIFO sizes).
pub const HW_CFG: Reg = Reg(0x74);
/// RX FIFO information: status words and data bytes waiting.
pub const RX_FIFO_INF: Reg = Reg(0x7C);
/// TX FIFO information: status words waiting and data bytes free.
pub const TX_FIFO_INF: Reg = Reg(0x80);
/// Power management control (the READY bit).
pub const PMT_CTRL: Reg = Reg(0x84);
/// Frames the controller dropped for lack of RX FIFO space (clears on read).
pub const RX_DROP: Reg = Reg(0xA0);
/// Indirect MAC register access: command.
pub const MAC_CSR_CMD: Reg = Reg(0xA4);
/// Indirect MAC register access: data.
pub const MAC_CSR_DATA: Reg = Reg(0xA8);

/// What [`BYTE_TEST`] reads.
pub const BYTE_TEST_PATTERN: u32 = 0x8765_4321;

/// `IRQ_CFG`: master enable, active-high, push-pull. QEMU inverts the line
/// unless both polarity and type are set, so all three are needed there.
pub const IRQ_CFG_EN_HIGH_PUSH_PULL: u32 = (1 << 8) | (1 << 4) | 1;

/// `INT_STS` / `INT_EN` bits.
pub mod int {
    /// RX status FIFO level: more status words than `FIFO_INT[7:0]` waiting.
    pub const RSFL: u32 = 1 << 3;
    /// Every source (for clearing).
    pub const ALL: u32 = 0xFFFF_FFFF;
}

/// `FIFO_INT`: TX data available level 0x48 (the reset value), TX status
/// level 0, RX status level 0 (interrupt as soon as one frame is waiting).
pub const FIFO_INT_RX_ONE_FRAME: u32 = 0x4800_0000;

/// `TX_CFG` bits.
pub mod tx_cfg {
    /// Transmitter on.
    pub const TX_ON: u32 = 1 << 1;
    /// Allow the TX status FIFO to overrun instead of stopping transmission.
    pub const TXSAO: u32 = 1 << 2;
}

/// `HW_CFG`: soft reset (self-clearing).
pub const HW_CFG_SRST: u32 = 1;
/// `PMT_CTRL`: the device is ready after reset.
pub const PMT_CTRL_READY: u32 = 1;

/// `RX_FIFO_INF`: status words waiting, bits 16..24.
pub const fn rx_status_used(inf: u32) -> u32 {
    (inf >> 16) & 0xFF
}
/// `TX_FIFO_INF`: TX status words waiting, bits 16..24.
pub const fn tx_status_used(inf: u32) -> u32 {
    (inf >> 16) & 0xFF
}
/// `TX_FIFO_INF`: free bytes in the TX data FIFO, bits 0..16.
pub const fn tx_data_free(inf: u32) -> usize {
    (inf & 0xFFFF) as usize
}

/// RX status word fields.
pub mod rx_status {
    /// Frame length in bytes, FCS included (bits 16..30).
    pub const fn length(status: u32) -> usize {
        ((status >> 16) & 0x3FFF) as usize
    }
    /// Error summary (CRC, runt, too long, collision, MII error, ...).
    pub const ERROR: u32 = 1 << 15;
}

/// TX status word: error summary.
pub const TX_STATUS_ERROR: u32 = 1 << 15;

/// TX command A fields.
pub mod tx_cmd_a {
    /// First segment of a frame.
    pub const FIRST_SEGMENT: u32 = 1 << 13;
    /// Last segment of a frame.
    pub const LAST_SEGMENT: u32 = 1 << 12;
    /// Buffer size in bytes (bits 0..11).
    pub const SIZE_MASK: u32 = 0x7FF;
}

/// TX command B: packet length (bits 0..11) and a tag (bits 16..32) echoed
/// in the TX status word.
pub const fn tx_cmd_b(tag: u16, len: u32) -> u32 {
    ((tag as u32) << 16) | (len & tx_cmd_a::SIZE_MASK)
}

/// `MAC_CSR_CMD` bits.
pub mod mac_csr {
    /// Start the access; reads 1 until it is done.
    pub const BUSY: u32 = 1 << 31;
    /// 1 = read, 0 = write.
    pub const READ: u32 = 1 << 30;
}

/// Indirectly addressed MAC registers (index in `MAC_CSR_CMD[7:0]`).
pub mod mac {
    /// MAC control.
    pub const CR: u32 = 1;
    /// MAC address bytes 4 and 5.
    pub const ADDRH: u32 = 2;
    /// MAC address bytes 0 to 3.
    pub const ADDRL: u32 = 3;
    /// MII (PHY) access: PHY address, register, direction, busy.
    pub const MII_ACC: u32 = 6;
    /// MII (PHY) data.
    pub const MII_DATA: u32 = 7;
}

/// `MAC_CR` bits.
pub mod mac_cr {
    /// Receiver on.
    pub const RXEN: u32 = 1 << 2;
    /// Transmitter on.
    pub const TXEN: u32 = 1 << 3;
    /// Promiscuous (set at reset).
    pub const PRMS: u32 = 1 << 18;
    /// Pass all multicast frames (IPv6 neighbour discovery needs some).
    pub const MCPAS: u32 = 1 << 19;
    /// Full duplex.
    pub const FDPX: u32 = 1 << 20;
}

/// `MII_ACC` fields.
pub mod mii {
    /// The internal PHY's address.
    pub const PHY_ADDRESS: u32 = 1;
    /// Busy: set to start, reads 1 until done.
    pub const BUSY: u32 = 1;
    /// 1 = write, 0 = read.
    pub const WRITE: u32 = 1 << 1;
    /// The access word for PHY register `reg`.
    pub const fn access(reg: u32, write: bool) -> u32 {
        (PHY_ADDRESS << 11) | ((reg & 0x1F) << 6) | if write { WRITE } else { 0 } | BUSY
    }
}

/// PHY registers and bits (IEEE 802.3 clause 22).
pub mod phy {
    /// Basic control.
    pub const BCR: u32 = 0;
    /// Auto-negotiation advertisement.
    pub const ANAR: u32 = 4;
    /// Link partner ability.
    pub const ANLPAR: u32 = 5;
    /// `BCR`: auto-negotiation on, and restart it.
    pub const BCR_AUTONEG_RESTART: u32 = (1 << 12) | (1 << 9);
    /// `ANAR`: 100 full, 100 half, 10 full, 10 half, IEEE 802.3 selector.
    pub const ANAR_ALL_SPEEDS: u32 = 0x01E1;
    /// Full-duplex abilities (100BASE-TX FD, 10BASE-T FD) in `ANAR`/`ANLPAR`.
    pub const FULL_DUPLEX: u32 = 0x0140;
}

/// Access to the register window: 32-bit reads and writes only. Reads of
/// the FIFO ports pop them, hence `&mut self`.
pub trait Registers {
    /// Reads a register.
    fn read(&mut self, reg: Reg) -> u32;
    /// Writes a register.
    fn write(&mut self, reg: Reg, value: u32);
}

/// The real controller: volatile 32-bit accesses to the window at `BASE`.
///
/// The address is a type parameter, not a field, so a `static` driver is all
/// zeros and lands in `.bss` (a field would put its 3 KiB of buffers in
/// `.data`, in flash and copied at boot).
#[derive(Debug)]
pub struct Mmio<const BASE: usize> {
    _private: (),
}

impl<const BASE: usize> Mmio<BASE> {
    /// The register window at `BASE`.
    ///
    /// # Safety
    ///
    /// `BASE` must be the word-aligned base address of a LAN9118-compatible
    /// controller's 256-byte register window, mapped as device memory. Other
    /// handles to the same window (one driver, plus an interrupt handler that
    /// only calls [`crate::on_interrupt`]) must not access it concurrently
    /// except as [`crate::on_interrupt`] documents.
    pub const unsafe fn new() -> Self {
        Mmio { _private: () }
    }
}

impl<const BASE: usize> Registers for Mmio<BASE> {
    fn read(&mut self, reg: Reg) -> u32 {
        // SAFETY: `Mmio::new`'s contract makes `BASE` a mapped register
        // window of at least 256 bytes, and every `Reg` is a word-aligned
        // offset below 0x100 (the constants above), so the address is a
        // valid, aligned device register.
        unsafe { core::ptr::read_volatile((BASE + reg.offset()) as *const u32) }
    }

    fn write(&mut self, reg: Reg, value: u32) {
        // SAFETY: as for `read`; writes change controller state only, never
        // memory Rust knows about.
        unsafe { core::ptr::write_volatile((BASE + reg.offset()) as *mut u32, value) }
    }
}
