//! Prometheus metrics: the server's counters ([`StatsSnapshot`]) in the
//! text exposition formats, and a tiny HTTP endpoint that serves them
//! ([`MetricsServer`]).
//!
//! Every counter of the core's taxonomy is exposed per transport, as a
//! `transport` label (`tcp`, `unix`, `tls`, `udp`), with a `reason` label where the
//! core counts by reason. Counters end in `_total`, byte counts in `_bytes`:
//!
//! | metric | type | labels |
//! |---|---|---|
//! | `ricochet_connections_accepted_total` | counter | transport |
//! | `ricochet_connections_rejected_total` | counter | transport (over `--max-connections`) |
//! | `ricochet_connections_closed_total` | counter | transport, reason (`peer_finished`, `idle_timeout`, `local`) |
//! | `ricochet_connections_aborted_total` | counter | transport, reason (`line_too_long`, `frame_too_large`, `truncated_frame`, `drain_timeout`, `peer_reset`, `timed_out`, `local`) |
//! | `ricochet_connections_lingered_total` | counter | transport |
//! | `ricochet_connections_open` | gauge | transport (sessions accepted and not ended) |
//! | `ricochet_received_bytes_total` | counter | transport (streams) |
//! | `ricochet_echoed_bytes_total` | counter | transport (streams and UDP payloads) |
//! | `ricochet_discarded_bytes_total` | counter | transport (received, never echoed) |
//! | `ricochet_buffered_bytes` | gauge | transport |
//! | `ricochet_datagrams_received_total` | counter | transport |
//! | `ricochet_datagrams_echoed_total` | counter | transport |
//! | `ricochet_datagrams_dropped_total` | counter | transport, reason (`oversize`, `loop_guard`, `rate_limited`, `not_unicast`, `unroutable`, `send_full`, `send_failed`) |
//! | `ricochet_datagrams_queue_dropped_total` | counter | transport (dropped by the kernel, the receive queue full: never received) |
//! | `ricochet_tls_handshakes_total` | counter | result, one per handshake (`full`, `resumed`, `timeout`, `bad_record`, `certificate`, `protocol`, `closed`, `io`) |
//! | `ricochet_stream_sockets_open` | gauge | (sockets, including ones finishing their close) |
//! | `ricochet_accept_errors_total` | counter | reason (`fd_exhausted`, `other`) |
//! | `ricochet_build_info` | gauge (1) | version |
//!
//! Encoding goes through the official `prometheus-client` crate: a
//! [`Collector`] reads one snapshot per scrape, so a scrape costs the
//! workers nothing but the brief lock each takes once per event-loop turn
//! to publish its counters.

mod http;
mod spare;

use std::sync::Arc;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::{Registry, Unit};
use ricochet_core::counters::{AbortCounts, CloseCounts, DropCounts};
use ricochet_core::{DatagramCounters, StreamCounters};

pub use http::{MetricsConfig, MetricsError, MetricsHandle, MetricsServer};

use super::stats::{ServerStats, StatsSnapshot};

/// A transport's label and where its counters are in a snapshot.
type Transport<C> = (&'static str, fn(&StatsSnapshot) -> &C);

/// Stream transports, as labelled in the exposition. A new stream
/// transport (TLS) is one more line here.
const STREAM_TRANSPORTS: &[Transport<StreamCounters>] = &[
    ("tcp", |s| &s.tcp),
    ("unix", |s| &s.unix),
    ("tls", |s| &s.tls),
];

/// Datagram transports, as labelled in the exposition.
const DATAGRAM_TRANSPORTS: &[Transport<DatagramCounters>] = &[("udp", |s| &s.udp)];

/// A text exposition format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// OpenMetrics 1.0 text (`application/openmetrics-text`), what
    /// Prometheus asks for first.
    OpenMetrics,
    /// The Prometheus text format 0.0.4 (`text/plain`), for any other client.
    Prometheus,
}

impl Format {
    /// The format an HTTP `Accept` header asks for: OpenMetrics if it names
    /// `application/openmetrics-text`, else the Prometheus text format.
    pub fn negotiate(accept: Option<&str>) -> Format {
        match accept {
            Some(a) if a.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
        }
    }
}

/// The metrics of `stats` now, in `format`.
pub fn render(stats: &Arc<ServerStats>, format: Format) -> String {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(StatsCollector(Arc::clone(stats))));
    let mut out = String::with_capacity(8 * 1024);
    // Writing into a String cannot fail, and every name and label is ours.
    let _ = match format {
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
        Format::Prometheus => {
            prometheus_client::encoding::prometheus_text::encode(&mut out, &registry)
        }
    };
    out
}

/// Reads one [`StatsSnapshot`] per scrape and encodes it.
#[derive(Debug)]
struct StatsCollector(Arc<ServerStats>);

impl Collector for StatsCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        encode_snapshot(&self.0.snapshot(), &mut encoder)
    }
}

/// One metric family being written.
struct Family<'e>(MetricEncoder<'e>);

impl Family<'_> {
    fn counter(&mut self, labels: &[(&str, &str)], value: u64) -> Result<(), std::fmt::Error> {
        ConstCounter::new(value).encode(self.0.encode_family(&labels)?)
    }

    fn gauge(&mut self, labels: &[(&str, &str)], value: u64) -> Result<(), std::fmt::Error> {
        ConstGauge::new(value).encode(self.0.encode_family(&labels)?)
    }
}

fn family<'e>(
    encoder: &'e mut DescriptorEncoder<'_>,
    name: &'e str,
    help: &str,
    unit: Option<&'e Unit>,
    metric_type: MetricType,
) -> Result<Family<'e>, std::fmt::Error> {
    Ok(Family(encoder.encode_descriptor(
        name,
        help,
        unit,
        metric_type,
    )?))
}

/// Graceful ends by reason label. Destructured in full: a reason the core
/// adds cannot be left out silently.
fn close_reasons(c: &CloseCounts) -> [(&'static str, u64); 3] {
    let CloseCounts {
        peer_finished,
        idle_timeout,
        local,
    } = *c;
    [
        ("peer_finished", peer_finished),
        ("idle_timeout", idle_timeout),
        ("local", local),
    ]
}

/// Aborts by reason label.
fn abort_reasons(c: &AbortCounts) -> [(&'static str, u64); 7] {
    let AbortCounts {
        line_too_long,
        frame_too_large,
        truncated_frame,
        drain_timeout,
        peer_reset,
        timed_out,
        local,
    } = *c;
    [
        ("line_too_long", line_too_long),
        ("frame_too_large", frame_too_large),
        ("truncated_frame", truncated_frame),
        ("drain_timeout", drain_timeout),
        ("peer_reset", peer_reset),
        ("timed_out", timed_out),
        ("local", local),
    ]
}

/// Datagram drops by reason label.
fn drop_reasons(d: &DropCounts) -> [(&'static str, u64); 7] {
    let DropCounts {
        oversize,
        loop_guard,
        rate_limited,
        not_unicast,
        unroutable,
        send_full,
        send_failed,
    } = *d;
    [
        ("oversize", oversize),
        ("loop_guard", loop_guard),
        ("rate_limited", rate_limited),
        ("not_unicast", not_unicast),
        ("unroutable", unroutable),
        ("send_full", send_full),
        ("send_failed", send_failed),
    ]
}

/// A per-stream-transport metric: one sample per transport.
fn per_stream(
    e: &mut DescriptorEncoder<'_>,
    s: &StatsSnapshot,
    (name, help, unit, metric_type): (&str, &str, Option<&Unit>, MetricType),
    value: fn(&StreamCounters) -> u64,
) -> Result<(), std::fmt::Error> {
    let mut f = family(e, name, help, unit, metric_type)?;
    for (transport, counters) in STREAM_TRANSPORTS {
        let labels = [("transport", *transport)];
        let v = value(counters(s));
        match metric_type {
            MetricType::Gauge => f.gauge(&labels, v)?,
            _ => f.counter(&labels, v)?,
        }
    }
    Ok(())
}

fn encode_snapshot(
    s: &StatsSnapshot,
    e: &mut DescriptorEncoder<'_>,
) -> Result<(), std::fmt::Error> {
    use MetricType::{Counter, Gauge};
    let bytes = Unit::Bytes;
    per_stream(
        e,
        s,
        (
            "ricochet_connections_accepted",
            "Stream connections given a session.",
            None,
            Counter,
        ),
        |c| c.accepted,
    )?;
    per_stream(
        e,
        s,
        (
            "ricochet_connections_rejected",
            "Stream connections over the connection limit, closed at once.",
            None,
            Counter,
        ),
        |c| c.rejected,
    )?;
    {
        let mut f = family(
            e,
            "ricochet_connections_closed",
            "Sessions that ended gracefully, by reason.",
            None,
            Counter,
        )?;
        for (transport, counters) in STREAM_TRANSPORTS {
            for (reason, v) in close_reasons(&counters(s).closed) {
                f.counter(&[("transport", transport), ("reason", reason)], v)?;
            }
        }
    }
    {
        let mut f = family(
            e,
            "ricochet_connections_aborted",
            "Sessions that were aborted (reset), by reason.",
            None,
            Counter,
        )?;
        for (transport, counters) in STREAM_TRANSPORTS {
            for (reason, v) in abort_reasons(&counters(s).aborted) {
                f.counter(&[("transport", transport), ("reason", reason)], v)?;
            }
        }
    }
    per_stream(
        e,
        s,
        (
            "ricochet_connections_lingered",
            "Graceful closes abandoned when the peer neither finished nor acknowledged in time.",
            None,
            Counter,
        ),
        |c| c.lingered,
    )?;
    per_stream(
        e,
        s,
        (
            "ricochet_connections_open",
            "Sessions accepted and not yet ended.",
            None,
            Gauge,
        ),
        StreamCounters::active,
    )?;
    per_stream(
        e,
        s,
        (
            "ricochet_received",
            "Bytes received from stream peers.",
            Some(&bytes),
            Counter,
        ),
        |c| c.bytes_in,
    )?;
    {
        let mut f = family(
            e,
            "ricochet_echoed",
            "Bytes echoed back (stream bytes, datagram payloads).",
            Some(&bytes),
            Counter,
        )?;
        for (transport, counters) in STREAM_TRANSPORTS {
            f.counter(&[("transport", transport)], counters(s).bytes_out)?;
        }
        for (transport, counters) in DATAGRAM_TRANSPORTS {
            f.counter(&[("transport", transport)], counters(s).echoed_bytes)?;
        }
    }
    per_stream(
        e,
        s,
        (
            "ricochet_discarded",
            "Bytes received and never echoed (the session ended first).",
            Some(&bytes),
            Counter,
        ),
        |c| c.bytes_discarded,
    )?;
    per_stream(
        e,
        s,
        (
            "ricochet_buffered",
            "Bytes held for live connections now (session buffers; io_uring's queues and rustls's records too).",
            Some(&bytes),
            Gauge,
        ),
        |c| c.buffered,
    )?;
    for (name, help, value) in [
        (
            "ricochet_datagrams_received",
            "Datagrams received.",
            (|d| d.received) as fn(&DatagramCounters) -> u64,
        ),
        (
            "ricochet_datagrams_echoed",
            "Datagrams echoed whole.",
            |d| d.echoed,
        ),
    ] {
        let mut f = family(e, name, help, None, Counter)?;
        for (transport, counters) in DATAGRAM_TRANSPORTS {
            f.counter(&[("transport", transport)], value(counters(s)))?;
        }
    }
    {
        let mut f = family(
            e,
            "ricochet_datagrams_dropped",
            "Datagrams dropped, by reason.",
            None,
            Counter,
        )?;
        for (transport, counters) in DATAGRAM_TRANSPORTS {
            for (reason, v) in drop_reasons(&counters(s).dropped) {
                f.counter(&[("transport", transport), ("reason", reason)], v)?;
            }
        }
    }
    {
        let mut f = family(
            e,
            "ricochet_datagrams_queue_dropped",
            "Datagrams the kernel dropped because the socket's receive queue was full \
             (--udp-receive-buffer), before the server read them: not in \
             ricochet_datagrams_received_total.",
            None,
            Counter,
        )?;
        for (transport, _) in DATAGRAM_TRANSPORTS {
            f.counter(&[("transport", transport)], s.udp_queue_drops)?;
        }
    }
    {
        let h = &s.tls_handshakes;
        let mut f = family(
            e,
            "ricochet_tls_handshakes",
            "TLS handshakes by result, each counted once: full or resumed (both \
             completed), or the reason it failed.",
            None,
            Counter,
        )?;
        let fail = &h.failed;
        // A partition: the results sum to every handshake. `resumed` is not
        // a subset of a `completed` series (summing over `result` would
        // count each resumption twice).
        for (result, v) in [
            ("full", h.completed.saturating_sub(h.resumed)),
            ("resumed", h.resumed),
            ("timeout", fail.timeout),
            ("bad_record", fail.bad_record),
            ("certificate", fail.certificate),
            ("protocol", fail.protocol),
            ("closed", fail.closed),
            ("io", fail.io),
        ] {
            f.counter(&[("result", result)], v)?;
        }
    }
    ConstGauge::new(s.connections_open).encode(e.encode_descriptor(
        "ricochet_stream_sockets_open",
        "Stream sockets open now, including ones finishing their close.",
        None,
        Gauge,
    )?)?;
    {
        let mut f = family(
            e,
            "ricochet_accept_errors",
            "Failed accepts, by reason (fd_exhausted: out of file descriptors).",
            None,
            Counter,
        )?;
        f.counter(&[("reason", "fd_exhausted")], s.accept_fd_exhausted)?;
        f.counter(&[("reason", "other")], s.accept_errors)?;
    }
    let mut f = family(
        e,
        "ricochet_build_info",
        "The running version (always 1).",
        None,
        Gauge,
    )?;
    f.gauge(&[("version", env!("CARGO_PKG_VERSION"))], 1)
}

#[cfg(test)]
mod tests;
