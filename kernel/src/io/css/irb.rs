//! The interruption-response block TSCH stores, and its subchannel-status word.

/// Bytes of an IRB: SCSW (12), ESW (20), ECW (32), EMW (32).
pub const IRB_BYTES: usize = 96;

/// Device-status bits (SCSW byte 8).
pub mod device_status {
    /// Attention.
    pub const ATTENTION: u8 = 0x80;
    /// Status modifier.
    pub const STATUS_MODIFIER: u8 = 0x40;
    /// Control-unit end.
    pub const CONTROL_UNIT_END: u8 = 0x20;
    /// Busy.
    pub const BUSY: u8 = 0x10;
    /// Channel end.
    pub const CHANNEL_END: u8 = 0x08;
    /// Device end.
    pub const DEVICE_END: u8 = 0x04;
    /// Unit check: the device has sense data.
    pub const UNIT_CHECK: u8 = 0x02;
    /// Unit exception.
    pub const UNIT_EXCEPTION: u8 = 0x01;
}

/// Subchannel-status bits (SCSW byte 9).
pub mod subchannel_status {
    /// Program-controlled interruption.
    pub const PCI: u8 = 0x80;
    /// Incorrect length.
    pub const INCORRECT_LENGTH: u8 = 0x40;
    /// Program check: the channel program itself is invalid.
    pub const PROGRAM_CHECK: u8 = 0x20;
    /// Protection check: a storage key forbade an access.
    pub const PROTECTION_CHECK: u8 = 0x10;
    /// Channel-data check.
    pub const CHANNEL_DATA_CHECK: u8 = 0x08;
    /// Channel-control check.
    pub const CHANNEL_CONTROL_CHECK: u8 = 0x04;
    /// Interface-control check.
    pub const INTERFACE_CONTROL_CHECK: u8 = 0x02;
    /// Chaining check.
    pub const CHAINING_CHECK: u8 = 0x01;
}

/// Function-control bits (SCSW word 0, bits 17-19).
pub mod function {
    /// Start function (SSCH).
    pub const START: u8 = 4;
    /// Halt function (HSCH).
    pub const HALT: u8 = 2;
    /// Clear function (CSCH).
    pub const CLEAR: u8 = 1;
}

/// Status-control bits (SCSW word 0, bits 27-31).
pub mod status_control {
    /// Alert status.
    pub const ALERT: u8 = 0x10;
    /// Intermediate status.
    pub const INTERMEDIATE: u8 = 0x08;
    /// Primary status: the channel program ended.
    pub const PRIMARY: u8 = 0x04;
    /// Secondary status: the device finished.
    pub const SECONDARY: u8 = 0x02;
    /// Status pending.
    pub const PENDING: u8 = 0x01;
}

/// A subchannel-status word, as the three big-endian words the machine stores.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Scsw(pub [u32; 3]);

impl Scsw {
    /// Deferred condition code (bits 6-7): 1 = the start found status pending, 3 = no
    /// path was operational; 0 otherwise.
    pub fn deferred_cc(&self) -> u8 {
        ((self.0[0] >> 24) & 3) as u8
    }

    /// Function control (bits 17-19, see [`function`]).
    pub fn function(&self) -> u8 {
        ((self.0[0] >> 12) & 7) as u8
    }

    /// Activity control (bits 20-26).
    pub fn activity(&self) -> u8 {
        ((self.0[0] >> 5) & 0x7f) as u8
    }

    /// Status control (bits 27-31, see [`status_control`]).
    pub fn status_control(&self) -> u8 {
        (self.0[0] & 0x1f) as u8
    }

    /// The CCW address: 8 past the last CCW the channel ran.
    pub fn ccw_address(&self) -> u32 {
        self.0[1]
    }

    /// Device status (see [`device_status`]).
    pub fn device_status(&self) -> u8 {
        (self.0[2] >> 24) as u8
    }

    /// Subchannel status (see [`subchannel_status`]).
    pub fn subchannel_status(&self) -> u8 {
        (self.0[2] >> 16) as u8
    }

    /// Residual count of the last CCW.
    pub fn residual(&self) -> u16 {
        self.0[2] as u16
    }

    /// Status of a start, halt or clear function the program asked for (solicited); an
    /// unsolicited status (e.g. the alert status a virtio device posts for a queue
    /// notification) has no function bit set.
    pub fn solicited(&self) -> bool {
        self.function() != 0
    }

    /// The status that ends the function: primary status, or the status of a halt or
    /// clear function.
    pub fn ends_function(&self) -> bool {
        self.status_control() & status_control::PRIMARY != 0
            || self.function() & (function::HALT | function::CLEAR) != 0
    }
}

/// Extended-report-word bits (ESW word 1 of format 0).
pub mod erw {
    /// Concurrent sense: the ECW holds the sense bytes.
    pub const CONCURRENT_SENSE: u32 = 0x0100_0000;
}

/// An interruption-response block.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Irb {
    /// The subchannel-status word.
    pub scsw: Scsw,
    /// The extended-status word (format 0: subchannel logout, ERW, failing address).
    pub esw: [u32; 5],
    /// The extended-control word: sense bytes after a unit check with concurrent sense.
    pub ecw: [u8; 32],
}

impl Irb {
    /// Decodes the 96-byte image TSCH stores.
    pub fn decode(b: &[u8; IRB_BYTES]) -> Self {
        let word =
            |i: usize| u32::from_be_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        let mut ecw = [0u8; 32];
        ecw.copy_from_slice(&b[32..64]);
        Self {
            scsw: Scsw([word(0), word(1), word(2)]),
            esw: [word(3), word(4), word(5), word(6), word(7)],
            ecw,
        }
    }

    /// The sense bytes stored with a unit check (concurrent sense), with their count.
    pub fn concurrent_sense(&self) -> Option<&[u8]> {
        let erw = self.esw[1];
        if erw & erw::CONCURRENT_SENSE == 0 {
            return None;
        }
        let count = ((erw >> 16) & 0x3f) as usize;
        // A count of 0 with the flag set: take all 32 bytes. QEMU 7.2 stores the count
        // (32) in bits 16-23 instead of the scnt field (`css_do_tsch_get_irb`).
        let count = if count == 0 { 32 } else { count.min(32) };
        Some(&self.ecw[..count])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IRB image: SCSW words, then ERW and ECW bytes.
    pub(crate) fn image(scsw: [u32; 3], erw: u32, sense: &[u8]) -> [u8; IRB_BYTES] {
        let mut b = [0u8; IRB_BYTES];
        for (i, w) in scsw.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
        }
        b[16..20].copy_from_slice(&erw.to_be_bytes());
        b[32..32 + sense.len()].copy_from_slice(sense);
        b
    }

    #[test]
    fn a_successful_start_ends_with_primary_and_secondary_status() {
        // fctl start, stctl primary|secondary|pending; CE|DE; residual 3.
        let irb = Irb::decode(&image([0x0080_4007, 0x0000_2010, 0x0c00_0003], 0, &[]));
        let s = irb.scsw;
        assert_eq!(s.function(), function::START);
        assert_eq!(
            s.status_control(),
            status_control::PRIMARY | status_control::SECONDARY | status_control::PENDING
        );
        assert!(s.solicited() && s.ends_function());
        assert_eq!(s.ccw_address(), 0x2010);
        assert_eq!(
            s.device_status(),
            device_status::CHANNEL_END | device_status::DEVICE_END
        );
        assert_eq!(s.subchannel_status(), 0);
        assert_eq!(s.residual(), 3);
        assert_eq!(s.deferred_cc(), 0);
        assert_eq!(irb.concurrent_sense(), None);
    }

    #[test]
    fn unsolicited_alert_status_has_no_function() {
        let irb = Irb::decode(&image([0x0000_0011, 0, 0], 0, &[]));
        assert!(!irb.scsw.solicited());
        assert!(!irb.scsw.ends_function());
    }

    #[test]
    fn deferred_condition_code_and_sense_bytes_are_decoded() {
        let irb = Irb::decode(&image([0x0380_4011, 0, 0], 0, &[]));
        assert_eq!(irb.scsw.deferred_cc(), 3);
        let sensed = Irb::decode(&image(
            [0x0080_4017, 0x2018, 0x0200_0000],
            erw::CONCURRENT_SENSE | (2 << 16),
            &[0x80, 0x01, 0xff],
        ));
        assert_eq!(sensed.concurrent_sense(), Some(&[0x80, 0x01][..]));
        let full = Irb::decode(&image([0, 0, 0], erw::CONCURRENT_SENSE, &[0x80]));
        assert_eq!(full.concurrent_sense().map(<[u8]>::len), Some(32));
    }
}
