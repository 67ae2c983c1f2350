//! Listening sockets: creating them (socket2) before any thread starts, and
//! accepting on them inside a worker, with back-off when descriptors run out.
//!
//! Everything that can fail because of an address happens here, at
//! [`crate::serve::Server::bind`] time, so a caller learns about a busy port
//! before the server runs and sees the real port chosen for port 0.

use std::io;
use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};
use std::sync::Arc;

use ricochet_core::{Duration, Instant};
use socket2::{Domain, Protocol, Socket, Type};

use super::config::AcceptStrategy;
use super::conn::{Peer, Stream};
use super::error::{BindError, Endpoint};
use super::stats::Counters;
use super::throttle::Throttle;
use super::tls::{Acceptor, TlsStream};

/// The listening sockets for one TCP address: one per worker.
///
/// With [`AcceptStrategy::ReusePort`] they are distinct sockets in one
/// `SO_REUSEPORT` group; with [`AcceptStrategy::Shared`] they are duplicates
/// of one socket.
#[derive(Debug)]
pub(crate) struct TcpGroup {
    /// The bound address (real port if 0 was asked).
    pub(crate) addr: SocketAddr,
    /// Worker `i` serves `sockets[i]`.
    pub(crate) sockets: Vec<StdTcpListener>,
}

/// A non-blocking TCP socket with `SO_REUSEADDR`, bound to `addr`, not yet listening.
fn tcp_socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<Socket> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        // `[::]` and `0.0.0.0` can then be bound side by side.
        socket.set_only_v6(true)?;
    }
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// How long an address in use is tried again before it counts as taken:
/// a server killed a moment before (SIGKILL, the OOM killer) still holds
/// its sockets while the kernel tears its io_uring rings down (5-8 ms
/// measured on an idle host; the requests armed on them keep them open),
/// so a server restarted at once found "another server" there.
pub(crate) const IN_USE_WAIT: std::time::Duration = std::time::Duration::from_millis(500);

/// Runs `attempt` again every 10 ms while it fails with `AddrInUse`, for
/// up to [`IN_USE_WAIT`] in all; the last result.
pub(crate) fn while_in_use<T>(mut attempt: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let deadline = std::time::Instant::now() + IN_USE_WAIT;
    loop {
        match attempt() {
            Err(e)
                if e.kind() == io::ErrorKind::AddrInUse && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Binds `addr` for `workers` workers.
///
/// A busy port is an error whatever the accept strategy. The first socket
/// is bound *without* `SO_REUSEPORT`: the kernel then refuses it if anyone
/// listens on the address, even a `SO_REUSEPORT` group of the same user
/// (which a socket with the option would silently join, taking about half
/// of that server's connections). Only once that bind succeeded does the
/// socket get `SO_REUSEPORT`, and the rest of the group binds beside it
/// (Linux allows that: the first socket is not listening yet, and from
/// `listen` on all of them share the option and the user). All bind before
/// any listens.
pub(crate) fn bind_tcp(
    addr: SocketAddr,
    backlog: u32,
    strategy: AcceptStrategy,
    workers: usize,
) -> Result<TcpGroup, BindError> {
    let reuse_port = strategy == AcceptStrategy::ReusePort && workers > 1;
    let first = while_in_use(|| tcp_socket(addr, false))
        .map_err(|e| BindError::from_io(Endpoint::Tcp(addr), e))?;
    let bound = first
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .ok_or_else(|| BindError::Io {
            endpoint: Endpoint::Tcp(addr),
            source: std::io::Error::other("no local address"),
        })?;
    let fail = |e| BindError::from_io(Endpoint::Tcp(bound), e);
    if reuse_port {
        first.set_reuse_port(true).map_err(fail)?;
    }
    let mut rest = Vec::with_capacity(workers.saturating_sub(1));
    if reuse_port {
        for _ in 1..workers {
            rest.push(tcp_socket(bound, true).map_err(fail)?);
        }
    }
    let backlog = i32::try_from(backlog).unwrap_or(i32::MAX);
    first.listen(backlog).map_err(fail)?;
    for s in &rest {
        s.listen(backlog).map_err(fail)?;
    }
    let mut sockets = Vec::with_capacity(workers);
    sockets.push(StdTcpListener::from(first));
    if reuse_port {
        sockets.extend(rest.into_iter().map(StdTcpListener::from));
    } else {
        for _ in 1..workers {
            let copy = sockets[0].try_clone().map_err(fail)?;
            sockets.push(copy);
        }
    }
    Ok(TcpGroup {
        addr: bound,
        sockets,
    })
}

/// Binds a non-blocking UDP socket on `addr`; returns it with its real address.
pub(crate) fn bind_udp(addr: SocketAddr) -> Result<(SocketAddr, StdUdpSocket), BindError> {
    let fail = |e| BindError::from_io(Endpoint::Udp(addr), e);
    let socket =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(fail)?;
    if addr.is_ipv6() {
        socket.set_only_v6(true).map_err(fail)?;
    }
    socket.set_nonblocking(true).map_err(fail)?;
    while_in_use(|| socket.bind(&addr.into())).map_err(fail)?;
    let std: StdUdpSocket = socket.into();
    let bound = std.local_addr().map_err(fail)?;
    Ok((bound, std))
}

/// Asks the kernel for a receive queue of `bytes` on a UDP socket; returns
/// what it granted, in the unit of the request (Linux reports twice that
/// through `SO_RCVBUF`, for its bookkeeping; this is halved). The server
/// does this for every UDP socket it serves
/// ([`ServerConfig::udp_receive_buffer`](super::ServerConfig::udp_receive_buffer)).
///
/// Why: UDP has no flow control, so whatever arrives while the queue is
/// full is dropped, from every source alike. The kernel's default
/// (`net.core.rmem_default`, 208 KiB on Debian) holds about 250 small
/// datagrams, a fraction of a millisecond of a flood: a well-behaved client then
/// loses datagrams whenever the worker is off the CPU that long
/// (RELIABILITY.md, "UDP flood").
///
/// With `CAP_NET_ADMIN` (root), `SO_RCVBUFFORCE` goes past
/// `net.core.rmem_max`; without it `SO_RCVBUF` is capped there, and the
/// caller compares the result with what it asked for.
pub fn raise_udp_receive_buffer(socket: &StdUdpSocket, bytes: usize) -> io::Result<usize> {
    let sock = socket2::SockRef::from(socket);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    if force_receive_buffer(socket, bytes).is_ok() {
        return receive_buffer(socket);
    }
    sock.set_recv_buffer_size(bytes)?;
    receive_buffer(socket)
}

/// The receive queue a UDP socket has, in the unit of a request: Linux
/// reports (`SO_RCVBUF`) twice what it granted, the other half covering its
/// bookkeeping, so this halves it there.
pub(crate) fn receive_buffer(socket: &StdUdpSocket) -> io::Result<usize> {
    let reported = socket2::SockRef::from(socket).recv_buffer_size()?;
    Ok(if cfg!(any(target_os = "linux", target_os = "android")) {
        reported / 2
    } else {
        reported
    })
}

/// `SO_RCVBUFFORCE` (Linux, needs `CAP_NET_ADMIN`; fails with `EPERM` otherwise).
#[cfg(any(target_os = "linux", target_os = "android"))]
fn force_receive_buffer(socket: &StdUdpSocket, bytes: usize) -> io::Result<()> {
    let value = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    set_int_option(socket, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, value)
}

/// Bytes a TCP socket holds that its peer has not acknowledged
/// (`SIOCOUTQ`): what a reset (`SO_LINGER` 0) would discard. 0 where it
/// cannot be read, and 0 once the connection is closed (the peer reset
/// it): `SIOCOUTQ` keeps counting bytes that can no longer be delivered,
/// and a pump waiting for them would hold the connection for its whole
/// linger.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
pub(crate) fn tcp_unacknowledged(socket: &impl std::os::fd::AsRawFd) -> usize {
    // The first byte of `struct tcp_info` is the TCP state.
    const TCP_CLOSE: u8 = 7;
    let mut state: u8 = 0;
    let mut len = 1 as libc::socklen_t;
    // SAFETY: `getsockopt` writes at most `len` (1) byte to a live `u8`
    // and the length to a live `socklen_t`, on a descriptor `socket` owns
    // for the whole call (the kernel copies min(len, its size)).
    let rc = unsafe {
        libc::getsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            (&raw mut state).cast(),
            &raw mut len,
        )
    };
    if rc == 0 && len >= 1 && state == TCP_CLOSE {
        return 0;
    }
    let mut n: libc::c_int = 0;
    // SAFETY: `SIOCOUTQ` (`TIOCOUTQ`) writes one `c_int` to a live `c_int`,
    // on a descriptor `socket` owns for the whole call.
    let rc = unsafe { libc::ioctl(socket.as_raw_fd(), libc::TIOCOUTQ, &raw mut n) };
    if rc == 0 {
        usize::try_from(n).unwrap_or(0)
    } else {
        0
    }
}

/// Bytes a TCP socket holds that its peer has not acknowledged: not
/// known on this system (a reset may discard some).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn tcp_unacknowledged<T>(_socket: &T) -> usize {
    0
}

/// `setsockopt` of an `int`-valued option (`level`, `name`) that socket2
/// does not offer, on `socket`.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[allow(unsafe_code)]
pub(crate) fn set_int_option(
    socket: &impl std::os::fd::AsRawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `setsockopt` reads `size_of::<c_int>()` bytes from a live
    // `c_int`, on a descriptor `socket` owns for the whole call.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            level,
            name,
            (&raw const value).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

// --- accepting (inside a worker) ---

/// First pause of a listener after running out of file descriptors; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause of a listener after running out of file descriptors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Minimum time between two warnings about failing accepts.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The listening socket of one endpoint, as a worker sees it.
#[derive(Debug)]
pub(crate) enum ListenSocket {
    /// TCP.
    Tcp(mio::net::TcpListener),
    /// Unix stream.
    Unix(mio::net::UnixListener),
    /// TLS over TCP: each connection is wrapped for its handshake.
    Tls(mio::net::TcpListener, Arc<Acceptor>),
}

/// Accepts a TCP connection, with the options every echo connection gets.
fn accept_tcp(l: &mio::net::TcpListener) -> io::Result<(mio::net::TcpStream, SocketAddr)> {
    let (s, peer) = l.accept()?;
    // Echo is request/response-like: never hold a small echo back (Nagle).
    let _ = s.set_nodelay(true);
    #[cfg(any(target_os = "macos", target_os = "ios"))]
    let _ = socket2::SockRef::from(&s).set_nosigpipe(true);
    Ok((s, peer))
}

impl ListenSocket {
    fn accept(&self, now: Instant) -> io::Result<(Stream, Peer)> {
        match self {
            ListenSocket::Tcp(l) => {
                let (s, peer) = accept_tcp(l)?;
                Ok((Stream::Tcp(s), Peer::Tcp(peer)))
            }
            ListenSocket::Tls(l, acceptor) => {
                let (s, peer) = accept_tcp(l)?;
                let deadline = now + acceptor.handshake_timeout;
                // Fails only for a configuration rustls cannot serve (checked
                // at bind time): drop this connection, keep accepting.
                let tls = TlsStream::new(s, Arc::clone(&acceptor.config), deadline)
                    .map_err(|e| io::Error::new(io::ErrorKind::ConnectionAborted, e))?;
                Ok((Stream::Tls(Box::new(tls)), Peer::Tcp(peer)))
            }
            ListenSocket::Unix(l) => {
                let (s, _) = l.accept()?;
                Ok((Stream::Unix(s), Peer::Unix))
            }
        }
    }

    /// The event source to register with mio.
    pub(crate) fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            ListenSocket::Tcp(l) | ListenSocket::Tls(l, _) => l,
            ListenSocket::Unix(l) => l,
        }
    }
}

/// A worker's listener: accepts, and pauses itself (with back-off) when
/// accepting fails for lack of file descriptors, instead of spinning.
#[derive(Debug)]
pub(crate) struct Listener {
    pub(crate) socket: ListenSocket,
    pub(crate) endpoint: Endpoint,
    /// Not accepting (deregistered) until then, after running out of descriptors.
    pub(crate) paused_until: Option<Instant>,
    backoff: Duration,
    /// The accept budget ran out with connections possibly left.
    pub(crate) pending: bool,
    warnings: Throttle,
}

impl Listener {
    pub(crate) fn new(endpoint: Endpoint, socket: ListenSocket) -> Self {
        Listener {
            socket,
            endpoint,
            paused_until: None,
            backoff: MIN_BACKOFF,
            pending: false,
            warnings: Throttle::new(WARN_EVERY),
        }
    }

    /// Accepts the next connection; `None` when there is none now or the
    /// listener paused itself (it then deregistered from `registry`).
    pub(crate) fn accept_next(
        &mut self,
        now: Instant,
        registry: &mio::Registry,
        counters: &mut Counters,
    ) -> Option<(Stream, Peer)> {
        loop {
            if self.paused_until.is_some() {
                return None;
            }
            self.pending = false;
            match self.socket.accept(now) {
                Ok(accepted) => {
                    self.backoff = MIN_BACKOFF;
                    return Some(accepted);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return None,
                Err(e) if !accept_error_pauses(e.raw_os_error()) => {}
                Err(e) => {
                    self.pause(now, registry, counters, &e);
                    return None;
                }
            }
        }
    }

    /// Out of descriptors (EMFILE/ENFILE), or memory, or anything else:
    /// stop accepting for a while, doubling the pause up to a second.
    fn pause(
        &mut self,
        now: Instant,
        registry: &mio::Registry,
        counters: &mut Counters,
        e: &io::Error,
    ) {
        let exhausted = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
        if exhausted {
            counters.accept_fd_exhausted += 1;
        } else {
            counters.accept_errors += 1;
        }
        let pause = self.backoff;
        self.backoff = Duration::from_micros((pause.as_micros() * 2).min(MAX_BACKOFF.as_micros()));
        self.paused_until = Some(now + pause);
        let _ = registry.deregister(self.socket.source());
        if let Some(suppressed) = self.warnings.admit(now) {
            let hint = if exhausted {
                "out of file descriptors (raise `ulimit -n` or lower --max-connections)"
            } else {
                "accept failed"
            };
            tracing::warn!(
                endpoint = %self.endpoint,
                error = %e,
                pause_ms = pause.as_millis(),
                suppressed,
                "{hint}; pausing accepts"
            );
        }
    }

    /// Registers again if the pause is over; returns whether it resumed.
    pub(crate) fn resume_if_due(
        &mut self,
        now: Instant,
        registry: &mio::Registry,
        token: mio::Token,
    ) -> bool {
        if self.paused_until.is_none_or(|t| t > now) {
            return false;
        }
        self.paused_until = None;
        if let Err(e) = registry.register(self.socket.source(), token, mio::Interest::READABLE) {
            tracing::warn!(endpoint = %self.endpoint, error = %e, "cannot resume accepting");
            self.paused_until = Some(now + self.backoff);
            return false;
        }
        true
    }
}

/// Whether an accept error pauses the listener, the same rule on both
/// backends. No for the new connection's own trouble, after which the next
/// accept works: it was aborted before we took it, a signal, nothing
/// waiting, or a network error Linux reports on the new connection (see
/// accept(2); its `ENONET` is Linux-only and left out): accept again at
/// once, uncounted. Yes for the rest: out of
/// descriptors or memory, or a refusal (`EPERM` from a security policy)
/// that would fail again at once: pause with back-off, counted and logged,
/// never spin.
/// `errno` is the error's number (`None`: it has none, which pauses).
pub(crate) fn accept_error_pauses(errno: Option<i32>) -> bool {
    !matches!(
        errno,
        Some(
            libc::ECONNABORTED
                | libc::EINTR
                | libc::EAGAIN
                | libc::EPROTO
                | libc::ENOPROTOOPT
                | libc::ENETDOWN
                | libc::ENETUNREACH
                | libc::EHOSTDOWN
                | libc::EHOSTUNREACH
                | libc::EOPNOTSUPP
        )
    )
}

#[cfg(test)]
mod tests;
