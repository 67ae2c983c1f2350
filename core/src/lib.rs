//! # ricochet-core
//!
//! The protocol brain of Ricochet, an RFC 862 echo service: `#![no_std]`, no
//! allocation, no I/O, no clock. Adapters (std sockets on a desktop, smoltcp
//! on a microcontroller) move bytes and pass time in; the core decides
//! everything else.
//!
//! | piece | what it decides |
//! |---|---|
//! | [`Session`] | one TCP connection: what to echo and when, backpressure, half-close, idle and drain timeouts |
//! | [`lines`], [`frames`] | where units end in `lines` and `frames` [`Mode`]s |
//! | [`DatagramPolicy`] | for each UDP datagram: echo it, or drop it with a named reason (oversize, loop guard, rate limit) |
//! | [`StreamProbe`], [`DatagramProbe`] | a verifying client: deterministic payloads, every returned byte checked, round-trip times |
//!
//! ## Driving a [`Session`] (the call-order contract)
//!
//! The session owns a fixed buffer of `N` bytes. The adapter reads *into*
//! the session and writes *from* it; nothing is copied through scratch
//! buffers and nothing is ever dropped.
//!
//! ```text
//! loop {
//!     // 1. input: only while the session offers space (that is the backpressure)
//!     let buf = session.receive_buffer();          // empty => stop reading the socket
//!     match socket.read(buf) {
//!         Ok(0)  => session.handle_peer_fin(now),
//!         Ok(n)  => session.commit_received(now, n)?,
//!         Err(WouldBlock) => {}
//!         Err(_) => session.handle_peer_reset(now),
//!     }
//!     // 2. output: whatever is pending, however much the socket takes
//!     let out = session.transmit_buffer();
//!     if !out.is_empty() { let n = socket.write(out)?; session.commit_sent(now, n)?; }
//!     // 3. events to log, then the state decides the socket's fate
//!     while let Some(ev) = session.poll_event() { log(ev) }
//!     match session.state() { State::Closed => close gracefully (FIN),
//!                             State::Aborted(_) => reset, _ => {} }
//!     // 4. sleep until readiness or session.poll_timeout(), then handle_timeout(now)
//! }
//! ```
//!
//! Time never goes backwards between calls; every input takes `now`.
//!
//! ## Features
//! - `defmt`: derive `defmt::Format` on every public type.
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
};
pub use mode::{Mode, ParseModeError};
pub use probe::{
    DatagramOutcome, DatagramProbe, DatagramProbeConfig, Pattern, ProbeConfig, ProbeError,
    SizeRange, StreamProbe,
};
pub use pump::{Failure, Next, Pump, ReadOutcome, Teardown, Transport, WriteOutcome};
pub use session::{AbortReason, CloseReason, Event, Session, SessionConfig, State};
pub use time::{Duration, Instant};
