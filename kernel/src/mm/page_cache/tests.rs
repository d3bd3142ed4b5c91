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
    let disk = &mm.device().inner().storage()[start..start + 4096];
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

#[test]
fn a_page_being_read_stays_locked_and_a_second_reader_waits_for_it() {
    let (mut mm, m) = mm_with_file(64, 3, 4 * 4096);
    let pfn = mm.start_read_page(m, 1).unwrap();
    let page = mm.page(pfn).unwrap();
    assert!(page.test(PageFlags::LOCKED) && !page.test(PageFlags::UPTODATE));
    assert!(mm.io_in_flight(pfn));
    let reads = mm.device().stats().reads;
    // Another path reads the same bytes: it finds the page and waits for the read.
    let mut buf = [0u8; 100];
    assert_eq!(mm.read_file(m, 4096 + 10, &mut buf), Ok(100));
    assert_eq!(check_pattern(3, 4096 + 10, &buf), Ok(()));
    assert_eq!(mm.device().stats().reads, reads, "one read for both");
    assert!(!mm.io_in_flight(pfn));
    let page = mm.page(pfn).unwrap();
    assert!(!page.test(PageFlags::LOCKED) && page.test(PageFlags::UPTODATE));
    assert_eq!(mm.finish_read_page(pfn), Ok(()));
    mm.put_page(pfn);
    // `lock_page` waits too.
    let pfn = mm.start_read_page(m, 2).unwrap();
    mm.lock_page(pfn);
    assert!(mm.page(pfn).unwrap().test(PageFlags::UPTODATE));
    assert!(!mm.io_in_flight(pfn));
    mm.unlock_page(pfn);
    mm.put_page(pfn);
}

#[test]
fn writeback_in_flight_keeps_the_page_under_writeback_until_its_end() {
    let (mut mm, m) = mm_with_file(64, 3, 4 * 4096);
    mm.write_file(m, 2 * 4096, &[0xc3; 16]).unwrap();
    let pfn = mm.find_lock_page(m, 2).unwrap();
    assert_eq!(mm.start_writeback(pfn), Ok(true));
    let page = mm.page(pfn).unwrap();
    assert!(page.test(PageFlags::WRITEBACK));
    assert!(!page.test(PageFlags::LOCKED) && !page.test(PageFlags::DIRTY));
    assert!(mm.io_in_flight(pfn));
    assert_eq!(mm.stats().writebacks, 0, "not ended yet");
    // Unlocked under writeback: the volatile attempt comes, the writeback refuses it.
    assert_eq!(
        mm.hooks().volatile_points(pfn).last(),
        Some(&VolatilePoint::Unlock)
    );
    mm.put_page(pfn);
    // Reclaim leaves it alone.
    assert_eq!(mm.shrink_page(pfn), crate::mm::reclaim::ShrinkOutcome::Kept);
    assert_eq!(mm.wait_on_page_writeback(pfn), Ok(()));
    assert!(!mm.page(pfn).unwrap().test(PageFlags::WRITEBACK));
    assert_eq!(mm.stats().writebacks, 1);
    assert_eq!(
        mm.hooks().volatile_points(pfn).last(),
        Some(&VolatilePoint::EndWriteback)
    );
    let start = mm.mapping(m).unwrap().file().block_of(2).unwrap() as usize * 4096;
    assert_eq!(mm.device().inner().storage()[start..start + 16], [0xc3; 16]);
}

#[test]
fn device_errors_surface_as_errors_never_as_data() {
    let (mut mm, m) = mm_with_file(64, 3, 4 * 4096);
    let blocks = mm.device().blocks();
    let past = mm.open_device_range(blocks - 1, 2).unwrap();
    assert_eq!(
        mm.open_file(crate::mm::manager::DEVICE_RANGE_FILE_ID),
        Err(MmError::NoSuchObject)
    );
    let free = mm.frames().free_count();
    let mut buf = [0u8; 8];
    // The last block reads; the one after it is an error, and nothing is cached.
    assert_eq!(mm.read_file(past, 0, &mut buf), Ok(8));
    let error = MmError::Io(IoError::OutOfRange { block: blocks });
    let beyond = Err(error);
    assert_eq!(mm.read_file(past, 4096, &mut buf), beyond);
    assert_eq!(mm.mapping(past).unwrap().nrpages(), 1);
    assert_eq!(mm.frames().free_count(), free - 1);
    // A reader that started the read and one that waited on it both see the error.
    let pfn = mm.start_read_page(past, 1).unwrap();
    assert_eq!(mm.read_file(past, 4096, &mut buf), beyond);
    assert_eq!(mm.finish_read_page(pfn), Err(error));
    assert_eq!(mm.mapping(past).unwrap().nrpages(), 1);
    assert_eq!(mm.frames().free_count(), free - 1);
    // A write past the end fails and leaves the page dirty.
    let pfn = mm.alloc_page().unwrap();
    mm.add_to_page_cache(pfn, past, 1).unwrap();
    mm.set_page_dirty(pfn);
    assert_eq!(mm.start_writeback(pfn), Ok(true));
    let page = mm.page(pfn).unwrap();
    assert!(page.test(PageFlags::WRITEBACK) && !page.test(PageFlags::DIRTY));
    assert_eq!(mm.wait_on_page_writeback(pfn), Err(error));
    assert!(
        mm.page(pfn).unwrap().test(PageFlags::DIRTY),
        "the data is still only in memory"
    );
    mm.put_page(pfn);
    mm.truncate_inode_pages(past, 0).unwrap();
    mm.truncate_inode_pages(m, 0).unwrap();
    assert_eq!(mm.frames().free_count(), free, "every page freed");
}

#[test]
fn read_file_reads_ahead_within_the_request_up_to_a_cached_page() {
    let (mut mm, m) = mm_with_file(128, 7, 40 * 4096);
    let (third, _) = mm.read_cache_page(m, 3).unwrap();
    mm.put_page(third);
    let reads = mm.device().stats().reads;
    let mut buf = alloc::vec![0u8; 8 * 4096];
    assert_eq!(mm.read_file(m, 0, &mut buf), Ok(8 * 4096));
    assert_eq!(check_pattern(7, 0, &buf), Ok(()));
    // Pages 1-2 ahead of page 0, stopped by page 3; pages 5-7 ahead of page 4.
    assert_eq!(mm.stats().readahead, 5);
    assert_eq!(mm.device().stats().reads, reads + 7);
    let cached: Vec<bool> = (0..10)
        .map(|i| mm.mapping(m).unwrap().lookup(i).is_some())
        .collect();
    assert_eq!(
        cached,
        [true, true, true, true, true, true, true, true, false, false]
    );
    for (_, pfn) in mm.mapping(m).unwrap().cached() {
        assert_eq!(
            mm.page(pfn).unwrap().refcount(),
            1,
            "only the cache's reference"
        );
    }
    // A longer request: at most READ_AHEAD pages ahead of each miss, none past its end.
    let mut long = alloc::vec![0u8; 30 * 4096];
    assert_eq!(mm.read_file(m, 10 * 4096, &mut long), Ok(30 * 4096));
    assert_eq!(check_pattern(7, 10 * 4096, &long), Ok(()));
    let second_miss = 10 + READ_AHEAD + 1;
    assert_eq!(mm.stats().readahead, 5 + READ_AHEAD + (39 - second_miss));
}

#[test]
fn a_failed_read_ahead_fails_the_request_and_leaks_nothing() {
    let (mut mm, _) = mm_with_file(64, 3, 4 * 4096);
    let blocks = mm.device().blocks();
    let past = mm.open_device_range(blocks - 1, 2).unwrap();
    let free = mm.frames().free_count();
    let mut buf = alloc::vec![0u8; 2 * 4096];
    // Page 1, read ahead of page 0, lies past the device.
    assert_eq!(
        mm.read_file(past, 0, &mut buf),
        Err(MmError::Io(IoError::OutOfRange { block: blocks }))
    );
    assert_eq!(mm.stats().readahead, 1);
    assert_eq!(
        mm.mapping(past).unwrap().nrpages(),
        1,
        "page 0 stays cached"
    );
    assert_eq!(mm.frames().free_count(), free - 1);
    mm.truncate_inode_pages(past, 0).unwrap();
    assert_eq!(mm.frames().free_count(), free, "every page freed");
}

#[test]
fn readahead_takes_no_frame_at_or_below_the_low_watermark() {
    let (mut mm, m) = mm_with_file(128, 7, 40 * 4096);
    let low = mm.config().low_watermark;
    let mut held = Vec::new();
    while mm.frames().free_count() > low + 2 {
        held.push(mm.alloc_page().unwrap());
    }
    let reclaims = mm.stats().watermark_reclaims;
    let mut buf = alloc::vec![0u8; 3 * 4096];
    assert_eq!(mm.read_file(m, 0, &mut buf), Ok(3 * 4096));
    assert_eq!(check_pattern(7, 0, &buf), Ok(()));
    // Page 0 takes a frame (low + 1 left), page 1 is read ahead (low left), and page 2
    // is not: it is read when asked for, without reclaim.
    assert_eq!(mm.stats().readahead, 1);
    assert_eq!(mm.stats().watermark_reclaims, reclaims);
    for pfn in held {
        mm.put_page(pfn);
    }
}
