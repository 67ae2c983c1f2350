//! The datagram loop over real loopback sockets.

use std::net::UdpSocket as StdUdpSocket;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use ricochet_core::{DatagramPolicy, PolicyConfig};

use super::*;

fn endpoint(max: usize) -> UdpEndpoint {
    let std = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    std.set_nonblocking(true).unwrap();
    let addr = std.local_addr().unwrap();
    let policy = PolicyConfig {
        max_datagram: max,
        ..PolicyConfig::DEFAULT
    };
    UdpEndpoint::new(
        UdpSocket::from_std(std),
        addr,
        Box::new(DatagramPolicy::new(policy)),
        max,
    )
}

fn client() -> StdUdpSocket {
    let c = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(StdDuration::from_secs(5))).unwrap();
    c
}

/// Serves until `n` datagrams were counted (they may still be in flight
/// on loopback when the first call runs); bounded.
fn serve_until(e: &mut UdpEndpoint, c: &mut DatagramCounters, n: u64) {
    let deadline = StdInstant::now() + StdDuration::from_secs(5);
    while c.received < n {
        assert!(
            StdInstant::now() < deadline,
            "only {} of {n} datagrams arrived",
            c.received
        );
        e.serve(Instant::ZERO, c);
    }
}

#[test]
fn queued_datagrams_are_echoed_with_one_receive_call_per_batch() {
    let mut e = endpoint(1472);
    let c = client();
    for i in 0..5u8 {
        c.send_to(&[i; 100], e.addr).unwrap();
    }
    // Wait until all five are queued (loopback delivers synchronously on
    // send, but be safe): peek at the server socket's queue.
    let mut counters = DatagramCounters::default();
    serve_until(&mut e, &mut counters, 5);
    let mut buf = [0u8; 200];
    for i in 0..5u8 {
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &[i; 100], "echoed whole and in order");
    }
    assert_eq!(counters.echoed, 5);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    assert_eq!(
        e.receive_calls, 1,
        "five queued datagrams, one short batch: no receive wasted on EAGAIN"
    );
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn ping_pong_costs_one_receive_call_per_datagram() {
    // Regression: reading until EAGAIN cost ~1.55 receives per datagram.
    let mut e = endpoint(1472);
    let c = client();
    let mut counters = DatagramCounters::default();
    let mut buf = [0u8; 64];
    for i in 0..200u64 {
        c.send_to(&i.to_be_bytes(), e.addr).unwrap();
        serve_until(&mut e, &mut counters, i + 1);
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &i.to_be_bytes());
    }
    assert_eq!(e.receive_calls, 200);
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn oversize_datagram_is_dropped_and_reported_with_its_real_length() {
    let mut e = endpoint(1472);
    let c = client();
    c.send_to(&[7u8; 2000], e.addr).unwrap();
    c.send_to(&[8u8; 1472], e.addr).unwrap();
    let mut counters = DatagramCounters::default();
    serve_until(&mut e, &mut counters, 2);
    assert_eq!(
        e.last_drop,
        Some(DropReason::Oversize {
            len: 2000,
            limit: 1472
        }),
        "the real length (MSG_TRUNC), not max + 1"
    );
    assert_eq!((counters.dropped.oversize, counters.echoed), (1, 1));
    let mut buf = [0u8; 4096];
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(
        &buf[..n],
        &[8u8; 1472][..],
        "only the datagram within the limit"
    );
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn batch_with_one_refused_echo_still_sends_the_echoes_after_it() {
    // Regression: the first error of a `sendmmsg` batch dropped every echo
    // after it, so one datagram from a source the kernel will not answer
    // (a subnet-broadcast source, a firewall's reject, no route back)
    // cost up to 31 other clients their echoes.
    let server = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let c = client();
    for i in 0..3u8 {
        c.send_to(&[i; 10], server.local_addr().unwrap()).unwrap();
    }
    let mut batch = mmsg::Batch::new(1472);
    let deadline = StdInstant::now() + StdDuration::from_secs(5);
    let mut n = 0;
    while n < 3 {
        assert!(StdInstant::now() < deadline, "only {n} of 3 arrived");
        n = batch.recv(&server).unwrap().max(n);
    }
    // Without SO_BROADCAST the kernel refuses (EACCES) to send to the
    // limited broadcast address: a per-datagram refusal like the others.
    batch.pretend_source(1, "255.255.255.255:9".parse().unwrap());
    let mut fates = Vec::new();
    batch.send(&server, &[0, 1, 2], |got, result| {
        fates.push((got.len, result.map_err(|e| e.raw_os_error())))
    });
    assert_eq!(
        fates,
        [(10, Ok(())), (10, Err(Some(libc::EACCES))), (10, Ok(()))],
        "the refused echo fails alone"
    );
    let mut buf = [0u8; 64];
    let (got, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..got], &[0u8; 10]);
    let (got, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(
        &buf[..got],
        &[2u8; 10],
        "the echo after the refused one was sent"
    );
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn empty_queue_is_received_as_nothing_in_one_call_and_leaves_nothing_pending() {
    let server = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let mut batch = mmsg::Batch::new(1472);
    assert_eq!(
        batch.recv(&server).expect("EAGAIN is not an error"),
        0,
        "nothing queued"
    );
    let mut e = endpoint(1472);
    let mut counters = DatagramCounters::default();
    e.serve(Instant::ZERO, &mut counters);
    assert_eq!(e.receive_calls, 1, "one call learns the queue is empty");
    assert!(!e.pending, "nothing left to serve");
    assert_eq!(counters.received, 0);
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn batch_debug_names_its_slot_size() {
    let shown = format!("{:?}", mmsg::Batch::new(100));
    assert!(shown.contains("slot: 100"), "{shown}");
}

/// An endpoint on `0.0.0.0` with a port of its own, the destination
/// reports on, as the server sets it up.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn wildcard_endpoint() -> UdpEndpoint {
    let std = StdUdpSocket::bind("0.0.0.0:0").unwrap();
    std.set_nonblocking(true).unwrap();
    report_destinations(&std).unwrap();
    let addr = std.local_addr().unwrap();
    UdpEndpoint::new(
        UdpSocket::from_std(std),
        addr,
        Box::new(DatagramPolicy::new(PolicyConfig::DEFAULT)),
        1472,
    )
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn wildcard_batch_echoes_each_datagram_from_the_address_it_was_sent_to() {
    // All of 127.0.0.0/8 is local; without the destination each echo
    // would leave from 127.0.0.1, which routing picks.
    let mut e = wildcard_endpoint();
    let port = e.addr.port();
    let c = client();
    let targets =
        [[127, 0, 0, 2], [127, 0, 0, 1], [127, 3, 2, 1]].map(|h| SocketAddr::from((h, port)));
    for (i, &to) in targets.iter().enumerate() {
        c.send_to(&[i as u8; 20], to).unwrap();
    }
    let mut counters = DatagramCounters::default();
    serve_until(&mut e, &mut counters, 3);
    let mut buf = [0u8; 64];
    for (i, &to) in targets.iter().enumerate() {
        let (n, from) = c.recv_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&[i as u8; 20][..], to), "echo {i}");
    }
    assert_eq!(counters.echoed, 3);
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn wildcard_datagram_to_the_subnet_broadcast_is_dropped_and_the_unicast_after_it_echoed() {
    // 127.255.255.255 is 127.0.0.0/8's broadcast: its class is unicast,
    // only `ipi_spec_dst` (127.0.0.1) tells it apart.
    let mut e = wildcard_endpoint();
    let port = e.addr.port();
    let c = client();
    socket2::SockRef::from(&c).set_broadcast(true).unwrap();
    c.send_to(b"to everyone", ("127.255.255.255", port))
        .unwrap();
    let unicast = SocketAddr::from(([127, 0, 0, 1], port));
    c.send_to(b"just me", unicast).unwrap();
    let mut counters = DatagramCounters::default();
    serve_until(&mut e, &mut counters, 2);
    assert_eq!(
        (counters.dropped.not_unicast, counters.echoed),
        (1, 1),
        "{counters:?}"
    );
    assert_eq!(e.last_drop, Some(DropReason::NotUnicast));
    let mut buf = [0u8; 64];
    let (n, from) = c.recv_from(&mut buf).unwrap();
    assert_eq!((&buf[..n], from), (&b"just me"[..], unicast));
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn datagrams_a_full_receive_queue_dropped_are_counted_from_the_next_one_read() {
    let std = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    std.set_nonblocking(true).unwrap();
    // The smallest queue the kernel allows: a few small datagrams.
    socket2::SockRef::from(&std)
        .set_recv_buffer_size(1)
        .unwrap();
    report_destinations(&std).unwrap();
    let addr = std.local_addr().unwrap();
    let mut e = UdpEndpoint::new(
        UdpSocket::from_std(std),
        addr,
        Box::new(DatagramPolicy::new(PolicyConfig::DEFAULT)),
        1472,
    );
    let c = client();
    c.set_nonblocking(true).unwrap();
    let mut sent = 100;
    for _ in 0..sent {
        c.send_to(&[0u8; 64], addr).unwrap();
    }
    // A datagram queued after the drops carries their count; until the
    // queue has room again it may be dropped too: send another.
    let mut counters = DatagramCounters::default();
    let mut buf = [0u8; 64];
    let deadline = StdInstant::now() + StdDuration::from_secs(5);
    'marker: loop {
        assert!(StdInstant::now() < deadline, "no echo of a marker");
        c.send_to(b"marker", addr).unwrap();
        sent += 1;
        let retry = StdInstant::now() + StdDuration::from_millis(200);
        while StdInstant::now() < retry {
            e.serve(Instant::ZERO, &mut counters);
            while let Ok((n, _)) = c.recv_from(&mut buf) {
                if &buf[..n] == b"marker" {
                    break 'marker;
                }
            }
        }
    }
    let dropped = e.take_queue_drops();
    assert!(dropped > 0, "the queue never overflowed: {counters:?}");
    assert_eq!(counters.received + dropped, sent, "{counters:?}");
    assert_eq!(e.take_queue_drops(), 0, "taken");
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn refused_echo_after_a_larger_batch_sends_exactly_the_echoes_asked_for() {
    // The retry after a refusal hands the kernel only what is left of
    // this call's echoes, never headers beyond them (left by an earlier,
    // larger call): nothing duplicated.
    let server = StdUdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_nonblocking(true).unwrap();
    let c = client();
    for i in 0..5u8 {
        c.send_to(&[i; 10], server.local_addr().unwrap()).unwrap();
    }
    let mut batch = mmsg::Batch::new(1472);
    let deadline = StdInstant::now() + StdDuration::from_secs(5);
    let mut n = 0;
    while n < 5 {
        assert!(StdInstant::now() < deadline, "only {n} of 5 arrived");
        n = batch.recv(&server).unwrap().max(n);
    }
    let mut sent = 0;
    batch.send(&server, &[0, 1, 2, 3, 4], |_, result| {
        sent += usize::from(result.is_ok())
    });
    assert_eq!(sent, 5);
    let mut buf = [0u8; 64];
    for i in 0..5u8 {
        let (got, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..got], &[i; 10]);
    }
    batch.pretend_source(1, "255.255.255.255:9".parse().unwrap());
    let mut fates = Vec::new();
    batch.send(&server, &[0, 1, 2], |got, result| {
        fates.push((got.len, result.is_ok()))
    });
    assert_eq!(fates, [(10, true), (10, false), (10, true)]);
    for i in [0u8, 2] {
        let (got, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..got], &[i; 10]);
    }
    // Loopback delivers on send: anything more would be queued already.
    c.set_nonblocking(true).unwrap();
    let extra = c.recv_from(&mut buf);
    assert!(
        extra
            .as_ref()
            .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock),
        "an echo more than asked for: {extra:?}"
    );
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn full_batches_are_served_up_to_the_budget_and_the_rest_left_pending() {
    let mut e = endpoint(1472);
    let c = client();
    // Room for every datagram and echo, on both sides.
    socket2::SockRef::from(&c)
        .set_recv_buffer_size(1 << 20)
        .unwrap();
    socket2::SockRef::from(&e.socket)
        .set_recv_buffer_size(1 << 20)
        .unwrap();
    let total = BUDGET + 8;
    for i in 0..total as u32 {
        c.send_to(&i.to_be_bytes(), e.addr).unwrap();
    }
    let mut counters = DatagramCounters::default();
    e.serve(Instant::ZERO, &mut counters);
    assert_eq!(counters.received, BUDGET as u64, "one budget's worth");
    assert!(e.pending, "the rest waits for the next turn");
    assert_eq!(
        e.receive_calls,
        (BUDGET / mmsg::BATCH) as u64,
        "full batches"
    );
    e.serve(Instant::ZERO, &mut counters);
    assert_eq!(counters.received, total as u64);
    assert!(!e.pending, "a short batch: the queue is empty");
    assert_eq!(e.receive_calls, (BUDGET / mmsg::BATCH) as u64 + 1);
    let mut buf = [0u8; 64];
    for i in 0..total as u32 {
        let (n, _) = c.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], &i.to_be_bytes(), "echo {i} in order");
    }
}

/// A UDP datagram from `source` to `to`, IP header included, for a raw
/// socket (`IPPROTO_RAW`: the kernel fills in the header's checksum; a
/// UDP checksum of 0 means none).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn raw_udp(source: SocketAddr, to: SocketAddr, payload: &[u8]) -> Vec<u8> {
    let (SocketAddr::V4(source), SocketAddr::V4(to)) = (source, to) else {
        panic!("IPv4 only");
    };
    let udp_len = 8 + payload.len() as u16;
    let mut p = vec![0x45, 0];
    p.extend_from_slice(&(20 + udp_len).to_be_bytes());
    p.extend_from_slice(&[0, 0, 0, 0, 64, libc::IPPROTO_UDP as u8, 0, 0]);
    p.extend_from_slice(&source.ip().octets());
    p.extend_from_slice(&to.ip().octets());
    p.extend_from_slice(&source.port().to_be_bytes());
    p.extend_from_slice(&to.port().to_be_bytes());
    p.extend_from_slice(&udp_len.to_be_bytes());
    p.extend_from_slice(&[0, 0]);
    p.extend_from_slice(payload);
    p
}

#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn echo_the_kernel_refuses_is_counted_as_a_failed_send_and_the_next_one_still_leaves() {
    use socket2::{Domain, Protocol, Socket, Type};
    // A source whose class is unicast but which is 127.0.0.0/8's
    // broadcast: the kernel refuses to answer it (EACCES, no
    // SO_BROADCAST). Only a raw socket can send from there.
    let raw = Socket::new(
        Domain::IPV4,
        Type::RAW,
        Some(Protocol::from(libc::IPPROTO_RAW)),
    )
    .expect("this test needs root (a raw socket); CI runs as root");
    let mut e = endpoint(1472);
    let broadcast: SocketAddr = "127.255.255.255:4242".parse().unwrap();
    let packet = raw_udp(broadcast, e.addr, b"from everyone");
    raw.send_to(&packet, &e.addr.into()).unwrap();
    let c = client();
    c.send_to(b"after", e.addr).unwrap();
    let mut counters = DatagramCounters::default();
    serve_until(&mut e, &mut counters, 2);
    assert_eq!(
        (counters.dropped.send_failed, counters.dropped.send_full),
        (1, 0),
        "refused, not a full buffer: {counters:?}"
    );
    assert_eq!(e.last_drop, Some(DropReason::SendFailed));
    assert_eq!(counters.echoed, 1);
    let mut buf = [0u8; 64];
    let (n, _) = c.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"after");
}

/// A receive error that every call reports (here: the descriptor made a
/// pipe's, `ENOTSOCK`) ends the serving at the budget instead of
/// spinning: the call returns, with the endpoint still pending.
#[cfg(target_os = "linux")]
#[test]
fn receive_error_that_persists_ends_at_the_budget() {
    use std::os::fd::AsRawFd;

    let mut e = endpoint(1472);
    let (pipe, _other) = std::io::pipe().expect("pipe");
    // SAFETY: both descriptors are open; the socket's number now names a
    // copy of the pipe, which the endpoint closes when dropped.
    #[allow(unsafe_code)]
    let replaced = unsafe { libc::dup2(pipe.as_raw_fd(), e.socket.as_raw_fd()) };
    assert_eq!(replaced, e.socket.as_raw_fd());
    let (done, finished) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut c = DatagramCounters::default();
        e.serve(Instant::ZERO, &mut c);
        let _ = done.send((e.pending, e.receive_calls));
    });
    // Spinning, it would never answer (the thread is then left behind).
    let (pending, calls) = finished
        .recv_timeout(StdDuration::from_secs(10))
        .expect("serve returned");
    assert!(pending, "out of budget: served again at the next turn");
    assert_eq!(calls, BUDGET as u64, "one call per unit of budget");
}
