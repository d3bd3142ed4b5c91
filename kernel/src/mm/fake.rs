//! Host fakes of the machine traits, for unit tests (here and in `cmma`).

use alloc::collections::BTreeSet;
use alloc::vec;
use alloc::vec::Vec;

use super::addr::{PAGE_BYTES, Pfn, PhysAddr, VirtAddr};
use super::machine::{PhysMem, StorageKeys, Tlb};

/// A machine with `frames` frames of zeroed storage, a TLB that records what it
/// was told, and storage keys the test sets through [`FakeMachine::touch`].
#[derive(Debug)]
pub struct FakeMachine {
    storage: Vec<[u8; PAGE_BYTES]>,
    /// `(pte address, va)` of every `invalidate_page`, in order.
    pub invalidated: Vec<(PhysAddr, VirtAddr)>,
    /// Number of `flush_all` calls.
    pub flushes: usize,
    referenced: BTreeSet<u64>,
    changed: BTreeSet<u64>,
}

impl FakeMachine {
    /// Storage for frames `0 .. frames`.
    pub fn new(frames: usize) -> Self {
        Self {
            storage: vec![[0; PAGE_BYTES]; frames],
            invalidated: Vec::new(),
            flushes: 0,
            referenced: BTreeSet::new(),
            changed: BTreeSet::new(),
        }
    }

    /// Sets the reference bit (and, for a write, the change bit) as a CPU access would.
    pub fn touch(&mut self, pfn: Pfn, write: bool) {
        self.referenced.insert(pfn.as_u64());
        if write {
            self.changed.insert(pfn.as_u64());
        }
    }

    /// The change bit, without clearing it.
    pub fn is_changed(&self, pfn: Pfn) -> bool {
        self.changed.contains(&pfn.as_u64())
    }

    fn slot(pfn: Pfn) -> usize {
        usize::try_from(pfn.as_u64()).expect("pfn fits usize")
    }
}

impl PhysMem for FakeMachine {
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        let off = pa.page_offset() as usize;
        let frame = self.frame_ref(pa.pfn());
        u64::from_be_bytes(frame[off..off + 8].try_into().expect("8 bytes"))
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        let off = pa.page_offset() as usize;
        self.frame(pa.pfn())[off..off + 8].copy_from_slice(&value.to_be_bytes());
    }

    fn frame(&mut self, pfn: Pfn) -> &mut [u8; PAGE_BYTES] {
        // A store through the kernel mapping sets the change bit, as on s390x.
        self.touch(pfn, true);
        &mut self.storage[Self::slot(pfn)]
    }

    fn frame_ref(&self, pfn: Pfn) -> &[u8; PAGE_BYTES] {
        &self.storage[Self::slot(pfn)]
    }
}

impl Tlb for FakeMachine {
    fn invalidate_page(&mut self, pte: PhysAddr, va: VirtAddr) {
        self.invalidated.push((pte, va));
    }

    fn flush_all(&mut self) {
        self.flushes += 1;
    }
}

impl StorageKeys for FakeMachine {
    fn test_and_clear_reference(&mut self, pfn: Pfn) -> bool {
        self.referenced.remove(&pfn.as_u64())
    }

    fn change_bit(&mut self, pfn: Pfn) -> bool {
        self.changed.contains(&pfn.as_u64())
    }

    fn clear_change(&mut self, pfn: Pfn) {
        self.changed.remove(&pfn.as_u64());
    }
}
