//! The datagram policy: rate limits and their refill, the loop guard,
//! oversize datagrams, the defaults, counters and messages.

use super::*;

#[test]
fn policy_debug_shows_its_config_sources_and_capacity() {
    let p = DatagramPolicy::<8>::new(config(10, 5));
    let debug = std::format!("{p:?}");
    assert!(debug.starts_with("DatagramPolicy { config: "), "{debug}");
    assert!(debug.contains("sources: "), "{debug}");
    assert!(debug.ends_with("capacity: 8, .. }"), "{debug}");
}

#[test]
fn fresh_source_within_burst_is_echoed() {
    let mut p = Counted::<8>::new(config(10, 5));
    assert_eq!(echoes(&mut p, T0, v4(1, 40000), 5), 5);
    assert_eq!(p.decide(T0, v4(1, 40000), 10), LIMITED);
    assert_eq!(
        p.stats(),
        Tally {
            echoed: 5,
            echoed_bytes: 50,
            rate_limited: 1,
            tracked_sources: 1,
            ..Tally::ZERO
        }
    );
}

#[test]
fn source_over_burst_is_rate_limited_then_refills_after_interval() {
    // 4 per second: one token every 250 ms.
    let mut p = Counted::<8>::new(config(4, 2));
    let s = v4(1, 40000);
    assert_eq!(echoes(&mut p, T0, s, 3), 2);
    let t = T0 + Duration::from_micros(249_999);
    assert_eq!(p.decide(t, s, 10), LIMITED, "one microsecond early");
    let t = T0 + Duration::from_millis(250);
    assert_eq!(p.decide(t, s, 10), Verdict::Echo);
    assert_eq!(p.decide(t, s, 10), LIMITED);
    // A long pause refills to the burst, never beyond.
    let t = t + Duration::from_secs(3600);
    assert_eq!(echoes(&mut p, t, s, 10), 2);
    assert_eq!(p.stats().echoed, 5);
    assert_eq!(p.stats().rate_limited, 1 + 1 + 1 + 8);
}

#[test]
fn fractional_refill_is_exact_without_drift() {
    // 3 per second: a token every 333_333.33 µs. Burst 2 so that polling
    // once a millisecond never finds the bucket full (no refill lost).
    let mut p = Counted::<8>::new(config(3, 2));
    let s = v4(1, 40000);
    assert_eq!(echoes(&mut p, T0, s, 3), 2);
    assert_eq!(
        p.decide(T0 + Duration::from_micros(333_333), s, 10),
        LIMITED
    );
    assert!(
        p.decide(T0 + Duration::from_micros(333_334), s, 10)
            .is_echo()
    );
    // Three seconds after the start: exactly 9 tokens earned, the 9th
    // at exactly 3 s.
    let mut echoed = 2 + 1;
    for ms in 334..3000 {
        echoed += echoes(&mut p, T0 + Duration::from_millis(ms), s, 1);
    }
    assert_eq!(echoed, 2 + 8);
    assert!(p.decide(T0 + Duration::from_secs(3), s, 10).is_echo());
}

#[test]
fn source_port_7_is_dropped_by_loop_guard_without_consuming_tokens() {
    let mut p = Counted::<8>::new(config(0, 1));
    assert_eq!(
        p.decide(T0, v4(1, 7), 10),
        Verdict::Drop(DropReason::LoopGuard { port: 7 })
    );
    assert_eq!(p.stats().tracked_sources, 0, "no table entry either");
    // The single token is still there for the same address.
    assert_eq!(p.decide(T0, v4(1, 40000), 10), Verdict::Echo);
    assert_eq!(p.stats().loop_guard, 1);
    assert_eq!(p.stats().echoed, 1);
}

#[test]
fn loop_guard_enabled_drops_every_reflector_port_and_nothing_else() {
    let mut p = Counted::<8>::new(PolicyConfig {
        rate: None,
        ..PolicyConfig::DEFAULT
    });
    for &port in REFLECTOR_PORTS {
        assert_eq!(
            p.decide(T0, v4(1, port), 10),
            Verdict::Drop(DropReason::LoopGuard { port })
        );
    }
    for port in [1, 8, 9, 1024, 7777, 40000, 65535] {
        assert_eq!(p.decide(T0, v4(1, port), 10), Verdict::Echo);
    }
    assert_eq!(p.stats().loop_guard, REFLECTOR_PORTS.len() as u64);
}

#[test]
fn loopback_source_is_exempt_from_rate_limit_by_default() {
    let config = PolicyConfig {
        rate: Some(RateLimit {
            per_second: 1,
            burst: 1,
        }),
        ..PolicyConfig::DEFAULT
    };
    let mut p = Counted::<4>::new(config);
    let local = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 40000);
    for _ in 0..10 {
        assert_eq!(p.decide(Instant::ZERO, local, 10), Verdict::Echo);
    }
    let seven = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 7);
    assert!(
        !p.decide(Instant::ZERO, seven, 10).is_echo(),
        "the loop guard still applies"
    );
    let remote = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)), 40000);
    assert!(p.decide(Instant::ZERO, remote, 10).is_echo());
    assert_eq!(
        p.decide(Instant::ZERO, remote, 10),
        Verdict::Drop(DropReason::RateLimited)
    );
}

#[test]
fn loop_guard_disabled_echoes_port_7() {
    let mut p = Counted::<8>::new(PolicyConfig {
        loop_guard: false,
        rate_exempt_loopback: false,
        ..PolicyConfig::DEFAULT
    });
    assert_eq!(p.decide(T0, v4(1, 7), 10), Verdict::Echo);
    assert_eq!(p.decide(T0, v4(1, 0), 10), Verdict::Echo);
    assert_eq!(p.stats().loop_guard, 0);
}

#[test]
fn reflector_port_list_is_sorted_and_matches_is_reflector_port() {
    assert!(REFLECTOR_PORTS.windows(2).all(|w| w[0] < w[1]));
    for port in [0, 7, 11, 13, 17, 19, 37] {
        assert!(REFLECTOR_PORTS.contains(&port), "{port} required");
    }
    for port in 0..=u16::MAX {
        assert_eq!(is_reflector_port(port), REFLECTOR_PORTS.contains(&port));
    }
}

#[test]
fn oversize_datagram_is_dropped_and_counted_never_truncated() {
    let mut p = Counted::<8>::new(config(0, 1));
    let s = v4(1, 40000);
    // What an adapter with a 1473-byte buffer reports for a 9000-byte
    // datagram (MSG_TRUNC) and for one that just fills the buffer.
    for len in [9000, 1473] {
        assert_eq!(
            p.decide(T0, s, len),
            Verdict::Drop(DropReason::Oversize { len, limit: 1472 })
        );
    }
    assert_eq!(p.stats().tracked_sources, 0, "no token taken");
    assert_eq!(p.decide(T0, s, 1472), Verdict::Echo, "exactly the limit");
    assert_eq!(
        p.stats(),
        Tally {
            echoed: 1,
            echoed_bytes: 1472,
            oversize: 2,
            tracked_sources: 1,
            ..Tally::ZERO
        }
    );
}

#[test]
fn reflector_port_with_oversize_datagram_is_reported_as_loop_guard() {
    let mut p = Counted::<8>::new(PolicyConfig::DEFAULT);
    assert_eq!(
        p.decide(T0, v4(1, 19), 9000),
        Verdict::Drop(DropReason::LoopGuard { port: 19 })
    );
    assert_eq!((p.stats().loop_guard, p.stats().oversize), (1, 0));
}

#[test]
fn zero_max_datagram_echoes_only_empty_datagrams() {
    let mut p = Counted::<8>::new(PolicyConfig {
        max_datagram: 0,
        ..PolicyConfig::DEFAULT
    });
    assert_eq!(p.decide(T0, v4(1, 40000), 0), Verdict::Echo);
    assert_eq!(
        p.decide(T0, v4(1, 40000), 1),
        Verdict::Drop(DropReason::Oversize { len: 1, limit: 0 })
    );
}

#[test]
fn rate_limit_disabled_echoes_everything_and_tracks_no_source() {
    let mut p = Counted::<4>::new(PolicyConfig {
        rate: None,
        ..PolicyConfig::DEFAULT
    });
    for i in 0..100u8 {
        assert!(p.decide(T0, v4(i, 40000), 100).is_echo());
    }
    assert_eq!(p.stats().tracked_sources, 0);
    assert_eq!(p.stats().echoed_bytes, 10_000);
}

#[test]
fn zero_burst_rate_limits_every_datagram() {
    let mut p = Counted::<4>::new(config(1000, 0));
    for s in [1, 1000, 1_000_000] {
        assert_eq!(
            p.decide(T0 + Duration::from_secs(s), v4(1, 40000), 10),
            LIMITED
        );
    }
    assert_eq!(p.stats().tracked_sources, 0);
}

#[test]
fn zero_per_second_allows_burst_then_nothing() {
    let mut p = Counted::<4>::new(config(0, 3));
    assert_eq!(echoes(&mut p, T0, v4(1, 40000), 5), 3);
    let later = Instant::from_micros(u64::MAX);
    assert_eq!(echoes(&mut p, later, v4(1, 40000), 5), 0);
}

#[test]
fn time_going_backwards_mints_no_tokens() {
    let mut p = Counted::<4>::new(config(1, 1));
    let s = v4(1, 40000);
    let t = T0 + Duration::from_secs(10);
    assert!(p.decide(t, s, 10).is_echo());
    // Back to T0, then forward to just before t + 1 s: still nothing.
    assert_eq!(p.decide(T0, s, 10), LIMITED);
    assert_eq!(p.decide(Instant::ZERO, s, 10), LIMITED);
    assert_eq!(p.decide(t + Duration::from_micros(999_999), s, 10), LIMITED);
    assert!(p.decide(t + Duration::from_secs(1), s, 10).is_echo());
}

#[test]
fn stats_count_every_decision_exactly() {
    let mut p = Counted::<1>::new(config(0, 1));
    let _ = p.decide(T0, v4(1, 40000), 100); // echo
    let _ = p.decide(T0, v4(1, 40000), 100); // rate limited
    let _ = p.decide(T0, v4(1, 19), 100); // loop guard
    let _ = p.decide(T0, v4(1, 40000), 2000); // oversize
    let _ = p.decide(T0, v6(1, 40000), 0); // echo, evicts 192.0.2.1
    assert_eq!(
        p.stats(),
        Tally {
            echoed: 2,
            echoed_bytes: 100,
            oversize: 1,
            loop_guard: 1,
            rate_limited: 1,
            tracked_sources: 1,
            evictions: 1,
        }
    );
    assert_eq!(p.counters.received, 5);
    assert_eq!(p.counters.dropped.total(), 3);
}

#[test]
fn default_config_is_1472_bytes_1000_per_second_burst_100_loop_guard_on() {
    let c = PolicyConfig::default();
    assert_eq!(c.max_datagram, 1472);
    assert_eq!(
        c.rate,
        Some(RateLimit {
            per_second: 1000,
            burst: 100
        })
    );
    assert!(c.loop_guard);
    let p = Counted::<4>::new(c);
    assert_eq!(*p.config(), c);
    assert_eq!(p.stats(), Tally::ZERO);
}

#[test]
fn drop_reason_display_is_human_readable() {
    assert_eq!(
        DropReason::Oversize {
            len: 9000,
            limit: 1472
        }
        .to_string(),
        "oversize datagram: 9000 bytes > limit 1472"
    );
    // limit + 1 is all a max + 1 receive buffer can tell: "longer than".
    assert_eq!(
        DropReason::Oversize {
            len: 1473,
            limit: 1472
        }
        .to_string(),
        "oversize datagram: more than the 1472-byte limit"
    );
    assert_eq!(
        DropReason::LoopGuard { port: 19 }.to_string(),
        "loop guard: source port 19 belongs to a reflecting service"
    );
    assert_eq!(
        DropReason::RateLimited.to_string(),
        "rate limited: source address exceeded its datagram budget"
    );
}

#[test]
fn unicast_address_class_test() {
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    for ip in [
        v4(192, 0, 2, 7),
        v4(127, 0, 0, 1),
        v4(10, 255, 255, 255), // a subnet-directed broadcast looks unicast here
        v4(223, 255, 255, 255),
        v4(240, 0, 0, 1),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped()),
    ] {
        assert!(is_unicast_address(ip), "{ip} is unicast");
    }
    for ip in [
        v4(255, 255, 255, 255),
        v4(224, 0, 0, 1),
        v4(239, 255, 255, 250),
        v4(0, 0, 0, 0),
        IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0xff05, 0, 0, 0, 0, 0, 1, 3)),
        IpAddr::V6(Ipv4Addr::BROADCAST.to_ipv6_mapped()),
        IpAddr::V6(Ipv4Addr::new(224, 0, 0, 251).to_ipv6_mapped()),
        IpAddr::V6(Ipv4Addr::UNSPECIFIED.to_ipv6_mapped()),
    ] {
        assert!(!is_unicast_address(ip), "{ip} is not unicast");
    }
}
