//! `cargo xtask bench floor`: how much of each server's CPU per round trip
//! is TCP's own data path, which every echo server pays whatever its event
//! loop, and so how low any server's CPU per round trip can go on this
//! machine.
//!
//! For each case and server, with `echo-load` running ping-pong against it:
//! `perf stat -e task-clock` gives the server's CPU per second over half
//! the load (divided by echo-load's round trips per second: CPU per round
//! trip), then `perf record -g` over the other half gives the share of
//! samples under `tcp_sendmsg` and `tcp_recvmsg` with all they call (on
//! loopback that includes delivering each segment to the peer's socket
//! and waking it). What is left is the server's own cost: its system
//! calls, its event loop (epoll or io_uring), its user-space code, its
//! sleeping and waking. The same profile gives the share of samples
//! outside the kernel (the server's binary and its libraries): its
//! user-space part.
//!
//! The floor is the smallest TCP-only cost per round trip of the servers
//! measured, over C epoll's whole CPU per round trip: a server with no
//! cost of its own would need that fraction of C epoll's CPU, and could
//! serve at most its inverse in round trips on the same CPU time.

use std::process::{Command, Stdio};

use super::opts::Opts;
use super::servers::{bench_work, build_all, case_args, server_cmd_with, start_server};
use super::summary::json_num;
use crate::vm::free_port;
use crate::{Ctx, have};

/// What the floor run measures by default (ping-pong: the CPU targets).
const CASES: &str = "pp100,pp1000";
const SERVERS: &[&str] = &["c-epoll", "c-uring", "ricochet-epoll", "ricochet-uring"];
/// With `-B`: the earlier build too.
const BASELINE: &[&str] = &["ricochet-epoll-base", "ricochet-uring-base"];
/// The TCP data path: what `perf report --children` counts under these.
const TCP_PATH: &[&str] = &["tcp_sendmsg", "tcp_recvmsg"];

/// One server under one case: CPU µs per round trip, and the shares of it
/// spent in [`TCP_PATH`] and in user space.
#[derive(Clone, Copy, Debug)]
struct Split {
    cpu_us: f64,
    tcp_share: f64,
    user_share: f64,
}

pub(super) fn floor(ctx: &Ctx, mut o: Opts) -> Result<(), String> {
    if !have("perf") {
        return Err("perf is needed: apt-get install -y --no-install-recommends linux-perf".into());
    }
    if o.cases == super::CASES {
        o.cases = CASES.to_owned();
    }
    for case in o.cases.split(',') {
        if !case.starts_with("pp") {
            return Err(format!(
                "bench floor measures ping-pong (round trips): {case} is a stream case"
            ));
        }
        case_args(case)?;
    }
    build_all(ctx)?;
    let load = bench_work().join("target/release/echo-load");
    let data = bench_work().join(format!("floor-{}.perf", std::process::id()));
    // perf record moves the profile it overwrites to `.old`: both go, on
    // success or error.
    let _profiles = RemoveOnDrop(profiles(&data));
    let half = f64::from(o.secs) / 2.0;
    let mut servers = SERVERS.to_vec();
    if o.baseline.is_some() {
        servers.extend_from_slice(BASELINE);
    }
    let mut results: Vec<(String, &str, Split)> = Vec::new();
    for rep in 0..o.reps as usize {
        for case in o.cases.split(',') {
            for k in 0..servers.len() {
                let name = servers[(k + rep) % servers.len()];
                eprintln!(
                    "xtask bench floor: round {} of {}: {case} {name}",
                    rep + 1,
                    o.reps
                );
                let split = measure(ctx, &o, &load, &data, case, name, half)?;
                results.push((case.to_owned(), name, split));
            }
        }
    }
    out!("{}", table(&o.cases, &servers, &results));
    Ok(())
}

/// The profile `perf record` writes to `data`, and where it moves the one
/// it overwrites.
fn profiles(data: &std::path::Path) -> [std::path::PathBuf; 2] {
    let mut old = data.as_os_str().to_owned();
    old.push(".old");
    [data.to_owned(), old.into()]
}

/// Files removed when this goes out of scope.
struct RemoveOnDrop<const N: usize>([std::path::PathBuf; N]);

impl<const N: usize> Drop for RemoveOnDrop<N> {
    fn drop(&mut self) {
        for path in &self.0 {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// One run: the server, echo-load for 1 s of warmup plus `2 * half`, the
/// CPU over the first half, the profile over the second.
fn measure(
    ctx: &Ctx,
    o: &Opts,
    load: &std::path::Path,
    data: &std::path::Path,
    case: &str,
    name: &str,
    half: f64,
) -> Result<Split, String> {
    let port = free_port()?;
    let mut cmd = server_cmd_with(ctx, name, o.threads.as_deref(), o.baseline.as_deref());
    let mut load_cmd = Command::new(load);
    if let Some((server_cpus, load_cpus)) = &o.pin {
        cmd = format!("taskset -c {server_cpus} {cmd}");
        load_cmd = Command::new("taskset");
        load_cmd.args(["-c", load_cpus]).arg(load);
    }
    let server = start_server(&cmd, port)?;
    let pid = server.child.id().to_string();
    let secs = format!("{}", (2.0 * half).ceil() as u32 + 1);
    let loader = load_cmd
        .args(["-a", &format!("127.0.0.1:{port}"), "-d", &secs, "-w", "1"])
        .args(case_args(case)?)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("echo-load: {e}"))?;
    // Past echo-load's warmup (a harness, not a test: a plain wait).
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let window = format!("{half}");
    let stat = Command::new("perf")
        .args([
            "stat",
            "-x",
            ",",
            "-e",
            "task-clock",
            "-p",
            &pid,
            "--",
            "sleep",
            &window,
        ])
        .stdout(Stdio::null())
        .output()
        .map_err(|e| format!("perf stat: {e}"))?;
    let record = Command::new("perf")
        .args(["record", "-q", "-g", "-p", &pid, "-o"])
        .arg(data)
        .args(["--", "sleep", &window])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map_err(|e| format!("perf record: {e}"))?;
    let out = loader
        .wait_with_output()
        .map_err(|e| format!("echo-load: {e}"))?;
    drop(server);
    let json = String::from_utf8_lossy(&out.stdout);
    if json_num(&json, "errors_total") != Some(0.0) {
        return Err(format!("{case} {name}: echo-load failed: {}", json.trim()));
    }
    let rts = json_num(&json, "rtt_per_s").ok_or("echo-load printed no rtt_per_s")?;
    let cpu_ms: f64 = String::from_utf8_lossy(&stat.stderr)
        .lines()
        .find(|l| l.contains("task-clock"))
        .and_then(|l| l.split(',').next()?.trim().parse().ok())
        .ok_or("perf stat printed no task-clock")?;
    if !record.success() {
        return Err(format!("perf record exited with {record}"));
    }
    let report = |how: &[&str]| -> Result<String, String> {
        let out = Command::new("perf")
            .arg("report")
            .args(how)
            .args(["--stdio", "-g", "none", "-i"])
            .arg(data)
            .stderr(Stdio::null())
            .output()
            .map_err(|e| format!("perf report: {e}"))?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    };
    let tcp_share = tcp_share(&report(&["--children", "--sort", "symbol"])?);
    let user_share = user_share(&report(&["--no-children", "--sort", "dso"])?);
    Ok(Split {
        cpu_us: cpu_ms / 1000.0 / half / rts * 1e6,
        tcp_share,
        user_share,
    })
}

/// The share (0..1) of samples under [`TCP_PATH`] in a
/// `perf report --children --sort symbol -g none` listing, whose lines
/// read `  65.62%     0.02%  [k] tcp_sendmsg   -   -` (the dashes: IPC
/// columns, blank without branch data).
fn tcp_share(report: &str) -> f64 {
    share(report, |fields| match fields {
        [children, _self, "[k]", symbol, ..] if TCP_PATH.contains(symbol) => Some(children),
        _ => None,
    })
}

/// The share (0..1) of samples outside the kernel in a
/// `perf report --no-children --sort dso -g none` listing, whose lines
/// read `    95.48%  [kernel.kallsyms]` or `     4.41%  ricochet`.
fn user_share(report: &str) -> f64 {
    share(report, |fields| match fields {
        [share, dso, ..] if *dso != "[kernel.kallsyms]" => Some(share),
        _ => None,
    })
}

/// The sum (as 0..1) of the percentages `pick` finds in the lines of a
/// `perf report` listing (split on whitespace), where they read `NN.NN%`.
fn share<'a>(report: &'a str, pick: impl Fn(&[&'a str]) -> Option<&'a str>) -> f64 {
    report
        .lines()
        .filter_map(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            pick(&fields)?.strip_suffix('%')?.parse::<f64>().ok()
        })
        .sum::<f64>()
        / 100.0
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Medians per case and server, against C epoll, and each case's floor.
fn table(cases: &str, servers: &[&str], results: &[(String, &str, Split)]) -> String {
    let mut s = String::from(
        "| case | server | CPU µs per round trip | in tcp_sendmsg + tcp_recvmsg | TCP µs | the server's own µs | of which user space µs | CPU vs C epoll |\n|---|---|---|---|---|---|---|---|\n",
    );
    for case in cases.split(',') {
        let of = |name: &str| -> Option<Split> {
            let mine: Vec<Split> = results
                .iter()
                .filter(|(c, n, _)| c == case && *n == name)
                .map(|r| r.2)
                .collect();
            let med = |f: fn(&Split) -> f64| median(mine.iter().map(f).collect());
            (!mine.is_empty()).then(|| Split {
                cpu_us: med(|x| x.cpu_us),
                tcp_share: med(|x| x.tcp_share),
                user_share: med(|x| x.user_share),
            })
        };
        let Some(epoll) = of("c-epoll") else {
            continue;
        };
        let mut least_tcp = f64::INFINITY;
        for &name in servers {
            let Some(m) = of(name) else {
                continue;
            };
            let (cpu, tcp) = (m.cpu_us, m.cpu_us * m.tcp_share);
            least_tcp = least_tcp.min(tcp);
            s += &format!(
                "| {case} | {name} | {cpu:.3} | {:.1} % | {tcp:.3} | {:.3} | {:.3} | {:.2}× |\n",
                m.tcp_share * 100.0,
                cpu - tcp,
                cpu * m.user_share,
                cpu / epoll.cpu_us
            );
        }
        let epoll_cpu = epoll.cpu_us;
        s += &format!(
            "| {case} | floor (no cost of its own) | {least_tcp:.3} | 100 % | {least_tcp:.3} | 0 | 0 | {:.2}× (at most {:.2}× C epoll's round trips per CPU-second) |\n",
            least_tcp / epoll_cpu,
            epoll_cpu / least_tcp
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `bench floor` left perf record's `.old` profile (1.5 MB) per run.
    #[test]
    fn both_profiles_perf_record_leaves_are_removed() {
        let dir = std::env::temp_dir().join(format!("ricochet-floor-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let data = dir.join("floor-1.perf");
        let [now, old] = profiles(&data);
        assert_eq!(old, dir.join("floor-1.perf.old"));
        std::fs::write(&now, "").unwrap();
        std::fs::write(&old, "").unwrap();
        drop(RemoveOnDrop(profiles(&data)));
        let left = std::fs::read_dir(&dir).unwrap().count();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(left, 0);
    }

    #[test]
    fn tcp_share_sums_the_children_of_send_and_receive_only() {
        let report = "\
# Children      Self  Symbol
    96.19%     3.43%  [k] do_syscall_64
    65.62%     0.02%  [k] tcp_sendmsg                   -      -
    64.83%     2.20%  [k] tcp_sendmsg_locked            -      -
    13.49%     0.20%  [k] tcp_recvmsg
     0.60%     0.60%  [.] ricochet::serve::uring::worker::Worker::run
";
        let share = tcp_share(report);
        assert!((share - 0.7911).abs() < 1e-9, "{share}");
        assert_eq!(tcp_share("no samples\n"), 0.0);
    }

    #[test]
    fn user_share_sums_every_dso_but_the_kernel() {
        let report = "\
# Overhead  Shared Object
#
    95.48%  [kernel.kallsyms]
     4.41%  ricochet
     0.08%  [vdso]
     0.03%  libc.so.6
";
        let share = user_share(report);
        assert!((share - 0.0452).abs() < 1e-9, "{share}");
        assert_eq!(user_share("# nothing sampled\n"), 0.0);
    }

    #[test]
    fn table_lists_the_baseline_build_when_it_was_measured() {
        let split = |cpu_us| Split {
            cpu_us,
            tcp_share: 0.8,
            user_share: 0.05,
        };
        let results = vec![
            ("pp1000".to_owned(), "c-epoll", split(4.0)),
            ("pp1000".to_owned(), "ricochet-uring", split(3.8)),
            ("pp1000".to_owned(), "ricochet-uring-base", split(4.2)),
        ];
        let servers = [SERVERS, BASELINE].concat();
        let t = table("pp1000", &servers, &results);
        let base = t.find("| pp1000 | ricochet-uring-base | 4.200 |");
        assert!(base.is_some(), "{t}");
        assert!(t.find("| pp1000 | ricochet-uring | 3.800 |") < base, "{t}");
        let without = table("pp1000", SERVERS, &results);
        assert!(!without.contains("-base"), "{without}");
    }

    #[test]
    fn table_floor_is_the_least_tcp_cost_over_c_epolls_cpu() {
        let r = |name, cpu_us, tcp_share, user_share| {
            let split = Split {
                cpu_us,
                tcp_share,
                user_share,
            };
            ("pp100".to_owned(), name, split)
        };
        let results = vec![
            r("c-epoll", 4.0, 0.75, 0.02),
            r("c-epoll", 4.0, 0.75, 0.04),
            r("ricochet-uring", 3.6, 0.8, 0.05),
        ];
        let t = table("pp100", SERVERS, &results);
        // C epoll: 3.0 µs TCP, 0.12 µs user space (median share 3 %);
        // ricochet-uring: 2.88 µs TCP, the least, 0.18 µs user space.
        assert!(
            t.contains("| pp100 | c-epoll | 4.000 | 75.0 % | 3.000 | 1.000 | 0.120 | 1.00× |"),
            "{t}"
        );
        assert!(
            t.contains(
                "| pp100 | ricochet-uring | 3.600 | 80.0 % | 2.880 | 0.720 | 0.180 | 0.90× |"
            ),
            "{t}"
        );
        assert!(
            t.contains(
                "floor (no cost of its own) | 2.880 | 100 % | 2.880 | 0 | 0 | 0.72× (at most 1.39×"
            ),
            "{t}"
        );
    }
}
