//! Demand paging (Linux `mm/memory.c`): translation faults map the page
//! (file: from the page cache, reading it on a miss; anonymous: a zeroed
//! frame), protection faults on writable VMAs copy on write (private) or
//! dirty the cache page (shared, after `mprotect` gave write permission back).
//! Also `follow_page`, `get_user_pages`, `make_pages_present`.

use alloc::vec::Vec;

use super::addr::{PAGE_SIZE, Pfn, VirtAddr};
use super::backing::BlockDevice;
use super::dat::Walk;
use super::error::MmError;
use super::hooks::{PageStateHooks, Stability, StablePoint, VolatilePoint};
use super::ids::SpaceId;
use super::machine::Machine;
use super::manager::Mm;
use super::page::PageFlags;
use super::vma::{Backing, VmFlags, Vma};

/// The kind of access that faulted.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Access {
    /// A load (or instruction fetch).
    Read,
    /// A store.
    Write,
}

/// `follow_page` flags (`FOLL_*`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct FollowFlags {
    /// Take a reference on the page (`FOLL_GET`).
    pub get: bool,
    /// The caller will store to the page (`FOLL_WRITE`).
    pub write: bool,
}

/// How often `get_user_pages` faults one page in before giving up (a page
/// the host keeps discarding would otherwise loop forever).
const MAX_FAULT_RETRIES: usize = 16;

impl<M: Machine, D: BlockDevice, H: PageStateHooks> Mm<M, D, H> {
    /// Resolves a fault at `va` in `space` (`handle_mm_fault`). Errors mean
    /// the access is not allowed (no VMA, wrong permission, beyond EOF) or
    /// memory ran out; the caller reports them.
    pub fn handle_fault(
        &mut self,
        space: SpaceId,
        va: VirtAddr,
        access: Access,
    ) -> Result<(), MmError> {
        let va = va.align_down(PAGE_SIZE);
        let s = self.space_ref(space)?;
        let vma = *s.vmas.find(va).ok_or(MmError::AccessViolation)?;
        let needed = match access {
            Access::Read => VmFlags::READ,
            Access::Write => VmFlags::WRITE,
        };
        if !vma.flags().contains(needed) {
            return Err(MmError::AccessViolation);
        }
        match s.dat.walk(&self.machine, va) {
            Walk::Pte { pte, .. } if pte.is_valid() => {
                if access == Access::Write && pte.is_protected() {
                    self.do_wp_page(space, &vma, va, pte.pfn())
                } else {
                    Ok(()) // already resolved (spurious fault)
                }
            }
            Walk::OutOfRange => Err(MmError::OutOfRange),
            _ => match vma.backing() {
                Backing::Anon => self.do_anonymous_page(space, &vma, va),
                Backing::File { .. } => self.do_file_page(space, &vma, va, access),
            },
        }
    }

    /// A zeroed anonymous page (`do_anonymous_page`).
    fn do_anonymous_page(
        &mut self,
        space: SpaceId,
        vma: &Vma,
        va: VirtAddr,
    ) -> Result<(), MmError> {
        let pfn = self.alloc_page()?;
        self.machine.frame(pfn).fill(0);
        let page = self.page_mut(pfn);
        page.set_anon_owner(space, va.page_number());
        page.set(PageFlags::UPTODATE | PageFlags::DIRTY);
        self.lru_cache_add(pfn);
        if let Err(e) = self.map_page(space, va, pfn, vma.flags().contains(VmFlags::WRITE)) {
            self.put_page(pfn);
            return Err(e);
        }
        self.stats.anon_faults += 1;
        Ok(())
    }

    /// A file page (`do_no_page` / `filemap_nopage`). The cached page is looked up
    /// without a state change (series 5/6, `find_get_page_nodiscard`): a minor fault
    /// only maps it, and if the host discarded it the first access through the new
    /// mapping takes the discard fault. A miss reads the page, which may then become
    /// volatile (`filemap_nopage` after `readpage`). Write faults on private VMAs copy
    /// at once (the source made stable first); on shared VMAs they make the page
    /// stable and dirty before mapping it writable. Read faults on shared writable
    /// VMAs map writable at once, as s390 does without write notification: stores
    /// then mark only the storage key, and the page is potentially volatile or stable
    /// (4/6); other read faults map read-only.
    fn do_file_page(
        &mut self,
        space: SpaceId,
        vma: &Vma,
        va: VirtAddr,
        access: Access,
    ) -> Result<(), MmError> {
        let (Some(mapping), Some(index)) = (vma.mapping(), vma.file_index(va)) else {
            return Err(MmError::NoSuchObject);
        };
        self.check_index(mapping, index)?;
        let pfn = match self.find_get_page_nodiscard(mapping, index) {
            Some(pfn) => {
                // A page still being read in is waited for, never mapped half-read.
                self.wait_uptodate(pfn)?;
                self.stats.minor_faults += 1;
                pfn
            }
            None => {
                let pfn = self.read_new_page(mapping, index)?;
                self.stats.major_faults += 1;
                self.try_volatile(pfn, VolatilePoint::AfterReadpage, 1);
                pfn
            }
        };
        let shared = vma.flags().contains(VmFlags::SHARED);
        if access == Access::Write && !shared {
            // Early COW: the copy is all this VMA ever sees of the page.
            let result = self.cow_copy(space, va, pfn);
            self.put_page(pfn);
            return result;
        }
        if access == Access::Write {
            // A page about to be dirtied must be stable first.
            if self.make_stable(pfn, StablePoint::WriteNotify) == Stability::Discarded {
                self.put_page(pfn);
                let _ = self.page_discard(pfn);
                return Ok(()); // the store refaults and reads the page again
            }
            self.set_page_dirty(pfn);
        }
        let writable = shared && vma.flags().contains(VmFlags::WRITE);
        if let Err(e) = self.map_page(space, va, pfn, writable) {
            self.put_page(pfn);
            return Err(e);
        }
        Ok(())
    }

    /// Maps a private anonymous copy of `src` at `va` (`va` must be unmapped).
    /// If the host discarded `src`, nothing is mapped: `page_discard` ran and
    /// the access will refault and reload it.
    fn cow_copy(&mut self, space: SpaceId, va: VirtAddr, src: Pfn) -> Result<(), MmError> {
        if self.make_stable(src, StablePoint::CopyOnWrite) == Stability::Discarded {
            let _ = self.page_discard(src);
            return Ok(());
        }
        let new = self.alloc_page()?;
        let copy = *self.machine.frame_ref(src);
        *self.machine.frame(new) = copy;
        let page = self.page_mut(new);
        page.set_anon_owner(space, va.page_number());
        page.set(PageFlags::UPTODATE | PageFlags::DIRTY);
        self.lru_cache_add(new);
        if let Err(e) = self.map_page(space, va, new, true) {
            self.put_page(new);
            return Err(e);
        }
        self.stats.cow_faults += 1;
        Ok(())
    }

    /// A store to a write-protected PTE in a writable VMA (`do_wp_page`).
    fn do_wp_page(
        &mut self,
        space: SpaceId,
        vma: &Vma,
        va: VirtAddr,
        pfn: Pfn,
    ) -> Result<(), MmError> {
        let Some(page) = self.page(pfn) else {
            return Err(MmError::AccessViolation);
        };
        let anon = page.test(PageFlags::ANON);
        if anon || vma.flags().contains(VmFlags::SHARED) {
            // Reuse: our own anonymous page, or a shared page now dirty.
            if !anon {
                if self.make_stable(pfn, StablePoint::WriteNotify) == Stability::Discarded {
                    let _ = self.page_discard(pfn);
                    return Ok(()); // unmapped now: the store refaults
                }
                self.set_page_dirty(pfn);
                self.stats.write_notify_faults += 1;
            }
            self.page_mut(pfn).set(PageFlags::WRITABLE);
            let s = self.spaces.get_mut(&space).ok_or(MmError::NoSuchObject)?;
            s.dat.protect(&mut self.machine, va, true);
            return Ok(());
        }
        // Private file page: copy, then replace the read-only mapping.
        self.get_page(pfn);
        self.zap_pte(space, va);
        let result = self.cow_copy(space, va, pfn);
        self.put_page(pfn);
        result
    }

    /// `follow_page`: the page mapped at `va`, if present and (for `write`)
    /// writable. With `get`, or in a `VM_LOCKED` VMA (the seed), the page is
    /// made stable; if the host discarded it, it is forced out
    /// (`page_discard`) and `None` returned so the caller faults it back in.
    pub fn follow_page(&mut self, space: SpaceId, va: VirtAddr, flags: FollowFlags) -> Option<Pfn> {
        self.follow_page_checked(space, va, flags).ok().flatten()
    }

    /// [`Mm::follow_page`], with the error of a `page_discard` that refused.
    fn follow_page_checked(
        &mut self,
        space: SpaceId,
        va: VirtAddr,
        flags: FollowFlags,
    ) -> Result<Option<Pfn>, MmError> {
        let va = va.align_down(PAGE_SIZE);
        let Some(s) = self.spaces.get(&space) else {
            return Ok(None);
        };
        let Some(vma) = s.vmas.find(va) else {
            return Ok(None);
        };
        let locked = vma.is_locked();
        let Some((_, pte)) = s.dat.walk(&self.machine, va).valid_pte() else {
            return Ok(None);
        };
        if flags.write && pte.is_protected() {
            return Ok(None);
        }
        let pfn = pte.pfn();
        if self.page(pfn).is_none() {
            return Ok(None);
        }
        if flags.get {
            self.get_page(pfn);
        }
        if flags.get || locked {
            let at = if flags.get {
                StablePoint::Pin
            } else {
                StablePoint::FollowLocked
            };
            if self.make_stable(pfn, at) == Stability::Discarded {
                if flags.get {
                    self.put_page(pfn);
                }
                self.page_discard(pfn)?;
                return Ok(None);
            }
        }
        Ok(Some(pfn))
    }

    /// `get_user_pages`: faults in `count` pages from `start` and, with
    /// `pin`, returns them with a reference each (release with [`Mm::put_page`]).
    /// Without `pin` the returned list is empty.
    pub fn get_user_pages(
        &mut self,
        space: SpaceId,
        start: VirtAddr,
        count: u64,
        write: bool,
        pin: bool,
    ) -> Result<Vec<Pfn>, MmError> {
        let mut pinned = Vec::new();
        let flags = FollowFlags { get: pin, write };
        let access = if write { Access::Write } else { Access::Read };
        for i in 0..count {
            let va = VirtAddr::new(start.as_u64() + i * PAGE_SIZE);
            let mut tries = 0;
            loop {
                let followed = match self.follow_page_checked(space, va, flags) {
                    Ok(followed) => followed,
                    Err(e) => {
                        self.release_pages(&pinned);
                        return Err(e);
                    }
                };
                if let Some(pfn) = followed {
                    if pin {
                        pinned.push(pfn);
                    }
                    break;
                }
                tries += 1;
                if tries > MAX_FAULT_RETRIES {
                    self.release_pages(&pinned);
                    return Err(MmError::OutOfMemory);
                }
                if let Err(e) = self.handle_fault(space, va, access) {
                    self.release_pages(&pinned);
                    return Err(e);
                }
            }
        }
        Ok(pinned)
    }

    /// Drops one reference on each page.
    pub fn release_pages(&mut self, pages: &[Pfn]) {
        for &pfn in pages {
            self.put_page(pfn);
        }
    }

    /// `make_pages_present`: faults in every page of `[start, end)` (inside
    /// one VMA), for writing if the VMA is writable, without pinning.
    pub fn make_pages_present(
        &mut self,
        space: SpaceId,
        start: VirtAddr,
        end: VirtAddr,
    ) -> Result<(), MmError> {
        let vma = *self
            .space_ref(space)?
            .vmas
            .find(start)
            .ok_or(MmError::NotMapped)?;
        let write = vma.flags().contains(VmFlags::WRITE);
        let count = (end.as_u64() - start.as_u64()) / PAGE_SIZE;
        self.get_user_pages(space, start, count, write, false)
            .map(drop)
    }
}

#[cfg(test)]
mod tests;
