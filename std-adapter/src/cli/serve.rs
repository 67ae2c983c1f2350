//! `ricochet serve`: arguments, start-up lines and exit status; the work is in [`ricochet::serve`].

use std::io::{IsTerminal, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ricochet::core::Mode;
use ricochet::serve::signals::SignalWatcher;
use ricochet::serve::{
    AcceptStrategy, BufferSize, DEFAULT_BACKLOG, DEFAULT_PORT, Server, ServerConfig, UdpRate,
    parse_duration,
};

/// Serve RFC 862 echo over TCP (v4/v6), UDP and Unix stream sockets.
///
/// Prints one `listening <tcp|udp|unix> <address>` line per endpoint on
/// stdout once bound (port 0 shows the real port); logs go to stderr
/// (`RUST_LOG`, default info). SIGINT/SIGTERM: stop accepting, finish
/// echoing what is queued (up to --grace), exit 0; a second signal stops at
/// once (exit 130). Exit status 1 when an address cannot be bound.
#[derive(Debug, Args)]
#[command(after_help = "\
Without --tcp/--udp/--unix: TCP and UDP on 127.0.0.1:7007. Addresses are used as given:
only 0.0.0.0 or [::] listen on every interface. A bare PORT means 127.0.0.1:PORT.
Durations: 500ms, 30s, 5m, 1h, 1m30s; a bare number is seconds; 0 disables a timeout.
Examples:
  ricochet serve
  ricochet serve --tcp 127.0.0.1:0 --tcp [::1]:0 --udp 127.0.0.1:0
  ricochet serve --unix /run/echo.sock --mode lines --idle-timeout 30s
  ricochet serve --tcp 0.0.0.0:7 --max-connections 10000 --stats-interval 10s")]
pub(crate) struct ServeArgs {
    /// TCP listening address (repeatable), e.g. 127.0.0.1:7007, [::1]:0.
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    tcp: Vec<SocketAddr>,
    /// UDP address (repeatable).
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    udp: Vec<SocketAddr>,
    /// Unix stream socket path (repeatable). A stale socket file (nobody listening) is replaced;
    /// any other existing file is an error. Removed on exit.
    #[arg(long, value_name = "PATH")]
    unix: Vec<PathBuf>,
    /// Permission bits of created Unix socket files, in octal.
    #[arg(long, value_name = "OCTAL", default_value = "600", value_parser = parse_octal)]
    unix_mode: u32,
    /// Echo mode: raw bytes (RFC 862), complete \n-terminated lines, or u16-length-prefixed frames.
    #[arg(short = 'm', long, value_enum, default_value_t = ModeArg::Raw)]
    mode: ModeArg,
    /// Listen backlog.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BACKLOG)]
    backlog: u32,
    /// Open connections allowed; more are accepted and closed at once (counted as rejected)
    /// [default: from the open-file limit, at most 100000].
    #[arg(long, value_name = "N")]
    max_connections: Option<usize>,
    /// Close a connection with no traffic for this long (0: never).
    #[arg(long, value_name = "DUR", default_value = "300s", value_parser = parse_duration)]
    idle_timeout: Duration,
    /// Abort a connection whose peer takes none of its echo for this long (0: never).
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_duration)]
    drain_timeout: Duration,
    /// Session buffer per connection, 64 B to 16 MiB (4096, 64KiB, 70000...):
    /// the longest line (lines mode), the largest frame with its 2-byte header
    /// (frames mode; the largest possible frame needs 65537).
    #[arg(long, value_name = "BYTES", default_value = "4096")]
    buffer_size: BufferSize,
    /// Worker threads, one event loop each [default: available cores].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// Log a stats line this often (connections, bytes/s, UDP drops by reason).
    #[arg(long, value_name = "DUR", value_parser = parse_duration)]
    stats_interval: Option<Duration>,
    /// On SIGINT/SIGTERM, time allowed to finish echoing before connections are reset.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    grace: Duration,
    /// Largest UDP datagram echoed; larger ones are dropped and counted.
    #[arg(long, value_name = "BYTES", default_value_t = ServerConfig::default().udp_max_datagram)]
    udp_max_datagram: usize,
    /// UDP datagrams echoed per second per source IP address (0: no limit).
    #[arg(long, value_name = "PER_SEC", default_value_t = DEFAULT_RATE.per_second)]
    udp_rate: u32,
    /// UDP datagrams a source may send back to back before --udp-rate applies.
    #[arg(long, value_name = "N", default_value_t = DEFAULT_RATE.burst)]
    udp_burst: u32,
    /// Rate-limit loopback sources too (by default they are exempt: they cannot be forged from the
    /// network and their echo never leaves the host, so the limit would only throttle local tools).
    #[arg(long)]
    udp_rate_loopback: bool,
    /// DANGEROUS: echo UDP datagrams from well-known service ports too (echo, chargen, daytime...).
    /// A spoofed datagram can then start an endless echo ping-pong between two servers.
    #[arg(long)]
    no_loop_guard: bool,
    /// How TCP connections reach workers: one SO_REUSEPORT listener per worker, or one shared listener.
    #[arg(long, value_enum, default_value_t = AcceptArg::Reuseport)]
    accept: AcceptArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Raw,
    Lines,
    Frames,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum AcceptArg {
    Reuseport,
    Shared,
}

/// The core's default per-source UDP rate limit.
const DEFAULT_RATE: ricochet::core::datagram::RateLimit =
    ricochet::core::datagram::RateLimit::DEFAULT;

fn parse_addr(s: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = s.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Ok(port) = s.parse::<u16>() {
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    Err(format!(
        "invalid address {s:?}: expected IP:PORT (IPv6 as [::1]:PORT) or a bare PORT"
    ))
}

fn parse_octal(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(mode) if mode <= 0o777 => Ok(mode),
        _ => Err(format!(
            "invalid mode {s:?}: expected octal permission bits such as 600 or 660"
        )),
    }
}

fn non_zero(d: Duration) -> Option<Duration> {
    (!d.is_zero()).then_some(d)
}

impl ServeArgs {
    fn into_config(self) -> ServerConfig {
        let mut config = ServerConfig {
            tcp: self.tcp,
            udp: self.udp,
            unix: self.unix,
            unix_mode: self.unix_mode,
            mode: match self.mode {
                ModeArg::Raw => Mode::Raw,
                ModeArg::Lines => Mode::Lines,
                ModeArg::Frames => Mode::Frames,
            },
            backlog: self.backlog,
            max_connections: self.max_connections,
            idle_timeout: non_zero(self.idle_timeout),
            drain_timeout: non_zero(self.drain_timeout),
            buffer_size: self.buffer_size,
            threads: self.threads.unwrap_or(0),
            stats_interval: self.stats_interval.and_then(non_zero),
            grace: self.grace,
            udp_max_datagram: self.udp_max_datagram,
            udp_rate: (self.udp_rate > 0 && self.udp_burst > 0).then_some(UdpRate {
                per_second: self.udp_rate,
                burst: self.udp_burst,
            }),
            udp_rate_loopback: self.udp_rate_loopback,
            loop_guard: !self.no_loop_guard,
            accept: match self.accept {
                AcceptArg::Reuseport => AcceptStrategy::ReusePort,
                AcceptArg::Shared => AcceptStrategy::Shared,
            },
            raise_fd_limit: true,
        };
        if config.tcp.is_empty() && config.udp.is_empty() && config.unix.is_empty() {
            let default = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT);
            config.tcp.push(default);
            config.udp.push(default);
        }
        config
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}

pub(crate) fn run(args: ServeArgs) -> ExitCode {
    init_tracing();
    let server = match Server::bind(args.into_config()) {
        Ok(server) => server,
        Err(e) => {
            eprintln!("ricochet serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let handle = match server.spawn() {
        Ok(handle) => handle,
        Err(e) => {
            eprintln!("ricochet serve: {e}");
            return ExitCode::FAILURE;
        }
    };
    let watcher = match SignalWatcher::start(handle.controller()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGINT/SIGTERM; stop the server with SIGKILL");
            None
        }
    };
    // Printed once serving with signals handled: a line means "ready".
    {
        let mut out = std::io::stdout().lock();
        for endpoint in handle.local_addrs() {
            tracing::info!(%endpoint, "listening");
            // stdout may be closed; the server runs regardless.
            let _ = writeln!(out, "listening {endpoint}");
        }
        let _ = out.flush();
    }
    let stats = handle.stats_source();
    let result = handle.join();
    let aborted = watcher.as_ref().is_some_and(SignalWatcher::aborted);
    drop(watcher);
    let s = stats.snapshot();
    let streams = s.streams();
    tracing::info!(
        accepted = streams.accepted,
        rejected = streams.rejected,
        closed = streams.closed.total(),
        aborted = streams.aborted.total(),
        bytes_in = streams.bytes_in,
        bytes_out = streams.bytes_out,
        udp_echoed = s.udp.echoed,
        udp_dropped = s.udp.dropped.total(),
        "stopped"
    );
    match result {
        Ok(()) if aborted => ExitCode::from(130),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ricochet serve: {e}");
            ExitCode::FAILURE
        }
    }
}
