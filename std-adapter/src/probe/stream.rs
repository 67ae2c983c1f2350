//! TCP, TLS and Unix stream connections driving core [`StreamProbe`]s on
//! one mio event loop per worker thread.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use mio::event::Source;
use mio::net::{TcpStream, UnixStream};
use mio::{Events, Interest, Poll, Registry, Token};
use ricochet_core::probe::{ConfigError, ProbeConfig, ProbeError};
use ricochet_core::{Instant, StreamProbe};

use super::progress::Delta;
use super::report::{ConnError, ErrorKind};
use super::tally::Tally;
use super::timers::Timers;
use super::tls::{HandshakeError, TlsSock};
use super::units::format_duration;
use super::verdict::{no_progress, show_byte, show_bytes};
use super::{Ctx, Pattern, Target, crr};

/// Messages tracked in flight by a ping-pong probe (one at a time).
const PINGPONG_SLOTS: usize = 2;
/// Messages tracked in flight by a streaming probe: with 64-byte messages
/// this covers a 256 KiB window.
pub(super) const STREAM_SLOTS: usize = 4096;
/// Per-thread read buffer: large, so a streaming echo is drained in few reads.
const READ_BUF: usize = 256 * 1024;
/// Per-thread write buffer: what the probe offers is generated here.
const WRITE_BUF: usize = 64 * 1024;
/// The event loop wakes at least this often (to publish progress).
const MAX_WAIT: StdDuration = StdDuration::from_millis(100);
/// Progress is published at most this often.
const FLUSH_EVERY: StdDuration = StdDuration::from_millis(50);
/// A Unix connect refused for a full backlog is retried after this long.
const UNIX_RETRY: StdDuration = StdDuration::from_millis(1);
/// Received bytes shown before a bad one in an error message.
const CONTEXT_BEFORE: usize = 8;
/// Received bytes shown from a bad one on.
const CONTEXT_AFTER: usize = 16;

/// Checks a configuration the way the workers will build it.
pub(super) fn check_config(config: ProbeConfig, now: Instant) -> Result<(), ConfigError> {
    StreamProbe::<STREAM_SLOTS>::new(config, now).map(drop)
}

/// Runs thread `t`'s share of the connections to completion.
pub(super) fn run_worker(ctx: &Ctx<'_>, t: usize) -> io::Result<Tally> {
    match ctx.spec.pattern {
        Pattern::PingPong | Pattern::Crr => Worker::<PINGPONG_SLOTS>::new(ctx, t)?.run(),
        Pattern::Stream => Worker::<STREAM_SLOTS>::new(ctx, t)?.run(),
    }
}

enum Sock {
    Tcp(TcpStream),
    Unix(UnixStream),
    /// TLS over TCP (see `tls.rs`), from the end of the TCP connect on.
    Tls(Box<TlsSock>),
}

impl Sock {
    fn source(&mut self) -> &mut dyn Source {
        match self {
            Sock::Tcp(s) => s,
            Sock::Unix(s) => s,
            Sock::Tls(s) => s.socket(),
        }
    }

    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.read(buf),
            Sock::Unix(s) => s.read(buf),
            Sock::Tls(s) => s.read(buf),
        }
    }

    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Sock::Tcp(s) => s.write(buf),
            Sock::Unix(s) => s.write(buf),
            Sock::Tls(s) => s.write(buf),
        }
    }

    /// TLS: the end of the stream is known after a short read.
    fn read_pending(&self) -> bool {
        matches!(self, Sock::Tls(s) if s.read_pending())
    }

    /// TLS: sends records (and a FIN) still queued; nothing to do otherwise.
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Sock::Tls(s) => s.flush(),
            Sock::Tcp(_) | Sock::Unix(_) => Ok(()),
        }
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        match self {
            Sock::Tcp(s) => s.shutdown(Shutdown::Write),
            Sock::Unix(s) => s.shutdown(Shutdown::Write),
            Sock::Tls(s) => s.shutdown_write(),
        }
    }

    /// `Ok(true)` once a non-blocking connect has completed, `Ok(false)` while
    /// it is in progress, `Err` if it failed.
    fn connect_status(&self) -> io::Result<bool> {
        let (err, peer) = match self {
            Sock::Tcp(s) => (s.take_error(), s.peer_addr().map(drop)),
            Sock::Unix(s) => (s.take_error(), s.peer_addr().map(drop)),
            Sock::Tls(_) => return Ok(true),
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
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Not started yet.
    Idle,
    /// TCP connect to the `addr`-th resolved address in progress.
    Connecting { addr: usize, deadline: Instant },
    /// Unix connect hit a full backlog: try again at `at`.
    ConnectRetry { at: Instant, deadline: Instant },
    /// TCP is up; the TLS handshake started at `since`.
    Handshaking { since: Instant, deadline: Instant },
    /// Sending and verifying.
    Running,
    /// Everything verified, our FIN sent: waiting for the server's.
    Draining { deadline: Instant },
    /// Finished cleanly.
    Done,
    /// Finished with an error.
    Failed,
}

struct Conn<const M: usize> {
    /// Global connection number (for reports and seeds).
    id: usize,
    sock: Option<Sock>,
    phase: Phase,
    probe: Option<Box<StreamProbe<M>>>,
    /// Cached edge-triggered readiness: true until an operation would block.
    readable: bool,
    writable: bool,
    /// An event said the peer finished (or the socket failed): read to the end.
    read_closed: bool,
    /// `--pattern crr`: rounds this slot completed.
    round: u64,
}

/// A connection failure, turned into a [`ConnError`] when recorded.
struct Failure {
    kind: ErrorKind,
    offset: Option<u64>,
    expected: Option<u8>,
    actual: Option<u8>,
    message: String,
}

impl Failure {
    fn new(kind: ErrorKind, message: String) -> Self {
        Failure {
            kind,
            offset: None,
            expected: None,
            actual: None,
            message,
        }
    }

    fn probe(e: ProbeError, timeout: StdDuration) -> Self {
        Self::probe_in(e, timeout, None)
    }

    /// A probe error; `received` is the chunk being verified and the stream
    /// offset of its first byte, shown around the bad byte as context.
    fn probe_in(e: ProbeError, timeout: StdDuration, received: Option<(&[u8], u64)>) -> Self {
        let context = |offset: u64| {
            let Some((chunk, start)) = received else {
                return String::new();
            };
            let Some(at) = offset
                .checked_sub(start)
                .and_then(|a| usize::try_from(a).ok())
            else {
                return String::new();
            };
            let from = at.saturating_sub(CONTEXT_BEFORE).min(chunk.len());
            let to = (at + CONTEXT_AFTER).min(chunk.len());
            format!(
                "; received at stream offset {}: {}",
                start + from as u64,
                show_bytes(&chunk[from..to])
            )
        };
        match e {
            ProbeError::Mismatch {
                offset,
                expected,
                actual,
            } => Failure {
                kind: ErrorKind::Mismatch,
                offset: Some(offset),
                expected: Some(expected),
                actual: Some(actual),
                message: format!(
                    "mismatch at stream offset {offset}: sent {}, got {}{}",
                    show_byte(expected),
                    show_byte(actual),
                    context(offset)
                ),
            },
            ProbeError::UnexpectedData { offset } => Failure {
                offset: Some(offset),
                ..Failure::new(ErrorKind::UnexpectedData, format!("{e}{}", context(offset)))
            },
            ProbeError::PrematureClose { .. } => Failure::new(ErrorKind::EarlyClose, e.to_string()),
            ProbeError::Timeout { .. } => Failure::new(
                ErrorKind::Timeout,
                format!("{e} ({})", no_progress(timeout)),
            ),
            _ => Failure::new(ErrorKind::Io, e.to_string()),
        }
    }

    /// A socket error while `what`; resets and broken pipes are early closes.
    fn io(what: &str, e: &io::Error, verified: u64) -> Self {
        match e.kind() {
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Failure::new(
                ErrorKind::EarlyClose,
                format!(
                    "server reset the connection ({what}: {e}) after {verified} bytes verified"
                ),
            ),
            _ => Failure::new(ErrorKind::Io, format!("{what}: {e}")),
        }
    }
}

/// Everything of a worker but its connections (so both can be borrowed at once).
struct Env<'a> {
    ctx: &'a Ctx<'a>,
    registry: Registry,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    tally: Tally,
    delta: Delta,
    timers: Timers,
    /// Connections connecting now.
    connecting: usize,
    /// Connections started and not finished.
    active: usize,
    /// The duration is over: probes connected from now on finish at once.
    finishing: bool,
}

struct Worker<'a, const M: usize> {
    poll: Poll,
    conns: Vec<Conn<M>>,
    env: Env<'a>,
}

impl<'a, const M: usize> Worker<'a, M> {
    fn new(ctx: &'a Ctx<'a>, t: usize) -> io::Result<Self> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let conns: Vec<Conn<M>> = ctx
            .connections_of(t)
            .into_iter()
            .map(|id| Conn {
                id,
                sock: None,
                phase: Phase::Idle,
                probe: None,
                readable: false,
                writable: false,
                read_closed: false,
                round: 0,
            })
            .collect();
        let n = conns.len();
        Ok(Worker {
            poll,
            conns,
            env: Env {
                ctx,
                registry,
                rbuf: vec![0; READ_BUF],
                wbuf: vec![0; WRITE_BUF],
                tally: Tally::new(ctx.window_start, ctx.finish_at)?,
                delta: Delta::default(),
                timers: Timers::new(n),
                connecting: 0,
                active: 0,
                finishing: false,
            },
        })
    }

    fn run(mut self) -> io::Result<Tally> {
        let mut events = Events::with_capacity(1024);
        let clock = self.env.ctx.clock;
        let mut next = 0;
        let mut last_flush = StdInstant::now();
        loop {
            let stopping = self.env.ctx.stop.reason().is_some();
            while !stopping
                && self.env.connecting < self.env.ctx.connect_limit()
                && next < self.conns.len()
            {
                self.env.start(&mut self.conns[next], next);
                next += 1;
            }
            if self.env.active == 0 && (next == self.conns.len() || stopping) {
                // Stopped early: the rest are never started.
                self.env.tally.not_started += self.conns.len() - next;
                break;
            }
            let now = clock.now();
            if !self.env.finishing && self.env.ctx.should_finish(now) {
                self.env.finishing = true;
                for (idx, c) in self.conns.iter_mut().enumerate() {
                    if let Some(p) = c.probe.as_mut() {
                        p.finish();
                        self.env.drive(c, idx);
                    }
                }
                continue;
            }
            let mut wake = self.env.timers.next();
            if !self.env.finishing {
                wake = match (wake, self.env.ctx.finish_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            let timeout = wake
                .map_or(MAX_WAIT, |w| {
                    clock.to_std(w).saturating_duration_since(StdInstant::now())
                })
                .min(MAX_WAIT);
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for ev in &events {
                let idx = ev.token().0;
                let Some(c) = self.conns.get_mut(idx) else {
                    continue;
                };
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    c.readable = true;
                }
                if ev.is_read_closed() || ev.is_error() {
                    c.read_closed = true;
                }
                if ev.is_writable() || ev.is_write_closed() || ev.is_error() {
                    c.writable = true;
                }
                self.env.on_ready(c, idx);
            }
            let now = clock.now();
            while let Some(idx) = self.env.timers.pop_due(now) {
                if let Some(c) = self.conns.get_mut(idx) {
                    self.env.on_timer(c, idx, now);
                }
            }
            if last_flush.elapsed() >= FLUSH_EVERY {
                self.env.delta.flush(self.env.ctx.progress);
                last_flush = StdInstant::now();
            }
        }
        self.env.delta.flush(self.env.ctx.progress);
        Ok(self.env.tally)
    }
}

impl Env<'_> {
    fn timeout(&self) -> StdDuration {
        self.ctx.spec.timeout
    }

    /// Starts connection `idx`.
    fn start<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize) {
        self.active += 1;
        self.connecting += 1;
        let now = self.ctx.clock.now();
        let deadline = now + self.timeout().into();
        match &self.ctx.spec.target {
            Target::Tcp(_) | Target::Tls(_) => self.connect_tcp(c, idx, 0, now),
            Target::Unix(_) => {
                c.phase = Phase::ConnectRetry { at: now, deadline };
                self.connect_unix(c, idx, now, deadline);
            }
            // The UDP worker handles datagram targets.
            Target::Udp(_) => self.finish(
                c,
                idx,
                Some(Failure::new(ErrorKind::Io, "not a stream target".into())),
            ),
        }
    }

    /// Starts a non-blocking connect to the `addr`-th address, or fails the
    /// connection when none is left.
    fn connect_tcp<const M: usize>(
        &mut self,
        c: &mut Conn<M>,
        idx: usize,
        addr: usize,
        now: Instant,
    ) {
        let Some(addrs) = self.ctx.spec.target.stream_addrs() else {
            return;
        };
        let Some(&sa) = addrs.get(addr) else {
            return self.finish(
                c,
                idx,
                Some(Failure::new(ErrorKind::Io, "no address left to try".into())),
            );
        };
        let attempt = TcpStream::connect(sa).and_then(|mut s| {
            s.set_nodelay(true)?;
            self.registry
                .register(&mut s, Token(idx), Interest::READABLE | Interest::WRITABLE)?;
            Ok(s)
        });
        match attempt {
            Ok(s) => {
                c.sock = Some(Sock::Tcp(s));
                (c.readable, c.writable, c.read_closed) = (false, false, false);
                c.phase = Phase::Connecting {
                    addr,
                    deadline: now + self.timeout().into(),
                };
                self.reschedule(c, idx);
            }
            Err(e) => self.connect_failed(c, idx, addr, &e, now),
        }
    }

    fn connect_unix<const M: usize>(
        &mut self,
        c: &mut Conn<M>,
        idx: usize,
        now: Instant,
        deadline: Instant,
    ) {
        let Target::Unix(path) = &self.ctx.spec.target else {
            return;
        };
        match UnixStream::connect(path) {
            Ok(mut s) => {
                if let Err(e) = self.registry.register(
                    &mut s,
                    Token(idx),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    return self.finish(
                        c,
                        idx,
                        Some(Failure::new(ErrorKind::Io, format!("register: {e}"))),
                    );
                }
                c.sock = Some(Sock::Unix(s));
                self.connected(c, idx, now);
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                // The listener's backlog is full: retry shortly.
                c.phase = Phase::ConnectRetry {
                    at: now + UNIX_RETRY.into(),
                    deadline,
                };
                self.reschedule(c, idx);
            }
            Err(e) => {
                let kind = match e.kind() {
                    io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound => {
                        ErrorKind::Refused
                    }
                    _ => ErrorKind::Io,
                };
                let msg = format!("connect to {}: {e}", path.display());
                self.finish(c, idx, Some(Failure::new(kind, msg)));
            }
        }
    }

    /// A TCP connect attempt failed: try the next address or give up.
    fn connect_failed<const M: usize>(
        &mut self,
        c: &mut Conn<M>,
        idx: usize,
        addr: usize,
        e: &io::Error,
        now: Instant,
    ) {
        self.close_socket(c);
        let Some(addrs) = self.ctx.spec.target.stream_addrs() else {
            return;
        };
        if addr + 1 < addrs.len() {
            return self.connect_tcp(c, idx, addr + 1, now);
        }
        let kind = if e.kind() == io::ErrorKind::ConnectionRefused {
            ErrorKind::Refused
        } else {
            ErrorKind::Io
        };
        let to = addrs
            .get(addr)
            .map_or_else(String::new, |a| format!(" to {a}"));
        self.finish(
            c,
            idx,
            Some(Failure::new(kind, format!("connect{to}: {e}"))),
        );
    }

    /// TCP is up: over TLS the handshake starts, otherwise the probe.
    fn established<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize, now: Instant) {
        let Some(client) = &self.ctx.tls else {
            return self.connected(c, idx, now);
        };
        let Some(Sock::Tcp(tcp)) = c.sock.take() else {
            return self.connected(c, idx, now);
        };
        match TlsSock::new(tcp, client) {
            Ok(tls) => {
                c.sock = Some(Sock::Tls(Box::new(tls)));
                c.phase = Phase::Handshaking {
                    since: now,
                    deadline: now + self.timeout().into(),
                };
                c.writable = true;
                self.handshake(c, idx);
            }
            Err(e) => self.finish(
                c,
                idx,
                Some(Failure::new(
                    ErrorKind::Handshake,
                    format!("TLS setup: {e}"),
                )),
            ),
        }
    }

    /// Moves the TLS handshake on; once complete, starts the probe.
    fn handshake<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize) {
        let Phase::Handshaking { since, .. } = c.phase else {
            return;
        };
        let Some(Sock::Tls(tls)) = c.sock.as_mut() else {
            return;
        };
        match tls.handshake() {
            Ok(true) => {
                let now = self.ctx.clock.now();
                let resumed = tls.resumed();
                self.tally
                    .handshake(now, now.saturating_since(since), resumed);
                self.connected(c, idx, now);
            }
            Ok(false) => self.reschedule(c, idx),
            Err(e) => {
                let e: HandshakeError = e;
                self.finish(
                    c,
                    idx,
                    Some(Failure::new(ErrorKind::Handshake, e.to_string())),
                );
            }
        }
    }

    /// The connection is up: create its probe and start sending.
    fn connected<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize, now: Instant) {
        self.connecting = self.connecting.saturating_sub(1);
        c.phase = Phase::Running;
        let config = if self.ctx.spec.pattern == Pattern::Crr {
            crr::round_config(self.ctx.spec, c.id, c.round)
        } else {
            self.ctx.spec.stream_config(c.id)
        };
        match StreamProbe::<M>::new(config, now) {
            Ok(mut p) => {
                if self.finishing {
                    p.finish();
                }
                c.probe = Some(Box::new(p));
            }
            Err(e) => {
                return self.finish(
                    c,
                    idx,
                    Some(Failure::new(
                        ErrorKind::Io,
                        format!("probe configuration: {e}"),
                    )),
                );
            }
        }
        c.writable = true;
        self.drive(c, idx);
    }

    /// Readiness changed.
    fn on_ready<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize) {
        match c.phase {
            Phase::Connecting { addr, .. } => {
                let status = match &c.sock {
                    Some(s) => s.connect_status(),
                    None => return,
                };
                let now = self.ctx.clock.now();
                match status {
                    Ok(true) => self.established(c, idx, now),
                    Ok(false) => {}
                    Err(e) => self.connect_failed(c, idx, addr, &e, now),
                }
            }
            Phase::Handshaking { .. } => self.handshake(c, idx),
            Phase::Running | Phase::Draining { .. } => self.drive(c, idx),
            _ => {}
        }
    }

    /// A deadline of the connection may have passed.
    fn on_timer<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize, now: Instant) {
        match c.phase {
            Phase::Connecting { addr, deadline } if now >= deadline => {
                let e = io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no answer within {}", format_duration(self.timeout())),
                );
                self.close_socket(c);
                let more =
                    (self.ctx.spec.target.stream_addrs()).is_some_and(|a| addr + 1 < a.len());
                if more {
                    self.connect_tcp(c, idx, addr + 1, now);
                } else {
                    self.finish(
                        c,
                        idx,
                        Some(Failure::new(
                            ErrorKind::ConnectTimeout,
                            format!("connect: {e}"),
                        )),
                    );
                }
            }
            Phase::ConnectRetry { at, deadline } => {
                if now >= deadline {
                    let msg = format!(
                        "connect: the listener's backlog stayed full for {}",
                        format_duration(self.timeout())
                    );
                    self.finish(c, idx, Some(Failure::new(ErrorKind::ConnectTimeout, msg)));
                } else if now >= at {
                    self.connect_unix(c, idx, now, deadline);
                } else {
                    self.reschedule(c, idx);
                }
            }
            Phase::Handshaking { deadline, .. } if now >= deadline => {
                let msg = format!(
                    "TLS handshake: not complete within {} (is it a TLS server?)",
                    format_duration(self.timeout())
                );
                self.finish(c, idx, Some(Failure::new(ErrorKind::Handshake, msg)));
            }
            Phase::Running => {
                let timeout = self.timeout();
                let r = c.probe.as_mut().map_or(Ok(()), |p| p.handle_timeout(now));
                match r {
                    Ok(()) => self.drive(c, idx),
                    Err(e) => self.finish(c, idx, Some(Failure::probe(e, timeout))),
                }
            }
            Phase::Draining { deadline } if now >= deadline => {
                let msg = format!(
                    "the server did not close within {} after our half-close (shutdown(Write))",
                    format_duration(self.timeout())
                );
                self.finish(c, idx, Some(Failure::new(ErrorKind::NoFin, msg)));
            }
            _ => self.reschedule(c, idx),
        }
    }

    /// Moves bytes until the socket would block both ways, then reschedules.
    fn drive<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize) {
        match self.pump(c) {
            Ok(Pumped::Open) => self.reschedule(c, idx),
            Ok(Pumped::Closed) => self.finish(c, idx, None),
            Err(f) => self.finish(c, idx, Some(f)),
        }
    }

    fn pump<const M: usize>(&mut self, c: &mut Conn<M>) -> Result<Pumped, Failure> {
        let clock = self.ctx.clock;
        let timeout = self.timeout();
        let (Some(sock), Some(probe)) = (c.sock.as_mut(), c.probe.as_mut()) else {
            return Ok(Pumped::Open);
        };
        loop {
            let mut progressed = false;
            if c.writable {
                // TLS: records (or our FIN) the socket did not take before.
                sock.flush()
                    .map_err(|e| Failure::io("write", &e, probe.stats().bytes_verified))?;
            }
            if c.phase == Phase::Running && c.writable {
                loop {
                    let now = clock.now();
                    let n = probe.fill_transmit(now, &mut self.wbuf);
                    if n == 0 {
                        break;
                    }
                    match sock.write(&self.wbuf[..n]) {
                        Ok(0) => {
                            return Err(Failure::new(
                                ErrorKind::Io,
                                "write: the socket took 0 bytes".into(),
                            ));
                        }
                        Ok(w) => {
                            // `w <= n` (what was offered): cannot fail.
                            let _ = probe.commit_sent(now, w);
                            progressed = true;
                            if w < n {
                                c.writable = false;
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            c.writable = false;
                            break;
                        }
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            return Err(Failure::io("write", &e, probe.stats().bytes_verified));
                        }
                    }
                }
            }
            while c.readable {
                match sock.read(&mut self.rbuf) {
                    Ok(0) => {
                        let now = clock.now();
                        return match c.phase {
                            Phase::Draining { .. } => Ok(Pumped::Closed),
                            _ => match probe.handle_eof(now) {
                                Ok(()) => Ok(Pumped::Closed),
                                Err(e) => Err(Failure::probe(e, timeout)),
                            },
                        };
                    }
                    Ok(n) => {
                        let now = clock.now();
                        let mut rest = &self.rbuf[..n];
                        while !rest.is_empty() {
                            let start = probe.stats().bytes_verified;
                            let r = probe
                                .handle_received(now, rest)
                                .map_err(|e| Failure::probe_in(e, timeout, Some((rest, start))))?;
                            if r.consumed == 0 {
                                return Err(Failure::new(
                                    ErrorKind::Io,
                                    "the probe accepted no bytes".into(),
                                ));
                            }
                            self.tally.verified(now, r.consumed);
                            self.delta.bytes += r.consumed as u64;
                            if let Some(rtt) = r.round_trip {
                                self.tally.round_trip(now, rtt);
                                self.delta.messages += 1;
                            }
                            rest = &rest[r.consumed..];
                        }
                        progressed = true;
                        // A short read drained the socket: the next arrival
                        // is a new edge, so skip the read that would only
                        // say EAGAIN (one syscall less per round trip). Not
                        // when a FIN is already known to be queued.
                        if n < self.rbuf.len() && !c.read_closed && !sock.read_pending() {
                            c.readable = false;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => return Err(Failure::io("read", &e, probe.stats().bytes_verified)),
                }
            }
            if c.phase == Phase::Running && probe.is_done() {
                sock.shutdown_write().map_err(|e| {
                    Failure::io("shutdown(Write)", &e, probe.stats().bytes_verified)
                })?;
                c.phase = Phase::Draining {
                    deadline: clock.now() + timeout.into(),
                };
                progressed = true;
            }
            if !progressed {
                return Ok(Pumped::Open);
            }
        }
    }

    fn reschedule<const M: usize>(&mut self, c: &Conn<M>, idx: usize) {
        let at = match c.phase {
            Phase::Connecting { deadline, .. }
            | Phase::Draining { deadline }
            | Phase::Handshaking { deadline, .. } => Some(deadline),
            Phase::ConnectRetry { at, .. } => Some(at),
            Phase::Running => c.probe.as_ref().and_then(|p| p.poll_timeout()),
            Phase::Idle | Phase::Done | Phase::Failed => None,
        };
        self.timers.schedule(idx, at);
    }

    fn close_socket<const M: usize>(&mut self, c: &mut Conn<M>) {
        if let Some(mut s) = c.sock.take() {
            let _ = self.registry.deregister(s.source());
        }
    }

    /// The connection is over: record how, free its resources.
    fn finish<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize, failure: Option<Failure>) {
        if matches!(c.phase, Phase::Done | Phase::Failed) {
            return;
        }
        if matches!(
            c.phase,
            Phase::Idle
                | Phase::Connecting { .. }
                | Phase::ConnectRetry { .. }
                | Phase::Handshaking { .. }
        ) {
            self.connecting = self.connecting.saturating_sub(1);
        }
        self.close_socket(c);
        if let Some(p) = c.probe.take() {
            self.tally.add_stream(p.stats());
        }
        self.timers.schedule(idx, None);
        self.active = self.active.saturating_sub(1);
        if failure.is_none() && self.ctx.spec.pattern == Pattern::Crr {
            c.round += 1;
            let stopping = self.finishing || self.ctx.stop.reason().is_some();
            if crr::another_round(self.ctx.spec, c.round, stopping) {
                c.phase = Phase::Idle;
                return self.start(c, idx);
            }
        }
        self.delta.finished += 1;
        match failure {
            None => {
                c.phase = Phase::Done;
                self.tally.connections_ok += 1;
            }
            Some(f) => {
                c.phase = Phase::Failed;
                self.delta.errors += 1;
                self.tally.error(ConnError {
                    connection: c.id,
                    kind: f.kind,
                    offset: f.offset,
                    expected: f.expected,
                    actual: f.actual,
                    message: f.message,
                });
            }
        }
    }
}

enum Pumped {
    /// Still going: wait for readiness or a deadline.
    Open,
    /// Finished cleanly: the server closed after everything verified.
    Closed,
}
