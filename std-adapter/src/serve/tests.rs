//! The server's entry: what binding reports (endpoints, the connection
//! limit and its warnings, workers, the accept strategy, UDP queues) and
//! what spawning starts (workers, backend, the stats reporter) and a
//! shutdown ends.

use std::net::{Ipv4Addr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};

use super::*;

/// Bound for a spawned server's workers to exit once it was shut down.
const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// Bound for an echo, or a worker's turn for it, on loopback.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

fn loopback() -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
}

/// The soft open-file limit, read here rather than through `fd_limit`.
/// Raised to the hard limit first, as every server bound with
/// `raise_fd_limit` (the default) raises it: tests running beside these
/// do, so only the raised limit holds still between a bind and this read.
fn nofile() -> usize {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let (soft, _) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("RLIMIT_NOFILE");
    usize::try_from(soft).unwrap_or(usize::MAX)
}

/// A self-signed certificate for `localhost` and its key, as PEM files in `dir`.
fn tls_files(dir: &Path) -> (PathBuf, PathBuf) {
    let id = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).expect("cert");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, id.cert.pem()).expect("write cert");
    std::fs::write(&key, id.signing_key.serialize_pem()).expect("write key");
    (cert, key)
}

/// A UDP socket on loopback with a receive queue of `bytes` (as the
/// server reports queues: half of Linux's `SO_RCVBUF`), as a service
/// manager might pass it.
fn udp_with_queue(bytes: usize) -> (SocketAddr, InheritedSocket) {
    let socket = UdpSocket::bind(loopback()).expect("bind udp");
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(bytes)
        .expect("SO_RCVBUF");
    assert_eq!(listener::receive_buffer(&socket).unwrap(), bytes);
    (socket.local_addr().unwrap(), InheritedSocket::Udp(socket))
}

/// What `f` logs at warning level and above.
#[cfg(feature = "cli")]
fn warnings(f: impl FnOnce()) -> String {
    super::conns::tests::logged_at(tracing::Level::WARN, f)
}

/// Without `max_connections`, the limit is what the open-file limit
/// leaves once each worker has a descriptor for every TCP, TLS, Unix and
/// inherited listener and two for its event loop, the UDP sockets one
/// each, and 32 are kept in reserve.
#[test]
fn derived_connection_limit_is_the_open_file_limit_less_every_workers_listeners() {
    let nofile = nofile();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = tls_files(dir.path());
    let config = ServerConfig {
        tcp: vec![loopback(), loopback()],
        udp: vec![loopback(), loopback()],
        unix: vec![dir.path().join("echo.sock")],
        tls: Some(TlsConfig::new(vec![loopback()], cert, key)),
        threads: 3,
        raise_fd_limit: false,
        ..ServerConfig::default()
    };
    let inherited = vec![InheritedSocket::Tcp(TcpListener::bind(loopback()).unwrap())];
    let server = Server::bind_with(config, inherited).unwrap();
    // 2 TCP + 1 TLS + 1 Unix + 1 inherited, and an event loop and a waker
    // twice over (TLS beside io_uring has event loops of its own), for each
    // of 3 workers; 2 UDP.
    let needed = 32 + (2 + 1 + 1 + 1 + 4) * 3 + 2;
    let expected = nofile.saturating_sub(needed).clamp(1, MAX_CONNECTIONS_CAP);
    assert_eq!(server.max_connections(), expected);
    assert!(expected > 1, "an open-file limit of {nofile}");
    assert_eq!(server.workers(), 3);
}

/// A configured limit is kept as it is; past what the open-file limit
/// leaves for connections it is warned of, with the room there is and
/// the fix. One that just fits says nothing.
#[cfg(feature = "cli")]
#[test]
fn configured_limit_past_the_open_file_room_is_kept_with_a_warning() {
    // One TCP listener and two descriptors for each of 2 workers, the reserve.
    let room = nofile() - (32 + (1 + 2) * 2);
    for (limit, warned) in [(room, false), (room + 1, true)] {
        let config = ServerConfig {
            tcp: vec![loopback()],
            threads: 2,
            max_connections: Some(limit),
            raise_fd_limit: false,
            ..ServerConfig::default()
        };
        let mut server = None;
        let log = warnings(|| server = Some(Server::bind(config).unwrap()));
        assert_eq!(server.unwrap().max_connections(), limit);
        let warning = format!(
            "max-connections {limit} is more than the open-file limit of {} allows (about {room} \
             connections after the listeners and a reserve)",
            nofile()
        );
        assert_eq!(log.contains(&warning), warned, "limit {limit}: {log}");
        if warned {
            assert!(log.contains("ulimit -n"), "{log}");
        }
    }
}

/// An open-file limit that leaves no descriptor for connections once
/// every worker has its listeners gives a limit of one connection, with a
/// warning saying what the listeners take and the fix; a limit with room
/// warns of nothing.
#[cfg(feature = "cli")]
#[test]
fn derived_limit_without_open_file_room_is_one_connection_with_a_warning() {
    let nofile = nofile();
    if nofile > 64 * 1024 {
        eprintln!("skipped: an open-file limit of {nofile} needs too many Unix listeners here");
        return;
    }
    // 1024 workers (the most) and this many shared Unix listeners, each
    // counted once per worker: more than the open-file limit.
    let listeners = nofile / 1024;
    let dir = tempfile::tempdir().unwrap();
    let config = ServerConfig {
        unix: (0..listeners)
            .map(|i| dir.path().join(format!("{i}.sock")))
            .collect(),
        threads: 1024,
        raise_fd_limit: false,
        ..ServerConfig::default()
    };
    let mut server = None;
    let log = warnings(|| server = Some(Server::bind(config).unwrap()));
    assert_eq!(server.unwrap().max_connections(), 1);
    let needed = 32 + (listeners + 2) * 1024;
    assert!(
        log.contains(&format!(
            "the open-file limit of {nofile} leaves no descriptor for connections (the \
             listeners, the workers' event loops and a reserve take about {needed})"
        )) && log.contains("--threads"),
        "{log}"
    );
    let roomy = ServerConfig {
        tcp: vec![loopback()],
        threads: 1,
        raise_fd_limit: false,
        ..ServerConfig::default()
    };
    let log = warnings(|| drop(Server::bind(roomy).unwrap()));
    assert_eq!(log, "");
}

/// The log's accept strategy: `--accept` for the TCP or TLS listeners the
/// server bound, "shared" for inherited ones, both when it has both, and
/// none without a TCP listener.
#[test]
fn accept_text_names_own_listeners_strategy_and_inherited_ones_shared() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = tls_files(dir.path());
    let accept_text = |tcp: Vec<SocketAddr>, tls: bool, inherit: bool| {
        let config = ServerConfig {
            tcp,
            udp: vec![loopback()],
            tls: tls.then(|| TlsConfig::new(vec![loopback()], &cert, &key)),
            ..ServerConfig::default()
        };
        let inherited = if inherit {
            vec![InheritedSocket::Tcp(TcpListener::bind(loopback()).unwrap())]
        } else {
            Vec::new()
        };
        Server::bind_with(config, inherited).unwrap().accept_text()
    };
    let accept = ServerConfig::default().accept.to_string();
    assert_eq!(accept_text(vec![loopback()], false, false), accept);
    assert_eq!(accept_text(Vec::new(), true, false), accept);
    assert_eq!(
        accept_text(Vec::new(), false, true),
        "shared (inherited listeners)"
    );
    assert_eq!(
        accept_text(vec![loopback()], false, true),
        format!("{accept}, shared for inherited listeners")
    );
    assert_eq!(
        accept_text(Vec::new(), false, false),
        "none (no TCP listener)"
    );
}

/// The bound endpoints, with real ports: TCP, TLS, UDP, Unix, each kind
/// in configuration order with the inherited sockets of that kind after;
/// the UDP sockets' queues in the same order, as asked.
#[test]
fn local_addrs_lists_each_kind_configured_first_then_inherited() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = tls_files(dir.path());
    let own_unix = dir.path().join("own.sock");
    let their_unix = dir.path().join("theirs.sock");
    let tcp = TcpListener::bind(loopback()).unwrap();
    let their_tcp = tcp.local_addr().unwrap();
    let (their_udp, udp) = udp_with_queue(16 * 1024);
    let inherited = vec![
        InheritedSocket::Unix(StdUnixListener::bind(&their_unix).unwrap()),
        udp,
        InheritedSocket::Tcp(tcp),
    ];
    let config = ServerConfig {
        tcp: vec![loopback()],
        udp: vec![loopback()],
        unix: vec![own_unix.clone()],
        tls: Some(TlsConfig::new(vec![loopback()], cert, key)),
        udp_receive_buffer: Some(64 * 1024),
        ..ServerConfig::default()
    };
    let server = Server::bind_with(config, inherited).unwrap();
    let e = server.local_addrs();
    assert_eq!(e.len(), 7, "{e:?}");
    assert!(
        matches!(e[0], Endpoint::Tcp(a) if a.port() != 0 && a != their_tcp),
        "{e:?}"
    );
    assert_eq!(e[1], Endpoint::Tcp(their_tcp));
    assert!(matches!(e[2], Endpoint::Tls(a) if a.port() != 0), "{e:?}");
    let Endpoint::Udp(own_udp) = e[3] else {
        panic!("{e:?}")
    };
    assert_ne!(own_udp.port(), 0);
    assert_eq!(e[4], Endpoint::Udp(their_udp));
    assert_eq!(e[5], Endpoint::Unix(own_unix));
    assert_eq!(e[6], Endpoint::Unix(their_unix));
    let queues: Vec<_> = server
        .udp_receive_buffers()
        .into_iter()
        .map(|(addr, bytes)| (addr, bytes.unwrap()))
        .collect();
    assert_eq!(queues, [(own_udp, 64 * 1024), (their_udp, 64 * 1024)]);
}

/// `udp_receive_buffer` sets the queue of the UDP sockets the server
/// binds, and raises an inherited socket's to it but never shrinks one
/// that has more (the service manager's `ReceiveBuffer=`).
#[test]
fn udp_receive_buffer_raises_inherited_queues_but_never_shrinks_them() {
    let (small, small_socket) = udp_with_queue(8 * 1024);
    let (large, large_socket) = udp_with_queue(128 * 1024);
    let config = ServerConfig {
        udp: vec![loopback()],
        udp_receive_buffer: Some(64 * 1024),
        ..ServerConfig::default()
    };
    let server = Server::bind_with(config, vec![small_socket, large_socket]).unwrap();
    let queues: Vec<_> = server
        .udp_receive_buffers()
        .into_iter()
        .map(|(addr, bytes)| (addr, bytes.unwrap()))
        .collect();
    assert_eq!(queues.len(), 3, "{queues:?}");
    assert_eq!(queues[0].1, 64 * 1024, "{queues:?}");
    assert_eq!(
        queues[1..],
        [(small, 64 * 1024), (large, 128 * 1024)],
        "{queues:?}"
    );
}

/// A spawned server runs one thread per worker. Its shutdown removes the
/// Unix socket files the server created at once, before the workers have
/// drained (nobody new can connect), and ends every worker.
#[test]
fn shutdown_removes_the_unix_socket_files_at_once_and_ends_every_worker() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("echo.sock");
    let config = ServerConfig {
        unix: vec![path.clone()],
        threads: 3,
        ..ServerConfig::default()
    };
    let handle = Server::bind(config).unwrap().spawn().unwrap();
    assert_eq!(handle.threads.len(), 3);
    assert!(path.exists());
    handle.shutdown();
    assert!(!path.exists(), "{} left while draining", path.display());
    handle.join_within(STOP_TIMEOUT).unwrap();
}

/// With `auto`, plain TCP runs on io_uring where the kernel allows it,
/// with or without a TLS listener beside it: TLS gets epoll event loops of
/// its own (one per worker), each run by an io_uring worker's thread, so
/// the thread count stays one per worker; both kinds of listener echo.
/// `uring` with TLS serves the same way instead of being refused.
#[cfg(target_os = "linux")]
#[test]
fn tls_listener_beside_io_uring_runs_on_an_epoll_loop_the_io_uring_workers_host_and_both_echo() {
    use std::io::{Read, Write};
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = tls_files(dir.path());
    let plain = ServerConfig {
        tcp: vec![loopback()],
        threads: 2,
        ..ServerConfig::default()
    };
    let tls = ServerConfig {
        tls: Some(TlsConfig::new(vec![loopback()], cert, key)),
        ..plain.clone()
    };
    let uring = uring::probe().is_ok();
    let expected = if uring {
        IoBackend::Uring
    } else {
        eprintln!("io_uring is not available here: only epoll serving TLS is checked");
        IoBackend::Epoll
    };
    // One thread per worker either way: beside io_uring, each io_uring
    // worker runs the epoll loop of the TLS listeners too.
    let mut cases = vec![plain, tls.clone()];
    if uring {
        cases.push(ServerConfig {
            io: IoBackend::Uring,
            ..tls
        });
    }
    for config in cases {
        let with_tls = config.tls.is_some();
        let handle = Server::bind(config).unwrap().spawn().unwrap();
        assert_eq!(handle.io(), expected, "TLS listener: {with_tls}");
        assert_eq!(handle.threads.len(), 2, "TLS listener: {with_tls}");
        let mut c = std::net::TcpStream::connect(handle.tcp_addr().unwrap()).unwrap();
        c.set_read_timeout(Some(STOP_TIMEOUT)).unwrap();
        c.write_all(b"plain").unwrap();
        c.shutdown(std::net::Shutdown::Write).unwrap();
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"plain");
        if with_tls {
            // The TLS worker answers a client that is not TLS with an
            // alert record, then FIN: it is serving.
            let mut t = std::net::TcpStream::connect(handle.tls_addr().unwrap()).unwrap();
            t.set_read_timeout(Some(STOP_TIMEOUT)).unwrap();
            t.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
            let mut alert = Vec::new();
            t.read_to_end(&mut alert).unwrap();
            assert_eq!(
                (alert.len(), alert.first()),
                (7, Some(&0x15)),
                "{alert:02x?}"
            );
        }
        handle.shutdown();
        handle.join_within(STOP_TIMEOUT).unwrap();
    }
}

/// A stats interval starts the stats reporter with the workers; without
/// one there is none.
#[test]
fn stats_interval_starts_the_reporter_and_none_starts_none() {
    for every in [Some(Duration::from_secs(1)), None] {
        let config = ServerConfig {
            tcp: vec![loopback()],
            threads: 1,
            stats_interval: every,
            ..ServerConfig::default()
        };
        let handle = Server::bind(config).unwrap().spawn().unwrap();
        assert_eq!(handle.reporter.is_some(), every.is_some(), "{every:?}");
        handle.shutdown();
        handle.join_within(STOP_TIMEOUT).unwrap();
    }
}

/// UDP sockets are dealt to the workers in turn: with two sockets and two
/// workers, each worker serves one (its event loop turns for a datagram
/// to its socket), rather than one worker serving both.
#[test]
fn udp_sockets_are_dealt_to_the_workers_in_turn() {
    let config = ServerConfig {
        udp: vec![loopback(), loopback()],
        threads: 2,
        ..ServerConfig::default()
    };
    let handle = Server::bind(config).unwrap().spawn().unwrap();
    let stats = handle.stats_source();
    let client = UdpSocket::bind(loopback()).unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    // Every worker past its start-up turns: from here a worker turns for
    // its own sockets' datagrams.
    assert!(handle.controller().responsive(IO_TIMEOUT));
    let sockets: Vec<_> = handle
        .local_addrs()
        .iter()
        .map(|e| match e {
            Endpoint::Udp(a) => *a,
            other => panic!("{other:?}"),
        })
        .collect();
    for (worker, addr) in sockets.into_iter().enumerate() {
        let before = stats.worker(worker).turns();
        client.send_to(b"ping", addr).unwrap();
        let mut buf = [0; 16];
        let (n, from) = client.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"ping"[..], addr));
        let deadline = std::time::Instant::now() + IO_TIMEOUT;
        while stats.worker(worker).turns() == before {
            assert!(
                std::time::Instant::now() < deadline,
                "worker {worker} never turned for a datagram to {addr}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }
    handle.shutdown();
    handle.join_within(STOP_TIMEOUT).unwrap();
}
