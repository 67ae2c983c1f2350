use std::sync::Arc;

use ricochet_core::counters::{AbortCounts, CloseCounts, DropCounts};

use super::*;
use crate::serve::stats::Counters;
use crate::serve::tls::{HandshakeCounts, HandshakeFailures};

/// A server's stats where every counter holds a distinct value.
fn busy_stats() -> Arc<ServerStats> {
    let stats = Arc::new(ServerStats::new(1));
    let stream = |base: u64| StreamCounters {
        accepted: base + 1,
        rejected: base + 2,
        closed: CloseCounts {
            peer_finished: base + 3,
            idle_timeout: base + 4,
            local: base + 5,
        },
        aborted: AbortCounts {
            line_too_long: base + 6,
            frame_too_large: base + 7,
            truncated_frame: base + 8,
            drain_timeout: base + 9,
            peer_reset: base + 10,
            timed_out: base + 11,
            local: base + 12,
        },
        lingered: base + 13,
        bytes_in: base + 14,
        bytes_out: base + 15,
        bytes_discarded: base + 16,
        buffered: base + 17,
    };
    let counters = Counters {
        tcp: stream(100),
        unix: stream(200),
        tls: stream(500),
        tls_handshakes: HandshakeCounts {
            // 601 full handshakes, 602 resumed ones.
            completed: 1203,
            resumed: 602,
            failed: HandshakeFailures {
                timeout: 603,
                bad_record: 604,
                certificate: 605,
                protocol: 606,
                closed: 607,
                io: 608,
            },
        },
        udp: DatagramCounters {
            received: 301,
            echoed: 302,
            echoed_bytes: 303,
            dropped: DropCounts {
                oversize: 304,
                loop_guard: 305,
                rate_limited: 306,
                not_unicast: 307,
                unroutable: 308,
                send_full: 309,
                send_failed: 310,
            },
        },
        udp_queue_drops: 311,
        accept_fd_exhausted: 401,
        accept_errors: 402,
    };
    stats.worker(0).publish(&counters);
    stats
}

fn sample(text: &str, name_and_labels: &str) -> u64 {
    let line = text
        .lines()
        .find(|l| l.starts_with(name_and_labels) && l[name_and_labels.len()..].starts_with(' '))
        .unwrap_or_else(|| panic!("no sample {name_and_labels} in\n{text}"));
    line[name_and_labels.len()..]
        .trim()
        .parse()
        .expect("integer value")
}

/// `result` is a partition: each handshake under exactly one result, so
/// the results sum to every handshake (a resumed one is not also counted
/// under a `completed` result).
#[test]
fn tls_handshakes_are_exposed_by_result() {
    let text = render(&busy_stats(), Format::Prometheus);
    let mut sum = 0;
    for (result, v) in [
        ("full", 601),
        ("resumed", 602),
        ("timeout", 603),
        ("bad_record", 604),
        ("certificate", 605),
        ("protocol", 606),
        ("closed", 607),
        ("io", 608),
    ] {
        let key = format!("ricochet_tls_handshakes_total{{result=\"{result}\"}}");
        assert_eq!(sample(&text, &key), v, "{key}");
        sum += v;
    }
    let h = busy_stats().snapshot().tls_handshakes;
    assert_eq!(sum, h.completed + h.failed.total());
    let series = text
        .lines()
        .filter(|l| l.starts_with("ricochet_tls_handshakes_total{"))
        .count();
    assert_eq!(series, 8, "no other result:\n{text}");
}

#[test]
fn every_stream_counter_is_exposed_per_transport_with_its_reason() {
    let text = render(&busy_stats(), Format::Prometheus);
    for (transport, base) in [("tcp", 100), ("unix", 200), ("tls", 500)] {
        let t = format!("transport=\"{transport}\"");
        assert_eq!(
            sample(
                &text,
                &format!("ricochet_connections_accepted_total{{{t}}}")
            ),
            base + 1
        );
        assert_eq!(
            sample(
                &text,
                &format!("ricochet_connections_rejected_total{{{t}}}")
            ),
            base + 2
        );
        for (reason, v) in [("peer_finished", 3), ("idle_timeout", 4), ("local", 5)] {
            let key = format!("ricochet_connections_closed_total{{{t},reason=\"{reason}\"}}");
            assert_eq!(sample(&text, &key), base + v);
        }
        for (reason, v) in [
            ("line_too_long", 6),
            ("frame_too_large", 7),
            ("truncated_frame", 8),
            ("drain_timeout", 9),
            ("peer_reset", 10),
            ("timed_out", 11),
            ("local", 12),
        ] {
            let key = format!("ricochet_connections_aborted_total{{{t},reason=\"{reason}\"}}");
            assert_eq!(sample(&text, &key), base + v);
        }
        assert_eq!(
            sample(
                &text,
                &format!("ricochet_connections_lingered_total{{{t}}}")
            ),
            base + 13
        );
        assert_eq!(
            sample(&text, &format!("ricochet_received_bytes_total{{{t}}}")),
            base + 14
        );
        assert_eq!(
            sample(&text, &format!("ricochet_echoed_bytes_total{{{t}}}")),
            base + 15
        );
        assert_eq!(
            sample(&text, &format!("ricochet_discarded_bytes_total{{{t}}}")),
            base + 16
        );
        assert_eq!(
            sample(&text, &format!("ricochet_buffered_bytes{{{t}}}")),
            base + 17
        );
        // accepted minus every close and abort: none open in these made-up numbers
        let ended: u64 = (3..=12).map(|v| base + v).sum();
        let open = (base + 1).saturating_sub(ended);
        assert_eq!(
            sample(&text, &format!("ricochet_connections_open{{{t}}}")),
            open
        );
    }
}

#[test]
fn every_datagram_counter_is_exposed_with_its_drop_reason() {
    let text = render(&busy_stats(), Format::Prometheus);
    let t = "transport=\"udp\"";
    assert_eq!(
        sample(&text, &format!("ricochet_datagrams_received_total{{{t}}}")),
        301
    );
    assert_eq!(
        sample(&text, &format!("ricochet_datagrams_echoed_total{{{t}}}")),
        302
    );
    assert_eq!(
        sample(&text, &format!("ricochet_echoed_bytes_total{{{t}}}")),
        303
    );
    for (reason, v) in [
        ("oversize", 304),
        ("loop_guard", 305),
        ("rate_limited", 306),
        ("not_unicast", 307),
        ("unroutable", 308),
        ("send_full", 309),
        ("send_failed", 310),
    ] {
        let key = format!("ricochet_datagrams_dropped_total{{{t},reason=\"{reason}\"}}");
        assert_eq!(sample(&text, &key), v);
    }
    let key = format!("ricochet_datagrams_queue_dropped_total{{{t}}}");
    assert_eq!(sample(&text, &key), 311);
    assert_eq!(
        sample(
            &text,
            "ricochet_accept_errors_total{reason=\"fd_exhausted\"}"
        ),
        401
    );
    assert_eq!(
        sample(&text, "ricochet_accept_errors_total{reason=\"other\"}"),
        402
    );
    assert_eq!(sample(&text, "ricochet_stream_sockets_open"), 0);
    let version = format!(
        "ricochet_build_info{{version=\"{}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(sample(&text, &version), 1);
}

#[test]
fn openmetrics_output_types_units_and_ends_with_eof() {
    let text = render(&busy_stats(), Format::OpenMetrics);
    assert!(text.ends_with("# EOF\n"), "{text}");
    assert!(
        text.contains("# TYPE ricochet_connections_closed counter\n"),
        "{text}"
    );
    assert!(
        text.contains("# UNIT ricochet_received_bytes bytes\n"),
        "{text}"
    );
    assert!(
        text.contains("# TYPE ricochet_buffered_bytes gauge\n"),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "ricochet_connections_closed_total{transport=\"unix\",reason=\"idle_timeout\"}"
        ),
        204
    );
}

#[test]
fn prometheus_output_types_every_family_once_with_help() {
    let text = render(&busy_stats(), Format::Prometheus);
    let types: Vec<&str> = text.lines().filter(|l| l.starts_with("# TYPE ")).collect();
    let helps = text.lines().filter(|l| l.starts_with("# HELP ")).count();
    assert_eq!(types.len(), 18, "{text}");
    assert_eq!(helps, types.len());
    let mut names: Vec<&str> = types.iter().map(|l| l.split(' ').nth(2).unwrap()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), types.len(), "a family typed twice: {types:?}");
    for l in &types {
        let name = l.split(' ').nth(2).unwrap();
        if l.ends_with(" counter") {
            assert!(name.ends_with("_total"), "{l}");
        }
    }
}

#[test]
fn format_negotiation_prefers_openmetrics_when_asked() {
    let prometheus = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;\
                      version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    assert_eq!(Format::negotiate(Some(prometheus)), Format::OpenMetrics);
    assert_eq!(Format::negotiate(Some("*/*")), Format::Prometheus);
    assert_eq!(Format::negotiate(None), Format::Prometheus);
}

/// OpenMetrics names a gauge's samples after the family alone (only a
/// counter's end in `_total`): a gauge sampled as a counter would read
/// `ricochet_buffered_bytes_total`, which a strict OpenMetrics parser
/// (Prometheus asks for OpenMetrics first) refuses.
#[test]
fn openmetrics_gauges_are_sampled_under_their_family_name() {
    let text = render(&busy_stats(), Format::OpenMetrics);
    let gauges: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE ")?.strip_suffix(" gauge"))
        .collect();
    for expected in ["ricochet_buffered_bytes", "ricochet_connections_open"] {
        assert!(gauges.contains(&expected), "{expected}: {gauges:?}");
    }
    for gauge in gauges {
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && l.starts_with(gauge))
            .collect();
        assert!(!samples.is_empty(), "no sample of {gauge}");
        for s in samples {
            assert!(s[gauge.len()..].starts_with(['{', ' ']), "{s}");
        }
    }
    assert_eq!(
        sample(&text, "ricochet_buffered_bytes{transport=\"unix\"}"),
        217
    );
}
