//! A stream connection's failure, as it is recorded ([`ConnError`]) and shown.

use std::io;
use std::time::Duration as StdDuration;

use ricochet_core::probe::ProbeError;

use super::super::report::{ConnError, ErrorKind};
use super::super::tls::RefusedByServer;
use super::super::verdict::{no_progress, show_byte, show_bytes};

/// Received bytes shown before a bad one in an error message.
const CONTEXT_BEFORE: usize = 8;
/// Received bytes shown from a bad one on.
const CONTEXT_AFTER: usize = 16;

/// How the peer ended a connection before the probe was done.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum PeerEnd {
    /// A reset (or a broken pipe: writing after one).
    Reset,
    /// A clean close: its FIN, read as the end of the stream.
    Closed,
}

/// A connection failure, turned into a [`ConnError`] when recorded.
pub(super) struct Failure {
    kind: ErrorKind,
    offset: Option<u64>,
    expected: Option<u8>,
    actual: Option<u8>,
    message: String,
    /// An early close: how the peer ended the connection.
    peer_end: Option<PeerEnd>,
}

impl Failure {
    pub(super) fn new(kind: ErrorKind, message: String) -> Self {
        Failure {
            kind,
            offset: None,
            expected: None,
            actual: None,
            message,
            peer_end: None,
        }
    }

    /// A failed (or refused) transport handshake.
    pub(super) fn is_handshake(&self) -> bool {
        self.kind == ErrorKind::Handshake
    }

    /// How the peer ended the connection, when it ended it early.
    pub(super) fn peer_end(&self) -> Option<PeerEnd> {
        self.peer_end
    }

    pub(super) fn probe(e: ProbeError, timeout: StdDuration) -> Self {
        Self::probe_in(e, timeout, None)
    }

    /// A probe error; `received` is the chunk being verified and the stream
    /// offset of its first byte, shown around the bad byte as context.
    pub(super) fn probe_in(
        e: ProbeError,
        timeout: StdDuration,
        received: Option<(&[u8], u64)>,
    ) -> Self {
        let context = |offset: u64| {
            let Some((chunk, start)) = received else {
                return String::new();
            };
            let Some(at) = offset
                .checked_sub(start)
                .and_then(|a| usize::try_from(a).ok())
            else {
                return String::new();
            };
            let from = at.saturating_sub(CONTEXT_BEFORE).min(chunk.len());
            let to = (at + CONTEXT_AFTER).min(chunk.len());
            format!(
                "; received at stream offset {}: {}",
                start + from as u64,
                show_bytes(&chunk[from..to])
            )
        };
        match e {
            ProbeError::Mismatch {
                offset,
                expected,
                actual,
            } => Failure {
                kind: ErrorKind::Mismatch,
                offset: Some(offset),
                expected: Some(expected),
                actual: Some(actual),
                message: format!(
                    "mismatch at stream offset {offset}: sent {}, got {}{}",
                    show_byte(expected),
                    show_byte(actual),
                    context(offset)
                ),
                peer_end: None,
            },
            ProbeError::UnexpectedData { offset } => Failure {
                offset: Some(offset),
                ..Failure::new(ErrorKind::UnexpectedData, format!("{e}{}", context(offset)))
            },
            ProbeError::PrematureClose { .. } => Failure {
                peer_end: Some(PeerEnd::Closed),
                ..Failure::new(ErrorKind::EarlyClose, e.to_string())
            },
            ProbeError::Timeout { .. } => Failure::new(
                ErrorKind::Timeout,
                format!("{e} ({})", no_progress(timeout)),
            ),
            _ => Failure::new(ErrorKind::Io, e.to_string()),
        }
    }

    /// A socket error while `what`; resets and broken pipes are early closes.
    /// A TLS server's refusal after the handshake is a `handshake` error.
    pub(super) fn io(what: &str, e: &io::Error, verified: u64) -> Self {
        let refused = e
            .get_ref()
            .and_then(|i| i.downcast_ref::<RefusedByServer>());
        if let Some(refused) = refused {
            return Failure::new(ErrorKind::Handshake, refused.to_string());
        }
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Failure {
                peer_end: Some(PeerEnd::Reset),
                ..Failure::new(
                    ErrorKind::EarlyClose,
                    format!(
                        "server reset the connection ({what}: {e}) after {verified} bytes verified"
                    ),
                )
            },
            _ => Failure::new(ErrorKind::Io, format!("{what}: {e}")),
        }
    }

    /// The recorded form, for connection `connection`.
    pub(super) fn into_error(self, connection: usize) -> ConnError {
        ConnError {
            connection,
            kind: self.kind,
            offset: self.offset,
            expected: self.expected,
            actual: self.actual,
            message: self.message,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn early_closes_say_how_the_peer_ended_the_connection() {
        let t = StdDuration::from_secs(1);
        for kind in [
            io::ErrorKind::ConnectionReset,
            io::ErrorKind::ConnectionAborted,
            io::ErrorKind::BrokenPipe,
        ] {
            let f = Failure::io("read", &io::Error::from(kind), 0);
            assert_eq!(
                (f.kind, f.peer_end()),
                (ErrorKind::EarlyClose, Some(PeerEnd::Reset))
            );
        }
        let eof = ProbeError::PrematureClose {
            verified: 0,
            outstanding: 64,
        };
        let f = Failure::probe(eof, t);
        assert_eq!(
            (f.kind, f.peer_end()),
            (ErrorKind::EarlyClose, Some(PeerEnd::Closed))
        );
        let f = Failure::probe(ProbeError::Timeout { outstanding: 64 }, t);
        assert_eq!(f.peer_end(), None);
        let f = Failure::io("read", &io::Error::from(io::ErrorKind::Other), 0);
        assert_eq!(f.peer_end(), None);
    }
}
