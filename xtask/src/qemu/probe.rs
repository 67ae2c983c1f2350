//! `ricochet probe` against the guest: one run, runs over every mode at
//! once, reconnects, waiting for the first verified echo; and reading what
//! comes back: the probe's JSON fields and the firmware's stats counts.

use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::vm::{Ports, Qemu};

/// Runs `ricochet probe` with `args`; returns its stdout, fails on a non-zero exit.
/// The outer `timeout` is 120 s, or the run's `--duration` plus 120 s.
pub(crate) fn probe(ricochet: &Path, args: &[&str]) -> Result<String, String> {
    let duration = args
        .iter()
        .position(|a| *a == "--duration")
        .and_then(|i| args.get(i + 1))
        .and_then(|d| d.strip_suffix('s'))
        .and_then(|d| d.parse::<u64>().ok())
        .unwrap_or(0);
    let out =
        crate::signals::probe_in_group(Command::new("timeout"), duration + 120, ricochet, args)
            .map_err(|e| format!("cannot run ricochet probe: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if out.status.success() {
        Ok(stdout)
    } else {
        Err(format!(
            "`ricochet probe {}` failed ({}):\n{stdout}{}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Two paced ping-pong connections on the raw port and one on each other
/// mode's, at the same time, each verified (`count` messages each).
pub(super) fn every_mode_at_once(
    ricochet: &Path,
    ports: &Ports,
    count: &str,
) -> Result<(), String> {
    let runs = [("raw", "2"), ("lines", "1"), ("frames", "1")].map(|(mode, connections)| {
        let args: Vec<String> = [
            &ports.tcp(mode),
            "--mode",
            mode,
            "--connections",
            connections,
            "--pattern",
            "pingpong",
            "--size",
            "200",
            "--count",
            count,
            "--timeout",
            "5s",
            "--quiet",
        ]
        .map(String::from)
        .to_vec();
        let bin = ricochet.to_path_buf();
        thread::spawn(move || {
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            probe(&bin, &refs).map_err(|e| format!("{mode}: {e}"))
        })
    });
    for run in runs {
        run.join()
            .map_err(|_| "probe thread panicked".to_string())??;
    }
    Ok(())
}

/// `n` back-to-back connections, each one verified echo; returns the time taken.
pub(super) fn reconnect_storm(ricochet: &Path, tcp: &str, n: u32) -> Result<Duration, String> {
    let t = Instant::now();
    for i in 0..n {
        let seed = i.to_string();
        probe(
            ricochet,
            &[
                tcp,
                "--count",
                "1",
                "--size",
                "64",
                "--seed",
                &seed,
                "--timeout",
                "5s",
                "--quiet",
            ],
        )
        .map_err(|e| format!("reconnect {i}: {e}"))?;
    }
    Ok(t.elapsed())
}

pub(crate) fn wait_until_echoing(
    ricochet: &Path,
    tcp: &str,
    qemu: &mut Qemu,
) -> Result<(), String> {
    let start = Instant::now();
    loop {
        if !qemu.alive() {
            return Err(format!("QEMU exited during boot:\n{}", qemu.log_text()));
        }
        match probe(
            ricochet,
            &[
                tcp,
                "--count",
                "1",
                "--size",
                "16",
                "--timeout",
                "1s",
                "--quiet",
            ],
        ) {
            Ok(_) => return Ok(()),
            Err(e) if start.elapsed() > Duration::from_secs(60) => {
                return Err(format!("the firmware did not echo within 60 s: {e}"));
            }
            Err(_) => thread::sleep(Duration::from_millis(200)),
        }
    }
}

/// A number or string field's raw value from the probe's JSON report
/// (`"name":value`), first occurrence.
pub(crate) fn json_field(json: &str, name: &str) -> Option<String> {
    let rest = json.split(&format!("\"{name}\":")).nth(1)?;
    let value: String = rest
        .chars()
        .take_while(|c| *c != ',' && *c != '}')
        .collect();
    Some(value.trim_matches('"').to_string())
}

/// The number just before `what` in a stats line: 3 for " rate limited" in
/// "..., 3 rate limited, ...".
pub(super) fn count_before(line: &str, what: &str) -> Option<u64> {
    let at = line.find(what)?;
    line[..at].rsplit(' ').next()?.parse().ok()
}

/// `n` and `what`, plural unless `n` is 1: "1 reconnect", "2 reconnects".
pub(super) fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("{n} {what}")
    } else {
        format!("{n} {what}s")
    }
}

pub(super) fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::qemu::tests::STATS;

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1, "reconnect"), "1 reconnect");
        assert_eq!(count(0, "reconnect"), "0 reconnects");
        assert_eq!(count(10_000, "reconnect"), "10000 reconnects");
    }

    #[test]
    fn probe_json_fields_and_stats_counts_are_read() {
        let json = r#"{"bytes_verified":1001192,"errors":{"loss":1},"datagrams":{"sent":1414,"verified":1411,"lost":3,"corrupt":0}}"#;
        assert_eq!(json_field(json, "lost").as_deref(), Some("3"));
        assert_eq!(
            json_field(json, "bytes_verified").as_deref(),
            Some("1001192")
        );
        assert_eq!(json_field(json, "missing"), None);
        let last = STATS.lines().last().unwrap();
        assert_eq!(count_before(last, " oversize"), Some(3));
        assert_eq!(count_before(last, " rate limited"), Some(4));
    }
}
