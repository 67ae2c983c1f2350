//! # ricochet-embedded
//!
//! The Ricochet echo service on a [smoltcp] interface: board independent,
//! `#![no_std]`, no allocation, no hardware access. A board provides a
//! `smoltcp::phy::Device`, a clock and a main loop of a few dozen lines;
//! this crate provides everything else.
//!
//! | piece | what it holds |
//! |---|---|
//! | [`EchoNode`] | the smoltcp `Interface`, its sockets, the role's service, the counters |
//! | [`NodeResources`] | every buffer, each size named by its type, in a `static` the board owns |
//! | [`NodeConfig`] | the MAC, IPv4 addressing (DHCP with a static fallback, or static), the role, the session mode |
//! | TCP echo | `N` sockets listening on port 7 (and, with [`NodeConfig::serve_every_mode`], 7001 and 7002 in their modes) when free, each driven by the core's [`Pump`](ricochet_core::Pump) |
//! | UDP echo | the core's [`DatagramPolicy`](ricochet_core::DatagramPolicy): oversize, loop guard, rate limit |
//! | client role (`client` feature) | the core's [`StreamProbe`](ricochet_core::StreamProbe) (and [`DatagramProbe`](ricochet_core::DatagramProbe)) against a server |
//! | [`clock`] | the only conversions between smoltcp's and the core's time |
//!
//! ## Driving a node (the call-order contract)
//!
//! ```text
//! static RESOURCES: ConstStaticCell<NodeResources<'static>> = ConstStaticCell::new(NodeResources::new());
//! static NODE: StaticCell<EchoNode<'static, 4>> = StaticCell::new();
//!
//! let node = EchoNode::init(NODE.uninit(), config, RESOURCES.take(), NoLed, &mut device, now())?;
//! loop {
//!     let delay = node.poll(now(), &mut device);   // frames in, sessions, frames out
//!     sleep_until_frame_or(delay);                 // WFI; None = until a frame arrives
//! }
//! ```
//!
//! ([`EchoNode::new`] returns the node by value instead, for a board that
//! keeps it on `main`'s stack.) A complete, compiled example (with any
//! features) with a device that never receives anything:
//!
//! ```
//! use ricochet_embedded::smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
//! use ricochet_embedded::smoltcp::time::Instant;
//! use ricochet_embedded::smoltcp::wire::{EthernetAddress, Ipv4Address, Ipv4Cidr};
//! use ricochet_embedded::{EchoNode, Ipv4Config, NoLed, NodeConfig, NodeResources, StaticIpv4};
//!
//! /// A link that is down: nothing arrives, everything sent is lost.
//! struct Silent;
//! struct Rx;
//! struct Tx;
//! impl phy::RxToken for Rx {
//!     fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R { f(&[]) }
//! }
//! impl phy::TxToken for Tx {
//!     fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, len: usize, f: F) -> R {
//!         f(&mut [0; 1514][..len.min(1514)])
//!     }
//! }
//! impl Device for Silent {
//!     type RxToken<'a> = Rx;
//!     type TxToken<'a> = Tx;
//!     fn receive(&mut self, _: Instant) -> Option<(Rx, Tx)> { None }
//!     fn transmit(&mut self, _: Instant) -> Option<Tx> { Some(Tx) }
//!     fn capabilities(&self) -> DeviceCapabilities {
//!         let mut caps = DeviceCapabilities::default();
//!         caps.medium = Medium::Ethernet;
//!         caps.max_transmission_unit = 1514;
//!         caps
//!     }
//! }
//!
//! // On a board: a `static` (ConstStaticCell), so it lands in .bss.
//! let resources: &'static mut NodeResources<'static> = Box::leak(Box::default());
//! let mut device = Silent;
//! let mut config = NodeConfig::new(EthernetAddress([0x02, 0, 0, 0, 0, 1]));
//! // A fixed address (`NodeConfig::new` asks for DHCP, which needs the
//! // `dhcp` feature).
//! let address = Ipv4Cidr::new(Ipv4Address::new(192, 0, 2, 7), 24);
//! config.ipv4 = Ipv4Config::Static(StaticIpv4 { address, gateway: None });
//! let mut node: EchoNode<'_, 4> =
//!     EchoNode::new(config, resources, NoLed, &mut device, Instant::ZERO).unwrap();
//! assert_eq!(node.ipv4_address(), Some(address));
//! // Listening, nothing else to do: only an arriving frame brings work, so
//! // the board may sleep until one does.
//! assert_eq!(node.poll(Instant::ZERO, &mut device), None);
//! ```
//!
//! Resources with fewer smoltcp socket slots than the node needs do not
//! compile:
//!
//! ```compile_fail,E0080
//! # use ricochet_embedded::smoltcp::phy::{self, Device, DeviceCapabilities};
//! # use ricochet_embedded::smoltcp::time::Instant;
//! # use ricochet_embedded::{EchoNode, NodeConfig, NodeResources};
//! # struct Silent;
//! # struct Rx;
//! # struct Tx;
//! # impl phy::RxToken for Rx {
//! #     fn consume<R, F: FnOnce(&[u8]) -> R>(self, f: F) -> R { f(&[]) }
//! # }
//! # impl phy::TxToken for Tx {
//! #     fn consume<R, F: FnOnce(&mut [u8]) -> R>(self, _: usize, f: F) -> R { f(&mut []) }
//! # }
//! # impl Device for Silent {
//! #     type RxToken<'a> = Rx;
//! #     type TxToken<'a> = Tx;
//! #     fn receive(&mut self, _: Instant) -> Option<(Rx, Tx)> { None }
//! #     fn transmit(&mut self, _: Instant) -> Option<Tx> { None }
//! #     fn capabilities(&self) -> DeviceCapabilities { DeviceCapabilities::default() }
//! # }
//! // 4 TCP sockets need socket_slots(4) slots: 4, plus 1 each with the
//! // `udp` and `dhcp` features (6 with the defaults). 3 never suffice.
//! let resources: &'static mut NodeResources<'static, 4, 3> = Box::leak(Box::default());
//! let config = NodeConfig::new(Default::default());
//! let _ = EchoNode::<4>::new(config, resources, ricochet_embedded::NoLed, &mut Silent, Instant::ZERO);
//! ```
//!
//! Nor do buffer sizes given in the wrong order: each size is named by its
//! type.
//!
//! ```compile_fail,E0277
//! use ricochet_embedded::{NodeResources, SessionBuffer, TcpRxBuffer, TcpTxBuffer};
//! // The transmit buffer where the receive buffer belongs.
//! let _ = NodeResources::<'static, 4, 6, SessionBuffer<1024>, TcpTxBuffer<1536>, TcpRxBuffer<1024>>::new();
//! ```
//!
//! [`EchoNode::poll`] takes the time as a `smoltcp::time::Instant` (the
//! board's clock, in microseconds since boot) and returns how long the board
//! may sleep: the earliest of smoltcp's timers, every session's idle and
//! drain deadlines and lingers, the probes' deadlines and the DHCP
//! fallback. Time never
//! goes backwards between calls.
//!
//! Nothing on the network path panics: no `unwrap`, `expect` or indexing
//! that can fail (clippy denies them in this crate), counters saturate or
//! wrap, and every length comes from a checked slice.
//!
//! ## Features
//! - `ipv6` (default): an IPv6 link-local address derived from the MAC.
//! - `client` (default): the client role ([`Role::Client`]). A server-only
//!   firmware leaves it off and saves the probes' flash and RAM.
//! - `udp` (default): UDP echo ([`NodeConfig::udp`]); without it the node
//!   serves TCP only.
//! - `dhcp` (default): DHCPv4 with a static fallback ([`Ipv4Config::Dhcp`]);
//!   without it the node needs a static address.
//! - `defmt`: log through defmt and derive `defmt::Format` on public types.
//! - `log`: log through the `log` facade.
//!
//! Enabling both `defmt` and `log` is a compile error.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unreachable,
        clippy::todo
    )
)]

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!(
    "ricochet-embedded: the `defmt` and `log` features are mutually exclusive; enable one"
);

#[macro_use]
mod fmt;

mod addressing;
#[cfg(feature = "client")]
mod client;
pub mod clock;
mod config;
#[cfg(feature = "udp")]
mod datagram_echo;
mod led;
mod node;
mod resources;
mod setup;
mod stats;
mod stream_echo;

pub use addressing::AddressSource;
#[cfg(feature = "client")]
pub use client::{CONNECT_RETRY, PROBE_WINDOW};
pub use config::{
    DRAIN_TIMEOUT, ECHO_PORT, FRAMES_PORT, Ipv4Config, LINES_PORT, LINGER, MAX_EXTRA_PORTS,
    ModePort, NodeConfig, Role, StaticIpv4, TcpConfig,
};
#[cfg(feature = "udp")]
pub use datagram_echo::{UDP_SOURCES, UDP_STALL};
pub use led::NoLed;
pub use node::{EchoNode, MAX_FRAMES_PER_POLL};
pub use resources::{
    Buffer, NodeResources, SessionBuffer, SessionSize, TcpRxBuffer, TcpRxSize, TcpTxBuffer,
    TcpTxSize, UDP_PACKETS, UdpRxBuffer, UdpRxSize, UdpTxBuffer, UdpTxSize, socket_slots,
};
pub use setup::NewError;
pub use stats::{AddressStats, NodeStats};
#[cfg(feature = "client")]
pub use stats::{ClientStats, ProbeFailure, ProbeOutcome, RoundTrips};

/// The crates a board needs the same versions of.
pub use {ricochet_core, smoltcp};
