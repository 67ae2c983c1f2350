//! TCP echo: a pool of `N` smoltcp sockets, each driven by the core's
//! [`Pump`] while connected.
//!
//! Every free socket listens on one of the ports served (the echo port,
//! and the extra ports of other modes), so up to `N` clients are served at
//! once; a client beyond that is refused by smoltcp with a RST (no socket
//! accepts its SYN) and can retry. After every service the free sockets are
//! spread over the ports ([`shares`]): one at a time to the port with the
//! fewest connections and listeners together, so every port keeps a
//! listener while there are at least as many free sockets as ports, and a
//! busy port yields to idle ones (with 4 sockets and 3 ports: one client
//! per port always, and up to 2 on one port while the others are idle). A
//! listening socket moves by `abort()` (nothing goes out on the wire for a
//! socket in `LISTEN`) and `listen()` on its new port.
//!
//! The pump does the echo, the graceful close (FIN after everything queued),
//! the linger (until the peer's FIN and the acknowledgement of everything
//! sent, counted from the last delivery progress), the abort, and the
//! counting. This module adds only what smoltcp needs around it: accepting,
//! a bound on handshakes, and waiting for an abort's RST to go out (and,
//! after a close that ends in TIME-WAIT, for the ACK of the peer's FIN: a
//! socket that listens forgets what it owed). One slot's cycle:
//!
//! ```text
//!  Listening --SYN--> Handshake --ACK--> Serving(pump) --Release(Close)----------> Listening
//!      ^  ^               |                   |
//!      |  +--timeout------+                   +--Release(Reset | Abandon): abort()--> Resetting
//!      +--------------- listen() once the RST went out (or the linger time passed) -----+
//! ```
//!
//! smoltcp 0.14 does not say why a connection died. A peer's RST is
//! processed when a frame comes in, smoltcp's socket timeout fires when the
//! interface sends; so a socket found dead by a service that follows a
//! sending round, at least the socket timeout after the last sign of the
//! peer's life the node saw, timed out ([`Failure::TimedOut`]); any other
//! death is a reset ([`Failure::Reset`]).

use ricochet_core::pump::{Failure, Next, ReadOutcome, Teardown, Transport, WriteOutcome};
use ricochet_core::{Duration, Event, Instant, Pump, SessionConfig};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, RecvError};

use crate::clock;
use crate::config::{MAX_EXTRA_PORTS, ModePort, TcpConfig};
use crate::stats::NodeStats;

/// What the interface did since the previous service: the node services
/// the sockets after each frame it takes in and after each sending round,
/// so it is one or the other (or nothing at all).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum After {
    /// It took in one frame: a peer's RST may have closed a socket.
    Ingress,
    /// It sent, or did nothing: smoltcp's timeout may have closed a socket.
    Egress,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The socket listens.
    Listening,
    /// A SYN was answered at `since`; waiting for the client's ACK.
    Handshake { since: Instant },
    /// Connected; the slot's pump decides.
    Serving(Link),
    /// Aborted at `since`; waiting for the RST to go out.
    Resetting { since: Instant },
}

/// One socket of the pool.
#[derive(Clone, Copy, Debug)]
struct Slot {
    handle: SocketHandle,
    phase: Phase,
    /// The index in `Settings::ports` of the port the socket last listened
    /// on (the one it serves while connected).
    port: usize,
}

/// The most TCP ports one pool serves.
const MAX_PORTS: usize = 1 + MAX_EXTRA_PORTS;

/// The TCP echo pool.
pub(crate) struct StreamEcho<'a, const N: usize> {
    slots: [Slot; N],
    /// One per socket, over a session buffer of the resources, re-armed in
    /// place for each connection.
    pumps: &'a mut [Pump<&'a mut [u8]>],
    settings: Settings,
}

/// What every slot is served with (the socket timeout is the socket's
/// own).
struct Settings {
    /// The ports served, the first `count` of them.
    ports: [ModePort; MAX_PORTS],
    count: usize,
    /// Each connection's session settings, but for the mode: its port's.
    session: SessionConfig,
    handshake_timeout: Duration,
}

impl<'a, const N: usize> StreamEcho<'a, N> {
    /// Takes over the TCP sockets `handles` (already in `sockets`) and
    /// starts listening on all of them, spread over `ports` (at most
    /// [`MAX_PORTS`] are served; `EchoNode::new` checked that there are no
    /// more, and no fewer sockets); `pumps` holds one per socket.
    pub(crate) fn new(
        handles: [SocketHandle; N],
        pumps: &'a mut [Pump<&'a mut [u8]>],
        ports: impl Iterator<Item = ModePort>,
        session: SessionConfig,
        tcp: &TcpConfig,
        sockets: &mut SocketSet<'_>,
    ) -> Self {
        let mut served = [ModePort {
            port: 0,
            mode: session.mode,
        }; MAX_PORTS];
        let mut count = 0;
        for (slot, port) in served.iter_mut().zip(ports) {
            *slot = port;
            count += 1;
        }
        let settings = Settings {
            ports: served,
            count,
            session,
            handshake_timeout: tcp.handshake_timeout,
        };
        let mut slots = handles.map(|handle| Slot {
            handle,
            phase: Phase::Listening,
            port: 0,
        });
        for (index, slot) in slots.iter_mut().enumerate() {
            slot.port = index % count.max(1);
            listen(
                sockets.get_mut::<tcp::Socket<'_>>(slot.handle),
                settings.port(slot.port),
            );
        }
        StreamEcho {
            slots,
            pumps,
            settings,
        }
    }

    /// Accepts, drives, releases and re-arms, for every socket. Returns
    /// whether any byte moved.
    pub(crate) fn service(
        &mut self,
        now: Instant,
        after: After,
        sockets: &mut SocketSet<'_>,
        stats: &mut NodeStats,
    ) -> bool {
        let moved_before = stats.tcp.bytes_in.wrapping_add(stats.tcp.bytes_out);
        let settings = &self.settings;
        let slots = self.slots.iter_mut().zip(self.pumps.iter_mut());
        for (index, (slot, pump)) in slots.enumerate() {
            let socket = sockets.get_mut::<tcp::Socket<'_>>(slot.handle);
            if let Phase::Listening | Phase::Handshake { .. } = slot.phase {
                slot.phase = settings.accept(index, socket, slot, pump, now, stats);
            }
            if let Phase::Serving(link) = &mut slot.phase {
                link.observe(socket, now);
                let timeout = socket.timeout().map(clock::duration_to_core);
                let death = link.death(now, after, timeout);
                pump.set_ready();
                let mut connection = Connection {
                    socket,
                    link,
                    now,
                    death,
                };
                let next = pump.drive(now, &mut connection, usize::MAX, &mut stats.tcp);
                link.settle(socket);
                log_events(index, pump);
                slot.phase = match next {
                    // The budget is unbounded: a drive ends only when
                    // nothing moves, so `Yield` does not occur.
                    Next::Wait { .. } | Next::Yield => continue,
                    // A frame just moved it into TIME-WAIT, the peer's FIN
                    // perhaps: the ACK owed goes out in the sending round
                    // next (see `shutdown_write`), which listening now
                    // would forget (the peer's retransmitted FIN would then
                    // get a reset). Listens after that round.
                    Next::Release(Teardown::Close)
                        if after == After::Ingress && socket.state() == tcp::State::TimeWait =>
                    {
                        continue;
                    }
                    Next::Release(Teardown::Close) if listen(socket, settings.port(slot.port)) => {
                        Phase::Listening
                    }
                    Next::Release(how) => {
                        if how == Teardown::Abandon {
                            debug!("tcp[{}]: linger expired in {}", index, socket.state());
                        }
                        socket.abort();
                        Phase::Resetting { since: now }
                    }
                };
            }
            if let Phase::Resetting { since } = slot.phase {
                // After `abort()` the socket is closed but still knows its
                // peer until the RST went out. One that cannot go out (no
                // route, no ARP answer) is given up after the linger time.
                let sent = socket.remote_endpoint().is_none();
                let linger = pump.session().config().linger;
                if (sent || now >= since + linger) && listen(socket, settings.port(slot.port)) {
                    slot.phase = Phase::Listening;
                }
            }
        }
        self.spread(sockets);
        stats.tcp.bytes_in.wrapping_add(stats.tcp.bytes_out) != moved_before
    }

    /// Moves listening sockets between ports until each has its share of
    /// the free ones (see the module docs and [`shares`]).
    fn spread(&mut self, sockets: &mut SocketSet<'_>) {
        let count = self.settings.count;
        if count < 2 {
            return;
        }
        let mut busy = [0; MAX_PORTS];
        let mut listening = [0; MAX_PORTS];
        for slot in &self.slots {
            let tally = match slot.phase {
                Phase::Listening => &mut listening,
                Phase::Handshake { .. } | Phase::Serving(_) => &mut busy,
                Phase::Resetting { .. } => continue,
            };
            if let Some(n) = tally.get_mut(slot.port) {
                *n += 1;
            }
        }
        let free = listening.iter().sum();
        let want = shares(busy.get(..count).unwrap_or(&busy), free);
        for (to, &wanted) in want.iter().enumerate().take(count) {
            while listening.get(to).is_some_and(|&have| have < wanted) {
                // A port holding more listeners than its share gives one.
                let from = (0..count).find(|&p| {
                    listening
                        .get(p)
                        .zip(want.get(p))
                        .is_some_and(|(h, w)| h > w)
                });
                let slot = from.and_then(|from| {
                    self.slots
                        .iter_mut()
                        .find(|s| s.phase == Phase::Listening && s.port == from)
                });
                let (Some(from), Some(slot)) = (from, slot) else {
                    return;
                };
                let socket = sockets.get_mut::<tcp::Socket<'_>>(slot.handle);
                // A socket in LISTEN sends nothing when it is closed.
                socket.abort();
                slot.port = to;
                if let Some(n) = listening.get_mut(from) {
                    *n -= 1;
                }
                if !listen(socket, self.settings.port(to)) {
                    // Tried again by the next service, as after a reset.
                    slot.phase = Phase::Resetting {
                        since: Instant::ZERO,
                    };
                    return;
                }
                if let Some(n) = listening.get_mut(to) {
                    *n += 1;
                }
            }
        }
    }

    /// The earliest instant at which a session, a handshake or a reset
    /// needs [`service`](Self::service).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let settings = &self.settings;
        self.slots
            .iter()
            .zip(self.pumps.iter())
            .filter_map(|(slot, pump)| match slot.phase {
                Phase::Listening => None,
                Phase::Handshake { since } => Some(since + settings.handshake_timeout),
                Phase::Serving(_) => pump.poll_timeout(),
                Phase::Resetting { since } => Some(since + pump.session().config().linger),
            })
            .min()
    }

    /// Bytes held by each session being served now.
    pub(crate) fn buffered(&self) -> impl Iterator<Item = usize> + '_ {
        self.slots
            .iter()
            .zip(self.pumps.iter())
            .filter(|(slot, _)| matches!(slot.phase, Phase::Serving(_)))
            .map(|(_, pump)| pump.session().buffered())
    }
}

impl Settings {
    /// The TCP port of `ports[index]`.
    fn port(&self, index: usize) -> u16 {
        self.ports.get(index).map_or(0, |p| p.port)
    }

    /// A listening or half-open slot's next phase: serving once connected,
    /// listening again after a failed or timed-out handshake.
    fn accept(
        &self,
        index: usize,
        socket: &mut tcp::Socket<'_>,
        slot: &Slot,
        pump: &mut Pump<&mut [u8]>,
        now: Instant,
        stats: &mut NodeStats,
    ) -> Phase {
        let phase = slot.phase;
        match socket.state() {
            tcp::State::Established | tcp::State::CloseWait => {
                let mode = self
                    .ports
                    .get(slot.port)
                    .map_or(self.session.mode, |p| p.mode);
                // A slot listens only once its last connection was
                // released (or before its first): no old one to stop.
                let old = pump.reset(
                    SessionConfig {
                        mode,
                        ..self.session
                    },
                    now,
                    &mut stats.tcp,
                );
                debug_assert!(old.is_none(), "a listening slot held a connection");
                stats.tcp.accepted = stats.tcp.accepted.wrapping_add(1);
                debug!("tcp[{}]: accepted {:?}", index, socket.remote_endpoint());
                Phase::Serving(Link::new(socket, now))
            }
            tcp::State::SynReceived => match phase {
                Phase::Handshake { since } if now >= since + self.handshake_timeout => {
                    debug!("tcp[{}]: handshake timed out", index);
                    stats.tcp_handshake_timeouts = stats.tcp_handshake_timeouts.saturating_add(1);
                    // Forget it without a RST (its sender may not exist).
                    socket.abort();
                    listen(socket, self.port(slot.port));
                    Phase::Listening
                }
                Phase::Handshake { since } => Phase::Handshake { since },
                _ => Phase::Handshake { since: now },
            },
            _ => {
                if !socket.is_open() {
                    // The handshake failed or smoltcp timed it out: listen
                    // again (a RST still pending for it is dropped; nobody
                    // was served).
                    listen(socket, self.port(slot.port));
                }
                Phase::Listening
            }
        }
    }
}

/// How many of `free` listening sockets each port gets, given the
/// connections `busy[p]` each already has (a closing one included): one at
/// a time, first to the ports without a listener, then to the port with
/// the fewest connections and listeners together (the earlier port on a
/// tie). So every port keeps a listener while there are at least as many
/// free sockets as ports, busy or not (a client reconnecting before its
/// old connection's slot is free finds one), and when there are fewer, a
/// port whose clients hold sockets yields to the others.
fn shares(busy: &[usize], free: usize) -> [usize; MAX_PORTS] {
    let mut share = [0; MAX_PORTS];
    for _ in 0..free {
        let neediest = busy
            .iter()
            .zip(share.iter_mut())
            .min_by_key(|(busy, share)| **busy + **share + (usize::from(**share > 0) << 16));
        match neediest {
            Some((_, share)) => *share += 1,
            None => break,
        }
    }
    share
}

/// Logs a session's events (the pump already counted its end).
fn log_events(index: usize, pump: &mut Pump<&mut [u8]>) {
    while let Some(event) = pump.poll_event() {
        match event {
            Event::PeerFinished => trace!("tcp[{}]: peer finished", index),
            Event::Closed(_reason) => debug!("tcp[{}]: closed: {:?}", index, _reason),
            Event::Aborted(_reason) => warn!("tcp[{}]: aborted: {:?}", index, _reason),
            _ => {}
        }
    }
}

/// What the node saw of a served connection, to tell smoltcp's timeout
/// from a reset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Link {
    /// The last sign of the peer's life: never later than smoltcp's own
    /// record of it, from which its timeout counts.
    peer_seen: Instant,
    /// [`unacknowledged`] when the last service ended.
    unacknowledged: usize,
    /// [`received`] when the last service ended.
    received: usize,
}

impl Link {
    fn new(socket: &tcp::Socket<'_>, now: Instant) -> Self {
        let mut link = Link {
            peer_seen: now,
            unacknowledged: 0,
            received: 0,
        };
        link.settle(socket);
        link
    }

    /// Notes what the peer did since the last service: acknowledged bytes
    /// (or our FIN), sent bytes, or sent its FIN. A dead socket shows
    /// nothing.
    fn observe(&mut self, socket: &tcp::Socket<'_>, now: Instant) {
        if socket.is_active()
            && (unacknowledged(socket) < self.unacknowledged || received(socket) > self.received)
        {
            self.peer_seen = now;
        }
    }

    /// Records the socket as this service leaves it.
    fn settle(&mut self, socket: &tcp::Socket<'_>) {
        self.unacknowledged = unacknowledged(socket);
        self.received = received(socket);
    }

    /// Why the socket died, if it did before this service.
    fn death(&self, now: Instant, after: After, timeout: Option<Duration>) -> Failure {
        match timeout {
            Some(timeout) if after == After::Egress && now >= self.peer_seen + timeout => {
                Failure::TimedOut
            }
            _ => Failure::Reset,
        }
    }
}

/// The pump's view of a smoltcp TCP socket.
struct Connection<'s, 'b> {
    socket: &'s mut tcp::Socket<'b>,
    link: &'s mut Link,
    now: Instant,
    /// How the connection failed, should the socket turn out dead.
    death: Failure,
}

impl Transport for Connection<'_, '_> {
    fn read(&mut self, buf: &mut [u8]) -> ReadOutcome {
        match self.socket.recv_slice(buf) {
            Ok(0) => ReadOutcome::WouldBlock,
            Ok(n) => ReadOutcome::Data(n),
            // The peer's FIN, after everything it sent was read.
            Err(RecvError::Finished) => ReadOutcome::Eof,
            Err(RecvError::InvalidState) => ReadOutcome::Failed(self.death),
        }
    }

    fn write(&mut self, buf: &[u8], _more: bool) -> WriteOutcome {
        let idle = self.socket.send_queue() == 0;
        match self.socket.send_slice(buf) {
            Ok(0) => WriteOutcome::WouldBlock,
            Ok(n) => {
                if idle {
                    // smoltcp restarts its timeout when data goes into an
                    // empty transmit buffer.
                    self.link.peer_seen = self.now;
                }
                WriteOutcome::Sent(n)
            }
            Err(_) => WriteOutcome::Failed(self.death),
        }
    }

    /// FIN, and from now on every segment is acknowledged in the next
    /// sending round, not after smoltcp's delayed-ACK time: the service
    /// after that round may listen again, which forgets an ACK still owed.
    /// [`listen`] delays ACKs again.
    fn shutdown_write(&mut self) {
        self.socket.set_ack_delay(None);
        self.socket.close();
    }

    fn unacknowledged(&self) -> usize {
        unacknowledged(self.socket)
    }
}

/// Bytes queued and not yet acknowledged, plus one for our FIN while it is
/// not acknowledged; 0 once the socket is dead (nothing more will be).
fn unacknowledged(socket: &tcp::Socket<'_>) -> usize {
    if !socket.is_active() {
        return 0;
    }
    let fin = matches!(
        socket.state(),
        tcp::State::FinWait1 | tcp::State::Closing | tcp::State::LastAck
    );
    socket.send_queue() + usize::from(fin)
}

/// Bytes waiting to be read, plus one once the peer's FIN has arrived:
/// between two services it only grows, and only when the peer sends.
fn received(socket: &tcp::Socket<'_>) -> usize {
    let fin = matches!(
        socket.state(),
        tcp::State::CloseWait | tcp::State::LastAck | tcp::State::Closing | tcp::State::TimeWait
    );
    socket.recv_queue() + usize::from(fin)
}

/// smoltcp's delayed-ACK time, which a closing session turns off.
const ACK_DELAY: smoltcp::time::Duration = smoltcp::time::Duration::from_millis(10);

/// Listens on `port`, with ACKs delayed again; returns whether the socket
/// now listens.
fn listen(socket: &mut tcp::Socket<'_>, port: u16) -> bool {
    socket.set_ack_delay(Some(ACK_DELAY));
    match socket.listen(port) {
        Ok(()) => true,
        Err(e) => {
            error!("tcp: listen on port {}: {}", port, e);
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use smoltcp::socket::tcp;

    use super::{ACK_DELAY, listen, shares};

    /// A closing session turns delayed ACKs off (`shutdown_write`): the
    /// socket listens again with smoltcp's default delay.
    #[test]
    fn listening_again_delays_acks_again_after_a_close_turned_them_off() {
        let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
        let mut socket = tcp::Socket::new(
            tcp::SocketBuffer::new(&mut rx[..]),
            tcp::SocketBuffer::new(&mut tx[..]),
        );
        assert_eq!(socket.ack_delay(), Some(ACK_DELAY));
        socket.set_ack_delay(None);
        assert!(listen(&mut socket, 7));
        assert_eq!(socket.ack_delay(), Some(ACK_DELAY));
    }

    #[test]
    fn idle_ports_each_keep_a_listener_and_the_rest_go_to_the_first() {
        assert_eq!(shares(&[0, 0, 0], 4), [2, 1, 1]);
        assert_eq!(shares(&[0], 4), [4, 0, 0]);
        assert_eq!(shares(&[0, 0], 1), [1, 0, 0]);
    }

    #[test]
    fn busy_port_yields_its_listeners_to_ports_without_clients() {
        // Two clients on the echo port: the last two sockets go to the
        // other modes, so a third echo client waits for a free socket.
        assert_eq!(shares(&[2, 0, 0], 2), [0, 1, 1]);
        // One client per mode: the last free socket goes to the first.
        assert_eq!(shares(&[1, 1, 1], 1), [1, 0, 0]);
        // Raw and lines busy: frames still gets a listener.
        assert_eq!(shares(&[1, 1, 0], 2), [1, 0, 1]);
        assert_eq!(shares(&[1, 1, 0], 0), [0, 0, 0]);
    }

    #[test]
    fn port_with_one_client_keeps_a_listener_while_free_sockets_cover_every_port() {
        // One frames client (or one still closing): frames keeps a
        // listener for a second client, or the same client reconnecting
        // before the old slot is free; it had none ([2, 1, 0]).
        assert_eq!(shares(&[0, 0, 1], 3), [1, 1, 1]);
        assert_eq!(shares(&[0, 1, 0], 3), [1, 1, 1]);
        assert_eq!(shares(&[0, 1, 0], 4), [2, 1, 1]);
        // Fewer free sockets than ports: the busiest port yields.
        assert_eq!(shares(&[0, 2, 0], 2), [1, 0, 1]);
        assert_eq!(shares(&[0, 0, 2], 2), [1, 1, 0]);
    }
}
