//! Just enough Ethernet, ARP, IPv4 and TCP to talk to a firmware over
//! QEMU's UDP-socket network backend (one datagram per Ethernet frame):
//! build a SYN, an ACK or a data segment, answer ARP, and read what the
//! firmware sends. For the timer checks (`timers.rs`), which need a peer
//! that loses segments on purpose; slirp never does.

/// An IPv4 address as four octets.
pub(crate) type Ip = [u8; 4];
/// An Ethernet address.
pub(crate) type Mac = [u8; 6];

const ETHERTYPE_IPV4: [u8; 2] = [0x08, 0x00];
const ETHERTYPE_ARP: [u8; 2] = [0x08, 0x06];
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// TCP flags.
pub(crate) const SYN: u8 = 0x02;
pub(crate) const PSH: u8 = 0x08;
pub(crate) const ACK: u8 = 0x10;

/// The Internet checksum (RFC 1071) of `data`, starting from `sum`.
fn checksum(mut sum: u32, data: &[u8]) -> u16 {
    let mut words = data.chunks_exact(2);
    for w in &mut words {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    if let [last] = words.remainder() {
        sum += u32::from(*last) << 8;
    }
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    !(sum as u16)
}

/// A TCP segment's fields.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Segment {
    pub(crate) src: (Ip, u16),
    pub(crate) dst: (Ip, u16),
    pub(crate) seq: u32,
    pub(crate) ack: u32,
    pub(crate) flags: u8,
    pub(crate) payload: Vec<u8>,
}

/// What a frame from the firmware holds, as far as the checks care.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Frame {
    /// An ARP request: who has `target`? (from `sender_mac`, `sender_ip`)
    ArpRequest {
        sender_mac: Mac,
        sender_ip: Ip,
        target: Ip,
    },
    /// An ARP reply: `sender_ip` is at `sender_mac`.
    ArpReply {
        sender_mac: Mac,
        sender_ip: Ip,
    },
    /// A UDP datagram to `dst_port` (DHCP: 67).
    Udp {
        src_mac: Mac,
        dst_port: u16,
    },
    Tcp(Segment),
    Other,
}

/// Ethernet header + `payload`.
fn ethernet(dst: Mac, src: Mac, ethertype: [u8; 2], payload: &[u8]) -> Vec<u8> {
    let mut f = Vec::with_capacity(14 + payload.len());
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ethertype);
    f.extend_from_slice(payload);
    f
}

/// An ARP request from `mac`/`ip`: who has `target`? (Broadcast; smoltcp
/// learns the asker's address from it.)
pub(crate) fn arp_request(mac: Mac, ip: Ip, target: Ip) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 1];
    a.extend_from_slice(&mac);
    a.extend_from_slice(&ip);
    a.extend_from_slice(&[0; 6]);
    a.extend_from_slice(&target);
    ethernet([0xFF; 6], mac, ETHERTYPE_ARP, &a)
}

/// An ARP reply: `ip` is at `mac`, to the asker.
pub(crate) fn arp_reply(mac: Mac, ip: Ip, to_mac: Mac, to_ip: Ip) -> Vec<u8> {
    let mut a = vec![0, 1, 8, 0, 6, 4, 0, 2];
    a.extend_from_slice(&mac);
    a.extend_from_slice(&ip);
    a.extend_from_slice(&to_mac);
    a.extend_from_slice(&to_ip);
    ethernet(to_mac, mac, ETHERTYPE_ARP, &a)
}

/// An Ethernet frame carrying `segment` from `src_mac` to `dst_mac`.
pub(crate) fn tcp_frame(src_mac: Mac, dst_mac: Mac, s: &Segment) -> Vec<u8> {
    let tcp_len = 20 + s.payload.len();
    let mut tcp = Vec::with_capacity(tcp_len);
    tcp.extend_from_slice(&s.src.1.to_be_bytes());
    tcp.extend_from_slice(&s.dst.1.to_be_bytes());
    tcp.extend_from_slice(&s.seq.to_be_bytes());
    tcp.extend_from_slice(&s.ack.to_be_bytes());
    tcp.push(5 << 4);
    tcp.push(s.flags);
    tcp.extend_from_slice(&0xFFFFu16.to_be_bytes()); // window
    tcp.extend_from_slice(&[0, 0, 0, 0]); // checksum, urgent
    tcp.extend_from_slice(&s.payload);
    let mut pseudo = Vec::with_capacity(12);
    pseudo.extend_from_slice(&s.src.0);
    pseudo.extend_from_slice(&s.dst.0);
    pseudo.extend_from_slice(&[0, PROTO_TCP]);
    pseudo.extend_from_slice(&(tcp_len as u16).to_be_bytes());
    let sum = checksum(0, &[pseudo, tcp.clone()].concat());
    tcp[16..18].copy_from_slice(&sum.to_be_bytes());

    let total = 20 + tcp_len;
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&(total as u16).to_be_bytes());
    ip.extend_from_slice(&[0, 0, 0x40, 0, 64, PROTO_TCP, 0, 0]);
    ip.extend_from_slice(&s.src.0);
    ip.extend_from_slice(&s.dst.0);
    let sum = checksum(0, &ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    ip.extend_from_slice(&tcp);
    ethernet(dst_mac, src_mac, ETHERTYPE_IPV4, &ip)
}

/// Reads a frame (no checksum checks: QEMU's socket backend does not
/// corrupt).
pub(crate) fn parse(f: &[u8]) -> Frame {
    if f.len() < 14 {
        return Frame::Other;
    }
    let src_mac: Mac = f[6..12].try_into().unwrap_or_default();
    let body = &f[14..];
    match [f[12], f[13]] {
        ETHERTYPE_ARP if body.len() >= 28 && body[6..8] == [0, 1] => Frame::ArpRequest {
            sender_mac: body[8..14].try_into().unwrap_or_default(),
            sender_ip: body[14..18].try_into().unwrap_or_default(),
            target: body[24..28].try_into().unwrap_or_default(),
        },
        ETHERTYPE_ARP if body.len() >= 28 && body[6..8] == [0, 2] => Frame::ArpReply {
            sender_mac: body[8..14].try_into().unwrap_or_default(),
            sender_ip: body[14..18].try_into().unwrap_or_default(),
        },
        ETHERTYPE_IPV4 if body.len() >= 20 => {
            let ihl = usize::from(body[0] & 0x0F) * 4;
            let total = usize::from(u16::from_be_bytes([body[2], body[3]])).min(body.len());
            if ihl < 20 || total < ihl {
                return Frame::Other;
            }
            let (src, dst): (Ip, Ip) = (
                body[12..16].try_into().unwrap_or_default(),
                body[16..20].try_into().unwrap_or_default(),
            );
            let l4 = &body[ihl..total];
            match body[9] {
                PROTO_UDP if l4.len() >= 8 => Frame::Udp {
                    src_mac,
                    dst_port: u16::from_be_bytes([l4[2], l4[3]]),
                },
                PROTO_TCP if l4.len() >= 20 => {
                    let offset = usize::from(l4[12] >> 4) * 4;
                    if offset < 20 || offset > l4.len() {
                        return Frame::Other;
                    }
                    Frame::Tcp(Segment {
                        src: (src, u16::from_be_bytes([l4[0], l4[1]])),
                        dst: (dst, u16::from_be_bytes([l4[2], l4[3]])),
                        seq: u32::from_be_bytes([l4[4], l4[5], l4[6], l4[7]]),
                        ack: u32::from_be_bytes([l4[8], l4[9], l4[10], l4[11]]),
                        flags: l4[13],
                        payload: l4[offset..].to_vec(),
                    })
                }
                _ => Frame::Other,
            }
        }
        _ => Frame::Other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Mac = [2, 0, 0, 0, 0, 1];
    const B: Mac = [2, 0, 0, 0, 0, 2];

    #[test]
    fn checksum_of_the_rfc_1071_example_is_its_complement() {
        // RFC 1071's example words sum to 0xddf2.
        let data = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7];
        assert_eq!(checksum(0, &data), !0xddf2);
    }

    #[test]
    fn built_segment_parses_back_with_valid_ip_and_tcp_checksums() {
        let s = Segment {
            src: ([10, 0, 2, 2], 40000),
            dst: ([10, 0, 2, 15], 7),
            seq: 0x0102_0304,
            ack: 0x0a0b_0c0d,
            flags: PSH | ACK,
            payload: b"hello".to_vec(),
        };
        let f = tcp_frame(A, B, &s);
        assert_eq!(parse(&f), Frame::Tcp(s.clone()));
        // A valid header and segment sum to 0 (checksum included).
        let ip = &f[14..34];
        assert_eq!(checksum(0, ip), 0);
        let tcp = &f[34..];
        let mut pseudo = vec![10, 0, 2, 2, 10, 0, 2, 15, 0, PROTO_TCP];
        pseudo.extend_from_slice(&(tcp.len() as u16).to_be_bytes());
        assert_eq!(checksum(0, &[pseudo, tcp.to_vec()].concat()), 0);
    }

    #[test]
    fn arp_reply_answers_the_asker() {
        let f = arp_reply(A, [10, 0, 2, 2], B, [10, 0, 2, 15]);
        assert_eq!(&f[0..6], &B);
        assert_eq!(&f[12..14], &ETHERTYPE_ARP);
        assert_eq!(&f[20..22], &[0, 2], "a reply");
        assert_eq!(&f[22..28], &A);
        assert_eq!(
            parse(&f),
            Frame::ArpReply {
                sender_mac: A,
                sender_ip: [10, 0, 2, 2]
            }
        );
        let q = arp_request(B, [10, 0, 2, 2], [10, 0, 2, 15]);
        assert_eq!(
            parse(&q),
            Frame::ArpRequest {
                sender_mac: B,
                sender_ip: [10, 0, 2, 2],
                target: [10, 0, 2, 15]
            }
        );
    }
}
