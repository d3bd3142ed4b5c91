//! z/Architecture DAT entry encodings.
//!
//! Bit values as Linux defines them in `arch/s390/include/asm/pgtable.h`
//! (`_ASCE_*`, `_REGION_ENTRY_*`, `_SEGMENT_ENTRY_*`, `_PAGE_INVALID`,
//! `_PAGE_PROTECT`), which follow the Principles of Operation, chapter 3
//! "Dynamic Address Translation". Bit numbers in comments are POP bit numbers
//! (0 = most significant of the doubleword).

use core::ops::{Range, RangeInclusive};

use crate::mm::addr::{PAGE_SHIFT, Pfn, PhysAddr, VirtAddr};

/// `_ASCE_ORIGIN`: table origin, bits 0-51.
const ASCE_ORIGIN: u64 = !0xfff;
/// `_ASCE_TYPE_REGION3`: designation type 01 (bits 60-61) = region-third table.
const ASCE_TYPE_REGION3: u64 = 0x04;
/// `_ASCE_TABLE_LENGTH`: bits 62-63.
const ASCE_TABLE_LENGTH: u64 = 0x03;

/// `_REGION_ENTRY_ORIGIN`: next-level table origin, bits 0-51.
const REGION_ENTRY_ORIGIN: u64 = !0xfff;
/// `_REGION_ENTRY_PROTECT`: bit 54.
const REGION_ENTRY_PROTECT: u64 = 0x200;
/// `_REGION_ENTRY_OFFSET`: table offset (TF), bits 56-57.
const REGION_ENTRY_OFFSET: u64 = 0xc0;
/// `_REGION_ENTRY_INVALID`: bit 58.
const REGION_ENTRY_INVALID: u64 = 0x20;
/// `_REGION_ENTRY_TYPE_MASK`: table type (TT), bits 60-61.
const REGION_ENTRY_TYPE_MASK: u64 = 0x0c;
/// `_REGION_ENTRY_TYPE_R3`: TT 01.
const REGION_ENTRY_TYPE_R3: u64 = 0x04;
/// `_REGION_ENTRY_LENGTH`: table length (TL) of the next-level table, bits 62-63.
const REGION_ENTRY_LENGTH: u64 = 0x03;

/// `_SEGMENT_ENTRY_ORIGIN`: page-table origin, bits 0-52 (2 KiB aligned).
const SEGMENT_ENTRY_ORIGIN: u64 = !0x7ff;
/// `_SEGMENT_ENTRY_LARGE`: format control (FC), bit 53; 0 = a page table follows.
const SEGMENT_ENTRY_LARGE: u64 = 0x400;
/// `_SEGMENT_ENTRY_PROTECT`: bit 54.
const SEGMENT_ENTRY_PROTECT: u64 = 0x200;
/// `_SEGMENT_ENTRY_INVALID`: bit 58.
const SEGMENT_ENTRY_INVALID: u64 = 0x20;
/// `_SEGMENT_ENTRY_TYPE_MASK`: TT, bits 60-61, 00 for a segment-table entry.
const SEGMENT_ENTRY_TYPE_MASK: u64 = 0x0c;

/// `_PAGE_INVALID`: bit 53.
const PAGE_INVALID: u64 = 0x400;
/// `_PAGE_PROTECT`: bit 54.
const PAGE_PROTECT: u64 = 0x200;
/// Bit 55: instruction-execution protection (with facility 130 and CR0 bit 20).
const PAGE_NO_EXEC: u64 = 0x100;
/// Bit 52 must be zero in a PTE (translation-specification exception otherwise).
const PAGE_MUST_BE_ZERO: u64 = 0x800;

/// Entries in a region-third table with TL = 0 (one 4 KiB frame).
pub const REGION3_ENTRIES: usize = 512;
/// Entries in a full segment table (TF = 0, TL = 3: four 4 KiB frames).
pub const SEGMENT_ENTRIES: usize = 2048;
/// Frames of a full segment table.
pub const SEGMENT_TABLE_FRAMES: usize = 4;
/// Segment-table entries in one frame: the unit of the region-third entry's table
/// offset and length (TF, TL), 512 MiB of address space.
pub const SEGMENT_ENTRIES_PER_FRAME: usize = 512;
/// Entries in a page table (256 x 8 bytes = 2 KiB).
pub const PAGE_ENTRIES: usize = 256;

/// Bytes one region-third entry maps (2 GiB).
pub const REGION3_SIZE: u64 = 1 << 31;
/// Bytes one segment-table entry maps (1 MiB).
pub const SEGMENT_SIZE: u64 = 1 << 20;
/// End of what a region-third ASCE with TL = 0 translates (1 TiB); addresses
/// at or above it raise a region-third-translation exception (0x3b).
pub const VA_LIMIT: u64 = REGION3_SIZE * REGION3_ENTRIES as u64;

/// Region-third index (RTX, bits 22-32 of the address).
pub const fn region3_index(va: VirtAddr) -> usize {
    ((va.as_u64() >> 31) & 0x7ff) as usize
}

/// Segment index (SX, bits 33-43).
pub const fn segment_index(va: VirtAddr) -> usize {
    ((va.as_u64() >> 20) & 0x7ff) as usize
}

/// Which frame of a full segment table holds the entry for `va` (SX bits 33-34, the
/// bits the CPU compares with TF and TL).
pub const fn segment_frame(va: VirtAddr) -> u64 {
    (va.as_u64() >> 29) & 0x3
}

/// Page index (PX, bits 44-51).
pub const fn page_index(va: VirtAddr) -> usize {
    ((va.as_u64() >> PAGE_SHIFT) & 0xff) as usize
}

/// Address-space-control element with designation type region-third, TL = 0.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Asce(u64);

impl Asce {
    /// The ASCE of a region-third table at `origin` (4 KiB aligned).
    pub const fn region_third(origin: PhysAddr) -> Self {
        Self((origin.as_u64() & ASCE_ORIGIN) | ASCE_TYPE_REGION3)
    }

    /// The raw value to load into CR1/CR7/CR13.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The region-third table origin.
    pub const fn origin(self) -> PhysAddr {
        PhysAddr::new(self.0 & ASCE_ORIGIN)
    }

    /// The table length field (0 here: 512 region-third entries).
    pub const fn table_length(self) -> u64 {
        self.0 & ASCE_TABLE_LENGTH
    }
}

/// A region-third-table entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Region3Entry(u64);

impl Region3Entry {
    /// `_REGION3_ENTRY_EMPTY`: invalid, type R3.
    pub const EMPTY: Self = Self(REGION_ENTRY_TYPE_R3 | REGION_ENTRY_INVALID);

    /// A valid entry pointing at a full segment table (TF = 0, TL = 3).
    pub const fn segment_table(origin: PhysAddr) -> Self {
        Self::segment_table_part(origin, 0, 3)
    }

    /// A valid entry for frames `first..=last` (TF, TL: 0-3) of a segment table whose
    /// entry 0 would be at `origin`: only those frames exist, and a segment index in
    /// another frame raises a segment-translation exception (POP "Translation
    /// Exceptions"; QEMU `mmu_translate_asce` checks `VADDR_SEGMENT_TL`).
    pub const fn segment_table_part(origin: PhysAddr, first: u64, last: u64) -> Self {
        Self(
            (origin.as_u64() & REGION_ENTRY_ORIGIN)
                | ((first << 6) & REGION_ENTRY_OFFSET)
                | REGION_ENTRY_TYPE_R3
                | (last & REGION_ENTRY_LENGTH),
        )
    }

    /// The entry read from a table.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The raw value.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether the invalid bit is off.
    pub const fn is_valid(self) -> bool {
        self.0 & REGION_ENTRY_INVALID == 0
    }

    /// The segment-table origin.
    pub const fn origin(self) -> PhysAddr {
        PhysAddr::new(self.0 & REGION_ENTRY_ORIGIN)
    }

    /// Table type (1 = region third).
    pub const fn table_type(self) -> u64 {
        (self.0 & REGION_ENTRY_TYPE_MASK) >> 2
    }

    /// Table offset and length of the segment table (TF, TL).
    pub const fn offset_and_length(self) -> (u64, u64) {
        (
            (self.0 & REGION_ENTRY_OFFSET) >> 6,
            self.0 & REGION_ENTRY_LENGTH,
        )
    }

    /// Whether the protection bit is on.
    pub const fn is_protected(self) -> bool {
        self.0 & REGION_ENTRY_PROTECT != 0
    }

    /// The frames of the segment table that exist (TF..=TL, as frame numbers within
    /// a full table).
    pub const fn segment_frames(self) -> RangeInclusive<u64> {
        let (first, last) = self.offset_and_length();
        first..=last
    }

    /// The segment indexes the table holds.
    pub const fn segment_indexes(self) -> Range<usize> {
        let (first, last) = self.offset_and_length();
        first as usize * SEGMENT_ENTRIES_PER_FRAME..(last as usize + 1) * SEGMENT_ENTRIES_PER_FRAME
    }

    /// The first frame of the segment table that exists, and how many there are.
    pub const fn segment_table_frames(self) -> (Pfn, usize) {
        let (first, last) = self.offset_and_length();
        let start = self.origin().as_u64() + first * (1 << PAGE_SHIFT);
        (
            Pfn::new(start >> PAGE_SHIFT),
            (last + 1).saturating_sub(first) as usize,
        )
    }
}

/// A segment-table entry (format control 0: it points at a page table).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SegmentEntry(u64);

impl SegmentEntry {
    /// `_SEGMENT_ENTRY_EMPTY`: invalid.
    pub const EMPTY: Self = Self(SEGMENT_ENTRY_INVALID);

    /// A valid entry pointing at a page table (2 KiB aligned).
    pub const fn page_table(origin: PhysAddr) -> Self {
        Self(origin.as_u64() & SEGMENT_ENTRY_ORIGIN)
    }

    /// The entry read from a table.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The raw value.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// Whether the invalid bit is off.
    pub const fn is_valid(self) -> bool {
        self.0 & SEGMENT_ENTRY_INVALID == 0
    }

    /// The page-table origin.
    pub const fn origin(self) -> PhysAddr {
        PhysAddr::new(self.0 & SEGMENT_ENTRY_ORIGIN)
    }

    /// Whether the entry maps a 1 MiB frame directly (EDAT-1), which we never build.
    pub const fn is_large(self) -> bool {
        self.0 & SEGMENT_ENTRY_LARGE != 0
    }

    /// Table type bits (must be 00).
    pub const fn table_type(self) -> u64 {
        (self.0 & SEGMENT_ENTRY_TYPE_MASK) >> 2
    }

    /// Whether the protection bit is on.
    pub const fn is_protected(self) -> bool {
        self.0 & SEGMENT_ENTRY_PROTECT != 0
    }
}

/// A page-table entry.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Pte(u64);

impl Pte {
    /// `_PAGE_INVALID` alone: nothing mapped.
    pub const EMPTY: Self = Self(PAGE_INVALID);

    /// A valid entry for `pfn`, read-only (protection bit) unless `writable`.
    pub const fn new(pfn: Pfn, writable: bool) -> Self {
        let protect = if writable { 0 } else { PAGE_PROTECT };
        Self(pfn.addr().as_u64() | protect)
    }

    /// The entry read from a table.
    pub const fn from_bits(bits: u64) -> Self {
        Self(bits)
    }

    /// The raw value.
    pub const fn bits(self) -> u64 {
        self.0
    }

    /// The same entry with instruction-execution protection.
    pub const fn with_no_exec(self) -> Self {
        Self(self.0 | PAGE_NO_EXEC)
    }

    /// Whether instruction fetches through this entry are refused (with IEP on).
    pub const fn is_no_exec(self) -> bool {
        self.0 & PAGE_NO_EXEC != 0
    }

    /// Whether the invalid bit is off (the CPU translates through it).
    pub const fn is_valid(self) -> bool {
        self.0 & PAGE_INVALID == 0
    }

    /// Whether stores through this entry raise a protection exception.
    pub const fn is_protected(self) -> bool {
        self.0 & PAGE_PROTECT != 0
    }

    /// Whether bit 52 is zero, as translation requires.
    pub const fn is_well_formed(self) -> bool {
        self.0 & PAGE_MUST_BE_ZERO == 0
    }

    /// The frame this entry maps.
    pub const fn pfn(self) -> Pfn {
        Pfn::new(self.0 >> PAGE_SHIFT)
    }

    /// The same entry with the protection bit set or cleared.
    pub const fn with_writable(self, writable: bool) -> Self {
        if writable {
            Self(self.0 & !PAGE_PROTECT)
        } else {
            Self(self.0 | PAGE_PROTECT)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings_match_linux_pgtable_h() {
        let asce = Asce::region_third(PhysAddr::new(0x12_3000));
        assert_eq!(asce.bits(), 0x12_3004); // origin | _ASCE_TYPE_REGION3, TL 0
        assert_eq!(asce.origin(), PhysAddr::new(0x12_3000));
        assert_eq!(asce.table_length(), 0);

        assert_eq!(Region3Entry::EMPTY.bits(), 0x24); // _REGION3_ENTRY_EMPTY
        assert!(!Region3Entry::EMPTY.is_valid());
        let r3 = Region3Entry::segment_table(PhysAddr::new(0x40_0000));
        assert_eq!(r3.bits(), 0x40_0007); // origin | _REGION3_ENTRY (TT 01, TL 3)
        assert!(r3.is_valid());
        assert_eq!(r3.table_type(), 1);
        assert_eq!(r3.offset_and_length(), (0, 3));
        assert!(!r3.is_protected());
        assert_eq!(r3.segment_indexes(), 0..SEGMENT_ENTRIES);
        assert_eq!(r3.segment_table_frames(), (Pfn::new(0x400), 4));
        // The third frame alone: TF = TL = 2, the origin two frames below it.
        let part = Region3Entry::segment_table_part(PhysAddr::new(0x40_0000), 2, 2);
        assert_eq!(part.bits(), 0x40_0086); // origin | TF 2 << 6 | TT 01 | TL 2
        assert_eq!(part.segment_frames(), 2..=2);
        assert_eq!(part.segment_indexes(), 1024..1536);
        assert_eq!(part.segment_table_frames(), (Pfn::new(0x402), 1));
        assert_eq!(
            segment_frame(VirtAddr::new((1 << 31) + (1 << 30) + (5 << 20))),
            2
        );

        assert_eq!(SegmentEntry::EMPTY.bits(), 0x20); // _SEGMENT_ENTRY_EMPTY
        let seg = SegmentEntry::page_table(PhysAddr::new(0x5_0800));
        assert_eq!(seg.bits(), 0x5_0800);
        assert!(seg.is_valid() && !seg.is_large() && !seg.is_protected());
        assert_eq!(seg.table_type(), 0);
        assert_eq!(seg.origin(), PhysAddr::new(0x5_0800));

        assert_eq!(Pte::EMPTY.bits(), 0x400); // _PAGE_INVALID
        let ro = Pte::new(Pfn::new(0x77), false);
        assert_eq!(ro.bits(), 0x7_7200); // _PAGE_PROTECT
        assert!(ro.is_valid() && ro.is_protected() && ro.is_well_formed());
        assert_eq!(ro.pfn(), Pfn::new(0x77));
        let rw = ro.with_writable(true);
        assert_eq!(rw.bits(), 0x7_7000);
        assert_eq!(rw.with_writable(false), ro);
        assert!(!Pte::from_bits(0x800).is_well_formed());
    }

    #[test]
    fn address_indices_split_the_address() {
        let va = VirtAddr::new((5 << 31) | (0x123 << 20) | (0x45 << 12) | 0x678);
        assert_eq!(region3_index(va), 5);
        assert_eq!(segment_index(va), 0x123);
        assert_eq!(page_index(va), 0x45);
        assert_eq!(VA_LIMIT, 1 << 40);
    }
}
