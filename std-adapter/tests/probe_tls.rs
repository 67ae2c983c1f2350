//! `ricochet probe tls://` against our TLS server (and against servers that
//! are not TLS): verification, handshake latency and rate, `--pattern crr`
//! with and without resumption, certificate checks, `--insecure`, a client
//! certificate for mutual TLS (`--tls-cert`, `--tls-key`), and the usage
//! errors of the TLS options. Certificates are made by the test.

mod probe_support;
mod tls_support;

use std::path::PathBuf;

use probe_support::{Fault, FaultyServer, json_of, probe_cli, texts};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use ricochet::core::Mode;
use tls_support::{Pki, RawAfterHandshake, TlsServer};

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn probe_tls_verifies_pingpong_stream_and_lines_and_reports_handshakes() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://localhost:{}", srv.tls.port());
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "-c",
        "3",
        "-n",
        "300",
        "-s",
        "1-3000",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["transport"], "tls");
    assert_eq!(j["messages_verified"], 900);
    assert_eq!(j["connections_ok"], 3);
    assert_eq!(j["tls"]["handshakes"], 3);
    assert_eq!(j["tls"]["server_name"], "localhost");
    assert_eq!(j["tls"]["insecure"], false);
    assert!(
        j["tls"]["handshake_us"]["p50"].as_u64().unwrap_or(0) > 0,
        "{j}"
    );
    // Round trips exclude the handshake: there are 900 of them, one per message.
    assert_eq!(j["latency_us"]["count"], 900);
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "-p",
        "stream",
        "-s",
        "16KiB",
        "-n",
        "200",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    assert_eq!(json_of(&o)["bytes_verified"], 200 * 16384);
    srv.wait_stats("both runs' closes", |s| s.tls.closed.peer_finished == 4);
    let lines = TlsServer::start(&pki, Mode::Lines, |_| {});
    let target = format!("tls://127.0.0.1:{}", lines.tls.port());
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "-m",
        "lines",
        "-s",
        "2-500",
        "-n",
        "200",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let (_, table, _) = texts(&o);
    assert!(table.contains("handshakes   1 ("), "{table}");
    assert!(table.contains("certificate 127.0.0.1 verified"), "{table}");
}

#[test]
fn probe_tls_crr_makes_one_handshake_per_round_resumed_or_not() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://localhost:{}", srv.tls.port());
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "-p",
        "crr",
        "-c",
        "2",
        "-n",
        "20",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["pattern"], "crr");
    assert_eq!(j["messages_verified"], 40);
    assert_eq!(j["tls"]["handshakes"], 40);
    assert_eq!(j["tls"]["resumption"], true);
    let resumed = j["tls"]["resumed"].as_u64().unwrap_or(0);
    assert!(
        resumed >= 30,
        "most rounds resume a session: {resumed} of 40"
    );
    assert!(j["tls"]["handshakes_per_sec"].as_f64().unwrap_or(0.0) > 0.0);
    srv.wait_stats("40 handshakes and sessions", |s| {
        s.tls_handshakes.completed == 40 && s.tls.closed.peer_finished == 40
    });
    assert_eq!(srv.handle().stats().tls_handshakes.resumed, resumed);
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "-p",
        "crr",
        "-c",
        "2",
        "-n",
        "10",
        "--tls-resumption",
        "off",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(
        (
            j["tls"]["handshakes"].as_u64(),
            j["tls"]["resumed"].as_u64()
        ),
        (Some(20), Some(0))
    );
    assert_eq!(j["tls"]["resumption"], false);
}

#[test]
fn probe_crr_over_tcp_opens_a_connection_per_message() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tcp://{}", srv.tcp);
    let o = probe_cli(&[&target, "-p", "crr", "-c", "3", "-n", "15", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(
        (
            j["messages_verified"].as_u64(),
            j["connections_ok"].as_u64()
        ),
        (Some(45), Some(3))
    );
    assert!(j["tls"].is_null(), "no TLS section for tcp://");
    srv.wait_stats("45 TCP connections", |s| s.tcp.closed.peer_finished == 45);
    assert_eq!(srv.handle().stats().tcp.accepted, 45);
}

#[test]
fn probe_tls_untrusted_certificate_fails_the_handshake_with_a_hint() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://localhost:{}", srv.tls.port());
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.other_ca),
        "-c",
        "2",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["errors"]["handshake"], 2);
    assert_eq!(j["error_details"][0]["kind"], "handshake");
    let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
    assert!(msg.contains("not signed by a CA the probe trusts"), "{msg}");
    assert!(
        j["hints"][0].as_str().unwrap_or("").contains("--tls-ca"),
        "{j}"
    );
    srv.wait_stats("the refusals", |s| s.tls_handshakes.failed.certificate == 2);
}

#[test]
fn probe_tls_server_name_must_match_the_certificate() {
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
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("not valid for wrong.example: it names localhost, 127.0.0.1"),
        "{msg}"
    );
    assert_eq!(j["tls"]["server_name"], "wrong.example");
}

#[test]
fn probe_tls_insecure_accepts_any_certificate_and_says_so() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://127.0.0.1:{}", srv.tls.port());
    let o = probe_cli(&[&target, "--insecure", "-n", "50", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["tls"]["insecure"], true);
    let warning = j["warnings"][0].as_str().unwrap_or("");
    assert!(warning.contains("NOT verified"), "{j}");
    let o = probe_cli(&[&target, "--insecure", "-n", "5"]);
    let (_, table, _) = texts(&o);
    assert!(table.contains("NOT VERIFIED (--insecure)"), "{table}");
}

#[test]
fn probe_tls_against_a_plain_echo_server_fails_the_handshake() {
    // A plain echo server sends our ClientHello back: no TLS server answers.
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://{}", srv.tcp);
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "--timeout",
        "2s",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    assert_eq!(json_of(&o)["errors"]["handshake"], 1);
}

#[test]
fn probe_tls_against_a_silent_server_times_out_the_handshake() {
    let pki = Pki::new();
    let silent = FaultyServer::start(Fault::Silent);
    let target = format!("tls://{}", silent.addr);
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "--timeout",
        "300ms",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["errors"]["handshake"], 1);
    let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
    assert!(msg.contains("not complete within 300ms"), "{msg}");
}

/// After a completed handshake, bytes that are not TLS records (a server
/// that speaks plain text once connected) and a record that does not
/// decrypt (altered on the way) are named as such, not in rustls's words
/// alone.
#[test]
fn probe_tls_names_plain_text_and_undecryptable_records_after_the_handshake() {
    let pki = Pki::new();
    let cases: [(&[u8], &str); 2] = [
        (
            b"plain text after the handshake\n",
            "the server sent bytes that are not TLS records after the handshake",
        ),
        (
            b"\x17\x03\x03\x00\x20 thirty-two bytes of no record..",
            "a record from the server failed to decrypt",
        ),
    ];
    for (raw, said) in cases {
        let srv = RawAfterHandshake::start(&pki, raw);
        let target = format!("tls://localhost:{}", srv.addr.port());
        let o = probe_cli(&[
            &target,
            "--tls-ca",
            path(&pki.ca),
            "-n",
            "3",
            "--timeout",
            "2s",
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
        let j = json_of(&o);
        assert_eq!(j["tls"]["handshakes"], 1, "{j}");
        assert_eq!(j["errors"]["io"], 1, "{j}");
        let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
        assert!(msg.starts_with("read: ") && msg.contains(said), "{msg}");
    }
}

#[test]
fn probe_tls_options_need_a_tls_target_and_a_readable_ca() {
    let o = probe_cli(&["tcp://127.0.0.1:9", "--insecure"]);
    let (code, _, err) = texts(&o);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("apply to a tls:// target"), "{err}");
    let o = probe_cli(&["tls://127.0.0.1:9", "--tls-ca", "/nonexistent/ca.pem"]);
    let (code, _, err) = texts(&o);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--tls-ca /nonexistent/ca.pem: cannot read it"),
        "{err}"
    );
    let o = probe_cli(&["udp://127.0.0.1:9", "-p", "crr"]);
    let (code, _, err) = texts(&o);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--pattern crr applies to stream targets (tcp://, tls://, unix://)"),
        "{err}"
    );
    let o = probe_cli(&["tls://127.0.0.1:9", "--insecure", "--tls-ca", "x.pem"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--insecure with --tls-ca is contradictory"
    );
}

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
