use super::*;

/// The host's own limit, as the echo listeners' errors give it: it was
/// "ports below 1024" whatever `ip_unprivileged_port_start` said.
#[test]
fn metrics_permission_denied_names_the_hosts_lowest_unprivileged_port() {
    let low = permission_hint(80, 1024);
    assert!(
        low.contains("ports below 1024 (net.ipv4.ip_unprivileged_port_start)")
            && low.contains("such as 9107"),
        "{low}"
    );
    let raised = permission_hint(9107, 10000);
    assert!(
        raised.contains("ports below 10000") && raised.contains("such as 10000"),
        "{raised}"
    );
    // Not a privileged port here: a policy refused it.
    assert!(permission_hint(80, 0).contains("security policy"));
    let shown = MetricsError::Bind {
        addr: "127.0.0.1:80".parse().unwrap(),
        source: io::Error::from_raw_os_error(libc::EACCES),
    }
    .to_string();
    let start = crate::serve::error::unprivileged_port_start();
    assert!(shown.contains(&permission_hint(80, start)), "{shown}");
}

fn stats() -> Arc<ServerStats> {
    Arc::new(ServerStats::new(1))
}

fn status(r: &[u8]) -> String {
    let text = String::from_utf8_lossy(r);
    text.lines().next().unwrap_or("").to_owned()
}

/// `--metrics 9107` (127.0.0.1) in an IPv6-only network namespace, or
/// `--metrics [::1]:9107` where IPv6 is disabled: the error names the
/// other loopback to give, as the echo listeners' does; it said only
/// "the address is not configured on this machine".
#[test]
fn metrics_address_not_available_names_the_other_loopback_to_give() {
    let unavailable = |addr: &str| {
        MetricsError::Bind {
            addr: addr.parse().unwrap(),
            source: io::Error::from_raw_os_error(libc::EADDRNOTAVAIL),
        }
        .to_string()
    };
    let v4 = unavailable("127.0.0.1:9107");
    assert!(
        v4.contains("no interface has 127.0.0.1") && v4.contains("--metrics [::1]:9107"),
        "{v4}"
    );
    let v6 = unavailable("[::1]:9107");
    assert!(
        v6.contains("disable_ipv6") && v6.contains("--metrics 127.0.0.1:9107"),
        "{v6}"
    );
}

#[test]
fn get_metrics_is_answered_with_the_negotiated_format() {
    let r = answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &stats());
    assert_eq!(status(&r), "HTTP/1.1 200 OK");
    let text = String::from_utf8_lossy(&r);
    assert!(
        text.contains("Content-Type: text/plain; version=0.0.4"),
        "{text}"
    );
    let r = answer(
        b"GET /metrics?x=1 HTTP/1.1\r\naccept: application/openmetrics-text;version=1.0.0,*/*\r\n\r\n",
        &stats(),
    );
    let text = String::from_utf8_lossy(&r);
    assert!(
        text.contains("Content-Type: application/openmetrics-text"),
        "{text}"
    );
    assert!(text.ends_with("# EOF\n"), "{text}");
}

/// RFC 9110 9.1: a general-purpose server supports HEAD (health checks
/// and `curl -I` use it): GET's status and headers, no body.
#[test]
fn head_metrics_gets_the_headers_of_get_without_the_body() {
    let s = stats();
    let get = answer(b"GET /metrics HTTP/1.1\r\n\r\n", &s);
    let head = answer(b"HEAD /metrics HTTP/1.1\r\n\r\n", &s);
    let get_head = head_end(&get).expect("a head");
    assert_eq!(head, get[..get_head], "{}", String::from_utf8_lossy(&head));
    assert!(get.len() > get_head, "GET has a body");
    let missing = answer(b"HEAD /nothing HTTP/1.1\r\n\r\n", &s);
    assert_eq!(status(&missing), "HTTP/1.1 404 Not Found");
    assert!(missing.ends_with(b"\r\n\r\n"), "no body to HEAD");
}

#[test]
fn absolute_form_target_is_the_same_resource() {
    let s = stats();
    let r = answer(
        b"GET http://127.0.0.1:9107/metrics HTTP/1.1\r\nHost: x\r\n\r\n",
        &s,
    );
    assert_eq!(status(&r), "HTTP/1.1 200 OK");
    let r = answer(b"GET http://127.0.0.1:9107/other HTTP/1.1\r\n\r\n", &s);
    assert_eq!(status(&r), "HTTP/1.1 404 Not Found");
    let r = answer(b"GET http://127.0.0.1:9107 HTTP/1.1\r\n\r\n", &s);
    assert_eq!(status(&r), "HTTP/1.1 404 Not Found");
}

#[test]
fn other_paths_methods_and_garbage_get_their_status() {
    let s = stats();
    assert_eq!(
        status(&answer(b"GET / HTTP/1.1\r\n\r\n", &s)),
        "HTTP/1.1 404 Not Found"
    );
    let r = answer(b"POST /metrics HTTP/1.1\r\n\r\n", &s);
    assert_eq!(status(&r), "HTTP/1.1 405 Method Not Allowed");
    let text = String::from_utf8_lossy(&r);
    assert!(text.contains("\r\nAllow: GET, HEAD\r\n"), "{text}");
    assert!(text.ends_with("GET or HEAD only\n"), "{text}");
    for bad in [
        &b"hello\r\n\r\n"[..],
        b"GET /metrics\r\n\r\n",
        b"GET /metrics SMTP/1\r\n\r\n",
        b"\xff\xfe\r\n\r\n",
    ] {
        assert_eq!(
            status(&answer(bad, &s)),
            "HTTP/1.1 400 Bad Request",
            "{bad:?}"
        );
    }
}

#[test]
fn head_ends_at_the_first_blank_line() {
    assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
    assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
    assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
}
