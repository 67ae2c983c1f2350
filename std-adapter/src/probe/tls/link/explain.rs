//! Why a TLS handshake or record failed, in words: [`HandshakeError`],
//! the explanations of rustls's errors a user can act on, and
//! [`RefusedByServer`], a server's fatal alert before it accepted the
//! handshake.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use rustls::AlertDescription;
use rustls::pki_types::ServerName;

use crate::serve::CERT_COMMAND;
use crate::serve::validity;

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
pub(super) fn explain_records(e: &rustls::Error) -> Option<String> {
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
pub(super) fn explain(e: &rustls::Error) -> Option<String> {
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
pub(super) fn shown_name(presented: &str) -> String {
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
    pub(super) fn of(
        e: &rustls::Error,
        accepted: bool,
        client_cert: Option<&Arc<Path>>,
    ) -> Option<Self> {
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
pub(super) fn about_client_certificate(alert: AlertDescription) -> bool {
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
