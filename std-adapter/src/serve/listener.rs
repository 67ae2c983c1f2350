//! Creating the listening sockets (socket2), before any thread starts.
//!
//! Everything that can fail because of an address happens here, at
//! [`crate::serve::Server::bind`] time, so a caller learns about a busy port
//! before the server runs and sees the real port chosen for port 0.

use std::net::{SocketAddr, TcpListener as StdTcpListener, UdpSocket as StdUdpSocket};

use socket2::{Domain, Protocol, Socket, Type};

use super::config::AcceptStrategy;
use super::error::{BindError, Endpoint};

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

fn tcp_socket(addr: SocketAddr, reuse_port: bool, backlog: u32) -> std::io::Result<Socket> {
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
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket)
}

/// Binds `addr` for `workers` workers.
pub(crate) fn bind_tcp(
    addr: SocketAddr,
    backlog: u32,
    strategy: AcceptStrategy,
    workers: usize,
) -> Result<TcpGroup, BindError> {
    let reuse_port = strategy == AcceptStrategy::ReusePort && workers > 1;
    let first = tcp_socket(addr, reuse_port, backlog)
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
    let mut sockets = Vec::with_capacity(workers);
    for _ in 1..workers {
        let next = if reuse_port {
            tcp_socket(bound, true, backlog)
        } else {
            first.try_clone()
        };
        sockets.push(StdTcpListener::from(next.map_err(fail)?));
    }
    sockets.insert(0, StdTcpListener::from(first));
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
    socket.bind(&addr.into()).map_err(fail)?;
    let std: StdUdpSocket = socket.into();
    let bound = std.local_addr().map_err(fail)?;
    Ok((bound, std))
}
