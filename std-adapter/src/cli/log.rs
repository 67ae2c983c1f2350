//! `ricochet serve`'s log output: `tracing` records on stderr, through a
//! writer that can neither fail nor block.
//!
//! A log sink that disappears (stderr a pipe whose reader exited, e.g.
//! `ricochet serve 2>&1 | tee log` after `tee` is gone) must never stop the
//! echo service or its shutdown. tracing-subscriber reports a failed write
//! with `eprintln!`, which panics on that same closed stderr: a warning on
//! any thread then killed the process (exit 101), or the signal thread, after
//! which SIGINT/SIGTERM were ignored. So the writer reports success whatever
//! happens, and the subscriber's own error reporting is off too.
//!
//! A sink that stalls (a pipe nobody reads, a stuck journald) must not stop
//! them either: a blocking write there held a worker, the stats thread or
//! the signal thread (and, through the stderr lock, every other thread that
//! logged) until the reader came back, so the server neither echoed nor
//! stopped. Records (and the lines of [`say`](super::say)) therefore go
//! into a bounded queue ([`QUEUE_LINES`]) that one writer thread,
//! `ricochet-log`, drains to stderr (`tracing-appender`'s lossy
//! non-blocking writer). While the sink stalls, the queue fills and new
//! lines are dropped and counted; once the writer has caught up, one
//! warning says how many were lost. At exit, [`finish`] waits for the queue
//! to be written, unless the writer is stuck in a write: then the lines
//! still queued are lost and the process exits at once.

use std::io::{self, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Lines the queue holds while stderr is slow or stalled (a few MB at most);
/// past that, new lines are dropped.
pub(crate) const QUEUE_LINES: usize = 16 * 1024;

/// At a graceful exit, a write stuck this long means the sink stalled:
/// the lines still queued are given up rather than delaying the exit
/// further. Long enough for a sink that merely hiccups (journald catching
/// up, a pipe to a busy reader) to take the last lines, `stopped` among
/// them; well within systemd's stop timeout.
const STUCK: Duration = Duration::from_secs(3);

/// The same after an abort ([`hurry`]: a second signal asks to stop at once).
const STUCK_ABORTING: Duration = Duration::from_millis(300);

/// Set by [`hurry`].
static HURRY: AtomicBool = AtomicBool::new(false);

/// While lines keep being dropped, how often at most that is said.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// At exit, the longest wait for a slow (but moving) sink to take the queue.
const DRAIN_AT_EXIT: Duration = Duration::from_secs(5);

/// Stderr that swallows write errors: a lost log line is the only effect.
/// Only the `ricochet-log` thread writes through it once [`init`] ran.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

/// What the queue's two ends count: lines handed to it, lines written
/// (or failed: either way taken off the queue), and since when the writer
/// is in its current write.
#[derive(Debug)]
struct Counts {
    /// Lines given to the queue (or dropped because it was full).
    submitted: AtomicUsize,
    /// Lines the writer thread took off the queue and wrote (or failed to).
    written: AtomicUsize,
    /// Dropped lines already reported.
    reported: AtomicUsize,
    /// When the last report was made, in ns after `epoch` (0: never).
    last_report: AtomicU64,
    /// While a write is under way: 1 + its start, in ns after `epoch`; 0 when idle.
    busy_since: AtomicU64,
    epoch: Instant,
    /// The queue's count of lines dropped because it was full (set once
    /// the queue exists).
    dropped: OnceLock<ErrorCounter>,
}

impl Counts {
    fn dropped(&self) -> usize {
        self.dropped.get().map_or(0, ErrorCounter::dropped_lines)
    }

    /// Whether every line handed to the queue was written or dropped.
    fn caught_up(&self) -> bool {
        // `written` and `dropped` first: a line counted in neither yet is
        // then still counted in `submitted`, never the other way round.
        let done = self.written.load(Ordering::SeqCst) + self.dropped();
        done >= self.submitted.load(Ordering::SeqCst)
    }

    /// Lines handed to the queue and neither written nor dropped yet.
    fn queued(&self) -> usize {
        let done = self.written.load(Ordering::SeqCst) + self.dropped();
        self.submitted.load(Ordering::SeqCst).saturating_sub(done)
    }

    /// The dropped lines not reported yet, now claimed (so that only one
    /// caller reports them); 0 if none.
    fn claim_unreported(&self) -> usize {
        let dropped = self.dropped();
        let before = self.reported.swap(dropped, Ordering::SeqCst);
        self.last_report.store(self.now(), Ordering::SeqCst);
        dropped.saturating_sub(before)
    }

    /// Whether lines were dropped since the last report and it is time to
    /// say so: the writer caught up, or (under a sink that stays slower
    /// than the lines come) the queue is half empty again and the last
    /// report is [`REPORT_EVERY`] old.
    fn report_due(&self) -> bool {
        if self.dropped() <= self.reported.load(Ordering::SeqCst) {
            return false;
        }
        let since = self
            .now()
            .saturating_sub(self.last_report.load(Ordering::SeqCst));
        self.caught_up()
            || (self.queued() <= QUEUE_LINES / 2 && since >= REPORT_EVERY.as_nanos() as u64)
    }

    fn now(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX - 1)
    }

    /// How long the current write has been under way (zero when idle).
    fn stuck_for(&self) -> Duration {
        match self.busy_since.load(Ordering::SeqCst) {
            0 => Duration::ZERO,
            t => Duration::from_nanos(self.now().saturating_sub(t - 1)),
        }
    }
}

/// Says that `lost` lines were dropped (nothing if 0). Queued like any
/// record: the writer thread writes it next.
fn report_dropped(lost: usize) {
    if lost > 0 {
        tracing::warn!(
            dropped = lost,
            "stderr was not read fast enough: {lost} log lines were dropped"
        );
    }
}

/// The writer thread's end: [`Stderr`], counting, and reporting the lines
/// dropped once it has caught up (or every [`REPORT_EVERY`] while it keeps
/// losing lines).
struct Drain(Arc<Counts>);

impl Write for Drain {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let c = &self.0;
        c.busy_since.store(c.now() + 1, Ordering::SeqCst);
        let _ = Stderr.write(buf);
        c.busy_since.store(0, Ordering::SeqCst);
        c.written.fetch_add(1, Ordering::SeqCst);
        if c.report_due() {
            report_dropped(c.claim_unreported());
        }
        Ok(buf.len())
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(|_| ())
    }

    fn flush(&mut self) -> io::Result<()> {
        Stderr.flush()
    }
}

/// The queue's writing end, for the subscriber and [`say`]: never blocks,
/// never fails.
#[derive(Clone, Debug)]
pub(crate) struct Sink {
    /// `None` without a writer thread: each line is written at once.
    queue: Option<NonBlocking>,
    counts: Arc<Counts>,
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.counts.submitted.fetch_add(1, Ordering::SeqCst);
        match &mut self.queue {
            // Lossy: a full queue drops the line (and counts it), never waits.
            Some(queue) => {
                let _ = queue.write(buf);
            }
            None => {
                let _ = Drain(Arc::clone(&self.counts)).write(buf);
            }
        }
        Ok(buf.len())
    }

    // One record, one line on the queue (the default would loop on `write`).
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.write(buf).map(|_| ())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Sink {
    type Writer = Sink;

    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// The queue once [`init`] made it, and its writer thread's guard (taken by [`finish`]).
struct Installed {
    sink: Sink,
    guard: Mutex<Option<WorkerGuard>>,
}

static INSTALLED: OnceLock<Installed> = OnceLock::new();

/// The queue and its writer thread (the first call makes them).
fn installed() -> &'static Installed {
    INSTALLED.get_or_init(|| {
        let counts = Arc::new(Counts {
            submitted: AtomicUsize::new(0),
            written: AtomicUsize::new(0),
            reported: AtomicUsize::new(0),
            last_report: AtomicU64::new(0),
            busy_since: AtomicU64::new(0),
            epoch: Instant::now(),
            dropped: OnceLock::new(),
        });
        let Some((queue, guard)) = start_writer(&counts) else {
            // No thread to be had: lines are written as they come.
            return Installed {
                sink: Sink {
                    queue: None,
                    counts,
                },
                guard: Mutex::new(None),
            };
        };
        let _ = counts.dropped.set(queue.error_counter());
        Installed {
            sink: Sink {
                queue: Some(queue),
                counts,
            },
            guard: Mutex::new(Some(guard)),
        }
    })
}

/// The queue and its writer thread; `None` if the thread cannot start
/// (the user's limit of processes and threads, `RLIMIT_NPROC` or a unit's
/// `TasksMax=`, is reached), which `tracing-appender` reports by panicking:
/// that panic is caught, silently (the server then says what is wrong
/// when its own threads cannot start either).
fn start_writer(counts: &Arc<Counts>) -> Option<(NonBlocking, WorkerGuard)> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        NonBlockingBuilder::default()
            .lossy(true)
            .buffered_lines_limit(QUEUE_LINES)
            .thread_name("ricochet-log")
            .finish(Drain(Arc::clone(counts)))
    }));
    std::panic::set_hook(hook);
    built.ok()
}

/// Queues one line for stderr if [`init`] ran (true), else does nothing (false).
pub(crate) fn say(args: std::fmt::Arguments<'_>) -> bool {
    let Some(installed) = INSTALLED.get() else {
        return false;
    };
    let _ = installed
        .sink
        .clone()
        .write_all(format!("{args}\n").as_bytes());
    true
}

/// The process is exiting on an abort (a second signal): [`finish`] waits
/// for a stuck writer only [`STUCK_ABORTING`].
pub(crate) fn hurry() {
    HURRY.store(true, Ordering::SeqCst);
}

/// Before the process exits: waits until the queue is written, so that
/// nothing is lost on a working stderr (the `stopped` line, an error).
/// Gives up once the writer has been stuck in one write for [`STUCK`] (a
/// stalled sink; [`STUCK_ABORTING`] after [`hurry`]: the exit 130 of a
/// second signal must not wait for it), and after [`DRAIN_AT_EXIT`] for a
/// slow one. Does nothing if [`init`] never ran.
pub(crate) fn finish() {
    let Some(installed) = INSTALLED.get() else {
        return;
    };
    let Some(guard) = installed
        .guard
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .take()
    else {
        return;
    };
    let counts = &installed.sink.counts;
    let start = Instant::now();
    while !counts.caught_up() {
        let stuck = if HURRY.load(Ordering::SeqCst) {
            STUCK_ABORTING
        } else {
            STUCK
        };
        if counts.stuck_for() >= stuck || start.elapsed() >= DRAIN_AT_EXIT {
            // Dropping the guard would wait for the stuck writer (up to
            // 1.1 s) and, with the queue full, print to stdout: leave the
            // thread to the exit instead.
            std::mem::forget(guard);
            return;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    // Lines dropped but not reported yet (the writer reports them only
    // after a write): said now, ahead of the guard's shutdown message.
    report_dropped(counts.claim_unreported());
    // Caught up: the guard's shutdown message finds room and the idle
    // writer takes it (after that last report) at once.
    drop(guard);
}

/// How log records are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One line per record for people: time, level, message, fields.
    #[default]
    Human,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`,
    /// the other fields, `target`), for log collectors.
    Json,
}

/// Installs the subscriber: `RUST_LOG` (default `info`) on the queue to
/// stderr ([`Sink`]), in `format`; [`say`](super::say) lines take the queue too.
/// A `RUST_LOG` that is not a valid filter is reported (as a warning, once
/// logging runs) and `info` is used instead.
pub(crate) fn init(format: LogFormat) {
    let (filter, invalid) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new("info"), Some((v, e))),
        },
        _ => (EnvFilter::new("info"), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(installed().sink.clone())
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Human => builder.with_ansi(io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    if let Some((value, e)) = invalid {
        tracing::warn!(
            RUST_LOG = %value,
            error = %e,
            "RUST_LOG is not a valid log filter: logging at info instead (e.g. RUST_LOG=debug, or RUST_LOG=info,ricochet=debug)"
        );
    }
}

/// Writes `message` as one JSON error record on the stderr queue, whatever
/// `RUST_LOG` says (a usage error under `--log-format json` must not vanish
/// under `RUST_LOG=off`); the caller then calls [`finish`].
pub(crate) fn json_error(message: &str) {
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_ansi(false)
        .with_max_level(tracing::Level::ERROR)
        .with_writer(installed().sink.clone())
        .log_internal_errors(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || tracing::error!("{message}"));
}

/// Reports an error that ends the process, once logging runs: under
/// `--log-format json` as an error record (a log collector parses every
/// stderr line), otherwise as a plain line.
pub(crate) fn fatal(format: LogFormat, msg: std::fmt::Arguments<'_>) {
    match format {
        LogFormat::Json => tracing::error!("{msg}"),
        LogFormat::Human => super::say(msg),
    }
}
