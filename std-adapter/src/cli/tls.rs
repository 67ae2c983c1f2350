//! The TLS options of `ricochet serve` and `ricochet probe`, flattened into
//! their argument structs (kept apart so the TLS surface reads in one place).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use ricochet::serve::{DEFAULT_HANDSHAKE_TIMEOUT, ServerConfig, TlsConfig, parse_duration};

/// `ricochet serve`'s TLS options.
#[derive(Debug, Args)]
#[command(next_help_heading = "TLS")]
pub(crate) struct TlsServeArgs {
    /// TLS listening address (repeatable). Without any, --tls-cert makes every --tcp listener TLS.
    #[arg(long = "tls", value_name = "ADDR", value_parser = super::serve::parse_addr,
          requires = "tls_cert")]
    listen: Vec<SocketAddr>,
    /// PEM certificate chain (leaf first): serve TLS 1.2/1.3 on the --tls listeners, or on
    /// every --tcp listener if no --tls is given (UDP and Unix listeners stay plain).
    #[arg(long, value_name = "CERT.pem", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "KEY.pem", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// PEM CA certificates: require every TLS client to present a certificate signed by one (mutual TLS).
    #[arg(long, value_name = "CA.pem", requires = "tls_cert")]
    tls_client_ca: Option<PathBuf>,
    /// Close a TLS connection whose handshake is not complete this long after the accept.
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_handshake_timeout)]
    tls_handshake_timeout: Duration,
}

fn parse_handshake_timeout(s: &str) -> Result<Duration, String> {
    match parse_duration(s) {
        Ok(d) if d.is_zero() => Err(format!(
            "must be more than 0: it bounds a client that never finishes its handshake \
             (default {}s)",
            DEFAULT_HANDSHAKE_TIMEOUT.as_secs()
        )),
        Ok(d) => Ok(d),
        Err(e) => Err(e.to_string()),
    }
}

impl TlsServeArgs {
    /// The TLS configuration with the explicit `--tls` listeners (`None` without a certificate).
    pub(crate) fn config(&self) -> Option<TlsConfig> {
        let (cert, key) = (self.tls_cert.clone()?, self.tls_key.clone()?);
        let mut tls = TlsConfig::new(self.listen.clone(), cert, key);
        tls.client_ca = self.tls_client_ca.clone();
        tls.handshake_timeout = self.tls_handshake_timeout;
        Some(tls)
    }

    /// With a certificate but no `--tls` address, the TCP listeners serve TLS.
    pub(crate) fn adopt_tcp(config: &mut ServerConfig) {
        if let Some(tls) = &mut config.tls
            && tls.listen.is_empty()
        {
            tls.listen = std::mem::take(&mut config.tcp);
        }
    }
}

/// Whether `config` has a TLS listener.
pub(crate) fn has_listener(config: &ServerConfig) -> bool {
    config.tls.as_ref().is_some_and(|t| !t.listen.is_empty())
}
