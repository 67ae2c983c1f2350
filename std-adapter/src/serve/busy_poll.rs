//! Busy polling (`--busy-poll`, off by default): how long a worker checks
//! for new events in a loop before it goes to sleep, chosen from what its
//! recent spins found.
//!
//! A worker that sleeps is woken by the kernel when data arrives; that
//! wake-up (an inter-processor interrupt, a CPU leaving idle, on a virtual
//! machine an exit to the hypervisor) can cost more than the echo itself.
//! A worker that was busy a moment ago may rather spin for a few
//! microseconds: if the next event comes within the spin, nobody sleeps.
//!
//! The window adapts on what the spins find:
//! - an event caught while spinning: the pattern is fast; the window opens
//!   fully (to the limit);
//! - a spin that caught nothing (the worker slept after it): the window
//!   halves, and under a quarter of the limit it closes;
//! - while closed, one wait in [`PROBE_EVERY`] spins the whole limit again,
//!   so traffic that sped up is noticed.
//!
//! A slept gap cannot steer it: it includes the wake-up the spin is there
//! to avoid (tens of microseconds on a virtual machine), so at one message
//! per round trip every slept gap looks too long to be worth a spin.
//!
//! So traffic sparser than the limit costs at most one spin per
//! [`PROBE_EVERY`] events after the first few, an idle worker spins at most
//! once (after its last event), and a spin never passes the limit. With the
//! limit at zero (the default) the policy never spins.
//!
//! It is off by default because the spin costs CPU and batching: on one
//! bulk stream a spin catches each completion alone where a sleep lets
//! them pile up, and under a UDP flood other clients lose more datagrams
//! (BENCHMARKS.md, "Busy polling").
//!
//! The policy is shared by both workers; each supplies its own "anything
//! ready?" check (a non-blocking `epoll_wait`, the completion ring).

use std::time::{Duration, Instant};

/// While the window is closed, one wait in this many spins the whole limit.
const PROBE_EVERY: u32 = 32;

/// One worker's busy-poll window.
#[derive(Clone, Debug)]
pub(crate) struct BusyPoll {
    limit: Duration,
    window: Duration,
    /// Waits since the window closed.
    closed_for: u32,
}

impl BusyPoll {
    /// A policy spinning at most `limit` per wait (zero: never), starting open.
    pub(crate) fn new(limit: Duration) -> BusyPoll {
        BusyPoll {
            limit,
            window: limit,
            closed_for: 0,
        }
    }

    /// How long to spin before the next sleep, at most `deadline` (the
    /// time left before the worker must wake anyway; `None`: no deadline).
    fn window(&self, deadline: Option<Duration>) -> Duration {
        let window = if self.window.is_zero() && self.closed_for >= PROBE_EVERY {
            self.limit
        } else {
            self.window
        };
        match deadline {
            Some(d) => window.min(d),
            None => window,
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
        mut deadline: Option<Duration>,
        mut poll: impl FnMut(Option<Duration>) -> Result<bool, E>,
    ) -> Result<(), E> {
        if deadline == Some(Duration::ZERO) {
            return poll(deadline).map(drop);
        }
        let window = self.window(deadline);
        if window.is_zero() {
            self.record(Spin::None);
        } else {
            let start = Instant::now();
            loop {
                if poll(Some(Duration::ZERO))? {
                    self.record(Spin::Caught);
                    return Ok(());
                }
                if start.elapsed() >= window {
                    break;
                }
                std::hint::spin_loop();
            }
            self.record(Spin::Missed);
            // The sleep keeps the deadline the wait was given.
            deadline = deadline.map(|d| d.saturating_sub(start.elapsed()));
        }
        poll(deadline).map(drop)
    }

    /// Records what a wait's spin found.
    fn record(&mut self, spin: Spin) {
        if self.limit.is_zero() {
            return;
        }
        match spin {
            Spin::Caught => {
                self.window = self.limit;
                self.closed_for = 0;
            }
            Spin::Missed => {
                let half = self.window / 2;
                self.window = if half < self.limit / 4 {
                    Duration::ZERO
                } else {
                    half
                };
                self.closed_for = 0;
            }
            Spin::None => self.closed_for = self.closed_for.saturating_add(1),
        }
    }
}

/// What a wait's spin found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Spin {
    /// Events came while spinning.
    Caught,
    /// The spin ran its window out; the worker slept.
    Missed,
    /// The window was closed: no spin.
    None,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMIT: Duration = Duration::from_micros(40);

    fn us(n: u64) -> Duration {
        Duration::from_micros(n)
    }

    /// A policy whose window was closed by misses.
    fn closed() -> BusyPoll {
        let mut p = BusyPoll::new(LIMIT);
        for _ in 0..3 {
            p.record(Spin::Missed);
        }
        assert_eq!(p.window(None), Duration::ZERO);
        p
    }

    #[test]
    fn new_policy_spins_the_whole_limit() {
        assert_eq!(BusyPoll::new(LIMIT).window(None), LIMIT);
    }

    #[test]
    fn misses_halve_the_window_then_close_it() {
        let mut p = BusyPoll::new(LIMIT);
        p.record(Spin::Missed);
        assert_eq!(p.window(None), us(20));
        p.record(Spin::Missed);
        assert_eq!(p.window(None), us(10));
        p.record(Spin::Missed);
        assert_eq!(p.window(None), Duration::ZERO);
    }

    #[test]
    fn caught_event_opens_the_window_fully() {
        let mut p = BusyPoll::new(LIMIT);
        p.record(Spin::Missed);
        p.record(Spin::Caught);
        assert_eq!(p.window(None), LIMIT);
    }

    #[test]
    fn closed_window_probes_the_whole_limit_once_in_probe_every_waits() {
        let mut p = closed();
        for _ in 0..PROBE_EVERY {
            assert_eq!(p.window(None), Duration::ZERO);
            p.record(Spin::None);
        }
        assert_eq!(p.window(None), LIMIT);
        // A probe that misses closes it for another round.
        p.record(Spin::Missed);
        assert_eq!(p.window(None), Duration::ZERO);
        for _ in 0..PROBE_EVERY {
            p.record(Spin::None);
        }
        // One that catches opens it.
        p.record(Spin::Caught);
        assert_eq!(p.window(None), LIMIT);
    }

    #[test]
    fn window_never_passes_the_deadline() {
        let p = BusyPoll::new(LIMIT);
        assert_eq!(p.window(Some(us(3))), us(3));
        assert_eq!(p.window(Some(Duration::ZERO)), Duration::ZERO);
        assert_eq!(p.window(Some(us(1000))), LIMIT);
    }

    #[test]
    fn zero_limit_never_spins() {
        let mut p = BusyPoll::new(Duration::ZERO);
        for spin in [Spin::Caught, Spin::Missed, Spin::None].repeat(PROBE_EVERY as usize) {
            p.record(spin);
            assert_eq!(p.window(None), Duration::ZERO);
        }
    }

    #[test]
    fn open_window_checks_until_events_come_without_sleeping() {
        // A long limit: no outcome depends on the machine's speed.
        let mut p = BusyPoll::new(Duration::from_secs(60));
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
        let mut p = closed();
        let mut calls = Vec::new();
        let r: Result<(), ()> = p.wait(Some(us(700)), |t| {
            calls.push(t);
            Ok(true)
        });
        assert_eq!(r, Ok(()));
        assert_eq!(calls, vec![Some(us(700))]);
    }

    #[test]
    fn spin_that_runs_out_sleeps_and_halves_the_window() {
        let mut p = BusyPoll::new(us(1));
        let mut calls = Vec::new();
        let r: Result<(), ()> = p.wait(None, |t| {
            calls.push(t);
            Ok(t.is_none())
        });
        assert_eq!(r, Ok(()));
        assert_eq!(calls.last(), Some(&None), "{calls:?}");
        assert!(
            calls[..calls.len() - 1]
                .iter()
                .all(|t| *t == Some(Duration::ZERO))
        );
        assert_eq!(p.window(None), Duration::from_nanos(500));
    }

    #[test]
    fn sleep_after_a_spin_keeps_the_deadline_of_the_wait() {
        let mut p = BusyPoll::new(us(200));
        let mut calls = Vec::new();
        let deadline = Duration::from_secs(5);
        let r: Result<(), ()> = p.wait(Some(deadline), |t| {
            calls.push(t);
            Ok(t != Some(Duration::ZERO))
        });
        assert_eq!(r, Ok(()));
        let Some(&Some(slept)) = calls.last() else {
            panic!("no sleep: {calls:?}")
        };
        // The spin ran its whole 200us window out before the sleep.
        assert!(
            slept <= deadline - us(200) && slept > deadline - Duration::from_secs(1),
            "slept {slept:?} after a 200us spin in a 5s wait"
        );
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
        assert_eq!(p.window(None), LIMIT);
    }

    #[test]
    fn poll_error_ends_the_wait_at_once() {
        let mut p = BusyPoll::new(Duration::from_secs(60));
        let mut calls = 0;
        let r = p.wait(None, |_| {
            calls += 1;
            Err("epoll_wait failed")
        });
        assert_eq!((r, calls), (Err("epoll_wait failed"), 1));
    }
}
