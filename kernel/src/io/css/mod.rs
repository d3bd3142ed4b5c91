//! The formats of the channel subsystem (z/Architecture Principles of Operation,
//! chapters 13-16): subchannel ids, the SCHIB and its PMCW, format-1 CCWs and the
//! format-2 IDAW lists for data areas that cross pages, the ORB, the IRB and its SCSW,
//! SENSE ID data, and the classification of an ending status into a typed [`IoError`].
//!
//! Everything here converts between typed values and the architected big-endian byte
//! images, so it tests on any host; `arch::css` hands those images to the instructions.

pub mod ccw;
pub mod error;
pub mod irb;
pub mod orb;
pub mod schib;
pub mod sense_id;

pub use ccw::{Ccw, CcwFlags, DataArea, IDAW_BLOCK, Segment, command};
pub use error::{ChannelCheck, Completion, IoError, classify};
pub use irb::{Irb, Scsw, device_status, subchannel_status};
pub use orb::Orb;
pub use schib::{Pmcw, Schib, SubchannelType};
pub use sense_id::SenseId;

use core::fmt;

/// A subsystem-identification word as GR1 carries it to the I/O instructions:
/// `0x0001_0000 | ssid << 17 | subchannel number` (channel-subsystem image 0, the only
/// one a program without the MCSS-E facility addresses).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct SubchannelId(u32);

impl SubchannelId {
    /// The "one" bit that every valid subsystem-identification word has (bit 15).
    pub const ONE: u32 = 0x0001_0000;

    /// Subchannel `number` of subchannel set `ssid` (0-3).
    pub const fn new(ssid: u8, number: u16) -> Self {
        Self(Self::ONE | ((ssid as u32 & 3) << 17) | number as u32)
    }

    /// The id from a subsystem-identification word stored by the machine (I/O
    /// interruption code, TPI); `None` when it is not one (bit 15 clear).
    pub const fn from_word(word: u32) -> Option<Self> {
        if word & Self::ONE == 0 {
            None
        } else {
            Some(Self(word))
        }
    }

    /// The word for GR1.
    pub const fn word(self) -> u32 {
        self.0
    }

    /// The subchannel number.
    pub const fn number(self) -> u16 {
        self.0 as u16
    }

    /// The subchannel set.
    pub const fn ssid(self) -> u8 {
        ((self.0 >> 17) & 3) as u8
    }
}

impl fmt::Display for SubchannelId {
    /// As Linux prints it: `cssid.ssid.number`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0.{}.{:04x}", self.ssid(), self.number())
    }
}

/// An interruption subclass (0-7): the PMCW's ISC selects which bit of CR6 masks the
/// subchannel's I/O interruptions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Isc(u8);

impl Isc {
    /// ISC `n`; `None` above 7.
    pub const fn new(n: u8) -> Option<Self> {
        if n < 8 { Some(Self(n)) } else { None }
    }

    /// The subclass number.
    pub const fn get(self) -> u8 {
        self.0
    }

    /// Its mask bit in CR6 (bits 32-39: ISC 0 is bit 32).
    pub const fn cr6_bit(self) -> u64 {
        0x8000_0000 >> self.0
    }
}

/// The kernel's I/O subclass (the one Linux uses for I/O subchannels, `IO_SCH_ISC`).
pub const KERNEL_ISC: Isc = Isc(3);

/// What an I/O instruction's condition code means, for the instructions whose cc 1-3
/// are conditions rather than results (MSCH, SSCH, CSCH, HSCH).
pub fn instruction_cc(cc: u8) -> Result<(), IoError> {
    match cc {
        0 => Ok(()),
        1 => Err(IoError::StatusPending),
        2 => Err(IoError::Busy),
        _ => Err(IoError::NotOperational),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subchannel_ids_carry_the_one_bit_set_and_number() {
        let id = SubchannelId::new(0, 5);
        assert_eq!(id.word(), 0x0001_0005);
        assert_eq!(SubchannelId::new(3, 0xffff).word(), 0x0007_ffff);
        assert_eq!(SubchannelId::new(2, 1).ssid(), 2);
        assert_eq!(SubchannelId::from_word(0x0001_0005), Some(id));
        assert_eq!(SubchannelId::from_word(0x0000_0005), None);
        assert_eq!(alloc::format!("{id}"), "0.0.0005");
    }

    #[test]
    fn isc_mask_bits_are_cr6_bits_32_to_39() {
        assert_eq!(Isc::new(0).unwrap().cr6_bit(), 0x8000_0000);
        assert_eq!(KERNEL_ISC.cr6_bit(), 0x1000_0000);
        assert_eq!(Isc::new(7).unwrap().cr6_bit(), 0x0100_0000);
        assert_eq!(Isc::new(8), None);
    }

    #[test]
    fn condition_codes_of_the_start_instructions() {
        assert_eq!(instruction_cc(0), Ok(()));
        assert_eq!(instruction_cc(1), Err(IoError::StatusPending));
        assert_eq!(instruction_cc(2), Err(IoError::Busy));
        assert_eq!(instruction_cc(3), Err(IoError::NotOperational));
    }
}
