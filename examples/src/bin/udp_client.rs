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
use std::net::{SocketAddr, ToSocketAddrs, UdpSocket};
use std::process::ExitCode;
use std::time::Duration;

use ricochet::clock::Clock;
use ricochet_core::datagram::DEFAULT_MAX_DATAGRAM;
use ricochet_core::probe::{DATAGRAM_HEADER, UDP_MAX_V4, UDP_MAX_V6};
use ricochet_core::{DatagramOutcome, DatagramProbe, DatagramProbeConfig, SizeRange};
use ricochet_examples::{PEER_TIMEOUT, Takes, errln, outln, parse_args};

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
    match run(&args.addr, &greeting, args.count, args.size) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            errln!("udp_client: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(addr: &str, greeting: &[u8], count: u64, size: usize) -> Result<(), String> {
    let servers: Vec<SocketAddr> = addr
        .to_socket_addrs()
        .map_err(|e| format!("bad address {addr:?}: {e}"))?
        .collect();
    if servers.is_empty() {
        return Err(format!("{addr:?} resolves to nothing"));
    }
    // 1. The greeting, to each address ADDR resolves to in turn until one
    // answers (`localhost` may be ::1 first while the server listens on
    // 127.0.0.1): one that refuses (ICMP port unreachable) is skipped.
    let mut buf = vec![0u8; 65_536];
    let mut greeted = None;
    for (i, &server) in servers.iter().enumerate() {
        match greet(server, greeting, size, &mut buf) {
            Ok((socket, n)) => {
                greeted = Some((socket, server, n));
                break;
            }
            Err(Greet::Refused) if i + 1 < servers.len() => {
                outln!("nothing listens at {server}; trying the next address");
            }
            Err(Greet::Refused) => return Err(not_running(server)),
            Err(Greet::Failed(e)) => return Err(e),
        }
    }
    let Some((socket, server, n)) = greeted else {
        return Err(format!("{addr:?} resolves to nothing"));
    };
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

/// Why the greeting got no echo from one address.
enum Greet {
    /// ICMP port unreachable: nothing listens there.
    Refused,
    /// Anything else, said in full.
    Failed(String),
}

/// Sends the greeting to `server` from a socket connected to it, with a
/// timeout instead of a forever-blocking `recvfrom`; returns the socket and
/// the echo's length in `buf`.
fn greet(
    server: SocketAddr,
    greeting: &[u8],
    size: usize,
    buf: &mut [u8],
) -> Result<(UdpSocket, usize), Greet> {
    let failed = |e: String| Greet::Failed(e);
    if server.is_ipv4() && size > UDP_MAX_V4 {
        return Err(failed(format!(
            "--size {size} is more than a UDP datagram holds over IPv4 ({UDP_MAX_V4} bytes)"
        )));
    }
    let local = if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    };
    let socket = UdpSocket::bind(local).map_err(|e| failed(format!("bind: {e}")))?;
    socket
        .connect(server)
        .map_err(|e| failed(format!("connect: {e}")))?;
    socket
        .set_read_timeout(Some(PEER_TIMEOUT))
        .map_err(|e| failed(e.to_string()))?;
    socket.send(greeting).map_err(|e| match e.kind() {
        ErrorKind::ConnectionRefused => Greet::Refused,
        _ => failed(format!("send: {e}")),
    })?;
    let n = socket.recv(buf).map_err(|e| match e.kind() {
        ErrorKind::WouldBlock | ErrorKind::TimedOut => {
            let mut msg = format!(
                "no echo of the greeting within {} s: is a UDP echo server running at {server}?",
                PEER_TIMEOUT.as_secs()
            );
            if greeting.len() > DEFAULT_MAX_DATAGRAM {
                msg.push_str(&format!(
                    "\nhint: the greeting is {} bytes: echo servers commonly drop datagrams \
                     larger than {DEFAULT_MAX_DATAGRAM} bytes (udp_server does); send a shorter \
                     MESSAGE",
                    greeting.len()
                ));
            }
            failed(msg)
        }
        ErrorKind::ConnectionRefused => Greet::Refused,
        _ => failed(format!("no echo of the greeting: {e}")),
    })?;
    Ok((socket, n))
}

/// ICMP port unreachable before anything came back: no server at `server`.
fn not_running(server: SocketAddr) -> String {
    format!(
        "no UDP echo server at {server}: ICMP port unreachable, nothing listens on that port; \
         start one there (e.g. `udp_server {server}`) or check ADDR"
    )
}
