//! Intrusive doubly linked lists of frames, linked through [`Page`](super::page::Page)
//! metadata (Linux: `list_head lru`). Used by the free list and the LRU lists; a
//! frame is on at most one list at a time, which the owner tracks with page flags.

use super::addr::Pfn;
use super::page::{NO_LINK, PageArray};

/// A list of frames whose links live in a [`PageArray`]. O(1) insert and remove.
#[derive(Debug)]
pub struct PageList {
    head: u32,
    tail: u32,
    len: usize,
}

impl Default for PageList {
    fn default() -> Self {
        Self::new()
    }
}

impl PageList {
    /// An empty list.
    pub const fn new() -> Self {
        Self {
            head: NO_LINK,
            tail: NO_LINK,
            len: 0,
        }
    }

    /// Number of frames on the list.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The first frame.
    pub fn front(&self, pages: &PageArray) -> Option<Pfn> {
        (self.head != NO_LINK).then(|| pages.pfn_of(self.head))
    }

    /// The last frame.
    pub fn back(&self, pages: &PageArray) -> Option<Pfn> {
        (self.tail != NO_LINK).then(|| pages.pfn_of(self.tail))
    }

    /// Inserts `pfn` (on no list) at the front.
    pub fn push_front(&mut self, pages: &mut PageArray, pfn: Pfn) {
        let link = pages.link_of(pfn);
        let old_head = self.head;
        {
            let page = pages.by_link(link);
            debug_assert!(page.prev == NO_LINK && page.next == NO_LINK);
            page.prev = NO_LINK;
            page.next = old_head;
        }
        if old_head == NO_LINK {
            self.tail = link;
        } else {
            pages.by_link(old_head).prev = link;
        }
        self.head = link;
        self.len += 1;
    }

    /// Inserts `pfn` (on no list) at the back.
    pub fn push_back(&mut self, pages: &mut PageArray, pfn: Pfn) {
        let link = pages.link_of(pfn);
        let old_tail = self.tail;
        {
            let page = pages.by_link(link);
            debug_assert!(page.prev == NO_LINK && page.next == NO_LINK);
            page.next = NO_LINK;
            page.prev = old_tail;
        }
        if old_tail == NO_LINK {
            self.head = link;
        } else {
            pages.by_link(old_tail).next = link;
        }
        self.tail = link;
        self.len += 1;
    }

    /// Removes `pfn`, which must be on this list.
    pub fn remove(&mut self, pages: &mut PageArray, pfn: Pfn) {
        let link = pages.link_of(pfn);
        let (prev, next) = {
            let page = pages.by_link(link);
            let links = (page.prev, page.next);
            page.prev = NO_LINK;
            page.next = NO_LINK;
            links
        };
        debug_assert!(
            prev != NO_LINK || self.head == link,
            "frame not on this list"
        );
        if prev == NO_LINK {
            self.head = next;
        } else {
            pages.by_link(prev).next = next;
        }
        if next == NO_LINK {
            self.tail = prev;
        } else {
            pages.by_link(next).prev = prev;
        }
        self.len -= 1;
    }

    /// Removes and returns the first frame.
    pub fn pop_front(&mut self, pages: &mut PageArray) -> Option<Pfn> {
        let pfn = self.front(pages)?;
        self.remove(pages, pfn);
        Some(pfn)
    }

    /// Removes and returns the last frame.
    pub fn pop_back(&mut self, pages: &mut PageArray) -> Option<Pfn> {
        let pfn = self.back(pages)?;
        self.remove(pages, pfn);
        Some(pfn)
    }

    /// The frames from front to back.
    pub fn iter<'a>(&self, pages: &'a PageArray) -> impl Iterator<Item = Pfn> + 'a {
        let mut link = self.head;
        core::iter::from_fn(move || {
            if link == NO_LINK {
                return None;
            }
            let pfn = pages.pfn_of(link);
            link = pages.by_link_ref(link).next;
            Some(pfn)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::VecDeque;
    use alloc::vec::Vec;
    use proptest::prelude::*;

    fn contents(list: &PageList, pages: &PageArray) -> Vec<u64> {
        list.iter(pages).map(Pfn::as_u64).collect()
    }

    #[test]
    fn push_pop_and_remove_keep_order() {
        let mut pages = PageArray::new(Pfn::new(10), 8);
        let mut list = PageList::new();
        list.push_back(&mut pages, Pfn::new(11));
        list.push_back(&mut pages, Pfn::new(12));
        list.push_front(&mut pages, Pfn::new(10));
        list.push_back(&mut pages, Pfn::new(17));
        assert_eq!(contents(&list, &pages), [10, 11, 12, 17]);
        list.remove(&mut pages, Pfn::new(12));
        assert_eq!(contents(&list, &pages), [10, 11, 17]);
        assert_eq!(list.pop_back(&mut pages), Some(Pfn::new(17)));
        assert_eq!(list.pop_front(&mut pages), Some(Pfn::new(10)));
        assert_eq!(list.len(), 1);
        assert_eq!(list.pop_front(&mut pages), Some(Pfn::new(11)));
        assert_eq!(list.pop_front(&mut pages), None);
        assert!(list.is_empty());
        // A removed frame can go on another list.
        let mut other = PageList::new();
        other.push_front(&mut pages, Pfn::new(12));
        assert_eq!(contents(&other, &pages), [12]);
    }

    proptest! {
        #[test]
        fn matches_a_deque(ops in proptest::collection::vec((0u8..4, 0u64..16), 0..200)) {
            let mut pages = PageArray::new(Pfn::new(0), 16);
            let mut list = PageList::new();
            let mut model: VecDeque<u64> = VecDeque::new();
            for (op, n) in ops {
                let on_list = model.contains(&n);
                match op {
                    0 if !on_list => { list.push_front(&mut pages, Pfn::new(n)); model.push_front(n); }
                    1 if !on_list => { list.push_back(&mut pages, Pfn::new(n)); model.push_back(n); }
                    2 if on_list => {
                        list.remove(&mut pages, Pfn::new(n));
                        model.retain(|&x| x != n);
                    }
                    3 => {
                        prop_assert_eq!(list.pop_back(&mut pages).map(Pfn::as_u64), model.pop_back());
                    }
                    _ => {}
                }
                prop_assert_eq!(list.len(), model.len());
                prop_assert_eq!(contents(&list, &pages), model.iter().copied().collect::<Vec<_>>());
            }
        }
    }
}
