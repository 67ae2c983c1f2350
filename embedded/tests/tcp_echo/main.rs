//! TCP echo through the node: every mode verified by the core's stream
//! probe, concurrency, reconnects, half-close, and a client that never
//! reads. The node runs on the host over an in-memory wire with a virtual
//! clock.
//!
//! One test binary, its tests in modules by subject: [`serving`],
//! [`timeouts`], [`linger`], [`peer_ends`], [`violations`].

#[path = "../support/mod.rs"]
mod support;

use ricochet_core::probe::SizeRange;
use ricochet_core::{Duration, Instant, Mode, Pattern, ProbeConfig, SessionConfig};
use ricochet_embedded::NodeConfig;
use smoltcp::socket::tcp;

use support::host::{Host, Phase, StreamClient};
use support::sim::{Flow, Sim, core, echo_endpoint, server_config};

mod linger;
mod peer_ends;
mod serving;
mod timeouts;
mod violations;

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
