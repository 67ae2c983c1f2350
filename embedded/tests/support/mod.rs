//! Test support: an in-memory pair of smoltcp devices, a plain smoltcp host
//! driven by the core's probes, and a virtual-clock simulator (also over a
//! lossy, corrupting wire).
#![allow(dead_code, unreachable_pub)]

pub mod faulty;
pub mod frames;
pub mod host;
pub mod pair;
pub mod sim;
