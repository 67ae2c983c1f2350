//! The TLS section: each name once, `--insecure`, verified only after a
//! checked handshake, and the hint when no handshake completed.

use super::*;

#[test]
fn tls_section_only_with_tls_targets_naming_each_name_once() {
    let (mut w, mut h) = (Vec::new(), Vec::new());
    let tcp = ProbeSpec::new(Target::Tcp(vec!["127.0.0.1:7".parse().unwrap()].into()));
    assert!(tls_section(&tcp, &tally(), 1.0, &mut w, &mut h).is_none());
    let mut spec = ProbeSpec::new(tls("a.example"));
    spec.targets.push(tls("b.example"));
    spec.targets.push(tls("a.example"));
    let mut t = tally();
    t.handshake(
        Instant::from_millis(1),
        ricochet_core::Duration::from_micros(500),
        true,
    );
    let r = tls_section(&spec, &t, 2.0, &mut w, &mut h).expect("a tls section");
    assert_eq!(r.server_name, "a.example b.example");
    assert_eq!(
        (r.handshakes, r.resumed, r.handshakes_per_sec),
        (1, 1, None)
    );
    assert!(r.verified);
    assert!(w.is_empty() && h.is_empty(), "{w:?} {h:?}");
    t.handshake(
        Instant::from_millis(2),
        ricochet_core::Duration::from_micros(500),
        false,
    );
    let r = tls_section(&spec, &t, 2.0, &mut w, &mut h).expect("a tls section");
    assert_eq!(r.handshakes_per_sec, Some(1.0));
    let r = tls_section(&spec, &t, 0.009, &mut w, &mut h).expect("a tls section");
    assert_eq!(
        r.handshakes_per_sec, None,
        "a span under 10 ms gives no rate"
    );
}

#[test]
fn tls_section_warns_of_insecure_and_hints_when_no_handshake_completed() {
    let (mut w, mut h) = (Vec::new(), Vec::new());
    let mut spec = ProbeSpec::new(tls("localhost"));
    spec.tls.insecure = true;
    let mut t = tally();
    t.errors.count(ErrorKind::Handshake);
    let r = tls_section(&spec, &t, 1.0, &mut w, &mut h).expect("a tls section");
    assert!(r.insecure && !r.verified);
    assert!(w[0].contains("NOT verified"), "{w:?}");
    assert!(h[0].contains("no TLS handshake completed"), "{h:?}");
}

/// "No TLS handshake completed" needs a failed handshake and none done:
/// a run with no handshake failure, or with some handshakes done, gets
/// no such hint.
#[test]
fn tls_no_handshake_hint_needs_a_failure_and_no_handshake_done() {
    const NONE_DONE: &str = "no TLS handshake completed";
    let spec = ProbeSpec::new(tls("a.example"));
    let hints = |t: &Tally| {
        let (mut w, mut h) = (Vec::new(), Vec::new());
        tls_section(&spec, t, 1.0, &mut w, &mut h);
        h
    };
    let mut t = tally();
    assert!(!any_has(&hints(&t), NONE_DONE), "nothing failed");
    t.errors.count(ErrorKind::Handshake);
    assert!(any_has(&hints(&t), NONE_DONE));
    t.handshake(
        Instant::from_millis(1),
        ricochet_core::Duration::from_micros(500),
        false,
    );
    assert!(!any_has(&hints(&t), NONE_DONE), "one was done");
}

/// The TLS section says resumption is on unless turned off, and calls the
/// server verified only after a handshake that checked its certificate.
#[test]
fn tls_section_says_verified_only_after_a_checked_handshake() {
    let mut spec = ProbeSpec::new(tls("a.example"));
    let section = |spec: &ProbeSpec, t: &Tally| {
        let (mut w, mut h) = (Vec::new(), Vec::new());
        tls_section(spec, t, 1.0, &mut w, &mut h).expect("a tls section")
    };
    let mut t = tally();
    let r = section(&spec, &t);
    assert!(r.resumption);
    assert!(!r.verified, "no handshake: nothing verified");
    t.handshake(
        Instant::from_millis(1),
        ricochet_core::Duration::from_micros(500),
        false,
    );
    assert!(section(&spec, &t).verified);
    spec.tls.insecure = true;
    assert!(!section(&spec, &t).verified, "--insecure verifies nothing");
    spec.tls.no_resumption = true;
    assert!(!section(&spec, &t).resumption);
}
