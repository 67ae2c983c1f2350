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
mod tests {
    use super::*;

    fn tcp() -> Target {
        Target::Tcp(vec!["127.0.0.1:7".parse().unwrap()].into())
    }

    #[test]
    fn spec_defaults_validate() {
        assert_eq!(ProbeSpec::new(tcp()).validate(), Ok(()));
    }

    #[test]
    fn volume_warning_past_a_tib_names_the_total_and_the_fix() {
        let mut spec = ProbeSpec::new(tcp());
        assert_eq!(spec.volume_warning(), None, "the defaults: 62.5 KiB");
        spec.size = SizeRange::fixed(100 << 30);
        let w = spec
            .volume_warning()
            .expect("100 GiB x the default -n 1000");
        assert!(w.contains("97.7 TiB"), "{w}");
        assert!(w.contains("-n 10 stays within 1 TiB"), "{w}");
        assert!(w.contains("-d DURATION"), "{w}");
        spec.stop = Stop::Count(10);
        assert_eq!(spec.volume_warning(), None, "exactly 1000 GiB");
        spec.stop = Stop::Count(11);
        assert!(spec.volume_warning().is_some());
        // -d ends a run between messages: one message per connection is
        // what it cannot bound.
        spec.stop = Stop::Duration(Duration::from_secs(1));
        assert_eq!(spec.volume_warning(), None);
        spec.connections = 11;
        let w = spec.volume_warning().expect("11 messages of 100 GiB");
        assert!(
            w.contains("at least 1.07 TiB") && w.contains("smaller -s"),
            "{w}"
        );
        spec.stop = Stop::Count(1);
        let w = spec.volume_warning().expect("too much at -n 1");
        assert!(w.contains("even one message per connection"), "{w}");
        assert!(!w.contains("lower -n"), "{w}");
    }

    fn remote_tcp() -> Target {
        Target::Tcp(vec!["192.0.2.1:7".parse().unwrap()].into())
    }

    #[test]
    fn default_threads_with_a_loopback_target_leave_half_the_cores_to_the_server() {
        assert_eq!(default_threads(&[tcp()], 2), 1);
        assert_eq!(default_threads(&[tcp()], 16), 8);
        assert_eq!(default_threads(&[tcp()], 1), 1);
        let v6 = Target::Udp(vec!["[::1]:7".parse().unwrap()].into());
        assert_eq!(default_threads(&[v6], 4), 2);
        assert_eq!(default_threads(&[Target::Unix("/tmp/e.sock".into())], 4), 2);
    }

    #[test]
    fn default_threads_with_a_remote_target_take_every_core() {
        assert_eq!(default_threads(&[remote_tcp()], 2), 2);
        assert_eq!(default_threads(&[remote_tcp()], 16), 16);
        // One remote target among local ones: the probe is not alone with
        // a local server, so it takes every core.
        assert_eq!(default_threads(&[tcp(), remote_tcp()], 4), 4);
        // A name that resolved to a loopback and a remote address.
        let mixed = Target::Tcp(
            vec![
                "127.0.0.1:7".parse().unwrap(),
                "192.0.2.1:7".parse().unwrap(),
            ]
            .into(),
        );
        assert_eq!(default_threads(&[mixed], 4), 4);
    }

    #[test]
    fn spec_with_threads_given_uses_them_up_to_the_connections() {
        let mut s = ProbeSpec::new(tcp());
        s.connections = 100;
        s.threads = Some(3);
        assert_eq!(s.effective_threads(), 3);
        s.connections = 2;
        assert_eq!(s.effective_threads(), 2);
        s.threads = Some(0);
        assert_eq!(s.validate(), Err(SpecError::NoThreads));
    }

    #[test]
    fn spec_with_lines_on_udp_is_rejected() {
        let mut s = ProbeSpec::new(Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into()));
        s.mode = Mode::Lines;
        assert_eq!(s.validate(), Err(SpecError::ModeOnDatagram(Mode::Lines)));
    }

    /// A library caller's empty address list ran and failed per connection
    /// ("no address left to try") instead of being refused as a spec.
    #[test]
    fn spec_with_a_target_without_addresses_is_rejected() {
        for empty in [Target::Tcp(vec![].into()), Target::Udp(vec![].into())] {
            let s = ProbeSpec::new(empty);
            assert_eq!(
                s.validate(),
                Err(SpecError::TargetWithoutAddress { index: 0 })
            );
        }
        let mut s = ProbeSpec::new(tcp());
        s.targets.push(Target::Tcp(vec![].into()));
        s.connections = 2;
        let e = s.validate().unwrap_err();
        assert_eq!(e, SpecError::TargetWithoutAddress { index: 1 });
        assert!(e.to_string().contains("target 1 has no address"), "{e}");
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
        let v4 = Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into());
        let v6 = Target::Udp(vec!["[::1]:7".parse().unwrap()].into());
        // IPv4 on the wire: a larger datagram would fail with EMSGSIZE.
        let mapped = Target::Udp(vec!["[::ffff:127.0.0.1]:7".parse().unwrap()].into());
        for (target, max) in [(v4, UDP_MAX_V4), (v6, UDP_MAX_V6), (mapped, UDP_MAX_V4)] {
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
            Some(ricochet_core::Pace::from_nanos(10_000_000))
        );
        // Not a whole number of microseconds: kept to the nanosecond, so the
        // schedule keeps the rate (8 at 118,000/s: 67.797 us, not 67 us).
        s.connections = 8;
        s.rate = Some(118_000.0);
        let pace = s.stream_config(0, 0, Some(1)).interval.expect("paced");
        assert_eq!(pace.as_nanos(), 67_797);
        let start = ricochet_core::Instant::ZERO;
        let a_second = pace.at(start, 14_750);
        // 14,750 x 67,797 ns; at 67 us it came 11.8 ms early (988,250 us).
        assert_eq!(a_second.as_micros(), 1_000_005);
    }

    #[test]
    fn spec_churn_flags_on_udp_name_the_flag() {
        let udp = Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into());
        let mut s = ProbeSpec::new(udp.clone());
        s.pattern = Pattern::Crr;
        assert_eq!(
            s.validate(),
            Err(SpecError::ChurnOnDatagram("--pattern crr"))
        );
        let mut s = ProbeSpec::new(udp.clone());
        s.lifetime = Some(Lifetime::Messages(3));
        assert_eq!(s.validate(), Err(SpecError::ChurnOnDatagram("--lifetime")));
        let mut s = ProbeSpec::new(udp);
        s.connect_rate = Some(10.0);
        assert_eq!(
            s.validate(),
            Err(SpecError::ChurnOnDatagram("--connect-rate"))
        );
    }

    #[test]
    fn spec_lifetime_and_intervals_need_sensible_values() {
        let mut s = ProbeSpec::new(tcp());
        s.lifetime = Some(Lifetime::Messages(0));
        assert_eq!(s.validate(), Err(SpecError::NoLifetime));
        s.lifetime = Some(Lifetime::Time(Duration::ZERO));
        assert_eq!(s.validate(), Err(SpecError::NoLifetime));
        s.lifetime = Some(Lifetime::Messages(1));
        s.pattern = Pattern::Crr;
        assert_eq!(s.validate(), Err(SpecError::LifetimeWithCrr));
        let mut s = ProbeSpec::new(tcp());
        s.interval = Some(Duration::from_millis(5));
        assert_eq!(
            s.validate(),
            Err(SpecError::Interval(Duration::from_millis(5)))
        );
        s.interval = Some(MIN_INTERVAL);
        assert_eq!(s.validate(), Ok(()));
        s.connect_rate = Some(f64::NAN);
        assert!(matches!(s.validate(), Err(SpecError::ConnectRate(_))));
    }

    #[test]
    fn crr_is_pingpong_with_a_lifetime_of_one_message() {
        let mut s = ProbeSpec::new(tcp());
        assert_eq!(s.session_lifetime(), None);
        s.pattern = Pattern::Crr;
        assert_eq!(s.session_lifetime(), Some(Lifetime::Messages(1)));
        assert_eq!(
            s.stream_config(0, 0, Some(1)).pattern,
            CorePattern::PingPong
        );
    }

    #[test]
    fn connections_spread_round_robin_over_targets() {
        let mut s = ProbeSpec::new(tcp());
        s.targets.push(Target::Unix("/tmp/e.sock".into()));
        s.targets.push(tcp());
        s.connections = 7;
        let to: Vec<usize> = (0..7).map(|c| s.target_of(c)).collect();
        assert_eq!(to, [0, 1, 2, 0, 1, 2, 0]);
        assert_eq!(
            (
                s.connections_to(0),
                s.connections_to(1),
                s.connections_to(2)
            ),
            (3, 2, 2)
        );
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn session_seeds_differ_and_the_first_is_the_connection_seed() {
        assert_eq!(session_seed(1, 3, 0), connection_seed(1, 3));
        assert_ne!(session_seed(1, 3, 1), session_seed(1, 3, 0));
        assert_ne!(session_seed(1, 3, 1), session_seed(1, 3, 2));
        assert_ne!(session_seed(1, 3, 1), session_seed(1, 4, 1));
    }

    #[test]
    fn connection_seeds_differ() {
        assert_ne!(connection_seed(1, 0), connection_seed(1, 1));
        assert_ne!(connection_seed(1, 0), connection_seed(2, 0));
    }

    fn udp() -> Target {
        Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into())
    }

    #[test]
    fn pattern_names_are_the_command_line_spellings() {
        assert_eq!(Pattern::PingPong.as_str(), "pingpong");
        assert_eq!(Pattern::Stream.as_str(), "stream");
        assert_eq!(Pattern::Crr.as_str(), "crr");
    }

    #[test]
    fn lifetime_displays_as_messages_or_a_duration() {
        assert_eq!(Lifetime::Messages(3).to_string(), "3 messages");
        assert_eq!(Lifetime::Time(Duration::from_secs(2)).to_string(), "2s");
    }

    #[test]
    fn spec_defaults_match_the_documented_command_line() {
        let s = ProbeSpec::new(tcp());
        assert_eq!(s.window, 256 * 1024);
        assert_eq!(DEFAULT_WINDOW, 262_144);
        assert_eq!(s.count(), Some(1000));
        assert_eq!(s.planned_messages(), Some(1000));
    }

    #[test]
    fn targets_text_joins_the_targets_with_spaces() {
        let mut s = ProbeSpec::new(Target::Unix("/tmp/a.sock".into()));
        s.targets.push(Target::Unix("/tmp/b.sock".into()));
        assert_eq!(s.targets_text(), "unix:///tmp/a.sock unix:///tmp/b.sock");
    }

    #[test]
    fn count_and_planned_messages_follow_the_stop() {
        let mut s = ProbeSpec::new(tcp());
        s.connections = 3;
        s.stop = Stop::Count(5);
        assert_eq!(s.count(), Some(5));
        assert_eq!(s.planned_messages(), Some(15));
        s.stop = Stop::Duration(Duration::from_secs(1));
        assert_eq!(s.count(), None);
        assert_eq!(s.planned_messages(), None);
    }

    #[test]
    fn spec_with_a_bad_rate_is_rejected_and_a_positive_one_passes() {
        for bad in [0.0, -1.0, f64::INFINITY, f64::NAN] {
            let mut s = ProbeSpec::new(tcp());
            s.rate = Some(bad);
            assert!(matches!(s.validate(), Err(SpecError::Rate(_))), "{bad}");
            let mut s = ProbeSpec::new(tcp());
            s.connect_rate = Some(bad);
            assert!(
                matches!(s.validate(), Err(SpecError::ConnectRate(_))),
                "{bad}"
            );
        }
        let mut s = ProbeSpec::new(tcp());
        s.rate = Some(1000.0);
        s.connect_rate = Some(10.0);
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn spec_with_mixed_or_too_few_connections_is_rejected() {
        let mut s = ProbeSpec::new(tcp());
        s.targets.clear();
        assert_eq!(s.validate(), Err(SpecError::NoTargets));
        let mut s = ProbeSpec::new(tcp());
        s.targets.push(udp());
        s.connections = 2;
        assert_eq!(s.validate(), Err(SpecError::MixedTargets));
        let mut s = ProbeSpec::new(tcp());
        s.targets.push(tcp());
        assert_eq!(
            s.validate(),
            Err(SpecError::FewerConnectionsThanTargets {
                connections: 1,
                targets: 2
            })
        );
        s.connections = 2;
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn spec_with_a_lifetime_or_connect_rate_on_streams_passes() {
        let mut s = ProbeSpec::new(tcp());
        s.lifetime = Some(Lifetime::Messages(1));
        assert_eq!(s.validate(), Ok(()));
        s.lifetime = Some(Lifetime::Time(Duration::from_millis(1)));
        s.connect_rate = Some(5.0);
        assert_eq!(s.validate(), Ok(()));
        let mut s = ProbeSpec::new(tcp());
        s.pattern = Pattern::Crr;
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn spec_with_zero_window_or_bad_loss_is_rejected() {
        let mut s = ProbeSpec::new(tcp());
        s.window = 0;
        assert_eq!(s.validate(), Err(SpecError::NoWindow));
        let mut s = ProbeSpec::new(tcp());
        s.max_loss_pct = 1.0;
        assert_eq!(s.validate(), Err(SpecError::MaxLossOnStream));
        let mut s = ProbeSpec::new(udp());
        for bad in [-1.0, 100.5] {
            s.max_loss_pct = bad;
            assert_eq!(s.validate(), Err(SpecError::MaxLoss(bad)));
        }
        for good in [0.0, 50.0, 100.0] {
            s.max_loss_pct = good;
            assert_eq!(s.validate(), Ok(()), "{good}");
        }
    }

    #[test]
    fn spec_with_a_duration_takes_a_warmup_and_a_count_does_not() {
        let mut s = ProbeSpec::new(tcp());
        s.warmup = Duration::from_secs(1);
        assert_eq!(s.validate(), Err(SpecError::WarmupWithCount));
        s.stop = Stop::Duration(Duration::from_secs(2));
        assert_eq!(s.validate(), Ok(()));
        s.warmup = Duration::ZERO;
        assert_eq!(s.validate(), Ok(()));
    }

    #[test]
    fn spec_with_lines_or_frames_on_streams_passes() {
        for mode in [Mode::Lines, Mode::Frames] {
            let mut s = ProbeSpec::new(tcp());
            s.mode = mode;
            assert_eq!(s.validate(), Ok(()), "{mode:?}");
        }
    }

    #[test]
    fn spec_sizes_at_the_bounds_of_each_mode_pass_and_past_them_fail() {
        let frame_max = ricochet_core::frames::HEADER_LEN + ricochet_core::frames::MAX_PAYLOAD;
        for (target, mode, min, max) in [
            (tcp(), Mode::Raw, 1, None),
            (tcp(), Mode::Lines, 1, None),
            (tcp(), Mode::Frames, 2, Some(frame_max)),
            (udp(), Mode::Raw, DATAGRAM_HEADER, Some(UDP_MAX_V4)),
        ] {
            let mut s = ProbeSpec::new(target);
            s.mode = mode;
            assert_eq!((s.size_limits().0, s.size_limits().1), (min, max));
            s.size = SizeRange::fixed(min);
            assert_eq!(s.validate(), Ok(()), "{mode:?} {min}");
            s.size = SizeRange::fixed(min - 1);
            assert!(matches!(s.validate(), Err(SpecError::Size { .. })));
            if let Some(max) = max {
                s.size = SizeRange::fixed(max);
                assert_eq!(s.validate(), Ok(()), "{mode:?} {max}");
                s.size = SizeRange::fixed(max + 1);
                assert!(matches!(s.validate(), Err(SpecError::Size { .. })));
            }
        }
        let mut s = ProbeSpec::new(tcp());
        s.mode = Mode::Lines;
        assert_eq!(s.size_limits().2, "a line (its \\n included)");
    }

    #[test]
    fn volume_warning_says_up_to_only_for_a_size_range() {
        let mut s = ProbeSpec::new(tcp());
        s.size = SizeRange::fixed(100 << 30);
        let w = s.volume_warning().expect("97.7 TiB");
        assert!(!w.contains("up to"), "{w}");
        s.size = SizeRange::range(64, 100 << 30);
        let w = s.volume_warning().expect("up to 97.7 TiB");
        assert!(w.contains("up to 97.7 TiB"), "{w}");
    }

    #[test]
    fn volume_warning_with_a_duration_allows_exactly_a_tib_per_round() {
        let mut s = ProbeSpec::new(tcp());
        s.stop = Stop::Duration(Duration::from_secs(1));
        s.size = SizeRange::fixed(1 << 30);
        s.connections = 1024;
        assert_eq!(s.volume_warning(), None);
        s.connections = 1025;
        assert!(s.volume_warning().is_some());
    }

    #[test]
    fn udp_stream_window_is_in_datagrams_between_one_and_the_cap() {
        let mut s = ProbeSpec::new(udp());
        assert_eq!(s.datagram_config(0).window, 1, "ping-pong");
        s.pattern = Pattern::Stream;
        s.size = SizeRange::fixed(100);
        s.window = 1000;
        assert_eq!(s.datagram_config(0).window, 10);
        s.window = 10;
        assert_eq!(s.datagram_config(0).window, 1);
        s.window = 1 << 20;
        assert_eq!(s.datagram_config(0).window, UDP_MAX_IN_FLIGHT);
        assert_eq!(s.datagram_config(0).count, Some(DEFAULT_COUNT));
        assert_eq!(s.datagram_config(3).seed, connection_seed(1, 3));
    }

    #[test]
    fn paced_connections_start_spread_over_one_interval() {
        let mut s = ProbeSpec::new(tcp());
        s.connections = 4;
        assert_eq!(s.phase(1), ricochet_core::Duration::ZERO, "unpaced");
        s.rate = Some(1000.0);
        // 4 ms apart per connection; connection c starts c ms in.
        let ms = |n: u64| ricochet_core::Duration::from_micros(n * 1000);
        assert_eq!(
            [s.phase(0), s.phase(1), s.phase(3), s.phase(5)],
            [ms(0), ms(1), ms(3), ms(1)]
        );
    }

    /// The seeds are splitmix64: connection 0's is splitmix64 of the seed,
    /// connection `i`'s that of the seed xor `i` times the golden ratio.
    #[test]
    fn connection_seed_is_splitmix64_of_the_seed_and_connection() {
        assert_eq!(connection_seed(0, 0), 0xE220_A839_7B1D_CDAF);
        assert_eq!(connection_seed(1, 0), 0x910A_2DEC_8902_5CC1);
        assert_eq!(
            connection_seed(0x9E37_79B9_7F4A_7C15, 1),
            0xE220_A839_7B1D_CDAF
        );
    }
}
