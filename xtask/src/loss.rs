//! `cargo xtask loss [--io uring|epoll|both]`: `ricochet serve` under real
//! kernel packet loss, verified by `ricochet probe`.
//!
//! A network namespace of its own (created here, deleted on the way out,
//! whatever happens), with its loopback up and an nftables rule on the
//! input hook that drops N % of every packet it receives (`numgen random
//! mod 100 < N drop`; `tc netem` is not available here). Dropping on input
//! rather than output keeps the loss silent to the sender, as on a wire.
//! Each packet crosses the hook once, so a UDP round trip is lost with
//! probability 1 − (1 − N/100)². Server and probe both run inside the
//! namespace; nothing else sees it. Needs root (namespaces, nftables).
//!
//! For each backend and each N in 0, 1, 5, 10: a TCP stream (4 connections
//! of random 1..4000-byte messages) and TCP ping-pong (10 connections), every
//! byte verified by the probe; UDP ping-pong, losses counted (corruption
//! fails). TCP retransmissions come from the namespace's `/proc/net/snmp`.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use crate::listening;
use crate::{Ctx, have, run};

/// Loss levels, percent of packets dropped at the input hook.
const LEVELS: &[u32] = &[0, 1, 5, 10];

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn create() -> Result<Netns, String> {
        let name = format!("ricochet-loss-{}", std::process::id());
        ip(&["netns", "add", &name])?;
        // Deleted by Drop, or by the signal handler on Ctrl-C or kill.
        crate::signals::register_netns(&name);
        let ns = Netns(name);
        ip(&["-n", &ns.0, "link", "set", "lo", "up"])?;
        Ok(ns)
    }

    fn exec(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    /// Replaces the ruleset: drop `pct` % of received packets (none at 0).
    fn set_loss(&self, pct: u32) -> Result<(), String> {
        let rules = if pct == 0 {
            "flush ruleset\n".to_owned()
        } else {
            format!(
                "flush ruleset\ntable inet lossy {{\n chain in {{\n  type filter hook input priority 0; policy accept;\n  numgen random mod 100 < {pct} drop\n }}\n}}\n"
            )
        };
        let mut child = self
            .exec("nft")
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| format!("nft: {e}"))?;
        if let Some(mut stdin) = child.stdin.take() {
            use std::io::Write;
            stdin
                .write_all(rules.as_bytes())
                .map_err(|e| format!("nft: {e}"))?;
        }
        let status = child.wait().map_err(|e| format!("nft: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("nft refused the rules:\n{rules}"))
        }
    }

    /// TCP segments retransmitted in the namespace so far.
    fn retransmitted(&self) -> u64 {
        let out = self.exec("cat").arg("/proc/net/snmp").output();
        let text = out.map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
        let text = text.unwrap_or_default();
        let mut tcp = text.lines().filter(|l| l.starts_with("Tcp:"));
        let (Some(names), Some(values)) = (tcp.next(), tcp.next()) else {
            return 0;
        };
        names
            .split_whitespace()
            .zip(values.split_whitespace())
            .find(|(n, _)| *n == "RetransSegs")
            .and_then(|(_, v)| v.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
        crate::signals::unregister_netns(&self.0);
    }
}

/// Starts `command` (an `ns.exec(...)`) in a process group of its own,
/// registered so that Ctrl-C or `kill` of xtask stops it before the
/// namespace is deleted, and ended by the kernel if xtask dies by SIGKILL.
fn spawn_in_group(mut command: Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    command.process_group(0);
    crate::signals::term_with_parent(&mut command);
    let child = command.spawn()?;
    crate::signals::register(child.id());
    Ok(child)
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {} (network namespaces need root)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// The server inside the namespace, killed by PID on drop.
struct Server {
    child: Child,
    tcp: SocketAddr,
    udp: SocketAddr,
}

impl Server {
    fn start(ns: &Netns, bin: &Path, io: &str) -> Result<Server, String> {
        let mut command = ns.exec(&bin.to_string_lossy());
        command
            .args([
                "serve",
                "--io",
                io,
                "--tcp",
                "127.0.0.1:0",
                "--udp",
                "127.0.0.1:0",
                "--udp-rate",
                "0",
            ])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        let mut child = spawn_in_group(command).map_err(|e| format!("ricochet serve: {e}"))?;
        let (tcp, udp) = listening::addresses(&mut child, true)?;
        let udp = udp.expect("asked for UDP");
        Ok(Server { child, tcp, udp })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        crate::signals::unregister(self.child.id());
    }
}

fn json_num(json: &str, key: &str) -> Option<f64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse().ok()
}

/// Runs `ricochet probe TARGET ARGS --json` in the namespace (bounded by
/// `timeout 600`); returns its JSON line and whether it passed.
fn probe(ns: &Netns, bin: &Path, target: &str, args: &[&str]) -> Result<(String, bool), String> {
    // In a registered group of its own: `timeout` leaves the terminal's
    // foreground group, so Ctrl-C reaches it only through the handler.
    let out = crate::signals::probe_json_in_group(ns.exec("timeout"), 600, bin, target, args)
        .map_err(|e| format!("ricochet probe: {e}"))?;
    let json = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let ok = out.status.success() && json.contains("\"ok\":true");
    Ok((json, ok))
}

/// `[--io uring|epoll|both]` (default both): the backends to measure.
fn backends(args: &[String]) -> Result<Vec<&'static str>, String> {
    let both = vec!["epoll", "uring"];
    match args {
        [] => Ok(both),
        [flag, io] if flag == "--io" => match io.as_str() {
            "both" => Ok(both),
            "uring" => Ok(vec!["uring"]),
            "epoll" => Ok(vec!["epoll"]),
            _ => Err(format!(
                "--io {io:?}: expected uring, epoll or both; usage: cargo xtask loss [--io uring|epoll|both]"
            )),
        },
        _ => Err("usage: cargo xtask loss [--io uring|epoll|both]".into()),
    }
}

pub(crate) fn loss(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    let backends = backends(args)?;
    if !crate::is_root() {
        return Err(
            "loss needs root (it creates a network namespace and nftables rules): \
             run it as root, e.g. sudo -E env \"PATH=$PATH\" cargo xtask loss (sudo's \
             secure_path would not find cargo in ~/.cargo/bin)"
                .into(),
        );
    }
    if !have("nft") {
        crate::apt_install(ctx, &["nftables"])?;
    }
    run(
        &ctx.root,
        "cargo",
        &["build", "--release", "--locked", "-p", "ricochet"],
        &[],
    )?;
    let bin = crate::ricochet_release(ctx);
    let ns = Netns::create()?;
    outln!(
        "| backend | loss per packet | TCP stream bytes verified | stream time | stream MB/s | TCP ping-pong verified | ping-pong p99 | TCP segments retransmitted | UDP round trips lost (expected) | UDP corrupt | result |"
    );
    outln!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for io in &backends {
        for &pct in LEVELS {
            ns.set_loss(pct)?;
            let server = Server::start(&ns, &bin, io)?;
            let retrans_before = ns.retransmitted();
            let tcp = format!("tcp://{}", server.tcp);
            let started = Instant::now();
            let (stream, stream_ok) = probe(
                &ns,
                &bin,
                &tcp,
                &[
                    "-c",
                    "4",
                    "-p",
                    "stream",
                    "-s",
                    "1-4000",
                    "-n",
                    "1500",
                    "--timeout",
                    "60s",
                ],
            )?;
            let stream_secs = started.elapsed().as_secs_f64();
            let (pp, pp_ok) = probe(
                &ns,
                &bin,
                &tcp,
                &["-c", "10", "-n", "200", "-s", "64", "--timeout", "60s"],
            )?;
            let retrans = ns.retransmitted().saturating_sub(retrans_before);
            let udp_target = format!("udp://{}", server.udp);
            let (udp, udp_ran) = probe(
                &ns,
                &bin,
                &udp_target,
                &[
                    "-n",
                    "2000",
                    "--rate",
                    "2000",
                    "--timeout",
                    "1s",
                    "--max-loss",
                    "100",
                ],
            )?;
            drop(server);
            let dgrams = udp.find("\"datagrams\"").map_or("", |i| &udp[i..]);
            let sent = json_num(dgrams, "sent").unwrap_or(0.0);
            let lost = json_num(dgrams, "lost").unwrap_or(0.0);
            let corrupt = json_num(dgrams, "corrupt").unwrap_or(0.0);
            let p = f64::from(pct) / 100.0;
            let expected = 1.0 - (1.0 - p) * (1.0 - p);
            let stream_bytes = json_num(&stream, "bytes_verified").unwrap_or(0.0);
            let stream_sent = json_num(&stream, "bytes_sent").unwrap_or(-1.0);
            let pp_bytes = json_num(&pp, "bytes_verified").unwrap_or(0.0);
            let p99 = pp
                .find("\"latency_us\"")
                .and_then(|i| json_num(&pp[i..], "p99"))
                .unwrap_or(f64::NAN);
            let ok = stream_ok && pp_ok && udp_ran && corrupt == 0.0 && stream_bytes == stream_sent;
            failed |= !ok;
            outln!(
                "| {io} | {pct} % | {stream_bytes:.0} of {stream_sent:.0} | {stream_secs:.2} s | {:.2} | {pp_bytes:.0} B | {p99:.0} µs | {retrans} | {:.2} % of {sent:.0} ({:.2} %) | {corrupt:.0} | {} |",
                stream_bytes / stream_secs / 1e6,
                if sent > 0.0 {
                    lost / sent * 100.0
                } else {
                    f64::NAN
                },
                expected * 100.0,
                if ok { "ok" } else { "FAILED" }
            );
            if !ok {
                eprintln!(
                    "xtask loss: {io} at {pct} %: stream {stream}\nping-pong {pp}\nudp {udp}"
                );
            }
        }
    }
    drop(ns);
    if failed {
        Err("a run under loss failed (see the table and the probe output above)".into())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On Ctrl-C or `kill`, xtask exits from its signal handler's thread
    /// and no `Drop` runs: what that thread does (`stop_registered`) must
    /// stop the server in the namespace and delete the namespace. Needs
    /// root and `ip`; skipped (passing) without them.
    #[test]
    fn a_signal_stops_the_server_and_deletes_the_namespace() {
        if !crate::is_root() || !have("ip") {
            eprintln!("skipped: needs root and ip (iproute2)");
            return;
        }
        let ns = Netns::create().unwrap();
        let name = ns.0.clone();
        let mut command = ns.exec("sleep");
        command.arg("60");
        let mut child = spawn_in_group(command).unwrap();
        // A signal's exit: no Drop for the namespace.
        std::mem::forget(ns);
        crate::signals::stop_registered();
        let listed = Command::new("ip").args(["netns", "list"]).output().unwrap();
        let left = String::from_utf8_lossy(&listed.stdout)
            .lines()
            .any(|l| l.split_whitespace().next() == Some(name.as_str()));
        let stopped = child.try_wait().unwrap();
        if left {
            let _ = ip(&["netns", "del", &name]);
        }
        if stopped.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        crate::signals::unregister(child.id());
        assert!(!left, "network namespace {name} left behind");
        assert!(stopped.is_some(), "the process in {name} still runs");
    }

    #[test]
    fn backends_are_checked_before_building() {
        let s = |a: &[&str]| a.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(backends(&[]), Ok(vec!["epoll", "uring"]));
        assert_eq!(backends(&s(&["--io", "both"])), Ok(vec!["epoll", "uring"]));
        assert_eq!(backends(&s(&["--io", "uring"])), Ok(vec!["uring"]));
        assert_eq!(backends(&s(&["--io", "epoll"])), Ok(vec!["epoll"]));
        for bad in [
            &["--io"][..],
            &["--io", "kqueue"],
            &["uring"],
            &["--io", "uring", "x"],
        ] {
            let e = backends(&s(bad)).unwrap_err();
            assert!(e.contains("[--io uring|epoll|both]"), "{bad:?}: {e}");
        }
    }
}
