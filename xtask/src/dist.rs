//! `cargo xtask dist`: what people install. The release binary, its man
//! pages and shell completions (generated from the CLI definition by
//! `ricochet generate`), then, in CI, the Debian package built by
//! `cargo deb` from the crate's `[package.metadata.deb]`, inspected with
//! `dpkg-deb -c`, and its systemd units verified by `systemd-analyze
//! verify` inside the unpacked package.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Ctx, cargo, run};

/// Where `ricochet generate` writes, under the release directory so that
/// cargo-deb's `target/release/` asset prefix finds it in any target dir.
const DIST_SUBDIR: &str = "dist";

/// Paths the package must hold (`dpkg-deb -c`, without the leading `./`).
const PACKAGE_MUST_HOLD: &[&str] = &[
    "usr/bin/ricochet",
    "usr/share/man/man1/ricochet.1.gz",
    "usr/share/man/man1/ricochet-serve.1.gz",
    "usr/share/man/man1/ricochet-probe.1.gz",
    "usr/share/man/man1/ricochet-cert.1.gz",
    "usr/share/bash-completion/completions/ricochet",
    "usr/share/zsh/vendor-completions/_ricochet",
    "usr/share/fish/vendor_completions.d/ricochet.fish",
    "usr/lib/systemd/system/ricochet.socket",
    "usr/lib/systemd/system/ricochet.service",
    "usr/share/doc/ricochet/copyright",
    // "Run it as a service", where the man pages send the reader.
    "usr/share/doc/ricochet/PROJECT-README.md",
    // The licence texts: the copyright file cargo-deb writes names the
    // licence (MIT OR Apache-2.0) but holds neither text, and MIT asks
    // for its text to go with every copy.
    "usr/share/doc/ricochet/LICENSE-MIT",
    "usr/share/doc/ricochet/LICENSE-APACHE",
];

fn target_dir(ctx: &Ctx) -> PathBuf {
    crate::target_dir_of(&ctx.root)
}

/// Builds the release binary and writes the man pages and completions
/// into `target/release/dist/{man,completions}`.
pub(crate) fn dist(ctx: &Ctx) -> Result<PathBuf, String> {
    run(
        &ctx.root,
        &cargo(),
        &["build", "--release", "--locked", "-p", "ricochet"],
        &[],
    )?;
    let release = target_dir(ctx).join("release");
    let out = release.join(DIST_SUBDIR);
    let _ = std::fs::remove_dir_all(&out);
    let bin = release.join("ricochet");
    run(
        &ctx.root,
        &bin.to_string_lossy(),
        &["generate", &out.to_string_lossy()],
        &[],
    )?;
    // Debian wants man pages gzipped (-n: no name or time stamp, reproducible).
    for page in [
        "ricochet.1",
        "ricochet-serve.1",
        "ricochet-probe.1",
        "ricochet-cert.1",
    ] {
        let page = out.join("man").join(page);
        run(&ctx.root, "gzip", &["-9nkf", &page.to_string_lossy()], &[])?;
    }
    eprintln!("xtask: man pages and completions in {}", out.display());
    Ok(out)
}

/// The CI stage: `dist`, then `cargo deb`, inspect the package, verify its units.
pub(crate) fn stage(ctx: &Ctx) -> Result<(), String> {
    for tool in ["cargo-deb", "dpkg-deb", "systemd-analyze"] {
        if !crate::have(tool) {
            return Err(format!("{tool} is needed: run `cargo xtask deps`"));
        }
    }
    dist(ctx)?;
    let debian = target_dir(ctx).join("debian");
    let _ = std::fs::remove_dir_all(&debian);
    run(
        &ctx.root,
        &cargo(),
        &[
            "deb",
            "--locked",
            "-p",
            "ricochet",
            "--no-build",
            "--strip",
            "--output",
            &debian.to_string_lossy(),
        ],
        &[],
    )?;
    let deb = std::fs::read_dir(&debian)
        .map_err(|e| format!("{}: {e}", debian.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .ok_or_else(|| format!("cargo deb left no .deb in {}", debian.display()))?;
    inspect(&deb)?;
    verify_units(&deb)
}

fn output(program: &str, args: &[&str]) -> Result<String, String> {
    eprintln!("+ {program} {}", args.join(" "));
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `dpkg-deb -c`: every file people need is in the package.
fn inspect(deb: &Path) -> Result<(), String> {
    let deb = deb.to_string_lossy();
    let listing = output("dpkg-deb", &["-c", &deb])?;
    eprint!("{listing}");
    let paths: Vec<&str> = listing
        .lines()
        .filter_map(|l| l.split_whitespace().nth(5))
        .map(|p| p.trim_start_matches("./"))
        .collect();
    let missing: Vec<&&str> = PACKAGE_MUST_HOLD
        .iter()
        .filter(|want| !paths.contains(want))
        .collect();
    if !missing.is_empty() {
        return Err(format!("{deb} lacks {missing:?}"));
    }
    let info = output("dpkg-deb", &["-I", &deb])?;
    eprint!("{info}");
    for field in ["Package: ricochet", "Section: net", "Depends: "] {
        if !info.contains(field) {
            return Err(format!("{deb}: control file lacks {field:?}"));
        }
    }
    synopsis_fits(&info).map_err(|e| format!("{deb}: {e}"))
}

/// Debian's policy (3.4.1): the synopsis, the first line of `Description:`,
/// should be under 80 characters (it is what `apt search` lists); it comes
/// from the crate's `description`.
fn synopsis_fits(control: &str) -> Result<(), String> {
    let synopsis = control
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("Description: "))
        .ok_or("the control file has no Description")?;
    if synopsis.chars().count() < 80 {
        Ok(())
    } else {
        Err(format!(
            "the synopsis is {} characters, Debian wants under 80: shorten the crate's \
             `description` (std-adapter/Cargo.toml): {synopsis:?}",
            synopsis.chars().count()
        ))
    }
}

/// Unpacks the package beside the system's own units and runs
/// `systemd-analyze verify` on its units there: it must pass without a word
/// (systemd only warns about, say, a misspelt key, and that must fail too).
fn verify_units(deb: &Path) -> Result<(), String> {
    let root = std::env::temp_dir().join(format!("ricochet-deb-root-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    let result = (|| {
        let system = root.join("usr/lib/systemd/system");
        std::fs::create_dir_all(&system).map_err(|e| format!("{}: {e}", system.display()))?;
        for entry in std::fs::read_dir("/usr/lib/systemd/system").map_err(|e| e.to_string())? {
            let entry = entry.map_err(|e| e.to_string())?;
            if entry.file_type().map_err(|e| e.to_string())?.is_file() {
                std::fs::copy(entry.path(), system.join(entry.file_name()))
                    .map_err(|e| e.to_string())?;
            }
        }
        output(
            "dpkg-deb",
            &["-x", &deb.to_string_lossy(), &root.to_string_lossy()],
        )?;
        let root_arg = format!("--root={}", root.display());
        eprintln!("+ systemd-analyze verify --man=no {root_arg} ricochet.socket ricochet.service");
        let out = Command::new("systemd-analyze")
            .args([
                "verify",
                "--man=no",
                &root_arg,
                "/usr/lib/systemd/system/ricochet.socket",
                "/usr/lib/systemd/system/ricochet.service",
            ])
            .output()
            .map_err(|e| format!("cannot run systemd-analyze: {e}"))?;
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if !out.status.success() || !said.trim().is_empty() {
            return Err(format!(
                "systemd-analyze verify of the packaged units:\n{said}"
            ));
        }
        Ok(())
    })();
    let _ = std::fs::remove_dir_all(&root);
    result
}

#[cfg(test)]
mod tests {
    use super::synopsis_fits;

    #[test]
    fn synopsis_of_80_characters_or_more_is_refused() {
        let short = " Package: ricochet\n Description: an echo server\n  More.\n";
        assert_eq!(synopsis_fits(short), Ok(()));
        let long = format!(" Description: {}\n", "x".repeat(80));
        assert!(synopsis_fits(&long).unwrap_err().contains("80 characters"));
        assert!(synopsis_fits(" Package: ricochet\n").is_err());
    }

    /// The crate's description is what the package shows as its synopsis.
    #[test]
    fn the_crate_description_fits_a_debian_synopsis() {
        let manifest = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../std-adapter/Cargo.toml"),
        )
        .unwrap();
        let description = manifest
            .lines()
            .find_map(|l| l.strip_prefix("description = \""))
            .and_then(|l| l.strip_suffix('"'))
            .expect("std-adapter's description");
        assert_eq!(
            synopsis_fits(&format!(" Description: {description}\n")),
            Ok(())
        );
    }
}
