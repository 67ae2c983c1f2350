//! What [`EchoNode::new`](crate::EchoNode::new) checks before it builds a
//! node, the error it names, and the socket settings it applies.

use core::fmt;

use ricochet_core::Instant;
use ricochet_core::probe::ConfigError;
use smoltcp::phy::{Device, Medium};
use smoltcp::socket::tcp;

use crate::clock;
use crate::config::{Ipv4Config, NodeConfig, Role, TcpConfig};

/// IPv4 and UDP headers: the largest UDP payload is the IP MTU minus these.
const IPV4_UDP_HEADERS: usize = 20 + 8;

/// Why [`EchoNode::new`](crate::EchoNode::new) refused the configuration or the resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum NewError {
    /// The client role needs at least one TCP socket (`N >= 1`).
    NoTcpSocket,
    /// The UDP receive ring ([`UdpRxBuffer`](crate::UdpRxBuffer)) must be larger than `max_datagram`
    /// and hold the largest datagram the device's MTU carries, or an
    /// oversize datagram would be lost uncounted instead of dropped and
    /// counted.
    UdpReceiveRingTooSmall {
        /// Bytes needed.
        needed: usize,
        /// The ring's size.
        capacity: usize,
    },
    /// The UDP transmit ring ([`UdpTxBuffer`](crate::UdpTxBuffer)) must hold the largest datagram
    /// echoed (`max_datagram`) or probed (`size.max`).
    UdpTransmitRingTooSmall {
        /// Bytes needed.
        needed: usize,
        /// The ring's size.
        capacity: usize,
    },
    /// A probe configuration the core refuses (client role).
    Probe(ConfigError),
    /// A TCP port of the server role is 0 or listed twice (`port` and
    /// `extra_ports` must all differ).
    BadPort {
        /// The port.
        port: u16,
    },
    /// `NodeConfig::udp` asks for UDP echo, but the node was built without
    /// the `udp` feature: enable it, or set `udp` to `None`.
    UdpNotBuilt,
    /// `Ipv4Config::Dhcp`, but the node was built without the `dhcp`
    /// feature: enable it, or use `Ipv4Config::Static`.
    DhcpNotBuilt,
    /// The server role serves more TCP ports than it has sockets: one would
    /// never be listened on. Drop a port or give the node more sockets (`N`).
    MorePortsThanSockets {
        /// Ports configured.
        ports: usize,
        /// TCP sockets (`N`).
        sockets: usize,
    },
}

impl fmt::Display for NewError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            NewError::NoTcpSocket => f.write_str("the client role needs a TCP socket (N >= 1)"),
            NewError::UdpReceiveRingTooSmall { needed, capacity } => write!(
                f,
                "UDP receive ring of {capacity} bytes, at least {needed} needed to see every datagram whole"
            ),
            NewError::UdpTransmitRingTooSmall { needed, capacity } => write!(
                f,
                "UDP transmit ring of {capacity} bytes, at least {needed} needed"
            ),
            NewError::Probe(e) => write!(f, "probe configuration: {e}"),
            NewError::UdpNotBuilt => f.write_str(
                "UDP echo configured, but ricochet-embedded was built without its `udp` feature: enable it or set `udp: None`",
            ),
            NewError::DhcpNotBuilt => f.write_str(
                "DHCP configured, but ricochet-embedded was built without its `dhcp` feature: enable it or use Ipv4Config::Static",
            ),
            NewError::BadPort { port } => write!(
                f,
                "TCP port {port} is 0 or configured twice: give each mode its own port"
            ),
            NewError::MorePortsThanSockets { ports, sockets } => write!(
                f,
                "{ports} TCP ports but {sockets} sockets: each port needs one (raise N or drop a port)"
            ),
        }
    }
}

impl core::error::Error for NewError {}

/// Refuses resources that cannot serve `config` on `device` (`now` starts
/// the client role's trial probes).
#[cfg_attr(not(feature = "client"), allow(unused_variables))]
pub(crate) fn check<D: Device + ?Sized, const N: usize>(
    config: &NodeConfig,
    (udp_rx, udp_tx): (usize, usize),
    device: &D,
    now: Instant,
) -> Result<(), NewError> {
    let caps = device.capabilities();
    let ip_mtu = match caps.medium {
        Medium::Ethernet => caps.max_transmission_unit.saturating_sub(14),
        #[allow(unreachable_patterns)]
        _ => caps.max_transmission_unit,
    };
    // The largest datagram that can arrive unfragmented (smoltcp is built
    // without reassembly, so nothing larger ever reaches the socket).
    let largest = ip_mtu.saturating_sub(IPV4_UDP_HEADERS);
    if !cfg!(feature = "dhcp") && matches!(config.ipv4, Ipv4Config::Dhcp { .. }) {
        return Err(NewError::DhcpNotBuilt);
    }
    if matches!(config.role, Role::Server) {
        check_ports::<N>(config)?;
        if !cfg!(feature = "udp") && config.udp.is_some() {
            return Err(NewError::UdpNotBuilt);
        }
    }
    let (rx_needed, tx_needed) = match config.role {
        Role::Server => match config.udp {
            Some(policy) => (
                largest.max(policy.max_datagram.saturating_add(1)),
                policy.max_datagram,
            ),
            None => (0, 0),
        },
        #[cfg(feature = "client")]
        Role::Client {
            probe, datagram, ..
        } => {
            let size = crate::client::check(N, probe, datagram, now)?;
            (size, size)
        }
    };
    if udp_rx < rx_needed {
        return Err(NewError::UdpReceiveRingTooSmall {
            needed: rx_needed,
            capacity: udp_rx,
        });
    }
    if udp_tx < tx_needed {
        return Err(NewError::UdpTransmitRingTooSmall {
            needed: tx_needed,
            capacity: udp_tx,
        });
    }
    Ok(())
}

/// Every TCP port is usable, distinct, and has a socket.
fn check_ports<const N: usize>(config: &NodeConfig) -> Result<(), NewError> {
    let mut ports = 0;
    for (index, served) in config.tcp_ports().enumerate() {
        let again = config
            .tcp_ports()
            .take(index)
            .any(|p| p.port == served.port);
        if served.port == 0 || again {
            return Err(NewError::BadPort { port: served.port });
        }
        ports += 1;
    }
    if ports > N {
        return Err(NewError::MorePortsThanSockets { ports, sockets: N });
    }
    Ok(())
}

/// Applies the socket-level TCP settings.
pub(crate) fn configure(socket: &mut tcp::Socket<'_>, config: &TcpConfig) {
    socket.set_timeout(config.timeout.map(clock::duration_to_smoltcp));
    socket.set_keep_alive(config.keep_alive.map(clock::duration_to_smoltcp));
    socket.set_nagle_enabled(config.nagle);
}
