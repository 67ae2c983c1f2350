//! What `ricochet probe` prints at the end of a run, line by line: each
//! figure with its label and unit, the lines that appear only when there is
//! something to say, the result line of each verdict, and the per-target,
//! per-interval and rate-search tables with their columns aligned.

use super::*;
use crate::probe::report::tests::empty_report;
use crate::probe::report::{ConnError, DatagramCounts, ErrorCounts, ErrorKind, TargetReport};

/// Latency percentiles, each a different value (a swapped column shows).
fn lat(count: u64, p50: u64, p90: u64, p99: u64, p999: u64, max: u64, mean: f64) -> Latency {
    Latency {
        count,
        p50,
        p90,
        p99,
        p999,
        max,
        mean,
    }
}

/// The lines of `r`'s table labelled `label` (`connect` is not `connections`).
fn lines(r: &Report, label: &str) -> Vec<String> {
    r.table()
        .lines()
        .filter(|l| l.strip_prefix(label).is_some_and(|v| v.starts_with(' ')))
        .map(str::to_owned)
        .collect()
}

/// The one line of `r`'s table labelled `label`.
fn line(r: &Report, label: &str) -> String {
    let found = lines(r, label);
    assert_eq!(found.len(), 1, "one {label:?} line in:\n{}", r.table());
    found[0].clone()
}

/// A UDP report: datagram counts make it one.
fn udp_report() -> Report {
    let mut r = empty_report();
    r.target = "udp://127.0.0.1:7".to_owned();
    r.datagrams = Some(DatagramCounts {
        max_loss_pct: 1.0,
        ..DatagramCounts::default()
    });
    r.max_loss_pct = 1.0;
    r.window_datagrams = Some(1);
    r
}

fn conn_error(connection: usize, kind: ErrorKind, message: &str) -> ConnError {
    ConnError {
        connection: Some(connection),
        kind,
        offset: None,
        expected: None,
        actual: None,
        message: message.to_owned(),
    }
}

/// Window sizes read as the command line writes them: whole KiB or MiB,
/// else bytes (`1536 B`, not `1 KiB`; `0 B`, not `0 MiB`).
#[test]
fn window_sizes_are_whole_binary_units_or_else_bytes() {
    assert_eq!(bytes(0), "0 B");
    assert_eq!(bytes(512), "512 B");
    assert_eq!(bytes(1024), "1 KiB");
    assert_eq!(bytes(1536), "1536 B");
    assert_eq!(bytes(64 << 10), "64 KiB");
    assert_eq!(bytes(1 << 20), "1 MiB");
    assert_eq!(bytes((1 << 20) + 1024), "1025 KiB");
    assert_eq!(bytes(3 << 20), "3 MiB");
}

/// The `requested` line says what the command line asked: the count or the
/// duration (with its warmup only when there was one), the rate or the
/// closed loop, churn, the connect rate, interval reports, the stream
/// window, the timeout, and UDP's loss allowed.
#[test]
fn requested_line_of_each_option_reads_as_the_command_line_asked() {
    let mut r = empty_report();
    assert_eq!(
        line(&r, "requested"),
        "requested    1000 messages per connection, closed loop, timeout 5s",
        "no window for ping-pong"
    );
    r.count = None;
    r.messages_requested = None;
    r.duration_secs = Some(10.0);
    assert_eq!(
        line(&r, "requested"),
        "requested    for 10s, closed loop, timeout 5s",
        "no warmup, none said"
    );
    r.warmup_secs = 2.5;
    r.rate = Some(2500.0);
    r.lifetime_messages = Some(1);
    r.connect_rate = Some(100.0);
    r.interval_secs = Some(1.0);
    r.pattern = "stream";
    r.window = 256 << 10;
    r.timeout_secs = 0.5;
    assert_eq!(
        line(&r, "requested"),
        "requested    for 10s after a 2s 500ms warmup, rate 2500 msg/s in total, new connection \
         every 1 message, at most 100 connects/s, reports every 1s, window 256 KiB, timeout \
         500ms"
    );
    r.lifetime_messages = None;
    r.lifetime_secs = Some(0.25);
    assert!(
        line(&r, "requested").contains(", new connection every 250ms,"),
        "{}",
        r.table()
    );
    let u = udp_report();
    assert_eq!(
        line(&u, "requested"),
        "requested    1000 messages per connection, closed loop, timeout 5s, max loss 1%"
    );
}

/// A UDP stream's window says how many datagrams it kept in flight, and
/// says "capped" only when the window asked for more than the cap: a
/// window of exactly 64 datagrams is not capped.
#[test]
fn udp_window_is_capped_only_when_it_asked_for_more_than_64_datagrams() {
    let window = |window: usize, n: usize| {
        let mut r = udp_report();
        r.pattern = "stream";
        r.window = window;
        r.window_datagrams = Some(n);
        let l = line(&r, "requested");
        let w = l
            .split(", ")
            .find(|p| p.starts_with("window"))
            .map(str::to_owned);
        w.unwrap_or_else(|| panic!("a window in {l}"))
    };
    assert_eq!(
        window(1 << 20, UDP_MAX_IN_FLIGHT),
        "window 1 MiB capped at 64 datagrams in flight per socket (4 KiB)"
    );
    assert_eq!(
        window(64 * 64, UDP_MAX_IN_FLIGHT),
        "window 4 KiB (64 datagrams)"
    );
    assert_eq!(
        window(65 * 64, UDP_MAX_IN_FLIGHT),
        "window 4160 B capped at 64 datagrams in flight per socket (4 KiB)"
    );
    assert_eq!(window(512, 8), "window 512 B (8 datagrams)");
    assert_eq!(window(64, 1), "window 64 B (1 datagram)");
}

/// The result line of each verdict: what passed, or how many errors and
/// why the run stopped, then how many connections (sockets, slots) ended
/// cleanly, how many churned connections opened, and how many never started.
#[test]
fn result_line_of_each_verdict_says_what_passed_or_how_many_errors() {
    let result = |r: &Report| line(r, "result");
    let mut r = empty_report();
    r.connections = 3;
    r.ok = true;
    r.connections_ok = 3;
    assert_eq!(
        result(&r),
        "result       OK: every byte verified (3 of 3 connections completed cleanly)"
    );
    r.ok = false;
    r.connections_ok = 1;
    r.errors.timeout = 2;
    assert_eq!(
        result(&r),
        "result       FAILED: 2 errors (1 of 3 connections completed cleanly)"
    );
    r.errors = Default::default();
    r.stopped_early = Some(StopReason::Interrupted);
    r.connections_not_started = 2;
    assert_eq!(
        result(&r),
        "result       INTERRUPTED: partial report, no error so far (1 of 3 connections \
         completed cleanly, 2 not started)"
    );
    r.errors.early_close = 1;
    assert_eq!(
        result(&r),
        "result       FAILED: 1 error; interrupted, partial report (1 of 3 connections \
         completed cleanly, 2 not started)"
    );

    // Churn: slots, and the connections they opened.
    let mut c = empty_report();
    c.lifetime_secs = Some(1.0);
    c.ok = true;
    c.connections_ok = 1;
    c.connections_opened = 5;
    assert_eq!(
        result(&c),
        "result       OK: every byte verified (1 of 1 connection slot completed cleanly, 5 \
         connections opened)"
    );
    c.lifetime_secs = None;
    c.lifetime_messages = Some(1);
    c.connections_opened = 1;
    assert!(
        result(&c).ends_with("(1 of 1 connection slot completed cleanly, 1 connection opened)"),
        "{}",
        result(&c)
    );

    let mut u = udp_report();
    u.connections = 2;
    u.connections_ok = 2;
    u.ok = true;
    assert_eq!(
        result(&u),
        "result       OK: every datagram verified (2 of 2 sockets without error or loss)"
    );
    u.datagrams.as_mut().unwrap().lost = 3;
    u.connections_ok = 1;
    assert_eq!(
        result(&u),
        "result       OK: every datagram that came back verified; 3 lost, within --max-loss 1% \
         (1 of 2 sockets without error or loss)"
    );
    u.ok = false;
    u.errors.corrupt = 1;
    assert_eq!(
        result(&u),
        "result       FAILED: 1 error (1 of 2 sockets without error or loss)"
    );
    u.stopped_early = Some(StopReason::LossBudget);
    assert_eq!(
        result(&u),
        "result       FAILED: 1 error; stopped early, the losses already exceed --max-loss 1% \
         of the whole run (1 of 2 sockets without error or loss)"
    );
}

/// A paced count run that verified everything, with every optional figure
/// measured: the whole table, each figure on its labelled line.
#[test]
fn table_of_a_paced_count_run_shows_every_figure_measured() {
    let mut r = empty_report();
    r.connections = 2;
    r.size_min = 16;
    r.size_max = 1024;
    r.seed = 7;
    r.count = Some(100);
    r.rate = Some(1000.0);
    r.messages_requested = Some(200);
    r.messages_sent = 200;
    r.messages_verified = 200;
    r.bytes_sent = 51_200;
    r.bytes_verified = 51_100;
    // 200 round trips at 1000 msg/s: a 0.2 s schedule, longer than 0.199 s.
    r.round_trips = 200;
    r.measured_secs = 0.199;
    r.round_trips_per_sec = 1005.03;
    r.mb_per_sec = 0.257;
    r.mbit_per_sec = 2.057;
    r.latency_us = lat(200, 812, 950, 1_200, 1_500, 12_345, 850.6);
    r.latency_uncorrected_us = Some(lat(200, 700, 800, 1_000, 1_100, 1_300, 720.2));
    r.send_lateness_us = Some(lat(200, 5, 7, 40, 90, 120, 6.0));
    r.connect_us = Some(lat(2, 150, 160, 300, 305, 310, 200.0));
    r.first_byte_us = Some(lat(2, 900, 950, 1_000, 1_005, 1_010, 950.0));
    r.ok = true;
    r.connections_ok = 2;
    assert_eq!(
        r.table(),
        "\
target       tcp://127.0.0.1:7 (raw, pingpong, 16..=1024 B)
connections  2 on 1 thread, seed 7
requested    100 messages per connection, rate 1000 msg/s in total, timeout 5s
verified     200 of 200 messages sent (200 requested), 51100 of 51200 bytes
measured     0.199 s, 200 round trips (the span of their schedule at 1000 msg/s)
round trips  1005.0 /s (requested 1000 /s)
throughput   0.257 MB/s = 2.057 Mbit/s echoed and verified (M = 10^6)
latency      p50 812 us, p90 950 us, p99 1200 us, p99.9 1500 us, max 12.35 ms, mean 851 us (from the scheduled sends)
uncorrected  p50 700 us, p90 800 us, p99 1000 us, p99.9 1100 us, max 1300 us, mean 720 us (from the actual sends)
send late    p50 5 us, p99 40 us, p99.9 90 us, max 120 us: the probe's own sends behind their schedule
connect      p50 150 us, p99 300 us, max 310 us (2 connections)
first byte   p50 900 us, p99 1000 us, max 1010 us (from the connect call)
errors       none
result       OK: every byte verified (2 of 2 connections completed cleanly)
"
    );
}

/// Figures with nothing measured are left out, not shown as zeros: no
/// uncorrected latency, send lateness, connect or first byte line when
/// none was measured, and a paced count run with no round trip, or one
/// whose span outlasted its schedule, does not claim the schedule's span.
#[test]
fn figures_with_nothing_measured_are_left_out_of_the_table() {
    let mut r = empty_report();
    r.rate = Some(1000.0);
    r.latency_uncorrected_us = Some(Latency::default());
    r.send_lateness_us = Some(Latency::default());
    r.connect_us = Some(Latency::default());
    r.first_byte_us = Some(Latency::default());
    for absent in ["uncorrected", "send late", "connect", "first byte"] {
        assert_eq!(lines(&r, absent), Vec::<String>::new(), "{}", r.table());
    }
    assert_eq!(line(&r, "measured"), "measured     0.000 s, 0 round trips");
    assert_eq!(
        line(&r, "latency"),
        "latency      none measured: no round trip completed in the measured span"
    );
    // One of each: shown.
    let one = lat(1, 10, 10, 10, 10, 10, 10.0);
    r.latency_uncorrected_us = Some(one);
    r.send_lateness_us = Some(one);
    r.connect_us = Some(one);
    r.first_byte_us = Some(one);
    for present in ["uncorrected", "send late", "connect", "first byte"] {
        assert_eq!(lines(&r, present).len(), 1, "{}", r.table());
    }
    // 300 round trips took longer than their 0.3 s schedule: the span is
    // the measured one.
    r.round_trips = 300;
    r.measured_secs = 0.4;
    assert_eq!(
        line(&r, "measured"),
        "measured     0.400 s, 300 round trips"
    );
    // Not paced: no schedule, no "scheduled sends".
    r.rate = None;
    r.measured_secs = 0.1;
    r.latency_us = one;
    assert_eq!(
        line(&r, "measured"),
        "measured     0.100 s, 300 round trips"
    );
    assert_eq!(
        line(&r, "latency"),
        "latency      p50 10 us, p90 10 us, p99 10 us, p99.9 10 us, max 10 us, mean 10 us"
    );
    assert_eq!(line(&r, "round trips"), "round trips  0.0 /s");
    assert_eq!(
        line(&r, "target"),
        "target       tcp://127.0.0.1:7 (raw, pingpong, 64 B)"
    );
}

/// Churned connections get their own line (with either kind of
/// `--lifetime`), and a TLS run's connect line says the handshakes are in it.
#[test]
fn churn_and_tls_runs_add_their_lines() {
    let mut r = empty_report();
    assert_eq!(lines(&r, "connections").len(), 1, "{}", r.table());
    r.lifetime_secs = Some(0.5);
    r.connections_opened = 5;
    r.connections_completed = 4;
    r.connections_per_sec = 20.0;
    assert_eq!(
        lines(&r, "connections")[1],
        "connections  5 opened, 4 closed cleanly in the measured span: 20.0 /s"
    );
    r.connect_us = Some(lat(5, 150, 160, 300, 305, 310, 200.0));
    r.tls = Some(TlsReport {
        server_name: "localhost".to_owned(),
        verified: true,
        handshakes: 5,
        ..TlsReport::default()
    });
    assert_eq!(
        line(&r, "connect"),
        "connect      p50 150 us, p99 300 us, max 310 us (5 connections, TLS handshakes \
         included)"
    );
    assert_eq!(
        line(&r, "handshakes"),
        "handshakes   5 (resumption off), none in the measured span; certificate localhost \
         verified"
    );
}

/// Errors: the count by kind, the first in detail, how many more were only
/// counted; then warnings and hints; a UDP run's datagram accounting.
#[test]
fn errors_are_counted_by_kind_shown_in_detail_and_the_rest_counted() {
    let mut r = empty_report();
    assert_eq!(line(&r, "errors"), "errors       none");
    r.errors.timeout = 2;
    r.errors.refused = 1;
    r.error_details = vec![
        conn_error(0, ErrorKind::Refused, "refused"),
        conn_error(1, ErrorKind::Timeout, "timed out"),
    ];
    r.warnings = vec!["a warning".to_owned()];
    r.hints = vec!["a hint".to_owned()];
    let t = r.table();
    assert!(
        t.contains(
            "errors       3 errors (refused 1, timeout 2)\n  connection 0: refused\n  \
             connection 1: timed out\n  … and 1 more\nwarning      a warning\nhint         a \
             hint\nresult       FAILED: 3 errors"
        ),
        "{t}"
    );
    // All shown: nothing more.
    r.errors.timeout = 1;
    assert!(
        r.table()
            .contains("  connection 1: timed out\nwarning      a warning\n"),
        "{}",
        r.table()
    );

    let mut u = udp_report();
    u.datagrams = Some(DatagramCounts {
        sent: 100,
        verified: 95,
        reordered: 2,
        lost: 3,
        corrupt: 1,
        duplicate: 6,
        late: 7,
        foreign: 4,
        loss_pct: 3.0,
        max_loss_pct: 5.0,
        ..DatagramCounts::default()
    });
    assert_eq!(
        line(&u, "datagrams"),
        "datagrams    sent 100, verified 95 (reordered 2), lost 3 (3.000%, allowed 5%), \
         corrupt 1, duplicate 6, late 7, foreign 4"
    );
}

mod rows;
