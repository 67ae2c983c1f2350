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

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::path::Path;
use std::sync::Arc;

use mio::net::TcpStream;
use ricochet_core::Instant;
use rustls::pki_types::ServerName;
use rustls::{AlertDescription, ClientConnection, HandshakeKind, ProtocolVersion};

use crate::serve::CERT_COMMAND;
use crate::serve::validity;

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

/// A server's records after the handshake that rustls could not take, in
/// plain words (`None`: rustls's own message says it).
fn explain_records(e: &rustls::Error) -> Option<String> {
    match e {
        rustls::Error::InvalidMessage(_) => Some(format!(
            "the server sent bytes that are not TLS records after the handshake ({e}): a \
             server that writes plain text into the connection once it is up, or something \
             between that alters the stream"
        )),
        rustls::Error::DecryptError => Some(format!(
            "a record from the server failed to decrypt ({e}): its bytes were altered on the \
             way (a middlebox, a faulty link), or the server wrote into the connection outside \
             TLS"
        )),
        _ => None,
    }
}

/// The certificate errors a new user meets, in plain words with the fix
/// (`None`: rustls's own message says it).
fn explain(e: &rustls::Error) -> Option<String> {
    use rustls::CertificateError as C;
    if let rustls::Error::AlertReceived(alert) = e {
        // TLS 1.2: a mutual-TLS server refuses inside the handshake (1.3
        // refuses after it: `RefusedByServer`).
        return about_client_certificate(*alert).then(|| {
            format!(
                "the server refused the handshake (fatal alert {alert:?}); if it requires a \
                 client certificate (mutual TLS, e.g. `ricochet serve --tls-client-ca`), give \
                 the probe one signed by a CA it trusts with --tls-cert FILE --tls-key FILE"
            )
        });
    }
    if let rustls::Error::InappropriateHandshakeMessage {
        got_type: rustls::HandshakeType::ClientHello,
        ..
    } = e
    {
        // Only a server that echoes sends a client's first message back.
        return Some(
            "the server sent the probe's own ClientHello back: it is a plain echo server, not \
             TLS; probe it as tcp://HOST:PORT"
                .to_owned(),
        );
    }
    let rustls::Error::InvalidCertificate(c) = e else {
        return None;
    };
    match c {
        C::ExpiredContext { time, not_after } => Some(format!(
            "the server's certificate {}: renew it on the server (for a test certificate, e.g. \
             `{CERT_COMMAND}`), or set this host's clock right",
            validity::problem(0, not_after.as_secs(), time.as_secs())?,
        )),
        C::NotValidYetContext { time, not_before } => Some(format!(
            "the server's certificate {}: check the clocks of this host and of the machine \
             that made the certificate, or make it again (for a test certificate, e.g. \
             `{CERT_COMMAND}`)",
            validity::problem(not_before.as_secs(), u64::MAX, time.as_secs())?,
        )),
        C::Expired => Some(
            "the server's certificate has expired: renew it on the server, or set this host's \
             clock right"
                .to_owned(),
        ),
        C::NotValidYet => Some(
            "the server's certificate is not valid yet: check the clocks of this host and of \
             the machine that made it"
                .to_owned(),
        ),
        C::UnknownIssuer => Some(
            "the server's certificate is not signed by a CA the probe trusts (--tls-ca's, or \
             the system's without it): give --tls-ca the CA certificate that signed it (for a \
             self-signed certificate, the certificate itself), or --insecure for a test server"
                .to_owned(),
        ),
        // The issuer named is a root the probe trusts, but that root's key
        // did not sign the certificate: mostly a self-signed certificate
        // named like a trusted one (Debian's ssl-cert-snakeoil.pem is
        // CN=localhost, an RSA key).
        C::BadSignature | C::UnsupportedSignatureAlgorithmForPublicKeyContext { .. } => Some(
            "the server's certificate is not signed by a CA the probe trusts: its issuer has the \
             same name as one the probe trusts (a self-signed certificate whose subject is, say, \
             CN=localhost, like Debian's /etc/ssl/certs/ssl-cert-snakeoil.pem), but that CA's \
             key did not sign it; give --tls-ca the certificate that signed it (for a \
             self-signed certificate, the certificate itself), or --insecure for a test server"
                .to_owned(),
        ),
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
                     certificate with subjectAltName={kind}:{name}, e.g. `{CERT_COMMAND} --name {name}`"
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
            let name = inner.trim_matches('"');
            // An IP address the way it is written (`::1`, not webpki's `0::1`).
            return name
                .parse::<std::net::IpAddr>()
                .map_or_else(|_| name.to_owned(), |ip| ip.to_string());
        }
    }
    presented.to_owned()
}

/// The server refused the handshake with a fatal alert received after the
/// handshake completed on the probe's side but before the server showed it
/// accepted it (TLS 1.3 tells the client so only on its first read): mostly
/// a mutual-TLS server refusing the probe's client certificate, or its
/// lack of one. The handshake failed: it is never counted as completed.
#[derive(Debug)]
pub(crate) struct RefusedByServer {
    /// The server's alert.
    pub(crate) alert: AlertDescription,
    /// The client certificate file the probe presented (`--tls-cert`), if any.
    pub(crate) client_cert: Option<Arc<Path>>,
}

impl RefusedByServer {
    /// `e` as this refusal, if it is a fatal alert (rustls reports only
    /// those as received) and the server has not accepted the handshake;
    /// `client_cert` is the certificate file the probe presented.
    fn of(e: &rustls::Error, accepted: bool, client_cert: Option<&Arc<Path>>) -> Option<Self> {
        match e {
            rustls::Error::AlertReceived(a) if !accepted => Some(RefusedByServer {
                alert: *a,
                client_cert: client_cert.cloned(),
            }),
            _ => None,
        }
    }

    /// Whether the alert is about the client's certificate.
    fn about_client_certificate(&self) -> bool {
        about_client_certificate(self.alert)
    }
}

/// Whether `alert` is about the client's certificate (or says the handshake
/// failed or access is denied, as servers refusing one do).
fn about_client_certificate(alert: AlertDescription) -> bool {
    use AlertDescription as A;
    matches!(
        alert,
        A::CertificateRequired
            | A::BadCertificate
            | A::UnsupportedCertificate
            | A::CertificateRevoked
            | A::CertificateExpired
            | A::CertificateUnknown
            | A::UnknownCA
            | A::AccessDenied
            | A::HandshakeFailure
    )
}

impl fmt::Display for RefusedByServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "TLS handshake refused by the server (fatal alert {:?}, after the handshake was done \
             on the probe's side)",
            self.alert
        )?;
        if !self.about_client_certificate() {
            return Ok(());
        }
        match &self.client_cert {
            None => f.write_str(
                ": the server refused the probe's client certificate (the probe sent none; the \
                 server asks for one: mutual TLS, e.g. `ricochet serve --tls-client-ca`): give \
                 the probe one signed by a CA the server trusts with --tls-cert FILE --tls-key FILE",
            ),
            // What rustls and OpenSSL send for a certificate whose
            // extendedKeyUsage does not allow the purpose: the CA is
            // trusted, its usage is not a client's.
            Some(cert) if self.alert == AlertDescription::UnsupportedCertificate => write!(
                f,
                ": the server refused the probe's client certificate (--tls-cert {}) for its \
                 purpose: its extendedKeyUsage does not allow client authentication (a server \
                 certificate, such as `ricochet cert` makes, has serverAuth only): give one \
                 whose extendedKeyUsage includes clientAuth (or that has no extendedKeyUsage)",
                cert.display()
            ),
            Some(cert) => write!(
                f,
                ": the server refused the probe's client certificate (--tls-cert {}): give one \
                 signed by a CA the server trusts (with `ricochet serve`, a CA in its \
                 --tls-client-ca file) and valid now",
                cert.display()
            ),
        }
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
