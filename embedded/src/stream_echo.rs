//! TCP echo: a pool of `N` smoltcp sockets, each driven by a core
//! [`Session`] while connected.
//!
//! Every free socket listens on the echo port, so up to `N` clients are
//! served at once; a client beyond that is refused by smoltcp with a RST
//! (no socket accepts its SYN) and can retry. A socket whose session ends is
//! re-armed at once: after a graceful close as soon as smoltcp finished the
//! FIN handshake, after an abort as soon as its RST went out.
//!
//! No socket stays out of the pool for long, whatever the peer does: a
//! handshake the client never completes (a forged SYN) is abandoned after
//! the handshake timeout, and a close that does not finish within the linger
//! time is cut short (abort, then listen even if the RST cannot be sent).
//!
//! One slot's cycle:
//!
//! ```text
//!  Listening --SYN--> Handshake --ACK--> Serving --(session Closed: close(), FIN)--> Closing
//!      ^  ^               |                 |                                            |
//!      |  +--timeout------+                 +--(session Aborted: abort(), RST)---------->|
//!      +------------- listen() once the socket is closed (or linger expired) ------------+
//! ```

use ricochet_core::{Duration, Event, Instant, Session, SessionConfig, State};
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp::{self, RecvError};

use crate::config::TcpConfig;
use crate::stats::{TcpStats, add_bytes, bump};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// The socket listens; no session.
    Listening,
    /// A SYN was answered at `since`; waiting for the client's ACK.
    Handshake { since: Instant },
    /// Connected; the session decides.
    Serving,
    /// The session ended at `since`; the socket is closing (FIN handshake,
    /// or an abort's RST waiting to go out).
    Closing { since: Instant },
}

/// The TCP echo pool.
pub(crate) struct StreamEcho<'a, const N: usize, const BUF: usize> {
    handles: [SocketHandle; N],
    phases: [Phase; N],
    /// One per socket (`N`), re-armed in place for each connection.
    sessions: &'a mut [Session<BUF>],
    port: u16,
    config: SessionConfig,
    linger: Duration,
    handshake_timeout: Duration,
}

impl<'a, const N: usize, const BUF: usize> StreamEcho<'a, N, BUF> {
    /// Takes over the TCP sockets `handles` (already in `sockets`) and
    /// starts listening on all of them.
    pub(crate) fn new(
        handles: [SocketHandle; N],
        sessions: &'a mut [Session<BUF>],
        port: u16,
        config: SessionConfig,
        tcp: &TcpConfig,
        sockets: &mut SocketSet<'_>,
    ) -> Self {
        for &handle in &handles {
            listen(sockets.get_mut::<tcp::Socket<'_>>(handle), port);
        }
        StreamEcho {
            handles,
            phases: [Phase::Listening; N],
            sessions,
            port,
            config,
            linger: tcp.linger,
            handshake_timeout: tcp.handshake_timeout,
        }
    }

    /// Accepts, echoes, closes and re-arms, for every socket. Returns whether
    /// any byte moved.
    pub(crate) fn service(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'_>,
        stats: &mut TcpStats,
    ) -> bool {
        let mut moved = false;
        let slots = self
            .handles
            .iter()
            .zip(self.phases.iter_mut())
            .zip(self.sessions.iter_mut());
        for (index, ((&handle, phase), session)) in slots.enumerate() {
            let socket = sockets.get_mut::<tcp::Socket<'_>>(handle);
            if let Phase::Listening | Phase::Handshake { .. } = *phase {
                *phase = match socket.state() {
                    state if is_connected(state) => {
                        session.reset(self.config, now);
                        bump(&mut stats.accepted);
                        bump(&mut stats.active);
                        debug!("tcp[{}]: accepted {:?}", index, socket.remote_endpoint());
                        Phase::Serving
                    }
                    tcp::State::SynReceived => match *phase {
                        Phase::Handshake { since } if now >= since + self.handshake_timeout => {
                            debug!("tcp[{}]: handshake timed out", index);
                            bump(&mut stats.handshake_timeouts);
                            // Forget it without a RST (its sender may not exist).
                            socket.abort();
                            listen(socket, self.port);
                            Phase::Listening
                        }
                        Phase::Handshake { since } => Phase::Handshake { since },
                        _ => Phase::Handshake { since: now },
                    },
                    _ => {
                        if !socket.is_open() {
                            // The handshake failed or smoltcp timed it out:
                            // listen again (a RST still pending for it is
                            // dropped; nobody was served).
                            listen(socket, self.port);
                        }
                        Phase::Listening
                    }
                };
            }
            if *phase == Phase::Serving {
                moved |= drive(socket, session, now, stats);
                report(index, session, stats);
                if let Some(next) = settle(socket, session, now, stats) {
                    *phase = next;
                }
            }
            if let Phase::Closing { since } = *phase {
                if can_rearm(socket) {
                    if listen(socket, self.port) {
                        *phase = Phase::Listening;
                    }
                } else if now >= since + self.linger {
                    if socket.state() == tcp::State::Closed {
                        // The RST cannot go out (no route, no ARP answer):
                        // give up on it.
                        if listen(socket, self.port) {
                            *phase = Phase::Listening;
                        }
                    } else {
                        debug!("tcp[{}]: linger expired in {}", index, socket.state());
                        socket.abort();
                        bump(&mut stats.lingered);
                        *phase = Phase::Closing { since: now };
                    }
                }
            }
        }
        moved
    }

    /// The earliest instant at which a session, a handshake or a closing
    /// socket needs [`service`](Self::service).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.phases
            .iter()
            .zip(self.sessions.iter())
            .filter_map(|(phase, session)| match phase {
                Phase::Listening => None,
                Phase::Handshake { since } => Some(*since + self.handshake_timeout),
                Phase::Serving => session.poll_timeout(),
                Phase::Closing { since } => Some(*since + self.linger),
            })
            .min()
    }

    /// Sessions being served now, with their buffered byte counts.
    pub(crate) fn buffered(&self) -> impl Iterator<Item = usize> + '_ {
        self.phases
            .iter()
            .zip(self.sessions.iter())
            .filter(|(phase, _)| **phase == Phase::Serving)
            .map(|(_, session)| session.buffered())
    }
}

/// Moves bytes between the socket and the session until neither side can
/// take more. Returns whether any byte moved.
///
/// Input is read only while the session offers space: when it does not,
/// smoltcp's receive buffer fills and its window closes (backpressure).
/// Output commits only what smoltcp took, so a short send loses nothing.
fn drive<const BUF: usize>(
    socket: &mut tcp::Socket<'_>,
    session: &mut Session<BUF>,
    now: Instant,
    stats: &mut TcpStats,
) -> bool {
    let mut moved = false;
    loop {
        let mut progress = false;
        let space = session.receive_buffer();
        if !space.is_empty() {
            match socket.recv_slice(space) {
                Ok(0) | Err(RecvError::InvalidState) => {}
                Ok(n) => {
                    // `n <= space.len()`: the commit cannot fail.
                    let _ = session.commit_received(now, n);
                    add_bytes(&mut stats.bytes_in, n);
                    progress = true;
                }
                Err(RecvError::Finished) => {
                    // The peer's FIN, after everything it sent was read.
                    session.handle_peer_fin(now);
                    progress = true;
                }
            }
        }
        let pending = session.transmit_buffer();
        if !pending.is_empty()
            && let Ok(n) = socket.send_slice(pending)
            && n > 0
        {
            // `n <= pending.len()`: the commit cannot fail.
            let _ = session.commit_sent(now, n);
            add_bytes(&mut stats.bytes_out, n);
            progress = true;
        }
        if !progress {
            break;
        }
        moved = true;
    }
    if !session.is_terminal() && !socket.is_active() {
        // Reset by the peer, or smoltcp's timeout fired.
        session.handle_peer_reset(now);
    }
    session.handle_timeout(now);
    moved
}

/// Logs the session's events and counts how it ended.
fn report<const BUF: usize>(index: usize, session: &mut Session<BUF>, stats: &mut TcpStats) {
    while let Some(event) = session.poll_event() {
        match event {
            Event::PeerFinished => trace!("tcp[{}]: peer finished", index),
            Event::Closed(reason) => {
                debug!("tcp[{}]: closed: {}", index, reason);
                stats.closed.count(reason);
            }
            Event::Aborted(reason) => {
                warn!("tcp[{}]: aborted: {}", index, reason);
                stats.aborted.count(reason);
            }
            _ => {}
        }
    }
}

/// Applies a finished session's fate to its socket: FIN after everything
/// queued (`Closed`) or RST (`Aborted`). Returns the slot's next phase.
fn settle<const BUF: usize>(
    socket: &mut tcp::Socket<'_>,
    session: &Session<BUF>,
    now: Instant,
    stats: &mut TcpStats,
) -> Option<Phase> {
    match session.state() {
        State::Closed => socket.close(),
        State::Aborted(_) => socket.abort(),
        _ => return None,
    }
    stats.active = stats.active.saturating_sub(1);
    add_bytes(
        &mut stats.bytes_discarded,
        usize::try_from(session.stats().bytes_discarded).unwrap_or(usize::MAX),
    );
    Some(Phase::Closing { since: now })
}

/// Whether the connection is up (data may flow): the session starts here.
fn is_connected(state: tcp::State) -> bool {
    matches!(state, tcp::State::Established | tcp::State::CloseWait)
}

/// Whether the socket is done with its last connection: closed (and an
/// abort's RST already sent) or in TIME-WAIT (which `listen` cuts short).
fn can_rearm(socket: &tcp::Socket<'_>) -> bool {
    match socket.state() {
        tcp::State::TimeWait => true,
        // After `abort()` the socket is `Closed` but still knows its peer
        // until the RST went out.
        tcp::State::Closed => socket.remote_endpoint().is_none(),
        _ => false,
    }
}

/// Listens on `port`; returns whether the socket now listens.
fn listen(socket: &mut tcp::Socket<'_>, port: u16) -> bool {
    match socket.listen(port) {
        Ok(()) => true,
        Err(e) => {
            error!("tcp: listen on port {}: {}", port, e);
            false
        }
    }
}
