//! The connection table of a `serve` worker, the same for both backends.
//!
//! The epoll worker (`worker.rs`) and the io_uring worker (`uring/`) differ
//! only in how readiness or completions reach a connection's [`Pump`] and
//! how its socket is registered, released and reset. What they keep about
//! their set of connections is here, written once:
//!
//! - a slab of connections, each with a **generation**: slab keys are
//!   reused, so a run-queue entry or a timer left by a closed connection
//!   must never reach the next one in its slot;
//! - the **run queue** of connections whose read budget ([`BUDGET`]) ran
//!   out ([`Next::Yield`]), driven once per turn after the turn's events,
//!   so one busy peer cannot starve the others;
//! - the **timer heap** (see [`super::timer`]): each connection's next
//!   deadline, with lazy deletion and compaction;
//! - **admission** at `--max-connections` against the server-wide gauge of
//!   open connections, with its rate-limited log. A connection counts in
//!   the gauge from [`ConnTable::reserve`] until [`ConnTable::release`];
//! - the **grace period** of a graceful shutdown.
//!
//! A worker keeps a [`ConnTable`] of its own connection type (which
//! implements [`Tracked`]) and implements [`Driver`]: the steps of a turn
//! that go through every connection (run queue, timers, drain) are
//! [`Driver`]'s provided methods. The bookkeeping (generation, scheduled
//! deadline, queued) lives in the table's rows, beside the connection.

mod driver;
#[cfg(test)]
pub(super) mod tests;

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use ricochet_core::{Duration, Instant, Next, Pump, Teardown};
use slab::Slab;

use super::Shared;
use super::conn::Peer;
use super::events::LOG_EVERY;
use super::stats::{Counters, StreamKind};
use super::storage::SessionStorage;
use super::throttle::Throttle;
use super::timer::{Entry, Timers};

pub(crate) use driver::Driver;

/// Bytes a connection may read per drive before yielding (fairness).
pub(crate) const BUDGET: usize = 64 * 1024;
/// Timers fired per turn (a bound, in case a deadline keeps coming due).
pub(crate) const TIMER_BUDGET: usize = 4096;
/// Stale timer entries tolerated beyond twice the live connections before
/// the heap is compacted.
const STALE_TIMERS: usize = 1024;

/// Connections a worker holds from which prefetching their rows pays
/// (see [`ConnTable::worth_prefetching`]). Measured: a cost at 100, a
/// gain at 1,000; 256 is a pick between the two, not a measured edge.
const PREFETCH_FROM: usize = 256;

/// A connection and the table's bookkeeping of it.
#[derive(Debug)]
struct Row<C> {
    conn: C,
    /// Distinguishes this connection from earlier ones in the same slab slot.
    generation: u32,
    /// Earliest deadline this connection has in the timer heap (`Instant::MAX`: none).
    scheduled: Instant,
    /// In the run queue.
    queued: bool,
}

/// What the table needs of a backend's connection.
pub(crate) trait Tracked {
    /// The pump driving the connection's session.
    fn pump(&mut self) -> &mut Pump<SessionStorage>;
    /// When the connection must be driven again without readiness: the
    /// pump's deadline, or an earlier one of the transport's own.
    fn deadline(&self) -> Option<Instant>;
    /// Makes the coming close send RST instead of FIN.
    fn set_reset_on_close(&self);
    /// Which counters the connection counts into.
    fn kind(&self) -> StreamKind;
    /// Whether output of the backend's own is still queued in the process
    /// (TLS records rustls holds, io_uring sends not yet handed to the
    /// kernel): a close now would cut the echo short behind a clean-looking
    /// FIN, so a linger given up with this true ends in a reset instead.
    /// Default: false (a kernel socket delivers what it holds after close).
    fn undelivered(&self) -> bool {
        false
    }
    /// Whether the worker still drives it. False once released while the
    /// backend waits for the kernel to give its requests back: the drain
    /// then leaves it alone.
    fn is_live(&self) -> bool {
        true
    }
}

/// One worker's connections, their deadlines and run queue, and its share
/// of the server's connection limit. See the [module docs](self).
#[derive(Debug)]
pub(crate) struct ConnTable<C> {
    /// The worker's index (for logs).
    worker: usize,
    shared: Arc<Shared>,
    rows: Slab<Row<C>>,
    timers: Timers,
    /// Connections to drive again next turn: key and generation.
    run_queue: VecDeque<(usize, u32)>,
    next_generation: u32,
    /// Logs of rejections at `--max-connections`.
    rejected: Throttle,
    /// Set once draining: the end of the grace period.
    grace_deadline: Option<Instant>,
}

impl<C: Tracked> ConnTable<C> {
    /// An empty table for worker `worker` of the server `shared` describes.
    pub(crate) fn new(worker: usize, shared: Arc<Shared>) -> Self {
        ConnTable {
            worker,
            shared,
            rows: Slab::new(),
            timers: Timers::default(),
            run_queue: VecDeque::new(),
            next_generation: 0,
            rejected: Throttle::new(LOG_EVERY),
            grace_deadline: None,
        }
    }

    /// Connections in the table (released ones the backend still holds included).
    pub(crate) fn len(&self) -> usize {
        self.rows.len()
    }

    /// Whether the table holds no connection.
    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Connection `key`, if there is one.
    pub(crate) fn get_mut(&mut self, key: usize) -> Option<&mut C> {
        self.rows.get_mut(key).map(|r| &mut r.conn)
    }

    /// Whether prefetching rows pays: on a target with a prefetch hint,
    /// from [`PREFETCH_FROM`] connections. With few, the ready
    /// connections' rows tend to stay cached between turns and the hints
    /// only cost (BENCHMARKS.md, "Where C io_uring's lead on CPU comes
    /// from").
    pub(crate) fn worth_prefetching(&self) -> bool {
        super::prefetch::ENABLED && self.rows.len() >= PREFETCH_FROM
    }

    /// Hints that connection `key`'s row is about to be used (see
    /// [`super::prefetch`]); nothing if `key` is not a connection. Finding
    /// the row reads its first bytes (the slab's tag): a real load, which
    /// the CPU overlaps with the next key's.
    #[inline]
    pub(crate) fn prefetch(&self, key: usize) {
        if let Some(row) = self.rows.get(key) {
            super::prefetch::range(row, std::mem::size_of::<Row<C>>());
        }
    }

    /// Connection `key`, if there is one.
    // Used by the io_uring worker (Linux only) to prefetch.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn get(&self, key: usize) -> Option<&C> {
        self.rows.get(key).map(|r| &r.conn)
    }

    /// Connection `key` and its generation: with the key, what tells it
    /// from a later connection in the same slot (see [`ConnTable::get_current`]).
    // Used by the io_uring worker (Linux only) for receives waiting for buffers.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn get_tagged(&mut self, key: usize) -> Option<(&mut C, u32)> {
        self.rows.get_mut(key).map(|r| (&mut r.conn, r.generation))
    }

    /// Connection `key` if it is still the one of generation `generation`.
    #[cfg_attr(not(target_os = "linux"), allow(dead_code))]
    pub(crate) fn get_current(&mut self, key: usize, generation: u32) -> Option<&mut C> {
        self.rows
            .get_mut(key)
            .filter(|r| r.generation == generation)
            .map(|r| &mut r.conn)
    }

    /// The keys of every connection now (a copy: driving may release some).
    pub(crate) fn keys(&self) -> Vec<usize> {
        self.rows.iter().map(|(k, _)| k).collect()
    }

    /// Every connection.
    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut C> {
        self.rows.iter_mut().map(|(_, r)| &mut r.conn)
    }

    /// Whether the server is shutting down gracefully (the grace period runs).
    pub(crate) fn is_draining(&self) -> bool {
        self.grace_deadline.is_some()
    }

    /// Whether connections wait in the run queue (the worker must not sleep).
    pub(crate) fn has_queued(&self) -> bool {
        !self.run_queue.is_empty()
    }

    /// The earliest instant the table needs a turn at: the first timer
    /// (live or stale) or the end of the grace period.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        ricochet_core::time::earliest(self.timers.next_deadline(), self.grace_deadline)
    }

    /// How long the worker may wait for events at `now` (when it has no
    /// work left over): until [`ConnTable::next_deadline`] or the earliest
    /// of `others` (the backend's own deadlines: paused listeners). `None`:
    /// no deadline at all.
    pub(crate) fn wait_limit(
        &self,
        others: impl IntoIterator<Item = Instant>,
        now: Instant,
    ) -> Option<std::time::Duration> {
        let next = others.into_iter().fold(self.next_deadline(), |a, b| {
            ricochet_core::time::earliest(a, Some(b))
        });
        next.map(|t| t.saturating_since(now).into())
    }

    /// Counts a new connection into the server-wide open gauge if
    /// `--max-connections` leaves room. If not, counts it as rejected,
    /// logs that (rate-limited) and returns false: the caller closes it.
    /// On true, the caller must [`ConnTable::insert`] it or
    /// [`ConnTable::unreserve`].
    pub(crate) fn reserve(
        &mut self,
        kind: StreamKind,
        peer: &Peer,
        now: Instant,
        counters: &mut Counters,
    ) -> bool {
        let open = self.shared.stats.open();
        let limit = self.shared.settings.max_connections;
        if open.fetch_add(1, Relaxed) < limit {
            return true;
        }
        open.fetch_sub(1, Relaxed);
        counters.stream(kind).rejected += 1;
        if let Some(suppressed) = self.rejected.admit(now) {
            tracing::warn!(
                %peer,
                limit,
                suppressed,
                "connection rejected: --max-connections reached, counting connections \
                 still finishing their close (ricochet_stream_sockets_open); raise it, \
                 or the open-file limit it is derived from"
            );
        }
        false
    }

    /// Gives back what [`ConnTable::reserve`] counted (the connection
    /// could not be set up).
    pub(crate) fn unreserve(&mut self) {
        self.shared.stats.open().fetch_sub(1, Relaxed);
    }

    /// The key the next [`ConnTable::insert`] will use.
    pub(crate) fn vacant_key(&self) -> usize {
        self.rows.vacant_key()
    }

    /// Adds a connection [`ConnTable::reserve`] admitted: counts it as
    /// accepted, gives it a session (closed at once while draining: what
    /// it sends is still echoed) and a fresh generation, and builds it
    /// around that session with `make`. Returns its key; the worker then
    /// calls [`Driver::opened`].
    pub(crate) fn insert(
        &mut self,
        kind: StreamKind,
        peer: Peer,
        now: Instant,
        counters: &mut Counters,
        make: impl FnOnce(Pump<SessionStorage>) -> C,
    ) -> usize {
        counters.stream(kind).accepted += 1;
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        let storage = SessionStorage::new(self.shared.settings.buffer_size);
        let mut pump = Pump::new(storage, self.shared.settings.session, now);
        if self.is_draining() {
            pump.close_when_idle();
        }
        let key = self.rows.insert(Row {
            conn: make(pump),
            generation,
            scheduled: Instant::MAX,
            queued: false,
        });
        tracing::debug!(%peer, "connection opened");
        key
    }

    /// Takes connection `key` out and hands it to `close` (dropping it
    /// closes its socket: FIN, or RST after [`Tracked::set_reset_on_close`]);
    /// then it no longer counts as open.
    pub(crate) fn release(&mut self, key: usize, close: impl FnOnce(C)) {
        if let Some(row) = self.rows.try_remove(key) {
            close(row.conn);
            self.shared.stats.open().fetch_sub(1, Relaxed);
        }
    }

    /// [`ConnTable::release`] of every connection.
    pub(crate) fn release_all(&mut self, mut close: impl FnMut(C)) {
        for key in self.keys() {
            self.release(key, &mut close);
        }
    }

    /// Worker exit (an abort: no more I/O): stops every live connection's
    /// pump, counting it ([`Pump::stop`]: a running session as aborted, a
    /// linger as cut short), and makes those whose session still ran, and
    /// those lingering with echo still queued here
    /// ([`Tracked::undelivered`]), reset on close (an echo cut off must
    /// not look complete).
    pub(crate) fn reset_unfinished(&mut self, now: Instant, counters: &mut Counters) {
        for conn in self.iter_mut() {
            if conn.is_live() {
                let kind = conn.kind();
                let reset = match conn.pump().stop(now, counters.stream(kind)) {
                    Some(Teardown::Reset) => true,
                    Some(Teardown::Abandon) => conn.undelivered(),
                    _ => false,
                };
                if reset {
                    conn.set_reset_on_close();
                }
            }
        }
    }

    /// Files connection `key` after a drive by what its pump returned:
    /// [`Next::Wait`] schedules its deadline; [`Next::Yield`] also queues
    /// it for the next turn (once). [`Next::Release`] is returned: the
    /// caller releases the connection its own way.
    pub(crate) fn file(&mut self, key: usize, next: Next) -> Option<Teardown> {
        match next {
            Next::Wait { .. } => self.schedule(key),
            Next::Yield => {
                if let Some(row) = self.rows.get_mut(key)
                    && !row.queued
                {
                    row.queued = true;
                    self.run_queue.push_back((key, row.generation));
                }
                self.schedule(key);
            }
            Next::Release(how) => return Some(how),
        }
        None
    }

    /// Makes sure the heap holds connection `key`'s next deadline (see
    /// [`super::timer`]): pushes only when it wants an earlier one than it has.
    pub(crate) fn schedule(&mut self, key: usize) {
        let Some(row) = self.rows.get_mut(key) else {
            return;
        };
        let want = row.conn.deadline().unwrap_or(Instant::MAX);
        if want < row.scheduled {
            row.scheduled = want;
            self.timers.push(Entry {
                deadline: want,
                key,
                generation: row.generation,
            });
        }
    }

    /// Connections in the run queue now: one turn serves this many.
    fn queued(&self) -> usize {
        self.run_queue.len()
    }

    /// Takes the head of the run queue: its key if it is still the
    /// connection that was queued, `None` if that one is gone (or the
    /// queue is empty).
    fn pop_queued(&mut self) -> Option<usize> {
        let (key, generation) = self.run_queue.pop_front()?;
        let row = self.rows.get_mut(key)?;
        if row.generation != generation {
            return None;
        }
        row.queued = false;
        Some(key)
    }

    /// Takes the earliest timer if it is due at `now`: `None` if none is,
    /// else `Some` of the key to drive, or `Some(None)` for a stale entry
    /// (its connection is gone, or scheduled another deadline since).
    fn pop_due(&mut self, now: Instant) -> Option<Option<usize>> {
        let entry = self.timers.pop_due(now)?;
        let Some(row) = self.rows.get_mut(entry.key) else {
            return Some(None);
        };
        if row.generation != entry.generation || row.scheduled != entry.deadline {
            return Some(None);
        }
        row.scheduled = Instant::MAX;
        Some(Some(entry.key))
    }

    /// Drops stale timer entries once they outnumber the connections (so
    /// the heap stays proportional to them).
    fn compact_timers(&mut self) {
        if self.timers.len() > 2 * self.rows.len() + STALE_TIMERS {
            let rows = &self.rows;
            self.timers.retain(|e| {
                rows.get(e.key)
                    .is_some_and(|r| r.generation == e.generation && r.scheduled == e.deadline)
            });
        }
    }

    /// Starts the grace period at `now`.
    fn start_grace(&mut self, now: Instant) {
        let grace: Duration = self.shared.settings.grace.into();
        self.grace_deadline = Some(now + grace);
    }
}
