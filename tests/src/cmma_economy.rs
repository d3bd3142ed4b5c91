//! `cmma::economy`: every memory-manager operation executes exactly the minimum number of
//! ESSA the page-state rules need, counted where the host sees them (the host model's
//! per-ORC counters, not the page-state layer's own count), and fails when it issues more
//! (a redundant ORC 3 on a page that is already volatile, a stray ORC 1 at allocation,
//! a stabilisation without need). Each test names its minimum and why; the README's
//! table ("ESSA/op", "minimum") lists the same figures, measured by `cargo xtask bench mm`.
//!
//! Files: `SCRATCH + 18` from page 8 on, `SCRATCH + 8` for mlock (the flag is sticky).

use crate::support::{
    POT_VOLATILE, STABLE, VOLATILE, cached, cached_state, check_is, map_anon, map_file,
    model_counters, needs_mm_with_model, page_va,
};
use kernel::arch::uaccess;
use kernel::cmma::backend::with_model;
use kernel::ktest::Test;
use kernel::mm::addr::{PAGE_SIZE, Pfn};
use kernel::mm::backing::files;
use kernel::mm::error::MmError;
use kernel::mm::ids::MappingId;
use kernel::mm::reclaim::ShrinkOutcome;
use kernel::mm::vma::VmFlags;
use kernel::vm::{self, UserSpace};
use kernel::{check, ktest};

kernel::ktest_suite!("cmma::economy");

const FILE: u32 = files::SCRATCH + 18;

/// ESSA executions the host model has seen, per ORC.
fn essa_by_orc() -> [u64; 8] {
    with_model(|model, _| model.counters().essa_by_orc).unwrap_or_default()
}

/// Runs `op` and checks that the host saw exactly the ESSA in `minimum` (ORC, count),
/// no more and no other; `why` says which state changes the rules require.
fn expect_essa(
    t: &mut Test<'_>,
    what: &str,
    minimum: &[(usize, u64)],
    why: &str,
    op: impl FnOnce(),
) {
    let before = essa_by_orc();
    let (host_before, mm_before) = (model_counters(), vm::with(|mm| mm.stats()));
    op();
    let after = essa_by_orc();
    let (host_after, mm_after) = (model_counters(), vm::with(|mm| mm.stats()));
    let seen: [u64; 8] = core::array::from_fn(|orc| after[orc] - before[orc]);
    let mut want = [0u64; 8];
    for &(orc, count) in minimum {
        want[orc] += count;
    }
    let (total, least): (u64, u64) = (seen.iter().sum(), want.iter().sum());
    check!(
        t,
        seen == want,
        "{what}: {total} ESSA (by ORC 0-7: {seen:?}), the minimum is {least} ({want:?}): {why}"
    );
    if seen != want {
        // What else happened meanwhile, so a failure says whether the operation or its
        // surroundings (a host discard, a watermark reclaim) issued the extra ESSA.
        t.diag(format_args!(
            "meanwhile: {} host discards, {} discard faults, {} major faults, {} watermark reclaims, {} lumpy reclaims, {} discards in the guest",
            host_after.discards - host_before.discards,
            host_after.discard_faults - host_before.discard_faults,
            mm_after.major_faults - mm_before.major_faults,
            mm_after.watermark_reclaims - mm_before.watermark_reclaims,
            mm_after.lumpy_reclaims - mm_before.lumpy_reclaims,
            mm_after.discards - mm_before.discards,
        ));
    }
}

/// Makes room in the page pool, so an operation's allocations do not trigger the
/// watermark reclaim (whose frees would be counted with it).
fn make_room() {
    vm::with(|mm| {
        let high = mm.config().high_watermark + 16;
        let need = high.saturating_sub(mm.frames().free_count());
        mm.reclaim(need);
    });
}

/// Reads one byte of `page` of `FILE` through the page cache; the page is then cached
/// and volatile (released, clean, unmapped). Room is made first, so that allocations
/// while the test runs do not start a watermark reclaim that evicts the page again. Tests
/// build their space (`space_with_tables`) before they cache the page: a segment table
/// needs an aligned block of frames, which lumpy reclaim may free by evicting the page.
/// Either way the "minor" fault would be a major one (found by the seed sweep with
/// ktest.seed=7283338331100013279, shuffled order).
fn cache(t: &mut Test<'_>, page: u64) -> Option<(MappingId, Pfn)> {
    make_room();
    let mut byte = [0u8; 1];
    let read = vm::with(|mm| {
        let m = mm.open_file(FILE)?;
        mm.read_file(m, page * PAGE_SIZE, &mut byte)?;
        Ok::<_, MmError>(m)
    });
    let Ok(m) = read else {
        check!(t, false, "read_file: {:?}", read);
        return None;
    };
    let pfn = cached(m, page)?;
    check_is!(
        t,
        cached_state(m, page),
        Some(VOLATILE),
        "page {} after a read",
        page
    );
    Some((m, pfn))
}

/// Drops `page` of `FILE` from the page cache if it is there.
fn uncache(page: u64) {
    vm::with(|mm| {
        if let Ok(m) = mm.open_file(FILE)
            && let Some(pfn) = mm.find_get_page(m, page)
        {
            mm.put_page(pfn);
            let _ = mm.truncate_inode_pages(m, page);
        }
    });
}

/// A user space whose page tables for its first megabyte exist already (an anonymous
/// page at its start was touched), so table allocations stay out of the counts.
fn space_with_tables() -> UserSpace {
    let space = UserSpace::new().expect("space");
    let va = map_anon(&space, 1);
    space.enter();
    uaccess::write_u8(va, 1);
    space.leave();
    space
}

ktest! {
    /// An anonymous page costs one ESSA when it is allocated (stable) and one when it
    /// is freed (unused), nothing in between: it is never hinted.
    fn anonymous_page_costs_its_allocation_and_its_free(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        make_room();
        let space = space_with_tables();
        let va = map_anon(&space, 1);
        expect_essa(t, "anonymous fault", &[(1, 1)], "allocation: unused -> stable", || {
            space.enter();
            uaccess::write_u64(va, 7);
            space.leave();
        });
        expect_essa(t, "munmap of an anonymous page", &[(2, 1)], "free: stable -> unused", || {
            vm::with(|mm| mm.munmap(space.id(), va, PAGE_SIZE)).expect("munmap");
        });
    }
}

ktest! {
    /// A page-cache miss (`readpage` through `read_file`): 2 ESSA.
    fn readpage_costs_two(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        make_room();
        uncache(8);
        let mut byte = [0u8; 1];
        expect_essa(t, "read_file miss", &[(1, 1), (3, 1)],
            "the new frame goes unused -> stable when allocated, stable -> volatile on the release after the copy",
            || { vm::with(|mm| { let m = mm.open_file(FILE)?; mm.read_file(m, 8 * PAGE_SIZE, &mut byte) }).expect("read_file"); });
    }
}

ktest! {
    /// A miss that reads ahead (`read_file` of six uncached pages: one read asked for,
    /// five started ahead of it): 2 ESSA a page, as a page read on its own. A page read
    /// ahead keeps the reader's reference until its bytes are copied, so it is not made
    /// volatile in between (which would cost two more).
    fn readahead_costs_two_a_page(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        make_room();
        vm::with(|mm| mm.open_file(FILE).and_then(|m| mm.truncate_inode_pages(m, 40))).expect("truncate");
        let mut buf = alloc::vec![0u8; 6 * PAGE_SIZE as usize];
        let ahead = vm::with(|mm| mm.stats().readahead);
        expect_essa(t, "read_file of six missing pages", &[(1, 6), (3, 6)],
            "each new frame goes unused -> stable when allocated, stable -> volatile on the release after its copy",
            || { vm::with(|mm| { let m = mm.open_file(FILE)?; mm.read_file(m, 40 * PAGE_SIZE, &mut buf) }).expect("read_file"); });
        check!(t, vm::with(|mm| mm.stats().readahead) == ahead + 5, "pages read ahead: {} -> {}",
            ahead, vm::with(|mm| mm.stats().readahead));
    }
}

ktest! {
    /// A page-cache hit on a volatile page, and on a stable one.
    fn lookup_hit_costs_two_on_a_volatile_page_none_on_a_stable_one(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let Some((m, _)) = cache(t, 9) else { return };
        expect_essa(t, "find_get_page and release of a volatile page", &[(6, 1), (3, 1)],
            "the lookup makes it stable (ORC 6, which also reveals a discard), the release volatile again",
            || vm::with(|mm| { let p = mm.find_get_page(m, 9).expect("cached"); mm.put_page(p); }));
        let pinned = vm::with(|mm| mm.find_get_page(m, 9)).expect("cached");
        expect_essa(t, "find_get_page of a stable page", &[], "it is stable already",
            || vm::with(|mm| { let p = mm.find_get_page(m, 9).expect("cached"); mm.put_page(p); }));
        vm::with(|mm| mm.put_page(pinned));
    }
}

ktest! {
    /// A minor fault maps a cached volatile page read-only without any ESSA (series
    /// 5/6, `find_get_page_nodiscard`): the page stays volatile, and were it discarded
    /// the access through the new mapping would take the discard fault.
    fn minor_fault_costs_nothing(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let space = space_with_tables();
        let Some((m, _)) = cache(t, 10) else { return };
        let (_, va) = map_file(&space, FILE, 10, 1, VmFlags::READ);
        expect_essa(t, "minor fault", &[], "the page is volatile and stays so, mapped read-only", || {
            space.enter();
            uaccess::read_u8(va);
            space.leave();
        });
        check_is!(t, cached_state(m, 10), Some(VOLATILE), "after the minor fault");
    }
}

ktest! {
    /// A major fault on a read-only mapping: 2 ESSA.
    fn major_fault_costs_two(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        make_room();
        uncache(11);
        let space = space_with_tables();
        let (m, va) = map_file(&space, FILE, 11, 1, VmFlags::READ);
        expect_essa(t, "major fault", &[(1, 1), (3, 1)],
            "unused -> stable at allocation, volatile after the read; mapping it read-only needs nothing more",
            || { space.enter(); uaccess::read_u8(va); space.leave(); });
        check_is!(t, cached_state(m, 11), Some(VOLATILE), "after the major fault");
    }
}

ktest! {
    /// A read fault in a shared writable mapping maps the cached volatile page writable:
    /// 1 ESSA (4/6: volatile -> potentially volatile, so the host checks the change bit).
    /// Its last unmap without a store needs no stabilisation (6/6: only a set change bit
    /// does): 1 ESSA, the release's volatile hint.
    fn writable_minor_fault_costs_one(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let space = space_with_tables();
        let Some((m, _)) = cache(t, 12) else { return };
        let (_, va) = map_file(&space, FILE, 12, 1, VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED);
        expect_essa(t, "read fault in a shared writable mapping", &[(4, 1)],
            "volatile -> potentially volatile (ORC 4) under a writable PTE",
            || { space.enter(); uaccess::read_u8(va); space.leave(); });
        check_is!(t, cached_state(m, 12), Some(POT_VOLATILE), "mapped writable");
        expect_essa(t, "last unmap of a clean page mapped writable", &[(3, 1)],
            "its change bit is clear, so page_remove_rmap moves nothing and stabilises nothing \
             (6/6); mapped writable nowhere now, the release hints it volatile (4/6: ORC 3)",
            || vm::with(|mm| mm.munmap(space.id(), va, PAGE_SIZE)).expect("munmap"));
        check_is!(t, cached_state(m, 12), Some(VOLATILE), "unmapped");
    }
}

ktest! {
    /// A write fault on a cached volatile page of a shared mapping: 1 ESSA (the page
    /// must be stable before it is dirtied; dirty, it stays stable under the writable PTE).
    fn write_fault_costs_one(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let space = space_with_tables();
        let Some((m, _)) = cache(t, 13) else { return };
        let (_, va) = map_file(&space, FILE, 13, 1, VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED);
        // Store what the file holds there, so the file stays as it was.
        let mut bytes = [0u8; 8];
        kernel::mm::backing::fill_pattern(FILE, 13 * PAGE_SIZE, &mut bytes);
        let value = u64::from_be_bytes(bytes);
        expect_essa(t, "write fault", &[(6, 1)], "volatile -> stable (ORC 6) before the page is dirtied",
            || { space.enter(); uaccess::write_u64(va, value); space.leave(); });
        check_is!(t, cached_state(m, 13), Some(STABLE), "dirty");
        drop(space);
        let restored = vm::with(|mm| mm.sync_mapping(m));
        check!(t, restored.is_ok(), "writeback: {:?}", restored);
    }
}

ktest! {
    /// Reclaim of a clean, unmapped, volatile page: 1 ESSA (the freed frame goes unused).
    fn reclaim_costs_one(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        uncache(14);
        let Some((_, pfn)) = cache(t, 14) else { return };
        let mut outcome = ShrinkOutcome::Kept;
        expect_essa(t, "reclaim of one page", &[(2, 1)], "free: volatile -> unused",
            || outcome = vm::with(|mm| mm.shrink_page(pfn)));
        check_is!(t, outcome, ShrinkOutcome::Freed, "shrink_page");
    }
}

ktest! {
    /// `mlock` of an uncached file range faults each page in: 1 ESSA per page (unused
    /// -> stable at allocation; the mlocked mapping keeps it stable, `follow_page` finds
    /// it stable already).
    fn mlock_costs_one_per_page(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const PAGES: u64 = 4;
        make_room();
        let space = space_with_tables();
        let (_, va) = map_file(&space, files::SCRATCH + 8, 0, PAGES, VmFlags::READ);
        expect_essa(t, "mlock of 4 uncached pages", &[(1, PAGES)],
            "unused -> stable at allocation, once per page; nothing else",
            || vm::with(|mm| mm.mlock(space.id(), va, PAGES * PAGE_SIZE)).expect("mlock"));
        for page in 0..PAGES {
            let pfn = vm::with(|mm| mm.follow_page(space.id(), page_va(va, page), Default::default()));
            check!(t, pfn.is_some(), "page {} not present after mlock", page);
        }
    }
}
