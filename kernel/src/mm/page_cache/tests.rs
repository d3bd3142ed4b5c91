use super::*;
use crate::mm::backing::{check_pattern, fill_pattern, pattern_byte};
use crate::mm::hooks::{StablePoint, VolatilePoint};
use crate::mm::machine::PhysMem;
use crate::mm::testing::mm_with_file;

#[test]
fn read_file_goes_through_the_cache_and_matches_the_pattern() {
    let (mut mm, m) = mm_with_file(128, 7, 5 * 4096 + 100);
    assert_eq!(mm.open_file(7).unwrap(), m, "one mapping per file");
    let mut buf = alloc::vec![0u8; 5 * 4096 + 200];
    let n = mm.read_file(m, 0, &mut buf).unwrap();
    assert_eq!(n, 5 * 4096 + 100, "short read at EOF");
    assert_eq!(check_pattern(7, 0, &buf[..n]), Ok(()));
    assert_eq!(mm.mapping(m).unwrap().nrpages(), 6);
    let reads = mm.device().stats().reads;
    // A second read is served from the cache: no I/O.
    let mut part = [0u8; 300];
    mm.read_file(m, 4000, &mut part).unwrap();
    assert_eq!(check_pattern(7, 4000, &part), Ok(()));
    assert_eq!(mm.device().stats().reads, reads);
    // Each cached page holds exactly the cache's reference.
    for (_, pfn) in mm.mapping(m).unwrap().cached() {
        assert_eq!(mm.page(pfn).unwrap().refcount(), 1);
        assert!(mm.page(pfn).unwrap().test(PageFlags::UPTODATE));
        assert!(!mm.page(pfn).unwrap().test(PageFlags::LOCKED));
    }
    assert_eq!(mm.open_file(99), Err(MmError::NoSuchObject));
}

#[test]
fn the_tail_of_the_last_page_is_zero() {
    let (mut mm, m) = mm_with_file(64, 1, 4096 + 10);
    let (pfn, major) = mm.read_cache_page(m, 1).unwrap();
    assert!(major);
    assert!(
        !mm.machine().is_changed(pfn),
        "SetPageUptodate clears the change bit of the read"
    );
    let frame = mm.machine.frame_ref(pfn);
    assert!((0..10).all(|i| frame[i] == pattern_byte(1, 4096 + i as u64)));
    assert!(frame[10..].iter().all(|&b| b == 0));
    mm.put_page(pfn);
    assert_eq!(mm.read_cache_page(m, 2), Err(MmError::BeyondEof));
}

#[test]
fn lookups_take_references_and_make_pages_stable() {
    let (mut mm, m) = mm_with_file(64, 1, 3 * 4096);
    assert_eq!(mm.find_get_page(m, 0), None);
    let (pfn, _) = mm.read_cache_page(m, 0).unwrap();
    // A miss: LRU add and unlock are volatile points (refused for the reference we
    // hold: the page is stable for our copy); after readpage is the fault path's.
    let points = mm.hooks().volatile_points(pfn);
    assert_eq!(points, [VolatilePoint::LruAdd, VolatilePoint::Unlock]);
    mm.put_page(pfn);
    assert_eq!(
        mm.hooks().volatile_points(pfn).last(),
        Some(&VolatilePoint::CacheRelease)
    );
    let found = mm.find_get_page(m, 0).unwrap();
    assert_eq!(found, pfn);
    assert_eq!(mm.page(pfn).unwrap().refcount(), 2);
    assert_eq!(mm.hooks().stable_points(pfn), [StablePoint::Lookup]);
    mm.put_page(found);
    let locked = mm.find_lock_page(m, 0).unwrap();
    assert!(mm.page(locked).unwrap().test(PageFlags::LOCKED));
    mm.unlock_page(locked);
    mm.put_page(locked);
    assert_eq!(mm.page(pfn).unwrap().refcount(), 1);
}

#[test]
fn a_discarded_page_found_by_lookup_is_dropped_and_reloaded() {
    let (mut mm, m) = mm_with_file(64, 4, 2 * 4096);
    let (pfn, _) = mm.read_cache_page(m, 1).unwrap();
    mm.put_page(pfn);
    // The host throws the contents away.
    mm.machine_mut().frame(pfn).fill(0xee);
    mm.hooks_mut().discarded.insert(pfn);
    assert_eq!(mm.find_get_page(m, 1), None);
    assert_eq!(mm.mapping(m).unwrap().nrpages(), 0);
    assert!(mm.frames().is_free(pfn));
    let reads = mm.device().stats().reads;
    let mut buf = [0u8; 4096];
    mm.read_file(m, 4096, &mut buf).unwrap();
    assert_eq!(check_pattern(4, 4096, &buf), Ok(()));
    assert_eq!(mm.device().stats().reads, reads + 1);
}

#[test]
fn dirty_pages_are_written_back_and_survive_eviction() {
    let (mut mm, m) = mm_with_file(64, 2, 4 * 4096);
    let data = [0x5au8; 100];
    assert_eq!(mm.write_file(m, 4096 + 50, &data).unwrap(), 100);
    let pfn = mm.mapping(m).unwrap().lookup(1).unwrap();
    assert!(mm.page(pfn).unwrap().test(PageFlags::DIRTY));
    assert_eq!(mm.device().stats().writes, 0);
    mm.sync_mapping(m).unwrap();
    assert_eq!(mm.device().stats().writes, 1);
    assert!(!mm.page(pfn).unwrap().test(PageFlags::DIRTY));
    assert!(
        mm.hooks()
            .volatile_points(pfn)
            .contains(&VolatilePoint::EndWriteback)
    );
    // The device now holds the new bytes inside the old pattern.
    let start = mm.mapping(m).unwrap().file().start_block as usize * 4096 + 4096;
    let disk = &mm.device().storage()[start..start + 4096];
    assert_eq!(&disk[50..150], &data);
    assert_eq!(check_pattern(2, 4096, &disk[..50]), Ok(()));
    // Drop the cache and read again from the device.
    mm.truncate_inode_pages(m, 0).unwrap();
    assert_eq!(mm.mapping(m).unwrap().nrpages(), 0);
    let mut buf = [0u8; 200];
    mm.read_file(m, 4096, &mut buf).unwrap();
    assert_eq!(&buf[50..150], &data);
    let mut expect = [0u8; 50];
    fill_pattern(2, 4096 + 150, &mut expect);
    assert_eq!(&buf[150..200], &expect);
}

#[test]
fn truncate_drops_dirty_data_and_frees_frames() {
    let (mut mm, m) = mm_with_file(64, 3, 4 * 4096);
    let free = mm.frames().free_count();
    mm.write_file(m, 0, &[1u8; 4096 * 4]).unwrap();
    assert_eq!(mm.frames().free_count(), free - 4);
    mm.truncate_inode_pages(m, 2).unwrap();
    assert_eq!(mm.mapping(m).unwrap().nrpages(), 2);
    assert_eq!(mm.frames().free_count(), free - 2);
    mm.truncate_inode_pages(m, 0).unwrap();
    assert_eq!(mm.frames().free_count(), free);
    assert_eq!(mm.device().stats().writes, 0);
    let mut buf = [0u8; 4096];
    mm.read_file(m, 3 * 4096, &mut buf).unwrap();
    assert_eq!(
        check_pattern(3, 3 * 4096, &buf),
        Ok(()),
        "dirty data was dropped"
    );
    assert_eq!(mm.lru().inactive_len() + mm.lru().active_len(), 1);
}
