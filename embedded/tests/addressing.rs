//! Addressing: DHCP with a static fallback on a virtual clock, and the
//! IPv6 link-local address derived from the MAC.

#![cfg(feature = "dhcp")]

mod support;

use ricochet_core::probe::SizeRange;
use ricochet_core::{Duration, Mode, Pattern, ProbeConfig};
use ricochet_embedded::{AddressSource, Ipv4Config, NodeConfig, StaticIpv4};
use smoltcp::wire::{IpEndpoint, Ipv4Cidr};

use support::host::StreamClient;
use support::sim::{Flow, NODE_IP, Sim, core, echo_endpoint, server_config};

const SECOND: u64 = 1_000_000;

fn ping_pong(count: u64) -> ProbeConfig {
    ProbeConfig {
        mode: Mode::Raw,
        pattern: Pattern::PingPong,
        seed: 5,
        size: SizeRange::range(1, 300),
        count: Some(count),
        response_timeout: Some(Duration::from_secs(2)),
        interval: None,
    }
}

/// DHCP, falling back to `NODE_IP`/24 after 2 s without a lease.
fn dhcp_with_fallback_after_2s() -> NodeConfig {
    let mut config = server_config();
    config.ipv4 = Ipv4Config::Dhcp {
        fallback: Some(StaticIpv4 {
            address: Ipv4Cidr::new(NODE_IP, 24),
            gateway: None,
        }),
        fallback_after: Duration::from_secs(2),
    };
    config
}

/// Connects a fresh host client to `server` and runs it to its verdict.
fn echo_works(sim: &mut Sim<4, 6, 1024>, server: IpEndpoint, port: u16) -> bool {
    let handle = sim.host.tcp_socket(4096, 4096);
    let now = core(sim.now);
    let mut client = StreamClient::connect(&mut sim.host, handle, server, port, ping_pong(20), now);
    sim.run(5 * SECOND, &mut |host, _, now| {
        client.drive(host, now);
        Flow::until(client.deadline(), client.is_finished())
    });
    client.passed()
}

#[test]
fn dhcp_without_a_server_applies_the_static_fallback_after_the_timeout() {
    let mut sim = Sim::<4, 6, 1024>::new(dhcp_with_fallback_after_2s());
    let start = sim.now;
    assert_eq!(sim.node.ipv4_address(), None);
    // The node wakes itself for the fallback: its delay never runs past it.
    let mut fallback_at = None;
    sim.run(5 * SECOND, &mut |_, node, now| {
        if fallback_at.is_none() && node.ipv4_address().is_some() {
            fallback_at = Some(now.as_micros());
        }
        Flow::until(None, fallback_at.is_some())
    });
    let at = fallback_at.expect("the fallback was applied") - start;
    assert!(
        (2 * SECOND..2 * SECOND + 20_000).contains(&at),
        "applied after {at} us"
    );
    assert_eq!(sim.node.ipv4_address(), Some(Ipv4Cidr::new(NODE_IP, 24)));
    assert_eq!(sim.node.address_source(), Some(AddressSource::Fallback));
    assert_eq!(sim.node.stats().addressing.fallbacks, 1);
    assert_eq!(sim.node.stats().addressing.leases, 0);
    assert!(echo_works(&mut sim, echo_endpoint(), 40000));
}

#[test]
fn link_up_while_waiting_for_dhcp_starts_the_fallback_delay_over() {
    let mut sim = Sim::<4, 6, 1024>::new(dhcp_with_fallback_after_2s());
    sim.idle(1_500_000);
    assert_eq!(sim.node.ipv4_address(), None);
    // The link bounced 1.5 s in: a fresh 2 s from here, not 0.5 s.
    let link_up = sim.now;
    sim.node.link_up(support::sim::smol(link_up));
    let mut fallback_at = None;
    sim.run(5 * SECOND, &mut |_, node, now| {
        if fallback_at.is_none() && node.ipv4_address().is_some() {
            fallback_at = Some(now.as_micros());
        }
        Flow::until(None, fallback_at.is_some())
    });
    let at = fallback_at.expect("the fallback was applied") - link_up;
    assert!(
        (2 * SECOND..2 * SECOND + 20_000).contains(&at),
        "applied {at} us after the link came up"
    );
    assert_eq!(sim.node.address_source(), Some(AddressSource::Fallback));
}

#[test]
fn static_address_applies_at_once_and_idle_node_needs_no_wakeup() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    assert_eq!(sim.node.address_source(), Some(AddressSource::Static));
    sim.idle(SECOND);
    // No DHCP, no connection, no timer: only a frame can bring work.
    assert_eq!(sim.node_delay, None);
    assert!(echo_works(&mut sim, echo_endpoint(), 40000));
}

#[cfg(feature = "ipv6")]
#[test]
fn ipv6_link_local_address_is_the_eui64_of_the_mac_and_serves_echo() {
    use smoltcp::wire::{IpAddress, IpCidr, Ipv6Address, Ipv6Cidr};

    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    // MAC 02:00:00:00:00:01: the U/L bit flips, ff:fe goes in the middle.
    let node_ll = Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0x00ff, 0xfe00, 0x0001);
    assert!(
        sim.node
            .interface()
            .ip_addrs()
            .contains(&IpCidr::Ipv6(Ipv6Cidr::new(node_ll, 64)))
    );
    let host_ll = Ipv6Address::new(0xfe80, 0, 0, 0, 0, 0x00ff, 0xfe00, 0x0002);
    sim.host.iface.update_ip_addrs(|addrs| {
        addrs
            .push(IpCidr::Ipv6(Ipv6Cidr::new(host_ll, 64)))
            .unwrap();
    });
    assert!(echo_works(
        &mut sim,
        IpEndpoint::new(IpAddress::Ipv6(node_ll), 7),
        40000
    ));
    assert_eq!(sim.node.stats().tcp.accepted, 1);
}
