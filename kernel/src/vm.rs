//! The kernel's memory manager: one [`Mm`] over the machine, the initrd as backing store
//! and the page-state layer, plus the glue the interruption path needs (demand faults
//! and the block-volatility fault) and user address spaces for test bodies.
//!
//! Several CPUs: one lock for the memory manager ([`CpuMutex`], it records its
//! holder). The lock is never held across a user access, so a fault handler can always
//! take it: it waits while *another* CPU holds it (that CPU never waits for this one:
//! TLB purges are broadcast by IPTE/CSP, not IPIs), and a fault on the CPU that holds it
//! is a kernel bug that ends the run. Lock order: the memory manager, then the host
//! model (a trapped ESSA inside the memory manager); the model's holder never takes the
//! memory manager's lock.
//!
//! Frames of discarded pages are freed only after a grace period (series 6/6): every
//! CPU passes a quiescent point ([`quiescent`]) when it leaves a memory-manager
//! operation ([`with`]), at each sign of progress of a multi-CPU test and while it waits
//! idle; a CPU still inside a discard fault for a frame has not, so the frame is not
//! handed out again under it.

use crate::arch::cpu;
use crate::arch::interrupts::PgmInfo;
use crate::arch::kspace;
use crate::arch::percpu::{CpuNr, MAX_CPUS, PerCpu, this_cpu};
use crate::arch::storage::Machine;
use crate::arch::sync::{CpuMutex, CpuMutexGuard};
use crate::cmma::backend::{self, Backend};
use crate::cmma::essa::{Orc, PageStateByte};
use crate::cmma::states::{Essa, PageStates};
use crate::io::disk::KernelDisk;
use crate::mm::addr::{Pfn, PhysAddr, VirtAddr};
use crate::mm::backing::{BlockDevice, Image, ImageError};
use crate::mm::error::MmError;
use crate::mm::fault::Access;
use crate::mm::hooks::{
    FrameUse, Freed, GraceState, NoHooks, PageStateHooks, Stability, StablePoint, VolatileContext,
    VolatilePoint,
};
use crate::mm::ids::SpaceId;
use crate::mm::manager::{Mm, MmConfig, USER_END, USER_START};
use crate::mm::page::Page;
use crate::quiesce::{Grace, Quiescence};
use core::ops::Range;
use core::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};

/// ESSA as the kernel issues it: the instruction (native, or trapped into the model).
#[derive(Debug, Default)]
pub struct MachineEssa;

impl Essa for MachineEssa {
    fn essa(&self, orc: Orc, pfn: Pfn) -> PageStateByte {
        // The arch layer knows raw codes and bytes only; the types are the page-state
        // layer's.
        PageStateByte(crate::arch::essa::essa(orc.code(), pfn.addr().as_u64()))
    }
}

/// Page hinting on or off (`cmma=off`).
#[derive(Debug)]
pub enum Layer {
    /// No ESSA at all: the plain memory manager.
    Off(NoHooks),
    /// The 2007 page-state rules, issuing ESSA.
    On(PageStates<MachineEssa>),
}

/// The memory manager's hooks in the kernel: the page-state layer (or none), and the
/// grace periods of the deferred freeing of discarded frames.
#[derive(Debug)]
pub struct Hinting {
    layer: Layer,
    grace: Grace,
}

impl Hinting {
    /// The page-state layer, when hinting is on.
    pub fn states(&self) -> Option<&PageStates<MachineEssa>> {
        match &self.layer {
            Layer::On(s) => Some(s),
            Layer::Off(_) => None,
        }
    }
}

macro_rules! delegate {
    ($self:ident, $h:ident => $e:expr) => {
        match &mut $self.layer {
            Layer::Off($h) => $e,
            Layer::On($h) => $e,
        }
    };
}

impl PageStateHooks for Hinting {
    fn frame_allocated(&mut self, pfn: Pfn, page: &mut Page, usage: FrameUse) {
        delegate!(self, h => h.frame_allocated(pfn, page, usage))
    }
    fn frame_freed(&mut self, pfn: Pfn, page: &mut Page) -> Freed {
        delegate!(self, h => h.frame_freed(pfn, page))
    }
    fn try_make_volatile(
        &mut self,
        pfn: Pfn,
        page: &mut Page,
        ctx: VolatileContext,
        at: VolatilePoint,
    ) {
        delegate!(self, h => h.try_make_volatile(pfn, page, ctx, at))
    }
    fn make_stable(&mut self, pfn: Pfn, page: &mut Page, at: StablePoint) -> Stability {
        delegate!(self, h => h.make_stable(pfn, page, at))
    }
    fn may_unmap_in_locked_vma(&mut self, pfn: Pfn, page: &Page) -> bool {
        delegate!(self, h => h.may_unmap_in_locked_vma(pfn, page))
    }
    fn page_discarded(&mut self, pfn: Pfn, page: &Page) {
        delegate!(self, h => h.page_discarded(pfn, page))
    }
    fn start_grace(&mut self) {
        let Some(q) = QUIESCENCE.get() else { return };
        // The CPU that frees the frames holds nothing of them any more: on one CPU the
        // grace period has elapsed at once.
        q.start_into(&mut self.grace);
        self.grace.without(this_cpu());
    }
    fn wait_for_grace(&mut self) -> bool {
        let deadline = cpu::tod() + cpu::us_to_tod(GRACE_WAIT_US);
        loop {
            if !matches!(self.grace_state(), GraceState::Running) {
                return true;
            }
            if cpu::tod() > deadline {
                return false;
            }
            core::hint::spin_loop();
        }
    }
    fn grace_state(&mut self) -> GraceState {
        let Some(q) = QUIESCENCE.get() else {
            return GraceState::Elapsed(alloc::vec::Vec::new());
        };
        let mut held = alloc::vec::Vec::new();
        if q.elapsed_but(&self.grace, &mut held) {
            GraceState::Elapsed(held.into_iter().map(Pfn::new).collect())
        } else {
            GraceState::Running
        }
    }
}

/// How long an allocation that found nothing free waits for other CPUs to pass a
/// quiescent point (they do between two operations, and a CPU waiting for the memory
/// manager's lock holds nothing): long enough for a CPU in the middle of a test body
/// under TCG, short enough that a CPU that never gets there costs one failed allocation.
const GRACE_WAIT_US: u64 = 100_000;

/// Quiescent points of every CPU (set up with the memory manager; CPU 0 takes part from
/// the start, a secondary while it runs a part of a multi-CPU test).
static QUIESCENCE: spin::Once<Quiescence> = spin::Once::new();

/// This CPU passed a quiescent point: it holds no frame address it found outside the
/// memory manager's lock (a discard fault it has not finished).
pub fn quiescent() {
    if let Some(q) = QUIESCENCE.get() {
        q.quiescent(this_cpu());
    }
}

/// CPU `cpu` runs kernel work that may touch memory-manager frames from now on (true),
/// or no longer (false): only such CPUs hold grace periods up.
pub fn set_cpu_active(cpu: CpuNr, active: bool) {
    if let Some(q) = QUIESCENCE.get()
        && cpu < q.cpus()
    {
        q.set_online(cpu, active);
    }
}

/// The kernel's memory manager type.
pub type KernelMm = Mm<Machine, KernelDisk, Hinting>;

static MM: CpuMutex<Option<KernelMm>> = CpuMutex::new(None);

/// The user address space in each CPU's CR1 (0: the kernel's).
static CURRENT_SPACE: PerCpu<AtomicU32> = PerCpu::new([const { AtomicU32::new(0) }; MAX_CPUS]);

/// Fault handlers waiting for the memory manager's lock another CPU holds.
static FAULT_WAITERS: AtomicUsize = AtomicUsize::new(0);

/// How many CPUs wait in a fault handler for the memory manager's lock right now
/// (tests of the races between CPUs wait for this).
pub fn fault_waiters() -> usize {
    FAULT_WAITERS.load(Ordering::Acquire)
}

/// CPUs waiting for the memory manager's lock, in a fault handler or not.
static LOCK_WAITERS: AtomicUsize = AtomicUsize::new(0);

/// How many CPUs wait for the memory manager's lock right now, for any reason.
pub fn lock_waiters() -> usize {
    LOCK_WAITERS.load(Ordering::Acquire)
}

/// What a CPU that waits for the memory manager's lock holds of its frames.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Holding {
    /// Nothing: it waits between two operations, or with a translation exception (a
    /// virtual address). It counts as quiescent while it waits, so the grace periods
    /// the lock's holder starts do not wait for it: the holder may need the frames it
    /// frees within the same operation, and this CPU cannot pass a point before it has
    /// the lock.
    Nothing,
    /// The absolute address of a block-volatility exception it has not handled: the
    /// grace periods wait for it (6/6), but only for that frame; the lock's holder
    /// may need the others within the same operation.
    DiscardedFrame(Pfn),
}

/// The memory manager's lock, waited for as `holding` says.
fn lock(holding: Holding) -> CpuMutexGuard<'static, Option<KernelMm>> {
    lock_counted(holding, &[])
}

/// [`lock`], counted while it waits in `waiters` as well as in [`LOCK_WAITERS`]. The
/// counts go up only once the CPU is idle or has published its frame: a CPU that sees
/// one (a test waiting for a CPU to wait) also sees what the wait holds up.
fn lock_counted(
    holding: Holding,
    waiters: &[&AtomicUsize],
) -> CpuMutexGuard<'static, Option<KernelMm>> {
    if let Some(guard) = MM.try_lock() {
        return guard;
    }
    let cpu = this_cpu();
    let quiescence = QUIESCENCE.get().filter(|q| cpu < q.cpus());
    match (quiescence, holding) {
        (Some(q), Holding::Nothing) => q.set_idle(cpu, true),
        (Some(q), Holding::DiscardedFrame(pfn)) => q.set_held(cpu, Some(pfn.as_u64())),
        (None, _) => {}
    }
    for count in waiters.iter().chain([&&LOCK_WAITERS]) {
        count.fetch_add(1, Ordering::AcqRel);
    }
    let guard = MM.lock();
    for count in waiters.iter().chain([&&LOCK_WAITERS]) {
        count.fetch_sub(1, Ordering::AcqRel);
    }
    // Nobody reaps while this CPU holds the lock.
    match (quiescence, holding) {
        (Some(q), Holding::Nothing) => q.set_idle(cpu, false),
        (Some(q), Holding::DiscardedFrame(_)) => q.set_held(cpu, None),
        (None, _) => {}
    }
    guard
}

/// The memory manager's lock for a fault handler: waits while another CPU holds it;
/// `None` if this CPU holds it (the fault hit inside its own critical section).
fn lock_for_fault(holding: Holding) -> Option<CpuMutexGuard<'static, Option<KernelMm>>> {
    if MM.held_here() {
        return None;
    }
    Some(lock_counted(holding, &[&FAULT_WAITERS]))
}

/// Why the memory manager could not start.
#[derive(Debug)]
pub enum InitError {
    /// QEMU got no `-initrd` (or the loader gave none), or no virtio-blk disk.
    NoBackingStore,
    /// A backing store is there but is no usable image (wrong format, truncated).
    BadImage(ImageError),
}

impl core::fmt::Display for InitError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::NoBackingStore => f.write_str("no backing store"),
            Self::BadImage(e) => write!(f, "the backing store is unusable: {e}"),
        }
    }
}

/// Why a backing store that is there could not be used (set once, by [`init`]).
static UNUSABLE: spin::Once<alloc::string::String> = spin::Once::new();

/// Why the backing store the loader gave is unusable, if it is: tests that need the memory
/// manager fail with this instead of skipping (only an absent backing store may skip).
pub fn unusable() -> Option<&'static str> {
    UNUSABLE.get().map(alloc::string::String::as_str)
}

/// Starts the memory manager with the frames of `pool` over `disk` (the initrd or the
/// virtio-blk disk). A backing store that is not a valid image is remembered as
/// [`unusable`].
pub fn init(pool: Range<Pfn>, disk: KernelDisk) -> Result<(), InitError> {
    let size = disk.blocks() * 4096;
    let source = disk.name();
    let result = start(pool, disk);
    if let Err(error) = &result {
        UNUSABLE.call_once(|| alloc::format!("{error} ({size} bytes on the {source})"));
    }
    result
}

fn start(pool: Range<Pfn>, mut disk: KernelDisk) -> Result<(), InitError> {
    let image = Image::load(&mut disk).map_err(InitError::BadImage)?;
    let layer = match backend::current() {
        Backend::Off => Layer::Off(NoHooks),
        Backend::Native | Backend::Model => {
            Layer::On(PageStates::with_nodat(MachineEssa, backend::has_nodat()))
        }
    };
    let cpus = crate::arch::percpu::registered().max(1);
    let quiescence = QUIESCENCE.call_once(|| Quiescence::new(cpus));
    quiescence.set_online(0, true);
    let hinting = Hinting {
        layer,
        grace: Grace::with_capacity(cpus),
    };
    let pool_frames =
        usize::try_from(pool.end.as_u64() - pool.start.as_u64()).unwrap_or(usize::MAX);
    // Page metadata only for the frames the memory manager owns.
    let mut mm = Mm::with_image(
        Machine,
        disk,
        image,
        hinting,
        pool.clone(),
        &[pool],
        MmConfig::for_pool(pool_frames),
    );
    if let Some(kernel) = kspace::kernel_space_view() {
        mm.adopt_kernel_space(kernel);
    }
    *MM.lock() = Some(mm);
    Ok(())
}

/// Set when the boot left the memory manager and its disk off because no test it runs
/// needs either (`ktest::flags::NO_MM`).
static LEFT_OFF: AtomicBool = AtomicBool::new(false);

/// The boot does without the memory manager and the virtio-blk disk (`io::disk::init`
/// is not called): no test it runs needs either. The disk's write report then says
/// nothing was written.
pub fn leave_off() {
    LEFT_OFF.store(true, Ordering::Relaxed);
}

/// Whether the boot left the memory manager and the disk off on purpose ([`leave_off`]):
/// a test that asks for either then was flagged `NO_MM` wrongly, which fails it.
pub fn left_off() -> bool {
    LEFT_OFF.load(Ordering::Relaxed)
}

/// True when the memory manager runs (there is a backing store).
pub fn available() -> bool {
    MM.lock().is_some()
}

/// Runs `f` on the memory manager.
///
/// # Panics
/// If the memory manager did not start (suites check [`available`] and skip first).
pub fn with<R>(f: impl FnOnce(&mut KernelMm) -> R) -> R {
    let result = {
        let mut guard = lock(Holding::Nothing);
        f(guard
            .as_mut()
            .expect("memory manager not started (no backing store, or left off: see the banner)"))
    };
    // Out of the memory manager: whatever the caller found in it, it found under the
    // lock (and holds a reference for, if it keeps it).
    quiescent();
    result
}

/// A user address space for a test body; destroyed when dropped (the kernel's
/// address space becomes current again if it was entered).
#[derive(Debug)]
pub struct UserSpace {
    id: SpaceId,
}

impl UserSpace {
    /// A new, empty user address space sharing the kernel.
    pub fn new() -> Result<Self, MmError> {
        let (id, asce) = with(|mm| {
            let id = mm.create_space()?;
            let asce = mm.space(id).ok_or(MmError::NoSuchObject)?.asce();
            Ok::<_, MmError>((id, asce))
        })?;
        kspace::register_space(asce);
        Ok(UserSpace { id })
    }

    /// The memory manager's id of this space.
    pub fn id(&self) -> SpaceId {
        self.id
    }

    /// Makes this the current (CR1) address space, so user addresses reach it.
    pub fn enter(&self) {
        let asce = with(|mm| mm.space(self.id).map(|s| s.asce()));
        if let Some(asce) = asce {
            assert!(
                kspace::enter(asce),
                "user space does not share the kernel map"
            );
            CURRENT_SPACE.get().store(self.id.get(), Ordering::Relaxed);
        }
    }

    /// Makes the kernel's address space current again.
    pub fn leave(&self) {
        kspace::leave();
        CURRENT_SPACE.get().store(0, Ordering::Relaxed);
    }
}

impl Drop for UserSpace {
    fn drop(&mut self) {
        let asce = with(|mm| mm.space(self.id).map(|s| s.asce()));
        if CURRENT_SPACE.get().load(Ordering::Relaxed) == self.id.get() {
            self.leave();
        }
        if let Some(asce) = asce {
            kspace::unregister_space(asce);
        }
        let _ = with(|mm| mm.destroy_space(self.id));
    }
}

/// The frames the memory manager owns (its page pool), once it runs.
pub fn pool() -> Option<Range<Pfn>> {
    MM.lock().as_ref().map(|mm| {
        let pages = mm.frames().pages();
        pages.base()..Pfn::new(pages.base().as_u64() + pages.len() as u64)
    })
}

/// Destroys every user address space that `keep` does not hold: those a test body
/// left behind when it was cut short before its [`UserSpace`] was dropped. Returns how
/// many went.
pub fn destroy_spaces_except(keep: impl Fn(SpaceId) -> bool) -> usize {
    let leaked: alloc::vec::Vec<(SpaceId, _)> = with(|mm| {
        mm.space_ids()
            .filter(|&id| !keep(id))
            .filter_map(|id| Some((id, mm.space(id)?.asce())))
            .collect()
    });
    for &(id, asce) in &leaked {
        if CURRENT_SPACE.get().load(Ordering::Relaxed) == id.get() {
            reset_address_space();
        }
        kspace::unregister_space(asce);
        let _ = with(|mm| mm.destroy_space(id));
    }
    leaked.len()
}

/// Whether the memory manager's lock is held (by any CPU).
pub fn locked() -> bool {
    MM.is_locked()
}

/// Whether this CPU holds the memory manager's lock.
pub fn held_here() -> bool {
    MM.held_here()
}

/// Releases the memory manager's lock if this CPU held it in a test body (inside
/// [`with`]) that was cut short by a program interruption.
pub fn release_after_unwind() {
    MM.release_held_by(this_cpu());
}

/// Releases the memory manager's lock if the stopped CPU `cpu` held it.
pub fn release_held_by(cpu: CpuNr) {
    MM.release_held_by(cpu);
}

/// Puts the kernel's address space back after a test was cut short.
pub fn reset_address_space() {
    if CURRENT_SPACE.get().swap(0, Ordering::Relaxed) != 0 {
        kspace::leave();
    }
}

/// What the fault glue did with a program interruption.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultOutcome {
    /// Not a fault of the memory manager's.
    NotMine,
    /// Resolved: retry the access.
    Resolved,
    /// The memory manager refused (no VMA, beyond EOF, ...): a test error.
    Refused(MmError),
    /// The fault hit while the memory manager's lock was held: a kernel bug (user memory
    /// touched inside `vm::with`, or the memory manager touching a discarded frame).
    Busy,
}

fn user_address(info: &PgmInfo) -> Option<VirtAddr> {
    let va = VirtAddr::new(info.teid & !0xfff);
    (va >= USER_START && va < USER_END).then_some(va)
}

/// A translation or protection exception at a user address of the current space:
/// demand paging, copy on write, write notify.
pub fn translation_fault(info: &PgmInfo) -> FaultOutcome {
    let space = CURRENT_SPACE.get().load(Ordering::Relaxed);
    let (Some(space), Some(va)) = (SpaceId::new(space), user_address(info)) else {
        return FaultOutcome::NotMine;
    };
    let access = match info.code {
        // DAT protection (TEID bit 61 alone): a store to a page mapped read-only.
        // Instruction-execution protection (bits 56 and 61) and low-address protection
        // (bit 56) are not the memory manager's to resolve.
        0x04 if info.teid & 0x84 == 0x04 => Access::Write,
        // Facility 75 (fetch/store indication): TEID bits 52-53 = 01 for a store
        // (Linux `TEID_FSI_STORE`; QEMU `FS_WRITE` 0x400), 10 for a fetch.
        0x10 | 0x11 | 0x38..=0x3b if info.teid & 0xc00 == 0x400 => Access::Write,
        0x10 | 0x11 | 0x38..=0x3b => Access::Read,
        _ => return FaultOutcome::NotMine,
    };
    let Some(mut mm) = lock_for_fault(Holding::Nothing) else {
        return FaultOutcome::Busy;
    };
    let Some(mm) = mm.as_mut() else {
        return FaultOutcome::NotMine;
    };
    match mm.handle_fault(space, va, access) {
        Ok(()) => FaultOutcome::Resolved,
        Err(e) => FaultOutcome::Refused(e),
    }
}

/// Rules of the series the memory manager found broken since the last call (empty
/// without a memory manager); the test runner fails the test that ran meanwhile.
pub fn take_bugs() -> alloc::vec::Vec<crate::mm::error::Bug> {
    MM.lock()
        .as_mut()
        .map(KernelMm::take_bugs)
        .unwrap_or_default()
}

/// The block-volatility exception (0x1A): the page at the absolute address in the TEID
/// was discarded by the host. `page_discard` it; the retried access refaults normally.
/// A page nobody references any more is left alone and the access retried (6/6); a
/// frame the memory manager does not own is not its business (a test's own block).
///
/// Another CPU may have discarded the page and freed its frame while this one waited
/// for the lock: the reference check under the lock sees that (6/6
/// `get_page_unless_zero`), and the deferred freeing keeps the frame from being the
/// page of someone else by then.
pub fn discard_fault(info: &PgmInfo) -> FaultOutcome {
    let addr = PhysAddr::new(info.teid & !0xfff);
    let Some(mut mm) = lock_for_fault(Holding::DiscardedFrame(addr.pfn())) else {
        return FaultOutcome::Busy;
    };
    let Some(mm) = mm.as_mut() else {
        return FaultOutcome::NotMine;
    };
    match mm.discard_fault(addr) {
        Ok(()) => FaultOutcome::Resolved,
        Err(e) => FaultOutcome::Refused(e),
    }
}
