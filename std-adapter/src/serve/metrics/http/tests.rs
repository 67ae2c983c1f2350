//! The scrape endpoint: answers to heads of every kind and the errors of
//! binding it here; one connection stepped by hand in [`conn`], and a
//! property test of the answer in [`props`].

use super::answer::{MAX_HEADERS, respond};
use super::*;

mod conn;
mod props;

/// The response to a whole request `head` (panics if it is not one).
fn answer(head: &[u8], stats: &Arc<ServerStats>) -> Vec<u8> {
    respond(head, usize::MAX, stats).expect("a whole head is answered")
}

/// The length of a response's status line and headers, through the blank line.
fn head_len(response: &[u8]) -> usize {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n");
    end.expect("a blank line") + 4
}

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
    let get_head = head_len(&get);
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

/// A head is answered once its blank line has come (CRLF or a bare LF),
/// whatever follows it; until then the endpoint reads on.
#[test]
fn head_is_answered_at_its_blank_line_and_not_before() {
    let s = stats();
    let whole = answer(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", &s);
    assert_eq!(status(&whole), "HTTP/1.1 200 OK");
    for partial in [
        &b"G"[..],
        b"GET /metrics HTTP/1.1",
        b"GET /metrics HTTP/1.1\r\nHost: x\r\n",
    ] {
        assert!(respond(partial, 8192, &s).is_none(), "{partial:?}");
    }
    let with_more = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /other";
    assert_eq!(respond(with_more, 8192, &s), Some(whole));
    let bare_lf = answer(b"GET /metrics HTTP/1.1\nHost: x\n\n", &s);
    assert_eq!(status(&bare_lf), "HTTP/1.1 200 OK");
}

/// Bytes that cannot begin an HTTP/1.x request are answered 400 as soon as
/// they come: the endpoint does not wait for a blank line or `max_request`
/// bytes that may never come. A TLS client (an `https://` scrape) is told
/// the endpoint speaks plain HTTP.
#[test]
fn bytes_that_cannot_be_http_are_refused_before_the_head_ends() {
    let s = stats();
    for (bad, says) in [
        (&b"hello\r\n"[..], "not an HTTP request"),
        (b"GET /metrics SMTP/1.0", "HTTP/1.x only"),
        (
            b"GET /metrics HTTP/1.1\r\nBad Name: x\r\n",
            "not an HTTP request",
        ),
        (b"\x16\x03\x01\x02\x00\x01", "plain HTTP"),
    ] {
        let r = respond(bad, 8192, &s).unwrap_or_else(|| panic!("{bad:?} waits for more"));
        assert_eq!(status(&r), "HTTP/1.1 400 Bad Request", "{bad:?}");
        let text = String::from_utf8_lossy(&r);
        assert!(text.contains(says), "{bad:?}: {text}");
    }
}

/// More header fields than the endpoint keeps are refused like a head past
/// `max_request` bytes (431), not taken for a bad request or cut short.
#[test]
fn head_with_more_header_fields_than_kept_is_refused_as_too_large() {
    let s = stats();
    let head_with = |fields: usize| {
        let mut h = b"GET /metrics HTTP/1.1\r\n".to_vec();
        for i in 0..fields {
            h.extend_from_slice(format!("X-{i}: a\r\n").as_bytes());
        }
        h.extend_from_slice(b"\r\n");
        h
    };
    assert_eq!(
        status(&answer(&head_with(MAX_HEADERS), &s)),
        "HTTP/1.1 200 OK"
    );
    let r = answer(&head_with(MAX_HEADERS + 1), &s);
    assert_eq!(status(&r), "HTTP/1.1 431 Request Header Fields Too Large");
    let text = String::from_utf8_lossy(&r);
    assert!(text.contains("32 header fields"), "{text}");
}

#[test]
fn metrics_address_in_use_says_to_pick_another_port_or_0() {
    let shown = MetricsError::Bind {
        addr: "127.0.0.1:9107".parse().unwrap(),
        source: io::Error::from_raw_os_error(libc::EADDRINUSE),
    }
    .to_string();
    assert!(
        shown.starts_with("metrics 127.0.0.1:9107: ")
            && shown.contains("another server listens there")
            && shown.contains("--metrics 127.0.0.1:0"),
        "{shown}"
    );
}

/// `source` is the underlying I/O error, for callers that walk the chain.
#[test]
fn metrics_errors_have_their_io_error_as_source() {
    use std::error::Error as _;
    let bind = MetricsError::Bind {
        addr: "127.0.0.1:9107".parse().unwrap(),
        source: io::Error::from_raw_os_error(libc::EADDRINUSE),
    };
    let spawn = MetricsError::Spawn(io::Error::from_raw_os_error(libc::EMFILE));
    for (e, errno) in [(bind, libc::EADDRINUSE), (spawn, libc::EMFILE)] {
        let source = e.source().expect("a source");
        let io = source.downcast_ref::<io::Error>().expect("an io::Error");
        assert_eq!(io.raw_os_error(), Some(errno), "{e}");
    }
}
