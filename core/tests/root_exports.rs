//! The crate root names every type of the API contract
//! (core/doc/API-CONTRACT.md), so adapters need no module paths.

use ricochet_core::{
    AbortCounts, AbortReason, CloseCounts, CloseReason, CommitError, ConfigError, DatagramCounters,
    DatagramOutcome, DatagramPolicy, DatagramProbe, DatagramProbeConfig, DatagramProbeStats,
    DropCounts, DropReason, Duration, Event, Failure, Instant, Mode, Next, Pattern, PolicyConfig,
    ProbeConfig, ProbeError, ProbeStats, Pump, RateLimit, ReadOutcome, Received, Session,
    SessionConfig, SessionStats, SizeRange, SourceStats, State, StreamCounters, StreamProbe,
    Teardown, Transport, Verdict, WriteOutcome,
};

#[test]
fn every_contract_type_is_named_at_the_crate_root() {
    let names = [
        core::any::type_name::<AbortCounts>(),
        core::any::type_name::<AbortReason>(),
        core::any::type_name::<CloseCounts>(),
        core::any::type_name::<CloseReason>(),
        core::any::type_name::<CommitError>(),
        core::any::type_name::<ConfigError>(),
        core::any::type_name::<DatagramCounters>(),
        core::any::type_name::<DatagramOutcome>(),
        core::any::type_name::<DatagramPolicy<4>>(),
        core::any::type_name::<DatagramProbe>(),
        core::any::type_name::<DatagramProbeConfig>(),
        core::any::type_name::<DatagramProbeStats>(),
        core::any::type_name::<DropCounts>(),
        core::any::type_name::<DropReason>(),
        core::any::type_name::<Duration>(),
        core::any::type_name::<Event>(),
        core::any::type_name::<Failure>(),
        core::any::type_name::<Instant>(),
        core::any::type_name::<Mode>(),
        core::any::type_name::<Next>(),
        core::any::type_name::<Pattern>(),
        core::any::type_name::<PolicyConfig>(),
        core::any::type_name::<ProbeConfig>(),
        core::any::type_name::<ProbeError>(),
        core::any::type_name::<ProbeStats>(),
        core::any::type_name::<Pump<[u8; 4]>>(),
        core::any::type_name::<RateLimit>(),
        core::any::type_name::<ReadOutcome>(),
        core::any::type_name::<Received>(),
        core::any::type_name::<Session<[u8; 4]>>(),
        core::any::type_name::<SessionConfig>(),
        core::any::type_name::<SessionStats>(),
        core::any::type_name::<SizeRange>(),
        core::any::type_name::<SourceStats>(),
        core::any::type_name::<State>(),
        core::any::type_name::<StreamCounters>(),
        core::any::type_name::<StreamProbe>(),
        core::any::type_name::<Teardown>(),
        core::any::type_name::<&dyn Transport>(),
        core::any::type_name::<Verdict>(),
        core::any::type_name::<WriteOutcome>(),
    ];
    assert!(
        names.iter().all(|n| n.contains("ricochet_core")),
        "{names:?}"
    );
}
