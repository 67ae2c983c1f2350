//! The QEMU stages: boot a board's firmware (every board in `BOARDS` with a
//! QEMU machine: lm3s6965evb, mps2-an385, mps2-an500, mps2-an505) through
//! `embedded/boards/qemu-run.sh` with slirp forwarding three host ports to
//! the guest's echo ports (7 raw and UDP, 7001 lines, 7002 frames), then
//! verify every mode with `ricochet probe`. The checks are the same for
//! every board: they only talk to those ports and read the node's stats
//! log.
//!
//! Booting and stopping QEMU is `vm.rs`.
//!
//! Here: `cargo xtask qemu` itself, building and booting a board for a
//! check, and the firmware log's panic check. The CI stage's end-to-end
//! checks are in `e2e.rs`, the soak (`cargo xtask soak` and the CI
//! stage's short one) in `soak.rs`, and running `ricochet probe` against
//! the guest and reading its reports in `probe.rs`.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::Stdio;

use crate::vm::{Ports, Qemu, board_arg, cargo, require_tools};
use crate::{Board, Ctx, QemuMachine, run};

mod e2e;
mod probe;
mod soak;

pub(crate) use e2e::{checks, end_to_end};
pub(crate) use probe::{json_field, probe, wait_until_echoing};
pub(crate) use soak::soak_main;

/// `cargo xtask qemu [--board NAME] [PORT]`: build and boot, in the
/// foreground, until Ctrl-C. With `--check`: run the CI stage's end-to-end
/// checks on that one board instead.
pub(crate) fn interactive(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    let (board, _, rest) = board_arg(args)?;
    let port = match action(&rest)? {
        Action::Timers => return crate::timers::check(ctx, board),
        Action::Check => return end_to_end(ctx, board),
        Action::Boot(port) => port,
    };
    let raw = forwarded_port(port)?;
    let (lines, frames) = ((raw + 1).to_string(), (raw + 2).to_string());
    ports_free(raw, board.name)?;
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

const USAGE: &str = "usage: cargo xtask qemu [--board NAME] [PORT | --check | --timers]";

/// What `cargo xtask qemu`'s arguments (less `--board NAME`) ask for.
#[derive(Debug, PartialEq)]
enum Action<'a> {
    /// `--timers`: the timer checks.
    Timers,
    /// `--check`: the CI stage's end-to-end checks.
    Check,
    /// Boot in the foreground with PORT (checked later) forwarded.
    Boot(&'a str),
}

/// Parses `rest`, checked before anything is built: an option it does
/// not know (`--chek`, `--help`) is named as one, with the usage, rather
/// than read as a bad PORT.
fn action<'a>(rest: &[&'a str]) -> Result<Action<'a>, String> {
    if let Some(opt) = rest
        .iter()
        .find(|a| (a.starts_with("--") && !["--check", "--timers"].contains(a)) || **a == "-h")
    {
        return Err(format!("unknown option {opt:?}; {USAGE}"));
    }
    let mut rest = rest.to_vec();
    if let Some(at) = rest.iter().position(|a| *a == "--timers") {
        rest.remove(at);
        if let Some(extra) = rest.first() {
            return Err(format!("--timers takes no port, got {extra:?}"));
        }
        return Ok(Action::Timers);
    }
    if let Some(at) = rest.iter().position(|a| *a == "--check") {
        rest.remove(at);
        if let Some(extra) = rest.first() {
            return Err(format!(
                "--check takes no port (it picks a free one), got {extra:?}"
            ));
        }
        return Ok(Action::Check);
    }
    if rest.len() > 1 {
        return Err(format!("unexpected argument {:?}: {USAGE}", rest[1]));
    }
    Ok(Action::Boot(rest.first().copied().unwrap_or("7777")))
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

/// The ports QEMU forwards from 127.0.0.1 for PORT `raw`: `raw` (TCP and
/// UDP), `raw`+1 and `raw`+2 (TCP), those taken named as `127.0.0.1:P (tcp)`.
fn taken_ports(raw: u16) -> Vec<String> {
    let busy = |port: u16, udp: bool| {
        let addr = ("127.0.0.1", port);
        let taken = if udp {
            std::net::UdpSocket::bind(addr).is_err()
        } else {
            std::net::TcpListener::bind(addr).is_err()
        };
        taken.then(|| format!("127.0.0.1:{port} ({})", if udp { "udp" } else { "tcp" }))
    };
    [
        (raw, false),
        (raw, true),
        (raw.saturating_add(1), false),
        (raw.saturating_add(2), false),
    ]
    .into_iter()
    .filter_map(|(port, udp)| busy(port, udp))
    .collect()
}

/// A PORT to suggest instead of `raw`: the first of `raw`+1000,
/// `raw`+2000, … (wrapping within 1024-65532) whose ports are free now.
fn free_port_after(raw: u16) -> Option<u16> {
    let span = u32::from(MAX_FORWARDED_PORT) - 1024 + 1;
    (1..=64u32)
        .map(|k| (1024 + (u32::from(raw) + 1000 * k).saturating_sub(1024) % span) as u16)
        .find(|&p| p != raw && taken_ports(p).is_empty())
}

/// Checks that QEMU can forward from 127.0.0.1:`raw` (TCP and UDP), `raw`+1
/// and `raw`+2 (TCP): QEMU itself names only one busy rule, and no fix.
/// The command suggested instead boots the same `board` on ports free now.
fn ports_free(raw: u16, board: &str) -> Result<(), String> {
    let taken = taken_ports(raw);
    if taken.is_empty() {
        return Ok(());
    }
    let board_arg = if board == crate::DEFAULT_QEMU_BOARD {
        String::new()
    } else {
        format!("--board {board} ")
    };
    let fix = match free_port_after(raw) {
        Some(p) => format!(", e.g. cargo xtask qemu {board_arg}{p}"),
        None => String::new(),
    };
    Err(format!(
        "cannot forward {}: in use (another `cargo xtask qemu`?); stop it, or pass another \
         PORT (it forwards PORT, PORT+1 and PORT+2){fix}",
        taken.join(", "),
    ))
}

/// Builds `ricochet` and the board's firmware (release), picks free ports
/// and boots the firmware under `limit_secs`; the log goes to a temp file.
pub(super) fn build_and_boot(
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
    let ricochet = crate::ricochet_release(ctx);
    let elf = crate::vm::elf(ctx, board);
    for (built, what) in [(&ricochet, "ricochet"), (&elf, "the firmware")] {
        if !built.is_file() {
            return Err(format!(
                "{what} was built but is not at {}: a cargo config's build.target-dir? \
                 set CARGO_TARGET_DIR instead (xtask follows it)",
                built.display()
            ));
        }
    }
    let (ports, log, qemu) = Qemu::boot_forwarded(ctx, board, machine, &elf, what, limit_secs)?;
    Ok((ricochet, ports, log, qemu))
}

pub(crate) fn no_panic_in(text: &str) -> Result<(), String> {
    for bad in ["panicked", "panic:", "HardFault", "hard fault", "ERROR"] {
        if text.contains(bad) {
            return Err(format!("the firmware log contains {bad:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two `udp:` stats lines of the firmware (for the tests of `probe.rs`
    /// and `soak.rs` too).
    pub(super) const STATS: &str = "10.000 INFO  udp: 503 received, 500 echoed (358886 bytes); dropped 3 oversize, 0 loop guard, 0 rate limited, 0 not unicast, 0 unroutable, 0 tx full; 0 stalled rings flushed\n\
        30.004 INFO  udp: 1393 received, 1387 echoed (986048 bytes); dropped 3 oversize, 0 loop guard, 4 rate limited, 0 not unicast, 0 unroutable, 0 tx full; 0 stalled rings flushed\n";

    #[test]
    fn qemu_options_it_does_not_know_are_named_with_the_usage_not_as_a_bad_port() {
        assert_eq!(action(&[]), Ok(Action::Boot("7777")));
        assert_eq!(action(&["9000"]), Ok(Action::Boot("9000")));
        assert_eq!(action(&["--check"]), Ok(Action::Check));
        assert_eq!(action(&["--timers"]), Ok(Action::Timers));
        for typo in ["--chek", "--help", "-h", "--timer"] {
            let e = action(&[typo]).unwrap_err();
            assert!(
                e.contains(&format!("unknown option {typo:?}"))
                    && e.contains("[PORT | --check | --timers]")
                    && !e.contains("bad port"),
                "{typo}: {e}"
            );
        }
        assert!(
            action(&["--check", "9000"])
                .unwrap_err()
                .contains("takes no port")
        );
        assert!(
            action(&["1", "2"])
                .unwrap_err()
                .contains("unexpected argument \"2\"")
        );
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
    fn busy_forwarded_port_is_named_with_another_port_to_try() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        // The held port as PORT+1 (lines): named, with the fix.
        let e = ports_free(port - 1, crate::DEFAULT_QEMU_BOARD).unwrap_err();
        assert!(
            e.contains(&format!("127.0.0.1:{port} (tcp)")) && e.contains("pass another"),
            "{e}"
        );
        assert!(
            e.contains("e.g. cargo xtask qemu ") && !e.contains("--board"),
            "{e}"
        );
    }

    /// The suggested command boots the board asked for, not the default,
    /// on ports free when it is suggested (it once added 1000 unchecked).
    #[test]
    fn busy_port_suggestion_keeps_the_board_and_is_free() {
        let held = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = held.local_addr().unwrap().port();
        // The first guess taken too (or already in use: the same to it).
        let _next = std::net::TcpListener::bind(("127.0.0.1", port.wrapping_add(1000)));
        let e = ports_free(port, "mps2-an385").unwrap_err();
        let suggested: u16 = e
            .rsplit("e.g. cargo xtask qemu --board mps2-an385 ")
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no suggestion: {e}"));
        assert_ne!(suggested, port);
        assert_ne!(suggested, port.wrapping_add(1000), "{e}");
        assert!((1024..=MAX_FORWARDED_PORT).contains(&suggested), "{e}");
        assert!(taken_ports(suggested).is_empty(), "{e}");
    }

    /// `qemu-run.sh`'s own suggestion for a port below 1024 stays within
    /// 1024-65532 (bash's `%` of a negative number suggested 1009 for 9).
    #[test]
    fn run_script_suggests_an_unprivileged_port_for_a_low_one() {
        let script = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../embedded/boards/qemu-run.sh"
        );
        for port in ["9", "1023", "64900"] {
            let out = std::process::Command::new("bash")
                .arg("-c")
                .arg(
                    "eval \"$(sed -n '/^port_bound()/,/^}/p;/^free_port_after()/,/^}/p' \"$0\")\"; \
                     free_port_after \"$1\"",
                )
                .args([script, port])
                .output()
                .expect("bash");
            let text = String::from_utf8_lossy(&out.stdout);
            let got: u32 = text
                .trim()
                .parse()
                .unwrap_or_else(|_| panic!("{port}: no suggestion: {text:?}"));
            assert!(
                (1024..=u32::from(MAX_FORWARDED_PORT)).contains(&got),
                "{port}: suggested {got}"
            );
        }
    }
}
