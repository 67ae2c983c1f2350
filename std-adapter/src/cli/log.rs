//! `ricochet serve`'s log output: `tracing` records on stderr, through a
//! writer that cannot fail.
//!
//! A log sink that disappears (stderr a pipe whose reader exited, e.g.
//! `ricochet serve 2>&1 | tee log` after `tee` is gone) must never stop the
//! echo service or its shutdown. tracing-subscriber reports a failed write
//! with `eprintln!`, which panics on that same closed stderr: a warning on
//! any thread then killed the process (exit 101), or the signal thread, after
//! which SIGINT/SIGTERM were ignored. So the writer reports success whatever
//! happens, and the subscriber's own error reporting is off too.

use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

/// Stderr that swallows write errors: a lost log line is the only effect.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Stderr;

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let _ = io::stderr().write_all(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        let _ = io::stderr().flush();
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Stderr {
    type Writer = Stderr;

    fn make_writer(&'a self) -> Self::Writer {
        Stderr
    }
}

/// How log records are written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum LogFormat {
    /// One line per record for people: time, level, message, fields.
    #[default]
    Human,
    /// One JSON object per line (`timestamp`, `level`, `fields.message`,
    /// the other fields, `target`), for log collectors.
    Json,
}

/// Installs the subscriber: `RUST_LOG` (default `info`) on [`Stderr`], in `format`.
/// A `RUST_LOG` that is not a valid filter is reported (as a warning, once
/// logging runs) and `info` is used instead.
pub(crate) fn init(format: LogFormat) {
    let (filter, invalid) = match std::env::var("RUST_LOG") {
        Ok(v) if !v.trim().is_empty() => match EnvFilter::try_new(&v) {
            Ok(f) => (f, None),
            Err(e) => (EnvFilter::new("info"), Some((v, e))),
        },
        _ => (EnvFilter::new("info"), None),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(Stderr)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Human => builder.with_ansi(io::stderr().is_terminal()).try_init(),
        LogFormat::Json => builder.json().with_ansi(false).try_init(),
    };
    if let Some((value, e)) = invalid {
        tracing::warn!(
            RUST_LOG = %value,
            error = %e,
            "RUST_LOG is not a valid log filter: logging at info instead (e.g. RUST_LOG=debug, or RUST_LOG=info,ricochet=debug)"
        );
    }
}

/// Reports an error that ends the process, once logging runs: under
/// `--log-format json` as an error record (a log collector parses every
/// stderr line), otherwise as a plain line.
pub(crate) fn fatal(format: LogFormat, msg: std::fmt::Arguments<'_>) {
    match format {
        LogFormat::Json => tracing::error!("{msg}"),
        LogFormat::Human => super::say(msg),
    }
}
