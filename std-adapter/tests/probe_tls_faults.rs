//! The probe over TLS against servers that break the handshake: each
//! failure is a handshake error (not a connect timeout or an I/O error),
//! named in plain words with the likely cause, and the command exits 1.

mod probe_support;

use probe_support::{Fault, FaultyServer, json_of, probe_cli, texts};

/// Runs `ricochet probe tls://ADDR --insecure -n 3 --json` plus `extra`
/// against a server with `fault`; checks the run failed with exactly one
/// handshake error and returns that error's message and the report.
fn one_handshake_error(fault: Fault, extra: &[&str]) -> (String, serde_json::Value) {
    let srv = FaultyServer::start(fault);
    let target = format!("tls://{}", srv.addr);
    let mut args = vec![target.as_str(), "--insecure", "-n", "3", "--json"];
    args.extend_from_slice(extra);
    let o = probe_cli(&args);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    let errors = &j["errors"];
    assert_eq!(errors["handshake"], 1, "{j}");
    for other in ["connect_timeout", "timeout", "io", "early_close", "refused"] {
        assert_eq!(errors[other], 0, "{other}: {j}");
    }
    assert_eq!(j["error_details"][0]["kind"], "handshake", "{j}");
    assert_eq!(j["tls"]["handshakes"], 0, "{j}");
    let msg = j["error_details"][0]["message"]
        .as_str()
        .unwrap_or_default();
    (msg.to_owned(), j)
}

/// A server that accepts and reads but never answers the ClientHello
/// fails the handshake once `--timeout` has passed, saying so with the
/// timeout given, and the hint says what to check.
#[test]
fn probe_tls_server_that_never_answers_fails_the_handshake_at_the_timeout() {
    let (msg, j) = one_handshake_error(Fault::Silent, &["--timeout", "300ms"]);
    assert_eq!(
        msg, "TLS handshake: not complete within 300ms (is it a TLS server?)",
        "{j}"
    );
    let hints = j["hints"].to_string();
    assert!(hints.contains("no TLS handshake completed"), "{j}");
}

/// A server that closes cleanly before answering the ClientHello (a port
/// forward with nothing behind it) fails the handshake as closed by the
/// server, not as an I/O error.
#[test]
fn probe_tls_server_that_closes_at_once_fails_the_handshake_as_closed() {
    let (msg, j) = one_handshake_error(Fault::FinAtOnce, &[]);
    assert_eq!(
        msg, "TLS handshake failed: the server closed the connection (is it a TLS server?)",
        "{j}"
    );
}
