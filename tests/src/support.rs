//! Helpers the suites share: skip conditions, mapping and reading scratch files from a
//! user address space, the page cache and the backing device as the tests observe them,
//! and the page states seen through the host model.
//!
//! Helpers that only one suite needs stay in that suite.

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use kernel::arch::{cpu, uaccess};
use kernel::cmma::backend::{self, Backend, with_model};
use kernel::cmma::essa::UsageState;
use kernel::cmma::model::{Counters, DiscardSchedule, ReclaimOutcome};
use kernel::cmma::states::{StateCounters, last_state_name};
use kernel::ktest::Test;
use kernel::mm::addr::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use kernel::mm::backing::{check_pattern, fill_pattern};
use kernel::mm::error::MmError;
use kernel::mm::ids::MappingId;
use kernel::mm::mmap::MapSource;
use kernel::mm::vma::VmFlags;
use kernel::vm::{self, KernelMm, UserSpace};

/// `check_eq!` with a description of what was compared.
macro_rules! check_is {
    ($t:expr, $got:expr, $want:expr, $($what:tt)+) => {
        match (&$got, &$want) {
            (got, want) => kernel::check!($t, *got == *want, "{}: got {:?}, want {:?}", format_args!($($what)+), got, want),
        }
    };
}
pub(crate) use check_is;

// ---------------------------------------------------------------------------------------
// Skip conditions: each returns whether the test may go on (it skipped otherwise).

/// Skips unless the memory manager runs (QEMU was given the backing store). A backing store
/// that is there but unusable (wrong format, truncated) is a failure, never a skip: only an
/// absent one may skip.
#[track_caller]
pub(crate) fn needs_mm(t: &mut Test<'_>) -> bool {
    if vm::left_off() {
        fail_at_caller(t, format_args!("{FLAGGED_NO_MM}"));
        return false;
    }
    if let Some(reason) = vm::unusable() {
        fail_at_caller(t, format_args!("{reason}"));
        return false;
    }
    if !vm::available() {
        t.skip("no backing store (boot with -initrd, as cargo xtask does)");
        return false;
    }
    true
}

/// Fails `t` at the test's own line (the caller of the skip condition that calls this).
#[track_caller]
fn fail_at_caller(t: &mut Test<'_>, message: core::fmt::Arguments<'_>) {
    let at = core::panic::Location::caller();
    t.fail_at(at.file(), at.line(), message);
}

/// Why a test that needs the memory manager or the disk fails in a boot that left both
/// off: every test the boot runs carries `NO_MM`, this one wrongly.
const FLAGGED_NO_MM: &str = "the boot left the memory manager and the disk off, as every test it runs is flagged NO_MM; this one needs them";

/// The subchannel of the virtio-blk disk; skips when there is none (the only reason to
/// skip: a disk that is there but failed to come up fails the test).
#[track_caller]
pub(crate) fn needs_disk(t: &mut Test<'_>) -> Option<kernel::io::css::SubchannelId> {
    use kernel::io::disk::{self, DiskError};
    match disk::init_result() {
        Some(Ok(())) => disk::with(|d| d.subchannel()),
        Some(Err(DiskError::NoDevice)) => {
            t.skip("no virtio-blk device");
            None
        }
        Some(Err(e)) => {
            fail_at_caller(
                t,
                format_args!("the virtio-blk disk failed to come up: {e}"),
            );
            None
        }
        None if vm::left_off() => {
            fail_at_caller(t, format_args!("{FLAGGED_NO_MM}"));
            None
        }
        None => {
            fail_at_caller(t, format_args!("the disk was never probed"));
            None
        }
    }
}

/// Skips unless ESSA goes to the host model; `reason` is the skip message, saying what
/// of the test only the model can do (e.g. discard or reclaim on request).
pub(crate) fn needs_model(t: &mut Test<'_>, reason: &str) -> bool {
    if backend::current() != Backend::Model {
        t.skip(reason);
        return false;
    }
    true
}

/// Skips unless the memory manager runs with the host model behind ESSA: page states
/// are read from the model, and only the model discards on request.
/// The standard file `MEDIUM` with none of its pages cached, and 64 frames free above the
/// high watermark, so what a test reads allocates without reclaim.
pub(crate) fn uncached_medium_with_room(mm: &mut KernelMm) -> kernel::mm::ids::MappingId {
    let medium = open_file(mm, kernel::mm::backing::files::MEDIUM);
    mm.truncate_inode_pages(medium, 0).expect("truncate");
    let needed = mm.config().high_watermark + 64;
    let free = mm.frames().free_count();
    if free < needed {
        mm.reclaim(needed - free);
    }
    medium
}

/// [`needs_mm`], and skips unless the memory manager's backing store is the virtio-blk
/// disk (`mm.backing=virtio`, the default where there is one).
pub(crate) fn needs_virtio_backing(t: &mut Test<'_>) -> bool {
    if !needs_mm(t) {
        return false;
    }
    let virtio = vm::with(|mm| matches!(mm.device(), kernel::io::disk::KernelDisk::Virtio(_)));
    if !virtio {
        t.skip("the backing store is not the virtio-blk disk (mm.backing=virtio)");
    }
    virtio
}

pub(crate) fn needs_mm_with_model(t: &mut Test<'_>) -> bool {
    needs_mm(t)
        && needs_model(
            t,
            "page states are observed through the host model (cmma=model)",
        )
}

/// Free bytes of the kernel heap (sized from storage, `kernel::layout`): tests whose data
/// must fit in it size themselves or skip.
pub(crate) fn heap_free() -> usize {
    kernel::arch::heap::usage().1
}

/// Reclaims until `frames` allocations cannot trigger watermark reclaim, so what a test
/// maps stays mapped while it looks (in a small pool, any allocation may otherwise evict
/// the page the test just touched).
pub(crate) fn ensure_free(mm: &mut KernelMm, frames: usize) {
    let needed = mm.config().high_watermark + frames;
    let free = mm.frames().free_count();
    if free < needed {
        mm.reclaim(needed - free);
    }
}

// ---------------------------------------------------------------------------------------
// User mappings.

/// Read and write access.
pub(crate) const RW: VmFlags = VmFlags::READ.union(VmFlags::WRITE);

/// The address `page` pages after `va`.
pub(crate) fn page_va(va: VirtAddr, page: u64) -> VirtAddr {
    VirtAddr::new(va.as_u64() + page * PAGE_SIZE)
}

/// Maps `pages` pages of `file`, from page `first` on, anywhere in `space`; the file's
/// mapping (page cache) and the start of the VMA.
pub(crate) fn map_file(
    space: &UserSpace,
    file: u32,
    first: u64,
    pages: u64,
    flags: VmFlags,
) -> (MappingId, VirtAddr) {
    vm::with(|mm| {
        let mapping = mm.open_file(file)?;
        let source = MapSource::File {
            mapping,
            offset: first * PAGE_SIZE,
        };
        let va = mm.mmap(space.id(), None, pages * PAGE_SIZE, flags, source)?;
        Ok::<_, MmError>((mapping, va))
    })
    .expect("mmap of a file of the backing store")
}

/// Maps `pages` anonymous read-write pages anywhere in `space`.
pub(crate) fn map_anon(space: &UserSpace, pages: u64) -> VirtAddr {
    vm::with(|mm| mm.mmap(space.id(), None, pages * PAGE_SIZE, RW, MapSource::Anon))
        .expect("anonymous mmap")
}

/// Reads `pages` whole pages at `va` (which maps `file` from page `first` on) from user
/// space and checks them against the file's pattern; the first bad (page, offset).
pub(crate) fn read_pages(
    space: &UserSpace,
    va: VirtAddr,
    file: u32,
    first: u64,
    pages: u64,
) -> Option<(u64, u64)> {
    let mut buf = vec![0u8; PAGE_SIZE as usize];
    let mut bad = None;
    space.enter();
    for page in 0..pages {
        uaccess::read_bytes(page_va(va, page), &mut buf);
        if let Err(offset) = check_pattern(file, (first + page) * PAGE_SIZE, &buf) {
            bad = bad.or(Some((page, offset)));
        }
    }
    space.leave();
    bad
}

/// Whether the mapping carries the sticky `mlocked` flag (`None`: no such mapping).
pub(crate) fn is_mlocked(mapping: MappingId) -> Option<bool> {
    vm::with(|mm| mm.mapping(mapping).map(|m| m.is_mlocked()))
}

/// Whether the VMA at `va` is `VM_LOCKED` (`None`: no VMA there).
pub(crate) fn vma_locked(space: &UserSpace, va: VirtAddr) -> Option<bool> {
    vm::with(|mm| mm.space(space.id())?.vmas().find(va).map(|v| v.is_locked()))
}

// ---------------------------------------------------------------------------------------
// Page cache and backing device.

/// Opens a file of the standard backing-store image.
pub(crate) fn open_file(mm: &mut KernelMm, file: u32) -> MappingId {
    mm.open_file(file).expect("a standard file")
}

/// The page-cache frame of `mapping` at page `index`, if cached; for use inside
/// [`vm::with`].
pub(crate) fn cached_in(mm: &KernelMm, mapping: MappingId, index: u64) -> Option<Pfn> {
    mm.mapping(mapping)?.lookup(index)
}

/// The page-cache frame of `mapping` at page `index`, if cached.
pub(crate) fn cached(mapping: MappingId, index: u64) -> Option<Pfn> {
    vm::with(|mm| cached_in(mm, mapping, index))
}

/// A lookup and its release: `find_get_page` makes the page stable, the release
/// (`page_cache_release`) is a volatile attempt.
pub(crate) fn lookup_and_release(mapping: MappingId, index: u64) {
    vm::with(|mm| {
        if let Some(pfn) = mm.find_get_page(mapping, index) {
            mm.put_page(pfn);
        }
    });
}

/// The bytes `[offset, offset + len)` of the mapping's file as the backing device holds
/// them (not the page cache).
pub(crate) fn device_bytes(mm: &KernelMm, mapping: MappingId, offset: u64, len: usize) -> Vec<u8> {
    let file = mm.mapping(mapping).expect("mapping").file();
    let mut page: Option<(u64, alloc::boxed::Box<[u8; 4096]>)> = None;
    (offset..offset + len as u64)
        .map(|o| {
            let block = file.block_of(o / PAGE_SIZE).expect("inside the file");
            if page.as_ref().is_none_or(|(b, _)| *b != block) {
                let bytes = mm.device().peek(block).expect("the device reads");
                page = Some((block, bytes));
            }
            page.as_ref()
                .map_or(0, |(_, bytes)| bytes[(o % PAGE_SIZE) as usize])
        })
        .collect()
}

/// Writes the file's pattern back over `[offset, offset + len)` and writes it to the
/// device, so that later tests and suites find the standard contents.
pub(crate) fn restore_pattern(
    mm: &mut KernelMm,
    mapping: MappingId,
    offset: u64,
    len: usize,
) -> Result<(), MmError> {
    let file = mm.mapping(mapping).ok_or(MmError::NoSuchObject)?.file().id;
    let mut data = vec![0; len];
    fill_pattern(file, offset, &mut data);
    mm.write_file(mapping, offset, &data)?;
    mm.sync_mapping(mapping)
}

// ---------------------------------------------------------------------------------------
// Page states and the host model.

/// A frame's usage state in the host model and the name of the state the page-state
/// layer last set (`Page::last_state`).
pub(crate) type ObservedState = (Option<UsageState>, &'static str);

/// Stable in the model and in the layer's own record.
pub(crate) const STABLE: ObservedState = (Some(UsageState::Stable), "stable");
/// Volatile in the model and in the layer's own record.
pub(crate) const VOLATILE: ObservedState = (Some(UsageState::Volatile), "volatile");
/// Potentially volatile in the model and in the layer's own record.
pub(crate) const POT_VOLATILE: ObservedState =
    (Some(UsageState::PotVolatile), "potentially volatile");

/// The state of frame `pfn` in the host model and in the page-state layer.
pub(crate) fn page_state(pfn: Pfn) -> ObservedState {
    let usage = with_model(|model, _| model.state(pfn.as_u64()).0);
    let last = vm::with(|mm| {
        mm.page(pfn)
            .map_or("no page", |p| last_state_name(p.last_state()))
    });
    (usage, last)
}

/// The state of the cached page of `mapping` at `index` (`None` if it is not cached).
pub(crate) fn cached_state(mapping: MappingId, index: u64) -> Option<ObservedState> {
    cached(mapping, index).map(page_state)
}

/// The page-state layer's counters (all zero without the layer).
pub(crate) fn state_counters() -> StateCounters {
    vm::with(|mm| mm.hooks().states().map(|s| s.counters())).unwrap_or_default()
}

/// The host model's counters (all zero without the model).
pub(crate) fn model_counters() -> Counters {
    with_model(|model, _| model.counters()).unwrap_or_default()
}

/// Host reclaim of one frame (`None` without the model).
pub(crate) fn host_reclaim(pfn: Pfn) -> Option<ReclaimOutcome> {
    with_model(|model, host| model.reclaim(host, pfn.as_u64()))
}

/// Installs `schedule` with the host's list of hinted frames empty, so its strikes take
/// only the frames hinted from now on: what the test's next operation hints is all a
/// strike can choose from. The frames hinted before stay hinted and resident (reclaiming
/// them instead, every free frame of the pool under `mm.pool=all`, took 10 s under TCG).
pub(crate) fn strike_only_new_hints(schedule: DiscardSchedule) {
    with_model(|model, _| {
        model.set_schedule(Some(schedule));
        model.forget_earlier_hints();
    });
}

/// One 4 KiB block of the test's own, filled with `0x5a`, to change the state of
/// with ESSA directly.
#[repr(C, align(4096))]
pub(crate) struct Block(pub(crate) [u8; 4096]);

impl Block {
    /// A fresh block on the heap.
    pub(crate) fn new() -> Box<Block> {
        Box::new(Block([0x5a; 4096]))
    }

    /// The block's absolute address (kernel addresses are absolute).
    pub(crate) fn addr(&self) -> u64 {
        self as *const Block as u64
    }

    /// The frame holding the block.
    pub(crate) fn pfn(&self) -> Pfn {
        PhysAddr::new(self.addr()).pfn()
    }
}

// ---------------------------------------------------------------------------------------
// Randomness from the run's seed (`ktest.seed=`, printed in the KTAP header): tests draw
// sizes and orders from it, so each seed covers other ground and any seed replays.

/// splitmix64: a tiny, well-known generator, enough to draw test parameters from a seed.
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator for one test: the run's seed mixed with `stream`, so tests sharing a
    /// seed draw different numbers.
    pub(crate) fn new(seed: u64, stream: u64) -> Self {
        Rng(seed ^ stream.wrapping_mul(0xd1b5_4a32_d192_ed03))
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    /// A number in `range` (not empty).
    pub(crate) fn within(&mut self, range: core::ops::RangeInclusive<u64>) -> u64 {
        range.start() + self.below(range.end() - range.start() + 1)
    }

    /// An index into a slice of `len` elements (`len > 0`).
    pub(crate) fn index(&mut self, len: usize) -> usize {
        self.below(len as u64) as usize
    }

    /// `len` random bytes.
    pub(crate) fn bytes(&mut self, len: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(len + 8);
        while out.len() < len {
            out.extend_from_slice(&self.next().to_be_bytes());
        }
        out.truncate(len);
        out
    }

    /// Shuffles `items` (Fisher-Yates).
    pub(crate) fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            items.swap(i, self.index(i + 1));
        }
    }
}

/// The flags of the page in `pfn` (empty for a frame outside the memory manager).
pub(crate) fn flags_of(pfn: Pfn) -> kernel::mm::page::PageFlags {
    vm::with(|mm| mm.page(pfn).map(|p| p.flags()).unwrap_or_default())
}

/// Waits up to `us` microseconds for `done`; whether it came.
pub(crate) fn wait_until(us: u64, mut done: impl FnMut() -> bool) -> bool {
    let deadline = cpu::tod() + cpu::us_to_tod(us);
    while !done() {
        if cpu::tod() > deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

/// Waits for `done`, which a working kernel brings about: when it does not, a
/// multi-CPU run's watchdog finds this CPU without progress and fails the test.
pub(crate) fn spin_until(mut done: impl FnMut() -> bool) {
    while !done() {
        core::hint::spin_loop();
    }
}
