//! TLS for the probe: `tls://HOST:PORT` targets and the client
//! configuration (`--tls-ca`, `--tls-server-name`, `--insecure`,
//! `--tls-resumption`, and a client certificate for mutual TLS,
//! `--tls-cert` and `--tls-key`, read as `ricochet serve` reads its own),
//! shared by every connection of a run (so sessions resume across
//! connections). The connection itself, a transport link of the stream
//! worker, is [`TlsLink`] (`link.rs`).

mod link;

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::Target;
pub(crate) use link::{HandshakeError, RefusedByServer, TlsLink};

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
    /// PEM file of the client certificate chain (leaf first) presented to a
    /// server that asks for one (mutual TLS); with [`TlsOptions::client_key`].
    /// `None`: the probe presents none.
    pub client_cert: Option<PathBuf>,
    /// PEM file of [`TlsOptions::client_cert`]'s private key (PKCS#8,
    /// PKCS#1 or SEC1); given with it, never alone.
    pub client_key: Option<PathBuf>,
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

/// What every connection to a `tls://` target needs: the shared
/// configuration and the name to check.
#[derive(Clone, Debug)]
pub(crate) struct TlsClient {
    pub(crate) config: Arc<ClientConfig>,
    pub(crate) name: ServerName<'static>,
    /// The client certificate file presented (`--tls-cert`), to name it
    /// when the server refuses it.
    pub(crate) client_cert: Option<Arc<Path>>,
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// The client of each target of a run, in order (`None` for a target that
/// is not `tls://`). They share one configuration, so one session cache
/// (rustls keys it by server name): a connection resumes a session any
/// earlier connection to that name got.
pub(crate) fn clients(
    targets: &[Target],
    opts: &TlsOptions,
) -> Result<Vec<Option<TlsClient>>, TlsSetupError> {
    let mut config: Option<Arc<ClientConfig>> = None;
    let client_cert: Option<Arc<Path>> = opts.client_cert.as_deref().map(Arc::from);
    let mut out = Vec::with_capacity(targets.len());
    for target in targets {
        let Target::Tls(t) = target else {
            out.push(None);
            continue;
        };
        let name = server_name(t, opts)?;
        let config = match &config {
            Some(c) => Arc::clone(c),
            None => Arc::clone(config.insert(Arc::new(client_config(opts)?))),
        };
        out.push(Some(TlsClient {
            config,
            name,
            client_cert: client_cert.clone(),
        }));
    }
    Ok(out)
}

/// The name `target`'s certificate is checked against (and sent in SNI).
fn server_name(
    target: &TlsTarget,
    opts: &TlsOptions,
) -> Result<ServerName<'static>, TlsSetupError> {
    let host = opts.server_name.as_deref().unwrap_or(&target.host);
    ServerName::try_from(host.to_owned()).map_err(|_| {
        TlsSetupError(format!(
            "{host:?} is not a valid TLS server name (a DNS name or an IP address); \
             give the certificate's name with --tls-server-name"
        ))
    })
}

/// The client configuration of a run: trusted CAs (or `--insecure`),
/// TLS 1.2 and 1.3, the client certificate if any, resumption as asked.
fn client_config(opts: &TlsOptions) -> Result<ClientConfig, TlsSetupError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsSetupError(e.to_string()))?;
    let builder = if opts.insecure {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAnyCertificate(provider())))
    } else {
        builder.with_root_certificates(roots(opts)?)
    };
    let mut config = match (&opts.client_cert, &opts.client_key) {
        (None, None) => builder.with_no_client_auth(),
        (Some(cert), Some(key)) => {
            // Read and checked as `ricochet serve` reads its own: the same
            // errors, naming the file and the flag.
            let setup = |e: crate::serve::TlsConfigError| TlsSetupError(e.to_string());
            let chain =
                crate::serve::read_certificates("client certificate", cert).map_err(setup)?;
            let private =
                crate::serve::read_private_key("client private key", key).map_err(setup)?;
            builder
                .with_client_auth_cert(chain.clone(), private.clone_key())
                .map_err(|e| {
                    setup(crate::serve::identity_refused(
                        e, cert, key, &chain, &private,
                    ))
                })?
        }
        (Some(_), None) => {
            return Err(TlsSetupError(
                "--tls-cert needs --tls-key: give the private key of the client certificate \
                 with --tls-key FILE"
                    .to_owned(),
            ));
        }
        (None, Some(_)) => {
            return Err(TlsSetupError(
                "--tls-key needs --tls-cert: give the client certificate of this key with \
                 --tls-cert FILE"
                    .to_owned(),
            ));
        }
    };
    if opts.no_resumption {
        config.resumption = rustls::client::Resumption::disabled();
    }
    Ok(config)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(host: &str, port: u16) -> Target {
        Target::Tls(TlsTarget {
            addrs: vec![SocketAddr::from(([127, 0, 0, 1], port))],
            host: host.to_owned(),
        })
    }

    fn insecure() -> TlsOptions {
        TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        }
    }

    #[test]
    fn clients_share_one_config_and_name_each_tls_target() {
        let tcp = Target::Tcp(vec![SocketAddr::from(([127, 0, 0, 1], 7))].into());
        let targets = [tls("localhost", 1), tcp, tls("127.0.0.1", 2)];
        let c = clients(&targets, &insecure()).expect("clients");
        let [Some(a), None, Some(b)] = &c[..] else {
            panic!("one client per tls:// target only");
        };
        assert!(Arc::ptr_eq(&a.config, &b.config), "one session cache");
        assert_eq!(a.name, ServerName::try_from("localhost").unwrap());
        assert_eq!(b.name, ServerName::try_from("127.0.0.1").unwrap());
    }

    #[test]
    fn clients_use_the_server_name_option_for_every_target() {
        let opts = TlsOptions {
            server_name: Some("echo.example".to_owned()),
            ..insecure()
        };
        let c = clients(&[tls("127.0.0.1", 1), tls("localhost", 2)], &opts).expect("clients");
        for client in c.iter().flatten() {
            assert_eq!(client.name, ServerName::try_from("echo.example").unwrap());
        }
        let bad = TlsOptions {
            server_name: Some("not a name!".to_owned()),
            ..insecure()
        };
        let e = clients(&[tls("localhost", 1)], &bad).expect_err("an invalid name");
        assert!(e.0.contains("--tls-server-name"), "{e}");
    }

    #[test]
    fn a_client_certificate_needs_its_key_and_a_key_its_certificate() {
        let target = [tls("localhost", 1)];
        let cert_only = TlsOptions {
            client_cert: Some("/nonexistent/client.pem".into()),
            ..insecure()
        };
        let e = clients(&target, &cert_only).expect_err("no key");
        assert!(e.0.starts_with("--tls-cert needs --tls-key"), "{e}");
        let key_only = TlsOptions {
            client_key: Some("/nonexistent/client-key.pem".into()),
            ..insecure()
        };
        let e = clients(&target, &key_only).expect_err("no certificate");
        assert!(e.0.starts_with("--tls-key needs --tls-cert"), "{e}");
        let both = TlsOptions {
            client_cert: Some("/nonexistent/client.pem".into()),
            client_key: Some("/nonexistent/client-key.pem".into()),
            ..insecure()
        };
        let e = clients(&target, &both).expect_err("unreadable certificate");
        assert!(
            e.0.contains("/nonexistent/client.pem: cannot read it") && e.0.contains("--tls-cert"),
            "{e}"
        );
        assert!(both.is_set(), "a client certificate needs a tls:// target");
    }

    /// Only options that differ from the defaults count as given (and then
    /// need a `tls://` target).
    #[test]
    fn default_options_are_not_set_and_any_other_is() {
        assert!(!TlsOptions::default().is_set());
        assert!(insecure().is_set());
        let name = TlsOptions {
            server_name: Some("echo.example".to_owned()),
            ..TlsOptions::default()
        };
        assert!(name.is_set());
    }

    /// Without `--tls-ca` (nor `--insecure`) the system's CAs are trusted:
    /// a client is built when the system has some, and otherwise the error
    /// names both ways out.
    #[test]
    fn without_a_ca_file_the_system_roots_are_used_or_their_absence_said() {
        let system = rustls_native_certs::load_native_certs().certs;
        let mut store = rustls::RootCertStore::empty();
        let (usable, _) = store.add_parsable_certificates(system);
        let got = clients(&[tls("localhost", 1)], &TlsOptions::default());
        if usable > 0 {
            let c = got.expect("a client trusting the system's CAs");
            assert!(c[0].is_some());
        } else {
            let e = got.expect_err("no CA on this system");
            assert!(
                e.0.contains("--tls-ca FILE") && e.0.contains("--insecure"),
                "{e}"
            );
        }
    }

    #[test]
    fn clients_without_tls_targets_build_nothing() {
        let udp = Target::Udp(vec![SocketAddr::from(([127, 0, 0, 1], 7))].into());
        // Not even a CA file that cannot be read is looked at.
        let opts = TlsOptions {
            ca: Some("/nonexistent/ca.pem".into()),
            ..TlsOptions::default()
        };
        assert!(matches!(
            &clients(&[udp], &opts).expect("no client")[..],
            [None]
        ));
        let e = clients(&[tls("localhost", 1)], &opts).expect_err("unreadable CA");
        assert!(e.0.contains("cannot read it"), "{e}");
    }
}
