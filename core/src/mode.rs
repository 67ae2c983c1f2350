//! Echo modes: how a stream is cut into the units that are echoed.

use core::fmt;
use core::str::FromStr;

/// How a stream session decides which received bytes may be echoed.
///
/// The mode is chosen per listener; both ends of a conversation must agree.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Mode {
    /// RFC 862: every byte is echoed as soon as it arrives.
    #[default]
    Raw,
    /// A line (bytes up to and including `\n`) is echoed only once complete.
    /// A line that does not fit the session buffer with its `\n` aborts
    /// the session (a last line before the FIN needs no `\n`, but must be
    /// shorter than the buffer).
    Lines,
    /// Frames of a 2-byte big-endian payload length followed by the payload;
    /// each frame is echoed whole (header included). A frame that cannot fit
    /// the session buffer aborts the session.
    Frames,
}

impl Mode {
    /// The mode's name as used on command lines: `raw`, `lines`, `frames`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Mode::Raw => "raw",
            Mode::Lines => "lines",
            Mode::Frames => "frames",
        }
    }

    /// The smallest session buffer that can echo anything in this mode:
    /// 1 byte (`raw`, and a bare `\n` in `lines`), or an empty frame's
    /// 2-byte header (`frames`: a smaller buffer aborts on every frame).
    pub const fn min_buffer(self) -> usize {
        match self {
            Mode::Raw | Mode::Lines => 1,
            Mode::Frames => crate::frames::HEADER_LEN,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The error from parsing a [`Mode`] from text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct ParseModeError;

impl fmt::Display for ParseModeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("unknown mode: expected one of raw, lines, frames")
    }
}

impl core::error::Error for ParseModeError {}

impl FromStr for Mode {
    type Err = ParseModeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Mode::Raw),
            "lines" => Ok(Mode::Lines),
            "frames" => Ok(Mode::Frames),
            _ => Err(ParseModeError),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mode_parses_and_prints_each_name() {
        for m in [Mode::Raw, Mode::Lines, Mode::Frames] {
            assert_eq!(m.as_str().parse::<Mode>(), Ok(m));
        }
        assert_eq!("RAW".parse::<Mode>(), Err(ParseModeError));
    }

    #[test]
    fn mode_prints_its_command_line_name_and_a_bad_name_lists_them() {
        assert_eq!(Mode::Raw.to_string(), "raw");
        assert_eq!(Mode::Lines.to_string(), "lines");
        assert_eq!(Mode::Frames.to_string(), "frames");
        assert_eq!(
            ParseModeError.to_string(),
            "unknown mode: expected one of raw, lines, frames"
        );
    }

    #[test]
    fn min_buffer_holds_one_byte_or_an_empty_frame() {
        assert_eq!(Mode::Raw.min_buffer(), 1);
        assert_eq!(Mode::Lines.min_buffer(), 1);
        assert_eq!(Mode::Frames.min_buffer(), crate::frames::HEADER_LEN);
    }
}
