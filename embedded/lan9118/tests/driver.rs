//! The driver against a fake register block: bring-up, RX and TX framing
//! through the FIFOs, dropped frames, a full TX FIFO, and the wake-up
//! arming. `tests/fake_chip` is the fake.

mod fake_chip;

use fake_chip::FakeChip;
use ricochet_lan9118::regs::{self, mac_cr};
use ricochet_lan9118::{InitError, Lan9118, MAX_FRAME, Registers, Step, on_interrupt};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{Device, RxToken, TxToken};
use smoltcp::time::Instant;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, HardwareAddress, IpAddress, IpCidr, Ipv4Address,
};

const FALLBACK: EthernetAddress = EthernetAddress([0x02, 0x00, 0x00, 0x00, 0x00, 0x01]);

fn up() -> Box<Lan9118<FakeChip>> {
    let mut eth = Box::new(Lan9118::new(FakeChip::new()));
    eth.init(FALLBACK).expect("init on a healthy fake");
    eth
}

/// A frame of `len` bytes whose content depends on `len` and the position.
fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + len) as u8).collect()
}

fn take_frame(eth: &mut Lan9118<FakeChip>) -> Option<Vec<u8>> {
    let (rx, _tx) = eth.receive(Instant::ZERO)?;
    Some(rx.consume(|f| f.to_vec()))
}

fn send(eth: &mut Lan9118<FakeChip>, bytes: &[u8]) {
    let tx = eth.transmit(Instant::ZERO).expect("a transmit token");
    tx.consume(bytes.len(), |buf| buf.copy_from_slice(bytes));
}

#[test]
fn fresh_chip_after_init_has_rx_tx_on_promiscuous_off_and_the_eeprom_mac() {
    let eth = &mut *up();
    assert_eq!(eth.mac_address().0, [0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
    let chip = eth.registers();
    assert_eq!(chip.resets, 1, "init soft-resets the controller once");
    let cr = chip.mac_cr;
    assert_ne!(cr & mac_cr::RXEN, 0, "receiver on");
    assert_ne!(cr & mac_cr::TXEN, 0, "transmitter on");
    assert_eq!(
        cr & mac_cr::PRMS,
        0,
        "promiscuous mode (the reset value) off"
    );
    assert_ne!(
        cr & mac_cr::MCPAS,
        0,
        "multicast passes (IPv6 neighbour discovery)"
    );
    assert_ne!(cr & mac_cr::FDPX, 0, "full duplex: both ends advertise it");
    assert_eq!(chip.tx_cfg, regs::tx_cfg::TX_ON | regs::tx_cfg::TXSAO);
    assert_eq!(chip.rx_cfg, 0, "no RX data offset, 4-byte end alignment");
    assert_eq!(chip.irq_cfg, regs::IRQ_CFG_EN_HIGH_PUSH_PULL);
    assert_eq!(chip.int_en, 0, "interrupt masked until arm_wakeup");
    assert_eq!(chip.phy[&regs::phy::ANAR], regs::phy::ANAR_ALL_SPEEDS);
    assert_eq!(chip.phy[&regs::phy::BCR], regs::phy::BCR_AUTONEG_RESTART);
}

#[test]
fn half_duplex_partner_leaves_the_mac_in_half_duplex() {
    let mut chip = FakeChip::new();
    chip.partner_abilities = 0x00A1; // 100BASE-TX and 10BASE-T, half duplex only
    let mut eth = Box::new(Lan9118::new(chip));
    eth.init(FALLBACK).unwrap();
    let cr = eth.registers().mac_cr;
    assert_eq!(cr & mac_cr::FDPX, 0);
    assert_ne!(cr & mac_cr::RXEN, 0);
}

#[test]
fn blank_eeprom_gets_the_fallback_mac_programmed() {
    let mut chip = FakeChip::new();
    chip.mac_addr = [0xFF; 6];
    let mut eth = Box::new(Lan9118::new(chip));
    eth.init(FALLBACK).unwrap();
    assert_eq!(eth.mac_address(), FALLBACK);
    assert_eq!(
        eth.registers().mac_addr,
        FALLBACK.0,
        "written to ADDRL/ADDRH"
    );
}

#[test]
fn no_chip_at_the_address_is_reported_with_what_byte_test_read() {
    let mut chip = FakeChip::new();
    chip.byte_test = 0xFFFF_FFFF;
    let mut eth = Box::new(Lan9118::new(chip));
    let err = eth.init(FALLBACK).unwrap_err();
    assert_eq!(
        err,
        InitError::NotResponding {
            byte_test: 0xFFFF_FFFF
        }
    );
    let text = err.to_string();
    assert!(
        text.contains("0xffffffff") && text.contains("base address"),
        "{text}"
    );
}

#[test]
fn reset_that_never_finishes_times_out_naming_the_step() {
    let mut chip = FakeChip::new();
    chip.reset_reads = u32::MAX;
    let mut eth = Box::new(Lan9118::new(chip));
    assert_eq!(eth.init(FALLBACK), Err(InitError::Timeout(Step::Reset)));
}

#[test]
fn phy_that_stays_busy_times_out_naming_the_step() {
    let mut chip = FakeChip::new();
    chip.mii_stuck_busy = true;
    let mut eth = Box::new(Lan9118::new(chip));
    assert_eq!(eth.init(FALLBACK), Err(InitError::Timeout(Step::Mii)));
}

#[test]
fn received_frames_of_every_length_arrive_whole_and_in_order() {
    let eth = &mut *up();
    for len in 14..=MAX_FRAME {
        eth.registers().receive(&frame(len));
        // Two back to back: the second starts right after the first's words.
        let reversed: Vec<u8> = frame(len).into_iter().rev().collect();
        eth.registers().receive(&reversed);
        assert_eq!(
            take_frame(eth).as_deref(),
            Some(&frame(len)[..]),
            "len {len}"
        );
        assert_eq!(take_frame(eth), Some(reversed), "second frame of len {len}");
    }
    assert_eq!(take_frame(eth), None);
    let chip = eth.registers();
    assert_eq!(chip.rx_underflows, 0, "never read past a frame");
    assert_eq!(chip.rx_words_waiting(), 0, "never left a word behind");
    assert_eq!(eth.stats().rx_frames, 2 * (MAX_FRAME as u32 - 13));
    assert_eq!(eth.stats().errors(), 0);
}

#[test]
fn frame_with_an_error_status_is_read_out_counted_and_the_next_arrives_intact() {
    let eth = &mut *up();
    eth.registers()
        .receive_with_status(&frame(100), 104, regs::rx_status::ERROR | 0x2);
    eth.registers().receive(&frame(61));
    assert_eq!(take_frame(eth).as_deref(), Some(&frame(61)[..]));
    assert_eq!(eth.stats().rx_errors, 1);
    assert_eq!(eth.stats().rx_frames, 1);
    assert_eq!(eth.registers().rx_underflows, 0);
}

#[test]
fn frames_with_impossible_lengths_are_read_out_counted_and_the_next_arrives_intact() {
    let eth = &mut *up();
    // Longer than any frame the MTU allows (its words are really there).
    eth.registers().receive_with_status(&frame(1600), 1604, 0);
    // Shorter than an Ethernet header, and a zero length.
    eth.registers().receive_with_status(&frame(8), 12, 0);
    eth.registers().receive_with_status(&[], 0, 0);
    eth.registers().receive(&frame(1514));
    assert_eq!(take_frame(eth).as_deref(), Some(&frame(1514)[..]));
    assert_eq!(eth.stats().rx_bad_length, 3);
    assert_eq!(eth.registers().rx_underflows, 0);
    assert_eq!(eth.registers().rx_words_waiting(), 0);
}

#[test]
fn transmitted_frames_of_every_length_carry_both_commands_and_zero_padding() {
    let eth = &mut *up();
    for len in 14..=MAX_FRAME {
        send(eth, &frame(len));
    }
    let chip = eth.registers();
    assert!(
        chip.tx_violations.is_empty(),
        "{:?}",
        &chip.tx_violations[..1]
    );
    assert_eq!(chip.sent.len(), MAX_FRAME - 13);
    for (i, sent) in chip.sent.iter().enumerate() {
        assert_eq!(sent, &frame(i + 14), "frame of len {}", i + 14);
    }
    assert_eq!(eth.stats().tx_frames, MAX_FRAME as u32 - 13);
}

#[test]
fn tx_status_errors_are_counted_and_the_status_fifo_is_drained() {
    let eth = &mut *up();
    eth.registers().tx_status_error = true;
    send(eth, &frame(60));
    send(eth, &frame(60));
    assert_eq!(eth.stats().tx_errors, 2);
    let inf = eth.registers().read(regs::TX_FIFO_INF);
    assert_eq!(regs::tx_status_used(inf), 0);
}

#[test]
fn full_tx_fifo_refuses_tokens_keeps_the_frame_and_keeps_the_board_awake() {
    let eth = &mut *up();
    eth.registers().receive(&frame(60));
    eth.registers().tx_free = 1000; // less than the largest frame + commands
    assert!(eth.transmit(Instant::ZERO).is_none());
    assert!(
        eth.receive(Instant::ZERO).is_none(),
        "no RX token without a TX slot"
    );
    assert_eq!(
        eth.registers().rx_words_waiting(),
        16,
        "the frame stays queued"
    );
    assert!(eth.stats().tx_refused >= 2);
    assert!(
        eth.arm_wakeup(),
        "a refused transmit must be retried, not slept on"
    );
    eth.registers().tx_free = 4608;
    assert_eq!(take_frame(eth).as_deref(), Some(&frame(60)[..]));
}

#[test]
fn arm_wakeup_with_nothing_waiting_enables_the_interrupt_and_a_frame_raises_the_line() {
    let eth = &mut *up();
    assert!(!eth.arm_wakeup());
    assert!(!eth.registers().irq_line());
    eth.registers().receive(&frame(60));
    assert!(eth.registers().irq_line(), "a new frame raises the line");
    on_interrupt(eth.registers());
    assert!(!eth.registers().irq_line(), "the handler drops the line");
    // Back in thread mode: the frame is seen, and the next arm finds nothing.
    assert!(eth.arm_wakeup(), "the waiting frame is work");
    assert!(take_frame(eth).is_some());
    assert!(!eth.arm_wakeup());
    assert!(!eth.registers().irq_line(), "the status was acknowledged");
}

#[test]
fn arm_wakeup_with_a_frame_already_waiting_returns_true_and_leaves_the_interrupt_masked() {
    let eth = &mut *up();
    eth.registers().receive(&frame(60));
    on_interrupt(eth.registers());
    assert!(eth.arm_wakeup());
    assert_eq!(eth.registers().int_en, 0);
}

#[test]
fn frames_the_controller_dropped_are_added_to_overruns() {
    let eth = &mut *up();
    eth.registers().rx_drop = 3;
    eth.arm_wakeup();
    eth.registers().rx_drop = 2;
    eth.arm_wakeup();
    eth.arm_wakeup();
    assert_eq!(eth.stats().rx_overruns, 5);
    assert_eq!(eth.stats().errors(), 5);
}

#[test]
fn smoltcp_interface_answers_arp_through_the_driver() {
    let eth = &mut *up();
    let mac = eth.mac_address();
    let ip = Ipv4Address::new(10, 0, 2, 15);
    let mut iface = Interface::new(
        Config::new(HardwareAddress::Ethernet(mac)),
        eth,
        Instant::ZERO,
    );
    iface.update_ip_addrs(|a| a.push(IpCidr::new(IpAddress::Ipv4(ip), 24)).unwrap());

    let peer_mac = EthernetAddress([0x52, 0x55, 0x0A, 0x00, 0x02, 0x02]);
    let peer_ip = Ipv4Address::new(10, 0, 2, 2);
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: peer_mac,
        source_protocol_addr: peer_ip,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: ip,
    };
    let eth_repr = EthernetRepr {
        src_addr: peer_mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    };
    let mut bytes = vec![0; eth_repr.buffer_len() + arp.buffer_len()];
    let mut f = EthernetFrame::new_unchecked(&mut bytes[..]);
    eth_repr.emit(&mut f);
    arp.emit(&mut ArpPacket::new_unchecked(f.payload_mut()));
    eth.registers().receive(&bytes);

    let mut storage: [smoltcp::iface::SocketStorage<'_>; 0] = [];
    let mut sockets = SocketSet::new(&mut storage[..]);
    iface.poll(Instant::from_millis(1), eth, &mut sockets);

    let chip = eth.registers();
    assert_eq!(chip.sent.len(), 1, "one ARP reply");
    let reply = EthernetFrame::new_checked(&chip.sent[0][..]).unwrap();
    assert_eq!(reply.dst_addr(), peer_mac);
    assert_eq!(reply.src_addr(), mac);
    let arp = ArpRepr::parse(&ArpPacket::new_checked(reply.payload()).unwrap()).unwrap();
    assert!(matches!(
        arp,
        ArpRepr::EthernetIpv4 { operation: ArpOperation::Reply, source_protocol_addr, .. }
            if source_protocol_addr == ip
    ));
}
