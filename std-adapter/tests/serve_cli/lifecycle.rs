//! Start lines, signals and exit status, restarts on the same ports and
//! paths, and closed standard output or error.

use super::*;

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

/// SIGHUP (a closed terminal, or an operator's habit of asking for a
/// reload) stops the server gracefully like SIGTERM: the held partial line
/// is echoed, the Unix socket file removed, exit 0. It killed the server
/// at once (exit 129, the file left behind).
#[test]
fn cli_sighup_stops_gracefully_like_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hup.sock");
    let mut p = Proc::serve(&[
        "--tcp",
        "127.0.0.1:0",
        "--unix",
        path.to_str().unwrap(),
        "--mode",
        "lines",
    ]);
    let tcp = addr_of(&p.listening(2), "tcp");
    let mut held = connect(tcp);
    held.write_all(b"first\nheld").unwrap();
    let mut first = [0u8; 6];
    held.read_exact(&mut first).unwrap();
    p.signal("HUP");
    assert_eq!(read_to_eof(&mut held).expect("a clean close"), b"held");
    let status = p.wait_exit(IO_TIMEOUT);
    assert!(status.success(), "exit status {status:?}");
    assert!(!path.exists(), "unix socket file removed on exit");
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
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_ricochet")).args([
            "serve",
            "--tcp",
            &format!("127.0.0.1:{port}"),
        ]),
        IO_TIMEOUT,
    );
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

/// The same endpoint twice on one command line is this command's own
/// mistake, not "another server": a usage error naming it, before binding.
#[test]
fn cli_same_endpoint_twice_is_a_usage_error_naming_it() {
    // A port in use by this test: binding it twice would fail as "in use".
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = &held.local_addr().unwrap().to_string();
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("twice.sock");
    let sock = sock.to_str().unwrap();
    for (args, named) in [
        (&["--tcp", addr, "--tcp", addr][..], format!("--tcp {addr}")),
        (&["--udp", addr, "--udp", addr], format!("--udp {addr}")),
        (&["--unix", sock, "--unix", sock], format!("--unix {sock}")),
    ] {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_ricochet"))
                .arg("serve")
                .args(args),
            IO_TIMEOUT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(
            err.contains(&named) && err.contains("given twice") && !err.contains("another server"),
            "{args:?}: {err}"
        );
        assert!(out.stdout.is_empty(), "{args:?}: nothing bound");
    }
    // Port 0 twice: two ports chosen by the kernel, no conflict.
    let mut p = Proc::serve(&["--tcp", "127.0.0.1:0", "--tcp", "127.0.0.1:0"]);
    assert_eq!(p.listening(2).len(), 2);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn cli_second_server_on_a_busy_reuseport_port_exits_1_and_the_first_keeps_it() {
    let mut first = Proc::serve(&["--tcp", "127.0.0.1:0", "--threads", "2"]);
    let tcp = addr_of(&first.listening(1), "tcp");
    for extra in [
        &["--threads", "2"][..],
        &["--threads", "1"],
        &["--accept", "shared"],
    ] {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_ricochet"))
                .args(["serve", "--tcp", &tcp.to_string()])
                .args(extra),
            IO_TIMEOUT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{extra:?}: {err}");
        assert!(err.contains("address already in use"), "{extra:?}: {err}");
        assert!(out.stdout.is_empty(), "{extra:?}: no listening line");
    }
    // Every connection still reaches the first server.
    for i in 0..20u8 {
        round_trip(&mut connect(tcp), &[i; 16]);
    }
    first.signal("TERM");
    assert!(first.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn cli_address_no_interface_has_is_named_with_where_to_look() {
    // 192.0.2.1 (TEST-NET-1) is on no interface here. The error asked "is
    // the interface or IPv6 configured?" of an IPv4 address.
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_ricochet")).args(["serve", "--tcp", "192.0.2.1:0"]),
        IO_TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("no interface has 192.0.2.1") && err.contains("ip addr"),
        "{err}"
    );
    assert!(!err.contains("IPv6"), "{err}");
}

/// Kills `p` with SIGKILL (by its handle) and reaps it.
fn kill_and_reap(p: &mut Proc) {
    p.child.kill().expect("SIGKILL");
    p.child.wait().expect("reap");
}

#[test]
fn cli_ports_of_a_killed_server_are_bound_by_a_server_started_at_once() {
    // A server restarted right after a SIGKILL (a supervisor, the OOM
    // killer, a script) failed on io_uring in about half the tries with
    // "address already in use (another server is running there)": the
    // kernel holds a killed process's sockets until it has torn its rings
    // down, 5-8 ms later. Ten tries: each round's server is killed in turn.
    let mut p = Proc::serve(&["--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0"]);
    let lines = p.listening(2);
    let (tcp, udp) = (addr_of(&lines, "tcp"), addr_of(&lines, "udp"));
    for round in 0..10 {
        kill_and_reap(&mut p);
        p = Proc::serve(&["--tcp", &tcp.to_string(), "--udp", &udp.to_string()]);
        let line = p.stdout.recv_timeout(IO_TIMEOUT).unwrap_or_else(|_| {
            panic!("round {round}: no start line; stderr: {}", p.drain_stderr())
        });
        assert!(line.starts_with("listening"), "round {round}: {line}");
        p.listening(1);
        round_trip(&mut connect(tcp), b"restarted");
    }
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn cli_unix_socket_of_a_killed_server_is_replaced_by_a_server_started_at_once() {
    // As above, where it was "another server is listening on this socket".
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let arg = path.to_str().unwrap();
    let mut p = Proc::serve(&["--unix", arg]);
    p.listening(1);
    for round in 0..10 {
        kill_and_reap(&mut p);
        p = Proc::serve(&["--unix", arg]);
        let line = p.stdout.recv_timeout(IO_TIMEOUT).unwrap_or_else(|_| {
            panic!("round {round}: no start line; stderr: {}", p.drain_stderr())
        });
        assert!(line.starts_with("listening unix"), "round {round}: {line}");
        let mut s = UnixStream::connect(&path).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        round_trip(&mut s, b"restarted");
    }
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
    assert!(!path.exists(), "socket file removed on exit");
}

/// `ricochet serve ARGS` whose stderr is a pipe with no reader (every write
/// to it fails with EPIPE), logging at debug; stdout is piped to us.
fn serve_with_dead_stderr(args: &[&str]) -> Proc {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.arg("serve")
        .args(args)
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(writer);
    Proc::spawn_with(cmd)
}

#[test]
fn cli_closed_stderr_neither_stops_serving_nor_blocks_shutdown() {
    let mut p = serve_with_dead_stderr(&[
        "--tcp",
        "127.0.0.1:0",
        "--mode",
        "lines",
        "--buffer-size",
        "1024",
    ]);
    let tcp = addr_of(&p.listening(1), "tcp");
    // Every connection logs (debug), a reset client and an overlong line log warnings.
    for i in 0..5u8 {
        let mut c = connect(tcp);
        round_trip(&mut c, &[b'a' + i, b'\n']);
        let mut overlong = connect(tcp);
        let _ = overlong.write_all(&[b'x'; 3000]);
        let mut b = [0u8; 16];
        let _ = overlong.read(&mut b);
    }
    round_trip(&mut connect(tcp), b"still here\n");
    assert!(p.child.try_wait().unwrap().is_none(), "the server died");
    let t = Instant::now();
    p.signal("TERM");
    let status = p.wait_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(0), "took {:?}", t.elapsed());
}

#[test]
fn cli_closed_stdout_and_stderr_after_start_still_stop_on_sigint() {
    // `ricochet serve 2>&1 | tee log`, then tee exits: both streams lose their reader.
    let (reader, writer) = std::io::pipe().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tee.sock");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--unix", path.to_str().unwrap()])
        .env("RUST_LOG", "debug")
        .stdin(std::process::Stdio::null())
        .stdout(writer.try_clone().unwrap())
        .stderr(writer);
    let mut p = Proc::spawn_with(cmd);
    drop(reader);
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut u = loop {
        if let Ok(u) = UnixStream::connect(&path) {
            break u;
        }
        assert!(Instant::now() < deadline, "never listened");
        std::thread::sleep(Duration::from_millis(10));
    };
    u.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    round_trip(&mut u, b"logged to nowhere");
    drop(u);
    p.signal("INT");
    assert_eq!(p.wait_exit(IO_TIMEOUT).code(), Some(0));
}
