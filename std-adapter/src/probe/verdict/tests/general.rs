//! The rest of the verdict: what passes, shown bytes, JSON numbers, and the
//! window warning.

use super::*;

#[test]
fn bytes_show_printable_ascii_and_escape_the_rest() {
    assert_eq!(show_byte(b'm'), "'m' (0x6d)");
    assert_eq!(show_byte(0x9c), "0x9c");
    assert_eq!(show_bytes(b"220 hello\r\n\x00"), "\"220 hello\\r\\n\\x00\"");
}

#[test]
fn json_report_numbers_carry_no_conversion_noise() {
    // 3 round trips over 3.3 ms: rates of 909.0909..., a mean of 1/3 ms.
    let mut t = echoed_at(&[0, 1, 3]);
    t.round_trip(
        Instant::from_micros(3_400),
        ricochet_core::Duration::from_micros(301),
        ricochet_core::Duration::from_micros(301),
    );
    let r = report(None, Stop::Count(3), None, t);
    let j: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
    let mut all = Vec::new();
    floats(&j, "", &mut all);
    assert!(all.iter().any(|(p, _)| p == ".latency_us.mean"), "{all:?}");
    let noisy: Vec<_> = all.iter().filter(|(_, d)| *d > 9).collect();
    assert!(noisy.is_empty(), "{noisy:?} in {j}");
}

#[test]
fn window_below_a_message_warns_per_transport_and_not_at_one_message() {
    let mut spec = ProbeSpec::new(tcp());
    spec.pattern = Pattern::Stream;
    spec.size = ricochet_core::probe::SizeRange::fixed(4096);
    spec.window = 4096;
    assert_eq!(small_window_warning(&spec), None, "one message fits");
    spec.window = 4095;
    let w = small_window_warning(&spec).expect("below one message");
    assert!(w.contains("each connection kept about one message"), "{w}");
    spec.pattern = Pattern::PingPong;
    assert_eq!(small_window_warning(&spec), None, "no window in ping-pong");
    let mut udp = ProbeSpec::new(Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into()));
    udp.pattern = Pattern::Stream;
    udp.size = ricochet_core::probe::SizeRange { min: 12, max: 1000 };
    udp.window = 100;
    let w = small_window_warning(&udp).expect("below one datagram");
    assert!(
        w.contains("the largest messages (1000 bytes)")
            && w.contains("each socket kept about one datagram"),
        "{w}"
    );
}

/// The verdict: a stream run passes when every connection slot completed
/// (or never started: the duration ended first), nothing failed and the
/// run was not stopped; a slot that neither completed nor failed (a
/// connection lost without a count) fails it.
#[test]
fn stream_run_passes_only_when_every_slot_completed_or_never_started() {
    let mut spec = ProbeSpec::new(tcp());
    spec.connections = 4;
    let mut t = echoed_at(&[0, 10]);
    t.connections_ok = 4;
    let r = report_of(&spec, t.clone());
    assert!(r.ok, "{r}");
    // Three done, one never opened: clean, with a warning.
    (t.connections_ok, t.not_started) = (3, 1);
    let r = report_of(&spec, t.clone());
    assert!(r.ok, "{r}");
    assert!(
        any_has(
            &r.warnings,
            "1 of 4 connections were never opened, or sent nothing: the duration ended first"
        ),
        "{:?}",
        r.warnings
    );
    // Three done, none left unopened: one is unaccounted for.
    t.not_started = 0;
    assert!(!report_of(&spec, t.clone()).ok);
    // Every slot done but an error counted.
    t.connections_ok = 4;
    t.errors.count(ErrorKind::Timeout);
    assert!(!report_of(&spec, t.clone()).ok);
    // Every slot done, no error, but interrupted.
    t.errors = Default::default();
    let mut run = facts(None);
    run.stopped_early = Some(StopReason::Interrupted);
    assert!(!build_report(&spec, run, t.clone(), &[t]).ok);
}

/// Quotes, backslashes and tabs are escaped as in a Rust string, so the
/// quoted bytes read back unambiguously.
#[test]
fn shown_bytes_escape_quotes_backslashes_and_tabs() {
    assert_eq!(show_bytes(b"a\"b\\c\td"), r#""a\"b\\c\td""#);
    assert_eq!(
        no_progress(std::time::Duration::from_secs(5)),
        "no progress for 5s"
    );
}

/// A run that ended without a byte echoed and verified does not pass,
/// even with every slot clean (connected only as the duration ended, or
/// never opened): it proved nothing about the server. The warning says
/// why and what to do; the result line says so instead of "0 errors".
#[test]
fn run_that_verified_nothing_fails_and_says_why() {
    let mut spec = ProbeSpec::new(tcp());
    spec.connections = 4;
    let mut t = tally();
    (t.connections_ok, t.not_started) = (0, 4);
    let r = report_over_2s(&spec, t.clone());
    assert!(!r.ok, "{r}");
    assert!(
        any_has(&r.warnings, "nothing was verified: no echo came back"),
        "{:?}",
        r.warnings
    );
    let shown = r.to_string();
    assert!(
        shown.contains("FAILED: nothing verified, no echo came back before the run ended"),
        "{shown}"
    );
    // One round trip verified: it passes.
    let mut t = echoed_at(&[0]);
    (t.connections_ok, t.not_started) = (1, 3);
    assert!(report_over_2s(&spec, t).ok);
}
