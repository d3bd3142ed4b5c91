//! Page reclaim (Linux `mm/vmscan.c`): age the active list into the inactive
//! list, and free inactive pages: unreferenced, unmappable (not in a locked
//! VMA), written back if dirty. Anonymous pages stay (there is no swap).

use alloc::vec::Vec;

use super::addr::Pfn;
use super::backing::BlockDevice;
use super::hooks::PageStateHooks;
use super::machine::Machine;
use super::manager::Mm;
use super::page::PageFlags;

/// How many times one reclaim call scans the whole LRU at most.
pub const RECLAIM_PASSES: usize = 4;

/// What `shrink_page_list` did with one page.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ShrinkOutcome {
    /// Freed.
    Freed,
    /// Kept and moved to the active list (referenced, locked VMA, anonymous).
    Activated,
    /// Kept on the inactive list (busy: locked, under writeback, pinned).
    Kept,
}

impl<M: Machine, D: BlockDevice, H: PageStateHooks> Mm<M, D, H> {
    /// Frees up to `target` frames; returns how many were freed (`try_to_free_pages`).
    ///
    /// Scans in up to [`RECLAIM_PASSES`] passes over the LRU (Linux: priority
    /// levels), so a page activated for its reference bit in one pass can be
    /// aged and freed in the next.
    pub fn reclaim(&mut self, target: usize) -> usize {
        let mut freed = 0;
        for _ in 0..RECLAIM_PASSES {
            let mut to_scan = self.lru.active.len() + self.lru.inactive.len();
            while to_scan > 0 && freed < target {
                // Keep the inactive list at least as long as the active one.
                if self.lru.inactive.len() < self.lru.active.len() {
                    let n = (self.lru.active.len() - self.lru.inactive.len())
                        .div_ceil(2)
                        .max(1);
                    self.shrink_active_list(n);
                }
                let batch = (target - freed).clamp(1, 32).min(to_scan);
                to_scan -= batch;
                let scanned = self.isolate_inactive(batch);
                if scanned.is_empty() {
                    self.shrink_active_list(self.lru.active.len());
                    continue;
                }
                for pfn in scanned {
                    if self.shrink_page(pfn) == ShrinkOutcome::Freed {
                        freed += 1;
                    }
                }
            }
            if freed >= target {
                break;
            }
        }
        self.stats.reclaimed += freed as u64;
        freed
    }

    /// Takes up to `n` pages from the back of the inactive list.
    fn isolate_inactive(&mut self, n: usize) -> Vec<Pfn> {
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let Some(pfn) = self.lru.inactive.back(self.frames.pages()) else {
                break;
            };
            out.push(pfn);
            // Rotate it to the front: `shrink_page` moves it wherever it belongs.
            let pages = self.frames.pages_mut();
            self.lru.inactive.remove(pages, pfn);
            self.lru.inactive.push_front(pages, pfn);
        }
        out
    }

    /// Ages up to `n` pages from the back of the active list: referenced
    /// mapped pages rotate, the others go inactive (`shrink_active_list`).
    pub fn shrink_active_list(&mut self, n: usize) {
        for _ in 0..n {
            let Some(pfn) = self.lru.active.back(self.frames.pages()) else {
                return;
            };
            let referenced = self.machine.test_and_clear_reference(pfn);
            let page = &self.frames.pages()[pfn];
            if referenced && page.mapcount() > 0 {
                let pages = self.frames.pages_mut();
                self.lru.active.remove(pages, pfn);
                self.lru.active.push_front(pages, pfn);
            } else {
                self.deactivate(pfn);
            }
        }
    }

    /// Reclaims one inactive page if it can (`shrink_page_list` for one page).
    pub fn shrink_page(&mut self, pfn: Pfn) -> ShrinkOutcome {
        let page = &self.frames.pages()[pfn];
        if !page.test(PageFlags::LRU) || page.test(PageFlags::ACTIVE) {
            return ShrinkOutcome::Kept;
        }
        if page.test(PageFlags::LOCKED) || page.test(PageFlags::WRITEBACK) {
            return ShrinkOutcome::Kept;
        }
        if page.test(PageFlags::DISCARDED) {
            // page_discard owns it now.
            return ShrinkOutcome::Kept;
        }
        let mapped = page.mapcount() > 0;
        let anon = page.test(PageFlags::ANON);
        let key_referenced = self.machine.test_and_clear_reference(pfn);
        let referenced = self.page_mut(pfn).test_and_clear(PageFlags::REFERENCED) || key_referenced;
        if (referenced && mapped) || anon {
            self.activate(pfn);
            return ShrinkOutcome::Activated;
        }
        self.shrink_unlocked_page(pfn)
    }

    /// Locks the page with a reference of ours, tries to free it, and drops both.
    fn shrink_unlocked_page(&mut self, pfn: Pfn) -> ShrinkOutcome {
        self.get_page(pfn);
        self.lock_page(pfn);
        let outcome = self.shrink_locked_page(pfn);
        match outcome {
            ShrinkOutcome::Freed => {
                self.page_mut(pfn).clear(PageFlags::LOCKED);
                self.put_page(pfn); // ours: the last, frees the frame
            }
            _ => {
                self.unlock_page(pfn);
                self.put_page(pfn);
            }
        }
        outcome
    }

    /// Frees a block of `count` contiguous frames aligned to `count` (a multi-frame
    /// DAT table) when no such block is free; returns whether one is free now.
    ///
    /// Scattered free frames cannot hold a segment table, and ordinary reclaim frees
    /// frames wherever the LRU order puts them, so it may free hundreds without
    /// freeing one aligned block. This is Linux's lumpy reclaim (2.6.23,
    /// `isolate_lru_pages` with `order > 0`: take the whole order-aligned block
    /// around a page), reference bits ignored as in lumpy mode
    /// (`page_check_references` returns `PAGEREF_RECLAIM`): blocks whose frames
    /// are all free or reclaimable page-cache pages are tried, those with the fewest
    /// mapped pages (a process's working set) and then the fewest busy frames first.
    /// Pinned, locked, anonymous, table and discarded frames make a block unusable.
    pub fn reclaim_block(&mut self, count: usize) -> bool {
        let align = count as u64;
        if self.frames.has_free_block(count, align) {
            return true;
        }
        let pages = self.frames.pages();
        let base = pages.base().as_u64();
        let end = base + pages.len() as u64;
        // (mapped pages, busy frames, first frame): blocks of unmapped cache go first, so
        // that a process's working set is taken only when nothing else frees a block.
        let mut candidates: Vec<(usize, usize, u64)> = Vec::new();
        let mut start = base.next_multiple_of(align);
        while start + align <= end {
            let block = (start..start + align).map(Pfn::new);
            let (mut busy, mut mapped) = (0, 0);
            let usable = block.clone().all(|pfn| {
                let page = &pages[pfn];
                if page.test(PageFlags::FREE) {
                    return true;
                }
                busy += 1;
                mapped += usize::from(page.mapcount() > 0);
                is_lumpy_candidate(page)
            });
            if usable {
                candidates.push((mapped, busy, start));
            }
            start += align;
        }
        candidates.sort_unstable();
        for (_, _, start) in candidates {
            let mut freed = 0;
            for n in start..start + align {
                let pfn = Pfn::new(n);
                // Each shrink may write back or unmap, so look at the frame again.
                if !self.frames.is_free(pfn)
                    && is_lumpy_candidate(&self.frames.pages()[pfn])
                    && self.shrink_unlocked_page(pfn) == ShrinkOutcome::Freed
                {
                    freed += 1;
                }
            }
            self.stats.reclaimed += freed;
            self.stats.lumpy_reclaims += 1;
            if self.frames.has_free_block(count, align) {
                return true;
            }
        }
        false
    }

    /// The part of `shrink_page_list` that runs with the page locked and an
    /// extra reference held by us.
    fn shrink_locked_page(&mut self, pfn: Pfn) -> ShrinkOutcome {
        if self.frames.pages()[pfn].mapcount() > 0 && self.try_to_unmap(pfn).is_err() {
            self.activate(pfn);
            return ShrinkOutcome::Activated;
        }
        let page = &self.frames.pages()[pfn];
        if (page.test(PageFlags::DIRTY) || page.test(PageFlags::WRITABLE))
            && self.write_one_page(pfn).is_err()
        {
            return ShrinkOutcome::Kept;
        }
        // Ours + the page cache's: anything more is a pin we must respect.
        if self.frames.pages()[pfn].refcount() != 2
            || self.frames.pages()[pfn].test(PageFlags::DIRTY)
        {
            return ShrinkOutcome::Kept;
        }
        self.remove_from_page_cache(pfn);
        self.lru_del(pfn);
        self.put_page(pfn); // the page cache's reference
        ShrinkOutcome::Freed
    }
}

/// Whether lumpy reclaim may free this in-use frame: a page-cache page on an LRU
/// list, held only by the cache and its PTEs, not locked, under writeback or
/// discarded. `shrink_locked_page` still checks the rest (locked VMAs, writeback).
fn is_lumpy_candidate(page: &super::page::Page) -> bool {
    page.test(PageFlags::LRU)
        && page.mapping().is_some()
        && !page.flags().intersects(
            PageFlags::ANON
                | PageFlags::LOCKED
                | PageFlags::WRITEBACK
                | PageFlags::DISCARDED
                | PageFlags::DAT_TABLE
                | PageFlags::RESERVED,
        )
        && page.refcount() == 1 + page.mapcount()
}

#[cfg(test)]
mod tests;
