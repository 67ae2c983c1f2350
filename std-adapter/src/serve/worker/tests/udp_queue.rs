//! A UDP socket's receive queue overflowing: every datagram is received or
//! counted as a queue drop, whichever way the worker reads it.

use super::*;

/// One UDP socket with the smallest receive queue the kernel allows, its
/// queue's drops reported (as the server sets its sockets up): 100
/// datagrams overflow it, then markers follow until one is echoed (a
/// datagram queued after the drops carries their count; one sent while
/// the queue is still full is dropped too). `serve` serves the socket
/// once. Returns the worker and how many datagrams were sent.
#[cfg(target_os = "linux")]
fn overflow_a_udp_queue(mut serve: impl FnMut(&mut Worker)) -> (Worker, u64) {
    let (mut w, _, addrs) = worker_with_tuned_udp(0, 1, 8, |s| {
        socket2::SockRef::from(s)
            .set_recv_buffer_size(1)
            .expect("SO_RCVBUF");
        crate::serve::udp::report_destinations(s).expect("report destinations");
    });
    let c = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_nonblocking(true).unwrap();
    let mut sent = 100;
    for _ in 0..sent {
        c.send_to(&[0u8; 64], addrs[0]).unwrap();
    }
    let deadline = std::time::Instant::now() + StdDuration::from_secs(10);
    'marker: loop {
        assert!(
            std::time::Instant::now() < deadline,
            "no marker echoed in 10 s"
        );
        c.send_to(b"marker", addrs[0]).unwrap();
        sent += 1;
        serve(&mut w);
        let mut b = [0u8; 64];
        while let Ok((n, _)) = c.recv_from(&mut b) {
            if &b[..n] == b"marker" {
                break 'marker;
            }
        }
    }
    (w, sent)
}

/// What the worker counted of a UDP queue's overflow: every datagram sent
/// was either received or dropped by the kernel, and the server's stats say so.
#[cfg(target_os = "linux")]
fn assert_every_datagram_received_or_counted_dropped(w: &mut Worker, sent: u64) {
    let drops = w.counters.udp_queue_drops;
    assert!(drops > 0, "no drop counted: {:?}", w.counters.udp);
    assert_eq!(
        w.counters.udp.received + drops,
        sent,
        "{:?}",
        w.counters.udp
    );
    w.publish();
    assert_eq!(w.shared.stats.snapshot().udp_queue_drops, drops);
}

#[cfg(target_os = "linux")]
#[test]
fn udp_queue_overflow_read_on_the_sockets_event_is_counted_as_queue_drops() {
    let (mut w, sent) = overflow_a_udp_queue(turn);
    assert_every_datagram_received_or_counted_dropped(&mut w, sent);
}

#[cfg(target_os = "linux")]
#[test]
fn udp_queue_overflow_read_as_a_leftover_of_the_budget_is_counted_as_queue_drops() {
    // The socket is served only as left over from an earlier turn's
    // budget (`pending`), never on its event.
    let (mut w, sent) = overflow_a_udp_queue(|w| {
        w.udp[0].pending = true;
        let now = w.clock.now();
        w.serve_leftovers(now);
    });
    assert_every_datagram_received_or_counted_dropped(&mut w, sent);
}
