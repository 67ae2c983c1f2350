//! `cargo xtask`: Ricochet's build and CI stages, in plain Rust (three
//! small dependencies, socket2, libc and signal-hook, so it builds in
//! seconds on a fresh machine). The stages are in `ci.rs`.
//!
//! ```text
//! cargo xtask ci [STAGE...]   every check CI runs (default: all stages, in order)
//! cargo xtask qemu [--board NAME] [PORT]  build a QEMU board's firmware and run it, forwarding 127.0.0.1:PORT
//! cargo xtask qemu [--board NAME] --check  the CI qemu stage's end-to-end checks, on that board only
//! cargo xtask qemu [--board NAME] --timers the CI qemu stage's timer checks (tickless clock), on that board only
//! cargo xtask stack [--board NAME]         a QEMU board's stack high-water mark under that load
//! cargo xtask qemu-bench [--board NAME] [--features F] [--runs N]  a QEMU firmware's flash, RAM, idle CPU, ping-pong, stream MB/s
//! cargo xtask deps            install what the stages need (Debian packages, rustup targets, cargo tools)
//! cargo xtask dist            release binary, man pages and completions (target/release/dist)
//! cargo xtask bench [-r N] [-d S] [-S CPUS -L CPUS] servers alternating (C epoll, C io_uring, tokio, ricochet on
//!                             epoll and on io_uring): medians and ratios; also `bench syscalls`,
//!                             `bench idle`, `bench matrix [run.sh opts]`
//! cargo xtask bench-tls [-d SECS]  TLS echo vs plain TCP vs socat's TLS echo, handshakes/s
//! cargo xtask bench-probe [REPS] [SECS]  ricochet probe vs echo-load, and its send lateness
//! cargo xtask soak [--board NAME] [N] [SECS]  QEMU soak: N reconnects (10000), then SECS (600) of mixed load; leak checks
//! cargo xtask attack [--quick] [--io auto|uring|epoll] [--only NAME] hostile peers against `ricochet serve` on loopback, with a results table
//! cargo xtask loss [--io uring|epoll|both]  `ricochet serve` in a network namespace dropping 1/5/10 % of packets (root)
//! cargo xtask stages          list the CI stages
//! cargo xtask help            this list (also -h, --help)
//! ```
//!
//! Every stage that needs a tool installs it first (or fails with the exact
//! command that would), so `cargo xtask ci` passes on a clean machine.

use std::env;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

pub(crate) use ci::apt_install;
use ci::{STAGES, run_ci, stage_deps};

// First: its `outln!` and `out!` (`println!` and `print!` that stop
// quietly on a closed stdout) are for every module after it.
#[macro_use]
mod out;

mod attack;
mod bench;
mod bench_probe;
mod bench_tls;
mod ci;
mod cross_check;
mod disk;
mod dist;
mod handlers;
mod listening;
mod loss;
mod procstat;
mod qemu;
mod qemu_bench;
mod signals;
mod stack;
mod timers;
mod vm;
mod wire;

/// A firmware crate: a standalone folder with its own target and lock file.
pub(crate) struct Board {
    /// What `--board` takes.
    pub(crate) name: &'static str,
    /// The folder, from the repository root.
    pub(crate) dir: &'static str,
    /// Its build target (from its .cargo/config.toml).
    pub(crate) target: &'static str,
    /// Its package name, which is the ELF's name.
    pub(crate) package: &'static str,
    /// The QEMU machine and NIC model it runs on, if it runs in QEMU.
    pub(crate) qemu: Option<QemuMachine>,
}

/// How `embedded/boards/qemu-run.sh` boots a board.
pub(crate) struct QemuMachine {
    pub(crate) machine: &'static str,
    pub(crate) nic: &'static str,
}

/// Every firmware folder. `cargo xtask ci firmware` builds them all; the
/// `qemu` stage runs the end-to-end checks on every one with `qemu`.
pub(crate) const BOARDS: &[Board] = &[
    Board {
        name: "lm3s6965evb",
        dir: "embedded/boards/qemu-lm3s6965evb",
        target: "thumbv7m-none-eabi",
        package: "ricochet-qemu-lm3s6965evb",
        qemu: Some(QemuMachine {
            machine: "lm3s6965evb",
            nic: "stellaris",
        }),
    },
    Board {
        name: "mps2-an385",
        dir: "embedded/boards/mps2-an385",
        target: "thumbv7m-none-eabi",
        package: "ricochet-mps2-an385",
        qemu: Some(QemuMachine {
            machine: "mps2-an385",
            nic: "lan9118",
        }),
    },
    Board {
        name: "mps2-an500",
        dir: "embedded/boards/mps2-an500",
        target: "thumbv7em-none-eabihf",
        package: "ricochet-mps2-an500",
        qemu: Some(QemuMachine {
            machine: "mps2-an500",
            nic: "lan9118",
        }),
    },
    Board {
        name: "mps2-an505",
        dir: "embedded/boards/mps2-an505",
        target: "thumbv8m.main-none-eabi",
        package: "ricochet-mps2-an505",
        qemu: Some(QemuMachine {
            machine: "mps2-an505",
            nic: "lan9118",
        }),
    },
    Board {
        name: "nucleo-f429zi",
        dir: "embedded/boards/nucleo-f429zi",
        target: "thumbv7em-none-eabihf",
        package: "ricochet-nucleo-f429zi",
        qemu: None,
    },
];

/// The board `cargo xtask qemu` and `soak` boot without `--board`.
pub(crate) const DEFAULT_QEMU_BOARD: &str = "lm3s6965evb";

/// What `cargo xtask help` prints (and, on a bad command, stderr), with
/// `{other_qemu_boards}` for the QEMU boards of [`BOARDS`] ([`usage`]).
const USAGE: &str = "usage: cargo xtask ci [STAGE...] | qemu [--board NAME] [PORT | --check | --timers] | deps | dist | bench [-r N -d S -c CASES -t T -b -S CPUS -L CPUS | syscalls | floor | idle | matrix] | bench-tls [-d SECS | --quick] | bench-probe [REPS] [SECS] | soak [--board NAME] [N] [SECS] | stack [--board NAME] | qemu-bench [--board NAME] [--features F] [--runs N] | attack [--quick] [--io auto|uring|epoll] [--only NAME] [--busy-poll DUR] | loss [--io uring|epoll|both] | stages | help\n\n\
     ci      run every CI stage (or the ones named); see `cargo xtask stages` (`ci cross`: the macOS and FreeBSD checks)\n\
     qemu    build a QEMU board's firmware (default lm3s6965evb; also {other_qemu_boards}) and boot it\n\
     \x20       with 127.0.0.1:PORT (default 7777; 1-65532) forwarded to guest port 7, PORT+1 to 7001 (lines), PORT+2 to 7002 (frames);\n\
     \x20       --check: run the CI e2e checks on it; --timers: its timer checks (DHCP fallback, TCP retransmissions)\n\
     deps    install what the stages need\n\
     dist    release binary, man pages and shell completions in target/release/dist\n\
     bench   the loopback yardstick, servers alternating; syscalls per round trip; idle memory (`bench --help`)\n\
     bench-tls  TLS echo against plain TCP and socat's TLS echo; handshakes per second\n\
     bench-probe  ricochet probe vs echo-load (with and without --interval 1s), and its send lateness at 10k/100k msg/s\n\
     soak    QEMU soak: N reconnects (10000) then SECS (600) of mixed load, then leak checks\n\
     stack   a QEMU board's stack high-water mark after boot and the CI e2e load (paint-stack build)\n\
     qemu-bench  a QEMU firmware's flash, RAM, idle host CPU, 32 B ping-pong p50/p99 and stream MB/s\n\
     attack  hostile peers against ricochet serve (loopback, bounded); prints a table\n\
     loss    ricochet serve under 0/1/5/10 % packet loss in a network namespace (root); prints a table (default: both backends)\n\
     help    this text";

/// Shared context: the workspace root.
pub(crate) struct Ctx {
    pub(crate) root: PathBuf,
}

fn main() -> ExitCode {
    signals::install();
    let args: Vec<String> = env::args().skip(1).collect();
    let ctx = Ctx {
        root: workspace_root(),
    };
    let Some(ran) = out::until_stdout_closes(|| run_command(&ctx, &args)) else {
        // Stdout's reader has gone (`out.rs`): stop quietly.
        signals::leave_exit_to_handler();
        signals::stop_registered();
        return ExitCode::from(out::CLOSED_STDOUT);
    };
    let Some(result) = ran else {
        eprintln!("{}", not_a_command(&args));
        return ExitCode::from(2);
    };
    signals::leave_exit_to_handler();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the command `args` names, or returns `None` if it names none.
fn run_command(ctx: &Ctx, args: &[String]) -> Option<Result<(), String>> {
    Some(match args.first().map(String::as_str) {
        Some("help" | "-h" | "--help") => {
            outln!("{}", usage());
            Ok(())
        }
        Some("ci") => run_ci(ctx, &args[1..]),
        Some("qemu") => qemu::interactive(ctx, &args[1..]),
        Some("deps") => no_args("deps", &args[1..]).and_then(|()| stage_deps(ctx)),
        Some("dist") => no_args("dist", &args[1..]).and_then(|()| dist::dist(ctx).map(|_| ())),
        Some("stack") => stack::stack(ctx, &args[1..]),
        Some("qemu-bench") => qemu_bench::qemu_bench(ctx, &args[1..]),
        Some("attack") => attack::attack(ctx, &args[1..]),
        Some("loss") => loss::loss(ctx, &args[1..]),
        Some("bench") => bench::bench(ctx, &args[1..]),
        Some("bench-tls") => bench_tls::bench_tls(ctx, &args[1..]),
        Some("bench-probe") => bench_probe::bench_probe(ctx, &args[1..]),
        Some("soak") => qemu::soak_main(ctx, &args[1..]),
        Some("stages") => {
            if let Err(e) = no_args("stages", &args[1..]) {
                return Some(Err(e));
            }
            for s in STAGES {
                outln!("{:<9} {}", s.name, s.about);
            }
            Ok(())
        }
        _ => return None,
    })
}

/// [`USAGE`] with the QEMU boards filled in from [`BOARDS`]: a board added
/// there (as embedded/boards/README.md's porting guide says) is listed.
fn usage() -> String {
    let others: Vec<&str> = BOARDS
        .iter()
        .filter(|b| b.qemu.is_some() && b.name != DEFAULT_QEMU_BOARD)
        .map(|b| b.name)
        .collect();
    USAGE.replace("{other_qemu_boards}", &others.join(", "))
}

/// What to say when `args` name no command: which word was not one (if
/// any was given), then the usage.
fn not_a_command(args: &[String]) -> String {
    match args.first() {
        Some(word) => format!("xtask: error: unknown command {word:?}\n\n{}", usage()),
        None => usage(),
    }
}

/// For the commands that take no arguments (`deps`, `dist`, `stages`):
/// anything after the name, `--help` included, is refused before the
/// command runs (`deps --help` would otherwise install packages, `dist
/// --help` build a release).
fn no_args(command: &str, rest: &[String]) -> Result<(), String> {
    match rest.first() {
        None => Ok(()),
        Some(a) if a == "-h" || a == "--help" => Err(format!(
            "`cargo xtask {command}` takes no arguments and did nothing; \
             `cargo xtask help` describes it"
        )),
        Some(a) => Err(format!(
            "`cargo xtask {command}` takes no arguments, got {a:?}; nothing was done"
        )),
    }
}

fn workspace_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map(Path::to_path_buf).unwrap_or(manifest)
}

/// Variables `cargo run` sets for xtask itself (besides `CARGO_PKG_*`),
/// which must not reach the cargo it runs: cargo compares a build
/// script's environment with the last build's, so with them `cargo xtask`
/// and a plain `cargo build` rebuild ring, rustls and ricochet for each
/// other. `CARGO` (the cargo binary) stays.
const CARGO_RUN_VARS: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_MANIFEST_LINKS",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_RUSTC_CURRENT_DIR",
    "CARGO_TARGET_TMPDIR",
];

/// Whether `name` is one of the variables `cargo run` set for xtask.
fn set_by_cargo_run(name: &str) -> bool {
    name.starts_with("CARGO_PKG_") || CARGO_RUN_VARS.contains(&name)
}

/// A command for `program` (cargo, or anything that may run cargo)
/// without the variables `cargo run` set for xtask. Every child xtask
/// starts that can run cargo is made here.
pub(crate) fn command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut c = Command::new(program);
    for name in CARGO_RUN_VARS {
        c.env_remove(name);
    }
    for (name, _) in env::vars_os() {
        if name.to_str().is_some_and(set_by_cargo_run) {
            c.env_remove(name);
        }
    }
    c
}

/// Runs a command in `dir`, echoing it; fails on a non-zero exit.
pub(crate) fn run(
    dir: &Path,
    program: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Result<(), String> {
    eprintln!("+ (cd {}) {} {}", dir.display(), program, args.join(" "));
    let status = command(program)
        .args(args)
        .current_dir(dir)
        .envs(envs.iter().copied())
        .status()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` exited with {status}",
            args.join(" ")
        ))
    }
}

/// Whether `program` is on PATH.
pub(crate) fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

pub(crate) fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

/// Where cargo, run in `dir`, puts its build output: `CARGO_TARGET_DIR`
/// when set (a relative one counts from `dir`, as cargo reads it), else
/// `dir/target`.
pub(crate) fn target_dir_of(dir: &Path) -> PathBuf {
    target_dir_from(dir, std::env::var_os("CARGO_TARGET_DIR").as_deref())
}

/// [`target_dir_of`] with the variable's value passed in.
pub(crate) fn target_dir_from(dir: &Path, var: Option<&std::ffi::OsStr>) -> PathBuf {
    match var {
        // `join` keeps an absolute path as it is.
        Some(t) if !t.is_empty() => dir.join(t),
        _ => dir.join("target"),
    }
}

/// The release `ricochet` binary that `cargo build --release -p ricochet`
/// in the workspace writes (`CARGO_TARGET_DIR` honoured).
pub(crate) fn ricochet_release(ctx: &Ctx) -> PathBuf {
    target_dir_of(&ctx.root).join("release").join("ricochet")
}

fn boards(ctx: &Ctx) -> Vec<PathBuf> {
    BOARDS
        .iter()
        .map(|b| ctx.root.join(b.dir))
        .filter(|p| p.join("Cargo.toml").exists())
        .collect()
}

// --- stages ---

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

/// Owned arguments, as `env::args` gives them (for tests of the parsers).
#[cfg(test)]
pub(crate) fn strings(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| (*s).to_owned()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn target_dir_follows_cargo_target_dir_as_cargo_reads_it() {
        let dir = Path::new("/repo/embedded/boards/b");
        let of = |v: Option<&str>| target_dir_from(dir, v.map(std::ffi::OsStr::new));
        assert_eq!(of(None), Path::new("/repo/embedded/boards/b/target"));
        assert_eq!(of(Some("")), Path::new("/repo/embedded/boards/b/target"));
        assert_eq!(of(Some("/tmp/t")), Path::new("/tmp/t"));
        assert_eq!(of(Some("out")), Path::new("/repo/embedded/boards/b/out"));
    }
    use std::ffi::OsStr;

    /// `cargo test` sets CARGO_MANIFEST_DIR and CARGO_PKG_NAME for the test
    /// binary as `cargo run` does for xtask: the command must drop them.
    #[test]
    fn child_commands_drop_what_cargo_run_set_for_xtask() {
        let c = command("cargo");
        let removed: Vec<&OsStr> = c
            .get_envs()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| k)
            .collect();
        for name in [
            "CARGO_MANIFEST_DIR",
            "CARGO_PKG_NAME",
            "CARGO_PKG_VERSION",
            "CARGO_CRATE_NAME",
        ] {
            assert!(removed.contains(&OsStr::new(name)), "{name} is passed on");
        }
        assert!(
            !removed
                .iter()
                .any(|k| *k == "CARGO" || *k == "CARGO_HOME" || *k == "PATH")
        );
        assert!(set_by_cargo_run("CARGO_PKG_RUST_VERSION") && set_by_cargo_run("CARGO_BIN_NAME"));
        assert!(!set_by_cargo_run("CARGO_TARGET_DIR") && !set_by_cargo_run("CARGO"));
    }

    #[test]
    fn child_processes_see_none_of_them() {
        assert!(
            env::var_os("CARGO_MANIFEST_DIR").is_some(),
            "set by cargo test"
        );
        let out = command("env").output().unwrap();
        let env = String::from_utf8_lossy(&out.stdout);
        let leaked: Vec<&str> = env
            .lines()
            .filter_map(|l| l.split_once('=').map(|(k, _)| k))
            .filter(|k| set_by_cargo_run(k))
            .collect();
        assert!(leaked.is_empty(), "{leaked:?}");
    }

    /// `deps --help` must not install packages, nor `dist --bogus` build:
    /// commands without arguments refuse any before running.
    #[test]
    fn commands_without_arguments_refuse_them_before_running() {
        let ctx = Ctx {
            root: workspace_root(),
        };
        for cmd in ["deps", "dist", "stages"] {
            for extra in ["--help", "--bogus", "now"] {
                let r = run_command(&ctx, &strings(&[cmd, extra]));
                let Some(Err(e)) = r else {
                    panic!("{cmd} {extra}: {r:?}")
                };
                assert!(e.contains("takes no arguments"), "{cmd} {extra}: {e}");
            }
        }
        assert_eq!(run_command(&ctx, &strings(&["stages"])), Some(Ok(())));
    }

    #[test]
    fn an_unknown_command_is_named_before_the_usage() {
        let ctx = Ctx {
            root: workspace_root(),
        };
        let args = strings(&["bencch", "-r", "3"]);
        assert_eq!(run_command(&ctx, &args), None);
        let said = not_a_command(&args);
        assert!(
            said.starts_with("xtask: error: unknown command \"bencch\"")
                && said.ends_with(&usage()),
            "{said}"
        );
        assert_eq!(not_a_command(&[]), usage());
    }

    #[test]
    fn usage_names_every_command_and_ci_cross() {
        for cmd in [
            "ci [STAGE...]",
            "qemu [--board NAME]",
            "bench-tls [-d SECS",
            "soak [--board NAME] [N] [SECS]",
            "loss [--io uring|epoll|both]",
            "attack [--quick] [--io auto|uring|epoll]",
            "help",
        ] {
            assert!(USAGE.contains(cmd), "{cmd}");
        }
        assert!(USAGE.contains("`ci cross`") && !USAGE.contains("cross-check"));
        assert!(STAGES.iter().any(|s| s.name == "cross"));
    }

    #[test]
    fn usage_lists_every_qemu_board_from_the_board_table() {
        let text = usage();
        assert!(!text.contains("{other_qemu_boards}"), "{text}");
        for b in BOARDS.iter().filter(|b| b.qemu.is_some()) {
            assert!(text.contains(b.name), "{} missing from the usage", b.name);
        }
        assert!(!text.contains("nucleo"), "not a QEMU board");
    }
}
