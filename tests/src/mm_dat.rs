//! `mm::dat`: user mappings through the real DAT tables: a mapped page translates to
//! its page-cache frame, stores to a read-only VMA raise a protection exception (0x04),
//! unmapped addresses raise the translation exception of the first missing table level
//! (0x11 page, 0x10 segment, 0x3b region third), address spaces are independent, and no
//! stale TLB entry survives an unmap or a write-protect (IPTE).

use crate::support::{RW, ensure_free, map_anon, map_file, needs_mm, page_va};
use kernel::arch::storage::Machine;
use kernel::arch::{kspace, uaccess};
use kernel::mm::addr::{PAGE_SIZE, VirtAddr};
use kernel::mm::backing::{files, pattern, pattern_byte};
use kernel::mm::machine::PhysMem;
use kernel::mm::manager::{USER_END, USER_START};
use kernel::mm::mmap::MapSource;
use kernel::mm::vma::VmFlags;
use kernel::vm::{self, UserSpace};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("mm::dat");

ktest! {
    /// A read fault maps the file's page-cache frame read-only (so the first store is
    /// seen): the PTE the CPU walks names the frame `find_get_page` returns, and the
    /// bytes are the file's. Guards `do_file_page`/`map_page` (frame and protection).
    fn read_fault_maps_cache_frame_read_only(t) {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let (_, va) = map_file(&space, files::SMALL, 0, 4, RW);
        space.enter();
        let word = uaccess::read_u64(page_va(va, 2));
        let pte = kspace::current_user_pte(page_va(va, 2));
        let untouched = kspace::current_user_pte(page_va(va, 3));
        space.leave();
        check_eq!(t, word, pattern(files::SMALL, 2 * PAGE_SIZE));
        let cached = vm::with(|mm| {
            let mapping = mm.open_file(files::SMALL).ok()?;
            mm.mapping(mapping)?.lookup(2)
        });
        let Some((_, pte)) = pte else {
            t.fail_at(file!(), line!(), format_args!("no PTE after the read fault"));
            return;
        };
        check!(t, pte.is_valid(), "{pte:?}");
        check!(t, pte.is_protected(), "a read fault mapped the page writable: {pte:?}");
        check_eq!(t, Some(pte.pfn()), cached);
        check!(t, untouched.is_none_or(|(_, p)| !p.is_valid()), "page 3 mapped without a fault: {untouched:?}");
    }
}

ktest! {
    /// A store where the VMA forbids writing is a protection exception (0x04) with the
    /// address in the TEID, and the page keeps its bytes; after `mprotect` back to
    /// read-write the store goes through. The page was written (a writable TLB entry
    /// exists) before `mprotect`, without leaving the space: guards the write-protect in
    /// `Mm::mprotect` and the IPTE in `DatSpace::protect`.
    fn store_to_read_only_vma_is_protection_exception(t) [EXPECTS_PGM] {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let va = map_anon(&space, 2);
        let target = page_va(va, 1);
        space.enter();
        uaccess::write_u64(target, 0x0123_4567_89ab_cdef);
        let prot = vm::with(|mm| mm.mprotect(space.id(), target, PAGE_SIZE, VmFlags::READ));
        let info = t.expect_pgm(0x04, || uaccess::write_u64(VirtAddr::new(target.as_u64() + 8), 0xdead));
        let kept = (uaccess::read_u64(target), uaccess::read_u64(VirtAddr::new(target.as_u64() + 8)));
        let back = vm::with(|mm| mm.mprotect(space.id(), target, PAGE_SIZE, RW));
        uaccess::write_u64(VirtAddr::new(target.as_u64() + 8), 0xbeef);
        let after = uaccess::read_u64(VirtAddr::new(target.as_u64() + 8));
        space.leave();
        check_eq!(t, prot, Ok(()));
        check_eq!(t, back, Ok(()));
        if let Some(info) = info {
            check_eq!(t, info.teid & !0xfff, target.as_u64());
        }
        check_eq!(t, kept, (0x0123_4567_89ab_cdef, 0));
        check_eq!(t, after, 0xbeef);
    }
}

ktest! {
    /// After `munmap` the address faults with the exception of the first missing table
    /// level: page translation (0x11) where the page table stays, segment translation
    /// (0x10) in a segment never mapped, region-third translation (0x3b) in a region
    /// never mapped, each with the address in the TEID. The neighbour keeps its data.
    /// Guards `zap_pte` in `Mm::munmap` (a left-over PTE would let the load succeed).
    fn unmapped_addresses_raise_translation_exceptions(t) [EXPECTS_PGM] {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let va = map_anon(&space, 2);
        check_eq!(t, va, USER_START);
        space.enter();
        uaccess::write_u64(va, 0x1111);
        uaccess::write_u64(page_va(va, 1), 0x2222);
        let unmapped = vm::with(|mm| mm.munmap(space.id(), page_va(va, 1), PAGE_SIZE));
        let page = t.expect_pgm(0x11, || { uaccess::read_u64(page_va(va, 1)); });
        // 16 MiB up: same region-third entry, a segment without a page table.
        let segment_va = VirtAddr::new(USER_START.as_u64() + (16 << 20));
        let segment = t.expect_pgm(0x10, || { uaccess::read_u64(segment_va); });
        // The last page below 1 TiB: a region-third entry never made valid.
        let region_va = VirtAddr::new(USER_END.as_u64() - PAGE_SIZE);
        let region = t.expect_pgm(0x3b, || { uaccess::read_u8(region_va); });
        let neighbour = uaccess::read_u64(va);
        space.leave();
        check_eq!(t, unmapped, Ok(()));
        check_eq!(t, neighbour, 0x1111);
        for (info, expected) in [(page, page_va(va, 1)), (segment, segment_va), (region, region_va)] {
            if let Some(info) = info {
                check_eq!(t, info.teid & !0xfff, expected.as_u64());
            }
        }
    }
}

ktest! {
    /// No stale translation survives an unmap: map file page 0, load through it, then
    /// (without leaving the space, which would flush the TLB with the CR1 load) unmap
    /// and map another file's page at the same address; the next load must see the new
    /// page. Guards the IPTE in `DatSpace::unmap` (`Tlb::invalidate_page`).
    fn unmap_and_remap_leaves_no_stale_tlb_entry(t) {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let (_, va) = map_file(&space, files::SMALL, 0, 1, VmFlags::READ);
        space.enter();
        let first = uaccess::read_u64(va);
        let remap = vm::with(|mm| {
            mm.munmap(space.id(), va, PAGE_SIZE)?;
            let mapping = mm.open_file(files::MEDIUM)?;
            mm.mmap(space.id(), Some(va), PAGE_SIZE, VmFlags::READ, MapSource::File { mapping, offset: 3 * PAGE_SIZE })
        });
        let second = uaccess::read_u64(va);
        let last = uaccess::read_u8(VirtAddr::new(va.as_u64() + PAGE_SIZE - 1));
        space.leave();
        check_eq!(t, remap, Ok(va));
        check_eq!(t, first, pattern(files::SMALL, 0));
        check_eq!(t, second, pattern(files::MEDIUM, 3 * PAGE_SIZE));
        check_eq!(t, last, pattern_byte(files::MEDIUM, 4 * PAGE_SIZE - 1));
    }
}

ktest! {
    /// Two address spaces map anonymous memory at the same address and each sees only
    /// its own bytes; a file page mapped in both is one frame with two reverse-map
    /// entries. Guards the per-space ASCE loaded by `UserSpace::enter` and the rmap walk
    /// over every space.
    fn address_spaces_are_independent(t) {
        if !needs_mm(t) { return; }
        // Two spaces' tables (6 frames each), two anonymous pages and the file page: no
        // allocation of the test may evict the file page between the two reads, so the
        // spaces get their tables (anonymous pages first) before the file page is read.
        vm::with(|mm| ensure_free(mm, 16));
        let a = UserSpace::new().expect("space a");
        let b = UserSpace::new().expect("space b");
        let va_a = map_anon(&a, 1);
        let va_b = map_anon(&b, 1);
        check_eq!(t, va_a, va_b);
        let (_, file_a) = map_file(&a, files::SMALL, 5, 1, VmFlags::READ);
        let (_, file_b) = map_file(&b, files::SMALL, 5, 1, VmFlags::READ);
        a.enter();
        uaccess::write_u64(va_a, 0xaaaa);
        a.leave();
        b.enter();
        let zero_b = uaccess::read_u64(va_b);
        uaccess::write_u64(va_b, 0xbbbb);
        b.leave();
        a.enter();
        let word_a = uaccess::read_u64(file_a);
        let pte_a = kspace::current_user_pte(file_a);
        a.leave();
        b.enter();
        let word_b = uaccess::read_u64(file_b);
        let pte_b = kspace::current_user_pte(file_b);
        b.leave();
        a.enter();
        let still_a = uaccess::read_u64(va_a);
        a.leave();
        check_eq!(t, zero_b, 0);
        check_eq!(t, still_a, 0xaaaa);
        check_eq!(t, word_a, pattern(files::SMALL, 5 * PAGE_SIZE));
        check_eq!(t, word_b, pattern(files::SMALL, 5 * PAGE_SIZE));
        let (Some((_, pte_a)), Some((_, pte_b))) = (pte_a, pte_b) else {
            t.fail_at(file!(), line!(), format_args!("file page not mapped: {pte_a:?} {pte_b:?}"));
            return;
        };
        check_eq!(t, pte_a.pfn(), pte_b.pfn());
        let rmap = vm::with(|mm| mm.rmap(pte_a.pfn()));
        check_eq!(t, rmap.len(), 2);
        check!(t, rmap.iter().any(|e| e.space == a.id() && e.va == file_a), "{rmap:?}");
        check!(t, rmap.iter().any(|e| e.space == b.id() && e.va == file_b), "{rmap:?}");
    }
}

ktest! {
    /// A switch to a user space that does not share the kernel's identity map is refused
    /// (the kernel would lose its own mapping at the next instruction): with the space's
    /// first region-third entry, the one that maps storage, made empty, `kspace::enter`
    /// says no; put back, it switches. Guards the entries
    /// `kspace::enter` compares (all that the identity map uses).
    fn a_space_without_the_kernels_map_is_not_entered(t) {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let Some(asce) = vm::with(|mm| mm.space(space.id()).map(|s| s.asce())) else {
            check!(t, false, "no address space for {:?}", space.id());
            return;
        };
        // Whether the switch is taken (and left again at once).
        let enters = || {
            let entered = kspace::enter(asce);
            if entered {
                kspace::leave();
            }
            entered
        };
        let entry = asce.origin();
        let shared = Machine.read_u64(entry);
        // Not the kernel's entry: an empty (invalid) one.
        Machine.write_u64(entry, kernel::mm::dat::Region3Entry::EMPTY.bits());
        let entered = enters();
        Machine.write_u64(entry, shared);
        check!(t, !entered, "entered a space whose first region-third entry is not the kernel's");
        check!(t, enters(), "the space, its entry put back, was not entered");
    }
}
