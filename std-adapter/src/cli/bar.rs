//! The probe's progress bar on stderr (only on a terminal, and neither
//! `--quiet` nor `--json`): messages verified out of the total for a count,
//! elapsed time out of warmup plus duration otherwise. One line that never
//! wraps: the message is cut to the terminal's width.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ricochet::probe::units::count_of;
use ricochet::probe::{ProbeSpec, Snapshot, Stop};

/// A progress bar sized for one run.
#[derive(Debug)]
pub(crate) struct Bar {
    bar: ProgressBar,
    by_time: bool,
    warmup: Duration,
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Bar {
    /// A bar for `spec`, drawn on stderr.
    pub(crate) fn new(spec: &ProbeSpec) -> Self {
        Self::with_target(spec, ProgressDrawTarget::stderr())
    }

    /// A bar for `spec`, drawn on `target`.
    pub(crate) fn with_target(spec: &ProbeSpec, target: ProgressDrawTarget) -> Self {
        let (len, by_time, template) = match spec.stop {
            Stop::Count(n) => (
                n.saturating_mul(spec.connections as u64),
                false,
                "{bar:20} {pos}/{len} {wide_msg}",
            ),
            // The warmup is part of the run: the bar fills over both.
            Stop::Duration(d) => (
                millis(spec.warmup.saturating_add(d)),
                true,
                "{bar:20} {elapsed:>4} {wide_msg}",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
        Bar {
            bar: ProgressBar::with_draw_target(Some(len), target).with_style(style),
            by_time,
            warmup: spec.warmup,
        }
    }

    /// Shows a new reading.
    pub(crate) fn update(&self, s: &Snapshot) {
        let mut msg = String::new();
        if self.by_time {
            self.bar.set_position(millis(s.elapsed));
            if s.elapsed < self.warmup {
                msg.push_str("warmup, ");
            }
            msg.push_str(&format!("{} verified, ", s.messages_verified));
        } else {
            self.bar.set_position(s.messages_verified);
            msg.push_str("verified, ");
        }
        msg.push_str(&format!("{:.1} MB", s.bytes_verified as f64 / 1e6));
        if s.lost > 0 {
            msg.push_str(&format!(", {} lost", s.lost));
        }
        msg.push_str(&format!(", {}", count_of(s.errors, "error")));
        self.bar.set_message(msg);
    }

    /// Runs `f` (which prints a line) with the bar hidden, then redraws it.
    pub(crate) fn suspend<R>(&self, f: impl FnOnce() -> R) -> R {
        self.bar.suspend(f)
    }

    /// Removes the bar (the table follows on stdout).
    pub(crate) fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use indicatif::TermLike;
    use ricochet::probe::Target;

    use super::*;

    /// An 80-column terminal that records every line drawn (`.0`) and
    /// what its one line shows now (`.1`: cleared by `clear_line`).
    #[derive(Debug, Default, Clone)]
    struct Screen(Arc<Mutex<Vec<String>>>, Arc<Mutex<String>>);

    impl TermLike for Screen {
        fn width(&self) -> u16 {
            80
        }
        fn move_cursor_up(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> io::Result<()> {
            self.write_str(s)
        }
        fn write_str(&self, s: &str) -> io::Result<()> {
            self.0.lock().unwrap().push(s.to_owned());
            self.1.lock().unwrap().push_str(s);
            Ok(())
        }
        fn clear_line(&self) -> io::Result<()> {
            self.1.lock().unwrap().clear();
            Ok(())
        }
        fn flush(&self) -> io::Result<()> {
            Ok(())
        }
    }

    fn spec(stop: Stop, warmup: Duration) -> ProbeSpec {
        let mut s = ProbeSpec::new(Target::Tcp(vec!["127.0.0.1:7007".parse().unwrap()].into()));
        s.connections = 1000;
        s.stop = stop;
        s.warmup = warmup;
        s
    }

    fn busy() -> Snapshot {
        Snapshot {
            messages_verified: 123_456_789_012,
            bytes_verified: 987_654_321_098_765,
            errors: 12_345_678,
            lost: 9_876_543_210,
            connections_finished: 0,
            elapsed: Duration::from_secs(2),
        }
    }

    #[test]
    fn bar_with_warmup_fills_over_warmup_and_duration() {
        let screen = Screen::default();
        let target = ProgressDrawTarget::term_like(Box::new(screen));
        let b = Bar::with_target(
            &spec(
                Stop::Duration(Duration::from_secs(10)),
                Duration::from_secs(2),
            ),
            target,
        );
        assert_eq!(b.bar.length(), Some(12_000));
        b.update(&busy());
        assert_eq!(b.bar.position(), 2_000);
        b.update(&Snapshot {
            elapsed: Duration::from_secs(10),
            ..busy()
        });
        assert!(
            b.bar.position() < b.bar.length().unwrap(),
            "not full before the end"
        );
    }

    #[test]
    fn bar_line_fits_80_columns_however_large_the_counts() {
        for stop in [
            Stop::Count(1_000_000),
            Stop::Duration(Duration::from_secs(10)),
        ] {
            let screen = Screen::default();
            let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
            let b = Bar::with_target(&spec(stop, Duration::ZERO), target);
            b.update(&busy());
            b.bar.tick();
            let lines = screen.0.lock().unwrap().clone();
            assert!(!lines.is_empty(), "nothing drawn");
            for l in &lines {
                assert!(
                    l.chars().count() <= 80,
                    "{} columns: {l:?}",
                    l.chars().count()
                );
            }
        }
    }

    /// A hidden bar for a 10 s run whose first 2 s are warmup.
    fn ten_second_run_with_two_of_warmup() -> Bar {
        Bar::with_target(
            &spec(
                Stop::Duration(Duration::from_secs(10)),
                Duration::from_secs(2),
            ),
            ProgressDrawTarget::hidden(),
        )
    }

    #[test]
    fn bar_message_shows_losses_and_the_warmup() {
        let b = ten_second_run_with_two_of_warmup();
        b.update(&Snapshot {
            messages_verified: 10,
            bytes_verified: 640,
            errors: 1,
            lost: 3,
            connections_finished: 0,
            elapsed: Duration::from_secs(1),
        });
        let msg = b.bar.message();
        assert!(msg.starts_with("warmup, "), "{msg}");
        assert!(msg.contains("3 lost, 1 error"), "{msg}");
    }

    /// Pins the end of the warmup: once `--warmup` has elapsed, exactly,
    /// the run is measuring (the tally's window opens at `start + warmup`,
    /// inclusive), so the bar no longer says "warmup".
    #[test]
    fn bar_message_drops_the_warmup_when_the_warmup_has_elapsed() {
        let b = ten_second_run_with_two_of_warmup();
        b.update(&Snapshot {
            elapsed: Duration::from_secs(2),
            ..busy()
        });
        let msg = b.bar.message();
        assert!(!msg.contains("warmup"), "{msg}");
        assert!(msg.starts_with("123456789012 verified, "), "{msg}");
    }

    /// Pins that a run with nothing lost does not mention losses: ", 0
    /// lost" would read as a measured zero on TCP, where nothing can be.
    #[test]
    fn bar_message_without_losses_does_not_mention_them() {
        for stop in [Stop::Count(10), Stop::Duration(Duration::from_secs(10))] {
            let b = Bar::with_target(&spec(stop, Duration::ZERO), ProgressDrawTarget::hidden());
            b.update(&Snapshot { lost: 0, ..busy() });
            let msg = b.bar.message();
            assert!(!msg.contains("lost"), "{msg}");
            assert!(msg.contains(" MB, 12345678 errors"), "{msg}");
        }
    }

    /// Pins that finishing erases the bar: the summary table that follows
    /// on stdout must not sit under a stale progress line.
    #[test]
    fn finished_bar_leaves_nothing_on_the_line() {
        let screen = Screen::default();
        let target = ProgressDrawTarget::term_like(Box::new(screen.clone()));
        let b = Bar::with_target(&spec(Stop::Count(10), Duration::ZERO), target);
        b.update(&busy());
        b.bar.tick();
        let shown = screen.1.lock().unwrap().clone();
        assert!(shown.contains("verified"), "bar not drawn: {shown:?}");
        b.finish();
        let shown = screen.1.lock().unwrap().clone();
        assert_eq!(shown, "", "bar left behind");
    }
}
