//! What [`EchoNode::new`](crate::EchoNode::new) checks before it builds a
//! node, the error it names, and the socket settings it applies.

use core::fmt;

use ricochet_core::probe::ConfigError;
use ricochet_core::{Duration, Instant, Mode};
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
    /// The client role's server cannot be connected to: port 0, or not a
    /// unicast address (unspecified, broadcast, multicast).
    #[cfg(feature = "client")]
    BadServer {
        /// The server configured.
        server: smoltcp::wire::IpEndpoint,
    },
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
    /// A TCP port's mode cannot echo anything over a
    /// [`SessionBuffer`](crate::SessionBuffer) this small
    /// ([`Mode::min_buffer`](ricochet_core::Mode::min_buffer): 1 byte, and
    /// 2 in `frames` mode, an empty frame's header).
    SessionBufferTooSmall {
        /// The port.
        port: u16,
        /// Bytes needed.
        needed: usize,
        /// The buffer's size.
        capacity: usize,
    },
    /// `session.idle_timeout` is `Some(ZERO)`: every connection would close
    /// at once (`None` disables it).
    ZeroIdleTimeout,
    /// `session.drain_timeout` is `Some(ZERO)`: every connection with a
    /// byte pending would abort at once (`None` disables it).
    ZeroDrainTimeout,
    /// [`TcpConfig::timeout`] is `Some(ZERO)`: smoltcp would drop every
    /// connection before it is established (`None` disables it).
    ZeroSocketTimeout,
    /// [`TcpConfig::keep_alive`] is `Some(ZERO)`: a keep-alive would go out
    /// on every poll, and the board would never sleep (`None` disables it).
    ZeroKeepAlive,
    /// [`TcpConfig::handshake_timeout`] is zero: every handshake would be
    /// dropped before the client's ACK.
    ZeroHandshakeTimeout,
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
            #[cfg(feature = "client")]
            NewError::BadServer { server } => write!(
                f,
                "server {server} cannot be connected to: give a unicast address and a port other than 0"
            ),
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
            NewError::SessionBufferTooSmall {
                port,
                needed,
                capacity,
            } => write!(
                f,
                "TCP port {port}: session buffer of {capacity} bytes, at least {needed} needed in its mode (a bigger SessionBuffer)"
            ),
            NewError::ZeroIdleTimeout => f.write_str(
                "session.idle_timeout of 0 would close every connection at once: None disables it",
            ),
            NewError::ZeroDrainTimeout => f.write_str(
                "session.drain_timeout of 0 would abort every connection at once: None disables it",
            ),
            NewError::ZeroSocketTimeout => f.write_str(
                "tcp.timeout of 0 would drop every connection: None disables it",
            ),
            NewError::ZeroKeepAlive => f.write_str(
                "tcp.keep_alive of 0 would send a keep-alive on every poll: None disables it",
            ),
            NewError::ZeroHandshakeTimeout => f.write_str(
                "tcp.handshake_timeout of 0 would drop every handshake: give it a positive one",
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
            server,
            probe,
            datagram,
        } => {
            let size = crate::client::check(N, server, probe, datagram, now)?;
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

/// Refuses a zero timeout, and a session buffer below the smallest unit of
/// a port's mode (`session_buffer` bytes). Always inlined: a board's
/// configuration is mostly constants, so these checks fold away.
#[inline(always)]
pub(crate) fn check_settings(config: &NodeConfig, session_buffer: usize) -> Result<(), NewError> {
    let (session, tcp) = (&config.session, &config.tcp);
    let zero = |d: Option<Duration>| d == Some(Duration::ZERO);
    if zero(session.idle_timeout) {
        return Err(NewError::ZeroIdleTimeout);
    }
    if zero(session.drain_timeout) {
        return Err(NewError::ZeroDrainTimeout);
    }
    if zero(tcp.timeout) {
        return Err(NewError::ZeroSocketTimeout);
    }
    if zero(tcp.keep_alive) {
        return Err(NewError::ZeroKeepAlive);
    }
    if tcp.handshake_timeout == Duration::ZERO {
        return Err(NewError::ZeroHandshakeTimeout);
    }
    // With the session buffer's size a constant, this folds away unless
    // some mode cannot use it.
    let small = [Mode::Raw, Mode::Lines, Mode::Frames]
        .iter()
        .any(|mode| session_buffer < mode.min_buffer());
    if small && matches!(config.role, Role::Server) {
        for served in config.tcp_ports() {
            let needed = served.mode.min_buffer();
            if session_buffer < needed {
                return Err(NewError::SessionBufferTooSmall {
                    port: served.port,
                    needed,
                    capacity: session_buffer,
                });
            }
        }
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
