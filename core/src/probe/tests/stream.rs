//! The stream probe: messages, windows, verification, finishing.

use super::*;

fn stream(mode: Mode, pattern: Pattern, size: SizeRange, count: u64) -> StreamProbe<8> {
    let config = ProbeConfig {
        mode,
        pattern,
        seed: 3,
        size,
        count: Some(count),
        response_timeout: Some(Duration::from_secs(2)),
        interval: None,
    };
    StreamProbe::new(config, T0).unwrap()
}

#[test]
fn pingpong_idle_sends_one_message_then_waits_for_it() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(10), 3);
    let first = send_all(&mut p, T0);
    assert_eq!(first.len(), 10);
    assert!(
        send_all(&mut p, T0).is_empty(),
        "one message in flight at a time"
    );
    let r = p
        .handle_received(T0 + Duration::from_micros(250), &first)
        .unwrap();
    assert_eq!(
        r,
        Received {
            consumed: 10,
            round_trip: Some(Duration::from_micros(250)),
            since_sent: Some(Duration::from_micros(250))
        }
    );
    assert_eq!(send_all(&mut p, T0).len(), 10);
}

#[test]
fn fill_transmit_is_idempotent_until_commit() {
    let mut p = stream(
        Mode::Raw,
        Pattern::Stream { window: 100 },
        SizeRange::fixed(10),
        50,
    );
    let mut a = [0u8; 64];
    let mut b = [0u8; 64];
    assert_eq!(p.fill_transmit(T0, &mut a), 64);
    assert_eq!(p.fill_transmit(T0, &mut b), 64);
    assert_eq!(a, b);
    p.commit_sent(T0, 5).unwrap();
    let mut c = [0u8; 128];
    let n = p.fill_transmit(T0, &mut c);
    assert_eq!(&c[..59], &a[5..], "the rest of the stream follows on");
    assert_eq!(
        n, 75,
        "M = 8 messages of 10 bytes may be in flight: 80 minus the 5 sent"
    );
}

#[test]
fn stream_window_full_sends_nothing_until_bytes_return() {
    let mut p = stream(
        Mode::Raw,
        Pattern::Stream { window: 30 },
        SizeRange::fixed(10),
        100,
    );
    let sent = send_all(&mut p, T0);
    assert_eq!(sent.len(), 30);
    assert!(send_all(&mut p, T0).is_empty());
    p.handle_received(T0, &sent[..10]).unwrap();
    assert_eq!(send_all(&mut p, T0).len(), 10);
}

#[test]
fn stream_window_smaller_than_a_message_still_sends_whole_messages() {
    let mut p = stream(
        Mode::Lines,
        Pattern::Stream { window: 1 },
        SizeRange::fixed(10),
        5,
    );
    assert_eq!(
        send_all(&mut p, T0).len(),
        10,
        "the started line is completed"
    );
    assert!(
        send_all(&mut p, T0).is_empty(),
        "no new line while one is in flight"
    );
}

#[test]
fn stream_tracks_at_most_m_messages_in_flight() {
    let mut p = stream(
        Mode::Raw,
        Pattern::Stream { window: 1 << 20 },
        SizeRange::fixed(1),
        100,
    );
    assert_eq!(send_all(&mut p, T0).len(), 8, "M = 8 messages of 1 byte");
}

#[test]
fn open_receives_corrupted_byte_reports_exact_offset_and_sticks() {
    let mut p = stream(
        Mode::Raw,
        Pattern::Stream { window: 1000 },
        SizeRange::fixed(100),
        5,
    );
    let mut echo = send_all(&mut p, T0);
    echo[237] ^= 0x01;
    let (mut at, mut turns) = (0, 0);
    let err = loop {
        bounded(&mut turns);
        match p.handle_received(T0, &echo[at..]) {
            Ok(r) => at += r.consumed,
            Err(e) => break e,
        }
    };
    assert_eq!(
        err,
        ProbeError::Mismatch {
            offset: 237,
            expected: echo[237] ^ 1,
            actual: echo[237]
        }
    );
    assert_eq!(p.handle_received(T0, b"x"), Err(err), "errors are sticky");
    assert!(!p.is_done());
}

#[test]
fn open_receives_more_than_sent_reports_unexpected_data() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(4), 1);
    let mut echo = send_all(&mut p, T0);
    echo.push(0);
    let r = p.handle_received(T0, &echo).unwrap();
    assert_eq!(r.consumed, 4);
    assert!(p.is_done());
    assert_eq!(
        p.handle_received(T0, &echo[4..]),
        Err(ProbeError::UnexpectedData { offset: 4 })
    );
}

#[test]
fn open_receives_eof_with_outstanding_reports_premature_close() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(10), 2);
    let echo = send_all(&mut p, T0);
    p.handle_received(T0, &echo[..4]).unwrap();
    assert_eq!(
        p.handle_eof(T0),
        Err(ProbeError::PrematureClose {
            verified: 4,
            outstanding: 6
        })
    );
}

#[test]
fn done_receives_eof_is_fine() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(10), 1);
    let echo = send_all(&mut p, T0);
    p.handle_received(T0, &echo).unwrap();
    assert!(p.is_done());
    assert_eq!(p.handle_eof(T0), Ok(()));
}

#[test]
fn outstanding_without_progress_times_out() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(10), 1);
    send_all(&mut p, T0);
    let deadline = p.poll_timeout().unwrap();
    assert_eq!(deadline, T0 + Duration::from_secs(2));
    assert_eq!(
        p.handle_timeout(deadline - Duration::from_micros(1)),
        Ok(())
    );
    assert_eq!(
        p.handle_timeout(deadline),
        Err(ProbeError::Timeout { outstanding: 10 })
    );
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

/// Feeds `echo` back to `p` whole; returns the round trips it reported.
fn echo_back<const M: usize>(p: &mut StreamProbe<M>, echo: &[u8]) -> usize {
    let (mut at, mut round_trips, mut turns) = (0, 0, 0);
    while at < echo.len() {
        bounded(&mut turns);
        let r = p.handle_received(T0, &echo[at..]).unwrap();
        at += r.consumed;
        round_trips += usize::from(r.round_trip.is_some());
    }
    round_trips
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

#[test]
fn lines_messages_have_one_newline_at_the_end() {
    let mut p = stream(
        Mode::Lines,
        Pattern::Stream { window: 4096 },
        SizeRange::range(1, 300),
        8,
    );
    let bytes = send_all(&mut p, T0);
    let lines: std::vec::Vec<&[u8]> = bytes.split_inclusive(|&b| b == b'\n').collect();
    assert_eq!(lines.len(), 8);
    assert!(lines.iter().all(|l| l.ends_with(b"\n")));
}

#[test]
fn frames_messages_carry_their_length() {
    let mut p = stream(
        Mode::Frames,
        Pattern::Stream { window: 4096 },
        SizeRange::range(2, 300),
        8,
    );
    let bytes = send_all(&mut p, T0);
    let (len, frames) = crate::frames::complete_prefix(&bytes, 4096).unwrap();
    assert_eq!((len, frames), (bytes.len(), 8));
}

#[test]
fn config_rejects_impossible_sizes() {
    let bad = |mode, size| {
        StreamProbe::<8>::new(
            ProbeConfig {
                mode,
                size,
                ..ProbeConfig::default()
            },
            T0,
        )
        .map(|_| ())
        .unwrap_err()
    };
    assert_eq!(
        bad(Mode::Raw, SizeRange::range(5, 4)),
        ConfigError::EmptySizeRange { min: 5, max: 4 }
    );
    assert_eq!(
        bad(Mode::Raw, SizeRange::fixed(0)),
        ConfigError::SizeOutOfBounds {
            size: 0,
            min: 1,
            max: usize::MAX
        }
    );
    assert!(matches!(
        bad(Mode::Frames, SizeRange::fixed(70_000)),
        ConfigError::SizeOutOfBounds { .. }
    ));
}

#[test]
fn paced_pingpong_late_send_measures_from_schedule_and_from_send() {
    // Messages due every 10 ms; the server takes 50 ms to answer the first,
    // so the second leaves 40 ms late. Its latency counts that wait.
    let mut config = ProbeConfig {
        mode: Mode::Raw,
        pattern: Pattern::PingPong,
        seed: 3,
        size: SizeRange::fixed(16),
        count: Some(2),
        response_timeout: None,
        interval: Some(Duration::from_millis(10).into()),
    };
    config.count = Some(2);
    let mut p = StreamProbe::<4>::new(config, T0).unwrap();
    let first = send_all(&mut p, T0);
    let t50 = T0 + Duration::from_millis(50);
    let r = p.handle_received(t50, &first).unwrap();
    assert_eq!(r.round_trip, Some(Duration::from_millis(50)));
    let second = send_all(&mut p, t50);
    assert_eq!(second.len(), 16);
    let r = p
        .handle_received(t50 + Duration::from_millis(1), &second)
        .unwrap();
    assert_eq!(
        r.round_trip,
        Some(Duration::from_millis(41)),
        "from the schedule (T0 + 10 ms)"
    );
    assert_eq!(
        r.since_sent,
        Some(Duration::from_millis(1)),
        "from the actual send"
    );
}

#[test]
fn paced_stream_next_due_follows_the_schedule_not_the_sends() {
    let config = ProbeConfig {
        mode: Mode::Raw,
        pattern: Pattern::Stream { window: 1024 },
        seed: 3,
        size: SizeRange::fixed(16),
        count: Some(3),
        response_timeout: None,
        interval: Some(Duration::from_millis(10).into()),
    };
    let mut p = StreamProbe::<8>::new(config, T0).unwrap();
    assert_eq!(p.next_due(), Some(T0));
    // 25 ms late: messages 0, 1 and 2 are all due and begin in one commit.
    let late = T0 + Duration::from_millis(25);
    let mut buf = [0u8; 64];
    let n = p.fill_transmit(late, &mut buf);
    assert_eq!(n, 48);
    // Half of message 0 written: message 1 is the next to begin.
    p.commit_sent(late, 8).unwrap();
    assert_eq!(p.next_due(), Some(T0 + Duration::from_millis(10)));
    let n = p.fill_transmit(late, &mut buf);
    p.commit_sent(late, n).unwrap();
    assert_eq!(p.next_due(), None, "count reached");
    let unpaced = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(16), 3);
    assert_eq!(unpaced.next_due(), None);
}

/// Sends and echoes everything until done, within `LOOP_BOUND` turns;
/// returns every byte sent.
fn run_to_done<const M: usize>(p: &mut StreamProbe<M>) -> std::vec::Vec<u8> {
    let (mut all, mut turns) = (std::vec::Vec::new(), 0);
    while !p.is_done() {
        bounded(&mut turns);
        let sent = send_all(p, T0);
        echo_back(p, &sent);
        all.extend_from_slice(&sent);
    }
    all
}

#[test]
fn lines_sizes_drawn_from_a_range_cover_both_ends_and_stay_inside() {
    let mut p = stream(
        Mode::Lines,
        Pattern::Stream { window: 4096 },
        SizeRange::range(3, 5),
        60,
    );
    let all = run_to_done(&mut p);
    let mut seen = [0u32; 3];
    for line in all.split_inclusive(|&b| b == b'\n') {
        assert!((3..=5).contains(&line.len()), "{line:?}");
        seen[line.len() - 3] += 1;
    }
    assert_eq!(seen.iter().sum::<u32>(), 60);
    assert!(seen.iter().all(|&k| k > 0), "{seen:?}");
}

/// Receiving part of the echo is progress: the response clock restarts.
#[test]
fn outstanding_receiving_part_of_the_echo_restarts_the_response_clock() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(10), 1);
    let echo = send_all(&mut p, T0);
    let t = T0 + Duration::from_millis(1500);
    p.handle_received(t, &echo[..4]).unwrap();
    assert_eq!(p.poll_timeout(), Some(t + Duration::from_secs(2)));
    assert_eq!(p.handle_timeout(T0 + Duration::from_secs(2)), Ok(()));
    assert_eq!(p.error(), None);
    assert_eq!(
        p.handle_timeout(t + Duration::from_secs(2)),
        Err(ProbeError::Timeout { outstanding: 6 })
    );
    assert_eq!(p.error(), Some(ProbeError::Timeout { outstanding: 6 }));
}

/// With nothing outstanding the response clock is stopped; it starts
/// again at the next send, not at the last echo.
#[test]
fn idle_sending_again_starts_the_response_clock_at_the_send() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(10), 2);
    let first = send_all(&mut p, T0);
    echo_back(&mut p, &first);
    let hour = T0 + Duration::from_secs(3600);
    assert_eq!(p.poll_timeout(), None, "nothing outstanding, no deadline");
    assert_eq!(p.handle_timeout(hour), Ok(()), "idle is no timeout");
    let second = send_all(&mut p, hour);
    assert_eq!(second.len(), 10);
    assert_eq!(p.poll_timeout(), Some(hour + Duration::from_secs(2)));
    assert_eq!(p.handle_timeout(hour + Duration::from_secs(1)), Ok(()));
}

/// A paced ping-pong waiting for an echo: the next message is already due,
/// but it cannot start, so the timer is the response deadline (a timer at
/// an instant already passed would spin the adapter).
#[test]
fn paced_pingpong_waiting_for_an_echo_sets_no_timer_for_a_message_already_due() {
    let config = ProbeConfig {
        mode: Mode::Raw,
        pattern: Pattern::PingPong,
        seed: 3,
        size: SizeRange::fixed(16),
        count: Some(3),
        response_timeout: Some(Duration::from_secs(2)),
        interval: Some(Duration::from_millis(10).into()),
    };
    let mut p = StreamProbe::<4>::new(config, T0).unwrap();
    assert_eq!(send_all(&mut p, T0).len(), 16);
    let due = T0 + Duration::from_millis(10);
    assert_eq!(p.handle_timeout(due), Ok(()));
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_secs(2)));
}

/// With every message begun, no paced instant is left: the timer is the
/// response deadline.
#[test]
fn paced_count_reached_sets_only_the_response_deadline() {
    let config = ProbeConfig {
        mode: Mode::Raw,
        pattern: Pattern::PingPong,
        seed: 3,
        size: SizeRange::fixed(16),
        count: Some(1),
        response_timeout: Some(Duration::from_secs(2)),
        interval: Some(Duration::from_millis(10).into()),
    };
    let mut p = StreamProbe::<4>::new(config, T0).unwrap();
    assert_eq!(send_all(&mut p, T0).len(), 16);
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_secs(2)));
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

/// After a partial commit only the rest of the offer may be committed.
#[test]
fn offered_partly_committed_allows_only_the_rest_of_the_offer() {
    let mut p = stream(
        Mode::Raw,
        Pattern::Stream { window: 1000 },
        SizeRange::fixed(10),
        50,
    );
    let mut buf = [0u8; 64];
    assert_eq!(p.fill_transmit(T0, &mut buf), 64);
    p.commit_sent(T0, 5).unwrap();
    assert_eq!(
        p.commit_sent(T0, 60),
        Err(crate::session::CommitError::TooMany {
            n: 60,
            available: 59
        })
    );
    assert_eq!(p.commit_sent(T0, 59), Ok(()));
    assert_eq!(p.stats().bytes_sent, 64);
}

/// A commit that ends one message and begins the next records the next
/// one's start, so each gets its round trip.
#[test]
fn stream_commit_across_a_message_boundary_gives_each_message_its_round_trip() {
    let mut p = stream(
        Mode::Raw,
        Pattern::Stream { window: 1000 },
        SizeRange::fixed(10),
        2,
    );
    let mut echo = [0u8; 20];
    assert_eq!(p.fill_transmit(T0, &mut echo), 20);
    p.commit_sent(T0, 5).unwrap();
    p.commit_sent(T0, 15).unwrap();
    let back = T0 + Duration::from_millis(1);
    for part in echo.chunks(10) {
        let r = p.handle_received(back, part).unwrap();
        assert_eq!(r.consumed, 10);
        assert_eq!(r.round_trip, Some(Duration::from_millis(1)));
    }
    assert!(p.is_done());
}

/// The rest of a partly returned message, then the next message, in one
/// read: each message is verified, and completed, apart.
#[test]
fn partial_echo_then_the_rest_with_the_next_message_verifies_each_apart() {
    let mut p = stream(
        Mode::Lines,
        Pattern::Stream { window: 1000 },
        SizeRange::fixed(10),
        2,
    );
    let echo = send_all(&mut p, T0);
    assert_eq!(echo.len(), 20);
    assert_eq!(p.handle_received(T0, &echo[..4]).unwrap().consumed, 4);
    let r = p.handle_received(T0, &echo[4..]).unwrap();
    assert_eq!((r.consumed, r.round_trip.is_some()), (6, true));
    let r = p.handle_received(T0, &echo[10..]).unwrap();
    assert_eq!((r.consumed, r.round_trip.is_some()), (10, true));
    assert!(p.is_done());
}

/// An echo of more than one comparison chunk (256 bytes) that stops short
/// of its message's end is verified up to what was sent, and a byte beyond
/// that is unexpected.
#[test]
fn open_receives_more_than_a_chunk_short_of_the_message_end_verifies_what_was_sent() {
    let mut p = stream(Mode::Raw, Pattern::PingPong, SizeRange::fixed(1000), 1);
    let mut buf = [0u8; 300];
    let n = p.fill_transmit(T0, &mut buf);
    p.commit_sent(T0, n).unwrap();
    let mut echo = buf.to_vec();
    echo.push(0);
    let r = p.handle_received(T0, &echo).unwrap();
    assert_eq!((r.consumed, r.round_trip), (300, None));
    assert_eq!(
        p.handle_received(T0, &echo[300..]),
        Err(ProbeError::UnexpectedData { offset: 300 })
    );
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

/// A fill that resumes mid-line and runs into the next line ends the first
/// at its own length, with its `\n`.
#[test]
fn lines_fill_resumed_mid_line_ends_each_line_with_its_newline() {
    let mut p = stream(
        Mode::Lines,
        Pattern::Stream { window: 1000 },
        SizeRange::fixed(10),
        2,
    );
    let mut head = [0u8; 5];
    let n = p.fill_transmit(T0, &mut head);
    p.commit_sent(T0, n).unwrap();
    let mut all = head.to_vec();
    all.extend_from_slice(&send_all(&mut p, T0));
    assert_eq!(all.len(), 20);
    assert_eq!((all[9], all[19]), (b'\n', b'\n'));
    assert_eq!(all.iter().filter(|&&b| b == b'\n').count(), 2);
    assert_eq!(echo_back(&mut p, &all), 2);
    assert!(p.is_done());
}

/// Seed 294's payload begins with a `\n`: as the first byte of a line it
/// is replaced (by `\n ^ 0x80`) like any other.
#[test]
fn lines_payload_beginning_with_a_newline_sends_it_replaced() {
    assert_eq!(crate::payload::Payload::new(294).byte(0), b'\n');
    let mut p = StreamProbe::<8>::new(
        ProbeConfig {
            mode: Mode::Lines,
            seed: 294,
            size: SizeRange::fixed(10),
            count: Some(1),
            ..ProbeConfig::default()
        },
        T0,
    )
    .unwrap();
    let sent = send_all(&mut p, T0);
    assert_eq!(sent.len(), 10);
    assert_eq!(sent[0], b'\n' ^ 0x80);
    assert_eq!(sent.iter().position(|&b| b == b'\n'), Some(9));
    assert_eq!(echo_back(&mut p, &sent), 1);
}

#[test]
fn verified_tail_and_outstanding_bytes_after_echoes_are_the_stream_sent_either_side_of_the_receive_position()
 {
    for mode in [Mode::Raw, Mode::Lines, Mode::Frames] {
        let size = SizeRange { min: 3, max: 40 };
        let mut p = stream(mode, Pattern::Stream { window: 4000 }, size, 200);
        let mut sent = send_all(&mut p, T0);
        let mut out = [0u8; 100];
        // Nothing verified yet: nothing to show.
        assert_eq!(p.verified_tail(&mut out), 0, "{mode:?}");
        // Echoed in pieces that end inside messages and on their bounds.
        let mut at = 0;
        for piece in [7, 1, 90, 33, 2, 150, 61] {
            let mut turns = 0;
            while sent.len() < at + piece {
                bounded(&mut turns);
                let more = send_all(&mut p, T0);
                assert!(!more.is_empty(), "{mode:?}: stuck at {} sent", sent.len());
                sent.extend_from_slice(&more);
            }
            let mut fed = 0;
            while fed < piece {
                bounded(&mut turns);
                let r = p.handle_received(T0, &sent[at + fed..at + piece]).unwrap();
                fed += r.consumed;
            }
            at += piece;
            let n = p.verified_tail(&mut out);
            assert_eq!(n, at.min(100), "{mode:?} after {at}");
            assert_eq!(&out[..n], &sent[at - n..at], "{mode:?} after {at}");
            // And ahead: what was sent and not yet verified.
            let n = p.outstanding_bytes(&mut out);
            assert_eq!(n, (sent.len() - at).min(100), "{mode:?} after {at}");
            assert_eq!(&out[..n], &sent[at..at + n], "{mode:?} after {at}");
        }
    }
}
