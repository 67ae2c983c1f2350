//! How a peer's end is counted: its reset as `peer_reset`, its silence as
//! `timed_out` after the socket timeout, a pool freed after a reset.

use super::*;

#[test]
fn serving_peer_reset_is_counted_as_peer_reset_not_timed_out() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    let handle = echo_once(&mut sim, 40000, b"hello");
    host_reset_is_counted_as_peer_reset(&mut sim, handle);
    assert_eq!(sim.node.stats().tcp.active(), 0);
}

/// The host resets its connection `handle`: the node aborts the session
/// and counts a reset, not a timeout.
fn host_reset_is_counted_as_peer_reset(
    sim: &mut Sim<4, 6, 1024>,
    handle: smoltcp::iface::SocketHandle,
) {
    sim.host.tcp(handle).abort();
    let aborted = sim.run(SECOND, &mut |_, node, _| {
        Flow::until(None, node.stats().tcp.aborted.total() == 1)
    });
    assert!(aborted);
    let tcp = sim.node.stats().tcp;
    assert_eq!(
        (tcp.aborted.peer_reset, tcp.aborted.timed_out),
        (1, 0),
        "{tcp:?}"
    );
}

/// A peer that falls silent while the node has echo in flight: smoltcp
/// gives up after its socket timeout (60 s) and the node counts it as
/// timed out, not reset, then serves the next client.
#[test]
fn serving_silent_peer_is_counted_as_timed_out_after_the_socket_timeout() {
    silent_peer_times_out(false);
}

/// The same while frames keep arriving for others when the timeout fires:
/// the poll that sends the socket's last retransmission takes in more
/// frames after it, and the death is still seen as smoltcp's timeout.
#[test]
fn serving_silent_peer_timing_out_between_two_frames_is_counted_as_timed_out() {
    silent_peer_times_out(true);
}

/// See the two tests above; `busy`: two datagrams from another source
/// wait for the node at every step around the timeout.
fn silent_peer_times_out(busy: bool) {
    use std::cell::Cell;
    use std::rc::Rc;
    use support::sim::{HOST_MAC, NODE_IP, NODE_MAC};

    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    let handle = echo_once(&mut sim, 40000, b"hello");
    // The node's frames are lost from now on: its echo of "more" stays in
    // flight. Then the host's are lost too: the peer falls silent.
    let (node_cut, host_cut) = (Rc::new(Cell::new(true)), Rc::new(Cell::new(false)));
    let last_heard = Rc::new(Cell::new(0u64));
    let (a, b, heard) = (node_cut.clone(), host_cut.clone(), last_heard.clone());
    sim.node_dev.filter_sent(move |_, _| !a.get());
    sim.host.device.filter_sent(move |now, _| {
        if !b.get() {
            heard.set(now.total_micros() as u64);
        }
        !b.get()
    });
    sim.host.tcp(handle).send_slice(b"more").unwrap();
    let echoed = sim.run(SECOND, &mut |_, node, _| {
        Flow::until(None, node.stats().tcp.bytes_out == 9)
    });
    assert!(echoed);
    host_cut.set(true);
    // smoltcp gives up 60 s after the last frame it heard from the peer.
    let timeout_at = last_heard.get() + 60 * SECOND;
    let other = support::frames::udp(
        (HOST_MAC, NODE_MAC),
        (smoltcp::wire::Ipv4Address::new(192, 168, 69, 9), 50000),
        (NODE_IP, 9),
        b"for nobody",
    );
    let node_wire = sim.node_dev.watcher();
    let mut injected = 0;
    let timed_out = sim.run(120 * SECOND, &mut |_, node, now| {
        let now = now.as_micros();
        let aborted = node.stats().tcp.aborted.total() == 1;
        if busy && !aborted && now + 100 >= timeout_at {
            injected += 2;
            node_wire.inject(other.clone());
            node_wire.inject(other.clone());
        }
        // Wake up just before the timeout to start the traffic.
        let wake = (busy && now + 100 < timeout_at)
            .then(|| ricochet_core::Instant::from_micros(timeout_at - 100));
        Flow::until(wake, aborted)
    });
    assert!(timed_out, "{:?}", sim.node.stats().tcp);
    let tcp = sim.node.stats().tcp;
    assert_eq!(
        (tcp.aborted.timed_out, tcp.aborted.peer_reset),
        (1, 0),
        "{tcp:?}"
    );
    assert!(
        sim.now >= timeout_at,
        "gave up {} us early",
        timeout_at - sim.now
    );
    if busy {
        assert!(injected > 0);
        // They went through the node, as UDP datagrams nobody listens to.
        assert_eq!(sim.node.stats().udp.received, 0);
    }
    // The socket serves again.
    node_cut.set(false);
    host_cut.set(false);
    sim.host.tcp(handle).abort();
    sim.idle(SECOND);
    a_new_client_is_served(&mut sim, 42000);
}

/// A peer that stops reading keeps the connection alive (it answers the
/// node's zero-window probes, which the node cannot see) for longer than
/// the socket timeout, then resets it: that is a reset, not a timeout,
/// although the node saw no progress for that long.
#[test]
fn serving_peer_that_stops_reading_then_resets_after_the_socket_timeout_is_counted_as_peer_reset() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    let handle = sim.host.tcp_connect((1024, 8192), echo_endpoint(), 40000);
    // 6000 bytes out, none read back: the host's window closes, the node's
    // buffers fill, and the node probes the closed window from then on.
    let mut sent = 0;
    let stuck = sim.run(5 * SECOND, &mut |host, node, _| {
        let socket = host.tcp(handle);
        if socket.may_send() && sent < 6000 {
            sent += socket.send_slice(&[0x42; 6000][sent..]).unwrap();
        }
        Flow::until(None, node.session_buffers().max() == Some(1024))
    });
    assert!(stuck, "{:?}", sim.node.stats().tcp);
    sim.idle(70 * SECOND);
    assert_eq!(sim.node.stats().tcp.aborted.total(), 0, "still open");
    host_reset_is_counted_as_peer_reset(&mut sim, handle);
}

/// Every socket serving a client, one client resets: the node's RST-free
/// abort leaves nothing to send, so its socket listens again at once (not
/// after the linger time) and a new client is served within two seconds.
#[test]
fn full_pool_after_a_peer_reset_serves_a_new_client_before_the_linger_time() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    let handles: Vec<_> = (0..4)
        .map(|i| echo_once(&mut sim, 40100 + i, b"hold"))
        .collect();
    assert_eq!(sim.node.stats().tcp.active(), 4);
    host_reset_is_counted_as_peer_reset(&mut sim, handles[0]);
    a_new_client_is_served(&mut sim, 40200);
}
