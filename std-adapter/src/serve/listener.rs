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
    let first = tcp_socket(addr, false).map_err(|e| BindError::from_io(Endpoint::Tcp(addr), e))?;
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
    socket.bind(&addr.into()).map_err(fail)?;
    let std: StdUdpSocket = socket.into();
    let bound = std.local_addr().map_err(fail)?;
    Ok((bound, std))
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;
    use std::net::TcpStream;

    use super::*;

    fn local() -> SocketAddr {
        "127.0.0.1:0".parse().unwrap()
    }

    #[test]
    fn busy_port_is_refused_even_to_a_reuseport_group_of_the_same_user() {
        let first = bind_tcp(local(), 16, AcceptStrategy::ReusePort, 2).expect("first group");
        for (strategy, workers) in [
            (AcceptStrategy::ReusePort, 2),
            (AcceptStrategy::ReusePort, 1),
            (AcceptStrategy::Shared, 2),
        ] {
            match bind_tcp(first.addr, 16, strategy, workers) {
                Err(BindError::AddrInUse { endpoint }) => {
                    assert_eq!(endpoint, Endpoint::Tcp(first.addr));
                }
                other => panic!("{strategy:?} x{workers}: expected AddrInUse, got {other:?}"),
            }
        }
    }

    #[test]
    fn reuseport_group_spreads_connections_over_every_socket() {
        let group = bind_tcp(local(), 256, AcceptStrategy::ReusePort, 2).expect("group");
        assert_eq!(group.sockets.len(), 2);
        let mut accepted = [0usize; 2];
        let mut clients = Vec::new();
        // The kernel hashes each connection (by source port) onto one socket
        // of the group: 100 connections all on one of two sockets would mean
        // the group is broken (or a chance of 2^-99).
        while accepted.contains(&0) {
            assert!(clients.len() < 100, "accepted per socket: {accepted:?}");
            clients.push(TcpStream::connect(group.addr).expect("connect"));
            for (i, l) in group.sockets.iter().enumerate() {
                loop {
                    match l.accept() {
                        Ok(_) => accepted[i] += 1,
                        Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                        Err(e) => panic!("accept: {e}"),
                    }
                }
            }
        }
    }
}
