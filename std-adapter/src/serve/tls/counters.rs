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
