//! The alternating set's results: samples read from the yardstick's JSON
//! lines, their medians per server and case, and the ratios the targets
//! are stated in.

use std::collections::BTreeMap;

use super::{BUSY_POLL, REFERENCES, SERVERS};

/// One measurement: throughput (round trips/s or MB/s) and server CPU per
/// unit (µs per round trip or CPU-seconds per GB).
#[derive(Clone, Copy, Debug)]
struct Sample {
    rate: f64,
    cpu: f64,
}

/// A number after `"key":` in a JSON line (after `from`), or `None`.
pub(super) fn json_num(line: &str, key: &str) -> Option<f64> {
    let at = line.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = line[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+'))
        .collect();
    digits.parse().ok()
}

/// A string after `"key":"` in a JSON line.
fn json_str<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(&format!("\"{key}\":\""))? + key.len() + 4;
    line[at..].split('"').next()
}

fn sample(line: &str) -> Option<(String, String, Sample)> {
    let label = json_str(line, "label")?.to_owned();
    let case = json_str(line, "case")?.to_owned();
    if json_num(line, "errors_total")? != 0.0 {
        return None;
    }
    let server = &line[line.find("\"server\":")?..];
    let cpu_s = json_num(server, "cpu_s")?;
    let window = json_num(line, "window_s")?;
    let s = if case.starts_with("st") {
        let mbps = json_num(line, "mb_per_s")?;
        Sample {
            rate: mbps,
            cpu: cpu_s / (mbps * window / 1000.0),
        }
    } else {
        let rts = json_num(line, "round_trips")?;
        Sample {
            rate: json_num(line, "rtt_per_s")?,
            cpu: cpu_s / rts * 1e6,
        }
    };
    Some((label, case, s))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        f64::NAN
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians per server and case, and the ratios the targets are stated in.
pub(super) fn summary(jsonl: &str) -> String {
    let mut all: BTreeMap<(String, String), Vec<Sample>> = BTreeMap::new();
    let mut cases: Vec<String> = Vec::new();
    for line in jsonl.lines() {
        if let Some((label, case, s)) = sample(line) {
            if !cases.contains(&case) {
                cases.push(case.clone());
            }
            all.entry((label, case)).or_default().push(s);
        }
    }
    let med = |label: &str, case: &str, f: fn(&Sample) -> f64| {
        all.get(&(label.to_owned(), case.to_owned()))
            .map(|v| median(v.iter().map(f).collect()))
    };
    let fmt = |v: Option<f64>| v.map_or("-".to_owned(), |x| format!("{x:.1}"));
    let ratio = |a: Option<f64>, b: Option<f64>| match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}x", a / b),
        _ => "-".to_owned(),
    };
    let mut out = String::from(
        "\nMedians (pingpong: round trips/s, server CPU µs per round trip; stream: MB/s, server CPU-s per GB)\n\n",
    );
    out += "| case | server | runs | throughput | CPU per unit |\n|---|---|---|---|---|\n";
    for case in &cases {
        for s in SERVERS.iter().chain(BUSY_POLL) {
            if let Some(v) = all.get(&(s.to_string(), case.clone())) {
                out += &format!(
                    "| {case} | {s} | {} | {} | {} |\n",
                    v.len(),
                    fmt(med(s, case, |x| x.rate)),
                    fmt(med(s, case, |x| x.cpu))
                );
            }
        }
    }
    out += "\nRatios of medians (throughput: higher is better; CPU: lower is better)\n\n";
    out += "| case | best reference | uring / best | uring / c-epoll | uring / c-uring | epoll / c-epoll | uring CPU / c-epoll CPU | epoll CPU / c-epoll CPU |\n|---|---|---|---|---|---|---|---|\n";
    for case in &cases {
        let best = REFERENCES
            .iter()
            .filter_map(|r| med(r, case, |x| x.rate).map(|v| (*r, v)))
            .max_by(|a, b| a.1.total_cmp(&b.1));
        let uring = med("ricochet-uring", case, |x| x.rate);
        let epoll = med("ricochet-epoll", case, |x| x.rate);
        out += &format!(
            "| {case} | {} | {} | {} | {} | {} | {} | {} |\n",
            best.map_or("-".to_owned(), |(n, v)| format!("{n} {v:.1}")),
            ratio(uring, best.map(|b| b.1)),
            ratio(uring, med("c-epoll", case, |x| x.rate)),
            ratio(uring, med("c-uring", case, |x| x.rate)),
            ratio(epoll, med("c-epoll", case, |x| x.rate)),
            ratio(
                med("ricochet-uring", case, |x| x.cpu),
                med("c-epoll", case, |x| x.cpu)
            ),
            ratio(
                med("ricochet-epoll", case, |x| x.cpu),
                med("c-epoll", case, |x| x.cpu)
            ),
        );
    }
    let off = |case: &String| BUSY_POLL.iter().any(|s| med(s, case, |x| x.rate).is_some());
    if cases.iter().any(off) {
        out += "\nBusy polling on (`--busy-poll 50us`) / off (the default), same sitting\n\n";
        out += "| case | uring on / off | uring CPU on / off | epoll on / off | epoll CPU on / off |\n|---|---|---|---|---|\n";
        for case in cases.iter().filter(|c| off(c)) {
            let r = |on: &str, off: &str, f: fn(&Sample) -> f64| {
                ratio(med(on, case, f), med(off, case, f))
            };
            out += &format!(
                "| {case} | {} | {} | {} | {} |\n",
                r("ricochet-uring-bp50", "ricochet-uring", |x| x.rate),
                r("ricochet-uring-bp50", "ricochet-uring", |x| x.cpu),
                r("ricochet-epoll-bp50", "ricochet-epoll", |x| x.rate),
                r("ricochet-epoll-bp50", "ricochet-epoll", |x| x.cpu),
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_takes_medians_and_ratios_per_case() {
        let line = |label: &str, rate: f64, cpu: f64| {
            format!(
                "{{\"rep\":1,\"case\":\"pp100\",\"label\":\"{label}\",\"window_s\":1.0,\"round_trips\":{rate},\"rtt_per_s\":{rate},\"load_cpu_s\":9,\"server\":{{\"pgid\":1,\"cpu_s\":{cpu}}},\"errors_total\":0}}"
            )
        };
        let text = [
            line("c-epoll", 100.0, 0.001),
            line("c-epoll", 300.0, 0.003),
            line("c-epoll", 200.0, 0.002),
            line("ricochet-uring", 260.0, 0.0013),
        ]
        .join("\n");
        let s = summary(&text);
        assert!(s.contains("| pp100 | c-epoll | 3 | 200.0 | 10.0 |"), "{s}");
        assert!(
            s.contains("| pp100 | c-epoll 200.0 | 1.30x | 1.30x |"),
            "{s}"
        );
        assert!(s.contains("| 0.50x |"), "{s}");
    }

    #[test]
    fn summary_compares_busy_polling_on_and_off_when_both_ran() {
        let line = |label: &str, rate: f64, cpu: f64| {
            format!(
                "{{\"rep\":1,\"case\":\"pp1\",\"label\":\"{label}\",\"window_s\":1.0,\"round_trips\":{rate},\"rtt_per_s\":{rate},\"load_cpu_s\":9,\"server\":{{\"pgid\":1,\"cpu_s\":{cpu}}},\"errors_total\":0}}"
            )
        };
        let only_off = line("ricochet-uring", 100.0, 0.002);
        assert!(!summary(&only_off).contains("Busy polling"));
        let text = [only_off, line("ricochet-uring-bp50", 300.0, 0.003)].join("\n");
        let s = summary(&text);
        assert!(
            s.contains("| pp1 | ricochet-uring-bp50 | 1 | 300.0 | 10.0 |"),
            "{s}"
        );
        assert!(s.contains("| pp1 | 3.00x | 0.50x | - | - |"), "{s}");
    }
}
