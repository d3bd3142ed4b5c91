//! `mm::page_cache`: the page cache over the backing store on the machine: reads match
//! the file pattern and stop at EOF (the partial last page zero-filled), lookups hit
//! cached frames without I/O, cached frames are accounted and truncation frees them,
//! writes dirty pages and writeback puts the bytes on the device, and a shared mapping
//! and `read_file`/`write_file` see the same page.
//!
//! Tests that write a standard file put its pattern back (and write it back) before
//! they end, so every later suite still finds the pattern.

use crate::support::{
    cached_in, device_bytes, model_counters, needs_mm, needs_model, open_file, restore_pattern,
    strike_only_new_hints, uncached_medium_with_room,
};
use alloc::vec;
use alloc::vec::Vec;
use kernel::arch::uaccess;
use kernel::cmma::backend::with_model;
use kernel::cmma::model::{DiscardRate, DiscardSchedule};
use kernel::mm::addr::{PAGE_SIZE, VirtAddr};
use kernel::mm::backing::{BlockDevice, check_pattern, files, fill_pattern, pattern_byte};
use kernel::mm::error::MmError;
use kernel::mm::machine::PhysMem;
use kernel::mm::mmap::MapSource;
use kernel::mm::page::PageFlags;
use kernel::mm::vma::VmFlags;
use kernel::vm::{self, KernelMm, UserSpace};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("mm::page_cache");

/// The file's pattern with every byte inverted: data no page of any file holds.
fn inverted(file: u32, offset: u64, len: usize) -> Vec<u8> {
    let mut data = vec![0; len];
    fill_pattern(file, offset, &mut data);
    data.iter_mut().for_each(|b| *b = !*b);
    data
}

/// Reads `len` bytes of `file` at `offset` through the page cache, in 64 KiB pieces,
/// and returns the offset of the first byte that is not the pattern.
fn verify_read_file(mm: &mut KernelMm, file: u32, offset: u64, len: u64) -> Result<(), u64> {
    let mapping = open_file(mm, file);
    let mut buf = vec![0u8; 64 << 10];
    let mut pos = offset;
    while pos < offset + len {
        let n = (offset + len - pos).min(buf.len() as u64) as usize;
        let got = mm.read_file(mapping, pos, &mut buf[..n]).map_err(|_| pos)?;
        if got != n {
            return Err(pos + got as u64);
        }
        check_pattern(file, pos, &buf[..n])?;
        pos += n as u64;
    }
    Ok(())
}

ktest! {
    /// `read_file` returns the file's bytes and stops short at EOF (nothing at or past
    /// it); the partial last page maps and reads as zero past EOF. Guards
    /// `Mm::read_file` (offsets, short count) and `read_cache_page`'s EOF limit.
    fn reads_match_pattern_and_stop_at_eof(t) {
        if !needs_mm(t) { return; }
        let size = 3 * PAGE_SIZE + 100;
        let (medium, whole, at_eof, beyond) = vm::with(|mm| {
            let medium = verify_read_file(mm, files::MEDIUM, 0, 1 << 20);
            let partial = open_file(mm, files::PARTIAL);
            let mut buf = vec![0u8; 4 * PAGE_SIZE as usize];
            let whole = mm.read_file(partial, 0, &mut buf).map(|n| (n, check_pattern(files::PARTIAL, 0, &buf[..n])));
            let at_eof = mm.read_file(partial, size, &mut buf);
            let beyond = mm.read_file(partial, size + 5000, &mut buf);
            (medium, whole, at_eof, beyond)
        });
        check_eq!(t, medium, Ok(()));
        check_eq!(t, whole, Ok((size as usize, Ok(()))));
        check_eq!(t, at_eof, Ok(0));
        check_eq!(t, beyond, Ok(0));
        let space = UserSpace::new().expect("space");
        let va = vm::with(|mm| {
            let mapping = mm.open_file(files::PARTIAL)?;
            mm.mmap(space.id(), None, 4 * PAGE_SIZE, VmFlags::READ, MapSource::File { mapping, offset: 0 })
        })
        .expect("mmap");
        let mut last = vec![0u8; PAGE_SIZE as usize];
        space.enter();
        uaccess::read_bytes(VirtAddr::new(va.as_u64() + 3 * PAGE_SIZE), &mut last);
        space.leave();
        check_eq!(t, check_pattern(files::PARTIAL, 3 * PAGE_SIZE, &last[..100]), Ok(()));
        let nonzero = last[100..].iter().position(|&b| b != 0);
        check_eq!(t, nonzero, None);
    }
}

ktest! {
    /// A miss reads the device once; afterwards `find_get_page` finds the frame (with
    /// the file's bytes and one more reference), `find_lock_page` locks it, and reading
    /// again does no I/O. Guards `find_get_page`/`find_lock_page`, `add_to_page_cache`
    /// and the cache hit in `read_cache_page`.
    fn lookups_hit_cached_pages_without_io(t) {
        if !needs_mm(t) { return; }
        let r = vm::with(|mm| {
            let small = open_file(mm, files::SMALL);
            mm.truncate_inode_pages(small, 0).expect("truncate");
            let empty = mm.mapping(small).map(|m| m.nrpages());
            let miss = mm.find_get_page(small, 3);
            let reads0 = mm.device().stats().reads;
            let mut buf = vec![0u8; PAGE_SIZE as usize];
            let first = mm.read_file(small, 3 * PAGE_SIZE, &mut buf);
            let reads1 = mm.device().stats().reads;
            let cached = mm.mapping(small).and_then(|m| m.lookup(3));
            let found = mm.find_get_page(small, 3);
            let refs = found.and_then(|p| mm.page(p)).map(|p| p.refcount());
            let frame_ok = found.map(|p| check_pattern(files::SMALL, 3 * PAGE_SIZE, mm.machine().frame_ref(p)));
            if let Some(p) = found {
                mm.put_page(p);
            }
            let refs_after = cached.and_then(|p| mm.page(p)).map(|p| p.refcount());
            let locked = mm.find_lock_page(small, 3);
            let is_locked = locked.and_then(|p| mm.page(p)).map(|p| p.test(PageFlags::LOCKED));
            if let Some(p) = locked {
                mm.unlock_page(p);
                mm.put_page(p);
            }
            let second = mm.read_file(small, 3 * PAGE_SIZE, &mut buf);
            let reads2 = mm.device().stats().reads;
            let content = check_pattern(files::SMALL, 3 * PAGE_SIZE, &buf);
            (empty, miss, first, reads1 - reads0, cached, found, refs, refs_after, frame_ok, is_locked, second, reads2 - reads1, content)
        });
        let (empty, miss, first, miss_io, cached, found, refs, refs_after, frame_ok, is_locked, second, hit_io, content) = r;
        check_eq!(t, empty, Some(0));
        check_eq!(t, miss, None);
        check_eq!(t, first, Ok(PAGE_SIZE as usize));
        check_eq!(t, miss_io, 1);
        check!(t, cached.is_some() && found == cached, "cached {cached:?} found {found:?}");
        check_eq!(t, refs, refs_after.map(|n| n + 1));
        check_eq!(t, frame_ok, Some(Ok(())));
        check_eq!(t, is_locked, Some(true));
        check_eq!(t, second, Ok(PAGE_SIZE as usize));
        check_eq!(t, hit_io, 0);
        check_eq!(t, content, Ok(()));
    }
}

ktest! {
    /// Readahead (`read_file`): a miss starts the reads of the request's following pages
    /// up to the first one that is cached, never past the request, and every byte read
    /// is right. Eight pages with the fourth cached: pages 1-2 are read ahead of page 0,
    /// pages 5-7 ahead of page 4, and page 8, past the request, is not read. Guards the
    /// bounds of `Mm::read_ahead`.
    fn a_miss_reads_the_rest_of_the_request_ahead_and_no_further(t) {
        if !needs_mm(t) { return; }
        let r = vm::with(|mm| {
            // Readahead takes only frames free above the low watermark: room first.
            let medium = uncached_medium_with_room(mm);
            let mut page = vec![0u8; PAGE_SIZE as usize];
            mm.read_file(medium, 3 * PAGE_SIZE, &mut page).expect("read page 3");
            let ahead = mm.stats().readahead;
            let mut buf = vec![0u8; 8 * PAGE_SIZE as usize];
            let read = mm.read_file(medium, 0, &mut buf);
            let cached: Vec<bool> = (0..10).map(|i| cached_in(mm, medium, i).is_some()).collect();
            (read, check_pattern(files::MEDIUM, 0, &buf), mm.stats().readahead - ahead, cached)
        });
        let (read, content, ahead, cached) = r;
        check_eq!(t, read, Ok(8 * PAGE_SIZE as usize));
        check_eq!(t, content, Ok(()));
        check_eq!(t, ahead, 5);
        check_eq!(t, cached, [true, true, true, true, true, true, true, true, false, false]);
    }
}

ktest! {
    /// Each cached page holds exactly one frame: reading 32 new pages allocates 32
    /// frames, truncating from page 16 frees 16 and drops exactly those indices, and
    /// truncating the rest frees the others. Guards the page cache's reference in
    /// `add_to_page_cache`/`truncate_inode_pages` and the free in `Mm::put_page`.
    fn truncate_frees_cached_frames(t) {
        if !needs_mm(t) { return; }
        let r = vm::with(|mm| {
            let medium = uncached_medium_with_room(mm);
            let base = mm.frames().allocated_count();
            let mut buf = vec![0u8; 32 * PAGE_SIZE as usize];
            let read = mm.read_file(medium, 0, &mut buf);
            let content = check_pattern(files::MEDIUM, 0, &buf);
            let after_read = mm.frames().allocated_count() - base;
            mm.truncate_inode_pages(medium, 16).expect("truncate");
            let after_half = mm.frames().allocated_count() - base;
            let map = mm.mapping(medium).expect("mapping");
            let present: Vec<bool> = (0..32).map(|i| map.lookup(i).is_some()).collect();
            let nrpages = map.nrpages();
            mm.truncate_inode_pages(medium, 0).expect("truncate");
            let after_all = mm.frames().allocated_count() as i64 - base as i64;
            (read, content, after_read, after_half, present, nrpages, after_all)
        });
        let (read, content, after_read, after_half, present, nrpages, after_all) = r;
        check_eq!(t, read, Ok(32 * PAGE_SIZE as usize));
        check_eq!(t, content, Ok(()));
        check_eq!(t, after_read, 32);
        check_eq!(t, after_half, 16);
        check_eq!(t, nrpages, 16);
        check!(t, present.iter().enumerate().all(|(i, &p)| p == (i < 16)), "{present:?}");
        check_eq!(t, after_all, 0);
    }
}

ktest! {
    /// `write_file` dirties the pages it writes (across a page boundary), reads see the
    /// new bytes at once, `sync_mapping` writes exactly the dirty pages to the device,
    /// and after truncation a read from the device returns the new bytes. The pattern
    /// is put back at the end. Guards `set_page_dirty` in `write_file` and the device
    /// write in `write_one_page`.
    fn written_pages_reach_the_device(t) {
        if !needs_mm(t) { return; }
        let offset = 5 * PAGE_SIZE - 100;
        let data = inverted(files::MEDIUM, offset, 300);
        let r = vm::with(|mm| {
            let medium = open_file(mm, files::MEDIUM);
            let written = mm.write_file(medium, offset, &data);
            let dirty: Vec<bool> = [4, 5]
                .iter()
                .map(|&i| {
                    mm.mapping(medium)
                        .and_then(|m| m.lookup(i))
                        .and_then(|p| mm.page(p))
                        .is_some_and(|p| p.test(PageFlags::DIRTY))
                })
                .collect();
            let mut cached = vec![0u8; 300];
            let read = mm.read_file(medium, offset, &mut cached);
            let device_before = device_bytes(mm, medium, offset, 300);
            let (writes0, wb0) = (mm.device().stats().writes, mm.stats().writebacks);
            let sync = mm.sync_mapping(medium);
            let (writes, wbs) = (mm.device().stats().writes - writes0, mm.stats().writebacks - wb0);
            let device_after = device_bytes(mm, medium, offset, 300);
            mm.truncate_inode_pages(medium, 0).expect("truncate");
            let mut reread = vec![0u8; 300];
            let reread_n = mm.read_file(medium, offset, &mut reread);
            let restore = restore_pattern(mm, medium, offset, 300);
            let device_restored = check_pattern(files::MEDIUM, offset, &device_bytes(mm, medium, offset, 300));
            (written, dirty, read, cached, device_before, sync, writes, wbs, device_after, reread_n, reread, restore, device_restored)
        });
        let (written, dirty, read, cached, device_before, sync, writes, wbs, device_after, reread_n, reread, restore, device_restored) = r;
        check_eq!(t, written, Ok(300));
        check_eq!(t, dirty, [true, true]);
        check_eq!(t, read, Ok(300));
        check!(t, cached == data, "cache does not hold the written bytes");
        check_eq!(t, check_pattern(files::MEDIUM, offset, &device_before), Ok(()));
        check_eq!(t, sync, Ok(()));
        check_eq!(t, (writes, wbs), (2, 2));
        check!(t, device_after == data, "device does not hold the written bytes after sync");
        check_eq!(t, reread_n, Ok(300));
        check!(t, reread == data, "reading back from the device lost the write");
        check_eq!(t, restore, Ok(()));
        check_eq!(t, device_restored, Ok(()));
    }
}

ktest! {
    /// A shared mapping and `read_file`/`write_file` use the same cache page: a
    /// `write_file` is visible through the mapping at once, a store through the mapping
    /// is visible to `read_file`, and unmapping then syncing puts the store on the
    /// device. Guards the write-notify fault on shared mappings (`do_wp_page`: write to
    /// the cache page, no copy).
    fn shared_mapping_and_file_io_share_pages(t) {
        if !needs_mm(t) { return; }
        let index = 7;
        let new = inverted(files::MEDIUM, index * PAGE_SIZE, 16);
        let stored = 0x5eed_0000_0000_cafe_u64;
        let space = UserSpace::new().expect("space");
        let va = vm::with(|mm| {
            let mapping = mm.open_file(files::MEDIUM)?;
            mm.mmap(space.id(), None, PAGE_SIZE, VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED, MapSource::File { mapping, offset: index * PAGE_SIZE })
        })
        .expect("mmap");
        space.enter();
        let original = uaccess::read_u8(va);
        let written = vm::with(|mm| {
            let medium = open_file(mm, files::MEDIUM);
            mm.write_file(medium, index * PAGE_SIZE, &new)
        });
        let mut seen = [0u8; 16];
        uaccess::read_bytes(va, &mut seen);
        uaccess::write_u64(VirtAddr::new(va.as_u64() + 2048), stored);
        space.leave();
        let mut via_read = [0u8; 8];
        let read = vm::with(|mm| {
            let medium = open_file(mm, files::MEDIUM);
            mm.read_file(medium, index * PAGE_SIZE + 2048, &mut via_read)
        });
        drop(space);
        let (sync, on_device, restore, restored) = vm::with(|mm| {
            let medium = open_file(mm, files::MEDIUM);
            let sync = mm.sync_mapping(medium);
            let on_device = device_bytes(mm, medium, index * PAGE_SIZE + 2048, 8);
            let restore = restore_pattern(mm, medium, index * PAGE_SIZE, PAGE_SIZE as usize);
            let restored = check_pattern(files::MEDIUM, index * PAGE_SIZE, &device_bytes(mm, medium, index * PAGE_SIZE, PAGE_SIZE as usize));
            (sync, on_device, restore, restored)
        });
        check_eq!(t, original, pattern_byte(files::MEDIUM, index * PAGE_SIZE));
        check_eq!(t, written, Ok(16));
        check_eq!(t, &seen[..], &new[..]);
        check_eq!(t, read, Ok(8));
        check_eq!(t, u64::from_be_bytes(via_read), stored);
        check_eq!(t, sync, Ok(()));
        check_eq!(t, &on_device[..], &stored.to_be_bytes()[..]);
        check_eq!(t, restore, Ok(()));
        check_eq!(t, restored, Ok(()));
    }
}

/// Stores `value` at byte `offset` of `file` through a shared mapping, then unmaps and
/// writes the file back (so the whole block, bytes past EOF included, reaches the
/// device) and drops the file's cached pages.
fn store_through_shared_mapping(file: u32, offset: u64, value: u64) -> Result<(), MmError> {
    let space = UserSpace::new()?;
    let page = offset / PAGE_SIZE;
    let va = vm::with(|mm| {
        let mapping = mm.open_file(file)?;
        mm.mmap(
            space.id(),
            None,
            PAGE_SIZE,
            VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED,
            MapSource::File {
                mapping,
                offset: page * PAGE_SIZE,
            },
        )
    })?;
    space.enter();
    uaccess::write_u64(VirtAddr::new(va.as_u64() + offset % PAGE_SIZE), value);
    space.leave();
    drop(space);
    vm::with(|mm| {
        let mapping = open_file(mm, file);
        mm.sync_mapping(mapping)?;
        mm.truncate_inode_pages(mapping, 0)
    })
}

ktest! {
    /// Bytes past EOF in the last page read as zero even when the device block holds
    /// something else there: a store past EOF through a shared mapping is written back
    /// with its block, yet the page read in again is zero past EOF (and the file's bytes
    /// before EOF are intact). The block is zeroed again at the end. Guards the zero
    /// fill in `Mm::readpage` (the standard image pads blocks with zeros, so only a
    /// dirtied tail shows it).
    fn bytes_past_eof_read_as_zero(t) {
        if !needs_mm(t) { return; }
        let file = files::PARTIAL;
        let past_eof = 3 * PAGE_SIZE + 512;
        let junk = 0xbad0_bad0_bad0_bad0_u64;
        let stored = store_through_shared_mapping(file, past_eof, junk);
        let on_device = vm::with(|mm| {
            let mapping = open_file(mm, file);
            device_bytes(mm, mapping, past_eof, 8)
        });
        let space = UserSpace::new().expect("space");
        let va = vm::with(|mm| {
            let mapping = mm.open_file(file)?;
            mm.mmap(space.id(), None, PAGE_SIZE, VmFlags::READ, MapSource::File { mapping, offset: 3 * PAGE_SIZE })
        })
        .expect("mmap");
        let mut last = vec![0u8; PAGE_SIZE as usize];
        space.enter();
        uaccess::read_bytes(va, &mut last);
        space.leave();
        drop(space);
        let cleaned = store_through_shared_mapping(file, past_eof, 0);
        let device_clean = vm::with(|mm| {
            let mapping = open_file(mm, file);
            device_bytes(mm, mapping, past_eof, 8)
        });
        check_eq!(t, stored, Ok(()));
        check_eq!(t, &on_device[..], &junk.to_be_bytes()[..]);
        check_eq!(t, check_pattern(file, 3 * PAGE_SIZE, &last[..100]), Ok(()));
        check_eq!(t, last[100..].iter().position(|&b| b != 0), None);
        check_eq!(t, cleaned, Ok(()));
        check_eq!(t, device_clean, [0u8; 8]);
    }
}

ktest! {
    /// With a host that strikes after every ESSA (discard schedule at 1000 per mille),
    /// `read_file` of pages not yet cached still reads the pattern, and the host did
    /// discard pages meanwhile. Guards the rule that a page is offered for the volatile
    /// state with its reader's reference counted only on the fault path, never before
    /// `read_file` copies it (without it the copy hits a discarded frame inside the
    /// memory manager: a fatal block-volatility exception, issue 12).
    fn read_file_under_a_host_striking_after_every_essa(t) [NEEDS_ESSA] {
        if !needs_mm(t) || !needs_model(t, "only the host model discards on a schedule") { return; }
        let pages = 64u64;
        let medium = vm::with(|mm| {
            let medium = open_file(mm, files::MEDIUM);
            mm.truncate_inode_pages(medium, 0).map(|()| medium)
        })
        .expect("truncate");
        let before = model_counters();
        let schedule = DiscardSchedule { seed: t.seed(), rate: DiscardRate::PerMille(1000), min_age: 0 };
        // Strikes only at frames hinted from now on, so that each page the reads hint is
        // among the few a strike chooses from.
        strike_only_new_hints(schedule);
        // The first page that reads wrong or fails, if any.
        let result = vm::with(|mm| {
            let mut buf = vec![0u8; PAGE_SIZE as usize];
            (0..pages).find_map(|i| match mm.read_file(medium, i * PAGE_SIZE, &mut buf) {
                Ok(n) if n == buf.len() => check_pattern(files::MEDIUM, i * PAGE_SIZE, &buf).err().map(|o| (i, Ok(o))),
                other => Some((i, other.map(|n| n as u64))),
            })
        });
        with_model(|model, _| model.set_schedule(None));
        let after = model_counters();
        let (discards, strikes) = (after.discards - before.discards, after.scheduled_strikes - before.scheduled_strikes);
        t.diag(format_args!("{strikes} host strikes, {discards} discards while reading {pages} pages"));
        check_eq!(t, result, None);
        check!(t, discards > 0, "the host discarded nothing");
    }
}
