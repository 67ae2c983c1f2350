//! Policy and source-table unit tests.
use super::table::{MICRO, NIL, full_at, is_full};
use super::*;
use crate::counters::DatagramCounters;
use crate::time::Duration;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use proptest::prelude::*;

const T0: Instant = Instant::from_micros(1_000_000);

fn v4(last: u8, port: u16) -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, last)), port)
}

fn v6(last: u16, port: u16) -> SocketAddr {
    SocketAddr::new(
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last)),
        port,
    )
}

fn config(per_second: u32, burst: u32) -> PolicyConfig {
    PolicyConfig {
        max_datagram: 1472,
        rate: Some(RateLimit { per_second, burst }),
        loop_guard: true,
        rate_exempt_loopback: false,
    }
}

/// A policy whose verdicts are counted into the core's
/// [`DatagramCounters`], as an adapter counts them.
struct Counted<const S: usize> {
    policy: DatagramPolicy<S>,
    counters: DatagramCounters,
}

/// What the tests compare: the counters by reason plus the table's state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    echoed: u64,
    echoed_bytes: u64,
    oversize: u64,
    loop_guard: u64,
    rate_limited: u64,
    tracked_sources: usize,
    evictions: u64,
}

impl Tally {
    const ZERO: Tally = Tally {
        echoed: 0,
        echoed_bytes: 0,
        oversize: 0,
        loop_guard: 0,
        rate_limited: 0,
        tracked_sources: 0,
        evictions: 0,
    };
}

impl<const S: usize> Counted<S> {
    fn new(config: PolicyConfig) -> Self {
        Self::with_hash_seed(config, 0)
    }

    fn with_hash_seed(config: PolicyConfig, seed: u64) -> Self {
        Counted {
            policy: DatagramPolicy::with_hash_seed(config, seed),
            counters: DatagramCounters::default(),
        }
    }

    fn decide(&mut self, now: Instant, source: SocketAddr, len: usize) -> Verdict {
        let verdict = self.policy.decide(now, source, len);
        match verdict {
            Verdict::Echo => self.counters.echoed(len),
            Verdict::Drop(reason) => self.counters.dropped(reason),
        }
        verdict
    }

    fn config(&self) -> &PolicyConfig {
        self.policy.config()
    }

    fn stats(&self) -> Tally {
        let c = &self.counters;
        let t = self.policy.source_stats();
        Tally {
            echoed: c.echoed,
            echoed_bytes: c.echoed_bytes,
            oversize: c.dropped.oversize,
            loop_guard: c.dropped.loop_guard,
            rate_limited: c.dropped.rate_limited,
            tracked_sources: t.tracked_sources,
            evictions: t.evictions,
        }
    }
}

const LIMITED: Verdict = Verdict::Drop(DropReason::RateLimited);

/// Sends `n` datagrams of 10 bytes from `source` at `now`; returns how
/// many were echoed.
fn echoes<const S: usize>(p: &mut Counted<S>, now: Instant, source: SocketAddr, n: usize) -> usize {
    (0..n)
        .filter(|_| p.decide(now, source, 10).is_echo())
        .count()
}

impl<const N: usize> SourceTable<N> {
    /// Panics unless every structural invariant holds.
    fn check_invariants(&self, rate: RateLimit) {
        let len = self.len();
        assert!(len <= N);
        let cap = u64::from(rate.burst) * MICRO;
        let refill = u64::from(rate.per_second);
        // Recency list: a doubly linked permutation of 0..len.
        let mut seen = [false; N];
        let (mut i, mut newer, mut count) = (self.newest, NIL, 0);
        while i != NIL {
            assert!((i as usize) < len && !seen[i as usize], "recency list");
            seen[i as usize] = true;
            assert_eq!(self.slots[i as usize].newer, newer);
            newer = i;
            i = self.slots[i as usize].older;
            count += 1;
        }
        assert_eq!((count, self.oldest), (len, newer));
        // Chains: every slot reachable from its own bucket, once.
        let chained: usize = (0..N)
            .map(|b| {
                let mut n = 0;
                let mut j = self.heads[b];
                while j != NIL {
                    assert!(n < N, "chain {b} has a cycle");
                    assert_eq!(self.bucket_of(&self.slots[j as usize].ip), b);
                    j = self.slots[j as usize].chain;
                    n += 1;
                }
                n
            })
            .sum();
        assert_eq!(chained, len);
        for (i, slot) in self.slots[..len].iter().enumerate() {
            let b = self.bucket_of(&slot.ip);
            assert_eq!(self.find(&slot.ip, b), Some(i as u32), "unique, findable");
            assert_eq!(slot.ip, slot.ip.to_canonical());
            assert!(slot.tokens <= cap);
        }
        // Heap: positions consistent, keys exact, min-heap ordered.
        for pos in 0..len {
            let e = self.heap[pos];
            let slot = &self.slots[e.slot as usize];
            assert_eq!(slot.heap_pos as usize, pos);
            assert_eq!(e.full_at, full_at(slot.tokens, slot.last, cap, refill));
            if pos > 0 {
                assert!(self.heap[(pos - 1) / 2].full_at <= e.full_at);
            }
        }
    }
}

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
