//! The datagram policy on arbitrary traffic: no panic, counters add up, and
//! no loop-guarded port or oversize datagram is ever echoed.
#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ricochet_core::datagram::{DatagramPolicy, DropReason, PolicyConfig, RateLimit, Verdict, is_reflector_port};
use ricochet_core::{Duration, Instant};

#[derive(Arbitrary, Debug)]
struct Datagram {
    advance_us: u32,
    v6: bool,
    ip: u32,
    port: u16,
    len: u16,
}

#[derive(Arbitrary, Debug)]
struct Input {
    max_datagram: u16,
    per_second: u16,
    burst: u8,
    loop_guard: bool,
    exempt_loopback: bool,
    start: u64,
    datagrams: Vec<Datagram>,
}

fuzz_target!(|input: Input| {
    let config = PolicyConfig {
        max_datagram: input.max_datagram.into(),
        rate: (input.per_second > 0 || input.burst > 0)
            .then(|| RateLimit { per_second: input.per_second.into(), burst: input.burst.into() }),
        loop_guard: input.loop_guard,
        rate_exempt_loopback: input.exempt_loopback,
    };
    let mut policy = DatagramPolicy::<8>::new(config);
    let mut now = Instant::from_micros(input.start);
    let mut decisions = 0u64;
    let mut counters = ricochet_core::DatagramCounters::default();
    for d in input.datagrams {
        now += Duration::from_micros(d.advance_us.into());
        let ip = if d.v6 {
            IpAddr::V6(Ipv6Addr::from(u128::from(d.ip) << 64))
        } else {
            // Half the IPv4 sources are loopback (127.0.0.x), half are not.
            IpAddr::V4(Ipv4Addr::from(if d.ip & 0x8000_0000 != 0 { 0x7f00_0000 | (d.ip % 16) } else { d.ip % 16 }))
        };
        let verdict = policy.decide(now, SocketAddr::new(ip, d.port), d.len.into());
        decisions += 1;
        if verdict == Verdict::Echo {
            assert!(usize::from(d.len) <= usize::from(input.max_datagram), "oversize echoed");
            assert!(!(input.loop_guard && is_reflector_port(d.port)), "loop-guarded port echoed");
        }
        if verdict == Verdict::Drop(DropReason::RateLimited) {
            assert!(!(input.exempt_loopback && ip.is_loopback()), "an exempt loopback source was rate limited");
        }
        match verdict {
            Verdict::Echo => counters.echoed(d.len.into()),
            Verdict::Drop(reason) => counters.dropped(reason),
        }
        assert_eq!(counters.received, decisions);
        assert_eq!(counters.echoed + counters.dropped.total(), decisions);
        assert!(policy.source_stats().tracked_sources <= 8);
    }
});
