//! The subchannel-information block (STSCH stores it, MSCH reads it) and its
//! path-management-control word.

use super::Isc;
use super::irb::Scsw;

/// Bytes of a SCHIB.
pub const SCHIB_BYTES: usize = 52;

/// PMCW word-1 flag bits (the halfword at offset 4).
pub mod flags {
    /// The interruption subclass, bits 2-4.
    pub const ISC_MASK: u16 = 0x3800;
    /// Subchannel enabled for I/O.
    pub const ENABLED: u16 = 0x0080;
    /// Device number valid: a device is attached.
    pub const DNV: u16 = 0x0001;
}

/// Concurrent sense (word 6, bit 31): a unit check stores the sense bytes in the IRB.
pub const CHARS_CONCURRENT_SENSE: u32 = 0x0000_0001;

/// The subchannel type (PMCW word 6, bits 8-10).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum SubchannelType {
    /// An I/O subchannel: the only type that takes channel programs.
    Io,
    /// Any other type (CHSC, message, ADM).
    Other(u8),
}

/// The path-management-control word.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Pmcw {
    /// Interruption parameter (stored for unsolicited status).
    pub intparm: u32,
    /// The flag halfword (ISC, enabled, ..., device number valid).
    pub flags: u16,
    /// Device number.
    pub devno: u16,
    /// Logical-path mask.
    pub lpm: u8,
    /// Path-not-operational mask.
    pub pnom: u8,
    /// Last-path-used mask.
    pub lpum: u8,
    /// Path-installed mask.
    pub pim: u8,
    /// Measurement-block index.
    pub mbi: u16,
    /// Path-operational mask.
    pub pom: u8,
    /// Path-available mask.
    pub pam: u8,
    /// Channel-path ids.
    pub chpid: [u8; 8],
    /// Word 6: subchannel type and characteristics (concurrent sense, ...).
    pub chars: u32,
}

impl Pmcw {
    /// The subchannel's interruption subclass.
    pub fn isc(&self) -> Isc {
        Isc::new(((self.flags & flags::ISC_MASK) >> 11) as u8).unwrap_or(super::KERNEL_ISC)
    }

    /// Sets the interruption subclass.
    pub fn set_isc(&mut self, isc: Isc) {
        self.flags = (self.flags & !flags::ISC_MASK) | (u16::from(isc.get()) << 11);
    }

    /// Enabled for I/O.
    pub fn enabled(&self) -> bool {
        self.flags & flags::ENABLED != 0
    }

    /// Sets or clears the enabled bit.
    pub fn set_enabled(&mut self, on: bool) {
        if on {
            self.flags |= flags::ENABLED;
        } else {
            self.flags &= !flags::ENABLED;
        }
    }

    /// A device is attached (the device number is valid).
    pub fn device_valid(&self) -> bool {
        self.flags & flags::DNV != 0
    }

    /// The subchannel type.
    pub fn subchannel_type(&self) -> SubchannelType {
        match ((self.chars >> 21) & 7) as u8 {
            0 => SubchannelType::Io,
            other => SubchannelType::Other(other),
        }
    }

    /// Whether a unit check stores the sense bytes with the status (concurrent sense).
    pub fn concurrent_sense(&self) -> bool {
        self.chars & CHARS_CONCURRENT_SENSE != 0
    }

    /// Asks for concurrent sense or not.
    pub fn set_concurrent_sense(&mut self, on: bool) {
        if on {
            self.chars |= CHARS_CONCURRENT_SENSE;
        } else {
            self.chars &= !CHARS_CONCURRENT_SENSE;
        }
    }
}

/// A subchannel-information block.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Schib {
    /// The path-management-control word.
    pub pmcw: Pmcw,
    /// The subchannel-status word.
    pub scsw: Scsw,
    /// Measurement-block address and the model-dependent area, kept as stored.
    pub rest: [u8; 12],
}

impl Schib {
    /// Decodes the 52-byte image STSCH stores.
    pub fn decode(b: &[u8; SCHIB_BYTES]) -> Self {
        let u16_at = |o: usize| u16::from_be_bytes([b[o], b[o + 1]]);
        let u32_at = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
        let mut chpid = [0u8; 8];
        chpid.copy_from_slice(&b[16..24]);
        let mut rest = [0u8; 12];
        rest.copy_from_slice(&b[40..52]);
        Self {
            pmcw: Pmcw {
                intparm: u32_at(0),
                flags: u16_at(4),
                devno: u16_at(6),
                lpm: b[8],
                pnom: b[9],
                lpum: b[10],
                pim: b[11],
                mbi: u16_at(12),
                pom: b[14],
                pam: b[15],
                chpid,
                chars: u32_at(24),
            },
            scsw: Scsw([u32_at(28), u32_at(32), u32_at(36)]),
            rest,
        }
    }

    /// The 52-byte image MSCH reads.
    pub fn encode(&self) -> [u8; SCHIB_BYTES] {
        let p = &self.pmcw;
        let mut b = [0u8; SCHIB_BYTES];
        b[0..4].copy_from_slice(&p.intparm.to_be_bytes());
        b[4..6].copy_from_slice(&p.flags.to_be_bytes());
        b[6..8].copy_from_slice(&p.devno.to_be_bytes());
        b[8..12].copy_from_slice(&[p.lpm, p.pnom, p.lpum, p.pim]);
        b[12..14].copy_from_slice(&p.mbi.to_be_bytes());
        b[14] = p.pom;
        b[15] = p.pam;
        b[16..24].copy_from_slice(&p.chpid);
        b[24..28].copy_from_slice(&p.chars.to_be_bytes());
        for (i, word) in self.scsw.0.iter().enumerate() {
            b[28 + 4 * i..32 + 4 * i].copy_from_slice(&word.to_be_bytes());
        }
        b[40..52].copy_from_slice(&self.rest);
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What QEMU 7.2 stores for an unused virtio-ccw subchannel (devno 0, chpid 0,
    /// type 0x32 channel path), built from `css_sch_build_virtual_schib`.
    fn qemu_like_image() -> [u8; SCHIB_BYTES] {
        let mut b = [0u8; SCHIB_BYTES];
        b[4..6].copy_from_slice(&0x0001u16.to_be_bytes()); // DNV
        b[6..8].copy_from_slice(&0x0007u16.to_be_bytes()); // devno
        b[8] = 0x80; // lpm
        b[11] = 0x80; // pim
        b[14] = 0x80; // pom
        b[15] = 0x80; // pam
        b
    }

    #[test]
    fn decode_reads_device_number_paths_and_type() {
        let s = Schib::decode(&qemu_like_image());
        assert!(s.pmcw.device_valid());
        assert!(!s.pmcw.enabled());
        assert_eq!(s.pmcw.devno, 7);
        assert_eq!(s.pmcw.pim, 0x80);
        assert_eq!(s.pmcw.subchannel_type(), SubchannelType::Io);
        let mut other = qemu_like_image();
        other[24] = 0x00;
        other[25] = 0x20; // type 1 (CHSC) in bits 8-10
        assert_eq!(
            Schib::decode(&other).pmcw.subchannel_type(),
            SubchannelType::Other(1)
        );
    }

    #[test]
    fn enable_isc_and_concurrent_sense_round_trip() {
        let mut s = Schib::decode(&qemu_like_image());
        s.pmcw.set_enabled(true);
        s.pmcw.set_isc(Isc::new(3).unwrap());
        s.pmcw.set_concurrent_sense(true);
        s.pmcw.intparm = 0x0001_0000;
        let image = s.encode();
        assert_eq!(
            &image[0..8],
            &[0x00, 0x01, 0x00, 0x00, 0x18, 0x81, 0x00, 0x07]
        );
        assert_eq!(&image[24..28], &[0, 0, 0, 1]);
        let back = Schib::decode(&image);
        assert_eq!(back, s);
        assert_eq!(back.pmcw.isc().get(), 3);
        assert!(back.pmcw.enabled() && back.pmcw.concurrent_sense());
        let mut off = back;
        off.pmcw.set_enabled(false);
        off.pmcw.set_concurrent_sense(false);
        assert!(!off.pmcw.enabled() && !off.pmcw.concurrent_sense());
        assert!(off.pmcw.device_valid());
    }
}
