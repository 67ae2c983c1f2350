//! `ricochet probe`: arguments, progress and output; the work is in [`ricochet::probe`].

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ricochet::core::Mode;
use ricochet::core::probe::SizeRange;
use ricochet::probe::units::{parse_bytes, parse_duration, parse_rate, parse_size_range};
use ricochet::probe::{self, Bar, DEFAULT_COUNT, Pattern, ProbeSpec, RunError, Stop, Target};

/// Verify any RFC 862 echo server: send deterministic data, check every byte, measure latency.
///
/// Exit status: 0 when every byte verified and every connection closed
/// cleanly, 1 on any mismatch or error, 2 on a usage error (bad TARGET too).
#[derive(Debug, Args)]
#[command(after_help = "\
Sizes are binary: K = KiB = 1024, M = MiB = 1024^2. Throughput is reported in MB/s (MB = 10^6 B).
Without --duration, each connection sends --count messages (default 1000).
Examples:
  ricochet probe tcp://127.0.0.1:7
  ricochet probe tcp://[::1]:7 -c 100 -d 5s --warmup 1s
  ricochet probe tcp://127.0.0.1:7 -p stream -s 64KiB -d 5s
  ricochet probe udp://127.0.0.1:7 -n 10000 --max-loss 0.1
  ricochet probe unix:///run/echo.sock --mode lines -s 16-1K --json")]
pub(crate) struct ProbeArgs {
    /// Echo server: tcp://HOST:PORT, udp://HOST:PORT or unix://PATH (IPv6 as [::1]:PORT).
    #[arg(value_name = "TARGET", value_parser = parse_target)]
    target: Target,
    /// Concurrent connections (UDP: sockets).
    #[arg(short = 'c', long, default_value_t = 1, value_name = "C")]
    connections: usize,
    /// Message size on the wire (terminator/header included), or a random range MIN..=MAX / MIN-MAX.
    #[arg(short = 's', long, default_value = "64", value_name = "S", value_parser = parse_size_range)]
    size: (usize, usize),
    /// Message pattern: one message in flight (pingpong) or a window of bytes in flight (stream).
    #[arg(short = 'p', long, value_enum, default_value_t = PatternArg::Pingpong)]
    pattern: PatternArg,
    /// Stream pattern: bytes in flight per connection (UDP: window / size datagrams, at most 64).
    #[arg(short = 'w', long, default_value = "256KiB", value_name = "BYTES", value_parser = parse_bytes)]
    window: usize,
    /// Run for this long (e.g. 10s, 500ms), then finish what is in flight.
    #[arg(short = 'd', long, value_name = "D", value_parser = parse_duration, conflicts_with = "count")]
    duration: Option<Duration>,
    /// Messages per connection [default: 1000].
    #[arg(short = 'n', long, value_name = "N")]
    count: Option<u64>,
    /// With --duration: verify but do not measure this initial time.
    #[arg(long, value_name = "D", value_parser = parse_duration, requires = "duration")]
    warmup: Option<Duration>,
    /// Open-loop pacing: total messages per second over all connections (latency counted from each scheduled send).
    #[arg(short = 'r', long, value_name = "R", value_parser = parse_rate)]
    rate: Option<f64>,
    /// The server's echo mode (stream targets): raw bytes, \n-terminated lines, or u16-length frames.
    #[arg(short = 'm', long, value_enum, default_value_t = ModeArg::Raw)]
    mode: ModeArg,
    /// Payload seed (connection i uses a seed derived from it): same seed, same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Connect timeout, response timeout, FIN wait after ours, UDP loss timeout.
    #[arg(long, default_value = "5s", value_name = "D", value_parser = parse_duration)]
    timeout: Duration,
    /// Worker threads, one event loop each [default: available cores, at most C].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// UDP: fail only when more than this percentage of datagrams is lost.
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    max_loss: f64,
    /// Print exactly one JSON line (the report) instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress bar and no table: the exit status tells (errors still go to stderr).
    #[arg(short = 'q', long, conflicts_with = "json")]
    quiet: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PatternArg {
    Pingpong,
    Stream,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum ModeArg {
    Raw,
    Lines,
    Frames,
}

fn parse_target(s: &str) -> Result<Target, String> {
    s.parse::<Target>().map_err(|e| e.to_string())
}

impl ProbeArgs {
    fn spec(&self) -> ProbeSpec {
        let mut spec = ProbeSpec::new(self.target.clone());
        spec.connections = self.connections;
        spec.size = SizeRange::range(self.size.0, self.size.1);
        spec.pattern = match self.pattern {
            PatternArg::Pingpong => Pattern::PingPong,
            PatternArg::Stream => Pattern::Stream,
        };
        spec.window = self.window;
        spec.stop = match self.duration {
            Some(d) => Stop::Duration(d),
            None => Stop::Count(self.count.unwrap_or(DEFAULT_COUNT)),
        };
        spec.warmup = self.warmup.unwrap_or(Duration::ZERO);
        spec.rate = self.rate;
        spec.mode = match self.mode {
            ModeArg::Raw => Mode::Raw,
            ModeArg::Lines => Mode::Lines,
            ModeArg::Frames => Mode::Frames,
        };
        spec.seed = self.seed;
        spec.timeout = self.timeout;
        if let Some(t) = self.threads {
            spec.threads = t;
        }
        spec.max_loss_pct = self.max_loss;
        spec
    }
}

/// Runs `ricochet probe` and maps the outcome to the exit status (0 ok, 1 failed, 2 usage).
pub(crate) fn run(args: ProbeArgs) -> ExitCode {
    let spec = args.spec();
    let bar =
        (!args.quiet && !args.json && std::io::stderr().is_terminal()).then(|| Bar::new(&spec));
    let result = probe::run_with_progress(&spec, |s| {
        if let Some(b) = &bar {
            b.update(s);
        }
    });
    if let Some(b) = &bar {
        b.finish();
    }
    let report = match result {
        Ok(r) => r,
        Err(RunError::Spec(e)) => {
            eprintln!("ricochet probe: error: {e}");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("ricochet probe: error: {e}");
            return ExitCode::from(1);
        }
    };
    let mut out = std::io::stdout().lock();
    let written = if args.json {
        writeln!(out, "{}", report.to_json_line())
    } else if !args.quiet {
        write!(out, "{}", report.table())
    } else {
        Ok(())
    };
    // A closed stdout (e.g. `| head`) must not turn a verified run into a failure.
    let _ = written.and_then(|()| out.flush());
    if args.quiet && !report.ok {
        for d in &report.error_details {
            eprintln!("ricochet probe: {d}");
        }
        eprintln!("ricochet probe: FAILED ({} errors)", report.errors.total());
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
