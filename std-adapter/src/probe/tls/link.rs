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
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, ClientConnection, HandshakeKind};

use crate::serve::CERT_COMMAND;

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
            HandshakeError::Tls(e) => match explain(e) {
                Some(plain) => write!(f, "TLS handshake failed: {plain}"),
                None => write!(f, "TLS handshake failed: {e}"),
            },
            HandshakeError::Closed => f.write_str(
                "TLS handshake failed: the server closed the connection (is it a TLS server?)",
            ),
            HandshakeError::Io(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

/// The certificate errors a new user meets, in plain words with the fix
/// (`None`: rustls's own message says it).
fn explain(e: &rustls::Error) -> Option<String> {
    use rustls::CertificateError as C;
    let rustls::Error::InvalidCertificate(c) = e else {
        return None;
    };
    match c {
        C::Other(other) if format!("{other:?}").contains("CaUsedAsEndEntity") => Some(format!(
            "the server's certificate is a CA certificate, not a server certificate \
             (basicConstraints CA:TRUE, as `openssl req -x509` makes by default): make it with \
             basicConstraints CA:FALSE and the server's names in subjectAltName, e.g. `{}`",
            CERT_COMMAND
        )),
        C::NotValidForNameContext {
            expected,
            presented,
        } => {
            let name = expected.to_str();
            let kind = match expected {
                ServerName::IpAddress(_) => "IP",
                _ => "DNS",
            };
            let names: Vec<String> = presented.iter().map(|n| shown_name(n)).collect();
            Some(if names.is_empty() {
                format!(
                    "the server's certificate is not valid for {name}: it has no subjectAltName \
                     names (a name in the subject's CN alone is not checked); make the \
                     certificate with subjectAltName={kind}:{name}, e.g. `{CERT_COMMAND}`"
                )
            } else {
                format!(
                    "the server's certificate is not valid for {name}: it names {}; use \
                     --tls-server-name with one of those names, or make the certificate with \
                     subjectAltName={kind}:{name}",
                    names.join(", ")
                )
            })
        }
        C::NotValidForName => Some(
            "the server's certificate is not valid for the name the probe checked: use \
             --tls-server-name with a name in its subjectAltName, or make the certificate with \
             that name in subjectAltName"
                .to_owned(),
        ),
        _ => None,
    }
}

/// A name as rustls presents it (`DnsName("localhost")`,
/// `IpAddress(127.0.0.1)`), as the user wrote it (`localhost`, `127.0.0.1`).
fn shown_name(presented: &str) -> String {
    for prefix in ["DnsName(", "IpAddress(", "UriName(", "OtherName("] {
        if let Some(inner) = presented
            .strip_prefix(prefix)
            .and_then(|r| r.strip_suffix(')'))
        {
            return inner.trim_matches('"').to_owned();
        }
    }
    presented.to_owned()
}

/// The server refused the connection with a fatal alert about the client's
/// certificate or the handshake, received after the handshake completed on
/// the probe's side (TLS 1.3 tells the client so only on its first read): a
/// mutual-TLS server refusing the probe, which has no client certificate.
#[derive(Debug)]
pub(crate) struct RefusedByServer(pub(crate) AlertDescription);

impl RefusedByServer {
    /// `e` as this refusal, if it is one.
    fn of(e: &rustls::Error) -> Option<Self> {
        use AlertDescription as A;
        match e {
            rustls::Error::AlertReceived(
                a @ (A::CertificateRequired
                | A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::AccessDenied
                | A::HandshakeFailure),
            ) => Some(RefusedByServer(*a)),
            _ => None,
        }
    }
}

impl fmt::Display for RefusedByServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TLS handshake refused by the server (fatal alert {:?}, after the handshake was done \
             on the probe's side): the server refused the probe's client certificate (the probe \
             sends none; the server asks for one: mutual TLS, e.g. `ricochet serve \
             --tls-client-ca`); the probe has no client certificate option: test mutual TLS \
             with another client (e.g. `openssl s_client -cert client.pem -key client-key.pem`)",
            self.0
        )
    }
}

impl std::error::Error for RefusedByServer {}

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
                        if let Some(refused) = RefusedByServer::of(&e) {
                            return Err(io::Error::new(io::ErrorKind::InvalidData, refused));
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
