use super::*;
use crate::mm::backing::{check_pattern, fill_pattern};
use crate::mm::hooks::StablePoint;
use crate::mm::ids::MappingId;
use crate::mm::machine::PhysMem;
use crate::mm::manager::USER_START;
use crate::mm::mmap::MapSource;
use crate::mm::testing::{TestMm, mm_with_file, mmap_file, page_at, pte_of, user_read, user_write};

const RW: VmFlags = VmFlags::READ.union(VmFlags::WRITE);
const P: u64 = PAGE_SIZE;

fn setup(pages: u64) -> (TestMm, SpaceId, MappingId) {
    let (mut mm, m) = mm_with_file(256, 1, pages * P);
    let space = mm.create_space().unwrap();
    (mm, space, m)
}

#[test]
fn anonymous_memory_is_zero_filled_and_private() {
    let (mut mm, space, _) = setup(1);
    let va = mm.mmap(space, None, 3 * P, RW, MapSource::Anon).unwrap();
    assert_eq!(va, USER_START);
    let mut buf = [1u8; 64];
    user_read(&mut mm, space, page_at(va, 1), &mut buf).unwrap();
    assert_eq!(buf, [0; 64]);
    user_write(
        &mut mm,
        space,
        VirtAddr::new(va.as_u64() + P + 4090),
        &[9; 12],
    )
    .unwrap();
    let mut back = [0u8; 12];
    user_read(
        &mut mm,
        space,
        VirtAddr::new(va.as_u64() + P + 4090),
        &mut back,
    )
    .unwrap();
    assert_eq!(back, [9; 12]);
    assert_eq!(mm.stats().anon_faults, 2, "pages 1 and 2 were touched");
    let pfn = pte_of(&mm, space, page_at(va, 1)).unwrap().pfn();
    let page = mm.page(pfn).unwrap();
    assert!(page.test(PageFlags::ANON));
    assert_eq!(page.anon_space(), Some(space));
    assert_eq!(mm.rmap(pfn).len(), 1);
    // Unmapping frees the anonymous frames.
    let free = mm.frames().free_count();
    mm.munmap(space, va, 3 * P).unwrap();
    assert_eq!(mm.frames().free_count(), free + 2);
}

#[test]
fn private_file_mappings_copy_on_write() {
    let (mut mm, space, m) = setup(4);
    let va = mmap_file(&mut mm, space, m, 4 * P, RW);
    let mut buf = alloc::vec![0u8; 4 * P as usize];
    user_read(&mut mm, space, va, &mut buf).unwrap();
    assert_eq!(check_pattern(1, 0, &buf), Ok(()));
    assert_eq!(mm.stats().major_faults, 4);
    let second = page_at(va, 1);
    let cache_pfn = mm.mapping(m).unwrap().lookup(1).unwrap();
    let pte = pte_of(&mm, space, second).unwrap();
    assert_eq!(pte.pfn(), cache_pfn);
    assert!(
        pte.is_protected(),
        "read faults map private pages read-only"
    );
    user_write(
        &mut mm,
        space,
        VirtAddr::new(second.as_u64() + 8),
        &[0xab; 8],
    )
    .unwrap();
    assert_eq!(mm.stats().cow_faults, 1);
    let new = pte_of(&mm, space, second).unwrap();
    assert_ne!(new.pfn(), cache_pfn);
    assert!(!new.is_protected());
    assert!(
        mm.hooks()
            .stable_points(cache_pfn)
            .contains(&StablePoint::CopyOnWrite)
    );
    // The copy has the old contents plus the store; the cache page is untouched.
    let copy = *mm.machine().frame_ref(new.pfn());
    assert_eq!(&copy[8..16], &[0xab; 8]);
    assert_eq!(check_pattern(1, P + 16, &copy[16..]), Ok(()));
    assert_eq!(
        check_pattern(1, P, mm.machine().frame_ref(cache_pfn)),
        Ok(())
    );
    assert_eq!(mm.page(cache_pfn).unwrap().mapcount(), 0);
    assert!(!mm.page(cache_pfn).unwrap().test(PageFlags::DIRTY));
    // A write fault on an unmapped private page copies at once.
    mm.munmap(space, second, P).unwrap();
    mm.mmap(
        space,
        Some(second),
        P,
        RW,
        MapSource::File {
            mapping: m,
            offset: P,
        },
    )
    .unwrap();
    user_write(&mut mm, space, second, &[1]).unwrap();
    assert_eq!(mm.stats().cow_faults, 2);
    mm.sync_mapping(m).unwrap();
    assert_eq!(
        mm.device().stats().writes,
        0,
        "private writes never reach the file"
    );
}

#[test]
fn shared_file_mappings_dirty_the_cache_and_reach_the_file() {
    let (mut mm, space, m) = setup(2);
    let shared = RW | VmFlags::SHARED;
    let va = mmap_file(&mut mm, space, m, 2 * P, shared);
    let mut buf = [0u8; 16];
    user_read(&mut mm, space, va, &mut buf).unwrap();
    let pfn = mm.mapping(m).unwrap().lookup(0).unwrap();
    // s390 without write notification: a read fault maps a shared writable page
    // writable, and stores mark only the storage key.
    assert!(!pte_of(&mm, space, va).unwrap().is_protected());
    assert!(mm.page(pfn).unwrap().test(PageFlags::WRITABLE));
    user_write(&mut mm, space, VirtAddr::new(va.as_u64() + 100), b"hello").unwrap();
    assert_eq!(mm.stats().write_notify_faults, 0);
    assert_eq!(pte_of(&mm, space, va).unwrap().pfn(), pfn, "no copy");
    assert!(!mm.page(pfn).unwrap().test(PageFlags::DIRTY));
    assert!(mm.machine().is_changed(pfn));
    // Writeback finds the store through the change bit.
    mm.sync_mapping(m).unwrap();
    assert_eq!(mm.device().stats().writes, 1);
    assert!(!mm.machine().is_changed(pfn));
    assert!(
        !pte_of(&mm, space, va).unwrap().is_protected(),
        "still writable"
    );
    let mut through_cache = [0u8; 5];
    mm.read_file(m, 100, &mut through_cache).unwrap();
    assert_eq!(&through_cache, b"hello");
    // The next store is seen again, by the next writeback or the last unmap.
    user_write(&mut mm, space, VirtAddr::new(va.as_u64() + 200), b"again").unwrap();
    // A write fault on an unmapped shared page maps it writable and dirty.
    let second = page_at(va, 1);
    user_write(&mut mm, space, second, b"x").unwrap();
    assert!(!pte_of(&mm, space, second).unwrap().is_protected());
    let second_pfn = mm.mapping(m).unwrap().lookup(1).unwrap();
    assert!(mm.page(second_pfn).unwrap().test(PageFlags::DIRTY));
    mm.munmap(space, va, 2 * P).unwrap();
    mm.sync_mapping(m).unwrap();
    let start = mm.mapping(m).unwrap().file().start_block as usize * 4096;
    let disk = &mm.device().inner().storage()[start..start + 2 * 4096];
    assert_eq!(&disk[100..105], b"hello");
    assert_eq!(&disk[200..205], b"again");
    assert_eq!(disk[4096], b'x');
    let mut expect = [0u8; 4095];
    fill_pattern(1, P + 1, &mut expect);
    assert_eq!(&disk[4097..], &expect);
}

#[test]
fn a_store_after_mprotect_gives_write_permission_back_is_a_write_notify_fault() {
    let (mut mm, space, m) = setup(1);
    let va = mmap_file(&mut mm, space, m, P, RW | VmFlags::SHARED);
    let mut buf = [0u8; 1];
    user_read(&mut mm, space, va, &mut buf).unwrap();
    mm.mprotect(space, va, P, VmFlags::READ).unwrap();
    assert!(pte_of(&mm, space, va).unwrap().is_protected());
    mm.mprotect(space, va, P, RW).unwrap();
    user_write(&mut mm, space, va, b"w").unwrap();
    assert_eq!(mm.stats().write_notify_faults, 1);
    let pfn = mm.mapping(m).unwrap().lookup(0).unwrap();
    assert!(mm.page(pfn).unwrap().test(PageFlags::DIRTY));
    assert!(
        mm.hooks()
            .stable_points(pfn)
            .contains(&StablePoint::WriteNotify)
    );
}

#[test]
fn change_bits_of_writable_pages_move_into_the_dirty_flag() {
    let (mut mm, space, m) = setup(1);
    let shared = RW | VmFlags::SHARED;
    let va = mmap_file(&mut mm, space, m, P, shared);
    let mut buf = [0u8; 1];
    user_read(&mut mm, space, va, &mut buf).unwrap();
    let pfn = mm.mapping(m).unwrap().lookup(0).unwrap();
    // A store the kernel did not see as a fault: only the change bit knows.
    user_write(&mut mm, space, va, b"abc").unwrap();
    mm.munmap(space, va, P).unwrap();
    assert!(mm.page(pfn).unwrap().test(PageFlags::DIRTY));
    assert!(!mm.machine().is_changed(pfn));
    assert_eq!(
        mm.hooks().stable_points(pfn),
        [StablePoint::DirtyTransfer],
        "made stable before the change bit was cleared (6/6 hazard 1)"
    );
}

#[test]
fn a_changed_page_the_host_discarded_is_a_bug() {
    // 6/6: VM_BUG_ON(!stable) after page_test_dirty. A host never discards a P page
    // whose change bit is set; if one did, the transfer refuses and reports it.
    let (mut mm, space, m) = setup(1);
    let va = mmap_file(&mut mm, space, m, P, RW | VmFlags::SHARED);
    let mut buf = [0u8; 1];
    user_read(&mut mm, space, va, &mut buf).unwrap();
    let pfn = mm.mapping(m).unwrap().lookup(0).unwrap();
    user_write(&mut mm, space, va, b"x").unwrap();
    mm.hooks_mut().discarded.insert(pfn);
    mm.munmap(space, va, P).unwrap();
    assert_eq!(
        mm.bugs(),
        [crate::mm::error::Bug::ChangedPageDiscarded(pfn)]
    );
    assert!(!mm.page(pfn).unwrap().test(PageFlags::DIRTY));
}

#[test]
fn a_clean_page_leaves_its_last_mapping_without_a_state_change() {
    // 6/6: only a set change bit makes page_remove_rmap stabilise the page.
    let (mut mm, space, m) = setup(1);
    let va = mmap_file(&mut mm, space, m, P, RW | VmFlags::SHARED);
    let mut buf = [0u8; 1];
    user_read(&mut mm, space, va, &mut buf).unwrap();
    let pfn = mm.mapping(m).unwrap().lookup(0).unwrap();
    mm.munmap(space, va, P).unwrap();
    assert!(mm.hooks().stable_points(pfn).is_empty());
    assert!(!mm.page(pfn).unwrap().test(PageFlags::DIRTY));
    assert!(!mm.page(pfn).unwrap().test(PageFlags::WRITABLE));
}

#[test]
fn bad_accesses_are_reported() {
    let (mut mm, space, m) = setup(2);
    let ro = mmap_file(&mut mm, space, m, 4 * P, VmFlags::READ);
    assert_eq!(
        mm.handle_fault(space, ro, Access::Write),
        Err(MmError::AccessViolation)
    );
    assert_eq!(
        mm.handle_fault(space, page_at(ro, 2), Access::Read),
        Err(MmError::BeyondEof)
    );
    assert_eq!(
        mm.handle_fault(space, VirtAddr::new(0x1000), Access::Read),
        Err(MmError::AccessViolation)
    );
    let none = SpaceId::new(99).unwrap();
    assert_eq!(
        mm.handle_fault(none, ro, Access::Read),
        Err(MmError::NoSuchObject)
    );
    // mprotect removes write permission from present pages.
    let rw = mm.mmap(space, None, P, RW, MapSource::Anon).unwrap();
    user_write(&mut mm, space, rw, &[1]).unwrap();
    mm.mprotect(space, rw, P, VmFlags::READ).unwrap();
    assert!(pte_of(&mm, space, rw).unwrap().is_protected());
    assert_eq!(
        user_write(&mut mm, space, rw, &[2]),
        Err(MmError::AccessViolation)
    );
    mm.mprotect(space, rw, P, RW).unwrap();
    user_write(&mut mm, space, rw, &[3]).unwrap();
    let mut b = [0u8];
    user_read(&mut mm, space, rw, &mut b).unwrap();
    assert_eq!(b, [3], "the anonymous page was reused, not replaced");
    mm.mprotect(space, rw, P, VmFlags::empty()).unwrap();
    assert!(pte_of(&mm, space, rw).is_none());
    assert_eq!(
        mm.mmap(
            space,
            None,
            P,
            RW,
            MapSource::File {
                mapping: m,
                offset: 5
            }
        ),
        Err(MmError::Unaligned)
    );
}

#[test]
fn follow_page_and_get_user_pages_pin_and_fault_in() {
    let (mut mm, space, m) = setup(3);
    let va = mmap_file(&mut mm, space, m, 3 * P, VmFlags::READ);
    assert_eq!(mm.follow_page(space, va, FollowFlags::default()), None);
    let pinned = mm.get_user_pages(space, va, 3, false, true).unwrap();
    assert_eq!(pinned.len(), 3);
    for (i, &pfn) in pinned.iter().enumerate() {
        assert_eq!(mm.mapping(m).unwrap().lookup(i as u64), Some(pfn));
        // cache + PTE + pin
        assert_eq!(mm.page(pfn).unwrap().refcount(), 3);
        assert!(mm.hooks().stable_points(pfn).contains(&StablePoint::Pin));
    }
    let write = FollowFlags {
        get: false,
        write: true,
    };
    assert_eq!(mm.follow_page(space, va, write), None, "read-only PTE");
    assert_eq!(
        mm.get_user_pages(space, va, 1, true, false),
        Err(MmError::AccessViolation)
    );
    mm.release_pages(&pinned);
    assert_eq!(mm.page(pinned[0]).unwrap().refcount(), 2);
    // An unlocked VMA without FOLL_GET does not stabilise.
    let before = mm.hooks().stable_points(pinned[0]).len();
    assert_eq!(
        mm.follow_page(space, va, FollowFlags::default()),
        Some(pinned[0])
    );
    assert_eq!(mm.hooks().stable_points(pinned[0]).len(), before);
}

#[test]
fn destroying_a_space_frees_its_frames() {
    let (mut mm, _, m) = setup(4);
    mm.build_kernel_space(
        crate::mm::addr::PhysAddr::new(0)..crate::mm::addr::PhysAddr::new(64 * P),
    )
    .unwrap();
    let free = mm.frames().free_count();
    let space = mm.create_space().unwrap();
    let va = mmap_file(&mut mm, space, m, 4 * P, RW);
    let anon = mm.mmap(space, None, 2 * P, RW, MapSource::Anon).unwrap();
    user_write(&mut mm, space, anon, &[1; 8192]).unwrap();
    let mut buf = [0u8; 8];
    user_read(&mut mm, space, page_at(va, 3), &mut buf).unwrap();
    // The kernel identity map is visible in the user space.
    let kernel_pte = pte_of(&mm, space, VirtAddr::new(5 * P)).unwrap();
    assert_eq!(kernel_pte.pfn(), Pfn::new(5));
    mm.destroy_space(space).unwrap();
    // Only the one cached file page remains allocated.
    assert_eq!(mm.frames().free_count(), free - 1);
    assert!(mm.space(space).is_none());
}

/// Only the fault path offers a freshly read page for the volatile state while its
/// reference is held ("after readpage", `filemap_nopage`): it maps the page without
/// reading it. `read_file` copies the contents first and offers it when it lets go
/// (issue 12: under a host striking after every ESSA, the copy hit a discarded frame).
#[test]
fn only_the_fault_path_offers_a_page_right_after_readpage() {
    let (mut mm, space, m) = setup(2);
    let va = mmap_file(&mut mm, space, m, 2 * P, VmFlags::READ);
    let mut buf = [0u8; 8];
    user_read(&mut mm, space, va, &mut buf).unwrap();
    let faulted = pte_of(&mm, space, va).unwrap().pfn();
    assert_eq!(
        mm.hooks().volatile_points(faulted),
        [
            VolatilePoint::LruAdd,
            VolatilePoint::Unlock,
            VolatilePoint::AfterReadpage,
            VolatilePoint::RmapAdd
        ]
    );
    mm.read_file(m, P, &mut buf).unwrap();
    let read = mm.mapping(m).unwrap().lookup(1).unwrap();
    assert_eq!(
        mm.hooks().volatile_points(read),
        [
            VolatilePoint::LruAdd,
            VolatilePoint::Unlock,
            VolatilePoint::CacheRelease
        ]
    );
    assert_eq!(check_pattern(1, P, &buf), Ok(()));
}
