//! `cargo xtask bench syscalls`: system calls per round trip (or per MB)
//! of each server, counted by `perf stat`.

use std::process::{Command, Stdio};
use std::time::Duration;

use super::BUSY_POLL;
use super::opts::{ONLY_FLOOR, opts};
use super::servers::{bench_work, build_all, case_args, server_cmd, start_server};
use super::summary::json_num;
use crate::vm::free_port;
use crate::{Ctx, have};

/// System calls per round trip (pingpong) or per MB (stream): `perf stat`
/// counts every `syscalls:sys_enter_*` tracepoint of the server's threads
/// while `echo-load` runs a fixed count of messages (so the round trips
/// are exact: the count plus one per connection, the verified round trip
/// each does before starting). Setup and teardown
/// (accept, close) are included, a few calls per connection.
pub(super) fn syscalls(ctx: &Ctx, args: &[String]) -> Result<(), String> {
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
    outln!(
        "| case | server | round trips (MB for streams) | syscalls per round trip (per MB) | of which |"
    );
    outln!("|---|---|---|---|---|");
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
                outln!(
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
            outln!(
                "| {case} | {name} | {units:.0} | {:.3} | {} |",
                total / units,
                top.join(", ")
            );
        }
    }
    Ok(())
}
