//! The CI stages (`cargo xtask ci [STAGE...]`, `cargo xtask stages`):
//! what each checks, in order, and what each installs first so the run
//! passes on a clean machine.

use std::env;
use std::time::Instant;

use crate::{
    BOARDS, Ctx, boards, cargo, command, cross_check, disk, dist, handlers, have, qemu, run, timers,
};

mod deps;
mod uring;

use deps::{DEBIAN_PACKAGES, installed};
pub(crate) use deps::{apt_install, stage_deps};

/// A CI stage: its name, what it does, and the function that runs it.
pub(crate) struct Stage {
    pub(crate) name: &'static str,
    pub(crate) about: &'static str,
    pub(crate) run: fn(&Ctx) -> Result<(), String>,
}

pub(crate) const STAGES: &[Stage] = &[
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
        about: "the core and the embedded node build for thumbv7m-none-eabi in every feature set; the node's tests pass without its default features",
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

/// Rust targets: the boards' and the `nostd` stage's (thumbv7m).
const TARGETS: &[&str] = &[
    "thumbv7m-none-eabi",
    "thumbv7em-none-eabihf",
    "thumbv8m.main-none-eabi",
];

/// The error for `cargo xtask ci NAME` when NAME is no stage; an option
/// (`ci qemu --board X`) is pointed at the command that takes it.
fn unknown_stage(name: &str) -> String {
    let hint = if name.starts_with('-') {
        " (stages take no options: one QEMU board's checks are \
         `cargo xtask qemu --board NAME --check`)"
    } else {
        ""
    };
    format!("unknown stage {name:?}{hint}; see `cargo xtask stages`")
}

pub(crate) fn run_ci(ctx: &Ctx, names: &[String]) -> Result<(), String> {
    for n in names {
        if !STAGES.iter().any(|s| s.name == n) {
            return Err(unknown_stage(n));
        }
    }
    // A bad RICOCHET_FUZZ_SECS fails now, not after every stage before `fuzz`.
    if names.is_empty() || names.iter().any(|n| n == "fuzz") {
        fuzz_secs(env::var("RICOCHET_FUZZ_SECS").ok().as_deref())?;
    }
    if names.is_empty() {
        disk::preflight(ctx)?;
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
    // qemu-system-arm too: xtask's own tests run the QEMU boards' runner
    // (`xtask/tests/qemu_run.rs`).
    for (bin, pkg) in DEBIAN_PACKAGES {
        if !installed(bin) {
            return Err(format!(
                "{bin} is needed by the tests: run `cargo xtask deps` or `apt-get install -y --no-install-recommends {pkg}`"
            ));
        }
    }
    // Every test once with the io_uring backend of `ricochet serve`, then
    // the server's integration tests again with epoll (the backend of
    // kernels and containers without io_uring): one suite, both backends.
    // Where io_uring is refused, one clear error instead of every server
    // test failing with it.
    if let Some(why) = uring::refused() {
        return Err(why);
    }
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
    "serve_activation",
    "serve_backends",
    "serve_cli",
    "serve_connections",
    "serve_logs",
    "serve_metrics",
    "serve_notify",
    "serve_privileges",
    "serve_signals",
    "serve_stalled_log",
    "serve_tls_cli",
    "serve_transports",
    "serve_udp",
    "serve_udp_queue",
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
    "rcgen",
    "sd-notify",
    "tracing-appender",
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
    // The host tests and doc examples without the default features too: a
    // firmware author turns them off, and the docs must hold for them.
    for features in ["", "udp", "client,dhcp", "ipv6"] {
        let mut args = vec![
            "test",
            "--locked",
            "-p",
            "ricochet-embedded",
            "--no-default-features",
        ];
        if !features.is_empty() {
            args.extend(["--features", features]);
        }
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
    // The footprint target of the default QEMU firmware (embedded/README.md).
    let board = BOARDS
        .iter()
        .find(|b| b.name == crate::DEFAULT_QEMU_BOARD)
        .ok_or("the default QEMU board is not in BOARDS")?;
    let elf = crate::vm::elf(ctx, board);
    let (flash, _) = crate::qemu_bench::footprint(&elf)?;
    within_flash_budget(board.name, flash)?;
    eprintln!(
        "xtask: {} firmware: {flash} B of flash, {} B under its budget",
        board.name,
        FLASH_BUDGET - flash
    );
    Ok(())
}

/// The most flash the default `lm3s6965evb` firmware may take: 40 KiB.
const FLASH_BUDGET: u64 = 40 * 1024;

/// An error naming the excess when `flash` bytes exceed [`FLASH_BUDGET`].
fn within_flash_budget(board: &str, flash: u64) -> Result<(), String> {
    if flash <= FLASH_BUDGET {
        return Ok(());
    }
    Err(format!(
        "the {board} firmware takes {flash} B of flash, {} B over its {FLASH_BUDGET}-byte \
         budget: find the bytes (embedded/README.md, 'RAM and flash budget', says where they \
         go and what could give them back)",
        flash - FLASH_BUDGET
    ))
}

/// Seconds per fuzz target from `RICOCHET_FUZZ_SECS` (unset: 60), checked
/// before the first stage runs. 0 is refused: libFuzzer reads
/// `-max_total_time=0` as "no limit", so the stage would never end; so is
/// anything that is not whole seconds, rather than running 60 s unasked.
fn fuzz_secs(value: Option<&str>) -> Result<u32, String> {
    let Some(v) = value else {
        return Ok(60);
    };
    v.trim()
        .parse::<u32>()
        .ok()
        .filter(|s| (1..=86_400).contains(s))
        .ok_or_else(|| {
            format!(
                "RICOCHET_FUZZ_SECS={v:?}: expected whole seconds per fuzz target from 1 to 86400 \
                 (0 would fuzz forever); e.g. RICOCHET_FUZZ_SECS=60 cargo xtask ci fuzz"
            )
        })
}

fn stage_fuzz(ctx: &Ctx) -> Result<(), String> {
    let value = env::var("RICOCHET_FUZZ_SECS").ok();
    let secs = fuzz_secs(value.as_deref())?;
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
mod tests;
