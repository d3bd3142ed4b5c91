//! `page_discard` and the discard fault (series patch 1/6 and 6/6): the host
//! threw a volatile page's contents away; remove every trace of the page so
//! the next access reloads it from the backing store.

use super::addr::{Pfn, PhysAddr};
use super::backing::BlockDevice;
use super::error::{Bug, MmError};
use super::hooks::PageStateHooks;
use super::machine::Machine;
use super::manager::Mm;
use super::page::PageFlags;

impl<M: Machine, D: BlockDevice, H: PageStateHooks> Mm<M, D, H> {
    /// `page_discard` (series 1/6; the seed 3/6 in `try_to_unmap`): the host threw
    /// the page's contents away; remove every trace of it so the next access reloads
    /// it from the backing store.
    ///
    /// As in the series: only the first discarder proceeds (`PG_discarded`); the page
    /// must be clean, not under writeback and without private data (the 1/6
    /// `VM_BUG_ON`s); it is unmapped through [`Mm::try_to_unmap`], which lets a
    /// discarded page leave even a `VM_LOCKED` VMA (the seed's exception), and must
    /// then be mapped nowhere; it leaves the LRU and the page cache, whose reference
    /// it drops. The frame is freed when the last reference goes, so nobody holding
    /// one sees it reused. A breach of these rules is refused and recorded
    /// ([`Bug`]): a dirty page keeps its dirty flag and its place in the cache.
    pub fn page_discard(&mut self, pfn: Pfn) -> Result<(), MmError> {
        let Some(page) = self.page(pfn) else {
            return Ok(());
        };
        // A free frame, or a discarded page's frame waiting for its grace period:
        // nothing left to discard.
        if page
            .flags()
            .intersects(PageFlags::FREE | PageFlags::RESERVED | PageFlags::DEFERRED)
        {
            return Ok(());
        }
        let breach = if page.test(PageFlags::DIRTY) {
            Some(Bug::DiscardDirty(pfn))
        } else if page.test(PageFlags::WRITEBACK) {
            Some(Bug::DiscardWriteback(pfn))
        } else if page.test(PageFlags::PRIVATE) {
            Some(Bug::DiscardPrivate(pfn))
        } else {
            None
        };
        if let Some(bug) = breach {
            return Err(self.bug(bug));
        }
        if self.page_mut(pfn).test_and_set(PageFlags::DISCARDED) {
            return Ok(());
        }
        let page = &self.frames.pages()[pfn];
        let in_cache = page
            .mapping()
            .and_then(|m| self.mappings.get(&m))
            .is_some_and(|m| m.lookup(page.index()) == Some(pfn));
        // The page cache's reference keeps the page while its mappings go; a page
        // outside the cache needs one of ours.
        if !in_cache {
            self.get_page(pfn);
        }
        let unmapped = self.try_to_unmap(pfn).is_ok() && self.frames.pages()[pfn].mapcount() == 0;
        if !unmapped {
            self.page_mut(pfn).clear(PageFlags::DISCARDED);
            if !in_cache {
                self.put_page(pfn);
            }
            return Err(self.bug(Bug::DiscardStillMapped(pfn)));
        }
        self.lru_del(pfn);
        if in_cache {
            self.remove_from_page_cache(pfn);
        }
        self.stats.discards += 1;
        let page = &self.frames.pages()[pfn];
        self.hooks.page_discarded(pfn, page);
        self.put_page(pfn); // the page cache's reference, or ours
        Ok(())
    }

    /// The block-volatility (0x1A) fault: the access at absolute address `addr` hit a
    /// discarded frame (6/6 `do_discard_fault`). With a reference taken
    /// (`get_page_unless_zero`) the page is discarded; the access is then retried and
    /// faults normally. A page nobody references any more was freed since the host
    /// discarded it: nothing to do, the retried access finds whatever is mapped now.
    /// Errors if the frame is not the memory manager's, or `page_discard` refused.
    pub fn discard_fault(&mut self, addr: PhysAddr) -> Result<(), MmError> {
        let pfn = addr.pfn();
        let page = self.page(pfn).ok_or(MmError::NoSuchObject)?;
        if page.refcount() == 0 {
            return Ok(());
        }
        self.get_page(pfn);
        let discarded = self.page_discard(pfn);
        self.put_page(pfn);
        discarded
    }
}

#[cfg(test)]
mod tests;
