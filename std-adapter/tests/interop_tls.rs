//! TLS against programs not written here, started by the tests:
//! `openssl s_client` and socat's TLS client against `ricochet serve`, and
//! `ricochet probe tls://` against socat's `OPENSSL-LISTEN` echo and
//! `openssl s_server` made an echo server by a pipe from its output to its
//! input (`apt-get install -y --no-install-recommends openssl socat`).
//! Certificates are made by the tests (rcgen).

mod probe_support;
mod tls_support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use probe_support::{
    Peer, free_tcp_port, json_of, probe_cli, require, run_bounded_with_input, texts,
};
use ricochet::core::Mode;
use tls_support::{Pki, TlsServer, WAIT, data};

fn path(p: &std::path::Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

/// Runs `openssl s_client ARGS` against `addr`: sends `input`, waits until
/// all of it came back, then closes stdin (s_client sends close_notify and
/// exits). Returns what came back.
fn s_client_echo(addr: SocketAddr, args: &[&str], input: &[u8]) -> Vec<u8> {
    require("openssl");
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(addr.to_string())
        .args(["-brief", "-nocommands", "-verify_return_error"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn openssl s_client");
    let mut out = child.stdout.take().expect("stdout");
    let want = input.len();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 16 * 1024];
        while got.len() < want {
            match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
        got
    });
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input).expect("write to s_client");
    let start = Instant::now();
    while !reader.is_finished() {
        if start.elapsed() > WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("s_client: the echo did not come back within {WAIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let got = reader.join().expect("reader");
    drop(stdin);
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > 2 * WAIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("s_client did not exit after stdin closed");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let mut err = String::new();
    if let Some(mut e) = child.stderr.take() {
        let _ = e.read_to_string(&mut err);
    }
    assert!(status.success(), "s_client failed: {err}");
    assert!(err.contains("Verification: OK"), "{err}");
    got
}

#[test]
fn interop_openssl_s_client_tls12_and_tls13_through_our_server() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let input = data(200 * 1024, 3);
    for version in ["-tls1_2", "-tls1_3"] {
        let got = s_client_echo(
            srv.tls,
            &[
                version,
                "-CAfile",
                path(&pki.ca),
                "-servername",
                "localhost",
            ],
            &input,
        );
        assert!(
            got == input,
            "{version}: {} bytes back, different",
            got.len()
        );
    }
    srv.wait_stats("two TLS sessions", |s| s.tls_handshakes.completed == 2);
}

#[test]
fn interop_openssl_s_client_with_a_client_certificate_for_mutual_tls() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Lines, |c| {
        if let Some(t) = &mut c.tls {
            t.client_ca = Some(pki.ca.clone());
        }
    });
    let got = s_client_echo(
        srv.tls,
        &[
            "-CAfile",
            path(&pki.ca),
            "-cert",
            path(&pki.client_cert),
            "-key",
            path(&pki.client_key),
        ],
        b"hello over mutual TLS\n",
    );
    assert_eq!(got, b"hello over mutual TLS\n");
}

#[test]
fn interop_socat_tls_client_through_our_server() {
    // socat sends its close_notify right behind the last data: the server
    // must see the end although it arrived in the same read as the data.
    require("socat");
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let dir = tempfile::tempdir().expect("temp dir");
    let input = data(256 * 1024, 5);
    let file = dir.path().join("in.bin");
    std::fs::write(&file, &input).expect("write input");
    let o = run_bounded_with_input(
        Command::new("socat").args([
            "-t",
            "5",
            "-",
            &format!("OPENSSL:{},cafile={}", srv.tls, path(&pki.ca)),
        ]),
        Stdio::from(std::fs::File::open(&file).expect("open input")),
        WAIT,
    );
    assert!(o.status.success(), "{:?}", texts(&o).2);
    assert!(
        o.stdout == input,
        "socat got {} bytes back, different",
        o.stdout.len()
    );
    srv.wait_stats("a clean TLS close", |s| s.tls.closed.peer_finished == 1);
}

/// Starts a TLS echo server made of another program on a free port (retried
/// on a port race), ready once it listens.
fn start_listener(what: &str, make: impl Fn(u16) -> Command) -> (Peer, u16) {
    for _ in 0..5 {
        let port = free_tcp_port();
        let child = make(port)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
        let mut peer = Peer {
            child,
            what: format!("{what} on {port}"),
        };
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = peer.child.try_wait() {
                break;
            }
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                return (peer, port);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = peer.child.kill();
    }
    panic!("{what} did not start listening");
}

#[test]
fn interop_probe_against_socat_openssl_listen_echo() {
    require("socat");
    let pki = Pki::new();
    let (_socat, port) = start_listener("socat TLS echo", |port| {
        let mut c = Command::new("socat");
        c.arg(format!(
            "OPENSSL-LISTEN:{port},fork,reuseaddr,bind=127.0.0.1,cert={},key={},verify=0",
            path(&pki.cert),
            path(&pki.key)
        ))
        .arg("EXEC:cat");
        c
    });
    let target = format!("tls://localhost:{port}");
    let ca = path(&pki.ca);
    let o = probe_cli(&[
        &target, "--tls-ca", ca, "-c", "3", "-n", "200", "-s", "1-2000", "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["messages_verified"], 600);
    assert_eq!(
        j["connections_ok"], 3,
        "socat closes after our close_notify"
    );
    assert_eq!(j["tls"]["handshakes"], 3);
    let o = probe_cli(&[
        &target, "--tls-ca", ca, "-p", "stream", "-s", "16KiB", "-n", "100", "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    assert_eq!(json_of(&o)["bytes_verified"], 100 * 16384);
    let o = probe_cli(&[
        &target, "--tls-ca", ca, "-p", "crr", "-c", "2", "-n", "5", "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    assert_eq!(json_of(&o)["tls"]["handshakes"], 10);
}

#[test]
fn interop_probe_against_openssl_s_server_echoing_through_a_pipe() {
    // s_server prints what it receives and sends what it reads: a thread
    // copies its output to its input, which makes it an echo server for
    // one connection (-naccept 1).
    require("openssl");
    let pki = Pki::new();
    let mut last_err = String::new();
    for _ in 0..5 {
        let port = free_tcp_port();
        let mut child = Command::new("openssl")
            .args(["s_server", "-quiet", "-naccept", "1"])
            .arg("-accept")
            .arg(format!("127.0.0.1:{port}"))
            .args(["-cert", path(&pki.cert), "-key", path(&pki.key)])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn openssl s_server");
        let (mut out, mut inp) = (
            child.stdout.take().expect("stdout"),
            child.stdin.take().expect("stdin"),
        );
        let pipe = std::thread::spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match out.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if inp.write_all(&buf[..n]).and_then(|()| inp.flush()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let mut peer = Peer {
            child,
            what: format!("openssl s_server on {port}"),
        };
        let start = Instant::now();
        let mut listening = false;
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = peer.child.try_wait() {
                break;
            }
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
                listening = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        if !listening {
            if let Some(mut e) = peer.child.stderr.take() {
                let _ = e.read_to_string(&mut last_err);
            }
            continue;
        }
        let target = format!("tls://localhost:{port}");
        let o = probe_cli(&[
            &target,
            "--tls-ca",
            path(&pki.ca),
            "-n",
            "300",
            "-s",
            "1-1000",
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
        let j = json_of(&o);
        assert_eq!(j["messages_verified"], 300);
        assert_eq!(j["tls"]["handshakes"], 1);
        drop(peer);
        let _ = pipe.join();
        return;
    }
    panic!("openssl s_server did not start: {last_err}");
}

#[test]
fn interop_openssl_s_client_tls11_is_refused_and_counted_as_protocol() {
    // rustls speaks TLS 1.2 and 1.3 only: a TLS 1.1 client gets a
    // handshake_failure alert (40), and the server counts a protocol failure.
    require("openssl");
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let o = run_bounded_with_input(
        Command::new("openssl")
            .args(["s_client", "-connect", &srv.tls.to_string()])
            .args(["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]),
        Stdio::null(),
        WAIT,
    );
    let (code, _, err) = texts(&o);
    assert_ne!(code, 0, "a TLS 1.1 handshake succeeded: {err}");
    assert!(err.contains("alert number 40"), "{err}");
    srv.wait_stats("the protocol failure", |s| {
        s.tls_handshakes.failed.protocol == 1 && s.connections_open == 0
    });
}
