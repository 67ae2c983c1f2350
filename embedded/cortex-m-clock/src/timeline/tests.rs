//! The timeline against a cycle-exact SysTick simulation: as the
//! architecture describes it, and as QEMU 7.2 models it.

use super::*;

/// SysTick as the architecture describes it, advanced cycle-exactly
/// (in bulk): the counter goes `reload, ..., 1, 0` and pends its
/// exception on reaching 0, then loads the reload register on the next
/// cycle.
struct SimSysTick {
    cycle: u64,
    value: u32,
    reload: u32,
    pending: bool,
    /// Periods that ended while the exception was still pending (lost
    /// ticks).
    lost: u32,
    /// QEMU 7.2's SysTick (hw/core/ptimer.c with the SysTick's
    /// policies): a period that runs out reads 1 (its count rounds up)
    /// and pends nothing until [`callback`](Self::callback) runs
    /// (QEMU's timer callback, late on a busy host), which then reloads
    /// from the reload register as it is at that moment; a cleared
    /// counter reads 0 for 10 µs ([`QEMU_CLEARED`]), not one cycle,
    /// then loads the reload register.
    qemu: bool,
    /// QEMU: cycles a cleared counter still reads 0.
    cleared_for: u64,
    /// QEMU: the cycle at which a period ran out, its callback not run.
    ran_out: Option<u64>,
    /// What happens right after the next write of the reload register
    /// (a wrap or QEMU's callback racing a restart).
    after_set_reload: Option<fn(&mut SimSysTick)>,
    /// Cycles the next write of the reload register is held up by (a
    /// stalled handler).
    stall_before_set_reload: u64,
    /// Restarts so far (each loses `QEMU_CLEARED` cycles on QEMU).
    restarts: u64,
}

/// QEMU's 10 µs minimum timer period, at 20 MHz.
const QEMU_CLEARED: u64 = 200;

impl Counter for SimSysTick {
    fn current(&mut self) -> u32 {
        if self.ran_out.is_some() {
            1
        } else {
            self.value
        }
    }

    fn pending(&mut self) -> bool {
        self.pending
    }

    fn set_reload(&mut self, reload: u32) {
        let stall = core::mem::take(&mut self.stall_before_set_reload);
        self.advance(stall);
        self.reload = reload;
        if let Some(then) = self.after_set_reload.take() {
            then(self);
        }
    }

    fn clear(&mut self) {
        self.value = 0;
        self.pending = false;
        self.ran_out = None;
        if self.qemu {
            self.cleared_for = QEMU_CLEARED;
        }
        self.restarts += 1;
    }
}

impl SimSysTick {
    /// Started like `Clock::start`: cleared at cycle 0, so it loads
    /// `RELOAD_MAX` at cycle 1.
    fn started(t: &mut Timeline) -> Self {
        t.restarted(0, RELOAD_MAX);
        let mut sim = SimSysTick {
            cycle: 0,
            value: 0,
            reload: RELOAD_MAX,
            pending: false,
            lost: 0,
            qemu: false,
            cleared_for: 0,
            ran_out: None,
            after_set_reload: None,
            stall_before_set_reload: 0,
            restarts: 0,
        };
        sim.advance(1);
        sim
    }

    fn advance(&mut self, mut n: u64) {
        if self.ran_out.is_some() {
            // QEMU: stuck at 0 until the callback.
            self.cycle += n;
            return;
        }
        let held = n.min(self.cleared_for);
        self.cleared_for -= held;
        self.cycle += held;
        n -= held;
        while n > 0 {
            if self.value == 0 {
                self.value = self.reload;
                self.cycle += 1;
                n -= 1;
                continue;
            }
            let step = n.min(u64::from(self.value));
            self.value -= step as u32;
            self.cycle += step;
            n -= step;
            if self.value == 0 {
                if self.qemu {
                    self.ran_out = Some(self.cycle);
                    self.cycle += n;
                    return;
                }
                if self.pending {
                    self.lost += 1;
                }
                self.pending = true;
            }
        }
    }

    /// QEMU's timer callback for a period that ran out: pends the
    /// exception and reloads from the reload register now, counting
    /// from when the period ran out (QEMU keeps its periods anchored).
    fn callback(&mut self) {
        let Some(at) = self.ran_out.take() else {
            return;
        };
        if self.pending {
            self.lost += 1;
        }
        self.pending = true;
        let since = self.cycle - at;
        let period = u64::from(self.reload) + 1;
        if since >= period {
            // The period it reloads has run out already too: QEMU calls
            // back again at once.
            self.ran_out = Some(at + period);
            return;
        }
        self.value = if since == 0 {
            0
        } else {
            self.reload - (since - 1) as u32
        };
    }

    /// Cycles until the counter next reaches 0.
    fn to_zero(&self) -> u64 {
        if self.value == 0 {
            u64::from(self.reload) + 1
        } else {
            u64::from(self.value)
        }
    }

    fn read(&mut self, t: &mut Timeline) -> u64 {
        t.read(self)
    }

    /// The exception handler, if pending. Exception entry takes cycles,
    /// so it never runs in the cycle the counter reads 0: the counter
    /// has loaded the next period's reload by then.
    fn service(&mut self, t: &mut Timeline) {
        if !self.pending {
            return;
        }
        if self.value == 0 {
            self.advance(1);
        }
        // Exception entry clears the pending bit; then the handler.
        self.pending = false;
        t.wrap(self);
    }

    /// What the glue does for a deadline: plan, and restart if told to.
    /// Returns whether the counter was restarted.
    fn program(&mut self, t: &mut Timeline, deadline: u64) -> bool {
        let now = self.read(t);
        let Some(reload) = t.plan(now, deadline) else {
            return false;
        };
        let raced = self.after_set_reload.is_some() || self.qemu;
        t.restart(self, reload);
        if raced {
            assert!(
                self.read(t) <= self.cycle,
                "a raced restart never reads ahead"
            );
        } else {
            assert_eq!(
                self.read(t),
                self.cycle,
                "the cleared cycle reads as the restart"
            );
        }
        true
    }
}

/// A deterministic pseudo-random source: `rand(n)` is in `0..n`.
fn xorshift(mut seed: u64) -> impl FnMut(u64) -> u64 {
    move |n| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    }
}

#[test]
fn idle_core_wakes_once_per_full_period_and_keeps_exact_time() {
    let mut t = Timeline::new(25_000_000);
    let mut sim = SimSysTick::started(&mut t);
    let mut wakes = 0;
    // Ten seconds with no deadline: only the period ends wake the core.
    while sim.cycle < 250_000_000 {
        sim.advance(sim.to_zero());
        assert_eq!(sim.read(&mut t), sim.cycle, "at the period's last cycle");
        sim.service(&mut t);
        wakes += 1;
        sim.advance(1);
        assert_eq!(sim.read(&mut t), sim.cycle, "after the reload");
    }
    assert_eq!(wakes, 15, "0.67 s periods, not 1 ms ticks");
}

#[test]
fn deadline_sooner_than_the_period_end_restarts_the_counter_and_wakes_on_time() {
    let mut t = Timeline::new(25_000_000);
    let mut sim = SimSysTick::started(&mut t);
    sim.advance(1_000_000);
    let deadline = sim.cycle + 125_000; // 5 ms
    sim.program(&mut t, deadline);
    // The counter's exception comes exactly at the deadline.
    sim.advance(deadline - sim.cycle - 1);
    assert!(!sim.pending);
    sim.advance(1);
    assert!(sim.pending);
    assert_eq!(sim.read(&mut t), deadline);
    sim.service(&mut t);
    assert_eq!(sim.read(&mut t), deadline + 1);
    // One more period of the one-shot length, then full periods again.
    let mut zeros = [deadline; 3];
    for zero in &mut zeros[1..] {
        sim.advance(sim.to_zero());
        *zero = sim.cycle;
        assert_eq!(sim.read(&mut t), sim.cycle);
        sim.service(&mut t);
    }
    assert_eq!(zeros[1] - zeros[0], 125_000);
    assert_eq!(zeros[2] - zeros[1], u64::from(RELOAD_MAX) + 1);
    assert_eq!(sim.lost, 0);
}

#[test]
fn deadline_after_the_period_end_leaves_the_counter_alone() {
    let mut t = Timeline::new(25_000_000);
    let mut sim = SimSysTick::started(&mut t);
    let before = t;
    assert_eq!(t.plan(10, 1 << 30), None);
    assert_eq!(t, before);
    assert_eq!(
        t.plan(10, 10),
        None,
        "a deadline that has passed needs no timer"
    );
    sim.advance(5);
    assert_eq!(sim.read(&mut t), 6);
}

#[test]
fn read_racing_a_wrap_counts_the_new_period_and_time_never_goes_back() {
    let mut t = Timeline::new(25_000_000);
    // The counter wrapped after `before` was read; the handler has not run.
    let at_end = t.cycles(1, true, RELOAD_MAX - 9);
    assert_eq!(at_end, u64::from(RELOAD_MAX) + 1 + 9);
    // Pending, and still in the period's last cycle.
    let mut t2 = Timeline::new(25_000_000);
    assert_eq!(t2.cycles(0, true, 0), u64::from(RELOAD_MAX));
    // A read of 0 with nothing pending is the cycle before the period
    // (here: before the first, so 0); never a period's end.
    let mut t3 = Timeline::new(25_000_000);
    t3.restarted(99, RELOAD_MAX);
    assert_eq!(t3.cycles(0, false, 0), 99);
    // A read that looks earlier than one already handed out is clamped.
    let later = t.cycles(RELOAD_MAX, false, RELOAD_MAX);
    assert_eq!(later, at_end);
}

#[test]
fn random_sleeps_reads_and_late_handlers_keep_time_exact_and_monotonic() {
    // A deterministic pseudo-random walk: deadlines near and far, reads
    // at any point, handlers that run late (but within a period).
    let mut t = Timeline::new(12_500_000);
    let mut sim = SimSysTick::started(&mut t);
    let mut rand = xorshift(0x9E37_79B9_7F4A_7C15);
    let mut last = 0;
    for _ in 0..20_000 {
        match rand(4) {
            0 => {
                let deadline = sim.cycle + rand(40_000_000);
                sim.service(&mut t);
                sim.program(&mut t, deadline);
            }
            1 => sim.service(&mut t),
            _ => {}
        }
        // The handler is late, but never by a whole period (that would
        // lose a tick, which no clock built on SysTick can see).
        let room = if sim.pending {
            u64::from(sim.value)
        } else {
            sim.to_zero() + u64::from(sim.reload)
        };
        sim.advance(rand(room.max(1)));
        let now = sim.read(&mut t);
        assert_eq!(now, sim.cycle, "exact while no tick is lost");
        assert!(now >= last);
        last = now;
    }
    assert_eq!(sim.lost, 0);
}

#[test]
fn restart_racing_the_period_end_loses_the_race_cycles_and_never_runs_ahead() {
    let mut t = Timeline::new(20_000_000);
    let mut sim = SimSysTick::started(&mut t);
    sim.advance(sim.to_zero() - 100);
    // A deadline just before the period's end, and the period ends
    // right after the reload register is written: the counter loads the
    // new short reload.
    sim.after_set_reload = Some(|s| s.advance(s.to_zero() + 3));
    assert!(sim.program(&mut t, sim.cycle + 60));
    let behind = sim.cycle - sim.read(&mut t);
    assert!(
        behind <= 103,
        "only the race's own cycles are lost: {behind}"
    );
    // From here the clock keeps exact time, that far behind.
    for _ in 0..3 {
        sim.advance(sim.to_zero());
        sim.service(&mut t);
        assert_eq!(sim.cycle - sim.read(&mut t), behind);
    }
}

#[test]
fn restart_on_qemu_racing_a_late_callback_loses_the_wait_and_never_runs_ahead() {
    let mut t = Timeline::new(20_000_000);
    let mut sim = SimSysTick::started(&mut t);
    sim.qemu = true;
    sim.advance(sim.to_zero());
    // The period ran out, QEMU's callback is late: the counter reads 1
    // and nothing is pending, so time waits at the period's end.
    sim.advance(5_000);
    let frozen = sim.read(&mut t);
    assert!(frozen < sim.cycle, "time waits for the callback");
    // A deadline in what the timeline still takes for the period, and
    // the callback runs right after the reload register is written: it
    // reloads the new short value.
    sim.after_set_reload = Some(SimSysTick::callback);
    assert!(sim.program(&mut t, frozen + 1));
    let behind = sim.cycle - sim.read(&mut t);
    assert!(
        behind <= 5_000 + 1,
        "behind by the callback's lateness, never ahead: {behind}"
    );
    // The one-shot then wakes on time, by the clock (that far behind,
    // and the 10 µs QEMU holds a cleared counter at 0).
    sim.advance(sim.to_zero());
    sim.callback();
    sim.service(&mut t);
    let lag = sim.cycle - sim.read(&mut t);
    assert_eq!(lag, behind + QEMU_CLEARED);
}

#[test]
fn handler_held_up_past_a_short_repeat_period_takes_it_as_short() {
    let mut t = Timeline::new(20_000_000);
    let mut sim = SimSysTick::started(&mut t);
    sim.advance(1_000_000);
    let deadline = sim.cycle + 20_000; // a 1 ms one-shot
    assert!(sim.program(&mut t, deadline));
    sim.advance(sim.to_zero());
    assert_eq!(sim.read(&mut t), deadline);
    // The handler is held up past the end of the one-shot's repeat
    // period (loaded from the reload register, still 1 ms) before it
    // writes the longest reload: the counter loads 1 ms again.
    sim.stall_before_set_reload = 20_000 + 50;
    sim.service(&mut t);
    assert!(sim.pending, "the repeat period ended in the handler");
    assert_eq!(sim.read(&mut t), sim.cycle);
    sim.service(&mut t);
    assert_eq!(sim.read(&mut t), sim.cycle);
    // Then periods of the longest reload, exact.
    for _ in 0..3 {
        sim.advance(sim.to_zero());
        assert_eq!(sim.read(&mut t), sim.cycle);
        sim.service(&mut t);
        assert_eq!(sim.read(&mut t), sim.cycle);
    }
    assert_eq!(sim.lost, 0);
}

#[test]
fn random_sleeps_with_late_qemu_callbacks_never_read_ahead_and_catch_up() {
    let mut t = Timeline::new(20_000_000);
    let mut sim = SimSysTick::started(&mut t);
    sim.qemu = true;
    let mut rand = xorshift(0x2545_F491_4F6C_DD1D);
    let mut last = 0;
    for _ in 0..20_000 {
        match rand(5) {
            0 | 1 => {
                // Deadlines come from the firmware's own time.
                let deadline = sim.read(&mut t) + rand(30_000_000);
                sim.program(&mut t, deadline);
            }
            2 => sim.callback(),
            3 => sim.service(&mut t),
            _ => {}
        }
        // Late callbacks and handlers, never by a whole period.
        let room = match sim.ran_out {
            Some(at) => u64::from(sim.reload) - (sim.cycle - at),
            None if sim.pending => u64::from(sim.value),
            None => sim.to_zero() + u64::from(sim.reload),
        };
        sim.advance(rand(room.max(1)));
        let now = sim.read(&mut t);
        assert!(now <= sim.cycle, "never ahead: {now} > {}", sim.cycle);
        if sim.ran_out.is_none() && sim.cleared_for == 0 {
            assert_eq!(
                sim.cycle - now,
                sim.restarts * QEMU_CLEARED,
                "exact but for QEMU's 10 µs per restart, once signalled"
            );
        }
        assert!(now >= last);
        last = now;
    }
    assert_eq!(sim.lost, 0);
}

#[test]
fn stopped_clock_reads_zero_whatever_the_counter_says() {
    let mut t = Timeline::STOPPED;
    assert_eq!(t.cycles(0, false, 0), 0);
    assert_eq!(t.cycles(12_345, false, 12_345), 0);
    assert_eq!(t.micros(0), 0);
}

#[test]
fn microseconds_convert_both_ways_without_overflow_and_round_so_a_deadline_is_never_early() {
    let t = Timeline::new(25_000_000);
    assert_eq!(t.micros(25), 1);
    assert_eq!(t.micros(24), 0);
    assert_eq!(t.cycles_at(1), 25);
    assert_eq!(t.micros(t.cycles_at(1_234_567)), 1_234_567);
    let t = Timeline::new(12_500_000);
    assert_eq!(t.cycles_at(3), 38, "37.5 cycles rounds up");
    assert_eq!(t.micros(38), 3);
    // Thirty years of cycles at 168 MHz: no overflow on the way.
    let t = Timeline::new(168_000_000);
    let cycles = 168_000_000u64 * 86_400 * 365 * 30;
    assert_eq!(t.micros(cycles), 86_400 * 365 * 30 * 1_000_000);
    assert_eq!(t.cycles_at(u64::MAX), u64::MAX, "saturates");
}
