//! The optional activity LED: any `embedded_hal::digital::OutputPin`,
//! toggled once per [`EchoNode::poll`](crate::EchoNode::poll) that moved
//! traffic.

use core::convert::Infallible;

use embedded_hal::digital::{ErrorType, OutputPin};

/// No LED: the default for [`EchoNode`](crate::EchoNode)'s pin type.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct NoLed;

impl ErrorType for NoLed {
    type Error = Infallible;
}

impl OutputPin for NoLed {
    fn set_low(&mut self) -> Result<(), Infallible> {
        Ok(())
    }

    fn set_high(&mut self) -> Result<(), Infallible> {
        Ok(())
    }
}

/// A pin toggled on traffic. Pin errors are ignored: an LED never stops
/// the node.
#[derive(Debug)]
pub(crate) struct Activity<L> {
    pin: L,
    lit: bool,
}

impl<L: OutputPin> Activity<L> {
    pub(crate) fn new(mut pin: L) -> Self {
        let _ = pin.set_low();
        Activity { pin, lit: false }
    }

    pub(crate) fn toggle(&mut self) {
        self.lit = !self.lit;
        let _ = if self.lit {
            self.pin.set_high()
        } else {
            self.pin.set_low()
        };
    }
}
