//! What every attack scenario runs on: the server child process, the
//! well-behaved probe measured before and during the attack, and the
//! results row.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::Duration;

use crate::listening;

/// One row of the results table.
pub(super) struct Row {
    pub(super) name: &'static str,
    pub(super) attack: String,
    pub(super) before_p99_us: u64,
    pub(super) during_p99_us: u64,
    pub(super) verified: u64,
    pub(super) failures: u64,
    pub(super) outcome: String,
}

/// A server child process, killed by PID on drop.
pub(super) struct Server {
    pub(super) child: Child,
    pub(super) tcp: SocketAddr,
    pub(super) udp: Option<SocketAddr>,
}

impl Server {
    pub(super) fn start(bin: &Path, args: &[&str], nofile: Option<u32>) -> Result<Server, String> {
        let mut cmd = match nofile {
            Some(n) => {
                let mut c = Command::new("prlimit");
                c.arg(format!("--nofile={n}:{n}")).arg(bin);
                c
            }
            None => Command::new(bin),
        };
        if let Some(d) = BUSY_POLL.get() {
            cmd.args(["serve", "--busy-poll", d]);
        } else {
            cmd.arg("serve");
        }
        let mut child = cmd
            .args(args)
            .env("RICOCHET_IO", IO.get().map_or("auto", String::as_str))
            .env("RUST_LOG", "error")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start ricochet serve: {e}"))?;
        let (tcp, udp) = listening::addresses(&mut child, args.contains(&"--udp"))?;
        Ok(Server { child, tcp, udp })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A probe's figures, read from its `--json` line.
pub(super) struct ProbeRun {
    pub(super) p99_us: u64,
    pub(super) verified: u64,
    pub(super) ok: bool,
    pub(super) json: String,
}

pub(super) fn json_number(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    let digits: String = json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    digits.parse::<f64>().ok().map(|v| v as u64)
}

pub(super) fn probe(bin: &Path, target: &str, args: &[&str]) -> Result<ProbeRun, String> {
    let out = crate::signals::probe_json_in_group(Command::new("timeout"), 60, bin, target, args)
        .map_err(|e| format!("cannot run ricochet probe: {e}"))?;
    let json = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let latency = json
        .find("\"latency_us\"")
        .map(|i| &json[i..])
        .unwrap_or("");
    Ok(ProbeRun {
        p99_us: json_number(latency, "p99").unwrap_or(u64::MAX),
        verified: json_number(&json, "bytes_verified").unwrap_or(0),
        ok: out.status.success() && json.contains("\"ok\":true"),
        json,
    })
}

/// The well-behaved client: 64-byte ping-pong for `secs` seconds.
pub(super) fn good_client(
    bin: &Path,
    target: &str,
    secs: u32,
    mode: &str,
) -> Result<ProbeRun, String> {
    let d = format!("{secs}s");
    probe(
        bin,
        target,
        &[
            "--pattern",
            "pingpong",
            "--size",
            "64",
            "--duration",
            &d,
            "--mode",
            mode,
            "--timeout",
            "5s",
        ],
    )
}

/// Starts the good client first (it is an existing client when the attack
/// begins), starts `attack` after 1 s, and stops the attack when the client
/// is done. Returns (the client's run, the attack's summary).
pub(super) fn during<F>(
    bin: &Path,
    target: &str,
    mode: &str,
    attack: F,
) -> Result<(ProbeRun, String), String>
where
    F: FnOnce(Arc<AtomicBool>) -> String + Send + 'static,
{
    let (bin, target, mode) = (bin.to_path_buf(), target.to_string(), mode.to_string());
    let client = thread::spawn(move || good_client(&bin, &target, 5, &mode));
    thread::sleep(Duration::from_secs(1));
    let stop = Arc::new(AtomicBool::new(false));
    let s = stop.clone();
    let attacker = thread::spawn(move || attack(s));
    let run = client
        .join()
        .map_err(|_| "client thread panicked".to_string())?;
    stop.store(true, Ordering::SeqCst);
    let summary = attacker
        .join()
        .map_err(|_| "attacker thread panicked".to_string())?;
    Ok((run?, summary))
}

pub(super) fn row(
    name: &'static str,
    before: &ProbeRun,
    during: &ProbeRun,
    attack: String,
    outcome: String,
) -> Row {
    for (when, run) in [("before", before), ("during", during)] {
        if !run.ok {
            eprintln!(
                "xtask attack: {name}: the probe {when} the attack failed: {}",
                run.json
            );
        }
    }
    Row {
        name,
        attack,
        before_p99_us: before.p99_us,
        during_p99_us: during.p99_us,
        verified: during.verified,
        failures: u64::from(!before.ok) + u64::from(!during.ok),
        outcome,
    }
}

/// The backend every server of the run uses (`--io`; passed as `RICOCHET_IO`).
pub(super) static IO: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// `--busy-poll` of every server of the run (default: the server's own).
pub(super) static BUSY_POLL: std::sync::OnceLock<String> = std::sync::OnceLock::new();

/// Records whether a new client was served after the attack.
pub(super) fn note_recovery(r: &mut Row, after: &ProbeRun, what: &str) {
    r.failures += u64::from(!after.ok);
    r.outcome += &format!("; {what}: {}", if after.ok { "ok" } else { "FAILED" });
}

pub(super) fn target(s: &Server) -> String {
    format!("tcp://{}", s.tcp)
}

pub(super) fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .map(|l| l.to_string())
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}
