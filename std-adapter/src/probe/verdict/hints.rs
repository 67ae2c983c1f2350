//! Hints and warnings that name the likely cause of what a run saw and
//! what to try: the server's Nagle algorithm, a rate not reached, a port
//! forward with nothing behind it, connection and close limits, a window
//! below one message, UDP losses holding the schedule.

use ricochet_core::Mode;
use ricochet_core::probe::overdue_at_most;

use super::super::Target;
use super::super::report::Latency;
use super::super::spec::{Pattern, ProbeSpec, UDP_MAX_IN_FLIGHT};
use super::super::tally::Tally;
use super::super::units::{count_of, format_duration, format_micros, format_rate};

/// A paced run whose sends left at least this late (median, microseconds)
/// was held back by the probe itself.
const PROBE_LATE_US: u64 = 1_000;
/// A ping-pong run achieving this fraction of what its connections can
/// carry at their round trip (C / mean round trip), or up to its inverse
/// (the figures' noise), was held by the round trip, not by the probe's sends.
const ROUND_TRIP_BOUND: f64 = 0.8;
/// The longest line (frame) `ricochet serve` echoes by default: its `--buffer-size`.
pub(super) const SERVE_BUFFER: usize = crate::serve::BufferSize::K4.bytes();
/// The longest line (frame) the embedded node echoes by default: its
/// `SessionBuffer` (`embedded/src/resources.rs`, also the QEMU board's).
const EMBEDDED_BUFFER: usize = 1024;

/// Round trips of a nearby server (connecting took under 5 ms) whose median
/// is 35 to 60 ms, with at least half of the `round_trips` echoed in pieces
/// stalled between (`split_stalls`, see `Tally::split_echo`): Linux's delayed ACK (40 ms) meeting the
/// server's Nagle algorithm. A server that echoes a message in several
/// writes without `TCP_NODELAY` holds the last piece until the first is
/// acknowledged, and the probe acknowledges late because it has nothing to
/// send until the whole echo is back. The probe sets `TCP_NODELAY` on its
/// own sockets. A server merely that slow echoes each message whole, late:
/// no hint.
pub(super) fn nagle_hint(
    spec: &ProbeSpec,
    rtt: &Latency,
    connect: &Latency,
    (split_stalls, round_trips): (u64, u64),
) -> Option<String> {
    let stalled = (35_000..=60_000).contains(&rtt.p50);
    let near = connect.count > 0 && connect.p50 < 5_000;
    let split = round_trips > 0 && split_stalls * 2 >= round_trips;
    (spec.is_stream() && spec.pattern != Pattern::Stream && stalled && near && split).then(|| {
        format!(
            "round trips take {:.1} ms at the median although connecting took {:.2} ms, and \
             echoes came back in pieces with the last one held: the signature of the server's \
             Nagle algorithm meeting this host's 40 ms delayed ACK (a \
             server that echoes a message in several writes without TCP_NODELAY holds the last \
             piece until the first is acknowledged); the probe sets TCP_NODELAY itself, so the \
             fix is in the server (`ricochet serve` sets it), or probe with messages that fit \
             one write (a smaller -s)",
            rtt.p50 as f64 / 1e3,
            connect.p50 as f64 / 1e3
        )
    })
}

/// Linux retransmits an unanswered SYN after 1 s (then 2 s, 4 s later).
const SYN_RETRANSMIT_US: u64 = 1_000_000;

/// Connects of a second or more: SYNs retransmitted, as when the server's
/// listen backlog is full (socat's default is 5) and the kernel drops them.
/// A full queue also drops the ACK of handshakes this host thinks done, so
/// their first message waits for retransmissions and may time out: the run
/// fails with response timeouts and names no cause without this.
/// TCP targets only: a Unix socket has no SYN, and a TLS connect includes
/// the handshake, which a far or slow server may take a second over.
pub(super) fn syn_retransmit_hint(spec: &ProbeSpec, connect: &Latency) -> Option<String> {
    let tcp = spec.targets.iter().all(|t| matches!(t, Target::Tcp(_)));
    (tcp && connect.count > 0 && connect.max >= SYN_RETRANSMIT_US).then(|| {
        format!(
            "connecting took up to {} (p50 {}): a SYN unanswered is sent again after 1 s, then \
             2 s and 4 s more, so SYNs were dropped or lost; a server whose listen backlog is \
             full drops them (and the last ACK of handshakes this host already counts as open, \
             whose data and FIN then wait for retransmissions and may time out, as response or \
             FIN timeouts): raise its backlog (socat's default is 5: \
             `TCP-LISTEN:PORT,backlog=128`; the kernel caps it at net.core.somaxconn), or try \
             fewer -c or a lower --connect-rate",
            format_micros(connect.max),
            format_micros(connect.p50)
        )
    })
}

/// Why a paced run fell short of its rate, when its measurements tell: the
/// probe's own sends left late (the probe could not keep up), or one
/// message in flight per connection at the round trip measured carries no
/// more (Little's law: C / mean round trip); else either side may be it.
pub(super) fn rate_missed_why(
    spec: &ProbeSpec,
    late: &Latency,
    rtt: &Latency,
    achieved: f64,
) -> String {
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
pub(super) fn early_end_hints(
    spec: &ProbeSpec,
    t: &Tally,
    per_target: &[Tally],
    hints: &mut Vec<String>,
) {
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
    if reset > 0
        && let Some(last) = hints.last_mut()
    {
        last.push_str(
            "; or the server speaks TLS: socat's OPENSSL-LISTEN resets a connection whose first \
             bytes are not a TLS ClientHello (others answer with an alert, which the mismatch \
             names), so probe it as tls://HOST:PORT; or a superserver stopped the service \
             for too many connections, its port still listening (openbsd-inetd does for ten \
             minutes past `nowait.max`, 256 a minute by default, as a -p crr run soon \
             reaches; xinetd past `cps`)",
        );
    }
}

/// The hint for `resets` connections reset before any byte was echoed while
/// other connections of the run were served at the same sizes: a limit on
/// connections, not on lines (xinetd's `instances` with more `-c`, an
/// inetd's rate limit tripping under `-p crr`).
fn connection_limit_hint(resets: u64) -> String {
    format!(
        "{} reset before any byte was echoed, while other connections of the run were served: \
         the server limits concurrent connections or their rate (inetd's `nowait.max` or `max`, \
         xinetd's `instances` and `cps`, `ricochet serve --max-connections`, the embedded node's \
         pool: 4 sockets over its 3 ports, at most 2 on one port while the others idle), or its listen \
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
pub(super) fn small_window_warning(spec: &ProbeSpec) -> Option<String> {
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
pub(super) fn loss_hold_hint(spec: &ProbeSpec) -> String {
    let most = overdue_at_most(spec.timeout.into());
    let fiftieth = spec.timeout / 50;
    let timeout = format_duration(spec.timeout);
    // Under 50 ms of --timeout the 1 ms floor is also the most.
    let bounds = if fiftieth < std::time::Duration::from(most) {
        format!(
            "{} (a fiftieth of --timeout {timeout}, {}, is below that floor)",
            format_duration(most.into()),
            format_duration(fiftieth)
        )
    } else {
        format!(
            "at least 1ms and at most {} (a fiftieth of --timeout {timeout})",
            format_duration(most.into())
        )
    };
    format!(
        "each lost datagram holds its socket's window for a retransmission timeout estimated \
         from the round trips, {bounds}, before the next one goes: with losses, that wait \
         rather than the server can bound the round trips/s (and with --rate the latency from \
         the scheduled sends). A shorter --timeout (a datagram still unanswered after a \
         fiftieth of it, once 64 later ones were sent, gives its slot up), more -c, or -p \
         stream with a larger -w raise that bound"
    )
}

/// The hint for datagrams lost with a `--rate` above the per-source limit
/// servers apply by default: the excess is the server's to drop.
pub(super) fn over_source_rate_hint(rate: f64) -> String {
    format!(
        "datagrams were lost at --rate {}/s, above the {}/s per source address (in bursts of {}) \
         that `ricochet serve` and the embedded node allow by default: the server drops the \
         excess and counts it (its `rate limited` count); QEMU's user network makes every socket \
         one address. Try --rate {}, or raise the server's limit (`ricochet serve --udp-rate`)",
        format_rate(rate),
        super::DEFAULT_SOURCE_RATE,
        ricochet_core::datagram::RateLimit::DEFAULT.burst,
        super::DEFAULT_SOURCE_RATE * 9 / 10,
    )
}

/// The hint for datagrams lost by `-p stream` without `--rate`: `in_flight`
/// per socket arrive at once, more than the server's receive buffer holds.
pub(super) fn stream_loss_hint(spec: &ProbeSpec, in_flight: usize) -> String {
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
