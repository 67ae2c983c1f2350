//! UDP: one connected socket per "connection", each driving a core
//! [`DatagramProbe`], on one mio event loop per worker thread.
//!
//! Sending keeps to its schedule, as `ping` does: the window (1 datagram
//! for ping-pong) limits the datagrams *in flight*, but once nothing has
//! been sent or resolved for [`overdue_after`] the unanswered ones no
//! longer hold it, and the next datagram goes out anyway. Each one is still
//! tracked until the timeout, then counted lost (live, in the progress
//! counters and against the run's loss budget). Without this, a server that
//! answers nothing cost a full timeout per datagram: 83 minutes for the
//! default 1000 datagrams and 5 s.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Registry, Token};
use ricochet_core::probe::{ConfigError, DatagramOutcome, DatagramProbeConfig};
use ricochet_core::{DatagramProbe, Instant};
use socket2::{Domain, Protocol, Socket, Type};

use super::progress::Delta;
use super::report::{ConnError, ErrorKind};
use super::tally::Tally;
use super::timers::Timers;
use super::{Ctx, Target};

/// Datagrams one socket tracks in flight (the stream pattern's window cap).
pub(super) const MAX_IN_FLIGHT: usize = 64;
/// Receive buffer: the largest UDP payload plus one byte, so an oversized
/// (corrupt) echo is seen as such rather than silently truncated to fit.
const READ_BUF: usize = 65_536;
/// Socket buffers asked of the kernel (capped by `net.core.[rw]mem_max`).
const SOCKET_BUF: usize = 4 << 20;
const MAX_WAIT: StdDuration = StdDuration::from_millis(100);
const FLUSH_EVERY: StdDuration = StdDuration::from_millis(50);
/// Unanswered datagrams stop holding the window after `timeout / OVERDUE_PER_TIMEOUT`:
/// at most this many are sent per timeout beyond the window when nothing
/// comes back, which stays under [`MAX_IN_FLIGHT`] so the tracking ring
/// never stalls the schedule.
const OVERDUE_PER_TIMEOUT: u32 = 50;
/// The shortest wait before unanswered datagrams stop holding the window.
const MIN_OVERDUE: StdDuration = StdDuration::from_millis(1);

/// How long unanswered datagrams hold the window before the next one is
/// sent anyway: `timeout / 50`, at least 1 ms (100 ms for the default 5 s).
pub(super) fn overdue_after(timeout: StdDuration) -> StdDuration {
    (timeout / OVERDUE_PER_TIMEOUT).max(MIN_OVERDUE)
}

/// Datagrams sent and not yet verified, lost or found corrupt.
fn in_flight(s: &ricochet_core::probe::DatagramProbeStats) -> u64 {
    s.sent.saturating_sub(s.verified + s.lost + s.corrupt)
}

type Probe = DatagramProbe<MAX_IN_FLIGHT>;

/// Checks a configuration the way the workers will build it.
pub(super) fn check_config(config: DatagramProbeConfig, now: Instant) -> Result<(), ConfigError> {
    Probe::new(config, now).map(drop)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Phase {
    Running,
    Done,
    Failed,
}

struct Conn {
    id: usize,
    sock: Option<UdpSocket>,
    probe: Option<Box<Probe>>,
    phase: Phase,
    readable: bool,
    writable: bool,
    bytes_sent: u64,
    /// When a datagram was last sent or resolved (verified, corrupt).
    last_progress: Instant,
    /// Losses already counted against the run's budget.
    lost_counted: u64,
    /// The run is finishing: nothing more will be sent.
    finishing: bool,
}

/// Runs thread `t`'s share of the sockets to completion.
pub(super) fn run_worker(ctx: &Ctx<'_>, t: usize) -> io::Result<Tally> {
    let Target::Udp(addrs) = &ctx.spec.target else {
        return Err(io::Error::other("not a UDP target"));
    };
    let addr = *addrs
        .first()
        .ok_or_else(|| io::Error::other("no address"))?;
    let mut poll = Poll::new()?;
    let mut env = Env {
        ctx,
        registry: poll.registry().try_clone()?,
        rbuf: vec![0; READ_BUF],
        wbuf: vec![0; ctx.spec.size.max.max(1)],
        tally: Tally::new(ctx.window_start, ctx.finish_at)?,
        delta: Delta::default(),
        timers: Timers::new(0),
        active: 0,
        window: ctx.spec.datagram_config(0).window as u64,
        overdue: overdue_after(ctx.spec.timeout).into(),
    };
    let ids = ctx.connections_of(t);
    env.timers = Timers::new(ids.len());
    let mut conns: Vec<Conn> = Vec::with_capacity(ids.len());
    for (idx, id) in ids.into_iter().enumerate() {
        let mut c = Conn {
            id,
            sock: None,
            probe: None,
            phase: Phase::Running,
            readable: false,
            writable: true,
            bytes_sent: 0,
            last_progress: ctx.clock.now(),
            lost_counted: 0,
            finishing: false,
        };
        env.active += 1;
        match env.open(addr, idx) {
            Ok(s) => {
                c.sock = Some(s);
                let now = ctx.clock.now();
                // The core tracks up to its ring; the window is applied here
                // (see `may_send`), so overdue datagrams can stop holding it.
                let config = DatagramProbeConfig {
                    window: MAX_IN_FLIGHT,
                    ..ctx.spec.datagram_config(id)
                };
                match Probe::new(config, now) {
                    Ok(p) => c.probe = Some(Box::new(p)),
                    Err(e) => env.finish(
                        &mut c,
                        idx,
                        Some((ErrorKind::Io, format!("probe configuration: {e}"))),
                    ),
                }
            }
            Err(e) => env.finish(
                &mut c,
                idx,
                Some((ErrorKind::Io, format!("UDP socket for {addr}: {e}"))),
            ),
        }
        conns.push(c);
    }
    for (idx, c) in conns.iter_mut().enumerate() {
        env.drive(c, idx);
    }

    let clock = ctx.clock;
    let mut events = Events::with_capacity(1024);
    let mut finishing = false;
    let mut last_flush = StdInstant::now();
    while env.active > 0 {
        let now = clock.now();
        if !finishing && ctx.should_finish(now) {
            finishing = true;
            for (idx, c) in conns.iter_mut().enumerate() {
                if let Some(p) = c.probe.as_mut() {
                    p.finish();
                    c.finishing = true;
                    env.drive(c, idx);
                }
            }
            continue;
        }
        let mut wake = env.timers.next();
        if !finishing {
            wake = match (wake, ctx.finish_at) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        let timeout = wake
            .map_or(MAX_WAIT, |w| {
                clock.to_std(w).saturating_duration_since(StdInstant::now())
            })
            .min(MAX_WAIT);
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for ev in &events {
            let idx = ev.token().0;
            let Some(c) = conns.get_mut(idx) else {
                continue;
            };
            if ev.is_readable() || ev.is_error() {
                c.readable = true;
            }
            if ev.is_writable() || ev.is_error() {
                c.writable = true;
            }
            env.drive(c, idx);
        }
        let now = clock.now();
        while let Some(idx) = env.timers.pop_due(now) {
            if let Some(c) = conns.get_mut(idx) {
                if let Some(p) = c.probe.as_mut() {
                    p.handle_timeout(now);
                }
                env.count_losses(c);
                env.drive(c, idx);
            }
        }
        if last_flush.elapsed() >= FLUSH_EVERY {
            env.delta.flush(ctx.progress);
            last_flush = StdInstant::now();
        }
    }
    env.delta.flush(ctx.progress);
    Ok(env.tally)
}

struct Env<'a> {
    ctx: &'a Ctx<'a>,
    registry: Registry,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    tally: Tally,
    delta: Delta,
    timers: Timers,
    active: usize,
    /// Datagrams in flight per socket (1 for ping-pong).
    window: u64,
    /// See [`overdue_after`].
    overdue: ricochet_core::Duration,
}

impl Env<'_> {
    /// Whether socket `c` may send now: the window has room, or nothing was
    /// sent or resolved for [`overdue_after`] (the unanswered datagrams are
    /// overdue and no longer hold the window).
    fn may_send(&self, c: &Conn, probe: &Probe, now: Instant) -> bool {
        in_flight(probe.stats()) < self.window || now >= c.last_progress + self.overdue
    }

    /// When socket `c` will be allowed to send again although its window is
    /// full; `None` if it may send now, has nothing more to send, or that
    /// moment has passed without a send (then a loss or an echo moves it on).
    fn overdue_at(&self, c: &Conn, probe: &Probe, now: Instant) -> Option<Instant> {
        let more = !c.finishing && probe.config().count.is_none_or(|n| probe.stats().sent < n);
        let at = c.last_progress + self.overdue;
        (more && in_flight(probe.stats()) >= self.window && at > now).then_some(at)
    }

    /// Publishes losses the probe counted since the last call.
    fn count_losses(&mut self, c: &mut Conn) {
        let Some(p) = c.probe.as_ref() else {
            return;
        };
        let new = p.stats().lost.saturating_sub(c.lost_counted);
        if new > 0 {
            c.lost_counted += new;
            self.delta.lost += new;
            self.ctx.count_lost(new);
        }
    }

    /// A non-blocking UDP socket connected to `addr` (replies from anyone
    /// else are filtered by the kernel), registered as `idx`.
    fn open(&mut self, addr: SocketAddr, idx: usize) -> io::Result<UdpSocket> {
        let s = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        // Best effort: bigger buffers absorb a window of large datagrams.
        let _ = s.set_recv_buffer_size(SOCKET_BUF);
        let _ = s.set_send_buffer_size(SOCKET_BUF);
        let local: SocketAddr = match addr {
            SocketAddr::V4(_) => (Ipv4Addr::UNSPECIFIED, 0).into(),
            SocketAddr::V6(_) => (Ipv6Addr::UNSPECIFIED, 0).into(),
        };
        s.bind(&local.into())?;
        s.connect(&addr.into())?;
        s.set_nonblocking(true)?;
        let mut sock = UdpSocket::from_std(s.into());
        self.registry.register(
            &mut sock,
            Token(idx),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        Ok(sock)
    }

    fn drive(&mut self, c: &mut Conn, idx: usize) {
        if c.phase != Phase::Running {
            return;
        }
        match self.pump(c) {
            Ok(true) => self.finish(c, idx, None),
            Ok(false) => {
                let now = self.ctx.clock.now();
                let at = c.probe.as_ref().and_then(|p| {
                    let overdue = self.overdue_at(c, p, now);
                    match (p.poll_timeout(), overdue) {
                        (Some(a), Some(b)) => Some(a.min(b)),
                        (a, b) => a.or(b),
                    }
                });
                if at.is_none() && c.writable {
                    // Not done, nothing to send, no deadline: nothing would
                    // ever move this socket on. Fail it rather than hang.
                    let msg = "datagram probe stalled: not done, yet nothing to send and no loss deadline \
                               (a datagram's tracking slot was reused while it was in flight)";
                    return self.finish(c, idx, Some((ErrorKind::Io, msg.to_owned())));
                }
                self.timers.schedule(idx, at);
            }
            Err(f) => self.finish(c, idx, Some(f)),
        }
    }

    /// Sends what the probe allows and verifies what came back; `Ok(true)`
    /// when the probe is done.
    fn pump(&mut self, c: &mut Conn) -> Result<bool, (ErrorKind, String)> {
        if c.sock.is_none() || c.probe.is_none() {
            return Ok(false);
        }
        let (Some(mut sock), Some(mut probe)) = (c.sock.take(), c.probe.take()) else {
            return Ok(false);
        };
        let r = self.pump_with(c, &mut sock, &mut probe);
        c.sock = Some(sock);
        c.probe = Some(probe);
        r
    }

    fn pump_with(
        &mut self,
        c: &mut Conn,
        sock: &mut UdpSocket,
        probe: &mut Probe,
    ) -> Result<bool, (ErrorKind, String)> {
        let clock = self.ctx.clock;
        let ctx = self.ctx;
        let refused = || {
            let msg = format!(
                "no UDP echo server at {} (ICMP port unreachable)",
                ctx.spec.target
            );
            (ErrorKind::Refused, msg)
        };
        loop {
            let mut progressed = false;
            while c.writable {
                let now = clock.now();
                if !self.may_send(c, probe, now) {
                    break;
                }
                let Some(n) = probe.poll_transmit(now, &mut self.wbuf) else {
                    break;
                };
                c.last_progress = now;
                progressed = true;
                match sock.send(&self.wbuf[..n]) {
                    Ok(_) => c.bytes_sent += n as u64,
                    // The probe counted the datagram as sent: it will count as lost.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        self.tally.send_blocked += 1;
                        c.writable = e.kind() == io::ErrorKind::Interrupted;
                    }
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(refused()),
                    Err(e) => return Err((ErrorKind::Io, format!("send: {e}"))),
                }
            }
            while c.readable {
                match sock.recv(&mut self.rbuf) {
                    Ok(n) => {
                        progressed = true;
                        let now = clock.now();
                        match probe.handle_datagram(now, &self.rbuf[..n]) {
                            DatagramOutcome::Verified { round_trip, .. } => {
                                c.last_progress = now;
                                self.tally.verified(now, n);
                                self.tally.round_trip(now, round_trip);
                                self.delta.messages += 1;
                                self.delta.bytes += n as u64;
                            }
                            DatagramOutcome::Corrupt { seq } => {
                                c.last_progress = now;
                                self.delta.errors += 1;
                                self.tally.error(ConnError {
                                    connection: c.id,
                                    kind: ErrorKind::Corrupt,
                                    offset: Some(seq),
                                    expected: None,
                                    actual: None,
                                    message: format!(
                                        "datagram {seq} came back altered ({n} bytes)"
                                    ),
                                });
                            }
                            // Counted by the probe's stats; reported as warnings.
                            _ => {}
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => return Err(refused()),
                    Err(e) => return Err((ErrorKind::Io, format!("recv: {e}"))),
                }
            }
            if probe.is_done() {
                return Ok(true);
            }
            if !progressed {
                return Ok(false);
            }
        }
    }

    fn finish(&mut self, c: &mut Conn, idx: usize, failure: Option<(ErrorKind, String)>) {
        if c.phase != Phase::Running {
            return;
        }
        if let Some(mut s) = c.sock.take() {
            let _ = self.registry.deregister(&mut s);
        }
        self.count_losses(c);
        // Clean: no socket error, no corrupt datagram, nothing lost.
        let mut clean = true;
        if let Some(p) = c.probe.take() {
            clean = p.stats().corrupt == 0 && p.stats().lost == 0;
            self.tally.add_datagram(p.stats(), c.bytes_sent);
        }
        self.timers.schedule(idx, None);
        self.active = self.active.saturating_sub(1);
        self.delta.finished += 1;
        match failure {
            None => {
                c.phase = Phase::Done;
                if clean {
                    self.tally.connections_ok += 1;
                }
            }
            Some((kind, message)) => {
                c.phase = Phase::Failed;
                self.delta.errors += 1;
                self.tally.error(ConnError {
                    connection: c.id,
                    kind,
                    offset: None,
                    expected: None,
                    actual: None,
                    message,
                });
            }
        }
    }
}
