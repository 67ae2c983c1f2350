//! TLS for the probe: `tls://HOST:PORT` targets, the client configuration
//! (`--tls-ca`, `--tls-server-name`, `--insecure`, `--tls-resumption`), and
//! [`TlsSock`], a rustls client connection over a non-blocking TCP socket
//! with the read/write/shutdown calls the stream worker makes on any socket.
//!
//! The handshake is driven apart ([`TlsSock::handshake`]) so its latency is
//! measured on its own: from the TCP connection's establishment to the
//! handshake's completion (the client's Finished sent), and never counted
//! in a message's round trip.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, SignatureScheme,
};

/// Most bytes of TLS records queued for the socket; beyond it writes are short.
const OUTPUT_LIMIT: usize = 64 * 1024;

/// A `tls://` target: where to connect and the name the certificate must match.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsTarget {
    /// The resolved addresses, tried in order; never empty.
    pub addrs: Vec<SocketAddr>,
    /// The host as written in the target (a DNS name or an IP address): the
    /// name sent in SNI and checked against the certificate, unless
    /// [`TlsOptions::server_name`] overrides it.
    pub host: String,
}

/// The probe's TLS settings (used with a `tls://` target only).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// PEM file of the CA certificates to trust; `None`: the system's roots.
    pub ca: Option<PathBuf>,
    /// The name to verify the certificate against (and send in SNI) instead
    /// of the target's host.
    pub server_name: Option<String>,
    /// **Dangerous**: accept any certificate (signatures are still checked,
    /// so the handshake's cost is the real one). For test setups only.
    pub insecure: bool,
    /// Never resume a session: every handshake is a full one. By default a
    /// connection resumes the session of an earlier one (tickets), as
    /// clients of a real service do.
    pub no_resumption: bool,
}

impl TlsOptions {
    /// Whether any option differs from the defaults (they need a `tls://` target).
    pub fn is_set(&self) -> bool {
        *self != TlsOptions::default()
    }
}

/// Why the client configuration could not be built (a usage error).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct TlsSetupError(pub(crate) String);

impl fmt::Display for TlsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsSetupError {}

/// What every connection of a TLS run shares.
#[derive(Clone, Debug)]
pub(crate) struct TlsClient {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) name: ServerName<'static>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the client configuration of a run against `target`.
pub(crate) fn client(target: &TlsTarget, opts: &TlsOptions) -> Result<TlsClient, TlsSetupError> {
    let host = opts.server_name.as_deref().unwrap_or(&target.host);
    let name = ServerName::try_from(host.to_owned()).map_err(|_| {
        TlsSetupError(format!(
            "{host:?} is not a valid TLS server name (a DNS name or an IP address); \
             give the certificate's name with --tls-server-name"
        ))
    })?;
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError(e.to_string()))?;
    let mut config = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
            .with_no_client_auth()
    } else {
        builder
            .with_root_certificates(roots(opts)?)
            .with_no_client_auth()
    };
    if opts.no_resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(TlsClient {
        config: Arc::new(config),
        name,
    })
}

/// The CAs to trust: `--tls-ca`'s, or the system's.
fn roots(opts: &TlsOptions) -> Result<rustls::RootCertStore, TlsSetupError> {
    let mut roots = rustls::RootCertStore::empty();
    match &opts.ca {
        Some(path) => {
            let shown = path.display();
            std::fs::metadata(path)
                .map_err(|e| TlsSetupError(format!("--tls-ca {shown}: cannot read it: {e}")))?;
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| TlsSetupError(format!("--tls-ca {shown}: not a PEM file ({e})")))?;
            if certs.is_empty() {
                return Err(TlsSetupError(format!(
                    "--tls-ca {shown}: no certificate in it (expected \"-----BEGIN CERTIFICATE\" blocks)"
                )));
            }
            for c in certs {
                roots
                    .add(c)
                    .map_err(|e| TlsSetupError(format!("--tls-ca {shown}: {e}")))?;
            }
        }
        None => {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 {
                return Err(TlsSetupError(
                    "no CA certificate found on this system to verify the server with: give \
                     the server's CA with --tls-ca FILE (or, for a test server only, --insecure)"
                        .to_owned(),
                ));
            }
        }
    }
    Ok(roots)
}

/// `--insecure`: any certificate chain is accepted, but the handshake
/// signatures are verified as usual (the peer still proves it holds the
/// key of the certificate it sent).
#[derive(Debug)]
struct AcceptAnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// A TLS handshake that failed: rustls's reason, or the socket's.
#[derive(Debug)]
pub(crate) enum HandshakeError {
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
            HandshakeError::Tls(e) => write!(f, "TLS handshake failed: {e}"),
            HandshakeError::Closed => f.write_str(
                "TLS handshake failed: the server closed the connection (is it a TLS server?)",
            ),
            HandshakeError::Io(e) => write!(f, "TLS handshake failed: {e}"),
        }
    }
}

/// A TLS client connection over a non-blocking TCP socket. Its `read`,
/// `write` and `shutdown_write` keep the contract the stream worker relies
/// on for edge-triggered readiness: a short read or write, or `WouldBlock`,
/// only when the socket itself would block.
pub(crate) struct TlsSock {
    sock: TcpStream,
    conn: ClientConnection,
    /// `close_notify` is queued: FIN once every record is out.
    fin_pending: bool,
    /// The last read returned data early: the end (or an error) is next.
    end_pending: bool,
}

impl TlsSock {
    /// Starts a client connection over an established TCP socket.
    pub(crate) fn new(sock: TcpStream, client: &TlsClient) -> Result<Self, rustls::Error> {
        let mut conn = ClientConnection::new(Arc::clone(&client.config), client.name.clone())?;
        conn.set_buffer_limit(Some(OUTPUT_LIMIT));
        Ok(TlsSock {
            sock,
            conn,
            fin_pending: false,
            end_pending: false,
        })
    }

    /// The TCP socket (to register and deregister).
    pub(crate) fn socket(&mut self) -> &mut TcpStream {
        &mut self.sock
    }

    /// Whether the session was resumed (after the handshake).
    pub(crate) fn resumed(&self) -> bool {
        self.conn.handshake_kind() == Some(HandshakeKind::Resumed)
    }

    /// Moves the handshake on: `Ok(true)` once complete, `Ok(false)` while
    /// it waits for the socket.
    pub(crate) fn handshake(&mut self) -> Result<bool, HandshakeError> {
        loop {
            self.push().map_err(HandshakeError::Io)?;
            if !self.conn.is_handshaking() {
                return Ok(true);
            }
            match self.conn.read_tls(&mut self.sock) {
                Ok(0) => return Err(HandshakeError::Closed),
                Ok(_) => {
                    if let Err(e) = self.conn.process_new_packets() {
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

    /// Writes queued records until none is left (true) or the socket is
    /// full (false); then the pending FIN.
    fn push(&mut self) -> io::Result<bool> {
        while self.conn.wants_write() {
            match self.conn.write_tls(&mut self.sock) {
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
            match self.conn.reader().read(&mut buf[filled..]) {
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
            match self.conn.read_tls(&mut self.sock) {
                Ok(_) => {
                    if let Err(e) = self.conn.process_new_packets() {
                        let _ = self.push();
                        if filled > 0 {
                            self.end_pending = true;
                            return Ok(filled);
                        }
                        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
                    }
                    if self.conn.wants_write() {
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
            let n = self.conn.writer().write(&buf[taken..])?;
            taken += n;
            // Done, or nothing to push that would make room, or the socket is full.
            if taken == buf.len() || (n == 0 && !self.conn.wants_write()) || !self.push()? {
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
        self.conn.send_close_notify();
        self.fin_pending = true;
        self.push().map(drop)
    }
}
