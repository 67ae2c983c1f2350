//! Timeouts: the idle timeout, forged and half-open handshakes, and the node
//! sleeping until its next deadline.

use super::*;

/// The node closes first (FIN), the client answers with its own: the
/// node's socket ends in TIME-WAIT and listens again from there, once it
/// acknowledged that FIN (smoltcp delays ACKs: listening first dropped the
/// ACK, and the client's retransmitted FIN got a reset 1 s later).
#[test]
fn idle_session_past_its_idle_timeout_is_closed_and_the_socket_rearmed() {
    let (mut sim, resets, handle) = client_of_a_node_idle_after(10);
    let start = sim.now;
    let connected = sim.run(SECOND, &mut |_, node, _| {
        Flow::until(None, node.stats().tcp.active() == 1)
    });
    assert!(connected);
    // Idle: the node asks to be woken at the session's idle deadline, not before.
    sim.idle(100_000);
    let delay = sim.node_delay.expect("a session deadline").total_micros();
    assert!(
        delay > 9 * SECOND && delay <= 10 * SECOND,
        "delay {delay} us"
    );
    let steps = sim.steps;
    let closed = sim.run(20 * SECOND, &mut |host, node, _| {
        let socket = host.tcp(handle);
        if socket.state() == tcp::State::CloseWait {
            socket.close();
        }
        Flow::until(None, node.stats().tcp.closed.idle_timeout == 1)
    });
    assert!(closed);
    assert!(sim.now - start >= 10 * SECOND);
    // The node slept through the idle time: a handful of steps, not one per tick.
    assert!(sim.steps - steps < 50, "{} steps", sim.steps - steps);
    client_closes_without_a_reset(&mut sim, handle, &resets);
    // Re-armed: another client is served.
    a_new_client_is_served(&mut sim, 42000);
    assert_eq!(resets.get(), 0);
}

/// A node whose sessions end after `idle_secs` without traffic, the resets
/// it sends from the echo port (counted), and a client connecting to it.
fn client_of_a_node_idle_after(
    idle_secs: u64,
) -> (
    Sim<4, 6, 1024>,
    std::rc::Rc<std::cell::Cell<u32>>,
    smoltcp::iface::SocketHandle,
) {
    let mut config = server_config();
    config.session.idle_timeout = Some(Duration::from_secs(idle_secs));
    let mut sim = Sim::<4, 6, 1024>::new(config);
    let resets = std::rc::Rc::new(std::cell::Cell::new(0u32));
    let counted = resets.clone();
    sim.node_dev.filter_sent(move |_, frame| {
        if let Some(seg) = support::frames::tcp_segment(frame) {
            counted.set(counted.get() + u32::from(seg.src_port == 7 && seg.rst));
        }
        true
    });
    let handle = sim.host.tcp_connect((4096, 4096), echo_endpoint(), 40000);
    (sim, resets, handle)
}

/// The node acknowledged the client's FIN before it listened again: the
/// client is closed at once, not after retransmitting its FIN (in 1 s)
/// into a listener, which answers with a reset.
fn client_closes_without_a_reset(
    sim: &mut Sim<4, 6, 1024>,
    handle: smoltcp::iface::SocketHandle,
    resets: &std::cell::Cell<u32>,
) {
    let acked = sim.run(SECOND / 2, &mut |host, _, _| {
        Flow::until(None, host.tcp(handle).state() == tcp::State::Closed)
    });
    assert!(acked, "client left in {}", sim.host.tcp(handle).state());
    assert_eq!(resets.get(), 0, "the node reset a cleanly closed peer");
}

/// The node closes first; the client's last bytes ride on its FIN, which
/// smoltcp acknowledges after its delayed-ACK time, not in the next
/// sending round: the node listens again only after that ACK went out.
#[test]
fn client_fin_with_its_last_bytes_after_the_node_closed_is_acknowledged_not_reset() {
    let (mut sim, resets, handle) = client_of_a_node_idle_after(1);
    let closed = sim.run(5 * SECOND, &mut |host, node, _| {
        let socket = host.tcp(handle);
        if socket.state() == tcp::State::CloseWait {
            socket.send_slice(b"last words").unwrap();
            socket.close();
        }
        Flow::until(None, node.stats().tcp.closed.idle_timeout == 1)
    });
    assert!(closed);
    client_closes_without_a_reset(&mut sim, handle, &resets);
    a_new_client_is_served(&mut sim, 42000);
}

/// Four SYNs to the echo port from an on-link address nobody owns: every
/// socket answers, and no ACK ever comes.
fn syn_flood_from_nobody(sim: &mut Sim<4, 6, 1024>) {
    use smoltcp::wire::Ipv4Address;
    use support::sim::{HOST_MAC, NODE_IP, NODE_MAC};

    let ghost = Ipv4Address::new(192, 168, 69, 77);
    for port in 5000..5004 {
        sim.node_dev.inject(support::frames::syn(
            (HOST_MAC, NODE_MAC),
            (ghost, port),
            (NODE_IP, 7),
        ));
    }
}

/// A healthy client that falls quiet keeps its connection until the
/// session's idle timeout (300 s by default), not smoltcp's 60 s socket
/// timeout: the node's keep-alives get answered. (It was aborted as
/// `TimedOut` after 60 s, and the client read a plain end of stream.)
#[test]
fn idle_healthy_client_outlives_the_socket_timeout_until_the_idle_timeout() {
    let config = server_config();
    let idle = config
        .session
        .idle_timeout
        .expect("an idle timeout")
        .as_micros();
    let socket_timeout = config.tcp.timeout.expect("a socket timeout").as_micros();
    assert!(
        idle > 2 * socket_timeout,
        "the test needs idle {idle} > 2 x {socket_timeout}"
    );
    let mut sim = Sim::<4, 6, 1024>::new(config);
    let handle = echo_once(&mut sim, 40000, b"hello");
    let quiet_from = sim.now;
    // Three socket timeouts of silence from the client's application.
    let cut = sim.run(3 * socket_timeout, &mut |_, node, _| {
        Flow::until(None, node.stats().tcp.aborted.total() > 0)
    });
    let tcp = sim.node.stats().tcp;
    assert!(!cut && tcp.active() == 1, "{tcp:?}");
    // It still echoes...
    sim.host.tcp(handle).send_slice(b"again").unwrap();
    let echoed = sim.run(SECOND, &mut |_, node, _| {
        Flow::until(None, node.stats().tcp.bytes_out == 10)
    });
    assert!(echoed, "{:?}", sim.node.stats().tcp);
    // ...and the idle timeout, not the socket's, ends it.
    let closed = sim.run(idle + 10 * SECOND, &mut |host, node, _| {
        let socket = host.tcp(handle);
        if socket.state() == tcp::State::CloseWait {
            socket.close();
        }
        Flow::until(None, node.stats().tcp.closed.idle_timeout == 1)
    });
    let tcp = sim.node.stats().tcp;
    assert!(closed && tcp.aborted.total() == 0, "{tcp:?}");
    assert!(sim.now - quiet_from >= idle);
}

#[test]
fn forged_syns_that_never_complete_free_their_sockets_after_the_handshake_timeout() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    syn_flood_from_nobody(&mut sim);
    sim.idle(10_000);
    let mut refused = [connect(
        &mut sim,
        40000,
        probe(Mode::Raw, SizeRange::fixed(64), 5),
    )];
    assert!(sim.run(SECOND, &mut |host, _, now| drive_all(
        &mut refused,
        host,
        now
    )));
    assert_eq!(
        refused[0].phase,
        Phase::Refused,
        "every socket is in a handshake"
    );
    // After the handshake timeout (5 s) they listen again.
    sim.idle(5 * SECOND);
    assert_eq!(sim.node.stats().tcp_handshake_timeouts, 4);
    let mut served = [connect(
        &mut sim,
        40001,
        probe(Mode::Raw, SizeRange::fixed(64), 5),
    )];
    assert!(sim.run(SECOND, &mut |host, _, now| drive_all(
        &mut served,
        host,
        now
    )));
    assert!(served[0].passed(), "{:?}", served[0].phase);
    assert_eq!(sim.node.stats().tcp.accepted, 1);
}

#[test]
fn half_open_handshake_lets_the_node_sleep_until_its_timeout() {
    use smoltcp::wire::Ipv4Address;
    use support::sim::{HOST_MAC, NODE_IP, NODE_MAC};

    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    // A SYN from an on-link address nobody owns: no ACK ever comes.
    sim.node_dev.inject(support::frames::syn(
        (HOST_MAC, NODE_MAC),
        (Ipv4Address::new(192, 168, 69, 77), 5000),
        (NODE_IP, 7),
    ));
    let start = sim.steps;
    sim.idle(4 * SECOND);
    // Still in the handshake: the node woke for smoltcp's retries and the
    // handshake deadline, not in a busy loop.
    assert_eq!(sim.node.stats().tcp_handshake_timeouts, 0);
    let polls = sim.steps - start;
    assert!(polls < 200, "{polls} polls in 4 s of a half-open handshake");
    sim.idle(2 * SECOND);
    assert_eq!(sim.node.stats().tcp_handshake_timeouts, 1);
}

#[test]
fn handshakes_closed_by_the_socket_timeout_listen_again_before_the_handshake_timeout() {
    // smoltcp's own timeout (2 s) closes a half-open socket before the
    // node's handshake timeout (5 s) would.
    let mut config = server_config();
    config.tcp.timeout = Some(Duration::from_secs(2));
    let mut sim = Sim::<4, 6, 1024>::new(config);
    syn_flood_from_nobody(&mut sim);
    sim.idle(3 * SECOND);
    // Every socket listens again, though no handshake timed out.
    assert_eq!(sim.node.stats().tcp_handshake_timeouts, 0);
    let mut clients: Vec<StreamClient> = (0..4)
        .map(|i| {
            connect(
                &mut sim,
                40000 + i,
                probe(Mode::Raw, SizeRange::fixed(64), 5),
            )
        })
        .collect();
    assert!(sim.run(SECOND, &mut |host, _, now| drive_all(
        &mut clients,
        host,
        now
    )));
    let phases: Vec<Phase> = clients.iter().map(|c| c.phase).collect();
    assert!(clients.iter().all(StreamClient::passed), "{phases:?}");
    assert_eq!(sim.node.stats().tcp.accepted, 4);
}

/// A client that vanished (its frames lost, its ARP entry expired): the
/// idle timeout closes the session, the linger runs out, and the abort's
/// RST cannot go out (nobody answers ARP). The socket waits the linger
/// time for it, and the node sleeps meanwhile.
#[test]
fn reset_that_cannot_go_out_lets_the_node_sleep_until_the_linger_time() {
    let mut config = server_config();
    config.tcp.timeout = None;
    config.tcp.keep_alive = None;
    config.session.idle_timeout = Some(Duration::from_secs(70));
    let mut sim = Sim::<4, 6, 1024>::new(config);
    let handle = sim.host.tcp_connect((4096, 4096), echo_endpoint(), 40000);
    let mut sent = false;
    assert!(sim.run(SECOND, &mut |host, _, _| {
        let socket = host.tcp(handle);
        if socket.may_send() && !sent {
            socket.send_slice(b"hi").unwrap();
            sent = true;
        }
        Flow::until(None, socket.recv_queue() == 2)
    }));
    // The client vanishes: nothing it sends reaches the node any more.
    sim.host.device.filter_sent(|_, _| false);
    sim.idle(70 * SECOND);
    let start = sim.steps;
    sim.idle(6 * SECOND);
    let tcp = sim.node.stats().tcp;
    assert_eq!(tcp.active(), 0, "{tcp:?}");
    let polls = sim.steps - start;
    assert!(
        polls < 200,
        "{polls} polls in the 6 s after the idle timeout"
    );
}
