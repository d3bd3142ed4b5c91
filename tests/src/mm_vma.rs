//! `mm::vma`: VMA surgery observed on the machine: `mmap`, `munmap`, `mprotect`,
//! `mlock` and `munlock` split and merge VMAs (count and flags per page), the page
//! tables follow (what is unmapped faults, what is replaced shows the new backing), and
//! bad arguments come back as errors, never panics.

use crate::support::{RW, map_anon, needs_mm, page_va};
use alloc::vec::Vec;
use kernel::arch::{kspace, uaccess};
use kernel::mm::addr::{PAGE_SIZE, VirtAddr};
use kernel::mm::backing::{files, pattern};
use kernel::mm::error::MmError;
use kernel::mm::manager::{USER_END, USER_START};
use kernel::mm::mmap::MapSource;
use kernel::mm::vma::VmFlags;
use kernel::vm::{self, UserSpace};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("mm::vma");

const LOCKED_RW: VmFlags = RW.union(VmFlags::LOCKED);

/// The number of VMAs and the flags of the VMA at each of `pages` pages from `start`
/// (`None` where no VMA is).
fn layout(space: &UserSpace, start: VirtAddr, pages: u64) -> (usize, Vec<Option<VmFlags>>) {
    vm::with(|mm| {
        let vmas = mm.space(space.id()).expect("space").vmas();
        let flags = (0..pages)
            .map(|i| vmas.find(page_va(start, i)).map(|v| v.flags()))
            .collect();
        (vmas.len(), flags)
    })
}

/// `Some(flags)` for each page of `runs` (count, flags) in order.
fn expected(runs: &[(u64, Option<VmFlags>)]) -> Vec<Option<VmFlags>> {
    runs.iter()
        .flat_map(|&(n, f)| (0..n).map(move |_| f))
        .collect()
}

ktest! {
    /// A hole punched by `munmap` splits one VMA into two; mapping the hole again with
    /// the same flags merges them back into one. The unmapped page faults (0x11), its
    /// neighbours keep their bytes. Guards `VmaTree::unmap`/`map_fixed` (split, merge)
    /// and `zap_pte` in `Mm::munmap`.
    fn munmap_splits_and_mmap_merges(t) [EXPECTS_PGM] {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let va = map_anon(&space, 8);
        space.enter();
        for i in 0..8 {
            uaccess::write_u64(page_va(va, i), 0x100 + i);
        }
        space.leave();
        let one = layout(&space, va, 8);
        let hole = vm::with(|mm| mm.munmap(space.id(), page_va(va, 3), 2 * PAGE_SIZE));
        let split = layout(&space, va, 8);
        space.enter();
        t.expect_pgm(0x11, || { uaccess::read_u64(page_va(va, 3)); });
        let kept = (uaccess::read_u64(page_va(va, 2)), uaccess::read_u64(page_va(va, 5)));
        space.leave();
        let refill = vm::with(|mm| mm.mmap(space.id(), Some(page_va(va, 3)), 2 * PAGE_SIZE, RW, MapSource::Anon));
        let merged = layout(&space, va, 8);
        space.enter();
        let fresh = uaccess::read_u64(page_va(va, 4));
        space.leave();
        check_eq!(t, one, (1, expected(&[(8, Some(RW))])));
        check_eq!(t, hole, Ok(()));
        check_eq!(t, split, (2, expected(&[(3, Some(RW)), (2, None), (3, Some(RW))])));
        check_eq!(t, kept, (0x102, 0x105));
        check_eq!(t, refill, Ok(page_va(va, 3)));
        check_eq!(t, merged, (1, expected(&[(8, Some(RW))])));
        check_eq!(t, fresh, 0);
    }
}

ktest! {
    /// `mprotect` on the middle of a VMA splits it in three; the read-only part refuses
    /// stores (0x04) while the others accept them; `mprotect` back merges to one VMA.
    /// Guards `VmaTree::protect` (split at both ends, merge) and the PTE write-protect
    /// in `Mm::mprotect`.
    fn mprotect_splits_and_merges(t) [EXPECTS_PGM] {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let va = map_anon(&space, 6);
        space.enter();
        for i in 0..6 {
            uaccess::write_u64(page_va(va, i), i);
        }
        space.leave();
        let prot = vm::with(|mm| mm.mprotect(space.id(), page_va(va, 2), 2 * PAGE_SIZE, VmFlags::READ));
        let split = layout(&space, va, 6);
        space.enter();
        uaccess::write_u64(page_va(va, 1), 0x11);
        uaccess::write_u64(page_va(va, 4), 0x44);
        t.expect_pgm(0x04, || uaccess::write_u64(page_va(va, 2), 0x22));
        t.expect_pgm(0x04, || uaccess::write_u64(page_va(va, 3), 0x33));
        let read_only = (uaccess::read_u64(page_va(va, 2)), uaccess::read_u64(page_va(va, 3)));
        space.leave();
        let back = vm::with(|mm| mm.mprotect(space.id(), page_va(va, 2), 2 * PAGE_SIZE, RW));
        let merged = layout(&space, va, 6);
        space.enter();
        uaccess::write_u64(page_va(va, 3), 0x33);
        let written = uaccess::read_u64(page_va(va, 3));
        space.leave();
        check_eq!(t, prot, Ok(()));
        check_eq!(t, split, (3, expected(&[(2, Some(RW)), (2, Some(VmFlags::READ)), (2, Some(RW))])));
        check_eq!(t, read_only, (2, 3));
        check_eq!(t, back, Ok(()));
        check_eq!(t, merged, (1, expected(&[(6, Some(RW))])));
        check_eq!(t, written, 0x33);
    }
}

ktest! {
    /// `mlock` on part of an anonymous VMA splits it, sets `VM_LOCKED` only there and
    /// makes exactly those pages present (`make_pages_present`); `munlock` merges it
    /// back. Anonymous memory, so no file's sticky `mlocked` flag is touched.
    /// Guards `VmaTree::set_locked` and `Mm::mlock_fixup`.
    fn mlock_splits_and_munlock_merges(t) {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let va = map_anon(&space, 8);
        let locked = vm::with(|mm| mm.mlock(space.id(), page_va(va, 2), 3 * PAGE_SIZE));
        let split = layout(&space, va, 8);
        space.enter();
        let present: Vec<bool> = (0..8)
            .map(|i| kspace::current_user_pte(page_va(va, i)).is_some_and(|(_, pte)| pte.is_valid()))
            .collect();
        space.leave();
        let unlocked = vm::with(|mm| mm.munlock(space.id(), page_va(va, 2), 3 * PAGE_SIZE));
        let merged = layout(&space, va, 8);
        check_eq!(t, locked, Ok(()));
        check_eq!(t, split, (3, expected(&[(2, Some(RW)), (3, Some(LOCKED_RW)), (3, Some(RW))])));
        check_eq!(t, present, [false, false, true, true, true, false, false, false]);
        check_eq!(t, unlocked, Ok(()));
        check_eq!(t, merged, (1, expected(&[(8, Some(RW))])));
    }
}

ktest! {
    /// `mmap` over part of a mapped file replaces it: three VMAs, the middle reads
    /// zero (anonymous), the tail still maps the right file pages (its file offset
    /// moved with the split), and the replaced pages were unmapped, not left stale.
    /// Guards `VmaTree::map_fixed` (split, `tail_from` page offset) and the
    /// `zap_vma_range` of replaced VMAs in `Mm::mmap`.
    fn mmap_over_a_mapping_replaces_it(t) {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let va = vm::with(|mm| {
            let mapping = mm.open_file(files::SMALL)?;
            mm.mmap(space.id(), None, 8 * PAGE_SIZE, VmFlags::READ, MapSource::File { mapping, offset: 0 })
        })
        .expect("mmap");
        space.enter();
        let before: Vec<u64> = (0..8).map(|i| uaccess::read_u64(page_va(va, i))).collect();
        let replace = vm::with(|mm| mm.mmap(space.id(), Some(page_va(va, 2)), 2 * PAGE_SIZE, RW, MapSource::Anon));
        let after: Vec<u64> = (0..8).map(|i| uaccess::read_u64(page_va(va, i))).collect();
        space.leave();
        let shape = layout(&space, va, 8);
        let file_words: Vec<u64> = (0..8).map(|i| pattern(files::SMALL, i * PAGE_SIZE)).collect();
        check_eq!(t, before, file_words);
        check_eq!(t, replace, Ok(page_va(va, 2)));
        check_eq!(t, shape, (3, expected(&[(2, Some(VmFlags::READ)), (2, Some(RW)), (4, Some(VmFlags::READ))])));
        let mut want = file_words.clone();
        want[2] = 0;
        want[3] = 0;
        check_eq!(t, after, want);
    }
}

ktest! {
    /// Bad arguments to every VMA call are errors, never panics, and change nothing:
    /// unaligned address or length, zero length, overflow, outside the user range, an
    /// unmapped range for `mprotect`/`mlock`, an unaligned file offset, shared
    /// anonymous memory, a non-protection flag for `mprotect`. Guards
    /// `VmaTree::check_range`, `check_new`, `protect` and the `mmap` argument checks.
    fn bad_arguments_are_errors(t) {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let va = map_anon(&space, 4);
        let id = space.id();
        let top = VirtAddr::new(!0xfff);
        let results = vm::with(|mm| {
            let file = mm.open_file(files::SMALL).expect("open");
            let anon = MapSource::Anon;
            let r = |x: Result<(), MmError>| x.err();
            let m = |x: Result<VirtAddr, MmError>| x.err();
            [
                ("mmap unaligned addr", m(mm.mmap(id, Some(VirtAddr::new(va.as_u64() + 1)), PAGE_SIZE, RW, anon)), MmError::Unaligned),
                ("mmap unaligned len", m(mm.mmap(id, None, PAGE_SIZE + 1, RW, anon)), MmError::Unaligned),
                ("mmap zero len", m(mm.mmap(id, None, 0, RW, anon)), MmError::ZeroLength),
                ("mmap overflow", m(mm.mmap(id, Some(top), 2 * PAGE_SIZE, RW, anon)), MmError::Overflow),
                ("mmap below user", m(mm.mmap(id, Some(VirtAddr::new(USER_START.as_u64() - PAGE_SIZE)), PAGE_SIZE, RW, anon)), MmError::OutOfRange),
                ("mmap above 1 TiB", m(mm.mmap(id, Some(USER_END), PAGE_SIZE, RW, anon)), MmError::OutOfRange),
                ("mmap across 1 TiB", m(mm.mmap(id, Some(VirtAddr::new(USER_END.as_u64() - PAGE_SIZE)), 2 * PAGE_SIZE, RW, anon)), MmError::OutOfRange),
                ("mmap too big", m(mm.mmap(id, None, USER_END.as_u64(), RW, anon)), MmError::NoSpace),
                ("mmap file offset", m(mm.mmap(id, None, PAGE_SIZE, VmFlags::READ, MapSource::File { mapping: file, offset: 100 })), MmError::Unaligned),
                ("mmap shared anon", m(mm.mmap(id, None, PAGE_SIZE, RW.union(VmFlags::SHARED), anon)), MmError::PermissionDenied),
                ("munmap unaligned", r(mm.munmap(id, VirtAddr::new(va.as_u64() + 8), PAGE_SIZE)), MmError::Unaligned),
                ("munmap zero len", r(mm.munmap(id, va, 0)), MmError::ZeroLength),
                ("munmap overflow", r(mm.munmap(id, top, 2 * PAGE_SIZE)), MmError::Overflow),
                ("munmap above 1 TiB", r(mm.munmap(id, USER_END, PAGE_SIZE)), MmError::OutOfRange),
                ("mprotect unaligned len", r(mm.mprotect(id, va, 100, VmFlags::READ)), MmError::Unaligned),
                ("mprotect zero len", r(mm.mprotect(id, va, 0, VmFlags::READ)), MmError::ZeroLength),
                ("mprotect overflow", r(mm.mprotect(id, top, 2 * PAGE_SIZE, VmFlags::READ)), MmError::Overflow),
                ("mprotect hole", r(mm.mprotect(id, page_va(va, 2), 4 * PAGE_SIZE, VmFlags::READ)), MmError::NotMapped),
                ("mprotect flags", r(mm.mprotect(id, va, PAGE_SIZE, VmFlags::SHARED)), MmError::PermissionDenied),
                ("mlock hole", r(mm.mlock(id, page_va(va, 3), 2 * PAGE_SIZE)), MmError::NotMapped),
                ("mlock unaligned", r(mm.mlock(id, VirtAddr::new(va.as_u64() + 1), PAGE_SIZE)), MmError::Unaligned),
                ("mlock below user", r(mm.mlock(id, VirtAddr::new(PAGE_SIZE), PAGE_SIZE)), MmError::OutOfRange),
                ("munlock zero len", r(mm.munlock(id, va, 0)), MmError::ZeroLength),
                ("munlock overflow", r(mm.munlock(id, top, 2 * PAGE_SIZE)), MmError::Overflow),
            ]
        });
        for (what, got, want) in results {
            check!(t, got == Some(want), "{what}: got {got:?}, want {want:?}");
        }
        let shape = layout(&space, va, 5);
        check_eq!(t, shape, (1, expected(&[(4, Some(RW)), (1, None)])));
        let invariants = vm::with(|mm| mm.space(id).expect("space").vmas().check_invariants());
        check_eq!(t, invariants, Ok(()));
    }
}

ktest! {
    /// One `munmap` across several VMAs and the holes between them removes exactly the
    /// range: the outer parts of the first and last VMA stay, with their flags and
    /// their bytes. Guards `VmaTree::remove_range` over several VMAs and holes.
    fn munmap_across_vmas_and_holes(t) {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let va = map_anon(&space, 12);
        let setup = vm::with(|mm| {
            mm.munmap(space.id(), page_va(va, 4), PAGE_SIZE)?;
            mm.mprotect(space.id(), page_va(va, 6), 2 * PAGE_SIZE, VmFlags::READ)?;
            mm.munmap(space.id(), page_va(va, 9), PAGE_SIZE)
        });
        space.enter();
        uaccess::write_u64(page_va(va, 1), 0x1);
        uaccess::write_u64(page_va(va, 11), 0xb);
        space.leave();
        let before = layout(&space, va, 12);
        let cut = vm::with(|mm| mm.munmap(space.id(), page_va(va, 2), 9 * PAGE_SIZE));
        let after = layout(&space, va, 12);
        space.enter();
        let kept = (uaccess::read_u64(page_va(va, 1)), uaccess::read_u64(page_va(va, 11)));
        space.leave();
        check_eq!(t, setup, Ok(()));
        let ro = Some(VmFlags::READ);
        check_eq!(t, before.0, 5);
        check_eq!(t, before.1, expected(&[(4, Some(RW)), (1, None), (1, Some(RW)), (2, ro), (1, Some(RW)), (1, None), (2, Some(RW))]));
        check_eq!(t, cut, Ok(()));
        check_eq!(t, after, (2, expected(&[(2, Some(RW)), (9, None), (1, Some(RW))])));
        check_eq!(t, kept, (0x1, 0xb));
    }
}
