//! Format-1 channel-command words and the data areas they address.
//!
//! A CCW's data address is 31 bits wide and addresses one contiguous area. A data area
//! that crosses a 4 KiB page boundary, or that does not lie wholly below 2 GiB, is
//! instead described by a list of format-2 IDAWs (64-bit indirect data-address words,
//! 4 KiB blocks; ORB bit "format-2 IDAW"): the first IDAW may point anywhere in a page,
//! every further one at the start of a page, and the channel moves to the next IDAW at
//! each 4 KiB boundary. The pages of a buffer need not be contiguous, so a buffer is
//! described as the [`Segment`]s of its pages and [`DataArea::plan`] decides.

use alloc::vec::Vec;

/// Bytes one format-2 IDAW addresses (without the 2K-IDAW control): one page.
pub const IDAW_BLOCK: u64 = 4096;

/// The highest address + 1 a format-1 CCW, an ORB or a direct data address can reach.
pub const LIMIT_31BIT: u64 = 1 << 31;

/// Command codes: the architected ones and those of virtio-ccw
/// (QEMU `hw/s390x/virtio-ccw.h`, Linux `drivers/s390/virtio/virtio_ccw.c`).
pub mod command {
    /// Write (low two bits 01).
    pub const WRITE: u8 = 0x01;
    /// No operation: ends with channel end and device end, moves no data.
    pub const NOP: u8 = 0x03;
    /// Basic sense: the device's sense bytes.
    pub const SENSE: u8 = 0x04;
    /// Transfer in channel: continue at the CCW its data address names.
    pub const TIC: u8 = 0x08;
    /// Sense ID: control-unit and device type and model.
    pub const SENSE_ID: u8 = 0xe4;
    /// virtio: set up a virtqueue.
    pub const VIRTIO_SET_VQ: u8 = 0x13;
    /// virtio: reset the device.
    pub const VIRTIO_VDEV_RESET: u8 = 0x33;
    /// virtio: read 32 device feature bits.
    pub const VIRTIO_READ_FEAT: u8 = 0x12;
    /// virtio: write 32 driver feature bits.
    pub const VIRTIO_WRITE_FEAT: u8 = 0x11;
    /// virtio: read the configuration space from offset 0.
    pub const VIRTIO_READ_CONF: u8 = 0x22;
    /// virtio: write the configuration space from offset 0.
    pub const VIRTIO_WRITE_CONF: u8 = 0x21;
    /// virtio: write the device status byte.
    pub const VIRTIO_WRITE_STATUS: u8 = 0x31;
    /// virtio: read a virtqueue's maximum size.
    pub const VIRTIO_READ_VQ_CONF: u8 = 0x32;
    /// virtio: register the classic queue-indicator word.
    pub const VIRTIO_SET_IND: u8 = 0x43;
    /// virtio: register the configuration-change indicator word.
    pub const VIRTIO_SET_CONF_IND: u8 = 0x53;
    /// virtio: register adapter (thin) interruption indicators.
    pub const VIRTIO_SET_IND_ADAPTER: u8 = 0x73;
    /// virtio: read the device status byte (revision 2 and later).
    pub const VIRTIO_READ_STATUS: u8 = 0x72;
    /// virtio: negotiate the virtio-ccw revision; must be the first command.
    pub const VIRTIO_SET_REV: u8 = 0x83;
}

/// CCW flag bits (byte 1 of a format-1 CCW).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct CcwFlags(pub u8);

impl CcwFlags {
    /// Chain data: the next CCW continues this one's data area.
    pub const CHAIN_DATA: Self = Self(0x80);
    /// Chain command: run the next CCW after this one.
    pub const CHAIN_COMMAND: Self = Self(0x40);
    /// Suppress length indication: a count that differs from what the device moves is
    /// not an incorrect-length error.
    pub const SLI: Self = Self(0x20);
    /// Skip: read without storing.
    pub const SKIP: Self = Self(0x10);
    /// Program-controlled interruption.
    pub const PCI: Self = Self(0x08);
    /// Indirect data addressing: the data address names an IDAW list.
    pub const IDA: Self = Self(0x04);
    /// Suspend.
    pub const SUSPEND: Self = Self(0x02);
    /// Modified IDA (MIDAW).
    pub const MIDA: Self = Self(0x01);

    /// Both sets of bits.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// True when every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

/// One piece of a data area: `len` bytes at absolute address `addr`, inside one page.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Segment {
    /// Absolute address of the first byte.
    pub addr: u64,
    /// Length in bytes (1..=4096).
    pub len: u32,
}

/// Splits a contiguous area into the segments of its pages.
pub fn segments_of(addr: u64, len: u32) -> Vec<Segment> {
    let mut out = Vec::new();
    let (mut at, mut left) = (addr, u64::from(len));
    while left > 0 {
        let in_page = (IDAW_BLOCK - at % IDAW_BLOCK).min(left);
        out.push(Segment {
            addr: at,
            len: in_page as u32,
        });
        at += in_page;
        left -= in_page;
    }
    out
}

/// Why a list of segments cannot be one CCW's data area.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DataAreaError {
    /// More than 65535 bytes (the CCW count is 16 bits).
    TooLong,
    /// A segment crosses a page boundary, or one that is not the first does not start a
    /// page, or one that is not the last does not end one.
    NotPageShaped {
        /// Index of the offending segment.
        index: usize,
    },
}

/// How a CCW addresses its data.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum DataArea {
    /// No data (count 0, address 0).
    None,
    /// One contiguous area inside one page and below 2 GiB: the CCW holds its address.
    Direct {
        /// The 31-bit data address.
        addr: u32,
        /// Bytes.
        count: u16,
    },
    /// A format-2 IDAW list: the CCW holds the list's address and the IDA flag.
    Indirect {
        /// The IDAWs, one per page.
        idaws: Vec<u64>,
        /// Bytes.
        count: u16,
    },
}

impl DataArea {
    /// The addressing a data area made of `segments` needs: direct when it is one
    /// segment below 2 GiB, otherwise an IDAW per segment.
    pub fn plan(segments: &[Segment]) -> Result<Self, DataAreaError> {
        let total: u64 = segments.iter().map(|s| u64::from(s.len)).sum();
        if total > u64::from(u16::MAX) {
            return Err(DataAreaError::TooLong);
        }
        let last = segments.len().saturating_sub(1);
        for (index, s) in segments.iter().enumerate() {
            let end = s.addr + u64::from(s.len);
            let crosses = s.len == 0 || (s.addr % IDAW_BLOCK) + u64::from(s.len) > IDAW_BLOCK;
            let bad_start = index > 0 && s.addr % IDAW_BLOCK != 0;
            let bad_end = index < last && end % IDAW_BLOCK != 0;
            if crosses || bad_start || bad_end {
                return Err(DataAreaError::NotPageShaped { index });
            }
        }
        Ok(match segments {
            [] => DataArea::None,
            [one] if one.addr + u64::from(one.len) <= LIMIT_31BIT => DataArea::Direct {
                addr: one.addr as u32,
                count: one.len as u16,
            },
            many => DataArea::Indirect {
                idaws: many.iter().map(|s| s.addr).collect(),
                count: total as u16,
            },
        })
    }

    /// Bytes the data area holds.
    pub fn count(&self) -> u16 {
        match self {
            DataArea::None => 0,
            DataArea::Direct { count, .. } | DataArea::Indirect { count, .. } => *count,
        }
    }
}

/// A format-1 CCW.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Ccw {
    /// Command code.
    pub command: u8,
    /// Flags.
    pub flags: CcwFlags,
    /// Byte count.
    pub count: u16,
    /// Data address (31 bits): the data, an IDAW list (flag IDA) or a CCW (TIC).
    pub addr: u32,
}

impl Ccw {
    /// The CCW as the doubleword the channel reads (big-endian: command in the top byte).
    pub const fn encode(self) -> u64 {
        ((self.command as u64) << 56)
            | ((self.flags.0 as u64) << 48)
            | ((self.count as u64) << 32)
            | self.addr as u64
    }

    /// The CCW a doubleword holds.
    pub const fn decode(word: u64) -> Self {
        Self {
            command: (word >> 56) as u8,
            flags: CcwFlags((word >> 48) as u8),
            count: (word >> 32) as u16,
            addr: word as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn ccw_encodes_command_flags_count_and_address_big_endian() {
        let ccw = Ccw {
            command: command::SENSE_ID,
            flags: CcwFlags::SLI.union(CcwFlags::CHAIN_COMMAND),
            count: 0x0100,
            addr: 0x0012_3458,
        };
        assert_eq!(ccw.encode(), 0xe460_0100_0012_3458);
        assert_eq!(
            ccw.encode().to_be_bytes(),
            [0xe4, 0x60, 0x01, 0x00, 0x00, 0x12, 0x34, 0x58]
        );
        assert_eq!(Ccw::decode(ccw.encode()), ccw);
        assert!(ccw.flags.contains(CcwFlags::SLI));
        assert!(!ccw.flags.contains(CcwFlags::IDA));
    }

    #[test]
    fn contiguous_areas_split_at_page_boundaries() {
        assert_eq!(
            segments_of(0x1000, 16),
            vec![Segment {
                addr: 0x1000,
                len: 16
            }]
        );
        assert_eq!(
            segments_of(0x1ff0, 0x1020),
            vec![
                Segment {
                    addr: 0x1ff0,
                    len: 0x10
                },
                Segment {
                    addr: 0x2000,
                    len: 0x1000
                },
                Segment {
                    addr: 0x3000,
                    len: 0x10
                },
            ]
        );
        assert_eq!(segments_of(0x5000, 0), vec![]);
    }

    #[test]
    fn one_page_below_2_gib_is_addressed_directly() {
        let plan = DataArea::plan(&segments_of(0x7000_0ff0, 16)).unwrap();
        assert_eq!(
            plan,
            DataArea::Direct {
                addr: 0x7000_0ff0,
                count: 16
            }
        );
        assert_eq!(DataArea::plan(&[]).unwrap(), DataArea::None);
    }

    #[test]
    fn crossing_a_page_or_2_gib_takes_one_idaw_per_page() {
        let plan = DataArea::plan(&segments_of(0x1ffd, 8)).unwrap();
        assert_eq!(
            plan,
            DataArea::Indirect {
                idaws: vec![0x1ffd, 0x2000],
                count: 8
            }
        );
        // Above 2 GiB even a single page needs an IDAW (the CCW address is 31 bits).
        let high = DataArea::plan(&segments_of(0x1_0000_0100, 64)).unwrap();
        assert_eq!(
            high,
            DataArea::Indirect {
                idaws: vec![0x1_0000_0100],
                count: 64
            }
        );
        // The last byte right below 2 GiB is still direct.
        let edge = DataArea::plan(&segments_of(LIMIT_31BIT - 16, 16)).unwrap();
        assert!(matches!(edge, DataArea::Direct { .. }));
    }

    #[test]
    fn scattered_pages_become_an_idaw_list() {
        // The tail of one page and the head of another, not adjacent.
        let segments = [
            Segment {
                addr: 0x8ffd,
                len: 3,
            },
            Segment {
                addr: 0x2_0000,
                len: 5,
            },
        ];
        let plan = DataArea::plan(&segments).unwrap();
        assert_eq!(
            plan,
            DataArea::Indirect {
                idaws: vec![0x8ffd, 0x2_0000],
                count: 8
            }
        );
        assert_eq!(plan.count(), 8);
    }

    #[test]
    fn segments_that_are_not_page_shaped_are_refused() {
        // A middle segment that does not start a page.
        let gap = [
            Segment {
                addr: 0x1ff0,
                len: 16,
            },
            Segment {
                addr: 0x3008,
                len: 8,
            },
        ];
        assert_eq!(
            DataArea::plan(&gap),
            Err(DataAreaError::NotPageShaped { index: 1 })
        );
        // A first segment that does not reach the end of its page, followed by another.
        let short = [
            Segment {
                addr: 0x1000,
                len: 16,
            },
            Segment {
                addr: 0x3000,
                len: 8,
            },
        ];
        assert_eq!(
            DataArea::plan(&short),
            Err(DataAreaError::NotPageShaped { index: 0 })
        );
        // One segment crossing a page.
        let crossing = [Segment {
            addr: 0x1ff0,
            len: 32,
        }];
        assert_eq!(
            DataArea::plan(&crossing),
            Err(DataAreaError::NotPageShaped { index: 0 })
        );
        let empty = [Segment {
            addr: 0x1000,
            len: 0,
        }];
        assert_eq!(
            DataArea::plan(&empty),
            Err(DataAreaError::NotPageShaped { index: 0 })
        );
        let long = segments_of(0x10000, 0x10000);
        assert_eq!(DataArea::plan(&long), Err(DataAreaError::TooLong));
    }
}
