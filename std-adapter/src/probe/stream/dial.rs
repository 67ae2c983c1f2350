//! Opening a slot's connections: the queue of slots waiting for a connect
//! (bounded by the connects in flight and `--connect-rate`), dialing each
//! address a target resolves to in turn, and what a failed connect says.

use std::cmp::Reverse;
use std::io;
use std::time::Duration as StdDuration;

use mio::{Interest, Token};
use ricochet_core::{Instant, StreamProbe};

use super::Env;
use super::conn::{Conn, Opened, Phase};
use super::failure::Failure;
use crate::probe::report::ErrorKind;
use crate::probe::spec::Lifetime;
use crate::probe::transport::{self, Dialed, Link};

/// A Unix connect refused for a full backlog is retried after this long.
const UNIX_RETRY: StdDuration = StdDuration::from_millis(1);

/// A connect that failed at its last address (`last`, "ADDRESS: error")
/// after failing at others: each address and how it failed, in the order
/// tried (the last one's error alone may mislead: "Network is unreachable"
/// from an address with no route, where a server meant to be on loopback
/// refused before it). `None` when there was one address only.
pub(super) fn every_attempt<const M: usize>(c: &mut Conn<M>, last: String) -> Option<String> {
    if c.failed_attempts.is_empty() {
        return None;
    }
    let mut each: Vec<String> = c.failed_attempts.drain(..).map(|(_, f)| f).collect();
    each.push(last);
    Some(format!(
        "connect failed at each of {} addresses: {}",
        each.len(),
        each.join("; ")
    ))
}

impl Env<'_> {
    /// Starts the queued slots whose time has come, as the connects in
    /// flight and the connect rate allow; returns when the next one may start.
    pub(super) fn launch<const M: usize>(
        &mut self,
        conns: &mut [Conn<M>],
        now: Instant,
    ) -> Option<Instant> {
        if self.finishing {
            return None;
        }
        while self.connecting < self.ctx.connect_limit() {
            let &Reverse((at, idx)) = self.queue.peek()?;
            if at > now {
                return Some(at);
            }
            if let Some(when) = self.gate.wait_until(now) {
                return Some(when);
            }
            self.queue.pop();
            let Some(c) = conns.get_mut(idx) else {
                continue;
            };
            if !matches!(c.phase, Phase::Queued { .. }) {
                continue;
            }
            self.gate.take(now);
            self.start(c, idx, now);
        }
        None // the connects in flight are the limit: a connect finishing moves on
    }

    /// The run is finishing: queued slots open no further connection. Those
    /// that never connected count as not started.
    pub(super) fn drop_queue<const M: usize>(&mut self, conns: &mut [Conn<M>]) {
        while let Some(Reverse((_, idx))) = self.queue.pop() {
            let Some(c) = conns.get_mut(idx) else {
                continue;
            };
            if !matches!(c.phase, Phase::Queued { .. }) {
                continue;
            }
            if c.sessions == 0 {
                self.rec.tally(c.target).not_started += 1;
            } else {
                self.rec.tally(c.target).connections_ok += 1;
            }
            c.phase = Phase::Done;
            self.active = self.active.saturating_sub(1);
            self.rec.slot_finished();
        }
    }

    /// Opens slot `idx`'s next connection.
    pub(super) fn start<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize, now: Instant) {
        self.connecting += 1;
        c.dialed_at = now;
        c.failed_attempts.clear();
        let deadline = now + self.timeout().into();
        // Connecting from now on, so a connect that fails at once gives its
        // place back (`fail` counts it out of the connects in flight).
        c.phase = Phase::Connecting {
            attempt: 0,
            deadline,
        };
        self.dial(c, idx, 0, now, deadline);
    }

    /// Dials attempt `attempt` of the slot's target; a full Unix backlog is
    /// retried until `deadline`.
    pub(super) fn dial<const M: usize>(
        &mut self,
        c: &mut Conn<M>,
        idx: usize,
        attempt: usize,
        now: Instant,
        deadline: Instant,
    ) {
        let target = &self.ctx.spec.targets[c.target];
        let tls = self.ctx.tls.get(c.target).and_then(Option::as_ref);
        match transport::dial(target, attempt, tls) {
            Ok(Dialed::Link(mut link)) => {
                if let Err(e) = self.registry.register(
                    link.source(),
                    Token(idx),
                    Interest::READABLE | Interest::WRITABLE,
                ) {
                    let msg = format!("register: {e}");
                    return self.fail(c, idx, now, Failure::new(ErrorKind::Io, msg));
                }
                c.sock = Some(link);
                (c.readable, c.writable, c.read_closed) = (false, false, false);
                c.phase = Phase::Connecting {
                    attempt,
                    deadline: now + self.timeout().into(),
                };
                // A Unix connect is complete at once; TCP says so with an event.
                self.on_ready(c, idx);
                if matches!(c.phase, Phase::Connecting { .. }) {
                    self.reschedule(c, idx);
                }
            }
            Ok(Dialed::BacklogFull) => {
                c.phase = Phase::ConnectRetry {
                    at: now + UNIX_RETRY.into(),
                    deadline,
                };
                self.reschedule(c, idx);
            }
            Err(e) => self.dial_failed(c, idx, attempt, &e, now),
        }
    }

    /// A connect attempt failed: try the next address or give up.
    pub(super) fn dial_failed<const M: usize>(
        &mut self,
        c: &mut Conn<M>,
        idx: usize,
        attempt: usize,
        e: &io::Error,
        now: Instant,
    ) {
        self.close_socket(c);
        let target = &self.ctx.spec.targets[c.target];
        let refused = matches!(
            e.kind(),
            io::ErrorKind::ConnectionRefused | io::ErrorKind::NotFound
        );
        let failed = transport::failed_at(target, attempt, e);
        if attempt + 1 < transport::attempts(target) {
            c.failed_attempts.push((refused, failed));
            return self.dial(c, idx, attempt + 1, now, now + self.timeout().into());
        }
        // A refusal anywhere says the host is there and nothing listens:
        // the likeliest cause, whatever the last address said.
        let kind = if refused || c.failed_attempts.iter().any(|(r, _)| *r) {
            ErrorKind::Refused
        } else {
            ErrorKind::Io
        };
        let msg = match every_attempt(c, failed.clone()) {
            Some(all) => all,
            None => format!("connect to {failed}"),
        };
        self.fail(c, idx, now, Failure::new(kind, msg));
    }

    /// The connection is ready: create its probe and start sending. It
    /// counts as opened once the server accepted its handshake ([`Self::settle`]).
    pub(super) fn connected<const M: usize>(&mut self, c: &mut Conn<M>, idx: usize, now: Instant) {
        self.connecting = self.connecting.saturating_sub(1);
        c.unsettled = Some(Opened {
            at: now,
            connect: now.saturating_since(c.dialed_at),
            handshake: c.sock.as_ref().and_then(Link::handshake),
        });
        self.settle(c);
        let spec = self.ctx.spec;
        let count = self.session_count(c);
        // Under pacing the slot's schedule runs on: this connection's first
        // message was due when the previous connection's next one would have been.
        // The first connection's schedule starts its slot's phase into the
        // pacing interval: the slots' messages are spread over it.
        let due = match (self.pace, c.origin) {
            (Some(pace), Some(origin)) => pace.at(origin, c.messages_done),
            (Some(_), None) => {
                let origin = now + spec.phase(c.id);
                c.origin = Some(origin);
                origin
            }
            (None, _) => now,
        };
        let config = spec.stream_config(c.id, c.sessions, count);
        match StreamProbe::<M>::with_schedule(config, now, due) {
            Ok(mut p) => {
                if self.finishing {
                    p.finish();
                }
                c.probe = Some(Box::new(p));
            }
            Err(e) => {
                let msg = format!("probe configuration: {e}");
                return self.fail(c, idx, now, Failure::new(ErrorKind::Io, msg));
            }
        }
        c.sessions += 1;
        c.phase = Phase::Running;
        c.first_byte_seen = false;
        c.piece_at = None;
        c.write_blocked_since = None;
        c.unit_start = 0;
        c.held = true;
        c.ready_at = now;
        c.lifetime_end = match spec.session_lifetime() {
            Some(Lifetime::Time(d)) => Some(now + d.into()),
            _ => None,
        };
        c.writable = true;
        self.drive(c, idx);
    }
}
