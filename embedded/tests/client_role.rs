//! The client role: a node runs the core's probes against an echo server,
//! here another node in the server role on the same wire (or a host that
//! refuses, or one that corrupts the echo); configurations it cannot run
//! are refused at start-up.
#![cfg(feature = "client")]

mod support;

use ricochet_core::probe::{ConfigError, ProbeError, SizeRange};
use ricochet_core::{
    DatagramProbeConfig, Duration, Mode, Pattern, PolicyConfig, ProbeConfig, SessionConfig,
};
use ricochet_embedded::{
    EchoNode, Ipv4Config, NewError, NoLed, NodeConfig, PROBE_WINDOW, ProbeFailure, ProbeOutcome,
    Role, RoundTrips, StaticIpv4,
};
use smoltcp::socket::tcp;
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};

use support::host::Host;
use support::pair::{PairDevice, pair};
use support::sim::{HOST_IP, HOST_MAC, NODE_IP, echo_endpoint, resources, server_config, smol};

const SECOND: u64 = 1_000_000;
const CLIENT_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x03]);
const CLIENT_IP: Ipv4Address = Ipv4Address::new(192, 168, 69, 3);

fn client_config(
    server: IpEndpoint,
    probe: ProbeConfig,
    datagram: Option<DatagramProbeConfig>,
) -> NodeConfig {
    let mut config = NodeConfig::new(CLIENT_MAC);
    config.random_seed = 99;
    config.ipv4 = Ipv4Config::Static(StaticIpv4 {
        address: Ipv4Cidr::new(CLIENT_IP, 24),
        gateway: None,
    });
    config.role = Role::Client {
        server,
        probe,
        datagram,
    };
    config
}

fn stream_probe(mode: Mode, count: u64) -> ProbeConfig {
    ProbeConfig {
        mode,
        pattern: Pattern::Stream { window: 4096 },
        seed: 3,
        size: SizeRange::range(2, 900),
        count: Some(count),
        response_timeout: Some(Duration::from_secs(5)),
        interval: None,
    }
}

fn datagram_probe() -> DatagramProbeConfig {
    DatagramProbeConfig {
        seed: 4,
        size: SizeRange::range(12, 1000),
        count: Some(200),
        window: 8,
        loss_timeout: Duration::from_millis(500),
        interval: None,
    }
}

/// The earliest of two optional delays, in microseconds.
fn min_delay(a: Option<SmolDuration>, b: Option<SmolDuration>) -> Option<u64> {
    [a, b].into_iter().flatten().map(|d| d.total_micros()).min()
}

/// A server node and a client node on one wire; steps until the client
/// finished or `limit` virtual microseconds passed.
fn client_against_server(mode: Mode) -> (EchoNode<'static, 4>, EchoNode<'static, 1>) {
    let (mut server_dev, mut client_dev): (PairDevice, PairDevice) = pair();
    let mut now = 1_000u64;
    let mut server_config = server_config();
    server_config.session = SessionConfig {
        mode,
        ..SessionConfig::default()
    };
    // The probe sends faster than the default 1000/s per source allows.
    server_config.udp = Some(PolicyConfig {
        rate: None,
        ..PolicyConfig::DEFAULT
    });
    let mut server = EchoNode::new(
        server_config,
        resources::<4, 6, 1024>(),
        NoLed,
        &mut server_dev,
        smol(now),
    )
    .unwrap();
    let mut client = EchoNode::new(
        client_config(
            echo_endpoint(),
            stream_probe(mode, 300),
            Some(datagram_probe()),
        ),
        resources::<1, 3, 1024>(),
        NoLed,
        &mut client_dev,
        smol(now),
    )
    .unwrap();
    while now < 60 * SECOND && !client.client_finished() {
        let a = server.poll(smol(now), &mut server_dev);
        let b = client.poll(smol(now), &mut client_dev);
        now += if server_dev.pending() + client_dev.pending() > 0 {
            10
        } else {
            min_delay(a, b).unwrap_or(10_000).max(10)
        };
    }
    (server, client)
}

#[test]
fn client_role_node_verifies_stream_and_datagrams_against_a_server_node() {
    for mode in [Mode::Raw, Mode::Lines, Mode::Frames] {
        let (server, client) = client_against_server(mode);
        let c = client.stats().client;
        assert_eq!(c.stream_outcome, ProbeOutcome::Passed, "{mode}: {c:?}");
        assert_eq!(
            c.datagram_outcome,
            ProbeOutcome::Passed,
            "{mode}: {c:?} {:?}",
            server.stats().udp
        );
        assert_eq!(c.stream.messages_verified, 300);
        assert_eq!(c.stream_round_trips.count, 300);
        assert!(c.stream_round_trips.min <= c.stream_round_trips.mean());
        assert!(c.stream_round_trips.mean() <= c.stream_round_trips.max);
        assert_eq!((c.datagram.sent, c.datagram.verified), (200, 200));
        assert_eq!(c.connects, 1);
        let s = server.stats();
        assert_eq!(s.tcp.bytes_out, c.stream.bytes_verified);
        assert_eq!(s.udp.echoed, 200);
        client.log_stats();
    }
}

#[test]
fn client_node_with_both_verdicts_in_is_finished_and_a_server_node_never_is() {
    let (server, client) = client_against_server(Mode::Raw);
    let c = client.stats().client;
    assert_eq!(
        (c.stream_outcome, c.datagram_outcome),
        (ProbeOutcome::Passed, ProbeOutcome::Passed)
    );
    // The loop above stopped on the verdicts, not on its 60 s limit.
    assert!(client.client_finished(), "{c:?}");
    // A server's client counters are all `NotRun`: still not a finished client.
    assert_eq!(
        (
            server.stats().client.stream_outcome,
            server.stats().client.datagram_outcome
        ),
        (ProbeOutcome::NotRun, ProbeOutcome::NotRun)
    );
    assert!(!server.client_finished());
    // Every verified message and datagram timed, over a link of 10 us
    // steps: no round trip is zero, and the mean lies between the extremes.
    for (rtt, verified) in [
        (c.stream_round_trips, c.stream.messages_verified),
        (c.datagram_round_trips, c.datagram.verified),
    ] {
        assert_eq!(rtt.count, verified);
        assert!(rtt.min > Duration::ZERO, "{rtt:?}");
        assert!(rtt.min <= rtt.mean() && rtt.mean() <= rtt.max, "{rtt:?}");
        assert!(rtt.total >= rtt.max, "{rtt:?}");
    }
}

#[test]
fn round_trips_mean_is_the_total_over_the_count_and_zero_before_any() {
    let none = RoundTrips::default();
    assert_eq!(none.mean(), Duration::ZERO);
    let four = RoundTrips {
        count: 4,
        min: Duration::from_micros(1_000),
        max: Duration::from_micros(4_000),
        total: Duration::from_micros(10_000),
    };
    assert_eq!(four.mean(), Duration::from_micros(2_500));
}

#[test]
fn client_role_refused_connection_is_retried_every_second() {
    // A host that answers every SYN on port 7 with a RST (nothing listens).
    let (mut host_dev, mut client_dev) = pair();
    let mut now = 1_000u64;
    let mut host = Host::new(
        host_dev_take(&mut host_dev),
        HOST_MAC,
        Ipv4Cidr::new(HOST_IP, 24),
        smol(now),
    );
    let server = IpEndpoint::new(IpAddress::Ipv4(HOST_IP), 7);
    let mut client = EchoNode::new(
        client_config(server, stream_probe(Mode::Raw, 10), None),
        resources::<1, 3, 1024>(),
        NoLed,
        &mut client_dev,
        smol(now),
    )
    .unwrap();
    while now < 3_500_000 {
        let a = client.poll(smol(now), &mut client_dev);
        let b = host.poll(smol(now));
        now += if client_dev.pending() + host.device.pending() > 0 {
            10
        } else {
            min_delay(a, b).unwrap_or(10_000).max(10)
        };
    }
    let c = client.stats().client;
    assert_eq!(c.connects, 4, "at 0, 1, 2 and 3 s: {c:?}");
    assert_eq!(c.connect_failures, 4);
    assert_eq!(c.stream_outcome, ProbeOutcome::Running);
    assert!(!client.client_finished());
}

/// Moves a device out of a binding (the pair hands out owned ends).
fn host_dev_take(dev: &mut PairDevice) -> PairDevice {
    let (placeholder, _) = pair();
    std::mem::replace(dev, placeholder)
}

#[test]
fn client_role_against_a_corrupting_server_fails_with_the_exact_offset() {
    let (host_dev, mut client_dev) = pair();
    let mut now = 1_000u64;
    let mut host = Host::new(host_dev, HOST_MAC, Ipv4Cidr::new(HOST_IP, 24), smol(now));
    let listener = host.tcp_socket(4096, 4096);
    host.tcp(listener).listen(7).unwrap();
    let server = IpEndpoint::new(IpAddress::Ipv4(HOST_IP), 7);
    let mut client = EchoNode::new(
        client_config(server, stream_probe(Mode::Raw, 100), None),
        resources::<1, 3, 1024>(),
        NoLed,
        &mut client_dev,
        smol(now),
    )
    .unwrap();
    // The "server" echoes every byte, but flips one bit of byte 1000.
    let mut offset = 0u64;
    while now < 10 * SECOND && !client.client_finished() {
        let a = client.poll(smol(now), &mut client_dev);
        let b = host.poll(smol(now));
        let socket = host.tcp(listener);
        if socket.can_recv() && socket.can_send() {
            let mut buf = [0u8; 512];
            let room = socket.send_capacity() - socket.send_queue();
            let n = socket.recv_slice(&mut buf[..room.min(512)]).unwrap();
            for (i, b) in buf[..n].iter_mut().enumerate() {
                if offset + i as u64 == 1000 {
                    *b ^= 0x10;
                }
            }
            offset += n as u64;
            socket.send_slice(&buf[..n]).unwrap();
        }
        host.poll(smol(now));
        now += if client_dev.pending() + host.device.pending() > 0 {
            10
        } else {
            min_delay(a, b).unwrap_or(10_000).max(10)
        };
    }
    let c = client.stats().client;
    match c.stream_outcome {
        ProbeOutcome::Failed(ProbeFailure::Stream(ProbeError::Mismatch {
            offset,
            expected,
            actual,
        })) => {
            assert_eq!(offset, 1000);
            assert_eq!(expected ^ actual, 0x10);
        }
        other => panic!("expected a mismatch at offset 1000, got {other:?}"),
    }
    // The node reset the connection it could not trust.
    for _ in 0..10 {
        client.poll(smol(now), &mut client_dev);
        host.poll(smol(now));
        now += 10;
    }
    assert_eq!(host.tcp(listener).state(), tcp::State::Closed);
}

// Waiting for a lease needs the `dhcp` feature (`NewError::DhcpNotBuilt`).
#[cfg(feature = "dhcp")]
#[test]
fn client_role_without_address_waits_then_connects_once_the_fallback_applies() {
    let (mut server_dev, mut client_dev) = pair();
    let mut now = 1_000u64;
    let mut server = EchoNode::new(
        server_config(),
        resources::<4, 6, 1024>(),
        NoLed,
        &mut server_dev,
        smol(now),
    )
    .unwrap();
    let mut config = client_config(echo_endpoint(), stream_probe(Mode::Raw, 20), None);
    config.ipv4 = Ipv4Config::Dhcp {
        fallback: Some(StaticIpv4 {
            address: Ipv4Cidr::new(CLIENT_IP, 24),
            gateway: None,
        }),
        fallback_after: Duration::from_secs(3),
    };
    let mut client = EchoNode::new(
        config,
        resources::<1, 3, 1024>(),
        NoLed,
        &mut client_dev,
        smol(now),
    )
    .unwrap();
    let mut connected_at = None;
    let mut polls_unaddressed = 0;
    while now < 20 * SECOND && !client.client_finished() {
        let a = server.poll(smol(now), &mut server_dev);
        let b = client.poll(smol(now), &mut client_dev);
        if client.ipv4_address().is_none() {
            polls_unaddressed += 1;
        }
        if connected_at.is_none() && client.stats().client.connects > 0 {
            connected_at = Some(now);
        }
        now += if server_dev.pending() + client_dev.pending() > 0 {
            10
        } else {
            min_delay(a, b).unwrap_or(10_000).max(10)
        };
    }
    assert!(
        connected_at.unwrap() >= 3 * SECOND,
        "connected before it had an address"
    );
    // While waiting, the node slept until DHCP's retries and the fallback
    // deadline: a handful of polls in 3 s, not a busy loop.
    assert!(
        polls_unaddressed < 20,
        "{polls_unaddressed} polls without an address"
    );
    assert_eq!(client.stats().client.stream_outcome, ProbeOutcome::Passed);
    assert_eq!(client.ipv4_address().map(|c| c.address()), Some(CLIENT_IP));
    let _ = NODE_IP;
}

fn client_role_config(probe: ProbeConfig, datagram: Option<DatagramProbeConfig>) -> NodeConfig {
    let mut config = server_config();
    config.role = Role::Client {
        server: echo_endpoint(),
        probe,
        datagram,
    };
    config
}

#[test]
fn client_role_with_a_probe_config_the_core_refuses_is_refused_at_new() {
    let (mut dev, _) = pair();
    let bad = ProbeConfig {
        size: SizeRange::range(10, 5),
        ..ProbeConfig::default()
    };
    let err = EchoNode::new(
        client_role_config(bad, None),
        resources::<1, 3, 1024>(),
        NoLed,
        &mut dev,
        SmolInstant::ZERO,
    )
    .unwrap_err();
    assert_eq!(
        err,
        NewError::Probe(ConfigError::EmptySizeRange { min: 10, max: 5 })
    );

    let too_wide = DatagramProbeConfig {
        window: PROBE_WINDOW + 1,
        ..DatagramProbeConfig::default()
    };
    let err = EchoNode::new(
        client_role_config(ProbeConfig::default(), Some(too_wide)),
        resources::<1, 3, 1024>(),
        NoLed,
        &mut dev,
        SmolInstant::ZERO,
    )
    .unwrap_err();
    // It said "invalid window 17", not what a window may be.
    assert!(
        err.to_string()
            .contains("datagram window of 17, at most 16 (datagrams the probe tracks)"),
        "{err}"
    );
}

#[test]
fn client_role_without_a_tcp_socket_is_refused_at_new() {
    let (mut dev, _) = pair();
    let err = EchoNode::new(
        client_role_config(ProbeConfig::default(), None),
        resources::<0, 2, 1024>(),
        NoLed,
        &mut dev,
        SmolInstant::ZERO,
    )
    .unwrap_err();
    assert_eq!(err, NewError::NoTcpSocket);
}

#[test]
fn client_role_with_a_server_it_can_never_connect_to_is_refused_at_new() {
    // Port 0, or the unspecified address: smoltcp refuses every connect,
    // and the node retried once a second forever, its verdict `Running`.
    for server in [
        IpEndpoint::new(IpAddress::Ipv4(NODE_IP), 0),
        IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::UNSPECIFIED), 7),
        IpEndpoint::new(IpAddress::Ipv4(Ipv4Address::BROADCAST), 7),
    ] {
        let (mut dev, _) = pair();
        let mut config = client_role_config(ProbeConfig::default(), None);
        config.role = Role::Client {
            server,
            probe: ProbeConfig::default(),
            datagram: None,
        };
        let built = EchoNode::<1>::new(
            config,
            resources::<1, 3, 1024>(),
            NoLed,
            &mut dev,
            SmolInstant::ZERO,
        );
        let err = match built {
            Ok(mut node) => {
                // What it did instead: a connect that fails, retried.
                for second in 0..5 {
                    node.poll(smol(second * 1_000_000), &mut dev);
                }
                panic!(
                    "{server}: built; after 5 s {:?}, {} connect failures",
                    node.stats().client.stream_outcome,
                    node.stats().client.connect_failures
                );
            }
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains(&format!("server {server} cannot be connected to")),
            "{err}"
        );
    }
}
