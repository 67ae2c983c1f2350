//! `--find-rate pNN=D`: the highest rate that keeps a latency percentile
//! within a bound.
//!
//! Each step is a whole probe run at one `--rate` (fresh connections, the
//! spec's duration and warmup). A step *passes* when nothing failed, the
//! rate was held (at least [`HELD`] of it achieved) and the percentile of
//! the corrected latency (from the scheduled sends, so queueing counts) is
//! within the bound.
//!
//! The search: without a `--rate`, a closed-loop step first measures the
//! most the server (and probe) can do; that, or the `--rate` given, is the
//! upper end. If the upper end passes, it is the answer. Otherwise the
//! interval between the highest passing rate (0 at first) and the lowest
//! failing one is halved until it is within [`PRECISION`] of its upper end,
//! or [`MAX_STEPS`] steps were run. The answer is the highest rate that
//! passed.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::Serialize;

use super::hgrm::Which;
use super::report::{Report, TOOL};
use super::units::{count_of, format_duration, format_micros, format_rate, parse_duration};
use super::{Observer, ProbeSpec, RunError, StopHandle, StopReason, run_observed};

/// A step holds its rate when it achieves at least this fraction of it.
pub(super) const HELD: f64 = 0.95;
/// The search stops when the bracket is within this fraction of its upper end.
pub(super) const PRECISION: f64 = 0.05;
/// The most steps of one search (the closed-loop step included).
pub(super) const MAX_STEPS: usize = 12;

/// A latency bound to keep: `percentile` of the round trips within `bound`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Goal {
    /// Percentile, more than 0 and at most 100.
    pub percentile: f64,
    /// The bound.
    pub bound: Duration,
}

/// Why a `--find-rate` goal was rejected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GoalError(String);

impl fmt::Display for GoalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "bad goal {:?}: expected pNN=DURATION, e.g. p99=5ms, p99.9=20ms or p50=500us",
            self.0
        )
    }
}

impl std::error::Error for GoalError {}

impl FromStr for Goal {
    type Err = GoalError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || GoalError(s.to_owned());
        let (p, d) = s.trim().split_once('=').ok_or_else(bad)?;
        let p = p.trim();
        let p = p
            .strip_prefix('p')
            .or_else(|| p.strip_prefix('P'))
            .ok_or_else(bad)?;
        let percentile: f64 = p.parse().map_err(|_| bad())?;
        if !(percentile > 0.0 && percentile <= 100.0) {
            return Err(bad());
        }
        let bound = parse_duration(d).map_err(|_| bad())?;
        if bound.is_zero() {
            return Err(bad());
        }
        Ok(Goal { percentile, bound })
    }
}

impl fmt::Display for Goal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "p{}={}", self.percentile, format_duration(self.bound))
    }
}

/// One step of a search.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RateStep {
    /// 1 for the first step.
    pub step: usize,
    /// The rate asked for, messages/s; `None` for the closed-loop step.
    pub rate: Option<f64>,
    /// Round trips per second achieved.
    #[serde(serialize_with = "super::json::rounded")]
    pub achieved: f64,
    /// The goal's percentile of the (corrected) latency, microseconds (0
    /// when nothing was measured: see `round_trips`).
    pub value_us: u64,
    /// Round trips in the step's measured span; 0: nothing to judge (its
    /// latency shows as `-`).
    pub round_trips: u64,
    /// Errors of the step.
    pub errors: u64,
    /// The step kept the bound (the closed-loop step is never a pass: it
    /// only finds the upper end).
    pub ok: bool,
    /// Why it did not pass, for a reader (`None` only for a step that
    /// passed; the closed-loop step says it is not judged).
    pub why: Option<String>,
}

/// What a search found.
#[derive(Clone, Debug, Serialize)]
pub struct RateSearch {
    /// The tool that produced the search, always `ricochet-probe` (as in
    /// every [`Report`]: a stored summary says what made it).
    pub tool: &'static str,
    /// The tool's version (`ricochet` package version).
    pub version: &'static str,
    /// The goal as given, e.g. `p99=5ms`.
    pub goal: String,
    /// The goal's percentile.
    pub percentile: f64,
    /// The goal's bound, microseconds.
    pub bound_us: u64,
    /// The highest rate that kept the bound, messages/s; `None` if none did.
    pub rate: Option<f64>,
    /// The rate found is the upper end of the search (the closed-loop rate,
    /// or the `--rate` given): the bound may hold at higher rates too (more
    /// connections, or a higher `--rate`, would tell).
    pub at_upper_end: bool,
    /// Every step, in the order run.
    pub steps: Vec<RateStep>,
    /// The report of the step that found the rate.
    pub best: Option<Report>,
    /// With no rate found, the report of the last step that had errors
    /// (its `errors`, `error_details` and `hints` say what failed: a
    /// closed-loop step with errors ends the search before any rate is
    /// tried); `None` when a rate was found or no step had errors.
    pub failed: Option<Box<Report>>,
    /// Set when the search was interrupted.
    pub stopped_early: Option<StopReason>,
    /// A rate was found and the search ran to its end.
    pub ok: bool,
}

impl RateSearch {
    /// The exit status of `ricochet probe --find-rate`: 0 when a rate was
    /// found, 130 when interrupted, 1 otherwise.
    pub fn exit_code(&self) -> u8 {
        match (self.stopped_early, self.rate) {
            (Some(StopReason::Interrupted), _) => 130,
            (_, Some(_)) if self.ok => 0,
            _ => 1,
        }
    }

    /// One line for a finished search.
    pub fn summary(&self) -> String {
        let interrupted = self.stopped_early == Some(StopReason::Interrupted);
        if interrupted && self.steps.iter().all(|s| s.rate.is_none()) {
            // Only the closed loop ran (or not even that): no rate was
            // tried, so "no rate tried kept the goal" would mislead.
            return match self.steps.first() {
                Some(closed) => format!(
                    "interrupted before any rate was tried: the closed loop ran {} msg/s with \
                     p{} {}; the search did not finish",
                    format_rate(closed.achieved.round()),
                    self.percentile,
                    format_micros(closed.value_us)
                ),
                None => "interrupted before the first step finished: no rate was tried".to_owned(),
            };
        }
        let summary = self.found();
        match self.stopped_early {
            // Not a verdict on the server: the search did not run its course.
            Some(StopReason::Interrupted) => format!(
                "{summary} (interrupted after {} step{}: the search did not finish; the step in \
                 progress was dropped)",
                self.steps.len(),
                if self.steps.len() == 1 { "" } else { "s" }
            ),
            _ => summary,
        }
    }

    /// What the steps run found.
    fn found(&self) -> String {
        match self.rate {
            Some(r) => format!(
                "highest rate keeping {} (p{} at most {}): {} msg/s{}",
                self.goal,
                self.percentile,
                format_micros(self.bound_us),
                format_rate(r),
                if self.at_upper_end {
                    ", the highest tried: it may hold higher (more connections or a higher --rate)"
                } else {
                    ""
                }
            ),
            None => match self.steps.first() {
                // The closed loop failed: the search stopped there, so no
                // rate was tried, and "no rate tried kept" would blame the
                // latency for what the errors did.
                Some(closed) if closed.rate.is_none() && closed.errors > 0 => format!(
                    "no rate was tried: the closed-loop step, which finds the upper end, had {}, \
                     so the search stopped: fix what failed (the step's errors say what), or \
                     give --rate to start from",
                    count_of(closed.errors, "error")
                ),
                _ => format!("no rate tried kept {}", self.goal),
            },
        }
    }
}

impl RateStep {
    /// The step's latency as the tables show it: `-` when nothing was measured.
    pub fn latency_cell(&self) -> String {
        if self.round_trips == 0 {
            "-".to_owned()
        } else {
            format_micros(self.value_us)
        }
    }

    /// The step as one line of output.
    pub fn line(&self, goal: &Goal) -> String {
        let rate = self.rate.map_or_else(
            || "closed loop".to_owned(),
            |r| format!("{} msg/s", format_rate(r)),
        );
        let verdict = match (&self.why, self.rate) {
            (Some(why), None) if self.errors > 0 => format!("failed: {why}"),
            (_, None) => "upper end".to_owned(),
            (None, _) => "ok".to_owned(),
            (Some(why), _) => format!("over: {why}"),
        };
        format!(
            "step {:>2}  {rate:>16}  achieved {:>10.1}/s  p{} {:>9}  {verdict}",
            self.step,
            self.achieved,
            goal.percentile,
            self.latency_cell()
        )
    }
}

/// What one step measured.
pub(super) struct Measured {
    pub(super) achieved: f64,
    pub(super) value_us: u64,
    pub(super) round_trips: u64,
    pub(super) errors: u64,
}

impl Measured {
    fn of(report: &Report, goal: &Goal) -> Self {
        Measured {
            achieved: report.round_trips_per_sec,
            value_us: report.latency_at(goal.percentile, Which::Corrected),
            round_trips: report.round_trips,
            errors: report.errors.total(),
        }
    }
}

/// Judges a step at `rate` (`None`: closed loop).
fn judge(step: usize, rate: Option<f64>, m: &Measured, goal: &Goal) -> RateStep {
    let bound = u64::try_from(goal.bound.as_micros()).unwrap_or(u64::MAX);
    let why = match rate {
        None if m.errors > 0 => Some(format!(
            "{} (closed loop: no upper end, the search stops)",
            count_of(m.errors, "error")
        )),
        None => Some("closed loop: measures the upper end, not judged".to_owned()),
        Some(_) if m.errors > 0 => Some(format!("{} errors", m.errors)),
        // A rate so low that no message fell in the span (it read "rate not
        // held (0%)" with "p99 0 us").
        Some(_) if m.round_trips == 0 => Some(
            "no round trip completed in the step's span: nothing measured (a longer \
             --duration would)"
                .to_owned(),
        ),
        Some(r) if m.achieved < HELD * r => Some(format!(
            "rate not held ({:.0}% of it)",
            m.achieved * 100.0 / r
        )),
        Some(_) if m.value_us > bound => Some(format!(
            "p{} {} > {}",
            goal.percentile,
            format_micros(m.value_us),
            format_micros(bound)
        )),
        Some(_) => None,
    };
    RateStep {
        step,
        rate,
        achieved: m.achieved,
        value_us: m.value_us,
        round_trips: m.round_trips,
        errors: m.errors,
        ok: rate.is_some() && why.is_none(),
        why,
    }
}

/// A step's rate, rounded to 3 significant digits so the curve reads well
/// (0.5 stays 0.5: rounding up to 1 msg/s went past a `--rate` below it).
fn round_rate(r: f64) -> f64 {
    if !(r.is_finite() && r > 0.0) {
        return r.max(0.0);
    }
    // Multiplying back by a power of ten would leave 12.299999…: divide.
    let digits = 2 - r.log10().floor() as i32;
    if digits > 0 {
        let scale = 10f64.powi(digits);
        (r * scale).round() / scale
    } else {
        let scale = 10f64.powi(-digits);
        (r / scale).round() * scale
    }
}

/// How the search runs its steps.
pub(super) trait Steps {
    /// Why a step could not run at all.
    type Error;
    /// Runs a step at `rate` (`None`: closed loop); `Ok(None)` stops the search.
    fn measure(&mut self, rate: Option<f64>) -> Result<Option<Measured>, Self::Error>;
    /// A step was judged.
    fn judged(&mut self, step: &RateStep);
}

/// The search itself (see the module documentation); `upper` is the
/// `--rate` given, if any. Returns the steps and the index of the best one.
pub(super) fn search<S: Steps>(
    goal: &Goal,
    upper: Option<f64>,
    steps_of: &mut S,
) -> Result<(Vec<RateStep>, Option<usize>), S::Error> {
    let mut steps: Vec<RateStep> = Vec::new();
    let mut run =
        |rate: Option<f64>, steps: &mut Vec<RateStep>| -> Result<Option<bool>, S::Error> {
            let Some(m) = steps_of.measure(rate)? else {
                return Ok(None);
            };
            let s = judge(steps.len() + 1, rate, &m, goal);
            steps_of.judged(&s);
            let ok = s.ok;
            steps.push(s);
            Ok(Some(ok))
        };
    let hi = match upper {
        Some(r) => r,
        None => {
            // The closed-loop rate, rounded as every step's rate is.
            if run(None, &mut steps)?.is_none() {
                return Ok((steps, None));
            }
            match steps.last() {
                Some(s) if s.achieved > 0.0 && s.errors == 0 => round_rate(s.achieved),
                _ => return Ok((steps, None)),
            }
        }
    };
    let mut best = None;
    let (mut lo, mut hi) = (0.0_f64, hi);
    match run(Some(hi), &mut steps)? {
        None => return Ok((steps, None)),
        Some(true) => {
            let i = steps.len() - 1;
            return Ok((steps, Some(i)));
        }
        Some(false) => {}
    }
    while steps.len() < MAX_STEPS && hi - lo > PRECISION * hi {
        let mid = round_rate((lo + hi) / 2.0);
        if mid <= lo || mid >= hi {
            // Rounding closed the bracket: another step would repeat one.
            break;
        }
        match run(Some(mid), &mut steps)? {
            None => break,
            Some(true) => {
                lo = mid;
                best = Some(steps.len() - 1);
            }
            Some(false) => hi = mid,
        }
    }
    Ok((steps, best))
}

/// Real steps: probe runs.
struct Runs<'a> {
    spec: &'a ProbeSpec,
    goal: Goal,
    stop: &'a StopHandle,
    observer: &'a mut dyn Observer,
    reports: Vec<Report>,
}

impl Steps for Runs<'_> {
    type Error = RunError;

    fn measure(&mut self, rate: Option<f64>) -> Result<Option<Measured>, RunError> {
        if self.stop.reason().is_some() {
            return Ok(None);
        }
        let mut s = self.spec.clone();
        s.rate = rate;
        let report = run_observed(&s, self.stop, &mut *self.observer)?;
        if report.stopped_early.is_some() {
            return Ok(None);
        }
        let m = Measured::of(&report, &self.goal);
        self.reports.push(report);
        Ok(Some(m))
    }

    fn judged(&mut self, step: &RateStep) {
        self.observer.rate_step(step, &self.goal);
    }
}

/// Finds the highest rate that keeps `goal` against `spec`'s target(s)
/// (see the module documentation). `spec.rate`, if set, is the highest rate
/// tried. `observer` hears of each step as it ends
/// ([`Observer::rate_step`]) and of each step's progress.
pub fn find_rate(
    spec: &ProbeSpec,
    goal: Goal,
    stop: &StopHandle,
    observer: &mut dyn Observer,
) -> Result<RateSearch, RunError> {
    spec.validate()?;
    let mut runs = Runs {
        spec,
        goal,
        stop,
        observer,
        reports: Vec::new(),
    };
    let (steps, best) = search(&goal, spec.rate, &mut runs)?;
    Ok(conclude(goal, steps, best, &runs.reports, stop.reason()))
}

/// The search's result from its `steps` (in the order run), the index of
/// the `best` one, the `reports` of the steps (one per step, in the same
/// order: a report is pushed for each step judged, so the indexes match)
/// and why it stopped early, if it did.
fn conclude(
    goal: Goal,
    steps: Vec<RateStep>,
    best: Option<usize>,
    reports: &[Report],
    stopped_early: Option<StopReason>,
) -> RateSearch {
    let best_report = best.and_then(|i| reports.get(i).cloned());
    let failed = match best {
        Some(_) => None,
        None => steps
            .iter()
            .rposition(|s| s.errors > 0)
            .and_then(|i| reports.get(i).cloned())
            .map(Box::new),
    };
    RateSearch {
        tool: TOOL,
        version: env!("CARGO_PKG_VERSION"),
        goal: goal.to_string(),
        percentile: goal.percentile,
        bound_us: u64::try_from(goal.bound.as_micros()).unwrap_or(u64::MAX),
        rate: best.and_then(|i| steps.get(i)).and_then(|s| s.rate),
        at_upper_end: best.is_some() && best == steps.iter().position(|s| s.rate.is_some()),
        steps,
        best: best_report,
        failed,
        stopped_early,
        ok: best.is_some() && stopped_early.is_none(),
    }
}

#[cfg(test)]
mod tests;
