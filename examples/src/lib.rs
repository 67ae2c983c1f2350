//! Shared helpers for the example programs in `src/bin/`: a tiny argument
//! parser (the programs take an address and a few flags) and timeouts.
//!
//! Every program prints what it did and exits 0 on success, 1 on failure,
//! 2 on a usage error; `--help` describes the program and exits 0. The
//! servers take `--once` or `--count N` so they end by themselves:
//! `tcp_server` counts connections, `udp_server` echoed datagrams (not
//! clients; dropped datagrams do not count). The clients' `--count` is the
//! number of messages (datagrams, lines) verified after their greeting.
//!
//! Sizes (`--size`) are binary, as `ricochet probe` takes them: `K`, `KB`,
//! `KiB`, `k` = 1024; `M`, `MB`, `MiB`, `m` = 1024²; `G`, `GB`, `GiB`, `g` =
//! 1024³; a bare `B` means bytes. `100K` is 102400 bytes.
//!
//! Arguments are read as bytes (`std::env::args_os`), so a message that is
//! not UTF-8 is sent as given; a flag, number or address that is not UTF-8
//! is a usage error, never a panic.

use std::ffi::{OsStr, OsString};
use std::io::ErrorKind;
use std::net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket};

use ricochet_core::datagram::DEFAULT_MAX_DATAGRAM;
use ricochet_core::probe::UDP_MAX_V4;
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;
use std::time::Duration;

/// `println!` that cannot panic: a closed or full stdout (`| head -1`
/// after its one line) loses the line, nothing more (`println!` panics on
/// `EPIPE`, and the program dies with exit 101 in the middle of serving).
#[macro_export]
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stdout().lock(), $($arg)*);
    }};
}

/// `eprintln!` that cannot panic (see [`outln!`]).
#[macro_export]
macro_rules! errln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        let _ = ::std::writeln!(::std::io::stderr().lock(), $($arg)*);
    }};
}

/// How long any example waits for its peer before giving up: each blocking
/// call, and the servers' sessions (a peer that sends nothing, or stops
/// reading its echo, for this long is closed or reset).
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a server's blocking read or write waits before it looks at
/// the session's deadlines again (the blocking driver sleeps in the socket
/// call: a longer socket timeout would hold a 10 s idle timeout, and the
/// 2 s linger after it, for that long).
pub const SERVER_TICK: Duration = Duration::from_millis(500);

/// The servers' session settings: the core's defaults (300 s idle, 30 s
/// drain) would hold a stuck peer, and every client after it, for minutes.
pub fn session_config(mode: ricochet_core::Mode) -> ricochet_core::SessionConfig {
    ricochet_core::SessionConfig {
        mode,
        idle_timeout: Some(PEER_TIMEOUT.into()),
        drain_timeout: Some(PEER_TIMEOUT.into()),
        ..ricochet_core::SessionConfig::default()
    }
}

/// The tutorial's port.
pub const DEFAULT_ADDR: &str = "127.0.0.1:50007";

/// Parsed command line: `[ADDR] [--count N | --once] [--size S]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// The address (default [`DEFAULT_ADDR`]).
    pub addr: String,
    /// Whether the command line gave the address (else it is the default).
    pub addr_given: bool,
    /// What to count before exiting: connections (`tcp_server`), echoed
    /// datagrams (`udp_server`), or messages verified after the greeting
    /// (the clients).
    pub count: u64,
    /// Message size for the clients' verification run, in bytes (binary
    /// suffixes: `100K` = 102400).
    pub size: usize,
    /// Whether `--size` was given.
    pub size_given: bool,
    /// Whether `--once` was given.
    pub once_given: bool,
    /// Words that were not flags, after the address (e.g. a client's
    /// message), as given: they need not be UTF-8.
    pub rest: Vec<OsString>,
}

impl Args {
    /// The words after the address joined by spaces, as bytes (a client's
    /// message), or `None` when there are none.
    pub fn message(&self) -> Option<Vec<u8>> {
        if self.rest.is_empty() {
            return None;
        }
        let words: Vec<&[u8]> = self.rest.iter().map(|w| w.as_bytes()).collect();
        Some(words.join(&b' '))
    }
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Run with these arguments.
    Run(Args),
    /// `-h` / `--help`: describe the program.
    Help,
}

/// A failed `bind` of `addr`, said with the address and, for one already
/// in use (another server on that port, or this one started twice), the
/// fix.
pub fn bind_failed(addr: impl std::fmt::Display, e: std::io::Error) -> std::io::Error {
    let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
        ": another program is listening there (stop it, or give another port; \
         port 0 picks a free one)"
    } else {
        ""
    };
    std::io::Error::new(e.kind(), format!("cannot bind {addr}: {e}{hint}"))
}

/// The addresses `addr` (`HOST:PORT`) resolves to, for `program`; when it
/// resolves to none, or is not an address, says so on stderr and returns
/// the usage-error status (2) to end with, as for any bad argument.
pub fn resolve(program: &str, addr: &str) -> Result<Vec<SocketAddr>, ExitCode> {
    let why = match addr.to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if !addrs.is_empty() {
                return Ok(addrs);
            }
            "it resolves to nothing".to_owned()
        }
        Err(e) => e.to_string(),
    };
    errln!("{program}: bad address {addr:?}: {why}; give HOST:PORT, e.g. {DEFAULT_ADDR}");
    Err(ExitCode::from(2))
}

/// Connects to the first of `addrs` that takes the connection, each tried
/// in turn with `timeout` (what Python's `socket.create_connection` does:
/// a name such as `localhost` may resolve to `::1` first while the server
/// listens on `127.0.0.1` only). Returns the stream and the address it
/// reached, or, when none did, an error that names each address with its
/// reason and, when nothing listens at any of them, the fix.
pub fn connect_first(
    addrs: &[SocketAddr],
    timeout: Duration,
) -> Result<(TcpStream, SocketAddr), String> {
    let mut failures = Vec::with_capacity(addrs.len());
    for &sa in addrs {
        match TcpStream::connect_timeout(&sa, timeout) {
            Ok(s) => return Ok((s, sa)),
            Err(e) => failures.push((sa, e)),
        }
    }
    let refused = |e: &std::io::Error| e.kind() == std::io::ErrorKind::ConnectionRefused;
    match failures.as_slice() {
        [] => Err("the address resolves to nothing".into()),
        [(sa, e)] if refused(e) => Err(format!(
            "no TCP echo server at {sa}: connection refused, nothing listens on that port; \
             start one there (e.g. `tcp_server {sa}`) or check ADDR"
        )),
        [(sa, e)] => Err(format!("connect to {sa}: {e}")),
        many => {
            let each: Vec<String> = many.iter().map(|(sa, e)| format!("{sa}: {e}")).collect();
            let hint = if many.iter().all(|(_, e)| refused(e)) {
                "; nothing listens on that port at any of them: start a server there \
                 (e.g. `tcp_server ADDR`) or check ADDR"
            } else {
                ""
            };
            Err(format!(
                "no address took the connection ({}){hint}",
                each.join("; ")
            ))
        }
    }
}

/// Parses `std::env::args()` for `program`; `default_count` applies without
/// `--count`/`--once`. On `--help` prints `help` to stdout, on a usage error
/// a message to stderr; either way returns the exit status to end with
/// (0 and 2).
/// What the program `takes` besides `--count` and `--help`; anything else
/// given is a usage error ([`refuse_unused`]).
pub fn parse_args(
    program: &str,
    help: &str,
    default_count: u64,
    takes: Takes,
) -> Result<Args, ExitCode> {
    let args = finish_parse(
        program,
        help,
        parse_from(std::env::args_os().skip(1), default_count),
    )?;
    refuse_unused(program, &args, takes)?;
    Ok(args)
}

/// Sends the UDP `greeting` to each of `servers` in turn until one echoes
/// it (one that refuses, ICMP port unreachable, is skipped, as
/// [`connect_first`] skips a refused TCP connection); returns the socket,
/// connected to the one that answered, that address, and the echo's length
/// in `buf`. `size`: the datagrams the run will send, checked against what
/// IPv4 carries.
pub fn greet_first(
    servers: &[SocketAddr],
    greeting: &[u8],
    size: usize,
    buf: &mut [u8],
) -> Result<(UdpSocket, SocketAddr, usize), String> {
    for (i, &server) in servers.iter().enumerate() {
        match greet(server, greeting, size, buf) {
            Ok((socket, n)) => return Ok((socket, server, n)),
            Err(Greet::Refused) if i + 1 < servers.len() => {
                outln!("nothing listens at {server}; trying the next address");
            }
            Err(Greet::Refused) => return Err(not_running(server)),
            Err(Greet::Failed(e)) => return Err(e),
        }
    }
    Err("the address resolves to nothing".to_owned())
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

/// ICMP port unreachable before anything came back: no UDP echo server
/// at `server`.
pub fn not_running(server: SocketAddr) -> String {
    format!(
        "no UDP echo server at {server}: ICMP port unreachable, nothing listens on that port; \
         start one there (e.g. `udp_server {server}`) or check ADDR"
    )
}

/// [`parse_args`] for programs that open no network socket (`unix_pair`,
/// `in_memory`): an address or any other word is a usage error, not
/// silently ignored.
pub fn parse_args_without_address(
    program: &str,
    help: &str,
    default_count: u64,
    takes: Takes,
) -> Result<Args, ExitCode> {
    let words = std::env::args_os().skip(1);
    let parsed = parse_from(words, default_count).and_then(|p| match p {
        Parsed::Run(a) if a.addr_given || !a.rest.is_empty() => {
            let word = if a.addr_given {
                OsString::from(&a.addr)
            } else {
                a.rest[0].clone()
            };
            Err(format!(
                "takes no address or message, got {word:?}: it uses no network socket"
            ))
        }
        other => Ok(other),
    });
    let args = finish_parse(program, help, parsed)?;
    refuse_unused(program, &args, takes)?;
    Ok(args)
}

/// For programs without arguments: only `--help` is accepted.
pub fn parse_no_args(program: &str, help: &str) -> Result<(), ExitCode> {
    let words: Vec<OsString> = std::env::args_os().skip(1).collect();
    let parsed = match words.first().map(|w| w.to_str()) {
        None => Ok(Parsed::Run(Args {
            addr: String::new(),
            addr_given: false,
            count: 0,
            size: 0,
            size_given: false,
            once_given: false,
            rest: Vec::new(),
        })),
        Some(Some("-h" | "--help")) => Ok(Parsed::Help),
        Some(_) => Err(format!(
            "unexpected argument {:?}: this program takes none",
            words[0]
        )),
    };
    finish_parse(program, help, parsed).map(drop)
}

fn finish_parse(
    program: &str,
    help: &str,
    parsed: Result<Parsed, String>,
) -> Result<Args, ExitCode> {
    match parsed {
        Ok(Parsed::Run(args)) => Ok(args),
        Ok(Parsed::Help) => {
            outln!("{}", help.trim_end());
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            errln!("{program}: {e} (see {program} --help)");
            Err(ExitCode::from(2))
        }
    }
}

/// `w` as UTF-8, or a usage error naming `what` it was meant to be.
fn utf8(w: &OsStr, what: &str) -> Result<String, String> {
    w.to_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("{what} {w:?} is not valid UTF-8"))
}

/// What a program takes besides `--count` and `--help`: anything else
/// given is a usage error, not silently ignored.
#[derive(Clone, Copy, Debug)]
pub struct Takes {
    /// `--size` (the clients).
    pub size: bool,
    /// `--once` (the servers).
    pub once: bool,
    /// Words after the address (a client's message).
    pub message: bool,
}

impl Takes {
    /// A server: `--once`, no `--size`, no message.
    pub const SERVER: Takes = Takes {
        size: false,
        once: true,
        message: false,
    };
    /// A client: `--size` and a message, no `--once`.
    pub const CLIENT: Takes = Takes {
        size: true,
        once: false,
        message: true,
    };
    /// A program without sockets: `--count` only.
    pub const COUNT_ONLY: Takes = Takes {
        size: false,
        once: false,
        message: false,
    };
}

/// Refuses what `args` holds that `program` does not take ([`Takes`]):
/// says which, exit status 2.
pub fn refuse_unused(program: &str, args: &Args, takes: Takes) -> Result<(), ExitCode> {
    let unused = if args.size_given && !takes.size {
        Some("--size".to_owned())
    } else if args.once_given && !takes.once {
        Some("--once".to_owned())
    } else if !args.rest.is_empty() && !takes.message {
        Some(format!("{:?}", args.rest[0]))
    } else {
        None
    };
    match unused {
        Some(what) => {
            errln!("{program}: {what} is not an argument {program} takes (see {program} --help)");
            Err(ExitCode::from(2))
        }
        None => Ok(()),
    }
}

/// Parses `words` (without the program name). Only a message word may be
/// other than UTF-8.
pub fn parse_from<W: Into<OsString>>(
    words: impl IntoIterator<Item = W>,
    default_count: u64,
) -> Result<Parsed, String> {
    let mut args = Args {
        addr: DEFAULT_ADDR.to_owned(),
        addr_given: false,
        count: default_count,
        size: 64,
        size_given: false,
        once_given: false,
        rest: Vec::new(),
    };
    let mut it = words.into_iter().map(Into::into);
    while let Some(word) = it.next() {
        let Some(w) = word.to_str() else {
            // Not UTF-8: a message word; an address must be text.
            if args.addr_given {
                args.rest.push(word);
                continue;
            }
            return Err(format!("address {word:?} is not valid UTF-8"));
        };
        match w {
            "--once" => {
                args.count = 1;
                args.once_given = true;
            }
            "--count" | "-n" => {
                let v = utf8(&it.next().ok_or("--count needs a number")?, "--count")?;
                args.count = v.parse().map_err(|_| format!("bad --count {v:?}"))?;
            }
            "--size" | "-s" => {
                let v = utf8(&it.next().ok_or("--size needs a number")?, "--size")?;
                // The probe's syntax, binary: 100, 100K (102400), 4KiB, 1M, 2GB.
                args.size = ricochet::probe::units::parse_bytes(&v)
                    .map_err(|e| format!("bad --size: {e}"))?;
                args.size_given = true;
            }
            "-h" | "--help" => return Ok(Parsed::Help),
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown flag {s}")),
            _ if !args.addr_given => {
                args.addr = w.to_owned();
                args.addr_given = true;
            }
            _ => args.rest.push(word),
        }
    }
    Ok(Parsed::Run(args))
}

#[cfg(test)]
mod tests;
