//! Per-interval reports (`--interval`): each worker thread cuts what it
//! measures into fixed intervals of the measured span ([`Slicer`]) and
//! sends each one to the calling thread as it passes its end; the
//! [`Collector`] there merges the threads' shares and emits one
//! [`IntervalReport`] per interval, in order, as soon as every thread has
//! passed it.
//!
//! Intervals are cut with the same window tests as the summary (a round
//! trip, a verified byte or a closed connection counts where its instant
//! falls; a latency is recorded if its message was due inside the window,
//! in the interval where it completed or, past the end of a duration, in
//! the last one, as are the messages the end held back), so the
//! intervals' counts add up to the summary's exactly.

use std::collections::BTreeMap;
use std::sync::mpsc::Sender;

use hdrhistogram::Histogram;
use ricochet_core::{Duration, Instant, Pace};
use serde::Serialize;

use super::report::Latency;
use super::tally::{HIST_MAX_US, Tally, Window, add_hist, latency_of, record_unsent};

/// Per-interval histograms have 2 significant digits (1 % resolution, a
/// tenth of the summary's memory: one is created per interval and thread).
const SLICE_SIGFIG: u8 = 2;

/// One interval of a run (a line of `--interval` output, an
/// `{"type":"interval",…}` line of `--json-stream`).
///
/// Times are seconds since the run started (the warmup, if any, comes
/// first: the first interval starts where it ends). Counts are those of the
/// summary cut at the interval's bounds, so they add up to it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct IntervalReport {
    /// 0 for the first interval of the measured span.
    pub index: u64,
    /// Start, seconds since the run started.
    #[serde(serialize_with = "super::json::rounded")]
    pub start_secs: f64,
    /// End, seconds since the run started (the last interval ends with the
    /// duration, or for a count with the run, or with its measured span
    /// when that ends later: a paced run's schedule, see
    /// [`Report::measured_secs`](super::Report::measured_secs)).
    #[serde(serialize_with = "super::json::rounded")]
    pub end_secs: f64,
    /// Round trips completed in the interval.
    pub round_trips: u64,
    /// `round_trips` per second of the interval.
    #[serde(serialize_with = "super::json::rounded")]
    pub round_trips_per_sec: f64,
    /// Bytes echoed and verified in the interval.
    pub bytes: u64,
    /// `bytes` in MB (10^6 B) per second of the interval.
    #[serde(serialize_with = "super::json::rounded")]
    pub mb_per_sec: f64,
    /// Connections closed cleanly in the interval (churn: `--pattern crr`, `--lifetime`).
    pub connections_completed: u64,
    /// `connections_completed` per second of the interval.
    #[serde(serialize_with = "super::json::rounded")]
    pub connections_per_sec: f64,
    /// Latency of the interval's round trips whose messages were due in
    /// the measured span (from the scheduled send with `--rate`),
    /// microseconds, 2 significant digits. The last interval of a duration
    /// also holds those due before its end that came back or, paced, were
    /// held back past it (as the summary does).
    pub latency_us: Latency,
    /// With `--rate`: the same measured from the actual send.
    pub latency_uncorrected_us: Option<Latency>,
    /// Connections that failed in the interval (a failure during the
    /// warmup counts in the first interval).
    pub errors: u64,
    /// Failed connections from the start of the run to the interval's end.
    pub errors_total: u64,
    /// UDP: datagrams counted lost in the interval.
    pub lost: Option<u64>,
}

/// What a worker thread sends to the calling thread.
pub(super) enum WorkerMsg {
    /// Thread `thread`'s share of interval `slice.index`; the thread has now
    /// passed every interval before `upto`.
    Slice {
        thread: usize,
        upto: u64,
        slice: Box<Slice>,
    },
    /// Thread `thread` is finished: its tallies (one per target), or why it failed.
    Done {
        thread: usize,
        result: std::io::Result<Vec<Tally>>,
    },
}

/// One thread's share of one interval.
pub(super) struct Slice {
    pub(super) index: u64,
    round_trips: u64,
    rtt: Histogram<u64>,
    rtt_sent: Histogram<u64>,
    bytes: u64,
    completed: u64,
    errors: u64,
    lost: u64,
}

impl Slice {
    fn new(index: u64) -> std::io::Result<Self> {
        let h = || {
            Histogram::new_with_bounds(1, HIST_MAX_US, SLICE_SIGFIG).map_err(std::io::Error::other)
        };
        Ok(Slice {
            index,
            round_trips: 0,
            rtt: h()?,
            rtt_sent: h()?,
            bytes: 0,
            completed: 0,
            errors: 0,
            lost: 0,
        })
    }

    fn is_empty(&self) -> bool {
        self.rtt.is_empty()
            && (self.round_trips | self.bytes | self.completed | self.errors | self.lost) == 0
    }

    fn merge(&mut self, o: &Slice) {
        self.round_trips += o.round_trips;
        add_hist(&mut self.rtt, &o.rtt);
        add_hist(&mut self.rtt_sent, &o.rtt_sent);
        self.bytes += o.bytes;
        self.completed += o.completed;
        self.errors += o.errors;
        self.lost += o.lost;
    }
}

/// A worker thread's interval cutter.
pub(super) struct Slicer {
    window: Window,
    every: Duration,
    current: Slice,
    /// End of the current interval.
    end: Instant,
    thread: usize,
    tx: Sender<WorkerMsg>,
}

impl Slicer {
    pub(super) fn new(
        window: Window,
        every: Duration,
        thread: usize,
        tx: Sender<WorkerMsg>,
    ) -> std::io::Result<Self> {
        Ok(Slicer {
            window,
            every,
            current: Slice::new(0)?,
            end: window.start + every,
            thread,
            tx,
        })
    }

    /// When the current interval ends (the worker wakes then, so intervals
    /// are reported on time even when nothing happens).
    pub(super) fn next_boundary(&self) -> Instant {
        self.end
    }

    /// Passes to the interval that contains `now`, sending the current one
    /// if it is over.
    pub(super) fn roll(&mut self, now: Instant) {
        // The window is closed at its end (as the summary's is): the end
        // itself belongs to the last interval. Past the end, that interval
        // stays open until the thread finishes: the latencies of messages
        // due before the end still come (see `round_trip`, `unsent`).
        let now = match self.window.end {
            Some(end) if now >= end => Instant::from_micros(end.as_micros().saturating_sub(1)),
            _ => now,
        };
        if now < self.end {
            return;
        }
        let every = self.every.as_micros().max(1);
        let index = now.saturating_since(self.window.start).as_micros() / every;
        let Ok(next) = Slice::new(index) else {
            return; // out of memory for a histogram: keep filling this one
        };
        self.end = self.window.start + Duration::from_micros(every.saturating_mul(index + 1));
        let done = std::mem::replace(&mut self.current, next);
        self.send(done, index);
    }

    fn send(&self, slice: Slice, upto: u64) {
        // The receiver only goes away when the run is over.
        let _ = self.tx.send(WorkerMsg::Slice {
            thread: self.thread,
            upto,
            slice: Box::new(slice),
        });
    }

    /// Sends what is left of the current interval; the thread reports
    /// nothing more (its `Done` message follows).
    pub(super) fn finish(self) {
        let Slicer {
            current,
            thread,
            tx,
            ..
        } = self;
        if !current.is_empty() {
            // Not past it: the run's end (its measured end) closes it.
            let upto = current.index;
            let _ = tx.send(WorkerMsg::Slice {
                thread,
                upto,
                slice: Box::new(current),
            });
        }
    }

    pub(super) fn verified(&mut self, now: Instant, n: usize) {
        if self.window.contains(now) {
            self.current.bytes += n as u64;
        }
    }

    /// A round trip completed at `now`; counted as the summary counts it
    /// ([`Tally::round_trip`]).
    pub(super) fn round_trip(&mut self, now: Instant, rtt: Duration, since_sent: Duration) {
        if self.window.counts_round_trip(now, rtt) {
            self.current.round_trips += 1;
        }
        if self.window.was_due_inside(now, rtt) {
            self.current.rtt.saturating_record(rtt.as_micros());
            self.current
                .rtt_sent
                .saturating_record(since_sent.as_micros());
        }
    }

    /// Messages the end held back, recorded as the summary records them
    /// ([`Tally::unsent`]).
    pub(super) fn unsent(&mut self, first_due: Instant, pace: Pace, n: u64, now: Instant) {
        record_unsent(&mut self.current.rtt, &self.window, first_due, pace, n, now);
    }

    pub(super) fn completed(&mut self, now: Instant) {
        if self.window.contains(now) {
            self.current.completed += 1;
        }
    }

    pub(super) fn error(&mut self) {
        self.current.errors += 1;
    }

    pub(super) fn lost(&mut self, n: u64) {
        self.current.lost += n;
    }
}

/// Merges the threads' shares of each interval on the calling thread and
/// emits the intervals in order.
pub(super) struct Collector {
    every_secs: f64,
    /// Start of the measured span, seconds since the run started.
    origin_secs: f64,
    /// End of the measured span when it is known in advance (a duration).
    window_end_secs: Option<f64>,
    /// With `--rate`: intervals carry the uncorrected latency too.
    paced: bool,
    udp: bool,
    /// Per thread: every interval before this one was reported.
    passed: Vec<u64>,
    merged: BTreeMap<u64, Slice>,
    next: u64,
    errors_total: u64,
    emitted: Vec<IntervalReport>,
}

impl Collector {
    pub(super) fn new(
        every: std::time::Duration,
        origin_secs: f64,
        window_end_secs: Option<f64>,
        threads: usize,
        paced: bool,
        udp: bool,
    ) -> Self {
        Collector {
            every_secs: every.as_secs_f64(),
            origin_secs,
            window_end_secs,
            paced,
            udp,
            passed: vec![0; threads],
            merged: BTreeMap::new(),
            next: 0,
            errors_total: 0,
            emitted: Vec::new(),
        }
    }

    /// Adds thread `thread`'s share of an interval; returns the intervals
    /// that are now complete, in order.
    pub(super) fn add(&mut self, thread: usize, upto: u64, slice: Slice) -> Vec<IntervalReport> {
        match self.merged.get_mut(&slice.index) {
            Some(m) => m.merge(&slice),
            None => {
                self.merged.insert(slice.index, slice);
            }
        }
        self.passed_to(thread, upto)
    }

    /// Thread `thread` reported everything it will.
    pub(super) fn thread_done(&mut self, thread: usize) -> Vec<IntervalReport> {
        self.passed_to(thread, u64::MAX)
    }

    fn passed_to(&mut self, thread: usize, upto: u64) -> Vec<IntervalReport> {
        if let Some(p) = self.passed.get_mut(thread) {
            *p = (*p).max(upto);
        }
        let ready = self.passed.iter().copied().min().unwrap_or(0);
        let mut out = Vec::new();
        // Once every thread is done, `finish` emits the rest, the last one
        // cut at the measured end.
        while self.next < ready && ready != u64::MAX {
            match self.emit(self.next, self.window_end_secs) {
                Some(r) => out.push(r),
                None => break,
            }
        }
        out
    }

    /// Emits interval `index`, ending at `end_secs` at the latest; `None`
    /// (and nothing emitted) when it starts at or after that end.
    fn emit(&mut self, index: u64, end_secs: Option<f64>) -> Option<IntervalReport> {
        let start_secs = self.origin_secs + index as f64 * self.every_secs;
        let mut end = start_secs + self.every_secs;
        if let Some(e) = end_secs {
            if start_secs >= e {
                return None;
            }
            end = end.min(e);
        }
        self.next = index + 1;
        let slice = self.merged.remove(&index);
        let secs = (end - start_secs).max(1e-9);
        let (round_trips, rtt, rtt_sent, bytes, completed, errors, lost) = match &slice {
            Some(s) => (
                s.round_trips,
                latency_of(&s.rtt),
                latency_of(&s.rtt_sent),
                s.bytes,
                s.completed,
                s.errors,
                s.lost,
            ),
            None => (0, Latency::default(), Latency::default(), 0, 0, 0, 0),
        };
        self.errors_total += errors;
        let report = IntervalReport {
            index,
            start_secs: whole_micros(start_secs),
            end_secs: whole_micros(end),
            round_trips,
            round_trips_per_sec: round_trips as f64 / secs,
            bytes,
            mb_per_sec: bytes as f64 / 1e6 / secs,
            connections_completed: completed,
            connections_per_sec: completed as f64 / secs,
            latency_us: rtt,
            latency_uncorrected_us: self.paced.then_some(rtt_sent),
            errors,
            errors_total: self.errors_total,
            lost: self.udp.then_some(lost),
        };
        self.emitted.push(report.clone());
        Some(report)
    }

    /// The run is over; its intervals end `end_secs` after the start (the
    /// end of the duration, or of the run for a count): emits the intervals
    /// still pending, the last one cut there. Returns them and every
    /// interval emitted, in order.
    pub(super) fn finish(mut self, end_secs: f64) -> (Vec<IntervalReport>, Vec<IntervalReport>) {
        let mut out = Vec::new();
        while let Some(r) = self.emit(self.next, Some(end_secs)) {
            out.push(r);
        }
        (out, self.emitted)
    }
}

/// `secs` to the whole microsecond (the clock's resolution), so a report
/// says 0.9, not the 0.8999999999999999 that summing 0.3 s steps gives.
fn whole_micros(secs: f64) -> f64 {
    (secs * 1e6).round() / 1e6
}

#[cfg(test)]
mod tests;
