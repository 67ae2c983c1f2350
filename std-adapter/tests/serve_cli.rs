//! The `ricochet serve` binary: start lines, signals, exit status, errors,
//! file-descriptor exhaustion.

mod netns_support;
mod serve_support;
mod tls_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serve_support::{
    IO_TIMEOUT, Proc, connect, is_root, output_within, payload, read_to_eof, round_trip,
};

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

#[test]
fn cli_usage_errors_exit_2_and_name_the_option() {
    let cases: &[(&[&str], &str)] = &[
        (&["--threads", "0"], "--threads"),
        (&["--backlog", "0"], "--backlog"),
        (&["--max-connections", "0"], "--max-connections"),
        (&["--udp-max-datagram", "70000"], "--udp-max-datagram"),
        (&["--idle-timeout", "soon"], "--idle-timeout"),
        (&["--stats-interval", "1ms"], "at least 100ms"),
        (&["--tcp", "[fe80::1]:0"], "%eth0"),
        (
            &["--udp", "127.0.0.1:0", "--mode", "lines"],
            "--mode lines applies to stream listeners",
        ),
    ];
    for (args, needle) in cases {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_ricochet"))
                .arg("serve")
                .args(*args),
            IO_TIMEOUT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}

/// The usual slips in an address get what is wrong and the form to give,
/// not only "expected IP:PORT": an IPv6 address without brackets, no port,
/// nothing before the port, a port out of range, a host name without a
/// port (`ricochet probe` says the same of its targets).
#[test]
fn cli_address_slips_name_what_is_wrong_and_the_form_to_give() {
    for (addr, needle) in [
        ("::1:7007", "goes in brackets before its port: [::1]:7007"),
        (
            "::1",
            "no port, and an IPv6 address goes in brackets before it: [::1]:PORT",
        ),
        ("[::1]", "no port: give one after a colon, e.g. [::1]:7007"),
        (
            "127.0.0.1",
            "no port: give one after a colon, e.g. 127.0.0.1:7007",
        ),
        (":7007", "nothing before the port"),
        ("[::1]:70000", "port 70000 is out of range"),
        ("localhost", "\"localhost\" is not an IP address"),
        // `u16::from_str` takes a sign; an address does not (port 0 here:
        // were it taken, nothing fixed would be bound).
        ("+0", "invalid address \"+0\": port +0 has a sign"),
        (
            "127.0.0.1:+7",
            "port +7 has a sign: a port is decimal digits alone",
        ),
        ("[fe80::1%lo]:+7", "invalid address \"[fe80::1%lo]:+7\""),
    ] {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_ricochet")).args(["serve", "--tcp", addr]),
            IO_TIMEOUT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{addr}: {err}");
        assert!(err.contains(needle), "{addr}: {err}");
    }
}

#[test]
fn cli_link_local_without_interface_is_explained_by_the_library_too() {
    // Through the library (no CLI check): the kernel's EINVAL gets a hint.
    let e = ricochet::serve::Server::bind(ricochet::serve::ServerConfig {
        tcp: vec!["[fe80::1]:0".parse().unwrap()],
        ..ricochet::serve::ServerConfig::default()
    })
    .unwrap_err()
    .to_string();
    assert!(
        e.contains("link-local") && e.contains("[fe80::1%eth0]:0"),
        "{e}"
    );
}

/// An interface name is looked up in the server's own network namespace:
/// in one made with `unshare -n` (or a unit's `PrivateNetwork=`), `/sys`
/// still lists the host's interfaces, and `[fe80::1%NAME]` was refused for
/// an interface that exists there ("no network interface named"), or took
/// the index of the host's interface of that name. The probe, run in the
/// same namespace, takes the same name (it shares the lookup). Both show
/// the address as it was written, by the interface's name: std shows the
/// index (`[fe80::1%2]`), which no one typed.
#[test]
fn cli_link_local_interface_name_is_looked_up_in_the_servers_network_namespace() {
    let setup = "ip link add rv6a type veth peer name rv6b && ip link set rv6a up && \
                 ip link set rv6b up && ip -6 addr add fe80::1/64 dev rv6a nodad";
    let cmd = netns_support::ricochet_in_new_netns(
        setup,
        &[
            "serve",
            "--tcp",
            "[fe80::1%rv6a]:0",
            "--udp",
            "[fe80::1%rv6a]:0",
        ],
    );
    let mut p = Proc::spawn(cmd);
    let lines = p.listening(2);
    for kind in ["tcp", "udp"] {
        let (_, shown) = lines.iter().find(|(k, _)| k == kind).expect(kind);
        let port = shown
            .strip_prefix("[fe80::1%rv6a]:")
            .and_then(|p| p.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("listening {kind} {shown}"));
        assert_ne!(port, 0, "{shown}");
        let target = format!("{kind}://[fe80::1%rv6a]:{port}");
        let out = output_within(
            &mut netns_support::enter(p.id(), &["probe", &target, "-n", "3"]),
            IO_TIMEOUT,
        );
        let report = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{target}: {report}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            report
                .lines()
                .any(|l| l.starts_with("target") && l.contains(&target)),
            "{report}"
        );
    }
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// A link-local address no interface has is refused naming it as it was
/// written, `[fe80::1%lo]`, not as `[fe80::1%1]`.
#[test]
fn cli_link_local_address_not_on_its_interface_is_named_as_written() {
    for flag in ["--tcp", "--udp"] {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_ricochet")).args(["serve", flag, "[fe80::1%lo]:0"]),
            IO_TIMEOUT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flag}: {err}");
        assert!(
            err.contains(&format!(
                "{} [fe80::1%lo]:0: address not available",
                &flag[2..]
            )),
            "{flag}: {err}"
        );
    }
}

/// `--tcp [::]:PORT` alone is IPv6-only: an IPv4 client is refused, and
/// the log says so at start with the flag that adds IPv4, instead of
/// leaving the user to find out from a refused connection.
#[test]
fn cli_ipv6_wildcard_alone_says_it_takes_ipv6_clients_only() {
    let mut p = Proc::serve(&["--tcp", "[::]:0", "--udp", "[::]:0"]);
    let bound = p.listening(2);
    let line = p.wait_stderr("takes IPv6 clients only", IO_TIMEOUT);
    assert!(
        line.contains("tcp [::]:0") && line.contains("add --tcp 0.0.0.0:0"),
        "{line}"
    );
    let line = p.wait_stderr("takes IPv6 clients only", IO_TIMEOUT);
    assert!(line.contains("add --udp 0.0.0.0:0"), "{line}");
    // What the note says: IPv6 is served, IPv4 refused.
    let tcp = addr_of(&bound, "tcp");
    let mut s = connect(SocketAddr::from((
        std::net::Ipv6Addr::LOCALHOST,
        tcp.port(),
    )));
    round_trip(&mut s, b"over IPv6");
    drop(s);
    let v4 = SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, tcp.port()));
    let refused = TcpStream::connect_timeout(&v4, IO_TIMEOUT)
        .map(|_| ())
        .unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// `[::]` where IPv6 is disabled (`net.ipv6.conf.*.disable_ipv6 = 1`, in
/// a network namespace of its own) binds, and serves no one: no interface
/// has an IPv6 address. It started without a word; a warning now names the
/// sysctl and the IPv4 wildcard to listen on instead.
#[test]
fn cli_ipv6_wildcard_where_ipv6_is_disabled_is_warned_of_naming_the_sysctl() {
    let setup = "for c in all default lo; do sysctl -qw net.ipv6.conf.$c.disable_ipv6=1; done";
    let args = ["serve", "--tcp", "[::]:0", "--udp", "[::]:0"];
    let cmd = netns_support::ricochet_in_new_netns(setup, &args);
    let mut p = Proc::spawn(cmd);
    p.listening(2);
    for flag in ["tcp", "udp"] {
        let line = p.wait_stderr("serves no one", IO_TIMEOUT);
        assert!(
            line.contains(&format!("{flag} [::]:0"))
                && line.contains("net.ipv6.conf.all.disable_ipv6 = 1")
                && line.contains(&format!("listen on --{flag} 0.0.0.0:0 instead")),
            "{line}"
        );
    }
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// `[::ffff:127.0.0.1]:PORT` is an IPv4 address in IPv6 form; an IPv6
/// listener is IPv6-only, so the kernel refuses it with a bare EINVAL:
/// the error names the IPv4 form to give instead, for TCP and UDP alike,
/// as a usage error (exit 2; it was 1, a failed bind, like a busy port).
#[test]
fn cli_v4_mapped_address_names_the_ipv4_form_to_give() {
    for flag in ["--tcp", "--udp"] {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_ricochet")).args([
                "serve",
                flag,
                "[::ffff:127.0.0.1]:0",
            ]),
            IO_TIMEOUT,
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag}: {err}");
        assert!(
            err.contains("v4-mapped")
                && err.contains(&format!("'{flag} <ADDR>'"))
                && err.contains("give the IPv4 address, 127.0.0.1:0")
                && !err.contains("os error"),
            "{flag}: {err}"
        );
        assert!(out.stdout.is_empty(), "{flag}: nothing bound");
    }
}

#[test]
fn cli_unix_path_in_a_directory_the_user_cannot_search_says_permission_denied() {
    let dir = tempfile::tempdir().unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    let path = locked.join("x.sock");
    // Root searches any directory: run as nobody then; anyone else: a mode-000 directory.
    let root = is_root();
    use std::os::unix::fs::PermissionsExt;
    let mode = if root { 0o700 } else { 0o000 };
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(mode)).unwrap();
    let mut cmd = if root {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_ricochet"));
        c
    } else {
        Command::new(env!("CARGO_BIN_EXE_ricochet"))
    };
    let out = output_within(
        cmd.args(["serve", "--unix", path.to_str().unwrap()]),
        IO_TIMEOUT,
    );
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o700)).unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("permission denied"), "{err}");
    assert!(!err.contains("cannot check or remove"), "{err}");
}

#[test]
fn cli_rejects_a_buffer_size_out_of_range() {
    for bad in ["63", "17MiB"] {
        let out = output_within(
            Command::new(env!("CARGO_BIN_EXE_ricochet")).args([
                "serve",
                "--tcp",
                "127.0.0.1:0",
                "--buffer-size",
                bad,
            ]),
            IO_TIMEOUT,
        );
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

/// `ricochet serve ARGS` under `ulimit -n 256`; the stderr lines up to "serving".
fn start_lines_under_256_descriptors(args: &str) -> Vec<String> {
    start_lines_under_descriptors(256, args)
}

fn start_lines_under_descriptors(limit: u32, args: &str) -> Vec<String> {
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!(
            "ulimit -n {limit} && exec \"$0\" serve --tcp 127.0.0.1:0 {args}"
        ))
        .arg(env!("CARGO_BIN_EXE_ricochet"));
    let mut p = Proc::spawn(cmd);
    let lines = p.stderr_until("serving", IO_TIMEOUT);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
    lines
}

#[test]
fn cli_max_connections_beyond_the_open_file_limit_is_warned_with_the_fix() {
    let lines = start_lines_under_256_descriptors("--max-connections 99999999999");
    let warning = lines
        .iter()
        .find(|l| l.contains("WARN") && l.contains("max-connections"))
        .unwrap_or_else(|| panic!("no warning about --max-connections: {lines:#?}"));
    for needle in ["99999999999", "256", "ulimit -n", "LimitNOFILE", "backlog"] {
        assert!(warning.contains(needle), "{needle:?} missing: {warning}");
    }
    // Within the limit, or derived from it: no warning.
    for args in ["--max-connections 100", ""] {
        let lines = start_lines_under_256_descriptors(args);
        assert!(
            !lines.iter().any(|l| l.contains("max-connections")),
            "{args:?}: {lines:#?}"
        );
    }
}

#[test]
fn cli_open_file_limit_with_no_room_for_connections_is_warned_with_the_fix() {
    // 24 descriptors: the listeners, two workers' event loops and the
    // reserve of 32 leave none for connections.
    let lines = start_lines_under_descriptors(24, "--threads 2");
    let warning = lines
        .iter()
        .find(|l| l.contains("WARN") && l.contains("leaves no descriptor"))
        .unwrap_or_else(|| panic!("no warning about the open-file limit: {lines:#?}"));
    for needle in ["limit of 24", "ulimit -n", "LimitNOFILE", "--threads"] {
        assert!(warning.contains(needle), "{needle:?} missing: {warning}");
    }
    let lines = start_lines_under_256_descriptors("");
    assert!(
        !lines.iter().any(|l| l.contains("leaves no descriptor")),
        "room for connections, no warning: {lines:#?}"
    );
}

/// Descriptors process `pid` holds open.
fn open_fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("list the server's descriptors")
        .count()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
/// Issue 9's target is under 10 KiB per idle connection; none holds a
/// session buffer (4 KiB), silent or after an echo, so they stay far below.
/// Two workers, whatever the machine: each io_uring worker's receive ring
/// (4 MiB, touched once for all as receives cycle through it) is shared by
/// the connections and counts in the figure.
fn cli_holds_ten_thousand_idle_connections_without_a_session_buffer_each() {
    const N: usize = 10_000;
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).unwrap();
    if hard < N as u64 + 100 {
        panic!(
            "this test needs an open-file hard limit above {} (have soft {soft}, hard {hard})",
            N + 100
        );
    }
    rlimit::setrlimit(rlimit::Resource::NOFILE, hard, hard).unwrap();
    let mut p = Proc::serve(&[
        "--tcp",
        "127.0.0.1:0",
        "--backlog",
        "4096",
        "--threads",
        "2",
    ]);
    let tcp = addr_of(&p.listening(1), "tcp");
    let pid = p.child.id();
    // Kept open: its descriptor counts in `fds_before` to the end.
    let mut warm = connect(tcp);
    round_trip(&mut warm, b"warm up");
    let fds_before = open_fds(pid);
    let before = rss_kib(pid);
    // Silent first: accepted (the server holds a descriptor for each),
    // nothing sent, so no session buffer is allocated (4 KiB each).
    let mut conns: Vec<TcpStream> = (0..N).map(|_| connect(tcp)).collect();
    let deadline = Instant::now() + IO_TIMEOUT;
    while open_fds(pid) < fds_before + N {
        assert!(
            Instant::now() < deadline,
            "the server accepted {} of {N} connections",
            open_fds(pid) - fds_before
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    // The server's RSS growth per connection, printed and held under `kib`.
    let check = |what: &str, kib: f64| {
        let now = rss_kib(pid);
        let each = now.saturating_sub(before) as f64 * 1024.0 / N as f64;
        println!(
            "server RSS {before} KiB -> {now} KiB with {N} {what} connections: {each:.0} bytes each"
        );
        assert!(
            each < kib * 1024.0,
            "{each:.0} bytes per {what} connection: a session buffer each?"
        );
    };
    check("silent", 2.0);
    for (i, c) in conns.iter_mut().enumerate() {
        c.write_all(&[(i % 251) as u8]).unwrap();
    }
    // Every connection is served (its byte comes back), so each has a session.
    for (i, c) in conns.iter_mut().enumerate() {
        let mut b = [0u8; 1];
        c.read_exact(&mut b).unwrap();
        assert_eq!(b[0], (i % 251) as u8);
    }
    check("echoed", 3.0);
    // The server closes first (shutdown), so TIME_WAIT stays on its side, not on our ports.
    p.signal("TERM");
    for c in &mut conns {
        let mut b = [0u8; 1];
        assert_eq!(c.read(&mut b).unwrap(), 0);
    }
    drop(conns);
    assert!(p.wait_exit(Duration::from_secs(20)).success());
}

/// `ricochet serve ARGS`, run to its end within [`IO_TIMEOUT`] with the
/// backend left to the flags (no `RICOCHET_IO` from the suite): exit code
/// and stderr.
fn serve_fails(args: &[&str]) -> (Option<i32>, String, std::process::Output) {
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_ricochet"))
            .arg("serve")
            .args(args)
            .env_remove("RICOCHET_IO"),
        IO_TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), err, out)
}

#[test]
fn cli_io_uring_with_tls_is_refused_in_one_sentence_with_the_fix_once() {
    let pki = tls_support::Pki::new();
    let (code, err, out) = serve_fails(&[
        "--io",
        "uring",
        "--tcp",
        "127.0.0.1:0",
        "--tls-cert",
        pki.cert.to_str().unwrap(),
        "--tls-key",
        pki.key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(1), "{err}");
    // The last line: a warning about running as root may come first.
    assert_eq!(
        err.trim_end().lines().last().unwrap_or_default(),
        "ricochet serve: --io uring cannot serve TLS listeners (TLS runs on the epoll backend): \
         use --io epoll, or --io auto, which picks epoll by itself when a TLS listener is configured"
    );
    assert_eq!(err.matches("use --io").count(), 1, "{err}");
    assert!(out.stdout.is_empty(), "no listening line");
}

/// `ricochet ARGS` (a help request): its stdout, which must be the whole of it.
fn help_of(args: &[&str]) -> String {
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_ricochet")).args(args),
        IO_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(0), "{args:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn cli_help_lists_io_outside_the_tls_heading() {
    let help = help_of(&["serve", "--help"]);
    let tls = help
        .split("\nTLS:\n")
        .nth(1)
        .unwrap_or_else(|| panic!("no TLS: heading in {help}"));
    // The section runs up to the next heading or the footer (a line that
    // starts without indentation).
    let mut section = String::new();
    for line in tls.lines() {
        if !line.is_empty() && !line.starts_with(' ') {
            break;
        }
        section.push_str(line);
        section.push('\n');
    }
    assert!(section.contains("--tls-cert"), "{section}");
    assert!(
        !section.contains("--io"),
        "--io under the TLS heading:\n{section}"
    );
    assert!(help.contains("--io <auto|uring|epoll>"), "{help}");
}

#[test]
fn cli_serve_help_shows_the_long_description_with_exit_statuses_and_listening_lines() {
    for args in [&["serve", "--help"][..], &["help", "serve"]] {
        let help = help_of(args);
        assert!(
            help.contains("listening <tcp|tls|udp|unix> <address>")
                && help.contains("Exit status 1")
                && help.contains("SIGINT/SIGTERM"),
            "{args:?}: {help}"
        );
    }
    // -h stays short.
    let short = help_of(&["serve", "-h"]);
    assert!(!short.contains("Exit status 1"), "{short}");
}

#[test]
fn cli_serve_help_footer_examples_are_whole_commands_and_name_every_listener_flag() {
    let help = help_of(&["serve", "--help"]);
    for line in help.lines() {
        assert!(
            !line.trim_start().starts_with("ricochet serve --inetd)"),
            "a wrapped example reads as a command: {line:?}\n{help}"
        );
        assert!(
            line.chars().count() <= 100,
            "{line:?} is wider than the help"
        );
    }
    assert!(
        help.contains("Without --tcp/--udp/--unix/--tls"),
        "the default endpoints are dropped by --tls too: {help}"
    );
}

#[test]
fn cli_busy_udp_port_suggests_a_udp_flag() {
    let taken = UdpSocket::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let (code, err, _) = serve_fails(&["--udp", &addr]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("address already in use") && err.contains("--udp 127.0.0.1:0"),
        "{err}"
    );
    assert!(!err.contains("--tcp"), "{err}");
}

#[test]
fn cli_unix_path_in_a_missing_directory_names_the_directory_and_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nodir");
    let path = missing.join("x.sock");
    let (code, err, _) = serve_fails(&["--unix", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    let want = format!(
        "the directory {} does not exist (create it, or choose another path)",
        missing.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("os error"), "{err}");
}

#[test]
fn cli_unix_path_under_a_regular_file_says_it_is_not_a_directory() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain");
    std::fs::write(&file, b"not a directory").unwrap();
    let path = file.join("x.sock");
    let (code, err, _) = serve_fails(&["--unix", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    let want = format!(
        "{} is not a directory (choose a path in a directory)",
        file.display()
    );
    assert!(err.contains(&want), "{err}");
    assert!(!err.contains("os error"), "{err}");
}

#[test]
fn cli_unix_path_another_server_listens_on_names_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("live.sock");
    let _live = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let (code, err, _) = serve_fails(&["--unix", path.to_str().unwrap()]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("another server is listening on this socket")
            && err.contains("stop that server or choose another path"),
        "{err}"
    );
    assert!(path.exists(), "the live socket file is left alone");
}

#[test]
fn cli_tls_certificate_without_a_tls_or_tcp_address_says_to_add_one() {
    let pki = tls_support::Pki::new();
    let (code, err, _) = serve_fails(&[
        "--udp",
        "127.0.0.1:0",
        "--tls-cert",
        pki.cert.to_str().unwrap(),
        "--tls-key",
        pki.key.to_str().unwrap(),
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no listening address") && err.contains("add --tls ADDR"),
        "{err}"
    );
}

#[test]
fn cli_serving_log_line_spells_the_accept_strategy_as_the_flag_does() {
    for (flag, want) in [
        ("reuseport", "accept=reuseport"),
        ("shared", "accept=shared"),
    ] {
        let mut p = Proc::serve(&["--tcp", "127.0.0.1:0", "--accept", flag]);
        let serving = p.wait_stderr("serving", IO_TIMEOUT);
        assert!(serving.contains(want), "{flag}: {serving}");
        p.signal("TERM");
        assert!(p.wait_exit(IO_TIMEOUT).success());
    }
}

#[test]
fn cli_serving_log_line_of_a_udp_only_server_names_no_stream_setting() {
    let mut p = Proc::serve(&["--udp", "127.0.0.1:0"]);
    let serving = p.wait_stderr("serving", IO_TIMEOUT);
    for stream_only in ["mode=", "buffer=", "max_connections=", "accept="] {
        assert!(!serving.contains(stream_only), "{stream_only}: {serving}");
    }
    assert!(
        serving.contains("workers=") && serving.contains("io="),
        "{serving}"
    );
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// The row of `option` in the options table of std-adapter/README.md.
fn readme_row(option: &str) -> String {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("std-adapter/README.md");
    readme
        .lines()
        .find(|l| l.starts_with(&format!("| `{option}")))
        .unwrap_or_else(|| panic!("no README row for {option}"))
        .to_owned()
}

#[test]
fn cli_readme_and_help_agree_on_buffer_sizes_and_busy_polling() {
    let help = help_of(&["serve", "--help"]).replace('\n', " ");
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    let buffer = readme_row("--buffer-size");
    assert!(
        help.contains("64 B to 16 MiB") && buffer.contains("64 B to 16 MiB"),
        "{buffer}"
    );
    assert!(!buffer.contains("16384 or 65536"), "{buffer}");
    let busy = readme_row("--busy-poll");
    assert!(
        help.contains("2.4-3.0x faster") && busy.contains("2.4–3.0×"),
        "{busy}"
    );
    assert!(
        help.contains("an idle worker one, after its last event"),
        "{help}"
    );
    assert!(
        busy.contains("an idle worker spins once after its last event"),
        "{busy}"
    );
    let io = readme_row("--io");
    assert!(
        io.contains("any TLS listener puts the whole server"),
        "{io}"
    );
}

#[test]
fn cli_tls_listener_under_io_auto_logs_that_every_listener_moves_to_epoll() {
    let pki = tls_support::Pki::new();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args([
        "serve",
        "--tcp",
        "127.0.0.1:0",
        "--udp",
        "127.0.0.1:0",
        "--io",
        "auto",
    ])
    .args([
        "--tls",
        "127.0.0.1:0",
        "--tls-cert",
        pki.cert.to_str().unwrap(),
    ])
    .args(["--tls-key", pki.key.to_str().unwrap()])
    .env_remove("RICOCHET_IO");
    let mut p = Proc::spawn(cmd);
    let why = p.wait_stderr("with epoll", IO_TIMEOUT);
    assert!(
        why.contains("serving every listener with epoll, not io_uring"),
        "{why}"
    );
    let serving = p.wait_stderr("serving workers", IO_TIMEOUT);
    assert!(serving.contains("io=epoll"), "{serving}");
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// `ricochet --help` describes the tool in a user's words, not its crates.
#[test]
fn cli_top_level_help_describes_the_tool_for_users() {
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_ricochet")).arg("--help"),
        IO_TIMEOUT,
    );
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let first = help.lines().next().unwrap_or_default();
    assert!(
        first.contains("echo server") && first.contains("probe"),
        "{first}"
    );
    assert!(
        !help.contains("ricochet-core") && !help.contains("std sockets"),
        "{help}"
    );
}

/// An option given where nothing uses it is said, not silently ignored:
/// stream options on a UDP-only server and UDP options on a TCP-only one
/// are warned of once bound; --tls-handshake-timeout without a certificate
/// is a usage error.
#[test]
fn cli_options_without_an_endpoint_of_their_kind_are_warned_of() {
    for (args, flag, other) in [
        (
            &[
                "--udp",
                "127.0.0.1:0",
                "--buffer-size",
                "8192",
                "--udp-rate",
                "5",
            ][..],
            "--buffer-size has no effect: no stream endpoint",
            "--udp-rate",
        ),
        (
            &[
                "--tcp",
                "127.0.0.1:0",
                "--udp-rate",
                "5",
                "--buffer-size",
                "8192",
            ],
            "--udp-rate has no effect: no UDP endpoint",
            "--buffer-size",
        ),
    ] {
        let mut p = Proc::serve(args);
        let lines = p.stderr_until("has no effect", IO_TIMEOUT);
        let warnings: Vec<_> = lines
            .iter()
            .filter(|l| l.contains("has no effect"))
            .collect();
        assert!(
            warnings.len() == 1 && warnings[0].contains("WARN") && warnings[0].contains(flag),
            "{args:?}: {lines:#?}"
        );
        assert!(
            !warnings[0].contains(other),
            "{args:?}: {other} is used here"
        );
        p.signal("TERM");
        assert!(p.wait_exit(IO_TIMEOUT).success());
    }
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_ricochet")).args([
            "serve",
            "--tcp",
            "127.0.0.1:0",
            "--tls-handshake-timeout",
            "5s",
        ]),
        IO_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--tls-cert"));
}

/// `--idle-timeout` closes stream connections and `--unix-mode` sets the
/// permissions of Unix socket files: on a server with neither (UDP only),
/// each is warned of once bound, as `--drain-timeout` is, not dropped
/// without a word.
#[test]
fn cli_idle_timeout_and_unix_mode_on_a_udp_only_server_are_warned_of() {
    let mut p = Proc::serve(&[
        "--udp",
        "127.0.0.1:0",
        "--idle-timeout",
        "30s",
        "--unix-mode",
        "644",
        "--drain-timeout",
        "5s",
    ]);
    // Three options, three warnings, in whatever order.
    let lines: Vec<String> = (0..3)
        .flat_map(|_| p.stderr_until("has no effect", IO_TIMEOUT))
        .collect();
    for flag in [
        "--idle-timeout has no effect: no stream endpoint",
        "--unix-mode has no effect: no Unix endpoint",
        "--drain-timeout has no effect: no stream endpoint",
    ] {
        assert!(
            lines.iter().any(|l| l.contains("WARN") && l.contains(flag)),
            "{flag}: {lines:#?}"
        );
    }
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}
