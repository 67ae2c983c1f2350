//! One worker: an edge-triggered mio event loop owning its connections.
//!
//! A worker owns its listeners (its own `SO_REUSEPORT` socket per TCP
//! address, or a duplicate of the shared one), the UDP sockets assigned to
//! it, and every connection it accepted, in a slab keyed by mio token. Each
//! connection is registered once for read and write readiness, edge
//! triggered, and never re-registered: backpressure is not an interest
//! change but the session's empty receive buffer. Per turn the loop:
//!
//! 1. waits for readiness, for the earliest deadline (timer heap, paused
//!    listeners, grace period), or not at all if work was left over;
//! 2. serves the events: accepts, datagrams, connection I/O; a connection
//!    reads at most [`BUDGET`] bytes per turn and is queued for the next
//!    turn if it had more, so one busy peer cannot starve the others;
//! 3. serves the run queue, fires due timers, publishes its counters.

use std::collections::VecDeque;
use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration as StdDuration;

use mio::net::{TcpListener, UnixListener};
use mio::{Events, Interest, Poll, Token};
use ricochet_core::{AbortReason, CloseReason, Duration, Instant, Session, SessionConfig};
use slab::Slab;

use super::conn::{Conn, Discard, Fate, Peer, Step, Stream};
use super::error::Endpoint;
use super::stats::Counters;
use super::timer::{Entry, Timers};
use super::udp::UdpEndpoint;
use super::{Phase, Shared};

/// Bytes a connection may read per turn before yielding (fairness).
pub(crate) const BUDGET: usize = 64 * 1024;
/// Connections accepted per listener per turn before yielding.
const ACCEPT_BUDGET: usize = 128;
/// Timers fired per turn (a bound, in case a deadline keeps coming due).
const TIMER_BUDGET: usize = 4096;
/// How long a gracefully closed connection may keep sending before it is dropped.
const LINGER: Duration = Duration::from_secs(2);
/// First pause of a listener after running out of file descriptors; doubles up to [`MAX_BACKOFF`].
const MIN_BACKOFF: Duration = Duration::from_millis(100);
/// Longest pause of a listener after running out of file descriptors.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Minimum time between two warnings about running out of file descriptors.
const WARN_EVERY: Duration = Duration::from_secs(10);

const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = 1 << 62;
const UDP_BASE: usize = 1 << 61;

/// The listening socket of one endpoint, as a worker sees it.
#[derive(Debug)]
pub(crate) enum ListenSocket {
    /// TCP.
    Tcp(TcpListener),
    /// Unix stream.
    Unix(UnixListener),
}

impl ListenSocket {
    fn accept(&self) -> io::Result<(Stream, Peer)> {
        match self {
            ListenSocket::Tcp(l) => {
                let (s, peer) = l.accept()?;
                // Echo is request/response-like: never hold a small echo back (Nagle).
                let _ = s.set_nodelay(true);
                Ok((Stream::Tcp(s), Peer::Tcp(peer)))
            }
            ListenSocket::Unix(l) => {
                let (s, _) = l.accept()?;
                Ok((Stream::Unix(s), Peer::Unix))
            }
        }
    }

    fn source(&mut self) -> &mut dyn mio::event::Source {
        match self {
            ListenSocket::Tcp(l) => l,
            ListenSocket::Unix(l) => l,
        }
    }
}

#[derive(Debug)]
struct Listener {
    socket: ListenSocket,
    endpoint: Endpoint,
    /// Not accepting (deregistered) until then, after running out of descriptors.
    paused_until: Option<Instant>,
    backoff: Duration,
    /// The accept budget ran out with connections possibly left.
    pending: bool,
    last_warning: Option<Instant>,
    suppressed: u64,
}

/// What a worker starts with; built by [`crate::serve::Server::spawn`].
#[derive(Debug)]
pub(crate) struct Setup {
    pub(crate) index: usize,
    pub(crate) poll: Poll,
    pub(crate) listeners: Vec<(Endpoint, ListenSocket)>,
    pub(crate) udp: Vec<UdpEndpoint>,
}

/// Registers a worker's sockets; done before its thread starts so errors reach `spawn`.
pub(crate) fn register(setup: &mut Setup) -> io::Result<()> {
    let registry = setup.poll.registry();
    for (i, (_, l)) in setup.listeners.iter_mut().enumerate() {
        registry.register(l.source(), Token(LISTENER_BASE + i), Interest::READABLE)?;
    }
    for (i, u) in setup.udp.iter_mut().enumerate() {
        registry.register(&mut u.socket, Token(UDP_BASE + i), Interest::READABLE)?;
    }
    Ok(())
}

/// The waker token of every worker's poll.
pub(crate) fn waker_token() -> Token {
    WAKER
}

/// A running worker with `N`-byte session buffers.
struct Worker<const N: usize> {
    index: usize,
    poll: Poll,
    shared: Arc<Shared>,
    clock: crate::clock::Clock,
    session_config: SessionConfig,
    listeners: Vec<Listener>,
    udp: Vec<UdpEndpoint>,
    conns: Slab<Conn<N>>,
    timers: Timers,
    run_queue: VecDeque<(usize, u32)>,
    counters: Counters,
    next_generation: u32,
    /// UDP receive buffer (`max_datagram + 1` bytes at least); also the sink of discarded input.
    scratch: Vec<u8>,
    /// Set once draining: the end of the grace period.
    grace_deadline: Option<Instant>,
}

/// Runs worker `setup.index` until the server stops. Errors only if `epoll_wait` fails.
pub(crate) fn run<const N: usize>(setup: Setup, shared: Arc<Shared>) -> io::Result<()> {
    let scratch_len = (shared.settings.udp_max_datagram + 1).max(BUDGET);
    let listeners = setup
        .listeners
        .into_iter()
        .map(|(endpoint, socket)| Listener {
            socket,
            endpoint,
            paused_until: None,
            backoff: MIN_BACKOFF,
            pending: false,
            last_warning: None,
            suppressed: 0,
        })
        .collect();
    let mut worker = Worker::<N> {
        index: setup.index,
        poll: setup.poll,
        session_config: shared.settings.session,
        clock: shared.clock,
        shared,
        listeners,
        udp: setup.udp,
        conns: Slab::new(),
        timers: Timers::default(),
        run_queue: VecDeque::new(),
        counters: Counters::default(),
        next_generation: 0,
        scratch: vec![0; scratch_len],
        grace_deadline: None,
    };
    let result = worker.run();
    worker.release_all();
    worker.publish();
    result
}

impl<const N: usize> Worker<N> {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(1024);
        loop {
            let timeout = self.poll_timeout();
            if let Err(e) = self.poll.poll(&mut events, timeout) {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            let now = self.clock.now();
            match self.shared.phase() {
                Phase::Running => {}
                Phase::Draining => {
                    if self.grace_deadline.is_none() {
                        self.begin_drain(now);
                    }
                }
                Phase::Abort => return Ok(()),
            }
            for event in events.iter() {
                self.handle_event(event, now);
            }
            self.serve_leftovers(now);
            self.fire_timers(now);
            self.publish();
            if let Some(deadline) = self.grace_deadline {
                if self.conns.is_empty() {
                    return Ok(());
                }
                if now >= deadline {
                    self.reset_remaining(now);
                    return Ok(());
                }
            }
        }
    }

    fn publish(&self) {
        self.shared.stats.worker(self.index).publish(&self.counters);
    }

    /// How long `poll` may sleep: zero with work left over, else until the earliest deadline.
    fn poll_timeout(&self) -> Option<StdDuration> {
        if !self.run_queue.is_empty()
            || self.listeners.iter().any(|l| l.pending)
            || self.udp.iter().any(|u| u.pending)
        {
            return Some(StdDuration::ZERO);
        }
        let mut next = self.timers.next_deadline();
        for t in self
            .listeners
            .iter()
            .filter_map(|l| l.paused_until)
            .chain(self.grace_deadline)
        {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        next.map(|t| t.saturating_since(self.clock.now()).into())
    }

    fn handle_event(&mut self, event: &mio::event::Event, now: Instant) {
        let token = event.token().0;
        if event.token() == WAKER {
            // The phase is read every turn; the wakeup only ends the wait.
        } else if token >= LISTENER_BASE {
            self.accept(token - LISTENER_BASE, now);
        } else if token >= UDP_BASE {
            if let Some(u) = self.udp.get_mut(token - UDP_BASE) {
                u.serve(now, &mut self.scratch, &mut self.counters);
            }
        } else if let Some(conn) = self.conns.get_mut(token) {
            let failed = event.is_error();
            if event.is_readable() || event.is_read_closed() || failed {
                conn.readable = true;
            }
            if event.is_read_closed() || failed {
                conn.read_closed = true;
            }
            if event.is_writable() || event.is_write_closed() || failed {
                conn.writable = true;
            }
            self.drive(token, now);
        }
    }

    /// Serves what the budgets left for this turn: queued connections, listeners, UDP sockets.
    fn serve_leftovers(&mut self, now: Instant) {
        for _ in 0..self.run_queue.len() {
            let Some((key, generation)) = self.run_queue.pop_front() else {
                break;
            };
            match self.conns.get_mut(key) {
                Some(conn) if conn.generation == generation => {
                    conn.queued = false;
                    self.drive(key, now);
                }
                _ => {}
            }
        }
        for i in 0..self.listeners.len() {
            let listener = &mut self.listeners[i];
            let resume = listener.paused_until.is_some_and(|t| t <= now);
            if resume {
                listener.paused_until = None;
                let token = Token(LISTENER_BASE + i);
                if let Err(e) = self.poll.registry().register(
                    listener.socket.source(),
                    token,
                    Interest::READABLE,
                ) {
                    tracing::warn!(endpoint = %listener.endpoint, error = %e, "cannot resume accepting");
                    listener.paused_until = Some(now + listener.backoff);
                    continue;
                }
            }
            if resume || listener.pending {
                self.accept(i, now);
            }
        }
        for u in &mut self.udp {
            if u.pending {
                u.serve(now, &mut self.scratch, &mut self.counters);
            }
        }
    }

    fn accept(&mut self, index: usize, now: Instant) {
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = self.listeners.get_mut(index) else {
                return;
            };
            if listener.paused_until.is_some() {
                return;
            }
            listener.pending = false;
            match listener.socket.accept() {
                Ok((stream, peer)) => {
                    listener.backoff = MIN_BACKOFF;
                    self.admit(stream, peer, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted | io::ErrorKind::ConnectionAborted
                    ) => {}
                Err(e) => {
                    // Out of descriptors (EMFILE/ENFILE), or memory, or anything
                    // else: stop accepting for a while instead of spinning.
                    let exhausted = matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE));
                    if exhausted {
                        self.counters.accept_fd_exhausted += 1;
                    } else {
                        self.counters.accept_errors += 1;
                    }
                    let pause = listener.backoff;
                    listener.backoff =
                        Duration::from_micros((pause.as_micros() * 2).min(MAX_BACKOFF.as_micros()));
                    listener.paused_until = Some(now + pause);
                    let _ = self.poll.registry().deregister(listener.socket.source());
                    let due = listener
                        .last_warning
                        .is_none_or(|t| now.saturating_since(t) >= WARN_EVERY);
                    if due {
                        let hint = if exhausted {
                            "out of file descriptors (raise `ulimit -n` or lower --max-connections)"
                        } else {
                            "accept failed"
                        };
                        tracing::warn!(
                            endpoint = %listener.endpoint,
                            error = %e,
                            pause_ms = pause.as_millis(),
                            suppressed = listener.suppressed,
                            "{hint}; pausing accepts"
                        );
                        listener.last_warning = Some(now);
                        listener.suppressed = 0;
                    } else {
                        listener.suppressed += 1;
                    }
                    return;
                }
            }
        }
        if let Some(listener) = self.listeners.get_mut(index) {
            listener.pending = true;
        }
    }

    fn admit(&mut self, mut stream: Stream, peer: Peer, now: Instant) {
        self.counters.accepted += 1;
        let open = self.shared.stats.open();
        if open.fetch_add(1, Relaxed) >= self.shared.settings.max_connections {
            open.fetch_sub(1, Relaxed);
            self.counters.rejected += 1;
            tracing::debug!(%peer, "connection rejected: --max-connections reached");
            drop(stream);
            return;
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self.poll.registry().register(
            stream.source(),
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            open.fetch_sub(1, Relaxed);
            self.counters.accept_errors += 1;
            tracing::warn!(%peer, error = %e, "cannot register connection; closing it");
            return;
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let session = Box::new(Session::<N>::new(self.session_config, now));
        entry.insert(Conn::new(stream, session, peer, generation));
        tracing::debug!(%peer, "connection opened");
        if self.grace_deadline.is_some()
            && let Some(conn) = self.conns.get_mut(key)
        {
            conn.session.close(now);
        }
        // Input that is already there raises an edge right after registration.
        self.schedule(key);
    }

    /// Runs connection `key` as far as it goes, then files it: timer, run queue, or release.
    fn drive(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let step = if conn.linger_until.is_some() {
            match conn.discard_input(&mut self.scratch, BUDGET) {
                Discard::Idle => Step::Idle,
                Discard::More => Step::More,
                Discard::Finished => {
                    self.release(key);
                    return;
                }
            }
        } else {
            conn.drive(now, BUDGET, &mut self.counters)
        };
        match step {
            Step::Idle => self.schedule(key),
            Step::More => {
                if !conn.queued {
                    conn.queued = true;
                    self.run_queue.push_back((key, conn.generation));
                }
                self.schedule(key);
            }
            Step::Done(Fate::Closed(reason)) => {
                self.counters.closed += 1;
                if reason == CloseReason::IdleTimeout {
                    self.counters.idle_closed += 1;
                }
                let stats = conn.session.stats();
                tracing::debug!(
                    peer = %conn.peer,
                    bytes_in = stats.bytes_in,
                    bytes_out = stats.bytes_out,
                    %reason,
                    "connection closed"
                );
                conn.stream.shutdown_write();
                if reason == CloseReason::PeerFinished {
                    self.release(key);
                } else {
                    let mut until = now + LINGER;
                    if let Some(grace) = self.grace_deadline {
                        until = until.min(grace);
                    }
                    conn.linger_until = Some(until);
                    conn.readable = true;
                    self.drive(key, now);
                }
            }
            Step::Done(Fate::Reset(reason)) => {
                let stats = conn.session.stats();
                tracing::warn!(
                    peer = %conn.peer,
                    bytes_in = stats.bytes_in,
                    bytes_out = stats.bytes_out,
                    %reason,
                    "connection aborted"
                );
                conn.stream.set_reset_on_close();
                self.count_abort(reason);
                self.release(key);
            }
        }
    }

    fn count_abort(&mut self, reason: AbortReason) {
        let c = &mut self.counters;
        c.aborted += 1;
        match reason {
            AbortReason::LineTooLong { .. } => c.abort_line_too_long += 1,
            AbortReason::FrameTooLarge { .. } | AbortReason::TruncatedFrame { .. } => {
                c.abort_bad_frame += 1
            }
            AbortReason::DrainTimeout => c.abort_drain_timeout += 1,
            AbortReason::PeerReset => c.abort_peer_reset += 1,
            _ => c.abort_local += 1,
        }
    }

    /// Makes sure the heap holds the connection's next deadline (see [`super::timer`]).
    fn schedule(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let want = conn.deadline().unwrap_or(Instant::MAX);
        if want < conn.scheduled {
            conn.scheduled = want;
            self.timers.push(Entry {
                deadline: want,
                key,
                generation: conn.generation,
            });
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        for _ in 0..TIMER_BUDGET {
            let Some(entry) = self.timers.pop_due(now) else {
                break;
            };
            let Some(conn) = self.conns.get_mut(entry.key) else {
                continue;
            };
            if conn.generation != entry.generation || conn.scheduled != entry.deadline {
                continue;
            }
            conn.scheduled = Instant::MAX;
            match conn.linger_until {
                Some(until) if until <= now => self.release(entry.key),
                Some(_) => self.schedule(entry.key),
                None => {
                    conn.session.handle_timeout(now);
                    self.drive(entry.key, now);
                }
            }
        }
        if self.timers.len() > 2 * self.conns.len() + 1024 {
            let conns = &self.conns;
            self.timers.retain(|e| {
                conns
                    .get(e.key)
                    .is_some_and(|c| c.generation == e.generation && c.scheduled == e.deadline)
            });
        }
    }

    /// Drops connection `key` (its socket closes; `set_reset_on_close` decides FIN or RST).
    fn release(&mut self, key: usize) {
        if let Some(conn) = self.conns.try_remove(key) {
            self.counters.bytes_buffered = self
                .counters
                .bytes_buffered
                .wrapping_sub(conn.buffered as u64);
            self.shared.stats.open().fetch_sub(1, Relaxed);
        }
    }

    /// Starts the graceful shutdown: stop accepting, close every session.
    fn begin_drain(&mut self, now: Instant) {
        let grace: Duration = self.shared.settings.grace.into();
        let deadline = now + grace;
        self.grace_deadline = Some(deadline);
        for mut l in self.listeners.drain(..) {
            if l.paused_until.is_none() {
                let _ = self.poll.registry().deregister(l.socket.source());
            }
        }
        for mut u in self.udp.drain(..) {
            let _ = self.poll.registry().deregister(&mut u.socket);
        }
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            match conn.linger_until {
                Some(until) => conn.linger_until = Some(until.min(deadline)),
                None => {
                    conn.session.close(now);
                    self.drive(key, now);
                }
            }
        }
        tracing::debug!(worker = self.index, open = self.conns.len(), "draining");
    }

    /// The grace period is over: reset what is left.
    fn reset_remaining(&mut self, now: Instant) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        let mut reset = 0u64;
        for key in keys {
            let Some(conn) = self.conns.get_mut(key) else {
                continue;
            };
            if conn.linger_until.is_none() {
                conn.session.abort(now);
                conn.stream.set_reset_on_close();
                self.count_abort(AbortReason::Local);
                reset += 1;
            }
            self.release(key);
        }
        if reset > 0 {
            tracing::warn!(
                worker = self.index,
                connections = reset,
                "grace period over: connections reset"
            );
        }
    }

    /// Releases everything (worker exit): open sessions are reset.
    fn release_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key)
                && conn.linger_until.is_none()
            {
                conn.stream.set_reset_on_close();
            }
            self.release(key);
        }
        self.listeners.clear();
        self.udp.clear();
    }
}
