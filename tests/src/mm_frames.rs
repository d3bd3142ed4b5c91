//! `mm::frames`: the frame allocator on the machine: exact alloc/free accounting, every
//! frame handed out once, freed frames reused, frame contents kept while allocated, and
//! (under the host model) allocated frames stable, freed frames unused.

use crate::support::{Rng, ensure_free, host_reclaim, needs_mm, needs_model};
use alloc::collections::BTreeSet;
use alloc::vec::Vec;
use kernel::cmma::backend::with_model;
use kernel::cmma::essa::UsageState;
use kernel::cmma::model::ReclaimOutcome;
use kernel::mm::addr::Pfn;
use kernel::mm::backing::{check_pattern, fill_pattern};
use kernel::mm::machine::PhysMem;
use kernel::mm::page::PageFlags;
use kernel::vm;
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("mm::frames");

/// How many frames each test takes: far below the pool, so no watermark reclaim runs.
const BATCH: usize = 64;

/// A file id outside the standard image, so frame patterns never look like file data.
const FRAME_PATTERN_ID: u32 = 0xf4a3;

/// Makes sure `BATCH` allocations stay above the low watermark, so the counts a test
/// sees change only by what the test itself allocates and frees.
fn ensure_headroom(mm: &mut vm::KernelMm) {
    ensure_free(mm, 2 * BATCH);
}

/// Allocates `n` data frames through the memory manager.
fn alloc_frames(mm: &mut vm::KernelMm, n: usize) -> Vec<Pfn> {
    (0..n)
        .map(|_| mm.alloc_page().expect("a free frame"))
        .collect()
}

/// The frames of `pfns` whose bytes are not the frame pattern, with the first bad offset.
fn off_pattern(mm: &vm::KernelMm, pfns: &[Pfn]) -> Vec<(Pfn, u64)> {
    pfns.iter()
        .filter_map(|&pfn| {
            check_pattern(
                FRAME_PATTERN_ID,
                pfn.addr().as_u64(),
                mm.machine().frame_ref(pfn),
            )
            .err()
            .map(|offset| (pfn, offset))
        })
        .collect()
}

/// Drops the only reference of each frame, which frees it.
fn free_frames(mm: &mut vm::KernelMm, pfns: &[Pfn]) {
    for &pfn in pfns {
        mm.put_page(pfn);
    }
}

ktest! {
    /// Allocation and free move the counters by exactly one per frame, every frame is
    /// distinct, usable (not reserved), off the free list with one reference while
    /// allocated, and back on it after the free. Guards `FrameAllocator::alloc`/`free`
    /// (free list and counts) and `Mm::put_page` freeing on the last reference.
    fn alloc_free_accounting(t) {
        if !needs_mm(t) { return; }
        // The seed picks how many frames and the order they are freed in.
        let mut rng = Rng::new(t.seed(), 0xf4a3_0001);
        let batch = rng.within(1..=BATCH as u64) as usize;
        t.diag(format_args!("{batch} frames, freed in a seeded order"));
        let (before, after_alloc, after_free, pfns, bad) = vm::with(|mm| {
            ensure_headroom(mm);
            let count = |mm: &vm::KernelMm| (mm.frames().allocated_count(), mm.frames().free_count());
            let before = count(mm);
            let mut pfns = alloc_frames(mm, batch);
            let after_alloc = count(mm);
            let bad: Vec<(Pfn, u32, u32)> = pfns
                .iter()
                .filter_map(|&pfn| {
                    let page = mm.page(pfn)?;
                    let ok = page.refcount() == 1
                        && !page.test(PageFlags::RESERVED)
                        && !page.test(PageFlags::FREE)
                        && !mm.frames().is_free(pfn);
                    (!ok).then_some((pfn, page.refcount(), page.flags().bits()))
                })
                .collect();
            rng.shuffle(&mut pfns);
            free_frames(mm, &pfns);
            let after_free = count(mm);
            let still_busy = pfns.iter().filter(|&&p| !mm.frames().is_free(p)).count();
            (before, after_alloc, after_free, pfns, (bad, still_busy))
        });
        let distinct: BTreeSet<u64> = pfns.iter().map(|p| p.as_u64()).collect();
        check_eq!(t, distinct.len(), batch);
        check_eq!(t, after_alloc, (before.0 + batch, before.1 - batch));
        check_eq!(t, after_free, before);
        check_eq!(t, bad.0, Vec::new());
        check_eq!(t, bad.1, 0);
        let usable = vm::with(|mm| mm.frames().usable_count());
        check_eq!(t, before.0 + before.1, usable);
    }
}

ktest! {
    /// Freed frames are handed out again first (the free list is LIFO, which keeps the
    /// working set of frames small and cache-warm). Guards `FrameAllocator::release`
    /// pushing to the front that `alloc` pops from.
    fn freed_frames_are_reused(t) {
        if !needs_mm(t) { return; }
        let (first, second) = vm::with(|mm| {
            ensure_headroom(mm);
            let first = alloc_frames(mm, BATCH);
            free_frames(mm, &first);
            let second = alloc_frames(mm, BATCH);
            free_frames(mm, &second);
            (first, second)
        });
        let first: BTreeSet<u64> = first.iter().map(|p| p.as_u64()).collect();
        let second: BTreeSet<u64> = second.iter().map(|p| p.as_u64()).collect();
        check_eq!(t, first.len(), BATCH);
        check!(t, first == second, "not reused: {:?}", first.symmetric_difference(&second).take(8).collect::<Vec<_>>());
    }
}

ktest! {
    /// An allocated frame keeps its bytes while other frames are allocated, written and
    /// freed around it: the allocator never hands out a busy frame twice. Guards the
    /// `FREE` bookkeeping of `FrameAllocator` (a busy frame on the free list would be
    /// overwritten by the churn).
    fn allocated_frames_keep_their_contents(t) {
        if !needs_mm(t) { return; }
        // The seed picks the churn: rounds, frames per round, the order they are freed in.
        let mut rng = Rng::new(t.seed(), 0xf4a3_0002);
        let rounds = rng.within(2..=8) as u8;
        t.diag(format_args!("{rounds} rounds of churn"));
        let bad = vm::with(|mm| {
            ensure_headroom(mm);
            let keep = alloc_frames(mm, BATCH / 2);
            for &pfn in &keep {
                fill_pattern(FRAME_PATTERN_ID, pfn.addr().as_u64(), mm.machine_mut().frame(pfn));
            }
            for round in 0..rounds {
                let mut churn = alloc_frames(mm, rng.within(1..=BATCH as u64) as usize);
                for &pfn in &churn {
                    mm.machine_mut().frame(pfn).fill(round);
                }
                rng.shuffle(&mut churn);
                free_frames(mm, &churn);
            }
            let bad = off_pattern(mm, &keep);
            free_frames(mm, &keep);
            bad
        });
        check_eq!(t, bad, Vec::new());
    }
}

ktest! {
    /// Under the host model, an allocated frame is stable (`arch_alloc_page`), so host
    /// reclaim pages it out and its bytes survive; a freed frame is unused
    /// (`arch_free_page`), so host reclaim discards it. Guards the `frame_allocated` and
    /// `frame_freed` hooks of `PageStates` (ORC 1 / ORC 2) as `FrameAllocator` calls them.
    fn model_sees_stable_allocated_and_unused_free_frames(t) [NEEDS_ESSA] {
        if !needs_mm(t) || !needs_model(t, "host reclaim on request needs the host model (cmma=model)") { return; }
        let pfns = vm::with(|mm| {
            ensure_headroom(mm);
            let pfns = alloc_frames(mm, 8);
            for &pfn in &pfns {
                fill_pattern(FRAME_PATTERN_ID, pfn.addr().as_u64(), mm.machine_mut().frame(pfn));
            }
            pfns
        });
        for &pfn in &pfns {
            let (usage, ..) = with_model(|model, _| model.state(pfn.as_u64())).expect("model");
            check_eq!(t, usage, UsageState::Stable);
            let outcome = host_reclaim(pfn);
            check_eq!(t, outcome, Some(ReclaimOutcome::PagedOut));
        }
        let bad = vm::with(|mm| off_pattern(mm, &pfns));
        check_eq!(t, bad, Vec::new());
        // Reading them brought them back (a touch makes a paged-out frame resident);
        // page them out again and free them untouched.
        for &pfn in &pfns {
            check_eq!(t, host_reclaim(pfn), Some(ReclaimOutcome::PagedOut));
        }
        vm::with(|mm| free_frames(mm, &pfns));
        // Paged out, then unused: the host drops the contents at once (Up does not
        // exist), so the frames come back zeroed. Take them again (the free list is
        // LIFO), dirty them while stable, and free them resident.
        let again = vm::with(|mm| {
            let again = alloc_frames(mm, pfns.len());
            let zero = again.iter().all(|&pfn| mm.machine().frame_ref(pfn).iter().all(|&b| b == 0));
            for &pfn in &again {
                mm.machine_mut().frame(pfn).fill(0x77);
            }
            free_frames(mm, &again);
            (again, zero)
        });
        check!(t, again.1, "a frame dropped by the host came back with stale bytes");
        for &pfn in &again.0 {
            let (usage, ..) = with_model(|model, _| model.state(pfn.as_u64())).expect("model");
            check_eq!(t, usage, UsageState::Unused);
            let outcome = host_reclaim(pfn);
            check_eq!(t, outcome, Some(ReclaimOutcome::Discarded));
        }
        // Allocating the discarded frames makes them stable again, zero-filled.
        let last = vm::with(|mm| {
            let last = alloc_frames(mm, pfns.len());
            let zero = last.iter().all(|&pfn| mm.machine().frame_ref(pfn).iter().all(|&b| b == 0));
            free_frames(mm, &last);
            (last, zero)
        });
        let first: BTreeSet<u64> = again.0.iter().map(|p| p.as_u64()).collect();
        let reused: BTreeSet<u64> = last.0.iter().map(|p| p.as_u64()).collect();
        check_eq!(t, first, reused);
        check!(t, last.1, "a discarded frame came back with stale bytes");
    }
}
