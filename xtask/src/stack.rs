//! `cargo xtask stack [--board NAME]`: a QEMU board's stack high-water mark
//! under the CI stage's load, for the footprint table in
//! `embedded/README.md` (RAM = `.bss` + `.data` + stack).
//!
//! The firmware is built with cortex-m-rt's `paint-stack` feature (every
//! word between `_stack_end` and `_stack_start` is 0xCCCCCCCC at reset)
//! into its own target directory, booted with a QEMU monitor socket, put
//! through the same checks as `cargo xtask ci qemu` (which include the
//! bounded soak), and then the stack region is saved through the monitor's
//! `memsave` (the CPU's view, so the AN505's secure aliases work). The
//! first word above `_stack_end` that is no longer paint is the deepest the
//! stack went, boot included.

use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use crate::qemu;
use crate::vm::{self, Qemu};
use crate::{Ctx, have, run};

/// The paint cortex-m-rt leaves in unused stack.
const PAINT: [u8; 4] = [0xCC; 4];

pub(crate) fn stack(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    let (board, machine, rest) = vm::board_arg(args)?;
    if let Some(extra) = rest.first() {
        return Err(format!(
            "unexpected argument {extra:?}: usage: cargo xtask stack [--board NAME]"
        ));
    }
    vm::require_tools()?;
    if !have("llvm-nm") {
        return Err("llvm-nm not found: apt-get install -y --no-install-recommends llvm".into());
    }
    run(
        &ctx.root,
        &vm::cargo(),
        &["build", "--release", "--locked", "-p", "ricochet"],
        &[],
    )?;
    let elf = vm::build_variant(ctx, board, "paint-stack", "cortex-m-rt/paint-stack")?;
    let stack_end = symbol(&elf, "_stack_end")?;
    let stack_start = symbol(&elf, "_stack_start")?;
    let len = stack_start
        .checked_sub(stack_end)
        .ok_or("_stack_start is below _stack_end")?;

    let ricochet = crate::ricochet_release(ctx);
    let ports = vm::Ports::free()?;
    let port = ports.raw;
    let tmp = std::env::temp_dir();
    let socket = tmp.join(format!("ricochet-monitor-{port}.sock"));
    let dump = tmp.join(format!("ricochet-stack-{}-{port}.bin", board.name));
    let log = tmp.join(format!("ricochet-stack-{}-{port}.log", board.name));
    let _ = fs::remove_file(&socket);
    let _ = fs::remove_file(&dump);
    let extra = vec![
        "-monitor".to_string(),
        format!("unix:{},server,nowait", socket.display()),
    ];
    let mut vm = Qemu::boot_elf(
        ctx,
        machine,
        &elf,
        &extra,
        vm::Network::Forward(ports),
        log.clone(),
        vm::QEMU_LIMIT_SECS,
    )?;
    let loaded = qemu::checks(&ricochet, &ports, &mut vm);
    let saved = loaded.and_then(|()| {
        monitor(
            &socket,
            &format!("memsave {stack_end:#x} {len} \"{}\"", dump.display()),
        )?;
        wait_for_file(&dump, len)
    });
    let text = vm.log_text();
    drop(vm);
    let _ = fs::remove_file(&socket);
    let checked = saved.and_then(|()| qemu::no_panic_in(&text));
    vm::keep_log_if_failed(&checked, &log);
    checked?;

    let bytes = fs::read(&dump).map_err(|e| format!("{}: {e}", dump.display()))?;
    let _ = fs::remove_file(&dump);
    let untouched = bytes
        .chunks_exact(4)
        .take_while(|word| *word == PAINT)
        .count()
        * 4;
    if untouched == 0 {
        return Err(format!(
            "no paint at _stack_end ({stack_end:#x}): was the firmware built with cortex-m-rt/paint-stack?"
        ));
    }
    let used = u64::from(len) - untouched as u64;
    outln!(
        "{}: stack high-water {used} bytes after boot and the CI e2e load (lowest word touched {:#010x}; stack region {stack_end:#x}..{stack_start:#x})",
        board.name,
        u64::from(stack_end) + untouched as u64
    );
    Ok(())
}

/// A symbol's address in `elf`, from `llvm-nm`.
fn symbol(elf: &Path, name: &str) -> Result<u32, String> {
    let out = Command::new("llvm-nm")
        .arg(elf)
        .output()
        .map_err(|e| format!("cannot run llvm-nm: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|line| {
            let mut parts = line.split_whitespace();
            let addr = parts.next()?;
            let _kind = parts.next()?;
            (parts.next()? == name).then(|| u32::from_str_radix(addr, 16).ok())?
        })
        .ok_or_else(|| format!("{name} not found in {}", elf.display()))
}

/// Sends one command to QEMU's human monitor on `socket` and waits for its
/// prompt to come back (bounded).
fn monitor(socket: &Path, command: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match UnixStream::connect(socket) {
            Ok(s) => break s,
            Err(e) if Instant::now() > deadline => {
                return Err(format!("QEMU monitor {}: {e}", socket.display()));
            }
            Err(_) => thread::sleep(Duration::from_millis(100)),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream.try_clone().map_err(|e| e.to_string())?);
    let mut banner = String::new();
    reader
        .read_line(&mut banner)
        .map_err(|e| format!("QEMU monitor banner: {e}"))?;
    stream
        .write_all(format!("{command}\n").as_bytes())
        .map_err(|e| format!("QEMU monitor: {e}"))?;
    // The monitor echoes the command and prints a new prompt when done.
    let mut seen = Vec::new();
    let mut buf = [0u8; 4096];
    while !String::from_utf8_lossy(&seen).contains("\n(qemu)") {
        let n = reader
            .read(&mut buf)
            .map_err(|e| format!("QEMU monitor, waiting for `{command}`: {e}"))?;
        if n == 0 {
            return Err(format!("QEMU monitor closed during `{command}`"));
        }
        seen.extend_from_slice(&buf[..n]);
    }
    let reply = String::from_utf8_lossy(&seen);
    if reply.contains("rror") || reply.contains("invalid") {
        return Err(format!("QEMU monitor refused `{command}`: {reply}"));
    }
    Ok(())
}

/// Waits (bounded) until `path` holds `len` bytes.
fn wait_for_file(path: &Path, len: u32) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if fs::metadata(path).is_ok_and(|m| m.len() == u64::from(len)) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!("{} never reached {len} bytes", path.display()));
        }
        thread::sleep(Duration::from_millis(100));
    }
}
