//! Parsing of the command-line quantities: byte sizes, size ranges,
//! durations (for `serve` too) and rates, and their display.
//!
//! Sizes are binary: `K`/`k`/`KiB` = 1024, `M`/`MiB` = 1024², `G`/`GiB` = 1024³
//! (an optional trailing `B` is accepted, as in `64B` or `16KB`; it does not
//! change the unit). Throughput is reported in decimal MB/s (10^6 B) and
//! Mbit/s (10^6 bit).

use std::time::Duration;

/// Parses a byte count: `64`, `16K`, `16KiB`, `1M`, `1MiB`, `2G`.
pub fn parse_bytes(s: &str) -> Result<usize, String> {
    let t = s.trim();
    let bad =
        || format!("bad size {s:?}: expected a number with an optional K/KiB/M/MiB/G/GiB suffix");
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| bad())?;
    let mul: u64 = match unit.trim() {
        "" | "B" => 1,
        "k" | "K" | "KB" | "KiB" => 1 << 10,
        "m" | "M" | "MB" | "MiB" => 1 << 20,
        "g" | "G" | "GB" | "GiB" => 1 << 30,
        _ => return Err(bad()),
    };
    n.checked_mul(mul)
        .and_then(|v| usize::try_from(v).ok())
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// Parses a message size or a size range: `64`, `64..=1024`, `64-1K`.
///
/// Returns `(min, max)` with `min <= max`.
pub fn parse_size_range(s: &str) -> Result<(usize, usize), String> {
    let t = s.trim();
    let (lo, hi) = if let Some((a, b)) = t.split_once("..=") {
        (a, b)
    } else if let Some((a, b)) = t.split_once('-') {
        (a, b)
    } else {
        let n = parse_bytes(t)
            .map_err(|e| format!("{e}, or a range MIN..=MAX or MIN-MAX (e.g. 64..=1K, 1-64K)"))?;
        return Ok((n, n));
    };
    let (lo, hi) = (parse_bytes(lo)?, parse_bytes(hi)?);
    if lo > hi {
        return Err(format!(
            "bad size range {s:?}: the minimum exceeds the maximum"
        ));
    }
    Ok((lo, hi))
}

/// Parses a duration, the one grammar of every duration flag of `ricochet
/// serve` and `ricochet probe`.
///
/// Anything [`humantime::parse_duration`] accepts (`5s`, `500ms`, `250us`,
/// `1.5s`, `1m30s`, `2h`, `1 min 30 s`), or a bare number of seconds (`5`,
/// `0.25`, `0`). Negative values and unknown units are rejected with a
/// message that shows the accepted forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad = |why: &str| {
        format!(
            "bad duration {s:?}{why}: expected e.g. 500ms, 5s, 1.5s, 1m30s, 2h, or a number of seconds"
        )
    };
    if t.is_empty() {
        return Err(bad(""));
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = t.parse().map_err(|_| bad(""))?;
        return Duration::try_from_secs_f64(secs).map_err(|_| bad(" (too large)"));
    }
    humantime::parse_duration(t).map_err(|e| bad(&format!(" ({e})")))
}

/// Parses a rate in messages per second: `1000`, `2.5K`, `1M` (decimal here: K = 1000).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    parse_rate_of(s, "messages")
}

/// Parses a rate in connections per second (`--connect-rate`), as [`parse_rate`].
pub fn parse_connect_rate(s: &str) -> Result<f64, String> {
    parse_rate_of(s, "connections")
}

/// Parses a rate of `what` per second.
fn parse_rate_of(s: &str, what: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches("/s");
    let bad = || format!("bad rate {s:?}: expected {what} per second, e.g. 1000 or 10K");
    let (num, mul) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        _ => (t, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    let r = v * mul;
    if r.is_finite() && r > 0.0 {
        Ok(r)
    } else if r == 0.0 {
        Err(format!(
            "bad rate {s:?}: a rate is more than 0 {what} per second (e.g. 0.5, 1000 or 10K); \
             to go as fast as the server answers, leave the option out"
        ))
    } else {
        Err(bad())
    }
}

/// A rate as a reader wants it: `2000`, `2500.5` (no float noise), `0.001`
/// (three significant digits below 1, never `0` for a rate that is not),
/// `1e20` (no hundred digits for a huge one).
pub fn format_rate(r: f64) -> String {
    let a = r.abs();
    if a >= 1e15 {
        return format!("{r:e}");
    }
    if r.fract() == 0.0 {
        return format!("{r:.0}");
    }
    let decimals = if a >= 1.0 {
        2
    } else {
        // 0.001 is 1e-3: 2 - (-3) = 5 decimals, 3 significant digits.
        (2 - a.log10().floor() as i32).clamp(2, 17) as usize
    };
    let s = format!("{r:.decimals$}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

/// A latency in microseconds with a readable unit: `812 us`, `42.50 ms`,
/// `825.3 ms`, `12.35 s` (four significant digits, three in `812 us`).
///
/// Each form is taken while its rounded value has four digits at most, so a
/// value that rounds up into the next form is written in that one (`99 995`
/// µs is `100.0 ms`, not `100.00 ms`). Rounded half up, in integers.
pub fn format_micros(us: u64) -> String {
    if us < 10_000 {
        return format!("{us} us");
    }
    // (microseconds per last digit, decimals, unit)
    for (step, decimals, unit) in [(10, 2, "ms"), (100, 1, "ms"), (1_000, 3, "s")] {
        let r = us.saturating_add(step / 2) / step;
        if r < 10_000 {
            let one = 10u64.pow(decimals);
            return format!(
                "{}.{:0decimals$} {unit}",
                r / one,
                r % one,
                decimals = decimals as usize
            );
        }
    }
    let r = us.saturating_add(5_000) / 10_000;
    format!("{}.{:02} s", r / 100, r % 100)
}

/// A [`Duration`] as the command line would accept it back (`5s`, `1m 30s`, `250ms`).
pub fn format_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_owned();
    }
    humantime::format_duration(d).to_string()
}

/// A byte count in binary units, about three significant digits: `512 B`,
/// `64 KiB`, `1.5 GiB`, `97.7 TiB`.
pub fn format_bytes(n: u128) -> String {
    const UNITS: [&str; 7] = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    let digits = match v {
        _ if unit == 0 || v >= 100.0 => 0,
        _ if v >= 10.0 => 1,
        _ => 2,
    };
    let s = format!("{v:.digits$}");
    let s = if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.')
    } else {
        &s
    };
    format!("{s} {}", UNITS[unit])
}

/// `1 error`, `2 errors`: `n` and `noun`, plural when `n != 1`.
pub fn count_of(n: u64, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_format_in_binary_units() {
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(64 << 10), "64 KiB");
        assert_eq!(format_bytes(3 << 29), "1.5 GiB");
        assert_eq!(format_bytes(1000 * (100 << 30)), "97.7 TiB");
        assert_eq!(format_bytes(1 << 40), "1 TiB");
    }

    #[test]
    fn bytes_parse_with_binary_suffixes() {
        assert_eq!(parse_bytes("64"), Ok(64));
        assert_eq!(parse_bytes("16K"), Ok(16 * 1024));
        assert_eq!(parse_bytes("16KiB"), Ok(16 * 1024));
        assert_eq!(parse_bytes("1MiB"), Ok(1 << 20));
        assert_eq!(parse_bytes("2M"), Ok(2 << 20));
        assert!(parse_bytes("12Q").is_err());
        assert!(parse_bytes("").is_err());
        assert!(parse_bytes("-1").is_err());
    }

    #[test]
    fn size_with_g_suffix_parses_as_gibibytes() {
        assert_eq!(parse_bytes("2G"), Ok(2 << 30));
        assert_eq!(parse_bytes("1GiB"), Ok(1 << 30));
        assert_eq!(parse_bytes("1g"), Ok(1 << 30));
    }

    #[test]
    fn size_range_with_equal_ends_is_that_one_size() {
        assert_eq!(parse_size_range("64-64"), Ok((64, 64)));
        assert_eq!(parse_size_range("1K..=1K"), Ok((1024, 1024)));
    }

    #[test]
    fn size_range_parses_both_spellings() {
        assert_eq!(parse_size_range("64"), Ok((64, 64)));
        assert_eq!(parse_size_range("64..=1K"), Ok((64, 1024)));
        assert_eq!(parse_size_range("64-128"), Ok((64, 128)));
        assert!(parse_size_range("128-64").is_err());
        // Rust's half-open spelling is not one: the error shows both that are.
        let e = parse_size_range("1..64K").unwrap_err();
        assert!(
            e.contains("MIN..=MAX or MIN-MAX") && e.contains("1-64K"),
            "{e}"
        );
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5m"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration("0.25"), Ok(Duration::from_millis(250)));
        for bad in ["fast", "", "-1s", "5x", "s", "1..5s"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("1m30s"), "{bad:?}: {e}");
        }
    }

    #[test]
    fn large_latencies_use_milliseconds_and_seconds() {
        assert_eq!(format_micros(812), "812 us");
        assert_eq!(format_micros(9_999), "9999 us");
        assert_eq!(format_micros(42_500), "42.50 ms");
        assert_eq!(format_micros(825_343), "825.3 ms");
        assert_eq!(format_micros(1_250_000), "1.250 s");
        assert_eq!(format_micros(83_000_000), "83.00 s");
    }

    /// A value that rounds up to the next range's first value is written in
    /// that range's form: `100.0 ms`, not `100.00 ms`; `1.000 s`, not
    /// `1000.0 ms`; `10.00 s`, not `10.000 s`.
    #[test]
    fn latencies_rounding_up_to_the_next_range_take_its_form() {
        for (us, want) in [
            (99_994, "99.99 ms"),
            (99_995, "100.0 ms"),
            (99_999, "100.0 ms"),
            (100_000, "100.0 ms"),
            (999_949, "999.9 ms"),
            (999_950, "1.000 s"),
            (999_999, "1.000 s"),
            (9_999_499, "9.999 s"),
            (9_999_500, "10.00 s"),
            (9_999_999, "10.00 s"),
        ] {
            assert_eq!(format_micros(us), want, "{us}");
        }
    }

    #[test]
    fn counts_agree_in_number() {
        assert_eq!(count_of(1, "error"), "1 error");
        assert_eq!(count_of(0, "error"), "0 errors");
        assert_eq!(count_of(2, "socket"), "2 sockets");
    }

    #[test]
    fn durations_format_as_they_parse() {
        for d in ["5s", "250ms", "1m 30s", "0s"] {
            assert_eq!(format_duration(parse_duration(d).unwrap()), d);
        }
    }

    #[test]
    fn rates_format_without_float_noise() {
        assert_eq!(format_rate(2000.0), "2000");
        assert_eq!(format_rate(21_765.894_643_280_753), "21765.89");
        assert_eq!(format_rate(2.5), "2.5");
    }

    /// `-r 0.001` was shown as `rate 0 msg/s`, and `--find-rate -r 0.5`
    /// found "0 msg/s"; `-r 1e20` printed a hundred-odd digits.
    #[test]
    fn small_and_huge_rates_format_readably() {
        assert_eq!(format_rate(0.5), "0.5");
        assert_eq!(format_rate(0.001), "0.001");
        assert_eq!(format_rate(0.000_000_1), "0.0000001");
        assert_eq!(format_rate(1.0 / 3.0), "0.333");
        assert_eq!(format_rate(0.012_34), "0.0123");
        assert_eq!(format_rate(1e20), "1e20");
        assert_eq!(format_rate(1e308), "1e308");
        for r in ["0.001", "0.5", "0.0000001", "2.5", "21765.89", "1e20"] {
            let v: f64 = r.parse().unwrap();
            assert_eq!(parse_rate(&format_rate(v)), Ok(v), "{r} reads back");
        }
    }

    /// `-r 0` said only "expected messages per second", as if 0 were not one.
    #[test]
    fn zero_rate_error_says_more_than_zero_and_how_to_go_unpaced() {
        for z in ["0", "0.0", "0K"] {
            let e = parse_rate(z).unwrap_err();
            assert!(e.contains("more than 0 messages per second"), "{e}");
            assert!(e.contains("leave the option out"), "{e}");
        }
        let e = parse_connect_rate("0").unwrap_err();
        assert!(e.contains("more than 0 connections per second"), "{e}");
    }

    #[test]
    fn rate_with_m_suffix_parses_as_millions() {
        assert_eq!(parse_rate("1M"), Ok(1e6));
        assert_eq!(parse_rate("2.5M/s"), Ok(2.5e6));
    }

    #[test]
    fn bytes_past_the_largest_unit_stay_in_exbibytes() {
        assert_eq!(format_bytes(1 << 70), "1024 EiB");
    }

    #[test]
    fn bytes_format_with_fewer_decimals_as_they_grow() {
        // 150.3 KiB: no decimal from 100 up.
        assert_eq!(format_bytes(153_907), "150 KiB");
        // 1.75 KiB: two decimals below 10.
        assert_eq!(format_bytes(1792), "1.75 KiB");
    }

    #[test]
    fn rates_parse_with_decimal_suffixes() {
        assert_eq!(parse_rate("1000"), Ok(1000.0));
        assert_eq!(parse_rate("2.5K"), Ok(2500.0));
        assert!(parse_rate("0").is_err());
        assert!(parse_rate("0").unwrap_err().contains("messages per second"));
        assert_eq!(parse_connect_rate("2K"), Ok(2000.0));
        let e = parse_connect_rate("0").unwrap_err();
        assert!(e.contains("connections per second"), "{e}");
    }
}
