//! The verdict's unit tests: reports built from hand-made tallies, in modules
//! by subject; the builders are here.

use super::super::report::Latency;
use super::super::spec::Pattern;
use super::hints::SERVE_BUFFER;
use super::*;

mod datagram;
mod general;
mod rates;
mod stream;
mod tls_section;

fn tls(host: &str) -> Target {
    Target::Tls(super::super::TlsTarget {
        addrs: vec!["127.0.0.1:7".parse().unwrap()],
        host: host.to_owned(),
    })
}

fn tally() -> Tally {
    Tally::new(super::super::tally::Window {
        start: Instant::ZERO,
        end: None,
        paced: false,
    })
    .unwrap()
}

fn tcp() -> Target {
    Target::Tcp(vec!["127.0.0.1:7".parse().unwrap()].into())
}

fn facts(finish_at: Option<Instant>) -> RunFacts {
    RunFacts {
        threads: 1,
        started_at: String::new(),
        window_start: Instant::ZERO,
        finish_at,
        stopped_early: None,
        // The workers drained after the end of a duration.
        ended_at: finish_at.map_or(Instant::from_millis(60_000), |f| {
            f + ricochet_core::Duration::from_millis(500)
        }),
    }
}

/// A tally of 64-byte messages sent and echoed at these instants (ms).
fn echoed_at(ms: &[u64]) -> Tally {
    let mut t = tally();
    let d = ricochet_core::Duration::from_micros(300);
    for &at in ms {
        let now = Instant::from_micros(at * 1000 + 300);
        t.messages_sent += 1;
        t.messages_verified += 1;
        t.bytes_sent += 64;
        t.bytes_verified += 64;
        t.verified(now, 64);
        t.round_trip(now, d, d);
    }
    t
}

fn report(rate: Option<f64>, stop: Stop, finish_at: Option<Instant>, t: Tally) -> Report {
    let mut spec = ProbeSpec::new(tcp());
    spec.rate = rate;
    spec.stop = stop;
    build_report(&spec, facts(finish_at), t.clone(), &[t])
}

fn near(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-9
}

/// Significant digits of `x` as JSON writes it.
fn digits(x: &serde_json::Number) -> usize {
    let text = x.to_string();
    let mantissa = text.split(['e', 'E']).next().unwrap_or("");
    let ds = mantissa.chars().filter(char::is_ascii_digit);
    let ds: String = ds.skip_while(|&c| c == '0').collect();
    ds.trim_end_matches('0').len()
}

fn floats(v: &serde_json::Value, path: &str, out: &mut Vec<(String, usize)>) {
    match v {
        serde_json::Value::Number(n) if n.is_f64() => out.push((path.to_owned(), digits(n))),
        serde_json::Value::Object(m) => {
            for (k, v) in m {
                floats(v, &format!("{path}.{k}"), out);
            }
        }
        serde_json::Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                floats(v, &format!("{path}[{i}]"), out);
            }
        }
        _ => {}
    }
}

fn report_of(spec: &ProbeSpec, t: Tally) -> Report {
    build_report(spec, facts(None), t.clone(), &[t])
}

/// [`report_of`] a run that lasted 2 s, as `--duration 2s` says.
fn report_over_2s(spec: &ProbeSpec, t: Tally) -> Report {
    build_report(
        spec,
        facts(Some(Instant::from_millis(2000))),
        t.clone(),
        &[t],
    )
}

fn hints_of(spec: &ProbeSpec, t: Tally) -> Vec<String> {
    build_report(spec, facts(None), t.clone(), &[t]).hints
}

/// Whether any of the hints `h` holds `s`.
fn any_has(h: &[String], s: &str) -> bool {
    h.iter().any(|x| x.contains(s))
}
