//! What a node does, chosen once at start-up.

#[cfg(feature = "client")]
use ricochet_core::{DatagramProbeConfig, ProbeConfig};
use ricochet_core::{Duration, Mode, PolicyConfig, SessionConfig};
#[cfg(feature = "client")]
use smoltcp::wire::IpEndpoint;
use smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};

/// The echo port (RFC 862).
pub const ECHO_PORT: u16 = 7;

/// The port [`NodeConfig::serve_every_mode`] serves `lines` sessions on.
pub const LINES_PORT: u16 = 7001;

/// The port [`NodeConfig::serve_every_mode`] serves `frames` sessions on.
pub const FRAMES_PORT: u16 = 7002;

/// TCP ports beside [`NodeConfig::port`] one node can serve.
pub const MAX_EXTRA_PORTS: usize = 2;

/// A TCP port the pool serves, and the session mode of its connections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ModePort {
    /// The TCP port.
    pub port: u16,
    /// How its connections are echoed.
    pub mode: Mode,
}

/// Everything a node needs to know at start-up. Start from
/// [`NodeConfig::new`] and change the fields that differ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NodeConfig {
    /// The interface's MAC address (also the source of the IPv6 link-local
    /// address with the `ipv6` feature).
    pub mac: EthernetAddress,
    /// Seed of smoltcp's generator (TCP initial sequence numbers, DHCP
    /// transaction ids) and of the client role's ephemeral ports. Make it
    /// differ from boot to boot where the board has any entropy.
    pub random_seed: u64,
    /// How the node gets its IPv4 address.
    pub ipv4: Ipv4Config,
    /// Serve echo, or probe a server.
    pub role: Role,
    /// The port served (TCP and UDP) in the server role. Its TCP
    /// connections are echoed in `session.mode`.
    pub port: u16,
    /// More TCP ports served by the same pool of sockets, each in its own
    /// mode (the other session settings are `session`'s). A free socket
    /// listens on whichever port needs it most: every port keeps a
    /// listener while there are at least as many free sockets as ports,
    /// `port` first, then the extra ports in order. Needs `N` of at least
    /// the number of ports ([`NewError::MorePortsThanSockets`](crate::NewError)).
    pub extra_ports: [Option<ModePort>; MAX_EXTRA_PORTS],
    /// How each TCP connection is echoed: mode (`raw`, `lines`, `frames`),
    /// idle and drain timeouts, and the linger after a graceful close (how
    /// long the node waits for the client's FIN and for the acknowledgement
    /// of everything it sent, counted from the last progress of that
    /// delivery; then it resets the connection). The linger also bounds
    /// the wait for a reset's RST to go out.
    pub session: SessionConfig,
    /// UDP echo through the core's policy (oversize, loop guard, rate
    /// limit); `None` serves TCP only. `max_datagram` must be below the
    /// resources' [`UdpRxBuffer`](crate::UdpRxBuffer) size and at most their
    /// [`UdpTxBuffer`](crate::UdpTxBuffer) size.
    pub udp: Option<PolicyConfig>,
    /// Socket-level TCP settings.
    pub tcp: TcpConfig,
}

/// The node's default session drain timeout: longer than smoltcp's 60 s
/// socket timeout ([`TcpConfig::DEFAULT`]).
///
/// On a lossy path smoltcp backs its retransmission timer off (to 32 s and
/// more) while the transmit buffer is full of unacknowledged echo, so the
/// session sees no progress although the peer is reading. With the core's
/// 30 s default the drain timeout reset such peers (found by the
/// fault-injection tests at 10 % loss). A peer that stops acknowledging
/// altogether is ended by smoltcp's socket timeout at 60 s; one that keeps
/// acknowledging with a zero window (it stopped reading) is ended by this
/// drain timeout.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(120);

/// The node's default linger after a graceful close (the core's default is
/// 2 s): long enough for a few retransmissions between two
/// acknowledgements at smoltcp's 1 s minimum retransmission timeout.
pub const LINGER: Duration = Duration::from_secs(5);

impl NodeConfig {
    /// A server on port 7: DHCP without a fallback, `raw` sessions with the
    /// core's idle timeout (300 s), [`DRAIN_TIMEOUT`] (120 s) and
    /// [`LINGER`] (5 s), UDP echo
    /// with [`PolicyConfig::DEFAULT`]
    /// (1472-byte datagrams, loop guard, 1000/s burst 100 per source), and
    /// [`TcpConfig::DEFAULT`].
    pub fn new(mac: EthernetAddress) -> Self {
        NodeConfig {
            mac,
            random_seed: 0,
            ipv4: Ipv4Config::Dhcp {
                fallback: None,
                fallback_after: Duration::from_secs(2),
            },
            role: Role::Server,
            port: ECHO_PORT,
            extra_ports: [None; MAX_EXTRA_PORTS],
            session: SessionConfig {
                drain_timeout: Some(DRAIN_TIMEOUT),
                linger: LINGER,
                ..SessionConfig::default()
            },
            // Without the `udp` feature there is no UDP echo to configure.
            udp: if cfg!(feature = "udp") {
                Some(PolicyConfig::DEFAULT)
            } else {
                None
            },
            tcp: TcpConfig::DEFAULT,
        }
    }
}

impl NodeConfig {
    /// Serves every mode: `raw` on `port` (and UDP there), `lines` on
    /// [`LINES_PORT`] (7001) and `frames` on [`FRAMES_PORT`] (7002).
    pub fn serve_every_mode(&mut self) {
        self.session.mode = Mode::Raw;
        self.extra_ports = [
            Some(ModePort {
                port: LINES_PORT,
                mode: Mode::Lines,
            }),
            Some(ModePort {
                port: FRAMES_PORT,
                mode: Mode::Frames,
            }),
        ];
    }

    /// Every TCP port served, `port` first, with its mode.
    pub(crate) fn tcp_ports(&self) -> impl Iterator<Item = ModePort> + '_ {
        let first = ModePort {
            port: self.port,
            mode: self.session.mode,
        };
        core::iter::once(first).chain(self.extra_ports.iter().flatten().copied())
    }
}

/// How the node gets its IPv4 address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Ipv4Config {
    /// Ask a DHCPv4 server. Without a lease after `fallback_after`,
    /// `fallback` (if any) is applied; DHCP keeps trying, and a later lease
    /// replaces the fallback.
    Dhcp {
        /// The address used while there is no lease.
        fallback: Option<StaticIpv4>,
        /// How long to wait for a lease before applying `fallback`.
        fallback_after: Duration,
    },
    /// A fixed address from the start; no DHCP.
    Static(StaticIpv4),
}

/// A fixed IPv4 configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StaticIpv4 {
    /// Address and prefix length.
    pub address: Ipv4Cidr,
    /// Default gateway, if any.
    pub gateway: Option<Ipv4Address>,
}

/// What the node is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Role {
    /// Serve echo on TCP and UDP [`NodeConfig::port`].
    Server,
    /// Run the core's verifying client against an echo server (for example
    /// a desktop `ricochet serve`), once, and report through the stats.
    /// Uses the first TCP socket and the UDP socket of the resources. Needs
    /// the `client` feature (on by default).
    #[cfg(feature = "client")]
    Client {
        /// The server (TCP, and UDP for `datagram`).
        server: IpEndpoint,
        /// The stream probe: mode (must match the server's), pattern,
        /// sizes, count, timeouts.
        probe: ProbeConfig,
        /// A datagram probe run alongside, if any. Its `size.max` must fit
        /// the resources' [`UdpTxBuffer`](crate::UdpTxBuffer).
        datagram: Option<DatagramProbeConfig>,
    },
}

/// Socket-level TCP settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TcpConfig {
    /// smoltcp's socket timeout: a connection whose peer sends nothing for
    /// this long is aborted (counted as `aborted.timed_out`). smoltcp counts
    /// it from the peer's last segment, or from the moment data was queued
    /// on an empty transmit buffer, whichever is later.
    pub timeout: Option<Duration>,
    /// smoltcp's keep-alive interval: a connection quiet this long gets a
    /// keep-alive segment, whose answer restarts `timeout`. Shorter than
    /// `timeout`, or a healthy client that is merely quiet is aborted at
    /// `timeout` (as `timed_out`) long before the session's idle timeout;
    /// a peer that vanished answers none and is aborted at `timeout`.
    pub keep_alive: Option<Duration>,
    /// How long a socket may wait for the client's ACK after answering its
    /// SYN before it listens again: a forged or lost SYN ties up a socket
    /// for this long at most.
    pub handshake_timeout: Duration,
    /// Nagle's algorithm. Off by default: an echo is latency bound.
    pub nagle: bool,
}

impl TcpConfig {
    /// 60 s socket timeout, a keep-alive every 20 s of quiet (two
    /// unanswered ones before the timeout: a vanished peer goes at 60 s, a
    /// quiet one stays until the session's idle timeout), 5 s handshake
    /// timeout, Nagle off.
    pub const DEFAULT: TcpConfig = TcpConfig {
        timeout: Some(Duration::from_secs(60)),
        keep_alive: Some(Duration::from_secs(20)),
        handshake_timeout: Duration::from_secs(5),
        nagle: false,
    };
}

impl Default for TcpConfig {
    /// [`TcpConfig::DEFAULT`].
    fn default() -> Self {
        Self::DEFAULT
    }
}
