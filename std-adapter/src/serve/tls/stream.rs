//! One TLS connection as a core [`Transport`]: rustls's `ServerConnection`
//! over a non-blocking TCP socket.
//!
//! - `read` pumps ciphertext in (`read_tls`, `process_new_packets`) and
//!   returns plaintext; it fills the buffer until the socket would block,
//!   so a short read still means "drained" to the pump (edge-triggered
//!   readiness stays sound although rustls buffers whole records).
//! - `write` hands plaintext to rustls, which encrypts it into records
//!   held in a buffer bounded by [`OUTPUT_LIMIT`]: a short write or
//!   `WouldBlock` happens only when the socket itself would block, so the
//!   pump's backpressure and drain timeout work as over plain TCP. With the
//!   `more` hint the records wait for the next write (fewer, larger sends).
//! - `flush` pushes queued records; `shutdown_write` queues `close_notify`
//!   and sends FIN once every record before it left; `unacknowledged` is 1
//!   while records or the FIN are still queued, so the pump's linger waits
//!   for them.
//!
//! The handshake happens inside `read` before the session sees any byte;
//! its deadline is the worker's ([`TlsStream::deadline`], [`TlsStream::expire`]).

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use mio::net::TcpStream;
use ricochet_core::pump::{Failure, ReadOutcome, Transport, WriteOutcome};
use ricochet_core::{Instant, StreamCounters};
use rustls::{HandshakeKind, ServerConnection};

use super::super::stats::Held;
use super::counters::HandshakeFailure;

/// Most bytes of TLS records queued for the socket; beyond it writes are short.
pub(crate) const OUTPUT_LIMIT: usize = 64 * 1024;
/// Most bytes of records one drive of a connection takes in from its socket
/// ([`TlsStream::begin_drive`]; the read that crosses it completes). The pump's
/// budget counts plaintext, and records may carry almost none: rustls takes
/// up to 32 empty (or padding-only) records in a row, so a peer could make
/// the worker decrypt many megabytes for each byte of echo. Past this share
/// the connection reads on at the worker's next turn
/// ([`TlsStream::take_throttled`]). Plain traffic never reaches it: the
/// budget's 64 KiB of plaintext come in about 64 KiB of records.
pub(crate) const CIPHERTEXT_PER_DRIVE: usize = 256 * 1024;
/// Reads of leftover input when a refused connection is closed (so the
/// close does not answer input already received with a reset).
const REFUSAL_DRAIN_READS: usize = 16;

/// How a handshake ended, reported once to the worker's counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The handshake completed; the session may start.
    Completed {
        /// From an earlier session (ticket or session id).
        resumed: bool,
    },
    /// The handshake failed.
    Failed(HandshakeFailure),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    Handshaking,
    Established,
    /// Every further read and write reports this.
    Failed(Failure),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Fin {
    Open,
    /// `close_notify` is queued: FIN once the records are out.
    Pending,
    Sent,
}

/// A TLS server connection over a TCP socket. See the [module docs](self).
pub(crate) struct TlsStream {
    sock: TcpStream,
    conn: ServerConnection,
    state: State,
    /// The handshake must be complete by then.
    deadline: Option<Instant>,
    /// Not yet reported to the worker.
    outcome: Option<Outcome>,
    /// What rustls said of a failed handshake (the client's alert, what was
    /// wrong with its records), for the log.
    failure_detail: Option<String>,
    fin: Fin,
    /// A fatal alert was queued (or the handshake failed): close with FIN
    /// after it, never with a reset.
    refused: bool,
    /// The last read returned data early: the end of the stream (or an
    /// error) is already known and is the next read's.
    end_pending: bool,
    /// What rustls held, as last added to the `buffered` gauge.
    gauged: Held,
    /// Bytes of records rustls held after the last push once the close
    /// began (see [`Transport::unacknowledged`]).
    closing_queue: usize,
    /// Bytes of records taken in since the drive began, and the most
    /// allowed ([`CIPHERTEXT_PER_DRIVE`]).
    drive_ciphertext: usize,
    ciphertext_cap: usize,
    /// A read stopped at that most with input left: read on next turn.
    throttled: bool,
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStream")
            .field("sock", &self.sock)
            .field("state", &self.state)
            .field("fin", &self.fin)
            .finish_non_exhaustive()
    }
}

fn failure(e: &io::Error) -> Failure {
    if e.kind() == io::ErrorKind::TimedOut {
        Failure::TimedOut
    } else {
        Failure::Reset
    }
}

/// What pushing queued records gave.
enum Pushed {
    /// Nothing is left queued.
    Drained,
    /// The socket would block with records still queued.
    Blocked,
}

impl TlsStream {
    /// A connection just accepted; its handshake must complete by `deadline`.
    pub(crate) fn new(
        sock: TcpStream,
        config: Arc<rustls::ServerConfig>,
        deadline: Instant,
    ) -> Result<Self, rustls::Error> {
        let mut conn = ServerConnection::new(config)?;
        conn.set_buffer_limit(Some(OUTPUT_LIMIT));
        Ok(TlsStream {
            sock,
            conn,
            state: State::Handshaking,
            deadline: Some(deadline),
            outcome: None,
            failure_detail: None,
            fin: Fin::Open,
            refused: false,
            end_pending: false,
            gauged: Held::default(),
            closing_queue: 0,
            drive_ciphertext: 0,
            ciphertext_cap: CIPHERTEXT_PER_DRIVE,
            throttled: false,
        })
    }

    /// A drive of the connection begins: its share of records
    /// ([`CIPHERTEXT_PER_DRIVE`]) starts again.
    pub(crate) fn begin_drive(&mut self) {
        self.drive_ciphertext = 0;
    }

    /// Whether a read of the last drive stopped at its share of records
    /// with input left (returning what it had, or `WouldBlock`): the
    /// worker must then mark the connection readable and drive it again
    /// at its next turn, as no new readiness event may come. Once.
    pub(crate) fn take_throttled(&mut self) -> bool {
        std::mem::take(&mut self.throttled)
    }

    /// Lowers the share of records per drive (tests).
    #[cfg(test)]
    pub(crate) fn set_ciphertext_cap(&mut self, cap: usize) {
        self.ciphertext_cap = cap;
    }

    /// The socket (to register, to set options on).
    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// The socket, read-only.
    pub(crate) fn socket_ref(&self) -> &TcpStream {
        &self.sock
    }

    /// When the handshake must be complete; `None` once it is over, however
    /// it ended (a deadline left behind would be due at every turn).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.deadline.filter(|_| self.state == State::Handshaking)
    }

    /// Fails the handshake if its deadline passed; true if it just did (the
    /// next read reports it, so the pump ends the session).
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        if self.state == State::Handshaking && self.deadline.is_some_and(|d| now >= d) {
            self.fail_handshake(HandshakeFailure::Timeout, Failure::TimedOut);
            true
        } else {
            false
        }
    }

    /// The handshake's outcome, once.
    pub(crate) fn take_outcome(&mut self) -> Option<Outcome> {
        self.outcome.take()
    }

    /// What rustls said of the failed handshake, if it said anything.
    pub(crate) fn failure_detail(&self) -> Option<&str> {
        self.failure_detail.as_deref()
    }

    /// The negotiated version and cipher suite, for logs.
    pub(crate) fn describe(&self) -> String {
        match (
            self.conn.protocol_version(),
            self.conn.negotiated_cipher_suite(),
        ) {
            (Some(v), Some(s)) => format!("{v:?} {:?}", s.suite()),
            _ => "no version negotiated".to_owned(),
        }
    }

    /// Keeps `counters`' `buffered` gauge counting what rustls holds for
    /// this connection: decrypted input the session has not read yet and
    /// records the socket has not taken (at most [`OUTPUT_LIMIT`] and one
    /// write's worth); nothing once `released` (the pump counts nothing
    /// then either) or once rustls failed. Asks rustls through
    /// `process_new_packets`, which finds nothing new to process: every
    /// read processes what it takes in.
    pub(crate) fn sync_gauge(&mut self, released: bool, counters: &mut StreamCounters) {
        let now = if released {
            0
        } else {
            self.conn.process_new_packets().map_or(0, |io| {
                io.plaintext_bytes_to_read() + io.tls_bytes_to_write()
            })
        };
        self.gauged.set(now, counters);
    }

    /// Whether the connection was refused (failed handshake or fatal alert).
    pub(crate) fn is_refused(&self) -> bool {
        self.refused
    }

    /// If the connection was refused (failed handshake or fatal alert),
    /// sends what is queued (the alert), then FIN, discards input that
    /// already arrived, and returns true: the caller closes the socket
    /// normally instead of resetting it.
    pub(crate) fn refuse(&mut self) -> bool {
        if !self.refused {
            return false;
        }
        let _ = self.push();
        let _ = self.sock.shutdown(Shutdown::Write);
        let mut scratch = [0u8; 4096];
        for _ in 0..REFUSAL_DRAIN_READS {
            match self.sock.read(&mut scratch) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
        true
    }

    /// `end` now if nothing was read, else the data now and `end` on the
    /// next read (announced through `read_pending`).
    fn data_then_end(&mut self, filled: usize, end: ReadOutcome) -> ReadOutcome {
        if filled == 0 {
            return end;
        }
        self.end_pending = true;
        ReadOutcome::Data(filled)
    }

    fn fail_handshake(&mut self, why: HandshakeFailure, failure: Failure) {
        self.outcome = Some(Outcome::Failed(why));
        self.deadline = None;
        self.refused = true;
        self.state = State::Failed(failure);
    }

    /// rustls rejected what arrived: its alert is queued; send it.
    fn fail_protocol(&mut self, e: &rustls::Error) -> ReadOutcome {
        if self.state == State::Handshaking {
            self.failure_detail = Some(e.to_string());
            self.fail_handshake(HandshakeFailure::of(e), Failure::Reset);
        } else {
            self.refused = true;
            self.state = State::Failed(Failure::Reset);
        }
        let _ = self.push();
        ReadOutcome::Failed(Failure::Reset)
    }

    /// The socket failed or closed during the handshake.
    fn fail_io(&mut self, e: &io::Error) -> ReadOutcome {
        let f = failure(e);
        if self.state == State::Handshaking {
            self.outcome = Some(Outcome::Failed(HandshakeFailure::Io));
            self.deadline = None;
        }
        self.state = State::Failed(f);
        ReadOutcome::Failed(f)
    }

    /// Notes a completed handshake.
    fn check_established(&mut self) {
        if self.state == State::Handshaking && !self.conn.is_handshaking() {
            self.state = State::Established;
            self.deadline = None;
            self.outcome = Some(Outcome::Completed {
                resumed: self.conn.handshake_kind() == Some(HandshakeKind::Resumed),
            });
        }
    }

    /// Whether records rustls holds, or the close_notify and FIN, have not
    /// all been handed to the socket: closing it now would cut them off.
    pub(crate) fn undelivered(&self) -> bool {
        self.conn.wants_write() || self.fin == Fin::Pending
    }

    /// Writes queued records until none is left or the socket is full; then
    /// the pending FIN, if any. Once the close began, notes how much rustls
    /// still holds (for the linger's progress, see
    /// [`Transport::unacknowledged`]).
    fn push(&mut self) -> io::Result<Pushed> {
        let pushed = self.push_records();
        if self.fin != Fin::Open {
            // Nothing new to process: every read processes what it takes
            // in (as in `sync_gauge`).
            self.closing_queue = self
                .conn
                .process_new_packets()
                .map_or(0, |io| io.tls_bytes_to_write());
        }
        pushed
    }

    fn push_records(&mut self) -> io::Result<Pushed> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
                Ok(0) => return Ok(Pushed::Blocked),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(Pushed::Blocked),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.fin == Fin::Pending {
            self.fin = Fin::Sent;
            // The peer may already be gone; the socket is released soon after.
            let _ = self.sock.shutdown(Shutdown::Write);
        }
        Ok(Pushed::Drained)
    }
}

impl Transport for TlsStream {
    /// Records wait in rustls until the socket takes them.
    fn queues_output(&self) -> bool {
        true
    }

    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        if let State::Failed(f) = self.state {
            return ReadOutcome::Failed(f);
        }
        self.end_pending = false;
        let mut filled = 0;
        loop {
            match self.conn.reader().read(&mut buf[filled..]) {
                Ok(0) if filled < buf.len() => {
                    // close_notify: the peer finished sending.
                    return self.data_then_end(filled, ReadOutcome::Eof);
                }
                Ok(n) => {
                    filled += n;
                    if filled == buf.len() {
                        return ReadOutcome::Data(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    // FIN without close_notify: echo servers take it as the
                    // end of input (many clients close this way).
                    if self.state == State::Handshaking {
                        self.outcome = Some(Outcome::Failed(HandshakeFailure::Closed));
                        self.deadline = None;
                        self.state = State::Failed(Failure::Reset);
                        // Nothing was said: nothing to answer, a FIN will do.
                        self.refused = true;
                    }
                    return self.data_then_end(filled, ReadOutcome::Eof);
                }
                Err(e) => return self.fail_io(&e),
            }
            // No plaintext left: more ciphertext, within this drive's share.
            if self.drive_ciphertext >= self.ciphertext_cap {
                self.throttled = true;
                return if filled > 0 {
                    ReadOutcome::Data(filled)
                } else {
                    ReadOutcome::WouldBlock
                };
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(n) => {
                    self.drive_ciphertext += n;
                    match self.conn.process_new_packets() {
                        Ok(_) => {
                            self.check_established();
                            if self.conn.wants_write() && self.push().is_err() {
                                // The write side failed; the read side says so next.
                            }
                        }
                        Err(e) => {
                            // What was decrypted first is delivered; the error next.
                            let end = self.fail_protocol(&e);
                            return self.data_then_end(filled, end);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    return if filled > 0 {
                        ReadOutcome::Data(filled)
                    } else {
                        ReadOutcome::WouldBlock
                    };
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let end = self.fail_io(&e);
                    return self.data_then_end(filled, end);
                }
            }
        }
    }

    fn read_pending(&self) -> bool {
        self.end_pending || matches!(self.state, State::Failed(_))
    }

    fn write(&mut self, buf: &[u8], more: bool) -> WriteOutcome {
        if let State::Failed(f) = self.state {
            return WriteOutcome::Failed(f);
        }
        let mut taken = 0;
        loop {
            // Bounded: rustls takes no more than OUTPUT_LIMIT allows.
            let n = match self.conn.writer().write(&buf[taken..]) {
                Ok(n) => n,
                Err(e) => {
                    self.state = State::Failed(failure(&e));
                    return WriteOutcome::Failed(failure(&e));
                }
            };
            taken += n;
            if taken == buf.len() || (n == 0 && !self.conn.wants_write()) {
                // Done, or nothing to push that would make room.
                break;
            }
            match self.push() {
                Ok(Pushed::Drained) => {}
                Ok(Pushed::Blocked) => break,
                Err(e) => {
                    self.state = State::Failed(failure(&e));
                    return WriteOutcome::Failed(failure(&e));
                }
            }
        }
        if !more && let Err(e) = self.push() {
            self.state = State::Failed(failure(&e));
            if taken == 0 {
                return WriteOutcome::Failed(failure(&e));
            }
        }
        if taken == 0 {
            WriteOutcome::WouldBlock
        } else {
            WriteOutcome::Sent(taken)
        }
    }

    fn flush(&mut self) {
        if let Err(e) = self.push()
            && !matches!(self.state, State::Failed(_))
        {
            self.state = State::Failed(failure(&e));
        }
    }

    /// `close_notify`, then FIN once every record before it is out.
    fn shutdown_write(&mut self) {
        if self.fin != Fin::Open {
            return;
        }
        if self.state == State::Established {
            self.conn.send_close_notify();
        }
        self.fin = Fin::Pending;
        self.flush();
    }

    /// The bytes of records rustls holds that the socket has not taken,
    /// as of the last push since the close began (at least 1 while any;
    /// before the close, just 1), and the FIN (1) until it is sent. So the
    /// linger after a close goes on while a slow peer still takes records,
    /// and ends once rustls holds none (the kernel delivers the rest).
    fn unacknowledged(&self) -> usize {
        let records = if self.conn.wants_write() {
            self.closing_queue.max(1)
        } else {
            0
        };
        records + usize::from(self.fin == Fin::Pending)
    }

    /// Pushing queued records failed (the peer is gone).
    fn output_failed(&self) -> bool {
        matches!(self.state, State::Failed(_))
    }
}

#[cfg(test)]
pub(crate) mod tests;
