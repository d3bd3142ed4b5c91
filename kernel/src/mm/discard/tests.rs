use super::*;
use crate::mm::addr::PAGE_SIZE;
use crate::mm::backing::check_pattern;
use crate::mm::error::Bug;
use crate::mm::ids::MappingId;
use crate::mm::mmap::MapSource;
use crate::mm::testing::{
    HookEvent, RecordingHooks, mm_with_file, mmap_file, page_at, test_mm, user_read,
};
use crate::mm::vma::VmFlags;

const P: u64 = PAGE_SIZE;

#[test]
fn page_discard_removes_every_trace_once_and_the_access_reloads() {
    let mut mm = test_mm(
        128,
        &[(1, 2 * P)],
        RecordingHooks {
            record_frames: true,
            seed_unmap_rule: true,
            ..Default::default()
        },
    );
    let m = mm.open_file(1).unwrap();
    let a = mm.create_space().unwrap();
    let b = mm.create_space().unwrap();
    let va_a = mmap_file(&mut mm, a, m, 2 * P, VmFlags::READ);
    let va_b = mm
        .mmap(
            b,
            None,
            P,
            VmFlags::READ | VmFlags::LOCKED,
            MapSource::File {
                mapping: m,
                offset: P,
            },
        )
        .unwrap();
    let mut buf = [0u8; 16];
    user_read(&mut mm, a, page_at(va_a, 1), &mut buf).unwrap();
    let pfn = mm.mapping(m).unwrap().lookup(1).unwrap();
    assert_eq!(mm.rmap(pfn).len(), 2, "mapped in both spaces, one locked");
    // The 0x1A fault names the absolute address of any byte in the frame.
    mm.discard_fault(PhysAddr::new(pfn.addr().as_u64() + 123))
        .unwrap();
    assert!(mm.rmap(pfn).is_empty());
    assert_eq!(mm.mapping(m).unwrap().lookup(1), None);
    assert!(mm.frames().is_free(pfn));
    let discards = mm
        .hooks()
        .events
        .iter()
        .filter(|e| **e == HookEvent::Discarded(pfn))
        .count();
    assert_eq!(discards, 1);
    assert!(mm.hooks().events.contains(&HookEvent::Freed(pfn)));
    assert_eq!(mm.stats().discards, 1);
    // A second discard of the (now free) frame does nothing.
    assert_eq!(mm.page_discard(pfn), Ok(()));
    assert_eq!(mm.stats().discards, 1);
    // 6/6: a discard fault on a page nobody references is retried, nothing more.
    assert_eq!(mm.discard_fault(pfn.addr()), Ok(()));
    assert_eq!(mm.stats().discards, 1);
    assert!(mm.frames().is_free(pfn));
    // Both accesses refault and see the file contents again.
    user_read(&mut mm, a, page_at(va_a, 1), &mut buf).unwrap();
    assert_eq!(check_pattern(1, P, &buf), Ok(()));
    user_read(&mut mm, b, va_b, &mut buf).unwrap();
    assert_eq!(check_pattern(1, P, &buf), Ok(()));
}

#[test]
fn a_pinned_page_keeps_its_frame_until_released() {
    let (mut mm, m) = mm_with_file(64, 1, P);
    let (pfn, _) = mm.read_cache_page(m, 0).unwrap();
    assert_eq!(mm.page_discard(pfn), Ok(()));
    assert_eq!(mm.page_discard(pfn), Ok(()));
    assert_eq!(mm.stats().discards, 1, "once per page");
    assert!(!mm.frames().is_free(pfn), "still referenced");
    assert_eq!(mm.page(pfn).unwrap().mapping(), None);
    assert!(!mm.page(pfn).unwrap().test(PageFlags::LRU));
    // A release must not put it back on the LRU.
    mm.lru_cache_add(pfn);
    assert!(!mm.page(pfn).unwrap().test(PageFlags::LRU));
    mm.put_page(pfn);
    assert!(mm.frames().is_free(pfn));
}

#[test]
fn dirty_writeback_and_private_pages_are_never_discarded() {
    // 1/6: VM_BUG_ON(PageDirty || PageWriteback || PagePrivate). The breach is
    // refused and recorded; the page keeps its data, flags and place in the cache.
    let cases = [
        (PageFlags::DIRTY, Bug::DiscardDirty as fn(Pfn) -> Bug),
        (PageFlags::WRITEBACK, Bug::DiscardWriteback),
        (PageFlags::PRIVATE, Bug::DiscardPrivate),
    ];
    for (flag, bug) in cases {
        let (mut mm, m) = mm_with_file(64, 1, P);
        let (pfn, _) = mm.read_cache_page(m, 0).unwrap();
        mm.frames.pages_mut()[pfn].set(flag);
        assert_eq!(mm.page_discard(pfn), Err(MmError::Bug(bug(pfn))));
        assert_eq!(mm.bugs(), [bug(pfn)]);
        assert_eq!(mm.stats().bugs, 1);
        assert_eq!(mm.stats().discards, 0);
        let page = mm.page(pfn).unwrap();
        assert!(page.test(flag));
        assert!(!page.test(PageFlags::DISCARDED));
        assert_eq!(mm.mapping(m).unwrap().lookup(0), Some(pfn));
        // The discard fault reports it (the test that took it fails).
        assert_eq!(mm.discard_fault(pfn.addr()), Err(MmError::Bug(bug(pfn))));
        assert_eq!(mm.take_bugs().len(), 2);
        assert!(mm.bugs().is_empty());
    }
}

/// A page the host discarded after it was last made stable, cached at page 0 of a
/// mapped file and then unmapped again; with grace periods held open.
fn discarded_behind_the_guests_back() -> (crate::mm::testing::TestMm, MappingId, Pfn) {
    let mut mm = test_mm(
        64,
        &[(1, 2 * P)],
        RecordingHooks {
            grace_held: true,
            ..Default::default()
        },
    );
    let m = mm.open_file(1).unwrap();
    let (pfn, _) = mm.read_cache_page(m, 0).unwrap();
    mm.put_page(pfn);
    mm.hooks_mut().discarded.insert(pfn);
    (mm, m, pfn)
}

#[test]
fn truncating_a_page_the_host_discarded_defers_its_frame() {
    // 1/6 `__remove_from_page_cache`: truncation frees a clean page without making it
    // stable; if the host had discarded it, another CPU may still hold the frame's
    // absolute address from a discard fault, so the frame waits for a grace period.
    let (mut mm, m, pfn) = discarded_behind_the_guests_back();
    mm.truncate_inode_pages(m, 0).unwrap();
    assert!(!mm.frames().is_free(pfn));
    assert_eq!(mm.frames().deferred_count(), 1);
    assert_eq!(mm.stats().freed_discarded, 1);
    assert_eq!(mm.stats().discards, 0, "no page_discard ran");
    // That CPU's discard fault then finds a frame nobody references.
    assert_eq!(mm.discard_fault(pfn.addr()), Ok(()));
    assert_eq!(mm.stats().discards, 0);
    mm.hooks_mut().grace_held = false;
    mm.reap_deferred();
    assert!(mm.frames().is_free(pfn));
}

/// With every frame taken but one that waits for a grace period (another CPU still
/// inside a discard fault), an allocation waits for the grace period instead of failing;
/// if the grace period does not end, it fails with OutOfMemory.
#[test]
fn an_allocation_waits_for_the_grace_period_of_the_only_frame_left() {
    for ends in [true, false] {
        let (mut mm, m, pfn) = discarded_behind_the_guests_back();
        mm.truncate_inode_pages(m, 0).unwrap();
        assert_eq!(mm.frames().deferred_count(), 1);
        mm.set_watermarks(0, 0);
        let mut taken = Vec::new();
        while mm.frames().free_count() > 0 {
            taken.push(mm.alloc_page().unwrap());
        }
        mm.hooks_mut().grace_ends_on_wait = ends;
        let got = mm.alloc_page();
        assert_eq!(
            got,
            if ends {
                Ok(pfn)
            } else {
                Err(MmError::OutOfMemory)
            }
        );
        assert_eq!(mm.stats().grace_waits, u64::from(ends));
        assert!(mm.hooks().grace_waits >= 1);
    }
}

#[test]
fn reclaiming_a_page_the_host_discarded_defers_its_frame() {
    let (mut mm, _, pfn) = discarded_behind_the_guests_back();
    mm.deactivate(pfn);
    assert_eq!(
        mm.shrink_page(pfn),
        crate::mm::reclaim::ShrinkOutcome::Freed
    );
    assert!(!mm.frames().is_free(pfn));
    assert_eq!(mm.frames().deferred_count(), 1);
    assert_eq!(mm.stats().freed_discarded, 1);
}

#[test]
fn a_page_the_host_kept_is_freed_at_once() {
    let (mut mm, m, pfn) = discarded_behind_the_guests_back();
    mm.hooks_mut().discarded.clear();
    mm.truncate_inode_pages(m, 0).unwrap();
    assert!(mm.frames().is_free(pfn));
    assert_eq!(mm.frames().deferred_count(), 0);
    assert_eq!(mm.stats().freed_discarded, 0);
}
