//! Counters a node keeps, for the board to read and log.
//!
//! TCP and UDP echo count into the core's [`StreamCounters`] and
//! [`DatagramCounters`] (the same taxonomy the desktop server reports);
//! the node adds the two things only it sees. The node's own counters
//! saturate instead of wrapping; the core's are `u64` and wrap (never
//! reached in practice).

#[cfg(feature = "client")]
use ricochet_core::probe::{DatagramProbeStats, ProbeStats};
use ricochet_core::{DatagramCounters, StreamCounters};
#[cfg(feature = "client")]
use ricochet_core::{Duration, ProbeError};

/// All of a node's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NodeStats {
    /// TCP echo (server role): accepted, closed and aborted by reason,
    /// lingered, bytes. The core's pump counts everything but `accepted`.
    pub tcp: StreamCounters,
    /// Handshakes abandoned after
    /// [`TcpConfig::handshake_timeout`](crate::TcpConfig::handshake_timeout)
    /// (a SYN whose sender never completed the connection, perhaps forged).
    pub tcp_handshake_timeouts: u64,
    /// UDP echo (server role): every datagram received is counted as
    /// echoed or dropped by reason.
    pub udp: DatagramCounters,
    /// Times the UDP transmit ring was flushed because no echo left it for
    /// [`UDP_STALL`](crate::UDP_STALL) (its oldest echo's destination never
    /// answered ARP); the echoes queued behind it were lost with it.
    pub udp_tx_flushes: u64,
    /// IPv4 addressing.
    pub addressing: AddressStats,
    /// The verifying client (client role).
    #[cfg(feature = "client")]
    pub client: ClientStats,
}

impl NodeStats {
    /// Logs the server role's counters.
    pub(crate) fn log_server(&self) {
        let tcp = &self.tcp;
        let (closed, aborted) = (&tcp.closed, &tcp.aborted);
        info!(
            "tcp: {} accepted, {} active, {} closed, {} aborted (drain {}, reset {}, timed out {}, line {}, frame {}, truncated {}), {} lingered, {} handshakes timed out; {} bytes in, {} out",
            tcp.accepted,
            tcp.active(),
            closed.total(),
            aborted.total(),
            aborted.drain_timeout,
            aborted.peer_reset,
            aborted.timed_out,
            aborted.line_too_long,
            aborted.frame_too_large,
            aborted.truncated_frame,
            tcp.lingered,
            self.tcp_handshake_timeouts,
            tcp.bytes_in,
            tcp.bytes_out
        );
        #[cfg(feature = "udp")]
        let (udp, dropped) = (&self.udp, &self.udp.dropped);
        #[cfg(feature = "udp")]
        info!(
            "udp: {} received, {} echoed ({} bytes); dropped {} oversize, {} loop guard, {} rate limited, {} not unicast, {} unroutable, {} send full, {} send failed; {} stalled rings flushed",
            udp.received,
            udp.echoed,
            udp.echoed_bytes,
            dropped.oversize,
            dropped.loop_guard,
            dropped.rate_limited,
            dropped.not_unicast,
            dropped.unroutable,
            dropped.send_full,
            dropped.send_failed,
            self.udp_tx_flushes
        );
    }

    /// Logs the client role's counters and verdicts.
    #[cfg(feature = "client")]
    pub(crate) fn log_client(&self) {
        let client = &self.client;
        let rtt = client.stream_round_trips;
        info!(
            "probe: {:?}; {} connects ({} failed); {} messages, {} bytes verified; rtt min {} mean {} max {}",
            client.stream_outcome,
            client.connects,
            client.connect_failures,
            client.stream.messages_verified,
            client.stream.bytes_verified,
            rtt.min,
            rtt.mean(),
            rtt.max
        );
        if client.datagram_outcome != ProbeOutcome::NotRun {
            info!(
                "probe: datagrams {:?}; {} sent, {} verified, {} lost, {} corrupt; rtt mean {}",
                client.datagram_outcome,
                client.datagram.sent,
                client.datagram.verified,
                client.datagram.lost,
                client.datagram.corrupt,
                client.datagram_round_trips.mean()
            );
        }
    }
}

/// IPv4 addressing counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AddressStats {
    /// DHCP leases applied.
    pub leases: u32,
    /// DHCP leases lost (expired or refused).
    pub lease_losses: u32,
    /// Times the static fallback was applied.
    pub fallbacks: u32,
}

/// The verifying client's counters and verdicts (client role).
#[cfg(feature = "client")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct ClientStats {
    /// TCP connection attempts.
    pub connects: u32,
    /// Attempts that never reached the established state (refused, timed
    /// out); each is retried.
    pub connect_failures: u32,
    /// The stream probe's counters.
    pub stream: ProbeStats,
    /// Round trips of the stream probe's messages.
    pub stream_round_trips: RoundTrips,
    /// The stream probe's verdict.
    pub stream_outcome: ProbeOutcome,
    /// The datagram probe's counters.
    pub datagram: DatagramProbeStats,
    /// Round trips of the datagrams verified.
    pub datagram_round_trips: RoundTrips,
    /// The datagram probe's verdict.
    pub datagram_outcome: ProbeOutcome,
}

#[cfg(feature = "client")]
impl ClientStats {
    /// Whether both probes have a verdict (or were not run).
    pub(crate) fn finished(&self) -> bool {
        self.stream_outcome != ProbeOutcome::Running
            && self.datagram_outcome != ProbeOutcome::Running
    }
}

/// Where a probe stands.
#[cfg(feature = "client")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProbeOutcome {
    /// Not configured (server role, or no datagram probe).
    #[default]
    NotRun,
    /// Waiting for an address, connecting, or exchanging data.
    Running,
    /// Every message was sent, returned and verified (stream: and the
    /// server closed cleanly after the client finished).
    Passed,
    /// The probe failed.
    Failed(ProbeFailure),
}

/// Why a probe failed.
#[cfg(feature = "client")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ProbeFailure {
    /// The stream probe's error (mismatch, premature close, timeout...).
    Stream(ProbeError),
    /// Not every datagram came back intact.
    Datagrams {
        /// Datagrams never returned.
        lost: u64,
        /// Datagrams returned altered.
        corrupt: u64,
    },
}

/// Round-trip times: count, extremes and sum.
#[cfg(feature = "client")]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RoundTrips {
    /// Round trips measured.
    pub count: u64,
    /// The shortest (zero when `count == 0`).
    pub min: Duration,
    /// The longest.
    pub max: Duration,
    /// The sum of all.
    pub total: Duration,
}

#[cfg(feature = "client")]
impl RoundTrips {
    /// The mean round trip (zero when none was measured).
    pub fn mean(&self) -> Duration {
        match self.count {
            0 => Duration::ZERO,
            n => Duration::from_micros(self.total.as_micros() / n),
        }
    }

    pub(crate) fn record(&mut self, rtt: Duration) {
        self.min = if self.count == 0 {
            rtt
        } else {
            self.min.min(rtt)
        };
        self.max = self.max.max(rtt);
        self.total = self.total + rtt;
        self.count = self.count.saturating_add(1);
    }
}

/// Adds one to an event counter, saturating.
pub(crate) fn bump(counter: &mut u32) {
    *counter = counter.saturating_add(1);
}
