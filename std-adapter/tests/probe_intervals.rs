//! Per-interval reports: `--interval` lines, `--json-stream` objects, and
//! intervals that add up to the summary; the live progress counters too.

mod probe_support;

use std::time::{Duration, Instant};

use probe_support::*;
use ricochet::core::Mode;
use ricochet::probe::{
    self, IntervalReport, Observer, Pattern, ProbeSpec, Snapshot, Stop, StopHandle, Target,
};

/// Records intervals and when they came.
#[derive(Default)]
struct Seen {
    intervals: Vec<(Instant, IntervalReport)>,
}

impl Observer for Seen {
    fn progress(&mut self, _: &Snapshot) {}
    fn interval(&mut self, r: &IntervalReport) {
        self.intervals.push((Instant::now(), r.clone()));
    }
}

fn check_sums(r: &ricochet::probe::Report, intervals: &[IntervalReport]) {
    assert!(!intervals.is_empty(), "no interval");
    for (i, iv) in intervals.iter().enumerate() {
        assert_eq!(iv.index, i as u64, "contiguous indices");
        assert!(iv.end_secs > iv.start_secs, "{iv:?}");
        if i > 0 {
            assert!(
                (iv.start_secs - intervals[i - 1].end_secs).abs() < 1e-9,
                "interval {i} starts where the one before ends"
            );
        }
    }
    let rt: u64 = intervals.iter().map(|i| i.round_trips).sum();
    assert_eq!(rt, r.round_trips, "round trips add up");
    let lat: u64 = intervals.iter().map(|i| i.latency_us.count).sum();
    assert_eq!(lat, r.latency_us.count);
    let bytes: u64 = intervals.iter().map(|i| i.bytes).sum();
    let window_bytes = r.mb_per_sec * 1e6 * r.measured_secs;
    assert!(
        (bytes as f64 - window_bytes).abs() < 1.0,
        "bytes add up: {bytes} vs {window_bytes}"
    );
    let done: u64 = intervals.iter().map(|i| i.connections_completed).sum();
    assert_eq!(
        done, r.connections_completed,
        "completed connections add up"
    );
    let first = intervals.first().unwrap();
    let last = intervals.last().unwrap();
    assert!((first.start_secs - r.warmup_secs).abs() < 1e-3, "{first:?}");
    let span_end = r.warmup_secs + r.measured_secs;
    match r.duration_secs {
        // A duration: the last interval ends with it.
        Some(d) => assert!(
            (last.end_secs - (r.warmup_secs + d)).abs() < 1e-6,
            "the last interval ends with the duration: {last:?}"
        ),
        // A count: intervals go on to the end of the run, past the last verified byte.
        None => assert!(last.end_secs >= span_end - 1e-6, "{last:?} vs {span_end}"),
    }
}

#[test]
fn intervals_of_a_duration_come_while_running_and_add_up_to_the_summary() {
    let srv = OurServer::start(Mode::Raw);
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.tcp].into()));
    spec.connections = 4;
    spec.threads = Some(2);
    spec.stop = Stop::Duration(Duration::from_secs(2));
    spec.warmup = Duration::from_millis(300);
    spec.interval = Some(Duration::from_millis(200));
    let mut seen = Seen::default();
    let start = Instant::now();
    let r = probe::run_observed(&spec, &StopHandle::new(), &mut seen).expect("run");
    assert!(r.ok, "{}", r.table());
    let intervals: Vec<IntervalReport> = seen.intervals.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(
        intervals, r.intervals,
        "the report carries what was observed"
    );
    assert!(
        (9..=11).contains(&intervals.len()),
        "{} intervals",
        intervals.len()
    );
    check_sums(&r, &intervals);
    // Reported as they end, not all at the end.
    let first_at = seen.intervals[0].0 - start;
    assert!(
        first_at < Duration::from_millis(1_800),
        "first interval only after {first_at:?}"
    );
    // Round trips in (almost) every interval: a busy machine may stall one.
    let busy = intervals.iter().filter(|i| i.round_trips > 0).count();
    assert!(busy >= intervals.len() - 2, "{intervals:?}");
}

#[test]
fn intervals_of_a_count_churn_run_add_up_too() {
    let srv = OurServer::start(Mode::Raw);
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.tcp].into()));
    spec.connections = 3;
    spec.pattern = Pattern::Crr;
    spec.stop = Stop::Count(100);
    spec.interval = Some(Duration::from_millis(50));
    let mut seen = Seen::default();
    let r = probe::run_observed(&spec, &StopHandle::new(), &mut seen).expect("run");
    assert!(r.ok, "{}", r.table());
    assert_eq!(r.connections_completed, 300);
    check_sums(&r, &r.intervals);
}

#[test]
fn udp_intervals_add_up_and_count_losses() {
    let srv = FaultyUdp::start(UdpFault::DropEvery(50));
    let mut spec = ProbeSpec::new(Target::Udp(vec![srv.addr].into()));
    spec.stop = Stop::Count(400);
    spec.max_loss_pct = 5.0;
    spec.timeout = Duration::from_millis(200);
    spec.interval = Some(Duration::from_millis(20));
    let r = probe::run(&spec).expect("run");
    assert!(r.ok, "{}", r.table());
    check_sums(&r, &r.intervals);
    assert!(r.intervals.iter().all(|i| i.lost.is_some()));
}

#[test]
fn cli_json_stream_is_intervals_then_one_summary_that_they_add_up_to() {
    let srv = OurServer::start(Mode::Raw);
    let target = format!("tcp://{}", srv.tcp);
    let out = probe_cli(&[
        &target,
        "-c",
        "2",
        "-d",
        "1s",
        "--interval",
        "250ms",
        "--json-stream",
    ]);
    let (code, stdout, err) = texts(&out);
    assert_eq!(code, 0, "{err}");
    let objs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect();
    let (summary, intervals) = objs.split_last().expect("lines");
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["tool"], "ricochet-probe", "the --json fields");
    assert!(
        summary.get("intervals").is_none(),
        "intervals are not repeated"
    );
    assert_eq!(intervals.len(), 4, "{stdout}");
    for (i, o) in intervals.iter().enumerate() {
        assert_eq!(o["type"], "interval");
        assert_eq!(o["index"], i as u64);
        for key in [
            "start_secs",
            "end_secs",
            "round_trips_per_sec",
            "mb_per_sec",
            "errors_total",
        ] {
            assert!(o.get(key).is_some(), "{key} missing: {o}");
        }
        assert!(o["latency_us"]["p99"].is_u64());
    }
    let rt: u64 = intervals
        .iter()
        .map(|o| o["round_trips"].as_u64().unwrap())
        .sum();
    assert_eq!(rt, summary["round_trips"].as_u64().unwrap());
}

#[test]
fn cli_json_stream_without_interval_reports_every_second() {
    let srv = OurServer::start(Mode::Raw);
    let target = format!("tcp://{}", srv.tcp);
    let (code, stdout, err) = texts(&probe_cli(&[&target, "-d", "2s", "--json-stream"]));
    assert_eq!(code, 0, "{err}");
    let types: Vec<String> = stdout
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["type"].to_string())
        .collect();
    assert_eq!(types, ["\"interval\"", "\"interval\"", "\"summary\""]);
}

#[test]
fn cli_interval_lines_precede_the_table_and_json_carries_them() {
    let srv = OurServer::start(Mode::Raw);
    let target = format!("tcp://{}", srv.tcp);
    let (code, out, err) = texts(&probe_cli(&[&target, "-d", "1s", "-i", "500ms"]));
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert!(
        lines[0].contains("interval (s)") && lines[0].contains("rt/s"),
        "{out}"
    );
    assert!(lines[1].trim_start().starts_with("0.00-0.50"), "{out}");
    assert!(lines[2].trim_start().starts_with("0.50-1.00"), "{out}");
    assert!(lines[3].starts_with("target"), "{out}");
    let j = json_of(&probe_cli(&[&target, "-d", "1s", "-i", "500ms", "--json"]));
    assert_eq!(j["interval_secs"], 0.5);
    assert_eq!(j["intervals"].as_array().map(Vec::len), Some(2));
}

#[test]
fn cli_interval_shorter_than_10ms_is_a_usage_error() {
    let (code, _, err) = texts(&probe_cli(&["tcp://127.0.0.1:9", "-d", "1s", "-i", "1ms"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--interval 1ms is too short"), "{err}");
}

/// Interrupts the run at its second interval.
struct InterruptAtSecond(StopHandle, usize);

impl Observer for InterruptAtSecond {
    fn interval(&mut self, _: &IntervalReport) {
        self.1 += 1;
        if self.1 == 2 {
            self.0.interrupt();
        }
    }
}

#[test]
fn interrupted_run_reports_no_interval_past_its_end() {
    let srv = OurServer::start(Mode::Raw);
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.tcp].into()));
    spec.stop = Stop::Duration(Duration::from_secs(60));
    spec.interval = Some(Duration::from_millis(100));
    let stop = StopHandle::new();
    let mut obs = InterruptAtSecond(stop.clone(), 0);
    let r = probe::run_observed(&spec, &stop, &mut obs).expect("run");
    assert!(r.stopped_early.is_some());
    let last = r.intervals.last().expect("intervals");
    assert!(
        last.end_secs < 30.0 && r.intervals.len() < 300,
        "{} intervals up to {} s after an interrupt at about 0.2 s",
        r.intervals.len(),
        last.end_secs
    );
    let rt: u64 = r.intervals.iter().map(|i| i.round_trips).sum();
    assert_eq!(rt, r.round_trips);
}

/// Interval bounds are whole microseconds: 300 ms steps end at 0.9 s, not
/// at 0.8999999999999999 (the sum of three 0.3 s floats).
#[test]
fn cli_json_stream_interval_bounds_carry_no_float_noise() {
    let srv = OurServer::start(Mode::Raw);
    let target = format!("tcp://{}", srv.tcp);
    let out = probe_cli(&[&target, "-d", "1s", "-i", "300ms", "--json-stream"]);
    let (code, stdout, err) = texts(&out);
    assert_eq!(code, 0, "{err}");
    let mut bounds = Vec::new();
    for line in stdout.lines() {
        let o: serde_json::Value = serde_json::from_str(line).unwrap();
        if o["type"] == "interval" {
            for key in ["start_secs", "end_secs"] {
                let text = o[key].to_string();
                assert!(text.len() <= 8, "{key} {text} in {line}");
                bounds.push(o[key].as_f64().unwrap());
            }
        }
    }
    assert!(bounds.contains(&0.9), "{bounds:?}");
}

/// The progress ticks of `spec`'s run (about every 100 ms, and once after
/// the workers ended) and its report.
fn ticks_of(spec: &ProbeSpec) -> (Vec<Snapshot>, ricochet::probe::Report) {
    let mut ticks = Vec::new();
    let r = probe::run_with_progress(spec, |s| ticks.push(*s)).expect("run");
    (ticks, r)
}

/// Pins the live counters (the progress line): the last tick, after the
/// workers ended, counts what the summary does: messages and bytes
/// verified, errors, datagrams lost, and every connection slot finished.
#[test]
fn last_progress_tick_counts_what_the_summary_does() {
    let srv = OurServer::start(Mode::Raw);
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.tcp].into()));
    spec.connections = 3;
    spec.stop = Stop::Count(50);
    let (ticks, r) = ticks_of(&spec);
    assert!(r.ok, "{}", r.table());
    let last = *ticks.last().expect("ticks");
    assert_eq!(last.messages_verified, 150, "{r}");
    assert_eq!(last.messages_verified, r.messages_verified, "{r}");
    assert_eq!(last.bytes_verified, r.bytes_verified, "{r}");
    assert_eq!((last.errors, last.connections_finished), (0, 3), "{last:?}");

    let faulty = FaultyServer::start(Fault::CloseAfter(500));
    let mut spec = ProbeSpec::new(Target::Tcp(vec![faulty.addr].into()));
    spec.connections = 2;
    spec.stop = Stop::Count(100);
    spec.timeout = Duration::from_millis(500);
    let (ticks, r) = ticks_of(&spec);
    assert_eq!(r.errors.total(), 2, "{r}");
    let last = *ticks.last().expect("ticks");
    assert_eq!((last.errors, last.connections_finished), (2, 2), "{last:?}");

    let lossy = FaultyUdp::start(UdpFault::DropEvery(50));
    let mut spec = ProbeSpec::new(Target::Udp(vec![lossy.addr].into()));
    spec.stop = Stop::Count(400);
    spec.max_loss_pct = 5.0;
    spec.timeout = Duration::from_millis(200);
    let (ticks, r) = ticks_of(&spec);
    let lost = r.datagrams.expect("datagram counts").lost;
    assert!(lost > 0, "{r}");
    assert_eq!(ticks.last().expect("ticks").lost, lost, "{r}");
}

/// Pins the live part of the live counters: ticks taken while a 1 s run
/// goes on show messages verified so far, not zero until the end.
#[test]
fn progress_ticks_count_messages_while_the_run_goes_on() {
    let srv = OurServer::start(Mode::Raw);
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.tcp].into()));
    spec.stop = Stop::Duration(Duration::from_secs(1));
    let (ticks, r) = ticks_of(&spec);
    assert!(r.ok, "{}", r.table());
    let (last, during) = ticks.split_last().expect("ticks");
    assert!(
        during
            .iter()
            .any(|t| t.messages_verified > 0 && t.messages_verified < last.messages_verified),
        "no live count in {:?}",
        ticks
            .iter()
            .map(|t| t.messages_verified)
            .collect::<Vec<_>>()
    );
}
