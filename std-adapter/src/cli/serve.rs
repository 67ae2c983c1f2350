//! `ricochet serve`: arguments, start-up lines and exit status; the work is in [`ricochet::serve`].

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ricochet::core::Mode;
use ricochet::serve::metrics::{MetricsConfig, MetricsServer};
use ricochet::serve::signals::SignalWatcher;
use ricochet::serve::{
    AcceptStrategy, BindError, BufferSize, DEFAULT_BACKLOG, DEFAULT_PORT,
    DEFAULT_UDP_RECEIVE_BUFFER, Endpoint, InheritedSocket, IoBackend, Scoped, Server, ServerConfig,
    UdpRate, activation, parse_duration,
};

use super::inetd;
use super::ipv6_wildcard::{InheritedWildcard, Ipv6Here, ipv6_wildcard_notes};
use super::log::LogFormat;
use super::notify::Notifier;
use super::privileges::{self, Target};
use super::serve_values::{
    at_least_one, non_zero, parse_addr, parse_busy_poll, parse_max_datagram, parse_octal,
    parse_stats_interval, parse_threads, parse_timeout,
};
use super::udp_queue::{ReceiveBuffer, parse_receive_buffer, report_receive_buffers};

/// Serve RFC 862 echo over TCP (v4/v6), TLS, UDP and Unix stream sockets.
///
/// Prints one `listening <tcp|tls|udp|unix> <address>` line per endpoint on
/// stdout once bound (port 0 shows the real port); logs go to stderr
/// (`RUST_LOG`, default info). SIGINT/SIGTERM/SIGHUP: stop accepting, finish
/// echoing what each peer sends (FIN once quiet for 250 ms; up to --grace,
/// then reset), exit 0; a second signal stops at once (exit 130). Exit status 1 when an address cannot be bound, an
/// inherited socket cannot be served or privileges cannot be dropped, 2 on
/// a usage error.
///
/// Started by systemd with sockets (LISTEN_FDS, socket activation), it
/// serves those too, and needs no address; with NOTIFY_SOCKET it reports
/// READY=1, STOPPING=1 and pings WATCHDOG_USEC. See "Run it as a service"
/// in the project's README (installed as
/// /usr/share/doc/ricochet/PROJECT-README.md) for systemd, inetd and
/// foreground use.
#[derive(Debug, Args)]
#[command(after_help = "\
Without --tcp/--udp/--unix/--tls and without inherited sockets (socket activation): TCP and UDP
on 127.0.0.1:7007 (the TCP one TLS with --tls-cert). Addresses are used as given: only 0.0.0.0
or [::] listen on every interface, and [::] takes IPv6 clients only (give both for IPv4 and
IPv6). A bare PORT means 127.0.0.1:PORT. A link-local IPv6 address needs its interface:
[fe80::1%eth0]:7007.
Durations: 500ms, 30s, 1.5s, 5m, 1m30s, 1h; a bare number is seconds. --idle-timeout and
--drain-timeout: 0 (or off, never) disables them. --grace 0 resets what is left at once.
Examples:
  ricochet serve
  ricochet serve --tcp 127.0.0.1:0 --tcp [::1]:0 --udp 127.0.0.1:0
  ricochet serve --unix /run/echo.sock --mode lines --idle-timeout 30s
  ricochet serve --tcp 0.0.0.0:7 --max-connections 10000 --stats-interval 10s
  ricochet serve --tcp 0.0.0.0:7 --udp 0.0.0.0:7 --user nobody --metrics 127.0.0.1:9107
  ricochet serve --tcp 7007 --tls 7443 --tls-cert cert.pem --tls-key key.pem
  ricochet serve --io epoll        (or RICOCHET_IO=epoll: never try io_uring)
  ricochet serve --inetd           (started by inetd; its inetd.conf line:)
    echo stream tcp nowait nobody /usr/bin/ricochet ricochet serve --inetd")]
pub(crate) struct ServeArgs {
    /// The options given on the command line or by environment variable
    /// (clap ids, e.g. `udp_rate`), filled in by `main` ([`super::unused_options::given_options`]):
    /// one given where it has no effect is warned of.
    #[arg(skip)]
    pub(crate) given: Vec<String>,
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
    #[arg(long, value_name = "N", default_value_t = DEFAULT_BACKLOG,
          value_parser = clap::value_parser!(u32).range(1..))]
    backlog: u32,
    /// Open connections allowed, counting those still finishing their close
    /// (ricochet_stream_sockets_open, not ricochet_connections_open); more are accepted and
    /// closed at once (counted as rejected) [default: from the open-file limit, at most 100000].
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    max_connections: Option<usize>,
    /// Close a connection with no traffic for this long (0, off or never: no idle timeout).
    #[arg(long, value_name = "DUR", default_value = "300s", value_parser = parse_timeout)]
    idle_timeout: Duration,
    /// Abort a connection whose peer takes none of its echo for this long (0, off or never: no limit).
    #[arg(long, value_name = "DUR", default_value = "30s", value_parser = parse_timeout)]
    drain_timeout: Duration,
    /// Session buffer per connection, 64 B to 16 MiB (4096, 64KiB, 70000...):
    /// the longest line with its \n (lines mode), the largest frame with its 2-byte header
    /// (frames mode; the largest possible frame needs 65537).
    #[arg(long, value_name = "BYTES", default_value = "4096")]
    buffer_size: BufferSize,
    /// Worker threads, one event loop each, 1 to 1024 [default: available cores].
    #[arg(long, value_name = "N", value_parser = parse_threads)]
    threads: Option<usize>,
    /// Busy polling: before it sleeps, a worker checks for new events for up to this long, saving
    /// a wake-up per event when they come that close together; spins that find nothing shrink it,
    /// so sparser traffic costs one spin in 32 waits and an idle worker one, after its last event.
    /// 50us made one message in flight 2.4-3.0x faster on a 2-core VM, at the cost of CPU and,
    /// under a UDP flood, of other clients' datagrams (0 or off: never spin; at most 1ms).
    #[arg(long, value_name = "DUR", default_value = "off", value_parser = parse_busy_poll)]
    busy_poll: Duration,
    /// Log a stats line this often, at least 100ms (connections, bytes/s, UDP drops by reason; 0
    /// or off: none).
    #[arg(long, value_name = "DUR", value_parser = parse_stats_interval)]
    stats_interval: Option<Duration>,
    /// On SIGINT/SIGTERM/SIGHUP, time allowed to finish echoing before connections are reset.
    #[arg(long, value_name = "DUR", default_value = "5s", value_parser = parse_duration)]
    grace: Duration,
    /// Largest UDP datagram echoed; larger ones are dropped and counted (at most 65527).
    #[arg(long, value_name = "BYTES", default_value_t = ServerConfig::default().udp_max_datagram,
          value_parser = parse_max_datagram)]
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
    /// Receive queue asked of the kernel for each UDP socket [default: 4MiB]: what the kernel holds
    /// while the worker is busy; a full queue drops every source's datagrams alike (0 or off: the
    /// kernel's default, 208 KiB on Debian). Without root, net.core.rmem_max caps it.
    #[arg(long, value_name = "BYTES", value_parser = parse_receive_buffer)]
    udp_receive_buffer: Option<ReceiveBuffer>,
    /// DANGEROUS: echo UDP datagrams from well-known service ports too (echo, chargen, daytime...).
    /// A spoofed datagram can then start an endless echo ping-pong between two servers.
    #[arg(long)]
    no_loop_guard: bool,
    /// How TCP connections reach workers: one SO_REUSEPORT listener per worker, or one shared listener.
    #[arg(long, value_enum, default_value_t = AcceptArg::Reuseport)]
    accept: AcceptArg,
    /// Serve the socket inetd/xinetd passed on standard input (a systemd unit with Accept=yes: as
    /// descriptor 3): one connection (stream nowait), or datagrams until --idle-timeout passes
    /// without one (dgram wait). Logs stay off when standard error is that socket. Plain echo
    /// only: not with the --tls options.
    #[arg(long, conflicts_with_all = ["tcp", "udp", "unix", "metrics", "tls_cert"])]
    inetd: bool,
    /// Serve Prometheus metrics at http://ADDR/metrics (a bare PORT means 127.0.0.1:PORT; give
    /// 0.0.0.0:PORT to expose them beyond this host) [default: off].
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    metrics: Option<SocketAddr>,
    /// Once every socket is bound, switch to this user (name or id) for good, with its group; the
    /// server refuses to run if that fails. Unix socket files are handed to the user first.
    #[arg(long, value_name = "NAME")]
    user: Option<String>,
    /// With --user: switch to this group instead of the user's primary group.
    #[arg(long, value_name = "NAME", requires = "user")]
    group: Option<String>,
    /// Log records on stderr: human (one line each) or json (one JSON object per line).
    #[arg(long, value_enum, default_value_t = LogFormat::Human, value_name = "FORMAT")]
    log_format: LogFormat,
    /// I/O backend: io_uring where the kernel allows it (else epoll, with a log line saying why),
    /// io_uring or fail, or epoll. TLS listeners always run on epoll: beside io_uring, on an
    /// epoll event loop of their own inside each io_uring worker.
    #[arg(long, value_enum, value_name = "auto|uring|epoll", default_value_t = IoArg::Auto,
          env = "RICOCHET_IO")]
    io: IoArg,
    // Last: the TLS options set the help heading of every option after them.
    #[command(flatten)]
    tls: super::tls::TlsServeArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum IoArg {
    Auto,
    Uring,
    Epoll,
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

impl ServeArgs {
    /// The server configuration; with `inherited` sockets to serve, no
    /// default endpoint is added.
    fn into_config(self, inherited: bool) -> ServerConfig {
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
            udp_receive_buffer: self
                .udp_receive_buffer
                .map_or(Some(DEFAULT_UDP_RECEIVE_BUFFER), |b| b.0),
            loop_guard: !self.no_loop_guard,
            accept: match self.accept {
                AcceptArg::Reuseport => AcceptStrategy::ReusePort,
                AcceptArg::Shared => AcceptStrategy::Shared,
            },
            raise_fd_limit: true,
            tls: self.tls.config(),
            io: match self.io {
                IoArg::Auto => IoBackend::Auto,
                IoArg::Uring => IoBackend::Uring,
                IoArg::Epoll => IoBackend::Epoll,
            },
            busy_poll: self.busy_poll,
        };
        if !inherited {
            add_default_endpoints(
                &mut config,
                SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
            );
        }
        super::tls::TlsServeArgs::adopt_tcp(&mut config);
        config
    }

    fn drop_to(&self) -> Option<Target> {
        self.user.as_ref().map(|user| Target {
            user: user.clone(),
            group: self.group.clone(),
        })
    }
}

/// Without any endpoint, serve TCP and UDP on `default`.
fn add_default_endpoints(config: &mut ServerConfig, default: SocketAddr) {
    if config.tcp.is_empty()
        && config.udp.is_empty()
        && config.unix.is_empty()
        && !super::tls::has_listener(config)
    {
        config.tcp.push(default);
        config.udp.push(default);
    }
}

/// Usage errors the parser cannot see alone: combinations of options
/// (`inherited_streams`: stream sockets passed by a service manager).
fn check_usage(config: &ServerConfig, inherited_streams: bool) -> Result<(), String> {
    if config.mode != Mode::Raw
        && config.tcp.is_empty()
        && config.unix.is_empty()
        && !inherited_streams
        && !super::tls::has_listener(config)
    {
        return Err(format!(
            "--mode {} applies to stream listeners (--tcp, --unix), and there is none: UDP \
             datagrams are echoed whole. Add a --tcp or --unix listener, or drop --mode",
            config.mode
        ));
    }
    Ok(())
}

/// The exit status of a failed bind: 2 for a configuration the library
/// refused (a usage error), 1 for an address that could not be bound.
fn bind_failure_code(e: &BindError) -> u8 {
    match e {
        BindError::NoListener | BindError::InvalidConfig { .. } => 2,
        _ => 1,
    }
}

pub(crate) fn run(mut args: ServeArgs) -> ExitCode {
    if args.inetd {
        let options = inetd::Options {
            ignored: super::unused_options::inetd_ignored_options(&args.given),
            drop_to: args.drop_to(),
            log_format: args.log_format,
            config: args.into_config(true),
        };
        return inetd::run(options);
    }
    let log_format = args.log_format;
    // The environment first: taking the inherited sockets removes their
    // variables, which must not race a thread (logging starts one).
    let foreign = activation::foreign_sockets_note();
    let inherited = activation::from_env();
    super::log::init(args.log_format);
    if let Some(note) = foreign {
        tracing::warn!("{note}");
    }
    let inherited = match inherited {
        Ok(sockets) => sockets,
        Err(e) => {
            super::log::fatal(log_format, format_args!("ricochet serve: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let metrics = args.metrics;
    let drop_to = args.drop_to();
    let inherited_streams = inherited
        .iter()
        .any(|s| !matches!(s, InheritedSocket::Udp(_)));
    let explicit_receive_buffer = args.udp_receive_buffer.is_some();
    let given = std::mem::take(&mut args.given);
    let config = args.into_config(!inherited.is_empty());
    let started = if !inherited.is_empty()
        && config.tcp.is_empty()
        && config.udp.is_empty()
        && config.unix.is_empty()
        && config.tls.is_none()
    {
        privileges::Started::Activated
    } else {
        privileges::Started::Binding
    };
    let receive_buffer = config.udp_receive_buffer;
    if let Err(e) = check_usage(&config, inherited_streams) {
        super::log::fatal(log_format, format_args!("ricochet serve: error: {e}"));
        return ExitCode::from(2);
    }
    let own_unix_files = config.unix.clone();
    // The server's UDP sockets come first, then the inherited ones.
    let own_udp = config.udp.len();
    let ipv6_notes = ipv6_wildcard_notes(
        &config,
        &InheritedWildcard::among(&inherited),
        Ipv6Here::read(),
    );
    let server = match Server::bind_with(config, inherited) {
        Ok(server) => server,
        Err(e) => {
            super::log::fatal(log_format, format_args!("ricochet serve: {e}"));
            return ExitCode::from(bind_failure_code(&e));
        }
    };
    report_receive_buffers(&server, receive_buffer, explicit_receive_buffer, own_udp);
    let metrics = match metrics.map(|addr| MetricsServer::bind(MetricsConfig::new(addr))) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            super::log::fatal(log_format, format_args!("ricochet serve: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // Every socket is bound: root is no longer needed.
    if let Some(target) = &drop_to {
        let files: Vec<&std::path::Path> = own_unix_files.iter().map(PathBuf::as_path).collect();
        match privileges::drop_to(target, &files) {
            Ok(privileges::Dropped::Switched(uid, gid)) => {
                tracing::info!(user = %target.user, %uid, %gid, "dropped privileges");
            }
            Ok(privileges::Dropped::Already(uid, gid)) => {
                tracing::info!(user = %target.user, %uid, %gid, "already running as");
            }
            Err(e) => {
                super::log::fatal(log_format, format_args!("ricochet serve: {e}"));
                return ExitCode::FAILURE;
            }
        }
    } else if let Some(warning) = privileges::root_warning(started) {
        tracing::warn!("{warning}");
    }
    // Watch SIGINT/SIGTERM/SIGHUP before any worker serves: a signal from the
    // moment a client can be answered must stop the server gracefully, not
    // kill it by the default action. Signals before `attach` wait for it.
    let mut notifier = Notifier::default();
    let watched = match SignalWatcher::start_before(notifier.stopping_hook()) {
        Ok(w) => Some(w),
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch SIGINT/SIGTERM/SIGHUP: they terminate the server without a graceful shutdown");
            None
        }
    };
    let handle = match server.spawn() {
        Ok(handle) => handle,
        Err(e) => {
            super::log::fatal(log_format, format_args!("ricochet serve: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let metrics = match metrics.map(|m| m.spawn(handle.stats_source())) {
        None => None,
        Some(Ok(m)) => Some(m),
        Some(Err(e)) => {
            super::log::fatal(log_format, format_args!("ricochet serve: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let watcher = watched.map(|(watcher, slot)| {
        slot.attach(handle.controller());
        watcher
    });
    // Printed once serving with signals handled: a line means "ready".
    {
        let mut out = std::io::stdout().lock();
        for endpoint in handle.local_addrs() {
            tracing::info!(%endpoint, "listening");
            // stdout may be closed; the server runs regardless.
            let _ = writeln!(out, "listening {endpoint}");
        }
        if let Some(m) = &metrics {
            tracing::info!(url = %format!("http://{}/metrics", m.local_addr()), "serving metrics");
            let _ = writeln!(out, "listening metrics {}", Scoped(m.local_addr()));
        }
        let _ = out.flush();
    }
    let (ipv6_warnings, ipv6_notes) = ipv6_notes;
    for warning in ipv6_warnings {
        tracing::warn!("{warning}");
    }
    for note in ipv6_notes {
        tracing::info!("{note}");
    }
    for warning in super::unused_options::ignored_options(&given, handle.local_addrs()) {
        tracing::warn!("{warning}");
    }
    notifier.ready(&status_line(handle.local_addrs()), handle.controller());
    let stats = handle.stats_source();
    let result = handle.join();
    notifier.stopping();
    let aborted = watcher.as_ref().is_some_and(SignalWatcher::aborted);
    if aborted {
        super::log::hurry();
    }
    drop(watcher);
    if let Some(m) = metrics {
        m.stop();
    }
    let s = stats.snapshot();
    let streams = s.streams();
    tracing::info!(
        accepted = streams.accepted,
        rejected = streams.rejected,
        closed = streams.closed.total(),
        aborted = streams.aborted.total(),
        bytes_in = streams.bytes_in,
        bytes_out = streams.bytes_out,
        bytes_discarded = streams.bytes_discarded,
        udp_echoed = s.udp.echoed,
        udp_dropped = s.udp.dropped.total(),
        udp_queue_dropped = s.udp_queue_drops,
        "stopped"
    );
    match result {
        Ok(()) if aborted => ExitCode::from(130),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            super::log::fatal(log_format, format_args!("ricochet serve: {e}"));
            ExitCode::FAILURE
        }
    }
}

/// The `STATUS=` the service manager shows: `echo on tcp [::]:7, udp [::]:7`.
fn status_line(endpoints: &[Endpoint]) -> String {
    let list: Vec<String> = endpoints.iter().map(ToString::to_string).collect();
    format!("echo on {}", list.join(", "))
}

#[cfg(test)]
mod tests;
