//! What the run's shared context answers its workers, and how a run that
//! cannot take place says why.

use std::error::Error as _;
use std::net::SocketAddr;

use ricochet_core::Duration;

use super::*;

fn spec() -> ProbeSpec {
    ProbeSpec::new(Target::Tcp(
        vec![SocketAddr::from(([127, 0, 0, 1], 7))].into(),
    ))
}

/// Connection `i` belongs to thread `i % threads`, and every connection
/// to exactly one thread.
#[test]
fn connections_are_dealt_round_robin_over_the_threads() {
    let mut spec = spec();
    spec.connections = 7;
    let (progress, stop) = (Progress::default(), StopHandle::new());
    let mut ctx = Ctx::for_tests(&spec, Clock::new(), &progress, &stop);
    ctx.threads = 3;
    assert_eq!(ctx.connections_of(0), [0, 3, 6]);
    assert_eq!(ctx.connections_of(1), [1, 4]);
    assert_eq!(ctx.connections_of(2), [2, 5]);
    assert_eq!(ctx.connect_limit(), CONNECTS_IN_FLIGHT);
}

/// Messages stop starting from the end of the duration on (its very
/// instant included), or once the run is asked to stop; never before.
#[test]
fn messages_stop_starting_at_the_end_of_the_duration_or_on_a_stop() {
    let spec = spec();
    let (progress, stop) = (Progress::default(), StopHandle::new());
    let mut ctx = Ctx::for_tests(&spec, Clock::new(), &progress, &stop);
    let end = Instant::from_millis(1_000);
    let before = Instant::from_millis(999);
    assert!(!ctx.should_finish(end), "a count run has no end time");
    ctx.finish_at = Some(end);
    assert!(!ctx.should_finish(before));
    assert!(ctx.should_finish(end));
    assert!(ctx.should_finish(end + Duration::from_millis(1)));
    stop.interrupt();
    assert!(ctx.should_finish(before), "an interrupt stops it at once");
}

/// A loss spending the budget stops the run while its duration lasts;
/// none at all, losses within the budget, or the budget spent from the
/// end of the duration on (when nothing is left to cut short) do not.
#[test]
fn losses_past_the_budget_stop_the_run_only_before_its_end() {
    let mut spec = spec();
    spec.max_loss_pct = 50.0;
    spec.stop = Stop::Count(4);
    let end = Instant::from_millis(1_000);
    let before = Instant::from_millis(999);
    let (progress, stop) = (Progress::default(), StopHandle::new());
    let mut ctx = Ctx::for_tests(&spec, Clock::new(), &progress, &stop);
    ctx.finish_at = Some(end);
    ctx.count_lost(0, before);
    ctx.count_lost(2, before);
    assert_eq!(stop.reason(), None, "2 of 4 lost: 50 % may still pass");
    ctx.count_lost(1, end);
    assert_eq!(stop.reason(), None, "spent at the end: nothing to cut");
    ctx.count_lost(1, before);
    assert_eq!(stop.reason(), Some(StopReason::LossBudget));

    // Without a duration the first loss past the budget stops the run.
    let (progress, stop) = (Progress::default(), StopHandle::new());
    let ctx = Ctx::for_tests(&spec, Clock::new(), &progress, &stop);
    ctx.count_lost(3, Instant::MAX);
    assert_eq!(stop.reason(), Some(StopReason::LossBudget));
}

/// Too low an open-file limit names the connections, what they need, both
/// limits and the fix.
#[test]
fn fd_limit_error_names_the_limits_and_the_fix() {
    let e = RunError::FdLimit {
        connections: 500,
        needed: 534,
        soft: 64,
        hard: 128,
    };
    assert_eq!(
        e.to_string(),
        "--connections 500 needs about 534 open files, but the limit is 64 (hard limit 128); \
         raise it first (e.g. `ulimit -n 534`, as root above the hard limit) or use fewer \
         connections"
    );
    assert!(e.source().is_none());
}

/// A specification error reads as itself and is the error's source; a
/// local failure says the probe could not run, and is the source too.
#[test]
fn spec_and_local_errors_read_as_and_chain_to_their_cause() {
    let e = RunError::from(SpecError::NoTargets);
    assert_eq!(e.to_string(), SpecError::NoTargets.to_string());
    assert_eq!(
        e.source().map(|s| s.to_string()),
        Some(SpecError::NoTargets.to_string())
    );
    let e = RunError::Local(std::io::Error::other("no epoll"));
    assert!(
        e.to_string().starts_with("probe could not run: no epoll"),
        "{e}"
    );
    assert_eq!(e.source().map(|s| s.to_string()), Some("no epoll".into()));
}

/// How long the test server waits for the probe's connection, and then
/// for each of its reads.
const SERVER_WAIT: StdDuration = StdDuration::from_secs(10);

/// A TCP echo server for one connection, on a thread: echoes until the
/// probe's FIN, then closes; it gives up on a probe that does not connect
/// or send within [`SERVER_WAIT`].
fn echo_once() -> (SocketAddr, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.set_nonblocking(true).expect("non-blocking");
    let addr = listener.local_addr().expect("addr");
    let h = std::thread::spawn(move || {
        let deadline = StdInstant::now() + SERVER_WAIT;
        let mut s = loop {
            match listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if StdInstant::now() >= deadline {
                        return; // never connected: the run's checks say so
                    }
                    std::thread::sleep(StdDuration::from_millis(1));
                }
                Err(e) => panic!("accept: {e}"),
            }
        };
        s.set_nonblocking(false).expect("blocking");
        s.set_read_timeout(Some(SERVER_WAIT)).expect("read timeout");
        let mut buf = [0u8; 4096];
        while let Ok(n @ 1..) = s.read(&mut buf) {
            s.write_all(&buf[..n]).expect("echo");
        }
    });
    (addr, h)
}

/// Counts what a run tells its observer.
#[derive(Default)]
struct Seen {
    progress: usize,
    intervals: Vec<IntervalReport>,
}

impl Observer for Seen {
    fn progress(&mut self, _snapshot: &Snapshot) {
        self.progress += 1;
    }
    fn interval(&mut self, interval: &IntervalReport) {
        self.intervals.push(interval.clone());
    }
}

/// A paced count run (3 messages at 10/s: about 200 ms from the first
/// send to the last echo, a 300 ms schedule) with one interval longer than
/// the run: the interval, told to the observer and kept in the report,
/// ends with the measured span (the schedule), in seconds since the start;
/// a TCP interval has no loss count; the live counters are told every
/// 100 ms or so and at the end, through `run_with_progress` too.
#[test]
fn a_paced_count_run_has_its_interval_end_with_its_schedule() {
    let (addr, server) = echo_once();
    let mut spec = ProbeSpec::new(Target::Tcp(vec![addr].into()));
    spec.stop = Stop::Count(3);
    spec.rate = Some(10.0);
    spec.threads = Some(1);
    spec.interval = Some(StdDuration::from_secs(1_000_000_000));
    let mut seen = Seen::default();
    let began = StdInstant::now();
    let r = run_observed(&spec, &StopHandle::new(), &mut seen).expect("run");
    let took = began.elapsed().as_secs_f64();
    server.join().expect("server");
    assert!(r.ok, "{}", r.table());
    assert_eq!(r.messages_sent, 3);
    assert!(r.measured_secs >= 0.3 - 1e-6, "{}", r.measured_secs);
    assert_eq!(r.intervals.len(), 1, "{:?}", r.intervals);
    let i = &r.intervals[0];
    assert_eq!(seen.intervals.len(), 1, "{:?}", seen.intervals);
    assert_eq!(seen.intervals[0].end_secs, i.end_secs);
    assert_eq!(i.round_trips, 3);
    assert_eq!(i.lost, None, "no loss count over TCP");
    assert!(
        i.end_secs >= r.measured_secs - 1e-6 && i.end_secs <= took.max(r.measured_secs) + 1e-6,
        "interval ends at {} s; measured {} s, the run took {took} s",
        i.end_secs,
        r.measured_secs
    );
    assert!(
        seen.progress >= 2,
        "a tick during the 200 ms run and one at its end: {}",
        seen.progress
    );

    let (addr, server) = echo_once();
    let mut spec = ProbeSpec::new(Target::Tcp(vec![addr].into()));
    spec.stop = Stop::Count(2);
    let mut ticks = 0;
    let r = run_with_progress(&spec, |_| ticks += 1).expect("run");
    server.join().expect("server");
    assert!(r.ok, "{}", r.table());
    assert!(ticks >= 1, "the last counters are told at the end");
}

/// A UDP run against a server that answers nothing, `--max-loss 0`: with
/// a long count the first loss (a timeout after the first send) stops it
/// early; with a short one every datagram was sent before that loss, so
/// nothing was cut short. Both fail.
#[test]
fn a_spent_loss_budget_stops_a_udp_run_early_only_before_its_last_send() {
    let hole = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    let addr = hole.local_addr().expect("addr");
    let udp = |count| {
        let mut spec = ProbeSpec::new(Target::Udp(vec![addr].into()));
        spec.stop = Stop::Count(count);
        spec.threads = Some(1);
        spec.timeout = StdDuration::from_millis(100);
        spec
    };
    // 500 datagrams take at least 1 s to send (one each 2 ms without an
    // answer); the first loss is found 100 ms after the first send.
    let long = run(&udp(500)).expect("run");
    assert!(!long.ok);
    assert!(long.messages_sent < 500, "{}", long.messages_sent);
    assert_eq!(long.stopped_early, Some(StopReason::LossBudget));
    let short = run(&udp(2)).expect("run");
    assert!(!short.ok);
    assert_eq!(short.messages_sent, 2);
    assert_eq!(short.stopped_early, None);
    drop(hole);
}
