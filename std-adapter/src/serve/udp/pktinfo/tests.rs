use super::*;

/// Control data carrying the kernel's `SO_RXQ_OVFL` count.
#[allow(unsafe_code)]
fn overflow_count(count: u32) -> Vec<u8> {
    let mut buf = vec![0u8; space(size_of::<u32>())];
    // SAFETY: cmsghdr is plain old data, for which zero bytes are valid.
    let mut hdr: libc::cmsghdr = unsafe { std::mem::zeroed() };
    hdr.cmsg_len = (HEADER + size_of::<u32>()) as _;
    hdr.cmsg_level = libc::SOL_SOCKET;
    hdr.cmsg_type = libc::SO_RXQ_OVFL;
    // SAFETY: `buf` holds more than a cmsghdr's bytes; unaligned write.
    unsafe {
        buf.as_mut_ptr()
            .cast::<libc::cmsghdr>()
            .write_unaligned(hdr)
    };
    buf[HEADER..HEADER + 4].copy_from_slice(&count.to_ne_bytes());
    buf
}

#[test]
fn queue_drops_count_what_is_new_in_the_kernels_running_count_across_its_wrap() {
    let mut drops = QueueDrops::default();
    drops.note(&[]);
    assert_eq!(drops.take(), 0, "no count: no drop yet");
    drops.note(&overflow_count(3));
    drops.note(&overflow_count(3));
    drops.note(&overflow_count(5));
    assert_eq!(drops.take(), 5);
    assert_eq!(drops.take(), 0, "taken");
    drops.note(&overflow_count(u32::MAX));
    drops.note(&overflow_count(1));
    assert_eq!(drops.take(), u64::from(u32::MAX - 5) + 2, "across the wrap");
}

fn v4(dst: [u8; 4], spec_dst: [u8; 4]) -> Local {
    Local::V4 {
        dst: Ipv4Addr::from(dst),
        spec_dst: Ipv4Addr::from(spec_dst),
    }
}

/// Control data as the kernel writes it: a message of `level`/`kind`
/// with `data`, padded to its space.
fn message(level: libc::c_int, kind: libc::c_int, data: &[u8]) -> Vec<u8> {
    #[allow(unsafe_code)]
    // SAFETY: all-zero is a valid `cmsghdr`.
    let mut hdr: libc::cmsghdr = unsafe { std::mem::zeroed() };
    hdr.cmsg_len = (HEADER + data.len()) as _;
    hdr.cmsg_level = level;
    hdr.cmsg_type = kind;
    let mut out = vec![0u8; space(data.len())];
    #[allow(unsafe_code)]
    // SAFETY: `out` is longer than a `cmsghdr`; written unaligned.
    unsafe {
        out.as_mut_ptr()
            .cast::<libc::cmsghdr>()
            .write_unaligned(hdr)
    };
    out[HEADER..HEADER + data.len()].copy_from_slice(data);
    out
}

fn in_pktinfo(ifindex: i32, spec_dst: [u8; 4], addr: [u8; 4]) -> Vec<u8> {
    let mut d = Vec::new();
    d.extend_from_slice(&ifindex.to_ne_bytes());
    d.extend_from_slice(&spec_dst);
    d.extend_from_slice(&addr);
    assert_eq!(d.len(), size_of::<libc::in_pktinfo>());
    d
}

fn in6_pktinfo(addr: Ipv6Addr, ifindex: u32) -> Vec<u8> {
    let mut d = addr.octets().to_vec();
    d.extend_from_slice(&ifindex.to_ne_bytes());
    assert_eq!(d.len(), size_of::<libc::in6_pktinfo>());
    d
}

#[test]
fn parses_ip_pktinfo() {
    let c = message(
        libc::IPPROTO_IP,
        libc::IP_PKTINFO,
        &in_pktinfo(1, [127, 0, 0, 2], [127, 0, 0, 2]),
    );
    assert_eq!(parse(&c), Some(v4([127, 0, 0, 2], [127, 0, 0, 2])));
    // At an odd offset, as in an io_uring buffer.
    let mut odd = vec![0u8];
    odd.extend_from_slice(&c);
    assert_eq!(parse(&odd[1..]), parse(&c));
}

#[test]
fn parses_ipv6_pktinfo_and_prefers_ip_pktinfo_on_dual_stack() {
    let ll: Ipv6Addr = "fe80::1".parse().unwrap();
    let c = message(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, &in6_pktinfo(ll, 3));
    assert_eq!(
        parse(&c),
        Some(Local::V6 {
            dst: ll,
            ifindex: 3
        })
    );
    // IPv4 on a dual-stack socket: IPV6_PKTINFO (v4-mapped) first, then IP_PKTINFO.
    let mapped = Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped();
    let mut both = message(
        libc::IPPROTO_IPV6,
        libc::IPV6_PKTINFO,
        &in6_pktinfo(mapped, 2),
    );
    both.extend(message(
        libc::IPPROTO_IP,
        libc::IP_PKTINFO,
        &in_pktinfo(2, [192, 0, 2, 1], [192, 0, 2, 255]),
    ));
    assert!(both.len() <= RECV_SPACE);
    let got = parse(&both).unwrap();
    assert_eq!(got, v4([192, 0, 2, 255], [192, 0, 2, 1]));
    assert!(!got.is_unicast(), "subnet-directed broadcast");
}

#[test]
fn parse_ignores_other_truncated_and_garbage_control_data() {
    assert_eq!(parse(&[]), None);
    assert_eq!(parse(&[0xff; 7]), None);
    assert_eq!(parse(&[0xff; 64]), None);
    let other = message(libc::SOL_SOCKET, libc::SCM_RIGHTS, &[0; 4]);
    assert_eq!(parse(&other), None);
    let full = message(
        libc::IPPROTO_IP,
        libc::IP_PKTINFO,
        &in_pktinfo(1, [10, 0, 0, 1], [10, 0, 0, 1]),
    );
    for cut in 0..HEADER + size_of::<libc::in_pktinfo>() {
        assert_eq!(parse(&full[..cut]), None, "cut at {cut}");
    }
    let mut after_other = other.clone();
    after_other.extend_from_slice(&full);
    assert_eq!(parse(&after_other), Some(v4([10, 0, 0, 1], [10, 0, 0, 1])));
}

#[test]
fn build_round_trips_through_parse() {
    let mut buf = [0xaa; SEND_SPACE];
    let l = v4([127, 0, 0, 2], [127, 0, 0, 2]);
    let n = build(l, &mut buf);
    assert_eq!(n, space(size_of::<libc::in_pktinfo>()));
    assert_eq!(
        &buf[HEADER..HEADER + size_of::<libc::in_pktinfo>()],
        &in_pktinfo(0, [127, 0, 0, 2], [0; 4])[..],
        "ipi_spec_dst set, ifindex and ipi_addr 0"
    );
    // ipi_addr is not sent, so it reads back as 0.0.0.0.
    assert_eq!(parse(&buf[..n]), Some(v4([0; 4], [127, 0, 0, 2])));

    let global: Ipv6Addr = "2001:db8::7".parse().unwrap();
    let n = build(
        Local::V6 {
            dst: global,
            ifindex: 4,
        },
        &mut buf,
    );
    assert_eq!(n, space(size_of::<libc::in6_pktinfo>()));
    assert_eq!(
        parse(&buf[..n]),
        Some(Local::V6 {
            dst: global,
            ifindex: 0
        }),
        "a global address leaves on any interface"
    );
    let ll: Ipv6Addr = "fe80::7".parse().unwrap();
    let n = build(
        Local::V6 {
            dst: ll,
            ifindex: 4,
        },
        &mut buf,
    );
    assert_eq!(
        parse(&buf[..n]),
        Some(Local::V6 {
            dst: ll,
            ifindex: 4
        }),
        "a link-local address keeps its interface"
    );
    assert_eq!(build(l, &mut [0u8; 8]), 0, "too short");

    // Queued before the option was on: no `ipi_spec_dst`; the echo
    // leaves from the destination.
    let early = v4([127, 0, 0, 2], [0; 4]);
    let n = build(early, &mut buf);
    assert_eq!(parse(&buf[..n]), Some(v4([0; 4], [127, 0, 0, 2])));
}

#[test]
fn unicast_judges_both_ends() {
    let src: SocketAddr = "192.0.2.7:4000".parse().unwrap();
    assert!(unicast(src, None));
    assert!(unicast(src, Some(v4([192, 0, 2, 1], [192, 0, 2, 1]))));
    // `ipi_spec_dst` unknown (queued before the option was on): the class decides.
    assert!(unicast(src, Some(v4([192, 0, 2, 1], [0; 4]))));
    assert!(!unicast(src, Some(v4([255; 4], [0; 4]))));
    assert!(!unicast(src, Some(v4([224, 0, 0, 1], [0; 4]))));
    assert!(!unicast(src, Some(v4([255; 4], [192, 0, 2, 1]))));
    assert!(!unicast(src, Some(v4([192, 0, 2, 255], [192, 0, 2, 1]))));
    assert!(!unicast(src, Some(v4([224, 0, 0, 1], [192, 0, 2, 1]))));
    let all_nodes = Local::V6 {
        dst: "ff02::1".parse().unwrap(),
        ifindex: 1,
    };
    assert!(!unicast("[fe80::2]:4000".parse().unwrap(), Some(all_nodes)));
    let one = Local::V6 {
        dst: "2001:db8::1".parse().unwrap(),
        ifindex: 1,
    };
    assert!(unicast("[2001:db8::2]:4000".parse().unwrap(), Some(one)));
    for bad in [
        "255.255.255.255:4000",
        "224.0.0.1:4000",
        "0.0.0.0:4000",
        "[ff02::1]:4000",
    ] {
        let bad: SocketAddr = bad.parse().unwrap();
        assert!(
            !unicast(bad, Some(v4([192, 0, 2, 1], [192, 0, 2, 1]))),
            "{bad}"
        );
    }
}

#[test]
fn messages_walk_past_an_empty_message_read_one_cut_after_its_data_and_stop_at_a_zero_length() {
    let pktinfo = message(
        libc::IPPROTO_IP,
        libc::IP_PKTINFO,
        &in_pktinfo(1, [10, 0, 0, 1], [10, 0, 0, 1]),
    );
    let want = Some(v4([10, 0, 0, 1], [10, 0, 0, 1]));
    let mut after_empty = message(libc::SOL_SOCKET, libc::SCM_RIGHTS, &[]);
    after_empty.extend_from_slice(&pktinfo);
    assert_eq!(parse(&after_empty), want, "after a message with no data");
    // Control data too short for the padding (`MSG_CTRUNC`) ends right
    // after the message's data.
    let exact = HEADER + size_of::<libc::in_pktinfo>();
    assert_eq!(parse(&pktinfo[..exact]), want, "cut after its data");
    let drops = overflow_count(9);
    assert_eq!(drop_count(&drops[..HEADER + 4]), Some(9));
    // Another socket-level message first: the count is read from its own.
    let mut after_other = message(libc::SOL_SOCKET, libc::SCM_RIGHTS, &[1, 0, 0, 0]);
    after_other.extend_from_slice(&drops);
    assert_eq!(drop_count(&after_other), Some(9));
    // A message claiming no length would never advance.
    assert_eq!(parse(&[0; 64]), None);
    assert_eq!(drop_count(&[0; 64]), None);
}

fn option(socket: &UdpSocket, level: libc::c_int, name: libc::c_int) -> libc::c_int {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` is a live c_int of `len` bytes; the descriptor is
    // `socket`'s for the call.
    #[allow(unsafe_code)]
    let rc = unsafe {
        libc::getsockopt(
            std::os::fd::AsRawFd::as_raw_fd(socket),
            level,
            name,
            (&raw mut value).cast(),
            &mut len,
        )
    };
    assert_eq!(rc, 0, "{}", io::Error::last_os_error());
    value
}

#[test]
fn destinations_are_asked_for_on_wildcard_and_group_sockets_not_on_one_unicast_address() {
    let pktinfo = |s: &UdpSocket| option(s, libc::IPPROTO_IP, libc::IP_PKTINFO);
    for (bound, want) in [
        ("0.0.0.0:0", 1),
        // A socket bound to a group gets its datagrams, none unicast.
        ("224.0.0.1:0", 1),
        ("127.0.0.1:0", 0),
    ] {
        let s = UdpSocket::bind(bound).unwrap();
        enable(&s).unwrap();
        assert_eq!(pktinfo(&s), want, "{bound}");
    }
    let v6 = UdpSocket::bind("[::]:0").expect("IPv6 ([::]); CI machines have it");
    enable(&v6).unwrap();
    assert_eq!(
        (
            option(&v6, libc::IPPROTO_IPV6, libc::IPV6_RECVPKTINFO),
            pktinfo(&v6)
        ),
        (1, 1),
        "both on a dual-stack socket"
    );
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    enable_drop_count(&s).unwrap();
    assert_eq!(option(&s, libc::SOL_SOCKET, libc::SO_RXQ_OVFL), 1);
}

#[test]
fn drops_so_far_is_the_sockets_total_of_datagrams_its_full_queue_dropped() {
    let socket = UdpSocket::bind("127.0.0.1:0").unwrap();
    socket2::SockRef::from(&socket)
        .set_recv_buffer_size(1)
        .unwrap();
    enable_drop_count(&socket).unwrap();
    assert_eq!(drops_so_far(&socket).unwrap(), 0);
    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sent = 100;
    for _ in 0..sent {
        c.send_to(&[0u8; 64], socket.local_addr().unwrap()).unwrap();
    }
    socket.set_nonblocking(true).unwrap();
    let mut queued = 0;
    while socket.recv_from(&mut [0u8; 64]).is_ok() {
        queued += 1;
    }
    assert!(queued < sent, "nothing dropped");
    assert_eq!(drops_so_far(&socket).unwrap(), sent - queued);
    // Counting from now (a socket handed over by a service manager): the
    // next datagram's running count holds nothing new.
    let mut drops = QueueDrops::from_now(&socket);
    c.send_to(b"marker", socket.local_addr().unwrap()).unwrap();
    let mut batch = super::super::mmsg::Batch::new(64);
    assert_eq!(batch.recv(&socket).unwrap(), 1, "the marker");
    assert_eq!(drop_count(batch.control(0)), Some(sent - queued));
    drops.note(batch.control(0));
    assert_eq!(drops.take(), 0, "the drops before were not ours");
}

#[test]
fn parse_ignores_other_messages_of_the_same_level_and_long_ones_of_any_level() {
    // Each as long as a destination message, so only level and type can
    // tell them apart.
    let v4_long = [7u8; size_of::<libc::in_pktinfo>()];
    let v6_long = [7u8; size_of::<libc::in6_pktinfo>()];
    for (level, kind, data) in [
        (libc::IPPROTO_IP, libc::IP_TTL, &v4_long[..]),
        (libc::IPPROTO_IPV6, libc::IPV6_HOPLIMIT, &v6_long[..]),
        (libc::SOL_SOCKET, libc::SCM_RIGHTS, &v6_long[..]),
    ] {
        assert_eq!(
            parse(&message(level, kind, data)),
            None,
            "level {level} type {kind}"
        );
    }
}
