//! What the endpoint answers to the bytes a client sent: the request head,
//! parsed by `httparse`, and the whole response to it.
//!
//! `httparse` reads the head as RFC 9112 has it (a method token, one space,
//! the target, one space, `HTTP/1.0` or `HTTP/1.1`, header fields whose
//! names are tokens, lines ending in CRLF or a bare LF). It says as soon as
//! the bytes so far cannot begin a request, so a client that sends
//! something else is answered 400 at once rather than after
//! [`MetricsConfig::max_request`](super::MetricsConfig::max_request)
//! bytes or a blank line that may never come.

use std::sync::Arc;

use httparse::{EMPTY_HEADER, Error, Request, Status};

use super::super::{Format, render};
use crate::serve::ServerStats;

/// Header fields a request may carry; one more is answered 431, as a head
/// past `max_request` bytes is. Prometheus sends 4, `curl` 3.
pub(super) const MAX_HEADERS: usize = 32;

/// The response to `input`, the bytes the client has sent so far, or
/// `None` while they are the start of a request head shorter than
/// `max_request` bytes: read on. A head of exactly `max_request` bytes
/// (through its blank line) is answered; bytes after it are not looked at.
pub(super) fn respond(
    input: &[u8],
    max_request: usize,
    stats: &Arc<ServerStats>,
) -> Option<Vec<u8>> {
    let mut headers = [EMPTY_HEADER; MAX_HEADERS];
    let mut request = Request::new(&mut headers);
    let response = match request.parse(input) {
        Ok(Status::Complete(len)) if len <= max_request => answer(&request, stats),
        Ok(Status::Partial) if input.len() < max_request => return None,
        Ok(_) | Err(Error::TooManyHeaders) => Response::plain(
            "431 Request Header Fields Too Large",
            format!(
                "request too large: at most {max_request} bytes of request line and headers, \
                 {MAX_HEADERS} header fields\n"
            ),
        ),
        Err(Error::Version) => Response::plain("400 Bad Request", "HTTP/1.x only\n".into()),
        // A TLS record of type handshake: the client asked for https://.
        Err(_) if input.first() == Some(&0x16) => Response::plain(
            "400 Bad Request",
            "a TLS handshake: the metrics endpoint speaks plain HTTP; scrape http://, not https://\n"
                .into(),
        ),
        Err(e) => Response::plain("400 Bad Request", format!("not an HTTP request: {e}\n")),
    };
    // To HEAD, the response GET would get without its body (RFC 9110
    // 9.3.2: health checks and `curl -I` send it, and every
    // general-purpose server must take it).
    Some(response.bytes(request.method != Some("HEAD")))
}

/// The response to a whole, well-formed request head.
fn answer(request: &Request<'_, '_>, stats: &Arc<ServerStats>) -> Response {
    let target = request.path.unwrap_or("");
    // The absolute form (`http://host:port/metrics`, as a proxy sends it)
    // names the same resource (RFC 9112, 3.2.2).
    let origin = ["http://", "https://"]
        .iter()
        .find_map(|scheme| target.strip_prefix(scheme))
        .map_or(target, |rest| rest.find('/').map_or("/", |i| &rest[i..]));
    let path = origin.split('?').next().unwrap_or(origin);
    if path != "/metrics" {
        return Response::plain("404 Not Found", "metrics are at /metrics\n".into());
    }
    if !matches!(request.method, Some("GET" | "HEAD")) {
        return Response {
            allow: true,
            ..Response::plain("405 Method Not Allowed", "GET or HEAD only\n".into())
        };
    }
    let accept = request
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("accept"))
        .and_then(|h| std::str::from_utf8(h.value).ok())
        .map(str::trim);
    let format = Format::negotiate(accept);
    Response {
        status: "200 OK",
        allow: false,
        content_type: format.content_type(),
        body: render(stats, format),
    }
}

/// A response before it is written out.
struct Response {
    status: &'static str,
    /// Whether to name the methods allowed (`Allow: GET, HEAD`, with a 405).
    allow: bool,
    content_type: &'static str,
    body: String,
}

impl Response {
    fn plain(status: &'static str, body: String) -> Response {
        Response {
            status,
            allow: false,
            content_type: "text/plain",
            body,
        }
    }

    /// The response on the wire, its body only `with_body` (its
    /// `Content-Length` either way); the endpoint closes after each one.
    fn bytes(&self, with_body: bool) -> Vec<u8> {
        let Response {
            status,
            allow,
            content_type,
            body,
        } = self;
        let allow = if *allow { "Allow: GET, HEAD\r\n" } else { "" };
        let mut r = format!(
            "HTTP/1.1 {status}\r\n{allow}Content-Type: {content_type}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n",
            body.len()
        );
        if with_body {
            r.push_str(body);
        }
        r.into_bytes()
    }
}

/// The answer to one connection more than the endpoint serves at once.
pub(super) fn busy() -> Vec<u8> {
    Response::plain("503 Service Unavailable", "too many connections\n".into()).bytes(true)
}
