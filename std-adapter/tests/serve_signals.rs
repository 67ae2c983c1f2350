//! The signal watcher must never leave a process that ignores SIGINT and
//! SIGTERM: if its thread dies (here: its handler panics), the signals take
//! their default action again and terminate the process.
//!
//! The watcher changes process-wide signal dispositions, so each scenario
//! runs in a child process: this test binary re-executed with
//! `RICOCHET_SIGNALS_CHILD` set, running only the named test.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ricochet::serve::signals::SignalWatcher;
use ricochet::serve::{Server, ServerConfig};

const CHILD: &str = "RICOCHET_SIGNALS_CHILD";
const LIMIT: Duration = Duration::from_secs(20);

fn kill(pid: u32, sig: &str) {
    let ok = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .expect("kill")
        .success();
    assert!(ok, "kill -{sig} {pid}");
}

/// This test binary, running only `test`, with `marker` set so that the
/// test runs its child side.
fn this_test_in_a_child(test: &str, marker: &str) -> Command {
    let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"])
        .env(marker, "1");
    cmd
}

/// The child's exit status; kills it and fails with `what` if it runs
/// past [`LIMIT`].
fn exit_within_limit(child: &mut std::process::Child, what: &str) -> std::process::ExitStatus {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().expect("wait") {
            return s;
        }
        if t.elapsed() > LIMIT {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} within {LIMIT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// In the child: a server and a watcher whose handler shuts the server down
/// and then panics (as a log write on a closed stderr once did).
fn child_body() {
    let io = match std::env::var("RICOCHET_IO") {
        Ok(v) => v.parse().expect("RICOCHET_IO: auto, uring or epoll"),
        Err(_) => ricochet::serve::IoBackend::Auto,
    };
    let server = Server::bind(ServerConfig {
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        io,
        ..ServerConfig::default()
    })
    .expect("bind")
    .spawn()
    .expect("spawn");
    let controller = server.controller();
    let watcher = SignalWatcher::spawn(move |_| {
        controller.shutdown();
        panic!("the handler failed after acting");
    })
    .expect("watcher");
    println!("child: ready");
    // The first SIGTERM shuts the server down (the action ran before the panic).
    server.join().expect("join");
    let deadline = Instant::now() + LIMIT;
    while watcher.is_watching() {
        assert!(Instant::now() < deadline, "watcher still running");
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("child: watcher gone");
    // Without the fix the next SIGTERM would be swallowed and this returns normally.
    std::thread::sleep(LIMIT);
    println!("child: still alive");
}

#[test]
fn signal_watcher_that_dies_restores_the_default_action() {
    if std::env::var_os(CHILD).is_some() {
        child_body();
        return;
    }
    let mut child = this_test_in_a_child(
        "signal_watcher_that_dies_restores_the_default_action",
        CHILD,
    )
    .env("RUST_BACKTRACE", "0")
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::null())
    .spawn()
    .expect("spawn child");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    let out = child.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let wait_line = |want: &str| {
        let deadline = Instant::now() + LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(l) if l.contains(want) => return,
                Ok(_) => {}
                Err(_) => panic!("child never said {want:?}"),
            }
        }
    };
    wait_line("child: ready");
    kill(pid, "TERM");
    wait_line("child: watcher gone");
    let t = Instant::now();
    kill(pid, "TERM");
    let status = exit_within_limit(
        &mut child,
        "the child ignored SIGTERM after its watcher died",
    );
    assert_eq!(
        status.signal(),
        Some(15),
        "terminated by SIGTERM: {status:?}"
    );
    assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
}

const EARLY_CHILD: &str = "RICOCHET_SIGNALS_EARLY_CHILD";

/// In the child: a serving server, a watcher started before the server's
/// controller is handed over, and a SIGTERM in between.
fn early_child_body() {
    let (watcher, slot) = SignalWatcher::start_before(|| {}).expect("watcher");
    let server = Server::bind(ServerConfig {
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        ..ServerConfig::default()
    })
    .expect("bind")
    .spawn()
    .expect("spawn");
    signal_hook::low_level::raise(signal_hook::consts::SIGTERM).expect("raise");
    let deadline = Instant::now() + LIMIT;
    while slot.pending() == 0 {
        assert!(
            Instant::now() < deadline,
            "the SIGTERM never reached the watcher"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    println!("child: signal waiting");
    slot.attach(server.controller());
    server.join().expect("join");
    assert!(!watcher.aborted(), "one signal is a graceful shutdown");
    println!("child: stopped gracefully");
}

#[test]
fn signal_before_the_controller_is_attached_shuts_down_gracefully_on_attach() {
    if std::env::var_os(EARLY_CHILD).is_some() {
        early_child_body();
        return;
    }
    let mut child = this_test_in_a_child(
        "signal_before_the_controller_is_attached_shuts_down_gracefully_on_attach",
        EARLY_CHILD,
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn child");
    let status = exit_within_limit(&mut child, "the child did not stop");
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Killed by the default action (a SIGTERM before the watcher acted)
    // would show as `signal: 15`, with no "stopped gracefully".
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    assert!(stdout.contains("child: signal waiting"), "{stdout}");
    assert!(stdout.contains("child: stopped gracefully"), "{stdout}");
}

const BURST_CHILD: &str = "RICOCHET_SIGNALS_BURST_CHILD";

/// In the child: a watcher held in its handler by the first SIGTERM while
/// two more arrive. signal-hook's iterator reports a signal once however
/// often it came before the thread looked again; a SIGTERM sent twice in
/// quick succession was then one event, a graceful shutdown instead of the
/// stop at once the second one asks for.
fn burst_child_body() {
    use signal_hook::consts::SIGTERM;
    use signal_hook::low_level::raise;
    let (events, seen) = std::sync::mpsc::channel();
    let (release, held) = std::sync::mpsc::channel::<()>();
    let _watcher = SignalWatcher::spawn(move |ev| {
        let _ = events.send(ev);
        if ev.count == 0 {
            let _ = held.recv_timeout(LIMIT);
        }
    })
    .expect("watcher");
    // `raise` runs the handler on this thread before it returns.
    raise(SIGTERM).expect("raise");
    let first = seen.recv_timeout(LIMIT).expect("the first SIGTERM");
    assert_eq!(first.count, 0);
    raise(SIGTERM).expect("raise");
    raise(SIGTERM).expect("raise");
    release.send(()).expect("release");
    let second = seen.recv_timeout(LIMIT).expect("the second SIGTERM");
    let third = seen
        .recv_timeout(Duration::from_secs(5))
        .expect("the third SIGTERM, merged with the second");
    assert_eq!((second.name, second.count), ("SIGTERM", 1));
    assert_eq!((third.name, third.count), ("SIGTERM", 2));
    println!("child: every signal counted");
}

#[test]
fn signals_that_come_while_the_watcher_is_busy_are_each_an_event() {
    if std::env::var_os(BURST_CHILD).is_some() {
        burst_child_body();
        return;
    }
    let mut child = this_test_in_a_child(
        "signals_that_come_while_the_watcher_is_busy_are_each_an_event",
        BURST_CHILD,
    )
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn child");
    let status = exit_within_limit(&mut child, "the child did not finish");
    let out = child.wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(status.success(), "{status:?}\n{stdout}\n{stderr}");
    assert!(stdout.contains("child: every signal counted"), "{stdout}");
}
