//! One stream connection (TCP or Unix) driving a core [`Session`].
//!
//! Reads go straight into [`Session::receive_buffer`] and writes straight
//! from [`Session::transmit_buffer`]: no copy, no scratch buffer. The event
//! loop is edge-triggered, so the connection remembers whether its socket may
//! still be readable or writable and keeps going until the kernel says
//! `WouldBlock`, with two shortcuts that save a system call per wakeup:
//! a read that returns less than asked means the receive queue is empty (a
//! new arrival raises a new edge), unless the event also reported the peer's
//! FIN; a write that takes less than offered means the send buffer is full.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};

use mio::net::{TcpStream, UnixStream};
use ricochet_core::{AbortReason, CloseReason, Event, Instant, Session, State};

use super::stats::Counters;

/// The socket of a stream connection.
#[derive(Debug)]
pub(crate) enum Stream {
    /// A TCP connection.
    Tcp(TcpStream),
    /// A Unix stream connection.
    Unix(UnixStream),
}

impl Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
        }
    }

    /// Writes `buf`. With `more`, a TCP socket holds a partial segment back
    /// (`MSG_MORE`) because the caller is about to write again; the caller
    /// must [`Stream::push`] if it then does not.
    fn write(&mut self, buf: &[u8], more: bool) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => {
                let flags = if more {
                    libc::MSG_MORE | libc::MSG_NOSIGNAL
                } else {
                    libc::MSG_NOSIGNAL
                };
                socket2::SockRef::from(&*s).send_with_flags(buf, flags)
            }
            Stream::Unix(s) => s.write(buf),
        }
    }

    /// Sends what `MSG_MORE` held back (setting `TCP_NODELAY` pushes pending segments).
    fn push(&self) {
        if let Stream::Tcp(s) = self {
            let _ = s.set_nodelay(true);
        }
    }

    /// Sends FIN after whatever is queued in the kernel.
    pub(crate) fn shutdown_write(&self) {
        // The peer may already be gone; the socket is released right after.
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Write),
            Stream::Unix(s) => s.shutdown(Shutdown::Write),
        };
    }

    /// Makes the coming close send RST (TCP: `SO_LINGER` 0) instead of FIN.
    pub(crate) fn set_reset_on_close(&self) {
        if let Stream::Tcp(s) = self {
            let _ = socket2::SockRef::from(s).set_linger(Some(std::time::Duration::ZERO));
        }
    }

    /// The event source to register with mio.
    pub(crate) fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            Stream::Tcp(s) => s,
            Stream::Unix(s) => s,
        }
    }
}

/// How a connection ends, decided by its session's final state.
///
/// A graceful close sends FIN. If the peer had already finished
/// ([`CloseReason::PeerFinished`]) the socket is released at once; otherwise
/// the peer may still be sending, and closing a socket with unread input
/// makes the kernel send RST, which can destroy echo still in flight. So the
/// worker lingers: it reads and discards until the peer's FIN, bounded in
/// time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// Closed gracefully: FIN.
    Closed(CloseReason),
    /// Aborted: RST, release now.
    Reset(AbortReason),
}

/// What a call to [`Conn::drive`] left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Waiting for readiness or a timeout.
    Idle,
    /// The fairness budget ran out with work left: run again next turn.
    More,
    /// The session is over; release the socket this way.
    Done(Fate),
}

/// What [`Conn::discard_input`] left behind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Discard {
    /// Nothing more to read now.
    Idle,
    /// Budget spent, input left.
    More,
    /// The peer finished (EOF) or the socket failed: release it.
    Finished,
}

/// Who is on the other end (for logs).
#[derive(Clone, Copy, Debug)]
pub(crate) enum Peer {
    /// A TCP peer.
    Tcp(SocketAddr),
    /// A Unix peer (usually unnamed).
    Unix,
}

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Peer::Tcp(a) => write!(f, "{a}"),
            Peer::Unix => f.write_str("unix"),
        }
    }
}

/// A stream connection and its session.
#[derive(Debug)]
pub(crate) struct Conn<const N: usize> {
    pub(crate) stream: Stream,
    pub(crate) session: Box<Session<N>>,
    pub(crate) peer: Peer,
    /// Distinguishes this connection from earlier ones in the same slab slot.
    pub(crate) generation: u32,
    /// Earliest deadline this connection has in the timer heap (`Instant::MAX`: none).
    pub(crate) scheduled: Instant,
    /// The socket may hold unread input (no `WouldBlock` or short read since the last edge).
    pub(crate) readable: bool,
    /// The socket may accept output.
    pub(crate) writable: bool,
    /// The last event reported the peer's FIN (or an error): read until 0/error.
    pub(crate) read_closed: bool,
    /// In the worker's run queue.
    pub(crate) queued: bool,
    /// Lingering after a graceful close (see [`Fate::Linger`]) until this instant.
    pub(crate) linger_until: Option<Instant>,
    /// Bytes this connection holds in its session (mirrors the `bytes_buffered` gauge).
    pub(crate) buffered: usize,
}

impl<const N: usize> Conn<N> {
    /// A new connection with everything to discover: readiness is assumed, so
    /// the first drive reads whatever already arrived.
    pub(crate) fn new(
        stream: Stream,
        session: Box<Session<N>>,
        peer: Peer,
        generation: u32,
    ) -> Self {
        Conn {
            stream,
            session,
            peer,
            generation,
            scheduled: Instant::MAX,
            readable: true,
            writable: true,
            read_closed: false,
            queued: false,
            linger_until: None,
            buffered: 0,
        }
    }

    /// The deadline the connection needs next.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        match self.linger_until {
            Some(t) => Some(t),
            None => self.session.poll_timeout(),
        }
    }

    /// Moves bytes between socket and session until nothing moves, the
    /// budget (bytes read this turn) is spent, or the session ends.
    pub(crate) fn drive(&mut self, now: Instant, budget: usize, counters: &mut Counters) -> Step {
        let mut budget = budget;
        // Streaming: a read that filled its buffer means more input is
        // waiting, so the echo of this chunk is written with MSG_MORE and
        // the kernel sends a few large segments instead of one per 4 KiB
        // chunk (a third less CPU per GB on loopback). Ping-pong traffic
        // (short reads) is written without it, and anything held back is
        // pushed before returning.
        let mut more_input = false;
        let mut held_back = false;
        loop {
            let mut progress = false;
            if self.readable && budget > 0 {
                let buf = self.session.receive_buffer();
                if !buf.is_empty() {
                    let want = buf.len().min(budget);
                    match self.stream.read(&mut buf[..want]) {
                        Ok(0) => {
                            self.readable = false;
                            self.session.handle_peer_fin(now);
                        }
                        Ok(n) => {
                            if self.session.commit_received(now, n).is_err() {
                                // Unreachable: n <= want <= offered. Fail this connection only.
                                self.session.abort(now);
                            }
                            counters.bytes_in += n as u64;
                            budget -= n;
                            more_input = n == want;
                            if n < want && !self.read_closed {
                                self.readable = false;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.readable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            self.readable = false;
                            self.session.handle_peer_reset(now);
                        }
                    }
                    progress = true;
                }
            }
            if self.writable {
                let out = self.session.transmit_buffer();
                if !out.is_empty() {
                    let offered = out.len();
                    let more = more_input && self.readable && budget > 0;
                    match self.stream.write(out, more) {
                        Ok(n) if n > 0 => {
                            held_back = more;
                            if self.session.commit_sent(now, n).is_err() {
                                self.session.abort(now);
                            }
                            counters.bytes_out += n as u64;
                            if n < offered {
                                self.writable = false;
                            }
                        }
                        Ok(_) => self.writable = false,
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => self.writable = false,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(_) => {
                            self.writable = false;
                            self.session.handle_peer_reset(now);
                        }
                    }
                    progress = true;
                }
            }
            if !progress || self.session.is_terminal() {
                break;
            }
        }
        if held_back {
            self.stream.push();
        }
        self.update_buffered(counters);
        let mut closed = None;
        while let Some(event) = self.session.poll_event() {
            match event {
                Event::PeerFinished => tracing::trace!(peer = %self.peer, "peer finished sending"),
                Event::Closed(reason) => closed = Some(reason),
                _ => {}
            }
        }
        match self.session.state() {
            State::Closed => Step::Done(Fate::Closed(closed.unwrap_or(CloseReason::Local))),
            State::Aborted(reason) => Step::Done(Fate::Reset(reason)),
            _ => {
                let more_read = self.readable && self.session.wants_read();
                let more_write = self.writable && self.session.wants_write();
                if budget == 0 && (more_read || more_write) {
                    Step::More
                } else {
                    Step::Idle
                }
            }
        }
    }

    /// Reads and discards input while lingering (see [`Fate`]), up to
    /// `budget` bytes.
    pub(crate) fn discard_input(&mut self, scratch: &mut [u8], budget: usize) -> Discard {
        let mut read = 0;
        while read < budget {
            match self.stream.read(scratch) {
                Ok(0) => return Discard::Finished,
                Ok(n) => read += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.readable = false;
                    return Discard::Idle;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return Discard::Finished,
            }
        }
        Discard::More
    }

    /// Brings the `bytes_buffered` gauge in line with the session.
    pub(crate) fn update_buffered(&mut self, counters: &mut Counters) {
        let now = self.session.buffered();
        if now != self.buffered {
            counters.bytes_buffered = counters
                .bytes_buffered
                .wrapping_add(now as u64)
                .wrapping_sub(self.buffered as u64);
            self.buffered = now;
        }
    }
}
