//! The source table: per-address buckets (IPv4, IPv6, mapped), eviction
//! order, the end of time, hashing, and a property test of its invariants.

use super::*;

#[test]
fn rate_limit_is_per_ip_not_per_port() {
    let mut p = Counted::<8>::new(config(0, 3));
    for port in 40000..40010 {
        let _ = p.decide(T0, v4(1, port), 10);
    }
    assert_eq!(p.stats().echoed, 3);
    assert_eq!(p.stats().rate_limited, 7);
    assert_eq!(p.stats().tracked_sources, 1);
    // Another address has its own bucket.
    assert_eq!(echoes(&mut p, T0, v4(2, 40000), 5), 3);
}

#[test]
fn ipv6_sources_are_tracked_separately() {
    let mut p = Counted::<8>::new(config(0, 2));
    assert_eq!(echoes(&mut p, T0, v6(1, 40000), 3), 2);
    assert_eq!(echoes(&mut p, T0, v6(2, 40000), 3), 2);
    // 2001:db8::1 and 192.0.2.1 are different sources.
    assert_eq!(echoes(&mut p, T0, v4(1, 40000), 3), 2);
    assert_eq!(p.stats().tracked_sources, 3);
}

#[test]
fn ipv4_mapped_ipv6_source_shares_the_ipv4_bucket() {
    let mut p = Counted::<8>::new(config(0, 2));
    let mapped = SocketAddr::new(
        IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()),
        40001,
    );
    assert!(p.decide(T0, v4(1, 40000), 10).is_echo());
    assert!(p.decide(T0, mapped, 10).is_echo());
    assert_eq!(p.decide(T0, v4(1, 40000), 10), LIMITED);
    assert_eq!(p.stats().tracked_sources, 1);
}

#[test]
fn full_table_evicts_idle_source_first() {
    // 1 per second, burst 2: a bucket missing one token is full again
    // one second later.
    let mut p = Counted::<2>::new(config(1, 2));
    let (heavy, light, new) = (v4(1, 40000), v4(2, 40000), v4(3, 40000));
    assert_eq!(echoes(&mut p, T0, heavy, 3), 2); // drained, least recent
    assert_eq!(echoes(&mut p, T0 + Duration::from_millis(1), light, 1), 1);
    // 1.001 s: `light` is full again, `heavy` has one token of two.
    let t = T0 + Duration::from_millis(1001);
    assert!(p.decide(t, new, 10).is_echo());
    assert_eq!(p.stats().evictions, 1);
    // `heavy` kept its state: one token, then limited.
    assert_eq!(echoes(&mut p, t, heavy, 3), 1);
    assert_eq!(p.stats().evictions, 1, "heavy was still tracked");
    p.policy.table.check_invariants(RateLimit {
        per_second: 1,
        burst: 2,
    });
}

#[test]
fn full_table_without_idle_source_evicts_least_recently_seen() {
    let mut p = Counted::<2>::new(config(1, 5));
    let (a, b, c) = (v4(1, 40000), v4(2, 40000), v4(3, 40000));
    assert_eq!(echoes(&mut p, T0, a, 1), 1);
    assert_eq!(echoes(&mut p, T0, b, 5), 5);
    // `a` is seen again (rate limited datagrams count as seen too).
    assert_eq!(echoes(&mut p, T0, a, 5), 4);
    assert_eq!(p.decide(T0, a, 10), LIMITED);
    // Nobody is full: `b` is the least recently seen and goes.
    assert!(p.decide(T0, c, 10).is_echo());
    assert_eq!(p.stats().evictions, 1);
    assert_eq!(echoes(&mut p, T0, a, 1), 0, "a kept its empty bucket");
    // `b` comes back with a fresh bucket (and evicts `c`, now the oldest).
    assert_eq!(echoes(&mut p, T0, b, 9), 5);
    assert_eq!(p.stats().evictions, 2);
    assert_eq!(p.stats().tracked_sources, 2);
    p.policy.table.check_invariants(RateLimit {
        per_second: 1,
        burst: 5,
    });
}

#[test]
fn zero_sources_table_with_rate_limit_fails_closed() {
    let mut p = Counted::<0>::new(config(1000, 100));
    assert_eq!(p.decide(T0, v4(1, 40000), 10), LIMITED);
    let mut open = Counted::<0>::new(PolicyConfig {
        rate: None,
        ..PolicyConfig::DEFAULT
    });
    assert_eq!(open.decide(T0, v4(1, 40000), 10), Verdict::Echo);
}

#[test]
fn time_near_u64_extremes_neither_overflows_nor_panics() {
    let rate = RateLimit {
        per_second: u32::MAX,
        burst: u32::MAX,
    };
    let mut p = Counted::<2>::new(PolicyConfig {
        rate: Some(rate),
        ..PolicyConfig::DEFAULT
    });
    for now in [0, 1, u64::MAX - 1, u64::MAX, 0, u64::MAX] {
        for last in 1..=3 {
            assert!(
                p.decide(Instant::from_micros(now), v4(last, 40000), 10)
                    .is_echo()
            );
        }
    }
    p.policy.table.check_invariants(rate);
    let mut slow = Counted::<2>::new(config(1, 1));
    let end = Instant::MAX;
    assert!(slow.decide(end, v4(1, 40000), 0).is_echo());
    assert!(slow.decide(end, v4(2, 40000), 1).is_echo());
    assert_eq!(slow.decide(end, v4(2, 40000), 1), LIMITED);
    assert!(slow.decide(end, v4(3, 40000), 1).is_echo());
    slow.policy.table.check_invariants(RateLimit {
        per_second: 1,
        burst: 1,
    });
}

#[test]
fn full_table_at_the_end_of_time_with_no_full_bucket_evicts_the_least_recently_seen() {
    // No refill: every full-again instant is `NEVER`, which `now` equals,
    // so the eviction looks at the buckets themselves.
    let mut p = Counted::<2>::new(config(0, 2));
    let at = |us: u64| Instant::from_micros(u64::MAX - us);
    let (a, b, c) = (v4(1, 40000), v4(2, 40000), v4(3, 40000));
    assert!(p.decide(at(10), a, 10).is_echo()); // slot 0, one token left
    assert!(p.decide(at(5), b, 10).is_echo()); // slot 1, one token left
    assert!(p.decide(at(1), a, 10).is_echo()); // a: none left, seen last
    assert!(p.decide(Instant::MAX, c, 10).is_echo()); // evicts b, not slot 0
    assert_eq!(p.stats().evictions, 1);
    assert_eq!(p.decide(Instant::MAX, a, 10), LIMITED, "a was kept, empty");
}

#[test]
fn full_table_at_the_end_of_time_evicts_the_bucket_full_exactly_then() {
    // a's bucket is full again at exactly `u64::MAX`, the key that also
    // means "never" (b's, saturated): only a look at the buckets tells.
    let mut p = Counted::<2>::new(config(1, 2));
    let at = |us: u64| Instant::from_micros(u64::MAX - us);
    let (a, b, c) = (v4(1, 40000), v4(2, 40000), v4(3, 40000));
    assert!(p.decide(at(1_000_005), b, 10).is_echo());
    assert!(p.decide(at(1_000_005), b, 10).is_echo()); // b: empty, oldest
    assert!(p.decide(at(1_000_000), a, 10).is_echo()); // a: full at MAX
    assert!(p.decide(Instant::MAX, c, 10).is_echo());
    assert_eq!(p.stats().evictions, 1);
    let t = &p.policy.table;
    let tracked = |s: SocketAddr| t.find(&s.ip(), t.bucket_of(&s.ip())).is_some();
    assert_eq!((tracked(a), tracked(b), tracked(c)), (false, true, true));
}

#[test]
fn hash_seed_changes_no_decision() {
    let mut a = Counted::<4>::new(config(100, 3));
    let mut b = Counted::<4>::with_hash_seed(config(100, 3), 0x5eed_1234_abcd_0042);
    for step in 0..2000u64 {
        let now = T0 + Duration::from_micros(step * 997);
        let s = v4((step * 7 % 11) as u8, 40000);
        assert_eq!(a.decide(now, s, 10), b.decide(now, s, 10));
    }
    assert_eq!(a.stats(), b.stats());
}

#[test]
fn sources_differing_in_either_address_half_spread_over_the_hash_chains() {
    // A lookup walks one chain: sources that hash to a few chains would
    // turn every datagram of a flood into a scan of the whole table.
    const N: usize = 4096;
    let table = Box::new(SourceTable::<N>::new(0x5eed));
    let chains_used = |ips: &mut dyn Iterator<Item = IpAddr>| {
        let mut used = vec![false; N];
        for ip in ips {
            used[table.bucket_of(&ip)] = true;
        }
        used.into_iter().filter(|&u| u).count()
    };
    let n = N as u32;
    let v4 = chains_used(&mut (0..n).map(|i| IpAddr::V4(Ipv4Addr::from_bits(0x0a00_0000 + i))));
    let low = chains_used(
        &mut (0..n)
            .map(|i| IpAddr::V6(Ipv6Addr::from_bits(0x2001_0db8_u128 << 96 | u128::from(i)))),
    );
    let high = chains_used(&mut (0..n).map(|i| {
        IpAddr::V6(Ipv6Addr::from_bits(
            0x2001_0db8_u128 << 96 | u128::from(i) << 64 | 1,
        ))
    }));
    // N keys over N chains: a random function uses 1 - 1/e of them (2589).
    for (what, used) in [
        ("IPv4", v4),
        ("IPv6 low half", low),
        ("IPv6 high half", high),
    ] {
        assert!(used > N / 2, "{what}: {used} of {N} chains used");
    }
}

/// Addresses from a small pool (so buckets drain and entries repeat)
/// and, sometimes, random ones (so the table churns).
fn any_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        4 => (1u8..=6).prop_map(|i| IpAddr::V4(Ipv4Addr::new(192, 0, 2, i))),
        1 => (1u16..=3).prop_map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, i))),
        1 => (1u8..=3).prop_map(|i| IpAddr::V6(Ipv4Addr::new(192, 0, 2, i).to_ipv6_mapped())),
        1 => any::<u32>().prop_map(|b| IpAddr::V4(Ipv4Addr::from_bits(b))),
        1 => any::<u128>().prop_map(|b| IpAddr::V6(Ipv6Addr::from_bits(b))),
    ]
}

/// Time steps in µs; negative steps go backwards.
fn any_step() -> impl Strategy<Value = i64> {
    prop_oneof![
        4 => 0i64..2_000,
        3 => 0i64..3_000_000,
        1 => -2_000_000i64..0,
        1 => Just(i64::MAX),
    ]
}

fn check_table<const N: usize>(rate: RateLimit, start: u64, events: &[(i64, IpAddr, u16, bool)]) {
    let mut p = Counted::<N>::new(PolicyConfig {
        max_datagram: 100,
        rate: Some(rate),
        loop_guard: true,
        rate_exempt_loopback: false,
    });
    let cap = u64::from(rate.burst) * MICRO;
    let refill = u64::from(rate.per_second);
    let mut now = start;
    for &(step, ip, port, big) in events {
        now = if step >= 0 {
            now.saturating_add(step.unsigned_abs())
        } else {
            now.saturating_sub(step.unsigned_abs())
        };
        let t = &p.policy.table;
        let before: Vec<(IpAddr, bool)> = t.slots[..t.len()]
            .iter()
            .map(|s| (s.ip, is_full(s, now, cap, refill)))
            .collect();
        let oldest = (t.oldest != NIL).then(|| t.slots[t.oldest as usize].ip);
        let evictions = p.stats().evictions;

        let len = if big { 101 } else { 10 };
        let _ = p.decide(Instant::from_micros(now), SocketAddr::new(ip, port), len);
        p.policy.table.check_invariants(rate);

        let t = &p.policy.table;
        let after: Vec<IpAddr> = t.slots[..t.len()].iter().map(|s| s.ip).collect();
        let gone: Vec<_> = before
            .iter()
            .filter(|(ip, _)| !after.contains(ip))
            .collect();
        if p.stats().evictions == evictions {
            assert!(gone.is_empty());
            continue;
        }
        assert_eq!(gone.len(), 1, "one eviction, one entry gone");
        if before.iter().any(|&(_, full)| full) {
            assert!(gone[0].1, "a full bucket is evicted first");
        } else {
            assert_eq!(Some(gone[0].0), oldest, "else the least recently seen");
        }
    }
}

proptest! {
    #[test]
    fn table_invariants_and_eviction_order_hold_for_any_event_sequence(
        per_second in prop_oneof![Just(0u32), 1u32..20, 1u32..5_000],
        burst in 1u32..6,
        start in prop_oneof![Just(0u64), any::<u64>(), (u64::MAX - 5_000_000)..=u64::MAX],
        events in proptest::collection::vec(
            (any_step(), any_ip(), prop_oneof![Just(7u16), 40000u16..40004], proptest::bool::weighted(0.1)),
            1..150,
        ),
    ) {
        let rate = RateLimit { per_second, burst };
        check_table::<1>(rate, start, &events);
        check_table::<3>(rate, start, &events);
        check_table::<8>(rate, start, &events);
    }
}
