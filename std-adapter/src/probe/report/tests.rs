use super::*;

/// Every kind once, each a different power of two: a sum that drops,
/// subtracts or multiplies any one of them gives another number.
fn each_kind_distinct() -> ErrorCounts {
    ErrorCounts {
        mismatch: 1,
        unexpected_data: 2,
        early_close: 4,
        refused: 8,
        connect_timeout: 16,
        timeout: 32,
        no_fin: 64,
        io: 128,
        corrupt: 256,
        loss: 512,
        handshake: 1024,
    }
}

const ALL_KINDS: [ErrorKind; 11] = [
    ErrorKind::Mismatch,
    ErrorKind::UnexpectedData,
    ErrorKind::EarlyClose,
    ErrorKind::Refused,
    ErrorKind::ConnectTimeout,
    ErrorKind::Timeout,
    ErrorKind::NoFin,
    ErrorKind::Io,
    ErrorKind::Corrupt,
    ErrorKind::Loss,
    ErrorKind::Handshake,
];

#[test]
fn total_of_counts_of_every_kind_is_their_sum() {
    assert_eq!(each_kind_distinct().total(), 2047);
    assert_eq!(ErrorCounts::default().total(), 0);
}

#[test]
fn nonzero_of_some_kinds_names_only_those_in_a_fixed_order() {
    let e = ErrorCounts {
        refused: 3,
        handshake: 1,
        mismatch: 2,
        ..ErrorCounts::default()
    };
    assert_eq!(
        e.nonzero(),
        vec![("mismatch", 2), ("refused", 3), ("handshake", 1)]
    );
    assert!(ErrorCounts::default().nonzero().is_empty());
}

#[test]
fn counting_an_error_of_each_kind_raises_its_own_count_alone() {
    for kind in ALL_KINDS {
        let mut e = ErrorCounts::default();
        e.count(kind);
        e.count(kind);
        assert_eq!(e.total(), 2, "{kind:?}");
        let named = e.nonzero();
        assert_eq!(named.len(), 1, "{kind:?}: {named:?}");
        assert_eq!(named[0].1, 2, "{kind:?}");
        // The JSON kind (snake_case) and the name counted match.
        let json = serde_json::to_string(&kind).unwrap();
        assert_eq!(
            json.trim_matches('"').replace('_', " ").to_lowercase(),
            named[0].0.to_lowercase(),
            "{kind:?}"
        );
    }
}

#[test]
fn adding_counts_of_another_target_sums_each_kind() {
    let mut sum = each_kind_distinct();
    sum.add(&scaled(&each_kind_distinct(), 4096));
    assert_eq!(sum, scaled(&each_kind_distinct(), 4097));
}

/// `e` with every count multiplied by `k`.
fn scaled(e: &ErrorCounts, k: u64) -> ErrorCounts {
    ErrorCounts {
        mismatch: e.mismatch * k,
        unexpected_data: e.unexpected_data * k,
        early_close: e.early_close * k,
        refused: e.refused * k,
        connect_timeout: e.connect_timeout * k,
        timeout: e.timeout * k,
        no_fin: e.no_fin * k,
        io: e.io * k,
        corrupt: e.corrupt * k,
        loss: e.loss * k,
        handshake: e.handshake * k,
    }
}

#[test]
fn error_of_a_connection_or_of_all_sockets_says_which() {
    let mut e = ConnError {
        connection: Some(3),
        kind: ErrorKind::EarlyClose,
        offset: None,
        expected: None,
        actual: None,
        message: "closed early".to_owned(),
    };
    assert_eq!(e.to_string(), "connection 3: closed early");
    e.connection = None;
    assert_eq!(e.to_string(), "all sockets: closed early");
}

/// A report of a run that did nothing (its verdict fields set by each test).
pub(in super::super) fn empty_report() -> Report {
    use super::super::tally::{Tally, Window};
    use super::super::verdict::{RunFacts, build_report};
    use super::super::{ProbeSpec, Target};
    use ricochet_core::Instant;
    let spec = ProbeSpec::new(Target::Tcp(vec!["127.0.0.1:7".parse().unwrap()].into()));
    let t = Tally::new(Window {
        start: Instant::ZERO,
        end: None,
        paced: false,
    })
    .unwrap();
    let facts = RunFacts {
        threads: 1,
        started_at: String::new(),
        window_start: Instant::ZERO,
        finish_at: None,
        stopped_early: None,
        ended_at: Instant::from_millis(1),
    };
    // A template the tests fill in by hand: none of the warnings an empty
    // tally gets (nothing verified).
    let mut r = build_report(&spec, facts, t.clone(), &[t]);
    r.warnings.clear();
    r
}

#[test]
fn exit_status_of_a_passing_run_is_0_and_of_a_failing_one_1() {
    let mut r = empty_report();
    r.ok = true;
    assert_eq!(r.exit_code(), 0);
    // Not ok without an error (a stream not closed cleanly, say).
    r.ok = false;
    assert_eq!(r.exit_code(), 1);
    r.errors.timeout = 1;
    assert_eq!(r.exit_code(), 1);
}

#[test]
fn exit_status_of_an_interrupt_is_130_unless_something_failed_first() {
    let mut r = empty_report();
    r.ok = false;
    r.stopped_early = Some(StopReason::Interrupted);
    assert_eq!(r.exit_code(), 130);
    r.errors.early_close = 1;
    assert_eq!(
        r.exit_code(),
        1,
        "a failure before the interrupt fails the run"
    );
    r.errors = ErrorCounts::default();
    r.stopped_early = Some(StopReason::LossBudget);
    assert_eq!(
        r.exit_code(),
        1,
        "a spent loss budget is a failure, not an interrupt"
    );
}
