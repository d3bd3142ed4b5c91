//! `mm::mlock`: `mlock`/`munlock` on the machine, page states aside: `mlock_fixup` sets
//! `VM_LOCKED` on exactly the range (splitting VMAs) and the mapping's `mlocked` flag,
//! `make_pages_present` faults every page in without leaving a reference behind, locked
//! pages survive reclaim under memory pressure, and `munlock` clears `VM_LOCKED` but not
//! the mapping flag.
//!
//! Files: `SCRATCH + 10 ..= SCRATCH + 14`, one per test (the `mlocked` flag is sticky),
//! and `LARGE[1]` read-only for memory pressure.

use crate::support::{
    cached, check_is, is_mlocked, map_file, needs_mm, page_va, read_pages, vma_locked,
};
use alloc::vec;
use alloc::vec::Vec;
use kernel::arch::uaccess;
use kernel::mm::addr::{PAGE_SIZE, Pfn};
use kernel::mm::backing::files;
use kernel::mm::error::MmError;
use kernel::mm::mmap::MapSource;
use kernel::mm::rmap::RmapEntry;
use kernel::mm::vma::VmFlags;
use kernel::vm::{self, UserSpace};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("mm::mlock");

fn vma_count(space: &UserSpace) -> Option<usize> {
    vm::with(|mm| mm.space(space.id()).map(|s| s.vmas().len()))
}

/// The PTEs mapping `pfn`.
fn rmap(pfn: Pfn) -> Vec<RmapEntry> {
    vm::with(|mm| mm.rmap(pfn))
}

ktest! {
    /// `mlock` of the middle of a file mapping: the VMA splits in three, only the middle
    /// one is `VM_LOCKED`, the mapping is `mlocked`, and exactly the locked pages are
    /// present. Guards `set_locked` in `mlock_fixup` and its `set_mlocked` call.
    fn mlock_fixup_locks_exactly_the_range(t) {
        if !needs_mm(t) { return; }
        let file = files::SCRATCH + 10;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, 8, VmFlags::READ);
        check_is!(t, is_mlocked(m), Some(false), "before mlock");
        check_eq!(t, vm::with(|mm| mm.mlock(space.id(), page_va(va, 2), 4 * PAGE_SIZE)), Ok(()));
        check_eq!(t, vma_count(&space), Some(3));
        for page in 0..8 {
            let locked = (2..6).contains(&page);
            check_is!(t, vma_locked(&space, page_va(va, page)), Some(locked), "VM_LOCKED at page {}", page);
            check_is!(t, cached(m, page).is_some(), locked, "page {} present", page);
        }
        check_is!(t, is_mlocked(m), Some(true), "after mlock");
        check_eq!(t, vm::with(|mm| mm.mlock(space.id(), page_va(va, 6), 4 * PAGE_SIZE)), Err(MmError::NotMapped));
    }
}

ktest! {
    /// `make_pages_present` faults every page of the locked range in (one major fault
    /// each), maps it where the VMA says, locked, and leaves no reference behind (page
    /// cache + one mapper); afterwards reading the range takes no fault at all.
    fn make_pages_present_faults_every_page_in(t) {
        if !needs_mm(t) { return; }
        let file = files::SCRATCH + 11;
        const PAGES: u64 = 16;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, PAGES, VmFlags::READ);
        let before = vm::with(|mm| mm.stats());
        check_eq!(t, vm::with(|mm| mm.mlock(space.id(), va, PAGES * PAGE_SIZE)), Ok(()));
        let after = vm::with(|mm| mm.stats());
        check_eq!(t, after.major_faults, before.major_faults + PAGES);
        for page in 0..PAGES {
            let Some(pfn) = cached(m, page) else {
                check!(t, false, "page {} not present after mlock", page);
                continue;
            };
            let want = vec![RmapEntry { space: space.id(), va: page_va(va, page), locked: true }];
            check_is!(t, rmap(pfn), want, "mappings of page {}", page);
            let counts = vm::with(|mm| mm.page(pfn).map(|p| (p.refcount(), p.mapcount())));
            check_is!(t, counts, Some((2, 1)), "(refcount, mapcount) of page {}", page);
        }
        check_eq!(t, read_pages(&space, va, file, 0, PAGES), None);
        let reread = vm::with(|mm| mm.stats());
        check_eq!(t, (reread.major_faults, reread.minor_faults), (after.major_faults, after.minor_faults));
    }
}

ktest! {
    /// Locked pages are never reclaimed: while a locked mapping holds 16 pages, reading
    /// three times the page pool from the 8 MiB file (all of it on a larger pool) forces
    /// reclaim, and a reclaim of everything then ages and tries every page: it must
    /// refuse each locked one;
    /// afterwards every locked page is still the same frame, mapped, and reading it
    /// takes no fault and yields the file's bytes. Guards the `VM_LOCKED` refusal of
    /// `try_to_unmap` on the reclaim path.
    fn locked_pages_survive_reclaim_under_pressure(t) {
        if !needs_mm(t) { return; }
        let file = files::SCRATCH + 12;
        const PAGES: u64 = 16;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, PAGES, VmFlags::READ | VmFlags::LOCKED);
        let frames: Vec<Option<Pfn>> = (0..PAGES).map(|i| cached(m, i)).collect();
        check!(t, frames.iter().all(Option::is_some), "not all present after MAP_LOCKED: {:?}", frames);
        let before = vm::with(|mm| mm.stats());
        let pressure = vm::with(|mm| {
            let large = mm.open_file(files::LARGE[1])?;
            let size = mm.mapping(large).map_or(0, |l| l.file().size);
            let everything = mm.frames().usable_count();
            let end = size.min(3 * everything as u64 * PAGE_SIZE);
            let mut buf = vec![0u8; 64 << 10];
            let mut offset = 0;
            while offset < end {
                offset += mm.read_file(large, offset, &mut buf)? as u64;
            }
            // Then reclaim everything it can, so aging reaches the locked pages too.
            mm.reclaim(everything);
            Ok::<_, MmError>(offset / PAGE_SIZE)
        });
        let Ok(read) = pressure else {
            check!(t, false, "reading the large file: {:?}", pressure);
            return;
        };
        let after = vm::with(|mm| mm.stats());
        check!(t, after.reclaimed > before.reclaimed + read / 2, "no memory pressure after {read} pages: {:?} -> {:?}", before, after);
        check!(t, after.unmap_refused_locked >= before.unmap_refused_locked + PAGES,
            "reclaim did not try the locked pages: {:?} -> {:?}", before, after);
        for (page, pfn) in frames.iter().enumerate() {
            let page = page as u64;
            check_is!(t, cached(m, page), *pfn, "frame of page {}", page);
            if let Some(pfn) = *pfn {
                check!(t, rmap(pfn).iter().any(|e| e.space == space.id() && e.va == page_va(va, page)),
                    "page {} unmapped", page);
            }
        }
        check_eq!(t, read_pages(&space, va, file, 0, PAGES), None);
        let reread = vm::with(|mm| mm.stats());
        check_eq!(t, (reread.major_faults, reread.minor_faults), (after.major_faults, after.minor_faults));
    }
}

ktest! {
    /// `munlock` clears `VM_LOCKED` (the VMAs merge back, `try_to_unmap` succeeds) but
    /// not the mapping's `mlocked` flag (the seed: it is never cleared). Guards the
    /// unlock branch of `mlock_fixup`.
    fn munlock_clears_vm_locked_but_not_the_mapping_flag(t) {
        if !needs_mm(t) { return; }
        let file = files::SCRATCH + 13;
        let space = UserSpace::new().expect("space");
        let (m, va) = map_file(&space, file, 0, 4, VmFlags::READ);
        check_eq!(t, vm::with(|mm| mm.mlock(space.id(), page_va(va, 1), 2 * PAGE_SIZE)), Ok(()));
        let Some(pfn) = cached(m, 1) else {
            check!(t, false, "page 1 not present after mlock");
            return;
        };
        check_eq!(t, vm::with(|mm| mm.try_to_unmap(pfn)).is_err(), true);
        check_eq!(t, vm::with(|mm| mm.munlock(space.id(), page_va(va, 1), 2 * PAGE_SIZE)), Ok(()));
        check_eq!(t, vma_count(&space), Some(1));
        check_is!(t, vma_locked(&space, page_va(va, 1)), Some(false), "VM_LOCKED after munlock");
        check_is!(t, is_mlocked(m), Some(true), "mapping flag after munlock");
        check_eq!(t, vm::with(|mm| mm.try_to_unmap(pfn)), Ok(()));
        check_eq!(t, rmap(pfn), vec![]);
        check_eq!(t, read_pages(&space, va, file, 0, 4), None);
    }
}

ktest! {
    /// `mlock` of anonymous memory: every page is faulted in zero-filled (one anonymous
    /// fault each, writable VMA: no copy later), and no file mapping is involved; a
    /// range with a hole is refused without locking anything.
    fn mlock_of_anonymous_memory_and_of_a_hole(t) {
        if !needs_mm(t) { return; }
        const PAGES: u64 = 4;
        let space = UserSpace::new().expect("space");
        let va = vm::with(|mm| mm.mmap(space.id(), None, PAGES * PAGE_SIZE, VmFlags::READ | VmFlags::WRITE, MapSource::Anon))
            .expect("anonymous mmap");
        let before = vm::with(|mm| mm.stats());
        check_eq!(t, vm::with(|mm| mm.mlock(space.id(), va, PAGES * PAGE_SIZE)), Ok(()));
        let after = vm::with(|mm| mm.stats());
        check_eq!(t, after.anon_faults, before.anon_faults + PAGES);
        space.enter();
        let zeros: Vec<u64> = (0..PAGES).map(|p| uaccess::read_u64(page_va(va, p))).collect();
        uaccess::write_u64(va, 7);
        space.leave();
        check_eq!(t, zeros, vec![0; PAGES as usize]);
        let touched = vm::with(|mm| mm.stats());
        check_eq!(t, (touched.anon_faults, touched.cow_faults, touched.minor_faults, touched.major_faults),
            (after.anon_faults, after.cow_faults, after.minor_faults, after.major_faults));
        // A hole after the file mapping: nothing gets locked, the file is not mlocked.
        let (m, fva) = map_file(&space, files::SCRATCH + 14, 0, 2, VmFlags::READ);
        check_eq!(t, vm::with(|mm| mm.munmap(space.id(), page_va(fva, 1), PAGE_SIZE)), Ok(()));
        check_eq!(t, vm::with(|mm| mm.mlock(space.id(), fva, 2 * PAGE_SIZE)), Err(MmError::NotMapped));
        check_is!(t, vma_locked(&space, fva), Some(false), "VM_LOCKED after a refused mlock");
        check_is!(t, is_mlocked(m), Some(false), "mapping flag after a refused mlock");
    }
}
