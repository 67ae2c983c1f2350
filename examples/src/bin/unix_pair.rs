//! A Unix-socket echo server and client in one program, in `lines` mode.
//!
//! The server thread accepts one connection and serves it with the blocking
//! driver; a line is echoed only once its `\n` has arrived, however the
//! bytes are split. The client shows that (half a line gets no echo, the
//! rest of it does), then verifies `--count` lines from a core
//! `StreamProbe`, half-closes and waits for the server's FIN. The socket
//! lives in a fresh directory under the system temp dir, removed at the end.
//!
//! Usage: `unix_pair [--count N]` (default 100 lines verified after the
//! half-line demonstration, so the server echoes N + 1 lines).

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use ricochet::blocking::{StdStream, expect_eof, probe_connection, serve_connection};
use ricochet::clock::Clock;
use ricochet_core::{Mode, ProbeConfig, SizeRange};
use ricochet_examples::{
    PEER_TIMEOUT, SERVER_TICK, Takes, errln, outln, parse_args_without_address, session_config,
};

const HELP: &str = "\
unix_pair: a Unix-socket echo server and client in one program, in lines mode: half a
line gets no echo, the rest of it does; then N lines are verified and the server closes
after our FIN.

Usage: unix_pair [--count N]
  --count N   lines to verify after the half-line demonstration (default 100)
";

fn main() -> ExitCode {
    let args = match parse_args_without_address("unix_pair", HELP, 100, Takes::COUNT_ONLY) {
        Ok(a) => a,
        Err(code) => return code,
    };
    // A directory of our own: created here (never one that was already
    // there, which removing at the end would destroy), removed at the end.
    let dir = match fresh_dir() {
        Ok(dir) => dir,
        Err(e) => {
            errln!("unix_pair: {e}");
            return ExitCode::from(1);
        }
    };
    let result = run(dir.join("echo.sock"), args.count);
    let _ = std::fs::remove_dir_all(&dir);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("unix_pair: {e}");
            ExitCode::from(1)
        }
    }
}

/// A new directory under the temporary directory, named after this process.
fn fresh_dir() -> Result<PathBuf, String> {
    let base = std::env::temp_dir();
    for n in 0..100 {
        let dir = base.join(format!("ricochet-unix-pair-{}-{n}", std::process::id()));
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(format!("create {}: {e}", dir.display())),
        }
    }
    Err(format!("no free directory name under {}", base.display()))
}

fn run(path: PathBuf, count: u64) -> Result<(), String> {
    let listener =
        UnixListener::bind(&path).map_err(|e| format!("bind {}: {e}", path.display()))?;
    outln!("server listening on {}", path.display());
    let config = session_config(Mode::Lines);
    let server = std::thread::spawn(move || -> Result<u64, String> {
        let (conn, _) = listener.accept().map_err(|e| format!("accept: {e}"))?;
        conn.set_read_timeout(Some(SERVER_TICK))
            .map_err(|e| e.to_string())?;
        conn.set_write_timeout(Some(SERVER_TICK))
            .map_err(|e| e.to_string())?;
        // serve_connection half-closes (FIN) itself once everything was echoed.
        let stats = serve_connection(
            &mut StdStream::new(&conn),
            [0u8; 4096],
            config,
            &Clock::new(),
        )
        .map_err(|e| format!("server: {e}"))?;
        Ok(stats.units)
    });

    let client = UnixStream::connect(&path).map_err(|e| format!("connect: {e}"))?;
    client
        .set_write_timeout(Some(PEER_TIMEOUT))
        .map_err(|e| e.to_string())?;

    // Half a line: the session holds it, nothing comes back.
    (&client).write_all(b"hel").map_err(|e| e.to_string())?;
    client
        .set_read_timeout(Some(Duration::from_millis(200)))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 64 * 1024];
    match (&client).read(&mut buf) {
        Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            outln!("sent \"hel\": no echo yet (the line is incomplete)");
        }
        Ok(n) => {
            return Err(format!(
                "an incomplete line was echoed: {:?}",
                String::from_utf8_lossy(&buf[..n])
            ));
        }
        Err(e) => return Err(format!("read: {e}")),
    }
    // The rest of it: the whole line comes back.
    (&client).write_all(b"lo\n").map_err(|e| e.to_string())?;
    client
        .set_read_timeout(Some(PEER_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut line = Vec::new();
    while !line.ends_with(b"\n") {
        let n = (&client).read(&mut buf).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("server closed early".into());
        }
        line.extend_from_slice(&buf[..n]);
    }
    outln!(
        "sent \"lo\\n\": received {:?}",
        String::from_utf8_lossy(&line)
    );

    // Verified lines from the core probe (random bytes without '\n', then '\n').
    let probe = ProbeConfig {
        mode: Mode::Lines,
        size: SizeRange::range(2, 200),
        count: Some(count),
        ..ProbeConfig::default()
    };
    let mut s = StdStream::new(&client);
    let stats = probe_connection::<4, _, _>(&mut s, probe, &Clock::new(), &mut buf)
        .map_err(|e| e.to_string())?;
    outln!(
        "verified {} lines, {} bytes",
        stats.messages_verified,
        stats.bytes_verified
    );

    client
        .shutdown(Shutdown::Write)
        .map_err(|e| e.to_string())?;
    expect_eof(&mut s, &mut buf).map_err(|e| format!("after our FIN: {e}"))?;
    let units = server
        .join()
        .map_err(|_| "the server thread panicked".to_owned())??;
    outln!("server echoed {units} lines and closed after our FIN");
    Ok(())
}
