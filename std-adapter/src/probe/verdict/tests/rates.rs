//! The measured span and the rates over it: paced and unpaced runs, the
//! rate missed and why, per-target and shared-transport rows.

use super::*;

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
