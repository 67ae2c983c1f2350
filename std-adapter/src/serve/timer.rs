//! Per-worker deadlines: a min-heap with lazy deletion.
//!
//! Each connection keeps in `scheduled` the earliest deadline it has in the
//! heap. A connection pushes only when its session wants an *earlier*
//! deadline; a later one (the usual case: traffic pushes the idle deadline
//! back) costs nothing, because the old entry simply fires early, the
//! session ignores the early `handle_timeout`, and the connection then
//! schedules its real deadline. Entries of closed connections, or superseded
//! ones, are skipped when popped. The heap is compacted when stale entries
//! outnumber live connections, so its size stays proportional to them.
//! Nothing scans all connections on a wakeup.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use ricochet_core::Instant;

/// A deadline for the connection in slab slot `key`, generation `generation`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Entry {
    /// When it fires.
    pub(crate) deadline: Instant,
    /// Slab key of the connection.
    pub(crate) key: usize,
    /// Generation of the connection (slab keys are reused).
    pub(crate) generation: u32,
}

/// The heap of deadlines of one worker.
#[derive(Debug, Default)]
pub(crate) struct Timers {
    heap: BinaryHeap<Reverse<Entry>>,
}

impl Timers {
    /// Adds a deadline.
    pub(crate) fn push(&mut self, entry: Entry) {
        self.heap.push(Reverse(entry));
    }

    /// The earliest deadline, live or stale.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse(e)| e.deadline)
    }

    /// Removes and returns the earliest entry if it is due at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<Entry> {
        match self.heap.peek() {
            Some(Reverse(e)) if e.deadline <= now => self.heap.pop().map(|Reverse(e)| e),
            _ => None,
        }
    }

    /// Number of entries (live and stale).
    pub(crate) fn len(&self) -> usize {
        self.heap.len()
    }

    /// Keeps only the entries `live` accepts (O(n); call when stale ones pile up).
    pub(crate) fn retain(&mut self, mut live: impl FnMut(&Entry) -> bool) {
        self.heap.retain(|Reverse(e)| live(e));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(ms: u64, key: usize) -> Entry {
        Entry {
            deadline: Instant::from_millis(ms),
            key,
            generation: 0,
        }
    }

    #[test]
    fn timers_pop_due_in_deadline_order_only() {
        let mut t = Timers::default();
        t.push(entry(30, 3));
        t.push(entry(10, 1));
        t.push(entry(20, 2));
        assert_eq!(t.next_deadline(), Some(Instant::from_millis(10)));
        assert_eq!(t.pop_due(Instant::from_millis(5)), None);
        assert_eq!(t.pop_due(Instant::from_millis(25)).map(|e| e.key), Some(1));
        assert_eq!(t.pop_due(Instant::from_millis(25)).map(|e| e.key), Some(2));
        assert_eq!(t.pop_due(Instant::from_millis(25)), None);
        t.retain(|e| e.key != 3);
        assert_eq!(t.len(), 0);
    }
}
