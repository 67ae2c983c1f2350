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
    /// Gauge: bytes held in live sessions' buffers now (the pump keeps
    /// it); an adapter whose transport queues bytes of its own may add
    /// them (io_uring does).
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

    /// Moves the `buffered` gauge by one holder's change: it held `was`
    /// bytes when last counted and holds `now` (the pump for its session,
    /// an adapter for its transport's own queues).
    pub fn rebuffer(&mut self, was: usize, now: usize) {
        self.buffered = self
            .buffered
            .wrapping_add(now as u64)
            .wrapping_sub(was as u64);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Stream counters whose every field holds a different value, from `base`.
    fn stream(base: u64) -> StreamCounters {
        StreamCounters {
            accepted: base + 1,
            rejected: base + 2,
            closed: CloseCounts {
                peer_finished: base + 3,
                idle_timeout: base + 4,
                local: base + 5,
            },
            aborted: AbortCounts {
                line_too_long: base + 6,
                frame_too_large: base + 7,
                truncated_frame: base + 8,
                drain_timeout: base + 9,
                peer_reset: base + 10,
                timed_out: base + 11,
                local: base + 12,
            },
            lingered: base + 13,
            bytes_in: base + 14,
            bytes_out: base + 15,
            bytes_discarded: base + 16,
            buffered: base + 17,
        }
    }

    /// Datagram counters whose every field holds a different value, from `base`.
    fn datagrams(base: u64) -> DatagramCounters {
        DatagramCounters {
            received: base + 1,
            echoed: base + 2,
            echoed_bytes: base + 3,
            dropped: DropCounts {
                oversize: base + 4,
                loop_guard: base + 5,
                rate_limited: base + 6,
                not_unicast: base + 7,
                unroutable: base + 8,
                send_full: base + 9,
                send_failed: base + 10,
            },
        }
    }

    #[test]
    fn rebuffer_moves_the_gauge_by_each_holders_change() {
        let mut c = StreamCounters::default();
        c.rebuffer(0, 7); // a session holds 7
        c.rebuffer(0, 5); // a transport's queue holds 5
        c.rebuffer(7, 3);
        assert_eq!(c.buffered, 8);
        c.rebuffer(5, 0);
        c.rebuffer(3, 0);
        assert_eq!(c.buffered, 0);
    }

    #[test]
    fn stream_workers_summed_add_every_field_once() {
        let mut sum = stream(100);
        sum.add(&stream(1_000));
        // Field by field: base 100 + base 1000 + 2 × its offset.
        assert_eq!(sum, {
            let mut want = stream(1_100);
            let offsets = stream(0);
            want.accepted += offsets.accepted;
            want.rejected += offsets.rejected;
            want.closed.peer_finished += offsets.closed.peer_finished;
            want.closed.idle_timeout += offsets.closed.idle_timeout;
            want.closed.local += offsets.closed.local;
            want.aborted.line_too_long += offsets.aborted.line_too_long;
            want.aborted.frame_too_large += offsets.aborted.frame_too_large;
            want.aborted.truncated_frame += offsets.aborted.truncated_frame;
            want.aborted.drain_timeout += offsets.aborted.drain_timeout;
            want.aborted.peer_reset += offsets.aborted.peer_reset;
            want.aborted.timed_out += offsets.aborted.timed_out;
            want.aborted.local += offsets.aborted.local;
            want.lingered += offsets.lingered;
            want.bytes_in += offsets.bytes_in;
            want.bytes_out += offsets.bytes_out;
            want.bytes_discarded += offsets.bytes_discarded;
            want.buffered += offsets.buffered;
            want
        });
    }

    #[test]
    fn stream_sessions_ended_are_every_close_and_abort_and_active_the_rest() {
        let c = stream(0);
        assert_eq!(c.closed.total(), 3 + 4 + 5);
        assert_eq!(c.aborted.total(), 6 + 7 + 8 + 9 + 10 + 11 + 12);
        assert_eq!(c.ended(), 12 + 63);
        let mut c = StreamCounters { accepted: 80, ..c };
        assert_eq!(c.active(), 80 - 75);
        // More ended than accepted (an adapter counting accepts late): none
        // active, not a wrapped count.
        c.accepted = 70;
        assert_eq!(c.active(), 0);
    }

    #[test]
    fn each_close_and_abort_reason_counts_in_its_own_field_once() {
        let mut closed = CloseCounts::default();
        closed.count(CloseReason::PeerFinished);
        closed.count(CloseReason::IdleTimeout);
        closed.count(CloseReason::IdleTimeout);
        for _ in 0..3 {
            closed.count(CloseReason::Local);
        }
        assert_eq!(
            closed,
            CloseCounts {
                peer_finished: 1,
                idle_timeout: 2,
                local: 3
            }
        );
        let mut aborted = AbortCounts::default();
        let reasons = [
            AbortReason::LineTooLong { limit: 4 },
            AbortReason::FrameTooLarge { len: 9, limit: 4 },
            AbortReason::TruncatedFrame { received: 1 },
            AbortReason::DrainTimeout,
            AbortReason::PeerReset,
            AbortReason::TimedOut,
            AbortReason::Local,
        ];
        // Reason k counted k + 1 times.
        for (k, reason) in reasons.into_iter().enumerate() {
            for _ in 0..=k {
                aborted.count(reason);
            }
        }
        assert_eq!(
            aborted,
            AbortCounts {
                line_too_long: 1,
                frame_too_large: 2,
                truncated_frame: 3,
                drain_timeout: 4,
                peer_reset: 5,
                timed_out: 6,
                local: 7,
            }
        );
    }

    #[test]
    fn each_datagram_is_received_once_then_echoed_or_dropped_for_one_reason() {
        let mut c = DatagramCounters::default();
        c.echoed(10);
        c.echoed(0);
        c.echoed(5);
        let reasons = [
            DropReason::Oversize { len: 9, limit: 8 },
            DropReason::LoopGuard { port: 7 },
            DropReason::RateLimited,
            DropReason::NotUnicast,
            DropReason::Unroutable,
            DropReason::SendFull,
            DropReason::SendFailed,
        ];
        for (k, reason) in reasons.into_iter().enumerate() {
            for _ in 0..=k {
                c.dropped(reason);
            }
        }
        assert_eq!(
            c,
            DatagramCounters {
                received: 3 + 28,
                echoed: 3,
                echoed_bytes: 15,
                dropped: DropCounts {
                    oversize: 1,
                    loop_guard: 2,
                    rate_limited: 3,
                    not_unicast: 4,
                    unroutable: 5,
                    send_full: 6,
                    send_failed: 7,
                },
            }
        );
        assert_eq!(c.dropped.total(), 28);
        assert_eq!(c.received, c.echoed + c.dropped.total());
    }

    #[test]
    fn datagram_workers_summed_add_every_field_once() {
        let mut sum = datagrams(100);
        sum.add(&datagrams(1_000));
        let offsets = datagrams(0);
        let mut want = datagrams(1_100);
        want.received += offsets.received;
        want.echoed += offsets.echoed;
        want.echoed_bytes += offsets.echoed_bytes;
        want.dropped.oversize += offsets.dropped.oversize;
        want.dropped.loop_guard += offsets.dropped.loop_guard;
        want.dropped.rate_limited += offsets.dropped.rate_limited;
        want.dropped.not_unicast += offsets.dropped.not_unicast;
        want.dropped.unroutable += offsets.dropped.unroutable;
        want.dropped.send_full += offsets.dropped.send_full;
        want.dropped.send_failed += offsets.dropped.send_failed;
        assert_eq!(sum, want);
    }

    #[test]
    fn counters_at_the_top_wrap_instead_of_panicking() {
        let mut c = DatagramCounters {
            received: u64::MAX,
            ..DatagramCounters::default()
        };
        c.dropped(DropReason::RateLimited);
        assert_eq!((c.received, c.dropped.rate_limited), (0, 1));
        let mut s = stream(u64::MAX - 20);
        s.add(&stream(0));
        assert_eq!(s.accepted, u64::MAX - 18);
        assert_eq!(s.buffered, 13, "MAX - 3 + 17 wraps to 13");
    }
}
