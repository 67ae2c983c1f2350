//! Why a [`ProbeSpec`](super::ProbeSpec) cannot run: one message per
//! problem, naming the flag, what is wrong and what to do instead.

use std::fmt;
use std::time::Duration;

use ricochet_core::Mode;
use ricochet_core::probe::ConfigError;

use super::spec::{DATAGRAM_HEADER, MIN_INTERVAL};
use super::units::format_duration;

/// Why a [`ProbeSpec`](super::ProbeSpec) cannot run (the command line exits 2 for these).
///
/// Every message names the flag, what is wrong and what to do instead.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum SpecError {
    /// `targets` is empty.
    NoTargets,
    /// A `Target::Tcp`, `Udp` or `Tls` with an empty address list (a
    /// library caller built it by hand; parsing never yields one).
    TargetWithoutAddress {
        /// Its position in `targets`.
        index: usize,
    },
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
    /// `max_loss_pct` was given for stream targets, which lose nothing.
    MaxLossOnStream,
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
    /// The TLS client could not be set up (a CA file, a server name).
    Tls(String),
    /// TLS options without any `tls://` target.
    TlsOptionsWithoutTls,
}

impl fmt::Display for SpecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SpecError::NoTargets => f.write_str("no TARGET given: name at least one echo server, e.g. tcp://127.0.0.1:7007"),
            SpecError::TargetWithoutAddress { index } => write!(
                f,
                "target {index} has no address: a TCP, UDP or TLS target needs at least one \
                 (parse it from text, e.g. \"tcp://127.0.0.1:7007\".parse::<Target>(), to resolve a name)"
            ),
            SpecError::MixedTargets => f.write_str(
                "the targets mix UDP and stream (tcp://, tls://, unix://) transports: one run probes either, \
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
                "--mode {m} applies to stream targets (tcp://, tls://, unix://); UDP datagrams keep their boundaries, use raw"
            ),
            SpecError::WarmupWithCount => f.write_str("--warmup needs --duration"),
            SpecError::MaxLoss(p) => write!(f, "--max-loss {p} is not a percentage within 0..=100"),
            SpecError::MaxLossOnStream => f.write_str(
                "--max-loss applies to udp:// targets: a stream (tcp://, tls://, unix://) loses \
                 nothing, it retransmits, and every byte must come back",
            ),
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
                "{flag} applies to stream targets (tcp://, tls://, unix://): UDP has no connection to open and close"
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
                format_duration(*d),
                format_duration(MIN_INTERVAL)
            ),
            SpecError::Core(e) => write!(f, "invalid probe configuration: {e}"),
            SpecError::Tls(e) => f.write_str(e),
            SpecError::TlsOptionsWithoutTls => f.write_str(
                "--tls-ca, --tls-server-name, --insecure, --tls-resumption, --tls-cert and \
                 --tls-key apply to a tls:// target (none is given)",
            ),
        }
    }
}

impl std::error::Error for SpecError {}
