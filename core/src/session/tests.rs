//! Session unit tests, named `<state>_<event>_<outcome>`.

use super::*;

const T0: Instant = Instant::from_micros(1_000_000);

fn cfg(mode: Mode) -> SessionConfig {
    SessionConfig {
        mode,
        idle_timeout: Some(Duration::from_secs(10)),
        drain_timeout: Some(Duration::from_secs(5)),
    }
}

fn at(ms: u64) -> Instant {
    T0 + Duration::from_millis(ms)
}

/// Copies `data` into the session as far as it accepts; returns bytes taken.
fn feed<const N: usize>(s: &mut Session<N>, now: Instant, data: &[u8]) -> usize {
    let buf = s.receive_buffer();
    let n = buf.len().min(data.len());
    buf[..n].copy_from_slice(&data[..n]);
    s.commit_received(now, n).unwrap();
    n
}

/// Takes everything pending.
fn drain<const N: usize>(s: &mut Session<N>, now: Instant) -> heapless::Vec<u8, 256> {
    let out = heapless::Vec::from_slice(s.transmit_buffer()).unwrap();
    let n = out.len();
    s.commit_sent(now, n).unwrap();
    out
}

fn events<const N: usize>(s: &mut Session<N>) -> heapless::Vec<Event, 8> {
    let mut v = heapless::Vec::new();
    while let Some(e) = s.poll_event() {
        v.push(e).unwrap();
    }
    v
}

#[test]
fn open_receives_bytes_raw_releases_them_at_once() {
    let mut s = Session::<16>::new(cfg(Mode::Raw), T0);
    assert_eq!(feed(&mut s, T0, b"hello"), 5);
    assert_eq!(s.transmit_buffer(), b"hello");
    assert_eq!(s.stats().bytes_in, 5);
}

#[test]
fn open_short_write_keeps_the_rest_pending() {
    let mut s = Session::<16>::new(cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"abcdef");
    s.commit_sent(T0, 2).unwrap();
    assert_eq!(s.transmit_buffer(), b"cdef");
    s.commit_sent(T0, 4).unwrap();
    assert_eq!(s.transmit_buffer(), b"");
    assert_eq!(s.stats().bytes_out, 6);
}

#[test]
fn open_full_buffer_offers_no_space_until_sent() {
    let mut s = Session::<8>::new(cfg(Mode::Raw), T0);
    assert_eq!(feed(&mut s, T0, b"0123456789"), 8);
    assert!(!s.wants_read());
    assert!(s.receive_buffer().is_empty());
    s.commit_sent(T0, 3).unwrap();
    assert!(s.wants_read());
    assert_eq!(s.receive_buffer().len(), 3, "live bytes moved to the front");
    assert_eq!(s.transmit_buffer(), b"34567");
}

#[test]
fn open_commit_more_than_offered_is_an_error_and_changes_nothing() {
    let mut s = Session::<4>::new(cfg(Mode::Raw), T0);
    assert_eq!(
        s.commit_received(T0, 5),
        Err(CommitError::TooMany { n: 5, available: 4 })
    );
    assert_eq!(
        s.commit_sent(T0, 1),
        Err(CommitError::TooMany { n: 1, available: 0 })
    );
    assert_eq!(s.stats().bytes_in, 0);
}

#[test]
fn open_lines_holds_partial_line_until_newline() {
    let mut s = Session::<32>::new(cfg(Mode::Lines), T0);
    feed(&mut s, T0, b"hel");
    assert_eq!(s.transmit_buffer(), b"");
    feed(&mut s, T0, b"lo\nwor");
    assert_eq!(s.transmit_buffer(), b"hello\n");
    assert_eq!(s.stats().units, 1);
    assert_eq!(drain(&mut s, T0).as_slice(), b"hello\n");
    feed(&mut s, T0, b"ld\n\n");
    assert_eq!(s.transmit_buffer(), b"world\n\n");
    assert_eq!(s.stats().units, 3);
}

#[test]
fn open_lines_line_longer_than_buffer_aborts_with_reason() {
    let mut s = Session::<8>::new(cfg(Mode::Lines), T0);
    feed(&mut s, T0, b"ab\n");
    drain(&mut s, T0);
    feed(&mut s, T0, b"0123456789");
    assert_eq!(
        s.state(),
        State::Aborted(AbortReason::LineTooLong { limit: 8 })
    );
    assert_eq!(
        events(&mut s).as_slice(),
        &[Event::Aborted(AbortReason::LineTooLong { limit: 8 })]
    );
    assert_eq!(s.stats().bytes_discarded, 8);
}

#[test]
fn open_lines_full_buffer_with_pending_line_waits_instead_of_aborting() {
    let mut s = Session::<8>::new(cfg(Mode::Lines), T0);
    // "abc\n" pending (peer not reading) plus a 4-byte partial line: full, not overlong.
    feed(&mut s, T0, b"abc\ndefg");
    assert_eq!(s.state(), State::Open);
    assert!(!s.wants_read());
    s.commit_sent(T0, 4).unwrap();
    assert!(s.wants_read());
    feed(&mut s, T0, b"\n");
    assert_eq!(s.transmit_buffer(), b"defg\n");
}

#[test]
fn open_frames_echoes_only_whole_frames() {
    let mut s = Session::<16>::new(cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x03a");
    assert_eq!(s.transmit_buffer(), b"");
    feed(&mut s, T0, b"bc\x00\x00\x00");
    assert_eq!(s.transmit_buffer(), b"\x00\x03abc\x00\x00");
    assert_eq!(s.stats().units, 2);
}

#[test]
fn open_frames_oversized_header_aborts_before_payload_arrives() {
    let mut s = Session::<16>::new(cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x01x\x01\x00");
    assert_eq!(
        s.state(),
        State::Aborted(AbortReason::FrameTooLarge {
            len: 258,
            limit: 16
        })
    );
    assert_eq!(
        s.transmit_buffer(),
        b"",
        "pending bytes are discarded at an abort"
    );
}

#[test]
fn open_frames_frame_filling_buffer_exactly_is_echoed() {
    let mut s = Session::<6>::new(cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x04abcd");
    assert_eq!(s.transmit_buffer(), b"\x00\x04abcd");
}

#[test]
fn open_receives_fin_with_queue_drains_then_closes() {
    let mut s = Session::<16>::new(cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"data");
    s.handle_peer_fin(at(1));
    assert_eq!(s.state(), State::PeerHalfClosed);
    assert!(!s.wants_read());
    assert!(s.receive_buffer().is_empty());
    s.commit_sent(at(2), 2).unwrap();
    assert_eq!(s.state(), State::PeerHalfClosed);
    s.commit_sent(at(3), 2).unwrap();
    assert_eq!(s.state(), State::Closed);
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
    let mut s = Session::<16>::new(cfg(Mode::Raw), T0);
    s.handle_peer_fin(T0);
    assert_eq!(s.state(), State::Closed);
    assert!(s.is_terminal());
}

#[test]
fn open_lines_receives_fin_echoes_unterminated_last_line() {
    let mut s = Session::<16>::new(cfg(Mode::Lines), T0);
    feed(&mut s, T0, b"a\nlast");
    s.handle_peer_fin(T0);
    assert_eq!(drain(&mut s, T0).as_slice(), b"a\nlast");
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.stats().units, 2);
}

#[test]
fn open_frames_receives_fin_mid_frame_aborts_truncated() {
    let mut s = Session::<16>::new(cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x01a\x00\x05ab");
    s.handle_peer_fin(T0);
    assert_eq!(
        s.state(),
        State::Aborted(AbortReason::TruncatedFrame { received: 4 })
    );
}

#[test]
fn open_receives_reset_aborts_and_discards_pending() {
    let mut s = Session::<16>::new(cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"xyz");
    s.handle_peer_reset(T0);
    assert_eq!(s.state(), State::Aborted(AbortReason::PeerReset));
    assert_eq!(s.stats().bytes_discarded, 3);
    assert!(s.transmit_buffer().is_empty());
    assert_eq!(s.poll_timeout(), None);
}

#[test]
fn open_idle_for_timeout_closes_gracefully() {
    let mut s = Session::<16>::new(cfg(Mode::Raw), T0);
    assert_eq!(s.poll_timeout(), Some(at(10_000)));
    s.handle_timeout(at(9_999));
    assert_eq!(s.state(), State::Open, "early timeout does nothing");
    s.handle_timeout(at(10_000));
    assert_eq!(s.state(), State::Closed);
    assert_eq!(
        events(&mut s).as_slice(),
        &[Event::Closed(CloseReason::IdleTimeout)]
    );
}

#[test]
fn open_traffic_pushes_idle_deadline_back() {
    let mut s = Session::<16>::new(cfg(Mode::Raw), T0);
    feed(&mut s, at(4_000), b"x");
    drain(&mut s, at(5_000));
    assert_eq!(s.poll_timeout(), Some(at(15_000)));
}

#[test]
fn open_pending_and_peer_not_reading_aborts_on_drain_timeout() {
    let mut s = Session::<16>::new(cfg(Mode::Raw), T0);
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
    let mut s = Session::<16>::new(cfg(Mode::Lines), T0);
    feed(&mut s, T0, b"part");
    s.handle_timeout(at(10_000));
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.stats().bytes_discarded, 4);
}

#[test]
fn open_local_close_echoes_queue_then_closes() {
    let mut s = Session::<16>::new(cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"abc");
    s.close(T0);
    assert_eq!(s.state(), State::Closing);
    assert!(s.receive_buffer().is_empty());
    assert_eq!(drain(&mut s, T0).as_slice(), b"abc");
    assert_eq!(s.state(), State::Closed);
    assert_eq!(
        events(&mut s).as_slice(),
        &[Event::Closed(CloseReason::Local)]
    );
}

#[test]
fn closing_peer_never_reads_aborts_on_drain_timeout() {
    let mut s = Session::<16>::new(cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"abc");
    s.close(T0);
    s.handle_timeout(at(5_000));
    assert_eq!(s.state(), State::Aborted(AbortReason::DrainTimeout));
}

#[test]
fn closed_ignores_further_input_and_timeouts() {
    let mut s = Session::<16>::new(cfg(Mode::Raw), T0);
    s.handle_peer_fin(T0);
    events(&mut s);
    assert_eq!(
        s.commit_received(T0, 1),
        Err(CommitError::TooMany { n: 1, available: 0 })
    );
    s.handle_timeout(at(100_000));
    s.handle_peer_reset(T0);
    s.abort(T0);
    assert_eq!(s.state(), State::Closed);
    assert_eq!(s.poll_event(), None);
}

#[test]
fn aborted_local_abort_is_reported_once() {
    let mut s = Session::<16>::new(cfg(Mode::Raw), T0);
    s.abort(T0);
    s.abort(T0);
    assert_eq!(
        events(&mut s).as_slice(),
        &[Event::Aborted(AbortReason::Local)]
    );
}

#[test]
fn open_time_going_backwards_is_clamped() {
    let mut s = Session::<16>::new(cfg(Mode::Raw), at(5_000));
    feed(&mut s, at(5_000), b"x");
    drain(&mut s, at(1_000));
    assert_eq!(s.poll_timeout(), Some(at(15_000)));
}

#[test]
fn reset_rearms_a_used_session() {
    let mut s = Session::<16>::new(cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"abc");
    s.handle_peer_reset(T0);
    s.reset(cfg(Mode::Lines), at(1));
    assert_eq!(s.state(), State::Open);
    assert_eq!(*s.stats(), SessionStats::default());
    assert_eq!(s.receive_buffer().len(), 16);
    assert_eq!(s.poll_event(), None);
}

#[test]
fn reasons_display_clear_messages() {
    use std::string::ToString;
    assert_eq!(
        AbortReason::FrameTooLarge {
            len: 70000,
            limit: 4096
        }
        .to_string(),
        "frame of 70000 bytes exceeds the 4096-byte buffer"
    );
    assert_eq!(
        Event::Closed(CloseReason::IdleTimeout).to_string(),
        "closed: idle timeout"
    );
}
