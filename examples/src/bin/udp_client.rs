//! The tutorial's UDP echo client, done right.
//!
//! The classic program is `sendto(b'Hello, world', addr); data, server =
//! recvfrom(1024)`, which hangs forever when the datagram (or its echo) is
//! lost, and accepts a reply from anyone. Here the socket is connected (the
//! kernel drops datagrams from other addresses), every receive has a
//! timeout, and a core `DatagramProbe` numbers each datagram so losses are
//! counted apart from corruption, duplicates and late arrivals.
//!
//! Usage: `udp_client [ADDR] [--count N] [--size S] [MESSAGE...]`
//! (default 127.0.0.1:50007, 50 datagrams of 64 bytes, "Hello, world").
//! `--count` counts the datagrams verified after the greeting, so one run
//! sends N + 1 datagrams; sizes are binary (`100K` = 102400 bytes).
//!
//! ICMP port unreachable (`ECONNREFUSED` on the connected socket's send or
//! receive) is reported as what it means: no server listens at ADDR, or the
//! one that did has exited, e.g. a `udp_server` whose `--count` ran out.

use std::io::ErrorKind;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use ricochet::clock::Clock;
use ricochet_core::datagram::DEFAULT_MAX_DATAGRAM;
use ricochet_core::probe::{DATAGRAM_HEADER, UDP_MAX_V4, UDP_MAX_V6};
use ricochet_core::{DatagramOutcome, DatagramProbe, DatagramProbeConfig, SizeRange};
use ricochet_examples::{Takes, errln, greet_first, outln, parse_args, resolve};

/// Datagrams larger than a server's usual limit, all lost: how many before
/// the run stops and says why.
const GIVE_UP_AFTER: u64 = 3;

const HELP: &str = "\
udp_client: the socket tutorial's UDP echo client, done right. A connected socket with
timeouts sends the greeting, then numbered datagrams from a core DatagramProbe: losses are
counted apart from corruption, duplicates and late arrivals.

Usage: udp_client [ADDR] [--count N] [--size S] [MESSAGE...]
  ADDR        the echo server (default 127.0.0.1:50007)
  --count N   datagrams to verify after the greeting (default 50); one run sends
              N + 1, and udp_server --count counts each one it echoes
  --size S    bytes per datagram, at least 12 (default 64): a number with an optional
              binary suffix, K, KB, KiB or k = 1024; M, MB, MiB or m = 1024^2;
              G, GB, GiB or g = 1024^3 (and a bare B = bytes): 100K = 102400 bytes.
              Servers commonly drop datagrams over 1472 bytes (udp_server does)
  MESSAGE     the greeting (default \"Hello, world\")
";

fn main() -> ExitCode {
    let args = match parse_args("udp_client", HELP, 50, Takes::CLIENT) {
        Ok(a) => a,
        Err(code) => return code,
    };
    if !(DATAGRAM_HEADER..=UDP_MAX_V6).contains(&args.size) {
        errln!(
            "udp_client: --size {}: a verified datagram is {DATAGRAM_HEADER} to {UDP_MAX_V6} bytes \
             ({UDP_MAX_V4} over IPv4) (see udp_client --help)",
            args.size
        );
        return ExitCode::from(2);
    }
    // The message is sent as given, UTF-8 or not.
    let greeting = args.message().unwrap_or_else(|| b"Hello, world".to_vec());
    let servers = match resolve("udp_client", &args.addr) {
        Ok(addrs) => addrs,
        Err(code) => return code,
    };
    match run(&servers, &greeting, args.count, args.size) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("udp_client: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(servers: &[SocketAddr], greeting: &[u8], count: u64, size: usize) -> Result<(), String> {
    // 1. The greeting, to each address ADDR resolves to in turn until one
    // answers (`localhost` may be ::1 first while the server listens on
    // 127.0.0.1): one that refuses (ICMP port unreachable) is skipped.
    let mut buf = vec![0u8; 65_536];
    let (socket, server, n) = greet_first(servers, greeting, size, &mut buf)?;
    if &buf[..n] != greeting {
        return Err(format!(
            "the greeting came back altered: {:?}",
            String::from_utf8_lossy(&buf[..n])
        ));
    }
    outln!(
        "Received {:?} from {server}",
        String::from_utf8_lossy(&buf[..n])
    );

    // 2. Verification: numbered datagrams, one in flight, each checked.
    let clock = Clock::new();
    let config = DatagramProbeConfig {
        size: SizeRange::fixed(size),
        count: Some(count),
        window: 1,
        loss_timeout: Duration::from_secs(1).into(),
        ..DatagramProbeConfig::default()
    };
    let mut probe = DatagramProbe::<1>::new(config, clock.now()).map_err(|e| e.to_string())?;
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .map_err(|e| e.to_string())?;
    let mut out = vec![0u8; size];
    // Set when the kernel reports ICMP port unreachable: the server is gone.
    let mut went_away = false;
    while !probe.is_done() {
        if let Some(n) = probe.poll_transmit(clock.now(), &mut out) {
            match socket.send(&out[..n]) {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                    went_away = true;
                    break;
                }
                Err(e) => return Err(format!("send: {e}")),
            }
        }
        // Datagrams too large for the server: 3 lost, none back, says it
        // (each costs the 1 s loss timeout; 50 of them looked like a hang).
        let s = probe.stats();
        if size > DEFAULT_MAX_DATAGRAM && s.verified == 0 && s.lost >= GIVE_UP_AFTER {
            break;
        }
        match socket.recv(&mut buf) {
            Ok(n) => {
                if let DatagramOutcome::Corrupt { seq } =
                    probe.handle_datagram(clock.now(), &buf[..n])
                {
                    outln!("datagram {seq} came back altered");
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                probe.handle_timeout(clock.now());
            }
            Err(e) if e.kind() == ErrorKind::ConnectionRefused => {
                went_away = true;
                break;
            }
            Err(e) => return Err(format!("recv: {e}")),
        }
    }
    let s = probe.stats();
    outln!(
        "sent {}, verified {}, lost {}, corrupt {}, duplicate {}, late {}",
        s.sent,
        s.verified,
        s.lost,
        s.corrupt,
        s.duplicate,
        s.late
    );
    if went_away {
        return Err(format!(
            "the UDP echo server at {server} went away after the greeting and {} of {count} \
             datagrams were verified: ICMP port unreachable, nothing listens there any more. \
             Did it exit after its --count? `udp_server --count N` ends after echoing N \
             datagrams, and this run needs the greeting plus {count}: start it with \
             `udp_server {server} --count {}` (or more)",
            s.verified,
            count.saturating_add(1)
        ));
    }
    if s.verified == count {
        return Ok(());
    }
    let mut e = format!("{} of {count} datagrams verified", s.verified);
    if s.sent > 0 && s.verified == 0 && s.lost > 0 && size > DEFAULT_MAX_DATAGRAM {
        e.push_str(&format!(
            "\nhint: every datagram was lost (stopped after {GIVE_UP_AFTER}), and each was {size} \
             bytes: echo servers commonly drop datagrams larger than {DEFAULT_MAX_DATAGRAM} bytes \
             (the default limit of these examples' udp_server and of `ricochet serve`); try \
             --size {DEFAULT_MAX_DATAGRAM} or less"
        ));
    }
    Err(e)
}
