use super::*;

fn goal(s: &str) -> Goal {
    s.parse().unwrap()
}

/// An interrupted search says so: "no rate tried kept p99=1ms" alone
/// read as a verdict on the server.
#[test]
fn interrupted_search_summary_says_it_did_not_finish() {
    let step = RateStep {
        step: 1,
        rate: None,
        achieved: 64_522.0,
        value_us: 112,
        round_trips: 129_044,
        errors: 0,
        ok: false,
        why: None,
    };
    let mut search = RateSearch {
        tool: TOOL,
        version: "0",
        goal: "p99=1ms".to_owned(),
        percentile: 99.0,
        bound_us: 1_000,
        rate: None,
        at_upper_end: false,
        steps: vec![step],
        best: None,
        failed: None,
        stopped_early: Some(StopReason::Interrupted),
        ok: false,
    };
    assert_eq!(
        search.summary(),
        "interrupted before any rate was tried: the closed loop ran 64522 msg/s with p99 \
         112 us; the search did not finish",
        "only the closed loop ran: no verdict on any rate"
    );
    // The curve shows a rate below 1 msg/s as it is (it read 0).
    let mut slow = search.steps[0].clone();
    slow.rate = Some(0.5);
    let slow_search = RateSearch {
        steps: vec![slow],
        ..search.clone()
    };
    let row = slow_search.curve().lines().nth(1).unwrap().to_owned();
    assert_eq!(row.split_whitespace().next(), Some("0.5"), "{row}");
    let mut tried = search.steps[0].clone();
    tried.step = 2;
    tried.rate = Some(58_100.0);
    tried.why = Some("p99 over the bound".to_owned());
    search.steps.push(tried);
    let s = search.summary();
    assert!(
        s.starts_with("no rate tried kept p99=1ms (interrupted after 2 steps:"),
        "{s}"
    );
    search.stopped_early = None;
    assert_eq!(search.summary(), "no rate tried kept p99=1ms");
    search.steps.clear();
    search.stopped_early = Some(StopReason::Interrupted);
    assert_eq!(
        search.summary(),
        "interrupted before the first step finished: no rate was tried"
    );
}

#[test]
fn step_rates_have_three_significant_digits() {
    assert_eq!(round_rate(21_765.89), 21_800.0);
    assert_eq!(round_rate(43_532.0), 43_500.0);
    assert_eq!(round_rate(987.6), 988.0);
    assert_eq!(round_rate(12.34), 12.3);
    assert_eq!(round_rate(2.5), 2.5);
    assert_eq!(round_rate(0.2), 0.2);
    assert_eq!(round_rate(0.12345), 0.123);
}

/// Below 1 msg/s a step was rounded up to 1 (above a `--rate 0.5`
/// given as the highest), and a search whose bracket had narrowed to
/// rounding repeated one rate ten times. Every step now stays within
/// the bracket and differs from the last.
#[test]
fn search_at_low_rates_stays_under_the_given_rate_and_never_repeats_a_step() {
    for (cap, upper) in [(0.3, 0.5), (2.0, 4.0), (1e-6, 4.0)] {
        let (steps, _) = search(&goal("p99=5ms"), Some(upper), &mut model(cap)).unwrap();
        let rates: Vec<f64> = steps.iter().filter_map(|s| s.rate).collect();
        assert!(rates.iter().all(|&r| r > 0.0 && r <= upper), "{rates:?}");
        for w in rates.windows(2) {
            assert!(w[0] != w[1], "a step repeated: {rates:?}");
        }
    }
}

#[test]
fn goals_parse_percentile_and_bound() {
    assert_eq!(
        goal("p99=5ms"),
        Goal {
            percentile: 99.0,
            bound: Duration::from_millis(5)
        }
    );
    assert_eq!(goal("p99.9=250us").percentile, 99.9);
    assert_eq!(goal("P50 = 1s").bound, Duration::from_secs(1));
    for bad in [
        "99=5ms", "p99", "p0=1ms", "p101=1ms", "p99=0", "p99=fast", "px=1ms",
    ] {
        let e = bad.parse::<Goal>().unwrap_err().to_string();
        assert!(e.contains("p99=5ms"), "{bad}: {e}");
    }
}

/// Steps measured by a function; counts the steps judged.
struct Model<F> {
    f: F,
    judged: usize,
}

impl<F: FnMut(Option<f64>) -> Measured> Steps for Model<F> {
    type Error = ();
    fn measure(&mut self, rate: Option<f64>) -> Result<Option<Measured>, ()> {
        Ok(Some((self.f)(rate)))
    }
    fn judged(&mut self, _: &RateStep) {
        self.judged += 1;
    }
}

/// A server that keeps 1 ms up to `cap` msg/s and falls over above it.
fn model(cap: f64) -> Model<impl FnMut(Option<f64>) -> Measured> {
    Model {
        f: move |rate: Option<f64>| {
            let r = rate.unwrap_or(cap * 1.02);
            Measured {
                achieved: r.min(cap * 1.02),
                value_us: if r <= cap { 1_000 } else { 400_000 },
                round_trips: 100,
                errors: 0,
            }
        },
        judged: 0,
    }
}

#[test]
fn search_converges_below_a_known_capacity_within_the_step_budget() {
    for cap in [500.0, 2_000.0, 73_000.0] {
        let mut m = model(cap);
        let (steps, best) = search(&goal("p99=5ms"), None, &mut m).unwrap();
        let seen = m.judged;
        let rate = best.and_then(|i| steps[i].rate).unwrap();
        assert!(
            rate <= cap && rate >= cap * (1.0 - 2.0 * PRECISION),
            "{cap}: {rate} {steps:?}"
        );
        assert!(steps.len() <= MAX_STEPS);
        assert_eq!(seen, steps.len(), "every step is reported as it ends");
        assert_eq!(steps[0].rate, None, "closed loop first");
    }
}

#[test]
fn search_from_a_given_rate_that_passes_stops_at_once() {
    let (steps, best) = search(&goal("p99=5ms"), Some(100.0), &mut model(1_000.0)).unwrap();
    assert_eq!(steps.len(), 1);
    assert_eq!(best, Some(0));
}

#[test]
fn search_that_never_passes_finds_nothing() {
    let mut never = Model {
        f: |rate: Option<f64>| Measured {
            achieved: rate.unwrap_or(1000.0),
            value_us: 1_000_000,
            round_trips: 100,
            errors: 0,
        },
        judged: 0,
    };
    let (steps, best) = search(&goal("p99=5ms"), None, &mut never).unwrap();
    assert_eq!(best, None);
    assert_eq!(steps.len(), MAX_STEPS);
}

#[test]
fn step_with_errors_or_a_rate_not_held_fails_whatever_its_latency() {
    let g = goal("p99=5ms");
    let m = |achieved, errors| Measured {
        achieved,
        value_us: 10,
        round_trips: 100,
        errors,
    };
    assert!(judge(1, Some(100.0), &m(99.0, 0), &g).ok);
    let e = judge(1, Some(100.0), &m(100.0, 2), &g);
    assert!(!e.ok && e.why.unwrap().contains("2 errors"));
    let slow = judge(1, Some(100.0), &m(80.0, 0), &g);
    assert!(!slow.ok && slow.why.unwrap().contains("not held"));
    // Nothing in the span: said so, with no latency shown.
    let empty = Measured {
        achieved: 0.0,
        value_us: 0,
        round_trips: 0,
        errors: 0,
    };
    let none = judge(1, Some(2.0), &empty, &g);
    assert!(!none.ok && none.why.as_ref().unwrap().contains("no round trip"));
    assert!(none.line(&g).contains("p99         -"), "{}", none.line(&g));
    let closed = judge(1, None, &m(100.0, 0), &g);
    assert!(!closed.ok, "closed loop never passes");
    assert!(
        closed.why.unwrap().contains("not judged"),
        "a reason for every step that is not ok"
    );
    let closed = judge(1, None, &m(100.0, 3), &g);
    assert!(closed.why.unwrap().contains("3 errors"));
}

#[test]
fn goal_shown_is_the_goal_given() {
    for g in ["p99=5ms", "p99.9=250us", "p50=1s"] {
        assert_eq!(goal(g).to_string(), g);
    }
}

/// A search that found `rate` (or not), stopped for `stopped_early`.
fn search_result(rate: Option<f64>, stopped_early: Option<StopReason>) -> RateSearch {
    RateSearch {
        tool: TOOL,
        version: "0",
        goal: "p99=1ms".to_owned(),
        percentile: 99.0,
        bound_us: 1_000,
        rate,
        at_upper_end: false,
        steps: Vec::new(),
        best: None,
        failed: None,
        stopped_early,
        ok: rate.is_some() && stopped_early.is_none(),
    }
}

#[test]
fn exit_status_of_a_search_is_0_with_a_rate_130_interrupted_and_1_otherwise() {
    assert_eq!(search_result(Some(500.0), None).exit_code(), 0);
    assert_eq!(search_result(None, None).exit_code(), 1);
    let interrupted = Some(StopReason::Interrupted);
    assert_eq!(search_result(Some(500.0), interrupted).exit_code(), 130);
    assert_eq!(search_result(None, interrupted).exit_code(), 130);
    // A rate, but the search did not run its course.
    let cut = search_result(Some(500.0), Some(StopReason::LossBudget));
    assert!(!cut.ok);
    assert_eq!(cut.exit_code(), 1);
}

/// A judged step at `rate` (`None`: the closed loop) with `errors`.
fn step_at(step: usize, rate: Option<f64>, errors: u64, why: Option<&str>) -> RateStep {
    RateStep {
        step,
        rate,
        achieved: 900.0,
        value_us: 800,
        round_trips: 1_000,
        errors,
        ok: rate.is_some() && why.is_none(),
        why: why.map(str::to_owned),
    }
}

#[test]
fn summary_of_a_found_rate_names_it_and_whether_it_was_the_highest_tried() {
    let mut s = search_result(Some(58_100.0), None);
    s.steps = vec![step_at(1, Some(58_100.0), 0, None)];
    assert_eq!(
        s.summary(),
        "highest rate keeping p99=1ms (p99 at most 1000 us): 58100 msg/s"
    );
    s.at_upper_end = true;
    assert_eq!(
        s.summary(),
        "highest rate keeping p99=1ms (p99 at most 1000 us): 58100 msg/s, the highest \
         tried: it may hold higher (more connections or a higher --rate)"
    );
}

#[test]
fn summary_of_a_closed_loop_with_errors_blames_the_errors_not_the_latency() {
    let mut s = search_result(None, None);
    s.steps = vec![step_at(1, None, 3, Some("3 errors"))];
    let text = s.summary();
    assert!(
        text.starts_with(
            "no rate was tried: the closed-loop step, which finds the upper end, had 3 errors"
        ),
        "{text}"
    );
    // A clean closed loop then rates that all failed: the latency's verdict.
    s.steps = vec![
        step_at(1, None, 0, Some("not judged")),
        step_at(2, Some(900.0), 0, Some("over")),
    ];
    assert_eq!(s.summary(), "no rate tried kept p99=1ms");
    // A rate step with errors is not the closed loop's failure.
    s.steps = vec![step_at(1, Some(900.0), 2, Some("2 errors"))];
    assert_eq!(s.summary(), "no rate tried kept p99=1ms");
}

#[test]
fn step_line_says_failed_upper_end_ok_or_over() {
    let g = goal("p99=1ms");
    let verdict = |s: &RateStep| s.line(&g).split("  ").last().unwrap().trim().to_owned();
    assert_eq!(
        verdict(&step_at(1, None, 2, Some("2 errors (closed loop)"))),
        "failed: 2 errors (closed loop)"
    );
    assert_eq!(
        verdict(&step_at(1, None, 0, Some("not judged"))),
        "upper end"
    );
    assert_eq!(verdict(&step_at(2, Some(900.0), 0, None)), "ok");
    assert_eq!(
        verdict(&step_at(3, Some(900.0), 1, Some("1 errors"))),
        "over: 1 errors"
    );
    let line = step_at(2, Some(900.0), 0, None).line(&g);
    assert_eq!(
        line,
        "step  2         900 msg/s  achieved      900.0/s  p99    800 us  ok"
    );
}

#[test]
fn step_at_exactly_the_held_fraction_and_the_bound_passes_and_just_over_fails() {
    let g = goal("p99=5ms");
    let m = |achieved, value_us| Measured {
        achieved,
        value_us,
        round_trips: 100,
        errors: 0,
    };
    let held = HELD * 1_000.0;
    assert!(judge(1, Some(1_000.0), &m(held, 5_000), &g).ok);
    let over = judge(1, Some(1_000.0), &m(held, 5_001), &g);
    assert!(!over.ok);
    assert_eq!(over.why.as_deref(), Some("p99 5001 us > 5000 us"));
    let short = judge(1, Some(1_000.0), &m(900.0, 10), &g);
    assert_eq!(short.why.as_deref(), Some("rate not held (90% of it)"));
}

#[test]
fn step_rate_of_nothing_or_no_number_is_not_negative_nor_a_panic() {
    assert_eq!(round_rate(0.0), 0.0);
    assert_eq!(round_rate(-3.0), 0.0);
    assert_eq!(round_rate(f64::NAN), 0.0);
    assert_eq!(round_rate(f64::INFINITY), f64::INFINITY);
    assert_eq!(round_rate(123_456.0), 123_000.0);
    assert_eq!(round_rate(100.4), 100.0);
    // Divided back, not multiplied: no 2.3000000000000003 msg/s.
    assert_eq!(round_rate(2.3), 2.3);
    assert_eq!(round_rate(0.35), 0.35);
    assert_eq!(round_rate(98.3), 98.3);
}

#[test]
fn steps_are_numbered_from_1_in_the_order_run() {
    let (steps, _) = search(&goal("p99=5ms"), None, &mut model(2_000.0)).unwrap();
    assert!(steps.len() > 2, "{steps:?}");
    for (i, s) in steps.iter().enumerate() {
        assert_eq!(s.step, i + 1);
    }
}

#[test]
fn closed_loop_with_errors_or_nothing_achieved_ends_the_search() {
    for (achieved, errors) in [(1_000.0, 1), (0.0, 0)] {
        let mut m = Model {
            f: move |_: Option<f64>| Measured {
                achieved,
                value_us: 10,
                round_trips: 100,
                errors,
            },
            judged: 0,
        };
        let (steps, best) = search(&goal("p99=5ms"), None, &mut m).unwrap();
        assert_eq!((steps.len(), best), (1, None), "{achieved} {errors}");
    }
}

#[test]
fn closed_loop_rate_that_keeps_the_goal_is_the_answer_at_the_second_step() {
    let mut fast = Model {
        f: |rate: Option<f64>| Measured {
            achieved: rate.unwrap_or(1_234.5),
            value_us: 10,
            round_trips: 100,
            errors: 0,
        },
        judged: 0,
    };
    let (steps, best) = search(&goal("p99=5ms"), None, &mut fast).unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(best, Some(1));
    assert_eq!(
        steps[1].rate,
        Some(1_230.0),
        "the closed loop's rate, rounded"
    );
}

/// A search whose steps stop (an interrupt) after some have run keeps
/// what they found.
#[test]
fn search_stopped_after_a_passing_step_keeps_that_step_as_the_best() {
    struct Stopping(usize);
    impl Steps for Stopping {
        type Error = ();
        fn measure(&mut self, rate: Option<f64>) -> Result<Option<Measured>, ()> {
            if self.0 == 0 {
                return Ok(None);
            }
            self.0 -= 1;
            let r = rate.unwrap_or(1_000.0);
            Ok(Some(Measured {
                achieved: r,
                value_us: if r <= 600.0 { 10 } else { 100_000 },
                round_trips: 100,
                errors: 0,
            }))
        }
        fn judged(&mut self, _: &RateStep) {}
    }
    // 1000 fails, 500 passes, then the stop: 500 is the best so far.
    let (steps, best) = search(&goal("p99=5ms"), Some(1_000.0), &mut Stopping(2)).unwrap();
    assert_eq!(steps.len(), 2);
    assert_eq!(best, Some(1));
    assert_eq!(steps[1].rate, Some(500.0));
    // Stopped before the first step: nothing.
    let (steps, best) = search(&goal("p99=5ms"), Some(1_000.0), &mut Stopping(0)).unwrap();
    assert!(steps.is_empty() && best.is_none());
}

/// The rates a search from `upper` tries against `model(cap)`, and the one found.
fn rates_tried(upper: f64, cap: f64) -> (Vec<f64>, Option<f64>) {
    let (steps, best) = search(&goal("p99=5ms"), Some(upper), &mut model(cap)).unwrap();
    let rates = steps.iter().map(|s| s.rate.unwrap()).collect();
    (rates, best.and_then(|i| steps[i].rate))
}

#[test]
fn search_from_a_failing_rate_halves_the_bracket_until_within_precision() {
    // 4000 fails; 2000 passes: the bracket [2000, 4000] halves (each mid
    // rounded to 3 digits) until 2000..2070 is within 5 % of 2070.
    assert_eq!(
        rates_tried(4_000.0, 2_000.0),
        (
            vec![
                4_000.0, 2_000.0, 3_000.0, 2_500.0, 2_250.0, 2_130.0, 2_070.0
            ],
            Some(2_000.0)
        )
    );
    // A bracket of exactly 5 % of its upper end (475..500) is narrow enough.
    assert_eq!(
        rates_tried(800.0, 475.0),
        (vec![800.0, 400.0, 600.0, 500.0, 450.0, 475.0], Some(475.0))
    );
}

/// The reports of `steps`, one each, told apart by their `rate` (the
/// closed-loop step's is `None`).
fn reports_of(steps: &[RateStep]) -> Vec<Report> {
    steps
        .iter()
        .map(|s| {
            let mut r = crate::probe::report::tests::empty_report();
            r.rate = s.rate;
            r
        })
        .collect()
}

/// With no rate found, the report kept is the last step's that had errors
/// (what `last step with errors:` prints), not a later step that only
/// missed the latency bound; with no errors in any step, there is none.
#[test]
fn search_without_a_rate_keeps_the_last_step_with_errors_and_none_without_errors() {
    let steps = vec![
        step_at(1, None, 0, Some("closed loop: not judged")),
        step_at(2, Some(800.0), 3, Some("3 errors")),
        step_at(3, Some(400.0), 1, Some("1 error")),
        step_at(4, Some(200.0), 0, Some("p99 1.2 ms over 1 ms")),
    ];
    let reports = reports_of(&steps);
    let s = conclude(goal("p99=1ms"), steps.clone(), None, &reports, None);
    assert_eq!(s.failed.map(|r| r.rate), Some(Some(400.0)));
    assert!(s.best.is_none() && s.rate.is_none() && !s.ok);

    let clean: Vec<RateStep> = steps
        .into_iter()
        .map(|s| RateStep { errors: 0, ..s })
        .collect();
    let s = conclude(goal("p99=1ms"), clean, None, &reports, None);
    assert!(s.failed.is_none(), "no step had errors");
}

/// A rate found keeps that step's report as the best (and no failed one);
/// the search is ok only if it also ran to its end, and the rate is the
/// upper end only when it is the first rate tried.
#[test]
fn search_with_a_rate_is_ok_only_when_it_ran_to_its_end() {
    let steps = vec![
        step_at(1, None, 0, Some("closed loop: not judged")),
        step_at(2, Some(800.0), 2, Some("2 errors")),
        step_at(3, Some(400.0), 0, None),
    ];
    let reports = reports_of(&steps);
    let s = conclude(goal("p99=1ms"), steps.clone(), Some(2), &reports, None);
    assert_eq!(s.rate, Some(400.0));
    assert_eq!(s.best.map(|r| r.rate), Some(Some(400.0)));
    assert!(s.failed.is_none());
    assert!(s.ok && !s.at_upper_end);

    let cut = Some(StopReason::Interrupted);
    let s = conclude(goal("p99=1ms"), steps.clone(), Some(2), &reports, cut);
    assert!(!s.ok, "a rate, but the search was interrupted");
    assert_eq!(s.stopped_early, cut);

    // Nothing found and nothing stopped it: still not ok.
    let s = conclude(goal("p99=1ms"), steps.clone(), None, &reports, None);
    assert!(!s.ok);

    // The first rate tried held: the bound may hold higher too.
    let steps = vec![
        step_at(1, None, 0, Some("closed loop: not judged")),
        step_at(2, Some(800.0), 0, None),
    ];
    let s = conclude(goal("p99=1ms"), steps, Some(1), &reports, None);
    assert!(s.at_upper_end && s.rate == Some(800.0));
}
