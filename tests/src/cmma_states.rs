//! `cmma::states`: which page states the page-state layer gives page-cache pages on the
//! machine, observed through the host model's per-frame state and `Page::last_state`.
//! Each forbidding condition of `page_make_volatile` keeps a page stable (every such
//! test first shows the same page going volatile without the condition, so it fails
//! if the condition is dropped); a clean page mapped read-only goes volatile, mapped
//! writable potentially volatile; pages are made stable before use, a discarded page
//! is dropped and read again, and dirty data is never lost.
//!
//! Files: `SCRATCH + 15 ..= SCRATCH + 24`, one per test (the mapping flags are sticky).

use crate::support::{
    POT_VOLATILE, STABLE, VOLATILE, cached, cached_state, check_is, host_reclaim,
    lookup_and_release, map_file, model_counters, needs_mm_with_model, page_state, page_va,
    read_pages, state_counters,
};
use kernel::arch::uaccess;
use kernel::cmma::backend::with_model;
use kernel::cmma::essa::ContentState;
use kernel::cmma::model::ReclaimOutcome;
use kernel::mm::addr::PAGE_SIZE;
use kernel::mm::backing::files;
use kernel::mm::error::MmError;
use kernel::mm::fault::FollowFlags;
use kernel::mm::mmap::MapSource;
use kernel::mm::vma::VmFlags;
use kernel::vm::{self, UserSpace};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("cmma::states");

ktest! {
    /// A clean page-cache page mapped read-only becomes volatile (ORC 3). Guards the
    /// volatile attempts after readpage / at rmap add and the reference count check
    /// (`mapcount + page cache + caller == refcount`) in `volatile_verdict`.
    fn clean_read_only_page_goes_volatile(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 15;
        let space = UserSpace::new().expect("space");
        let before = state_counters();
        let (m, va) = map_file(&space, file, 0, 4, VmFlags::READ);
        check_eq!(t, read_pages(&space, va, file, 0, 4), None);
        for index in 0..4 {
            check_is!(t, cached_state(m, index), Some(VOLATILE), "page {}", index);
        }
        check!(t, state_counters().made_volatile >= before.made_volatile + 4, "{:?}", state_counters());
    }
}

ktest! {
    /// A page mapped writable goes potentially volatile (ORC 4, series 4/6) once it is
    /// clean again: written through a shared mapping (dirty: stable), written back
    /// (`PG_writable` still set: P); a page only read in the same mapping is V.
    /// Guards the `writable_mapped` choice of the volatile kind.
    fn writable_mapped_clean_page_goes_potentially_volatile(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 16;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, 2, VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED);
        // Read first, so the store takes the write-notify path of a mapped page.
        check_is!(t, read_pages(&space, va, file, 0, 2), None, "file contents");
        space.enter();
        uaccess::write_u64(va, 0x5157_4154_4553_0001);
        space.leave();
        check_is!(t, cached_state(m, 0), Some(STABLE), "dirty after the store");
        check_eq!(t, cached_state(m, 1), Some(VOLATILE));
        let synced = vm::with(|mm| mm.sync_mapping(m));
        check_eq!(t, synced, Ok(()));
        check_is!(t, cached_state(m, 0), Some(POT_VOLATILE), "written back, mapped writable");
        check_eq!(t, cached_state(m, 1), Some(VOLATILE));
    }
}

ktest! {
    /// A dirty page stays stable; written back it goes volatile. Guards the `dirty`
    /// condition: without it the release after `write_file` makes the page volatile.
    fn dirty_page_stays_stable(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 17;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, 1, VmFlags::READ);
        check_eq!(t, read_pages(&space, va, file, 0, 1), None);
        check_is!(t, cached_state(m, 0), Some(VOLATILE), "clean: precondition");
        let written = vm::with(|mm| mm.write_file(m, 8, &[0xd1; 8]));
        check_eq!(t, written, Ok(8));
        check_is!(t, cached_state(m, 0), Some(STABLE), "dirty");
        lookup_and_release(m, 0);
        check_is!(t, cached_state(m, 0), Some(STABLE), "dirty, after a release");
        check_eq!(t, vm::with(|mm| mm.sync_mapping(m)), Ok(()));
        check_is!(t, cached_state(m, 0), Some(VOLATILE), "clean again");
    }
}

ktest! {
    /// A locked page stays stable: the release of our reference while the page is
    /// locked is refused, the unlock then makes it volatile. Guards the `locked`
    /// condition.
    fn locked_page_stays_stable(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 18;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, 1, VmFlags::READ);
        check_eq!(t, read_pages(&space, va, file, 0, 1), None);
        check_is!(t, cached_state(m, 0), Some(VOLATILE), "precondition");
        let Some(pfn) = vm::with(|mm| mm.find_lock_page(m, 0)) else {
            check!(t, false, "page 0 not cached");
            return;
        };
        vm::with(|mm| mm.put_page(pfn));
        check_is!(t, page_state(pfn), STABLE, "locked, only page cache and mapper references left");
        vm::with(|mm| mm.unlock_page(pfn));
        check_is!(t, page_state(pfn), VOLATILE, "unlocked");
    }
}

ktest! {
    /// A page that is not up to date stays stable: a page added to the cache and
    /// unlocked without `readpage` is refused, the same sequence with `readpage`
    /// goes volatile. Guards the `!uptodate` condition.
    fn not_uptodate_page_stays_stable(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 19;
        let pages = vm::with(|mm| {
            let m = mm.open_file(file)?;
            let mut add = |index: u64, read: bool| {
                let pfn = mm.alloc_page()?;
                mm.add_to_page_cache(pfn, m, index)?;
                if read {
                    mm.readpage(pfn)?;
                }
                mm.put_page(pfn); // ours; the page cache keeps its reference
                mm.unlock_page(pfn);
                Ok::<_, MmError>(pfn)
            };
            let read = add(1, true)?;
            let unread = add(2, false)?;
            Ok::<_, MmError>((m, read, unread))
        });
        let Ok((m, read, unread)) = pages else {
            check!(t, false, "setting up the cache pages: {:?}", pages);
            return;
        };
        check_is!(t, page_state(read), VOLATILE, "read: precondition");
        check_is!(t, page_state(unread), STABLE, "never read");
        // The unread page holds no file data: take it out of the cache again.
        check_eq!(t, vm::with(|mm| mm.truncate_inode_pages(m, 2)), Ok(()));
    }
}

ktest! {
    /// A page isolated from the LRU stays stable; back on the LRU it goes volatile.
    /// Guards the `!on_lru` condition.
    fn page_off_the_lru_stays_stable(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 20;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, 1, VmFlags::READ);
        check_eq!(t, read_pages(&space, va, file, 0, 1), None);
        check_is!(t, cached_state(m, 0), Some(VOLATILE), "precondition");
        let Some(pfn) = vm::with(|mm| mm.find_get_page(m, 0)) else {
            check!(t, false, "page 0 not cached");
            return;
        };
        vm::with(|mm| {
            mm.lru_del(pfn);
            mm.put_page(pfn);
        });
        check_is!(t, page_state(pfn), STABLE, "off the LRU");
        vm::with(|mm| {
            mm.get_page(pfn);
            mm.lru_cache_add(pfn);
            mm.put_page(pfn);
        });
        check_is!(t, page_state(pfn), VOLATILE, "back on the LRU");
    }
}

ktest! {
    /// Anonymous memory stays stable: there is no backing store to reload it from
    /// (no swap). Guards the `anon` condition together with `dirty` (anonymous pages
    /// are always dirty here, so the test fails only if both are dropped, or if an
    /// anonymous page is made volatile by any other path).
    fn anonymous_page_stays_stable(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let space = UserSpace::new().expect("space");
        let va = vm::with(|mm| mm.mmap(space.id(), None, 2 * PAGE_SIZE, VmFlags::READ | VmFlags::WRITE, MapSource::Anon))
            .expect("anonymous mmap");
        space.enter();
        uaccess::write_u64(va, 0xa0a0);
        let zero = uaccess::read_u64(page_va(va, 1));
        space.leave();
        check_eq!(t, zero, 0);
        for page in 0..2 {
            let pfn = vm::with(|mm| mm.follow_page(space.id(), page_va(va, page), FollowFlags::default()));
            check!(t, pfn.is_some(), "page {} not present", page);
            if let Some(pfn) = pfn {
                check_is!(t, page_state(pfn), STABLE, "anonymous page {}", page);
            }
        }
    }
}

ktest! {
    /// A reference the page-state layer cannot account for keeps the page stable: while
    /// we hold a `find_get_page` reference, mapping the page in a second space does not
    /// make it volatile; dropping the reference does. Guards the reference count check.
    fn unknown_reference_keeps_page_stable(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 21;
        let first = UserSpace::new().expect("space");
        let (m, va) = map_file(&first, file, 0, 1, VmFlags::READ);
        check_eq!(t, read_pages(&first, va, file, 0, 1), None);
        check_is!(t, cached_state(m, 0), Some(VOLATILE), "precondition");
        let Some(pfn) = vm::with(|mm| mm.find_get_page(m, 0)) else {
            check!(t, false, "page 0 not cached");
            return;
        };
        let second = UserSpace::new().expect("space");
        let (_, va2) = map_file(&second, file, 0, 1, VmFlags::READ);
        check_eq!(t, read_pages(&second, va2, file, 0, 1), None);
        check_eq!(t, vm::with(|mm| mm.rmap(pfn).len()), 2);
        check_is!(t, page_state(pfn), STABLE, "mapped again while we hold a reference");
        vm::with(|mm| mm.put_page(pfn));
        check_is!(t, page_state(pfn), VOLATILE, "reference dropped");
    }
}

ktest! {
    /// Pages of a mapping that was ever mlocked stay stable (the seed): volatile before
    /// `mlock`, stable after it and after `munlock`, whatever releases follow. Guards
    /// the `mapping_mlocked` condition (cmma::mlock proves the seed rule by rule).
    fn mlocked_mapping_keeps_pages_stable(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 22;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, 2, VmFlags::READ);
        check_eq!(t, read_pages(&space, va, file, 0, 2), None);
        check_is!(t, cached_state(m, 0), Some(VOLATILE), "precondition");
        let before = state_counters();
        let locked = vm::with(|mm| {
            mm.mlock(space.id(), va, 2 * PAGE_SIZE)?;
            mm.munlock(space.id(), va, 2 * PAGE_SIZE)
        });
        check_eq!(t, locked, Ok(()));
        for index in 0..2 {
            lookup_and_release(m, index);
            check_is!(t, cached_state(m, index), Some(STABLE), "page {}", index);
        }
        check!(t, state_counters().refused_mlocked >= before.refused_mlocked + 2, "{:?}", state_counters());
    }
}

ktest! {
    /// Pages are made stable before use: `find_get_page` on a volatile page issues
    /// exactly one ESSA (ORC 6, stable if resident) and leaves it stable while the
    /// reference is held; the release makes it volatile again. Guards `make_stable`
    /// in `find_get_page`.
    fn lookup_makes_a_volatile_page_stable(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 23;
        let mut byte = [0u8; 1];
        let read = vm::with(|mm| {
            let m = mm.open_file(file)?;
            mm.read_file(m, 0, &mut byte)?;
            Ok::<_, MmError>(m)
        });
        let Ok(m) = read else {
            check!(t, false, "read_file: {:?}", read);
            return;
        };
        check_is!(t, cached_state(m, 0), Some(VOLATILE), "precondition");
        let orc6 = || with_model(|model, _| model.counters().essa_by_orc[6]).unwrap_or(0);
        let (essa0, orc6_0) = (model_counters().essa_total(), orc6());
        let Some(pfn) = vm::with(|mm| mm.find_get_page(m, 0)) else {
            check!(t, false, "page 0 not cached");
            return;
        };
        check_eq!(t, model_counters().essa_total(), essa0 + 1);
        check_eq!(t, orc6(), orc6_0 + 1);
        check_is!(t, page_state(pfn), STABLE, "while referenced");
        vm::with(|mm| mm.put_page(pfn));
        check_is!(t, page_state(pfn), VOLATILE, "released");
    }
}

ktest! {
    /// A page-cache hit on a stable page issues no ESSA (the layer remembers the last
    /// state it set). Guards the `last_state == STABLE` shortcut of `make_stable`.
    fn hit_on_a_stable_page_issues_no_essa(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 23;
        let mut byte = [0u8; 1];
        let looked_up = vm::with(|mm| {
            let m = mm.open_file(file)?;
            mm.read_file(m, PAGE_SIZE, &mut byte)?;
            let pfn = mm.find_get_page(m, 1).ok_or(MmError::NoSuchObject)?;
            Ok::<_, MmError>((m, pfn))
        });
        let Ok((m, pfn)) = looked_up else {
            check!(t, false, "read_cache_page: {:?}", looked_up);
            return;
        };
        check_is!(t, page_state(pfn), STABLE, "after the first lookup");
        let (essa0, skipped0) = (model_counters().essa_total(), state_counters().skipped);
        let again = vm::with(|mm| mm.find_get_page(m, 1));
        check_eq!(t, again, Some(pfn));
        check_is!(t, model_counters().essa_total(), essa0, "ESSA on a hit of a stable page");
        check_eq!(t, state_counters().skipped, skipped0 + 1);
        vm::with(|mm| mm.release_pages(&[pfn, pfn]));
        check_is!(t, page_state(pfn), VOLATILE, "released");
    }
}

ktest! {
    /// A page the host discarded is dropped by `find_get_page` (`page_discard`) and
    /// read again from the backing store on the next access: the contents are the
    /// file's, `discards` and major faults grow, and no discard fault was needed.
    /// Guards the discard check of `find_get_page`.
    fn discarded_page_is_dropped_and_read_again(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 24;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, 2, VmFlags::READ);
        check_eq!(t, read_pages(&space, va, file, 0, 2), None);
        let Some(pfn) = cached(m, 1) else {
            check!(t, false, "page 1 not cached");
            return;
        };
        check_is!(t, page_state(pfn), VOLATILE, "precondition");
        check_eq!(t, host_reclaim(pfn), Some(ReclaimOutcome::Discarded));
        let stats = vm::with(|mm| mm.stats());
        let faults = with_model(|model, _| model.counters().discard_faults);
        check_eq!(t, vm::with(|mm| mm.find_get_page(m, 1)), None);
        let after = vm::with(|mm| mm.stats());
        check_eq!(t, after.discards, stats.discards + 1);
        check_is!(t, cached(m, 1), None, "still in the page cache");
        check_eq!(t, read_pages(&space, va, file, 0, 2), None);
        let reread = vm::with(|mm| mm.stats());
        check_eq!(t, reread.major_faults, after.major_faults + 1);
        check_eq!(t, with_model(|model, _| model.counters().discard_faults), faults);
    }
}

ktest! {
    /// Dirty data is never lost. Pages written through a shared mapping are stable at
    /// once, so host reclaim pages them out instead of discarding them: pages 0-1 were
    /// read before the store (write-notify fault), pages 2-3 are first touched by the
    /// store (write fault on a missing page). Written back they go potentially volatile,
    /// the host may discard them, and the data comes back from the backing store.
    /// Guards `dirty`, stability of a page when it is dirtied, and the change-bit
    /// transfer before writeback (series 6/6).
    fn dirty_data_is_never_lost(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 16;
        const FIRST: u64 = 32;
        const PAGES: u64 = 4;
        let seed = t.seed();
        let value = |page: u64| 0xd1d1_0000_0000_0000 | (seed & 0xffff_ffff) << 8 | page;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, FIRST, PAGES, VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED);
        check_is!(t, read_pages(&space, va, file, FIRST, 2), None, "file contents");
        space.enter();
        for page in 0..PAGES {
            uaccess::write_u64(page_va(va, page), value(page));
        }
        space.leave();
        let read_back = |space: &UserSpace| {
            space.enter();
            let got: alloc::vec::Vec<u64> = (0..PAGES).map(|p| uaccess::read_u64(page_va(va, p))).collect();
            space.leave();
            got
        };
        let expected: alloc::vec::Vec<u64> = (0..PAGES).map(value).collect();
        for page in 0..PAGES {
            check_is!(t, cached_state(m, FIRST + page), Some(STABLE), "dirty page {}", page);
            let outcome = cached(m, FIRST + page).and_then(host_reclaim);
            check_is!(t, outcome, Some(ReclaimOutcome::PagedOut), "host reclaim of dirty page {}", page);
            lookup_and_release(m, FIRST + page);
            check_is!(t, cached_state(m, FIRST + page), Some(STABLE), "dirty page {} after a release", page);
        }
        check_eq!(t, read_back(&space), expected);
        check_eq!(t, vm::with(|mm| mm.sync_mapping(m)), Ok(()));
        let faults = with_model(|model, _| model.counters().discard_faults).unwrap_or(0);
        for page in 0..PAGES {
            let Some(pfn) = cached(m, FIRST + page) else {
                check!(t, false, "page {} left the page cache", page);
                continue;
            };
            check_is!(t, page_state(pfn).1, "potentially volatile", "written back page {}", page);
            // A frame the host had paged out is dropped by ORC 4 already (Pp does not exist).
            let outcome = host_reclaim(pfn);
            check!(t, matches!(outcome, Some(ReclaimOutcome::Discarded | ReclaimOutcome::NotResident)),
                "host reclaim of clean page {}: {:?}", page, outcome);
            let content = with_model(|model, _| model.state(pfn.as_u64()).1);
            check_is!(t, content, Some(ContentState::Zero), "page {} discarded", page);
        }
        check_eq!(t, read_back(&space), expected);
        let refaults = with_model(|model, _| model.counters().discard_faults).unwrap_or(0);
        check_is!(t, refaults, faults + PAGES, "each discarded page faulted once");
    }
}
