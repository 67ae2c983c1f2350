//! Helpers shared by the probe and interop tests: bounded child processes,
//! free ports, in-test echo servers (good and deliberately faulty), our own
//! server, and socat/nc/python3 peers.
#![allow(dead_code, unreachable_pub)]

use std::ffi::OsStr;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ricochet::core::Mode;
use ricochet::serve::{Server, ServerConfig, ServerHandle};

#[path = "../listening/mod.rs"]
mod listening;
#[allow(unused_imports)] // not every test file uses them
pub use listening::{tcp_listening, unix_listening};

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

/// How an in-test TCP server misbehaves.
#[derive(Clone, Copy, Debug)]
pub enum Fault {
    /// Echo correctly and close after the client's FIN.
    None,
    /// Echo, but flip (xor 0xff) the byte at this stream offset.
    FlipAt(u64),
    /// Echo this many bytes, then close.
    CloseAfter(u64),
    /// Read and never answer.
    Silent,
    /// Echo everything, but never close after the client's FIN.
    NoFin,
    /// Echo everything, and after the client's FIN send extra bytes.
    ExtraAfterFin,
    /// Send this greeting first (as SMTP or FTP servers do), then echo.
    Banner(&'static [u8]),
    /// Echo this many bytes, stall (read and echo nothing) for this long,
    /// then echo the rest: a server that stops answering for a while.
    StallAfter(u64, Duration),
    /// Echo nothing: half-close at once (FIN), drain what the peer sends,
    /// then close; always a clean close for the peer (a port forward with
    /// nothing behind it, as some end their connections).
    FinAtOnce,
    /// Echo nothing: close at once; if the peer's first message is already
    /// unread, the kernel resets the connection instead (a plain
    /// accept-and-close, as QEMU's `hostfwd` before the guest listens).
    CloseAtOnce,
    /// Echo nothing: wait for the peer's first bytes and close with them
    /// unread, so that the kernel always resets the connection (socat's
    /// `OPENSSL-LISTEN` given a non-TLS hello, a superserver that stopped
    /// the service). Unlike `CloseAtOnce`, never a clean close.
    ResetOnFirstBytes,
    /// Echo each read in two writes, its first byte then the rest, with
    /// Nagle's algorithm on (no `TCP_NODELAY`): the rest waits for the
    /// peer's ACK of the first byte.
    SplitWrites,
    /// Echo each read whole, this long after it came: a slow server.
    DelayEach(Duration),
    /// Echo every `\n` as `\r\n` (a server or relay translating line ends).
    Crlf,
    /// Echo each read as a server does that takes a partial send for none
    /// and sends its whole buffer again: the read's first half, then all
    /// of it (the first half twice).
    ResendAfterPartial,
    /// Echo each read as a server does that takes a partial send for all of
    /// it: the read's first half only, its second half lost.
    LoseRestAfterPartial,
    /// Echo in pieces of this many bytes, each ended with a line feed if
    /// it has none: a server that takes each read for a line.
    LineEndEach(usize),
    /// Accept and never read (nor answer, nor close) until the test ends:
    /// the peer's writes block once both sockets' buffers are full.
    NeverRead,
}

/// A thread-per-connection TCP echo server with a fault, on 127.0.0.1:0.
/// Stops accepting when dropped.
pub struct FaultyServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

impl FaultyServer {
    pub fn start(fault: Fault) -> FaultyServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let accepted2 = accepted.clone();
        let accept = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        accepted2.fetch_add(1, Ordering::SeqCst);
                        let stop3 = stop2.clone();
                        conns.push(std::thread::spawn(move || serve_faulty(s, fault, &stop3)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2))
                    }
                    Err(_) => break,
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        FaultyServer {
            addr,
            stop,
            accept: Some(accept),
            accepted,
        }
    }

    /// Waits (bounded) until `n` connections were accepted.
    pub fn wait_accepted(&self, n: usize) {
        wait_until("connections to the faulty server", || {
            self.accepted.load(Ordering::SeqCst) >= n
        });
    }
}

impl Drop for FaultyServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve_faulty(s: TcpStream, fault: Fault, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let _ = s.set_write_timeout(Some(STEP_TIMEOUT));
    match fault {
        Fault::Banner(greeting) if (&s).write_all(greeting).is_err() => return,
        Fault::CloseAtOnce => return,
        Fault::ResetOnFirstBytes => {
            let _ = s.set_read_timeout(Some(STEP_TIMEOUT));
            let _ = s.peek(&mut [0u8; 1]);
            return;
        }
        Fault::NeverRead => {
            let deadline = Instant::now() + STEP_TIMEOUT;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
            return;
        }
        Fault::FinAtOnce => {
            let _ = s.shutdown(Shutdown::Write);
            let _ = s.set_read_timeout(Some(STEP_TIMEOUT));
            let mut buf = [0u8; 4096];
            while matches!((&s).read(&mut buf), Ok(n) if n > 0) {}
            return;
        }
        _ => {}
    }
    let mut buf = vec![0u8; 16 * 1024];
    let mut offset: u64 = 0;
    let deadline = Instant::now() + STEP_TIMEOUT;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match (&s).read(&mut buf) {
            Ok(0) => {
                match fault {
                    Fault::NoFin => {
                        // Keep the connection open until the test ends.
                        while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                    }
                    Fault::ExtraAfterFin => {
                        let _ = (&s).write_all(b"surprise");
                    }
                    _ => {}
                }
                let _ = s.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                let chunk = &mut buf[..n];
                match fault {
                    // Silent reads and never answers; the others never get here.
                    Fault::Silent
                    | Fault::FinAtOnce
                    | Fault::CloseAtOnce
                    | Fault::ResetOnFirstBytes
                    | Fault::NeverRead => {}
                    Fault::FlipAt(at) => {
                        if at >= offset && at < offset + n as u64 {
                            chunk[(at - offset) as usize] ^= 0xff;
                        }
                        if (&s).write_all(chunk).is_err() {
                            return;
                        }
                    }
                    Fault::StallAfter(limit, stall) => {
                        let before = limit.saturating_sub(offset).min(n as u64) as usize;
                        if (&s).write_all(&chunk[..before]).is_err() {
                            return;
                        }
                        if before < n {
                            if offset <= limit {
                                std::thread::sleep(stall);
                            }
                            if (&s).write_all(&chunk[before..]).is_err() {
                                return;
                            }
                        }
                    }
                    Fault::CloseAfter(limit) => {
                        let keep = limit.saturating_sub(offset).min(n as u64) as usize;
                        let _ = (&s).write_all(&chunk[..keep]);
                        if offset + n as u64 >= limit {
                            let _ = s.shutdown(Shutdown::Both);
                            return;
                        }
                    }
                    Fault::SplitWrites => {
                        let (first, rest) = chunk.split_at(1);
                        if (&s).write_all(first).is_err() || (&s).write_all(rest).is_err() {
                            return;
                        }
                    }
                    Fault::Crlf => {
                        let mut out = Vec::with_capacity(chunk.len() * 2);
                        for &b in chunk.iter() {
                            if b == b'\n' {
                                out.push(b'\r');
                            }
                            out.push(b);
                        }
                        if (&s).write_all(&out).is_err() {
                            return;
                        }
                    }
                    Fault::ResendAfterPartial => {
                        let half = &chunk[..chunk.len() / 2];
                        if (&s).write_all(half).is_err() || (&s).write_all(chunk).is_err() {
                            return;
                        }
                    }
                    Fault::LoseRestAfterPartial => {
                        if (&s).write_all(&chunk[..chunk.len() / 2]).is_err() {
                            return;
                        }
                    }
                    Fault::LineEndEach(piece) => {
                        // One write, as `send(lines)`: the peer's reads
                        // then see each line end with what follows it.
                        let mut out = Vec::with_capacity(chunk.len() * 2);
                        for p in chunk.chunks(piece) {
                            out.extend_from_slice(p);
                            if !p.ends_with(b"\n") {
                                out.push(b'\n');
                            }
                        }
                        if (&s).write_all(&out).is_err() {
                            return;
                        }
                    }
                    Fault::DelayEach(delay) => {
                        std::thread::sleep(delay);
                        if (&s).write_all(chunk).is_err() {
                            return;
                        }
                    }
                    Fault::None | Fault::NoFin | Fault::ExtraAfterFin | Fault::Banner(_) => {
                        if (&s).write_all(chunk).is_err() {
                            return;
                        }
                    }
                }
                offset += n as u64;
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
        }
    }
}

/// How an in-test UDP echo server misbehaves.
#[derive(Clone, Copy, Debug)]
pub enum UdpFault {
    /// Drop every `n`-th datagram (1-based: the n-th, 2n-th…).
    DropEvery(u64),
    /// Flip one byte of every `n`-th datagram.
    CorruptEvery(u64),
    /// Echo only the first this many bytes of each datagram (a server
    /// whose receive buffer is that small: socat and ncat at 8192).
    TruncateTo(usize),
    /// Echo this many datagrams, then close the socket: later datagrams
    /// get an ICMP port unreachable (a server stopped mid-run).
    CloseAfter(u64),
    /// Echo every datagram from another socket (another port), which a
    /// client's connected socket never sees.
    FromOtherPort,
    /// Echo datagrams in swapped pairs: the 2nd before the 1st, the 4th
    /// before the 3rd… (an odd last one is never echoed).
    SwapPairs,
    /// Before echoing the `n`-th datagram, pause this long (a server that
    /// stops for a while, e.g. a collector's pause), losing nothing.
    PauseAt(u64, Duration),
    /// Hold the `n`-th datagram this long while echoing the later ones (a
    /// server thread that stalled on one), then echo it.
    HoldOne(u64, Duration),
    /// Echo every datagram with two bytes appended (a server that joins
    /// datagrams, as one relaying them through a byte stream does).
    Lengthen,
    /// Echo every datagram this many times (a server that answers each
    /// datagram more than once, or a network that duplicates them).
    EchoTimes(u32),
    /// Connect the socket to the first peer and serve only it: the other
    /// peers' datagrams get an ICMP port unreachable (socat's `UDP-LISTEN`
    /// without `fork`).
    FirstPeerOnly,
}

/// A UDP echo server with a fault on 127.0.0.1:0; stops when dropped.
pub struct FaultyUdp {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultyUdp {
    pub fn start(fault: UdpFault) -> FaultyUdp {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind udp");
        let addr = sock.local_addr().expect("addr");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("timeout");
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let other = UdpSocket::bind("127.0.0.1:0").expect("bind the other udp socket");
        let thread = std::thread::spawn(move || {
            let mut buf = vec![0u8; 65_536];
            let mut seen: u64 = 0;
            let mut held: Option<Vec<u8>> = None;
            let mut held_one: Option<(Vec<u8>, SocketAddr, Instant)> = None;
            let mut first: Option<SocketAddr> = None;
            while !stop2.load(Ordering::Relaxed) {
                if let Some((data, to, at)) = &held_one
                    && Instant::now() >= *at
                {
                    let _ = sock.send_to(data, *to);
                    held_one = None;
                }
                let Ok((mut n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                seen += 1;
                match fault {
                    UdpFault::DropEvery(k) if seen.is_multiple_of(k) => continue,
                    UdpFault::CorruptEvery(k) if seen.is_multiple_of(k) => buf[n - 1] ^= 0x5a,
                    UdpFault::TruncateTo(k) => n = n.min(k),
                    UdpFault::Lengthen => {
                        buf[n..n + 2].copy_from_slice(b"xy");
                        n += 2;
                    }
                    UdpFault::PauseAt(k, pause) if seen == k => std::thread::sleep(pause),
                    UdpFault::HoldOne(k, hold) if seen == k => {
                        let at = Instant::now() + hold;
                        held_one = Some((buf[..n].to_vec(), from, at));
                        continue;
                    }
                    UdpFault::FirstPeerOnly => {
                        // Queued before the connect: another peer's, dropped.
                        if seen == 1 {
                            sock.connect(from).expect("connect to the first peer");
                            first = Some(from);
                        }
                        if first == Some(from) {
                            let _ = sock.send(&buf[..n]);
                        }
                        continue;
                    }
                    UdpFault::FromOtherPort => {
                        let _ = other.send_to(&buf[..n], from);
                        continue;
                    }
                    UdpFault::EchoTimes(k) => {
                        for _ in 0..k {
                            let _ = sock.send_to(&buf[..n], from);
                        }
                        continue;
                    }
                    UdpFault::SwapPairs => {
                        match held.take() {
                            None => held = Some(buf[..n].to_vec()),
                            Some(first) => {
                                let _ = sock.send_to(&buf[..n], from);
                                let _ = sock.send_to(&first, from);
                            }
                        }
                        continue;
                    }
                    _ => {}
                }
                let _ = sock.send_to(&buf[..n], from);
                if matches!(fault, UdpFault::CloseAfter(k) if seen >= k) {
                    // Dropping the socket: the port is closed from now on.
                    break;
                }
            }
        });
        FaultyUdp {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for FaultyUdp {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

/// When a [`ShapedServer`] may echo.
#[derive(Clone, Copy, Debug)]
pub enum Shape {
    /// Echo nothing for `stall` at the start of every `period` (from the
    /// server's start), else at once: a server that freezes regularly.
    StallEvery { period: Duration, stall: Duration },
    /// Echo at most this many bytes per 100 ms over all connections: a
    /// server with a known capacity. Bytes over it wait for a later 100 ms.
    BytesPer100ms(u64),
}

/// A thread-per-connection TCP echo server on 127.0.0.1:0 shaped in time
/// by a [`Shape`]; it closes after the client's FIN. Stops when dropped.
pub struct ShapedServer {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
    accepted: Arc<std::sync::atomic::AtomicUsize>,
}

/// The shared state of a shaped server's connections.
struct Shaper {
    shape: Shape,
    epoch: Instant,
    /// `BytesPer100ms`: the current 100 ms window and the bytes it echoed.
    budget: std::sync::Mutex<(u64, u64)>,
}

const SHAPE_WINDOW: Duration = Duration::from_millis(100);

impl Shaper {
    /// How many of `want` bytes may be echoed now; `Err(wait)` when none may.
    fn admit(&self, want: u64) -> Result<u64, Duration> {
        let since = self.epoch.elapsed();
        match self.shape {
            Shape::StallEvery { period, stall } => {
                let into = Duration::from_nanos((since.as_nanos() % period.as_nanos()) as u64);
                if into < stall {
                    Err(stall - into)
                } else {
                    Ok(want)
                }
            }
            Shape::BytesPer100ms(cap) => {
                let window = (since.as_nanos() / SHAPE_WINDOW.as_nanos()) as u64;
                let mut b = self.budget.lock().unwrap_or_else(|e| e.into_inner());
                if b.0 != window {
                    *b = (window, 0);
                }
                let n = want.min(cap.saturating_sub(b.1));
                if n == 0 {
                    let next = SHAPE_WINDOW * (window as u32 + 1);
                    return Err(next.saturating_sub(since).max(Duration::from_micros(100)));
                }
                b.1 += n;
                Ok(n)
            }
        }
    }
}

impl ShapedServer {
    pub fn start(shape: Shape) -> ShapedServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        listener.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let shaper = Arc::new(Shaper {
            shape,
            epoch: Instant::now(),
            budget: std::sync::Mutex::new((0, 0)),
        });
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let accept = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !stop2.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((s, _)) => {
                        accepted2.fetch_add(1, Ordering::SeqCst);
                        let (stop3, shaper) = (stop2.clone(), shaper.clone());
                        conns.push(std::thread::spawn(move || serve_shaped(s, &shaper, &stop3)));
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(1))
                    }
                    Err(_) => break,
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        ShapedServer {
            addr,
            stop,
            accept: Some(accept),
            accepted,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for ShapedServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.accept.take() {
            let _ = h.join();
        }
    }
}

fn serve_shaped(s: TcpStream, shaper: &Shaper, stop: &AtomicBool) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_nodelay(true);
    let _ = s.set_read_timeout(Some(Duration::from_millis(20)));
    let _ = s.set_write_timeout(Some(STEP_TIMEOUT));
    let mut buf = vec![0u8; 16 * 1024];
    let deadline = Instant::now() + STEP_TIMEOUT * 2;
    while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
        match (&s).read(&mut buf) {
            Ok(0) => {
                let _ = s.shutdown(Shutdown::Write);
                return;
            }
            Ok(n) => {
                let mut done = 0;
                while done < n {
                    if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                        return;
                    }
                    match shaper.admit((n - done) as u64) {
                        Ok(k) => {
                            let k = k as usize;
                            if (&s).write_all(&buf[done..done + k]).is_err() {
                                return;
                            }
                            done += k;
                        }
                        // The server's own schedule, not test synchronisation.
                        Err(wait) => std::thread::sleep(wait.min(Duration::from_millis(20))),
                    }
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => return,
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
