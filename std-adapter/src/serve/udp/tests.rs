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
