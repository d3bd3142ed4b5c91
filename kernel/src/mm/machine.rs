//! What the memory manager needs from the machine, as traits.
//!
//! The arch layer implements them on s390x (real storage, IPTE/IDTE/PTLB,
//! ISKE/RRBE/SSKE); host tests use the fakes in `mm::fake` (test builds only).

use super::addr::{PAGE_BYTES, Pfn, PhysAddr, VirtAddr};

/// Access to physical (absolute) storage. Values are big-endian as on s390x,
/// so the byte view of a frame and the `u64` view agree on every host.
pub trait PhysMem {
    /// Reads the doubleword at `pa` (8-byte aligned).
    fn read_u64(&self, pa: PhysAddr) -> u64;
    /// Writes the doubleword at `pa` (8-byte aligned).
    fn write_u64(&mut self, pa: PhysAddr, value: u64);
    /// The bytes of frame `pfn`.
    fn frame(&mut self, pfn: Pfn) -> &mut [u8; PAGE_BYTES];
    /// The bytes of frame `pfn`, read-only.
    fn frame_ref(&self, pfn: Pfn) -> &[u8; PAGE_BYTES];

    /// Reads the page-table entry at `pa` as the memory manager last stored it
    /// (Linux `ptep_get`). A host may keep bits of its own in the entry the CPU
    /// translates through (KVM keeps its PGSTE beside it; the host model sets the
    /// invalid bit of entries that map a frame it took away); the memory manager
    /// never sees them.
    fn read_pte(&self, pa: PhysAddr) -> u64 {
        self.read_u64(pa)
    }

    /// Stores a page-table entry (Linux `set_pte_at`); the counterpart of
    /// [`PhysMem::read_pte`].
    fn write_pte(&mut self, pa: PhysAddr, value: u64) {
        self.write_u64(pa, value);
    }
}

/// TLB maintenance. On s390x `invalidate_page` is IPTE, which itself sets the
/// invalid bit of the PTE in storage; the memory manager stores the new entry
/// afterwards, so an implementation may but need not touch the PTE.
pub trait Tlb {
    /// The valid PTE at `pte` that maps `va` is about to change or go away.
    fn invalidate_page(&mut self, pte: PhysAddr, va: VirtAddr);
    /// Drop every translation (PTLB/IDTE), e.g. after freeing tables.
    fn flush_all(&mut self);
}

/// Storage-key reference and change bits (RRBE/ISKE/SSKE), per frame.
pub trait StorageKeys {
    /// Returns the reference bit of `pfn` and clears it.
    fn test_and_clear_reference(&mut self, pfn: Pfn) -> bool;
    /// The change bit of `pfn` (`page_test_dirty`: ISKE on s390x).
    fn change_bit(&mut self, pfn: Pfn) -> bool;
    /// Clears the change bit of `pfn` (`page_clear_dirty`: SSKE on s390x).
    fn clear_change(&mut self, pfn: Pfn);
}

/// Everything the memory manager needs from the machine, in one type.
pub trait Machine: PhysMem + Tlb + StorageKeys {}

impl<T: PhysMem + Tlb + StorageKeys> Machine for T {}
