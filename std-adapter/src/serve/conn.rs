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

    /// Whether output of ours is still queued: TLS records rustls holds,
    /// or its close_notify and FIN not yet sent (a kernel socket delivers
    /// what it holds after close).
    pub(crate) fn undelivered(&self) -> bool {
        matches!(self, Stream::Tls(s) if s.undelivered())
    }

    /// How to release a connection whose linger the pump gave up
    /// ([`Teardown::Abandon`]): what the socket takes now of ours is handed
    /// to it, without waiting (a linger cut short never flushed); then a
    /// FIN, unless output of ours is still queued
    /// ([`Stream::undelivered`]): then RST, so that the peer does not take
    /// the echo cut short for a whole one.
    ///
    /// [`Teardown::Abandon`]: ricochet_core::Teardown::Abandon
    pub(crate) fn release_abandoned(&mut self) {
        if let Stream::Tls(s) = self {
            s.flush();
        }
        if self.undelivered() {
            self.set_reset_on_close();
        }
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

    /// TLS: a drive begins (see [`TlsStream::begin_drive`]).
    pub(crate) fn begin_drive(&mut self) {
        if let Stream::Tls(s) = self {
            s.begin_drive();
        }
    }

    /// TLS: whether the last drive left input unread for its share of
    /// records (see [`TlsStream::take_throttled`]). Once.
    pub(crate) fn take_throttled(&mut self) -> bool {
        match self {
            Stream::Tls(s) => s.take_throttled(),
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

    fn undelivered(&self) -> bool {
        self.stream.undelivered()
    }
}

#[cfg(test)]
mod tests;
