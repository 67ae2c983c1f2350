//! Session unit tests, named `<state>_<event>_<outcome>`.

use super::*;

const T0: Instant = Instant::from_micros(1_000_000);

fn cfg(mode: Mode) -> SessionConfig {
    SessionConfig {
        mode,
        idle_timeout: Some(Duration::from_secs(10)),
        drain_timeout: Some(Duration::from_secs(5)),
        linger: Duration::from_secs(2),
    }
}

fn at(ms: u64) -> Instant {
    T0 + Duration::from_millis(ms)
}

/// Copies `data` into the session as far as it accepts; returns bytes taken.
fn feed<S: AsRef<[u8]> + AsMut<[u8]>>(s: &mut Session<S>, now: Instant, data: &[u8]) -> usize {
    let buf = s.receive_buffer();
    let n = buf.len().min(data.len());
    buf[..n].copy_from_slice(&data[..n]);
    s.commit_received(now, n).unwrap();
    n
}

/// Takes everything pending.
fn drain<S: AsRef<[u8]> + AsMut<[u8]>>(s: &mut Session<S>, now: Instant) -> heapless::Vec<u8, 256> {
    let out = heapless::Vec::from_slice(s.transmit_buffer()).unwrap();
    let n = out.len();
    s.commit_sent(now, n).unwrap();
    out
}

fn events<S: AsRef<[u8]> + AsMut<[u8]>>(s: &mut Session<S>) -> heapless::Vec<Event, 8> {
    let mut v = heapless::Vec::new();
    while let Some(e) = s.poll_event() {
        v.push(e).unwrap();
    }
    v
}

#[test]
fn open_receives_bytes_raw_releases_them_at_once() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    assert_eq!(feed(&mut s, T0, b"hello"), 5);
    assert_eq!(s.transmit_buffer(), b"hello");
    assert_eq!(s.stats().bytes_in, 5);
}

#[test]
fn open_storage_is_offered_back_only_while_no_byte_is_pending_or_held() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Lines), T0);
    assert!(s.idle_storage_mut().is_some(), "fresh: nothing held");
    feed(&mut s, T0, b"one\ntw");
    assert!(s.idle_storage_mut().is_none(), "a line pending");
    assert_eq!(&drain(&mut s, T0)[..], b"one\n");
    assert!(s.idle_storage_mut().is_none(), "a partial line held");
    feed(&mut s, T0, b"o\n");
    assert_eq!(&drain(&mut s, T0)[..], b"two\n");
    // Its contents mean nothing now: a caller may swap them.
    s.idle_storage_mut().unwrap().fill(0xAA);
    feed(&mut s, T0, b"3\n");
    assert_eq!(&drain(&mut s, T0)[..], b"3\n");
}

#[test]
fn open_reports_its_capacity_and_debug_shows_state_not_bytes() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"secret");
    assert_eq!(s.capacity(), 16);
    let debug = std::format!("{s:?}");
    assert!(
        debug.starts_with("Session { capacity: 16, state: Open, stats: "),
        "{debug}"
    );
    assert!(debug.contains("bytes_in: 6"), "{debug}");
    assert!(!debug.contains("115"), "the bytes are not logged: {debug}");
}

#[test]
fn open_short_write_keeps_the_rest_pending() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"abcdef");
    s.commit_sent(T0, 2).unwrap();
    assert_eq!(s.transmit_buffer(), b"cdef");
    s.commit_sent(T0, 4).unwrap();
    assert_eq!(s.transmit_buffer(), b"");
    assert_eq!(s.stats().bytes_out, 6);
}

#[test]
fn open_full_buffer_offers_no_space_until_half_is_sent() {
    let mut s = Session::new([0u8; 8], cfg(Mode::Raw), T0);
    assert_eq!(feed(&mut s, T0, b"0123456789"), 8);
    assert!(!s.wants_read());
    assert!(s.receive_buffer().is_empty());
    s.commit_sent(T0, 3).unwrap();
    assert!(
        !s.wants_read(),
        "3 bytes freed, 5 live: moving them is not paid for"
    );
    assert!(s.receive_buffer().is_empty());
    s.commit_sent(T0, 1).unwrap();
    assert!(s.wants_read());
    assert_eq!(s.receive_buffer().len(), 4, "live bytes moved to the front");
    assert_eq!(s.transmit_buffer(), b"4567");
    assert_eq!(s.stats().bytes_moved, 4);
}

#[test]
fn open_commit_more_than_offered_is_an_error_and_changes_nothing() {
    let mut s = Session::new([0u8; 4], cfg(Mode::Raw), T0);
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
    let mut s = Session::new([0u8; 32], cfg(Mode::Lines), T0);
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
    let mut s = Session::new([0u8; 8], cfg(Mode::Lines), T0);
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
fn open_lines_long_line_in_small_reads_scans_each_byte_once() {
    // A line as long as a large --buffer-size, arriving a segment at a
    // time: the held part has no newline, so only the new bytes need a
    // look. Scanning all that is held on every read made one 16 MiB line
    // cost the server seconds of CPU (quadratic in the line's length).
    const LINE: usize = 1 << 20;
    let mut s = Session::new(std::vec![0u8; LINE], cfg(Mode::Lines), T0);
    let mut line = std::vec![b'x'; LINE];
    line[LINE - 1] = b'\n';
    crate::lines::SCANNED.with(|n| n.set(0));
    for piece in line.chunks(1448) {
        assert_eq!(feed(&mut s, T0, piece), piece.len());
    }
    assert_eq!(s.transmit_buffer(), line.as_slice());
    assert_eq!(s.stats().units, 1);
    let scanned = crate::lines::SCANNED.with(|n| n.get());
    assert!(
        scanned <= LINE as u64,
        "{scanned} bytes scanned for newlines in a {LINE}-byte line"
    );
}

#[test]
fn open_lines_full_buffer_with_pending_line_waits_instead_of_aborting() {
    let mut s = Session::new([0u8; 8], cfg(Mode::Lines), T0);
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
    let mut s = Session::new([0u8; 16], cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x03a");
    assert_eq!(s.transmit_buffer(), b"");
    feed(&mut s, T0, b"bc\x00\x00\x00");
    assert_eq!(s.transmit_buffer(), b"\x00\x03abc\x00\x00");
    assert_eq!(s.stats().units, 2);
}

#[test]
fn open_frames_oversized_header_aborts_before_payload_arrives() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x01\x00");
    assert_eq!(
        s.state(),
        State::Aborted(AbortReason::FrameTooLarge {
            len: 258,
            limit: 16
        })
    );
    assert_eq!(s.stats().bytes_discarded, 2);
}

#[test]
fn open_frames_oversized_header_behind_whole_frames_echoes_them_then_aborts() {
    // Regression: the whole frame read together with the bad header was
    // discarded, though it is echoed when it arrives in a read of its own:
    // what came back depended on how the stream was split into reads.
    let mut s = Session::new([0u8; 16], cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x01x\x01\x00");
    assert_eq!(s.state(), State::Open);
    assert_eq!(s.transmit_buffer(), b"\x00\x01x");
    s.commit_sent(at(1), 1).unwrap();
    assert_eq!(
        s.state(),
        State::Open,
        "aborts only once the frame was sent"
    );
    s.commit_sent(at(2), 2).unwrap();
    let too_large = AbortReason::FrameTooLarge {
        len: 258,
        limit: 16,
    };
    assert_eq!(s.state(), State::Aborted(too_large));
    assert_eq!(s.stats().units, 1);
    assert_eq!(s.stats().bytes_out, 3);
    assert_eq!(s.stats().bytes_discarded, 2, "the bad header");
    assert_eq!(events(&mut s).as_slice(), &[Event::Aborted(too_large)]);
}

#[test]
fn open_frames_fin_behind_an_oversized_header_echoes_unsent_frames_then_aborts_as_too_large() {
    // Regression: the FIN aborted at once and the whole frame before the
    // bad header, not yet sent, was discarded.
    let mut s = Session::new([0u8; 16], cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x01x\x01\x00");
    s.handle_peer_fin(at(1));
    assert_eq!(s.state(), State::Open, "the frame is still to be sent");
    assert_eq!(drain(&mut s, at(2)).as_slice(), b"\x00\x01x");
    assert_eq!(
        s.state(),
        State::Aborted(AbortReason::FrameTooLarge {
            len: 258,
            limit: 16
        }),
        "the header is the cause, not the FIN"
    );
    assert_eq!(s.stats().bytes_discarded, 2);
}

#[test]
fn open_frames_oversized_header_in_a_later_read_waits_for_unsent_frames() {
    // Regression: a bad header read while the frames before it were still
    // pending (a short write, a full socket) aborted at once and discarded
    // them; read in one piece with them, they were echoed first.
    let mut s = Session::new([0u8; 16], cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x01a");
    feed(&mut s, at(1), b"\x00\x20");
    assert_eq!(s.state(), State::Open);
    assert_eq!(s.transmit_buffer(), b"\x00\x01a");
    s.commit_sent(at(2), 1).unwrap();
    assert_eq!(
        s.state(),
        State::Open,
        "aborts only once the frame was sent"
    );
    s.commit_sent(at(3), 2).unwrap();
    assert_eq!(
        s.state(),
        State::Aborted(AbortReason::FrameTooLarge { len: 34, limit: 16 })
    );
    assert_eq!((s.stats().bytes_out, s.stats().bytes_discarded), (3, 2));
}

#[test]
fn open_frames_fin_inside_a_frame_behind_unsent_frames_echoes_them_then_aborts_truncated() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x01x\x00\x05ab");
    s.handle_peer_fin(at(1));
    assert_eq!(s.state(), State::Open);
    assert!(s.peer_finished());
    assert_eq!(s.receive_buffer().len(), 0, "no input after the FIN");
    assert_eq!(drain(&mut s, at(2)).as_slice(), b"\x00\x01x");
    assert_eq!(
        s.state(),
        State::Aborted(AbortReason::TruncatedFrame { received: 4 })
    );
    assert_eq!(
        events(&mut s).as_slice(),
        &[Event::Aborted(AbortReason::TruncatedFrame { received: 4 })]
    );
}

#[test]
fn open_lines_line_filling_the_buffer_without_newline_aborts_even_before_a_fin() {
    // The documented limit: a line and its newline must fit the buffer;
    // the session cannot tell a last line from one that goes on.
    let mut s = Session::new([0u8; 8], cfg(Mode::Lines), T0);
    feed(&mut s, T0, b"12345678");
    assert_eq!(
        s.state(),
        State::Aborted(AbortReason::LineTooLong { limit: 8 })
    );
    let mut s = Session::new([0u8; 8], cfg(Mode::Lines), T0);
    feed(&mut s, T0, b"1234567");
    s.handle_peer_fin(at(1));
    assert_eq!(drain(&mut s, at(2)).as_slice(), b"1234567");
    assert_eq!(s.state(), State::Closed(CloseReason::PeerFinished));
}

#[test]
fn open_frames_oversized_header_behind_unsent_frames_still_drain_times_out() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x01x\x01\x00");
    s.handle_timeout(at(5_000));
    assert_eq!(s.state(), State::Aborted(AbortReason::DrainTimeout));
    assert_eq!(s.stats().bytes_discarded, 5);
}

#[test]
fn open_frames_frame_filling_buffer_exactly_is_echoed() {
    let mut s = Session::new([0u8; 6], cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x04abcd");
    assert_eq!(s.transmit_buffer(), b"\x00\x04abcd");
}

#[test]
fn open_frames_two_byte_storage_echoes_empty_frames_one_byte_aborts() {
    let mut s = Session::new([0u8; 2], cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x00");
    assert_eq!(s.transmit_buffer(), b"\x00\x00", "the documented minimum");
    let mut s = Session::new([0u8; 1], cfg(Mode::Frames), T0);
    feed(&mut s, T0, b"\x00\x00");
    assert_eq!(
        s.state(),
        State::Aborted(AbortReason::FrameTooLarge { len: 2, limit: 1 }),
        "a header that cannot fit must not wait forever"
    );
}

#[test]
#[should_panic(expected = "empty storage")]
#[cfg(debug_assertions)]
fn new_over_empty_storage_panics_in_debug_builds() {
    let _ = Session::new([0u8; 0], cfg(Mode::Raw), T0);
}

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
fn open_time_going_backwards_is_clamped() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), at(5_000));
    feed(&mut s, at(5_000), b"x");
    drain(&mut s, at(1_000));
    assert_eq!(s.poll_timeout(), Some(at(15_000)));
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
    // Also said of a 64-byte line without its newline (a last line
    // before the FIN): it is the newline that does not fit.
    assert_eq!(
        AbortReason::LineTooLong { limit: 64 }.to_string(),
        "line longer than the 64-byte buffer (its \\n included)"
    );
    assert_eq!(
        Event::Closed(CloseReason::IdleTimeout).to_string(),
        "closed: idle timeout"
    );
}

#[test]
fn commit_error_messages_name_the_counts_and_the_refusal() {
    use std::string::ToString;
    assert_eq!(
        CommitError::TooMany { n: 9, available: 4 }.to_string(),
        "committed 9 bytes but only 4 were offered"
    );
    assert_eq!(
        CommitError::NoPassThrough.to_string(),
        "committed bytes as passed through while the session holds bytes or is not an open raw session"
    );
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
fn open_one_byte_echo_through_a_full_buffer_moves_a_bounded_number_of_bytes() {
    // Regression: with the buffer full, every byte sent moved all live
    // bytes: 100 bytes echoed one at a time moved 102,300 bytes.
    let mut s = Session::new([0u8; 1024], cfg(Mode::Raw), T0);
    assert_eq!(feed(&mut s, T0, &[7u8; 1024]), 1024);
    for i in 0..100 {
        s.commit_sent(T0, 1).unwrap();
        feed(&mut s, T0, &[i as u8]);
    }
    let st = s.stats();
    assert!(
        st.bytes_moved <= 1024,
        "moved {} bytes for 100 one-byte echoes",
        st.bytes_moved
    );
    assert!(st.bytes_moved <= st.bytes_in + st.bytes_out);
}

#[test]
fn open_slow_reader_acks_do_not_each_move_the_buffer() {
    // A 64 KiB buffer drained 1,400 bytes per acknowledgement while the
    // peer keeps sending: the moves stay proportional to the bytes freed.
    let mut s = Session::new(std::vec![0u8; 65536], cfg(Mode::Raw), T0);
    let chunk = [0x55u8; 1400];
    let mut fed = 0;
    while fed < 65536 {
        fed += feed(&mut s, T0, &chunk);
    }
    for _ in 0..1000 {
        s.commit_sent(T0, 1400.min(s.transmit_buffer().len()))
            .unwrap();
        feed(&mut s, T0, &chunk);
    }
    let st = s.stats();
    assert!(
        st.bytes_moved <= st.bytes_out,
        "moved {} for {} sent",
        st.bytes_moved,
        st.bytes_out
    );
}

#[test]
fn open_lines_held_line_after_sent_bytes_moves_once_and_completes() {
    let mut s = Session::new([0u8; 8], cfg(Mode::Lines), T0);
    feed(
        &mut s, T0, b"a
bcdef",
    );
    drain(&mut s, T0);
    // "bcdef" is held at offset 2, nothing pending, 1 byte free at the end.
    assert_eq!(feed(&mut s, T0, b"gh"), 1, "the free end is used first");
    assert_eq!(s.stats().bytes_moved, 0);
    // Now full with nothing pending: the held line moves once to make room.
    assert_eq!(feed(&mut s, T0, b"h"), 1);
    assert_eq!(s.stats().bytes_moved, 6);
    feed(&mut s, T0, b"\n");
    assert_eq!(drain(&mut s, T0).as_slice(), b"bcdefgh\n");
}

#[test]
fn open_frames_largest_frame_echoes_with_storage_sized_for_it() {
    // 2 + 65535 bytes: no fixed menu size held it before.
    let mut s = Session::new(std::vec![0u8; 70_000], cfg(Mode::Frames), T0);
    let mut frame = std::vec![0xffu8, 0xff];
    frame.extend((0..65535u32).map(|i| i as u8));
    assert_eq!(feed(&mut s, T0, &frame), 65537);
    assert_eq!(s.transmit_buffer(), frame.as_slice());
    assert_eq!(s.stats().units, 1);
}

#[test]
fn open_frames_largest_frame_in_a_64k_buffer_aborts_too_large() {
    let mut s = Session::new(std::vec![0u8; 65536], cfg(Mode::Frames), T0);
    feed(&mut s, T0, &[0xff, 0xff, 1, 2]);
    assert_eq!(
        s.state(),
        State::Aborted(AbortReason::FrameTooLarge {
            len: 65537,
            limit: 65536
        })
    );
}

#[test]
fn open_transport_timeout_aborts_timed_out() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    s.handle_transport_timeout(T0);
    assert_eq!(s.state(), State::Aborted(AbortReason::TimedOut));
}

#[test]
fn open_raw_with_nothing_held_passes_input_through_and_counts_it_both_ways() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    assert!(s.can_pass_through());
    assert_eq!(s.commit_passed_through(at(3_000), 1_000), Ok(()));
    let stats = s.stats();
    assert_eq!((stats.bytes_in, stats.bytes_out), (1_000, 1_000));
    assert_eq!(s.buffered(), 0, "the buffer is not touched");
    // Activity: the idle deadline moved with it.
    assert_eq!(s.poll_timeout(), Some(at(13_000)));
}

#[test]
fn open_raw_with_bytes_pending_refuses_pass_through_so_order_is_kept() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    feed(&mut s, T0, b"abc");
    assert!(!s.can_pass_through(), "older bytes wait in the buffer");
    assert_eq!(
        s.commit_passed_through(T0, 1),
        Err(CommitError::NoPassThrough)
    );
    assert_eq!(s.stats().bytes_in, 3, "the refused commit changed nothing");
    assert_eq!(drain(&mut s, T0).as_slice(), b"abc");
    assert!(s.can_pass_through());
}

#[test]
fn lines_frames_half_closed_and_closing_never_pass_through() {
    for mode in [Mode::Lines, Mode::Frames] {
        let s = Session::new([0u8; 16], cfg(mode), T0);
        assert!(
            !s.can_pass_through(),
            "{mode:?}: the mode decides what is echoed"
        );
    }
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    s.handle_peer_fin(T0);
    assert!(!s.can_pass_through(), "after the peer's FIN");
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), T0);
    s.close(T0);
    assert!(!s.can_pass_through(), "closing");
    assert_eq!(
        s.commit_passed_through(T0, 0),
        Ok(()),
        "nothing is always fine"
    );
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
