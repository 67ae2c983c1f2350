//! One worker: an edge-triggered mio event loop owning its connections.
//!
//! A worker owns its listeners (its own `SO_REUSEPORT` socket per TCP
//! address, or a duplicate of the shared one), the UDP sockets assigned to
//! it, and every connection it accepted, in a slab keyed by mio token. Each
//! connection is registered once for read and write readiness, edge
//! triggered, and never re-registered: backpressure is not an interest
//! change but the session's empty receive buffer. Each connection is driven
//! by the core's [`Pump`](ricochet_core::Pump); the worker only routes
//! readiness to it and files what it returns. Per turn the loop:
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

use mio::{Events, Interest, Poll, Token, Waker};
use ricochet_core::{AbortReason, Duration, Event, Instant, Next, Pump, SessionConfig, Teardown};
use slab::Slab;

use super::conn::{Conn, Peer, Stream};
use super::error::Endpoint;
use super::listener::{ListenSocket, Listener};
use super::stats::Counters;
use super::throttle::Throttle;
use super::timer::{Entry, Timers};
use super::tls::Outcome;
use super::udp::UdpEndpoint;
use super::{Phase, Prepared, Shared, SpawnError, Starter, StdListener, Wake, WorkerSockets};

/// Bytes a connection may read per turn before yielding (fairness).
pub(crate) const BUDGET: usize = 64 * 1024;
/// Connections accepted per listener per turn before yielding.
const ACCEPT_BUDGET: usize = 128;
/// Timers fired per turn (a bound, in case a deadline keeps coming due).
pub(crate) const TIMER_BUDGET: usize = 4096;
/// Minimum time between two log lines about the same kind of event.
const LOG_EVERY: Duration = Duration::from_secs(10);

const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = 1 << 62;
const UDP_BASE: usize = 1 << 61;

/// What a worker starts with; built by [`prepare`].
#[derive(Debug)]
struct Setup {
    index: usize,
    poll: Poll,
    listeners: Vec<(Endpoint, ListenSocket)>,
    udp: Vec<UdpEndpoint>,
}

/// Turns each worker's sockets into a mio event loop (registered before
/// its thread starts, so errors reach `spawn`) and the body that runs it.
pub(crate) fn prepare(sockets: Vec<WorkerSockets>) -> Result<Prepared, SpawnError> {
    let mut starters: Vec<Starter> = Vec::with_capacity(sockets.len());
    let mut wakers = Vec::with_capacity(sockets.len());
    for w in sockets {
        let poll = Poll::new().map_err(SpawnError::EventLoop)?;
        let listeners = w
            .listeners
            .into_iter()
            .map(|(endpoint, l)| {
                let socket = match l {
                    StdListener::Tcp(s) => ListenSocket::Tcp(mio::net::TcpListener::from_std(s)),
                    StdListener::Unix(s) => ListenSocket::Unix(mio::net::UnixListener::from_std(s)),
                    StdListener::Tls(s, acceptor) => {
                        ListenSocket::Tls(mio::net::TcpListener::from_std(s), acceptor)
                    }
                };
                (endpoint, socket)
            })
            .collect();
        let udp = w
            .udp
            .into_iter()
            .map(|u| {
                UdpEndpoint::new(
                    mio::net::UdpSocket::from_std(u.socket),
                    u.addr,
                    u.policy,
                    u.max_datagram,
                )
            })
            .collect();
        let mut setup = Setup {
            index: w.index,
            poll,
            listeners,
            udp,
        };
        wakers.push(Wake::Mio(
            Waker::new(setup.poll.registry(), WAKER).map_err(SpawnError::EventLoop)?,
        ));
        register(&mut setup).map_err(SpawnError::Register)?;
        starters.push(Box::new(move |shared| run(setup, shared)));
    }
    Ok(Prepared {
        starters,
        wakers,
        ready: None,
    })
}

/// Registers a worker's sockets; done before its thread starts so errors reach `spawn`.
fn register(setup: &mut Setup) -> io::Result<()> {
    let registry = setup.poll.registry();
    for (i, (_, l)) in setup.listeners.iter_mut().enumerate() {
        registry.register(l.source(), Token(LISTENER_BASE + i), Interest::READABLE)?;
    }
    for (i, u) in setup.udp.iter_mut().enumerate() {
        registry.register(&mut u.socket, Token(UDP_BASE + i), Interest::READABLE)?;
    }
    Ok(())
}

/// Log throttles of one worker.
#[derive(Debug)]
pub(crate) struct Throttles {
    pub(crate) rejected: Throttle,
    pub(crate) resets: Throttle,
    pub(crate) aborts: Throttle,
    pub(crate) handshakes: Throttle,
}

impl Throttles {
    pub(crate) fn new() -> Self {
        Throttles {
            rejected: Throttle::new(LOG_EVERY),
            resets: Throttle::new(LOG_EVERY),
            aborts: Throttle::new(LOG_EVERY),
            handshakes: Throttle::new(LOG_EVERY),
        }
    }
}

/// A running worker.
struct Worker {
    index: usize,
    poll: Poll,
    shared: Arc<Shared>,
    clock: crate::clock::Clock,
    session_config: SessionConfig,
    buffer_size: usize,
    listeners: Vec<Listener>,
    udp: Vec<UdpEndpoint>,
    conns: Slab<Conn>,
    timers: Timers,
    run_queue: VecDeque<(usize, u32)>,
    counters: Counters,
    next_generation: u32,
    throttles: Throttles,
    /// Set once draining: the end of the grace period.
    grace_deadline: Option<Instant>,
}

/// Runs worker `setup.index` until the server stops. Errors only if `epoll_wait` fails.
fn run(setup: Setup, shared: Arc<Shared>) -> io::Result<()> {
    let listeners = setup
        .listeners
        .into_iter()
        .map(|(endpoint, socket)| Listener::new(endpoint, socket))
        .collect();
    let mut worker = Worker {
        index: setup.index,
        poll: setup.poll,
        session_config: shared.settings.session,
        buffer_size: shared.settings.buffer_size,
        clock: shared.clock,
        shared,
        listeners,
        udp: setup.udp,
        conns: Slab::new(),
        timers: Timers::default(),
        run_queue: VecDeque::new(),
        counters: Counters::default(),
        next_generation: 0,
        throttles: Throttles::new(),
        grace_deadline: None,
    };
    let result = worker.run();
    worker.release_all();
    worker.publish();
    result
}

impl Worker {
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
        let next = self
            .listeners
            .iter()
            .filter_map(|l| l.paused_until)
            .chain(self.grace_deadline)
            .fold(self.timers.next_deadline(), |a, b| {
                ricochet_core::time::earliest(a, Some(b))
            });
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
                u.serve(now, &mut self.counters.udp);
            }
        } else if let Some(conn) = self.conns.get_mut(token) {
            let failed = event.is_error();
            if event.is_read_closed() || failed {
                conn.pump.set_read_closed();
            } else if event.is_readable() {
                conn.pump.set_readable();
            }
            if event.is_writable() || event.is_write_closed() || failed {
                conn.pump.set_writable();
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
            let token = Token(LISTENER_BASE + i);
            let listener = &mut self.listeners[i];
            let resumed = listener.resume_if_due(now, self.poll.registry(), token);
            if resumed || listener.pending {
                self.accept(i, now);
            }
        }
        for u in &mut self.udp {
            if u.pending {
                u.serve(now, &mut self.counters.udp);
            }
        }
    }

    fn accept(&mut self, index: usize, now: Instant) {
        for _ in 0..ACCEPT_BUDGET {
            let Some(listener) = self.listeners.get_mut(index) else {
                return;
            };
            match listener.accept_next(now, self.poll.registry(), &mut self.counters) {
                Some((stream, peer)) => self.admit(stream, peer, now),
                None => return,
            }
        }
        if let Some(listener) = self.listeners.get_mut(index) {
            listener.pending = true;
        }
    }

    fn admit(&mut self, mut stream: Stream, peer: Peer, now: Instant) {
        let kind = stream.kind();
        let open = self.shared.stats.open();
        let limit = self.shared.settings.max_connections;
        if open.fetch_add(1, Relaxed) >= limit {
            open.fetch_sub(1, Relaxed);
            self.counters.stream(kind).rejected += 1;
            if let Some(suppressed) = self.throttles.rejected.admit(now) {
                tracing::warn!(
                    %peer,
                    limit,
                    suppressed,
                    "connection rejected: --max-connections reached \
                     (raise it, or the open-file limit it is derived from)"
                );
            }
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
        self.counters.stream(kind).accepted += 1;
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let storage = vec![0u8; self.buffer_size].into_boxed_slice();
        let mut pump = Pump::new(storage, self.session_config, now);
        if self.grace_deadline.is_some() {
            pump.close(now);
        }
        entry.insert(Conn {
            stream,
            pump,
            peer,
            generation,
            scheduled: Instant::MAX,
            queued: false,
        });
        tracing::debug!(%peer, "connection opened");
        if self.grace_deadline.is_some() {
            self.drive(key, now);
        } else {
            // Input that is already there raises an edge right after registration.
            self.schedule(key);
        }
    }

    /// Runs connection `key`'s pump, then files it: timer, run queue, or release.
    fn drive(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.stream.expire(now) {
            // The handshake timed out: the transport reports it on the next read.
            conn.pump.set_readable();
        }
        let counters = self.counters.stream(conn.stream.kind());
        let next = conn.pump.drive(now, &mut conn.stream, BUDGET, counters);
        if let Some(outcome) = conn.stream.take_outcome() {
            self.counters.tls_handshakes.record(outcome);
            log_handshake(conn, outcome, now, &mut self.throttles);
        }
        let refused_tls = conn.stream.is_refused_tls();
        log_events(
            &mut conn.pump,
            &conn.peer,
            refused_tls,
            now,
            &mut self.throttles,
        );
        match next {
            Next::Wait { .. } => self.schedule(key),
            Next::Yield => {
                if !conn.queued {
                    conn.queued = true;
                    self.run_queue.push_back((key, conn.generation));
                }
                self.schedule(key);
            }
            Next::Release(how) => {
                if how == Teardown::Reset {
                    conn.stream.release_reset();
                }
                self.release(key);
            }
        }
    }

    /// Makes sure the heap holds the connection's next deadline (see [`super::timer`]).
    fn schedule(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let want = ricochet_core::time::earliest(conn.pump.poll_timeout(), conn.stream.deadline())
            .unwrap_or(Instant::MAX);
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
            self.drive(entry.key, now);
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
        if self.conns.try_remove(key).is_some() {
            self.shared.stats.open().fetch_sub(1, Relaxed);
        }
    }

    /// Starts the graceful shutdown: stop accepting, close every session.
    fn begin_drain(&mut self, now: Instant) {
        let grace: Duration = self.shared.settings.grace.into();
        self.grace_deadline = Some(now + grace);
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
            if let Some(conn) = self.conns.get_mut(key) {
                conn.pump.close(now);
                self.drive(key, now);
            }
        }
        tracing::debug!(worker = self.index, open = self.conns.len(), "draining");
    }

    /// The grace period is over: reset what is still echoing, release what lingers.
    fn reset_remaining(&mut self, now: Instant) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        let local = |c: &super::stats::Counters| {
            c.tcp.aborted.local + c.unix.aborted.local + c.tls.aborted.local
        };
        let before = local(&self.counters);
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.pump.abort(now);
                self.drive(key, now);
            }
        }
        let reset = local(&self.counters) - before;
        if reset > 0 {
            tracing::warn!(
                worker = self.index,
                connections = reset,
                "grace period over: connections reset"
            );
        }
    }

    /// Releases everything (worker exit): sessions still echoing are reset.
    fn release_all(&mut self) {
        let keys: Vec<usize> = self.conns.iter().map(|(k, _)| k).collect();
        for key in keys {
            if let Some(conn) = self.conns.get_mut(key)
                && !conn.pump.is_finishing()
            {
                conn.stream.set_reset_on_close();
            }
            self.release(key);
        }
        self.listeners.clear();
        self.udp.clear();
    }
}

/// Logs a TLS handshake's outcome: completions at debug, failures at debug
/// each and as a rate-limited summary at info (a scanner must not flood the log).
fn log_handshake(conn: &Conn, outcome: Outcome, now: Instant, throttles: &mut Throttles) {
    let peer = &conn.peer;
    match outcome {
        Outcome::Completed { resumed } => tracing::debug!(
            %peer,
            resumed,
            tls = conn.stream.describe_tls().unwrap_or_default(),
            "TLS handshake completed"
        ),
        Outcome::Failed(reason) => {
            tracing::debug!(%peer, %reason, "TLS handshake failed");
            if let Some(suppressed) = throttles.handshakes.admit(now) {
                tracing::info!(
                    %peer,
                    %reason,
                    others_since_last = suppressed,
                    "TLS handshake failed; connection refused"
                );
            }
        }
    }
}

/// Logs a connection's session events: closes at debug, resets by the peer
/// as a rate-limited summary, other aborts as rate-limited warnings.
/// `refused_tls`: the connection was a refused TLS handshake, already
/// logged as such.
pub(crate) fn log_events(
    pump: &mut Pump<Box<[u8]>>,
    peer: &Peer,
    refused_tls: bool,
    now: Instant,
    throttles: &mut Throttles,
) {
    while let Some(event) = pump.poll_event() {
        let stats = pump.session().stats();
        match event {
            Event::PeerFinished => tracing::trace!(%peer, "peer finished sending"),
            Event::Closed(reason) => tracing::debug!(
                %peer,
                bytes_in = stats.bytes_in,
                bytes_out = stats.bytes_out,
                %reason,
                "connection closed"
            ),
            Event::Aborted(reason @ (AbortReason::PeerReset | AbortReason::TimedOut)) => {
                tracing::debug!(%peer, bytes_in = stats.bytes_in, %reason, "connection aborted");
                if refused_tls {
                    // Logged as a handshake failure or TLS alert already.
                    continue;
                }
                if let Some(suppressed) = throttles.resets.admit(now) {
                    tracing::info!(
                        %peer,
                        %reason,
                        others_since_last = suppressed,
                        "connection reset or lost by the peer"
                    );
                }
            }
            Event::Aborted(reason) => {
                if let Some(suppressed) = throttles.aborts.admit(now) {
                    tracing::warn!(
                        %peer,
                        bytes_in = stats.bytes_in,
                        bytes_out = stats.bytes_out,
                        %reason,
                        others_since_last = suppressed,
                        "connection aborted"
                    );
                } else {
                    tracing::debug!(%peer, %reason, "connection aborted");
                }
            }
            _ => {}
        }
    }
}
