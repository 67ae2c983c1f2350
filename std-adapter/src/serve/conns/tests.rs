//! The connection table with a stand-in backend: connections whose drives
//! are scripted (yield, or run the real pump over a transport that takes
//! nothing), so fairness, deadlines, admission and the drain are checked
//! without sockets.

use std::cell::Cell;
use std::sync::{Arc, Mutex};

use ricochet_core::pump::{ReadOutcome, Transport, WriteOutcome};
use ricochet_core::{Duration, Instant, Next, Pump, SessionConfig, State};

use super::super::config::IoBackend;
use super::super::stats::{Counters, StreamKind};
use super::super::storage::SessionStorage;
use super::super::{Phase, Shared};
use super::{BUDGET, ConnTable, Driver, TIMER_BUDGET, Tracked};

const GRACE: std::time::Duration = std::time::Duration::from_secs(5);

fn shared(max_connections: usize) -> Arc<Shared> {
    Shared::for_tests(max_connections, IoBackend::Epoll, |s| s.grace = GRACE)
}

fn at(ms: u64) -> Instant {
    Instant::from_millis(ms)
}

/// A peer that sent `input` bytes once and takes no echo (or, with
/// `takes_echo`, all of it).
#[derive(Debug)]
struct Peer {
    input: usize,
    takes_echo: bool,
}

impl Transport for Peer {
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        let n = self.input.min(buf.len());
        self.input -= n;
        if n == 0 {
            return ReadOutcome::WouldBlock;
        }
        buf[..n].fill(b'x');
        ReadOutcome::Data(n)
    }

    fn write(&mut self, buf: &[u8], _more: bool) -> WriteOutcome {
        if self.takes_echo {
            WriteOutcome::Sent(buf.len())
        } else {
            WriteOutcome::WouldBlock
        }
    }

    fn shutdown_write(&mut self) {}
}

#[derive(Debug)]
struct Fake {
    pump: Pump<SessionStorage>,
    peer: Peer,
    /// Drives left that return `Next::Yield` before the pump runs.
    yields: u32,
    deadline: Option<Instant>,
    /// What `deadline` becomes once driven.
    after: Option<Instant>,
    live: bool,
    reset_on_close: Cell<bool>,
}

impl Tracked for Fake {
    fn pump(&mut self) -> &mut Pump<SessionStorage> {
        &mut self.pump
    }

    fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn set_reset_on_close(&self) {
        self.reset_on_close.set(true);
    }

    fn kind(&self) -> StreamKind {
        StreamKind::Tcp
    }

    fn is_live(&self) -> bool {
        self.live
    }
}

struct Worker {
    conns: ConnTable<Fake>,
    counters: Counters,
    /// Keys in the order they were driven.
    driven: Vec<usize>,
    stopped_accepting: bool,
}

impl Worker {
    fn new(max_connections: usize) -> Self {
        Worker {
            conns: ConnTable::new(0, shared(max_connections)),
            counters: Counters::default(),
            driven: Vec::new(),
            stopped_accepting: false,
        }
    }

    /// Admits a connection (panics over the limit).
    fn open(&mut self, now: Instant, yields: u32, deadline: Option<Instant>) -> usize {
        let peer = super::super::conn::Peer::Unix;
        assert!(
            self.conns
                .reserve(StreamKind::Tcp, &peer, now, &mut self.counters)
        );
        let make = |pump| Fake {
            pump,
            peer: Peer {
                input: 0,
                takes_echo: false,
            },
            yields,
            deadline,
            after: None,
            live: true,
            reset_on_close: Cell::new(false),
        };
        self.conns
            .insert(StreamKind::Tcp, peer, now, &mut self.counters, make)
    }

    fn times_driven(&self, key: usize) -> usize {
        self.driven.iter().filter(|&&k| k == key).count()
    }

    fn open_gauge(&mut self) -> usize {
        self.conns
            .shared
            .stats
            .open()
            .load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Driver for Worker {
    type Conn = Fake;

    fn table(&mut self) -> &mut ConnTable<Fake> {
        &mut self.conns
    }

    fn counters(&self) -> &Counters {
        &self.counters
    }

    fn drive(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.live {
            return;
        }
        self.driven.push(key);
        conn.deadline = conn.after;
        let next = if conn.yields > 0 {
            conn.yields -= 1;
            Next::Yield
        } else {
            let counters = self.counters.stream(StreamKind::Tcp);
            conn.pump.drive(now, &mut conn.peer, BUDGET, counters)
        };
        if self.conns.file(key, next).is_some() {
            self.conns.release(key, drop);
        }
    }

    fn stop_accepting(&mut self) {
        self.stopped_accepting = true;
    }
}

#[test]
fn yielding_connection_is_driven_once_per_turn_after_the_others() {
    let mut w = Worker::new(8);
    let now = at(1);
    let busy = w.open(now, 1000, None);
    let quiet = w.open(now, 0, None);
    // Two drives in one turn that both yield queue it once.
    w.drive(busy, now);
    w.drive(busy, now);
    w.drive(quiet, now);
    assert!(w.conns.has_queued());
    w.driven.clear();
    w.serve_run_queue(now);
    assert_eq!(w.driven, vec![busy], "queued once, driven once this turn");
    w.serve_run_queue(now);
    assert_eq!(w.times_driven(busy), 2, "yielded again: next turn, once");
    assert_eq!(w.times_driven(quiet), 0);
}

#[test]
fn queued_key_of_a_released_connection_skips_the_next_in_its_slot() {
    let mut w = Worker::new(8);
    let now = at(1);
    let old = w.open(now, 1, None);
    w.drive(old, now);
    assert!(w.conns.has_queued());
    w.conns.release(old, drop);
    let new = w.open(now, 0, None);
    assert_eq!(new, old, "the slab reuses the slot");
    w.driven.clear();
    w.serve_run_queue(now);
    assert!(w.driven.is_empty(), "the new connection was never queued");
    assert!(!w.conns.has_queued());
}

#[test]
fn tagged_connection_is_found_only_while_it_is_the_one_in_its_slot() {
    let mut w = Worker::new(8);
    let old = w.open(at(0), 0, None);
    let (_, generation) = w.conns.get_tagged(old).expect("open");
    assert!(w.conns.get_current(old, generation).is_some());
    w.conns.release(old, drop);
    let new = w.open(at(0), 0, None);
    assert_eq!(new, old, "the slab reuses the slot");
    assert!(w.conns.get_current(new, generation).is_none());
    let (_, current) = w.conns.get_tagged(new).expect("open");
    assert!(w.conns.get_current(new, current).is_some());
}

#[test]
fn only_the_earliest_deadline_fires_and_superseded_entries_are_skipped() {
    let mut w = Worker::new(8);
    let key = w.open(at(0), 0, Some(at(20)));
    w.conns.schedule(key);
    w.conns.get_mut(key).unwrap().deadline = Some(at(10));
    w.conns.schedule(key);
    assert_eq!(w.conns.next_deadline(), Some(at(10)));
    // Fired at 10, the connection's next deadline is 30; its entry at 20 is stale.
    w.conns.get_mut(key).unwrap().after = Some(at(30));
    w.fire_timers(at(9));
    assert_eq!(w.times_driven(key), 0, "nothing due yet");
    w.fire_timers(at(10));
    assert_eq!(w.times_driven(key), 1);
    w.conns.get_mut(key).unwrap().after = None;
    w.fire_timers(at(20));
    assert_eq!(w.times_driven(key), 1, "the entry at 20 was superseded");
    w.fire_timers(at(30));
    assert_eq!(w.times_driven(key), 2);
}

#[test]
fn wait_ends_at_the_earliest_timer_grace_end_or_backend_deadline() {
    let mut w = Worker::new(8);
    let ms = std::time::Duration::from_millis;
    assert_eq!(w.conns.wait_limit([], at(0)), None, "nothing to wait for");
    let key = w.open(at(0), 0, Some(at(50)));
    w.conns.schedule(key);
    assert_eq!(w.conns.wait_limit([], at(10)), Some(ms(40)));
    assert_eq!(w.conns.wait_limit([at(30)], at(10)), Some(ms(20)));
    assert_eq!(w.conns.wait_limit([at(5)], at(10)), Some(ms(0)), "overdue");
    w.conns.shared.advance(Phase::Draining);
    assert!(w.follow_phase(at(10)));
    let grace_end = at(10) + Duration::from(GRACE);
    assert_eq!(w.conns.next_deadline(), Some(at(50)));
    w.conns.release(key, drop);
    w.fire_timers(at(50));
    assert_eq!(w.conns.next_deadline(), Some(grace_end));
    assert_eq!(
        w.conns.wait_limit([], at(10)),
        Some(std::time::Duration::from(
            grace_end.saturating_since(at(10))
        ))
    );
}

#[test]
fn timer_of_a_released_connection_does_not_fire() {
    let mut w = Worker::new(8);
    let key = w.open(at(0), 0, Some(at(10)));
    w.conns.schedule(key);
    w.conns.release(key, drop);
    w.fire_timers(at(10));
    assert!(w.driven.is_empty());
    assert_eq!(w.conns.next_deadline(), None, "its entry was popped");
}

#[test]
fn stale_timers_are_compacted_once_they_outnumber_the_connections() {
    let mut w = Worker::new(8);
    let key = w.open(at(0), 0, None);
    for i in 0..1100 {
        w.conns.get_mut(key).unwrap().deadline = Some(at(1_000_000 - i));
        w.conns.schedule(key);
    }
    assert_eq!(w.conns.timers.len(), 1100);
    w.fire_timers(at(1));
    assert_eq!(w.conns.timers.len(), 1, "only the live entry is left");
    assert_eq!(w.conns.next_deadline(), Some(at(1_000_000 - 1099)));
}

#[test]
fn timers_fired_per_turn_are_bounded() {
    let mut w = Worker::new(TIMER_BUDGET + 10);
    for _ in 0..TIMER_BUDGET + 10 {
        let key = w.open(at(0), 0, Some(at(5)));
        w.conns.schedule(key);
    }
    w.fire_timers(at(5));
    assert_eq!(w.driven.len(), TIMER_BUDGET);
    w.fire_timers(at(5));
    assert_eq!(w.driven.len(), TIMER_BUDGET + 10, "the rest fire next turn");
}

#[test]
fn connection_over_the_limit_is_rejected_and_release_makes_room() {
    let mut w = Worker::new(1);
    let peer = super::super::conn::Peer::Unix;
    let key = w.open(at(0), 0, None);
    assert_eq!(w.open_gauge(), 1);
    assert!(
        !w.conns
            .reserve(StreamKind::Unix, &peer, at(0), &mut w.counters)
    );
    assert!(
        !w.conns
            .reserve(StreamKind::Unix, &peer, at(1), &mut w.counters)
    );
    assert_eq!(w.counters.unix.rejected, 2);
    assert_eq!(w.counters.tcp.accepted, 1);
    assert_eq!(w.open_gauge(), 1, "a rejection leaves the gauge as it was");
    w.conns.release(key, drop);
    assert_eq!(w.open_gauge(), 0);
    assert!(
        w.conns
            .reserve(StreamKind::Unix, &peer, at(2), &mut w.counters)
    );
    w.conns.unreserve();
    assert_eq!(w.open_gauge(), 0);
}

#[test]
fn opened_connection_waits_for_its_deadline_unless_draining() {
    let mut w = Worker::new(8);
    let key = w.open(at(0), 0, Some(at(7)));
    w.opened(key, at(0));
    assert!(w.driven.is_empty());
    assert_eq!(w.conns.next_deadline(), Some(at(7)));
    w.conns.shared.advance(Phase::Draining);
    assert!(w.follow_phase(at(1)));
    let late = w.open(at(1), 0, None);
    w.opened(late, at(1));
    assert_eq!(w.times_driven(late), 1, "driven at once");
    assert!(
        w.conns
            .get_mut(late)
            .is_some_and(|c| !c.pump.is_finishing()),
        "admitted while draining: served until quiet"
    );
    let quiet = at(1) + ricochet_core::pump::IDLE_QUIET;
    assert_eq!(
        w.conns.get_mut(late).unwrap().pump.poll_timeout(),
        Some(quiet),
        "then looked at again"
    );
    w.drive(late, quiet);
    assert!(
        w.conns.get_mut(late).is_none_or(|c| c.pump.is_finishing()),
        "nothing came: closed once quiet"
    );
}

#[test]
fn drain_closes_every_live_session_and_the_grace_period_resets_the_rest() {
    let mut w = Worker::new(8);
    let idle = w.open(at(0), 0, None);
    let echoing = w.open(at(0), 0, None);
    let released = w.open(at(0), 0, None);
    // Input the peer does not take back: the session cannot finish.
    w.conns.get_mut(echoing).unwrap().peer.input = 10;
    w.drive(echoing, at(0));
    w.conns.get_mut(released).unwrap().live = false;
    assert!(w.follow_phase(at(1)));
    assert!(!w.conns.is_draining());
    assert!(!w.drained(at(1)));

    // Quiet for longer than the pump waits before taking one as idle.
    w.conns.shared.advance(Phase::Draining);
    w.driven.clear();
    assert!(w.follow_phase(at(1_000)));
    assert!(w.stopped_accepting);
    assert_eq!(w.driven, vec![idle, echoing], "live ones closed and driven");
    assert!(w.conns.get_mut(idle).unwrap().pump.is_finishing());
    assert!(!w.conns.get_mut(echoing).unwrap().pump.is_finishing());
    let state = |w: &mut Worker, k| w.conns.get_mut(k).unwrap().pump.session().state();
    assert_eq!(
        state(&mut w, released),
        State::Open,
        "a released one is left alone"
    );
    w.driven.clear();
    assert!(w.follow_phase(at(1_001)), "the drain starts once");
    assert!(w.driven.is_empty());

    let end = at(1_000) + Duration::from(GRACE);
    assert!(!w.drained(at(1_001)));
    assert!(w.drained(end));
    assert_eq!(w.counters.tcp.aborted.local, 1, "the echoing one was reset");
    assert!(w.conns.get_mut(echoing).is_none());
    assert!(w.conns.get_mut(idle).is_none(), "its linger was cut short");
    assert_eq!(state(&mut w, released), State::Open, "left to its backend");
    assert_eq!(w.open_gauge(), 1);
    w.conns.release_all(drop);
    assert!(w.conns.is_empty());
    assert_eq!(w.open_gauge(), 0);

    w.conns.shared.advance(Phase::Abort);
    assert!(!w.follow_phase(end));
}

/// The wakeup that brings the shutdown also reports input on a connection
/// quiet until then: the turn takes it in (the connection reads it, its
/// echo pending) before the drain judges the connection quiet, so it stays
/// open to echo it. (With the drain started first, the quiet connection
/// closed at once and the input, read in its linger, was discarded.)
#[test]
fn drain_starting_in_a_turn_that_reports_input_reads_it_before_judging_quiet() {
    let mut w = Worker::new(8);
    let quiet = w.open(at(0), 0, None);
    w.drive(quiet, at(0));
    w.conns.shared.advance(Phase::Draining);
    let later = at(1_000);
    assert!(w.begin_turn(later, |w| {
        let conn = w.conns.get_mut(quiet).unwrap();
        conn.peer.input = 10;
        conn.pump.set_readable();
        w.drive(quiet, later);
    }));
    assert!(w.conns.is_draining());
    let conn = w.conns.get_mut(quiet).unwrap();
    assert!(!conn.pump.is_finishing(), "its echo is still to go out");
    assert_eq!(conn.pump.session().buffered(), 10);
    assert_eq!(w.counters.tcp.bytes_discarded, 0);
    // An abort stops the turn before anything is taken in.
    w.conns.shared.advance(Phase::Abort);
    assert!(!w.begin_turn(later, |_| panic!("taken in after an abort")));
}

#[test]
fn worker_exit_resets_only_live_sessions_still_running_and_counts_each() {
    let mut w = Worker::new(8);
    let running = w.open(at(0), 0, None);
    let finishing = w.open(at(0), 0, None);
    let released = w.open(at(0), 0, None);
    w.conns.get_mut(finishing).unwrap().pump.close(at(0));
    w.drive(finishing, at(0));
    w.conns.get_mut(released).unwrap().live = false;
    let before = w.counters.tcp;
    w.conns.reset_unfinished(at(1), &mut w.counters);
    let reset = |w: &mut Worker, k| w.conns.get_mut(k).unwrap().reset_on_close.get();
    assert!(reset(&mut w, running));
    assert!(!reset(&mut w, finishing));
    assert!(!reset(&mut w, released));
    // The stats at exit hold every end: the running session as aborted,
    // the lingering one as cut short; the released one is not counted again.
    let c = w.counters.tcp;
    assert_eq!(c.aborted.local - before.aborted.local, 1);
    assert_eq!(c.lingered - before.lingered, 1);
    assert_eq!(c.closed.total(), before.closed.total());
}

#[test]
fn prefetch_of_keys_that_are_not_connections_does_nothing() {
    let mut w = Worker::new(8);
    let live = w.open(at(0), 0, None);
    let gone = w.open(at(0), 0, None);
    w.conns.release(gone, drop);
    for key in [live, gone, usize::MAX, 1 << 62, 7] {
        w.conns.prefetch(key);
    }
    assert!(w.conns.get(live).is_some());
    assert!(w.conns.get(gone).is_none());
    assert_eq!(w.conns.len(), 1);
    // Below the threshold, the workers do not prefetch at all.
    assert!(!w.conns.worth_prefetching());
}

#[test]
fn prefetching_pays_from_256_connections_where_the_target_has_a_hint() {
    let mut w = Worker::new(300);
    for _ in 0..255 {
        w.open(at(0), 0, None);
    }
    assert!(!w.conns.worth_prefetching());
    w.open(at(0), 0, None);
    assert_eq!(w.conns.worth_prefetching(), super::super::prefetch::ENABLED);
}

/// What `f` logs (the `fmt` layer's text, no colours).
#[cfg(feature = "cli")]
fn logged(f: impl FnOnce()) -> String {
    logged_at(tracing::Level::INFO, f)
}

/// What `f` logs at `level` and above (the `fmt` layer's text, no colours).
#[cfg(feature = "cli")]
pub(in crate::serve) fn logged_at(level: tracing::Level, f: impl FnOnce()) -> String {
    #[derive(Clone)]
    struct Capture(Arc<Mutex<Vec<u8>>>);
    impl std::io::Write for Capture {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let out = Capture(Arc::new(Mutex::new(Vec::new())));
    let writer = out.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    String::from_utf8(out.0.lock().unwrap().clone()).unwrap()
}

/// The warning at the grace period's end counts the connections that
/// drain reset, of any transport, and not those some other transport's
/// counters already held; none reset, no warning.
#[cfg(feature = "cli")]
#[test]
fn grace_end_with_sessions_still_echoing_warns_of_exactly_those_reset() {
    let mut w = Worker::new(8);
    // Resets counted before the drain, on the other transports.
    w.counters.unix.aborted.local = 3;
    w.counters.tls.aborted.local = 5;
    let echoing = [w.open(at(0), 0, None), w.open(at(0), 0, None)];
    for key in echoing {
        // Input the peer does not take back: the session cannot finish.
        w.conns.get_mut(key).unwrap().peer.input = 10;
        w.drive(key, at(0));
    }
    w.conns.shared.advance(Phase::Draining);
    assert!(w.follow_phase(at(1)));
    let end = at(1) + Duration::from(GRACE);
    let text = logged(|| assert!(w.drained(end)));
    assert_eq!(w.counters.tcp.aborted.local, 2);
    assert_eq!(
        text.matches("grace period over: connections reset").count(),
        1,
        "{text}"
    );
    assert!(text.contains("connections=2"), "{text}");

    // Only a connection the backend still holds after its release: nothing
    // to reset, nothing to warn of.
    let mut w = Worker::new(8);
    let held = w.open(at(0), 0, None);
    w.conns.get_mut(held).unwrap().live = false;
    w.conns.shared.advance(Phase::Draining);
    assert!(w.follow_phase(at(1)));
    let text = logged(|| assert!(w.drained(end)));
    assert!(!text.contains("grace period over"), "{text}");
}

#[test]
fn connection_with_more_input_than_the_budget_reads_64_kib_then_yields() {
    let mut w = Worker::new(8);
    let key = w.open(at(0), 0, None);
    let peer = &mut w.conns.get_mut(key).unwrap().peer;
    peer.input = 3 * BUDGET;
    peer.takes_echo = true;
    w.drive(key, at(0));
    assert_eq!(BUDGET, 64 * 1024);
    assert_eq!(w.counters.tcp.bytes_in, 64 * 1024);
    assert!(w.conns.has_queued(), "yielded with input left");
}

#[test]
fn every_connection_queued_at_the_start_of_a_turn_is_driven_in_it() {
    let mut w = Worker::new(8);
    let now = at(1);
    let keys = [
        w.open(now, 1, None),
        w.open(now, 1, None),
        w.open(now, 1, None),
    ];
    for key in keys {
        w.drive(key, now);
    }
    w.driven.clear();
    w.serve_run_queue(now);
    assert_eq!(w.driven, keys, "in the order they yielded");
    assert!(!w.conns.has_queued());
}

#[test]
fn next_insert_takes_the_vacant_key_also_in_a_reused_slot() {
    let mut w = Worker::new(8);
    for _ in 0..3 {
        let vacant = w.conns.vacant_key();
        assert_eq!(w.open(at(0), 0, None), vacant);
    }
    assert_eq!(w.conns.len(), 3);
    w.conns.release(1, drop);
    assert_eq!(w.conns.len(), 2);
    assert_eq!(w.conns.vacant_key(), 1);
    assert_eq!(w.open(at(0), 0, None), 1);
    assert_eq!(w.conns.vacant_key(), 3);
}

#[test]
fn connection_rescheduled_for_the_same_deadline_adds_no_timer_entry() {
    let mut w = Worker::new(8);
    let key = w.open(at(0), 0, Some(at(10)));
    for _ in 0..3 {
        w.conns.schedule(key);
    }
    assert_eq!(w.conns.timers.len(), 1);
    w.conns.get_mut(key).unwrap().deadline = Some(at(11));
    w.conns.schedule(key);
    assert_eq!(
        w.conns.timers.len(),
        1,
        "a later deadline waits for the earlier"
    );
}

#[test]
fn stale_timers_up_to_twice_the_connections_plus_1024_are_left_alone() {
    let mut w = Worker::new(8);
    let key = w.open(at(0), 0, None);
    let limit = 2 + 1024;
    for i in 0..limit {
        w.conns.get_mut(key).unwrap().deadline = Some(at(1_000_000 - i as u64));
        w.conns.schedule(key);
    }
    w.fire_timers(at(1));
    assert_eq!(w.conns.timers.len(), limit, "at the bound: not compacted");
    w.conns.get_mut(key).unwrap().deadline = Some(at(1));
    w.conns.schedule(key);
    w.conns.get_mut(key).unwrap().after = Some(at(2));
    w.fire_timers(at(1));
    assert_eq!(w.times_driven(key), 1);
    // Fired (its entry popped) and rescheduled: one over the bound.
    assert_eq!(w.conns.timers.len(), 1, "over it: compacted");
}

/// A backend connection that does not say otherwise.
struct Plain(Pump<SessionStorage>);

impl Tracked for Plain {
    fn pump(&mut self) -> &mut Pump<SessionStorage> {
        &mut self.0
    }
    fn deadline(&self) -> Option<Instant> {
        None
    }
    fn set_reset_on_close(&self) {}
    fn kind(&self) -> StreamKind {
        StreamKind::Tcp
    }
}

#[test]
fn backend_connection_is_live_unless_its_backend_says_otherwise() {
    let storage = SessionStorage::new(64);
    let conn = Plain(Pump::new(storage, SessionConfig::default(), at(0)));
    assert!(conn.is_live(), "the epoll worker's connections rely on it");
}
