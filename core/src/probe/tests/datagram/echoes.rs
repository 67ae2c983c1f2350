//! What an echo counts as: verified, duplicate, reordered, corrupt or
//! foreign; and the sizes a datagram probe may use.

use super::*;

#[test]
fn datagram_echoed_intact_is_verified_once_then_duplicate() {
    let mut p = dgram(1);
    let mut buf = [0u8; 256];
    let n = p.poll_transmit(T0, &mut buf).unwrap();
    assert_eq!(p.poll_transmit(T0, &mut buf[..]), None, "window of 1");
    let later = T0 + Duration::from_micros(40);
    assert_eq!(
        p.handle_datagram(later, &buf[..n]),
        DatagramOutcome::Verified {
            round_trip: Duration::from_micros(40),
            since_sent: Duration::from_micros(40)
        }
    );
    assert_eq!(
        p.handle_datagram(later, &buf[..n]),
        DatagramOutcome::Duplicate { seq: 0 }
    );
    assert_eq!((p.stats().verified, p.stats().duplicate), (1, 1));
}

#[test]
fn datagram_echoes_out_of_order_are_verified_and_counted_reordered() {
    let mut p = dgram(4);
    let mut bufs = [[0u8; 256]; 3];
    let mut lens = [0usize; 3];
    for (b, n) in bufs.iter_mut().zip(&mut lens) {
        *n = p.poll_transmit(T0, b).unwrap();
    }
    // 0, 2, then 1: only 1 came back after a later one.
    for i in [0, 2, 1] {
        assert!(matches!(
            p.handle_datagram(T0, &bufs[i][..lens[i]]),
            DatagramOutcome::Verified { .. }
        ));
    }
    assert_eq!((p.stats().verified, p.stats().reordered), (3, 1));
}

#[test]
fn datagram_truncated_or_altered_is_corrupt_not_verified() {
    let mut p = dgram(4);
    let mut a = [0u8; 256];
    let mut b = [0u8; 256];
    let na = p.poll_transmit(T0, &mut a).unwrap();
    let nb = p.poll_transmit(T0, &mut b).unwrap();
    assert_eq!(
        p.handle_datagram(T0, &a[..na - 1]),
        DatagramOutcome::Corrupt { seq: 0 }
    );
    b[nb - 1] ^= 0xff;
    assert_eq!(
        p.handle_datagram(T0, &b[..nb]),
        DatagramOutcome::Corrupt { seq: 1 }
    );
    assert_eq!(p.stats().corrupt, 2);
    assert_eq!(p.stats().verified, 0);
}

#[test]
fn datagram_from_someone_else_is_foreign() {
    let mut p = dgram(1);
    assert_eq!(
        p.handle_datagram(T0, b"hello world, not ours"),
        DatagramOutcome::Foreign
    );
    assert_eq!(p.handle_datagram(T0, b"short"), DatagramOutcome::Foreign);
}

#[test]
#[should_panic(expected = "give it config.size.max bytes")]
#[cfg(debug_assertions)]
fn datagram_transmit_into_a_buffer_smaller_than_the_datagram_panics_in_debug() {
    let mut p = dgram(4);
    let mut small = [0u8; 8];
    let _ = p.poll_transmit(T0, &mut small);
}

#[test]
fn datagram_config_refuses_sizes_no_udp_socket_can_send() {
    let config = |max| DatagramProbeConfig {
        size: SizeRange::range(12, max),
        ..DatagramProbeConfig::default()
    };
    assert!(DatagramProbe::<4>::new(config(UDP_MAX_V6), T0).is_ok());
    assert_eq!(
        DatagramProbe::<4>::new(config(UDP_MAX_V6 + 1), T0).err(),
        Some(ConfigError::SizeOutOfBounds {
            size: 65_528,
            min: 12,
            max: 65_527
        })
    );
}

// --- Pinned after mutation testing (cargo-mutants on the probe) ---

/// The tag is all that tells a datagram of this probe from a stranger's
/// with the same layout: an echo whose tag changed is not ours, however
/// well its sequence number and payload match.
#[test]
fn datagram_echo_with_an_altered_tag_is_foreign_not_verified() {
    let mut p = dgram(4);
    let mut buf = [0u8; 256];
    let n = p.poll_transmit(T0, &mut buf).unwrap();
    let mut altered = buf;
    altered[8] ^= 0x01;
    assert_eq!(
        p.handle_datagram(T0, &altered[..n]),
        DatagramOutcome::Foreign
    );
    assert_eq!((p.stats().verified, p.stats().foreign), (0, 1));
    assert!(matches!(
        p.handle_datagram(T0, &buf[..n]),
        DatagramOutcome::Verified { .. }
    ));
}

/// A datagram of the right tag and layout whose sequence number was never
/// sent (a second probe of the same seed, or a forged one) is foreign.
#[test]
fn datagram_with_the_next_unsent_sequence_number_is_foreign() {
    let mut p = dgram(4);
    let mut twin = dgram(4);
    let mut buf = [0u8; 256];
    p.poll_transmit(T0, &mut buf).unwrap();
    twin.poll_transmit(T0, &mut buf).unwrap();
    let n = twin.poll_transmit(T0, &mut buf).unwrap();
    assert_eq!(buf[..8], 1u64.to_be_bytes());
    assert_eq!(p.handle_datagram(T0, &buf[..n]), DatagramOutcome::Foreign);
    assert_eq!((p.stats().foreign, p.stats().late), (1, 0));
}

#[test]
fn datagram_verified_counts_its_bytes_and_a_corrupt_one_counts_none() {
    let mut p = dgram(4);
    let mut a = [0u8; 256];
    let mut b = [0u8; 256];
    let na = p.poll_transmit(T0, &mut a).unwrap();
    let nb = p.poll_transmit(T0, &mut b).unwrap();
    p.handle_datagram(T0, &a[..na]);
    b[nb - 1] ^= 0x01;
    p.handle_datagram(T0, &b[..nb]);
    assert_eq!(p.stats().bytes_verified, na as u64);
}

/// A datagram longer than the verifier's 128-byte comparison chunk is
/// compared whole: every chunk against its own payload offsets.
#[test]
fn datagram_longer_than_a_comparison_chunk_is_verified_whole_and_altered_late_is_corrupt() {
    let config = DatagramProbeConfig {
        seed: 5,
        size: SizeRange::fixed(1000),
        count: None,
        window: 4,
        loss_timeout: Duration::from_secs(1),
        interval: None,
    };
    let mut p = DatagramProbe::<4>::new(config, T0).unwrap();
    let mut a = [0u8; 1000];
    let mut b = [0u8; 1000];
    assert_eq!(p.poll_transmit(T0, &mut a), Some(1000));
    assert_eq!(p.poll_transmit(T0, &mut b), Some(1000));
    assert_ne!(a[12..], b[12..], "each datagram has its own payload");
    assert!(matches!(
        p.handle_datagram(T0, &a),
        DatagramOutcome::Verified { .. }
    ));
    b[700] ^= 0x40;
    assert_eq!(
        p.handle_datagram(T0, &b),
        DatagramOutcome::Corrupt { seq: 1 }
    );
}

#[test]
fn datagram_echoes_in_order_are_not_counted_reordered() {
    let mut p = dgram(4);
    let mut bufs = [[0u8; 256]; 3];
    let mut lens = [0usize; 3];
    for (b, n) in bufs.iter_mut().zip(&mut lens) {
        *n = p.poll_transmit(T0, b).unwrap();
    }
    for (b, n) in bufs.iter().zip(lens) {
        p.handle_datagram(T0, &b[..n]);
    }
    assert_eq!((p.stats().verified, p.stats().reordered), (3, 0));
}

#[test]
fn datagram_sizes_drawn_from_a_range_cover_both_ends_and_stay_inside() {
    let config = DatagramProbeConfig {
        seed: 5,
        size: SizeRange::range(12, 14),
        count: None,
        window: 1,
        loss_timeout: Duration::from_secs(1),
        interval: None,
    };
    let mut p = DatagramProbe::<4>::new(config, T0).unwrap();
    let mut seen = [0u32; 3];
    let mut buf = [0u8; 14];
    for _ in 0..60 {
        let n = p.poll_transmit(T0, &mut buf).unwrap();
        assert!((12..=14).contains(&n), "{n}");
        seen[n - 12] += 1;
        assert!(matches!(
            p.handle_datagram(T0, &buf[..n]),
            DatagramOutcome::Verified { .. }
        ));
    }
    assert!(seen.iter().all(|&k| k > 0), "{seen:?}");
}

/// An altered echo resolves its datagram: it frees the window at once and
/// is not counted lost later.
#[test]
fn datagram_corrupt_echo_resolves_it_and_frees_the_window() {
    let mut p = dgram(1);
    let mut buf = [0u8; 256];
    let n = p.poll_transmit(T0, &mut buf).unwrap();
    buf[n - 1] ^= 0x01;
    assert_eq!(
        p.handle_datagram(T0, &buf[..n]),
        DatagramOutcome::Corrupt { seq: 0 }
    );
    assert!(
        p.poll_transmit(T0, &mut buf).is_some(),
        "a window of 1 is free again"
    );
    p.finish();
    p.handle_timeout(T0 + Duration::from_secs(1));
    assert!(p.is_done());
    assert_eq!(
        (p.stats().corrupt, p.stats().lost),
        (1, 1),
        "only the second is lost"
    );
}
