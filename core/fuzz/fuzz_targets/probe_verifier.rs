//! The probe's verifiers fed arbitrary "echoes": no panic, and nothing is
//! ever accepted that differs from what was sent.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use ricochet_core::probe::{
    DatagramOutcome, DatagramProbe, DatagramProbeConfig, Pattern, ProbeConfig, SizeRange, StreamProbe,
};
use ricochet_core::{Duration, Instant, Mode};

#[derive(Arbitrary, Debug)]
struct Input {
    mode: u8,
    seed: u64,
    min: u16,
    max: u16,
    /// (keep the true bytes?, replacement bytes) per received chunk.
    chunks: Vec<(bool, Vec<u8>)>,
    datagrams: Vec<Vec<u8>>,
}

fuzz_target!(|input: Input| {
    let mode = match input.mode % 3 {
        0 => Mode::Raw,
        1 => Mode::Lines,
        _ => Mode::Frames,
    };
    let floor = if mode == Mode::Frames { 2 } else { 1 };
    let (a, b) = (usize::from(input.min).max(floor), usize::from(input.max).max(floor));
    let config = ProbeConfig {
        mode,
        pattern: Pattern::Stream { window: 1 << 16 },
        seed: input.seed,
        size: SizeRange::range(a.min(b), a.max(b)),
        count: Some(8),
        response_timeout: Some(Duration::from_secs(1)),
        interval: None,
    };
    let t = Instant::from_micros(1);
    let mut p = StreamProbe::<8>::new(config, t).expect("valid config");
    let mut sent = vec![0u8; 1 << 20];
    let n = p.fill_transmit(t, &mut sent);
    p.commit_sent(t, n).expect("commit within offer");
    sent.truncate(n);
    let mut verified = 0usize;
    for (keep, fake) in input.chunks {
        let data: Vec<u8> = if keep {
            sent[verified.min(n)..(verified + fake.len()).min(n)].to_vec()
        } else {
            fake
        };
        let mut at = 0;
        while at < data.len() {
            match p.handle_received(t, &data[at..]) {
                Ok(r) => {
                    assert!(r.consumed > 0);
                    assert_eq!(&data[at..at + r.consumed], &sent[verified..verified + r.consumed], "accepted wrong bytes");
                    verified += r.consumed;
                    at += r.consumed;
                }
                Err(_) => return,
            }
        }
    }

    let dconfig = DatagramProbeConfig {
        seed: input.seed,
        size: SizeRange::range(12, 300),
        count: Some(4),
        window: 4,
        loss_timeout: Duration::from_secs(1),
        interval: None,
    };
    let mut d = DatagramProbe::<4>::new(dconfig, t).expect("valid config");
    let mut real = Vec::new();
    let mut buf = [0u8; 300];
    while let Some(len) = d.poll_transmit(t, &mut buf) {
        real.push(buf[..len].to_vec());
    }
    for dg in input.datagrams {
        if let DatagramOutcome::Verified { .. } = d.handle_datagram(t, &dg) {
            assert!(real.contains(&dg), "verified a datagram that was never sent");
        }
    }
});
