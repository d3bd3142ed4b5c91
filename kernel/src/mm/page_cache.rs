//! The page cache (Linux `mm/filemap.c`): one [`Mapping`] per file, index ->
//! frame; lookups, insertion, `readpage` from the backing store, dirtying,
//! writeback and truncation.
//!
//! I/O is asynchronous, as in Linux: `readpage` and `writepage` hand a transfer to the
//! device and return; the page stays locked (read) or under writeback (write) until the
//! device reports the end (an I/O interruption on the machine) and [`Mm::reap_io`] ends
//! it (`end_page_read`, `end_page_writeback`). Whoever needs the page meanwhile waits on
//! it ([`Mm::wait_on_page_locked`], [`Mm::wait_on_page_writeback`]), which waits for the
//! device. The memory manager is not interrupt-safe, so the ends are taken in process
//! context, at the next wait or reap, not in the interruption itself. A device that
//! completes at once (the initrd, a memory copy) ends the transfer inside the call.
//! An error ends a read with the page not up to date and a write with the page dirty
//! again; both are kept for the waiter, which returns [`MmError::Io`]: never the data.
//!
//! References: the page cache holds one reference on each of its pages; every
//! lookup returns the page with an extra reference the caller drops with
//! [`Mm::put_page`].

use alloc::collections::{BTreeMap, VecDeque};
use alloc::vec::Vec;

use super::addr::{PAGE_BYTES, PAGE_SIZE, Pfn};
use super::backing::{
    BlockDevice, Completion, Direction, FileEntry, Frame, IoError, Started, Transfer,
};
use super::error::{Bug, MmError};
use super::hooks::{PageStateHooks, Stability, StablePoint, VolatilePoint};
use super::ids::MappingId;
use super::machine::Machine;
use super::manager::Mm;
use super::page::PageFlags;

/// The cached pages of one file (Linux: `struct address_space`).
#[derive(Debug)]
pub struct Mapping {
    id: MappingId,
    file: FileEntry,
    pages: BTreeMap<u64, Pfn>,
    /// Set when a `VM_LOCKED` VMA mapped the file; never cleared (the seed, patch 3/6).
    mlocked: bool,
}

impl Mapping {
    pub(crate) fn new(id: MappingId, file: FileEntry) -> Self {
        Self {
            id,
            file,
            pages: BTreeMap::new(),
            mlocked: false,
        }
    }

    /// The mapping's id.
    pub fn id(&self) -> MappingId {
        self.id
    }

    /// The backing file.
    pub fn file(&self) -> FileEntry {
        self.file
    }

    /// Number of cached pages (`nrpages`).
    pub fn nrpages(&self) -> usize {
        self.pages.len()
    }

    /// The frame caching page `index`, without a reference or state change.
    pub fn lookup(&self, index: u64) -> Option<Pfn> {
        self.pages.get(&index).copied()
    }

    /// The cached `(index, frame)` pairs in index order.
    pub fn cached(&self) -> impl Iterator<Item = (u64, Pfn)> + '_ {
        self.pages.iter().map(|(&i, &p)| (i, p))
    }

    /// Whether a locked VMA ever mapped the file (`mapping->mlocked`).
    pub fn is_mlocked(&self) -> bool {
        self.mlocked
    }

    /// `mapping_set_mlocked`: there is deliberately no way to clear it.
    pub(crate) fn set_mlocked(&mut self) {
        self.mlocked = true;
    }
}

impl<M: Machine, D: BlockDevice, H: PageStateHooks> Mm<M, D, H> {
    /// `find_get_page`: the cached page with a reference, made stable first; a
    /// page the host discarded is removed (`page_discard`) and `None` returned,
    /// so the caller reads it again.
    pub fn find_get_page(&mut self, mapping: MappingId, index: u64) -> Option<Pfn> {
        let pfn = self.mappings.get(&mapping)?.lookup(index)?;
        self.get_page(pfn);
        if self.make_stable(pfn, StablePoint::Lookup) == Stability::Discarded {
            self.put_page(pfn);
            // A refusal is recorded as a bug; either way there is no page to hand out.
            let _ = self.page_discard(pfn);
            return None;
        }
        Some(pfn)
    }

    /// `find_get_page_nodiscard` (series 5/6): the cached page with a reference and
    /// no state change, for a minor fault that only maps it. The page may be volatile,
    /// even discarded: the first access through the new mapping then takes the
    /// discard fault. A page `page_discard` has claimed is not handed out.
    pub fn find_get_page_nodiscard(&mut self, mapping: MappingId, index: u64) -> Option<Pfn> {
        let pfn = self.mappings.get(&mapping)?.lookup(index)?;
        if self.frames.pages()[pfn].test(PageFlags::DISCARDED) {
            return None;
        }
        self.get_page(pfn);
        Some(pfn)
    }

    /// `find_lock_page`: [`Mm::find_get_page`] and the page locked.
    pub fn find_lock_page(&mut self, mapping: MappingId, index: u64) -> Option<Pfn> {
        let pfn = self.find_get_page(mapping, index)?;
        self.lock_page(pfn);
        Some(pfn)
    }

    /// Asks the page-state layer to make the page stable.
    pub(crate) fn make_stable(&mut self, pfn: Pfn, at: StablePoint) -> Stability {
        let page = &mut self.frames.pages_mut()[pfn];
        self.hooks.make_stable(pfn, page, at)
    }

    /// `lock_page`. A page locked for a read in flight is waited for (the read's end
    /// unlocks it); the kernel is single threaded, so a page locked for any other
    /// reason is a bug (it would deadlock), hence the panic.
    pub fn lock_page(&mut self, pfn: Pfn) {
        self.wait_on_page_locked(pfn);
        let was = self.page_mut(pfn).test_and_set(PageFlags::LOCKED);
        assert!(!was, "lock_page: {pfn:?} already locked");
    }

    /// `unlock_page`; the page may then become volatile.
    pub fn unlock_page(&mut self, pfn: Pfn) {
        // Only the read's end unlocks a page whose read is in flight.
        assert!(
            self.in_flight
                .get(&pfn)
                .is_none_or(|t| t.direction != Direction::Read),
            "unlock_page: {pfn:?} is being read"
        );
        self.page_mut(pfn).clear(PageFlags::LOCKED);
        self.try_volatile(pfn, VolatilePoint::Unlock, 0);
    }

    /// `add_to_page_cache_lru`: inserts the (new, locked by us) page at `index`
    /// and puts it on the LRU. The cache takes its own reference.
    pub fn add_to_page_cache(
        &mut self,
        pfn: Pfn,
        mapping: MappingId,
        index: u64,
    ) -> Result<(), MmError> {
        let map = self
            .mappings
            .get_mut(&mapping)
            .ok_or(MmError::NoSuchObject)?;
        if map.pages.contains_key(&index) {
            return Err(MmError::AlreadyMapped);
        }
        map.pages.insert(index, pfn);
        let page = self.page_mut(pfn);
        page.set_file_owner(Some(mapping), index);
        page.set(PageFlags::LOCKED);
        page.get();
        self.lru_cache_add(pfn);
        Ok(())
    }

    /// `remove_from_page_cache`: takes the page out of its mapping; the page is
    /// then truncated (no mapping). Drops nothing: the caller releases the
    /// cache's reference.
    pub fn remove_from_page_cache(&mut self, pfn: Pfn) {
        let Some(mapping) = self.page(pfn).and_then(|p| p.mapping()) else {
            return;
        };
        let index = self.frames.pages()[pfn].index();
        if let Some(map) = self.mappings.get_mut(&mapping)
            && map.pages.get(&index) == Some(&pfn)
        {
            map.pages.remove(&index);
        }
        self.page_mut(pfn).set_file_owner(None, 0);
    }

    /// The device block behind a page-cache page.
    fn block_of_page(&self, pfn: Pfn) -> Result<(FileEntry, u64), MmError> {
        let page = &self.frames.pages()[pfn];
        let mapping = page.mapping().ok_or(MmError::NoSuchObject)?;
        let index = page.index();
        let file = self.mapping_ref(mapping)?.file;
        let block = file.block_of(index).ok_or(MmError::BeyondEof)?;
        Ok((file, block))
    }

    /// `readpage`: starts filling the locked page from the backing store. The page
    /// stays locked until the read ends ([`Mm::reap_io`]): then it is up to date (zero
    /// past EOF) and unlocked, or, if the device failed, unlocked and not up to date
    /// with the error kept for the waiter. An `Err` here means nothing was started (the
    /// page is still locked).
    pub fn readpage(&mut self, pfn: Pfn) -> Result<(), MmError> {
        debug_assert!(self.frames.pages()[pfn].test(PageFlags::LOCKED));
        let (_, block) = self.block_of_page(pfn)?;
        self.start_io(pfn, Direction::Read, block);
        Ok(())
    }

    /// Hands the transfer of `pfn` to the device; one that ends at once is ended here.
    fn start_io(&mut self, pfn: Pfn, direction: Direction, block: u64) {
        let transfer = Transfer {
            direction,
            block,
            frame: pfn.as_u64(),
        };
        let previous = self.in_flight.insert(pfn, transfer);
        assert!(
            previous.is_none(),
            "{pfn:?}: a second transfer while {previous:?} is in flight"
        );
        let frame = match direction {
            Direction::Read => Frame::Read(self.machine.frame(pfn)),
            Direction::Write => Frame::Write(self.machine.frame_ref(pfn)),
        };
        match self.device.start(transfer, frame) {
            Started::Done(result) => self.end_io(Completion { transfer, result }),
            Started::Pending => {}
        }
    }

    /// Ends every transfer the device has reported ended (Linux: the `bio` end_io
    /// callbacks, here in process context); returns whether there was any.
    pub fn reap_io(&mut self) -> bool {
        let mut any = false;
        while let Some(done) = self.device.poll() {
            self.end_io(done);
            any = true;
        }
        any
    }

    /// Whether a transfer of `pfn` is in flight.
    pub fn io_in_flight(&self, pfn: Pfn) -> bool {
        self.in_flight.contains_key(&pfn)
    }

    /// Number of transfers in flight.
    pub fn io_in_flight_count(&self) -> usize {
        self.in_flight.len()
    }

    /// Waits until the device ends some transfer, and ends it. Panics when nothing is
    /// in flight: whoever waits would wait forever (single threaded).
    fn wait_for_io(&mut self) {
        if self.reap_io() {
            return;
        }
        assert!(
            !self.in_flight.is_empty() && self.device.wait(),
            "waiting for I/O with none in flight"
        );
        self.reap_io();
    }

    fn end_io(&mut self, done: Completion) {
        let pfn = Pfn::new(done.transfer.frame);
        let ours = self.in_flight.remove(&pfn);
        assert_eq!(
            ours,
            Some(done.transfer),
            "the device ended a transfer the memory manager did not start"
        );
        match done.transfer.direction {
            Direction::Read => self.end_page_read(pfn, done.result),
            Direction::Write => self.end_page_write(pfn, done.result),
        }
    }

    /// The end of a read (`mpage_end_io_read`): the tail past EOF zeroed and the page up
    /// to date, or the error kept; the page unlocked either way.
    fn end_page_read(&mut self, pfn: Pfn, result: Result<(), IoError>) {
        match result
            .map_err(MmError::from)
            .and_then(|()| self.block_of_page(pfn))
        {
            Ok((file, _)) => {
                let index = self.frames.pages()[pfn].index();
                let valid = file.size - index * PAGE_SIZE;
                if valid < PAGE_SIZE {
                    self.machine.frame(pfn)[valid as usize..].fill(0);
                }
                self.set_page_uptodate(pfn);
            }
            Err(e) => {
                self.io_errors.insert(pfn, io_error_of(e));
            }
        }
        self.unlock_page(pfn);
    }

    /// The end of a write (`end_page_writeback` after `mpage_end_io_write`): on an error
    /// the page is dirty again (its data is not on the device) and the error kept.
    fn end_page_write(&mut self, pfn: Pfn, result: Result<(), IoError>) {
        match result {
            Ok(()) => self.stats.writebacks += 1,
            Err(e) => {
                self.set_page_dirty(pfn);
                self.io_errors.insert(pfn, e);
            }
        }
        self.end_page_writeback(pfn);
    }

    /// `wait_on_page_locked`: returns once the page is unlocked, waiting for its read.
    /// Panics for a page locked by anyone else (single threaded: a deadlock).
    pub fn wait_on_page_locked(&mut self, pfn: Pfn) {
        while self.frames.pages()[pfn].test(PageFlags::LOCKED) {
            assert!(
                self.in_flight.contains_key(&pfn),
                "{pfn:?} is locked and no I/O will unlock it"
            );
            self.wait_for_io();
        }
    }

    /// `wait_on_page_writeback` (and `filemap_fdatawait`'s error check): returns once
    /// the page's writeback ended, with the write's error if it failed.
    pub fn wait_on_page_writeback(&mut self, pfn: Pfn) -> Result<(), MmError> {
        while self.frames.pages()[pfn].test(PageFlags::WRITEBACK) {
            assert!(
                self.in_flight.contains_key(&pfn),
                "{pfn:?} is under writeback and no I/O will end it"
            );
            self.wait_for_io();
        }
        self.io_errors
            .remove(&pfn)
            .map_or(Ok(()), |e| Err(MmError::Io(e)))
    }

    /// A cached page with our reference that may still be being read in
    /// (`do_generic_file_read`'s `!PageUptodate` path): waits for the read, and if it
    /// failed drops the reference and returns the error, never the page.
    pub(crate) fn wait_uptodate(&mut self, pfn: Pfn) -> Result<(), MmError> {
        self.wait_on_page_locked(pfn);
        if self.frames.pages()[pfn].test(PageFlags::UPTODATE) {
            return Ok(());
        }
        let error = self.io_errors.get(&pfn).copied().unwrap_or(IoError::Device);
        self.put_page(pfn);
        Err(MmError::Io(error))
    }

    /// `SetPageUptodate`. On s390 this also clears the storage-key change bit,
    /// which the read itself set, so the page does not look dirty.
    pub(crate) fn set_page_uptodate(&mut self, pfn: Pfn) {
        if !self.page_mut(pfn).test_and_set(PageFlags::UPTODATE) {
            self.machine.clear_change(pfn);
        }
    }

    /// The page at `index` with a reference, read from the backing store on a
    /// miss (`read_cache_page`), stable: the caller may copy its contents. The
    /// flag says whether it was a miss.
    pub fn read_cache_page(
        &mut self,
        mapping: MappingId,
        index: u64,
    ) -> Result<(Pfn, bool), MmError> {
        let (pfn, miss) = self.read_cache_page_starting(mapping, index)?;
        if miss {
            self.finish_read_page(pfn)?;
        }
        Ok((pfn, miss))
    }

    /// Fails for a page beyond the end of the file.
    pub(crate) fn check_index(&self, mapping: MappingId, index: u64) -> Result<(), MmError> {
        if index >= self.mapping_ref(mapping)?.file.pages() {
            return Err(MmError::BeyondEof);
        }
        Ok(())
    }

    /// A page-cache miss: a new page at `index`, read from the backing store, with
    /// the caller's reference. It is stable (fresh from the allocator, and the
    /// caller's reference keeps `unlock_page` from making it volatile). A failed read
    /// leaves nothing behind: the page leaves the cache and the error is returned.
    pub(crate) fn read_new_page(&mut self, mapping: MappingId, index: u64) -> Result<Pfn, MmError> {
        let pfn = self.start_read_page(mapping, index)?;
        self.finish_read_page(pfn)?;
        // No volatile attempt with the caller's reference counted as expected here:
        // `read_file` copies the contents next. Only the fault path, which maps the
        // page without touching it, offers it (`filemap_nopage`); the others offer it
        // when they drop their reference (`page_cache_release`).
        Ok(pfn)
    }

    /// A page-cache miss without the wait (`page_cache_read`, readahead): a new page at
    /// `index` in the cache, locked, its read started, with the caller's reference. The
    /// read ends later ([`Mm::reap_io`], or any wait on the page); the caller collects
    /// its result with [`Mm::finish_read_page`], which drops a page whose read failed.
    pub fn start_read_page(&mut self, mapping: MappingId, index: u64) -> Result<Pfn, MmError> {
        self.check_index(mapping, index)?;
        let pfn = self.alloc_page()?;
        if let Err(e) = self.add_to_page_cache(pfn, mapping, index) {
            self.put_page(pfn);
            return Err(e);
        }
        if let Err(e) = self.readpage(pfn) {
            self.page_mut(pfn).clear(PageFlags::LOCKED);
            self.remove_from_page_cache(pfn);
            self.put_page(pfn); // the cache's reference
            self.put_page(pfn); // ours
            return Err(e);
        }
        Ok(pfn)
    }

    /// Waits for the read [`Mm::start_read_page`] started and returns its result; a
    /// failed page leaves the cache and both references go (the caller's included).
    pub fn finish_read_page(&mut self, pfn: Pfn) -> Result<(), MmError> {
        self.wait_on_page_locked(pfn);
        let Some(e) = self.io_errors.remove(&pfn) else {
            return Ok(());
        };
        if self.frames.pages()[pfn].mapping().is_some() {
            self.lock_page(pfn);
            self.remove_from_page_cache(pfn);
            self.unlock_page(pfn);
            self.put_page(pfn); // the cache's reference
        }
        self.put_page(pfn); // the caller's
        Err(MmError::Io(e))
    }

    /// `set_page_dirty`: the page's contents are newer than the backing store.
    pub fn set_page_dirty(&mut self, pfn: Pfn) {
        self.page_mut(pfn).set(PageFlags::DIRTY);
    }

    /// Moves the storage-key change bit into the dirty flag (`page_test_dirty`,
    /// `page_clear_dirty`, `set_page_dirty`), as on s390 where stores through a
    /// writable mapping mark only the storage key. Hazard 1 of series patch 6/6: if
    /// the bit is set, the page is made stable *before* it is cleared; a potentially
    /// volatile page with a clear change bit looks clean to the host, which may then
    /// discard the data the kernel has just declared dirty. A clear bit needs nothing.
    pub(crate) fn transfer_dirty(&mut self, pfn: Pfn) {
        if !self.machine.change_bit(pfn) {
            return;
        }
        if self.make_stable(pfn, StablePoint::DirtyTransfer) == Stability::Discarded {
            // 6/6: VM_BUG_ON(!stable). The host never discards a changed P page.
            let _ = self.bug(Bug::ChangedPageDiscarded(pfn));
            return;
        }
        self.machine.clear_change(pfn);
        self.set_page_dirty(pfn);
    }

    /// `clear_page_dirty_for_io`: moves stores through writable mappings into the
    /// dirty flag ([`Mm::transfer_dirty`]) and clears it. Returns whether the page was
    /// dirty. The page stays mapped writable: later stores set the change bit again.
    pub fn clear_page_dirty_for_io(&mut self, pfn: Pfn) -> bool {
        self.transfer_dirty(pfn);
        self.page_mut(pfn).test_and_clear(PageFlags::DIRTY)
    }

    /// `set_page_writeback`: the page's contents are on their way to the backing
    /// store. Under writeback the page stays stable (1/6 `check_bits`).
    pub fn set_page_writeback(&mut self, pfn: Pfn) {
        self.page_mut(pfn).set(PageFlags::WRITEBACK);
    }

    /// `end_page_writeback` (`test_clear_page_writeback`): the write finished; the page
    /// may become volatile.
    pub fn end_page_writeback(&mut self, pfn: Pfn) {
        self.page_mut(pfn).clear(PageFlags::WRITEBACK);
        self.try_volatile(pfn, VolatilePoint::EndWriteback, 0);
    }

    /// `writepage`: starts writing a locked page back if it is dirty (returns whether
    /// it was). The page is clean, under writeback and unlocked while the write is in
    /// flight: only `PG_writeback` keeps it stable then (1/6 `check_bits`). The write's
    /// end clears it ([`Mm::reap_io`]); [`Mm::wait_on_page_writeback`] returns its error.
    pub fn start_writeback(&mut self, pfn: Pfn) -> Result<bool, MmError> {
        debug_assert!(self.frames.pages()[pfn].test(PageFlags::LOCKED));
        let (_, block) = self.block_of_page(pfn)?;
        if !self.clear_page_dirty_for_io(pfn) {
            return Ok(false);
        }
        self.set_page_writeback(pfn);
        self.unlock_page(pfn);
        self.start_io(pfn, Direction::Write, block);
        Ok(true)
    }

    /// `write_one_page`: writes a locked, dirty page back, waits for the write and
    /// leaves the page clean (dirty again if the write failed) and locked.
    pub fn write_one_page(&mut self, pfn: Pfn) -> Result<(), MmError> {
        if !self.start_writeback(pfn)? {
            return Ok(());
        }
        let result = self.wait_on_page_writeback(pfn);
        self.lock_page(pfn);
        result
    }

    /// Writes back every dirty page of `mapping` (`filemap_write_and_wait`).
    pub fn sync_mapping(&mut self, mapping: MappingId) -> Result<(), MmError> {
        let pages: Vec<Pfn> = self.mapping_ref(mapping)?.pages.values().copied().collect();
        for pfn in pages {
            let page = &self.frames.pages()[pfn];
            // A page mapped writable may have been stored to: its change bit says.
            if !page.test(PageFlags::DIRTY) && !page.test(PageFlags::WRITABLE) {
                continue;
            }
            self.get_page(pfn);
            self.lock_page(pfn);
            let result = self.write_one_page(pfn);
            self.unlock_page(pfn);
            self.put_page(pfn);
            result?;
        }
        Ok(())
    }

    /// `truncate_inode_pages`: drops every cached page from `from_index` on,
    /// unmapping it everywhere first. Dirty data of those pages is dropped, as
    /// in Linux, where truncation shortened the file.
    pub fn truncate_inode_pages(
        &mut self,
        mapping: MappingId,
        from_index: u64,
    ) -> Result<(), MmError> {
        let victims: Vec<Pfn> = self
            .mapping_ref(mapping)?
            .pages
            .range(from_index..)
            .map(|(_, &p)| p)
            .collect();
        for pfn in victims {
            self.lock_page(pfn);
            // The data goes away: a failed write of it no longer matters.
            let _ = self.wait_on_page_writeback(pfn);
            self.unmap_everywhere(pfn);
            self.page_mut(pfn).clear(PageFlags::DIRTY);
            self.remove_from_page_cache(pfn);
            self.unlock_page(pfn);
            self.put_page(pfn); // the cache's reference
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` of the file through the page cache
    /// (`generic_file_read`); returns the bytes read (short at EOF).
    ///
    /// A miss also starts the reads of the request's next pages that are not cached, up
    /// to [`READ_AHEAD`] (readahead, as `page_cache_readahead` does, but never past what
    /// the caller asked for): their transfers overlap, and one wait collects several
    /// ends. Each page read ahead keeps this call's reference until its bytes are copied,
    /// so it stays stable meanwhile and costs the same two ESSA as a page read on its
    /// own. Readahead takes only frames that are free above the low watermark: it never
    /// starts reclaim or waits for a grace period (Linux: `__GFP_NORETRY`), it stops.
    pub fn read_file(
        &mut self,
        mapping: MappingId,
        offset: u64,
        buf: &mut [u8],
    ) -> Result<usize, MmError> {
        let mut ahead = VecDeque::new();
        let result = self.read_file_pages(mapping, offset, buf, &mut ahead);
        // An error cut the request short: what was read ahead goes back to the cache.
        for (_, pfn) in ahead {
            if self.finish_read_page(pfn).is_ok() {
                self.put_page(pfn);
            }
        }
        result
    }

    fn read_file_pages(
        &mut self,
        mapping: MappingId,
        offset: u64,
        buf: &mut [u8],
        ahead: &mut VecDeque<(u64, Pfn)>,
    ) -> Result<usize, MmError> {
        let size = self.mapping_ref(mapping)?.file.size;
        let end = offset.saturating_add(buf.len() as u64).min(size);
        let last = end.saturating_sub(1) / PAGE_SIZE;
        let mut done = 0usize;
        while done < buf.len() {
            let Some((index, in_page, n)) =
                page_chunk(size, offset + done as u64, buf.len() - done)
            else {
                break;
            };
            let pfn = if let Some(&(next, pfn)) = ahead.front()
                && next == index
            {
                ahead.pop_front();
                self.finish_read_page(pfn)?;
                pfn
            } else {
                let (pfn, miss) = self.read_cache_page_starting(mapping, index)?;
                if miss {
                    self.read_ahead(mapping, index + 1..=last.min(index + READ_AHEAD), ahead);
                    self.finish_read_page(pfn)?;
                }
                pfn
            };
            buf[done..done + n].copy_from_slice(&self.machine.frame_ref(pfn)[in_page..in_page + n]);
            self.mark_page_accessed(pfn);
            self.put_page(pfn);
            done += n;
        }
        Ok(done)
    }

    /// [`Mm::read_cache_page`] that only starts the read of a miss (`true`): the caller
    /// finishes it with [`Mm::finish_read_page`].
    fn read_cache_page_starting(
        &mut self,
        mapping: MappingId,
        index: u64,
    ) -> Result<(Pfn, bool), MmError> {
        self.check_index(mapping, index)?;
        if let Some(pfn) = self.find_get_page(mapping, index) {
            self.wait_uptodate(pfn)?;
            return Ok((pfn, false));
        }
        self.start_read_page(mapping, index).map(|pfn| (pfn, true))
    }

    /// Starts the reads of the pages in `indices` up to the first one that is cached or
    /// the first for which no frame is free above the low watermark, with a reference
    /// each, queued in `ahead`.
    fn read_ahead(
        &mut self,
        mapping: MappingId,
        indices: core::ops::RangeInclusive<u64>,
        ahead: &mut VecDeque<(u64, Pfn)>,
    ) {
        for index in indices {
            let cached = self
                .mapping_ref(mapping)
                .is_ok_and(|m| m.lookup(index).is_some());
            if cached || self.frames.free_count() <= self.config.low_watermark {
                return;
            }
            match self.start_read_page(mapping, index) {
                Ok(pfn) => {
                    self.stats.readahead += 1;
                    ahead.push_back((index, pfn));
                }
                Err(_) => return,
            }
        }
    }

    /// Writes `data` at `offset` of the file through the page cache (dirtying
    /// pages, `generic_file_write` without extending the file); returns the
    /// bytes written (short at EOF).
    pub fn write_file(
        &mut self,
        mapping: MappingId,
        offset: u64,
        data: &[u8],
    ) -> Result<usize, MmError> {
        let size = self.mapping_ref(mapping)?.file.size;
        let mut done = 0usize;
        while done < data.len() {
            let Some((index, in_page, n)) =
                page_chunk(size, offset + done as u64, data.len() - done)
            else {
                break;
            };
            // Looked up without a state change (`__grab_cache_page`): the one that
            // matters is the next, which makes the page stable before it is dirtied.
            // If the host discarded it, read it again.
            let pfn = match self.find_get_page_nodiscard(mapping, index) {
                Some(pfn) => {
                    self.wait_uptodate(pfn)?;
                    pfn
                }
                None => {
                    self.check_index(mapping, index)?;
                    self.read_new_page(mapping, index)?
                }
            };
            if self.make_stable(pfn, StablePoint::WriteNotify) == Stability::Discarded {
                self.put_page(pfn);
                let _ = self.page_discard(pfn);
                continue;
            }
            self.lock_page(pfn);
            self.machine.frame(pfn)[in_page..in_page + n].copy_from_slice(&data[done..done + n]);
            self.set_page_dirty(pfn);
            self.unlock_page(pfn);
            self.mark_page_accessed(pfn);
            self.put_page(pfn);
            done += n;
        }
        Ok(done)
    }
}

/// Pages a miss in [`Mm::read_file`] reads ahead of the one asked for (within the
/// request): with that page 16, 64 KiB (the suites' read size) and as many requests as
/// the virtio-blk queue holds, so no start waits for a slot.
pub const READ_AHEAD: u64 = 15;

/// The part of a file access at byte `pos` that lies in one page: its page
/// index, its offset in that page and its length, at most `remaining` and
/// never past the file's `size`; `None` at or beyond end of file.
fn page_chunk(size: u64, pos: u64, remaining: usize) -> Option<(u64, usize, usize)> {
    if pos >= size {
        return None;
    }
    let in_page = (pos % PAGE_SIZE) as usize;
    let n = (PAGE_BYTES - in_page)
        .min(remaining)
        .min((size - pos) as usize);
    Some((pos / PAGE_SIZE, in_page, n))
}

#[cfg(test)]
mod tests;

/// The I/O error inside a memory-manager error (a read's end only fails on the device
/// or on a page that lost its file, which the lock rules out).
fn io_error_of(e: MmError) -> IoError {
    match e {
        MmError::Io(e) => e,
        _ => IoError::Device,
    }
}
