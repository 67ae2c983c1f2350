//! What to run: the [`ProbeSpec`] and how it becomes core probe configurations.

use std::fmt;
use std::time::Duration;

use ricochet_core::Mode;
use ricochet_core::probe::{DatagramProbeConfig, Pattern as CorePattern, ProbeConfig, SizeRange};

use super::Target;
pub use super::spec_error::SpecError;
use super::tls::TlsOptions;

/// Message pattern.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pattern {
    /// One message in flight per connection: send, wait for the whole echo, repeat.
    #[default]
    PingPong,
    /// Keep up to [`ProbeSpec::window`] bytes in flight per connection.
    Stream,
    /// Connection churn, netperf's TCP_CRR: connect, one message, close,
    /// repeat (ping-pong with a [`Lifetime`] of one message). Streams only.
    Crr,
}

impl Pattern {
    /// `pingpong`, `stream` or `crr`.
    pub fn as_str(self) -> &'static str {
        match self {
            Pattern::PingPong => "pingpong",
            Pattern::Stream => "stream",
            Pattern::Crr => "crr",
        }
    }
}

/// When a stream connection is closed and a new one opened in its place
/// (`--lifetime`): connection churn.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifetime {
    /// After this many messages (at least 1).
    Messages(u64),
    /// After this long (more than 0): the connection stops starting
    /// messages, finishes what is in flight and closes.
    Time(Duration),
}

impl fmt::Display for Lifetime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Lifetime::Messages(n) => write!(f, "{n} messages"),
            Lifetime::Time(d) => f.write_str(&super::units::format_duration(*d)),
        }
    }
}

/// When the run stops starting new messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stop {
    /// Each connection sends this many messages.
    Count(u64),
    /// Every connection keeps sending until this long after the start
    /// (warmup included), then finishes what is in flight.
    Duration(Duration),
}

/// A complete description of a probe run.
///
/// [`ProbeSpec::new`] gives the command line's defaults; change the public
/// fields, then pass it to [`run`](super::run).
#[derive(Clone, Debug)]
pub struct ProbeSpec {
    /// Where to send: one or more targets, all streams (TCP, TLS, Unix) or all
    /// UDP. Connection `i` goes to target `i % targets.len()`.
    pub targets: Vec<Target>,
    /// Concurrent connections (UDP: sockets) over all targets, at least one
    /// per target. Default 1.
    pub connections: usize,
    /// Message size on the wire, bytes (for `lines` including the `\n`, for
    /// `frames` including the 2-byte header). A range picks each message's
    /// size at random (seeded). Default 64.
    pub size: SizeRange,
    /// Message pattern. Default ping-pong.
    pub pattern: Pattern,
    /// Stream pattern: bytes in flight per connection. Default 256 KiB.
    /// UDP: datagrams in flight = `window / size.max`, between 1 and
    /// [`UDP_MAX_IN_FLIGHT`].
    pub window: usize,
    /// When to stop. Default 1000 messages per connection.
    pub stop: Stop,
    /// With [`Stop::Duration`]: round trips completing during this initial
    /// time are verified but not counted in rates and latency. Default 0.
    pub warmup: Duration,
    /// Open-loop pacing: total messages per second over all connections,
    /// split evenly (each connection sends one message every
    /// `connections / rate` seconds; latency is measured from each message's
    /// scheduled start, so a slow server cannot hide queueing). Default: none
    /// (closed loop, as fast as the echoes come back).
    pub rate: Option<f64>,
    /// Echo mode the server runs (streams only; UDP must be `raw`). Default raw.
    pub mode: Mode,
    /// Payload seed; connection `i` uses a seed derived from this and `i`. Default 1.
    pub seed: u64,
    /// Connect timeout, response timeout (no progress on outstanding data),
    /// wait for the server's FIN after ours, and UDP loss timeout. Default 5 s.
    pub timeout: Duration,
    /// Worker threads, each with its own event loop; connections are spread
    /// round-robin. Capped at `connections`. `None` (the default): see
    /// [`default_threads`].
    pub threads: Option<usize>,
    /// UDP: losses up to this percentage of datagrams sent still pass. Default 0.
    pub max_loss_pct: f64,
    /// Per-interval reports: the measured span is cut into intervals this
    /// long, each reported as it ends (see [`Observer`](super::Observer)).
    /// At least [`MIN_INTERVAL`]. Default: none.
    pub interval: Option<Duration>,
    /// Streams: close each connection and open a new one after this many
    /// messages or this long (connection churn). Default: none (each
    /// connection lives for the whole run). [`Pattern::Crr`] implies one message.
    pub lifetime: Option<Lifetime>,
    /// Streams: new connections per second at most, over all threads
    /// (first connections and reconnections alike). Default: no cap.
    pub connect_rate: Option<f64>,
    /// TLS client settings (for the `tls://` targets; with none, they must
    /// be the defaults).
    pub tls: TlsOptions,
}

/// The shortest `--interval`.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// The most datagrams one UDP socket keeps in flight (the stream pattern's window).
pub const UDP_MAX_IN_FLIGHT: usize = super::datagram::MAX_IN_FLIGHT;

/// Default messages per connection when neither a count nor a duration is given.
pub const DEFAULT_COUNT: u64 = 1000;

/// Default stream window, bytes.
pub const DEFAULT_WINDOW: usize = 256 * 1024;

/// A run planned to send more than this draws a warning before it starts
/// ([`ProbeSpec::volume_warning`]): 1 TiB takes about two minutes even at
/// 10 GB/s, and 18 at the 1 GB/s of a fast loopback echo, every byte echoed
/// and verified; far more than a probe needs, so more is most likely a slip
/// (`-s 100G` with the default `-n 1000`: 100 TB).
pub const LARGE_RUN_BYTES: u64 = 1 << 40;

/// The worker threads a probe of `targets` runs when `--threads` is not
/// given, on a host with `cores` cores: all of them for a remote server,
/// half of them (at least one) when every target is on this host, whose
/// server needs the other half. On two cores a second probe thread
/// against a loopback server costs that server its core: measured against
/// the C epoll reference at 100 ping-pong connections, one thread gave
/// 280k round trips/s and two 210k (BENCHMARKS.md).
pub fn default_threads(targets: &[Target], cores: usize) -> usize {
    if !targets.is_empty() && targets.iter().all(Target::is_on_this_host) {
        (cores / 2).max(1)
    } else {
        cores.max(1)
    }
}

/// The bytes of every probe datagram before its payload: a sequence number and a tag.
pub const DATAGRAM_HEADER: usize = ricochet_core::probe::DATAGRAM_HEADER;
pub use ricochet_core::probe::{UDP_MAX_V4, UDP_MAX_V6};

impl ProbeSpec {
    /// The command line's defaults for `target`.
    pub fn new(target: Target) -> Self {
        ProbeSpec {
            targets: vec![target],
            connections: 1,
            size: SizeRange::fixed(64),
            pattern: Pattern::PingPong,
            window: DEFAULT_WINDOW,
            stop: Stop::Count(DEFAULT_COUNT),
            warmup: Duration::ZERO,
            rate: None,
            mode: Mode::Raw,
            seed: 1,
            timeout: Duration::from_secs(5),
            threads: None,
            max_loss_pct: 0.0,
            tls: TlsOptions::default(),
            interval: None,
            lifetime: None,
            connect_rate: None,
        }
    }

    /// True when the targets are streams (TCP, TLS, Unix); false for UDP.
    pub fn is_stream(&self) -> bool {
        self.targets.first().is_none_or(Target::is_stream)
    }

    /// The target index of connection `conn`: connections are spread
    /// round-robin over the targets.
    pub fn target_of(&self, conn: usize) -> usize {
        conn % self.targets.len().max(1)
    }

    /// Connections that go to target `t`.
    pub fn connections_to(&self, t: usize) -> usize {
        let n = self.targets.len().max(1);
        self.connections / n + usize::from(t < self.connections % n)
    }

    /// The targets as given, separated by spaces.
    pub fn targets_text(&self) -> String {
        let all: Vec<String> = self.targets.iter().map(ToString::to_string).collect();
        all.join(" ")
    }

    /// How long each stream connection lives: [`ProbeSpec::lifetime`], or
    /// one message for [`Pattern::Crr`].
    pub fn session_lifetime(&self) -> Option<Lifetime> {
        match self.pattern {
            Pattern::Crr => Some(Lifetime::Messages(1)),
            _ => self.lifetime,
        }
    }

    /// Threads actually used: `threads`, at most one per connection.
    pub fn effective_threads(&self) -> usize {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        self.threads
            .unwrap_or_else(|| default_threads(&self.targets, cores))
            .min(self.connections)
            .max(1)
    }

    /// Checks everything a run needs, including the core's own validation.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.targets.is_empty() {
            return Err(SpecError::NoTargets);
        }
        if let Some(index) = self.targets.iter().position(|t| {
            matches!(t, Target::Tcp(a) | Target::Udp(a) if a.is_empty())
                || matches!(t, Target::Tls(tls) if tls.addrs.is_empty())
        }) {
            return Err(SpecError::TargetWithoutAddress { index });
        }
        if self
            .targets
            .iter()
            .any(|t| t.is_stream() != self.is_stream())
        {
            return Err(SpecError::MixedTargets);
        }
        if self.connections == 0 {
            return Err(SpecError::NoConnections);
        }
        if self.connections < self.targets.len() {
            return Err(SpecError::FewerConnectionsThanTargets {
                connections: self.connections,
                targets: self.targets.len(),
            });
        }
        if !self.is_stream() {
            let churn = [
                (self.pattern == Pattern::Crr, "--pattern crr"),
                (self.lifetime.is_some(), "--lifetime"),
                (self.connect_rate.is_some(), "--connect-rate"),
            ];
            if let Some((_, flag)) = churn.into_iter().find(|(on, _)| *on) {
                return Err(SpecError::ChurnOnDatagram(flag));
            }
        }
        if self.pattern == Pattern::Crr && self.lifetime.is_some() {
            return Err(SpecError::LifetimeWithCrr);
        }
        if matches!(
            self.lifetime,
            Some(Lifetime::Messages(0)) | Some(Lifetime::Time(Duration::ZERO))
        ) {
            return Err(SpecError::NoLifetime);
        }
        if let Some(r) = self.connect_rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(SpecError::ConnectRate(r));
        }
        if let Some(d) = self.interval
            && d < MIN_INTERVAL
        {
            return Err(SpecError::Interval(d));
        }
        if self.threads == Some(0) {
            return Err(SpecError::NoThreads);
        }
        if self.window == 0 {
            return Err(SpecError::NoWindow);
        }
        if !(0.0..=100.0).contains(&self.max_loss_pct) {
            return Err(SpecError::MaxLoss(self.max_loss_pct));
        }
        if self.is_stream() && self.max_loss_pct != 0.0 {
            return Err(SpecError::MaxLossOnStream);
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0)
        {
            return Err(SpecError::Rate(r));
        }
        if matches!(self.stop, Stop::Count(_)) && !self.warmup.is_zero() {
            return Err(SpecError::WarmupWithCount);
        }
        match self.stop {
            Stop::Count(0) => return Err(SpecError::NoMessages),
            Stop::Duration(d) if d.is_zero() => return Err(SpecError::NoDuration),
            _ => {}
        }
        if self.timeout.is_zero() {
            return Err(SpecError::NoTimeout);
        }
        if !self.is_stream() && self.mode != Mode::Raw {
            return Err(SpecError::ModeOnDatagram(self.mode));
        }
        if self.targets.iter().any(|t| matches!(t, Target::Tls(_))) {
            super::tls::clients(&self.targets, &self.tls).map_err(|e| SpecError::Tls(e.0))?;
        } else if self.tls.is_set() {
            return Err(SpecError::TlsOptionsWithoutTls);
        }
        let (min, max, what) = self.size_limits();
        for size in [self.size.min, self.size.max] {
            if size < min || max.is_some_and(|m| size > m) {
                return Err(SpecError::Size {
                    size,
                    min,
                    max,
                    what,
                });
            }
        }
        let now = ricochet_core::Instant::ZERO;
        if self.is_stream() {
            super::stream::check_config(self.stream_config(0, 0, self.count()), now)
                .map_err(SpecError::Core)
        } else {
            super::datagram::check_config(self.datagram_config(0), now).map_err(SpecError::Core)
        }
    }

    /// The message sizes this target and mode can carry: `(min, max, what sets them)`.
    ///
    /// With several UDP targets the strictest applies (IPv4's, if any is
    /// IPv4). An IPv4 address written as IPv6 (`[::ffff:127.0.0.1]`) is
    /// IPv4 on the wire, and so is its limit.
    pub fn size_limits(&self) -> (usize, Option<usize>, &'static str) {
        let v4 = |t: &Target| matches!(t, Target::Udp(a) if a.first().is_none_or(|a| a.ip().to_canonical().is_ipv4()));
        match self.targets.first() {
            Some(Target::Udp(_)) if !self.targets.iter().any(v4) => (
                DATAGRAM_HEADER,
                Some(UDP_MAX_V6),
                "a UDP datagram over IPv6",
            ),
            Some(Target::Udp(_)) => (
                DATAGRAM_HEADER,
                Some(UDP_MAX_V4),
                "a UDP datagram over IPv4",
            ),
            _ => match self.mode {
                Mode::Raw => (1, None, "a raw message"),
                Mode::Lines => (1, None, "a line (its \\n included)"),
                Mode::Frames => (
                    ricochet_core::frames::HEADER_LEN,
                    Some(ricochet_core::frames::HEADER_LEN + ricochet_core::frames::MAX_PAYLOAD),
                    "a frame (its 2-byte length header included)",
                ),
            },
        }
    }

    /// The warning for a run planned to send more than [`LARGE_RUN_BYTES`]
    /// (`None`: it is not): with a count, `count × connections × size.max`;
    /// with a duration, which ends a run only between messages (each
    /// message begun is sent whole), one message per connection. It names
    /// the total and the fix: a smaller `-n` or `-d` instead, or, when even
    /// one message per connection is too much, a smaller `-s`.
    pub fn volume_warning(&self) -> Option<String> {
        use super::units::{count_of, format_bytes};
        let size = self.size.max as u128;
        let connections = self.connections as u128;
        let round = size * connections;
        let limit = u128::from(LARGE_RUN_BYTES);
        let up_to = if self.size.min == self.size.max {
            ""
        } else {
            "up to "
        };
        let each = format!(
            "{up_to}{} (-s) on {} (-c)",
            format_bytes(size),
            count_of(self.connections as u64, "connection")
        );
        let whole = "a message begun is always sent whole (only an interrupt cuts it short)";
        match self.stop {
            Stop::Count(n) => {
                let total = round.saturating_mul(u128::from(n));
                if total <= limit {
                    return None;
                }
                let planned = format!(
                    "this run is planned to send {up_to}{} ({} (-n) of {each}) and verify \
                     every byte of it echoed, more than {}",
                    format_bytes(total),
                    count_of(n, "message"),
                    format_bytes(limit)
                );
                let fits = limit / round;
                Some(if fits == 0 {
                    format!(
                        "{planned}, and even one message per connection is {up_to}{}: {whole}, \
                         with -d too; use a smaller -s or fewer -c",
                        format_bytes(round)
                    )
                } else {
                    format!(
                        "{planned}: lower -n (-n {fits} stays within {}), or send for a time \
                         with -d DURATION instead of a count",
                        format_bytes(limit)
                    )
                })
            }
            Stop::Duration(_) => (round > limit).then(|| {
                format!(
                    "this run sends at least {up_to}{} (a message of {each}) and verifies every byte of it \
                     echoed, more than {}, however short -d is: {whole}; use a smaller -s or \
                     fewer -c",
                    format_bytes(round),
                    format_bytes(limit)
                )
            }),
        }
    }

    /// Messages the whole run sends: `count × connections`; `None` with a duration.
    pub fn planned_messages(&self) -> Option<u64> {
        match self.stop {
            Stop::Count(n) => Some(n.saturating_mul(self.connections as u64)),
            Stop::Duration(_) => None,
        }
    }

    /// The core stream probe configuration of connection `conn`'s
    /// `session`-th connection (0 unless connections churn), sending `count`
    /// messages (`None`: until told to finish).
    pub fn stream_config(&self, conn: usize, session: u64, count: Option<u64>) -> ProbeConfig {
        ProbeConfig {
            mode: self.mode,
            pattern: match self.pattern {
                Pattern::PingPong | Pattern::Crr => CorePattern::PingPong,
                Pattern::Stream => CorePattern::Stream {
                    window: self.window,
                },
            },
            seed: session_seed(self.seed, conn, session),
            size: self.size,
            count,
            response_timeout: Some(self.timeout.into()),
            interval: self.pace(),
        }
    }

    /// The core datagram probe configuration of socket `conn`.
    pub fn datagram_config(&self, conn: usize) -> DatagramProbeConfig {
        let window = match self.pattern {
            Pattern::PingPong | Pattern::Crr => 1,
            Pattern::Stream => (self.window / self.size.max.max(1)).clamp(1, UDP_MAX_IN_FLIGHT),
        };
        DatagramProbeConfig {
            seed: connection_seed(self.seed, conn),
            size: self.size,
            count: self.count(),
            window,
            loss_timeout: self.timeout.into(),
            interval: self.pace(),
        }
    }

    /// Messages per connection: the count, or `None` with a duration.
    pub fn count(&self) -> Option<u64> {
        match self.stop {
            Stop::Count(n) => Some(n),
            Stop::Duration(_) => None,
        }
    }

    /// Per-connection pacing interval from the total rate, in nanoseconds:
    /// 8 connections at 118,000/s are 67,797 ns apart each, not 67 µs
    /// (which ran 1.2 % fast; 1 connection at 400,000/s ran 25 % fast).
    pub(super) fn pace(&self) -> Option<ricochet_core::Pace> {
        let rate = self.rate?;
        let secs = self.connections as f64 / rate;
        let nanos = (secs * 1e9).round().clamp(1.0, u64::MAX as f64) as u64;
        Some(ricochet_core::Pace::from_nanos(nanos))
    }

    /// Pacing: how far into the pacing interval the schedule of connection
    /// (slot) `conn` starts, `conn / R`: the C connections' messages are
    /// spread evenly over the interval, as a total rate R means, instead of
    /// leaving in a burst of C every C / R (which queued each burst's last
    /// message behind the others, in the server and in the probe). `ZERO`
    /// without `--rate`.
    pub(super) fn phase(&self, conn: usize) -> ricochet_core::Duration {
        let Some(pace) = self.pace() else {
            return ricochet_core::Duration::ZERO;
        };
        let c = self.connections.max(1) as u128;
        let nanos = u128::from(pace.as_nanos()) * (conn as u128 % c) / c;
        ricochet_core::Duration::from_micros(u64::try_from(nanos / 1_000).unwrap_or(u64::MAX))
    }
}

/// The payload seed of connection `conn`'s `session`-th connection (with
/// churn): [`connection_seed`] for the first, a distinct one for each later
/// one, so a server that mixes up connections is caught across reconnects too.
pub fn session_seed(seed: u64, conn: usize, session: u64) -> u64 {
    let first = connection_seed(seed, conn);
    if session == 0 {
        return first;
    }
    connection_seed(first, usize::try_from(session).unwrap_or(usize::MAX))
}

/// Connection `conn`'s payload seed: distinct per connection, so a server
/// that mixes up its connections' data is caught.
pub fn connection_seed(seed: u64, conn: usize) -> u64 {
    // splitmix64 of the pair.
    let mut x = seed ^ (conn as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests;
