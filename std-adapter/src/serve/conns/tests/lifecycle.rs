//! Admission, the drain and the grace period, the worker's exit, and which
//! connections count as live.

use super::*;

#[test]
fn connection_over_the_limit_is_rejected_and_release_makes_room() {
    let mut w = Worker::new(1);
    let peer = crate::serve::conn::Peer::Unix;
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
fn backend_connection_is_live_unless_its_backend_says_otherwise() {
    let storage = SessionStorage::new(64);
    let conn = Plain(Pump::new(storage, SessionConfig::default(), at(0)));
    assert!(conn.is_live(), "the epoll worker's connections rely on it");
}
