//! `cargo xtask`: Ricochet's build and CI stages, in plain Rust (no
//! dependencies, so it builds in seconds on a fresh machine).
//!
//! ```text
//! cargo xtask ci [STAGE...]   every check CI runs (default: all stages, in order)
//! cargo xtask qemu [PORT]     build the QEMU firmware and run it, forwarding 127.0.0.1:PORT
//! cargo xtask deps            install what the stages need (Debian packages, rustup targets, cargo tools)
//! cargo xtask bench [-r N] [-d S] servers alternating (C epoll, C io_uring, tokio, ricochet on
//!                             epoll and on io_uring): medians and ratios; also `bench syscalls`,
//!                             `bench idle`, `bench matrix [run.sh opts]`
//! cargo xtask soak [N] [SECS]  QEMU soak: N reconnects (10000), then SECS (600) of mixed load; leak checks
//! cargo xtask attack [--quick] [--io B] hostile peers against `ricochet serve` on loopback, with a results table
//! cargo xtask loss [--io B]   `ricochet serve` in a network namespace dropping 1/5/10 % of packets (root)
//! cargo xtask stages          list the CI stages
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
mod loss;
mod qemu;

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
        about: "the core and the embedded node build for thumbv7m-none-eabi in every feature set; the desktop crate type-checks for macOS and FreeBSD",
        run: stage_nostd,
    },
    Stage {
        name: "doc",
        about: "cargo doc with warnings denied",
        run: stage_doc,
    },
    Stage {
        name: "firmware",
        about: "build every board's firmware (release)",
        run: stage_firmware,
    },
    Stage {
        name: "qemu",
        about: "boot the QEMU firmware and verify it end to end with ricochet probe",
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

/// Firmware folders: standalone crates with their own target and lock file.
pub(crate) const BOARDS: &[&str] = &[
    "embedded/boards/qemu-lm3s6965evb",
    "embedded/boards/nucleo-f429zi",
];

/// Shared context: the workspace root.
pub(crate) struct Ctx {
    pub(crate) root: PathBuf,
}

fn main() -> ExitCode {
    let args: Vec<String> = env::args().skip(1).collect();
    let ctx = Ctx {
        root: workspace_root(),
    };
    let result = match args.first().map(String::as_str) {
        Some("ci") => run_ci(&ctx, &args[1..]),
        Some("qemu") => qemu::interactive(&ctx, args.get(1).map(String::as_str)),
        Some("deps") => stage_deps(&ctx),
        Some("attack") => attack::attack(&ctx, &args[1..]),
        Some("loss") => loss::loss(&ctx, &args[1..]),
        Some("bench") => bench::bench(&ctx, &args[1..]),
        Some("soak") => qemu::soak_main(
            &ctx,
            args.get(1).map(String::as_str),
            args.get(2).map(String::as_str),
        ),
        Some("stages") => {
            for s in STAGES {
                println!("{:<9} {}", s.name, s.about);
            }
            Ok(())
        }
        _ => {
            eprintln!(
                "usage: cargo xtask ci [STAGE...] | qemu [PORT] | deps | bench [-r N -d S -c CASES | syscalls | idle | matrix] | soak [N] [SECS] | attack [--quick] [--io uring|epoll] [--only NAME] | loss | stages\n\n\
                 ci      run every CI stage (or the ones named); see `cargo xtask stages`\n\
                 qemu    build the QEMU firmware and boot it with 127.0.0.1:PORT (default 7777) forwarded to guest port 7\n\
                 deps    install what the stages need\n\
                 bench   the loopback yardstick, servers alternating; syscalls per round trip; idle memory\n\
                 soak    QEMU soak: N reconnects (10000) then SECS (600) of mixed load, then leak checks\n\
                 attack  hostile peers against ricochet serve (loopback, bounded); prints a table\n\
                 loss    ricochet serve under 0/1/5/10 % packet loss in a network namespace (root); prints a table"
            );
            return ExitCode::from(2);
        }
    };
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

/// Runs a command in `dir`, echoing it; fails on a non-zero exit.
pub(crate) fn run(
    dir: &Path,
    program: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Result<(), String> {
    eprintln!("+ (cd {}) {} {}", dir.display(), program, args.join(" "));
    let status = Command::new(program)
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

fn cargo() -> String {
    env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

fn boards(ctx: &Ctx) -> Vec<PathBuf> {
    BOARDS
        .iter()
        .map(|b| ctx.root.join(b))
        .filter(|p| p.join("Cargo.toml").exists())
        .collect()
}

// --- stages ---

/// Debian packages the tests need: interop peers and QEMU.
const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("socat", "socat"),
    ("nc", "netcat-openbsd"),
    ("qemu-system-arm", "qemu-system-arm"),
    ("prlimit", "util-linux"),
];

fn stage_deps(ctx: &Ctx) -> Result<(), String> {
    let missing: Vec<&str> = DEBIAN_PACKAGES
        .iter()
        .filter(|(bin, _)| !have(bin))
        .map(|(_, pkg)| *pkg)
        .collect();
    if !missing.is_empty() {
        if !have("apt-get") {
            return Err(format!(
                "missing {missing:?} and no apt-get: install them with your package manager"
            ));
        }
        let sudo: &[&str] = if is_root() { &[] } else { &["sudo"] };
        let mut update: Vec<&str> = sudo.to_vec();
        update.extend(["apt-get", "update", "-qq"]);
        run(&ctx.root, update[0], &update[1..], &[])?;
        let mut install: Vec<&str> = sudo.to_vec();
        install.extend(["apt-get", "install", "-y", "-qq", "--no-install-recommends"]);
        install.extend(missing.iter().copied());
        run(
            &ctx.root,
            install[0],
            &install[1..],
            &[("DEBIAN_FRONTEND", "noninteractive")],
        )?;
    }
    // rust-toolchain.toml lists the targets and components; rustup installs
    // them on first use, but be explicit so a partial toolchain is repaired.
    run(
        &ctx.root,
        "rustup",
        &[
            "target",
            "add",
            "thumbv7m-none-eabi",
            "thumbv7em-none-eabihf",
            "x86_64-apple-darwin",
            "x86_64-unknown-freebsd",
        ],
        &[],
    )?;
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
    Ok(())
}

fn is_root() -> bool {
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
        if !have(bin) {
            return Err(format!(
                "{bin} is needed by the interop tests: run `cargo xtask deps` or `apt-get install -y --no-install-recommends {pkg}`"
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
const CLI_ONLY_CRATES: &[&str] = &["clap", "indicatif", "tracing-subscriber"];

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
    let out = Command::new(cargo())
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
    for features in [&[][..], &["--features", "defmt"][..]] {
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
    // The desktop adapter beyond Linux (io_uring is Linux-only, kqueue
    // elsewhere): type-checked for macOS and FreeBSD, nothing linked.
    for other in OTHER_DESKTOPS {
        run(
            &ctx.root,
            &cargo(),
            &[
                "check",
                "--locked",
                "-p",
                "ricochet",
                "--all-targets",
                "--target",
                other,
            ],
            &[],
        )?;
    }
    Ok(())
}

/// Desktop targets the `ricochet` crate must still compile for.
const OTHER_DESKTOPS: &[&str] = &["x86_64-apple-darwin", "x86_64-unknown-freebsd"];

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
        return Err(format!(
            "expected firmware folders {BOARDS:?}, found {found:?}"
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
    qemu::end_to_end(ctx)
}
