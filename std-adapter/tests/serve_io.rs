//! `--io auto|uring|epoll`: which backend runs, and the fallback when the
//! kernel refuses io_uring.
//!
//! The refusal is real, without root: the server child installs a seccomp
//! filter (after `PR_SET_NO_NEW_PRIVS`, which any process may) that makes
//! `io_uring_setup` fail with `EPERM`, the way container runtimes' default
//! profiles do; or kills the process if it is ever called, to prove that
//! `--io epoll` never tries io_uring.
#![cfg(target_os = "linux")]
#![allow(unsafe_code)]

mod serve_support;
mod tls_support;

use std::net::TcpStream;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::Duration;

use serve_support::{IO_TIMEOUT, Proc, STOP_TIMEOUT, round_trip};

/// What the filter does to `io_uring_setup`.
#[derive(Clone, Copy)]
enum Refuse {
    /// Fails with `EPERM`.
    Eperm,
    /// Kills the process.
    Kill,
}

/// `ricochet serve ARGS` with `io_uring_setup` refused by seccomp (and
/// `RICOCHET_IO` unset, so only ARGS choose).
fn serve_refused(refuse: Refuse, args: &[&str]) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.arg("serve").args(args).env_remove("RICOCHET_IO");
    let action = match refuse {
        Refuse::Eperm => libc::SECCOMP_RET_ERRNO | (libc::EPERM as u32 & libc::SECCOMP_RET_DATA),
        Refuse::Kill => libc::SECCOMP_RET_KILL_PROCESS,
    };
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes two `prctl` calls on data it owns (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || install_filter(action));
    }
    Proc::spawn(cmd)
}

/// A seccomp filter: `action` for `io_uring_setup`, allow everything else.
fn install_filter(action: u32) -> std::io::Result<()> {
    let nr = libc::SYS_io_uring_setup as u32;
    let stmt = |code: u32, k: u32| libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    let filter = [
        // A = seccomp_data.nr
        stmt(libc::BPF_LD | libc::BPF_W | libc::BPF_ABS, 0),
        // if A == io_uring_setup: next, else skip one
        libc::sock_filter {
            code: (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16,
            jt: 0,
            jf: 1,
            k: nr,
        },
        stmt(libc::BPF_RET | libc::BPF_K, action),
        stmt(libc::BPF_RET | libc::BPF_K, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr().cast_mut(),
    };
    // SAFETY: plain prctl calls; `prog` and `filter` outlive them (the
    // kernel copies the program).
    unsafe {
        if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0
            || libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER,
                &raw const prog,
            ) != 0
        {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(())
}

fn echo_once(p: &Proc) {
    let found = p.listening(1);
    let mut s = TcpStream::connect(found[0].1.as_str()).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    round_trip(&mut s, b"still served\n");
}

#[test]
fn io_auto_falls_back_to_epoll_with_the_reason_when_seccomp_refuses_io_uring() {
    let mut p = serve_refused(Refuse::Eperm, &["--tcp", "127.0.0.1:0", "--io", "auto"]);
    let why = p.wait_stderr("io_uring is not available", IO_TIMEOUT);
    assert!(
        why.contains("seccomp") && why.contains("epoll"),
        "the fallback line should name the likely cause and the backend: {why}"
    );
    let serving = p.wait_stderr("serving", IO_TIMEOUT);
    assert!(serving.contains("io=epoll"), "{serving}");
    echo_once(&p);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn io_uring_asked_for_and_refused_exits_1_naming_the_cause_and_the_fix() {
    let mut p = serve_refused(Refuse::Eperm, &["--tcp", "127.0.0.1:0", "--io", "uring"]);
    let status = p.wait_exit(IO_TIMEOUT);
    assert_eq!(status.code(), Some(1), "{}", p.drain_stderr());
    let err = p.drain_stderr();
    assert!(
        err.contains("io_uring is not available") && err.contains("--io epoll"),
        "{err}"
    );
}

/// `ricochet serve ARGS` under a locked-memory limit (`RLIMIT_MEMLOCK`) of
/// `limit` bytes, which each worker's io_uring rings count against for a
/// process without `CAP_IPC_LOCK` (a service's user; systemd's default is
/// 8 MiB, shared by all the user's processes). A root test process drops
/// the capability from the child's bounding set, so root is held to the
/// limit too; root processes that keep it are not counted against it.
fn serve_memlocked(limit: u64, args: &[&str]) -> Proc {
    /// `CAP_IPC_LOCK` (linux/capability.h).
    const CAP_IPC_LOCK: libc::c_ulong = 14;
    assert!(
        !serve_support::is_root() || may_drop_capabilities(),
        "root without CAP_SETPCAP cannot drop CAP_IPC_LOCK from the server, which the \
         locked-memory limit then would not hold"
    );
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.arg("serve").args(args).env_remove("RICOCHET_IO");
    // SAFETY: the closure runs in the child between fork and exec and only
    // makes two system calls on data it owns (no allocation, no locks).
    unsafe {
        cmd.pre_exec(move || {
            // Fails (EPERM) without CAP_SETPCAP: a user other than root
            // has no CAP_IPC_LOCK to lose either; root must lose it, or
            // the limit would not hold it (the spawn fails, naming this).
            // (Checked before the spawn: see `may_drop_capabilities`.)
            libc::prctl(libc::PR_CAPBSET_DROP, CAP_IPC_LOCK, 0, 0, 0);
            let rl = libc::rlimit {
                rlim_cur: limit,
                rlim_max: limit,
            };
            if libc::setrlimit(libc::RLIMIT_MEMLOCK, &raw const rl) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Proc::spawn(cmd)
}

/// Whether this process holds `CAP_SETPCAP` (bit 8 of `CapEff` in
/// /proc/self/status), which dropping a capability from the bounding set needs.
fn may_drop_capabilities() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .is_some_and(|caps| caps & (1 << 8) != 0)
}

/// Enough locked memory for the one ring `--io auto` tries first, not for
/// the rings of four workers.
const MEMLOCK_FOR_ONE_RING: u64 = 1 << 20;

#[test]
fn io_auto_falls_back_to_epoll_when_the_workers_rings_exceed_the_locked_memory_limit() {
    // It exited 1 with "cannot create an event loop: Cannot allocate
    // memory": the trial ring fitted, the workers' rings did not (14
    // workers under systemd's default 8 MiB, so the default --threads on a
    // 14-core host).
    let mut p = serve_memlocked(
        MEMLOCK_FOR_ONE_RING,
        &["--tcp", "127.0.0.1:0", "--threads", "4", "--io", "auto"],
    );
    let lines = p.stderr_until("serving workers=", IO_TIMEOUT);
    let serving = lines.last().unwrap();
    assert!(serving.contains("io=epoll"), "{lines:#?}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains("io_uring is not available") && l.contains("locked-memory")),
        "the fallback line should name the locked-memory limit: {lines:#?}"
    );
    echo_once(&p);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success(), "{}", p.drain_stderr());
}

/// The same fallback with a TLS listener beside plain TCP: on io_uring the
/// TLS listener has epoll event loops of its own inside the io_uring
/// workers, and when those cannot start, the epoll workers that replace
/// them serve TLS too (the fallback's copies of the sockets are put back
/// together).
#[test]
fn io_auto_fallback_to_epoll_keeps_serving_a_tls_listener_beside_plain_tcp() {
    let pki = tls_support::Pki::new();
    let mut p = serve_memlocked(
        MEMLOCK_FOR_ONE_RING,
        &[
            "--tcp",
            "127.0.0.1:0",
            "--tls",
            "127.0.0.1:0",
            "--tls-cert",
            pki.cert.to_str().unwrap(),
            "--tls-key",
            pki.key.to_str().unwrap(),
            "--threads",
            "4",
            "--io",
            "auto",
        ],
    );
    let lines = p.stderr_until("serving workers=", IO_TIMEOUT);
    assert!(lines.last().unwrap().contains("io=epoll"), "{lines:#?}");
    // io_uring was tried (with a TLS listener it used not to be) and failed.
    assert!(
        lines
            .iter()
            .any(|l| l.contains("io_uring is not available") && l.contains("locked-memory")),
        "{lines:#?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("tls_loops=")),
        "no TLS event loops of their own on epoll: {lines:#?}"
    );
    let found = p.listening(2);
    let addr = |kind: &str| -> std::net::SocketAddr {
        let (_, a) = found.iter().find(|(k, _)| k == kind).expect(kind);
        a.parse().unwrap()
    };
    let mut c =
        tls_support::Client::connect(addr("tls"), tls_support::client_config(&pki.ca, None));
    c.send(b"over tls");
    assert_eq!(c.recv(8), b"over tls");
    let mut s = TcpStream::connect(addr("tcp")).expect("connect");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    round_trip(&mut s, b"still served\n");
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success(), "{}", p.drain_stderr());
}

#[test]
fn io_uring_asked_for_beyond_the_locked_memory_limit_exits_1_naming_the_limit_and_the_fix() {
    let mut p = serve_memlocked(
        MEMLOCK_FOR_ONE_RING,
        &["--tcp", "127.0.0.1:0", "--threads", "4", "--io", "uring"],
    );
    let status = p.wait_exit(IO_TIMEOUT);
    let err = p.drain_stderr();
    assert_eq!(status.code(), Some(1), "{err}");
    for needle in [
        "locked-memory",
        "ulimit -l",
        "LimitMEMLOCK=",
        "--threads",
        "--io epoll",
    ] {
        assert!(err.contains(needle), "no {needle:?} in: {err}");
    }
}

#[test]
fn io_epoll_never_calls_io_uring_setup() {
    // The filter kills the process on the first io_uring_setup.
    let mut p = serve_refused(Refuse::Kill, &["--tcp", "127.0.0.1:0", "--io", "epoll"]);
    let serving = p.wait_stderr("serving", IO_TIMEOUT);
    assert!(serving.contains("io=epoll"), "{serving}");
    echo_once(&p);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

#[test]
fn io_environment_variable_chooses_the_backend_like_the_flag() {
    // Empty (`Environment=RICOCHET_IO=` in a unit) is unset: auto, here
    // io_uring. It was "a value is required for '--io'", an option not given.
    for (env, want) in [
        ("epoll", "io=epoll"),
        ("uring", "io=uring"),
        ("", "io=uring"),
    ] {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
        cmd.args(["serve", "--tcp", "127.0.0.1:0"])
            .env("RICOCHET_IO", env);
        let mut p = Proc::spawn(cmd);
        let serving = p.wait_stderr("serving", IO_TIMEOUT);
        assert!(serving.contains(want), "RICOCHET_IO={env}: {serving}");
        echo_once(&p);
        p.signal("TERM");
        assert!(p.wait_exit(IO_TIMEOUT).success());
    }
}

#[test]
fn io_uring_workers_take_tcp_receives_in_bundles_on_this_kernel() {
    // Each worker checks bundles (Linux 6.10), their per-completion cap
    // (about 6.15) and their total limit per arm (about 6.17) on its own
    // ring before serving; this machine (6.18) has all three.
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args(["serve", "--tcp", "127.0.0.1:0", "--io", "uring"])
        .env("RUST_LOG", "ricochet=debug")
        .env_remove("RICOCHET_IO");
    let mut p = Proc::spawn(cmd);
    let line = p.wait_stderr("receive bundles", IO_TIMEOUT);
    assert!(
        line.contains("bundles on") && line.contains("cap=65536") && line.contains("per arm"),
        "the worker's check should pass here: {line}"
    );
    echo_once(&p);
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// The filled slots in the registered file tables of process `pid`'s
/// rings: `/proc/PID/fdinfo` of each io_uring descriptor lists them under
/// `UserFiles:`, one `N: NAME` line per slot (`<none>` for an empty one,
/// on kernels that list those).
fn fixed_files(pid: u32) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).expect("list fds") {
        let entry = entry.expect("fd entry");
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue; // closed meanwhile
        };
        if !link.to_string_lossy().contains("io_uring") {
            continue;
        }
        let info_path = format!("/proc/{pid}/fdinfo/{}", entry.file_name().to_string_lossy());
        let Ok(info) = std::fs::read_to_string(info_path) else {
            continue;
        };
        n += info
            .lines()
            .skip_while(|l| !l.starts_with("UserFiles:"))
            .skip(1)
            .map_while(|l| {
                let (index, name) = l.trim_start().split_once(": ")?;
                index.parse::<u32>().ok()?;
                Some(name.trim() != "<none>")
            })
            .filter(|&filled| filled)
            .count();
    }
    n
}

/// Waits (bounded) until `fixed_files(pid)` is `want`; what it last saw.
fn wait_fixed_files(pid: u32, want: usize) -> usize {
    let deadline = std::time::Instant::now() + IO_TIMEOUT;
    loop {
        let n = fixed_files(pid);
        if n == want || std::time::Instant::now() > deadline {
            return n;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether this kernel takes a file out of an io_uring table at once
/// (Linux 6.13): where not, the server keeps plain descriptors.
fn kernel_releases_fixed_files_at_once() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").expect("osrelease");
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).expect("major");
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).expect("minor");
    (major, minor) >= (6, 13)
}

#[test]
fn io_uring_connections_sit_in_fixed_file_slots_emptied_when_they_close() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ricochet"));
    cmd.args([
        "serve",
        "--tcp",
        "127.0.0.1:0",
        "--io",
        "uring",
        "--threads",
        "1",
    ])
    .env("RUST_LOG", "ricochet=debug")
    .env_remove("RICOCHET_IO");
    let mut p = Proc::spawn(cmd);
    let line = p.wait_stderr("file table", IO_TIMEOUT);
    let used = kernel_releases_fixed_files_at_once();
    if used {
        assert!(line.contains("connections use fixed files"), "{line}");
    } else {
        assert!(line.contains("older than 6.13"), "{line}");
    }
    let addr = p.listening(1)[0].1.clone();
    let mut a = TcpStream::connect(addr.as_str()).expect("connect");
    let mut b = TcpStream::connect(addr.as_str()).expect("connect");
    for s in [&mut a, &mut b] {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        round_trip(s, b"in a slot\n");
    }
    let open = if used { 2 } else { 0 };
    assert_eq!(
        wait_fixed_files(p.id(), open),
        open,
        "each open connection in a slot"
    );
    // The client closes: the server echoes its FIN, frees the connection
    // and empties its slot (else the table would keep the socket open).
    drop(a);
    let left = if used { 1 } else { 0 };
    assert_eq!(
        wait_fixed_files(p.id(), left),
        left,
        "the closed one's slot emptied"
    );
    // The other still echoes through its slot.
    round_trip(&mut b, b"still served\n");
    p.signal("TERM");
    assert!(p.wait_exit(IO_TIMEOUT).success());
}

/// A library server on io_uring, one worker, TCP on a free loopback port.
fn uring_server() -> ricochet::serve::ServerHandle {
    ricochet::serve::Server::bind(ricochet::serve::ServerConfig {
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        io: ricochet::serve::IoBackend::Uring,
        ..ricochet::serve::ServerConfig::default()
    })
    .expect("bind")
    .spawn()
    .expect("io_uring works on this kernel (Linux >= 6.0, no seccomp filter)")
}

#[test]
fn io_uring_library_server_reports_its_backend() {
    let handle = uring_server();
    assert_eq!(handle.io(), ricochet::serve::IoBackend::Uring);
    let mut s = serve_support::connect(handle.tcp_addr().unwrap());
    round_trip(&mut s, &serve_support::payload(3, 10_000));
    drop(s);
    handle.shutdown();
    handle.join_within(STOP_TIMEOUT).expect("join");
}

/// Pins the UDP sockets' buffer groups on an io_uring worker: each of one
/// worker's UDP sockets gets a group of its own, none the TCP receives'
/// (the kernel refuses a group registered twice, and the server would not
/// start on io_uring). `--io auto` would hide it by serving with epoll.
#[test]
fn io_uring_worker_serves_each_of_its_udp_sockets_on_a_buffer_group_of_its_own() {
    let handle = ricochet::serve::Server::bind(ricochet::serve::ServerConfig {
        udp: vec!["127.0.0.1:0".parse().unwrap(); 2],
        threads: 1,
        io: ricochet::serve::IoBackend::Uring,
        ..ricochet::serve::ServerConfig::default()
    })
    .expect("bind")
    .spawn()
    .expect("one io_uring worker with two UDP sockets");
    assert_eq!(handle.io(), ricochet::serve::IoBackend::Uring);
    let udp: Vec<_> = handle
        .local_addrs()
        .iter()
        .filter_map(|e| match e {
            ricochet::serve::Endpoint::Udp(a) => Some(*a),
            _ => None,
        })
        .collect();
    assert_eq!(udp.len(), 2, "{:?}", handle.local_addrs());
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    for (i, &addr) in udp.iter().enumerate() {
        let data = serve_support::payload(i as u64, 100);
        client.send_to(&data, addr).unwrap();
        let mut buf = [0u8; 2048];
        let (n, from) = client.recv_from(&mut buf).expect("the echo");
        assert_eq!((from, &buf[..n]), (addr, &data[..]));
    }
    handle.shutdown();
    handle.join_within(STOP_TIMEOUT).expect("join");
}

#[test]
fn io_uring_connection_turning_from_ping_pong_to_a_stream_and_back_echoes_every_byte_in_order() {
    // 1,100 64-byte round trips end the first receive (a bundle, on this
    // kernel) at its 64 KiB total, mid-conversation, and it is armed
    // again; a 4 MiB stream then takes bundles of whole buffers, paused
    // and re-armed at the connection's cap; small round trips follow.
    let handle = uring_server();
    let mut s = serve_support::connect(handle.tcp_addr().unwrap());
    for i in 0..1100 {
        round_trip(&mut s, &serve_support::payload(i, 64));
    }
    let data = serve_support::payload(7, 4 << 20);
    let mut writer = s.try_clone().expect("clone");
    let sent = data.clone();
    let w = std::thread::spawn(move || std::io::Write::write_all(&mut writer, &sent));
    let mut back = vec![0; data.len()];
    std::io::Read::read_exact(&mut s, &mut back).expect("the stream's echo");
    w.join().expect("writer").expect("write");
    assert!(back == data, "the stream's echo differs");
    for i in 0..100 {
        round_trip(&mut s, &serve_support::payload(2000 + i, 64));
    }
    drop(s);
    handle.shutdown();
    handle.join_within(STOP_TIMEOUT).expect("join");
}

/// CPU time (user + system) the process `pid` has used so far.
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    // Fields after the command name (which may hold spaces), from field 3 on.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
    Duration::from_millis(ticks * 1000 / hz)
}

#[test]
fn busy_poll_worker_stops_spinning_for_sparse_traffic_and_silence() {
    // The longest window (1ms), opened by a burst of back-to-back round
    // trips. Then traffic sparser than the window (a round trip every 3ms)
    // must close it, and silence must cost nothing: a worker that kept
    // spinning would burn up to a core in either.
    for io in ["epoll", "uring"] {
        let mut p = Proc::serve(&[
            "--tcp",
            "127.0.0.1:0",
            "--io",
            io,
            "--threads",
            "1",
            "--busy-poll",
            "1ms",
        ]);
        let found = p.listening(1);
        let mut s = TcpStream::connect(found[0].1.as_str()).expect("connect");
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        for i in 0..2000u32 {
            round_trip(&mut s, &i.to_le_bytes());
        }
        // Pacing and measuring windows below, not synchronisation: the
        // server's work does not depend on them.
        let before = cpu_time(p.id());
        for i in 0..200u32 {
            std::thread::sleep(Duration::from_millis(3));
            round_trip(&mut s, &i.to_le_bytes());
        }
        let sparse = cpu_time(p.id()) - before;
        let before = cpu_time(p.id());
        std::thread::sleep(Duration::from_secs(1));
        let silent = cpu_time(p.id()) - before;
        assert!(
            sparse < Duration::from_millis(150) && silent < Duration::from_millis(60),
            "--io {io}: the server used {sparse:?} of CPU for 200 round trips 3ms apart and \
             {silent:?} in 1s of silence"
        );
        round_trip(&mut s, b"still served after the silence\n");
        p.signal("TERM");
        assert!(p.wait_exit(IO_TIMEOUT).success(), "--io {io}");
    }
}

#[test]
fn busy_poll_beyond_1ms_is_refused_with_the_bound_and_the_default() {
    let out = serve_support::output_within(
        Command::new(env!("CARGO_BIN_EXE_ricochet")).args([
            "serve",
            "--tcp",
            "127.0.0.1:0",
            "--busy-poll",
            "5ms",
        ]),
        IO_TIMEOUT,
    );
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--busy-poll") && err.contains("at most 1ms") && err.contains("50us"),
        "{err}"
    );
}
