//! The backing store: a block device behind a trait, and the image format
//! that xtask writes and the kernel reads (files with deterministic contents).
//!
//! A crate of its own (the kernel re-exports it as `kernel::mm::backing`), so xtask can
//! write the image without building the whole kernel for the host.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code, missing_docs)]

extern crate alloc;

pub mod files;
pub mod image;
pub mod writes;

use core::fmt;

/// Size of a block in bytes: one 4 KiB page of the s390x kernel, which pages files in and
/// out block by block (`kernel::mm::addr` checks that its page size is this one).
pub const PAGE_SIZE: u64 = 4096;
/// [`PAGE_SIZE`] as a `usize`, for buffer lengths.
pub const PAGE_BYTES: usize = PAGE_SIZE as usize;
pub use image::{
    FileEntry, Image, ImageError, build_image, check_pattern, fill_pattern, first_difference,
    pattern, pattern_byte,
};

/// Why a block transfer failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum IoError {
    /// The block number is beyond the device.
    OutOfRange {
        /// The block asked for.
        block: u64,
    },
    /// The device reported an error.
    Device,
}

impl fmt::Display for IoError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::OutOfRange { block } => write!(f, "block {block} beyond the device"),
            Self::Device => f.write_str("device error"),
        }
    }
}

/// Transfers done so far; every page read or written counts as one I/O.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct IoStats {
    /// Pages read.
    pub reads: u64,
    /// Pages written.
    pub writes: u64,
}

/// Which way a page transfer goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Direction {
    /// Block to frame (`readpage`).
    Read,
    /// Frame to block (writeback).
    Write,
}

/// A page transfer the memory manager hands to a device: between block `block` and the
/// page frame number `frame` (4 KiB frames; the kernel's frames are identity-mapped, so
/// a device that transfers directly reaches the frame at `frame * 4096`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Transfer {
    /// Read or write.
    pub direction: Direction,
    /// The device block.
    pub block: u64,
    /// The frame, which also names the transfer: the memory manager keeps at most one
    /// transfer per frame in flight (the page is locked or under writeback until it ends).
    pub frame: u64,
}

/// The contents of a transfer's frame, borrowed the way the transfer uses them (a
/// write only reads the frame, which on s390 leaves its storage-key change bit alone).
#[derive(Debug)]
pub enum Frame<'a> {
    /// The frame a read fills.
    Read(&'a mut [u8; PAGE_BYTES]),
    /// The frame a write copies out.
    Write(&'a [u8; PAGE_BYTES]),
}

/// What a device did with a transfer it was handed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Started {
    /// It finished at once (a memory copy): this is its result, nothing stays pending.
    Done(Result<(), IoError>),
    /// It is in flight: its [`Completion`] comes from [`BlockDevice::poll`] once the
    /// device reported it (an I/O interruption). Until then the device may transfer to or
    /// from the frame at any time.
    Pending,
}

/// A transfer that ended.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Completion {
    /// The transfer, as it was started.
    pub transfer: Transfer,
    /// Its result: an error is the device's, never data.
    pub result: Result<(), IoError>,
}

/// A device of 4 KiB blocks: the initrd image (memory copies, synchronous) or the
/// virtio-blk disk (requests completed by I/O interruption).
///
/// The synchronous [`BlockDevice::read_page`]/[`BlockDevice::write_page`] are for
/// buffers of the caller (the image header, tests); page-cache I/O goes through
/// [`BlockDevice::start`], whose default completes at once with them.
pub trait BlockDevice {
    /// Reads block `block` into `buf`.
    fn read_page(&mut self, block: u64, buf: &mut [u8; PAGE_BYTES]) -> Result<(), IoError>;
    /// Writes `buf` to block `block`.
    fn write_page(&mut self, block: u64, buf: &[u8; PAGE_BYTES]) -> Result<(), IoError>;
    /// Number of blocks.
    fn blocks(&self) -> u64;
    /// I/O counters.
    fn stats(&self) -> IoStats;

    /// Starts `transfer` on the frame whose contents are `frame` (its direction agrees
    /// with the transfer's). A device that keeps it
    /// in flight ([`Started::Pending`]) relies on the caller to keep the frame allocated,
    /// and unread (read) or unfreed (write), until [`BlockDevice::poll`] returned its
    /// completion. The default does it at once with the synchronous calls.
    fn start(&mut self, transfer: Transfer, frame: Frame<'_>) -> Started {
        Started::Done(match frame {
            Frame::Read(buf) => self.read_page(transfer.block, buf),
            Frame::Write(buf) => self.write_page(transfer.block, buf),
        })
    }

    /// The next transfer that ended, if the device reported one. Never blocks.
    fn poll(&mut self) -> Option<Completion> {
        None
    }

    /// Waits until the device reports an ended transfer (enabled for I/O interruptions
    /// on the machine); returns false at once when nothing is in flight (waiting would
    /// never end).
    fn wait(&mut self) -> bool {
        false
    }
}

/// A block device over memory: a `Vec<u8>` on the host, the `&'static mut [u8]`
/// of the initrd in the kernel. A trailing partial block is not addressable.
#[derive(Debug)]
pub struct MemDisk<S> {
    storage: S,
    stats: IoStats,
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> MemDisk<S> {
    /// A device over `storage`.
    pub fn new(storage: S) -> Self {
        Self {
            storage,
            stats: IoStats::default(),
        }
    }

    /// The underlying bytes.
    pub fn storage(&self) -> &[u8] {
        self.storage.as_ref()
    }

    fn range(&self, block: u64) -> Result<core::ops::Range<usize>, IoError> {
        if block >= self.blocks() {
            return Err(IoError::OutOfRange { block });
        }
        let start = block as usize * PAGE_BYTES;
        Ok(start..start + PAGE_BYTES)
    }
}

impl<S: AsRef<[u8]> + AsMut<[u8]>> BlockDevice for MemDisk<S> {
    fn read_page(&mut self, block: u64, buf: &mut [u8; PAGE_BYTES]) -> Result<(), IoError> {
        let range = self.range(block)?;
        buf.copy_from_slice(&self.storage.as_ref()[range]);
        self.stats.reads += 1;
        Ok(())
    }

    fn write_page(&mut self, block: u64, buf: &[u8; PAGE_BYTES]) -> Result<(), IoError> {
        let range = self.range(block)?;
        self.storage.as_mut()[range].copy_from_slice(buf);
        self.stats.writes += 1;
        Ok(())
    }

    fn blocks(&self) -> u64 {
        (self.storage.as_ref().len() / PAGE_BYTES) as u64
    }

    fn stats(&self) -> IoStats {
        self.stats
    }
}

/// A synchronous device whose transfers report their end later: each is done at
/// [`BlockDevice::start`] (a memory copy) but its [`Completion`] comes only from the next
/// [`BlockDevice::poll`] or [`BlockDevice::wait`], in start order. The memory manager
/// then sees the same windows as with an interrupting device (a page locked while its
/// read is in flight, under writeback while its write is), on the initrd and in host
/// tests.
#[derive(Debug)]
pub struct Deferred<D> {
    inner: D,
    ended: alloc::collections::VecDeque<Completion>,
}

impl<D: BlockDevice> Deferred<D> {
    /// `inner` with deferred completions.
    pub fn new(inner: D) -> Self {
        Self {
            inner,
            ended: alloc::collections::VecDeque::new(),
        }
    }

    /// The device underneath.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// Transfers done whose end was not reported yet.
    pub fn pending(&self) -> usize {
        self.ended.len()
    }
}

impl<D: BlockDevice> BlockDevice for Deferred<D> {
    fn read_page(&mut self, block: u64, buf: &mut [u8; PAGE_BYTES]) -> Result<(), IoError> {
        self.inner.read_page(block, buf)
    }

    fn write_page(&mut self, block: u64, buf: &[u8; PAGE_BYTES]) -> Result<(), IoError> {
        self.inner.write_page(block, buf)
    }

    fn blocks(&self) -> u64 {
        self.inner.blocks()
    }

    fn stats(&self) -> IoStats {
        self.inner.stats()
    }

    fn start(&mut self, transfer: Transfer, frame: Frame<'_>) -> Started {
        let result = match self.inner.start(transfer, frame) {
            Started::Done(result) => result,
            Started::Pending => unreachable!("Deferred wraps a synchronous device"),
        };
        self.ended.push_back(Completion { transfer, result });
        Started::Pending
    }

    fn poll(&mut self) -> Option<Completion> {
        self.ended.pop_front()
    }

    fn wait(&mut self) -> bool {
        !self.ended.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn deferred_copies_at_start_and_reports_the_end_later_in_order() {
        let mut disk = Deferred::new(MemDisk::new(vec![3u8; 2 * PAGE_BYTES]));
        assert!(!disk.wait(), "nothing in flight");
        let mut frame = [0u8; PAGE_BYTES];
        let read = Transfer {
            direction: Direction::Read,
            block: 1,
            frame: 7,
        };
        assert_eq!(disk.start(read, Frame::Read(&mut frame)), Started::Pending);
        assert_eq!(frame, [3; PAGE_BYTES], "copied at once");
        let beyond = Transfer {
            direction: Direction::Write,
            block: 2,
            frame: 8,
        };
        assert_eq!(disk.start(beyond, Frame::Write(&frame)), Started::Pending);
        assert_eq!(disk.pending(), 2);
        assert!(disk.wait());
        assert_eq!(
            disk.poll(),
            Some(Completion {
                transfer: read,
                result: Ok(())
            })
        );
        assert_eq!(
            disk.poll(),
            Some(Completion {
                transfer: beyond,
                result: Err(IoError::OutOfRange { block: 2 })
            })
        );
        assert_eq!(disk.poll(), None);
        assert!(!disk.wait());
    }

    #[test]
    fn mem_disk_reads_writes_and_counts() {
        let mut disk = MemDisk::new(vec![0u8; 2 * PAGE_BYTES + 100]);
        assert_eq!(disk.blocks(), 2);
        let mut buf = [7u8; PAGE_BYTES];
        disk.write_page(1, &buf).unwrap();
        buf = [0; PAGE_BYTES];
        disk.read_page(0, &mut buf).unwrap();
        assert_eq!(buf, [0; PAGE_BYTES]);
        disk.read_page(1, &mut buf).unwrap();
        assert_eq!(buf, [7; PAGE_BYTES]);
        assert_eq!(
            disk.read_page(2, &mut buf),
            Err(IoError::OutOfRange { block: 2 })
        );
        assert_eq!(
            disk.write_page(9, &buf),
            Err(IoError::OutOfRange { block: 9 })
        );
        assert_eq!(
            disk.stats(),
            IoStats {
                reads: 2,
                writes: 1
            }
        );
        assert_eq!(disk.storage()[PAGE_BYTES], 7);
        assert_eq!(disk.storage()[PAGE_BYTES - 1], 0);
    }
}
