//! Fairness and timers: the run queue, budgets, deadlines, stale timer
//! entries, slot reuse and prefetching.

use super::*;

#[test]
fn yielding_connection_is_driven_once_per_turn_after_the_others() {
    let mut w = Worker::new(8);
    let now = at(1);
    let busy = w.open(now, 1000, None);
    let quiet = w.open(now, 0, None);
    // Two drives in one turn that both yield queue it once.
    w.drive(busy, now);
    w.drive(busy, now);
    w.drive(quiet, now);
    assert!(w.conns.has_queued());
    w.driven.clear();
    w.serve_run_queue(now);
    assert_eq!(w.driven, vec![busy], "queued once, driven once this turn");
    w.serve_run_queue(now);
    assert_eq!(w.times_driven(busy), 2, "yielded again: next turn, once");
    assert_eq!(w.times_driven(quiet), 0);
}

#[test]
fn queued_key_of_a_released_connection_skips_the_next_in_its_slot() {
    let mut w = Worker::new(8);
    let now = at(1);
    let old = w.open(now, 1, None);
    w.drive(old, now);
    assert!(w.conns.has_queued());
    w.conns.release(old, drop);
    let new = w.open(now, 0, None);
    assert_eq!(new, old, "the slab reuses the slot");
    w.driven.clear();
    w.serve_run_queue(now);
    assert!(w.driven.is_empty(), "the new connection was never queued");
    assert!(!w.conns.has_queued());
}

#[test]
fn tagged_connection_is_found_only_while_it_is_the_one_in_its_slot() {
    let mut w = Worker::new(8);
    let old = w.open(at(0), 0, None);
    let (_, generation) = w.conns.get_tagged(old).expect("open");
    assert!(w.conns.get_current(old, generation).is_some());
    w.conns.release(old, drop);
    let new = w.open(at(0), 0, None);
    assert_eq!(new, old, "the slab reuses the slot");
    assert!(w.conns.get_current(new, generation).is_none());
    let (_, current) = w.conns.get_tagged(new).expect("open");
    assert!(w.conns.get_current(new, current).is_some());
}

#[test]
fn only_the_earliest_deadline_fires_and_superseded_entries_are_skipped() {
    let mut w = Worker::new(8);
    let key = w.open(at(0), 0, Some(at(20)));
    w.conns.schedule(key);
    w.conns.get_mut(key).unwrap().deadline = Some(at(10));
    w.conns.schedule(key);
    assert_eq!(w.conns.next_deadline(), Some(at(10)));
    // Fired at 10, the connection's next deadline is 30; its entry at 20 is stale.
    w.conns.get_mut(key).unwrap().after = Some(at(30));
    w.fire_timers(at(9));
    assert_eq!(w.times_driven(key), 0, "nothing due yet");
    w.fire_timers(at(10));
    assert_eq!(w.times_driven(key), 1);
    w.conns.get_mut(key).unwrap().after = None;
    w.fire_timers(at(20));
    assert_eq!(w.times_driven(key), 1, "the entry at 20 was superseded");
    w.fire_timers(at(30));
    assert_eq!(w.times_driven(key), 2);
}

#[test]
fn wait_ends_at_the_earliest_timer_grace_end_or_backend_deadline() {
    let mut w = Worker::new(8);
    let ms = std::time::Duration::from_millis;
    assert_eq!(w.conns.wait_limit([], at(0)), None, "nothing to wait for");
    let key = w.open(at(0), 0, Some(at(50)));
    w.conns.schedule(key);
    assert_eq!(w.conns.wait_limit([], at(10)), Some(ms(40)));
    assert_eq!(w.conns.wait_limit([at(30)], at(10)), Some(ms(20)));
    assert_eq!(w.conns.wait_limit([at(5)], at(10)), Some(ms(0)), "overdue");
    w.conns.shared.advance(Phase::Draining);
    assert!(w.follow_phase(at(10)));
    let grace_end = at(10) + Duration::from(GRACE);
    assert_eq!(w.conns.next_deadline(), Some(at(50)));
    w.conns.release(key, drop);
    w.fire_timers(at(50));
    assert_eq!(w.conns.next_deadline(), Some(grace_end));
    assert_eq!(
        w.conns.wait_limit([], at(10)),
        Some(std::time::Duration::from(
            grace_end.saturating_since(at(10))
        ))
    );
}

#[test]
fn timer_of_a_released_connection_does_not_fire() {
    let mut w = Worker::new(8);
    let key = w.open(at(0), 0, Some(at(10)));
    w.conns.schedule(key);
    w.conns.release(key, drop);
    w.fire_timers(at(10));
    assert!(w.driven.is_empty());
    assert_eq!(w.conns.next_deadline(), None, "its entry was popped");
}

#[test]
fn stale_timers_are_compacted_once_they_outnumber_the_connections() {
    let mut w = Worker::new(8);
    let key = w.open(at(0), 0, None);
    for i in 0..1100 {
        w.conns.get_mut(key).unwrap().deadline = Some(at(1_000_000 - i));
        w.conns.schedule(key);
    }
    assert_eq!(w.conns.timers.len(), 1100);
    w.fire_timers(at(1));
    assert_eq!(w.conns.timers.len(), 1, "only the live entry is left");
    assert_eq!(w.conns.next_deadline(), Some(at(1_000_000 - 1099)));
}

#[test]
fn timers_fired_per_turn_are_bounded() {
    let mut w = Worker::new(TIMER_BUDGET + 10);
    for _ in 0..TIMER_BUDGET + 10 {
        let key = w.open(at(0), 0, Some(at(5)));
        w.conns.schedule(key);
    }
    w.fire_timers(at(5));
    assert_eq!(w.driven.len(), TIMER_BUDGET);
    w.fire_timers(at(5));
    assert_eq!(w.driven.len(), TIMER_BUDGET + 10, "the rest fire next turn");
}

#[test]
fn prefetch_of_keys_that_are_not_connections_does_nothing() {
    let mut w = Worker::new(8);
    let live = w.open(at(0), 0, None);
    let gone = w.open(at(0), 0, None);
    w.conns.release(gone, drop);
    for key in [live, gone, usize::MAX, 1 << 62, 7] {
        w.conns.prefetch(key);
    }
    assert!(w.conns.get(live).is_some());
    assert!(w.conns.get(gone).is_none());
    assert_eq!(w.conns.len(), 1);
    // Below the threshold, the workers do not prefetch at all.
    assert!(!w.conns.worth_prefetching());
}

#[test]
fn prefetching_pays_from_256_connections_where_the_target_has_a_hint() {
    let mut w = Worker::new(300);
    for _ in 0..255 {
        w.open(at(0), 0, None);
    }
    assert!(!w.conns.worth_prefetching());
    w.open(at(0), 0, None);
    assert_eq!(w.conns.worth_prefetching(), crate::serve::prefetch::ENABLED);
}

#[test]
fn connection_with_more_input_than_the_budget_reads_64_kib_then_yields() {
    let mut w = Worker::new(8);
    let key = w.open(at(0), 0, None);
    let peer = &mut w.conns.get_mut(key).unwrap().peer;
    peer.input = 3 * BUDGET;
    peer.takes_echo = true;
    w.drive(key, at(0));
    assert_eq!(BUDGET, 64 * 1024);
    assert_eq!(w.counters.tcp.bytes_in, 64 * 1024);
    assert!(w.conns.has_queued(), "yielded with input left");
}

#[test]
fn every_connection_queued_at_the_start_of_a_turn_is_driven_in_it() {
    let mut w = Worker::new(8);
    let now = at(1);
    let keys = [
        w.open(now, 1, None),
        w.open(now, 1, None),
        w.open(now, 1, None),
    ];
    for key in keys {
        w.drive(key, now);
    }
    w.driven.clear();
    w.serve_run_queue(now);
    assert_eq!(w.driven, keys, "in the order they yielded");
    assert!(!w.conns.has_queued());
}

#[test]
fn next_insert_takes_the_vacant_key_also_in_a_reused_slot() {
    let mut w = Worker::new(8);
    for _ in 0..3 {
        let vacant = w.conns.vacant_key();
        assert_eq!(w.open(at(0), 0, None), vacant);
    }
    assert_eq!(w.conns.len(), 3);
    w.conns.release(1, drop);
    assert_eq!(w.conns.len(), 2);
    assert_eq!(w.conns.vacant_key(), 1);
    assert_eq!(w.open(at(0), 0, None), 1);
    assert_eq!(w.conns.vacant_key(), 3);
}

#[test]
fn connection_rescheduled_for_the_same_deadline_adds_no_timer_entry() {
    let mut w = Worker::new(8);
    let key = w.open(at(0), 0, Some(at(10)));
    for _ in 0..3 {
        w.conns.schedule(key);
    }
    assert_eq!(w.conns.timers.len(), 1);
    w.conns.get_mut(key).unwrap().deadline = Some(at(11));
    w.conns.schedule(key);
    assert_eq!(
        w.conns.timers.len(),
        1,
        "a later deadline waits for the earlier"
    );
}

#[test]
fn stale_timers_up_to_twice_the_connections_plus_1024_are_left_alone() {
    let mut w = Worker::new(8);
    let key = w.open(at(0), 0, None);
    let limit = 2 + 1024;
    for i in 0..limit {
        w.conns.get_mut(key).unwrap().deadline = Some(at(1_000_000 - i as u64));
        w.conns.schedule(key);
    }
    w.fire_timers(at(1));
    assert_eq!(w.conns.timers.len(), limit, "at the bound: not compacted");
    w.conns.get_mut(key).unwrap().deadline = Some(at(1));
    w.conns.schedule(key);
    w.conns.get_mut(key).unwrap().after = Some(at(2));
    w.fire_timers(at(1));
    assert_eq!(w.times_driven(key), 1);
    // Fired (its entry popped) and rescheduled: one over the bound.
    assert_eq!(w.conns.timers.len(), 1, "over it: compacted");
}
