//! The session's buffer: raw echo, short writes, backpressure, commits,
//! pass-through, bounded moves, and the messages it shows.

use super::*;

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
fn open_time_going_backwards_is_clamped() {
    let mut s = Session::new([0u8; 16], cfg(Mode::Raw), at(5_000));
    feed(&mut s, at(5_000), b"x");
    drain(&mut s, at(1_000));
    assert_eq!(s.poll_timeout(), Some(at(15_000)));
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
