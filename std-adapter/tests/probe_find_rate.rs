//! `--find-rate`: the highest rate that keeps a latency bound, against a
//! server whose capacity is known.

mod probe_support;

use std::time::Duration;

use probe_support::*;
use ricochet::probe::{self, Goal, Observer, ProbeSpec, RateStep, Stop, StopHandle, Target};

/// 2000 messages of 64 bytes per second, in 100 ms portions.
const CAPACITY: f64 = 2000.0;

fn capped() -> ShapedServer {
    ShapedServer::start(Shape::BytesPer100ms((CAPACITY / 10.0) as u64 * 64))
}

#[derive(Default)]
struct Steps(Vec<RateStep>);

impl Observer for Steps {
    fn rate_step(&mut self, step: &RateStep, _: &Goal) {
        self.0.push(step.clone());
    }
}

#[test]
fn find_rate_converges_near_the_capacity_of_a_capped_server() {
    let srv = capped();
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.addr].into()));
    spec.connections = 8;
    spec.threads = Some(2);
    // Twice the capacity as the upper end: the search has to come down.
    spec.rate = Some(2.0 * CAPACITY);
    spec.stop = Stop::Duration(Duration::from_secs(1));
    spec.warmup = Duration::from_millis(300);
    let goal: Goal = "p99=200ms".parse().unwrap();
    let mut seen = Steps::default();
    let s = probe::find_rate(&spec, goal, &StopHandle::new(), &mut seen).expect("search");
    let rate = s
        .rate
        .unwrap_or_else(|| panic!("no rate found: {:#?}", s.steps));
    // Generous: a 1.3 s step with a 200 ms bound tolerates ~15 % overload
    // (the backlog has not grown past the bound yet), and a busy machine
    // may fail a step below the capacity.
    assert!(
        (0.5 * CAPACITY..=1.25 * CAPACITY).contains(&rate),
        "found {rate} msg/s for a capacity of {CAPACITY}: {:#?}",
        s.steps
    );
    // Well above the capacity the rate cannot be held, whatever the machine.
    for st in &s.steps {
        if st.rate.is_some_and(|r| r >= 1.3 * CAPACITY) {
            assert!(!st.ok, "{st:?}");
        }
    }
    assert_eq!(seen.0, s.steps, "each step reported as it ended");
    assert_eq!(
        s.steps[0].rate,
        Some(2.0 * CAPACITY),
        "the rate given is tried first"
    );
    assert!(
        !s.steps[0].ok,
        "twice the capacity cannot be held: {:?}",
        s.steps[0]
    );
    assert!(!s.at_upper_end);
    let best = s.best.as_ref().expect("the best step's report");
    assert_eq!(best.rate, Some(rate));
    assert!(best.latency_us.p99 <= 200_000);
    assert!(s.ok);
    assert_eq!(s.exit_code(), 0);
}

#[test]
fn cli_find_rate_prints_steps_the_curve_and_the_rate() {
    let srv = capped();
    let target = format!("tcp://{}", srv.addr);
    let out = probe_cli(&[
        &target,
        "-c",
        "8",
        "-r",
        "4000",
        "-d",
        "500ms",
        "--warmup",
        "200ms",
        "--find-rate",
        "p99=200ms",
        "--json-stream",
    ]);
    let (code, stdout, err) = texts(&out);
    assert_eq!(code, 0, "{stdout}{err}");
    let objs: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad line {l:?}: {e}")))
        .collect();
    let (summary, steps) = objs.split_last().unwrap();
    assert!(steps.iter().all(|o| o["type"] == "step"), "{stdout}");
    assert_eq!(
        steps[0]["rate"], 4000.0,
        "a --rate given is the highest tried"
    );
    assert_eq!(summary["type"], "summary");
    assert_eq!(summary["goal"], "p99=200ms");
    assert_eq!(
        summary["tool"], "ricochet-probe",
        "a stored summary says what made it"
    );
    assert_eq!(summary["version"], env!("CARGO_PKG_VERSION"));
    let rate = summary["rate"].as_f64().expect("a rate");
    assert!((0.5 * CAPACITY..=1.25 * CAPACITY).contains(&rate), "{rate}");
    assert_eq!(summary["steps"].as_array().unwrap().len(), steps.len());
}

#[test]
fn cli_find_rate_bad_goal_is_a_usage_error() {
    let (code, _, err) = texts(&probe_cli(&["tcp://127.0.0.1:9", "--find-rate", "99=5ms"]));
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expected pNN=DURATION"), "{err}");
}

/// A step's rate needs a span of time: with `-n 5` each step sent 5
/// messages in milliseconds and the search reported a rate that meant
/// nothing (the closed loop's "upper end" 5,440/s against 117k/s measured
/// over a duration).
#[test]
fn cli_find_rate_with_a_count_is_a_usage_error() {
    let (code, _, err) = texts(&probe_cli(&[
        "tcp://127.0.0.1:9",
        "--find-rate",
        "p99=1ms",
        "-n",
        "5",
    ]));
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--find-rate") && err.contains("--count"),
        "{err}"
    );
}

/// A server that fails the closed-loop step (each connection gets a
/// corrupted byte) ends the search before any rate is tried. That step
/// read "upper end", the search "no rate tried kept p99=1s" (blaming the
/// latency), and the mismatches were shown nowhere, in no format.
#[test]
fn cli_find_rate_closed_loop_with_errors_says_so_and_shows_them() {
    let srv = FaultyServer::start(Fault::FlipAt(100));
    let target = format!("tcp://{}", srv.addr);
    let args = [
        target.as_str(),
        "-c",
        "2",
        "-d",
        "300ms",
        "--warmup",
        "0s",
        "--find-rate",
        "p99=1s",
    ];
    let (code, out, err) = texts(&probe_cli(&args));
    assert_eq!(code, 1, "{out}{err}");
    let step = out
        .lines()
        .find(|l| l.starts_with("step  1"))
        .unwrap_or_else(|| panic!("no step line: {out}"));
    assert!(step.contains("failed: 2 errors"), "{step}");
    assert!(!out.contains("no rate tried kept"), "{out}");
    assert!(!out.contains("curve"), "no rated step, no curve: {out}");
    let found = out
        .lines()
        .find(|l| l.starts_with("found"))
        .unwrap_or_else(|| panic!("no found line: {out}"));
    assert!(
        found.contains("no rate was tried") && found.contains("had 2 errors"),
        "{found}"
    );
    assert!(
        out.contains("last step with errors:") && out.contains("mismatch at stream offset 100"),
        "the errors themselves: {out}"
    );

    let json = json_of(&probe_cli(&[&args[..], &["--json"]].concat()));
    assert!(json["rate"].is_null(), "{json}");
    assert!(json["best"].is_null(), "{json}");
    assert_eq!(json["failed"]["errors"]["mismatch"], 2, "{json}");
    assert_eq!(json["steps"][0]["errors"], 2, "{json}");

    let (code, out, err) = texts(&probe_cli(&[&args[..], &["--quiet"]].concat()));
    assert_eq!(code, 1, "{out}{err}");
    assert!(out.is_empty(), "{out}");
    assert!(
        err.contains("no rate was tried") && err.contains("mismatch at stream offset 100"),
        "{err}"
    );
}
