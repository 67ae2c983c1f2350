//! Hot-path micro-benchmarks of the core: a session echoing 64 KiB per mode,
//! the probe generating and verifying 64 KiB, and the datagram policy.
//!
//! `cargo bench -p ricochet-core` (criterion; results in target/criterion).

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use ricochet_core::datagram::{DatagramPolicy, PolicyConfig};
use ricochet_core::probe::{Pattern, ProbeConfig, SizeRange, StreamProbe};
use ricochet_core::{Duration, Instant, Mode, Session, SessionConfig};

const TOTAL: usize = 64 * 1024;

/// Input shaped for `mode`: 64-byte units (lines end in `\n`, frames carry a header).
fn input(mode: Mode) -> Vec<u8> {
    let mut v = Vec::with_capacity(TOTAL);
    while v.len() < TOTAL {
        match mode {
            Mode::Raw => v.extend((0..64u8).map(|i| i.wrapping_mul(37))),
            Mode::Lines => {
                v.extend((0..63u8).map(|i| b'a' + i % 26));
                v.push(b'\n');
            }
            Mode::Frames => {
                v.extend_from_slice(&62u16.to_be_bytes());
                v.extend((0..62u8).map(|i| i.wrapping_mul(11)));
            }
        }
    }
    v
}

fn session_echo(c: &mut Criterion) {
    let mut group = c.benchmark_group("session_echo_64KiB_in_1500B_reads");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    for mode in [Mode::Raw, Mode::Lines, Mode::Frames] {
        let data = input(mode);
        group.bench_function(mode.as_str(), |b| {
            let now = Instant::ZERO;
            let mut s = Session::new(
                [0u8; 4096],
                SessionConfig {
                    mode,
                    ..SessionConfig::default()
                },
                now,
            );
            b.iter(|| {
                let mut fed = 0;
                let mut echoed = 0;
                while echoed < data.len() {
                    let buf = s.receive_buffer();
                    let n = buf.len().min(1500).min(data.len() - fed);
                    buf[..n].copy_from_slice(&data[fed..fed + n]);
                    s.commit_received(now, n).unwrap();
                    fed += n;
                    let out = black_box(s.transmit_buffer()).len();
                    s.commit_sent(now, out).unwrap();
                    echoed += out;
                }
            });
        });
    }
    group.finish();
}

fn probe_verify(c: &mut Criterion) {
    let mut group = c.benchmark_group("probe_generate_and_verify_64KiB");
    group.throughput(Throughput::Bytes(TOTAL as u64));
    for mode in [Mode::Raw, Mode::Lines, Mode::Frames] {
        group.bench_function(mode.as_str(), |b| {
            let config = ProbeConfig {
                mode,
                pattern: Pattern::Stream { window: TOTAL },
                size: SizeRange::fixed(1024),
                count: None,
                response_timeout: None,
                ..ProbeConfig::default()
            };
            let mut p = StreamProbe::<128>::new(config, Instant::ZERO).unwrap();
            let mut buf = vec![0u8; TOTAL];
            b.iter(|| {
                let n = p.fill_transmit(Instant::ZERO, &mut buf);
                p.commit_sent(Instant::ZERO, n).unwrap();
                let mut at = 0;
                while at < n {
                    at += p
                        .handle_received(Instant::ZERO, &buf[at..n])
                        .unwrap()
                        .consumed;
                }
            });
        });
    }
    group.finish();
}

fn datagram_policy(c: &mut Criterion) {
    let mut group = c.benchmark_group("datagram_policy");
    group.throughput(Throughput::Elements(1));
    let mut policy = DatagramPolicy::<1024>::new(PolicyConfig::default());
    let mut t = 0u64;
    let mut i = 0u32;
    group.bench_function("decide_1000_sources", |b| {
        b.iter(|| {
            t += 10;
            i = (i + 1) % 1000;
            let src = SocketAddr::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i)), 40_000);
            black_box(policy.decide(Instant::ZERO + Duration::from_micros(t), src, 512))
        });
    });
    group.finish();
}

criterion_group!(benches, session_echo, probe_verify, datagram_policy);
criterion_main!(benches);
