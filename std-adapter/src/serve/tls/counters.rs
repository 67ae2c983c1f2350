//! TLS handshake outcomes, by reason. The sessions of TLS connections are
//! counted like any stream's ([`ricochet_core::StreamCounters`], the `tls`
//! entry of [`crate::serve::StatsSnapshot`]); these say how their
//! handshakes went.

use std::fmt;

/// Why a TLS handshake failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum HandshakeFailure {
    /// Not complete within the handshake timeout (a silent or slow client).
    Timeout,
    /// The bytes were not TLS records, or a record was malformed (a plain
    /// TCP or HTTP client, garbage).
    BadRecord,
    /// A certificate was refused: the client's (mutual TLS), or ours by the
    /// client (its alert said so).
    Certificate,
    /// Any other protocol failure: no common version or cipher suite, an
    /// unexpected message, a decryption failure, another alert from the client.
    Protocol,
    /// The client closed the connection before the handshake completed.
    Closed,
    /// The socket failed (reset) during the handshake.
    Io,
}

impl HandshakeFailure {
    /// The counter's name: `timeout`, `bad_record`, `certificate`, `protocol`, `closed`, `io`.
    pub fn as_str(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => "timeout",
            HandshakeFailure::BadRecord => "bad_record",
            HandshakeFailure::Certificate => "certificate",
            HandshakeFailure::Protocol => "protocol",
            HandshakeFailure::Closed => "closed",
            HandshakeFailure::Io => "io",
        }
    }

    /// What the reason means, in words, with what the client likely did:
    /// for the log, where `bad_record` or `certificate` alone leaves the
    /// reader to guess whose fault it was.
    pub fn meaning(self) -> &'static str {
        match self {
            HandshakeFailure::Timeout => {
                "not complete within --tls-handshake-timeout (a silent or slow client)"
            }
            HandshakeFailure::BadRecord => {
                "the client does not speak TLS (plain TCP, HTTP or garbage: a plain client \
                 belongs on a --tcp listener without TLS)"
            }
            HandshakeFailure::Certificate => {
                "a certificate was refused: ours by the client (its alert says why: check our \
                 certificate's names, dates and CA), or the client's (mutual TLS)"
            }
            HandshakeFailure::Protocol => {
                "the TLS exchange failed (no common version or cipher suite, an unexpected \
                 message, another alert from the client)"
            }
            HandshakeFailure::Closed => "the client closed the connection before the end",
            HandshakeFailure::Io => "the connection failed (reset) during the handshake",
        }
    }

    /// Classifies a rustls error raised while the handshake was under way.
    pub(crate) fn of(e: &rustls::Error) -> Self {
        use rustls::AlertDescription as A;
        use rustls::Error as E;
        match e {
            E::InvalidMessage(_) | E::PeerSentOversizedRecord => HandshakeFailure::BadRecord,
            E::InvalidCertificate(_)
            | E::NoCertificatesPresented
            | E::InvalidCertRevocationList(_)
            | E::UnsupportedNameType => HandshakeFailure::Certificate,
            E::AlertReceived(
                A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::UnknownCA
                | A::CertificateRequired
                | A::AccessDenied,
            ) => HandshakeFailure::Certificate,
            _ => HandshakeFailure::Protocol,
        }
    }
}

impl fmt::Display for HandshakeFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Failed handshakes, by [`HandshakeFailure`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeFailures {
    /// See [`HandshakeFailure::Timeout`].
    pub timeout: u64,
    /// See [`HandshakeFailure::BadRecord`].
    pub bad_record: u64,
    /// See [`HandshakeFailure::Certificate`].
    pub certificate: u64,
    /// See [`HandshakeFailure::Protocol`].
    pub protocol: u64,
    /// See [`HandshakeFailure::Closed`].
    pub closed: u64,
    /// See [`HandshakeFailure::Io`].
    pub io: u64,
}

impl HandshakeFailures {
    /// All failed handshakes.
    pub const fn total(&self) -> u64 {
        self.timeout + self.bad_record + self.certificate + self.protocol + self.closed + self.io
    }

    /// Counts one failure.
    pub fn count(&mut self, why: HandshakeFailure) {
        let slot = match why {
            HandshakeFailure::Timeout => &mut self.timeout,
            HandshakeFailure::BadRecord => &mut self.bad_record,
            HandshakeFailure::Certificate => &mut self.certificate,
            HandshakeFailure::Protocol => &mut self.protocol,
            HandshakeFailure::Closed => &mut self.closed,
            HandshakeFailure::Io => &mut self.io,
        };
        *slot += 1;
    }

    fn add(&mut self, o: &HandshakeFailures) {
        self.timeout += o.timeout;
        self.bad_record += o.bad_record;
        self.certificate += o.certificate;
        self.protocol += o.protocol;
        self.closed += o.closed;
        self.io += o.io;
    }
}

/// TLS handshakes of one worker, or summed over all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HandshakeCounts {
    /// Handshakes completed (the session then started).
    pub completed: u64,
    /// Of those, resumed from an earlier session (ticket or session id).
    pub resumed: u64,
    /// Handshakes that failed, by reason.
    pub failed: HandshakeFailures,
}

impl HandshakeCounts {
    /// Adds `o` (summing workers).
    pub fn add(&mut self, o: &HandshakeCounts) {
        self.completed += o.completed;
        self.resumed += o.resumed;
        self.failed.add(&o.failed);
    }

    /// Counts one handshake's outcome.
    pub(crate) fn record(&mut self, outcome: super::stream::Outcome) {
        match outcome {
            super::stream::Outcome::Completed { resumed } => {
                self.completed += 1;
                self.resumed += u64::from(resumed);
            }
            super::stream::Outcome::Failed(why) => self.failed.count(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::AlertDescription as A;
    use rustls::Error as E;

    const ALL: [HandshakeFailure; 6] = [
        HandshakeFailure::Timeout,
        HandshakeFailure::BadRecord,
        HandshakeFailure::Certificate,
        HandshakeFailure::Protocol,
        HandshakeFailure::Closed,
        HandshakeFailure::Io,
    ];

    /// Pins the reason each rustls error is counted (and logged) under: a
    /// plain client under `bad_record`, either side's certificate refusal
    /// under `certificate`, every other failure under `protocol`.
    #[test]
    fn rustls_errors_are_counted_under_the_reason_an_operator_acts_on() {
        use HandshakeFailure::{BadRecord, Certificate, Protocol};
        let cases = [
            (
                E::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
                BadRecord,
            ),
            (E::PeerSentOversizedRecord, BadRecord),
            (
                E::InvalidCertificate(rustls::CertificateError::Expired),
                Certificate,
            ),
            (E::NoCertificatesPresented, Certificate),
            (
                E::InvalidCertRevocationList(rustls::CertRevocationListError::BadSignature),
                Certificate,
            ),
            (E::UnsupportedNameType, Certificate),
            (E::AlertReceived(A::BadCertificate), Certificate),
            (E::AlertReceived(A::UnknownCA), Certificate),
            (E::AlertReceived(A::CertificateExpired), Certificate),
            (E::AlertReceived(A::AccessDenied), Certificate),
            (E::AlertReceived(A::HandshakeFailure), Protocol),
            (E::AlertReceived(A::ProtocolVersion), Protocol),
            (E::DecryptError, Protocol),
            (
                E::PeerIncompatible(rustls::PeerIncompatible::NoCipherSuitesInCommon),
                Protocol,
            ),
        ];
        for (e, want) in cases {
            assert_eq!(HandshakeFailure::of(&e), want, "{e:?}");
        }
    }

    /// Pins the names of the `--metrics` results and the log's `reason`
    /// field, and that each reason's words in the log are its own.
    #[test]
    fn each_reason_has_its_own_name_and_words() {
        let names: Vec<String> = ALL.iter().map(|w| w.to_string()).collect();
        assert_eq!(
            names,
            [
                "timeout",
                "bad_record",
                "certificate",
                "protocol",
                "closed",
                "io"
            ]
        );
        for w in ALL {
            assert_eq!(w.as_str(), w.to_string());
        }
        let mut meanings: Vec<&str> = ALL.iter().map(|w| w.meaning()).collect();
        assert!(
            meanings[0].contains("--tls-handshake-timeout"),
            "{}",
            meanings[0]
        );
        assert!(
            meanings[1].contains("does not speak TLS"),
            "{}",
            meanings[1]
        );
        assert!(meanings[2].contains("certificate"), "{}", meanings[2]);
        assert!(meanings[4].contains("closed"), "{}", meanings[4]);
        assert!(meanings[5].contains("reset"), "{}", meanings[5]);
        meanings.sort_unstable();
        meanings.dedup();
        assert_eq!(meanings.len(), ALL.len(), "{meanings:?}");
        assert!(meanings.iter().all(|m| m.len() > 20), "{meanings:?}");
    }

    /// Pins that each failure lands in its own counter, once, and that the
    /// total (the stats line's `failed=`) is the sum of all six.
    #[test]
    fn each_failure_is_counted_under_its_reason_and_in_the_total() {
        let mut f = HandshakeFailures::default();
        // 1 timeout, 2 bad records, ... 6 I/O failures.
        for (i, w) in ALL.into_iter().enumerate() {
            for _ in 0..=i {
                f.count(w);
            }
        }
        let want = HandshakeFailures {
            timeout: 1,
            bad_record: 2,
            certificate: 3,
            protocol: 4,
            closed: 5,
            io: 6,
        };
        assert_eq!(f, want);
        assert_eq!(f.total(), 21);
    }

    /// Pins what the workers' counts sum to (the snapshot `--metrics` and
    /// the stats line read), and how outcomes are recorded: a completed
    /// handshake once, a resumed one also as resumed, a failure by reason.
    #[test]
    fn outcomes_are_recorded_and_workers_summed() {
        use super::super::stream::Outcome;
        let mut a = HandshakeCounts::default();
        a.record(Outcome::Completed { resumed: false });
        a.record(Outcome::Completed { resumed: true });
        a.record(Outcome::Completed { resumed: true });
        for w in ALL {
            a.record(Outcome::Failed(w));
        }
        a.record(Outcome::Failed(HandshakeFailure::Closed));
        assert_eq!((a.completed, a.resumed, a.failed.total()), (3, 2, 7));
        assert_eq!((a.failed.timeout, a.failed.closed), (1, 2));
        let mut b = HandshakeCounts {
            completed: 5,
            resumed: 4,
            failed: HandshakeFailures {
                timeout: 2,
                bad_record: 3,
                certificate: 4,
                protocol: 5,
                closed: 6,
                io: 7,
            },
        };
        b.add(&a);
        b.add(&a);
        let want = HandshakeCounts {
            completed: 11,
            resumed: 8,
            failed: HandshakeFailures {
                timeout: 4,
                bad_record: 5,
                certificate: 6,
                protocol: 7,
                closed: 10,
                io: 9,
            },
        };
        assert_eq!(b, want);
    }
}
