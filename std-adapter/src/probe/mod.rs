//! `ricochet probe`: a verifying echo load tool for any RFC 862 echo server.
//!
//! The probe sends deterministic pseudo-random data (a core
//! [`StreamProbe`](ricochet_core::StreamProbe) per TCP/Unix connection, a
//! [`DatagramProbe`](ricochet_core::DatagramProbe) per UDP socket), checks
//! every byte that comes back, and measures round trips. Raw mode needs no
//! cooperation from the server, so it works against ours, socat, inetd…
//!
//! ```no_run
//! use ricochet::probe::{self, ProbeSpec, Target};
//!
//! let target: Target = "tcp://127.0.0.1:7".parse()?;
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
//! UDP: one connected socket per "connection"; datagrams not back within
//! the timeout are counted *lost*, apart from *corrupt* ones. Loss fails the
//! run only above `max_loss_pct` (default 0: on loopback nothing should be
//! lost); corruption always fails it.
//!
//! Rates (round trips/s, MB/s with MB = 10^6 B) and latency percentiles
//! cover the measured window: from the start (plus the warmup) to the end of
//! the duration, or to the last verified byte for a count.

mod datagram;
mod progress;
mod report;
mod spec;
mod stream;
mod tally;
mod target;
mod timers;
pub mod units;

use std::fmt;
use std::sync::mpsc;
use std::time::Duration as StdDuration;

use ricochet_core::Instant;

use crate::clock::Clock;

pub use progress::{Bar, Progress, Snapshot};
pub use report::{
    ConnError, DatagramCounts, ErrorCounts, ErrorKind, Latency, MAX_ERROR_DETAILS, Report,
};
pub use spec::{
    DEFAULT_COUNT, DEFAULT_WINDOW, Pattern, ProbeSpec, SpecError, Stop, UDP_MAX_IN_FLIGHT,
    connection_seed,
};
pub use target::{Target, TargetError};

use tally::Tally;

/// Connections each worker thread has connecting at once.
pub const CONNECTS_IN_FLIGHT: usize = 32;

/// Why a run could not take place (connection failures are not errors
/// here: they are counted in the [`Report`]).
#[derive(Debug)]
#[non_exhaustive]
pub enum RunError {
    /// The specification is invalid (the command line exits 2).
    Spec(SpecError),
    /// The local machinery failed: creating an event loop, spawning a thread.
    Local(std::io::Error),
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Spec(e) => e.fmt(f),
            RunError::Local(e) => write!(f, "probe could not run: {e}"),
        }
    }
}

impl std::error::Error for RunError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            RunError::Spec(e) => Some(e),
            RunError::Local(e) => Some(e),
        }
    }
}

impl From<SpecError> for RunError {
    fn from(e: SpecError) -> Self {
        RunError::Spec(e)
    }
}

/// Runs a probe and returns what it found.
///
/// Blocks until every connection is finished: verified and closed, or
/// failed. Every wait is bounded by `spec.timeout`.
pub fn run(spec: &ProbeSpec) -> Result<Report, RunError> {
    run_with_progress(spec, |_| {})
}

/// [`run`], calling `tick` on the calling thread about every 100 ms with the
/// live counters (and once at the end).
pub fn run_with_progress(
    spec: &ProbeSpec,
    mut tick: impl FnMut(&Snapshot),
) -> Result<Report, RunError> {
    spec.validate()?;
    raise_fd_limit(spec.connections);
    let clock = Clock::new();
    let start = clock.now();
    let (window_start, finish_at) = match spec.stop {
        Stop::Count(_) => (start, None),
        Stop::Duration(d) => (
            start + spec.warmup.into(),
            Some(start + (spec.warmup + d).into()),
        ),
    };
    let progress = Progress::default();
    let threads = spec.effective_threads();
    let ctx = Ctx {
        spec,
        clock,
        window_start,
        finish_at,
        progress: &progress,
        threads,
    };

    let merged = std::thread::scope(|s| -> Result<Tally, RunError> {
        let (done_tx, done_rx) = mpsc::channel::<()>();
        let mut handles = Vec::with_capacity(threads);
        for t in 0..threads {
            let ctx = &ctx;
            let done = done_tx.clone();
            let h = std::thread::Builder::new()
                .name(format!("probe-{t}"))
                .spawn_scoped(s, move || {
                    let r = if ctx.spec.target.is_stream() {
                        stream::run_worker(ctx, t)
                    } else {
                        datagram::run_worker(ctx, t)
                    };
                    let _ = done.send(());
                    r
                })
                .map_err(RunError::Local)?;
            handles.push(h);
        }
        drop(done_tx);
        let mut finished = 0;
        while finished < threads {
            match done_rx.recv_timeout(StdDuration::from_millis(100)) {
                Ok(()) => finished += 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            tick(&progress.snapshot(clock.to_std(clock.now()) - clock.to_std(start)));
        }
        let mut merged: Option<Tally> = None;
        for h in handles {
            let tally = match h.join() {
                Ok(r) => r.map_err(RunError::Local)?,
                Err(_) => {
                    return Err(RunError::Local(std::io::Error::other(
                        "a probe worker panicked",
                    )));
                }
            };
            match &mut merged {
                Some(m) => m.merge(tally),
                None => merged = Some(tally),
            }
        }
        merged.ok_or_else(|| RunError::Local(std::io::Error::other("no worker ran")))
    })?;
    Ok(build_report(spec, threads, window_start, finish_at, merged))
}

/// What every worker thread shares.
pub(crate) struct Ctx<'a> {
    pub(crate) spec: &'a ProbeSpec,
    pub(crate) clock: Clock,
    pub(crate) window_start: Instant,
    pub(crate) finish_at: Option<Instant>,
    pub(crate) progress: &'a Progress,
    pub(crate) threads: usize,
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
}

fn build_report(
    spec: &ProbeSpec,
    threads: usize,
    window_start: Instant,
    finish_at: Option<Instant>,
    t: Tally,
) -> Report {
    let end = match (finish_at, t.last_verified) {
        (Some(f), Some(l)) => l.min(f),
        (_, Some(l)) => l,
        (Some(f), None) => f,
        (None, None) => window_start,
    };
    let window_secs = (end.saturating_since(window_start).as_micros() as f64 / 1e6).max(1e-6);
    let round_trips = t.round_trips();
    let latency_us = t.latency();
    let mut errors = t.errors;
    let mut details = t.details;
    let mut warnings = Vec::new();
    let datagrams = (!spec.target.is_stream()).then(|| {
        let mut d = t.datagrams;
        d.max_loss_pct = spec.max_loss_pct;
        d.loss_pct = if d.sent == 0 {
            0.0
        } else {
            d.lost as f64 * 100.0 / d.sent as f64
        };
        if d.loss_pct > spec.max_loss_pct {
            errors.loss += 1;
            if details.len() < MAX_ERROR_DETAILS {
                details.push(ConnError {
                    connection: 0,
                    kind: ErrorKind::Loss,
                    offset: None,
                    expected: None,
                    actual: None,
                    message: format!(
                        "{} of {} datagrams lost ({:.3}%), more than the {}% allowed by --max-loss",
                        d.lost, d.sent, d.loss_pct, spec.max_loss_pct
                    ),
                });
            }
        }
        if d.duplicate > 0 {
            warnings.push(format!("{} datagrams came back twice", d.duplicate));
        }
        if d.late > 0 {
            warnings.push(format!(
                "{} datagrams came back after being counted lost",
                d.late
            ));
        }
        if d.foreign > 0 {
            warnings.push(format!(
                "{} datagrams received that the probe never sent",
                d.foreign
            ));
        }
        if t.send_blocked > 0 {
            warnings.push(format!(
                "{} datagrams could not be sent (socket buffer full) and count as lost",
                t.send_blocked
            ));
        }
        d
    });
    let ok = errors.total() == 0 && t.connections_ok == spec.connections;
    Report {
        tool: "ricochet-probe",
        target: spec.target.to_string(),
        transport: spec.target.transport(),
        mode: spec.mode.as_str(),
        pattern: spec.pattern.as_str(),
        connections: spec.connections,
        threads,
        size_min: spec.size.min,
        size_max: spec.size.max,
        seed: spec.seed,
        window_secs,
        messages_sent: t.messages_sent,
        messages_verified: t.messages_verified,
        bytes_sent: t.bytes_sent,
        bytes_verified: t.bytes_verified,
        round_trips,
        round_trips_per_sec: round_trips as f64 / window_secs,
        mb_per_sec: t.window_bytes as f64 / 1e6 / window_secs,
        latency_us,
        connections_ok: t.connections_ok,
        errors,
        error_details: details,
        warnings,
        datagrams,
        ok,
    }
}

/// Raises the soft open-files limit toward the hard one when many
/// connections need it (best effort: a failure shows up as connect errors).
fn raise_fd_limit(connections: usize) {
    let want = connections as u64 + 64;
    if want > 1024 {
        let _ = rlimit::increase_nofile_limit(want);
    }
}
