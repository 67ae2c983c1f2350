//! How a failed handshake, a refusal or bad records are told: each in
//! plain words with its fix, or rustls's own message when there is none.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use rustls::pki_types::{ServerName, UnixTime};
use rustls::{AlertDescription, CertificateError as C, HandshakeType, OtherError};

use super::super::explain::*;
use super::super::*;

fn at(secs: u64) -> UnixTime {
    UnixTime::since_unix_epoch(Duration::from_secs(secs))
}

fn name(s: &'static str) -> ServerName<'static> {
    ServerName::try_from(s).expect("a server name")
}

/// An error whose `Debug` is webpki's `CaUsedAsEndEntity`.
#[derive(Debug)]
struct CaUsedAsEndEntity;

impl fmt::Display for CaUsedAsEndEntity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CA used as end entity")
    }
}

impl std::error::Error for CaUsedAsEndEntity {}

#[test]
fn each_certificate_error_a_new_user_meets_is_told_with_its_fix() {
    let cert = |c| rustls::Error::InvalidCertificate(c);
    let cases: Vec<(rustls::Error, &[&str])> = vec![
        (
            cert(C::ExpiredContext {
                time: at(2_000_000_000),
                not_after: at(1_900_000_000),
            }),
            &["certificate expired at", "renew it on the server"],
        ),
        (
            cert(C::NotValidYetContext {
                time: at(1_900_000_000),
                not_before: at(2_000_000_000),
            }),
            &["certificate is not valid before", "check the clocks"],
        ),
        (cert(C::Expired), &["certificate has expired"]),
        (cert(C::NotValidYet), &["certificate is not valid yet"]),
        (
            cert(C::UnknownIssuer),
            &["not signed by a CA the probe trusts (--tls-ca's"],
        ),
        (cert(C::BadSignature), &["ssl-cert-snakeoil.pem"]),
        (
            cert(C::Other(OtherError(Arc::new(CaUsedAsEndEntity)))),
            &["is a CA certificate, not a server certificate"],
        ),
        (
            cert(C::NotValidForNameContext {
                expected: name("127.0.0.1"),
                presented: vec![],
            }),
            &["no subjectAltName", "subjectAltName=IP:127.0.0.1"],
        ),
        (
            cert(C::NotValidForNameContext {
                expected: name("wrong.example"),
                presented: vec!["DnsName(\"localhost\")".into(), "IpAddress(0::1)".into()],
            }),
            &[
                "it names localhost, ::1;",
                "subjectAltName=DNS:wrong.example",
            ],
        ),
        (cert(C::NotValidForName), &["the name the probe checked"]),
        (
            rustls::Error::InappropriateHandshakeMessage {
                expect_types: vec![HandshakeType::ServerHello],
                got_type: HandshakeType::ClientHello,
            },
            &["own ClientHello back", "probe it as tcp://HOST:PORT"],
        ),
    ];
    for (e, said) in cases {
        let told = HandshakeError::Tls(e.clone()).to_string();
        for s in said {
            assert!(told.contains(s), "{e:?}: {told}");
        }
        assert!(told.starts_with("TLS handshake failed: "), "{told}");
    }
}

#[test]
fn an_error_without_plain_words_is_told_as_rustls_says_it() {
    for e in [
        rustls::Error::InvalidCertificate(C::Revoked),
        rustls::Error::InvalidCertificate(C::Other(OtherError(Arc::new(io::Error::other(
            "some other check",
        ))))),
        rustls::Error::InappropriateHandshakeMessage {
            expect_types: vec![HandshakeType::ServerHello],
            got_type: HandshakeType::Certificate,
        },
        rustls::Error::General("something".into()),
    ] {
        assert_eq!(explain(&e), None, "{e:?}");
        assert_eq!(
            HandshakeError::Tls(e.clone()).to_string(),
            format!("TLS handshake failed: {e}")
        );
    }
    let io = HandshakeError::Io(io::ErrorKind::ConnectionReset.into()).to_string();
    assert!(
        io.starts_with("TLS handshake failed: ") && io.contains("reset"),
        "{io}"
    );
    let setup = HandshakeError::Setup(rustls::Error::General("no".into())).to_string();
    assert!(setup.starts_with("TLS setup: "), "{setup}");
}

#[test]
fn records_a_server_spoiled_after_the_handshake_are_told_by_cause() {
    let bytes = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
    let told = explain_records(&bytes).expect("explained");
    assert!(told.contains("bytes that are not TLS records"), "{told}");
    let altered = explain_records(&rustls::Error::DecryptError).expect("explained");
    assert!(altered.contains("failed to decrypt"), "{altered}");
    assert_eq!(explain_records(&rustls::Error::General("x".into())), None);
}

#[test]
fn a_client_certificate_refused_for_its_purpose_names_extended_key_usage() {
    let presented: Arc<Path> = Arc::from(Path::new("/tmp/client.pem"));
    let refused = |alert, cert: Option<&Arc<Path>>| {
        RefusedByServer::of(&rustls::Error::AlertReceived(alert), false, cert)
            .expect("a refusal")
            .to_string()
    };
    let purpose = refused(AlertDescription::UnsupportedCertificate, Some(&presented));
    assert!(
        purpose.contains("(--tls-cert /tmp/client.pem) for its purpose")
            && purpose.contains("includes clientAuth"),
        "{purpose}"
    );
    // Another refusal of a certificate: not its purpose.
    let unknown = refused(AlertDescription::UnknownCA, Some(&presented));
    assert!(!unknown.contains("extendedKeyUsage"), "{unknown}");
    // Unsupported, yet none was sent: the server wanted one.
    let none = refused(AlertDescription::UnsupportedCertificate, None);
    assert!(
        none.contains("the probe sent none") && !none.contains("extendedKeyUsage"),
        "{none}"
    );
}
