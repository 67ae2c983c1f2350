//! Per-thread accumulation of figures and errors, merged into a [`Report`] at the end.

use hdrhistogram::Histogram;
use ricochet_core::probe::{DatagramProbeStats, ProbeStats};
use ricochet_core::{Duration, Instant};

use super::report::{ConnError, DatagramCounts, ErrorCounts, Latency, MAX_ERROR_DETAILS};

/// Latencies are recorded in microseconds up to one hour (3 significant digits).
const HIST_MAX_US: u64 = 3_600_000_000;

/// What one worker thread measured.
pub(super) struct Tally {
    hist: Histogram<u64>,
    window_start: Instant,
    window_end: Option<Instant>,
    /// Verified bytes read inside the window.
    pub(super) window_bytes: u64,
    /// Last instant at which anything was verified.
    pub(super) last_verified: Option<Instant>,
    pub(super) messages_sent: u64,
    pub(super) messages_verified: u64,
    pub(super) bytes_sent: u64,
    pub(super) bytes_verified: u64,
    pub(super) connections_ok: usize,
    /// Connections never started because the run was stopped first.
    pub(super) not_started: usize,
    pub(super) errors: ErrorCounts,
    pub(super) details: Vec<ConnError>,
    pub(super) datagrams: DatagramCounts,
    /// UDP datagrams the socket refused to send (buffer full), counted lost by the probe.
    pub(super) send_blocked: u64,
    /// TLS handshake latencies inside the window.
    handshake_hist: Histogram<u64>,
    /// TLS handshakes completed (all).
    pub(super) handshakes: u64,
    /// Of those, resumed.
    pub(super) resumed: u64,
}

impl Tally {
    /// A tally that counts rates between `window_start` and `window_end` (open-ended if `None`).
    pub(super) fn new(window_start: Instant, window_end: Option<Instant>) -> std::io::Result<Self> {
        let hist = Histogram::new_with_bounds(1, HIST_MAX_US, 3).map_err(std::io::Error::other)?;
        Ok(Tally {
            handshake_hist: hist.clone(),
            handshakes: 0,
            resumed: 0,
            hist,
            window_start,
            window_end,
            window_bytes: 0,
            last_verified: None,
            messages_sent: 0,
            messages_verified: 0,
            bytes_sent: 0,
            bytes_verified: 0,
            connections_ok: 0,
            not_started: 0,
            errors: ErrorCounts::default(),
            details: Vec::new(),
            datagrams: DatagramCounts::default(),
            send_blocked: 0,
        })
    }

    fn in_window(&self, now: Instant) -> bool {
        now >= self.window_start && self.window_end.is_none_or(|end| now <= end)
    }

    /// `n` bytes were verified at `now`.
    pub(super) fn verified(&mut self, now: Instant, n: usize) {
        if self.in_window(now) {
            self.window_bytes += n as u64;
            self.last_verified = Some(now);
        }
    }

    /// A message completed its round trip at `now`.
    pub(super) fn round_trip(&mut self, now: Instant, rtt: Duration) {
        if self.in_window(now) {
            self.hist.saturating_record(rtt.as_micros());
        }
    }

    /// A TLS handshake completed at `now`, having taken `took`.
    pub(super) fn handshake(&mut self, now: Instant, took: Duration, resumed: bool) {
        self.handshakes += 1;
        self.resumed += u64::from(resumed);
        if self.in_window(now) {
            self.handshake_hist.saturating_record(took.as_micros());
        }
    }

    /// Records a failed connection (details kept for the first few only).
    pub(super) fn error(&mut self, e: ConnError) {
        self.errors.count(e.kind);
        if self.details.len() < MAX_ERROR_DETAILS {
            self.details.push(e);
        }
    }

    /// Adds a finished stream connection's counters.
    pub(super) fn add_stream(&mut self, s: &ProbeStats) {
        self.messages_sent += s.messages_sent;
        self.messages_verified += s.messages_verified;
        self.bytes_sent += s.bytes_sent;
        self.bytes_verified += s.bytes_verified;
    }

    /// Adds a finished UDP socket's counters.
    pub(super) fn add_datagram(&mut self, s: &DatagramProbeStats, bytes_sent: u64) {
        self.messages_sent += s.sent;
        self.messages_verified += s.verified;
        self.bytes_sent += bytes_sent;
        self.bytes_verified += s.bytes_verified;
        let d = &mut self.datagrams;
        d.sent += s.sent;
        d.verified += s.verified;
        d.lost += s.lost;
        d.corrupt += s.corrupt;
        d.duplicate += s.duplicate;
        d.late += s.late;
        d.foreign += s.foreign;
    }

    /// Folds another thread's tally into this one.
    pub(super) fn merge(&mut self, o: Tally) {
        // Both histograms have the same bounds: adding cannot fail.
        let _ = self.hist.add(&o.hist);
        let _ = self.handshake_hist.add(&o.handshake_hist);
        self.handshakes += o.handshakes;
        self.resumed += o.resumed;
        self.window_bytes += o.window_bytes;
        self.last_verified = match (self.last_verified, o.last_verified) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.messages_sent += o.messages_sent;
        self.messages_verified += o.messages_verified;
        self.bytes_sent += o.bytes_sent;
        self.bytes_verified += o.bytes_verified;
        self.connections_ok += o.connections_ok;
        self.not_started += o.not_started;
        self.errors.add(&o.errors);
        for d in o.details {
            if self.details.len() < MAX_ERROR_DETAILS {
                self.details.push(d);
            }
        }
        let (a, b) = (&mut self.datagrams, &o.datagrams);
        a.sent += b.sent;
        a.verified += b.verified;
        a.lost += b.lost;
        a.corrupt += b.corrupt;
        a.duplicate += b.duplicate;
        a.late += b.late;
        a.foreign += b.foreign;
        self.send_blocked += o.send_blocked;
    }

    /// Round trips recorded inside the window.
    pub(super) fn round_trips(&self) -> u64 {
        self.hist.len()
    }

    /// Latency percentiles of the window.
    pub(super) fn latency(&self) -> Latency {
        percentiles(&self.hist)
    }

    /// TLS handshakes completed inside the window, and their latency.
    pub(super) fn handshake_latency(&self) -> Latency {
        percentiles(&self.handshake_hist)
    }
}

/// Percentiles of a histogram (all zero when it is empty).
fn percentiles(h: &Histogram<u64>) -> Latency {
    if h.is_empty() {
        return Latency::default();
    }
    Latency {
        count: h.len(),
        p50: h.value_at_quantile(0.50),
        p90: h.value_at_quantile(0.90),
        p99: h.value_at_quantile(0.99),
        p999: h.value_at_quantile(0.999),
        max: h.max(),
        mean: h.mean(),
    }
}
