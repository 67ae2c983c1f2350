//! `ricochet serve --inetd`: serve the socket that inetd or xinetd put on
//! standard input, or that a systemd socket unit with `Accept=yes` passes
//! as descriptor 3 (`LISTEN_FDS=1`; on standard input too with
//! `StandardInput=socket`).
//!
//! - **A connected stream socket** (`nowait`, TCP or Unix): one connection,
//!   through the core's session like every other transport
//!   ([`ricochet::blocking::serve_connection_until`]), with `--mode`,
//!   `--buffer-size`, `--idle-timeout` and `--drain-timeout`; then exit.
//!   A graceful end half-closes (FIN) after the echo, an abort resets.
//!   The first SIGINT/SIGTERM/SIGHUP closes the session gracefully (what
//!   the peer sends is still echoed, a held line too, then FIN once quiet:
//!   `Pump::close_when_idle`) within
//!   `--grace`, then resets; a second one resets at once (exit 130).
//! - **A UDP socket** (`wait`): the datagram loop of `ricochet serve` (the
//!   core's policy: size limit, loop guard, rate limit) on that socket,
//!   until no datagram came for `--idle-timeout` (then exit, and inetd
//!   takes the socket back) or a signal (the server's graceful shutdown;
//!   a second signal stops at once, exit 130).
//!
//! inetd puts the socket on standard error too: log records and error
//! messages would go to the peer, mixed into its echo. So when standard
//! error is the very socket of standard input, nothing is logged and
//! nothing is said; the exit status tells. Nothing is ever written to
//! standard output but echo.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use ricochet::blocking::{DriveError, HalfClose, StdStream, Stop, serve_connection_until};
use ricochet::clock::Clock;
use ricochet::serve::signals::SignalWatcher;
use ricochet::serve::{InheritedSocket, Server, ServerConfig};
use socket2::{Domain, Socket, Type};

use super::log::LogFormat;
use super::privileges::{self, Target};
use super::say;

/// Longest blocking read or write before the session sees the time (its
/// timeouts fire at most this late).
const MAX_TICK: Duration = Duration::from_secs(1);

/// What `--inetd` needs from the command line.
#[derive(Debug)]
pub(crate) struct Options {
    /// Echo mode, timeouts, buffer size and the UDP policy (no endpoints).
    pub(crate) config: ServerConfig,
    /// `--user` / `--group`.
    pub(crate) drop_to: Option<Target>,
    /// `--log-format`.
    pub(crate) log_format: LogFormat,
    /// Warnings for the options given that `--inetd` does not use.
    pub(crate) ignored: Vec<String>,
}

/// Whether fds 0 and 2 are one open file (inetd's socket on both).
fn stderr_is_stdin() -> bool {
    let id = |fd: io::Result<OwnedFd>| {
        fd.and_then(|fd| std::fs::File::from(fd).metadata())
            .map(|m| (m.dev(), m.ino()))
    };
    match (
        id(io::stdin().as_fd().try_clone_to_owned()),
        id(io::stderr().as_fd().try_clone_to_owned()),
    ) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Runs `--inetd` to the end; returns the exit status.
pub(crate) fn run(options: Options) -> ExitCode {
    let quiet = stderr_is_stdin();
    let report = |msg: &str| {
        if !quiet {
            say(format_args!("ricochet serve --inetd: {msg}"));
        }
    };
    // The environment first (`LISTEN_FDS` is removed once read), before
    // logging starts a thread.
    let found = connection();
    if !quiet {
        super::log::init(options.log_format);
    }
    for warning in &options.ignored {
        tracing::warn!("{warning}");
    }
    let (socket, from) = match found {
        Ok(found) => found,
        Err(msg) => {
            report(&msg);
            return ExitCode::from(2);
        }
    };
    let kind = match socket.r#type() {
        Ok(t) => t,
        Err(e) if e.raw_os_error() == Some(libc::ENOTSOCK) => {
            report(&format!(
                "{from} is not a socket: --inetd is for inetd or xinetd, which start the server \
                 with the connection on standard input, and for a systemd socket unit with \
                 Accept=yes, which passes it as descriptor 3 (LISTEN_FDS). To listen yourself, \
                 leave --inetd out"
            ));
            return ExitCode::from(2);
        }
        Err(e) => {
            report(&format!("cannot inspect standard input: {e}"));
            return ExitCode::FAILURE;
        }
    };
    if let Some(target) = &options.drop_to {
        if let Err(e) = privileges::drop_to(target, &[]) {
            report(&e.to_string());
            return ExitCode::FAILURE;
        }
    } else if let Some(warning) = privileges::root_warning(privileges::Started::Inetd) {
        tracing::warn!("{warning}");
    }
    if kind == Type::STREAM {
        if ricochet::serve::activation::is_listener(&socket).unwrap_or(false) {
            report(&format!(
                "{from} is a listening socket (inetd `wait` for a stream service, or a \
                 systemd socket unit with Accept=no): configure the service as `nowait` \
                 (xinetd: `wait = no`; systemd: Accept=yes), or leave --inetd out and let \
                 ricochet serve the listener itself"
            ));
            return ExitCode::from(2);
        }
        serve_stream(socket, &options.config)
    } else if kind == Type::DGRAM && matches!(domain(&socket), Some(Domain::IPV4 | Domain::IPV6)) {
        serve_datagrams(socket, options.config, &report)
    } else {
        report(&format!(
            "{from} is neither a connected stream socket nor a UDP socket: --inetd serves \
             `stream nowait` and `dgram wait` (udp) services"
        ));
        ExitCode::from(2)
    }
}

/// The socket to serve and where it came from: descriptor 3 when the
/// service manager passed exactly one (`LISTEN_FDS=1` for this process:
/// systemd's `Accept=yes`), else standard input (inetd, xinetd).
fn connection() -> Result<(Socket, &'static str), String> {
    let mut fds = listenfd::ListenFd::from_env();
    match fds.len() {
        0 => match io::stdin().as_fd().try_clone_to_owned() {
            Ok(fd) => Ok((Socket::from(fd), "standard input")),
            Err(e) => Err(format!(
                "standard input is closed ({e}): --inetd serves the socket inetd passes there \
                 (or systemd passes as descriptor 3 with LISTEN_FDS)"
            )),
        },
        1 => match fds.take_raw_fd(0) {
            // SAFETY: the service manager passed descriptor 3 to this
            // process (LISTEN_PID names it); nothing else owns it, and
            // `take_raw_fd` hands it out once.
            Ok(Some(fd)) => Ok((
                unsafe { <Socket as std::os::fd::FromRawFd>::from_raw_fd(fd) },
                "descriptor 3 (LISTEN_FDS)",
            )),
            Ok(None) => Err("descriptor 3 (LISTEN_FDS) was already taken".to_owned()),
            Err(e) => Err(format!("descriptor 3 (LISTEN_FDS): {e}")),
        },
        n => Err(format!(
            "the service manager passed {n} descriptors (LISTEN_FDS={n}): --inetd serves one \
             connection; to serve listening sockets, leave --inetd out"
        )),
    }
}

/// The socket's address family, from its local address (`SO_DOMAIN` is not
/// available everywhere, e.g. FreeBSD).
fn domain(socket: &Socket) -> Option<Domain> {
    socket.local_addr().ok().map(|a| a.domain())
}

/// How long one blocking call may wait before the session sees the time.
fn tick(config: &ServerConfig) -> Duration {
    [config.idle_timeout, config.drain_timeout]
        .into_iter()
        .flatten()
        .map(|t| t / 2)
        .fold(MAX_TICK, Duration::min)
        .max(Duration::from_millis(10))
}

fn serve_stream(socket: Socket, config: &ServerConfig) -> ExitCode {
    let tick = tick(config);
    let _ = socket.set_read_timeout(Some(tick));
    let _ = socket.set_write_timeout(Some(tick));
    let unix = domain(&socket) == Some(Domain::UNIX);
    let fd = OwnedFd::from(socket);
    if unix {
        serve_one(
            StdStream::new(std::os::unix::net::UnixStream::from(fd)),
            config,
        )
    } else {
        let tcp = std::net::TcpStream::from(fd);
        let _ = tcp.set_nodelay(true);
        serve_one(StdStream::new(tcp), config)
    }
}

/// SIGINT, SIGTERM and SIGHUP for the one connection: how many came, and
/// the watcher that counts them (`None` if it could not start: signals then
/// keep their default action).
struct Signals {
    seen: Arc<AtomicUsize>,
    _watcher: Option<SignalWatcher>,
}

impl Signals {
    fn watch() -> Signals {
        let seen = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&seen);
        let watcher = SignalWatcher::spawn(move |ev| {
            if counter.fetch_add(1, Ordering::SeqCst) == 0 {
                tracing::info!(
                    signal = ev.name,
                    "closing the connection gracefully (send it again to reset it)"
                );
            } else {
                tracing::warn!(signal = ev.name, "second signal: resetting the connection");
            }
        });
        if let Err(e) = &watcher {
            tracing::warn!(error = %e, "cannot watch signals: they will end the process at once");
        }
        Signals {
            seen,
            _watcher: watcher.ok(),
        }
    }

    fn count(&self) -> usize {
        self.seen.load(Ordering::SeqCst)
    }

    /// What the session is to do: graceful after one signal, at once after
    /// two or once `grace` has passed since the first.
    fn stop(&self, grace: Duration) -> impl FnMut() -> Stop + '_ {
        let mut first_at = None;
        move || match self.count() {
            0 => Stop::No,
            1 if first_at.get_or_insert_with(Instant::now).elapsed() < grace => Stop::Gracefully,
            _ => Stop::AtOnce,
        }
    }
}

/// Serves the connection; resets it (`SO_LINGER` 0) if the session aborted.
fn serve_one<S>(mut stream: StdStream<S>, config: &ServerConfig) -> ExitCode
where
    S: io::Read + io::Write + AsFd,
    StdStream<S>: HalfClose,
{
    let signals = Signals::watch();
    let storage = vec![0u8; config.buffer_size.bytes()];
    let started = Instant::now();
    let session = config.session_config();
    let stop = signals.stop(config.grace);
    match serve_connection_until(&mut stream, storage, session, &Clock::new(), stop) {
        Ok(stats) => {
            tracing::debug!(
                bytes_in = stats.bytes_in,
                bytes_out = stats.bytes_out,
                bytes_discarded = stats.bytes_discarded,
                secs = started.elapsed().as_secs_f64(),
                "connection closed"
            );
        }
        Err(DriveError::Aborted { reason, stats }) => {
            tracing::warn!(
                %reason,
                bytes_in = stats.bytes_in,
                bytes_out = stats.bytes_out,
                bytes_discarded = stats.bytes_discarded,
                "connection aborted (reset)"
            );
            // inetd holds copies of the socket on fds 0-2: the reset happens
            // when the last one closes, at exit.
            let _ = socket2::SockRef::from(stream.get_ref()).set_linger(Some(Duration::ZERO));
        }
        Err(e) => tracing::warn!(error = %e, "connection ended"),
    }
    if signals.count() >= 2 {
        ExitCode::from(130)
    } else {
        ExitCode::SUCCESS
    }
}

fn serve_datagrams(socket: Socket, mut config: ServerConfig, report: &dyn Fn(&str)) -> ExitCode {
    config.threads = 1;
    config.stats_interval = None;
    let idle = config.idle_timeout;
    let tick = tick(&config);
    let udp = std::net::UdpSocket::from(socket);
    let server = match Server::bind_with(config, vec![InheritedSocket::Udp(udp)]) {
        Ok(s) => s,
        Err(e) => {
            report(&e.to_string());
            return ExitCode::FAILURE;
        }
    };
    // Watching before the worker starts: see `serve::run`.
    let watched = SignalWatcher::start_before(|| {}).ok();
    let handle = match server.spawn() {
        Ok(h) => h,
        Err(e) => {
            report(&e.to_string());
            return ExitCode::FAILURE;
        }
    };
    let controller = handle.controller();
    let watcher = watched.map(|(watcher, slot)| {
        slot.attach(handle.controller());
        watcher
    });
    let mut last = handle.stats().udp.received;
    let mut active_at = Instant::now();
    while !controller.is_stopping() {
        std::thread::sleep(tick);
        let received = handle.stats().udp.received;
        if received != last {
            last = received;
            active_at = Instant::now();
        } else if idle.is_some_and(|idle| active_at.elapsed() >= idle) {
            tracing::debug!("no datagram for the idle timeout: handing the socket back to inetd");
            controller.shutdown();
        }
    }
    let result = handle.join();
    // A second signal stopped it at once: exit 130, as `ricochet serve`.
    let aborted = watcher.as_ref().is_some_and(SignalWatcher::aborted);
    if aborted {
        super::log::hurry();
    }
    drop(watcher);
    match result {
        Ok(()) if aborted => ExitCode::from(130),
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            report(&e.to_string());
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(idle: Option<u64>, drain: Option<u64>) -> ServerConfig {
        ServerConfig {
            idle_timeout: idle.map(Duration::from_millis),
            drain_timeout: drain.map(Duration::from_millis),
            ..ServerConfig::default()
        }
    }

    #[test]
    fn tick_is_half_the_shortest_timeout_between_10ms_and_1s() {
        // A timeout fires at most one tick late: half of it at most.
        assert_eq!(
            tick(&config(Some(600), Some(300))),
            Duration::from_millis(150)
        );
        assert_eq!(tick(&config(Some(400), None)), Duration::from_millis(200));
        assert_eq!(tick(&config(None, Some(1_000))), Duration::from_millis(500));
        // No timeout, or long ones: the signals are still seen within 1 s.
        assert_eq!(tick(&config(None, None)), MAX_TICK);
        assert_eq!(tick(&config(Some(60_000), None)), MAX_TICK);
        // Never a busy loop.
        assert_eq!(tick(&config(Some(1), None)), Duration::from_millis(10));
    }
}
