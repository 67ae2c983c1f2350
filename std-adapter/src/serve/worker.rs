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
//!
//! The connection table (run queue, timers, admission, drain) is the one
//! both backends share ([`super::conns`]).

use std::io;
use std::sync::Arc;
use std::time::Duration as StdDuration;

use mio::{Events, Interest, Poll, Token, Waker};
use ricochet_core::{Instant, Next, Pump, Teardown};

use super::busy_poll::BusyPoll;
use super::conn::{Conn, Peer, Stream};
use super::conns::{BUDGET, ConnTable, Driver};
use super::error::Endpoint;
use super::events::{Throttles, log_events};
use super::listener::{ListenSocket, Listener};
use super::stats::Counters;
use super::storage::{SessionStorage, release_idle};
use super::tls::Outcome;
use super::udp::UdpEndpoint;
use super::{Prepared, Shared, SpawnError, Starter, StdListener, Wake, WorkerSockets};

/// Connections accepted per listener per turn before yielding.
const ACCEPT_BUDGET: usize = 128;
/// Readiness events taken per wait.
const EVENTS: usize = 1024;

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
    let (loops, wakers) = prepare_loops(sockets)?;
    let starters = loops
        .into_iter()
        .map(|setup| Box::new(move |shared| run(setup.0, shared)) as Starter)
        .collect();
    Ok(Prepared {
        starters,
        wakers,
        ready: None,
    })
}

/// An epoll event loop set up (sockets registered, waker made), before a
/// thread runs it: its own ([`prepare`]), or an io_uring worker's, which
/// hosts the TLS listeners' loop this way (`Guest`, Linux only), as rustls
/// is driven by readiness.
#[derive(Debug)]
pub(crate) struct LoopSetup(Setup);

/// Sets up one event loop per entry of `sockets` and its waker, with no
/// thread yet: [`prepare`] gives each a thread of its own, an io_uring
/// worker hosts one (`Guest::start`, Linux only).
pub(crate) fn prepare_loops(
    sockets: Vec<WorkerSockets>,
) -> Result<(Vec<LoopSetup>, Vec<Wake>), SpawnError> {
    let mut setups = Vec::with_capacity(sockets.len());
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
        setups.push(LoopSetup(setup));
    }
    Ok((setups, wakers))
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

/// A running worker.
struct Worker {
    index: usize,
    poll: Poll,
    shared: Arc<Shared>,
    clock: crate::clock::Clock,
    listeners: Vec<Listener>,
    udp: Vec<UdpEndpoint>,
    conns: ConnTable<Conn>,
    counters: Counters,
    throttles: Throttles,
    /// How long to spin on `epoll_wait` before sleeping in it.
    busy: BusyPoll,
}

impl Worker {
    /// Worker `setup.index`, ready to turn.
    fn new(setup: Setup, shared: Arc<Shared>) -> Self {
        let listeners = setup
            .listeners
            .into_iter()
            .map(|(endpoint, socket)| Listener::new(endpoint, socket))
            .collect();
        Worker {
            index: setup.index,
            poll: setup.poll,
            clock: shared.clock,
            conns: ConnTable::new(setup.index, Arc::clone(&shared)),
            busy: BusyPoll::new(shared.settings.busy_poll),
            shared,
            listeners,
            udp: setup.udp,
            counters: Counters::default(),
            throttles: Throttles::new(),
        }
    }

    /// Worker exit: releases everything and publishes the last counters.
    fn finish(&mut self) {
        self.release_all();
        self.publish();
    }
}

/// Runs worker `setup.index` until the server stops. Errors only if `epoll_wait` fails.
fn run(setup: Setup, shared: Arc<Shared>) -> io::Result<()> {
    let mut worker = Worker::new(setup, shared);
    let result = worker.run();
    worker.finish();
    result
}

impl Worker {
    fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS);
        loop {
            let timeout = self.poll_timeout();
            let Worker { poll, busy, .. } = self;
            let result: io::Result<()> = busy.wait(timeout, |t| {
                poll.poll(&mut events, t)?;
                Ok(!events.is_empty())
            });
            if let Err(e) = result {
                if e.kind() == io::ErrorKind::Interrupted {
                    continue;
                }
                return Err(e);
            }
            if !self.turn(&events) {
                return Ok(());
            }
        }
    }

    /// One turn after a wait that brought `events`: serves them, the
    /// leftovers and the due timers, publishes the counters. False once
    /// the worker is done (abort, or drained).
    fn turn(&mut self, events: &Events) -> bool {
        let now = self.clock.now();
        let go_on = self.begin_turn(now, |w| {
            // Every ready connection's row starts loading now: their
            // cache misses overlap (keys that are not connections are
            // skipped).
            if w.conns.worth_prefetching() {
                for event in events.iter() {
                    w.conns.prefetch(event.token().0);
                }
            }
            for event in events.iter() {
                w.handle_event(event, now);
            }
        });
        if !go_on {
            return false;
        }
        self.serve_leftovers(now);
        self.fire_timers(now);
        self.publish();
        !self.drained(now)
    }

    fn publish(&self) {
        self.shared.stats.worker(self.index).publish(&self.counters);
    }

    /// How long `poll` may sleep: zero with work left over, else until the earliest deadline.
    fn poll_timeout(&self) -> Option<StdDuration> {
        if self.conns.has_queued()
            || self.listeners.iter().any(|l| l.pending)
            || self.udp.iter().any(|u| u.pending)
        {
            return Some(StdDuration::ZERO);
        }
        let paused = self.listeners.iter().filter_map(|l| l.paused_until);
        self.conns.wait_limit(paused, self.clock.now())
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
                self.counters.udp_queue_drops += u.take_queue_drops();
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
        self.serve_run_queue(now);
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
                self.counters.udp_queue_drops += u.take_queue_drops();
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
        if !self.conns.reserve(kind, &peer, now, &mut self.counters) {
            return;
        }
        let key = self.conns.vacant_key();
        if let Err(e) = self.poll.registry().register(
            stream.source(),
            Token(key),
            Interest::READABLE | Interest::WRITABLE,
        ) {
            self.conns.unreserve();
            self.counters.accept_errors += 1;
            tracing::warn!(%peer, error = %e, "cannot register connection; closing it");
            return;
        }
        let make = |mut pump: Pump<SessionStorage>| {
            // Input already there was reported by the registration above
            // (edge-triggered): a silent connection is not read, so its
            // session buffer is not allocated (`serve/storage.rs`).
            pump.clear_readable();
            Conn { stream, pump, peer }
        };
        let key = self.conns.insert(kind, peer, now, &mut self.counters, make);
        self.opened(key, now);
    }

    /// Releases everything (worker exit): sessions still echoing are reset.
    fn release_all(&mut self) {
        let now = self.clock.now();
        self.conns.reset_unfinished(now, &mut self.counters);
        for conn in self.conns.iter_mut() {
            conn.sync_gauge(&mut self.counters);
        }
        self.conns.release_all(drop);
        self.listeners.clear();
        self.udp.clear();
    }
}

impl Driver for Worker {
    type Conn = Conn;

    fn table(&mut self) -> &mut ConnTable<Conn> {
        &mut self.conns
    }

    fn counters(&self) -> &Counters {
        &self.counters
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
        conn.stream.begin_drive();
        let mut next = conn.pump.drive(now, &mut conn.stream, BUDGET, counters);
        if conn.stream.take_throttled() && matches!(next, Next::Wait { .. }) {
            // TLS input left for the next turn: no readiness event may come
            // for it, so the connection is queued as one out of budget.
            conn.pump.set_readable();
            next = Next::Yield;
        }
        conn.sync_gauge(&mut self.counters);
        release_idle(&mut conn.pump);
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
            Next::Release(Teardown::Reset) => conn.stream.release_reset(),
            Next::Release(Teardown::Abandon) => conn.stream.release_abandoned(),
            _ => {}
        }
        if self.conns.file(key, next).is_some() {
            // Dropping it closes the socket (FIN, or RST as set above).
            self.conns.release(key, drop);
        }
    }

    /// Stops accepting and receiving datagrams: deregisters every listener
    /// and UDP socket and closes them.
    fn stop_accepting(&mut self) {
        for mut l in self.listeners.drain(..) {
            if l.paused_until.is_none() {
                let _ = self.poll.registry().deregister(l.socket.source());
            }
        }
        for mut u in self.udp.drain(..) {
            let _ = self.poll.registry().deregister(&mut u.socket);
        }
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
            let detail = conn.stream.tls_failure_detail().unwrap_or_default();
            let meaning = reason.meaning();
            tracing::debug!(%peer, %reason, detail, "TLS handshake failed: {meaning}");
            if let Some(suppressed) = throttles.handshakes.admit(now) {
                tracing::info!(
                    %peer,
                    %reason,
                    detail,
                    others_since_last = suppressed,
                    "TLS handshake failed; connection refused: {meaning}"
                );
            }
        }
    }
}

#[cfg(target_os = "linux")]
mod guest;
#[cfg(test)]
mod tests;

#[cfg(target_os = "linux")]
pub(crate) use guest::Guest;
