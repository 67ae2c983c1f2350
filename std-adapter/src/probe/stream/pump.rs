//! Moving one connection's bytes: write what its probe offers, verify what
//! comes back, half-close when done; and measuring on the way (round trips
//! both ways, first byte, the probe's own send lateness under pacing).

use std::io;

use ricochet_core::{Instant, Mode};

use super::super::record::Recorder;
use super::super::report::ErrorKind;
use super::Env;
use super::conn::{Conn, Phase};
use super::failure::Failure;

pub(super) enum Pumped {
    /// Still going: wait for readiness or a deadline.
    Open,
    /// Finished cleanly: the server closed after everything verified.
    Closed,
}

impl Env<'_> {
    pub(super) fn pump<const M: usize>(&mut self, c: &mut Conn<M>) -> Result<Pumped, Failure> {
        let clock = self.ctx.clock;
        let timeout = self.timeout();
        let frames = self.ctx.spec.mode == Mode::Frames;
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
                if std::mem::take(&mut c.socket_full) {
                    // Writable again: what the full socket held may go now.
                    c.ready_at = clock.now();
                }
                // Messages held until now may go from `ready_at`: every
                // write of this burst counts their lateness from there (a
                // backlog the server let go at once may take several).
                let held_from = std::mem::take(&mut c.held).then_some(c.ready_at);
                loop {
                    let now = clock.now();
                    let due = probe.next_due();
                    let n = probe.fill_transmit(now, &mut self.wbuf);
                    if n == 0 {
                        if due.is_some_and(|d| now >= d) {
                            // Due, yet the window (or the message in
                            // flight) holds it: not the probe's lateness.
                            c.held = true;
                        }
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
                            c.write_blocked_since = None;
                            if let (Some(d), Some(pace)) = (due, self.pace) {
                                let sent = Sent {
                                    due: d,
                                    pace,
                                    now,
                                    ready_at: held_from,
                                };
                                sent.record(&mut self.rec, c.target, probe.next_due());
                            }
                            progressed = true;
                            if w < n {
                                c.writable = false;
                                c.held = true;
                                c.socket_full = true;
                                c.write_blocked_since = Some(now);
                                break;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                            // The server is not reading (its socket and
                            // ours are full): the messages due meanwhile
                            // wait for it, not for the probe.
                            c.writable = false;
                            c.held = true;
                            c.socket_full = true;
                            c.write_blocked_since.get_or_insert(now);
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
                        if !c.first_byte_seen {
                            c.first_byte_seen = true;
                            self.rec
                                .first_byte(c.target, now.saturating_since(c.dialed_at));
                        }
                        c.ready_at = now;
                        let mut rest = &self.rbuf[..n];
                        while !rest.is_empty() {
                            let start = probe.stats().bytes_verified;
                            let whole = probe.stats().messages_verified;
                            let r = match probe.handle_received(now, rest) {
                                Ok(r) => r,
                                Err(e) => {
                                    let mut f = Failure::probe_in(e, timeout, Some((rest, start)));
                                    if frames {
                                        f.in_frame_header(c.unit_start);
                                    }
                                    // Searched only for the errors shown in detail.
                                    if self.rec.tally(c.target).keeps_details() {
                                        f.where_sent(probe, rest, start);
                                    }
                                    return Err(f);
                                }
                            };
                            if probe.stats().messages_verified > whole {
                                c.unit_start = probe.stats().bytes_verified;
                            }
                            if r.consumed == 0 {
                                return Err(Failure::new(
                                    ErrorKind::Io,
                                    "the probe accepted no bytes".into(),
                                ));
                            }
                            self.rec.verified(c.target, now, r.consumed);
                            if let Some(rtt) = r.round_trip {
                                let sent = r.since_sent.unwrap_or(rtt);
                                self.rec.round_trip(c.target, now, rtt, sent);
                                if let Some(at) = c.piece_at.take() {
                                    self.rec.split_echo(c.target, now, now.saturating_since(at));
                                }
                            } else if c.piece_at.is_none() {
                                c.piece_at = Some(now);
                            }
                            rest = &rest[r.consumed..];
                        }
                        progressed = true;
                        // A short read drained the socket: the next arrival
                        // is a new edge, so skip the read that would only
                        // say EAGAIN (one syscall less per round trip). Not
                        // when a FIN is already known to be queued, or the link
                        // already knows the end (TLS: the read stopped early).
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
                // Everything sent came back: the messages the end of the
                // duration held back could have gone now.
                self.unsent_waited(c.target, c.unsent.take(), clock.now());
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
}

/// The most messages of one write whose lateness is recorded one by one.
const LATENESS_SAMPLES: u64 = 4096;

/// A write that began paced messages at `now`: the first was due at `due`,
/// the next ones `pace` apart.
struct Sent {
    due: Instant,
    pace: ricochet_core::Pace,
    now: Instant,
    /// When the messages were held (due, but the window, the message
    /// before or a full socket kept them back): the last read, or the
    /// socket taking bytes again, from which they could go.
    ready_at: Option<Instant>,
}

impl Sent {
    /// Records each begun message's lateness: from its due instant, or for
    /// a held one from the moment it could go (waiting for the server is
    /// the server's latency, not the probe's lateness). `next_due` is the
    /// probe's after the write.
    fn record(&self, rec: &mut Recorder, target: usize, next_due: Option<Instant>) {
        let begun = match next_due {
            Some(next) => self.pace.due_by(self.due, next),
            // The last message began (or the probe was told to finish): count one.
            None => 1,
        };
        for i in 0..begun.min(LATENESS_SAMPLES) {
            let due = self.pace.at(self.due, i);
            let ready = self.ready_at.map_or(due, |r| due.max(r));
            rec.lateness(target, self.now, self.now.saturating_since(ready));
        }
    }
}
