//! xtask's stdout closed by its reader (`cargo xtask help | head -1`):
//! xtask stops quietly, as Unix tools do, with 141 (128 + SIGPIPE), the
//! status a shell reports for a tool that SIGPIPE ended, and no panic
//! ("failed printing to stdout: Broken pipe", 101).

use std::io::Read;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// What xtask exits with once its stdout is gone: 128 + SIGPIPE (13).
const CLOSED_STDOUT: i32 = 141;

/// How long one run may take: these commands only print.
const LIMIT: Duration = Duration::from_secs(30);

/// Waits for `child` up to [`LIMIT`], killing it after that.
fn wait_bounded(child: &mut Child, what: &str) -> ExitStatus {
    let deadline = Instant::now() + LIMIT;
    loop {
        if let Some(status) = child.try_wait().expect("wait for xtask") {
            return status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`xtask {what}` still running after {LIMIT:?}");
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// Runs xtask with `args`, its stdout a pipe whose read end is closed
/// before xtask starts (so its first write fails with EPIPE, every time),
/// and returns its exit status and stderr.
fn run_with_stdout_closed(args: &[&str]) -> (ExitStatus, String) {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .args(args)
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xtask");
    let mut stderr = child.stderr.take().expect("stderr piped");
    let collect = thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let status = wait_bounded(&mut child, &args.join(" "));
    (status, collect.join().expect("stderr reader"))
}

#[test]
fn help_into_a_closed_pipe_stops_quietly() {
    for args in [
        &["help"][..],
        &["--help"],
        &["-h"],
        &["stages"],
        &["bench", "--help"],
    ] {
        let (status, stderr) = run_with_stdout_closed(args);
        assert!(
            !stderr.contains("panicked") && !stderr.contains("Broken pipe"),
            "xtask {args:?}: {stderr}"
        );
        assert_eq!(
            status.code(),
            Some(CLOSED_STDOUT),
            "xtask {args:?}: {status}; stderr: {stderr}"
        );
    }
}

/// A reader that takes one line and goes (`| head -1`): the same status
/// if xtask writes after it left, 0 if all was written before.
#[test]
fn help_to_a_reader_that_leaves_early_stops_quietly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("help")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start xtask");
    let mut stdout = child.stdout.take().expect("stdout piped");
    let mut first = [0u8; 1];
    let _ = stdout.read(&mut first);
    drop(stdout);
    let status = wait_bounded(&mut child, "help");
    let mut stderr = String::new();
    let _ = child
        .stderr
        .take()
        .expect("stderr piped")
        .read_to_string(&mut stderr);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        status.success() || status.code() == Some(CLOSED_STDOUT),
        "{status}; stderr: {stderr}"
    );
}

/// With a reader that stays, help is printed whole and xtask exits 0.
#[test]
fn help_to_an_open_pipe_is_whole() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_xtask"))
        .arg("help")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start xtask");
    let mut out = String::new();
    child
        .stdout
        .take()
        .expect("stdout piped")
        .read_to_string(&mut out)
        .expect("read help");
    let status = wait_bounded(&mut child, "help");
    assert!(status.success(), "{status}");
    assert!(out.starts_with("usage: cargo xtask ") && out.ends_with("help    this text\n"));
}
