//! The other end of the wire: a plain smoltcp interface with TCP and UDP
//! client sockets, driven by the core's probes (the verifier the desktop
//! uses), independently of the node's own client code.

use ricochet_core::{
    DatagramProbe, DatagramProbeConfig, Instant, ProbeConfig, ProbeError, StreamProbe,
};
use smoltcp::iface::{Config, Interface, SocketHandle, SocketSet, SocketStorage};
use smoltcp::socket::{tcp, udp};
use smoltcp::time::{Duration as SmolDuration, Instant as SmolInstant};
use smoltcp::wire::{EthernetAddress, IpCidr, IpEndpoint, Ipv4Cidr};

use super::pair::PairDevice;

/// A host with up to 64 sockets; buffers are leaked (tests only).
pub struct Host {
    pub iface: Interface,
    pub sockets: SocketSet<'static>,
    pub device: PairDevice,
}

impl Host {
    pub fn new(
        mut device: PairDevice,
        mac: EthernetAddress,
        ip: Ipv4Cidr,
        now: SmolInstant,
    ) -> Self {
        let mut config = Config::new(mac.into());
        config.random_seed = 0x5eed;
        let mut iface = Interface::new(config, &mut device, now);
        iface.update_ip_addrs(|addrs| {
            addrs.push(IpCidr::Ipv4(ip)).unwrap();
        });
        let storage: &'static mut [SocketStorage<'static>] =
            Box::leak(Box::new([SocketStorage::EMPTY; 64]));
        Host {
            iface,
            sockets: SocketSet::new(storage),
            device,
        }
    }

    /// Runs the interface; returns smoltcp's delay until its next timer.
    pub fn poll(&mut self, now: SmolInstant) -> Option<SmolDuration> {
        self.iface.poll(now, &mut self.device, &mut self.sockets);
        self.iface.poll_delay(now, &self.sockets)
    }

    pub fn tcp_socket(&mut self, rx: usize, tx: usize) -> SocketHandle {
        let rx: &'static mut [u8] = Vec::leak(vec![0; rx]);
        let tx: &'static mut [u8] = Vec::leak(vec![0; tx]);
        let mut socket = tcp::Socket::new(tcp::SocketBuffer::new(rx), tcp::SocketBuffer::new(tx));
        socket.set_nagle_enabled(false);
        self.sockets.add(socket)
    }

    /// A TCP socket with `(rx, tx)` buffer sizes, connecting from
    /// `local_port` to `server`.
    pub fn tcp_connect(
        &mut self,
        (rx, tx): (usize, usize),
        server: IpEndpoint,
        local_port: u16,
    ) -> SocketHandle {
        let handle = self.tcp_socket(rx, tx);
        let cx = self.iface.context();
        self.sockets
            .get_mut::<tcp::Socket<'static>>(handle)
            .connect(cx, server, local_port)
            .unwrap();
        handle
    }

    pub fn udp_socket(&mut self, port: u16) -> SocketHandle {
        let meta = || -> &'static mut [udp::PacketMetadata] {
            Vec::leak(vec![udp::PacketMetadata::EMPTY; 64])
        };
        let buf = || -> &'static mut [u8] { Vec::leak(vec![0; 64 * 1024]) };
        let mut socket = udp::Socket::new(
            udp::PacketBuffer::new(meta(), buf()),
            udp::PacketBuffer::new(meta(), buf()),
        );
        socket.bind(port).unwrap();
        self.sockets.add(socket)
    }

    pub fn tcp(&mut self, handle: SocketHandle) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut(handle)
    }

    pub fn udp(&mut self, handle: SocketHandle) -> &mut udp::Socket<'static> {
        self.sockets.get_mut(handle)
    }
}

/// Where a [`StreamClient`] stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Connecting,
    Exchanging,
    /// Refused (RST to the SYN) or the handshake timed out.
    Refused,
    /// The probe's verdict, after the server's FIN (or a failure).
    Finished(Result<(), ProbeError>),
}

/// A TCP connection driven by the core's [`StreamProbe`].
pub struct StreamClient {
    pub handle: SocketHandle,
    pub probe: StreamProbe<64>,
    pub phase: Phase,
    /// Send FIN as soon as every message is written (before the echoes are
    /// back): a half-close.
    pub close_after_sending: bool,
    /// `false`: never read (a client that stops reading).
    pub reads: bool,
    fin_sent: bool,
}

impl StreamClient {
    pub fn connect(
        host: &mut Host,
        handle: SocketHandle,
        server: IpEndpoint,
        local_port: u16,
        config: ProbeConfig,
        now: Instant,
    ) -> Self {
        let socket = host.sockets.get_mut::<tcp::Socket<'static>>(handle);
        socket
            .connect(host.iface.context(), server, local_port)
            .unwrap();
        StreamClient {
            handle,
            probe: StreamProbe::new(config, now).unwrap(),
            phase: Phase::Connecting,
            close_after_sending: false,
            reads: true,
            fin_sent: false,
        }
    }

    pub fn is_finished(&self) -> bool {
        matches!(self.phase, Phase::Finished(_) | Phase::Refused)
    }

    pub fn passed(&self) -> bool {
        self.phase == Phase::Finished(Ok(()))
    }

    /// Moves bytes between the probe and the socket; decides.
    pub fn drive(&mut self, host: &mut Host, now: Instant) {
        let socket = host.sockets.get_mut::<tcp::Socket<'static>>(self.handle);
        match self.phase {
            Phase::Connecting => match socket.state() {
                tcp::State::SynSent | tcp::State::SynReceived => return,
                tcp::State::Closed | tcp::State::TimeWait => {
                    self.phase = Phase::Refused;
                    return;
                }
                _ => self.phase = Phase::Exchanging,
            },
            Phase::Exchanging => {}
            Phase::Refused | Phase::Finished(_) => return,
        }
        let verdict = (|| -> Result<bool, ProbeError> {
            self.probe.handle_timeout(now)?;
            while !self.fin_sent && socket.can_send() {
                let probe = &mut self.probe;
                let n = socket
                    .send(|room| {
                        let n = probe.fill_transmit(now, room);
                        (n, n)
                    })
                    .unwrap_or(0);
                if n == 0 {
                    break;
                }
                self.probe.commit_sent(now, n).unwrap();
            }
            let all_sent =
                self.probe.stats().messages_sent == self.probe.config().count.unwrap_or(u64::MAX);
            if !self.fin_sent && (self.probe.is_done() || (self.close_after_sending && all_sent)) {
                socket.close();
                self.fin_sent = true;
            }
            if !self.reads {
                return Ok(false);
            }
            loop {
                let probe = &mut self.probe;
                let got = socket.recv(|data| {
                    let mut used = 0;
                    while used < data.len() {
                        match probe.handle_received(now, &data[used..]) {
                            Ok(r) if r.consumed > 0 => used += r.consumed,
                            Ok(_) => break,
                            Err(e) => return (data.len(), Err(e)),
                        }
                    }
                    (used, Ok(used))
                });
                match got {
                    Ok(Ok(0)) | Err(tcp::RecvError::InvalidState) => break,
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(e),
                    Err(tcp::RecvError::Finished) => {
                        return self.probe.handle_eof(now).map(|()| true);
                    }
                }
            }
            if !socket.is_active() {
                return self.probe.handle_eof(now).map(|()| true);
            }
            Ok(false)
        })();
        match verdict {
            Ok(false) => {}
            Ok(true) => self.phase = Phase::Finished(Ok(())),
            Err(e) => {
                socket.abort();
                self.phase = Phase::Finished(Err(e));
            }
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Exchanging => self.probe.poll_timeout(),
            _ => None,
        }
    }
}

/// A UDP socket driven by the core's [`DatagramProbe`].
pub struct DatagramClient {
    pub handle: SocketHandle,
    pub server: IpEndpoint,
    pub probe: DatagramProbe<64>,
    buf: Vec<u8>,
}

impl DatagramClient {
    pub fn new(
        host: &mut Host,
        local_port: u16,
        server: IpEndpoint,
        config: DatagramProbeConfig,
        now: Instant,
    ) -> Self {
        DatagramClient {
            handle: host.udp_socket(local_port),
            server,
            probe: DatagramProbe::new(config, now).unwrap(),
            buf: vec![0; 65536],
        }
    }

    pub fn drive(&mut self, host: &mut Host, now: Instant) {
        let socket = host.sockets.get_mut::<udp::Socket<'static>>(self.handle);
        self.probe.handle_timeout(now);
        while let Ok((data, _)) = socket.recv() {
            self.probe.handle_datagram(now, data);
        }
        while socket.can_send() {
            let Some(n) = self.probe.poll_transmit(now, &mut self.buf) else {
                break;
            };
            socket.send_slice(&self.buf[..n], self.server).unwrap();
        }
    }

    pub fn deadline(&self) -> Option<Instant> {
        self.probe.poll_timeout()
    }
}
