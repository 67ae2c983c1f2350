//! `--udp-receive-buffer`: each UDP socket asks the kernel for a 4 MiB
//! receive queue by default (a flood then fills it in milliseconds rather
//! than in a few hundred datagrams); a queue the kernel caps is reported
//! with the fix, and the server serves regardless. The library's own tests
//! (`serve::listener`) read the socket option back.

// SO_RCVBUFFORCE, /proc and setpriv are Linux's.
#![cfg(target_os = "linux")]

mod daemon_support;
mod serve_support;

use std::net::UdpSocket;
use std::process::Command;

use daemon_support::require;
use serve_support::{IO_TIMEOUT, Proc, STOP_TIMEOUT, is_root, output_within, rmem_max, with_io};

/// `ricochet serve --udp 127.0.0.1:0 ARGS` with debug logs, as `prefix`
/// (e.g. setpriv) if given.
fn serve_udp(prefix: &[&str], args: &[&str]) -> Proc {
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(env!("CARGO_BIN_EXE_ricochet"));
            c
        }
        None => Command::new(env!("CARGO_BIN_EXE_ricochet")),
    };
    cmd.args(["serve", "--udp", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "ricochet=debug");
    Proc::spawn(cmd)
}

/// One datagram to the server's UDP endpoint and its echo.
fn echo_datagram(p: &Proc) {
    let addr = &p.listening(1)[0].1;
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    client.send_to(b"queue", addr).unwrap();
    let mut buf = [0u8; 16];
    let (n, _) = client.recv_from(&mut buf).expect("echo");
    assert_eq!(&buf[..n], b"queue");
}

/// Stops the server gracefully; returns its stderr lines not yet read, up
/// to its last ("stopped").
fn stop(mut p: Proc) -> String {
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
    let mut lines = Vec::new();
    // The reader thread ends at EOF: every line, then a disconnect.
    while let Ok(line) = p.stderr.recv_timeout(IO_TIMEOUT) {
        lines.push(line);
    }
    lines.join("\n")
}

#[test]
fn udp_socket_gets_a_4_mib_receive_queue_by_default_as_root() {
    // CI runs as root: say so, never skip.
    assert!(is_root(), "this test needs root (SO_RCVBUFFORCE)");
    let p = serve_udp(&[], &[]);
    let line = p.wait_stderr("UDP receive queue", IO_TIMEOUT);
    assert!(line.contains("bytes=4194304"), "{line}");
    echo_datagram(&p);
    stop(p);
}

#[test]
fn udp_receive_queue_past_the_kernel_cap_is_warned_with_the_fix_and_the_server_serves() {
    assert!(
        is_root(),
        "this test runs the server as nobody through setpriv (needs root)"
    );
    require("setpriv", "util-linux");
    // Without CAP_NET_ADMIN the kernel grants at most rmem_max.
    let want = (2 * rmem_max()).to_string();
    let p = serve_udp(
        &[
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
        ],
        &["--udp-receive-buffer", &want],
    );
    let line = p.wait_stderr("UDP receive queue", IO_TIMEOUT);
    assert!(
        line.contains("WARN")
            && line.contains(&format!("not the {want} asked for"))
            && line.contains("sysctl -w net.core.rmem_max=")
            // The server's own socket: its fixes, not a socket unit's.
            && line.contains("start as root")
            && !line.contains("ReceiveBuffer="),
        "{line}"
    );
    echo_datagram(&p);
    stop(p);
}

#[test]
fn udp_receive_buffer_off_asks_nothing_of_the_kernel() {
    let p = serve_udp(&[], &["--udp-receive-buffer", "off"]);
    echo_datagram(&p);
    // The start and stop lines came; none about the queue (it is said
    // before "listening" when asked for).
    let err = stop(p);
    assert!(err.contains("stopped"), "{err}");
    assert!(!err.contains("UDP receive queue"), "{err}");
}

#[test]
fn udp_receive_buffer_out_of_range_is_a_usage_error() {
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_ricochet")).args([
            "serve",
            "--udp",
            "127.0.0.1:0",
            "--udp-receive-buffer",
            "3GiB",
        ]),
        IO_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("2 GiB - 1"), "{err}");
}

/// The queue `Server::bind_with` leaves on an inherited UDP socket whose
/// queue was set to `preset` bytes before.
fn inherited_queue_after_bind(preset: usize) -> usize {
    use ricochet::serve::{InheritedSocket, Server, ServerConfig};
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    // As systemd does for a socket unit's `ReceiveBuffer=` (root: past rmem_max).
    let before = ricochet::serve::raise_udp_receive_buffer(&socket, preset).unwrap();
    assert!(before >= preset, "the preset took: {before} < {preset}");
    let config = ServerConfig {
        tcp: Vec::new(),
        udp: Vec::new(),
        ..ServerConfig::default()
    };
    let server = Server::bind_with(config, vec![InheritedSocket::Udp(socket)]).expect("bind");
    let queues = server.udp_receive_buffers();
    assert_eq!(queues.len(), 1);
    *queues[0].1.as_ref().expect("read back")
}

#[test]
fn inherited_udp_socket_with_a_larger_queue_keeps_it() {
    assert!(
        is_root(),
        "this test presets a queue past rmem_max (needs root)"
    );
    let preset = 16 << 20;
    assert!(
        inherited_queue_after_bind(preset) >= preset,
        "the service manager's queue was shrunk"
    );
}

#[test]
fn inherited_udp_socket_with_a_small_queue_gets_the_default() {
    assert!(is_root(), "SO_RCVBUFFORCE needs root");
    let got = inherited_queue_after_bind(64 << 10);
    assert!(
        got >= ricochet::serve::DEFAULT_UDP_RECEIVE_BUFFER,
        "got {got}"
    );
}

/// The value of the sample `name` (with its labels) in a scrape of `metrics`.
fn scrape(metrics: &str, name: &str) -> u64 {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(metrics).expect("metrics");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut body = String::new();
    s.read_to_string(&mut body).expect("scrape");
    body.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// Datagrams the kernel drops because the server's receive queue is full
/// never reach the server's own counters; the kernel's count of them
/// (`SO_RXQ_OVFL`) must, or a probe reports loss that the metrics, the
/// stats line and the `stopped` line all deny. Every datagram sent on
/// loopback is then either received or counted as dropped there.
#[test]
fn datagrams_a_full_receive_queue_dropped_are_counted() {
    let p = Proc::serve(&[
        "--udp",
        "127.0.0.1:0",
        "--metrics",
        "127.0.0.1:0",
        "--threads",
        "1",
        "--udp-receive-buffer",
        "off",
    ]);
    let lines = p.listening(2);
    let addr_of = |kind: &str| lines.iter().find(|(k, _)| k == kind).unwrap().1.clone();
    let (udp, metrics) = (addr_of("udp"), addr_of("metrics"));
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // Stopped, the server reads nothing: the kernel's queue (208 KiB,
    // a few hundred small datagrams) overflows.
    p.signal("STOP");
    let flood: u64 = 5000;
    for _ in 0..flood {
        client.send_to(&[0u8; 64], &udp).unwrap();
    }
    p.signal("CONT");
    // A datagram queued after the drops carries their count; its echo says
    // it was read, after everything queued before it. Until the queue has
    // room again one may be dropped too: send another.
    let mut sent = flood;
    let mut buf = [0u8; 64];
    client
        .set_read_timeout(Some(std::time::Duration::from_millis(200)))
        .unwrap();
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        assert!(std::time::Instant::now() < deadline, "no echo of a marker");
        client.send_to(b"marker", &udp).unwrap();
        sent += 1;
        let mut echoed_marker = false;
        while let Ok((n, _)) = client.recv_from(&mut buf) {
            if &buf[..n] == b"marker" {
                echoed_marker = true;
                break;
            }
        }
        if echoed_marker {
            break;
        }
    }
    let received = r#"ricochet_datagrams_received_total{transport="udp"}"#;
    let queue = r#"ricochet_datagrams_queue_dropped_total{transport="udp"}"#;
    // The worker publishes its counters at the end of the turn that echoed.
    let (mut got, mut dropped) = (0, 0);
    while std::time::Instant::now() < deadline {
        (got, dropped) = (scrape(&metrics, received), scrape(&metrics, queue));
        if got + dropped == sent {
            break;
        }
    }
    assert!(
        dropped > 0,
        "the queue never overflowed: {got} of {sent} received"
    );
    assert_eq!(got + dropped, sent, "received {got}, queue drops {dropped}");
    let log = stop(p);
    assert!(
        log.contains(&format!("udp_queue_dropped={dropped}")),
        "{log}"
    );
}

/// A socket handed over (systemd across restarts, an inetd) carries the
/// kernel's drop total from before this server had it; the count each
/// datagram brings starts there, so the server counted every earlier
/// drop as its own.
#[test]
fn drops_before_an_inherited_socket_was_handed_over_are_not_counted() {
    use ricochet::serve::{InheritedSocket, Server, ServerConfig};
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // Nobody reads the socket yet: its default queue (a few hundred small
    // datagrams) overflows.
    for _ in 0..5000 {
        client.send_to(&[0u8; 64], addr).unwrap();
    }
    // Emptied again (so the marker below finds room): the drops stay in
    // the kernel's count.
    socket.set_nonblocking(true).unwrap();
    let mut queued = 0;
    while socket.recv_from(&mut [0u8; 64]).is_ok() {
        queued += 1;
    }
    assert!(queued < 5000, "nothing was dropped: {queued} queued");
    socket.set_nonblocking(false).unwrap();
    let config = ServerConfig {
        tcp: Vec::new(),
        udp: Vec::new(),
        udp_rate: None,
        ..ServerConfig::default()
    };
    let server = Server::bind_with(config, vec![InheritedSocket::Udp(socket)]).expect("bind");
    let handle = server.spawn().expect("spawn");
    client.send_to(b"marker", addr).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = client.recv_from(&mut buf).expect("the marker's echo");
    assert_eq!(&buf[..n], b"marker");
    let stats = handle.stats_source();
    handle.shutdown();
    handle.join_within(STOP_TIMEOUT).expect("join");
    let s = stats.snapshot();
    assert_eq!(s.udp.received, 1, "the marker: {s:?}");
    assert_eq!(
        s.udp_queue_drops, 0,
        "drops from before the handover: {s:?}"
    );
}

/// Thousands of datagrams already queued when the server takes the socket
/// (as after a restart under systemd) are read at once: on io_uring six
/// times what its ring of receive buffers holds (512 at most per socket),
/// so the receive goes on only as echoes give buffers back to the kernel.
/// Every one is echoed, whole and in the order sent, none is counted as
/// dropped, and the socket goes on serving after them.
#[test]
fn thousands_queued_before_the_handover_are_all_echoed_in_order() {
    use ricochet::serve::{InheritedSocket, Server, ServerConfig};
    assert!(
        is_root(),
        "this test queues past rmem_max (SO_RCVBUFFORCE needs root)"
    );
    let queued: u64 = 3000;
    let queue = 16 << 20;
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    ricochet::serve::raise_udp_receive_buffer(&socket, queue).unwrap();
    let addr = socket.local_addr().unwrap();
    let client = UdpSocket::bind("127.0.0.1:0").unwrap();
    // Room for every echo, read only after the last was sent.
    ricochet::serve::raise_udp_receive_buffer(&client, queue).unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let datagram = |i: u64| -> Vec<u8> { (0..8 + i % 57).map(|k| (i * 31 + k) as u8).collect() };
    for i in 0..queued {
        client.send_to(&datagram(i), addr).unwrap();
    }
    let config = with_io(ServerConfig {
        tcp: Vec::new(),
        udp: Vec::new(),
        threads: 1,
        ..ServerConfig::default()
    });
    let server = Server::bind_with(config, vec![InheritedSocket::Udp(socket)]).expect("bind");
    let handle = server.spawn().expect("spawn");
    let mut buf = [0u8; 128];
    for i in 0..queued {
        let (n, _) = client
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("echo {i} of {queued} missing: {e}"));
        assert_eq!(
            &buf[..n],
            &datagram(i)[..],
            "echo {i}: reordered or changed"
        );
    }
    // And the socket goes on serving after the burst.
    client.send_to(b"marker", addr).unwrap();
    let (n, _) = client.recv_from(&mut buf).expect("the marker's echo");
    assert_eq!(&buf[..n], b"marker");
    let stats = handle.stats_source();
    handle.shutdown();
    handle.join_within(STOP_TIMEOUT).expect("join");
    let s = stats.snapshot();
    assert_eq!(s.udp.echoed, queued + 1, "{s:?}");
    assert_eq!((s.udp.dropped.total(), s.udp_queue_drops), (0, 0), "{s:?}");
}
