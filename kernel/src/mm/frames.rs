//! The frame allocator: every usable 4 KiB frame, O(1) allocation and free
//! through a free list linked in the frame metadata.
//!
//! Usable means RAM minus what must never be handed out: lowcore, the kernel
//! image, the backing-store image. [`usable_ranges`] computes that set; frames
//! outside it carry [`PageFlags::RESERVED`]. Every allocation and free passes
//! through the [`PageStateHooks`] so the page-state layer sees them (series
//! patch 1/6: `arch_alloc_page` sets stable, `arch_free_page` sets unused).

use alloc::vec::Vec;
use core::ops::Range;

use super::addr::{PAGE_SIZE, Pfn, PhysAddr};
use super::hooks::{FrameUse, Freed, GraceState, PageStateHooks};
use super::list::PageList;
use super::page::{Page, PageArray, PageFlags};

/// The frames of `memory` (a physical range) minus the `reserved` physical
/// ranges, as sorted, disjoint pfn ranges. Partial frames are not usable:
/// usable starts round up, reserved ends round up.
pub fn usable_ranges(memory: Range<PhysAddr>, reserved: &[Range<PhysAddr>]) -> Vec<Range<Pfn>> {
    let mut holes: Vec<(u64, u64)> = reserved
        .iter()
        .filter(|r| r.start < r.end)
        .map(|r| {
            let start = r.start.align_down(PAGE_SIZE).pfn().as_u64();
            let end = r
                .end
                .align_up(PAGE_SIZE)
                .map_or(u64::MAX >> 12, |e| e.pfn().as_u64());
            (start, end)
        })
        .collect();
    holes.sort_unstable();
    let mut out = Vec::new();
    let Some(first) = memory.start.align_up(PAGE_SIZE) else {
        return out;
    };
    let mut cursor = first.pfn().as_u64();
    let end = memory.end.align_down(PAGE_SIZE).pfn().as_u64();
    for (hole_start, hole_end) in holes {
        if hole_start > cursor {
            let piece_end = hole_start.min(end);
            if piece_end > cursor {
                out.push(Pfn::new(cursor)..Pfn::new(piece_end));
            }
        }
        cursor = cursor.max(hole_end);
        if cursor >= end {
            return out;
        }
    }
    if cursor < end {
        out.push(Pfn::new(cursor)..Pfn::new(end));
    }
    out
}

/// Owns the frame metadata ([`PageArray`]) and the free list.
#[derive(Debug)]
pub struct FrameAllocator {
    pages: PageArray,
    free: PageList,
    /// Frames of discarded pages freed since the grace period in progress started.
    deferred: PageList,
    /// Frames of discarded pages waiting for the grace period in progress.
    waiting: PageList,
    /// Frames freed whose contents the host had discarded unknown to the memory manager.
    freed_discarded: u64,
    usable: usize,
}

impl FrameAllocator {
    /// Metadata for every frame of `memory`; the frames of `usable` (inside
    /// `memory`) go on the free list, all others are reserved. Each free frame
    /// is reported to `hooks.frame_freed` so it starts out unused.
    pub fn new<H: PageStateHooks + ?Sized>(
        memory: Range<Pfn>,
        usable: &[Range<Pfn>],
        hooks: &mut H,
    ) -> Self {
        let count = memory.end.as_u64().saturating_sub(memory.start.as_u64());
        let count = usize::try_from(count).expect("memory larger than the address space");
        let mut pages = PageArray::new(memory.start, count);
        for page in pages.pages_mut() {
            page.set(PageFlags::RESERVED);
        }
        let mut this = Self {
            pages,
            free: PageList::new(),
            deferred: PageList::new(),
            waiting: PageList::new(),
            freed_discarded: 0,
            usable: 0,
        };
        for range in usable {
            for n in range.start.as_u64()..range.end.as_u64() {
                let pfn = Pfn::new(n);
                let Some(page) = this.pages.get_mut(pfn) else {
                    continue;
                };
                if !page.test(PageFlags::RESERVED) {
                    continue; // listed twice
                }
                *page = Page::new();
                this.usable += 1;
                this.release(pfn, hooks);
            }
        }
        this
    }

    /// The frame metadata.
    pub fn pages(&self) -> &PageArray {
        &self.pages
    }

    /// The frame metadata, mutable.
    pub fn pages_mut(&mut self) -> &mut PageArray {
        &mut self.pages
    }

    /// Number of frames that can ever be allocated.
    pub fn usable_count(&self) -> usize {
        self.usable
    }

    /// Number of frames on the free list.
    pub fn free_count(&self) -> usize {
        self.free.len()
    }

    /// Number of frames currently allocated.
    pub fn allocated_count(&self) -> usize {
        self.usable - self.free.len() - self.deferred_count()
    }

    /// Number of frames of discarded pages waiting for a grace period (6/6).
    pub fn deferred_count(&self) -> usize {
        self.deferred.len() + self.waiting.len()
    }

    /// Frames freed so far whose contents the host had discarded although the memory
    /// manager had not seen it (they waited for a grace period like discarded pages).
    pub fn freed_discarded(&self) -> u64 {
        self.freed_discarded
    }

    /// Frees the frames whose grace period elapsed, and starts the next grace period
    /// for those freed since (series 6/6 frees discarded pages only after every CPU
    /// passed a quiescent point). One grace period at a time: frames freed while it
    /// runs wait for the next, and so does a frame a CPU still holds while it waits
    /// for the memory manager in a block-volatility handler.
    pub fn reap<H: PageStateHooks + ?Sized>(&mut self, hooks: &mut H) {
        // Two rounds: the grace period the first starts may have elapsed at once (one
        // CPU), and a held frame goes round no more than once per call.
        for _ in 0..2 {
            if !self.waiting.is_empty() {
                let GraceState::Elapsed(held) = hooks.grace_state() else {
                    return;
                };
                while let Some(pfn) = self.waiting.pop_front(&mut self.pages) {
                    if held.contains(&pfn) {
                        self.deferred.push_front(&mut self.pages, pfn);
                    } else {
                        self.pages[pfn].clear(PageFlags::DEFERRED);
                        self.release(pfn, hooks);
                    }
                }
            }
            if self.deferred.is_empty() {
                return;
            }
            core::mem::swap(&mut self.waiting, &mut self.deferred);
            hooks.start_grace();
        }
    }

    /// Takes a free frame, with refcount 1 and no flags (O(1), after freeing the
    /// frames whose grace period elapsed).
    pub fn alloc<H: PageStateHooks + ?Sized>(
        &mut self,
        usage: FrameUse,
        hooks: &mut H,
    ) -> Option<Pfn> {
        self.reap(hooks);
        let pfn = self.free.pop_front(&mut self.pages)?;
        self.claim(pfn, usage, hooks);
        Some(pfn)
    }

    /// Takes `count` physically contiguous free frames whose first frame number
    /// is a multiple of `align` (a power of two). O(frames): meant for rare
    /// multi-frame DAT tables, not for the data path.
    pub fn alloc_contiguous<H: PageStateHooks + ?Sized>(
        &mut self,
        count: usize,
        align: u64,
        usage: FrameUse,
        hooks: &mut H,
    ) -> Option<Pfn> {
        self.reap(hooks);
        let start = self.find_free_block(count, align)?;
        for n in start..start + count as u64 {
            self.free.remove(&mut self.pages, Pfn::new(n));
            self.claim(Pfn::new(n), usage, hooks);
        }
        Some(Pfn::new(start))
    }

    /// Whether [`FrameAllocator::alloc_contiguous`] would find `count` free frames
    /// aligned to `align`.
    pub fn has_free_block(&self, count: usize, align: u64) -> bool {
        self.find_free_block(count, align).is_some()
    }

    /// The first frame number of the lowest free block of `count` frames aligned
    /// to `align` (a power of two).
    fn find_free_block(&self, count: usize, align: u64) -> Option<u64> {
        if count == 0 || !align.is_power_of_two() {
            return None;
        }
        let base = self.pages.base().as_u64();
        let end = base + self.pages.len() as u64;
        let mut start = base.next_multiple_of(align);
        while start + count as u64 <= end {
            let blocker = (start..start + count as u64)
                .rev()
                .find(|&n| !self.pages[Pfn::new(n)].test(PageFlags::FREE));
            match blocker {
                None => return Some(start),
                Some(busy) => start = (busy + 1).next_multiple_of(align),
            }
        }
        None
    }

    fn claim<H: PageStateHooks + ?Sized>(&mut self, pfn: Pfn, usage: FrameUse, hooks: &mut H) {
        let page = &mut self.pages[pfn];
        page.clear(PageFlags::FREE);
        page.set_refcount(1);
        if usage == FrameUse::DatTable {
            page.set(PageFlags::DAT_TABLE);
        }
        hooks.frame_allocated(pfn, page, usage);
    }

    /// Returns an allocated frame to the free list (O(1)). Its metadata is reset.
    ///
    /// # Panics
    /// On a reserved frame or a double free: both are kernel bugs that would
    /// corrupt the free list.
    pub fn free<H: PageStateHooks + ?Sized>(&mut self, pfn: Pfn, hooks: &mut H) {
        self.check_freeable(pfn);
        let page = &self.pages[pfn];
        // 6/6: another CPU may still hold the absolute address of the discard fault
        // that brought this page down, or be about to look the frame up: the frame is
        // not handed out again before every CPU passed a quiescent point. This holds
        // for a page the host discarded behind the memory manager's back as well (1/6
        // `__remove_from_page_cache` keeps `PG_discarded` for it): reclaim and
        // truncation free clean volatile pages without making them stable, and
        // another CPU may have touched one through its mapping before they unmapped
        // it. The frame is made unused first; its old state tells.
        let discarded = page.test(PageFlags::DISCARDED);
        self.reset(pfn);
        if discarded || hooks.frame_freed(pfn, &mut self.pages[pfn]) == Freed::Discarded {
            self.freed_discarded += u64::from(!discarded);
            self.defer(pfn, hooks);
            return;
        }
        self.pages[pfn].set(PageFlags::FREE);
        self.free.push_front(&mut self.pages, pfn);
    }

    /// Frees a frame that a CPU may still read without a lock (a DAT table replaced
    /// while its address space is in use): it waits for a grace period, as the frame
    /// of a discarded page does, and is made unused when it is released.
    ///
    /// # Panics
    /// As [`FrameAllocator::free`].
    pub fn free_after_grace<H: PageStateHooks + ?Sized>(&mut self, pfn: Pfn, hooks: &mut H) {
        self.check_freeable(pfn);
        self.reset(pfn);
        self.defer(pfn, hooks);
    }

    fn check_freeable(&self, pfn: Pfn) {
        let page = &self.pages[pfn];
        assert!(
            !page.test(PageFlags::RESERVED),
            "freeing reserved frame {pfn:?}"
        );
        assert!(
            !page.test(PageFlags::FREE) && !page.test(PageFlags::DEFERRED),
            "double free of frame {pfn:?}"
        );
        assert!(
            !page.test(PageFlags::LRU),
            "freeing frame {pfn:?} still on an LRU list"
        );
    }

    fn defer<H: PageStateHooks + ?Sized>(&mut self, pfn: Pfn, hooks: &mut H) {
        self.pages[pfn].set(PageFlags::DEFERRED);
        self.deferred.push_front(&mut self.pages, pfn);
        // On one CPU the grace period has elapsed at once.
        self.reap(hooks);
    }

    /// Clears the frame's metadata except the page-state layer's record of its state.
    fn reset(&mut self, pfn: Pfn) {
        let page = &mut self.pages[pfn];
        let last_state = page.last_state();
        *page = Page::new();
        page.set_last_state(last_state);
    }

    /// Puts a frame nobody can hold any more on the free list, unused.
    fn release<H: PageStateHooks + ?Sized>(&mut self, pfn: Pfn, hooks: &mut H) {
        self.reset(pfn);
        // Whether the host had discarded it no longer matters: nothing refers to it.
        let _ = hooks.frame_freed(pfn, &mut self.pages[pfn]);
        self.pages[pfn].set(PageFlags::FREE);
        self.free.push_front(&mut self.pages, pfn);
    }

    /// Whether `pfn` is on the free list.
    pub fn is_free(&self, pfn: Pfn) -> bool {
        self.pages.get(pfn).is_some_and(|p| p.test(PageFlags::FREE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mm::hooks::NoHooks;
    use alloc::collections::BTreeSet;

    fn pa(x: u64) -> PhysAddr {
        PhysAddr::new(x)
    }

    fn pfns(r: &[Range<Pfn>]) -> Vec<(u64, u64)> {
        r.iter()
            .map(|r| (r.start.as_u64(), r.end.as_u64()))
            .collect()
    }

    #[test]
    fn usable_ranges_cut_out_reserved_areas() {
        // 1 MiB of RAM; lowcore 0..8K, kernel 64K..200K (partial frame), image 0xf0000..
        let r = usable_ranges(
            pa(0)..pa(0x10_0000),
            &[
                pa(0x1_0000)..pa(0x3_2001),
                pa(0)..pa(0x2000),
                pa(0xf_0000)..pa(0x20_0000),
            ],
        );
        assert_eq!(pfns(&r), [(2, 0x10), (0x33, 0xf0)]);
        // Overlapping and empty holes, RAM with a partial last frame.
        let r = usable_ranges(
            pa(0)..pa(0x8800),
            &[
                pa(0x1000)..pa(0x3000),
                pa(0x2000)..pa(0x4000),
                pa(0x5000)..pa(0x5000),
            ],
        );
        assert_eq!(pfns(&r), [(0, 1), (4, 8)]);
        assert!(usable_ranges(pa(0)..pa(0x4000), &[pa(0)..pa(0x4000)]).is_empty());
    }

    #[derive(Default)]
    struct CountingHooks {
        allocated: Vec<(Pfn, FrameUse)>,
        freed: Vec<Pfn>,
    }

    impl PageStateHooks for CountingHooks {
        fn frame_allocated(&mut self, pfn: Pfn, page: &mut Page, usage: FrameUse) {
            page.set_last_state(1);
            self.allocated.push((pfn, usage));
        }
        fn frame_freed(&mut self, pfn: Pfn, page: &mut Page) -> Freed {
            page.set_last_state(2);
            self.freed.push(pfn);
            Freed::Kept
        }
    }

    #[test]
    fn allocates_each_usable_frame_once_and_reports_to_hooks() {
        let mut hooks = CountingHooks::default();
        let usable = [Pfn::new(2)..Pfn::new(5), Pfn::new(8)..Pfn::new(10)];
        let mut frames = FrameAllocator::new(Pfn::new(0)..Pfn::new(10), &usable, &mut hooks);
        assert_eq!(frames.usable_count(), 5);
        assert_eq!(hooks.freed.len(), 5);
        assert!(frames.pages()[Pfn::new(0)].test(PageFlags::RESERVED));
        let mut got = BTreeSet::new();
        while let Some(pfn) = frames.alloc(FrameUse::Data, &mut hooks) {
            assert!(got.insert(pfn.as_u64()), "frame handed out twice");
            let page = &frames.pages()[pfn];
            assert_eq!(page.refcount(), 1);
            assert_eq!(page.last_state(), 1);
        }
        assert_eq!(got, BTreeSet::from([2, 3, 4, 8, 9]));
        assert_eq!(frames.free_count(), 0);
        assert_eq!(frames.allocated_count(), 5);
        frames.free(Pfn::new(3), &mut hooks);
        assert_eq!(frames.pages()[Pfn::new(3)].last_state(), 2);
        assert!(frames.is_free(Pfn::new(3)));
        assert_eq!(frames.alloc(FrameUse::Data, &mut hooks), Some(Pfn::new(3)));
    }

    #[test]
    #[should_panic(expected = "double free")]
    fn double_free_panics() {
        let mut frames = FrameAllocator::new(
            Pfn::new(0)..Pfn::new(4),
            &[Pfn::new(0)..Pfn::new(4)],
            &mut NoHooks,
        );
        let pfn = frames.alloc(FrameUse::Data, &mut NoHooks).unwrap();
        frames.free(pfn, &mut NoHooks);
        frames.free(pfn, &mut NoHooks);
    }

    #[test]
    #[should_panic(expected = "reserved")]
    fn freeing_a_reserved_frame_panics() {
        let mut frames = FrameAllocator::new(
            Pfn::new(0)..Pfn::new(4),
            &[Pfn::new(1)..Pfn::new(4)],
            &mut NoHooks,
        );
        frames.free(Pfn::new(0), &mut NoHooks);
    }

    #[test]
    fn contiguous_allocation_finds_aligned_free_runs() {
        let mut hooks = CountingHooks::default();
        let mut frames = FrameAllocator::new(
            Pfn::new(0)..Pfn::new(32),
            &[Pfn::new(1)..Pfn::new(32)],
            &mut hooks,
        );
        // Punch holes: allocate everything, then free 5..7 and 9..16 and 20..32.
        let all: Vec<Pfn> =
            core::iter::from_fn(|| frames.alloc(FrameUse::Data, &mut NoHooks)).collect();
        assert_eq!(all.len(), 31);
        for n in (5..7).chain(9..16).chain(20..32) {
            frames.free(Pfn::new(n), &mut NoHooks);
        }
        let got = frames.alloc_contiguous(4, 4, FrameUse::DatTable, &mut hooks);
        assert_eq!(got, Some(Pfn::new(12)));
        for n in 12..16 {
            assert!(frames.pages()[Pfn::new(n)].test(PageFlags::DAT_TABLE));
            assert!(!frames.is_free(Pfn::new(n)));
        }
        assert_eq!(
            frames.alloc_contiguous(4, 4, FrameUse::DatTable, &mut hooks),
            Some(Pfn::new(20))
        );
        assert_eq!(
            frames.alloc_contiguous(8, 8, FrameUse::DatTable, &mut hooks),
            Some(Pfn::new(24))
        );
        assert_eq!(
            frames.alloc_contiguous(4, 1, FrameUse::DatTable, &mut hooks),
            None
        );
        assert_eq!(
            frames.alloc_contiguous(2, 1, FrameUse::DatTable, &mut hooks),
            Some(Pfn::new(5))
        );
        // 2 + 7 + 12 freed, 4 + 4 + 8 + 2 taken again.
        assert_eq!(frames.free_count(), 3);
        assert_eq!(
            frames.alloc_contiguous(0, 1, FrameUse::Data, &mut hooks),
            None
        );
    }

    /// Hooks whose grace period elapses only when the test says so.
    #[derive(Default)]
    struct Grace {
        started: usize,
        elapsed: bool,
        /// Frames a CPU waiting in a discard fault holds.
        held: Vec<Pfn>,
    }

    impl PageStateHooks for Grace {
        fn start_grace(&mut self) {
            self.started += 1;
            self.elapsed = false;
        }
        fn grace_state(&mut self) -> GraceState {
            if self.elapsed {
                GraceState::Elapsed(self.held.clone())
            } else {
                GraceState::Running
            }
        }
    }

    /// Frees `count` frames of a 4-frame allocator as discarded pages; the allocator and
    /// the frames.
    fn discard_frames(hooks: &mut Grace, count: usize) -> (FrameAllocator, Vec<Pfn>) {
        let mut frames =
            FrameAllocator::new(Pfn::new(0)..Pfn::new(4), &[Pfn::new(0)..Pfn::new(4)], hooks);
        let pfns: Vec<Pfn> = (0..count)
            .map(|_| frames.alloc(FrameUse::Data, hooks).unwrap())
            .collect();
        for &pfn in &pfns {
            frames.pages_mut()[pfn].set(PageFlags::DISCARDED);
            frames.pages_mut()[pfn].set_refcount(0);
            frames.free(pfn, hooks);
        }
        (frames, pfns)
    }

    #[test]
    fn a_frame_a_cpu_holds_in_its_discard_fault_waits_alone() {
        let mut hooks = Grace::default();
        let (mut frames, pfns) = discard_frames(&mut hooks, 2);
        assert_eq!(frames.deferred_count(), 2);
        // Every CPU passed a point but one that waits in its discard fault for pfns[0].
        // pfns[1] was freed during the first grace period: it needs a second.
        hooks.held = vec![pfns[0]];
        hooks.elapsed = true;
        frames.reap(&mut hooks);
        assert!(!frames.is_free(pfns[1]));
        hooks.elapsed = true;
        frames.reap(&mut hooks);
        assert!(frames.is_free(pfns[1]));
        assert!(!frames.is_free(pfns[0]));
        assert!(frames.pages()[pfns[0]].test(PageFlags::DEFERRED));
        assert_eq!(frames.deferred_count(), 1);
        // Still waiting: it stays out, over more grace periods.
        hooks.elapsed = true;
        frames.reap(&mut hooks);
        assert_eq!(frames.deferred_count(), 1);
        // The CPU handled its fault and passed a point.
        hooks.held.clear();
        hooks.elapsed = true;
        frames.reap(&mut hooks);
        assert!(frames.is_free(pfns[0]));
        assert_eq!(frames.deferred_count(), 0);
    }

    /// A DAT table replaced while its space is in use (a segment table that grew) may
    /// still be read by a walker without the lock: its frame waits for a grace period.
    #[test]
    fn a_retired_table_frame_waits_for_a_grace_period() {
        let mut hooks = Grace::default();
        let mut frames = FrameAllocator::new(
            Pfn::new(0)..Pfn::new(2),
            &[Pfn::new(0)..Pfn::new(2)],
            &mut hooks,
        );
        let table = frames.alloc(FrameUse::DatTable, &mut hooks).unwrap();
        frames.free_after_grace(table, &mut hooks);
        assert_eq!(frames.deferred_count(), 1);
        assert!(!frames.is_free(table));
        let other = frames.alloc(FrameUse::Data, &mut hooks).unwrap();
        assert_ne!(other, table);
        assert_eq!(frames.alloc(FrameUse::Data, &mut hooks), None);
        hooks.elapsed = true;
        assert_eq!(frames.alloc(FrameUse::Data, &mut hooks), Some(table));
        assert!(!frames.pages()[table].test(PageFlags::DAT_TABLE));
    }

    #[test]
    fn a_discarded_frame_is_handed_out_again_only_after_a_grace_period() {
        let mut hooks = Grace::default();
        let (mut frames, pfns) = discard_frames(&mut hooks, 1);
        let discarded = pfns[0];
        assert_eq!(frames.deferred_count(), 1);
        assert!(frames.pages()[discarded].test(PageFlags::DEFERRED));
        // Until the grace period elapsed, the frame stays out, although the free list
        // is LIFO.
        let mut got = Vec::new();
        while let Some(pfn) = frames.alloc(FrameUse::Data, &mut hooks) {
            got.push(pfn);
        }
        assert_eq!(hooks.started, 1);
        assert!(!got.contains(&discarded));
        assert_eq!(frames.free_count() + frames.deferred_count(), 1);
        hooks.elapsed = true;
        assert_eq!(frames.alloc(FrameUse::Data, &mut hooks), Some(discarded));
        assert_eq!(frames.deferred_count(), 0);
        // A frame freed without a discard is free at once.
        frames.free(got[0], &mut hooks);
        assert_eq!(frames.free_count(), 1);
    }
}
