//! The `deps` stage: what the other stages need installed on a clean
//! machine (Debian packages, rustup targets and components, cargo tools).

use std::process::Command;

use super::{CROSS_TARGETS, TARGETS};
use crate::{Ctx, cargo, have, is_root, run};

/// Debian packages the tests need, each with the command that shows it is
/// there: interop peers, QEMU, and the daemon tests' service managers and
/// parsers (xinetd, systemd's socket-activate and analyze, `setpriv`,
/// dpkg-deb, the official Prometheus client's parser for Debian's python3),
/// and the addressing tests' network namespaces (`unshare`, `nsenter`, `ip`).
pub(super) const DEBIAN_PACKAGES: &[(&str, &str)] = &[
    ("socat", "socat"),
    ("nc", "netcat-openbsd"),
    ("qemu-system-arm", "qemu-system-arm"),
    ("prlimit", "util-linux"),
    ("setpriv", "util-linux"),
    ("unshare", "util-linux"),
    ("nsenter", "util-linux"),
    ("ip", "iproute2"),
    ("xinetd", "xinetd"),
    ("systemd-socket-activate", "systemd"),
    ("systemd-analyze", "systemd"),
    ("dpkg-deb", "dpkg"),
    (PROMETHEUS_PARSER, "python3-prometheus-client"),
    ("openssl", "openssl"),
    ("clang", "clang"),
    ("llvm-size", "llvm"),
];

/// The check for python3-prometheus-client (a module, not a command).
const PROMETHEUS_PARSER: &str = "/usr/bin/python3 -c 'import prometheus_client'";

/// Whether the package behind `check` (a command name, or a command line) is installed.
pub(super) fn installed(check: &str) -> bool {
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

/// The `deps` stage: Debian packages, rustup targets and components, and
/// the cargo tools the other stages run.
pub(crate) fn stage_deps(ctx: &Ctx) -> Result<(), String> {
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
