//! Per-thread deadlines of many connections: a binary heap with lazy deletion.
//!
//! Each connection has at most one *live* entry (`scheduled[idx]`). Moving a
//! deadline later leaves the entry in place: it fires early and the caller
//! simply schedules again. Moving it earlier pushes a new entry and the old
//! one becomes stale, skipped when popped. The heap is rebuilt when stale
//! entries outnumber live ones, so its size stays bounded.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use ricochet_core::Instant;

pub(super) struct Timers {
    heap: BinaryHeap<Reverse<(Instant, usize)>>,
    scheduled: Vec<Option<Instant>>,
}

impl Timers {
    pub(super) fn new(n: usize) -> Self {
        Timers {
            heap: BinaryHeap::with_capacity(n),
            scheduled: vec![None; n],
        }
    }

    /// Sets connection `idx`'s next deadline (`None`: no deadline).
    pub(super) fn schedule(&mut self, idx: usize, at: Option<Instant>) {
        let Some(slot) = self.scheduled.get_mut(idx) else {
            return;
        };
        match (at, *slot) {
            (None, _) => *slot = None,
            // The live entry fires no later than needed; it is rescheduled then.
            (Some(t), Some(s)) if s <= t => {}
            (Some(t), _) => {
                *slot = Some(t);
                self.heap.push(Reverse((t, idx)));
                if self.heap.len() > 2 * self.scheduled.len() + 64 {
                    self.rebuild();
                }
            }
        }
    }

    /// The earliest live deadline, if any.
    pub(super) fn next(&mut self) -> Option<Instant> {
        while let Some(&Reverse((t, idx))) = self.heap.peek() {
            if self.scheduled.get(idx) == Some(&Some(t)) {
                return Some(t);
            }
            self.heap.pop();
        }
        None
    }

    /// Pops one connection whose deadline is at or before `now`; its entry is
    /// consumed, so the caller must schedule it again.
    pub(super) fn pop_due(&mut self, now: Instant) -> Option<usize> {
        while let Some(&Reverse((t, idx))) = self.heap.peek() {
            if t > now {
                return None;
            }
            self.heap.pop();
            if let Some(slot) = self.scheduled.get_mut(idx)
                && *slot == Some(t)
            {
                *slot = None;
                return Some(idx);
            }
        }
        None
    }

    fn rebuild(&mut self) {
        self.heap.clear();
        for (idx, s) in self.scheduled.iter().enumerate() {
            if let Some(t) = *s {
                self.heap.push(Reverse((t, idx)));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: u64) -> Option<Instant> {
        Some(Instant::from_millis(ms))
    }

    #[test]
    fn timers_pop_in_deadline_order() {
        let mut t = Timers::new(3);
        t.schedule(0, at(30));
        t.schedule(1, at(10));
        t.schedule(2, at(20));
        assert_eq!(t.next(), at(10));
        let now = Instant::from_millis(25);
        assert_eq!(t.pop_due(now), Some(1));
        assert_eq!(t.pop_due(now), Some(2));
        assert_eq!(t.pop_due(now), None);
        assert_eq!(t.next(), at(30));
    }

    #[test]
    fn timers_earlier_deadline_makes_old_entry_stale() {
        let mut t = Timers::new(1);
        t.schedule(0, at(50));
        t.schedule(0, at(10));
        assert_eq!(t.pop_due(Instant::from_millis(10)), Some(0));
        // The stale 50 ms entry never fires.
        assert_eq!(t.pop_due(Instant::from_millis(60)), None);
    }

    #[test]
    fn timers_later_deadline_fires_early_once() {
        let mut t = Timers::new(1);
        t.schedule(0, at(10));
        t.schedule(0, at(50));
        assert_eq!(t.pop_due(Instant::from_millis(10)), Some(0));
        t.schedule(0, at(50));
        assert_eq!(t.pop_due(Instant::from_millis(20)), None);
        assert_eq!(t.next(), at(50));
    }

    #[test]
    fn timers_cleared_entry_never_fires() {
        let mut t = Timers::new(1);
        t.schedule(0, at(10));
        t.schedule(0, None);
        assert_eq!(t.pop_due(Instant::from_millis(20)), None);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn timers_heap_stays_bounded() {
        let mut t = Timers::new(2);
        for ms in (1..10_000).rev() {
            t.schedule(0, at(ms));
            assert!(t.heap.len() <= 2 * 2 + 64 + 1, "{} entries", t.heap.len());
        }
        assert_eq!(t.next(), at(1));
    }

    #[test]
    fn timers_keep_stale_entries_until_they_outnumber_the_live_ones() {
        // Rebuilding is O(n): it waits until the stale entries, moved
        // earlier one at a time, are as many as the live ones (plus 64).
        let n = 1_000;
        let mut t = Timers::new(n);
        for idx in 0..n {
            t.schedule(idx, at(100_000));
        }
        for idx in 0..n / 2 {
            t.schedule(idx, at(50_000));
        }
        assert_eq!(t.heap.len(), n + n / 2, "no rebuild yet");
        for idx in 0..n {
            t.schedule(idx, at(10_000));
        }
        assert!(t.heap.len() <= 2 * n + 64 + 1, "{} entries", t.heap.len());
        assert!(
            t.heap.len() < n + n / 2 + n,
            "rebuilt: {} entries",
            t.heap.len()
        );
        assert_eq!(t.pop_due(Instant::from_millis(10_000)), Some(0));
    }
}
