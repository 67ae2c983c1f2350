//! Helpers shared by the probe and interop tests: bounded child processes,
//! free ports, in-test echo servers (good and deliberately faulty), our own
//! server, and socat/nc/python3 peers.
#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::io::Read;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ricochet::core::Mode;
use ricochet::serve::{Server, ServerConfig, ServerHandle};

#[path = "../listening/mod.rs"]
mod listening;
#[allow(unused_imports)] // not every test file uses them
pub use listening::{tcp_listening, unix_listening};

mod accepting;
mod faulty_tcp;
mod faulty_udp;
mod shaped;
#[allow(unused_imports)] // not every test file uses them
pub use faulty_tcp::{Fault, FaultyServer};
#[allow(unused_imports)]
pub use faulty_udp::{FaultyUdp, UdpFault};
#[allow(unused_imports)]
pub use shaped::{Shape, ShapedServer};

/// Every test step is bounded by this.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(30);

/// The `ricochet` binary.
pub fn ricochet_bin() -> &'static str {
    env!("CARGO_BIN_EXE_ricochet")
}

/// Fails (never skips) when an external program is missing.
pub fn require(tool: &str) {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "`{tool}` is not installed; the interop tests need it: \
         apt-get install -y --no-install-recommends socat netcat-openbsd (python3 is expected too)"
    );
}

/// Runs a command to completion with a watchdog; kills it (by its own
/// `Child` handle) and panics if it takes longer than `limit`.
pub fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    run_bounded_with_input(cmd, Stdio::null(), limit)
}

/// [`run_bounded`] with `stdin` as the child's standard input.
pub fn run_bounded_with_input(cmd: &mut Command, stdin: Stdio, limit: Duration) -> Output {
    let child = cmd
        .stdin(stdin)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    wait_bounded(child, &format!("{cmd:?}"), limit)
}

/// Waits for `child` (spawned with piped stdout and stderr), killing it
/// after `limit`; `what` names it in the panic.
pub fn wait_bounded(mut child: Child, what: &str, limit: Duration) -> Output {
    // Drain the pipes on threads so a chatty child cannot block on a full pipe.
    let mut out = child.stdout.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v);
            v
        })
    });
    let mut err = child.stderr.take().map(|mut s| {
        std::thread::spawn(move || {
            let mut v = Vec::new();
            let _ = s.read_to_end(&mut v);
            v
        })
    });
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait") {
            break st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    let join = |h: Option<JoinHandle<Vec<u8>>>| {
        h.map(|h| h.join().unwrap_or_default()).unwrap_or_default()
    };
    Output {
        status,
        stdout: join(out.take()),
        stderr: join(err.take()),
    }
}

/// Runs `ricochet probe ARGS…`.
pub fn probe_cli(args: &[&str]) -> Output {
    run_bounded(
        Command::new(ricochet_bin()).arg("probe").args(args),
        STEP_TIMEOUT,
    )
}

/// Exit code, stdout and stderr as text, for assertions.
pub fn texts(o: &Output) -> (i32, String, String) {
    (
        o.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

/// The single JSON line of `--json` output, parsed.
pub fn json_of(o: &Output) -> serde_json::Value {
    let (_, out, err) = texts(o);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines.len(),
        1,
        "expected exactly one JSON line, got stdout {out:?} stderr {err:?}"
    );
    serde_json::from_str(lines[0]).unwrap_or_else(|e| panic!("bad JSON {:?}: {e}", lines[0]))
}

/// A TCP port that was free a moment ago on 127.0.0.1.
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A UDP port that was free a moment ago on 127.0.0.1.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// A child process killed (by its handle) when dropped.
pub struct Peer {
    pub child: Child,
    pub what: String,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits until `ready()` or panics after `STEP_TIMEOUT` (polling every 5 ms).
pub fn wait_until(what: &str, mut ready: impl FnMut() -> bool) {
    let start = Instant::now();
    while !ready() {
        assert!(
            start.elapsed() < STEP_TIMEOUT,
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn spawn_peer(cmd: &mut Command, what: String) -> Peer {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {what}: {e}"));
    Peer { child, what }
}

fn udp_port_taken(port: u16) -> bool {
    UdpSocket::bind(("127.0.0.1", port)).is_err()
}

/// Starts socat as a TCP echo server (as the bench does); retries on a port race.
pub fn socat_tcp_echo() -> (Peer, SocketAddr) {
    require("socat");
    for _ in 0..5 {
        let port = free_tcp_port();
        let mut peer = spawn_peer(
            Command::new("socat")
                .arg(format!(
                    "TCP-LISTEN:{port},fork,reuseaddr,bind=127.0.0.1,backlog=128"
                ))
                .arg("EXEC:cat"),
            format!("socat tcp echo on {port}"),
        );
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = peer.child.try_wait() {
                break; // exited: the port was taken meanwhile, try another
            }
            if tcp_listening(port) {
                return (peer, SocketAddr::from(([127, 0, 0, 1], port)));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = peer.child.kill();
    }
    panic!("socat did not start listening");
}

/// Starts socat as a UDP echo server (one `cat` per datagram: slow but exact).
pub fn socat_udp_echo() -> (Peer, SocketAddr) {
    require("socat");
    for _ in 0..5 {
        let port = free_udp_port();
        let mut peer = spawn_peer(
            Command::new("socat")
                .arg(format!("UDP-RECVFROM:{port},fork,bind=127.0.0.1"))
                .arg("EXEC:cat"),
            format!("socat udp echo on {port}"),
        );
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(5) {
            if let Ok(Some(_)) = peer.child.try_wait() {
                break;
            }
            if udp_port_taken(port) {
                return (peer, SocketAddr::from(([127, 0, 0, 1], port)));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let _ = peer.child.kill();
    }
    panic!("socat did not bind its UDP port");
}

/// Starts socat as a Unix stream echo server at `path`.
pub fn socat_unix_echo(path: &Path) -> Peer {
    require("socat");
    let peer = spawn_peer(
        Command::new("socat")
            .arg(format!("UNIX-LISTEN:{},fork", path.display()))
            .arg("EXEC:cat"),
        format!("socat unix echo at {}", path.display()),
    );
    wait_until("socat's unix socket listening", || unix_listening(path));
    peer
}

/// Our server (library), on loopback TCP (v4 and v6), UDP and a Unix socket.
pub struct OurServer {
    pub handle: Option<ServerHandle>,
    pub tcp: SocketAddr,
    pub tcp6: Option<SocketAddr>,
    pub udp: SocketAddr,
    pub unix: PathBuf,
    _dir: tempfile::TempDir,
}

impl OurServer {
    pub fn start(mode: Mode) -> OurServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let unix = dir.path().join("echo.sock");
        let v6 = TcpListener::bind("[::1]:0").is_ok();
        let mut tcp = vec!["127.0.0.1:0".parse().unwrap()];
        if v6 {
            tcp.push("[::1]:0".parse().unwrap());
        }
        let config = ServerConfig {
            tcp,
            udp: vec!["127.0.0.1:0".parse().unwrap()],
            unix: vec![unix.clone()],
            mode,
            // The probe sends thousands of datagrams per second from one address.
            udp_rate: None,
            threads: 2,
            ..ServerConfig::default()
        };
        let io = match std::env::var("RICOCHET_IO") {
            Ok(v) => v.parse().unwrap_or_else(|e| panic!("RICOCHET_IO: {e}")),
            Err(_) => ricochet::serve::IoBackend::Auto,
        };
        let server = Server::bind(ServerConfig { io, ..config }).expect("bind our server");
        let handle = server.spawn().expect("spawn our server");
        if io != ricochet::serve::IoBackend::Auto {
            assert_eq!(handle.io(), io, "our server runs another I/O backend");
        }
        let tcp_addrs: Vec<SocketAddr> = handle
            .local_addrs()
            .iter()
            .filter_map(|e| match e {
                ricochet::serve::Endpoint::Tcp(a) => Some(*a),
                _ => None,
            })
            .collect();
        let tcp = *tcp_addrs
            .iter()
            .find(|a| a.is_ipv4())
            .expect("tcp v4 address");
        let tcp6 = tcp_addrs.iter().find(|a| a.is_ipv6()).copied();
        let udp = handle.udp_addr().expect("udp address");
        OurServer {
            handle: Some(handle),
            tcp,
            tcp6,
            udp,
            unix,
            _dir: dir,
        }
    }
}

impl Drop for OurServer {
    fn drop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
            // Bounded: a server that does not stop fails the test instead
            // of hanging it (unless the test is failing already).
            if let Err(e) = h.join_within(std::time::Duration::from_secs(60))
                && !std::thread::panicking()
            {
                panic!("our server: {e}");
            }
        }
    }
}

/// Open file descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .map(|d| d.count())
        .expect("read /proc/self/fd")
}

/// `ricochet serve ARGS` as a child process (logs at warn, stdout piped),
/// named `what` in failures, with its standard output. Killed (by its
/// handle) when dropped.
fn spawn_serve(args: &[&OsStr], what: &str) -> (Peer, std::process::ChildStdout) {
    let mut child = Command::new(ricochet_bin())
        .arg("serve")
        .args(args)
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn ricochet serve");
    let stdout = child.stdout.take().expect("stdout");
    let peer = Peer {
        child,
        what: what.into(),
    };
    (peer, stdout)
}

/// `ricochet serve --unix PATH EXTRA...` as a child process, once it listens.
pub fn serve_unix_child(path: &std::path::Path, extra: &[&str]) -> Peer {
    use std::io::BufRead;
    let mut args: Vec<&OsStr> = extra.iter().map(OsStr::new).collect();
    args.extend([OsStr::new("--unix"), path.as_os_str()]);
    let (peer, stdout) = spawn_serve(&args, "ricochet serve --unix");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if line.starts_with("listening unix ") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(STEP_TIMEOUT)
        .expect("ricochet serve listens on its Unix socket");
    peer
}

/// `ricochet serve` as a child process on 127.0.0.1:0 (TCP and UDP); the
/// addresses it printed. Killed (by its handle) when dropped.
pub fn serve_child(extra: &[&str]) -> (Peer, SocketAddr, SocketAddr) {
    use std::io::BufRead;
    let mut args: Vec<&OsStr> = ["--tcp", "127.0.0.1:0", "--udp", "127.0.0.1:0"]
        .into_iter()
        .map(OsStr::new)
        .collect();
    args.extend(extra.iter().map(OsStr::new));
    let (peer, stdout) = spawn_serve(&args, "ricochet serve");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stdout).lines();
        let (mut tcp, mut udp) = (None, None);
        while let Some(Ok(l)) = lines.next() {
            let mut w = l.split_whitespace();
            match (w.next(), w.next(), w.next().and_then(|a| a.parse().ok())) {
                (Some("listening"), Some("tcp"), Some(a)) => tcp = Some(a),
                (Some("listening"), Some("udp"), Some(a)) => udp = Some(a),
                _ => {}
            }
            if let (Some(t), Some(u)) = (tcp, udp) {
                let _ = tx.send((t, u));
                tcp = None;
            }
        }
    });
    let (tcp, udp) = rx
        .recv_timeout(STEP_TIMEOUT)
        .expect("ricochet serve printed its addresses");
    (peer, tcp, udp)
}
