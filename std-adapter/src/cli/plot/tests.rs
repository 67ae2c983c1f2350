//! The plots: their pure parts (axes, labels, marks) and the SVG file a
//! user opens (what is drawn, and where), for runs measured against our
//! server on loopback and for rate searches built by hand.

use ricochet::probe::{ProbeSpec, RateStep, Stop, Target};
use ricochet::serve::{Endpoint, Server, ServerConfig};

use super::*;

/// The SVG colours of the series.
const MAIN_SVG: &str = "#1F77B4";
const OTHER_SVG: &str = "#FF7F0E";
const GOOD_SVG: &str = "#2CA02C";
const BAD_SVG: &str = "#D62728";

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9 * b.abs().max(1.0)
}

/// 200 round trips on 2 connections against our server on loopback, paced
/// at 4,000 messages/s with `paced`, with three interval reports set by
/// hand (the middle one without round trips).
fn measured(paced: bool) -> Report {
    let server = Server::bind(ServerConfig {
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        ..ServerConfig::default()
    })
    .expect("bind our server");
    let handle = server.spawn().expect("spawn our server");
    let addr = handle
        .local_addrs()
        .iter()
        .find_map(|e| match e {
            Endpoint::Tcp(a) => Some(*a),
            _ => None,
        })
        .expect("tcp address");
    let mut spec = ProbeSpec::new(Target::Tcp(vec![addr].into()));
    spec.connections = 2;
    spec.stop = Stop::Count(100);
    spec.rate = paced.then_some(4000.0);
    let r = ricochet::probe::run(&spec);
    handle.shutdown();
    let _ = handle.join();
    let mut r = r.expect("run");
    assert_eq!(r.round_trips, 200, "{r:?}");
    r.intervals = (0..3)
        .map(|i| interval(i, if i == 1 { 0 } else { 100 }))
        .collect();
    r
}

/// Interval `i` (a second long) with `count` round trips: p50 2.5 ms, p99
/// 7.3 ms, from the actual send 1.1 and 3.3 ms.
fn interval(i: u64, count: u64) -> IntervalReport {
    let latency = |p50, p99| Latency {
        count,
        p50,
        p99,
        ..Latency::default()
    };
    IntervalReport {
        index: i,
        start_secs: i as f64,
        end_secs: i as f64 + 1.0,
        round_trips: count,
        round_trips_per_sec: count as f64,
        bytes: count * 64,
        mb_per_sec: (count * 64) as f64 / 1e6,
        connections_completed: 0,
        connections_per_sec: 0.0,
        latency_us: latency(2_500, 7_300),
        latency_uncorrected_us: Some(latency(1_100, 3_300)),
        errors: 0,
        errors_total: 0,
        lost: None,
    }
}

/// The SVG `draw` writes into a temporary file.
fn drawn(draw: impl FnOnce(&Path) -> io::Result<()>) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("plot.svg");
    draw(&path).expect("plot drawn");
    let svg = std::fs::read_to_string(&path).expect("plot written");
    assert!(svg.starts_with("<svg"), "{}", &svg[..svg.len().min(200)]);
    svg
}

/// The number in attribute `name` of an element's opening tag.
fn attr(tag: &str, name: &str) -> f64 {
    let key = format!(" {name}=\"");
    let at = tag.find(&key).unwrap_or_else(|| panic!("{name} in {tag}")) + key.len();
    let v = tag[at..].split('"').next().unwrap_or_default();
    v.parse()
        .unwrap_or_else(|_| panic!("{name}={v:?} in {tag}"))
}

/// Where the text `text` is drawn: (x, y) of each `<text>` holding it.
fn texts_at(svg: &str, text: &str) -> Vec<(f64, f64)> {
    svg.split("<text")
        .skip(1)
        .filter_map(|e| {
            let (tag, rest) = e.split_once(">\n")?;
            (rest.split('\n').next() == Some(text)).then(|| (attr(tag, "x"), attr(tag, "y")))
        })
        .collect()
}

/// The one place `text` is drawn.
fn text_at(svg: &str, text: &str) -> (f64, f64) {
    let at = texts_at(svg, text);
    assert_eq!(at.len(), 1, "{text:?} drawn at {at:?}");
    at[0]
}

/// The centres of the filled circles of radius `r` in `color`.
fn circles(svg: &str, r: u32, color: &str) -> Vec<(f64, f64)> {
    svg.split("<circle")
        .skip(1)
        .filter_map(|e| {
            let tag = e.split("/>").next()?;
            (attr(tag, "r") == f64::from(r) && tag.contains(&format!(" fill=\"{color}\"")))
                .then(|| (attr(tag, "cx"), attr(tag, "cy")))
        })
        .collect()
}

#[test]
fn nines_axis_maps_percentiles_to_decades() {
    assert_eq!(nines(0.0), 0.0);
    assert!((nines(90.0) - 1.0).abs() < 1e-9);
    assert!((nines(99.9) - 3.0).abs() < 1e-9);
    assert_eq!(nines(100.0), MAX_NINES);
    assert_eq!(nines_label(0.0), "0%");
    assert_eq!(nines_label(2.0), "99%");
    assert_eq!(nines_label(3.0), "99.9%");
    assert_eq!(nines_label(5.0), "99.999%");
}

#[test]
fn latency_labels_pick_a_readable_unit() {
    assert_eq!(ms_label(0.25), "250 us");
    assert_eq!(ms_label(2.5), "2.5 ms");
    assert_eq!(ms_label(250.0), "250 ms");
}

/// Pins where the latency labels change: milliseconds from 1 ms on, whole
/// ones from 10 ms on.
#[test]
fn latency_labels_switch_to_ms_at_1_ms_and_drop_the_decimal_at_10_ms() {
    assert_eq!(ms_label(0.999), "999 us");
    assert_eq!(ms_label(1.0), "1.0 ms");
    assert_eq!(ms_label(9.9), "9.9 ms");
    assert_eq!(ms_label(10.0), "10 ms");
}

/// Pins the plain axis numbers: two decimals below 10, one below 100,
/// none from 100 on, whatever the sign.
#[test]
fn number_labels_drop_decimals_as_the_number_grows() {
    assert_eq!(number_label(0.5), "0.50");
    assert_eq!(number_label(9.99), "9.99");
    assert_eq!(number_label(10.0), "10.0");
    assert_eq!(number_label(99.5), "99.5");
    assert_eq!(number_label(100.0), "100");
    assert_eq!(number_label(-150.0), "-150");
    assert_eq!(number_label(-12.0), "-12.0");
}

/// Pins the figure's title: target, pattern, connections, one size or a
/// range, the load and the verdict.
#[test]
fn title_names_the_run_its_sizes_its_load_and_its_verdict() {
    let mut r = measured(false);
    r.size_min = 64;
    r.size_max = 64;
    r.ok = true;
    let t = title(&r);
    assert!(t.starts_with("ricochet probe tcp://127.0.0.1:"), "{t}");
    assert!(
        t.contains(": pingpong, 2 connections, 64 B, closed loop, "),
        "{t}"
    );
    assert!(t.ends_with(" s measured, OK"), "{t}");
    r.size_min = 16;
    r.rate = Some(2000.0);
    r.ok = false;
    let t = title(&r);
    assert!(t.contains(", 16-64 B, 2000 msg/s, "), "{t}");
    assert!(t.ends_with(", FAILED"), "{t}");
}

/// Pins the spectrum's coordinates: x on the nines axis, y in
/// milliseconds (1 us at least: the log scale has no 0).
#[test]
fn spectrum_points_are_nines_and_milliseconds() {
    let p = points(&[
        SpectrumPoint {
            percentile: 90.0,
            micros: 2_500,
        },
        SpectrumPoint {
            percentile: 50.0,
            micros: 0,
        },
    ]);
    assert_eq!(p.len(), 2);
    assert!(close(p[0].0, 1.0) && close(p[0].1, 2.5), "{p:?}");
    assert!(close(p[1].0, nines(50.0)) && close(p[1].1, 0.001), "{p:?}");
}

/// Pins the end of the percentile axis: the decade after the last
/// percentile below 100 % (the maximum does not stretch it), 99 % at
/// least, 99.9999 % at most.
#[test]
fn percentile_axis_ends_at_the_decade_after_the_last_percentile_below_100() {
    let at = |ps: &[f64]| {
        let v: Vec<SpectrumPoint> = ps
            .iter()
            .map(|&percentile| SpectrumPoint {
                percentile,
                micros: 1,
            })
            .collect();
        nines_end(&v)
    };
    assert_eq!(at(&[50.0, 99.5, 100.0]), 3.0);
    assert_eq!(at(&[50.0, 90.0, 100.0]), 2.0);
    assert_eq!(at(&[50.0, 99.999_999_9, 100.0]), MAX_NINES);
}

/// Pins the spectrum's latency axis: a factor 1.5 below the lowest point
/// and above the highest, 1 us at least.
#[test]
fn latency_axis_leaves_a_factor_of_1_5_around_the_curve() {
    let y = latency_axis([0.2, 3.0, 0.9].into_iter());
    assert!(close(y.start, 0.2 / 1.5) && close(y.end, 4.5), "{y:?}");
    let y = latency_axis([0.0].into_iter());
    assert!(close(y.start, 0.001 / 1.5) && close(y.end, 0.0015), "{y:?}");
}

/// Pins the quoted percentiles on the spectrum: p50, p99 and p99.9 on the
/// curve in milliseconds, labelled just right of the point, and left out
/// past the end of the axis (not drawn outside it); one at the very end
/// is kept.
#[test]
fn marks_quote_p50_p99_and_p999_within_the_percentile_axis() {
    let l = Latency {
        p50: 250,
        p99: 1_500,
        p999: 12_000,
        ..Latency::default()
    };
    let m = marks(&l, 2.0);
    let labels: Vec<&str> = m.iter().map(|m| m.label.as_str()).collect();
    assert_eq!(labels, ["p50 250 us", "p99 1500 us"]);
    assert!(
        close(m[0].at.0, nines(50.0)) && close(m[0].at.1, 0.25),
        "{m:?}"
    );
    assert!(close(m[1].at.1, 1.5), "{m:?}");
    assert!(
        close(m[0].label_at.0, nines(50.0) + 0.08) && close(m[0].label_at.1, 0.25),
        "{m:?}"
    );
    let m = marks(&l, nines(99.9));
    assert_eq!(m.len(), 3, "{m:?}");
    assert_eq!(m[2].label, "p99.9 12.00 ms");
    assert!(close(m[2].at.1, 12.0), "{m:?}");
}

/// Pins the axes of the rate curve: from 0 to 8 % past the highest rate;
/// from half the lowest latency to twice the highest, the bound included.
#[test]
fn rate_curve_axes_hold_every_step_and_the_bound_with_room() {
    let (x, y) = curve_axes(&[(1000.0, 1.5, true), (2000.0, 7.3, false)], 4.5);
    assert!(x.start == 0.0 && close(x.end, 2160.0), "{x:?}");
    assert!(close(y.start, 0.75) && close(y.end, 14.6), "{y:?}");
    let (_, y) = curve_axes(&[(1000.0, 1.5, true)], 0.5);
    assert!(close(y.start, 0.25) && close(y.end, 3.0), "{y:?}");
}

/// Pins the layout of a run's figure: the spectrum across the top, the
/// throughput and the latency over time side by side below its 55 %.
#[test]
fn run_plot_has_the_spectrum_on_top_and_two_time_panels_side_by_side() {
    let r = measured(false);
    let svg = drawn(|p| run(&r, p));
    let top = text_at(&svg, "Latency by percentile");
    assert!(top.1 < 100.0, "{top:?}");
    let left = text_at(&svg, "Throughput over time");
    let right = text_at(&svg, "Latency over time");
    for (x, y) in [left, right] {
        assert!((550.0..650.0).contains(&y), "{left:?} {right:?}");
        assert!((x % 600.0 - 300.0).abs() < 50.0, "{left:?} {right:?}");
    }
    assert!(left.0 < 600.0 && right.0 > 600.0, "{left:?} {right:?}");
}

/// Pins a closed-loop run's figure: one latency curve (there is no
/// schedule to correct for), throughput in round trips per second.
#[test]
fn closed_loop_plot_has_one_latency_curve_and_round_trips_per_second() {
    let r = measured(false);
    let svg = drawn(|p| run(&r, p));
    text_at(&svg, "round trip");
    text_at(&svg, "Round trips per second");
    assert!(!svg.contains("uncorrected"), "an uncorrected curve");
    assert!(!svg.contains("MB/s"), "throughput in MB/s");
}

/// Pins the stream pattern's throughput panel: megabytes per second.
#[test]
fn stream_plot_shows_throughput_in_megabytes_per_second() {
    let mut r = measured(false);
    r.pattern = "stream";
    let svg = drawn(|p| run(&r, p));
    text_at(&svg, "MB/s echoed (M = 10^6)");
    assert!(!svg.contains("Round trips per second"));
}

/// Pins the latency-over-time panel: a point per interval with round
/// trips for p50 and p99 (and, paced, the uncorrected p99), none for an
/// interval without (a gap, not a 0), and a legend naming them.
#[test]
fn latency_over_time_has_a_point_per_interval_with_round_trips_and_a_legend() {
    for paced in [false, true] {
        let r = measured(paced);
        let svg = drawn(|p| run(&r, p));
        assert_eq!(circles(&svg, 3, BAD_SVG).len(), 2, "p99, paced: {paced}");
        // p50 beside throughput's point for each of the 3 intervals.
        assert_eq!(circles(&svg, 3, MAIN_SVG).len(), 2 + 3, "paced: {paced}");
        let uncorrected = circles(&svg, 3, OTHER_SVG).len();
        assert_eq!(uncorrected, if paced { 2 } else { 0 });
        text_at(&svg, "p99");
        text_at(&svg, "p50");
        assert_eq!(texts_at(&svg, "p99 uncorrected").len(), usize::from(paced));
    }
}

/// A search that found 1,000 msg/s against p99=4.5ms: a closed-loop step,
/// 1,000/s within the bound, 2,000/s over it, and 3,000/s that measured
/// nothing.
fn search_result() -> RateSearch {
    let step = |step, rate, value_us, round_trips, ok| RateStep {
        step,
        rate,
        achieved: 0.0,
        value_us,
        round_trips,
        errors: 0,
        ok,
        why: None,
    };
    RateSearch {
        tool: "ricochet-probe",
        version: "0",
        goal: "p99=4.5ms".to_owned(),
        percentile: 99.0,
        bound_us: 4_500,
        rate: Some(1000.0),
        at_upper_end: false,
        steps: vec![
            step(1, None, 1_200, 100, false),
            step(2, Some(1000.0), 1_500, 100, true),
            step(3, Some(2000.0), 7_300, 100, false),
            step(4, Some(3000.0), 0, 0, false),
        ],
        best: Some(measured(true)),
        failed: None,
        stopped_early: None,
        ok: true,
    }
}

/// Pins a search's figure: the curve of the paced steps that measured
/// something on top (in green within the bound, in red over it, each on
/// its side of the bound's line), the rate found labelled just above its
/// point, the spectrum of that step below the middle.
#[test]
fn search_plot_draws_the_steps_against_the_bound_and_the_spectrum_found() {
    let s = search_result();
    let svg = drawn(|p| search(&s, p));
    text_at(&svg, "ricochet probe --find-rate p99=4.5ms: 1000 msg/s");
    let top = text_at(&svg, "p99 latency by rate (each step a run)");
    assert!(top.1 < 100.0, "{top:?}");
    let below = text_at(&svg, "Latency by percentile at the rate found");
    assert!((500.0..600.0).contains(&below.1), "{below:?}");
    let good = circles(&svg, 6, GOOD_SVG);
    let bad = circles(&svg, 6, BAD_SVG);
    assert!(good.len() == 1 && bad.len() == 1, "{good:?} {bad:?}");
    let (good, bad) = (good[0], bad[0]);
    let bound_line = svg
        .split("<polyline")
        .skip(1)
        .map(|e| e.split("/>").next().unwrap_or_default())
        .find(|t| t.contains(&format!("stroke=\"{BAD_SVG}\"")) && t.contains("stroke-width=\"1\""))
        .expect("the bound's line");
    let ys: Vec<f64> = bound_line
        .split("points=\"")
        .nth(1)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.split(',').nth(1)?.parse().ok())
        .collect();
    assert!(ys.len() == 2 && ys[0] == ys[1], "{bound_line}");
    let bound_y = ys[0];
    assert!(
        good.1 > bound_y && bad.1 < bound_y,
        "green {good:?}, bound at y {bound_y}, red {bad:?}"
    );
    // The label 1.3x above its point on the log scale that puts 1.5 ms and
    // the bound (4.5 ms, 3x) where they are.
    let per_ln = (good.1 - bound_y) / 3f64.ln();
    let label = text_at(&svg, "1000 msg/s");
    let want = good.1 - per_ln * 1.3f64.ln();
    assert!(
        (label.1 - want).abs() <= 3.0,
        "label at {label:?}, want y {want}"
    );
    assert!(
        (label.0 - good.0).abs() <= 1.0,
        "label at {label:?}, point {good:?}"
    );
}

/// The (top, bottom) of the vertical axis line of the lower-left panel
/// (`right`: lower-right).
fn lower_y_axis(svg: &str, right: bool) -> (f64, f64) {
    let axes: Vec<(f64, f64)> = svg
        .split("<polyline")
        .skip(1)
        .filter_map(|e| {
            let tag = e.split("/>").next()?;
            if !tag.contains("stroke=\"#000000\"") {
                return None;
            }
            let pts: Vec<(f64, f64)> = tag
                .split("points=\"")
                .nth(1)?
                .split_whitespace()
                .filter_map(|p| {
                    let (x, y) = p.split_once(',')?;
                    Some((x.parse().ok()?, y.trim_end_matches('"').parse().ok()?))
                })
                .collect();
            let [(x0, y0), (x1, y1)] = pts[..] else {
                return None;
            };
            let vertical = x0 == x1 && (y1 - y0).abs() > 100.0;
            (vertical && y0.min(y1) > 550.0 && (x0 > 600.0) == right)
                .then_some((y0.min(y1), y0.max(y1)))
        })
        .collect();
    assert_eq!(axes.len(), 1, "{axes:?}");
    axes[0]
}

/// Pins the headroom of the time panels: the highest point at 1/1.15 of
/// the height (not at the top edge, nor above it).
#[test]
fn time_panels_leave_15_percent_above_the_highest_point() {
    let r = measured(false);
    let svg = drawn(|p| run(&r, p));
    for (right, color) in [(false, MAIN_SVG), (true, BAD_SVG)] {
        let (top, bottom) = lower_y_axis(&svg, right);
        let highest = circles(&svg, 3, color)
            .iter()
            .filter(|c| (c.0 > 600.0) == right)
            .map(|c| c.1)
            .fold(f64::MAX, f64::min);
        let at = (bottom - highest) / (bottom - top);
        assert!((at - 1.0 / 1.15).abs() < 0.01, "right: {right}: at {at}");
    }
}

/// The texts drawn at x in `x` and y in `y` that read as numbers (a
/// trailing `%` allowed), with where they are.
fn labels_in(svg: &str, x: Range<f64>, y: Range<f64>) -> Vec<(String, (f64, f64))> {
    svg.split("<text")
        .skip(1)
        .filter_map(|e| {
            let (tag, rest) = e.split_once(">\n")?;
            let text = rest.split('\n').next()?;
            let at = (attr(tag, "x"), attr(tag, "y"));
            (x.contains(&at.0) && y.contains(&at.1)).then(|| (text.to_owned(), at))
        })
        .filter(|(t, _)| t.trim_end_matches('%').parse::<f64>().is_ok())
        .collect()
}

/// Pins the percentile axis's labels: one per decade, 0 % to where the
/// axis ends (99.9 % for an axis of 3 decades), nothing in between.
#[test]
fn percentile_axis_is_labelled_at_each_decade() {
    let r = measured(false);
    let x_max = nines_end(&r.spectrum(Which::Corrected));
    let want: Vec<String> = (0..=x_max as usize)
        .map(|n| nines_label(n as f64))
        .collect();
    let svg = drawn(|p| run(&r, p));
    let got: Vec<String> = labels_in(&svg, 0.0..1200.0, 450.0..550.0)
        .into_iter()
        .map(|(t, _)| t)
        .collect();
    assert_eq!(got, want);
}

/// Pins the unit of the latency-over-time panel: milliseconds (the
/// intervals' p99 of 7,300 us tops the axis at 7 or 8).
#[test]
fn latency_over_time_is_in_milliseconds() {
    let r = measured(false);
    let svg = drawn(|p| run(&r, p));
    let highest = labels_in(&svg, 600.0..700.0, 600.0..1000.0)
        .iter()
        .filter_map(|(t, (_, y))| (*y < 950.0).then(|| t.parse::<f64>().ok())?)
        .fold(0.0, f64::max);
    assert!((7.0..=8.4).contains(&highest), "highest label {highest}");
}
