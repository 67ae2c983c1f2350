//! Probe unit tests, named `<state>_<event>_<outcome>`.

use super::*;
use crate::{Duration, Instant};

const T0: Instant = Instant::from_micros(1_000);

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

/// Panics once a test loop has run `LOOP_BOUND` times: a mutant that stops
/// the probe's progress (nothing consumed, nothing sent, no deadline
/// passing) then fails the test instead of hanging it.
const LOOP_BOUND: u32 = 100_000;

fn bounded(turns: &mut u32) {
    *turns += 1;
    assert!(*turns <= LOOP_BOUND, "no progress after {LOOP_BOUND} turns");
}

/// Sends everything allowed now; returns the bytes.
fn send_all<const M: usize>(p: &mut StreamProbe<M>, now: Instant) -> std::vec::Vec<u8> {
    let mut buf = [0u8; 4096];
    let n = p.fill_transmit(now, &mut buf);
    p.commit_sent(now, n).unwrap();
    buf[..n].to_vec()
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

fn dgram(window: usize) -> DatagramProbe<8> {
    let config = DatagramProbeConfig {
        seed: 5,
        size: SizeRange::range(12, 200),
        count: Some(20),
        window,
        loss_timeout: Duration::from_millis(100),
        interval: None,
    };
    DatagramProbe::new(config, T0).unwrap()
}

#[test]
fn datagram_echoed_intact_is_verified_once_then_duplicate() {
    let mut p = dgram(1);
    let mut buf = [0u8; 256];
    let n = p.poll_transmit(T0, &mut buf).unwrap();
    assert_eq!(p.poll_transmit(T0, &mut buf[..]), None, "window of 1");
    let later = T0 + Duration::from_micros(40);
    assert_eq!(
        p.handle_datagram(later, &buf[..n]),
        DatagramOutcome::Verified {
            round_trip: Duration::from_micros(40),
            since_sent: Duration::from_micros(40)
        }
    );
    assert_eq!(
        p.handle_datagram(later, &buf[..n]),
        DatagramOutcome::Duplicate { seq: 0 }
    );
    assert_eq!((p.stats().verified, p.stats().duplicate), (1, 1));
}

#[test]
fn datagram_echoes_out_of_order_are_verified_and_counted_reordered() {
    let mut p = dgram(4);
    let mut bufs = [[0u8; 256]; 3];
    let mut lens = [0usize; 3];
    for (b, n) in bufs.iter_mut().zip(&mut lens) {
        *n = p.poll_transmit(T0, b).unwrap();
    }
    // 0, 2, then 1: only 1 came back after a later one.
    for i in [0, 2, 1] {
        assert!(matches!(
            p.handle_datagram(T0, &bufs[i][..lens[i]]),
            DatagramOutcome::Verified { .. }
        ));
    }
    assert_eq!((p.stats().verified, p.stats().reordered), (3, 1));
}

fn ring_of_4(loss_timeout: Duration) -> DatagramProbe<4> {
    let config = DatagramProbeConfig {
        seed: 5,
        size: SizeRange::fixed(64),
        count: None,
        window: 4,
        loss_timeout,
        interval: None,
    };
    DatagramProbe::new(config, T0).unwrap()
}

#[test]
fn datagram_overdue_after_is_a_fiftieth_of_the_timeout_until_a_round_trip_is_measured() {
    let mut p = ring_of_4(Duration::from_secs(5));
    assert_eq!(p.overdue_after(), Duration::from_millis(100));
    let mut buf = [0u8; 64];
    let n = p.poll_transmit(T0, &mut buf).unwrap();
    p.handle_datagram(T0 + Duration::from_micros(40), &buf[..n]);
    assert_eq!(
        p.overdue_after(),
        Duration::from_millis(1),
        "40 us round trips: srtt + 4 rttvar is under the 1 ms floor"
    );
    assert_eq!(
        ring_of_4(Duration::from_millis(10)).overdue_after(),
        Duration::from_millis(1),
        "never under 1 ms"
    );
}

/// A ring of 4 with datagrams 0-3 sent at T0 and 1-3 back 40 us later:
/// full, its oldest unanswered. Returns the probe and the four datagrams.
fn full_ring_oldest_unanswered() -> (DatagramProbe<4>, [[u8; 64]; 4]) {
    let mut p = ring_of_4(Duration::from_secs(5));
    let mut bufs = [[0u8; 64]; 4];
    for b in &mut bufs {
        assert_eq!(p.poll_transmit(T0, b), Some(64));
    }
    for b in &bufs[1..] {
        p.handle_datagram(T0 + Duration::from_micros(40), b);
    }
    (p, bufs)
}

#[test]
fn datagram_ring_full_gives_its_oldest_slot_up_once_overdue_and_counts_it_lost_at_the_timeout() {
    // Regression: a lost datagram held its ring slot for the whole loss
    // timeout, so with a few losses a socket sent M datagrams per timeout.
    let (mut p, bufs) = full_ring_oldest_unanswered();
    let mut next = [0u8; 64];
    assert_eq!(
        p.poll_transmit(T0 + Duration::from_millis(99), &mut next),
        None,
        "the ring is full and datagram 0 is not overdue yet (5 s / 50)"
    );
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_millis(100)));
    assert_eq!(
        p.poll_transmit(T0 + Duration::from_millis(100), &mut next),
        Some(64),
        "datagram 0 gives its slot up"
    );
    assert_eq!(
        (p.stats().sent, p.stats().lost, p.stats().verified),
        (5, 0, 3),
        "not lost before its loss timeout"
    );
    assert!(!p.is_done());
    // Its loss timeout, not datagram 4's, is the next deadline.
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_secs(5)));
    p.handle_timeout(T0 + Duration::from_secs(5));
    assert_eq!(p.stats().lost, 1, "lost at its loss timeout");
    assert_eq!(
        p.handle_datagram(T0 + Duration::from_secs(5), &bufs[0]),
        DatagramOutcome::Late { seq: 0 }
    );
    assert_eq!(p.stats().late, 1);
}

/// Regression: a datagram the server held while it echoed later ones (a
/// stalled thread of a server, a reordering path) was counted lost once
/// it gave its ring slot up, 100 ms into a 5 s loss timeout, and late when
/// it came back at 200 ms: a run with every datagram echoed failed.
#[test]
fn datagram_given_up_early_and_back_before_its_loss_timeout_is_verified_reordered() {
    let (mut p, bufs) = full_ring_oldest_unanswered();
    let mut next = [0u8; 64];
    let at = T0 + Duration::from_millis(100);
    assert_eq!(p.poll_transmit(at, &mut next), Some(64), "slot given up");
    let back = T0 + Duration::from_millis(200);
    match p.handle_datagram(back, &bufs[0]) {
        DatagramOutcome::Verified { round_trip, .. } => {
            assert_eq!(
                round_trip,
                Duration::from_millis(200),
                "its real round trip"
            );
        }
        other => panic!("{other:?}"),
    }
    let s = *p.stats();
    assert_eq!(
        (s.verified, s.lost, s.late, s.reordered),
        (4, 0, 0, 1),
        "{s:?}"
    );
    // A second copy: its slot holds datagram 4 now, too old to tell apart.
    assert_eq!(
        p.handle_datagram(back, &bufs[0]),
        DatagramOutcome::Late { seq: 0 }
    );
    // Nothing is left to wait for but datagram 4.
    assert_eq!(p.poll_timeout(), Some(at + Duration::from_secs(5)));
    // Back altered instead: corrupt, not lost, not late.
    let (mut q, _) = full_ring_oldest_unanswered();
    assert_eq!(q.poll_transmit(at, &mut next), Some(64));
    let mut altered = bufs[0];
    altered[40] ^= 1;
    assert_eq!(
        q.handle_datagram(back, &altered),
        DatagramOutcome::Corrupt { seq: 0 }
    );
    let s = *q.stats();
    assert_eq!((s.corrupt, s.lost, s.late), (1, 0, 0), "{s:?}");
}

/// At most `M` datagrams given up early are remembered: the next one
/// crowds the oldest out, which is then counted lost at once.
#[test]
fn datagram_given_up_early_crowded_out_by_m_later_ones_is_lost_at_once() {
    let mut p = ring_of_4(Duration::from_secs(5));
    let mut buf = [0u8; 64];
    let mut t = T0;
    // Every even datagram is dropped by the "server", every odd one echoed.
    let (mut sent, mut turns) = (0u64, 0);
    while sent < 40 {
        bounded(&mut turns);
        let Some(n) = p.poll_transmit(t, &mut buf) else {
            t = p.poll_timeout().expect("a deadline");
            assert!(t < T0 + Duration::from_secs(5), "no loss timeout reached");
            continue;
        };
        if sent % 2 == 1 {
            assert!(matches!(
                p.handle_datagram(t, &buf[..n]),
                DatagramOutcome::Verified { .. }
            ));
        }
        sent += 1;
    }
    let s = *p.stats();
    // 20 dropped; some still in flight, at most 4 remembered, the rest lost.
    let in_flight = s.sent - s.verified - s.lost;
    assert!(s.lost > 0 && in_flight <= 4 + 4, "{s:?}");
    assert_eq!(s.late, 0, "{s:?}");
    p.finish();
    p.handle_timeout(T0 + Duration::from_secs(10));
    assert!(p.is_done());
    assert_eq!(p.stats().lost, 20, "{:?}", p.stats());
}

/// A server that pauses answers nothing: no later datagram has come back,
/// so the oldest is not counted lost early (a pause of 200 ms made 49
/// datagrams "lost" that all came back, and failed the run); the full ring
/// waits, and the echoes, once they come, all verify.
#[test]
fn datagram_ring_full_of_a_paused_server_counts_nothing_lost_early() {
    let mut p = ring_of_4(Duration::from_secs(5));
    let mut bufs = [[0u8; 64]; 4];
    for b in &mut bufs {
        assert_eq!(p.poll_transmit(T0, b), Some(64));
    }
    let mut next = [0u8; 64];
    let paused = T0 + Duration::from_millis(200);
    assert_eq!(
        p.poll_transmit(paused, &mut next),
        None,
        "nothing came back since: no slot is given up"
    );
    assert_eq!(
        p.poll_timeout(),
        Some(T0 + Duration::from_secs(5)),
        "the loss timeout, not the early count"
    );
    for b in &bufs {
        assert!(matches!(
            p.handle_datagram(paused, b),
            DatagramOutcome::Verified { .. }
        ));
    }
    assert_eq!(
        (p.stats().lost, p.stats().late, p.stats().verified),
        (0, 0, 4)
    );
    // A server that stopped for good: each is lost at the loss timeout.
    let mut q = ring_of_4(Duration::from_secs(5));
    for b in &mut bufs {
        assert_eq!(q.poll_transmit(T0, b), Some(64));
    }
    q.handle_timeout(T0 + Duration::from_secs(5));
    assert_eq!(q.stats().lost, 4);
}

#[test]
fn datagram_unanswered_stops_counting_against_a_window_once_overdue() {
    let mut p = ring_of_4(Duration::from_secs(5));
    let mut a = [0u8; 64];
    let mut b = [0u8; 64];
    let n = p.poll_transmit(T0, &mut a).unwrap();
    p.handle_datagram(T0 + Duration::from_micros(40), &a[..n]);
    let sent = T0 + Duration::from_millis(1);
    p.poll_transmit(sent, &mut b).unwrap();
    assert_eq!(
        p.in_flight_recent(sent),
        (1, Some(sent + Duration::from_millis(1)))
    );
    assert_eq!(
        p.in_flight_recent(sent + Duration::from_millis(1)),
        (0, None),
        "after the estimated retransmission timeout it no longer holds a window"
    );
    assert_eq!(p.stats().lost, 0, "yet it is not counted lost");
}

#[test]
fn datagram_ring_not_full_keeps_waiting_for_the_loss_timeout() {
    let mut p = ring_of_4(Duration::from_secs(5));
    let mut buf = [0u8; 64];
    p.poll_transmit(T0, &mut buf).unwrap();
    let later = T0 + Duration::from_secs(1);
    assert!(p.poll_transmit(later, &mut buf).is_some());
    assert_eq!(p.stats().lost, 0, "room left: nothing is given up early");
    p.handle_timeout(T0 + Duration::from_secs(5));
    assert_eq!(p.stats().lost, 1);
}

#[test]
fn datagram_truncated_or_altered_is_corrupt_not_verified() {
    let mut p = dgram(4);
    let mut a = [0u8; 256];
    let mut b = [0u8; 256];
    let na = p.poll_transmit(T0, &mut a).unwrap();
    let nb = p.poll_transmit(T0, &mut b).unwrap();
    assert_eq!(
        p.handle_datagram(T0, &a[..na - 1]),
        DatagramOutcome::Corrupt { seq: 0 }
    );
    b[nb - 1] ^= 0xff;
    assert_eq!(
        p.handle_datagram(T0, &b[..nb]),
        DatagramOutcome::Corrupt { seq: 1 }
    );
    assert_eq!(p.stats().corrupt, 2);
    assert_eq!(p.stats().verified, 0);
}

#[test]
fn datagram_not_back_in_time_is_lost_then_late() {
    let mut p = dgram(2);
    let mut buf = [0u8; 256];
    let n = p.poll_transmit(T0, &mut buf).unwrap();
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_millis(100)));
    p.handle_timeout(T0 + Duration::from_millis(100));
    assert_eq!(p.stats().lost, 1);
    assert_eq!(
        p.handle_datagram(T0 + Duration::from_millis(150), &buf[..n]),
        DatagramOutcome::Late { seq: 0 }
    );
}

#[test]
fn datagram_from_someone_else_is_foreign() {
    let mut p = dgram(1);
    assert_eq!(
        p.handle_datagram(T0, b"hello world, not ours"),
        DatagramOutcome::Foreign
    );
    assert_eq!(p.handle_datagram(T0, b"short"), DatagramOutcome::Foreign);
}

#[test]
fn datagram_all_resolved_is_done() {
    let mut p = dgram(8);
    let mut buf = [0u8; 256];
    let (mut t, mut turns) = (T0, 0);
    while !p.is_done() {
        bounded(&mut turns);
        while let Some(n) = p.poll_transmit(t, &mut buf) {
            bounded(&mut turns);
            if buf[0..8] != 3u64.to_be_bytes() {
                // seq 3 is "lost" by the network
                assert!(matches!(
                    p.handle_datagram(t, &buf[..n]),
                    DatagramOutcome::Verified { .. }
                ));
            }
        }
        t = p.poll_timeout().unwrap_or(t);
        p.handle_timeout(t);
    }
    assert_eq!(
        (p.stats().sent, p.stats().verified, p.stats().lost),
        (20, 19, 1)
    );
}

#[test]
fn datagram_unresolved_old_one_holds_its_ring_slot() {
    let mut p = dgram(8);
    let mut buf = [0u8; 256];
    p.poll_transmit(T0, &mut buf).unwrap(); // seq 0: never comes back
    for _ in 1..8 {
        let n = p.poll_transmit(T0, &mut buf).unwrap();
        assert!(matches!(
            p.handle_datagram(T0, &buf[..n]),
            DatagramOutcome::Verified { .. }
        ));
    }
    assert_eq!(
        p.poll_transmit(T0, &mut buf),
        None,
        "seq 8 would reuse seq 0's slot"
    );
    p.handle_timeout(T0 + Duration::from_millis(100));
    assert!(
        p.poll_transmit(T0 + Duration::from_millis(100), &mut buf)
            .is_some()
    );
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

/// 32-byte datagrams of seed 5, one every 10 ms, `window` in flight.
fn paced_datagrams(count: Option<u64>, window: usize) -> DatagramProbeConfig {
    DatagramProbeConfig {
        seed: 5,
        size: SizeRange::fixed(32),
        count,
        window,
        loss_timeout: Duration::from_secs(1),
        interval: Some(Duration::from_millis(10).into()),
    }
}

#[test]
fn paced_datagram_late_send_measures_from_schedule_and_from_send() {
    let config = paced_datagrams(Some(2), 1);
    let mut p = DatagramProbe::<8>::new(config, T0).unwrap();
    let mut buf = [0u8; 64];
    let n = p.poll_transmit(T0, &mut buf).unwrap();
    let t50 = T0 + Duration::from_millis(50);
    let _ = p.handle_datagram(t50, &buf[..n]);
    let n = p.poll_transmit(t50, &mut buf).unwrap();
    assert_eq!(
        p.handle_datagram(t50 + Duration::from_millis(1), &buf[..n]),
        DatagramOutcome::Verified {
            round_trip: Duration::from_millis(41),
            since_sent: Duration::from_millis(1),
        }
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

#[test]
fn paced_datagram_next_due_advances_per_datagram_and_stops_at_finish() {
    let config = paced_datagrams(None, 4);
    let mut p = DatagramProbe::<8>::new(config, T0).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(p.next_due(), Some(T0));
    p.poll_transmit(T0 + Duration::from_millis(3), &mut buf)
        .unwrap();
    assert_eq!(p.next_due(), Some(T0 + Duration::from_millis(10)));
    p.finish();
    assert_eq!(p.next_due(), None);
    assert_eq!(dgram(1).next_due(), None, "unpaced");
}

#[test]
fn premature_close_with_nothing_in_flight_says_nothing_was_lost() {
    use std::string::ToString;
    let between = ProbeError::PrematureClose {
        verified: 640,
        outstanding: 0,
    }
    .to_string();
    assert!(
        between.contains("before the probe was done") && between.contains("640 bytes verified"),
        "{between}"
    );
    assert!(!between.contains("never returned"), "{between}");
    let mid = ProbeError::PrematureClose {
        verified: 640,
        outstanding: 64,
    }
    .to_string();
    assert!(mid.contains("64 bytes never returned"), "{mid}");
}

#[test]
#[should_panic(expected = "give it config.size.max bytes")]
#[cfg(debug_assertions)]
fn datagram_transmit_into_a_buffer_smaller_than_the_datagram_panics_in_debug() {
    let mut p = dgram(4);
    let mut small = [0u8; 8];
    let _ = p.poll_transmit(T0, &mut small);
}

#[test]
fn datagram_config_refuses_sizes_no_udp_socket_can_send() {
    let config = |max| DatagramProbeConfig {
        size: SizeRange::range(12, max),
        ..DatagramProbeConfig::default()
    };
    assert!(DatagramProbe::<4>::new(config(UDP_MAX_V6), T0).is_ok());
    assert_eq!(
        DatagramProbe::<4>::new(config(UDP_MAX_V6 + 1), T0).err(),
        Some(ConfigError::SizeOutOfBounds {
            size: 65_528,
            min: 12,
            max: 65_527
        })
    );
}

#[test]
fn paced_schedule_starting_later_sends_nothing_before_it_then_counts_from_it() {
    // A connection whose phase puts its schedule 3 ms into the interval.
    let config = ProbeConfig {
        mode: Mode::Raw,
        pattern: Pattern::PingPong,
        seed: 3,
        size: SizeRange::fixed(16),
        count: Some(2),
        response_timeout: Some(Duration::from_secs(2)),
        interval: Some(Duration::from_millis(10).into()),
    };
    let start = T0 + Duration::from_millis(3);
    let mut p = StreamProbe::<4>::with_schedule(config, T0, start).unwrap();
    assert_eq!(p.next_due(), Some(start));
    assert_eq!(
        p.poll_timeout(),
        Some(start),
        "a timer for the first message"
    );
    assert!(send_all(&mut p, T0).is_empty(), "nothing before its start");
    let first = send_all(&mut p, start);
    assert_eq!(first.len(), 16);
    let r = p
        .handle_received(start + Duration::from_millis(1), &first)
        .unwrap();
    assert_eq!(r.round_trip, Some(Duration::from_millis(1)));
    assert_eq!(p.next_due(), Some(start + Duration::from_millis(10)));

    let config = paced_datagrams(Some(2), 1);
    let mut d = DatagramProbe::<8>::with_schedule(config, T0, start).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(d.next_due(), Some(start));
    assert!(
        d.poll_transmit(T0, &mut buf).is_none(),
        "nothing before its start"
    );
    assert!(d.poll_transmit(start, &mut buf).is_some());
}

// --- Pinned after mutation testing (cargo-mutants on the probe) ---

/// The tag is all that tells a datagram of this probe from a stranger's
/// with the same layout: an echo whose tag changed is not ours, however
/// well its sequence number and payload match.
#[test]
fn datagram_echo_with_an_altered_tag_is_foreign_not_verified() {
    let mut p = dgram(4);
    let mut buf = [0u8; 256];
    let n = p.poll_transmit(T0, &mut buf).unwrap();
    let mut altered = buf;
    altered[8] ^= 0x01;
    assert_eq!(
        p.handle_datagram(T0, &altered[..n]),
        DatagramOutcome::Foreign
    );
    assert_eq!((p.stats().verified, p.stats().foreign), (0, 1));
    assert!(matches!(
        p.handle_datagram(T0, &buf[..n]),
        DatagramOutcome::Verified { .. }
    ));
}

/// A datagram of the right tag and layout whose sequence number was never
/// sent (a second probe of the same seed, or a forged one) is foreign.
#[test]
fn datagram_with_the_next_unsent_sequence_number_is_foreign() {
    let mut p = dgram(4);
    let mut twin = dgram(4);
    let mut buf = [0u8; 256];
    p.poll_transmit(T0, &mut buf).unwrap();
    twin.poll_transmit(T0, &mut buf).unwrap();
    let n = twin.poll_transmit(T0, &mut buf).unwrap();
    assert_eq!(buf[..8], 1u64.to_be_bytes());
    assert_eq!(p.handle_datagram(T0, &buf[..n]), DatagramOutcome::Foreign);
    assert_eq!((p.stats().foreign, p.stats().late), (1, 0));
}

#[test]
fn datagram_verified_counts_its_bytes_and_a_corrupt_one_counts_none() {
    let mut p = dgram(4);
    let mut a = [0u8; 256];
    let mut b = [0u8; 256];
    let na = p.poll_transmit(T0, &mut a).unwrap();
    let nb = p.poll_transmit(T0, &mut b).unwrap();
    p.handle_datagram(T0, &a[..na]);
    b[nb - 1] ^= 0x01;
    p.handle_datagram(T0, &b[..nb]);
    assert_eq!(p.stats().bytes_verified, na as u64);
}

/// A datagram longer than the verifier's 128-byte comparison chunk is
/// compared whole: every chunk against its own payload offsets.
#[test]
fn datagram_longer_than_a_comparison_chunk_is_verified_whole_and_altered_late_is_corrupt() {
    let config = DatagramProbeConfig {
        seed: 5,
        size: SizeRange::fixed(1000),
        count: None,
        window: 4,
        loss_timeout: Duration::from_secs(1),
        interval: None,
    };
    let mut p = DatagramProbe::<4>::new(config, T0).unwrap();
    let mut a = [0u8; 1000];
    let mut b = [0u8; 1000];
    assert_eq!(p.poll_transmit(T0, &mut a), Some(1000));
    assert_eq!(p.poll_transmit(T0, &mut b), Some(1000));
    assert_ne!(a[12..], b[12..], "each datagram has its own payload");
    assert!(matches!(
        p.handle_datagram(T0, &a),
        DatagramOutcome::Verified { .. }
    ));
    b[700] ^= 0x40;
    assert_eq!(
        p.handle_datagram(T0, &b),
        DatagramOutcome::Corrupt { seq: 1 }
    );
}

#[test]
fn datagram_echoes_in_order_are_not_counted_reordered() {
    let mut p = dgram(4);
    let mut bufs = [[0u8; 256]; 3];
    let mut lens = [0usize; 3];
    for (b, n) in bufs.iter_mut().zip(&mut lens) {
        *n = p.poll_transmit(T0, b).unwrap();
    }
    for (b, n) in bufs.iter().zip(lens) {
        p.handle_datagram(T0, &b[..n]);
    }
    assert_eq!((p.stats().verified, p.stats().reordered), (3, 0));
}

#[test]
fn datagram_sizes_drawn_from_a_range_cover_both_ends_and_stay_inside() {
    let config = DatagramProbeConfig {
        seed: 5,
        size: SizeRange::range(12, 14),
        count: None,
        window: 1,
        loss_timeout: Duration::from_secs(1),
        interval: None,
    };
    let mut p = DatagramProbe::<4>::new(config, T0).unwrap();
    let mut seen = [0u32; 3];
    let mut buf = [0u8; 14];
    for _ in 0..60 {
        let n = p.poll_transmit(T0, &mut buf).unwrap();
        assert!((12..=14).contains(&n), "{n}");
        seen[n - 12] += 1;
        assert!(matches!(
            p.handle_datagram(T0, &buf[..n]),
            DatagramOutcome::Verified { .. }
        ));
    }
    assert!(seen.iter().all(|&k| k > 0), "{seen:?}");
}

/// The retransmission timeout follows RFC 6298: after a first round trip R,
/// srtt = R and rttvar = R/2; then rttvar = (3 rttvar + |srtt - R'|) / 4 and
/// srtt = (7 srtt + R') / 8.
#[test]
fn datagram_overdue_after_follows_the_measured_round_trips() {
    let config = DatagramProbeConfig {
        seed: 5,
        size: SizeRange::fixed(64),
        count: None,
        window: 4,
        loss_timeout: Duration::from_secs(50),
        interval: None,
    };
    let mut p = DatagramProbe::<4>::new(config, T0).unwrap();
    assert_eq!(p.overdue_after(), Duration::from_secs(1), "50 s / 50");
    let mut buf = [0u8; 64];
    p.poll_transmit(T0, &mut buf).unwrap();
    let t1 = T0 + Duration::from_millis(10);
    p.handle_datagram(t1, &buf);
    // srtt 10 ms, rttvar 5 ms.
    assert_eq!(p.overdue_after(), Duration::from_micros(30_000));
    p.poll_transmit(t1, &mut buf).unwrap();
    p.handle_datagram(t1 + Duration::from_millis(30), &buf);
    // rttvar (15 + 20) / 4 = 8.75 ms, srtt (70 + 30) / 8 = 12.5 ms.
    assert_eq!(p.overdue_after(), Duration::from_micros(47_500));
}

#[test]
fn datagram_in_flight_recent_leaves_out_the_overdue_and_keeps_the_rest() {
    let mut p = ring_of_4(Duration::from_secs(5));
    let mut buf = [0u8; 64];
    p.poll_transmit(T0, &mut buf).unwrap();
    p.handle_datagram(T0 + Duration::from_micros(40), &buf);
    // Retransmission timeout now 1 ms (the floor).
    let b_at = T0 + Duration::from_millis(1);
    let c_at = b_at + Duration::from_micros(500);
    p.poll_transmit(b_at, &mut buf).unwrap();
    p.poll_transmit(c_at, &mut buf).unwrap();
    let now = b_at + Duration::from_millis(1);
    assert_eq!(
        p.in_flight_recent(now),
        (1, Some(c_at + Duration::from_millis(1))),
        "the first is overdue, the second not yet"
    );
}

/// A paced probe whose window is full has nothing to send at the next
/// scheduled instant: its timer is the loss deadline, not a wake-up that
/// can send nothing.
#[test]
fn paced_datagram_window_full_sets_the_loss_deadline_not_the_schedule() {
    let config = paced_datagrams(None, 1);
    let mut p = DatagramProbe::<8>::new(config, T0).unwrap();
    let mut buf = [0u8; 64];
    p.poll_transmit(T0, &mut buf).unwrap();
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_secs(1)));
}

/// A datagram that gave its ring slot up early, came back before the slot
/// was reused, and then came back again: verified, then a duplicate (not
/// late); and with everything resolved the probe is done.
#[test]
fn datagram_given_up_early_then_back_twice_before_its_slot_is_reused_is_verified_then_duplicate() {
    let config = DatagramProbeConfig {
        seed: 5,
        size: SizeRange::fixed(64),
        count: None,
        window: 4,
        loss_timeout: Duration::from_secs(5),
        interval: Some(Duration::from_millis(200).into()),
    };
    let mut p = DatagramProbe::<4>::new(config, T0).unwrap();
    let mut bufs = [[0u8; 64]; 4];
    for (k, b) in bufs.iter_mut().enumerate() {
        let at = T0 + Duration::from_millis(200 * k as u64);
        assert_eq!(p.poll_transmit(at, &mut b[..]), Some(64));
        if k > 0 {
            p.handle_datagram(at, &b[..]);
        }
    }
    // Ring full, datagram 0 overdue (5 s / 50) with later ones back: its slot
    // is given up, and datagram 4 is not due until 800 ms.
    let mut next = [0u8; 64];
    let t = T0 + Duration::from_millis(700);
    assert_eq!(p.poll_transmit(t, &mut next), None);
    assert_eq!(p.next_due(), Some(T0 + Duration::from_millis(800)));
    assert!(matches!(
        p.handle_datagram(t, &bufs[0]),
        DatagramOutcome::Verified { .. }
    ));
    assert_eq!(
        p.handle_datagram(t, &bufs[0]),
        DatagramOutcome::Duplicate { seq: 0 }
    );
    let s = *p.stats();
    assert_eq!(
        (s.verified, s.duplicate, s.late, s.lost),
        (4, 1, 0, 0),
        "{s:?}"
    );
    p.finish();
    assert!(p.is_done(), "nothing in flight, nothing remembered");
    assert_eq!(p.poll_timeout(), None);
}

/// An altered echo resolves its datagram: it frees the window at once and
/// is not counted lost later.
#[test]
fn datagram_corrupt_echo_resolves_it_and_frees_the_window() {
    let mut p = dgram(1);
    let mut buf = [0u8; 256];
    let n = p.poll_transmit(T0, &mut buf).unwrap();
    buf[n - 1] ^= 0x01;
    assert_eq!(
        p.handle_datagram(T0, &buf[..n]),
        DatagramOutcome::Corrupt { seq: 0 }
    );
    assert!(
        p.poll_transmit(T0, &mut buf).is_some(),
        "a window of 1 is free again"
    );
    p.finish();
    p.handle_timeout(T0 + Duration::from_secs(1));
    assert!(p.is_done());
    assert_eq!(
        (p.stats().corrupt, p.stats().lost),
        (1, 1),
        "only the second is lost"
    );
}

/// With every datagram sent, no paced instant is left: the timer is the
/// loss deadline.
#[test]
fn paced_datagram_count_reached_sets_only_the_loss_deadline() {
    let config = paced_datagrams(Some(2), 4);
    let mut p = DatagramProbe::<8>::new(config, T0).unwrap();
    let mut buf = [0u8; 64];
    p.poll_transmit(T0, &mut buf).unwrap();
    p.poll_transmit(T0 + Duration::from_millis(10), &mut buf)
        .unwrap();
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_secs(1)));
}

/// With the count reached no slot is needed: the ring's unanswered oldest
/// is not given up early, and no timer is set for that (one would fire
/// with nothing to do, again and again, until the loss timeout).
#[test]
fn datagram_count_reached_with_the_oldest_unanswered_waits_for_its_loss_timeout() {
    let config = DatagramProbeConfig {
        seed: 5,
        size: SizeRange::fixed(64),
        count: Some(4),
        window: 4,
        loss_timeout: Duration::from_secs(5),
        interval: None,
    };
    let mut p = DatagramProbe::<4>::new(config, T0).unwrap();
    let mut bufs = [[0u8; 64]; 4];
    for b in &mut bufs {
        assert_eq!(p.poll_transmit(T0, b), Some(64));
    }
    for b in &bufs[1..] {
        p.handle_datagram(T0 + Duration::from_micros(40), b);
    }
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_secs(5)));
    let mut next = [0u8; 64];
    assert_eq!(
        p.poll_transmit(T0 + Duration::from_secs(1), &mut next),
        None
    );
    assert_eq!(p.stats().lost, 0);
}

/// A paced probe with room and nothing in flight needs a timer for its
/// next scheduled send, or it would never send again.
#[test]
fn paced_datagram_idle_sets_a_timer_for_the_next_send() {
    let config = paced_datagrams(None, 4);
    let mut p = DatagramProbe::<8>::new(config, T0).unwrap();
    let mut buf = [0u8; 64];
    let n = p.poll_transmit(T0, &mut buf).unwrap();
    p.handle_datagram(T0 + Duration::from_millis(1), &buf[..n]);
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_millis(10)));
}

/// A datagram that gave its ring slot up early is counted lost at its own
/// loss timeout, not at any earlier timeout; back before then, it verifies.
#[test]
fn datagram_given_up_early_is_not_lost_at_a_timeout_before_its_own() {
    let (mut p, bufs) = full_ring_oldest_unanswered();
    let mut next = [0u8; 64];
    assert_eq!(
        p.poll_transmit(T0 + Duration::from_millis(100), &mut next),
        Some(64)
    );
    let before = T0 + Duration::from_secs(4);
    p.handle_timeout(before);
    assert_eq!(p.stats().lost, 0);
    assert!(matches!(
        p.handle_datagram(before, &bufs[0]),
        DatagramOutcome::Verified { .. }
    ));
}

/// A window smaller than the ring is full while the ring is not: the
/// oldest unanswered datagram keeps its place (the window's, not the
/// ring's, limit applies), however long overdue, and is not given up.
#[test]
fn datagram_window_full_short_of_the_ring_does_not_give_its_oldest_up() {
    let config = DatagramProbeConfig {
        seed: 5,
        size: SizeRange::fixed(64),
        count: None,
        window: 2,
        loss_timeout: Duration::from_secs(5),
        interval: None,
    };
    let mut p = DatagramProbe::<4>::new(config, T0).unwrap();
    let mut bufs = [[0u8; 64]; 4];
    for (seq, b) in bufs.iter_mut().enumerate() {
        assert_eq!(p.poll_transmit(T0, &mut b[..]), Some(64), "{seq}");
        // 0 and 2 come back; 1 and 3 are unanswered.
        if seq % 2 == 0 {
            p.handle_datagram(T0, &b[..]);
        }
    }
    let mut next = [0u8; 64];
    let later = T0 + Duration::from_secs(1);
    assert_eq!(
        p.poll_transmit(later, &mut next),
        None,
        "1 and 3 fill the window"
    );
    assert_eq!(p.stats().lost, 0);
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_secs(5)));
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
fn config_error_display_names_the_sizes_and_the_window() {
    use std::string::ToString;
    assert_eq!(
        ConfigError::EmptySizeRange { min: 5, max: 4 }.to_string(),
        "empty size range 5..=4"
    );
    assert_eq!(
        ConfigError::SizeOutOfBounds {
            size: 0,
            min: 1,
            max: 9
        }
        .to_string(),
        "message size 0 is outside 1..=9 for this mode"
    );
    assert_eq!(
        ConfigError::BadWindow { window: 0, max: 4 }.to_string(),
        "a window of 0: at least 1"
    );
    assert_eq!(
        ConfigError::BadWindow { window: 5, max: 4 }.to_string(),
        "datagram window of 5, at most 4 (datagrams the probe tracks)"
    );
}

#[test]
fn probe_error_display_names_the_offset_the_bytes_and_what_is_outstanding() {
    use std::string::ToString;
    assert_eq!(
        ProbeError::Mismatch {
            offset: 237,
            expected: 0x0a,
            actual: 0xff
        }
        .to_string(),
        "mismatch at stream offset 237: sent 0x0a, got 0xff"
    );
    assert_eq!(
        ProbeError::UnexpectedData { offset: 4 }.to_string(),
        "unexpected data at stream offset 4: more came back than was sent"
    );
    assert_eq!(
        ProbeError::Timeout { outstanding: 10 }.to_string(),
        "timed out waiting for 10 outstanding bytes"
    );
}

#[test]
fn config_refuses_a_window_of_0_or_a_datagram_window_beyond_m() {
    let datagram = |window| {
        DatagramProbe::<4>::new(
            DatagramProbeConfig {
                window,
                ..DatagramProbeConfig::default()
            },
            T0,
        )
        .err()
    };
    assert_eq!(
        datagram(0),
        Some(ConfigError::BadWindow { window: 0, max: 4 })
    );
    assert_eq!(
        datagram(5),
        Some(ConfigError::BadWindow { window: 5, max: 4 })
    );
    assert_eq!(datagram(4), None, "a window of M is the ring");
    assert_eq!(
        StreamProbe::<8>::new(
            ProbeConfig {
                pattern: Pattern::Stream { window: 0 },
                ..ProbeConfig::default()
            },
            T0,
        )
        .err(),
        Some(ConfigError::BadWindow {
            window: 0,
            max: usize::MAX
        })
    );
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
