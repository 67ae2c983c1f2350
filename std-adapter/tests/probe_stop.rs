//! Runs that end before their count or duration: the UDP probe against a
//! server that answers nothing keeps its schedule and stops once
//! `--max-loss` is out of reach, and an interrupt (SIGINT/SIGTERM, or a
//! `StopHandle`) still produces the partial report.

mod probe_support;

use std::io::{BufRead, BufReader, Read};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use probe_support::{
    Fault, FaultyServer, FaultyUdp, OurServer, STEP_TIMEOUT, UdpFault, json_of, probe_cli,
    ricochet_bin, texts,
};
use ricochet::core::Mode;
use ricochet::core::probe::SizeRange;
use ricochet::probe::{self, ProbeSpec, Stop, StopHandle, StopReason, Target};

fn silent_udp() -> FaultyUdp {
    FaultyUdp::start(UdpFault::DropEvery(1))
}

#[test]
fn udp_probe_against_a_silent_server_fails_fast_instead_of_a_timeout_per_datagram() {
    let srv = silent_udp();
    let start = Instant::now();
    // 1000 datagrams, 1 s timeout: a wait per datagram would take 1000 s.
    let o = probe_cli(&[
        &format!("udp://{}", srv.addr),
        "-n",
        "1000",
        "--timeout",
        "1s",
        "--json",
    ]);
    let took = start.elapsed();
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["stopped_early"], "loss_budget");
    assert_eq!(j["errors"]["loss"], 1);
    assert_eq!(j["error_details"][0]["kind"], "loss");
    assert!(j["error_details"][0]["connection"].is_null(), "{j}");
    let d = &j["datagrams"];
    assert!(d["lost"].as_u64().unwrap() >= 1, "{d}");
    assert!(d["sent"].as_u64().unwrap() < 1000, "{d}");
    assert_eq!(d["verified"], 0);
    // The first loss is known after 1 s; what is in flight then settles within 1 s more.
    assert!(took < Duration::from_secs(5), "took {took:?}");
}

#[test]
fn udp_probe_keeps_sending_on_schedule_and_counts_losses_live() {
    let srv = silent_udp();
    let mut spec = ProbeSpec::new(Target::Udp(vec![srv.addr].into()));
    spec.stop = Stop::Count(40);
    spec.timeout = Duration::from_millis(500);
    spec.max_loss_pct = 100.0; // never stop early: every datagram is sent
    let mut ticks = Vec::new();
    let start = Instant::now();
    let r = probe::run_with_progress(&spec, |s| ticks.push(*s)).expect("run");
    let took = start.elapsed();
    let d = r.datagrams.expect("datagram counts");
    assert_eq!((d.sent, d.lost, d.verified), (40, 40, 0), "{r}");
    // One datagram per 10 ms (timeout / 50) instead of one per 500 ms: 20 s.
    assert!(took < Duration::from_secs(3), "took {took:?}");
    // Losses showed while the run was still going, not only at the end.
    let last = *ticks.last().expect("ticks");
    assert_eq!(last.lost, 40);
    assert!(
        ticks.iter().any(|t| t.lost > 0 && t.lost < 40),
        "no live loss count in {:?}",
        ticks.iter().map(|t| t.lost).collect::<Vec<_>>()
    );
    assert!(r.ok, "all losses are within --max-loss 100: {r}");
    assert_eq!(
        r.connections_ok, 0,
        "a socket that lost datagrams is not clean"
    );
}

#[test]
fn udp_probe_stops_once_the_loss_budget_of_the_whole_run_is_spent() {
    let srv = silent_udp();
    let mut spec = ProbeSpec::new(Target::Udp(vec![srv.addr].into()));
    spec.stop = Stop::Count(1000);
    spec.timeout = Duration::from_millis(200);
    spec.max_loss_pct = 1.0; // 10 of the 1000 may be lost; the 11th decides
    let r = probe::run(&spec).expect("run");
    let d = r.datagrams.expect("datagram counts");
    assert_eq!(r.stopped_early, Some(StopReason::LossBudget), "{r}");
    assert!(d.lost >= 11 && d.sent < 1000, "{r}");
    assert_eq!(r.errors.loss, 1, "{r}");
    assert!(!r.ok);
    assert!(r.table().contains("stopped early"), "{r}");
}

#[test]
fn interrupt_through_a_stop_handle_returns_the_partial_report() {
    let srv = FaultyServer::start(Fault::None);
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.addr].into()));
    spec.stop = Stop::Duration(Duration::from_secs(60));
    spec.connections = 2;
    let stop = StopHandle::new();
    let stopper = stop.clone();
    let start = Instant::now();
    let r = probe::run_with(&spec, &stop, |s| {
        if s.messages_verified >= 100 {
            stopper.interrupt();
        }
    })
    .expect("run");
    assert!(start.elapsed() < Duration::from_secs(10));
    assert_eq!(r.stopped_early, Some(StopReason::Interrupted), "{r}");
    assert!(r.messages_verified >= 100, "{r}");
    assert_eq!(r.errors.total(), 0, "in-flight messages settled: {r}");
    // 64-byte messages are written whole: none was caught half sent, so
    // an interrupt cuts none short (a connection between messages is not
    // counted as cut).
    assert_eq!(r.messages_cut, 0, "{r}");
    assert_eq!(r.connections_ok, 2, "both closed cleanly: {r}");
    assert!(!r.ok);
    assert_eq!(r.exit_code(), 130);
    assert!(r.table().contains("INTERRUPTED"), "{r}");
}

#[test]
fn a_run_until_interrupted_with_a_warmup_does_not_overflow() {
    let srv = FaultyServer::start(Fault::None);
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.addr].into()));
    // "Until interrupted": warmup + duration is past `Duration::MAX`.
    spec.stop = Stop::Duration(Duration::MAX);
    spec.warmup = Duration::from_millis(1);
    let stop = StopHandle::new();
    let stopper = stop.clone();
    let r = probe::run_with(&spec, &stop, |s| {
        if s.messages_verified >= 10 {
            stopper.interrupt();
        }
    })
    .expect("run");
    assert_eq!(r.stopped_early, Some(StopReason::Interrupted), "{r}");
    assert_eq!(r.errors.total(), 0, "{r}");
}

#[test]
fn paced_run_quiet_between_messages_stops_when_its_duration_ends() {
    let srv = FaultyServer::start(Fault::None);
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.addr].into()));
    // One message a minute: after the first echo nothing is due until long
    // after the test gives up, so only the end of the duration wakes the
    // probe to finish.
    spec.rate = Some(1.0 / 60.0);
    spec.stop = Stop::Duration(Duration::from_millis(50));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(probe::run(&spec));
    });
    let r = rx
        .recv_timeout(STEP_TIMEOUT)
        .expect("the run ended with its duration, not at its next message")
        .expect("run");
    assert_eq!(r.stopped_early, None, "{r}");
    assert_eq!((r.messages_sent, r.messages_verified), (1, 1), "{r}");
    assert_eq!(r.errors.total(), 0, "{r}");
    assert_eq!(r.connections_ok, 1, "{r}");
}

/// 100 GiB: far more than a test run could send, so only a message cut
/// short by the interrupt ends it in time.
const HUGE: usize = 100 << 30;

#[test]
fn interrupt_through_a_stop_handle_cuts_a_huge_message_short() {
    let srv = FaultyServer::start(Fault::None);
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.addr].into()));
    spec.size = SizeRange::fixed(HUGE);
    spec.stop = Stop::Count(1);
    let (tx, rx) = mpsc::channel();
    // On a thread of its own: a run that the interrupt does not stop
    // (sending the whole 100 GiB) fails the test instead of hanging it.
    std::thread::spawn(move || {
        let stop = StopHandle::new();
        let stopper = stop.clone();
        let r = probe::run_with(&spec, &stop, |s| {
            if s.bytes_verified >= 1 << 20 {
                stopper.interrupt();
            }
        });
        let _ = tx.send(r);
    });
    let r = rx
        .recv_timeout(STEP_TIMEOUT)
        .expect("the interrupt stopped the run")
        .expect("run");
    assert_eq!(r.stopped_early, Some(StopReason::Interrupted), "{r}");
    assert_eq!(r.errors.total(), 0, "what was sent came back: {r}");
    assert_eq!(r.messages_cut, 1, "{r}");
    assert_eq!((r.messages_sent, r.messages_verified), (0, 0), "{r}");
    assert!(r.bytes_verified >= 1 << 20, "{r}");
    assert_eq!(r.bytes_verified, r.bytes_sent, "{r}");
    assert_eq!(r.connections_ok, 1, "closed cleanly: {r}");
    assert_eq!(r.exit_code(), 130);
    let table = r.table();
    assert!(
        table.contains("(1 message cut short by the interrupt: counted in the bytes only)"),
        "{table}"
    );
    assert!(table.contains("INTERRUPTED"), "{table}");
}

#[test]
fn interrupt_after_the_duration_cuts_short_the_message_it_let_finish() {
    let srv = FaultyServer::start(Fault::None);
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.addr].into()));
    spec.size = SizeRange::fixed(HUGE);
    // Over long before the message is: a duration ends a run between messages.
    spec.stop = Stop::Duration(Duration::from_millis(50));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let stop = StopHandle::new();
        let stopper = stop.clone();
        let r = probe::run_with(&spec, &stop, |s| {
            if s.elapsed >= Duration::from_millis(300) && s.bytes_verified > 0 {
                stopper.interrupt();
            }
        });
        let _ = tx.send(r);
    });
    let r = rx
        .recv_timeout(STEP_TIMEOUT)
        .expect("the interrupt stopped the run")
        .expect("run");
    assert_eq!(r.stopped_early, Some(StopReason::Interrupted), "{r}");
    assert_eq!(r.messages_cut, 1, "{r}");
    assert_eq!(r.errors.total(), 0, "{r}");
    assert_eq!(r.bytes_verified, r.bytes_sent, "{r}");
}

#[test]
fn interrupt_before_connections_start_leaves_them_not_started() {
    let srv = FaultyServer::start(Fault::None);
    let mut spec = ProbeSpec::new(Target::Tcp(vec![srv.addr].into()));
    spec.stop = Stop::Count(10);
    spec.connections = 200;
    spec.threads = Some(1);
    let stop = StopHandle::new();
    stop.interrupt();
    let r = probe::run_with(&spec, &stop, |_| {}).expect("run");
    assert_eq!(r.stopped_early, Some(StopReason::Interrupted));
    assert_eq!(r.connections_not_started, 200, "{r}");
    assert!(r.table().contains("200 not started"), "{r}");
}

/// `ricochet probe ARGS` with piped stdout/stderr; stderr lines arrive on the channel.
struct Running {
    child: std::process::Child,
    stderr: mpsc::Receiver<String>,
}

impl Running {
    fn start(args: &[&str]) -> Running {
        let mut child = Command::new(ricochet_bin())
            .arg("probe")
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn probe");
        let err = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Running { child, stderr: rx }
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill")
            .success();
        assert!(ok, "kill -{sig}");
    }

    fn wait_stderr(&self, needle: &str) {
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(l) if l.contains(needle) => return,
                Ok(_) => {}
                Err(_) => panic!("no stderr line with {needle:?}"),
            }
        }
    }

    /// Waits for the exit (bounded); returns the exit code and stdout.
    fn finish(mut self, limit: Duration) -> (Option<i32>, String) {
        let start = Instant::now();
        let status = loop {
            if let Some(s) = self.child.try_wait().expect("wait") {
                break s;
            }
            if start.elapsed() > limit {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!("the probe did not exit within {limit:?}");
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let mut out = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            let _ = o.read_to_string(&mut out);
        }
        (status.code(), out)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn wait_for_connections(server: &OurServer, n: u64) {
    let h = server.handle.as_ref().expect("handle");
    let deadline = Instant::now() + STEP_TIMEOUT;
    while h.stats().streams().accepted < n || h.stats().streams().bytes_out == 0 {
        assert!(Instant::now() < deadline, "the probe never connected");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn cli_sigint_prints_the_partial_json_report_and_exits_130() {
    let server = OurServer::start(Mode::Raw);
    let p = Running::start(&[
        &format!("tcp://{}", server.tcp),
        "-c",
        "2",
        "-d",
        "60s",
        "--json",
    ]);
    wait_for_connections(&server, 2);
    let t = Instant::now();
    p.signal("INT");
    let (code, out) = p.finish(Duration::from_secs(15));
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(code, Some(130), "{out}");
    let j: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(j["stopped_early"], "interrupted");
    assert_eq!(j["ok"], false);
    assert!(j["messages_verified"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(j["errors"]["timeout"], 0, "{j}");
}

#[test]
fn cli_sigterm_prints_the_partial_table() {
    let server = OurServer::start(Mode::Raw);
    let p = Running::start(&[&format!("tcp://{}", server.tcp), "-d", "60s"]);
    wait_for_connections(&server, 1);
    p.signal("TERM");
    let (code, out) = p.finish(Duration::from_secs(15));
    assert_eq!(code, Some(130), "{out}");
    assert!(
        out.contains("result       INTERRUPTED: partial report"),
        "{out}"
    );
    assert!(out.contains("latency      p50"), "{out}");
}

#[test]
fn cli_sigint_stops_a_huge_message_at_once_and_reports_the_bytes_verified() {
    let server = OurServer::start(Mode::Raw);
    let p = Running::start(&[
        &format!("tcp://{}", server.tcp),
        "-s",
        "100G",
        "-n",
        "1",
        "--json",
    ]);
    // The probe has made progress: its message is being echoed.
    let h = server.handle.as_ref().expect("handle");
    let deadline = Instant::now() + STEP_TIMEOUT;
    while h.stats().streams().bytes_out < 4 << 20 {
        assert!(Instant::now() < deadline, "the probe sent nothing");
        std::thread::sleep(Duration::from_millis(10));
    }
    p.signal("INT");
    let t = Instant::now();
    // Before the fix the probe went on sending the whole 100 GiB.
    let (code, out) = p.finish(STEP_TIMEOUT);
    let took = t.elapsed();
    assert!(took < Duration::from_secs(5), "exit {took:?} after SIGINT");
    assert_eq!(code, Some(130), "{out}");
    let j: serde_json::Value = serde_json::from_str(out.trim()).expect("one JSON line");
    assert_eq!(j["stopped_early"], "interrupted", "{j}");
    assert_eq!(j["ok"], false);
    assert_eq!(j["messages_cut"], 1, "{j}");
    assert_eq!(j["messages_sent"], 0, "{j}");
    assert_eq!(j["messages_verified"], 0, "{j}");
    let (sent, verified) = (
        j["bytes_sent"].as_u64().unwrap(),
        j["bytes_verified"].as_u64().unwrap(),
    );
    assert_eq!(
        sent, verified,
        "everything sent came back and verified: {j}"
    );
    assert!((4 << 20..100 << 30).contains(&verified), "{j}");
    let errors = j["errors"].as_object().expect("errors");
    assert!(errors.values().all(|n| n == 0), "not a server failure: {j}");
    assert_eq!(j["error_details"], serde_json::json!([]), "{j}");
    assert_eq!(j["connections_ok"], 1, "closed cleanly: {j}");
}

#[test]
fn cli_second_signal_quits_at_once() {
    // A server that echoes nothing: settling what is in flight would wait the whole timeout.
    let srv = FaultyServer::start(Fault::Silent);
    let p = Running::start(&[
        &format!("tcp://{}", srv.addr),
        "-d",
        "60s",
        "--timeout",
        "60s",
        "--json",
    ]);
    // Connected means the probe watches its signals (it does before connecting).
    srv.wait_accepted(1);
    p.signal("INT");
    p.wait_stderr("stopping");
    let t = Instant::now();
    p.signal("INT");
    let (code, _) = p.finish(Duration::from_secs(10));
    assert!(t.elapsed() < Duration::from_secs(3), "{:?}", t.elapsed());
    assert_eq!(code, Some(130));
}

/// `--quiet` prints nothing on success; an interrupted run is not one
/// (exit 130) and says so on stderr as "interrupted", not as a failure
/// with no error ("FAILED (0 errors)").
#[test]
fn cli_quiet_interrupted_run_says_interrupted_not_failed() {
    let server = OurServer::start(Mode::Raw);
    let p = Running::start(&[&format!("tcp://{}", server.tcp), "-d", "60s", "-q"]);
    wait_for_connections(&server, 1);
    p.signal("INT");
    p.wait_stderr("ricochet probe: interrupted");
    let (code, out) = p.finish(Duration::from_secs(15));
    assert_eq!(code, Some(130), "{out}");
    assert!(out.is_empty(), "--quiet prints no table: {out}");
}
