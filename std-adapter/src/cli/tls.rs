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
    #[arg(long = "tls", value_name = "ADDR", value_parser = super::serve_values::parse_addr,
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
    #[arg(long, value_name = "DUR", default_value = "10s", value_parser = parse_handshake_timeout,
          requires = "tls_cert")]
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

/// `ricochet probe`'s TLS options (a `tls://` target only).
#[derive(Debug, Args)]
#[command(next_help_heading = "TLS (tls:// targets)")]
pub(crate) struct TlsProbeArgs {
    /// PEM CA certificates to verify the server with [default: the system's CAs].
    #[arg(long, value_name = "CA.pem")]
    tls_ca: Option<PathBuf>,
    /// Name to check the server's certificate against (and send in SNI) [default: the target's host].
    #[arg(long, value_name = "NAME")]
    tls_server_name: Option<String>,
    /// DANGEROUS: accept any server certificate (for test servers only; the report says so).
    #[arg(long, conflicts_with = "tls_ca")]
    insecure: bool,
    /// PEM client certificate chain (leaf first) for a server that asks for one (mutual TLS).
    #[arg(long, value_name = "CERT.pem", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, value_name = "KEY.pem", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Resume earlier sessions (tickets) on new connections; off: every handshake is a full one.
    #[arg(long, value_name = "on|off", default_value = "on", value_parser = parse_on_off,
          action = clap::ArgAction::Set)]
    tls_resumption: bool,
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" => Ok(true),
        "off" => Ok(false),
        _ => Err("expected on or off".to_owned()),
    }
}

impl TlsProbeArgs {
    /// The probe's TLS options.
    pub(crate) fn options(&self) -> ricochet::probe::TlsOptions {
        ricochet::probe::TlsOptions {
            ca: self.tls_ca.clone(),
            server_name: self.tls_server_name.clone(),
            insecure: self.insecure,
            no_resumption: !self.tls_resumption,
            client_cert: self.tls_cert.clone(),
            client_key: self.tls_key.clone(),
        }
    }
}
