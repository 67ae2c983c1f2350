//! The `ricochet serve` binary: start lines, signals, exit status, errors,
//! file-descriptor exhaustion.

mod serve_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serve_support::{IO_TIMEOUT, Proc, connect, payload, read_to_eof, round_trip};

fn addr_of(lines: &[(String, String)], kind: &str) -> SocketAddr {
    lines
        .iter()
        .find(|(k, _)| k == kind)
        .unwrap_or_else(|| panic!("no {kind} line in {lines:?}"))
        .1
        .parse()
        .unwrap()
}

#[test]
fn cli_prints_one_listening_line_per_endpoint_and_serves_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cli.sock");
    let mut p = Proc::serve(&[
        "--tcp",
        "127.0.0.1:0",
        "--udp",
        "127.0.0.1:0",
        "--unix",
        path.to_str().unwrap(),
    ]);
    let lines = p.listening(3);
    let tcp = addr_of(&lines, "tcp");
    assert_ne!(tcp.port(), 0, "the real port is printed");
    round_trip(&mut connect(tcp), b"tcp via cli");
    let udp = addr_of(&lines, "udp");
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.send_to(b"udp via cli", udp).unwrap();
    let mut b = [0u8; 32];
    let (n, _) = c.recv_from(&mut b).unwrap();
    assert_eq!(&b[..n], b"udp via cli");
    assert_eq!(
        lines.iter().find(|(k, _)| k == "unix").unwrap().1,
        path.to_str().unwrap()
    );
    let mut u = UnixStream::connect(&path).unwrap();
    u.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    round_trip(&mut u, b"unix via cli");
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
    assert!(!path.exists(), "unix socket file removed on exit");
}

#[test]
fn cli_without_addresses_serves_tcp_and_udp_on_loopback_7007() {
    let Ok(probe) = TcpListener::bind("127.0.0.1:7007") else {
        panic!("port 7007 is busy on this machine; this test needs it free to check the default");
    };
    drop(probe);
    let mut p = Proc::serve(&[]);
    let lines = p.listening(2);
    assert_eq!(addr_of(&lines, "tcp"), "127.0.0.1:7007".parse().unwrap());
    assert_eq!(addr_of(&lines, "udp"), "127.0.0.1:7007".parse().unwrap());
    p.signal("INT");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn cli_sigterm_echoes_queued_data_then_exits_zero() {
    let mut p = Proc::serve(&["--tcp", "127.0.0.1:0", "--mode", "lines", "--grace", "5s"]);
    let tcp = addr_of(&p.listening(1), "tcp");
    // A held partial line: it is echoed at shutdown, as at FIN.
    let mut held = connect(tcp);
    held.write_all(b"first\npartial without newline").unwrap();
    let mut first = [0u8; 6];
    held.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"first\n");
    // Bytes that could not be sent yet: a client that has not been reading.
    let mut lagging = connect(tcp);
    lagging
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let line: Vec<u8> = payload(5, 999)
        .iter()
        .map(|b| if *b == b'\n' { b'.' } else { *b })
        .chain([b'\n'])
        .collect();
    let mut sent = Vec::new();
    while let Ok(n) = lagging.write(&line) {
        sent.extend_from_slice(&line[..n]);
    }
    p.signal("TERM");
    let rest = read_to_eof(&mut held).expect("clean close after the echo");
    assert_eq!(rest, b"partial without newline");
    lagging.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    let back = read_to_eof(&mut lagging).expect("clean close after the echo");
    assert!(
        !back.is_empty() && sent.starts_with(&back),
        "echo is a prefix of what was sent ({} bytes)",
        back.len()
    );
    let status = p.wait_exit(Duration::from_secs(8));
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn cli_second_signal_stops_at_once() {
    let mut p = Proc::serve(&["--tcp", "127.0.0.1:0", "--grace", "60s"]);
    let tcp = addr_of(&p.listening(1), "tcp");
    // A peer that never reads keeps the graceful shutdown waiting for the grace period.
    let mut hog = connect(tcp);
    hog.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let chunk = payload(6, 64 * 1024);
    while hog.write(&chunk).is_ok() {}
    p.signal("TERM");
    p.wait_stderr("shutting down gracefully", IO_TIMEOUT);
    let t = Instant::now();
    p.signal("TERM");
    let status = p.wait_exit(IO_TIMEOUT);
    assert!(
        t.elapsed() < Duration::from_secs(3),
        "took {:?}",
        t.elapsed()
    );
    assert_eq!(status.code(), Some(130));
}

#[test]
fn cli_busy_port_fails_with_a_clear_message() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
        .args(["serve", "--tcp", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("address already in use") && err.contains("--tcp 127.0.0.1:0"),
        "{err}"
    );
    assert!(
        out.stdout.is_empty(),
        "no listening line when binding failed"
    );
}

#[test]
fn cli_rejects_a_buffer_size_out_of_range() {
    for bad in ["63", "17MiB"] {
        let out = Command::new(env!("CARGO_BIN_EXE_ricochet"))
            .args(["serve", "--tcp", "127.0.0.1:0", "--buffer-size", bad])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("64 bytes to 16 MiB"), "{err}");
    }
}

#[test]
fn cli_stats_interval_logs_counters() {
    let p = Proc::serve(&[
        "--udp",
        "127.0.0.1:0",
        "--stats-interval",
        "100ms",
        "--udp-max-datagram",
        "10",
    ]);
    let udp = addr_of(&p.listening(1), "udp");
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.send_to(&[0u8; 11], udp).unwrap();
    let line = p.wait_stderr("oversize=1", IO_TIMEOUT);
    assert!(line.contains("stats") && line.contains("open=0"), "{line}");
}

#[test]
fn cli_survives_running_out_of_file_descriptors() {
    // 64 descriptors: a few are the server's own; 100 clients exhaust the rest.
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg("ulimit -n 64 && exec \"$0\" serve --tcp 127.0.0.1:0 --threads 1 --max-connections 1000 --backlog 256")
        .arg(env!("CARGO_BIN_EXE_ricochet"));
    let mut p = Proc::spawn(cmd);
    let tcp = addr_of(&p.listening(1), "tcp");
    let clients: Vec<TcpStream> = (0..100).map(|_| connect(tcp)).collect();
    p.wait_stderr("out of file descriptors", IO_TIMEOUT);
    // Still alive, and the connections it did accept are served.
    assert!(p.child.try_wait().unwrap().is_none(), "server died");
    drop(clients);
    // Once descriptors are free again it accepts and serves new clients.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let mut c = connect(tcp);
        c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
        let ok = c.write_all(b"back?").is_ok() && {
            let mut b = [0u8; 5];
            c.read_exact(&mut b).is_ok() && &b == b"back?"
        };
        if ok {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "server did not recover; stderr: {}",
            p.drain_stderr()
        );
    }
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn cli_holds_ten_thousand_idle_connections_in_under_10_kib_each() {
    const N: usize = 10_000;
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if hard < N as u64 + 100 {
        panic!(
            "this test needs an open-file hard limit above {} (have soft {soft}, hard {hard})",
            N + 100
        );
    }
    rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard).unwrap();
    let mut p = Proc::serve(&["--tcp", "127.0.0.1:0", "--backlog", "4096"]);
    let tcp = addr_of(&p.listening(1), "tcp");
    let pid = p.child.id();
    round_trip(&mut connect(tcp), b"warm up");
    let before = rss_kib(pid);
    let mut conns = Vec::with_capacity(N);
    for i in 0..N {
        let mut c = connect(tcp);
        c.write_all(&[(i % 251) as u8]).unwrap();
        conns.push(c);
    }
    // Every connection is served (its byte comes back), so each has a session.
    for (i, c) in conns.iter_mut().enumerate() {
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        assert_eq!(b[0], (i % 251) as u8);
    }
    let after = rss_kib(pid);
    let per_conn = (after.saturating_sub(before)) as f64 * 1024.0 / N as f64;
    println!(
        "server RSS {before} KiB -> {after} KiB with {N} connections: {per_conn:.0} bytes each"
    );
    assert!(
        per_conn < 10.0 * 1024.0,
        "{per_conn:.0} bytes per idle connection"
    );
    // The server closes first (shutdown), so TIME_WAIT stays on its side, not on our ports.
    p.signal("TERM");
    for c in &mut conns {
        let mut b = [0u8; 1];
        assert_eq!(c.read(&mut b).unwrap(), 0);
    }
    drop(conns);
    assert!(p.wait_exit(Duration::from_secs(20)).success());
}
