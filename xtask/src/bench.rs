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
//!
//! The subcommands' options are in `opts.rs`, the servers and the cases in
//! `servers.rs`, the alternating set's summary in `summary.rs`, and `bench
//! syscalls` and `bench floor` in `syscalls.rs` and `floor.rs`.

use std::path::Path;
use std::process::Stdio;

use crate::{Ctx, run};
use opts::{ONLY_FLOOR, opts, wants_help};
pub(crate) use servers::yardstick;
use servers::{bench_work, build_all, server_cmd};
use summary::summary;

mod floor;
mod opts;
mod servers;
mod summary;
mod syscalls;

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

pub(crate) fn bench(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    if wants_help(args) {
        outln!("{USAGE}");
        return Ok(());
    }
    match args.first().map(String::as_str) {
        Some("matrix") => matrix(ctx, &args[1..]),
        Some("syscalls") => syscalls::syscalls(ctx, &args[1..]),
        Some("floor") => floor::floor(ctx, opts(&args[1..], 4)?),
        Some("idle") => idle(ctx),
        _ => alternate(ctx, args),
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
    outln!("{}", summary(&text));
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
