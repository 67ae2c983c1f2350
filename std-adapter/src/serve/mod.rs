//! `ricochet serve`: an event-driven echo server on std sockets.
//!
//! TCP (IPv4 and IPv6), TLS over TCP, UDP and Unix stream sockets, any mix,
//! served by worker threads that each run one event loop: an io_uring ring
//! on Linux where the kernel allows it, else an edge-triggered mio (epoll,
//! kqueue) loop ([`IoBackend`], `uring/` and `worker.rs`). TLS listeners
//! are served by mio event loops: the same workers as the rest on epoll;
//! beside io_uring, a mio loop of their own inside each io_uring worker,
//! run on its thread (`worker/guest.rs`, `uring/worker/host.rs`).
//! Every stream connection is a core [`ricochet_core::Session`]: the worker
//! reads straight into the session's buffer and writes straight from it; the
//! session decides what is echoed when (`raw`, `lines`, `frames`), applies
//! backpressure, and says how the connection ends. Every UDP datagram goes
//! through the core's [`ricochet_core::DatagramPolicy`].
//!
//! ```no_run
//! use ricochet::serve::{Server, ServerConfig};
//!
//! let config = ServerConfig { tcp: vec!["127.0.0.1:0".parse().unwrap()], ..ServerConfig::default() };
//! let server = Server::bind(config)?;          // sockets bound: ports known, errors reported
//! println!("{:?}", server.local_addrs());
//! let handle = server.spawn()?;                // workers running
//! // ... later, from any thread:
//! handle.shutdown();                           // stop accepting, finish echoing, then exit
//! handle.join()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! ## Design
//!
//! - **Accepting**: by default each worker has its own listening socket per
//!   TCP address in one `SO_REUSEPORT` group ([`AcceptStrategy`]); Unix
//!   listeners are shared (one socket registered in every worker).
//! - **Connections** live in a per-worker slab (`conns/`, the same table
//!   for both backends), each driven by the core's `Pump` over a session
//!   buffer of [`BufferSize`] bytes allocated at accept; on epoll,
//!   registered once for read and write readiness, edge-triggered, never
//!   re-registered.
//! - **Fairness**: a connection reads at most 64 KiB per wakeup, then yields.
//! - **Timeouts**: a per-worker min-heap driven by `Session::poll_timeout`,
//!   with lazy deletion (see `timer.rs`); nothing scans all connections.
//! - **Limits**: over `max_connections`, new connections are accepted and
//!   closed at once (counted as `rejected`). Out of file descriptors
//!   (EMFILE/ENFILE), a listener pauses 100 ms, doubling up to 1 s, and
//!   resumes: it never spins and never dies.
//! - **Inherited sockets** ([`activation`], [`Server::bind_with`]): sockets
//!   a service manager bound (systemd socket activation) are served beside
//!   the configured endpoints.
//! - **Metrics** ([`metrics`]): the counters in Prometheus text or
//!   OpenMetrics, on a small HTTP endpoint of its own thread.
//! - **Shutdown** ([`ServerHandle::shutdown`]): listeners and UDP sockets
//!   close, Unix socket files are removed, every session is closed so what
//!   is queued is still echoed; after the grace period what is left is reset.

pub mod activation;
mod addr;
mod backend;
mod busy_poll;
mod config;
mod conn;
mod conns;
mod error;
mod events;
mod fd_limit;
mod handle;
mod launch;
mod listener;
pub(crate) use listener::tcp_unacknowledged;
pub mod metrics;
mod prefetch;
pub mod signals;
mod stats;
mod storage;
mod throttle;
mod timer;
mod tls;
mod udp;
mod unix;
#[cfg(target_os = "linux")]
mod uring;
mod worker;

use std::io;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::os::unix::net::UnixListener as StdUnixListener;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use ricochet_core::datagram::RateLimit;
use ricochet_core::{DatagramPolicy, PolicyConfig, SessionConfig};

pub use activation::{ActivationError, InheritedSocket};
pub use addr::{Scoped, address_slip, ipv6_addresses_here, parse_port, parse_scoped_addr};
pub use config::{
    AcceptStrategy, BUSY_POLL_MAX, BufferSize, BufferSizeError, DEFAULT_BACKLOG, DEFAULT_BUSY_POLL,
    DEFAULT_PORT, DEFAULT_UDP_RECEIVE_BUFFER, IoBackend, MAX_CONNECTIONS_CAP,
    MAX_UDP_RECEIVE_BUFFER, ParseDurationError, STATS_INTERVAL_MIN, ServerConfig, UdpRate,
    parse_duration,
};
pub(crate) use error::thread_limit_hint;
pub use error::{BindError, Endpoint, JoinError, SpawnError};
pub use handle::{Controller, ServerHandle};
pub use listener::raise_udp_receive_buffer;
pub use stats::{ServerStats, StatsLine, StatsSnapshot};
pub(crate) use tls::CERT_COMMAND;
pub(crate) use tls::validity;
pub use tls::{
    DEFAULT_HANDSHAKE_TIMEOUT, HandshakeCounts, HandshakeFailure, HandshakeFailures, TlsConfig,
    TlsConfigError,
};
// The probe's client certificate (`ricochet probe --tls-cert`) is read as the server's is.
pub(crate) use tls::{identity_refused, read_certificates, read_private_key};

pub(crate) use fd_limit::fd_limit;
use fd_limit::{warn_no_fd_room, warn_over_fd_limit};
#[cfg(target_os = "linux")]
pub(crate) use launch::Ready;
pub(crate) use launch::{Go, Prepared, Starter, StdListener, UdpSetup, Wake, WorkerSockets};
use launch::{assign_tls, fallback_sockets, launch, set_nonblocking};
use listener::TcpGroup;
use unix::SocketFile;

/// File descriptors kept free of connections when `max_connections` is derived.
const FD_RESERVE: usize = 32;

/// The lifecycle phase all workers follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    Running = 0,
    Draining = 1,
    Abort = 2,
}

impl Phase {
    fn from_u8(v: u8) -> Phase {
        match v {
            0 => Phase::Running,
            1 => Phase::Draining,
            _ => Phase::Abort,
        }
    }
}

/// What every worker needs to know, fixed at spawn.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub(crate) session: SessionConfig,
    pub(crate) max_connections: usize,
    pub(crate) grace: Duration,
    /// Session buffer bytes per connection.
    pub(crate) buffer_size: usize,
    /// Longest spin before a worker sleeps ([`ServerConfig::busy_poll`]).
    pub(crate) busy_poll: Duration,
}

/// State shared by the workers and the handles.
#[derive(Debug)]
pub(crate) struct Shared {
    phase: AtomicU8,
    pub(crate) stats: Arc<ServerStats>,
    wakers: Vec<Wake>,
    pub(crate) settings: Settings,
    pub(crate) clock: crate::clock::Clock,
    unix_files: Mutex<Vec<SocketFile>>,
    /// Whether io_uring workers that set up may serve (see [`Go`]).
    go: Option<Arc<Go>>,
    /// The backend the workers run ([`IoBackend::Uring`] or [`IoBackend::Epoll`]).
    io: IoBackend,
}

impl Shared {
    /// One worker's shared state for unit tests: running, statistics for
    /// one worker, nothing to wake, the `io` backend; the settings a
    /// connection needs, `--max-connections` `max_connections`, buffers of
    /// 64 bytes, a 5 s grace period, no busy polling (a test changes them
    /// through `tune` before the state is shared).
    #[cfg(test)]
    pub(crate) fn for_tests(
        max_connections: usize,
        io: IoBackend,
        tune: impl FnOnce(&mut Settings),
    ) -> Arc<Shared> {
        let mut settings = Settings {
            session: SessionConfig::default(),
            max_connections,
            grace: Duration::from_secs(5),
            buffer_size: 64,
            busy_poll: Duration::ZERO,
        };
        tune(&mut settings);
        Arc::new(Shared {
            phase: AtomicU8::new(Phase::Running as u8),
            stats: Arc::new(ServerStats::new(1)),
            wakers: Vec::new(),
            settings,
            clock: crate::clock::Clock::new(),
            unix_files: Mutex::new(Vec::new()),
            go: None,
            io,
        })
    }

    /// The current phase.
    pub(crate) fn phase(&self) -> Phase {
        Phase::from_u8(self.phase.load(Ordering::Acquire))
    }

    /// Moves to `phase` if that is a step forward; wakes every worker.
    fn advance(&self, phase: Phase) {
        let prev = self.phase.fetch_max(phase as u8, Ordering::AcqRel);
        if prev < phase as u8 {
            // Workers still waiting to serve (a worker panicked while the
            // others set up) stop instead; no-op once they were let go.
            if let Some(go) = &self.go {
                go.decide(false);
            }
            for w in &self.wakers {
                w.wake();
            }
        }
    }

    /// Removes the Unix socket files (idempotent): nobody new can connect.
    fn remove_unix_files(&self) {
        let mut files = self.unix_files.lock().unwrap_or_else(|p| p.into_inner());
        for f in files.iter_mut() {
            f.remove();
        }
    }
}

/// A server whose sockets are bound but which does not run yet.
///
/// Binding first lets a caller print the real addresses (port 0) and report
/// address errors before any thread starts.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    workers: usize,
    max_connections: usize,
    tcp: Vec<TcpGroup>,
    /// TLS listeners (bound as TCP) and what wraps their connections.
    tls: Vec<(TcpGroup, Arc<tls::Acceptor>)>,
    unix: Vec<(StdUnixListener, SocketFile)>,
    udp: Vec<(SocketAddr, StdUdpSocket)>,
    endpoints: Vec<Endpoint>,
    /// Some TCP listener was inherited (its workers share it).
    inherited_tcp: bool,
}

impl Server {
    /// Checks `config`, raises the open-file limit (if asked), and binds every endpoint.
    ///
    /// Nothing is left bound on error: sockets and Unix socket files created
    /// so far are closed and removed.
    pub fn bind(config: ServerConfig) -> Result<Server, BindError> {
        Server::bind_with(config, Vec::new())
    }

    /// [`Server::bind`], also serving `inherited` sockets (socket
    /// activation, see [`activation`]) after the configured endpoints of
    /// the same kind. Inherited listeners are shared by all workers, and
    /// an inherited Unix socket file is never removed.
    pub fn bind_with(
        config: ServerConfig,
        inherited: Vec<InheritedSocket>,
    ) -> Result<Server, BindError> {
        config::validate(&config, inherited.len())?;
        let workers = config.worker_count();
        let nofile = fd_limit(config.raise_fd_limit);
        let tls_listeners = config.tls.as_ref().map_or(0, |t| t.listen.len());
        // Each worker's event loop and waker: twice over with TLS, whose
        // listeners beside io_uring get epoll event loops of their own.
        let loops = if tls_listeners > 0 { 4 } else { 2 };
        let fds_needed = FD_RESERVE
            + (config.tcp.len() + tls_listeners + config.unix.len() + inherited.len() + loops)
                * workers
            + config.udp.len();
        let fd_room = nofile.saturating_sub(fds_needed);
        let max_connections = match config.max_connections {
            Some(limit) => {
                if limit > fd_room {
                    warn_over_fd_limit(limit, nofile, fd_room);
                }
                limit
            }
            None => {
                if fd_room == 0 {
                    warn_no_fd_room(nofile, fds_needed);
                }
                fd_room.clamp(1, MAX_CONNECTIONS_CAP)
            }
        };
        let adopted = activation::adopt(inherited, workers)?;
        let mut endpoints = Vec::new();
        let mut tcp = Vec::new();
        for &addr in &config.tcp {
            let group = listener::bind_tcp(addr, config.backlog, config.accept, workers)?;
            endpoints.push(Endpoint::Tcp(group.addr));
            tcp.push(group);
        }
        let inherited_tcp = !adopted.tcp.is_empty();
        for group in adopted.tcp {
            endpoints.push(Endpoint::Tcp(group.addr));
            tcp.push(group);
        }
        let mut tls = Vec::new();
        if let Some(t) = &config.tls {
            let acceptor = Arc::new(tls::Acceptor {
                config: tls::load(t).map_err(BindError::Tls)?,
                handshake_timeout: t.handshake_timeout.into(),
            });
            for &addr in &t.listen {
                let group = listener::bind_tcp(addr, config.backlog, config.accept, workers)
                    .map_err(|e| match e {
                        BindError::AddrInUse { .. } => BindError::AddrInUse {
                            endpoint: Endpoint::Tls(addr),
                        },
                        other => other,
                    })?;
                endpoints.push(Endpoint::Tls(group.addr));
                tls.push((group, Arc::clone(&acceptor)));
            }
        }
        let mut udp = Vec::new();
        // The receive queue: set on our own sockets; on inherited ones only
        // raised, never shrunk (the service manager may have set more,
        // systemd's `ReceiveBuffer=`).
        let queue = |addr: SocketAddr, socket: &StdUdpSocket, shrink: bool| {
            let Some(bytes) = config.udp_receive_buffer else {
                return Ok(());
            };
            let fail = |e| BindError::from_io(Endpoint::Udp(addr), e);
            if shrink || listener::receive_buffer(socket).map_err(fail)? < bytes {
                listener::raise_udp_receive_buffer(socket, bytes).map_err(fail)?;
            }
            Ok::<(), BindError>(())
        };
        // A UDP socket on a wildcard address, inherited ones too, reports
        // each datagram's destination: the echo leaves from it, and a
        // broadcast is told apart.
        let destinations = |addr: SocketAddr, socket: &StdUdpSocket| {
            udp::report_destinations(socket).map_err(|e| BindError::from_io(Endpoint::Udp(addr), e))
        };
        for &addr in &config.udp {
            let (bound, socket) = listener::bind_udp(addr)?;
            queue(bound, &socket, true)?;
            destinations(bound, &socket)?;
            endpoints.push(Endpoint::Udp(bound));
            udp.push((bound, socket));
        }
        for (addr, socket) in adopted.udp {
            queue(addr, &socket, false)?;
            destinations(addr, &socket)?;
            endpoints.push(Endpoint::Udp(addr));
            udp.push((addr, socket));
        }
        let mut unix = Vec::new();
        for path in &config.unix {
            let (listener, file) = unix::bind(path, config.unix_mode, config.backlog)?;
            endpoints.push(Endpoint::Unix(file.path().to_owned()));
            unix.push((listener, file));
        }
        for (listener, file) in adopted.unix {
            endpoints.push(Endpoint::Unix(file.path().to_owned()));
            unix.push((listener, file));
        }
        Ok(Server {
            config,
            workers,
            max_connections,
            tcp,
            tls,
            unix,
            udp,
            endpoints,
            inherited_tcp,
        })
    }

    /// How TCP connections are accepted, for the log: `--accept` for the
    /// listeners the server bound, `shared` for inherited ones (one socket
    /// for all workers: a `SO_REUSEPORT` group needs sockets bound here).
    fn accept_text(&self) -> String {
        let own = !self.config.tcp.is_empty()
            || self
                .config
                .tls
                .as_ref()
                .is_some_and(|t| !t.listen.is_empty());
        match (own, self.inherited_tcp) {
            (false, true) => "shared (inherited listeners)".to_owned(),
            (true, true) => format!("{}, shared for inherited listeners", self.config.accept),
            (true, false) => self.config.accept.to_string(),
            // `--accept` spreads TCP connections: nothing to spread.
            (false, false) => "none (no TCP listener)".to_owned(),
        }
    }

    /// The bound endpoints, with real ports: TCP, UDP, Unix, each kind in
    /// configuration order followed by the inherited sockets of that kind.
    pub fn local_addrs(&self) -> &[Endpoint] {
        &self.endpoints
    }

    /// Each UDP socket's address and the receive queue the kernel granted
    /// it, in bytes, in the order of [`Server::local_addrs`]: comparable
    /// with [`ServerConfig::udp_receive_buffer`] (Linux reports twice that
    /// through `SO_RCVBUF`, for its bookkeeping; this is halved), and less
    /// than it where `net.core.rmem_max` capped it (no `CAP_NET_ADMIN`).
    pub fn udp_receive_buffers(&self) -> Vec<(SocketAddr, io::Result<usize>)> {
        self.udp
            .iter()
            .map(|(addr, socket)| (*addr, listener::receive_buffer(socket)))
            .collect()
    }

    /// The connection limit in force (configured or derived from `RLIMIT_NOFILE`).
    pub fn max_connections(&self) -> usize {
        self.max_connections
    }

    /// The number of workers [`Server::spawn`] starts: each runs one event
    /// loop on a thread of its own. Beside io_uring, TLS listeners add an
    /// epoll loop of their own to each worker (on the same thread).
    pub fn workers(&self) -> usize {
        self.workers
    }

    /// Starts the workers (and the stats reporter if configured); returns at once.
    ///
    /// The I/O backend is chosen here ([`ServerConfig::io`]): with
    /// [`IoBackend::Auto`], io_uring if the kernel allows it, else epoll
    /// with one log line saying why.
    pub fn spawn(self) -> Result<ServerHandle, SpawnError> {
        let accept = self.accept_text();
        let Server {
            config,
            workers,
            max_connections,
            tcp,
            tls,
            unix,
            udp,
            endpoints,
            inherited_tcp: _,
        } = self;
        let io = backend::choose(config.io)?;
        let mut sockets: Vec<WorkerSockets> = (0..workers)
            .map(|index| WorkerSockets {
                index,
                listeners: Vec::new(),
                udp: Vec::new(),
            })
            .collect();
        for group in tcp {
            for (worker, socket) in sockets.iter_mut().zip(group.sockets) {
                worker
                    .listeners
                    .push((Endpoint::Tcp(group.addr), StdListener::Tcp(socket)));
            }
        }
        // Beside io_uring workers, TLS gets epoll event loops of its own,
        // one hosted by each io_uring worker.
        let tls_sockets = assign_tls(io, &mut sockets, tls);
        let mut unix_files = Vec::new();
        for (listener, file) in unix {
            for worker in &mut sockets {
                let copy = listener.try_clone().map_err(SpawnError::Register)?;
                worker.listeners.push((
                    Endpoint::Unix(file.path().to_owned()),
                    StdListener::Unix(copy),
                ));
            }
            unix_files.push(file);
        }
        let policy = PolicyConfig {
            max_datagram: config.udp_max_datagram,
            rate: config.udp_rate.map(|r| RateLimit {
                per_second: r.per_second,
                burst: r.burst,
            }),
            loop_guard: config.loop_guard,
            rate_exempt_loopback: !config.udp_rate_loopback,
        };
        for (i, (addr, socket)) in udp.into_iter().enumerate() {
            sockets[i % workers].udp.push(UdpSetup {
                socket,
                addr,
                // A random hash seed: remote hosts cannot pick forged sources
                // that all land in one chain of the rate table.
                policy: Box::new(DatagramPolicy::with_hash_seed(policy, hash_seed())),
                max_datagram: config.udp_max_datagram,
            });
        }
        // `auto` falls back to epoll when a worker cannot set up its ring
        // (the locked-memory limit, which the trial ring fitted): with
        // copies of the sockets, as no worker served them.
        let fallback = (io == IoBackend::Uring && config.io == IoBackend::Auto)
            .then(|| fallback_sockets(&sockets, &tls_sockets, policy).ok())
            .flatten();
        let settings = Settings {
            session: config.session_config(),
            max_connections,
            grace: config.grace,
            buffer_size: config.buffer_size.bytes(),
            busy_poll: config.busy_poll,
        };
        let tls_loops = tls_sockets.len();
        let stats = Arc::new(ServerStats::new(workers + tls_loops));
        let (io, shared, threads) = match launch(io, sockets, tls_sockets, &settings, &stats) {
            Ok((shared, threads)) => (io, shared, threads),
            Err(SpawnError::IoUring { reason }) if fallback.is_some() => {
                tracing::info!("io_uring is not available ({reason}): serving with epoll");
                let sockets = fallback.unwrap_or_default();
                for w in &sockets {
                    set_nonblocking(w).map_err(SpawnError::Register)?;
                }
                let (shared, threads) =
                    launch(IoBackend::Epoll, sockets, Vec::new(), &settings, &stats)?;
                (IoBackend::Epoll, shared, threads)
            }
            Err(e) => return Err(e),
        };
        if io == IoBackend::Uring && tls_loops > 0 {
            tracing::info!(
                tls_loops,
                "TLS listeners run on epoll event loops of their own, one inside each io_uring \
                 worker (rustls is driven by readiness); plain TCP, UDP and Unix on io_uring"
            );
        }
        shared
            .unix_files
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend(unix_files);
        let reporter = config.stats_interval.filter(|d| !d.is_zero()).and_then(|every| {
            let (tx, rx) = mpsc::channel::<()>();
            let stats = Arc::clone(&stats);
            let t = std::thread::Builder::new().name("ricochet-stats".into()).spawn(move || stats::report(&stats, &rx, every));
            match t {
                Ok(t) => Some((tx, t)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot start the stats reporter; continuing without it");
                    None
                }
            }
        });
        if endpoints.iter().all(|e| matches!(e, Endpoint::Udp(_))) {
            // The mode, buffer, connection limit and accept strategy are
            // the stream listeners': a UDP-only server has none.
            tracing::info!(workers, io = %io, "serving");
        } else {
            tracing::info!(
                workers,
                io = %io,
                mode = %config.mode,
                buffer = config.buffer_size.bytes(),
                max_connections,
                accept = %accept,
                "serving"
            );
        }
        Ok(ServerHandle {
            shared,
            threads,
            endpoints,
            reporter,
        })
    }
}

/// A per-process random seed (std's randomly keyed SipHash).
fn hash_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(0x5eed_u64)
}

#[cfg(test)]
mod tests;
