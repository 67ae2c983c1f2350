//! Shared helpers for the example programs in `src/bin/`: a tiny argument
//! parser (the programs take an address and a few flags) and timeouts.
//!
//! Every program prints what it did and exits 0 on success, 1 on failure,
//! 2 on a usage error; the servers take `--once` or `--count N` so they end
//! by themselves.

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

/// Parses `std::env::args()`; `default_count` applies without `--count`/`--once`.
pub fn parse_args(default_count: u64) -> Result<Args, String> {
    parse_from(std::env::args().skip(1), default_count)
}

/// Parses `words` (without the program name).
pub fn parse_from(
    words: impl IntoIterator<Item = String>,
    default_count: u64,
) -> Result<Args, String> {
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
                args.size = v.parse().map_err(|_| format!("bad --size {v:?}"))?;
            }
            "-h" | "--help" => {
                return Err(
                    "usage: [ADDR] [--count N | --once] [--size BYTES] [MESSAGE...]".into(),
                );
            }
            s if s.starts_with("--") => return Err(format!("unknown flag {s}")),
            _ if !addr_seen => {
                args.addr = w;
                addr_seen = true;
            }
            _ => args.rest.push(w),
        }
    }
    Ok(args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(s: &str) -> Vec<String> {
        s.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn args_default_to_the_tutorial_port() {
        let a = parse_from(Vec::new(), 3).unwrap();
        assert_eq!((a.addr.as_str(), a.count), (DEFAULT_ADDR, 3));
    }

    #[test]
    fn args_parse_address_flags_and_message() {
        let a = parse_from(words("127.0.0.1:9 --count 5 hello world"), 1).unwrap();
        assert_eq!(a.addr, "127.0.0.1:9");
        assert_eq!(a.count, 5);
        assert_eq!(a.rest, ["hello", "world"]);
        assert_eq!(parse_from(words("--once"), 9).unwrap().count, 1);
        assert!(parse_from(words("--bogus"), 1).is_err());
    }
}
