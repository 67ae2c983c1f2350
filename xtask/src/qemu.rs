//! The QEMU stages: boot a board's firmware (every board in `BOARDS` with a
//! QEMU machine: lm3s6965evb, mps2-an385, mps2-an500, mps2-an505) through
//! `embedded/boards/qemu-run.sh` with slirp forwarding three host ports to
//! the guest's echo ports (7 raw and UDP, 7001 lines, 7002 frames), then
//! verify every mode with `ricochet probe`. The checks are the same for
//! every board: they only talk to those ports and read the node's stats
//! log.
//!
//! Booting and stopping QEMU is `vm.rs`.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::vm::{Ports, QEMU_LIMIT_SECS, Qemu, board_arg, cargo, require_tools};
use crate::{Board, Ctx, QemuMachine, run};

/// `cargo xtask qemu [--board NAME] [PORT]`: build and boot, in the
/// foreground, until Ctrl-C. With `--check`: run the CI stage's end-to-end
/// checks on that one board instead.
pub(crate) fn interactive(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    let (board, _, mut rest) = board_arg(args)?;
    if let Some(at) = rest.iter().position(|a| *a == "--timers") {
        rest.remove(at);
        if let Some(extra) = rest.first() {
            return Err(format!("--timers takes no port, got {extra:?}"));
        }
        return crate::timers::check(ctx, board);
    }
    if let Some(at) = rest.iter().position(|a| *a == "--check") {
        rest.remove(at);
        if let Some(extra) = rest.first() {
            return Err(format!(
                "--check takes no port (it picks a free one), got {extra:?}"
            ));
        }
        return end_to_end(ctx, board);
    }
    if rest.len() > 1 {
        return Err(format!(
            "unexpected argument {:?}: usage: cargo xtask qemu [--board NAME] [PORT | --check | --timers]",
            rest[1]
        ));
    }
    let port = rest.first().copied().unwrap_or("7777");
    let raw = forwarded_port(port)?;
    let (lines, frames) = ((raw + 1).to_string(), (raw + 2).to_string());
    require_tools()?;
    let dir = ctx.root.join(board.dir);
    eprintln!(
        "xtask: building the {} firmware; then forwarding 127.0.0.1:{port} (tcp+udp, raw) to guest port 7, :{lines} to 7001 (lines), :{frames} to 7002 (frames)",
        board.name
    );
    eprintln!(
        "xtask: in another terminal: cargo run --release -p ricochet -- probe tcp://127.0.0.1:{port}   (or tcp://127.0.0.1:{lines} -m lines, tcp://127.0.0.1:{frames} -m frames)"
    );
    // In a process group of its own, which `signals` stops on Ctrl-C or
    // `kill` (and SIGTERM if xtask dies): the runner's QEMU with it.
    eprintln!("+ (cd {}) cargo run --release", dir.display());
    let mut command = crate::command(cargo());
    command
        .args(["run", "--release"])
        .current_dir(&dir)
        .env("RICOCHET_PORT", port)
        .env("RICOCHET_LINES_PORT", &lines)
        .env("RICOCHET_FRAMES_PORT", &frames)
        .stdin(Stdio::null())
        .process_group(0);
    crate::signals::term_with_parent(&mut command);
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot run cargo run: {e}"))?;
    crate::signals::register(child.id());
    let status = child.wait();
    crate::signals::unregister(child.id());
    let status = status.map_err(|e| format!("waiting for cargo run: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("`cargo run --release` exited with {status}"))
    }
}

/// The host port `cargo xtask qemu PORT` forwards to the guest's port 7
/// (PORT+1 and PORT+2 go to 7001 and 7002): 1-65532, the range
/// `embedded/boards/qemu-run.sh` accepts too.
pub(crate) fn forwarded_port(port: &str) -> Result<u16, String> {
    port.parse::<u16>()
        .ok()
        .filter(|p| (1..=MAX_FORWARDED_PORT).contains(p))
        .ok_or_else(|| format!("bad port {port:?}: expected 1-{MAX_FORWARDED_PORT}"))
}

/// The highest PORT.
const MAX_FORWARDED_PORT: u16 = u16::MAX - 3;

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
    let out = crate::signals::output_in_group(
        Command::new("timeout")
            .arg((duration + 120).to_string())
            .arg(ricochet)
            .arg("probe")
            .args(args)
            .stdin(Stdio::null()),
    )
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

/// Builds `ricochet` and the board's firmware (release), picks free ports
/// and boots the firmware under `limit_secs`; the log goes to a temp file.
fn build_and_boot(
    ctx: &Ctx,
    board: &Board,
    machine: &QemuMachine,
    what: &str,
    limit_secs: u64,
) -> Result<(PathBuf, Ports, PathBuf, Qemu), String> {
    require_tools()?;
    run(
        &ctx.root,
        &cargo(),
        &["build", "--release", "--locked", "-p", "ricochet"],
        &[],
    )?;
    run(
        &ctx.root.join(board.dir),
        &cargo(),
        &["build", "--release", "--locked"],
        &[],
    )?;
    let ricochet = ctx.root.join("target/release/ricochet");
    let elf = ctx.root.join(board.dir).join(crate::vm::elf(board));
    let (ports, log, qemu) = Qemu::boot_forwarded(ctx, board, machine, &elf, what, limit_secs)?;
    Ok((ricochet, ports, log, qemu))
}

/// The CI stage for one board: boot, wait for a verified echo, run the
/// probe matrix, check the log.
pub(crate) fn end_to_end(ctx: &Ctx, board: &Board) -> Result<(), String> {
    let machine = board
        .qemu
        .as_ref()
        .ok_or_else(|| format!("{} does not run in QEMU", board.name))?;
    let (ricochet, ports, log, mut qemu) =
        build_and_boot(ctx, board, machine, "qemu", QEMU_LIMIT_SECS)?;
    let result = checks(&ricochet, &ports, &mut qemu);
    let text = qemu.log_text();
    drop(qemu);
    eprintln!("--- firmware log (defmt, {}):", log.display());
    for line in text.lines().take(400) {
        eprintln!("    {line}");
    }
    result?;
    no_panic_in(&text)
}

pub(crate) fn checks(ricochet: &Path, ports: &Ports, qemu: &mut Qemu) -> Result<(), String> {
    let port = ports.raw;
    let tcp = ports.tcp("raw");
    let udp = format!("udp://127.0.0.1:{port}");

    // 1. Up means a verified echo, not a bare connect (slirp accepts every
    //    connect even before the guest listens).
    let start = Instant::now();
    wait_until_echoing(ricochet, &tcp, qemu)?;
    eprintln!(
        "xtask: firmware echoes after {:.2}s",
        start.elapsed().as_secs_f64()
    );

    // 2. The matrix.
    let cases: &[(&str, &[&str])] = &[
        (
            "tcp ping-pong 32 B x 2000",
            &["--pattern", "pingpong", "--size", "32", "--count", "2000"],
        ),
        (
            "tcp stream 1 MiB",
            &["--pattern", "stream", "--size", "1024", "--count", "1024"],
        ),
        (
            "tcp random sizes",
            &["--pattern", "stream", "--size", "1-3000", "--count", "300"],
        ),
    ];
    for (name, args) in cases {
        let mut all = vec![tcp.as_str()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--timeout", "5s"]);
        let out = probe(ricochet, &all).map_err(|e| format!("{name}: {e}"))?;
        eprintln!("xtask: ok: {name}\n{}", indent(&out));
    }
    // Every mode on its own port: the probe frames and verifies each.
    for (mode, size) in [("lines", "1-1000"), ("frames", "2-1000")] {
        let url = ports.tcp(mode);
        let out = probe(
            ricochet,
            &[
                &url,
                "--mode",
                mode,
                "--pattern",
                "stream",
                "--size",
                size,
                "--count",
                "300",
                "--timeout",
                "5s",
            ],
        )
        .map_err(|e| format!("tcp {mode}: {e}"))?;
        eprintln!("xtask: ok: tcp {mode} on {url}\n{}", indent(&out));
    }
    // The whole pool at once: two raw connections beside one of each other
    // mode (a busy port yields its spare sockets to idle ones, so four on
    // one port is not promised).
    every_mode_at_once(ricochet, ports, "200")?;
    eprintln!("xtask: ok: 4 simultaneous connections (2 raw, 1 lines, 1 frames)");

    // 3. 200 back-to-back reconnects, each verified.
    let took = reconnect_storm(ricochet, &tcp, 200)?;
    eprintln!(
        "xtask: ok: 200 back-to-back reconnects in {:.1}s",
        took.as_secs_f64()
    );

    // 4. UDP: verified datagrams, then an oversize one that must be dropped.
    //    Paced under the firmware's per-source rate limit (1000/s, burst 100):
    //    through slirp every datagram comes from 10.0.2.2, one source.
    let out = probe(
        ricochet,
        &[
            &udp,
            "--size",
            "12-1400",
            "--count",
            "500",
            "--rate",
            "500",
            "--timeout",
            "1s",
        ],
    )
    .map_err(|e| format!("udp: {e}"))?;
    eprintln!("xtask: ok: udp 500 datagrams\n{}", indent(&out));
    oversize_datagram_is_dropped(port, qemu)?;

    // 5. A bounded soak: reconnects, then mixed concurrent load, then no leak.
    soak(ricochet, ports, qemu, 500, Duration::from_secs(20))
}

/// Two paced ping-pong connections on the raw port and one on each other
/// mode's, at the same time, each verified (`count` messages each).
fn every_mode_at_once(ricochet: &Path, ports: &Ports, count: &str) -> Result<(), String> {
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

/// `cargo xtask soak [--board NAME] [RECONNECTS] [SECONDS]`: the long
/// version, run locally (defaults: 10,000 reconnects, then 10 minutes of
/// mixed load).
pub(crate) fn soak_main(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    let (board, machine, rest) = board_arg(args)?;
    let (reconnects, secs) = soak_args(&rest)?;
    // Reconnects take about 10 ms each here; allow 50 ms, plus the load, plus margin.
    let limit = QEMU_LIMIT_SECS + secs + u64::from(reconnects) / 20;
    let (ricochet, ports, log, mut qemu) = build_and_boot(ctx, board, machine, "soak", limit)?;
    wait_until_echoing(&ricochet, &ports.tcp("raw"), &mut qemu)?;
    let result = soak(
        &ricochet,
        &ports,
        &mut qemu,
        reconnects,
        Duration::from_secs(secs),
    );
    let text = qemu.log_text();
    drop(qemu);
    eprintln!(
        "--- firmware log: {} (last stats lines below)",
        log.display()
    );
    for line in text
        .lines()
        .filter(|l| l.contains("INFO  tcp:") || l.contains("INFO  udp:"))
        .rev()
        .take(2)
    {
        eprintln!("    {line}");
    }
    result?;
    no_panic_in(&text)
}

/// `soak`'s `[RECONNECTS] [SECONDS]` (defaults 10000 and 600), checked
/// before anything is built or booted: the probe's `--duration` must be
/// at least 1 s.
fn soak_args(rest: &[&str]) -> Result<(u32, u64), String> {
    const USAGE: &str = "usage: cargo xtask soak [--board NAME] [RECONNECTS] [SECONDS]";
    if let Some(extra) = rest.get(2) {
        return Err(format!("unexpected argument {extra:?}: {USAGE}"));
    }
    let reconnects = rest.first().copied().unwrap_or("10000");
    let reconnects: u32 = reconnects.parse().map_err(|_| {
        format!("RECONNECTS {reconnects:?}: expected a whole number (0 or more); {USAGE}")
    })?;
    let secs = rest.get(1).copied().unwrap_or("600");
    let secs: u64 = secs
        .parse()
        .ok()
        .filter(|s| (1..=86_400).contains(s))
        .ok_or_else(|| {
            format!("SECONDS {secs:?}: expected a whole number from 1 to 86400; {USAGE}")
        })?;
    Ok((reconnects, secs))
}

pub(crate) fn no_panic_in(text: &str) -> Result<(), String> {
    for bad in ["panicked", "panic:", "HardFault", "hard fault", "ERROR"] {
        if text.contains(bad) {
            return Err(format!("the firmware log contains {bad:?}"));
        }
    }
    Ok(())
}

/// Datagrams per second in the soak's UDP load.
const SOAK_UDP_RATE: &str = "300";
/// Loss the soak's UDP probe itself tolerates, in percent. Every lost
/// datagram must still be one the firmware's policy dropped and counted
/// (see `udp_losses_accounted`): through slirp all datagrams come from one
/// source, allowed 1000/s with a burst of 100, and when a loaded host
/// stalls QEMU or the probe, the probe's open-loop pacing catches up with a
/// burst the policy rightly trims.
const SOAK_UDP_MAX_LOSS_PCT: &str = "5";

/// Reconnects `reconnects` times back to back (each a verified echo), then
/// runs a raw TCP stream, a `lines` and a `frames` ping-pong connection and
/// paced UDP at once for `load`; then checks that the pool is whole again:
/// four simultaneous connections over the modes are served and the
/// firmware's stats report 0 active sessions.
fn soak(
    ricochet: &Path,
    ports: &Ports,
    qemu: &mut Qemu,
    reconnects: u32,
    load: Duration,
) -> Result<(), String> {
    let tcp = ports.tcp("raw");
    let udp = format!("udp://127.0.0.1:{}", ports.raw);
    let took = reconnect_storm(ricochet, &tcp, reconnects)?;
    eprintln!(
        "xtask: soak: {} in {:.1}s",
        count(u64::from(reconnects), "reconnect"),
        took.as_secs_f64()
    );

    let d = format!("{}s", load.as_secs());
    let runs: Vec<(&str, Vec<String>)> = vec![
        (
            "stream",
            vec![
                tcp.clone(),
                "--pattern".into(),
                "stream".into(),
                "--size".into(),
                "1-2000".into(),
            ],
        ),
        (
            "lines ping-pong",
            vec![
                ports.tcp("lines"),
                "--mode".into(),
                "lines".into(),
                "--size".into(),
                "1-300".into(),
            ],
        ),
        (
            "frames ping-pong",
            vec![
                ports.tcp("frames"),
                "--mode".into(),
                "frames".into(),
                "--size".into(),
                "2-300".into(),
            ],
        ),
        (
            "udp",
            vec![
                udp.clone(),
                "--size".into(),
                "12-1400".into(),
                "--rate".into(),
                SOAK_UDP_RATE.into(),
                "--max-loss".into(),
                SOAK_UDP_MAX_LOSS_PCT.into(),
            ],
        ),
    ];
    let handles: Vec<_> = runs
        .into_iter()
        .map(|(name, mut args)| {
            args.extend([
                "--duration".into(),
                d.clone(),
                "--timeout".into(),
                "5s".into(),
                "--json".into(),
            ]);
            let bin = ricochet.to_path_buf();
            std::thread::spawn(move || {
                let refs: Vec<&str> = args.iter().map(String::as_str).collect();
                (name, probe(&bin, &refs))
            })
        })
        .collect();
    let mut udp_lost = 0;
    for h in handles {
        let (name, result) = h.join().map_err(|_| "soak thread panicked".to_string())?;
        let json = result.map_err(|e| format!("soak {name}: {e}"))?;
        let verified = json_field(&json, "bytes_verified").unwrap_or_else(|| "?".into());
        eprintln!("xtask: soak: {name} for {d}: ok, {verified} bytes verified");
        if name == "udp" {
            udp_lost = json_field(&json, "lost")
                .and_then(|n| n.parse::<u64>().ok())
                .ok_or_else(|| format!("soak udp: no datagram loss count in {json}"))?;
        }
    }
    if !qemu.alive() {
        return Err("QEMU exited during the soak".into());
    }

    // No leak: every pool socket serves again...
    every_mode_at_once(ricochet, ports, "50")
        .map_err(|e| format!("after the soak, 4 simultaneous connections: {e}"))?;
    // ...and the firmware's next stats line reports no session left open.
    let deadline = Instant::now() + Duration::from_secs(25);
    let before = qemu
        .log_text()
        .lines()
        .filter(|l| l.contains("INFO  tcp:"))
        .count();
    loop {
        let text = qemu.log_text();
        let lines: Vec<&str> = text.lines().filter(|l| l.contains("INFO  tcp:")).collect();
        if lines.len() > before
            && let Some(last) = lines.last()
        {
            if last.contains(" 0 active") {
                eprintln!("xtask: soak: pool whole again: {}", last.trim());
                return udp_losses_accounted(udp_lost, &text);
            }
            return Err(format!("sessions still active after the soak: {last}"));
        }
        if Instant::now() > deadline {
            return Err("no stats line from the firmware after the soak".into());
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// `n` back-to-back connections, each one verified echo; returns the time taken.
fn reconnect_storm(ricochet: &Path, tcp: &str, n: u32) -> Result<Duration, String> {
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

fn oversize_datagram_is_dropped(port: u16, qemu: &Qemu) -> Result<(), String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .map_err(|e| e.to_string())?;
    let big = vec![0x5a; 1472];
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        sock.send_to(&big, ("127.0.0.1", port))
            .map_err(|e| e.to_string())?;
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return Err(format!(
                "an oversize datagram (1472 bytes) was answered with {n} bytes"
            ));
        }
    }
    // The firmware counts each drop by reason and logs the counters every
    // 10 s ("udp: ... dropped N oversize, ..."): wait for a line with N > 0.
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let text = qemu.log_text();
        if let Some(n) = BufReader::new(text.as_bytes())
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| count_before(&l, " oversize"))
            .max()
            && n >= 1
        {
            eprintln!("xtask: ok: oversize datagrams dropped and counted by the firmware ({n})");
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the firmware's stats never counted an oversize drop".into());
        }
        thread::sleep(Duration::from_millis(250));
    }
}

/// Every datagram the soak's UDP probe lost must be one the firmware
/// dropped by its rate limit and counted: its last `udp:` stats line (from
/// after the soak) must count at least `lost` rate-limited datagrams.
fn udp_losses_accounted(lost: u64, log: &str) -> Result<(), String> {
    if lost == 0 {
        return Ok(());
    }
    let limited = log
        .lines()
        .rfind(|l| l.contains("INFO  udp:"))
        .and_then(|l| count_before(l, " rate limited"))
        .ok_or("no udp stats line from the firmware after the soak")?;
    if lost > limited {
        return Err(format!(
            "the soak lost {} but the firmware rate-limited only {limited}: the rest vanished uncounted",
            count(lost, "UDP datagram")
        ));
    }
    eprintln!(
        "xtask: soak: {} lost, all dropped and counted by the rate limit ({limited} in all; the host stalled and the probe caught up in a burst)",
        count(lost, "UDP datagram")
    );
    Ok(())
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
fn count_before(line: &str, what: &str) -> Option<u64> {
    let at = line.find(what)?;
    line[..at].rsplit(' ').next()?.parse().ok()
}

/// `n` and `what`, plural unless `n` is 1: "1 reconnect", "2 reconnects".
fn count(n: u64, what: &str) -> String {
    if n == 1 {
        format!("{n} {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn indent(s: &str) -> String {
    s.lines().map(|l| format!("    {l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATS: &str = "10.000 INFO  udp: 503 received, 500 echoed (358886 bytes); dropped 3 oversize, 0 loop guard, 0 rate limited, 0 not unicast, 0 unroutable, 0 tx full; 0 stalled rings flushed\n\
        30.004 INFO  udp: 1393 received, 1387 echoed (986048 bytes); dropped 3 oversize, 0 loop guard, 4 rate limited, 0 not unicast, 0 unroutable, 0 tx full; 0 stalled rings flushed\n";

    #[test]
    fn soak_arguments_are_checked_before_booting() {
        assert_eq!(soak_args(&[]), Ok((10_000, 600)));
        assert_eq!(soak_args(&["1", "30"]), Ok((1, 30)));
        assert_eq!(soak_args(&["0", "1"]), Ok((0, 1)));
        let zero = soak_args(&["0", "0"]).unwrap_err();
        assert!(
            zero.contains("SECONDS \"0\"") && zero.contains("1 to 86400"),
            "{zero}"
        );
        assert!(soak_args(&["x"]).unwrap_err().contains("RECONNECTS \"x\""));
        assert!(soak_args(&["-1"]).is_err());
        assert!(soak_args(&["1", "10s"]).is_err());
        assert!(
            soak_args(&["1", "2", "3"])
                .unwrap_err()
                .contains("unexpected argument \"3\"")
        );
    }

    #[test]
    fn counts_are_singular_for_one() {
        assert_eq!(count(1, "reconnect"), "1 reconnect");
        assert_eq!(count(0, "reconnect"), "0 reconnects");
        assert_eq!(count(10_000, "reconnect"), "10000 reconnects");
    }

    #[test]
    fn forwarded_ports_leave_room_for_two_more() {
        assert_eq!(forwarded_port("7777"), Ok(7777));
        assert_eq!(forwarded_port("1"), Ok(1));
        assert_eq!(forwarded_port("65532"), Ok(65532));
        for bad in ["0", "65533", "65535", "65536", "abc", "", "-1"] {
            let e = forwarded_port(bad).unwrap_err();
            assert!(e.contains("1-65532"), "{bad}: {e}");
        }
    }

    #[test]
    fn soak_udp_losses_the_rate_limit_counted_pass() {
        assert_eq!(udp_losses_accounted(0, ""), Ok(()));
        assert_eq!(udp_losses_accounted(4, STATS), Ok(()));
    }

    #[test]
    fn soak_udp_losses_beyond_the_rate_limit_count_fail() {
        let err = udp_losses_accounted(5, STATS).unwrap_err();
        assert!(err.contains("lost 5") && err.contains("only 4"), "{err}");
        assert!(udp_losses_accounted(1, "no stats at all").is_err());
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
