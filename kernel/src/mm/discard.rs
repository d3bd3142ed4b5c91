//! `page_discard` and the discard fault (series patch 1/6 and 6/6): the host
//! threw a volatile page's contents away; remove every trace of the page so
//! the next access reloads it from the backing store.

use super::addr::{Pfn, PhysAddr};
use super::backing::BlockDevice;
use super::error::MmError;
use super::hooks::PageStateHooks;
use super::machine::Machine;
use super::manager::Mm;
use super::page::PageFlags;

impl<M: Machine, D: BlockDevice, H: PageStateHooks> Mm<M, D, H> {
    /// `page_discard`: once per page (the `DISCARDED` flag), unmap it
    /// everywhere (locked VMAs included), take it off the LRU and out of the
    /// page cache, and drop the cache's reference. The frame is freed when the
    /// last reference goes, so nobody holding one sees it reused.
    pub fn page_discard(&mut self, pfn: Pfn) {
        let Some(page) = self.page(pfn) else {
            return;
        };
        if page.test(PageFlags::FREE) || page.test(PageFlags::RESERVED) {
            return;
        }
        if self.page_mut(pfn).test_and_set(PageFlags::DISCARDED) {
            return;
        }
        self.get_page(pfn);
        self.unmap_everywhere(pfn);
        self.lru_del(pfn);
        let page = &self.frames.pages()[pfn];
        let in_cache = page
            .mapping()
            .and_then(|m| self.mappings.get(&m))
            .is_some_and(|m| m.lookup(page.index()) == Some(pfn));
        // The contents are gone: there is nothing left to write back.
        self.page_mut(pfn).clear(PageFlags::DIRTY);
        if in_cache {
            self.remove_from_page_cache(pfn);
            self.put_page(pfn); // the page cache's reference
        }
        self.stats.discards += 1;
        let page = &self.frames.pages()[pfn];
        self.hooks.page_discarded(pfn, page);
        self.put_page(pfn);
    }

    /// The block-volatility (0x1A) fault: the access at absolute address
    /// `addr` hit a discarded frame. Discards the page; the access is then
    /// retried and faults normally. Errors if the frame has no page-cache page.
    pub fn discard_fault(&mut self, addr: PhysAddr) -> Result<(), MmError> {
        let pfn = addr.pfn();
        let page = self.page(pfn).ok_or(MmError::NoSuchObject)?;
        if page.refcount() == 0 {
            return Err(MmError::NoSuchObject);
        }
        self.page_discard(pfn);
        Ok(())
    }
}

#[cfg(test)]
mod tests;
