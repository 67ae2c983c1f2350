//! The tutorial's UDP echo server, done right.
//!
//! The classic program is `bind; while True: data, addr = recvfrom(1024);
//! sendto(data, addr)`. It truncates datagrams longer than its buffer and
//! echoes the truncated rest as if nothing happened, and it reflects
//! anything to anyone: a forged source address turns it into an amplifier
//! or into one end of an echo/chargen loop. Here every datagram is received
//! into `max_datagram + 1` bytes (so truncation is detected) and a core
//! `DatagramPolicy` decides: echo, or drop with a reason (oversize, loop
//! guard on reflector source ports, per-source rate limit).
//!
//! Usage: `udp_server [ADDR] [--once | --count N]` (default 127.0.0.1:50007;
//! exits after echoing N datagrams, default 1: it counts echoed datagrams, not
//! clients, and dropped ones do not count). Prints `listening on ADDR` first.

use std::io::Write;
use std::net::{SocketAddr, UdpSocket};
use std::process::ExitCode;

use ricochet::clock::Clock;
use ricochet_core::{DatagramCounters, DatagramPolicy, DropReason, PolicyConfig, Verdict};
use ricochet_examples::{Takes, bind_failed, errln, outln, parse_args, resolve};

const HELP: &str = "\
udp_server: the socket tutorial's UDP echo server, done right. Datagrams are received
into max_datagram + 1 bytes (truncation is detected) and a core DatagramPolicy decides:
echo, or drop with a reason (oversize, loop guard, per-source rate limit).

Usage: udp_server [ADDR] [--once | --count N]
  ADDR        address to bind (default 127.0.0.1:50007; port 0 picks a free one,
              printed as `listening on ADDR`)
  --once      echo one datagram, then exit (the default)
  --count N   echo N datagrams, then exit. It counts echoed datagrams, not clients;
              dropped ones do not count. One udp_client run sends its greeting plus
              its --count datagrams: `udp_client --count 50` needs --count 51 here
";

fn main() -> ExitCode {
    let args = match parse_args("udp_server", HELP, 1, Takes::SERVER) {
        Ok(a) => a,
        Err(code) => return code,
    };
    let addrs = match resolve("udp_server", &args.addr) {
        Ok(addrs) => addrs,
        Err(code) => return code,
    };
    match serve(&args.addr, &addrs, args.count) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("udp_server: {e}");
            ExitCode::from(1)
        }
    }
}

/// Binds the first of `addrs` (what `addr` resolved to) that binds.
fn serve(addr: &str, addrs: &[SocketAddr], count: u64) -> std::io::Result<()> {
    let socket = UdpSocket::bind(addrs).map_err(|e| bind_failed(addr, e))?;
    outln!("listening on {}", socket.local_addr()?);
    let _ = std::io::stdout().flush();
    let config = PolicyConfig::default();
    // Up to 64 source addresses are tracked for rate limiting.
    let mut policy = DatagramPolicy::<64>::new(config);
    let mut buf = vec![0u8; config.max_datagram + 1];
    let clock = Clock::new();
    // The core's counters: every datagram is echoed or dropped for a named reason.
    let mut counters = DatagramCounters::default();
    while counters.echoed < count {
        let (n, source) = socket.recv_from(&mut buf)?;
        match policy.decide(clock.now(), source, n) {
            Verdict::Echo => {
                socket.send_to(&buf[..n], source)?;
                counters.echoed(n);
            }
            Verdict::Drop(reason @ DropReason::Oversize { limit, .. }) => {
                counters.dropped(reason);
                // A max + 1 buffer only tells "longer than the limit": std's
                // UdpSocket cannot ask for the real length (MSG_TRUNC).
                outln!(
                    "dropped a datagram of more than {limit} bytes from {source}: \
                     oversize ({limit} bytes is this server's limit)"
                );
            }
            Verdict::Drop(reason) => {
                counters.dropped(reason);
                outln!("dropped {n} bytes from {source}: {reason}");
            }
        }
    }
    let d = &counters.dropped;
    outln!(
        "echoed {} datagrams ({} bytes); dropped {} oversize, {} loop guard, {} rate limited",
        counters.echoed,
        counters.echoed_bytes,
        d.oversize,
        d.loop_guard,
        d.rate_limited
    );
    Ok(())
}
