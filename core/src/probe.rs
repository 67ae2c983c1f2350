//! The verifying client ("probe"): sends deterministic pseudo-random data to
//! an echo server and checks every byte that comes back.
//!
//! - [`StreamProbe`] for TCP and Unix streams, in every [`Mode`]: it
//!   verifies however the returned stream is split, measures each message's
//!   round trip from the injected clock, and reports the first mismatch with
//!   its stream offset, a premature close, or a stall.
//! - [`DatagramProbe`] for UDP: each datagram carries its sequence number;
//!   losses are counted apart from corruption.
//!
//! Neither stores what it sent: payloads are a pure function of the seed
//! and the offset ([`crate::payload`]), so memory stays constant however
//! much is in flight.

use core::fmt;

use crate::mode::Mode;

mod datagram;
mod stream;
mod wire;

pub use datagram::{
    DATAGRAM_HEADER, DatagramOutcome, DatagramProbe, DatagramProbeConfig, DatagramProbeStats,
    UDP_MAX_V4, UDP_MAX_V6, overdue_at_most,
};
pub use stream::{ProbeConfig, ProbeStats, Received, StreamProbe};

/// How a stream probe paces its messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Pattern {
    /// Send one message, wait until all of it is back, repeat.
    PingPong,
    /// Keep sending: a new message starts while fewer than `window` bytes
    /// are in flight (a message once started is always completed, so up to
    /// `window` plus one message may be in flight).
    Stream {
        /// Bytes in flight below which a new message may start.
        window: usize,
    },
}

/// Message sizes: fixed, or drawn per message from `min..=max` (deterministic for a seed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SizeRange {
    /// Smallest size, in bytes on the wire.
    pub min: usize,
    /// Largest size, in bytes on the wire.
    pub max: usize,
}

impl SizeRange {
    /// Every message is `n` bytes.
    pub const fn fixed(n: usize) -> Self {
        SizeRange { min: n, max: n }
    }

    /// Sizes drawn from `min..=max`.
    pub const fn range(min: usize, max: usize) -> Self {
        SizeRange { min, max }
    }
}

/// A probe configuration that cannot work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ConfigError {
    /// `min > max`.
    EmptySizeRange {
        /// The smallest size asked for.
        min: usize,
        /// The largest size asked for.
        max: usize,
    },
    /// A message size outside what the mode can carry.
    SizeOutOfBounds {
        /// The size asked for.
        size: usize,
        /// The smallest the mode allows.
        min: usize,
        /// The largest the mode allows.
        max: usize,
    },
    /// A stream window of 0 bytes, or a datagram window of 0 or more than
    /// the probe tracks (its `M`).
    BadWindow {
        /// The window asked for.
        window: usize,
        /// The largest allowed: the datagram probe's `M`, `usize::MAX`
        /// for a stream window (in bytes).
        max: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::EmptySizeRange { min, max } => {
                write!(f, "empty size range {min}..={max}")
            }
            ConfigError::SizeOutOfBounds { size, min, max } => {
                write!(
                    f,
                    "message size {size} is outside {min}..={max} for this mode"
                )
            }
            ConfigError::BadWindow { window: 0, .. } => f.write_str("a window of 0: at least 1"),
            ConfigError::BadWindow { window, max } => write!(
                f,
                "datagram window of {window}, at most {max} (datagrams the probe tracks)"
            ),
        }
    }
}

impl core::error::Error for ConfigError {}

/// Why a probe failed. Sticky: once set, every later call returns it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ProbeError {
    /// A returned byte differs from the one sent at the same stream offset.
    Mismatch {
        /// Offset of the byte in the stream (0 = first byte sent).
        offset: u64,
        /// The byte that was sent.
        expected: u8,
        /// The byte that came back.
        actual: u8,
    },
    /// More bytes came back than were sent.
    UnexpectedData {
        /// Offset of the first extra byte.
        offset: u64,
    },
    /// The server closed before everything was echoed.
    PrematureClose {
        /// Bytes verified before the close.
        verified: u64,
        /// Bytes sent and never returned.
        outstanding: u64,
    },
    /// Bytes were outstanding and none came back for the response timeout.
    Timeout {
        /// Bytes sent and not yet returned.
        outstanding: u64,
    },
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ProbeError::Mismatch {
                offset,
                expected,
                actual,
            } => write!(
                f,
                "mismatch at stream offset {offset}: sent 0x{expected:02x}, got 0x{actual:02x}"
            ),
            ProbeError::UnexpectedData { offset } => {
                write!(
                    f,
                    "unexpected data at stream offset {offset}: more came back than was sent"
                )
            }
            ProbeError::PrematureClose {
                verified,
                outstanding: 0,
            } => write!(
                f,
                "server closed the connection before the probe was done: {verified} bytes \
                 verified, nothing in flight lost (more was still to be sent)"
            ),
            ProbeError::PrematureClose {
                verified,
                outstanding,
            } => write!(
                f,
                "server closed early: {verified} bytes verified, {outstanding} bytes never returned"
            ),
            ProbeError::Timeout { outstanding } => {
                write!(f, "timed out waiting for {outstanding} outstanding bytes")
            }
        }
    }
}

impl core::error::Error for ProbeError {}

/// The bytes and pacing a mode puts around each message.
pub(crate) fn mode_size_bounds(mode: Mode) -> (usize, usize) {
    match mode {
        Mode::Raw => (1, usize::MAX),
        Mode::Lines => (1, usize::MAX),
        Mode::Frames => (
            crate::frames::HEADER_LEN,
            crate::frames::HEADER_LEN + crate::frames::MAX_PAYLOAD,
        ),
    }
}

pub(crate) fn check_sizes(size: SizeRange, bounds: (usize, usize)) -> Result<(), ConfigError> {
    if size.min > size.max {
        return Err(ConfigError::EmptySizeRange {
            min: size.min,
            max: size.max,
        });
    }
    for s in [size.min, size.max] {
        if s < bounds.0 || s > bounds.1 {
            return Err(ConfigError::SizeOutOfBounds {
                size: s,
                min: bounds.0,
                max: bounds.1,
            });
        }
    }
    Ok(())
}

/// The scheduled start of message `index` under pacing `interval`.
pub(crate) fn scheduled(
    start: crate::Instant,
    interval: crate::Pace,
    index: u64,
) -> crate::Instant {
    interval.at(start, index)
}

#[cfg(test)]
mod tests;
