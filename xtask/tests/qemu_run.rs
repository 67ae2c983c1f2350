//! `embedded/boards/qemu-run.sh`, the QEMU boards' cargo runner, when a
//! host port it forwards is already taken (another board, any server):
//! QEMU refuses the forwarding rule and names it, with no fix; the runner
//! must then say which port is in use and which variable moves it, and
//! exit with QEMU's status, not hang.
//!
//! QEMU sets up its network before it loads the kernel, so an empty ELF
//! is enough: no firmware is built (with `-S` QEMU then waits, paused,
//! until it is stopped). Needs qemu-system-arm and defmt-print (`cargo
//! xtask deps`), as the runner does.

use std::io::Read;
use std::net::{TcpListener, TcpStream, UdpSocket};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// How long one run may take: QEMU gives up on a busy port at once.
const LIMIT: Duration = Duration::from_secs(30);

fn runner() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../embedded/boards/qemu-run.sh")
}

/// Waits for `child` up to [`LIMIT`], killing it after that.
fn wait_bounded(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for qemu-run.sh") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("qemu-run.sh still running after {LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs the runner for the lm3s6965evb on an empty ELF with `envs` (the
/// ports), and returns its exit status and stderr.
fn run(name: &str, envs: &[(&str, u16)]) -> (ExitStatus, String) {
    let elf = std::env::temp_dir().join(format!(
        "ricochet-qemu-run-test-{}-{name}.elf",
        std::process::id()
    ));
    std::fs::write(&elf, b"").expect("write the empty ELF");
    let mut command = Command::new(runner());
    command
        .args(["lm3s6965evb", "stellaris"])
        .arg(&elf)
        .env_remove("RICOCHET_NETDEV")
        .env_remove("RICOCHET_PORT")
        .env_remove("RICOCHET_LINES_PORT")
        .env_remove("RICOCHET_FRAMES_PORT")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (var, port) in envs {
        command.env(var, port.to_string());
    }
    let mut child = command.spawn().expect("start qemu-run.sh");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let collect = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(&mut child);
    let _ = std::fs::remove_file(&elf);
    (status, collect.join().expect("stderr reader"))
}

/// A TCP listener on a loopback port the runner accepts as RICOCHET_PORT
/// (at most 65532: it forwards PORT+1 and PORT+2 too), below the kernel's
/// ephemeral range: a port the kernel hands out (port 0) has neighbours it
/// hands out too, to any busy client's connections, so PORT+1 or PORT+2 was
/// taken by the time the runner forwarded it, now and then, on a loaded
/// host (and checking them first only narrowed that race).
fn held_tcp() -> (TcpListener, u16) {
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| r.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32768);
    // Ports 10000..low-3, from a start that differs between runs and test
    // threads, in steps of 3 (a port and its two forwarded neighbours).
    let (first, span) = (
        10_000u32,
        u32::from(low.saturating_sub(3)).saturating_sub(10_000),
    );
    if span <= 1_000 {
        // A host whose ephemeral range starts low (1024-65535): the kernel's
        // own pick, as before.
        loop {
            let held = TcpListener::bind("127.0.0.1:0").expect("bind");
            let port = held.local_addr().expect("local_addr").port();
            if port <= 65532 {
                return (held, port);
            }
        }
    }
    let seed = std::collections::hash_map::RandomState::new();
    let start = std::hash::BuildHasher::hash_one(&seed, thread::current().id()) as u32 % span;
    for i in 0..span / 3 {
        let port = (first + (start + 3 * i) % span) as u16;
        if let Ok(held) = TcpListener::bind(("127.0.0.1", port)) {
            return (held, port);
        }
    }
    panic!("no free loopback port in 10000..{low}");
}

/// The port suggested is free when it is suggested: the first guess
/// (PORT+1000) is held too, and the suggestion skips it.
/// A RICOCHET_PORT whose forwarded ports (TCP PORT, PORT+1, PORT+2, UDP
/// PORT) are all free now: a random ephemeral PORT+1 or PORT+2 in use made
/// QEMU refuse to start, now and then.
fn free_forwarded_ports() -> u16 {
    for _ in 0..100 {
        let (held, port) = held_tcp();
        drop(held);
        let free = UdpSocket::bind(("127.0.0.1", port)).is_ok()
            && (port..=port + 2).all(|p| TcpListener::bind(("127.0.0.1", p)).is_ok());
        if free {
            return port;
        }
    }
    panic!("no three consecutive free loopback ports in 100 tries");
}

#[test]
fn a_busy_raw_port_is_named_with_the_variable_that_moves_it() {
    let (_held, port) = held_tcp();
    // Taken for the test, or already in use: either way not to suggest
    // (the runner's first guess, PORT+1000 within 1024-65532).
    let guess = (1024 + (u32::from(port) + 1000 - 1024) % (65532 - 1024 + 1)) as u16;
    let _first_guess = TcpListener::bind(("127.0.0.1", guess));
    let (status, stderr) = run("raw", &[("RICOCHET_PORT", port)]);
    assert_eq!(status.code(), Some(1), "{status}; stderr: {stderr}");
    assert!(
        stderr.contains(&format!(
            "qemu-run.sh: cannot forward 127.0.0.1:{port} (tcp): in use"
        )) && stderr.contains("cargo run --release"),
        "{stderr}"
    );
    let suggested: u16 = stderr
        .split("RICOCHET_PORT=")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port suggested: {stderr}"));
    assert!(
        suggested != port && suggested != guess,
        "{suggested}: {stderr}"
    );
    for p in suggested..=suggested + 2 {
        assert!(
            TcpListener::bind(("127.0.0.1", p)).is_ok(),
            "{p} suggested but taken: {stderr}"
        );
    }
}

#[test]
fn a_busy_udp_port_is_named_as_udp() {
    // The port free for TCP, taken for UDP only.
    let (udp, port) = loop {
        let (tcp, port) = held_tcp();
        if let Ok(udp) = UdpSocket::bind(("127.0.0.1", port)) {
            drop(tcp);
            break (udp, port);
        }
    };
    let (status, stderr) = run("udp", &[("RICOCHET_PORT", port)]);
    drop(udp);
    assert_eq!(status.code(), Some(1), "{status}; stderr: {stderr}");
    assert!(
        stderr.contains(&format!(
            "qemu-run.sh: cannot forward 127.0.0.1:{port} (udp): in use"
        )) && stderr.contains("RICOCHET_PORT="),
        "{stderr}"
    );
}

#[test]
fn a_busy_frames_port_given_by_its_own_variable_names_that_variable() {
    let (_held, frames) = held_tcp();
    // The raw and lines ports: free a moment ago (the raw one for UDP too).
    let (raw, lines) = loop {
        let (a, raw) = held_tcp();
        let (b, lines) = held_tcp();
        if UdpSocket::bind(("127.0.0.1", raw)).is_ok() {
            drop((a, b));
            break (raw, lines);
        }
    };
    let (status, stderr) = run(
        "frames",
        &[
            ("RICOCHET_PORT", raw),
            ("RICOCHET_LINES_PORT", lines),
            ("RICOCHET_FRAMES_PORT", frames),
        ],
    );
    assert_eq!(status.code(), Some(1), "{status}; stderr: {stderr}");
    assert!(
        stderr.contains(&format!(
            "qemu-run.sh: cannot forward 127.0.0.1:{frames} (tcp): in use"
        )) && stderr.contains("set RICOCHET_FRAMES_PORT to a free port"),
        "{stderr}"
    );
}

/// xtask stops a run by sending TERM to its process group (`timeout`,
/// the runner, QEMU, defmt-print, tee), and `timeout` passes a TERM of its
/// own on to the group: the runner must still finish its cleanup and
/// leave no temporary file behind, run after run.
#[test]
fn stopping_the_process_group_leaves_no_temporary_file() {
    let tmp =
        std::env::temp_dir().join(format!("ricochet-qemu-run-test-{}-tmp", std::process::id()));
    std::fs::create_dir_all(&tmp).expect("temp dir");
    let elf = tmp.join("empty.elf");
    for run in 0..3 {
        std::fs::write(&elf, b"").expect("write the empty ELF");
        let port = free_forwarded_ports();
        let mut child = Command::new("timeout")
            .args(["-k", "5", "60"])
            .arg(runner())
            .args(["lm3s6965evb", "stellaris"])
            .arg(&elf)
            .arg("-S")
            .env("TMPDIR", &tmp)
            .env("RICOCHET_PORT", port.to_string())
            .env_remove("RICOCHET_NETDEV")
            .env_remove("RICOCHET_LINES_PORT")
            .env_remove("RICOCHET_FRAMES_PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .expect("start qemu-run.sh");
        // QEMU is up once its forwarder accepts on the raw port.
        let deadline = Instant::now() + LIMIT;
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline && child.try_wait().unwrap().is_none(),
                "run {run}: QEMU never forwarded 127.0.0.1:{port}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        let group = format!("-{}", child.id());
        let status = Command::new("kill")
            .args(["-TERM", "--", &group])
            .status()
            .expect("kill");
        assert!(status.success());
        // More TERMs while the runner cleans up (as a busy machine delays
        // `timeout`'s relay): a handler run again inside the cleanup once
        // cut it short and left the file behind.
        for _ in 0..5 {
            let _ = Command::new("kill")
                .args(["-TERM", "--", &group])
                .stderr(Stdio::null())
                .status();
        }
        let status = wait_bounded(&mut child);
        assert_eq!(status.code(), Some(143), "run {run}: {status}");
        let left: Vec<_> = std::fs::read_dir(&tmp)
            .expect("read temp dir")
            .filter_map(|e| e.ok().map(|e| e.file_name()))
            .filter(|n| n != "empty.elf")
            .collect();
        assert!(left.is_empty(), "run {run}: left behind {left:?}");
    }
    let _ = std::fs::remove_dir_all(&tmp);
}
