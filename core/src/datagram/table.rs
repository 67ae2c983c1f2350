//! The per-source token-bucket table of the [`DatagramPolicy`](super::DatagramPolicy).

use core::net::{IpAddr, Ipv4Addr};

use super::RateLimit;

// ---------------------------------------------------------------------------
//
// Why not `heapless::FnvIndexMap<IpAddr, Bucket, SOURCES>`: its index array
// has exactly `SOURCES` slots, so a full table runs its Robin Hood linear
// probing at load factor 1.0, where probe sequences and the backward shifts
// of `swap_remove` grow with the table; a full table under a flood of forged
// sources is precisely the state that must stay fast. It also needs a
// power-of-two capacity, and it offers no way to find the eviction victim
// (a full bucket, else the least recently seen) without a scan. A plain
// array with a linear scan is O(SOURCES) per datagram: fine for 8 sources
// on a microcontroller, not for 4096 at a million datagrams per second.
//
// So: `SOURCES` slots that never move (a slot index is a stable handle),
// threaded through three intrusive structures, all plain `u32` indices:
// - hash chains: `heads[bucket]` -> `Slot::chain` -> ...; `SOURCES` buckets
//   for at most `SOURCES` entries, so the load factor is <= 1 and a lookup
//   walks 1.5 entries on average. The hash is a keyed folded multiply (the
//   foldhash construction) so forged addresses cannot target one chain when
//   the seed is secret;
// - a recency list (`newest` .. `oldest`, `Slot::newer`/`older`): O(1) touch;
// - a binary min-heap of "bucket full again at" instants (`heap`,
//   `Slot::heap_pos`): the root is full iff any entry is; O(log SOURCES)
//   update per token taken.
// Slots are only ever recycled in place (evict + insert), so there is no
// free list. Indexing relies on these invariants, which the unit tests check
// after every step of random event sequences.
// ---------------------------------------------------------------------------

/// A micro-token: buckets count millionths of a datagram, so refill is
/// exactly `per_second` micro-tokens per microsecond.
pub(super) const MICRO: u64 = 1_000_000;
/// "No slot" in the intrusive links.
pub(super) const NIL: u32 = u32::MAX;
/// A full-again instant that no `now` reaches (or that saturated).
pub(super) const NEVER: u64 = u64::MAX;

#[derive(Clone, Copy)]
pub(super) struct Slot {
    /// The source, canonical (IPv4-mapped IPv6 folded to IPv4).
    pub(super) ip: IpAddr,
    /// Micro-tokens in the bucket as of `last`; at most `burst * MICRO`.
    pub(super) tokens: u64,
    /// The latest instant (µs) the source was seen; never decreases, so a
    /// `now` that goes backwards refills nothing.
    pub(super) last: u64,
    /// Neighbour seen more recently, or `NIL`.
    pub(super) newer: u32,
    /// Neighbour seen less recently, or `NIL`.
    pub(super) older: u32,
    /// Next slot in the same hash chain, or `NIL`.
    pub(super) chain: u32,
    /// Position of this slot in `SourceTable::heap`.
    pub(super) heap_pos: u32,
}

impl Slot {
    const EMPTY: Slot = Slot {
        ip: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        tokens: 0,
        last: 0,
        newer: NIL,
        older: NIL,
        chain: NIL,
        heap_pos: 0,
    };
}

#[derive(Clone, Copy)]
pub(super) struct HeapEntry {
    /// The first instant (µs) at which the slot's bucket is full again, or
    /// `NEVER`.
    pub(super) full_at: u64,
    pub(super) slot: u32,
}

pub(super) struct SourceTable<const N: usize> {
    pub(super) slots: [Slot; N],
    /// Hash bucket -> first slot of its chain, or `NIL`.
    pub(super) heads: [u32; N],
    /// Min-heap on `full_at` over the `len` slots in use.
    pub(super) heap: [HeapEntry; N],
    /// Slots `0..len` are in use.
    pub(super) len: u32,
    pub(super) newest: u32,
    pub(super) oldest: u32,
    pub(super) keys: [u64; 3],
}

impl<const N: usize> SourceTable<N> {
    pub(super) const fn new(seed: u64) -> Self {
        const {
            assert!(
                N < NIL as usize,
                "DatagramPolicy: SOURCES must be below u32::MAX"
            )
        };
        Self {
            slots: [Slot::EMPTY; N],
            heads: [NIL; N],
            heap: [HeapEntry {
                full_at: NEVER,
                slot: NIL,
            }; N],
            len: 0,
            newest: NIL,
            oldest: NIL,
            // Digits of pi, as in foldhash/ahash; the seed perturbs them.
            keys: [
                0x243f_6a88_85a3_08d3 ^ seed,
                0x1319_8a2e_0370_7344 ^ seed.rotate_left(23),
                0xa409_3822_299f_31d0 ^ seed.rotate_left(47),
            ],
        }
    }

    pub(super) fn len(&self) -> usize {
        self.len as usize
    }

    /// Takes one token from `ip`'s bucket (creating the entry, and evicting
    /// another if the table is full). Returns whether there was a token.
    pub(super) fn take_token(
        &mut self,
        now: u64,
        ip: IpAddr,
        rate: RateLimit,
        evictions: &mut u64,
    ) -> bool {
        if N == 0 || rate.burst == 0 {
            return false;
        }
        let cap = u64::from(rate.burst) * MICRO;
        let refill = u64::from(rate.per_second);
        let bucket = self.bucket_of(&ip);

        if let Some(i) = self.find(&ip, bucket) {
            let slot = &mut self.slots[i as usize];
            let elapsed = now.saturating_sub(slot.last);
            slot.tokens = slot
                .tokens
                .saturating_add(elapsed.saturating_mul(refill))
                .min(cap);
            slot.last = slot.last.max(now);
            let ok = slot.tokens >= MICRO;
            if ok {
                slot.tokens -= MICRO;
            }
            let key = full_at(slot.tokens, slot.last, cap, refill);
            self.heap_update(i, key);
            self.touch(i);
            return ok;
        }

        // A new source: a fresh (full) bucket, minus this datagram's token.
        let i = if self.len() < N {
            let i = self.len;
            self.len += 1;
            self.heap[i as usize] = HeapEntry {
                full_at: NEVER,
                slot: i,
            };
            self.slots[i as usize].heap_pos = i;
            i
        } else {
            let victim = self.victim(now, cap, refill);
            *evictions = evictions.saturating_add(1);
            self.chain_unlink(victim);
            self.recency_unlink(victim);
            victim
        };
        let head = self.heads[bucket];
        let slot = &mut self.slots[i as usize];
        slot.ip = ip;
        slot.tokens = cap - MICRO;
        slot.last = now;
        slot.chain = head;
        self.heads[bucket] = i;
        self.recency_push(i);
        self.heap_update(i, full_at(cap - MICRO, now, cap, refill));
        true
    }

    /// The entry to evict from a full table: one whose bucket is full at
    /// `now`, else the least recently seen.
    pub(super) fn victim(&self, now: u64, cap: u64, refill: u64) -> u32 {
        let root = self.heap[0];
        if root.full_at <= now && root.full_at != NEVER {
            return root.slot;
        }
        if now == NEVER {
            // At the very end of time, `NEVER` keys are ambiguous (saturated
            // or exactly full now): decide exactly. Unreachable otherwise.
            if let Some(i) = self.slots[..self.len()]
                .iter()
                .position(|s| is_full(s, now, cap, refill))
            {
                return i as u32;
            }
        }
        self.oldest
    }

    // --- hash chains ------------------------------------------------------

    pub(super) fn bucket_of(&self, ip: &IpAddr) -> usize {
        let (a, b) = match ip {
            IpAddr::V4(v4) => (u64::from(v4.to_bits()), 4),
            IpAddr::V6(v6) => {
                let bits = v6.to_bits();
                (bits as u64, (bits >> 64) as u64)
            }
        };
        let h = folded_multiply(a ^ self.keys[0], b ^ self.keys[1]);
        let h = folded_multiply(h, self.keys[2]);
        // Lemire's multiply-shift range reduction: any N, no division.
        ((u128::from(h) * N as u128) >> 64) as usize
    }

    pub(super) fn find(&self, ip: &IpAddr, bucket: usize) -> Option<u32> {
        let mut i = self.heads[bucket];
        // A chain holds at most the table: a change that makes a cycle
        // fails the tests instead of hanging them.
        #[cfg(test)]
        let mut walked = 0;
        while i != NIL {
            #[cfg(test)]
            {
                walked += 1;
                assert!(walked <= N, "hash chain {bucket} has a cycle");
            }
            let slot = &self.slots[i as usize];
            if slot.ip == *ip {
                return Some(i);
            }
            i = slot.chain;
        }
        None
    }

    pub(super) fn chain_unlink(&mut self, i: u32) {
        let bucket = self.bucket_of(&self.slots[i as usize].ip);
        let next = self.slots[i as usize].chain;
        if self.heads[bucket] == i {
            self.heads[bucket] = next;
            return;
        }
        let mut j = self.heads[bucket];
        #[cfg(test)]
        let mut walked = 0;
        while j != NIL {
            #[cfg(test)]
            {
                walked += 1;
                assert!(walked <= N, "hash chain {bucket} has a cycle");
            }
            let after = self.slots[j as usize].chain;
            if after == i {
                self.slots[j as usize].chain = next;
                return;
            }
            j = after;
        }
    }

    // --- recency list -----------------------------------------------------

    pub(super) fn recency_unlink(&mut self, i: u32) {
        let Slot { newer, older, .. } = self.slots[i as usize];
        match newer {
            NIL => self.newest = older,
            n => self.slots[n as usize].older = older,
        }
        match older {
            NIL => self.oldest = newer,
            o => self.slots[o as usize].newer = newer,
        }
    }

    pub(super) fn recency_push(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        slot.newer = NIL;
        slot.older = self.newest;
        match self.newest {
            NIL => self.oldest = i,
            n => self.slots[n as usize].newer = i,
        }
        self.newest = i;
    }

    pub(super) fn touch(&mut self, i: u32) {
        if self.newest != i {
            self.recency_unlink(i);
            self.recency_push(i);
        }
    }

    // --- full-again heap --------------------------------------------------

    pub(super) fn heap_update(&mut self, i: u32, full_at: u64) {
        let pos = self.slots[i as usize].heap_pos as usize;
        self.heap[pos].full_at = full_at;
        let pos = self.sift_up(pos);
        self.sift_down(pos);
    }

    pub(super) fn heap_place(&mut self, pos: usize, entry: HeapEntry) {
        self.heap[pos] = entry;
        self.slots[entry.slot as usize].heap_pos = pos as u32;
    }

    pub(super) fn sift_up(&mut self, mut pos: usize) -> usize {
        let entry = self.heap[pos];
        while pos > 0 {
            let parent = (pos - 1) / 2;
            #[cfg(test)]
            assert!(parent < pos, "sift_up did not climb");
            if self.heap[parent].full_at <= entry.full_at {
                break;
            }
            self.heap_place(pos, self.heap[parent]);
            pos = parent;
        }
        self.heap_place(pos, entry);
        pos
    }

    pub(super) fn sift_down(&mut self, mut pos: usize) {
        let len = self.len();
        let entry = self.heap[pos];
        loop {
            let left = 2 * pos + 1;
            #[cfg(test)]
            assert!(left > pos, "sift_down did not descend");
            if left >= len {
                break;
            }
            let right = left + 1;
            let child = if right < len && self.heap[right].full_at < self.heap[left].full_at {
                right
            } else {
                left
            };
            if self.heap[child].full_at >= entry.full_at {
                break;
            }
            self.heap_place(pos, self.heap[child]);
            pos = child;
        }
        self.heap_place(pos, entry);
    }
}

/// The first instant at which a bucket holding `tokens` at `last` is full
/// again: exact, or `NEVER` if it never refills (or not before `u64::MAX`).
pub(super) fn full_at(tokens: u64, last: u64, cap: u64, refill: u64) -> u64 {
    let deficit = cap.saturating_sub(tokens);
    if deficit == 0 {
        last
    } else if refill == 0 {
        NEVER
    } else {
        last.checked_add(deficit.div_ceil(refill)).unwrap_or(NEVER)
    }
}

/// Whether `slot`'s bucket is full at `now`.
pub(super) fn is_full(slot: &Slot, now: u64, cap: u64, refill: u64) -> bool {
    let elapsed = now.saturating_sub(slot.last);
    slot.tokens.saturating_add(elapsed.saturating_mul(refill)) >= cap
}

pub(super) fn folded_multiply(x: u64, y: u64) -> u64 {
    let product = u128::from(x) * u128::from(y);
    (product as u64) ^ ((product >> 64) as u64)
}
