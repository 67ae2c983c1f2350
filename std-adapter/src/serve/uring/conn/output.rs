//! A connection's output: what it sends, in order, made of two kinds of
//! pieces: received buffers lent as they are (passed through, no copy) and
//! runs of bytes copied into a send buffer (what the session wrote).
//!
//! Every piece is sent in the order it was queued, whatever its kind: a
//! `sendmsg` carries them all (one iovec per piece), or a `send` when there
//! is one. Lent buffers go back to the ring once the kernel took them whole.
//! The whole output is bounded by [`TX_CAP`] bytes and [`LEND_MAX`] lent
//! buffers, so a connection holds at most that many of the worker's shared
//! receive buffers beyond its receive cap.

use std::collections::VecDeque;

use super::super::bufs::{BufRing, TX_CAP, TxPool};
use super::received::{Received, Rx};

/// Received buffers a connection's output may hold at once.
pub(crate) const LEND_MAX: usize = 16;

/// Pieces an output can hold: lent buffers, with copied runs between and
/// around them (two copied runs are never adjacent).
const PIECES_MAX: usize = 2 * LEND_MAX + 1;

/// One piece of output.
#[derive(Clone, Copy, Debug)]
enum Piece {
    /// A received buffer (its unsent part).
    Lent(Rx),
    /// The next this many bytes of the send buffer.
    Copied(usize),
}

/// Where the next send takes its bytes from.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum SendFrom {
    /// One run of bytes (`send`).
    Slice(*const u8, usize),
    /// Several, in order (`sendmsg` over the header), this many bytes in all.
    Msg(*const libc::msghdr, usize),
}

/// The header and iovecs of a `sendmsg`, at a stable address (boxed) until
/// the enter that submits it has read them.
struct Vectored {
    hdr: libc::msghdr,
    iov: [libc::iovec; PIECES_MAX],
}

/// A connection's output (see the module documentation).
#[derive(Default)]
pub(crate) struct Output {
    pieces: VecDeque<Piece>,
    /// Lent buffers among the pieces, and their unsent bytes.
    lent: usize,
    lent_bytes: usize,
    /// The send buffer (taken from the pool while the output has copied
    /// bytes), and how many of its bytes the kernel took.
    buf: Option<Vec<u8>>,
    start: usize,
    /// Made the first time a send spans several pieces.
    vectored: Option<Box<Vectored>>,
}

impl std::fmt::Debug for Output {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Output")
            .field("pieces", &self.pieces.len())
            .field("lent", &self.lent)
            .field("pending", &self.pending())
            .finish_non_exhaustive()
    }
}

impl Output {
    /// Hints that the queue of pieces is about to be used (see
    /// [`crate::serve::prefetch::deque_front`]).
    pub(crate) fn prefetch(&self) {
        crate::serve::prefetch::deque_front(&self.pieces);
    }

    /// Bytes queued that the kernel has not taken.
    pub(crate) fn pending(&self) -> usize {
        self.lent_bytes + self.copied()
    }

    /// Copied bytes the kernel has not taken.
    fn copied(&self) -> usize {
        self.buf.as_ref().map_or(0, |b| b.len() - self.start)
    }

    /// Room for copied bytes, within [`TX_CAP`] for the whole output. With
    /// no send in flight (`in_flight` false), first drops what the kernel
    /// took from the send buffer's front.
    pub(crate) fn room(&mut self, pool: &mut TxPool, in_flight: bool) -> usize {
        let buf = self.buf.get_or_insert_with(|| pool.take());
        if !in_flight && self.start > 0 {
            buf.drain(..self.start);
            self.start = 0;
        }
        TX_CAP.saturating_sub(buf.len() + self.lent_bytes)
    }

    /// Queues a copy of `data`, which must fit in [`Output::room`] (so the
    /// send buffer never reallocates under a send in flight).
    pub(crate) fn copy(&mut self, data: &[u8]) {
        let Some(buf) = &mut self.buf else {
            return;
        };
        debug_assert!(buf.len() + data.len() <= TX_CAP);
        buf.extend_from_slice(data);
        match self.pieces.back_mut() {
            Some(Piece::Copied(n)) => *n += data.len(),
            _ => self.pieces.push_back(Piece::Copied(data.len())),
        }
    }

    /// Lends whole received buffers, oldest first, while they fit in `max`
    /// bytes and the output's bounds. Returns how many bytes.
    pub(crate) fn lend(&mut self, rx: &mut Received, max: usize) -> usize {
        let mut n = 0;
        while self.lent < LEND_MAX {
            let room = TX_CAP.saturating_sub(self.pending()).min(max - n);
            let Some(buf) = rx.pop_whole(room) else {
                break;
            };
            self.pieces.push_back(Piece::Lent(buf));
            self.lent += 1;
            self.lent_bytes += buf.len as usize;
            n += buf.len as usize;
        }
        n
    }

    /// What a send of everything queued would carry (`None`: nothing).
    pub(crate) fn next(&mut self, ring: &BufRing) -> Option<SendFrom> {
        let mut at = self
            .buf
            .as_ref()
            .map(|b| b.as_ptr().wrapping_add(self.start));
        let mut piece = |p: &Piece| -> (*const u8, usize) {
            match *p {
                Piece::Lent(rx) => (
                    ring.ptr(rx.bid, rx.off as usize).cast_const(),
                    rx.len as usize,
                ),
                Piece::Copied(n) => {
                    let ptr = at.unwrap_or(std::ptr::null());
                    at = Some(ptr.wrapping_add(n));
                    (ptr, n)
                }
            }
        };
        match self.pieces.len() {
            0 => None,
            1 => {
                let (ptr, len) = piece(&self.pieces[0]);
                Some(SendFrom::Slice(ptr, len))
            }
            count => {
                let v = self.vectored.get_or_insert_with(|| {
                    // SAFETY: all-zero is a valid msghdr and iovec array
                    // (null pointers, zero lengths).
                    #[allow(unsafe_code)]
                    Box::new(unsafe { std::mem::zeroed::<Vectored>() })
                });
                for (iov, p) in v.iov.iter_mut().zip(&self.pieces) {
                    let (ptr, len) = piece(p);
                    *iov = libc::iovec {
                        iov_base: ptr.cast_mut().cast(),
                        iov_len: len,
                    };
                }
                v.hdr.msg_iov = v.iov.as_mut_ptr();
                v.hdr.msg_iovlen = count.min(PIECES_MAX) as _;
                Some(SendFrom::Msg(&raw const v.hdr, self.pending()))
            }
        }
    }

    /// The kernel took the first `n` bytes: lent buffers taken whole go
    /// back to `ring`, an emptied send buffer to `pool`.
    pub(crate) fn took(&mut self, mut n: usize, ring: &mut BufRing, pool: &mut TxPool) {
        while n > 0 {
            let Some(front) = self.pieces.front_mut() else {
                break;
            };
            match front {
                Piece::Lent(rx) => {
                    let k = n.min(rx.len as usize);
                    rx.off += k as u32;
                    rx.len -= k as u32;
                    self.lent_bytes -= k;
                    n -= k;
                    if rx.len == 0 {
                        ring.recycle(rx.bid);
                        self.lent -= 1;
                        self.pieces.pop_front();
                    }
                }
                Piece::Copied(len) => {
                    let k = n.min(*len);
                    *len -= k;
                    self.start += k;
                    n -= k;
                    if *len == 0 {
                        self.pieces.pop_front();
                    }
                }
            }
        }
        if self.copied() == 0 {
            self.start = 0;
            if let Some(buf) = self.buf.take() {
                pool.put(buf);
            }
        }
    }

    /// Turns every lent buffer into copied bytes, in place and in order:
    /// the output becomes one run in a fresh send buffer (from `pool`;
    /// the whole output fits, as it is bounded by [`TX_CAP`]) and the lent
    /// buffers go back to `ring`. Only while no send reads the output.
    /// Returns how many buffers went back.
    pub(crate) fn unlend(&mut self, ring: &mut BufRing, pool: &mut TxPool) -> usize {
        if self.lent == 0 {
            return 0;
        }
        let given = self.lent;
        let mut flat = pool.take();
        let old = self.buf.take();
        let mut at = self.start;
        for piece in self.pieces.drain(..) {
            match piece {
                Piece::Lent(rx) => {
                    let (off, len) = (rx.off as usize, rx.len as usize);
                    flat.extend_from_slice(&ring.filled(rx.bid, off + len)[off..]);
                    ring.recycle(rx.bid);
                }
                Piece::Copied(n) => {
                    if let Some(old) = &old {
                        flat.extend_from_slice(&old[at..at + n]);
                    }
                    at += n;
                }
            }
        }
        if let Some(old) = old {
            pool.put(old);
        }
        debug_assert!(flat.len() <= TX_CAP);
        self.pieces.push_back(Piece::Copied(flat.len()));
        self.buf = Some(flat);
        self.start = 0;
        self.lent = 0;
        self.lent_bytes = 0;
        given
    }

    /// Drops everything queued (nothing will be sent; no send reads it):
    /// lent buffers back to `ring`, the send buffer to `pool`.
    pub(crate) fn discard(&mut self, ring: &mut BufRing, pool: &mut TxPool) {
        for piece in self.pieces.drain(..) {
            if let Piece::Lent(rx) = piece {
                ring.recycle(rx.bid);
            }
        }
        self.lent = 0;
        self.lent_bytes = 0;
        self.start = 0;
        if let Some(buf) = self.buf.take() {
            pool.put(buf);
        }
    }

    /// Takes the send buffer out (to leak it while a send may still read
    /// it; lent buffers stay lent, the ring is leaked with them).
    pub(crate) fn take_buffer(&mut self) -> Option<Vec<u8>> {
        self.buf.take()
    }
}
