//! What the probe sends: whole messages within the window, lines and
//! frames, sizes, and offers committed in part.

use super::*;

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
