//! What a [`DatagramProbe`](super::DatagramProbe) tells its caller: what
//! each received datagram was, and its counters.

use crate::time::Duration;

/// What one received datagram was.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum DatagramOutcome {
    /// Ours, intact, first copy, in time.
    Verified {
        /// Time from the instant the datagram was due (its scheduled send
        /// under pacing, else its actual send) to receiving it: a datagram
        /// sent late because the window was full counts that wait.
        round_trip: Duration,
        /// Time from its actual send to receiving it (the "uncorrected"
        /// latency; equal to `round_trip` without pacing).
        since_sent: Duration,
    },
    /// Ours (right tag and a sequence number we sent) but altered.
    Corrupt {
        /// Its sequence number.
        seq: u64,
    },
    /// A second copy of a datagram already verified.
    Duplicate {
        /// Its sequence number.
        seq: u64,
    },
    /// It came back after it was counted lost (or too late to be tracked).
    Late {
        /// Its sequence number.
        seq: u64,
    },
    /// Not a datagram of this probe (wrong tag, too short, or unknown sequence).
    Foreign,
}

/// Counters of a datagram probe.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct DatagramProbeStats {
    /// Datagrams sent.
    pub sent: u64,
    /// Datagrams returned intact.
    pub verified: u64,
    /// Bytes in the verified datagrams.
    pub bytes_verified: u64,
    /// Datagrams not returned within the loss timeout (or, of the ones that
    /// gave their ring slot up early, crowded out by `M` later ones first:
    /// see the module docs).
    pub lost: u64,
    /// Datagrams returned altered.
    pub corrupt: u64,
    /// Extra copies of verified datagrams.
    pub duplicate: u64,
    /// Datagrams returned after being counted lost, or too old to be told
    /// apart any more (more than `M` datagrams after it were sent: a
    /// duplicate that old counts here, not as [`duplicate`](Self::duplicate)).
    pub late: u64,
    /// Datagrams that were not ours.
    pub foreign: u64,
    /// Of `verified`: datagrams that came back after one sent later than
    /// them had (out of order; UDP keeps no order, so this is no failure).
    pub reordered: u64,
}
