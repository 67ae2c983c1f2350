//! # ricochet-core
//!
//! The protocol brain of Ricochet, an RFC 862 echo service: `#![no_std]`, no
//! allocation, no I/O, no clock. Adapters (std sockets on a desktop, smoltcp
//! on a microcontroller) move bytes and pass time in; the core decides
//! everything else.
//!
//! | piece | what it decides |
//! |---|---|
//! | [`Pump`] | how a connection is driven: the one read/write/close loop every stream adapter runs over its [`Transport`] |
//! | [`Session`] | one stream connection: what to echo and when, backpressure, half-close, idle and drain timeouts |
//! | [`lines`], [`frames`] | where units end in `lines` and `frames` [`Mode`]s |
//! | [`DatagramPolicy`] | for each UDP datagram: echo it, or drop it with a named reason (oversize, loop guard, rate limit) |
//! | [`StreamCounters`], [`DatagramCounters`] | the one set of counters every adapter keeps and reports |
//! | [`StreamProbe`], [`DatagramProbe`] | a verifying client: deterministic payloads, every returned byte checked, round-trip times |
//!
//! ## Driving a connection
//!
//! An adapter implements [`Transport`] for its connection (read into a
//! slice, write from a slice, flush, shut down the write side) and lets the
//! [`Pump`] run the session over storage the adapter owns:
//!
//! ```text
//! let mut pump = Pump::new(vec![0u8; 4096].into_boxed_slice(), SessionConfig::default(), now);
//! loop {
//!     pump.set_readable();                         // or set_writable(), set_ready() for polled I/O
//!     match pump.drive(now, &mut socket, budget, &mut counters) {
//!         Next::Wait { .. } => wait for readiness or pump.poll_timeout(),
//!         Next::Yield => serve the other connections first,
//!         Next::Release(Teardown::Close) => { close the socket; break }   // FIN already sent
//!         Next::Release(Teardown::Reset) => { reset the socket; break }   // RST
//!         Next::Release(Teardown::Abandon) => { drop the socket; break }  // linger ran out
//!     }
//!     while let Some(event) = pump.poll_event() { log(event) }
//! }
//! ```
//!
//! Time never goes backwards between calls; every input takes `now`. See
//! the [`pump`] and [`session`] modules for the contracts.
//!
//! ## Features
//! - `defmt`: derive `defmt::Format` on every public data type (configs,
//!   counters, stats, states, events, reasons, errors, outcomes, `Instant`,
//!   `Duration`, and `DatagramPolicy`); the state machines `Session`,
//!   `Pump`, `StreamProbe` and `DatagramProbe` are not: format their
//!   `state()` or `stats()`.
//! - `log`: log state transitions through the `log` facade.
//!
//! Enabling both is a compile error: pick the one your target uses.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(all(feature = "defmt", feature = "log"))]
compile_error!("ricochet-core: the `defmt` and `log` features are mutually exclusive; enable one");

#[macro_use]
mod fmt;

pub mod counters;
pub mod datagram;
pub mod frames;
pub mod lines;
mod mode;
pub mod payload;
pub mod probe;
pub mod pump;
pub mod session;
pub mod time;

pub use counters::{AbortCounts, CloseCounts, DatagramCounters, DropCounts, StreamCounters};
pub use datagram::{
    DatagramPolicy, DropReason, PolicyConfig, RateLimit, SourceStats, Verdict, is_reflector_port,
    is_unicast_address,
};
pub use mode::{Mode, ParseModeError};
pub use probe::{
    ConfigError, DatagramOutcome, DatagramProbe, DatagramProbeConfig, DatagramProbeStats, Pattern,
    ProbeConfig, ProbeError, ProbeStats, Received, SizeRange, StreamProbe,
};
pub use pump::{Failure, Next, Pump, ReadOutcome, Teardown, Transport, WriteOutcome};
pub use session::{
    AbortReason, CloseReason, CommitError, Event, Session, SessionConfig, SessionStats, State,
};
pub use time::{Duration, Instant, Pace};
