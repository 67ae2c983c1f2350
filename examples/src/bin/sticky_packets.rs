//! "Sticky packets": TCP is a byte stream, so two writes can arrive as one read.
//!
//! Through an echo server in `raw` mode, the client writes `hello` and
//! `world` separately and, once both echoes are in, one `read` returns
//! `helloworld`: the boundary is gone, and no read size can bring it back.
//! Through an echo server in `frames` mode, each message travels as a
//! 2-byte big-endian length plus payload (`ricochet_core::frames`); the same
//! single read now decodes into `hello` and `world` again.
//!
//! Usage: `sticky_packets` (no arguments; uses 127.0.0.1 with a free port).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::process::ExitCode;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ricochet::blocking::{StdStream, serve_connection};
use ricochet::clock::Clock;
use ricochet_core::frames::{self, Status};
use ricochet_core::{Mode, SessionConfig};
use ricochet_examples::{PEER_TIMEOUT, errln, outln, parse_no_args};

const HELP: &str = "\
sticky_packets: TCP is a byte stream, so two writes can arrive as one read. Through an
echo server in raw mode, \"hello\" and \"world\" come back as one read of \"helloworld\";
in frames mode (a u16 length before each message) the same single read decodes into the
two messages again. Runs its own servers on 127.0.0.1 (free ports).

Usage: sticky_packets (no arguments)
";

fn main() -> ExitCode {
    if let Err(code) = parse_no_args("sticky_packets", HELP) {
        return code;
    }
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("sticky_packets: {e}");
            ExitCode::from(1)
        }
    }
}

fn run() -> Result<(), String> {
    // Raw: boundaries are lost.
    let (addr, server) = echo_server(Mode::Raw)?;
    let client = connect(addr)?;
    for part in [&b"hello"[..], b"world"] {
        (&client).write_all(part).map_err(|e| e.to_string())?;
    }
    let got = read_once_when_available(&client, 10)?;
    outln!(
        "raw:    2 writes (\"hello\", \"world\") -> 1 read of {} bytes: {:?} (the boundary is gone)",
        got.len(),
        String::from_utf8_lossy(&got)
    );
    finish(client, server)?;

    // Frames: the length prefix restores them.
    let (addr, server) = echo_server(Mode::Frames)?;
    let client = connect(addr)?;
    for part in [&b"hello"[..], b"world"] {
        let mut frame = [0u8; 16];
        let n = frames::encode(part, &mut frame).map_err(|e| e.to_string())?;
        (&client)
            .write_all(&frame[..n])
            .map_err(|e| e.to_string())?;
    }
    let got = read_once_when_available(&client, 2 * (frames::HEADER_LEN + 5))?;
    let mut messages = Vec::new();
    let mut rest = &got[..];
    while let Status::Complete(frame) = frames::decode(rest) {
        messages.push(format!("{:?}", String::from_utf8_lossy(frame.payload)));
        rest = &rest[frame.wire_len()..];
    }
    outln!(
        "frames: 2 writes -> 1 read of {} bytes -> {} messages: {}",
        got.len(),
        messages.len(),
        messages.join(", ")
    );
    finish(client, server)?;
    if messages.len() != 2 {
        return Err("frames did not restore the two messages".into());
    }
    Ok(())
}

/// An echo server for one connection in `mode`, on a free loopback port.
fn echo_server(mode: Mode) -> Result<(SocketAddr, JoinHandle<Result<(), String>>), String> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let handle = std::thread::spawn(move || {
        let (conn, _) = listener.accept().map_err(|e| e.to_string())?;
        conn.set_read_timeout(Some(PEER_TIMEOUT))
            .map_err(|e| e.to_string())?;
        conn.set_write_timeout(Some(PEER_TIMEOUT))
            .map_err(|e| e.to_string())?;
        let config = SessionConfig {
            mode,
            ..SessionConfig::default()
        };
        // The session buffer: the tutorial's recv(1024). serve_connection
        // sends our FIN itself once everything was echoed.
        serve_connection(
            &mut StdStream::new(&conn),
            [0u8; 1024],
            config,
            &Clock::new(),
        )
        .map(|_| ())
        .map_err(|e| format!("server: {e}"))
    });
    Ok((addr, handle))
}

fn connect(addr: SocketAddr) -> Result<TcpStream, String> {
    let s = TcpStream::connect_timeout(&addr, PEER_TIMEOUT).map_err(|e| format!("connect: {e}"))?;
    // No Nagle: each write leaves as its own segment, yet they still merge.
    s.set_nodelay(true).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(PEER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// Waits (peeking) until `n` bytes are available, then does ONE read.
fn read_once_when_available(s: &TcpStream, n: usize) -> Result<Vec<u8>, String> {
    let mut buf = vec![0u8; 1024];
    let start = Instant::now();
    while s.peek(&mut buf).map_err(|e| e.to_string())? < n {
        if start.elapsed() > PEER_TIMEOUT {
            return Err(format!("the echo of {n} bytes did not arrive"));
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let got = (&*s).read(&mut buf).map_err(|e| e.to_string())?;
    buf.truncate(got);
    Ok(buf)
}

/// Half-closes, waits for the server's FIN and its thread.
fn finish(client: TcpStream, server: JoinHandle<Result<(), String>>) -> Result<(), String> {
    client
        .shutdown(Shutdown::Write)
        .map_err(|e| e.to_string())?;
    let mut rest = Vec::new();
    (&client)
        .read_to_end(&mut rest)
        .map_err(|e| e.to_string())?;
    if !rest.is_empty() {
        return Err(format!("{} unexpected bytes after the echo", rest.len()));
    }
    server
        .join()
        .map_err(|_| "the server thread panicked".to_owned())?
}
