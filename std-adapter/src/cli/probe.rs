//! `ricochet probe`: arguments, progress, signals and output; the work is in [`ricochet::probe`].

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, ValueEnum};
use ricochet::core::Mode;
use ricochet::core::probe::SizeRange;
use ricochet::probe::units::{
    parse_bytes, parse_connect_rate, parse_duration, parse_rate, parse_size_range,
};
use ricochet::probe::{
    self, DEFAULT_COUNT, Goal, Lifetime, Pattern, ProbeSpec, RunError, Stop, StopHandle, Target,
};
use ricochet::serve::signals::SignalWatcher;

use super::bar::Bar;
use super::probe_out::{self, Format, Live};
use super::say;

/// Verify any RFC 862 echo server: send deterministic data, check every byte, measure latency.
///
/// Exit status: 0 when every byte verified and every connection closed
/// cleanly (with --find-rate: a rate was found), 1 on any mismatch or error,
/// or when nothing at all was verified (or a report that could not be
/// written; with --strict, any warning too),
/// 2 on a usage error (bad TARGET too), 130 when interrupted before anything
/// failed. The first
/// SIGINT/SIGTERM/SIGHUP stops sending, lets what is in flight settle and prints
/// the partial report; a second one quits at once.
#[derive(Debug, Args)]
#[command(after_help = "\
Sizes are binary: K = KiB = 1024, M = MiB = 1024^2. A UDP message is 12 to 65507 bytes
(65527 over IPv6): each datagram starts with a 12-byte sequence number and tag.
Throughput is reported in MB/s and Mbit/s (M = 10^6).
Durations: 500ms, 5s, 1.5s, 1m30s; a bare number is seconds (--lifetime 10: 10 messages).
Without --duration, each connection sends --count messages (default 1000).
Examples (`ricochet serve` listens on 7007 by default):
  ricochet probe tcp://127.0.0.1:7007
  ricochet probe tcp://[::1]:7007 -c 100 -d 5s --warmup 1s --interval 1s
  ricochet probe tcp://127.0.0.1:7007 -p stream -s 64KiB -d 5s
  ricochet probe tcp://127.0.0.1:7007 -c 8 -r 20K -d 10s --plot a.svg --latency-out a.hgrm
  ricochet probe tcp://127.0.0.1:7007 -p crr -c 4 -d 5s --connect-rate 2000
  ricochet probe tcp://127.0.0.1:7007 -c 8 --find-rate p99=1ms
  ricochet probe tcp://10.0.0.1:7007 tcp://10.0.0.2:7007 -c 20 -d 10s --json-stream
  ricochet probe udp://127.0.0.1:7007 -n 10000 --max-loss 0.1
  ricochet probe unix:///run/echo.sock --mode lines -s 16-1K --json
  ricochet probe tls://localhost:7443 --tls-ca ca.pem -p crr -c 8 -d 5s
  ricochet probe tls://localhost:7443 --tls-ca ca.pem --tls-cert client.pem --tls-key client-key.pem")]
pub(crate) struct ProbeArgs {
    /// The options given on the command line (clap ids), filled in by
    /// `main` ([`super::unused_options::given_options`]): one given where
    /// it has no effect is warned of.
    #[arg(skip)]
    pub(crate) given: Vec<String>,
    /// Echo server(s): tcp://HOST:PORT, udp://HOST:PORT, tls://HOST:PORT or unix://PATH (IPv6 as [::1]:PORT).
    /// Several targets share the connections round-robin (all streams, or all UDP).
    #[arg(value_name = "TARGET", required = true, num_args = 1.., value_parser = parse_target)]
    targets: Vec<Target>,
    /// Concurrent connections over all targets (UDP: sockets).
    #[arg(short = 'c', long, default_value_t = 1, value_name = "C")]
    connections: usize,
    /// Message size on the wire in bytes (terminator/header included; K/KiB, M/MiB, G/GiB = 1024,
    /// 1024², 1024³), or a random range MIN..=MAX / MIN-MAX (64..=1K, 1-64K).
    #[arg(short = 's', long, default_value = "64", value_name = "S", value_parser = parse_size_range)]
    size: (usize, usize),
    /// Message pattern: one message in flight (pingpong), a window of bytes in flight (stream), or
    /// connect, one message, close, repeat (crr, netperf's TCP_CRR; over tls:// a handshake each).
    #[arg(short = 'p', long, value_enum, default_value_t = PatternArg::Pingpong)]
    pattern: PatternArg,
    /// Stream pattern: bytes in flight per connection (UDP: window / size datagrams, at most 64);
    /// ping-pong and crr keep one message in flight (a warning says so if it is given with them).
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
    /// Open-loop pacing: total messages per second over all connections. Latency is counted from
    /// each scheduled send (and, as "uncorrected", from the actual send).
    #[arg(short = 'r', long, value_name = "R", value_parser = parse_rate)]
    rate: Option<f64>,
    /// The server's echo mode (stream targets): raw bytes, \n-terminated lines, or u16-length frames.
    #[arg(short = 'm', long, value_enum, default_value_t = ModeArg::Raw)]
    mode: ModeArg,
    /// Payload seed (connection i uses a seed derived from it): same seed, same bytes.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Bound of every wait: connect, each response, the server's FIN after ours, UDP loss (more than
    /// 0; a datagram not back within it is counted lost, and late if it comes back after).
    #[arg(long, default_value = "5s", value_name = "D", value_parser = parse_duration)]
    timeout: Duration,
    /// Worker threads, one event loop each [default: every core, or half of them when every
    /// target is on this host (loopback or Unix), whose server needs the rest; at most C].
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
    /// UDP only: fail only when more than this percentage of datagrams is lost (the run stops as
    /// soon as that is certain).
    #[arg(long, default_value_t = 0.0, value_name = "PCT")]
    max_loss: f64,
    /// Report every D of the measured span as it ends: round trips/s, MB/s, p50/p99, errors so far.
    #[arg(short = 'i', long, value_name = "D", value_parser = parse_duration)]
    interval: Option<Duration>,
    /// Streams: close each connection and open a new one after N messages, or after D
    /// (e.g. 100, 2s): connection churn.
    #[arg(long, value_name = "N|D", value_parser = parse_lifetime)]
    lifetime: Option<Lifetime>,
    /// Streams: open at most R new connections per second in total.
    #[arg(long, value_name = "R", value_parser = parse_connect_rate)]
    connect_rate: Option<f64>,
    /// Find the highest --rate that keeps a latency percentile within a bound, e.g. p99=5ms, by
    /// steps reported as they end (each step runs for --duration, default 2s, after --warmup,
    /// default 500ms; a --rate given is the highest tried; not with --count: a step's rate needs
    /// a span of time, not a number of messages).
    #[arg(long, value_name = "pNN=D", value_parser = parse_goal, conflicts_with_all = ["interval", "count"])]
    find_rate: Option<Goal>,
    /// Write the latency distribution in HdrHistogram's .hgrm text format (milliseconds) to FILE
    /// (`-` or /dev/stdout: standard output, after the table; not with --json).
    #[arg(long, value_name = "FILE")]
    latency_out: Option<PathBuf>,
    /// The same for the latency from each message's actual send instead of its scheduled one
    /// (wrk2's -U; without --rate the two are the same).
    #[arg(long, value_name = "FILE")]
    latency_out_uncorrected: Option<PathBuf>,
    /// Draw the latency percentile spectrum and throughput and p99 over time as an SVG image.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
    /// Print exactly one JSON line (the report) instead of the table.
    #[arg(long, conflicts_with = "json_stream")]
    json: bool,
    /// Print one JSON object per line: {"type":"interval",...} per interval (every second unless
    /// --interval says otherwise; with --find-rate {"type":"step",...} per step), then
    /// {"type":"summary",...}.
    #[arg(long)]
    json_stream: bool,
    /// No progress bar and no table: the exit status tells (errors still go to stderr).
    #[arg(short = 'q', long, conflicts_with_all = ["json", "json_stream"])]
    quiet: bool,
    /// Fail (exit status 1) on a warning too: the requested rate not reached, connections never
    /// opened, a --window below one message... (with --find-rate: the best step's). Each such
    /// warning is repeated on stderr.
    #[arg(long)]
    strict: bool,
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

fn parse_goal(s: &str) -> Result<Goal, String> {
    s.parse::<Goal>().map_err(|e| e.to_string())
}

/// `--lifetime`: a bare whole number is messages, anything else a duration.
fn parse_lifetime(s: &str) -> Result<Lifetime, String> {
    let t = s.trim();
    if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse()
            .map(Lifetime::Messages)
            .map_err(|_| format!("bad lifetime {s:?}: too many messages"));
    }
    parse_duration(t).map(Lifetime::Time).map_err(|e| {
        format!("bad lifetime {s:?}: expected a number of messages (e.g. 100) or a duration ({e})")
    })
}

/// Per-step defaults of `--find-rate` when neither a count nor a duration is given.
const FIND_RATE_STEP: Duration = Duration::from_secs(2);
const FIND_RATE_WARMUP: Duration = Duration::from_millis(500);
/// Per-interval reports of `--json-stream` when `--interval` is not given.
const JSON_STREAM_INTERVAL: Duration = Duration::from_secs(1);

impl ProbeArgs {
    fn spec(&self) -> ProbeSpec {
        let first = self
            .targets
            .first()
            .cloned()
            .unwrap_or(Target::Unix(PathBuf::new()));
        let mut spec = ProbeSpec::new(first);
        spec.targets = self.targets.clone();
        spec.connections = self.connections;
        spec.size = SizeRange::range(self.size.0, self.size.1);
        spec.pattern = match self.pattern {
            PatternArg::Pingpong => Pattern::PingPong,
            PatternArg::Stream => Pattern::Stream,
            PatternArg::Crr => Pattern::Crr,
        };
        spec.window = self.window;
        spec.stop = match (self.duration, self.count) {
            (Some(d), _) => Stop::Duration(d),
            (None, Some(n)) => Stop::Count(n),
            (None, None) if self.find_rate.is_some() => Stop::Duration(FIND_RATE_STEP),
            (None, None) => Stop::Count(DEFAULT_COUNT),
        };
        spec.warmup = match self.warmup {
            Some(w) => w,
            None if self.find_rate.is_some() && self.duration.is_none() && self.count.is_none() => {
                FIND_RATE_WARMUP
            }
            None => Duration::ZERO,
        };
        spec.rate = self.rate;
        spec.mode = match self.mode {
            ModeArg::Raw => Mode::Raw,
            ModeArg::Lines => Mode::Lines,
            ModeArg::Frames => Mode::Frames,
        };
        spec.seed = self.seed;
        spec.timeout = self.timeout;
        spec.threads = self.threads;
        spec.max_loss_pct = self.max_loss;
        spec.tls = self.tls.options();
        spec.lifetime = self.lifetime;
        spec.connect_rate = self.connect_rate;
        spec.interval = match (self.interval, self.find_rate) {
            (Some(d), _) => Some(d),
            (None, Some(_)) => None,
            (None, None) if self.json_stream => Some(JSON_STREAM_INTERVAL),
            // The plot's time panels need intervals even when none are printed.
            (None, None) if self.plot.is_some() => Some(plot_interval(&spec.stop)),
            (None, None) => None,
        };
        spec
    }

    fn format(&self) -> Format {
        if self.json {
            Format::Json
        } else if self.json_stream {
            Format::JsonStream
        } else if self.quiet {
            Format::Quiet
        } else {
            Format::Table
        }
    }
}

/// Intervals for the plot's time panels when `--interval` is not given:
/// about 60 points over a duration, within 100 ms to 1 s.
fn plot_interval(stop: &Stop) -> Duration {
    match stop {
        Stop::Duration(d) => (*d / 60).clamp(Duration::from_millis(100), Duration::from_secs(1)),
        Stop::Count(_) => Duration::from_millis(100),
    }
}

/// Runs `ricochet probe` and maps the outcome to the exit status (0 ok, 1 failed, 2 usage, 130 interrupted).
pub(crate) fn run(args: ProbeArgs) -> ExitCode {
    let files = probe_out::Files {
        latency_out: args.latency_out.as_deref(),
        latency_out_uncorrected: args.latency_out_uncorrected.as_deref(),
        plot: args.plot.as_deref(),
        json: matches!(args.format(), Format::Json | Format::JsonStream),
    };
    if let Err(e) = files.check() {
        say(format_args!("ricochet probe: error: {e}"));
        return ExitCode::from(2);
    }
    let spec = args.spec();
    let stop = StopHandle::new();
    let _watcher = watch_signals(&stop);
    let format = args.format();
    // Before the run: a slip such as `-s 100G` with the default -n 1000,
    // or `-w` without `-p stream`. Said at once, and kept with the report's
    // own warnings (the table, JSON, --strict).
    let mut before = Vec::new();
    if spec.validate().is_ok() {
        before.extend(spec.volume_warning());
        before.extend(super::unused_options::probe_ignored_options(
            &args.given,
            &spec,
        ));
    }
    if format != Format::Quiet {
        for w in &before {
            say(format_args!("ricochet probe: warning: {w}"));
        }
    }
    let bar = (format == Format::Table && std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .then(|| Bar::new(&spec));
    let mut live = Live::new(format, &spec, args.interval.is_some(), bar.as_ref(), &stop);
    let outcome = match args.find_rate {
        Some(goal) => {
            probe::find_rate(&spec, goal, &stop, &mut live).map(probe_out::Outcome::Search)
        }
        None => probe::run_observed(&spec, &stop, &mut live).map(probe_out::Outcome::Run),
    };
    if let Some(b) = &bar {
        b.finish();
    }
    let mut outcome = match outcome {
        Ok(o) => o,
        Err(RunError::Spec(e)) => {
            say(format_args!("ricochet probe: error: {e}"));
            return ExitCode::from(2);
        }
        Err(e) => {
            say(format_args!("ricochet probe: error: {e}"));
            return ExitCode::from(1);
        }
    };
    let report = match &mut outcome {
        probe_out::Outcome::Run(r) => Some(r),
        probe_out::Outcome::Search(s) => s.best.as_mut(),
    };
    if let Some(r) = report {
        r.warnings.splice(0..0, before);
    }
    let mut status = probe_out::finish(&mut live, &outcome, &files);
    if args.strict && status == 0 {
        let warnings = match &outcome {
            probe_out::Outcome::Run(r) => r.warnings.as_slice(),
            probe_out::Outcome::Search(s) => s.best.as_ref().map_or(&[][..], |b| &b.warnings),
        };
        for w in warnings {
            say(format_args!(
                "ricochet probe: failed (--strict): warning: {w}"
            ));
            status = 1;
        }
    }
    ExitCode::from(status)
}

/// The first SIGINT/SIGTERM/SIGHUP stops the run (partial report); a second one quits at once.
fn watch_signals(stop: &StopHandle) -> Option<SignalWatcher> {
    let stop = stop.clone();
    let watcher = SignalWatcher::spawn(move |ev| {
        // Said without waiting on stderr: one nobody reads must not keep
        // this thread from the second signal, nor that from exiting.
        let wait = Duration::from_millis(200);
        if ev.count == 0 {
            stop.interrupt();
            super::say_within(
                wait,
                format!(
                    "ricochet probe: {}: stopping, finishing what is in flight (send it again to quit at once)",
                    ev.name
                ),
            );
        } else {
            super::say_within(wait, format!("ricochet probe: {}: quitting", ev.name));
            std::process::exit(130);
        }
    });
    match watcher {
        Ok(w) => Some(w),
        Err(e) => {
            say(format_args!(
                "ricochet probe: warning: cannot watch SIGINT/SIGTERM/SIGHUP ({e}): an interrupt ends the run without a report"
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        args: ProbeArgs,
    }

    /// `ricochet probe ARGS` as parsed (the target first).
    fn args(args: &[&str]) -> ProbeArgs {
        Cli::try_parse_from(
            ["probe", "tcp://127.0.0.1:7"]
                .into_iter()
                .chain(args.iter().copied()),
        )
        .unwrap_or_else(|e| panic!("{args:?}: {e}"))
        .args
    }

    /// `ricochet probe ARGS`' run specification.
    fn spec(a: &[&str]) -> ProbeSpec {
        args(a).spec()
    }

    /// What the run does without `--count` and `--duration`: the default
    /// count, or with `--find-rate` steps of 2 s after a 500 ms warmup
    /// (and then neither the count nor a given duration gets a warmup).
    #[test]
    fn stop_and_warmup_default_to_a_count_or_to_find_rate_steps() {
        let plain = spec(&[]);
        assert_eq!(
            (plain.stop, plain.warmup),
            (Stop::Count(DEFAULT_COUNT), Duration::ZERO)
        );
        let search = spec(&["--find-rate", "p99=5ms"]);
        assert_eq!(
            (search.stop, search.warmup),
            (Stop::Duration(FIND_RATE_STEP), FIND_RATE_WARMUP)
        );
        let timed = spec(&["--find-rate", "p99=5ms", "-d", "1s"]);
        assert_eq!(
            (timed.stop, timed.warmup),
            (Stop::Duration(Duration::from_secs(1)), Duration::ZERO)
        );
        let warm = spec(&["--find-rate", "p99=5ms", "--warmup", "200ms", "-d", "1s"]);
        assert_eq!(warm.warmup, Duration::from_millis(200));
        assert_eq!(spec(&["-n", "7"]).stop, Stop::Count(7));
    }

    /// Intervals: as given; none with `--find-rate` (its steps are
    /// reported instead) or by default; every second for `--json-stream`;
    /// the plot's own for `--plot` alone.
    #[test]
    fn intervals_come_from_the_option_json_stream_or_the_plot() {
        assert_eq!(spec(&[]).interval, None);
        assert_eq!(
            spec(&["-i", "250ms"]).interval,
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            spec(&["--json-stream"]).interval,
            Some(JSON_STREAM_INTERVAL)
        );
        assert_eq!(
            spec(&["--plot", "a.svg", "-d", "30s"]).interval,
            Some(Duration::from_millis(500))
        );
        assert_eq!(
            spec(&["--find-rate", "p99=5ms", "--json-stream"]).interval,
            None
        );
    }

    /// Each output flag picks its format; the table by default.
    #[test]
    fn output_flags_pick_the_format() {
        assert_eq!(args(&[]).format(), Format::Table);
        assert_eq!(args(&["--json"]).format(), Format::Json);
        assert_eq!(args(&["--json-stream"]).format(), Format::JsonStream);
        assert_eq!(args(&["-q"]).format(), Format::Quiet);
    }

    /// The options reach the run: connections, rate, duration, the TLS
    /// server name and CA file.
    #[test]
    fn options_reach_the_run_specification() {
        let s = Cli::try_parse_from([
            "probe",
            "tls://127.0.0.1:7443",
            "-c",
            "3",
            "-r",
            "2K",
            "-d",
            "2s",
            "--tls-server-name",
            "echo.example",
            "--tls-ca",
            "ca.pem",
        ])
        .expect("parse")
        .args
        .spec();
        assert_eq!(
            (s.connections, s.rate, s.stop),
            (3, Some(2000.0), Stop::Duration(Duration::from_secs(2)))
        );
        assert_eq!(s.tls.server_name.as_deref(), Some("echo.example"));
        assert_eq!(s.tls.ca.as_deref(), Some(std::path::Path::new("ca.pem")));
        assert!(matches!(s.targets[..], [Target::Tls(_)]));
    }

    #[test]
    fn lifetime_is_messages_when_bare_and_a_duration_otherwise() {
        assert_eq!(parse_lifetime("100"), Ok(Lifetime::Messages(100)));
        assert_eq!(
            parse_lifetime("2s"),
            Ok(Lifetime::Time(Duration::from_secs(2)))
        );
        assert_eq!(
            parse_lifetime("1.5s"),
            Ok(Lifetime::Time(Duration::from_millis(1500)))
        );
        assert!(parse_lifetime("soon").unwrap_err().contains("e.g. 100"));
    }

    #[test]
    fn plot_interval_gives_about_sixty_points_within_bounds() {
        assert_eq!(
            plot_interval(&Stop::Duration(Duration::from_secs(30))),
            Duration::from_millis(500)
        );
        assert_eq!(
            plot_interval(&Stop::Duration(Duration::from_secs(1))),
            Duration::from_millis(100)
        );
        assert_eq!(
            plot_interval(&Stop::Duration(Duration::from_secs(600))),
            Duration::from_secs(1)
        );
    }
}
