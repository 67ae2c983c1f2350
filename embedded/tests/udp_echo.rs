//! UDP echo through the node and the core's datagram policy: verified
//! echoes, the loop guard, oversize datagrams, the rate limit, and
//! broadcasts.

#![cfg(feature = "udp")]

mod support;

use ricochet_core::datagram::RateLimit;
use ricochet_core::probe::SizeRange;
use ricochet_core::{DatagramProbeConfig, Duration, PolicyConfig};
use ricochet_embedded::NodeConfig;
use smoltcp::wire::{IpAddress, IpEndpoint, Ipv4Address};

use support::host::{DatagramClient, Host};
use support::sim::{Flow, HOST_MAC, NODE_IP, NODE_MAC, Sim, core, echo_endpoint, server_config};

const SECOND: u64 = 1_000_000;

fn config_with(policy: PolicyConfig) -> NodeConfig {
    let mut config = server_config();
    config.udp = Some(policy);
    config
}

/// Sends `payloads` from a host socket bound to `port` and returns every
/// datagram that came back within a second.
fn exchange(
    sim: &mut Sim<4, 6, 1024>,
    port: u16,
    to: IpEndpoint,
    payloads: &[Vec<u8>],
) -> Vec<Vec<u8>> {
    let handle = sim.host.udp_socket(port);
    for p in payloads {
        sim.host.udp(handle).send_slice(p, to).unwrap();
    }
    let mut back = Vec::new();
    sim.run(SECOND, &mut |host: &mut Host, _, _| {
        while let Ok((data, _)) = host.udp(handle).recv() {
            back.push(data.to_vec());
        }
        Flow::idle()
    });
    back
}

#[test]
fn datagrams_of_random_sizes_are_echoed_whole_and_verified() {
    let mut sim = Sim::<4, 6, 1024>::new(config_with(PolicyConfig {
        rate: None,
        ..PolicyConfig::DEFAULT
    }));
    let config = DatagramProbeConfig {
        seed: 9,
        size: SizeRange::range(12, 1472),
        count: Some(500),
        window: 4,
        loss_timeout: Duration::from_millis(500),
        interval: None,
    };
    let mut client =
        DatagramClient::new(&mut sim.host, 40000, echo_endpoint(), config, core(sim.now));
    let done = sim.run(30 * SECOND, &mut |host, _, now| {
        client.drive(host, now);
        Flow::until(client.deadline(), client.probe.is_done())
    });
    assert!(done);
    let probe = client.probe.stats();
    assert_eq!(
        (probe.sent, probe.verified, probe.lost, probe.corrupt),
        (500, 500, 0, 0)
    );
    let udp = sim.node.stats().udp;
    assert_eq!(udp.received, 500);
    assert_eq!(udp.echoed, 500);
    assert_eq!(udp.echoed_bytes, probe.bytes_verified);
    assert_eq!(udp.dropped.total(), 0);
}

#[test]
fn datagram_from_reflector_source_port_7_or_19_is_not_answered_and_counted() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    for port in [7, 19] {
        let back = exchange(&mut sim, port, echo_endpoint(), &[b"ping".to_vec()]);
        assert!(back.is_empty(), "answered source port {port}");
    }
    let udp = sim.node.stats().udp;
    assert_eq!(udp.received, 2);
    assert_eq!(udp.dropped.loop_guard, 2);
    assert_eq!(udp.echoed, 0);
    // An ordinary source port is answered.
    assert_eq!(
        exchange(&mut sim, 40000, echo_endpoint(), &[b"ping".to_vec()]),
        [b"ping".to_vec()]
    );
}

#[test]
fn oversize_datagram_is_dropped_and_counted_never_truncated() {
    let mut sim = Sim::<4, 6, 1024>::new(config_with(PolicyConfig {
        max_datagram: 512,
        ..PolicyConfig::DEFAULT
    }));
    // Up to the largest a 1500-byte MTU carries: the receive ring holds it
    // whole, so the node sees the real length.
    let oversize: Vec<Vec<u8>> = [513usize, 1000, 1472]
        .iter()
        .map(|&n| vec![0xA5; n])
        .collect();
    let back = exchange(&mut sim, 40000, echo_endpoint(), &oversize);
    assert!(
        back.is_empty(),
        "echoed {:?} bytes",
        back.iter().map(Vec::len).collect::<Vec<_>>()
    );
    let udp = sim.node.stats().udp;
    assert_eq!((udp.received, udp.dropped.oversize, udp.echoed), (3, 3, 0));
    // At the limit: echoed whole.
    let at_limit: Vec<u8> = (0..512u32).map(|i| i as u8).collect();
    assert_eq!(
        exchange(
            &mut sim,
            40001,
            echo_endpoint(),
            std::slice::from_ref(&at_limit)
        ),
        [at_limit]
    );
}

#[test]
fn burst_beyond_the_source_rate_limit_is_dropped_and_counted() {
    let mut sim = Sim::<4, 6, 1024>::new(config_with(PolicyConfig {
        rate: Some(RateLimit {
            per_second: 1,
            burst: 5,
        }),
        ..PolicyConfig::DEFAULT
    }));
    let burst: Vec<Vec<u8>> = (0..10u8).map(|i| vec![i; 20]).collect();
    let back = exchange(&mut sim, 40000, echo_endpoint(), &burst);
    assert_eq!(back, &burst[..5]);
    let udp = sim.node.stats().udp;
    assert_eq!((udp.echoed, udp.dropped.rate_limited), (5, 5));
}

#[test]
fn datagram_to_a_broadcast_address_is_not_answered_and_counted() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    for to in [Ipv4Address::new(192, 168, 69, 255), Ipv4Address::BROADCAST] {
        let back = exchange(
            &mut sim,
            40000,
            IpEndpoint::new(IpAddress::Ipv4(to), 7),
            &[b"all".to_vec()],
        );
        assert!(back.is_empty(), "answered a broadcast to {to}");
    }
    let udp = sim.node.stats().udp;
    assert_eq!(
        (udp.received, udp.dropped.not_unicast, udp.echoed),
        (2, 2, 0)
    );
}

/// A forged datagram from `src`, as if `HOST_MAC` had sent it.
fn forged(src: Ipv4Address, payload: &[u8]) -> Vec<u8> {
    support::frames::udp((HOST_MAC, NODE_MAC), (src, 40000), (NODE_IP, 7), payload)
}

/// Injects a datagram forged from `src`: it must be counted as dropped
/// unroutable, not echoed, and the next datagram echoed at once.
fn forged_is_unroutable_and_the_next_is_echoed(src: Ipv4Address) {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    sim.node_dev.inject(forged(src, b"forged"));
    sim.idle(10_000);
    let udp = sim.node.stats().udp;
    assert_eq!(
        (udp.received, udp.dropped.unroutable, udp.echoed),
        (1, 1, 0),
        "from {src}"
    );
    assert_eq!(
        exchange(&mut sim, 40000, echo_endpoint(), &[b"ping".to_vec()]),
        [b"ping".to_vec()]
    );
}

#[test]
fn datagram_from_a_source_without_route_back_is_dropped_and_counted() {
    // Off-link, and the node has no default route: the echo could never leave.
    forged_is_unroutable_and_the_next_is_echoed(Ipv4Address::new(10, 9, 9, 9));
}

/// A forged datagram from the node's own address is dropped as
/// unroutable: its echo would wait for an ARP answer that never comes, at
/// the head of the transmit ring, and every echo behind it would wait
/// with it (2 s, until the stall flush). The next datagram is echoed at once.
#[test]
fn datagram_from_the_nodes_own_address_is_dropped_and_the_next_echoed_at_once() {
    forged_is_unroutable_and_the_next_is_echoed(NODE_IP);
}

#[test]
fn echo_stuck_behind_a_source_that_never_answers_arp_is_flushed_after_the_stall() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    // On-link but nobody: smoltcp keeps the echo at the head of the ring,
    // asking ARP every second, and everything queued behind it waits.
    sim.node_dev
        .inject(forged(Ipv4Address::new(192, 168, 69, 77), b"ghost"));
    sim.idle(10_000);
    let handle = sim.host.udp_socket(40000);
    sim.host
        .udp(handle)
        .send_slice(b"queued behind", echo_endpoint())
        .unwrap();
    let mut stuck = true;
    sim.run(1_500_000, &mut |host, _, _| {
        stuck &= host.udp(handle).recv().is_err();
        Flow::idle()
    });
    assert!(stuck, "smoltcp sent around the stuck head?");
    // After UDP_STALL the ring is flushed (the echo queued behind the ghost
    // is lost with it), and the node answers again.
    sim.idle(SECOND);
    assert_eq!(sim.node.stats().udp_tx_flushes, 1);
    assert_eq!(
        exchange(&mut sim, 40001, echo_endpoint(), &[b"ping".to_vec()]),
        [b"ping".to_vec()]
    );
}

#[test]
fn echo_stuck_behind_a_source_that_never_answers_arp_lets_the_node_sleep_until_the_flush() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    sim.node_dev
        .inject(forged(Ipv4Address::new(192, 168, 69, 77), b"ghost"));
    let start = (sim.now, sim.steps);
    sim.idle(1_900_000);
    // Stuck, not yet flushed: the node woke for the ARP retries and its
    // stall deadline, not in a busy loop.
    assert_eq!(sim.node.stats().udp_tx_flushes, 0);
    let polls = sim.steps - start.1;
    assert!(polls < 100, "{polls} polls in 1.9 s with a stuck echo");
    sim.idle(200_000);
    assert_eq!(sim.node.stats().udp_tx_flushes, 1);
    assert!(sim.now - start.0 >= 2 * SECOND);
}

/// The node's IPv6 link-local address (EUI-64 of `NODE_MAC`).
#[cfg(feature = "ipv6")]
const NODE_LL: smoltcp::wire::Ipv6Address =
    smoltcp::wire::Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0x00ff, 0xfe00, 0x0001);

#[cfg(feature = "ipv6")]
#[test]
fn ipv6_datagram_from_off_link_without_an_ipv6_route_is_dropped_as_unroutable() {
    use smoltcp::wire::Ipv6Address;

    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    // The node has only its link-local address and no IPv6 route: a global
    // source could never be answered.
    let global = Ipv6Address::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 5);
    // A link-local source is on the node's link: answered.
    let neighbour = Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0x00ff, 0xfe00, 0x0002);
    for (source, data, counts) in [
        (global, &b"far"[..], (1, 1, 0)),
        (neighbour, &b"near"[..], (2, 1, 1)),
    ] {
        sim.node_dev.inject(support::frames::udp6(
            (HOST_MAC, NODE_MAC),
            (source, 40000),
            (NODE_LL, 7),
            data,
        ));
        sim.idle(10_000);
        let udp = sim.node.stats().udp;
        assert_eq!(
            (udp.received, udp.dropped.unroutable, udp.echoed),
            counts,
            "{source}"
        );
    }
}

/// A transmit ring that never empties but keeps draining is making
/// progress: it is never flushed. The node's link carries one frame at a
/// time, and a client sends two datagrams per millisecond for 3 s: the ring
/// refills as fast as it drains (and overflows: those echoes are counted
/// as dropped), so it holds echoes at every check, each time as many bytes
/// as before.
#[test]
fn ring_that_drains_and_refills_under_load_is_never_flushed() {
    let mut sim = Sim::<4, 6, 1024>::new(config_with(PolicyConfig {
        rate: None,
        ..PolicyConfig::DEFAULT
    }));
    // ARP resolved both ways before the load starts.
    assert_eq!(
        exchange(&mut sim, 40000, echo_endpoint(), &[b"warm up".to_vec()]),
        [b"warm up".to_vec()]
    );
    sim.node_dev.limit_in_flight(1);
    let handle = sim.host.udp_socket(40001);
    let datagram = [0x5a; 200];
    let (mut echoed, mut echoed_late) = (0u64, 0u64);
    let millis: u32 = 3000;
    for ms in 0..millis {
        sim.now += 1000;
        let now = support::sim::smol(sim.now);
        for _ in 0..2 {
            sim.host
                .udp(handle)
                .send_slice(&datagram, echo_endpoint())
                .unwrap();
        }
        sim.host.poll(now);
        sim.node.poll(now, &mut sim.node_dev);
        sim.host.poll(now);
        while let Ok((data, _)) = sim.host.udp(handle).recv() {
            assert_eq!(data, datagram);
            echoed += 1;
            echoed_late += u64::from(ms >= millis - 500);
        }
    }
    let (udp, flushes) = (sim.node.stats().udp, sim.node.stats().udp_tx_flushes);
    assert_eq!(flushes, 0, "{udp:?}");
    // The ring drained one echo per millisecond throughout, and overflowed.
    assert!(echoed >= u64::from(millis) - 10, "{echoed} echoes: {udp:?}");
    assert!(
        echoed_late >= 490,
        "{echoed_late} echoes in the last 500 ms"
    );
    assert!(udp.dropped.send_full > 0, "the ring never filled: {udp:?}");
}
