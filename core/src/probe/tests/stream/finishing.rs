//! Finishing a stream probe: at a message boundary, mid-message, mid-line
//! or mid-frame, and after everything came back.

use super::*;

#[test]
fn done_receives_eof_is_fine() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(10), 1);
    let echo = send_all(&mut p, T0);
    p.handle_received(T0, &echo).unwrap();
    assert!(p.is_done());
    assert_eq!(p.handle_eof(T0), Ok(()));
}

#[test]
fn finish_mid_message_completes_that_message_only() {
    let mut p = StreamProbe::<8>::new(
        ProbeConfig {
            count: None,
            pattern: Pattern::Stream { window: 15 },
            size: SizeRange::fixed(10),
            ..ProbeConfig::default()
        },
        T0,
    )
    .unwrap();
    let mut buf = [0u8; 15];
    let n = p.fill_transmit(T0, &mut buf); // 1.5 messages
    p.commit_sent(T0, n).unwrap();
    let first = buf[..n].to_vec();
    assert_eq!(first.len(), 15);
    p.finish();
    let (mut at, mut turns) = (0, 0);
    while at < first.len() {
        bounded(&mut turns);
        at += p.handle_received(T0, &first[at..]).unwrap().consumed;
    }
    let rest = send_all(&mut p, T0);
    assert_eq!(rest.len(), 5, "only the second message is completed");
    let (mut at, mut turns) = (0, 0);
    while at < rest.len() {
        bounded(&mut turns);
        at += p.handle_received(T0, &rest[at..]).unwrap().consumed;
    }
    assert!(p.is_done());
}

#[test]
fn finish_now_mid_raw_message_sends_nothing_more_and_verifies_what_was_sent() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(1 << 20), 5);
    let sent = send_all(&mut p, T0);
    assert_eq!(sent.len(), 4096, "a quarter of a 1 MiB message");
    // Half of it came back before the interrupt.
    assert_eq!(echo_back(&mut p, &sent[..2048]), 0);
    assert_eq!(
        p.finish_now(),
        4096,
        "the message now ends at what was sent"
    );
    assert!(send_all(&mut p, T0).is_empty(), "nothing more is sent");
    assert!(!p.is_done(), "half of it is still in flight");
    assert_eq!(echo_back(&mut p, &sent[2048..]), 0, "no round trip");
    assert!(p.is_done());
    assert_eq!(p.handle_eof(T0), Ok(()));
    let s = *p.stats();
    assert_eq!((s.bytes_sent, s.bytes_verified), (4096, 4096));
    assert_eq!(
        (s.messages_sent, s.messages_verified),
        (0, 0),
        "a message cut short is not a message"
    );
}

#[test]
fn finish_now_after_everything_sent_came_back_is_done_at_once() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(10_000), 5);
    let sent = send_all(&mut p, T0);
    echo_back(&mut p, &sent);
    assert_eq!(p.finish_now(), 4096);
    assert!(p.is_done());
    assert!(send_all(&mut p, T0).is_empty());
    assert_eq!(p.stats().messages_verified, 0);
    assert_eq!(p.outstanding(), 0);
}

#[test]
fn finish_now_mid_line_ends_it_with_its_newline_and_keeps_whole_messages() {
    let mut p = stream(
        Mode::Lines,
        Pattern::Stream { window: 1 << 20 },
        SizeRange::fixed(3000),
        10,
    );
    let mut sent = send_all(&mut p, T0); // one whole line, a partial one
    assert_eq!(sent.len(), 4096);
    assert_eq!(p.finish_now(), 1097, "the second line gets its end next");
    let end = send_all(&mut p, T0);
    assert_eq!(end, b"\n");
    assert!(send_all(&mut p, T0).is_empty());
    sent.extend_from_slice(&end);
    assert_eq!(sent.iter().filter(|&&b| b == b'\n').count(), 2);
    assert_eq!(
        echo_back(&mut p, &sent),
        1,
        "the whole line's round trip only"
    );
    assert!(p.is_done());
    let s = *p.stats();
    assert_eq!((s.messages_sent, s.messages_verified), (1, 1));
    assert_eq!((s.bytes_sent, s.bytes_verified), (4097, 4097));
}

#[test]
fn finish_now_mid_frame_completes_the_frame_its_header_announced() {
    let mut p = stream(Mode::Frames, Pattern::PingPong, SizeRange::fixed(10_000), 5);
    assert_eq!(send_all(&mut p, T0).len(), 4096);
    assert_eq!(p.finish_now(), 0, "a frame is not cut");
    let (mut rest, mut turns) = (0, 0);
    loop {
        bounded(&mut turns);
        let n = send_all(&mut p, T0).len();
        if n == 0 {
            break;
        }
        rest += n;
    }
    assert_eq!(rest, 10_000 - 4096);
    assert_eq!(p.stats().messages_sent, 1);
}

#[test]
fn finish_now_between_messages_is_finish() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(10), 5);
    let sent = send_all(&mut p, T0);
    assert_eq!(p.finish_now(), 0);
    assert!(send_all(&mut p, T0).is_empty());
    assert_eq!(echo_back(&mut p, &sent), 1);
    assert!(p.is_done());
    assert_eq!(p.stats().messages_verified, 1);
}

/// A line sent but for its `\n` is not cut by `finish_now`: the `\n` is
/// what comes next anyway, and the line is a whole message.
#[test]
fn finish_now_with_only_the_newline_left_cuts_nothing() {
    let mut p = stream(Mode::Lines, Pattern::PingPong, SizeRange::fixed(10), 5);
    let mut buf = [0u8; 9];
    let n = p.fill_transmit(T0, &mut buf);
    p.commit_sent(T0, n).unwrap();
    assert_eq!(n, 9);
    assert_eq!(p.finish_now(), 0);
    let end = send_all(&mut p, T0);
    assert_eq!(end, b"\n");
    let mut line = buf.to_vec();
    line.extend_from_slice(&end);
    assert_eq!(echo_back(&mut p, &line), 1, "a whole line's round trip");
    assert!(p.is_done());
    let s = *p.stats();
    assert_eq!((s.messages_sent, s.messages_verified), (1, 1));
}

/// `finish_now` with a whole message still in flight before the cut one:
/// that message keeps its own start, and its round trip.
#[test]
fn finish_now_behind_a_whole_message_in_flight_keeps_that_message_round_trip() {
    let mut p = stream(
        Mode::Raw,
        Pattern::Stream { window: 1000 },
        SizeRange::fixed(10),
        5,
    );
    let mut first = [0u8; 10];
    let n = p.fill_transmit(T0, &mut first);
    p.commit_sent(T0, n).unwrap();
    let t1 = T0 + Duration::from_millis(1);
    let mut part = [0u8; 5];
    let n = p.fill_transmit(t1, &mut part);
    p.commit_sent(t1, n).unwrap();
    assert_eq!(p.finish_now(), 5);
    let t3 = T0 + Duration::from_millis(3);
    let r = p.handle_received(t3, &first).unwrap();
    assert_eq!(r.consumed, 10);
    assert_eq!(r.round_trip, Some(Duration::from_millis(3)));
    let r = p.handle_received(t3, &part).unwrap();
    assert_eq!((r.consumed, r.round_trip), (5, None));
    assert!(p.is_done());
}

/// Between lines there is nothing to cut: `finish_now` is `finish`, and no
/// lone `\n` is sent or counted.
#[test]
fn finish_now_between_lines_is_finish() {
    let mut p = stream(Mode::Lines, Pattern::PingPong, SizeRange::fixed(10), 5);
    let sent = send_all(&mut p, T0);
    assert_eq!(sent.len(), 10);
    assert_eq!(p.finish_now(), 0);
    assert!(send_all(&mut p, T0).is_empty());
    assert_eq!(echo_back(&mut p, &sent), 1);
    assert!(p.is_done());
    let s = *p.stats();
    assert_eq!(
        (s.messages_sent, s.messages_verified, s.bytes_sent),
        (1, 1, 10)
    );
}
