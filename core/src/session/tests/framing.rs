//! `lines` and `frames`: whole units echoed, partial ones held, and
//! overlong ones aborted after the whole units before them.

use super::*;

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
