//! A stderr nobody reads (a full pipe: a stalled journald, a `| reader`
//! that stopped reading) loses log lines and nothing else: the server
//! still echoes, a SIGTERM still stops it (exit 0), and a second signal
//! still stops it at once (exit 130). Log writes once blocked the worker
//! that logged, and through the stderr lock the signal thread and main.
//!
//! The child's stderr is a pipe this test holds and never reads, shrunk
//! to one page (`F_SETPIPE_SZ`); `RUST_LOG=debug` logs every connection,
//! and connections are made until the pipe is full (`FIONREAD`), then
//! more. Linux only (`F_SETPIPE_SZ`, `FIONREAD` on a pipe).
#![cfg(target_os = "linux")]

mod serve_support;

use std::io::{self, PipeReader};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serve_support::{IO_TIMEOUT, Proc, connect, payload, round_trip};

/// How long a stop may take here: the graceful shutdown of an idle
/// server, plus the exit, which gives a stuck log write 3 s (300 ms after
/// a second signal) before it leaves the lines still queued.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// How long an abort (a second signal) may take with the log stuck: under
/// the 3 s a graceful exit gives the stuck write.
const ABORT_LIMIT: Duration = Duration::from_millis(2500);

/// A pipe whose buffer is one page: the write end for the child's stderr,
/// the read end (never read) and its capacity.
fn small_pipe() -> (PipeReader, io::PipeWriter, usize) {
    let (reader, writer) = io::pipe().expect("pipe");
    // SAFETY: fcntl(2) F_SETPIPE_SZ on a pipe this test owns; no memory is passed.
    let size = unsafe { libc::fcntl(reader.as_raw_fd(), libc::F_SETPIPE_SZ, 4096) };
    assert!(size > 0, "F_SETPIPE_SZ: {}", io::Error::last_os_error());
    (reader, writer, usize::try_from(size).unwrap())
}

/// Bytes waiting in the pipe (`FIONREAD`).
fn queued(reader: &PipeReader) -> usize {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one c_int through the pointer, to `n`, which outlives the call.
    let rc = unsafe { libc::ioctl(reader.as_raw_fd(), libc::FIONREAD, &raw mut n) };
    assert_eq!(rc, 0, "FIONREAD: {}", io::Error::last_os_error());
    usize::try_from(n).unwrap()
}

/// `ricochet serve` on 127.0.0.1:0, logging at debug into `stderr`.
fn serve_into(stderr: io::PipeWriter, args: &[&str]) -> (Proc, SocketAddr) {
    let tcp = ["--tcp", "127.0.0.1:0", "--stats-interval", "100ms"];
    serve_logging_into(stderr, &[&tcp[..], args].concat())
}

/// `ricochet serve ARGS` (one listener), logging at debug into `stderr`,
/// and the address it listens on.
fn serve_logging_into(stderr: io::PipeWriter, args: &[&str]) -> (Proc, SocketAddr) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.arg("serve")
        .args(args)
        .env("RUST_LOG", "debug")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr);
    // `cmd` (our copy of the write end) is dropped here.
    let p = Proc::spawn_with(cmd);
    let addr = p.listening(1)[0].1.parse().expect("address");
    (p, addr)
}

/// Echoes through new connections until the pipe is full (less room left
/// than one log line), then `more` connections after that; each echo is
/// bounded by the sockets' timeouts, so a server blocked on its log fails here.
fn fill(addr: SocketAddr, reader: &PipeReader, capacity: usize, more: usize) {
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut n = 0u64;
    while queued(reader) + 256 < capacity {
        assert!(
            Instant::now() < deadline,
            "the pipe never filled: {} of {capacity} bytes after {n} connections",
            queued(reader)
        );
        round_trip(&mut connect(addr), &payload(n, 64));
        n += 1;
    }
    for i in 0..more {
        let seed = n + u64::try_from(i).unwrap();
        round_trip(&mut connect(addr), &payload(seed, 64));
    }
}

#[test]
fn a_stderr_nobody_reads_neither_stops_the_echo_nor_a_sigterm() {
    let (reader, writer, capacity) = small_pipe();
    let (mut p, addr) = serve_into(writer, &["--grace", "1s"]);
    fill(addr, &reader, capacity, 200);
    // (a) The log sink is stuck; the service is not.
    let mut c = connect(addr);
    round_trip(&mut c, b"still echoing with a stuck log");
    drop(c);
    assert!(
        queued(&reader) + 256 >= capacity,
        "the pipe drained: the test did not stall the log"
    );
    // (b) A SIGTERM stops it, and the exit does not wait for the pipe.
    p.signal("TERM");
    assert_eq!(p.wait_exit(STOP_LIMIT).code(), Some(0));
    drop(reader);
}

/// Two signals while the sink is stuck: the second stops at once (exit
/// 130). A client holds a connection open, so the graceful stop cannot end
/// before it; both signals are sent while the process is stopped
/// (SIGSTOP), so both are pending when it resumes.
#[test]
fn a_stderr_nobody_reads_does_not_hold_the_second_signal() {
    let (reader, writer, capacity) = small_pipe();
    let (mut p, addr) = serve_into(writer, &["--grace", "60s"]);
    fill(addr, &reader, capacity, 50);
    let mut held = connect(addr);
    round_trip(&mut held, b"held open");
    let pid = libc::pid_t::try_from(p.id()).unwrap();
    for sig in [libc::SIGSTOP, libc::SIGTERM, libc::SIGINT, libc::SIGCONT] {
        // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }
    assert_eq!(p.wait_exit(ABORT_LIMIT).code(), Some(130));
    drop(held);
    drop(reader);
}

/// `--inetd` logs to stderr too (when it is not the socket): a UDP service
/// whose stderr nobody reads still echoes, and two signals still stop it
/// at once (exit 130). Oversize datagrams, each logged at debug as
/// dropped, fill the pipe.
#[test]
fn inetd_with_a_stderr_nobody_reads_still_echoes_and_stops() {
    let (reader, writer, capacity) = small_pipe();
    let server = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args([
        "serve",
        "--inetd",
        "--idle-timeout",
        "60s",
        "--udp-max-datagram",
        "100",
    ])
    .env("RUST_LOG", "debug")
    .stdin(std::os::fd::OwnedFd::from(server))
    .stdout(Stdio::null())
    .stderr(writer);
    let mut p = Proc::spawn_with(cmd);
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut b = [0u8; 128];
    let echo = |what: &[u8], b: &mut [u8]| {
        c.send_to(what, addr).unwrap();
        let (n, _) = c.recv_from(b).expect("echo");
        assert_eq!(&b[..n], what);
    };
    echo(b"up?", &mut b);
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut sent = 0;
    while queued(&reader) + 256 < capacity || sent < 1000 {
        assert!(Instant::now() < deadline, "the pipe never filled");
        c.send_to(&[7u8; 101], addr).unwrap();
        sent += 1;
        if sent % 50 == 0 {
            // Paced by echoes, so the datagrams are not lost in the socket buffer.
            echo(b"paced", &mut b);
        }
    }
    echo(b"still echoing with a stuck log", &mut b);
    let pid = libc::pid_t::try_from(p.id()).unwrap();
    for sig in [libc::SIGSTOP, libc::SIGTERM, libc::SIGINT, libc::SIGCONT] {
        // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }
    assert_eq!(p.wait_exit(ABORT_LIMIT).code(), Some(130));
    drop(reader);
}

/// `ricochet serve` on UDP 127.0.0.1:0, logging at debug into `stderr`;
/// each datagram over 100 bytes is dropped with one debug line.
fn serve_udp_into(stderr: io::PipeWriter) -> (Proc, SocketAddr) {
    let udp = ["--udp", "127.0.0.1:0", "--udp-max-datagram", "100"];
    serve_logging_into(stderr, &udp)
}

/// A UDP client of `server`, echoing `what` through it.
struct UdpClient {
    socket: std::net::UdpSocket,
    server: SocketAddr,
}

impl UdpClient {
    fn new(server: SocketAddr) -> UdpClient {
        let socket = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        UdpClient { socket, server }
    }

    fn echo(&self, what: &[u8]) {
        let mut b = [0u8; 128];
        self.socket.send_to(what, self.server).unwrap();
        let (n, _) = self.socket.recv_from(&mut b).expect("echo");
        assert_eq!(&b[..n], what);
    }

    /// Sends `n` oversize datagrams (one debug line each), paced by echoes
    /// so that none is lost in the socket buffer.
    fn flood(&self, n: usize) {
        for sent in 1..=n {
            self.socket.send_to(&[7u8; 101], self.server).unwrap();
            if sent % 50 == 0 {
                self.echo(b"paced");
            }
        }
    }
}

/// More lines than the queue holds (16384, `QUEUE_LINES`) while stderr
/// is stalled: the rest are dropped, the service goes on, and once stderr
/// is read again one warning says how many lines were lost.
#[test]
fn lines_dropped_while_stderr_stalled_are_counted_once_it_is_read_again() {
    let (reader, writer, capacity) = small_pipe();
    let (mut p, addr) = serve_udp_into(writer);
    let c = UdpClient::new(addr);
    c.echo(b"up?");
    c.flood(20_000);
    assert!(
        queued(&reader) + 256 >= capacity,
        "the pipe drained: the test did not stall the log"
    );
    c.echo(b"still echoing with a stuck log");
    // Read stderr again, until the warning comes.
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in io::BufRead::lines(io::BufReader::new(reader)) {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let warning = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("were dropped") => break line,
            Ok(_) => {}
            Err(e) => panic!("no warning of dropped lines: {e}"),
        }
    };
    let lost: u64 = warning
        .split("stderr was not read fast enough: ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{warning}"));
    assert!(lost > 0, "{warning}");
    c.echo(b"still echoing");
    p.signal("TERM");
    assert_eq!(p.wait_exit(STOP_LIMIT).code(), Some(0));
}

/// A SIGTERM while stderr is stalled and the queue full: the process exits
/// (status 0), leaving the queued lines, and says nothing on stdout
/// (tracing-appender's guard, dropped with the queue full, prints "Failed
/// to send shutdown signal to logging worker" there).
#[test]
fn a_full_log_queue_at_exit_is_left_without_a_word_on_stdout() {
    let (reader, writer, _) = small_pipe();
    let (mut p, addr) = serve_udp_into(writer);
    let c = UdpClient::new(addr);
    c.flood(20_000);
    c.echo(b"still echoing with a full queue");
    p.signal("TERM");
    assert_eq!(p.wait_exit(STOP_LIMIT).code(), Some(0));
    let mut stdout = Vec::new();
    loop {
        match p.stdout.recv_timeout(IO_TIMEOUT) {
            Ok(line) => stdout.push(line),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
            Err(e) => panic!("stdout still open: {e}"),
        }
    }
    assert!(stdout.is_empty(), "after the listening line: {stdout:?}");
    drop(reader);
}

/// An error found once logging runs (here `--mode lines` with UDP alone,
/// a usage error) goes through the log queue like any line: with stderr
/// already full, the process still exits (status 2) instead of blocking
/// on the write.
#[test]
fn an_error_exit_with_a_full_stderr_does_not_block_on_it() {
    let (reader, mut writer, capacity) = small_pipe();
    io::Write::write_all(&mut writer, &vec![b'.'; capacity]).unwrap();
    assert!(queued(&reader) >= capacity, "the pipe is not full");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--udp", "127.0.0.1:0", "--mode", "lines"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(writer);
    let mut p = Proc::spawn_with(cmd);
    assert_eq!(p.wait_exit(STOP_LIMIT).code(), Some(2));
    drop(reader);
}
