//! Shared helpers for the example programs in `src/bin/`: a tiny argument
//! parser (the programs take an address and a few flags) and timeouts.
//!
//! Every program prints what it did and exits 0 on success, 1 on failure,
//! 2 on a usage error; `--help` describes the program and exits 0. The
//! servers take `--once` or `--count N` so they end by themselves.

use std::process::ExitCode;
use std::time::Duration;

/// How long any example waits for its peer before giving up.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(10);

/// The tutorial's port.
pub const DEFAULT_ADDR: &str = "127.0.0.1:50007";

/// Parsed command line: `[ADDR] [--count N | --once] [--size S]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Args {
    /// The address (default [`DEFAULT_ADDR`]).
    pub addr: String,
    /// Connections (servers) or messages (clients) before exiting.
    pub count: u64,
    /// Message size for the clients' verification run.
    pub size: usize,
    /// Words that were not flags, after the address (e.g. a client's message).
    pub rest: Vec<String>,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// Run with these arguments.
    Run(Args),
    /// `-h` / `--help`: describe the program.
    Help,
}

/// Parses `std::env::args()` for `program`; `default_count` applies without
/// `--count`/`--once`. On `--help` prints `help` to stdout, on a usage error
/// a message to stderr; either way returns the exit status to end with
/// (0 and 2).
pub fn parse_args(program: &str, help: &str, default_count: u64) -> Result<Args, ExitCode> {
    finish_parse(
        program,
        help,
        parse_from(std::env::args().skip(1), default_count),
    )
}

/// For programs without arguments: only `--help` is accepted.
pub fn parse_no_args(program: &str, help: &str) -> Result<(), ExitCode> {
    let words: Vec<String> = std::env::args().skip(1).collect();
    let parsed = match words.first().map(String::as_str) {
        None => Ok(Parsed::Run(Args {
            addr: String::new(),
            count: 0,
            size: 0,
            rest: Vec::new(),
        })),
        Some("-h" | "--help") => Ok(Parsed::Help),
        Some(w) => Err(format!(
            "unexpected argument {w:?}: this program takes none"
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
            println!("{}", help.trim_end());
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            eprintln!("{program}: {e} (see {program} --help)");
            Err(ExitCode::from(2))
        }
    }
}

/// Parses `words` (without the program name).
pub fn parse_from(
    words: impl IntoIterator<Item = String>,
    default_count: u64,
) -> Result<Parsed, String> {
    let mut args = Args {
        addr: DEFAULT_ADDR.to_owned(),
        count: default_count,
        size: 64,
        rest: Vec::new(),
    };
    let mut addr_seen = false;
    let mut it = words.into_iter();
    while let Some(w) = it.next() {
        match w.as_str() {
            "--once" => args.count = 1,
            "--count" | "-n" => {
                let v = it.next().ok_or("--count needs a number")?;
                args.count = v.parse().map_err(|_| format!("bad --count {v:?}"))?;
            }
            "--size" | "-s" => {
                let v = it.next().ok_or("--size needs a number")?;
                // The probe's syntax: 100, 100K, 4KiB, 1M.
                args.size = ricochet::probe::units::parse_bytes(&v)
                    .map_err(|e| format!("bad --size: {e}"))?;
            }
            "-h" | "--help" => return Ok(Parsed::Help),
            s if s.starts_with('-') && s.len() > 1 => return Err(format!("unknown flag {s}")),
            _ if !addr_seen => {
                args.addr = w;
                addr_seen = true;
            }
            _ => args.rest.push(w),
        }
    }
    Ok(Parsed::Run(args))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    fn run(s: &str, default_count: u64) -> Args {
        match parse_from(words(s), default_count) {
            Ok(Parsed::Run(a)) => a,
            other => panic!("{s:?}: {other:?}"),
        }
    }

    #[test]
    fn args_default_to_the_tutorial_port() {
        let a = run("", 3);
        assert_eq!((a.addr.as_str(), a.count), (DEFAULT_ADDR, 3));
    }

    #[test]
    fn args_parse_address_flags_and_message() {
        let a = run("127.0.0.1:9 --count 5 hello world", 1);
        assert_eq!(a.addr, "127.0.0.1:9");
        assert_eq!(a.count, 5);
        assert_eq!(a.rest, ["hello", "world"]);
        assert_eq!(run("--once", 9).count, 1);
        assert!(parse_from(words("--bogus"), 1).is_err());
        assert!(parse_from(words("-x"), 1).is_err());
    }

    #[test]
    fn sizes_take_the_probe_suffixes() {
        assert_eq!(run("--size 100K", 1).size, 100 * 1024);
        assert_eq!(run("-s 2KiB", 1).size, 2048);
        assert!(parse_from(words("--size lots"), 1).is_err());
    }

    #[test]
    fn help_is_not_an_error() {
        assert_eq!(parse_from(words("--help"), 1), Ok(Parsed::Help));
        assert_eq!(parse_from(words("127.0.0.1:9 -h"), 1), Ok(Parsed::Help));
    }
}
