//! A stopped io_uring library server frees the receive buffer rings its
//! workers registered (TCP's and each UDP socket's): a process that starts
//! and stops servers does not grow by them each time. They are leaked only
//! when requests the kernel never gave back may still write into them.
//!
//! The rings are the only page-aligned allocations on this path (the
//! kernel maps them), so this test binary's allocator counts those that
//! are live. One test in the binary: nothing else allocates meanwhile.
#![cfg(target_os = "linux")]

mod serve_support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use ricochet::serve::{Endpoint, IoBackend, Server, ServerConfig};
use serve_support::{IO_TIMEOUT, STOP_TIMEOUT, connect, payload, round_trip};

/// The system allocator, counting live page-aligned allocations.
struct CountPageAligned;

/// Page-aligned allocations made and not yet freed.
static PAGE_ALIGNED_LIVE: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call is passed on to `System` unchanged; only a counter is added.
unsafe impl GlobalAlloc for CountPageAligned {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc`, passed on.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() && layout.align() >= 4096 {
            PAGE_ALIGNED_LIVE.fetch_add(1, Ordering::SeqCst);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if layout.align() >= 4096 {
            PAGE_ALIGNED_LIVE.fetch_sub(1, Ordering::SeqCst);
        }
        // SAFETY: the caller's contract for `dealloc`, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountPageAligned = CountPageAligned;

#[test]
fn stopped_io_uring_server_frees_the_buffer_rings_of_its_workers() {
    let before = PAGE_ALIGNED_LIVE.load(Ordering::SeqCst);
    let handle = Server::bind(ServerConfig {
        tcp: vec!["127.0.0.1:0".parse().unwrap()],
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        threads: 1,
        io: IoBackend::Uring,
        ..ServerConfig::default()
    })
    .expect("bind")
    .spawn()
    .expect("io_uring works on this kernel (Linux >= 6.0, no seccomp filter)");
    assert_eq!(handle.io(), IoBackend::Uring);
    let serving = PAGE_ALIGNED_LIVE.load(Ordering::SeqCst) - before;
    assert!(
        serving >= 2,
        "{serving} page-aligned rings while serving TCP and UDP"
    );
    let mut s = connect(handle.tcp_addr().unwrap());
    round_trip(&mut s, &payload(1, 1000));
    drop(s);
    let udp = handle
        .local_addrs()
        .iter()
        .find_map(|e| match e {
            Endpoint::Udp(a) => Some(*a),
            _ => None,
        })
        .expect("a UDP socket");
    let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    client.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    client.send_to(b"ping", udp).unwrap();
    let mut buf = [0u8; 64];
    let (n, _) = client.recv_from(&mut buf).expect("the echo");
    assert_eq!(&buf[..n], b"ping");
    handle.shutdown();
    handle.join_within(STOP_TIMEOUT).expect("join");
    assert_eq!(
        PAGE_ALIGNED_LIVE.load(Ordering::SeqCst),
        before,
        "page-aligned rings left after the server stopped"
    );
}
