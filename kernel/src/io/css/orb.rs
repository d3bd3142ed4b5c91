//! The operation-request block SSCH takes.

/// ORB word-1 control bits (PoP "Operation-Request Block"; QEMU `ORB_CTRL0_*`).
pub mod ctrl {
    /// Format-1 CCWs.
    pub const FORMAT1_CCW: u32 = 0x0080_0000;
    /// Initial-status interruption control.
    pub const INITIAL_STATUS: u32 = 0x0020_0000;
    /// Format-2 IDAWs (64-bit, 4 KiB blocks unless 2K-IDAW).
    pub const FORMAT2_IDAW: u32 = 0x0002_0000;
    /// 2 KiB blocks for format-2 IDAWs.
    pub const IDAW_2K: u32 = 0x0001_0000;
    /// Incorrect-length-suppression mode.
    pub const ILS: u32 = 0x0000_0080;
}

/// An operation-request block for a command-mode channel program of format-1 CCWs.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Orb {
    /// Interruption parameter: stored at real 0xBC with the program's ending status.
    pub intparm: u32,
    /// Logical-path mask: the channel paths the program may use.
    pub lpm: u8,
    /// The program uses IDAWs (they are always format 2 with 4 KiB blocks).
    pub idaws: bool,
    /// Absolute address of the first CCW (31 bits, doubleword aligned).
    pub cpa: u32,
}

impl Orb {
    /// The 32-byte ORB image: intparm, control word, channel-program address, zeros.
    pub fn encode(&self) -> [u8; 32] {
        let mut control = ctrl::FORMAT1_CCW | (u32::from(self.lpm) << 8);
        if self.idaws {
            control |= ctrl::FORMAT2_IDAW;
        }
        let mut out = [0u8; 32];
        out[0..4].copy_from_slice(&self.intparm.to_be_bytes());
        out[4..8].copy_from_slice(&control.to_be_bytes());
        out[8..12].copy_from_slice(&self.cpa.to_be_bytes());
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orb_holds_intparm_format1_lpm_and_program_address() {
        let orb = Orb {
            intparm: 0xdead_beef,
            lpm: 0xff,
            idaws: false,
            cpa: 0x0010_2000,
        };
        let image = orb.encode();
        assert_eq!(&image[0..4], &[0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(&image[4..8], &[0x00, 0x80, 0xff, 0x00]);
        assert_eq!(&image[8..12], &[0x00, 0x10, 0x20, 0x00]);
        assert!(image[12..].iter().all(|&b| b == 0));
        let with_idaws = Orb { idaws: true, ..orb }.encode();
        assert_eq!(&with_idaws[4..8], &[0x00, 0x82, 0xff, 0x00]);
    }
}
