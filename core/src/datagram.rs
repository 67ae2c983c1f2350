//! The UDP echo policy: for each received datagram, echo it unchanged or drop
//! it with a named [`DropReason`].
//!
//! RFC 862 over UDP reflects whatever arrives back to the source address
//! written in the datagram, and UDP source addresses are trivially forged.
//! [`DatagramPolicy`] keeps a Ricochet server from becoming an endless loop
//! partner of another reflecting service, or a cannon pointed at whoever an
//! attacker names as the source.
//!
//! # Adapter contract
//!
//! ```text
//! let mut buf = [0u8; MAX + 1];                  // ONE BYTE MORE than config.max_datagram
//! let (len, source) = socket.recv_from(&mut buf)?;  // or MSG_TRUNC: the datagram's real length
//! match policy.decide(now, source, len) {
//!     Verdict::Echo => socket.send_to(&buf[..len], source)?,   // unchanged
//!     Verdict::Drop(reason) => log(reason),                     // nothing is sent
//! }
//! ```
//!
//! The adapter passes the datagram's *real* length. A datagram that filled
//! the whole `max_datagram + 1` buffer (or that `MSG_TRUNC` reports longer)
//! has `len > max_datagram` and is dropped as [`DropReason::Oversize`]: a
//! datagram is echoed whole or not at all, never cut short.
//!
//! # Order of checks
//!
//! 1. **Loop guard** ([`PolicyConfig::loop_guard`]): the source port is one
//!    of the [`REFLECTOR_PORTS`]. Cheapest (a few port compares) and
//!    stateless.
//! 2. **Size** ([`PolicyConfig::max_datagram`]): `len > max_datagram`.
//!    Stateless.
//! 3. **Rate** ([`PolicyConfig::rate`]): the source address's token bucket is
//!    empty. The only stateful check.
//!
//! The first failing check names the [`DropReason`]. Because the stateless
//! checks come first, only a datagram that would otherwise be echoed
//! consumes a token or takes a slot in the source table: forged datagrams
//! "from" port 19 or of 9000 bytes can neither drain a real source's budget
//! nor evict its table entry.
//!
//! # Rate limiting
//!
//! One token bucket per source **IP address** (not address and port, so
//! rotating source ports does not buy a fresh bucket). IPv4-mapped IPv6
//! addresses (`::ffff:a.b.c.d`, as a dual-stack socket reports IPv4 peers)
//! share the bucket of the IPv4 address. A bucket holds at most
//! [`RateLimit::burst`] tokens, starts full, refills continuously at
//! [`RateLimit::per_second`] tokens per second, and each echoed datagram
//! takes one token. Over any interval of length `w`, a tracked source is
//! therefore echoed at most `burst + per_second * w` datagrams.
//!
//! Arithmetic is exact integers: a bucket counts micro-tokens (a millionth of
//! a datagram), so a source refills `per_second` micro-tokens per
//! microsecond, with no floats, no rounding drift and saturation instead of
//! overflow anywhere in the `u64` range of [`Instant`]. A `now` earlier than
//! one already seen for a source counts as "no time passed": it never mints
//! tokens and never panics.
//!
//! Edge cases, all without panics:
//! - `burst == 0`: every datagram that reaches the rate check is
//!   [`DropReason::RateLimited`] (a bucket that holds nothing).
//! - `per_second == 0`: each source gets `burst` datagrams, then nothing for
//!   as long as it stays in the table.
//! - `SOURCES == 0` with `rate: Some(_)`: there is nowhere to remember a
//!   source, and the policy fails closed: every datagram that reaches the
//!   rate check is rate limited. Use `SOURCES == 0` only with `rate: None`.
//!
//! # The source table
//!
//! Buckets live in a table of `SOURCES` entries fixed at compile time. When
//! it is full and a new source arrives, one entry is evicted
//! ([`DatagramStats::evictions`]):
//!
//! 1. an entry whose bucket is **full again**, if any: a full bucket is
//!    exactly what an absent source gets, so this loses nothing;
//! 2. otherwise the **least recently seen** entry. That source will come back
//!    with a fresh, full bucket: the only way the per-source bound above can
//!    be exceeded. Size `SOURCES` above the number of sources active within
//!    one refill time (`burst / per_second` seconds) to keep that rare.
//!
//! Per datagram that reaches the rate check the cost is O(1) expected for
//! the lookup and the recency update plus O(log `SOURCES`) for the ordering
//! by refill time; nothing ever scans the table. Memory is about 76 bytes per
//! entry on 64-bit targets (about 300 KiB for `SOURCES = 4096`), all inline
//! in the [`DatagramPolicy`] value: on the std side, create it in a `Box` or
//! a `static` rather than on a small thread stack.

use core::fmt;
use core::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::time::Instant;

/// The default [`PolicyConfig::max_datagram`]: 1472 bytes, the largest UDP
/// payload that fits an unfragmented IPv4 packet on a 1500-byte Ethernet MTU
/// (1500 - 20 IPv4 header - 8 UDP header).
///
/// Over IPv6 the unfragmented limit is 1452 (40-byte header); embedded
/// targets with small buffers typically use about 1400 or less.
pub const DEFAULT_MAX_DATAGRAM: usize = 1472;

/// Source ports of well-known UDP services that answer whatever they receive,
/// or that are common reflection sources. A datagram from one of these ports
/// is not a client talking to an echo service: echoing it could start an
/// endless ping-pong between two servers, or make Ricochet part of a
/// reflection attack. Sorted ascending, no duplicates.
///
/// | port | service | why |
/// |---|---|---|
/// | 0 | reserved | not a valid source port; only forged or broken traffic uses it |
/// | 7 | echo | another echo server answers our echo: the classic endless loop |
/// | 11 | systat | answers any datagram with a user list: loop, and amplifies |
/// | 13 | daytime | answers any datagram: loop |
/// | 17 | qotd | answers any datagram with a quote: loop, and amplifies |
/// | 19 | chargen | answers any datagram with random text: the echo/chargen loop of CVE-1999-0103 |
/// | 37 | time | answers any datagram: loop |
/// | 53 | dns | servers answer even malformed packets (FORMERR): loop; top reflection source |
/// | 123 | ntp | answers unsolicited mode 3/6/7 packets: loop; reflection source |
/// | 137 | netbios-ns | answers name queries: reflection source |
/// | 161 | snmp | agents answer requests (with errors if need be): loop; reflection source |
/// | 389 | cldap | answers unauthenticated queries: large reflection source |
/// | 1900 | ssdp | answers M-SEARCH: reflection source |
/// | 5353 | mdns | responders answer queries, often to a multicast group: storms |
/// | 11211 | memcached | answers any datagram (an error for garbage): loop; record-size reflection source |
///
/// Loops through services not on this list are still bounded by the rate
/// limit: once a partner exhausts its bucket, a datagram is dropped and the
/// loop ends.
pub const REFLECTOR_PORTS: &[u16] = &[
    0, 7, 11, 13, 17, 19, 37, 53, 123, 137, 161, 389, 1900, 5353, 11211,
];

/// Whether `port` is one of the [`REFLECTOR_PORTS`].
pub const fn is_reflector_port(port: u16) -> bool {
    let mut i = 0;
    while i < REFLECTOR_PORTS.len() {
        if REFLECTOR_PORTS[i] == port {
            return true;
        }
        i += 1;
    }
    false
}

/// A token bucket per source address: how many datagrams a source may have
/// echoed, in bursts and in the long run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RateLimit {
    /// Sustained rate: tokens (echoed datagrams) added per second, refilled
    /// continuously. `0` means a source never earns more after its burst.
    pub per_second: u32,
    /// Bucket capacity: the most datagrams a source that has been quiet long
    /// enough gets echoed back to back. `0` means nothing is ever echoed.
    pub burst: u32,
}

impl RateLimit {
    /// 1000 datagrams per second, bursts of 100, per source address.
    ///
    /// Generous for a person or a monitoring probe. At the default 1472-byte
    /// limit it caps what a forged source can aim at one victim address to
    /// about 12 Mbit/s.
    pub const DEFAULT: RateLimit = RateLimit {
        per_second: 1000,
        burst: 100,
    };
}

impl Default for RateLimit {
    /// [`RateLimit::DEFAULT`].
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// Configuration of a [`DatagramPolicy`]; fixed for the policy's lifetime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct PolicyConfig {
    /// The longest payload echoed, in bytes; a longer datagram is dropped as
    /// [`DropReason::Oversize`]. The adapter receives into a buffer of at
    /// least `max_datagram + 1` bytes (or uses `MSG_TRUNC`) so it can pass
    /// the real length. `0` echoes only empty datagrams.
    pub max_datagram: usize,
    /// Per-source rate limit; `None` disables rate limiting (and the source
    /// table stays empty).
    pub rate: Option<RateLimit>,
    /// Drop datagrams whose source port is one of the [`REFLECTOR_PORTS`].
    pub loop_guard: bool,
    /// Exempt loopback sources (127.0.0.0/8, `::1`) from the rate limit.
    /// A loopback source cannot be forged from the network and its echo
    /// cannot leave the host, so limiting it protects no one and only
    /// throttles local tools (a ping-pong probe on loopback runs at tens of
    /// thousands of datagrams per second). The loop guard and the size
    /// limit still apply.
    pub rate_exempt_loopback: bool,
}

impl PolicyConfig {
    /// The defaults: [`DEFAULT_MAX_DATAGRAM`] (1472 bytes), rate limiting on
    /// with [`RateLimit::DEFAULT`] (1000/s, burst 100) except for loopback
    /// sources, loop guard on.
    pub const DEFAULT: PolicyConfig = PolicyConfig {
        max_datagram: DEFAULT_MAX_DATAGRAM,
        rate: Some(RateLimit::DEFAULT),
        loop_guard: true,
        rate_exempt_loopback: true,
    };
}

impl Default for PolicyConfig {
    /// [`PolicyConfig::DEFAULT`].
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What to do with one datagram.
#[must_use = "a verdict must be acted on: echo the datagram or drop it"]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict {
    /// Send the datagram back, unchanged, to the address it came from.
    Echo,
    /// Send nothing.
    Drop(DropReason),
}

impl Verdict {
    /// Whether the verdict is [`Verdict::Echo`].
    pub const fn is_echo(self) -> bool {
        matches!(self, Verdict::Echo)
    }
}

/// Why a datagram was dropped. [`fmt::Display`] gives a one-line human
/// message for logs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DropReason {
    /// The datagram is longer than [`PolicyConfig::max_datagram`].
    Oversize {
        /// The datagram's real length in bytes.
        len: usize,
        /// [`PolicyConfig::max_datagram`].
        limit: usize,
    },
    /// The source port belongs to a reflecting service
    /// ([`REFLECTOR_PORTS`]); echoing could start a loop.
    LoopGuard {
        /// The datagram's source port.
        port: u16,
    },
    /// The source address has used up its [`RateLimit`] budget for now.
    RateLimited,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DropReason::Oversize { len, limit } => {
                write!(f, "oversize datagram: {len} bytes > limit {limit}")
            }
            DropReason::LoopGuard { port } => write!(
                f,
                "loop guard: source port {port} belongs to a reflecting service"
            ),
            DropReason::RateLimited => {
                f.write_str("rate limited: source address exceeded its datagram budget")
            }
        }
    }
}

/// Counters kept by a [`DatagramPolicy`].
///
/// Every [`DatagramPolicy::decide`] call adds one to exactly one of
/// `echoed`, `oversize`, `loop_guard` and `rate_limited` (see
/// [`DatagramStats::decisions`]). Counters saturate instead of wrapping.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DatagramStats {
    /// Datagrams echoed.
    pub echoed: u64,
    /// Payload bytes echoed (sum of their lengths).
    pub echoed_bytes: u64,
    /// Datagrams dropped as [`DropReason::Oversize`].
    pub oversize: u64,
    /// Datagrams dropped as [`DropReason::LoopGuard`].
    pub loop_guard: u64,
    /// Datagrams dropped as [`DropReason::RateLimited`].
    pub rate_limited: u64,
    /// Source addresses in the rate table now (at most `SOURCES`).
    pub tracked_sources: usize,
    /// Table entries evicted to make room for a new source.
    pub evictions: u64,
}

impl DatagramStats {
    /// All zero.
    pub const ZERO: DatagramStats = DatagramStats {
        echoed: 0,
        echoed_bytes: 0,
        oversize: 0,
        loop_guard: 0,
        rate_limited: 0,
        tracked_sources: 0,
        evictions: 0,
    };

    /// Datagrams decided so far: `echoed + oversize + loop_guard +
    /// rate_limited` (saturating).
    pub const fn decisions(&self) -> u64 {
        self.echoed
            .saturating_add(self.oversize)
            .saturating_add(self.loop_guard)
            .saturating_add(self.rate_limited)
    }
}

/// The UDP echo policy: decides, per datagram, [`Verdict::Echo`] or
/// [`Verdict::Drop`]. See the [module documentation](self) for the adapter
/// contract, the order of checks and the rate limiter.
///
/// `SOURCES` is the capacity of the per-source rate table (any value; not
/// necessarily a power of two). Everything lives inline: no allocation.
pub struct DatagramPolicy<const SOURCES: usize> {
    config: PolicyConfig,
    stats: DatagramStats,
    table: SourceTable<SOURCES>,
}

impl<const SOURCES: usize> DatagramPolicy<SOURCES> {
    /// A policy with `config` and an empty source table.
    ///
    /// Source addresses are hashed with a fixed key. On a server reachable
    /// from the Internet, prefer [`DatagramPolicy::with_hash_seed`] with a
    /// random seed.
    pub const fn new(config: PolicyConfig) -> Self {
        Self::with_hash_seed(config, 0)
    }

    /// A policy with `config` whose table hashes addresses with a key
    /// derived from `seed`.
    ///
    /// Decisions do not depend on the seed; only the table's speed does. A
    /// seed that remote hosts cannot guess (from the OS's random source)
    /// stops them from choosing forged source addresses that all land in one
    /// hash chain and make lookups slow.
    pub const fn with_hash_seed(config: PolicyConfig, seed: u64) -> Self {
        Self {
            config,
            stats: DatagramStats::ZERO,
            table: SourceTable::new(seed),
        }
    }

    /// The configuration given at construction.
    pub const fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The counters so far.
    pub const fn stats(&self) -> &DatagramStats {
        &self.stats
    }

    /// Decide for one datagram of `len` bytes (its real length, see the
    /// [module documentation](self)) received from `source` at `now`.
    ///
    /// Checks, in order: loop guard, size, rate (only a datagram that passes
    /// the first two consumes a token). Counts the verdict in
    /// [`DatagramPolicy::stats`]. Never panics, for any `now` (including one
    /// earlier than before), `source` and `len`.
    pub fn decide(&mut self, now: Instant, source: SocketAddr, len: usize) -> Verdict {
        let verdict = self.judge(now, source, len);
        let stats = &mut self.stats;
        match verdict {
            Verdict::Echo => {
                stats.echoed = stats.echoed.saturating_add(1);
                let bytes = u64::try_from(len).unwrap_or(u64::MAX);
                stats.echoed_bytes = stats.echoed_bytes.saturating_add(bytes);
            }
            Verdict::Drop(reason) => {
                let counter = match reason {
                    DropReason::Oversize { .. } => &mut stats.oversize,
                    DropReason::LoopGuard { .. } => &mut stats.loop_guard,
                    DropReason::RateLimited => &mut stats.rate_limited,
                };
                *counter = counter.saturating_add(1);
                trace!("datagram dropped: {}", reason);
            }
        }
        stats.tracked_sources = self.table.len();
        verdict
    }

    fn judge(&mut self, now: Instant, source: SocketAddr, len: usize) -> Verdict {
        let port = source.port();
        if self.config.loop_guard && is_reflector_port(port) {
            return Verdict::Drop(DropReason::LoopGuard { port });
        }
        let limit = self.config.max_datagram;
        if len > limit {
            return Verdict::Drop(DropReason::Oversize { len, limit });
        }
        if let Some(rate) = self.config.rate {
            let ip = source.ip().to_canonical();
            if self.config.rate_exempt_loopback && ip.is_loopback() {
                return Verdict::Echo;
            }
            if !self
                .table
                .take_token(now.as_micros(), ip, rate, &mut self.stats.evictions)
            {
                return Verdict::Drop(DropReason::RateLimited);
            }
        }
        Verdict::Echo
    }
}

impl<const SOURCES: usize> fmt::Debug for DatagramPolicy<SOURCES> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DatagramPolicy")
            .field("config", &self.config)
            .field("stats", &self.stats)
            .field("capacity", &SOURCES)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "defmt")]
impl<const SOURCES: usize> defmt::Format for DatagramPolicy<SOURCES> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "DatagramPolicy {{ config: {}, stats: {}, capacity: {} }}",
            self.config,
            self.stats,
            SOURCES
        )
    }
}

// ---------------------------------------------------------------------------
// The source table.
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
const MICRO: u64 = 1_000_000;
/// "No slot" in the intrusive links.
const NIL: u32 = u32::MAX;
/// A full-again instant that no `now` reaches (or that saturated).
const NEVER: u64 = u64::MAX;

#[derive(Clone, Copy)]
struct Slot {
    /// The source, canonical (IPv4-mapped IPv6 folded to IPv4).
    ip: IpAddr,
    /// Micro-tokens in the bucket as of `last`; at most `burst * MICRO`.
    tokens: u64,
    /// The latest instant (µs) the source was seen; never decreases, so a
    /// `now` that goes backwards refills nothing.
    last: u64,
    /// Neighbour seen more recently, or `NIL`.
    newer: u32,
    /// Neighbour seen less recently, or `NIL`.
    older: u32,
    /// Next slot in the same hash chain, or `NIL`.
    chain: u32,
    /// Position of this slot in `SourceTable::heap`.
    heap_pos: u32,
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
struct HeapEntry {
    /// The first instant (µs) at which the slot's bucket is full again, or
    /// `NEVER`.
    full_at: u64,
    slot: u32,
}

struct SourceTable<const N: usize> {
    slots: [Slot; N],
    /// Hash bucket -> first slot of its chain, or `NIL`.
    heads: [u32; N],
    /// Min-heap on `full_at` over the `len` slots in use.
    heap: [HeapEntry; N],
    /// Slots `0..len` are in use.
    len: u32,
    newest: u32,
    oldest: u32,
    keys: [u64; 3],
}

impl<const N: usize> SourceTable<N> {
    const fn new(seed: u64) -> Self {
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

    fn len(&self) -> usize {
        self.len as usize
    }

    /// Takes one token from `ip`'s bucket (creating the entry, and evicting
    /// another if the table is full). Returns whether there was a token.
    fn take_token(&mut self, now: u64, ip: IpAddr, rate: RateLimit, evictions: &mut u64) -> bool {
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
    fn victim(&self, now: u64, cap: u64, refill: u64) -> u32 {
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

    fn bucket_of(&self, ip: &IpAddr) -> usize {
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

    fn find(&self, ip: &IpAddr, bucket: usize) -> Option<u32> {
        let mut i = self.heads[bucket];
        while i != NIL {
            let slot = &self.slots[i as usize];
            if slot.ip == *ip {
                return Some(i);
            }
            i = slot.chain;
        }
        None
    }

    fn chain_unlink(&mut self, i: u32) {
        let bucket = self.bucket_of(&self.slots[i as usize].ip);
        let next = self.slots[i as usize].chain;
        if self.heads[bucket] == i {
            self.heads[bucket] = next;
            return;
        }
        let mut j = self.heads[bucket];
        while j != NIL {
            let after = self.slots[j as usize].chain;
            if after == i {
                self.slots[j as usize].chain = next;
                return;
            }
            j = after;
        }
    }

    // --- recency list -----------------------------------------------------

    fn recency_unlink(&mut self, i: u32) {
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

    fn recency_push(&mut self, i: u32) {
        let slot = &mut self.slots[i as usize];
        slot.newer = NIL;
        slot.older = self.newest;
        match self.newest {
            NIL => self.oldest = i,
            n => self.slots[n as usize].newer = i,
        }
        self.newest = i;
    }

    fn touch(&mut self, i: u32) {
        if self.newest != i {
            self.recency_unlink(i);
            self.recency_push(i);
        }
    }

    // --- full-again heap --------------------------------------------------

    fn heap_update(&mut self, i: u32, full_at: u64) {
        let pos = self.slots[i as usize].heap_pos as usize;
        self.heap[pos].full_at = full_at;
        let pos = self.sift_up(pos);
        self.sift_down(pos);
    }

    fn heap_place(&mut self, pos: usize, entry: HeapEntry) {
        self.heap[pos] = entry;
        self.slots[entry.slot as usize].heap_pos = pos as u32;
    }

    fn sift_up(&mut self, mut pos: usize) -> usize {
        let entry = self.heap[pos];
        while pos > 0 {
            let parent = (pos - 1) / 2;
            if self.heap[parent].full_at <= entry.full_at {
                break;
            }
            self.heap_place(pos, self.heap[parent]);
            pos = parent;
        }
        self.heap_place(pos, entry);
        pos
    }

    fn sift_down(&mut self, mut pos: usize) {
        let len = self.len();
        let entry = self.heap[pos];
        loop {
            let left = 2 * pos + 1;
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
fn full_at(tokens: u64, last: u64, cap: u64, refill: u64) -> u64 {
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
fn is_full(slot: &Slot, now: u64, cap: u64, refill: u64) -> bool {
    let elapsed = now.saturating_sub(slot.last);
    slot.tokens.saturating_add(elapsed.saturating_mul(refill)) >= cap
}

fn folded_multiply(x: u64, y: u64) -> u64 {
    let product = u128::from(x) * u128::from(y);
    (product as u64) ^ ((product >> 64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::Duration;
    use core::net::Ipv6Addr;
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

    const LIMITED: Verdict = Verdict::Drop(DropReason::RateLimited);

    /// Sends `n` datagrams of 10 bytes from `source` at `now`; returns how
    /// many were echoed.
    fn echoes<const S: usize>(
        p: &mut DatagramPolicy<S>,
        now: Instant,
        source: SocketAddr,
        n: usize,
    ) -> usize {
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
    fn fresh_source_within_burst_is_echoed() {
        let mut p = DatagramPolicy::<8>::new(config(10, 5));
        assert_eq!(echoes(&mut p, T0, v4(1, 40000), 5), 5);
        assert_eq!(p.decide(T0, v4(1, 40000), 10), LIMITED);
        assert_eq!(
            *p.stats(),
            DatagramStats {
                echoed: 5,
                echoed_bytes: 50,
                rate_limited: 1,
                tracked_sources: 1,
                ..DatagramStats::ZERO
            }
        );
    }

    #[test]
    fn source_over_burst_is_rate_limited_then_refills_after_interval() {
        // 4 per second: one token every 250 ms.
        let mut p = DatagramPolicy::<8>::new(config(4, 2));
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
        let mut p = DatagramPolicy::<8>::new(config(3, 2));
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
        let mut p = DatagramPolicy::<8>::new(config(0, 1));
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
        let mut p = DatagramPolicy::<8>::new(PolicyConfig {
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
        let mut p = DatagramPolicy::<4>::new(config);
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
        let mut p = DatagramPolicy::<8>::new(PolicyConfig {
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
        let mut p = DatagramPolicy::<8>::new(config(0, 1));
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
            *p.stats(),
            DatagramStats {
                echoed: 1,
                echoed_bytes: 1472,
                oversize: 2,
                tracked_sources: 1,
                ..DatagramStats::ZERO
            }
        );
    }

    #[test]
    fn reflector_port_with_oversize_datagram_is_reported_as_loop_guard() {
        let mut p = DatagramPolicy::<8>::new(PolicyConfig::DEFAULT);
        assert_eq!(
            p.decide(T0, v4(1, 19), 9000),
            Verdict::Drop(DropReason::LoopGuard { port: 19 })
        );
        assert_eq!((p.stats().loop_guard, p.stats().oversize), (1, 0));
    }

    #[test]
    fn zero_max_datagram_echoes_only_empty_datagrams() {
        let mut p = DatagramPolicy::<8>::new(PolicyConfig {
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
        let mut p = DatagramPolicy::<8>::new(config(0, 3));
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
        let mut p = DatagramPolicy::<8>::new(config(0, 2));
        assert_eq!(echoes(&mut p, T0, v6(1, 40000), 3), 2);
        assert_eq!(echoes(&mut p, T0, v6(2, 40000), 3), 2);
        // 2001:db8::1 and 192.0.2.1 are different sources.
        assert_eq!(echoes(&mut p, T0, v4(1, 40000), 3), 2);
        assert_eq!(p.stats().tracked_sources, 3);
    }

    #[test]
    fn ipv4_mapped_ipv6_source_shares_the_ipv4_bucket() {
        let mut p = DatagramPolicy::<8>::new(config(0, 2));
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
        let mut p = DatagramPolicy::<2>::new(config(1, 2));
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
        p.table.check_invariants(RateLimit {
            per_second: 1,
            burst: 2,
        });
    }

    #[test]
    fn full_table_without_idle_source_evicts_least_recently_seen() {
        let mut p = DatagramPolicy::<2>::new(config(1, 5));
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
        p.table.check_invariants(RateLimit {
            per_second: 1,
            burst: 5,
        });
    }

    #[test]
    fn rate_limit_disabled_echoes_everything_and_tracks_no_source() {
        let mut p = DatagramPolicy::<4>::new(PolicyConfig {
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
        let mut p = DatagramPolicy::<4>::new(config(1000, 0));
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
        let mut p = DatagramPolicy::<4>::new(config(0, 3));
        assert_eq!(echoes(&mut p, T0, v4(1, 40000), 5), 3);
        let later = Instant::from_micros(u64::MAX);
        assert_eq!(echoes(&mut p, later, v4(1, 40000), 5), 0);
    }

    #[test]
    fn zero_sources_table_with_rate_limit_fails_closed() {
        let mut p = DatagramPolicy::<0>::new(config(1000, 100));
        assert_eq!(p.decide(T0, v4(1, 40000), 10), LIMITED);
        let mut open = DatagramPolicy::<0>::new(PolicyConfig {
            rate: None,
            ..PolicyConfig::DEFAULT
        });
        assert_eq!(open.decide(T0, v4(1, 40000), 10), Verdict::Echo);
    }

    #[test]
    fn time_going_backwards_mints_no_tokens() {
        let mut p = DatagramPolicy::<4>::new(config(1, 1));
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
        let mut p = DatagramPolicy::<2>::new(PolicyConfig {
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
        p.table.check_invariants(rate);
        let mut slow = DatagramPolicy::<2>::new(config(1, 1));
        let end = Instant::MAX;
        assert!(slow.decide(end, v4(1, 40000), 0).is_echo());
        assert!(slow.decide(end, v4(2, 40000), 1).is_echo());
        assert_eq!(slow.decide(end, v4(2, 40000), 1), LIMITED);
        assert!(slow.decide(end, v4(3, 40000), 1).is_echo());
        slow.table.check_invariants(RateLimit {
            per_second: 1,
            burst: 1,
        });
    }

    #[test]
    fn hash_seed_changes_no_decision() {
        let mut a = DatagramPolicy::<4>::new(config(100, 3));
        let mut b = DatagramPolicy::<4>::with_hash_seed(config(100, 3), 0x5eed_1234_abcd_0042);
        for step in 0..2000u64 {
            let now = T0 + Duration::from_micros(step * 997);
            let s = v4((step * 7 % 11) as u8, 40000);
            assert_eq!(a.decide(now, s, 10), b.decide(now, s, 10));
        }
        assert_eq!(a.stats(), b.stats());
    }

    #[test]
    fn stats_count_every_decision_exactly() {
        let mut p = DatagramPolicy::<1>::new(config(0, 1));
        let _ = p.decide(T0, v4(1, 40000), 100); // echo
        let _ = p.decide(T0, v4(1, 40000), 100); // rate limited
        let _ = p.decide(T0, v4(1, 19), 100); // loop guard
        let _ = p.decide(T0, v4(1, 40000), 2000); // oversize
        let _ = p.decide(T0, v6(1, 40000), 0); // echo, evicts 192.0.2.1
        assert_eq!(
            *p.stats(),
            DatagramStats {
                echoed: 2,
                echoed_bytes: 100,
                oversize: 1,
                loop_guard: 1,
                rate_limited: 1,
                tracked_sources: 1,
                evictions: 1,
            }
        );
        assert_eq!(p.stats().decisions(), 5);
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
        let p = DatagramPolicy::<4>::new(c);
        assert_eq!(*p.config(), c);
        assert_eq!(*p.stats(), DatagramStats::ZERO);
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

    fn check_table<const N: usize>(
        rate: RateLimit,
        start: u64,
        events: &[(i64, IpAddr, u16, bool)],
    ) {
        let mut p = DatagramPolicy::<N>::new(PolicyConfig {
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
            let t = &p.table;
            let before: Vec<(IpAddr, bool)> = t.slots[..t.len()]
                .iter()
                .map(|s| (s.ip, is_full(s, now, cap, refill)))
                .collect();
            let oldest = (t.oldest != NIL).then(|| t.slots[t.oldest as usize].ip);
            let evictions = p.stats().evictions;

            let len = if big { 101 } else { 10 };
            let _ = p.decide(Instant::from_micros(now), SocketAddr::new(ip, port), len);
            p.table.check_invariants(rate);

            let t = &p.table;
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
}
