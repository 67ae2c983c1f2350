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
//! to ready. Over TLS 1.3 the server may still refuse a handshake done on
//! the probe's side (a client certificate it does not accept):
//! [`Link::handshake_accepted`] says when it can no longer, and the worker
//! counts the connection as opened (and the handshake as completed) only
//! then, or when the connection ends without that refusal.
//!
//! `read`/`write` move plaintext; `shutdown_write` sends the transport's
//! own close (TLS: `close_notify`) before the FIN. Over TLS a write may
//! leave records queued when the socket fills: [`Link::flush`] sends them
//! on the next writable edge.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use ricochet_core::Instant;

use super::Target;
use super::tls::{HandshakeError, TlsClient, TlsLink};
use crate::serve::Scoped;

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

/// The addresses `target` is dialed at, in turn (`None` for a Unix path).
fn addrs(target: &Target) -> Option<&[SocketAddr]> {
    match target {
        Target::Udp(a) => Some(a),
        _ => target.stream_addrs(),
    }
}

/// How many addresses `target` may be dialed at (TCP and TLS try each in turn).
pub(super) fn attempts(target: &Target) -> usize {
    addrs(target).map_or(1, <[SocketAddr]>::len)
}

/// Where attempt `attempt` of `target` goes, for messages.
pub(super) fn describe(target: &Target, attempt: usize) -> String {
    if let Target::Unix(path) = target {
        return path.display().to_string();
    }
    addrs(target)
        .and_then(|a| a.get(attempt))
        .map_or_else(|| target.to_string(), |a| Scoped(*a).to_string())
}

/// Attempt `attempt` of `target` and how it failed, for messages: the
/// address, the error, and for a loopback address of a family this host
/// does not run, which it is ([`missing_loopback`]).
pub(super) fn failed_at(target: &Target, attempt: usize, e: &io::Error) -> String {
    let addr = addrs(target).and_then(|a| a.get(attempt));
    let why = addr.map_or("", |a| missing_loopback(*a, e));
    format!("{}: {e}{why}", describe(target, attempt))
}

/// What a socket error at a loopback address means when that address is
/// missing here ("Network is unreachable", "Cannot assign requested
/// address"): an IPv6-only host or network namespace has no 127.0.0.1,
/// one with IPv6 disabled no `::1`; a server here listens on the other.
/// A kernel with no IPv6 at all refuses any IPv6 socket (`EAFNOSUPPORT`):
/// said too. Empty for any other address or error.
pub(super) fn missing_loopback(addr: SocketAddr, e: &io::Error) -> &'static str {
    if addr.is_ipv6() && e.raw_os_error() == Some(libc::EAFNOSUPPORT) {
        return " (this system has no IPv6 at all: a kernel booted with ipv6.disable=1, or \
                built without IPv6? Probe an IPv4 address: a server here listens on \
                127.0.0.1)";
    }
    if !matches!(
        e.raw_os_error(),
        Some(libc::ENETUNREACH | libc::EADDRNOTAVAIL)
    ) || !addr.ip().is_loopback()
    {
        return "";
    }
    if addr.is_ipv4() {
        " (no IPv4 loopback here: an IPv6-only host or network namespace? A server here \
         listens on IPv6 loopback, [::1])"
    } else {
        " (no IPv6 loopback here: IPv6 is disabled, net.ipv6.conf.lo.disable_ipv6 or \
         ipv6.disable=1 at boot? A server here listens on IPv4 loopback, 127.0.0.1)"
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
fn tcp(addrs: &[SocketAddr], attempt: usize) -> io::Result<TcpStream> {
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

    /// Whether the server has shown it accepted the transport's completed
    /// handshake: TCP and Unix have none; TLS 1.2 once complete; TLS 1.3
    /// once a record after it arrived intact, as a server that checks the
    /// client's certificate may still refuse until then (see `TlsLink`).
    pub(super) fn handshake_accepted(&self) -> bool {
        match self {
            Link::Tls(s) => s.handshake_accepted(),
            Link::Tcp(_) | Link::Unix(_) => true,
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant as StdInstant};

    use super::*;

    /// In a network namespace without one loopback family, connecting
    /// there fails with an OS error that does not say so: it is said.
    #[test]
    fn a_missing_loopback_family_is_named_with_the_other_to_use() {
        let unreachable = io::Error::from_raw_os_error(libc::ENETUNREACH);
        let unavailable = io::Error::from_raw_os_error(libc::EADDRNOTAVAIL);
        let v4: SocketAddr = "127.0.0.1:7".parse().unwrap();
        let v6: SocketAddr = "[::1]:7".parse().unwrap();
        assert!(missing_loopback(v4, &unreachable).contains("IPv6-only"));
        assert!(missing_loopback(v6, &unavailable).contains("disable_ipv6"));
        let target = Target::Tcp(vec![v6, v4].into());
        let said = failed_at(&target, 1, &unreachable);
        assert!(
            said.starts_with("127.0.0.1:7: Network is unreachable")
                && said.contains("listens on IPv6 loopback, [::1]"),
            "{said}"
        );
        // No IPv6 in the kernel at all: any IPv6 address, loopback or not.
        let no_v6 = io::Error::from_raw_os_error(libc::EAFNOSUPPORT);
        for a in ["[::1]:7", "[2001:db8::1]:7"] {
            let said = missing_loopback(a.parse().unwrap(), &no_v6);
            assert!(
                said.contains("no IPv6 at all") && said.contains("127.0.0.1"),
                "{a}: {said}"
            );
        }
        assert_eq!(missing_loopback(v4, &no_v6), "");
        // Another address, or another error: the OS error alone.
        let far: SocketAddr = "192.0.2.7:7".parse().unwrap();
        assert_eq!(missing_loopback(far, &unreachable), "");
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        assert_eq!(missing_loopback(v4, &refused), "");
    }
    use crate::probe::{TlsOptions, TlsTarget};

    const WAIT: Duration = Duration::from_secs(5);

    fn tls_target(addrs: Vec<SocketAddr>) -> Target {
        Target::Tls(TlsTarget {
            addrs,
            host: "localhost".to_owned(),
        })
    }

    #[test]
    fn tls_targets_are_dialed_at_each_address_in_turn() {
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "[::1]:2".parse().unwrap();
        let t = tls_target(vec![a, b]);
        assert_eq!(attempts(&t), 2);
        assert_eq!(describe(&t, 1), "[::1]:2");
        let unix = Target::Unix("/tmp/echo.sock".into());
        assert_eq!(
            (attempts(&unix), describe(&unix, 0).as_str()),
            (1, "/tmp/echo.sock")
        );
    }

    #[test]
    fn tls_link_handshakes_from_tcp_up_and_fails_when_the_server_closes() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = tls_target(vec![listener.local_addr().unwrap()]);
        let opts = TlsOptions {
            insecure: true,
            ..TlsOptions::default()
        };
        let clients = super::super::tls::clients(std::slice::from_ref(&target), &opts).unwrap();
        let Ok(Dialed::Link(mut link)) = dial(&target, 0, clients[0].as_ref()) else {
            panic!("dial");
        };
        // The server accepts and reads the ClientHello, but never answers.
        let (mut server, _) = listener.accept().unwrap();
        let start = StdInstant::now();
        let mut step = 0u64;
        let since = loop {
            step += 1;
            match link.poll_ready(Instant::from_micros(step)) {
                Ok(Readiness::Handshaking { since }) => break since,
                Ok(Readiness::Connecting) => {}
                other => panic!("expected a handshake in progress: {other:?}"),
            }
            assert!(start.elapsed() < WAIT, "TCP never came up");
            std::thread::yield_now();
        };
        assert!(link.is_handshaking() && link.handshake().is_none());
        // The handshake began at the call that saw TCP established, and a
        // later call keeps that start.
        assert_eq!(since, Instant::from_micros(step));
        assert!(matches!(
            link.poll_ready(Instant::from_micros(step + 100)),
            Ok(Readiness::Handshaking { since: s }) if s == since
        ));
        let mut hello = [0u8; 5];
        std::io::Read::read_exact(&mut server, &mut hello).unwrap();
        assert_eq!(hello[0], 22, "a TLS handshake record");
        // Read the rest of it, so the close is a FIN, not a reset.
        let mut rest = vec![0u8; usize::from(u16::from_be_bytes([hello[3], hello[4]]))];
        std::io::Read::read_exact(&mut server, &mut rest).unwrap();
        drop(server);
        let start = StdInstant::now();
        loop {
            match link.poll_ready(Instant::from_micros(step + 200)) {
                Err(ReadyError::Handshake(e)) => {
                    assert!(e.to_string().contains("is it a TLS server?"), "{e}");
                    break;
                }
                Ok(Readiness::Handshaking { .. }) => {}
                other => panic!("expected a failed handshake: {other:?}"),
            }
            assert!(start.elapsed() < WAIT, "the close was never seen");
            std::thread::yield_now();
        }
    }

    #[test]
    fn tcp_link_is_ready_without_a_handshake() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let target = Target::Tcp(vec![listener.local_addr().unwrap()].into());
        let Ok(Dialed::Link(mut link)) = dial(&target, 0, None) else {
            panic!("dial");
        };
        let start = StdInstant::now();
        while !matches!(link.poll_ready(Instant::ZERO), Ok(Readiness::Ready)) {
            assert!(start.elapsed() < WAIT, "TCP never came up");
            std::thread::yield_now();
        }
        assert!(!link.is_handshaking() && link.handshake().is_none());
    }

    /// A connect that has not completed (no peer yet) is in progress; any
    /// other failure to read the peer is the connect failing, never
    /// "still connecting" until the connect timeout.
    #[test]
    fn connect_status_with_a_peer_error_other_than_not_connected_is_a_failure() {
        let not_yet = || Err(io::ErrorKind::NotConnected.into());
        assert!(matches!(connect_status(Ok(None), Ok(())), Ok(true)));
        assert!(matches!(connect_status(Ok(None), not_yet()), Ok(false)));
        let reset = connect_status(Ok(None), Err(io::ErrorKind::ConnectionReset.into()));
        assert_eq!(
            reset.map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::ConnectionReset)
        );
        // The socket's pending error wins over a peer not yet known.
        let refused = io::Error::from_raw_os_error(libc::ECONNREFUSED);
        let failed = connect_status(Ok(Some(refused)), not_yet());
        assert_eq!(
            failed.map_err(|e| e.kind()).err(),
            Some(io::ErrorKind::ConnectionRefused)
        );
    }

    /// No socket at the path: the dial fails (the probe reports it at
    /// once), it is not a full backlog to retry until the connect timeout.
    #[test]
    fn unix_dial_to_a_missing_path_fails_as_not_found() {
        let dir = tempfile::tempdir().unwrap();
        let target = Target::Unix(dir.path().join("nobody.sock"));
        match dial(&target, 0, None) {
            Err(e) => assert_eq!(e.kind(), io::ErrorKind::NotFound, "{e}"),
            Ok(Dialed::BacklogFull) => panic!("a missing socket taken for a full backlog"),
            Ok(Dialed::Link(_)) => panic!("connected to nothing"),
        }
    }

    /// A Unix listener whose backlog is full refuses a non-blocking
    /// connect with EAGAIN (Linux): a full backlog to retry, not a failure.
    #[cfg(target_os = "linux")]
    #[test]
    fn unix_dial_to_a_full_backlog_is_backlog_full_not_a_failure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("full.sock");
        let full = socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None)
            .expect("socket");
        full.bind(&socket2::SockAddr::unix(&path).expect("path"))
            .expect("bind");
        full.listen(0).expect("listen");
        let target = Target::Unix(path);
        // The kernel queues a connection or so, never accepted; then refuses.
        let mut queued = Vec::new();
        loop {
            match dial(&target, 0, None) {
                Ok(Dialed::Link(link)) => queued.push(link),
                Ok(Dialed::BacklogFull) => break,
                Err(e) => panic!("a full backlog reported as a failure: {e}"),
            }
            assert!(queued.len() < 64, "the backlog never filled");
        }
        assert!(!queued.is_empty(), "full before any connection was queued");
    }
}
