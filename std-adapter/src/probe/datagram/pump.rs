//! One socket's I/O step: send what the core's probe allows, then read and
//! verify what came back, until neither moves.

use std::io;

use mio::net::UdpSocket;
use ricochet_core::probe::{DATAGRAM_HEADER, DatagramOutcome};

use super::super::report::{ConnError, ErrorKind};
use super::super::units::count_of;
use super::{Conn, Env, Probe, Target, corrupt_message, ring_index};
use crate::serve::Scoped;

/// Most datagrams one pump reads: a peer that sends without end (a flood,
/// a server that answers many times over) cannot hold the thread in one
/// socket past its duration, its timers and its other sockets. The rest
/// is read when the socket is driven again, at once ([`Conn::backlog`]).
pub(super) const RECV_BUDGET: usize = 64;

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
            let mut taken = 0;
            while c.readable {
                if taken == RECV_BUDGET {
                    c.backlog = true;
                    break;
                }
                match sock.recv(&mut self.rbuf) {
                    Ok(n) => {
                        taken += 1;
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
            if !progressed || c.backlog {
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
    use std::time::{Duration as StdDuration, Instant as StdInstant};

    use ricochet_core::probe::SizeRange;

    use super::super::super::Pattern;
    use super::super::rig::{
        STEP, await_datagram, echo_next, receive, server, spec_to, stats, with_socket,
    };
    use super::*;

    #[test]
    fn ping_pong_socket_sends_the_next_datagram_in_the_step_that_reads_the_echo() {
        let srv = server();
        let spec = spec_to(srv.local_addr().expect("addr"), 3);
        with_socket(&spec, |env, c, poll| {
            assert_eq!(env.pump(c), Ok(false));
            assert_eq!(stats(c).sent, 1, "a window of one");
            assert_eq!(c.bytes_sent, 64);
            for i in 1..=3u64 {
                let d = echo_next(&srv, poll, c);
                assert_eq!(d.len(), 64);
                assert_eq!(d[..8], (i - 1).to_be_bytes());
                let done = env.pump(c);
                let s = stats(c);
                assert_eq!(s.verified, i);
                assert_eq!(env.rec.tally(0).window_bytes, 64 * i);
                assert_eq!(env.rec.tally(0).round_trips(), i);
                if i < 3 {
                    assert_eq!(done, Ok(false));
                    assert_eq!((s.sent, c.bytes_sent), (i + 1, 64 * (i + 1)));
                    assert!(!c.readable, "read until it would block");
                } else {
                    assert_eq!(done, Ok(true), "all 3 verified");
                    assert_eq!((s.sent, c.bytes_sent), (3, 192));
                }
            }
        });
    }

    #[test]
    fn unwritable_socket_reads_its_echo_and_sends_nothing() {
        let srv = server();
        let spec = spec_to(srv.local_addr().expect("addr"), 2);
        with_socket(&spec, |env, c, poll| {
            assert_eq!(env.pump(c), Ok(false));
            echo_next(&srv, poll, c);
            // The socket's send buffer was full (a send would block): only
            // its writable event lets it send again.
            c.writable = false;
            assert_eq!(env.pump(c), Ok(false));
            assert_eq!((stats(c).verified, stats(c).sent), (1, 1));
            c.writable = true;
            assert_eq!(env.pump(c), Ok(false));
            assert_eq!(stats(c).sent, 2);
        });
    }

    #[test]
    fn window_of_four_sends_four_then_one_more_per_echo() {
        let srv = server();
        let mut spec = spec_to(srv.local_addr().expect("addr"), 10);
        spec.pattern = Pattern::Stream;
        spec.window = 4 * 64;
        with_socket(&spec, |env, c, poll| {
            assert_eq!(env.pump(c), Ok(false));
            assert_eq!(stats(c).sent, 4);
            echo_next(&srv, poll, c);
            assert_eq!(env.pump(c), Ok(false));
            assert_eq!((stats(c).verified, stats(c).sent), (1, 5));
            assert_eq!(c.bytes_sent, 5 * 64);
        });
    }

    #[test]
    fn paced_datagram_due_while_the_window_holds_it_is_late_only_from_the_echo() {
        let srv = server();
        let mut spec = spec_to(srv.local_addr().expect("addr"), 2);
        spec.rate = Some(1000.0); // 1 ms apart
        with_socket(&spec, |env, c, poll| {
            // Not synchronisation: the socket starts 200 ms behind its
            // schedule, so when datagram 0 goes, 1 is due already and the
            // window (of one) holds it until 0's echo.
            std::thread::sleep(StdDuration::from_millis(200));
            assert_eq!(env.pump(c), Ok(false));
            assert_eq!(stats(c).sent, 1);
            echo_next(&srv, poll, c);
            let before = env.ctx.clock.now();
            assert_eq!(env.pump(c), Ok(false));
            let step = env.ctx.clock.now().saturating_since(before).as_micros();
            assert_eq!(stats(c).sent, 2);
            let late = &env.rec.tally(0).late;
            assert_eq!(late.len(), 2);
            assert!(late.max() >= 200_000, "datagram 0 left 200 ms late");
            // Datagram 1 went in the step that read the echo freeing the
            // window: the 200 ms were the window's wait, not the probe's
            // lateness, which is at most the step's span.
            assert!(
                late.min() <= step,
                "{} us late in a step of {step} us",
                late.min()
            );
        });
    }

    #[test]
    fn corrupt_echo_is_an_error_naming_its_datagram_and_frees_the_window() {
        let srv = server();
        let spec = spec_to(srv.local_addr().expect("addr"), 2);
        with_socket(&spec, |env, c, poll| {
            assert_eq!(env.pump(c), Ok(false));
            let (mut d, from) = receive(&srv);
            d[40] ^= 0x5a;
            srv.send_to(&d, from).expect("echo");
            await_datagram(poll, c);
            assert_eq!(env.pump(c), Ok(false));
            let s = stats(c);
            assert_eq!((s.corrupt, s.verified, s.sent), (1, 0, 2));
            let t = env.rec.tally(0);
            assert_eq!((t.errors.corrupt, t.window_bytes), (1, 0));
            let e = &t.details[0];
            assert_eq!(
                (e.kind, e.connection, e.offset),
                (ErrorKind::Corrupt, Some(0), Some(0))
            );
            assert_eq!(e.message, "datagram 0 came back altered (64 bytes)");
        });
    }

    #[test]
    fn foreign_datagrams_shorter_than_the_header_are_counted_with_the_shortest() {
        let srv = server();
        let spec = spec_to(srv.local_addr().expect("addr"), 1);
        with_socket(&spec, |env, c, poll| {
            assert_eq!(env.pump(c), Ok(false));
            let (_, from) = receive(&srv);
            // Two shorter than the 12-byte header, one of exactly 12 and
            // one longer, none with the probe's tag.
            for n in [7, 5, DATAGRAM_HEADER, 40] {
                srv.send_to(&vec![0xee; n], from).expect("send");
            }
            let deadline = StdInstant::now() + STEP;
            while stats(c).foreign < 4 {
                assert!(StdInstant::now() < deadline, "4 foreign datagrams read");
                await_datagram(poll, c);
                assert_eq!(env.pump(c), Ok(false));
            }
            let t = env.rec.tally(0);
            assert_eq!((t.foreign_short, t.foreign_shortest), (2, Some(5)));
        });
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn refusal_read_from_the_socket_fails_it_as_refused() {
        let addr = server().local_addr().expect("addr"); // closed at once
        let spec = spec_to(addr, 2);
        with_socket(&spec, |env, c, poll| {
            assert_eq!(env.pump(c), Ok(false));
            super::super::rig::await_error(poll);
            c.readable = true;
            let (kind, msg) = env.pump(c).expect_err("refused");
            assert_eq!(kind, ErrorKind::Refused, "{msg}");
            assert_eq!(
                msg,
                format!("no UDP echo server at udp://{addr} (ICMP port unreachable)")
            );
        });
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn refusal_reported_by_a_send_fails_the_socket_as_refused() {
        let addr = server().local_addr().expect("addr"); // closed at once
        let mut spec = spec_to(addr, 2);
        // The unanswered datagram holds the window for a fiftieth: 10 ms.
        spec.timeout = StdDuration::from_millis(500);
        with_socket(&spec, |env, c, poll| {
            let (kind, msg) = match env.pump(c) {
                // A busy machine can let the window free inside the first
                // pump: its second send meets the refusal there.
                Err(refused) => refused,
                Ok(more) => {
                    assert!(!more, "the window holds the second datagram");
                    super::super::rig::await_error(poll);
                    // Not synchronisation: the window frees once the first
                    // datagram is overdue, and the next send meets the
                    // pending refusal.
                    let probe = c.probe.as_ref().expect("probe");
                    let now = env.ctx.clock.now();
                    let frees_at = probe.in_flight_recent(now).1.expect("in flight");
                    std::thread::sleep(
                        env.ctx
                            .clock
                            .to_std(frees_at)
                            .saturating_duration_since(StdInstant::now()),
                    );
                    assert!(!c.readable, "the error is met by the send");
                    env.pump(c).expect_err("refused")
                }
            };
            assert_eq!(kind, ErrorKind::Refused, "{msg}");
            assert_eq!(stats(c).sent, 2);
            assert_eq!(c.bytes_sent, 64, "the refused send sent nothing");
        });
    }

    #[test]
    fn send_failing_otherwise_fails_the_socket_naming_the_send() {
        let srv = server();
        let mut spec = spec_to(srv.local_addr().expect("addr"), 1);
        // More than an IPv4 datagram holds (the spec's check bypassed):
        // EMSGSIZE.
        spec.size = SizeRange::fixed(ricochet_core::probe::UDP_MAX_V6);
        with_socket(&spec, |env, c, _| {
            let (kind, msg) = env.pump(c).expect_err("the send fails");
            assert_eq!(kind, ErrorKind::Io, "{msg}");
            assert!(msg.starts_with("send: "), "{msg}");
            assert_eq!(env.rec.tally(0).send_blocked, 0);
        });
    }

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
