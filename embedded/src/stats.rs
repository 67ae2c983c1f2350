//! Counters a node keeps, for the board to read and log.
//!
//! Every counter saturates instead of wrapping. Event counts are `u32`,
//! byte counts `u64`.

use ricochet_core::probe::{DatagramProbeStats, ProbeStats};
use ricochet_core::{AbortReason, CloseReason, DropReason, Duration, ProbeError};

/// All of a node's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NodeStats {
    /// TCP echo (server role).
    pub tcp: TcpStats,
    /// UDP echo (server role).
    pub udp: UdpStats,
    /// IPv4 addressing.
    pub addressing: AddressStats,
    /// The verifying client (client role).
    pub client: ClientStats,
}

/// TCP echo counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct TcpStats {
    /// Connections accepted (a session started).
    pub accepted: u32,
    /// Connections being served now.
    pub active: u32,
    /// Sessions that ended gracefully, by reason.
    pub closed: CloseCounts,
    /// Sessions that were aborted (RST), by reason.
    pub aborted: AbortCounts,
    /// Sockets aborted because their FIN handshake outlasted
    /// [`TcpConfig::linger`](crate::TcpConfig::linger) after a graceful close.
    pub lingered: u32,
    /// Handshakes abandoned after
    /// [`TcpConfig::handshake_timeout`](crate::TcpConfig::handshake_timeout)
    /// (a SYN whose sender never completed the connection, perhaps forged).
    pub handshake_timeouts: u32,
    /// Bytes received from clients.
    pub bytes_in: u64,
    /// Bytes echoed back (handed to smoltcp).
    pub bytes_out: u64,
    /// Bytes received and never echoed because their session ended first.
    pub bytes_discarded: u64,
}

/// Graceful session ends, by [`CloseReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CloseCounts {
    /// The client finished and everything was echoed.
    pub peer_finished: u32,
    /// Nothing moved for the session's idle timeout.
    pub idle_timeout: u32,
    /// Closed by the node.
    pub local: u32,
    /// A reason this crate does not know yet.
    pub other: u32,
}

impl CloseCounts {
    /// All graceful ends.
    pub const fn total(&self) -> u32 {
        self.peer_finished
            .saturating_add(self.idle_timeout)
            .saturating_add(self.local)
            .saturating_add(self.other)
    }

    pub(crate) fn count(&mut self, reason: CloseReason) {
        let counter = match reason {
            CloseReason::PeerFinished => &mut self.peer_finished,
            CloseReason::IdleTimeout => &mut self.idle_timeout,
            CloseReason::Local => &mut self.local,
            _ => &mut self.other,
        };
        *counter = counter.saturating_add(1);
    }
}

/// Aborted sessions, by [`AbortReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AbortCounts {
    /// `lines` mode: a line longer than the session buffer.
    pub line_too_long: u32,
    /// `frames` mode: a frame larger than the session buffer.
    pub frame_too_large: u32,
    /// `frames` mode: the client finished inside a frame.
    pub truncated_frame: u32,
    /// The client stopped reading its echo for the drain timeout.
    pub drain_timeout: u32,
    /// The connection was reset or timed out at the TCP level.
    pub peer_reset: u32,
    /// Aborted by the node.
    pub local: u32,
    /// A reason this crate does not know yet.
    pub other: u32,
}

impl AbortCounts {
    /// All aborts.
    pub const fn total(&self) -> u32 {
        self.line_too_long
            .saturating_add(self.frame_too_large)
            .saturating_add(self.truncated_frame)
            .saturating_add(self.drain_timeout)
            .saturating_add(self.peer_reset)
            .saturating_add(self.local)
            .saturating_add(self.other)
    }

    pub(crate) fn count(&mut self, reason: AbortReason) {
        let counter = match reason {
            AbortReason::LineTooLong { .. } => &mut self.line_too_long,
            AbortReason::FrameTooLarge { .. } => &mut self.frame_too_large,
            AbortReason::TruncatedFrame { .. } => &mut self.truncated_frame,
            AbortReason::DrainTimeout => &mut self.drain_timeout,
            AbortReason::PeerReset => &mut self.peer_reset,
            AbortReason::Local => &mut self.local,
            _ => &mut self.other,
        };
        *counter = counter.saturating_add(1);
    }
}

/// UDP echo counters. Every datagram the UDP socket delivers is counted
/// in `received` and then in exactly one of `echoed` or a `dropped` reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UdpStats {
    /// Datagrams received on the echo port.
    pub received: u32,
    /// Datagrams echoed, whole.
    pub echoed: u32,
    /// Payload bytes echoed.
    pub echoed_bytes: u64,
    /// Datagrams dropped, by reason.
    pub dropped: UdpDrops,
    /// Times the transmit ring was flushed because its oldest echo could
    /// not be sent for [`UDP_STALL`](crate::UDP_STALL) (its destination
    /// never answered ARP); the echoes queued behind it were lost with it.
    pub tx_flushes: u32,
}

/// Dropped datagrams, by reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct UdpDrops {
    /// Longer than the policy's `max_datagram` (never truncated).
    pub oversize: u32,
    /// From a reflecting service's port (7, 19, 53...): echoing could loop.
    pub loop_guard: u32,
    /// The source address used up its rate budget.
    pub rate_limited: u32,
    /// Sent to a broadcast or multicast address, or from one: answering
    /// could flood the link.
    pub not_unicast: u32,
    /// From an address the node has no route back to (off-link without a
    /// default route): the echo could never leave.
    pub unroutable: u32,
    /// smoltcp's transmit ring had no room for the echo.
    pub tx_full: u32,
    /// A reason this crate does not know yet, or smoltcp refused the reply.
    pub other: u32,
}

impl UdpDrops {
    /// All drops.
    pub const fn total(&self) -> u32 {
        self.oversize
            .saturating_add(self.loop_guard)
            .saturating_add(self.rate_limited)
            .saturating_add(self.not_unicast)
            .saturating_add(self.unroutable)
            .saturating_add(self.tx_full)
            .saturating_add(self.other)
    }

    pub(crate) fn count(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::Oversize { .. } => &mut self.oversize,
            DropReason::LoopGuard { .. } => &mut self.loop_guard,
            DropReason::RateLimited => &mut self.rate_limited,
            _ => &mut self.other,
        };
        *counter = counter.saturating_add(1);
    }
}

/// IPv4 addressing counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AddressStats {
    /// DHCP leases applied.
    pub leases: u32,
    /// DHCP leases lost (expired or refused).
    pub lease_losses: u32,
    /// Times the static fallback was applied.
    pub fallbacks: u32,
}

/// The verifying client's counters and verdicts (client role).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClientStats {
    /// TCP connection attempts.
    pub connects: u32,
    /// Attempts that never reached the established state (refused, timed
    /// out); each is retried.
    pub connect_failures: u32,
    /// The stream probe's counters.
    pub stream: ProbeStats,
    /// Round trips of the stream probe's messages.
    pub stream_round_trips: RoundTrips,
    /// The stream probe's verdict.
    pub stream_outcome: ProbeOutcome,
    /// The datagram probe's counters.
    pub datagram: DatagramProbeStats,
    /// Round trips of the datagrams verified.
    pub datagram_round_trips: RoundTrips,
    /// The datagram probe's verdict.
    pub datagram_outcome: ProbeOutcome,
}

/// Where a probe stands.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProbeOutcome {
    /// Not configured (server role, or no datagram probe).
    #[default]
    NotRun,
    /// Waiting for an address, connecting, or exchanging data.
    Running,
    /// Every message was sent, returned and verified (stream: and the
    /// server closed cleanly after the client finished).
    Passed,
    /// The probe failed.
    Failed(ProbeFailure),
}

/// Why a probe failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProbeFailure {
    /// The stream probe's error (mismatch, premature close, timeout...).
    Stream(ProbeError),
    /// Not every datagram came back intact.
    Datagrams {
        /// Datagrams never returned.
        lost: u64,
        /// Datagrams returned altered.
        corrupt: u64,
    },
}

/// Round-trip times: count, extremes and sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RoundTrips {
    /// Round trips measured.
    pub count: u64,
    /// The shortest (zero when `count == 0`).
    pub min: Duration,
    /// The longest.
    pub max: Duration,
    /// The sum of all.
    pub total: Duration,
}

impl RoundTrips {
    /// The mean round trip (zero when none was measured).
    pub fn mean(&self) -> Duration {
        match self.count {
            0 => Duration::ZERO,
            n => Duration::from_micros(self.total.as_micros() / n),
        }
    }

    pub(crate) fn record(&mut self, rtt: Duration) {
        self.min = if self.count == 0 {
            rtt
        } else {
            self.min.min(rtt)
        };
        self.max = self.max.max(rtt);
        self.total = self.total + rtt;
        self.count = self.count.saturating_add(1);
    }
}

/// Adds one to an event counter, saturating.
pub(crate) fn bump(counter: &mut u32) {
    *counter = counter.saturating_add(1);
}

/// Adds `n` bytes to a byte counter, saturating.
pub(crate) fn add_bytes(counter: &mut u64, n: usize) {
    *counter = counter.saturating_add(u64::try_from(n).unwrap_or(u64::MAX));
}
