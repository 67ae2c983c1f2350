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
//! The adapter passes the datagram's *real* length where it can learn it
//! (`MSG_TRUNC`); otherwise the `max + 1` it received. A datagram that filled
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
//! ([`SourceStats::evictions`]):
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
use core::net::{IpAddr, SocketAddr};

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

/// Whether `ip` can be one end of a unicast exchange, judged by its address
/// class alone: `false` for a multicast address, the IPv4 limited broadcast
/// `255.255.255.255` and the unspecified address (`0.0.0.0`, `::`), `true`
/// otherwise. An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack
/// socket reports IPv4 peers) is judged as its IPv4 address.
///
/// An adapter that sees a datagram's destination as well as its source drops
/// it as [`DropReason::NotUnicast`] when either fails this test: answering a
/// datagram sent to a group, or "from" one, could flood the link. A
/// subnet-directed broadcast (`192.0.2.255` on a `/24`) looks like any
/// unicast address here; only the interface's netmask (or the stack, which
/// knows it) tells them apart, so the adapter checks that separately.
///
/// ```
/// use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};
/// use ricochet_core::datagram::is_unicast_address;
///
/// assert!(is_unicast_address(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7))));
/// assert!(!is_unicast_address(IpAddr::V4(Ipv4Addr::BROADCAST)));
/// assert!(!is_unicast_address(IpAddr::V4(Ipv4Addr::new(224, 0, 0, 1))));
/// assert!(!is_unicast_address(IpAddr::V6(Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1))));
/// assert!(!is_unicast_address(IpAddr::V6(Ipv4Addr::BROADCAST.to_ipv6_mapped())));
/// ```
pub const fn is_unicast_address(ip: IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => !(v4.is_multicast() || v4.is_broadcast() || v4.is_unspecified()),
        IpAddr::V6(v6) => !(v6.is_multicast() || v6.is_unspecified()),
    }
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
        /// The length the adapter passed: the datagram's real length where
        /// it knows it (`MSG_TRUNC`), else `limit + 1` from a `max + 1`
        /// receive buffer, which only says "longer than the limit" (and is
        /// displayed so).
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
    /// Sent to, or from, a broadcast or multicast address: answering could
    /// flood the link (decided by an adapter that sees the destination).
    NotUnicast,
    /// From an address the adapter has no route back to: the echo could
    /// never leave.
    Unroutable,
    /// The transport had no room for the echo: UDP has no backpressure, so
    /// the echo is dropped, not queued.
    SendFull,
    /// The transport failed to send the echo.
    SendFailed,
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            DropReason::Oversize { len, limit } if len == limit.saturating_add(1) => {
                write!(f, "oversize datagram: more than the {limit}-byte limit")
            }
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
            DropReason::NotUnicast => f.write_str("not unicast: broadcast or multicast address"),
            DropReason::Unroutable => f.write_str("unroutable: no route back to the source"),
            DropReason::SendFull => f.write_str("send buffer full: echo dropped"),
            DropReason::SendFailed => f.write_str("echo failed in the transport"),
        }
    }
}

/// The state of a [`DatagramPolicy`]'s source table.
///
/// What happened to each datagram is counted by the adapter in the core's
/// [`DatagramCounters`](crate::DatagramCounters), from the verdicts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct SourceStats {
    /// Source addresses in the rate table now (at most `SOURCES`).
    pub tracked_sources: usize,
    /// Table entries evicted to make room for a new source.
    pub evictions: u64,
}

/// The UDP echo policy: decides, per datagram, [`Verdict::Echo`] or
/// [`Verdict::Drop`]. See the [module documentation](self) for the adapter
/// contract, the order of checks and the rate limiter.
///
/// `SOURCES` is the capacity of the per-source rate table (any value; not
/// necessarily a power of two). Everything lives inline: no allocation.
pub struct DatagramPolicy<const SOURCES: usize> {
    config: PolicyConfig,
    evictions: u64,
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
            evictions: 0,
            table: SourceTable::new(seed),
        }
    }

    /// The configuration given at construction.
    pub const fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// The source table's state.
    pub fn source_stats(&self) -> SourceStats {
        SourceStats {
            tracked_sources: self.table.len(),
            evictions: self.evictions,
        }
    }

    /// Decide for one datagram of `len` bytes (its real length, see the
    /// [module documentation](self)) received from `source` at `now`.
    ///
    /// Checks, in order: loop guard, size, rate (only a datagram that passes
    /// the first two consumes a token). Never panics, for any `now`
    /// (including one earlier than before), `source` and `len`.
    pub fn decide(&mut self, now: Instant, source: SocketAddr, len: usize) -> Verdict {
        let verdict = self.judge(now, source, len);
        if let Verdict::Drop(_reason) = verdict {
            trace!("datagram dropped: {}", _reason);
        }
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
                .take_token(now.as_micros(), ip, rate, &mut self.evictions)
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
            .field("sources", &self.source_stats())
            .field("capacity", &SOURCES)
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "defmt")]
impl<const SOURCES: usize> defmt::Format for DatagramPolicy<SOURCES> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "DatagramPolicy {{ config: {}, sources: {}, capacity: {} }}",
            self.config,
            self.source_stats(),
            SOURCES
        )
    }
}

mod table;
#[cfg(test)]
mod tests;

use table::SourceTable;
