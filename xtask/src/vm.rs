//! A QEMU board as a process: which board `--board` names, its ELF, the
//! tools it needs, a free host port, and booting it through
//! `embedded/boards/qemu-run.sh` under `timeout`, in its own process group,
//! killed by that group's id when dropped (nothing else is touched).

use std::fs;
use std::io::Read;
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::{BOARDS, Board, Ctx, DEFAULT_QEMU_BOARD, QemuMachine, have};

/// The runner every QEMU board uses (also their `cargo run`).
const RUNNER: &str = "embedded/boards/qemu-run.sh";
/// An upper bound on one QEMU run in CI (the e2e checks take about a minute).
pub(crate) const QEMU_LIMIT_SECS: u64 = 600;

/// Splits `--board NAME` off `args`: the QEMU board named (default
/// lm3s6965evb) and the remaining positional arguments.
pub(crate) fn board_arg(
    args: &[String],
) -> Result<(&'static Board, &'static QemuMachine, Vec<&str>), String> {
    let mut name = DEFAULT_QEMU_BOARD;
    let mut rest = Vec::new();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        if arg == "--board" {
            name = it.next().ok_or("--board needs a name")?;
        } else if let Some(n) = arg.strip_prefix("--board=") {
            name = n;
        } else {
            rest.push(arg.as_str());
        }
    }
    let qemu_boards = || {
        BOARDS
            .iter()
            .filter(|b| b.qemu.is_some())
            .map(|b| b.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let board = BOARDS
        .iter()
        .find(|b| b.name == name)
        .ok_or_else(|| format!("unknown board {name:?}; QEMU boards: {}", qemu_boards()))?;
    let machine = board.qemu.as_ref().ok_or_else(|| {
        format!(
            "{name} does not run in QEMU (see its README); QEMU boards: {}",
            qemu_boards()
        )
    })?;
    Ok((board, machine, rest))
}

/// The firmware ELF that `cargo build --release` in `board`'s folder
/// writes (`CARGO_TARGET_DIR` honoured).
pub(crate) fn elf(ctx: &Ctx, board: &Board) -> PathBuf {
    crate::target_dir_of(&ctx.root.join(board.dir))
        .join(board.target)
        .join("release")
        .join(board.package)
}

/// Builds `board`'s release firmware with `features` (comma-separated;
/// empty: the defaults) into `SUBDIR` of its target directory (its
/// folder's `target/`, or `CARGO_TARGET_DIR`), apart from the image the
/// other checks boot, and returns the ELF's path.
pub(crate) fn build_variant(
    ctx: &Ctx,
    board: &Board,
    subdir: &str,
    features: &str,
) -> Result<PathBuf, String> {
    let dir = ctx.root.join(board.dir);
    let target_dir = variant_dir_from(
        &dir,
        std::env::var_os("CARGO_TARGET_DIR").as_deref(),
        subdir,
    );
    let target_arg = target_dir.to_string_lossy().into_owned();
    let mut args = vec![
        "build",
        "--release",
        "--locked",
        "--target-dir",
        &target_arg,
    ];
    if !features.is_empty() {
        args.extend(["--features", features]);
    }
    crate::run(&dir, &cargo(), &args, &[])?;
    Ok(target_dir
        .join(board.target)
        .join("release")
        .join(board.package))
}

/// Where [`build_variant`] builds: `SUBDIR` of the target directory cargo
/// uses in `board_dir` with `CARGO_TARGET_DIR` = `var`.
fn variant_dir_from(board_dir: &Path, var: Option<&std::ffi::OsStr>, subdir: &str) -> PathBuf {
    crate::target_dir_from(board_dir, var).join(subdir)
}

pub(crate) fn cargo() -> String {
    std::env::var("CARGO").unwrap_or_else(|_| "cargo".into())
}

pub(crate) fn require_tools() -> Result<(), String> {
    for (tool, how) in [
        (
            "qemu-system-arm",
            "apt-get install -y --no-install-recommends qemu-system-arm",
        ),
        ("defmt-print", "cargo install --locked defmt-print"),
    ] {
        if !have(tool) {
            return Err(format!(
                "{tool} not found: run `cargo xtask deps` or `{how}`"
            ));
        }
    }
    Ok(())
}

/// The host ports forwarded to a board's echo ports: `raw` (TCP and UDP)
/// to 7, `lines` to 7001, `frames` to 7002.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ports {
    pub(crate) raw: u16,
    pub(crate) lines: u16,
    pub(crate) frames: u16,
}

impl Ports {
    /// Three distinct free loopback ports.
    pub(crate) fn free() -> Result<Ports, String> {
        let raw = free_port()?;
        let mut others = Vec::new();
        while others.len() < 2 {
            let p = free_port()?;
            if p != raw && !others.contains(&p) {
                others.push(p);
            }
        }
        Ok(Ports {
            raw,
            lines: others[0],
            frames: others[1],
        })
    }

    /// The URL of the `raw`, `lines` or `frames` port.
    pub(crate) fn tcp(&self, mode: &str) -> String {
        let port = match mode {
            "lines" => self.lines,
            "frames" => self.frames,
            _ => self.raw,
        };
        format!("tcp://127.0.0.1:{port}")
    }
}

/// Removes a run's firmware log once `result` says the run passed (what
/// it showed is on stderr already); a failed run keeps it for a look.
/// Every check booted QEMU with a new log in the temp directory, and they
/// piled up there (hundreds after a few CI runs).
pub(crate) fn keep_log_if_failed<T>(result: &Result<T, String>, log: &Path) {
    if result.is_ok() {
        let _ = fs::remove_file(log);
    }
}

/// A free loopback port for both TCP and UDP.
pub(crate) fn free_port() -> Result<u16, String> {
    for _ in 0..50 {
        let tcp = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
        let port = tcp.local_addr().map_err(|e| e.to_string())?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err("no free port for both TCP and UDP".into())
}

/// How a booted board is networked.
pub(crate) enum Network {
    /// User-mode networking (slirp) with these host ports forwarded.
    Forward(Ports),
    /// Another QEMU network backend (`-nic SPEC,model=...`), e.g. a UDP
    /// socket that carries raw Ethernet frames to a test.
    Netdev(String),
}

/// A running QEMU, killed (by process group) when dropped.
pub(crate) struct Qemu {
    child: Child,
    log: PathBuf,
}

impl Qemu {
    /// Boots `elf` (a build of `board`) on `machine` under `timeout
    /// limit_secs`, with three free host ports forwarded to the guest's echo
    /// ports; the defmt log goes to a temp file named after `what`, the
    /// board and the port. Returns the ports, the log's path and the run.
    pub(crate) fn boot_forwarded(
        ctx: &Ctx,
        board: &Board,
        machine: &QemuMachine,
        elf: &Path,
        what: &str,
        limit_secs: u64,
    ) -> Result<(Ports, PathBuf, Qemu), String> {
        let ports = Ports::free()?;
        let log =
            std::env::temp_dir().join(format!("ricochet-{what}-{}-{}.log", board.name, ports.raw));
        let qemu = Qemu::boot_elf(
            ctx,
            machine,
            elf,
            &[],
            Network::Forward(ports),
            log.clone(),
            limit_secs,
        )?;
        Ok((ports, log, qemu))
    }

    /// Boots `elf` on `machine` with `extra` QEMU arguments on `network`,
    /// under `timeout limit_secs`; the defmt log goes to `log`.
    pub(crate) fn boot_elf(
        ctx: &Ctx,
        machine: &QemuMachine,
        elf: &Path,
        extra: &[String],
        network: Network,
        log: PathBuf,
        limit_secs: u64,
    ) -> Result<Qemu, String> {
        let runner = ctx.root.join(RUNNER);
        let log_file = fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let err_file = log_file.try_clone().map_err(|e| e.to_string())?;
        // setsid: QEMU, defmt-print and the script share a new process group
        // whose id is the child's pid, so one kill stops them all.
        let mut command = crate::command("setsid");
        // If xtask itself is killed (even by SIGKILL), `timeout` gets
        // SIGTERM and passes it on; Ctrl-C and `kill` are handled in
        // `signals`, which stops the group.
        crate::signals::term_with_parent(&mut command);
        match network {
            Network::Forward(ports) => command
                .env("RICOCHET_PORT", ports.raw.to_string())
                .env("RICOCHET_LINES_PORT", ports.lines.to_string())
                .env("RICOCHET_FRAMES_PORT", ports.frames.to_string()),
            Network::Netdev(spec) => command.env("RICOCHET_NETDEV", spec),
        };
        let child = command
            .args(["timeout", "-k", "5", &limit_secs.to_string()])
            .arg(runner)
            .args([machine.machine, machine.nic])
            .arg(elf)
            .args(extra)
            .current_dir(&ctx.root)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(err_file)
            .spawn()
            .map_err(|e| format!("cannot start qemu-run.sh: {e}"))?;
        crate::signals::register(child.id());
        Ok(Qemu { child, log })
    }

    /// Waits for the run to end (bounded by its `timeout`) and returns how
    /// it ended: QEMU's status, or `timeout`'s 124 (137 after its KILL)
    /// if it had to stop it.
    pub(crate) fn wait(&mut self) -> Result<std::process::ExitStatus, String> {
        self.child
            .wait()
            .map_err(|e| format!("waiting for qemu-run.sh: {e}"))
    }

    pub(crate) fn log_text(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    /// The id of the process group QEMU and its helpers run in.
    pub(crate) fn group(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        let pgid = self.child.id();
        // The group may be gone already (QEMU exited by itself): that is
        // the aim, not an error worth a line on stderr.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .stderr(std::process::Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline && self.alive() {
            thread::sleep(Duration::from_millis(50));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(std::process::Stdio::null())
            .status();
        // Forgotten before it is reaped, while the id is still ours.
        crate::signals::unregister(pgid);
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_builds_go_where_cargo_target_dir_puts_build_output() {
        let board = Path::new("/repo/embedded/boards/mps2-an385");
        let var = |v: &str| Some(std::ffi::OsString::from(v));
        assert_eq!(
            variant_dir_from(board, None, "paint-stack"),
            board.join("target/paint-stack")
        );
        assert_eq!(
            variant_dir_from(board, var("/tmp/t").as_deref(), "bench-x"),
            Path::new("/tmp/t/bench-x")
        );
        assert_eq!(
            variant_dir_from(board, var("rel").as_deref(), "selftest"),
            board.join("rel/selftest")
        );
    }

    #[test]
    fn a_passed_run_removes_its_log_and_a_failed_one_keeps_it() {
        let log = std::env::temp_dir().join(format!("ricochet-vm-test-{}.log", std::process::id()));
        fs::write(&log, "boot\n").unwrap();
        keep_log_if_failed(&Err::<(), _>("probe failed".to_owned()), &log);
        assert!(log.exists(), "a failed run's log is kept");
        keep_log_if_failed(&Ok::<_, String>(()), &log);
        assert!(!log.exists(), "a passed run's log is removed");
    }
}
