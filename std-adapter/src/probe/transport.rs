//! The probe's stream transports: how a connection to a target is opened
//! ([`dial`]) and how its bytes move ([`Link`]), over TCP, TLS over TCP
//! and Unix sockets.
//!
//! The stream worker only sees this interface: a link is *ready* once
//! [`Link::poll_ready`] says so, then it reads, writes and half-closes.
//! For TCP and Unix, ready means the non-blocking connect completed. For
//! TLS, `poll_ready` also drives the handshake (reading and writing
//! handshake records on readiness events) and says ready once application
//! data may flow; [`Link::handshake`] then tells when the handshake began
//! (the TCP connection established) and whether it resumed a session.
//!
//! So connect latency, measured by the worker from [`dial`] to ready, is
//! the time until the connection carries data: over TLS, TCP connect plus
//! handshake. The handshake alone is measured from [`Handshake::since`]
//! to ready.
//!
//! `read`/`write` move plaintext; `shutdown_write` sends the transport's
//! own close (TLS: `close_notify`) before the FIN. Over TLS a write may
//! leave records queued when the socket fills: [`Link::flush`] sends them
//! on the next writable edge.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use ricochet_core::Instant;

use super::Target;
use super::tls::{HandshakeError, TlsClient, TlsLink};

/// An open (or opening) stream connection.
pub(super) enum Link {
    /// TCP, `TCP_NODELAY` set.
    Tcp(TcpStream),
    /// A Unix stream socket.
    Unix(UnixStream),
    /// TLS over TCP (`TCP_NODELAY` set).
    Tls(Box<TlsLink>),
}

/// What [`dial`] started.
pub(super) enum Dialed {
    /// A link, connecting or connected: register it, then wait until
    /// [`Link::poll_ready`].
    Link(Link),
    /// The Unix listener's backlog is full: try again shortly.
    BacklogFull,
}

/// How far [`Link::poll_ready`] got.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Readiness {
    /// The connect is in progress.
    Connecting,
    /// Connected; the transport's handshake, begun at `since`, is in progress.
    Handshaking {
        /// When the connection was seen established.
        since: Instant,
    },
    /// Application data may flow.
    Ready,
}

/// Why a link did not become ready.
#[derive(Debug)]
pub(super) enum ReadyError {
    /// The connect failed (another address of the target may be tried).
    Connect(io::Error),
    /// The connection is up but its handshake failed.
    Handshake(HandshakeError),
}

/// A transport handshake that completed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Handshake {
    /// When it began: the connection was seen established.
    pub(super) since: Instant,
    /// It resumed an earlier session (TLS tickets) instead of a full handshake.
    pub(super) resumed: bool,
}

/// How many addresses `target` may be dialed at (TCP tries each in turn).
pub(super) fn attempts(target: &Target) -> usize {
    match target {
        Target::Tcp(addrs) | Target::Udp(addrs) => addrs.len(),
        Target::Tls(t) => t.addrs.len(),
        Target::Unix(_) => 1,
    }
}

/// Where attempt `attempt` of `target` goes, for messages.
pub(super) fn describe(target: &Target, attempt: usize) -> String {
    match target {
        Target::Tcp(addrs) | Target::Udp(addrs) => addrs
            .get(attempt)
            .map_or_else(|| target.to_string(), ToString::to_string),
        Target::Tls(t) => t
            .addrs
            .get(attempt)
            .map_or_else(|| target.to_string(), ToString::to_string),
        Target::Unix(path) => path.display().to_string(),
    }
}

/// Starts a non-blocking connect to `target`'s `attempt`-th address; a
/// `tls://` target needs its client (`tls`).
pub(super) fn dial(target: &Target, attempt: usize, tls: Option<&TlsClient>) -> io::Result<Dialed> {
    match target {
        Target::Tcp(addrs) => Ok(Dialed::Link(Link::Tcp(tcp(addrs, attempt)?))),
        Target::Tls(t) => {
            let client =
                tls.ok_or_else(|| io::Error::other("no TLS client for a tls:// target"))?;
            let sock = tcp(&t.addrs, attempt)?;
            Ok(Dialed::Link(Link::Tls(Box::new(TlsLink::new(
                sock, client,
            )))))
        }
        Target::Unix(path) => match UnixStream::connect(path) {
            Ok(s) => Ok(Dialed::Link(Link::Unix(s))),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Dialed::BacklogFull),
            Err(e) => Err(e),
        },
        Target::Udp(_) => Err(io::Error::other("not a stream target")),
    }
}

/// A non-blocking TCP connect to `addrs[attempt]`, `TCP_NODELAY` set.
fn tcp(addrs: &[std::net::SocketAddr], attempt: usize) -> io::Result<TcpStream> {
    let addr = addrs
        .get(attempt)
        .ok_or_else(|| io::Error::other("no address left to try"))?;
    let s = TcpStream::connect(*addr)?;
    s.set_nodelay(true)?;
    Ok(s)
}

/// Whether a non-blocking connect completed, from the socket's pending
/// error and its peer address (`Err`: it failed).
fn connect_status(err: io::Result<Option<io::Error>>, peer: io::Result<()>) -> io::Result<bool> {
    if let Some(e) = err? {
        return Err(e);
    }
    match peer {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(false),
        Err(e) => Err(e),
    }
}

/// [`connect_status`] of a TCP socket.
fn tcp_connected(s: &TcpStream) -> io::Result<bool> {
    connect_status(s.take_error(), s.peer_addr().map(drop))
}

impl Link {
    /// The socket, to (de)register with the event loop.
    pub(super) fn source(&mut self) -> &mut dyn Source {
        match self {
            Link::Tcp(s) => s,
            Link::Unix(s) => s,
            Link::Tls(s) => s.socket(),
        }
    }

    /// Moves the link toward carrying data, at `now` (over TLS the
    /// handshake's start is the `now` of the call that sees TCP established).
    pub(super) fn poll_ready(&mut self, now: Instant) -> Result<Readiness, ReadyError> {
        let connected = match self {
            Link::Tcp(s) => tcp_connected(s),
            Link::Unix(s) => connect_status(s.take_error(), s.peer_addr().map(drop)),
            Link::Tls(s) => return s.poll_ready(now, tcp_connected),
        };
        match connected.map_err(ReadyError::Connect)? {
            true => Ok(Readiness::Ready),
            false => Ok(Readiness::Connecting),
        }
    }

    /// The transport's completed handshake, if it has one (TLS).
    pub(super) fn handshake(&self) -> Option<Handshake> {
        match self {
            Link::Tls(s) => s.handshake_done(),
            Link::Tcp(_) | Link::Unix(_) => None,
        }
    }

    /// Connected, with the transport's handshake still in progress.
    pub(super) fn is_handshaking(&self) -> bool {
        matches!(self, Link::Tls(s) if s.is_handshaking())
    }

    pub(super) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Link::Tcp(s) => s.read(buf),
            Link::Unix(s) => s.read(buf),
            Link::Tls(s) => s.read(buf),
        }
    }

    /// After a short read: the end of the stream (or an error) is already
    /// known, so the next read tells it without a new readiness event (TLS).
    pub(super) fn read_pending(&self) -> bool {
        matches!(self, Link::Tls(s) if s.read_pending())
    }

    pub(super) fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Link::Tcp(s) => s.write(buf),
            Link::Unix(s) => s.write(buf),
            Link::Tls(s) => s.write(buf),
        }
    }

    /// Sends what an earlier write or half-close left queued (TLS records,
    /// then the FIN); nothing to do for TCP and Unix.
    pub(super) fn flush(&mut self) -> io::Result<()> {
        match self {
            Link::Tls(s) => s.flush(),
            Link::Tcp(_) | Link::Unix(_) => Ok(()),
        }
    }

    /// Our side is finished (the peer reads EOF once it has read everything).
    pub(super) fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Link::Tcp(s) => s.shutdown(Shutdown::Write),
            Link::Unix(s) => s.shutdown(Shutdown::Write),
            Link::Tls(s) => s.shutdown_write(),
        }
    }
}
