//! Shared helpers of the `serve_*` integration tests: servers on port 0,
//! bounded sockets, deterministic payloads, and a child-process guard.
//!
//! The I/O backend comes from `RICOCHET_IO` (`auto`, `uring`, `epoll`;
//! unset: auto): `cargo xtask ci test` runs these tests once per backend.
//! Library servers get it through [`start`] / [`with_io`]; `ricochet serve`
//! children read the same variable themselves (`--io`'s environment).
#![allow(dead_code, unreachable_pub)]

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ricochet::serve::{IoBackend, Server, ServerConfig, ServerHandle, StatsSnapshot};

/// Upper bound for any single blocking socket operation in these tests.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// Upper bound for a server's workers to exit once it was shut down or
/// aborted (`ServerHandle::join_within`): a worker that never stops fails
/// the test instead of hanging it. Longer than any test's grace period.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(60);

/// How many worker threads (`ricochet-wN`) process `pid` runs, from /proc,
/// once there are at least `expected` (a thread names itself once it runs:
/// an epoll worker may not have yet when the `serving` line is out), or
/// after [`IO_TIMEOUT`].
pub fn worker_threads(pid: u32, expected: usize) -> usize {
    let count = || {
        std::fs::read_dir(format!("/proc/{pid}/task"))
            .expect("the server's threads in /proc")
            .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
            .filter(|name| name.starts_with("ricochet-w"))
            .count()
    };
    let start = Instant::now();
    loop {
        let n = count();
        if n >= expected || start.elapsed() > IO_TIMEOUT {
            return n;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether this process runs as root (effective uid 0, from /proc).
pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// `net.core.rmem_max`: the largest socket receive buffer a process
/// without `CAP_NET_ADMIN` may ask for.
pub fn rmem_max() -> usize {
    std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .expect("read rmem_max")
        .trim()
        .parse()
        .expect("rmem_max")
}

/// A config with one TCP listener on 127.0.0.1:0 and two workers.
pub fn tcp_config() -> ServerConfig {
    ServerConfig {
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 2,
        ..ServerConfig::default()
    }
}

/// The backend these tests run on: `RICOCHET_IO`, or auto when unset.
pub fn io_backend() -> IoBackend {
    match std::env::var("RICOCHET_IO") {
        Ok(v) => v.parse().unwrap_or_else(|e| panic!("RICOCHET_IO: {e}")),
        Err(_) => IoBackend::Auto,
    }
}

/// `config` on the backend of [`io_backend`].
pub fn with_io(config: ServerConfig) -> ServerConfig {
    ServerConfig {
        io: io_backend(),
        ..config
    }
}

/// Panics unless `handle` runs the backend that was asked for (no silent fallback).
pub fn check_io(handle: &ServerHandle) {
    let asked = io_backend();
    if asked != IoBackend::Auto {
        assert_eq!(handle.io(), asked, "the server runs another I/O backend");
    }
}

/// Binds and spawns `config` on the backend of [`io_backend`].
pub fn start(config: ServerConfig) -> ServerHandle {
    let handle = Server::bind(with_io(config))
        .expect("bind")
        .spawn()
        .expect("spawn");
    check_io(&handle);
    handle
}

/// A TCP connection with read and write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Deterministic pseudo-random bytes (xorshift), different per seed, NULs included.
pub fn payload(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// Writes `data` and reads back exactly as many bytes; asserts they are equal.
pub fn round_trip(s: &mut (impl Read + Write), data: &[u8]) {
    s.write_all(data).expect("write");
    let mut back = vec![0; data.len()];
    s.read_exact(&mut back).expect("read echo");
    assert!(
        back == data,
        "echo differs from what was sent ({} bytes)",
        data.len()
    );
}

/// Asserts that nothing arrives within `wait` (the socket's read timeout is restored after).
pub fn assert_silent(s: &mut TcpStream, wait: Duration) {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(n) => panic!("expected no data, got {n} bytes: {:?}", &b[..n]),
        Err(e) => assert!(
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
            ),
            "expected a read timeout, got {e}"
        ),
    }
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
}

/// Reads until EOF (bounded by the socket's timeouts).
pub fn read_to_eof(s: &mut impl Read) -> io::Result<Vec<u8>> {
    let mut all = Vec::new();
    s.read_to_end(&mut all)?;
    Ok(all)
}

/// Polls `cond` on the server's stats until it holds or `timeout` passes.
pub fn wait_stats(
    handle: &ServerHandle,
    timeout: Duration,
    what: &str,
    cond: impl Fn(&StatsSnapshot) -> bool,
) -> StatsSnapshot {
    let deadline = Instant::now() + timeout;
    loop {
        let s = handle.stats();
        if cond(&s) {
            return s;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; stats: {s:#?}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Runs `cmd` to completion with captured output; kills it (by its handle)
/// and panics if it runs longer than `limit` (e.g. a server that should
/// have refused to start).
pub fn output_within(cmd: &mut Command, limit: Duration) -> std::process::Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + limit;
    while child.try_wait().expect("try_wait").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{cmd:?} still running after {limit:?}; stdout: {}",
                String::from_utf8_lossy(&out.stdout)
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.wait_with_output().expect("output")
}

/// A `ricochet` child process, killed (by its PID, through `Child::kill`) if still running on drop.
pub struct Proc {
    pub child: Child,
    pub stdout: mpsc::Receiver<String>,
    pub stderr: mpsc::Receiver<String>,
}

fn lines(r: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(r).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

impl Proc {
    /// Runs `cmd` with piped stdout/stderr.
    pub fn spawn(mut cmd: Command) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn ricochet");
        let stdout = lines(child.stdout.take().unwrap());
        let stderr = lines(child.stderr.take().unwrap());
        Proc {
            child,
            stdout,
            stderr,
        }
    }

    /// Runs `cmd` with the stdio it was given; piped stdout/stderr are read as by [`Proc::spawn`].
    pub fn spawn_with(mut cmd: Command) -> Proc {
        let mut child = cmd.spawn().expect("spawn ricochet");
        let empty = || mpsc::channel().1;
        let stdout = child.stdout.take().map_or_else(empty, lines);
        let stderr = child.stderr.take().map_or_else(empty, lines);
        Proc {
            child,
            stdout,
            stderr,
        }
    }

    /// `ricochet serve ARGS...`.
    pub fn serve(args: &[&str]) -> Proc {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
        cmd.arg("serve").args(args);
        Proc::spawn(cmd)
    }

    /// Collects the `listening KIND ADDR` start lines until `count` were seen.
    pub fn listening(&self, count: usize) -> Vec<(String, String)> {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut found = Vec::new();
        while found.len() < count {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .stdout
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no start line; stderr: {}", self.drain_stderr()));
            let mut parts = line.split_whitespace();
            if parts.next() == Some("listening") {
                let kind = parts.next().expect("kind").to_owned();
                let addr = parts.next().expect("address").to_owned();
                found.push((kind, addr));
            }
        }
        found
    }

    /// Waits for a stderr line containing `needle`; returns it.
    pub fn wait_stderr(&self, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) if line.contains(needle) => return line,
                Ok(_) => {}
                Err(_) => panic!("no stderr line containing {needle:?} within {timeout:?}"),
            }
        }
    }

    /// The stderr lines up to and including the first containing `needle`.
    pub fn stderr_until(&self, needle: &str, timeout: Duration) -> Vec<String> {
        let deadline = Instant::now() + timeout;
        let mut lines = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stderr.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    lines.push(line);
                    if found {
                        return lines;
                    }
                }
                Err(_) => panic!(
                    "no stderr line containing {needle:?} within {timeout:?}; got: {lines:#?}"
                ),
            }
        }
    }

    /// Everything on stderr so far.
    pub fn drain_stderr(&self) -> String {
        self.stderr.try_iter().collect::<Vec<_>>().join("\n")
    }

    /// The child's process id.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// Sends `signal` (e.g. "TERM") to the child, by PID, with kill(1).
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the child to exit, at most `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "ricochet did not exit within {timeout:?}; stderr: {}",
                self.drain_stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
