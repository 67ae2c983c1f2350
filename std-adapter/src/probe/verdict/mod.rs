//! Turning the merged tallies of a run into its [`Report`]: rates over the
//! measured span, the pass/fail verdict, warnings, and hints that name the
//! likely cause of a failure and what to try.

use std::sync::Arc;

use ricochet_core::probe::{DATAGRAM_HEADER, overdue_at_most};
use ricochet_core::{Instant, Mode};

use super::report::{
    ConnError, ErrorKind, Histograms, MAX_ERROR_DETAILS, MIN_RATE_HANDSHAKES, MIN_RATE_SPAN_SECS,
    Report, TargetReport, TlsReport,
};
use super::spec::{Lifetime, Pattern, ProbeSpec, Stop};
use super::tally::{Tally, latency_of};
use super::units::{count_of, format_bytes, format_duration, format_rate};
use super::{StopReason, Target};

/// The per-source datagram rate `ricochet serve` and the embedded node
/// allow by default (the core's `RateLimit::DEFAULT`).
const DEFAULT_SOURCE_RATE: u32 = ricochet_core::datagram::RateLimit::DEFAULT.per_second;
/// The largest datagram the embedded node echoes by default (its QEMU and
/// board firmware; `ricochet serve` takes up to 1472).
const EMBEDDED_NODE_MAX_DATAGRAM: usize = 1400;

mod hints;
#[cfg(test)]
mod tests;

use hints::{
    early_end_hints, loss_hold_hint, nagle_hint, over_source_rate_hint, rate_missed_why,
    small_window_warning, stream_loss_hint, syn_retransmit_hint,
};

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
    /// When the workers were done (their in-flight messages drained).
    pub(super) ended_at: Instant,
}

/// Seconds since the start of the measured span (`window_start`) at `at`.
fn secs_since(window_start: Instant, at: Instant) -> f64 {
    at.saturating_since(window_start).as_micros() as f64 / 1e6
}

/// The length of the measured span, in seconds (at least 1 us).
///
/// It runs from `run.window_start` to the end of the duration, however
/// little came back near its end (a server stalled then must not make the
/// span shorter and its rates higher), or to the end of a run that ended
/// sooner (interrupted, every connection failed); a count run that was not
/// interrupted has no planned end: to its last verified byte.
///
/// Paced runs (`rate`): the span is at least [`schedule_secs`] of the
/// `round_trips` it counts, without going past the end of the duration.
/// The last verified byte comes one round trip after the last message was
/// due, while N messages at R msg/s take N / R seconds of schedule (each
/// has its interval of C / R on its connection): from the first send to the
/// last echo covers N − 1 intervals, and `-r 1 -n 2` reported 2/s. Rates
/// of a paced run so never exceed the rate asked for; a server that cannot
/// keep up still makes the span longer than the schedule, and its rate lower.
fn measured_secs(
    rate: Option<f64>,
    run: &RunFacts,
    last_verified: Option<Instant>,
    round_trips: u64,
) -> f64 {
    let end = match (run.finish_at, run.stopped_early) {
        (Some(finish), _) => finish.min(run.ended_at),
        (None, Some(_)) => run.ended_at,
        (None, None) => last_verified.unwrap_or(run.window_start),
    };
    let mut secs = secs_since(run.window_start, end);
    if let Some(schedule) = schedule_secs(rate, round_trips) {
        let duration = run.finish_at.map(|f| secs_since(run.window_start, f));
        secs = secs.max(duration.map_or(schedule, |d| schedule.min(d)));
    }
    secs.max(1e-6)
}

/// The seconds that `round_trips` messages take on the schedule of a paced
/// run at `rate` msg/s in total (`None` without a rate).
pub(super) fn schedule_secs(rate: Option<f64>, round_trips: u64) -> Option<f64> {
    rate.filter(|r| *r > 0.0).map(|r| round_trips as f64 / r)
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
    let round_trips = t.round_trips();
    let measured_secs = measured_secs(spec.rate, &run, t.last_verified, round_trips);
    let targets = per_target
        .iter()
        .enumerate()
        .map(|(i, part)| target_row(spec, i, part, measured_secs))
        .collect();
    let latency_us = latency_of(&t.rtt);
    // For the rate warning, whose why they tell (`t.details` moves below).
    let (late_us, uncorrected_us) = (latency_of(&t.late), latency_of(&t.rtt_sent));
    let round_trips_per_sec = round_trips as f64 / measured_secs;
    let mb_per_sec = t.window_bytes as f64 / 1e6 / measured_secs;
    let mut errors = t.errors;
    let mut warnings = Vec::new();
    let mut hints = Vec::new();
    let tls = tls_section(spec, &t, measured_secs, &mut warnings, &mut hints);
    let stream = spec.is_stream();
    if stream {
        early_end_hints(spec, &t, per_target, &mut hints);
    }
    let mut details = t.details;
    let datagrams = (!stream).then(|| {
        let mut d = t.datagrams;
        d.max_loss_pct = spec.max_loss_pct;
        d.loss_pct = if d.sent == 0 {
            0.0
        } else {
            d.lost as f64 * 100.0 / d.sent as f64
        };
        // Datagrams lost only because their socket failed are that
        // failure's error already.
        let judged = d.lost.saturating_sub(d.lost_on_failure);
        let judged_pct = if d.sent == 0 {
            0.0
        } else {
            judged as f64 * 100.0 / d.sent as f64
        };
        if judged > 0 && judged_pct > spec.max_loss_pct {
            errors.loss += 1;
            if details.len() < MAX_ERROR_DETAILS {
                details.push(ConnError {
                    connection: None,
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
        // The hints on losses weigh only those not already a socket's
        // failure (a server that stopped mid-run lost nothing to a limit).
        if judged > 0 && spec.size.max > ETHERNET_UDP_MAX {
            hints.push(format!(
                "{} were lost, and datagrams were larger than {ETHERNET_UDP_MAX} bytes: many echo servers \
                 drop larger ones (`ricochet serve` does unless --udp-max-datagram is raised); try \
                 -s {ETHERNET_UDP_MAX} or less, or raise the server's limit",
                if d.verified == 0 { "all datagrams" } else { "some datagrams" },
            ));
        }
        let in_flight = spec.datagram_config(0).window;
        if judged > 0 && d.verified > 0 && spec.rate.is_none() && in_flight > 1 {
            hints.push(stream_loss_hint(spec, in_flight));
        } else if judged > 0 && d.verified > 0 && spec.rate.is_none() {
            hints.push(
                "datagrams were lost in a closed loop (no --rate: each is sent as soon as the \
                 last came back): a server with a per-source rate limit drops what exceeds it \
                 (`ricochet serve` allows 1000/s in bursts of 100 per address; the embedded node \
                 limits every address, and QEMU's user network makes all traffic one address); \
                 try --rate 500, or raise the server's limit"
                    .to_owned(),
            );
        }
        if judged > 0
            && let Some(rate) = spec.rate.filter(|&r| r > f64::from(DEFAULT_SOURCE_RATE))
        {
            hints.push(over_source_rate_hint(rate));
        }
        let rate_missed =
            spec.rate.is_none_or(|rate| round_trips_per_sec < RATE_REACHED * rate);
        if judged > 0 && d.verified > 0 && rate_missed {
            hints.push(loss_hold_hint(spec));
        }
        if d.sent > 0
            && d.lost == d.sent
            && d.late + d.foreign == 0
            && spec.size.max <= ETHERNET_UDP_MAX
            && errors.refused == 0
        {
            hints.push(format!(
                "nothing came back: all {} datagrams were lost; is a UDP echo server listening \
                 there (UDP gets no refusal unless an ICMP port unreachable comes back, which \
                 firewalls often drop)? does it answer from the same address and port the \
                 datagrams were sent to (replies from another port or address are not seen, not \
                 even as foreign datagrams)? some inetd echo services ignore datagrams from \
                 loopback or privileged (below 1024) source addresses and ports{}",
                d.sent,
                if spec.size.max > EMBEDDED_NODE_MAX_DATAGRAM {
                    format!(
                        "; or it drops datagrams of {} bytes (the embedded node takes at most \
                         {EMBEDDED_NODE_MAX_DATAGRAM}; try -s 64)",
                        spec.size.max
                    )
                } else {
                    String::new()
                }
            ));
        }
        // Refused at once on some sockets while others to the same
        // target were answered: the server is there, for one peer.
        let refused_beside_answered: u64 = per_target
            .iter()
            .filter(|part| part.datagrams.verified > 0)
            .map(|part| part.refused_unverified)
            .sum();
        if refused_beside_answered > 0 {
            hints.push(format!(
                "{} {} refused (ICMP port unreachable) before anything came back, while other \
                 sockets to the same target were answered: the server is there but serves one \
                 peer at a time (socat's UDP-LISTEN without fork connects its socket to the first \
                 peer and refuses the others: use UDP-RECVFROM with fork), or it stopped during \
                 the run; try -c 1",
                count_of(refused_beside_answered, "socket"),
                if refused_beside_answered == 1 { "was" } else { "were" }
            ));
        }
        if d.duplicate > 0 {
            warnings.push(format!(
                "{} came back: copies of datagrams already verified (the server answered some \
                 more than once, or the network duplicated them)",
                count_of(d.duplicate, "duplicate")
            ));
        }
        if d.reordered > 0 {
            warnings.push(format!(
                "{} came back out of order, after one sent later (UDP keeps no order: counted, \
                 not a failure)",
                count_of(d.reordered, "datagram")
            ));
        }
        if d.late > 0 {
            warnings.push(format!(
                "{} came back after being counted lost: a datagram not back within --timeout \
                 {} is counted lost (so is one still unanswered when 64 later ones gave their \
                 slots up too); a longer --timeout waits longer",
                count_of(d.late, "datagram"),
                format_duration(spec.timeout),
            ));
        }
        if d.foreign > 0 {
            let short = match (t.foreign_short, t.foreign_shortest) {
                (0, _) | (_, None) => String::new(),
                (n, Some(shortest)) => format!(
                    ", {} shorter than the {DATAGRAM_HEADER}-byte header every probe datagram \
                     starts with (the shortest: {}): echoes cut short, if the server truncates \
                     datagrams (to a buffer that small) or something between does",
                    if n == d.foreign {
                        "all of them".to_owned()
                    } else {
                        format!("{n} of them")
                    },
                    count_of(shortest as u64, "byte")
                ),
            };
            warnings.push(format!(
                "{} received that the probe never sent{short}",
                count_of(d.foreign, "datagram")
            ));
        }
        if t.send_blocked > 0 {
            warnings.push(format!(
                "{} could not be sent (socket buffer full) and {} as lost",
                count_of(t.send_blocked, "datagram"),
                if t.send_blocked == 1 { "counts" } else { "count" }
            ));
        }
        d
    });
    if let Some(hint) = nagle_hint(
        spec,
        &latency_us,
        &latency_of(&t.connect),
        (t.split_stalls, round_trips),
    ) {
        hints.push(hint);
    }
    hints.extend(syn_retransmit_hint(spec, &latency_of(&t.connect)));
    if stream && spec.mode == Mode::Raw && errors.timeout > 0 && t.bytes_verified == 0 {
        hints.push(
            "nothing came back at all: a server that echoes only complete lines or frames \
             (e.g. `ricochet serve --mode lines`) holds raw data forever; probe it with -m lines or -m frames. \
             Or it is not an echo service: a discard service (RFC 863, port 9) or any \
             server that reads without answering looks the same"
                .to_owned(),
        );
    }
    if stream && spec.pattern == Pattern::Stream && errors.timeout > 0 && t.bytes_verified > 0 {
        hints.push(format!(
            "echoes stopped mid-stream after bytes had come back, with up to the --window of {} \
             in flight: a server relaying through pipes with blocking writes (`ncat -e`, \
             copying between the socket and the program's pipes) deadlocks once the window fills both ways (ncat -e /bin/cat \
             passed at -w 128K, not at the default 256K); if a smaller -w passes, that is it, \
             otherwise the server stalled",
            format_bytes(spec.window as u128)
        ));
    }
    if stream && spec.mode != Mode::Raw && errors.timeout > 0 && t.messages_verified == 0 {
        let (unit, others) = if spec.mode == Mode::Lines {
            (
                "line",
                "frames or raw bytes, not lines, probe it with -m frames or -m raw",
            )
        } else {
            (
                "frame",
                "lines or raw bytes, not frames, probe it with -m lines or -m raw",
            )
        };
        hints.push(format!(
            "no {unit} came back whole before the timeout: if the server echoes {others}; it may \
             also not be an echo server at all (a discard service reads everything and answers \
             nothing)"
        ));
    }
    if let Some(rate) = spec.rate
        && round_trips > 0
        && round_trips_per_sec < RATE_REACHED * rate
    {
        let why = match spec.connect_rate {
            // The ramp of the first connections: slots start when theirs opens.
            Some(cr) if spec.connections as f64 / cr >= 0.1 * measured_secs => format!(
                "the first {} connections opened at --connect-rate {}/s, over about {:.1} s of \
                 it, and each slot's schedule starts when its connection opens; measure after \
                 the ramp with --warmup {:.0}s, or the server or the probe could not keep up",
                spec.connections,
                format_rate(cr),
                spec.connections as f64 / cr,
                (spec.connections as f64 / cr).ceil()
            ),
            // A lost datagram holds its socket's window for a while
            // (`loss_hold_hint`): the losses, not the server's speed, may be
            // what held the rate down.
            _ if datagrams.as_ref().is_some_and(|d| d.lost > 0) => format!(
                "datagrams were lost, and each lost one holds its socket's window for a \
                 retransmission timeout estimated from the round trips (1 ms to {}) before the \
                 next one goes (see the hint); latencies include the queueing",
                format_duration(overdue_at_most(spec.timeout.into()).into())
            ),
            _ => rate_missed_why(spec, &late_us, &uncorrected_us, round_trips_per_sec),
        };
        warnings.push(format!(
            "the requested rate of {} msg/s was not reached: {round_trips_per_sec:.1}/s \
             achieved ({why})",
            format_rate(rate)
        ));
    }
    if run.stopped_early.is_none() && t.not_started > 0 {
        let rate = spec
            .connect_rate
            .map_or_else(String::new, |r| format!(" at --connect-rate {r}/s"));
        warnings.push(format!(
            "{} of {} connections were never opened, or sent nothing: the duration ended first{rate}",
            t.not_started, spec.connections
        ));
    }
    warnings.extend(small_window_warning(spec));
    // A run that ended without one byte echoed and verified (its duration
    // over before any connection got an echo, or before any datagram was
    // sent) proves nothing about the server: it does not pass. (Datagrams
    // sent and all lost are judged by --max-loss.)
    let nothing_verified =
        t.bytes_verified == 0 && t.messages_verified == 0 && (stream || t.messages_sent == 0);
    if nothing_verified && run.stopped_early.is_none() {
        warnings.push(format!(
            "nothing was verified: no echo came back before the run ended ({}); \
             lengthen --duration, or check that the target answers",
            count_of(t.messages_sent, "message") + " sent"
        ));
    }
    let stream_clean = !stream || t.connections_ok + t.not_started == spec.connections;
    let ok =
        errors.total() == 0 && stream_clean && !nothing_verified && run.stopped_early.is_none();
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
        tool: super::report::TOOL,
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
        window_datagrams: (!stream).then(|| spec.datagram_config(0).window),
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
        messages_cut: t.messages_cut,
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
        let client_certificate = if spec.tls.client_cert.is_some() {
            "that it accepts the client certificate of --tls-cert (mutual TLS: signed by a CA \
             it trusts, e.g. in `ricochet serve --tls-client-ca`)"
        } else {
            "that it does not require a client certificate (mutual TLS), or give the probe one \
             with --tls-cert FILE --tls-key FILE"
        };
        hints.push(format!(
            "no TLS handshake completed: check that the server speaks TLS on this port \
             (a plain echo server is tcp://), that --tls-ca holds the CA that signed its \
             certificate, that --tls-server-name matches a name in it, and {client_certificate}"
        ));
    }
    let handshake_us = latency_of(&t.handshake_time);
    Some(TlsReport {
        server_name: names.join(" "),
        insecure: spec.tls.insecure,
        resumption: !spec.tls.no_resumption,
        client_certificate: spec
            .tls
            .client_cert
            .as_ref()
            .map(|p| p.display().to_string()),
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
