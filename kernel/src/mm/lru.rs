//! Active and inactive LRU lists (Linux `mm/swap.c`): new pages start inactive,
//! a second reference activates them, aging moves unreferenced pages back.

use super::addr::Pfn;
use super::backing::BlockDevice;
use super::hooks::{PageStateHooks, VolatilePoint};
use super::list::PageList;
use super::machine::Machine;
use super::manager::Mm;
use super::page::PageFlags;

/// The two LRU lists. Front = most recently added, back = reclaim end.
#[derive(Debug, Default)]
pub struct Lru {
    pub(crate) active: PageList,
    pub(crate) inactive: PageList,
}

impl Lru {
    /// Empty lists.
    pub const fn new() -> Self {
        Self {
            active: PageList::new(),
            inactive: PageList::new(),
        }
    }

    /// Pages on the active list.
    pub fn active_len(&self) -> usize {
        self.active.len()
    }

    /// Pages on the inactive list.
    pub fn inactive_len(&self) -> usize {
        self.inactive.len()
    }
}

impl<M: Machine, D: BlockDevice, H: PageStateHooks> Mm<M, D, H> {
    /// The LRU lists (lengths).
    pub fn lru(&self) -> &Lru {
        &self.lru
    }

    /// Puts a page on the inactive list (`lru_cache_add`); it may then become volatile.
    pub fn lru_cache_add(&mut self, pfn: Pfn) {
        let pages = self.frames.pages_mut();
        let page = &mut pages[pfn];
        if page.test(PageFlags::LRU) || page.test(PageFlags::DISCARDED) {
            // Discarded pages never go back on the LRU (series patch 1/6).
            return;
        }
        page.set(PageFlags::LRU);
        page.clear(PageFlags::ACTIVE);
        self.lru.inactive.push_front(pages, pfn);
        self.try_volatile(pfn, VolatilePoint::LruAdd, 1);
    }

    /// Takes a page off whichever LRU list holds it (`del_page_from_lru`).
    pub fn lru_del(&mut self, pfn: Pfn) {
        let pages = self.frames.pages_mut();
        let page = &mut pages[pfn];
        if !page.test_and_clear(PageFlags::LRU) {
            return;
        }
        if page.test_and_clear(PageFlags::ACTIVE) {
            self.lru.active.remove(pages, pfn);
        } else {
            self.lru.inactive.remove(pages, pfn);
        }
    }

    /// Moves an inactive page to the active list (`activate_page`).
    pub(crate) fn activate(&mut self, pfn: Pfn) {
        let pages = self.frames.pages_mut();
        let page = &mut pages[pfn];
        if !page.test(PageFlags::LRU) || page.test(PageFlags::ACTIVE) {
            return;
        }
        page.set(PageFlags::ACTIVE);
        page.clear(PageFlags::REFERENCED);
        self.lru.inactive.remove(pages, pfn);
        self.lru.active.push_front(pages, pfn);
    }

    /// Moves an active page to the front of the inactive list.
    pub(crate) fn deactivate(&mut self, pfn: Pfn) {
        let pages = self.frames.pages_mut();
        let page = &mut pages[pfn];
        if !page.test(PageFlags::LRU) || !page.test(PageFlags::ACTIVE) {
            return;
        }
        page.clear(PageFlags::ACTIVE);
        self.lru.active.remove(pages, pfn);
        self.lru.inactive.push_front(pages, pfn);
        self.try_volatile(pfn, VolatilePoint::LruAdd, 0);
    }

    /// A use of the page through a kernel path (`mark_page_accessed`): the
    /// second use of an inactive page activates it.
    pub fn mark_page_accessed(&mut self, pfn: Pfn) {
        let page = self.page_mut(pfn);
        if page.test(PageFlags::REFERENCED) && !page.test(PageFlags::ACTIVE) {
            self.activate(pfn);
        } else {
            page.set(PageFlags::REFERENCED);
        }
    }
}
