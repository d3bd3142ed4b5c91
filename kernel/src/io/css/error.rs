//! Typed outcomes of I/O: every condition code of the start instructions, every
//! deferred condition code, unit check (with its sense bytes), unit exception, each
//! channel check, incorrect length, and status a finished program must not have.

use super::irb::{Irb, device_status as ds, subchannel_status as ss};
use core::fmt;

/// The channel checks of the subchannel status, most severe first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ChannelCheck {
    /// The channel program is invalid (bad command code, address, count, TIC to TIC...).
    Program,
    /// A storage key forbade an access of the channel.
    Protection,
    /// A storage or data error while the channel moved data.
    ChannelData,
    /// A machine malfunction in the channel.
    ChannelControl,
    /// An error on the interface to the control unit.
    InterfaceControl,
    /// Data chaining could not keep up.
    Chaining,
}

impl ChannelCheck {
    /// The check a subchannel-status byte reports, the first in architectural order.
    pub fn from_status(status: u8) -> Option<Self> {
        [
            (ss::PROGRAM_CHECK, Self::Program),
            (ss::PROTECTION_CHECK, Self::Protection),
            (ss::CHANNEL_DATA_CHECK, Self::ChannelData),
            (ss::CHANNEL_CONTROL_CHECK, Self::ChannelControl),
            (ss::INTERFACE_CONTROL_CHECK, Self::InterfaceControl),
            (ss::CHAINING_CHECK, Self::Chaining),
        ]
        .into_iter()
        .find_map(|(bit, check)| (status & bit != 0).then_some(check))
    }
}

/// Sense bytes stored with a unit check (up to 32).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Sense {
    bytes: [u8; 32],
    len: u8,
}

impl Sense {
    /// Sense bytes as the IRB carried them (empty without concurrent sense).
    pub fn new(bytes: &[u8]) -> Self {
        let mut out = [0u8; 32];
        let len = bytes.len().min(32);
        out[..len].copy_from_slice(&bytes[..len]);
        Self {
            bytes: out,
            len: len as u8,
        }
    }

    /// Sense data of one byte (`const`, for tables and fakes).
    pub const fn new_const(byte0: u8) -> Self {
        let mut bytes = [0u8; 32];
        bytes[0] = byte0;
        Self { bytes, len: 1 }
    }

    /// The bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Sense byte 0 bit 0: the device rejected the command (unknown command, a count it
    /// refuses, a virtio status it does not accept).
    pub fn command_reject(&self) -> bool {
        self.bytes().first().is_some_and(|b| b & 0x80 != 0)
    }
}

/// Why an I/O operation failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IoError {
    /// cc 3: no such subchannel, or no device on it.
    NotOperational,
    /// cc 2: a function is already in progress.
    Busy,
    /// cc 1: the subchannel has status pending; nothing was started.
    StatusPending,
    /// The start was accepted but the channel could not run it: deferred cc 1 (status
    /// pending at the device) or 3 (no path operational).
    Deferred {
        /// The deferred condition code.
        cc: u8,
    },
    /// A channel check (subchannel status).
    Channel(ChannelCheck),
    /// Unit check: the device reported an error; sense bytes when stored concurrently.
    UnitCheck(Sense),
    /// Unit exception (e.g. end of medium).
    UnitException,
    /// The device moved a different amount than the count and the CCW did not
    /// suppress the length indication.
    IncorrectLength {
        /// The residual count.
        residual: u16,
    },
    /// The program ended without channel end and device end, or with status a finished
    /// program must not carry (attention, busy, status modifier).
    Unexpected {
        /// Device status.
        device: u8,
        /// Subchannel status.
        subchannel: u8,
    },
    /// No DMA memory below 2 GiB for the channel program or its data.
    NoDmaMemory,
    /// The data area cannot be addressed (longer than 64 KiB).
    BadDataArea,
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotOperational => f.write_str("subchannel not operational (cc 3)"),
            Self::Busy => f.write_str("subchannel busy (cc 2)"),
            Self::StatusPending => f.write_str("subchannel status pending (cc 1)"),
            Self::Deferred { cc } => write!(f, "deferred condition code {cc}"),
            Self::Channel(c) => write!(f, "{c:?} check"),
            Self::UnitCheck(sense) => write!(f, "unit check, sense {:02x?}", sense.bytes()),
            Self::UnitException => f.write_str("unit exception"),
            Self::IncorrectLength { residual } => {
                write!(f, "incorrect length (residual {residual})")
            }
            Self::Unexpected { device, subchannel } => write!(
                f,
                "unexpected status: device {device:#04x}, subchannel {subchannel:#04x}"
            ),
            Self::NoDmaMemory => f.write_str("no DMA memory below 2 GiB"),
            Self::BadDataArea => f.write_str("data area cannot be addressed by one CCW"),
        }
    }
}

/// A successful ending.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Completion {
    /// Residual count of the last CCW (bytes not moved).
    pub residual: u16,
}

/// Classifies the status that ended a channel program. Order: deferred condition code,
/// channel checks, unit check, unit exception, incorrect length, then the program must
/// have ended with channel end and device end and nothing else a program may not end
/// with.
pub fn classify(irb: &Irb) -> Result<Completion, IoError> {
    let scsw = &irb.scsw;
    let cc = scsw.deferred_cc();
    if cc != 0 {
        return Err(IoError::Deferred { cc });
    }
    let device = scsw.device_status();
    let subchannel = scsw.subchannel_status();
    if let Some(check) = ChannelCheck::from_status(subchannel) {
        return Err(IoError::Channel(check));
    }
    if device & ds::UNIT_CHECK != 0 {
        return Err(IoError::UnitCheck(Sense::new(
            irb.concurrent_sense().unwrap_or(&[]),
        )));
    }
    if device & ds::UNIT_EXCEPTION != 0 {
        return Err(IoError::UnitException);
    }
    if subchannel & ss::INCORRECT_LENGTH != 0 {
        return Err(IoError::IncorrectLength {
            residual: scsw.residual(),
        });
    }
    let done = ds::CHANNEL_END | ds::DEVICE_END;
    let forbidden = ds::ATTENTION | ds::BUSY | ds::STATUS_MODIFIER;
    if device & done != done || device & forbidden != 0 || subchannel & !ss::PCI != 0 {
        return Err(IoError::Unexpected { device, subchannel });
    }
    Ok(Completion {
        residual: scsw.residual(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::css::irb::{IRB_BYTES, erw};

    fn irb(word0: u32, device: u8, subchannel: u8, residual: u16) -> Irb {
        let mut b = [0u8; IRB_BYTES];
        b[0..4].copy_from_slice(&word0.to_be_bytes());
        b[8] = device;
        b[9] = subchannel;
        b[10..12].copy_from_slice(&residual.to_be_bytes());
        Irb::decode(&b)
    }

    const ENDED: u32 = 0x0080_4007;
    const CE_DE: u8 = ds::CHANNEL_END | ds::DEVICE_END;

    #[test]
    fn channel_end_and_device_end_is_success_with_the_residual() {
        assert_eq!(
            classify(&irb(ENDED, CE_DE, 0, 5)),
            Ok(Completion { residual: 5 })
        );
        // A PCI bit alone does not make a finished program fail.
        assert!(classify(&irb(ENDED, CE_DE, ss::PCI, 0)).is_ok());
    }

    #[test]
    fn every_channel_check_is_typed_and_program_check_wins() {
        let cases = [
            (ss::PROGRAM_CHECK, ChannelCheck::Program),
            (ss::PROTECTION_CHECK, ChannelCheck::Protection),
            (ss::CHANNEL_DATA_CHECK, ChannelCheck::ChannelData),
            (ss::CHANNEL_CONTROL_CHECK, ChannelCheck::ChannelControl),
            (ss::INTERFACE_CONTROL_CHECK, ChannelCheck::InterfaceControl),
            (ss::CHAINING_CHECK, ChannelCheck::Chaining),
        ];
        for (bit, check) in cases {
            assert_eq!(
                classify(&irb(ENDED, 0, bit, 0)),
                Err(IoError::Channel(check))
            );
        }
        let both = ss::PROGRAM_CHECK | ss::CHAINING_CHECK;
        assert_eq!(
            classify(&irb(ENDED, CE_DE, both, 0)),
            Err(IoError::Channel(ChannelCheck::Program))
        );
    }

    #[test]
    fn deferred_condition_codes_come_first() {
        let word = ENDED | (3 << 24);
        assert_eq!(
            classify(&irb(word, CE_DE, ss::PROGRAM_CHECK, 0)),
            Err(IoError::Deferred { cc: 3 })
        );
        assert_eq!(
            classify(&irb(ENDED | (1 << 24), 0, 0, 0)),
            Err(IoError::Deferred { cc: 1 })
        );
    }

    #[test]
    fn unit_check_carries_the_sense_bytes() {
        let mut b = [0u8; IRB_BYTES];
        b[0..4].copy_from_slice(&ENDED.to_be_bytes());
        b[8] = CE_DE | ds::UNIT_CHECK;
        b[16..20].copy_from_slice(&(erw::CONCURRENT_SENSE | (1 << 16)).to_be_bytes());
        b[32] = 0x80;
        let Err(IoError::UnitCheck(sense)) = classify(&Irb::decode(&b)) else {
            panic!("not a unit check");
        };
        assert_eq!(sense.bytes(), &[0x80]);
        assert!(sense.command_reject());
        // Without concurrent sense: no bytes, no command reject claimed.
        let Err(IoError::UnitCheck(none)) = classify(&irb(ENDED, ds::UNIT_CHECK, 0, 0)) else {
            panic!("not a unit check");
        };
        assert!(none.bytes().is_empty() && !none.command_reject());
    }

    #[test]
    fn unit_exception_incorrect_length_and_unfinished_status() {
        assert_eq!(
            classify(&irb(ENDED, CE_DE | ds::UNIT_EXCEPTION, 0, 0)),
            Err(IoError::UnitException)
        );
        assert_eq!(
            classify(&irb(ENDED, CE_DE, ss::INCORRECT_LENGTH, 12)),
            Err(IoError::IncorrectLength { residual: 12 })
        );
        assert_eq!(
            classify(&irb(ENDED, ds::CHANNEL_END, 0, 0)),
            Err(IoError::Unexpected {
                device: ds::CHANNEL_END,
                subchannel: 0
            })
        );
        assert_eq!(
            classify(&irb(ENDED, CE_DE | ds::ATTENTION, 0, 0)),
            Err(IoError::Unexpected {
                device: CE_DE | ds::ATTENTION,
                subchannel: 0
            })
        );
    }

    #[test]
    fn errors_print_what_happened() {
        assert_eq!(
            alloc::format!("{}", IoError::Channel(ChannelCheck::Program)),
            "Program check"
        );
        assert_eq!(
            alloc::format!("{}", IoError::Deferred { cc: 3 }),
            "deferred condition code 3"
        );
    }
}
