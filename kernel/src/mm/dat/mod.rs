//! DAT address spaces: region-third table -> segment tables -> page tables.
//!
//! Layout: the ASCE designates a region-third table of one frame (TL = 0, 512
//! entries, 2 GiB each: 1 TiB of address space). Each valid region-third entry
//! points at a segment table of up to 2048 entries (1 MiB each) in up to 4
//! contiguous frames. Each valid segment entry points at a page table of 256
//! entries (2 KiB; one per frame, the second half unused). Tables are written
//! through [`PhysMem`]; TLB maintenance goes through [`Tlb`].
//!
//! A user space's segment table starts as the one frame (512 MiB) its first
//! mapping needs, designated with the region-third entry's table offset and length
//! (TF = TL); a mapping in another frame's range moves it to a larger table. A full
//! table is four contiguous frames, which a fragmented page pool may not have while
//! plenty of single frames are free; one frame always fits. (Linux allocates whole
//! tables, order 2, and relies on compaction.)
//!
//! The kernel part is shared by linking the kernel's region-third entries
//! (hence its segment and page tables) into every address space
//! ([`DatSpace::share_from`]); user mappings must therefore live in 2 GiB
//! regions the kernel does not use. A copied entry must never change, so the
//! kernel's segment tables are whole from the start ([`DatSpace::new_kernel`]).

pub mod entry;

use core::ops::Range;

use super::addr::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use super::error::MmError;
use super::machine::{PhysMem, Tlb};
pub use entry::{Asce, Pte, Region3Entry, SegmentEntry, VA_LIMIT};
use entry::{
    PAGE_ENTRIES, REGION3_ENTRIES, REGION3_SIZE, SEGMENT_ENTRIES_PER_FRAME, SEGMENT_SIZE,
    SEGMENT_TABLE_FRAMES, page_index, region3_index, segment_frame, segment_index,
};

/// Where DAT tables come from: the frame allocator in the kernel, a simple
/// counter in tests. Frames need not be zeroed; the tables are initialised here.
pub trait TableAlloc {
    /// `count` contiguous frames (DAT needs 4 KiB alignment only).
    fn alloc_table(&mut self, count: usize) -> Option<Pfn>;
    /// Gives back what [`TableAlloc::alloc_table`] returned.
    fn free_table(&mut self, first: Pfn, count: usize);
    /// Gives back a table that was replaced while its space stays in use: a walker
    /// that takes no lock (the host model's revocation) may still be reading it, so
    /// the frames must wait for a grace period before they are reused.
    fn retire_table(&mut self, first: Pfn, count: usize) {
        self.free_table(first, count);
    }
}

/// Where a software walk of the tables ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Walk {
    /// The address is beyond what the ASCE translates (region-third exception, 0x3b).
    OutOfRange,
    /// The region-third entry is invalid (region-third-translation exception, 0x3b).
    NoSegmentTable,
    /// The segment entry is invalid (segment-translation exception, 0x10).
    NoPageTable,
    /// A page table exists; the PTE (valid or not) is at `addr`.
    Pte {
        /// Absolute address of the PTE.
        addr: PhysAddr,
        /// Its value.
        pte: Pte,
    },
}

impl Walk {
    /// The PTE, if it maps a page.
    pub fn valid_pte(self) -> Option<(PhysAddr, Pte)> {
        match self {
            Self::Pte { addr, pte } if pte.is_valid() => Some((addr, pte)),
            _ => None,
        }
    }
}

/// One address space's DAT tables.
#[derive(Debug, PartialEq, Eq)]
pub struct DatSpace {
    region3: Pfn,
    /// Segment tables are allocated whole (the kernel's, shared by copying the
    /// region-third entries), not one frame at a time.
    whole_segment_tables: bool,
}

fn fill<M: PhysMem + ?Sized>(mem: &mut M, first: Pfn, entries: usize, value: u64) {
    let base = first.addr().as_u64();
    for i in 0..entries as u64 {
        mem.write_u64(PhysAddr::new(base + 8 * i), value);
    }
}

fn entry_addr(table: PhysAddr, index: usize) -> PhysAddr {
    PhysAddr::new(table.as_u64() + 8 * index as u64)
}

impl DatSpace {
    /// A new, empty user address space: one region-third table, all entries
    /// invalid; segment tables grow a frame at a time as mappings need them.
    pub fn new<M: PhysMem + ?Sized, A: TableAlloc + ?Sized>(
        mem: &mut M,
        tables: &mut A,
    ) -> Result<Self, MmError> {
        Self::with_segment_tables(mem, tables, false)
    }

    /// A new, empty kernel address space, whose segment tables are whole from the
    /// start: [`DatSpace::share_from`] copies its region-third entries into other
    /// spaces, and a copy would keep pointing at a table that moved.
    pub fn new_kernel<M: PhysMem + ?Sized, A: TableAlloc + ?Sized>(
        mem: &mut M,
        tables: &mut A,
    ) -> Result<Self, MmError> {
        Self::with_segment_tables(mem, tables, true)
    }

    fn with_segment_tables<M: PhysMem + ?Sized, A: TableAlloc + ?Sized>(
        mem: &mut M,
        tables: &mut A,
        whole_segment_tables: bool,
    ) -> Result<Self, MmError> {
        let region3 = tables.alloc_table(1).ok_or(MmError::OutOfMemory)?;
        fill(mem, region3, REGION3_ENTRIES, Region3Entry::EMPTY.bits());
        Ok(Self {
            region3,
            whole_segment_tables,
        })
    }

    /// The ASCE to load for this address space.
    pub fn asce(&self) -> Asce {
        Asce::region_third(self.region3.addr())
    }

    fn check(va: VirtAddr) -> Result<(), MmError> {
        if va.as_u64() >= VA_LIMIT {
            Err(MmError::OutOfRange)
        } else if !va.is_page_aligned() {
            Err(MmError::Unaligned)
        } else {
            Ok(())
        }
    }

    /// Walks the tables for `va` as the CPU would (no side effects).
    pub fn walk<M: PhysMem + ?Sized>(&self, mem: &M, va: VirtAddr) -> Walk {
        if va.as_u64() >= VA_LIMIT {
            return Walk::OutOfRange;
        }
        let r3 = Region3Entry::from_bits(
            mem.read_u64(entry_addr(self.region3.addr(), region3_index(va))),
        );
        if !r3.is_valid() {
            return Walk::NoSegmentTable;
        }
        if !r3.segment_indexes().contains(&segment_index(va)) {
            // Outside TF..TL: a segment-translation exception, as for an invalid entry.
            return Walk::NoPageTable;
        }
        let seg = SegmentEntry::from_bits(mem.read_u64(entry_addr(r3.origin(), segment_index(va))));
        if !seg.is_valid() {
            return Walk::NoPageTable;
        }
        let addr = entry_addr(seg.origin(), page_index(va));
        Walk::Pte {
            addr,
            pte: Pte::from_bits(mem.read_pte(addr)),
        }
    }

    /// The PTE slot for `va`, building missing segment and page tables.
    fn pte_slot<M: PhysMem + Tlb + ?Sized, A: TableAlloc + ?Sized>(
        &mut self,
        mem: &mut M,
        tables: &mut A,
        va: VirtAddr,
    ) -> Result<PhysAddr, MmError> {
        let r3_addr = entry_addr(self.region3.addr(), region3_index(va));
        let mut r3 = Region3Entry::from_bits(mem.read_u64(r3_addr));
        if !r3.is_valid() || !r3.segment_indexes().contains(&segment_index(va)) {
            r3 = self.segment_table_for(mem, tables, r3_addr, segment_frame(va))?;
        }
        let seg_addr = entry_addr(r3.origin(), segment_index(va));
        let mut seg = SegmentEntry::from_bits(mem.read_u64(seg_addr));
        if !seg.is_valid() {
            let Some(page_table) = tables.alloc_table(1) else {
                return Err(MmError::OutOfMemory);
            };
            fill(mem, page_table, PAGE_ENTRIES, Pte::EMPTY.bits());
            seg = SegmentEntry::page_table(page_table.addr());
            mem.write_u64(seg_addr, seg.bits());
        }
        Ok(entry_addr(seg.origin(), page_index(va)))
    }

    /// Makes the region-third entry at `r3_addr` designate a segment table that holds
    /// frame `frame` (0-3) of a full one, and returns the entry: a new table of that
    /// frame, or, if the entry is valid, a larger table holding the old frames and the
    /// new one. A kernel space's tables are whole.
    fn segment_table_for<M: PhysMem + Tlb + ?Sized, A: TableAlloc + ?Sized>(
        &mut self,
        mem: &mut M,
        tables: &mut A,
        r3_addr: PhysAddr,
        frame: u64,
    ) -> Result<Region3Entry, MmError> {
        let old = Region3Entry::from_bits(mem.read_u64(r3_addr));
        let (first, last) = if self.whole_segment_tables {
            (0, SEGMENT_TABLE_FRAMES as u64 - 1)
        } else if old.is_valid() {
            let have = old.segment_frames();
            (frame.min(*have.start()), frame.max(*have.end()))
        } else {
            (frame, frame)
        };
        let count = (last - first + 1) as usize;
        let table = tables.alloc_table(count).ok_or(MmError::OutOfMemory)?;
        // Entry 0 of the full table would sit `first` frames below the first one that
        // exists. Frames that low are the lowcore, never a table; refuse rather than wrap.
        let Some(origin) = table.addr().as_u64().checked_sub(first * PAGE_SIZE) else {
            tables.free_table(table, count);
            return Err(MmError::OutOfRange);
        };
        let origin = PhysAddr::new(origin);
        fill(
            mem,
            table,
            count * SEGMENT_ENTRIES_PER_FRAME,
            SegmentEntry::EMPTY.bits(),
        );
        if old.is_valid() {
            for sx in old.segment_indexes() {
                let entry = mem.read_u64(entry_addr(old.origin(), sx));
                mem.write_u64(entry_addr(origin, sx), entry);
            }
        }
        let new = Region3Entry::segment_table_part(origin, first, last);
        mem.write_u64(r3_addr, new.bits());
        if old.is_valid() {
            // Every entry reads the same through either table, so a translation in
            // flight or cached gives the same result; but the TLB may cache the old
            // region-third entry (as part of a combined region-and-segment-table
            // entry), so every CPU's is purged before the old frames can be reused.
            mem.flush_all();
            let (old_first, old_count) = old.segment_table_frames();
            tables.retire_table(old_first, old_count);
        }
        Ok(new)
    }

    /// Maps `va` to `pfn`. `va` must not be mapped yet: changing a live entry
    /// needs TLB maintenance, which [`DatSpace::unmap`] and [`DatSpace::protect`] do.
    pub fn map<M: PhysMem + Tlb + ?Sized, A: TableAlloc + ?Sized>(
        &mut self,
        mem: &mut M,
        tables: &mut A,
        va: VirtAddr,
        pfn: Pfn,
        writable: bool,
    ) -> Result<PhysAddr, MmError> {
        self.map_pte(mem, tables, va, Pte::new(pfn, writable))
    }

    /// Installs `pte` for `va` (which must not be mapped yet).
    fn map_pte<M: PhysMem + Tlb + ?Sized, A: TableAlloc + ?Sized>(
        &mut self,
        mem: &mut M,
        tables: &mut A,
        va: VirtAddr,
        pte: Pte,
    ) -> Result<PhysAddr, MmError> {
        Self::check(va)?;
        let slot = self.pte_slot(mem, tables, va)?;
        if Pte::from_bits(mem.read_pte(slot)).is_valid() {
            return Err(MmError::AlreadyMapped);
        }
        mem.write_pte(slot, pte.bits());
        Ok(slot)
    }

    /// Removes the mapping of `va` and returns the old PTE, if one was valid.
    pub fn unmap<M: PhysMem + Tlb + ?Sized>(&mut self, mem: &mut M, va: VirtAddr) -> Option<Pte> {
        let (addr, pte) = self.walk(mem, va).valid_pte()?;
        mem.invalidate_page(addr, va);
        mem.write_pte(addr, Pte::EMPTY.bits());
        Some(pte)
    }

    /// Sets or clears write permission of a mapped `va`; returns the old PTE.
    pub fn protect<M: PhysMem + Tlb + ?Sized>(
        &mut self,
        mem: &mut M,
        va: VirtAddr,
        writable: bool,
    ) -> Option<Pte> {
        let (addr, pte) = self.walk(mem, va).valid_pte()?;
        let new = pte.with_writable(writable);
        if new != pte {
            mem.invalidate_page(addr, va);
            mem.write_pte(addr, new.bits());
        }
        Some(pte)
    }

    /// Calls `f(va, pte address, pte)` for every valid PTE in `range` (2 GiB aligned
    /// region indices are walked; invalid tables are skipped).
    pub fn for_each_pte<M: PhysMem + ?Sized>(
        &self,
        mem: &M,
        range: Range<VirtAddr>,
        mut f: impl FnMut(VirtAddr, PhysAddr, Pte),
    ) {
        let first = region3_index(range.start);
        let last = (range.end.as_u64().min(VA_LIMIT).div_ceil(REGION3_SIZE)) as usize;
        for r in first..last.min(REGION3_ENTRIES) {
            let r3 = Region3Entry::from_bits(mem.read_u64(entry_addr(self.region3.addr(), r)));
            if !r3.is_valid() {
                continue;
            }
            for sx in r3.segment_indexes() {
                let seg = SegmentEntry::from_bits(mem.read_u64(entry_addr(r3.origin(), sx)));
                if !seg.is_valid() {
                    continue;
                }
                for px in 0..PAGE_ENTRIES {
                    let addr = entry_addr(seg.origin(), px);
                    let pte = Pte::from_bits(mem.read_pte(addr));
                    let va = VirtAddr::new(
                        r as u64 * REGION3_SIZE + sx as u64 * (1 << 20) + px as u64 * PAGE_SIZE,
                    );
                    if pte.is_valid() && range.contains(&va) {
                        f(va, addr, pte);
                    }
                }
            }
        }
    }

    /// A view of the address space designated by `asce` (for walking tables someone
    /// else owns, e.g. the host model's revocation).
    pub fn from_asce(asce: Asce) -> DatSpace {
        DatSpace {
            region3: asce.origin().pfn(),
            // A view allocates nothing.
            whole_segment_tables: false,
        }
    }

    /// Maps `range` (page aligned) one to one: virtual = physical.
    pub fn identity_map<M: PhysMem + Tlb + ?Sized, A: TableAlloc + ?Sized>(
        &mut self,
        mem: &mut M,
        tables: &mut A,
        range: Range<PhysAddr>,
        writable: bool,
    ) -> Result<(), MmError> {
        self.identity_map_with(mem, tables, range, writable, false)
    }

    /// [`DatSpace::identity_map`], optionally with instruction-execution protection
    /// on every page (`no_exec`).
    pub fn identity_map_with<M: PhysMem + Tlb + ?Sized, A: TableAlloc + ?Sized>(
        &mut self,
        mem: &mut M,
        tables: &mut A,
        range: Range<PhysAddr>,
        writable: bool,
        no_exec: bool,
    ) -> Result<(), MmError> {
        if !range.start.is_page_aligned() || !range.end.is_page_aligned() {
            return Err(MmError::Unaligned);
        }
        if range.end.as_u64() > VA_LIMIT {
            return Err(MmError::OutOfRange);
        }
        let mut pa = range.start.as_u64();
        while pa < range.end.as_u64() {
            // One table walk per page table; its entries are consecutive in storage.
            let slot = self.pte_slot(mem, tables, VirtAddr::new(pa))?;
            let table_end = (pa | (SEGMENT_SIZE - 1)) + 1;
            let mut entry = slot.as_u64();
            while pa < range.end.as_u64() && pa < table_end {
                let entry_addr = PhysAddr::new(entry);
                if Pte::from_bits(mem.read_pte(entry_addr)).is_valid() {
                    return Err(MmError::AlreadyMapped);
                }
                let pte = Pte::new(PhysAddr::new(pa).pfn(), writable);
                let pte = if no_exec { pte.with_no_exec() } else { pte };
                mem.write_pte(entry_addr, pte.bits());
                pa += PAGE_SIZE;
                entry += 8;
            }
        }
        Ok(())
    }

    /// Links `other`'s region-third entries for `range` (2 GiB aligned) into
    /// this space, so both share the same segment and page tables there.
    pub fn share_from<M: PhysMem + ?Sized>(
        &mut self,
        mem: &mut M,
        other: &DatSpace,
        range: Range<VirtAddr>,
    ) -> Result<(), MmError> {
        let (start, end) = (range.start.as_u64(), range.end.as_u64());
        if start % REGION3_SIZE != 0 || end % REGION3_SIZE != 0 {
            return Err(MmError::Unaligned);
        }
        if end > VA_LIMIT || start > end {
            return Err(MmError::OutOfRange);
        }
        for index in (start / REGION3_SIZE) as usize..(end / REGION3_SIZE) as usize {
            let value = mem.read_u64(entry_addr(other.region3.addr(), index));
            mem.write_u64(entry_addr(self.region3.addr(), index), value);
        }
        Ok(())
    }

    /// Frees every table of this space, except those reached through region-third
    /// entries in `shared` (linked in by [`DatSpace::share_from`]), then flushes the TLB.
    pub fn destroy<M: PhysMem + Tlb + ?Sized, A: TableAlloc + ?Sized>(
        self,
        mem: &mut M,
        tables: &mut A,
        shared: Range<VirtAddr>,
    ) {
        for index in 0..REGION3_ENTRIES {
            let region_start = index as u64 * REGION3_SIZE;
            if (shared.start.as_u64()..shared.end.as_u64()).contains(&region_start) {
                continue;
            }
            let r3 = Region3Entry::from_bits(mem.read_u64(entry_addr(self.region3.addr(), index)));
            if !r3.is_valid() {
                continue;
            }
            for sx in r3.segment_indexes() {
                let seg = SegmentEntry::from_bits(mem.read_u64(entry_addr(r3.origin(), sx)));
                if seg.is_valid() {
                    tables.free_table(seg.origin().pfn(), 1);
                }
            }
            let (first, count) = r3.segment_table_frames();
            tables.free_table(first, count);
        }
        tables.free_table(self.region3, 1);
        mem.flush_all();
    }
}

#[cfg(test)]
mod tests;
