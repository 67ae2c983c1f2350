//! `tls://` targets with the probe's churn and load features: `--pattern
//! crr`, `--lifetime`, `--connect-rate` and `--rate` open a TLS connection
//! (a handshake) each time; connect latency covers the handshake, which is
//! also reported on its own; tls:// and tcp:// targets share a run.

mod probe_support;
mod tls_support;

use std::time::Duration;

use probe_support::{json_of, probe_cli, texts};
use ricochet::core::Mode;
use ricochet::probe::{self, Lifetime, Pattern, ProbeSpec, Stop, Target, TlsOptions, TlsTarget};
use tls_support::{Pki, TlsServer};

/// A spec against `srv`'s TLS listener as `localhost`, trusting `pki`'s CA.
fn tls_spec(pki: &Pki, srv: &TlsServer) -> ProbeSpec {
    let mut s = ProbeSpec::new(tls_target(srv));
    s.tls = TlsOptions {
        ca: Some(pki.ca.clone()),
        ..TlsOptions::default()
    };
    s
}

fn tls_target(srv: &TlsServer) -> Target {
    Target::Tls(TlsTarget {
        addrs: vec![srv.tls],
        host: "localhost".to_owned(),
    })
}

#[test]
fn tls_crr_connect_latency_covers_the_handshake_reported_apart() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let mut s = tls_spec(&pki, &srv);
    s.pattern = Pattern::Crr;
    s.connections = 2;
    s.stop = Stop::Count(20);
    let r = probe::run(&s).expect("run");
    assert!(r.ok, "{}", r.table());
    assert_eq!((r.messages_verified, r.connections_opened), (40, 40));
    let tls = r.tls.clone().expect("a tls section");
    assert_eq!(tls.handshakes, 40, "one handshake per connection");
    assert_eq!(tls.handshake_us.count, 40);
    let connect = r.connect_us.expect("connect latency");
    let first_byte = r.first_byte_us.expect("first-byte latency");
    assert_eq!(connect.count, 40);
    // Per connection: connect (dial to handshake done) >= handshake (TCP
    // up to handshake done), and first byte >= connect; order statistics
    // keep that for every percentile.
    let h = tls.handshake_us;
    for (what, c, hs) in [
        ("p50", connect.p50, h.p50),
        ("p99", connect.p99, h.p99),
        ("max", connect.max, h.max),
    ] {
        assert!(c >= hs, "{what}: connect {c} us < handshake {hs} us");
    }
    assert!(first_byte.p50 >= connect.p50, "{}", r.table());
    // Round trips are the 40 messages' alone.
    assert_eq!(r.latency_us.count, 40);
    srv.wait_stats("40 handshakes", |st| st.tls_handshakes.completed == 40);
}

#[test]
fn tls_lifetime_and_connect_rate_open_a_tls_connection_each_time() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let mut s = tls_spec(&pki, &srv);
    s.connections = 2;
    s.stop = Stop::Count(20);
    s.lifetime = Some(Lifetime::Messages(5));
    s.connect_rate = Some(500.0);
    let r = probe::run(&s).expect("run");
    assert!(r.ok, "{}", r.table());
    assert_eq!((r.messages_verified, r.connections_opened), (40, 8));
    let tls = r.tls.expect("a tls section");
    assert_eq!(tls.handshakes, 8);
    assert!(tls.resumed >= 6, "later connections resume: {tls:?}");
    srv.wait_stats("8 TLS sessions", |st| {
        st.tls_handshakes.completed == 8 && st.tls.closed.peer_finished == 8
    });
}

#[test]
fn tls_crr_under_a_rate_keeps_its_schedule() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let mut s = tls_spec(&pki, &srv);
    s.pattern = Pattern::Crr;
    s.connections = 2;
    s.rate = Some(100.0);
    s.stop = Stop::Duration(Duration::from_millis(600));
    let r = probe::run(&s).expect("run");
    assert!(r.ok, "{}", r.table());
    let tls = r.tls.clone().expect("a tls section");
    assert_eq!(tls.handshakes, r.connections_opened);
    assert!(r.connections_opened >= 20, "{}", r.table());
    assert!(r.send_lateness_us.is_some() && r.latency_uncorrected_us.is_some());
}

#[test]
fn tls_and_tcp_targets_share_a_run_and_only_tls_connections_handshake() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let mut s = tls_spec(&pki, &srv);
    s.targets.push(Target::Tcp(vec![srv.tcp].into()));
    s.connections = 4;
    s.stop = Stop::Count(10);
    let r = probe::run(&s).expect("run");
    assert!(r.ok, "{}", r.table());
    assert_eq!(r.transport, "mixed");
    assert_eq!(r.messages_verified, 40);
    let tls = r.tls.clone().expect("a tls section");
    assert_eq!((tls.handshakes, tls.server_name.as_str()), (2, "localhost"));
    assert_eq!(r.targets.len(), 2);
    assert_eq!(r.targets[0].connections_opened, 2);
    assert_eq!(r.targets[1].connections_opened, 2);
    srv.wait_stats("2 TLS and 2 TCP sessions", |st| {
        st.tls_handshakes.completed == 2 && st.tcp.accepted == 2
    });
}

#[test]
fn tls_crr_cli_prints_handshakes_next_to_connections_and_streams_json() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://localhost:{}", srv.tls.port());
    let ca = pki.ca.to_str().expect("utf-8 temp path");
    let o = probe_cli(&[&target, "--tls-ca", ca, "-p", "crr", "-c", "2", "-n", "10"]);
    let (code, table, err) = texts(&o);
    assert_eq!(code, 0, "{table}{err}");
    assert!(table.contains("handshakes   20 ("), "{table}");
    assert!(table.contains("certificate localhost verified"), "{table}");
    assert!(table.contains("20 opened"), "{table}");
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        ca,
        "-p",
        "crr",
        "-c",
        "2",
        "-d",
        "300ms",
        "--json-stream",
    ]);
    let (code, out, err) = texts(&o);
    assert_eq!(code, 0, "{out}{err}");
    let summary = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|j| j["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary line: {out}"));
    assert_eq!(summary["tls"]["handshakes"], summary["connections_opened"]);
    assert!(summary["tls"]["handshakes_per_sec"].as_f64().unwrap_or(0.0) > 0.0);
    // The plain --json report too.
    let o = probe_cli(&[&target, "--tls-ca", ca, "-n", "5", "--json"]);
    assert_eq!(json_of(&o)["tls"]["handshakes"], 1);
}
