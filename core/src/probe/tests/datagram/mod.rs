//! The datagram probe: the ring, loss, reordering, duplicates, pacing; in
//! modules [`echoes`], [`ring`], [`pacing`].

use super::*;

mod echoes;
mod pacing;
mod ring;

fn dgram(window: usize) -> DatagramProbe<8> {
    let config = DatagramProbeConfig {
        seed: 5,
        size: SizeRange::range(12, 200),
        count: Some(20),
        window,
        loss_timeout: Duration::from_millis(100),
        interval: None,
    };
    DatagramProbe::new(config, T0).unwrap()
}
