//! The probe against deliberately faulty servers: every fault lands in the
//! right error bucket, with the connection number and stream offset, and
//! the command line exits 1.
//!
//! One test binary, its tests in modules by transport: [`stream`] (TCP and
//! Unix stream servers that corrupt, cut, stall or refuse) and [`udp`]
//! (datagram servers that drop, reorder, duplicate, truncate or stop).

#[path = "../probe_support/mod.rs"]
mod probe_support;

mod stream;
mod udp;

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use probe_support::{Fault, FaultyServer, FaultyUdp, UdpFault, json_of, probe_cli, texts};
use ricochet::core::probe::SizeRange;
use ricochet::probe::{self, ErrorKind, Pattern, ProbeSpec, Stop, Target};

fn tcp_spec(addr: std::net::SocketAddr, count: u64) -> ProbeSpec {
    let mut s = ProbeSpec::new(Target::Tcp(vec![addr].into()));
    s.stop = Stop::Count(count);
    s.timeout = Duration::from_millis(500);
    s
}

fn udp_spec(addr: std::net::SocketAddr, count: u64) -> ProbeSpec {
    let mut s = ProbeSpec::new(Target::Udp(vec![addr].into()));
    s.stop = Stop::Count(count);
    s.timeout = Duration::from_millis(300);
    s
}
