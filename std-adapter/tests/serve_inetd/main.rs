//! `ricochet serve --inetd`: the socket on standard input, served through
//! the core's session (stream `nowait`) or datagram policy (UDP `wait`).
//! First with sockets this test hands over itself, then under a real
//! xinetd that the test starts on a loopback port and kills by PID
//! ([`xinetd`]).

#[path = "../daemon_support/mod.rs"]
mod daemon_support;
#[path = "../serve_support/mod.rs"]
mod serve_support;

mod xinetd;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use daemon_support::{bin, require, wait_until};
use serve_support::{IO_TIMEOUT, connect, output_within, read_to_eof, round_trip};

/// `ricochet serve --inetd ARGS` with `socket` as stdin and stdout, and as
/// stderr too if `stderr_on_socket` (as inetd does); else stderr is piped.
fn inetd_child(socket: OwnedFd, args: &[&str], stderr_on_socket: bool) -> Child {
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--inetd"])
        .args(args)
        .env("RUST_LOG", "debug");
    let out = socket.try_clone().unwrap();
    if stderr_on_socket {
        cmd.stderr(Stdio::from(socket.try_clone().unwrap()));
    } else {
        cmd.stderr(Stdio::piped());
    }
    cmd.stdin(Stdio::from(socket)).stdout(Stdio::from(out));
    cmd.spawn().expect("spawn ricochet serve --inetd")
}

fn wait_child(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("ricochet --inetd did not exit within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A connected TCP pair: (our end, the server's end).
fn tcp_pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let ours = connect(l.local_addr().unwrap());
    let (theirs, _) = l.accept().unwrap();
    (ours, theirs)
}

#[test]
fn inetd_tcp_connection_is_echoed_through_the_session_and_half_closed() {
    let (mut ours, theirs) = tcp_pair();
    let shared = theirs.try_clone().unwrap();
    let mut child = inetd_child(OwnedFd::from(theirs), &["--mode", "lines"], false);
    drop(child.stdin.take());
    round_trip(&mut ours, b"first line\n");
    // The server's end (one socket, shared with the child) has Nagle off,
    // so no small echo waits for the peer's delayed ACK.
    assert!(
        shared.nodelay().unwrap(),
        "TCP_NODELAY on the served socket"
    );
    // A held partial line is echoed at FIN, like any session in lines mode.
    ours.write_all(b"partial").unwrap();
    ours.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut ours).unwrap(), b"partial");
    assert!(wait_child(&mut child, IO_TIMEOUT).success());
}

/// systemd with `Accept=yes` passes the connection as descriptor 3
/// (`LISTEN_FDS=1`), not on standard input (that is /dev/null unless the
/// unit says `StandardInput=socket`): `--inetd` serves it from there.
#[test]
fn inetd_serves_the_connection_systemd_accept_yes_passes_as_fd_3() {
    let (mut ours, theirs) = tcp_pair();
    let mut p = daemon_support::serve_activated(
        &["--inetd", "--mode", "lines"],
        vec![OwnedFd::from(theirs)],
        None,
        &[],
    );
    round_trip(&mut ours, b"through LISTEN_FDS\n");
    ours.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut ours).unwrap().is_empty());
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// The same through the real tool: `systemd-socket-activate --accept`
/// listens, accepts, and starts one server per connection with it.
#[test]
fn inetd_under_systemd_socket_activate_accept_echoes_each_connection() {
    require("systemd-socket-activate", "systemd");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("--accept")
        .arg("-l")
        .arg(&path)
        .arg("--")
        .arg(bin())
        .args(["serve", "--inetd"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut tool = cmd.spawn().expect("spawn systemd-socket-activate");
    // The tool binds, then listens: its file appears at the bind, and a
    // connection before the listen is refused.
    wait_until(
        IO_TIMEOUT,
        "systemd-socket-activate's socket listening",
        || daemon_support::unix_listening(&path),
    );
    for msg in [&b"first connection"[..], b"second connection"] {
        let mut c = UnixStream::connect(&path).unwrap();
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        round_trip(&mut c, msg);
        c.shutdown(Shutdown::Write).unwrap();
        assert!(read_to_eof(&mut c).unwrap().is_empty());
    }
    let _ = tool.kill();
    let _ = tool.wait();
}

#[test]
fn inetd_unix_connection_is_echoed_and_idle_timeout_closes_it() {
    let (mut ours, theirs) = UnixStream::pair().unwrap();
    ours.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut child = inetd_child(OwnedFd::from(theirs), &["--idle-timeout", "300ms"], false);
    round_trip(&mut ours, &[0u8, 1, 2, 255, b'\n', 7]);
    // Then silence: the session closes it gracefully after the idle timeout.
    let t = Instant::now();
    assert!(read_to_eof(&mut ours).unwrap().is_empty());
    assert!(
        t.elapsed() >= Duration::from_millis(250),
        "closed early: {:?}",
        t.elapsed()
    );
    assert!(wait_child(&mut child, IO_TIMEOUT).success());
}

#[test]
fn inetd_over_long_line_resets_the_connection() {
    let (mut ours, theirs) = tcp_pair();
    let mut child = inetd_child(
        OwnedFd::from(theirs),
        &["--mode", "lines", "--buffer-size", "64"],
        false,
    );
    ours.write_all(&[b'z'; 200]).unwrap();
    assert_next_read_is_a_reset(&mut ours);
    assert!(wait_child(&mut child, IO_TIMEOUT).success());
}

/// The next read on `ours` finds the connection reset (no data, no FIN).
fn assert_next_read_is_a_reset(ours: &mut TcpStream) {
    let mut b = [0u8; 256];
    let got = ours.read(&mut b);
    assert!(
        matches!(&got, Err(e) if e.kind() == ErrorKind::ConnectionReset),
        "expected a reset, got {got:?}"
    );
}

#[test]
fn inetd_abort_line_says_what_was_echoed_before_the_reset() {
    let (mut ours, theirs) = tcp_pair();
    let mut child = inetd_child(
        OwnedFd::from(theirs),
        &["--mode", "lines", "--buffer-size", "64"],
        false,
    );
    ours.write_all(b"hello\n").unwrap();
    ours.write_all(&[b'z'; 200]).unwrap();
    let mut back = Vec::new();
    let end = loop {
        let mut b = [0u8; 256];
        match ours.read(&mut b) {
            Ok(0) => break None,
            Ok(n) => back.extend_from_slice(&b[..n]),
            Err(e) => break Some(e.kind()),
        }
    };
    assert_eq!(back, b"hello\n");
    assert_eq!(end, Some(ErrorKind::ConnectionReset));
    assert!(wait_child(&mut child, IO_TIMEOUT).success());
    let err = stderr_of(&mut child);
    let line = err
        .lines()
        .find(|l| l.contains("connection aborted"))
        .unwrap_or_else(|| panic!("no abort line in {err}"));
    assert!(
        line.contains("bytes_out=6") && line.contains("bytes_in="),
        "{line}"
    );
}

/// inetd puts the socket on stderr too: nothing but echo may reach it,
/// even with debug logs asked for and the root warning due.
#[test]
fn inetd_with_stderr_on_the_socket_sends_nothing_but_echo() {
    let (mut ours, theirs) = tcp_pair();
    let mut child = inetd_child(OwnedFd::from(theirs), &[], true);
    ours.write_all(b"only this comes back").unwrap();
    ours.shutdown(Shutdown::Write).unwrap();
    assert_eq!(read_to_eof(&mut ours).unwrap(), b"only this comes back");
    assert!(wait_child(&mut child, IO_TIMEOUT).success());
}

fn sigterm(child: &Child) {
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
}

fn stderr_of(child: &mut Child) -> String {
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    err
}

/// Options of the server's own listeners and workers do nothing here:
/// each given one is warned of (they were dropped without a word), and
/// the connection is still served.
#[test]
fn inetd_warns_of_each_listener_option_it_does_not_use() {
    let (mut ours, theirs) = tcp_pair();
    let mut child = inetd_child(
        OwnedFd::from(theirs),
        &[
            "--threads",
            "8",
            "--stats-interval",
            "1s",
            "--max-connections",
            "5",
        ],
        false,
    );
    round_trip(&mut ours, b"still echoed");
    ours.shutdown(Shutdown::Write).unwrap();
    assert!(read_to_eof(&mut ours).unwrap().is_empty());
    let status = wait_child(&mut child, IO_TIMEOUT);
    let err = stderr_of(&mut child);
    assert!(status.success(), "{status:?}: {err}");
    for flag in ["--threads", "--stats-interval", "--max-connections"] {
        assert!(
            err.contains(&format!("{flag} has no effect with --inetd")),
            "{flag}: {err}"
        );
    }
    assert!(!err.contains("--mode has no effect"), "{err}");
}

/// The first SIGTERM ends the connection as `ricochet serve` ends its own:
/// gracefully, with FIN, and exit 0 (without handling it the process died
/// of the signal).
#[test]
fn inetd_tcp_first_signal_closes_the_session_gracefully_and_exits_0() {
    let (mut ours, theirs) = tcp_pair();
    let mut child = inetd_child(OwnedFd::from(theirs), &["--mode", "lines"], false);
    round_trip(&mut ours, b"first line\n");
    sigterm(&child);
    assert!(read_to_eof(&mut ours).unwrap().is_empty());
    ours.shutdown(Shutdown::Write).unwrap();
    let status = wait_child(&mut child, IO_TIMEOUT);
    let err = stderr_of(&mut child);
    assert!(status.success(), "{status:?}: {err}");
    assert!(
        err.contains("SIGTERM") && err.contains("closing the connection gracefully"),
        "{err}"
    );
}

/// `--grace 0`: the first signal resets the connection at once.
#[test]
fn inetd_tcp_signal_with_no_grace_resets_the_connection() {
    let (mut ours, theirs) = tcp_pair();
    let mut child = inetd_child(OwnedFd::from(theirs), &["--grace", "0"], false);
    round_trip(&mut ours, b"echoed");
    sigterm(&child);
    assert_next_read_is_a_reset(&mut ours);
    assert!(wait_child(&mut child, IO_TIMEOUT).success());
}

/// A second signal stops at once, exit 130, even while the graceful close
/// waits for the peer (here: lingering for its FIN, which never comes).
#[test]
fn inetd_tcp_second_signal_stops_at_once_with_exit_130() {
    let (mut ours, theirs) = tcp_pair();
    // A short drain timeout only shortens the server's blocking calls
    // (100 ms), well inside its 2 s linger.
    let mut child = inetd_child(OwnedFd::from(theirs), &["--drain-timeout", "200ms"], false);
    round_trip(&mut ours, b"echoed");
    sigterm(&child);
    // Its FIN: the first signal was handled.
    assert!(read_to_eof(&mut ours).unwrap().is_empty());
    sigterm(&child);
    let status = wait_child(&mut child, IO_TIMEOUT);
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("second signal"), "{err}");
}

#[test]
fn inetd_udp_socket_echoes_datagrams_until_idle() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let mut child = inetd_child(
        OwnedFd::from(server),
        &["--idle-timeout", "500ms", "--udp-max-datagram", "100"],
        false,
    );
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut b = [0u8; 512];
    for d in [&b"one"[..], &[9u8; 100]] {
        c.send_to(d, addr).unwrap();
        let (n, from) = c.recv_from(&mut b).unwrap();
        assert_eq!((&b[..n], from), (d, addr));
    }
    // The core's policy applies: oversize is dropped, never truncated.
    c.send_to(&[1u8; 101], addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    assert!(c.recv_from(&mut b).is_err(), "oversize datagram echoed");
    // Idle for 500 ms: it exits, handing the socket back to inetd.
    assert!(wait_child(&mut child, IO_TIMEOUT).success());
}

/// The idle timeout counts from the last datagram, not from the start:
/// datagrams that keep coming for longer than it keep the service up, and
/// once they stop it waits the whole timeout before handing the socket
/// back. (A short drain timeout makes its check run every 50 ms.)
#[test]
fn inetd_udp_idle_timeout_counts_from_the_last_datagram() {
    let idle = Duration::from_secs(1);
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let args = ["--idle-timeout", "1s", "--drain-timeout", "100ms"];
    let mut child = inetd_child(OwnedFd::from(server), &args, false);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut b = [0u8; 16];
    let start = Instant::now();
    let mut sent = 0u32;
    while start.elapsed() < idle * 5 / 2 {
        sent += 1;
        c.send_to(&sent.to_be_bytes(), addr).unwrap();
        let (n, _) = c
            .recv_from(&mut b)
            .expect("echoed while datagrams keep coming");
        assert_eq!(&b[..n], sent.to_be_bytes());
    }
    let last = Instant::now();
    assert!(wait_child(&mut child, IO_TIMEOUT).success());
    let quiet = last.elapsed();
    assert!(
        quiet >= idle / 2,
        "exited {quiet:?} after the last datagram, before the {idle:?} idle timeout"
    );
}

/// The UDP service stops as `ricochet serve` does: two signals mean stop
/// at once, exit 130 (it exited 0 whatever came). Both are sent while the
/// process is stopped (SIGSTOP), so both are pending when it resumes and
/// neither can be taken for the end of a graceful stop.
#[test]
fn inetd_udp_second_signal_stops_at_once_with_exit_130() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = server.local_addr().unwrap();
    let mut child = inetd_child(OwnedFd::from(server), &["--idle-timeout", "30s"], false);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut b = [0u8; 64];
    c.send_to(b"up?", addr).unwrap();
    let (n, _) = c.recv_from(&mut b).unwrap();
    assert_eq!(&b[..n], b"up?", "serving, so watching signals");
    let pid = libc::pid_t::try_from(child.id()).unwrap();
    for sig in [libc::SIGSTOP, libc::SIGTERM, libc::SIGINT, libc::SIGCONT] {
        // SAFETY: kill(2) on the PID of a child this test started and has not reaped.
        assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
    }
    let status = wait_child(&mut child, IO_TIMEOUT);
    let err = stderr_of(&mut child);
    assert_eq!(status.code(), Some(130), "{err}");
    assert!(err.contains("second signal"), "{err}");
}

#[test]
fn inetd_refuses_what_is_not_a_connection_with_the_fix() {
    let out = output_within(Command::new(bin()).args(["serve", "--inetd"]), IO_TIMEOUT);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("standard input is not a socket") && err.contains("xinetd"),
        "{err}"
    );

    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--inetd"])
        .stdin(Stdio::from(OwnedFd::from(listener)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(wait_child(&mut child, IO_TIMEOUT).code(), Some(2));
    let mut err = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut err)
        .unwrap();
    assert!(
        err.contains("listening socket") && err.contains("nowait"),
        "{err}"
    );

    // A Unix datagram socket is no UDP service: refused, not served.
    let (dgram, _peer) = std::os::unix::net::UnixDatagram::pair().unwrap();
    let mut child = Command::new(bin())
        .args(["serve", "--inetd"])
        .stdin(Stdio::from(OwnedFd::from(dgram)))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    assert_eq!(wait_child(&mut child, IO_TIMEOUT).code(), Some(2));
    let err = stderr_of(&mut child);
    assert!(
        err.contains("neither a connected stream socket nor a UDP socket"),
        "{err}"
    );
}
