//! One pool of sockets serving several TCP ports, each in its own mode
//! (`NodeConfig::serve_every_mode`: raw on 7, lines on 7001, frames on
//! 7002): every mode verified at once, the mode really applied per port,
//! and the free sockets spread so that one port can still take the whole
//! pool.

mod support;

use ricochet_core::probe::SizeRange;
use ricochet_core::{Duration, Mode, Pattern, ProbeConfig};
use ricochet_embedded::{ECHO_PORT, FRAMES_PORT, LINES_PORT, NodeConfig};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use support::host::{Phase, StreamClient};
use support::sim::{Flow, NODE_IP, Sim, core, server_config};

const SECOND: u64 = 1_000_000;

fn every_mode() -> NodeConfig {
    let mut config = server_config();
    config.serve_every_mode();
    config
}

fn endpoint(port: u16) -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(NODE_IP), port)
}

fn probe(mode: Mode, size: SizeRange, count: u64) -> ProbeConfig {
    ProbeConfig {
        mode,
        pattern: Pattern::Stream { window: 4096 },
        seed: 11,
        size,
        count: Some(count),
        response_timeout: Some(Duration::from_secs(5)),
        interval: None,
    }
}

fn connect(sim: &mut Sim<4, 6, 1024>, port: u16, local: u16, config: ProbeConfig) -> StreamClient {
    let handle = sim.host.tcp_socket(4096, 4096);
    let now = core(sim.now);
    StreamClient::connect(&mut sim.host, handle, endpoint(port), local, config, now)
}

fn run_all(sim: &mut Sim<4, 6, 1024>, clients: &mut [StreamClient], limit: u64) -> bool {
    sim.run(limit, &mut |host, _, now| {
        let deadline = clients
            .iter_mut()
            .filter_map(|c| {
                c.drive(host, now);
                c.deadline()
            })
            .min();
        Flow::until(deadline, clients.iter().all(StreamClient::is_finished))
    })
}

#[test]
fn every_mode_node_echoes_raw_lines_and_frames_each_on_its_port_at_once() {
    let mut sim = Sim::<4, 6, 1024>::new(every_mode());
    let mut clients = [
        connect(
            &mut sim,
            ECHO_PORT,
            40000,
            probe(Mode::Raw, SizeRange::range(1, 1500), 200),
        ),
        connect(
            &mut sim,
            LINES_PORT,
            40001,
            probe(Mode::Lines, SizeRange::range(1, 1024), 200),
        ),
        connect(
            &mut sim,
            FRAMES_PORT,
            40002,
            probe(Mode::Frames, SizeRange::range(2, 1024), 200),
        ),
    ];
    assert!(run_all(&mut sim, &mut clients, 60 * SECOND));
    for (i, c) in clients.iter().enumerate() {
        assert!(c.passed(), "client {i}: {:?}", c.phase);
    }
    sim.idle(SECOND);
    let tcp = sim.node.stats().tcp;
    assert_eq!(tcp.accepted, 3);
    assert_eq!(tcp.closed.peer_finished, 3);
    assert_eq!(tcp.aborted.total(), 0);
}

/// Sends `bytes` on a fresh connection to `port` and runs the wire for a
/// second; returns what came back and whether the node reset the
/// connection.
fn exchange(sim: &mut Sim<4, 6, 1024>, port: u16, local: u16, bytes: &[u8]) -> (Vec<u8>, bool) {
    let handle = sim.host.tcp_connect((4096, 4096), endpoint(port), local);
    let mut sent = false;
    let mut echoed = Vec::new();
    let mut was_open = false;
    let mut reset = false;
    sim.run(SECOND, &mut |host, _, _| {
        let socket = host.tcp(handle);
        if socket.may_send() && !sent {
            socket.send_slice(bytes).unwrap();
            sent = true;
        }
        was_open |= socket.is_active();
        while let Ok(n) = socket.recv(|b| (b.len(), b.to_vec())) {
            if n.is_empty() {
                break;
            }
            echoed.extend(n);
        }
        // A RST from the node closes the socket without a FIN.
        if was_open && socket.state() == tcp::State::Closed {
            reset = true;
            return Flow::until(None, true);
        }
        Flow::idle()
    });
    (echoed, reset)
}

#[test]
fn each_port_applies_its_own_mode_to_the_same_bytes() {
    let mut sim = Sim::<4, 6, 1024>::new(every_mode());
    // A frame header announcing 65 535 bytes: too large for the 1024-byte
    // session in frames mode, plain data in raw mode.
    let bytes = [0xFF, 0xFF, b'a', b'b', b'c'];
    let (raw, raw_reset) = exchange(&mut sim, ECHO_PORT, 41000, &bytes);
    assert_eq!(raw, bytes, "raw mode echoes every byte");
    assert!(!raw_reset);
    let (framed, framed_reset) = exchange(&mut sim, FRAMES_PORT, 41001, &bytes);
    assert!(framed.is_empty(), "frames mode echoed {framed:?}");
    assert!(framed_reset, "frames mode resets an oversize frame");
    // Without a newline, lines mode holds the bytes back.
    let (lines, lines_reset) = exchange(&mut sim, LINES_PORT, 41002, b"no newline yet");
    assert!(lines.is_empty(), "lines mode echoed {lines:?}");
    assert!(!lines_reset);
    assert_eq!(sim.node.stats().tcp.aborted.frame_too_large, 1);
}

#[test]
fn four_sockets_over_three_ports_serve_two_echo_clients_beside_one_per_other_mode() {
    let mut sim = Sim::<4, 6, 1024>::new(every_mode());
    let paced = |mode| ProbeConfig {
        pattern: Pattern::PingPong,
        interval: Some(Duration::from_millis(1).into()),
        ..probe(mode, SizeRange::fixed(100), 50)
    };
    // In this order: the two echo clients take the echo port's listener
    // and then the one it gets back; lines and frames keep theirs; a third
    // echo client finds none (the pool is full).
    let mut clients = [
        connect(&mut sim, ECHO_PORT, 42000, paced(Mode::Raw)),
        connect(&mut sim, ECHO_PORT, 42001, paced(Mode::Raw)),
        connect(&mut sim, LINES_PORT, 42002, paced(Mode::Lines)),
        connect(&mut sim, FRAMES_PORT, 42003, paced(Mode::Frames)),
        connect(&mut sim, ECHO_PORT, 42004, paced(Mode::Raw)),
    ];
    let mut peak = 0;
    let finished = sim.run(2 * SECOND, &mut |host, node, now| {
        peak = peak.max(node.stats().tcp.active());
        let deadline = clients
            .iter_mut()
            .filter_map(|c| {
                c.drive(host, now);
                c.deadline()
            })
            .min();
        Flow::until(deadline, clients.iter().all(StreamClient::is_finished))
    });
    assert!(finished);
    let phases: Vec<Phase> = clients.iter().map(|c| c.phase).collect();
    assert!(clients[..4].iter().all(StreamClient::passed), "{phases:?}");
    assert_eq!(clients[4].phase, Phase::Refused, "{phases:?}");
    assert_eq!(peak, 4, "four connections served at once");
    // The pool spreads back over the ports: every mode is served again.
    let mut again = [
        connect(
            &mut sim,
            ECHO_PORT,
            42100,
            probe(Mode::Raw, SizeRange::range(1, 200), 20),
        ),
        connect(
            &mut sim,
            LINES_PORT,
            42101,
            probe(Mode::Lines, SizeRange::range(1, 200), 20),
        ),
        connect(
            &mut sim,
            FRAMES_PORT,
            42102,
            probe(Mode::Frames, SizeRange::range(2, 200), 20),
        ),
    ];
    assert!(run_all(&mut sim, &mut again, 5 * SECOND));
    for c in &again {
        assert_eq!(c.phase, Phase::Finished(Ok(())));
    }
}

/// `clients` connect to `port` at once: each is served 20 paced messages.
fn all_served_on(sim: &mut Sim<4, 6, 1024>, port: u16, mode: Mode, clients: u16) {
    let paced = ProbeConfig {
        pattern: Pattern::PingPong,
        interval: Some(Duration::from_millis(1).into()),
        ..probe(mode, SizeRange::fixed(50), 20)
    };
    let mut clients: Vec<StreamClient> = (0..clients)
        .map(|i| connect(sim, port, 43000 + i, paced))
        .collect();
    assert!(run_all(sim, &mut clients, 2 * SECOND));
    let phases: Vec<Phase> = clients.iter().map(|c| c.phase).collect();
    assert!(clients.iter().all(StreamClient::passed), "{phases:?}");
}

/// Four sockets over three ports (echo, lines, frames, echo): a frames
/// client takes the only frames listener, and an echo listener moves over,
/// so a second frames client connecting at once is served too.
#[test]
fn every_mode_pool_with_its_frames_listener_taken_moves_one_over_for_a_second_client() {
    let mut sim = Sim::<4, 6, 1024>::new(every_mode());
    all_served_on(&mut sim, FRAMES_PORT, Mode::Frames, 2);
    assert_eq!(sim.node.stats().tcp.accepted, 2);
}

/// Four sockets over two ports (echo, lines, echo, lines): two lines
/// clients take both lines listeners, and an echo listener moves over, so
/// a third lines client connecting at once is served too.
#[test]
fn two_port_pool_with_both_lines_listeners_taken_moves_one_over_for_a_third_client() {
    let mut config = server_config();
    config.serve_every_mode();
    config.extra_ports[1] = None;
    let mut sim = Sim::<4, 6, 1024>::new(config);
    all_served_on(&mut sim, LINES_PORT, Mode::Lines, 3);
    assert_eq!(sim.node.stats().tcp.accepted, 3);
}

/// Four sockets over three ports: two frames clients leave two listeners
/// on the frames port when they close ([1, 1, 2] over echo, lines, frames)
/// and one moves back to echo. Then a first echo client takes an echo
/// listener and a second, connecting at once, still finds one: the
/// listener that moves over comes from the port holding more than its
/// share (frames), never from one holding just its share (lines), which
/// left echo without a listener.
#[test]
fn every_mode_pool_after_two_frames_clients_left_serves_two_echo_clients_at_once() {
    let mut sim = Sim::<4, 6, 1024>::new(every_mode());
    all_served_on(&mut sim, FRAMES_PORT, Mode::Frames, 2);
    sim.idle(SECOND);
    assert_eq!(sim.node.stats().tcp.active(), 0);
    all_served_on(&mut sim, ECHO_PORT, Mode::Raw, 2);
    all_served_on(&mut sim, LINES_PORT, Mode::Lines, 1);
    assert_eq!(sim.node.stats().tcp.accepted, 5);
}

/// An echo client holds the first socket; a frames client is reset for an
/// oversize frame, and while its socket waits for the RST to go out the
/// pool has two free sockets for three ports, so the echo port's listener
/// moves to frames. The listener moves, never the socket serving the echo
/// client, which keeps its connection.
#[test]
fn frames_reset_beside_a_served_echo_client_moves_a_listener_not_the_client() {
    let mut sim = Sim::<4, 6, 1024>::new(every_mode());
    let handle = sim
        .host
        .tcp_connect((4096, 4096), endpoint(ECHO_PORT), 44000);
    let mut echoed = Vec::new();
    let ask = |sim: &mut Sim<4, 6, 1024>, bytes: &'static [u8], echoed: &mut Vec<u8>| {
        let mut sent = false;
        sim.run(SECOND, &mut |host, _, _| {
            let socket = host.tcp(handle);
            if socket.may_send() && !sent {
                socket.send_slice(bytes).unwrap();
                sent = true;
            }
            while let Ok(n) = socket.recv(|b| (b.len(), b.to_vec())) {
                if n.is_empty() {
                    break;
                }
                echoed.extend(n);
            }
            Flow::until(None, echoed.ends_with(bytes) || !socket.is_active())
        })
    };
    assert!(ask(&mut sim, b"before", &mut echoed));
    let (framed, framed_reset) = exchange(&mut sim, FRAMES_PORT, 44001, &[0xFF, 0xFF, 1]);
    assert!(framed.is_empty() && framed_reset);
    assert_eq!(sim.node.stats().tcp.aborted.frame_too_large, 1);
    assert_eq!(sim.host.tcp(handle).state(), tcp::State::Established);
    assert!(ask(&mut sim, b"after", &mut echoed));
    assert_eq!(echoed, b"beforeafter");
    assert_eq!(sim.node.stats().tcp.aborted.total(), 1);
}
