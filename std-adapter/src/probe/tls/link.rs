//! [`TlsLink`]: a rustls client connection over a non-blocking TCP socket,
//! the `tls://` variant of the stream worker's transport link.
//!
//! [`TlsLink::poll_ready`] drives the TCP connect, then the handshake, on
//! readiness events; the link is ready once the handshake is complete. The
//! handshake starts when the TCP connection is seen established, so its
//! latency ([`Handshake::since`] to ready) is the TLS cost alone, apart
//! from the TCP connect and from every message's round trip.
//!
//! `read`, `write` and `shutdown_write` keep the contract the worker relies
//! on for edge-triggered readiness: a short read or write, or `WouldBlock`,
//! only when the socket itself would block; a short read that already
//! knows the end (or an error) says so with [`TlsLink::read_pending`].

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::Arc;

use mio::net::TcpStream;
use ricochet_core::Instant;
use rustls::{ClientConnection, HandshakeKind};

use super::super::transport::{Handshake, Readiness, ReadyError};
use super::TlsClient;

/// Most bytes of TLS records queued for the socket; beyond it writes are short.
const OUTPUT_LIMIT: usize = 64 * 1024;

/// A TLS handshake that failed: rustls's reason, or the socket's.
#[derive(Debug)]
pub(crate) enum HandshakeError {
    /// The client connection could not be created (a configuration error).
    Setup(rustls::Error),
    /// The TLS layer refused (certificate, protocol, an alert from the server).
    Tls(rustls::Error),
    /// The server closed the connection before the handshake completed.
    Closed,
    /// The socket failed.
    Io(io::Error),
}

impl fmt::Display for HandshakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandshakeError::Setup(e) => write!(f, "TLS setup: {e}"),
            HandshakeError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            HandshakeError::Closed => f.write_str(
                "TLS handshake failed: the server closed the connection (is it a TLS server?)",
            ),
            HandshakeError::Io(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

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

    /// Pushes what is queued (records, then a pending FIN).
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        self.push().map(drop)
    }

    /// Plaintext from the server; `Ok(0)` when it finished (close_notify,
    /// or FIN without it).
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.end_pending = false;
        let mut filled = 0;
        loop {
            let (conn, sock) = self.parts()?;
            match conn.reader().read(&mut buf[filled..]) {
                Ok(0) => {
                    self.end_pending = filled > 0;
                    return Ok(filled);
                }
                Ok(n) => {
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
                    if let Err(e) = conn.process_new_packets() {
                        let _ = self.push();
                        if filled > 0 {
                            self.end_pending = true;
                            return Ok(filled);
                        }
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    if conn.wants_write() {
                        // A key update or alert to answer; errors show on the next write.
                        let _ = self.push();
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock && filled > 0 => return Ok(filled),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if filled > 0 && e.kind() != io::ErrorKind::WouldBlock => {
                    self.end_pending = true;
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
            if taken == buf.len() || (n == 0 && !queued) || !self.push()? {
                break;
            }
        }
        self.push()?;
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
        self.push().map(drop)
    }
}
