//! `cargo xtask bench`: the loopback echo yardstick (../shared/bench) run
//! against the reference servers and `ricochet serve` in one session, so the
//! ratios compare like with like. Not a CI stage: benchmarks are measured,
//! not asserted.
//!
//! ```text
//! cargo xtask bench [-r REPS] [-d SECS] [-c CASES] [-t THREADS] [-b] [-S CPUS -L CPUS]
//!     servers alternating, REPS rounds (default 3), medians and ratios;
//!     -b adds ricochet with `--busy-poll 50us` (both backends) to the set;
//!     -S/-L pin the servers and the load generator to CPU lists (taskset
//!     syntax, e.g. `-S 0-3 -L 4-15`) so each has cores of its own
//! cargo xtask bench syscalls [-d SECS] [-c CASES] [-b]
//!     system calls per round trip of each server (perf stat, syscalls:sys_enter_*)
//! cargo xtask bench floor [-r REPS] [-d SECS] [-c CASES] [-S CPUS -L CPUS]
//!     each server's CPU per round trip split into TCP's data path and its
//!     own cost, and the floor no server can go below (perf; `floor.rs`)
//! cargo xtask bench idle
//!     RSS per idle connection at 10,000 connections, on each backend
//! cargo xtask bench matrix [run.sh opts]
//!     the full yardstick: every reference (and socat) plus ricochet
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::vm::free_port;
use crate::{Ctx, have, run};

mod floor;

/// The servers of the alternating set, in the order of the first round.
const SERVERS: &[&str] = &[
    "c-epoll",
    "c-uring",
    "tokio",
    "ricochet-epoll",
    "ricochet-uring",
];
/// With `-b`: ricochet with `--busy-poll 50us` too, against its default (off).
const BUSY_POLL: &[&str] = &["ricochet-epoll-bp50", "ricochet-uring-bp50"];
/// The references (the best of them is the bar).
const REFERENCES: &[&str] = &["c-epoll", "c-uring", "tokio"];
/// The cases of the issue's targets.
const CASES: &str = "pp1,pp100,pp1000,st1,st16";

/// What `cargo xtask bench --help` prints.
const USAGE: &str = "\
cargo xtask bench [-r REPS] [-d SECS] [-c CASES] [-t THREADS] [-b] [-S CPUS -L CPUS]
    servers alternating (c-epoll, c-uring, tokio, ricochet-epoll, ricochet-uring),
    REPS rounds (default 3) of SECS seconds per case (default 4); medians and ratios.
    -c  cases (default pp1,pp100,pp1000,st1,st16)
    -t  ricochet's worker threads (default: its own)
    -b  also ricochet with --busy-poll 50us (both backends)
    -S/-L  pin the servers and the load generator to CPU lists (taskset syntax,
           e.g. -S 0 -L 1, or -S 0-3 -L 4-15), both or neither
cargo xtask bench syscalls [-d SECS] [-c CASES] [-b]
    system calls per round trip of each server (perf stat, syscalls:sys_enter_*)
cargo xtask bench floor [-r REPS] [-d SECS] [-c CASES] [-S CPUS -L CPUS] [-B BIN]
    each server's CPU per round trip split into TCP's own data path
    (tcp_sendmsg + tcp_recvmsg, perf record) and the server's own cost (and
    its user-space part), and the floor: the CPU per round trip of a server
    with no cost of its own (default cases pp100,pp1000; REPS rounds,
    default 3, alternating)
    -B  also an earlier ricochet build, BIN, as ricochet-epoll-base and
        ricochet-uring-base, in the same alternation (an A/B of a change)
cargo xtask bench idle
    RSS per idle connection at 10,000 connections, on each backend
cargo xtask bench matrix [run.sh options]
    the full yardstick: every reference (and socat) plus ricochet";

/// `-h` or `--help` anywhere (before running anything).
fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help")
}

pub(crate) fn bench(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    if wants_help(args) {
        println!("{USAGE}");
        return Ok(());
    }
    match args.first().map(String::as_str) {
        Some("matrix") => matrix(ctx, &args[1..]),
        Some("syscalls") => syscalls(ctx, &args[1..]),
        Some("floor") => floor::floor(ctx, opts(&args[1..], 4)?),
        Some("idle") => idle(ctx),
        _ => alternate(ctx, args),
    }
}

/// Options shared by the subcommands.
struct Opts {
    reps: u32,
    secs: u32,
    cases: String,
    threads: Option<String>,
    /// Also run ricochet with busy polling on (`--busy-poll 50us`).
    busy_poll_on: bool,
    /// CPUs for the servers and for the load generator (`taskset -c`
    /// lists), both or neither.
    pin: Option<(String, String)>,
    /// An earlier ricochet binary to measure beside this one (`-B`, `bench
    /// floor` only).
    baseline: Option<String>,
}

fn opts(args: &[String], default_secs: u32) -> Result<Opts, String> {
    let mut o = Opts {
        reps: 3,
        secs: default_secs,
        cases: CASES.to_owned(),
        threads: None,
        busy_poll_on: false,
        pin: None,
        baseline: None,
    };
    let (mut server_cpus, mut load_cpus) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "-r" => o.reps = value()?.parse().map_err(|e| format!("-r: {e}"))?,
            "-d" => o.secs = value()?.parse().map_err(|e| format!("-d: {e}"))?,
            "-c" => o.cases = case_list(value()?)?,
            "-t" => o.threads = Some(threads(value()?)?),
            "-b" => o.busy_poll_on = true,
            "-S" => server_cpus = Some(cpu_list("-S", value()?)?),
            "-L" => load_cpus = Some(cpu_list("-L", value()?)?),
            "-B" => o.baseline = Some(baseline_bin(value()?)?),
            other => {
                return Err(format!(
                    "unknown option {other:?}: expected -r REPS, -d SECS, -c CASES, -t THREADS, -b, -S CPUS, -L CPUS, -B BIN (--help: usage)"
                ));
            }
        }
    }
    if o.reps == 0 || o.secs < 2 {
        return Err("-r must be at least 1 and -d at least 2".into());
    }
    o.pin = match (server_cpus, load_cpus) {
        (Some(s), Some(l)) => Some((s, l)),
        (None, None) => None,
        _ => {
            return Err(
                "-S and -L go together: pinning one side only lets the other share its cores \
                 (e.g. -S 0 -L 1, or -S 0-3 -L 4-15)"
                    .into(),
            );
        }
    };
    Ok(o)
}

/// `-B` outside `bench floor`.
const ONLY_FLOOR: &str =
    "-B (an earlier build beside this one) is for cargo xtask bench floor only";

/// `-B`'s binary: an executable file, checked before anything is built.
fn baseline_bin(path: String) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(path),
        Ok(_) => Err(format!(
            "-B {path}: not an executable file (give an earlier build's target/release/ricochet)"
        )),
        Err(e) => Err(format!("-B {path}: {e}")),
    }
}

/// A `taskset -c` CPU list (`0`, `0-3`, `0,2,4-7`), checked before any
/// server starts so a typo is named here rather than by taskset mid-run.
fn cpu_list(flag: &str, list: String) -> Result<String, String> {
    let cpu = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok = list.split(',').all(|part| match part.split_once('-') {
        Some((a, b)) => cpu(a) && cpu(b) && a.parse::<u32>().ok() <= b.parse::<u32>().ok(),
        None => cpu(part),
    });
    if ok {
        Ok(list)
    } else {
        Err(format!(
            "{flag} {list:?} is not a CPU list: use numbers and ranges as taskset -c does, \
             e.g. 0, 0-3 or 0,2,4-7"
        ))
    }
}

/// `-c`: a comma-separated list of the yardstick's case names (`pp1`,
/// `st16`, `pp:1:8KiB`), checked for shape before anything is built.
fn case_list(list: String) -> Result<String, String> {
    let case = |c: &str| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':');
    if list.split(',').all(case) {
        Ok(list)
    } else {
        Err(format!(
            "-c {list:?} is not a list of cases: names separated by commas, e.g. {CASES}"
        ))
    }
}

/// `-t`: ricochet's worker threads, a whole number from 1.
fn threads(t: String) -> Result<String, String> {
    match t.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(t),
        _ => Err(format!(
            "-t {t:?}: expected a whole number of threads, 1 or more"
        )),
    }
}

/// Where the yardstick builds and writes (its own default).
fn bench_work() -> PathBuf {
    std::env::var_os("BENCH_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ricochet-bench"))
}

/// Builds ricochet (release) and the references (liburing installed first).
fn build_all(ctx: &Ctx) -> Result<PathBuf, String> {
    let bench = ctx.root.join("../shared/bench");
    if !bench.join("run.sh").exists() {
        return Err(format!(
            "{} not found: the yardstick lives in shared/bench beside the repository",
            bench.display()
        ));
    }
    ensure_liburing(ctx)?;
    run(
        &ctx.root,
        "cargo",
        &["build", "--release", "--locked", "-p", "ricochet"],
        &[],
    )?;
    run(&bench, "./ref/build.sh", &[], &[])?;
    if !bench_work().join("uring-echo").exists() {
        return Err("uring-echo (the C io_uring reference) was not built".into());
    }
    Ok(bench)
}

/// The C io_uring reference needs liburing's headers (Debian: liburing-dev).
fn ensure_liburing(ctx: &Ctx) -> Result<(), String> {
    let installed = Command::new("dpkg")
        .args(["-s", "liburing-dev"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed || !have("apt-get") {
        return Ok(());
    }
    crate::apt_install(ctx, &["liburing-dev"])
}

/// The command line of server `name` (with `{PORT}`).
fn server_cmd(ctx: &Ctx, name: &str, threads: Option<&str>) -> String {
    server_cmd_with(ctx, name, threads, None)
}

/// [`server_cmd`], with `ricochet-epoll-base` and `ricochet-uring-base`
/// running `baseline` (`-B`).
fn server_cmd_with(ctx: &Ctx, name: &str, threads: Option<&str>, baseline: Option<&str>) -> String {
    if let (Some(base), Some(io)) = (baseline, name.strip_suffix("-base")) {
        let io = io.trim_start_matches("ricochet-");
        let threads = threads.map_or(String::new(), |t| format!(" --threads {t}"));
        return format!("{base} serve --io {io}{threads} --tcp 127.0.0.1:{{PORT}}");
    }
    let work = bench_work();
    let bin = ctx.root.join("target/release/ricochet");
    let threads = threads.map_or(String::new(), |t| format!(" --threads {t}"));
    match name {
        "c-epoll" => format!("{}/epoll-echo {{PORT}}", work.display()),
        "c-uring" => format!("{}/uring-echo {{PORT}}", work.display()),
        "tokio" => format!("{}/target/release/tokio-echo {{PORT}}", work.display()),
        "ricochet-epoll" => format!(
            "{} serve --io epoll{threads} --tcp 127.0.0.1:{{PORT}}",
            bin.display()
        ),
        "ricochet-uring" => format!(
            "{} serve --io uring{threads} --tcp 127.0.0.1:{{PORT}}",
            bin.display()
        ),
        "ricochet-epoll-bp50" => format!(
            "{} serve --io epoll{threads} --busy-poll 50us --tcp 127.0.0.1:{{PORT}}",
            bin.display()
        ),
        "ricochet-uring-bp50" => format!(
            "{} serve --io uring{threads} --busy-poll 50us --tcp 127.0.0.1:{{PORT}}",
            bin.display()
        ),
        other => unreachable!("unknown server {other}"),
    }
}

/// The alternating set: every round runs every server through every case,
/// the order rotating by one each round so that drift hits all alike.
fn alternate(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    let o = opts(args, 4)?;
    if o.baseline.is_some() {
        return Err(ONLY_FLOOR.into());
    }
    let bench = build_all(ctx)?;
    let out = bench_work().join(format!("results/alternate-{}.jsonl", std::process::id()));
    std::fs::create_dir_all(out.parent().unwrap_or(Path::new("."))).map_err(|e| e.to_string())?;
    let out_s = out.to_string_lossy().into_owned();
    let secs = o.secs.to_string();
    let mut servers = SERVERS.to_vec();
    if o.busy_poll_on {
        servers.extend_from_slice(BUSY_POLL);
    }
    for rep in 0..o.reps as usize {
        for k in 0..servers.len() {
            let name = servers[(k + rep) % servers.len()];
            let cmd = server_cmd(ctx, name, o.threads.as_deref());
            let mut a = vec![
                "-I", "-r", "1", "-d", &secs, "-w", "1", "-c", &o.cases, "-o", &out_s, "-n", name,
            ];
            if let Some((server_cpus, load_cpus)) = &o.pin {
                a.extend(["-S", server_cpus, "-L", load_cpus]);
            }
            a.push(&cmd);
            eprintln!("xtask bench: round {} of {}: {name}", rep + 1, o.reps);
            if run_sh(&bench, &a).is_err() {
                // run.sh refuses a start when its `setsid` child has not
                // become its own process group yet (a race on a busy
                // machine): one more try.
                eprintln!("xtask bench: {name} failed; retrying once");
                run_sh(&bench, &a)?;
            }
        }
    }
    run(&bench, "python3", &["table.py", "--pivot", &out_s], &[])?;
    let text = std::fs::read_to_string(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    println!("{}", summary(&text));
    eprintln!("xtask: results in {out_s}");
    Ok(())
}

/// `run.sh ARGS` in `bench`, its tables (printed after every server) not
/// shown: the summary at the end has them all.
fn run_sh(bench: &Path, args: &[&str]) -> Result<(), String> {
    eprintln!("+ (cd {}) ./run.sh {}", bench.display(), args.join(" "));
    let status = crate::command("./run.sh")
        .args(args)
        .current_dir(bench)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("cannot run run.sh: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`run.sh {}` exited with {status}", args.join(" ")))
    }
}

/// One measurement: throughput (round trips/s or MB/s) and server CPU per
/// unit (µs per round trip or CPU-seconds per GB).
#[derive(Clone, Copy, Debug)]
struct Sample {
    rate: f64,
    cpu: f64,
}

/// A number after `"key":` in a JSON line (after `from`), or `None`.
fn json_num(line: &str, key: &str) -> Option<f64> {
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
fn summary(jsonl: &str) -> String {
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

/// A server child in its own process group, stopped by PID on drop.
struct Server {
    child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(cmd: &str, port: u16) -> Result<Server, String> {
    let cmd = cmd.replace("{PORT}", &port.to_string());
    let mut words = cmd.split_whitespace();
    let program = words.next().ok_or("empty server command")?;
    let child = Command::new(program)
        .args(words)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let server = Server { child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{cmd} did not listen within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

fn case_args(case: &str) -> Result<Vec<String>, String> {
    let (m, c, s) = match case {
        "pp1" => ("pingpong", "1", "64"),
        "pp100" => ("pingpong", "100", "64"),
        "pp1000" => ("pingpong", "1000", "64"),
        "st1" => ("stream", "1", "64KiB"),
        "st16" => ("stream", "16", "16KiB"),
        other => {
            return Err(format!(
                "unknown case {other:?} (pp1, pp100, pp1000, st1, st16)"
            ));
        }
    };
    Ok(["-m", m, "-c", c, "-s", s].map(str::to_owned).to_vec())
}

/// System calls per round trip (pingpong) or per MB (stream): `perf stat`
/// counts every `syscalls:sys_enter_*` tracepoint of the server's threads
/// while `echo-load` runs a fixed count of messages (so the round trips
/// are exact: the count plus one per connection, the verified round trip
/// each does before starting). Setup and teardown
/// (accept, close) are included, a few calls per connection.
fn syscalls(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    let o = opts(args, 4)?;
    if o.baseline.is_some() {
        return Err(ONLY_FLOOR.into());
    }
    if o.pin.is_some() {
        return Err("bench syscalls counts calls, not time: -S/-L pin only the alternating set (cargo xtask bench -S CPUS -L CPUS)".into());
    }
    if !have("perf") {
        return Err("perf is needed: apt-get install -y --no-install-recommends linux-perf".into());
    }
    build_all(ctx)?;
    let load = bench_work().join("target/release/echo-load");
    let mut servers = vec!["c-epoll", "c-uring", "ricochet-epoll", "ricochet-uring"];
    if o.busy_poll_on {
        servers.extend_from_slice(BUSY_POLL);
    }
    println!(
        "| case | server | round trips (MB for streams) | syscalls per round trip (per MB) | of which |"
    );
    println!("|---|---|---|---|---|");
    for case in o.cases.split(',') {
        let cargs = case_args(case)?;
        // Messages per connection for about -d seconds of load on this
        // machine; `echo-load -n` takes the total over all connections.
        let (conns, per_conn, size): (u64, u64, f64) = match case {
            "pp1" => (1, 10_000, 64.0),
            "pp100" => (100, 300, 64.0),
            "pp1000" => (1000, 30, 64.0),
            "st1" => (1, 2_500, 65536.0),
            _ => (16, 600, 16384.0),
        };
        let count = conns * per_conn * u64::from(o.secs);
        for &name in &servers {
            let port = free_port()?;
            let server = start_server(&server_cmd(ctx, name, o.threads.as_deref()), port)?;
            let pid = server.child.id().to_string();
            let perf = Command::new("perf")
                .args(["stat", "-x", ",", "-e", "syscalls:sys_enter_*", "-p", &pid])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("perf: {e}"))?;
            std::thread::sleep(Duration::from_millis(500));
            let addr = format!("127.0.0.1:{port}");
            let out = Command::new(&load)
                .args(["-a", &addr, "-n", &count.to_string(), "--grace", "30"])
                .args(&cargs)
                .stderr(Stdio::null())
                .output()
                .map_err(|e| format!("echo-load: {e}"))?;
            let _ = Command::new("kill")
                .args(["-INT", &perf.id().to_string()])
                .status();
            let perf = perf.wait_with_output().map_err(|e| format!("perf: {e}"))?;
            drop(server);
            let json = String::from_utf8_lossy(&out.stdout);
            if json_num(&json, "errors_total") != Some(0.0) {
                println!(
                    "| {case} | {name} | echo-load failed: {} | | |",
                    json.trim()
                );
                continue;
            }
            let units = if case.starts_with("st") {
                count as f64 * size / 1e6
            } else {
                (count + conns) as f64
            };
            let mut counts: Vec<(String, f64)> = String::from_utf8_lossy(&perf.stderr)
                .lines()
                .filter_map(|l| {
                    let mut f = l.split(',');
                    let n: f64 = f.next()?.trim().parse().ok()?;
                    let _unit = f.next();
                    let event = f.next()?.trim().strip_prefix("syscalls:sys_enter_")?;
                    (n > 0.0).then(|| (event.to_owned(), n))
                })
                .collect();
            counts.sort_by(|a, b| b.1.total_cmp(&a.1));
            let total: f64 = counts.iter().map(|c| c.1).sum();
            let top: Vec<String> = counts
                .iter()
                .take(4)
                .map(|(e, n)| format!("{e} {:.3}", n / units))
                .collect();
            println!(
                "| {case} | {name} | {units:.0} | {:.3} | {} |",
                total / units,
                top.join(", ")
            );
        }
    }
    Ok(())
}

/// RSS per idle connection at 10,000 connections, each backend (the test
/// fails above 10 KiB; its output line is the figure).
fn idle(ctx: &Ctx) -> Result<(), String> {
    for io in ["epoll", "uring"] {
        eprintln!("xtask bench idle: --io {io}");
        run(
            &ctx.root,
            "cargo",
            &[
                "test",
                "--release",
                "--locked",
                "-p",
                "ricochet",
                "--test",
                "serve_cli",
                "cli_holds_ten_thousand",
                "--",
                "--nocapture",
            ],
            &[("RICOCHET_IO", io)],
        )?;
    }
    Ok(())
}

/// The full yardstick: every reference (socat and iperf3 ceilings too),
/// then ricochet on each backend; prints the tables. `extra` goes to run.sh
/// (e.g. `-r 3 -d 5`).
fn matrix(ctx: &Ctx, extra: &[String]) -> Result<(), String> {
    let bench = build_all(ctx)?;
    let out_dir = std::env::temp_dir().join(format!("ricochet-bench-{}", std::process::id()));
    let out_dir = out_dir.to_string_lossy().into_owned();
    let out = format!("{out_dir}/all.jsonl");
    let cases = "pp1,pp100,pp1000,st1,st16,pp:1:8KiB,pp:1:64KiB";
    let mut args: Vec<&str> = vec![&out_dir, "-c", cases];
    args.extend(extra.iter().map(String::as_str));
    // run_all.sh: references + iperf3 ceilings into OUT_DIR/all.jsonl.
    run(&bench, "./run_all.sh", &args, &[])?;
    for name in ["ricochet-epoll", "ricochet-uring"] {
        let cmd = server_cmd(ctx, name, None);
        let mut a: Vec<&str> = vec!["-I", "-o", &out, "-n", name, "-c", cases];
        a.extend(extra.iter().map(String::as_str));
        a.push(&cmd);
        run(&bench, "./run.sh", &a, &[("RUST_LOG", "warn")])?;
    }
    run(&bench, "python3", &["table.py", "--pivot", &out], &[])?;
    run(&bench, "python3", &["table.py", &out], &[])?;
    eprintln!("xtask: results in {out}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strings;

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
    fn cases_and_threads_are_checked_before_building() {
        let o = opts(&strings(&["-c", "pp1,pp:1:8KiB", "-t", "2"]), 4).unwrap();
        assert_eq!(o.cases, "pp1,pp:1:8KiB");
        assert_eq!(o.threads.as_deref(), Some("2"));
        for bad in [
            &["-c", ""][..],
            &["-c", "pp1,,st1"],
            &["-c", "pp1 st1"],
            &["-t", "0"],
            &["-t", "x"],
            &["-d", "x"],
            &["-d", "1"],
            &["-r", "0"],
        ] {
            assert!(opts(&strings(bad), 4).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn baseline_must_be_an_executable_and_runs_as_the_base_servers() {
        let missing = opts(&strings(&["-B", "/nonexistent/ricochet"]), 4)
            .err()
            .unwrap();
        assert!(
            missing.starts_with("-B /nonexistent/ricochet:"),
            "{missing}"
        );
        let dir = std::env::temp_dir();
        let not_exec = opts(&strings(&["-B", &dir.to_string_lossy()]), 4)
            .err()
            .unwrap();
        assert!(not_exec.contains("not an executable file"), "{not_exec}");
        let o = opts(&strings(&["-B", "/bin/sh"]), 4).unwrap();
        assert_eq!(o.baseline.as_deref(), Some("/bin/sh"));
        let ctx = Ctx {
            root: std::path::PathBuf::from("/repo"),
        };
        assert_eq!(
            server_cmd_with(
                &ctx,
                "ricochet-uring-base",
                Some("2"),
                Some("/old/ricochet")
            ),
            "/old/ricochet serve --io uring --threads 2 --tcp 127.0.0.1:{PORT}"
        );
        assert_eq!(
            server_cmd_with(&ctx, "ricochet-epoll-base", None, Some("/old/ricochet")),
            "/old/ricochet serve --io epoll --tcp 127.0.0.1:{PORT}"
        );
        assert_eq!(
            server_cmd_with(&ctx, "ricochet-uring", None, Some("/old/ricochet")),
            "/repo/target/release/ricochet serve --io uring --tcp 127.0.0.1:{PORT}"
        );
    }

    #[test]
    fn help_is_asked_for_anywhere_and_unknown_options_point_to_it() {
        assert!(wants_help(&strings(&["--help"])));
        assert!(wants_help(&strings(&["syscalls", "-h"])));
        assert!(!wants_help(&strings(&["-r", "3"])));
        let e = opts(&strings(&["--bogus"]), 4).err().unwrap();
        assert!(e.contains("--help"), "{e}");
    }

    #[test]
    fn pinning_takes_server_and_load_cpu_lists_together() {
        let o = opts(&strings(&["-S", "0-3", "-L", "4,6,8-15"]), 4).unwrap();
        assert_eq!(o.pin, Some(("0-3".to_owned(), "4,6,8-15".to_owned())));
        assert_eq!(opts(&strings(&[]), 4).unwrap().pin, None);
        let one_side = opts(&strings(&["-S", "0"]), 4).err().unwrap();
        assert!(one_side.contains("-S and -L go together"), "{one_side}");
        for bad in ["", "a", "0-", "3-1", "0,,1", "1 2"] {
            let e = opts(&strings(&["-S", bad, "-L", "1"]), 4).err().unwrap();
            assert!(e.contains("is not a CPU list"), "{bad:?}: {e}");
        }
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
