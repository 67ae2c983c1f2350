//! Turning the merged tallies of a run into its [`Report`]: rates over the
//! measured span, the pass/fail verdict, warnings, and hints that name the
//! likely cause of a failure and what to try.

use std::sync::Arc;

use ricochet_core::time::earliest;
use ricochet_core::{Instant, Mode};

use super::report::{
    ConnError, ErrorKind, Histograms, MAX_ERROR_DETAILS, MIN_RATE_HANDSHAKES, MIN_RATE_SPAN_SECS,
    Report, TargetReport, TlsReport,
};
use super::spec::{Lifetime, ProbeSpec, Stop};
use super::tally::{Tally, latency_of};
use super::units::format_duration;
use super::{StopReason, Target};

/// The largest UDP payload that fits an Ethernet frame without IP
/// fragmentation (1500 − 20 − 8), and the default limit of `ricochet serve`.
const ETHERNET_UDP_MAX: usize = 1472;
/// Below this fraction of `--rate` the report warns that the rate was not reached.
const RATE_REACHED: f64 = 0.9;

/// When and how a run went, besides what the workers counted.
pub(super) struct RunFacts {
    pub(super) threads: usize,
    pub(super) started_at: String,
    pub(super) window_start: Instant,
    pub(super) finish_at: Option<Instant>,
    pub(super) stopped_early: Option<StopReason>,
}

/// The per-target row of target `i`.
fn target_row(spec: &ProbeSpec, i: usize, t: &Tally, measured_secs: f64) -> TargetReport {
    let stream = spec.is_stream();
    TargetReport {
        target: spec
            .targets
            .get(i)
            .map_or_else(String::new, ToString::to_string),
        connections: spec.connections_to(i),
        messages_sent: t.messages_sent,
        messages_verified: t.messages_verified,
        bytes_verified: t.bytes_verified,
        round_trips: t.round_trips(),
        round_trips_per_sec: t.round_trips() as f64 / measured_secs,
        mb_per_sec: t.window_bytes as f64 / 1e6 / measured_secs,
        latency_us: latency_of(&t.rtt),
        latency_uncorrected_us: spec.rate.map(|_| latency_of(&t.rtt_sent)),
        connect_us: stream.then(|| latency_of(&t.connect)),
        connections_opened: t.connects,
        connections_ok: t.connections_ok,
        errors: t.errors,
    }
}

/// Builds the report from the run's `total` tally and the tallies of
/// each target (in the spec's order), whose merge it is.
pub(super) fn build_report(
    spec: &ProbeSpec,
    run: RunFacts,
    t: Tally,
    per_target: &[Tally],
) -> Report {
    let end = earliest(run.finish_at, t.last_verified).unwrap_or(run.window_start);
    let measured_secs = (end.saturating_since(run.window_start).as_micros() as f64 / 1e6).max(1e-6);
    let targets = per_target
        .iter()
        .enumerate()
        .map(|(i, part)| target_row(spec, i, part, measured_secs))
        .collect();
    let round_trips = t.round_trips();
    let latency_us = latency_of(&t.rtt);
    let round_trips_per_sec = round_trips as f64 / measured_secs;
    let mb_per_sec = t.window_bytes as f64 / 1e6 / measured_secs;
    let mut errors = t.errors;
    let mut warnings = Vec::new();
    let mut hints = Vec::new();
    let tls = tls_section(spec, &t, measured_secs, &mut warnings, &mut hints);
    let mut details = t.details;
    let stream = spec.is_stream();
    let datagrams = (!stream).then(|| {
        let mut d = t.datagrams;
        d.max_loss_pct = spec.max_loss_pct;
        d.loss_pct = if d.sent == 0 {
            0.0
        } else {
            d.lost as f64 * 100.0 / d.sent as f64
        };
        if d.loss_pct > spec.max_loss_pct {
            errors.loss += 1;
            if details.len() < MAX_ERROR_DETAILS {
                details.push(ConnError {
                    connection: 0,
                    kind: ErrorKind::Loss,
                    offset: None,
                    expected: None,
                    actual: None,
                    message: format!(
                        "{} of {} datagrams lost ({:.3}%), more than the {}% allowed by --max-loss",
                        d.lost, d.sent, d.loss_pct, spec.max_loss_pct
                    ),
                });
            }
        }
        if d.lost > 0 && spec.size.max > ETHERNET_UDP_MAX {
            hints.push(format!(
                "{} were lost, and datagrams were larger than {ETHERNET_UDP_MAX} bytes: many echo servers \
                 drop larger ones (`ricochet serve` does unless --udp-max-datagram is raised); try \
                 -s {ETHERNET_UDP_MAX} or less, or raise the server's limit",
                if d.verified == 0 { "all datagrams" } else { "some datagrams" },
            ));
        }
        if d.lost > 0 && d.verified > 0 && spec.rate.is_none() {
            hints.push(
                "datagrams were lost in a closed loop (no --rate: each is sent as soon as the \
                 last came back): a server with a per-source rate limit drops what exceeds it \
                 (`ricochet serve` allows 1000/s in bursts of 100 per address; the embedded node \
                 limits every address, and QEMU's user network makes all traffic one address); \
                 try --rate 500, or raise the server's limit"
                    .to_owned(),
            );
        }
        if d.duplicate > 0 {
            warnings.push(format!("{} datagrams came back twice", d.duplicate));
        }
        if d.late > 0 {
            warnings.push(format!(
                "{} datagrams came back after being counted lost (raise --timeout to count them)",
                d.late
            ));
        }
        if d.foreign > 0 {
            warnings.push(format!(
                "{} datagrams received that the probe never sent",
                d.foreign
            ));
        }
        if t.send_blocked > 0 {
            warnings.push(format!(
                "{} datagrams could not be sent (socket buffer full) and count as lost",
                t.send_blocked
            ));
        }
        d
    });
    if stream && spec.mode == Mode::Raw && errors.timeout > 0 && t.bytes_verified == 0 {
        hints.push(
            "nothing came back at all: a server that echoes only complete lines or frames \
             (e.g. `ricochet serve --mode lines`) holds raw data forever; probe it with -m lines or -m frames"
                .to_owned(),
        );
    }
    if let Some(rate) = spec.rate
        && round_trips > 0
        && round_trips_per_sec < RATE_REACHED * rate
    {
        warnings.push(format!(
            "the requested rate of {rate} msg/s was not reached: {round_trips_per_sec:.1}/s achieved \
             (the server or the probe could not keep up; latencies include the queueing)"
        ));
    }
    if run.stopped_early.is_none() && t.not_started > 0 {
        let rate = spec
            .connect_rate
            .map_or_else(String::new, |r| format!(" at --connect-rate {r}/s"));
        warnings.push(format!(
            "{} of {} connections were never opened: the duration ended first{rate}",
            t.not_started, spec.connections
        ));
    }
    let stream_clean = !stream || t.connections_ok + t.not_started == spec.connections;
    let ok = errors.total() == 0 && stream_clean && run.stopped_early.is_none();
    let transport = match spec.targets.first() {
        Some(first)
            if spec
                .targets
                .iter()
                .all(|x| x.transport() == first.transport()) =>
        {
            first.transport()
        }
        Some(_) => "mixed",
        None => "none",
    };
    let (lifetime_messages, lifetime_secs) = match spec.session_lifetime() {
        Some(Lifetime::Messages(n)) => (Some(n), None),
        Some(Lifetime::Time(d)) => (None, Some(d.as_secs_f64())),
        None => (None, None),
    };
    let completed = t.completed;
    let histograms = Some(Arc::new(Histograms {
        corrected: t.rtt.clone(),
        uncorrected: t.rtt_sent.clone(),
    }));
    let (count, duration_secs) = match spec.stop {
        Stop::Count(n) => (Some(n), None),
        Stop::Duration(d) => (None, Some(d.as_secs_f64())),
    };
    Report {
        tool: "ricochet-probe",
        version: env!("CARGO_PKG_VERSION"),
        started_at: run.started_at,
        target: spec.targets_text(),
        transport,
        mode: spec.mode.as_str(),
        pattern: spec.pattern.as_str(),
        connections: spec.connections,
        threads: run.threads,
        size_min: spec.size.min,
        size_max: spec.size.max,
        seed: spec.seed,
        count,
        duration_secs,
        warmup_secs: spec.warmup.as_secs_f64(),
        rate: spec.rate,
        window: spec.window,
        timeout_secs: spec.timeout.as_secs_f64(),
        max_loss_pct: spec.max_loss_pct,
        interval_secs: spec.interval.map(|d| d.as_secs_f64()),
        lifetime_messages,
        lifetime_secs,
        connect_rate: spec.connect_rate,
        measured_secs,
        messages_requested: spec.planned_messages(),
        messages_sent: t.messages_sent,
        messages_verified: t.messages_verified,
        bytes_sent: t.bytes_sent,
        bytes_verified: t.bytes_verified,
        round_trips,
        round_trips_per_sec,
        mb_per_sec,
        mbit_per_sec: mb_per_sec * 8.0,
        latency_us,
        latency_uncorrected_us: spec.rate.map(|_| latency_of(&t.rtt_sent)),
        send_lateness_us: spec.rate.map(|_| latency_of(&t.late)),
        connect_us: stream.then(|| latency_of(&t.connect)),
        first_byte_us: stream.then(|| latency_of(&t.first_byte)),
        connections_opened: t.connects,
        connections_completed: completed,
        connections_per_sec: completed as f64 / measured_secs,
        connections_ok: t.connections_ok,
        connections_not_started: t.not_started,
        errors,
        error_details: details,
        warnings,
        hints,
        datagrams,
        tls,
        stopped_early: run.stopped_early,
        ok,
        targets,
        intervals: Vec::new(),
        histograms,
    }
}

/// The `tls` section of a run with `tls://` targets (`None` without any),
/// and its warning (`--insecure`) and hint (no handshake completed).
fn tls_section(
    spec: &ProbeSpec,
    t: &Tally,
    measured_secs: f64,
    warnings: &mut Vec<String>,
    hints: &mut Vec<String>,
) -> Option<TlsReport> {
    let mut names: Vec<&str> = Vec::new();
    for target in &spec.targets {
        if let Target::Tls(tls) = target {
            let name = spec.tls.server_name.as_deref().unwrap_or(&tls.host);
            if !names.contains(&name) {
                names.push(name);
            }
        }
    }
    if names.is_empty() {
        return None;
    }
    if spec.tls.insecure {
        warnings.push(
            "--insecure: the server's certificate was NOT verified (any certificate was \
             accepted); do not trust this connection beyond a test"
                .to_owned(),
        );
    }
    if t.errors.handshake > 0 && t.handshakes == 0 {
        hints.push(
            "no TLS handshake completed: check that the server speaks TLS on this port \
             (a plain echo server is tcp://), that --tls-ca holds the CA that signed its \
             certificate, and that --tls-server-name matches a name in it"
                .to_owned(),
        );
    }
    let handshake_us = latency_of(&t.handshake_time);
    Some(TlsReport {
        server_name: names.join(" "),
        insecure: spec.tls.insecure,
        resumption: !spec.tls.no_resumption,
        handshakes: t.handshakes,
        resumed: t.resumed,
        verified: !spec.tls.insecure && t.handshakes > 0,
        handshakes_per_sec: (handshake_us.count >= MIN_RATE_HANDSHAKES
            && measured_secs >= MIN_RATE_SPAN_SECS)
            .then(|| handshake_us.count as f64 / measured_secs),
        handshake_us,
    })
}

/// A received byte as a reader wants it: `'m' (0x6d)` if printable, `0x9c` otherwise.
pub(super) fn show_byte(b: u8) -> String {
    if b.is_ascii_graphic() || b == b' ' {
        format!("'{}' (0x{b:02x})", b as char)
    } else {
        format!("0x{b:02x}")
    }
}

/// Received bytes as a quoted string: printable ASCII as is, the rest escaped.
pub(super) fn show_bytes(data: &[u8]) -> String {
    let mut s = String::with_capacity(data.len() + 2);
    s.push('"');
    for &b in data {
        match b {
            b'"' => s.push_str("\\\""),
            b'\\' => s.push_str("\\\\"),
            b'\n' => s.push_str("\\n"),
            b'\r' => s.push_str("\\r"),
            b'\t' => s.push_str("\\t"),
            b' '..=b'~' => s.push(b as char),
            _ => s.push_str(&format!("\\x{b:02x}")),
        }
    }
    s.push('"');
    s
}

/// The message of a timeout of `timeout` without progress.
pub(super) fn no_progress(timeout: std::time::Duration) -> String {
    format!("no progress for {}", format_duration(timeout))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_show_printable_ascii_and_escape_the_rest() {
        assert_eq!(show_byte(b'm'), "'m' (0x6d)");
        assert_eq!(show_byte(0x9c), "0x9c");
        assert_eq!(show_bytes(b"220 hello\r\n\x00"), "\"220 hello\\r\\n\\x00\"");
    }

    fn tls(host: &str) -> Target {
        Target::Tls(super::super::TlsTarget {
            addrs: vec!["127.0.0.1:7".parse().unwrap()],
            host: host.to_owned(),
        })
    }

    fn tally() -> Tally {
        Tally::new(super::super::tally::Window {
            start: Instant::ZERO,
            end: None,
        })
        .unwrap()
    }

    #[test]
    fn tls_section_only_with_tls_targets_naming_each_name_once() {
        let (mut w, mut h) = (Vec::new(), Vec::new());
        let tcp = ProbeSpec::new(Target::Tcp(vec!["127.0.0.1:7".parse().unwrap()]));
        assert!(tls_section(&tcp, &tally(), 1.0, &mut w, &mut h).is_none());
        let mut spec = ProbeSpec::new(tls("a.example"));
        spec.targets.push(tls("b.example"));
        spec.targets.push(tls("a.example"));
        let mut t = tally();
        t.handshake(
            Instant::from_millis(1),
            ricochet_core::Duration::from_micros(500),
            true,
        );
        let r = tls_section(&spec, &t, 2.0, &mut w, &mut h).expect("a tls section");
        assert_eq!(r.server_name, "a.example b.example");
        assert_eq!(
            (r.handshakes, r.resumed, r.handshakes_per_sec),
            (1, 1, None)
        );
        assert!(r.verified);
        assert!(w.is_empty() && h.is_empty(), "{w:?} {h:?}");
        t.handshake(
            Instant::from_millis(2),
            ricochet_core::Duration::from_micros(500),
            false,
        );
        let r = tls_section(&spec, &t, 2.0, &mut w, &mut h).expect("a tls section");
        assert_eq!(r.handshakes_per_sec, Some(1.0));
        let r = tls_section(&spec, &t, 0.009, &mut w, &mut h).expect("a tls section");
        assert_eq!(
            r.handshakes_per_sec, None,
            "a span under 10 ms gives no rate"
        );
    }

    #[test]
    fn tls_section_warns_of_insecure_and_hints_when_no_handshake_completed() {
        let (mut w, mut h) = (Vec::new(), Vec::new());
        let mut spec = ProbeSpec::new(tls("localhost"));
        spec.tls.insecure = true;
        let mut t = tally();
        t.errors.count(ErrorKind::Handshake);
        let r = tls_section(&spec, &t, 1.0, &mut w, &mut h).expect("a tls section");
        assert!(r.insecure && !r.verified);
        assert!(w[0].contains("NOT verified"), "{w:?}");
        assert!(h[0].contains("no TLS handshake completed"), "{h:?}");
    }
}
