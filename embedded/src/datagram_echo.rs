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
//! So is one whose source the node has no route back to (`unroutable`).
//!
//! smoltcp sends a UDP socket's datagrams strictly in order and keeps one it
//! cannot send (its destination never answers ARP) at the head of the
//! ring, retrying every second: everything queued behind it waits. A
//! transmit ring that makes no progress for [`UDP_STALL`] is therefore
//! flushed (the socket is closed and bound again), counted in
//! [`UdpStats::tx_flushes`].

use core::net::{IpAddr, SocketAddr};

use ricochet_core::{DatagramPolicy, Duration, Instant, PolicyConfig, Verdict};
use smoltcp::iface::{Interface, SocketHandle, SocketSet};
use smoltcp::socket::udp;
use smoltcp::wire::IpAddress;

use crate::addressing::is_ipv4_broadcast;
use crate::stats::{UdpStats, add_bytes, bump};

/// Source addresses the rate limiter tracks at once.
pub const UDP_SOURCES: usize = 8;

/// How long the UDP transmit ring may make no progress before it is
/// flushed: smoltcp sends a socket's datagrams strictly in order and keeps
/// one it cannot send (its destination never answers ARP) at the head of the
/// ring, so everything behind it would wait forever. Counted in
/// [`UdpStats::tx_flushes`](crate::UdpStats::tx_flushes).
pub const UDP_STALL: Duration = Duration::from_secs(2);

/// The UDP echo service.
pub(crate) struct DatagramEcho<'a> {
    handle: SocketHandle,
    port: u16,
    policy: DatagramPolicy<UDP_SOURCES>,
    /// An echoed datagram passes through here (smoltcp lends the received
    /// payload and the transmit ring from the same socket).
    copy: &'a mut [u8],
    /// Bytes in the transmit ring at the last progress, and since when.
    backlog: Option<(usize, Instant)>,
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
            backlog: None,
        }
    }

    /// Decides for (and echoes or drops) every datagram waiting. Returns
    /// whether any datagram came in.
    pub(crate) fn service(
        &mut self,
        now: Instant,
        iface: &Interface,
        sockets: &mut SocketSet<'_>,
        stats: &mut UdpStats,
    ) -> bool {
        let socket = sockets.get_mut::<udp::Socket<'_>>(self.handle);
        if !socket.is_open() {
            bind(socket, self.port);
            return false;
        }
        let mut moved = false;
        while let Ok((data, meta)) = socket.recv() {
            moved = true;
            bump(&mut stats.received);
            let len = data.len();
            let to_unicast = meta.local_address.is_none_or(|dst| is_unicast(iface, dst));
            if !to_unicast || !is_unicast(iface, meta.endpoint.addr) {
                trace!(
                    "udp: dropped {} bytes from {}: not unicast",
                    len, meta.endpoint
                );
                bump(&mut stats.dropped.not_unicast);
                continue;
            }
            if !is_routable(iface, meta.endpoint.addr) {
                trace!(
                    "udp: dropped {} bytes from {}: no route back",
                    len, meta.endpoint
                );
                bump(&mut stats.dropped.unroutable);
                continue;
            }
            let source = SocketAddr::from(meta.endpoint);
            match self.policy.decide(now, source, len) {
                Verdict::Drop(reason) => {
                    trace!(
                        "udp: dropped {} bytes from {}: {}",
                        len, meta.endpoint, reason
                    );
                    stats.dropped.count(reason);
                }
                Verdict::Echo => {
                    let Some(copy) = self.copy.get_mut(..len) else {
                        // Unreachable: `new` checked max_datagram <= copy.len().
                        bump(&mut stats.dropped.other);
                        continue;
                    };
                    copy.copy_from_slice(data);
                    match socket.send_slice(copy, meta) {
                        Ok(()) => {
                            bump(&mut stats.echoed);
                            add_bytes(&mut stats.echoed_bytes, len);
                        }
                        Err(udp::SendError::BufferFull) => {
                            debug!("udp: transmit ring full, echo to {} dropped", meta.endpoint);
                            bump(&mut stats.dropped.tx_full);
                        }
                        Err(_) => bump(&mut stats.dropped.other),
                    }
                }
            }
        }
        self.watch_backlog(now, socket, stats);
        moved
    }

    /// When the transmit ring must be checked for a stall.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.backlog.map(|(_, since)| since + UDP_STALL)
    }

    /// Flushes the transmit ring when it made no progress for [`UDP_STALL`].
    fn watch_backlog(&mut self, now: Instant, socket: &mut udp::Socket<'_>, stats: &mut UdpStats) {
        let queued = socket.send_queue();
        self.backlog = match self.backlog {
            _ if queued == 0 => None,
            Some((before, since)) if queued >= before => {
                if now >= since + UDP_STALL {
                    warn!(
                        "udp: {} bytes of echoes stuck for {}: flushed",
                        queued, UDP_STALL
                    );
                    socket.close();
                    bind(socket, self.port);
                    bump(&mut stats.tx_flushes);
                    None
                } else {
                    Some((before, since))
                }
            }
            // New bytes queued on an empty ring, or the ring drained a bit.
            _ => Some((queued, now)),
        };
    }
}

/// Whether `addr` names one host: not unspecified, multicast or broadcast.
fn is_unicast(iface: &Interface, addr: IpAddress) -> bool {
    match IpAddr::from(addr) {
        IpAddr::V4(v4) => {
            !v4.is_unspecified() && !v4.is_multicast() && !is_ipv4_broadcast(iface, v4)
        }
        IpAddr::V6(v6) => !v6.is_unspecified() && !v6.is_multicast(),
    }
}

/// Whether the node can send to `addr`: on one of its networks, or with a
/// default route of the right family.
fn is_routable(iface: &Interface, addr: IpAddress) -> bool {
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
