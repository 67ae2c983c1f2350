//! CPU time of a process, from `/proc/PID/stat`: what the commands that
//! report a server's CPU cost (bench-tls, qemu-bench, attack) read.

use std::process::Command;
use std::sync::OnceLock;

/// CPU seconds process `pid` has used: user and system time, and with
/// `children` also its waited-for children's. `None` if the process is gone
/// or its stat line does not parse.
pub(crate) fn cpu_seconds(pid: u32, children: bool) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields count from
    // the last ')'. After it, the state is field 3 of proc(5); utime,
    // stime, cutime and cstime are fields 14 to 17.
    let f: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let field = |n: usize| f.get(n - 3)?.parse::<u64>().ok();
    let mut ticks = field(14)? + field(15)?;
    if children {
        ticks += field(16)? + field(17)?;
    }
    Some(ticks as f64 / clock_ticks())
}

/// Clock ticks per second (`getconf CLK_TCK`; 100 on Linux if it fails).
fn clock_ticks() -> f64 {
    static TICKS: OnceLock<f64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
            .filter(|&t: &f64| t > 0.0)
            .unwrap_or(100.0)
    })
}
