use super::*;
use crate::mm::addr::PAGE_SIZE;
use crate::mm::backing::check_pattern;
use crate::mm::error::Bug;
use crate::mm::hooks::{StablePoint, VolatilePoint};
use crate::mm::machine::PhysMem;
use crate::mm::page::PageFlags;
use crate::mm::rmap::UnmapError;
use crate::mm::testing::{
    HookEvent, MappedFile, RecordingHooks, map_whole_file, mapped_pfn, page_at, user_read,
};
use crate::mm::vma::VmFlags;

const P: u64 = PAGE_SIZE;

#[test]
fn mlock_sets_the_flags_and_makes_every_page_present_and_stable() {
    let MappedFile {
        mut mm,
        space,
        mapping: m,
        va,
    } = map_whole_file(128, 1, 6, VmFlags::READ, RecordingHooks::default());
    assert!(!mm.mapping(m).unwrap().is_mlocked());
    mm.mlock(space, page_at(va, 1), 4 * P).unwrap();
    assert!(mm.mapping(m).unwrap().is_mlocked());
    let vmas = mm.space(space).unwrap().vmas();
    assert_eq!(vmas.len(), 3);
    assert!(vmas.find(page_at(va, 2)).unwrap().is_locked());
    assert!(!vmas.find(va).unwrap().is_locked());
    assert_eq!(mapped_pfn(&mm, space, va), None, "outside the locked range");
    for page in 1..5 {
        let pfn = mapped_pfn(&mm, space, page_at(va, page)).expect("present after mlock");
        // follow_page without FOLL_GET made it stable because the VMA is locked.
        assert!(
            mm.hooks()
                .stable_points(pfn)
                .contains(&StablePoint::FollowLocked),
            "page {page}"
        );
        assert_eq!(mm.page(pfn).unwrap().refcount(), 2, "no pin left behind");
    }
    // From now on volatile attempts carry the mlocked fact, even after munlock.
    mm.munlock(space, page_at(va, 1), 4 * P).unwrap();
    assert_eq!(mm.space(space).unwrap().vmas().len(), 1);
    assert!(mm.mapping(m).unwrap().is_mlocked(), "never cleared");
    let mut buf = [0u8; 8];
    user_read(&mut mm, space, page_at(va, 5), &mut buf).unwrap();
    let fresh = mapped_pfn(&mm, space, page_at(va, 5)).unwrap();
    let last = mm.hooks().events.iter().rev().find_map(|e| match *e {
        HookEvent::TryVolatile(p, VolatilePoint::RmapAdd, ctx) if p == fresh => Some(ctx),
        _ => None,
    });
    assert!(last.unwrap().mapping_mlocked);
    assert_eq!(
        mm.mlock(space, page_at(va, 5), 4 * P),
        Err(MmError::NotMapped)
    );
}

#[test]
fn without_the_seeds_unmap_exception_mlock_cannot_reload_a_discarded_page() {
    // The seed's reason for the exception: make_pages_present runs after VM_LOCKED is
    // set, so page_discard must unmap the discarded page from a locked VMA.
    let MappedFile {
        mut mm, space, va, ..
    } = map_whole_file(128, 3, 4, VmFlags::READ, RecordingHooks::default());
    let mut buf = alloc::vec![0u8; 4 * P as usize];
    user_read(&mut mm, space, va, &mut buf).unwrap();
    let old = mapped_pfn(&mm, space, page_at(va, 2)).unwrap();
    mm.hooks_mut().discarded.insert(old);
    assert_eq!(
        mm.mlock(space, va, 4 * P),
        Err(MmError::Bug(Bug::DiscardStillMapped(old)))
    );
    assert_eq!(mm.bugs(), [Bug::DiscardStillMapped(old)]);
    // Refused cleanly: still mapped, cached, and not marked discarded.
    assert_eq!(mapped_pfn(&mm, space, page_at(va, 2)), Some(old));
    assert!(!mm.page(old).unwrap().test(PageFlags::DISCARDED));
}

#[test]
fn pages_discarded_before_mlock_are_forced_out_and_reloaded() {
    let hooks = RecordingHooks {
        seed_unmap_rule: true,
        ..RecordingHooks::default()
    };
    let MappedFile {
        mut mm, space, va, ..
    } = map_whole_file(128, 3, 4, VmFlags::READ, hooks);
    let mut buf = alloc::vec![0u8; 4 * P as usize];
    user_read(&mut mm, space, va, &mut buf).unwrap();
    let old = mapped_pfn(&mm, space, page_at(va, 2)).unwrap();
    // The host discards page 2 while it is volatile; its frame now holds garbage.
    mm.machine_mut().frame(old).fill(0);
    mm.hooks_mut().discarded.insert(old);
    let reads = mm.device().stats().reads;
    mm.mlock(space, va, 4 * P).unwrap();
    assert!(mm.hooks().events.contains(&HookEvent::Discarded(old)));
    assert_eq!(
        mm.device().stats().reads,
        reads + 1,
        "exactly the discarded page reloaded"
    );
    let new = mapped_pfn(&mm, space, page_at(va, 2)).expect("present again");
    assert_eq!(check_pattern(3, 2 * P, mm.machine().frame_ref(new)), Ok(()));
    assert!(!mm.page(new).unwrap().test(PageFlags::DISCARDED));
    user_read(&mut mm, space, va, &mut buf).unwrap();
    assert_eq!(check_pattern(3, 0, &buf), Ok(()));
}

#[test]
fn try_to_unmap_refuses_locked_vmas_except_for_discarded_pages_with_the_seed_rule() {
    for seed_rule in [false, true] {
        let hooks = RecordingHooks {
            seed_unmap_rule: seed_rule,
            ..RecordingHooks::default()
        };
        let MappedFile {
            mut mm, space, va, ..
        } = map_whole_file(128, 1, 2, VmFlags::READ | VmFlags::LOCKED, hooks);
        let pfn = mapped_pfn(&mm, space, va).unwrap();
        assert_eq!(mm.try_to_unmap(pfn), Err(UnmapError::Locked));
        assert_eq!(mapped_pfn(&mm, space, va), Some(pfn));
        // A page marked discarded (page_discard in progress elsewhere).
        mm.frames.pages_mut()[pfn].set(PageFlags::DISCARDED);
        let result = mm.try_to_unmap(pfn);
        if seed_rule {
            assert_eq!(result, Ok(()));
            assert_eq!(mapped_pfn(&mm, space, va), None);
            assert_eq!(mm.page(pfn).unwrap().mapcount(), 0);
        } else {
            assert_eq!(result, Err(UnmapError::Locked));
        }
    }
}
