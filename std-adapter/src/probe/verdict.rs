//! Turning the merged tallies of a run into its [`Report`]: rates over the
//! measured span, the pass/fail verdict, warnings, and hints that name the
//! likely cause of a failure and what to try.

use std::sync::Arc;

use ricochet_core::probe::overdue_at_most;
use ricochet_core::{Instant, Mode};

use super::report::{
    ConnError, ErrorKind, Histograms, Latency, MAX_ERROR_DETAILS, MIN_RATE_HANDSHAKES,
    MIN_RATE_SPAN_SECS, Report, TargetReport, TlsReport,
};
use super::spec::{Lifetime, Pattern, ProbeSpec, Stop, UDP_MAX_IN_FLIGHT};
use super::tally::{Tally, latency_of};
use super::units::{count_of, format_duration, format_micros, format_rate};
use super::{StopReason, Target};

/// The largest UDP payload that fits an Ethernet frame without IP
/// fragmentation (1500 − 20 − 8), and the default limit of `ricochet serve`.
const ETHERNET_UDP_MAX: usize = 1472;
/// Below this fraction of `--rate` the report warns that the rate was not reached.
const RATE_REACHED: f64 = 0.9;
/// A paced run whose sends left at least this late (median, microseconds)
/// was held back by the probe itself.
const PROBE_LATE_US: u64 = 1_000;
/// A ping-pong run achieving this fraction of what its connections can
/// carry at their round trip (C / mean round trip), or up to its inverse
/// (the figures' noise), was held by the round trip, not by the probe's sends.
const ROUND_TRIP_BOUND: f64 = 0.8;
/// The longest line (frame) `ricochet serve` echoes by default: its `--buffer-size`.
const SERVE_BUFFER: usize = crate::serve::BufferSize::K4.bytes();
/// The longest line (frame) the embedded node echoes by default: its
/// `SessionBuffer` (`embedded/src/resources.rs`, also the QEMU board's).
const EMBEDDED_BUFFER: usize = 1024;

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
        let in_flight = spec.datagram_config(0).window;
        if d.lost > 0 && d.verified > 0 && spec.rate.is_none() && in_flight > 1 {
            hints.push(stream_loss_hint(spec, in_flight));
        } else if d.lost > 0 && d.verified > 0 && spec.rate.is_none() {
            hints.push(
                "datagrams were lost in a closed loop (no --rate: each is sent as soon as the \
                 last came back): a server with a per-source rate limit drops what exceeds it \
                 (`ricochet serve` allows 1000/s in bursts of 100 per address; the embedded node \
                 limits every address, and QEMU's user network makes all traffic one address); \
                 try --rate 500, or raise the server's limit"
                    .to_owned(),
            );
        }
        let rate_missed =
            spec.rate.is_none_or(|rate| round_trips_per_sec < RATE_REACHED * rate);
        if d.lost > 0 && d.verified > 0 && rate_missed {
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
                 loopback or privileged (below 1024) source addresses and ports",
                d.sent
            ));
        }
        if d.duplicate > 0 {
            warnings.push(format!("{} came back twice", count_of(d.duplicate, "datagram")));
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
                "{} came back after being counted lost (raise --timeout to count {})",
                count_of(d.late, "datagram"),
                if d.late == 1 { "it" } else { "them" }
            ));
        }
        if d.foreign > 0 {
            warnings.push(format!(
                "{} received that the probe never sent",
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
    if let Some(hint) = nagle_hint(spec, &latency_us, &latency_of(&t.connect)) {
        hints.push(hint);
    }
    if stream && spec.mode == Mode::Raw && errors.timeout > 0 && t.bytes_verified == 0 {
        hints.push(
            "nothing came back at all: a server that echoes only complete lines or frames \
             (e.g. `ricochet serve --mode lines`) holds raw data forever; probe it with -m lines or -m frames. \
             Or it is not an echo service: a discard service (RFC 863, port 9) or any \
             server that reads without answering looks the same"
                .to_owned(),
        );
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
            "{} of {} connections were never opened: the duration ended first{rate}",
            t.not_started, spec.connections
        ));
    }
    warnings.extend(small_window_warning(spec));
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

/// Round trips of a nearby server (connecting took under 5 ms) whose median
/// is 35 to 60 ms: Linux's delayed ACK (40 ms) meeting the server's Nagle
/// algorithm. A server that echoes a message in several writes without
/// `TCP_NODELAY` holds the last piece until the first is acknowledged, and
/// the probe acknowledges late because it has nothing to send until the
/// whole echo is back. The probe sets `TCP_NODELAY` on its own sockets.
fn nagle_hint(spec: &ProbeSpec, rtt: &Latency, connect: &Latency) -> Option<String> {
    let stalled = (35_000..=60_000).contains(&rtt.p50);
    let near = connect.count > 0 && connect.p50 < 5_000;
    (spec.is_stream() && spec.pattern != Pattern::Stream && stalled && near).then(|| {
        format!(
            "round trips take {:.1} ms at the median although connecting took {:.2} ms: the \
             signature of the server's Nagle algorithm meeting this host's 40 ms delayed ACK (a \
             server that echoes a message in several writes without TCP_NODELAY holds the last \
             piece until the first is acknowledged); the probe sets TCP_NODELAY itself, so the \
             fix is in the server (`ricochet serve` sets it), or probe with messages that fit \
             one write (a smaller -s)",
            rtt.p50 as f64 / 1e3,
            connect.p50 as f64 / 1e3
        )
    })
}

/// Why a paced run fell short of its rate, when its measurements tell: the
/// probe's own sends left late (the probe could not keep up), or one
/// message in flight per connection at the round trip measured carries no
/// more (Little's law: C / mean round trip); else either side may be it.
fn rate_missed_why(spec: &ProbeSpec, late: &Latency, rtt: &Latency, achieved: f64) -> String {
    const QUEUEING: &str = "latencies include the queueing";
    if late.count > 0 && late.p50 >= PROBE_LATE_US {
        return format!(
            "the probe's own sends left late, p50 {} behind their schedule: the probe could \
             not keep up; give it more --threads or a machine of its own, or a lower --rate; \
             {QUEUEING}",
            format_micros(late.p50)
        );
    }
    if spec.pattern == Pattern::PingPong && rtt.count > 0 && rtt.mean > 0.0 {
        let carried = spec.connections as f64 * 1e6 / rtt.mean;
        // Far above what one message in flight carries, the figures
        // contradict the bound (messages timed oddly): say nothing of it.
        if (ROUND_TRIP_BOUND * carried..=carried / ROUND_TRIP_BOUND).contains(&achieved) {
            return format!(
                "ping-pong keeps one message in flight per connection: {} at a mean round trip \
                 of {} carry at most about {} msg/s, and the probe's sends were on time; for \
                 more, give more -c (or -p stream), or the server (or the probe's \
                 reading) answers too slowly; {QUEUEING}",
                count_of(spec.connections as u64, "connection"),
                format_micros(rtt.mean.round() as u64),
                format_rate(carried.round())
            );
        }
    }
    format!("the server or the probe could not keep up; {QUEUEING}")
}

/// `n` connection(s) with the verb agreeing: "1 connection was", "2 connections were".
fn connections_were(n: u64) -> String {
    if n == 1 {
        "1 connection was".to_owned()
    } else {
        format!("{n} connections were")
    }
}

/// Hints for stream connections the peer ended before any of their bytes
/// verified, by what was seen.
///
/// A reset is how `ricochet serve` and the embedded node abort a line or
/// frame longer than their buffer: the hint names the limits, the sizes
/// sent and `-m` (a raw probe's random bytes make overlong lines, a line
/// read as a frame has a random length).
///
/// A port forward with nothing behind it (QEMU `hostfwd` while the guest
/// boots, a container's published port, an SSH tunnel) accepts on this host
/// and closes at once: a clean close, or a reset when the probe's first
/// message is still unread (a plain `close` then resets). Both get the
/// forward hint, on TCP targets, when nothing at all verified in the run
/// (anything echoed means the server is up).
fn early_end_hints(spec: &ProbeSpec, t: &Tally, per_target: &[Tally], hints: &mut Vec<String>) {
    // Other connections of the run were served at these message sizes:
    // raw data that a connection echoed whole (a lines or frames server
    // echoes random raw data only up to a chance `\n` or header), or
    // messages of the one fixed size that came back.
    let fixed = spec.size.min == spec.size.max;
    let size_served = match spec.mode {
        Mode::Raw => t.connections_ok > 0 || t.completed > 0,
        Mode::Lines | Mode::Frames => fixed && t.messages_verified > 0,
    };
    if t.reset_unverified > 0 {
        hints.push(if size_served {
            connection_limit_hint(t.reset_unverified)
        } else {
            limit_hint(spec, t.reset_unverified, Ended::Reset)
        });
    }
    // A Unix stream socket has no reset: a server's abort (a line or frame
    // over its buffer) reads as an end of stream, so there a close gets the
    // hint a reset gets over TCP.
    let unix_closed: u64 = spec
        .targets
        .iter()
        .zip(per_target)
        .filter(|(target, _)| matches!(target, Target::Unix(_)))
        .map(|(_, part)| part.closed_unverified)
        .sum();
    let unix_closed = unix_closed.min(t.closed_unverified);
    if unix_closed > 0 && spec.mode != Mode::Raw && !size_served {
        hints.push(limit_hint(spec, unix_closed, Ended::UnixClose));
    }
    let other_closed = t.closed_unverified - unix_closed;
    if other_closed > 0
        && spec.mode != Mode::Raw
        && spec.size.max > crate::serve::BufferSize::MIN.bytes()
        && !size_served
    {
        hints.push(close_limit_hint(spec, other_closed));
    }
    let (mut closed, mut reset) = (0, 0);
    for (target, part) in spec.targets.iter().zip(per_target) {
        if matches!(target, Target::Tcp(_)) {
            closed += part.closed_unverified;
            reset += part.reset_unverified;
        }
    }
    if t.bytes_verified > 0 || closed + reset == 0 {
        return;
    }
    let forwards = "QEMU's user network `hostfwd`, a container's published port, an SSH tunnel";
    let wait = "so the server behind it may not be up yet (e.g. the QEMU guest still booting): \
                wait until it is and try again";
    hints.push(match (closed, reset) {
        (c, 0) => format!(
            "{} closed by the peer before any byte was echoed: a port forward ({forwards}) \
             accepts the connection on this host and closes it at once when nothing listens \
             behind it, {wait}",
            connections_were(c)
        ),
        (0, r) => format!(
            "if the target is a port forward ({forwards}), {} can also mean that nothing \
             listens behind it yet: a forward accepts the connection on this host and closes it \
             at once, the probe's first message unread (hence a reset), {wait}",
            if r == 1 { "the reset" } else { "the resets" }
        ),
        (c, r) => format!(
            "{} closed by the peer and {r} reset before any byte was echoed: a port forward \
             ({forwards}) accepts the connection on this host and closes it at once when nothing \
             listens behind it (a reset when the probe's first message is still unread), {wait}",
            connections_were(c)
        ),
    });
}

/// The hint for `resets` connections reset before any byte was echoed while
/// other connections of the run were served at the same sizes: a limit on
/// connections, not on lines (xinetd's `instances` with more `-c`, an
/// inetd's rate limit tripping under `-p crr`).
fn connection_limit_hint(resets: u64) -> String {
    format!(
        "{} reset before any byte was echoed, while other connections of the run were served: \
         the server limits concurrent connections or their rate (inetd's `nowait.max` or `max`, \
         xinetd's `instances` and `cps`, `ricochet serve --max-connections`), or its listen \
         backlog overflowed; try fewer -c or a lower --connect-rate",
        connections_were(resets)
    )
}

/// The hint for `closes` connections closed cleanly before any byte was
/// echoed in lines or frames mode with long messages: some servers (a
/// Python `readline` with a limit) close, not reset, on an overlong line.
fn close_limit_hint(spec: &ProbeSpec, closes: u64) -> String {
    let (unit, longer, other) = if spec.mode == Mode::Frames {
        ("frame", "2-byte header included", "lines")
    } else {
        ("line", "`\\n` included", "frames")
    };
    format!(
        "{} closed by the peer before any byte was echoed: some servers close, rather than \
         reset, a connection whose {unit} is longer than their limit (e.g. a Python server \
         reading with a `readline` limit), and these {unit}s are up to {} bytes ({longer}): try \
         a smaller -s, or raise the server's limit; if the server echoes {other}, not {unit}s, \
         pass -m {other}",
        connections_were(closes),
        spec.size.max
    )
}

/// The warning for `-p stream` with a `--window` below one message: a
/// message is always sent whole (the core gates only its start), so each
/// connection or socket then keeps one message in flight, as ping-pong does.
fn small_window_warning(spec: &ProbeSpec) -> Option<String> {
    let (window, size) = (spec.window, spec.size);
    if spec.pattern != Pattern::Stream || window >= size.max {
        return None;
    }
    let message = if size.min == size.max {
        format!("a {}-byte message", size.max)
    } else {
        format!("the largest messages ({} bytes)", size.max)
    };
    let (each, unit, rule) = if spec.is_stream() {
        (
            "connection",
            "message",
            "a message is always sent whole, and the next starts only while fewer than \
             --window bytes are in flight",
        )
    } else {
        (
            "socket",
            "datagram",
            "a socket keeps --window / size datagrams in flight, at least one",
        )
    };
    Some(format!(
        "the --window of {window} bytes is smaller than {message}: {rule}, so each {each} kept \
         about one {unit} in flight at a time (as -p pingpong); for a stream, use -w {} or more \
         (several {unit}s)",
        size.max.saturating_mul(4)
    ))
}

/// Why a UDP run with losses is slower than its server: a lost datagram
/// holds its socket's window for a retransmission timeout estimated from
/// the round trips, at least 1 ms (see `DatagramProbe::overdue_after`),
/// many round trips on a fast link.
fn loss_hold_hint(spec: &ProbeSpec) -> String {
    format!(
        "each lost datagram holds its socket's window for a retransmission timeout estimated \
         from the round trips, at least 1 ms and at most {} (a fiftieth of --timeout {}), before \
         the next one goes: with losses, that wait rather than the server can bound the round \
         trips/s (and with --rate the latency from the scheduled sends). A shorter --timeout \
         (a datagram still unanswered after a fiftieth of it, once 64 later ones were sent, is \
         counted lost), more -c, or -p stream with a larger -w raise that bound",
        format_duration(overdue_at_most(spec.timeout.into()).into()),
        format_duration(spec.timeout)
    )
}

/// The hint for datagrams lost by `-p stream` without `--rate`: `in_flight`
/// per socket arrive at once, more than the server's receive buffer holds.
fn stream_loss_hint(spec: &ProbeSpec, in_flight: usize) -> String {
    let fewer = (in_flight / 4).max(1);
    let size = spec.size.max;
    format!(
        "datagrams were lost with up to {in_flight} in flight per socket (-p stream without \
         --rate: each socket keeps its window of --window / size datagrams, at most \
         {UDP_MAX_IN_FLIGHT}, outstanding): the server's receive buffer overflows when they \
         arrive faster than it answers, and a per-source rate limit drops what exceeds it; try a \
         smaller -w, e.g. -w {} ({fewer} datagrams of {size} bytes), or --rate 500, or raise the \
         server's limits",
        fewer * size
    )
}

/// How the peer ended the connections a [`limit_hint`] is about.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// A reset (TCP, TLS; a Unix server that left input unread).
    Reset,
    /// An end of stream on a Unix socket, which is how an abort reads there.
    UnixClose,
}

/// The hint for `n` connections reset (over a Unix socket, closed) before
/// any byte was echoed: a line or frame longer than the server's limit, or
/// `-m` not the server's mode.
fn limit_hint(spec: &ProbeSpec, n: u64, end: Ended) -> String {
    let serve = format!("`ricochet serve` at its --buffer-size, default {SERVE_BUFFER} bytes");
    let (who, resets, limits) = match end {
        Ended::Reset => (
            format!("{} reset before any byte was echoed", connections_were(n)),
            "resets",
            format!(
                "{serve}; the embedded node at its session buffer, {EMBEDDED_BUFFER} bytes by \
                 default"
            ),
        ),
        Ended::UnixClose => (
            format!(
                "{} closed by the peer before any byte was echoed, over a Unix socket, where a \
                 server's abort reads as an end of stream (there is no reset)",
                connections_were(n)
            ),
            "aborts",
            serve,
        ),
    };
    let max = spec.size.max;
    let (unit, longer, other) = match spec.mode {
        Mode::Raw => {
            return format!(
                "{who}: a server that echoes only lines or frames \
                 (`ricochet serve --mode lines`, the embedded node's lines and frames ports) {resets} a \
                 connection whose line or frame grows longer than its limit ({limits}), as random raw \
                 data soon does; if the server echoes lines or frames, probe it with -m lines or -m frames"
            );
        }
        Mode::Lines => ("lines", "`\\n` included", "frames"),
        Mode::Frames => ("frames", "2-byte header included", "lines"),
    };
    if max <= crate::serve::BufferSize::MIN.bytes() {
        // Within the smallest buffer `ricochet serve` takes: the mode is the likelier cause.
        format!(
            "{who}: these {unit} are at most {max} bytes ({longer}), \
             which even `ricochet serve --buffer-size 64` echoes; if the server echoes {other}, not \
             {unit}, pass -m {other}; if it limits {unit} to fewer bytes, try a smaller -s"
        )
    } else {
        format!(
            "{who}: a server that echoes {unit} {resets} a connection \
             whose {} is longer than its limit ({limits}), and these {unit} are up to {max} bytes \
             ({longer}): try a smaller -s, or raise the server's limit; if the server echoes {other}, \
             not {unit}, pass -m {other}",
            unit.trim_end_matches('s')
        )
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

    fn tcp() -> Target {
        Target::Tcp(vec!["127.0.0.1:7".parse().unwrap()])
    }

    fn facts(finish_at: Option<Instant>) -> RunFacts {
        RunFacts {
            threads: 1,
            started_at: String::new(),
            window_start: Instant::ZERO,
            finish_at,
            stopped_early: None,
            // The workers drained after the end of a duration.
            ended_at: finish_at.map_or(Instant::from_millis(60_000), |f| {
                f + ricochet_core::Duration::from_millis(500)
            }),
        }
    }

    /// A tally of 64-byte messages sent and echoed at these instants (ms).
    fn echoed_at(ms: &[u64]) -> Tally {
        let mut t = tally();
        let d = ricochet_core::Duration::from_micros(300);
        for &at in ms {
            let now = Instant::from_micros(at * 1000 + 300);
            t.messages_sent += 1;
            t.messages_verified += 1;
            t.bytes_sent += 64;
            t.bytes_verified += 64;
            t.verified(now, 64);
            t.round_trip(now, d, d);
        }
        t
    }

    fn report(rate: Option<f64>, stop: Stop, finish_at: Option<Instant>, t: Tally) -> Report {
        let mut spec = ProbeSpec::new(tcp());
        spec.rate = rate;
        spec.stop = stop;
        build_report(&spec, facts(finish_at), t.clone(), &[t])
    }

    fn near(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-9
    }

    /// Significant digits of `x` as JSON writes it.
    fn digits(x: &serde_json::Number) -> usize {
        let text = x.to_string();
        let mantissa = text.split(['e', 'E']).next().unwrap_or("");
        let ds = mantissa.chars().filter(char::is_ascii_digit);
        let ds: String = ds.skip_while(|&c| c == '0').collect();
        ds.trim_end_matches('0').len()
    }

    fn floats(v: &serde_json::Value, path: &str, out: &mut Vec<(String, usize)>) {
        match v {
            serde_json::Value::Number(n) if n.is_f64() => out.push((path.to_owned(), digits(n))),
            serde_json::Value::Object(m) => {
                for (k, v) in m {
                    floats(v, &format!("{path}.{k}"), out);
                }
            }
            serde_json::Value::Array(a) => {
                for (i, v) in a.iter().enumerate() {
                    floats(v, &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn json_report_numbers_carry_no_conversion_noise() {
        // 3 round trips over 3.3 ms: rates of 909.0909..., a mean of 1/3 ms.
        let mut t = echoed_at(&[0, 1, 3]);
        t.round_trip(
            Instant::from_micros(3_400),
            ricochet_core::Duration::from_micros(301),
            ricochet_core::Duration::from_micros(301),
        );
        let r = report(None, Stop::Count(3), None, t);
        let j: serde_json::Value = serde_json::from_str(&r.to_json_line()).unwrap();
        let mut all = Vec::new();
        floats(&j, "", &mut all);
        assert!(all.iter().any(|(p, _)| p == ".latency_us.mean"), "{all:?}");
        let noisy: Vec<_> = all.iter().filter(|(_, d)| *d > 9).collect();
        assert!(noisy.is_empty(), "{noisy:?} in {j}");
    }

    #[test]
    fn paced_count_run_spans_its_schedule_and_never_exceeds_the_rate() {
        // -r 1 -n 2: echoes 0.3 ms after 0 s and 1 s; the schedule takes 2 s.
        let r = report(Some(1.0), Stop::Count(2), None, echoed_at(&[0, 1000]));
        assert!(near(r.measured_secs, 2.0), "{}", r.measured_secs);
        assert!(
            near(r.round_trips_per_sec, 1.0),
            "{}",
            r.round_trips_per_sec
        );
        assert!(near(r.targets[0].round_trips_per_sec, 1.0));
        assert!(near(r.mb_per_sec, 128.0 / 1e6 / 2.0));
        assert!(near(r.connections_per_sec, 0.0));
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert!(
            r.to_string().contains(
                "measured     2.000 s, 2 round trips (the span of their schedule at 1 msg/s)\n"
            ),
            "{r}"
        );
        // -c 4 -r 100 -n 50: 200 messages, 4 every 40 ms, the last due at 1.96 s.
        let at: Vec<u64> = (0..50).flat_map(|k| [k * 40; 4]).collect();
        let r = report(Some(100.0), Stop::Count(50), None, echoed_at(&at));
        assert!(near(r.measured_secs, 2.0), "{}", r.measured_secs);
        assert!(
            near(r.round_trips_per_sec, 100.0),
            "{}",
            r.round_trips_per_sec
        );
        // A server that could not keep up: its span is longer than the
        // schedule, and the rate not reached is still a warning.
        let r = report(Some(1.0), Stop::Count(2), None, echoed_at(&[0, 3000]));
        assert!(near(r.measured_secs, 3.0003), "{}", r.measured_secs);
        assert!(r.warnings[0].contains("the requested rate of 1 msg/s was not reached"));
        assert!(
            r.to_string()
                .contains("measured     3.000 s, 2 round trips\n"),
            "{r}"
        );
    }

    #[test]
    fn unpaced_runs_keep_their_span_and_a_paced_duration_spans_the_duration() {
        let r = report(None, Stop::Count(2), None, echoed_at(&[0, 1000]));
        assert!(near(r.measured_secs, 1.0003), "{}", r.measured_secs);
        assert!(near(r.round_trips_per_sec, 2.0 / 1.0003));
        assert!(
            r.to_string()
                .contains("measured     1.000 s, 2 round trips\n"),
            "{r}"
        );
        let d = Stop::Duration(std::time::Duration::from_secs(2));
        let end = Some(Instant::from_millis(2000));
        // -r 1 -d 2s: messages due at 0 and 1 s, the duration ends at 2 s.
        let r = report(Some(1.0), d, end, echoed_at(&[0, 1000]));
        assert!(near(r.measured_secs, 2.0), "{}", r.measured_secs);
        assert!(
            r.to_string()
                .contains("measured     2.000 s, 2 round trips\n"),
            "{r}"
        );
        // Never past the end of the duration.
        let r = report(Some(0.5), d, end, echoed_at(&[0, 1000]));
        assert!(near(r.measured_secs, 2.0), "{}", r.measured_secs);
        assert!(
            near(r.round_trips_per_sec, 1.0),
            "{}",
            r.round_trips_per_sec
        );
    }

    /// A server that answers for the first second of a 2 s run and then
    /// stalls past its end: the run is measured over its whole duration,
    /// not up to the last echo, so its rates are not inflated and a paced
    /// run warns that its rate was not reached.
    #[test]
    fn duration_run_whose_server_stalls_at_the_end_spans_the_whole_duration() {
        let d = Stop::Duration(std::time::Duration::from_secs(2));
        let end = Some(Instant::from_millis(2000));
        let r = report(None, d, end, echoed_at(&[0, 500, 1000]));
        assert!(near(r.measured_secs, 2.0), "{}", r.measured_secs);
        assert!(
            near(r.round_trips_per_sec, 1.5),
            "{}",
            r.round_trips_per_sec
        );
        assert!(near(r.mb_per_sec, 192.0 / 1e6 / 2.0), "{}", r.mb_per_sec);
        let r = report(Some(2.0), d, end, echoed_at(&[0, 500, 1000]));
        assert!(
            near(r.round_trips_per_sec, 1.5),
            "{}",
            r.round_trips_per_sec
        );
        assert!(
            r.warnings
                .iter()
                .any(|w| w.contains("the requested rate of 2 msg/s was not reached")),
            "{:?}",
            r.warnings
        );
        // Interrupted at 1.5 s: up to the interruption, not to the last echo.
        let mut spec = ProbeSpec::new(tcp());
        spec.stop = d;
        let mut run = facts(end);
        run.stopped_early = Some(StopReason::Interrupted);
        run.ended_at = Instant::from_millis(1500);
        let t = echoed_at(&[0, 500, 1000]);
        let r = build_report(&spec, run, t.clone(), &[t]);
        assert!(near(r.measured_secs, 1.5), "{}", r.measured_secs);
    }

    /// Ping-pong round trips of 40 ms to a server that accepted in 0.1 ms:
    /// the Nagle and delayed-ACK hint; not for a far server (connecting
    /// took as long) nor for fast round trips.
    #[test]
    fn forty_ms_round_trips_to_a_near_server_name_nagle_and_delayed_ack() {
        let lat = |p50| Latency {
            count: 10,
            p50,
            ..Latency::default()
        };
        let spec = ProbeSpec::new(tcp());
        let hint = nagle_hint(&spec, &lat(40_500), &lat(100)).expect("a hint");
        assert!(
            hint.contains("40.5 ms") && hint.contains("Nagle") && hint.contains("TCP_NODELAY"),
            "{hint}"
        );
        assert!(
            nagle_hint(&spec, &lat(40_500), &lat(39_000)).is_none(),
            "far away"
        );
        assert!(nagle_hint(&spec, &lat(300), &lat(100)).is_none(), "fast");
        let mut udp = ProbeSpec::new(Target::Udp(vec!["127.0.0.1:7".parse().unwrap()]));
        udp.pattern = Pattern::PingPong;
        assert!(
            nagle_hint(&udp, &lat(40_500), &lat(100)).is_none(),
            "no TCP"
        );
    }

    #[test]
    fn window_below_a_message_warns_per_transport_and_not_at_one_message() {
        let mut spec = ProbeSpec::new(tcp());
        spec.pattern = Pattern::Stream;
        spec.size = ricochet_core::probe::SizeRange::fixed(4096);
        spec.window = 4096;
        assert_eq!(small_window_warning(&spec), None, "one message fits");
        spec.window = 4095;
        let w = small_window_warning(&spec).expect("below one message");
        assert!(w.contains("each connection kept about one message"), "{w}");
        spec.pattern = Pattern::PingPong;
        assert_eq!(small_window_warning(&spec), None, "no window in ping-pong");
        let mut udp = ProbeSpec::new(Target::Udp(vec!["127.0.0.1:7".parse().unwrap()]));
        udp.pattern = Pattern::Stream;
        udp.size = ricochet_core::probe::SizeRange { min: 12, max: 1000 };
        udp.window = 100;
        let w = small_window_warning(&udp).expect("below one datagram");
        assert!(
            w.contains("the largest messages (1000 bytes)")
                && w.contains("each socket kept about one datagram"),
            "{w}"
        );
    }

    /// A rate missed while the first connections were still opening at
    /// --connect-rate: the warning names the ramp and --warmup, not only
    /// the server.
    #[test]
    fn rate_missed_during_a_connect_ramp_names_the_ramp() {
        let d = Stop::Duration(std::time::Duration::from_secs(2));
        let mut spec = ProbeSpec::new(tcp());
        spec.stop = d;
        spec.rate = Some(2.0);
        spec.connections = 10;
        spec.connect_rate = Some(5.0);
        let t = echoed_at(&[0, 1000]);
        let r = build_report(
            &spec,
            facts(Some(Instant::from_millis(2000))),
            t.clone(),
            &[t],
        );
        let w = r.warnings.join("\n");
        assert!(
            w.contains("was not reached")
                && w.contains("--connect-rate 5/s, over about 2.0 s")
                && w.contains("--warmup 2s"),
            "{w}"
        );
        spec.connect_rate = None;
        let t = echoed_at(&[0, 1000]);
        let r = build_report(
            &spec,
            facts(Some(Instant::from_millis(2000))),
            t.clone(),
            &[t],
        );
        assert!(r.warnings.join("\n").contains("could not keep up"));
    }

    /// A rate not reached says which side held it when the figures tell:
    /// the probe's own sends late, or ping-pong's one message in flight
    /// per connection at the round trip measured (it said "the server or
    /// the probe could not keep up" in every case). The rate is shown as
    /// the table shows it, not as Rust prints a float (`1e20`, not 21 digits).
    #[test]
    fn rate_missed_names_the_probe_or_the_round_trip_when_the_figures_tell() {
        let d = Stop::Duration(std::time::Duration::from_secs(1));
        let mut spec = ProbeSpec::new(tcp());
        spec.stop = d;
        spec.connections = 2;
        // Each connection's echoes come 1 ms after their send: 2 connections
        // carry 2000/s at most; 10,000/s was asked.
        spec.rate = Some(10_000.0);
        let rtt = ricochet_core::Duration::from_micros(1000);
        let t_add = |t: &mut Tally, now: Instant, rtt: ricochet_core::Duration| {
            t.messages_sent += 1;
            t.messages_verified += 1;
            t.verified(now, 64);
            t.round_trip(now, rtt, rtt);
        };
        let on_time = |late_us: u64| {
            let mut t = tally();
            for k in 0..2000u64 {
                let now = Instant::from_micros(k * 500 + 1000);
                t.messages_sent += 1;
                t.messages_verified += 1;
                t.verified(now, 64);
                t.round_trip(now, rtt, rtt);
                t.lateness(now, ricochet_core::Duration::from_micros(late_us));
            }
            t
        };
        let warning = |spec: &ProbeSpec, t: Tally| {
            let r = build_report(
                spec,
                facts(Some(Instant::from_millis(1000))),
                t.clone(),
                &[t],
            );
            r.warnings.join("\n")
        };
        let w = warning(&spec, on_time(0));
        assert!(
            w.contains("rate of 10000 msg/s was not reached")
                && w.contains("one message in flight per connection")
                && w.contains("2 connections at a mean round trip of 1000 us")
                && w.contains("at most about 2000 msg/s")
                && w.contains("more -c"),
            "{w}"
        );
        // Round trips of 10 ms carry 200/s, yet 2000/s were achieved: the
        // figures contradict the bound, so the warning does not cite it.
        let mut slow = tally();
        for k in 0..2000u64 {
            let now = Instant::from_micros(k * 500 + 10_000);
            t_add(&mut slow, now, ricochet_core::Duration::from_millis(10));
        }
        let w = warning(&spec, slow);
        assert!(
            w.contains("the server or the probe could not keep up")
                && !w.contains("one message in flight"),
            "{w}"
        );
        let w = warning(&spec, on_time(5_000));
        assert!(
            w.contains("the probe's own sends left late, p50 500") && w.contains("--threads"),
            "{w}"
        );
        // A stream's window is not one message: no round-trip bound to name.
        spec.pattern = Pattern::Stream;
        let w = warning(&spec, on_time(0));
        assert!(
            w.contains("the server or the probe could not keep up"),
            "{w}"
        );
        spec.rate = Some(1e20);
        let w = warning(&spec, on_time(0));
        assert!(w.contains("rate of 1e20 msg/s"), "{w}");
    }

    /// A tally of connections ended early before any byte verified.
    fn ended_early(reset: u64, closed: u64) -> Tally {
        let mut t = tally();
        t.reset_unverified = reset;
        t.closed_unverified = closed;
        for _ in 0..reset + closed {
            t.errors.count(ErrorKind::EarlyClose);
        }
        t
    }

    fn report_of(spec: &ProbeSpec, t: Tally) -> Report {
        build_report(spec, facts(None), t.clone(), &[t])
    }

    fn hints_of(spec: &ProbeSpec, t: Tally) -> Vec<String> {
        build_report(spec, facts(None), t.clone(), &[t]).hints
    }

    fn sized(mode: Mode, size: usize) -> ProbeSpec {
        let mut spec = ProbeSpec::new(tcp());
        spec.mode = mode;
        spec.size = ricochet_core::probe::SizeRange::fixed(size);
        spec
    }

    #[test]
    fn limits_in_the_hints_are_the_servers_defaults() {
        let config = crate::serve::ServerConfig::default();
        assert_eq!(SERVE_BUFFER, config.buffer_size.bytes());
    }

    #[test]
    fn a_reset_before_any_echo_names_the_limit_the_size_and_the_mode() {
        let h = hints_of(&sized(Mode::Lines, 200), ended_early(1, 0));
        assert_eq!(h.len(), 2, "the limit, then a forward: {h:?}");
        assert!(
            h[0].starts_with("1 connection was reset before any byte was echoed: ")
                && h[0].contains("--buffer-size, default 4096 bytes")
                && h[0].contains("1024 bytes by default")
                && h[0].contains("these lines are up to 200 bytes (`\\n` included)")
                && h[0].contains("try a smaller -s")
                && h[0].contains("pass -m frames"),
            "{h:?}"
        );
        assert!(h[1].starts_with("if the target is a port forward"), "{h:?}");
        let h = hints_of(&sized(Mode::Frames, 2000), ended_early(3, 0));
        assert!(
            h[0].starts_with("3 connections were reset")
                && h[0].contains("these frames are up to 2000 bytes (2-byte header included)")
                && h[0].contains("pass -m lines"),
            "{h:?}"
        );
        assert!(h[1].contains("the resets can also mean"), "{h:?}");
        // Lines that even the smallest buffer takes: the mode comes first.
        let h = hints_of(&sized(Mode::Lines, 64), ended_early(1, 0));
        assert!(
            h[0].contains("at most 64 bytes") && h[0].contains("pass -m frames"),
            "{h:?}"
        );
        assert!(!h[0].contains("default 4096"), "{h:?}");
        // Raw data against a lines or frames server.
        let h = hints_of(&sized(Mode::Raw, 200), ended_early(1, 0));
        assert!(
            h[0].contains("as random raw data soon does") && h[0].contains("-m lines or -m frames"),
            "{h:?}"
        );
        assert!(!h[0].contains("smaller -s"), "{h:?}");
    }

    #[test]
    fn a_unix_close_before_any_echo_names_the_limit_as_a_reset_does() {
        let mut spec = sized(Mode::Lines, 200);
        spec.targets = vec![Target::Unix("/run/echo.sock".into())];
        let h = hints_of(&spec, ended_early(0, 1));
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(
            h[0].starts_with(
                "1 connection was closed by the peer before any byte was echoed, over a Unix \
                 socket, where a server's abort reads as an end of stream (there is no reset): "
            ) && h[0].contains("aborts a connection whose line is longer than its limit")
                && h[0].contains("--buffer-size, default 4096 bytes")
                && h[0].contains("these lines are up to 200 bytes")
                && h[0].contains("pass -m frames")
                && !h[0].contains("embedded node"),
            "{h:?}"
        );
        // Frames that even the smallest buffer takes: the mode comes first.
        spec.mode = Mode::Frames;
        spec.size = ricochet_core::probe::SizeRange::fixed(40);
        let h = hints_of(&spec, ended_early(0, 2));
        assert!(
            h[0].starts_with("2 connections were closed by the peer")
                && h[0].contains("at most 40 bytes")
                && h[0].contains("pass -m lines"),
            "{h:?}"
        );
        // Another connection echoed the same size: not a limit on lines.
        spec.mode = Mode::Lines;
        let mut t = ended_early(0, 1);
        t.messages_verified = 5;
        assert!(hints_of(&spec, t).is_empty());
        // A TCP target and a Unix one: each close gets its own hint.
        spec.size = ricochet_core::probe::SizeRange::fixed(200);
        spec.targets = vec![tcp(), Target::Unix("/run/echo.sock".into())];
        spec.connections = 2;
        let (a, b) = (ended_early(0, 1), ended_early(0, 1));
        let mut both = a.clone();
        both.merge(&b);
        let h = build_report(&spec, facts(None), both, &[a, b]).hints;
        assert!(h[0].contains("over a Unix socket"), "{h:?}");
        assert!(
            h[1].contains("some servers close, rather than reset"),
            "{h:?}"
        );
    }

    #[test]
    fn a_clean_close_before_any_echo_suggests_a_forward() {
        let h = hints_of(&sized(Mode::Lines, 64), ended_early(0, 2));
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(
            h[0].starts_with("2 connections were closed by the peer before any byte was echoed: ")
                && h[0].contains("wait until it is and try again"),
            "{h:?}"
        );
        let h = hints_of(&sized(Mode::Raw, 64), ended_early(1, 1));
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(
            h[1].starts_with("1 connection was closed by the peer and 1 reset before any byte"),
            "{h:?}"
        );
    }

    #[test]
    fn no_forward_hint_once_anything_was_echoed_or_for_unix_targets() {
        let mut t = ended_early(0, 1);
        t.bytes_verified = 64;
        assert!(hints_of(&sized(Mode::Raw, 64), t).is_empty());
        let mut spec = ProbeSpec::new(Target::Unix("/tmp/echo.sock".into()));
        assert!(hints_of(&spec, ended_early(0, 1)).is_empty());
        spec.mode = Mode::Lines;
        let h = hints_of(&spec, ended_early(1, 0));
        assert_eq!(h.len(), 1, "the limit only: {h:?}");
        // Other errors give none of these hints.
        let mut t = tally();
        t.errors.count(ErrorKind::Refused);
        t.errors.count(ErrorKind::Mismatch);
        assert!(hints_of(&sized(Mode::Lines, 200), t).is_empty());
    }

    /// Resets before any echo while other connections of the same run
    /// were served (xinetd's `instances`, an inetd's rate limit under
    /// `-p crr`): a connection limit, not the line length, when the size
    /// cannot explain them.
    #[test]
    fn resets_while_other_connections_were_served_name_a_connection_limit() {
        // -c 60 against `instances = 50`: 50 clean, 10 reset, raw data.
        let mut t = ended_early(10, 0);
        t.connections_ok = 50;
        t.bytes_verified = 50 * 64;
        t.messages_verified = 50;
        let h = hints_of(&sized(Mode::Raw, 64), t.clone());
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(
            h[0].starts_with(
                "10 connections were reset before any byte was echoed, while other connections \
                 of the run were served: "
            ) && h[0].contains("limits concurrent connections or their rate")
                && h[0].contains("`nowait.max`")
                && h[0].contains("xinetd's `instances` and `cps`")
                && h[0].contains("--max-connections")
                && h[0].contains("listen backlog overflowed")
                && h[0].contains("try fewer -c or a lower --connect-rate"),
            "{h:?}"
        );
        assert!(!h[0].contains("-m lines"), "{h:?}");
        // Lines of a fixed size that other connections echoed.
        let h = hints_of(&sized(Mode::Lines, 200), t.clone());
        assert!(h[0].contains("--connect-rate"), "{h:?}");
        assert!(!h[0].contains("smaller -s"), "{h:?}");
        // -p crr after hundreds of good connections: no clean slot, but
        // hundreds of connections completed.
        let mut crr = ended_early(1, 0);
        crr.completed = 300;
        crr.bytes_verified = 300 * 64;
        crr.messages_verified = 300;
        let h = hints_of(&sized(Mode::Raw, 64), crr);
        assert!(h[0].contains("--connect-rate"), "{h:?}");
        // Sizes that vary: the longer lines may be what was reset.
        let mut spec = sized(Mode::Lines, 200);
        spec.size = ricochet_core::probe::SizeRange::range(10, 5000);
        let h = hints_of(&spec, t);
        assert!(h[0].contains("try a smaller -s"), "{h:?}");
        // Raw data of which some bytes came back, but no connection
        // completed: a lines server echoing up to a random `\n` (the limit).
        let mut partial = ended_early(2, 0);
        partial.bytes_verified = 40;
        let h = hints_of(&sized(Mode::Raw, 200), partial);
        assert!(h[0].contains("-m lines or -m frames"), "{h:?}");
    }

    /// A Python `readline` server with a limit closes (FIN), rather than
    /// resets, a connection whose line is too long.
    #[test]
    fn a_clean_close_of_long_lines_or_frames_also_names_the_limit() {
        let h = hints_of(&sized(Mode::Lines, 100 * 1024), ended_early(0, 1));
        assert_eq!(h.len(), 2, "the limit, then a forward: {h:?}");
        assert!(
            h[0].starts_with("1 connection was closed by the peer before any byte was echoed: ")
                && h[0].contains(
                    "some servers close, rather than reset, a connection whose line is longer \
                     than their limit"
                )
                && h[0].contains("these lines are up to 102400 bytes (`\\n` included)")
                && h[0].contains("try a smaller -s")
                && h[0].contains("pass -m frames"),
            "{h:?}"
        );
        assert!(h[1].contains("port forward"), "{h:?}");
        let h = hints_of(&sized(Mode::Frames, 2000), ended_early(0, 3));
        assert!(
            h[0].starts_with("3 connections were closed")
                && h[0].contains("whose frame is longer than their limit")
                && h[0].contains("pass -m lines"),
            "{h:?}"
        );
        // Short messages and raw data: the forward only.
        assert_eq!(
            hints_of(&sized(Mode::Lines, 64), ended_early(0, 1)).len(),
            1
        );
        assert_eq!(
            hints_of(&sized(Mode::Raw, 100_000), ended_early(0, 1)).len(),
            1
        );
    }

    fn udp() -> Target {
        Target::Udp(vec!["127.0.0.1:7".parse().unwrap()])
    }

    /// A UDP tally: `sent` datagrams of which `verified` came back and `lost` did not.
    fn datagrams(sent: u64, verified: u64, lost: u64) -> Tally {
        let mut t = tally();
        t.datagrams.sent = sent;
        t.datagrams.verified = verified;
        t.datagrams.lost = lost;
        t.messages_sent = sent;
        t.messages_verified = verified;
        t.bytes_verified = verified * 64;
        t
    }

    #[test]
    fn udp_stream_loss_names_the_datagrams_in_flight_not_a_closed_loop() {
        let mut spec = ProbeSpec::new(udp());
        spec.pattern = super::super::spec::Pattern::Stream;
        let h = hints_of(&spec, datagrams(1000, 900, 100));
        assert_eq!(h.len(), 2, "{h:?}");
        assert!(
            h[1].contains("holds its socket's window for a retransmission timeout"),
            "{h:?}"
        );
        assert!(
            h[0].starts_with("datagrams were lost with up to 64 in flight per socket")
                && h[0].contains("receive buffer overflows")
                && h[0].contains("try a smaller -w, e.g. -w 1024 (16 datagrams of 64 bytes)")
                && h[0].contains("or --rate"),
            "{h:?}"
        );
        assert!(!h[0].contains("closed loop"), "{h:?}");
        // -w 512 -s 64: 8 in flight.
        spec.window = 512;
        let h = hints_of(&spec, datagrams(1000, 900, 100));
        assert!(
            h[0].contains("up to 8 in flight") && h[0].contains("-w 128 (2 datagrams"),
            "{h:?}"
        );
        // Ping-pong keeps its closed-loop hint.
        let h = hints_of(&ProbeSpec::new(udp()), datagrams(1000, 900, 100));
        assert!(h[0].contains("closed loop"), "{h:?}");
    }

    /// One duplicate, late, foreign or unsendable datagram is "1 datagram",
    /// not "1 datagrams"; the UDP report says how many datagrams a socket
    /// kept in flight, and that a --window above 64 of them was capped.
    #[test]
    fn udp_warnings_count_in_the_singular_and_the_window_says_its_cap() {
        let spec = ProbeSpec::new(udp());
        let mut t = datagrams(10, 10, 0);
        t.datagrams.duplicate = 1;
        t.datagrams.late = 1;
        t.datagrams.foreign = 1;
        t.send_blocked = 1;
        let r = report_of(&spec, t);
        let w = r.warnings.join("\n");
        assert!(w.contains("1 datagram came back twice"), "{w}");
        assert!(
            w.contains(
                "1 datagram came back after being counted lost (raise --timeout to count it)"
            ),
            "{w}"
        );
        assert!(
            w.contains("1 datagram received that the probe never sent"),
            "{w}"
        );
        assert!(
            w.contains("1 datagram could not be sent (socket buffer full) and counts as lost"),
            "{w}"
        );
        assert!(!w.contains("1 datagrams"), "{w}");
        let mut t = datagrams(10, 10, 0);
        t.datagrams.duplicate = 2;
        let r = report_of(&spec, t);
        assert!(
            r.warnings
                .join("\n")
                .contains("2 datagrams came back twice"),
            "{r:?}"
        );

        // Ping-pong: 1 in flight.
        assert_eq!(r.window_datagrams, Some(1));
        let mut spec = ProbeSpec::new(udp());
        spec.pattern = Pattern::Stream;
        spec.window = 1 << 20; // 16384 datagrams of 64 bytes asked for
        let r = report_of(&spec, datagrams(10, 10, 0));
        assert_eq!(r.window_datagrams, Some(64));
        assert!(
            r.table()
                .contains("window 1 MiB capped at 64 datagrams in flight per socket (4 KiB)"),
            "{}",
            r.table()
        );
        spec.window = 512;
        let r = report_of(&spec, datagrams(10, 10, 0));
        assert!(
            r.table().contains("window 512 B (8 datagrams)"),
            "{}",
            r.table()
        );
        // Streams: no datagram window.
        let mut tcp_spec = ProbeSpec::new(tcp());
        tcp_spec.pattern = Pattern::Stream;
        let r = report_of(&tcp_spec, tally());
        assert_eq!(r.window_datagrams, None);
        assert!(r.table().contains("window 256 KiB,"), "{}", r.table());
    }

    #[test]
    fn udp_run_that_lost_every_small_datagram_asks_whether_anything_answers() {
        let spec = ProbeSpec::new(udp());
        let h = hints_of(&spec, datagrams(20, 0, 20));
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(
            h[0].starts_with("nothing came back: all 20 datagrams were lost")
                && h[0].contains("is a UDP echo server listening there")
                && h[0].contains("ICMP port unreachable")
                && h[0].contains("from the same address and port")
                && h[0].contains("loopback or privileged"),
            "{h:?}"
        );
        // A refusal already says nothing listens; large datagrams have their hint.
        let mut t = datagrams(1, 0, 1);
        t.errors.count(ErrorKind::Refused);
        assert!(hints_of(&spec, t).is_empty());
        let mut big = ProbeSpec::new(udp());
        big.size = ricochet_core::probe::SizeRange::fixed(2000);
        let h = hints_of(&big, datagrams(5, 0, 5));
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(h[0].contains("larger than 1472"), "{h:?}");
    }

    /// `-m frames` against a lines server, `-m lines` against a frames
    /// server or a discard service: timeouts, no message back.
    #[test]
    fn lines_or_frames_timing_out_with_nothing_verified_suggest_another_mode() {
        let mut t = tally();
        t.errors.count(ErrorKind::Timeout);
        // A prefix of a frame up to a random `\n` came back, not the frame.
        t.bytes_verified = 10;
        let h = hints_of(&sized(Mode::Frames, 64), t.clone());
        assert_eq!(h.len(), 1, "{h:?}");
        assert!(
            h[0].starts_with("no frame came back whole before the timeout: ")
                && h[0].contains("-m lines or -m raw")
                && h[0].contains("not be an echo server at all")
                && h[0].contains("discard"),
            "{h:?}"
        );
        let h = hints_of(&sized(Mode::Lines, 64), t.clone());
        assert!(h[0].contains("-m frames or -m raw"), "{h:?}");
        // Something verified whole: a slow server, no mode hint.
        t.messages_verified = 1;
        assert!(hints_of(&sized(Mode::Lines, 64), t).is_empty());
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
