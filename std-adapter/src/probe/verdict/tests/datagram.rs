//! UDP runs: losses and their hints, warnings, and the verdict.

use super::*;

fn udp() -> Target {
    Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into())
}

/// A UDP tally: `sent` datagrams of which `verified` came back and `lost` did not.
fn datagrams(sent: u64, verified: u64, lost: u64) -> Tally {
    let mut t = tally();
    t.datagrams.sent = sent;
    t.datagrams.verified = verified;
    t.datagrams.lost = lost;
    t.messages_sent = sent;
    t.messages_verified = verified;
    t.bytes_verified = verified * 64;
    t
}

#[test]
fn udp_stream_loss_names_the_datagrams_in_flight_not_a_closed_loop() {
    let mut spec = ProbeSpec::new(udp());
    spec.pattern = Pattern::Stream;
    let h = hints_of(&spec, datagrams(1000, 900, 100));
    assert_eq!(h.len(), 2, "{h:?}");
    assert!(
        h[1].contains("holds its socket's window for a retransmission timeout"),
        "{h:?}"
    );
    assert!(
        h[0].starts_with("datagrams were lost with up to 64 in flight per socket")
            && h[0].contains("receive buffer overflows")
            && h[0].contains("try a smaller -w, e.g. -w 1024 (16 datagrams of 64 bytes)")
            && h[0].contains("or --rate"),
        "{h:?}"
    );
    assert!(!h[0].contains("closed loop"), "{h:?}");
    // -w 512 -s 64: 8 in flight.
    spec.window = 512;
    let h = hints_of(&spec, datagrams(1000, 900, 100));
    assert!(
        h[0].contains("up to 8 in flight") && h[0].contains("-w 128 (2 datagrams"),
        "{h:?}"
    );
    // Ping-pong keeps its closed-loop hint.
    let h = hints_of(&ProbeSpec::new(udp()), datagrams(1000, 900, 100));
    assert!(h[0].contains("closed loop"), "{h:?}");
}

/// The hold's upper bound is a fiftieth of --timeout, but never under the
/// 1 ms floor: with --timeout under 50 ms the hint says the floor holds,
/// not "at most 1ms (a fiftieth of --timeout 10ms)".
#[test]
fn loss_hold_hint_names_the_floor_when_a_fiftieth_of_the_timeout_is_below_it() {
    let mut spec = ProbeSpec::new(udp());
    spec.timeout = std::time::Duration::from_secs(5);
    let h = loss_hold_hint(&spec);
    assert!(
        h.contains("at least 1ms and at most 100ms (a fiftieth of --timeout 5s)"),
        "{h}"
    );
    spec.timeout = std::time::Duration::from_millis(10);
    let h = loss_hold_hint(&spec);
    assert!(
        h.contains("1ms (a fiftieth of --timeout 10ms, 200us, is below that floor)"),
        "{h}"
    );
    assert!(!h.contains("at most 1ms"), "{h}");
}

/// One duplicate, late, foreign or unsendable datagram is "1 datagram",
/// not "1 datagrams"; the UDP report says how many datagrams a socket
/// kept in flight, and that a --window above 64 of them was capped.
#[test]
fn udp_warnings_count_in_the_singular_and_the_window_says_its_cap() {
    let spec = ProbeSpec::new(udp());
    let mut t = datagrams(10, 10, 0);
    t.datagrams.duplicate = 1;
    t.datagrams.late = 1;
    t.datagrams.foreign = 1;
    t.send_blocked = 1;
    let r = report_of(&spec, t);
    let w = r.warnings.join("\n");
    assert!(w.contains("1 duplicate came back"), "{w}");
    // Late means after --timeout (a datagram back before it is verified,
    // even one that gave its ring slot up early): the warning says which.
    assert!(
        w.contains(
            "1 datagram came back after being counted lost: a datagram not back within \
             --timeout 5s is counted lost"
        ) && !w.contains("fiftieth"),
        "{w}"
    );
    assert!(
        w.contains("1 datagram received that the probe never sent"),
        "{w}"
    );
    assert!(
        w.contains("1 datagram could not be sent (socket buffer full) and counts as lost"),
        "{w}"
    );
    assert!(!w.contains("1 datagrams"), "{w}");
    let mut t = datagrams(10, 10, 0);
    t.datagrams.duplicate = 2;
    let r = report_of(&spec, t);
    assert!(
        r.warnings.join("\n").contains("2 duplicates came back"),
        "{r:?}"
    );

    // Ping-pong: 1 in flight.
    assert_eq!(r.window_datagrams, Some(1));
    let mut spec = ProbeSpec::new(udp());
    spec.pattern = Pattern::Stream;
    spec.window = 1 << 20; // 16384 datagrams of 64 bytes asked for
    let r = report_of(&spec, datagrams(10, 10, 0));
    assert_eq!(r.window_datagrams, Some(64));
    assert!(
        r.table()
            .contains("window 1 MiB capped at 64 datagrams in flight per socket (4 KiB)"),
        "{}",
        r.table()
    );
    spec.window = 512;
    let r = report_of(&spec, datagrams(10, 10, 0));
    assert!(
        r.table().contains("window 512 B (8 datagrams)"),
        "{}",
        r.table()
    );
    // Streams: no datagram window.
    let mut tcp_spec = ProbeSpec::new(tcp());
    tcp_spec.pattern = Pattern::Stream;
    let r = report_of(&tcp_spec, tally());
    assert_eq!(r.window_datagrams, None);
    assert!(r.table().contains("window 256 KiB,"), "{}", r.table());
}

#[test]
fn udp_run_that_lost_every_small_datagram_asks_whether_anything_answers() {
    let spec = ProbeSpec::new(udp());
    let h = hints_of(&spec, datagrams(20, 0, 20));
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(
        h[0].starts_with("nothing came back: all 20 datagrams were lost")
            && h[0].contains("is a UDP echo server listening there")
            && h[0].contains("ICMP port unreachable")
            && h[0].contains("from the same address and port")
            && h[0].contains("loopback or privileged"),
        "{h:?}"
    );
    // A refusal already says nothing listens; large datagrams have their hint.
    let mut t = datagrams(1, 0, 1);
    t.errors.count(ErrorKind::Refused);
    assert!(hints_of(&spec, t).is_empty());
    let mut big = ProbeSpec::new(udp());
    big.size = ricochet_core::probe::SizeRange::fixed(2000);
    let h = hints_of(&big, datagrams(5, 0, 5));
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(h[0].contains("larger than 1472"), "{h:?}");
    // 1401 bytes: over the embedded node's 1400, under Ethernet's 1472 (it
    // asked only whether a server listens).
    big.size = ricochet_core::probe::SizeRange::fixed(1401);
    let h = hints_of(&big, datagrams(3, 0, 3));
    assert_eq!(h.len(), 1, "{h:?}");
    assert!(
        h[0].contains("or it drops datagrams of 1401 bytes (the embedded node takes at most 1400"),
        "{h:?}"
    );
    assert!(!hints_of(&spec, datagrams(3, 0, 3))[0].contains("1400"));
}

/// Losses at a --rate above the default per-source limit name that limit
/// (they blamed only the probe's retransmission wait: the embedded node
/// had counted every one as rate limited).
#[test]
fn udp_loss_at_a_rate_above_the_per_source_limit_names_the_limit() {
    let mut spec = ProbeSpec::new(udp());
    spec.rate = Some(2000.0);
    let h = hints_of(&spec, datagrams(2000, 1741, 259));
    assert!(
        h.iter().any(|h| h
            .starts_with("datagrams were lost at --rate 2000/s, above the 1000/s per source")
            && h.contains("rate limited")
            && h.contains("Try --rate 900")),
        "{h:?}"
    );
    spec.rate = Some(500.0);
    let h = hints_of(&spec, datagrams(2000, 1741, 259));
    assert!(!h.iter().any(|h| h.contains("per source address")), "{h:?}");
}

/// A UDP run has no connection slots to account for: it passes on its
/// errors and losses alone.
#[test]
fn udp_run_passes_without_clean_slots_and_fails_on_an_error() {
    let spec = ProbeSpec::new(udp());
    let t = datagrams(1000, 1000, 0);
    assert_eq!((t.connections_ok, t.not_started), (0, 0));
    let r = report_of(&spec, t.clone());
    assert!(r.ok, "{r}");
    let mut corrupt = t;
    corrupt.errors.count(ErrorKind::Corrupt);
    assert!(!report_of(&spec, corrupt).ok);
}

/// Losses fail a UDP run when they exceed --max-loss of the datagrams
/// sent (exactly the allowance passes), once, with the figures; those lost
/// only because their socket failed are that failure, not a loss error.
#[test]
fn udp_losses_over_max_loss_fail_the_run_once_and_at_it_pass() {
    let mut spec = ProbeSpec::new(udp());
    spec.max_loss_pct = 1.0;
    // 10 of 1000: 1 %, the allowance.
    let r = report_of(&spec, datagrams(1000, 990, 10));
    assert!(r.ok, "{r}");
    assert_eq!(r.errors.loss, 0);
    let d = r.datagrams.expect("a UDP run has datagram counts");
    assert!(near(d.loss_pct, 1.0), "{}", d.loss_pct);
    assert!(near(d.max_loss_pct, 1.0));
    // 11 of 1000: over it.
    let r = report_of(&spec, datagrams(1000, 989, 11));
    assert!(!r.ok);
    assert_eq!(r.errors.loss, 1);
    let loss: Vec<_> = r
        .error_details
        .iter()
        .filter(|e| e.kind == ErrorKind::Loss)
        .collect();
    assert_eq!(loss.len(), 1, "{:?}", r.error_details);
    assert_eq!(
        loss[0].message,
        "11 of 1000 datagrams lost (1.100%), more than the 1% allowed by --max-loss"
    );
    assert_eq!(loss[0].connection, None, "the whole run's");
    // The same 11, 2 of them in flight on a socket that failed: 9 judged.
    let mut t = datagrams(1000, 989, 11);
    t.datagrams.lost_on_failure = 2;
    assert_eq!(report_of(&spec, t).errors.loss, 0);
    // No loss allowed, none lost: passes; one lost: fails.
    spec.max_loss_pct = 0.0;
    assert!(report_of(&spec, datagrams(1000, 1000, 0)).ok);
    assert_eq!(report_of(&spec, datagrams(1000, 999, 1)).errors.loss, 1);
    // Nothing sent: no loss, no division by zero.
    let r = report_of(&spec, datagrams(0, 0, 0));
    assert_eq!(r.datagrams.map(|d| d.loss_pct), Some(0.0));
}

/// The loss error joins the details while they have room, and never
/// pushes them past `MAX_ERROR_DETAILS`.
#[test]
fn udp_loss_error_detail_is_added_only_below_the_details_cap() {
    let spec = ProbeSpec::new(udp());
    let detail = |c: usize| ConnError {
        connection: Some(c),
        kind: ErrorKind::Corrupt,
        offset: Some(0),
        expected: None,
        actual: None,
        message: String::new(),
    };
    let mut t = datagrams(1000, 900, 100);
    for c in 0..MAX_ERROR_DETAILS - 1 {
        t.error(detail(c));
    }
    let r = report_of(&spec, t.clone());
    assert_eq!(r.error_details.len(), MAX_ERROR_DETAILS);
    assert_eq!(
        r.error_details.last().map(|e| e.kind),
        Some(ErrorKind::Loss)
    );
    t.error(detail(MAX_ERROR_DETAILS));
    let r = report_of(&spec, t);
    assert_eq!(r.error_details.len(), MAX_ERROR_DETAILS, "full: not added");
    assert_eq!(r.errors.loss, 1, "still counted");
}

/// A UDP tally of `echoed` round trips, one every `every_ms`, and `lost`
/// datagrams more sent.
fn udp_echoed(echoed: u64, every_ms: u64, lost: u64) -> Tally {
    let at: Vec<u64> = (0..echoed).map(|k| k * every_ms).collect();
    let mut t = echoed_at(&at);
    t.datagrams.sent = echoed + lost;
    t.datagrams.verified = echoed;
    t.datagrams.lost = lost;
    t.messages_sent = echoed + lost;
    t
}

const SIZE_HINT: &str = "datagrams were larger than 1472 bytes";
const IN_FLIGHT_HINT: &str = "datagrams were lost with up to";
const CLOSED_LOOP_HINT: &str = "datagrams were lost in a closed loop";
const SOURCE_RATE_HINT: &str = "per source address";
const HOLD_HINT: &str = "each lost datagram holds its socket's window";

/// Without a loss none of the loss hints, whatever the size, pattern or
/// rate that would otherwise name a cause.
#[test]
fn udp_run_without_losses_gets_no_loss_hint() {
    let mut spec = ProbeSpec::new(udp());
    spec.size = ricochet_core::probe::SizeRange::fixed(1473);
    spec.pattern = Pattern::Stream;
    let h = hints_of(&spec, udp_echoed(100, 10, 0));
    for hint in [SIZE_HINT, IN_FLIGHT_HINT, CLOSED_LOOP_HINT, HOLD_HINT] {
        assert!(!any_has(&h, hint), "{hint}: {h:?}");
    }
    spec.rate = Some(2000.0);
    let h = hints_of(&spec, udp_echoed(100, 10, 0));
    assert!(!any_has(&h, SOURCE_RATE_HINT), "{h:?}");
    // The same with a loss: each names its cause.
    let h = hints_of(&spec, udp_echoed(100, 10, 1));
    assert!(
        any_has(&h, SIZE_HINT) && any_has(&h, SOURCE_RATE_HINT),
        "{h:?}"
    );
}

/// Each loss hint at the bound of its own condition: datagrams of
/// exactly 1472 bytes fit a frame, a rate of exactly 1000/s is within
/// the per-source limit, and with nothing verified the losses are not
/// a window's or a closed loop's (nothing answers: another hint).
#[test]
fn udp_loss_hints_hold_back_at_the_bounds_of_their_conditions() {
    let mut spec = ProbeSpec::new(udp());
    spec.size = ricochet_core::probe::SizeRange::fixed(1472);
    let h = hints_of(&spec, udp_echoed(100, 10, 1));
    assert!(!any_has(&h, SIZE_HINT), "{h:?}");
    assert!(any_has(&h, CLOSED_LOOP_HINT), "{h:?}");
    let h = hints_of(&spec, udp_echoed(0, 10, 100));
    assert!(!any_has(&h, CLOSED_LOOP_HINT), "{h:?}");
    spec.pattern = Pattern::Stream;
    let h = hints_of(&spec, udp_echoed(100, 10, 1));
    assert!(any_has(&h, IN_FLIGHT_HINT), "{h:?}");
    let h = hints_of(&spec, udp_echoed(0, 10, 100));
    assert!(!any_has(&h, IN_FLIGHT_HINT), "{h:?}");
    spec.pattern = Pattern::PingPong;
    spec.rate = Some(1000.0);
    let h = hints_of(&spec, udp_echoed(100, 10, 1));
    assert!(!any_has(&h, SOURCE_RATE_HINT), "{h:?}");
    spec.rate = Some(1001.0);
    let h = hints_of(&spec, udp_echoed(100, 10, 1));
    assert!(any_has(&h, SOURCE_RATE_HINT), "{h:?}");
}

/// With --rate, the hold of lost datagrams is hinted at only when the
/// rate was missed (under 90 % of it); at exactly 90 % it was reached.
#[test]
fn udp_loss_hold_hint_with_a_rate_only_when_the_rate_was_missed() {
    let mut spec = ProbeSpec::new(udp());
    spec.rate = Some(100.0);
    spec.stop = Stop::Duration(std::time::Duration::from_secs(2));
    let report = |echoed: u64| {
        let t = udp_echoed(echoed, 2000 / echoed, 10);
        report_over_2s(&spec, t)
    };
    assert!(!any_has(&report(200).hints, HOLD_HINT), "100/s, the rate");
    assert!(!any_has(&report(180).hints, HOLD_HINT), "90/s, 90 % of it");
    let r = report(100);
    assert!(any_has(&r.hints, HOLD_HINT), "50/s");
    // The rate warning names the losses as what held the rate down.
    let w = r.warnings.join("\n");
    assert!(
        w.contains("not reached") && w.contains("datagrams were lost, and each lost one holds"),
        "{w}"
    );
    let t = udp_echoed(100, 20, 0);
    let r = report_over_2s(&spec, t);
    let w = r.warnings.join("\n");
    assert!(
        w.contains("not reached") && !w.contains("datagrams were lost"),
        "none lost: {w}"
    );
}

/// "Nothing came back" needs something sent, and nothing at all back:
/// a late or a foreign datagram is something.
#[test]
fn udp_nothing_came_back_hint_needs_datagrams_sent_and_none_back() {
    let spec = ProbeSpec::new(udp());
    const NOTHING: &str = "nothing came back";
    assert!(!any_has(&hints_of(&spec, datagrams(0, 0, 0)), NOTHING));
    assert!(any_has(&hints_of(&spec, datagrams(3, 0, 3)), NOTHING));
    let mut t = datagrams(3, 0, 3);
    (t.datagrams.late, t.datagrams.foreign) = (1, 1);
    assert!(!any_has(&hints_of(&spec, t.clone()), NOTHING));
    t.datagrams.late = 0;
    assert!(!any_has(&hints_of(&spec, t.clone()), NOTHING));
    (t.datagrams.late, t.datagrams.foreign) = (1, 0);
    assert!(!any_has(&hints_of(&spec, t), NOTHING));
}

/// Sockets refused while others to the same target were answered: the
/// server serves one peer at a time. Refused with nothing answered is
/// not that (nothing listens).
#[test]
fn udp_refusals_beside_answered_sockets_name_a_one_peer_server() {
    let spec = ProbeSpec::new(udp());
    const ONE_PEER: &str = "while other sockets to the same target were answered";
    let mut t = datagrams(10, 0, 10);
    t.refused_unverified = 1;
    t.errors.count(ErrorKind::Refused);
    assert!(!any_has(&hints_of(&spec, t.clone()), ONE_PEER));
    t.datagrams.verified = 5;
    let h = hints_of(&spec, t.clone());
    assert!(
        any_has(&h, "1 socket was refused (ICMP port unreachable)") && any_has(&h, ONE_PEER),
        "{h:?}"
    );
    t.refused_unverified = 2;
    let h = hints_of(&spec, t);
    assert!(any_has(&h, "2 sockets were refused"), "{h:?}");
}

/// A UDP run with nothing untoward has no warning; a datagram back out of
/// order is a warning (UDP keeps no order), not a failure.
#[test]
fn clean_udp_run_has_no_warning_and_reordering_warns_without_failing() {
    let spec = ProbeSpec::new(udp());
    let r = report_of(&spec, datagrams(10, 10, 0));
    assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    assert!(r.ok);
    let mut t = datagrams(10, 10, 0);
    t.datagrams.reordered = 1;
    let r = report_of(&spec, t);
    assert_eq!(r.warnings.len(), 1, "{:?}", r.warnings);
    assert!(
        r.warnings[0].starts_with("1 datagram came back out of order"),
        "{:?}",
        r.warnings
    );
    assert!(r.ok);
}
