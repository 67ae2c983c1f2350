//! The metrics endpoint: a deliberately small HTTP/1.1 server on one thread.
//!
//! It answers `GET /metrics` and `HEAD /metrics` (also in the absolute form a proxy sends; 404 for any other path,
//! 405 for any other method, 400 as soon as the bytes cannot be HTTP/1.x) and closes the
//! connection after each response. Request heads are parsed by `httparse` ([`answer`]); the
//! loop around it is this module's, because what it must bound (below) is what a
//! general-purpose HTTP server leaves open. It cannot hold the echo server up, nor be held
//! up for long:
//!
//! - **its own thread**, one non-blocking mio event loop: a slow or hostile
//!   client never blocks an echo worker, and the workers never wait for it
//!   (a scrape reads the counters the workers publish once per turn);
//! - **a handful of connections** ([`MetricsConfig::max_connections`], 8 by
//!   default): one more is answered `503` and closed at once;
//! - **a bounded request** ([`MetricsConfig::max_request`], 8 KiB of request
//!   line and headers, at most 32 header fields): a longer one is answered
//!   `431` and closed;
//! - **a deadline per connection** ([`MetricsConfig::timeout`], 5 s from
//!   accept to the end of the exchange): a client that dawdles (slowloris)
//!   is dropped, whatever it is doing;
//! - **a spare descriptor** (`spare`): when the process is out of file
//!   descriptors, a scrape is still accepted and answered, one at a time.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::spare::SpareFd;
use crate::serve::{Scoped, ServerStats};

mod answer;

const LISTENER: Token = Token(usize::MAX - 1);
const WAKER: Token = Token(usize::MAX - 2);

/// How the metrics endpoint is bound and bounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Where to listen (`ricochet serve --metrics`; loopback unless told otherwise).
    pub addr: SocketAddr,
    /// Connections served at once; one more is answered 503 and closed.
    pub max_connections: usize,
    /// Longest request line plus headers, in bytes; longer is answered 431.
    pub max_request: usize,
    /// Time from accept to the end of the exchange; then the connection is dropped.
    pub timeout: Duration,
}

impl MetricsConfig {
    /// Defaults for `addr`: 8 connections, 8 KiB requests, 5 s per connection.
    pub fn new(addr: SocketAddr) -> Self {
        MetricsConfig {
            addr,
            max_connections: 8,
            max_request: 8 * 1024,
            timeout: Duration::from_secs(5),
        }
    }
}

/// Why the metrics endpoint could not start.
#[derive(Debug)]
#[non_exhaustive]
pub enum MetricsError {
    /// The address could not be bound.
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The underlying error.
        source: io::Error,
    },
    /// The event loop or its thread could not be created.
    Spawn(io::Error),
}

impl fmt::Display for MetricsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetricsError::Bind { addr, source } => {
                let hint = match source.kind() {
                    io::ErrorKind::AddrInUse => {
                        " (another server listens there: pick another port, or 0 for any free \
                         one, e.g. --metrics 127.0.0.1:0)"
                            .to_owned()
                    }
                    io::ErrorKind::PermissionDenied => format!(
                        " ({})",
                        permission_hint(
                            addr.port(),
                            crate::serve::error::unprivileged_port_start()
                        )
                    ),
                    // As for the echo listeners: which address is missing,
                    // and the one to give (the other loopback, in a host or
                    // network namespace that runs one family alone).
                    io::ErrorKind::AddrNotAvailable => {
                        return write!(
                            f,
                            "metrics {}: address not available on this machine: {}",
                            Scoped(*addr),
                            crate::serve::error::address_advice("metrics", *addr)
                        );
                    }
                    _ => String::new(),
                };
                write!(f, "metrics {}: {source}{hint}", Scoped(*addr))
            }
            MetricsError::Spawn(e) => write!(f, "cannot start the metrics endpoint: {e}"),
        }
    }
}

impl std::error::Error for MetricsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            MetricsError::Bind { source, .. } | MetricsError::Spawn(source) => Some(source),
        }
    }
}

/// A listening socket at `addr`, as `std::net::TcpListener::bind` makes
/// one (`SO_REUSEADDR`), but an IPv6 one dual-stack whatever the host's
/// `net.ipv6.bindv6only`: `[::]:PORT` takes IPv4 scrapes too, on every
/// host alike (the echo listeners are IPv6-only instead, so that `0.0.0.0`
/// can be bound beside them; there is one metrics address).
fn listen(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.bind(&addr.into())?;
    socket.listen(128)?;
    Ok(socket.into())
}

/// A bound metrics endpoint that does not serve yet.
#[derive(Debug)]
pub struct MetricsServer {
    listener: std::net::TcpListener,
    addr: SocketAddr,
    config: MetricsConfig,
}

impl MetricsServer {
    /// Binds `config.addr` (port 0: any free port, see [`MetricsServer::local_addr`]).
    pub fn bind(config: MetricsConfig) -> Result<MetricsServer, MetricsError> {
        let fail = |source| MetricsError::Bind {
            addr: config.addr,
            source,
        };
        let listener = listen(config.addr).map_err(fail)?;
        listener.set_nonblocking(true).map_err(fail)?;
        let addr = listener.local_addr().map_err(fail)?;
        Ok(MetricsServer {
            listener,
            addr,
            config,
        })
    }

    /// The bound address, with the real port.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Serves `stats` on a thread of its own until [`MetricsHandle::stop`].
    pub fn spawn(self, stats: Arc<ServerStats>) -> Result<MetricsHandle, MetricsError> {
        let poll = Poll::new().map_err(MetricsError::Spawn)?;
        let waker = Waker::new(poll.registry(), WAKER).map_err(MetricsError::Spawn)?;
        let mut listener = TcpListener::from_std(self.listener);
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)
            .map_err(MetricsError::Spawn)?;
        let stop = Arc::new(AtomicBool::new(false));
        let spare = SpareFd::new(&listener);
        let mut endpoint = Endpoint {
            poll,
            spare,
            listener,
            conns: Slab::new(),
            config: self.config,
            stats,
            stop: Arc::clone(&stop),
        };
        let thread = std::thread::Builder::new()
            .name("ricochet-metrics".into())
            .spawn(move || endpoint.run())
            .map_err(MetricsError::Spawn)?;
        Ok(MetricsHandle {
            addr: self.addr,
            stop,
            waker,
            thread: Some(thread),
        })
    }
}

/// A running metrics endpoint; dropping it stops it too.
#[derive(Debug)]
pub struct MetricsHandle {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    waker: Waker,
    thread: Option<JoinHandle<()>>,
}

impl MetricsHandle {
    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops serving: the listener and every connection close.
    pub fn stop(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for MetricsHandle {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

/// Where a connection is in its one exchange.
#[derive(Debug, PartialEq, Eq)]
enum Stage {
    /// Reading the request line and headers.
    Reading,
    /// Writing the response.
    Writing,
    /// Response sent and write side shut: discarding input until the peer closes.
    Draining,
}

#[derive(Debug)]
struct Conn {
    stream: TcpStream,
    input: Vec<u8>,
    output: Vec<u8>,
    sent: usize,
    deadline: Instant,
    stage: Stage,
}

struct Endpoint {
    poll: Poll,
    listener: TcpListener,
    conns: Slab<Conn>,
    config: MetricsConfig,
    stats: Arc<ServerStats>,
    stop: Arc<AtomicBool>,
    /// Lent to `accept` when the process is out of descriptors.
    spare: SpareFd,
}

impl Endpoint {
    fn run(&mut self) {
        let mut events = Events::with_capacity(64);
        loop {
            // Back into reserve once a descriptor is free again (no-op while held).
            self.spare.restore(&self.listener);
            let timeout = self
                .conns
                .iter()
                .map(|(_, c)| c.deadline)
                .min()
                .map(|d| d.saturating_duration_since(Instant::now()));
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                tracing::warn!(error = %e, "metrics endpoint: event loop failed; metrics are off");
                return;
            }
            if self.stop.load(Ordering::Acquire) {
                return;
            }
            for event in events.iter() {
                match event.token() {
                    LISTENER => self.accept_all(),
                    WAKER => {}
                    Token(key) => self.drive(key),
                }
            }
            let now = Instant::now();
            let expired: Vec<usize> = self
                .conns
                .iter()
                .filter(|(_, c)| c.deadline <= now)
                .map(|(k, _)| k)
                .collect();
            for key in expired {
                tracing::debug!("metrics endpoint: dropping a connection past its deadline");
                self.close(key);
            }
        }
    }

    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((mut stream, peer)) => {
                    if self.conns.len() >= self.config.max_connections {
                        tracing::debug!(%peer, "metrics endpoint busy: refusing a connection");
                        // A fresh socket's send buffer takes this whole; if not, it is dropped.
                        let _ = stream.write(&answer::busy());
                        continue;
                    }
                    let entry = self.conns.vacant_entry();
                    let key = entry.key();
                    if self
                        .poll
                        .registry()
                        .register(
                            &mut stream,
                            Token(key),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .is_err()
                    {
                        continue;
                    }
                    entry.insert(Conn {
                        stream,
                        input: Vec::new(),
                        output: Vec::new(),
                        sent: 0,
                        deadline: Instant::now() + self.config.timeout,
                        stage: Stage::Reading,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) if self.spare.release_for(&e) => {
                    tracing::debug!(
                        "metrics endpoint: out of descriptors; accepting into the spare"
                    );
                }
                Err(e) => {
                    // Edge-triggered: the next connection brings the next try, no spinning.
                    tracing::debug!(error = %e, "metrics endpoint: accept failed");
                    return;
                }
            }
        }
    }

    /// Moves connection `key` as far as it goes now; closes it when done or failed.
    fn drive(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if step(conn, &self.config, &self.stats).unwrap_or(true) {
            self.close(key);
        }
    }

    fn close(&mut self, key: usize) {
        if self.conns.contains(key) {
            let mut conn = self.conns.remove(key);
            let _ = self.poll.registry().deregister(&mut conn.stream);
            drop(conn);
            self.spare.restore(&self.listener);
        }
    }
}

/// Reads, answers and drains as far as the socket allows; `Ok(true)` when finished.
fn step(conn: &mut Conn, config: &MetricsConfig, stats: &Arc<ServerStats>) -> io::Result<bool> {
    let mut buf = [0u8; 1024];
    if conn.stage == Stage::Reading {
        loop {
            match conn.stream.read(&mut buf) {
                Ok(0) => return Ok(true),
                Ok(n) => {
                    conn.input.extend_from_slice(&buf[..n]);
                    if let Some(response) = answer::respond(&conn.input, config.max_request, stats)
                    {
                        conn.output = response;
                        conn.stage = Stage::Writing;
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        conn.input = Vec::new();
    }
    if conn.stage == Stage::Writing {
        while conn.sent < conn.output.len() {
            match conn.stream.write(&conn.output[conn.sent..]) {
                Ok(0) => return Ok(true),
                Ok(n) => conn.sent += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // FIN after the response; closing with unread input would send a
        // reset that could destroy the response in flight.
        let _ = conn.stream.shutdown(Shutdown::Write);
        conn.stage = Stage::Draining;
    }
    loop {
        match conn.stream.read(&mut buf) {
            Ok(0) => return Ok(true),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Why binding the metrics `port` was refused, given the lowest port any
/// user may bind here (`start`, as for the echo listeners), and what to
/// give instead.
fn permission_hint(port: u16, start: u16) -> String {
    if port >= start {
        return crate::serve::error::port_denied_advice(port, start);
    }
    format!(
        "ports below {start} (net.ipv4.ip_unprivileged_port_start) need root or \
         CAP_NET_BIND_SERVICE: use a port of {start} or above, such as {}",
        start.max(9107)
    )
}

#[cfg(test)]
mod tests;
