//! Stdout that ends xtask quietly once its reader has gone, as Unix tools
//! do (`cargo xtask help | head -1`), where `println!` would panic
//! ("failed printing to stdout: Broken pipe") and exit with 101.
//!
//! `outln!` and `out!` are `println!` and `print!` with that one
//! difference. On EPIPE they unwind the stack with a [`StdoutClosed`]
//! payload, which prints nothing (`resume_unwind` skips the panic hook)
//! but runs every guard on the way, as a panic would: servers killed,
//! network namespaces deleted, QEMU stopped. [`until_stdout_closes`],
//! around the command in `main`, catches it; `main` then stops any process
//! group still registered (as the signal thread would) and exits with
//! [`CLOSED_STDOUT`].
//!
//! Why not SIGPIPE's default action (death by the signal, the other usual
//! way): it would end xtask with no guard run and no process group
//! stopped, and a child's pipe closing early would end xtask too.

use std::io;
use std::panic::{self, AssertUnwindSafe};

/// The exit status once stdout is gone: 141, 128 + SIGPIPE, what a shell
/// reports for `yes | head -1`'s `yes` and the 128 + signal that xtask
/// exits with on SIGINT, SIGTERM and SIGHUP (`signals.rs`). A pipeline
/// under `set -o pipefail` then sees the output was cut short.
pub(crate) const CLOSED_STDOUT: u8 = 141;

/// The unwinding payload of a write to a closed stdout.
pub(crate) struct StdoutClosed;

/// `println!`, but a closed stdout ends xtask quietly (module docs). For
/// the main thread: on another, it ends that thread as a panic would.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        $crate::out::written(::std::writeln!(::std::io::stdout().lock(), $($arg)*))
    }};
}

/// `print!`, but a closed stdout ends xtask quietly, as `outln!`.
macro_rules! out {
    ($($arg:tt)*) => {{
        use ::std::io::Write as _;
        $crate::out::written(::std::write!(::std::io::stdout().lock(), $($arg)*))
    }};
}

/// What `outln!` and `out!` do with the result of a write: nothing,
/// unwind with [`StdoutClosed`] on EPIPE, or panic as `println!` does.
pub(crate) fn written(result: io::Result<()>) {
    match result {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
            panic::resume_unwind(Box::new(StdoutClosed))
        }
        Err(e) => panic!("failed printing to stdout: {e}"),
    }
}

/// Runs `command`, or returns `None` if it stopped on a closed stdout.
/// Any other panic goes on.
pub(crate) fn until_stdout_closes<T>(command: impl FnOnce() -> T) -> Option<T> {
    match panic::catch_unwind(AssertUnwindSafe(command)) {
        Ok(t) => Some(t),
        Err(payload) if payload.is::<StdoutClosed>() => None,
        Err(payload) => panic::resume_unwind(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_broken_pipe_unwinds_quietly_to_until_stdout_closes() {
        use std::cell::Cell;
        struct Guard<'a>(&'a Cell<bool>);
        impl Drop for Guard<'_> {
            fn drop(&mut self) {
                self.0.set(true);
            }
        }
        let (dropped, went_on) = (Cell::new(false), Cell::new(false));
        let stopped = until_stdout_closes(|| {
            let _guard = Guard(&dropped);
            written(Err(io::ErrorKind::BrokenPipe.into()));
            went_on.set(true);
        });
        assert!(stopped.is_none() && !went_on.get());
        assert!(dropped.get(), "guards run on the way out");
        assert_eq!(until_stdout_closes(|| 7), Some(7));
        written(Ok(()));
    }

    #[test]
    fn other_write_errors_and_panics_go_on() {
        let other = panic::catch_unwind(|| {
            until_stdout_closes(|| written(Err(io::ErrorKind::StorageFull.into())))
        });
        let message = other.expect_err("ENOSPC panics");
        let message = message
            .downcast_ref::<String>()
            .expect("a formatted message");
        assert!(
            message.starts_with("failed printing to stdout: "),
            "{message}"
        );
    }
}
