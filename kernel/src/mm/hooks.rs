//! Hook points for the page-state (CMMA/ESSA) layer, issue 5.
//!
//! The memory manager calls these at exactly the places the 2007 guest page
//! hinting series does (patch 1/6, 3/6, 4/6, 6/6). Every method has a no-op
//! default, so [`NoHooks`] is the plain memory manager of issue 4. The page
//! metadata is passed in so the implementation can read the facts it needs
//! (flags, counts) and record the state it set ([`Page::set_last_state`]).

use alloc::vec::Vec;

use super::addr::Pfn;
use super::page::Page;

/// What an allocated frame is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FrameUse {
    /// Page cache, anonymous memory or kernel data.
    Data,
    /// A region, segment or page table (must stay stable while DAT uses it).
    DatTable,
}

/// Result of [`PageStateHooks::make_stable`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Stability {
    /// The contents are resident and the frame is now stable.
    Stable,
    /// The host discarded the contents; the caller runs `page_discard` and retries.
    Discarded,
}

/// Result of [`PageStateHooks::frame_freed`]: what the host had done with the frame's
/// contents (the old state the ESSA that makes the frame unused returns).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Freed {
    /// The host kept them (or there is no host).
    Kept,
    /// The host had discarded them, unknown to the memory manager: reclaim and
    /// truncation free a clean volatile page without making it stable.
    Discarded,
}

/// Result of [`PageStateHooks::grace_state`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum GraceState {
    /// A CPU has not passed a quiescent point since the grace period started.
    Running,
    /// Elapsed, but for these frames: CPUs that wait for the memory manager in a
    /// block-volatility handler still hold their absolute addresses.
    Elapsed(Vec<Pfn>),
}

/// Where a page may become volatile (series patch 1/6 lists them).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VolatilePoint {
    /// `unlock_page`.
    Unlock,
    /// `test_clear_page_writeback`: end of writeback.
    EndWriteback,
    /// `page_cache_release` with references remaining.
    CacheRelease,
    /// `lru_cache_add`, and active -> inactive moves.
    LruAdd,
    /// `page_add_file_rmap`: a read-only PTE now maps the page.
    RmapAdd,
    /// `page_add_file_rmap` of a writable PTE (`page_check_writable`, 4/6): the page
    /// must become potentially volatile or, if it may not, stable, because stores
    /// through the PTE reach it without the kernel knowing.
    WritableRmapAdd,
    /// After `readpage` brought the contents in (`filemap_nopage`).
    AfterReadpage,
}

/// Where a page must be made stable before its contents are used.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StablePoint {
    /// `find_get_page` / `find_lock_page`.
    Lookup,
    /// `get_user_pages` taking a reference.
    Pin,
    /// `follow_page` in a `VM_LOCKED` VMA without a reference (the seed).
    FollowLocked,
    /// Copy-on-write reads the source page (`do_wp_page`, early COW in `do_no_page`).
    CopyOnWrite,
    /// The page is about to be dirtied: a store fault on a shared file page, or
    /// `write_file` copying into it.
    WriteNotify,
    /// The storage-key change bit is set and is about to be transferred to the dirty
    /// flag and cleared (`page_remove_rmap`, `clear_page_dirty_for_io`; series patch
    /// 6/6, hazard 1).
    DirtyTransfer,
}

/// Facts about a page that are not in its [`Page`] metadata.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct VolatileContext {
    /// The page's mapping exists and was ever mlocked (seed, patch 3/6).
    pub mapping_mlocked: bool,
    /// References accounted for besides the mappers: the page cache's own (always
    /// counted, also for a page no longer in the cache) and those the caller holds
    /// (`offset` in `page_make_volatile(page, offset)`). `mapcount + caller_refs !=
    /// refcount` means an unknown reference.
    pub caller_refs: u32,
}

/// Callbacks from the memory manager to the page-state layer.
pub trait PageStateHooks {
    /// `frame` was just allocated (`arch_alloc_page`: set stable).
    fn frame_allocated(&mut self, _pfn: Pfn, _page: &mut Page, _usage: FrameUse) {}

    /// `frame` was just freed (`arch_free_page`: set unused); whether the host had
    /// discarded its contents.
    fn frame_freed(&mut self, _pfn: Pfn, _page: &mut Page) -> Freed {
        Freed::Kept
    }

    /// The page may become volatile if no condition forbids it (`page_make_volatile`).
    fn try_make_volatile(
        &mut self,
        _pfn: Pfn,
        _page: &mut Page,
        _ctx: VolatileContext,
        _at: VolatilePoint,
    ) {
    }

    /// The page's contents are about to be used (`page_make_stable`, ORC 6).
    fn make_stable(&mut self, _pfn: Pfn, _page: &mut Page, _at: StablePoint) -> Stability {
        Stability::Stable
    }

    /// Whether `try_to_unmap` may unmap this page although a `VM_LOCKED` VMA maps
    /// it. Issue 4 (no page states): never. The seed (patch 3/6) allows it for
    /// discarded pages, which `make_pages_present` forces out and reloads.
    fn may_unmap_in_locked_vma(&mut self, _pfn: Pfn, _page: &Page) -> bool {
        false
    }

    /// `page_discard` finished for the page: it is unmapped, off the LRU and out
    /// of the page cache (the frame is freed once the last reference drops).
    fn page_discarded(&mut self, _pfn: Pfn, _page: &Page) {}

    /// Starts a grace period (series 6/6): the frames of discarded pages freed so far
    /// are handed out again only once it has elapsed. Default: one CPU, nothing to
    /// wait for.
    fn start_grace(&mut self) {}

    /// Whether the grace period [`PageStateHooks::start_grace`] started has elapsed:
    /// every other CPU has passed a quiescent point since, so none still holds a
    /// translation of these frames or the absolute address of a block-volatility
    /// exception it has not finished handling; or has elapsed for every frame but
    /// those a CPU waiting for the memory manager in such a handler holds.
    fn grace_state(&mut self) -> GraceState {
        GraceState::Elapsed(Vec::new())
    }

    /// Waits a bounded time for the grace period in progress to elapse, for an
    /// allocation that found nothing free but frames waiting for one; returns whether
    /// it elapsed. Default: one CPU, where a grace period elapses at once.
    fn wait_for_grace(&mut self) -> bool {
        false
    }
}

/// The memory manager without page states: every hook is a no-op.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoHooks;

impl PageStateHooks for NoHooks {}
