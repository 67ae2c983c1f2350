//! What a stream probe puts on the wire: message `i` has a deterministic
//! size, and its bytes are the payload stream at the same offsets, shaped by
//! the mode (`\n` last for lines, a length header first for frames).

use crate::frames::HEADER_LEN;
use crate::lines::TERMINATOR;
use crate::mode::Mode;
use crate::payload::Payload;
use crate::probe::SizeRange;

/// Replacement for a `\n` inside a `lines` payload.
const NOT_NEWLINE: u8 = TERMINATOR ^ 0x80;

/// The shape of every message of one probe.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Wire {
    pub(crate) mode: Mode,
    pub(crate) payload: Payload,
    pub(crate) size: SizeRange,
    /// A message ended early (index, length), see `StreamProbe::finish_now`.
    pub(crate) cut: Option<(u64, usize)>,
}

/// A position in the message stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Cursor {
    /// Index of the current message.
    pub(crate) msg: u64,
    /// Offset inside the current message.
    pub(crate) off: usize,
    /// Size of the current message.
    pub(crate) len: usize,
    /// Offset in the whole stream.
    pub(crate) total: u64,
}

impl Wire {
    pub(crate) fn size_of(&self, msg: u64) -> usize {
        let SizeRange { min, max } = self.size;
        if let Some((m, len)) = self.cut
            && m == msg
        {
            len
        } else if min == max {
            min
        } else {
            let span = (max - min) as u64 + 1;
            min + (self.payload.number(msg) % span) as usize
        }
    }

    pub(crate) fn start(&self) -> Cursor {
        Cursor {
            msg: 0,
            off: 0,
            len: self.size_of(0),
            total: 0,
        }
    }

    /// Moves `c` forward by `n` bytes, calling `on_complete(msg)` for each
    /// message whose last byte is passed.
    pub(crate) fn advance(&self, c: &mut Cursor, mut n: usize, mut on_complete: impl FnMut(u64)) {
        while n > 0 {
            let step = n.min(c.len - c.off);
            c.off += step;
            c.total += step as u64;
            n -= step;
            if c.off == c.len {
                on_complete(c.msg);
                c.msg += 1;
                c.off = 0;
                c.len = self.size_of(c.msg);
            }
        }
    }

    /// Writes the bytes at `c` into `out` (at most to the end of the current
    /// message) without moving `c`; returns how many.
    pub(crate) fn fill_message(&self, c: &Cursor, out: &mut [u8]) -> usize {
        let n = out.len().min(c.len - c.off);
        let out = &mut out[..n];
        self.payload.fill(c.total, out);
        match self.mode {
            Mode::Raw => {}
            Mode::Lines => {
                let mut from = 0;
                while let Some(pos) = memchr::memchr(TERMINATOR, &out[from..]) {
                    out[from + pos] = NOT_NEWLINE;
                    from += pos + 1;
                }
                if c.off + n == c.len {
                    out[n - 1] = TERMINATOR;
                }
            }
            Mode::Frames => {
                let header = ((c.len - HEADER_LEN) as u16).to_be_bytes();
                for (i, b) in out
                    .iter_mut()
                    .enumerate()
                    .take(HEADER_LEN.saturating_sub(c.off))
                {
                    *b = header[c.off + i];
                }
            }
        }
        n
    }
}
