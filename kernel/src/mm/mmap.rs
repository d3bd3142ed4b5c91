//! The system-call level of address-space changes (`mmap`, `munmap`,
//! `mprotect`): VMA surgery in [`super::vma`], then the page tables brought
//! in line with it.

use super::addr::{PAGE_SIZE, VirtAddr};
use super::backing::BlockDevice;
use super::error::MmError;
use super::hooks::PageStateHooks;
use super::ids::{MappingId, SpaceId};
use super::machine::Machine;
use super::manager::Mm;
use super::vma::{Backing, VmFlags, Vma};

/// What to map.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MapSource {
    /// Zero-filled anonymous memory.
    Anon,
    /// A file from byte `offset` (page aligned).
    File {
        /// The file's mapping (from [`Mm::open_file`]).
        mapping: MappingId,
        /// Byte offset in the file.
        offset: u64,
    },
}

impl<M: Machine, D: BlockDevice, H: PageStateHooks> Mm<M, D, H> {
    /// `mmap`: maps `len` bytes at `addr` (replacing what was there) or, with
    /// `None`, at the lowest free range. `VmFlags::LOCKED` (`MAP_LOCKED`) also
    /// locks the range. Returns the start address.
    pub fn mmap(
        &mut self,
        space: SpaceId,
        addr: Option<VirtAddr>,
        len: u64,
        flags: VmFlags,
        source: MapSource,
    ) -> Result<VirtAddr, MmError> {
        let backing = match source {
            MapSource::Anon => Backing::Anon,
            MapSource::File { mapping, offset } => {
                self.mapping_ref(mapping)?;
                if offset % PAGE_SIZE != 0 {
                    return Err(MmError::Unaligned);
                }
                Backing::File {
                    mapping,
                    pgoff: offset / PAGE_SIZE,
                }
            }
        };
        let unlocked = flags.without(VmFlags::LOCKED);
        let s = self.spaces.get_mut(&space).ok_or(MmError::NoSuchObject)?;
        let start = match addr {
            Some(addr) => {
                let replaced = s.vmas.map_fixed(addr, len, unlocked, backing)?;
                for vma in replaced {
                    self.zap_vma_range(space, &vma);
                }
                addr
            }
            None => s.vmas.map_anywhere(len, unlocked, backing)?,
        };
        if flags.contains(VmFlags::LOCKED) {
            self.mlock_fixup(space, start, len, true)?;
        }
        Ok(start)
    }

    /// `munmap`: removes `[addr, addr + len)`; holes are fine.
    pub fn munmap(&mut self, space: SpaceId, addr: VirtAddr, len: u64) -> Result<(), MmError> {
        let s = self.spaces.get_mut(&space).ok_or(MmError::NoSuchObject)?;
        let removed = s.vmas.unmap(addr, len)?;
        for vma in removed {
            self.zap_vma_range(space, &vma);
        }
        Ok(())
    }

    /// `mprotect`: sets read/write permission on a fully mapped range. Losing
    /// write permission write-protects the PTEs; gaining it changes nothing
    /// until the next store faults.
    pub fn mprotect(
        &mut self,
        space: SpaceId,
        addr: VirtAddr,
        len: u64,
        prot: VmFlags,
    ) -> Result<(), MmError> {
        let s = self.spaces.get_mut(&space).ok_or(MmError::NoSuchObject)?;
        let changed = s.vmas.protect(addr, len, prot)?;
        for vma in changed {
            let readable = vma.flags().contains(VmFlags::READ);
            let writable = vma.flags().contains(VmFlags::WRITE);
            for i in 0..vma.pages() {
                let va = VirtAddr::new(vma.start().as_u64() + i * PAGE_SIZE);
                if !readable && !writable {
                    // PROT_NONE: nothing may stay mapped.
                    self.zap_pte(space, va);
                } else if !writable {
                    let s = self.spaces.get_mut(&space).ok_or(MmError::NoSuchObject)?;
                    s.dat.protect(&mut self.machine, va, false);
                }
            }
        }
        Ok(())
    }

    /// Removes every PTE of a (removed) VMA range (`zap_page_range`).
    fn zap_vma_range(&mut self, space: SpaceId, vma: &Vma) {
        for i in 0..vma.pages() {
            let va = VirtAddr::new(vma.start().as_u64() + i * PAGE_SIZE);
            self.zap_pte(space, va);
        }
    }
}
