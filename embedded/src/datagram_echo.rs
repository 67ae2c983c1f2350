//! UDP echo through the core's [`DatagramPolicy`].
//!
//! smoltcp's UDP socket hands over whole datagrams: a datagram that does
//! not fit the receive ring is dropped before the node sees it. The ring is
//! therefore sized above `max_datagram` and above the largest datagram the
//! device's MTU carries (checked by [`EchoNode::new`](crate::EchoNode::new)),
//! so every datagram arrives whole, its real length goes to the policy, and
//! an oversize one is dropped and counted, never truncated and echoed. The
//! node services the socket after every received frame, so the ring never
//! has to hold more than one datagram.
//!
//! Before the policy, a datagram sent to or from a broadcast or multicast
//! address is dropped (`not_unicast`): answering it could flood the link.
//! So is one whose source the node has no route back to (`unroutable`), or
//! is the node's own address (only a forged datagram has it: smoltcp would
//! ask ARP for it, never hear back, and hold the echo at the head of the
//! transmit ring).
//!
//! Every datagram's fate is counted in the core's
//! [`DatagramCounters`](ricochet_core::DatagramCounters): echoed, or
//! dropped with the policy's reason or the node's own (`NotUnicast`,
//! `Unroutable`, `SendFull` when the transmit ring has no room,
//! `SendFailed` when smoltcp refuses the echo).
//!
//! smoltcp sends a UDP socket's datagrams strictly in order and keeps one it
//! cannot send (its destination never answers ARP) at the head of the
//! ring, retrying every second: everything queued behind it waits. A
//! transmit ring that holds echoes and sends none of them for
//! [`UDP_STALL`] is therefore flushed (the socket is closed and bound
//! again), counted in [`NodeStats::udp_tx_flushes`](crate::NodeStats).
//! Progress means a datagram left the ring: only sending shrinks it, and
//! only the node's service adds to it, so the ring holding fewer bytes at
//! the start of a service than at the end of the previous one is exactly
//! that. A ring that never empties under load but keeps draining is never
//! flushed.

use core::net::{IpAddr, SocketAddr};

use ricochet_core::datagram::is_unicast_address;
use ricochet_core::{DatagramPolicy, DropReason, Duration, Instant, PolicyConfig, Verdict};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::IpAddress;

use crate::addressing::is_ipv4_broadcast;
use crate::stats::NodeStats;

/// Source addresses the rate limiter tracks at once.
pub const UDP_SOURCES: usize = 8;

/// How long the UDP transmit ring may hold echoes without sending any
/// before it is flushed: smoltcp sends a socket's datagrams strictly in
/// order and keeps one it cannot send (its destination never answers ARP)
/// at the head of the ring, so everything behind it would wait forever.
/// Counted in [`NodeStats::udp_tx_flushes`](crate::NodeStats).
pub const UDP_STALL: Duration = Duration::from_secs(2);

/// The UDP echo service.
pub(crate) struct DatagramEcho<'a> {
    handle: SocketHandle,
    port: u16,
    policy: DatagramPolicy<UDP_SOURCES>,
    /// An echoed datagram passes through here (smoltcp lends the received
    /// payload and the transmit ring from the same socket).
    copy: &'a mut [u8],
    /// Bytes in the transmit ring when the last service ended.
    queued: usize,
    /// Since when the ring has held echoes without sending one.
    stalled_since: Option<Instant>,
}

impl<'a> DatagramEcho<'a> {
    /// Serves `port` on the UDP socket `handle` (bound here).
    pub(crate) fn new(
        handle: SocketHandle,
        port: u16,
        config: PolicyConfig,
        seed: u64,
        copy: &'a mut [u8],
        sockets: &mut SocketSet<'_>,
    ) -> Self {
        bind(sockets.get_mut::<udp::Socket<'_>>(handle), port);
        DatagramEcho {
            handle,
            port,
            policy: DatagramPolicy::with_hash_seed(config, seed),
            copy,
            queued: 0,
            stalled_since: None,
        }
    }

    /// Decides for (and echoes or drops) every datagram waiting. Returns
    /// whether any datagram came in.
    pub(crate) fn service(
        &mut self,
        now: Instant,
        iface: &Interface,
        sockets: &mut SocketSet<'_>,
        stats: &mut NodeStats,
    ) -> bool {
        let socket = sockets.get_mut::<udp::Socket<'_>>(self.handle);
        if !socket.is_open() {
            bind(socket, self.port);
            return false;
        }
        if socket.send_queue() < self.queued {
            // A datagram left the ring since the last service.
            self.stalled_since = None;
        }
        let mut moved = false;
        while let Ok((data, meta)) = socket.recv() {
            moved = true;
            let len = data.len();
            let to_unicast = meta.local_address.is_none_or(|dst| is_unicast(iface, dst));
            let verdict = if !to_unicast || !is_unicast(iface, meta.endpoint.addr) {
                Verdict::Drop(DropReason::NotUnicast)
            } else if !is_routable(iface, meta.endpoint.addr) {
                Verdict::Drop(DropReason::Unroutable)
            } else {
                self.policy
                    .decide(now, SocketAddr::from(meta.endpoint), len)
            };
            let fate = match verdict {
                Verdict::Drop(reason) => Err(reason),
                Verdict::Echo => match self.copy.get_mut(..len) {
                    Some(copy) => {
                        copy.copy_from_slice(data);
                        match socket.send_slice(copy, meta) {
                            Ok(()) => Ok(()),
                            Err(udp::SendError::BufferFull) => Err(DropReason::SendFull),
                            Err(_) => Err(DropReason::SendFailed),
                        }
                    }
                    // Unreachable: `new` checked max_datagram <= copy.len().
                    None => Err(DropReason::SendFailed),
                },
            };
            match fate {
                Ok(()) => stats.udp.echoed(len),
                Err(reason) => {
                    trace!(
                        "udp: dropped {} bytes from {}: {}",
                        len, meta.endpoint, reason
                    );
                    stats.udp.dropped(reason);
                }
            }
        }
        self.watch_backlog(now, socket, stats);
        moved
    }

    /// When the transmit ring must be checked for a stall.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.stalled_since.map(|since| since + UDP_STALL)
    }

    /// Flushes the transmit ring when it held echoes and sent none of them
    /// for [`UDP_STALL`].
    fn watch_backlog(&mut self, now: Instant, socket: &mut udp::Socket<'_>, stats: &mut NodeStats) {
        self.queued = socket.send_queue();
        if self.queued == 0 {
            self.stalled_since = None;
            return;
        }
        let since = *self.stalled_since.get_or_insert(now);
        if now >= since + UDP_STALL {
            warn!(
                "udp: {} bytes of echoes stuck for {}: flushed",
                self.queued, UDP_STALL
            );
            socket.close();
            bind(socket, self.port);
            stats.udp_tx_flushes = stats.udp_tx_flushes.saturating_add(1);
            self.queued = 0;
            self.stalled_since = None;
        }
    }
}

/// Whether `addr` names one host: the core's address rule
/// ([`is_unicast_address`]: not unspecified, multicast or the limited
/// broadcast), and not the broadcast of one of the node's subnets, which
/// only the interface's netmasks tell.
fn is_unicast(iface: &Interface, addr: IpAddress) -> bool {
    let ip = IpAddr::from(addr);
    is_unicast_address(ip) && !matches!(ip, IpAddr::V4(v4) if is_ipv4_broadcast(iface, v4))
}

/// Whether the node can send to `addr`: not its own address, and on one of
/// its networks or with a default route of the right family.
fn is_routable(iface: &Interface, addr: IpAddress) -> bool {
    if iface.has_ip_addr(addr) {
        return false;
    }
    let on_link = iface
        .ip_addrs()
        .iter()
        .any(|cidr| cidr.contains_addr(&addr));
    on_link
        || match IpAddr::from(addr) {
            IpAddr::V4(_) => iface.routes().get_default_ipv4_route().is_some(),
            IpAddr::V6(_) => has_default_ipv6_route(iface),
        }
}

#[cfg(feature = "ipv6")]
fn has_default_ipv6_route(iface: &Interface) -> bool {
    iface.routes().get_default_ipv6_route().is_some()
}

#[cfg(not(feature = "ipv6"))]
fn has_default_ipv6_route(_: &Interface) -> bool {
    false
}

fn bind(socket: &mut udp::Socket<'_>, port: u16) {
    if let Err(e) = socket.bind(port) {
        error!("udp: bind port {}: {}", port, e);
    }
}
