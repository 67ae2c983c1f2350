//! The Stellaris LM3S6965 Ethernet MAC as a `smoltcp::phy::Device`.
//!
//! Written against the controller QEMU models (`hw/net/stellaris_enet.c`) and
//! the LM3S6965 data sheet's register map. It uses raw volatile MMIO: no
//! maintained PAC or HAL crate covers this controller's Ethernet block in a
//! form that works with QEMU (the `lm3s6965` PAC crate has no Ethernet
//! peripheral and is unmaintained), and the driver needs only nine
//! registers (plus a clock-gating register in system control).
//!
//! # Frame format in the FIFOs
//!
//! The controller moves frames through one 32-bit `DATA` register:
//!
//! - RX: word 0 holds the total length in bits 0..16 (frame bytes from the
//!   destination MAC to the end of the payload, plus 2 for the length field
//!   itself, plus 4 for the FCS) and the first two frame bytes in bits 16..32.
//!   The rest of the frame follows in little-endian words, FCS last. Exactly
//!   `ceil(total / 4)` words must be read. `NP` counts the frames waiting;
//!   reading `DATA` while `NP` is 0 is an underflow.
//! - TX: word 0 holds the frame length minus the 14-byte Ethernet header in
//!   bits 0..16 and the first two frame bytes in bits 16..32; then the rest of
//!   the frame from byte 2 in little-endian words, zero padded; then `TR = 1`
//!   starts the transmission. The MAC appends the FCS (`TCTL.CRC`) and pads
//!   short frames (`TCTL.PADEN`).
//!
//! # Interrupts
//!
//! Only the RX interrupt is used (IRQ 42, `IM = RX`). The handler just masks
//! it ([`on_interrupt`]) so that the core wakes from `wfi`; the main loop
//! re-arms it with [`Enet::arm_rx_wakeup`] before sleeping. All frame
//! handling happens in thread mode.

use core::ptr;

use cortex_m::interrupt::InterruptNumber;
use cortex_m::peripheral::NVIC;
use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::EthernetAddress;
use static_cell::ConstStaticCell;

/// Largest frame handled in either direction: 14-byte header + 1500 payload.
/// (No FCS: the MAC adds and strips it.)
pub const MAX_FRAME: usize = 1514;
/// Smallest frame accepted from the FIFO: an Ethernet header.
const MIN_FRAME: usize = 14;
/// RX FIFO overhead per frame: the 2-byte length field and the 4-byte FCS.
const RX_OVERHEAD: usize = 6;
/// Receive buffer: the largest frame with its overhead, in whole words.
const RX_BUF_LEN: usize = (MAX_FRAME + RX_OVERHEAD).div_ceil(4) * 4;
/// Size of the controller's RX FIFO in words: a bound for draining a frame
/// whose length field cannot be trusted.
const FIFO_WORDS: usize = 2048 / 4;

/// Base address of the Ethernet controller.
const BASE: usize = 0x4004_8000;

/// A controller register, as an offset from [`BASE`]. Only the constants in
/// [`reg`] exist, so [`read`] and [`write`] can only touch those.
#[derive(Clone, Copy)]
struct Reg(usize);

/// The registers the driver uses (32-bit accesses only).
mod reg {
    use super::Reg;

    /// Raw interrupt status (read) / acknowledge (write 1s to clear).
    pub(super) const RIS_IACK: Reg = Reg(0x00);
    /// Interrupt mask.
    pub(super) const IM: Reg = Reg(0x04);
    /// Receive control.
    pub(super) const RCTL: Reg = Reg(0x08);
    /// Transmit control.
    pub(super) const TCTL: Reg = Reg(0x0C);
    /// FIFO data, one word per access.
    pub(super) const DATA: Reg = Reg(0x10);
    /// MAC address bytes 0..4 (little-endian).
    pub(super) const IA0: Reg = Reg(0x14);
    /// MAC address bytes 4..6 (little-endian).
    pub(super) const IA1: Reg = Reg(0x18);
    /// Number of frames waiting in the RX FIFO.
    pub(super) const NP: Reg = Reg(0x34);
    /// Transmission request: write 1 to send the frame in the TX FIFO; reads
    /// 1 while a transmission is in progress (always 0 in QEMU).
    pub(super) const TR: Reg = Reg(0x38);
}

/// Interrupt bits in `RIS`, `IACK` and `IM`.
mod int {
    /// A frame was received.
    pub(super) const RX: u32 = 0x01;
    /// The RX FIFO overflowed (a frame was lost).
    pub(super) const FOV: u32 = 0x08;
    /// All seven interrupt sources.
    pub(super) const ALL: u32 = 0x7F;
}

/// `RCTL` bits.
mod rctl {
    pub(super) const RXEN: u32 = 0x01;
    pub(super) const AMUL: u32 = 0x02;
    pub(super) const BADCRC: u32 = 0x08;
    pub(super) const RSTFIFO: u32 = 0x10;
}

/// Receiving: enabled, multicast accepted (IPv6 neighbour discovery), frames
/// with a bad CRC rejected.
const RCTL_RUN: u32 = rctl::RXEN | rctl::AMUL | rctl::BADCRC;

/// `TCTL` bits.
mod tctl {
    pub(super) const TXEN: u32 = 0x01;
    pub(super) const PADEN: u32 = 0x02;
    pub(super) const CRC: u32 = 0x04;
}

/// Run-mode clock gating control 2: bit 28 EMAC0, bit 30 EPHY0.
const SYSCTL_RCGC2: usize = 0x400F_E108;
const RCGC2_EMAC0_EPHY0: u32 = (1 << 28) | (1 << 30);

/// Spin limit while waiting for the previous transmission to leave.
const TX_BUSY_SPINS: u32 = 100_000;

/// The Ethernet controller's interrupt line.
#[derive(Clone, Copy)]
pub struct EnetIrq;

/// NVIC number of the Ethernet controller's interrupt.
pub const IRQ: u16 = 42;

// SAFETY: 42 is the Ethernet controller's line on the LM3S6965 and within
// the NVIC's range; `number` always returns it.
unsafe impl InterruptNumber for EnetIrq {
    fn number(self) -> u16 {
        IRQ
    }
}

fn read(reg: Reg) -> u32 {
    // SAFETY: `reg` is one of the `reg` constants, so the address is a
    // word-aligned register of the Ethernet controller; reads have no side
    // effects beyond the ones the driver wants (DATA pops the RX FIFO, which
    // only `Enet` does).
    unsafe { ptr::read_volatile((BASE + reg.0) as *const u32) }
}

fn write(reg: Reg, value: u32) {
    // SAFETY: as for `read`: a word-aligned controller register; the write
    // changes controller state only, never memory Rust knows about.
    unsafe { ptr::write_volatile((BASE + reg.0) as *mut u32, value) }
}

/// Interrupt-handler half of the driver: masks the RX interrupt so its level
/// drops and the handler is not re-entered; the main loop does the rest.
pub fn on_interrupt() {
    write(reg::IM, 0);
}

/// Counters kept by the driver.
#[derive(Clone, Copy, Default, PartialEq, Eq, defmt::Format)]
pub struct Stats {
    /// Frames handed to the stack.
    pub rx_frames: u32,
    /// Frames dropped because the FIFO length field was out of range.
    pub rx_bad_length: u32,
    /// RX FIFO overflows reported by the controller (frames it lost).
    pub rx_overflows: u32,
    /// Frames transmitted.
    pub tx_frames: u32,
    /// Frames the stack built but the driver refused (bad length or the
    /// transmitter stayed busy).
    pub tx_dropped: u32,
}

impl Stats {
    /// All error counters added up: changes whenever one of them does.
    pub fn errors(&self) -> u32 {
        self.rx_bad_length
            .wrapping_add(self.rx_overflows)
            .wrapping_add(self.tx_dropped)
    }
}

/// Word-aligned receive buffer, so whole FIFO words land on word boundaries.
#[repr(C, align(4))]
struct RxBuf([u8; RX_BUF_LEN]);

/// The Ethernet controller and its frame buffers.
pub struct Enet {
    rx: RxBuf,
    tx: [u8; MAX_FRAME],
    stats: Stats,
}

static ENET: ConstStaticCell<Enet> = ConstStaticCell::new(Enet {
    rx: RxBuf([0; RX_BUF_LEN]),
    tx: [0; MAX_FRAME],
    stats: Stats {
        rx_frames: 0,
        rx_bad_length: 0,
        rx_overflows: 0,
        tx_frames: 0,
        tx_dropped: 0,
    },
});

impl Enet {
    /// Brings the controller up and returns the only handle to it (`None` if
    /// it was already taken).
    ///
    /// The RX interrupt is enabled in the NVIC but masked in the controller
    /// until [`arm_rx_wakeup`](Self::arm_rx_wakeup); the caller must route
    /// IRQ 42 to [`on_interrupt`].
    pub fn take() -> Option<&'static mut Enet> {
        let enet = ENET.try_take()?;
        // SAFETY: RCGC2 is the system-control clock-gating register; setting
        // the EMAC0/EPHY0 bits only enables clocks (real silicon needs it,
        // QEMU ignores it).
        unsafe {
            let rcgc2 = SYSCTL_RCGC2 as *mut u32;
            ptr::write_volatile(rcgc2, ptr::read_volatile(rcgc2) | RCGC2_EMAC0_EPHY0);
        }
        write(reg::IM, 0);
        write(reg::RIS_IACK, int::ALL);
        write(reg::RCTL, rctl::RSTFIFO);
        write(reg::TCTL, tctl::TXEN | tctl::PADEN | tctl::CRC);
        write(reg::RCTL, RCTL_RUN);
        // SAFETY: the handler for IRQ 42 (`DefaultHandler` -> `on_interrupt`)
        // touches only the IM register, so unmasking it cannot break a
        // critical section's assumptions about memory.
        unsafe { NVIC::unmask(EnetIrq) };
        Some(enet)
    }

    /// The MAC address from `IA0`/`IA1` (QEMU: 52:54:00:12:34:56 unless
    /// `-nic ...,mac=` says otherwise).
    pub fn mac_address(&self) -> EthernetAddress {
        let [a, b, c, d] = read(reg::IA0).to_le_bytes();
        let [e, f, _, _] = read(reg::IA1).to_le_bytes();
        EthernetAddress([a, b, c, d, e, f])
    }

    /// Driver counters.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Prepares to sleep: clears the RX interrupt flag, then returns `true`
    /// if a frame is already waiting. Otherwise unmasks the RX interrupt, so
    /// that the next frame wakes the core, and returns `false`.
    ///
    /// Call with interrupts disabled, right before `wfi`: a frame that
    /// arrives after the check leaves the interrupt pending, which makes
    /// `wfi` return at once.
    pub fn arm_rx_wakeup(&mut self) -> bool {
        write(reg::RIS_IACK, int::RX);
        if read(reg::NP) != 0 {
            return true;
        }
        write(reg::IM, int::RX);
        false
    }

    /// Reads the next frame from the FIFO into the receive buffer and returns
    /// its length, or `None` if the FIFO is empty. Frames whose length field
    /// is out of range are drained, counted and skipped.
    fn read_frame(&mut self) -> Option<usize> {
        loop {
            let waiting = read(reg::NP);
            if waiting == 0 {
                self.note_overflow();
                return None;
            }
            let first = read(reg::DATA);
            let total = (first & 0xFFFF) as usize;
            let len = total.wrapping_sub(RX_OVERHEAD);
            if !(MIN_FRAME..=MAX_FRAME).contains(&len) {
                self.drain(waiting);
                self.stats.rx_bad_length = self.stats.rx_bad_length.wrapping_add(1);
                continue;
            }
            // `ceil(total / 4)` words in all; `words * 4 <= RX_BUF_LEN`
            // because `len <= MAX_FRAME`.
            let words = total.div_ceil(4);
            let mut chunks = self.rx.0[..words * 4].chunks_exact_mut(4);
            if let Some(chunk) = chunks.next() {
                chunk.copy_from_slice(&first.to_le_bytes());
            }
            for chunk in chunks {
                chunk.copy_from_slice(&read(reg::DATA).to_le_bytes());
            }
            self.stats.rx_frames = self.stats.rx_frames.wrapping_add(1);
            return Some(len);
        }
    }

    /// Discards the rest of a frame whose first word has been read and whose
    /// length field cannot be trusted: reads words until `NP` drops below
    /// `waiting` (the controller has moved on to the next frame), so a wrong
    /// length neither underflows the FIFO nor leaves part of the frame
    /// behind. If that does not happen within one FIFO's worth of words the
    /// FIFO is reset, which loses the frames behind it but resynchronises.
    fn drain(&mut self, waiting: u32) {
        for _ in 1..FIFO_WORDS {
            if read(reg::NP) < waiting {
                return;
            }
            let _ = read(reg::DATA);
        }
        write(reg::RCTL, rctl::RSTFIFO);
        write(reg::RCTL, RCTL_RUN);
    }

    /// Counts (and acknowledges) an RX FIFO overflow reported by the MAC.
    fn note_overflow(&mut self) {
        if read(reg::RIS_IACK) & int::FOV != 0 {
            write(reg::RIS_IACK, int::FOV);
            self.stats.rx_overflows = self.stats.rx_overflows.wrapping_add(1);
        }
    }
}

/// Writes one frame into the TX FIFO and starts the transmission.
fn transmit_frame(frame: &[u8], stats: &mut Stats) {
    let len = frame.len();
    let mut spins = 0;
    while read(reg::TR) & 1 != 0 {
        spins += 1;
        if spins == TX_BUSY_SPINS {
            stats.tx_dropped = stats.tx_dropped.wrapping_add(1);
            return;
        }
    }
    let (Some(&b0), Some(&b1)) = (frame.first(), frame.get(1)) else {
        stats.tx_dropped = stats.tx_dropped.wrapping_add(1);
        return;
    };
    if !(MIN_FRAME..=MAX_FRAME).contains(&len) {
        stats.tx_dropped = stats.tx_dropped.wrapping_add(1);
        return;
    }
    // `len - MIN_FRAME <= 1500`, so the cast and the shift are lossless.
    let header = (len - MIN_FRAME) as u32 | (u32::from(b0) << 16) | (u32::from(b1) << 24);
    write(reg::DATA, header);
    // Whole words straight from the frame (no copy per word: this loop
    // runs for every 4 bytes sent), then the zero-padded tail.
    let mut words = frame[2..].chunks_exact(4);
    for word in &mut words {
        write(
            reg::DATA,
            u32::from_le_bytes([word[0], word[1], word[2], word[3]]),
        );
    }
    let tail = words.remainder();
    if !tail.is_empty() {
        let mut word = [0u8; 4];
        for (to, from) in word.iter_mut().zip(tail) {
            *to = *from;
        }
        write(reg::DATA, u32::from_le_bytes(word));
    }
    write(reg::TR, 1);
    stats.tx_frames = stats.tx_frames.wrapping_add(1);
}

/// A received frame, already copied out of the FIFO.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

/// Permission to send one frame through the transmit buffer.
pub struct TxToken<'a> {
    buf: &'a mut [u8; MAX_FRAME],
    stats: &'a mut Stats,
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp never asks for more than the MTU; clamp anyway so a bad
        // length cannot panic, and let `transmit_frame` refuse it.
        let frame = &mut self.buf[..len.min(MAX_FRAME)];
        let result = f(frame);
        if len <= MAX_FRAME {
            transmit_frame(frame, self.stats);
        } else {
            self.stats.tx_dropped = self.stats.tx_dropped.wrapping_add(1);
        }
        result
    }
}

impl phy::Device for Enet {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let len = self.read_frame()?;
        let Enet { rx, tx, stats } = self;
        // The frame starts after the 2-byte length field.
        let rx = RxToken {
            frame: &rx.0[2..2 + len],
        };
        Some((rx, TxToken { buf: tx, stats }))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        Some(TxToken {
            buf: &mut self.tx,
            stats: &mut self.stats,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        // The MAC only adds and checks the Ethernet FCS. The default is
        // `Checksum::Both` for every protocol: smoltcp computes and verifies
        // all IP, TCP, UDP and ICMP checksums in software.
        caps.checksum = ChecksumCapabilities::default();
        caps
    }
}
