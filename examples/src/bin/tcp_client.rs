//! The tutorial's TCP echo client, done right.
//!
//! The classic program is `connect; sendall(b'Hello, world'); data =
//! recv(1024); print('Received', data)`. It assumes one `recv` returns the
//! whole echo; TCP promises no such thing. Here the greeting is read back
//! until every byte is in, then a core `StreamProbe` sends `--count`
//! messages of `--size` deterministic bytes and verifies every byte: the
//! probe's `fill_transmit`/`commit_sent` handle partial sends, so there is
//! no hand-written `sendall` loop. Finally we half-close and wait for the
//! server's FIN, the graceful end RFC 862 expects.
//!
//! Usage: `tcp_client [ADDR] [--count N] [--size S] [MESSAGE...]`
//! (default 127.0.0.1:50007, 100 messages of 64 bytes, "Hello, world").
//! `--count` counts the messages verified after the greeting, all on one
//! connection; sizes are binary (`100K` = 102400 bytes).

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::process::ExitCode;

use ricochet::blocking::{ProbeDriveError, StdStream, expect_eof, probe_connection};
use ricochet::clock::Clock;
use ricochet_core::{ProbeConfig, ProbeError, SizeRange};
use ricochet_examples::{PEER_TIMEOUT, Takes, connect_first, errln, outln, parse_args, resolve};

const HELP: &str = "\
tcp_client: the socket tutorial's TCP echo client, done right. Reads the greeting back
until every byte is in, verifies N messages with a core StreamProbe, then half-closes and
waits for the server's FIN.

Usage: tcp_client [ADDR] [--count N] [--size S] [MESSAGE...]
  ADDR        the echo server (default 127.0.0.1:50007)
  --count N   messages to verify after the greeting, on one connection (default 100)
  --size S    bytes per message (default 64): a number with an optional binary suffix,
              K, KB, KiB or k = 1024; M, MB, MiB or m = 1024^2; G, GB, GiB or
              g = 1024^3 (and a bare B = bytes): 100K = 102400 bytes
  MESSAGE     the greeting (default \"Hello, world\")
";

fn main() -> ExitCode {
    let args = match parse_args("tcp_client", HELP, 100, Takes::CLIENT) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if args.size == 0 {
        errln!("tcp_client: --size 0: a message is at least 1 byte (see tcp_client --help)");
        return ExitCode::from(2);
    }
    // The message is sent as given, UTF-8 or not.
    let greeting = args.message().unwrap_or_else(|| b"Hello, world".to_vec());
    let addrs = match resolve("tcp_client", &args.addr) {
        Ok(addrs) => addrs,
        Err(code) => return code,
    };
    match run(&addrs, &greeting, args.count, args.size) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("tcp_client: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(addrs: &[SocketAddr], greeting: &[u8], count: u64, size: usize) -> Result<(), String> {
    let (stream, sa) = connect_first(addrs, PEER_TIMEOUT)?;
    stream.set_nodelay(true).map_err(|e| e.to_string())?;
    stream
        .set_read_timeout(Some(PEER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(PEER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    outln!("connected to {sa}");

    // 1. The greeting. std's write_all is sendall; the reply is read until
    //    every byte is back, however TCP splits it.
    (&stream)
        .write_all(greeting)
        .map_err(|e| format!("send: {e}"))?;
    let mut echo = vec![0u8; greeting.len()];
    let mut got = 0;
    let mut reads = 0;
    while got < echo.len() {
        let n = (&stream)
            .read(&mut echo[got..])
            .map_err(|e| match e.kind() {
                // The read timeout: std reports it as WouldBlock on Unix.
                ErrorKind::WouldBlock | ErrorKind::TimedOut => format!(
                    "no echo of the greeting within {} s ({got} of {} bytes came back): is \
                     {sa} an echo server in raw mode? (a `lines` server echoes only once a \
                     newline arrives, a `frames` server only whole length-prefixed frames)",
                    PEER_TIMEOUT.as_secs(),
                    greeting.len()
                ),
                _ => format!("recv: {e}"),
            })?;
        if n == 0 {
            return Err(format!(
                "server closed after echoing {got} of {} bytes",
                greeting.len()
            ));
        }
        got += n;
        reads += 1;
    }
    if echo != greeting {
        return Err("the greeting came back altered".into());
    }
    outln!(
        "Received {:?} in {reads} read(s)",
        String::from_utf8_lossy(&echo)
    );

    // 2. Verification: the core probe decides what to send and checks every byte.
    let config = ProbeConfig {
        size: SizeRange::fixed(size),
        count: Some(count),
        ..ProbeConfig::default()
    };
    let mut buf = vec![0u8; 64 * 1024];
    let clock = Clock::new();
    let mut s = StdStream::new(&stream);
    let stats =
        probe_connection::<4, _, _>(&mut s, config, &clock, &mut buf).map_err(|e| e.to_string())?;
    outln!(
        "verified {} messages, {} bytes: every byte echoed correctly",
        stats.messages_verified,
        stats.bytes_verified
    );

    // 3. Half-close and expect the server's FIN.
    stream
        .shutdown(Shutdown::Write)
        .map_err(|e| format!("shutdown: {e}"))?;
    expect_eof(&mut s, &mut buf).map_err(|e| match e {
        ProbeDriveError::Probe(ProbeError::Timeout { .. }) => format!(
            "the server did not close within {} s after our FIN (every byte was verified; \
             an RFC 862 server closes when its client does)",
            PEER_TIMEOUT.as_secs()
        ),
        ProbeDriveError::Probe(ProbeError::UnexpectedData { .. }) => {
            "the server sent bytes after our FIN that we never sent".to_owned()
        }
        e => format!("after our FIN: {e}"),
    })?;
    outln!("server closed after our FIN");
    Ok(())
}
