//! `io::virtio_blk`: the virtio-blk disk through `virtio-drivers` over virtio-ccw:
//! what xtask put on it (the backing-store image) reads back, sectors written to the
//! scratch area after the image read back, buffers that cross a page work both ways,
//! requests past the end fail, and requests complete by I/O interruption.

use crate::support::needs_disk;
use alloc::vec;
use alloc::vec::Vec;
use kernel::io::channel::interruptions;
use kernel::io::disk::{self, DiskError, DriverError, SECTOR_BYTES, VirtioBacking};
use kernel::mm::backing::image::MAGIC;
use kernel::mm::backing::{BlockDevice, IoError as BlockError, fill_pattern};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("io::virtio_blk");

/// Sectors per 4 KiB page.
const PAGE_SECTORS: u64 = 8;

/// Reads `count` sectors at `sector`.
fn read(sector: u64, count: usize) -> Result<Vec<u8>, DiskError> {
    let mut buf = vec![0u8; count * SECTOR_BYTES];
    disk::with(|d| d.read_sectors(sector, &mut buf)).unwrap_or(Err(DiskError::NoDevice))?;
    Ok(buf)
}

/// The first sector after the backing-store image (its header's total blocks), where
/// xtask leaves a zeroed scratch area; `None` when sector 0 is not the image.
fn scratch_start() -> Option<u64> {
    let header = read(0, 1).ok()?;
    if header[..8] != MAGIC {
        return None;
    }
    let blocks = u64::from_be_bytes(header[24..32].try_into().ok()?);
    Some(blocks * PAGE_SECTORS)
}

ktest! {
    /// Sector 0 holds the image xtask copied onto the disk, which fits with room to
    /// spare; the capacity is the big-endian u64 of the legacy configuration space,
    /// which `virtio-drivers` reads as two swapped 32-bit halves.
    fn the_disk_holds_the_backing_store_image(t) {
        let Some(_) = needs_disk(t) else { return };
        let header = read(0, 1);
        check!(t, header.as_ref().is_ok_and(|h| h[..8] == MAGIC), "{:?}", header.map(|h| h[..8].to_vec()));
        let sectors = disk::with(|d| d.sectors()).unwrap_or(0);
        let scratch = scratch_start();
        check!(t, scratch.is_some_and(|s| s < sectors), "image end {scratch:?}, disk {sectors} sectors");
        check_eq!(t, disk::with(|d| d.driver_capacity()), Some(sectors.rotate_left(32)));
    }
}

ktest! {
    /// Seeded pseudo-random sectors written to the scratch area (16 sectors, two pages) read back
    /// the same, and the sectors around them keep their contents.
    fn written_sectors_read_back(t) {
        let Some(_) = needs_disk(t) else { return };
        let Some(start) = scratch_start() else {
            check!(t, false, "sector 0 is not a backing-store image: no scratch area to write");
            return;
        };
        let seed = t.seed();
        t.diag(format_args!("seed {seed:#x}"));
        let mut data = vec![0u8; 16 * SECTOR_BYTES];
        fill_pattern(seed as u32, seed >> 32, &mut data);
        let at = start + 8;
        let before = read(at - 1, 1);
        let after = read(at + 16, 1);
        let wrote = disk::with(|d| d.write_sectors(at, &data));
        check_eq!(t, wrote, Some(Ok(())));
        let back = read(at, 16);
        check!(t, back.as_ref().is_ok_and(|b| *b == data), "read back differs");
        check_eq!(t, read(at - 1, 1), before);
        check_eq!(t, read(at + 16, 1), after);
    }
}

ktest! {
    /// A read or write starting at the capacity, or running past it, is refused by the
    /// device and surfaces as an I/O error; the block device refuses the block past its
    /// end before asking the device.
    fn requests_past_the_end_are_errors(t) {
        let Some(_) = needs_disk(t) else { return };
        let sectors = disk::with(|d| d.sectors()).unwrap_or(0);
        let io_error = Err(DiskError::Driver(DriverError::IoError));
        check_eq!(t, read(sectors, 1).map(|_| ()), io_error);
        check_eq!(t, read(sectors - 1, 2).map(|_| ()), io_error);
        let zeros = vec![0u8; SECTOR_BYTES];
        check_eq!(t, disk::with(|d| d.write_sectors(sectors, &zeros)), Some(io_error));
        // The disk still works.
        check!(t, read(sectors - 1, 1).is_ok());
        let mut backing = VirtioBacking;
        let blocks = backing.blocks();
        check_eq!(t, blocks, sectors / PAGE_SECTORS);
        let mut page = [0u8; 4096];
        check_eq!(t, backing.read_page(blocks, &mut page), Err(BlockError::OutOfRange { block: blocks }));
    }
}

ktest! {
    /// A 4 KiB buffer starting in the middle of a page (so it crosses into the next)
    /// reads the same bytes as an aligned one, and writes from it read back.
    fn buffers_crossing_a_page_boundary(t) {
        let Some(_) = needs_disk(t) else { return };
        let Some(start) = scratch_start() else {
            check!(t, false, "sector 0 is not a backing-store image");
            return;
        };
        let mut storage = vec![0u8; 3 * 4096];
        let base = storage.as_ptr() as usize;
        let offset = (4096 - base % 4096) % 4096 + 2048;
        let crossing = &mut storage[offset..offset + 4096];
        check!(t, (crossing.as_ptr() as usize) % 4096 == 2048);
        let got = disk::with(|d| d.read_sectors(8, crossing));
        check_eq!(t, got, Some(Ok(())));
        check!(t, read(8, 8).is_ok_and(|aligned| aligned == *crossing), "crossing read differs");
        for (i, b) in crossing.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        let at = start + 32;
        check_eq!(t, disk::with(|d| d.write_sectors(at, crossing)), Some(Ok(())));
        check!(t, read(at, 8).is_ok_and(|back| back == *crossing), "crossing write differs");
    }
}

ktest! {
    /// A request completes by I/O interruption: exactly one unsolicited (alert) status
    /// of the disk's subchannel per request, taken by interruption before the request
    /// returns, and no status left pending.
    fn requests_complete_by_interruption(t) {
        let Some(_) = needs_disk(t) else { return };
        kernel::arch::css::drain_pending();
        let before = interruptions();
        check!(t, read(0, 8).is_ok());
        let after = interruptions();
        check_eq!(t, after.unsolicited, before.unsolicited + 1);
        check_eq!(t, after.solicited, before.solicited);
        // No status left pending on the subchannel.
        let disk = disk::with(|d| d.subchannel());
        check_eq!(t, disk.map(kernel::arch::css::tsch), Some(Ok(None)));
    }
}

ktest! {
    /// The memory manager's view: 4 KiB blocks of 8 sectors, block 0 the image header,
    /// every transfer counted.
    fn the_backing_device_reads_4k_blocks(t) {
        let Some(_) = needs_disk(t) else { return };
        let mut backing = VirtioBacking;
        let reads = backing.stats().reads;
        let mut page = [0u8; 4096];
        check_eq!(t, backing.read_page(0, &mut page), Ok(()));
        check_eq!(t, page[..8], MAGIC);
        check!(t, read(0, 8).is_ok_and(|s| s == page), "block 0 differs from sectors 0-7");
        check_eq!(t, backing.stats().reads, reads + 1);
    }
}
