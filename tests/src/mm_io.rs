//! `mm::io`: the page cache's asynchronous I/O on the machine. A read is in flight while
//! its page stays locked and another path that needs the page waits for it; a write is in
//! flight while its page is clean, unlocked and under writeback, and reclaim keeps it; an
//! error of the device (a block past its end) reaches every waiter as an error and leaves
//! no page with wrong data behind. Under `mm.backing=virtio` every transfer is a
//! virtio-blk request that ends by I/O interruption; on the initrd the copy is done at
//! once and its end reported at the next wait, so the same windows exist.
//!
//! Files: `MEDIUM` pages 200-207 (written ones get their pattern back), and device blocks
//! past the end of the backing store.

use crate::support::{
    device_bytes, flags_of, needs_mm, needs_virtio_backing, open_file, restore_pattern,
    uncached_medium_with_room,
};
use alloc::vec;
use kernel::mm::addr::{PAGE_SIZE, Pfn};
use kernel::mm::backing::{BlockDevice, check_pattern, files};
use kernel::mm::error::MmError;
use kernel::mm::machine::PhysMem;
use kernel::mm::page::PageFlags;
use kernel::mm::reclaim::ShrinkOutcome;
use kernel::vm::{self, KernelMm};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("mm::io");

/// A standard file: the tests read it, and put back the pattern where they write.
const FILE: u32 = files::MEDIUM;

/// The page's lock, up-to-date and writeback flags and whether its I/O is in flight.
fn io_state(mm: &KernelMm, pfn: Pfn) -> (bool, bool, bool, bool) {
    let flags = mm.page(pfn).map(|p| p.flags()).unwrap_or_default();
    (
        flags.contains(PageFlags::LOCKED),
        flags.contains(PageFlags::UPTODATE),
        flags.contains(PageFlags::WRITEBACK),
        mm.io_in_flight(pfn),
    )
}

ktest! {
    /// A page whose read is in flight is locked and not up to date; `read_file` of the
    /// same bytes from another path finds it, waits for the read and returns the file's
    /// bytes; one device read serves both. `lock_page` waits for a read the same way.
    /// Guards `wait_uptodate` on the cache-hit path and `lock_page`'s wait.
    fn a_second_reader_waits_for_the_read_in_flight(t) {
        if !needs_mm(t) { return; }
        let result = vm::with(|mm| {
            let m = open_file(mm, FILE);
            // Pages 203 and 204 must be read: drop them if an earlier test cached them
            // (written back first: nothing of the file is lost).
            mm.sync_mapping(m)?;
            mm.truncate_inode_pages(m, 203)?;
            let reads = mm.device().stats().reads;
            let pfn = mm.start_read_page(m, 203)?;
            let during = io_state(mm, pfn);
            let mut buf = vec![0u8; 300];
            let n = mm.read_file(m, 203 * PAGE_SIZE + 1000, &mut buf)?;
            let after = io_state(mm, pfn);
            let finished = mm.finish_read_page(pfn);
            mm.put_page(pfn);
            let one_read = mm.device().stats().reads - reads;
            // `lock_page` on a page being read.
            let pfn = mm.start_read_page(m, 204)?;
            let locked_during = io_state(mm, pfn);
            mm.lock_page(pfn);
            let locked_after = io_state(mm, pfn);
            let contents = check_pattern(FILE, 204 * PAGE_SIZE, mm.machine().frame_ref(pfn));
            mm.unlock_page(pfn);
            mm.put_page(pfn);
            Ok::<_, MmError>((during, n, check_pattern(FILE, 203 * PAGE_SIZE + 1000, &buf), after, finished, one_read, locked_during, locked_after, contents))
        });
        let Ok((during, n, bytes, after, finished, one_read, locked_during, locked_after, contents)) = result else {
            check!(t, false, "{:?}", result);
            return;
        };
        check_eq!(t, during, (true, false, false, true));
        check_eq!(t, n, 300);
        check_eq!(t, bytes, Ok(()));
        check_eq!(t, after, (false, true, false, false));
        check_eq!(t, finished, Ok(()));
        check_eq!(t, one_read, 1);
        check_eq!(t, locked_during, (true, false, false, true));
        check_eq!(t, locked_after, (true, true, false, false));
        check_eq!(t, contents, Ok(()));
    }
}

ktest! {
    /// A page whose write is in flight is clean, unlocked and under writeback; reclaim
    /// keeps it; the write's end clears the writeback and the data is on the device.
    /// Guards `start_writeback` (the writeback set before the unlock and kept until the
    /// write's end) and the shrink check.
    fn a_page_under_writeback_is_kept_until_the_write_ends(t) {
        if !needs_mm(t) { return; }
        let data = [0x6du8; 24];
        let offset = 207 * PAGE_SIZE + 40;
        let result = vm::with(|mm| {
            let m = open_file(mm, FILE);
            mm.write_file(m, offset, &data)?;
            let pfn = mm.find_lock_page(m, 207).ok_or(MmError::NoSuchObject)?;
            let dirty = mm.start_writeback(pfn)?;
            let during = io_state(mm, pfn);
            mm.put_page(pfn);
            let shrink = mm.shrink_page(pfn);
            let ended = mm.wait_on_page_writeback(pfn);
            let after = io_state(mm, pfn);
            Ok::<_, MmError>((m, pfn, dirty, during, shrink, ended, after, device_bytes(mm, m, offset, data.len())))
        });
        let Ok((m, pfn, dirty, during, shrink, ended, after, on_device)) = result else {
            check!(t, false, "{:?}", result);
            return;
        };
        check!(t, dirty, "the written page was not dirty");
        check_eq!(t, during, (false, true, true, true));
        check_eq!(t, shrink, ShrinkOutcome::Kept);
        check_eq!(t, ended, Ok(()));
        check_eq!(t, after, (false, true, false, false));
        check!(t, !flags_of(pfn).contains(PageFlags::DIRTY), "dirty after the write");
        check_eq!(t, on_device, data.to_vec());
        check_eq!(t, vm::with(|mm| restore_pattern(mm, m, offset, data.len())), Ok(()));
    }
}

ktest! {
    /// A read of a block past the end of the device is an error for the reader that
    /// started it and for one that waited on it, and no page of it stays cached; the
    /// block before it reads the device's bytes. Guards the error path of the read's end
    /// (`end_page_read` leaves the page not up to date) and `wait_uptodate`.
    fn a_read_past_the_end_of_the_device_is_an_error(t) {
        if !needs_mm(t) { return; }
        let result = vm::with(|mm| {
            let blocks = mm.device().blocks();
            let past = mm.open_device_range(blocks - 1, 2)?;
            let mut buf = [0u8; 16];
            let last = mm.read_file(past, 0, &mut buf);
            let expected = mm.device().peek(blocks - 1).map(|b| b[..16] == buf);
            let direct = mm.read_file(past, PAGE_SIZE, &mut buf);
            let pfn = mm.start_read_page(past, 1)?;
            let waiter = mm.read_file(past, PAGE_SIZE, &mut buf);
            let starter = mm.finish_read_page(pfn);
            let cached = mm.mapping(past).map(|c| c.nrpages());
            mm.truncate_inode_pages(past, 0)?;
            // The device still works.
            let after = mm.device().peek(0).map(|b| b[..8] == kernel::mm::backing::image::MAGIC);
            Ok::<_, MmError>((last, expected, direct, waiter, starter, cached, after))
        });
        let Ok((last, expected, direct, waiter, starter, cached, after)) = result else {
            check!(t, false, "{:?}", result);
            return;
        };
        check_eq!(t, last, Ok(16));
        check_eq!(t, expected, Ok(true));
        check!(t, matches!(direct, Err(MmError::Io(_))), "read past the end: {:?}", direct);
        check!(t, matches!(waiter, Err(MmError::Io(_))), "waiter: {:?}", waiter);
        check!(t, matches!(starter, Err(MmError::Io(_))), "starter: {:?}", starter);
        check_eq!(t, cached, Some(1));
        check_eq!(t, after, Ok(true));
    }
}

ktest! {
    /// A write of a block past the end of the device fails: the waiter gets the error
    /// and the page is dirty again (its data is only in memory). Guards the error path
    /// of the write's end (`end_page_write`).
    fn a_write_past_the_end_of_the_device_is_an_error(t) {
        if !needs_mm(t) { return; }
        let result = vm::with(|mm| {
            let blocks = mm.device().blocks();
            let past = mm.open_device_range(blocks, 1)?;
            let pfn = mm.alloc_page()?;
            mm.add_to_page_cache(pfn, past, 0)?;
            mm.machine_mut().frame(pfn).fill(0x77);
            mm.set_page_dirty(pfn);
            let started = mm.start_writeback(pfn);
            let during = io_state(mm, pfn);
            let ended = mm.wait_on_page_writeback(pfn);
            let dirty = flags_of_page(mm, pfn).contains(PageFlags::DIRTY);
            mm.put_page(pfn);
            mm.truncate_inode_pages(past, 0)?;
            Ok::<_, MmError>((started, during, ended, dirty))
        });
        let Ok((started, during, ended, dirty)) = result else {
            check!(t, false, "{:?}", result);
            return;
        };
        check_eq!(t, started, Ok(true));
        check_eq!(t, during, (false, false, true, true));
        check!(t, matches!(ended, Err(MmError::Io(_))), "write past the end: {:?}", ended);
        check!(t, dirty, "the page is clean after a failed write");
    }
}

fn flags_of_page(mm: &KernelMm, pfn: Pfn) -> PageFlags {
    mm.page(pfn).map(|p| p.flags()).unwrap_or_default()
}

ktest! {
    /// Under `mm.backing=virtio` a page read ends by I/O interruption: one unsolicited
    /// (alert) status of the disk's subchannel taken for it, none left pending, and the
    /// page cache's read counted once. Guards `VirtioDisk::collect` (a used request ends
    /// only after its notification was taken).
    fn page_transfers_end_by_interruption(t) {
        if !needs_virtio_backing(t) { return; }
        let Some(sid) = kernel::io::disk::with(|d| d.subchannel()) else {
            check!(t, false, "mm.backing=virtio without a disk");
            return;
        };
        kernel::arch::css::drain_pending();
        let before = kernel::io::channel::interruptions();
        let result = vm::with(|mm| {
            let m = open_file(mm, FILE);
            mm.sync_mapping(m)?;
            mm.truncate_inode_pages(m, 205)?;
            let pfn = mm.start_read_page(m, 205)?;
            let finished = mm.finish_read_page(pfn);
            mm.put_page(pfn);
            Ok::<_, MmError>(finished)
        });
        let after = kernel::io::channel::interruptions();
        check_eq!(t, result, Ok(Ok(())));
        check_eq!(t, after.unsolicited, before.unsolicited + 1);
        check_eq!(t, kernel::arch::css::tsch(sid), Ok(None));
    }
}

ktest! {
    /// More reads in flight than the virtio queue holds (16 descriptors, three per
    /// request): each start past the fifth waits for one to end; every page then holds
    /// the file's bytes, whichever order the waits come in. Guards the queue-full wait of
    /// `VirtioDisk::start` and the filing of ends another wait collected.
    fn many_reads_in_flight_all_end_with_the_files_bytes(t) {
        if !needs_mm(t) { return; }
        const FIRST: u64 = 220;
        const COUNT: u64 = 12;
        let result = vm::with(|mm| {
            let m = open_file(mm, FILE);
            mm.sync_mapping(m)?;
            mm.truncate_inode_pages(m, FIRST)?;
            let mut pages = alloc::vec::Vec::new();
            for index in FIRST..FIRST + COUNT {
                pages.push((index, mm.start_read_page(m, index)?));
            }
            let in_flight = mm.io_in_flight_count();
            let mut bad = alloc::vec::Vec::new();
            // Finish from the last: the first ones end inside the waits of the others.
            for &(index, pfn) in pages.iter().rev() {
                let finished = mm.finish_read_page(pfn);
                if finished.is_err() || check_pattern(FILE, index * PAGE_SIZE, mm.machine().frame_ref(pfn)).is_err() {
                    bad.push((index, finished));
                }
                mm.put_page(pfn);
            }
            Ok::<_, MmError>((in_flight, bad))
        });
        let Ok((in_flight, bad)) = result else {
            check!(t, false, "{:?}", result);
            return;
        };
        check!(t, in_flight >= 1, "no read in flight after the starts");
        check_eq!(t, bad, alloc::vec::Vec::new());
    }
}

ktest! {
    /// A request the device has used does not end before its interruption was taken:
    /// with I/O interruptions disabled the used ring shows the read done, yet collecting
    /// ends nothing; the interruption then ends it. Guards `VirtioDisk::collect`'s wait
    /// for the alert (completion by interruption, never by polling the ring alone).
    fn a_used_request_waits_for_its_interruption(t) {
        if !needs_virtio_backing(t) { return; }
        let result = vm::with(|mm| {
            let m = open_file(mm, FILE);
            mm.sync_mapping(m)?;
            mm.truncate_inode_pages(m, 206)?;
            let pfn = mm.start_read_page(m, 206)?;
            // Interruptions stay disabled: spin until the device used the request.
            let mut used = false;
            for _ in 0..10_000_000u32 {
                if kernel::io::disk::with(|d| d.device_used()) == Some(true) {
                    used = true;
                    break;
                }
                core::hint::spin_loop();
            }
            let ended_early = kernel::io::disk::with(|d| {
                d.collect();
                d.ended_transfers()
            });
            let finished = mm.finish_read_page(pfn);
            let contents = check_pattern(FILE, 206 * PAGE_SIZE, mm.machine().frame_ref(pfn));
            mm.put_page(pfn);
            Ok::<_, MmError>((used, ended_early, finished, contents))
        });
        check_eq!(t, result, Ok((true, Some(0), Ok(()), Ok(()))));
    }
}

ktest! {
    /// Requests whose notification was held back reach the device whenever the disk
    /// looks for ends, not only at the memory manager's poll: a synchronous read behind
    /// a started page read (`VirtioDisk::transfer_now`), and the 17th and 18th of 18 page
    /// reads started at once, which wait for a slot in the 16-entry queue
    /// (`VirtioDisk::wait_for_one`); every page ends with the file's bytes. Guards the
    /// flush in `VirtioDisk::collect` (without it each of these waits forever).
    fn held_notifications_reach_the_device_on_every_wait(t) {
        if !needs_virtio_backing(t) { return; }
        const FIRST: u64 = 180;
        let result = vm::with(|mm| {
            let m = open_file(mm, FILE);
            mm.sync_mapping(m)?;
            mm.truncate_inode_pages(m, FIRST)?;
            let started = mm.start_read_page(m, FIRST)?;
            let behind = device_bytes(mm, m, (FIRST + 1) * PAGE_SIZE, PAGE_SIZE as usize);
            let behind = check_pattern(FILE, (FIRST + 1) * PAGE_SIZE, &behind);
            let mut pages = vec![(FIRST, started)];
            for index in FIRST + 2..FIRST + 19 {
                pages.push((index, mm.start_read_page(m, index)?));
            }
            let mut bad = alloc::vec::Vec::new();
            for (index, pfn) in pages {
                mm.finish_read_page(pfn)?;
                if check_pattern(FILE, index * PAGE_SIZE, mm.machine().frame_ref(pfn)).is_err() {
                    bad.push(index);
                }
                mm.put_page(pfn);
            }
            Ok::<_, MmError>((behind, bad))
        });
        check_eq!(t, result, Ok((Ok(()), alloc::vec::Vec::new())));
    }
}

ktest! {
    /// A miss and its readahead reach the virtio-blk device at one notification: 16
    /// pages read cold are 16 requests and one DIAGNOSE 0x500, sent when the reader
    /// first waits. Guards `Notifications`' hold in `VirtioDisk::start` (without it: 16
    /// notifications). In this suite, not `mm::page_cache`: that one must skip nothing on
    /// the initrd (the z/VM deck's test on Hercules runs it there).
    fn a_readahead_batch_reaches_the_device_at_one_notification(t) {
        if !needs_virtio_backing(t) { return; }
        let r = vm::with(|mm| {
            let medium = uncached_medium_with_room(mm);
            let sent = || kernel::io::disk::with(|d| d.notifications()).unwrap_or(0);
            let (reads, notifications) = (mm.device().stats().reads, sent());
            let mut buf = vec![0u8; 16 * PAGE_SIZE as usize];
            let read = mm.read_file(medium, 0, &mut buf);
            let content = check_pattern(files::MEDIUM, 0, &buf);
            (read, content, mm.device().stats().reads - reads, sent() - notifications)
        });
        check_eq!(t, r, (Ok(16 * PAGE_SIZE as usize), Ok(()), 16, 1));
    }
}
