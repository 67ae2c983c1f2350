//! `cargo xtask bench-probe [REPS] [SECS]`: `ricochet probe` against the
//! yardstick's load generator (`echo-load`, ../shared/bench) in the
//! standard cases, with and without `--interval 1s`, and the probe's own
//! send lateness under `--rate` at 10k and 100k messages/s. Not a CI stage:
//! benchmarks are measured, not asserted.
//!
//! All three load generators hit the same server (the C epoll reference),
//! alternating, the order rotated each repetition; the tables give medians.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::vm::free_port;
use crate::{Ctx, run};

/// The standard cases of the yardstick: (name, pattern, connections, size).
const CASES: &[(&str, &str, u32, &str)] = &[
    ("pp1", "pingpong", 1, "64"),
    ("pp100", "pingpong", 100, "64"),
    ("pp1000", "pingpong", 1000, "64"),
    ("st1", "stream", 1, "65536"),
    ("st16", "stream", 16, "16384"),
];

/// Paced loads whose send lateness is reported: (label, probe arguments).
const PACED: &[(&str, &[&str])] = &[
    (
        "10k msg/s, pingpong, 4 connections",
        &["-c", "4", "-r", "10K"],
    ),
    (
        "10k msg/s, stream, 1 connection",
        &["-c", "1", "-p", "stream", "-r", "10K"],
    ),
    (
        "100k msg/s, stream, 1 connection",
        &["-c", "1", "-p", "stream", "-r", "100K"],
    ),
    (
        "100k msg/s, pingpong, 32 connections",
        &["-c", "32", "-r", "100K"],
    ),
];

/// The C epoll reference server, killed (by its handle) when dropped.
struct Server {
    child: Child,
    port: u16,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `cmd` with the open-file limit raised to the hard limit (C=1000).
fn unlimited(cmd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c")
        .arg("ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; exec \"$@\"")
        .arg("sh")
        .arg(cmd)
        .args(args);
    c
}

fn start_server(bin: &Path) -> Result<Server, String> {
    let port = free_port()?;
    let child = unlimited(bin, &[&port.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    let server = Server { child, port };
    let start = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if start.elapsed() > Duration::from_secs(10) {
            return Err(format!("{} did not listen on {port}", bin.display()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

/// What one load generator run gave: its stdout, and the CPU time it used
/// (user + system, seconds: the shell's `times` after it exits).
struct Measured {
    out: String,
    cpu_secs: f64,
}

/// `0m1.250s` as seconds.
fn shell_secs(s: &str) -> Option<f64> {
    let (m, rest) = s.split_once('m')?;
    let secs = rest.strip_suffix('s')?;
    Some(m.parse::<f64>().ok()? * 60.0 + secs.parse::<f64>().ok()?)
}

/// Runs a load generator (bounded by `timeout`, with the open-file limit
/// raised); returns its stdout and CPU time.
fn measure(cmd: &Path, args: &[&str], secs: u32) -> Result<Measured, String> {
    let limit = (secs + 60).to_string();
    let c = cmd.to_string_lossy().into_owned();
    let script =
        "ulimit -n \"$(ulimit -Hn)\" 2>/dev/null; timeout -k 5 \"$@\"; s=$?; echo; times; exit $s";
    let out = Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg("sh")
        .arg(&limit)
        .arg(&c)
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {c}: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!(
            "{c} {} failed ({}): {text}",
            args.join(" "),
            out.status
        ));
    }
    // `times`: the shell's own user and system time, then its children's.
    let mut lines: Vec<&str> = text.trim_end().lines().collect();
    let children = lines.pop().unwrap_or("");
    let cpu_secs = children.split_whitespace().filter_map(shell_secs).sum();
    lines.pop();
    Ok(Measured {
        out: lines.join("\n").trim().to_owned(),
        cpu_secs,
    })
}

/// The number after `"key":` in `json` (after `within`, if given).
fn number(json: &str, within: Option<&str>, key: &str) -> Option<f64> {
    let scope = match within {
        Some(w) => &json[json.find(&format!("\"{w}\":"))?..],
        None => json,
    };
    let at = scope.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = scope[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | 'e' | 'E' | '+'))
        .collect();
    digits.parse().ok()
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn show(v: f64, stream: bool) -> String {
    if stream {
        format!("{v:.0}")
    } else if v >= 10_000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.0}")
    }
}

/// One load generator's figures for one case, over the repetitions.
#[derive(Default)]
struct Figures {
    /// Round trips/s or MB/s.
    rate: Vec<f64>,
    /// CPU per unit of work: us per round trip, or s per GB echoed.
    cpu: Vec<f64>,
}

/// Runs one repetition of `case` with load generator `which` (0 echo-load,
/// 1 the probe, 2 the probe with `--interval 1s`).
fn run_case(
    tools: &Tools,
    case: (&str, u32, &str),
    which: usize,
) -> Result<(f64, Option<f64>), String> {
    let (pattern, conns, size) = case;
    let stream = pattern == "stream";
    let c = conns.to_string();
    let (d, dur) = (tools.secs.to_string(), format!("{}s", tools.secs));
    let (m, rate, work) = if which == 0 {
        let m = measure(
            &tools.echo_load,
            &[
                "-a",
                &tools.addr,
                "-c",
                &c,
                "-s",
                size,
                "-d",
                &d,
                "-w",
                "1",
                "-m",
                pattern,
            ],
            tools.secs,
        )?;
        let rate = number(&m.out, None, if stream { "mb_per_s" } else { "rtt_per_s" });
        // echo-load counts the window only; its CPU time covers the warmup
        // too, so the warmup's work is estimated at the window's rate.
        let work = rate.map(|r| {
            let per_sec = if stream { r * 1e6 } else { r };
            per_sec * (tools.secs as f64 + 1.0)
        });
        (m, rate, work)
    } else {
        let mut args = vec![
            "probe",
            &tools.target,
            "-c",
            &c,
            "-s",
            size,
            "-d",
            &dur,
            "--warmup",
            "1s",
            "-p",
            pattern,
            "--json",
        ];
        if which == 2 {
            args.extend(["--interval", "1s"]);
        }
        let m = measure(&tools.probe, &args, tools.secs)?;
        let rate = number(
            &m.out,
            None,
            if stream {
                "mb_per_sec"
            } else {
                "round_trips_per_sec"
            },
        );
        // Everything it did, warmup included, as its CPU time is.
        let work = number(
            &m.out,
            None,
            if stream {
                "bytes_verified"
            } else {
                "messages_verified"
            },
        );
        (m, rate, work)
    };
    let rate = rate.ok_or_else(|| "no figure in the output".to_owned())?;
    let cpu = work.filter(|w| *w > 0.0).map(|w| {
        if stream {
            m.cpu_secs / (w / 1e9)
        } else {
            m.cpu_secs * 1e6 / w
        }
    });
    Ok((rate, cpu))
}

/// What every run uses.
struct Tools {
    echo_load: PathBuf,
    probe: PathBuf,
    addr: String,
    target: String,
    secs: u32,
}

/// `[REPS] [SECS]` (defaults 3 and 4), each at least 1, checked before
/// anything is built.
fn reps_and_secs(args: &[String]) -> Result<(usize, u32), String> {
    const USAGE: &str = "usage: cargo xtask bench-probe [REPS] [SECS]";
    if let Some(extra) = args.get(2) {
        return Err(format!("unexpected argument {extra:?}; {USAGE}"));
    }
    let reps = args.first().map_or("3", String::as_str);
    let reps: usize = reps
        .parse()
        .ok()
        .filter(|r| (1..=1000).contains(r))
        .ok_or_else(|| format!("REPS {reps:?}: expected a whole number from 1 to 1000; {USAGE}"))?;
    let secs = args.get(1).map_or("4", String::as_str);
    let secs: u32 = secs
        .parse()
        .ok()
        .filter(|s| (1..=3600).contains(s))
        .ok_or_else(|| format!("SECS {secs:?}: expected whole seconds from 1 to 3600; {USAGE}"))?;
    Ok((reps, secs))
}

pub(crate) fn bench_probe(ctx: &Ctx, extra: &[String]) -> Result<(), String> {
    let (reps, secs) = reps_and_secs(extra)?;
    let bench = crate::bench::yardstick(&ctx.root, "ref/build.sh")?;
    run(
        &ctx.root,
        "cargo",
        &["build", "--release", "--locked", "-p", "ricochet"],
        &[],
    )?;
    run(&bench, "./ref/build.sh", &[], &[])?;
    let work = std::env::var_os("BENCH_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ricochet-bench"));
    let server = start_server(&work.join("epoll-echo"))?;
    let addr = format!("127.0.0.1:{}", server.port);
    let tools = Tools {
        echo_load: work.join("target/release/echo-load"),
        probe: crate::ricochet_release(ctx),
        target: format!("tcp://{addr}"),
        addr,
        secs,
    };

    outln!(
        "\n## ricochet probe vs echo-load (C epoll server, {secs} s after 1 s warmup; median, then every rep)\n"
    );
    outln!(
        "| case | echo-load | probe | probe -i 1s | probe / echo-load | -i 1s / without | CPU: echo-load / probe / probe -i 1s | CPU -i 1s / without |"
    );
    outln!("|---|---|---|---|---|---|---|---|");
    for &(name, pattern, conns, size) in CASES {
        let stream = pattern == "stream";
        let mut figures: [Figures; 3] = Default::default();
        for rep in 0..reps {
            for k in 0..3 {
                let which = (k + rep) % 3;
                let (rate, cpu) = run_case(&tools, (pattern, conns, size), which)
                    .map_err(|e| format!("{name}: {e}"))?;
                figures[which].rate.push(rate);
                figures[which].cpu.extend(cpu);
            }
        }
        let cell = |v: &mut Vec<f64>| {
            let all: Vec<String> = v.iter().map(|&x| show(x, stream)).collect();
            let m = median(v);
            (m, format!("**{}** ({})", show(m, stream), all.join(" / ")))
        };
        let [mut e, mut p, mut i] = figures;
        let ((er, ec), (pr, pc), (ir, ic)) =
            (cell(&mut e.rate), cell(&mut p.rate), cell(&mut i.rate));
        let (ecpu, pcpu, icpu) = (median(&mut e.cpu), median(&mut p.cpu), median(&mut i.cpu));
        let (unit, cpu_unit) = if stream {
            ("MB/s", "s/GB")
        } else {
            ("rt/s", "us/rt")
        };
        outln!(
            "| {name} ({unit}) | {ec} | {pc} | {ic} | {:.2} | {:.3} | {ecpu:.2} / {pcpu:.2} / {icpu:.2} {cpu_unit} | {:.3} |",
            pr / er,
            ir / pr,
            icpu / pcpu
        );
    }

    outln!("\n## Send lateness under --rate ({secs} s, {reps} reps, median of each figure)\n");
    outln!("| load | achieved (msg/s) | lateness p50 (us) | p99 | p99.9 | max |");
    outln!("|---|---|---|---|---|---|");
    let dur = format!("{secs}s");
    for &(label, args) in PACED {
        let mut figures: [Vec<f64>; 5] = Default::default();
        for _ in 0..reps {
            let mut all = vec!["probe", &tools.target, "-d", &dur, "--json"];
            all.extend_from_slice(args);
            let out = measure(&tools.probe, &all, secs)?.out;
            let l = Some("send_lateness_us");
            let got = [
                number(&out, None, "round_trips_per_sec"),
                number(&out, l, "p50"),
                number(&out, l, "p99"),
                number(&out, l, "p999"),
                number(&out, l, "max"),
            ];
            for (f, g) in figures.iter_mut().zip(got) {
                f.push(g.ok_or_else(|| format!("{label}: no lateness in the output"))?);
            }
        }
        let [mut a, mut p50, mut p99, mut p999, mut max] = figures;
        outln!(
            "| {label} | {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |",
            median(&mut a),
            median(&mut p50),
            median(&mut p99),
            median(&mut p999),
            median(&mut max)
        );
    }
    drop(server);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reps_and_seconds_are_checked_before_building() {
        let s = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(reps_and_secs(&[]), Ok((3, 4)));
        assert_eq!(reps_and_secs(&s(&["5", "2"])), Ok((5, 2)));
        assert!(
            reps_and_secs(&s(&["0"]))
                .unwrap_err()
                .contains("REPS \"0\"")
        );
        assert!(
            reps_and_secs(&s(&["3", "0"]))
                .unwrap_err()
                .contains("SECS \"0\"")
        );
        assert!(reps_and_secs(&s(&["x"])).is_err());
        assert!(reps_and_secs(&s(&["3", "4s"])).is_err());
        assert!(
            reps_and_secs(&s(&["3", "4", "5"]))
                .unwrap_err()
                .contains("unexpected")
        );
    }

    #[test]
    fn shell_times_are_read_as_seconds() {
        assert_eq!(shell_secs("0m1.250s"), Some(1.25));
        assert_eq!(shell_secs("2m0.500s"), Some(120.5));
        assert_eq!(shell_secs("oops"), None);
    }

    #[test]
    fn numbers_are_read_from_json_lines_and_scopes() {
        let j = r#"{"round_trips_per_sec":1234.5,"latency_us":{"p99":80},"send_lateness_us":{"p50":2,"p99":17}}"#;
        assert_eq!(number(j, None, "round_trips_per_sec"), Some(1234.5));
        assert_eq!(number(j, Some("send_lateness_us"), "p99"), Some(17.0));
        assert_eq!(number(j, None, "p99"), Some(80.0));
        assert_eq!(number(j, None, "missing"), None);
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
