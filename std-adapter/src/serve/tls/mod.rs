//! TLS listeners: echo over TLS 1.2 and 1.3 (rustls, `ring` provider).
//!
//! A TLS listener binds and accepts exactly as a TCP one; each accepted
//! connection becomes a [`TlsStream`], a core
//! [`Transport`](ricochet_core::pump::Transport) that wraps rustls's
//! `ServerConnection` over the socket. The handshake happens inside that
//! transport before the session sees any byte, so the pump, the session,
//! the echo modes, half-close and every timeout are the ones plain TCP has.
//!
//! - **Loading** ([`TlsConfig`] → [`load`]): the certificate chain and key
//!   are read once at bind time (PEM: PKCS#8, PKCS#1 or SEC1 keys); a file
//!   that is missing or unreadable (naming the user this process runs as),
//!   holds no certificate or key, an encrypted key, a key that does not
//!   match the certificate, or a chain that is not leaf first, is a
//!   [`TlsConfigError`] naming the file and the fix. Nothing is read again
//!   later: a renewed certificate takes a restart. With `client_ca`, every
//!   client must present a certificate signed by one of those CAs (mutual
//!   TLS).
//! - **Handshake**: bounded by [`TlsConfig::handshake_timeout`] from the
//!   accept. A failed handshake is refused with the alert rustls chose (a
//!   plain-TCP or garbage client gets `decode_error` or the like), then FIN:
//!   never a hang, never a reset while the alert is in flight. Outcomes are
//!   counted by reason in [`HandshakeCounts`].
//! - **Sessions**: TLS 1.3 resumption through stateless tickets (ChaCha20-
//!   Poly1305, keys rotated every 6 h, shared by all workers), TLS 1.2
//!   through tickets and a 256-entry session cache.

mod counters;
mod files;
mod stream;
pub(crate) mod validity;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::server::WebPkiClientVerifier;

pub use counters::{HandshakeCounts, HandshakeFailure, HandshakeFailures};
pub use files::TlsConfigError;
pub(crate) use files::{
    identity_refused, read_certificates, read_private_key, read_roots, user_name,
};
#[cfg(test)]
pub(crate) use stream::tests::configs as test_configs;
pub(crate) use stream::{Outcome, TlsStream};

/// The command that makes a self-signed server certificate (`cert.pem`)
/// and its key (`key.pem`) for `localhost`, `127.0.0.1` and `::1` that
/// rustls accepts (not a CA, the names in subjectAltName): `ricochet cert`
/// (`cli/cert.rs`). Shown in errors and in the READMEs.
pub(crate) const CERT_COMMAND: &str = "ricochet cert";

/// What a TLS listener needs to wrap each connection it accepts.
#[derive(Debug)]
pub(crate) struct Acceptor {
    /// The loaded identity and protocol settings, shared by every worker.
    pub(crate) config: Arc<rustls::ServerConfig>,
    /// From the accept to the end of the handshake.
    pub(crate) handshake_timeout: ricochet_core::Duration,
}

/// Default bound of a TLS handshake, from the accept to the first byte the session may see.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS listeners and their identity (part of [`crate::serve::ServerConfig`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsConfig {
    /// Addresses served over TLS (bound exactly as TCP listeners are).
    pub listen: Vec<SocketAddr>,
    /// PEM file with the server's certificate chain, leaf first.
    pub cert_chain: PathBuf,
    /// PEM file with the certificate's private key (PKCS#8, PKCS#1 or SEC1).
    pub private_key: PathBuf,
    /// PEM file of CA certificates: when set, every client must present a
    /// certificate chained to one of them (mutual TLS); otherwise none is asked.
    pub client_ca: Option<PathBuf>,
    /// A connection whose handshake is not complete this long after the
    /// accept is closed (and counted as `timeout`). More than 0.
    pub handshake_timeout: Duration,
}

impl TlsConfig {
    /// TLS on `listen` with this certificate chain and key, no client
    /// certificates, the default handshake timeout.
    pub fn new(
        listen: Vec<SocketAddr>,
        cert_chain: impl Into<PathBuf>,
        private_key: impl Into<PathBuf>,
    ) -> Self {
        TlsConfig {
            listen,
            cert_chain: cert_chain.into(),
            private_key: private_key.into(),
            client_ca: None,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }
}

/// The crypto provider of every TLS connection: rustls's `ring` provider.
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Builds the rustls server configuration for `config` (files read now).
/// Warns when the server's own certificate `leaf` (from `path`) has
/// expired or is not valid yet: it is served all the same (this host's
/// clock may be the one that is wrong), but every client that checks it
/// refuses the handshake, and the server only sees those refusals.
fn warn_if_not_valid_now(leaf: &CertificateDer<'_>, path: &Path) {
    let Some((not_before, not_after)) = validity::validity(leaf) else {
        return;
    };
    if let Some(problem) = validity::problem(not_before, not_after, validity::now_secs()) {
        tracing::warn!(
            "TLS certificate {}: {problem}: clients that check it refuse every handshake \
             (counted as `certificate`); renew it, or set this host's clock right (for a test \
             certificate, e.g. `{CERT_COMMAND}`)",
            path.display()
        );
    }
}

pub(crate) fn load(config: &TlsConfig) -> Result<Arc<rustls::ServerConfig>, TlsConfigError> {
    if config.handshake_timeout.is_zero() {
        return Err(TlsConfigError::Invalid {
            reason: "the handshake timeout must be more than 0 (it bounds a client that never \
                     finishes its handshake)"
                .to_owned(),
        });
    }
    let certs = read_certificates("certificate", &config.cert_chain)?;
    let key = read_private_key("private key", &config.private_key)?;
    warn_if_not_valid_now(&certs[0], &config.cert_chain);
    let provider = provider();
    let rejected = |e: rustls::Error| TlsConfigError::Rejected {
        reason: e.to_string(),
    };
    let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(rejected)?;
    let builder = match &config.client_ca {
        Some(path) => {
            let roots = read_roots("client CA", path)?;
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), Arc::clone(&provider))
                    .build()
                    .map_err(|e| TlsConfigError::Rejected {
                        reason: format!("client CA {}: {e}", path.display()),
                    })?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut server = builder
        .with_single_cert(certs.clone(), key.clone_key())
        .map_err(|e| identity_refused(e, &config.cert_chain, &config.private_key, &certs, &key))?;
    server.ticketer = rustls::crypto::ring::Ticketer::new().map_err(rejected)?;
    Ok(Arc::new(server))
}
