//! The `ricochet serve` binary: start lines, signals, exit status, errors,
//! file-descriptor exhaustion.
//!
//! One test binary, its tests in modules by subject: [`lifecycle`] (start
//! lines, signals, restarts, closed output), [`addresses`] (usage errors and
//! the addresses, ports and paths a server is given), [`limits`]
//! (descriptors, idle connections, counters), [`help`] (help, the README,
//! warnings and log lines).

#[path = "../netns_support/mod.rs"]
mod netns_support;
#[path = "../serve_support/mod.rs"]
mod serve_support;
#[path = "../tls_support/mod.rs"]
mod tls_support;

mod addresses;
mod help;
mod lifecycle;
mod limits;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::unix::net::UnixStream;
use std::process::Command;
use std::time::{Duration, Instant};

use serve_support::{
    IO_TIMEOUT, Proc, connect, is_root, output_within, payload, read_to_eof, round_trip,
    worker_threads,
};

fn addr_of(lines: &[(String, String)], kind: &str) -> SocketAddr {
    lines
        .iter()
        .find(|(k, _)| k == kind)
        .unwrap_or_else(|| panic!("no {kind} line in {lines:?}"))
        .1
        .parse()
        .unwrap()
}

/// `ricochet serve ARGS`, run to its end within [`IO_TIMEOUT`] with the
/// backend left to the flags (no `RICOCHET_IO` from the suite): exit code
/// and stderr.
fn serve_fails(args: &[&str]) -> (Option<i32>, String, std::process::Output) {
    let out = output_within(
        Command::new(env!("CARGO_BIN_EXE_ricochet"))
            .arg("serve")
            .args(args)
            .env_remove("RICOCHET_IO"),
        IO_TIMEOUT,
    );
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    (out.status.code(), err, out)
}
