//! `cargo xtask bench-tls`: TLS echo against plain TCP and against socat's
//! TLS echo, in one run, with `ricochet probe` as the load generator (the
//! shared yardstick speaks no TLS). Not a CI stage: measured, not asserted.
//!
//! One `ricochet serve` serves TCP and TLS side by side (same workers, same
//! certificate for every server); socat serves `OPENSSL-LISTEN,fork
//! EXEC:cat` with the same certificate. Every case runs `--warmup 1s` then
//! `-d SECS` with one probe thread per core and is verified byte for byte
//! by the probe (a failed case fails the command). Server CPU is read from /proc (socat: its own plus
//! its exited children's). Prints a Markdown table.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::vm::free_port;
use crate::{Ctx, procstat, run};

/// One measured case: probe arguments after the target.
struct Case {
    name: &'static str,
    args: &'static [&'static str],
}

const CASES: &[Case] = &[
    Case {
        name: "pp C=1 64 B",
        args: &["-c", "1"],
    },
    Case {
        name: "pp C=100 64 B",
        args: &["-c", "100"],
    },
    Case {
        name: "stream C=1 64 KiB",
        args: &["-c", "1", "-p", "stream", "-s", "64KiB"],
    },
    Case {
        name: "stream C=16 16 KiB",
        args: &["-c", "16", "-p", "stream", "-s", "16KiB"],
    },
    Case {
        name: "crr C=8",
        args: &["-c", "8", "-p", "crr"],
    },
    Case {
        name: "crr C=8 no resumption",
        args: &["-c", "8", "-p", "crr", "--tls-resumption", "off"],
    },
];

/// A server under test: its name, target, and the process whose CPU counts
/// (owned, and killed when dropped, by one entry only).
struct Server {
    name: &'static str,
    target: String,
    tls: bool,
    pid: u32,
    child: Option<Child>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The number after `"key":` in `json`, searching from the first `after`.
fn number(json: &str, after: &str, key: &str) -> Option<f64> {
    let from = json.find(after)?;
    let at = json[from..].find(&format!("\"{key}\":"))? + from + key.len() + 3;
    let end = json[at..]
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e'))
        .map_or(json.len(), |e| e + at);
    json[at..end].parse().ok()
}

/// Waits until something listens on 127.0.0.1:`port`.
fn wait_listening(port: u16, child: &mut Child) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if let Ok(Some(st)) = child.try_wait() {
            return Err(format!("server exited: {st}"));
        }
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(format!("nothing listens on {port} after 10 s"))
}

fn make_certificate(dir: &Path) -> Result<(), String> {
    run(
        dir,
        "openssl",
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ],
        &[],
    )
}

fn start_ricochet(bin: &str, dir: &Path) -> Result<(Server, Server), String> {
    let (tcp, tls) = (free_port()?, free_port()?);
    let spawn = || {
        Command::new(bin)
            .args(["serve", "--tcp", &format!("127.0.0.1:{tcp}")])
            .args(["--tls", &format!("127.0.0.1:{tls}")])
            .args(["--tls-cert", "cert.pem", "--tls-key", "key.pem"])
            .current_dir(dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("start ricochet serve: {e}"))
    };
    let mut child = spawn()?;
    wait_listening(tls, &mut child)?;
    let pid = child.id();
    let tls_server = Server {
        name: "ricochet TLS",
        target: format!("tls://127.0.0.1:{tls}"),
        tls: true,
        pid,
        child: Some(child),
    };
    // The same process serves plain TCP.
    let tcp_server = Server {
        name: "ricochet TCP",
        target: format!("tcp://127.0.0.1:{tcp}"),
        tls: false,
        pid,
        child: None,
    };
    Ok((tcp_server, tls_server))
}

fn start_socat(dir: &Path) -> Result<Server, String> {
    let port = free_port()?;
    let mut child = Command::new("socat")
        .arg(format!(
            "OPENSSL-LISTEN:{port},fork,reuseaddr,bind=127.0.0.1,backlog=1024,cert=cert.pem,key=key.pem,verify=0"
        ))
        .arg("EXEC:cat")
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("start socat (apt-get install socat): {e}"))?;
    wait_listening(port, &mut child)?;
    Ok(Server {
        name: "socat TLS",
        target: format!("tls://127.0.0.1:{port}"),
        tls: true,
        pid: child.id(),
        child: Some(child),
    })
}

/// Runs the TLS benchmark; `args`: `-d SECS` (default 4), `--quick` (1 s).
pub(crate) fn bench_tls(ctx: &Ctx, args: &[String]) -> Result<(), String> {
    let secs = secs_arg(args)?;
    run(
        &ctx.root,
        &crate::cargo(),
        &["build", "--release", "--locked", "-p", "ricochet"],
        &[],
    )?;
    let bin = crate::ricochet_release(ctx);
    let bin = bin.to_string_lossy().into_owned();
    let dir = std::env::temp_dir().join(format!("ricochet-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    make_certificate(&dir)?;
    let (tcp, tls) = start_ricochet(&bin, &dir)?;
    let socat = start_socat(&dir)?;
    let servers = [&tcp, &tls, &socat];
    outln!(
        "| case | server | round trips/s | MB/s | p50 | p99 | handshakes/s | handshake p50 | server CPU |"
    );
    outln!("|---|---|---|---|---|---|---|---|---|");
    let cores = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .to_string();
    for case in CASES {
        for s in servers {
            let crr = case.args.contains(&"crr");
            let resumption_flag = case.args.contains(&"--tls-resumption");
            if resumption_flag && !s.tls {
                continue;
            }
            let pid = s.pid;
            let before = procstat::cpu_seconds(pid, true);
            let mut cmd = Command::new(&bin);
            // A probe thread per core, as when these figures were first
            // taken: the probe's own default against a loopback server is
            // half the cores, and one thread encrypting and decrypting 16
            // TLS streams limits the run (1.0 against 1.35 GB/s).
            cmd.arg("probe").arg(&s.target).args(case.args).args([
                "--threads",
                &cores,
                "--warmup",
                "1s",
                "-d",
                &secs,
                "--json",
                "--timeout",
                "10s",
            ]);
            if s.tls {
                cmd.args(["--tls-ca", "cert.pem"]);
            }
            let out = cmd
                .current_dir(&dir)
                .stderr(Stdio::inherit())
                .output()
                .map_err(|e| format!("probe: {e}"))?;
            let after = procstat::cpu_seconds(pid, true);
            let json = String::from_utf8_lossy(&out.stdout).into_owned();
            if !out.status.success() {
                return Err(format!("{} / {}: probe failed: {json}", case.name, s.name));
            }
            let rt = number(&json, "", "round_trips_per_sec").unwrap_or(0.0);
            let mb = number(&json, "", "mb_per_sec").unwrap_or(0.0);
            let measured = number(&json, "", "measured_secs").unwrap_or(1.0);
            let p50 = number(&json, "\"latency_us\"", "p50").unwrap_or(0.0);
            let p99 = number(&json, "\"latency_us\"", "p99").unwrap_or(0.0);
            let (hs, hs50) = if s.tls {
                (
                    number(&json, "\"tls\":{", "handshakes_per_sec").unwrap_or(0.0),
                    number(&json, "\"handshake_us\"", "p50").unwrap_or(0.0),
                )
            } else {
                (0.0, 0.0)
            };
            // CPU over warmup + duration; per unit of the measured span's rate.
            let cpu = match (before, after) {
                (Some(b), Some(a)) => a - b,
                _ => f64::NAN,
            };
            let span = measured + 1.0;
            let cpu_unit = if case.args.contains(&"stream") {
                format!("{:.2} CPU-s/GB", cpu / (mb * span / 1000.0))
            } else if crr {
                format!("{:.0} µs/conn", cpu * 1e6 / (rt * span))
            } else {
                format!("{:.1} µs/rt", cpu * 1e6 / (rt * span))
            };
            // Outside crr every handshake happens in the warmup: none measured.
            let measured_handshakes = s.tls && hs > 0.0;
            let hs = if measured_handshakes {
                format!("{hs:.0}")
            } else {
                "–".to_owned()
            };
            let hs50 = if measured_handshakes {
                format!("{hs50:.0} µs")
            } else {
                "–".to_owned()
            };
            outln!(
                "| {} | {} | {rt:.0} | {mb:.1} | {p50:.0} µs | {p99:.0} µs | {hs} | {hs50} | {cpu_unit} |",
                case.name,
                s.name
            );
        }
    }
    drop(socat);
    drop(tls);
    drop(tcp);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}

/// `-d SECS` (a whole number, 1 to 3600; default 4) or `--quick` (1),
/// checked before anything is built.
fn secs_arg(args: &[String]) -> Result<String, String> {
    const USAGE: &str = "usage: cargo xtask bench-tls [-d SECS | --quick]";
    let mut secs = "4".to_owned();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--quick" => secs = "1".to_owned(),
            "-d" => {
                let d = it
                    .next()
                    .ok_or_else(|| format!("-d needs a number of seconds; {USAGE}"))?;
                match d.parse::<u32>() {
                    Ok(1..=3600) => secs = d.clone(),
                    _ => {
                        return Err(format!(
                            "-d {d:?}: expected whole seconds from 1 to 3600; {USAGE}"
                        ));
                    }
                }
            }
            other => return Err(format!("unknown argument {other:?}; {USAGE}")),
        }
    }
    Ok(secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strings;

    #[test]
    fn seconds_are_checked_before_building() {
        assert_eq!(secs_arg(&[]).as_deref(), Ok("4"));
        assert_eq!(secs_arg(&strings(&["--quick"])).as_deref(), Ok("1"));
        assert_eq!(secs_arg(&strings(&["-d", "10"])).as_deref(), Ok("10"));
        for bad in [
            &["-d", "x"][..],
            &["-d", "0"],
            &["-d", "2s"],
            &["-d"],
            &["-x"],
        ] {
            let e = secs_arg(&strings(bad)).unwrap_err();
            assert!(e.contains("usage: cargo xtask bench-tls"), "{bad:?}: {e}");
        }
        assert!(
            secs_arg(&strings(&["-d", "x"]))
                .unwrap_err()
                .contains("-d \"x\"")
        );
    }

    #[test]
    fn number_reads_top_level_and_nested_fields() {
        let j = r#"{"round_trips_per_sec":123.5,"latency_us":{"count":3,"p50":61,"p99":90},"tls":{"handshakes_per_sec":2e3,"handshake_us":{"p50":700}}}"#;
        assert_eq!(number(j, "", "round_trips_per_sec"), Some(123.5));
        assert_eq!(number(j, "\"latency_us\"", "p50"), Some(61.0));
        assert_eq!(number(j, "\"tls\":{", "handshakes_per_sec"), Some(2000.0));
        assert_eq!(number(j, "\"handshake_us\"", "p50"), Some(700.0));
        assert_eq!(number(j, "", "missing"), None);
    }
}
