use super::*;

fn window(start_ms: u64, end_ms: Option<u64>) -> Window {
    Window {
        start: Instant::from_millis(start_ms),
        end: end_ms.map(Instant::from_millis),
        paced: false,
    }
}

#[test]
fn tally_counts_only_inside_the_window() {
    let mut t = Tally::new(window(100, Some(200))).unwrap();
    let d = Duration::from_micros(50);
    for ms in [50, 100, 150, 200, 250] {
        let now = Instant::from_millis(ms);
        t.verified(now, 10);
        t.round_trip(now, d, d);
        t.completed(now);
    }
    assert_eq!(t.round_trips(), 3);
    // Latency by the due instant, 50 us earlier: 149.95 and 199.95 ms
    // are inside, 99.95 (the warmup) and 249.95 are not.
    assert_eq!((t.rtt.len(), t.rtt_sent.len()), (2, 2));
    assert_eq!(t.window_bytes, 30);
    assert_eq!(t.completed, 3);
    assert_eq!(t.last_verified, Some(Instant::from_millis(200)));
}

/// A message due inside the window whose echo comes after its end (a
/// server stalled at the end of the run) is a round trip of the
/// window, with its whole wait; one due in the warmup is not.
#[test]
fn tally_times_round_trips_by_when_they_were_due() {
    let mut t = Tally::new(window(100, Some(200))).unwrap();
    let stalled = Duration::from_millis(1_900);
    t.round_trip(Instant::from_millis(2_000), stalled, stalled);
    let warmup = Duration::from_millis(100);
    t.round_trip(Instant::from_millis(150), warmup, warmup);
    assert_eq!(t.rtt.len(), 1, "the stalled one, not the warmup's");
    assert_eq!(t.round_trips(), 1, "completed inside: the warmup's");
    let max = latency_of(&t.rtt).max;
    assert!((1_900_000..1_901_000).contains(&max), "{max}");
}

/// A paced run that fell behind in the warmup catches the backlog up in
/// the window: those round trips, due before the start, are not the
/// window's (they lifted the rate reported above the one asked for); a
/// closed loop's message in flight at the start still counts.
#[test]
fn paced_tally_leaves_out_round_trips_due_in_the_warmup() {
    let rtt = Duration::from_millis(80);
    let now = Instant::from_millis(150);
    let mut paced = Tally::new(Window {
        paced: true,
        ..window(100, Some(200))
    })
    .unwrap();
    paced.round_trip(now, rtt, Duration::from_micros(50));
    assert_eq!(paced.round_trips(), 0, "due at 70 ms, in the warmup");
    paced.round_trip(now, Duration::from_millis(50), Duration::from_micros(50));
    assert_eq!(paced.round_trips(), 1, "due at 100 ms, the start");
    let mut closed = Tally::new(window(100, Some(200))).unwrap();
    closed.round_trip(now, rtt, rtt);
    assert_eq!(closed.round_trips(), 1, "sent at 70 ms, completed inside");
}

/// Messages the end held back: each due one in the window waits until
/// `now`; exact when few.
#[test]
fn tally_unsent_records_each_wait_until_now() {
    let mut t = Tally::new(window(0, Some(1_000))).unwrap();
    let pace = Pace::from(Duration::from_millis(100));
    // Due at 900, 1000 (in the window) and 1100 ms (after it).
    t.unsent(
        Instant::from_millis(900),
        pace,
        3,
        Instant::from_millis(1_200),
    );
    let l = latency_of(&t.rtt);
    assert_eq!(l.count, 2);
    assert!((300_000..300_400).contains(&l.max), "{l:?}");
    assert!((199_900..200_100).contains(&l.p50), "{l:?}");
}

/// A million messages held back cost at most `UNSENT_GROUPS` records
/// (a rate of 10^9/s held for a second once took seconds), and still
/// count as many waits, spread from the first's to the last's.
#[test]
fn tally_unsent_of_a_huge_backlog_is_bounded_work() {
    let mut t = Tally::new(window(0, Some(1_000))).unwrap();
    let (first, now) = (Instant::from_millis(500), Instant::from_millis(1_500));
    let pace = Pace::from_nanos(1_000);
    let n = pace.due_by(first, now) + 1;
    let groups: Vec<_> = unsent_groups(first, pace, n).collect();
    assert!(groups.len() <= 10_000, "{} records", groups.len());
    assert_eq!(groups.iter().map(|g| g.1).sum::<u64>(), n);
    t.unsent(first, pace, n, now);
    // Due at or before 1000 ms: 500,001 of them (give or take a group).
    let group = n.div_ceil(UNSENT_GROUPS);
    assert!(t.rtt.len().abs_diff(500_001) <= group, "{}", t.rtt.len());
    let l = latency_of(&t.rtt);
    assert!((999_000..1_001_000).contains(&l.max), "{l:?}");
    assert!((499_000..501_000).contains(&t.rtt.min()), "{l:?}");
}

/// A backlog that is not a whole number of groups ends with a shorter
/// group: the groups still count each message once.
#[test]
fn tally_unsent_of_a_backlog_with_a_partial_last_group_counts_each_once() {
    let (first, pace) = (Instant::from_millis(0), Pace::from_nanos(1_000));
    // Groups of 3 (20,002 / 10,000, rounded up): 6,667 of them, then 1.
    let n = 2 * UNSENT_GROUPS + 2;
    let groups: Vec<_> = unsent_groups(first, pace, n).collect();
    assert_eq!(groups.len(), 6_668);
    assert_eq!(groups.last().map(|g| g.1), Some(1), "the one left over");
    assert_eq!(groups.iter().map(|g| g.1).sum::<u64>(), n);
}

#[test]
fn tally_merge_adds_histograms_and_counters() {
    let mut a = Tally::new(window(0, None)).unwrap();
    let mut b = Tally::new(window(0, None)).unwrap();
    a.connected(Duration::from_micros(10));
    b.connected(Duration::from_micros(30));
    b.round_trip(
        Instant::from_millis(1),
        Duration::from_micros(80),
        Duration::from_micros(70),
    );
    a.merge(&b);
    assert_eq!(a.connects, 2);
    assert_eq!(a.connect.len(), 2);
    assert_eq!(latency_of(&a.rtt).max, 80);
    assert_eq!(latency_of(&a.rtt_sent).max, 70);
}

fn conn_error(connection: usize) -> ConnError {
    ConnError {
        connection: Some(connection),
        kind: super::super::report::ErrorKind::Timeout,
        offset: None,
        expected: None,
        actual: None,
        message: String::new(),
    }
}

/// A tally whose every counter is `k * 100` plus its own number (so
/// no two are equal, and sums differ from products), with histograms
/// of one value each and `k` ms as its last verified instant.
fn filled(k: u64) -> Tally {
    let mut t = Tally::new(window(0, None)).unwrap();
    let n = |i: u64| k * 100 + i;
    let us = Duration::from_micros(k * 10);
    t.round_trip(Instant::from_millis(k), us, us);
    t.lateness(Instant::from_millis(k), us);
    t.connected(us);
    t.first_byte(us);
    t.handshake(Instant::from_millis(k), us, true);
    (t.handshakes, t.resumed, t.split_stalls) = (n(1), n(2), n(3));
    (t.window_bytes, t.window_round_trips) = (n(4), n(5));
    t.last_verified = Some(Instant::from_millis(k));
    (t.messages_sent, t.messages_verified) = (n(6), n(7));
    (t.bytes_sent, t.bytes_verified, t.messages_cut) = (n(8), n(9), n(10));
    (t.connections_ok, t.not_started) = (n(11) as usize, n(12) as usize);
    (t.connects, t.completed) = (n(13), n(14));
    t.datagrams = DatagramCounts {
        sent: n(15),
        verified: n(16),
        lost: n(17),
        lost_on_failure: n(18),
        corrupt: n(19),
        duplicate: n(20),
        late: n(21),
        foreign: n(22),
        reordered: n(23),
        ..DatagramCounts::default()
    };
    (t.send_blocked, t.foreign_short) = (n(24), n(25));
    t.foreign_shortest = Some(n(26) as usize);
    t.reset_unverified = n(27);
    t.refused_unverified = n(28);
    t.closed_unverified = n(29);
    t.error(conn_error(k as usize));
    t
}

/// Each worker thread tallies its share: the run's figures are their
/// sums, whatever the counter (the merged report is the only one).
#[test]
fn merged_tallies_add_every_counter_and_keep_the_extremes() {
    let mut a = filled(1);
    a.merge(&filled(2));
    let n = |i: u64| 300 + 2 * i;
    assert_eq!(
        (a.handshakes, a.resumed, a.split_stalls),
        (n(1), n(2), n(3))
    );
    assert_eq!((a.window_bytes, a.round_trips()), (n(4), n(5)));
    assert_eq!(a.last_verified, Some(Instant::from_millis(2)), "the later");
    assert_eq!((a.messages_sent, a.messages_verified), (n(6), n(7)));
    assert_eq!(
        (a.bytes_sent, a.bytes_verified, a.messages_cut),
        (n(8), n(9), n(10))
    );
    assert_eq!(
        (a.connections_ok, a.not_started),
        (n(11) as usize, n(12) as usize)
    );
    assert_eq!((a.connects, a.completed), (n(13), n(14)));
    let d = a.datagrams;
    assert_eq!(
        [d.sent, d.verified, d.lost, d.lost_on_failure, d.corrupt],
        [n(15), n(16), n(17), n(18), n(19)]
    );
    assert_eq!(
        [d.duplicate, d.late, d.foreign, d.reordered],
        [n(20), n(21), n(22), n(23)]
    );
    assert_eq!((a.send_blocked, a.foreign_short), (n(24), n(25)));
    assert_eq!(a.foreign_shortest, Some(126), "the shorter");
    assert_eq!(
        (
            a.reset_unverified,
            a.refused_unverified,
            a.closed_unverified
        ),
        (n(27), n(28), n(29))
    );
    assert_eq!((a.errors.timeout, a.details.len()), (2, 2));
    for h in [&a.rtt, &a.rtt_sent, &a.late, &a.connect, &a.first_byte] {
        assert_eq!((h.len(), h.min(), h.max()), (2, 10, 20));
    }
    assert_eq!(a.handshake_time.len(), 2);
}

/// Extremes merge with a side that has none: the other's stands.
#[test]
fn merged_extremes_of_a_tally_without_any_are_the_others() {
    let mut empty = Tally::new(window(0, None)).unwrap();
    empty.merge(&filled(1));
    assert_eq!(empty.last_verified, Some(Instant::from_millis(1)));
    assert_eq!(empty.foreign_shortest, Some(126));
    let mut full = filled(1);
    full.merge(&Tally::new(window(0, None)).unwrap());
    assert_eq!(full.last_verified, Some(Instant::from_millis(1)));
    assert_eq!(full.foreign_shortest, Some(126));
    // The shorter of the two, whichever side holds it.
    let mut b = filled(2);
    b.merge(&filled(1));
    assert_eq!(b.foreign_shortest, Some(126));
    assert_eq!(b.last_verified, Some(Instant::from_millis(2)));
}

/// Every error counts; the details stop at `MAX_ERROR_DETAILS`, the
/// first ones kept, in a thread's tally as in the merge of two.
#[test]
fn errors_past_the_details_cap_count_without_details() {
    let mut a = Tally::new(window(0, None)).unwrap();
    for c in 0..MAX_ERROR_DETAILS - 1 {
        assert!(a.keeps_details(), "error {c}");
        a.error(conn_error(c));
    }
    assert_eq!(a.details.len(), MAX_ERROR_DETAILS - 1);
    assert!(a.keeps_details(), "room for one more");
    let mut b = Tally::new(window(0, None)).unwrap();
    for c in 100..100 + MAX_ERROR_DETAILS + 1 {
        b.error(conn_error(c));
    }
    assert_eq!(b.errors.timeout, MAX_ERROR_DETAILS as u64 + 1);
    assert_eq!(b.details.len(), MAX_ERROR_DETAILS, "capped");
    assert!(!b.keeps_details(), "no more details: none worth explaining");
    assert_eq!(b.details[0].connection, Some(100), "the first kept");
    a.merge(&b);
    assert_eq!(a.errors.timeout, 2 * MAX_ERROR_DETAILS as u64);
    assert_eq!(a.details.len(), MAX_ERROR_DETAILS, "filled up to the cap");
    let last = a.details.last().and_then(|d| d.connection);
    assert_eq!(last, Some(100), "then the other's first");
}

/// A finished stream connection's counters are what the run reports
/// as sent and verified: each connection adds its own.
#[test]
fn finished_stream_connections_add_their_counters() {
    let mut t = Tally::new(window(0, None)).unwrap();
    for (k, stats) in [(1, 3), (2, 5)] {
        t.add_stream(&ProbeStats {
            messages_sent: stats,
            messages_verified: stats - 1,
            bytes_sent: 100 * k,
            bytes_verified: 100 * k - 10,
        });
    }
    assert_eq!((t.messages_sent, t.messages_verified), (8, 6));
    assert_eq!((t.bytes_sent, t.bytes_verified), (300, 280));
}

/// A finished UDP socket's counters join both the run's message and
/// byte counts and its datagram accounting, field by field.
#[test]
fn finished_udp_sockets_add_their_datagram_counts() {
    let mut t = Tally::new(window(0, None)).unwrap();
    for k in [1, 2] {
        let n = |i: u64| k * 100 + i;
        let s = DatagramProbeStats {
            sent: n(1),
            verified: n(2),
            bytes_verified: n(3),
            lost: n(4),
            corrupt: n(5),
            duplicate: n(6),
            late: n(7),
            foreign: n(8),
            reordered: n(9),
        };
        t.add_datagram(&s, n(10));
    }
    let n = |i: u64| 300 + 2 * i;
    assert_eq!((t.messages_sent, t.messages_verified), (n(1), n(2)));
    assert_eq!((t.bytes_sent, t.bytes_verified), (n(10), n(3)));
    let d = t.datagrams;
    assert_eq!(
        [d.sent, d.verified, d.lost, d.corrupt, d.duplicate],
        [n(1), n(2), n(4), n(5), n(6)]
    );
    assert_eq!([d.late, d.foreign, d.reordered], [n(7), n(8), n(9)]);
    assert_eq!(d.lost_on_failure, 0, "the socket's failure sets it");
}

/// A split echo is a stall from `SPLIT_STALL` on, and only inside the
/// window.
#[test]
fn split_echo_counts_from_the_stall_threshold_inside_the_window() {
    let mut t = Tally::new(window(100, Some(200))).unwrap();
    let short = Duration::from_micros(SPLIT_STALL.as_micros() - 1);
    t.split_echo(Instant::from_millis(150), short);
    assert_eq!(t.split_stalls, 0, "just under the threshold");
    t.split_echo(Instant::from_millis(150), SPLIT_STALL);
    assert_eq!(t.split_stalls, 1, "at the threshold");
    t.split_echo(Instant::from_millis(250), Duration::from_millis(40));
    assert_eq!(t.split_stalls, 1, "after the window");
    t.split_echo(Instant::from_millis(160), Duration::from_millis(40));
    assert_eq!(t.split_stalls, 2);
}

/// Connect and first-byte latencies are recorded whenever they happen
/// (a connection of the warmup serves the window too).
#[test]
fn connect_and_first_byte_latencies_are_recorded_outside_the_window_too() {
    let mut t = Tally::new(window(100, Some(200))).unwrap();
    t.connected(Duration::from_micros(700));
    t.first_byte(Duration::from_micros(900));
    t.first_byte(Duration::from_micros(1_100));
    assert_eq!((t.connects, t.connect.len(), t.connect.max()), (1, 1, 700));
    let l = latency_of(&t.first_byte);
    assert_eq!((l.count, l.max), (2, 1_100));
    assert!((899..=901).contains(&t.first_byte.min()), "{l:?}");
}

#[test]
fn tally_counts_every_handshake_and_times_those_in_the_window() {
    let mut a = Tally::new(window(100, Some(200))).unwrap();
    let took = Duration::from_micros(900);
    a.handshake(Instant::from_millis(50), took, false);
    a.handshake(Instant::from_millis(150), took, true);
    let mut b = Tally::new(window(100, Some(200))).unwrap();
    b.handshake(Instant::from_millis(160), Duration::from_micros(300), true);
    a.merge(&b);
    assert_eq!((a.handshakes, a.resumed), (3, 2));
    let l = latency_of(&a.handshake_time);
    assert_eq!((l.count, l.max), (2, 900));
}
