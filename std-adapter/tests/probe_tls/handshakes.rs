//! Verification over TLS, handshakes and their rate, `--pattern crr`, the
//! server's certificate checks, `--insecure`, and servers that are not TLS.

use super::*;

#[test]
fn probe_tls_verifies_pingpong_stream_and_lines_and_reports_handshakes() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://localhost:{}", srv.tls.port());
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "-c",
        "3",
        "-n",
        "300",
        "-s",
        "1-3000",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["transport"], "tls");
    assert_eq!(j["messages_verified"], 900);
    assert_eq!(j["connections_ok"], 3);
    assert_eq!(j["tls"]["handshakes"], 3);
    assert_eq!(j["tls"]["server_name"], "localhost");
    assert_eq!(j["tls"]["insecure"], false);
    assert!(
        j["tls"]["handshake_us"]["p50"].as_u64().unwrap_or(0) > 0,
        "{j}"
    );
    // Round trips exclude the handshake: there are 900 of them, one per message.
    assert_eq!(j["latency_us"]["count"], 900);
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "-p",
        "stream",
        "-s",
        "16KiB",
        "-n",
        "200",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    assert_eq!(json_of(&o)["bytes_verified"], 200 * 16384);
    srv.wait_stats("both runs' closes", |s| s.tls.closed.peer_finished == 4);
    let lines = TlsServer::start(&pki, Mode::Lines, |_| {});
    let target = format!("tls://127.0.0.1:{}", lines.tls.port());
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "-m",
        "lines",
        "-s",
        "2-500",
        "-n",
        "200",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let (_, table, _) = texts(&o);
    assert!(table.contains("handshakes   1 ("), "{table}");
    assert!(table.contains("certificate 127.0.0.1 verified"), "{table}");
}

#[test]
fn probe_tls_crr_makes_one_handshake_per_round_resumed_or_not() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://localhost:{}", srv.tls.port());
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "-p",
        "crr",
        "-c",
        "2",
        "-n",
        "20",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["pattern"], "crr");
    assert_eq!(j["messages_verified"], 40);
    assert_eq!(j["tls"]["handshakes"], 40);
    assert_eq!(j["tls"]["resumption"], true);
    let resumed = j["tls"]["resumed"].as_u64().unwrap_or(0);
    assert!(
        resumed >= 30,
        "most rounds resume a session: {resumed} of 40"
    );
    assert!(j["tls"]["handshakes_per_sec"].as_f64().unwrap_or(0.0) > 0.0);
    srv.wait_stats("40 handshakes and sessions", |s| {
        s.tls_handshakes.completed == 40 && s.tls.closed.peer_finished == 40
    });
    assert_eq!(srv.handle().stats().tls_handshakes.resumed, resumed);
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "-p",
        "crr",
        "-c",
        "2",
        "-n",
        "10",
        "--tls-resumption",
        "off",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(
        (
            j["tls"]["handshakes"].as_u64(),
            j["tls"]["resumed"].as_u64()
        ),
        (Some(20), Some(0))
    );
    assert_eq!(j["tls"]["resumption"], false);
}

#[test]
fn probe_crr_over_tcp_opens_a_connection_per_message() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tcp://{}", srv.tcp);
    let o = probe_cli(&[&target, "-p", "crr", "-c", "3", "-n", "15", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(
        (
            j["messages_verified"].as_u64(),
            j["connections_ok"].as_u64()
        ),
        (Some(45), Some(3))
    );
    assert!(j["tls"].is_null(), "no TLS section for tcp://");
    srv.wait_stats("45 TCP connections", |s| s.tcp.closed.peer_finished == 45);
    assert_eq!(srv.handle().stats().tcp.accepted, 45);
}

#[test]
fn probe_tls_untrusted_certificate_fails_the_handshake_with_a_hint() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://localhost:{}", srv.tls.port());
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.other_ca),
        "-c",
        "2",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["errors"]["handshake"], 2);
    assert_eq!(j["error_details"][0]["kind"], "handshake");
    let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
    assert!(msg.contains("not signed by a CA the probe trusts"), "{msg}");
    assert!(
        j["hints"][0].as_str().unwrap_or("").contains("--tls-ca"),
        "{j}"
    );
    srv.wait_stats("the refusals", |s| s.tls_handshakes.failed.certificate == 2);
}

#[test]
fn probe_tls_server_name_must_match_the_certificate() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://127.0.0.1:{}", srv.tls.port());
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "--tls-server-name",
        "wrong.example",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("not valid for wrong.example: it names localhost, 127.0.0.1"),
        "{msg}"
    );
    assert_eq!(j["tls"]["server_name"], "wrong.example");
}

#[test]
fn probe_tls_insecure_accepts_any_certificate_and_says_so() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://127.0.0.1:{}", srv.tls.port());
    let o = probe_cli(&[&target, "--insecure", "-n", "50", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["tls"]["insecure"], true);
    let warning = j["warnings"][0].as_str().unwrap_or("");
    assert!(warning.contains("NOT verified"), "{j}");
    let o = probe_cli(&[&target, "--insecure", "-n", "5"]);
    let (_, table, _) = texts(&o);
    assert!(table.contains("NOT VERIFIED (--insecure)"), "{table}");
}

#[test]
fn probe_tls_against_a_plain_echo_server_fails_the_handshake() {
    // A plain echo server sends our ClientHello back: no TLS server answers.
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://{}", srv.tcp);
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "--timeout",
        "2s",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    assert_eq!(json_of(&o)["errors"]["handshake"], 1);
}

#[test]
fn probe_tls_against_a_silent_server_times_out_the_handshake() {
    let pki = Pki::new();
    let silent = FaultyServer::start(Fault::Silent);
    let target = format!("tls://{}", silent.addr);
    let o = probe_cli(&[
        &target,
        "--tls-ca",
        path(&pki.ca),
        "--timeout",
        "300ms",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["errors"]["handshake"], 1);
    let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
    assert!(msg.contains("not complete within 300ms"), "{msg}");
}

/// After a completed handshake, bytes that are not TLS records (a server
/// that speaks plain text once connected) and a record that does not
/// decrypt (altered on the way) are named as such, not in rustls's words
/// alone.
#[test]
fn probe_tls_names_plain_text_and_undecryptable_records_after_the_handshake() {
    let pki = Pki::new();
    let cases: [(&[u8], &str); 2] = [
        (
            b"plain text after the handshake\n",
            "the server sent bytes that are not TLS records after the handshake",
        ),
        (
            b"\x17\x03\x03\x00\x20 thirty-two bytes of no record..",
            "a record from the server failed to decrypt",
        ),
    ];
    for (raw, said) in cases {
        let srv = RawAfterHandshake::start(&pki, raw);
        let target = format!("tls://localhost:{}", srv.addr.port());
        let o = probe_cli(&[
            &target,
            "--tls-ca",
            path(&pki.ca),
            "-n",
            "3",
            "--timeout",
            "2s",
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
        let j = json_of(&o);
        assert_eq!(j["tls"]["handshakes"], 1, "{j}");
        assert_eq!(j["errors"]["io"], 1, "{j}");
        let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
        assert!(msg.starts_with("read: ") && msg.contains(said), "{msg}");
    }
}

#[test]
fn probe_tls_options_need_a_tls_target_and_a_readable_ca() {
    let o = probe_cli(&["tcp://127.0.0.1:9", "--insecure"]);
    let (code, _, err) = texts(&o);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("apply to a tls:// target"), "{err}");
    let o = probe_cli(&["tls://127.0.0.1:9", "--tls-ca", "/nonexistent/ca.pem"]);
    let (code, _, err) = texts(&o);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--tls-ca /nonexistent/ca.pem: cannot read it"),
        "{err}"
    );
    let o = probe_cli(&["udp://127.0.0.1:9", "-p", "crr"]);
    let (code, _, err) = texts(&o);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("--pattern crr applies to stream targets (tcp://, tls://, unix://)"),
        "{err}"
    );
    let o = probe_cli(&["tls://127.0.0.1:9", "--insecure", "--tls-ca", "x.pem"]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "--insecure with --tls-ca is contradictory"
    );
}
