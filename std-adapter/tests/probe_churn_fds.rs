//! A long connection churn leaks no file descriptor. Alone in its test
//! binary: it counts this process's descriptors, which other tests running
//! at the same time would change.

mod probe_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use probe_support::*;
use ricochet::probe::{self, Lifetime, Pattern, ProbeSpec, Stop, Target};

#[test]
fn churn_of_thousands_of_connections_keeps_descriptors_bounded_and_returns_them_all() {
    // The server runs in its own process: only the probe's descriptors count here.
    let (_server, tcp, _) = serve_child(&[]);
    let before = open_fds();
    let peak = Arc::new(AtomicUsize::new(before));
    let done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (peak, done) = (peak.clone(), done.clone());
        std::thread::spawn(move || {
            while !done.load(Ordering::Relaxed) {
                peak.fetch_max(open_fds(), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut spec = ProbeSpec::new(Target::Tcp(vec![tcp].into()));
    spec.pattern = Pattern::Crr;
    spec.connections = 4;
    spec.threads = Some(2);
    spec.stop = Stop::Count(500);
    let crr = probe::run(&spec).expect("crr run");
    spec.pattern = Pattern::PingPong;
    spec.lifetime = Some(Lifetime::Messages(3));
    spec.stop = Stop::Count(300);
    let lifetime = probe::run(&spec).expect("lifetime run");
    done.store(true, Ordering::Relaxed);
    sampler.join().expect("sampler");
    assert!(crr.ok, "{}", crr.table());
    assert!(lifetime.ok, "{}", lifetime.table());
    assert_eq!(crr.connections_opened, 2_000);
    assert_eq!(lifetime.connections_opened, 400);
    let after = open_fds();
    assert_eq!(
        after, before,
        "descriptors leaked: {before} before, {after} after"
    );
    // At most: the 4 sockets, and per thread an epoll, its registry clone
    // and the wake-up timer, plus a little slack for the sampler itself.
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        peak <= before + 4 + 3 * 2 + 4,
        "{peak} descriptors open at the peak, {before} before"
    );
}
