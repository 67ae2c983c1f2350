//! `cargo xtask qemu-bench [--board NAME] [--features F] [--runs N]`: one
//! command for a QEMU firmware's figures in `embedded/README.md` (the table
//! beside Zephyr's): flash and RAM from the ELF, host CPU of the idle QEMU
//! process over 10 s (`/proc/PID/stat`), 32-byte ping-pong p50/p99, and
//! verified stream MB/s, and that per second of QEMU's CPU (what it does
//! with a whole host core, less sensitive to other load). Builds with `--features` into its own target
//! directory (`bench-FEATURES` in the target directory), so the default build is left alone.
//! A measurement, not a test: it prints, it asserts nothing but that every
//! echo verified.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::vm::{QEMU_LIMIT_SECS, Qemu, board_arg, build_variant, cargo, require_tools};
use crate::{Ctx, procstat, run};

/// `--features`: cargo feature names separated by commas (`big-buffers`,
/// `ipv6,client`, `cortex-m-rt/paint-stack`), checked before building.
fn feature_list(list: &str) -> Result<String, String> {
    let name = |f: &str| {
        !f.is_empty()
            && f.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_/".contains(&b))
    };
    if list.split(',').all(name) {
        Ok(list.to_owned())
    } else {
        Err(format!(
            "--features {list:?}: expected feature names separated by commas, e.g. ipv6,client"
        ))
    }
}

pub(crate) fn qemu_bench(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    let (board, machine, rest) = board_arg(args)?;
    let mut features = String::new();
    let mut runs = 5;
    let mut it = rest.into_iter();
    while let Some(arg) = it.next() {
        match arg {
            "--features" => {
                features = feature_list(it.next().ok_or("--features needs a list")?)?;
            }
            "--runs" => {
                runs = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|n| *n > 0)
                    .ok_or("--runs needs a positive number")?;
            }
            other => {
                return Err(format!(
                    "unexpected argument {other:?}: usage: cargo xtask qemu-bench [--board NAME] [--features F] [--runs N]"
                ));
            }
        }
    }
    require_tools()?;
    if !crate::have("llvm-size") {
        return Err("llvm-size not found: apt-get install -y --no-install-recommends llvm".into());
    }
    run(
        &ctx.root,
        &cargo(),
        &["build", "--release", "--locked", "-p", "ricochet"],
        &[],
    )?;
    let tag = if features.is_empty() {
        "default".to_string()
    } else {
        features.replace(',', "+")
    };
    let elf = build_variant(ctx, board, &format!("bench-{tag}"), &features)?;
    let (flash, ram) = footprint(&elf)?;

    let ricochet = crate::ricochet_release(ctx);
    let (ports, log, mut qemu) =
        Qemu::boot_forwarded(ctx, board, machine, &elf, "bench", QEMU_LIMIT_SECS)?;
    let tcp = ports.tcp("raw");
    crate::qemu::wait_until_echoing(&ricochet, &tcp, &mut qemu)?;
    let pid = qemu_pid(&qemu)?;

    // Idle: nothing connects for 10 s (after the boards' 1 s busy tick).
    thread::sleep(Duration::from_secs(2));
    let idle = cpu_share(pid, Duration::from_secs(10))?;

    let pingpong = crate::qemu::probe(
        &ricochet,
        &[
            &tcp,
            "--pattern",
            "pingpong",
            "--size",
            "32",
            "--count",
            "5000",
            "--timeout",
            "5s",
            "--json",
        ],
    )?;
    let p50 = number(&pingpong, "p50")?;
    let p99 = number(&pingpong, "p99")?;
    let mut streams = Vec::new();
    let mut per_cpu = Vec::new();
    for _ in 0..runs {
        let before = cpu_seconds(pid)?;
        let out = crate::qemu::probe(
            &ricochet,
            &[
                &tcp,
                "--pattern",
                "stream",
                "--size",
                "1KiB",
                "--count",
                "8192",
                "--timeout",
                "5s",
                "--json",
            ],
        )?;
        // At least one clock tick (1/100 s), so the rate stays finite.
        let cpu = (cpu_seconds(pid)? - before).max(0.01);
        streams.push(number(&out, "mb_per_sec")?);
        // Verified bytes echoed per second of QEMU's CPU: what the
        // firmware and QEMU do with a whole host core, whatever else runs.
        per_cpu.push(number(&out, "bytes_verified")? / 1e6 / cpu);
    }
    drop(qemu);
    // Every measurement above succeeded (each failure returned early and
    // left the log): nothing to look at.
    let _ = std::fs::remove_file(&log);
    streams.sort_by(f64::total_cmp);
    per_cpu.sort_by(f64::total_cmp);
    let median = streams[streams.len() / 2];
    let capacity = per_cpu[per_cpu.len() / 2];
    let listed: Vec<String> = streams.iter().map(|s| format!("{s:.1}")).collect();
    outln!("| firmware | flash | RAM | ping-pong p50 / p99 | stream | idle CPU (QEMU) |");
    outln!("|---|---|---|---|---|---|");
    outln!(
        "| {} {} | {} B ({:.1} KiB) | {} B ({:.1} KiB) .bss+.data, stack not included | {p50:.0} / {p99:.0} µs | {median:.1} MB/s (runs: {}); {capacity:.1} MB per QEMU CPU-second | {idle:.1} % |",
        board.name,
        if features.is_empty() {
            "(default)"
        } else {
            &features
        },
        flash,
        flash as f64 / 1024.0,
        ram,
        ram as f64 / 1024.0,
        listed.join(", ")
    );
    Ok(())
}

/// Flash (`.vector_table + .text + .rodata + .data`) and static RAM
/// (`.data + .bss`) of `elf`, from `llvm-size -A`.
pub(crate) fn footprint(elf: &Path) -> Result<(u64, u64), String> {
    let out = Command::new("llvm-size")
        .arg("-A")
        .arg(elf)
        .output()
        .map_err(|e| format!("llvm-size: {e}"))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let size = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| {
                let mut parts = l.split_whitespace();
                (parts.next()? == name).then(|| parts.next()?.parse().ok())?
            })
            .unwrap_or(0)
    };
    let flash = size(".vector_table") + size(".text") + size(".rodata") + size(".data");
    if flash == 0 {
        return Err(format!("no sections in {}", elf.display()));
    }
    Ok((flash, size(".data") + size(".bss")))
}

/// The `qemu-system-arm` process of the process group QEMU was booted in.
fn qemu_pid(qemu: &Qemu) -> Result<u32, String> {
    let group = qemu.group();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        for entry in fs::read_dir("/proc").map_err(|e| e.to_string())?.flatten() {
            let path: PathBuf = entry.path();
            let Ok(stat) = fs::read_to_string(path.join("stat")) else {
                continue;
            };
            // pid (comm) state ppid pgrp ...
            let Some((head, tail)) = stat.rsplit_once(") ") else {
                continue;
            };
            let pgrp = tail.split_whitespace().nth(2);
            if head.ends_with("(qemu-system-arm") && pgrp == Some(&group.to_string()) {
                return head
                    .split_whitespace()
                    .next()
                    .and_then(|p| p.parse().ok())
                    .ok_or_else(|| format!("bad /proc stat: {stat}"));
            }
        }
        if Instant::now() > deadline {
            return Err("no qemu-system-arm process in QEMU's process group".into());
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// CPU seconds process `pid` has used (user + system).
fn cpu_seconds(pid: u32) -> Result<f64, String> {
    procstat::cpu_seconds(pid, false).ok_or_else(|| format!("cannot read /proc/{pid}/stat"))
}

/// Share of one host core process `pid` used over `span`, in percent.
fn cpu_share(pid: u32, span: Duration) -> Result<f64, String> {
    let (t0, at) = (cpu_seconds(pid)?, Instant::now());
    thread::sleep(span);
    let t1 = cpu_seconds(pid)?;
    Ok((t1 - t0) / at.elapsed().as_secs_f64() * 100.0)
}

/// A number field of the probe's JSON line.
fn number(json: &str, name: &str) -> Result<f64, String> {
    crate::qemu::json_field(json, name)
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("no {name} in the probe's report: {json}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_checked_before_building() {
        assert_eq!(feature_list("big-buffers").as_deref(), Ok("big-buffers"));
        assert_eq!(feature_list("ipv6,client").as_deref(), Ok("ipv6,client"));
        assert!(feature_list("cortex-m-rt/paint-stack").is_ok());
        for bad in ["", "ipv6,", "ipv6 client", "a;b"] {
            assert!(feature_list(bad).is_err(), "{bad:?}");
        }
    }
}
