//! `ricochet serve` TLS flags end to end: which listeners become TLS, the
//! start lines, usage and certificate errors with their exit status.

mod serve_support;
mod tls_support;

use std::net::SocketAddr;
use std::time::Duration;

use ricochet::serve::IoBackend;
use serve_support::{Proc, io_backend, output_within, round_trip, worker_threads};
use tls_support::{Client, Pki, client_config};

/// `ricochet serve ARGS` with TLS listeners, on the backend `RICOCHET_IO`
/// names (`cargo xtask ci test` runs this file once per backend): TLS runs
/// on epoll either way, beside io_uring on an epoll loop of its own inside
/// each io_uring worker.
fn serve_tls(args: &[&str]) -> Proc {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.arg("serve").args(args);
    Proc::spawn(cmd)
}

/// Reads the stderr lines up to the `serving` line: the server runs the
/// backend `RICOCHET_IO` asked for (if it asked), and says its TLS
/// listeners have 2 epoll event loops of their own exactly when that is
/// io_uring; either way it runs 2 worker threads, one per `--threads`.
fn check_tls_beside_backend(p: &Proc) {
    let lines = p.stderr_until("serving workers=", Duration::from_secs(20));
    let serving = lines.last().expect("a serving line");
    let uring = serving.contains("io=uring");
    match io_backend() {
        IoBackend::Uring => assert!(uring, "{serving}"),
        IoBackend::Epoll => assert!(serving.contains("io=epoll"), "{serving}"),
        IoBackend::Auto => {}
    }
    let own = lines.iter().any(|l| {
        l.contains("TLS listeners run on epoll event loops of their own")
            && l.contains("tls_loops=2")
    });
    assert_eq!(own, uring, "{lines:#?}");
    assert_eq!(worker_threads(p.id(), 2), 2, "{lines:#?}");
}

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

fn echo_over_tls(addr: &str, pki: &Pki) {
    let addr: SocketAddr = addr.parse().expect("address");
    let mut c = Client::connect(addr, client_config(&pki.ca, None));
    c.send(b"cli tls");
    assert_eq!(c.recv(7), b"cli tls");
    c.half_close();
    assert_eq!(c.read_to_close().expect("clean close"), b"");
}

#[test]
fn cli_tls_cert_without_tls_addresses_makes_the_tcp_listener_tls() {
    let pki = Pki::new();
    let mut p = serve_tls(&[
        "--tcp",
        "127.0.0.1:0",
        "--udp",
        "127.0.0.1:0",
        "--threads",
        "2",
        "--tls-cert",
        path(&pki.cert),
        "--tls-key",
        path(&pki.key),
    ]);
    let mut lines = p.listening(2);
    lines.sort();
    assert_eq!(lines[0].0, "tls", "{lines:?}");
    assert_eq!(lines[1].0, "udp", "UDP stays plain: {lines:?}");
    // UDP stays on the backend asked for.
    check_tls_beside_backend(&p);
    echo_over_tls(&lines[0].1, &pki);
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn cli_tls_addresses_serve_tls_beside_plain_tcp() {
    let pki = Pki::new();
    let mut p = serve_tls_and_tcp_lines(&pki, &["--tls-handshake-timeout", "2s"]);
    // Plain TCP on the backend asked for, TLS on epoll workers.
    check_tls_beside_backend(&p);
    echo_tls_and_plain(&p, &pki);
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

/// `ricochet serve` in `lines` mode with a TLS and a plain TCP listener,
/// 2 workers, `pki`'s certificate, and `args`.
fn serve_tls_and_tcp_lines(pki: &Pki, args: &[&str]) -> Proc {
    let mut all = vec![
        "--tcp",
        "127.0.0.1:0",
        "--tls",
        "127.0.0.1:0",
        "--tls-cert",
        path(&pki.cert),
        "--tls-key",
        path(&pki.key),
        "--mode",
        "lines",
        "--threads",
        "2",
    ];
    all.extend_from_slice(args);
    serve_tls(&all)
}

/// A line echoed over the TLS listener and one over the plain TCP listener
/// of `p` (in `lines` mode).
fn echo_tls_and_plain(p: &Proc, pki: &Pki) {
    let lines = p.listening(2);
    let addr = |kind: &str| -> SocketAddr {
        let (_, a) = lines.iter().find(|(k, _)| k == kind).expect(kind);
        a.parse().unwrap()
    };
    let mut c = Client::connect(addr("tls"), client_config(&pki.ca, None));
    c.send(b"a line\n");
    assert_eq!(c.recv(7), b"a line\n");
    let mut plain = std::net::TcpStream::connect(addr("tcp")).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    round_trip(&mut plain, b"a plain line\n");
}

/// `--io uring` with TLS serves instead of refusing (it exited 1 with
/// "--io uring cannot serve TLS listeners"): plain TCP on io_uring, TLS on
/// an epoll event loop of its own inside each io_uring worker.
#[test]
fn cli_io_uring_with_tls_serves_tcp_on_io_uring_and_tls_on_epoll_loops_inside_its_workers() {
    let pki = Pki::new();
    let mut p = serve_tls_and_tcp_lines(&pki, &["--io", "uring"]);
    let lines = p.stderr_until("serving workers=", Duration::from_secs(20));
    assert!(lines.last().unwrap().contains("io=uring"), "{lines:#?}");
    assert!(
        lines.iter().any(|l| l.contains("tls_loops=2")),
        "{lines:#?}"
    );
    echo_tls_and_plain(&p, &pki);
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn cli_tls_only_listener_takes_no_default_endpoints_and_allows_lines() {
    let pki = Pki::new();
    let mut p = serve_tls(&[
        "--tls",
        "127.0.0.1:0",
        "--tls-cert",
        path(&pki.cert),
        "--tls-key",
        path(&pki.key),
        "--mode",
        "frames",
    ]);
    let lines = p.listening(1);
    assert_eq!(lines[0].0, "tls");
    // No default TCP/UDP on 7007 was added: no other start line follows.
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(20)).code(), Some(0));
    // Read stdout to its end (the channel closes at EOF).
    let mut rest = Vec::new();
    while let Ok(line) = p.stdout.recv_timeout(Duration::from_secs(10)) {
        rest.push(line);
    }
    assert!(rest.iter().all(|l| !l.starts_with("listening")), "{rest:?}");
}

#[test]
fn cli_tls_usage_and_certificate_errors() {
    let pki = Pki::new();
    let bin = env!("CARGO_BIN_EXE_ricochet");
    let run = |args: &[&str]| {
        let o = output_within(
            std::process::Command::new(bin).arg("serve").args(args),
            Duration::from_secs(20),
        );
        (
            o.status.code(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    };
    let (code, err) = run(&["--tls", "127.0.0.1:0"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
    let (code, err) = run(&["--tcp", "127.0.0.1:0", "--tls-cert", path(&pki.cert)]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--tls-key"), "{err}");
    let (code, err) = run(&[
        "--tcp",
        "127.0.0.1:0",
        "--tls-cert",
        path(&pki.cert),
        "--tls-key",
        path(&pki.key),
        "--tls-handshake-timeout",
        "0",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("must be more than 0"), "{err}");
    let missing = pki.dir.path().join("missing-key.pem");
    let (code, err) = run(&[
        "--tcp",
        "127.0.0.1:0",
        "--tls-cert",
        path(&pki.cert),
        "--tls-key",
        path(&missing),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("missing-key.pem") && err.contains("--tls-key"),
        "{err}"
    );
}

/// `ricochet serve ARGS` that must exit at once: its exit status and stderr.
fn serve_fails(args: &[&str]) -> (Option<i32>, String) {
    let o = output_within(
        std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"))
            .arg("serve")
            .args(args)
            .env_remove("RICOCHET_IO"),
        Duration::from_secs(20),
    );
    (
        o.status.code(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// `openssl ARGS`, which must succeed (the test fails, never skips,
/// without openssl: `cargo xtask deps` installs it).
fn openssl(args: &[&str]) {
    let o = output_within(
        std::process::Command::new("openssl").args(args),
        Duration::from_secs(20),
    );
    assert!(
        o.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// An encrypted (passphrase-protected) key, as OpenSSL writes it: PKCS#8
/// (`ENCRYPTED PRIVATE KEY`) or traditional (`Proc-Type: 4,ENCRYPTED`).
/// Both said to be encrypted, with the command that decrypts it: not "no
/// private key found", not a base64 error. The decrypted key serves.
#[test]
fn cli_encrypted_key_is_said_to_be_encrypted_with_the_command_that_decrypts_it() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let pkcs8 = dir.join("enc.key");
    let traditional = dir.join("trad.key");
    openssl(&[
        "pkcs8",
        "-topk8",
        "-in",
        path(&pki.key),
        "-out",
        path(&pkcs8),
        "-passout",
        "pass:x",
    ]);
    openssl(&[
        "ec",
        "-aes256",
        "-in",
        path(&pki.key),
        "-out",
        path(&traditional),
        "-passout",
        "pass:x",
    ]);
    assert!(
        std::fs::read_to_string(&traditional)
            .expect("read")
            .contains("Proc-Type: 4,ENCRYPTED"),
        "a traditional encrypted key"
    );
    for key in [&pkcs8, &traditional] {
        let (code, err) = serve_fails(&[
            "--tcp",
            "127.0.0.1:0",
            "--tls-cert",
            path(&pki.cert),
            "--tls-key",
            path(key),
        ]);
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(path(key))
                && err.contains("encrypted (passphrase-protected)")
                && err.contains("unencrypted")
                && err.contains(&format!("openssl pkey -in {} -out key.pem", path(key))),
            "{err}"
        );
        assert!(
            !err.contains("no private key found") && !err.contains("base64"),
            "{err}"
        );
    }
    // The suggested fix works.
    let decrypted = dir.join("decrypted.pem");
    openssl(&[
        "pkey",
        "-in",
        path(&traditional),
        "-out",
        path(&decrypted),
        "-passin",
        "pass:x",
    ]);
    let mut p = serve_tls(&[
        "--tls",
        "127.0.0.1:0",
        "--tls-cert",
        path(&pki.cert),
        "--tls-key",
        path(&decrypted),
    ]);
    let addr = p.listening(1)[0].1.clone();
    echo_over_tls(&addr, &pki);
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

/// An X.509 version 1 certificate (`openssl x509 -req` without an
/// extensions file makes one) is refused by rustls; the error says so and
/// how to make a version 3 one, not rustls's bare `UnsupportedCertVersion`.
#[test]
fn cli_version_1_certificate_is_said_to_need_version_3_and_how() {
    let pki = Pki::new();
    let dir = pki.dir.path();
    let csr = dir.join("v1.csr");
    let v1 = dir.join("v1.pem");
    openssl(&[
        "req",
        "-new",
        "-key",
        path(&pki.key),
        "-subj",
        "/CN=localhost",
        "-out",
        path(&csr),
    ]);
    openssl(&[
        "x509",
        "-req",
        "-in",
        path(&csr),
        "-signkey",
        path(&pki.key),
        "-days",
        "2",
        "-out",
        path(&v1),
    ]);
    let (code, err) = serve_fails(&[
        "--tcp",
        "127.0.0.1:0",
        "--tls-cert",
        path(&v1),
        "--tls-key",
        path(&pki.key),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(path(&v1))
            && err.contains("X.509 version 1")
            && err.contains("version 3")
            && err.contains("ricochet cert"),
        "{err}"
    );
}

/// A chain file with the leaf after its CA (`cat ca.pem cert.pem`): the key
/// is right, the order is not; the error says the leaf must come first and
/// which certificate the key belongs to, not that the key is wrong.
#[test]
fn cli_chain_not_leaf_first_says_the_leaf_must_come_first() {
    let pki = Pki::new();
    let bad = pki.dir.path().join("bad-chain.pem");
    let read = |p: &std::path::Path| std::fs::read_to_string(p).expect("read PEM");
    std::fs::write(&bad, read(&pki.ca) + &read(&pki.cert)).expect("write");
    let (code, err) = serve_fails(&[
        "--tcp",
        "127.0.0.1:0",
        "--tls-cert",
        path(&bad),
        "--tls-key",
        path(&pki.key),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains(path(&bad))
            && err.contains("out of order")
            && err.contains("certificate 2 of 2")
            && err.contains("must come first"),
        "{err}"
    );
    assert!(!err.contains("is not the key of the certificate"), "{err}");
    // A key of no certificate in the file is still a wrong key.
    let (code, err) = serve_fails(&[
        "--tcp",
        "127.0.0.1:0",
        "--tls-cert",
        path(&bad),
        "--tls-key",
        path(&pki.client_key),
    ]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("is not the key of the certificate") && !err.contains("out of order"),
        "{err}"
    );
}

/// A server certificate that expired, or is not valid yet, is served (this
/// host's clock may be what is wrong) but said at start, with its dates:
/// otherwise the server would only ever log clients refusing handshakes.
/// A valid one is not mentioned.
#[test]
fn cli_expired_or_future_certificate_is_warned_of_at_start_with_its_dates() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, from, until, needle) in [
        (
            "expired",
            (2020, 1, 1),
            (2020, 2, 1),
            "expired at 2020-02-01T00:00:00Z",
        ),
        (
            "future",
            (2200, 1, 1),
            (2201, 1, 1),
            "is not valid before 2200-01-01T00:00:00Z",
        ),
    ] {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params =
            rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("params");
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        let cert = params.self_signed(&key).expect("cert");
        let cert_path = dir.path().join(format!("{name}.pem"));
        let key_path = dir.path().join(format!("{name}-key.pem"));
        std::fs::write(&cert_path, cert.pem()).expect("write");
        std::fs::write(&key_path, key.serialize_pem()).expect("write");
        let mut p = serve_tls(&[
            "--tls",
            "127.0.0.1:0",
            "--tls-cert",
            path(&cert_path),
            "--tls-key",
            path(&key_path),
        ]);
        let line = p.wait_stderr("TLS certificate", Duration::from_secs(20));
        assert!(
            line.contains("WARN") && line.contains(path(&cert_path)) && line.contains(needle),
            "{line}"
        );
        assert_eq!(p.listening(1)[0].0, "tls", "served all the same");
        p.signal("TERM");
        assert_eq!(p.wait_exit(Duration::from_secs(20)).code(), Some(0));
    }
    let pki = Pki::new();
    let mut p = serve_tls(&[
        "--tls",
        "127.0.0.1:0",
        "--tls-cert",
        path(&pki.cert),
        "--tls-key",
        path(&pki.key),
    ]);
    let start = p.stderr_until("listening", Duration::from_secs(20));
    assert!(
        !start.iter().any(|l| l.contains("TLS certificate")),
        "{start:#?}"
    );
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

/// A failed handshake's log line says what its reason means and what
/// rustls said: a plain client on a TLS port is named as not speaking TLS,
/// a client refusing our certificate by its alert.
#[test]
fn cli_failed_handshake_log_says_what_went_wrong_in_words() {
    use std::io::{Read, Write};
    let pki = Pki::new();
    let mut p = serve_tls(&[
        "--tls",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--tls-cert",
        path(&pki.cert),
        "--tls-key",
        path(&pki.key),
    ]);
    let addr: SocketAddr = p.listening(1)[0].1.parse().expect("address");
    let mut plain = std::net::TcpStream::connect(addr).expect("connect");
    plain
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    plain.write_all(b"GET / HTTP/1.1\r\n\r\n").expect("write");
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    let line = p.wait_stderr("TLS handshake failed", Duration::from_secs(20));
    assert!(
        line.contains("reason=bad_record")
            && line.contains("does not speak TLS")
            && line.contains("detail="),
        "{line}"
    );
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(20)).code(), Some(0));
}
