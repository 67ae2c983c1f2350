//! The smoltcp side: [`Device`] for [`Lan9118`] and its tokens.

use smoltcp::phy::{self, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::driver::{Io, Lan9118, MAX_FRAME};
use crate::regs::Registers;

/// A received frame, already copied out of the FIFO.
pub struct RxToken<'a> {
    frame: &'a [u8],
}

impl phy::RxToken for RxToken<'_> {
    fn consume<T, F>(self, f: F) -> T
    where
        F: FnOnce(&[u8]) -> T,
    {
        f(self.frame)
    }
}

/// Permission to send one frame: the TX FIFO had room for the largest one
/// when the token was made.
pub struct TxToken<'a, R> {
    io: &'a mut Io<R>,
}

impl<R: Registers> phy::TxToken for TxToken<'_, R> {
    fn consume<T, F>(self, len: usize, f: F) -> T
    where
        F: FnOnce(&mut [u8]) -> T,
    {
        // smoltcp never asks for more than the MTU; clamp anyway so a bad
        // length cannot panic, and let `send_frame` refuse it.
        let result = f(&mut self.io.tx[..len.min(MAX_FRAME)]);
        self.io.send_frame(len);
        result
    }
}

impl<R: Registers> Device for Lan9118<R> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, R>
    where
        Self: 'a;

    /// A frame and a transmit slot, or `None` if no good frame is waiting
    /// or the TX FIFO has no room for a reply (then nothing is read).
    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_, R>)> {
        if !self.io.rx_waiting() || !self.io.tx_ready(MAX_FRAME) {
            return None;
        }
        let len = self.io.read_frame(&mut self.rx)?;
        let Lan9118 { rx, io, .. } = self;
        Some((
            RxToken {
                frame: &rx.0[..len],
            },
            TxToken { io },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_, R>> {
        if !self.io.tx_ready(MAX_FRAME) {
            return None;
        }
        Some(TxToken { io: &mut self.io })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MAX_FRAME;
        // The LAN9118 has no checksum offload (the LAN9220 has, but QEMU
        // does not model it): smoltcp computes and verifies every IP, TCP,
        // UDP and ICMP checksum itself.
        caps.checksum = ChecksumCapabilities::default();
        caps
    }
}
