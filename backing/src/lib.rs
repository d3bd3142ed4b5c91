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

use core::fmt;

/// Size of a block in bytes: one 4 KiB page of the s390x kernel, which pages files in and
/// out block by block (`kernel::mm::addr` checks that its page size is this one).
pub const PAGE_SIZE: u64 = 4096;
/// [`PAGE_SIZE`] as a `usize`, for buffer lengths.
pub const PAGE_BYTES: usize = PAGE_SIZE as usize;
pub use image::{
    FileEntry, Image, ImageError, build_image, check_pattern, fill_pattern, pattern, pattern_byte,
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

/// A device of 4 KiB blocks (the initrd image today, virtio-blk later).
pub trait BlockDevice {
    /// Reads block `block` into `buf`.
    fn read_page(&mut self, block: u64, buf: &mut [u8; PAGE_BYTES]) -> Result<(), IoError>;
    /// Writes `buf` to block `block`.
    fn write_page(&mut self, block: u64, buf: &[u8; PAGE_BYTES]) -> Result<(), IoError>;
    /// Number of blocks.
    fn blocks(&self) -> u64;
    /// I/O counters.
    fn stats(&self) -> IoStats;
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

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

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
