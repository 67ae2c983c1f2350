//! The node: a smoltcp interface, its sockets, and the service its role
//! runs on them.

use core::fmt;
use core::mem::MaybeUninit;

use embedded_hal::digital::OutputPin;
use ricochet_core::time::earliest;
use ricochet_core::{Instant, Pump};
use smoltcp::iface::{
    Config, Interface, PollIngressSingleResult, PollResult, SocketHandle, SocketSet,
};
use smoltcp::phy::Device;
use smoltcp::socket::tcp;
#[cfg(feature = "udp")]
use smoltcp::socket::udp;
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::Ipv4Cidr;

use crate::addressing::{AddressSource, Addressing, ipv4_cidr};
#[cfg(feature = "client")]
use crate::client::Client;
use crate::clock;
use crate::config::{NodeConfig, Role};
#[cfg(feature = "udp")]
use crate::datagram_echo::DatagramEcho;
use crate::led::{Activity, NoLed};
use crate::resources::{
    NodeResources, SessionSize, TcpRxSize, TcpTxSize, UdpRxSize, UdpTxSize, socket_slots,
};
use crate::setup::{NewError, check, check_settings, configure};
use crate::stats::NodeStats;
use crate::stream_echo::{After, StreamEcho};

/// Frames [`EchoNode::poll`] takes in at most per call; with more waiting
/// it returns a zero delay, so one call's work stays bounded.
pub const MAX_FRAMES_PER_POLL: usize = 32;

/// Egress rounds per received frame (each round sends at most one packet
/// per socket); what is left goes out on the next call.
const EGRESS_ROUNDS: usize = 16;

/// What the node runs on its sockets.
// Both variants live once, inline, in the node; boxing is not an option
// without an allocator.
#[allow(clippy::large_enum_variant)]
enum Service<'a, const N: usize> {
    Server {
        stream: StreamEcho<'a, N>,
        #[cfg(feature = "udp")]
        datagram: Option<DatagramEcho<'a>>,
    },
    #[cfg(feature = "client")]
    Client(Client<'a>),
    /// No sockets (a state `EchoNode::new` refuses to build).
    #[cfg(feature = "client")]
    Idle,
}

/// An RFC 862 echo node on a smoltcp interface: TCP and UDP echo in the
/// server role, the core's verifying probes in the client role.
///
/// `N` TCP sockets, each with a session buffer driven by a core
/// [`Pump`](ricochet_core::Pump), come from the [`NodeResources`]; `L` is
/// an optional activity LED. The node never
/// touches hardware: the board passes the [`Device`] and the time to every
/// call.
///
/// Call order (see the [crate docs](crate)): [`new`](Self::new) or
/// [`init`](Self::init) once, then in a loop [`poll`](Self::poll), sleep for
/// at most the delay it returns (or until a frame arrives), repeat. Time
/// never goes backwards.
pub struct EchoNode<'a, const N: usize, L = NoLed> {
    iface: Interface,
    sockets: SocketSet<'a>,
    addressing: Addressing,
    service: Service<'a, N>,
    stats: NodeStats,
    led: Activity<L>,
}

impl<'a, const N: usize, L: OutputPin> EchoNode<'a, N, L> {
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
    /// The node is built in a function never inlined: building it needs a
    /// few KiB of temporaries (sessions, sockets) that must not stay
    /// reserved in the caller's stack frame, which on a board is `main`'s
    /// and lives forever. To keep the node itself in a `static`, prefer
    /// [`init`](Self::init).
    #[inline(always)]
    pub fn new<
        D,
        const SLOTS: usize,
        S: SessionSize,
        R: TcpRxSize,
        T: TcpTxSize,
        UR: UdpRxSize,
        UT: UdpTxSize,
    >(
        config: NodeConfig,
        resources: &'a mut NodeResources<'a, N, SLOTS, S, R, T, UR, UT>,
        led: L,
        device: &mut D,
        now: SmolInstant,
    ) -> Result<Self, NewError>
    where
        D: Device + ?Sized,
    {
        // Inlined into the caller, where the configuration's constants
        // fold these checks away.
        check_settings(&config, S::LEN)?;
        Self::new_checked(config, resources, led, device, now)
    }

    /// [`new`](Self::new) once `check_settings` passed.
    #[inline(never)]
    fn new_checked<
        D,
        const SLOTS: usize,
        S: SessionSize,
        R: TcpRxSize,
        T: TcpTxSize,
        UR: UdpRxSize,
        UT: UdpTxSize,
    >(
        config: NodeConfig,
        resources: &'a mut NodeResources<'a, N, SLOTS, S, R, T, UR, UT>,
        led: L,
        device: &mut D,
        now: SmolInstant,
    ) -> Result<Self, NewError>
    where
        D: Device + ?Sized,
    {
        Self::check_resources::<D, SLOTS>(&config, (UR::LEN, UT::LEN), device, now)?;
        resources.fill();
        Ok(Self::build(config, resources, led, device, now))
    }

    /// [`new`](Self::new), writing the node into `slot` (for a `static`:
    /// `static_cell::StaticCell::uninit()`), so that no stack temporary of
    /// the node's size exists at boot. Returns the node.
    #[inline(always)]
    pub fn init<
        's,
        D,
        const SLOTS: usize,
        S: SessionSize,
        R: TcpRxSize,
        T: TcpTxSize,
        UR: UdpRxSize,
        UT: UdpTxSize,
    >(
        slot: &'s mut MaybeUninit<Self>,
        config: NodeConfig,
        resources: &'a mut NodeResources<'a, N, SLOTS, S, R, T, UR, UT>,
        led: L,
        device: &mut D,
        now: SmolInstant,
    ) -> Result<&'s mut Self, NewError>
    where
        D: Device + ?Sized,
    {
        // Inlined into the caller, where the configuration's constants
        // fold these checks away.
        check_settings(&config, S::LEN)?;
        Self::init_checked(slot, config, resources, led, device, now)
    }

    /// [`init`](Self::init) once `check_settings` passed.
    #[inline(never)]
    fn init_checked<
        's,
        D,
        const SLOTS: usize,
        S: SessionSize,
        R: TcpRxSize,
        T: TcpTxSize,
        UR: UdpRxSize,
        UT: UdpTxSize,
    >(
        slot: &'s mut MaybeUninit<Self>,
        config: NodeConfig,
        resources: &'a mut NodeResources<'a, N, SLOTS, S, R, T, UR, UT>,
        led: L,
        device: &mut D,
        now: SmolInstant,
    ) -> Result<&'s mut Self, NewError>
    where
        D: Device + ?Sized,
    {
        Self::check_resources::<D, SLOTS>(&config, (UR::LEN, UT::LEN), device, now)?;
        resources.fill();
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
        S: SessionSize,
        R: TcpRxSize,
        T: TcpTxSize,
        UR: UdpRxSize,
        UT: UdpTxSize,
    >(
        slot: &'s mut MaybeUninit<Self>,
        config: NodeConfig,
        resources: &'a mut NodeResources<'a, N, SLOTS, S, R, T, UR, UT>,
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
    fn check_resources<D, const SLOTS: usize>(
        config: &NodeConfig,
        udp: (usize, usize),
        device: &D,
        now: SmolInstant,
    ) -> Result<(), NewError>
    where
        D: Device + ?Sized,
    {
        const {
            assert!(
                SLOTS >= socket_slots(N),
                "NodeResources: SLOTS must be at least socket_slots(N): N, plus 1 with the `udp` feature and 1 with `dhcp`"
            );
        }
        check::<D, N>(config, udp, device, clock::to_core(now))
    }

    /// Builds the node: `check_resources` passed and the resources'
    /// vectors are filled.
    #[inline(always)]
    fn build<
        D,
        const SLOTS: usize,
        S: SessionSize,
        R: TcpRxSize,
        T: TcpTxSize,
        UR: UdpRxSize,
        UT: UdpTxSize,
    >(
        config: NodeConfig,
        resources: &'a mut NodeResources<'a, N, SLOTS, S, R, T, UR, UT>,
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
            pumps,
            sockets,
            udp_rx,
            udp_tx,
            udp_copy,
            #[cfg(feature = "udp")]
            udp_rx_meta,
            #[cfg(feature = "udp")]
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
        // Only the client role writes into the stats at start-up.
        #[cfg_attr(not(feature = "client"), allow(unused_mut))]
        let mut stats = NodeStats::default();
        let addressing = Addressing::new(config.ipv4, &mut iface, &mut set, t);

        let mut tcp_sockets = tcp_rx.iter_mut().zip(tcp_tx.iter_mut()).map(|(rx, tx)| {
            let mut socket = tcp::Socket::new(
                tcp::SocketBuffer::new(rx.bytes()),
                tcp::SocketBuffer::new(tx.bytes()),
            );
            configure(&mut socket, &config.tcp);
            socket
        });
        #[cfg(feature = "udp")]
        let udp_socket = udp::Socket::new(
            udp::PacketBuffer::new(&mut udp_rx_meta[..], udp_rx.bytes()),
            udp::PacketBuffer::new(&mut udp_tx_meta[..], udp_tx.bytes()),
        );
        #[cfg(not(feature = "udp"))]
        let _ = (udp_rx, udp_tx, udp_copy);

        let service = match config.role {
            Role::Server => {
                let mut handles = [SocketHandle::default(); N];
                for (handle, socket) in handles.iter_mut().zip(&mut tcp_sockets) {
                    *handle = set.add(socket);
                }
                pumps.clear();
                for session in sessions.iter_mut() {
                    // `pumps` holds N: one per session buffer fits. Each
                    // waits, vacant, for its socket's first connection.
                    let _ = pumps.push(Pump::vacant(session.bytes(), config.session, t));
                }
                let stream = StreamEcho::new(
                    handles,
                    &mut pumps[..],
                    config.tcp_ports(),
                    config.session,
                    &config.tcp,
                    &mut set,
                );
                #[cfg(feature = "udp")]
                let datagram = config.udp.map(|policy| {
                    let handle = set.add(udp_socket);
                    DatagramEcho::new(
                        handle,
                        config.port,
                        policy,
                        config.random_seed,
                        udp_copy.bytes(),
                        &mut set,
                    )
                });
                Service::Server {
                    stream,
                    #[cfg(feature = "udp")]
                    datagram,
                }
            }
            #[cfg(feature = "client")]
            Role::Client {
                server,
                probe,
                datagram,
            } => {
                match tcp_sockets.next() {
                    Some(socket) => {
                        let tcp = set.add(socket);
                        let datagram = datagram.map(|d| (d, set.add(udp_socket), udp_copy.bytes()));
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
                #[cfg(feature = "client")]
                Role::Client { .. } => "client",
            },
            N,
            S::LEN
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
            traffic |= self.service(t, After::Ingress);
            self.egress(now, device);
            // Before the next frame: a socket that died while sending (its
            // timeout) is told apart from one a frame reset, and one whose
            // abort just went out listens again.
            traffic |= self.service(t, After::Egress);
        }
        self.addressing.update(
            t,
            &mut self.iface,
            &mut self.sockets,
            &mut self.stats.addressing,
        );
        traffic |= self.service(t, After::Egress);
        self.egress(now, device);
        // A socket whose abort just went out on the wire can listen again now.
        traffic |= self.service(t, After::Egress);
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
        let addressing = &self.stats.addressing;
        info!(
            "ipv4: {:?} from {:?}; {} leases, {} fallbacks",
            self.ipv4_address(),
            self.address_source(),
            addressing.leases,
            addressing.fallbacks
        );
        match self.service {
            Service::Server { .. } => self.stats.log_server(),
            #[cfg(feature = "client")]
            Service::Client(_) => self.stats.log_client(),
            #[cfg(feature = "client")]
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

    /// Bytes held by each session being served now (each at most the
    /// session buffer's size):
    /// the node's memory use beyond its fixed buffers is zero, this shows
    /// how full they are.
    pub fn session_buffers(&self) -> impl Iterator<Item = usize> + '_ {
        let stream = match &self.service {
            Service::Server { stream, .. } => Some(stream.buffered()),
            #[cfg(feature = "client")]
            Service::Client(_) | Service::Idle => None,
        };
        stream.into_iter().flatten()
    }

    /// Whether the client role's probes have all finished (always `false`
    /// in the server role).
    #[cfg(feature = "client")]
    pub fn client_finished(&self) -> bool {
        matches!(self.service, Service::Client(_)) && self.stats.client.finished()
    }

    /// The link came (back) up: DHCP starts over at once instead of at its
    /// next retry, and so does the fallback delay while there is no address.
    pub fn link_up(&mut self, now: SmolInstant) {
        self.addressing
            .link_up(clock::to_core(now), &mut self.sockets);
    }

    /// Services the role's sockets; returns whether traffic moved. `after`
    /// says what the interface did since the last service.
    fn service(&mut self, t: Instant, after: After) -> bool {
        match &mut self.service {
            Service::Server {
                stream,
                #[cfg(feature = "udp")]
                datagram,
            } => {
                #[cfg_attr(not(feature = "udp"), allow(unused_mut))]
                let mut moved = stream.service(t, after, &mut self.sockets, &mut self.stats);
                #[cfg(feature = "udp")]
                if let Some(datagram) = datagram {
                    moved |= datagram.service(t, &self.iface, &mut self.sockets, &mut self.stats);
                }
                moved
            }
            #[cfg(feature = "client")]
            Service::Client(client) => client.service(
                t,
                &mut self.iface,
                &mut self.sockets,
                &mut self.stats.client,
            ),
            #[cfg(feature = "client")]
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
            #[cfg(feature = "udp")]
            Service::Server { stream, datagram } => earliest(
                stream.deadline(),
                datagram.as_ref().and_then(DatagramEcho::deadline),
            ),
            #[cfg(not(feature = "udp"))]
            Service::Server { stream } => stream.deadline(),
            #[cfg(feature = "client")]
            Service::Client(client) => client.deadline(),
            #[cfg(feature = "client")]
            Service::Idle => None,
        }
    }
}

impl<const N: usize, L> fmt::Debug for EchoNode<'_, N, L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EchoNode")
            .field("tcp_sockets", &N)
            .field("ipv4", &ipv4_cidr(&self.iface))
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}
