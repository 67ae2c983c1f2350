//! What a probe run found: figures, latency percentiles and errors, as a
//! human table or one JSON line.

use std::fmt;

use serde::Serialize;

/// The result of a probe run (also the `--json` line).
///
/// Rates are computed over the measured window only (see
/// [`Report::window_secs`]); totals count everything the run did.
#[derive(Clone, Debug, Serialize)]
pub struct Report {
    /// The tool that produced the line, always `ricochet-probe`.
    pub tool: &'static str,
    /// The target as given (`tcp://…`, `udp://…`, `unix://…`).
    pub target: String,
    /// `tcp`, `udp` or `unix`.
    pub transport: &'static str,
    /// `raw`, `lines` or `frames` (always `raw` for UDP).
    pub mode: &'static str,
    /// `pingpong` or `stream`.
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
    /// Length of the measured window in seconds.
    pub window_secs: f64,
    /// Messages started (all of them, warmup included).
    pub messages_sent: u64,
    /// Messages echoed back and verified byte for byte.
    pub messages_verified: u64,
    /// Bytes written to the target.
    pub bytes_sent: u64,
    /// Bytes read back and verified.
    pub bytes_verified: u64,
    /// Round trips completed inside the window.
    pub round_trips: u64,
    /// Round trips per second inside the window (all connections).
    pub round_trips_per_sec: f64,
    /// Verified echoed megabytes (10^6 B) per second inside the window.
    pub mb_per_sec: f64,
    /// Round-trip latency inside the window, microseconds.
    pub latency_us: Latency,
    /// Connections that completed everything, including the closing handshake.
    pub connections_ok: usize,
    /// Error counts by kind.
    pub errors: ErrorCounts,
    /// The first errors in detail (at most [`MAX_ERROR_DETAILS`]).
    pub error_details: Vec<ConnError>,
    /// Warnings that do not fail the run (e.g. late or duplicate UDP datagrams).
    pub warnings: Vec<String>,
    /// UDP only: datagram accounting.
    pub datagrams: Option<DatagramCounts>,
    /// True when everything verified: the exit status is 0 exactly then.
    pub ok: bool,
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
}

/// One error, with where it happened.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConnError {
    /// Connection number, 0-based (UDP: socket number).
    pub connection: usize,
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
        write!(f, "connection {}: {}", self.connection, self.message)
    }
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
    /// Datagrams back with wrong contents (a failure).
    pub corrupt: u64,
    /// Datagrams that came back twice.
    pub duplicate: u64,
    /// Datagrams back after they had been counted lost.
    pub late: u64,
    /// Datagrams that were not ours.
    pub foreign: u64,
    /// `lost / sent` in percent.
    pub loss_pct: f64,
    /// The `--max-loss` threshold in percent.
    pub max_loss_pct: f64,
}

impl Report {
    /// The report as exactly one line of JSON (no trailing newline).
    pub fn to_json_line(&self) -> String {
        // Serializing plain structs of numbers and strings cannot fail.
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The human summary table (several lines, ends with a newline).
    pub fn table(&self) -> String {
        self.to_string()
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let size = if self.size_min == self.size_max {
            format!("{} B", self.size_min)
        } else {
            format!("{}..={} B", self.size_min, self.size_max)
        };
        writeln!(
            f,
            "target       {} ({}, {}, {size})",
            self.target, self.mode, self.pattern
        )?;
        writeln!(
            f,
            "connections  {} on {} thread{}, seed {}",
            self.connections,
            self.threads,
            if self.threads == 1 { "" } else { "s" },
            self.seed
        )?;
        writeln!(
            f,
            "verified     {} of {} messages, {} of {} bytes",
            self.messages_verified, self.messages_sent, self.bytes_verified, self.bytes_sent
        )?;
        writeln!(
            f,
            "window       {:.3} s, {} round trips",
            self.window_secs, self.round_trips
        )?;
        writeln!(f, "round trips  {:.1} /s", self.round_trips_per_sec)?;
        writeln!(
            f,
            "throughput   {:.3} MB/s echoed (MB = 10^6 B)",
            self.mb_per_sec
        )?;
        let l = &self.latency_us;
        writeln!(
            f,
            "latency      p50 {} us, p90 {} us, p99 {} us, p99.9 {} us, max {} us, mean {:.1} us",
            l.p50, l.p90, l.p99, l.p999, l.max, l.mean
        )?;
        if let Some(d) = &self.datagrams {
            writeln!(
                f,
                "datagrams    sent {}, verified {}, lost {} ({:.3}%, allowed {}%), corrupt {}, duplicate {}, late {}, foreign {}",
                d.sent,
                d.verified,
                d.lost,
                d.loss_pct,
                d.max_loss_pct,
                d.corrupt,
                d.duplicate,
                d.late,
                d.foreign
            )?;
        }
        let e = &self.errors;
        if e.total() == 0 {
            writeln!(f, "errors       none")?;
        } else {
            writeln!(
                f,
                "errors       {} (mismatch {}, unexpected data {}, early close {}, refused {}, connect timeout {}, timeout {}, no FIN {}, io {}, corrupt {}, loss {})",
                e.total(),
                e.mismatch,
                e.unexpected_data,
                e.early_close,
                e.refused,
                e.connect_timeout,
                e.timeout,
                e.no_fin,
                e.io,
                e.corrupt,
                e.loss
            )?;
            for d in &self.error_details {
                writeln!(f, "  {d}")?;
            }
            let shown = self.error_details.len() as u64;
            if e.total() > shown {
                writeln!(f, "  … and {} more", e.total() - shown)?;
            }
        }
        for w in &self.warnings {
            writeln!(f, "warning      {w}")?;
        }
        writeln!(
            f,
            "result       {} ({} of {} connections completed cleanly)",
            if self.ok {
                "OK: every byte verified"
            } else {
                "FAILED"
            },
            self.connections_ok,
            self.connections
        )
    }
}
