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

/// A collector of 100 ms intervals from 0.1 s (the runs' origin here).
fn every_100ms_from_0_1s(
    end_secs: Option<f64>,
    threads: usize,
    paced: bool,
    udp: bool,
) -> Collector {
    Collector::new(
        std::time::Duration::from_millis(100),
        0.1,
        end_secs,
        threads,
        paced,
        udp,
    )
}

#[test]
fn intervals_wait_for_every_thread_then_come_out_in_order() {
    let (tx, rx) = mpsc::channel();
    let mut c = every_100ms_from_0_1s(None, 2, false, false);
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
    let mut c = every_100ms_from_0_1s(Some(0.35), 1, true, true);
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
    let mut c = every_100ms_from_0_1s(None, 2, false, true);
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
    let mut c = every_100ms_from_0_1s(None, 1, false, false);
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
    let mut c = every_100ms_from_0_1s(None, 1, false, false);
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
    let mut c = every_100ms_from_0_1s(None, 2, false, false);
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
    let mut c = every_100ms_from_0_1s(Some(0.4), 1, false, false);
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
