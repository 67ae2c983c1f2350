//! Policy and source-table unit tests, in modules: [`policy`], [`sources`].

use super::table::{MICRO, NIL, full_at, is_full};
use super::*;
use crate::counters::DatagramCounters;
use crate::time::Duration;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use proptest::prelude::*;

mod policy;
mod sources;

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
