//! Connection churn: `--pattern crr` (connect, one message, close, repeat),
//! `--lifetime N|D` and `--connect-rate`.

mod probe_support;

use std::time::{Duration, Instant};

use probe_support::*;
use ricochet::probe::{self, Lifetime, Pattern, ProbeSpec, Stop, Target};

fn spec(addr: std::net::SocketAddr) -> ProbeSpec {
    ProbeSpec::new(Target::Tcp(vec![addr].into()))
}

#[test]
fn crr_opens_a_connection_per_message_and_counts_them() {
    let srv = FaultyServer::start(Fault::None);
    let mut s = spec(srv.addr);
    s.pattern = Pattern::Crr;
    s.connections = 4;
    s.stop = Stop::Count(50);
    let r = probe::run(&s).expect("run");
    assert!(r.ok, "{}", r.table());
    assert_eq!(r.pattern, "crr");
    assert_eq!(r.messages_verified, 200);
    assert_eq!(r.connections_opened, 200);
    assert_eq!(r.connections_completed, 200);
    assert!(r.connections_per_sec > 0.0);
    assert_eq!(r.lifetime_messages, Some(1));
    assert_eq!(r.connect_us.map(|l| l.count), Some(200));
    assert_eq!(r.first_byte_us.map(|l| l.count), Some(200));
    // Every one of them really was a new TCP connection.
    srv.wait_accepted(200);
    assert_eq!(r.connections_ok, 4, "the four slots finished cleanly");
}

#[test]
fn lifetime_in_messages_replaces_each_connection_after_that_many() {
    let srv = ShapedServer::start(Shape::BytesPer100ms(u64::MAX));
    let mut s = spec(srv.addr);
    s.connections = 2;
    s.stop = Stop::Count(100);
    s.lifetime = Some(Lifetime::Messages(10));
    let r = probe::run(&s).expect("run");
    assert!(r.ok, "{}", r.table());
    assert_eq!(r.messages_verified, 200);
    assert_eq!(r.connections_opened, 20);
    assert_eq!(srv.accepted(), 20);
}

#[test]
fn lifetime_in_time_replaces_connections_while_the_duration_lasts() {
    let srv = OurServer::start(ricochet::core::Mode::Raw);
    let mut s = spec(srv.tcp);
    s.connections = 2;
    s.stop = Stop::Duration(Duration::from_secs(1));
    s.lifetime = Some(Lifetime::Time(Duration::from_millis(200)));
    let r = probe::run(&s).expect("run");
    assert!(r.ok, "{}", r.table());
    // Each connection lives at least 200 ms (the last one less): at most
    // 6 per slot; a busy machine may open fewer, never fewer than 2 per slot.
    assert!(
        (4..=12).contains(&r.connections_opened),
        "{} connections\n{}",
        r.connections_opened,
        r.table()
    );
    assert_eq!(r.lifetime_secs, Some(0.2));
}

#[test]
fn connect_rate_caps_new_connections_per_second() {
    let srv = OurServer::start(ricochet::core::Mode::Raw);
    let mut s = spec(srv.tcp);
    s.pattern = Pattern::Crr;
    s.connections = 4;
    s.stop = Stop::Count(25);
    s.connect_rate = Some(200.0);
    let start = Instant::now();
    let r = probe::run(&s).expect("run");
    let took = start.elapsed();
    assert!(r.ok, "{}", r.table());
    assert_eq!(r.connections_opened, 100);
    // 100 connections at 200/s cannot take less than about half a second
    // (one connection of catch-up per thread at most).
    assert!(took >= Duration::from_millis(450), "took {took:?}");
    assert!(r.connections_per_sec <= 230.0, "{}", r.table());
}

#[test]
fn paced_crr_counts_a_late_connect_in_the_corrected_latency() {
    // Connections capped at 50/s, messages asked for at 200/s: each
    // transaction starts late, and the corrected latency says so.
    let srv = OurServer::start(ricochet::core::Mode::Raw);
    let mut s = spec(srv.tcp);
    s.pattern = Pattern::Crr;
    s.connections = 2;
    s.threads = Some(1);
    s.stop = Stop::Count(20);
    s.rate = Some(200.0);
    s.connect_rate = Some(50.0);
    let r = probe::run(&s).expect("run");
    assert!(r.ok, "{}", r.table());
    let uncorrected = r.latency_uncorrected_us.expect("paced").p50;
    assert!(
        r.latency_us.p50 >= 10_000 && r.latency_us.p50 > 10 * uncorrected,
        "corrected p50 {} us, uncorrected {uncorrected} us\n{}",
        r.latency_us.p50,
        r.table()
    );
}

#[test]
fn cli_churn_table_and_json_name_the_connection_rate() {
    let srv = OurServer::start(ricochet::core::Mode::Raw);
    let target = format!("tcp://{}", srv.tcp);
    let (code, out, err) = texts(&probe_cli(&[&target, "-p", "crr", "-c", "2", "-n", "20"]));
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("connections  40 opened, 40 closed cleanly"),
        "{out}"
    );
    assert!(out.contains("new connection every 1 message"), "{out}");
    assert!(
        out.contains("(2 of 2 connection slots completed cleanly, 40 connections opened)"),
        "{out}"
    );
    let j = json_of(&probe_cli(&[
        &target,
        "-c",
        "2",
        "-n",
        "20",
        "--lifetime",
        "5",
        "--json",
    ]));
    assert_eq!(j["connections_opened"], 8);
    assert_eq!(j["lifetime_messages"], 5);
    assert!(j["connections_per_sec"].as_f64().unwrap() > 0.0);
}

#[test]
fn cli_churn_flags_on_udp_or_together_are_usage_errors() {
    for (args, needle) in [
        (
            &["udp://127.0.0.1:9", "-p", "crr"][..],
            "--pattern crr applies to stream targets",
        ),
        (
            &["udp://127.0.0.1:9", "--lifetime", "5"][..],
            "--lifetime applies to stream targets",
        ),
        (
            &["udp://127.0.0.1:9", "--connect-rate", "5"][..],
            "--connect-rate applies",
        ),
        (
            &["tcp://127.0.0.1:9", "-p", "crr", "--lifetime", "5"][..],
            "does not apply to --pattern crr",
        ),
        (
            &["tcp://127.0.0.1:9", "--lifetime", "0"][..],
            "--lifetime must be at least 1",
        ),
        (
            &["tcp://127.0.0.1:9", "--connect-rate", "0"][..],
            "bad rate",
        ),
    ] {
        let (code, _, err) = texts(&probe_cli(args));
        assert_eq!(code, 2, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
