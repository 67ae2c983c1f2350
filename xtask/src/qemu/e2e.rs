//! The CI `qemu` stage's end-to-end checks on one board: a verified echo,
//! the probe matrix over every mode, reconnects, UDP (an oversize datagram
//! dropped and counted), and a short soak.

use std::io::{BufRead, BufReader};
use std::net::UdpSocket;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use super::probe::{
    count_before, every_mode_at_once, indent, probe, reconnect_storm, wait_until_echoing,
};
use super::soak::soak;
use super::{build_and_boot, no_panic_in};
use crate::vm::{Ports, QEMU_LIMIT_SECS, Qemu};
use crate::{Board, Ctx};

/// The CI stage for one board: boot, wait for a verified echo, run the
/// probe matrix, check the log.
pub(crate) fn end_to_end(ctx: &Ctx, board: &Board) -> Result<(), String> {
    let machine = board
        .qemu
        .as_ref()
        .ok_or_else(|| format!("{} does not run in QEMU", board.name))?;
    let (ricochet, ports, log, mut qemu) =
        build_and_boot(ctx, board, machine, "qemu", QEMU_LIMIT_SECS)?;
    let result = checks(&ricochet, &ports, &mut qemu);
    let text = qemu.log_text();
    drop(qemu);
    eprintln!(
        "--- firmware log (defmt, {}; removed if the check passes):",
        log.display()
    );
    for line in text.lines().take(400) {
        eprintln!("    {line}");
    }
    let result = result.and_then(|()| no_panic_in(&text));
    crate::vm::keep_log_if_failed(&result, &log);
    result
}

pub(crate) fn checks(ricochet: &Path, ports: &Ports, qemu: &mut Qemu) -> Result<(), String> {
    let port = ports.raw;
    let tcp = ports.tcp("raw");
    let udp = format!("udp://127.0.0.1:{port}");

    // 1. Up means a verified echo, not a bare connect (slirp accepts every
    //    connect even before the guest listens).
    let start = Instant::now();
    wait_until_echoing(ricochet, &tcp, qemu)?;
    eprintln!(
        "xtask: firmware echoes after {:.2}s",
        start.elapsed().as_secs_f64()
    );

    // 2. The matrix.
    let cases: &[(&str, &[&str])] = &[
        (
            "tcp ping-pong 32 B x 2000",
            &["--pattern", "pingpong", "--size", "32", "--count", "2000"],
        ),
        (
            "tcp stream 1 MiB",
            &["--pattern", "stream", "--size", "1024", "--count", "1024"],
        ),
        (
            "tcp random sizes",
            &["--pattern", "stream", "--size", "1-3000", "--count", "300"],
        ),
    ];
    for (name, args) in cases {
        let mut all = vec![tcp.as_str()];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--timeout", "5s"]);
        let out = probe(ricochet, &all).map_err(|e| format!("{name}: {e}"))?;
        eprintln!("xtask: ok: {name}\n{}", indent(&out));
    }
    // Every mode on its own port: the probe frames and verifies each.
    for (mode, size) in [("lines", "1-1000"), ("frames", "2-1000")] {
        let url = ports.tcp(mode);
        let out = probe(
            ricochet,
            &[
                &url,
                "--mode",
                mode,
                "--pattern",
                "stream",
                "--size",
                size,
                "--count",
                "300",
                "--timeout",
                "5s",
            ],
        )
        .map_err(|e| format!("tcp {mode}: {e}"))?;
        eprintln!("xtask: ok: tcp {mode} on {url}\n{}", indent(&out));
    }
    // The whole pool at once: two raw connections beside one of each other
    // mode (a busy port yields its spare sockets to idle ones, so four on
    // one port is not promised).
    every_mode_at_once(ricochet, ports, "200")?;
    eprintln!("xtask: ok: 4 simultaneous connections (2 raw, 1 lines, 1 frames)");
    // Two clients on one mode's port while the others idle, and one client
    // reconnecting at once after each close: a port keeps a listener while
    // free sockets cover every port, even while its last connection closes.
    let (lines, frames) = (ports.tcp("lines"), ports.tcp("frames"));
    let runs: [(&str, &[&str]); 2] = [
        (
            "2 frames clients at once",
            &[&frames, "-m", "frames", "-c", "2", "--count", "100"],
        ),
        (
            "100 back-to-back lines reconnects",
            &[&lines, "-m", "lines", "-p", "crr", "--count", "100"],
        ),
    ];
    for (name, args) in runs {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--timeout", "5s"]);
        let out = probe(ricochet, &all).map_err(|e| format!("{name}: {e}"))?;
        eprintln!("xtask: ok: {name}\n{}", indent(&out));
    }

    // 3. 200 back-to-back reconnects, each verified.
    let took = reconnect_storm(ricochet, &tcp, 200)?;
    eprintln!(
        "xtask: ok: 200 back-to-back reconnects in {:.1}s",
        took.as_secs_f64()
    );

    // 4. UDP: verified datagrams, then an oversize one that must be dropped.
    //    Paced under the firmware's per-source rate limit (1000/s, burst 100):
    //    through slirp every datagram comes from 10.0.2.2, one source.
    let out = probe(
        ricochet,
        &[
            &udp,
            "--size",
            "12-1400",
            "--count",
            "500",
            "--rate",
            "500",
            "--timeout",
            "1s",
        ],
    )
    .map_err(|e| format!("udp: {e}"))?;
    eprintln!("xtask: ok: udp 500 datagrams\n{}", indent(&out));
    oversize_datagram_is_dropped(port, qemu)?;

    // 5. A bounded soak: reconnects, then mixed concurrent load, then no leak.
    soak(ricochet, ports, qemu, 500, Duration::from_secs(20))
}

fn oversize_datagram_is_dropped(port: u16, qemu: &Qemu) -> Result<(), String> {
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .map_err(|e| e.to_string())?;
    let big = vec![0x5a; 1472];
    let mut buf = [0u8; 2048];
    for _ in 0..3 {
        sock.send_to(&big, ("127.0.0.1", port))
            .map_err(|e| e.to_string())?;
        if let Ok((n, _)) = sock.recv_from(&mut buf) {
            return Err(format!(
                "an oversize datagram (1472 bytes) was answered with {n} bytes"
            ));
        }
    }
    // The firmware counts each drop by reason and logs the counters every
    // 10 s ("udp: ... dropped N oversize, ..."): wait for a line with N > 0.
    let deadline = Instant::now() + Duration::from_secs(25);
    loop {
        let text = qemu.log_text();
        if let Some(n) = BufReader::new(text.as_bytes())
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| count_before(&l, " oversize"))
            .max()
            && n >= 1
        {
            eprintln!("xtask: ok: oversize datagrams dropped and counted by the firmware ({n})");
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err("the firmware's stats never counted an oversize drop".into());
        }
        thread::sleep(Duration::from_millis(250));
    }
}
