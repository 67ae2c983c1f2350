//! The client role: the core's verifying probes run on the device against
//! an echo server (like Zephyr's `echo_client`).
//!
//! The stream probe connects once the node has a source address for the
//! server, retries every [`CONNECT_RETRY`] while the connection is refused
//! or times out, exchanges its messages, then closes its side and expects
//! the server's FIN: a clean close after every byte came back verified is
//! [`ProbeOutcome::Passed`]. The datagram probe (optional) runs alongside on
//! the UDP socket. Both run once; the verdicts stay in the stats.

use core::net::IpAddr;

use ricochet_core::datagram::is_unicast_address;
use ricochet_core::{
    DatagramOutcome, DatagramProbe, DatagramProbeConfig, Duration, Instant, ProbeConfig,
    ProbeError, StreamProbe,
};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::{tcp, udp};
use smoltcp::wire::IpEndpoint;

use crate::setup::NewError;
use crate::stats::{ClientStats, ProbeFailure, ProbeOutcome, RoundTrips, bump};
use ricochet_core::time::earliest;

/// Messages (stream) or datagrams in flight the probes track at most. A
/// datagram probe's `window` must not exceed it.
pub const PROBE_WINDOW: usize = 16;

/// Delay between connection attempts.
pub const CONNECT_RETRY: Duration = Duration::from_secs(1);

/// First ephemeral port (IANA dynamic range).
const EPHEMERAL: u16 = 49152;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No source address for the server yet (DHCP pending).
    Unaddressed,
    /// Not connected; try again at this instant.
    Idle { at: Instant },
    /// SYN sent.
    Connecting,
    /// Sending and verifying.
    Exchanging,
    /// Everything verified; our FIN is out, the server's is awaited.
    Finishing,
    /// The verdict is in the stats.
    Done,
}

/// The stream probe's connection.
pub(crate) struct Client<'a> {
    server: IpEndpoint,
    tcp: SocketHandle,
    config: ProbeConfig,
    phase: Phase,
    probe: Option<StreamProbe<PROBE_WINDOW>>,
    next_port: u16,
    datagrams: Option<Datagrams<'a>>,
}

/// The datagram probe on the UDP socket.
struct Datagrams<'a> {
    udp: SocketHandle,
    config: DatagramProbeConfig,
    probe: Option<DatagramProbe<PROBE_WINDOW>>,
    done: bool,
    /// A datagram is built here, then copied into the transmit ring.
    copy: &'a mut [u8],
}

impl<'a> Client<'a> {
    /// The probes start later, once connected (or addressed). Their
    /// configurations were checked by `EchoNode::new`.
    pub(crate) fn new(
        server: IpEndpoint,
        config: ProbeConfig,
        tcp: SocketHandle,
        datagram: Option<(DatagramProbeConfig, SocketHandle, &'a mut [u8])>,
        seed: u64,
        stats: &mut ClientStats,
    ) -> Self {
        stats.stream_outcome = ProbeOutcome::Running;
        let datagrams = match datagram {
            Some((config, udp, copy)) => {
                stats.datagram_outcome = ProbeOutcome::Running;
                Some(Datagrams {
                    udp,
                    config,
                    probe: None,
                    done: false,
                    copy,
                })
            }
            None => None,
        };
        Client {
            server,
            tcp,
            config,
            phase: Phase::Unaddressed,
            probe: None,
            // The low bits of the seed pick where the ports start.
            next_port: EPHEMERAL | (seed as u16 & 0x3fff),
            datagrams,
        }
    }

    /// Drives both probes. Returns whether any byte moved.
    pub(crate) fn service(
        &mut self,
        now: Instant,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
        stats: &mut ClientStats,
    ) -> bool {
        let addressed = iface.get_source_address(&self.server.addr).is_some();
        let mut moved = self.service_stream(now, addressed, iface, sockets, stats);
        if let Some(datagrams) = &mut self.datagrams {
            let port = self.next_port;
            if datagrams.service(now, addressed, self.server, port, sockets, stats) {
                moved = true;
            }
        }
        moved
    }

    /// The earliest instant a probe needs [`service`](Self::service)
    /// without any frame arriving.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let stream = match self.phase {
            Phase::Idle { at } => Some(at),
            Phase::Unaddressed => None,
            Phase::Exchanging | Phase::Finishing => {
                self.probe.as_ref().and_then(StreamProbe::poll_timeout)
            }
            Phase::Connecting | Phase::Done => None,
        };
        let datagrams = self
            .datagrams
            .as_ref()
            .and_then(|d| d.probe.as_ref())
            .and_then(DatagramProbe::poll_timeout);
        earliest(stream, datagrams)
    }

    fn service_stream(
        &mut self,
        now: Instant,
        addressed: bool,
        iface: &mut Interface,
        sockets: &mut SocketSet<'_>,
        stats: &mut ClientStats,
    ) -> bool {
        let socket = sockets.get_mut::<tcp::Socket<'_>>(self.tcp);
        match self.phase {
            Phase::Unaddressed | Phase::Idle { .. } if !addressed => {
                self.phase = Phase::Unaddressed;
                false
            }
            Phase::Unaddressed => {
                self.phase = Phase::Idle { at: now };
                self.service_stream(now, addressed, iface, sockets, stats)
            }
            Phase::Idle { at } if now >= at => {
                let port = self.take_port();
                match socket.connect(iface.context(), self.server, port) {
                    Ok(()) => {
                        debug!("probe: connecting to {} from port {}", self.server, port);
                        bump(&mut stats.connects);
                        self.phase = Phase::Connecting;
                    }
                    Err(e) => {
                        warn!("probe: connect to {}: {}", self.server, e);
                        bump(&mut stats.connect_failures);
                        self.phase = Phase::Idle {
                            at: now + CONNECT_RETRY,
                        };
                    }
                }
                false
            }
            Phase::Connecting => {
                match socket.state() {
                    tcp::State::SynSent => {}
                    tcp::State::Closed | tcp::State::TimeWait | tcp::State::Listen => {
                        debug!("probe: connection to {} failed", self.server);
                        bump(&mut stats.connect_failures);
                        self.phase = Phase::Idle {
                            at: now + CONNECT_RETRY,
                        };
                    }
                    _ => {
                        info!("probe: connected to {}", self.server);
                        // Validated by `EchoNode::new`.
                        self.probe = StreamProbe::new(self.config, now).ok();
                        self.phase = Phase::Exchanging;
                        return self.exchange(now, sockets, stats);
                    }
                }
                false
            }
            Phase::Exchanging | Phase::Finishing => self.exchange(now, sockets, stats),
            Phase::Idle { .. } | Phase::Done => false,
        }
    }

    /// Sends what the probe offers, verifies what came back, and decides.
    fn exchange(
        &mut self,
        now: Instant,
        sockets: &mut SocketSet<'_>,
        stats: &mut ClientStats,
    ) -> bool {
        let socket = sockets.get_mut::<tcp::Socket<'_>>(self.tcp);
        let Some(probe) = &mut self.probe else {
            self.phase = Phase::Done;
            return false;
        };
        let mut moved = false;
        let verdict = (|| {
            probe.handle_timeout(now)?;
            if self.phase == Phase::Exchanging {
                while socket.can_send() {
                    let sent = socket.send(|room| {
                        let n = probe.fill_transmit(now, room);
                        (n, n)
                    });
                    match sent {
                        Ok(n) if n > 0 => {
                            // `n` is what was offered: the commit cannot fail.
                            let _ = probe.commit_sent(now, n);
                            moved = true;
                        }
                        _ => break,
                    }
                }
            }
            loop {
                let rtts = &mut stats.stream_round_trips;
                let received = socket.recv(|data| {
                    let (n, verdict) = verify(probe, now, data, rtts);
                    (n, (n, verdict))
                });
                match received {
                    Ok((_, Err(e))) => return Err(e),
                    Ok((0, Ok(()))) | Err(tcp::RecvError::InvalidState) => break,
                    Ok((_, Ok(()))) => moved = true,
                    Err(tcp::RecvError::Finished) => return probe.handle_eof(now).map(|()| true),
                }
            }
            if !socket.is_active() {
                // Reset, or smoltcp's timeout: fine only if everything was done.
                return probe.handle_eof(now).map(|()| true);
            }
            Ok(false)
        })();
        stats.stream = *probe.stats();
        match verdict {
            Ok(true) => {
                let rtt = stats.stream_round_trips;
                info!(
                    "probe: passed: {} messages, {} bytes verified; rtt min {} mean {} max {}",
                    stats.stream.messages_verified,
                    stats.stream.bytes_verified,
                    rtt.min,
                    rtt.mean(),
                    rtt.max
                );
                socket.close();
                stats.stream_outcome = ProbeOutcome::Passed;
                self.phase = Phase::Done;
            }
            Ok(false) => {
                if self.phase == Phase::Exchanging && probe.is_done() {
                    // Everything verified: finish our side, expect the server's FIN.
                    socket.close();
                    self.phase = Phase::Finishing;
                }
            }
            Err(e) => {
                error!("probe: failed: {}", e);
                socket.abort();
                stats.stream_outcome = ProbeOutcome::Failed(ProbeFailure::Stream(e));
                self.phase = Phase::Done;
            }
        }
        moved
    }

    fn take_port(&mut self) -> u16 {
        let port = self.next_port;
        self.next_port = match self.next_port.checked_add(1) {
            Some(next) => next,
            None => EPHEMERAL,
        };
        port
    }
}

impl Datagrams<'_> {
    /// Starts the probe once addressed, then sends, receives and decides.
    fn service(
        &mut self,
        now: Instant,
        addressed: bool,
        server: IpEndpoint,
        port: u16,
        sockets: &mut SocketSet<'_>,
        stats: &mut ClientStats,
    ) -> bool {
        if self.done || !addressed {
            return false;
        }
        let socket = sockets.get_mut::<udp::Socket<'_>>(self.udp);
        if !socket.is_open() {
            if let Err(e) = socket.bind(port) {
                error!("probe: udp bind port {}: {}", port, e);
                return false;
            }
            debug!("probe: datagrams to {} from port {}", server, port);
        }
        let probe = match &mut self.probe {
            Some(probe) => probe,
            None => match DatagramProbe::new(self.config, now) {
                Ok(probe) => self.probe.insert(probe),
                // Validated by `EchoNode::new`.
                Err(_) => return false,
            },
        };
        probe.handle_timeout(now);
        let mut moved = false;
        while let Ok((data, _)) = socket.recv() {
            moved = true;
            match probe.handle_datagram(now, data) {
                // From the schedule: a datagram sent late counts its wait.
                DatagramOutcome::Verified { round_trip, .. } => {
                    stats.datagram_round_trips.record(round_trip);
                }
                other => debug!("probe: datagram {:?}", other),
            }
        }
        let size = self.config.size.max;
        while socket.can_send()
            && socket
                .payload_send_capacity()
                .saturating_sub(socket.send_queue())
                >= size
        {
            let Some(len) = probe.poll_transmit(now, self.copy) else {
                break;
            };
            let Some(datagram) = self.copy.get(..len) else {
                break;
            };
            // A datagram smoltcp refuses is counted lost by the probe later.
            let _ = socket.send_slice(datagram, server);
            moved = true;
        }
        stats.datagram = *probe.stats();
        if probe.is_done() {
            let s = stats.datagram;
            stats.datagram_outcome = if s.verified == s.sent {
                info!(
                    "probe: datagrams passed: {} verified; rtt mean {}",
                    s.verified,
                    stats.datagram_round_trips.mean()
                );
                ProbeOutcome::Passed
            } else {
                error!(
                    "probe: datagrams failed: {} of {} verified, {} lost, {} corrupt",
                    s.verified, s.sent, s.lost, s.corrupt
                );
                ProbeOutcome::Failed(ProbeFailure::Datagrams {
                    lost: s.lost,
                    corrupt: s.corrupt,
                })
            };
            self.done = true;
            socket.close();
        }
        moved
    }
}

/// Verifies one contiguous run of received bytes; returns how many were
/// consumed and the probe's verdict on them.
fn verify(
    probe: &mut StreamProbe<PROBE_WINDOW>,
    now: Instant,
    data: &[u8],
    rtts: &mut RoundTrips,
) -> (usize, Result<(), ProbeError>) {
    let mut consumed = 0;
    while let Some(rest) = data.get(consumed..).filter(|rest| !rest.is_empty()) {
        match probe.handle_received(now, rest) {
            Ok(received) => {
                if let Some(rtt) = received.round_trip {
                    trace!("probe: round trip {}", rtt);
                    rtts.record(rtt);
                }
                if received.consumed == 0 {
                    break;
                }
                consumed += received.consumed;
            }
            Err(e) => return (consumed, Err(e)),
        }
    }
    (consumed, Ok(()))
}

/// Checks the client role's configuration for a node with `tcp_sockets`
/// TCP sockets probing `server`; returns the UDP ring size the datagram
/// probe needs.
pub(crate) fn check(
    tcp_sockets: usize,
    server: IpEndpoint,
    probe: ProbeConfig,
    datagram: Option<DatagramProbeConfig>,
    now: Instant,
) -> Result<usize, NewError> {
    if tcp_sockets == 0 {
        return Err(NewError::NoTcpSocket);
    }
    // smoltcp refuses to connect to these, and the probe would retry
    // forever; a broadcast or multicast one is no echo server.
    if server.port == 0 || !is_unicast_address(IpAddr::from(server.addr)) {
        return Err(NewError::BadServer { server });
    }
    StreamProbe::<PROBE_WINDOW>::new(probe, now).map_err(NewError::Probe)?;
    if let Some(d) = datagram {
        DatagramProbe::<PROBE_WINDOW>::new(d, now).map_err(NewError::Probe)?;
    }
    Ok(datagram.map_or(0, |d| d.size.max))
}
