//! `mlock`/`munlock` (Linux `mm/mlock.c`) with the seed's rule (patch 3/6):
//! `mlock_fixup` marks the file's mapping `mlocked` (never cleared) before
//! `make_pages_present` faults every page in through `follow_page`, which
//! makes each page of the locked VMA stable.

use super::addr::VirtAddr;
use super::backing::BlockDevice;
use super::error::MmError;
use super::hooks::PageStateHooks;
use super::ids::SpaceId;
use super::machine::Machine;
use super::manager::Mm;

impl<M: Machine, D: BlockDevice, H: PageStateHooks> Mm<M, D, H> {
    /// `mlock(addr, len)`: the whole range must be mapped.
    pub fn mlock(&mut self, space: SpaceId, addr: VirtAddr, len: u64) -> Result<(), MmError> {
        self.mlock_fixup(space, addr, len, true)
    }

    /// `munlock(addr, len)`: clears `VM_LOCKED`; the mappings stay `mlocked`.
    pub fn munlock(&mut self, space: SpaceId, addr: VirtAddr, len: u64) -> Result<(), MmError> {
        self.mlock_fixup(space, addr, len, false)
    }

    /// Sets or clears `VM_LOCKED` on the range; when locking, marks each file
    /// mapping `mlocked` and makes every page present.
    pub fn mlock_fixup(
        &mut self,
        space: SpaceId,
        addr: VirtAddr,
        len: u64,
        lock: bool,
    ) -> Result<(), MmError> {
        let s = self.spaces.get_mut(&space).ok_or(MmError::NoSuchObject)?;
        let changed = s.vmas.set_locked(addr, len, lock)?;
        if !lock {
            return Ok(());
        }
        for vma in &changed {
            if let Some(mapping) = vma.mapping()
                && let Some(m) = self.mappings.get_mut(&mapping)
            {
                m.set_mlocked();
            }
        }
        for vma in &changed {
            self.make_pages_present(space, vma.start(), vma.end())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
