//! Waiting for readiness or a deadline with microsecond precision, so paced
//! sends leave on time.
//!
//! `epoll_wait` (through mio) takes its timeout in whole milliseconds,
//! rounded up, plus the kernel's timer slack: a 100 us pacing deadline
//! became a 1 ms wait, and that lateness ended up in every latency the
//! probe reported. So a worker waits in two steps:
//!
//! 1. Sleep until shortly before the deadline. On Linux a `timerfd`
//!    (nanosecond resolution, no timer slack) registered in the event loop
//!    wakes it; elsewhere the poll timeout is rounded *down* to whole
//!    milliseconds.
//! 2. Spin for the rest: poll without blocking (still handling any I/O)
//!    until the deadline has passed.
//!
//! How early to wake (the *lead*) adapts to the wake-up latency actually
//! seen: it jumps to the latest overshoot (plus a margin) and decays slowly,
//! between [`MIN_LEAD`] and [`MAX_LEAD`]. On an idle machine the spin is a
//! few tens of microseconds per deadline; on a busy one it grows so sends
//! still leave on time.

use std::io;
use std::time::{Duration, Instant};

#[cfg(any(target_os = "linux", target_os = "android"))]
use mio::Token;
use mio::{Events, Poll, Registry};

/// The token of the wake-up timer in a worker's event loop (never a
/// connection's: workers skip tokens that are not theirs).
#[cfg(any(target_os = "linux", target_os = "android"))]
const WAKE: Token = Token(usize::MAX);
/// A worker wakes at least this often (to publish progress).
pub(super) const MAX_WAIT: Duration = Duration::from_millis(100);
/// The shortest lead (spin before a deadline).
pub(super) const MIN_LEAD: Duration = Duration::from_micros(20);
/// The longest lead.
pub(super) const MAX_LEAD: Duration = Duration::from_millis(1);
/// Added to an observed wake-up overshoot to make the next lead.
const MARGIN: Duration = Duration::from_micros(10);

/// Waits for events or a deadline; see the module documentation.
pub(super) struct Waiter {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    timer: Option<linux::Timer>,
    lead: Duration,
}

impl Waiter {
    /// A waiter for the event loop of `registry` (registers its timer there).
    pub(super) fn new(registry: &Registry) -> Self {
        #[cfg(not(any(target_os = "linux", target_os = "android")))]
        let _ = registry;
        Waiter {
            // Without a timer the portable fallback still works.
            #[cfg(any(target_os = "linux", target_os = "android"))]
            timer: linux::Timer::new(registry).ok(),
            lead: 4 * MIN_LEAD,
        }
    }

    /// A waiter without the timer: the portable fallback, on any system.
    #[cfg(test)]
    fn portable() -> Self {
        Waiter {
            #[cfg(any(target_os = "linux", target_os = "android"))]
            timer: None,
            lead: 4 * MIN_LEAD,
        }
    }

    /// The current lead.
    #[cfg(test)]
    pub(super) fn lead(&self) -> Duration {
        self.lead
    }

    /// Polls `poll` into `events` until readiness or `deadline` (at most
    /// [`MAX_WAIT`] from now). Returns early, with no event, once the
    /// deadline is within the lead: the caller then calls again (spinning)
    /// until its deadline has passed. Deadlines [`MAX_WAIT`] or more away
    /// need no precision: they are waited for in plain polls.
    pub(super) fn wait(
        &mut self,
        poll: &mut Poll,
        events: &mut Events,
        deadline: Option<Instant>,
    ) -> io::Result<()> {
        let now = Instant::now();
        let remaining = deadline.map_or(Duration::MAX, |d| d.saturating_duration_since(now));
        if remaining <= self.lead {
            return poll.poll(events, Some(Duration::ZERO));
        }
        if remaining >= MAX_WAIT {
            // Nothing due soon: a plain wait, no timer to set (an unpaced
            // run never touches the timer).
            return poll.poll(events, Some(MAX_WAIT));
        }
        let target = now + remaining;
        let wake_at = target - self.lead;
        #[cfg(any(target_os = "linux", target_os = "android"))]
        if let Some(timer) = &mut self.timer
            && timer.arm(wake_at, now).is_ok()
        {
            // The timer bounds the wait; the timeout is only a safety net.
            poll.poll(events, Some(MAX_WAIT + Duration::from_millis(10)))?;
            if events.iter().any(|e| e.token() == WAKE) {
                timer.fired();
                self.adapt(Instant::now().saturating_duration_since(wake_at));
            }
            return Ok(());
        }
        // Portable: whole milliseconds, rounded down, then spin.
        let coarse = wake_at.saturating_duration_since(now);
        let millis = Duration::from_millis(u64::try_from(coarse.as_millis()).unwrap_or(u64::MAX));
        poll.poll(events, Some(millis))?;
        if events.is_empty() && !millis.is_zero() {
            self.adapt(Instant::now().saturating_duration_since(now + millis));
        }
        Ok(())
    }

    /// A timed wake-up came `overshoot` after it was asked for.
    fn adapt(&mut self, overshoot: Duration) {
        let decayed = self.lead.mul_f64(63.0 / 64.0);
        self.lead = (overshoot + MARGIN).max(decayed).clamp(MIN_LEAD, MAX_LEAD);
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux {
    //! The wake-up timer: a non-blocking `timerfd` on `CLOCK_MONOTONIC`.

    use std::io;
    use std::os::fd::{AsRawFd, OwnedFd};
    use std::time::Instant;

    use mio::unix::SourceFd;
    use mio::{Interest, Registry};
    use rustix::time::{
        Itimerspec, TimerfdClockId, TimerfdFlags, TimerfdTimerFlags, Timespec, timerfd_create,
        timerfd_settime,
    };

    use super::WAKE;

    pub(super) struct Timer {
        fd: OwnedFd,
        /// When it is set to fire, if it is.
        armed: Option<Instant>,
    }

    impl Timer {
        pub(super) fn new(registry: &Registry) -> io::Result<Self> {
            let fd = timerfd_create(
                TimerfdClockId::Monotonic,
                TimerfdFlags::NONBLOCK | TimerfdFlags::CLOEXEC,
            )?;
            registry.register(&mut SourceFd(&fd.as_raw_fd()), WAKE, Interest::READABLE)?;
            Ok(Timer { fd, armed: None })
        }

        /// Makes the timer fire at `at` (`now` is the current time).
        pub(super) fn arm(&mut self, at: Instant, now: Instant) -> io::Result<()> {
            if self.armed == Some(at) {
                return Ok(());
            }
            // At least 1 ns: a zero value would disarm it.
            let d = at
                .saturating_duration_since(now)
                .max(std::time::Duration::from_nanos(1));
            let value = Itimerspec {
                it_interval: Timespec {
                    tv_sec: 0,
                    tv_nsec: 0,
                },
                it_value: Timespec {
                    tv_sec: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
                    tv_nsec: d.subsec_nanos() as _,
                },
            };
            timerfd_settime(&self.fd, TimerfdTimerFlags::empty(), &value)?;
            self.armed = Some(at);
            Ok(())
        }

        /// When it is set to fire, if it is.
        #[cfg(test)]
        pub(super) fn armed(&self) -> Option<Instant> {
            self.armed
        }

        /// The timer fired: consume its expiration count.
        pub(super) fn fired(&mut self) {
            let mut buf = [0u8; 8];
            let _ = rustix::io::read(&self.fd, &mut buf);
            self.armed = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waiter_returns_at_once_when_the_deadline_is_within_the_lead() {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let mut w = Waiter::new(poll.registry());
        let start = Instant::now();
        w.wait(&mut poll, &mut events, Some(start)).unwrap();
        assert!(events.is_empty());
        assert!(start.elapsed() < Duration::from_millis(50));
    }

    #[test]
    fn waiter_wakes_before_a_deadline_and_spinning_reaches_it() {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let mut w = Waiter::new(poll.registry());
        let deadline = Instant::now() + Duration::from_millis(5);
        let mut calls = 0;
        while Instant::now() < deadline {
            w.wait(&mut poll, &mut events, Some(deadline)).unwrap();
            calls += 1;
            assert!(calls < 10_000_000, "never reached the deadline");
        }
        // Bounded above only loosely: a busy machine may wake late.
        assert!(deadline.elapsed() < Duration::from_secs(2));
    }

    #[test]
    fn portable_waiter_sleeps_whole_milliseconds_then_spins_to_the_deadline() {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let mut w = Waiter::portable();
        let start = Instant::now();
        let deadline = start + Duration::from_millis(5);
        w.wait(&mut poll, &mut events, Some(deadline)).unwrap();
        // It slept rather than spun for the first whole milliseconds (a
        // busy machine can only make that first sleep longer).
        assert!(
            start.elapsed() >= Duration::from_millis(3),
            "the first wait returned after {:?}: it spun instead of sleeping",
            start.elapsed()
        );
        let mut calls = 1u64;
        while Instant::now() < deadline {
            w.wait(&mut poll, &mut events, Some(deadline)).unwrap();
            calls += 1;
            assert!(calls < 10_000_000, "never reached the deadline");
        }
        assert!(deadline.elapsed() < Duration::from_secs(2));
    }

    /// A poll that has an event ready at once (a woken waker): the wait
    /// returns without waiting for its deadline.
    fn ready_poll() -> (Poll, mio::Waker) {
        let poll = Poll::new().unwrap();
        let waker = mio::Waker::new(poll.registry(), mio::Token(7)).unwrap();
        waker.wake().unwrap();
        (poll, waker)
    }

    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn armed(w: &Waiter) -> Option<Instant> {
        w.timer.as_ref().expect("a timerfd").armed()
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn deadline_under_max_wait_away_arms_the_timer_a_lead_before_it() {
        let (mut poll, _waker) = ready_poll();
        let mut events = Events::with_capacity(8);
        let mut w = Waiter::new(poll.registry());
        let deadline = Instant::now() + MAX_WAIT / 2;
        w.wait(&mut poll, &mut events, Some(deadline)).unwrap();
        assert!(events.iter().any(|e| e.token() == mio::Token(7)));
        assert_eq!(armed(&w), Some(deadline - w.lead()));
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn deadline_max_wait_away_or_more_leaves_the_timer_unarmed() {
        let (mut poll, _waker) = ready_poll();
        let mut events = Events::with_capacity(8);
        let mut w = Waiter::new(poll.registry());
        let deadline = Instant::now() + 2 * MAX_WAIT;
        w.wait(&mut poll, &mut events, Some(deadline)).unwrap();
        assert!(events.iter().any(|e| e.token() == mio::Token(7)));
        assert_eq!(armed(&w), None);
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn timer_that_fired_is_consumed_and_disarmed() {
        let mut poll = Poll::new().unwrap();
        let mut events = Events::with_capacity(8);
        let mut w = Waiter::new(poll.registry());
        let deadline = Instant::now() + Duration::from_millis(5);
        // Nothing else can wake it: the timer does, or at the latest the
        // safety net, by which time the timer has long expired.
        w.wait(&mut poll, &mut events, Some(deadline)).unwrap();
        assert!(
            events.iter().any(|e| e.token() == WAKE),
            "woken by its timer"
        );
        assert_eq!(armed(&w), None, "the expiration was consumed");
    }

    #[test]
    fn portable_wait_ended_by_an_event_leaves_the_lead_alone() {
        let (mut poll, _waker) = ready_poll();
        let mut events = Events::with_capacity(8);
        let mut w = Waiter::portable();
        let before = w.lead();
        let deadline = Instant::now() + Duration::from_millis(5);
        w.wait(&mut poll, &mut events, Some(deadline)).unwrap();
        assert!(!events.is_empty());
        assert_eq!(w.lead(), before, "no timed wake-up to learn from");
    }

    #[test]
    fn lead_follows_a_late_wake_up_then_decays_within_bounds() {
        let poll = Poll::new().unwrap();
        let mut w = Waiter::new(poll.registry());
        w.adapt(Duration::from_micros(300));
        assert_eq!(w.lead(), Duration::from_micros(310));
        for _ in 0..2_000 {
            w.adapt(Duration::ZERO);
        }
        assert_eq!(w.lead(), MIN_LEAD);
        w.adapt(Duration::from_secs(1));
        assert_eq!(w.lead(), MAX_LEAD);
    }
}
