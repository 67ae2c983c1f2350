//! Properties of [`DatagramPolicy`] over arbitrary event sequences.
//!
//! Each case builds a random [`PolicyConfig`], a start time anywhere in the
//! `u64` range, and up to 300 datagrams (time step, source address, port,
//! length), then checks every verdict and the counters against the contract.
//! The number of cases is `PROPTEST_CASES` (proptest's own default, 256, when
//! unset).

mod support;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use ricochet_core::datagram::{
    DatagramPolicy, DropReason, PolicyConfig, REFLECTOR_PORTS, RateLimit, SourceStats, Verdict,
    is_reflector_port,
};
use ricochet_core::{DatagramCounters, Duration, Instant};

#[derive(Clone, Copy, Debug)]
enum Step {
    Forward(u64),
    Back(u64),
}

#[derive(Clone, Copy, Debug)]
struct Datagram {
    step: Step,
    ip: IpAddr,
    port: u16,
    len: usize,
}

/// A small pool (so buckets drain and refill), including an IPv4-mapped
/// IPv6 twin of a pool address, plus fully random addresses (so the table
/// fills and evicts).
fn any_ip() -> impl Strategy<Value = IpAddr> {
    let pool = [
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1)),
        IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2)),
        IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped()),
    ];
    prop_oneof![
        8 => proptest::sample::select(pool.to_vec()),
        1 => any::<u32>().prop_map(|b| IpAddr::V4(Ipv4Addr::from_bits(b))),
        1 => any::<u128>().prop_map(|b| IpAddr::V6(Ipv6Addr::from_bits(b))),
    ]
}

fn any_port() -> impl Strategy<Value = u16> {
    prop_oneof![
        1 => proptest::sample::select(REFLECTOR_PORTS.to_vec()),
        3 => 40000u16..40008,
        1 => any::<u16>(),
    ]
}

fn any_step() -> impl Strategy<Value = Step> {
    prop_oneof![
        6 => (0u64..2_000).prop_map(Step::Forward),
        3 => (0u64..3_000_000).prop_map(Step::Forward),
        1 => (0u64..2_000_000).prop_map(Step::Back),
        1 => any::<u64>().prop_map(Step::Forward),
    ]
}

/// Lengths clustered around the limit, plus anything.
fn any_len(max: usize) -> impl Strategy<Value = usize> {
    prop_oneof![
        3 => 0..=max,
        1 => Just(max),
        1 => Just(max.saturating_add(1)),
        1 => any::<usize>(),
    ]
}

fn any_config() -> impl Strategy<Value = PolicyConfig> {
    let rate = (
        prop_oneof![Just(0u32), 1u32..50, 1u32..100_000, Just(u32::MAX)],
        prop_oneof![Just(0u32), 1u32..10, Just(u32::MAX)],
    )
        .prop_map(|(per_second, burst)| RateLimit { per_second, burst });
    (
        prop_oneof![Just(0usize), 0usize..3000, Just(1472)],
        proptest::option::weighted(0.9, rate),
        proptest::bool::weighted(0.8),
    )
        .prop_map(|(max_datagram, rate, loop_guard)| PolicyConfig {
            max_datagram,
            rate,
            loop_guard,
            // The sources here include loopback addresses: hold them to the bound too.
            rate_exempt_loopback: false,
        })
}

fn any_start() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        0u64..1_000_000,
        any::<u64>(),
        (u64::MAX - 10_000_000)..=u64::MAX,
    ]
}

fn any_case() -> impl Strategy<Value = (PolicyConfig, u64, Vec<Datagram>)> {
    any_config().prop_flat_map(|config| {
        let datagram = (
            any_step(),
            any_ip(),
            any_port(),
            any_len(config.max_datagram),
        )
            .prop_map(|(step, ip, port, len)| Datagram {
                step,
                ip,
                port,
                len,
            });
        (
            Just(config),
            any_start(),
            proptest::collection::vec(datagram, 1..300),
        )
    })
}

/// One echo of a source, for the token bucket bound.
struct Echo {
    /// The `now` passed with it.
    now: u64,
    /// The source's clock: the latest `now` it reached the rate check with
    /// (a bucket never refills for time that went backwards).
    clock: u64,
    /// The latest `now` of any decision so far.
    latest: u64,
    /// `stats().evictions` before and after the decision.
    evictions_before: u64,
    evictions_after: u64,
}

/// The model's expectation of each counter.
#[derive(Default)]
struct Expected {
    echoed: u64,
    echoed_bytes: u64,
    oversize: u64,
    loop_guard: u64,
    rate_limited: u64,
}

/// Runs `datagrams` through a `DatagramPolicy<SOURCES>` and checks every
/// property; returns the final counters.
fn run<const SOURCES: usize>(
    config: PolicyConfig,
    start: u64,
    datagrams: &[Datagram],
) -> Result<SourceStats, TestCaseError> {
    let mut policy = DatagramPolicy::<SOURCES>::new(config);
    let mut now = Instant::from_micros(start);
    // What the model expects, and what counting the verdicts gives (as an
    // adapter counts them in the core's counters).
    let mut expected = Expected::default();
    let mut counted = DatagramCounters::default();
    let mut clock: HashMap<IpAddr, u64> = HashMap::new();
    let mut echoes: HashMap<IpAddr, Vec<Echo>> = HashMap::new();
    let mut latest = start;

    for (n, d) in datagrams.iter().enumerate() {
        now = match d.step {
            Step::Forward(us) => now + Duration::from_micros(us),
            Step::Back(us) => Instant::from_micros(now.as_micros().saturating_sub(us)),
        };
        latest = latest.max(now.as_micros());
        let evictions_before = policy.source_stats().evictions;
        let verdict = policy.decide(now, SocketAddr::new(d.ip, d.port), d.len);
        match verdict {
            Verdict::Echo => counted.echoed(d.len),
            Verdict::Drop(reason) => counted.dropped(reason),
        }
        let stats = policy.source_stats();

        // The ports the contract names are guarded whatever the list says.
        if config.loop_guard && [0, 7, 11, 13, 17, 19, 37].contains(&d.port) {
            prop_assert!(!verdict.is_echo());
        }
        // Exactly the check order of the contract.
        if config.loop_guard && is_reflector_port(d.port) {
            prop_assert_eq!(
                verdict,
                Verdict::Drop(DropReason::LoopGuard { port: d.port })
            );
            expected.loop_guard += 1;
        } else if d.len > config.max_datagram {
            let reason = DropReason::Oversize {
                len: d.len,
                limit: config.max_datagram,
            };
            prop_assert_eq!(verdict, Verdict::Drop(reason));
            expected.oversize += 1;
        } else if let Some(rate) = config.rate {
            let source = d.ip.to_canonical();
            let source_clock = clock.entry(source).or_insert(0);
            *source_clock = (*source_clock).max(now.as_micros());
            match verdict {
                Verdict::Echo => {
                    prop_assert!(rate.burst > 0 && SOURCES > 0, "echo from an empty bucket");
                    expected.echoed += 1;
                    expected.echoed_bytes += d.len as u64;
                    echoes.entry(source).or_default().push(Echo {
                        now: now.as_micros(),
                        clock: *source_clock,
                        latest,
                        evictions_before,
                        evictions_after: stats.evictions,
                    });
                }
                Verdict::Drop(DropReason::RateLimited) => expected.rate_limited += 1,
                other => prop_assert!(false, "unexpected verdict {:?}", other),
            }
        } else {
            prop_assert_eq!(verdict, Verdict::Echo);
            expected.echoed += 1;
            expected.echoed_bytes += d.len as u64;
        }

        // The counters account for every decision, and nothing else.
        prop_assert_eq!(counted.echoed, expected.echoed);
        prop_assert_eq!(counted.echoed_bytes, expected.echoed_bytes);
        prop_assert_eq!(counted.dropped.oversize, expected.oversize);
        prop_assert_eq!(counted.dropped.loop_guard, expected.loop_guard);
        prop_assert_eq!(counted.dropped.rate_limited, expected.rate_limited);
        prop_assert_eq!(counted.received, n as u64 + 1);
        prop_assert_eq!(counted.echoed + counted.dropped.total(), counted.received);
        prop_assert!(stats.tracked_sources <= SOURCES);
        prop_assert!(stats.tracked_sources <= clock.len());
        if config.rate.is_none() {
            prop_assert_eq!(stats.tracked_sources, 0);
        }
    }

    // Sources that never outnumber the table are never evicted.
    let stats = policy.source_stats();
    if clock.len() <= SOURCES {
        prop_assert_eq!(stats.evictions, 0);
    }

    // The token bucket bound, for a source's echoes i..=j.
    //
    // Without evictions its bucket lived the whole run: at most
    // `burst + per_second * (clock_j - clock_i)` echoes, exactly.
    //
    // Evictions can loosen that: an evicted source returns with a fresh,
    // full bucket and a clock restarted at that `now` (which may be earlier,
    // if time went backwards). Each of the `1 + evictions in between` lives
    // of the bucket within the window gives at most `burst` plus what it
    // earns between the earliest `now` of the window and the latest `now`
    // seen by then.
    if let Some(rate) = config.rate {
        let earned = |micros: u64| u128::from(rate.per_second) * u128::from(micros) / 1_000_000;
        let burst = u128::from(rate.burst);
        for list in echoes.values() {
            for (i, first) in list.iter().enumerate() {
                let mut earliest = first.now;
                for (j, last) in list.iter().enumerate().skip(i) {
                    let count = (j - i + 1) as u128;
                    if stats.evictions == 0 {
                        let window = last.clock - first.clock;
                        let bound = burst + earned(window);
                        prop_assert!(
                            count <= bound,
                            "{} echoes in {} µs > {} (rate {:?})",
                            count,
                            window,
                            bound,
                            rate
                        );
                    }
                    earliest = earliest.min(last.now);
                    let window = last.latest - earliest;
                    let lives =
                        1 + u128::from(last.evictions_before.saturating_sub(first.evictions_after));
                    let bound = lives * (burst + earned(window));
                    prop_assert!(
                        count <= bound,
                        "{} echoes in {} µs > {} (rate {:?}, {} bucket lives)",
                        count,
                        window,
                        bound,
                        rate,
                        lives
                    );
                }
            }
        }
    }
    Ok(stats)
}

proptest! {
    #![proptest_config(support::proptest_config())]

    /// Any event sequence: never panics, verdicts follow the check order
    /// (loop-guarded ports and oversize datagrams are never echoed), the
    /// counters sum to the decisions, the table stays within SOURCES, and
    /// no source beats its token bucket except through evictions.
    #[test]
    fn any_datagram_sequence_keeps_the_policy_contract((config, start, datagrams) in any_case()) {
        run::<1>(config, start, &datagrams)?;
        run::<4>(config, start, &datagrams)?;
        let roomy = run::<64>(config, start, &datagrams)?;
        run::<0>(config, start, &datagrams)?;
        prop_assert!(roomy.tracked_sources <= 64);
    }

    /// With every source fitting in the table, the bound is exact: over any
    /// window `w`, at most `burst + per_second * w` echoes per address.
    #[test]
    fn tracked_source_never_beats_its_token_bucket(
        per_second in prop_oneof![Just(0u32), 1u32..20, 1u32..5_000],
        burst in 0u32..8,
        start in any_start(),
        datagrams in proptest::collection::vec(
            (any_step(), 0usize..6, any::<u16>()).prop_map(|(step, i, port)| Datagram {
                step,
                ip: IpAddr::V4(Ipv4Addr::new(198, 51, 100, i as u8)),
                port: 40000 + port % 1000,
                len: 64,
            }),
            1..400,
        ),
    ) {
        let config = PolicyConfig {
            max_datagram: 1472,
            rate: Some(RateLimit { per_second, burst }),
            loop_guard: true,
            rate_exempt_loopback: false,
        };
        let stats = run::<8>(config, start, &datagrams)?;
        prop_assert_eq!(stats.evictions, 0);
    }
}

#[test]
fn property_tests_run_at_least_256_cases_whatever_proptest_cases_says() {
    let few = ProptestConfig::with_cases(10);
    assert_eq!(support::at_least_256_cases(few).cases, 256);
    let many = ProptestConfig::with_cases(5000);
    assert_eq!(support::at_least_256_cases(many).cases, 5000);
    assert!(support::proptest_config().cases >= 256);
}
