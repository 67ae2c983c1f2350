//! The latency histogram as HdrHistogram's percentile distribution text
//! (`.hgrm`, what `outputPercentileDistribution` prints, wrk2's `--u_latency`
//! and HdrHistogram's online plotter read), and as points for plotting.
//!
//! Written here because the `hdrhistogram` crate records and iterates but
//! has no text output. Values are in milliseconds (the recorded
//! microseconds divided by 1000), five percentile ticks per half distance,
//! three decimals: the same layout as HdrHistogram's Java implementation.

use std::io::{self, Write};

use hdrhistogram::Histogram;

use super::report::Report;

/// Microseconds per unit written (milliseconds).
const SCALE: f64 = 1_000.0;
/// Percentile ticks per half distance to 100 %.
const TICKS: u32 = 5;

/// Which latency of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Which {
    /// From each message's due instant (the scheduled send under `--rate`).
    Corrected,
    /// From each message's actual send.
    Uncorrected,
}

/// One point of a percentile spectrum.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SpectrumPoint {
    /// Percentile, 0 to 100.
    pub percentile: f64,
    /// Latency at that percentile, microseconds.
    pub micros: u64,
}

impl Report {
    fn histogram(&self, which: Which) -> Option<&Histogram<u64>> {
        let h = self.histograms.as_ref()?;
        Some(match which {
            Which::Corrected => &h.corrected,
            Which::Uncorrected => &h.uncorrected,
        })
    }

    /// The latency at `percentile` (0 to 100), microseconds; 0 without round trips.
    pub fn latency_at(&self, percentile: f64, which: Which) -> u64 {
        self.histogram(which)
            .filter(|h| !h.is_empty())
            .map_or(0, |h| h.value_at_percentile(percentile))
    }

    /// Writes the latency distribution in HdrHistogram's `.hgrm` text
    /// format (values in milliseconds). An empty histogram gives the header
    /// and the summary lines only.
    pub fn write_hgrm(&self, which: Which, out: &mut dyn Write) -> io::Result<()> {
        match self.histogram(which) {
            Some(h) => write_distribution(h, out),
            None => write_distribution(&super::tally::histogram()?, out),
        }
    }

    /// The latency percentile spectrum (HdrHistogram's iteration, five ticks
    /// per half distance), for plotting; empty without round trips.
    pub fn spectrum(&self, which: Which) -> Vec<SpectrumPoint> {
        let Some(h) = self.histogram(which).filter(|h| !h.is_empty()) else {
            return Vec::new();
        };
        h.iter_quantiles(TICKS)
            .map(|v| SpectrumPoint {
                percentile: v.quantile_iterated_to() * 100.0,
                micros: v.value_iterated_to(),
            })
            .collect()
    }
}

/// Sub-buckets per bucket of an HdrHistogram with `sigfig` significant digits.
fn sub_buckets(sigfig: u8) -> u64 {
    let single_unit = 2 * 10u64.pow(u32::from(sigfig));
    single_unit.next_power_of_two()
}

fn write_distribution(h: &Histogram<u64>, out: &mut dyn Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>12} {:>14} {:>10} {:>14}\n",
        "Value", "Percentile", "TotalCount", "1/(1-Percentile)"
    )?;
    let total = h.len();
    if total > 0 {
        for v in h.iter_quantiles(TICKS) {
            let value = v.value_iterated_to() as f64 / SCALE;
            let q = v.quantile_iterated_to();
            let count = (v.quantile() * total as f64).round() as u64;
            if q < 1.0 {
                writeln!(
                    out,
                    "{value:12.3} {q:2.12} {count:10} {:14.2}",
                    1.0 / (1.0 - q)
                )?;
            } else {
                writeln!(out, "{value:12.3} {q:2.12} {count:10}")?;
            }
        }
    }
    let (mean, stdev, max) = if total > 0 {
        (h.mean() / SCALE, h.stdev() / SCALE, h.max() as f64 / SCALE)
    } else {
        (0.0, 0.0, 0.0)
    };
    writeln!(
        out,
        "#[Mean    = {mean:12.3}, StdDeviation   = {stdev:12.3}]"
    )?;
    writeln!(out, "#[Max     = {max:12.3}, Total count    = {total:12}]")?;
    writeln!(
        out,
        "#[Buckets = {:12}, SubBuckets     = {:12}]",
        h.buckets(),
        sub_buckets(h.sigfig())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(h: &Histogram<u64>) -> String {
        let mut out = Vec::new();
        write_distribution(h, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn hgrm_has_header_rising_percentiles_and_footer_in_milliseconds() {
        let mut h = super::super::tally::histogram().unwrap();
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        let t = text(&h);
        let mut lines = t.lines();
        assert_eq!(
            lines.next(),
            Some("       Value     Percentile TotalCount 1/(1-Percentile)")
        );
        assert_eq!(lines.next(), Some(""));
        let rows: Vec<Vec<&str>> = t
            .lines()
            .skip(2)
            .take_while(|l| !l.starts_with('#'))
            .map(|l| l.split_whitespace().collect())
            .collect();
        assert!(rows.len() > 20, "{t}");
        let mut last = (0.0, 0.0, 0u64);
        for r in &rows {
            let (v, p, c): (f64, f64, u64) = (
                r[0].parse().unwrap(),
                r[1].parse().unwrap(),
                r[2].parse().unwrap(),
            );
            assert!(
                v >= last.0 && p >= last.1 && c >= last.2,
                "{r:?} after {last:?}"
            );
            last = (v, p, c);
        }
        let final_row = rows.last().unwrap();
        assert_eq!(final_row.len(), 3, "the 100 % line has no 1/(1-p)");
        assert_eq!(final_row[1], "1.000000000000");
        assert_eq!(final_row[2], "10000");
        // 10 000 us = 10 ms, within 3 significant digits.
        assert!((final_row[0].parse::<f64>().unwrap() - 10.0).abs() < 0.01);
        assert!(
            t.contains("#[Max     =       10.007, Total count    =        10000]"),
            "{t}"
        );
        assert!(t.contains("SubBuckets     =         2048]"), "{t}");
    }

    #[test]
    fn hgrm_of_nothing_is_header_and_zero_summary() {
        let t = text(&super::super::tally::histogram().unwrap());
        assert!(t.starts_with("       Value"));
        assert!(t.contains("Total count    =            0]"));
    }

    /// A report whose corrected latencies are `corrected` us, and whose
    /// uncorrected ones are ten times them.
    fn report_of(corrected: &[u64]) -> Report {
        use super::super::report::Histograms;
        let mut c = super::super::tally::histogram().unwrap();
        let mut u = super::super::tally::histogram().unwrap();
        for &us in corrected {
            c.record(us).unwrap();
            u.record(us * 10).unwrap();
        }
        let mut r = super::super::report::tests::empty_report();
        r.histograms = Some(std::sync::Arc::new(Histograms {
            corrected: c,
            uncorrected: u,
        }));
        r
    }

    #[test]
    fn latency_at_a_percentile_reads_the_histogram_asked_for() {
        let r = report_of(&(1..=100).collect::<Vec<_>>());
        assert_eq!(r.latency_at(50.0, Which::Corrected), 50);
        assert_eq!(r.latency_at(99.0, Which::Corrected), 99);
        assert_eq!(r.latency_at(99.0, Which::Uncorrected), 990);
        let none = report_of(&[]);
        assert_eq!(none.latency_at(99.0, Which::Corrected), 0);
        let mut gone = report_of(&[5]);
        gone.histograms = None;
        assert_eq!(gone.latency_at(99.0, Which::Corrected), 0);
    }

    #[test]
    fn spectrum_of_a_run_rises_to_its_largest_latency_at_100_percent() {
        let r = report_of(&(1..=1_000).collect::<Vec<_>>());
        let points = r.spectrum(Which::Uncorrected);
        assert!(points.len() > 10, "{points:?}");
        assert!(points[0].percentile < 50.0, "{points:?}");
        let last = points.last().unwrap();
        assert_eq!(last.percentile, 100.0);
        // 10 000 us, within 3 significant digits.
        assert!((10_000..=10_007).contains(&last.micros), "{last:?}");
        assert!(
            points
                .windows(2)
                .all(|w| w[0].percentile <= w[1].percentile)
        );
        assert_eq!(r.spectrum(Which::Corrected).last().unwrap().micros, 1_000);
        assert!(report_of(&[]).spectrum(Which::Corrected).is_empty());
    }

    #[test]
    fn hgrm_file_of_a_report_is_its_histogram_or_an_empty_one() {
        let r = report_of(&(1..=10_000).collect::<Vec<_>>());
        let mut out = Vec::new();
        r.write_hgrm(Which::Corrected, &mut out).unwrap();
        let mut h = super::super::tally::histogram().unwrap();
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        assert_eq!(String::from_utf8(out).unwrap(), text(&h));
        let mut gone = r.clone();
        gone.histograms = None;
        let mut out = Vec::new();
        gone.write_hgrm(Which::Uncorrected, &mut out).unwrap();
        let empty = super::super::tally::histogram().unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), text(&empty));
    }

    #[test]
    fn hgrm_summary_gives_mean_and_deviation_in_milliseconds() {
        let mut h = super::super::tally::histogram().unwrap();
        for us in 1..=10_000u64 {
            h.record(us).unwrap();
        }
        let t = text(&h);
        let line = t.lines().find(|l| l.starts_with("#[Mean")).unwrap();
        let nums: Vec<f64> = line
            .split(['=', ',', ']'])
            .filter_map(|w| w.trim().parse().ok())
            .collect();
        // 1 to 10 000 us: mean 5.0005 ms, deviation 2.887 ms.
        assert_eq!(nums.len(), 2, "{line}");
        assert!((nums[0] - 5.0005).abs() < 0.01, "{line}");
        assert!((nums[1] - 2.887).abs() < 0.01, "{line}");
    }
}
