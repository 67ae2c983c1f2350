//! Serving: every mode verified, a full pool, a reconnect storm, half-close,
//! the unterminated `lines` tail, and a client that never reads.

use super::*;

#[test]
fn listening_node_raw_stream_of_random_sizes_is_echoed_verified() {
    stream_is_echoed_and_verified(Mode::Raw, SizeRange::range(1, 1500), 400);
}

#[test]
fn listening_node_lines_stream_of_random_lengths_is_echoed_verified() {
    // Lines up to the whole 1024-byte session buffer.
    stream_is_echoed_and_verified(Mode::Lines, SizeRange::range(1, 1024), 600);
}

#[test]
fn listening_node_frames_stream_of_random_lengths_is_echoed_verified() {
    // Frames up to the whole 1024-byte session buffer, header included.
    stream_is_echoed_and_verified(Mode::Frames, SizeRange::range(2, 1024), 600);
}

#[test]
fn full_pool_serves_n_clients_at_once_refuses_the_extra_then_serves_it() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    // Paced: each client needs 50 ms, so all of them overlap.
    let paced = ProbeConfig {
        pattern: Pattern::PingPong,
        interval: Some(Duration::from_millis(1).into()),
        ..probe(Mode::Raw, SizeRange::fixed(100), 50)
    };
    let mut clients: Vec<StreamClient> = (0..5)
        .map(|i| connect(&mut sim, 40000 + i, paced))
        .collect();
    let mut peak = 0;
    let finished = sim.run(2 * SECOND, &mut |host, node, now| {
        peak = peak.max(node.stats().tcp.active());
        drive_all(&mut clients, host, now)
    });
    assert!(finished);
    // smoltcp answers a SYN no socket accepts with a RST: the fifth client
    // is refused cleanly (ECONNREFUSED on a desktop), never left hanging.
    let refused: Vec<usize> = (0..5)
        .filter(|&i| clients[i].phase == Phase::Refused)
        .collect();
    assert_eq!(
        refused.len(),
        1,
        "{:?}",
        clients.iter().map(|c| c.phase).collect::<Vec<_>>()
    );
    assert_eq!(peak, 4, "four connections served at once");
    for (i, c) in clients.iter().enumerate() {
        if i != refused[0] {
            assert!(c.passed(), "client {i}: {:?}", c.phase);
        }
    }
    // Sockets are free again: the refused client retries and is served.
    let mut retry = [connect(&mut sim, 41000, paced)];
    let served = sim.run(2 * SECOND, &mut |host, _, now| {
        drive_all(&mut retry, host, now)
    });
    assert!(served && retry[0].passed(), "{:?}", retry[0].phase);
    sim.idle(SECOND);
    let tcp = sim.node.stats().tcp;
    assert_eq!(tcp.accepted, 5);
    assert_eq!(tcp.closed.peer_finished, 5);
    assert_eq!(tcp.aborted.total(), 0);
}

#[test]
fn reconnect_storm_of_200_back_to_back_cycles_all_succeed() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    // Two client sockets take turns: the next connect starts the moment the
    // previous echo was verified and the node's FIN arrived, while the
    // node's old socket still waits for the last ACK.
    let handles = [
        sim.host.tcp_socket(2048, 2048),
        sim.host.tcp_socket(2048, 2048),
    ];
    for cycle in 0..200u16 {
        let config = ProbeConfig {
            pattern: Pattern::PingPong,
            seed: u64::from(cycle),
            ..probe(Mode::Raw, SizeRange::range(1, 600), 3)
        };
        let now = core(sim.now);
        let handle = handles[usize::from(cycle % 2)];
        let mut client = [StreamClient::connect(
            &mut sim.host,
            handle,
            echo_endpoint(),
            20000 + cycle,
            config,
            now,
        )];
        let finished = sim.run(SECOND, &mut |host, _, now| {
            drive_all(&mut client, host, now)
        });
        assert!(
            finished && client[0].passed(),
            "cycle {cycle}: {:?}",
            client[0].phase
        );
    }
    sim.idle(SECOND);
    let tcp = sim.node.stats().tcp;
    assert_eq!(tcp.accepted, 200);
    assert_eq!(tcp.closed.peer_finished, 200);
    assert_eq!(tcp.aborted.total(), 0);
    assert_eq!(tcp.lingered, 0);
    assert_eq!(tcp.active(), 0);
}

#[test]
fn half_closed_client_gets_every_byte_echoed_then_the_node_fin() {
    let mut sim = Sim::<4, 6, 1024>::new(server_config());
    let mut clients = [connect(
        &mut sim,
        40000,
        probe(Mode::Raw, SizeRange::range(1, 1500), 100),
    )];
    // FIN right after the last byte is written, long before the echoes are back.
    clients[0].close_after_sending = true;
    let finished = sim.run(30 * SECOND, &mut |host, _, now| {
        drive_all(&mut clients, host, now)
    });
    // `Finished(Ok)`: every byte verified, then EOF (the node's FIN).
    assert!(finished && clients[0].passed(), "{:?}", clients[0].phase);
    sim.idle(SECOND);
    let tcp = sim.node.stats().tcp;
    assert_eq!(tcp.closed.peer_finished, 1);
    assert_eq!(tcp.bytes_out, clients[0].probe.stats().bytes_sent);
}

#[test]
fn lines_session_with_unterminated_tail_at_fin_echoes_the_tail_then_fin() {
    let mut sim = Sim::<4, 6, 1024>::new(config_in(Mode::Lines));
    let handle = sim.host.tcp_connect((4096, 4096), echo_endpoint(), 40000);
    let mut sent = false;
    let mut echoed = Vec::new();
    let fin = sim.run(5 * SECOND, &mut |host, _, _| {
        let socket = host.tcp(handle);
        if !sent && socket.may_send() {
            socket.send_slice(b"one\ntwo\nno newline here").unwrap();
            socket.close();
            sent = true;
        }
        let done = loop {
            match socket.recv(|d| (d.len(), d.to_vec())) {
                Ok(d) if d.is_empty() => break false,
                Ok(d) => echoed.extend(d),
                Err(tcp::RecvError::Finished) => break true,
                Err(_) => break false,
            }
        };
        Flow::until(None, done)
    });
    assert!(fin, "the node never sent its FIN");
    assert_eq!(echoed, b"one\ntwo\nno newline here");
    sim.idle(SECOND);
    assert_eq!(sim.node.stats().tcp.closed.peer_finished, 1);
}

#[test]
fn client_that_never_reads_is_bounded_then_aborted_while_others_are_served() {
    let mut config = server_config();
    config.session.drain_timeout = Some(Duration::from_secs(3));
    let mut sim = Sim::<4, 6, 1024>::new(config);
    let endless = ProbeConfig {
        count: None,
        response_timeout: None,
        pattern: Pattern::Stream { window: 1 << 20 },
        ..probe(Mode::Raw, SizeRange::fixed(1000), 1)
    };
    let mut stuck = connect(&mut sim, 40000, endless);
    stuck.reads = false;
    let stuck_handle = stuck.handle;
    let mut clients = vec![stuck];

    // While the stuck client fills every buffer on its path, others are served.
    let mut max_buffered = 0;
    for i in 0..3u16 {
        let config = ProbeConfig {
            pattern: Pattern::PingPong,
            ..probe(Mode::Raw, SizeRange::range(1, 800), 100)
        };
        clients.push(connect(&mut sim, 41000 + i, config));
        let last = clients.len() - 1;
        let served = sim.run(2 * SECOND, &mut |host, node, now| {
            max_buffered = max_buffered.max(node.session_buffers().max().unwrap_or(0));
            let flow = drive_all(&mut clients, host, now);
            Flow::until(flow.deadline, clients[last].is_finished())
        });
        assert!(
            served && clients[last].passed(),
            "client {i}: {:?}",
            clients[last].phase
        );
    }
    // Bounded: the stuck client wrote only what fits the buffers on its
    // path (its own transmit buffer, the node's receive buffer, session and
    // transmit buffer, its own receive buffer), and the node holds at most
    // its fixed buffers.
    let sent = clients[0].probe.stats().bytes_sent;
    let bound = 4096 + 1024 + 1024 + 1536 + 4096;
    assert!(
        sent <= bound,
        "stuck client pushed {sent} bytes, more than {bound}"
    );
    assert!(max_buffered <= 1024);
    assert_eq!(sim.node.stats().tcp.aborted.drain_timeout, 0, "not yet");

    // After the drain timeout the node gives up on it (RST) and re-arms.
    let aborted = sim.run(10 * SECOND, &mut |host, node, now| {
        let flow = drive_all(&mut clients, host, now);
        Flow::until(flow.deadline, node.stats().tcp.aborted.drain_timeout == 1)
    });
    assert!(aborted);
    sim.idle(100_000);
    assert_eq!(
        sim.host.tcp(stuck_handle).state(),
        tcp::State::Closed,
        "reset by the node"
    );
    let tcp = sim.node.stats().tcp;
    assert_eq!(tcp.active(), 0);
    assert_eq!(tcp.closed.peer_finished, 3);
    // Its socket listens again: a new client is served.
    a_new_client_is_served(&mut sim, 42000);
}
