//! What to run: the [`ProbeSpec`] and how it becomes core probe configurations.

use std::fmt;
use std::time::Duration;

use ricochet_core::Mode;
use ricochet_core::probe::{
    ConfigError, DatagramProbeConfig, Pattern as CorePattern, ProbeConfig, SizeRange,
};

use super::Target;

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
    /// `pingpong` or `stream`.
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
    /// Where to send: one or more targets, all streams (TCP, Unix) or all
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
    /// round-robin. Capped at `connections`. Default: available cores.
    pub threads: usize,
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
}

/// The shortest `--interval`.
pub const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// The most datagrams one UDP socket keeps in flight (the stream pattern's window).
pub const UDP_MAX_IN_FLIGHT: usize = super::datagram::MAX_IN_FLIGHT;

/// Default messages per connection when neither a count nor a duration is given.
pub const DEFAULT_COUNT: u64 = 1000;

/// Default stream window, bytes.
pub const DEFAULT_WINDOW: usize = 256 * 1024;

/// Why a [`ProbeSpec`] cannot run (the command line exits 2 for these).
///
/// Every message names the flag, what is wrong and what to do instead.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SpecError {
    /// `targets` is empty.
    NoTargets,
    /// Stream and UDP targets in one run.
    MixedTargets,
    /// Fewer connections than targets: some target would get none.
    FewerConnectionsThanTargets {
        /// Connections asked for.
        connections: usize,
        /// Targets given.
        targets: usize,
    },
    /// `connections` is 0.
    NoConnections,
    /// `threads` is 0.
    NoThreads,
    /// `window` is 0.
    NoWindow,
    /// `Stop::Count(0)`: a run that sends nothing would pass without checking anything.
    NoMessages,
    /// `Stop::Duration(0)`: likewise.
    NoDuration,
    /// `timeout` is 0: every wait of the probe needs a bound.
    NoTimeout,
    /// `--mode lines|frames` with a UDP target (datagrams keep their boundaries).
    ModeOnDatagram(Mode),
    /// `--warmup` with a message count (a warmup needs `--duration`).
    WarmupWithCount,
    /// `max_loss_pct` is not within 0..=100.
    MaxLoss(f64),
    /// The rate is not a positive finite number.
    Rate(f64),
    /// A message size the mode or transport cannot carry.
    Size {
        /// The size asked for.
        size: usize,
        /// The smallest allowed.
        min: usize,
        /// The largest allowed, if there is a limit.
        max: Option<usize>,
        /// What sets the limits, e.g. `a UDP datagram over IPv4`.
        what: &'static str,
    },
    /// Connection churn asked of UDP (it has no connections to churn); the
    /// flag is named.
    ChurnOnDatagram(&'static str),
    /// `--lifetime` with `--pattern crr`, which already closes after every message.
    LifetimeWithCrr,
    /// `Lifetime::Messages(0)` or `Lifetime::Time(0)`.
    NoLifetime,
    /// The connect rate is not a positive finite number.
    ConnectRate(f64),
    /// An interval shorter than [`MIN_INTERVAL`].
    Interval(Duration),
    /// The core refused the probe configuration (e.g. a size too small for the mode).
    Core(ConfigError),
}

/// The bytes of every probe datagram before its payload: a sequence number and a tag.
pub const DATAGRAM_HEADER: usize = ricochet_core::probe::DATAGRAM_HEADER;
/// The largest UDP payload over IPv4: 65535 − 20 (IP header) − 8 (UDP header).
pub const UDP_MAX_V4: usize = 65_507;
/// The largest UDP payload over IPv6: 65535 − 8 (the IPv6 payload length excludes its header).
pub const UDP_MAX_V6: usize = 65_527;

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::NoTargets => f.write_str("no TARGET given: name at least one echo server, e.g. tcp://127.0.0.1:7007"),
            SpecError::MixedTargets => f.write_str(
                "the targets mix UDP and stream (tcp://, unix://) transports: one run probes either, \
                 run one probe per kind",
            ),
            SpecError::FewerConnectionsThanTargets {
                connections,
                targets,
            } => write!(
                f,
                "--connections {connections} is fewer than the {targets} targets: each target needs at least one \
                 connection, use -c {targets} or more"
            ),
            SpecError::NoConnections => f.write_str("--connections must be at least 1"),
            SpecError::NoThreads => f.write_str("--threads must be at least 1"),
            SpecError::NoWindow => f.write_str("--window must be at least 1 byte"),
            SpecError::NoMessages => f.write_str(
                "--count must be at least 1: a run that sends nothing would pass without verifying anything",
            ),
            SpecError::NoDuration => f.write_str(
                "--duration must be more than 0: a run that sends nothing would pass without verifying anything",
            ),
            SpecError::NoTimeout => f.write_str(
                "--timeout must be more than 0: it bounds every wait (connect, each response, the server's FIN, \
                 UDP loss); for a slow server give a long one, e.g. --timeout 1m",
            ),
            SpecError::ModeOnDatagram(m) => write!(
                f,
                "--mode {m} applies to stream targets (tcp://, unix://); UDP datagrams keep their boundaries, use raw"
            ),
            SpecError::WarmupWithCount => f.write_str("--warmup needs --duration"),
            SpecError::MaxLoss(p) => write!(f, "--max-loss {p} is not a percentage within 0..=100"),
            SpecError::Rate(r) => write!(
                f,
                "--rate {r} is not a positive number of messages per second"
            ),
            SpecError::Size {
                size,
                min,
                max,
                what,
            } => {
                write!(f, "--size {size} is out of range: {what} is ")?;
                match max {
                    Some(max) => write!(f, "{min} to {max} bytes")?,
                    None => write!(f, "at least {min} byte{}", if *min == 1 { "" } else { "s" })?,
                }
                if *min == DATAGRAM_HEADER && what.starts_with("a UDP") {
                    write!(
                        f,
                        " (each probe datagram starts with a {DATAGRAM_HEADER}-byte sequence number and tag)"
                    )?;
                }
                Ok(())
            }
            SpecError::ChurnOnDatagram(flag) => write!(
                f,
                "{flag} applies to stream targets (tcp://, unix://): UDP has no connection to open and close"
            ),
            SpecError::LifetimeWithCrr => f.write_str(
                "--lifetime does not apply to --pattern crr, which closes every connection after one message; \
                 use -p pingpong --lifetime N for N messages per connection",
            ),
            SpecError::NoLifetime => f.write_str(
                "--lifetime must be at least 1 message or more than 0 seconds (leave it out to keep each \
                 connection for the whole run)",
            ),
            SpecError::ConnectRate(r) => write!(
                f,
                "--connect-rate {r} is not a positive number of connections per second"
            ),
            SpecError::Interval(d) => write!(
                f,
                "--interval {} is too short: at least {} (one report line per interval)",
                super::units::format_duration(*d),
                super::units::format_duration(MIN_INTERVAL)
            ),
            SpecError::Core(e) => write!(f, "invalid probe configuration: {e}"),
        }
    }
}

impl std::error::Error for SpecError {}

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
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            max_loss_pct: 0.0,
            interval: None,
            lifetime: None,
            connect_rate: None,
        }
    }

    /// True when the targets are streams (TCP, Unix); false for UDP.
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
        self.threads.min(self.connections).max(1)
    }

    /// Checks everything a run needs, including the core's own validation.
    pub fn validate(&self) -> Result<(), SpecError> {
        if self.targets.is_empty() {
            return Err(SpecError::NoTargets);
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
        if self.threads == 0 {
            return Err(SpecError::NoThreads);
        }
        if self.window == 0 {
            return Err(SpecError::NoWindow);
        }
        if !(0.0..=100.0).contains(&self.max_loss_pct) {
            return Err(SpecError::MaxLoss(self.max_loss_pct));
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
    /// With several UDP targets the strictest applies (IPv4's, if any is IPv4).
    pub fn size_limits(&self) -> (usize, Option<usize>, &'static str) {
        let v4 = |t: &Target| matches!(t, Target::Udp(a) if a.first().is_none_or(|a| a.is_ipv4()));
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

    /// Per-connection pacing interval from the total rate.
    pub(super) fn pace(&self) -> Option<ricochet_core::Duration> {
        let rate = self.rate?;
        let secs = self.connections as f64 / rate;
        let micros = (secs * 1e6).clamp(1.0, u64::MAX as f64) as u64;
        Some(ricochet_core::Duration::from_micros(micros))
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
mod tests {
    use super::*;

    fn tcp() -> Target {
        Target::Tcp(vec!["127.0.0.1:7".parse().unwrap()])
    }

    #[test]
    fn spec_defaults_validate() {
        assert_eq!(ProbeSpec::new(tcp()).validate(), Ok(()));
    }

    #[test]
    fn spec_with_lines_on_udp_is_rejected() {
        let mut s = ProbeSpec::new(Target::Udp(vec!["127.0.0.1:7".parse().unwrap()]));
        s.mode = Mode::Lines;
        assert_eq!(s.validate(), Err(SpecError::ModeOnDatagram(Mode::Lines)));
    }

    #[test]
    fn spec_with_zero_connections_is_rejected() {
        let mut s = ProbeSpec::new(tcp());
        s.connections = 0;
        assert_eq!(s.validate(), Err(SpecError::NoConnections));
    }

    #[test]
    fn spec_with_nothing_to_send_is_rejected() {
        let mut s = ProbeSpec::new(tcp());
        s.stop = Stop::Count(0);
        assert_eq!(s.validate(), Err(SpecError::NoMessages));
        s.stop = Stop::Duration(Duration::ZERO);
        assert_eq!(s.validate(), Err(SpecError::NoDuration));
    }

    #[test]
    fn spec_with_zero_timeout_is_rejected_with_a_hint() {
        let mut s = ProbeSpec::new(tcp());
        s.timeout = Duration::ZERO;
        let e = s.validate().unwrap_err();
        assert_eq!(e, SpecError::NoTimeout);
        assert!(e.to_string().contains("--timeout 1m"), "{e}");
    }

    #[test]
    fn spec_size_zero_names_the_real_bounds() {
        let mut s = ProbeSpec::new(tcp());
        s.size = SizeRange::fixed(0);
        let e = s.validate().unwrap_err().to_string();
        assert_eq!(
            e,
            "--size 0 is out of range: a raw message is at least 1 byte"
        );
    }

    #[test]
    fn spec_udp_sizes_stop_at_the_largest_datagram_of_the_family() {
        let v4 = Target::Udp(vec!["127.0.0.1:7".parse().unwrap()]);
        let v6 = Target::Udp(vec!["[::1]:7".parse().unwrap()]);
        for (target, max) in [(v4, UDP_MAX_V4), (v6, UDP_MAX_V6)] {
            let mut s = ProbeSpec::new(target);
            s.size = SizeRange::fixed(max);
            assert_eq!(s.validate(), Ok(()), "{max}");
            s.size = SizeRange::range(64, max + 1);
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains(&format!("12 to {max} bytes")), "{e}");
            s.size = SizeRange::fixed(11);
            let e = s.validate().unwrap_err().to_string();
            assert!(e.contains("12-byte sequence number"), "{e}");
        }
    }

    #[test]
    fn rate_is_split_over_connections() {
        let mut s = ProbeSpec::new(tcp());
        s.connections = 10;
        s.rate = Some(1000.0);
        assert_eq!(
            s.stream_config(0, 0, Some(1)).interval,
            Some(ricochet_core::Duration::from_millis(10))
        );
    }

    #[test]
    fn connection_seeds_differ() {
        assert_ne!(connection_seed(1, 0), connection_seed(1, 1));
        assert_ne!(connection_seed(1, 0), connection_seed(2, 0));
    }
}
