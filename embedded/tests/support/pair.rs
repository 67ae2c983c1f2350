//! Two smoltcp devices joined by in-memory queues of Ethernet frames: what
//! one transmits, the other receives, in order. Like smoltcp's `Loopback`,
//! but two-ended; frames can also be injected or recorded.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

use smoltcp::phy::{self, Checksum, ChecksumCapabilities, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

/// The Ethernet MTU smoltcp sees (header included, no FCS).
pub const MTU: usize = 1514;

type Queue = Rc<RefCell<VecDeque<Vec<u8>>>>;

/// Decides, for each frame an end sends, whether the wire delivers it
/// (`true`) or loses it (`false`); it gets the sender's clock and the frame.
pub type Filter = Rc<RefCell<Option<Box<dyn FnMut(Instant, &[u8]) -> bool>>>>;

/// One end of the pair.
pub struct PairDevice {
    rx: Queue,
    tx: Queue,
    /// Every frame this end received, when recording.
    recorded: Option<Rc<RefCell<Vec<Vec<u8>>>>>,
    checksum: ChecksumCapabilities,
    /// What the wire does to the frames this end sends.
    filter: Filter,
    /// Frames this end may have in flight at once (`None`: any number).
    in_flight: Option<usize>,
}

/// Two connected ends.
pub fn pair() -> (PairDevice, PairDevice) {
    let a_to_b: Queue = Rc::default();
    let b_to_a: Queue = Rc::default();
    (
        PairDevice {
            rx: b_to_a.clone(),
            tx: a_to_b.clone(),
            recorded: None,
            checksum: ChecksumCapabilities::default(),
            filter: Filter::default(),
            in_flight: None,
        },
        PairDevice {
            rx: a_to_b,
            tx: b_to_a,
            recorded: None,
            checksum: ChecksumCapabilities::default(),
            filter: Filter::default(),
            in_flight: None,
        },
    )
}

impl PairDevice {
    /// Queues `frame` as if it had arrived on the wire.
    pub fn inject(&self, frame: Vec<u8>) {
        self.rx.borrow_mut().push_back(frame);
    }

    /// Frames waiting to be received by this end.
    pub fn pending(&self) -> usize {
        self.rx.borrow().len()
    }

    /// Drops every frame waiting to be received by this end.
    pub fn discard_pending(&self) -> usize {
        let mut rx = self.rx.borrow_mut();
        let n = rx.len();
        rx.clear();
        n
    }

    /// Stops verifying checksums of received frames (they are still
    /// computed for sent ones), as if every frame had been crafted with
    /// valid checksums: mutated frames then reach the protocol code instead
    /// of being dropped at the first checksum. Call before building an
    /// interface on this end.
    pub fn trust_checksums(&mut self) {
        let mut c = ChecksumCapabilities::default();
        c.ipv4 = Checksum::Tx;
        c.udp = Checksum::Tx;
        c.tcp = Checksum::Tx;
        c.icmpv4 = Checksum::Tx;
        #[cfg(feature = "ipv6")]
        {
            c.icmpv6 = Checksum::Tx;
        }
        self.checksum = c;
    }

    /// Another handle on this end's queues, for watching them
    /// ([`pending`](Self::pending)) while the end itself is wrapped in
    /// another device (a fault injector). Receiving through both handles
    /// would split the frames between them: only watch with this one.
    pub fn watcher(&self) -> PairDevice {
        PairDevice {
            rx: self.rx.clone(),
            tx: self.tx.clone(),
            recorded: None,
            checksum: self.checksum.clone(),
            filter: self.filter.clone(),
            in_flight: self.in_flight,
        }
    }

    /// Loses every frame this end sends from now on for which `deliver`
    /// returns `false` (a wire that drops chosen frames).
    pub fn filter_sent(&self, deliver: impl FnMut(Instant, &[u8]) -> bool + 'static) {
        *self.filter.borrow_mut() = Some(Box::new(deliver));
    }

    /// A slow link: from now on this end can send only while fewer than
    /// `frames` of its frames wait to be received; `transmit` says "busy"
    /// otherwise (a reply sent while receiving is not limited).
    pub fn limit_in_flight(&mut self, frames: usize) {
        self.in_flight = Some(frames);
    }

    /// Starts recording every frame this end receives.
    pub fn record(&mut self) -> Rc<RefCell<Vec<Vec<u8>>>> {
        let log = Rc::new(RefCell::new(Vec::new()));
        self.recorded = Some(log.clone());
        log
    }
}

/// A received frame.
pub struct RxToken {
    frame: Vec<u8>,
}

impl phy::RxToken for RxToken {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(&self.frame)
    }
}

/// Permission to send one frame to the other end.
pub struct TxToken {
    queue: Queue,
    filter: Filter,
    now: Instant,
}

impl phy::TxToken for TxToken {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut frame = vec![0; len];
        let result = f(&mut frame);
        let deliver = match &mut *self.filter.borrow_mut() {
            Some(deliver) => deliver(self.now, &frame),
            None => true,
        };
        if deliver {
            self.queue.borrow_mut().push_back(frame);
        }
        result
    }
}

impl Device for PairDevice {
    type RxToken<'a> = RxToken;
    type TxToken<'a> = TxToken;

    fn receive(&mut self, timestamp: Instant) -> Option<(RxToken, TxToken)> {
        let frame = self.rx.borrow_mut().pop_front()?;
        if let Some(log) = &self.recorded {
            log.borrow_mut().push(frame.clone());
        }
        Some((
            RxToken { frame },
            TxToken {
                queue: self.tx.clone(),
                filter: self.filter.clone(),
                now: timestamp,
            },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<TxToken> {
        if self
            .in_flight
            .is_some_and(|limit| self.tx.borrow().len() >= limit)
        {
            return None;
        }
        Some(TxToken {
            queue: self.tx.clone(),
            filter: self.filter.clone(),
            now: timestamp,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = MTU;
        caps.checksum = self.checksum.clone();
        caps
    }
}
