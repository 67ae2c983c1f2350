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
