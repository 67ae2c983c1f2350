//! `ricochet probe --plot FILE.svg`: the run as a picture.
//!
//! A run: the latency percentile spectrum on top (x: percentile on a log
//! scale of 1/(1-p), as HdrHistogram plots it; y: latency, log scale), with
//! the uncorrected latency beside the corrected one under `--rate`; below,
//! throughput over time and p50/p99 over time from the interval reports.
//! A `--find-rate` search: the goal's percentile against the rate tried,
//! with the bound, then the spectrum of the step that found the rate.

use std::io;
use std::ops::Range;
use std::path::Path;

use plotters::coord::Shift;
use plotters::prelude::*;
use ricochet::probe::units::format_micros;
use ricochet::probe::{IntervalReport, Latency, RateSearch, Report, SpectrumPoint, Which};

const WIDTH: u32 = 1200;
const HEIGHT: u32 = 1000;
const FONT: &str = "sans-serif";
/// Corrected latency (from the scheduled send) and the run's main series.
const MAIN: RGBColor = RGBColor(31, 119, 180);
/// Uncorrected latency (from the actual send).
const OTHER: RGBColor = RGBColor(255, 127, 14);
const GOOD: RGBColor = RGBColor(44, 160, 44);
const BAD: RGBColor = RGBColor(214, 39, 40);
/// The highest percentile axis tick: 99.9999 %.
const MAX_NINES: f64 = 6.0;

type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

fn err(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Draws a run into an SVG file at `path`.
pub(crate) fn run(r: &Report, path: &Path) -> io::Result<()> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(&title(r), (FONT, 22)).map_err(err)?;
    let (top, bottom) = root.split_vertically(HEIGHT * 11 / 20);
    spectrum(&top, r, "Latency by percentile")?;
    let (left, right) = bottom.split_horizontally(WIDTH / 2);
    throughput(&left, r)?;
    latency_over_time(&right, r)?;
    root.present().map_err(err)
}

/// Draws a rate search into an SVG file at `path`.
pub(crate) fn search(s: &RateSearch, path: &Path) -> io::Result<()> {
    let root = SVGBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let heading = match s.rate {
        Some(rate) => format!(
            "ricochet probe --find-rate {}: {} msg/s",
            s.goal,
            ricochet::probe::units::format_rate(rate)
        ),
        None => format!(
            "ricochet probe --find-rate {}: no rate kept the bound",
            s.goal
        ),
    };
    let root = root.titled(&heading, (FONT, 22)).map_err(err)?;
    let (top, bottom) = root.split_vertically(HEIGHT / 2);
    curve(&top, s)?;
    match &s.best {
        Some(best) => spectrum(&bottom, best, "Latency by percentile at the rate found")?,
        None => {
            bottom
                .draw(&Text::new(
                    "no step kept the bound: no spectrum to show",
                    (40, 40),
                    (FONT, 18),
                ))
                .map_err(err)?;
        }
    }
    root.present().map_err(err)
}

/// The figure's title: what ran and how it went.
fn title(r: &Report) -> String {
    let size = if r.size_min == r.size_max {
        format!("{} B", r.size_min)
    } else {
        format!("{}-{} B", r.size_min, r.size_max)
    };
    let load = match r.rate {
        Some(rate) => format!("{} msg/s", ricochet::probe::units::format_rate(rate)),
        None => "closed loop".to_owned(),
    };
    let verdict = if r.ok { "OK" } else { "FAILED" };
    format!(
        "ricochet probe {}: {}, {} connections, {size}, {load}, {:.1} s measured, {verdict}",
        r.target, r.pattern, r.connections, r.measured_secs
    )
}

/// x of a percentile on the "nines" axis: log10(1 / (1 - p)).
fn nines(percentile: f64) -> f64 {
    let rest = (1.0 - percentile / 100.0).max(10f64.powf(-MAX_NINES));
    (-rest.log10()).clamp(0.0, MAX_NINES)
}

/// The label of a "nines" axis position: 0 → 0%, 1 → 90%, 2 → 99%, 3 → 99.9%.
fn nines_label(x: f64) -> String {
    let p = 100.0 * (1.0 - 10f64.powf(-x));
    let decimals = (x.ceil() as usize).saturating_sub(2);
    format!("{p:.decimals$}%")
}

/// A latency axis label: microseconds below 1 ms, milliseconds above.
fn ms_label(ms: f64) -> String {
    if ms < 1.0 {
        format!("{:.0} us", ms * 1000.0)
    } else if ms < 10.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{ms:.0} ms")
    }
}

/// A plain axis number: no decimals from 100 on, fewer as it grows.
fn number_label(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.2}")
    }
}

fn points(s: &[SpectrumPoint]) -> Vec<(f64, f64)> {
    s.iter()
        .map(|p| (nines(p.percentile), (p.micros.max(1)) as f64 / 1000.0))
        .collect()
}

/// Where the percentile axis ends: at the decade after the last percentile
/// below 100 % (99 % at least, 99.9999 % at most); the 100 % point (the
/// maximum) is drawn at its end.
fn nines_end<'a>(points: impl IntoIterator<Item = &'a SpectrumPoint>) -> f64 {
    points
        .into_iter()
        .filter(|p| p.percentile < 100.0)
        .map(|p| nines(p.percentile))
        .fold(2.0, f64::max)
        .ceil()
        .min(MAX_NINES)
}

/// The spectrum's latency axis (ms, log scale) for the latencies `ms`:
/// a factor 1.5 beyond the lowest and the highest (1 us at least).
fn latency_axis(ms: impl Iterator<Item = f64> + Clone) -> Range<f64> {
    let y_max = ms.clone().fold(0.001, f64::max) * 1.5;
    let y_min = ms.fold(f64::MAX, f64::min).max(0.001) / 1.5;
    y_min..y_max
}

/// A percentile people quote, marked on the spectrum.
#[derive(Debug, PartialEq)]
struct Mark {
    /// On the curve: (nines, ms).
    at: (f64, f64),
    /// Where its label starts, right of the point.
    label_at: (f64, f64),
    label: String,
}

/// The marks of p50, p99 and p99.9 of `l` on an axis ending at `x_max`
/// (those beyond it are left out).
fn marks(l: &Latency, x_max: f64) -> Vec<Mark> {
    let mut v = Vec::new();
    for (p, us) in [(50.0, l.p50), (99.0, l.p99), (99.9, l.p999)] {
        let (x, y) = (nines(p), us.max(1) as f64 / 1000.0);
        if x > x_max {
            continue;
        }
        v.push(Mark {
            at: (x, y),
            label_at: (x + 0.04 * x_max, y),
            label: format!("p{p} {}", format_micros(us)),
        });
    }
    v
}

/// The latency percentile spectrum of `r` in `area`.
fn spectrum(area: &Area<'_>, r: &Report, caption: &str) -> io::Result<()> {
    let corrected = r.spectrum(Which::Corrected);
    if corrected.is_empty() {
        area.draw(&Text::new(
            "no round trip was measured: no latency to show",
            (40, 40),
            (FONT, 18),
        ))
        .map_err(err)?;
        return Ok(());
    }
    let paced = r.rate.is_some();
    let uncorrected = if paced {
        r.spectrum(Which::Uncorrected)
    } else {
        Vec::new()
    };
    let x_max = nines_end(corrected.iter().chain(&uncorrected));
    let clip = |v: Vec<(f64, f64)>| -> Vec<(f64, f64)> {
        v.into_iter().map(|(x, y)| (x.min(x_max), y)).collect()
    };
    let main = clip(points(&corrected));
    let other = clip(points(&uncorrected));
    let y = latency_axis(main.iter().chain(&other).map(|p| p.1));
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 20))
        .margin(12)
        .margin_right(40)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, y.log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("Percentile (log scale of 1/(1-p))")
        .y_desc("Round-trip latency (log scale)")
        .x_labels(x_max as usize + 1)
        .x_label_formatter(&|x| nines_label(*x))
        .y_label_formatter(&|y| ms_label(*y))
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    let main_label = if paced {
        "from the scheduled send (corrected)"
    } else {
        "round trip"
    };
    chart
        .draw_series(LineSeries::new(main.iter().copied(), MAIN.stroke_width(3)))
        .map_err(err)?
        .label(main_label)
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], MAIN.stroke_width(3)));
    if !other.is_empty() {
        chart
            .draw_series(LineSeries::new(
                other.iter().copied(),
                OTHER.stroke_width(2),
            ))
            .map_err(err)?
            .label("from the actual send (uncorrected)")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], OTHER.stroke_width(2)));
    }
    // The percentiles people quote, marked on the main curve.
    for m in marks(&r.latency_us, x_max) {
        chart
            .draw_series(std::iter::once(Circle::new(m.at, 5, MAIN.filled())))
            .map_err(err)?;
        chart
            .draw_series(std::iter::once(Text::new(m.label, m.label_at, (FONT, 14))))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .label_font((FONT, 14))
        .draw()
        .map_err(err)
}

/// Throughput per interval.
fn throughput(area: &Area<'_>, r: &Report) -> io::Result<()> {
    let by_bytes = r.pattern == "stream";
    let value = |i: &IntervalReport| {
        if by_bytes {
            i.mb_per_sec
        } else {
            i.round_trips_per_sec
        }
    };
    let (caption, y_desc) = if by_bytes {
        ("Throughput over time", "MB/s echoed (M = 10^6)")
    } else {
        ("Throughput over time", "Round trips per second")
    };
    over_time(
        area,
        r,
        caption,
        y_desc,
        |i| vec![Some(value(i))],
        &[("", MAIN)],
    )
}

/// p50 and p99 per interval (and the uncorrected p99 under `--rate`).
fn latency_over_time(area: &Area<'_>, r: &Report) -> io::Result<()> {
    let paced = r.rate.is_some();
    let ms = |us: u64| us as f64 / 1000.0;
    let mut series = vec![("p99", BAD), ("p50", MAIN)];
    if paced {
        series.push(("p99 uncorrected", OTHER));
    }
    over_time(
        area,
        r,
        "Latency over time",
        "Latency (ms)",
        |i| {
            let l = &i.latency_us;
            let has = l.count > 0;
            let mut v = vec![has.then(|| ms(l.p99)), has.then(|| ms(l.p50))];
            if paced {
                v.push(
                    i.latency_uncorrected_us
                        .filter(|u| u.count > 0)
                        .map(|u| ms(u.p99)),
                );
            }
            v
        },
        &series,
    )
}

/// A time chart of the intervals: one line per series (`values` gives each
/// interval's value per series, `None` for a gap).
fn over_time(
    area: &Area<'_>,
    r: &Report,
    caption: &str,
    y_desc: &str,
    values: impl Fn(&IntervalReport) -> Vec<Option<f64>>,
    series: &[(&str, RGBColor)],
) -> io::Result<()> {
    if r.intervals.is_empty() {
        area.draw(&Text::new(
            "no interval reports (give --interval)",
            (40, 40),
            (FONT, 16),
        ))
        .map_err(err)?;
        return Ok(());
    }
    let x_min = r.intervals.first().map_or(0.0, |i| i.start_secs);
    let x_max = r
        .intervals
        .last()
        .map_or(1.0, |i| i.end_secs)
        .max(x_min + 1e-3);
    let rows: Vec<(f64, Vec<Option<f64>>)> = r
        .intervals
        .iter()
        .map(|i| (i.end_secs, values(i)))
        .collect();
    let y_max = rows
        .iter()
        .flat_map(|(_, v)| v.iter().flatten())
        .fold(0.0_f64, |a, &b| a.max(b))
        .max(1e-3)
        * 1.15;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, (FONT, 20))
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(x_min..x_max, 0.0..y_max)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("Time since the start (s)")
        .y_desc(y_desc)
        .y_label_formatter(&|y| number_label(*y))
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    let mut labelled = false;
    for (k, (name, color)) in series.iter().enumerate() {
        let pts: Vec<(f64, f64)> = rows
            .iter()
            .filter_map(|(t, v)| v.get(k).copied().flatten().map(|y| (*t, y)))
            .collect();
        chart
            .draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled())))
            .map_err(err)?;
        let drawn = chart
            .draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2)))
            .map_err(err)?;
        if !name.is_empty() {
            labelled = true;
            let c = *color;
            drawn.label(*name).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 24, y)], c.stroke_width(2))
            });
        }
    }
    if labelled {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .border_style(BLACK)
            .background_style(WHITE.mix(0.85))
            .label_font((FONT, 14))
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

/// The axes of the rate curve for its points (rate, ms, ok) and the bound
/// (ms): rates from 0 to 8 % past the highest, latency (log scale) from
/// half the lowest to twice the highest, the bound included.
fn curve_axes(pts: &[(f64, f64, bool)], bound: f64) -> (Range<f64>, Range<f64>) {
    let x_max = pts.iter().map(|p| p.0).fold(1.0, f64::max) * 1.08;
    let y_max = pts.iter().map(|p| p.1).fold(bound, f64::max) * 2.0;
    let y_min = pts.iter().map(|p| p.1).fold(bound, f64::min) / 2.0;
    (0.0..x_max, y_min..y_max)
}

/// The goal's percentile against the rate of each step.
fn curve(area: &Area<'_>, s: &RateSearch) -> io::Result<()> {
    let pts: Vec<(f64, f64, bool)> = s
        .steps
        .iter()
        // A step that measured nothing has no latency to draw.
        .filter(|st| st.round_trips > 0)
        .filter_map(|st| {
            st.rate
                .map(|r| (r, st.value_us.max(1) as f64 / 1000.0, st.ok))
        })
        .collect();
    if pts.is_empty() {
        area.draw(&Text::new("no paced step ran", (40, 40), (FONT, 18)))
            .map_err(err)?;
        return Ok(());
    }
    let bound = s.bound_us.max(1) as f64 / 1000.0;
    let (x, y) = curve_axes(&pts, bound);
    let x_max = x.end;
    let mut chart = ChartBuilder::on(area)
        .caption(
            format!("p{} latency by rate (each step a run)", s.percentile),
            (FONT, 20),
        )
        .margin(12)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(x, y.log_scale())
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("Rate asked for (messages/s)")
        .x_label_formatter(&|x| number_label(*x))
        .y_desc(format!(
            "p{} from the scheduled send (log scale)",
            s.percentile
        ))
        .y_label_formatter(&|y| ms_label(*y))
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new(
            [(0.0, bound), (x_max, bound)],
            BAD.stroke_width(1),
        ))
        .map_err(err)?
        .label(format!("bound {}", format_micros(s.bound_us)))
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], BAD.stroke_width(1)));
    let mut sorted = pts.clone();
    sorted.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
    chart
        .draw_series(LineSeries::new(
            sorted.iter().map(|p| (p.0, p.1)),
            MAIN.stroke_width(2),
        ))
        .map_err(err)?
        .label("measured")
        .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 24, y)], MAIN.stroke_width(2)));
    chart
        .draw_series(pts.iter().map(|&(x, y, ok)| {
            Circle::new((x, y), 6, if ok { GOOD.filled() } else { BAD.filled() })
        }))
        .map_err(err)?;
    if let Some(rate) = s.rate {
        let y = pts.iter().find(|p| p.0 == rate).map_or(bound, |p| p.1);
        chart
            .draw_series(std::iter::once(Text::new(
                format!("{} msg/s", ricochet::probe::units::format_rate(rate)),
                (rate, y * 1.3),
                (FONT, 15),
            )))
            .map_err(err)?;
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .border_style(BLACK)
        .background_style(WHITE.mix(0.85))
        .label_font((FONT, 14))
        .draw()
        .map_err(err)
}

#[cfg(test)]
mod tests;
