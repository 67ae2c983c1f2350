//! UDP: one connected socket per "connection", each driving a core
//! [`DatagramProbe`], on one mio event loop per worker thread.
//!
//! Sending keeps to its schedule, as `ping` does: the window (1 datagram
//! for ping-pong) limits the datagrams *in flight*, but an unanswered one
//! holds it only for the core's [`DatagramProbe::overdue_after`] (a
//! retransmission timeout estimated from the round trips, at most
//! `timeout / 50`); then the next datagram goes out anyway. Each one is still
//! tracked until the timeout, then counted lost (live, in the progress
//! counters and against the run's loss budget), unless the core's ring needs
//! its slot first. Without this, a server that answers nothing cost a full
//! timeout per datagram (83 minutes for the default 1000 datagrams and
//! 5 s), and one that drops 10 % held a socket to about 12 datagrams/s.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::mpsc::Sender;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use mio::net::UdpSocket;
use mio::{Events, Interest, Poll, Registry, Token};
use ricochet_core::probe::{ConfigError, DatagramProbeConfig};
use ricochet_core::time::earliest;
use ricochet_core::{DatagramProbe, Instant};
use socket2::{Domain, Protocol, Socket, Type};

use super::interval::WorkerMsg;
use super::record::Recorder;
use super::report::{ConnError, ErrorKind};
use super::tally::Tally;
use super::timers::Timers;
use super::wait::Waiter;
use super::{Ctx, Target};

mod pump;
#[cfg(test)]
mod rig;
#[cfg(test)]
mod tests;

/// Datagrams one socket keeps in flight at most (the stream pattern's window cap).
pub(super) const MAX_IN_FLIGHT: usize = 64;
/// Datagrams one socket tracks: twice its largest window, so the core's
/// ring fills (and its oldest datagram gives its slot up early, see
/// `DatagramProbe`) only when one stayed unanswered while at least a
/// window's worth of later ones was sent, never merely because a full
/// window is in flight.
const RING: usize = 2 * MAX_IN_FLIGHT;
/// Receive buffer: the largest UDP payload plus one byte, so an oversized
/// (corrupt) echo is seen as such rather than silently truncated to fit.
const READ_BUF: usize = 65_536;
/// Socket buffers asked of the kernel (capped by `net.core.[rw]mem_max`).
const SOCKET_BUF: usize = 4 << 20;
const FLUSH_EVERY: StdDuration = StdDuration::from_millis(50);
/// Datagrams sent and not yet verified, lost or found corrupt.
fn in_flight(s: &ricochet_core::probe::DatagramProbeStats) -> u64 {
    s.sent.saturating_sub(s.verified + s.lost + s.corrupt)
}

type Probe = DatagramProbe<RING>;

/// The slot of datagram `seq` in a ring of [`RING`], as the probe indexes its own.
fn ring_index(seq: u64) -> usize {
    (seq % RING as u64) as usize
}

/// The error message of datagram `seq`, `sent` bytes long, that came back
/// altered as `n` bytes: a shorter echo is named a truncation (a server
/// whose buffer is smaller: socat and ncat echo at most 8192 bytes), a
/// longer one gives both sizes (datagrams joined through a byte stream).
fn corrupt_message(seq: u64, n: usize, sent: usize) -> String {
    if n < sent {
        format!(
            "datagram {seq} was truncated: {n} of {sent} bytes came back (the server's buffer is \
             {n} bytes?); try -s {n} or less"
        )
    } else if n > sent && sent > 0 {
        format!(
            "datagram {seq} came back longer: {n} bytes came back for {sent} sent (the server \
             added bytes, or joined datagrams, as one passing them through a byte stream does: \
             socat UDP-LISTEN with EXEC:cat)"
        )
    } else {
        format!("datagram {seq} came back altered ({n} bytes)")
    }
}

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
    /// Index of its target in the spec.
    target: usize,
    /// Which of the target's resolved addresses the socket sends to.
    addr_idx: usize,
    sock: Option<UdpSocket>,
    probe: Option<Box<Probe>>,
    phase: Phase,
    readable: bool,
    writable: bool,
    bytes_sent: u64,
    /// Losses already counted against the run's budget.
    lost_counted: u64,
    /// The run is finishing: nothing more will be sent.
    finishing: bool,
    /// Pacing: a datagram due by now could not go (window full).
    held: bool,
    /// The last instant that may have let a held datagram go.
    ready_at: Instant,
    /// The length of each datagram the probe tracks, by `seq % RING`
    /// (its ring's indexing): a corrupt echo is told truncated by it.
    sent_len: [u32; RING],
    /// The last pump stopped at [`RECV_BUDGET`] with datagrams still
    /// queued: driven again at once, after the timers and the others.
    backlog: bool,
}

impl Conn {
    /// Socket `id` of target `target`, running, not yet opened.
    fn new(id: usize, target: usize, now: Instant) -> Conn {
        Conn {
            id,
            target,
            addr_idx: 0,
            sock: None,
            probe: None,
            phase: Phase::Running,
            readable: false,
            writable: true,
            bytes_sent: 0,
            lost_counted: 0,
            finishing: false,
            held: false,
            ready_at: now,
            sent_len: [0; RING],
            backlog: false,
        }
    }
}

/// The UDP address of target `t` (its first resolved address; a socket
/// refused there before anything came back moves on to the next, see
/// [`Env::next_address`]).
fn address_of(ctx: &Ctx<'_>, t: usize) -> io::Result<SocketAddr> {
    match ctx.spec.targets.get(t) {
        Some(Target::Udp(addrs)) => addrs
            .first()
            .copied()
            .ok_or_else(|| io::Error::other("no address")),
        _ => Err(io::Error::other("not a UDP target")),
    }
}

/// A fresh probe for socket `id`, starting now.
fn new_probe(ctx: &Ctx<'_>, id: usize) -> Result<Probe, ConfigError> {
    let now = ctx.clock.now();
    // The core tracks up to its ring; the window is applied here
    // (see `may_send`), so overdue datagrams can stop holding it.
    let config = DatagramProbeConfig {
        window: RING,
        ..ctx.spec.datagram_config(id)
    };
    // The socket's schedule starts its phase into the pacing
    // interval: the sockets' datagrams are spread over it.
    Probe::with_schedule(config, now, now + ctx.spec.phase(id))
}

/// Runs thread `t`'s share of the sockets to completion; interval slices go
/// to `tx`. Returns one tally per target.
pub(super) fn run_worker(
    ctx: &Ctx<'_>,
    t: usize,
    tx: &Sender<WorkerMsg>,
) -> io::Result<Vec<Tally>> {
    let mut poll = Poll::new()?;
    let registry = poll.registry().try_clone()?;
    let mut waiter = Waiter::new(&registry);
    let ids = ctx.connections_of(t);
    let mut env = Env::new(ctx, registry, Recorder::new(ctx, t, tx)?, ids.len());
    let mut conns: Vec<Conn> = Vec::with_capacity(ids.len());
    for (idx, id) in ids.into_iter().enumerate() {
        let target = ctx.spec.target_of(id);
        let mut c = Conn::new(id, target, ctx.clock.now());
        env.active += 1;
        match address_of(ctx, target).and_then(|addr| env.open(addr, idx)) {
            Ok(s) => {
                c.sock = Some(s);
                env.rec.tally(target).connects += 1;
                match new_probe(ctx, id) {
                    Ok(p) => c.probe = Some(Box::new(p)),
                    Err(e) => env.finish(
                        &mut c,
                        idx,
                        Some((ErrorKind::Io, format!("probe configuration: {e}"))),
                    ),
                }
            }
            Err(e) => {
                let why = address_of(ctx, target)
                    .map_or("", |addr| super::transport::missing_loopback(addr, &e));
                let msg = format!("UDP socket for {}: {e}{why}", ctx.spec.targets[target]);
                env.finish(&mut c, idx, Some((ErrorKind::Io, msg)));
            }
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
        env.rec.roll(now);
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
        let mut wake = earliest(env.timers.next(), env.rec.next_boundary());
        if !finishing {
            wake = earliest(wake, ctx.finish_at);
        }
        match waiter.wait(&mut poll, &mut events, wake.map(|w| clock.to_std(w))) {
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
                env.count_losses(c, now);
                env.drive(c, idx);
            }
        }
        if last_flush.elapsed() >= FLUSH_EVERY {
            env.rec.flush(ctx.progress);
            last_flush = StdInstant::now();
        }
    }
    Ok(env.rec.finish(ctx.progress))
}

struct Env<'a> {
    ctx: &'a Ctx<'a>,
    registry: Registry,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    rec: Recorder,
    timers: Timers,
    active: usize,
    /// Datagrams in flight per socket (1 for ping-pong).
    window: u64,
    /// `--rate` is set: send lateness is measured.
    pace: bool,
}

impl<'a> Env<'a> {
    /// The loop's state for `sockets` sockets, none open yet.
    fn new(ctx: &'a Ctx<'a>, registry: Registry, rec: Recorder, sockets: usize) -> Env<'a> {
        Env {
            ctx,
            registry,
            rbuf: vec![0; READ_BUF],
            wbuf: vec![0; ctx.spec.size.max.max(1)],
            rec,
            timers: Timers::new(sockets),
            active: 0,
            window: ctx.spec.datagram_config(0).window as u64,
            pace: ctx.spec.pace().is_some(),
        }
    }
}

impl Env<'_> {
    /// Whether a socket may send now: its window has room, counting only
    /// the datagrams in flight that are not yet overdue (the core's
    /// `in_flight_recent`: a lost one stops holding the window after the
    /// estimated retransmission timeout).
    fn may_send(&self, probe: &Probe, now: Instant) -> bool {
        (probe.in_flight_recent(now).0 as u64) < self.window
    }

    /// When socket `c` will be allowed to send again although its window is
    /// full; `None` if it may send now, has nothing more to send, or that
    /// moment has passed without a send (then a loss or an echo moves it on).
    fn overdue_at(&self, c: &Conn, probe: &Probe, now: Instant) -> Option<Instant> {
        let more = !c.finishing && probe.config().count.is_none_or(|n| probe.stats().sent < n);
        let (recent, frees_at) = probe.in_flight_recent(now);
        if more && recent as u64 >= self.window {
            frees_at.filter(|&at| at > now)
        } else {
            None
        }
    }

    /// Publishes losses the probe counted since the last call (at `now`).
    fn count_losses(&mut self, c: &mut Conn, now: Instant) {
        let Some(p) = c.probe.as_ref() else {
            return;
        };
        let new = p.stats().lost.saturating_sub(c.lost_counted);
        if new > 0 {
            c.lost_counted += new;
            self.rec.lost(now, new);
            self.ctx.count_lost(new, now);
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
                    earliest(p.poll_timeout(), overdue)
                });
                // Datagrams left queued: its timer is due now (the wait
                // does not block, and no readiness event would come).
                let at = if std::mem::take(&mut c.backlog) {
                    Some(now)
                } else {
                    at
                };
                if at.is_none() && c.writable {
                    // Not done, nothing to send, no deadline: nothing would
                    // ever move this socket on. Fail it rather than hang.
                    let msg = "datagram probe stalled: not done, yet nothing to send and no loss deadline \
                               (a datagram's tracking slot was reused while it was in flight)";
                    return self.finish(c, idx, Some((ErrorKind::Io, msg.to_owned())));
                }
                self.timers.schedule(idx, at);
            }
            Err(f) if f.0 == ErrorKind::Refused && self.next_address(c, idx) => self.drive(c, idx),
            Err(f) => self.finish(c, idx, Some(f)),
        }
    }

    /// After an ICMP port unreachable, moves socket `c` to its target's
    /// next resolved address, as a TCP connection tries each in turn (a
    /// name such as `localhost` may resolve to ::1 first, with the server
    /// on 127.0.0.1 alone): only while nothing came back and no loss was
    /// counted, with a new socket and a fresh probe (the refused datagrams
    /// reached no server). Whether it moved on.
    fn next_address(&mut self, c: &mut Conn, idx: usize) -> bool {
        let Some(Target::Udp(addrs)) = self.ctx.spec.targets.get(c.target) else {
            return false;
        };
        let Some(&next) = addrs.get(c.addr_idx + 1) else {
            return false;
        };
        let answered = c.probe.as_ref().is_none_or(|p| {
            let s = p.stats();
            s.verified + s.corrupt + s.duplicate + s.late + s.foreign > 0
        });
        if answered || c.finishing || c.lost_counted > 0 {
            return false;
        }
        // Closing the refused socket takes it out of the poll as well.
        c.sock = None;
        let (Ok(sock), Ok(probe)) = (self.open(next, idx), new_probe(self.ctx, c.id)) else {
            return false;
        };
        c.addr_idx += 1;
        c.sock = Some(sock);
        c.probe = Some(Box::new(probe));
        c.bytes_sent = 0;
        c.sent_len = [0; RING];
        c.readable = false;
        c.writable = true;
        c.held = false;
        c.ready_at = self.ctx.clock.now();
        true
    }

    fn finish(&mut self, c: &mut Conn, idx: usize, failure: Option<(ErrorKind, String)>) {
        if c.phase != Phase::Running {
            return;
        }
        if let Some(mut s) = c.sock.take() {
            let _ = self.registry.deregister(&mut s);
        }
        let now = self.ctx.clock.now();
        self.count_losses(c, now);
        let mut failure = failure;
        // Clean: no socket error, no corrupt datagram, nothing lost.
        let mut clean = true;
        if let Some(p) = c.probe.take() {
            clean = p.stats().corrupt == 0 && p.stats().lost == 0;
            let tally = self.rec.tally(c.target);
            tally.add_datagram(p.stats(), c.bytes_sent);
            // A failed socket (a refusal: the server stopped) waits for none
            // of its datagrams still in flight: they count as lost, so that
            // every datagram sent is verified, corrupt or lost.
            let outstanding = in_flight(p.stats());
            if matches!(failure, Some((ErrorKind::Refused, _))) && p.stats().verified == 0 {
                tally.refused_unverified += 1;
            }
            if let Some((_, message)) = failure.as_mut()
                && outstanding > 0
            {
                tally.datagrams.lost += outstanding;
                tally.datagrams.lost_on_failure += outstanding;
                self.rec.lost(now, outstanding);
                message.push_str(&format!(
                    "; {} in flight counted lost",
                    if outstanding == 1 {
                        "1 datagram".to_owned()
                    } else {
                        format!("{outstanding} datagrams")
                    }
                ));
            }
        }
        self.timers.schedule(idx, None);
        self.active = self.active.saturating_sub(1);
        self.rec.slot_finished();
        match failure {
            None => {
                c.phase = Phase::Done;
                if clean {
                    self.rec.tally(c.target).connections_ok += 1;
                }
            }
            Some((kind, message)) => {
                c.phase = Phase::Failed;
                let e = ConnError {
                    connection: Some(c.id),
                    kind,
                    offset: None,
                    expected: None,
                    actual: None,
                    message,
                };
                self.rec.error(c.target, now, e);
            }
        }
    }
}
