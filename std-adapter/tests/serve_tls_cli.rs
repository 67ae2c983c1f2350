//! `ricochet serve` TLS flags end to end: which listeners become TLS, the
//! start lines, usage and certificate errors with their exit status.

mod serve_support;
mod tls_support;

use std::net::SocketAddr;
use std::time::Duration;

use serve_support::{Proc, output_within};
use tls_support::{Client, Pki, client_config};

/// `ricochet serve ARGS` with TLS listeners: the I/O backend is left to
/// `auto` (TLS runs on the epoll workers; `--io uring` with TLS is refused,
/// see `serve_io.rs`), whatever `RICOCHET_IO` the suite runs with.
fn serve_tls(args: &[&str]) -> Proc {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.arg("serve").args(args).env_remove("RICOCHET_IO");
    Proc::spawn(cmd)
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
        "--tls-cert",
        path(&pki.cert),
        "--tls-key",
        path(&pki.key),
    ]);
    let mut lines = p.listening(2);
    lines.sort();
    assert_eq!(lines[0].0, "tls", "{lines:?}");
    assert_eq!(lines[1].0, "udp", "UDP stays plain: {lines:?}");
    echo_over_tls(&lines[0].1, &pki);
    p.signal("TERM");
    assert_eq!(p.wait_exit(Duration::from_secs(20)).code(), Some(0));
}

#[test]
fn cli_tls_addresses_serve_tls_beside_plain_tcp() {
    let pki = Pki::new();
    let mut p = serve_tls(&[
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
        "--tls-handshake-timeout",
        "2s",
    ]);
    let lines = p.listening(2);
    let kinds: Vec<&str> = lines.iter().map(|(k, _)| k.as_str()).collect();
    assert!(
        kinds.contains(&"tcp") && kinds.contains(&"tls"),
        "{lines:?}"
    );
    let tls = &lines.iter().find(|(k, _)| k == "tls").expect("tls").1;
    let mut c = Client::connect(tls.parse().unwrap(), client_config(&pki.ca, None));
    c.send(b"a line\n");
    assert_eq!(c.recv(7), b"a line\n");
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
