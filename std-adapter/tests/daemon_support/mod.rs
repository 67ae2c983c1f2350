//! Helpers of the daemon tests (socket activation, notify, metrics, inetd,
//! privileges): passing sockets as a service manager does, a notify socket,
//! a Prometheus parser. Use beside `serve_support`.
#![allow(dead_code, unreachable_pub)]

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::serve_support::{IO_TIMEOUT, Proc};

#[path = "../listening/mod.rs"]
mod listening;
#[allow(unused_imports)] // not every test file uses them
pub use listening::unix_listening;

/// The `ricochet` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_ricochet")
}

/// `ricochet serve ARGS` started as systemd starts a socket-activated
/// service: `fds` become descriptors 3, 4, ... with `LISTEN_FDS` and
/// `LISTEN_PID` set (to the child's own PID, or to `pid` if given).
pub fn serve_activated(
    args: &[&str],
    fds: Vec<OwnedFd>,
    pid: Option<&str>,
    envs: &[(&str, &str)],
) -> Proc {
    let pid = pid.unwrap_or("$$");
    let script = format!(
        "export LISTEN_PID={pid} LISTEN_FDS={}; exec \"$0\" \"$@\"",
        fds.len()
    );
    let mut cmd = Command::new("sh");
    cmd.arg("-c").arg(script).arg(bin()).arg("serve").args(args);
    cmd.envs(envs.iter().copied());
    let raw: Vec<i32> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    // SAFETY: the hook runs in the forked child before exec and calls only
    // async-signal-safe functions (fcntl, dup2, close) on descriptors this
    // process owns (`fds`, kept alive until spawn returns).
    unsafe {
        cmd.pre_exec(move || {
            // First out of the way (a source may sit where a target goes),
            // then into place: 3, 4, ... (dup2 clears close-on-exec).
            let mut high = Vec::with_capacity(raw.len());
            for &fd in &raw {
                let h = libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 100);
                if h < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                high.push(h);
            }
            for (i, &h) in high.iter().enumerate() {
                if libc::dup2(h, 3 + i as i32) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                libc::close(h);
            }
            Ok(())
        });
    }
    let proc = Proc::spawn(cmd);
    drop(fds);
    proc
}

/// A `NOTIFY_SOCKET` of our own: a Unix datagram socket in a temp dir.
pub struct NotifySocket {
    pub socket: UnixDatagram,
    pub path: PathBuf,
    _dir: tempfile::TempDir,
}

impl NotifySocket {
    pub fn new() -> NotifySocket {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify.sock");
        let socket = UnixDatagram::bind(&path).unwrap();
        NotifySocket {
            socket,
            path,
            _dir: dir,
        }
    }

    /// The value for `NOTIFY_SOCKET`.
    pub fn env(&self) -> &str {
        self.path.to_str().unwrap()
    }

    /// The next message within `timeout`, if any.
    pub fn next(&self, timeout: Duration) -> Option<String> {
        self.socket.set_read_timeout(Some(timeout)).unwrap();
        let mut buf = [0u8; 4096];
        match self.socket.recv(&mut buf) {
            Ok(n) => Some(String::from_utf8_lossy(&buf[..n]).into_owned()),
            Err(_) => None,
        }
    }

    /// Waits (at most `timeout`) for a message with the line `line`; returns it.
    pub fn expect(&self, line: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = self
                .next(left.max(Duration::from_millis(1)))
                .unwrap_or_else(|| panic!("no {line:?} on NOTIFY_SOCKET within {timeout:?}"));
            if msg.lines().any(|l| l == line) {
                return msg;
            }
            assert!(Instant::now() < deadline, "no {line:?} within {timeout:?}");
        }
    }
}

/// `GET /metrics` on `addr` with an optional `Accept` header: (status line, headers, body).
pub fn http_get(addr: SocketAddr, path: &str, accept: Option<&str>) -> (String, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect metrics");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let accept = accept
        .map(|a| format!("Accept: {a}\r\n"))
        .unwrap_or_default();
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n{accept}\r\n").unwrap();
    let mut all = String::new();
    s.read_to_string(&mut all).expect("response until close");
    let (head, body) = all.split_once("\r\n\r\n").expect("a head");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    (status.to_owned(), headers.to_owned(), body.to_owned())
}

/// Debian's python3 with `prometheus_client` (package python3-prometheus-client,
/// installed by `cargo xtask deps`).
pub fn python_with_prometheus_client() -> &'static str {
    let python = "/usr/bin/python3";
    let ok = Command::new(python)
        .args(["-c", "import prometheus_client"])
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{python} cannot import prometheus_client: run `cargo xtask deps` or \
         `apt-get install -y --no-install-recommends python3-prometheus-client`"
    );
    python
}

/// Parses `text` with the official Python client's parser for `format`
/// ("openmetrics" or "prometheus"); returns `name{labels} value` lines, or
/// the parser's error.
pub fn parse_exposition(text: &str, format: &str) -> Result<Vec<String>, String> {
    let parser = match format {
        "openmetrics" => "prometheus_client.openmetrics.parser",
        _ => "prometheus_client.parser",
    };
    let script = format!(
        "import sys\nfrom {parser} import text_string_to_metric_families as parse\n\
         for f in parse(sys.stdin.read()):\n\
         \x20   for s in f.samples:\n\
         \x20       labels = ','.join('%s=\"%s\"' % kv for kv in sorted(s.labels.items()))\n\
         \x20       print('%s{{%s}} %s %s' % (s.name, labels, int(s.value), f.type))\n"
    );
    let mut child = Command::new(python_with_prometheus_client())
        .args(["-c", &script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_owned)
            .collect())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// The value of sample `key` (`name{a="x",b="y"}`, labels sorted) in parsed lines.
pub fn value(parsed: &[String], key: &str) -> u64 {
    parsed
        .iter()
        .find_map(|l| {
            let rest = l.strip_prefix(key)?.strip_prefix(' ')?;
            rest.split(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no sample {key} in {parsed:#?}"))
}

/// Polls `cond` every 10 ms until true or `timeout` passes (then panics with `what`).
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether `program` is on PATH; panics with the install hint if not
/// (checks are never skipped silently).
pub fn require(program: &str, package: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "{program} is needed: run `cargo xtask deps` or `apt-get install -y \
         --no-install-recommends {package}`"
    );
}

/// Every stdout line left, up to EOF (the process has exited or is exiting).
pub fn rest_of_stdout(p: &Proc) -> Vec<String> {
    rest_of(&p.stdout)
}

/// Every line left on `lines` (a `Proc`'s stdout or stderr), up to EOF.
pub fn rest_of(lines_rx: &std::sync::mpsc::Receiver<String>) -> Vec<String> {
    let mut lines = Vec::new();
    loop {
        match lines_rx.recv_timeout(IO_TIMEOUT) {
            Ok(l) => lines.push(l),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => return lines,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => panic!("stdout still open"),
        }
    }
}

/// The repository root (contrib/ lives there).
pub fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}
