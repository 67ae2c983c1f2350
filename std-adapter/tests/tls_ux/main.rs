//! What a new user of TLS sees: the probe claims a verified certificate only
//! when one was, names certificate problems in plain words with the fix,
//! gives no handshake rate for a span too short to mean one, and reports a
//! mutual-TLS refusal as a handshake error; the server's certificate errors
//! name the files, and the certificate command it suggests (and the README
//! shows) makes a certificate the probe accepts. Certificates are made by
//! the test (rcgen, and openssl for the suggested command). In modules
//! [`report`] and [`certificates`].

#[path = "../probe_support/mod.rs"]
mod probe_support;
#[path = "../tls_support/mod.rs"]
mod tls_support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use probe_support::{json_of, probe_cli, run_bounded, texts};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
use ricochet::core::Mode;
use ricochet::serve::{Server, ServerConfig, TlsConfig};
use tls_support::{Pki, TlsServer};

mod certificates;
mod report;

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// The `handshakes` line of a table.
fn handshakes_line(table: &str) -> &str {
    table
        .lines()
        .find(|l| l.starts_with("handshakes"))
        .unwrap_or_else(|| panic!("no handshakes line in {table}"))
}

/// A TLS server whose certificate and key are `cert` and `key`.
fn server_with(cert: &Path, key: &Path) -> TlsServer {
    let pki = Pki::new();
    let (cert, key) = (cert.to_owned(), key.to_owned());
    TlsServer::start(&pki, Mode::Raw, move |c| {
        let tls = c.tls.as_mut().expect("tls");
        tls.cert_chain = cert;
        tls.private_key = key;
    })
}

/// The one `handshake` error message of a probe run's JSON report.
fn handshake_message(args: &[&str]) -> String {
    let mut all = args.to_vec();
    all.push("--json");
    let o = probe_cli(&all);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["error_details"][0]["kind"], "handshake", "{j}");
    j["error_details"][0]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}
