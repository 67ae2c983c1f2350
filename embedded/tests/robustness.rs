//! Garbage on the wire never panics the node, and the node recovers.
//!
//! Frames are random bytes, or frames recorded from a real echo exchange
//! (ARP, TCP, UDP, ICMP, NDP) with bytes flipped, cut short or extended.
//! The node's device skips checksum verification, as if an attacker had
//! crafted every frame with valid checksums, so the mutations reach the
//! TCP, UDP, DHCP and session code instead of dying at the first checksum.
//! The number of cases is `PROPTEST_CASES` (256 when unset).

#![cfg(feature = "udp")]

mod support;

use std::sync::OnceLock;

use proptest::prelude::*;
use ricochet_core::probe::SizeRange;
use ricochet_core::{DatagramProbeConfig, Duration, Mode, Pattern, ProbeConfig};
use ricochet_embedded::EchoNode;

use support::host::{DatagramClient, StreamClient};
use support::sim::{Flow, Sim, core, echo_endpoint, server_config};

const SECOND: u64 = 1_000_000;

fn ping_pong(count: u64, interval: Option<Duration>) -> ProbeConfig {
    ProbeConfig {
        mode: Mode::Raw,
        pattern: Pattern::PingPong,
        seed: 11,
        size: SizeRange::range(1, 400),
        count: Some(count),
        response_timeout: Some(Duration::from_secs(2)),
        interval: interval.map(Into::into),
    }
}

/// Frames a node receives during a real TCP + UDP exchange.
fn corpus() -> &'static [Vec<u8>] {
    static CORPUS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let mut sim = Sim::<4, 6, 1024>::new(server_config());
        let log = sim.node_dev.record();
        let handle = sim.host.tcp_socket(4096, 4096);
        let mut tcp = StreamClient::connect(
            &mut sim.host,
            handle,
            echo_endpoint(),
            40000,
            ping_pong(5, None),
            core(sim.now),
        );
        let udp_config = DatagramProbeConfig {
            count: Some(5),
            ..DatagramProbeConfig::default()
        };
        let mut udp = DatagramClient::new(
            &mut sim.host,
            40001,
            echo_endpoint(),
            udp_config,
            core(sim.now),
        );
        assert!(sim.run(5 * SECOND, &mut |host, _, now| {
            tcp.drive(host, now);
            udp.drive(host, now);
            Flow::until(None, tcp.is_finished() && udp.probe.is_done())
        }));
        assert!(tcp.passed());
        let frames = log.borrow().clone();
        assert!(frames.len() > 10);
        frames
    })
}

#[derive(Clone, Debug)]
enum Garbage {
    Random(Vec<u8>),
    Mutated {
        frame: usize,
        flips: Vec<(usize, u8)>,
        cut: Option<usize>,
        tail: Vec<u8>,
    },
}

impl Garbage {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Garbage::Random(bytes) => bytes.clone(),
            Garbage::Mutated {
                frame,
                flips,
                cut,
                tail,
            } => {
                let corpus = corpus();
                let mut f = corpus[frame % corpus.len()].clone();
                for &(at, mask) in flips {
                    let len = f.len();
                    if len > 0 {
                        f[at % len] ^= mask;
                    }
                }
                if let Some(cut) = cut {
                    f.truncate(*cut);
                }
                f.extend_from_slice(tail);
                f
            }
        }
    }
}

fn garbage() -> impl Strategy<Value = Garbage> {
    prop_oneof![
        1 => proptest::collection::vec(any::<u8>(), 0..1600).prop_map(Garbage::Random),
        4 => (
            any::<usize>(),
            proptest::collection::vec((any::<usize>(), 1u8..), 1..6),
            proptest::option::weighted(0.2, 0usize..200),
            proptest::collection::vec(any::<u8>(), 0..8),
        )
            .prop_map(|(frame, flips, cut, tail)| Garbage::Mutated { frame, flips, cut, tail }),
    ]
}

proptest! {
    #[test]
    fn garbage_frames_during_a_session_never_panic_and_the_node_recovers(
        frames in proptest::collection::vec(garbage(), 1..10),
    ) {
        let mut sim = Sim::<4, 6, 1024>::fuzzable(server_config());
        // A live connection, in the middle of its exchange.
        let handle = sim.host.tcp_socket(4096, 4096);
        let now = core(sim.now);
        let mut live = StreamClient::connect(
            &mut sim.host, handle, echo_endpoint(), 40000,
            ping_pong(1000, Some(Duration::from_millis(1))), now,
        );
        let mut drive = |host: &mut support::host::Host, _: &EchoNode<'static, 4>, now| {
            live.drive(host, now);
            Flow::until(live.deadline(), false)
        };
        sim.run(20_000, &mut drive);
        for frame in &frames {
            sim.node_dev.inject(frame.bytes());
            sim.step(&mut drive);
        }
        sim.run(100_000, &mut drive);
        // Whatever the garbage did (forged resets, poisoned ARP entries,
        // half-open handshakes), it is gone once smoltcp's timers ran.
        sim.idle(90 * SECOND);
        let handle = sim.host.tcp_socket(4096, 4096);
        let now = core(sim.now);
        let mut fresh = StreamClient::connect(&mut sim.host, handle, echo_endpoint(), 40001, ping_pong(10, None), now);
        let mut udp = DatagramClient::new(&mut sim.host, 40002, echo_endpoint(), DatagramProbeConfig {
            count: Some(3),
            ..DatagramProbeConfig::default()
        }, now);
        let finished = sim.run(10 * SECOND, &mut |host, _, now| {
            fresh.drive(host, now);
            udp.drive(host, now);
            Flow::until(fresh.deadline(), fresh.is_finished() && udp.probe.is_done())
        });
        prop_assert!(finished);
        prop_assert!(fresh.passed(), "{:?}", fresh.phase);
        prop_assert_eq!(udp.probe.stats().verified, 3, "{:?} {:?}", udp.probe.stats(), sim.node.stats().udp);
    }

    // A DHCP node needs the `dhcp` feature (`NewError::DhcpNotBuilt`).
    #[cfg(feature = "dhcp")]
    #[test]
    fn random_frames_never_panic_a_dhcp_server_or_a_client_node(
        frames in proptest::collection::vec(garbage(), 1..16),
    ) {
        use ricochet_embedded::{Ipv4Config, NoLed};
        use smoltcp::time::Instant as SmolInstant;
        use support::pair::pair;
        use support::sim::resources;

        let mut dhcp = server_config();
        dhcp.ipv4 = Ipv4Config::Dhcp { fallback: None, fallback_after: Duration::from_secs(1) };
        #[cfg_attr(not(feature = "client"), allow(unused_mut))]
        let mut configs = vec![dhcp];
        #[cfg(feature = "client")]
        {
            let mut client = ricochet_embedded::NodeConfig::new(support::sim::NODE_MAC);
            client.ipv4 = dhcp.ipv4;
            client.role = ricochet_embedded::Role::Client {
                server: echo_endpoint(),
                probe: ping_pong(10, None),
                datagram: Some(DatagramProbeConfig::default()),
            };
            configs.push(client);
        }
        for config in configs {
            let (mut dev, _other) = pair();
            dev.trust_checksums();
            let mut node = EchoNode::new(config, resources::<2, 4, 512>(), NoLed, &mut dev, SmolInstant::ZERO).unwrap();
            let mut t = 0;
            for frame in &frames {
                dev.inject(frame.bytes());
                node.poll(SmolInstant::from_micros(t), &mut dev);
                t += 300_000;
            }
        }
    }
}
