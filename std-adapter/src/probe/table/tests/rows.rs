//! The tables under the summary: the per-target rows, the `--interval`
//! lines, the rate search's curve, and the `handshakes` line of a TLS run.

use super::super::*;
use super::{ErrorCounts, TargetReport, lat, lines};
use crate::probe::report::tests::empty_report;

fn target_row(target: &str, latency: Latency) -> TargetReport {
    TargetReport {
        target: target.to_owned(),
        connections: 2,
        messages_sent: 100,
        messages_verified: 90,
        bytes_verified: 5_760,
        round_trips: 90,
        round_trips_per_sec: 450.04,
        mb_per_sec: 0.0288,
        latency_us: latency,
        latency_uncorrected_us: None,
        connect_us: None,
        connections_opened: 2,
        connections_ok: 1,
        errors: ErrorCounts {
            refused: 1,
            ..ErrorCounts::default()
        },
    }
}

/// Several targets get a row each and a total, columns aligned under
/// their titles, `-` for a target with no latency measured; one target
/// gets no per-target table (its row would repeat the summary).
#[test]
fn per_target_rows_of_several_targets_line_up_under_their_titles() {
    let mut r = empty_report();
    r.targets = vec![target_row(
        "tcp://127.0.0.1:7",
        lat(90, 80, 90, 120, 130, 140, 85.0),
    )];
    assert_eq!(lines(&r, "per target"), Vec::<String>::new());
    r.targets
        .push(target_row("unix:///run/echo.sock", Latency::default()));
    r.connections = 4;
    r.messages_verified = 180;
    r.round_trips_per_sec = 900.08;
    r.mb_per_sec = 0.0576;
    r.latency_us = lat(90, 80, 90, 120, 130, 140, 85.0);
    r.errors.refused = 2;
    let t = r.table();
    let at = t.find("per target").expect("a per-target table");
    let table: Vec<&str> = t[at..].lines().take(4).collect();
    assert_eq!(
        table,
        [
            "per target   target                 conns    verified        rt/s       MB/s        p50        p99  errors",
            "             tcp://127.0.0.1:7          2          90       450.0      0.029      80 us     120 us       1",
            "             unix:///run/echo.sock      2          90       450.0      0.029          -          -       1",
            "             total                      4         180       900.1      0.058      80 us     120 us       2",
        ]
    );
    // Short names: the target column is as wide as its title.
    r.targets[0].target = "a".to_owned();
    r.targets[1].target = "b".to_owned();
    let t = r.table();
    let at = t.find("per target").expect("a per-target table");
    let rows: Vec<&str> = t[at..].lines().take(4).collect();
    assert!(rows[0].starts_with("per target   target  conns"), "{t}");
    assert!(rows[1].starts_with("             a       "), "{t}");
    assert!(rows.iter().all(|l| l.len() == rows[0].len()), "{t}");
}

fn interval(latency: Latency, uncorrected: Option<Latency>) -> IntervalReport {
    IntervalReport {
        index: 1,
        start_secs: 1.0,
        end_secs: 2.0,
        round_trips: 1234,
        round_trips_per_sec: 1234.04,
        bytes: 78_976,
        mb_per_sec: 0.078_976,
        connections_completed: 12,
        connections_per_sec: 12.04,
        latency_us: latency,
        latency_uncorrected_us: uncorrected,
        errors: 1,
        errors_total: 3,
        lost: None,
    }
}

/// `--interval` lines: each figure under its title, the uncorrected p99
/// only when paced, the connection rate only with churn, `-` where nothing
/// was measured, and the errors so far in the run.
#[test]
fn interval_lines_put_each_figure_under_its_title() {
    let i = interval(
        lat(1234, 80, 90, 120, 130, 140, 85.0),
        Some(lat(1234, 70, 80, 110, 120, 130, 75.0)),
    );
    assert_eq!(
        IntervalReport::header(false, false),
        "   interval (s)        rt/s       MB/s        p50        p99  errors"
    );
    assert_eq!(
        i.line(false, false),
        "      1.00-2.00      1234.0      0.079      80 us     120 us       3"
    );
    assert_eq!(
        IntervalReport::header(true, true),
        "   interval (s)        rt/s       MB/s        p50        p99  p99 uncorr.     conn/s  errors"
    );
    assert_eq!(
        i.line(true, true),
        "      1.00-2.00      1234.0      0.079      80 us     120 us       110 us       12.0       3"
    );
    let quiet = interval(Latency::default(), Some(Latency::default()));
    assert_eq!(
        quiet.line(true, false),
        "      1.00-2.00      1234.0      0.079          -          -            -       3"
    );
    assert_eq!(
        quiet.line(true, false).len(),
        IntervalReport::header(true, false).len()
    );
    let unpaced = interval(Latency::default(), None);
    assert_eq!(
        unpaced.line(true, false),
        quiet.line(true, false),
        "no uncorrected latency: -"
    );
}

/// The rate search's curve: the rates tried, lowest first (the closed-loop
/// step has no rate and is left out), what each achieved, its latency at
/// the goal's percentile and whether it kept the bound.
#[test]
fn rate_curve_lists_the_rates_tried_lowest_first() {
    let step = |step, rate, achieved, value_us, ok| RateStep {
        step,
        rate,
        achieved,
        value_us,
        round_trips: if value_us == 0 { 0 } else { 100 },
        errors: 0,
        ok,
        why: None,
    };
    let search = RateSearch {
        tool: "ricochet-probe",
        version: "0",
        goal: "p99=1ms".to_owned(),
        percentile: 99.0,
        bound_us: 1_000,
        rate: Some(2000.0),
        at_upper_end: false,
        steps: vec![
            step(1, None, 5000.0, 2_000, false),
            step(2, Some(4000.0), 3990.04, 1_500, false),
            step(3, Some(2000.0), 1999.96, 900, true),
            step(4, Some(3000.0), 2990.0, 0, false),
        ],
        best: None,
        failed: None,
        stopped_early: None,
        ok: true,
    };
    assert_eq!(
        search.curve(),
        "  rate (msg/s)   achieved (/s)         p99  within the bound
          2000          2000.0      900 us  yes
          3000          2990.0           -  no
          4000          3990.0     1500 us  no
"
    );
}

/// The `handshakes` line: how many, resumed or resumption off, the rate
/// (or why there is none), the latency, and whether the certificate was
/// verified, not verified (`--insecure`) or never seen, with the client
/// certificate presented.
#[test]
fn handshakes_line_says_how_many_how_fast_and_what_was_verified() {
    let mut t = TlsReport {
        server_name: "localhost".to_owned(),
        verified: true,
        resumption: true,
        handshakes: 10,
        resumed: 9,
        handshakes_per_sec: Some(123.45),
        handshake_us: lat(8, 300, 350, 400, 450, 500, 320.0),
        ..TlsReport::default()
    };
    assert_eq!(
        handshakes_line(&t),
        "handshakes   10 (9 resumed), 123.5 /s, p50 300 us, p99 400 us, max 500 us (TCP up to \
         done); certificate localhost verified"
    );
    t.resumption = false;
    t.handshakes_per_sec = None;
    t.insecure = true;
    t.verified = false;
    t.client_certificate = Some("client.pem".to_owned());
    assert_eq!(
        handshakes_line(&t),
        "handshakes   10 (resumption off), no rate (fewer than 2 in the measured span, or a \
         span under 10 ms), p50 300 us, p99 400 us, max 500 us (TCP up to done); certificate \
         localhost NOT VERIFIED (--insecure); client certificate client.pem presented"
    );
    t.insecure = false;
    t.handshakes = 0;
    t.handshake_us = Latency::default();
    t.client_certificate = None;
    assert_eq!(
        handshakes_line(&t),
        "handshakes   0 (resumption off), none in the measured span; certificate localhost NOT \
         verified (no handshake completed; the errors say why)"
    );
}
