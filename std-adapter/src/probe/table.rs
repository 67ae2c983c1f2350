//! The human summary of a [`Report`]: one labelled line per figure, errors
//! in detail, warnings, hints, and a result line that says what passed.

use std::fmt;
use std::time::Duration;

use super::StopReason;
use super::find_rate::{RateSearch, RateStep};
use super::interval::IntervalReport;
use super::report::{Latency, Report, TlsReport};
use super::spec::UDP_MAX_IN_FLIGHT;
use super::units::{count_of, format_duration, format_micros, format_rate};
use super::verdict::schedule_secs;

fn secs(s: f64) -> String {
    format_duration(Duration::try_from_secs_f64(s).unwrap_or_default())
}

fn bytes(n: usize) -> String {
    match n {
        n if n >= 1 << 20 && n.is_multiple_of(1 << 20) => format!("{} MiB", n >> 20),
        n if n >= 1 << 10 && n.is_multiple_of(1 << 10) => format!("{} KiB", n >> 10),
        n => format!("{n} B"),
    }
}

impl Report {
    fn is_udp(&self) -> bool {
        self.datagrams.is_some()
    }

    /// What was asked for, as a reader would write it on the command line.
    fn requested(&self) -> String {
        let mut parts = Vec::new();
        match (self.count, self.duration_secs) {
            (Some(n), _) => parts.push(format!("{} per connection", count_of(n, "message"))),
            (None, Some(d)) if self.warmup_secs > 0.0 => parts.push(format!(
                "for {} after a {} warmup",
                secs(d),
                secs(self.warmup_secs)
            )),
            (None, Some(d)) => parts.push(format!("for {}", secs(d))),
            (None, None) => {}
        }
        match self.rate {
            Some(r) => parts.push(format!("rate {} msg/s in total", format_rate(r))),
            None => parts.push("closed loop".to_owned()),
        }
        match (self.lifetime_messages, self.lifetime_secs) {
            (Some(n), _) => parts.push(format!("new connection every {}", count_of(n, "message"))),
            (None, Some(s)) => parts.push(format!("new connection every {}", secs(s))),
            (None, None) => {}
        }
        if let Some(r) = self.connect_rate {
            parts.push(format!("at most {} connects/s", format_rate(r)));
        }
        if let Some(i) = self.interval_secs {
            parts.push(format!("reports every {}", secs(i)));
        }
        if self.pattern == "stream" {
            match self.window_datagrams {
                // Capped: say what was in flight, not only what was asked.
                Some(n) if n == UDP_MAX_IN_FLIGHT && self.window / self.size_max.max(1) > n => {
                    parts.push(format!(
                        "window {} capped at {n} datagrams in flight per socket ({})",
                        bytes(self.window),
                        bytes(n * self.size_max)
                    ));
                }
                Some(n) => parts.push(format!(
                    "window {} ({})",
                    bytes(self.window),
                    count_of(n as u64, "datagram")
                )),
                None => parts.push(format!("window {}", bytes(self.window))),
            }
        }
        parts.push(format!("timeout {}", secs(self.timeout_secs)));
        if self.is_udp() {
            parts.push(format!("max loss {}%", self.max_loss_pct));
        }
        parts.join(", ")
    }

    fn result_line(&self) -> String {
        let (unit, clean) = if self.is_udp() {
            ("socket", "without error or loss")
        } else {
            ("connection", "completed cleanly")
        };
        let churn = self.lifetime_messages.is_some() || self.lifetime_secs.is_some();
        let unit = if churn { "connection slot" } else { unit };
        let mut tally = format!(
            "{} of {} {clean}",
            self.connections_ok,
            count_of(self.connections as u64, unit)
        );
        if churn {
            tally.push_str(&format!(
                ", {} opened",
                count_of(self.connections_opened, "connection")
            ));
        }
        if self.connections_not_started > 0 {
            tally.push_str(&format!(", {} not started", self.connections_not_started));
        }
        let errors = self.errors.total();
        let verdict = match self.stopped_early {
            _ if self.ok && self.is_udp() => {
                let lost = self.datagrams.map_or(0, |d| d.lost);
                if lost == 0 {
                    "OK: every datagram verified".to_owned()
                } else {
                    format!(
                        "OK: every datagram that came back verified; {} lost, within --max-loss {}%",
                        lost, self.max_loss_pct
                    )
                }
            }
            _ if self.ok => "OK: every byte verified".to_owned(),
            Some(StopReason::Interrupted) if errors == 0 => {
                "INTERRUPTED: partial report, no error so far".to_owned()
            }
            Some(StopReason::Interrupted) => format!(
                "FAILED: {}; interrupted, partial report",
                count_of(errors, "error")
            ),
            Some(StopReason::LossBudget) => format!(
                "FAILED: {}; stopped early, the losses already exceed --max-loss {}% of the whole run",
                count_of(errors, "error"),
                self.max_loss_pct
            ),
            None if errors == 0 && self.messages_verified == 0 && self.bytes_verified == 0 => {
                "FAILED: nothing verified, no echo came back before the run ended".to_owned()
            }
            None => format!("FAILED: {}", count_of(errors, "error")),
        };
        format!("{verdict} ({tally})")
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
            "connections  {} on {}, seed {}",
            self.connections,
            count_of(self.threads as u64, "thread"),
            self.seed
        )?;
        writeln!(f, "requested    {}", self.requested())?;
        let requested = match self.messages_requested {
            Some(n) => format!(" ({n} requested)"),
            None => String::new(),
        };
        let cut = match self.messages_cut {
            0 => String::new(),
            n => format!(
                " ({} cut short by the interrupt: counted in the bytes only)",
                count_of(n, "message")
            ),
        };
        writeln!(
            f,
            "verified     {} of {} messages sent{requested}, {} of {} bytes{cut}",
            self.messages_verified, self.messages_sent, self.bytes_verified, self.bytes_sent
        )?;
        // A paced count run whose schedule outlasted its last echo says so:
        // its span is not the wall-clock time to the last verified byte.
        let schedule = match (self.count, self.rate) {
            (Some(_), Some(rate)) if self.round_trips > 0 => {
                schedule_secs(Some(rate), self.round_trips)
                    .filter(|s| self.measured_secs <= *s)
                    .map(|_| {
                        format!(
                            " (the span of their schedule at {} msg/s)",
                            format_rate(rate)
                        )
                    })
            }
            _ => None,
        };
        writeln!(
            f,
            "measured     {:.3} s, {}{}",
            self.measured_secs,
            count_of(self.round_trips, "round trip"),
            schedule.unwrap_or_default()
        )?;
        match self.rate {
            Some(r) => writeln!(
                f,
                "round trips  {:.1} /s (requested {} /s)",
                self.round_trips_per_sec,
                format_rate(r)
            )?,
            None => writeln!(f, "round trips  {:.1} /s", self.round_trips_per_sec)?,
        }
        writeln!(
            f,
            "throughput   {:.3} MB/s = {:.3} Mbit/s echoed and verified (M = 10^6)",
            self.mb_per_sec, self.mbit_per_sec
        )?;
        let l = &self.latency_us;
        if l.count == 0 {
            writeln!(
                f,
                "latency      none measured: no round trip completed in the measured span"
            )?;
        } else {
            let from = if self.rate.is_some() {
                " (from the scheduled sends)"
            } else {
                ""
            };
            writeln!(f, "latency      {}{from}", percentiles(l))?;
        }
        if let Some(u) = self.latency_uncorrected_us.filter(|u| u.count > 0) {
            writeln!(
                f,
                "uncorrected  {} (from the actual sends)",
                percentiles(&u)
            )?;
        }
        if let Some(s) = self.send_lateness_us.filter(|s| s.count > 0) {
            writeln!(
                f,
                "send late    p50 {}, p99 {}, p99.9 {}, max {}: the probe's own sends behind their schedule",
                format_micros(s.p50),
                format_micros(s.p99),
                format_micros(s.p999),
                format_micros(s.max)
            )?;
        }
        if let Some(c) = self.connect_us.filter(|c| c.count > 0) {
            writeln!(
                f,
                "connect      p50 {}, p99 {}, max {} ({}{})",
                format_micros(c.p50),
                format_micros(c.p99),
                format_micros(c.max),
                count_of(c.count, "connection"),
                if self.tls.is_some() {
                    ", TLS handshakes included"
                } else {
                    ""
                }
            )?;
        }
        if let Some(t) = &self.tls {
            writeln!(f, "{}", handshakes_line(t))?;
        }
        if let Some(b) = self.first_byte_us.filter(|b| b.count > 0) {
            writeln!(
                f,
                "first byte   p50 {}, p99 {}, max {} (from the connect call)",
                format_micros(b.p50),
                format_micros(b.p99),
                format_micros(b.max)
            )?;
        }
        if self.lifetime_messages.is_some() || self.lifetime_secs.is_some() {
            writeln!(
                f,
                "connections  {} opened, {} closed cleanly in the measured span: {:.1} /s",
                self.connections_opened, self.connections_completed, self.connections_per_sec
            )?;
        }
        if let Some(d) = &self.datagrams {
            writeln!(
                f,
                "datagrams    sent {}, verified {} (reordered {}), lost {} ({:.3}%, allowed {}%), corrupt {}, duplicate {}, late {}, foreign {}",
                d.sent,
                d.verified,
                d.reordered,
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
            let kinds: Vec<String> = e
                .nonzero()
                .into_iter()
                .map(|(k, n)| format!("{k} {n}"))
                .collect();
            writeln!(
                f,
                "errors       {} ({})",
                count_of(e.total(), "error"),
                kinds.join(", ")
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
        for h in &self.hints {
            writeln!(f, "hint         {h}")?;
        }
        if self.targets.len() > 1 {
            self.write_targets(f)?;
        }
        writeln!(f, "result       {}", self.result_line())
    }
}

/// A table's p50 and p99 cells: `-` when nothing was measured (a target
/// that refused every connection is not a 0 us one).
fn p50_p99(l: &Latency) -> (String, String) {
    if l.count == 0 {
        ("-".to_owned(), "-".to_owned())
    } else {
        (format_micros(l.p50), format_micros(l.p99))
    }
}

/// `p50 …, p90 …, p99 …, p99.9 …, max …, mean …`.
fn percentiles(l: &Latency) -> String {
    format!(
        "p50 {}, p90 {}, p99 {}, p99.9 {}, max {}, mean {}",
        format_micros(l.p50),
        format_micros(l.p90),
        format_micros(l.p99),
        format_micros(l.p999),
        format_micros(l.max),
        format_micros(l.mean.round() as u64)
    )
}

impl Report {
    /// The per-target rows and their total.
    fn write_targets(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self
            .targets
            .iter()
            .map(|t| t.target.chars().count())
            .max()
            .unwrap_or(0)
            .max(6);
        writeln!(
            f,
            "per target   {:<width$}  {:>5}  {:>10}  {:>10}  {:>9}  {:>9}  {:>9}  {:>6}",
            "target", "conns", "verified", "rt/s", "MB/s", "p50", "p99", "errors"
        )?;
        for t in &self.targets {
            let (p50, p99) = p50_p99(&t.latency_us);
            writeln!(
                f,
                "             {:<width$}  {:>5}  {:>10}  {:>10.1}  {:>9.3}  {:>9}  {:>9}  {:>6}",
                t.target,
                t.connections,
                t.messages_verified,
                t.round_trips_per_sec,
                t.mb_per_sec,
                p50,
                p99,
                t.errors.total()
            )?;
        }
        let (p50, p99) = p50_p99(&self.latency_us);
        writeln!(
            f,
            "             {:<width$}  {:>5}  {:>10}  {:>10.1}  {:>9.3}  {:>9}  {:>9}  {:>6}",
            "total",
            self.connections,
            self.messages_verified,
            self.round_trips_per_sec,
            self.mb_per_sec,
            p50,
            p99,
            self.errors.total()
        )
    }
}

impl IntervalReport {
    /// The column titles of [`IntervalReport::line`]; `paced` adds the
    /// uncorrected p99, `churn` the connections per second.
    pub fn header(paced: bool, churn: bool) -> String {
        let mut s = format!(
            "{:>15}  {:>10}  {:>9}  {:>9}  {:>9}",
            "interval (s)", "rt/s", "MB/s", "p50", "p99"
        );
        if paced {
            s.push_str(&format!("  {:>11}", "p99 uncorr."));
        }
        if churn {
            s.push_str(&format!("  {:>9}", "conn/s"));
        }
        s.push_str(&format!("  {:>6}", "errors"));
        s
    }

    /// The interval as one line under [`IntervalReport::header`] (errors:
    /// so far in the run).
    pub fn line(&self, paced: bool, churn: bool) -> String {
        let (p50, p99) = p50_p99(&self.latency_us);
        let mut s = format!(
            "{:>15}  {:>10.1}  {:>9.3}  {:>9}  {:>9}",
            format!("{:.2}-{:.2}", self.start_secs, self.end_secs),
            self.round_trips_per_sec,
            self.mb_per_sec,
            p50,
            p99
        );
        if paced {
            let u = self
                .latency_uncorrected_us
                .filter(|u| u.count > 0)
                .map_or_else(|| "-".to_owned(), |u| format_micros(u.p99));
            s.push_str(&format!("  {u:>11}"));
        }
        if churn {
            s.push_str(&format!("  {:>9.1}", self.connections_per_sec));
        }
        s.push_str(&format!("  {:>6}", self.errors_total));
        s
    }
}

impl RateSearch {
    /// The measured curve, by rate: rate asked, achieved, the goal's
    /// percentile, and whether it kept the bound.
    pub fn curve(&self) -> String {
        let mut rows: Vec<&RateStep> = self.steps.iter().filter(|s| s.rate.is_some()).collect();
        rows.sort_by(|a, b| {
            a.rate
                .partial_cmp(&b.rate)
                .unwrap_or(std::cmp::Ordering::Equal)
        });
        let mut out = format!(
            "{:>14}  {:>14}  {:>10}  {}\n",
            "rate (msg/s)",
            "achieved (/s)",
            format!("p{}", self.percentile),
            "within the bound"
        );
        for s in rows {
            out.push_str(&format!(
                "{:>14}  {:>14.1}  {:>10}  {}\n",
                format_rate(s.rate.unwrap_or(0.0)),
                s.achieved,
                s.latency_cell(),
                if s.ok { "yes" } else { "no" }
            ));
        }
        out
    }
}

/// The `handshakes` line of a run with `tls://` targets.
fn handshakes_line(t: &TlsReport) -> String {
    let h = &t.handshake_us;
    let resumed = if t.resumption {
        format!("{} resumed", t.resumed)
    } else {
        "resumption off".to_owned()
    };
    let name = if t.insecure {
        format!("{} NOT VERIFIED (--insecure)", t.server_name)
    } else if t.verified {
        format!("{} verified", t.server_name)
    } else {
        format!(
            "{} NOT verified (no handshake completed; the errors say why)",
            t.server_name
        )
    };
    let name = match &t.client_certificate {
        Some(cert) => format!("{name}; client certificate {cert} presented"),
        None => name,
    };
    let rate = t.handshakes_per_sec.map_or_else(
        || "no rate (fewer than 2 in the measured span, or a span under 10 ms)".to_owned(),
        |r| format!("{r:.1} /s"),
    );
    if h.count == 0 {
        format!(
            "handshakes   {} ({resumed}), none in the measured span; certificate {name}",
            t.handshakes
        )
    } else {
        format!(
            "handshakes   {} ({resumed}), {rate}, p50 {}, p99 {}, max {} (TCP up to done); \
             certificate {name}",
            t.handshakes,
            format_micros(h.p50),
            format_micros(h.p99),
            format_micros(h.max)
        )
    }
}

#[cfg(test)]
mod tests;
