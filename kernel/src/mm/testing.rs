//! Host test support: an [`Mm`] over the fakes, a software "CPU" that
//! accesses user memory the way DAT would (faulting on invalid or protected
//! PTEs, setting storage-key bits), and hooks that record what mm calls.

use alloc::collections::BTreeSet;
use alloc::vec::Vec;

use super::addr::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use super::backing::{MemDisk, build_image};
use super::error::MmError;
use super::fake::FakeMachine;
use super::fault::Access;
use super::hooks::{
    FrameUse, PageStateHooks, Stability, StablePoint, VolatileContext, VolatilePoint,
};
use super::ids::SpaceId;
use super::machine::PhysMem;
use super::manager::{Mm, MmConfig};
use super::page::{Page, PageFlags};

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

    fn frame_freed(&mut self, pfn: Pfn, _page: &mut Page) {
        if self.record_frames {
            self.events.push(HookEvent::Freed(pfn));
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
}

/// The memory manager used by host tests.
pub type TestMm<H = RecordingHooks> = Mm<FakeMachine, MemDisk<Vec<u8>>, H>;

/// Frames 0..16 play lowcore and kernel image (reserved).
pub const RESERVED_FRAMES: u64 = 16;

/// An [`Mm`] with `frames` frames of memory and an image holding `files`.
pub fn test_mm<H: PageStateHooks>(frames: u64, files: &[(u32, u64)], hooks: H) -> TestMm<H> {
    let disk = MemDisk::new(build_image(files));
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

/// Reads user memory byte range `[va, va + buf.len())`.
pub fn user_read<H: PageStateHooks>(
    mm: &mut TestMm<H>,
    space: SpaceId,
    va: VirtAddr,
    buf: &mut [u8],
) -> Result<(), MmError> {
    let mut done = 0;
    while done < buf.len() {
        let at = VirtAddr::new(va.as_u64() + done as u64);
        let off = at.page_offset() as usize;
        let n = (PAGE_SIZE as usize - off).min(buf.len() - done);
        let pfn = user_access(mm, space, at, Access::Read)?;
        let pa = PhysAddr::new(pfn.addr().as_u64());
        buf[done..done + n].copy_from_slice(&mm.machine().frame_ref(pa.pfn())[off..off + n]);
        done += n;
    }
    Ok(())
}

/// Writes `data` to user memory at `va`.
pub fn user_write<H: PageStateHooks>(
    mm: &mut TestMm<H>,
    space: SpaceId,
    va: VirtAddr,
    data: &[u8],
) -> Result<(), MmError> {
    let mut done = 0;
    while done < data.len() {
        let at = VirtAddr::new(va.as_u64() + done as u64);
        let off = at.page_offset() as usize;
        let n = (PAGE_SIZE as usize - off).min(data.len() - done);
        let pfn = user_access(mm, space, at, Access::Write)?;
        mm.machine_mut().frame(pfn)[off..off + n].copy_from_slice(&data[done..done + n]);
        done += n;
    }
    Ok(())
}
