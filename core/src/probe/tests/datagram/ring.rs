//! The ring of datagrams in flight: giving the oldest up early once overdue,
//! loss at the timeout, and what holds or frees a slot.

use super::*;

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
