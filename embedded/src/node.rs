//! The node: a smoltcp interface, its sockets, and the service its role
//! runs on them.

use core::fmt;
use core::mem::MaybeUninit;

use embedded_hal::digital::OutputPin;
use ricochet_core::probe::ConfigError;
use ricochet_core::{DatagramProbe, Instant, StreamProbe};
use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::phy::{Device, Medium};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::Ipv4Cidr;

use crate::addressing::{AddressSource, Addressing, ipv4_cidr};
use crate::client::{Client, PROBE_WINDOW, earliest};
use crate::clock;
use crate::config::{NodeConfig, Role, TcpConfig};
use crate::datagram_echo::DatagramEcho;
use crate::led::{Activity, NoLed};
use crate::resources::{NodeResources, socket_slots};
use crate::stats::{NodeStats, ProbeOutcome};
use crate::stream_echo::StreamEcho;

/// Frames [`EchoNode::poll`] takes in at most per call; with more waiting
/// it returns a zero delay, so one call's work stays bounded.
pub const MAX_FRAMES_PER_POLL: usize = 32;

/// Egress rounds per received frame (each round sends at most one packet
/// per socket); what is left goes out on the next call.
const EGRESS_ROUNDS: usize = 16;

/// IPv4 and UDP headers: the largest UDP payload is the IP MTU minus these.
const IPV4_UDP_HEADERS: usize = 20 + 8;

/// Why [`EchoNode::new`] refused the configuration or the resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum NewError {
    /// The client role needs at least one TCP socket (`N >= 1`).
    NoTcpSocket,
    /// The UDP receive ring (`UDP_RX`) must be larger than `max_datagram`
    /// and hold the largest datagram the device's MTU carries, or an
    /// oversize datagram would be lost uncounted instead of dropped and
    /// counted.
    UdpReceiveRingTooSmall {
        /// Bytes needed.
        needed: usize,
        /// `UDP_RX`.
        capacity: usize,
    },
    /// The UDP transmit ring (`UDP_TX`) must hold the largest datagram
    /// echoed (`max_datagram`) or probed (`size.max`).
    UdpTransmitRingTooSmall {
        /// Bytes needed.
        needed: usize,
        /// `UDP_TX`.
        capacity: usize,
    },
    /// A probe configuration the core refuses (client role).
    Probe(ConfigError),
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
        }
    }
}

impl core::error::Error for NewError {}

/// What the node runs on its sockets.
// Both variants live once, inline, in the node; boxing is not an option
// without an allocator.
#[allow(clippy::large_enum_variant)]
enum Service<'a, const N: usize, const BUF: usize> {
    Server {
        stream: StreamEcho<'a, N, BUF>,
        datagram: Option<DatagramEcho<'a>>,
    },
    Client(Client<'a>),
    /// No sockets (a state `EchoNode::new` refuses to build).
    Idle,
}

/// An RFC 862 echo node on a smoltcp interface: TCP and UDP echo in the
/// server role, the core's verifying probes in the client role.
///
/// `N` TCP sockets, each with a
/// [`Session<BUF>`](ricochet_core::Session), come from the
/// [`NodeResources`]; `L` is an optional activity LED. The node never
/// touches hardware: the board passes the [`Device`] and the time to every
/// call.
///
/// Call order (see the [crate docs](crate)): [`new`](Self::new) or
/// [`init`](Self::init) once, then in a loop [`poll`](Self::poll), sleep for
/// at most the delay it returns (or until a frame arrives), repeat. Time
/// never goes backwards.
pub struct EchoNode<'a, const N: usize, const BUF: usize, L = NoLed> {
    iface: Interface,
    sockets: SocketSet<'a>,
    addressing: Addressing,
    service: Service<'a, N, BUF>,
    stats: NodeStats,
    led: Activity<L>,
}

impl<'a, const N: usize, const BUF: usize, L: OutputPin> EchoNode<'a, N, BUF, L> {
    /// Builds the interface for `config.mac` in `resources`, adds the
    /// sockets the role needs, and starts listening (server) or waiting for
    /// an address (client). `led` is the activity LED, toggled once per
    /// [`poll`](Self::poll) that moved traffic (pin errors are ignored), or
    /// [`NoLed`].
    ///
    /// Fails, before touching the resources, when they cannot serve the
    /// configuration (see [`NewError`]). `SLOTS < socket_slots(N)` does not
    /// compile.
    ///
    /// Never inlined: building the node needs a few KiB of temporaries
    /// (sessions, sockets) that must not stay reserved in the caller's
    /// stack frame, which on a board is `main`'s and lives forever. To keep
    /// the node itself in a `static`, prefer [`init`](Self::init).
    #[inline(never)]
    pub fn new<
        D,
        const SLOTS: usize,
        const TCP_RX: usize,
        const TCP_TX: usize,
        const UDP_RX: usize,
        const UDP_TX: usize,
    >(
        config: NodeConfig,
        resources: &'a mut NodeResources<'a, N, SLOTS, BUF, TCP_RX, TCP_TX, UDP_RX, UDP_TX>,
        led: L,
        device: &mut D,
        now: SmolInstant,
    ) -> Result<Self, NewError>
    where
        D: Device + ?Sized,
    {
        Self::check_resources::<D, SLOTS, UDP_RX, UDP_TX>(&config, device, now)?;
        resources.fill(config.session, clock::to_core(now));
        Ok(Self::build(config, resources, led, device, now))
    }

    /// [`new`](Self::new), writing the node into `slot` (for a `static`:
    /// `static_cell::StaticCell::uninit()`), so that no stack temporary of
    /// the node's size exists at boot. Returns the node.
    #[inline(never)]
    pub fn init<
        's,
        D,
        const SLOTS: usize,
        const TCP_RX: usize,
        const TCP_TX: usize,
        const UDP_RX: usize,
        const UDP_TX: usize,
    >(
        slot: &'s mut MaybeUninit<Self>,
        config: NodeConfig,
        resources: &'a mut NodeResources<'a, N, SLOTS, BUF, TCP_RX, TCP_TX, UDP_RX, UDP_TX>,
        led: L,
        device: &mut D,
        now: SmolInstant,
    ) -> Result<&'s mut Self, NewError>
    where
        D: Device + ?Sized,
    {
        Self::check_resources::<D, SLOTS, UDP_RX, UDP_TX>(&config, device, now)?;
        resources.fill(config.session, clock::to_core(now));
        Ok(Self::build_into(slot, config, resources, led, device, now))
    }

    /// Builds the node straight into `slot`. Never inlined: its
    /// temporaries never coexist with `fill`'s, and are gone before the
    /// node runs.
    #[inline(never)]
    fn build_into<
        's,
        D,
        const SLOTS: usize,
        const TCP_RX: usize,
        const TCP_TX: usize,
        const UDP_RX: usize,
        const UDP_TX: usize,
    >(
        slot: &'s mut MaybeUninit<Self>,
        config: NodeConfig,
        resources: &'a mut NodeResources<'a, N, SLOTS, BUF, TCP_RX, TCP_TX, UDP_RX, UDP_TX>,
        led: L,
        device: &mut D,
        now: SmolInstant,
    ) -> &'s mut Self
    where
        D: Device + ?Sized,
    {
        slot.write(Self::build(config, resources, led, device, now))
    }

    /// Refuses resources that cannot serve `config` on `device`.
    fn check_resources<D, const SLOTS: usize, const UDP_RX: usize, const UDP_TX: usize>(
        config: &NodeConfig,
        device: &D,
        now: SmolInstant,
    ) -> Result<(), NewError>
    where
        D: Device + ?Sized,
    {
        const {
            assert!(
                SLOTS >= socket_slots(N),
                "NodeResources: SLOTS must be at least socket_slots(N) = N + 2"
            );
        }
        check(config, N, (UDP_RX, UDP_TX), device, clock::to_core(now))
    }

    /// Builds the node: `check_resources` passed and the resources'
    /// vectors are filled.
    #[inline(always)]
    fn build<
        D,
        const SLOTS: usize,
        const TCP_RX: usize,
        const TCP_TX: usize,
        const UDP_RX: usize,
        const UDP_TX: usize,
    >(
        config: NodeConfig,
        resources: &'a mut NodeResources<'a, N, SLOTS, BUF, TCP_RX, TCP_TX, UDP_RX, UDP_TX>,
        led: L,
        device: &mut D,
        now: SmolInstant,
    ) -> Self
    where
        D: Device + ?Sized,
    {
        let t = clock::to_core(now);
        let NodeResources {
            tcp_rx,
            tcp_tx,
            sessions,
            sockets,
            udp_rx,
            udp_tx,
            udp_copy,
            udp_rx_meta,
            udp_tx_meta,
        } = resources;

        let mut iface_config = Config::new(config.mac.into());
        iface_config.random_seed = config.random_seed;
        let mut iface = Interface::new(iface_config, device, now);
        #[cfg(feature = "ipv6")]
        iface.update_ip_addrs(|addrs| {
            let link_local = crate::addressing::link_local(config.mac);
            let cidr = smoltcp::wire::Ipv6Cidr::new(link_local, 64);
            if addrs.push(smoltcp::wire::IpCidr::Ipv6(cidr)).is_err() {
                error!("net: no room for {}", cidr);
            }
        });
        let mut set = SocketSet::new(&mut sockets[..]);
        let mut stats = NodeStats::default();
        let addressing = Addressing::new(config.ipv4, &mut iface, &mut set, t);

        let mut tcp_sockets = tcp_rx.iter_mut().zip(tcp_tx.iter_mut()).map(|(rx, tx)| {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(&mut rx[..]),
                tcp::SocketBuffer::new(&mut tx[..]),
            );
            configure(&mut socket, &config.tcp);
            socket
        });
        let udp_socket = udp::Socket::new(
            udp::PacketBuffer::new(&mut udp_rx_meta[..], &mut udp_rx[..]),
            udp::PacketBuffer::new(&mut udp_tx_meta[..], &mut udp_tx[..]),
        );

        let service = match config.role {
            Role::Server => {
                let mut handles = [SocketHandle::default(); N];
                for (handle, socket) in handles.iter_mut().zip(&mut tcp_sockets) {
                    *handle = set.add(socket);
                }
                let stream = StreamEcho::new(
                    handles,
                    &mut sessions[..],
                    config.port,
                    config.session,
                    &config.tcp,
                    &mut set,
                );
                let datagram = config.udp.map(|policy| {
                    let handle = set.add(udp_socket);
                    DatagramEcho::new(
                        handle,
                        config.port,
                        policy,
                        config.random_seed,
                        &mut udp_copy[..],
                        &mut set,
                    )
                });
                Service::Server { stream, datagram }
            }
            Role::Client {
                server,
                probe,
                datagram,
            } => {
                match tcp_sockets.next() {
                    Some(socket) => {
                        let tcp = set.add(socket);
                        let datagram =
                            datagram.map(|d| (d, set.add(udp_socket), &mut udp_copy[..]));
                        Service::Client(Client::new(
                            server,
                            probe,
                            tcp,
                            datagram,
                            config.random_seed,
                            &mut stats.client,
                        ))
                    }
                    // `check` refused N == 0 for this role.
                    None => Service::Idle,
                }
            }
        };
        info!(
            "node: {} as {:?}, {} TCP sockets, session buffer {}",
            config.mac,
            match config.role {
                Role::Server => "server",
                Role::Client { .. } => "client",
            },
            N,
            BUF
        );
        EchoNode {
            iface,
            sockets: set,
            addressing,
            service,
            stats,
            led: Activity::new(led),
        }
    }

    /// Runs the interface and every session once, and returns how long the
    /// board may sleep before calling again: `Some(ZERO)` when work is left
    /// (call again at once), `None` when only an arriving frame can bring
    /// new work. The delay is the earliest of smoltcp's own timers, every
    /// session's and probe's deadline, and the DHCP fallback.
    ///
    /// Work per call is bounded: at most [`MAX_FRAMES_PER_POLL`] frames are
    /// taken from `device`; after each, the sockets are serviced and what
    /// they queued is sent, so a UDP echo goes out before the next frame is
    /// read. Never panics, whatever the frames contain.
    #[inline(never)]
    pub fn poll<D>(&mut self, now: SmolInstant, device: &mut D) -> Option<SmolDuration>
    where
        D: Device + ?Sized,
    {
        let t = clock::to_core(now);
        self.iface.poll_maintenance(now);
        let mut traffic = false;
        let mut backlog = true;
        for _ in 0..MAX_FRAMES_PER_POLL {
            if let PollIngressSingleResult::None =
                self.iface
                    .poll_ingress_single(now, device, &mut self.sockets)
            {
                backlog = false;
                break;
            }
            traffic |= self.service(t);
            self.egress(now, device);
        }
        self.addressing.update(
            t,
            &mut self.iface,
            &mut self.sockets,
            &mut self.stats.addressing,
        );
        traffic |= self.service(t);
        self.egress(now, device);
        // A socket whose abort just went out on the wire can listen again now.
        traffic |= self.service(t);
        if traffic {
            self.led.toggle();
        }
        if backlog {
            return Some(SmolDuration::ZERO);
        }
        let stack = self.iface.poll_at(now, &self.sockets).map(clock::to_core);
        let next = earliest(earliest(stack, self.addressing.deadline()), self.deadline());
        next.map(|at| clock::duration_to_smoltcp(at.saturating_since(t)))
    }

    /// The counters.
    pub fn stats(&self) -> &NodeStats {
        &self.stats
    }

    /// Logs the counters (info level): call it periodically.
    pub fn log_stats(&self) {
        let NodeStats {
            tcp,
            udp,
            addressing,
            client,
        } = &self.stats;
        info!(
            "ipv4: {:?} from {:?}; {} leases, {} fallbacks",
            self.ipv4_address(),
            self.address_source(),
            addressing.leases,
            addressing.fallbacks
        );
        match self.service {
            Service::Server { .. } => {
                info!(
                    "tcp: {} accepted, {} active, {} closed, {} aborted (drain {}, reset {}, line {}, frame {}, truncated {}), {} lingered, {} handshakes timed out; {} bytes in, {} out",
                    tcp.accepted,
                    tcp.active,
                    tcp.closed.total(),
                    tcp.aborted.total(),
                    tcp.aborted.drain_timeout,
                    tcp.aborted.peer_reset,
                    tcp.aborted.line_too_long,
                    tcp.aborted.frame_too_large,
                    tcp.aborted.truncated_frame,
                    tcp.lingered,
                    tcp.handshake_timeouts,
                    tcp.bytes_in,
                    tcp.bytes_out
                );
                info!(
                    "udp: {} received, {} echoed ({} bytes); dropped {} oversize, {} loop guard, {} rate limited, {} not unicast, {} unroutable, {} tx full; {} stalled rings flushed",
                    udp.received,
                    udp.echoed,
                    udp.echoed_bytes,
                    udp.dropped.oversize,
                    udp.dropped.loop_guard,
                    udp.dropped.rate_limited,
                    udp.dropped.not_unicast,
                    udp.dropped.unroutable,
                    udp.dropped.tx_full,
                    udp.tx_flushes
                );
            }
            Service::Client(_) => {
                let rtt = client.stream_round_trips;
                info!(
                    "probe: {:?}; {} connects ({} failed); {} messages, {} bytes verified; rtt min {} mean {} max {}",
                    client.stream_outcome,
                    client.connects,
                    client.connect_failures,
                    client.stream.messages_verified,
                    client.stream.bytes_verified,
                    rtt.min,
                    rtt.mean(),
                    rtt.max
                );
                if client.datagram_outcome != ProbeOutcome::NotRun {
                    info!(
                        "probe: datagrams {:?}; {} sent, {} verified, {} lost, {} corrupt; rtt mean {}",
                        client.datagram_outcome,
                        client.datagram.sent,
                        client.datagram.verified,
                        client.datagram.lost,
                        client.datagram.corrupt,
                        client.datagram_round_trips.mean()
                    );
                }
            }
            Service::Idle => {}
        }
    }

    /// The IPv4 address and prefix, once there is one.
    pub fn ipv4_address(&self) -> Option<Ipv4Cidr> {
        ipv4_cidr(&self.iface)
    }

    /// Where the IPv4 address came from (`None`: no address yet).
    pub fn address_source(&self) -> Option<AddressSource> {
        self.addressing.source()
    }

    /// The smoltcp interface, to read its addresses and routes.
    pub fn interface(&self) -> &Interface {
        &self.iface
    }

    /// Bytes held by each session being served now (each at most `BUF`):
    /// the node's memory use beyond its fixed buffers is zero, this shows
    /// how full they are.
    pub fn session_buffers(&self) -> impl Iterator<Item = usize> + '_ {
        let stream = match &self.service {
            Service::Server { stream, .. } => Some(stream.buffered()),
            Service::Client(_) | Service::Idle => None,
        };
        stream.into_iter().flatten()
    }

    /// Whether the client role's probes have all finished (always `false`
    /// in the server role).
    pub fn client_finished(&self) -> bool {
        let c = &self.stats.client;
        matches!(self.service, Service::Client(_))
            && c.stream_outcome != ProbeOutcome::Running
            && c.datagram_outcome != ProbeOutcome::Running
    }

    /// The link came (back) up: DHCP starts over at once instead of at its
    /// next retry, and so does the fallback delay while there is no address.
    pub fn link_up(&mut self, now: SmolInstant) {
        self.addressing
            .link_up(clock::to_core(now), &mut self.sockets);
    }

    /// Services the role's sockets; returns whether traffic moved.
    fn service(&mut self, t: Instant) -> bool {
        match &mut self.service {
            Service::Server { stream, datagram } => {
                let mut moved = stream.service(t, &mut self.sockets, &mut self.stats.tcp);
                if let Some(datagram) = datagram {
                    moved |=
                        datagram.service(t, &self.iface, &mut self.sockets, &mut self.stats.udp);
                }
                moved
            }
            Service::Client(client) => client.service(
                t,
                &mut self.iface,
                &mut self.sockets,
                &mut self.stats.client,
            ),
            Service::Idle => false,
        }
    }

    /// Sends what the sockets queued, within a bounded number of rounds.
    fn egress<D: Device + ?Sized>(&mut self, now: SmolInstant, device: &mut D) {
        for _ in 0..EGRESS_ROUNDS {
            if let PollResult::None = self.iface.poll_egress(now, device, &mut self.sockets) {
                break;
            }
        }
    }

    /// The role's earliest deadline.
    fn deadline(&self) -> Option<Instant> {
        match &self.service {
            Service::Server { stream, datagram } => earliest(
                stream.deadline(),
                datagram.as_ref().and_then(DatagramEcho::deadline),
            ),
            Service::Client(client) => client.deadline(),
            Service::Idle => None,
        }
    }
}

impl<const N: usize, const BUF: usize, L> fmt::Debug for EchoNode<'_, N, BUF, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoNode")
            .field("tcp_sockets", &N)
            .field("session_buffer", &BUF)
            .field("ipv4", &ipv4_cidr(&self.iface))
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Refuses resources that cannot serve `config` on `device`.
fn check<D: Device + ?Sized>(
    config: &NodeConfig,
    tcp_sockets: usize,
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
    let (rx_needed, tx_needed) = match config.role {
        Role::Server => match config.udp {
            Some(policy) => (
                largest.max(policy.max_datagram.saturating_add(1)),
                policy.max_datagram,
            ),
            None => (0, 0),
        },
        Role::Client {
            probe, datagram, ..
        } => {
            if tcp_sockets == 0 {
                return Err(NewError::NoTcpSocket);
            }
            StreamProbe::<PROBE_WINDOW>::new(probe, now).map_err(NewError::Probe)?;
            if let Some(d) = datagram {
                DatagramProbe::<PROBE_WINDOW>::new(d, now).map_err(NewError::Probe)?;
            }
            let size = datagram.map_or(0, |d| d.size.max);
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

/// Applies the socket-level TCP settings.
fn configure(socket: &mut tcp::Socket<'_>, config: &TcpConfig) {
    socket.set_timeout(config.timeout.map(clock::duration_to_smoltcp));
    socket.set_keep_alive(config.keep_alive.map(clock::duration_to_smoltcp));
    socket.set_nagle_enabled(config.nagle);
}
