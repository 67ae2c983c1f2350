//! `ricochet probe tls://` against our TLS server (and against servers that
//! are not TLS): verification, handshake latency and rate, `--pattern crr`
//! with and without resumption, certificate checks, `--insecure`, a client
//! certificate for mutual TLS (`--tls-cert`, `--tls-key`), and the usage
//! errors of the TLS options. Certificates are made by the test. In modules
//! [`handshakes`] and [`mutual`].

#[path = "../probe_support/mod.rs"]
mod probe_support;
#[path = "../tls_support/mod.rs"]
mod tls_support;

use std::path::PathBuf;

use probe_support::{Fault, FaultyServer, json_of, probe_cli, texts};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use ricochet::core::Mode;
use tls_support::{Pki, RawAfterHandshake, TlsServer};

mod handshakes;
mod mutual;

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}
