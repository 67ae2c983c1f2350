//! Hand-built Ethernet frames (forged sources, packets no real host sends).

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Address, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, UdpPacket,
    UdpRepr,
};

const ETH: usize = 14;
const IPV4: usize = 20;
#[cfg(feature = "ipv6")]
const IPV6: usize = 40;

fn ipv4_frame(
    (src_mac, dst_mac): (EthernetAddress, EthernetAddress),
    (src, dst): (Ipv4Address, Ipv4Address),
    protocol: IpProtocol,
    payload_len: usize,
    emit: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let mut frame = vec![0u8; ETH + IPV4 + payload_len];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let mut ip = Ipv4Packet::new_unchecked(eth.payload_mut());
    Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: protocol,
        payload_len,
        hop_limit: 64,
    }
    .emit(&mut ip, &ChecksumCapabilities::default());
    emit(ip.payload_mut());
    frame
}

/// A UDP datagram from `src` (any address, forged or not) to `dst`.
pub fn udp(
    macs: (EthernetAddress, EthernetAddress),
    src: (Ipv4Address, u16),
    dst: (Ipv4Address, u16),
    payload: &[u8],
) -> Vec<u8> {
    ipv4_frame(
        macs,
        (src.0, dst.0),
        IpProtocol::Udp,
        8 + payload.len(),
        |buf| {
            let mut packet = UdpPacket::new_unchecked(buf);
            UdpRepr {
                src_port: src.1,
                dst_port: dst.1,
            }
            .emit(
                &mut packet,
                &IpAddress::Ipv4(src.0),
                &IpAddress::Ipv4(dst.0),
                payload.len(),
                |p| p.copy_from_slice(payload),
                &ChecksumCapabilities::default(),
            );
        },
    )
}

/// A UDP datagram over IPv6 from `src` (any address, forged or not) to
/// `dst`.
#[cfg(feature = "ipv6")]
pub fn udp6(
    (src_mac, dst_mac): (EthernetAddress, EthernetAddress),
    src: (smoltcp::wire::Ipv6Address, u16),
    dst: (smoltcp::wire::Ipv6Address, u16),
    payload: &[u8],
) -> Vec<u8> {
    use smoltcp::wire::{Ipv6Packet, Ipv6Repr};

    let udp_len = 8 + payload.len();
    let mut frame = vec![0u8; ETH + IPV6 + udp_len];
    let mut eth = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv6,
    }
    .emit(&mut eth);
    let mut ip = Ipv6Packet::new_unchecked(eth.payload_mut());
    Ipv6Repr {
        src_addr: src.0,
        dst_addr: dst.0,
        next_header: IpProtocol::Udp,
        payload_len: udp_len,
        hop_limit: 64,
    }
    .emit(&mut ip);
    let mut packet = UdpPacket::new_unchecked(ip.payload_mut());
    UdpRepr {
        src_port: src.1,
        dst_port: dst.1,
    }
    .emit(
        &mut packet,
        &IpAddress::Ipv6(src.0),
        &IpAddress::Ipv6(dst.0),
        payload.len(),
        |p| p.copy_from_slice(payload),
        &ChecksumCapabilities::default(),
    );
    frame
}

/// A TCP SYN from `src` to `dst`.
pub fn syn(
    macs: (EthernetAddress, EthernetAddress),
    src: (Ipv4Address, u16),
    dst: (Ipv4Address, u16),
) -> Vec<u8> {
    let repr = TcpRepr {
        src_port: src.1,
        dst_port: dst.1,
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(1000),
        ack_number: None,
        window_len: 4096,
        window_scale: None,
        max_seg_size: Some(1460),
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    };
    ipv4_frame(
        macs,
        (src.0, dst.0),
        IpProtocol::Tcp,
        repr.buffer_len(),
        |buf| {
            let mut packet = TcpPacket::new_unchecked(buf);
            repr.emit(
                &mut packet,
                &IpAddress::Ipv4(src.0),
                &IpAddress::Ipv4(dst.0),
                &ChecksumCapabilities::default(),
            );
        },
    )
}

/// The header of a TCP segment, read back from a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Segment {
    pub src_port: u16,
    pub dst_port: u16,
    /// Sequence number of the first byte (or of the SYN).
    pub seq: u32,
    /// Payload bytes.
    pub len: usize,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
}

/// The TCP segment in an Ethernet frame, if it carries one (IPv4 only).
pub fn tcp_segment(frame: &[u8]) -> Option<Segment> {
    let eth = EthernetFrame::new_checked(frame).ok()?;
    if eth.ethertype() != EthernetProtocol::Ipv4 {
        return None;
    }
    let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
    if ip.next_header() != IpProtocol::Tcp {
        return None;
    }
    let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
    Some(Segment {
        src_port: tcp.src_port(),
        dst_port: tcp.dst_port(),
        seq: tcp.seq_number().0 as u32,
        len: tcp.payload().len(),
        syn: tcp.syn(),
        fin: tcp.fin(),
        rst: tcp.rst(),
    })
}
