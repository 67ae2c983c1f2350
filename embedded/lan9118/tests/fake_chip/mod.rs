//! A fake LAN9118 register block for host tests: FIFOs, indirect MAC and
//! PHY registers, the interrupt line. Modelled on the data sheet's register
//! descriptions and QEMU's `hw/net/lan9118.c` (the model the firmware meets
//! in CI), written independently. It checks what the driver writes (TX
//! command words, exact RX word counts) and records every frame sent.

#![allow(dead_code)] // each test file uses a different part

use std::collections::{BTreeMap, VecDeque};

use ricochet_lan9118::regs::{self, Reg, Registers};

/// PHY register values at reset (QEMU's: link up, auto-negotiation done).
const PHY_BSR: u32 = 0x782D;
const PHY_ANLPAR: u32 = 0x0F71;

pub(crate) struct FakeChip {
    pub(crate) byte_test: u32,
    /// Reads of `HW_CFG` that still show SRST after a reset (`u32::MAX`: stuck).
    pub(crate) reset_reads: u32,
    pending_reset_reads: u32,
    pub(crate) irq_cfg: u32,
    pub(crate) int_sts: u32,
    pub(crate) int_en: u32,
    pub(crate) fifo_int: u32,
    pub(crate) rx_cfg: u32,
    pub(crate) tx_cfg: u32,
    pub(crate) mac_cr: u32,
    pub(crate) mac_addr: [u8; 6],
    mac_csr_data: u32,
    mii_data: u32,
    pub(crate) phy: BTreeMap<u32, u32>,
    /// What the link partner advertises (PHY register 5 after a reset).
    pub(crate) partner_abilities: u32,
    pub(crate) mii_stuck_busy: bool,
    rx_status: VecDeque<u32>,
    rx_data: VecDeque<u32>,
    /// Words read from an empty RX data FIFO: the driver lost its place.
    pub(crate) rx_underflows: u32,
    pub(crate) rx_drop: u32,
    /// Free bytes reported in `TX_FIFO_INF`.
    pub(crate) tx_free: usize,
    tx: TxParser,
    /// TX status words waiting, and the status bits to add to the next ones.
    tx_status: VecDeque<u32>,
    pub(crate) tx_status_error: bool,
    /// Every frame sent, as the wire would see it (before padding and FCS).
    pub(crate) sent: Vec<Vec<u8>>,
    /// Protocol errors in what the driver wrote to the TX FIFO.
    pub(crate) tx_violations: Vec<String>,
    /// Resets seen.
    pub(crate) resets: u32,
}

#[derive(Default)]
struct TxParser {
    cmd_a: Option<u32>,
    cmd_b: Option<u32>,
    data: Vec<u8>,
}

impl FakeChip {
    /// A chip as it comes out of power-on, with an EEPROM MAC address.
    pub(crate) fn new() -> Self {
        let mut chip = FakeChip {
            byte_test: regs::BYTE_TEST_PATTERN,
            reset_reads: 1,
            pending_reset_reads: 0,
            irq_cfg: 0,
            int_sts: 0,
            int_en: 0,
            fifo_int: 0,
            rx_cfg: 0,
            tx_cfg: 0,
            mac_cr: 0,
            mac_addr: [0x52, 0x54, 0x00, 0x12, 0x34, 0x56],
            mac_csr_data: 0,
            mii_data: 0,
            phy: BTreeMap::new(),
            partner_abilities: PHY_ANLPAR,
            mii_stuck_busy: false,
            rx_status: VecDeque::new(),
            rx_data: VecDeque::new(),
            rx_underflows: 0,
            rx_drop: 0,
            tx_free: 4608,
            tx: TxParser::default(),
            tx_status: VecDeque::new(),
            tx_status_error: false,
            sent: Vec::new(),
            tx_violations: Vec::new(),
            resets: 0,
        };
        chip.reset();
        chip
    }

    fn reset(&mut self) {
        self.irq_cfg &= 0x11;
        self.int_sts = 0;
        self.int_en = 0;
        self.fifo_int = 0x4800_0000;
        self.rx_cfg = 0;
        self.tx_cfg = 0;
        self.mac_cr = regs::mac_cr::PRMS;
        self.phy = BTreeMap::from([
            (regs::phy::BCR, 0x3000),
            (1, PHY_BSR),
            (regs::phy::ANAR, 0x01E1),
            (regs::phy::ANLPAR, self.partner_abilities),
        ]);
        self.rx_status.clear();
        self.rx_data.clear();
        self.tx = TxParser::default();
        self.tx_status.clear();
    }

    /// Queues a received frame (no FCS: the fake appends one) with a good status.
    pub(crate) fn receive(&mut self, frame: &[u8]) {
        self.receive_with_status(frame, frame.len() + 4, 0);
    }

    /// Queues a frame with the status word's length field set to
    /// `status_len` and extra status bits `flags`. The data FIFO holds what
    /// the real chip would: `ceil(status_len / 4)` words of the frame, its
    /// FCS and padding (zero bytes if `status_len` claims more than `frame`).
    pub(crate) fn receive_with_status(&mut self, frame: &[u8], status_len: usize, flags: u32) {
        let mut bytes = frame.to_vec();
        bytes.extend_from_slice(&[0xFC, 0xFC, 0xFC, 0xFC]); // a stand-in FCS
        bytes.resize(status_len.div_ceil(4) * 4, 0);
        for word in bytes.chunks_exact(4) {
            self.rx_data
                .push_back(u32::from_le_bytes(word.try_into().unwrap()));
        }
        self.rx_status
            .push_back(((status_len as u32 & 0x3FFF) << 16) | flags);
        if self.rx_status.len() as u32 > self.fifo_int & 0xFF {
            self.int_sts |= regs::int::RSFL;
        }
    }

    /// Whether the interrupt line is asserted (active high, as configured).
    pub(crate) fn irq_line(&self) -> bool {
        self.irq_cfg & (1 << 8) != 0 && self.int_sts & self.int_en != 0
    }

    pub(crate) fn rx_words_waiting(&self) -> usize {
        self.rx_data.len()
    }

    fn mac_read(&mut self, index: u32) -> u32 {
        let m = self.mac_addr;
        match index {
            regs::mac::CR => self.mac_cr,
            regs::mac::ADDRH => u32::from_le_bytes([m[4], m[5], 0, 0]),
            regs::mac::ADDRL => u32::from_le_bytes([m[0], m[1], m[2], m[3]]),
            regs::mac::MII_ACC => u32::from(self.mii_stuck_busy),
            regs::mac::MII_DATA => self.mii_data,
            other => panic!("read of MAC register {other} the driver has no business with"),
        }
    }

    fn mac_write(&mut self, index: u32, value: u32) {
        match index {
            regs::mac::CR => self.mac_cr = value,
            regs::mac::ADDRH => {
                let [a, b, _, _] = value.to_le_bytes();
                self.mac_addr[4] = a;
                self.mac_addr[5] = b;
            }
            regs::mac::ADDRL => self.mac_addr[..4].copy_from_slice(&value.to_le_bytes()),
            regs::mac::MII_ACC => {
                assert_eq!(value & regs::mii::BUSY, 1, "MII access without BUSY");
                assert_eq!((value >> 11) & 0x1F, 1, "the internal PHY is at address 1");
                let reg = (value >> 6) & 0x1F;
                if value & regs::mii::WRITE != 0 {
                    self.phy.insert(reg, self.mii_data & 0xFFFF);
                } else {
                    self.mii_data = *self.phy.get(&reg).unwrap_or(&0);
                }
            }
            regs::mac::MII_DATA => self.mii_data = value & 0xFFFF,
            other => panic!("write of MAC register {other} the driver has no business with"),
        }
    }

    fn tx_push(&mut self, word: u32) {
        if self.tx.cmd_a.is_none() {
            self.tx.cmd_a = Some(word);
            return;
        }
        let a = self.tx.cmd_a.unwrap();
        if self.tx.cmd_b.is_none() {
            self.tx.cmd_b = Some(word);
            let (first, last) = (a & (1 << 13) != 0, a & (1 << 12) != 0);
            if !(first && last) {
                self.tx_violations
                    .push(format!("cmd A {a:#x}: one-segment frames need FS and LS"));
            }
            if (a >> 16) & 0x1F != 0 || (a >> 24) & 3 != 0 {
                self.tx_violations
                    .push(format!("cmd A {a:#x}: unexpected offset or alignment"));
            }
            if a & 0x7FF != word & 0x7FF {
                self.tx_violations.push(format!(
                    "buffer size {} != packet length {}",
                    a & 0x7FF,
                    word & 0x7FF
                ));
            }
            return;
        }
        let size = (a & 0x7FF) as usize;
        let take = (size - self.tx.data.len()).min(4);
        self.tx.data.extend_from_slice(&word.to_le_bytes()[..take]);
        if take < 4 && word.to_le_bytes()[take..].iter().any(|&b| b != 0) {
            self.tx_violations.push(format!(
                "padding bytes of the last word are not zero: {word:#x}"
            ));
        }
        if self.tx.data.len() == size {
            let b = self.tx.cmd_b.unwrap();
            let mut status = b & 0xFFFF_0000;
            if self.tx_status_error {
                status |= regs::TX_STATUS_ERROR;
            }
            self.tx_status.push_back(status);
            self.sent.push(std::mem::take(&mut self.tx.data));
            self.tx = TxParser::default();
        }
    }
}

impl Registers for FakeChip {
    fn read(&mut self, reg: Reg) -> u32 {
        match reg {
            regs::RX_DATA_FIFO => self.rx_data.pop_front().unwrap_or_else(|| {
                self.rx_underflows += 1;
                0
            }),
            regs::RX_STATUS_FIFO => self.rx_status.pop_front().unwrap_or(0),
            regs::TX_STATUS_FIFO => self.tx_status.pop_front().unwrap_or(0),
            regs::ID_REV => 0x0118_0001,
            regs::IRQ_CFG => self.irq_cfg,
            regs::INT_STS => self.int_sts,
            regs::INT_EN => self.int_en,
            regs::BYTE_TEST => self.byte_test,
            regs::FIFO_INT => self.fifo_int,
            regs::RX_CFG => self.rx_cfg,
            regs::TX_CFG => self.tx_cfg,
            regs::HW_CFG => {
                if self.pending_reset_reads > 0 {
                    self.pending_reset_reads = self.pending_reset_reads.saturating_sub(1);
                    regs::HW_CFG_SRST
                } else {
                    0x0005_0004
                }
            }
            regs::RX_FIFO_INF => {
                ((self.rx_status.len() as u32) << 16) | (self.rx_data.len() as u32 * 4)
            }
            regs::TX_FIFO_INF => ((self.tx_status.len() as u32) << 16) | self.tx_free as u32,
            regs::PMT_CTRL => regs::PMT_CTRL_READY,
            regs::RX_DROP => std::mem::take(&mut self.rx_drop),
            regs::MAC_CSR_CMD => 0, // never busy
            regs::MAC_CSR_DATA => self.mac_csr_data,
            other => panic!(
                "read of register {:#x} the driver has no business with",
                other.offset()
            ),
        }
    }

    fn write(&mut self, reg: Reg, value: u32) {
        match reg {
            regs::TX_DATA_FIFO => self.tx_push(value),
            regs::IRQ_CFG => self.irq_cfg = value,
            regs::INT_STS => self.int_sts &= !value,
            regs::INT_EN => self.int_en = value,
            regs::FIFO_INT => self.fifo_int = value,
            regs::RX_CFG => self.rx_cfg = value,
            regs::TX_CFG => self.tx_cfg = value,
            regs::HW_CFG => {
                if value & regs::HW_CFG_SRST != 0 {
                    self.resets += 1;
                    self.reset();
                    self.pending_reset_reads = self.reset_reads;
                }
            }
            regs::MAC_CSR_DATA => self.mac_csr_data = value,
            regs::MAC_CSR_CMD => {
                assert_ne!(
                    value & regs::mac_csr::BUSY,
                    0,
                    "MAC CSR command without BUSY"
                );
                let index = value & 0xFF;
                if value & regs::mac_csr::READ != 0 {
                    self.mac_csr_data = self.mac_read(index);
                } else {
                    let data = self.mac_csr_data;
                    self.mac_write(index, data);
                }
            }
            other => panic!(
                "write of register {:#x} the driver has no business with",
                other.offset()
            ),
        }
    }
}
