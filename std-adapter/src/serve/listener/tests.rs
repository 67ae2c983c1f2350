use std::io::ErrorKind;
use std::net::TcpStream;

use super::*;

#[test]
#[cfg(any(target_os = "linux", target_os = "android"))]
fn reset_connection_has_nothing_left_to_deliver() {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let peer = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    peer.set_recv_buffer_size(4096).unwrap();
    peer.connect(&l.local_addr().unwrap().into()).unwrap();
    let (mut ours, _) = l.accept().unwrap();
    ours.set_nonblocking(true).unwrap();
    // The peer reads nothing: what does not fit its window stays unacknowledged.
    let chunk = [7u8; 64 * 1024];
    while ours.write(&chunk).is_ok() {}
    assert!(tcp_unacknowledged(&ours) > 0);
    peer.set_linger(Some(std::time::Duration::ZERO)).unwrap();
    drop(peer);
    ours.set_nonblocking(false).unwrap();
    ours.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let mut b = [0u8; 1];
    assert_eq!(
        ours.read(&mut b).map_err(|e| e.kind()),
        Err(ErrorKind::ConnectionReset)
    );
    // SIOCOUTQ still counts the bytes; none of them can be delivered.
    assert_eq!(tcp_unacknowledged(&ours), 0);
}

#[test]
fn accept_error_of_the_connection_retries_and_a_refusal_pauses() {
    for errno in [libc::ECONNABORTED, libc::EINTR, libc::EAGAIN, libc::EPROTO] {
        assert!(!accept_error_pauses(Some(errno)), "{errno}");
    }
    for errno in [
        libc::EMFILE,
        libc::ENFILE,
        libc::ENOBUFS,
        libc::ENOMEM,
        libc::EPERM,
        libc::EINVAL,
    ] {
        assert!(accept_error_pauses(Some(errno)), "{errno}");
    }
    assert!(accept_error_pauses(
        io::Error::other("no errno").raw_os_error()
    ));
}

fn local() -> SocketAddr {
    "127.0.0.1:0".parse().unwrap()
}

/// `net.core.rmem_max`: what `SO_RCVBUF` may ask for without `CAP_NET_ADMIN`.
fn rmem_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .expect("read rmem_max")
        .trim()
        .parse()
        .expect("rmem_max")
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .expect("status")
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|v| v.split_whitespace().next().map(|uid| uid == "0"))
        .unwrap_or(false)
}

#[test]
fn udp_receive_buffer_grows_to_what_was_asked_within_the_cap() {
    let (_, socket) = bind_udp(local()).expect("bind");
    let before = receive_buffer(&socket).expect("size");
    let want = 1 << 20;
    let got = raise_udp_receive_buffer(&socket, want).expect("raise");
    assert!(
        got >= want.min(rmem_max()) && got > before,
        "asked {want}, had {before}, got {got} (rmem_max {})",
        rmem_max()
    );
}

#[test]
fn udp_receive_buffer_goes_past_rmem_max_as_root() {
    // CI runs as root (as the privilege tests require): say so, never skip.
    assert!(is_root(), "this test needs root (SO_RCVBUFFORCE)");
    let (_, socket) = bind_udp(local()).expect("bind");
    let want = (2 * rmem_max()).min(1 << 30);
    let got = raise_udp_receive_buffer(&socket, want).expect("raise");
    assert!(got >= want, "asked {want} as root, got {got}");
}

#[test]
fn busy_port_is_refused_even_to_a_reuseport_group_of_the_same_user() {
    let first = bind_tcp(local(), 16, AcceptStrategy::ReusePort, 2).expect("first group");
    for (strategy, workers) in [
        (AcceptStrategy::ReusePort, 2),
        (AcceptStrategy::ReusePort, 1),
        (AcceptStrategy::Shared, 2),
    ] {
        match bind_tcp(first.addr, 16, strategy, workers) {
            Err(BindError::AddrInUse { endpoint }) => {
                assert_eq!(endpoint, Endpoint::Tcp(first.addr));
            }
            other => panic!("{strategy:?} x{workers}: expected AddrInUse, got {other:?}"),
        }
    }
}

#[test]
fn reuseport_group_spreads_connections_over_every_socket() {
    let group = bind_tcp(local(), 256, AcceptStrategy::ReusePort, 2).expect("group");
    assert_eq!(group.sockets.len(), 2);
    let mut accepted = [0usize; 2];
    let mut clients = Vec::new();
    // The kernel hashes each connection (by source port) onto one socket
    // of the group: 100 connections all on one of two sockets would mean
    // the group is broken (or a chance of 2^-99).
    while accepted.contains(&0) {
        assert!(clients.len() < 100, "accepted per socket: {accepted:?}");
        clients.push(TcpStream::connect(group.addr).expect("connect"));
        for (i, l) in group.sockets.iter().enumerate() {
            loop {
                match l.accept() {
                    Ok(_) => accepted[i] += 1,
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) => panic!("accept: {e}"),
                }
            }
        }
    }
}
