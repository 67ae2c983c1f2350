//! The servers `cargo xtask bench` measures: building them (ricochet and
//! the yardstick's references in ../shared/bench), their command lines,
//! starting one on a port and stopping it, and the yardstick's cases.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Ctx, have, run};

/// Where the yardstick builds and writes (its own default).
pub(super) fn bench_work() -> PathBuf {
    std::env::var_os("BENCH_WORK")
        .map(PathBuf::from)
        .unwrap_or_else(|| std::env::temp_dir().join("ricochet-bench"))
}

/// The setting that points at the yardstick elsewhere.
const YARDSTICK_VAR: &str = "RICOCHET_BENCH_YARDSTICK";

/// The yardstick's directory: `$RICOCHET_BENCH_YARDSTICK`, or
/// `shared/bench` beside the repository at `root`; an error naming both
/// ways to provide it when `marker` (a file the caller needs) is not there.
pub(crate) fn yardstick(root: &Path, marker: &str) -> Result<PathBuf, String> {
    yardstick_in(root, std::env::var_os(YARDSTICK_VAR), marker)
}

fn yardstick_in(
    root: &Path,
    setting: Option<std::ffi::OsString>,
    marker: &str,
) -> Result<PathBuf, String> {
    let (dir, from) = match setting {
        Some(dir) => (PathBuf::from(dir), format!(" (from {YARDSTICK_VAR})")),
        None => (root.join("../shared/bench"), String::new()),
    };
    if dir.join(marker).exists() {
        return Ok(dir);
    }
    Err(format!(
        "{}{from} has no {marker}: the yardstick (shared/bench) is not there. Set \
         {YARDSTICK_VAR}=/path/to/shared/bench, or link it beside the repository \
         (ln -s /path/to/shared {})",
        dir.display(),
        root.join("../shared").display()
    ))
}

/// Builds ricochet (release) and the references (liburing installed first).
pub(super) fn build_all(ctx: &Ctx) -> Result<PathBuf, String> {
    let bench = yardstick(&ctx.root, "run.sh")?;
    ensure_liburing(ctx)?;
    run(
        &ctx.root,
        "cargo",
        &["build", "--release", "--locked", "-p", "ricochet"],
        &[],
    )?;
    run(&bench, "./ref/build.sh", &[], &[])?;
    if !bench_work().join("uring-echo").exists() {
        return Err("uring-echo (the C io_uring reference) was not built".into());
    }
    Ok(bench)
}

/// The C io_uring reference needs liburing's headers (Debian: liburing-dev).
fn ensure_liburing(ctx: &Ctx) -> Result<(), String> {
    let installed = Command::new("dpkg")
        .args(["-s", "liburing-dev"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if installed || !have("apt-get") {
        return Ok(());
    }
    crate::apt_install(ctx, &["liburing-dev"])
}

/// The command line of server `name` (with `{PORT}`).
pub(super) fn server_cmd(ctx: &Ctx, name: &str, threads: Option<&str>) -> String {
    server_cmd_with(ctx, name, threads, None)
}

/// [`server_cmd`], with `ricochet-epoll-base` and `ricochet-uring-base`
/// running `baseline` (`-B`).
pub(super) fn server_cmd_with(
    ctx: &Ctx,
    name: &str,
    threads: Option<&str>,
    baseline: Option<&str>,
) -> String {
    if let (Some(base), Some(io)) = (baseline, name.strip_suffix("-base")) {
        let io = io.trim_start_matches("ricochet-");
        let threads = threads.map_or(String::new(), |t| format!(" --threads {t}"));
        return format!("{base} serve --io {io}{threads} --tcp 127.0.0.1:{{PORT}}");
    }
    let work = bench_work();
    let bin = crate::ricochet_release(ctx);
    let threads = threads.map_or(String::new(), |t| format!(" --threads {t}"));
    match name {
        "c-epoll" => format!("{}/epoll-echo {{PORT}}", work.display()),
        "c-uring" => format!("{}/uring-echo {{PORT}}", work.display()),
        "tokio" => format!("{}/target/release/tokio-echo {{PORT}}", work.display()),
        "ricochet-epoll" => format!(
            "{} serve --io epoll{threads} --tcp 127.0.0.1:{{PORT}}",
            bin.display()
        ),
        "ricochet-uring" => format!(
            "{} serve --io uring{threads} --tcp 127.0.0.1:{{PORT}}",
            bin.display()
        ),
        "ricochet-epoll-bp50" => format!(
            "{} serve --io epoll{threads} --busy-poll 50us --tcp 127.0.0.1:{{PORT}}",
            bin.display()
        ),
        "ricochet-uring-bp50" => format!(
            "{} serve --io uring{threads} --busy-poll 50us --tcp 127.0.0.1:{{PORT}}",
            bin.display()
        ),
        other => unreachable!("unknown server {other}"),
    }
}

/// A server child in its own process group, stopped by PID on drop.
pub(super) struct Server {
    pub(super) child: Child,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub(super) fn start_server(cmd: &str, port: u16) -> Result<Server, String> {
    let cmd = cmd.replace("{PORT}", &port.to_string());
    let mut words = cmd.split_whitespace();
    let program = words.next().ok_or("empty server command")?;
    let child = Command::new(program)
        .args(words)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    let server = Server { child };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err(format!("{cmd} did not listen within 10 s"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok(server)
}

pub(super) fn case_args(case: &str) -> Result<Vec<String>, String> {
    let (m, c, s) = match case {
        "pp1" => ("pingpong", "1", "64"),
        "pp100" => ("pingpong", "100", "64"),
        "pp1000" => ("pingpong", "1000", "64"),
        "st1" => ("stream", "1", "64KiB"),
        "st16" => ("stream", "16", "16KiB"),
        other => {
            return Err(format!(
                "unknown case {other:?} (pp1, pp100, pp1000, st1, st16)"
            ));
        }
    };
    Ok(["-m", m, "-c", c, "-s", s].map(str::to_owned).to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clone without shared/ beside it: the error names the setting and
    /// the link that fix it (it only said where the yardstick should be).
    #[test]
    fn missing_yardstick_names_the_setting_and_the_link() {
        let root = std::env::temp_dir().join(format!("ricochet-yardstick-{}", std::process::id()));
        let e = yardstick_in(&root.join("clone"), None, "run.sh").unwrap_err();
        assert!(
            e.contains("has no run.sh")
                && e.contains("RICOCHET_BENCH_YARDSTICK=/path/to/shared/bench")
                && e.contains("ln -s /path/to/shared"),
            "{e}"
        );
        let elsewhere = root.join("bench");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let e = yardstick_in(&root, Some(elsewhere.clone().into()), "run.sh").unwrap_err();
        assert!(e.contains("(from RICOCHET_BENCH_YARDSTICK)"), "{e}");
        std::fs::write(elsewhere.join("run.sh"), "").unwrap();
        let found = yardstick_in(&root, Some(elsewhere.clone().into()), "run.sh");
        std::fs::remove_dir_all(&root).unwrap();
        assert_eq!(found, Ok(elsewhere));
    }
}
