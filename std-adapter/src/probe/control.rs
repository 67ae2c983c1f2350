//! Ending a run before its count or duration: an interrupt from another
//! thread ([`StopHandle::interrupt`], e.g. on SIGINT), or a UDP loss budget
//! that can no longer be met ([`LossBudget`]).
//!
//! Either way the workers stop sending, let what is in flight settle (every
//! wait is bounded by the timeout), and the run returns a [`Report`] that
//! says why it stopped early.
//!
//! [`Report`]: super::Report

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use serde::Serialize;

/// Why a run stopped sending before its count or duration was reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum StopReason {
    /// [`StopHandle::interrupt`] was called (the command line: SIGINT, SIGTERM or SIGHUP).
    Interrupted,
    /// UDP: more datagrams were lost than `--max-loss` allows of the whole
    /// run, so it could no longer pass.
    LossBudget,
}

impl StopReason {
    const fn code(self) -> u8 {
        match self {
            StopReason::Interrupted => 1,
            StopReason::LossBudget => 2,
        }
    }

    const fn from_code(code: u8) -> Option<StopReason> {
        match code {
            1 => Some(StopReason::Interrupted),
            2 => Some(StopReason::LossBudget),
            _ => None,
        }
    }
}

/// Stops a running probe from another thread; cheap to clone.
///
/// Pass it to [`run_with`](super::run_with). After
/// [`interrupt`](StopHandle::interrupt), every connection stops starting
/// messages, what is in flight is still verified (each wait bounded by the
/// timeout), connections not yet started are not started, and the run
/// returns its partial [`Report`](super::Report) with `stopped_early` set.
#[derive(Clone, Debug, Default)]
pub struct StopHandle {
    state: Arc<AtomicU8>,
}

impl StopHandle {
    /// A handle that has not stopped anything yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Asks the run to stop sending and report (returns at once; idempotent).
    pub fn interrupt(&self) {
        self.request(StopReason::Interrupted);
    }

    /// Why the run was asked to stop, if it was (the first reason wins).
    pub fn reason(&self) -> Option<StopReason> {
        StopReason::from_code(self.state.load(Ordering::Acquire))
    }

    /// Records `reason` unless another one was recorded first.
    pub(crate) fn request(&self, reason: StopReason) {
        let _ = self
            .state
            .compare_exchange(0, reason.code(), Ordering::AcqRel, Ordering::Acquire);
    }
}

/// The losses a UDP run may have before it cannot pass any more, shared by
/// the worker threads.
///
/// With a count the run sends `planned` datagrams; it fails when
/// `lost * 100 > max_loss_pct * sent`. Since `sent <= planned`, once
/// `lost * 100 > max_loss_pct * planned` the outcome is certain and
/// sending more only wastes time (against a server that answers nothing,
/// 1000 datagrams with a 5 s timeout took 83 minutes to say FAILED). With a
/// duration `planned` is unknown, so only `max_loss_pct == 0` stops early.
#[derive(Debug)]
pub(crate) struct LossBudget {
    lost: AtomicU64,
    planned: Option<u64>,
    max_loss_pct: f64,
}

impl LossBudget {
    pub(crate) fn new(planned: Option<u64>, max_loss_pct: f64) -> Self {
        LossBudget {
            lost: AtomicU64::new(0),
            planned,
            max_loss_pct,
        }
    }

    /// Counts `n` more lost datagrams; true once the run can no longer pass.
    pub(crate) fn add(&self, n: u64) -> bool {
        let lost = self.lost.fetch_add(n, Ordering::AcqRel) + n;
        self.exceeded(lost)
    }

    fn exceeded(&self, lost: u64) -> bool {
        if lost == 0 {
            return false;
        }
        match self.planned {
            Some(planned) => lost as f64 * 100.0 > self.max_loss_pct * planned as f64,
            None => self.max_loss_pct == 0.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_stop_reason_wins() {
        let h = StopHandle::new();
        assert_eq!(h.reason(), None);
        h.request(StopReason::LossBudget);
        h.interrupt();
        assert_eq!(h.reason(), Some(StopReason::LossBudget));
        assert_eq!(h.clone().reason(), Some(StopReason::LossBudget));
    }

    #[test]
    fn loss_budget_with_count_is_spent_past_max_loss_of_planned() {
        // 1000 planned, 1% allowed: 10 losses may still pass, 11 cannot.
        let b = LossBudget::new(Some(1000), 1.0);
        assert!(!b.add(10));
        assert!(b.add(1));
    }

    #[test]
    fn loss_budget_of_half_of_ten_planned_is_spent_by_the_sixth_loss() {
        // 10 planned, 50% allowed: 5 losses may still pass, 6 cannot.
        let b = LossBudget::new(Some(10), 50.0);
        assert!(!b.add(5));
        assert!(b.add(1));
    }

    #[test]
    fn loss_budget_zero_is_spent_by_the_first_loss() {
        assert!(LossBudget::new(Some(1000), 0.0).add(1));
        assert!(LossBudget::new(None, 0.0).add(1));
        assert!(!LossBudget::new(Some(1000), 0.0).add(0));
    }

    #[test]
    fn loss_budget_with_duration_and_some_loss_allowed_never_stops() {
        let b = LossBudget::new(None, 5.0);
        assert!(!b.add(1_000_000));
    }
}
