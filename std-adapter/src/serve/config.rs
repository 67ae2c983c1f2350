//! What a server is asked to do: listeners, echo mode, limits and timeouts.
//!
//! [`ServerConfig`] is plain data; [`crate::serve::Server::bind`] checks it
//! with `validate` (here) before it binds anything.
//! The parsers here ([`parse_duration`], [`BufferSize`]'s `FromStr`) are the
//! ones the command line uses, so the library and the CLI agree on syntax.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use ricochet_core::Mode;

use super::BindError;

/// The session buffer of each connection, in bytes: any size from
/// [`BufferSize::MIN`] (64 B) to [`BufferSize::MAX`] (16 MiB), chosen at run
/// time.
///
/// In `lines` mode it is the longest line accepted; in `frames` mode the
/// largest frame, 2-byte header included (the largest possible frame,
/// 65,537 bytes, needs at least that); for a peer that sends without
/// reading, the most held for it before TCP flow control slows it down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufferSize(usize);

impl BufferSize {
    /// The smallest buffer.
    pub const MIN: BufferSize = BufferSize(64);
    /// The largest buffer.
    pub const MAX: BufferSize = BufferSize(16 << 20);
    /// 1 KiB.
    pub const K1: BufferSize = BufferSize(1024);
    /// 4 KiB (the default).
    pub const K4: BufferSize = BufferSize(4096);
    /// 16 KiB.
    pub const K16: BufferSize = BufferSize(16384);
    /// 64 KiB.
    pub const K64: BufferSize = BufferSize(65536);

    /// `bytes` if within [`BufferSize::MIN`]..=[`BufferSize::MAX`].
    pub const fn new(bytes: usize) -> Option<BufferSize> {
        if bytes >= Self::MIN.0 && bytes <= Self::MAX.0 {
            Some(BufferSize(bytes))
        } else {
            None
        }
    }

    /// The size in bytes.
    pub const fn bytes(self) -> usize {
        self.0
    }
}

impl Default for BufferSize {
    fn default() -> Self {
        BufferSize::K4
    }
}

impl fmt::Display for BufferSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A buffer size out of range or not a size.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BufferSizeError {
    /// The text that was given.
    pub given: String,
}

impl fmt::Display for BufferSizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid buffer size {:?}: give a size from 64 bytes to 16 MiB, in bytes or with \
             a unit (4096, 64KiB, 70000, 1MiB; k/KiB = 1024 bytes, m/MiB = 1024 KiB)",
            self.given
        )
    }
}

impl std::error::Error for BufferSizeError {}

impl TryFrom<usize> for BufferSize {
    type Error = BufferSizeError;
    fn try_from(bytes: usize) -> Result<Self, Self::Error> {
        BufferSize::new(bytes).ok_or_else(|| BufferSizeError {
            given: bytes.to_string(),
        })
    }
}

impl FromStr for BufferSize {
    type Err = BufferSizeError;
    /// Accepts `70000`, `4k`, `4K`, `4KiB`, `1m`, `1M`, `1MiB`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || BufferSizeError {
            given: s.to_owned(),
        };
        let lower = s.trim().to_ascii_lowercase();
        let units: [(&str, usize); 4] = [
            ("kib", 1 << 10),
            ("k", 1 << 10),
            ("mib", 1 << 20),
            ("m", 1 << 20),
        ];
        let (digits, scale) = units
            .iter()
            .find_map(|&(suffix, scale)| lower.strip_suffix(suffix).map(|d| (d, scale)))
            .unwrap_or((lower.as_str(), 1));
        let n: usize = digits.trim().parse().map_err(|_| err())?;
        let bytes = n.checked_mul(scale).ok_or_else(err)?;
        BufferSize::try_from(bytes).map_err(|_| err())
    }
}

/// How TCP connections are spread over worker threads.
///
/// Measured on the 2-core development machine with the shared echo bench
/// (3 runs each, 2 workers): throughput and CPU per round trip were the
/// same within the noise (ping-pong C=100: 92.7k/65.3k rt/s shared vs
/// 86.9k/58.9k reuseport, 6.8 vs 6.6–7.1 µs CPU per round trip). But the
/// shared listener let one worker win most accepts: in one stream C=16 run
/// one connection got 426 MB/s and the others 28 MB/s, because the
/// workers' shares were unequal. `SO_REUSEPORT` spreads connections by hash
/// (per-connection 23–46 MB/s in the same case), so `ReusePort` is the default.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum AcceptStrategy {
    /// One listening socket per worker per address (`SO_REUSEPORT`): the
    /// kernel spreads new connections by hash, no worker wakes for a
    /// connection it does not get. Another process of the same user could
    /// join the port group; use `Shared` where that matters.
    #[default]
    ReusePort,
    /// One listening socket per address, registered in every worker's event
    /// loop: every worker wakes on a new connection, one wins the `accept`.
    Shared,
}

/// Which kernel interface the workers drive their sockets with.
///
/// Both backends run every connection through the same core pump and keep
/// the same counters; they differ only in how readiness and completions
/// reach the worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IoBackend {
    /// io_uring where the kernel allows it (Linux 6.0 or later, not refused
    /// by seccomp or `kernel.io_uring_disabled`), otherwise epoll, with one
    /// log line saying why.
    #[default]
    Auto,
    /// io_uring (Linux only): multishot accept and receive into provided
    /// buffers, batched submissions, one `io_uring_enter` per loop turn.
    /// Spawning fails if the kernel refuses it.
    Uring,
    /// epoll through mio (kqueue on the BSDs and macOS): readiness, then
    /// non-blocking system calls.
    Epoll,
}

/// `reuseport` or `shared`: the spelling of `ricochet serve --accept`.
impl fmt::Display for AcceptStrategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AcceptStrategy::ReusePort => "reuseport",
            AcceptStrategy::Shared => "shared",
        })
    }
}

impl fmt::Display for IoBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IoBackend::Auto => "auto",
            IoBackend::Uring => "uring",
            IoBackend::Epoll => "epoll",
        })
    }
}

impl FromStr for IoBackend {
    type Err = String;
    /// `auto`, `uring` (or `io_uring`), `epoll`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(IoBackend::Auto),
            "uring" | "io_uring" | "io-uring" => Ok(IoBackend::Uring),
            "epoll" => Ok(IoBackend::Epoll),
            _ => Err(format!(
                "invalid I/O backend {s:?}: expected auto, uring or epoll"
            )),
        }
    }
}

/// Token-bucket limit on datagrams echoed per source address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UdpRate {
    /// Datagrams per second refilled into each source's bucket.
    pub per_second: u32,
    /// Bucket size: datagrams a source may send in a burst.
    pub burst: u32,
}

/// Everything [`crate::serve::Server::bind`] needs.
///
/// `Default` gives no listener at all (binding fails with
/// [`crate::serve::BindError::NoListener`]); the `ricochet serve` command
/// adds `127.0.0.1:7007` for TCP and UDP when given no address. Addresses
/// are used as given: pass `0.0.0.0` or `[::]` explicitly to listen on every
/// interface. Port 0 asks the kernel for a free port; the real one is in
/// [`crate::serve::Server::local_addrs`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// TCP listening addresses (IPv4 or IPv6; an IPv6 listener is v6-only).
    pub tcp: Vec<SocketAddr>,
    /// UDP addresses; each socket is served by one worker.
    pub udp: Vec<SocketAddr>,
    /// Unix stream socket paths. A stale socket file (nothing listening) is
    /// replaced; any other existing file is an error. Removed on shutdown.
    pub unix: Vec<PathBuf>,
    /// Permission bits of created Unix socket files (default `0o600`).
    pub unix_mode: u32,
    /// Echo mode of every stream connection.
    pub mode: Mode,
    /// Listen backlog (pending connections the kernel queues per listener).
    pub backlog: u32,
    /// Open stream connections allowed at once; further ones are accepted
    /// and closed at once, and counted as rejected. `None`: derived from
    /// `RLIMIT_NOFILE` (the soft limit after raising it, minus a reserve).
    pub max_connections: Option<usize>,
    /// Close a connection gracefully after this long without traffic.
    /// `None` disables it.
    pub idle_timeout: Option<Duration>,
    /// Abort a connection whose peer takes none of the pending echo for this
    /// long. `None` disables it.
    pub drain_timeout: Option<Duration>,
    /// Session buffer per connection.
    pub buffer_size: BufferSize,
    /// Worker threads (event loops); 0 means one per available core.
    pub threads: usize,
    /// Log a stats line at info level this often. `None` disables it.
    pub stats_interval: Option<Duration>,
    /// On graceful shutdown, how long queued echo may take before the
    /// remaining connections are reset.
    pub grace: Duration,
    /// Largest UDP datagram echoed; larger ones are dropped and counted.
    /// Default: the core's, 1472 bytes (no IP fragmentation on Ethernet).
    pub udp_max_datagram: usize,
    /// Per-source UDP rate limit (per source IP address); `None` disables it.
    /// Default: the core's (1000 datagrams/s, bursts of 100).
    pub udp_rate: Option<UdpRate>,
    /// Apply `udp_rate` to loopback sources too. Default false: a loopback
    /// source cannot be forged from the network nor reflect off the host, so
    /// limiting it only throttles local tools such as `ricochet probe`.
    pub udp_rate_loopback: bool,
    /// The receive queue asked of the kernel for each UDP socket, in bytes
    /// (`SO_RCVBUF`, or `SO_RCVBUFFORCE` with `CAP_NET_ADMIN`); `None`
    /// leaves the kernel's default. Default: [`DEFAULT_UDP_RECEIVE_BUFFER`].
    /// An inherited socket's queue is only raised to it, never shrunk (a
    /// service manager may have set more: systemd's `ReceiveBuffer=`).
    /// The kernel may grant less (`net.core.rmem_max`):
    /// [`Server::udp_receive_buffers`](super::Server::udp_receive_buffers)
    /// tells what each socket got.
    pub udp_receive_buffer: Option<usize>,
    /// Drop UDP datagrams from well-known service ports (echo, chargen...)
    /// that would otherwise start an endless ping-pong between two servers.
    pub loop_guard: bool,
    /// How TCP connections reach the workers.
    pub accept: AcceptStrategy,
    /// Raise the `RLIMIT_NOFILE` soft limit to the hard limit at bind time.
    pub raise_fd_limit: bool,
    /// TLS listeners and their certificate (`None`: no TLS). Their
    /// connections get the same echo mode, buffer, timeouts and limits as
    /// TCP ones.
    pub tls: Option<super::tls::TlsConfig>,
    /// The I/O backend of the workers (default: io_uring if available, else
    /// epoll). TLS listeners run on epoll whatever this is (beside
    /// io_uring, on an epoll loop of their own inside each io_uring worker).
    pub io: IoBackend,
    /// Busy polling: before it sleeps, a worker checks for new events in a
    /// loop for up to this long, saving a wake-up per event when they come
    /// that close together (see [`DEFAULT_BUSY_POLL`]). Spins that find
    /// nothing shrink the window: traffic sparser than this costs one spin
    /// in 32 waits, an idle worker spins once after its last event. Zero
    /// (the default) disables it.
    pub busy_poll: Duration,
}

/// Default listen backlog.
pub const DEFAULT_BACKLOG: u32 = 1024;
/// Longest [`ServerConfig::busy_poll`]: past it a wake-up costs less than
/// the spin.
pub const BUSY_POLL_MAX: Duration = Duration::from_millis(1);
/// Shortest [`ServerConfig::stats_interval`]: more often floods the log.
pub const STATS_INTERVAL_MIN: Duration = Duration::from_millis(100);
/// Default port of `ricochet serve` without an address (unprivileged; RFC 862's 7 needs root).
pub const DEFAULT_PORT: u16 = 7007;
/// Default of [`ServerConfig::busy_poll`]: off, as Linux's own
/// `net.core.busy_poll`. Busy polling buys latency at low load with CPU, and
/// under a flood it costs the other clients of a shared machine (see
/// BENCHMARKS.md, "Busy polling"); 50 µs is the value measured there.
pub const DEFAULT_BUSY_POLL: Duration = Duration::ZERO;
/// Default of [`ServerConfig::udp_receive_buffer`]: 4 MiB, about 5,000
/// small datagrams (the kernel counts each at its buffer's size, about
/// 800 bytes for 64 bytes of payload): several milliseconds of a
/// one-source flood on loopback, where the kernel's 208 KiB default holds
/// about 250. Kernel memory, used only while datagrams wait.
pub const DEFAULT_UDP_RECEIVE_BUFFER: usize = 4 << 20;
/// Largest [`ServerConfig::udp_receive_buffer`] (what `setsockopt` takes).
pub const MAX_UDP_RECEIVE_BUFFER: usize = i32::MAX as usize;
/// Upper bound of the derived default for [`ServerConfig::max_connections`].
pub const MAX_CONNECTIONS_CAP: usize = 100_000;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            tcp: Vec::new(),
            udp: Vec::new(),
            unix: Vec::new(),
            unix_mode: 0o600,
            mode: Mode::Raw,
            backlog: DEFAULT_BACKLOG,
            max_connections: None,
            idle_timeout: Some(Duration::from_secs(300)),
            drain_timeout: Some(Duration::from_secs(30)),
            buffer_size: BufferSize::K4,
            threads: 0,
            stats_interval: None,
            grace: Duration::from_secs(5),
            udp_max_datagram: ricochet_core::PolicyConfig::DEFAULT.max_datagram,
            udp_rate: ricochet_core::PolicyConfig::DEFAULT.rate.map(|r| UdpRate {
                per_second: r.per_second,
                burst: r.burst,
            }),
            udp_rate_loopback: false,
            udp_receive_buffer: Some(DEFAULT_UDP_RECEIVE_BUFFER),
            loop_guard: true,
            accept: AcceptStrategy::ReusePort,
            raise_fd_limit: true,
            tls: None,
            io: IoBackend::Auto,
            busy_poll: DEFAULT_BUSY_POLL,
        }
    }
}

impl ServerConfig {
    /// The core session configuration of every stream connection: mode and timeouts.
    pub fn session_config(&self) -> ricochet_core::SessionConfig {
        ricochet_core::SessionConfig {
            mode: self.mode,
            idle_timeout: self.idle_timeout.map(Into::into),
            drain_timeout: self.drain_timeout.map(Into::into),
            ..ricochet_core::SessionConfig::default()
        }
    }

    /// The worker count this configuration runs with (resolves `threads == 0`).
    pub fn worker_count(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}

/// A duration that [`parse_duration`] could not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseDurationError {
    /// The text that was given.
    pub given: String,
    /// What is wrong and which forms are accepted.
    pub reason: String,
}

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.reason)
    }
}

impl std::error::Error for ParseDurationError {}

/// Parses a duration with the one grammar of every duration flag, `serve`'s
/// and `probe`'s alike ([`crate::probe::units::parse_duration`]): `500ms`,
/// `30s`, `1.5s`, `1m30s`, `2h`, or a bare number of seconds (`0` is zero).
pub fn parse_duration(s: &str) -> Result<Duration, ParseDurationError> {
    crate::probe::units::parse_duration(s).map_err(|reason| ParseDurationError {
        given: s.to_owned(),
        reason,
    })
}

/// The first endpoint `config` lists twice, as its option would name it
/// (`--tcp ADDR`; a TLS listener counts with the TCP ones: they share the
/// port space); port 0 never counts (the kernel picks a port for each).
fn given_twice(config: &ServerConfig) -> Option<String> {
    let tls = config.tls.as_ref().map_or(&[][..], |t| t.listen.as_slice());
    let streams = config.tcp.iter().map(|a| ("--tcp", a));
    let streams: Vec<_> = streams.chain(tls.iter().map(|a| ("--tls", a))).collect();
    let twice = |list: &[(&str, &SocketAddr)]| {
        list.iter().enumerate().find_map(|(i, (flag, a))| {
            (a.port() != 0 && list[..i].iter().any(|(_, b)| b == a)).then(|| format!("{flag} {a}"))
        })
    };
    let udp: Vec<_> = config.udp.iter().map(|a| ("--udp", a)).collect();
    twice(&streams).or_else(|| twice(&udp)).or_else(|| {
        let unix = &config.unix;
        unix.iter()
            .enumerate()
            .find(|(i, p)| unix[..*i].contains(p))
            .map(|(_, p)| format!("--unix {}", p.display()))
    })
}

/// Checks `config` (with `inherited` sockets from a service manager)
/// before anything is bound.
pub(super) fn validate(config: &ServerConfig, inherited: usize) -> Result<(), BindError> {
    let invalid = |reason: &str| {
        Err(BindError::InvalidConfig {
            reason: reason.to_owned(),
        })
    };
    let tls_listeners = config.tls.as_ref().map_or(0, |t| t.listen.len());
    if config.tls.is_some() && tls_listeners == 0 {
        return invalid(
            "TLS is configured but has no listening address: add --tls ADDR (or --tcp ADDR, which \
             a certificate without --tls makes TLS)",
        );
    }
    if config.tcp.is_empty()
        && config.udp.is_empty()
        && config.unix.is_empty()
        && tls_listeners == 0
        && inherited == 0
    {
        return Err(BindError::NoListener);
    }
    if let Some(twice) = given_twice(config) {
        return invalid(&format!(
            "{twice} is given twice: list each endpoint once (port 0 may repeat: each gets its own)"
        ));
    }
    if config.threads > 1024 {
        return invalid("threads must be at most 1024");
    }
    if config.backlog == 0 {
        return invalid("backlog must be at least 1");
    }
    if config.max_connections == Some(0) {
        return invalid("max-connections must be at least 1");
    }
    if config.udp_max_datagram == 0 || config.udp_max_datagram > crate::probe::UDP_MAX_V6 {
        return invalid(&format!(
            "udp max datagram must be between 1 and {} bytes (the largest UDP payload)",
            crate::probe::UDP_MAX_V6
        ));
    }
    for (name, timeout) in [
        ("idle timeout", config.idle_timeout),
        ("drain timeout", config.drain_timeout),
    ] {
        if timeout == Some(Duration::ZERO) {
            return invalid(&format!(
                "{name} of 0 would end every connection at once: None disables it"
            ));
        }
    }
    if config
        .stats_interval
        .is_some_and(|d| d < STATS_INTERVAL_MIN)
    {
        return invalid(
            "a stats line more often than every 100ms floods the log (None: no stats lines)",
        );
    }
    if config.busy_poll > BUSY_POLL_MAX {
        return invalid(
            "busy polling longer than 1ms burns a core between events that far apart (zero disables it)",
        );
    }
    if config
        .udp_rate
        .is_some_and(|r| r.per_second == 0 || r.burst == 0)
    {
        return invalid("udp rate and burst must both be at least 1 (or the limit off)");
    }
    if config
        .udp_receive_buffer
        .is_some_and(|b| b == 0 || b > MAX_UDP_RECEIVE_BUFFER)
    {
        return invalid(
            "udp receive buffer must be between 1 byte and 2 GiB - 1 (or the kernel's default)",
        );
    }
    if config.unix_mode > 0o777 {
        return invalid("unix socket mode must be at most 0777");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
