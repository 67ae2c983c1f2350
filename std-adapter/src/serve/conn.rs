//! One stream connection (TCP, Unix or TLS): its socket as a core
//! [`Transport`], and the core [`Pump`] that drives its session.
//!
//! Everything the session decides, and the loop that applies it (reads
//! straight into the session's buffer, writes straight from it, FIN,
//! reset, linger), is the core's. This file only maps socket calls to the
//! transport's outcomes: `WouldBlock` is "wait for readiness", `EINTR` is
//! retried, `ETIMEDOUT` is the transport giving up, anything else fatal is
//! a reset.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::{TcpStream, UnixStream};
use ricochet_core::pump::{Failure, ReadOutcome, Transport, WriteOutcome};
use ricochet_core::{Instant, Pump};

use super::conns::Tracked;
use super::stats::{Counters, StreamKind};
use super::storage::SessionStorage;
use super::tls::{Outcome, TlsStream};

/// The socket of a stream connection.
#[derive(Debug)]
pub(crate) enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix stream connection.
    Unix(UnixStream),
    /// A TLS connection (rustls over TCP; see `tls/stream.rs`).
    Tls(Box<TlsStream>),
}

fn failure(e: &io::Error) -> Failure {
    if e.kind() == io::ErrorKind::TimedOut {
        Failure::TimedOut
    } else {
        Failure::Reset
    }
}

impl Transport for Stream {
    /// TLS queues records of its own (the kernel sockets report 0 queued,
    /// so their closes still count at once).
    fn queues_output(&self) -> bool {
        true
    }

    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        loop {
            let r = match self {
                Stream::Tcp(s) => s.read(buf),
                Stream::Unix(s) => s.read(buf),
                Stream::Tls(s) => return s.read(buf),
            };
            return match r {
                Ok(0) => ReadOutcome::Eof,
                Ok(n) => ReadOutcome::Data(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => ReadOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => ReadOutcome::Failed(failure(&e)),
            };
        }
    }

    fn write(&mut self, buf: &[u8], more: bool) -> WriteOutcome {
        loop {
            let r = match self {
                Stream::Tcp(s) => send(s, buf, more),
                Stream::Unix(s) => s.write(buf),
                Stream::Tls(s) => return s.write(buf, more),
            };
            return match r {
                Ok(0) => WriteOutcome::WouldBlock,
                Ok(n) => WriteOutcome::Sent(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => WriteOutcome::WouldBlock,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => WriteOutcome::Failed(failure(&e)),
            };
        }
    }

    /// Sends what `MSG_MORE` held back (setting `TCP_NODELAY` pushes pending segments).
    /// TLS: pushes queued records (and a pending FIN).
    fn flush(&mut self) {
        match self {
            Stream::Tcp(s) => {
                let _ = s.set_nodelay(true);
            }
            Stream::Unix(_) => {}
            Stream::Tls(s) => s.flush(),
        }
    }

    /// FIN after whatever is queued in the kernel (TLS: `close_notify` first).
    fn shutdown_write(&mut self) {
        // The peer may already be gone; the socket is released soon after.
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
            Stream::Tls(s) => {
                s.shutdown_write();
                Ok(())
            }
        };
    }

    /// TLS: the end of the stream is known after a short read.
    fn read_pending(&self) -> bool {
        match self {
            Stream::Tls(s) => s.read_pending(),
            Stream::Tcp(_) | Stream::Unix(_) => false,
        }
    }

    /// TLS: records or the FIN still queued; 0 for the kernel's sockets.
    fn unacknowledged(&self) -> usize {
        match self {
            Stream::Tls(s) => s.unacknowledged(),
            Stream::Tcp(_) | Stream::Unix(_) => 0,
        }
    }

    /// What the reset after an abort would discard: TCP's unacknowledged
    /// bytes (TLS: its queued records too); a Unix socket's echo is in its
    /// peer's queue already.
    fn unsent_before_reset(&self) -> usize {
        match self {
            Stream::Tcp(s) => super::listener::tcp_unacknowledged(s),
            Stream::Tls(s) => {
                s.unacknowledged() + super::listener::tcp_unacknowledged(s.socket_ref())
            }
            Stream::Unix(_) => 0,
        }
    }

    /// TLS: pushing queued records failed; the kernel's sockets report
    /// their failures on the write itself.
    fn output_failed(&self) -> bool {
        match self {
            Stream::Tls(s) => s.output_failed(),
            Stream::Tcp(_) | Stream::Unix(_) => false,
        }
    }
}

/// Writes `buf`; with `more`, Linux holds a partial segment back
/// (`MSG_MORE`) because another write follows. `MSG_NOSIGNAL`: a peer gone
/// away is an error, never a `SIGPIPE`.
#[cfg(any(target_os = "linux", target_os = "android"))]
fn send(s: &TcpStream, buf: &[u8], more: bool) -> io::Result<usize> {
    let flags = if more {
        libc::MSG_MORE | libc::MSG_NOSIGNAL
    } else {
        libc::MSG_NOSIGNAL
    };
    socket2::SockRef::from(s).send_with_flags(buf, flags)
}

/// Writes `buf` (no `MSG_MORE` on this system; `SIGPIPE` is ignored by the
/// Rust runtime, and set per socket with `SO_NOSIGPIPE` where it exists).
#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn send(mut s: &TcpStream, buf: &[u8], _more: bool) -> io::Result<usize> {
    s.write(buf)
}

impl Stream {
    /// Makes the coming close send RST (TCP: `SO_LINGER` 0) instead of FIN.
    pub(crate) fn set_reset_on_close(&self) {
        let tcp = match self {
            Stream::Tcp(s) => s,
            Stream::Tls(s) => s.socket_ref(),
            Stream::Unix(_) => return,
        };
        let _ = socket2::SockRef::from(tcp).set_linger(Some(std::time::Duration::ZERO));
    }

    /// How to release a connection the pump ended with [`Teardown::Reset`]:
    /// RST, except for a refused TLS connection, which gets its alert and a
    /// FIN (see [`TlsStream::refuse`]).
    ///
    /// [`Teardown::Reset`]: ricochet_core::Teardown::Reset
    pub(crate) fn release_reset(&mut self) {
        if let Stream::Tls(s) = self
            && s.refuse()
        {
            return;
        }
        self.set_reset_on_close();
    }

    /// TLS: when the handshake must be complete (the worker's timer).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self {
            Stream::Tls(s) => s.deadline(),
            Stream::Tcp(_) | Stream::Unix(_) => None,
        }
    }

    /// TLS: fails a handshake whose deadline passed; true if it just did.
    pub(crate) fn expire(&mut self, now: Instant) -> bool {
        match self {
            Stream::Tls(s) => s.expire(now),
            Stream::Tcp(_) | Stream::Unix(_) => false,
        }
    }

    /// TLS: the handshake's outcome, once.
    pub(crate) fn take_outcome(&mut self) -> Option<Outcome> {
        match self {
            Stream::Tls(s) => s.take_outcome(),
            Stream::Tcp(_) | Stream::Unix(_) => None,
        }
    }

    /// TLS: whether the connection was refused (its handshake failed, or a fatal alert).
    pub(crate) fn is_refused_tls(&self) -> bool {
        matches!(self, Stream::Tls(s) if s.is_refused())
    }

    /// TLS: what rustls said of a failed handshake, for logs.
    pub(crate) fn tls_failure_detail(&self) -> Option<&str> {
        match self {
            Stream::Tls(s) => s.failure_detail(),
            Stream::Tcp(_) | Stream::Unix(_) => None,
        }
    }

    /// TLS: keeps the `buffered` gauge counting what rustls holds (see
    /// [`TlsStream::sync_gauge`]); the kernel's sockets hold nothing of ours.
    fn sync_gauge(&mut self, released: bool, counters: &mut Counters) {
        if let Stream::Tls(s) = self {
            s.sync_gauge(released, counters.stream(StreamKind::Tls));
        }
    }

    /// TLS: the negotiated version and suite, for logs.
    pub(crate) fn describe_tls(&self) -> Option<String> {
        match self {
            Stream::Tls(s) => Some(s.describe()),
            Stream::Tcp(_) | Stream::Unix(_) => None,
        }
    }

    /// The event source to register with mio.
    pub(crate) fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
            Stream::Tls(s) => s.socket(),
        }
    }

    /// Which counters the connection counts into.
    pub(crate) fn kind(&self) -> StreamKind {
        match self {
            Stream::Tcp(_) => StreamKind::Tcp,
            Stream::Unix(_) => StreamKind::Unix,
            Stream::Tls(_) => StreamKind::Tls,
        }
    }
}

/// Who is on the other end (for logs).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peer {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix peer (usually unnamed).
    Unix,
    /// A TCP peer gone before its address could be read (io_uring's
    /// multishot accept gives none: it is asked after, and a connection
    /// reset by then has none). Linux only, as io_uring is.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    Gone,
}

impl Peer {
    /// The peer of an accepted TCP socket, asked after the accept (as
    /// io_uring's multishot accept must): [`Peer::Gone`] if it has none.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn of_tcp(s: &std::net::TcpStream) -> Peer {
        s.peer_addr().map_or(Peer::Gone, Peer::Tcp)
    }
}

/// As the log shows it ([`shown`](super::events::shown)).
impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{}", super::Scoped(super::events::shown(*a))),
            Peer::Unix => f.write_str("unix"),
            Peer::Gone => f.write_str("unknown (gone before its address was read)"),
        }
    }
}

/// A stream connection of the epoll worker: its socket and the pump
/// driving its session.
#[derive(Debug)]
pub(crate) struct Conn {
    pub(crate) stream: Stream,
    pub(crate) pump: Pump<SessionStorage>,
    pub(crate) peer: Peer,
}

impl Conn {
    /// Keeps the counters' `buffered` gauge counting what the transport
    /// holds beside the session's buffer (TLS: rustls's records and
    /// decrypted input); nothing once the pump released it, as the pump
    /// counts nothing then. Called after each drive, and after the worker
    /// stopped every pump at its exit.
    pub(crate) fn sync_gauge(&mut self, counters: &mut Counters) {
        self.stream.sync_gauge(self.pump.is_released(), counters);
    }
}

impl Tracked for Conn {
    fn pump(&mut self) -> &mut Pump<SessionStorage> {
        &mut self.pump
    }

    /// The session's deadline, or the TLS handshake's if earlier.
    fn deadline(&self) -> Option<Instant> {
        ricochet_core::time::earliest(self.pump.poll_timeout(), self.stream.deadline())
    }

    fn set_reset_on_close(&self) {
        self.stream.set_reset_on_close();
    }

    fn kind(&self) -> StreamKind {
        self.stream.kind()
    }
}

#[cfg(test)]
mod tests {
    use super::{Peer, Stream, failure};
    use crate::serve::stats::StreamKind;
    use ricochet_core::pump::{Failure, ReadOutcome, Transport, WriteOutcome};
    use std::io::{ErrorKind, Read, Write};
    use std::time::Duration;

    /// Bounds every blocking step of these tests.
    const BOUND: Duration = Duration::from_secs(10);

    /// Our end (non-blocking, as the worker holds it) of a loopback TCP
    /// connection, and the peer's (blocking, reads bounded).
    fn tcp_pair() -> (Stream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (ours, _) = l.accept().unwrap();
        ours.set_nonblocking(true).unwrap();
        peer.set_read_timeout(Some(BOUND)).unwrap();
        (Stream::Tcp(mio::net::TcpStream::from_std(ours)), peer)
    }

    /// The same over a Unix socket pair.
    fn unix_pair() -> (Stream, std::os::unix::net::UnixStream) {
        let (ours, peer) = std::os::unix::net::UnixStream::pair().unwrap();
        ours.set_nonblocking(true).unwrap();
        peer.set_read_timeout(Some(BOUND)).unwrap();
        (Stream::Unix(mio::net::UnixStream::from_std(ours)), peer)
    }

    /// Waits (bounded) until `stream` is readable: data, FIN or an error came.
    fn wait_readable(stream: &mut Stream) {
        let mut poll = mio::Poll::new().unwrap();
        poll.registry()
            .register(stream.source(), mio::Token(0), mio::Interest::READABLE)
            .unwrap();
        let mut events = mio::Events::with_capacity(4);
        poll.poll(&mut events, Some(BOUND)).unwrap();
        assert!(!events.is_empty(), "nothing arrived in {BOUND:?}");
        poll.registry().deregister(stream.source()).unwrap();
    }

    /// Reads through the transport until `n` bytes came (bounded).
    fn read_exactly(stream: &mut Stream, n: usize) -> Vec<u8> {
        let mut got = Vec::new();
        while got.len() < n {
            wait_readable(stream);
            let mut buf = [0u8; 64];
            match stream.read(&mut buf) {
                ReadOutcome::Data(k) => got.extend_from_slice(&buf[..k]),
                ReadOutcome::WouldBlock => {}
                other => panic!("after {got:?}: {other:?}"),
            }
        }
        got
    }

    /// Writes through the transport until it would block (the peer reads
    /// nothing); returns how many bytes it took.
    fn fill(stream: &mut Stream) -> usize {
        let chunk = [7u8; 65536];
        let mut sent = 0;
        loop {
            match stream.write(&chunk, false) {
                WriteOutcome::Sent(n) => sent += n,
                WriteOutcome::WouldBlock => return sent,
                WriteOutcome::Failed(f) => panic!("after {sent} bytes: {f:?}"),
            }
            assert!(sent < 1 << 30, "the socket took 1 GiB without blocking");
        }
    }

    #[test]
    fn socket_error_timed_out_is_a_timeout_and_any_other_a_reset() {
        assert_eq!(failure(&ErrorKind::TimedOut.into()), Failure::TimedOut);
        for kind in [
            ErrorKind::ConnectionReset,
            ErrorKind::BrokenPipe,
            ErrorKind::ConnectionAborted,
            ErrorKind::Other,
        ] {
            assert_eq!(failure(&kind.into()), Failure::Reset, "{kind:?}");
        }
    }

    #[test]
    fn tcp_bytes_then_fin_from_the_peer_are_read_in_order_then_eof() {
        let (mut ours, mut peer) = tcp_pair();
        let mut buf = [0u8; 64];
        assert_eq!(ours.read(&mut buf), ReadOutcome::WouldBlock);
        peer.write_all(b"hello").unwrap();
        assert_eq!(read_exactly(&mut ours, 5), b"hello");
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        wait_readable(&mut ours);
        assert_eq!(ours.read(&mut buf), ReadOutcome::Eof);
    }

    #[test]
    fn unix_bytes_then_fin_from_the_peer_are_read_in_order_then_eof() {
        let (mut ours, mut peer) = unix_pair();
        let mut buf = [0u8; 64];
        assert_eq!(ours.read(&mut buf), ReadOutcome::WouldBlock);
        peer.write_all(b"hello").unwrap();
        assert_eq!(read_exactly(&mut ours, 5), b"hello");
        peer.shutdown(std::net::Shutdown::Write).unwrap();
        wait_readable(&mut ours);
        assert_eq!(ours.read(&mut buf), ReadOutcome::Eof);
    }

    #[test]
    fn tcp_peer_reset_fails_the_read_and_then_the_write_as_reset() {
        let (mut ours, peer) = tcp_pair();
        socket2::SockRef::from(&peer)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
        drop(peer);
        wait_readable(&mut ours);
        let mut buf = [0u8; 64];
        assert_eq!(ours.read(&mut buf), ReadOutcome::Failed(Failure::Reset));
        assert_eq!(
            ours.write(b"late", false),
            WriteOutcome::Failed(Failure::Reset)
        );
    }

    #[test]
    fn unix_peer_gone_fails_the_write_as_reset() {
        let (mut ours, peer) = unix_pair();
        drop(peer);
        assert_eq!(
            ours.write(b"late", false),
            WriteOutcome::Failed(Failure::Reset)
        );
    }

    #[test]
    fn tcp_writes_reach_the_peer_whole_and_in_order_then_the_fin() {
        let (mut ours, mut peer) = tcp_pair();
        for (part, more) in [(&b"one "[..], true), (b"two ", true), (b"three", false)] {
            assert_eq!(ours.write(part, more), WriteOutcome::Sent(part.len()));
        }
        ours.flush();
        ours.shutdown_write();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"one two three");
    }

    #[test]
    fn unix_writes_reach_the_peer_whole_and_in_order_then_the_fin() {
        let (mut ours, mut peer) = unix_pair();
        for part in [&b"one "[..], b"two ", b"three"] {
            assert_eq!(ours.write(part, true), WriteOutcome::Sent(part.len()));
        }
        ours.shutdown_write();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"one two three");
    }

    /// A write held back by `MSG_MORE` leaves only once the pump flushes:
    /// the flush turns `TCP_NODELAY` on, which pushes it.
    #[test]
    fn tcp_flush_after_a_held_back_write_pushes_it_with_nodelay() {
        let (mut ours, _peer) = tcp_pair();
        let Stream::Tcp(s) = &ours else {
            unreachable!()
        };
        assert!(!s.nodelay().unwrap());
        assert_eq!(ours.write(b"x", true), WriteOutcome::Sent(1));
        ours.flush();
        let Stream::Tcp(s) = &ours else {
            unreachable!()
        };
        assert!(s.nodelay().unwrap());
    }

    #[test]
    fn tcp_socket_full_would_block_and_what_a_reset_would_discard_is_counted() {
        let (mut ours, mut peer) = tcp_pair();
        let sent = fill(&mut ours);
        assert!(sent > 0);
        #[cfg(target_os = "linux")]
        {
            let unsent = ours.unsent_before_reset();
            assert!(unsent > 0 && unsent <= sent, "{unsent} of {sent}");
        }
        // The kernel delivers it after the socket is closed: nothing for
        // the pump to wait for.
        assert_eq!(ours.unacknowledged(), 0);
        assert!(!ours.output_failed());
        // What was taken reaches the peer, whole.
        ours.shutdown_write();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), sent);
    }

    #[test]
    fn unix_socket_full_would_block_and_nothing_is_left_for_a_reset_to_discard() {
        let (mut ours, mut peer) = unix_pair();
        let sent = fill(&mut ours);
        assert!(sent > 0);
        assert_eq!(ours.unsent_before_reset(), 0);
        assert_eq!(ours.unacknowledged(), 0);
        assert!(!ours.output_failed());
        ours.shutdown_write();
        let mut got = Vec::new();
        peer.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), sent);
    }

    #[test]
    fn tcp_released_after_a_reset_closes_with_rst_not_fin() {
        let releases: [fn(&mut Stream); 2] = [|s| s.set_reset_on_close(), |s| s.release_reset()];
        for release in releases {
            let (mut ours, mut peer) = tcp_pair();
            assert_eq!(ours.write(b"echo", false), WriteOutcome::Sent(4));
            release(&mut ours);
            drop(ours);
            let mut got = Vec::new();
            let e = peer.read_to_end(&mut got).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::ConnectionReset, "read {got:?}");
        }
    }

    #[test]
    fn kernel_sockets_hold_no_input_past_a_short_read_and_count_as_their_kind() {
        let (tcp, _tcp_peer) = tcp_pair();
        let (unix, _unix_peer) = unix_pair();
        assert!(!tcp.read_pending() && !unix.read_pending());
        assert_eq!(tcp.kind(), StreamKind::Tcp);
        assert_eq!(unix.kind(), StreamKind::Unix);
        assert_eq!(tcp.deadline(), None);
    }

    #[test]
    fn peer_of_a_dual_stack_socket_shows_an_ipv4_client_as_ipv4() {
        let mapped = Peer::Tcp("[::ffff:127.0.0.1]:39870".parse().unwrap());
        assert_eq!(mapped.to_string(), "127.0.0.1:39870");
        let v6 = Peer::Tcp("[::1]:7".parse().unwrap());
        assert_eq!(v6.to_string(), "[::1]:7");
    }

    /// A client that resets its connection before the server asks its
    /// address (io_uring asks after the accept) was logged as 0.0.0.0:0.
    #[test]
    fn peer_reset_before_its_address_is_read_shows_as_gone() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (s, _) = l.accept().unwrap();
        assert_eq!(Peer::of_tcp(&s), Peer::Tcp(c.local_addr().unwrap()));
        socket2::SockRef::from(&c)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(c);
        // The RST has arrived once a read says so (bounded, whatever comes).
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 1];
        let _ = std::io::Read::read(&mut &s, &mut buf);
        let gone = Peer::of_tcp(&s);
        assert_eq!(gone, Peer::Gone);
        assert_eq!(
            gone.to_string(),
            "unknown (gone before its address was read)"
        );
    }
}
