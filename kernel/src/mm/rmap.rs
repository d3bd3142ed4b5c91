//! The reverse map (Linux `mm/rmap.c`): from a page to every PTE mapping it.
//!
//! File pages are found through the VMAs that map their mapping (Linux walks
//! `mapping->i_mmap`; we walk each address space's VMAs of that mapping), an
//! anonymous page through its owner address space and virtual page number
//! (no fork, so an anonymous page is mapped at most once).

use alloc::vec::Vec;

use super::addr::{PAGE_SIZE, Pfn, VirtAddr};
use super::backing::BlockDevice;
use super::error::MmError;
use super::hooks::{PageStateHooks, VolatilePoint};
use super::ids::SpaceId;
use super::machine::Machine;
use super::manager::Mm;
use super::page::PageFlags;

/// One PTE that maps a page.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct RmapEntry {
    /// The address space.
    pub space: SpaceId,
    /// The virtual address.
    pub va: VirtAddr,
    /// Whether the VMA there is `VM_LOCKED`.
    pub locked: bool,
}

/// Why `try_to_unmap` left a page mapped.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum UnmapError {
    /// A `VM_LOCKED` VMA maps the page (`SWAP_FAIL`).
    Locked,
}

impl<M: Machine, D: BlockDevice, H: PageStateHooks> Mm<M, D, H> {
    /// Every PTE that maps `pfn` (`rmap_walk`).
    pub fn rmap(&self, pfn: Pfn) -> Vec<RmapEntry> {
        let mut out = Vec::new();
        let Some(page) = self.page(pfn) else {
            return out;
        };
        let candidates: Vec<(SpaceId, VirtAddr, bool)> = if let Some(space) = page.anon_space() {
            let va = VirtAddr::new(page.index() * PAGE_SIZE);
            self.spaces
                .get(&space)
                .and_then(|s| s.vmas.find(va))
                .map(|vma| (space, va, vma.is_locked()))
                .into_iter()
                .collect()
        } else if let Some(mapping) = page.mapping() {
            let index = page.index();
            self.spaces
                .iter()
                .flat_map(|(&id, s)| {
                    s.vmas.mapping_vmas(mapping).filter_map(move |vma| {
                        vma.address_of(mapping, index)
                            .map(|va| (id, va, vma.is_locked()))
                    })
                })
                .collect()
        } else {
            Vec::new()
        };
        for (space, va, locked) in candidates {
            let dat = &self.spaces[&space].dat;
            if dat
                .walk(&self.machine, va)
                .valid_pte()
                .is_some_and(|(_, pte)| pte.pfn() == pfn)
            {
                out.push(RmapEntry { space, va, locked });
            }
        }
        out
    }

    /// Establishes a PTE for `pfn` at `va` (`page_add_file_rmap` /
    /// `page_add_anon_rmap` with `set_pte_at`). The caller's reference on the
    /// page becomes the mapping's reference. A file page may then become volatile;
    /// mapped writable it becomes potentially volatile or, if it may not, stable
    /// (series patch 4/6, `page_check_writable`).
    pub(crate) fn map_page(
        &mut self,
        space: SpaceId,
        va: VirtAddr,
        pfn: Pfn,
        writable: bool,
    ) -> Result<(), MmError> {
        self.with_table_reclaim(|mm| {
            let s = mm.spaces.get_mut(&space).ok_or(MmError::NoSuchObject)?;
            let mut tables = super::manager::TableFrames {
                frames: &mut mm.frames,
                hooks: &mut mm.hooks,
            };
            s.dat.map(&mut mm.machine, &mut tables, va, pfn, writable)
        })?;
        let page = self.page_mut(pfn);
        page.inc_mapcount();
        if writable {
            page.set(PageFlags::WRITABLE);
        }
        if !page.test(PageFlags::ANON) {
            let at = if writable {
                VolatilePoint::WritableRmapAdd
            } else {
                VolatilePoint::RmapAdd
            };
            self.try_volatile(pfn, at, 0);
        }
        Ok(())
    }

    /// `page_remove_rmap`: one PTE less. When the last one goes the page is no
    /// longer mapped writable (4/6), and a storage-key change bit stores left on it
    /// moves into the dirty flag, the page made stable first ([`Mm::transfer_dirty`]).
    pub(crate) fn page_remove_rmap(&mut self, pfn: Pfn) {
        if self.page_mut(pfn).dec_mapcount() > 0 {
            return;
        }
        self.page_mut(pfn).clear(PageFlags::WRITABLE);
        self.transfer_dirty(pfn);
    }

    /// Removes the PTE at `va` if it maps a page with metadata, releasing the
    /// mapping's reference. Returns the page.
    pub(crate) fn zap_pte(&mut self, space: SpaceId, va: VirtAddr) -> Option<Pfn> {
        let s = self.spaces.get_mut(&space)?;
        let pte = s.dat.unmap(&mut self.machine, va)?;
        let pfn = pte.pfn();
        if !self.frames.pages().contains(pfn) {
            return None;
        }
        self.page_remove_rmap(pfn);
        self.put_page(pfn);
        Some(pfn)
    }

    /// `try_to_unmap`: removes every PTE mapping the page, unless a `VM_LOCKED`
    /// VMA maps it and the page-state layer does not allow it
    /// ([`PageStateHooks::may_unmap_in_locked_vma`], the seed's exception for
    /// discarded pages). Nothing is unmapped when it fails.
    pub fn try_to_unmap(&mut self, pfn: Pfn) -> Result<(), UnmapError> {
        let entries = self.rmap(pfn);
        if entries.iter().any(|e| e.locked) {
            let page = &self.frames.pages()[pfn];
            if !self.hooks.may_unmap_in_locked_vma(pfn, page) {
                self.stats.unmap_refused_locked += 1;
                return Err(UnmapError::Locked);
            }
        }
        for e in entries {
            self.zap_pte(e.space, e.va);
        }
        Ok(())
    }

    /// Removes every PTE mapping the page, locked VMAs included (truncation; a
    /// discard goes through [`Mm::try_to_unmap`] and the seed's exception).
    pub(crate) fn unmap_everywhere(&mut self, pfn: Pfn) {
        for e in self.rmap(pfn) {
            self.zap_pte(e.space, e.va);
        }
    }
}
