//! The tutorial's TCP echo server, done right.
//!
//! The classic program is `bind; listen(5); conn, addr = accept();
//! while data := conn.recv(1024): conn.send(data)`. Two bugs hide in it:
//! `send` may write only part of `data` (the rest is silently lost unless
//! you loop, i.e. `sendall`), and nothing bounds a peer that never reads or
//! never leaves. Here a core `Session` with a 1024-byte buffer (the
//! tutorial's `recv(1024)`) decides what to echo; the blocking driver writes
//! `transmit_buffer()` and commits however much each write took, so the
//! partial-send loop is the core's job, not yours. Timeouts end stuck peers
//! (10 s without a byte either way; see `session_config`).
//!
//! Usage: `tcp_server [ADDR] [--once | --count N]` (default 127.0.0.1:50007,
//! serves 1 connection; `--count` counts connections, whatever their outcome,
//! not messages). Prints `listening on ADDR` first.

use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;

use ricochet::blocking::{DriveError, StdStream, serve_connection};
use ricochet::clock::Clock;
use ricochet_core::Mode;
use ricochet_examples::{
    SERVER_TICK, Takes, bind_failed, errln, outln, parse_args, resolve, session_config,
};
use socket2::{Domain, SockRef, Socket, Type};

const HELP: &str = "\
tcp_server: the socket tutorial's TCP echo server, done right. A core Session with a
1024-byte buffer decides what is echoed; partial sends are its job, timeouts end stuck
peers (10 s without a byte either way), and an aborted session is reset rather than closed.

Usage: tcp_server [ADDR] [--once | --count N]
  ADDR        address to listen on (default 127.0.0.1:50007; port 0 picks a free one,
              printed as `listening on ADDR`)
  --once      serve one connection, then exit (the default)
  --count N   serve N connections, then exit. It counts connections, closed or aborted,
              not messages or bytes: one tcp_client run is one connection
";

fn main() -> ExitCode {
    let args = match parse_args("tcp_server", HELP, 1, Takes::SERVER) {
        Ok(a) => a,
        Err(code) => return code,
    };
    // A host name too, as udp_server takes it (the first address it resolves to).
    let addr = match resolve("tcp_server", &args.addr) {
        Ok(addrs) => addrs[0],
        Err(code) => return code,
    };
    match serve(addr, args.count) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            errln!("tcp_server: {e}");
            ExitCode::from(1)
        }
    }
}

fn serve(addr: SocketAddr, count: u64) -> std::io::Result<bool> {
    // socket(); setsockopt(SO_REUSEADDR); bind(); listen(5): as in the tutorial.
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    socket.set_reuse_address(true)?;
    socket
        .bind(&addr.into())
        .map_err(|e| bind_failed(addr, e))?;
    socket.listen(5)?;
    let listener: TcpListener = socket.into();
    outln!("listening on {}", listener.local_addr()?);
    let _ = std::io::stdout().flush();

    let clock = Clock::new();
    let mut all_ok = true;
    for _ in 0..count {
        let (conn, peer) = listener.accept()?;
        outln!("connected by {peer}");
        conn.set_read_timeout(Some(SERVER_TICK))?;
        conn.set_write_timeout(Some(SERVER_TICK))?;
        let mut stream = StdStream::new(&conn);
        // 1024 bytes: the tutorial's recv(1024), as the session's buffer.
        let config = session_config(Mode::Raw);
        match serve_connection(&mut stream, [0u8; 1024], config, &clock) {
            Ok(stats) => {
                // The session closed gracefully: serve_connection sent our
                // FIN and saw the peer's.
                outln!(
                    "echoed {} of {} bytes to {peer}, closed",
                    stats.bytes_out,
                    stats.bytes_in
                );
            }
            Err(DriveError::Aborted { reason, stats }) => {
                // Aborted: reset (RST) rather than pretend all went well.
                let _ = SockRef::from(&conn).set_linger(Some(std::time::Duration::ZERO));
                outln!("aborted {peer} after {} bytes: {reason}", stats.bytes_out);
                all_ok = false;
            }
            Err(e) => {
                outln!("connection with {peer} failed: {e}");
                all_ok = false;
            }
        }
    }
    Ok(all_ok)
}
