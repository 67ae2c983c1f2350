//! The probe against our own server (`ricochet::serve`), over every
//! transport and in every mode and pattern.

mod probe_support;

use std::time::Duration;

use probe_support::{OurServer, json_of, probe_cli, texts};
use ricochet::core::Mode;
use ricochet::core::probe::SizeRange;
use ricochet::probe::{self, Pattern, ProbeSpec, Report, Stop, Target};

fn run(
    target: Target,
    mode: Mode,
    pattern: Pattern,
    size: SizeRange,
    connections: usize,
    count: u64,
) -> Report {
    let mut spec = ProbeSpec::new(target);
    spec.mode = mode;
    spec.pattern = pattern;
    spec.size = size;
    spec.connections = connections;
    spec.stop = Stop::Count(count);
    spec.timeout = Duration::from_secs(5);
    spec.window = 64 * 1024;
    let r = probe::run(&spec).expect("run");
    assert!(r.ok, "{r}");
    assert_eq!(r.messages_verified, connections as u64 * count, "{r}");
    assert_eq!(r.bytes_verified, r.bytes_sent, "{r}");
    assert_eq!(r.connections_ok, connections);
    // Each connection (each UDP socket) opened once, and counted so.
    assert_eq!(r.connections_opened, connections as u64, "{r}");
    r
}

fn sizes(mode: Mode) -> SizeRange {
    match mode {
        Mode::Raw => SizeRange::range(1, 4000),
        Mode::Lines => SizeRange::range(1, 2000),
        Mode::Frames => SizeRange::range(2, 3000),
    }
}

#[test]
fn probe_our_server_tcp_every_mode_and_pattern() {
    for mode in [Mode::Raw, Mode::Lines, Mode::Frames] {
        let srv = OurServer::start(mode);
        for pattern in [Pattern::PingPong, Pattern::Stream] {
            run(
                Target::Tcp(vec![srv.tcp].into()),
                mode,
                pattern,
                sizes(mode),
                4,
                300,
            );
        }
    }
}

#[test]
fn probe_our_server_tcp_ipv6() {
    let srv = OurServer::start(Mode::Raw);
    let Some(v6) = srv.tcp6 else {
        panic!("IPv6 loopback is unavailable here; this test needs [::1]");
    };
    let t: Target = format!("tcp://{v6}").parse().expect("v6 target");
    run(
        t,
        Mode::Raw,
        Pattern::PingPong,
        SizeRange::fixed(64),
        2,
        200,
    );
}

#[test]
fn probe_our_server_unix_every_mode_and_pattern() {
    for mode in [Mode::Raw, Mode::Lines, Mode::Frames] {
        let srv = OurServer::start(mode);
        for pattern in [Pattern::PingPong, Pattern::Stream] {
            run(
                Target::Unix(srv.unix.clone()),
                mode,
                pattern,
                sizes(mode),
                3,
                300,
            );
        }
    }
}

#[test]
fn probe_our_server_udp_pingpong_and_window() {
    let srv = OurServer::start(Mode::Raw);
    for pattern in [Pattern::PingPong, Pattern::Stream] {
        let r = run(
            Target::Udp(vec![srv.udp].into()),
            Mode::Raw,
            pattern,
            SizeRange::range(12, 1400),
            2,
            500,
        );
        let d = r.datagrams.expect("datagram counts");
        assert_eq!(
            (d.sent, d.verified, d.lost, d.corrupt),
            (1000, 1000, 0, 0),
            "{r}"
        );
    }
}

#[test]
fn probe_our_server_large_stream_messages() {
    let srv = OurServer::start(Mode::Raw);
    let r = run(
        Target::Tcp(vec![srv.tcp].into()),
        Mode::Raw,
        Pattern::Stream,
        SizeRange::fixed(64 * 1024),
        2,
        100,
    );
    assert_eq!(r.bytes_verified, 2 * 100 * 64 * 1024);
}

#[test]
fn probe_our_server_many_connections_over_threads() {
    let srv = OurServer::start(Mode::Raw);
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.tcp].into()));
    spec.connections = 300;
    spec.threads = Some(2);
    spec.stop = Stop::Count(20);
    let r = probe::run(&spec).expect("run");
    assert!(r.ok, "{r}");
    assert_eq!(r.connections_ok, 300);
    assert_eq!(r.messages_verified, 6000);
}

#[test]
fn probe_our_server_rate_paces_messages() {
    let srv = OurServer::start(Mode::Raw);
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.tcp].into()));
    spec.connections = 4;
    spec.rate = Some(400.0); // 100 per connection per second
    spec.stop = Stop::Duration(Duration::from_millis(1000));
    let r = probe::run(&spec).expect("run");
    assert!(r.ok, "{r}");
    // Open loop: about rate * duration messages, never more than scheduled.
    assert!(r.messages_sent <= 404 + 4, "{r}");
    assert!(r.messages_sent >= 300, "{r}");
}

#[test]
fn probe_cli_our_server_every_transport() {
    let srv = OurServer::start(Mode::Lines);
    let targets = [
        format!("tcp://{}", srv.tcp),
        format!("unix://{}", srv.unix.display()),
    ];
    for t in &targets {
        let o = probe_cli(&[
            t, "-m", "lines", "-c", "2", "-n", "100", "-s", "2-500", "--json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{t}: {:?}", texts(&o));
        assert_eq!(json_of(&o)["messages_verified"], 200);
    }
    let o = probe_cli(&[&format!("udp://{}", srv.udp), "-n", "200", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    assert_eq!(json_of(&o)["datagrams"]["verified"], 200);
}
