//! Our server against clients not written here: netcat-openbsd, socat and a
//! Python 3 socket client in the classic tutorial's style
//! (`apt-get install -y --no-install-recommends socat netcat-openbsd`).

mod probe_support;

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

use probe_support::{OurServer, STEP_TIMEOUT, require, run_bounded, run_bounded_with_input, texts};
use ricochet::core::Mode;

/// Deterministic binary test data (NUL and '\n' bytes included).
fn data(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn write_file(dir: &Path, name: &str, bytes: &[u8]) -> File {
    let path = dir.join(name);
    File::create(&path)
        .and_then(|mut f| f.write_all(bytes))
        .expect("write input");
    File::open(&path).expect("open input")
}

#[test]
fn interop_nc_sends_a_file_through_our_tcp_server() {
    require("nc");
    let srv = OurServer::start(Mode::Raw);
    let dir = tempfile::tempdir().expect("temp dir");
    let input = data(1 << 20);
    let f = write_file(dir.path(), "in.bin", &input);
    let o = run_bounded_with_input(
        Command::new("nc").args(["-N", "127.0.0.1", &srv.tcp.port().to_string()]),
        Stdio::from(f),
        STEP_TIMEOUT,
    );
    assert!(o.status.success(), "{:?}", texts(&o).2);
    assert_eq!(o.stdout.len(), input.len());
    assert!(o.stdout == input, "nc got different bytes back");
}

#[test]
fn interop_nc_over_our_unix_socket_in_lines_mode() {
    require("nc");
    let srv = OurServer::start(Mode::Lines);
    let dir = tempfile::tempdir().expect("temp dir");
    let input = b"first line\nsecond line\nno newline at the end";
    let f = write_file(dir.path(), "in.txt", input);
    let o = run_bounded_with_input(
        Command::new("nc").arg("-N").arg("-U").arg(&srv.unix),
        Stdio::from(f),
        STEP_TIMEOUT,
    );
    assert!(o.status.success(), "{:?}", texts(&o).2);
    // The unterminated last line is echoed at FIN: nothing the client sent is lost.
    assert_eq!(o.stdout, input);
}

#[test]
fn interop_socat_client_tcp_and_unix() {
    require("socat");
    let srv = OurServer::start(Mode::Raw);
    let dir = tempfile::tempdir().expect("temp dir");
    let input = data(256 * 1024);
    for remote in [
        format!("TCP:{}", srv.tcp),
        format!("UNIX-CONNECT:{}", srv.unix.display()),
    ] {
        let f = write_file(dir.path(), "in.bin", &input);
        let o = run_bounded_with_input(
            Command::new("socat").args(["-t", "5", "-", &remote]),
            Stdio::from(f),
            STEP_TIMEOUT,
        );
        assert!(o.status.success(), "{remote}: {:?}", texts(&o).2);
        assert!(
            o.stdout == input,
            "{remote}: socat got {} bytes back, different",
            o.stdout.len()
        );
    }
}

#[test]
fn interop_socat_client_udp() {
    require("socat");
    let srv = OurServer::start(Mode::Raw);
    let dir = tempfile::tempdir().expect("temp dir");
    let f = write_file(dir.path(), "in.txt", b"hello over udp\n");
    let o = run_bounded_with_input(
        Command::new("socat").args(["-t", "2", "-", &format!("UDP:{}", srv.udp)]),
        Stdio::from(f),
        STEP_TIMEOUT,
    );
    assert!(o.status.success(), "{:?}", texts(&o).2);
    assert_eq!(o.stdout, b"hello over udp\n");
}

/// The tutorial's client, with the recv loop the tutorial leaves out.
const PY_TUTORIAL_TCP: &str = r#"
import socket, sys
HOST, PORT = sys.argv[1], int(sys.argv[2])
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.settimeout(10)
    s.connect((HOST, PORT))
    s.sendall(b'Hello, world')
    data = b''
    while len(data) < 12:
        chunk = s.recv(1024)
        if not chunk:
            break
        data += chunk
print('Received', repr(data))
"#;

/// Bulk: sendall, half-close, recv until EOF, compare.
const PY_BULK_TCP: &str = r#"
import socket, sys, random
HOST, PORT, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(862)
payload = bytes(rnd.getrandbits(8) for _ in range(N))
with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
    s.settimeout(10)
    s.connect((HOST, PORT))
    s.sendall(payload)
    s.shutdown(socket.SHUT_WR)
    got = bytearray()
    while True:
        chunk = s.recv(65536)
        if not chunk:
            break
        got += chunk
print('ok' if bytes(got) == payload else 'MISMATCH', len(got))
"#;

const PY_TUTORIAL_UDP: &str = r#"
import socket, sys
HOST, PORT = sys.argv[1], int(sys.argv[2])
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
    s.settimeout(10)
    s.sendto(b'Hello, world', (HOST, PORT))
    data, server = s.recvfrom(2048)
print('Received', repr(data), 'from', server[1])
"#;

fn python(script: &str, args: &[String]) -> (i32, String, String) {
    require("python3");
    let o = run_bounded(
        Command::new("python3").arg("-c").arg(script).args(args),
        STEP_TIMEOUT,
    );
    texts(&o)
}

#[test]
fn interop_python_tutorial_clients_against_our_server() {
    let srv = OurServer::start(Mode::Raw);
    let host = srv.tcp.ip().to_string();
    let (code, out, err) = python(PY_TUTORIAL_TCP, &[host.clone(), srv.tcp.port().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "Received b'Hello, world'");

    let (code, out, err) = python(
        PY_BULK_TCP,
        &[host.clone(), srv.tcp.port().to_string(), "300000".into()],
    );
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.trim(), "ok 300000");

    let (code, out, err) = python(PY_TUTORIAL_UDP, &[host, srv.udp.port().to_string()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out.trim(),
        format!("Received b'Hello, world' from {}", srv.udp.port())
    );
}
