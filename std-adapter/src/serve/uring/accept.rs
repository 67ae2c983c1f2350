//! The listeners of an io_uring worker: multishot accepts, the pause
//! when descriptors run out, admitting (or refusing) a connection, and
//! stopping at shutdown.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::opcode;
use io_uring::types::Fd;
use ricochet_core::{Duration, Instant};

use super::super::StdListener;
use super::super::conn::Peer;
use super::super::conns::Driver;
use super::super::error::Endpoint;
use super::super::listener;
use super::super::stats::{Held, StreamKind};
use super::super::throttle::Throttle;
use super::conn::{Conn, ConnIo, Socket};
use super::fixed;
use super::ring::{Op, user_data};
use super::worker::Worker;

/// First pause of a listener after running out of file descriptors; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause of a listener after running out of file descriptors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A listening socket on the ring.
#[derive(Debug)]
pub(super) struct Listener {
    pub(super) socket: Option<StdListener>,
    pub(super) endpoint: Endpoint,
    /// A multishot accept is in flight.
    pub(super) armed: bool,
    /// Not accepting until then (out of descriptors).
    pub(super) paused_until: Option<Instant>,
    pub(super) backoff: Duration,
    pub(super) warnings: Throttle,
}

impl Listener {
    /// A listener that accepts from the start.
    pub(super) fn new(endpoint: Endpoint, socket: StdListener) -> Self {
        Listener {
            socket: Some(socket),
            endpoint,
            armed: false,
            paused_until: None,
            backoff: MIN_BACKOFF,
            warnings: Throttle::new(Duration::from_secs(10)),
        }
    }

    pub(super) fn fd(&self) -> Option<i32> {
        self.socket.as_ref().map(|s| match s {
            StdListener::Tcp(l) | StdListener::Tls(l, _) => l.as_raw_fd(),
            StdListener::Unix(l) => l.as_raw_fd(),
        })
    }

    pub(super) fn kind(&self) -> StreamKind {
        match self.socket {
            Some(StdListener::Unix(_)) => StreamKind::Unix,
            _ => StreamKind::Tcp,
        }
    }
}

impl Worker<'_> {
    pub(super) fn arm_accept(&mut self, i: usize) {
        let Some(l) = self.listeners.get_mut(i) else {
            return;
        };
        let Some(fd) = l.fd() else {
            return;
        };
        if l.armed || l.paused_until.is_some() || self.conns.is_draining() {
            return;
        }
        l.armed = true;
        let sqe = opcode::AcceptMulti::new(Fd(fd))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(user_data(Op::Accept, i as u32, 0));
        self.push(&sqe);
    }

    pub(super) fn on_accept(&mut self, i: usize, res: i32, last: bool, now: Instant) {
        if last && let Some(l) = self.listeners.get_mut(i) {
            l.armed = false;
        }
        if res >= 0 {
            #[allow(unsafe_code)]
            // SAFETY: the kernel just created this descriptor for us.
            let fd = unsafe { OwnedFd::from_raw_fd(res) };
            if let Some(l) = self.listeners.get_mut(i) {
                // Accepting works again: the next pause starts short.
                l.backoff = MIN_BACKOFF;
            }
            let kind = self
                .listeners
                .get(i)
                .map_or(StreamKind::Tcp, Listener::kind);
            self.admit(fd, kind, now);
        } else if res != -libc::ECANCELED {
            let errno = -res;
            if listener::accept_error_pauses(Some(errno)) {
                self.pause_listener(i, now, errno);
            }
        }
        if last && self.conns.is_draining() {
            // Its accept ended (cancelled at shutdown, or failed just
            // before the cancel came): nobody accepts here any more.
            if let Some(l) = self.listeners.get_mut(i) {
                l.socket = None;
            }
        } else if last {
            self.arm_accept(i);
        }
    }

    /// Out of descriptors, or memory, or anything else that would fail
    /// again at once (`listener::accept_error_pauses`): stop accepting for
    /// a while, doubling the pause up to a second.
    pub(super) fn pause_listener(&mut self, i: usize, now: Instant, errno: i32) {
        let exhausted = matches!(errno, libc::EMFILE | libc::ENFILE);
        if exhausted {
            self.counters.accept_fd_exhausted += 1;
        } else {
            self.counters.accept_errors += 1;
        }
        let Some(l) = self.listeners.get_mut(i) else {
            return;
        };
        let pause = l.backoff;
        l.backoff = Duration::from_micros((pause.as_micros() * 2).min(MAX_BACKOFF.as_micros()));
        l.paused_until = Some(now + pause);
        if l.armed {
            let sqe = opcode::AsyncCancel::new(user_data(Op::Accept, i as u32, 0))
                .build()
                .user_data(user_data(Op::Cancel, 0, 0));
            self.push(&sqe);
        }
        let l = &mut self.listeners[i];
        if let Some(suppressed) = l.warnings.admit(now) {
            let hint = if exhausted {
                "out of file descriptors (raise `ulimit -n` or lower --max-connections)"
            } else {
                "accept failed"
            };
            tracing::warn!(
                endpoint = %l.endpoint,
                error = %io::Error::from_raw_os_error(errno),
                pause_ms = pause.as_millis(),
                suppressed,
                "{hint}; pausing accepts"
            );
        }
    }

    pub(super) fn admit(&mut self, fd: OwnedFd, kind: StreamKind, now: Instant) {
        let (socket, peer) = match kind {
            // TLS listeners are never given to io_uring workers (`Server::spawn`).
            StreamKind::Tcp | StreamKind::Tls => {
                let s = std::net::TcpStream::from(fd);
                // Echo is request/response-like: never hold a small echo back (Nagle).
                let _ = s.set_nodelay(true);
                // (Unknown if the peer is already gone: it was logged as
                // 0.0.0.0:0, an address no client has.)
                let peer = Peer::of_tcp(&s);
                (Socket::Tcp(s), peer)
            }
            StreamKind::Unix => (
                Socket::Unix(std::os::unix::net::UnixStream::from(fd)),
                Peer::Unix,
            ),
        };
        if !self.conns.reserve(kind, &peer, now, &mut self.counters) {
            return;
        }
        // Its slot is the key it is about to get (as the epoll worker's token).
        let fixed = fixed::fill(
            &self.submitter,
            self.fixed_slots,
            self.conns.vacant_key(),
            socket.raw_fd(),
        );
        let make = |pump| Conn {
            io: ConnIo::new(socket, fixed),
            pump,
            kind,
            peer,
            ready: false,
            dirty: false,
            releasing: None,
            gauged: Held::default(),
        };
        let key = self.conns.insert(kind, peer, now, &mut self.counters, make);
        debug_assert!(fixed.is_none_or(|slot| slot as usize == key));
        self.arm_recv(key);
        self.opened(key, now);
    }

    /// Stops accepting (cancels each listener's accept, or closes it if
    /// none runs) and receiving datagrams.
    pub(super) fn stop_listeners(&mut self) {
        for i in 0..self.listeners.len() {
            let l = &mut self.listeners[i];
            if l.armed {
                let sqe = opcode::AsyncCancel::new(user_data(Op::Accept, i as u32, 0))
                    .build()
                    .user_data(user_data(Op::Cancel, 0, 0));
                self.push(&sqe);
            } else {
                l.socket = None;
            }
        }
        for i in 0..self.udp.len() {
            if let Some(sqe) = self.udp[i].stop() {
                self.push(&sqe);
            }
        }
    }
}

#[cfg(test)]
mod tests;
