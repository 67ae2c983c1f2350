//! [`TlsLink`]: a rustls client connection over a non-blocking TCP socket,
//! the `tls://` variant of the stream worker's transport link.
//!
//! [`TlsLink::poll_ready`] drives the TCP connect, then the handshake, on
//! readiness events; the link is ready once the handshake is complete. The
//! handshake starts when the TCP connection is seen established, so its
//! latency ([`Handshake::since`] to ready) is the TLS cost alone, apart
//! from the TCP connect and from every message's round trip.
//!
//! Over TLS 1.3 the client finishes its handshake first, and a server that
//! asks for a client certificate checks it only after that: the probe's
//! side is done before the server has accepted. [`TlsLink::handshake_accepted`]
//! says when the server has shown it did (any record after the handshake
//! arriving intact); a fatal alert before that is the server refusing the
//! handshake ([`RefusedByServer`]), so the worker counts the handshake as
//! completed only once it is accepted.
//!
//! `read`, `write` and `shutdown_write` keep the contract the worker relies
//! on for edge-triggered readiness: a short read or write, or `WouldBlock`,
//! only when the socket itself would block; a short read that already
//! knows the end (or an error) says so with [`TlsLink::read_pending`].

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use mio::net::TcpStream;
use ricochet_core::Instant;
use rustls::{ClientConnection, HandshakeKind, ProtocolVersion};

use super::super::transport::{Handshake, Readiness, ReadyError};
use super::TlsClient;

mod explain;

use explain::explain_records;
#[cfg(test)]
use explain::shown_name;
pub(crate) use explain::{HandshakeError, RefusedByServer};

/// Most bytes of TLS records queued for the socket; beyond it writes are short.
const OUTPUT_LIMIT: usize = 64 * 1024;

/// A TLS client connection over a non-blocking TCP socket (see the module
/// documentation).
pub(crate) struct TlsLink {
    sock: TcpStream,
    client: TlsClient,
    /// The TLS session, from the TCP connection's establishment on.
    conn: Option<ClientConnection>,
    /// When the TCP connection was seen established: the handshake's start.
    since: Instant,
    /// `close_notify` is queued: FIN once every record is out.
    fin_pending: bool,
    /// The last read returned data early: the end (or an error) is next.
    end_pending: bool,
    /// The socket's error met after data a read returned: the next read's.
    read_error: Option<io::Error>,
    /// The server has shown it accepted the completed handshake (see
    /// [`TlsLink::handshake_accepted`]).
    accepted: bool,
}

impl TlsLink {
    /// A link over `sock`, whose connect is in progress.
    pub(crate) fn new(sock: TcpStream, client: &TlsClient) -> Self {
        TlsLink {
            sock,
            client: client.clone(),
            conn: None,
            since: Instant::ZERO,
            fin_pending: false,
            end_pending: false,
            read_error: None,
            accepted: false,
        }
    }

    /// The TCP socket (to register and deregister).
    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// Moves the connection on at `now`: the TCP connect (`tcp_connected`
    /// says whether it completed), then the handshake.
    pub(crate) fn poll_ready(
        &mut self,
        now: Instant,
        tcp_connected: impl FnOnce(&TcpStream) -> io::Result<bool>,
    ) -> Result<Readiness, ReadyError> {
        if self.conn.is_none() {
            if !tcp_connected(&self.sock).map_err(ReadyError::Connect)? {
                return Ok(Readiness::Connecting);
            }
            let mut conn =
                ClientConnection::new(Arc::clone(&self.client.config), self.client.name.clone())
                    .map_err(|e| ReadyError::Handshake(HandshakeError::Setup(e)))?;
            conn.set_buffer_limit(Some(OUTPUT_LIMIT));
            self.conn = Some(conn);
            self.since = now;
        }
        if self.handshake().map_err(ReadyError::Handshake)? {
            Ok(Readiness::Ready)
        } else {
            Ok(Readiness::Handshaking { since: self.since })
        }
    }

    /// The completed handshake (`None` before).
    pub(crate) fn handshake_done(&self) -> Option<Handshake> {
        let conn = self.conn.as_ref().filter(|c| !c.is_handshaking())?;
        Some(Handshake {
            since: self.since,
            resumed: conn.handshake_kind() == Some(HandshakeKind::Resumed),
        })
    }

    /// Whether the server has shown that it accepted the completed handshake,
    /// which only then counts as completed. Over TLS 1.2 its Finished, the
    /// handshake's last message, says so: accepted once complete. Over
    /// TLS 1.3 the client's Finished comes last, and a server that asked for
    /// a client certificate checks it only then: it refuses with a fatal
    /// alert, the first record after the handshake; it accepts with anything
    /// else arriving intact (a session ticket, the echo, its close_notify).
    pub(crate) fn handshake_accepted(&self) -> bool {
        self.accepted
    }

    /// Whether the TCP connection is up and the handshake not complete.
    pub(crate) fn is_handshaking(&self) -> bool {
        self.conn.as_ref().is_some_and(|c| c.is_handshaking())
    }

    /// Moves the handshake on: `Ok(true)` once complete, `Ok(false)` while
    /// it waits for the socket.
    fn handshake(&mut self) -> Result<bool, HandshakeError> {
        loop {
            self.push().map_err(HandshakeError::Io)?;
            let (conn, sock) = self.parts().map_err(HandshakeError::Io)?;
            if !conn.is_handshaking() {
                let tls13 = conn.protocol_version() == Some(ProtocolVersion::TLSv1_3);
                self.accepted |= !tls13 || conn.tls13_tickets_received() > 0;
                return Ok(true);
            }
            match conn.read_tls(sock) {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        // Send the alert rustls queued, then report.
                        let _ = self.push();
                        return Err(HandshakeError::Tls(e));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(HandshakeError::Io(e)),
            }
        }
    }

    /// The session and the socket (an error before the TCP connection is up).
    fn parts(&mut self) -> io::Result<(&mut ClientConnection, &mut TcpStream)> {
        match &mut self.conn {
            Some(c) => Ok((c, &mut self.sock)),
            None => Err(io::ErrorKind::NotConnected.into()),
        }
    }

    /// Writes queued records until none is left (true) or the socket is
    /// full (false); then the pending FIN.
    fn push(&mut self) -> io::Result<bool> {
        let Some(conn) = &mut self.conn else {
            return Ok(true);
        };
        while conn.wants_write() {
            match conn.write_tls(&mut self.sock) {
                Ok(0) => return Ok(false),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        if self.fin_pending {
            self.fin_pending = false;
            self.sock.shutdown(Shutdown::Write)?;
        }
        Ok(true)
    }

    /// [`Self::push`], except that a write failing because the server
    /// already refused the handshake reports the refusal. Over TLS 1.3 the
    /// server's alert can wait unread while its reset (it closed with the
    /// probe's data unread) fails a write first; reported as the reset, the
    /// handshake would count as completed.
    fn push_or_refusal(&mut self) -> io::Result<bool> {
        self.push().map_err(|e| self.refusal_behind().unwrap_or(e))
    }

    /// The server's refusal of a handshake it has not accepted, when its
    /// alert is among the records still unread on the socket (which a reset
    /// leaves readable).
    fn refusal_behind(&mut self) -> Option<io::Error> {
        if self.accepted {
            return None;
        }
        let presented = self.client.client_cert.clone();
        let (conn, sock) = self.parts().ok()?;
        loop {
            match conn.read_tls(sock) {
                Ok(0) => return None,
                Ok(_) => {
                    if let Err(e) = conn.process_new_packets() {
                        let refused = RefusedByServer::of(&e, false, presented.as_ref())?;
                        return Some(io::Error::new(io::ErrorKind::InvalidData, refused));
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return None,
            }
        }
    }

    /// Pushes what is queued (records, then a pending FIN).
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.push_or_refusal().map(drop)
    }

    /// Plaintext from the server; `Ok(0)` when it finished (close_notify,
    /// or FIN without it).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.end_pending = false;
        if let Some(e) = self.read_error.take() {
            return Err(e);
        }
        let mut filled = 0;
        loop {
            let (conn, sock) = self.parts()?;
            match conn.reader().read(&mut buf[filled..]) {
                Ok(0) => {
                    // The server's close_notify: it accepted the handshake.
                    self.accepted = true;
                    self.end_pending = filled > 0;
                    return Ok(filled);
                }
                Ok(n) => {
                    // Data from the server: it accepted the handshake.
                    self.accepted = true;
                    filled += n;
                    if filled == buf.len() {
                        return Ok(filled);
                    }
                    continue;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    self.end_pending = filled > 0;
                    return Ok(filled);
                }
                Err(e) => return Err(e),
            }
            match conn.read_tls(sock) {
                Ok(_) => {
                    let processed = conn.process_new_packets();
                    // A session ticket: the server accepted the handshake
                    // (it sends one only then), even if an alert followed.
                    let ticket = conn.tls13_tickets_received() > 0;
                    let answer = conn.wants_write();
                    self.accepted |= ticket;
                    if let Err(e) = processed {
                        let _ = self.push();
                        let presented = self.client.client_cert.as_ref();
                        let failed = match RefusedByServer::of(&e, self.accepted, presented) {
                            Some(refused) => io::Error::new(io::ErrorKind::InvalidData, refused),
                            None => match explain_records(&e) {
                                Some(plain) => io::Error::new(io::ErrorKind::InvalidData, plain),
                                None => io::Error::new(io::ErrorKind::InvalidData, e),
                            },
                        };
                        if filled > 0 {
                            // The data first; the failure is the next read's.
                            self.end_pending = true;
                            self.read_error = Some(failed);
                            return Ok(filled);
                        }
                        return Err(failed);
                    }
                    if answer {
                        // A key update or alert to answer; errors show on the next write.
                        let _ = self.push();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && filled > 0 => return Ok(filled),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if filled > 0 && e.kind() != io::ErrorKind::WouldBlock => {
                    // Reported once (a reset): kept for the next read.
                    self.end_pending = true;
                    self.read_error = Some(e);
                    return Ok(filled);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Whether the end of the stream (or an error) is known after a short
    /// read: the next read reports it without waiting for readiness.
    pub(crate) fn read_pending(&self) -> bool {
        self.end_pending
    }

    /// Encrypts plaintext into records (bounded) and sends what the socket takes.
    pub(crate) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut taken = 0;
        loop {
            let (conn, _) = self.parts()?;
            let n = conn.writer().write(&buf[taken..])?;
            let queued = conn.wants_write();
            taken += n;
            // Done, or nothing to push that would make room, or the socket is full.
            if taken == buf.len() || (n == 0 && !queued) || !self.push_or_refusal()? {
                break;
            }
        }
        self.push_or_refusal()?;
        if taken == 0 {
            Err(io::ErrorKind::WouldBlock.into())
        } else {
            Ok(taken)
        }
    }

    /// close_notify, then FIN once the records before it are out.
    pub(crate) fn shutdown_write(&mut self) -> io::Result<()> {
        let (conn, _) = self.parts()?;
        conn.send_close_notify();
        self.fin_pending = true;
        self.push_or_refusal().map(drop)
    }
}

#[cfg(test)]
mod tests;
