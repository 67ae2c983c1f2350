//! `ricochet generate DIR` (for packagers, run by `cargo xtask dist`;
//! not in `--help`): man pages and shell completions generated from the one command
//! line definition, so they can never disagree with `--help`.
//!
//! Writes `DIR/man/ricochet.1`, `ricochet-serve.1`, `ricochet-probe.1`,
//! `ricochet-cert.1`
//! (`clap_mangen`) and `DIR/completions/ricochet.bash`, `_ricochet` (zsh),
//! `ricochet.fish` (`clap_complete`).

use std::path::Path;
use std::process::ExitCode;

use clap_complete::Shell;

use super::say;

/// Writes the man pages and completions of `cmd` under `dir`.
pub(crate) fn run(cmd: clap::Command, dir: &Path) -> ExitCode {
    match write_all(cmd, dir) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            say(format_args!("ricochet generate: {}: {e}", dir.display()));
            ExitCode::FAILURE
        }
    }
}

fn write_all(mut cmd: clap::Command, dir: &Path) -> std::io::Result<()> {
    let man = dir.join("man");
    std::fs::create_dir_all(&man)?;
    clap_mangen::generate_to(cmd.clone(), &man)?;
    let completions = dir.join("completions");
    std::fs::create_dir_all(&completions)?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        clap_complete::generate_to(shell, &mut cmd, "ricochet", &completions)?;
    }
    Ok(())
}
