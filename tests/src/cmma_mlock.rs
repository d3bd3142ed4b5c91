//! `cmma::mlock`: the seed (guest page hinting patch 3/6, "mlocked pages") rule by rule.
//! Locked pages may not leave the page cache, so they must be stable: `mlock_fixup` marks
//! the file's mapping `mlocked` for good, no page of such a mapping becomes volatile,
//! `follow_page` makes the pages of a `VM_LOCKED` VMA stable without taking a reference,
//! pages discarded before `mlock` are forced out and reloaded by `make_pages_present`
//! (which needs the seed's exception in `try_to_unmap`: `page_discard` must unmap a
//! discarded page from a VMA that is already `VM_LOCKED`), and `try_to_unmap` refuses
//! pages of a locked VMA.
//!
//! Files: `SCRATCH + 0 ..= SCRATCH + 7`, one per test (the `mlocked` flag is sticky;
//! `cmma::economy` mlocks `SCRATCH + 8`).

use crate::support::{
    STABLE, VOLATILE, cached, cached_state, check_is, host_reclaim, is_mlocked, lookup_and_release,
    map_file, needs_mm, needs_mm_with_model, page_state, page_va, read_pages, state_counters,
    vma_locked,
};
use kernel::cmma::backend::with_model;
use kernel::cmma::essa::ContentState;
use kernel::cmma::model::ReclaimOutcome;
use kernel::mm::addr::{PAGE_SIZE, Pfn, VirtAddr};
use kernel::mm::backing::files;
use kernel::mm::fault::FollowFlags;
use kernel::mm::rmap::UnmapError;
use kernel::mm::vma::VmFlags;
use kernel::vm::{self, UserSpace};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("cmma::mlock");

/// Whether `pfn` is mapped at `va` in `space`.
fn mapped_at(space: &UserSpace, va: VirtAddr, pfn: Pfn) -> bool {
    vm::with(|mm| {
        mm.rmap(pfn)
            .iter()
            .any(|e| e.space == space.id() && e.va == va)
    })
}

ktest! {
    /// Rule 1: `mlock_fixup` sets the mapping's `mlocked` flag for a file VMA (`mlock`
    /// and `MAP_LOCKED` alike), and nothing clears it: not `munlock`, not `munmap`, not
    /// a new mapping of the file in another address space. Guards `set_mlocked` in
    /// `mlock_fixup` (mm/mlock.rs).
    fn mlock_sets_the_mapping_flag_for_good(t) {
        if !needs_mm(t) { return; }
        let file = files::SCRATCH;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, 8, VmFlags::READ);
        check_is!(t, is_mlocked(m), Some(false), "before mlock");
        check_eq!(t, vm::with(|mm| mm.mlock(space.id(), page_va(va, 2), 2 * PAGE_SIZE)), Ok(()));
        check_is!(t, is_mlocked(m), Some(true), "after mlock of two pages");
        check_eq!(t, vm::with(|mm| mm.munlock(space.id(), page_va(va, 2), 2 * PAGE_SIZE)), Ok(()));
        check_is!(t, is_mlocked(m), Some(true), "after munlock");
        check_eq!(t, vm::with(|mm| mm.munmap(space.id(), va, 8 * PAGE_SIZE)), Ok(()));
        check_is!(t, is_mlocked(m), Some(true), "after munmap");
        drop(space);
        let other = UserSpace::new().expect("space");
        let (again, _) = map_file(&other, file, 0, 8, VmFlags::READ);
        check_eq!(t, again, m);
        check_is!(t, is_mlocked(m), Some(true), "after a new mapping");
        // MAP_LOCKED goes through mlock_fixup too.
        let (fresh, _) = map_file(&other, files::SCRATCH + 7, 0, 2, VmFlags::READ | VmFlags::LOCKED);
        check_is!(t, is_mlocked(fresh), Some(true), "MAP_LOCKED");
    }
}

ktest! {
    /// Rule 2: no page of a mapping that was ever mlocked becomes volatile, not even
    /// after `munlock`: pages volatile before `mlock` are stable after it, and every
    /// later volatile attempt (rmap add of a new mapping, readpage of new pages, cache
    /// releases) is refused. A file never mlocked shows the same accesses make pages
    /// volatile. Guards `mapping_mlocked` in `try_volatile` (mm/manager.rs) and the
    /// `MappingMlocked` condition of `volatile_verdict` (cmma/rules.rs).
    fn no_page_of_an_mlocked_mapping_becomes_volatile(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let (file, control) = (files::SCRATCH + 1, files::SCRATCH + 2);
        let space = UserSpace::new().expect("space");
        let (c, cva) = map_file(&space, control, 0, 4, VmFlags::READ);
        check_eq!(t, read_pages(&space, cva, control, 0, 4), None);
        for index in 0..4 {
            check_is!(t, cached_state(c, index), Some(VOLATILE), "control page {}", index);
        }
        let (m, va) = map_file(&space, file, 0, 16, VmFlags::READ);
        check_eq!(t, read_pages(&space, va, file, 0, 4), None);
        check_is!(t, cached_state(m, 3), Some(VOLATILE), "before mlock");
        let before = state_counters();
        let locked = vm::with(|mm| {
            mm.mlock(space.id(), va, 8 * PAGE_SIZE)?;
            mm.munlock(space.id(), va, 8 * PAGE_SIZE)?;
            mm.munmap(space.id(), va, 16 * PAGE_SIZE)
        });
        check_eq!(t, locked, Ok(()));
        let (_, va) = map_file(&space, file, 0, 16, VmFlags::READ);
        check_eq!(t, read_pages(&space, va, file, 0, 16), None);
        for index in 0..16 {
            lookup_and_release(m, index);
            check_is!(t, cached_state(m, index), Some(STABLE), "page {}", index);
        }
        let refused = state_counters().refused_mlocked - before.refused_mlocked;
        check!(t, refused >= 16 * 2, "refused for the mlocked mapping only {} times", refused);
    }
}

ktest! {
    /// Rule 3: `follow_page` makes the pages of a `VM_LOCKED` VMA stable although it
    /// takes no reference (`FollowFlags { get: false }`, as `make_pages_present` calls
    /// it). Without the lock it leaves a volatile page alone. Guards
    /// `flags.get || locked` in `follow_page` (mm/fault.rs).
    fn follow_page_stabilizes_locked_pages_without_a_reference(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 3;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, 4, VmFlags::READ);
        check_eq!(t, read_pages(&space, va, file, 0, 4), None);
        let pfns: alloc::vec::Vec<Option<Pfn>> = (0..4).map(|i| cached(m, i)).collect();
        let Some(first) = pfns[0] else {
            check!(t, false, "page 0 not cached");
            return;
        };
        let refs = vm::with(|mm| mm.page(first).map(|p| p.refcount()));
        let followed = vm::with(|mm| mm.follow_page(space.id(), va, FollowFlags::default()));
        check_eq!(t, followed, Some(first));
        check_is!(t, page_state(first), VOLATILE, "followed in an unlocked VMA");
        check_eq!(t, vm::with(|mm| mm.mlock(space.id(), va, 4 * PAGE_SIZE)), Ok(()));
        check_is!(t, vma_locked(&space, va), Some(true), "VM_LOCKED");
        for (index, pfn) in pfns.iter().enumerate() {
            let Some(pfn) = *pfn else {
                check!(t, false, "page {} not cached", index);
                continue;
            };
            check_is!(t, cached(m, index as u64), Some(pfn), "page {} kept its frame", index);
            check_is!(t, page_state(pfn), STABLE, "page {} after mlock", index);
        }
        check_is!(t, vm::with(|mm| mm.page(first).map(|p| p.refcount())), refs, "no reference left behind");
        // Stable: the host pages them out and the bytes stay.
        for (index, pfn) in pfns.iter().enumerate() {
            check_is!(t, pfn.and_then(host_reclaim), Some(ReclaimOutcome::PagedOut), "host reclaim of page {}", index);
        }
        check_eq!(t, read_pages(&space, va, file, 0, 4), None);
    }
}

ktest! {
    /// Rule 4: pages the host discarded before `mlock` are forced out and reloaded by
    /// `make_pages_present`: after `mlock` every page is stable, resident, mapped, and
    /// holds the file's bytes; the discards were counted and the reloads were major
    /// faults, and reading the pages needs no discard fault. Guards the discard branch
    /// of `follow_page` for locked VMAs, `make_pages_present`'s retry, and the seed's
    /// exception in `try_to_unmap`: `mlock_fixup` sets `VM_LOCKED` before
    /// `make_pages_present` runs, so `page_discard` unmaps each discarded page from a
    /// locked VMA; without the exception it refuses (a recorded bug) and `mlock` fails.
    fn pages_discarded_before_mlock_are_reloaded(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 4;
        const PAGES: u64 = 8;
        const DISCARD: [u64; 3] = [1, 3, 6];
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, PAGES, VmFlags::READ);
        check_eq!(t, read_pages(&space, va, file, 0, PAGES), None);
        for index in DISCARD {
            let pfn = cached(m, index);
            check_is!(t, pfn.map(page_state), Some(VOLATILE), "page {} before the discard", index);
            check_is!(t, pfn.and_then(host_reclaim), Some(ReclaimOutcome::Discarded), "host reclaim of page {}", index);
        }
        let before = vm::with(|mm| mm.stats());
        check_is!(t, vma_locked(&space, va), Some(false), "before mlock");
        check_eq!(t, vm::with(|mm| mm.mlock(space.id(), va, PAGES * PAGE_SIZE)), Ok(()));
        let after = vm::with(|mm| mm.stats());
        check_eq!(t, after.discards, before.discards + DISCARD.len() as u64);
        check_is!(t, after.bugs, before.bugs, "page_discard refusals");
        check_eq!(t, after.major_faults, before.major_faults + DISCARD.len() as u64);
        for index in 0..PAGES {
            let Some(pfn) = cached(m, index) else {
                check!(t, false, "page {} not cached after mlock", index);
                continue;
            };
            check_is!(t, page_state(pfn), STABLE, "page {}", index);
            let content = with_model(|model, _| model.state(pfn.as_u64()).1);
            check_is!(t, content, Some(ContentState::Resident), "page {}", index);
            check!(t, mapped_at(&space, page_va(va, index), pfn), "page {} not mapped", index);
        }
        let faults = with_model(|model, _| model.counters().discard_faults);
        check_eq!(t, read_pages(&space, va, file, 0, PAGES), None);
        check_is!(t, with_model(|model, _| model.counters().discard_faults), faults, "discard faults while reading");
        check_eq!(t, vm::with(|mm| mm.stats()).major_faults, after.major_faults);
    }
}

ktest! {
    /// Rule 5: `try_to_unmap` refuses a page of a locked VMA (`SWAP_FAIL`) and leaves it
    /// mapped, so reclaim cannot take it; after `munlock` the page can be unmapped.
    /// Guards the locked check of `try_to_unmap` (mm/rmap.rs). Its exception for
    /// discarded pages is on the path that needs it in rule 4 and the next test.
    fn try_to_unmap_refuses_locked_pages(t) {
        if !needs_mm(t) { return; }
        let file = files::SCRATCH + 5;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, 2, VmFlags::READ | VmFlags::LOCKED);
        let Some(pfn) = cached(m, 0) else {
            check!(t, false, "MAP_LOCKED did not make page 0 present");
            return;
        };
        let refused_before = vm::with(|mm| mm.stats()).unmap_refused_locked;
        check_eq!(t, vm::with(|mm| mm.try_to_unmap(pfn)), Err(UnmapError::Locked));
        check!(t, mapped_at(&space, va, pfn), "a refused page was unmapped");
        check_eq!(t, vm::with(|mm| mm.stats()).unmap_refused_locked, refused_before + 1);
        check_eq!(t, vm::with(|mm| mm.munlock(space.id(), va, 2 * PAGE_SIZE)), Ok(()));
        check_eq!(t, vm::with(|mm| mm.try_to_unmap(pfn)), Ok(()));
        check!(t, !mapped_at(&space, va, pfn), "still mapped after munlock and try_to_unmap");
        check_eq!(t, read_pages(&space, va, file, 0, 2), None);
    }
}

ktest! {
    /// The seed's sequence across address spaces: a page the host discarded while it
    /// was mapped in one space is forced out of every mapping when another space maps
    /// the file `MAP_LOCKED`, and reloaded; after the first space locks its VMA too, both
    /// map the reloaded, stable page and read the file's bytes. The discarded page is
    /// mapped in the second space's locked VMA when `page_discard` runs (the minor fault
    /// maps it without a state change, series 5/6): the seed's exception lets it go.
    fn discarded_page_is_reloaded_when_another_space_locks_the_file(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 6;
        let first = UserSpace::new().expect("space");
        let (m, va) = map_file(&first, file, 0, 2, VmFlags::READ);
        check_eq!(t, read_pages(&first, va, file, 0, 2), None);
        let Some(pfn) = cached(m, 1) else {
            check!(t, false, "page 1 not cached");
            return;
        };
        check_is!(t, page_state(pfn), VOLATILE, "before the discard");
        check_eq!(t, host_reclaim(pfn), Some(ReclaimOutcome::Discarded));
        let before = vm::with(|mm| mm.stats());
        let discards = before.discards;
        let second = UserSpace::new().expect("space");
        let (_, va2) = map_file(&second, file, 0, 2, VmFlags::READ | VmFlags::LOCKED);
        check_eq!(t, vm::with(|mm| mm.mlock(first.id(), va, 2 * PAGE_SIZE)), Ok(()));
        check_is!(t, vm::with(|mm| mm.stats()).discards, discards + 1, "discards");
        check_is!(t, vm::with(|mm| mm.stats()).bugs, before.bugs, "page_discard refusals");
        let Some(now) = cached(m, 1) else {
            check!(t, false, "page 1 not reloaded");
            return;
        };
        check_is!(t, page_state(now), STABLE, "reloaded page");
        check!(t, mapped_at(&first, page_va(va, 1), now), "reloaded page not mapped in the first space");
        check!(t, mapped_at(&second, page_va(va2, 1), now), "reloaded page not mapped in the second space");
        check_eq!(t, read_pages(&first, va, file, 0, 2), None);
        check_eq!(t, read_pages(&second, va2, file, 0, 2), None);
    }
}
