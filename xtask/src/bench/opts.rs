//! `cargo xtask bench`'s command line: `-h`/`--help`, and the options the
//! subcommands share (`-r -d -c -t -b -S -L -B`), each checked before
//! anything is built or started.

use super::CASES;

/// `-h` or `--help` anywhere (before running anything).
pub(super) fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help")
}

/// Options shared by the subcommands.
pub(super) struct Opts {
    pub(super) reps: u32,
    pub(super) secs: u32,
    pub(super) cases: String,
    pub(super) threads: Option<String>,
    /// Also run ricochet with busy polling on (`--busy-poll 50us`).
    pub(super) busy_poll_on: bool,
    /// CPUs for the servers and for the load generator (`taskset -c`
    /// lists), both or neither.
    pub(super) pin: Option<(String, String)>,
    /// An earlier ricochet binary to measure beside this one (`-B`, `bench
    /// floor` only).
    pub(super) baseline: Option<String>,
}

pub(super) fn opts(args: &[String], default_secs: u32) -> Result<Opts, String> {
    let mut o = Opts {
        reps: 3,
        secs: default_secs,
        cases: CASES.to_owned(),
        threads: None,
        busy_poll_on: false,
        pin: None,
        baseline: None,
    };
    let (mut server_cpus, mut load_cpus) = (None, None);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{a} needs a value"))
        };
        match a.as_str() {
            "-r" => o.reps = value()?.parse().map_err(|e| format!("-r: {e}"))?,
            "-d" => o.secs = value()?.parse().map_err(|e| format!("-d: {e}"))?,
            "-c" => o.cases = case_list(value()?)?,
            "-t" => o.threads = Some(threads(value()?)?),
            "-b" => o.busy_poll_on = true,
            "-S" => server_cpus = Some(cpu_list("-S", value()?)?),
            "-L" => load_cpus = Some(cpu_list("-L", value()?)?),
            "-B" => o.baseline = Some(baseline_bin(value()?)?),
            other => {
                return Err(format!(
                    "unknown option {other:?}: expected -r REPS, -d SECS, -c CASES, -t THREADS, -b, -S CPUS, -L CPUS, -B BIN (--help: usage)"
                ));
            }
        }
    }
    if o.reps == 0 || o.secs < 2 {
        return Err("-r must be at least 1 and -d at least 2".into());
    }
    o.pin = match (server_cpus, load_cpus) {
        (Some(s), Some(l)) => Some((s, l)),
        (None, None) => None,
        _ => {
            return Err(
                "-S and -L go together: pinning one side only lets the other share its cores \
                 (e.g. -S 0 -L 1, or -S 0-3 -L 4-15)"
                    .into(),
            );
        }
    };
    Ok(o)
}

/// `-B` outside `bench floor`.
pub(super) const ONLY_FLOOR: &str =
    "-B (an earlier build beside this one) is for cargo xtask bench floor only";

/// `-B`'s binary: an executable file, checked before anything is built.
fn baseline_bin(path: String) -> Result<String, String> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::metadata(&path) {
        Ok(m) if m.is_file() && m.permissions().mode() & 0o111 != 0 => Ok(path),
        Ok(_) => Err(format!(
            "-B {path}: not an executable file (give an earlier build's target/release/ricochet)"
        )),
        Err(e) => Err(format!("-B {path}: {e}")),
    }
}

/// A `taskset -c` CPU list (`0`, `0-3`, `0,2,4-7`), checked before any
/// server starts so a typo is named here rather than by taskset mid-run.
fn cpu_list(flag: &str, list: String) -> Result<String, String> {
    let cpu = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let ok = list.split(',').all(|part| match part.split_once('-') {
        Some((a, b)) => cpu(a) && cpu(b) && a.parse::<u32>().ok() <= b.parse::<u32>().ok(),
        None => cpu(part),
    });
    if ok {
        Ok(list)
    } else {
        Err(format!(
            "{flag} {list:?} is not a CPU list: use numbers and ranges as taskset -c does, \
             e.g. 0, 0-3 or 0,2,4-7"
        ))
    }
}

/// `-c`: a comma-separated list of the yardstick's case names (`pp1`,
/// `st16`, `pp:1:8KiB`), checked for shape before anything is built.
fn case_list(list: String) -> Result<String, String> {
    let case = |c: &str| !c.is_empty() && c.bytes().all(|b| b.is_ascii_alphanumeric() || b == b':');
    if list.split(',').all(case) {
        Ok(list)
    } else {
        Err(format!(
            "-c {list:?} is not a list of cases: names separated by commas, e.g. {CASES}"
        ))
    }
}

/// `-t`: ricochet's worker threads, a whole number from 1.
fn threads(t: String) -> Result<String, String> {
    match t.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(t),
        _ => Err(format!(
            "-t {t:?}: expected a whole number of threads, 1 or more"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::servers::server_cmd_with;
    use crate::{Ctx, strings};

    #[test]
    fn cases_and_threads_are_checked_before_building() {
        let o = opts(&strings(&["-c", "pp1,pp:1:8KiB", "-t", "2"]), 4).unwrap();
        assert_eq!(o.cases, "pp1,pp:1:8KiB");
        assert_eq!(o.threads.as_deref(), Some("2"));
        for bad in [
            &["-c", ""][..],
            &["-c", "pp1,,st1"],
            &["-c", "pp1 st1"],
            &["-t", "0"],
            &["-t", "x"],
            &["-d", "x"],
            &["-d", "1"],
            &["-r", "0"],
        ] {
            assert!(opts(&strings(bad), 4).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn baseline_must_be_an_executable_and_runs_as_the_base_servers() {
        let missing = opts(&strings(&["-B", "/nonexistent/ricochet"]), 4)
            .err()
            .unwrap();
        assert!(
            missing.starts_with("-B /nonexistent/ricochet:"),
            "{missing}"
        );
        let dir = std::env::temp_dir();
        let not_exec = opts(&strings(&["-B", &dir.to_string_lossy()]), 4)
            .err()
            .unwrap();
        assert!(not_exec.contains("not an executable file"), "{not_exec}");
        let o = opts(&strings(&["-B", "/bin/sh"]), 4).unwrap();
        assert_eq!(o.baseline.as_deref(), Some("/bin/sh"));
        let ctx = Ctx {
            root: std::path::PathBuf::from("/repo"),
        };
        assert_eq!(
            server_cmd_with(
                &ctx,
                "ricochet-uring-base",
                Some("2"),
                Some("/old/ricochet")
            ),
            "/old/ricochet serve --io uring --threads 2 --tcp 127.0.0.1:{PORT}"
        );
        assert_eq!(
            server_cmd_with(&ctx, "ricochet-epoll-base", None, Some("/old/ricochet")),
            "/old/ricochet serve --io epoll --tcp 127.0.0.1:{PORT}"
        );
        // The current build where cargo puts it (`CARGO_TARGET_DIR` honoured).
        assert_eq!(
            server_cmd_with(&ctx, "ricochet-uring", None, Some("/old/ricochet")),
            format!(
                "{} serve --io uring --tcp 127.0.0.1:{{PORT}}",
                crate::ricochet_release(&ctx).display()
            )
        );
    }

    #[test]
    fn help_is_asked_for_anywhere_and_unknown_options_point_to_it() {
        assert!(wants_help(&strings(&["--help"])));
        assert!(wants_help(&strings(&["syscalls", "-h"])));
        assert!(!wants_help(&strings(&["-r", "3"])));
        let e = opts(&strings(&["--bogus"]), 4).err().unwrap();
        assert!(e.contains("--help"), "{e}");
    }

    #[test]
    fn pinning_takes_server_and_load_cpu_lists_together() {
        let o = opts(&strings(&["-S", "0-3", "-L", "4,6,8-15"]), 4).unwrap();
        assert_eq!(o.pin, Some(("0-3".to_owned(), "4,6,8-15".to_owned())));
        assert_eq!(opts(&strings(&[]), 4).unwrap().pin, None);
        let one_side = opts(&strings(&["-S", "0"]), 4).err().unwrap();
        assert!(one_side.contains("-S and -L go together"), "{one_side}");
        for bad in ["", "a", "0-", "3-1", "0,,1", "1 2"] {
            let e = opts(&strings(&["-S", bad, "-L", "1"]), 4).err().unwrap();
            assert!(e.contains("is not a CPU list"), "{bad:?}: {e}");
        }
    }
}
