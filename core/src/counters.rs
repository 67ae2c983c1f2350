//! The one set of counters every adapter keeps: stream sessions (closes and
//! aborts by reason, bytes) and datagrams (echoed, dropped by reason).
//!
//! The core counts: the [`Pump`](crate::pump::Pump) counts bytes and how
//! each session ended into a [`StreamCounters`]; an adapter's datagram loop
//! records each datagram's fate into a [`DatagramCounters`] with
//! [`DatagramCounters::echoed`] and [`DatagramCounters::dropped`]. Adapters
//! count only what they alone see (connections accepted and rejected).
//! Logs, stats lines and metrics all read these, so every adapter reports
//! the same taxonomy. Counters wrap at `u64::MAX` (never reached in practice).

use crate::datagram::DropReason;
use crate::session::{AbortReason, CloseReason};

/// Stream (TCP, Unix, TLS) counters of one listener kind or one worker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct StreamCounters {
    /// Connections given a session (counted by the adapter).
    pub accepted: u64,
    /// Connections refused over a connection limit (counted by the adapter).
    pub rejected: u64,
    /// Sessions that ended gracefully, by reason.
    pub closed: CloseCounts,
    /// Sessions that were aborted (reset), by reason.
    pub aborted: AbortCounts,
    /// Graceful closes whose linger ran out (the peer neither finished nor
    /// acknowledged in time) and whose connection was abandoned.
    pub lingered: u64,
    /// Bytes received from peers.
    pub bytes_in: u64,
    /// Bytes echoed back (handed to the transport). A transport that
    /// queues output of its own (io_uring, TLS) may still fail to deliver
    /// them: they stay counted here and the session counts as
    /// `aborted.peer_reset` ([`Transport::queues_output`](crate::pump::Transport::queues_output)).
    pub bytes_out: u64,
    /// Bytes received and never echoed: the session ended first, or they
    /// arrived after a graceful close.
    pub bytes_discarded: u64,
    /// Gauge: bytes held in live sessions' buffers now.
    pub buffered: u64,
}

impl StreamCounters {
    /// Sessions that ended, gracefully or not.
    pub const fn ended(&self) -> u64 {
        self.closed.total().wrapping_add(self.aborted.total())
    }

    /// Sessions accepted and not yet ended.
    pub const fn active(&self) -> u64 {
        self.accepted.saturating_sub(self.ended())
    }

    /// Adds `other` to these counters (summing workers or transports).
    pub fn add(&mut self, other: &StreamCounters) {
        self.accepted = self.accepted.wrapping_add(other.accepted);
        self.rejected = self.rejected.wrapping_add(other.rejected);
        self.closed.add(&other.closed);
        self.aborted.add(&other.aborted);
        self.lingered = self.lingered.wrapping_add(other.lingered);
        self.bytes_in = self.bytes_in.wrapping_add(other.bytes_in);
        self.bytes_out = self.bytes_out.wrapping_add(other.bytes_out);
        self.bytes_discarded = self.bytes_discarded.wrapping_add(other.bytes_discarded);
        self.buffered = self.buffered.wrapping_add(other.buffered);
    }
}

/// Graceful session ends, by [`CloseReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct CloseCounts {
    /// The peer finished and everything was echoed.
    pub peer_finished: u64,
    /// Nothing moved for the idle timeout.
    pub idle_timeout: u64,
    /// Closed by the adapter (shutdown).
    pub local: u64,
}

impl CloseCounts {
    /// All graceful ends.
    pub const fn total(&self) -> u64 {
        self.peer_finished
            .wrapping_add(self.idle_timeout)
            .wrapping_add(self.local)
    }

    /// Counts one end.
    pub fn count(&mut self, reason: CloseReason) {
        let counter = match reason {
            CloseReason::PeerFinished => &mut self.peer_finished,
            CloseReason::IdleTimeout => &mut self.idle_timeout,
            CloseReason::Local => &mut self.local,
        };
        *counter = counter.wrapping_add(1);
    }

    fn add(&mut self, o: &CloseCounts) {
        self.peer_finished = self.peer_finished.wrapping_add(o.peer_finished);
        self.idle_timeout = self.idle_timeout.wrapping_add(o.idle_timeout);
        self.local = self.local.wrapping_add(o.local);
    }
}

/// Aborted sessions, by [`AbortReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AbortCounts {
    /// `lines` mode: a line that does not fit the session buffer with its
    /// `\n`.
    pub line_too_long: u64,
    /// `frames` mode: a frame larger than the session buffer.
    pub frame_too_large: u64,
    /// `frames` mode: the peer finished inside a frame.
    pub truncated_frame: u64,
    /// The peer stopped reading its echo for the drain timeout.
    pub drain_timeout: u64,
    /// The connection was reset by the peer or failed.
    pub peer_reset: u64,
    /// The transport gave up on the connection (retransmission timeout).
    pub timed_out: u64,
    /// Aborted by the adapter (e.g. the shutdown grace period ran out).
    pub local: u64,
}

impl AbortCounts {
    /// All aborts.
    pub const fn total(&self) -> u64 {
        self.line_too_long
            .wrapping_add(self.frame_too_large)
            .wrapping_add(self.truncated_frame)
            .wrapping_add(self.drain_timeout)
            .wrapping_add(self.peer_reset)
            .wrapping_add(self.timed_out)
            .wrapping_add(self.local)
    }

    /// Counts one abort.
    pub fn count(&mut self, reason: AbortReason) {
        let counter = match reason {
            AbortReason::LineTooLong { .. } => &mut self.line_too_long,
            AbortReason::FrameTooLarge { .. } => &mut self.frame_too_large,
            AbortReason::TruncatedFrame { .. } => &mut self.truncated_frame,
            AbortReason::DrainTimeout => &mut self.drain_timeout,
            AbortReason::PeerReset => &mut self.peer_reset,
            AbortReason::TimedOut => &mut self.timed_out,
            AbortReason::Local => &mut self.local,
        };
        *counter = counter.wrapping_add(1);
    }

    fn add(&mut self, o: &AbortCounts) {
        self.line_too_long = self.line_too_long.wrapping_add(o.line_too_long);
        self.frame_too_large = self.frame_too_large.wrapping_add(o.frame_too_large);
        self.truncated_frame = self.truncated_frame.wrapping_add(o.truncated_frame);
        self.drain_timeout = self.drain_timeout.wrapping_add(o.drain_timeout);
        self.peer_reset = self.peer_reset.wrapping_add(o.peer_reset);
        self.timed_out = self.timed_out.wrapping_add(o.timed_out);
        self.local = self.local.wrapping_add(o.local);
    }
}

/// Datagram (UDP) counters. Every datagram received is counted in
/// `received` and then in exactly one of `echoed` or a `dropped` reason.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DatagramCounters {
    /// Datagrams received.
    pub received: u64,
    /// Datagrams echoed, whole.
    pub echoed: u64,
    /// Payload bytes echoed.
    pub echoed_bytes: u64,
    /// Datagrams dropped, by reason.
    pub dropped: DropCounts,
}

impl DatagramCounters {
    /// A datagram of `len` bytes was received and echoed whole.
    pub fn echoed(&mut self, len: usize) {
        self.received = self.received.wrapping_add(1);
        self.echoed = self.echoed.wrapping_add(1);
        self.echoed_bytes = self.echoed_bytes.wrapping_add(len as u64);
    }

    /// A datagram was received and dropped for `reason`.
    pub fn dropped(&mut self, reason: DropReason) {
        self.received = self.received.wrapping_add(1);
        self.dropped.count(reason);
    }

    /// Adds `other` to these counters.
    pub fn add(&mut self, other: &DatagramCounters) {
        self.received = self.received.wrapping_add(other.received);
        self.echoed = self.echoed.wrapping_add(other.echoed);
        self.echoed_bytes = self.echoed_bytes.wrapping_add(other.echoed_bytes);
        self.dropped.add(&other.dropped);
    }
}

/// Dropped datagrams, by [`DropReason`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DropCounts {
    /// Longer than the policy's `max_datagram` (never truncated).
    pub oversize: u64,
    /// From a reflecting service's port (7, 19, 53...): echoing could loop.
    pub loop_guard: u64,
    /// The source address used up its rate budget.
    pub rate_limited: u64,
    /// To or from a broadcast or multicast address.
    pub not_unicast: u64,
    /// From an address with no route back.
    pub unroutable: u64,
    /// The transport had no room for the echo (UDP has no backpressure).
    pub send_full: u64,
    /// The echo failed in the transport for another reason.
    pub send_failed: u64,
}

impl DropCounts {
    /// All drops.
    pub const fn total(&self) -> u64 {
        self.oversize
            .wrapping_add(self.loop_guard)
            .wrapping_add(self.rate_limited)
            .wrapping_add(self.not_unicast)
            .wrapping_add(self.unroutable)
            .wrapping_add(self.send_full)
            .wrapping_add(self.send_failed)
    }

    /// Counts one drop.
    pub fn count(&mut self, reason: DropReason) {
        let counter = match reason {
            DropReason::Oversize { .. } => &mut self.oversize,
            DropReason::LoopGuard { .. } => &mut self.loop_guard,
            DropReason::RateLimited => &mut self.rate_limited,
            DropReason::NotUnicast => &mut self.not_unicast,
            DropReason::Unroutable => &mut self.unroutable,
            DropReason::SendFull => &mut self.send_full,
            DropReason::SendFailed => &mut self.send_failed,
        };
        *counter = counter.wrapping_add(1);
    }

    fn add(&mut self, o: &DropCounts) {
        self.oversize = self.oversize.wrapping_add(o.oversize);
        self.loop_guard = self.loop_guard.wrapping_add(o.loop_guard);
        self.rate_limited = self.rate_limited.wrapping_add(o.rate_limited);
        self.not_unicast = self.not_unicast.wrapping_add(o.not_unicast);
        self.unroutable = self.unroutable.wrapping_add(o.unroutable);
        self.send_full = self.send_full.wrapping_add(o.send_full);
        self.send_failed = self.send_failed.wrapping_add(o.send_failed);
    }
}
