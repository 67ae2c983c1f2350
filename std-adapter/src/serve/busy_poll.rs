//! Busy polling: how long a worker checks for new events in a loop before
//! it goes to sleep, chosen from how long its recent waits were.
//!
//! A worker that sleeps is woken by the kernel when data arrives; that
//! wake-up (an inter-processor interrupt, a CPU leaving idle, on a virtual
//! machine an exit to the hypervisor) can cost more than the echo itself.
//! A worker that was busy a moment ago may rather spin for a few
//! microseconds: if the next event comes within the spin, nobody sleeps.
//!
//! The window adapts as Linux's `haltpoll` governor does, on the *gap*: the
//! time from the start of a wait to its event, spin and sleep together.
//! - a gap within the limit: spinning pays (or would have); the window grows
//!   (from a quarter of the limit, doubling) up to the limit;
//! - a gap past the limit: spinning could not have caught it; the window
//!   halves, and under a quarter of the limit it is off.
//!
//! So traffic sparser than the limit settles at no spinning at all, an idle
//! worker never spins (its first long sleep turns spinning off), and the CPU
//! spent spinning per event is at most the limit. With the limit at zero
//! (`--busy-poll 0`) the policy never spins.
//!
//! The policy is shared by both workers; each supplies its own "anything
//! ready?" check (a non-blocking `epoll_wait`, the completion ring).

use std::time::{Duration, Instant};

/// One worker's busy-poll window.
#[derive(Clone, Debug)]
pub(crate) struct BusyPoll {
    limit: Duration,
    window: Duration,
}

impl BusyPoll {
    /// A policy spinning at most `limit` per wait (zero: never). It starts
    /// off and turns on after the first wait that ends within `limit`.
    pub(crate) fn new(limit: Duration) -> BusyPoll {
        BusyPoll {
            limit,
            window: Duration::ZERO,
        }
    }

    /// How long to spin before the next sleep, at most `deadline` (the
    /// time left before the worker must wake anyway; `None`: no deadline).
    pub(crate) fn window(&self, deadline: Option<Duration>) -> Duration {
        match deadline {
            Some(d) => self.window.min(d),
            None => self.window,
        }
    }

    /// One wait of a worker through its `poll`: `poll(Some(ZERO))` must
    /// not block and answers whether events are ready; `poll(deadline)`
    /// blocks until events come or the deadline passes. Spins on the first
    /// for the window, then, if nothing came, sleeps in the second. With a
    /// deadline of zero (work left over) it only checks, and records
    /// nothing. An error of `poll` ends the wait at once.
    pub(crate) fn wait<E>(
        &mut self,
        deadline: Option<Duration>,
        mut poll: impl FnMut(Option<Duration>) -> Result<bool, E>,
    ) -> Result<(), E> {
        if deadline == Some(Duration::ZERO) {
            return poll(deadline).map(drop);
        }
        let window = self.window(deadline);
        let start = Instant::now();
        if !window.is_zero() {
            loop {
                if poll(Some(Duration::ZERO))? {
                    self.record(start.elapsed());
                    return Ok(());
                }
                if start.elapsed() >= window {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        poll(deadline)?;
        let gap = start.elapsed();
        match deadline {
            // Woken by the deadline, not by an event: a gap of at least the
            // deadline, which says something only if that is past the limit.
            Some(d) if gap >= d && d <= self.limit => {}
            _ => self.record(gap),
        }
        Ok(())
    }

    /// Records a wait whose event came `gap` after the wait began (spin and
    /// sleep together). Waits cut short by a deadline are not recorded.
    pub(crate) fn record(&mut self, gap: Duration) {
        if self.limit.is_zero() {
            return;
        }
        let start = self.limit / 4;
        self.window = if gap <= self.limit {
            (self.window * 2).clamp(start, self.limit)
        } else {
            let half = self.window / 2;
            if half < start { Duration::ZERO } else { half }
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_micros(40);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    #[test]
    fn new_policy_does_not_spin_before_a_short_gap() {
        let p = BusyPoll::new(LIMIT);
        assert_eq!(p.window(None), Duration::ZERO);
    }

    #[test]
    fn short_gaps_grow_the_window_to_the_limit() {
        let mut p = BusyPoll::new(LIMIT);
        p.record(us(5));
        assert_eq!(p.window(None), us(10));
        p.record(us(5));
        assert_eq!(p.window(None), us(20));
        p.record(us(5));
        p.record(us(5));
        assert_eq!(p.window(None), LIMIT);
    }

    #[test]
    fn long_gaps_halve_the_window_then_turn_it_off() {
        let mut p = BusyPoll::new(LIMIT);
        for _ in 0..4 {
            p.record(us(1));
        }
        p.record(us(500));
        assert_eq!(p.window(None), us(20));
        p.record(us(500));
        assert_eq!(p.window(None), us(10));
        p.record(us(500));
        assert_eq!(p.window(None), Duration::ZERO);
        p.record(us(500));
        assert_eq!(p.window(None), Duration::ZERO);
    }

    #[test]
    fn gaps_just_past_the_limit_settle_at_no_spinning() {
        let mut p = BusyPoll::new(LIMIT);
        for _ in 0..4 {
            p.record(us(1));
        }
        for _ in 0..8 {
            p.record(LIMIT + us(1));
        }
        assert_eq!(p.window(None), Duration::ZERO);
    }

    #[test]
    fn window_never_passes_the_deadline() {
        let mut p = BusyPoll::new(LIMIT);
        for _ in 0..4 {
            p.record(us(1));
        }
        assert_eq!(p.window(Some(us(3))), us(3));
        assert_eq!(p.window(Some(Duration::ZERO)), Duration::ZERO);
        assert_eq!(p.window(Some(us(1000))), LIMIT);
    }

    /// A policy whose window is open (a long limit: no test depends on speed).
    fn spinning() -> BusyPoll {
        let mut p = BusyPoll::new(Duration::from_secs(60));
        p.record(Duration::ZERO);
        p
    }

    #[test]
    fn open_window_checks_until_events_come_without_sleeping() {
        let mut p = spinning();
        let mut calls = Vec::new();
        let r: Result<(), ()> = p.wait(None, |t| {
            calls.push(t);
            Ok(calls.len() == 3)
        });
        assert_eq!(r, Ok(()));
        assert_eq!(calls, vec![Some(Duration::ZERO); 3]);
    }

    #[test]
    fn closed_window_sleeps_at_once_until_the_deadline() {
        let mut p = BusyPoll::new(LIMIT);
        let mut calls = Vec::new();
        let r: Result<(), ()> = p.wait(Some(us(700)), |t| {
            calls.push(t);
            Ok(true)
        });
        assert_eq!(r, Ok(()));
        assert_eq!(calls, vec![Some(us(700))]);
    }

    #[test]
    fn work_left_over_only_checks_and_leaves_the_window_alone() {
        let mut p = BusyPoll::new(LIMIT);
        let mut calls = 0;
        let r: Result<(), ()> = p.wait(Some(Duration::ZERO), |t| {
            assert_eq!(t, Some(Duration::ZERO));
            calls += 1;
            Ok(false)
        });
        assert_eq!((r, calls), (Ok(()), 1));
        assert_eq!(p.window(None), Duration::ZERO);
    }

    #[test]
    fn poll_error_ends_the_wait_at_once() {
        let mut p = spinning();
        let mut calls = 0;
        let r = p.wait(None, |_| {
            calls += 1;
            Err("epoll_wait failed")
        });
        assert_eq!((r, calls), (Err("epoll_wait failed"), 1));
    }

    #[test]
    fn sleep_ended_by_an_event_opens_the_window() {
        let mut p = BusyPoll::new(Duration::from_secs(60));
        let r: Result<(), ()> = p.wait(None, |_| Ok(true));
        assert_eq!(r, Ok(()));
        assert_eq!(p.window(None), Duration::from_secs(15));
    }

    #[test]
    fn zero_limit_never_spins() {
        let mut p = BusyPoll::new(Duration::ZERO);
        for _ in 0..10 {
            p.record(Duration::ZERO);
        }
        assert_eq!(p.window(None), Duration::ZERO);
    }
}
