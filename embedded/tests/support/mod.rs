//! Test support: an in-memory pair of smoltcp devices, a plain smoltcp host
//! driven by the core's probes, and a virtual-clock simulator.
#![allow(dead_code, unreachable_pub)]

pub mod frames;
pub mod host;
pub mod pair;
pub mod sim;
