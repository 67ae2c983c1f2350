//! Stream connection behaviour: concurrency, backpressure, half-close, reset,
//! protocol violations, limits, timeouts and graceful shutdown.
//!
//! One test binary, its tests in modules by subject: [`traffic`],
//! [`violations`], [`limits`], [`shutdown`].

#[path = "../serve_support/mod.rs"]
mod serve_support;

mod limits;
mod shutdown;
mod traffic;
mod violations;

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::time::{Duration, Instant};

use ricochet::core::Mode;
use ricochet::serve::{BufferSize, IoBackend, ServerConfig};
use serve_support::{
    IO_TIMEOUT, Proc, STOP_TIMEOUT, assert_silent, connect, payload, read_to_eof, round_trip,
    start, tcp_config, wait_stats,
};

/// Reads until the connection ends; asserts it ended in a reset (RST), not
/// a clean EOF.
fn expect_reset(c: &mut std::net::TcpStream) {
    let mut buf = [0u8; 1024];
    loop {
        match c.read(&mut buf) {
            Ok(0) => panic!("expected a reset (RST), got a clean EOF"),
            Ok(_) => {}
            Err(e) => {
                assert_eq!(
                    e.kind(),
                    io::ErrorKind::ConnectionReset,
                    "expected a reset, got {e}"
                );
                return;
            }
        }
    }
}
