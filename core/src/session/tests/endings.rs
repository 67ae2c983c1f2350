//! How a session ends: the peer's FIN or reset, idle and drain timeouts,
//! a local close or abort, lost output, and reuse after the end.

use super::*;

#[test]
fn open_receives_fin_with_queue_drains_then_closes() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"data");
    s.handle_peer_fin(at(1));
    assert_eq!(s.state(), State::PeerHalfClosed);
    assert!(!s.wants_read());
    assert!(s.receive_buffer().is_empty());
    s.commit_sent(at(2), 2).unwrap();
    assert_eq!(s.state(), State::PeerHalfClosed);
    s.commit_sent(at(3), 2).unwrap();
    assert_eq!(s.state(), State::Closed(CloseReason::PeerFinished));
    assert_eq!(
        events(&mut s).as_slice(),
        &[
            Event::PeerFinished,
            Event::Closed(CloseReason::PeerFinished)
        ]
    );
}

#[test]
fn open_receives_fin_with_empty_queue_closes_at_once() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    s.handle_peer_fin(T0);
    assert_eq!(s.state(), State::Closed(CloseReason::PeerFinished));
    assert!(s.is_terminal());
}

#[test]
fn open_lines_receives_fin_echoes_unterminated_last_line() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Lines), T0);
    feed(&mut s, T0, b"a\nlast");
    s.handle_peer_fin(T0);
    assert_eq!(drain(&mut s, T0).as_slice(), b"a\nlast");
    assert_eq!(s.state(), State::Closed(CloseReason::PeerFinished));
    assert_eq!(s.stats().units, 2);
}

#[test]
fn open_frames_receives_fin_mid_frame_with_nothing_pending_aborts_truncated() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x01a");
    drain(&mut s, T0);
    feed(&mut s, T0, b"\x00\x05ab");
    s.handle_peer_fin(T0);
    assert_eq!(
        s.state(),
        State::Aborted(AbortReason::TruncatedFrame { received: 4 })
    );
}

#[test]
fn open_receives_reset_aborts_and_discards_pending() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"xyz");
    s.handle_peer_reset(T0);
    assert_eq!(s.state(), State::Aborted(AbortReason::PeerReset));
    assert_eq!(s.stats().bytes_discarded, 3);
    assert!(s.transmit_buffer().is_empty());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn open_idle_for_timeout_closes_gracefully() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    assert_eq!(s.poll_timeout(), Some(at(10_000)));
    s.handle_timeout(at(9_999));
    assert_eq!(s.state(), State::Open, "early timeout does nothing");
    s.handle_timeout(at(10_000));
    assert_eq!(s.state(), State::Closed(CloseReason::IdleTimeout));
    assert_eq!(
        events(&mut s).as_slice(),
        &[Event::Closed(CloseReason::IdleTimeout)]
    );
}

/// A shutdown's quiet close: the idle timeout shortened to `quiet` (a
/// shorter one kept), closing as the server's own close (`Local`), so a
/// held line is echoed; a re-armed session forgets it.
#[cfg(feature = "shutdown")]
#[test]
fn open_close_when_quiet_closes_as_local_once_quiet_and_reset_forgets_it() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Lines), T0);
    feed(&mut s, T0, b"held");
    s.close_when_quiet(Duration::from_millis(250));
    assert_eq!(s.poll_timeout(), Some(at(250)));
    s.handle_timeout(at(250));
    assert_eq!(s.transmit_buffer(), b"held", "the held line goes out");
    let _ = s.commit_sent(at(250), 4);
    assert_eq!(s.state(), State::Closed(CloseReason::Local));
    s.reset(cfg(Mode::Raw), at(300));
    assert_eq!(
        s.poll_timeout(),
        Some(at(10_300)),
        "the configured idle timeout"
    );
    s.handle_timeout(at(10_300));
    assert_eq!(s.state(), State::Closed(CloseReason::IdleTimeout));
    let mut short = cfg(Mode::Raw);
    short.idle_timeout = Some(Duration::from_millis(100));
    let mut s = Session::new([0u8; 16], short, T0);
    s.close_when_quiet(Duration::from_millis(250));
    assert_eq!(
        s.poll_timeout(),
        Some(at(100)),
        "a shorter idle timeout stays"
    );
}

#[test]
fn open_traffic_pushes_idle_deadline_back() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    feed(&mut s, at(4_000), b"x");
    drain(&mut s, at(5_000));
    assert_eq!(s.poll_timeout(), Some(at(15_000)));
}

#[test]
fn open_pending_and_peer_not_reading_aborts_on_drain_timeout() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    feed(&mut s, at(1_000), b"stuck");
    assert_eq!(
        s.poll_timeout(),
        Some(at(6_000)),
        "drain deadline, not idle"
    );
    s.commit_sent(at(3_000), 1).unwrap();
    assert_eq!(
        s.poll_timeout(),
        Some(at(8_000)),
        "progress restarts the drain clock"
    );
    s.handle_timeout(at(8_000));
    assert_eq!(s.state(), State::Aborted(AbortReason::DrainTimeout));
}

#[test]
fn open_lines_idle_with_partial_line_closes_and_counts_discarded() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Lines), T0);
    feed(&mut s, T0, b"part");
    s.handle_timeout(at(10_000));
    assert_eq!(s.state(), State::Closed(CloseReason::IdleTimeout));
    assert_eq!(s.stats().bytes_discarded, 4);
}

#[test]
fn open_local_close_echoes_queue_then_closes() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"abc");
    s.close(T0);
    assert_eq!(s.state(), State::Closing);
    assert!(s.receive_buffer().is_empty());
    assert_eq!(drain(&mut s, T0).as_slice(), b"abc");
    assert_eq!(s.state(), State::Closed(CloseReason::Local));
    assert_eq!(
        events(&mut s).as_slice(),
        &[Event::Closed(CloseReason::Local)]
    );
}

#[test]
fn open_lines_local_close_counts_an_echoed_remainder_as_one_unit() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Lines), T0);
    feed(&mut s, T0, b"one\ntw");
    s.close(T0);
    assert_eq!(drain(&mut s, T0).as_slice(), b"one\ntw");
    assert_eq!(s.stats().units, 2, "the line and the remainder");
    // With no remainder, the close adds no unit.
    let mut s = Session::new([0u8; 16], cfg(Mode::Lines), T0);
    feed(&mut s, T0, b"one\n");
    s.close(T0);
    assert_eq!(drain(&mut s, T0).as_slice(), b"one\n");
    assert_eq!(s.stats().units, 1);
    assert_eq!(s.state(), State::Closed(CloseReason::Local));
}

#[test]
fn closing_peer_never_reads_aborts_on_drain_timeout() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"abc");
    s.close(T0);
    s.handle_timeout(at(5_000));
    assert_eq!(s.state(), State::Aborted(AbortReason::DrainTimeout));
}

#[test]
fn closed_ignores_further_input_and_timeouts() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    s.handle_peer_fin(T0);
    events(&mut s);
    assert_eq!(
        s.commit_received(T0, 1),
        Err(CommitError::TooMany { n: 1, available: 0 })
    );
    s.handle_timeout(at(100_000));
    s.handle_peer_reset(T0);
    s.abort(T0);
    assert_eq!(s.state(), State::Closed(CloseReason::PeerFinished));
    assert_eq!(s.poll_event(), None);
}

#[test]
fn aborted_local_abort_is_reported_once() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    s.abort(T0);
    s.abort(T0);
    assert_eq!(
        events(&mut s).as_slice(),
        &[Event::Aborted(AbortReason::Local)]
    );
}

#[test]
fn reset_rearms_a_used_session() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"abc");
    s.handle_peer_reset(T0);
    s.reset(cfg(Mode::Lines), at(1));
    assert_eq!(s.state(), State::Open);
    assert_eq!(s.stats(), SessionStats::default());
    assert_eq!(s.receive_buffer().len(), 16);
    assert_eq!(s.poll_event(), None);
}

#[test]
fn open_reset_with_bytes_pending_forgets_them_and_their_moves() {
    let mut s = Session::new([0u8; 8], cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"01234567");
    s.commit_sent(T0, 4).unwrap();
    assert_eq!(feed(&mut s, T0, b"89ab"), 4, "half sent: the rest moved");
    assert_eq!(s.stats().bytes_moved, 4);
    s.reset(cfg(Mode::Raw), at(1));
    assert!(
        s.transmit_buffer().is_empty(),
        "no echo of the old connection"
    );
    assert_eq!(s.buffered(), 0);
    assert_eq!(s.stats(), SessionStats::default());
    assert_eq!(s.receive_buffer().len(), 8);
}

#[test]
fn closing_repeated_peer_fin_loses_no_terminal_event() {
    // Regression: `handle_peer_fin` in `Closing` pushed a `PeerFinished`
    // per call into a 4-slot queue that then dropped `Closed(Local)`.
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"abc");
    s.close(T0);
    for _ in 0..5 {
        s.handle_peer_fin(T0);
    }
    assert_eq!(
        s.state(),
        State::Closing,
        "FIN outside Open changes nothing"
    );
    assert!(s.peer_finished());
    drain(&mut s, T0);
    assert_eq!(
        events(&mut s).as_slice(),
        &[Event::Closed(CloseReason::Local)]
    );
}

#[test]
fn half_closed_repeated_peer_fin_reports_it_once() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"abc");
    for _ in 0..5 {
        s.handle_peer_fin(T0);
    }
    drain(&mut s, T0);
    assert_eq!(
        events(&mut s).as_slice(),
        &[
            Event::PeerFinished,
            Event::Closed(CloseReason::PeerFinished)
        ]
    );
}

#[test]
fn terminal_event_survives_an_adapter_that_polls_late() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    s.handle_peer_fin(T0);
    s.handle_peer_reset(T0);
    s.abort(T0);
    s.close(T0);
    s.handle_timeout(at(100_000));
    assert_eq!(
        events(&mut s).as_slice(),
        &[
            Event::PeerFinished,
            Event::Closed(CloseReason::PeerFinished)
        ]
    );
}

#[test]
fn open_transport_timeout_aborts_timed_out() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    s.handle_transport_timeout(T0);
    assert_eq!(s.state(), State::Aborted(AbortReason::TimedOut));
}

#[test]
fn closed_output_lost_becomes_aborted_by_the_peer_and_reports_it() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Lines), T0);
    feed(&mut s, T0, b"held");
    s.handle_peer_fin(at(1));
    assert_eq!(drain(&mut s, at(2)).as_slice(), b"held");
    assert_eq!(s.state(), State::Closed(CloseReason::PeerFinished));
    assert_eq!(
        events(&mut s).as_slice(),
        [
            Event::PeerFinished,
            Event::Closed(CloseReason::PeerFinished)
        ]
    );
    assert_eq!(s.handle_output_lost(), Some(CloseReason::PeerFinished));
    assert_eq!(s.state(), State::Aborted(AbortReason::PeerReset));
    assert_eq!(
        events(&mut s).as_slice(),
        [Event::Aborted(AbortReason::PeerReset)]
    );
}

#[test]
fn open_or_aborted_output_lost_changes_nothing() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    assert_eq!(s.handle_output_lost(), None);
    assert_eq!(s.state(), State::Open);
    s.abort(at(1));
    assert_eq!(s.handle_output_lost(), None);
    assert_eq!(s.state(), State::Aborted(AbortReason::Local));
}
