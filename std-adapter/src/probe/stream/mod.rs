//! TCP, TLS and Unix stream connections driving core [`StreamProbe`]s on
//! one mio event loop per worker thread.
//!
//! Each *slot* (`-c` counts slots) holds one connection at a time. Without
//! churn it is opened once and lives for the whole run. With
//! `--pattern crr` or `--lifetime`, a slot closes its connection cleanly
//! (half-close, the server's FIN) after its messages or its time and opens
//! the next one, until its count or the duration is used up; every
//! connection gets its own seed. Opening is gated by the connects in flight
//! per thread ([`CONNECTS_IN_FLIGHT`](super::CONNECTS_IN_FLIGHT)) and by
//! `--connect-rate`. Under `--rate` a slot's pacing schedule runs on across
//! its connections: a connection opened late counts that wait in its
//! first message's (corrected) latency.

mod conn;
mod dial;
mod failure;
mod pump;
#[cfg(test)]
mod rig;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_loop;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::io;
use std::sync::mpsc::Sender;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use mio::{Events, Poll, Registry};
use ricochet_core::probe::{ConfigError, ProbeConfig};
use ricochet_core::time::earliest;
use ricochet_core::{Duration, Instant, StreamProbe};

use super::interval::WorkerMsg;
use super::record::Recorder;
use super::report::ErrorKind;
use super::spec::Lifetime;
use super::tally::Tally;
use super::timers::Timers;
use super::transport::{self, Link, Readiness, ReadyError};
use super::units::format_duration;
use super::wait::Waiter;
use super::{Ctx, Pattern};
use conn::{Conn, Gate, Phase};
use dial::every_attempt;
use failure::{Failure, PeerEnd};

/// Messages tracked in flight by a ping-pong probe (one at a time).
const PINGPONG_SLOTS: usize = 2;
/// Messages tracked in flight by a streaming probe: with 64-byte messages
/// this covers a 256 KiB window.
pub(super) const STREAM_SLOTS: usize = 4096;
/// Per-thread read buffer: large, so a streaming echo is drained in few reads.
const READ_BUF: usize = 256 * 1024;
/// Per-thread write buffer: what the probe offers is generated here.
const WRITE_BUF: usize = 64 * 1024;
/// Progress is published at most this often.
const FLUSH_EVERY: StdDuration = StdDuration::from_millis(50);

/// Checks a configuration the way the workers will build it.
pub(super) fn check_config(config: ProbeConfig, now: Instant) -> Result<(), ConfigError> {
    StreamProbe::<STREAM_SLOTS>::new(config, now).map(drop)
}

/// Runs thread `t`'s share of the connections to completion; interval
/// slices go to `tx`. Returns one tally per target.
pub(super) fn run_worker(
    ctx: &Ctx<'_>,
    t: usize,
    tx: &Sender<WorkerMsg>,
) -> io::Result<Vec<Tally>> {
    match ctx.spec.pattern {
        Pattern::PingPong | Pattern::Crr => Worker::<PINGPONG_SLOTS>::new(ctx, t, tx)?.run(),
        Pattern::Stream => Worker::<STREAM_SLOTS>::new(ctx, t, tx)?.run(),
    }
}

/// Everything of a worker but its connections (so both can be borrowed at once).
struct Env<'a> {
    ctx: &'a Ctx<'a>,
    registry: Registry,
    rbuf: Vec<u8>,
    wbuf: Vec<u8>,
    rec: Recorder,
    timers: Timers,
    /// Slots waiting to connect, earliest first.
    queue: BinaryHeap<Reverse<(Instant, usize)>>,
    gate: Gate,
    /// Per-connection pacing interval, with `--rate`.
    pace: Option<ricochet_core::Pace>,
    /// Connections connecting now.
    connecting: usize,
    /// Slots not finished for good.
    active: usize,
    /// The duration is over or the run was stopped: no new message, no new connection.
    finishing: bool,
    /// The run was stopped (an interrupt): messages being written were cut
    /// short ([`StreamProbe::finish_now`]), not completed.
    cut: bool,
}

impl<'a> Env<'a> {
    /// The state of a worker with `slots` connections, every one due to
    /// connect at `now` (in slot order), none connecting yet.
    fn new(
        ctx: &'a Ctx<'a>,
        registry: Registry,
        rec: Recorder,
        slots: usize,
        now: Instant,
    ) -> Self {
        let gate_every = ctx.spec.connect_rate.map(|r| {
            let secs = ctx.threads as f64 / r;
            Duration::from_micros((secs * 1e6).clamp(1.0, u64::MAX as f64) as u64)
        });
        Env {
            ctx,
            registry,
            rbuf: vec![0; READ_BUF],
            wbuf: vec![0; WRITE_BUF],
            rec,
            timers: Timers::new(slots),
            queue: (0..slots).map(|idx| Reverse((now, idx))).collect(),
            gate: Gate::new(gate_every, now),
            pace: ctx.spec.pace(),
            connecting: 0,
            active: slots,
            finishing: false,
            cut: false,
        }
    }
}

struct Worker<'a, const M: usize> {
    poll: Poll,
    waiter: Waiter,
    conns: Vec<Conn<M>>,
    env: Env<'a>,
}

impl<'a, const M: usize> Worker<'a, M> {
    fn new(ctx: &'a Ctx<'a>, t: usize, tx: &Sender<WorkerMsg>) -> io::Result<Self> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waiter = Waiter::new(&registry);
        let now = ctx.clock.now();
        let conns: Vec<Conn<M>> = ctx
            .connections_of(t)
            .into_iter()
            .map(|id| Conn::new(id, ctx.spec.target_of(id), now))
            .collect();
        let env = Env::new(ctx, registry, Recorder::new(ctx, t, tx)?, conns.len(), now);
        Ok(Worker {
            poll,
            waiter,
            conns,
            env,
        })
    }

    fn run(mut self) -> io::Result<Vec<Tally>> {
        let mut events = Events::with_capacity(1024);
        let ctx = self.env.ctx;
        let clock = ctx.clock;
        let mut last_flush = StdInstant::now();
        loop {
            let now = clock.now();
            self.env.rec.roll(now);
            if self.env.must_stop(now) {
                self.env.stop_sending(&mut self.conns, now);
                continue;
            }
            let next_launch = self.env.launch(&mut self.conns, now);
            if self.env.active == 0 {
                break;
            }
            let mut wake = earliest(self.env.timers.next(), next_launch);
            wake = earliest(wake, self.env.rec.next_boundary());
            if !self.env.finishing {
                wake = earliest(wake, ctx.finish_at);
            }
            self.waiter
                .wait(&mut self.poll, &mut events, wake.map(|w| clock.to_std(w)))
                .or_else(|e| match e.kind() {
                    io::ErrorKind::Interrupted => Ok(()),
                    _ => Err(e),
                })?;
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
                self.env.rec.flush(ctx.progress);
                last_flush = StdInstant::now();
            }
        }
        Ok(self.env.rec.finish(ctx.progress))
    }
}

impl Env<'_> {
    /// Stops sending, at `now`, on every slot: slots waiting to connect
    /// never will. An interrupt cuts the message being written short (and
    /// counts it, [`StreamProbe::finish_now`]); the end of the duration
    /// lets it complete but starts no other, and with `--rate` the messages
    /// already due that the window held back count as waiting from their
    /// due time (`Conn::unsent`) until the connection settles.
    fn stop_sending<const M: usize>(&mut self, conns: &mut [Conn<M>], now: Instant) {
        // An interrupt stops sending at once, even in the middle of a huge
        // message (`-s 100G`), also after the duration ended.
        let cut = self.ctx.stop.reason().is_some();
        self.finishing = true;
        self.cut = cut;
        self.drop_queue(conns);
        for (idx, c) in conns.iter_mut().enumerate() {
            if let Some(p) = c.probe.as_mut() {
                if !cut {
                    if let (Some(pace), Some(due)) = (self.pace, p.next_due())
                        && due <= now
                    {
                        c.unsent = Some((due, pace.due_by(due, now) + 1));
                    }
                    p.finish();
                } else if p.finish_now() > 0 {
                    self.rec.tally(c.target).messages_cut += 1;
                }
                self.drive(c, idx);
            }
        }
    }

    fn timeout(&self) -> StdDuration {
        self.ctx.spec.timeout
    }

    /// The run must stop sending and has not yet: the duration is over, or
    /// it was stopped (which also cuts short the messages a duration's end
    /// let complete).
    fn must_stop(&self, now: Instant) -> bool {
        (!self.finishing && self.ctx.should_finish(now))
            || (!self.cut && self.ctx.stop.reason().is_some())
    }

    /// Messages the slot's next connection sends: what is left of the
    /// count, at most a lifetime's worth (`None`: until told to finish).
    fn session_count<const M: usize>(&self, c: &Conn<M>) -> Option<u64> {
        let spec = self.ctx.spec;
        let left = spec.count().map(|n| n.saturating_sub(c.messages_done));
        match spec.session_lifetime() {
            Some(Lifetime::Messages(k)) => Some(left.map_or(k, |l| l.min(k))),
            _ => left,
        }
    }

    /// Readiness changed.
    fn on_ready<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize) {
        match c.phase {
            Phase::Connecting { attempt, .. } => {
                let now = self.ctx.clock.now();
                let status = match c.sock.as_mut() {
                    Some(s) => s.poll_ready(now),
                    None => return,
                };
                match status {
                    Ok(Readiness::Ready) => {
                        let now = self.ctx.clock.now();
                        self.connected(c, idx, now);
                    }
                    Ok(Readiness::Connecting) => {}
                    Ok(Readiness::Handshaking { since }) => {
                        // The handshake has a timeout of its own, from its start.
                        c.phase = Phase::Connecting {
                            attempt,
                            deadline: since + self.timeout().into(),
                        };
                        self.reschedule(c, idx);
                    }
                    Err(ReadyError::Connect(e)) => self.dial_failed(c, idx, attempt, &e, now),
                    Err(ReadyError::Handshake(e)) => {
                        let f = Failure::new(ErrorKind::Handshake, e.to_string());
                        self.fail(c, idx, now, f);
                    }
                }
            }
            Phase::Running | Phase::Draining { .. } => self.drive(c, idx),
            _ => {}
        }
    }

    /// A deadline of the connection may have passed.
    fn on_timer<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize, now: Instant) {
        match c.phase {
            Phase::Connecting { deadline, .. }
                if now >= deadline && c.sock.as_ref().is_some_and(Link::is_handshaking) =>
            {
                let msg = format!(
                    "TLS handshake: not complete within {} (is it a TLS server?)",
                    format_duration(self.timeout())
                );
                self.fail(c, idx, now, Failure::new(ErrorKind::Handshake, msg));
            }
            Phase::Connecting { attempt, deadline } if now >= deadline => {
                let target = &self.ctx.spec.targets[c.target];
                self.close_socket(c);
                let timeout = format_duration(self.timeout());
                let failed = format!(
                    "{}: no answer within {timeout}",
                    transport::describe(target, attempt)
                );
                if attempt + 1 < transport::attempts(target) {
                    c.failed_attempts.push((false, failed));
                    self.dial(c, idx, attempt + 1, now, now + self.timeout().into());
                } else {
                    // As in `dial_failed`: a refusal at an earlier address
                    // is the likelier cause.
                    let kind = if c.failed_attempts.iter().any(|(refused, _)| *refused) {
                        ErrorKind::Refused
                    } else {
                        ErrorKind::ConnectTimeout
                    };
                    let msg = every_attempt(c, failed)
                        .unwrap_or_else(|| format!("connect: no answer within {timeout}"));
                    self.fail(c, idx, now, Failure::new(kind, msg));
                }
            }
            Phase::ConnectRetry { at, deadline } => {
                if now >= deadline {
                    let msg = format!(
                        "connect: the listener's backlog stayed full for {}",
                        format_duration(self.timeout())
                    );
                    self.fail(c, idx, now, Failure::new(ErrorKind::ConnectTimeout, msg));
                } else if now >= at {
                    self.dial(c, idx, 0, now, deadline);
                } else {
                    self.reschedule(c, idx);
                }
            }
            Phase::Running => {
                if c.lifetime_end.is_some_and(|end| now >= end) {
                    c.lifetime_end = None;
                    if let Some(p) = c.probe.as_mut() {
                        p.finish();
                    }
                }
                let timeout = self.timeout();
                let r = c.probe.as_mut().map_or(Ok(()), |p| p.handle_timeout(now));
                match r {
                    Ok(()) => self.drive(c, idx),
                    Err(e) => {
                        let mut failure = Failure::probe(e, timeout);
                        if let Some(since) = c.write_blocked_since {
                            failure.not_reading(now.saturating_since(since).into());
                        }
                        self.fail(c, idx, now, failure)
                    }
                }
            }
            Phase::Draining { deadline } if now >= deadline => {
                let msg = format!(
                    "the server did not close within {} after our half-close (shutdown(Write))",
                    format_duration(self.timeout())
                );
                self.fail(c, idx, now, Failure::new(ErrorKind::NoFin, msg));
            }
            _ => self.reschedule(c, idx),
        }
    }

    /// Counts the current connection as opened, and its handshake as
    /// completed, once the server has accepted the handshake: at once but
    /// over TLS 1.3, where the probe's side is done first and a server that
    /// checks the client's certificate refuses only then (see
    /// [`Link::handshake_accepted`]). A connection that ends first counts
    /// too, unless the server refused its handshake ([`Self::fail`]).
    /// Pacing: the messages the end of the duration held back
    /// (`Conn::unsent`, taken by the caller) waited until `now`.
    fn unsent_waited(&mut self, target: usize, unsent: Option<(Instant, u64)>, now: Instant) {
        if let (Some((due, n)), Some(pace)) = (unsent, self.pace) {
            self.rec.unsent(target, due, pace, n, now);
        }
    }

    fn settle<const M: usize>(&mut self, c: &mut Conn<M>) {
        if c.unsettled.is_some() && c.sock.as_ref().is_some_and(Link::handshake_accepted) {
            self.count_opened(c);
        }
    }

    /// Counts the connection waiting in [`Conn::unsettled`] as opened, and
    /// its handshake (timed to the instant it was done) as completed.
    fn count_opened<const M: usize>(&mut self, c: &mut Conn<M>) {
        let Some(o) = c.unsettled.take() else {
            return;
        };
        self.rec.connected(c.target, o.connect);
        if let Some(h) = o.handshake {
            let took = o.at.saturating_since(h.since);
            self.rec.handshake(c.target, o.at, took, h.resumed);
        }
    }

    /// Moves bytes until the socket would block both ways, then reschedules.
    fn drive<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize) {
        let pumped = self.pump(c);
        self.settle(c);
        match pumped {
            Ok(pump::Pumped::Open) => self.reschedule(c, idx),
            Ok(pump::Pumped::Closed) => self.closed(c, idx),
            Err(f) => {
                let now = self.ctx.clock.now();
                self.fail(c, idx, now, f);
            }
        }
    }

    fn reschedule<const M: usize>(&mut self, c: &Conn<M>, idx: usize) {
        self.timers.schedule(idx, c.deadline());
    }

    fn close_socket<const M: usize>(&mut self, c: &mut Conn<M>) {
        if let Some(mut s) = c.sock.take() {
            let _ = self.registry.deregister(s.source());
        }
    }

    /// The connection closed cleanly: count it, then open the slot's next
    /// one if connections churn and there is more to do.
    fn closed<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize) {
        let now = self.ctx.clock.now();
        // A clean end: the server did not refuse the handshake.
        self.count_opened(c);
        self.close_socket(c);
        self.timers.schedule(idx, None);
        // Whether this connection sent anything (a message cut short by
        // an interrupt is bytes, not a message).
        let mut sent_any = c.messages_done > 0;
        if let Some(p) = c.probe.take() {
            c.messages_done += p.stats().messages_sent;
            sent_any |= p.stats().bytes_sent > 0;
            self.rec.tally(c.target).add_stream(p.stats());
        }
        self.rec.completed(c.target, now);
        let spec = self.ctx.spec;
        let more = !self.finishing
            && spec.session_lifetime().is_some()
            && spec.count().is_none_or(|n| c.messages_done < n);
        if more {
            let at = match (self.pace, c.origin) {
                (Some(pace), Some(origin)) => pace.at(origin, c.messages_done),
                _ => now,
            };
            c.phase = Phase::Queued { at };
            self.queue.push(Reverse((at, idx)));
            return;
        }
        c.phase = Phase::Done;
        if self.finishing && !sent_any {
            // Connected only once the run was ending (a slow connect, a
            // SYN sent again): it sent nothing, so nothing of it passed.
            self.rec.tally(c.target).not_started += 1;
        } else {
            self.rec.tally(c.target).connections_ok += 1;
        }
        self.active = self.active.saturating_sub(1);
        self.rec.slot_finished();
    }

    /// The slot failed: record how, free its resources; it opens no further connection.
    fn fail<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize, now: Instant, f: Failure) {
        if matches!(c.phase, Phase::Done | Phase::Failed) {
            return;
        }
        if c.is_connecting() {
            self.connecting = self.connecting.saturating_sub(1);
        }
        self.settle(c);
        if f.is_handshake() {
            // The server refused the handshake done on the probe's side
            // (TLS 1.3): it failed, like one refused before it was done.
            c.unsettled = None;
        } else {
            self.count_opened(c);
        }
        self.close_socket(c);
        let verified = c.probe.as_ref().map_or(0, |p| p.stats().bytes_verified);
        // The messages the end of the duration held back waited until now.
        self.unsent_waited(c.target, c.unsent.take(), now);
        let tally = self.rec.tally(c.target);
        if let Some(p) = c.probe.take() {
            tally.add_stream(p.stats());
        }
        if verified == 0 {
            match f.peer_end() {
                Some(PeerEnd::Reset) => tally.reset_unverified += 1,
                Some(PeerEnd::Closed) => tally.closed_unverified += 1,
                None => {}
            }
        }
        self.timers.schedule(idx, None);
        self.active = self.active.saturating_sub(1);
        self.rec.slot_finished();
        c.phase = Phase::Failed;
        self.rec.error(c.target, now, f.into_error(c.id));
    }
}
