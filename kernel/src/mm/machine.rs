//! What the memory manager needs from the machine, as traits.
//!
//! The arch layer implements them on s390x (real storage, IPTE/IDTE/PTLB,
//! ISKE/RRBE/SSKE); host tests use the fakes in `mm::fake` (test builds only).

use super::addr::{PAGE_BYTES, Pfn, PhysAddr, VirtAddr};
use super::dat::Pte;

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
    /// The entry to store for a new mapping `pte`. Where the host model revokes
    /// discarded frames (`cmma::backend`), a frame revoked now gets a revoked entry,
    /// so that a mapping made after a discard faults like the ones made before it:
    /// on a real host every translation to a discarded frame raises the
    /// block-volatility exception, however new. Default: `pte` itself.
    fn establish(&self, pte: Pte) -> Pte {
        pte
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
    /// Returns the change bit of `pfn` and clears it.
    fn test_and_clear_change(&mut self, pfn: Pfn) -> bool;
}

/// Everything the memory manager needs from the machine, in one type.
pub trait Machine: PhysMem + Tlb + StorageKeys {}

impl<T: PhysMem + Tlb + StorageKeys> Machine for T {}
