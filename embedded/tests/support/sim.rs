//! A node and a host on one wire, with a virtual clock.
//!
//! Each [`Sim::step`] polls the node, the host and the test's clients, then
//! moves the clock: by [`LINK_DELAY`] while frames are in flight, else
//! straight to the earliest deadline anyone reported (the node's
//! [`EchoNode::poll`] delay included), so timeouts of seconds run in
//! microseconds of real time and no test sleeps.

use ricochet_core::Instant;
use ricochet_embedded::{
    EchoNode, NoLed, NodeConfig, NodeResources, SessionBuffer, SessionSize, TcpRxSize, TcpTxSize,
    UdpRxSize, UdpTxSize,
};
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::{EthernetAddress, IpAddress, IpEndpoint, Ipv4Address, Ipv4Cidr};

use super::host::Host;
use super::pair::{PairDevice, pair};

/// Virtual time per step while frames are in flight.
pub const LINK_DELAY: u64 = 10;

pub const NODE_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x01]);
pub const HOST_MAC: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 0x02]);
pub const NODE_IP: Ipv4Address = Ipv4Address::new(192, 168, 69, 1);
pub const HOST_IP: Ipv4Address = Ipv4Address::new(192, 168, 69, 2);

/// The node's echo endpoint.
pub fn echo_endpoint() -> IpEndpoint {
    IpEndpoint::new(IpAddress::Ipv4(NODE_IP), 7)
}

/// A server-role configuration with a static address.
pub fn server_config() -> NodeConfig {
    let mut config = NodeConfig::new(NODE_MAC);
    config.random_seed = 7;
    config.ipv4 = ricochet_embedded::Ipv4Config::Static(ricochet_embedded::StaticIpv4 {
        address: Ipv4Cidr::new(NODE_IP, 24),
        gateway: None,
    });
    config
}

/// Leaked resources for one node with `BUF`-byte session buffers and the
/// default socket buffers (tests only).
pub fn resources<const N: usize, const SLOTS: usize, const BUF: usize>()
-> &'static mut NodeResources<'static, N, SLOTS, SessionBuffer<BUF>> {
    Box::leak(Box::new(NodeResources::new()))
}

pub fn smol(t: u64) -> SmolInstant {
    SmolInstant::from_micros(t as i64)
}

pub fn core(t: u64) -> Instant {
    Instant::from_micros(t)
}

/// Node + host + clock.
pub struct Sim<const N: usize, const SLOTS: usize, const BUF: usize> {
    /// Virtual time in microseconds.
    pub now: u64,
    pub node: EchoNode<'static, N>,
    pub node_dev: PairDevice,
    pub host: Host,
    /// The delay the node returned from its last poll.
    pub node_delay: Option<SmolDuration>,
    pub steps: u64,
}

impl<const N: usize, const SLOTS: usize, const BUF: usize> Sim<N, SLOTS, BUF> {
    pub fn new(config: NodeConfig) -> Self {
        Self::with_resources(config, resources::<N, SLOTS, BUF>())
    }

    pub fn with_resources<
        S: SessionSize,
        R: TcpRxSize,
        T: TcpTxSize,
        UR: UdpRxSize,
        UT: UdpTxSize,
    >(
        config: NodeConfig,
        resources: &'static mut NodeResources<'static, N, SLOTS, S, R, T, UR, UT>,
    ) -> Self {
        Self::build(config, resources, |_| {})
    }

    /// A node whose device hands it every frame as if its checksums were
    /// valid (see [`PairDevice::trust_checksums`]), recording them.
    pub fn fuzzable(config: NodeConfig) -> Self {
        Self::build(
            config,
            resources::<N, SLOTS, BUF>(),
            PairDevice::trust_checksums,
        )
    }

    fn build<S: SessionSize, R: TcpRxSize, T: TcpTxSize, UR: UdpRxSize, UT: UdpTxSize>(
        config: NodeConfig,
        resources: &'static mut NodeResources<'static, N, SLOTS, S, R, T, UR, UT>,
        setup: impl FnOnce(&mut PairDevice),
    ) -> Self {
        let (mut node_dev, host_dev) = pair();
        setup(&mut node_dev);
        let now = 1_000;
        let node = EchoNode::new(config, resources, NoLed, &mut node_dev, smol(now)).unwrap();
        let host = Host::new(host_dev, HOST_MAC, Ipv4Cidr::new(HOST_IP, 24), smol(now));
        Sim {
            now,
            node,
            node_dev,
            host,
            node_delay: None,
            steps: 0,
        }
    }

    /// One round: node, host, then `drive` (the test's clients: it gets the
    /// host, the node and the time, and reports its earliest deadline and
    /// whether the test's goal is reached), host again; then the clock
    /// moves. Returns whether the goal is reached.
    pub fn step(&mut self, drive: &mut Driver<'_, N>) -> bool {
        self.step_before(drive, u64::MAX)
    }

    /// [`step`](Self::step), but the clock stops at `end` at the latest.
    pub fn step_before(&mut self, drive: &mut Driver<'_, N>, end: u64) -> bool {
        self.steps += 1;
        let now = smol(self.now);
        self.node_delay = self.node.poll(now, &mut self.node_dev);
        let host_delay = self.host.poll(now);
        let flow = drive(&mut self.host, &self.node, core(self.now));
        let host_delay2 = self.host.poll(now);
        let in_flight = self.node_dev.pending() + self.host.device.pending();
        let step = if in_flight > 0 {
            LINK_DELAY
        } else {
            let mut next: Option<u64> = None;
            for d in [self.node_delay, host_delay, host_delay2]
                .into_iter()
                .flatten()
            {
                let d = d.total_micros();
                next = Some(next.map_or(d, |n| n.min(d)));
            }
            if let Some(at) = flow.deadline {
                let d = at.as_micros().saturating_sub(self.now);
                next = Some(next.map_or(d, |n| n.min(d)));
            }
            next.unwrap_or(10_000).max(LINK_DELAY)
        };
        self.now = (self.now + step).min(end.max(self.now + LINK_DELAY));
        flow.done
    }

    /// Steps until `drive` reports its goal reached or `limit` virtual
    /// microseconds pass; returns whether the goal was reached.
    pub fn run(&mut self, limit: u64, drive: &mut Driver<'_, N>) -> bool {
        let end = self.now + limit;
        while self.now < end {
            if self.step_before(drive, end) {
                return true;
            }
        }
        false
    }

    /// Steps with no client for `span` virtual microseconds.
    pub fn idle(&mut self, span: u64) {
        let end = self.now + span;
        while self.now < end {
            self.step_before(&mut |_, _, _| Flow::idle(), end);
        }
    }
}

/// What a test's driver reports after each step.
pub struct Flow {
    /// The earliest instant the test's clients need to run again.
    pub deadline: Option<Instant>,
    /// The test's goal is reached.
    pub done: bool,
}

impl Flow {
    pub fn idle() -> Self {
        Flow {
            deadline: None,
            done: false,
        }
    }

    pub fn until(deadline: Option<Instant>, done: bool) -> Self {
        Flow { deadline, done }
    }
}

/// A test's clients: `(host, node, now) -> Flow`.
pub type Driver<'d, const N: usize> =
    dyn FnMut(&mut Host, &EchoNode<'static, N>, Instant) -> Flow + 'd;
