//! `cargo xtask`: Ricochet's build and CI stages, in plain Rust (no
//! dependencies, so it builds in seconds on a fresh machine).
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
use std::time::Instant;

mod attack;
mod bench;
mod bench_probe;
mod bench_tls;
mod cross_check;
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

/// A CI stage: its name, what it does, and the function that runs it.
struct Stage {
    name: &'static str,
    about: &'static str,
    run: fn(&Ctx) -> Result<(), String>,
}

const STAGES: &[Stage] = &[
    Stage {
        name: "deps",
        about: "install Debian packages, rustup targets and cargo tools the stages need",
        run: stage_deps,
    },
    Stage {
        name: "fmt",
        about: "cargo fmt --check (workspace and firmware)",
        run: stage_fmt,
    },
    Stage {
        name: "clippy",
        about: "clippy -D warnings on all targets (workspace and firmware)",
        run: stage_clippy,
    },
    Stage {
        name: "test",
        about: "cargo test --workspace (unit, property, loopback, interop tests); server tests on io_uring and on epoll",
        run: stage_test,
    },
    Stage {
        name: "nostd",
        about: "the core and the embedded node build for thumbv7m-none-eabi in every feature set",
        run: stage_nostd,
    },
    Stage {
        name: "cross",
        about: "the std crate checks for macOS and FreeBSD (Linux-only calls stay behind cfg)",
        run: stage_cross,
    },
    Stage {
        name: "doc",
        about: "cargo doc with warnings denied",
        run: stage_doc,
    },
    Stage {
        name: "dist",
        about: "cargo xtask dist, cargo deb, dpkg-deb -c inspection, systemd-analyze verify of the units",
        run: dist::stage,
    },
    Stage {
        name: "firmware",
        about: "build every board's firmware (release)",
        run: stage_firmware,
    },
    Stage {
        name: "qemu",
        about: "boot every QEMU board's firmware, verify every mode end to end with ricochet probe, and time its timers; check the panic and HardFault handlers (self-test builds of each board)",
        run: stage_qemu,
    },
    Stage {
        name: "fuzz",
        about: "run each cargo-fuzz target of the core for a bounded time from the committed corpus",
        run: stage_fuzz,
    },
];

/// The core's fuzz targets (core/fuzz/fuzz_targets/*.rs).
const FUZZ_TARGETS: &[&str] = &["session", "codecs", "datagram_policy", "probe_verifier"];

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

/// Rust targets: the boards' and the `nostd` stage's (thumbv7m).
const TARGETS: &[&str] = &[
    "thumbv7m-none-eabi",
    "thumbv7em-none-eabihf",
    "thumbv8m.main-none-eabi",
];

/// What `cargo xtask help` prints (and, on a bad command, stderr).
const USAGE: &str = "usage: cargo xtask ci [STAGE...] | qemu [--board NAME] [PORT | --check | --timers] | deps | dist | bench [-r N -d S -c CASES -t T -b -S CPUS -L CPUS | syscalls | floor | idle | matrix] | bench-tls [-d SECS | --quick] | bench-probe [REPS] [SECS] | soak [--board NAME] [N] [SECS] | stack [--board NAME] | qemu-bench [--board NAME] [--features F] [--runs N] | attack [--quick] [--io auto|uring|epoll] [--only NAME] [--busy-poll DUR] | loss [--io uring|epoll|both] | stages | help\n\n\
     ci      run every CI stage (or the ones named); see `cargo xtask stages` (`ci cross`: the macOS and FreeBSD checks)\n\
     qemu    build a QEMU board's firmware (default lm3s6965evb; also mps2-an385, mps2-an500, mps2-an505) and boot it\n\
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
    let result = match args.first().map(String::as_str) {
        Some("help" | "-h" | "--help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some("ci") => run_ci(&ctx, &args[1..]),
        Some("qemu") => qemu::interactive(&ctx, &args[1..]),
        Some("deps") => stage_deps(&ctx),
        Some("dist") => dist::dist(&ctx).map(|_| ()),
        Some("stack") => stack::stack(&ctx, &args[1..]),
        Some("qemu-bench") => qemu_bench::qemu_bench(&ctx, &args[1..]),
        Some("attack") => attack::attack(&ctx, &args[1..]),
        Some("loss") => loss::loss(&ctx, &args[1..]),
        Some("bench") => bench::bench(&ctx, &args[1..]),
        Some("bench-tls") => bench_tls::bench_tls(&ctx, &args[1..]),
        Some("bench-probe") => bench_probe::bench_probe(&ctx, &args[1..]),
        Some("soak") => qemu::soak_main(&ctx, &args[1..]),
        Some("stages") => {
            for s in STAGES {
                println!("{:<9} {}", s.name, s.about);
            }
            Ok(())
        }
        _ => {
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
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

fn run_ci(ctx: &Ctx, names: &[String]) -> Result<(), String> {
    for n in names {
        if !STAGES.iter().any(|s| s.name == n) {
            return Err(format!("unknown stage {n:?}; see `cargo xtask stages`"));
        }
    }
    let all = Instant::now();
    for stage in STAGES
        .iter()
        .filter(|s| names.is_empty() || names.iter().any(|n| n == s.name))
    {
        eprintln!("\n==> stage {}: {}", stage.name, stage.about);
        let t = Instant::now();
        (stage.run)(ctx).map_err(|e| format!("stage {} failed: {e}", stage.name))?;
        eprintln!(
            "==> stage {} passed in {:.1}s",
            stage.name,
            t.elapsed().as_secs_f64()
        );
    }
    eprintln!("\nall stages passed in {:.1}s", all.elapsed().as_secs_f64());
    Ok(())
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

fn boards(ctx: &Ctx) -> Vec<PathBuf> {
    BOARDS
        .iter()
        .map(|b| ctx.root.join(b.dir))
        .filter(|p| p.join("Cargo.toml").exists())
        .collect()
}

// --- stages ---

/// Debian packages the tests need, each with the command that shows it is
/// there: interop peers, QEMU, and the daemon tests' service managers and
/// parsers (xinetd, systemd's socket-activate and analyze, `setpriv`,
/// dpkg-deb, the official Prometheus client's parser for Debian's python3).
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("socat", "socat"),
    ("nc", "netcat-openbsd"),
    ("qemu-system-arm", "qemu-system-arm"),
    ("prlimit", "util-linux"),
    ("setpriv", "util-linux"),
    ("xinetd", "xinetd"),
    ("systemd-socket-activate", "systemd"),
    ("systemd-analyze", "systemd"),
    ("dpkg-deb", "dpkg"),
    (PROMETHEUS_PARSER, "python3-prometheus-client"),
    ("openssl", "openssl"),
    ("clang", "clang"),
];

/// The check for python3-prometheus-client (a module, not a command).
const PROMETHEUS_PARSER: &str = "/usr/bin/python3 -c 'import prometheus_client'";

/// Whether the package behind `check` (a command name, or a command line) is installed.
fn installed(check: &str) -> bool {
    if check.contains(' ') {
        return Command::new("sh")
            .args(["-c", &format!("{check} >/dev/null 2>&1")])
            .status()
            .is_ok_and(|s| s.success());
    }
    have(check)
}

/// `apt-get update`, then installs `packages` without recommends (through
/// sudo unless root). The caller checks that apt-get exists.
pub(crate) fn apt_install(ctx: &Ctx, packages: &[&str]) -> Result<(), String> {
    let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
    let mut update: Vec<&str> = sudo.to_vec();
    update.extend(["apt-get", "update", "-qq"]);
    run(&ctx.root, update[0], &update[1..], &[])?;
    let mut install: Vec<&str> = sudo.to_vec();
    install.extend(["apt-get", "install", "-y", "-qq", "--no-install-recommends"]);
    install.extend(packages.iter().copied());
    run(
        &ctx.root,
        install[0],
        &install[1..],
        &[("DEBIAN_FRONTEND", "noninteractive")],
    )
}

fn stage_deps(ctx: &Ctx) -> Result<(), String> {
    let mut missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(check, _)| !installed(check))
        .map(|(_, pkg)| *pkg)
        .collect();
    missing.sort_unstable();
    missing.dedup();
    if !missing.is_empty() {
        if !have("apt-get") {
            return Err(format!(
                "missing {missing:?} and no apt-get: install them with your package manager"
            ));
        }
        apt_install(ctx, &missing)?;
    }
    // rust-toolchain.toml lists the targets and components; rustup installs
    // them on first use, but be explicit so a partial toolchain is repaired.
    let mut add = vec!["target", "add"];
    add.extend_from_slice(TARGETS);
    // `cargo check` only (no linker needed): the cross stage.
    add.extend_from_slice(&CROSS_TARGETS);
    run(&ctx.root, "rustup", &add, &[])?;
    run(
        &ctx.root,
        "rustup",
        &["component", "add", "rustfmt", "clippy"],
        &[],
    )?;
    if !have("defmt-print") {
        run(
            &ctx.root,
            &cargo(),
            &["install", "--locked", "defmt-print"],
            &[],
        )?;
    }
    // About two minutes from source, once per machine.
    if !have("cargo-deb") {
        run(
            &ctx.root,
            &cargo(),
            &["install", "--locked", "cargo-deb", "--version", "^3"],
            &[],
        )?;
    }
    Ok(())
}

pub(crate) fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout.starts_with(b"0"))
        .unwrap_or(false)
}

fn stage_fmt(ctx: &Ctx) -> Result<(), String> {
    run(&ctx.root, &cargo(), &["fmt", "--all", "--check"], &[])?;
    for b in boards(ctx) {
        run(&b, &cargo(), &["fmt", "--all", "--check"], &[])?;
    }
    Ok(())
}

fn stage_clippy(ctx: &Ctx) -> Result<(), String> {
    run(
        &ctx.root,
        &cargo(),
        &[
            "clippy",
            "--workspace",
            "--all-targets",
            "--locked",
            "--",
            "-D",
            "warnings",
        ],
        &[],
    )?;
    // The board crates' shared parts have code only the bare-metal targets
    // compile (the SysTick handler, compact-rt's C symbols, all of
    // ricochet-mps2 and ricochet-qemu-rt); clippy does not lint path dependencies
    // from inside a board's workspace, so lint them here for a board target.
    let lint_bare_metal = |packages: &[&str], features: &str| {
        let mut args = vec!["clippy", "--locked"];
        for p in packages {
            args.extend(["-p", p]);
        }
        args.extend(["--features", features, "--target", "thumbv7m-none-eabi"]);
        args.extend(["--", "-D", "warnings"]);
        run(&ctx.root, &cargo(), &args, &[])
    };
    lint_bare_metal(
        &[
            "ricochet-lan9118",
            "ricochet-cortex-m-clock",
            "ricochet-compact-rt",
            "ricochet-mps2",
            "ricochet-qemu-rt",
        ],
        "ricochet-lan9118/defmt,ricochet-cortex-m-clock/defmt,ricochet-qemu-rt/panic-location",
    )?;
    // Each test-only branch of `ricochet_qemu_rt::selftest` (one at a time:
    // both at once is a compile error by design).
    for feature in [
        "ricochet-qemu-rt/selftest-panic",
        "ricochet-qemu-rt/selftest-fault",
    ] {
        lint_bare_metal(&["ricochet-qemu-rt"], feature)?;
    }
    for b in boards(ctx) {
        run(
            &b,
            &cargo(),
            &["clippy", "--release", "--locked", "--", "-D", "warnings"],
            &[],
        )?;
    }
    Ok(())
}

fn stage_test(ctx: &Ctx) -> Result<(), String> {
    // Property tests run at least 256 cases each (proptest's default); a
    // larger PROPTEST_CASES from the environment is kept.
    let cases = env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(256)
        .max(256);
    let cases = cases.to_string();
    for (bin, pkg) in DEBIAN_PACKAGES
        .iter()
        .filter(|(b, _)| *b != "qemu-system-arm")
    {
        if !installed(bin) {
            return Err(format!(
                "{bin} is needed by the tests: run `cargo xtask deps` or `apt-get install -y --no-install-recommends {pkg}`"
            ));
        }
    }
    // Every test once with the io_uring backend of `ricochet serve`, then
    // the server's integration tests again with epoll (the backend of
    // kernels and containers without io_uring): one suite, both backends.
    run(
        &ctx.root,
        &cargo(),
        &["test", "--workspace", "--locked"],
        &[("PROPTEST_CASES", &cases), ("RICOCHET_IO", "uring")],
    )?;
    let mut epoll = vec!["test", "--locked", "-p", "ricochet"];
    for t in SERVER_TESTS {
        epoll.extend(["--test", t]);
    }
    run(&ctx.root, &cargo(), &epoll, &[("RICOCHET_IO", "epoll")])?;
    library_without_cli(ctx)
}

/// The integration tests that run `ricochet serve` (or its library) and
/// read `RICOCHET_IO`: run once per I/O backend.
const SERVER_TESTS: &[&str] = &[
    "serve_cli",
    "serve_connections",
    "serve_signals",
    "serve_transports",
    "serve_udp",
    "serve_unix",
    "probe_serve",
    "interop_clients",
];

/// Crates only the `ricochet` binary needs (behind the `cli` feature).
const CLI_ONLY_CRATES: &[&str] = &[
    "clap",
    "clap_complete",
    "clap_mangen",
    "indicatif",
    "nix",
    "plotters",
    "privdrop",
    "sd-notify",
    "tracing-subscriber",
];

/// The `ricochet` library stays usable without the command line: without
/// default features its normal dependency tree holds none of
/// [`CLI_ONLY_CRATES`], and it builds.
fn library_without_cli(ctx: &Ctx) -> Result<(), String> {
    let args = [
        "tree",
        "--locked",
        "-p",
        "ricochet",
        "--no-default-features",
        "-e",
        "normal",
        "--prefix",
        "none",
        "--format",
        "{p}",
    ];
    eprintln!("+ (cd {}) cargo {}", ctx.root.display(), args.join(" "));
    let out = command(cargo())
        .args(args)
        .current_dir(&ctx.root)
        .output()
        .map_err(|e| format!("cannot run cargo tree: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "cargo tree failed: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let tree = String::from_utf8_lossy(&out.stdout);
    let pulled: Vec<&str> = CLI_ONLY_CRATES
        .iter()
        .copied()
        .filter(|c| {
            tree.lines()
                .any(|l| l.split_whitespace().next() == Some(*c))
        })
        .collect();
    if !pulled.is_empty() {
        return Err(format!(
            "the ricochet library pulls {pulled:?} without its `cli` feature: make them optional \
             (dep:...) and enable them only in the `cli` feature"
        ));
    }
    run(
        &ctx.root,
        &cargo(),
        &[
            "check",
            "--locked",
            "-p",
            "ricochet",
            "--lib",
            "--no-default-features",
        ],
        &[],
    )
}

fn stage_nostd(ctx: &Ctx) -> Result<(), String> {
    let target = "thumbv7m-none-eabi";
    for features in [
        &[][..],
        &["--features", "defmt"][..],
        &["--features", "log"][..],
    ] {
        let mut args = vec![
            "build",
            "--locked",
            "-p",
            "ricochet-core",
            "--target",
            target,
        ];
        args.extend_from_slice(features);
        run(&ctx.root, &cargo(), &args, &[])?;
    }
    // The default features, and the feature-gated code left out (TCP
    // only; UDP without DHCP) so every combination keeps compiling.
    for features in [
        &[][..],
        &["--features", "defmt"][..],
        &["--no-default-features"][..],
        &["--no-default-features", "--features", "defmt,udp"][..],
    ] {
        let mut args = vec![
            "build",
            "--locked",
            "-p",
            "ricochet-embedded",
            "--target",
            target,
        ];
        args.extend_from_slice(features);
        run(&ctx.root, &cargo(), &args, &[])?;
    }
    Ok(())
}

/// Targets the std crate must keep compiling for (checked, not linked).
const CROSS_TARGETS: [&str; 2] = ["x86_64-apple-darwin", "x86_64-unknown-freebsd"];

fn stage_cross(ctx: &Ctx) -> Result<(), String> {
    cross_check::cross_check(ctx)
}

fn stage_doc(ctx: &Ctx) -> Result<(), String> {
    run(
        &ctx.root,
        &cargo(),
        &["doc", "--workspace", "--no-deps", "--locked"],
        &[("RUSTDOCFLAGS", "-D warnings")],
    )
}

fn stage_firmware(ctx: &Ctx) -> Result<(), String> {
    let found = boards(ctx);
    if found.len() != BOARDS.len() {
        let expected: Vec<&str> = BOARDS.iter().map(|b| b.dir).collect();
        return Err(format!(
            "expected firmware folders {expected:?}, found {found:?}"
        ));
    }
    for b in found {
        run(&b, &cargo(), &["build", "--release", "--locked"], &[])?;
    }
    Ok(())
}

/// Seconds per fuzz target: `RICOCHET_FUZZ_SECS`, default 60.
fn stage_fuzz(ctx: &Ctx) -> Result<(), String> {
    let secs = env::var("RICOCHET_FUZZ_SECS")
        .ok()
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(60);
    if !have("cargo-fuzz") {
        // `+nightly` needs the rustup proxy, not $CARGO (the pinned toolchain binary).
        run(
            &ctx.root,
            "cargo",
            &["+nightly", "install", "--locked", "cargo-fuzz"],
            &[],
        )?;
    }
    let dir = ctx.root.join("core/fuzz");
    let work = env::temp_dir().join("ricochet-fuzz-corpus");
    for target in FUZZ_TARGETS {
        // New inputs go to a scratch corpus; the committed seeds are read only.
        let scratch = work.join(target);
        std::fs::create_dir_all(&scratch).map_err(|e| format!("{}: {e}", scratch.display()))?;
        let scratch = scratch.to_string_lossy().into_owned();
        let seeds = format!("corpus/{target}");
        let limit = format!("-max_total_time={secs}");
        run(
            &dir,
            "cargo",
            &[
                "+nightly", "fuzz", "run", target, &scratch, &seeds, "--", &limit,
            ],
            &[],
        )?;
    }
    Ok(())
}

fn stage_qemu(ctx: &Ctx) -> Result<(), String> {
    let mut took = Vec::new();
    for board in BOARDS.iter().filter(|b| b.qemu.is_some()) {
        eprintln!("\n--> qemu: {}", board.name);
        let t = Instant::now();
        qemu::end_to_end(ctx, board).map_err(|e| format!("{}: {e}", board.name))?;
        timers::check(ctx, board).map_err(|e| format!("{}: timers: {e}", board.name))?;
        let machine = board.qemu.as_ref().expect("filtered on qemu");
        handlers::check(ctx, board, machine)
            .map_err(|e| format!("{}: handlers: {e}", board.name))?;
        took.push(format!("{} {:.0}s", board.name, t.elapsed().as_secs_f64()));
    }
    eprintln!("qemu: every board passed ({})", took.join(", "));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
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
}
