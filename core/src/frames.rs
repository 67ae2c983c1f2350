//! The `frames` codec: a 2-byte big-endian payload length, then the payload.
//!
//! This is the answer to TCP's lack of message boundaries (the "sticky
//! packet" problem): however the stream is split into reads, the receiver
//! knows where each message ends. Decoding borrows from the input and never
//! copies, like httparse; an incomplete frame is a [`Status::Partial`], not
//! an error.

use core::fmt;

/// Length of the frame header in bytes.
pub const HEADER_LEN: usize = 2;

// A frame's length is its header plus up to 65,535 payload bytes, summed
// in `usize` unchecked: on a 16-bit target the sum would wrap (a peer's
// `FF FE` would make a frame of no bytes, and the scan would stall).
const _: () = assert!(usize::BITS >= 32, "frames need a usize of 32 bits or more");
/// The largest payload a header can describe.
pub const MAX_PAYLOAD: usize = u16::MAX as usize;

/// The result of decoding from a buffer that may hold only part of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Status<T> {
    /// A whole frame was found.
    Complete(T),
    /// More input is needed: at least `needed` more bytes.
    Partial {
        /// The number of bytes still missing from the frame (or header).
        needed: usize,
    },
}

/// A decoded frame, borrowed from the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Frame<'a> {
    /// The payload (without the header).
    pub payload: &'a [u8],
}

impl Frame<'_> {
    /// Length of the frame on the wire: header plus payload.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.payload.len()
    }
}

/// Decodes the first frame of `buf`.
pub fn decode(buf: &[u8]) -> Status<Frame<'_>> {
    let Some(header) = buf.first_chunk::<HEADER_LEN>() else {
        return Status::Partial {
            needed: HEADER_LEN - buf.len(),
        };
    };
    let len = usize::from(u16::from_be_bytes(*header));
    let total = HEADER_LEN + len;
    match buf.get(HEADER_LEN..total) {
        Some(payload) => Status::Complete(Frame { payload }),
        None => Status::Partial {
            needed: total - buf.len(),
        },
    }
}

/// A frame whose header announces more than the receiver can hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct FrameTooLarge {
    /// The frame's length on the wire (header included).
    pub len: usize,
    /// The largest frame the receiver accepts (header included).
    pub limit: usize,
}

impl fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "frame of {} bytes exceeds the limit of {} bytes",
            self.len, self.limit
        )
    }
}

impl core::error::Error for FrameTooLarge {}

/// Where the complete frames in `buf` end.
///
/// Returns `(len, frames)`: `buf[..len]` is exactly `frames` whole frames,
/// those before any header announcing a frame longer than `limit` bytes on
/// the wire (header included). Fails when the first header does, even
/// before its payload arrives; with a
/// `limit` below the header's 2 bytes, as soon as any byte arrives (`len`
/// is then the 2 bytes of the smallest frame: the header cannot complete).
pub fn complete_prefix(buf: &[u8], limit: usize) -> Result<(usize, u64), FrameTooLarge> {
    if limit < HEADER_LEN && !buf.is_empty() {
        return Err(FrameTooLarge {
            len: HEADER_LEN,
            limit,
        });
    }
    let mut at = 0;
    let mut frames = 0;
    while let Some(header) = buf
        .get(at..)
        .and_then(|rest| rest.first_chunk::<HEADER_LEN>())
    {
        let total = HEADER_LEN + usize::from(u16::from_be_bytes(*header));
        if total > limit {
            if at > 0 {
                // The whole frames before it first.
                break;
            }
            return Err(FrameTooLarge { len: total, limit });
        }
        if at + total > buf.len() {
            break;
        }
        at += total;
        frames += 1;
        // A frame is at least its header, so the scan always advances: a
        // change that breaks this fails the tests instead of hanging them.
        #[cfg(test)]
        assert!(
            total >= HEADER_LEN,
            "frames::complete_prefix did not advance"
        );
    }
    Ok((at, frames))
}

/// The payload is longer than [`MAX_PAYLOAD`] or the output buffer is too small.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum EncodeError {
    /// The payload cannot be described by a 2-byte length.
    PayloadTooLong {
        /// The payload's length.
        len: usize,
    },
    /// `out` cannot hold the frame.
    BufferTooSmall {
        /// Bytes the frame needs.
        required: usize,
    },
}

impl fmt::Display for EncodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EncodeError::PayloadTooLong { len } => {
                write!(
                    f,
                    "payload of {len} bytes exceeds the frame limit of {MAX_PAYLOAD}"
                )
            }
            EncodeError::BufferTooSmall { required } => {
                write!(
                    f,
                    "output buffer too small: the frame needs {required} bytes"
                )
            }
        }
    }
}

impl core::error::Error for EncodeError {}

/// The header for a payload of `len` bytes.
pub fn header(len: usize) -> Result<[u8; HEADER_LEN], EncodeError> {
    u16::try_from(len)
        .map(u16::to_be_bytes)
        .map_err(|_| EncodeError::PayloadTooLong { len })
}

/// Writes the frame for `payload` into `out`; returns the bytes written.
pub fn encode(payload: &[u8], out: &mut [u8]) -> Result<usize, EncodeError> {
    let head = header(payload.len())?;
    let required = HEADER_LEN + payload.len();
    let out = out
        .get_mut(..required)
        .ok_or(EncodeError::BufferTooSmall { required })?;
    out[..HEADER_LEN].copy_from_slice(&head);
    out[HEADER_LEN..].copy_from_slice(payload);
    Ok(required)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_table() {
        let cases: &[(&[u8], Status<&[u8]>)] = &[
            (b"", Status::Partial { needed: 2 }),
            (b"\x00", Status::Partial { needed: 1 }),
            (b"\x00\x00", Status::Complete(b"")),
            (b"\x00\x03ab", Status::Partial { needed: 1 }),
            (b"\x00\x03abc", Status::Complete(b"abc")),
            (b"\x00\x03abcdef", Status::Complete(b"abc")),
            (b"\x01\x00", Status::Partial { needed: 256 }),
        ];
        for &(input, expected) in cases {
            let got = match decode(input) {
                Status::Complete(f) => Status::Complete(f.payload),
                Status::Partial { needed } => Status::Partial { needed },
            };
            assert_eq!(got, expected, "input {input:?}");
        }
    }

    #[test]
    fn complete_prefix_table() {
        type Case<'a> = (&'a [u8], usize, Result<(usize, u64), FrameTooLarge>);
        let cases: &[Case<'_>] = &[
            (b"", 16, Ok((0, 0))),
            (b"\x00\x00", 16, Ok((2, 1))),
            (b"\x00\x01a\x00\x02bc", 16, Ok((7, 2))),
            (b"\x00\x01a\x00\x02b", 16, Ok((3, 1))),
            (b"\x00\x01a\x00", 16, Ok((3, 1))),
            (b"\x00\x0e", 16, Ok((0, 0))),
            (b"\x00\x0e0123456789abcd", 16, Ok((16, 1))),
            (b"\x00\x0f", 16, Err(FrameTooLarge { len: 17, limit: 16 })),
            (b"", 1, Ok((0, 0))),
            (b"\x00", 1, Err(FrameTooLarge { len: 2, limit: 1 })),
            (b"\x00\x00", 2, Ok((2, 1))),
            (b"\x00\x01a\xff\xff", 16, Ok((3, 1))),
            (
                b"\xff\xff",
                16,
                Err(FrameTooLarge {
                    len: 65537,
                    limit: 16,
                }),
            ),
        ];
        for &(input, limit, expected) in cases {
            assert_eq!(complete_prefix(input, limit), expected, "input {input:?}");
        }
    }

    #[test]
    fn decoded_frames_stepped_by_wire_len_split_a_stream_at_each_header() {
        let stream = b"\x00\x03abc\x00\x00\x00\x01z";
        let mut rest = &stream[..];
        let mut seen: [(&[u8], usize); 3] = [(&[], 0); 3];
        // Bounded: a wire length that does not advance fails, never hangs.
        for entry in &mut seen {
            let Status::Complete(frame) = decode(rest) else {
                panic!("a whole frame expected at {rest:?}");
            };
            *entry = (frame.payload, frame.wire_len());
            rest = rest
                .get(frame.wire_len()..)
                .expect("wire length within the stream");
        }
        assert_eq!(seen, [(&b"abc"[..], 5), (&b""[..], 2), (&b"z"[..], 3)]);
        assert!(rest.is_empty(), "left over: {rest:?}");
    }

    #[test]
    fn frame_too_large_message_names_length_and_limit() {
        let err = FrameTooLarge {
            len: 65537,
            limit: 16,
        };
        assert_eq!(
            err.to_string(),
            "frame of 65537 bytes exceeds the limit of 16 bytes"
        );
    }

    #[test]
    fn encode_error_message_names_the_bound_that_failed() {
        assert_eq!(
            EncodeError::PayloadTooLong { len: 70_000 }.to_string(),
            "payload of 70000 bytes exceeds the frame limit of 65535"
        );
        assert_eq!(
            EncodeError::BufferTooSmall { required: 7 }.to_string(),
            "output buffer too small: the frame needs 7 bytes"
        );
    }

    #[test]
    fn encode_then_decode_round_trips() {
        let mut out = [0u8; 8];
        let n = encode(b"hello", &mut out).unwrap();
        assert_eq!(&out[..n], b"\x00\x05hello");
        assert_eq!(
            decode(&out[..n]),
            Status::Complete(Frame { payload: b"hello" })
        );
    }

    #[test]
    fn encode_rejects_small_buffer_and_long_payload() {
        let mut out = [0u8; 4];
        assert_eq!(
            encode(b"hello", &mut out),
            Err(EncodeError::BufferTooSmall { required: 7 })
        );
        assert_eq!(
            header(70_000),
            Err(EncodeError::PayloadTooLong { len: 70_000 })
        );
    }
}
