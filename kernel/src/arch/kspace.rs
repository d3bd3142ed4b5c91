//! The kernel address space: all of storage mapped one to one with 4 KiB pages, so that
//! the host model can revoke a single frame (make every kernel access to it fault, as a
//! host-discarded frame does) by invalidating its page-table entry.

use super::storage::{self, Machine};
use crate::mm::addr::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use crate::mm::dat::{DatSpace, Pte, TableAlloc};
use crate::mm::machine::{PhysMem, Tlb};
use spin::Mutex;

/// The PTE invalid bit (z/Architecture bit 53).
const PTE_INVALID: u64 = 0x400;

/// Hands out table frames from a region reserved at boot.
#[derive(Debug)]
struct BootTables {
    next: u64,
    end: u64,
}

impl TableAlloc for BootTables {
    fn alloc_table(&mut self, count: usize) -> Option<Pfn> {
        let bytes = count as u64 * PAGE_SIZE;
        let start = self.next.next_multiple_of(bytes);
        (start + bytes <= self.end).then(|| {
            self.next = start + bytes;
            Pfn::new(start / PAGE_SIZE)
        })
    }

    fn free_table(&mut self, _first: Pfn, _count: usize) {
        // Kernel tables live as long as the kernel.
    }
}

static KERNEL: Mutex<Option<DatSpace>> = Mutex::new(None);

/// Bytes of table frames needed to map `memory` bytes: one region-third table, one
/// segment table (4 frames) per 2 GiB, one page table frame per MiB, plus alignment slack.
pub fn tables_size(memory: u64) -> u64 {
    let segments = memory.div_ceil(1 << 20);
    let segment_tables = memory.div_ceil(2 << 30);
    (1 + 4 * segment_tables + segments + 4) * PAGE_SIZE
}

/// Builds the identity map of `memory` bytes with tables from `tables` and turns DAT on.
pub fn init(memory: u64, tables: core::ops::Range<u64>) -> Result<(), crate::mm::error::MmError> {
    let mut alloc = BootTables { next: tables.start, end: tables.end };
    let mut machine = Machine;
    let mut space = DatSpace::new(&mut machine, &mut alloc)?;
    space.identity_map(&mut machine, &mut alloc, PhysAddr::new(0)..PhysAddr::new(memory), true)?;
    // SAFETY: `space` maps all `memory` bytes one to one, read-write.
    unsafe { super::cpu::dat_on(space.asce().bits()) };
    *KERNEL.lock() = Some(space);
    Ok(())
}

/// True once DAT is on.
pub fn active() -> bool {
    KERNEL.lock().is_some()
}

fn pte_of(pfn: u64) -> Option<(PhysAddr, Pte)> {
    let guard = KERNEL.lock();
    let space = guard.as_ref()?;
    match space.walk(&Machine, VirtAddr::new(pfn * PAGE_SIZE)) {
        crate::mm::dat::Walk::Pte { addr, pte } => Some((addr, pte)),
        _ => None,
    }
}

/// Makes every kernel access to frame `pfn` fault (page-translation exception).
pub fn revoke(pfn: u64) {
    if let Some((addr, pte)) = pte_of(pfn) {
        let mut machine = Machine;
        if pte.is_valid() {
            machine.invalidate_page(addr, VirtAddr::new(pfn * PAGE_SIZE));
        }
        machine.write_u64(addr, pte.bits() | PTE_INVALID);
    }
}

/// Undoes [`revoke`].
pub fn restore(pfn: u64) {
    if let Some((addr, pte)) = pte_of(pfn) {
        Machine.write_u64(addr, pte.bits() & !PTE_INVALID);
    }
}

/// True if the kernel mapping of `pfn` is revoked.
pub fn is_revoked(pfn: u64) -> bool {
    pte_of(pfn).is_some_and(|(_, pte)| !pte.is_valid())
}

/// Issues one storage-key instruction so that QEMU TCG starts emulating reference and
/// change bits (it does so only after the first one), and clears the frame's bits.
pub fn enable_storage_keys(pfn: u64) {
    storage::sske(pfn * PAGE_SIZE, 0);
}
