//! A paced datagram probe: its schedule, lateness, and the deadlines it
//! asks to be woken at.

use super::*;

#[test]
fn paced_datagram_late_send_measures_from_schedule_and_from_send() {
    let config = paced_datagrams(Some(2), 1);
    let mut p = DatagramProbe::<8>::new(config, T0).unwrap();
    let mut buf = [0u8; 64];
    let n = p.poll_transmit(T0, &mut buf).unwrap();
    let t50 = T0 + Duration::from_millis(50);
    let _ = p.handle_datagram(t50, &buf[..n]);
    let n = p.poll_transmit(t50, &mut buf).unwrap();
    assert_eq!(
        p.handle_datagram(t50 + Duration::from_millis(1), &buf[..n]),
        DatagramOutcome::Verified {
            round_trip: Duration::from_millis(41),
            since_sent: Duration::from_millis(1),
        }
    );
}

#[test]
fn paced_datagram_next_due_advances_per_datagram_and_stops_at_finish() {
    let config = paced_datagrams(None, 4);
    let mut p = DatagramProbe::<8>::new(config, T0).unwrap();
    let mut buf = [0u8; 64];
    assert_eq!(p.next_due(), Some(T0));
    p.poll_transmit(T0 + Duration::from_millis(3), &mut buf)
        .unwrap();
    assert_eq!(p.next_due(), Some(T0 + Duration::from_millis(10)));
    p.finish();
    assert_eq!(p.next_due(), None);
    assert_eq!(dgram(1).next_due(), None, "unpaced");
}

/// A paced probe whose window is full has nothing to send at the next
/// scheduled instant: its timer is the loss deadline, not a wake-up that
/// can send nothing.
#[test]
fn paced_datagram_window_full_sets_the_loss_deadline_not_the_schedule() {
    let config = paced_datagrams(None, 1);
    let mut p = DatagramProbe::<8>::new(config, T0).unwrap();
    let mut buf = [0u8; 64];
    p.poll_transmit(T0, &mut buf).unwrap();
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_secs(1)));
}

/// With every datagram sent, no paced instant is left: the timer is the
/// loss deadline.
#[test]
fn paced_datagram_count_reached_sets_only_the_loss_deadline() {
    let config = paced_datagrams(Some(2), 4);
    let mut p = DatagramProbe::<8>::new(config, T0).unwrap();
    let mut buf = [0u8; 64];
    p.poll_transmit(T0, &mut buf).unwrap();
    p.poll_transmit(T0 + Duration::from_millis(10), &mut buf)
        .unwrap();
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_secs(1)));
}

/// A paced probe with room and nothing in flight needs a timer for its
/// next scheduled send, or it would never send again.
#[test]
fn paced_datagram_idle_sets_a_timer_for_the_next_send() {
    let config = paced_datagrams(None, 4);
    let mut p = DatagramProbe::<8>::new(config, T0).unwrap();
    let mut buf = [0u8; 64];
    let n = p.poll_transmit(T0, &mut buf).unwrap();
    p.handle_datagram(T0 + Duration::from_millis(1), &buf[..n]);
    assert_eq!(p.poll_timeout(), Some(T0 + Duration::from_millis(10)));
}
