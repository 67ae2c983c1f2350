//! Command-line front ends: argument parsing and reporting only; the work is in the library.
//!
//! Nothing here may panic because stdout or stderr is closed or full (a
//! `| tee log` whose reader exited, `2>&-`, `> /dev/full`): `println!` and
//! `eprintln!` panic on such a write error, so every message goes through
//! [`say`], which drops it instead, and log records through [`log`]'s writer.

use std::fmt;
use std::io::Write;

pub(crate) mod bar;
pub(crate) mod cert;
pub(crate) mod generate;
pub(crate) mod inetd;
mod ipv6_wildcard;
pub(crate) mod log;
pub(crate) mod notify;
pub(crate) mod plot;
pub(crate) mod privileges;
pub(crate) mod probe;
pub(crate) mod probe_out;
pub(crate) mod serve;
mod serve_values;
pub(crate) mod tls;
mod udp_queue;
pub(crate) mod unused_options;

/// Writes one line to stderr; a closed or full stderr loses it, nothing more.
/// Once logging runs ([`log::init`]) the line takes the log queue, so a
/// stderr nobody reads does not block the caller either.
pub(crate) fn say(args: fmt::Arguments<'_>) {
    if log::say(args) {
        return;
    }
    let _ = writeln!(std::io::stderr().lock(), "{args}");
}

/// [`say`] for a thread that must not wait on stderr (a signal handler's:
/// a stderr nobody reads would block it, and the next signal with it):
/// the line is written by a thread of its own, waited for at most `wait`.
pub(crate) fn say_within(wait: std::time::Duration, line: String) {
    let (done, written) = std::sync::mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("ricochet-say".into())
        .spawn(move || {
            say(format_args!("{line}"));
            let _ = done.send(());
        });
    if spawned.is_ok() {
        let _ = written.recv_timeout(wait);
    }
}
