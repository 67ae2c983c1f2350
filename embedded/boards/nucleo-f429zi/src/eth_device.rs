//! stm32-eth's DMA rings as a smoltcp 0.14 `phy::Device`.
//!
//! stm32-eth 0.8.2 ships a `Device` impl behind its `smoltcp-phy` feature,
//! but for smoltcp 0.12; a crate generic over `smoltcp::phy::Device` only
//! accepts a device built against the same smoltcp version. This is the
//! equivalent for 0.14, on stm32-eth's public ring API
//! ([`EthernetDMA::split`], `RxRing::recv_next`, `TxRing::send_next`):
//!
//! - `receive` hands out tokens only when a received descriptor is ready
//!   *and* a transmit descriptor is free (smoltcp may answer at once);
//! - the RX token takes the frame from the ring when consumed and gives the
//!   descriptor back to the DMA right after smoltcp has read it; a descriptor
//!   the DMA flagged as erroneous or truncated is given back and counted,
//!   and smoltcp sees an empty frame, which it drops;
//! - the TX token fills the next free descriptor in place and hands it to the
//!   DMA.
//!
//! No copies: smoltcp reads and writes the DMA buffers directly.

use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use stm32_eth::dma::{EthernetDMA, RxRing, TxRing};

/// Largest frame handled in either direction: 14-byte header + 1500 payload.
/// (No FCS: the MAC adds it on TX and strips it on RX.)
pub const MAX_FRAME: usize = 1514;

/// Counters kept by the device.
#[derive(Clone, Copy, Default, PartialEq, Eq, defmt::Format)]
pub struct Stats {
    /// Frames handed to the stack.
    pub rx_frames: u32,
    /// Descriptors the DMA reported as erroneous or truncated (dropped).
    pub rx_errors: u32,
    /// Frames handed to the DMA.
    pub tx_frames: u32,
}

/// The Ethernet DMA and the device counters.
pub struct EthDevice<'rx, 'tx> {
    dma: EthernetDMA<'rx, 'tx>,
    rx_frames: u32,
    rx_errors: u32,
    tx_frames: u32,
}

impl<'rx, 'tx> EthDevice<'rx, 'tx> {
    /// Wraps a running DMA (from `stm32_eth::new_with_mii`).
    pub fn new(dma: EthernetDMA<'rx, 'tx>) -> Self {
        EthDevice {
            dma,
            rx_frames: 0,
            rx_errors: 0,
            tx_frames: 0,
        }
    }

    /// True when a received frame is waiting in the ring.
    pub fn rx_pending(&mut self) -> bool {
        self.dma.rx_available()
    }

    /// Device counters.
    pub fn stats(&self) -> Stats {
        Stats {
            rx_frames: self.rx_frames,
            rx_errors: self.rx_errors,
            tx_frames: self.tx_frames,
        }
    }
}

/// A received frame, still in its DMA descriptor.
pub struct RxToken<'a, 'rx> {
    ring: &'a mut RxRing<'rx>,
    frames: &'a mut u32,
    errors: &'a mut u32,
}

impl phy::RxToken for RxToken<'_, '_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        match self.ring.recv_next(None) {
            Ok(packet) => {
                *self.frames = self.frames.wrapping_add(1);
                let result = f(&packet);
                // Gives the descriptor back to the DMA.
                packet.free();
                result
            }
            Err(_) => {
                // The descriptor is already back with the DMA.
                *self.errors = self.errors.wrapping_add(1);
                f(&[])
            }
        }
    }
}

/// A free transmit descriptor.
pub struct TxToken<'a, 'tx> {
    ring: &'a mut TxRing<'tx>,
    frames: &'a mut u32,
}

impl phy::TxToken for TxToken<'_, '_> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        // smoltcp never asks for more than `max_transmission_unit`; the clamp
        // keeps a bad length from reaching `send_next`'s size assertion.
        let len = len.min(MAX_FRAME);
        // The token exists only if `next_entry_available()` was true, and it
        // borrows the ring mutably, so nothing can have taken the entry since:
        // the DMA only ever gives descriptors back.
        let mut packet = self
            .ring
            .send_next(len, None)
            .expect("TxToken is only created for a free descriptor");
        let result = f(&mut packet);
        *self.frames = self.frames.wrapping_add(1);
        // Hands the descriptor to the DMA and kicks it.
        packet.send();
        result
    }
}

impl<'rx, 'tx> phy::Device for EthDevice<'rx, 'tx> {
    type RxToken<'a>
        = RxToken<'a, 'rx>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, 'tx>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_, 'rx>, TxToken<'_, 'tx>)> {
        let EthDevice {
            dma,
            rx_frames,
            rx_errors,
            tx_frames,
        } = self;
        let (rx, tx) = dma.split();
        if !(rx.next_entry_available() && tx.next_entry_available()) {
            return None;
        }
        Some((
            RxToken {
                ring: rx,
                frames: rx_frames,
                errors: rx_errors,
            },
            TxToken {
                ring: tx,
                frames: tx_frames,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_, 'tx>> {
        let (_, tx) = self.dma.split();
        if !tx.next_entry_available() {
            return None;
        }
        Some(TxToken {
            ring: tx,
            frames: &mut self.tx_frames,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        // All checksums in software (smoltcp's default, `Checksum::Both`).
        // stm32-eth also turns on the MAC's checksum insertion, which
        // overwrites TX checksums with the same values; on RX the MAC is set
        // to pass frames with bad TCP/UDP checksums through, so smoltcp's
        // own verification is what rejects them.
        caps.checksum = ChecksumCapabilities::default();
        caps
    }
}
