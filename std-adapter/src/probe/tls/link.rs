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
                        if filled > 0 {
                            self.end_pending = true;
                            return Ok(filled);
                        }
                        let presented = self.client.client_cert.as_ref();
                        if let Some(refused) = RefusedByServer::of(&e, self.accepted, presented) {
                            return Err(io::Error::new(io::ErrorKind::InvalidData, refused));
                        }
                        return Err(match explain_records(&e) {
                            Some(plain) => io::Error::new(io::ErrorKind::InvalidData, plain),
                            None => io::Error::new(io::ErrorKind::InvalidData, e),
                        });
                    }
                    if answer {
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
mod tests {
    use std::net::{SocketAddr, TcpListener};
    use std::thread::JoinHandle;
    use std::time::{Duration, Instant as StdInstant};

    use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
    use rustls::server::WebPkiClientVerifier;
    use rustls::{ServerConfig, ServerConnection, SupportedProtocolVersion};

    use super::*;
    use crate::probe::{Target, TlsOptions, TlsTarget};

    /// Every wait of these tests is bounded by this.
    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn certificate_names_are_shown_as_written() {
        assert_eq!(shown_name("DnsName(\"localhost\")"), "localhost");
        assert_eq!(shown_name("IpAddress(127.0.0.1)"), "127.0.0.1");
        // rustls writes IPv6 addresses its own way (`0::1`): shown as the
        // address is written (and as --tls-server-name takes it).
        assert_eq!(shown_name("IpAddress(0::1)"), "::1");
        assert_eq!(shown_name("IpAddress(2001:db8::1)"), "2001:db8::1");
        // What does not parse is shown as it came.
        assert_eq!(shown_name("IpAddress(fe80)"), "fe80");
    }

    /// A rustls server on 127.0.0.1:0 speaking `version` only, asking for a
    /// client certificate with `client_auth`, for one connection: the
    /// handshake (a refused one ends with its alert, then FIN), then the
    /// echo until the client closes.
    fn server(
        version: &'static SupportedProtocolVersion,
        client_auth: bool,
    ) -> (SocketAddr, JoinHandle<()>) {
        server_ending(version, client_auth, Refusal::Close)
    }

    /// How the test server ends a connection whose handshake it refused.
    #[derive(Clone, Copy)]
    enum Refusal {
        /// The alert, then FIN.
        Close,
        /// The alert; then, once more of the client's data has arrived
        /// unread, the close, which the kernel turns into a reset.
        Reset,
    }

    /// [`server`], ending a refused connection as `refusal` says.
    fn server_ending(
        version: &'static SupportedProtocolVersion,
        client_auth: bool,
        refusal: Refusal,
    ) -> (SocketAddr, JoinHandle<()>) {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let id = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
        let cert = id.cert.der().clone();
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(id.signing_key.serialize_der()));
        let builder = ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[version])
            .expect("versions");
        let builder = if client_auth {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(cert.clone()).expect("client CA");
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = Arc::new(builder.with_single_cert(vec![cert], key).expect("config"));
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("address");
        let thread = std::thread::spawn(move || {
            let (mut sock, _) = listener.accept().expect("accept");
            sock.set_read_timeout(Some(WAIT)).expect("read timeout");
            let mut conn = ServerConnection::new(config).expect("server session");
            let mut buf = [0u8; 1024];
            loop {
                while conn.wants_write() {
                    if conn.write_tls(&mut sock).is_err() {
                        return;
                    }
                }
                match conn.read_tls(&mut sock) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {}
                }
                if conn.process_new_packets().is_err() {
                    // The alert, then the close.
                    while conn.wants_write() && conn.write_tls(&mut sock).is_ok() {}
                    if let Refusal::Reset = refusal {
                        // Blocks (read timeout WAIT) until client data waits unread.
                        let _ = sock.peek(&mut buf);
                    }
                    return;
                }
                while let Ok(n @ 1..) = conn.reader().read(&mut buf) {
                    conn.writer().write_all(&buf[..n]).expect("echo");
                }
            }
        });
        (addr, thread)
    }

    /// A link to `addr`, its TCP connect in progress (any certificate is accepted).
    fn link_to(addr: SocketAddr) -> TlsLink {
        let target = Target::Tls(TlsTarget {
            addrs: vec![addr],
            host: "localhost".to_owned(),
        });
        let opts = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        let clients = super::super::clients(std::slice::from_ref(&target), &opts).expect("client");
        let client = clients[0].as_ref().expect("a TLS client");
        TlsLink::new(TcpStream::connect(addr).expect("connect"), client)
    }

    /// Polls `step` until it gives a value, for [`WAIT`] at most.
    fn until<T>(what: &str, mut step: impl FnMut() -> Option<T>) -> T {
        let start = StdInstant::now();
        loop {
            if let Some(v) = step() {
                return v;
            }
            assert!(start.elapsed() < WAIT, "{what}: not within {WAIT:?}");
            std::thread::yield_now();
        }
    }

    /// Drives the TCP connect and the handshake to their end.
    fn handshake(link: &mut TlsLink) -> Result<(), HandshakeError> {
        until("the handshake's end", || {
            match link.poll_ready(Instant::ZERO, |s| Ok(s.peer_addr().is_ok())) {
                Ok(Readiness::Ready) => Some(Ok(())),
                Ok(_) => None,
                Err(ReadyError::Handshake(e)) => Some(Err(e)),
                Err(ReadyError::Connect(e)) => panic!("connect: {e}"),
            }
        })
    }

    /// The server's refusal an I/O error carries, if it is one.
    fn refusal(e: &io::Error) -> Option<&RefusedByServer> {
        e.get_ref()?.downcast_ref::<RefusedByServer>()
    }

    /// The next read that does not say `WouldBlock`.
    fn read(link: &mut TlsLink, buf: &mut [u8]) -> io::Result<usize> {
        until("a read", || match link.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            r => Some(r),
        })
    }

    #[test]
    fn tls13_handshake_is_accepted_only_when_the_server_has_not_refused_it() {
        // Asked for a client certificate, the probe (which has none)
        // finishes first; the server's refusal is the first record after.
        let (addr, srv) = server(&rustls::version::TLS13, true);
        let mut link = link_to(addr);
        handshake(&mut link).expect("done on the probe's side");
        assert!(link.handshake_done().is_some());
        assert!(!link.handshake_accepted(), "the server has not checked yet");
        let e = read(&mut link, &mut [0; 64]).expect_err("the server's refusal");
        assert!(
            matches!(
                refusal(&e),
                Some(RefusedByServer {
                    alert: AlertDescription::CertificateRequired,
                    client_cert: None
                })
            ),
            "{e:?}"
        );
        assert!(!link.handshake_accepted());
        srv.join().expect("server");
        // Not asked for one: the server's session ticket (or its echo) says
        // it accepted the handshake.
        let (addr, srv) = server(&rustls::version::TLS13, false);
        let mut link = link_to(addr);
        handshake(&mut link).expect("handshake");
        let mut buf = [0u8; 64];
        until("a record after the handshake", || {
            match link.read(&mut buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                other => panic!("nothing to read yet: {other:?}"),
            }
            link.handshake_accepted().then_some(())
        });
        assert_eq!(link.write(b"ping").expect("write"), 4);
        let n = read(&mut link, &mut buf).expect("the echo");
        assert_eq!(&buf[..n], b"ping");
        assert!(link.handshake_accepted());
        drop(link);
        srv.join().expect("server");
    }

    /// Waits (bounded) until `sock` polls with any of `events` set in its
    /// returned events, without reading it.
    #[allow(unsafe_code)]
    fn until_polled(sock: &TcpStream, events: libc::c_short, what: &str) {
        use std::os::fd::AsRawFd;
        until(what, || {
            let mut p = libc::pollfd {
                fd: sock.as_raw_fd(),
                events,
                revents: 0,
            };
            // SAFETY: one valid pollfd, a zero timeout.
            let n = unsafe { libc::poll(&mut p, 1, 0) };
            (n == 1 && p.revents & events != 0).then_some(())
        });
    }

    #[test]
    fn tls13_refusal_behind_a_reset_write_is_reported_as_the_refusal() {
        // The server refused the handshake the probe had done on its side
        // (TLS 1.3), then closed with the probe's data unread: a reset. A
        // write meeting that reset before any read saw the alert must still
        // report the refusal, or the probe counts the handshake completed.
        let (addr, srv) = server_ending(&rustls::version::TLS13, true, Refusal::Reset);
        let mut link = link_to(addr);
        handshake(&mut link).expect("done on the probe's side");
        until_polled(link.socket(), libc::POLLIN, "the server's alert");
        assert_eq!(link.write(b"ping").expect("written before the reset"), 4);
        until_polled(link.socket(), libc::POLLHUP | libc::POLLERR, "the reset");
        let e = link.write(b"more").expect_err("the connection is gone");
        assert!(
            matches!(
                refusal(&e),
                Some(RefusedByServer {
                    alert: AlertDescription::CertificateRequired,
                    ..
                })
            ),
            "the refusal, not the reset: {e:?}"
        );
        assert!(!link.handshake_accepted());
        srv.join().expect("server");
    }

    #[test]
    fn a_certificate_alert_inside_the_handshake_names_the_client_certificate_flags() {
        let e = HandshakeError::Tls(rustls::Error::AlertReceived(
            AlertDescription::CertificateRequired,
        ))
        .to_string();
        assert!(
            e.contains("CertificateRequired") && e.contains("--tls-cert FILE --tls-key FILE"),
            "{e}"
        );
        let e = HandshakeError::Tls(rustls::Error::AlertReceived(
            AlertDescription::ProtocolVersion,
        ))
        .to_string();
        assert!(!e.contains("--tls-cert"), "not about certificates: {e}");
    }

    #[test]
    fn a_fatal_alert_is_a_refusal_until_the_server_accepted_the_handshake() {
        let alert = |a| rustls::Error::AlertReceived(a);
        let none = RefusedByServer::of(&alert(AlertDescription::CertificateRequired), false, None)
            .expect("a refusal")
            .to_string();
        assert!(
            none.contains("fatal alert CertificateRequired")
                && none.contains("the probe sent none")
                && none.contains("--tls-cert FILE --tls-key FILE"),
            "{none}"
        );
        let presented: Arc<Path> = Arc::from(Path::new("/tmp/client.pem"));
        let cert =
            RefusedByServer::of(&alert(AlertDescription::UnknownCA), false, Some(&presented))
                .expect("a refusal")
                .to_string();
        assert!(
            cert.contains("fatal alert UnknownCA")
                && cert.contains(
                    "refused the probe's client certificate (--tls-cert /tmp/client.pem)"
                )
                && !cert.contains("sent none"),
            "{cert}"
        );
        let other = RefusedByServer::of(&alert(AlertDescription::DecryptError), false, None)
            .expect("a refusal")
            .to_string();
        assert!(
            other.contains("fatal alert DecryptError") && !other.contains("client certificate"),
            "{other}"
        );
        assert!(RefusedByServer::of(&alert(AlertDescription::UnknownCA), true, None).is_none());
        assert!(RefusedByServer::of(&rustls::Error::DecryptError, false, None).is_none());
    }

    #[test]
    fn tls12_handshake_is_accepted_once_complete_and_refused_during_it() {
        // The server's Finished comes last: nothing left to refuse.
        let (addr, srv) = server(&rustls::version::TLS12, false);
        let mut link = link_to(addr);
        handshake(&mut link).expect("handshake");
        assert!(link.handshake_accepted());
        drop(link);
        srv.join().expect("server");
        // A refused client certificate fails the handshake itself.
        let (addr, srv) = server(&rustls::version::TLS12, true);
        let mut link = link_to(addr);
        let e = handshake(&mut link).expect_err("refused during the handshake");
        assert!(matches!(e, HandshakeError::Tls(_)), "{e:?}");
        assert!(!link.handshake_accepted());
        srv.join().expect("server");
    }
}
