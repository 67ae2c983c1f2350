//! When a certificate is valid: its `notBefore` and `notAfter`, read from
//! its DER with `x509-parser`, so the server
//! can say at start that its certificate expired or is not valid yet:
//! every client that checks it would refuse the handshake, and the server
//! would only see refusals. Also the plain dates and spans both the server
//! and the probe write about certificate times.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The validity of an X.509 certificate in DER: `(notBefore, notAfter)` in
/// seconds since the Unix epoch (dates before 1970 as 0). `None` if it is
/// not the DER of a certificate.
pub(crate) fn validity(der: &[u8]) -> Option<(u64, u64)> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let validity = cert.validity();
    let secs = |t: x509_parser::time::ASN1Time| u64::try_from(t.timestamp()).unwrap_or(0);
    Some((secs(validity.not_before), secs(validity.not_after)))
}

/// Seconds since the Unix epoch as a UTC date and time (`2020-02-01T00:00:00Z`).
pub(crate) fn utc(secs: u64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(secs);
    humantime::format_rfc3339_seconds(t).to_string()
}

/// A span of seconds in the largest whole unit that fits (`3 days`, `5 hours`,
/// `1 second`).
pub(crate) fn span(secs: u64) -> String {
    let (n, unit) = match secs {
        s if s >= 2 * 86_400 => (s / 86_400, "days"),
        s if s >= 2 * 3_600 => (s / 3_600, "hours"),
        s if s >= 2 * 60 => (s / 60, "minutes"),
        1 => (1, "second"),
        s => (s, "seconds"),
    };
    format!("{n} {unit}")
}

/// What is wrong with a certificate valid from `not_before` to `not_after`
/// at `now` (Unix seconds each), in words; `None` while it is valid.
pub(crate) fn problem(not_before: u64, not_after: u64, now: u64) -> Option<String> {
    if now > not_after {
        Some(format!(
            "expired at {} ({} ago; this host's clock says {})",
            utc(not_after),
            span(now - not_after),
            utc(now)
        ))
    } else if now < not_before {
        Some(format!(
            "is not valid before {} ({} from now; this host's clock says {})",
            utc(not_before),
            span(not_before - now),
            utc(now)
        ))
    } else {
        None
    }
}

/// Now, in seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert(from: (i32, u8, u8), until: (i32, u8, u8)) -> Vec<u8> {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).expect("p");
        params.not_before = rcgen::date_time_ymd(from.0, from.1, from.2);
        params.not_after = rcgen::date_time_ymd(until.0, until.1, until.2);
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn validity_is_read_from_utc_and_generalized_times() {
        // 2020 is a UTCTime, 2050 and later GeneralizedTime (RFC 5280).
        assert_eq!(
            validity(&cert((2020, 1, 1), (2020, 2, 1))),
            Some((1_577_836_800, 1_580_515_200))
        );
        assert_eq!(
            validity(&cert((2024, 2, 29), (2200, 1, 1))),
            Some((1_709_164_800, 7_258_118_400))
        );
        assert_eq!(validity(b"not a certificate"), None);
        assert_eq!(validity(&[0x30, 0x82, 0xff]), None, "a length past the end");
    }

    #[test]
    fn problems_say_when_in_plain_dates() {
        let (from, until) = (1_577_836_800, 1_580_515_200);
        assert_eq!(problem(from, until, from + 1), None);
        let p = problem(from, until, until + 3 * 86_400).expect("expired");
        assert!(
            p.starts_with("expired at 2020-02-01T00:00:00Z (3 days ago"),
            "{p}"
        );
        let p = problem(from, until, from - 7_200).expect("not yet");
        assert!(
            p.starts_with("is not valid before 2020-01-01T00:00:00Z (2 hours from now"),
            "{p}"
        );
        assert_eq!(span(90), "90 seconds");
        assert_eq!(span(2_498 * 86_400 + 5), "2498 days");
    }

    /// The first and last second of validity are valid: RFC 5280 counts
    /// both `notBefore` and `notAfter` in the validity period.
    #[test]
    fn a_certificate_is_valid_at_both_ends_of_its_period() {
        let (from, until) = (1_577_836_800, 1_580_515_200);
        assert_eq!(problem(from, until, from), None);
        assert_eq!(problem(from, until, until), None);
        let p = problem(from, until, until + 1).expect("a second after");
        assert!(
            p.starts_with("expired at 2020-02-01T00:00:00Z (1 second ago;"),
            "{p}"
        );
        let p = problem(from, until, from - 1).expect("a second before");
        assert!(
            p.starts_with("is not valid before 2020-01-01T00:00:00Z (1 second from now"),
            "{p}"
        );
    }

    /// Each unit starts at two of it: 119 seconds, then 2 minutes.
    #[test]
    fn a_span_changes_unit_at_two_of_the_larger_one() {
        let cases = [
            (119, "119 seconds"),
            (120, "2 minutes"),
            (7_199, "119 minutes"),
            (7_200, "2 hours"),
            (172_799, "47 hours"),
            (172_800, "2 days"),
        ];
        for (secs, want) in cases {
            assert_eq!(span(secs), want, "{secs}");
        }
    }

    /// The clock read is this host's: between two readings taken around it.
    #[test]
    fn now_is_the_system_clock_in_seconds() {
        let read = || {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .expect("after 1970")
                .as_secs()
        };
        let before = read();
        let now = now_secs();
        assert!(before <= now && now <= read(), "{before} {now}");
    }
}
