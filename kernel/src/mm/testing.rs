//! Host test support: an [`Mm`] over the fakes, a software "CPU" that
//! accesses user memory the way DAT would (faulting on invalid or protected
//! PTEs, setting storage-key bits), and hooks that record what mm calls.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use core::ops::Range;

use super::addr::{PAGE_SIZE, Pfn, VirtAddr};
use super::backing::{Deferred, MemDisk, build_image};
use super::dat::Pte;
use super::error::MmError;
use super::fake::FakeMachine;
use super::fault::Access;
use super::hooks::{
    FrameUse, Freed, GraceState, PageStateHooks, Stability, StablePoint, VolatileContext,
    VolatilePoint,
};
use super::ids::{MappingId, SpaceId};
use super::machine::PhysMem;
use super::manager::{Mm, MmConfig};
use super::mmap::MapSource;
use super::page::{Page, PageFlags};
use super::vma::VmFlags;

/// One recorded hook call.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HookEvent {
    /// `frame_allocated`.
    Allocated(Pfn, FrameUse),
    /// `frame_freed`.
    Freed(Pfn),
    /// `try_make_volatile`.
    TryVolatile(Pfn, VolatilePoint, VolatileContext),
    /// `make_stable`.
    Stable(Pfn, StablePoint),
    /// `page_discarded`.
    Discarded(Pfn),
}

/// Hooks that record every call and report the frames in `discarded` as
/// discarded by the host (once: `make_stable` then takes them out of the set).
#[derive(Debug, Default)]
pub struct RecordingHooks {
    /// Calls in order (frame allocations/frees only if `record_frames`).
    pub events: Vec<HookEvent>,
    /// Whether frame allocation and free are recorded.
    pub record_frames: bool,
    /// Frames the "host" has discarded.
    pub discarded: BTreeSet<Pfn>,
    /// Whether discarded pages may be unmapped in locked VMAs (the seed's rule).
    pub seed_unmap_rule: bool,
    /// A grace period never elapses (another CPU is taken to be inside a discard fault).
    pub grace_held: bool,
    /// `wait_for_grace` ends a held grace period (the other CPU passes a point).
    pub grace_ends_on_wait: bool,
    /// Calls of `wait_for_grace`.
    pub grace_waits: u32,
}

impl RecordingHooks {
    /// The recorded `try_make_volatile` points for `pfn`.
    pub fn volatile_points(&self, pfn: Pfn) -> Vec<VolatilePoint> {
        self.events
            .iter()
            .filter_map(|e| match *e {
                HookEvent::TryVolatile(p, at, _) if p == pfn => Some(at),
                _ => None,
            })
            .collect()
    }

    /// The recorded `make_stable` points for `pfn`.
    pub fn stable_points(&self, pfn: Pfn) -> Vec<StablePoint> {
        self.events
            .iter()
            .filter_map(|e| match *e {
                HookEvent::Stable(p, at) if p == pfn => Some(at),
                _ => None,
            })
            .collect()
    }
}

impl PageStateHooks for RecordingHooks {
    fn frame_allocated(&mut self, pfn: Pfn, _page: &mut Page, usage: FrameUse) {
        self.discarded.remove(&pfn);
        if self.record_frames {
            self.events.push(HookEvent::Allocated(pfn, usage));
        }
    }

    fn frame_freed(&mut self, pfn: Pfn, _page: &mut Page) -> Freed {
        if self.record_frames {
            self.events.push(HookEvent::Freed(pfn));
        }
        if self.discarded.remove(&pfn) {
            Freed::Discarded
        } else {
            Freed::Kept
        }
    }

    fn try_make_volatile(
        &mut self,
        pfn: Pfn,
        _page: &mut Page,
        ctx: VolatileContext,
        at: VolatilePoint,
    ) {
        self.events.push(HookEvent::TryVolatile(pfn, at, ctx));
    }

    fn make_stable(&mut self, pfn: Pfn, _page: &mut Page, at: StablePoint) -> Stability {
        self.events.push(HookEvent::Stable(pfn, at));
        if self.discarded.remove(&pfn) {
            Stability::Discarded
        } else {
            Stability::Stable
        }
    }

    fn may_unmap_in_locked_vma(&mut self, _pfn: Pfn, page: &Page) -> bool {
        self.seed_unmap_rule && page.test(PageFlags::DISCARDED)
    }

    fn page_discarded(&mut self, pfn: Pfn, _page: &Page) {
        self.events.push(HookEvent::Discarded(pfn));
    }

    fn grace_state(&mut self) -> GraceState {
        if self.grace_held {
            GraceState::Running
        } else {
            GraceState::Elapsed(Vec::new())
        }
    }

    fn wait_for_grace(&mut self) -> bool {
        self.grace_waits += 1;
        if self.grace_ends_on_wait {
            self.grace_held = false;
        }
        !self.grace_held
    }
}

/// The memory manager used by host tests.
pub type TestMm<H = RecordingHooks> = Mm<FakeMachine, Deferred<MemDisk<Vec<u8>>>, H>;

/// Frames 0..16 play lowcore and kernel image (reserved).
pub const RESERVED_FRAMES: u64 = 16;

/// An [`Mm`] with `frames` frames of memory and an image holding `files`.
pub fn test_mm<H: PageStateHooks>(frames: u64, files: &[(u32, u64)], hooks: H) -> TestMm<H> {
    let disk = Deferred::new(MemDisk::new(build_image(files)));
    let config = MmConfig {
        low_watermark: 8,
        high_watermark: 16,
        ..MmConfig::default()
    };
    Mm::new(
        FakeMachine::new(frames as usize),
        disk,
        hooks,
        Pfn::new(0)..Pfn::new(frames),
        &[Pfn::new(RESERVED_FRAMES)..Pfn::new(frames)],
        config,
    )
    .expect("test image loads")
}

/// A test [`Mm`] over one image file `file_id` of `size` bytes, opened.
pub fn mm_with_file(frames: u64, file_id: u32, size: u64) -> (TestMm, MappingId) {
    let mut mm = test_mm(frames, &[(file_id, size)], RecordingHooks::default());
    let mapping = mm.open_file(file_id).expect("the image holds the file");
    (mm, mapping)
}

/// A file mapping source that starts at byte 0 of `mapping`.
pub fn from_file_start(mapping: MappingId) -> MapSource {
    MapSource::File { mapping, offset: 0 }
}

/// Maps `len` bytes of `mapping` from its start anywhere in `space`.
pub fn mmap_file<H: PageStateHooks>(
    mm: &mut TestMm<H>,
    space: SpaceId,
    mapping: MappingId,
    len: u64,
    flags: VmFlags,
) -> VirtAddr {
    mm.mmap(space, None, len, flags, from_file_start(mapping))
        .expect("file mapping succeeds")
}

/// A test [`Mm`] with one address space that maps one file from its start.
#[derive(Debug)]
pub struct MappedFile<H: PageStateHooks = RecordingHooks> {
    /// The memory manager.
    pub mm: TestMm<H>,
    /// The address space holding the mapping.
    pub space: SpaceId,
    /// The file's page-cache mapping.
    pub mapping: MappingId,
    /// Where the file is mapped.
    pub va: VirtAddr,
}

/// A [`MappedFile`]: `frames` frames, image file `file_id` of `pages` pages,
/// all of it mapped with `flags`.
pub fn map_whole_file<H: PageStateHooks>(
    frames: u64,
    file_id: u32,
    pages: u64,
    flags: VmFlags,
    hooks: H,
) -> MappedFile<H> {
    let mut mm = test_mm(frames, &[(file_id, pages * PAGE_SIZE)], hooks);
    let mapping = mm.open_file(file_id).expect("the image holds the file");
    let space = mm.create_space().expect("a space fits");
    let va = mmap_file(&mut mm, space, mapping, pages * PAGE_SIZE, flags);
    MappedFile {
        mm,
        space,
        mapping,
        va,
    }
}

/// The address `pages` pages after `va`.
pub fn page_at(va: VirtAddr, pages: u64) -> VirtAddr {
    VirtAddr::new(va.as_u64() + pages * PAGE_SIZE)
}

/// The valid PTE that maps `va` in `space`, if any.
pub fn pte_of<H: PageStateHooks>(mm: &TestMm<H>, space: SpaceId, va: VirtAddr) -> Option<Pte> {
    mm.space(space)
        .expect("the space exists")
        .dat
        .walk(mm.machine(), va)
        .valid_pte()
        .map(|(_, pte)| pte)
}

/// The frame mapped at `va` in `space`, if any.
pub fn mapped_pfn<H: PageStateHooks>(mm: &TestMm<H>, space: SpaceId, va: VirtAddr) -> Option<Pfn> {
    pte_of(mm, space, va).map(|pte| pte.pfn())
}

/// An access by the "CPU" in `space`: translate, fault as DAT would, retry.
/// Returns the frame and sets its storage-key bits.
pub fn user_access<H: PageStateHooks>(
    mm: &mut TestMm<H>,
    space: SpaceId,
    va: VirtAddr,
    access: Access,
) -> Result<Pfn, MmError> {
    for _ in 0..8 {
        let dat = &mm.space(space).ok_or(MmError::NoSuchObject)?.dat;
        if let Some((_, pte)) = dat.walk(mm.machine(), va.align_down(PAGE_SIZE)).valid_pte()
            && (access == Access::Read || !pte.is_protected())
        {
            let pfn = pte.pfn();
            mm.machine_mut().touch(pfn, access == Access::Write);
            return Ok(pfn);
        }
        mm.handle_fault(space, va, access)?;
    }
    panic!("access at {va:?} keeps faulting");
}

/// Splits the user range `[va, va + len)` at page boundaries and, after the
/// "CPU" made each page accessible for `access`, calls `copy` with the frame,
/// the byte range inside the frame and the matching range of the buffer.
fn for_each_user_page<H: PageStateHooks>(
    mm: &mut TestMm<H>,
    space: SpaceId,
    va: VirtAddr,
    len: usize,
    access: Access,
    mut copy: impl FnMut(&mut TestMm<H>, Pfn, Range<usize>, Range<usize>),
) -> Result<(), MmError> {
    let mut done = 0;
    while done < len {
        let at = VirtAddr::new(va.as_u64() + done as u64);
        let off = at.page_offset() as usize;
        let n = (PAGE_SIZE as usize - off).min(len - done);
        let pfn = user_access(mm, space, at, access)?;
        copy(mm, pfn, off..off + n, done..done + n);
        done += n;
    }
    Ok(())
}

/// Reads user memory byte range `[va, va + buf.len())`.
pub fn user_read<H: PageStateHooks>(
    mm: &mut TestMm<H>,
    space: SpaceId,
    va: VirtAddr,
    buf: &mut [u8],
) -> Result<(), MmError> {
    for_each_user_page(
        mm,
        space,
        va,
        buf.len(),
        Access::Read,
        |mm, pfn, frame, part| {
            buf[part].copy_from_slice(&mm.machine().frame_ref(pfn)[frame]);
        },
    )
}

/// Writes `data` to user memory at `va`.
pub fn user_write<H: PageStateHooks>(
    mm: &mut TestMm<H>,
    space: SpaceId,
    va: VirtAddr,
    data: &[u8],
) -> Result<(), MmError> {
    for_each_user_page(
        mm,
        space,
        va,
        data.len(),
        Access::Write,
        |mm, pfn, frame, part| {
            mm.machine_mut().frame(pfn)[frame].copy_from_slice(&data[part]);
        },
    )
}
