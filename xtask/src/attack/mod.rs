//! `cargo xtask attack`: hostile peers against `ricochet serve`, on loopback
//! only, each bounded in count and time.
//!
//! Each scenario starts a fresh server, measures the p99 round trip of one
//! well-behaved `ricochet probe` connection before the attack and again
//! during it, and checks that every byte the probe sent came back. The
//! attackers are plain std sockets in threads of this process; they stop by
//! themselves. The server is a child process killed by its PID.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::{Ctx, run};

use harness::{
    BUSY_POLL, IO, Row, Server, during, good_client, json_number, note_recovery, probe, row,
    rss_kb, target,
};

mod harness;
mod stall;

/// The scenarios' short names, in order (`--only` picks by substring).
const SCENARIOS: &[&str] = &[
    "slowloris",
    "flood",
    "fd",
    "rst",
    "udp-flood",
    "udp-guard",
    "frames",
    "stall",
];

const USAGE: &str =
    "usage: cargo xtask attack [--quick] [--io auto|uring|epoll] [--only NAME] [--busy-poll DUR]";

/// `attack`'s options, checked before anything is built.
#[derive(Debug, PartialEq)]
struct Options {
    quick: bool,
    io: String,
    only: Option<String>,
    busy_poll: Option<String>,
}

fn options(args: &[String]) -> Result<Options, String> {
    let mut o = Options {
        quick: false,
        io: "auto".to_owned(),
        only: None,
        busy_poll: None,
    };
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => o.quick = true,
            "--io" => {
                o.io = it
                    .next()
                    .filter(|v| ["auto", "uring", "epoll"].contains(&v.as_str()))
                    .ok_or_else(|| format!("--io needs auto, uring or epoll; {USAGE}"))?
                    .clone();
            }
            "--only" => {
                let name = it
                    .next()
                    .ok_or_else(|| format!("--only needs a name; {USAGE}"))?;
                if name.is_empty() || !SCENARIOS.iter().any(|s| s.contains(name.as_str())) {
                    return Err(format!(
                        "--only {name:?} names no scenario; scenarios: {}",
                        SCENARIOS.join(", ")
                    ));
                }
                o.only = Some(name.clone());
            }
            "--busy-poll" => {
                let v = it.next().ok_or_else(|| {
                    format!("--busy-poll needs a duration (0 turns it off); {USAGE}")
                })?;
                o.busy_poll = Some(v.clone());
            }
            other => return Err(format!("unknown option {other:?}; {USAGE}")),
        }
    }
    Ok(o)
}

pub(crate) fn attack(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    let Options {
        quick,
        io,
        only,
        busy_poll,
    } = options(args)?;
    if let Some(v) = busy_poll {
        let _ = BUSY_POLL.set(v);
    }
    let _ = IO.set(io.clone());
    eprintln!("xtask attack: ricochet serve --io {io}");
    run(
        &ctx.root,
        &crate::cargo(),
        &["build", "--release", "--locked", "-p", "ricochet"],
        &[],
    )?;
    let bin: PathBuf = crate::ricochet_release(ctx);
    let scale = if quick { 4 } else { 1 };
    type Scenario<'a> = (&'static str, Box<dyn Fn() -> Result<Row, String> + 'a>);
    let b = &bin;
    let scenarios: Vec<Scenario<'_>> = vec![
        ("slowloris", Box::new(move || slowloris(b, 2000 / scale))),
        ("flood", Box::new(move || connection_flood(b, 2000 / scale))),
        ("fd", Box::new(move || fd_exhaustion(b, 1000 / scale))),
        ("rst", Box::new(move || rst_storm(b, 5000 / scale))),
        ("udp-flood", Box::new(move || udp_flood(b))),
        (
            "udp-guard",
            Box::new(move || udp_reflectors_and_oversize(b)),
        ),
        ("frames", Box::new(move || bad_frames(b, 200 / scale))),
        (
            "stall",
            Box::new(move || stall::stalled_readers(b, 123, 1_500_000, 32 * 1024)),
        ),
    ];
    debug_assert!(
        scenarios
            .iter()
            .map(|(n, _)| *n)
            .eq(SCENARIOS.iter().copied())
    );
    // `--only NAME`: the scenarios whose short name contains NAME.
    let mut rows = Vec::new();
    for (name, scenario) in &scenarios {
        if only.as_deref().is_none_or(|o| name.contains(o)) {
            rows.push(scenario()?);
        }
    }

    outln!(
        "| attack | what | p99 before (us) | p99 during (us) | ratio | probe bytes verified during | failures | server outcome |"
    );
    outln!("|---|---|---|---|---|---|---|---|");
    let mut failed = false;
    for r in &rows {
        let ratio = r.during_p99_us as f64 / r.before_p99_us.max(1) as f64;
        outln!(
            "| {} | {} | {} | {} | {:.2}x | {} | {} | {} |",
            r.name,
            r.attack,
            r.before_p99_us,
            r.during_p99_us,
            ratio,
            r.verified,
            r.failures,
            r.outcome
        );
        failed |= r.failures > 0;
    }
    if failed {
        Err("an attack scenario failed: a well-behaved probe failed, or the server broke a promise (see the failures column)".into())
    } else {
        Ok(())
    }
}

fn slowloris(bin: &Path, n: usize) -> Result<Row, String> {
    let server = Server::start(bin, &["--tcp", "127.0.0.1:0", "--idle-timeout", "1s"], None)?;
    let t = target(&server);
    let before = good_client(bin, &t, 2, "raw")?;
    let addr = server.tcp;
    let closed = Arc::new(AtomicU64::new(0));
    let c2 = closed.clone();
    let (run, _) = during(bin, &t, "raw", move |stop| {
        let mut conns: Vec<TcpStream> = (0..n)
            .filter_map(|_| TcpStream::connect(addr).ok())
            .collect();
        let opened = conns.len();
        let start = Instant::now();
        // A byte every 1.5 s per connection (slower than the 1 s idle timeout), never reading.
        while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(12) {
            conns.retain_mut(|c| {
                let alive = c.write_all(b"x").is_ok();
                if !alive {
                    c2.fetch_add(1, Ordering::SeqCst);
                }
                alive
            });
            thread::sleep(Duration::from_millis(1500));
        }
        // The attack is over: now read, to see which ones the server closed.
        for c in &mut conns {
            let _ = c.set_nonblocking(true);
            let mut b = [0u8; 4096];
            loop {
                match c.read(&mut b) {
                    Ok(0) => {
                        c2.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                    Ok(_) => continue,
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(_) => {
                        c2.fetch_add(1, Ordering::SeqCst);
                        break;
                    }
                }
            }
        }
        format!("{opened} connections, 1 byte / 1.5 s each, never reading")
    })?;
    let rss = rss_kb(server.child.id());
    let closed = closed.load(Ordering::SeqCst);
    Ok(row(
        "slowloris",
        &before,
        &run,
        format!("{n} conns, 1 byte/1.5 s, never read"),
        format!("{closed} closed by idle timeout (1 s); server RSS {rss} KiB"),
    ))
}

fn connection_flood(bin: &Path, n: usize) -> Result<Row, String> {
    let server = Server::start(
        bin,
        &["--tcp", "127.0.0.1:0", "--max-connections", "200"],
        None,
    )?;
    let t = target(&server);
    let before = good_client(bin, &t, 2, "raw")?;
    let addr = server.tcp;
    let (run, summary) = during(bin, &t, "raw", move |stop| {
        let mut held = Vec::new();
        let mut refused = 0u64;
        let start = Instant::now();
        while !stop.load(Ordering::SeqCst)
            && start.elapsed() < Duration::from_secs(10)
            && held.len() < n
        {
            match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Ok(c) => held.push(c),
                Err(_) => refused += 1,
            }
        }
        // How many of them did the server keep? Those beyond the limit are closed at once.
        let mut served = 0;
        for c in &mut held {
            let _ = c.set_read_timeout(Some(Duration::from_millis(20)));
            let mut b = [0u8; 1];
            if c.write_all(b"y").is_ok() && matches!(c.read(&mut b), Ok(1)) {
                served += 1;
            }
        }
        format!(
            "{} connects ({refused} failed), {served} served",
            held.len()
        )
    })?;
    let after = good_client(bin, &t, 1, "raw")?;
    let mut r = row(
        "connection flood",
        &before,
        &run,
        format!("{n} connects vs --max-connections 200"),
        summary,
    );
    note_recovery(&mut r, &after, "new client after the flood");
    Ok(r)
}

fn fd_exhaustion(bin: &Path, n: usize) -> Result<Row, String> {
    let server = Server::start(bin, &["--tcp", "127.0.0.1:0", "--threads", "1"], Some(128))?;
    let t = target(&server);
    let before = good_client(bin, &t, 2, "raw")?;
    let addr = server.tcp;
    let (run, summary) = during(bin, &t, "raw", move |stop| {
        let mut held = Vec::new();
        let start = Instant::now();
        while !stop.load(Ordering::SeqCst)
            && start.elapsed() < Duration::from_secs(10)
            && held.len() < n
        {
            if let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                held.push(c);
            }
        }
        while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(50));
        }
        format!("{} connections held (server fd limit 128)", held.len())
    })?;
    let after = good_client(bin, &t, 1, "raw")?;
    let mut r = row(
        "fd exhaustion",
        &before,
        &run,
        format!("{n} conns vs ulimit -n 128"),
        summary,
    );
    note_recovery(&mut r, &after, "recovers after");
    Ok(r)
}

fn rst_storm(bin: &Path, n: usize) -> Result<Row, String> {
    let server = Server::start(bin, &["--tcp", "127.0.0.1:0"], None)?;
    let t = target(&server);
    let before = good_client(bin, &t, 2, "raw")?;
    let addr = server.tcp;
    let (run, summary) = during(bin, &t, "raw", move |stop| {
        let mut done = 0;
        let start = Instant::now();
        while !stop.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(10) && done < n
        {
            if let Ok(mut c) = TcpStream::connect(addr) {
                let _ = c.write_all(&[0xAB; 2048]);
                thread::sleep(Duration::from_micros(200));
                // Closing with the echo unread makes the kernel send RST.
                drop(c);
                done += 1;
            }
        }
        format!("{done} connections sent 2 KiB and reset")
    })?;
    Ok(row(
        "RST storm",
        &before,
        &run,
        format!("{n} send-then-RST connections"),
        summary,
    ))
}

fn udp_flood(bin: &Path) -> Result<Row, String> {
    let server = Server::start(
        bin,
        &[
            "--tcp",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
            "--udp-rate-loopback",
        ],
        None,
    )?;
    let udp = server.udp.ok_or("no udp address")?;
    let t = format!("udp://{udp}");
    let before = probe(
        bin,
        &t,
        &[
            "--count",
            "500",
            "--size",
            "64",
            "--rate",
            "250",
            "--timeout",
            "1s",
        ],
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = stop.clone();
    let flood = thread::spawn(move || -> (u64, u64) {
        let sock = UdpSocket::bind("127.0.0.2:0")
            .or_else(|_| UdpSocket::bind("127.0.0.1:0"))
            .expect("bind");
        let _ = sock.set_nonblocking(true);
        let (mut sent, mut answered) = (0u64, 0u64);
        let mut buf = [0u8; 2048];
        let start = Instant::now();
        while !s2.load(Ordering::SeqCst) && start.elapsed() < Duration::from_secs(10) {
            if sock.send_to(&[0x42; 64], udp).is_ok() {
                sent += 1;
            }
            while sock.recv_from(&mut buf).is_ok() {
                answered += 1;
            }
        }
        thread::sleep(Duration::from_millis(100));
        while sock.recv_from(&mut buf).is_ok() {
            answered += 1;
        }
        (sent, answered)
    });
    thread::sleep(Duration::from_millis(300));
    // UDP has no backpressure: a flood fills the kernel's socket queue and the
    // kernel drops whatever arrives then, the good client's datagrams too.
    // Loss is allowed (and reported) here; corruption never is.
    let run = probe(
        bin,
        &t,
        &[
            "--count",
            "500",
            "--size",
            "64",
            "--rate",
            "250",
            "--timeout",
            "1s",
            "--max-loss",
            "10",
        ],
    )?;
    let lost = run
        .json
        .find("\"datagrams\"")
        .and_then(|i| json_number(&run.json[i..], "lost"))
        .unwrap_or(0);
    let corrupt = run
        .json
        .find("\"datagrams\"")
        .and_then(|i| json_number(&run.json[i..], "corrupt"))
        .unwrap_or(0);
    stop.store(true, Ordering::SeqCst);
    let (sent, answered) = flood.join().map_err(|_| "flood thread panicked")?;
    let mut r = row(
        "UDP flood (one source)",
        &before,
        &run,
        "one source, 64-byte datagrams, as fast as possible".into(),
        format!(
            "{sent} sent, {answered} answered (rate limit 1000/s, burst 100); good client lost {lost}/500 in the kernel queue, corrupt {corrupt}"
        ),
    );
    r.failures += corrupt;
    if answered > 100 + 1000 * 12 {
        r.failures += 1;
        r.outcome += " RATE LIMIT NOT HELD";
    }
    Ok(r)
}

fn udp_reflectors_and_oversize(bin: &Path) -> Result<Row, String> {
    let server = Server::start(bin, &["--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0"], None)?;
    let udp = server.udp.ok_or("no udp address")?;
    let t = format!("udp://{udp}");
    let before = probe(
        bin,
        &t,
        &["--count", "300", "--size", "64", "--timeout", "1s"],
    )?;
    let mut answered = Vec::new();
    for port in [7u16, 19] {
        let sock = UdpSocket::bind(("127.0.0.1", port))
            .map_err(|e| format!("bind source port {port} (needs root): {e}"))?;
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .map_err(|e| e.to_string())?;
        sock.send_to(b"are you an echo server?", udp)
            .map_err(|e| e.to_string())?;
        let mut b = [0u8; 64];
        answered.push((port, sock.recv_from(&mut b).is_ok()));
    }
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    sock.set_read_timeout(Some(Duration::from_millis(300)))
        .map_err(|e| e.to_string())?;
    sock.send_to(&[0u8; 4000], udp).map_err(|e| e.to_string())?;
    let mut b = [0u8; 8192];
    let oversize_answered = sock.recv_from(&mut b).is_ok();
    let run = probe(
        bin,
        &t,
        &["--count", "300", "--size", "64", "--timeout", "1s"],
    )?;
    let mut r = row(
        "UDP loop guard + oversize",
        &before,
        &run,
        "datagrams from ports 7 and 19; a 4000-byte datagram".into(),
        format!(
            "answered: port7={} port19={} oversize={}",
            answered[0].1, answered[1].1, oversize_answered
        ),
    );
    r.failures += answered.iter().filter(|(_, a)| *a).count() as u64 + u64::from(oversize_answered);
    Ok(r)
}

fn bad_frames(bin: &Path, n: usize) -> Result<Row, String> {
    let server = Server::start(bin, &["--tcp", "127.0.0.1:0", "--mode", "frames"], None)?;
    let t = target(&server);
    let before = good_client(bin, &t, 2, "frames")?;
    let addr = server.tcp;
    let (run, summary) = during(bin, &t, "frames", move |stop| {
        let (mut reset, mut sent) = (0, 0);
        for i in 0..n {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            if let Ok(mut c) = TcpStream::connect(addr) {
                let _ = c.set_read_timeout(Some(Duration::from_secs(2)));
                // Alternate: a header announcing 65535 bytes, and a frame cut off by FIN.
                let bad: &[u8] = if i % 2 == 0 {
                    b"\xff\xff\x00\x01"
                } else {
                    b"\x00\x10abc"
                };
                let _ = c.write_all(bad);
                if i % 2 == 1 {
                    let _ = c.shutdown(Shutdown::Write);
                }
                sent += 1;
                let mut b = [0u8; 16];
                if c.read(&mut b).map(|k| k == 0).unwrap_or(true) {
                    reset += 1;
                }
            }
        }
        format!("{sent} bad sessions, {reset} closed by the server with nothing echoed")
    })?;
    Ok(row(
        "bad frames (frames mode)",
        &before,
        &run,
        format!("{n} oversized / truncated frames"),
        summary,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strings;

    #[test]
    fn options_are_checked_before_building() {
        let o = options(&strings(&[
            "--quick",
            "--io",
            "epoll",
            "--only",
            "udp",
            "--busy-poll",
            "50us",
        ]))
        .unwrap();
        assert!(o.quick);
        assert_eq!(o.io, "epoll");
        assert_eq!(o.only.as_deref(), Some("udp"));
        assert_eq!(o.busy_poll.as_deref(), Some("50us"));
        assert_eq!(options(&[]).unwrap().io, "auto");
        let e = options(&strings(&["--only", "nosuch"])).unwrap_err();
        assert!(e.contains("slowloris") && e.contains("stall"), "{e}");
        assert!(options(&strings(&["--only", ""])).is_err());
        assert!(options(&strings(&["--io", "kqueue"])).is_err());
        assert!(options(&strings(&["--only"])).is_err());
        assert!(
            options(&strings(&["--bogus"]))
                .unwrap_err()
                .contains("usage")
        );
        // The duration itself is ricochet serve's to check (it refuses a
        // bad one at start, naming the fix): one parser, not two.
        assert!(options(&strings(&["--busy-poll"])).is_err());
    }
}
