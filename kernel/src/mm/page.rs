//! Per-frame metadata (Linux: `struct page`) and the array that holds one per frame.

use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};

use super::addr::Pfn;
use super::ids::{MappingId, SpaceId};

/// `Page::last_state` values: the page-state layer's record of what it last set for
/// the frame (0: never set). Defined here, beside the field, so that the invariant
/// checks (`mm::debug`) read them without importing the layer (`cmma::states`).
pub mod last {
    /// Never set by this layer.
    pub const UNKNOWN: u8 = 0;
    /// Stable (ORC 1 or 6).
    pub const STABLE: u8 = 1;
    /// Unused (ORC 2): a free frame.
    pub const UNUSED: u8 = 2;
    /// Volatile (ORC 3): the host may discard it.
    pub const VOLATILE: u8 = 3;
    /// Potentially volatile (ORC 4): the host may discard it while its change bit is off.
    pub const POT_VOLATILE: u8 = 4;

    /// Whether the host may discard a frame in `state`: volatile or potentially volatile.
    pub fn is_discardable(state: u8) -> bool {
        matches!(state, VOLATILE | POT_VOLATILE)
    }
}

/// Page flag bits (Linux: `PG_*`).
#[derive(Clone, Copy, PartialEq, Eq, Default)]
pub struct PageFlags(u32);

impl PageFlags {
    /// Locked for I/O or for a state change of the contents (`PG_locked`).
    pub const LOCKED: Self = Self(1 << 0);
    /// Contents newer than the backing store (`PG_dirty`).
    pub const DIRTY: Self = Self(1 << 1);
    /// Contents valid (`PG_uptodate`).
    pub const UPTODATE: Self = Self(1 << 2);
    /// Being written to the backing store (`PG_writeback`).
    pub const WRITEBACK: Self = Self(1 << 3);
    /// On an LRU list (`PG_lru`).
    pub const LRU: Self = Self(1 << 4);
    /// On the active rather than the inactive LRU list (`PG_active`).
    pub const ACTIVE: Self = Self(1 << 5);
    /// Filesystem-private data attached (`PG_private`, buffer heads in Linux).
    pub const PRIVATE: Self = Self(1 << 6);
    /// The host discarded the contents and `page_discard` has run or is running (`PG_discarded`).
    pub const DISCARDED: Self = Self(1 << 7);
    /// Never allocatable: not RAM, kernel image, lowcore, backing-store image (`PG_reserved`).
    pub const RESERVED: Self = Self(1 << 8);
    /// Referenced since the last aging pass (`PG_referenced`).
    pub const REFERENCED: Self = Self(1 << 9);
    /// Anonymous memory: the owner is an address space, not a mapping (`PageAnon`).
    pub const ANON: Self = Self(1 << 10);
    /// Mapped writable by at least one PTE (`PG_writable`, series patch 4/6).
    pub const WRITABLE: Self = Self(1 << 11);
    /// Page-state change in progress: the try-lock of `page_make_volatile` (`PG_arch_1` on s390).
    pub const STATE_CHANGE: Self = Self(1 << 12);
    /// On the frame allocator's free list.
    pub const FREE: Self = Self(1 << 13);
    /// Holds a DAT table (region, segment or page table).
    pub const DAT_TABLE: Self = Self(1 << 14);
    /// The frame of a discarded page, freed, waiting for a grace period before it is
    /// free again (series 6/6: every CPU must first pass a quiescent point).
    pub const DEFERRED: Self = Self(1 << 15);

    const NAMES: [(Self, &'static str); 16] = [
        (Self::LOCKED, "locked"),
        (Self::DIRTY, "dirty"),
        (Self::UPTODATE, "uptodate"),
        (Self::WRITEBACK, "writeback"),
        (Self::LRU, "lru"),
        (Self::ACTIVE, "active"),
        (Self::PRIVATE, "private"),
        (Self::DISCARDED, "discarded"),
        (Self::RESERVED, "reserved"),
        (Self::REFERENCED, "referenced"),
        (Self::ANON, "anon"),
        (Self::WRITABLE, "writable"),
        (Self::STATE_CHANGE, "state_change"),
        (Self::FREE, "free"),
        (Self::DAT_TABLE, "dat_table"),
        (Self::DEFERRED, "deferred"),
    ];

    /// No flag set.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Whether any bit of `other` is set.
    pub const fn intersects(self, other: Self) -> bool {
        self.0 & other.0 != 0
    }

    /// The union of both sets.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }
}

impl core::ops::BitOr for PageFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl fmt::Debug for PageFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_set();
        for (flag, name) in Self::NAMES {
            if self.contains(flag) {
                list.entry(&format_args!("{name}"));
            }
        }
        list.finish()
    }
}

/// Link value meaning "no neighbour".
pub(crate) const NO_LINK: u32 = u32::MAX;

/// Metadata of one 4 KiB frame (Linux: `struct page`).
///
/// The owner is a [`MappingId`] for page-cache pages and a [`SpaceId`] for
/// anonymous pages (flag [`PageFlags::ANON`]); `index` is then the file page
/// index or the virtual page number. A page is on at most one list (free list
/// or one LRU list), linked through `prev`/`next`, which are indices into the
/// [`PageArray`].
pub struct Page {
    /// Atomic so that the page-state layer can use the state-change lock and the flags
    /// through a shared reference, from any CPU (the memory manager's own updates go
    /// through `&mut` and cost nothing extra).
    flags: AtomicU32,
    refcount: u32,
    mapcount: u32,
    owner: u32,
    index: u64,
    pub(crate) prev: u32,
    pub(crate) next: u32,
    last_state: AtomicU8,
}

impl Clone for Page {
    fn clone(&self) -> Self {
        Self {
            flags: AtomicU32::new(self.flags().0),
            refcount: self.refcount,
            mapcount: self.mapcount,
            owner: self.owner,
            index: self.index,
            prev: self.prev,
            next: self.next,
            last_state: AtomicU8::new(self.last_state()),
        }
    }
}

const _: () = assert!(core::mem::size_of::<Page>() <= 64);

impl Page {
    /// Metadata of a frame nobody owns: no flags, no references, state 0.
    pub const fn new() -> Self {
        Self {
            flags: AtomicU32::new(0),
            refcount: 0,
            mapcount: 0,
            owner: 0,
            index: 0,
            prev: NO_LINK,
            next: NO_LINK,
            last_state: AtomicU8::new(0),
        }
    }

    /// Metadata of a clean, up-to-date page-cache page of `mapping` at page `index`,
    /// on an LRU list, with `refs` references of which `maps` are mappings, that belongs
    /// to no memory manager: for driving the page-state layer directly on a frame of
    /// one's own from several CPUs (the `cmma::smp` races).
    pub fn detached_cache_page(mapping: MappingId, index: u64, refs: u32, maps: u32) -> Self {
        let mut page = Page::new();
        page.set(PageFlags::UPTODATE | PageFlags::LRU);
        page.set_file_owner(Some(mapping), index);
        page.refcount = refs;
        page.mapcount = maps;
        page
    }

    /// The page flags.
    pub fn flags(&self) -> PageFlags {
        PageFlags(self.flags.load(Ordering::Relaxed))
    }

    /// Whether every flag of `flag` is set.
    pub fn test(&self, flag: PageFlags) -> bool {
        self.flags().contains(flag)
    }

    /// Sets `flag`.
    pub fn set(&mut self, flag: PageFlags) {
        *self.flags.get_mut() |= flag.0;
    }

    /// Clears `flag`.
    pub fn clear(&mut self, flag: PageFlags) {
        *self.flags.get_mut() &= !flag.0;
    }

    /// Sets `flag` through a shared reference, atomically (a page another CPU may
    /// look at at the same time: the page-state layer's facts).
    pub fn set_shared(&self, flag: PageFlags) {
        self.flags.fetch_or(flag.0, Ordering::AcqRel);
    }

    /// Clears `flag` through a shared reference, atomically.
    pub fn clear_shared(&self, flag: PageFlags) {
        self.flags.fetch_and(!flag.0, Ordering::AcqRel);
    }

    /// Sets `flag` and reports whether it was already set (Linux `TestSetPage*`).
    pub fn test_and_set(&mut self, flag: PageFlags) -> bool {
        let was = self.test(flag);
        self.set(flag);
        was
    }

    /// Clears `flag` and reports whether it was set (Linux `TestClearPage*`).
    pub fn test_and_clear(&mut self, flag: PageFlags) -> bool {
        let was = self.test(flag);
        self.clear(flag);
        was
    }

    /// Takes the page-state-change lock; `false` if it is held (`page_test_set_state_change`,
    /// an atomic test-and-set with acquire semantics, so another CPU's state change under
    /// the lock is complete when this one has it).
    pub fn try_lock_state_change(&self) -> bool {
        self.flags
            .fetch_or(PageFlags::STATE_CHANGE.0, Ordering::Acquire)
            & PageFlags::STATE_CHANGE.0
            == 0
    }

    /// Releases the page-state-change lock (`page_clear_state_change`, release semantics).
    pub fn unlock_state_change(&self) {
        self.flags
            .fetch_and(!PageFlags::STATE_CHANGE.0, Ordering::Release);
    }

    /// Number of references: page cache, each mapping PTE, each pin.
    pub fn refcount(&self) -> u32 {
        self.refcount
    }

    /// Number of PTEs mapping the page.
    pub fn mapcount(&self) -> u32 {
        self.mapcount
    }

    pub(crate) fn get(&mut self) {
        self.refcount += 1;
    }

    /// Drops one reference and returns how many remain.
    pub(crate) fn put(&mut self) -> u32 {
        assert!(self.refcount > 0, "put_page on a free page");
        self.refcount -= 1;
        self.refcount
    }

    pub(crate) fn set_refcount(&mut self, count: u32) {
        self.refcount = count;
    }

    pub(crate) fn inc_mapcount(&mut self) {
        self.mapcount += 1;
    }

    /// Drops one mapping and returns how many remain.
    pub(crate) fn dec_mapcount(&mut self) -> u32 {
        assert!(self.mapcount > 0, "page_remove_rmap on an unmapped page");
        self.mapcount -= 1;
        self.mapcount
    }

    /// The page-cache mapping of a file page; `None` for anonymous or truncated pages.
    pub fn mapping(&self) -> Option<MappingId> {
        if self.test(PageFlags::ANON) {
            None
        } else {
            MappingId::new(self.owner)
        }
    }

    /// The address space of an anonymous page.
    pub fn anon_space(&self) -> Option<SpaceId> {
        if self.test(PageFlags::ANON) {
            SpaceId::new(self.owner)
        } else {
            None
        }
    }

    /// File page index (file pages) or virtual page number (anonymous pages).
    pub fn index(&self) -> u64 {
        self.index
    }

    pub(crate) fn set_file_owner(&mut self, mapping: Option<MappingId>, index: u64) {
        self.clear(PageFlags::ANON);
        self.owner = mapping.map_or(0, MappingId::get);
        self.index = index;
    }

    pub(crate) fn set_anon_owner(&mut self, space: SpaceId, vpn: u64) {
        self.set(PageFlags::ANON);
        self.owner = space.get();
        self.index = vpn;
    }

    /// The last page state the CMMA layer set for this frame (its own encoding).
    pub fn last_state(&self) -> u8 {
        self.last_state.load(Ordering::Relaxed)
    }

    /// Records the page state the CMMA layer just set, so it can skip a redundant ESSA
    /// (under the state-change lock, or with the page not yet shared).
    pub fn set_last_state(&self, state: u8) {
        self.last_state.store(state, Ordering::Relaxed);
    }
}

impl Default for Page {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Page {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Page")
            .field("flags", &self.flags())
            .field("refcount", &self.refcount)
            .field("mapcount", &self.mapcount)
            .field("owner", &self.owner)
            .field("index", &self.index)
            .field("last_state", &self.last_state())
            .finish()
    }
}

/// One [`Page`] per frame of a contiguous pfn range (Linux: `mem_map`).
#[derive(Debug)]
pub struct PageArray {
    base: Pfn,
    pages: Vec<Page>,
}

impl PageArray {
    /// Metadata for the frames `base .. base + count`, all fresh.
    pub fn new(base: Pfn, count: usize) -> Self {
        let mut pages = Vec::with_capacity(count);
        pages.resize_with(count, Page::new);
        Self { base, pages }
    }

    /// The first frame covered.
    pub fn base(&self) -> Pfn {
        self.base
    }

    /// Number of frames covered.
    pub fn len(&self) -> usize {
        self.pages.len()
    }

    /// Whether no frame is covered.
    pub fn is_empty(&self) -> bool {
        self.pages.is_empty()
    }

    /// Whether `pfn` has metadata here.
    pub fn contains(&self, pfn: Pfn) -> bool {
        self.slot(pfn).is_some()
    }

    /// The metadata of `pfn`, if covered.
    pub fn get(&self, pfn: Pfn) -> Option<&Page> {
        self.slot(pfn).map(|i| &self.pages[i])
    }

    /// The metadata of `pfn`, if covered.
    pub fn get_mut(&mut self, pfn: Pfn) -> Option<&mut Page> {
        self.slot(pfn).map(|i| &mut self.pages[i])
    }

    fn slot(&self, pfn: Pfn) -> Option<usize> {
        let off = pfn.as_u64().checked_sub(self.base.as_u64())?;
        let off = usize::try_from(off).ok()?;
        (off < self.pages.len()).then_some(off)
    }

    /// List link of `pfn` (an array index).
    pub(crate) fn link_of(&self, pfn: Pfn) -> u32 {
        let slot = self.slot(pfn).expect("pfn outside the page array");
        u32::try_from(slot).expect("page array larger than 2^32 frames")
    }

    /// The frame a list link names.
    pub(crate) fn pfn_of(&self, link: u32) -> Pfn {
        Pfn::new(self.base.as_u64() + u64::from(link))
    }

    pub(crate) fn by_link(&mut self, link: u32) -> &mut Page {
        &mut self.pages[link as usize]
    }

    pub(crate) fn by_link_ref(&self, link: u32) -> &Page {
        &self.pages[link as usize]
    }

    /// Every page, mutable, in pfn order.
    pub(crate) fn pages_mut(&mut self) -> impl Iterator<Item = &mut Page> {
        self.pages.iter_mut()
    }

    /// Every covered frame number with its metadata, in frame order.
    pub fn iter(&self) -> impl Iterator<Item = (Pfn, &Page)> + '_ {
        let base = self.base.as_u64();
        self.pages
            .iter()
            .enumerate()
            .map(move |(i, p)| (Pfn::new(base + i as u64), p))
    }
}

impl core::ops::Index<Pfn> for PageArray {
    type Output = Page;
    fn index(&self, pfn: Pfn) -> &Page {
        self.get(pfn).expect("pfn outside the page array")
    }
}

impl core::ops::IndexMut<Pfn> for PageArray {
    fn index_mut(&mut self, pfn: Pfn) -> &mut Page {
        self.get_mut(pfn).expect("pfn outside the page array")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_fits_in_64_bytes() {
        assert!(core::mem::size_of::<Page>() <= 64);
    }

    #[test]
    fn flags_set_clear_and_test() {
        let mut page = Page::new();
        assert!(!page.test_and_set(PageFlags::DIRTY));
        assert!(page.test_and_set(PageFlags::DIRTY));
        page.set(PageFlags::LRU | PageFlags::ACTIVE);
        assert!(page.test(PageFlags::LRU | PageFlags::ACTIVE));
        assert!(page.test_and_clear(PageFlags::ACTIVE));
        assert!(!page.test(PageFlags::ACTIVE));
        assert!(page.test(PageFlags::LRU));
        assert!(
            page.flags()
                .intersects(PageFlags::ACTIVE | PageFlags::DIRTY)
        );
        let shown = alloc::format!("{:?}", page.flags());
        assert_eq!(shown, "{dirty, lru}");
    }

    #[test]
    fn state_change_lock_is_a_try_lock() {
        let page = Page::new();
        assert!(page.try_lock_state_change());
        assert!(!page.try_lock_state_change());
        page.unlock_state_change();
        assert!(page.try_lock_state_change());
    }

    #[test]
    fn owner_is_mapping_or_address_space() {
        let mut page = Page::new();
        let m = MappingId::new(3).unwrap();
        page.set_file_owner(Some(m), 17);
        assert_eq!(page.mapping(), Some(m));
        assert_eq!(page.anon_space(), None);
        assert_eq!(page.index(), 17);
        let s = SpaceId::new(3).unwrap();
        page.set_anon_owner(s, 0x800);
        assert_eq!(page.mapping(), None);
        assert_eq!(page.anon_space(), Some(s));
        page.set_file_owner(None, 0);
        assert_eq!(page.anon_space(), None);
        assert_eq!(page.mapping(), None);
    }

    #[test]
    fn refcounts_count_up_and_down() {
        let mut page = Page::new();
        page.get();
        page.get();
        assert_eq!(page.put(), 1);
        page.inc_mapcount();
        assert_eq!(page.dec_mapcount(), 0);
        assert_eq!(page.refcount(), 1);
    }

    #[test]
    fn page_array_is_indexed_by_pfn() {
        let mut pages = PageArray::new(Pfn::new(0x100), 4);
        assert!(pages.contains(Pfn::new(0x103)));
        assert!(!pages.contains(Pfn::new(0x104)));
        assert!(!pages.contains(Pfn::new(0xff)));
        pages[Pfn::new(0x102)].set(PageFlags::DIRTY);
        assert!(pages.get(Pfn::new(0x102)).unwrap().test(PageFlags::DIRTY));
        assert_eq!(
            pages.pfn_of(pages.link_of(Pfn::new(0x102))),
            Pfn::new(0x102)
        );
        let dirty: Vec<Pfn> = pages
            .iter()
            .filter(|(_, p)| p.test(PageFlags::DIRTY))
            .map(|(pfn, _)| pfn)
            .collect();
        assert_eq!(dirty, [Pfn::new(0x102)]);
    }
}
