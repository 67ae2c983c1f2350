//! Readiness and shutdown for a service manager (`Type=notify`):
//! `READY=1` once every listener is up, `STOPPING=1` on shutdown,
//! `WATCHDOG=1` every half `WATCHDOG_USEC`. A notify socket of our own
//! stands in for systemd's.

mod daemon_support;
mod serve_support;

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use daemon_support::{NotifySocket, bin, http_get};
use serve_support::{IO_TIMEOUT, Proc, STOP_TIMEOUT, connect, round_trip};

fn serve_notifying(args: &[&str], notify: &NotifySocket, envs: &[(&str, &str)]) -> Proc {
    let mut cmd = Command::new(bin());
    cmd.arg("serve")
        .args(args)
        .env("NOTIFY_SOCKET", notify.env())
        .envs(envs.iter().copied());
    Proc::spawn(cmd)
}

#[test]
fn ready_comes_once_every_listener_is_up_and_stopping_at_shutdown() {
    let notify = NotifySocket::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ready.sock");
    let mut p = serve_notifying(
        &[
            "--tcp",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--unix",
            path.to_str().unwrap(),
            "--metrics",
            "127.0.0.1:0",
        ],
        &notify,
        &[],
    );
    let ready = notify.expect("READY=1", IO_TIMEOUT);
    // By READY=1 every endpoint is printed and accepts at once.
    let lines = p.listening(4);
    let addr = |kind: &str| -> SocketAddr {
        lines
            .iter()
            .find(|(k, _)| k == kind)
            .unwrap()
            .1
            .parse()
            .unwrap()
    };
    assert!(
        ready.contains(&format!("STATUS=echo on tcp {}", addr("tcp"))),
        "{ready}"
    );
    round_trip(&mut connect(addr("tcp")), b"ready means ready");
    let mut u = UnixStream::connect(&path).expect("unix listener up at READY=1");
    u.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    round_trip(&mut u, b"unix too");
    let (status, _, _) = http_get(addr("metrics"), "/metrics", None);
    assert_eq!(status, "HTTP/1.1 200 OK");
    p.signal("TERM");
    notify.expect("STOPPING=1", IO_TIMEOUT);
    assert!(p.wait_exit(IO_TIMEOUT).success());
    // Exactly one READY and one STOPPING: nothing else follows.
    assert_eq!(notify.next(Duration::from_millis(200)), None);
}

/// Sends until the server takes no more for half a second (its echo
/// stuck behind a client that does not read, every buffer on the way
/// full); returns how many bytes were sent.
fn send_until_stuck(s: &mut std::net::TcpStream) -> usize {
    s.set_write_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let chunk = [b'd'; 64 * 1024];
    let mut sent = 0;
    loop {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return sent;
            }
            Err(e) => panic!("write: {e}"),
        }
    }
}

#[test]
fn stopping_is_notified_at_the_signal_while_a_connection_still_drains() {
    let notify = NotifySocket::new();
    // The shutdown waits for the echo to be taken, longer than the test.
    let mut p = serve_notifying(&["--tcp", "127.0.0.1:0", "--grace", "300s"], &notify, &[]);
    notify.expect("READY=1", IO_TIMEOUT);
    let addr: SocketAddr = p.listening(1)[0].1.parse().unwrap();
    let mut client = connect(addr);
    let sent = send_until_stuck(&mut client);
    p.signal("TERM");
    notify.expect("STOPPING=1", IO_TIMEOUT);
    // Only now is the echo taken, the connection closed and the drain over.
    let mut echoed = Vec::new();
    client
        .read_to_end(&mut echoed)
        .expect("the whole echo, then FIN");
    assert_eq!(echoed.len(), sent);
    assert!(p.wait_exit(IO_TIMEOUT).success());
    assert_eq!(
        notify.next(Duration::from_millis(200)),
        None,
        "one STOPPING"
    );
}

#[test]
fn watchdog_is_pinged_every_half_period_when_asked() {
    let notify = NotifySocket::new();
    let mut p = serve_notifying(
        &["--tcp", "127.0.0.1:0", "--threads", "2"],
        &notify,
        &[("WATCHDOG_USEC", "200000")],
    );
    notify.expect("READY=1", IO_TIMEOUT);
    let start = Instant::now();
    for _ in 0..4 {
        notify.expect("WATCHDOG=1", IO_TIMEOUT);
    }
    // Four pings at ~100 ms intervals: well under the bound, and not all at once.
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "pings too fast: {took:?}"
    );
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn no_watchdog_pings_without_watchdog_usec_or_for_another_pid() {
    for envs in [
        &[][..],
        &[("WATCHDOG_USEC", "100000"), ("WATCHDOG_PID", "1")][..],
    ] {
        let notify = NotifySocket::new();
        let mut p = serve_notifying(&["--tcp", "127.0.0.1:0"], &notify, envs);
        notify.expect("READY=1", IO_TIMEOUT);
        // Several periods of 100 ms pass without a ping.
        if let Some(msg) = notify.next(Duration::from_millis(500)) {
            panic!("{envs:?}: unexpected notification {msg:?}");
        }
        p.signal("TERM");
        assert!(p.wait_exit(IO_TIMEOUT).success());
    }
}

/// What the watchdog pings on: every worker's event loop turning.
#[test]
fn controller_is_responsive_while_workers_turn_and_not_after_they_exit() {
    let handle = serve_support::start(serve_support::tcp_config());
    let controller = handle.controller();
    assert!(
        controller.responsive(IO_TIMEOUT),
        "two idle workers answer a wakeup"
    );
    handle.shutdown();
    handle.join_within(STOP_TIMEOUT).unwrap();
    assert!(
        !controller.responsive(Duration::from_millis(100)),
        "exited workers do not turn"
    );
}

/// A notify socket that is gone (the manager restarted, a stale
/// `NOTIFY_SOCKET`): READY=1, every watchdog ping and STOPPING=1 fail, and
/// only the first failure is logged.
#[test]
fn unreachable_notify_socket_is_warned_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone.sock");
    let mut cmd = Command::new(bin());
    cmd.args(["serve", "--tcp", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &gone)
        .env("WATCHDOG_USEC", "100000");
    let mut p = Proc::spawn(cmd);
    p.listening(1);
    p.wait_stderr("cannot notify the service manager", IO_TIMEOUT);
    p.signal("TERM");
    let rest = p.stderr_until("stopped", IO_TIMEOUT);
    assert!(p.wait_exit(IO_TIMEOUT).success());
    assert!(
        !rest.iter().any(|l| l.contains("cannot notify")),
        "warned again: {rest:#?}"
    );
}
