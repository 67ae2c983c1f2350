use super::*;

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(str::to_owned).collect()
}

fn run(s: &str, default_count: u64) -> Args {
    match parse_from(words(s), default_count) {
        Ok(Parsed::Run(a)) => a,
        other => panic!("{s:?}: {other:?}"),
    }
}

/// A port nothing listens on: a listener bound then dropped.
fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `localhost` may resolve to `::1` first while the server listens on
/// 127.0.0.1: the greeting skips the address that refuses (udp_client
/// tried only the first, and said no server was running).
#[test]
fn greet_first_skips_an_address_that_refuses_for_one_that_echoes() {
    let server = UdpSocket::bind("127.0.0.1:0").unwrap();
    server.set_read_timeout(Some(PEER_TIMEOUT)).unwrap();
    let addr = server.local_addr().unwrap();
    let echo = std::thread::spawn(move || {
        let mut b = [0u8; 64];
        let (n, from) = server.recv_from(&mut b).unwrap();
        server.send_to(&b[..n], from).unwrap();
    });
    // A UDP port nothing listens on, over IPv6 loopback.
    let closed = UdpSocket::bind("[::1]:0").unwrap().local_addr().unwrap();
    let mut buf = [0u8; 64];
    let (_, answered, n) = greet_first(&[closed, addr], b"hi", 64, &mut buf).unwrap();
    assert_eq!((answered, &buf[..n]), (addr, &b"hi"[..]));
    echo.join().unwrap();
    let e = greet_first(&[closed], b"hi", 64, &mut buf).unwrap_err();
    assert!(
        e.starts_with(&format!("no UDP echo server at {closed}")),
        "{e}"
    );
}

#[test]
fn connect_first_skips_an_address_that_refuses_for_one_that_listens() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up = listener.local_addr().unwrap();
    let down = closed_port();
    let (stream, reached) = connect_first(&[down, up], PEER_TIMEOUT).unwrap();
    assert_eq!((reached, stream.peer_addr().unwrap()), (up, up));
}

#[test]
fn connect_first_names_every_address_when_none_listens() {
    let (a, b) = (closed_port(), closed_port());
    let e = connect_first(&[a, b], PEER_TIMEOUT).unwrap_err();
    assert!(
        e.contains(&a.to_string()) && e.contains(&b.to_string()),
        "{e}"
    );
    assert!(
        e.contains("nothing listens on that port at any of them"),
        "{e}"
    );
    let one = connect_first(&[a], PEER_TIMEOUT).unwrap_err();
    assert!(
        one.starts_with(&format!("no TCP echo server at {a}")),
        "{one}"
    );
    assert!(connect_first(&[], PEER_TIMEOUT).is_err());
}

#[test]
fn args_default_to_the_tutorial_port() {
    let a = run("", 3);
    assert_eq!((a.addr.as_str(), a.count), (DEFAULT_ADDR, 3));
}

#[test]
fn args_parse_address_flags_and_message() {
    let a = run("127.0.0.1:9 --count 5 hello world", 1);
    assert_eq!(a.addr, "127.0.0.1:9");
    assert_eq!(a.count, 5);
    assert_eq!(a.rest, ["hello", "world"]);
    assert_eq!(run("--once", 9).count, 1);
    assert!(parse_from(words("--bogus"), 1).is_err());
    assert!(parse_from(words("-x"), 1).is_err());
}

#[test]
fn sizes_take_the_probe_suffixes() {
    assert_eq!(run("--size 100K", 1).size, 100 * 1024);
    assert_eq!(run("-s 2KiB", 1).size, 2048);
    assert!(parse_from(words("--size lots"), 1).is_err());
}

/// Every suffix the clients' `--help` lists (binary, K = 1024) parses,
/// and the ones it does not list are refused.
#[test]
fn sizes_take_exactly_the_documented_suffixes() {
    for (unit, bytes) in [("K", 1usize << 10), ("M", 1 << 20), ("G", 1 << 30)] {
        let lower = unit.to_lowercase();
        for suffix in [unit, &format!("{unit}B"), &format!("{unit}iB"), &lower] {
            assert_eq!(
                run(&format!("--size 3{suffix}"), 1).size,
                3 * bytes,
                "{suffix}"
            );
        }
    }
    assert_eq!(run("--size 64B", 1).size, 64);
    assert_eq!(run("--size 100K", 1).size, 102_400);
    for bad in ["1T", "1kib", "1Kb", "1.5K", "K"] {
        assert!(
            parse_from(words(&format!("--size {bad}")), 1).is_err(),
            "{bad}"
        );
    }
}

/// A message need not be UTF-8 (it is sent as bytes); an address or a
/// flag's value must be, and is a usage error otherwise, not a panic.
#[test]
fn a_message_may_be_any_bytes_the_rest_must_be_utf8() {
    use std::os::unix::ffi::OsStringExt;
    let os = |s: &[u8]| OsString::from_vec(s.to_vec());
    let parsed = parse_from([os(b"127.0.0.1:9"), os(b"caf\xe9"), os(b"!")], 1);
    let Ok(Parsed::Run(a)) = parsed else {
        panic!("{parsed:?}")
    };
    assert_eq!(a.message().as_deref(), Some(&b"caf\xe9 !"[..]));
    assert_eq!(run("", 1).message(), None);
    for bad in [
        vec![os(b"\xff:9")],
        vec![os(b"127.0.0.1:9"), os(b"--count"), os(b"\xff")],
        vec![os(b"--size"), os(b"1\xff")],
    ] {
        let e = parse_from(bad.clone(), 1).unwrap_err();
        assert!(e.contains("is not valid UTF-8"), "{bad:?}: {e}");
    }
}

#[test]
fn help_is_not_an_error() {
    assert_eq!(parse_from(words("--help"), 1), Ok(Parsed::Help));
    assert_eq!(parse_from(words("127.0.0.1:9 -h"), 1), Ok(Parsed::Help));
}
