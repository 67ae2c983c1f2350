//! `ricochet probe`: a verifying echo load tool for any RFC 862 echo server.
//!
//! The probe sends deterministic pseudo-random data (a core
//! [`StreamProbe`](ricochet_core::StreamProbe) per TCP/TLS/Unix connection, a
//! [`DatagramProbe`](ricochet_core::DatagramProbe) per UDP socket), checks
//! every byte that comes back, and measures round trips. Raw mode needs no
//! cooperation from the server, so it works against ours, socat, inetd…
//!
//! ```no_run
//! use ricochet::probe::{self, ProbeSpec, Target};
//!
//! let target: Target = "tcp://127.0.0.1:7007".parse()?;
//! let mut spec = ProbeSpec::new(target);
//! spec.connections = 8;
//! let report = probe::run(&spec)?;
//! println!("{}", report.table());
//! assert!(report.ok);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## How a run goes
//!
//! Connections are spread round-robin over worker threads, each with its own
//! mio event loop (edge-triggered, non-blocking sockets, `TCP_NODELAY`).
//! Each thread connects at most [`CONNECTS_IN_FLIGHT`] connections at a time,
//! trying every resolved address in turn. Received bytes go straight from
//! one large per-thread read buffer into the core probe; what the probe
//! allows to be sent is generated into one per-thread write buffer and
//! written until the socket would block (nothing is kept per connection
//! but the core probe).
//!
//! After its last message verifies, a stream connection half-closes
//! (`shutdown(Write)`) and expects the server's FIN within the timeout. A
//! server that never closes is reported as an error ([`ErrorKind::NoFin`]):
//! it leaks a connection per client, and socat, inetd and `ricochet serve`
//! all close.
//!
//! UDP: one connected socket per "connection", sending on schedule as
//! `ping` does: a datagram not back within `timeout / 50` no longer holds
//! the window, so the next one is sent anyway, and a datagram not back
//! within the timeout is counted *lost* (live, in the progress counters),
//! apart from *corrupt* ones. Loss fails the run only above `max_loss_pct`
//! (default 0: on loopback nothing should be lost); corruption always fails
//! it. Once the losses exceed what `max_loss_pct` allows of the whole run,
//! the run stops early ([`StopReason::LossBudget`]).
//!
//! A run can be interrupted from another thread ([`StopHandle`]): it stops
//! sending, lets what is in flight settle, and reports what it has.
//!
//! Rates (round trips/s, MB/s with MB = 10^6 B) and latency percentiles
//! cover the measured span: from the start (plus the warmup) to the end of
//! the duration, or to the last verified byte for a count (or when that
//! comes first). A paced run's span is at least what its schedule gives
//! the round trips it counts (N of them at R msg/s: N / R seconds, within
//! the duration), so its rate never exceeds the rate asked for: from the
//! first send to the last echo covers one pacing interval less than the
//! schedule (see [`Report::measured_secs`]).
//!
//! ## Load-testing features
//!
//! - **Several targets** ([`ProbeSpec::targets`]): connection `i` goes to
//!   target `i % n`; the report has a [`TargetReport`] per target.
//! - **Open loop without coordinated omission** ([`ProbeSpec::rate`]):
//!   latency counts from each message's scheduled send
//!   ([`Report::latency_us`]) and from its actual send
//!   ([`Report::latency_uncorrected_us`]). Sends leave on time: workers
//!   sleep on a `timerfd` (Linux) until shortly before a deadline and spin
//!   for the rest; the probe's own lateness is reported
//!   ([`Report::send_lateness_us`]), not counting the time a message was
//!   held back by the window (waiting for a slow server).
//! - **Per-interval reports** ([`ProbeSpec::interval`], [`run_observed`],
//!   [`IntervalReport`]) that add up to the summary.
//! - **Connection churn** ([`Pattern::Crr`], [`ProbeSpec::lifetime`],
//!   [`ProbeSpec::connect_rate`]) with connect and first-byte latency
//!   ([`Report::connect_us`], [`Report::first_byte_us`]).
//! - **Rate search** ([`find_rate`]): the highest rate keeping a latency
//!   percentile within a bound.
//! - **The full distribution**: [`Report::write_hgrm`] (HdrHistogram's
//!   `.hgrm` text) and [`Report::spectrum`].
//!
//! Stream transports go through one small interface (`transport.rs`:
//! dial, then read/write/half-close a `Link`). TLS over TCP (`tls://`) is
//! one of them: its link is *ready* once the handshake is done, so
//! [`Report::connect_us`] covers TCP connect plus handshake, while
//! [`Report::tls`] has the handshake alone (TCP established to handshake
//! done), the handshakes per second and how many resumed a session, never
//! mixed into the round trips. A TLS 1.3 handshake counts (as does its
//! connection) once the server has accepted it, not merely when the
//! probe's side is done: a mutual-TLS server refuses only after that.

mod control;
mod datagram;
mod find_rate;
mod hgrm;
mod interval;
mod json;
mod progress;
mod record;
mod report;
mod spec;
mod spec_error;
mod stream;
mod table;
mod tally;
mod target;
mod timers;
mod tls;
mod transport;
pub mod units;
mod verdict;
mod wait;

use std::fmt;
use std::sync::mpsc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use ricochet_core::Instant;

use crate::clock::Clock;

pub use control::{StopHandle, StopReason};
pub use find_rate::{Goal, GoalError, RateSearch, RateStep, find_rate};
pub use hgrm::{SpectrumPoint, Which};
pub use interval::IntervalReport;
pub use progress::{Progress, Snapshot};
pub use report::{
    ConnError, DatagramCounts, ErrorCounts, ErrorKind, Latency, MAX_ERROR_DETAILS, Report,
    TargetReport, TlsReport,
};
pub use spec::{
    DATAGRAM_HEADER, DEFAULT_COUNT, DEFAULT_WINDOW, LARGE_RUN_BYTES, Lifetime, MIN_INTERVAL,
    Pattern, ProbeSpec, SpecError, Stop, UDP_MAX_IN_FLIGHT, UDP_MAX_V4, UDP_MAX_V6,
    connection_seed, default_threads, session_seed,
};
pub use target::{Resolved, Target, TargetError};
pub use tls::{TlsOptions, TlsTarget};

use control::LossBudget;
use interval::{Collector, WorkerMsg};
use tally::Tally;
use verdict::RunFacts;

/// Connections each worker thread has connecting at once.
pub const CONNECTS_IN_FLIGHT: usize = 32;

/// Why a run could not take place (connection failures are not errors
/// here: they are counted in the [`Report`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    /// The specification is invalid (the command line exits 2).
    Spec(SpecError),
    /// The open-file limit is too low for the connections asked for, and
    /// could not be raised (the hard limit is lower still).
    FdLimit {
        /// The connections asked for.
        connections: usize,
        /// Open files the run needs, about.
        needed: u64,
        /// The soft limit.
        soft: u64,
        /// The hard limit.
        hard: u64,
    },
    /// The local machinery failed: creating an event loop, spawning a thread.
    Local(std::io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Spec(e) => e.fmt(f),
            RunError::FdLimit {
                connections,
                needed,
                soft,
                hard,
            } => write!(
                f,
                "--connections {connections} needs about {needed} open files, but the limit is {soft} \
                 (hard limit {hard}); raise it first (e.g. `ulimit -n {needed}`, as root above the hard \
                 limit) or use fewer connections"
            ),
            RunError::Local(e) => write!(
                f,
                "probe could not run: {e}{}",
                crate::serve::thread_limit_hint(e)
            ),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Spec(e) => Some(e),
            RunError::FdLimit { .. } => None,
            RunError::Local(e) => Some(e),
        }
    }
}

impl From<SpecError> for RunError {
    fn from(e: SpecError) -> Self {
        RunError::Spec(e)
    }
}

/// What a run tells while it goes (see [`run_observed`]); every method
/// has a default that ignores it.
pub trait Observer {
    /// The live counters, about every 100 ms and once at the end.
    fn progress(&mut self, _snapshot: &Snapshot) {}
    /// An interval of the measured span is over (with
    /// [`ProbeSpec::interval`]); intervals come in order, the last one when
    /// the run ends.
    fn interval(&mut self, _interval: &IntervalReport) {}
    /// A step of [`find_rate`] is over, judged against `goal`.
    fn rate_step(&mut self, _step: &RateStep, _goal: &Goal) {}
}

/// An [`Observer`] that only passes the live counters to a closure.
struct Ticks<F>(F);

impl<F: FnMut(&Snapshot)> Observer for Ticks<F> {
    fn progress(&mut self, snapshot: &Snapshot) {
        (self.0)(snapshot);
    }
}

/// Runs a probe and returns what it found.
///
/// Blocks until every connection is finished: verified and closed, or
/// failed. Every wait is bounded by `spec.timeout`.
pub fn run(spec: &ProbeSpec) -> Result<Report, RunError> {
    run_with(spec, &StopHandle::new(), |_| {})
}

/// [`run`], calling `tick` on the calling thread about every 100 ms with the
/// live counters (and once at the end).
pub fn run_with_progress(
    spec: &ProbeSpec,
    tick: impl FnMut(&Snapshot),
) -> Result<Report, RunError> {
    run_with(spec, &StopHandle::new(), tick)
}

/// [`run_with_progress`] that another thread can stop through `stop`
/// ([`StopHandle::interrupt`]): the run then stops sending, lets what is in
/// flight settle, and returns a partial report with
/// [`Report::stopped_early`] set.
pub fn run_with(
    spec: &ProbeSpec,
    stop: &StopHandle,
    tick: impl FnMut(&Snapshot),
) -> Result<Report, RunError> {
    run_observed(spec, stop, &mut Ticks(tick))
}

/// [`run_with`] that also reports each interval (with
/// [`ProbeSpec::interval`]) to `observer` as it ends; the report then
/// carries them all in [`Report::intervals`].
pub fn run_observed(
    spec: &ProbeSpec,
    stop: &StopHandle,
    observer: &mut dyn Observer,
) -> Result<Report, RunError> {
    spec.validate()?;
    let threads = spec.effective_threads();
    ensure_fd_limit(spec.connections, threads)?;
    let started_at = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
    let clock = Clock::new();
    let start = clock.now();
    let (window_start, finish_at) = match spec.stop {
        Stop::Count(_) => (start, None),
        // Saturating: `Stop::Duration(Duration::MAX)` (run until
        // interrupted) with a warmup must not overflow.
        Stop::Duration(d) => (
            start + spec.warmup.into(),
            Some(start + spec.warmup.saturating_add(d).into()),
        ),
    };
    let tls = tls::clients(&spec.targets, &spec.tls).map_err(|e| SpecError::Tls(e.0))?;
    let progress = Progress::default();
    let ctx = Ctx {
        tls,
        spec,
        clock,
        window_start,
        finish_at,
        progress: &progress,
        threads,
        stop,
        losses: LossBudget::new(spec.planned_messages(), spec.max_loss_pct),
    };
    let secs_of = |t: Instant| t.saturating_since(start).as_micros() as f64 / 1e6;
    let mut collector = spec.interval.map(|every| {
        Collector::new(
            every,
            secs_of(window_start),
            finish_at.map(secs_of),
            threads,
            spec.rate.is_some(),
            !spec.is_stream(),
        )
    });
    let elapsed = || clock.to_std(clock.now()) - clock.to_std(start);

    let per_target = std::thread::scope(|s| -> Result<Vec<Tally>, RunError> {
        let (tx, rx) = mpsc::channel::<WorkerMsg>();
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads {
            let ctx = &ctx;
            let tx = tx.clone();
            let h = std::thread::Builder::new()
                .name(format!("probe-{t}"))
                .spawn_scoped(s, move || {
                    let result = if ctx.spec.is_stream() {
                        stream::run_worker(ctx, t, &tx)
                    } else {
                        datagram::run_worker(ctx, t, &tx)
                    };
                    let _ = tx.send(WorkerMsg::Done { thread: t, result });
                })
                .map_err(RunError::Local)?;
            handles.push(h);
        }
        drop(tx);
        let mut merged: Option<Vec<Tally>> = None;
        let mut failed: Option<std::io::Error> = None;
        let mut finished = 0;
        let mut last_tick = StdInstant::now();
        while finished < threads {
            match rx.recv_timeout(PROGRESS_EVERY) {
                Ok(WorkerMsg::Slice {
                    thread,
                    upto,
                    slice,
                }) => {
                    if let Some(c) = &mut collector {
                        for r in c.add(thread, upto, *slice) {
                            observer.interval(&r);
                        }
                    }
                }
                Ok(WorkerMsg::Done { thread, result }) => {
                    finished += 1;
                    if let Some(c) = &mut collector {
                        for r in c.thread_done(thread) {
                            observer.interval(&r);
                        }
                    }
                    match (result, &mut merged) {
                        (Ok(tallies), Some(m)) => {
                            for (into, from) in m.iter_mut().zip(&tallies) {
                                into.merge(from);
                            }
                        }
                        (Ok(tallies), None) => merged = Some(tallies),
                        (Err(e), _) => failed = Some(e),
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                // A worker panicked: the joins below say so.
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            if last_tick.elapsed() >= PROGRESS_EVERY {
                observer.progress(&progress.snapshot(elapsed()));
                last_tick = StdInstant::now();
            }
        }
        for h in handles {
            if h.join().is_err() {
                return Err(RunError::Local(std::io::Error::other(
                    "a probe worker panicked",
                )));
            }
        }
        if let Some(e) = failed {
            return Err(RunError::Local(e));
        }
        merged.ok_or_else(|| RunError::Local(std::io::Error::other("no worker ran")))
    })?;
    observer.progress(&progress.snapshot(elapsed()));
    let mut total: Option<Tally> = None;
    for part in &per_target {
        match &mut total {
            Some(t) => t.merge(part),
            None => total = Some(part.clone()),
        }
    }
    let total = total.ok_or_else(|| RunError::Local(std::io::Error::other("no target")))?;
    let facts = RunFacts {
        threads,
        started_at,
        window_start,
        finish_at,
        ended_at: clock.now(),
        // A loss budget spent after the last send (the last losses are
        // found only when their timeout ends) cut nothing short.
        stopped_early: stop.reason().filter(|r| {
            *r != StopReason::LossBudget
                || spec
                    .planned_messages()
                    .is_none_or(|n| total.messages_sent < n)
        }),
    };
    let mut report = verdict::build_report(spec, facts, total, &per_target);
    if let Some(c) = collector {
        // Intervals cover the measured span of a duration, and a count run
        // (or an interrupted one) until its end, or until the end of its
        // measured span when that is later (a paced run's schedule).
        let now = clock.now();
        let end = match finish_at {
            Some(f) => secs_of(f.min(now)),
            None => secs_of(now).max(secs_of(window_start) + report.measured_secs),
        };
        let (rest, all) = c.finish(end);
        for r in &rest {
            observer.interval(r);
        }
        report.intervals = all;
    }
    Ok(report)
}

/// How often the calling thread passes the live counters to the observer.
const PROGRESS_EVERY: StdDuration = StdDuration::from_millis(100);

/// What every worker thread shares.
pub(crate) struct Ctx<'a> {
    pub(crate) spec: &'a ProbeSpec,
    /// The TLS client of each target (`None` for a target that is not `tls://`).
    pub(crate) tls: Vec<Option<tls::TlsClient>>,
    pub(crate) clock: Clock,
    pub(crate) window_start: Instant,
    pub(crate) finish_at: Option<Instant>,
    pub(crate) progress: &'a Progress,
    pub(crate) threads: usize,
    /// Set when the run must stop sending (interrupt, loss budget spent).
    pub(crate) stop: &'a StopHandle,
    /// UDP losses so far, against what `--max-loss` allows.
    pub(crate) losses: LossBudget,
}

#[cfg(test)]
impl<'a> Ctx<'a> {
    /// The context of a one-thread run of `spec` (no TLS) starting now on
    /// `clock`, measured from its start, until its count: what the probe
    /// test rigs hold their connection in.
    pub(crate) fn for_tests(
        spec: &'a ProbeSpec,
        clock: Clock,
        progress: &'a Progress,
        stop: &'a StopHandle,
    ) -> Self {
        Ctx {
            spec,
            tls: spec.targets.iter().map(|_| None).collect(),
            clock,
            window_start: clock.now(),
            finish_at: None,
            progress,
            threads: 1,
            stop,
            losses: LossBudget::new(spec.planned_messages(), spec.max_loss_pct),
        }
    }
}

impl Ctx<'_> {
    /// The global connection numbers thread `t` owns (round-robin).
    pub(crate) fn connections_of(&self, t: usize) -> Vec<usize> {
        (t..self.spec.connections).step_by(self.threads).collect()
    }

    /// Connects each thread may have in flight.
    pub(crate) fn connect_limit(&self) -> usize {
        CONNECTS_IN_FLIGHT
    }

    /// Whether connections should stop starting messages at `now`: the
    /// duration is over, or the run was asked to stop.
    pub(crate) fn should_finish(&self, now: Instant) -> bool {
        self.finish_at.is_some_and(|f| now >= f) || self.stop.reason().is_some()
    }

    /// Counts `n` more lost datagrams (found at `now`); stops the run once
    /// it cannot pass, unless its duration is already over (then there is
    /// nothing left to cut short: the losses still fail it).
    pub(crate) fn count_lost(&self, n: u64, now: Instant) {
        if n > 0 && self.losses.add(n) && self.finish_at.is_none_or(|f| now < f) {
            self.stop.request(StopReason::LossBudget);
        }
    }
}

#[cfg(test)]
mod tests;

/// Descriptors a run needs besides one per connection: per worker thread
/// an epoll instance and its registry clone, plus stdio, the signal pipe
/// and room for the resolver.
const FD_RESERVE: u64 = 32;

/// Makes sure `connections` sockets can be opened: raises the soft
/// open-file limit toward the hard one if needed, or says up front which
/// limit is needed (rather than failing hundreds of connects with
/// `Too many open files`).
fn ensure_fd_limit(connections: usize, threads: usize) -> Result<(), RunError> {
    use rlimit::Resource;
    let needed = connections as u64 + 2 * threads as u64 + FD_RESERVE;
    let Ok((soft, hard)) = rlimit::getrlimit(Resource::NOFILE) else {
        return Ok(()); // cannot tell: connect errors will say it
    };
    if soft >= needed {
        return Ok(());
    }
    if hard >= needed && rlimit::setrlimit(Resource::NOFILE, needed, hard).is_ok() {
        return Ok(());
    }
    Err(RunError::FdLimit {
        connections,
        needed,
        soft,
        hard,
    })
}
