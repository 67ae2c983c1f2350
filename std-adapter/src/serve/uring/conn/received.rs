//! What a connection received and the session has not read yet: provided
//! buffers of the worker's shared ring, oldest first, and, in front of
//! them, bytes copied out of such buffers (a spill) when the ring ran
//! short while the connection was stalled.
//!
//! Why the spill: a connection whose peer takes no echo holds the ring
//! buffers it received until the peer reads, and enough such connections
//! hold the whole ring, so nobody else receives (RELIABILITY.md, "Stalled
//! peers and the shared receive ring"). [`Received::spill`] copies what
//! they hold into memory of their own and gives the ring buffers back.

use std::collections::VecDeque;

use super::super::bufs::{BufRing, TxPool};

/// A received buffer not yet copied out in full.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Rx {
    pub(crate) bid: u16,
    pub(crate) off: u32,
    pub(crate) len: u32,
}

/// The received bytes of a connection, oldest first: the spill (if any),
/// then the ring buffers.
#[derive(Debug, Default)]
pub(crate) struct Received {
    bufs: VecDeque<Rx>,
    /// Bytes copied out of ring buffers (older than `bufs`): unread from
    /// `spill_start`. Taken from the send-buffer pool, given back once read.
    spill: Option<Vec<u8>>,
    spill_start: usize,
    /// Unread bytes, spill and buffers together.
    bytes: usize,
}

impl Received {
    /// Unread bytes.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }

    /// Ring buffers held.
    pub(crate) fn buffers(&self) -> usize {
        self.bufs.len()
    }

    /// Whether nothing is unread.
    pub(crate) fn is_empty(&self) -> bool {
        self.bytes == 0
    }

    /// Hints that the queue of buffers is about to be used (see
    /// [`crate::serve::prefetch::deque_front`]).
    pub(crate) fn prefetch(&self) {
        crate::serve::prefetch::deque_front(&self.bufs);
    }

    /// A receive completion filled `len` bytes of buffer `bid` (newest).
    pub(crate) fn push(&mut self, bid: u16, len: usize) {
        self.bufs.push_back(Rx {
            bid,
            off: 0,
            len: len as u32,
        });
        self.bytes += len;
    }

    /// Hands up to `max` bytes, oldest first, to `take` (in one or more
    /// slices), giving each ring buffer back to `ring` once emptied and
    /// the spill to `pool` once read. Returns how many.
    pub(crate) fn drain(
        &mut self,
        ring: &mut BufRing,
        pool: &mut TxPool,
        max: usize,
        mut take: impl FnMut(&[u8]),
    ) -> usize {
        let mut n = 0;
        if let Some(spill) = &self.spill {
            let data = &spill[self.spill_start..];
            let k = data.len().min(max);
            take(&data[..k]);
            n += k;
            self.spill_start += k;
            if self.spill_start == spill.len() {
                self.spill_start = 0;
                if let Some(spill) = self.spill.take() {
                    pool.put(spill);
                }
            }
        }
        while n < max {
            let Some(front) = self.bufs.front_mut() else {
                break;
            };
            let (off, len) = (front.off as usize, front.len as usize);
            let data = &ring.filled(front.bid, off + len)[off..];
            let k = data.len().min(max - n);
            take(&data[..k]);
            n += k;
            front.off += k as u32;
            front.len -= k as u32;
            if front.len == 0 {
                let bid = front.bid;
                self.bufs.pop_front();
                ring.recycle(bid);
            }
        }
        self.bytes -= n;
        n
    }

    /// Takes the oldest ring buffer off, if nothing is older (no spill)
    /// and it holds at most `max` bytes.
    pub(crate) fn pop_whole(&mut self, max: usize) -> Option<Rx> {
        if self.spill.is_some() {
            return None;
        }
        let front = *self.bufs.front()?;
        if front.len as usize > max {
            return None;
        }
        self.bufs.pop_front();
        self.bytes -= front.len as usize;
        Some(front)
    }

    /// Copies the unread bytes of every ring buffer held to the end of the
    /// spill (a buffer from `pool`) and gives the buffers back to `ring`.
    /// Order and bytes are kept. Returns how many buffers went back.
    pub(crate) fn spill(&mut self, ring: &mut BufRing, pool: &mut TxPool) -> usize {
        if self.bufs.is_empty() {
            return 0;
        }
        let spill = self.spill.get_or_insert_with(|| pool.take());
        if self.spill_start > 0 {
            spill.drain(..self.spill_start);
            self.spill_start = 0;
        }
        let given = self.bufs.len();
        for rx in self.bufs.drain(..) {
            let (off, len) = (rx.off as usize, rx.len as usize);
            spill.extend_from_slice(&ring.filled(rx.bid, off + len)[off..]);
            ring.recycle(rx.bid);
        }
        given
    }

    /// Bytes the spill holds, read or not (tests only).
    #[cfg(test)]
    pub(super) fn spill_held(&self) -> usize {
        self.spill.as_ref().map_or(0, Vec::len)
    }

    /// Gives every ring buffer back to `ring` and the spill to `pool`,
    /// unread (the connection is going away).
    pub(crate) fn give_back(&mut self, ring: &mut BufRing, pool: &mut TxPool) {
        for rx in self.bufs.drain(..) {
            ring.recycle(rx.bid);
        }
        if let Some(spill) = self.spill.take() {
            pool.put(spill);
        }
        self.spill_start = 0;
        self.bytes = 0;
    }
}
