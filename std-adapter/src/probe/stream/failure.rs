//! A stream connection's failure, as it is recorded ([`ConnError`]) and shown.

use std::io;
use std::time::Duration as StdDuration;

use ricochet_core::StreamProbe;
use ricochet_core::probe::ProbeError;

use super::super::report::{ConnError, ErrorKind};
use super::super::tls::RefusedByServer;
use super::super::units::{count_of, format_duration};
use super::super::verdict::{no_progress, show_byte, show_bytes};

/// Received bytes shown before a bad one in an error message.
const CONTEXT_BEFORE: usize = 8;
/// Received bytes shown from a bad one on.
const CONTEXT_AFTER: usize = 16;
/// Received bytes, from a bad one on, looked for among those sent before.
const REPEAT_LOOKED_FOR: usize = 16;
/// The fewest of them that make a repeat: eight pseudo-random bytes match
/// a given earlier position by chance once in 2^64.
const REPEAT_AT_LEAST: usize = 8;
/// The most bytes a server may have inserted that are named as such.
const INSERTED_AT_MOST: usize = 16;
/// How far back, or ahead, in bytes sent, received bytes are looked for.
const SENT_LOOKED_AT: usize = 64 * 1024;

/// Whether `bytes`, the first a server sent, start a TLS record: an alert
/// or a handshake (content type 21 or 22), version 3.x (SSL 3.0 to TLS 1.3's
/// legacy 3.3), a length a record can have. A TLS server answers a plain
/// client with an alert.
fn tls_record(bytes: &[u8]) -> bool {
    match bytes {
        [21 | 22, 3, minor, hi, lo, ..] if *minor <= 4 => {
            (1..=16_384 + 2_048).contains(&u16::from_be_bytes([*hi, *lo]))
        }
        _ => false,
    }
}

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
                    "mismatch at stream offset {offset}: sent {}, got {}{}{}",
                    show_byte(expected),
                    show_byte(actual),
                    context(offset),
                    if offset == 0 && received.is_some_and(|(c, at)| at == 0 && tls_record(c)) {
                        "; that is a TLS record (the server speaks TLS, not plain TCP): probe it as \
                         tls://HOST:PORT"
                    } else if (expected, actual) == (b'\n', b'\r') {
                        "; a carriage return where a line feed was sent: the server (or something \
                         between) turns line ends into CRLF (\\r\\n), as telnet-style servers do"
                    } else {
                        ""
                    }
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

    /// Adds to a mismatch in `frames` mode that the byte is in the 2-byte
    /// length header of the frame that starts at stream offset `unit_start`
    /// (when it is).
    pub(super) fn in_frame_header(&mut self, unit_start: u64) {
        if self.kind != ErrorKind::Mismatch {
            return;
        }
        let Some(into) = self.offset.and_then(|o| o.checked_sub(unit_start)) else {
            return;
        };
        if into < ricochet_core::frames::HEADER_LEN as u64 {
            self.message.push_str(&format!(
                "; that byte is in the 2-byte length header of the frame that starts at stream \
                 offset {unit_start}: the server changed the length the frame announces"
            ));
        }
    }

    /// Adds to a mismatch, or to bytes past the end of what was sent,
    /// where the bytes received from there on were sent, when they were:
    /// earlier (a repeat), right after a few bytes the server inserted, or
    /// later (bytes lost). `chunk` is what was read from stream offset
    /// `chunk_start`, where `probe` has verified everything before it.
    pub(super) fn where_sent<const M: usize>(
        &mut self,
        probe: &StreamProbe<M>,
        chunk: &[u8],
        chunk_start: u64,
    ) {
        if self.looked_for(chunk, chunk_start).is_none() {
            return;
        }
        // The stream sent around `chunk_start`: the last bytes verified,
        // then those sent and not yet verified.
        let mut sent = vec![0; 2 * SENT_LOOKED_AT];
        let here = probe.verified_tail(&mut sent[..SENT_LOOKED_AT]);
        let ahead = probe.outstanding_bytes(&mut sent[here..here + SENT_LOOKED_AT]);
        let sent = &sent[..here + ahead];
        if !self.repeats_earlier(sent, here, chunk, chunk_start)
            && !self.inserted(&sent[here..], chunk, chunk_start)
        {
            self.skips_ahead(&sent[here..], chunk, chunk_start);
        }
    }

    /// The bytes received from the bad one on (at most
    /// [`REPEAT_LOOKED_FOR`]) and their index in `chunk`, read from stream
    /// offset `chunk_start`: for a mismatch or bytes past the end of what
    /// was sent, when there are enough to tell where else they were sent.
    fn looked_for<'a>(&self, chunk: &'a [u8], chunk_start: u64) -> Option<(usize, &'a [u8])> {
        if !matches!(self.kind, ErrorKind::Mismatch | ErrorKind::UnexpectedData) {
            return None;
        }
        let at = self
            .offset?
            .checked_sub(chunk_start)
            .and_then(|a| usize::try_from(a).ok())
            .filter(|a| *a <= chunk.len())?;
        let from = &chunk[at..];
        let looked_for = &from[..from.len().min(REPEAT_LOOKED_FOR)];
        (looked_for.len() >= REPEAT_AT_LEAST).then_some((at, looked_for))
    }

    /// Adds to a mismatch, or to bytes past the end of what was sent, that
    /// the bytes received from there on repeat bytes sent earlier, and
    /// where: the server sent them twice. `sent` is the stream sent around
    /// stream offset `chunk_start`, which is at index `here` of it (see
    /// `StreamProbe::verified_tail` and `outstanding_bytes`); `chunk` is what
    /// was read from `chunk_start` on. A repeat starts before the bad byte
    /// and may run past it (a few bytes sent twice, then the stream going
    /// on). Returns whether it added that.
    fn repeats_earlier(
        &mut self,
        sent: &[u8],
        here: usize,
        chunk: &[u8],
        chunk_start: u64,
    ) -> bool {
        let Some((at, looked_for)) = self.looked_for(chunk, chunk_start) else {
            return false;
        };
        // Windows that start before the bad byte's index in `sent`.
        let bad = here + at;
        let end = (bad + looked_for.len() - 1).min(sent.len());
        let Some(pos) = sent[..end]
            .windows(looked_for.len())
            .rposition(|w| w == looked_for)
        else {
            return false;
        };
        let back = (bad - pos) as u64;
        let offset = chunk_start + at as u64;
        self.message.push_str(&format!(
            "; the bytes from there on repeat those sent at stream offset {}, {} earlier: the \
             server sent them twice (as one does that sends its whole buffer again after a \
             partial send, instead of the rest)",
            offset - back,
            count_of(back, "byte"),
        ));
        true
    }

    /// Adds to a mismatch that a few bytes were inserted there, the stream
    /// going on right after them: the server added them (a line end at each
    /// read, say, taking a read for a message). `sent_ahead` is the stream
    /// sent from stream offset `chunk_start` on and not yet verified;
    /// `chunk` is what was read from `chunk_start` on. Returns whether it
    /// added that.
    fn inserted(&mut self, sent_ahead: &[u8], chunk: &[u8], chunk_start: u64) -> bool {
        // A carriage return before a line feed has its own words.
        if self.kind != ErrorKind::Mismatch
            || (self.expected, self.actual) == (Some(b'\n'), Some(b'\r'))
        {
            return false;
        }
        let Some((at, _)) = self.looked_for(chunk, chunk_start) else {
            return false;
        };
        let Some(expected) = sent_ahead.get(at..) else {
            return false;
        };
        let goes_on = &expected[..expected.len().min(REPEAT_LOOKED_FOR)];
        let Some(extra) = (1..=INSERTED_AT_MOST).find(|&n| {
            let after = chunk.get(at + n..).unwrap_or_default();
            let k = after.len().min(goes_on.len());
            k >= REPEAT_AT_LEAST && after[..k] == goes_on[..k]
        }) else {
            return false;
        };
        let added = &chunk[at..at + extra];
        let them = if extra == 1 { "it" } else { "them" };
        let why = if added == b"\n" || added == b"\r\n" {
            "a line end where the line went on, as from a server that ends a line at each read \
             (TCP keeps no message boundaries: a read may hold part of a line, or several)"
                .to_owned()
        } else {
            format!("the server added {them}")
        };
        self.message.push_str(&format!(
            "; {} inserted there ({}), the stream going on after {them}: {why}",
            count_of(extra as u64, "byte"),
            show_bytes(added),
        ));
        true
    }

    /// Adds to a mismatch that the bytes received from there on are bytes
    /// sent later, and how many were skipped: the server lost them.
    /// `sent_ahead` is the stream sent from stream offset `chunk_start` on
    /// and not yet verified (see `StreamProbe::outstanding_bytes`); `chunk`
    /// is what was read from `chunk_start` on.
    fn skips_ahead(&mut self, sent_ahead: &[u8], chunk: &[u8], chunk_start: u64) {
        let Some((at, looked_for)) = self.looked_for(chunk, chunk_start) else {
            return;
        };
        let Some(pos) = sent_ahead
            .windows(looked_for.len())
            .enumerate()
            .skip(at + 1)
            .find_map(|(i, w)| (w == looked_for).then_some(i))
        else {
            return;
        };
        let skipped = count_of((pos - at) as u64, "byte");
        self.message.push_str(&format!(
            "; the bytes from there on are those sent at stream offset {}, {skipped} later: the \
             server lost the {skipped} between (as one does that takes a partial send for all of \
             it and goes on with its next buffer)",
            chunk_start + pos as u64,
        ));
    }

    /// Adds to a timeout that the socket has refused the probe's next bytes
    /// for the last `blocked` (shown to the millisecond, or to a tenth of a
    /// second from a second on; nothing under a millisecond): the server
    /// does not read either.
    pub(super) fn not_reading(&mut self, blocked: StdDuration) {
        let ms = u64::try_from(blocked.as_millis()).unwrap_or(u64::MAX);
        let blocked = StdDuration::from_millis(if ms >= 1000 {
            ms.saturating_add(50) / 100 * 100
        } else {
            ms
        });
        if blocked.is_zero() {
            return;
        }
        self.message.push_str(&format!(
            "; the server is not reading either: the socket has taken none of the probe's next \
             bytes for the last {} (the server's receive buffer and the probe's send buffer are \
             full)",
            format_duration(blocked)
        ));
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
            connection: Some(connection),
            kind: self.kind,
            offset: self.offset,
            expected: self.expected,
            actual: self.actual,
            message: self.message,
        }
    }
}

#[cfg(test)]
mod tests;
