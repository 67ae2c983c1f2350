//! The verdict's unit tests: reports built from hand-made tallies.

use super::super::report::Latency;
use super::super::spec::Pattern;
use super::hints::SERVE_BUFFER;
use super::*;

mod datagram;
mod stream;

#[test]
fn bytes_show_printable_ascii_and_escape_the_rest() {
    assert_eq!(show_byte(b'm'), "'m' (0x6d)");
    assert_eq!(show_byte(0x9c), "0x9c");
    assert_eq!(show_bytes(b"220 hello\r\n\x00"), "\"220 hello\\r\\n\\x00\"");
}

fn tls(host: &str) -> Target {
    Target::Tls(super::super::TlsTarget {
        addrs: vec!["127.0.0.1:7".parse().unwrap()],
        host: host.to_owned(),
    })
}

fn tally() -> Tally {
    Tally::new(super::super::tally::Window {
        start: Instant::ZERO,
        end: None,
        paced: false,
    })
    .unwrap()
}

#[test]
fn tls_section_only_with_tls_targets_naming_each_name_once() {
    let (mut w, mut h) = (Vec::new(), Vec::new());
    let tcp = ProbeSpec::new(Target::Tcp(vec!["127.0.0.1:7".parse().unwrap()].into()));
    assert!(tls_section(&tcp, &tally(), 1.0, &mut w, &mut h).is_none());
    let mut spec = ProbeSpec::new(tls("a.example"));
    spec.targets.push(tls("b.example"));
    spec.targets.push(tls("a.example"));
    let mut t = tally();
    t.handshake(
        Instant::from_millis(1),
        ricochet_core::Duration::from_micros(500),
        true,
    );
    let r = tls_section(&spec, &t, 2.0, &mut w, &mut h).expect("a tls section");
    assert_eq!(r.server_name, "a.example b.example");
    assert_eq!(
        (r.handshakes, r.resumed, r.handshakes_per_sec),
        (1, 1, None)
    );
    assert!(r.verified);
    assert!(w.is_empty() && h.is_empty(), "{w:?} {h:?}");
    t.handshake(
        Instant::from_millis(2),
        ricochet_core::Duration::from_micros(500),
        false,
    );
    let r = tls_section(&spec, &t, 2.0, &mut w, &mut h).expect("a tls section");
    assert_eq!(r.handshakes_per_sec, Some(1.0));
    let r = tls_section(&spec, &t, 0.009, &mut w, &mut h).expect("a tls section");
    assert_eq!(
        r.handshakes_per_sec, None,
        "a span under 10 ms gives no rate"
    );
}

fn tcp() -> Target {
    Target::Tcp(vec!["127.0.0.1:7".parse().unwrap()].into())
}

fn facts(finish_at: Option<Instant>) -> RunFacts {
    RunFacts {
        threads: 1,
        started_at: String::new(),
        window_start: Instant::ZERO,
        finish_at,
        stopped_early: None,
        // The workers drained after the end of a duration.
        ended_at: finish_at.map_or(Instant::from_millis(60_000), |f| {
            f + ricochet_core::Duration::from_millis(500)
        }),
    }
}

/// A tally of 64-byte messages sent and echoed at these instants (ms).
fn echoed_at(ms: &[u64]) -> Tally {
    let mut t = tally();
    let d = ricochet_core::Duration::from_micros(300);
    for &at in ms {
        let now = Instant::from_micros(at * 1000 + 300);
        t.messages_sent += 1;
        t.messages_verified += 1;
        t.bytes_sent += 64;
        t.bytes_verified += 64;
        t.verified(now, 64);
        t.round_trip(now, d, d);
    }
    t
}

fn report(rate: Option<f64>, stop: Stop, finish_at: Option<Instant>, t: Tally) -> Report {
    let mut spec = ProbeSpec::new(tcp());
    spec.rate = rate;
    spec.stop = stop;
    build_report(&spec, facts(finish_at), t.clone(), &[t])
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Significant digits of `x` as JSON writes it.
fn digits(x: &serde_json::Number) -> usize {
    let text = x.to_string();
    let mantissa = text.split(['e', 'E']).next().unwrap_or("");
    let ds = mantissa.chars().filter(char::is_ascii_digit);
    let ds: String = ds.skip_while(|&c| c == '0').collect();
    ds.trim_end_matches('0').len()
}

fn floats(v: &serde_json::Value, path: &str, out: &mut Vec<(String, usize)>) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => out.push((path.to_owned(), digits(n))),
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                floats(v, &format!("{path}.{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                floats(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

#[test]
fn json_report_numbers_carry_no_conversion_noise() {
    // 3 round trips over 3.3 ms: rates of 909.0909..., a mean of 1/3 ms.
    let mut t = echoed_at(&[0, 1, 3]);
    t.round_trip(
        Instant::from_micros(3_400),
        ricochet_core::Duration::from_micros(301),
        ricochet_core::Duration::from_micros(301),
    );
    let r = report(None, Stop::Count(3), None, t);
    let j: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
    let mut all = Vec::new();
    floats(&j, "", &mut all);
    assert!(all.iter().any(|(p, _)| p == ".latency_us.mean"), "{all:?}");
    let noisy: Vec<_> = all.iter().filter(|(_, d)| *d > 9).collect();
    assert!(noisy.is_empty(), "{noisy:?} in {j}");
}

#[test]
fn paced_count_run_spans_its_schedule_and_never_exceeds_the_rate() {
    // -r 1 -n 2: echoes 0.3 ms after 0 s and 1 s; the schedule takes 2 s.
    let r = report(Some(1.0), Stop::Count(2), None, echoed_at(&[0, 1000]));
    assert!(near(r.measured_secs, 2.0), "{}", r.measured_secs);
    assert!(
        near(r.round_trips_per_sec, 1.0),
        "{}",
        r.round_trips_per_sec
    );
    assert!(near(r.targets[0].round_trips_per_sec, 1.0));
    assert!(near(r.mb_per_sec, 128.0 / 1e6 / 2.0));
    assert!(near(r.connections_per_sec, 0.0));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert!(
        r.to_string().contains(
            "measured     2.000 s, 2 round trips (the span of their schedule at 1 msg/s)\n"
        ),
        "{r}"
    );
    // -c 4 -r 100 -n 50: 200 messages, 4 every 40 ms, the last due at 1.96 s.
    let at: Vec<u64> = (0..50).flat_map(|k| [k * 40; 4]).collect();
    let r = report(Some(100.0), Stop::Count(50), None, echoed_at(&at));
    assert!(near(r.measured_secs, 2.0), "{}", r.measured_secs);
    assert!(
        near(r.round_trips_per_sec, 100.0),
        "{}",
        r.round_trips_per_sec
    );
    // A server that could not keep up: its span is longer than the
    // schedule, and the rate not reached is still a warning.
    let r = report(Some(1.0), Stop::Count(2), None, echoed_at(&[0, 3000]));
    assert!(near(r.measured_secs, 3.0003), "{}", r.measured_secs);
    assert!(r.warnings[0].contains("the requested rate of 1 msg/s was not reached"));
    assert!(
        r.to_string()
            .contains("measured     3.000 s, 2 round trips\n"),
        "{r}"
    );
}

#[test]
fn unpaced_runs_keep_their_span_and_a_paced_duration_spans_the_duration() {
    let r = report(None, Stop::Count(2), None, echoed_at(&[0, 1000]));
    assert!(near(r.measured_secs, 1.0003), "{}", r.measured_secs);
    assert!(near(r.round_trips_per_sec, 2.0 / 1.0003));
    assert!(
        r.to_string()
            .contains("measured     1.000 s, 2 round trips\n"),
        "{r}"
    );
    let d = Stop::Duration(std::time::Duration::from_secs(2));
    let end = Some(Instant::from_millis(2000));
    // -r 1 -d 2s: messages due at 0 and 1 s, the duration ends at 2 s.
    let r = report(Some(1.0), d, end, echoed_at(&[0, 1000]));
    assert!(near(r.measured_secs, 2.0), "{}", r.measured_secs);
    assert!(
        r.to_string()
            .contains("measured     2.000 s, 2 round trips\n"),
        "{r}"
    );
    // Never past the end of the duration.
    let r = report(Some(0.5), d, end, echoed_at(&[0, 1000]));
    assert!(near(r.measured_secs, 2.0), "{}", r.measured_secs);
    assert!(
        near(r.round_trips_per_sec, 1.0),
        "{}",
        r.round_trips_per_sec
    );
}

/// A server that answers for the first second of a 2 s run and then
/// stalls past its end: the run is measured over its whole duration,
/// not up to the last echo, so its rates are not inflated and a paced
/// run warns that its rate was not reached.
#[test]
fn duration_run_whose_server_stalls_at_the_end_spans_the_whole_duration() {
    let d = Stop::Duration(std::time::Duration::from_secs(2));
    let end = Some(Instant::from_millis(2000));
    let r = report(None, d, end, echoed_at(&[0, 500, 1000]));
    assert!(near(r.measured_secs, 2.0), "{}", r.measured_secs);
    assert!(
        near(r.round_trips_per_sec, 1.5),
        "{}",
        r.round_trips_per_sec
    );
    assert!(near(r.mb_per_sec, 192.0 / 1e6 / 2.0), "{}", r.mb_per_sec);
    let r = report(Some(2.0), d, end, echoed_at(&[0, 500, 1000]));
    assert!(
        near(r.round_trips_per_sec, 1.5),
        "{}",
        r.round_trips_per_sec
    );
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("the requested rate of 2 msg/s was not reached")),
        "{:?}",
        r.warnings
    );
    // Interrupted at 1.5 s: up to the interruption, not to the last echo.
    let mut spec = ProbeSpec::new(tcp());
    spec.stop = d;
    let mut run = facts(end);
    run.stopped_early = Some(StopReason::Interrupted);
    run.ended_at = Instant::from_millis(1500);
    let t = echoed_at(&[0, 500, 1000]);
    let r = build_report(&spec, run, t.clone(), &[t]);
    assert!(near(r.measured_secs, 1.5), "{}", r.measured_secs);
}

#[test]
fn window_below_a_message_warns_per_transport_and_not_at_one_message() {
    let mut spec = ProbeSpec::new(tcp());
    spec.pattern = Pattern::Stream;
    spec.size = ricochet_core::probe::SizeRange::fixed(4096);
    spec.window = 4096;
    assert_eq!(small_window_warning(&spec), None, "one message fits");
    spec.window = 4095;
    let w = small_window_warning(&spec).expect("below one message");
    assert!(w.contains("each connection kept about one message"), "{w}");
    spec.pattern = Pattern::PingPong;
    assert_eq!(small_window_warning(&spec), None, "no window in ping-pong");
    let mut udp = ProbeSpec::new(Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into()));
    udp.pattern = Pattern::Stream;
    udp.size = ricochet_core::probe::SizeRange { min: 12, max: 1000 };
    udp.window = 100;
    let w = small_window_warning(&udp).expect("below one datagram");
    assert!(
        w.contains("the largest messages (1000 bytes)")
            && w.contains("each socket kept about one datagram"),
        "{w}"
    );
}

/// A rate missed while the first connections were still opening at
/// --connect-rate: the warning names the ramp and --warmup, not only
/// the server.
#[test]
fn rate_missed_during_a_connect_ramp_names_the_ramp() {
    let d = Stop::Duration(std::time::Duration::from_secs(2));
    let mut spec = ProbeSpec::new(tcp());
    spec.stop = d;
    spec.rate = Some(2.0);
    spec.connections = 10;
    spec.connect_rate = Some(5.0);
    let t = echoed_at(&[0, 1000]);
    let r = report_over_2s(&spec, t);
    let w = r.warnings.join("\n");
    assert!(
        w.contains("was not reached")
            && w.contains("--connect-rate 5/s, over about 2.0 s")
            && w.contains("--warmup 2s"),
        "{w}"
    );
    spec.connect_rate = None;
    let t = echoed_at(&[0, 1000]);
    let r = report_over_2s(&spec, t);
    assert!(r.warnings.join("\n").contains("could not keep up"));
}

/// A rate not reached says which side held it when the figures tell:
/// the probe's own sends late, or ping-pong's one message in flight
/// per connection at the round trip measured (it said "the server or
/// the probe could not keep up" in every case). The rate is shown as
/// the table shows it, not as Rust prints a float (`1e20`, not 21 digits).
#[test]
fn rate_missed_names_the_probe_or_the_round_trip_when_the_figures_tell() {
    let d = Stop::Duration(std::time::Duration::from_secs(1));
    let mut spec = ProbeSpec::new(tcp());
    spec.stop = d;
    spec.connections = 2;
    // Each connection's echoes come 1 ms after their send: 2 connections
    // carry 2000/s at most; 10,000/s was asked.
    spec.rate = Some(10_000.0);
    let rtt = ricochet_core::Duration::from_micros(1000);
    let t_add = |t: &mut Tally, now: Instant, rtt: ricochet_core::Duration| {
        t.messages_sent += 1;
        t.messages_verified += 1;
        t.verified(now, 64);
        t.round_trip(now, rtt, rtt);
    };
    let on_time = |late_us: u64| {
        let mut t = tally();
        for k in 0..2000u64 {
            let now = Instant::from_micros(k * 500 + 1000);
            t.messages_sent += 1;
            t.messages_verified += 1;
            t.verified(now, 64);
            t.round_trip(now, rtt, rtt);
            t.lateness(now, ricochet_core::Duration::from_micros(late_us));
        }
        t
    };
    let warning = |spec: &ProbeSpec, t: Tally| {
        let r = build_report(
            spec,
            facts(Some(Instant::from_millis(1000))),
            t.clone(),
            &[t],
        );
        r.warnings.join("\n")
    };
    let w = warning(&spec, on_time(0));
    assert!(
        w.contains("rate of 10000 msg/s was not reached")
            && w.contains("one message in flight per connection")
            && w.contains("2 connections at a mean round trip of 1000 us")
            && w.contains("at most about 2000 msg/s")
            && w.contains("more -c"),
        "{w}"
    );
    // Round trips of 10 ms carry 200/s, yet 2000/s were achieved: the
    // figures contradict the bound, so the warning does not cite it.
    let mut slow = tally();
    for k in 0..2000u64 {
        let now = Instant::from_micros(k * 500 + 10_000);
        t_add(&mut slow, now, ricochet_core::Duration::from_millis(10));
    }
    let w = warning(&spec, slow);
    assert!(
        w.contains("the server or the probe could not keep up")
            && !w.contains("one message in flight"),
        "{w}"
    );
    let w = warning(&spec, on_time(5_000));
    assert!(
        w.contains("the probe's own sends left late, p50 500") && w.contains("--threads"),
        "{w}"
    );
    // A stream's window is not one message: no round-trip bound to name.
    spec.pattern = Pattern::Stream;
    let w = warning(&spec, on_time(0));
    assert!(
        w.contains("the server or the probe could not keep up"),
        "{w}"
    );
    spec.rate = Some(1e20);
    let w = warning(&spec, on_time(0));
    assert!(w.contains("rate of 1e20 msg/s"), "{w}");
}

fn report_of(spec: &ProbeSpec, t: Tally) -> Report {
    build_report(spec, facts(None), t.clone(), &[t])
}

/// [`report_of`] a run that lasted 2 s, as `--duration 2s` says.
fn report_over_2s(spec: &ProbeSpec, t: Tally) -> Report {
    build_report(
        spec,
        facts(Some(Instant::from_millis(2000))),
        t.clone(),
        &[t],
    )
}

fn hints_of(spec: &ProbeSpec, t: Tally) -> Vec<String> {
    build_report(spec, facts(None), t.clone(), &[t]).hints
}

#[test]
fn tls_section_warns_of_insecure_and_hints_when_no_handshake_completed() {
    let (mut w, mut h) = (Vec::new(), Vec::new());
    let mut spec = ProbeSpec::new(tls("localhost"));
    spec.tls.insecure = true;
    let mut t = tally();
    t.errors.count(ErrorKind::Handshake);
    let r = tls_section(&spec, &t, 1.0, &mut w, &mut h).expect("a tls section");
    assert!(r.insecure && !r.verified);
    assert!(w[0].contains("NOT verified"), "{w:?}");
    assert!(h[0].contains("no TLS handshake completed"), "{h:?}");
}

/// The verdict: a stream run passes when every connection slot completed
/// (or never started: the duration ended first), nothing failed and the
/// run was not stopped; a slot that neither completed nor failed (a
/// connection lost without a count) fails it.
#[test]
fn stream_run_passes_only_when_every_slot_completed_or_never_started() {
    let mut spec = ProbeSpec::new(tcp());
    spec.connections = 4;
    let mut t = echoed_at(&[0, 10]);
    t.connections_ok = 4;
    let r = report_of(&spec, t.clone());
    assert!(r.ok, "{r}");
    // Three done, one never opened: clean, with a warning.
    (t.connections_ok, t.not_started) = (3, 1);
    let r = report_of(&spec, t.clone());
    assert!(r.ok, "{r}");
    assert!(
        any_has(
            &r.warnings,
            "1 of 4 connections were never opened: the duration ended first"
        ),
        "{:?}",
        r.warnings
    );
    // Three done, none left unopened: one is unaccounted for.
    t.not_started = 0;
    assert!(!report_of(&spec, t.clone()).ok);
    // Every slot done but an error counted.
    t.connections_ok = 4;
    t.errors.count(ErrorKind::Timeout);
    assert!(!report_of(&spec, t.clone()).ok);
    // Every slot done, no error, but interrupted.
    t.errors = Default::default();
    let mut run = facts(None);
    run.stopped_early = Some(StopReason::Interrupted);
    assert!(!build_report(&spec, run, t.clone(), &[t]).ok);
}

/// Each target's row divides its own figures by the run's span: two
/// targets, one that echoed twice as much, over 2 s.
#[test]
fn target_rows_give_each_target_its_own_rates_over_the_span() {
    let mut spec = ProbeSpec::new(tcp());
    spec.targets.push(tcp());
    spec.connections = 2;
    spec.stop = Stop::Duration(std::time::Duration::from_secs(2));
    let (a, b) = (echoed_at(&[0, 500, 1000, 1500]), echoed_at(&[0, 1000]));
    let mut total = a.clone();
    total.merge(&b);
    let r = build_report(
        &spec,
        facts(Some(Instant::from_millis(2000))),
        total,
        &[a, b],
    );
    assert!(near(r.measured_secs, 2.0), "{}", r.measured_secs);
    let rows: Vec<_> = r
        .targets
        .iter()
        .map(|t| (t.round_trips_per_sec, t.mb_per_sec))
        .collect();
    assert!(near(rows[0].0, 2.0) && near(rows[1].0, 1.0), "{rows:?}");
    assert!(
        near(rows[0].1, 256.0 / 1e6 / 2.0) && near(rows[1].1, 128.0 / 1e6 / 2.0),
        "{rows:?}"
    );
}

/// No schedule without a positive rate (a rate of 0 would make it
/// infinite: the span of a run that sent nothing on schedule).
#[test]
fn schedule_of_a_zero_or_absent_rate_is_none() {
    assert_eq!(schedule_secs(Some(0.0), 5), None);
    assert_eq!(schedule_secs(None, 5), None);
    assert_eq!(schedule_secs(Some(2.0), 5), Some(2.5));
}

/// The rate warning needs round trips and a rate below 90 % of the one
/// asked for: exactly 90 % was reached, and a run with no round trip at
/// all has its failure to say instead.
#[test]
fn rate_warning_needs_round_trips_under_ninety_percent_of_the_rate() {
    const MISSED: &str = "the requested rate of 100 msg/s was not reached";
    let mut spec = ProbeSpec::new(tcp());
    spec.rate = Some(100.0);
    spec.stop = Stop::Duration(std::time::Duration::from_secs(2));
    let warnings = |t: Tally| report_over_2s(&spec, t).warnings;
    let every = |n: u64| echoed_at(&(0..n).map(|k| k * 2000 / n).collect::<Vec<_>>());
    assert!(!any_has(&warnings(every(180)), MISSED), "90/s");
    assert!(any_has(&warnings(every(178)), MISSED), "89/s");
    assert!(!any_has(&warnings(tally()), MISSED), "no round trip");
}

/// A short connect ramp (under a tenth of the span) is not what held
/// the rate down: the warning looks for another cause.
#[test]
fn rate_missed_after_a_short_connect_ramp_does_not_blame_the_ramp() {
    let mut spec = ProbeSpec::new(tcp());
    spec.stop = Stop::Duration(std::time::Duration::from_secs(2));
    spec.rate = Some(2.0);
    spec.connections = 10;
    // 10 connections at 100/s: 0.1 s, a twentieth of the 2 s span.
    spec.connect_rate = Some(100.0);
    let t = echoed_at(&[0, 1000]);
    let r = report_over_2s(&spec, t);
    let w = r.warnings.join("\n");
    assert!(
        w.contains("was not reached") && !w.contains("opened at --connect-rate"),
        "{w}"
    );
}

/// The report names the targets' transport when they share one, and
/// "mixed" when they do not; its bit rate is 8 times its byte rate and
/// its connection rate is the connections closed over the span.
#[test]
fn report_names_a_shared_transport_and_derives_its_rates() {
    let mut spec = ProbeSpec::new(tcp());
    spec.targets.push(tcp());
    spec.connections = 2;
    spec.stop = Stop::Duration(std::time::Duration::from_secs(2));
    let mut t = echoed_at(&[0, 500, 1000, 1500]);
    t.completed = 3;
    let r = build_report(
        &spec,
        facts(Some(Instant::from_millis(2000))),
        t.clone(),
        &[t.clone()],
    );
    assert_eq!(r.transport, "tcp");
    assert!(near(r.mb_per_sec, 256.0 / 1e6 / 2.0), "{}", r.mb_per_sec);
    assert!(
        near(r.mbit_per_sec, 8.0 * 256.0 / 1e6 / 2.0),
        "{}",
        r.mbit_per_sec
    );
    assert!(
        near(r.connections_per_sec, 1.5),
        "{}",
        r.connections_per_sec
    );
    spec.targets[1] = tls("a.example");
    let r = report_over_2s(&spec, t);
    assert_eq!(r.transport, "mixed");
    spec.targets = vec![tls("a.example")];
    assert_eq!(report_of(&spec, tally()).transport, "tls");
}

/// "No TLS handshake completed" needs a failed handshake and none done:
/// a run with no handshake failure, or with some handshakes done, gets
/// no such hint.
#[test]
fn tls_no_handshake_hint_needs_a_failure_and_no_handshake_done() {
    const NONE_DONE: &str = "no TLS handshake completed";
    let spec = ProbeSpec::new(tls("a.example"));
    let hints = |t: &Tally| {
        let (mut w, mut h) = (Vec::new(), Vec::new());
        tls_section(&spec, t, 1.0, &mut w, &mut h);
        h
    };
    let mut t = tally();
    assert!(!any_has(&hints(&t), NONE_DONE), "nothing failed");
    t.errors.count(ErrorKind::Handshake);
    assert!(any_has(&hints(&t), NONE_DONE));
    t.handshake(
        Instant::from_millis(1),
        ricochet_core::Duration::from_micros(500),
        false,
    );
    assert!(!any_has(&hints(&t), NONE_DONE), "one was done");
}

/// The TLS section says resumption is on unless turned off, and calls the
/// server verified only after a handshake that checked its certificate.
#[test]
fn tls_section_says_verified_only_after_a_checked_handshake() {
    let mut spec = ProbeSpec::new(tls("a.example"));
    let section = |spec: &ProbeSpec, t: &Tally| {
        let (mut w, mut h) = (Vec::new(), Vec::new());
        tls_section(spec, t, 1.0, &mut w, &mut h).expect("a tls section")
    };
    let mut t = tally();
    let r = section(&spec, &t);
    assert!(r.resumption);
    assert!(!r.verified, "no handshake: nothing verified");
    t.handshake(
        Instant::from_millis(1),
        ricochet_core::Duration::from_micros(500),
        false,
    );
    assert!(section(&spec, &t).verified);
    spec.tls.insecure = true;
    assert!(!section(&spec, &t).verified, "--insecure verifies nothing");
    spec.tls.no_resumption = true;
    assert!(!section(&spec, &t).resumption);
}

/// Quotes, backslashes and tabs are escaped as in a Rust string, so the
/// quoted bytes read back unambiguously.
#[test]
fn shown_bytes_escape_quotes_backslashes_and_tabs() {
    assert_eq!(show_bytes(b"a\"b\\c\td"), r#""a\"b\\c\td""#);
    assert_eq!(
        no_progress(std::time::Duration::from_secs(5)),
        "no progress for 5s"
    );
}

/// Whether any of the hints `h` holds `s`.
fn any_has(h: &[String], s: &str) -> bool {
    h.iter().any(|x| x.contains(s))
}
