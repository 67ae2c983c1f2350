//! Runs every example program (built as [[bin]]s) with a watchdog and
//! checks what it prints and its exit status; in modules [`echo`],
//! [`usage`], [`failures`].

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

mod echo;
mod failures;
mod usage;

const LIMIT: Duration = Duration::from_secs(30);

/// Waits for `child` with a watchdog; kills it (by handle) on expiry.
fn finish(mut child: Child, what: &str) -> Output {
    let start = Instant::now();
    loop {
        if child.try_wait().expect("wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn run(bin: &str, args: &[&str]) -> (i32, String) {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let o = finish(child, bin);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
    )
}

/// Starts a server example on port 0 and returns it with the address it printed.
fn start_server(bin: &str, args: &[&str]) -> (Child, BufReader<std::process::ChildStdout>, String) {
    let mut child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn server");
    let mut out = BufReader::new(child.stdout.take().expect("stdout"));
    let mut line = String::new();
    out.read_line(&mut line).expect("first line");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
    (child, out, addr.to_owned())
}

fn rest_of(
    mut child: Child,
    mut out: BufReader<std::process::ChildStdout>,
    what: &str,
) -> (i32, String) {
    let mut text = String::new();
    // The server exits by itself after its count; the watchdog bounds it.
    let reader = std::thread::spawn(move || {
        let _ = out.read_to_string(&mut text);
        text
    });
    child.stdout = None;
    let o = finish(child, what);
    (
        o.status.code().unwrap_or(-1),
        reader.join().unwrap_or_default(),
    )
}

/// Every program, by name and path.
const ALL: [(&str, &str); 7] = [
    ("tcp_server", env!("CARGO_BIN_EXE_tcp_server")),
    ("tcp_client", env!("CARGO_BIN_EXE_tcp_client")),
    ("udp_server", env!("CARGO_BIN_EXE_udp_server")),
    ("udp_client", env!("CARGO_BIN_EXE_udp_client")),
    ("unix_pair", env!("CARGO_BIN_EXE_unix_pair")),
    ("sticky_packets", env!("CARGO_BIN_EXE_sticky_packets")),
    ("in_memory", env!("CARGO_BIN_EXE_in_memory")),
];

/// Runs `bin ARGS` to completion (watchdog); exit code, stdout and stderr.
fn run_all(bin: &str, args: &[&str]) -> (i32, String, String) {
    let child = Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let o = finish(child, bin);
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// A UDP echo stand-in that echoes `answers` datagrams, then (after
/// `hold` says so, if given) closes its socket: the kernel then answers the
/// client with ICMP port unreachable.
fn udp_stand_in(
    answers: usize,
    hold: Option<std::sync::mpsc::Receiver<()>>,
) -> (String, std::thread::JoinHandle<()>) {
    let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    socket.set_read_timeout(Some(LIMIT)).unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    let handle = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        for _ in 0..answers {
            let Ok((n, from)) = socket.recv_from(&mut buf) else {
                return;
            };
            socket.send_to(&buf[..n], from).unwrap();
        }
        if let Some(hold) = hold {
            let _ = hold.recv_timeout(LIMIT);
        }
        // Dropping the socket closes the port.
    });
    (addr, handle)
}
