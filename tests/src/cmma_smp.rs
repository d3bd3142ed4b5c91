//! `cmma::smp`: the series' rules that only several CPUs can break, each as a race run
//! many times per seed on two CPUs at once (the seed and a replay command are printed):
//!
//! - the per-page state-change lock: a make-volatile that finds it held gives up, a
//!   make-stable waits for it, and the check of the conditions and the state change it
//!   decides are one step against the other CPU (series 1/6);
//! - deferred freeing of discarded frames (6/6): the frame of a discarded page is not
//!   handed out again while another CPU still holds its absolute address from a
//!   block-volatility exception it has not finished handling, also when truncation
//!   freed the page without `page_discard` (1/6 `__remove_from_page_cache`);
//! - `page_discard` racing a lookup on another CPU: whichever comes first, the page is
//!   discarded once, and both CPUs read the file's bytes.
//!
//! The lock tests drive the kernel's page-state layer (the code the memory manager runs)
//! on a frame of their own, with page metadata both CPUs share; the others run the
//! memory manager and the host model. Files: `SCRATCH + 32`, read only, this suite's
//! alone (it shared `SCRATCH + 22` with `cmma::states`, whose mlock is sticky: after
//! that suite, in a shuffled order, its pages stayed stable and no discard worked).

use crate::support::{
    RW, Rng, cached, host_reclaim, is_mlocked, needs_mm, needs_mm_with_model, page_va, spin_until,
    wait_until,
};
use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use kernel::arch::uaccess;
use kernel::cmma::backend::with_model;
use kernel::cmma::essa::UsageState;
use kernel::cmma::model::ReclaimOutcome;
use kernel::cmma::states::PageStates;
use kernel::ktest::Test;
use kernel::mm::addr::{PAGE_SIZE, Pfn, VirtAddr};
use kernel::mm::backing::{check_pattern, files};
use kernel::mm::dat::Pte;
use kernel::mm::hooks::{Stability, VolatileContext, VolatilePoint};
use kernel::mm::ids::MappingId;
use kernel::mm::machine::PhysMem;
use kernel::mm::mmap::MapSource;
use kernel::mm::page::{Page, PageFlags};
use kernel::mm::vma::VmFlags;
use kernel::vm::{self, MachineEssa, UserSpace};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("cmma::smp");

/// The file the discard races read (never written, never mlocked).
const FILE: u32 = files::SCRATCH + 32;
/// Pages of it the races use.
const PAGES: u64 = 16;

/// The conditions of a clean page-cache page that may become volatile: the page cache's
/// reference is the only one.
const CLEAN: VolatileContext = VolatileContext {
    mapping_mlocked: false,
    caller_refs: 1,
};

/// Prints the seed and the command that replays this test with it.
fn note_seed(t: &mut Test<'_>, name: &str, iterations: u64) {
    let seed = t.seed();
    t.diag(format_args!(
        "seed {seed}, {iterations} iterations; replay: cargo xtask run --smp 2 -- \
         ktest.filter=cmma::smp.{name} ktest.seed={seed}"
    ));
}

/// The host's usage state of `pfn` (the tests need the model).
fn host_state(pfn: Pfn) -> Option<UsageState> {
    with_model(|model, _| model.state(pfn.as_u64()).0)
}

fn spin(n: u64) {
    for _ in 0..n {
        core::hint::spin_loop();
    }
}

/// A frame of the test's own, with page metadata of a clean page-cache page both CPUs
/// share, and a page-state layer of its own (the kernel's code, its own counters).
struct Scratch {
    pfn: Pfn,
    page: Page,
    layer: PageStates<MachineEssa>,
}

impl Scratch {
    fn new() -> Option<Scratch> {
        let pfn = vm::with(|mm| {
            let pfn = mm.alloc_page().ok()?;
            // Resident: a frame the host dropped while it was free is stable but zero
            // after ORC 1, and only a touch makes it resident (no ORC does, as on KVM).
            mm.machine_mut().frame(pfn)[0] = 0;
            Some(pfn)
        })?;
        let mapping = MappingId::new(u32::MAX)?;
        Some(Scratch {
            pfn,
            page: Page::detached_cache_page(mapping, 0, 1, 0),
            layer: PageStates::new(MachineEssa),
        })
    }

    fn make_volatile(&self) {
        self.layer
            .page_make_volatile(self.pfn, &self.page, CLEAN, VolatilePoint::Unlock);
    }

    fn make_stable(&self) -> Stability {
        self.layer.page_make_stable(self.pfn, &self.page)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        // Stable again, as the memory manager recorded it, then back to the allocator
        // (a CPU cut short may have left the lock held: nobody else uses it now).
        self.page.unlock_state_change();
        self.page.clear_shared(PageFlags::DIRTY);
        self.make_stable();
        vm::with(|mm| mm.put_page(self.pfn));
    }
}

ktest! {
    /// While CPU 1 holds a page's state-change lock (it is changing the page's state),
    /// CPU 0's make-volatile gives up: no ESSA, the page stays stable, and the layer
    /// counts the busy lock. Once CPU 1 let go, the same call makes the page volatile.
    fn make_volatile_gives_up_while_another_cpu_holds_the_lock(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const ITERATIONS: u64 = 200;
        note_seed(t, "make_volatile_gives_up_while_another_cpu_holds_the_lock", ITERATIONS);
        let Some(s) = Scratch::new() else {
            check!(t, false, "no frame for the test");
            return;
        };
        t.on_cpus(2, |c| {
            for i in 0..ITERATIONS {
                if c.index() == 1 {
                    check!(c, s.page.try_lock_state_change(), "iteration {i}: lock not free");
                }
                c.barrier();
                if c.index() == 0 {
                    let busy = s.layer.counters().lock_busy;
                    s.make_volatile();
                    check_eq!(c, s.layer.counters().lock_busy, busy + 1);
                    check_eq!(c, host_state(s.pfn), Some(UsageState::Stable));
                }
                c.barrier();
                if c.index() == 1 {
                    s.page.unlock_state_change();
                }
                c.barrier();
                if c.index() == 0 {
                    s.make_volatile();
                    check_eq!(c, host_state(s.pfn), Some(UsageState::Volatile));
                    check_eq!(c, s.make_stable(), Stability::Stable);
                }
                c.barrier();
            }
        });
    }
}

ktest! {
    /// While CPU 1 holds a page's state-change lock, CPU 0's make-stable waits: it
    /// returns only after CPU 1 let go (CPU 1 notes the iteration just before), and the
    /// page is stable then. Without the wait, CPU 0 would overtake a make-volatile in
    /// progress. CPU 1 lets go only once CPU 0's make-stable has found the lock held (the
    /// layer counted a wait) or returned, then after a random delay: every iteration
    /// tests the wait, however the host schedules the two CPUs.
    fn make_stable_waits_for_another_cpus_state_change(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const ITERATIONS: u64 = 100;
        note_seed(t, "make_stable_waits_for_another_cpus_state_change", ITERATIONS);
        let Some(s) = Scratch::new() else {
            check!(t, false, "no frame for the test");
            return;
        };
        let released = AtomicU64::new(u64::MAX);
        let returned = AtomicU64::new(u64::MAX);
        let ran = t.on_cpus(2, |c| {
            let mut rng = Rng::new(c.cpu_seed(), 1);
            for i in 0..ITERATIONS {
                if c.index() == 0 {
                    s.make_volatile();
                }
                c.barrier();
                let waits = s.layer.counters().stable_waits;
                if c.index() == 1 {
                    check!(c, s.page.try_lock_state_change(), "iteration {i}: lock not free");
                }
                c.barrier();
                if c.index() == 1 {
                    spin_until(|| {
                        s.layer.counters().stable_waits > waits
                            || returned.load(Ordering::Acquire) == i
                    });
                    spin(rng.within(1_000..=20_000));
                    released.store(i, Ordering::Release);
                    s.page.unlock_state_change();
                } else {
                    let stability = s.make_stable();
                    returned.store(i, Ordering::Release);
                    check!(c, released.load(Ordering::Acquire) == i,
                        "iteration {i}: make-stable returned while cpu 1 held the state-change lock");
                    check_eq!(c, stability, Stability::Stable);
                    check_eq!(c, host_state(s.pfn), Some(UsageState::Stable));
                }
                c.barrier();
            }
        });
        if ran {
            check_eq!(t, s.layer.counters().stable_waits, ITERATIONS);
        }
    }
}

ktest! {
    /// The race the lock exists for: CPU 0 offers the page for the volatile state over
    /// and over; CPU 1 dirties it (a fact that forbids volatile) and makes it stable. Once
    /// CPU 1's make-stable returned, the host state must be stable and stay so while the
    /// page is dirty: a make-volatile that checked the page clean before CPU 1 dirtied it
    /// must not land its ESSA after CPU 1's. Many iterations with random delays, in
    /// which CPU 0 takes its turns (refused while the page is dirty, volatile once it is
    /// clean): without the lock, a few dozen iterations find the page volatile.
    fn check_and_change_are_atomic_against_another_cpu(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const ITERATIONS: u64 = 500;
        note_seed(t, "check_and_change_are_atomic_against_another_cpu", ITERATIONS);
        let Some(s) = Scratch::new() else {
            check!(t, false, "no frame for the test");
            return;
        };
        let done = AtomicBool::new(false);
        let turns = AtomicU64::new(0);
        let ran = t.on_cpus(2, |c| {
            let mut rng = Rng::new(c.cpu_seed(), 2);
            c.barrier();
            if c.index() == 0 {
                let mut n = 0u64;
                while !done.load(Ordering::Acquire) {
                    let refused = s.layer.counters().refused;
                    s.make_volatile();
                    if s.layer.counters().refused > refused {
                        // The page is dirty: try again once CPU 1 cleaned it. Trying
                        // on and on starves CPU 1's make-stable of the lock on a
                        // host that runs one CPU at a time (Hercules under load: 20 s).
                        spin_until(|| {
                            !s.page.test(PageFlags::DIRTY) || done.load(Ordering::Acquire)
                        });
                        c.progress();
                    }
                    spin(rng.below(300));
                    n += 1;
                    if n.is_multiple_of(256) {
                        c.progress();
                    }
                }
                return;
            }
            for i in 0..ITERATIONS {
                spin(rng.below(400));
                // CPU 0 is refused once while the page is dirty before CPU 1 looks
                // again (a refusal means CPU 0 saw the page dirty, so a make-volatile it
                // decided before has landed by then); and it makes the page volatile
                // once it is clean again. The two CPUs take turns, however the host
                // schedules them.
                let refused = s.layer.counters().refused;
                s.page.set_shared(PageFlags::DIRTY);
                let stability = s.make_stable();
                let at_once = host_state(s.pfn);
                spin_until(|| s.layer.counters().refused > refused);
                spin(rng.below(400));
                let later = host_state(s.pfn);
                let made = s.layer.counters().made_volatile;
                s.page.clear_shared(PageFlags::DIRTY);
                spin_until(|| s.layer.counters().made_volatile > made);
                let stable = Some(UsageState::Stable);
                if stability != Stability::Stable || at_once != stable || later != stable {
                    check!(c, false,
                        "iteration {i}: a dirty page after make-stable: {stability:?}, host state {at_once:?}, then {later:?}");
                    break;
                }
                turns.store(i + 1, Ordering::Relaxed);
                if i % 64 == 0 {
                    c.progress();
                }
            }
            done.store(true, Ordering::Release);
        });
        if !ran {
            return;
        }
        let counters = s.layer.counters();
        t.diag(format_args!(
            "made volatile {}, refused {}, make-volatile gave up {}, make-stable waited {}",
            counters.made_volatile, counters.refused, counters.lock_busy, counters.stable_waits
        ));
        let turns = turns.load(Ordering::Relaxed);
        check!(t, counters.made_volatile >= turns && counters.refused >= turns,
            "cpu 0 did not take its {turns} turns: {counters:?}");
    }
}

/// Maps the first [`PAGES`] pages of [`FILE`] read-only into a new space.
fn map(t: &mut Test<'_>) -> Option<(UserSpace, MappingId, kernel::mm::addr::VirtAddr)> {
    let space = match UserSpace::new() {
        Ok(space) => space,
        Err(e) => {
            check!(t, false, "user space: {e:?}");
            return None;
        }
    };
    let (mapping, va) = crate::support::map_file(&space, FILE, 0, PAGES, VmFlags::READ);
    // Pages of a mapping that was ever mlocked stay stable, and the host cannot discard
    // them: a suite that shares the file would make these tests fail for that reason.
    if is_mlocked(mapping) != Some(false) {
        check!(
            t,
            false,
            "precondition: file {FILE} was mlocked by another test"
        );
        return None;
    }
    Some((space, mapping, va))
}

/// Reads page `page` of the mapping at `va` in the current space and checks it against
/// the file; the first bad offset.
fn read_page(va: kernel::mm::addr::VirtAddr, page: u64) -> Result<(), u64> {
    let mut buf = alloc::vec![0u8; PAGE_SIZE as usize];
    uaccess::read_bytes(page_va(va, page), &mut buf);
    check_pattern(FILE, page * PAGE_SIZE, &buf)
}

/// Has the host discard the cached page `page` of `mapping`; its frame.
fn discard(mapping: MappingId, page: u64) -> Result<Pfn, alloc::string::String> {
    let pfn = cached(mapping, page).ok_or_else(|| alloc::format!("page {page} not cached"))?;
    match host_reclaim(pfn) {
        Some(ReclaimOutcome::Discarded) => Ok(pfn),
        other => Err(alloc::format!(
            "host reclaim of page {page} (frame {pfn:?}): {other:?}"
        )),
    }
}

ktest! {
    /// Deferred freeing (6/6), with a CPU that still holds a translation: CPU 1 touches
    /// a page the host discarded and, in its block-volatility handler, waits for the
    /// memory manager CPU 0 holds, with the frame's absolute address in hand. CPU 0
    /// discards the page (`page_discard`, its last reference goes) and allocates: the
    /// frame must not come back, although the free list hands out the last freed frame
    /// first; the frame of another page CPU 0 discards meanwhile is free at once (CPU
    /// 1 holds only the frame of its fault). Then CPU 1's handler finds a frame nobody
    /// references, and its retried access reloads the file's bytes; exactly the two
    /// pages were discarded, and none of CPU 0's new pages.
    fn a_discarded_frame_waits_until_every_cpu_passed_a_quiescent_point(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const ITERATIONS: u64 = 24;
        note_seed(t, "a_discarded_frame_waits_until_every_cpu_passed_a_quiescent_point", ITERATIONS);
        let Some((space, mapping, va)) = map(t) else { return };
        let frame = AtomicU64::new(0);
        let holding = AtomicU64::new(u64::MAX);
        let no_discard = AtomicBool::new(false);
        t.on_cpus(2, |c| {
            if c.index() == 1 {
                space.enter();
            }
            for i in 0..ITERATIONS {
                let page = i % PAGES;
                if c.index() == 1 {
                    check_eq!(c, read_page(va, page), Ok(()));
                }
                c.barrier();
                if c.index() == 0 {
                    match discard(mapping, page) {
                        Ok(pfn) => frame.store(pfn.as_u64(), Ordering::Relaxed),
                        Err(e) => {
                            check!(c, false, "iteration {i}: {e}");
                            no_discard.store(true, Ordering::Release);
                        }
                    }
                }
                c.barrier();
                if no_discard.load(Ordering::Acquire) {
                    // Nothing for CPU 1 to fault on: the waits below would only time out.
                    break;
                }
                if c.index() == 1 {
                    // The 0x1A: the handler waits for CPU 0's memory manager.
                    check!(c, wait_until(5_000_000, || holding.load(Ordering::Acquire) == i),
                        "iteration {i}: cpu 0 never took the memory manager");
                    check_eq!(c, read_page(va, page), Ok(()));
                    c.barrier();
                    continue;
                }
                let pfn = Pfn::new(frame.load(Ordering::Relaxed));
                let (waited, discards, other, allocated) = vm::with(|mm| {
                    holding.store(i, Ordering::Release);
                    let waited = wait_until(5_000_000, || vm::fault_waiters() > 0);
                    let discards = mm.stats().discards;
                    let _ = mm.page_discard(pfn);
                    // Another page's frame: CPU 1 holds only the one of its fault.
                    let other = mm.read_cache_page(mapping, (page + 1) % PAGES).and_then(|(q, _)| {
                        mm.put_page(q);
                        mm.page_discard(q)?;
                        mm.reap_deferred();
                        Ok((q, mm.frames().is_free(q)))
                    });
                    let allocated: Vec<Pfn> = (0..8).filter_map(|_| mm.alloc_page().ok()).collect();
                    (waited, discards + 1, other, allocated)
                });
                check!(c, waited, "iteration {i}: cpu 1 never waited in its discard fault");
                match other {
                    Ok((q, free)) => check!(c, free,
                        "iteration {i}: frame {q:?} of another discarded page held up by cpu 1, which holds only {pfn:?}"),
                    Err(e) => check!(c, false, "iteration {i}: the other page: {e:?}"),
                }
                check!(c, !allocated.contains(&pfn),
                    "iteration {i}: frame {pfn:?} of the discarded page handed out again while cpu 1 held its address");
                c.barrier();
                vm::with(|mm| {
                    for &p in &allocated {
                        let hit = mm.page(p).is_some_and(|pg| pg.test(PageFlags::DISCARDED));
                        check!(c, !hit, "iteration {i}: cpu 1's discard fault discarded cpu 0's new page {p:?}");
                        mm.put_page(p);
                    }
                    check_eq!(c, mm.stats().discards, discards + 1);
                });
            }
            if c.index() == 1 {
                space.leave();
            }
        });
    }
}

ktest! {
    /// A multi-CPU run leaves no frame waiting for a grace period (6/6): CPU 1 discards
    /// a page while CPU 0 runs its part without passing a quiescent point, so the frame
    /// waits for CPU 0; CPU 0 leaves its part only after CPU 1 has left its own. The
    /// run's end frees the frame. Guards the quiescent point CPU 0 passes there before
    /// it frees what waited: without it the frame waited until some later test's
    /// allocation freed it, and that test counted an ESSA it did not issue (the seed
    /// sweep: `cmma::economy` on smp2, ktest.seed=2435580608160292122, shuffled order).
    fn a_multi_cpu_run_leaves_no_frame_waiting_for_a_grace_period(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let Some((_space, mapping, _)) = map(t) else { return };
        let discarded = AtomicU64::new(0);
        if !t.on_cpus(2, |c| {
            if c.index() == 1 {
                let waiting = vm::with(|mm| {
                    let (pfn, _) = mm.read_cache_page(mapping, 0)?;
                    mm.put_page(pfn);
                    mm.page_discard(pfn)?;
                    Ok::<_, kernel::mm::error::MmError>((pfn, mm.frames().deferred_count()))
                });
                match waiting {
                    Ok((pfn, waiting)) => {
                        check!(c, waiting > 0, "precondition: frame {pfn:?} was freed at once, not after cpu 0's quiescent point");
                        discarded.store(pfn.as_u64() + 1, Ordering::Release);
                    }
                    Err(e) => {
                        check!(c, false, "discarding page 0: {e:?}");
                        discarded.store(u64::MAX, Ordering::Release);
                    }
                }
            } else {
                // No memory-manager operation here: not a quiescent point.
                spin_until(|| discarded.load(Ordering::Acquire) != 0);
                // CPU 1 leaves its part a few instructions later: the run must end
                // without CPU 0 waiting for it (which would pass a point), however long
                // the host holds CPU 1's vCPU up.
                spin_until(|| c.others_have_left());
            }
        }) {
            return;
        }
        let (waiting, free) = vm::with(|mm| {
            let pfn = Pfn::new(discarded.load(Ordering::Acquire).wrapping_sub(1));
            (mm.frames().deferred_count(), mm.frames().is_free(pfn))
        });
        check_eq!(t, waiting, 0);
        check!(t, free, "the discarded page's frame is not free after the run");
    }
}

ktest! {
    /// The same race when the page leaves the page cache by truncation instead of
    /// `page_discard` (series 1/6 `__remove_from_page_cache`): CPU 1 touches a page the
    /// host discarded and waits in its block-volatility handler; CPU 0, holding the
    /// memory manager, truncates the file there, which unmaps the clean page and frees
    /// it without making it stable (reclaim does the same). The ESSA that makes the
    /// frame unused returns its old state, discarded, so the frame waits for a grace
    /// period: CPU 0's allocations must not get it, and CPU 1's handler must find a
    /// frame nobody references, not one of CPU 0's new pages. The 4-CPU stress
    /// workload met this through reclaim: the frame's new page was dirty, and CPU 1's
    /// `page_discard` refused it.
    fn a_truncated_page_the_host_discarded_waits_for_a_quiescent_point(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const ITERATIONS: u64 = 16;
        /// The last page of the mapping: truncating there drops it alone.
        const PAGE: u64 = PAGES - 1;
        note_seed(t, "a_truncated_page_the_host_discarded_waits_for_a_quiescent_point", ITERATIONS);
        let Some((space, mapping, va)) = map(t) else { return };
        let frame = AtomicU64::new(0);
        let holding = AtomicU64::new(u64::MAX);
        let no_discard = AtomicBool::new(false);
        t.on_cpus(2, |c| {
            if c.index() == 1 {
                space.enter();
            }
            for i in 0..ITERATIONS {
                if c.index() == 1 {
                    check_eq!(c, read_page(va, PAGE), Ok(()));
                }
                c.barrier();
                if c.index() == 0 {
                    match discard(mapping, PAGE) {
                        Ok(pfn) => frame.store(pfn.as_u64(), Ordering::Relaxed),
                        Err(e) => {
                            check!(c, false, "iteration {i}: {e}");
                            no_discard.store(true, Ordering::Release);
                        }
                    }
                }
                c.barrier();
                if no_discard.load(Ordering::Acquire) {
                    break;
                }
                if c.index() == 1 {
                    check!(c, wait_until(5_000_000, || holding.load(Ordering::Acquire) == i),
                        "iteration {i}: cpu 0 never took the memory manager");
                    check_eq!(c, read_page(va, PAGE), Ok(()));
                    c.barrier();
                    continue;
                }
                let pfn = Pfn::new(frame.load(Ordering::Relaxed));
                let (waited, before, truncated, allocated) = vm::with(|mm| {
                    holding.store(i, Ordering::Release);
                    let waited = wait_until(5_000_000, || vm::fault_waiters() > 0);
                    let before = mm.stats();
                    let truncated = mm.truncate_inode_pages(mapping, PAGE);
                    let allocated: Vec<Pfn> = (0..8).filter_map(|_| mm.alloc_page().ok()).collect();
                    (waited, before, truncated, allocated)
                });
                check!(c, waited, "iteration {i}: cpu 1 never waited in its discard fault");
                check_eq!(c, truncated, Ok(()));
                check!(c, !allocated.contains(&pfn),
                    "iteration {i}: frame {pfn:?} of the truncated page handed out again while cpu 1 held its address");
                c.barrier();
                vm::with(|mm| {
                    for &p in &allocated {
                        mm.put_page(p);
                    }
                    let (after, bugs) = (mm.stats(), mm.take_bugs());
                    check!(c, bugs.is_empty(), "iteration {i}: {bugs:?}");
                    check_eq!(c, after.discards, before.discards); // no page_discard: the page was gone
                    check_eq!(c, after.freed_discarded, before.freed_discarded + 1);
                });
            }
            if c.index() == 1 {
                space.leave();
            }
        });
    }
}

ktest! {
    /// The other side of the grace period: a CPU that waits for the memory manager's
    /// lock with nothing of a frame in hand (between two operations in `vm::with`, or
    /// with a translation exception) does not hold a grace period up. CPU 1 waits
    /// either way (drawn from the seed) while CPU 0, holding the memory manager, has
    /// a page discarded (`page_discard`: its frame is deferred) and reaps: the frame
    /// must be free within the same operation. Without this, an operation that frees
    /// discarded pages under pressure and allocates again cannot get their frames
    /// back while the other CPUs queue for the lock: the 4-CPU stress workload ran out
    /// of memory.
    fn a_cpu_waiting_for_the_memory_manager_does_not_hold_a_grace_period_up(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const ITERATIONS: u64 = 16;
        /// The page CPU 1 faults on: truncated before each iteration.
        const FAULTING: u64 = PAGES - 1;
        note_seed(t, "a_cpu_waiting_for_the_memory_manager_does_not_hold_a_grace_period_up", ITERATIONS);
        let Some((space, mapping, va)) = map(t) else { return };
        let holding = AtomicU64::new(u64::MAX);
        t.on_cpus(2, |c| {
            let mut rng = Rng::new(c.seed(), 4);
            if c.index() == 1 {
                space.enter();
            }
            for i in 0..ITERATIONS {
                let in_fault = rng.below(2) == 0;
                let page = i % (PAGES - 1);
                if c.index() == 0 {
                    let truncated = vm::with(|mm| mm.truncate_inode_pages(mapping, FAULTING));
                    check_eq!(c, truncated, Ok(()));
                }
                c.barrier();
                if c.index() == 1 {
                    check!(c, wait_until(5_000_000, || holding.load(Ordering::Acquire) == i),
                        "iteration {i}: cpu 0 never took the memory manager");
                    if in_fault {
                        // A translation exception: the page is not cached any more.
                        check_eq!(c, read_page(va, FAULTING), Ok(()));
                    } else {
                        vm::with(|_| ());
                    }
                    c.barrier();
                    continue;
                }
                let (waited, outcome) = vm::with(|mm| {
                    holding.store(i, Ordering::Release);
                    let waited = wait_until(5_000_000, || vm::lock_waiters() > 0);
                    let outcome = mm.read_cache_page(mapping, page).map(|(pfn, _)| {
                        mm.put_page(pfn);
                        // Deferred (6/6), and reaped at once if no CPU holds it up.
                        let discarded = mm.page_discard(pfn);
                        mm.reap_deferred();
                        (pfn, discarded, mm.frames().is_free(pfn))
                    });
                    (waited, outcome)
                });
                check!(c, waited, "iteration {i}: cpu 1 never waited for the memory manager");
                match outcome {
                    Ok((pfn, discarded, free)) => {
                        check_eq!(c, discarded, Ok(()));
                        check!(c, free,
                            "iteration {i}: frame {pfn:?} still deferred while cpu 1 waited {} with nothing in hand",
                            if in_fault { "in a translation fault" } else { "to enter the memory manager" });
                    }
                    Err(e) => check!(c, false, "iteration {i}: read_cache_page: {e:?}"),
                }
                c.barrier();
            }
            if c.index() == 1 {
                space.leave();
            }
        });
    }
}

ktest! {
    /// A CPU that has finished its part of a multi-CPU test holds nothing and passes no
    /// quiescent point until the whole run ends: it must not hold grace periods up
    /// meanwhile. CPU 1 returns at once; CPU 0 then has a page discarded
    /// (`page_discard`: its frame is deferred) and must see the frame free again while
    /// it still runs. Without this, the 4-CPU stress workload ran out of memory once
    /// the first CPU was done.
    fn a_cpu_done_with_its_part_does_not_hold_a_grace_period_up(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let Some((_space, mapping, _)) = map(t) else { return };
        let done = AtomicBool::new(false);
        t.on_cpus(2, |c| {
            if c.index() == 1 {
                done.store(true, Ordering::Release);
                return;
            }
            check!(c, wait_until(5_000_000, || done.load(Ordering::Acquire)), "cpu 1 never ran");
            let discarded = vm::with(|mm| {
                let (pfn, _) = mm.read_cache_page(mapping, 0)?;
                mm.put_page(pfn);
                mm.page_discard(pfn).map(|()| pfn)
            });
            let pfn = match discarded {
                Ok(pfn) => pfn,
                Err(e) => {
                    check!(c, false, "discarding page 0: {e:?}");
                    return;
                }
            };
            let free = wait_until(5_000_000, || vm::with(|mm| {
                mm.reap_deferred();
                mm.frames().is_free(pfn)
            }));
            check!(c, free, "frame {pfn:?} still deferred 5 s after cpu 1 finished its part");
        });
    }
}

ktest! {
    /// `page_discard` racing a lookup on another CPU: CPU 1 touches a page the host
    /// discarded (0x1A, then `page_discard` in its handler) while CPU 0 looks the same
    /// page up (`find_get_page` finds it discarded and runs `page_discard` itself, then
    /// reads the file). CPU 0 either waits until CPU 1 is in its handler or races it
    /// right away (drawn from the seed). Whichever wins, the page is discarded exactly
    /// once, the loser finds nothing left to do (a frame without references), and both
    /// read the file's bytes.
    fn page_discard_races_a_lookup_on_another_cpu(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const ITERATIONS: u64 = 48;
        note_seed(t, "page_discard_races_a_lookup_on_another_cpu", ITERATIONS);
        let Some((space, mapping, va)) = map(t) else { return };
        let cpu1_read = AtomicU64::new(u64::MAX);
        t.on_cpus(2, |c| {
            let mut rng = Rng::new(c.seed(), 3);
            if c.index() == 1 {
                space.enter();
            }
            for i in 0..ITERATIONS {
                let page = i % PAGES;
                let wait_for_cpu1 = rng.below(2) == 0;
                let delay = rng.below(20_000);
                if c.index() == 1 {
                    check_eq!(c, read_page(va, page), Ok(()));
                }
                c.barrier();
                let mut discards = 0;
                if c.index() == 0 {
                    discards = vm::with(|mm| mm.stats().discards);
                    if let Err(e) = discard(mapping, page) {
                        check!(c, false, "iteration {i}: {e}");
                    }
                }
                c.barrier();
                if c.index() == 1 {
                    check_eq!(c, read_page(va, page), Ok(()));
                    cpu1_read.store(i, Ordering::Release);
                } else {
                    spin(delay);
                    let looked_up = vm::with(|mm| {
                        if wait_for_cpu1 {
                            // CPU 1 in its discard fault, or done without one (its
                            // access came before this lock).
                            wait_until(5_000_000, || {
                                vm::fault_waiters() > 0 || cpu1_read.load(Ordering::Acquire) == i
                            });
                        }
                        let mut byte = [0u8; 1];
                        let offset = page * PAGE_SIZE + (i * 97) % PAGE_SIZE;
                        mm.read_file(mapping, offset, &mut byte).map(|_| (offset, byte[0]))
                    });
                    match looked_up {
                        Ok((offset, byte)) => {
                            check_eq!(c, check_pattern(FILE, offset, &[byte]), Ok(()));
                        }
                        Err(e) => check!(c, false, "iteration {i}: read_file: {e:?}"),
                    }
                }
                c.barrier();
                if c.index() == 0 {
                    let (after, bugs) = vm::with(|mm| (mm.stats().discards, mm.take_bugs()));
                    check_eq!(c, after, discards + 1);
                    check!(c, bugs.is_empty(), "iteration {i}: {bugs:?}");
                }
            }
            if c.index() == 1 {
                space.leave();
            }
        });
    }
}

/// The entry the host stops at between reading and swapping it (0: none), and the
/// handshake of [`a_host_revocation_does_not_undo_a_concurrent_store_of_the_entry`].
static STOP_AT: AtomicU64 = AtomicU64::new(0);
static HOST_READ: AtomicBool = AtomicBool::new(false);
static MM_STORED: AtomicBool = AtomicBool::new(false);

/// The host's hook between reading an entry and swapping it: at [`STOP_AT`] it tells
/// the other CPU and waits (bounded) for its store.
fn stop_between_read_and_swap(entry: kernel::mm::addr::PhysAddr) {
    if STOP_AT.load(Ordering::Acquire) != entry.as_u64() {
        return;
    }
    HOST_READ.store(true, Ordering::Release);
    let _ = wait_until(5_000_000, || MM_STORED.load(Ordering::Acquire));
}

/// A user space with one anonymous page, mapped by a store of `word`.
fn space_with_a_stored_page(word: u64) -> (UserSpace, VirtAddr) {
    let space = UserSpace::new().expect("user space");
    let va = crate::support::map_anon(&space, 1);
    space.enter();
    uaccess::write_u64(va, word);
    space.leave();
    (space, va)
}

/// The PTE that maps `va` in `space` (valid ones only) and its address.
fn user_pte(space: &UserSpace, va: VirtAddr) -> Option<(kernel::mm::addr::PhysAddr, Pte)> {
    vm::with(|mm| {
        mm.space(space.id())
            .and_then(|s| s.walk(mm.machine(), va).valid_pte())
    })
}

ktest! {
    /// The host revokes an entry the memory manager changes at the same time: CPU 1's
    /// host pages out the frame of an anonymous page CPU 0 mapped writable and stops
    /// after reading the entry; CPU 0 write-protects the page (`mprotect`, under the
    /// memory manager's lock) and lets the host go on. The entry must stay
    /// write-protected: the host swaps its bits in only if the entry still holds what it
    /// read (CSPG, `arch::revoke`). A plain store of what it read made the page writable
    /// again behind the memory manager's back (a lost write-notify or COW; the 4-CPU
    /// stress workload with the invariant checker found entries the memory manager had
    /// let go). The page then comes back read-only on a touch, with its data.
    fn a_host_revocation_does_not_undo_a_concurrent_store_of_the_entry(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let (space, va) = space_with_a_stored_page(0x5eed_c0de);
        let Some((entry, pte)) = user_pte(&space, va) else {
            check!(t, false, "the store did not map the page");
            return;
        };
        check!(t, !pte.is_protected(), "the page is mapped writable after the store");
        kernel::arch::revoke::set_between_read_and_swap(stop_between_read_and_swap);
        HOST_READ.store(false, Ordering::Release);
        MM_STORED.store(false, Ordering::Release);
        STOP_AT.store(entry.as_u64(), Ordering::Release);
        let ran = t.on_cpus(2, |c| {
            if c.index() == 1 {
                check_eq!(c, host_reclaim(pte.pfn()), Some(ReclaimOutcome::PagedOut));
                return;
            }
            check!(c, wait_until(5_000_000, || HOST_READ.load(Ordering::Acquire)),
                "the host never read the entry");
            let protect = vm::with(|mm| mm.mprotect(space.id(), va, PAGE_SIZE, VmFlags::READ));
            check_eq!(c, protect, Ok(()));
            MM_STORED.store(true, Ordering::Release);
        });
        STOP_AT.store(0, Ordering::Release);
        if !ran {
            return; // one CPU online: skipped
        }
        match user_pte(&space, va) {
            Some((_, pte)) => check!(t, pte.is_protected(), "the host's revocation made the entry writable again: {pte:?}"),
            None => check!(t, false, "the page is no longer mapped"),
        }
        space.enter();
        let word = uaccess::read_u64(va);
        space.leave();
        check_eq!(t, word, 0x5eed_c0de);
        let violations = vm::with(|mm| kernel::mm::debug::violations(mm));
        check!(t, violations.is_empty(), "{violations:?}");
    }
}

/// The frames of the memory manager that hold DAT tables.
fn table_frames() -> Vec<Pfn> {
    vm::with(|mm| {
        mm.frames()
            .pages()
            .iter()
            .filter(|(_, p)| p.test(PageFlags::DAT_TABLE))
            .map(|(pfn, _)| pfn)
            .collect()
    })
}

ktest! {
    /// A segment table that grows is replaced while its space stays in use, and the
    /// host's revocation walks the tables of every registered space without the memory
    /// manager's lock: the old table's frame must wait for a grace period before it is
    /// handed out again (`TableAlloc::retire_table`). CPU 0 maps a page 1.5 GiB beyond
    /// its first one while CPU 1 is busy (no quiescent point): the old frame stays
    /// deferred until CPU 1 is done. Freed at once, a walker still inside the old table
    /// would read whatever the frame holds next as segment entries.
    fn a_replaced_segment_table_waits_for_a_grace_period(t) {
        if !needs_mm(t) { return; }
        let (space, first) = space_with_a_stored_page(1);
        let far = VirtAddr::new(first.as_u64() + (3 << 29));
        let mapped = vm::with(|mm| mm.mmap(space.id(), Some(far), PAGE_SIZE, RW, MapSource::Anon));
        check_eq!(t, mapped, Ok(far));
        let busy = AtomicBool::new(true);
        let started = AtomicBool::new(false);
        let ran = t.on_cpus(2, |c| {
            if c.index() == 1 {
                started.store(true, Ordering::Release);
                // Busy, outside the memory manager: no quiescent point until it returns.
                check!(c, wait_until(5_000_000, || !busy.load(Ordering::Acquire)), "cpu 0 never finished");
                return;
            }
            check!(c, wait_until(5_000_000, || started.load(Ordering::Acquire)), "cpu 1 never ran");
            let before = table_frames();
            space.enter();
            uaccess::write_u64(far, 2);
            space.leave();
            let after = table_frames();
            let replaced: Vec<Pfn> = before.into_iter().filter(|p| !after.contains(p)).collect();
            check_eq!(c, replaced.len(), 1);
            let states: Vec<(bool, bool)> = vm::with(|mm| {
                mm.reap_deferred();
                replaced.iter().map(|&p| (mm.frames().is_free(p), mm.page(p).is_some_and(|pg| pg.test(PageFlags::DEFERRED)))).collect()
            });
            check!(c, states.iter().all(|&(free, deferred)| !free && deferred),
                "the replaced segment table {replaced:?} (free, deferred) {states:?} while cpu 1 may still walk it");
            busy.store(false, Ordering::Release);
            let freed = wait_until(5_000_000, || vm::with(|mm| {
                mm.reap_deferred();
                replaced.iter().all(|&p| mm.frames().is_free(p))
            }));
            check!(c, freed, "the replaced segment table {replaced:?} still deferred after cpu 1 finished");
        });
        if !ran {
            return; // one CPU online: skipped
        }
        space.enter();
        let words = (uaccess::read_u64(first), uaccess::read_u64(far));
        space.leave();
        check_eq!(t, words, (1, 2));
    }
}
