//! Building a node: resources that cannot serve the configuration are
//! refused with a named error (too few socket slots does not even
//! compile); the activity LED; the bounded work per poll.

mod support;

use std::cell::Cell;
use std::convert::Infallible;
use std::rc::Rc;

use embedded_hal::digital::{ErrorType, OutputPin};
use ricochet_core::{Mode, PolicyConfig, ProbeConfig};
use ricochet_embedded::{
    EchoNode, LINES_PORT, MAX_FRAMES_PER_POLL, ModePort, NewError, NoLed, NodeResources,
    SessionBuffer, TcpRxBuffer, TcpTxBuffer, UdpRxBuffer, UdpTxBuffer, socket_slots,
};
use smoltcp::time::Instant;

use support::pair::pair;
use support::sim::{Flow, Sim, echo_endpoint, resources, server_config};

#[cfg(feature = "udp")]
#[test]
fn udp_receive_ring_smaller_than_an_mtu_datagram_is_refused_at_new() {
    let (mut dev, _) = pair();
    // max_datagram 512 fits, but a 1472-byte datagram (1500-byte MTU)
    // would be lost uncounted.
    let mut config = server_config();
    config.udp = Some(PolicyConfig {
        max_datagram: 512,
        ..PolicyConfig::DEFAULT
    });
    let small: &'static mut NodeResources<
        'static,
        4,
        6,
        SessionBuffer<1024>,
        TcpRxBuffer<1024>,
        TcpTxBuffer<1536>,
        UdpRxBuffer<1024>,
        UdpTxBuffer<1024>,
    > = Box::leak(Box::new(NodeResources::new()));
    let err = EchoNode::new(config, small, NoLed, &mut dev, Instant::ZERO).unwrap_err();
    assert_eq!(
        err,
        NewError::UdpReceiveRingTooSmall {
            needed: 1472,
            capacity: 1024
        }
    );
}

#[cfg(not(feature = "udp"))]
#[test]
fn udp_echo_without_the_udp_feature_is_refused_at_new() {
    let (mut dev, _) = pair();
    let mut config = server_config();
    config.udp = Some(PolicyConfig::DEFAULT);
    let err = EchoNode::<4>::new(
        config,
        resources::<4, 6, 64>(),
        NoLed,
        &mut dev,
        Instant::ZERO,
    )
    .unwrap_err();
    assert_eq!(err, NewError::UdpNotBuilt);
    assert!(err.to_string().contains("`udp` feature"), "{err}");
}

#[cfg(not(feature = "dhcp"))]
#[test]
fn dhcp_without_the_dhcp_feature_is_refused_at_new() {
    let (mut dev, _) = pair();
    // NodeConfig::new asks for DHCP.
    let config = ricochet_embedded::NodeConfig::new(support::sim::NODE_MAC);
    let err = EchoNode::<4>::new(
        config,
        resources::<4, 6, 64>(),
        NoLed,
        &mut dev,
        Instant::ZERO,
    )
    .unwrap_err();
    assert_eq!(err, NewError::DhcpNotBuilt);
    assert!(err.to_string().contains("Ipv4Config::Static"), "{err}");
}

#[test]
fn port_listed_twice_or_zero_is_refused_at_new() {
    let (mut dev, _) = pair();
    let mut config = server_config();
    config.extra_ports[1] = Some(ModePort {
        port: config.port,
        mode: Mode::Lines,
    });
    let err = EchoNode::<4>::new(
        config,
        resources::<4, 6, 64>(),
        NoLed,
        &mut dev,
        Instant::ZERO,
    )
    .unwrap_err();
    assert_eq!(err, NewError::BadPort { port: 7 });
    config.extra_ports[1] = Some(ModePort {
        port: 0,
        mode: Mode::Lines,
    });
    let err = EchoNode::<4>::new(
        config,
        resources::<4, 6, 64>(),
        NoLed,
        &mut dev,
        Instant::ZERO,
    )
    .unwrap_err();
    assert_eq!(err, NewError::BadPort { port: 0 });
    assert!(
        err.to_string().contains("give each mode its own port"),
        "{err}"
    );
}

#[test]
fn more_ports_than_sockets_is_refused_at_new() {
    let (mut dev, _) = pair();
    let mut config = server_config();
    config.serve_every_mode();
    assert_eq!(config.extra_ports[0].map(|p| p.port), Some(LINES_PORT));
    let err = EchoNode::<2>::new(
        config,
        resources::<2, 4, 64>(),
        NoLed,
        &mut dev,
        Instant::ZERO,
    )
    .unwrap_err();
    assert_eq!(
        err,
        NewError::MorePortsThanSockets {
            ports: 3,
            sockets: 2
        }
    );
    // Three sockets are enough.
    EchoNode::<3>::new(
        config,
        resources::<3, 5, 64>(),
        NoLed,
        &mut dev,
        Instant::ZERO,
    )
    .unwrap();
}

#[cfg(feature = "udp")]
#[test]
fn udp_transmit_ring_smaller_than_max_datagram_is_refused_at_new() {
    let (mut dev, _) = pair();
    let small: &'static mut NodeResources<
        'static,
        4,
        6,
        SessionBuffer<1024>,
        TcpRxBuffer<1024>,
        TcpTxBuffer<1536>,
        UdpRxBuffer<1536>,
        UdpTxBuffer<1000>,
    > = Box::leak(Box::new(NodeResources::new()));
    let err = EchoNode::new(server_config(), small, NoLed, &mut dev, Instant::ZERO).unwrap_err();
    assert_eq!(
        err,
        NewError::UdpTransmitRingTooSmall {
            needed: 1472,
            capacity: 1000
        }
    );
}

#[test]
fn udp_disabled_needs_no_udp_buffers() {
    let (mut dev, _) = pair();
    let mut config = server_config();
    config.udp = None;
    let tiny: &'static mut NodeResources<
        'static,
        2,
        4,
        SessionBuffer<256>,
        TcpRxBuffer<1024>,
        TcpTxBuffer<1024>,
        UdpRxBuffer<0>,
        UdpTxBuffer<0>,
    > = Box::leak(Box::new(NodeResources::new()));
    assert!(EchoNode::new(config, tiny, NoLed, &mut dev, Instant::ZERO).is_ok());
}

/// `EchoNode::new` with `config` over resources with `BUF`-byte session
/// buffers: the error's text (it must not panic, nor build a node that
/// serves nobody).
fn refusal<const BUF: usize>(config: ricochet_embedded::NodeConfig) -> String {
    let (mut dev, _) = pair();
    match EchoNode::<4>::new(
        config,
        resources::<4, 6, BUF>(),
        NoLed,
        &mut dev,
        Instant::ZERO,
    ) {
        Ok(_) => panic!("a node was built that cannot serve its configuration"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn empty_session_buffer_is_refused_at_new_not_a_panic() {
    // It panicked in the core's `Session::new` (debug builds); a release
    // build served connections that could never read.
    let err = refusal::<0>(server_config());
    assert!(
        err.contains("TCP port 7: session buffer of 0 bytes, at least 1 needed"),
        "{err}"
    );
}

#[test]
fn frames_port_with_a_session_buffer_below_a_frame_header_is_refused_at_new() {
    // Every frames connection aborted as `frame_too_large` on its first
    // frame, even an empty one.
    let mut config = server_config();
    config.serve_every_mode();
    let err = refusal::<1>(config);
    assert!(
        err.contains("TCP port 7002: session buffer of 1 bytes, at least 2 needed"),
        "{err}"
    );
    // Two bytes hold an empty frame: accepted.
    let (mut dev, _) = pair();
    EchoNode::<4>::new(
        config,
        resources::<4, 6, 2>(),
        NoLed,
        &mut dev,
        Instant::ZERO,
    )
    .unwrap();
}

#[test]
fn zero_session_timeouts_are_refused_at_new() {
    use ricochet_core::Duration;
    // A zero idle timeout closed every connection at once.
    let mut config = server_config();
    config.session.idle_timeout = Some(Duration::ZERO);
    let err = refusal::<64>(config);
    assert!(err.contains("session.idle_timeout of 0"), "{err}");
    let mut config = server_config();
    config.session.drain_timeout = Some(Duration::ZERO);
    let err = refusal::<64>(config);
    assert!(err.contains("session.drain_timeout of 0"), "{err}");
}

#[test]
fn zero_tcp_timeouts_are_refused_at_new() {
    use ricochet_core::Duration;
    // A zero handshake timeout or socket timeout dropped every connection
    // before it was established: nobody was ever served.
    let mut config = server_config();
    config.tcp.handshake_timeout = Duration::ZERO;
    let err = refusal::<64>(config);
    assert!(err.contains("tcp.handshake_timeout of 0"), "{err}");
    let mut config = server_config();
    config.tcp.timeout = Some(Duration::ZERO);
    let err = refusal::<64>(config);
    assert!(err.contains("tcp.timeout of 0"), "{err}");
    // A zero keep-alive sent a keep-alive on every poll: poll returned a
    // zero delay forever and the link was flooded.
    let mut config = server_config();
    config.tcp.keep_alive = Some(Duration::ZERO);
    let err = refusal::<64>(config);
    assert!(err.contains("tcp.keep_alive of 0"), "{err}");
}

/// An LED that counts its edges.
#[cfg_attr(not(feature = "udp"), allow(dead_code))]
struct CountingLed(Rc<Cell<u32>>);

impl ErrorType for CountingLed {
    type Error = Infallible;
}

impl OutputPin for CountingLed {
    fn set_low(&mut self) -> Result<(), Infallible> {
        self.0.set(self.0.get() + 1);
        Ok(())
    }
    fn set_high(&mut self) -> Result<(), Infallible> {
        self.0.set(self.0.get() + 1);
        Ok(())
    }
}

#[cfg(feature = "udp")]
#[test]
fn traffic_toggles_the_activity_led_and_silence_does_not() {
    let edges = Rc::new(Cell::new(0));
    let (mut node_dev, host_dev) = pair();
    let mut node = EchoNode::new(
        server_config(),
        resources::<4, 6, 1024>(),
        CountingLed(edges.clone()),
        &mut node_dev,
        Instant::ZERO,
    )
    .unwrap();
    let mut now = 0i64;
    for _ in 0..100 {
        node.poll(Instant::from_micros(now), &mut node_dev);
        now += 1000;
    }
    let idle_edges = edges.get();
    assert_eq!(idle_edges, 1, "only the initial set_low");
    // A datagram in, an echo out: the LED moves.
    let frame = support::frames::udp(
        (support::sim::HOST_MAC, support::sim::NODE_MAC),
        (support::sim::HOST_IP, 40000),
        (support::sim::NODE_IP, 7),
        b"blink",
    );
    node_dev.inject(frame);
    node.poll(Instant::from_micros(now), &mut node_dev);
    assert!(edges.get() > idle_edges);
    drop(host_dev);
}

#[test]
fn debug_of_a_built_node_shows_its_sockets_address_and_counters() {
    let sim = Sim::<4, 6, 1024>::new(server_config());
    let text = format!("{:?}", sim.node);
    let address = smoltcp::wire::Ipv4Cidr::new(support::sim::NODE_IP, 24);
    for part in [
        "EchoNode {".to_string(),
        "tcp_sockets: 4".to_string(),
        format!("ipv4: {:?}", Some(address)),
        format!("stats: {:?}", sim.node.stats()),
    ] {
        assert!(text.contains(&part), "{part:?} missing from {text}");
    }
}

#[test]
fn more_frames_than_one_poll_takes_make_poll_ask_to_be_called_again() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    for i in 0..MAX_FRAMES_PER_POLL + 5 {
        sim.node_dev.inject(vec![i as u8; 60]);
    }
    let delay = sim
        .node
        .poll(support::sim::smol(sim.now), &mut sim.node_dev);
    assert_eq!(delay, Some(smoltcp::time::Duration::ZERO));
    assert_eq!(sim.node_dev.pending(), 5);
    let delay = sim
        .node
        .poll(support::sim::smol(sim.now), &mut sim.node_dev);
    assert_ne!(delay, Some(smoltcp::time::Duration::ZERO));
    assert_eq!(sim.node_dev.pending(), 0);
    let _ = Flow::idle();
}

#[test]
fn pool_of_eight_sockets_with_socket_slots_serves_eight_at_once() {
    use ricochet_core::Duration;
    use support::host::StreamClient;

    let mut sim = Sim::<8, { socket_slots(8) }, 512>::new(server_config());
    let paced = ProbeConfig {
        count: Some(20),
        interval: Some(Duration::from_millis(1).into()),
        ..ProbeConfig::default()
    };
    let mut clients: Vec<StreamClient> = (0..8)
        .map(|i| {
            let handle = sim.host.tcp_socket(2048, 2048);
            let now = support::sim::core(sim.now);
            StreamClient::connect(
                &mut sim.host,
                handle,
                echo_endpoint(),
                40000 + i,
                paced,
                now,
            )
        })
        .collect();
    let mut peak = 0;
    let done = sim.run(2_000_000, &mut |host, node, now| {
        peak = peak.max(node.stats().tcp.active());
        for c in clients.iter_mut() {
            c.drive(host, now);
        }
        Flow::until(
            clients.iter().filter_map(StreamClient::deadline).min(),
            clients.iter().all(StreamClient::is_finished),
        )
    });
    assert!(done && clients.iter().all(StreamClient::passed));
    assert_eq!(peak, 8);
}
