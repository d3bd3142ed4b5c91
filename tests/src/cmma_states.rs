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
    POT_VOLATILE, STABLE, VOLATILE, cached, cached_state, check_is, device_bytes, flags_of,
    host_reclaim, lookup_and_release, map_file, model_counters, needs_mm_with_model, page_state,
    page_va, read_pages, restore_pattern, state_counters,
};
use kernel::arch::uaccess;
use kernel::cmma::backend::with_model;
use kernel::cmma::model::ReclaimOutcome;
use kernel::mm::addr::PAGE_SIZE;
use kernel::mm::backing::files;
use kernel::mm::error::MmError;
use kernel::mm::fault::FollowFlags;
use kernel::mm::mmap::MapSource;
use kernel::mm::page::PageFlags;
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
    /// A page mapped writable goes potentially volatile (ORC 4, series 4/6): a read
    /// fault in a shared writable mapping maps it writable at once (s390 without write
    /// notification), and a store then marks only the storage key. The host decides by
    /// that change bit: the page stored to is paged out, the clean one discarded, and
    /// both read back right. Guards the `writable_mapped` choice of the volatile kind
    /// (`page_check_writable`).
    fn writable_mapped_clean_page_goes_potentially_volatile(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 16;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, 2, VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED);
        check_is!(t, read_pages(&space, va, file, 0, 2), None, "file contents");
        for index in 0..2 {
            check_is!(t, cached_state(m, index), Some(POT_VOLATILE), "page {} mapped writable", index);
        }
        let notify = vm::with(|mm| mm.stats()).write_notify_faults;
        space.enter();
        uaccess::write_u64(va, 0x5157_4154_4553_0001);
        space.leave();
        check_is!(t, vm::with(|mm| mm.stats()).write_notify_faults, notify, "a store through a writable PTE faults");
        check_is!(t, cached_state(m, 0), Some(POT_VOLATILE), "stored to: the kernel does not know yet");
        check_is!(t, cached(m, 0).and_then(host_reclaim), Some(ReclaimOutcome::PagedOut), "stored-to page 0");
        check_is!(t, cached(m, 1).and_then(host_reclaim), Some(ReclaimOutcome::Discarded), "clean page 1");
        space.enter();
        let stored = uaccess::read_u64(va);
        space.leave();
        check_eq!(t, stored, 0x5157_4154_4553_0001);
        check_is!(t, read_pages(&space, page_va(va, 1), file, 1, 1), None, "page 1 read again");
        drop(space);
        check_eq!(t, vm::with(|mm| restore_pattern(mm, m, 0, 8)), Ok(()));
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
        drop(space);
        check_eq!(t, vm::with(|mm| restore_pattern(mm, m, 8, 8)), Ok(()));
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
                    // The read's end unlocks the page (refused: our reference).
                    mm.wait_on_page_locked(pfn);
                    mm.put_page(pfn); // ours; the page cache keeps its reference
                } else {
                    mm.put_page(pfn);
                    mm.unlock_page(pfn);
                }
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
    /// Dirty data is never lost. Pages 0-1 are read before the stores (mapped
    /// writable: potentially volatile, the stores mark the change bit), pages 2-3 are
    /// first touched by the stores (write faults: stable and dirty at once). The host
    /// keeps all four (pages them out). Written back they are clean and potentially
    /// volatile again, the host may discard them, and the data comes back from the
    /// backing store. Guards `dirty`, stability of a page when it is dirtied, the
    /// change bit's say in host reclaim of P pages, and the change-bit transfer before
    /// writeback (series 6/6).
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
            let want = if page < 2 { POT_VOLATILE } else { STABLE };
            check_is!(t, cached_state(m, FIRST + page), Some(want), "stored-to page {}", page);
            let outcome = cached(m, FIRST + page).and_then(host_reclaim);
            check_is!(t, outcome, Some(ReclaimOutcome::PagedOut), "host reclaim of stored-to page {}", page);
        }
        check_eq!(t, read_back(&space), expected);
        check_eq!(t, vm::with(|mm| mm.sync_mapping(m)), Ok(()));
        let device: alloc::vec::Vec<u64> = vm::with(|mm| {
            (0..PAGES)
                .map(|p| {
                    let bytes = device_bytes(mm, m, (FIRST + p) * PAGE_SIZE, 8);
                    u64::from_be_bytes(bytes.try_into().expect("8 bytes"))
                })
                .collect()
        });
        check_is!(t, device, expected, "on the backing device");
        let faults = with_model(|model, _| model.counters().discard_faults).unwrap_or(0);
        for page in 0..PAGES {
            let Some(pfn) = cached(m, FIRST + page) else {
                check!(t, false, "page {} left the page cache", page);
                continue;
            };
            check_is!(t, page_state(pfn).1, "potentially volatile", "written back page {}", page);
            let outcome = host_reclaim(pfn);
            check_is!(t, outcome, Some(ReclaimOutcome::Discarded), "host reclaim of clean page {}", page);
        }
        check_eq!(t, read_back(&space), expected);
        let refaults = with_model(|model, _| model.counters().discard_faults).unwrap_or(0);
        check_is!(t, refaults, faults + PAGES, "each discarded page faulted once");
        drop(space);
        check_eq!(t, vm::with(|mm| restore_pattern(mm, m, FIRST * PAGE_SIZE, (PAGES * PAGE_SIZE) as usize)), Ok(()));
    }
}

/// The file the tests below share, each at its own pages (never mlocked, so no sticky
/// flag carries over).
const RULES_FILE: u32 = files::SCRATCH + 17;

ktest! {
    /// A page under writeback stays stable (1/6 `check_bits`: `PageWriteback`): as
    /// `writepage` does, the page is unlocked while the write is in flight, and its
    /// last release then finds nothing but the writeback to refuse the volatile state.
    /// The write is real and still in flight while the host tries: the host may page
    /// the page out, never discard it; the end of the writeback makes it volatile.
    /// Guards the `writeback` condition.
    fn page_under_writeback_stays_stable(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const PAGE: u64 = 8;
        let data = [0xb7u8; 8];
        let started = vm::with(|mm| {
            let m = mm.open_file(RULES_FILE)?;
            mm.write_file(m, PAGE * PAGE_SIZE, &data)?;
            let pfn = mm.find_lock_page(m, PAGE).ok_or(MmError::NoSuchObject)?;
            let dirty = mm.start_writeback(pfn)?;
            let in_flight = mm.io_in_flight(pfn);
            mm.put_page(pfn);
            Ok::<_, MmError>((m, pfn, dirty, in_flight))
        });
        let Ok((m, pfn, dirty, in_flight)) = started else {
            check!(t, false, "starting the writeback: {:?}", started);
            return;
        };
        check!(t, dirty, "the written page was not dirty");
        check!(t, in_flight, "the write ended before anyone waited for it");
        check!(t, flags_of(pfn).contains(PageFlags::WRITEBACK), "not under writeback");
        check_is!(t, page_state(pfn), STABLE, "under writeback, unlocked, only the cache's reference");
        check_is!(t, host_reclaim(pfn), Some(ReclaimOutcome::PagedOut), "host reclaim during the writeback");
        let written = vm::with(|mm| {
            let result = mm.wait_on_page_writeback(pfn);
            result.map(|()| device_bytes(mm, m, PAGE * PAGE_SIZE, 8))
        });
        check_eq!(t, written, Ok(data.to_vec()));
        check_is!(t, page_state(pfn), VOLATILE, "written back");
        check_eq!(t, vm::with(|mm| restore_pattern(mm, m, PAGE * PAGE_SIZE, 8)), Ok(()));
    }
}

ktest! {
    /// A page truncated from the page cache while someone still holds it stays stable
    /// (1/6 `check_bits`: `page_mapping() == NULL`): the holder's reference is the only
    /// one left and the counts agree, so only the missing mapping refuses. Guards the
    /// `truncated` condition.
    fn truncated_page_stays_stable(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const PAGE: u64 = 60;
        let mut byte = [0u8; 1];
        let held = vm::with(|mm| {
            let m = mm.open_file(RULES_FILE)?;
            mm.read_file(m, PAGE * PAGE_SIZE, &mut byte)?;
            let pfn = mm.find_get_page(m, PAGE).ok_or(MmError::NoSuchObject)?;
            Ok::<_, MmError>((m, pfn))
        });
        let Ok((m, pfn)) = held else {
            check!(t, false, "reading the page: {:?}", held);
            return;
        };
        check_eq!(t, vm::with(|mm| mm.truncate_inode_pages(m, PAGE)), Ok(()));
        check_is!(t, cached(m, PAGE), None, "still cached");
        check_is!(t, page_state(pfn), STABLE, "truncated, still held");
        check_is!(t, host_reclaim(pfn), Some(ReclaimOutcome::PagedOut), "host reclaim of the held page");
        vm::with(|mm| mm.put_page(pfn));
        check!(t, vm::with(|mm| mm.frames().is_free(pfn)), "the last release frees the frame");
    }
}

ktest! {
    /// `get_user_pages` with a reference (`FOLL_GET`) makes the page stable (1/6
    /// `follow_page`): a mapped page the host discarded is forced out and faulted in
    /// again, and the pinned page is stable and holds the file's bytes. Guards the
    /// `flags.get` stabilisation of `follow_page`.
    fn pinned_page_is_stable(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const PAGE: u64 = 16;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, RULES_FILE, PAGE, 1, VmFlags::READ);
        check_eq!(t, read_pages(&space, va, RULES_FILE, PAGE, 1), None);
        check_is!(t, cached_state(m, PAGE), Some(VOLATILE), "precondition");
        check_is!(t, cached(m, PAGE).and_then(host_reclaim), Some(ReclaimOutcome::Discarded), "host reclaim");
        let discards = vm::with(|mm| mm.stats()).discards;
        let pinned = vm::with(|mm| mm.get_user_pages(space.id(), va, 1, false, true));
        let Ok(pinned) = pinned else {
            check!(t, false, "get_user_pages: {:?}", pinned);
            return;
        };
        check_is!(t, vm::with(|mm| mm.stats()).discards, discards + 1, "discards");
        check_is!(t, pinned.first().map(|&p| page_state(p)), Some(STABLE), "pinned page");
        check_eq!(t, read_pages(&space, va, RULES_FILE, PAGE, 1), None);
        vm::with(|mm| mm.release_pages(&pinned));
        check_is!(t, cached_state(m, PAGE), Some(VOLATILE), "released");
    }
}

ktest! {
    /// The source of a copy on write is made stable before it is copied (1/6: early
    /// COW in `do_no_page`). The cached page was discarded by the host; a store into
    /// a private mapping of it copies inside the fault handler, with DAT off, where a
    /// read of the discarded frame would not fault: the source is found discarded,
    /// dropped and read again, and the private copy holds the store and the file's
    /// bytes, never the host's poison. Guards `make_stable` in `cow_copy`.
    fn copy_on_write_source_is_made_stable(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const PAGE: u64 = 20;
        let mut byte = [0u8; 1];
        let m = vm::with(|mm| {
            let m = mm.open_file(RULES_FILE)?;
            mm.read_file(m, PAGE * PAGE_SIZE, &mut byte)?;
            Ok::<_, MmError>(m)
        });
        let Ok(m) = m else {
            check!(t, false, "reading the page: {:?}", m);
            return;
        };
        check_is!(t, cached_state(m, PAGE), Some(VOLATILE), "precondition");
        check_is!(t, cached(m, PAGE).and_then(host_reclaim), Some(ReclaimOutcome::Discarded), "host reclaim");
        let before = vm::with(|mm| mm.stats());
        let space = UserSpace::new().expect("space");
        let (_, va) = map_file(&space, RULES_FILE, PAGE, 1, VmFlags::READ | VmFlags::WRITE);
        space.enter();
        uaccess::write_u64(va, 0xc0c0_c0c0_c0c0_c0c0);
        let mut copy = alloc::vec![0u8; PAGE_SIZE as usize];
        uaccess::read_bytes(va, &mut copy);
        space.leave();
        let after = vm::with(|mm| mm.stats());
        check_is!(t, after.discards, before.discards + 1, "discards");
        check_is!(t, after.cow_faults, before.cow_faults + 1, "copies");
        check_eq!(t, &copy[..8], &[0xc0; 8]);
        check_eq!(t, kernel::mm::backing::check_pattern(RULES_FILE, PAGE * PAGE_SIZE + 8, &copy[8..]), Ok(()));
    }
}

ktest! {
    /// `write_file` makes the page stable before it copies into it and dirties it: a
    /// cached volatile page is stable and dirty afterwards, and the host pages it out
    /// instead of discarding it. Guards `make_stable` in `write_file`.
    fn write_file_makes_the_page_stable_before_dirtying_it(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const PAGE: u64 = 24;
        let data = [0xe5u8; 16];
        let mut byte = [0u8; 1];
        let m = vm::with(|mm| {
            let m = mm.open_file(RULES_FILE)?;
            mm.read_file(m, PAGE * PAGE_SIZE, &mut byte)?;
            Ok::<_, MmError>(m)
        });
        let Ok(m) = m else {
            check!(t, false, "reading the page: {:?}", m);
            return;
        };
        check_is!(t, cached_state(m, PAGE), Some(VOLATILE), "precondition");
        let written = vm::with(|mm| mm.write_file(m, PAGE * PAGE_SIZE + 100, &data));
        check_eq!(t, written, Ok(data.len()));
        check_is!(t, cached_state(m, PAGE), Some(STABLE), "written, dirty");
        check_is!(t, cached(m, PAGE).and_then(host_reclaim), Some(ReclaimOutcome::PagedOut), "host reclaim");
        let mut back = [0u8; 16];
        check_eq!(t, vm::with(|mm| mm.read_file(m, PAGE * PAGE_SIZE + 100, &mut back)), Ok(16));
        check_eq!(t, back, data);
        check_eq!(t, vm::with(|mm| restore_pattern(mm, m, PAGE * PAGE_SIZE + 100, 16)), Ok(()));
    }
}

ktest! {
    /// A page `page_discard` is removing is never hinted again (1/6 `check_bits`:
    /// `PageDiscarded`): a potentially volatile page (mapped writable) the host
    /// discarded is found by a lookup; the release of its last mapping is the moment
    /// every other condition would let it go volatile, and no ORC 3 or 4 is issued.
    /// Guards the `discarded` condition.
    fn page_being_discarded_gets_no_hint(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const PAGE: u64 = 28;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, RULES_FILE, PAGE, 1, VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED);
        check_eq!(t, read_pages(&space, va, RULES_FILE, PAGE, 1), None);
        check_is!(t, cached_state(m, PAGE), Some(POT_VOLATILE), "precondition");
        check_is!(t, cached(m, PAGE).and_then(host_reclaim), Some(ReclaimOutcome::Discarded), "host reclaim");
        let hints = || with_model(|model, _| { let o = model.counters().essa_by_orc; o[3] + o[4] }).unwrap_or(0);
        let (hints0, discards0) = (hints(), vm::with(|mm| mm.stats()).discards);
        check_is!(t, vm::with(|mm| mm.find_get_page(m, PAGE)), None, "lookup of the discarded page");
        check_is!(t, vm::with(|mm| mm.stats()).discards, discards0 + 1, "discards");
        check_is!(t, hints(), hints0, "ORC 3/4 issued while the page was discarded");
        check_eq!(t, read_pages(&space, va, RULES_FILE, PAGE, 1), None);
    }
}

ktest! {
    /// Stores through a writable mapping survive its removal (series 6/6, hazard 1):
    /// the page is potentially volatile and only its storage-key change bit knows of
    /// the store; the last unmap moves the bit into the dirty flag and makes the page
    /// stable *before* clearing the bit, so the host pages it out and the store reaches
    /// the file. Guards `make_stable` in the change-bit transfer of `page_remove_rmap`.
    fn stores_survive_the_last_unmap(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const PAGE: u64 = 32;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, RULES_FILE, PAGE, 1, VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED);
        check_eq!(t, read_pages(&space, va, RULES_FILE, PAGE, 1), None);
        check_is!(t, cached_state(m, PAGE), Some(POT_VOLATILE), "precondition");
        space.enter();
        uaccess::write_u64(va, 0x6a6a_6a6a_0000_0001);
        space.leave();
        check_eq!(t, vm::with(|mm| mm.munmap(space.id(), va, PAGE_SIZE)), Ok(()));
        check_is!(t, cached_state(m, PAGE), Some(STABLE), "after the last unmap");
        check_is!(t, cached(m, PAGE).and_then(host_reclaim), Some(ReclaimOutcome::PagedOut), "host reclaim");
        check_eq!(t, vm::with(|mm| mm.sync_mapping(m)), Ok(()));
        let device = vm::with(|mm| device_bytes(mm, m, PAGE * PAGE_SIZE, 8));
        check_eq!(t, device, 0x6a6a_6a6a_0000_0001u64.to_be_bytes().to_vec());
        check_eq!(t, vm::with(|mm| restore_pattern(mm, m, PAGE * PAGE_SIZE, 8)), Ok(()));
    }
}

ktest! {
    /// Writeback of a page stored to through a writable mapping makes it stable before
    /// it clears the change bit (series 6/6, hazard 1, in `clear_page_dirty_for_io`):
    /// from then on the host keeps the page although its change bit is clear.
    fn writeback_makes_a_stored_to_page_stable_first(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const PAGE: u64 = 36;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, RULES_FILE, PAGE, 1, VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED);
        check_eq!(t, read_pages(&space, va, RULES_FILE, PAGE, 1), None);
        check_is!(t, cached_state(m, PAGE), Some(POT_VOLATILE), "precondition");
        space.enter();
        uaccess::write_u64(va, 0x7b7b_7b7b_0000_0002);
        space.leave();
        let Some(pfn) = cached(m, PAGE) else {
            check!(t, false, "page not cached");
            return;
        };
        let dirty = vm::with(|mm| {
            mm.get_page(pfn);
            mm.lock_page(pfn);
            mm.clear_page_dirty_for_io(pfn)
        });
        check!(t, dirty, "the store did not make the page dirty");
        check_is!(t, page_state(pfn), STABLE, "change bit moved into the dirty flag");
        check_is!(t, host_reclaim(pfn), Some(ReclaimOutcome::PagedOut), "host reclaim before the write");
        let written = vm::with(|mm| {
            // `clear_page_dirty_for_io` took the dirty flag: the write is owed.
            mm.set_page_dirty(pfn);
            let result = mm.start_writeback(pfn).and_then(|_| mm.wait_on_page_writeback(pfn));
            mm.put_page(pfn);
            result.map(|()| device_bytes(mm, m, PAGE * PAGE_SIZE, 8))
        });
        check_eq!(t, written, Ok(0x7b7b_7b7b_0000_0002u64.to_be_bytes().to_vec()));
        drop(space);
        check_eq!(t, vm::with(|mm| restore_pattern(mm, m, PAGE * PAGE_SIZE, 8)), Ok(()));
    }
}

ktest! {
    /// A page that gets a writable PTE but may not be potentially volatile is made
    /// stable (4/6 `page_check_writable`): a volatile page held by an unknown reference
    /// is mapped writable by a read fault; a store then cannot land on a page the host
    /// may discard whatever its change bit says. Guards the stabilisation of
    /// `WritableRmapAdd` refusals in the page-state layer.
    fn refused_page_under_a_writable_pte_is_stable(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        const PAGE: u64 = 40;
        let mut byte = [0u8; 1];
        let held = vm::with(|mm| {
            let m = mm.open_file(RULES_FILE)?;
            mm.read_file(m, PAGE * PAGE_SIZE, &mut byte)?;
            let pfn = mm.mapping(m).and_then(|c| c.lookup(PAGE)).ok_or(MmError::NoSuchObject)?;
            mm.get_page(pfn);
            Ok::<_, MmError>((m, pfn))
        });
        let Ok((m, pfn)) = held else {
            check!(t, false, "reading the page: {:?}", held);
            return;
        };
        check_is!(t, page_state(pfn), VOLATILE, "held without a state change");
        let space = UserSpace::new().expect("space");
        let (_, va) = map_file(&space, RULES_FILE, PAGE, 1, VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED);
        check_eq!(t, read_pages(&space, va, RULES_FILE, PAGE, 1), None);
        check_is!(t, page_state(pfn), STABLE, "mapped writable with an unknown reference");
        space.enter();
        uaccess::write_u64(va, 0x4646_4646_4646_4646);
        space.leave();
        check_is!(t, host_reclaim(pfn), Some(ReclaimOutcome::PagedOut), "host reclaim after the store");
        space.enter();
        let back = uaccess::read_u64(va);
        space.leave();
        check_eq!(t, back, 0x4646_4646_4646_4646);
        vm::with(|mm| mm.put_page(pfn));
        drop(space);
        check_eq!(t, vm::with(|mm| restore_pattern(mm, m, PAGE * PAGE_SIZE, 8)), Ok(()));
    }
}
