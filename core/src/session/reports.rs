//! What a session reports: where it is ([`State`]), why it ended
//! ([`CloseReason`], [`AbortReason`]), what to log ([`Event`]), and a
//! commit its buffer could not take ([`CommitError`]).

use core::fmt;

/// Where a session is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum State {
    /// Reading and echoing.
    Open,
    /// The peer sent FIN: no more input; echo what is queued, then close.
    PeerHalfClosed,
    /// We decided to close (local close or idle timeout): no more input;
    /// echo what is queued, then close.
    Closing,
    /// Done: the adapter closes the connection gracefully (FIN).
    Closed(CloseReason),
    /// Done with an error: the adapter resets the connection (RST).
    Aborted(AbortReason),
}

/// Why a session closed gracefully.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CloseReason {
    /// The peer closed its side and everything was echoed.
    PeerFinished,
    /// Nothing moved for the idle timeout.
    IdleTimeout,
    /// The adapter called [`Session::close`](super::Session::close) (e.g. server shutdown).
    Local,
}

/// Why a session was aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum AbortReason {
    /// `lines` mode: a line did not fit the session buffer, its `\n`
    /// included. The last line before the peer's FIN needs no `\n` but
    /// must be shorter than the buffer: a full buffer without one aborts
    /// before the FIN can be read.
    LineTooLong {
        /// The longest line accepted, its `\n` included (the buffer size).
        limit: usize,
    },
    /// `frames` mode: a header announced a frame that cannot fit the buffer.
    FrameTooLarge {
        /// The frame's length on the wire, header included.
        len: usize,
        /// The largest frame accepted, header included.
        limit: usize,
    },
    /// `frames` mode: the peer finished in the middle of a frame.
    TruncatedFrame {
        /// The bytes of the incomplete frame that were received.
        received: usize,
    },
    /// Bytes were pending and the peer took none of them for the drain timeout.
    DrainTimeout,
    /// The connection was reset by the peer or failed.
    PeerReset,
    /// The transport gave up on the connection (its retransmissions went
    /// unanswered, e.g. smoltcp's socket timeout or Linux's `ETIMEDOUT`).
    TimedOut,
    /// The adapter called [`Session::abort`](super::Session::abort).
    Local,
}

/// What a session reports to its adapter, for logging.
///
/// `PeerFinished` is reported once, then the terminal event once; neither
/// can be lost, however late the adapter polls. Only a close that turned
/// into an abort afterwards ([`Session::handle_output_lost`](super::Session::handle_output_lost):
/// echo the transport had queued never reached the peer) reports a second
/// terminal event, the abort.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event {
    /// The peer sent FIN.
    PeerFinished,
    /// The session closed gracefully.
    Closed(CloseReason),
    /// The session was aborted.
    Aborted(AbortReason),
}

/// The adapter committed more bytes than the buffer offered: an adapter bug.
/// The session is unchanged.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum CommitError {
    /// `n` bytes committed but only `available` were offered.
    TooMany {
        /// Bytes committed.
        n: usize,
        /// Bytes the buffer offered.
        available: usize,
    },
    /// Bytes committed as passed through while the session would not echo
    /// input unchanged ([`Session::can_pass_through`](super::Session::can_pass_through) was false).
    NoPassThrough,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::PeerFinished => "peer finished and everything was echoed",
            CloseReason::IdleTimeout => "idle timeout",
            CloseReason::Local => "closed locally",
        })
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            AbortReason::LineTooLong { limit } => {
                write!(
                    f,
                    "line longer than the {limit}-byte buffer (its \\n included)"
                )
            }
            AbortReason::FrameTooLarge { len, limit } => {
                write!(f, "frame of {len} bytes exceeds the {limit}-byte buffer")
            }
            AbortReason::TruncatedFrame { received } => {
                write!(
                    f,
                    "peer finished in the middle of a frame ({received} bytes of it received)"
                )
            }
            AbortReason::DrainTimeout => f.write_str("peer stopped reading (drain timeout)"),
            AbortReason::PeerReset => f.write_str("connection reset by peer"),
            AbortReason::TimedOut => {
                f.write_str("connection timed out (retransmissions unanswered)")
            }
            AbortReason::Local => f.write_str("aborted locally"),
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::PeerFinished => f.write_str("peer finished sending"),
            Event::Closed(reason) => write!(f, "closed: {reason}"),
            Event::Aborted(reason) => write!(f, "aborted: {reason}"),
        }
    }
}

impl fmt::Display for CommitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CommitError::TooMany { n, available } => {
                write!(f, "committed {n} bytes but only {available} were offered")
            }
            CommitError::NoPassThrough => f.write_str(
                "committed bytes as passed through while the session holds bytes or is not an open raw session",
            ),
        }
    }
}

impl core::error::Error for CommitError {}
