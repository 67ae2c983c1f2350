//! What a stream connection's session reports, in the log: closes at
//! debug, resets by peers as a rate-limited summary, other aborts as
//! rate-limited warnings. Shared by both workers (epoll and io_uring), so
//! a flood of the same event logs the same way on either.

use std::net::SocketAddr;

use ricochet_core::{AbortReason, Duration, Event, Instant, Pump};

use super::conn::Peer;
use super::storage::SessionStorage;
use super::throttle::Throttle;

/// A peer's address as the log shows it: an IPv4 client of a dual-stack
/// IPv6 socket (one systemd passed) as the IPv4 address it is, not its
/// v4-mapped form; any other as it is (a link-local one with its
/// interface).
pub(crate) fn shown(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V6(v6) => match v6.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(v4.into(), v6.port()),
            None => addr,
        },
        SocketAddr::V4(_) => addr,
    }
}

/// Minimum time between two log lines about the same kind of event.
pub(crate) const LOG_EVERY: Duration = Duration::from_secs(10);

/// Log throttles of one worker's connections.
#[derive(Debug)]
pub(crate) struct Throttles {
    /// Resets and losses by the peer.
    pub(crate) resets: Throttle,
    /// Other aborts (timeouts of the session, protocol violations).
    pub(crate) aborts: Throttle,
    /// Failed TLS handshakes.
    pub(crate) handshakes: Throttle,
}

impl Throttles {
    pub(crate) fn new() -> Self {
        Throttles {
            resets: Throttle::new(LOG_EVERY),
            aborts: Throttle::new(LOG_EVERY),
            handshakes: Throttle::new(LOG_EVERY),
        }
    }
}

/// Logs a connection's session events: closes at debug, resets by the peer
/// as a rate-limited summary, other aborts as rate-limited warnings.
/// `refused_tls`: the connection was a refused TLS handshake, already
/// logged as such.
pub(crate) fn log_events(
    pump: &mut Pump<SessionStorage>,
    peer: &Peer,
    refused_tls: bool,
    now: Instant,
    throttles: &mut Throttles,
) {
    while let Some(event) = pump.poll_event() {
        let stats = pump.session().stats();
        match event {
            Event::PeerFinished => tracing::trace!(%peer, "peer finished sending"),
            Event::Closed(reason) => tracing::debug!(
                %peer,
                bytes_in = stats.bytes_in,
                bytes_out = stats.bytes_out,
                %reason,
                "connection closed"
            ),
            Event::Aborted(reason) => {
                let by_peer = matches!(reason, AbortReason::PeerReset | AbortReason::TimedOut);
                // Other aborts are warned of, rate limited; the rest at debug.
                let warned = if by_peer {
                    None
                } else {
                    throttles.aborts.admit(now)
                };
                match warned {
                    Some(suppressed) => tracing::warn!(
                        %peer,
                        bytes_in = stats.bytes_in,
                        bytes_out = stats.bytes_out,
                        %reason,
                        others_since_last = suppressed,
                        "connection aborted"
                    ),
                    None => tracing::debug!(
                        %peer,
                        bytes_in = stats.bytes_in,
                        bytes_out = stats.bytes_out,
                        %reason,
                        "connection aborted"
                    ),
                }
                // A refused TLS handshake was logged as such already.
                if by_peer
                    && !refused_tls
                    && let Some(suppressed) = throttles.resets.admit(now)
                {
                    tracing::info!(
                        %peer,
                        %reason,
                        others_since_last = suppressed,
                        "connection reset or lost by the peer"
                    );
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v4-mapped peer shows as the IPv4 address it is; a link-local one
    /// keeps its interface (`%3`): it was dropped with the mapping, and a
    /// peer at `fe80::1` could be on any interface.
    #[test]
    fn shown_peer_is_unmapped_and_keeps_its_scope() {
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
        assert_eq!(shown(mapped).to_string(), "127.0.0.1:40000");
        for a in ["[fe80::1%3]:40000", "[::1]:40000", "127.0.0.1:40000"] {
            assert_eq!(shown(a.parse().unwrap()).to_string(), a);
        }
    }
}
