//! A node and a host on a wire that loses and corrupts frames, the way
//! smoltcp's own examples do it: each end of the in-memory pair sits
//! behind smoltcp's [`FaultInjector`], and a [`Tap`] outside each injector
//! counts what that side's stack sent (before any fault) and received
//! (after them): frames, TCP segments, retransmitted segments, intact UDP
//! datagrams, and damaged frames (see [`Traffic`]).
//!
//! smoltcp 0.14's `FaultInjector` drops frames in both directions, on
//! receive and on transmit, but corrupts received frames only: on transmit
//! it flips a bit of the buffer *before* smoltcp writes the frame into it,
//! so the flip is overwritten. [`FaultySim`] therefore sets the drop chance
//! on the node's injector alone (each direction loses [`Faults::loss_pct`]
//! of its frames, once) and the corruption chance on both injectors (each
//! direction corrupts [`Faults::corrupt_pct`] of its frames, once, on
//! arrival). The test `fault_injector_corrupts_received_frames_only` in
//! `tests/faults.rs` pins that behaviour down.
//!
//! The clock works as in [`Sim`](super::sim::Sim): [`LINK_DELAY`] per step
//! while frames are in flight (or the host took some in after the test's
//! driver ran), else a jump to the earliest deadline.

use std::cell::RefCell;
use std::rc::Rc;

use ricochet_embedded::{
    EchoNode, NoLed, NodeConfig, NodeResources, SessionSize, TcpRxSize, TcpTxSize, UdpRxSize,
    UdpTxSize,
};
use smoltcp::phy::{self, Device, DeviceCapabilities, FaultInjector, PacketMeta};
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Cidr, Ipv4Packet,
    TcpPacket, UdpPacket,
};

use super::host::Host;
use super::pair::{PairDevice, pair};
use super::sim::{Driver, HOST_IP, HOST_MAC, LINK_DELAY, core, resources, smol};

/// What the wire does to frames, in each direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Faults {
    /// Percent of frames lost, in each direction.
    pub loss_pct: u8,
    /// Percent of frames with one bit flipped, in each direction.
    pub corrupt_pct: u8,
    /// Seed of the injectors' generators (xorshift32, so never 0: a zero
    /// state stays zero and drops every frame).
    pub seed: u32,
}

impl Faults {
    /// A clean wire.
    pub const NONE: Faults = Faults {
        loss_pct: 0,
        corrupt_pct: 0,
        seed: 1,
    };

    /// `pct` percent of frames lost each way.
    pub const fn loss(pct: u8, seed: u32) -> Faults {
        Faults {
            loss_pct: pct,
            corrupt_pct: 0,
            seed,
        }
    }

    /// `pct` percent of frames corrupted each way.
    pub const fn corruption(pct: u8, seed: u32) -> Faults {
        Faults {
            loss_pct: 0,
            corrupt_pct: pct,
            seed,
        }
    }

    /// Neither loss nor corruption.
    pub const fn is_clean(&self) -> bool {
        self.loss_pct == 0 && self.corrupt_pct == 0
    }

    /// The chance that a frame sent one way arrives intact, assuming every
    /// flipped bit is caught (it is, except in the Ethernet header, which has
    /// no checksum without an FCS).
    pub fn one_way_delivery(&self) -> f64 {
        (1.0 - f64::from(self.loss_pct) / 100.0) * (1.0 - f64::from(self.corrupt_pct) / 100.0)
    }

    /// The chance that a request or its answer is lost: `1 - delivery²`.
    pub fn round_trip_loss(&self) -> f64 {
        1.0 - self.one_way_delivery().powi(2)
    }
}

impl core::fmt::Display for Faults {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match (self.loss_pct, self.corrupt_pct) {
            (0, 0) => f.write_str("clean"),
            (l, 0) => write!(f, "{l}% loss"),
            (0, c) => write!(f, "{c}% corrupt"),
            (l, c) => write!(f, "{l}% loss + {c}% corrupt"),
        }
    }
}

/// What one side of a [`Tap`] saw, one direction.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Frames.
    pub frames: u64,
    /// TCP segments that occupy sequence space (data, SYN or FIN).
    pub tcp_segments: u64,
    /// TCP payload bytes in them.
    pub tcp_payload: u64,
    /// Of those segments, the ones that start below the highest sequence
    /// number already seen on their connection: retransmissions (timeout,
    /// fast retransmit, zero-window probes).
    pub retransmitted_segments: u64,
    /// Sequence-space bytes sent again in them.
    pub retransmitted_bytes: u64,
    /// Intact UDP datagrams.
    pub udp_datagrams: u64,
    /// Frames the receiving stack must drop: addressed to another MAC (a
    /// flipped destination bit), of an unknown EtherType, or IPv4 that does
    /// not parse or fails the IPv4, TCP or UDP checksum. Always 0 for sent
    /// frames (the taps count before the faults).
    pub damaged: u64,
}

/// Where one TCP connection's sender has got to.
#[derive(Clone, Copy, Debug)]
struct SendState {
    ports: (u16, u16),
    isn: u32,
    /// One past the highest sequence number sent.
    next: u32,
}

#[derive(Debug, Default)]
struct Direction {
    /// The receiving side's MAC, for frames received.
    receiver: Option<EthernetAddress>,
    traffic: Traffic,
    connections: Vec<SendState>,
}

impl Direction {
    fn see(&mut self, frame: &[u8]) {
        self.traffic.frames += 1;
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            self.traffic.damaged += 1;
            return;
        };
        let dst = eth.dst_addr();
        let misaddressed = self
            .receiver
            .is_some_and(|mac| dst != mac && !dst.is_broadcast() && !dst.is_multicast());
        match eth.ethertype() {
            _ if misaddressed => {
                self.traffic.damaged += 1;
                return;
            }
            EthernetProtocol::Ipv4 => {}
            EthernetProtocol::Arp | EthernetProtocol::Ipv6 => return,
            _ => {
                self.traffic.damaged += 1;
                return;
            }
        }
        let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else {
            self.traffic.damaged += 1;
            return;
        };
        if !ip.verify_checksum() {
            self.traffic.damaged += 1;
            return;
        }
        let (src, dst) = (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
        );
        let intact = match ip.next_header() {
            IpProtocol::Tcp => match TcpPacket::new_checked(ip.payload()) {
                Ok(tcp) if tcp.verify_checksum(&src, &dst) => {
                    self.segment(&tcp);
                    true
                }
                _ => false,
            },
            IpProtocol::Udp => {
                let intact = UdpPacket::new_checked(ip.payload())
                    .is_ok_and(|udp| udp.verify_checksum(&src, &dst));
                self.traffic.udp_datagrams += u64::from(intact);
                intact
            }
            _ => true,
        };
        if !intact {
            self.traffic.damaged += 1;
        }
    }

    fn segment(&mut self, tcp: &TcpPacket<&[u8]>) {
        let len = tcp.segment_len();
        if len == 0 {
            return;
        }
        self.traffic.tcp_segments += 1;
        self.traffic.tcp_payload += tcp.payload().len() as u64;
        let ports = (tcp.src_port(), tcp.dst_port());
        let seq = tcp.seq_number().0 as u32;
        let end = seq.wrapping_add(len as u32);
        let known = self.connections.iter_mut().find(|c| c.ports == ports);
        match known {
            // A SYN with a new initial sequence number: a new connection.
            Some(c) if tcp.syn() && c.isn != seq => {
                *c = SendState {
                    ports,
                    isn: seq,
                    next: end,
                }
            }
            Some(c) => {
                let behind = c.next.wrapping_sub(seq) as i32;
                if behind > 0 {
                    self.traffic.retransmitted_segments += 1;
                    self.traffic.retransmitted_bytes += (behind as u64).min(len as u64);
                }
                if end.wrapping_sub(c.next) as i32 > 0 {
                    c.next = end;
                }
            }
            None => self.connections.push(SendState {
                ports,
                isn: seq,
                next: end,
            }),
        }
    }
}

#[derive(Debug, Default)]
struct TapState {
    sent: Direction,
    received: Direction,
}

/// A device that passes every frame through to `inner` and counts it.
pub struct Tap<D> {
    inner: D,
    state: Rc<RefCell<TapState>>,
}

impl<D> Tap<D> {
    /// A tap in front of `inner`, for the stack whose MAC is `mac`.
    pub fn new(inner: D, mac: EthernetAddress) -> Self {
        let mut state = TapState::default();
        state.received.receiver = Some(mac);
        Tap {
            inner,
            state: Rc::new(RefCell::new(state)),
        }
    }

    /// Frames this side's stack sent (before the wire's faults).
    pub fn sent(&self) -> Traffic {
        self.state.borrow().sent.traffic
    }

    /// Frames this side's stack received (after the wire's faults).
    pub fn received(&self) -> Traffic {
        self.state.borrow().received.traffic
    }
}

/// A received frame, counted when consumed.
pub struct TapRx<R> {
    inner: R,
    state: Rc<RefCell<TapState>>,
}

impl<R: phy::RxToken> phy::RxToken for TapRx<R> {
    fn consume<T, F>(self, f: F) -> T
    where
        F: FnOnce(&[u8]) -> T,
    {
        let TapRx { inner, state } = self;
        inner.consume(|frame| {
            state.borrow_mut().received.see(frame);
            f(frame)
        })
    }

    fn meta(&self) -> PacketMeta {
        self.inner.meta()
    }
}

/// A frame to send, counted once the stack has written it.
pub struct TapTx<T> {
    inner: T,
    state: Rc<RefCell<TapState>>,
}

impl<T: phy::TxToken> phy::TxToken for TapTx<T> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let TapTx { inner, state } = self;
        inner.consume(len, |buf| {
            let result = f(buf);
            state.borrow_mut().sent.see(buf);
            result
        })
    }

    fn set_meta(&mut self, meta: PacketMeta) {
        self.inner.set_meta(meta);
    }
}

impl<D: Device> Device for Tap<D> {
    type RxToken<'a>
        = TapRx<D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = TapTx<D::TxToken<'a>>
    where
        Self: 'a;

    fn receive(
        &mut self,
        timestamp: SmolInstant,
    ) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        let (rx, tx) = self.inner.receive(timestamp)?;
        Some((
            TapRx {
                inner: rx,
                state: self.state.clone(),
            },
            TapTx {
                inner: tx,
                state: self.state.clone(),
            },
        ))
    }

    fn transmit(&mut self, timestamp: SmolInstant) -> Option<Self::TxToken<'_>> {
        let tx = self.inner.transmit(timestamp)?;
        Some(TapTx {
            inner: tx,
            state: self.state.clone(),
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// One end of the pair as a stack sees it: counted, then faulted.
pub type FaultyEnd = Tap<FaultInjector<PairDevice>>;

/// What both taps saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WireStats {
    pub node_sent: Traffic,
    pub node_received: Traffic,
    pub host_sent: Traffic,
    pub host_received: Traffic,
}

impl WireStats {
    /// Frames sent and never received, both directions (frames still in
    /// flight count too: read this once the wire is quiet).
    pub fn frames_lost(&self) -> u64 {
        (self.node_sent.frames + self.host_sent.frames)
            .saturating_sub(self.node_received.frames + self.host_received.frames)
    }

    /// Damaged frames that reached a stack, both directions.
    pub fn frames_damaged(&self) -> u64 {
        self.node_received.damaged + self.host_received.damaged
    }

    /// Datagrams sent and never received intact, both directions.
    pub fn datagrams_lost(&self) -> u64 {
        (self.node_sent.udp_datagrams + self.host_sent.udp_datagrams)
            .saturating_sub(self.node_received.udp_datagrams + self.host_received.udp_datagrams)
    }

    /// TCP segments sent again, by the node and by the host.
    pub fn retransmitted(&self) -> (u64, u64) {
        (
            self.node_sent.retransmitted_segments,
            self.host_sent.retransmitted_segments,
        )
    }
}

/// How [`FaultySim::run`] ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The driver reported its goal reached.
    Done,
    /// The virtual-time limit passed first.
    TimeLimit,
    /// The step limit was reached first.
    StepLimit,
}

/// Node + host + clock on a faulty wire.
pub struct FaultySim<const N: usize, const BUF: usize> {
    /// Virtual time in microseconds.
    pub now: u64,
    pub node: EchoNode<'static, N>,
    /// The host's interface and sockets. Its own `device` is an unconnected
    /// stand-in: the host's real end is polled by the sim, through its
    /// fault injector.
    pub host: Host,
    node_end: FaultyEnd,
    host_end: FaultyEnd,
    /// Watchers on the wire's two queues (see [`PairDevice::watcher`]).
    wire: (PairDevice, PairDevice),
    pub steps: u64,
}

impl<const N: usize, const BUF: usize> FaultySim<N, BUF> {
    /// A node built from `config` with default-sized resources, and a host,
    /// joined by a wire with `faults`.
    pub fn new<const SLOTS: usize>(config: NodeConfig, faults: Faults) -> Self {
        Self::with_resources(config, resources::<N, SLOTS, BUF>(), faults)
    }

    /// [`new`](Self::new) with `resources` of any size.
    pub fn with_resources<
        const SLOTS: usize,
        S: SessionSize,
        R: TcpRxSize,
        T: TcpTxSize,
        UR: UdpRxSize,
        UT: UdpTxSize,
    >(
        config: NodeConfig,
        resources: &'static mut NodeResources<'static, N, SLOTS, S, R, T, UR, UT>,
        faults: Faults,
    ) -> Self {
        let (node_end, host_end) = pair();
        let wire = (node_end.watcher(), host_end.watcher());
        // Loss on the node's injector only (it drops on receive and on
        // transmit); corruption on both (each corrupts what it receives).
        let mut node_inj = FaultInjector::new(node_end, faults.seed);
        node_inj.set_drop_chance(faults.loss_pct);
        node_inj.set_corrupt_chance(faults.corrupt_pct);
        let mut host_inj = FaultInjector::new(host_end, faults.seed.rotate_left(16) ^ 0x9e37_79b9);
        host_inj.set_corrupt_chance(faults.corrupt_pct);
        let mut node_end = Tap::new(node_inj, config.mac);
        let host_end = Tap::new(host_inj, HOST_MAC);

        let now = 1_000;
        let node = EchoNode::new(config, resources, NoLed, &mut node_end, smol(now)).unwrap();
        // smoltcp's interface takes its capabilities (checksums verified
        // on receive, MTU) from this device once, at construction: the
        // stand-in has the same as the real end.
        let (stand_in, _) = pair();
        let host = Host::new(stand_in, HOST_MAC, Ipv4Cidr::new(HOST_IP, 24), smol(now));
        FaultySim {
            now,
            node,
            host,
            node_end,
            host_end,
            wire,
            steps: 0,
        }
    }

    /// What the taps saw so far.
    pub fn wire_stats(&self) -> WireStats {
        WireStats {
            node_sent: self.node_end.sent(),
            node_received: self.node_end.received(),
            host_sent: self.host_end.sent(),
            host_received: self.host_end.received(),
        }
    }

    fn poll_host(&mut self, now: SmolInstant) -> Option<SmolDuration> {
        let host = &mut self.host;
        host.iface.poll(now, &mut self.host_end, &mut host.sockets);
        host.iface.poll_delay(now, &host.sockets)
    }

    /// One round: node, host, `drive`, host again; then the clock moves
    /// ([`LINK_DELAY`] while frames are in flight or the host took in
    /// frames after `drive` ran, else to the earliest deadline), stopping
    /// at `end` at the latest. Returns whether the
    /// driver's goal is reached.
    pub fn step_before(&mut self, drive: &mut Driver<'_, N>, end: u64) -> bool {
        self.steps += 1;
        let now = smol(self.now);
        let node_delay = self.node.poll(now, &mut self.node_end);
        let host_delay = self.poll_host(now);
        let flow = drive(&mut self.host, &self.node, core(self.now));
        let seen = self.host_end.received().frames;
        let host_delay2 = self.poll_host(now);
        // Frames the host took in after `drive` ran: its sockets may hold
        // data `drive` has not read yet, so it gets another turn after a
        // link delay rather than after the next timer.
        let unread = self.host_end.received().frames > seen;
        let in_flight = self.wire.0.pending() + self.wire.1.pending();
        let step = if in_flight > 0 || unread {
            LINK_DELAY
        } else {
            let mut next = [node_delay, host_delay, host_delay2]
                .into_iter()
                .flatten()
                .map(|d| d.total_micros())
                .min();
            if let Some(at) = flow.deadline {
                let d = at.as_micros().saturating_sub(self.now);
                next = Some(next.map_or(d, |n| n.min(d)));
            }
            next.unwrap_or(10_000).max(LINK_DELAY)
        };
        self.now = (self.now + step).min(end.max(self.now + LINK_DELAY));
        flow.done
    }

    /// Steps until `drive` reports its goal reached, `limit` virtual
    /// microseconds pass, or `max_steps` steps are taken, whichever comes
    /// first: never unbounded.
    pub fn run(&mut self, limit: u64, max_steps: u64, drive: &mut Driver<'_, N>) -> Ended {
        let end = self.now + limit;
        let last = self.steps + max_steps;
        while self.now < end {
            if self.steps >= last {
                return Ended::StepLimit;
            }
            if self.step_before(drive, end) {
                return Ended::Done;
            }
        }
        Ended::TimeLimit
    }

    /// Steps with no client for `span` virtual microseconds.
    pub fn idle(&mut self, span: u64) {
        let end = self.now + span;
        while self.now < end {
            self.step_before(&mut |_, _, _| super::sim::Flow::idle(), end);
        }
    }
}
