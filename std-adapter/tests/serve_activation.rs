//! Socket activation: `ricochet serve` started with `LISTEN_FDS` serves the
//! inherited TCP, UDP and Unix sockets, with no flag, beside any explicit
//! address; refuses what it cannot serve; ignores sockets meant for another
//! process. Also through the real `systemd-socket-activate`.

mod daemon_support;
mod serve_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::process::Command;
use std::time::Duration;

use daemon_support::{NotifySocket, bin, require, serve_activated};
use serve_support::{IO_TIMEOUT, Proc, connect, round_trip};

fn udp_round_trip(server: SocketAddr, data: &[u8]) {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.send_to(data, server).unwrap();
    let mut b = [0u8; 256];
    let (n, from) = c.recv_from(&mut b).expect("udp echo");
    assert_eq!((&b[..n], from), (data, server));
}

fn unix_round_trip(path: &std::path::Path, data: &[u8]) {
    let mut u = UnixStream::connect(path).expect("connect unix");
    u.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    round_trip(&mut u, data);
}

/// Every `listening` line the process printed before exiting.
fn all_listening(p: &mut Proc) -> Vec<(String, String)> {
    let status = p.wait_exit(IO_TIMEOUT);
    assert!(
        status.success(),
        "exit {status:?}; stderr: {}",
        p.drain_stderr()
    );
    daemon_support::rest_of_stdout(p)
        .into_iter()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("listening"))
                .then(|| (w.next().unwrap().into(), w.next().unwrap().into()))
        })
        .collect()
}

#[test]
fn inherited_tcp_udp_and_unix_sockets_are_served_without_any_address() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("activated.sock");
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let unix = UnixListener::bind(&path).unwrap();
    let (tcp_addr, udp_addr) = (tcp.local_addr().unwrap(), udp.local_addr().unwrap());
    let fds = vec![OwnedFd::from(tcp), OwnedFd::from(udp), OwnedFd::from(unix)];
    let mut p = serve_activated(&["--threads", "2"], fds, None, &[]);
    let lines = p.listening(3);
    assert_eq!(
        lines,
        vec![
            ("tcp".to_owned(), tcp_addr.to_string()),
            ("udp".to_owned(), udp_addr.to_string()),
            ("unix".to_owned(), path.display().to_string()),
        ]
    );
    for i in 0..4u8 {
        round_trip(&mut connect(tcp_addr), &[i; 100]);
    }
    udp_round_trip(udp_addr, b"inherited udp");
    unix_round_trip(&path, b"inherited unix");
    p.signal("TERM");
    assert!(
        all_listening(&mut p).is_empty(),
        "no default endpoint (127.0.0.1:7007) beside inherited sockets"
    );
    assert!(path.exists(), "the manager's socket file is never removed");
}

/// The start log says how connections are accepted: an inherited
/// listener is shared by the workers whatever `--accept` says (a
/// `SO_REUSEPORT` group needs sockets the server binds itself).
/// With no TCP listener at all there is nothing to spread: the start log
/// does not claim an accept strategy (it said `accept=reuseport`); a
/// UDP-only server names none of the stream listeners' settings at all.
#[test]
fn start_log_of_a_server_without_tcp_says_no_accept_strategy() {
    let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut p = serve_activated(&[], vec![OwnedFd::from(udp)], None, &[]);
    let serving = p.wait_stderr("serving", IO_TIMEOUT);
    assert!(
        !serving.contains("accept=reuseport") && !serving.contains("accept=shared"),
        "{serving}"
    );
    p.listening(1);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn start_log_says_inherited_listeners_are_shared() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut p = serve_activated(&[], vec![OwnedFd::from(tcp)], None, &[]);
    let serving = p.wait_stderr("serving", IO_TIMEOUT);
    assert!(
        serving.contains("accept=shared (inherited listeners)"),
        "{serving}"
    );
    p.listening(1);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn explicit_addresses_are_served_beside_inherited_sockets() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let inherited = tcp.local_addr().unwrap();
    let mut p = serve_activated(
        &["--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0"],
        vec![OwnedFd::from(tcp)],
        None,
        &[],
    );
    let lines = p.listening(3);
    let tcps: Vec<SocketAddr> = lines
        .iter()
        .filter(|(k, _)| k == "tcp")
        .map(|(_, a)| a.parse().unwrap())
        .collect();
    assert_eq!(tcps.len(), 2, "{lines:?}");
    assert_eq!(
        tcps[1], inherited,
        "explicit first, then inherited: {lines:?}"
    );
    for addr in tcps {
        round_trip(&mut connect(addr), b"both kinds");
    }
    let udp: SocketAddr = lines
        .iter()
        .find(|(k, _)| k == "udp")
        .unwrap()
        .1
        .parse()
        .unwrap();
    udp_round_trip(udp, b"explicit udp");
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// `--mode lines` needs a stream listener: an inherited TCP listener is
/// one (served in lines mode: only the complete line comes back), an
/// inherited UDP socket alone is not (a usage error, exit 2, as with
/// `--udp` alone).
#[test]
fn lines_mode_takes_an_inherited_stream_listener_but_not_udp_alone() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = tcp.local_addr().unwrap();
    let mut p = serve_activated(&["--mode", "lines"], vec![OwnedFd::from(tcp)], None, &[]);
    p.listening(1);
    let mut s = connect(addr);
    s.write_all(b"one\ntw").unwrap();
    let mut echoed = [0u8; 4];
    s.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"one\n");
    drop(s);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());

    let udp = UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut p = serve_activated(&["--mode", "lines"], vec![OwnedFd::from(udp)], None, &[]);
    let err = p.wait_stderr("--mode lines", IO_TIMEOUT);
    assert_eq!(p.wait_exit(IO_TIMEOUT).code(), Some(2), "{err}");
    assert!(err.contains("applies to stream listeners"), "{err}");
}

#[test]
fn connected_socket_from_an_accept_yes_unit_is_refused_with_the_fix() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let _client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let (conn, _) = listener.accept().unwrap();
    let mut p = serve_activated(&[], vec![OwnedFd::from(conn)], None, &[]);
    let err = p.wait_stderr("descriptor 3", IO_TIMEOUT);
    assert_eq!(p.wait_exit(IO_TIMEOUT).code(), Some(1));
    assert!(
        err.contains("Accept=yes") && err.contains("--inetd"),
        "{err}"
    );
}

#[test]
fn unsupported_inherited_socket_is_refused_with_what_is_served() {
    let dgram = UnixDatagram::unbound().unwrap();
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let mut p = serve_activated(
        &[],
        vec![OwnedFd::from(tcp), OwnedFd::from(dgram)],
        None,
        &[],
    );
    let err = p.wait_stderr("descriptor 4", IO_TIMEOUT);
    assert_eq!(p.wait_exit(IO_TIMEOUT).code(), Some(1));
    assert!(err.contains("ListenDatagram="), "{err}");
}

#[test]
fn sockets_meant_for_another_process_are_ignored() {
    let tcp = TcpListener::bind("127.0.0.1:0").unwrap();
    let not_ours = tcp.local_addr().unwrap();
    // LISTEN_PID names PID 1: these descriptors are not for us.
    let mut p = serve_activated(
        &["--tcp", "127.0.0.1:0"],
        vec![OwnedFd::from(tcp)],
        Some("1"),
        &[],
    );
    let first = p.listening(1);
    // Said, not silent: the manager's sockets are not served.
    let err = p.wait_stderr("names another process", IO_TIMEOUT);
    assert!(
        err.contains("LISTEN_PID=1") && err.contains("exec"),
        "{err}"
    );
    p.signal("TERM");
    let rest = all_listening(&mut p);
    assert_eq!(first.len() + rest.len(), 1, "{first:?} {rest:?}");
    assert_ne!(first[0].1, not_ours.to_string());
}

/// The real tool: it binds, waits for the first connection, then execs
/// the server with the socket (and our NOTIFY_SOCKET).
#[test]
fn systemd_socket_activate_starts_serve_on_the_first_connection() {
    require("systemd-socket-activate", "systemd");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let notify = NotifySocket::new();
    let mut cmd = Command::new("systemd-socket-activate");
    cmd.arg("-l")
        .arg(&path)
        .arg(format!("--setenv=NOTIFY_SOCKET={}", notify.env()))
        .arg("--")
        .arg(bin())
        .args(["serve", "--tcp", "127.0.0.1:0"]);
    let mut p = Proc::spawn(cmd);
    // The tool binds and listens before it runs anything: wait for its
    // socket to listen (its file appears at the bind, before).
    daemon_support::wait_until(IO_TIMEOUT, "systemd-socket-activate's socket", || {
        daemon_support::unix_listening(&path)
    });
    // This connection starts the server, which then serves it.
    let mut first = UnixStream::connect(&path).unwrap();
    first.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    round_trip(&mut first, b"woke the server");
    notify.expect("READY=1", IO_TIMEOUT);
    let lines = p.listening(2);
    assert!(
        lines.contains(&("unix".to_owned(), path.display().to_string())),
        "{lines:?}"
    );
    let tcp: SocketAddr = lines
        .iter()
        .find(|(k, _)| k == "tcp")
        .unwrap()
        .1
        .parse()
        .unwrap();
    round_trip(&mut connect(tcp), b"explicit beside activated");
    p.signal("TERM");
    notify.expect("STOPPING=1", IO_TIMEOUT);
    assert!(p.wait_exit(Duration::from_secs(10)).success());
}

/// An IPv4 client of an inherited dual-stack socket (`[::]`, not IPv6-only,
/// as systemd makes `ListenStream=7`) is logged as the IPv4 address it is,
/// on both backends: connections and dropped datagrams alike.
#[test]
fn inherited_dual_stack_sockets_log_ipv4_clients_as_ipv4() {
    use socket2::{Domain, Protocol, Socket, Type};
    let dual = |ty: Type, proto: Protocol| {
        let s = Socket::new(Domain::IPV6, ty, Some(proto)).unwrap();
        s.set_only_v6(false).unwrap();
        s.bind(&SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)).into())
            .expect("this test needs IPv6 ([::] bound dual-stack); CI machines have it");
        s
    };
    for io in ["epoll", "auto"] {
        let tcp = dual(Type::STREAM, Protocol::TCP);
        tcp.listen(16).unwrap();
        let udp = dual(Type::DGRAM, Protocol::UDP);
        let port = |s: &Socket| s.local_addr().unwrap().as_socket().unwrap().port();
        let (tcp_port, udp_port) = (port(&tcp), port(&udp));
        let args = ["--io", io, "--udp-max-datagram", "100"];
        let fds = vec![OwnedFd::from(tcp), OwnedFd::from(udp)];
        let mut p = serve_activated(&args, fds, None, &[("RUST_LOG", "debug")]);
        p.listening(2);
        let mut c = connect(SocketAddr::from(([127, 0, 0, 1], tcp_port)));
        let me = c.local_addr().unwrap();
        round_trip(&mut c, b"dual stack");
        drop(c);
        let closed = p.wait_stderr("connection closed", IO_TIMEOUT);
        assert!(
            closed.contains(&format!("peer={me}")),
            "--io {io}: {closed}"
        );
        let u = UdpSocket::bind("127.0.0.1:0").unwrap();
        u.send_to(&[0u8; 101], ("127.0.0.1", udp_port)).unwrap();
        let dropped = p.wait_stderr("datagram dropped", IO_TIMEOUT);
        let source = u.local_addr().unwrap();
        assert!(
            dropped.contains(&format!("source={source}")),
            "--io {io}: {dropped}"
        );
        p.signal("TERM");
        assert!(p.wait_exit(IO_TIMEOUT).success());
    }
}

/// An inherited IPv6-only `[::]` (systemd's `BindIPv6Only=ipv6-only`) takes
/// no IPv4 client: the start-up log says so and names the socket unit's
/// setting, not a flag. A dual-stack one (systemd's default) takes them: the
/// log says nothing of it.
#[test]
fn inherited_ipv6_only_wildcard_is_named_with_the_socket_unit_fix() {
    use socket2::{Domain, Protocol, Socket, Type};
    for only_v6 in [true, false] {
        let s = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP)).unwrap();
        s.set_only_v6(only_v6).unwrap();
        s.bind(&SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)).into())
            .expect("this test needs IPv6 ([::] bound); CI machines have it");
        s.listen(16).unwrap();
        let mut p = serve_activated(&[], vec![OwnedFd::from(s)], None, &[]);
        p.listening(1);
        p.signal("TERM");
        let log = p.stderr_until("stopped", IO_TIMEOUT).join("\n");
        assert!(p.wait_exit(IO_TIMEOUT).success());
        let named = log.contains("(inherited)") && log.contains("set BindIPv6Only=both");
        assert_eq!(named, only_v6, "IPV6_V6ONLY {only_v6}: {log}");
        assert!(!log.contains("--tcp 0.0.0.0"), "{log}");
    }
}
