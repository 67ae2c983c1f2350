//! The probe's stream transports: how a connection to a target is opened
//! ([`dial`]) and how its bytes move ([`Link`]), over TCP and Unix sockets.
//!
//! The stream worker only sees this interface: a link is *ready* once
//! [`Link::poll_ready`] says so (for TCP, the non-blocking connect has
//! completed), then it reads, writes and half-closes. Connect latency is
//! measured from [`dial`] to ready.
//!
//! Adding a transport (TLS over TCP, say) means a [`Target`] variant, a
//! `Link` variant and its arm in each method: `poll_ready` drives the
//! handshake (reading and writing handshake records on readiness events)
//! and returns true once application data may flow, so the handshake counts
//! in the connect latency; `read`/`write` move plaintext; `shutdown_write`
//! sends the transport's own close (e.g. `close_notify`) before the TCP FIN.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};

use super::Target;

/// An open (or opening) stream connection.
pub(super) enum Link {
    /// TCP, `TCP_NODELAY` set.
    Tcp(TcpStream),
    /// A Unix stream socket.
    Unix(UnixStream),
}

/// What [`dial`] started.
pub(super) enum Dialed {
    /// A link, connecting or connected: register it, then wait until
    /// [`Link::poll_ready`].
    Link(Link),
    /// The Unix listener's backlog is full: try again shortly.
    BacklogFull,
}

/// How many addresses `target` may be dialed at (TCP tries each in turn).
pub(super) fn attempts(target: &Target) -> usize {
    match target {
        Target::Tcp(addrs) | Target::Udp(addrs) => addrs.len(),
        Target::Unix(_) => 1,
    }
}

/// Where attempt `attempt` of `target` goes, for messages.
pub(super) fn describe(target: &Target, attempt: usize) -> String {
    match target {
        Target::Tcp(addrs) | Target::Udp(addrs) => addrs
            .get(attempt)
            .map_or_else(|| target.to_string(), ToString::to_string),
        Target::Unix(path) => path.display().to_string(),
    }
}

/// Starts a non-blocking connect to `target`'s `attempt`-th address.
pub(super) fn dial(target: &Target, attempt: usize) -> io::Result<Dialed> {
    match target {
        Target::Tcp(addrs) => {
            let addr = addrs
                .get(attempt)
                .ok_or_else(|| io::Error::other("no address left to try"))?;
            let s = TcpStream::connect(*addr)?;
            s.set_nodelay(true)?;
            Ok(Dialed::Link(Link::Tcp(s)))
        }
        Target::Unix(path) => match UnixStream::connect(path) {
            Ok(s) => Ok(Dialed::Link(Link::Unix(s))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Dialed::BacklogFull),
            Err(e) => Err(e),
        },
        Target::Udp(_) => Err(io::Error::other("not a stream target")),
    }
}

impl Link {
    /// The socket, to (de)register with the event loop.
    pub(super) fn source(&mut self) -> &mut dyn Source {
        match self {
            Link::Tcp(s) => s,
            Link::Unix(s) => s,
        }
    }

    /// `Ok(true)` once the link carries data (the connect completed),
    /// `Ok(false)` while it is in progress, `Err` if it failed.
    pub(super) fn poll_ready(&mut self) -> io::Result<bool> {
        let (err, peer) = match self {
            Link::Tcp(s) => (s.take_error(), s.peer_addr().map(drop)),
            Link::Unix(s) => (s.take_error(), s.peer_addr().map(drop)),
        };
        if let Some(e) = err? {
            return Err(e);
        }
        match peer {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
            Err(e) => Err(e),
        }
    }

    pub(super) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Tcp(s) => s.read(buf),
            Link::Unix(s) => s.read(buf),
        }
    }

    pub(super) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Tcp(s) => s.write(buf),
            Link::Unix(s) => s.write(buf),
        }
    }

    /// Our side is finished (the peer reads EOF once it has read everything).
    pub(super) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Link::Tcp(s) => s.shutdown(Shutdown::Write),
            Link::Unix(s) => s.shutdown(Shutdown::Write),
        }
    }
}
