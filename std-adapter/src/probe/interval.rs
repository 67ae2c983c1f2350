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
mod tests {
    use std::sync::mpsc;

    use super::*;

    const MS: u64 = 1_000;

    #[test]
    fn interval_bounds_are_whole_microseconds_without_float_noise() {
        let noisy = 3.0 * 0.3;
        assert_ne!(noisy, 0.9, "the float noise this guards against");
        assert_eq!(whole_micros(noisy), 0.9);
        assert_eq!(whole_micros(1.000_000_4), 1.0);
    }

    fn slicer(tx: Sender<WorkerMsg>, thread: usize) -> Slicer {
        let window = Window {
            start: Instant::from_millis(100),
            end: None,
            paced: false,
        };
        Slicer::new(window, Duration::from_millis(100), thread, tx).unwrap()
    }

    fn drain(rx: &mpsc::Receiver<WorkerMsg>, c: &mut Collector) -> Vec<IntervalReport> {
        let mut out = Vec::new();
        while let Ok(WorkerMsg::Slice {
            thread,
            upto,
            slice,
        }) = rx.try_recv()
        {
            out.extend(c.add(thread, upto, *slice));
        }
        out
    }

    fn rt(s: &mut Slicer, ms: u64) {
        let now = Instant::from_micros(ms * MS);
        s.roll(now);
        s.round_trip(now, Duration::from_micros(50), Duration::from_micros(40));
        s.verified(now, 64);
    }

    #[test]
    fn intervals_wait_for_every_thread_then_come_out_in_order() {
        let (tx, rx) = mpsc::channel();
        let mut c = Collector::new(
            std::time::Duration::from_millis(100),
            0.1,
            None,
            2,
            false,
            false,
        );
        let (mut a, mut b) = (slicer(tx.clone(), 0), slicer(tx, 1));
        rt(&mut a, 150);
        rt(&mut a, 260); // thread 0 passes interval 0
        assert!(
            drain(&rx, &mut c).is_empty(),
            "thread 1 has not passed it yet"
        );
        rt(&mut b, 120);
        rt(&mut b, 390); // thread 1 passes intervals 0 and 1 (1 empty for it)
        let out = drain(&rx, &mut c);
        assert_eq!(out.len(), 1, "interval 1 waits for thread 0: {out:?}");
        assert_eq!(out[0].index, 0);
        assert_eq!(out[0].round_trips, 2);
        assert_eq!(out[0].bytes, 128);
        assert!((out[0].start_secs - 0.1).abs() < 1e-9 && (out[0].end_secs - 0.2).abs() < 1e-9);
        a.finish();
        b.finish();
        let mut out = drain(&rx, &mut c);
        out.extend(c.thread_done(0));
        out.extend(c.thread_done(1));
        let (rest, all) = c.finish(0.395);
        out.extend(rest);
        let idx: Vec<u64> = out.iter().map(|r| r.index).collect();
        assert_eq!(idx, [1, 2]);
        assert_eq!(all.len(), 3);
        assert_eq!(all.iter().map(|r| r.round_trips).sum::<u64>(), 4);
        assert!(
            (all[2].end_secs - 0.395).abs() < 1e-9,
            "the last one ends with the span"
        );
    }

    #[test]
    fn intervals_after_a_known_end_are_dropped_and_the_last_is_cut() {
        let (tx, rx) = mpsc::channel();
        let mut c = Collector::new(
            std::time::Duration::from_millis(100),
            0.1,
            Some(0.35),
            1,
            true,
            true,
        );
        let mut a = slicer(tx, 0);
        rt(&mut a, 150);
        a.roll(Instant::from_millis(800)); // draining after the end
        let out = drain(&rx, &mut c);
        assert_eq!(out.len(), 3, "{out:?}");
        assert!((out[2].end_secs - 0.35).abs() < 1e-9);
        assert!(out[0].latency_uncorrected_us.is_some());
        assert_eq!(out[1].lost, Some(0));
        assert!(c.thread_done(0).is_empty());
        assert!(c.finish(0.35).0.is_empty());
    }

    /// One thread's slicer and the summary's tally over the span 100-300
    /// ms, cut every 100 ms.
    struct Span {
        rx: mpsc::Receiver<WorkerMsg>,
        c: Collector,
        slicer: Slicer,
        tally: Tally,
    }

    impl Span {
        fn new(paced: bool) -> Span {
            let (tx, rx) = mpsc::channel();
            let every = std::time::Duration::from_millis(100);
            let c = Collector::new(every, 0.1, Some(0.3), 1, paced, false);
            let window = Window {
                start: Instant::from_millis(100),
                end: Some(Instant::from_millis(300)),
                paced: false,
            };
            let slicer = Slicer::new(window, every.into(), 0, tx).unwrap();
            let tally = Tally::new(window).unwrap();
            Span {
                rx,
                c,
                slicer,
                tally,
            }
        }

        /// Every interval, once the thread and the run are done.
        fn intervals(self) -> (Vec<IntervalReport>, Tally) {
            let Span {
                rx,
                mut c,
                slicer,
                tally,
            } = self;
            slicer.finish();
            let mut out = drain(&rx, &mut c);
            out.extend(c.thread_done(0));
            let (rest, all) = c.finish(0.3);
            out.extend(rest);
            assert_eq!(out, all, "each emitted once, in order");
            (all, tally)
        }
    }

    /// The summary counts a round trip where it completes and its latency
    /// where the message was due (see `Tally::round_trip`); the intervals
    /// must count the same, or their latencies do not add up to the
    /// summary's (a CI run saw 190,868 against 190,869): a message due in
    /// the warmup that completes in the window is a round trip without a
    /// latency, and one due before the end whose echo comes after it has a
    /// latency (in the last interval) without being a round trip.
    #[test]
    fn round_trips_straddling_the_window_bounds_count_as_the_summary_does() {
        let mut span = Span::new(false);
        for (at_ms, rtt_ms) in [
            (110, 20), // due in the warmup
            (150, 10),
            (250, 10),
            (320, 30), // due at 290, echoed after the end
        ] {
            let now = Instant::from_millis(at_ms);
            let rtt = Duration::from_millis(rtt_ms);
            span.slicer.roll(now);
            span.slicer.round_trip(now, rtt, rtt);
            span.tally.round_trip(now, rtt, rtt);
        }
        let (all, tally) = span.intervals();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(
            all.iter().map(|r| r.round_trips).sum::<u64>(),
            tally.round_trips(),
            "round trips add up to the summary's"
        );
        assert_eq!(
            all.iter().map(|r| r.latency_us.count).sum::<u64>(),
            tally.rtt.len(),
            "latencies add up to the summary's"
        );
        assert_eq!((all[0].round_trips, all[0].latency_us.count), (2, 1));
        assert_eq!((all[1].round_trips, all[1].latency_us.count), (1, 2));
        let max = all[1].latency_us.max;
        assert!(
            (29_700..=30_300).contains(&max),
            "the late echo is in the last interval: {max}"
        );
    }

    /// Messages a paced run's end held back join the summary's corrected
    /// latency (`Tally::unsent`), so they join the last interval's too.
    #[test]
    fn messages_held_at_the_end_count_in_the_last_interval_as_in_the_summary() {
        let mut span = Span::new(true);
        let pace = Pace::from(Duration::from_millis(10));
        let (first, n, now) = (Instant::from_millis(250), 10, Instant::from_millis(400));
        span.slicer.roll(now);
        span.slicer.unsent(first, pace, n, now);
        span.tally.unsent(first, pace, n, now);
        let (all, tally) = span.intervals();
        assert_eq!(all.len(), 2, "{all:?}");
        assert_eq!(tally.rtt.len(), 6, "due at 250..=300 ms, inside the window");
        assert_eq!(all[1].latency_us.count, 6);
        assert_eq!(all[1].round_trips, 0, "never sent: no round trip");
    }

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Two threads' shares of one interval add up, every count of them;
    /// the rates are the counts over the interval's length, and the
    /// running error total goes on across intervals.
    #[test]
    fn shares_of_one_interval_add_up_and_rates_are_per_second_of_it() {
        let (tx, rx) = mpsc::channel();
        let mut c = Collector::new(
            std::time::Duration::from_millis(100),
            0.1,
            None,
            2,
            false,
            true,
        );
        let (mut a, mut b) = (slicer(tx.clone(), 0), slicer(tx, 1));
        a.completed(Instant::from_millis(50)); // the warmup's: not counted
        rt(&mut a, 150);
        a.completed(Instant::from_millis(150));
        a.completed(Instant::from_millis(160));
        a.error();
        a.lost(3);
        rt(&mut b, 120);
        b.completed(Instant::from_millis(120));
        b.error();
        b.error();
        b.lost(4);
        a.roll(Instant::from_millis(250));
        a.error();
        b.roll(Instant::from_millis(250));
        let out = drain(&rx, &mut c);
        assert_eq!(out.len(), 1, "{out:?}");
        let r = &out[0];
        assert_eq!(
            (r.round_trips, r.bytes, r.connections_completed),
            (2, 128, 3)
        );
        assert_eq!((r.errors, r.errors_total, r.lost), (3, 3, Some(7)));
        assert!(near(r.round_trips_per_sec, 20.0), "{r:?}");
        assert!(near(r.mb_per_sec, 128.0 / 1e6 / 0.1), "{r:?}");
        assert!(near(r.connections_per_sec, 30.0), "{r:?}");
        a.finish();
        b.finish();
        let mut out = drain(&rx, &mut c);
        out.extend(c.thread_done(0));
        out.extend(c.thread_done(1));
        let (rest, _) = c.finish(0.3);
        out.extend(rest);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].errors, out[0].errors_total), (1, 4));
    }

    /// A thread's last interval is sent at its finish if it holds
    /// anything at all, whichever count that is.
    #[test]
    fn a_slice_holding_any_single_count_or_two_equal_ones_is_not_empty() {
        let fresh = || Slice::new(0).unwrap();
        assert!(fresh().is_empty());
        let setters: [fn(&mut Slice); 5] = [
            |s| s.round_trips = 1,
            |s| s.bytes = 1,
            |s| s.completed = 1,
            |s| s.errors = 1,
            |s| s.lost = 1,
        ];
        for (i, set) in setters.iter().enumerate() {
            let mut s = fresh();
            set(&mut s);
            assert!(!s.is_empty(), "count {i} alone");
            for (j, other) in setters.iter().enumerate().skip(i + 1) {
                let mut s = fresh();
                set(&mut s);
                other(&mut s);
                assert!(!s.is_empty(), "counts {i} and {j}, both 1");
            }
        }
        let mut s = fresh();
        s.rtt.saturating_record(10);
        assert!(!s.is_empty(), "a latency alone");
    }

    /// An interval whose only news is a failed connection still reaches
    /// the report when the thread finishes in it.
    #[test]
    fn a_finished_thread_sends_an_interval_holding_only_an_error() {
        let (tx, rx) = mpsc::channel();
        let mut c = Collector::new(
            std::time::Duration::from_millis(100),
            0.1,
            None,
            1,
            false,
            false,
        );
        let mut a = slicer(tx, 0);
        a.roll(Instant::from_millis(150));
        a.error();
        a.finish();
        let mut out = drain(&rx, &mut c);
        out.extend(c.thread_done(0));
        let (rest, _) = c.finish(0.2);
        out.extend(rest);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!((out[0].errors, out[0].errors_total), (1, 1));
    }

    /// Intervals are half-open, [start, end): a round trip at an
    /// interval's end counts in the next one, which the worker's next
    /// wakeup (`next_boundary`) then points past.
    #[test]
    fn a_round_trip_at_an_interval_boundary_counts_in_the_next_interval() {
        let (tx, rx) = mpsc::channel();
        let mut c = Collector::new(
            std::time::Duration::from_millis(100),
            0.1,
            None,
            1,
            false,
            false,
        );
        let mut a = slicer(tx, 0);
        assert_eq!(a.next_boundary(), Instant::from_millis(200));
        rt(&mut a, 150);
        rt(&mut a, 200);
        assert_eq!(a.next_boundary(), Instant::from_millis(300));
        a.finish();
        let mut out = drain(&rx, &mut c);
        out.extend(c.thread_done(0));
        let (rest, _) = c.finish(0.3);
        out.extend(rest);
        let counts: Vec<_> = out.iter().map(|r| (r.index, r.round_trips)).collect();
        assert_eq!(counts, [(0, 1), (1, 1)]);
    }

    /// A thread that finishes early stops holding the intervals back:
    /// those the others have passed come out when it is done.
    #[test]
    fn a_thread_done_early_releases_the_intervals_the_others_passed() {
        let (tx, rx) = mpsc::channel();
        let mut c = Collector::new(
            std::time::Duration::from_millis(100),
            0.1,
            None,
            2,
            false,
            false,
        );
        let (mut a, mut b) = (slicer(tx.clone(), 0), slicer(tx, 1));
        rt(&mut a, 150);
        a.finish();
        rt(&mut b, 120);
        rt(&mut b, 390); // thread 1 passes intervals 0 and 1
        assert!(drain(&rx, &mut c).is_empty(), "thread 0 holds them back");
        let out = c.thread_done(0);
        let idx: Vec<u64> = out.iter().map(|r| r.index).collect();
        assert_eq!(idx, [0, 1]);
        assert_eq!(out[0].round_trips, 2);
    }

    #[test]
    fn a_round_trip_at_the_window_end_counts_in_the_last_interval() {
        let (tx, rx) = mpsc::channel();
        let mut c = Collector::new(
            std::time::Duration::from_millis(100),
            0.1,
            Some(0.4),
            1,
            false,
            false,
        );
        let window = Window {
            start: Instant::from_millis(100),
            end: Some(Instant::from_millis(400)),
            paced: false,
        };
        let mut a = Slicer::new(window, Duration::from_millis(100), 0, tx).unwrap();
        rt(&mut a, 150);
        rt(&mut a, 400); // exactly the end: inside the window, as for the summary
        a.finish();
        let mut out = drain(&rx, &mut c);
        out.extend(c.thread_done(0));
        let (rest, all) = c.finish(0.4);
        out.extend(rest);
        assert_eq!(all.len(), 3, "{all:?}");
        assert_eq!(all.iter().map(|r| r.round_trips).sum::<u64>(), 2);
        assert_eq!(all[2].round_trips, 1, "in [0.3, 0.4]");
    }
}
