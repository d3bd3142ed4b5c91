//! [`Mm`]: the memory manager, owning frames, page cache, address spaces and
//! LRU lists, generic over the machine, the backing device and the page-state hooks.
//!
//! The operations are spread over the modules named after their Linux
//! counterparts (`page_cache`, `rmap`, `lru`, `reclaim`, `fault`, `mlock`,
//! `discard`, `mmap`); this module holds the state, construction, frame
//! allocation with watermark-triggered reclaim, and reference counting.

use alloc::collections::BTreeMap;
use core::ops::Range;

use super::addr::{Pfn, PhysAddr, VirtAddr};
use super::backing::{BlockDevice, Image, IoError, Transfer};
use super::dat::entry::SEGMENT_TABLE_FRAMES;
use super::dat::{Asce, DatSpace, TableAlloc, Walk};
use super::error::{Bug, MmError};
use super::frames::FrameAllocator;
use super::hooks::{FrameUse, PageStateHooks, VolatileContext, VolatilePoint};
use super::ids::{MappingId, SpaceId};
use super::lru::Lru;
use super::machine::{Machine, PhysMem};
use super::page::{Page, PageFlags};
use super::page_cache::Mapping;
use super::vma::VmaTree;

/// Start of the default user range: region-third entry 256 (512 GiB), far
/// above any identity-mapped RAM, so user tables never land in the shared
/// kernel segment tables.
pub const USER_START: VirtAddr = VirtAddr::new(1 << 39);
/// End of the default user range: the 1 TiB limit of a region-third ASCE.
pub const USER_END: VirtAddr = VirtAddr::new(super::dat::VA_LIMIT);

/// Tunables of an [`Mm`].
#[derive(Clone, Debug)]
pub struct MmConfig {
    /// Where user VMAs may go (page aligned, 2 GiB aligned to keep tables unshared).
    pub user: Range<VirtAddr>,
    /// The kernel part linked into every address space (2 GiB aligned).
    pub kernel_shared: Range<VirtAddr>,
    /// Reclaim starts when an allocation finds fewer free frames than this.
    pub low_watermark: usize,
    /// Reclaim stops when this many frames are free.
    pub high_watermark: usize,
}

impl MmConfig {
    /// The default configuration with watermarks scaled to a pool of `frames` frames,
    /// as Linux scales `min_free_kbytes` with memory: reclaim starts below 1/16 of the
    /// pool (at least 4 frames) and stops at twice that. The default 2 MiB pool (512
    /// frames) gets 32 and 64; a 384 KiB pool 6 and 12 instead of keeping two thirds of
    /// itself free.
    pub fn for_pool(frames: usize) -> Self {
        let low = (frames / 16).clamp(4, 4096);
        Self {
            low_watermark: low,
            high_watermark: 2 * low,
            ..Self::default()
        }
    }
}

impl Default for MmConfig {
    fn default() -> Self {
        Self {
            user: USER_START..USER_END,
            kernel_shared: VirtAddr::new(0)..USER_START,
            low_watermark: 32,
            high_watermark: 64,
        }
    }
}

/// Event counters.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct MmStats {
    /// Faults satisfied from the page cache.
    pub minor_faults: u64,
    /// Faults that read the backing store.
    pub major_faults: u64,
    /// Faults that zero-filled an anonymous page.
    pub anon_faults: u64,
    /// Copy-on-write copies.
    pub cow_faults: u64,
    /// Write faults that made a shared page writable (and dirty).
    pub write_notify_faults: u64,
    /// Pages freed by reclaim.
    pub reclaimed: u64,
    /// Pages written back.
    pub writebacks: u64,
    /// Pages `try_to_unmap` refused because a `VM_LOCKED` VMA maps them.
    pub unmap_refused_locked: u64,
    /// Pages removed by `page_discard`.
    pub discards: u64,
    /// Frames freed whose contents the host had discarded unknown to the memory
    /// manager (a clean volatile page reclaimed or truncated): they wait for a grace
    /// period like those of `page_discard`.
    pub freed_discarded: u64,
    /// Times an allocation found free frames below the low watermark.
    pub watermark_reclaims: u64,
    /// Blocks lumpy reclaim worked on to free room for a multi-frame DAT table.
    pub lumpy_reclaims: u64,
    /// Allocations that found nothing free and got a frame by waiting for the grace
    /// period of frames of discarded pages.
    pub grace_waits: u64,
    /// Pages `read_file` started reading ahead of the one asked for.
    pub readahead: u64,
    /// Rules of the series found broken ([`Bug`]); each also kept in [`Mm::bugs`].
    pub bugs: u64,
}

/// The file id of [`Mm::open_device_range`] mappings: no image file has it.
pub const DEVICE_RANGE_FILE_ID: u32 = u32::MAX;

/// How many [`Bug`]s the memory manager keeps until someone takes them.
const KEPT_BUGS: usize = 16;

/// One user address space (Linux: `mm_struct`): DAT tables and VMAs.
#[derive(Debug)]
pub struct AddressSpace {
    pub(crate) dat: DatSpace,
    pub(crate) vmas: VmaTree,
}

impl AddressSpace {
    /// The ASCE to load when running in this space.
    pub fn asce(&self) -> Asce {
        self.dat.asce()
    }

    /// The VMAs.
    pub fn vmas(&self) -> &VmaTree {
        &self.vmas
    }

    /// Walks this space's tables for `va` as the CPU would (no side effects).
    pub fn walk<M: PhysMem + ?Sized>(&self, mem: &M, va: VirtAddr) -> Walk {
        self.dat.walk(mem, va)
    }
}

/// The memory manager.
#[derive(Debug)]
pub struct Mm<M: Machine, D: BlockDevice, H: PageStateHooks> {
    pub(crate) machine: M,
    pub(crate) device: D,
    pub(crate) hooks: H,
    pub(crate) frames: FrameAllocator,
    pub(crate) lru: Lru,
    pub(crate) image: Image,
    pub(crate) mappings: BTreeMap<MappingId, Mapping>,
    pub(crate) spaces: BTreeMap<SpaceId, AddressSpace>,
    pub(crate) kernel: Option<DatSpace>,
    pub(crate) config: MmConfig,
    pub(crate) stats: MmStats,
    pub(crate) bugs: alloc::vec::Vec<Bug>,
    /// Page transfers the device has not ended yet, by frame: the page is locked (read)
    /// or under writeback (write) until [`Mm::reap_io`] ends them.
    pub(crate) in_flight: BTreeMap<Pfn, Transfer>,
    /// Errors of ended transfers, kept for the path that waits on the page.
    pub(crate) io_errors: BTreeMap<Pfn, IoError>,
    next_space: u32,
    next_mapping: u32,
}

/// Lends frames from the allocator to the DAT code.
pub(crate) struct TableFrames<'a, H: PageStateHooks> {
    pub(crate) frames: &'a mut FrameAllocator,
    pub(crate) hooks: &'a mut H,
}

impl<H: PageStateHooks> TableAlloc for TableFrames<'_, H> {
    fn alloc_table(&mut self, count: usize) -> Option<Pfn> {
        if count == 1 {
            self.frames.alloc(FrameUse::DatTable, self.hooks)
        } else {
            self.frames
                .alloc_contiguous(count, 1, FrameUse::DatTable, self.hooks)
        }
    }

    fn free_table(&mut self, first: Pfn, count: usize) {
        for n in 0..count as u64 {
            let pfn = Pfn::new(first.as_u64() + n);
            self.frames.free(pfn, self.hooks);
        }
    }

    fn retire_table(&mut self, first: Pfn, count: usize) {
        for n in 0..count as u64 {
            let pfn = Pfn::new(first.as_u64() + n);
            self.frames.free_after_grace(pfn, self.hooks);
        }
    }
}

impl<M: Machine, D: BlockDevice, H: PageStateHooks> Mm<M, D, H> {
    /// A memory manager over `memory` (frames with metadata), allocating from
    /// `usable`, with the backing-store image on `device`.
    pub fn new(
        machine: M,
        mut device: D,
        hooks: H,
        memory: Range<Pfn>,
        usable: &[Range<Pfn>],
        config: MmConfig,
    ) -> Result<Self, MmError> {
        let image = Image::load(&mut device).map_err(|_| MmError::NoSuchObject)?;
        Ok(Self::with_image(
            machine, device, image, hooks, memory, usable, config,
        ))
    }

    /// [`Mm::new`] with the image already loaded from `device` (a caller that reports
    /// image errors itself need not read it twice).
    pub fn with_image(
        machine: M,
        device: D,
        image: Image,
        mut hooks: H,
        memory: Range<Pfn>,
        usable: &[Range<Pfn>],
        config: MmConfig,
    ) -> Self {
        let frames = FrameAllocator::new(memory, usable, &mut hooks);
        Self {
            machine,
            device,
            hooks,
            frames,
            lru: Lru::new(),
            image,
            mappings: BTreeMap::new(),
            spaces: BTreeMap::new(),
            kernel: None,
            config,
            stats: MmStats::default(),
            bugs: alloc::vec::Vec::new(),
            in_flight: BTreeMap::new(),
            io_errors: BTreeMap::new(),
            next_space: 1,
            next_mapping: 1,
        }
    }

    /// The machine (tests reach the fake through it).
    pub fn machine(&self) -> &M {
        &self.machine
    }

    /// The machine, mutable.
    pub fn machine_mut(&mut self) -> &mut M {
        &mut self.machine
    }

    /// The page-state hooks.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }

    /// The page-state hooks, mutable.
    pub fn hooks_mut(&mut self) -> &mut H {
        &mut self.hooks
    }

    /// The backing device.
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The backing-store image's file table.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// The frame allocator (counts, metadata).
    pub fn frames(&self) -> &FrameAllocator {
        &self.frames
    }

    /// The metadata of `pfn`.
    pub fn page(&self, pfn: Pfn) -> Option<&Page> {
        self.frames.pages().get(pfn)
    }

    /// Event counters.
    pub fn stats(&self) -> MmStats {
        MmStats {
            freed_discarded: self.frames.freed_discarded(),
            ..self.stats
        }
    }

    /// Rules of the series found broken since the last [`Mm::take_bugs`] (the first
    /// few; [`MmStats::bugs`] counts them all).
    pub fn bugs(&self) -> &[Bug] {
        &self.bugs
    }

    /// Hands over the recorded [`Bug`]s (the kernel's test runner fails the test during
    /// which they were found).
    pub fn take_bugs(&mut self) -> alloc::vec::Vec<Bug> {
        core::mem::take(&mut self.bugs)
    }

    /// Records a broken rule and returns it as the operation's error.
    pub(crate) fn bug(&mut self, bug: Bug) -> MmError {
        self.stats.bugs += 1;
        if self.bugs.len() < KEPT_BUGS {
            self.bugs.push(bug);
        }
        MmError::Bug(bug)
    }

    /// The configuration.
    pub fn config(&self) -> &MmConfig {
        &self.config
    }

    /// Sets the reclaim watermarks (tests use this to create pressure).
    pub fn set_watermarks(&mut self, low: usize, high: usize) {
        self.config.low_watermark = low;
        self.config.high_watermark = high.max(low);
    }

    pub(crate) fn page_mut(&mut self, pfn: Pfn) -> &mut Page {
        &mut self.frames.pages_mut()[pfn]
    }

    pub(crate) fn table_frames(&mut self) -> (&mut M, TableFrames<'_, H>) {
        (
            &mut self.machine,
            TableFrames {
                frames: &mut self.frames,
                hooks: &mut self.hooks,
            },
        )
    }

    // ---- kernel and user address spaces ----

    /// Builds the kernel address space: `identity` mapped one to one, writable.
    /// Every user space created afterwards shares it.
    pub fn build_kernel_space(&mut self, identity: Range<PhysAddr>) -> Result<Asce, MmError> {
        let (machine, mut tables) = self.table_frames();
        let mut dat = DatSpace::new_kernel(machine, &mut tables)?;
        dat.identity_map(machine, &mut tables, identity, true)?;
        let asce = dat.asce();
        self.kernel = Some(dat);
        Ok(asce)
    }

    /// Uses an existing kernel address space (built elsewhere, e.g. the kernel's boot
    /// identity map) as the part shared into every user space created afterwards.
    pub fn adopt_kernel_space(&mut self, kernel: DatSpace) {
        self.kernel = Some(kernel);
    }

    /// The kernel's ASCE, once built.
    pub fn kernel_asce(&self) -> Option<Asce> {
        self.kernel.as_ref().map(DatSpace::asce)
    }

    /// Runs a DAT operation that may allocate tables and, each time it runs out of frames,
    /// makes room for the tables one way after another and runs it again after each way
    /// that may have freed some (`op` must leave the tables consistent when it fails).
    /// Tables come straight from the free list, without the watermark reclaim of
    /// [`Mm::alloc_page`]. A new segment table and a page table are a frame each; a
    /// segment table that grows needs up to [`SEGMENT_TABLE_FRAMES`] contiguous frames,
    /// which scattered free frames cannot provide: [`Mm::reclaim_block`] frees such a
    /// block when single frames did not do.
    pub(crate) fn with_table_reclaim<R>(
        &mut self,
        mut op: impl FnMut(&mut Self) -> Result<R, MmError>,
    ) -> Result<R, MmError> {
        let mut result = op(self);
        // Each way to more frames, cheapest first, until the operation gets what it needs.
        for step in 0..3 {
            if !matches!(result, Err(MmError::OutOfMemory)) {
                break;
            }
            let more = match step {
                // A segment table and a page table may both be missing.
                0 => {
                    const NEEDED: usize = 2;
                    let free = self.frames.free_count();
                    free < NEEDED && self.reclaim(NEEDED - free) > 0
                }
                1 => self.reclaim_block(SEGMENT_TABLE_FRAMES),
                _ => self.wait_for_deferred_frames(),
            };
            if more {
                result = op(self);
            }
        }
        result
    }

    /// A new, empty user address space sharing the kernel part.
    pub fn create_space(&mut self) -> Result<SpaceId, MmError> {
        let id = SpaceId::new(self.next_space).ok_or(MmError::NoSpace)?;
        let shared = self.config.kernel_shared.clone();
        let user = self.config.user.clone();
        let mut dat = self.with_table_reclaim(|mm| {
            let (machine, mut tables) = mm.table_frames();
            DatSpace::new(machine, &mut tables)
        })?;
        let machine = &mut self.machine;
        if let Some(kernel) = &self.kernel {
            dat.share_from(machine, kernel, shared)?;
        }
        self.next_space += 1;
        self.spaces.insert(
            id,
            AddressSpace {
                dat,
                vmas: VmaTree::new(user),
            },
        );
        Ok(id)
    }

    /// The ids of every user address space.
    pub fn space_ids(&self) -> impl Iterator<Item = SpaceId> + '_ {
        self.spaces.keys().copied()
    }

    /// The address space `id`.
    pub fn space(&self, id: SpaceId) -> Option<&AddressSpace> {
        self.spaces.get(&id)
    }

    pub(crate) fn space_ref(&self, id: SpaceId) -> Result<&AddressSpace, MmError> {
        self.spaces.get(&id).ok_or(MmError::NoSuchObject)
    }

    /// Unmaps everything in `id` and frees its tables.
    pub fn destroy_space(&mut self, id: SpaceId) -> Result<(), MmError> {
        let user = self.config.user.clone();
        let len = user.end.as_u64() - user.start.as_u64();
        self.munmap(id, user.start, len)?;
        let space = self.spaces.remove(&id).ok_or(MmError::NoSuchObject)?;
        let shared = self.config.kernel_shared.clone();
        let (machine, mut tables) = self.table_frames();
        space.dat.destroy(machine, &mut tables, shared);
        Ok(())
    }

    // ---- files ----

    /// The page-cache mapping of image file `file_id`, created on first use.
    pub fn open_file(&mut self, file_id: u32) -> Result<MappingId, MmError> {
        if file_id == DEVICE_RANGE_FILE_ID {
            return Err(MmError::NoSuchObject);
        }
        if let Some((&id, _)) = self.mappings.iter().find(|(_, m)| m.file().id == file_id) {
            return Ok(id);
        }
        let file = self.image.file(file_id).ok_or(MmError::NoSuchObject)?;
        let id = MappingId::new(self.next_mapping).ok_or(MmError::NoSpace)?;
        self.next_mapping += 1;
        self.mappings.insert(id, Mapping::new(id, file));
        Ok(id)
    }

    /// A page-cache mapping of `pages` device blocks from `start_block`, outside any
    /// image file (Linux: the block device's own mapping, what a raw read of the device
    /// goes through). Nothing checks the range against the device: a block past its end
    /// fails when the device is asked, as an I/O error.
    pub fn open_device_range(
        &mut self,
        start_block: u64,
        pages: u64,
    ) -> Result<MappingId, MmError> {
        let size = pages
            .checked_mul(super::addr::PAGE_SIZE)
            .ok_or(MmError::Overflow)?;
        let file = super::backing::FileEntry {
            id: DEVICE_RANGE_FILE_ID,
            size,
            start_block,
        };
        let id = MappingId::new(self.next_mapping).ok_or(MmError::NoSpace)?;
        self.next_mapping += 1;
        self.mappings.insert(id, Mapping::new(id, file));
        Ok(id)
    }

    /// The mapping `id`.
    pub fn mapping(&self, id: MappingId) -> Option<&Mapping> {
        self.mappings.get(&id)
    }

    pub(crate) fn mapping_ref(&self, id: MappingId) -> Result<&Mapping, MmError> {
        self.mappings.get(&id).ok_or(MmError::NoSuchObject)
    }

    // ---- frames ----

    /// Allocates a frame for data, reclaiming first when free frames fall
    /// below the low watermark, and again when none is left.
    pub fn alloc_page(&mut self) -> Result<Pfn, MmError> {
        self.frames.reap(&mut self.hooks);
        if self.frames.free_count() < self.config.low_watermark {
            self.stats.watermark_reclaims += 1;
            let target = self.config.high_watermark - self.frames.free_count();
            self.reclaim(target);
        }
        if let Some(pfn) = self.frames.alloc(FrameUse::Data, &mut self.hooks) {
            return Ok(pfn);
        }
        self.reclaim(1);
        loop {
            if let Some(pfn) = self.frames.alloc(FrameUse::Data, &mut self.hooks) {
                return Ok(pfn);
            }
            if !self.wait_for_deferred_frames() {
                return Err(MmError::OutOfMemory);
            }
        }
    }

    /// When nothing is free but frames of discarded pages wait for other CPUs'
    /// quiescent points (6/6), waits for their grace period and reports whether a frame
    /// came free. Linux does not fail an order-0 allocation while progress is possible
    /// either: `__alloc_pages_slowpath` retries. Two grace periods at most (the frames
    /// freed while the first ran need the second); a frame a CPU holds in its discard
    /// fault, waiting for this lock, stays out.
    pub(crate) fn wait_for_deferred_frames(&mut self) -> bool {
        for _ in 0..2 {
            if self.frames.deferred_count() == 0 || !self.hooks.wait_for_grace() {
                return false;
            }
            self.frames.reap(&mut self.hooks);
            if self.frames.free_count() > 0 {
                self.stats.grace_waits += 1;
                return true;
            }
        }
        false
    }

    /// Frees the frames of discarded pages whose grace period elapsed (6/6), and
    /// starts the next one; allocations do this themselves.
    pub fn reap_deferred(&mut self) {
        self.frames.reap(&mut self.hooks);
    }

    /// Takes a reference (`get_page`).
    pub fn get_page(&mut self, pfn: Pfn) {
        self.page_mut(pfn).get();
    }

    /// Drops a reference (`put_page`/`page_cache_release`). The last one frees
    /// the frame (off the LRU first); otherwise the page may become volatile.
    pub fn put_page(&mut self, pfn: Pfn) {
        if self.page_mut(pfn).put() == 0 {
            // The device may still be transferring to or from the frame.
            assert!(
                !self.in_flight.contains_key(&pfn),
                "put_page: freeing {pfn:?} with I/O in flight"
            );
            if self.page(pfn).is_some_and(|p| p.test(PageFlags::LRU)) {
                self.lru_del(pfn);
            }
            debug_assert_eq!(self.page(pfn).map(Page::mapcount), Some(0));
            self.frames.free(pfn, &mut self.hooks);
        } else {
            self.try_volatile(pfn, VolatilePoint::CacheRelease, 0);
        }
    }

    /// Offers the page to the page-state layer for the volatile state.
    pub(crate) fn try_volatile(&mut self, pfn: Pfn, at: VolatilePoint, caller_refs: u32) {
        let page = &self.frames.pages()[pfn];
        let mapping_mlocked = page
            .mapping()
            .and_then(|m| self.mappings.get(&m))
            .is_some_and(Mapping::is_mlocked);
        // The expected count always includes the page cache's reference, as the
        // series' `offset` does: a page truncated from the cache while someone else
        // still holds it then passes the count check, and only its missing mapping
        // (1/6 `check_bits`: `page_mapping() == NULL`) keeps it stable.
        let ctx = VolatileContext {
            mapping_mlocked,
            caller_refs: caller_refs + 1,
        };
        let page = &mut self.frames.pages_mut()[pfn];
        self.hooks.try_make_volatile(pfn, page, ctx, at);
    }
}
