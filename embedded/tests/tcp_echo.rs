//! TCP echo through the node: every mode verified by the core's stream
//! probe, concurrency, reconnects, half-close, and a client that never
//! reads. The node runs on the host over an in-memory wire with a virtual
//! clock.

mod support;

use ricochet_core::probe::SizeRange;
use ricochet_core::{Duration, Instant, Mode, Pattern, ProbeConfig, SessionConfig};
use ricochet_embedded::NodeConfig;
use smoltcp::socket::tcp;

use support::host::{Host, Phase, StreamClient};
use support::sim::{Flow, Sim, core, echo_endpoint, server_config};

const SECOND: u64 = 1_000_000;

fn probe(mode: Mode, size: SizeRange, count: u64) -> ProbeConfig {
    ProbeConfig {
        mode,
        pattern: Pattern::Stream { window: 6 * 1024 },
        seed: 42,
        size,
        count: Some(count),
        response_timeout: Some(Duration::from_secs(5)),
        interval: None,
    }
}

fn config_in(mode: Mode) -> NodeConfig {
    let mut config = server_config();
    config.session = SessionConfig {
        mode,
        ..SessionConfig::default()
    };
    config
}

/// Drives every client; their earliest deadline, and whether all finished.
fn drive_all(clients: &mut [StreamClient], host: &mut Host, now: Instant) -> Flow {
    let deadline = clients
        .iter_mut()
        .filter_map(|c| {
            c.drive(host, now);
            c.deadline()
        })
        .min();
    Flow::until(deadline, clients.iter().all(StreamClient::is_finished))
}

fn connect(sim: &mut Sim<4, 6, 1024>, port: u16, config: ProbeConfig) -> StreamClient {
    let handle = sim.host.tcp_socket(4096, 4096);
    let now = core(sim.now);
    StreamClient::connect(&mut sim.host, handle, echo_endpoint(), port, config, now)
}

/// A new client gets ten 64-byte messages echoed, verified.
fn a_new_client_is_served(sim: &mut Sim<4, 6, 1024>, port: u16) {
    let mut next = [connect(
        sim,
        port,
        probe(Mode::Raw, SizeRange::fixed(64), 10),
    )];
    let finished = sim.run(2 * SECOND, &mut |host, _, now| {
        drive_all(&mut next, host, now)
    });
    assert!(finished && next[0].passed(), "{:?}", next[0].phase);
}

/// Streams `count` messages of `size` through a node in `mode` and checks
/// the probe's verdict and the node's counters.
fn stream_is_echoed_and_verified(mode: Mode, size: SizeRange, count: u64) {
    let mut sim = Sim::<4, 6, 1024>::new(config_in(mode));
    let mut clients = [connect(&mut sim, 40000, probe(mode, size, count))];
    let finished = sim.run(120 * SECOND, &mut |host, _, now| {
        drive_all(&mut clients, host, now)
    });
    assert!(finished);
    let client = &clients[0];
    assert_eq!(
        client.phase,
        Phase::Finished(Ok(())),
        "{:?}",
        client.probe.stats()
    );
    let verified = client.probe.stats().bytes_verified;
    assert!(verified >= 300_000, "only {verified} bytes went through");
    sim.idle(SECOND);
    let tcp = sim.node.stats().tcp;
    assert_eq!(tcp.accepted, 1);
    assert_eq!(tcp.active(), 0);
    assert_eq!(tcp.closed.peer_finished, 1);
    assert_eq!(tcp.aborted.total(), 0);
    assert_eq!(tcp.bytes_in, verified);
    assert_eq!(tcp.bytes_out, verified);
    assert_eq!(tcp.bytes_discarded, 0);
}

#[test]
fn listening_node_raw_stream_of_random_sizes_is_echoed_verified() {
    stream_is_echoed_and_verified(Mode::Raw, SizeRange::range(1, 1500), 400);
}

#[test]
fn listening_node_lines_stream_of_random_lengths_is_echoed_verified() {
    // Lines up to the whole 1024-byte session buffer.
    stream_is_echoed_and_verified(Mode::Lines, SizeRange::range(1, 1024), 600);
}

#[test]
fn listening_node_frames_stream_of_random_lengths_is_echoed_verified() {
    // Frames up to the whole 1024-byte session buffer, header included.
    stream_is_echoed_and_verified(Mode::Frames, SizeRange::range(2, 1024), 600);
}

#[test]
fn full_pool_serves_n_clients_at_once_refuses_the_extra_then_serves_it() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    // Paced: each client needs 50 ms, so all of them overlap.
    let paced = ProbeConfig {
        pattern: Pattern::PingPong,
        interval: Some(Duration::from_millis(1).into()),
        ..probe(Mode::Raw, SizeRange::fixed(100), 50)
    };
    let mut clients: Vec<StreamClient> = (0..5)
        .map(|i| connect(&mut sim, 40000 + i, paced))
        .collect();
    let mut peak = 0;
    let finished = sim.run(2 * SECOND, &mut |host, node, now| {
        peak = peak.max(node.stats().tcp.active());
        drive_all(&mut clients, host, now)
    });
    assert!(finished);
    // smoltcp answers a SYN no socket accepts with a RST: the fifth client
    // is refused cleanly (ECONNREFUSED on a desktop), never left hanging.
    let refused: Vec<usize> = (0..5)
        .filter(|&i| clients[i].phase == Phase::Refused)
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "{:?}",
        clients.iter().map(|c| c.phase).collect::<Vec<_>>()
    );
    assert_eq!(peak, 4, "four connections served at once");
    for (i, c) in clients.iter().enumerate() {
        if i != refused[0] {
            assert!(c.passed(), "client {i}: {:?}", c.phase);
        }
    }
    // Sockets are free again: the refused client retries and is served.
    let mut retry = [connect(&mut sim, 41000, paced)];
    let served = sim.run(2 * SECOND, &mut |host, _, now| {
        drive_all(&mut retry, host, now)
    });
    assert!(served && retry[0].passed(), "{:?}", retry[0].phase);
    sim.idle(SECOND);
    let tcp = sim.node.stats().tcp;
    assert_eq!(tcp.accepted, 5);
    assert_eq!(tcp.closed.peer_finished, 5);
    assert_eq!(tcp.aborted.total(), 0);
}

#[test]
fn reconnect_storm_of_200_back_to_back_cycles_all_succeed() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    // Two client sockets take turns: the next connect starts the moment the
    // previous echo was verified and the node's FIN arrived, while the
    // node's old socket still waits for the last ACK.
    let handles = [
        sim.host.tcp_socket(2048, 2048),
        sim.host.tcp_socket(2048, 2048),
    ];
    for cycle in 0..200u16 {
        let config = ProbeConfig {
            pattern: Pattern::PingPong,
            seed: u64::from(cycle),
            ..probe(Mode::Raw, SizeRange::range(1, 600), 3)
        };
        let now = core(sim.now);
        let handle = handles[usize::from(cycle % 2)];
        let mut client = [StreamClient::connect(
            &mut sim.host,
            handle,
            echo_endpoint(),
            20000 + cycle,
            config,
            now,
        )];
        let finished = sim.run(SECOND, &mut |host, _, now| {
            drive_all(&mut client, host, now)
        });
        assert!(
            finished && client[0].passed(),
            "cycle {cycle}: {:?}",
            client[0].phase
        );
    }
    sim.idle(SECOND);
    let tcp = sim.node.stats().tcp;
    assert_eq!(tcp.accepted, 200);
    assert_eq!(tcp.closed.peer_finished, 200);
    assert_eq!(tcp.aborted.total(), 0);
    assert_eq!(tcp.lingered, 0);
    assert_eq!(tcp.active(), 0);
}

#[test]
fn half_closed_client_gets_every_byte_echoed_then_the_node_fin() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    let mut clients = [connect(
        &mut sim,
        40000,
        probe(Mode::Raw, SizeRange::range(1, 1500), 100),
    )];
    // FIN right after the last byte is written, long before the echoes are back.
    clients[0].close_after_sending = true;
    let finished = sim.run(30 * SECOND, &mut |host, _, now| {
        drive_all(&mut clients, host, now)
    });
    // `Finished(Ok)`: every byte verified, then EOF (the node's FIN).
    assert!(finished && clients[0].passed(), "{:?}", clients[0].phase);
    sim.idle(SECOND);
    let tcp = sim.node.stats().tcp;
    assert_eq!(tcp.closed.peer_finished, 1);
    assert_eq!(tcp.bytes_out, clients[0].probe.stats().bytes_sent);
}

#[test]
fn lines_session_with_unterminated_tail_at_fin_echoes_the_tail_then_fin() {
    let mut sim = Sim::<4, 6, 1024>::new(config_in(Mode::Lines));
    let handle = sim.host.tcp_connect((4096, 4096), echo_endpoint(), 40000);
    let mut sent = false;
    let mut echoed = Vec::new();
    let fin = sim.run(5 * SECOND, &mut |host, _, _| {
        let socket = host.tcp(handle);
        if !sent && socket.may_send() {
            socket.send_slice(b"one\ntwo\nno newline here").unwrap();
            socket.close();
            sent = true;
        }
        let done = loop {
            match socket.recv(|d| (d.len(), d.to_vec())) {
                Ok(d) if d.is_empty() => break false,
                Ok(d) => echoed.extend(d),
                Err(tcp::RecvError::Finished) => break true,
                Err(_) => break false,
            }
        };
        Flow::until(None, done)
    });
    assert!(fin, "the node never sent its FIN");
    assert_eq!(echoed, b"one\ntwo\nno newline here");
    sim.idle(SECOND);
    assert_eq!(sim.node.stats().tcp.closed.peer_finished, 1);
}

#[test]
fn client_that_never_reads_is_bounded_then_aborted_while_others_are_served() {
    let mut config = server_config();
    config.session.drain_timeout = Some(Duration::from_secs(3));
    let mut sim = Sim::<4, 6, 1024>::new(config);
    let endless = ProbeConfig {
        count: None,
        response_timeout: None,
        pattern: Pattern::Stream { window: 1 << 20 },
        ..probe(Mode::Raw, SizeRange::fixed(1000), 1)
    };
    let mut stuck = connect(&mut sim, 40000, endless);
    stuck.reads = false;
    let stuck_handle = stuck.handle;
    let mut clients = vec![stuck];

    // While the stuck client fills every buffer on its path, others are served.
    let mut max_buffered = 0;
    for i in 0..3u16 {
        let config = ProbeConfig {
            pattern: Pattern::PingPong,
            ..probe(Mode::Raw, SizeRange::range(1, 800), 100)
        };
        clients.push(connect(&mut sim, 41000 + i, config));
        let last = clients.len() - 1;
        let served = sim.run(2 * SECOND, &mut |host, node, now| {
            max_buffered = max_buffered.max(node.session_buffers().max().unwrap_or(0));
            let flow = drive_all(&mut clients, host, now);
            Flow::until(flow.deadline, clients[last].is_finished())
        });
        assert!(
            served && clients[last].passed(),
            "client {i}: {:?}",
            clients[last].phase
        );
    }
    // Bounded: the stuck client wrote only what fits the buffers on its
    // path (its own transmit buffer, the node's receive buffer, session and
    // transmit buffer, its own receive buffer), and the node holds at most
    // its fixed buffers.
    let sent = clients[0].probe.stats().bytes_sent;
    let bound = 4096 + 1024 + 1024 + 1536 + 4096;
    assert!(
        sent <= bound,
        "stuck client pushed {sent} bytes, more than {bound}"
    );
    assert!(max_buffered <= 1024);
    assert_eq!(sim.node.stats().tcp.aborted.drain_timeout, 0, "not yet");

    // After the drain timeout the node gives up on it (RST) and re-arms.
    let aborted = sim.run(10 * SECOND, &mut |host, node, now| {
        let flow = drive_all(&mut clients, host, now);
        Flow::until(flow.deadline, node.stats().tcp.aborted.drain_timeout == 1)
    });
    assert!(aborted);
    sim.idle(100_000);
    assert_eq!(
        sim.host.tcp(stuck_handle).state(),
        tcp::State::Closed,
        "reset by the node"
    );
    let tcp = sim.node.stats().tcp;
    assert_eq!(tcp.active(), 0);
    assert_eq!(tcp.closed.peer_finished, 3);
    // Its socket listens again: a new client is served.
    a_new_client_is_served(&mut sim, 42000);
}

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

/// A part of the echo the wire loses in its first two sending rounds (the
/// segments smoltcp sends at one instant; a retransmission may cut the
/// bytes into other segments).
#[derive(Debug, Default)]
struct Held {
    rounds: u32,
    round_at: Option<u64>,
    /// When it first got through.
    delivered_at: Option<u64>,
}

impl Held {
    /// Whether a segment that carries this part, sent at `now`, gets through.
    fn sent(&mut self, now: u64) -> bool {
        if self.round_at != Some(now) {
            self.rounds += 1;
            self.round_at = Some(now);
        }
        let deliver = self.rounds > 2;
        if deliver {
            self.delivered_at.get_or_insert(now);
        }
        deliver
    }
}

/// What the wire did to the node's side of the connection.
#[derive(Debug, Default)]
struct TailWire {
    /// The node's initial sequence number (from its SYN-ACK).
    isn: Option<u32>,
    /// The byte at offset 500, and the last byte or the FIN.
    middle: Held,
    last: Held,
    /// RSTs the node sent.
    resets: u32,
}

/// The tail of an echo is acknowledged in steps, each shorter than the
/// linger, that add up to more than it: the node lingers from its last
/// delivery progress, not from the close, so the client gets everything
/// and no RST.
///
/// 1500 bytes come back in two segments, and the session closes when the
/// last byte is queued (the FIN follows it). The wire loses the first two
/// sending rounds of the middle byte (offset 500) and of the last byte and
/// the FIN. smoltcp's retransmission timer backs off (1 s, 2 s, 4 s): the
/// first segment gets through 2 s after the close, the last byte and the
/// FIN 4 s later, 6 s after the close. A linger counted from the close
/// (5 s) reset the connection 1 s before that.
#[test]
fn lingering_close_with_a_tail_acknowledged_in_steps_past_the_linger_delivers_everything() {
    use std::cell::RefCell;
    use std::rc::Rc;

    const TOTAL: u32 = 1500;
    const MIDDLE: u32 = 500;
    let linger = 5 * SECOND;
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    let wire = Rc::new(RefCell::new(TailWire::default()));
    let seen = wire.clone();
    sim.node_dev.filter_sent(move |now, frame| {
        let Some(seg) = support::frames::tcp_segment(frame) else {
            return true;
        };
        let mut w = seen.borrow_mut();
        if seg.src_port != 7 {
            return true;
        }
        w.resets += u32::from(seg.rst);
        if seg.syn {
            w.isn = Some(seg.seq);
            return true;
        }
        let Some(isn) = w.isn else { return true };
        let start = seg.seq.wrapping_sub(isn).wrapping_sub(1);
        let bytes = start..start + seg.len as u32;
        let now = now.total_micros() as u64;
        let mut deliver = true;
        if bytes.contains(&MIDDLE) {
            deliver &= w.middle.sent(now);
        }
        if bytes.contains(&(TOTAL - 1)) || seg.fin {
            deliver &= w.last.sent(now);
        }
        deliver
    });
    let config = ProbeConfig {
        response_timeout: Some(Duration::from_secs(30)),
        ..probe(Mode::Raw, SizeRange::fixed(TOTAL as usize / 3), 3)
    };
    let mut clients = [connect(&mut sim, 40000, config)];
    clients[0].close_after_sending = true;
    let mut closed_at = None;
    let finished = sim.run(60 * SECOND, &mut |host, node, now| {
        if closed_at.is_none() && node.stats().tcp.closed.total() > 0 {
            closed_at = Some(now.as_micros());
        }
        drive_all(&mut clients, host, now)
    });
    sim.idle(10 * SECOND);
    let w = wire.borrow();
    let tcp = sim.node.stats().tcp;
    assert!(finished);
    assert_eq!(
        clients[0].phase,
        Phase::Finished(Ok(())),
        "{w:?} closed at {closed_at:?}: {tcp:?}"
    );
    assert_eq!(w.resets, 0, "the node reset the connection: {tcp:?}");
    assert_eq!(tcp.closed.peer_finished, 1);
    assert_eq!(tcp.aborted.total(), 0);
    assert_eq!(tcp.lingered, 0);
    // The scenario: progress within the linger, completion beyond it.
    let closed_at = closed_at.unwrap();
    let (middle_at, last_at) = (w.middle.delivered_at.unwrap(), w.last.delivered_at.unwrap());
    assert!(
        middle_at - closed_at < linger,
        "{w:?} closed at {closed_at}"
    );
    assert!(last_at - middle_at < linger, "{w:?}");
    assert!(last_at - closed_at > linger, "{w:?} closed at {closed_at}");
}

/// Connects a plain client socket, sends `data` and waits for its echo.
fn echo_once(sim: &mut Sim<4, 6, 1024>, port: u16, data: &[u8]) -> smoltcp::iface::SocketHandle {
    let handle = sim.host.tcp_connect((4096, 4096), echo_endpoint(), port);
    let mut sent = false;
    let mut echoed = Vec::new();
    let done = sim.run(SECOND, &mut |host, _, _| {
        let socket = host.tcp(handle);
        if !sent && socket.may_send() {
            socket.send_slice(data).unwrap();
            sent = true;
        }
        while let Ok(n) = socket.recv(|d| (d.len(), d.len())) {
            if n == 0 {
                break;
            }
            echoed.resize(echoed.len() + n, 0);
        }
        Flow::until(None, echoed.len() == data.len())
    });
    assert!(done, "no echo");
    handle
}

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
