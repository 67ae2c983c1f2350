//! What a probe run found: figures, latency percentiles and errors (the
//! human table is in `table.rs`, the JSON line is this serialized).

use std::fmt;
use std::sync::Arc;

use hdrhistogram::Histogram;
use serde::Serialize;

use super::StopReason;
use super::interval::IntervalReport;

/// The `tool` of every report and rate search.
pub(super) const TOOL: &str = "ricochet-probe";

/// The result of a probe run (also the `--json` line).
///
/// It carries the run's parameters, so a stored line says how to reproduce
/// it. Rates are computed over the measured span only (see
/// [`Report::measured_secs`]); totals count everything the run did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The tool that produced the line, always `ricochet-probe`.
    pub tool: &'static str,
    /// The tool's version (`ricochet` package version).
    pub version: &'static str,
    /// When the run started, RFC 3339 UTC (`2025-01-31T12:00:00Z`).
    pub started_at: String,
    /// The target as given (`tcp://…`, `udp://…`, `tls://…`, `unix://…`); several
    /// targets are separated by spaces.
    pub target: String,
    /// `tcp`, `udp`, `tls` or `unix` (`mixed` for stream targets of
    /// different kinds together).
    pub transport: &'static str,
    /// `raw`, `lines` or `frames` (always `raw` for UDP).
    pub mode: &'static str,
    /// `pingpong`, `stream` or `crr`.
    pub pattern: &'static str,
    /// Number of connections (UDP: sockets).
    pub connections: usize,
    /// Worker threads (one event loop each).
    pub threads: usize,
    /// Smallest message size on the wire, bytes.
    pub size_min: usize,
    /// Largest message size on the wire, bytes.
    pub size_max: usize,
    /// Seed of the payload generator (per-connection seeds derive from it).
    pub seed: u64,
    /// `--count`: messages per connection; `None` with a duration.
    pub count: Option<u64>,
    /// `--duration` in seconds (warmup excluded); `None` with a count.
    pub duration_secs: Option<f64>,
    /// `--warmup` in seconds.
    pub warmup_secs: f64,
    /// `--rate`: total messages per second asked for; `None`: closed loop.
    pub rate: Option<f64>,
    /// `--window`: bytes in flight per connection with the stream pattern.
    pub window: usize,
    /// UDP: datagrams a socket keeps in flight, what the window became:
    /// `window / size_max`, 1 to 64 (1 for ping-pong); `None` for streams.
    /// A `--window` above 64 datagrams is capped at 64.
    pub window_datagrams: Option<usize>,
    /// `--timeout` in seconds.
    pub timeout_secs: f64,
    /// `--max-loss` in percent (UDP).
    pub max_loss_pct: f64,
    /// `--interval` in seconds; `None` without per-interval reports.
    pub interval_secs: Option<f64>,
    /// `--lifetime N`: messages per connection before it is replaced
    /// (`--pattern crr`: 1).
    pub lifetime_messages: Option<u64>,
    /// `--lifetime D`: seconds a connection lives before it is replaced.
    pub lifetime_secs: Option<f64>,
    /// `--connect-rate`: new connections per second at most.
    pub connect_rate: Option<f64>,
    /// Length of the measured span in seconds: after the warmup until the
    /// end of the duration (the whole of it, however little came back near
    /// its end), up to the interruption of an interrupted run, or from the
    /// start to the last verified byte of a count run.
    ///
    /// With `--rate` the span is at least what the schedule gives the round
    /// trips counted, `round_trips / rate` seconds (within the duration):
    /// each message has its interval of `connections / rate` seconds on its
    /// connection, and from the first send to the last echo covers one
    /// interval less (`-r 1 -n 2` took 1 s: 2 round trips on a 2 s
    /// schedule). So a paced run's rates do not exceed the rate asked for
    /// (give or take a message per connection), and a server that cannot
    /// keep up makes the rate lower (under 90 % of the rate asked for, a
    /// warning says it was not reached).
    #[serde(serialize_with = "super::json::rounded")]
    pub measured_secs: f64,
    /// Messages asked for over all connections (`count × connections`); `None` with a duration.
    pub messages_requested: Option<u64>,
    /// Messages started (all of them, warmup included).
    pub messages_sent: u64,
    /// Messages echoed back and verified byte for byte.
    pub messages_verified: u64,
    /// Bytes written to the target.
    pub bytes_sent: u64,
    /// Bytes read back and verified.
    pub bytes_verified: u64,
    /// Streams: messages the interrupt cut short (at most one per
    /// connection, e.g. one huge `-s` message): the first SIGINT stops
    /// sending at once, so a raw message ends at what was sent and a line
    /// gets its `\n` next (a frame is still completed). Their bytes count
    /// in `bytes_sent` and `bytes_verified`; they are not counted in
    /// `messages_sent` or `messages_verified` and have no latency.
    pub messages_cut: u64,
    /// Round trips completed inside the measured span.
    pub round_trips: u64,
    /// Round trips per second inside the measured span (all connections).
    #[serde(serialize_with = "super::json::rounded")]
    pub round_trips_per_sec: f64,
    /// Verified echoed megabytes (10^6 B) per second inside the measured span.
    #[serde(serialize_with = "super::json::rounded")]
    pub mb_per_sec: f64,
    /// The same in megabits (10^6 bit) per second.
    #[serde(serialize_with = "super::json::rounded")]
    pub mbit_per_sec: f64,
    /// Round-trip latency of the messages due inside the measured span,
    /// whenever their echo came, microseconds. With `--rate` it is
    /// measured from each message's *scheduled* send, so time a message
    /// waited to be sent because the server was slow counts (no coordinated
    /// omission).
    pub latency_us: Latency,
    /// With `--rate`: the same round trips measured from each message's
    /// actual send (what a closed-loop tool would report).
    pub latency_uncorrected_us: Option<Latency>,
    /// With `--rate`: how late the probe's own sends left their schedule,
    /// microseconds (from the scheduled instant, or for a message the
    /// window held back, from the moment it could go).
    pub send_lateness_us: Option<Latency>,
    /// Streams: connect latency (connect call to a connection ready for
    /// data; over TLS, its handshake done) of every connection of the run,
    /// warmup included, microseconds. The handshake alone is in
    /// [`TlsReport::handshake_us`].
    pub connect_us: Option<Latency>,
    /// Streams: connect call to the connection's first echoed byte, every
    /// connection of the run, microseconds.
    pub first_byte_us: Option<Latency>,
    /// Connections opened (UDP: sockets); with churn every replacement
    /// counts. A stream connection counts once ready for data (over TLS,
    /// its handshake done).
    pub connections_opened: u64,
    /// Connections closed cleanly inside the measured span.
    pub connections_completed: u64,
    /// `connections_completed` per second of the measured span (the
    /// connection rate of `--pattern crr` or `--lifetime`).
    #[serde(serialize_with = "super::json::rounded")]
    pub connections_per_sec: f64,
    /// Connections that completed everything, including the closing
    /// handshake (UDP: sockets without an error and without a lost datagram).
    pub connections_ok: usize,
    /// Connections never started because the run was stopped first.
    pub connections_not_started: usize,
    /// Error counts by kind.
    pub errors: ErrorCounts,
    /// The first errors in detail (at most [`MAX_ERROR_DETAILS`]).
    pub error_details: Vec<ConnError>,
    /// Warnings that do not fail the run (e.g. late or duplicate UDP
    /// datagrams, a rate that was not reached).
    pub warnings: Vec<String>,
    /// Likely causes of the failures seen, and what to try.
    pub hints: Vec<String>,
    /// UDP only: datagram accounting.
    pub datagrams: Option<DatagramCounts>,
    /// With `tls://` targets: their handshakes, rate and latency (the
    /// `tls://` connections only, in a run that mixes targets).
    pub tls: Option<TlsReport>,
    /// Set when the run stopped sending before its count or duration: the
    /// report is partial.
    pub stopped_early: Option<StopReason>,
    /// True when everything verified and the run was complete: the exit
    /// status is 0 exactly then.
    pub ok: bool,
    /// One row per target, in the order given (one row for one target).
    pub targets: Vec<TargetReport>,
    /// With `--interval`: every interval of the measured span, in order
    /// (they add up to the figures above).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub intervals: Vec<IntervalReport>,
    /// The full latency histograms (for `--latency-out` and plots).
    #[serde(skip)]
    pub(super) histograms: Option<Arc<Histograms>>,
}

/// The run's latency histograms, microseconds.
#[derive(Debug)]
pub(super) struct Histograms {
    /// From the due instant (scheduled send under `--rate`).
    pub(super) corrected: Histogram<u64>,
    /// From the actual send.
    pub(super) uncorrected: Histogram<u64>,
}

/// One target's share of a run (a row of the per-target table).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TargetReport {
    /// The target as given.
    pub target: String,
    /// Connections (UDP: sockets) that went to it.
    pub connections: usize,
    /// Messages sent to it.
    pub messages_sent: u64,
    /// Messages echoed back and verified.
    pub messages_verified: u64,
    /// Bytes read back and verified.
    pub bytes_verified: u64,
    /// Round trips inside the measured span.
    pub round_trips: u64,
    /// Round trips per second of the measured span.
    #[serde(serialize_with = "super::json::rounded")]
    pub round_trips_per_sec: f64,
    /// Verified megabytes (10^6 B) per second of the measured span.
    #[serde(serialize_with = "super::json::rounded")]
    pub mb_per_sec: f64,
    /// Round-trip latency (as [`Report::latency_us`]), microseconds.
    pub latency_us: Latency,
    /// With `--rate`: from the actual send.
    pub latency_uncorrected_us: Option<Latency>,
    /// Streams: connect latency, microseconds.
    pub connect_us: Option<Latency>,
    /// Connections opened.
    pub connections_opened: u64,
    /// Connections that completed everything (UDP: clean sockets).
    pub connections_ok: usize,
    /// Error counts by kind.
    pub errors: ErrorCounts,
}

/// At most this many errors are kept in detail; the rest are only counted.
pub const MAX_ERROR_DETAILS: usize = 32;

/// Latency percentiles in microseconds (hdrhistogram, 3 significant digits).
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Latency {
    /// Number of round trips measured.
    pub count: u64,
    /// Median.
    pub p50: u64,
    /// 90th percentile.
    pub p90: u64,
    /// 99th percentile.
    pub p99: u64,
    /// 99.9th percentile.
    pub p999: u64,
    /// Largest.
    pub max: u64,
    /// Arithmetic mean.
    #[serde(serialize_with = "super::json::rounded")]
    pub mean: f64,
}

/// Error counts by kind; one count per failed connection (UDP: per datagram for `corrupt`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ErrorCounts {
    /// An echoed byte differed from the one sent.
    pub mismatch: u64,
    /// Bytes came back that were never sent (more than we sent).
    pub unexpected_data: u64,
    /// The server closed (FIN or reset) before echoing everything.
    pub early_close: u64,
    /// The connection was refused (TCP RST, no Unix listener, ICMP port unreachable).
    pub refused: u64,
    /// Connecting took longer than `--timeout`.
    pub connect_timeout: u64,
    /// Outstanding data made no progress for `--timeout`.
    pub timeout: u64,
    /// The server did not close within `--timeout` after our half-close.
    pub no_fin: u64,
    /// Any other socket error.
    pub io: u64,
    /// UDP: datagrams that came back with wrong contents.
    pub corrupt: u64,
    /// UDP: connections whose loss exceeded `--max-loss`.
    pub loss: u64,
    /// TLS: the handshake failed or did not complete within `--timeout`.
    pub handshake: u64,
}

impl ErrorCounts {
    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.mismatch
            + self.unexpected_data
            + self.early_close
            + self.refused
            + self.connect_timeout
            + self.timeout
            + self.no_fin
            + self.io
            + self.corrupt
            + self.loss
            + self.handshake
    }

    /// `(name, count)` of every kind with a non-zero count, in a fixed order.
    pub fn nonzero(&self) -> Vec<(&'static str, u64)> {
        [
            ("mismatch", self.mismatch),
            ("unexpected data", self.unexpected_data),
            ("early close", self.early_close),
            ("refused", self.refused),
            ("connect timeout", self.connect_timeout),
            ("timeout", self.timeout),
            ("no FIN", self.no_fin),
            ("io", self.io),
            ("corrupt", self.corrupt),
            ("loss", self.loss),
            ("handshake", self.handshake),
        ]
        .into_iter()
        .filter(|&(_, n)| n > 0)
        .collect()
    }

    pub(super) fn count(&mut self, kind: ErrorKind) {
        let slot = match kind {
            ErrorKind::Mismatch => &mut self.mismatch,
            ErrorKind::UnexpectedData => &mut self.unexpected_data,
            ErrorKind::EarlyClose => &mut self.early_close,
            ErrorKind::Refused => &mut self.refused,
            ErrorKind::ConnectTimeout => &mut self.connect_timeout,
            ErrorKind::Timeout => &mut self.timeout,
            ErrorKind::NoFin => &mut self.no_fin,
            ErrorKind::Io => &mut self.io,
            ErrorKind::Corrupt => &mut self.corrupt,
            ErrorKind::Loss => &mut self.loss,
            ErrorKind::Handshake => &mut self.handshake,
        };
        *slot += 1;
    }

    pub(super) fn add(&mut self, o: &ErrorCounts) {
        self.mismatch += o.mismatch;
        self.unexpected_data += o.unexpected_data;
        self.early_close += o.early_close;
        self.refused += o.refused;
        self.connect_timeout += o.connect_timeout;
        self.timeout += o.timeout;
        self.no_fin += o.no_fin;
        self.io += o.io;
        self.corrupt += o.corrupt;
        self.loss += o.loss;
        self.handshake += o.handshake;
    }
}

/// The kind of a connection error (the JSON `kind` field, snake_case).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// See [`ErrorCounts::mismatch`].
    Mismatch,
    /// See [`ErrorCounts::unexpected_data`].
    UnexpectedData,
    /// See [`ErrorCounts::early_close`].
    EarlyClose,
    /// See [`ErrorCounts::refused`].
    Refused,
    /// See [`ErrorCounts::connect_timeout`].
    ConnectTimeout,
    /// See [`ErrorCounts::timeout`].
    Timeout,
    /// See [`ErrorCounts::no_fin`].
    NoFin,
    /// See [`ErrorCounts::io`].
    Io,
    /// See [`ErrorCounts::corrupt`].
    Corrupt,
    /// See [`ErrorCounts::loss`].
    Loss,
    /// See [`ErrorCounts::handshake`].
    Handshake,
}

/// One error, with where it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnError {
    /// Connection number, 0-based (UDP: socket number); `None` for an
    /// error of the whole run (UDP losses over `--max-loss`: JSON `null`).
    pub connection: Option<usize>,
    /// What went wrong.
    pub kind: ErrorKind,
    /// Stream offset of the first wrong byte (mismatch, unexpected data),
    /// or the datagram sequence number (UDP corruption).
    pub offset: Option<u64>,
    /// The byte that should have come back (mismatch only).
    pub expected: Option<u8>,
    /// The byte that did come back (mismatch only).
    pub actual: Option<u8>,
    /// A human description.
    pub message: String,
}

impl fmt::Display for ConnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.connection {
            Some(c) => write!(f, "connection {c}: {}", self.message),
            None => write!(f, "all sockets: {}", self.message),
        }
    }
}

/// Fewest handshakes in the measured span that give a handshake rate.
pub(crate) const MIN_RATE_HANDSHAKES: u64 = 2;

/// Shortest measured span, in seconds, that gives a handshake rate (10 ms).
pub(crate) const MIN_RATE_SPAN_SECS: f64 = 0.010;

/// TLS handshakes of a run's `tls://` connections (connection setup, apart
/// from the echo).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct TlsReport {
    /// The name the server's certificate was checked against (and sent in
    /// SNI); with several `tls://` targets of different names, each once,
    /// separated by spaces.
    pub server_name: String,
    /// `--insecure`: the certificate was NOT verified.
    pub insecure: bool,
    /// Whether the server's certificate was verified: at least one handshake
    /// completed, without `--insecure`. False when every handshake failed
    /// (the errors say why).
    pub verified: bool,
    /// Whether connections could resume an earlier session (`--tls-resumption`).
    pub resumption: bool,
    /// The client certificate the probe presented (`--tls-cert`, mutual
    /// TLS); `None` (JSON `null`): it presented none.
    pub client_certificate: Option<String>,
    /// Handshakes completed (all of them, warmup included). Over TLS 1.3 a
    /// handshake the server refuses after the probe's side was done (a
    /// mutual-TLS server's alert on the first read) is not one: it is a
    /// `handshake` error, like one refused during the handshake.
    pub handshakes: u64,
    /// Of those, resumed from an earlier session.
    pub resumed: u64,
    /// Handshakes completed per second inside the measured span; `None`
    /// (JSON `null`) when that is too short to give a rate: fewer than 2
    /// handshakes in it, or a span under 10 ms.
    #[serde(serialize_with = "super::json::rounded_opt")]
    pub handshakes_per_sec: Option<f64>,
    /// Handshake latency inside the measured span, microseconds: from the
    /// TCP connection's establishment to the handshake's completion.
    pub handshake_us: Latency,
}

/// UDP datagram accounting, summed over all sockets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct DatagramCounts {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams echoed intact.
    pub verified: u64,
    /// Datagrams not back within `--timeout` (counted lost, not corrupt).
    pub lost: u64,
    /// Of `lost`: datagrams still in flight on a socket that failed (a
    /// refusal: the server stopped). The failure is the run's error; these
    /// do not count against `--max-loss` a second time.
    pub lost_on_failure: u64,
    /// Datagrams back with wrong contents (a failure).
    pub corrupt: u64,
    /// Extra copies of datagrams already verified (a datagram echoed three
    /// times counts two).
    pub duplicate: u64,
    /// Datagrams back after they had been counted lost.
    pub late: u64,
    /// Datagrams that were not ours.
    pub foreign: u64,
    /// Of `verified`: datagrams back after one sent later than them
    /// (out of order; a warning, UDP keeps no order).
    pub reordered: u64,
    /// `lost / sent` in percent.
    #[serde(serialize_with = "super::json::rounded")]
    pub loss_pct: f64,
    /// The `--max-loss` threshold in percent.
    pub max_loss_pct: f64,
}

impl Report {
    /// The report as exactly one line of JSON (no trailing newline).
    /// Computed values (rates, means, the measured span) are written to 9
    /// significant digits, without binary conversion noise.
    pub fn to_json_line(&self) -> String {
        // Serializing plain structs of numbers and strings cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human summary table (several lines, ends with a newline).
    pub fn table(&self) -> String {
        self.to_string()
    }

    /// The exit status of `ricochet probe` for this report: 0 when
    /// [`ok`](Report::ok), 1 when anything failed, 130 when the run was
    /// interrupted before anything failed.
    pub fn exit_code(&self) -> u8 {
        if self.ok {
            0
        } else if self.errors.total() == 0 && self.stopped_early == Some(StopReason::Interrupted) {
            130
        } else {
            1
        }
    }
}

#[cfg(test)]
pub(super) mod tests;
