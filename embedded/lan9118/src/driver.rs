//! The driver: bring-up, reading and writing frames through the FIFOs, the
//! wake-up arming, and its counters.

use core::fmt;

use smoltcp::wire::EthernetAddress;

use crate::regs::{self, Registers, int, mac, mac_cr, mac_csr, mii, phy, rx_status, tx_cmd_a};

/// Largest frame in either direction: 14-byte header + 1500 payload, no FCS
/// (the MAC adds it on transmit and it is stripped on receive).
pub const MAX_FRAME: usize = 1514;
/// Smallest frame accepted: an Ethernet header.
const MIN_FRAME: usize = 14;
/// The FCS the controller leaves at the end of every received frame.
const FCS: usize = 4;
/// Receive buffer: the largest frame with its FCS, in whole words.
const RX_BUF_LEN: usize = (MAX_FRAME + FCS).div_ceil(4) * 4;
/// TX command words written before each frame.
const TX_CMD_BYTES: usize = 8;
/// Frames taken from the RX FIFO in one `receive` call before giving up
/// (only reached when a burst of bad frames is being dropped).
const MAX_DROPS_PER_RECEIVE: u32 = 32;
/// Spin bound for the reset and indirect-register handshakes (the real chip
/// needs microseconds; QEMU answers at once).
const SPINS: u32 = 100_000;

/// Which bring-up step did not finish.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Step {
    /// `HW_CFG.SRST` did not clear.
    Reset,
    /// `PMT_CTRL.READY` did not come up after the reset.
    Ready,
    /// An indirect MAC register access stayed busy.
    MacCsr,
    /// A PHY (MII) access stayed busy.
    Mii,
}

/// Why [`Lan9118::init`] failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum InitError {
    /// `BYTE_TEST` did not read 0x87654321: no controller at this address,
    /// or the bus is misconfigured (width, byte order). Check the base
    /// address for the board (MPS2 AN385/AN386: 0x4020_0000, AN500:
    /// 0xA000_0000, AN505 in the secure state: 0x5200_0000).
    NotResponding {
        /// What `BYTE_TEST` read instead.
        byte_test: u32,
    },
    /// A handshake with the controller timed out.
    Timeout(Step),
}

impl fmt::Display for InitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InitError::NotResponding { byte_test } => write!(
                f,
                "no LAN9118 answers at this address (BYTE_TEST read {byte_test:#010x}, expected 0x87654321): check the base address and bus setup"
            ),
            InitError::Timeout(step) => write!(
                f,
                "the LAN9118 did not finish {step:?} in time: check that the controller is powered and clocked"
            ),
        }
    }
}

/// Counters kept by the driver (all wrap).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Stats {
    /// Frames handed to the stack.
    pub rx_frames: u32,
    /// Frames whose RX status reported an error (CRC, runt, too long, ...):
    /// read out and dropped.
    pub rx_errors: u32,
    /// Frames with an impossible length (shorter than a header, longer than
    /// [`MAX_FRAME`]): read out and dropped.
    pub rx_bad_length: u32,
    /// Frames the controller itself dropped for lack of FIFO space
    /// (`RX_DROP`, read whenever the driver arms the wake-up).
    pub rx_overruns: u32,
    /// Frames written to the TX FIFO.
    pub tx_frames: u32,
    /// Frames whose TX status reported an error.
    pub tx_errors: u32,
    /// Times a transmit was refused for lack of TX FIFO space (smoltcp
    /// retried them), or a frame was refused for its length.
    pub tx_refused: u32,
}

impl Stats {
    /// All error counters added up: changes whenever one of them does.
    pub fn errors(&self) -> u32 {
        self.rx_errors
            .wrapping_add(self.rx_bad_length)
            .wrapping_add(self.rx_overruns)
            .wrapping_add(self.tx_errors)
    }
}

/// Word-aligned receive buffer.
#[repr(C, align(4))]
pub(crate) struct RxBuf(pub(crate) [u8; RX_BUF_LEN]);

/// The controller, its frame buffers and counters.
///
/// Build it with the `const` [`Lan9118::new`] (so it can live in a static
/// with its 3 KiB of buffers in `.bss`), then bring the hardware up with
/// [`Lan9118::init`].
pub struct Lan9118<R> {
    pub(crate) rx: RxBuf,
    pub(crate) io: Io<R>,
    mac: EthernetAddress,
}

/// Everything but the receive buffer: the registers, the transmit buffer
/// and the counters. Split off so that smoltcp's RX token (borrowing the
/// receive buffer) and TX token (borrowing this) can live at once.
pub(crate) struct Io<R> {
    regs: R,
    pub(crate) tx: [u8; MAX_FRAME],
    pub(crate) stats: Stats,
    tx_tag: u16,
    /// A transmit was refused since the last [`Lan9118::arm_wakeup`]: the
    /// board must poll again rather than sleep.
    tx_blocked: bool,
}

impl<R: Registers> Lan9118<R> {
    /// The driver around a register window; touches no hardware.
    pub const fn new(regs: R) -> Self {
        Lan9118 {
            rx: RxBuf([0; RX_BUF_LEN]),
            io: Io {
                regs,
                tx: [0; MAX_FRAME],
                stats: Stats {
                    rx_frames: 0,
                    rx_errors: 0,
                    rx_bad_length: 0,
                    rx_overruns: 0,
                    tx_frames: 0,
                    tx_errors: 0,
                    tx_refused: 0,
                },
                tx_tag: 0,
                tx_blocked: false,
            },
            mac: EthernetAddress([0; 6]),
        }
    }

    /// Resets the controller and brings it up: interrupt pin active-high
    /// push-pull with every source masked, PHY auto-negotiation restarted
    /// with all speeds advertised, MAC address from the controller's EEPROM
    /// (QEMU: the `-nic` address) or `fallback` if that is not a unicast
    /// address, receiver (own address, broadcast, all multicast) and
    /// transmitter on. Full duplex when both link ends advertise it.
    ///
    /// Afterwards route the controller's IRQ to [`crate::on_interrupt`] and
    /// unmask it in the NVIC; it stays masked in the controller until the
    /// first [`arm_wakeup`](Self::arm_wakeup).
    pub fn init(&mut self, fallback: EthernetAddress) -> Result<(), InitError> {
        let byte_test = self.io.regs.read(regs::BYTE_TEST);
        if byte_test != regs::BYTE_TEST_PATTERN {
            return Err(InitError::NotResponding { byte_test });
        }
        self.io.regs.write(regs::HW_CFG, regs::HW_CFG_SRST);
        self.io.spin_until(Step::Reset, |r| {
            r.read(regs::HW_CFG) & regs::HW_CFG_SRST == 0
        })?;
        self.io.spin_until(Step::Ready, |r| {
            r.read(regs::PMT_CTRL) & regs::PMT_CTRL_READY != 0
        })?;

        self.io.regs.write(regs::INT_EN, 0);
        self.io.regs.write(regs::INT_STS, int::ALL);
        self.io
            .regs
            .write(regs::IRQ_CFG, regs::IRQ_CFG_EN_HIGH_PUSH_PULL);
        self.io
            .regs
            .write(regs::FIFO_INT, regs::FIFO_INT_RX_ONE_FRAME);

        self.io.mii_write(phy::ANAR, phy::ANAR_ALL_SPEEDS)?;
        self.io.mii_write(phy::BCR, phy::BCR_AUTONEG_RESTART)?;
        let partner = self.io.mii_read(phy::ANLPAR)?;
        let full_duplex = phy::ANAR_ALL_SPEEDS & partner & phy::FULL_DUPLEX != 0;

        let low = self.io.mac_read(mac::ADDRL)?.to_le_bytes();
        let high = self.io.mac_read(mac::ADDRH)?.to_le_bytes();
        let eeprom = EthernetAddress([low[0], low[1], low[2], low[3], high[0], high[1]]);
        self.mac = if eeprom.is_unicast() && eeprom.0 != [0; 6] {
            eeprom
        } else {
            let [a, b, c, d, e, f] = fallback.0;
            self.io
                .mac_write(mac::ADDRL, u32::from_le_bytes([a, b, c, d]))?;
            self.io
                .mac_write(mac::ADDRH, u32::from_le_bytes([e, f, 0, 0]))?;
            fallback
        };

        // Own address, broadcast and all multicast; PRMS (set at reset) off.
        let mut cr = mac_cr::TXEN | mac_cr::RXEN | mac_cr::MCPAS;
        if full_duplex {
            cr |= mac_cr::FDPX;
        }
        debug_assert_eq!(cr & mac_cr::PRMS, 0);
        self.io.mac_write(mac::CR, cr)?;
        self.io
            .regs
            .write(regs::TX_CFG, regs::tx_cfg::TX_ON | regs::tx_cfg::TXSAO);
        self.io.regs.write(regs::RX_CFG, 0);
        Ok(())
    }

    /// The MAC address in use (after [`init`](Self::init)).
    pub fn mac_address(&self) -> EthernetAddress {
        self.mac
    }

    /// The chip id and revision (`ID_REV`; QEMU: 0x0118_0001).
    pub fn id_rev(&mut self) -> u32 {
        self.io.regs.read(regs::ID_REV)
    }

    /// The register window (for a fake in tests, or a board's own checks).
    pub fn registers(&mut self) -> &mut R {
        &mut self.io.regs
    }

    /// Driver counters.
    pub fn stats(&self) -> Stats {
        self.io.stats
    }

    /// Prepares to sleep. Returns `true` if there is work now (a frame is
    /// waiting, or a transmit was refused since the last call and must be
    /// retried); otherwise enables the RX interrupt, so that the next frame
    /// wakes the core, and returns `false`.
    ///
    /// Call with interrupts masked, right before `wfi`: a frame that arrives
    /// after the check raises the interrupt, which stays pending and makes
    /// `wfi` return at once. (The RX level interrupt is edge-like in QEMU:
    /// it is set when a frame arrives, not while frames wait, which is why
    /// this checks the FIFO itself.)
    pub fn arm_wakeup(&mut self) -> bool {
        self.io.arm_wakeup()
    }
}

impl<R: Registers> Io<R> {
    /// See [`Lan9118::arm_wakeup`].
    fn arm_wakeup(&mut self) -> bool {
        let dropped = self.regs.read(regs::RX_DROP);
        self.stats.rx_overruns = self.stats.rx_overruns.wrapping_add(dropped);
        if core::mem::take(&mut self.tx_blocked) {
            return true;
        }
        self.regs.write(regs::INT_STS, int::RSFL);
        if self.rx_waiting() {
            return true;
        }
        self.regs.write(regs::INT_EN, int::RSFL);
        false
    }

    /// Whether at least one frame (good or bad) is waiting in the RX FIFO.
    pub(crate) fn rx_waiting(&mut self) -> bool {
        regs::rx_status_used(self.regs.read(regs::RX_FIFO_INF)) != 0
    }

    /// Reads the next good frame into the receive buffer and returns its
    /// length (FCS excluded), or `None` if none is waiting. Frames with an
    /// error or an impossible length are read out, dropped and counted.
    pub(crate) fn read_frame(&mut self, rx: &mut RxBuf) -> Option<usize> {
        for _ in 0..MAX_DROPS_PER_RECEIVE {
            if !self.rx_waiting() {
                return None;
            }
            let status = self.regs.read(regs::RX_STATUS_FIFO);
            let total = rx_status::length(status);
            let words = total.div_ceil(4);
            let len = total.wrapping_sub(FCS);
            if status & rx_status::ERROR != 0 {
                self.discard(words);
                self.stats.rx_errors = self.stats.rx_errors.wrapping_add(1);
                continue;
            }
            if !(MIN_FRAME..=MAX_FRAME).contains(&len) {
                self.discard(words);
                self.stats.rx_bad_length = self.stats.rx_bad_length.wrapping_add(1);
                continue;
            }
            // `words * 4 <= RX_BUF_LEN` because `len <= MAX_FRAME`.
            for chunk in rx.0[..words * 4].chunks_exact_mut(4) {
                chunk.copy_from_slice(&self.regs.read(regs::RX_DATA_FIFO).to_le_bytes());
            }
            self.stats.rx_frames = self.stats.rx_frames.wrapping_add(1);
            return Some(len);
        }
        None
    }

    /// Whether the TX data FIFO can take a frame of up to `len` bytes now.
    /// Counts and remembers a refusal (see [`arm_wakeup`](Self::arm_wakeup)).
    pub(crate) fn tx_ready(&mut self, len: usize) -> bool {
        let free = regs::tx_data_free(self.regs.read(regs::TX_FIFO_INF));
        if free >= len.div_ceil(4) * 4 + TX_CMD_BYTES {
            return true;
        }
        self.tx_blocked = true;
        self.stats.tx_refused = self.stats.tx_refused.wrapping_add(1);
        false
    }

    /// Writes `len` bytes of the transmit buffer as one frame, then collects
    /// the TX status words. Lengths outside a frame's range are refused and
    /// counted (smoltcp never builds them).
    pub(crate) fn send_frame(&mut self, len: usize) {
        let Some(frame) = self.tx.get(..len).filter(|_| len >= MIN_FRAME) else {
            self.stats.tx_refused = self.stats.tx_refused.wrapping_add(1);
            return;
        };
        // `len <= MAX_FRAME < 2048`: fits the 11-bit size fields.
        let size = len as u32;
        self.regs.write(
            regs::TX_DATA_FIFO,
            tx_cmd_a::FIRST_SEGMENT | tx_cmd_a::LAST_SEGMENT | size,
        );
        self.regs
            .write(regs::TX_DATA_FIFO, regs::tx_cmd_b(self.tx_tag, size));
        for chunk in frame.chunks(4) {
            let mut word = [0u8; 4];
            word[..chunk.len()].copy_from_slice(chunk);
            self.regs
                .write(regs::TX_DATA_FIFO, u32::from_le_bytes(word));
        }
        self.tx_tag = self.tx_tag.wrapping_add(1);
        self.stats.tx_frames = self.stats.tx_frames.wrapping_add(1);
        // At most one status per frame sent; bounded by the FIFO's size.
        for _ in 0..256 {
            if regs::tx_status_used(self.regs.read(regs::TX_FIFO_INF)) == 0 {
                break;
            }
            if self.regs.read(regs::TX_STATUS_FIFO) & regs::TX_STATUS_ERROR != 0 {
                self.stats.tx_errors = self.stats.tx_errors.wrapping_add(1);
            }
        }
    }

    /// Reads and drops `words` words of the current frame.
    fn discard(&mut self, words: usize) {
        for _ in 0..words {
            let _ = self.regs.read(regs::RX_DATA_FIFO);
        }
    }

    pub(crate) fn spin_until(
        &mut self,
        step: Step,
        done: impl Fn(&mut R) -> bool,
    ) -> Result<(), InitError> {
        for _ in 0..SPINS {
            if done(&mut self.regs) {
                return Ok(());
            }
        }
        Err(InitError::Timeout(step))
    }

    pub(crate) fn mac_read(&mut self, index: u32) -> Result<u32, InitError> {
        self.regs
            .write(regs::MAC_CSR_CMD, mac_csr::BUSY | mac_csr::READ | index);
        self.spin_until(Step::MacCsr, |r| {
            r.read(regs::MAC_CSR_CMD) & mac_csr::BUSY == 0
        })?;
        Ok(self.regs.read(regs::MAC_CSR_DATA))
    }

    pub(crate) fn mac_write(&mut self, index: u32, value: u32) -> Result<(), InitError> {
        self.regs.write(regs::MAC_CSR_DATA, value);
        self.regs.write(regs::MAC_CSR_CMD, mac_csr::BUSY | index);
        self.spin_until(Step::MacCsr, |r| {
            r.read(regs::MAC_CSR_CMD) & mac_csr::BUSY == 0
        })
    }

    fn mii_wait(&mut self) -> Result<(), InitError> {
        for _ in 0..SPINS {
            if self.mac_read(mac::MII_ACC)? & mii::BUSY == 0 {
                return Ok(());
            }
        }
        Err(InitError::Timeout(Step::Mii))
    }

    pub(crate) fn mii_read(&mut self, reg: u32) -> Result<u32, InitError> {
        self.mii_wait()?;
        self.mac_write(mac::MII_ACC, mii::access(reg, false))?;
        self.mii_wait()?;
        Ok(self.mac_read(mac::MII_DATA)? & 0xFFFF)
    }

    pub(crate) fn mii_write(&mut self, reg: u32, value: u32) -> Result<(), InitError> {
        self.mii_wait()?;
        self.mac_write(mac::MII_DATA, value & 0xFFFF)?;
        self.mac_write(mac::MII_ACC, mii::access(reg, true))?;
        self.mii_wait()
    }
}
