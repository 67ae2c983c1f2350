//! What the probe's report claims over TLS: a verified certificate only
//! when one was, handshake rates, refused handshakes, the right scheme.

use super::*;

#[test]
fn probe_claims_a_verified_certificate_only_when_a_handshake_verified_it() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://localhost:{}", srv.tls.port());
    for args in [
        vec!["--tls-ca", path(&pki.other_ca)],
        vec![
            "--tls-ca",
            path(&pki.ca),
            "--tls-server-name",
            "wrong.example",
        ],
    ] {
        let mut all = vec![target.as_str(), "-n", "3"];
        all.extend(&args);
        let o = probe_cli(&all);
        let (code, table, _) = texts(&o);
        assert_eq!(code, 1, "{table}");
        let line = handshakes_line(&table);
        assert!(line.contains("NOT verified"), "{line}");
        assert!(
            !line.contains("name verified") && !line.ends_with(" verified"),
            "{line}"
        );
        all.push("--json");
        let j = json_of(&probe_cli(&all));
        assert_eq!(j["tls"]["verified"], false, "{j}");
    }
    let o = probe_cli(&[&target, "--tls-ca", path(&pki.ca), "-n", "3", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["tls"]["verified"], true);
    assert!(
        j["tls"]["client_certificate"].is_null(),
        "none presented: {j}"
    );
    let o = probe_cli(&[&target, "--insecure", "-n", "3", "--json"]);
    assert_eq!(json_of(&o)["tls"]["verified"], false);
}

#[test]
fn probe_gives_no_handshake_rate_for_a_single_handshake() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let target = format!("tls://localhost:{}", srv.tls.port());
    let o = probe_cli(&[&target, "--tls-ca", path(&pki.ca), "-n", "5"]);
    let (code, table, _) = texts(&o);
    assert_eq!(code, 0, "{table}");
    let line = handshakes_line(&table);
    assert!(!line.contains("/s"), "{line}");
    assert!(line.contains("no rate"), "{line}");
    let o = probe_cli(&[&target, "--tls-ca", path(&pki.ca), "-n", "5", "--json"]);
    let j = json_of(&o);
    assert_eq!(j["tls"]["handshakes"], 1);
    assert!(j["tls"]["handshakes_per_sec"].is_null(), "{j}");
}

#[test]
fn probe_reports_a_refused_client_certificate_as_a_handshake_error_with_the_flags_to_give_one() {
    let pki = Pki::new();
    let ca = pki.ca.clone();
    let srv = TlsServer::start(&pki, Mode::Raw, move |c| {
        c.tls.as_mut().expect("tls").client_ca = Some(ca);
    });
    let target = format!("tls://localhost:{}", srv.tls.port());
    let o = probe_cli(&[&target, "--tls-ca", path(&pki.ca), "--json"]);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    assert_eq!(j["errors"]["handshake"], 1, "{j}");
    assert_eq!(j["error_details"][0]["kind"], "handshake");
    let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("refused the probe's client certificate")
            && msg.contains("the probe sent none")
            && msg.contains("--tls-cert")
            && msg.contains("--tls-key"),
        "{msg}"
    );
    assert!(!msg.contains("no client certificate option"), "{msg}");
    let hint = j["hints"][0].as_str().unwrap_or("");
    assert!(
        hint.contains("client certificate") && hint.contains("--tls-cert FILE --tls-key FILE"),
        "{j}"
    );
}

/// A mutual-TLS server refuses the probe (which presents no certificate)
/// only after the probe's side of the TLS 1.3 handshake is done: the
/// server's alert comes on the first read. That handshake failed: it is a
/// `handshake` error with the reason, and neither a completed handshake
/// (count, resumed, time, rate, `verified`) nor an opened connection, in the
/// totals, the per-target row and the table; the same runs against the same
/// server without `--tls-client-ca` count every handshake.
#[test]
fn probe_counts_a_handshake_refused_after_its_side_was_done_as_failed_not_completed() {
    let pki = Pki::new();
    let ca = pki.ca.clone();
    let mutual = TlsServer::start(&pki, Mode::Raw, move |c| {
        c.tls.as_mut().expect("tls").client_ca = Some(ca);
    });
    let plain = TlsServer::start(&pki, Mode::Raw, |_| {});
    let runs: [&[&str]; 3] = [
        &["-n", "30"],
        &["-n", "30", "--tls-resumption", "off"],
        &["-p", "crr", "-n", "12"],
    ];
    for extra in runs {
        let args = |srv: &TlsServer| {
            let mut a = vec![
                format!("tls://localhost:{}", srv.tls.port()),
                "--tls-ca".to_owned(),
                path(&pki.ca).to_owned(),
                "-c".to_owned(),
                "3".to_owned(),
            ];
            a.extend(extra.iter().map(|s| (*s).to_owned()));
            a
        };
        let refused = args(&mutual);
        let mut json: Vec<&str> = refused.iter().map(String::as_str).collect();
        json.push("--json");
        let o = probe_cli(&json);
        assert_eq!(o.status.code(), Some(1), "{extra:?}: {:?}", texts(&o));
        let j = json_of(&o);
        let tls = &j["tls"];
        assert_eq!(tls["handshakes"], 0, "{extra:?}: {j}");
        assert_eq!(tls["resumed"], 0, "{extra:?}: {j}");
        assert_eq!(tls["handshake_us"]["count"], 0, "{extra:?}: {j}");
        assert!(tls["handshakes_per_sec"].is_null(), "{extra:?}: {j}");
        assert_eq!(tls["verified"], false, "{extra:?}: {j}");
        assert_eq!(j["connections_opened"], 0, "{extra:?}: {j}");
        assert_eq!(j["connect_us"]["count"], 0, "{extra:?}: {j}");
        assert_eq!(j["errors"]["handshake"], 3, "{extra:?}: {j}");
        let row = &j["targets"][0];
        assert_eq!(row["connections_opened"], 0, "{extra:?}: {j}");
        assert_eq!(row["errors"]["handshake"], 3, "{extra:?}: {j}");
        let details = j["error_details"].as_array().expect("error details");
        assert_eq!(details.len(), 3, "{extra:?}: {j}");
        for d in details {
            assert_eq!(d["kind"], "handshake", "{extra:?}: {j}");
            let msg = d["message"].as_str().unwrap_or("");
            assert!(
                msg.contains("refused the probe's client certificate")
                    && msg.contains("CertificateRequired"),
                "{extra:?}: {msg}"
            );
        }
        let shown: Vec<&str> = refused.iter().map(String::as_str).collect();
        let o = probe_cli(&shown);
        let (code, table, _) = texts(&o);
        assert_eq!(code, 1, "{extra:?}: {table}");
        let line = handshakes_line(&table);
        assert!(line.starts_with("handshakes   0 ("), "{extra:?}: {line}");
        assert!(line.contains("NOT verified"), "{extra:?}: {line}");
        assert!(!line.contains("/s"), "{extra:?}: {line}");
        // No connection opened: no connect latency; churn says 0 opened.
        assert!(
            !table.lines().any(|l| l.starts_with("connect ")),
            "{extra:?}: {table}"
        );
        assert!(
            table
                .lines()
                .filter(|l| l.starts_with("connections  ") && l.contains(" opened"))
                .all(|l| l.starts_with("connections  0 opened")),
            "{extra:?}: {table}"
        );
        assert!(
            table
                .lines()
                .any(|l| l.starts_with("hint") && l.contains("client certificate")),
            "{extra:?}: {table}"
        );
        // The same run, the server asking for no client certificate.
        let mut json: Vec<String> = args(&plain);
        json.push("--json".to_owned());
        let json: Vec<&str> = json.iter().map(String::as_str).collect();
        let o = probe_cli(&json);
        assert_eq!(o.status.code(), Some(0), "{extra:?}: {:?}", texts(&o));
        let j = json_of(&o);
        let opened = j["connections_opened"].as_u64().unwrap_or(0);
        assert!(opened >= 3, "{extra:?}: {j}");
        assert_eq!(j["tls"]["handshakes"], opened, "{extra:?}: {j}");
        assert_eq!(j["tls"]["verified"], true, "{extra:?}: {j}");
        assert_eq!(j["connect_us"]["count"], opened, "{extra:?}: {j}");
    }
}

/// The two wrong-scheme mistakes: `tls://` to a plain echo server (which
/// echoes the ClientHello back) and `tcp://` to a TLS port (which answers
/// with an alert record) each name the scheme to use; the server keeps
/// serving both ports to the right clients after them.
#[test]
fn probe_names_the_right_scheme_for_a_plain_port_and_for_a_tls_port() {
    let pki = Pki::new();
    let srv = TlsServer::start(&pki, Mode::Raw, |_| {});
    let tls_to_plain = format!("tls://localhost:{}", srv.tcp.port());
    let msg = handshake_message(&[&tls_to_plain, "--tls-ca", path(&pki.ca), "-n", "3"]);
    assert!(
        msg.contains("plain echo server") && msg.contains("tcp://HOST:PORT"),
        "{msg}"
    );
    let plain_to_tls = format!("tcp://127.0.0.1:{}", srv.tls.port());
    let o = probe_cli(&[&plain_to_tls, "-n", "3", "--json"]);
    assert_eq!(o.status.code(), Some(1), "{:?}", texts(&o));
    let j = json_of(&o);
    let msg = j["error_details"][0]["message"].as_str().unwrap_or("");
    assert!(
        msg.contains("TLS record") && msg.contains("tls://HOST:PORT"),
        "{msg}"
    );
    // Both ports still serve the right clients.
    let plain = format!("tcp://127.0.0.1:{}", srv.tcp.port());
    let o = probe_cli(&[&plain, "-n", "3"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    let tls = format!("tls://localhost:{}", srv.tls.port());
    let o = probe_cli(&[&tls, "--tls-ca", path(&pki.ca), "-n", "3"]);
    assert_eq!(o.status.code(), Some(0), "{:?}", texts(&o));
    srv.wait_stats("every connection ended and counted", |s| {
        (s.tls.accepted, s.tls.ended(), s.tcp.accepted, s.tcp.ended()) == (2, 2, 2, 2)
    });
    let s = srv.handle().stats();
    assert_eq!(
        (
            s.tls_handshakes.completed,
            s.tls_handshakes.failed.bad_record
        ),
        (1, 1),
        "{s:#?}"
    );
    assert_eq!(s.tls.bytes_in, s.tls.bytes_out, "{s:#?}");
}
