//! A hosted epoll loop (beside io_uring, the TLS listeners' loop; see
//! `host.rs`): served through the ring's poll on its descriptor, and a
//! failure of that loop ends it alone.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use super::live::{connect, read_now, step_until, turn, with_worker, with_worker_tuned};
use super::*;
use crate::serve::error::Endpoint;
use crate::serve::worker::prepare_loops;
use crate::serve::{StdListener, WorkerSockets};

/// Hosts on `w` a guest with one plain TCP listener on 127.0.0.1:0 (the
/// loop does not care that it is not TLS); returns its address.
fn host_guest(w: &mut Worker<'_>) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind");
    l.set_nonblocking(true).expect("non-blocking");
    let addr = l.local_addr().expect("addr");
    let sockets = WorkerSockets {
        index: 0,
        listeners: vec![(Endpoint::Tcp(addr), StdListener::Tcp(l))],
        udp: Vec::new(),
    };
    let (setups, _wakers) = prepare_loops(vec![sockets]).expect("guest");
    let setup = setups.into_iter().next().expect("one");
    w.guest = Some(Guest::start(setup, Arc::clone(&w.shared)));
    w.arm_guest();
    addr
}

/// A turn as `Worker::run` takes it: the worker's own, then its guest's.
fn host_turn(w: &mut Worker<'_>) {
    turn(w);
    w.turn_guest();
}

/// Writes `data` on `client` and turns `w` until it came back.
fn echo(w: &mut Worker<'_>, client: &mut TcpStream, data: &[u8]) {
    client.write_all(data).expect("write");
    let mut back = Vec::new();
    step_until(
        w,
        "the echo",
        |_| {
            read_now(client, &mut back);
            back.len() >= data.len()
        },
        host_turn,
    );
    assert_eq!(back, data);
}

/// A client of the guest's listener, non-blocking.
fn guest_client(addr: SocketAddr) -> TcpStream {
    let c = TcpStream::connect(addr).expect("connect");
    c.set_nonblocking(true).expect("non-blocking");
    c
}

/// Turns `w` until `client` sees its connection end (an end of stream or
/// an error such as a reset).
fn until_ended(w: &mut Worker<'_>, client: &mut TcpStream) {
    let mut ended = false;
    step_until(
        w,
        "the hosted client sees its connection end",
        |_| {
            let mut buf = [0u8; 16];
            ended |= match client.read(&mut buf) {
                Ok(0) => true,
                Ok(_) => false,
                Err(e) => e.kind() != ErrorKind::WouldBlock,
            };
            ended
        },
        host_turn,
    );
}

/// The guest's connections are accepted and echoed through the host's
/// ring (its poll on the guest's epoll descriptor), beside the host's own.
#[test]
fn hosted_loop_echoes_its_connections_beside_the_hosts_own() {
    with_worker(false, |w| {
        let addr = host_guest(w);
        let (_, mut own) = connect(w);
        let mut hosted = guest_client(addr);
        echo(w, &mut hosted, b"hosted");
        echo(w, &mut own, b"own");
        echo(w, &mut hosted, b"hosted again");
        assert!(w.guest.is_some());
    });
}

/// When the hosted loop's `epoll_wait` fails (here: its descriptor no
/// longer an epoll one), the guest ends alone: its connection is reset,
/// the worker stops watching it and goes on echoing its own connections.
#[test]
fn hosted_loop_that_fails_ends_alone_and_the_worker_serves_on() {
    with_worker(false, |w| {
        let addr = host_guest(w);
        let (_, mut own) = connect(w);
        let mut hosted = guest_client(addr);
        echo(w, &mut hosted, b"hosted");
        // The descriptor number now names a pipe: the next epoll_wait fails
        // (EINVAL); the ring's poll still watches the epoll file itself.
        let (pipe, _other) = std::io::pipe().expect("pipe");
        let epoll = w.guest.as_ref().expect("hosted").fd();
        // SAFETY: both descriptors are open; `epoll` keeps its number, now
        // for a copy of the pipe, which the guest's Poll closes when dropped.
        #[allow(unsafe_code)]
        let replaced = unsafe { libc::dup2(pipe.as_raw_fd(), epoll) };
        assert_eq!(replaced, epoll);
        hosted.write_all(b"x").expect("write");
        step_until(w, "the guest's end", |w| w.guest.is_none(), host_turn);
        step_until(
            w,
            "the poll on its descriptor is cancelled",
            |w| !w.guest_armed,
            host_turn,
        );
        until_ended(w, &mut hosted);
        echo(w, &mut own, b"still served");
    });
}

/// More connections ready at once than one wait of the hosted loop takes
/// (1,024 events): the rest are served at the next turn, without waiting
/// for a new wakeup of its descriptor, which the events still waiting in
/// it would never bring.
#[test]
fn hosted_loop_with_more_events_than_one_wait_takes_serves_the_rest_at_once() {
    const CLIENTS: usize = 1100;
    // Both ends of every connection, beside the other tests' descriptors:
    // the soft limit is raised to the hard one, as the server does.
    let limit = crate::serve::fd_limit::fd_limit(true);
    assert!(
        limit > 4 * CLIENTS,
        "this test needs an open-file limit above {} (ulimit -n), not {limit}",
        4 * CLIENTS
    );
    with_worker_tuned(
        false,
        |s| s.max_connections = 2 * CLIENTS,
        |w| {
            let addr = host_guest(w);
            // Connected in batches the listen backlog (128) holds, each
            // accepted before the next.
            let mut clients: Vec<TcpStream> = Vec::with_capacity(CLIENTS);
            while clients.len() < CLIENTS {
                let batch = (CLIENTS - clients.len()).min(64);
                clients.extend((0..batch).map(|_| guest_client(addr)));
                let open = clients.len();
                step_until(
                    w,
                    "the batch accepted",
                    |w| {
                        w.shared
                            .stats
                            .open()
                            .load(std::sync::atomic::Ordering::Relaxed)
                            == open
                    },
                    host_turn,
                );
            }
            for c in &mut clients {
                c.write_all(b"z").expect("write");
            }
            let mut echoed = vec![false; CLIENTS];
            step_until(
                w,
                "every echo",
                |_| {
                    for (c, done) in clients.iter_mut().zip(echoed.iter_mut()) {
                        let mut back = Vec::new();
                        read_now(c, &mut back);
                        *done |= back == b"z";
                    }
                    echoed.iter().all(|&d| d)
                },
                host_turn,
            );
        },
    );
}

/// When the ring's poll on the hosted loop's descriptor fails (a
/// completion with an error, not a cancel), the guest ends alone at the
/// next turn, as when its own `epoll_wait` fails: its connection ends and
/// the worker echoes its own connections on. A cancel, by contrast, is
/// only the poll ending: the guest goes on.
#[test]
fn failed_poll_on_the_hosted_loops_descriptor_ends_it_alone() {
    with_worker(false, |w| {
        let addr = host_guest(w);
        let (_, mut own) = connect(w);
        let mut hosted = guest_client(addr);
        echo(w, &mut hosted, b"hosted");
        w.on_guest(-libc::ECANCELED, false);
        w.turn_guest();
        assert!(w.guest.is_some(), "a cancelled poll ended the guest");
        w.on_guest(-libc::ENOMEM, false);
        w.turn_guest();
        assert!(w.guest.is_none(), "the guest outlived its poll's failure");
        until_ended(w, &mut hosted);
        step_until(
            w,
            "the poll on its descriptor is cancelled",
            |w| !w.guest_armed,
            host_turn,
        );
        echo(w, &mut own, b"still served");
    });
}
