//! Under a real xinetd, started by the test on a loopback port and killed
//! by its PID.

use super::*;

/// An xinetd serving one `ricochet serve --inetd` service on a loopback
/// port; killed by its PID on drop.
struct Xinetd {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Xinetd {
    /// Starts xinetd with one service (`udp`: dgram wait, else stream
    /// nowait) running `ricochet serve --inetd ARGS` on a free port, and
    /// waits until it answers. A port taken between choosing and binding
    /// is retried with another.
    fn start(udp: bool, args: &str) -> Xinetd {
        require("xinetd", "xinetd");
        for _ in 0..3 {
            let port = if udp {
                UdpSocket::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            } else {
                TcpListener::bind("127.0.0.1:0")
                    .unwrap()
                    .local_addr()
                    .unwrap()
                    .port()
            };
            let dir = tempfile::tempdir().unwrap();
            let conf = dir.path().join("xinetd.conf");
            let (socket_type, protocol, wait) = if udp {
                ("dgram", "udp", "yes")
            } else {
                ("stream", "tcp", "no")
            };
            std::fs::write(
                &conf,
                format!(
                    "defaults\n{{\n    log_type = FILE {log}\n}}\n\
                     service ricochet-test\n{{\n    type = UNLISTED\n    socket_type = {socket_type}\n\
                     \x20   protocol = {protocol}\n    wait = {wait}\n    user = root\n\
                     \x20   bind = 127.0.0.1\n    port = {port}\n    server = {bin}\n\
                     \x20   server_args = serve --inetd {args}\n    env = RUST_LOG=debug\n}}\n",
                    log = dir.path().join("xinetd.log").display(),
                    bin = bin(),
                ),
            )
            .unwrap();
            let child = Command::new("xinetd")
                .arg("-dontfork")
                .arg("-f")
                .arg(&conf)
                .arg("-pidfile")
                .arg(dir.path().join("pid"))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn xinetd");
            let mut x = Xinetd {
                child,
                port,
                _dir: dir,
            };
            if x.wait_ready(udp) {
                return x;
            }
        }
        panic!("xinetd could not serve a free loopback port in 3 tries");
    }

    fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// Whether the service answers within the bound (false: xinetd exited,
    /// e.g. the port was taken meanwhile).
    fn wait_ready(&mut self, udp: bool) -> bool {
        let deadline = Instant::now() + IO_TIMEOUT;
        while Instant::now() < deadline {
            if self.child.try_wait().unwrap().is_some() {
                return false;
            }
            if udp {
                let c = UdpSocket::bind("127.0.0.1:0").unwrap();
                c.set_read_timeout(Some(Duration::from_millis(200)))
                    .unwrap();
                c.send_to(b"ready?", self.addr()).unwrap();
                let mut b = [0u8; 16];
                if let Ok((n, _)) = c.recv_from(&mut b) {
                    return &b[..n] == b"ready?";
                }
            } else if TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// The PIDs of the servers xinetd runs now.
    fn servers(&self) -> Vec<u32> {
        let parent = self.child.id().to_string();
        std::fs::read_dir("/proc")
            .unwrap()
            .filter_map(|e| {
                let e = e.ok()?;
                let pid: u32 = e.file_name().to_str()?.parse().ok()?;
                let stat =
                    std::fs::read_to_string(Path::new("/proc").join(pid.to_string()).join("stat"))
                        .ok()?;
                // pid (comm) state ppid ...: comm may hold spaces, so split after ')'.
                let ppid = stat.rsplit_once(')')?.1.split_whitespace().nth(1)?;
                (ppid == parent).then_some(pid)
            })
            .collect()
    }
}

impl Drop for Xinetd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn xinetd_nowait_tcp_service_echoes_every_connection_through_the_session() {
    let x = Xinetd::start(false, "--mode lines");
    let handles: Vec<_> = (0..3u8)
        .map(|i| {
            let addr = x.addr();
            std::thread::spawn(move || {
                let mut s = connect(addr);
                let line: Vec<u8> = format!("connection {i}\n").into_bytes();
                round_trip(&mut s, &line);
                s.write_all(b"no newline yet").unwrap();
                s.shutdown(Shutdown::Write).unwrap();
                // Debug logs were asked for (RUST_LOG=debug) and the server
                // runs as root: still, only echo comes back.
                assert_eq!(read_to_eof(&mut s).unwrap(), b"no newline yet");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("connection thread");
    }
    wait_until(IO_TIMEOUT, "every per-connection server to exit", || {
        x.servers().is_empty()
    });
}

#[test]
fn xinetd_wait_udp_service_echoes_exits_when_idle_and_is_started_again() {
    let x = Xinetd::start(true, "--idle-timeout 300ms");
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut b = [0u8; 64];
    for round in 0..2u8 {
        let d = [round; 20];
        c.send_to(&d, x.addr()).unwrap();
        let (n, from) = c.recv_from(&mut b).unwrap();
        assert_eq!((&b[..n], from), (&d[..], x.addr()), "round {round}");
        // Idle: the server exits and xinetd watches the port again.
        wait_until(IO_TIMEOUT, "the udp server to exit when idle", || {
            x.servers().is_empty()
        });
    }
}
