//! `ricochet probe` against socat, an echo server not written here
//! (installed from Debian: `apt-get install -y --no-install-recommends socat`).
//! Raw mode needs no cooperation from the server; lines/frames only need it
//! to echo bytes, which any RFC 862 server does.

mod probe_support;

use probe_support::{
    json_of, probe_cli, socat_tcp_echo, socat_udp_echo, socat_unix_echo, tcp_listening, texts,
    unix_listening,
};

/// socat is ready when it listens, not when its port is bound: the probe
/// connecting in between was refused (a flaky `Connection refused`).
#[test]
fn socat_readiness_waits_for_listen_not_for_bind() {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&std::net::SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .expect("bind");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .expect("bound address")
        .port();
    assert!(!tcp_listening(port), "bound but not listening");
    socket.listen(8).expect("listen");
    assert!(tcp_listening(port));
}

/// The same for a Unix socket: its file appears at the bind, so waiting
/// for the file let the probe connect before socat listened.
#[test]
fn socat_unix_readiness_waits_for_listen_not_for_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("bound.sock");
    let socket =
        socket2::Socket::new(socket2::Domain::UNIX, socket2::Type::STREAM, None).expect("socket");
    socket
        .bind(&socket2::SockAddr::unix(&path).expect("address"))
        .expect("bind");
    assert!(path.exists(), "the file comes with the bind");
    assert!(!unix_listening(&path), "bound but not listening");
    socket.listen(8).expect("listen");
    assert!(unix_listening(&path));
}

#[test]
fn interop_probe_socat_tcp_pingpong_and_stream() {
    let (_socat, addr) = socat_tcp_echo();
    let t = format!("tcp://{addr}");
    let o = probe_cli(&[&t, "-c", "4", "-n", "200", "-s", "1-2000", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["messages_verified"], 800);
    assert_eq!(j["connections_ok"], 4, "socat closes after our FIN");
    let o = probe_cli(&[
        &t, "-c", "2", "-p", "stream", "-s", "16KiB", "-n", "200", "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    assert_eq!(json_of(&o)["bytes_verified"], 2 * 200 * 16384);
}

#[test]
fn interop_probe_socat_tcp_lines_and_frames_modes() {
    let (_socat, addr) = socat_tcp_echo();
    for (mode, size) in [("lines", "2-300"), ("frames", "2-3000")] {
        let o = probe_cli(&[
            &format!("tcp://{addr}"),
            "-m",
            mode,
            "-s",
            size,
            "-n",
            "200",
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{mode}: {:?}", texts(&o));
        assert_eq!(json_of(&o)["messages_verified"], 200);
    }
}

#[test]
fn interop_probe_socat_udp() {
    let (_socat, addr) = socat_udp_echo();
    let o = probe_cli(&[
        &format!("udp://{addr}"),
        "-n",
        "100",
        "-s",
        "12-1000",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["datagrams"]["verified"], 100);
    assert_eq!(j["datagrams"]["lost"], 0);
    assert_eq!(j["datagrams"]["corrupt"], 0);
}

#[test]
fn interop_probe_socat_unix() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("echo.sock");
    let _socat = socat_unix_echo(&path);
    let o = probe_cli(&[
        &format!("unix://{}", path.display()),
        "-c",
        "3",
        "-n",
        "200",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    assert_eq!(json_of(&o)["messages_verified"], 600);
}
