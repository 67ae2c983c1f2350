//! The human summary of a [`Report`]: one labelled line per figure, errors
//! in detail, warnings, hints, and a result line that says what passed.

use std::fmt;
use std::time::Duration;

use super::StopReason;
use super::report::Report;
use super::units::{count_of, format_duration, format_micros};

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
            Some(r) => parts.push(format!("rate {r} msg/s in total")),
            None => parts.push("closed loop".to_owned()),
        }
        if self.pattern == "stream" {
            parts.push(format!("window {}", bytes(self.window)));
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
        let mut tally = format!(
            "{} of {} {clean}",
            self.connections_ok,
            count_of(self.connections as u64, unit)
        );
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
        writeln!(
            f,
            "verified     {} of {} messages sent{requested}, {} of {} bytes",
            self.messages_verified, self.messages_sent, self.bytes_verified, self.bytes_sent
        )?;
        writeln!(
            f,
            "measured     {:.3} s, {}",
            self.measured_secs,
            count_of(self.round_trips, "round trip")
        )?;
        match self.rate {
            Some(r) => writeln!(
                f,
                "round trips  {:.1} /s (requested {r} /s)",
                self.round_trips_per_sec
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
            writeln!(
                f,
                "latency      p50 {}, p90 {}, p99 {}, p99.9 {}, max {}, mean {}",
                format_micros(l.p50),
                format_micros(l.p90),
                format_micros(l.p99),
                format_micros(l.p999),
                format_micros(l.max),
                format_micros(l.mean.round() as u64)
            )?;
        }
        if let Some(t) = &self.tls {
            let h = &t.handshake_us;
            let resumed = if t.resumption {
                format!("{} resumed", t.resumed)
            } else {
                "resumption off".to_owned()
            };
            let name = if t.insecure {
                format!("{} NOT VERIFIED (--insecure)", t.server_name)
            } else {
                format!("{} verified", t.server_name)
            };
            if h.count == 0 {
                writeln!(
                    f,
                    "handshakes   {} ({resumed}), none in the measured span; certificate {name}",
                    t.handshakes
                )?;
            } else {
                writeln!(
                    f,
                    "handshakes   {} ({resumed}), {:.1} /s, p50 {}, p99 {}, max {}; certificate {name}",
                    t.handshakes,
                    t.handshakes_per_sec,
                    format_micros(h.p50),
                    format_micros(h.p99),
                    format_micros(h.max)
                )?;
            }
        }
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
        writeln!(f, "result       {}", self.result_line())
    }
}
