//! The tickless clock keeps time across sleeps: a board's firmware is
//! booted on QEMU's UDP-socket network backend, so this check is its whole
//! network (no DHCP server, and a TCP peer that loses what it wants to),
//! and the host clock times what the firmware does on its own timers:
//!
//! 1. the DHCP fallback (no lease comes): logged 2 s after the first
//!    DISCOVER;
//! 2. a SYN left unanswered: the SYN-ACK is retransmitted after 1 s and
//!    then 2 s (smoltcp's initial and doubled retransmission timeout), and
//!    never again after the node's 5 s handshake timeout frees the socket
//!    (the next one would come at 7 s);
//! 3. echoed data never acknowledged: retransmitted after 1 s, then 2 s.
//!
//! The firmware sleeps in `wfi` between these events with only its
//! one-shot timer to wake it (nothing else arrives), so a deadline the
//! clock missed shows as a late (or missing) frame; a clock running fast
//! as an early one. Bounds: 200 ms early to 500 ms late, because the times
//! are taken when this process reads each frame and a busy host delays
//! QEMU and this process too (measured here: within 30 ms); a missed
//! deadline is seconds late (the next wake-up is the 10 s stats log).

use std::net::UdpSocket;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::vm::{Network, QEMU_LIMIT_SECS, Qemu, cargo, elf, free_port, require_tools};
use crate::wire::{self, ACK, Frame, Ip, Mac, PSH, SYN, Segment};
use crate::{Board, Ctx, run};

/// Our end: the gateway address of the firmware's static fallback.
const HOST_IP: Ip = [10, 0, 2, 2];
const HOST_MAC: Mac = [0x52, 0x55, 0x0a, 0x00, 0x02, 0x02];
/// The firmware's fallback address (every QEMU board's `main`).
const NODE_IP: Ip = [10, 0, 2, 15];
const FALLBACK_AFTER: Duration = Duration::from_secs(2);
/// smoltcp 0.14's initial retransmission timeout, doubled on each retry.
const RTO: Duration = Duration::from_secs(1);
/// How long the check watches the two connections.
const WATCH: Duration = Duration::from_millis(6500);
const EARLY: Duration = Duration::from_millis(200);
const LATE: Duration = Duration::from_millis(500);

/// Boots `board` on a socket network and checks its timers (module docs).
pub(crate) fn check(ctx: &Ctx, board: &Board) -> Result<(), String> {
    let machine = board
        .qemu
        .as_ref()
        .ok_or_else(|| format!("{} does not run in QEMU", board.name))?;
    require_tools()?;
    run(
        &ctx.root.join(board.dir),
        &cargo(),
        &["build", "--release", "--locked"],
        &[],
    )?;
    let sock = UdpSocket::bind("127.0.0.1:0").map_err(|e| format!("bind: {e}"))?;
    sock.set_read_timeout(Some(Duration::from_millis(5)))
        .map_err(|e| e.to_string())?;
    let ours = sock.local_addr().map_err(|e| e.to_string())?.port();
    let theirs = free_port()?;
    sock.connect(("127.0.0.1", theirs))
        .map_err(|e| format!("connect: {e}"))?;
    let log = std::env::temp_dir().join(format!("ricochet-timers-{}-{ours}.log", board.name));
    let elf = elf(ctx, board);
    let netdev = format!("socket,udp=127.0.0.1:{ours},localaddr=127.0.0.1:{theirs}");
    let mut qemu = Qemu::boot_elf(
        ctx,
        machine,
        Path::new(&elf),
        &[],
        Network::Netdev(netdev),
        log.clone(),
        QEMU_LIMIT_SECS,
    )?;
    let result = Peer::new(sock).run(&mut qemu);
    let text = qemu.log_text();
    drop(qemu);
    if result.is_err() {
        eprintln!("--- firmware log ({}):", log.display());
        for line in text.lines().take(100) {
            eprintln!("    {line}");
        }
    }
    let result = result.and_then(|()| crate::qemu::no_panic_in(&text));
    crate::vm::keep_log_if_failed(&result, &log);
    result
}

/// The firmware's only peer.
struct Peer {
    sock: UdpSocket,
    node_mac: Option<Mac>,
}

/// Ports of the two test connections.
const HALF_OPEN: u16 = 40001;
const UNACKED: u16 = 40002;

impl Peer {
    fn new(sock: UdpSocket) -> Self {
        Peer {
            sock,
            node_mac: None,
        }
    }

    /// The next frame (within 5 ms), after answering any ARP request for
    /// our address.
    fn recv(&mut self) -> Option<Frame> {
        let mut buf = [0u8; 2048];
        let n = self.sock.recv(&mut buf).ok()?;
        let frame = wire::parse(&buf[..n]);
        match &frame {
            Frame::ArpRequest {
                sender_mac,
                sender_ip,
                target,
            } if *target == HOST_IP => {
                let reply = wire::arp_reply(HOST_MAC, HOST_IP, *sender_mac, *sender_ip);
                let _ = self.sock.send(&reply);
            }
            Frame::Udp { src_mac, .. } if self.node_mac.is_none() => {
                self.node_mac = Some(*src_mac);
            }
            _ => {}
        }
        Some(frame)
    }

    fn send(&self, segment: &Segment) -> Result<(), String> {
        let mac = self.node_mac.ok_or("the firmware's MAC is not known yet")?;
        self.sock
            .send(&wire::tcp_frame(HOST_MAC, mac, segment))
            .map(drop)
            .map_err(|e| format!("send: {e}"))
    }

    fn run(&mut self, qemu: &mut Qemu) -> Result<(), String> {
        // 1. The first DHCP DISCOVER, then the fallback line in the log.
        let deadline = Instant::now() + Duration::from_secs(60);
        let first = loop {
            if let Some(Frame::Udp { dst_port: 67, .. }) = self.recv() {
                break Instant::now();
            }
            if Instant::now() > deadline || !qemu.alive() {
                return Err("no DHCP DISCOVER from the firmware within 60 s".into());
            }
        };
        let fallback = loop {
            let _ = self.recv();
            if qemu.log_text().contains("dhcp: no lease in time") {
                break first.elapsed();
            }
            if first.elapsed() > FALLBACK_AFTER * 4 {
                return Err(format!(
                    "no DHCP fallback within {:?} of the first DISCOVER",
                    FALLBACK_AFTER * 4
                ));
            }
        };
        within(
            "DHCP fallback after the first DISCOVER",
            fallback,
            FALLBACK_AFTER,
        )?;
        eprintln!(
            "xtask: timers: DHCP fallback {fallback:.3?} after the first DISCOVER (due {FALLBACK_AFTER:?})"
        );

        // 2 and 3. Introduce ourselves, then a SYN never acknowledged and a
        // connection whose echo is never acknowledged.
        let _ = self
            .sock
            .send(&wire::arp_request(HOST_MAC, HOST_IP, NODE_IP));
        let syn = |port, seq| Segment {
            src: (HOST_IP, port),
            dst: (NODE_IP, 7),
            seq,
            ack: 0,
            flags: SYN,
            payload: Vec::new(),
        };
        self.send(&syn(HALF_OPEN, 1000))?;
        self.send(&syn(UNACKED, 5000))?;
        let start = Instant::now();
        let mut syn_acks = Vec::new();
        let mut echoes = Vec::new();
        let mut established = false;
        while start.elapsed() < WATCH {
            let Some(Frame::Tcp(s)) = self.recv() else {
                continue;
            };
            if s.src != (NODE_IP, 7) {
                continue;
            }
            let now = Instant::now();
            match s.dst.1 {
                HALF_OPEN if s.flags & (SYN | ACK) == SYN | ACK => syn_acks.push(now),
                UNACKED if s.flags & SYN != 0 && !established => {
                    established = true;
                    // Complete the handshake and send data; never
                    // acknowledge the echo.
                    let data = b"ricochet timers\n";
                    self.send(&Segment {
                        src: (HOST_IP, UNACKED),
                        dst: (NODE_IP, 7),
                        seq: 5001,
                        ack: s.seq.wrapping_add(1),
                        flags: PSH | ACK,
                        payload: data.to_vec(),
                    })?;
                }
                UNACKED if !s.payload.is_empty() => echoes.push(now),
                _ => {}
            }
        }
        let intervals =
            |at: &[Instant]| -> Vec<Duration> { at.windows(2).map(|w| w[1] - w[0]).collect() };
        let (syn_ack_gaps, echo_gaps) = (intervals(&syn_acks), intervals(&echoes));
        let since = |at: &[Instant]| -> Vec<Duration> { at.iter().map(|t| *t - start).collect() };
        eprintln!(
            "xtask: timers: after the SYNs: SYN-ACKs at {:.3?}, echoes at {:.3?}",
            since(&syn_acks),
            since(&echoes)
        );
        eprintln!(
            "xtask: timers: SYN-ACK retransmitted after {syn_ack_gaps:.3?} (due 1 s, 2 s, then none after the 5 s handshake timeout); echo retransmitted after {echo_gaps:.3?} (due 1 s, 2 s)"
        );
        if syn_acks.len() != 3 {
            return Err(format!(
                "{} SYN-ACKs for the half-open connection in {WATCH:?}: expected the first and two retransmissions, then none (the handshake timeout frees the socket at 5 s)",
                syn_acks.len()
            ));
        }
        if echoes.len() != 3 {
            return Err(format!(
                "{} echo segments in {WATCH:?}: expected the first and two retransmissions",
                echoes.len()
            ));
        }
        for (what, gaps) in [("SYN-ACK", &syn_ack_gaps), ("echo", &echo_gaps)] {
            within(&format!("{what} first retransmission"), gaps[0], RTO)?;
            within(&format!("{what} second retransmission"), gaps[1], RTO * 2)?;
        }
        Ok(())
    }
}

/// `took` is `due`, within [`EARLY`] and [`LATE`].
fn within(what: &str, took: Duration, due: Duration) -> Result<(), String> {
    if took + EARLY < due || took > due + LATE {
        return Err(format!(
            "{what}: {took:.3?}, due {due:?} (allowed {EARLY:?} early to {LATE:?} late)"
        ));
    }
    Ok(())
}
