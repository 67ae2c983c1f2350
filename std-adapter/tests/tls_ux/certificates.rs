//! Certificate problems in plain words: the server's errors naming the
//! files, the certificate command it suggests, expired, future, untrusted
//! and misnamed certificates, and names as written.

use super::*;

#[test]
fn probe_explains_a_ca_certificate_used_as_the_server_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = KeyPair::generate().expect("key");
    let mut params = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = params.self_signed(&key).expect("cert");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    let srv = server_with(&cert_path, &key_path);
    let target = format!("tls://localhost:{}", srv.tls.port());
    let o = probe_cli(&[&target, "--tls-ca", path(&cert_path), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["error_details"][0]["kind"], "handshake");
    let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
    assert!(msg.contains("CA certificate"), "{msg}");
    assert!(msg.contains("CA:FALSE"), "{msg}");
    assert!(!msg.contains("OtherError"), "{msg}");
    assert!(msg.contains(&server_suggested_command()), "{msg}");
}

#[test]
fn probe_explains_a_certificate_not_valid_for_the_name() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://127.0.0.1:{}", srv.tls.port());
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "--tls-server-name",
        "wrong.example",
        "--json",
    ]);
    let j = json_of(&o);
    let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("not valid for wrong.example")
            && msg.contains("localhost")
            && msg.contains("--tls-server-name")
            && msg.contains("subjectAltName"),
        "{msg}"
    );
    // A certificate that names nothing at all.
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let issuer =
        rcgen::CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("params");
    leaf.distinguished_name
        .push(DnType::CommonName, "localhost");
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    let write = |name: &str, pem: String| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).expect("write");
        p
    };
    let ca_path = write("ca.pem", issuer.pem());
    let srv = server_with(
        &write("cert.pem", cert.pem()),
        &write("key.pem", key.serialize_pem()),
    );
    let target = format!("tls://localhost:{}", srv.tls.port());
    let j = json_of(&probe_cli(&[&target, "--tls-ca", path(&ca_path), "--json"]));
    let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("not valid for localhost")
            && msg.contains("no subjectAltName")
            && msg.contains("subjectAltName=DNS:localhost")
            && msg.contains("`ricochet cert --name localhost`"),
        "{msg}"
    );
}

/// The `ricochet cert` command between backticks in `msg`.
fn suggested_command(msg: &str) -> String {
    let start = msg
        .find("`ricochet cert")
        .expect("a suggested `ricochet cert` command")
        + 1;
    let len = msg[start..].find('`').expect("closing backtick");
    msg[start..start + len].to_owned()
}

/// The certificate command `ricochet serve` suggests when a file holds no certificate.
fn server_suggested_command() -> String {
    let pki = Pki::new();
    let local = vec!["127.0.0.1:0".parse().unwrap()];
    let e = Server::bind(ServerConfig {
        tls: Some(TlsConfig::new(local, &pki.key, &pki.key)),
        ..ServerConfig::default()
    })
    .unwrap_err();
    suggested_command(&e.to_string())
}

#[test]
fn suggested_certificate_command_makes_a_certificate_the_probe_accepts() {
    let command = server_suggested_command();
    assert!(
        include_str!("../../../README.md").contains(&command),
        "README.md shows another command than the server suggests: {command}"
    );
    assert!(
        include_str!("../../README.md").contains(&command),
        "std-adapter/README.md shows another command than the server suggests: {command}"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let words: Vec<&str> = command.split_whitespace().collect();
    assert_eq!(words[0], "ricochet", "{command}");
    let o = run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"))
            .args(&words[1..])
            .current_dir(dir.path()),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{command}: {:?}", texts(&o));
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let srv = server_with(&cert, &key);
    for host in ["localhost", "127.0.0.1"] {
        let target = format!("tls://{host}:{}", srv.tls.port());
        let o = probe_cli(&[&target, "--tls-ca", path(&cert), "-n", "3"]);
        assert_eq!(o.status.code(), Some(0), "{target}: {:?}", texts(&o));
    }
}

#[test]
fn server_certificate_errors_name_both_files_and_quote_labels_once() {
    let pki = Pki::new();
    let local = vec!["127.0.0.1:0".parse().unwrap()];
    let bind = |tls: TlsConfig| {
        Server::bind(ServerConfig {
            tls: Some(tls),
            ..ServerConfig::default()
        })
        .unwrap_err()
        .to_string()
    };
    let msg = bind(TlsConfig::new(local.clone(), &pki.cert, &pki.client_key));
    assert!(
        msg.contains(&format!(
            "the key in {} is not the key of the certificate in {}",
            pki.client_key.display(),
            pki.cert.display()
        )) && msg.contains("--tls-key"),
        "{msg}"
    );
    assert!(!msg.contains("KeyMismatch"), "{msg}");
    let msg = bind(TlsConfig::new(local.clone(), &pki.key, &pki.key));
    assert!(
        msg.contains("\"-----BEGIN CERTIFICATE-----\" block"),
        "{msg}"
    );
    assert!(!msg.contains("\"\""), "{msg}");
    let msg = bind(TlsConfig::new(local, &pki.cert, &pki.cert));
    assert!(msg.contains("RSA PRIVATE KEY-----\") block"), "{msg}");
    assert!(!msg.contains("\")\""), "{msg}");
}

/// A `--tls-client-ca` file without a certificate (a key given by mistake):
/// the hint is how to make a CA for the clients, not the server
/// certificate command (a `CA:FALSE` certificate cannot sign clients).
#[test]
fn client_ca_without_a_certificate_suggests_making_a_ca_not_a_server_certificate() {
    let pki = Pki::new();
    let local = vec!["127.0.0.1:0".parse().unwrap()];
    let mut tls = TlsConfig::new(local, &pki.cert, &pki.key);
    tls.client_ca = Some(pki.key.clone());
    let msg = Server::bind(ServerConfig {
        tls: Some(tls),
        ..ServerConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        msg.contains("--tls-client-ca takes the certificate of the CA")
            && !msg.contains("CA:FALSE"),
        "{msg}"
    );
}

/// A server certificate for `localhost` signed by a CA of its own, valid
/// from `from` to `until` ((year, month, day) each); returns the CA file and
/// a server with that certificate.
fn server_valid(
    from: (i32, u8, u8),
    until: (i32, u8, u8),
) -> (tempfile::TempDir, PathBuf, TlsServer) {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "test CA");
    let issuer =
        rcgen::CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("key")).expect("CA");
    let key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    leaf.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
    leaf.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
    let cert = leaf.signed_by(&key, &issuer).expect("leaf");
    let write = |name: &str, pem: String| -> PathBuf {
        let p = dir.path().join(name);
        std::fs::write(&p, pem).expect("write");
        p
    };
    let ca_path = write("ca.pem", issuer.pem());
    let srv = server_with(
        &write("cert.pem", cert.pem()),
        &write("key.pem", key.serialize_pem()),
    );
    (dir, ca_path, srv)
}

/// An expired or not yet valid server certificate is said in dates, not in
/// Unix seconds, with the fix; one signed by a CA the probe does not trust
/// names --tls-ca.
#[test]
fn probe_explains_an_expired_a_future_and_an_untrusted_certificate_in_plain_words() {
    let (_dir, ca, srv) = server_valid((2020, 1, 1), (2020, 2, 1));
    let target = format!("tls://localhost:{}", srv.tls.port());
    let msg = handshake_message(&[&target, "--tls-ca", path(&ca)]);
    assert!(
        msg.contains("expired at 2020-02-01T00:00:00Z")
            && msg.contains("days ago")
            && msg.contains("renew")
            && !msg.contains("(UNIX)"),
        "{msg}"
    );
    let (_dir, ca, srv) = server_valid((2200, 1, 1), (2201, 1, 1));
    let target = format!("tls://localhost:{}", srv.tls.port());
    let msg = handshake_message(&[&target, "--tls-ca", path(&ca)]);
    assert!(
        msg.contains("not valid before 2200-01-01T00:00:00Z")
            && msg.contains("clock")
            && !msg.contains("(UNIX)"),
        "{msg}"
    );
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://localhost:{}", srv.tls.port());
    let msg = handshake_message(&[&target, "--tls-ca", path(&pki.other_ca)]);
    assert!(
        msg.contains("not signed by a CA the probe trusts") && msg.contains("--tls-ca"),
        "{msg}"
    );
}

/// A certificate from `ricochet cert`, probed without --tls-ca: the probe
/// says it is not signed by a CA it trusts, even where the system's store
/// holds a root whose subject is `CN=localhost` (Debian's
/// `ssl-cert-snakeoil.pem`, an RSA key, is in /etc/ssl/certs wherever the
/// ssl-cert package is). `ricochet cert` named its certificate
/// `CN=localhost` too, so the probe checked its signature against that
/// root's key and said only
/// `UnsupportedSignatureAlgorithmForPublicKeyContext { signature_algorithm_id: [6, 8, 42, ...] }`.
/// The system's store is a file of the test's (`SSL_CERT_FILE`) holding
/// such a root (a P-384 key: the same mismatch as RSA).
#[test]
fn probe_without_tls_ca_calls_a_ricochet_cert_certificate_untrusted_beside_a_localhost_root() {
    let dir = tempfile::tempdir().expect("temp dir");
    let o = run_bounded(
        std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"))
            .arg("cert")
            .current_dir(dir.path()),
        Duration::from_secs(60),
    );
    assert!(o.status.success(), "{:?}", texts(&o));
    let mut root = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    root.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    root.distinguished_name
        .push(DnType::CommonName, "localhost");
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384).expect("key");
    let store = dir.path().join("system-roots.pem");
    std::fs::write(&store, root.self_signed(&key).expect("root").pem()).expect("write");

    // The one handshake error of a probe, without --tls-ca, of a server
    // with `cert` and `key`.
    let probe_error = |cert: &Path, key: &Path| -> String {
        let srv = server_with(cert, key);
        let target = format!("tls://localhost:{}", srv.tls.port());
        let o = run_bounded(
            std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"))
                .args(["probe", &target, "--json"])
                .env("SSL_CERT_FILE", &store)
                .env_remove("SSL_CERT_DIR"),
            Duration::from_secs(60),
        );
        assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
        let j = json_of(&o);
        j["error_details"][0]["message"]
            .as_str()
            .unwrap_or_default()
            .to_owned()
    };
    let msg = probe_error(&dir.path().join("cert.pem"), &dir.path().join("key.pem"));
    assert!(
        msg.contains("not signed by a CA the probe trusts")
            && msg.contains("--tls-ca")
            && !msg.contains("signature_algorithm_id"),
        "{msg}"
    );

    // A self-signed certificate named CN=localhost (as `ricochet cert`'s
    // were; as `openssl req -subj /CN=localhost` makes): the collision is
    // explained in words, with the fix.
    let mut named = CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
    named
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let named_key = KeyPair::generate().expect("key");
    let (cert, key) = (
        dir.path().join("named.pem"),
        dir.path().join("named-key.pem"),
    );
    std::fs::write(&cert, named.self_signed(&named_key).expect("cert").pem()).expect("write");
    std::fs::write(&key, named_key.serialize_pem()).expect("write");
    let msg = probe_error(&cert, &key);
    assert!(
        msg.contains("same name as one the probe trusts")
            && msg.contains("--tls-ca")
            && !msg.contains("BadSignature"),
        "{msg}"
    );
}

/// A certificate naming an IPv6 address lists it as it is written (`::1`),
/// the name --tls-server-name takes, not webpki's own `0::1`.
#[test]
fn probe_lists_an_ipv6_name_of_the_certificate_as_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let key = KeyPair::generate().expect("key");
    let cert = CertificateParams::new(vec!["::1".to_owned()])
        .expect("params")
        .self_signed(&key)
        .expect("cert");
    let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_path, cert.pem()).expect("write");
    std::fs::write(&key_path, key.serialize_pem()).expect("write");
    let srv = server_with(&cert_path, &key_path);
    let target = format!("tls://localhost:{}", srv.tls.port());
    let msg = handshake_message(&[&target, "--tls-ca", path(&cert_path)]);
    assert!(
        msg.contains("it names ::1;") && !msg.contains("0::1"),
        "{msg}"
    );
}
