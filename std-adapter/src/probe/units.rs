//! Parsing of the probe's command-line quantities: byte sizes, size ranges,
//! durations and rates.
//!
//! Sizes are binary: `K`/`k`/`KiB` = 1024, `M`/`MiB` = 1024², `G`/`GiB` = 1024³
//! (an optional trailing `B` is accepted, as in `64B` or `16KB`; it does not
//! change the unit). Throughput is always reported in decimal MB (10^6 B).

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
        let n = parse_bytes(t)?;
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

/// Parses a duration: `5s`, `500ms`, `250us`, `2m`, `1h`, `1.5s`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let bad =
        || format!("bad duration {s:?}: expected e.g. 5s, 500ms, 250us, 2m or a number of seconds");
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| bad())?;
    let secs = match unit.trim() {
        "" | "s" | "sec" | "secs" => v,
        "ms" => v / 1e3,
        "us" | "µs" => v / 1e6,
        "m" | "min" => v * 60.0,
        "h" => v * 3600.0,
        _ => return Err(bad()),
    };
    Duration::try_from_secs_f64(secs).map_err(|_| bad())
}

/// Parses a rate in messages per second: `1000`, `2.5K`, `1M` (decimal here: K = 1000).
pub fn parse_rate(s: &str) -> Result<f64, String> {
    let t = s.trim().trim_end_matches("/s");
    let bad = || format!("bad rate {s:?}: expected messages per second, e.g. 1000 or 10K");
    let (num, mul) = match t.chars().last() {
        Some('k' | 'K') => (&t[..t.len() - 1], 1e3),
        Some('M') => (&t[..t.len() - 1], 1e6),
        _ => (t, 1.0),
    };
    let v: f64 = num.parse().map_err(|_| bad())?;
    let r = v * mul;
    if r.is_finite() && r > 0.0 {
        Ok(r)
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn size_range_parses_both_spellings() {
        assert_eq!(parse_size_range("64"), Ok((64, 64)));
        assert_eq!(parse_size_range("64..=1K"), Ok((64, 1024)));
        assert_eq!(parse_size_range("64-128"), Ok((64, 128)));
        assert!(parse_size_range("128-64").is_err());
    }

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert!(parse_duration("fast").is_err());
    }

    #[test]
    fn rates_parse_with_decimal_suffixes() {
        assert_eq!(parse_rate("1000"), Ok(1000.0));
        assert_eq!(parse_rate("2.5K"), Ok(2500.0));
        assert!(parse_rate("0").is_err());
    }
}
