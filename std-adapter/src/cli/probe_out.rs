//! What `ricochet probe` prints and writes: interval and step lines as they
//! come (table or `--json-stream`), then the table, the JSON line or the
//! summary object, and the `--latency-out` / `--plot` files.
//!
//! A write error on stdout (a closed pipe, `| head`, `> /dev/full`) stops
//! the output and makes the exit status 1; while the run goes on, it also
//! stops the run as an interrupt does (nothing would read what it reports;
//! exit status 130).

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use ricochet::probe::units::count_of;
use ricochet::probe::{
    Goal, IntervalReport, Observer, ProbeSpec, RateSearch, RateStep, Report, Snapshot, StopHandle,
    Which,
};
use serde::Serialize;

use super::bar::Bar;
use super::plot;
use super::say;

/// How the results are printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Format {
    /// Lines and a table for people.
    Table,
    /// One JSON line at the end.
    Json,
    /// One JSON object per line as things happen, a summary last.
    JsonStream,
    /// Nothing on success; errors on stderr.
    Quiet,
}

/// What was run.
pub(crate) enum Outcome {
    /// One probe run.
    Run(Report),
    /// A `--find-rate` search.
    Search(RateSearch),
}

/// The files asked for.
pub(crate) struct Files<'a> {
    /// `-` (or `/dev/stdout`): standard output, after the report (see [`to_stdout`]).
    pub(crate) latency_out: Option<&'a Path>,
    /// `-`: standard output, as `latency_out`.
    pub(crate) latency_out_uncorrected: Option<&'a Path>,
    pub(crate) plot: Option<&'a Path>,
    /// The report on standard output is JSON (`--json`,
    /// `--json-stream`): nothing else may go there.
    pub(crate) json: bool,
}

/// Whether an output option names standard output: `-`, as for other
/// tools, or one of the paths of the process's standard output
/// (`/dev/stdout`, `/dev/fd/1`, `/proc/self/fd/1`), which opened as a file
/// would run into the report, or truncate the file it is redirected to.
pub(crate) fn to_stdout(path: &Path) -> bool {
    ["-", "/dev/stdout", "/dev/fd/1", "/proc/self/fd/1"]
        .iter()
        .any(|p| path == Path::new(p))
}

impl Files<'_> {
    /// Checks, before the run, that each file can be written: its directory
    /// exists, it is not a directory, it may be opened for writing (a file
    /// the check had to create is removed again), and the plot is named
    /// `.svg` (it is drawn as SVG), and no two options name the same file
    /// (the last written would replace the other without a word). The error
    /// names the option and the fix.
    pub(crate) fn check(&self) -> Result<(), String> {
        if let Some(path) = self.plot {
            let svg = path
                .extension()
                .is_some_and(|e| e.eq_ignore_ascii_case("svg"));
            if !svg {
                return Err(format!(
                    "--plot {}: the plot is drawn as SVG: give a FILE.svg name",
                    path.display()
                ));
            }
            writable("--plot", path)?;
        }
        let hgrms = [
            ("--latency-out", self.latency_out),
            ("--latency-out-uncorrected", self.latency_out_uncorrected),
        ];
        let mut on_stdout = Vec::new();
        for (flag, path) in hgrms {
            match path {
                Some(p) if to_stdout(p) => on_stdout.push((flag, p.display())),
                Some(p) => writable(flag, p)?,
                None => {}
            }
        }
        match &on_stdout[..] {
            [] => {}
            [(flag, path), ..] if self.json => {
                return Err(format!(
                    "{flag} {path}: standard output carries the --json report; give the \
                     distribution a file name"
                ));
            }
            [(a, a_path), (b, b_path), ..] => {
                return Err(format!(
                    "{a} {a_path} and {b} {b_path}: both to standard output would run \
                     together; give one of them a file name"
                ));
            }
            [_] => {}
        }
        let named = [
            ("--latency-out", self.latency_out),
            ("--latency-out-uncorrected", self.latency_out_uncorrected),
            ("--plot", self.plot),
        ];
        let named: Vec<(&str, &Path, PathBuf)> = named
            .into_iter()
            .filter_map(|(flag, p)| p.filter(|p| !to_stdout(p)).map(|p| (flag, p, identity(p))))
            .collect();
        for (i, (flag, path, id)) in named.iter().enumerate() {
            if let Some((first, ..)) = named[..i].iter().find(|(.., other)| other == id) {
                return Err(format!(
                    "{flag} {}: the same file as {first}: one would overwrite the other; give \
                     each option a file of its own",
                    path.display()
                ));
            }
        }
        Ok(())
    }
}

/// What a path names, to tell two spellings of one file apart from two
/// files: the file resolved when it exists, else its directory resolved
/// (checked to exist before this is asked) joined with its name.
fn identity(path: &Path) -> PathBuf {
    if let Ok(p) = path.canonicalize() {
        return p;
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (dir.canonicalize(), path.file_name()) {
        (Ok(d), Some(name)) => d.join(name),
        _ => path.to_path_buf(),
    }
}

/// See [`Files::check`].
fn writable(flag: &str, path: &Path) -> Result<(), String> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "{flag} {}: the directory {} does not exist (create it, or choose another path)",
            path.display(),
            dir.display()
        ));
    }
    if path.is_dir() {
        return Err(format!(
            "{flag} {}: that is a directory: give a file name in it",
            path.display()
        ));
    }
    let existed = path.exists();
    match std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
    {
        Ok(_) => {
            if !existed {
                let _ = std::fs::remove_file(path);
            }
            Ok(())
        }
        Err(e) => Err(format!(
            "{flag} {}: cannot write it ({e}): choose a path you may write",
            path.display()
        )),
    }
}

/// A JSON object with a `type` member first.
#[derive(Serialize)]
struct Tagged<'a, T: Serialize> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(flatten)]
    body: &'a T,
}

fn json_line<T: Serialize>(kind: &'static str, body: &T) -> String {
    serde_json::to_string(&Tagged { kind, body })
        .unwrap_or_else(|e| format!("{{\"type\":\"error\",\"error\":\"{e}\"}}"))
}

/// The live output of a run: progress bar, interval and step lines.
pub(crate) struct Live<'a> {
    format: Format,
    /// Interval lines are printed (table: `--interval` given; JSON stream: always).
    intervals: bool,
    paced: bool,
    churn: bool,
    header_done: bool,
    bar: Option<&'a Bar>,
    write_error: Option<io::Error>,
    /// Interrupted when stdout cannot be written any more.
    stop: Option<StopHandle>,
}

impl<'a> Live<'a> {
    pub(crate) fn new(
        format: Format,
        spec: &ProbeSpec,
        interval_given: bool,
        bar: Option<&'a Bar>,
        stop: &StopHandle,
    ) -> Self {
        Live {
            format,
            intervals: match format {
                Format::Table => interval_given,
                Format::JsonStream => true,
                Format::Json | Format::Quiet => false,
            },
            paced: spec.rate.is_some(),
            churn: spec.session_lifetime().is_some(),
            header_done: false,
            bar,
            write_error: None,
            stop: Some(stop.clone()),
        }
    }

    /// Writes one line to stdout (above the progress bar, if any).
    fn out(&mut self, line: &str) {
        if self.write_error.is_some() {
            return;
        }
        let write = || {
            let mut o = io::stdout().lock();
            writeln!(o, "{line}")?;
            o.flush()
        };
        let r = match self.bar {
            Some(b) => b.suspend(write),
            None => write(),
        };
        if let Err(e) = r {
            if let Some(stop) = self.stop.take() {
                say(format_args!(
                    "ricochet probe: cannot write to stdout ({e}): stopping the run"
                ));
                stop.interrupt();
            }
            self.write_error = Some(e);
        }
    }
}

impl Observer for Live<'_> {
    fn progress(&mut self, s: &Snapshot) {
        if let Some(b) = self.bar {
            b.update(s);
        }
    }

    fn interval(&mut self, r: &IntervalReport) {
        if !self.intervals {
            return;
        }
        match self.format {
            Format::Table => {
                if !self.header_done {
                    self.header_done = true;
                    let h = IntervalReport::header(self.paced, self.churn);
                    self.out(&h);
                }
                let l = r.line(self.paced, self.churn);
                self.out(&l);
            }
            Format::JsonStream => {
                let l = json_line("interval", r);
                self.out(&l);
            }
            Format::Json | Format::Quiet => {}
        }
    }

    fn rate_step(&mut self, step: &RateStep, goal: &Goal) {
        match self.format {
            Format::Table => {
                let l = step.line(goal);
                self.out(&l);
            }
            Format::JsonStream => {
                let l = json_line("step", step);
                self.out(&l);
            }
            Format::Json | Format::Quiet => {}
        }
    }
}

/// Writes the files, prints the final output and returns the exit status.
pub(crate) fn finish(live: &mut Live<'_>, outcome: &Outcome, files: &Files<'_>) -> u8 {
    // The run is over: a write error from here on has nothing to stop.
    live.stop = None;
    let mut status = match outcome {
        Outcome::Run(r) => r.exit_code(),
        Outcome::Search(s) => s.exit_code(),
    };
    let report = match outcome {
        Outcome::Run(r) => Some(r),
        Outcome::Search(s) => s.best.as_ref(),
    };
    let hgrms = [
        (files.latency_out, Which::Corrected, "latency distribution"),
        (
            files.latency_out_uncorrected,
            Which::Uncorrected,
            "uncorrected latency distribution",
        ),
    ];
    for (path, which, what) in hgrms {
        // Standard output's goes after the report, below.
        let Some(path) = path.filter(|p| !to_stdout(p)) else {
            continue;
        };
        let written = match report {
            Some(r) => write_file(path, |w| r.write_hgrm(which, w)),
            None => Err(io::Error::other(
                "no step kept the bound, so there is no distribution to write",
            )),
        };
        if let Err(e) = written {
            say(format_args!(
                "ricochet probe: error: cannot write the {what} to {}: {e}",
                path.display()
            ));
            status = status.max(1);
        }
    }
    if let Some(path) = files.plot {
        let drawn = match outcome {
            Outcome::Run(r) => plot::run(r, path),
            Outcome::Search(s) => plot::search(s, path),
        };
        if let Err(e) = drawn {
            say(format_args!(
                "ricochet probe: error: cannot draw the plot to {}: {e}",
                path.display()
            ));
            status = status.max(1);
        }
    }
    match (live.format, outcome) {
        (Format::Table, Outcome::Run(r)) => {
            for line in r.table().lines() {
                live.out(line);
            }
        }
        (Format::Table, Outcome::Search(s)) => {
            // Only rated steps make the curve: none when the closed loop
            // failed, and a bare header then reads as a bug.
            if s.steps.iter().any(|st| st.rate.is_some()) {
                live.out(&format!(
                    "curve        {} measured over {}:",
                    s.goal,
                    count_of(s.steps.len() as u64, "step")
                ));
                for line in s.curve().lines() {
                    live.out(&format!("  {line}"));
                }
            }
            if let Some(best) = &s.best {
                live.out("best step:");
                for line in best.table().lines() {
                    live.out(line);
                }
            } else if let Some(failed) = &s.failed {
                // No rate found: what failed, or the errors are nowhere.
                live.out("last step with errors:");
                for line in failed.table().lines() {
                    live.out(line);
                }
            }
            live.out(&format!("found        {}", s.summary()));
        }
        (Format::Json, Outcome::Run(r)) => live.out(&r.to_json_line()),
        (Format::Json, Outcome::Search(s)) => {
            let l = serde_json::to_string(s).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            live.out(&l);
        }
        (Format::JsonStream, Outcome::Run(r)) => {
            // The intervals went out one by one already.
            let mut summary = r.clone();
            summary.intervals.clear();
            let l = json_line("summary", &summary);
            live.out(&l);
        }
        (Format::JsonStream, Outcome::Search(s)) => {
            let l = json_line("summary", s);
            live.out(&l);
        }
        (Format::Quiet, _) => {}
    }
    // `--latency-out -` (one at most, never with JSON: `Files::check`).
    for (path, which, what) in hgrms {
        if !path.is_some_and(to_stdout) {
            continue;
        }
        let mut text = Vec::new();
        match report.map(|r| r.write_hgrm(which, &mut text)) {
            Some(Ok(())) => {
                for line in String::from_utf8_lossy(&text).lines() {
                    live.out(line);
                }
            }
            Some(Err(e)) => {
                say(format_args!(
                    "ricochet probe: error: cannot write the {what}: {e}"
                ));
                status = status.max(1);
            }
            None => {
                say(format_args!(
                    "ricochet probe: error: no {what} to write: no step kept the bound"
                ));
                status = status.max(1);
            }
        }
    }
    if let Some(e) = &live.write_error {
        say(format_args!(
            "ricochet probe: error: cannot write the report to stdout: {e}"
        ));
        status = status.max(1);
    }
    if live.format == Format::Quiet {
        quiet_failure(outcome);
    }
    status
}

/// `--quiet`: on failure, the errors and hints still go to stderr.
fn quiet_failure(outcome: &Outcome) {
    let report = match outcome {
        Outcome::Run(r) => r,
        Outcome::Search(s) => match (s.rate, &s.failed) {
            (Some(_), _) => return,
            (None, Some(failed)) => {
                say(format_args!("ricochet probe: {}", s.summary()));
                &**failed
            }
            (None, None) => {
                say(format_args!("ricochet probe: {}", s.summary()));
                return;
            }
        },
    };
    if report.ok {
        return;
    }
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

/// Writes a file through `fill`; the file is complete when this returns `Ok`.
fn write_file(path: &Path, fill: impl FnOnce(&mut dyn Write) -> io::Result<()>) -> io::Result<()> {
    let mut w = io::BufWriter::new(std::fs::File::create(path)?);
    fill(&mut w)?;
    w.flush()?;
    w.into_inner().map_err(|e| e.into_error())?.sync_all()
}
