//! One socket's I/O step: send what the core's probe allows, then read and
//! verify what came back, until neither moves.

use std::io;

use mio::net::UdpSocket;
use ricochet_core::probe::{DATAGRAM_HEADER, DatagramOutcome};

use super::super::report::{ConnError, ErrorKind};
use super::super::units::count_of;
use super::{Conn, Env, Probe, Target, corrupt_message, ring_index};
use crate::serve::Scoped;

impl Env<'_> {
    /// Sends what the probe allows and verifies what came back; `Ok(true)`
    /// when the probe is done.
    pub(super) fn pump(&mut self, c: &mut Conn) -> Result<bool, (ErrorKind, String)> {
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
        // An ICMP port unreachable is reported by the next send or recv,
        // ahead of any echo already queued on the socket (an echo the
        // server sent before it closed, when this socket sent again before
        // reading it): the refusal waits until the queue is read, so those
        // echoes count as verified rather than lost in flight.
        let mut refusal = false;
        loop {
            let mut progressed = false;
            while c.writable && !refusal {
                let now = clock.now();
                let due = probe.next_due();
                let sent = if self.may_send(probe, now) {
                    probe.poll_transmit(now, &mut self.wbuf)
                } else {
                    None
                };
                let Some(n) = sent else {
                    if due.is_some_and(|d| now >= d) {
                        // Due, yet the window holds it: not the probe's lateness.
                        c.held = true;
                    }
                    break;
                };
                if let Some(d) = due.filter(|_| self.pace) {
                    let ready = if std::mem::take(&mut c.held) {
                        d.max(c.ready_at)
                    } else {
                        d
                    };
                    self.rec
                        .lateness(c.target, now, now.saturating_since(ready));
                }
                progressed = true;
                let seq = probe.stats().sent.saturating_sub(1);
                c.sent_len[ring_index(seq)] = n as u32;
                match sock.send(&self.wbuf[..n]) {
                    Ok(_) => c.bytes_sent += n as u64,
                    // The probe counted the datagram as sent: it will count as lost.
                    Err(e)
                        if matches!(
                            e.kind(),
                            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                        ) =>
                    {
                        self.rec.tally(c.target).send_blocked += 1;
                        c.writable = e.kind() == io::ErrorKind::Interrupted;
                    }
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                        refusal = true;
                        c.readable = true;
                    }
                    Err(e) => return Err((ErrorKind::Io, format!("send: {e}"))),
                }
            }
            while c.readable {
                match sock.recv(&mut self.rbuf) {
                    Ok(n) => {
                        progressed = true;
                        let now = clock.now();
                        c.ready_at = now;
                        match probe.handle_datagram(now, &self.rbuf[..n]) {
                            DatagramOutcome::Verified {
                                round_trip,
                                since_sent,
                            } => {
                                self.rec.verified(c.target, now, n);
                                self.rec.round_trip(c.target, now, round_trip, since_sent);
                            }
                            DatagramOutcome::Corrupt { seq } => {
                                let sent = c.sent_len[ring_index(seq)] as usize;
                                let e = ConnError {
                                    connection: Some(c.id),
                                    kind: ErrorKind::Corrupt,
                                    offset: Some(seq),
                                    expected: None,
                                    actual: None,
                                    message: corrupt_message(seq, n, sent),
                                };
                                self.rec.error(c.target, now, e);
                            }
                            DatagramOutcome::Foreign if n < DATAGRAM_HEADER => {
                                let tally = self.rec.tally(c.target);
                                tally.foreign_short += 1;
                                tally.foreign_shortest =
                                    Some(tally.foreign_shortest.map_or(n, |s| s.min(n)));
                            }
                            // Counted by the probe's stats; reported as warnings.
                            _ => {}
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => c.readable = false,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => refusal = true,
                    Err(e) => return Err((ErrorKind::Io, format!("recv: {e}"))),
                }
            }
            if refusal {
                let target = self.ctx.spec.targets.get(c.target);
                return Err(refused(target, c.addr_idx, probe.stats().verified));
            }
            if probe.is_done() {
                return Ok(true);
            }
            if !progressed {
                return Ok(false);
            }
        }
    }
}

/// The error of a socket refused (an ICMP port unreachable) at attempt
/// `addr_idx` of `target`, after `verified` datagrams came back: with none,
/// no server is there; with some, it was there and stopped (or serves one
/// peer at a time).
fn refused(target: Option<&Target>, addr_idx: usize, verified: u64) -> (ErrorKind, String) {
    // Where the socket sends: the target's address it moved on to, and
    // those refused before it (a name that resolves to several).
    let (at, before) = match target {
        Some(Target::Udp(addrs)) if addr_idx < addrs.len() => {
            let before: Vec<String> = addrs[..addr_idx]
                .iter()
                .map(|a| Scoped(*a).to_string())
                .collect();
            let before = match before.len() {
                0 => String::new(),
                1 => format!(" nor at the address before it, {}", before[0]),
                _ => format!(" nor at the addresses before it, {}", before.join(", ")),
            };
            (format!(" at udp://{}", Scoped(addrs[addr_idx])), before)
        }
        Some(t) => (format!(" at {t}"), String::new()),
        None => (String::new(), String::new()),
    };
    let msg = if verified == 0 {
        format!("no UDP echo server{at}{before} (ICMP port unreachable)")
    } else {
        format!(
            "the UDP echo server{at} stopped answering after {} came back (ICMP port \
             unreachable)",
            count_of(verified, "datagram")
        )
    };
    (ErrorKind::Refused, msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusal_names_each_address_tried_as_written() {
        let lo = crate::serve::parse_scoped_addr("[fe80::1%lo]:7")
            .unwrap()
            .unwrap();
        let v4 = "127.0.0.1:7".parse().unwrap();
        let target = Target::Udp(vec![v4, lo].into());
        let (kind, msg) = refused(Some(&target), 1, 0);
        assert_eq!(kind, ErrorKind::Refused);
        assert_eq!(
            msg,
            "no UDP echo server at udp://[fe80::1%lo]:7 nor at the address before it, \
             127.0.0.1:7 (ICMP port unreachable)"
        );
        let (_, msg) = refused(Some(&target), 0, 3);
        assert_eq!(
            msg,
            "the UDP echo server at udp://127.0.0.1:7 stopped answering after 3 datagrams \
             came back (ICMP port unreachable)"
        );
    }

    #[test]
    fn refusal_at_the_only_address_tried_names_no_address_before_it() {
        let target = Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into());
        let (_, msg) = refused(Some(&target), 0, 0);
        assert_eq!(
            msg,
            "no UDP echo server at udp://127.0.0.1:7 (ICMP port unreachable)"
        );
    }

    #[test]
    fn refusal_at_an_attempt_past_the_addresses_names_the_target_as_given() {
        let target = Target::Udp(vec!["127.0.0.1:7".parse().unwrap()].into());
        let (_, msg) = refused(Some(&target), 1, 0);
        assert_eq!(
            msg,
            format!("no UDP echo server at {target} (ICMP port unreachable)")
        );
        let (_, msg) = refused(None, 0, 0);
        assert_eq!(msg, "no UDP echo server (ICMP port unreachable)");
    }
}
