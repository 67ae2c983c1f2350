//! `ricochet probe`: arguments, progress, signals and output; the work is in [`ricochet::probe`].

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ricochet::core::Mode;
use ricochet::core::probe::SizeRange;
use ricochet::probe::units::{count_of, parse_bytes, parse_duration, parse_rate, parse_size_range};
use ricochet::probe::{
    self, DEFAULT_COUNT, Pattern, ProbeSpec, Report, RunError, Stop, StopHandle, Target,
};
use ricochet::serve::signals::SignalWatcher;

use super::bar::Bar;
use super::say;

/// Verify any RFC 862 echo server: send deterministic data, check every byte, measure latency.
///
/// Exit status: 0 when every byte verified and every connection closed
/// cleanly, 1 on any mismatch or error (or a report that could not be
/// written), 2 on a usage error (bad TARGET too), 130 when interrupted
/// before anything failed. The first SIGINT/SIGTERM stops sending, lets
/// what is in flight settle and prints the partial report; a second one
/// quits at once.
#[derive(Debug, Args)]
#[command(after_help = "\
Sizes are binary: K = KiB = 1024, M = MiB = 1024^2. A UDP message is 12 to 65507 bytes
(65527 over IPv6): each datagram starts with a 12-byte sequence number and tag.
Throughput is reported in MB/s and Mbit/s (M = 10^6).
Durations: 500ms, 5s, 1.5s, 1m30s; a bare number is seconds.
Without --duration, each connection sends --count messages (default 1000).
Examples (`ricochet serve` listens on 7007 by default):
  ricochet probe tcp://127.0.0.1:7007
  ricochet probe tcp://[::1]:7007 -c 100 -d 5s --warmup 1s
  ricochet probe tcp://127.0.0.1:7007 -p stream -s 64KiB -d 5s
  ricochet probe udp://127.0.0.1:7007 -n 10000 --max-loss 0.1
  ricochet probe unix:///run/echo.sock --mode lines -s 16-1K --json
  ricochet probe tls://localhost:7443 --tls-ca ca.pem -p crr -c 8 -d 5s")]
pub(crate) struct ProbeArgs {
    /// Echo server: tcp://HOST:PORT, udp://HOST:PORT, tls://HOST:PORT or unix://PATH (IPv6 as [::1]:PORT).
    #[arg(value_name = "TARGET", value_parser = parse_target)]
    target: Target,
    /// Concurrent connections (UDP: sockets).
    #[arg(short = 'c', long, default_value_t = 1, value_name = "C")]
    connections: usize,
    /// Message size on the wire (terminator/header included), or a random range MIN..=MAX / MIN-MAX.
    #[arg(short = 's', long, default_value = "64", value_name = "S", value_parser = parse_size_range)]
    size: (usize, usize),
    /// Message pattern: one message in flight (pingpong), a window of bytes in flight (stream), or
    /// a new connection per message (crr: connect, request, response; over TLS a handshake each).
    #[arg(short = 'p', long, value_enum, default_value_t = PatternArg::Pingpong)]
    pattern: PatternArg,
    /// Stream pattern: bytes in flight per connection (UDP: window / size datagrams, at most 64).
    #[arg(short = 'w', long, default_value = "256KiB", value_name = "BYTES", value_parser = parse_bytes)]
    window: usize,
    /// Run for this long (e.g. 10s, 500ms, 1m30s), then finish what is in flight.
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
    /// Bound of every wait: connect, each response, the server's FIN after ours, UDP loss (more than 0).
    #[arg(long, default_value = "5s", value_name = "D", value_parser = parse_duration)]
    timeout: Duration,
    /// Worker threads, one event loop each [default: available cores, at most C].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// UDP: fail only when more than this percentage of datagrams is lost (the run stops as soon
    /// as that is certain).
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    max_loss: f64,
    /// Print exactly one JSON line (the report) instead of the table.
    #[arg(long)]
    json: bool,
    /// No progress bar and no table: the exit status tells (errors still go to stderr).
    #[arg(short = 'q', long, conflicts_with = "json")]
    quiet: bool,
    #[command(flatten)]
    tls: super::tls::TlsProbeArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum PatternArg {
    Pingpong,
    Stream,
    Crr,
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
            PatternArg::Crr => Pattern::Crr,
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
        spec.tls = self.tls.options();
        spec
    }
}

/// Runs `ricochet probe` and maps the outcome to the exit status (0 ok, 1 failed, 2 usage, 130 interrupted).
pub(crate) fn run(args: ProbeArgs) -> ExitCode {
    let spec = args.spec();
    let stop = StopHandle::new();
    let _watcher = watch_signals(&stop);
    let bar =
        (!args.quiet && !args.json && std::io::stderr().is_terminal()).then(|| Bar::new(&spec));
    let result = probe::run_with(&spec, &stop, |s| {
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
            say(format_args!("ricochet probe: error: {e}"));
            return ExitCode::from(2);
        }
        Err(e) => {
            say(format_args!("ricochet probe: error: {e}"));
            return ExitCode::from(1);
        }
    };
    if let Err(e) = print_report(&args, &report) {
        say(format_args!(
            "ricochet probe: error: cannot write the report to stdout: {e}"
        ));
        return ExitCode::from(1);
    }
    if args.quiet && !report.ok {
        for d in &report.error_details {
            say(format_args!("ricochet probe: {d}"));
        }
        for h in &report.hints {
            say(format_args!("ricochet probe: hint: {h}"));
        }
        if report.errors.total() > 0 {
            say(format_args!(
                "ricochet probe: FAILED ({})",
                count_of(report.errors.total(), "error")
            ));
        } else {
            say(format_args!("ricochet probe: interrupted"));
        }
    }
    ExitCode::from(report.exit_code())
}

/// The first SIGINT/SIGTERM stops the run (partial report); a second one quits at once.
fn watch_signals(stop: &StopHandle) -> Option<SignalWatcher> {
    let stop = stop.clone();
    let watcher = SignalWatcher::spawn(move |ev| {
        if ev.count == 0 {
            stop.interrupt();
            say(format_args!(
                "ricochet probe: {}: stopping, finishing what is in flight (send it again to quit at once)",
                ev.name
            ));
        } else {
            say(format_args!("ricochet probe: {}: quitting", ev.name));
            std::process::exit(130);
        }
    });
    match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            say(format_args!(
                "ricochet probe: warning: cannot watch SIGINT/SIGTERM ({e}): an interrupt ends the run without a report"
            ));
            None
        }
    }
}

/// Writes the report (table or JSON line) to stdout; a write error is an error.
fn print_report(args: &ProbeArgs, report: &Report) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if args.json {
        writeln!(out, "{}", report.to_json_line())?;
    } else if !args.quiet {
        write!(out, "{}", report.table())?;
    }
    out.flush()
}
