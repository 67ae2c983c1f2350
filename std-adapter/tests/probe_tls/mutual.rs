//! A client certificate for mutual TLS (`--tls-cert`, `--tls-key`): presented,
//! refused for another CA or a server-only key usage, and its file errors.

use super::*;

/// A client certificate for `client.test` signed by a CA of its own (not
/// the one a mutual-TLS server of `pki` trusts), and its key, in `pki`'s
/// directory.
fn client_cert_of_another_ca(pki: &Pki) -> (PathBuf, PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "a CA the server does not trust");
    let issuer =
        CertifiedIssuer::self_signed(ca, KeyPair::generate().expect("CA key")).expect("CA");
    let key = KeyPair::generate().expect("client key");
    let mut params = CertificateParams::new(vec!["client.test".to_owned()]).expect("params");
    params
        .distinguished_name
        .push(DnType::CommonName, "untrusted test client");
    let cert = params.signed_by(&key, &issuer).expect("client cert");
    let (c, k) = (
        pki.dir.path().join("stranger.pem"),
        pki.dir.path().join("stranger-key.pem"),
    );
    std::fs::write(&c, cert.pem()).expect("write");
    std::fs::write(&k, key.serialize_pem()).expect("write");
    (c, k)
}

/// Our server requiring a client certificate signed by `pki`'s CA.
fn mutual_tls_server(pki: &Pki) -> TlsServer {
    let ca = pki.ca.clone();
    TlsServer::start(pki, Mode::Raw, move |c| {
        c.tls.as_mut().expect("tls").client_ca = Some(ca);
    })
}

#[test]
fn probe_tls_presents_its_client_certificate_to_a_mutual_tls_server() {
    let pki = Pki::new();
    let srv = mutual_tls_server(&pki);
    let target = format!("tls://localhost:{}", srv.tls.port());
    let runs: [&[&str]; 3] = [
        &["-c", "3", "-n", "100", "-s", "1-2000"],
        &["-p", "crr", "-c", "2", "-n", "10"],
        &[
            "-p",
            "crr",
            "-c",
            "2",
            "-n",
            "10",
            "--tls-resumption",
            "off",
        ],
    ];
    let mut handshakes = 0;
    for extra in runs {
        let mut args = vec![
            target.as_str(),
            "--tls-ca",
            path(&pki.ca),
            "--tls-cert",
            path(&pki.client_cert),
            "--tls-key",
            path(&pki.client_key),
            "--json",
        ];
        args.extend(extra);
        let o = probe_cli(&args);
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {:?}", texts(&o));
        let j = json_of(&o);
        let opened = j["connections_opened"].as_u64().unwrap_or(0);
        assert!(opened >= 2, "{extra:?}: {j}");
        assert_eq!(j["tls"]["handshakes"], opened, "{extra:?}: {j}");
        assert_eq!(j["tls"]["verified"], true, "{extra:?}: {j}");
        assert_eq!(j["errors"]["handshake"], 0, "{extra:?}: {j}");
        let sent = j["messages_sent"].as_u64().unwrap_or(0);
        assert!(sent > 0, "{extra:?}: {j}");
        assert_eq!(j["messages_verified"], sent, "{extra:?}: {j}");
        assert_eq!(
            j["tls"]["client_certificate"],
            path(&pki.client_cert),
            "the report says which certificate was presented: {j}"
        );
        handshakes += opened;
    }
    // The table says so too.
    let o = probe_cli(&[
        target.as_str(),
        "--tls-ca",
        path(&pki.ca),
        "--tls-cert",
        path(&pki.client_cert),
        "--tls-key",
        path(&pki.client_key),
        "-n",
        "3",
    ]);
    let (code, out, _) = texts(&o);
    assert_eq!(code, 0, "{out}");
    handshakes += 1;
    assert!(
        out.contains(&format!(
            "client certificate {} presented",
            path(&pki.client_cert)
        )),
        "{out}"
    );
    // The server accepted every one of those handshakes, and refused none.
    srv.wait_stats("every handshake", |s| {
        s.tls_handshakes.completed == handshakes
    });
    assert_eq!(srv.handle().stats().tls_handshakes.failed.total(), 0);
}

#[test]
fn probe_tls_client_certificate_of_another_ca_fails_the_handshakes_naming_the_refusal() {
    let pki = Pki::new();
    let srv = mutual_tls_server(&pki);
    let (cert, key) = client_cert_of_another_ca(&pki);
    let target = format!("tls://localhost:{}", srv.tls.port());
    let args = [
        target.as_str(),
        "--tls-ca",
        path(&pki.ca),
        "--tls-cert",
        path(&cert),
        "--tls-key",
        path(&key),
        "-c",
        "3",
    ];
    let mut json = args.to_vec();
    json.push("--json");
    let o = probe_cli(&json);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["errors"]["handshake"], 3, "{j}");
    assert_eq!(j["tls"]["handshakes"], 0, "{j}");
    assert_eq!(j["tls"]["verified"], false, "{j}");
    assert_eq!(j["connections_opened"], 0, "{j}");
    let details = j["error_details"].as_array().expect("error details");
    assert_eq!(details.len(), 3, "{j}");
    for d in details {
        assert_eq!(d["kind"], "handshake", "{j}");
        let msg = d["message"].as_str().unwrap_or("");
        assert!(
            msg.contains("refused the probe's client certificate")
                && msg.contains(&format!("--tls-cert {}", cert.display()))
                && msg.contains("--tls-client-ca"),
            "{msg}"
        );
        assert!(
            !msg.contains("sends none") && !msg.contains("sent none"),
            "{msg}"
        );
    }
    let hint = j["hints"][0].as_str().unwrap_or("");
    assert!(
        hint.contains("client certificate") && hint.contains("--tls-cert"),
        "{j}"
    );
    assert!(!hint.contains("presents none"), "{hint}");
    srv.wait_stats("the refusals", |s| s.tls_handshakes.failed.certificate == 3);
    assert_eq!(srv.handle().stats().tls_handshakes.completed, 0);
}

/// A client certificate the server trusts but whose extendedKeyUsage
/// allows server authentication only (what `ricochet cert` makes) is
/// refused for its purpose (alert `unsupported_certificate`): the error
/// says so and names clientAuth, instead of asking for a CA the server
/// trusts, which it already is.
#[test]
fn probe_tls_server_only_client_certificate_is_refused_naming_its_key_usage() {
    let pki = Pki::new();
    let dir = pki.dir.path().join("server-only");
    let made = probe_support::run_bounded(
        std::process::Command::new(probe_support::ricochet_bin()).args([
            "cert",
            "--name",
            "client.test",
            "--out",
            path(&dir),
        ]),
        tls_support::WAIT,
    );
    assert!(made.status.success(), "{made:?}");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let trusted = cert.clone();
    let srv = TlsServer::start(&pki, Mode::Raw, move |c| {
        c.tls.as_mut().expect("tls").client_ca = Some(trusted);
    });
    let target = format!("tls://localhost:{}", srv.tls.port());
    let o = probe_cli(&[
        target.as_str(),
        "--tls-ca",
        path(&pki.ca),
        "--tls-cert",
        path(&cert),
        "--tls-key",
        path(&key),
        "-n",
        "1",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["errors"]["handshake"], 1, "{j}");
    let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("UnsupportedCertificate")
            && msg.contains("clientAuth")
            && msg.contains(&format!("--tls-cert {}", cert.display())),
        "{msg}"
    );
    assert!(!msg.contains("signed by a CA the server trusts"), "{msg}");
}

/// Runs the probe against `target` with `args`, which must be a usage
/// error (exit 2) before anything is sent; its stderr.
fn usage_error(target: &str, args: &[&str]) -> String {
    let mut all = vec![target];
    all.extend(args);
    let o = probe_cli(&all);
    let (code, out, err) = texts(&o);
    assert_eq!(code, 2, "{args:?}: {out}{err}");
    assert!(out.is_empty(), "{args:?}: no report: {out}");
    err
}

#[test]
fn probe_tls_client_certificate_errors_name_the_flag_and_the_file_before_connecting() {
    let pki = Pki::new();
    // Nothing may connect to this listener: every run is a usage error.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("nonblocking");
    let target = format!("tls://localhost:{}", listener.local_addr().unwrap().port());
    let (cert, key) = (path(&pki.client_cert), path(&pki.client_key));
    let ca = path(&pki.ca);

    let err = usage_error(&target, &["--tls-ca", ca, "--tls-cert", cert]);
    assert!(err.contains("--tls-key"), "{err}");
    let err = usage_error(&target, &["--tls-ca", ca, "--tls-key", key]);
    assert!(err.contains("--tls-cert"), "{err}");

    // A key that is not the certificate's: both files named, as the server does.
    let server_key = path(&pki.key);
    let err = usage_error(
        &target,
        &["--tls-ca", ca, "--tls-cert", cert, "--tls-key", server_key],
    );
    assert!(
        err.contains(&format!(
            "the key in {server_key} is not the key of the certificate in {cert}"
        )) && err.contains("--tls-key")
            && err.contains("--tls-cert"),
        "{err}"
    );
    assert!(!err.contains("KeyMismatch"), "{err}");

    // Missing files, each named with its flag.
    let missing = pki.dir.path().join("missing.pem");
    let missing = path(&missing);
    let err = usage_error(
        &target,
        &["--tls-ca", ca, "--tls-cert", missing, "--tls-key", key],
    );
    assert!(
        err.contains(missing) && err.contains("cannot read it") && err.contains("--tls-cert"),
        "{err}"
    );
    let err = usage_error(
        &target,
        &["--tls-ca", ca, "--tls-cert", cert, "--tls-key", missing],
    );
    assert!(
        err.contains(missing) && err.contains("cannot read it") && err.contains("--tls-key"),
        "{err}"
    );

    // The files swapped: no certificate in the key file, no key in the certificate file.
    let err = usage_error(
        &target,
        &["--tls-ca", ca, "--tls-cert", key, "--tls-key", cert],
    );
    assert!(
        err.contains(&format!(
            "client certificate {key}: no client certificate found in it"
        )) && err.contains("-----BEGIN CERTIFICATE-----")
            && err.contains("--tls-cert"),
        "{err}"
    );
    let err = usage_error(
        &target,
        &["--tls-ca", ca, "--tls-cert", cert, "--tls-key", cert],
    );
    assert!(
        err.contains(&format!(
            "client private key {cert}: no client private key found in it"
        )) && err.contains("-----BEGIN PRIVATE KEY-----")
            && err.contains("--tls-key"),
        "{err}"
    );

    // The flags without a tls:// target, as the other TLS options.
    let err = usage_error("tcp://127.0.0.1:9", &["--tls-cert", cert, "--tls-key", key]);
    assert!(
        err.contains("apply to a tls:// target") && err.contains("--tls-cert"),
        "{err}"
    );
    match listener.accept() {
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
        other => panic!("a usage error connected: {other:?}"),
    }
}
