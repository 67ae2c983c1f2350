//! The arithmetic of a tickless SysTick: a 64-bit count of core cycles made
//! from 24-bit down-counter periods, the one-shot plan for a deadline, and
//! the conversions to and from microseconds. No hardware here: the SysTick
//! glue (`systick.rs`) feeds it register values, and the tests feed it a
//! simulated counter.
//!
//! SysTick counts `reload, reload - 1, ..., 0` (one value per cycle), then
//! loads the reload register again and pends its exception: a period lasts
//! `reload + 1` cycles. The handler accounts for each period; reads in
//! between add how far the counter has come down. A period is as long as the
//! 24-bit register allows (0.67 s at 25 MHz) unless a deadline comes sooner,
//! so an idle core wakes a few times a second instead of 1000.

/// SysTick's reload register is 24 bits wide.
pub(crate) const RELOAD_MAX: u32 = (1 << 24) - 1;
/// The shortest one-shot period: shorter deadlines wake slightly late
/// rather than keep the core in the exception handler.
pub(crate) const RELOAD_MIN: u32 = 255;

const MICROS_PER_SEC: u64 = 1_000_000;

/// SysTick's registers as the timeline reads and writes them: the glue
/// implements this on the hardware, the tests on a simulated counter, so
/// the order of the accesses ([`Timeline::read`],
/// [`Timeline::restart`]) is written once and tested.
pub(crate) trait Counter {
    /// SYST_CVR: the counter.
    fn current(&mut self) -> u32;
    /// Whether the SysTick exception is pending (ICSR.PENDSTSET).
    fn pending(&mut self) -> bool;
    /// Writes SYST_RVR, the value the counter loads at its next wrap.
    fn set_reload(&mut self, reload: u32);
    /// Writes SYST_CVR (which clears the counter: it loads the reload
    /// register on the next cycle), then clears a pending exception.
    fn clear(&mut self);
}

/// Where the cycle count stands. `Copy`, so the glue can keep it in a
/// `Cell` under a critical section.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Timeline {
    /// Core clock, Hz.
    hz: u32,
    /// Cycles before the current period began.
    start: u64,
    /// The current period's reload (it lasts `current + 1` cycles).
    current: u32,
    /// What the counter loads at the end of the current period (the reload
    /// register's value).
    next: u32,
    /// The largest count handed out: time never goes back, whatever a race
    /// between a read and a wrap did.
    last: u64,
}

impl Timeline {
    /// Before the clock starts: all zero (so its `static` is in `.bss`),
    /// and every read is cycle 0.
    pub(crate) const STOPPED: Timeline = Timeline {
        hz: 0,
        start: 0,
        current: 0,
        next: 0,
        last: 0,
    };

    /// The counter just started from `RELOAD_MAX` at cycle 0.
    pub(crate) const fn new(hz: u32) -> Timeline {
        Timeline {
            hz,
            start: 0,
            current: RELOAD_MAX,
            next: RELOAD_MAX,
            last: 0,
        }
    }

    /// Core cycles since the start, from one read of the counter
    /// (`before`), whether its exception is pending (`wrapped`), and a
    /// second read (`after`) taken after that check.
    ///
    /// Not pending: `before` belongs to the current period. Pending: the
    /// counter reached 0 and the handler has not run yet; `after` is either
    /// still that 0 (the period's last cycle) or belongs to the period that
    /// follows.
    pub(crate) fn cycles(&mut self, before: u32, wrapped: bool, after: u32) -> u64 {
        let count = if wrapped {
            let end = self.start + u64::from(self.current);
            if after == 0 {
                end
            } else {
                end + 1 + u64::from(self.next.saturating_sub(after))
            }
        } else if before == 0 {
            // 0 without the exception pending: the cycle before this period
            // began (its handler already ran, or the counter was just
            // cleared by a restart). QEMU also reads 0 for a period that has
            // expired before its timer callback pended the exception; then
            // this is early, and time waits (below) until the callback.
            self.start.saturating_sub(1)
        } else {
            self.start + u64::from(self.current.saturating_sub(before))
        };
        self.last = self.last.max(count);
        self.last
    }

    /// The SysTick exception: the current period ended, and the counter
    /// loaded `next`. Returns the reload value to write for the period after
    /// that one: the longest, so one-shot periods do not repeat.
    #[cfg(any(target_os = "none", test))]
    pub(crate) fn wrapped(&mut self) -> u32 {
        self.start += u64::from(self.current) + 1;
        self.current = self.next;
        self.next = RELOAD_MAX;
        RELOAD_MAX
    }

    /// Plans the wake-up for `deadline` (cycles) at `now` (cycles, from
    /// [`cycles`](Self::cycles)). If the current period ends after the
    /// deadline, the counter must be restarted with the returned reload
    /// ([`restart`](Self::restart)); otherwise
    /// (`None`) the period's own end wakes the core first and the plan is
    /// made again then.
    pub(crate) fn plan(&self, now: u64, deadline: u64) -> Option<u32> {
        let period_end = self.start + u64::from(self.current) + 1;
        if deadline >= period_end || deadline <= now {
            return None;
        }
        let reload = u32::try_from(deadline - now - 1)
            .unwrap_or(RELOAD_MAX)
            .clamp(RELOAD_MIN, RELOAD_MAX);
        Some(reload)
    }

    /// The cycle count now, from `counter`: the counter, its pending bit,
    /// the counter again (see [`cycles`](Self::cycles)). Not inlined: one
    /// copy serves every read and the restart (flash is tight on the small
    /// boards).
    #[inline(never)]
    pub(crate) fn read(&mut self, counter: &mut impl Counter) -> u64 {
        let before = counter.current();
        let wrapped = counter.pending();
        let after = counter.current();
        self.cycles(before, wrapped, after)
    }

    /// Restarts `counter` with a one-shot period of `reload + 1` cycles
    /// (from [`plan`](Self::plan)).
    ///
    /// The count is read *before* the reload register is written. The
    /// other order races the period's end: a wrap in between loads the new
    /// short reload (on QEMU also a period that ran out before, if its
    /// timer callback, which reloads from the register as it is *then*,
    /// runs in between), the read takes it for the long one the timeline
    /// expects, and the clock jumps ahead by nearly a whole period (timers
    /// fire that much early). In this order a wrap between the read and
    /// the clear is discarded with the pending exception: the clock loses
    /// the few cycles of the sequence, never gains. (QEMU also holds a
    /// cleared counter at 0 for 10 µs instead of one cycle: each restart
    /// loses that much there.)
    pub(crate) fn restart(&mut self, counter: &mut impl Counter, reload: u32) {
        let now = self.read(counter);
        counter.set_reload(reload);
        counter.clear();
        self.restarted(now, reload);
    }

    /// The SysTick exception (its entry cleared the pending bit): accounts
    /// the period that ended and writes the reload for the one after next
    /// ([`wrapped`](Self::wrapped)).
    ///
    /// The period that began at that end was loaded with `next`; if it is
    /// short (a one-shot's repeat) and ends too before the reload register
    /// is written (a handler held up longer than it: on QEMU a stalled
    /// virtual CPU), the counter loads the short value again and pends
    /// again. Then the period after is that short one, not the longest:
    /// taking it for the longest would run the clock ahead by the
    /// difference.
    #[cfg(any(target_os = "none", test))]
    pub(crate) fn wrap(&mut self, counter: &mut impl Counter) {
        let loaded = self.next;
        counter.set_reload(self.wrapped());
        if counter.pending() {
            let value = counter.current();
            if value != 0 && value <= loaded {
                self.next = loaded;
            }
        }
    }

    /// The counter was restarted at `now` with `reload` in its reload
    /// register: its current value was cleared, so it reads 0 for one cycle
    /// and starts a period of `reload + 1` cycles on the next.
    pub(crate) fn restarted(&mut self, now: u64, reload: u32) {
        self.start = now.max(self.last) + 1;
        self.current = reload;
        self.next = reload;
    }

    /// Cycles as microseconds (rounded down), without overflow for any
    /// count a `u64` holds.
    pub(crate) fn micros(&self, cycles: u64) -> u64 {
        let hz = u64::from(self.hz.max(1));
        cycles / hz * MICROS_PER_SEC + cycles % hz * MICROS_PER_SEC / hz
    }

    /// Microseconds as cycles, rounded up: the first cycle at which
    /// [`micros`](Self::micros) reaches `micros`.
    pub(crate) fn cycles_at(&self, micros: u64) -> u64 {
        let hz = u64::from(self.hz);
        (micros / MICROS_PER_SEC)
            .saturating_mul(hz)
            .saturating_add((micros % MICROS_PER_SEC * hz).div_ceil(MICROS_PER_SEC))
    }
}

#[cfg(test)]
mod tests;
