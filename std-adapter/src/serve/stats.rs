//! Server counters: written by each worker, readable from any thread.
//!
//! Each worker counts in plain integers on its hot path and publishes them
//! once per event-loop turn into its own cache-line-aligned block of
//! atomics, so workers never contend on a counter. Readers sum the blocks
//! into a [`StatsSnapshot`].

use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

macro_rules! counters {
    ($( $(#[$doc:meta])* $name:ident, )*) => {
        /// A point-in-time copy of the server's counters (summed over workers).
        ///
        /// Counters only grow, except `connections_open` and `bytes_buffered`,
        /// which are gauges. Each worker publishes once per event-loop turn
        /// and fields are read one by one, so a snapshot taken during a
        /// publication may mix two consecutive turns of one worker: compare
        /// counters across snapshots, not within one.
        #[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
        #[non_exhaustive]
        pub struct StatsSnapshot {
            /// Stream connections open now (including ones finishing their close).
            pub connections_open: u64,
            $( $(#[$doc])* pub $name: u64, )*
        }

        /// Worker-local counters (no atomics); published by [`WorkerStats::publish`].
        #[derive(Clone, Copy, Debug, Default)]
        pub(crate) struct Counters {
            $( pub(crate) $name: u64, )*
        }

        /// One worker's published counters.
        #[derive(Debug, Default)]
        #[repr(align(128))]
        pub(crate) struct WorkerStats {
            $( $name: AtomicU64, )*
        }

        impl WorkerStats {
            /// Publishes the worker's running totals.
            pub(crate) fn publish(&self, c: &Counters) {
                $( self.$name.store(c.$name, Relaxed); )*
            }

            fn add_to(&self, s: &mut StatsSnapshot) {
                $( s.$name += self.$name.load(Relaxed); )*
            }
        }
    };
}

counters! {
    /// Stream connections accepted (including rejected ones).
    accepted,
    /// Stream connections accepted over `max_connections` and closed at once.
    rejected,
    /// Stream connections closed gracefully (FIN).
    closed,
    /// Stream connections aborted (RST), for any reason.
    aborted,
    /// Stream connections closed by the idle timeout.
    idle_closed,
    /// Aborts for an overlong line (`lines` mode).
    abort_line_too_long,
    /// Aborts for an oversized or truncated frame (`frames` mode).
    abort_bad_frame,
    /// Aborts because the peer stopped reading (drain timeout).
    abort_drain_timeout,
    /// Aborts because the peer reset the connection or the socket failed.
    abort_peer_reset,
    /// Aborts by the server itself (grace period over at shutdown).
    abort_local,
    /// `accept` failures for lack of file descriptors (EMFILE/ENFILE).
    accept_fd_exhausted,
    /// Other `accept` failures.
    accept_errors,
    /// Bytes read from stream connections.
    bytes_in,
    /// Bytes written to stream connections.
    bytes_out,
    /// Bytes held in session buffers now (received, not yet echoed).
    bytes_buffered,
    /// Datagrams received.
    udp_received,
    /// Datagrams echoed.
    udp_echoed,
    /// Payload bytes echoed over UDP.
    udp_echoed_bytes,
    /// Datagrams dropped: larger than the configured maximum.
    udp_oversize,
    /// Datagrams dropped: from a well-known service port (loop guard).
    udp_loop_guard,
    /// Datagrams dropped: the source exceeded its rate limit.
    udp_rate_limited,
    /// Datagrams dropped for a reason this version does not know by name.
    udp_dropped_other,
    /// Datagrams dropped: the socket send buffer was full (UDP has no
    /// backpressure, so the echo is dropped, not queued).
    udp_send_dropped,
    /// Datagrams whose echo failed with an error other than a full buffer.
    udp_send_errors,
}

impl StatsSnapshot {
    /// All UDP datagrams dropped, whatever the reason.
    pub fn udp_dropped(&self) -> u64 {
        self.udp_oversize
            + self.udp_loop_guard
            + self.udp_rate_limited
            + self.udp_dropped_other
            + self.udp_send_dropped
            + self.udp_send_errors
    }
}

/// Live counters of a running server, shared by its workers and handles.
#[derive(Debug)]
pub struct ServerStats {
    workers: Vec<WorkerStats>,
    open: AtomicUsize,
}

impl ServerStats {
    pub(crate) fn new(workers: usize) -> Self {
        ServerStats {
            workers: (0..workers).map(|_| WorkerStats::default()).collect(),
            open: AtomicUsize::new(0),
        }
    }

    /// The block worker `i` publishes into.
    pub(crate) fn worker(&self, i: usize) -> &WorkerStats {
        &self.workers[i]
    }

    /// The open-connection gauge shared by all workers (for `max_connections`).
    pub(crate) fn open(&self) -> &AtomicUsize {
        &self.open
    }

    /// Sums every worker's last published counters.
    pub fn snapshot(&self) -> StatsSnapshot {
        let mut s = StatsSnapshot {
            connections_open: self.open.load(Relaxed) as u64,
            ..StatsSnapshot::default()
        };
        for w in &self.workers {
            w.add_to(&mut s);
        }
        s
    }
}

/// The periodic stats line: `later` minus `earlier` over `elapsed`, plus gauges.
#[derive(Clone, Copy, Debug)]
pub struct StatsLine {
    /// Counters at the end of the interval.
    pub now: StatsSnapshot,
    /// Counters at its start.
    pub before: StatsSnapshot,
    /// Length of the interval.
    pub elapsed: Duration,
}

impl fmt::Display for StatsLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, b) = (&self.now, &self.before);
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
        write!(
            f,
            "open={} accepted={} rejected={} closed={} aborted={} in={:.0}B/s out={:.0}B/s buffered={}B \
             fd_exhausted={} udp_echoed={} udp_dropped[oversize={} loop_guard={} rate_limited={} send_dropped={} \
             send_errors={}]",
            n.connections_open,
            n.accepted,
            n.rejected,
            n.closed,
            n.aborted,
            rate(n.bytes_in, b.bytes_in),
            rate(n.bytes_out, b.bytes_out),
            n.bytes_buffered,
            n.accept_fd_exhausted,
            n.udp_echoed,
            n.udp_oversize,
            n.udp_loop_guard,
            n.udp_rate_limited,
            n.udp_send_dropped,
            n.udp_send_errors,
        )
    }
}
