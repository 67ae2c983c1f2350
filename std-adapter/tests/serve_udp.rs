//! UDP: what the datagram policy drops is never echoed, and is counted by reason.

mod serve_support;

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use ricochet::serve::{ServerConfig, ServerHandle, UdpRate};
use serve_support::{IO_TIMEOUT, STOP_TIMEOUT, payload, start, wait_stats};

/// A reflector port can be bound by one test at a time.
static REFLECTOR: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A client socket whose source port is one of the core's reflector ports
/// (the loop guard's list), without root: one of the unprivileged ones
/// (>= 1024: ssdp 1900, mdns 5353, memcached 11211), on a loopback address
/// of 127.0.0.0/8 other than the usual 127.0.0.1, with `SO_REUSEADDR` so a
/// local service on that port does not get in the way.
fn reflector_source() -> UdpSocket {
    use socket2::{Domain, Protocol, Socket, Type};
    let ports: Vec<u16> = ricochet::core::datagram::REFLECTOR_PORTS
        .iter()
        .copied()
        .filter(|&p| p >= 1024)
        .collect();
    assert!(
        !ports.is_empty(),
        "the loop guard lists no unprivileged port to test with"
    );
    let mut tried = Vec::new();
    for host in [[127, 0, 0, 7], [127, 0, 0, 77], [127, 7, 7, 7]] {
        for &port in &ports {
            let addr = SocketAddr::from((host, port));
            let bound = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).and_then(|s| {
                s.set_reuse_address(true)?;
                s.bind(&addr.into())?;
                Ok(s)
            });
            match bound {
                Ok(s) => {
                    let s: UdpSocket = s.into();
                    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                    return s;
                }
                Err(e) => tried.push(format!("{addr}: {e}")),
            }
        }
    }
    panic!("could not bind any reflector source port: {tried:?}");
}

fn udp_server(config: ServerConfig) -> (ServerHandle, SocketAddr) {
    let server = start(ServerConfig {
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 2,
        ..config
    });
    let addr = server.udp_addr().unwrap();
    (server, addr)
}

fn client() -> UdpSocket {
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c
}

fn expect_echo(c: &UdpSocket, target: SocketAddr, data: &[u8]) {
    c.send_to(data, target).unwrap();
    let mut buf = vec![0u8; 65536];
    let (n, from) = c.recv_from(&mut buf).expect("echo");
    assert_eq!(from, target);
    assert_eq!(&buf[..n], data);
}

fn expect_no_reply(c: &UdpSocket) {
    c.set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let mut buf = [0u8; 2048];
    match c.recv_from(&mut buf) {
        Ok((n, from)) => panic!("expected no reply, got {n} bytes from {from}"),
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "{e}"
        ),
    }
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
}

#[test]
fn udp_oversize_datagram_dropped_not_truncated_and_counted() {
    let (server, target) = udp_server(ServerConfig {
        udp_max_datagram: 100,
        ..ServerConfig::default()
    });
    let c = client();
    c.send_to(&payload(1, 101), target).unwrap();
    expect_no_reply(&c);
    let s = wait_stats(&server, IO_TIMEOUT, "oversize counted", |s| {
        s.udp.dropped.oversize == 1
    });
    assert_eq!(s.udp.echoed, 0);
    expect_echo(&c, target, &payload(2, 100)); // exactly the limit is fine
    c.send_to(&payload(3, 60_000), target).unwrap();
    expect_no_reply(&c);
    wait_stats(&server, IO_TIMEOUT, "second oversize counted", |s| {
        s.udp.dropped.oversize == 2 && s.udp.echoed == 1
    });
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn udp_loop_guard_drops_datagrams_from_reflector_ports() {
    let _one = REFLECTOR.lock().unwrap_or_else(|p| p.into_inner());
    let (server, target) = udp_server(ServerConfig::default());
    let reflector = reflector_source();
    reflector.send_to(b"ping-pong forever?", target).unwrap();
    expect_no_reply(&reflector);
    let s = wait_stats(&server, IO_TIMEOUT, "loop guard counted", |s| {
        s.udp.dropped.loop_guard == 1
    });
    assert_eq!(s.udp.echoed, 0);
    // Ordinary ports are still served.
    expect_echo(&client(), target, b"normal client");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn udp_no_loop_guard_echoes_datagrams_from_reflector_ports() {
    let _one = REFLECTOR.lock().unwrap_or_else(|p| p.into_inner());
    let (server, target) = udp_server(ServerConfig {
        loop_guard: false,
        ..ServerConfig::default()
    });
    expect_echo(&reflector_source(), target, b"you asked for it");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn udp_rate_limit_drops_excess_per_source_and_counts_it() {
    let rate = UdpRate {
        per_second: 1,
        burst: 3,
    };
    let (server, target) = udp_server(ServerConfig {
        udp_rate: Some(rate),
        udp_rate_loopback: true,
        ..ServerConfig::default()
    });
    let c = client();
    for i in 0..10u8 {
        c.send_to(&[i; 20], target).unwrap();
    }
    let s = wait_stats(&server, IO_TIMEOUT, "all 10 handled", |s| {
        // Counters only grow: a sum of 10 means both are final.
        s.udp.received == 10 && s.udp.echoed + s.udp.dropped.rate_limited == 10
    });
    assert_eq!(s.udp.echoed, 3, "burst of 3 echoed");
    assert_eq!(s.udp.dropped.rate_limited, 7);
    // The bucket is per source IP address: another port of 127.0.0.1 shares it...
    let same_ip = client();
    same_ip.send_to(b"same address", target).unwrap();
    expect_no_reply(&same_ip);
    // ...another address (127.0.0.2 is loopback too) has its own.
    let other_ip = UdpSocket::bind("127.0.0.2:0").expect("bind 127.0.0.2");
    other_ip.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    expect_echo(&other_ip, target, b"fresh source");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn udp_loopback_source_is_exempt_from_rate_limit_by_default() {
    let rate = UdpRate {
        per_second: 1,
        burst: 3,
    };
    let (server, target) = udp_server(ServerConfig {
        udp_rate: Some(rate),
        ..ServerConfig::default()
    });
    let c = client();
    for i in 0..10u8 {
        c.send_to(&[i; 20], target).unwrap();
    }
    let s = wait_stats(&server, IO_TIMEOUT, "all 10 handled", |s| {
        s.udp.received == 10 && s.udp.echoed == 10
    });
    assert_eq!(
        s.udp.dropped.rate_limited, 0,
        "loopback is exempt unless --udp-rate-loopback"
    );
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

#[test]
fn udp_bursts_are_echoed_whole_and_in_arrival_order() {
    // Bursts of 32 (one receive batch) back to back, each datagram a
    // different size and content: every echo comes back unchanged, in the
    // order sent, with nothing dropped (loopback, far below the rate limit
    // for loopback sources and the client's receive buffer).
    let (server, target) = udp_server(ServerConfig::default());
    let c = client();
    let mut buf = vec![0u8; 2048];
    for burst in 0..10u64 {
        let sent: Vec<Vec<u8>> = (0..32u64)
            .map(|i| payload(burst * 100 + i, 1 + ((burst * 32 + i) * 37 % 1400) as usize))
            .collect();
        for d in &sent {
            c.send_to(d, target).unwrap();
        }
        for (i, want) in sent.iter().enumerate() {
            let (n, from) = c
                .recv_from(&mut buf)
                .unwrap_or_else(|e| panic!("burst {burst}: echo {i} missing: {e}"));
            assert_eq!(from, target);
            assert_eq!(
                &buf[..n],
                &want[..],
                "burst {burst}: echo {i} differs (reordered or truncated: {n} bytes, sent {})",
                want.len()
            );
        }
    }
    let s = wait_stats(&server, IO_TIMEOUT, "320 echoes counted", |s| {
        s.udp.echoed == 320
    });
    assert_eq!(s.udp.dropped.total(), 0, "{s:#?}");
}

/// Every receive takes one of the server's receive buffers (on io_uring a
/// ring of at most 512 per UDP socket, each given back to the kernel when
/// its echo is sent): 2,000 datagrams, one at a time, are all echoed, so
/// the buffers come back and the socket goes on receiving after the ring
/// has gone round several times. Each echo counts its own length.
#[test]
fn udp_echoes_go_on_after_every_receive_buffer_was_used_several_times() {
    let (server, target) = udp_server(ServerConfig::default());
    let c = client();
    for i in 0..2_000u64 {
        let data = payload(i, 1 + (i % 200) as usize);
        c.send_to(&data, target).unwrap();
        let mut buf = [0u8; 256];
        let (n, from) = c
            .recv_from(&mut buf)
            .unwrap_or_else(|e| panic!("datagram {i}: no echo: {e}"));
        assert_eq!((from, &buf[..n]), (target, &data[..]), "datagram {i}");
    }
    let s = wait_stats(&server, IO_TIMEOUT, "2,000 echoes counted", |s| {
        s.udp.echoed == 2_000
    });
    assert_eq!(s.udp.dropped.total(), 0, "{s:#?}");
    // Each echo counts its own length, whichever buffer it went out of.
    let bytes: u64 = (0..2_000u64).map(|i| 1 + i % 200).sum();
    assert_eq!(s.udp.echoed_bytes, bytes, "{s:#?}");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

/// A graceful shutdown closes the UDP socket at once, as it closes the
/// listeners, even while a stream connection still drains: from then on a
/// datagram to the port is refused (ICMP port unreachable), not queued
/// where nobody reads it.
#[test]
fn udp_socket_closes_when_shutdown_starts_while_streams_drain() {
    use std::io::Write;

    let server = serve_support::start(ServerConfig {
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        grace: Duration::from_secs(60),
        ..ServerConfig::default()
    });
    let target = server.udp_addr().unwrap();
    // A peer that sends and never reads: its session cannot finish
    // echoing, so the server stays in its grace period.
    let mut hog = serve_support::connect(server.tcp_addr().unwrap());
    hog.set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let chunk = payload(9, 64 * 1024);
    while hog.write(&chunk).is_ok() {}
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.connect(target).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut buf = [0u8; 64];
    c.send(b"before").unwrap();
    assert_eq!(c.recv(&mut buf).expect("echo before the shutdown"), 6);
    server.shutdown();
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        c.send(b"during").unwrap_or(0);
        match c.recv(&mut buf) {
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => break,
            _ => assert!(
                std::time::Instant::now() < deadline,
                "the UDP port still takes datagrams {IO_TIMEOUT:?} into the shutdown"
            ),
        }
    }
    assert_eq!(
        server.stats().connections_open,
        1,
        "the stream still drains: the port closed at the start of the shutdown, not at exit"
    );
    server.abort();
    server.join_within(STOP_TIMEOUT).unwrap();
}

/// A server on `addr` (a wildcard address, port 0) and its port.
fn wildcard_server(addr: &str) -> (ServerHandle, u16) {
    let server = start(ServerConfig {
        udp: vec![addr.parse().unwrap()],
        threads: 1,
        ..ServerConfig::default()
    });
    let port = server.udp_addr().unwrap().port();
    (server, port)
}

/// A one-worker server on `socket`, passed as by a service manager.
fn inherited_server(socket: UdpSocket) -> ServerHandle {
    use ricochet::serve::{InheritedSocket, Server};
    let config = serve_support::with_io(ServerConfig {
        threads: 1,
        ..ServerConfig::default()
    });
    let server = Server::bind_with(config, vec![InheritedSocket::Udp(socket)])
        .expect("bind")
        .spawn()
        .expect("spawn");
    serve_support::check_io(&server);
    server
}

/// On a socket bound to a wildcard address, the echo leaves from the
/// address the client sent to, not from whichever one routing picks: all
/// of 127.0.0.0/8 is local, and a datagram to 127.0.0.2 used to be answered
/// from 127.0.0.1, which a connected client (or a NAT) drops.
#[test]
fn udp_echo_on_a_wildcard_socket_leaves_from_the_address_sent_to() {
    let (server, port) = wildcard_server("0.0.0.0:0");
    let c = client();
    for host in [[127, 0, 0, 2], [127, 0, 0, 1], [127, 3, 2, 1]] {
        expect_echo(&c, SocketAddr::from((host, port)), b"from where?");
    }
    // A connected client only sees replies from the address it sent to.
    let connected = UdpSocket::bind("127.0.0.1:0").unwrap();
    connected.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    connected.connect(("127.0.0.5", port)).unwrap();
    connected.send(b"connected").unwrap();
    let mut buf = [0u8; 64];
    let n = connected
        .recv(&mut buf)
        .expect("echo to a connected client");
    assert_eq!(&buf[..n], b"connected");
    wait_stats(&server, IO_TIMEOUT, "4 echoes counted", |s| {
        s.udp.echoed == 4
    });
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

/// The same on an IPv6 wildcard socket (only one IPv6 loopback address
/// exists, so this checks that the echo still leaves from it).
#[test]
fn udp_echo_on_an_ipv6_wildcard_socket_leaves_from_the_address_sent_to() {
    let c = UdpSocket::bind("[::1]:0")
        .expect("this test needs the IPv6 loopback ([::1]); CI machines have it");
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let (server, port) = wildcard_server("[::]:0");
    expect_echo(
        &c,
        SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port)),
        b"v6",
    );
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

/// An inherited dual-stack socket (`[::]`, not IPv6-only, as systemd's
/// `ListenDatagram=7` makes it) answers IPv4 clients from the address they
/// sent to as well.
#[test]
fn udp_echo_on_an_inherited_dual_stack_socket_leaves_from_the_address_sent_to() {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::IPV6, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    socket.set_only_v6(false).unwrap();
    socket
        .bind(&SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0)).into())
        .expect("this test needs IPv6 ([::] bound dual-stack); CI machines have it");
    socket.set_nonblocking(true).unwrap();
    let socket: UdpSocket = socket.into();
    let port = socket.local_addr().unwrap().port();
    let server = inherited_server(socket);
    let c = client();
    for host in [[127, 0, 0, 2], [127, 0, 0, 1]] {
        expect_echo(&c, SocketAddr::from((host, port)), b"dual stack");
    }
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

/// A datagram sent to a broadcast address is not answered (answering could
/// flood the link): on `lo`, 127.255.255.255 is the subnet-directed
/// broadcast of 127.0.0.0/8, which Linux delivers to a wildcard socket.
#[test]
fn udp_datagram_to_a_broadcast_address_is_dropped_as_not_unicast() {
    let (server, port) = wildcard_server("0.0.0.0:0");
    let c = client();
    socket2::SockRef::from(&c).set_broadcast(true).unwrap();
    c.send_to(b"to everyone", ("127.255.255.255", port))
        .unwrap();
    let s = wait_stats(&server, IO_TIMEOUT, "the broadcast handled", |s| {
        s.udp.echoed + s.udp.dropped.total() >= 1
    });
    assert_eq!(s.udp.dropped.not_unicast, 1, "{s:#?}");
    assert_eq!(s.udp.echoed, 0, "{s:#?}");
    // Unicast is still answered, and the broadcast's echo is not queued
    // before it (it would come back first).
    expect_echo(&c, SocketAddr::from(([127, 0, 0, 1], port)), b"just me");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}

/// A datagram that waited in an inherited socket's queue before the server
/// started (the one that made inetd start it, or that systemd held) is
/// answered from the address it was sent to as well, although the kernel
/// recorded less about it (no `ipi_spec_dst`).
#[test]
fn udp_datagram_queued_before_the_server_started_is_answered_from_its_destination() {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket.set_nonblocking(true).unwrap();
    let port = socket.local_addr().unwrap().port();
    let target = SocketAddr::from(([127, 0, 0, 2], port));
    let c = client();
    c.send_to(b"early", target).unwrap();
    let server = inherited_server(socket);
    let mut buf = [0u8; 64];
    let (n, from) = c.recv_from(&mut buf).expect("echo of the early datagram");
    assert_eq!((&buf[..n], from), (&b"early"[..], target));
    expect_echo(&c, target, b"later");
    server.shutdown();
    server.join_within(STOP_TIMEOUT).unwrap();
}
