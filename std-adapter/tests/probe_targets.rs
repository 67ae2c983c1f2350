//! Several targets: the connections are spread round-robin over them, and
//! the report has a row per target and the total.

mod probe_support;

use probe_support::*;
use ricochet::probe::{self, ProbeSpec, SpecError, Stop, Target};

#[test]
fn connections_spread_over_targets_with_a_row_each_that_add_up() {
    let (a, b) = (
        FaultyServer::start(Fault::None),
        FaultyServer::start(Fault::None),
    );
    let mut spec = ProbeSpec::new(Target::Tcp(vec![a.addr].into()));
    spec.targets.push(Target::Tcp(vec![b.addr].into()));
    spec.connections = 5;
    spec.stop = Stop::Count(40);
    let r = probe::run(&spec).expect("run");
    assert!(r.ok, "{}", r.table());
    a.wait_accepted(3);
    b.wait_accepted(2);
    assert_eq!(r.targets.len(), 2);
    assert_eq!(r.targets[0].target, format!("tcp://{}", a.addr));
    assert_eq!((r.targets[0].connections, r.targets[1].connections), (3, 2));
    assert_eq!(
        (
            r.targets[0].messages_verified,
            r.targets[1].messages_verified
        ),
        (120, 80)
    );
    let rt: u64 = r.targets.iter().map(|t| t.round_trips).sum();
    assert_eq!(rt, r.round_trips);
    let rate: f64 = r.targets.iter().map(|t| t.round_trips_per_sec).sum();
    assert!((rate - r.round_trips_per_sec).abs() < 1e-6 * r.round_trips_per_sec.max(1.0));
    assert_eq!(r.target, format!("tcp://{} tcp://{}", a.addr, b.addr));
}

#[test]
fn a_failing_target_has_its_errors_in_its_own_row() {
    let good = FaultyServer::start(Fault::None);
    let refused =
        Target::Tcp(vec![format!("127.0.0.1:{}", free_tcp_port()).parse().unwrap()].into());
    let mut spec = ProbeSpec::new(Target::Tcp(vec![good.addr].into()));
    spec.targets.push(refused);
    spec.connections = 4;
    spec.stop = Stop::Count(10);
    let r = probe::run(&spec).expect("run");
    assert!(!r.ok);
    assert_eq!(r.targets[0].errors.total(), 0);
    assert_eq!(r.targets[0].connections_ok, 2);
    assert_eq!(r.targets[1].errors.refused, 2);
    assert_eq!(r.errors.refused, 2);
    // The refused target measured no latency: its cells say so, not 0 us.
    let table = r.table();
    let row = table
        .lines()
        .find(|l| l.trim_start().starts_with(&r.targets[1].target))
        .unwrap_or_else(|| panic!("{table}"));
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(cells[cells.len() - 3..], ["-", "-", "2"], "{row}");
    assert!(!row.contains(" us"), "{row}");
}

/// A host name that resolves to several addresses, none of which
/// connects: the error names each address and how it failed. It named the
/// last alone, e.g. "Network is unreachable" from an address on no route
/// (or, here, an unscoped link-local one), when the telling failure was the
/// loopback server's refusal before it; and it counted as `io`, not
/// `refused`.
#[test]
fn a_connect_failing_at_every_address_names_each_and_counts_a_refusal() {
    let port = free_tcp_port();
    let loopback: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let unroutable: std::net::SocketAddr = format!("[fe80::1]:{port}").parse().unwrap();
    let mut spec = ProbeSpec::new(Target::Tcp(vec![loopback, unroutable].into()));
    spec.stop = Stop::Count(1);
    let r = probe::run(&spec).expect("run");
    assert!(!r.ok);
    assert_eq!(r.errors.refused, 1, "{:?}", r.error_details);
    let detail = &r.error_details[0].message;
    assert!(
        detail.starts_with("connect failed at each of 2 addresses: ")
            && detail.contains(&format!("127.0.0.1:{port}: Connection refused"))
            && detail.contains(&format!("[fe80::1]:{port}: Invalid argument")),
        "{detail}"
    );
}

/// A UDP target whose every address is refused (a name such as
/// `localhost` with no server on any of its addresses): the error names
/// each address tried. It named the first alone ("no UDP echo server at
/// udp://[::1]:P"), though the socket had moved on to the others.
#[test]
fn a_udp_target_refused_at_every_address_names_each() {
    let port = free_udp_port();
    let first: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let second: std::net::SocketAddr = format!("127.0.0.2:{port}").parse().unwrap();
    let mut spec = ProbeSpec::new(Target::Udp(vec![first, second].into()));
    spec.stop = Stop::Count(1);
    let r = probe::run(&spec).expect("run");
    assert_eq!(r.errors.refused, 1, "{:?}", r.error_details);
    let detail = &r.error_details[0].message;
    assert!(
        detail.starts_with(&format!(
            "no UDP echo server at udp://{second} nor at the address before it, {first} (ICMP \
             port unreachable)"
        )),
        "{detail}"
    );
}

#[test]
fn udp_targets_spread_too() {
    let srv = OurServer::start(ricochet::core::Mode::Raw);
    let other = FaultyUdp::start(UdpFault::DropEvery(u64::MAX));
    let mut spec = ProbeSpec::new(Target::Udp(vec![srv.udp].into()));
    spec.targets.push(Target::Udp(vec![other.addr].into()));
    spec.connections = 2;
    spec.stop = Stop::Count(30);
    let r = probe::run(&spec).expect("run");
    assert!(r.ok, "{}", r.table());
    assert_eq!(r.targets[0].messages_verified, 30);
    assert_eq!(r.targets[1].messages_verified, 30);
}

#[test]
fn mixed_or_too_few_connections_for_the_targets_are_rejected() {
    let mut spec = ProbeSpec::new(Target::Tcp(vec!["127.0.0.1:9".parse().unwrap()].into()));
    spec.targets
        .push(Target::Udp(vec!["127.0.0.1:9".parse().unwrap()].into()));
    spec.connections = 2;
    assert_eq!(spec.validate(), Err(SpecError::MixedTargets));
    spec.targets[1] = Target::Unix("/tmp/x.sock".into());
    assert_eq!(spec.validate(), Ok(()), "TCP and Unix are both streams");
    spec.connections = 1;
    assert!(matches!(
        spec.validate(),
        Err(SpecError::FewerConnectionsThanTargets {
            connections: 1,
            targets: 2
        })
    ));
}

#[test]
fn cli_takes_several_targets_and_prints_a_row_each_and_the_total() {
    let (a, b) = (
        OurServer::start(ricochet::core::Mode::Raw),
        FaultyServer::start(Fault::None),
    );
    let (ta, tb) = (format!("tcp://{}", a.tcp), format!("tcp://{}", b.addr));
    let (code, out, err) = texts(&probe_cli(&[&ta, &tb, "-c", "4", "-n", "50"]));
    assert_eq!(code, 0, "{err}");
    let row = |t: &str| {
        out.lines()
            .find(|l| l.contains(t) && !l.starts_with("target"))
            .map(str::to_owned)
    };
    for t in [&ta, &tb] {
        let l = row(t).unwrap_or_else(|| panic!("no row for {t}:\n{out}"));
        assert!(l.split_whitespace().any(|w| w == "100"), "{l}");
    }
    assert!(
        out.lines().any(|l| l.trim_start().starts_with("total")),
        "{out}"
    );
    let (code, _, err) = texts(&probe_cli(&[&ta, "udp://127.0.0.1:9", "-c", "2"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("mix UDP and stream"), "{err}");
    let (code, _, err) = texts(&probe_cli(&[&ta, &tb]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("-c 2 or more"), "{err}");
}
