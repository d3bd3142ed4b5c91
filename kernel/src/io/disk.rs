//! The virtio-blk disk: `virtio-drivers`' `VirtIOBlk` over the virtio-ccw transport,
//! requests completed by I/O interruption, as a [`BlockDevice`] of 4 KiB blocks the
//! memory manager can use as its backing store (`mm.backing=virtio`).
//!
//! One disk at most (the first virtio-blk subchannel), behind a lock: the memory
//! manager's [`VirtioBacking`] and the `io::*` suites both go through it.

use super::channel::{self, CcwChannel};
use super::css::sense_id::VIRTIO_BLK_MODEL;
use super::css::{IoError, KERNEL_ISC, SubchannelId};
use super::virtio_ccw::{CcwTransport, Faults, TransportError};
use crate::arch::virtio::{self, Blk};
use crate::mm::addr::PAGE_BYTES;
use crate::mm::backing::{BlockDevice, IoError as BlockError, IoStats, MemDisk};
use alloc::sync::Arc;
use core::fmt;
use spin::Mutex;

/// The errors of `virtio-drivers`.
pub use virtio_drivers::Error as DriverError;

/// Bytes per virtio-blk sector.
pub const SECTOR_BYTES: usize = virtio_drivers::device::blk::SECTOR_SIZE;

/// Sectors per 4 KiB block of the backing store.
const SECTORS_PER_BLOCK: u64 = (PAGE_BYTES / SECTOR_BYTES) as u64;

/// The entries of `virtio-drivers`' block queue (`VirtIOBlk`'s `QUEUE_SIZE`), which a
/// legacy device's queue must have.
pub const QUEUE_ENTRIES: u16 = 16;

/// Why the disk is not there or a request failed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum DiskError {
    /// No subchannel has a virtio-blk device behind it.
    NoDevice,
    /// The channel subsystem failed (enabling, SENSE ID).
    Channel(IoError),
    /// The virtio-ccw transport failed.
    Transport(TransportError),
    /// The driver or the device refused (`virtio_drivers::Error`, e.g. `IoError` for a
    /// request the device failed, such as one past the end).
    Driver(virtio_drivers::Error),
}

impl fmt::Display for DiskError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDevice => f.write_str("no virtio-blk device"),
            Self::Channel(e) => write!(f, "channel subsystem: {e}"),
            Self::Transport(e) => write!(f, "virtio-ccw: {e}"),
            Self::Driver(e) => write!(f, "virtio-blk: {e}"),
        }
    }
}

/// An open virtio-blk disk.
pub struct VirtioDisk {
    sid: SubchannelId,
    blk: Blk<CcwTransport<CcwChannel>>,
    faults: Arc<Faults>,
    sectors: u64,
    stats: IoStats,
}

impl fmt::Debug for VirtioDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtioDisk")
            .field("sid", &self.sid)
            .field("sectors", &self.sectors)
            .finish()
    }
}

impl VirtioDisk {
    /// Opens the virtio-blk device behind `sid`: the subchannel is disabled and enabled
    /// again (so the device takes a new revision), then the transport and the driver
    /// come up.
    pub fn open(sid: SubchannelId) -> Result<Self, DiskError> {
        let _ = channel::disable(sid);
        channel::enable(sid, KERNEL_ISC).map_err(DiskError::Channel)?;
        let transport = CcwTransport::new(CcwChannel(sid)).map_err(DiskError::Transport)?;
        transport
            .require_queue_size(0, QUEUE_ENTRIES)
            .map_err(DiskError::Transport)?;
        // The capacity is a big-endian u64 in the legacy configuration space; the crate
        // reads it as two u32 halves, which swaps them on s390x (see `io::virtio_ccw`).
        let config = transport.read_config(8).map_err(DiskError::Transport)?;
        let sectors = u64::from_be_bytes(config[..8].try_into().unwrap_or([0; 8]));
        let faults = transport.faults();
        let blk = Blk::new(transport).map_err(DiskError::Driver)?;
        if let Some(e) = faults.take() {
            return Err(DiskError::Transport(e));
        }
        Ok(Self {
            sid,
            blk,
            faults,
            sectors,
            stats: IoStats::default(),
        })
    }

    /// The subchannel.
    pub fn subchannel(&self) -> SubchannelId {
        self.sid
    }

    /// Capacity in 512-byte sectors.
    pub fn sectors(&self) -> u64 {
        self.sectors
    }

    /// What `virtio-drivers` believes the capacity is (its two-halves read of the
    /// big-endian field; kept to show the swap the driver works around).
    pub fn driver_capacity(&self) -> u64 {
        self.blk.capacity()
    }

    fn check(&self, result: Result<(), virtio_drivers::Error>) -> Result<(), DiskError> {
        if let Some(e) = self.faults.take() {
            return Err(DiskError::Transport(e));
        }
        result.map_err(DiskError::Driver)
    }

    /// Reads `buf.len()` bytes (a non-zero multiple of 512) from `sector`. The device
    /// checks the range: a request past the end fails with `Driver(IoError)`.
    pub fn read_sectors(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        let result = virtio::read_sectors(&mut self.blk, self.sid, sector, buf);
        self.check(result)
    }

    /// Writes `buf` (a non-zero multiple of 512 bytes) at `sector`.
    pub fn write_sectors(&mut self, sector: u64, buf: &[u8]) -> Result<(), DiskError> {
        let result = virtio::write_sectors(&mut self.blk, self.sid, sector, buf);
        self.check(result)
    }
}

/// The disk, once [`init`] found one.
static DISK: Mutex<Option<VirtioDisk>> = Mutex::new(None);

/// The first subchannel with a virtio-blk device behind it.
pub fn find() -> Result<SubchannelId, DiskError> {
    for (sid, _) in channel::enumerate() {
        if channel::enable(sid, KERNEL_ISC).is_err() {
            continue;
        }
        match channel::sense_id(sid) {
            Ok(Some(id)) if id.is_virtio(VIRTIO_BLK_MODEL) => return Ok(sid),
            _ => {
                let _ = channel::disable(sid);
            }
        }
    }
    Err(DiskError::NoDevice)
}

/// What [`init`] found.
static INIT: spin::Once<Result<(), DiskError>> = spin::Once::new();

/// Finds and opens the disk (at boot); `Err(NoDevice)` when there is none.
pub fn init() -> Result<(), DiskError> {
    *INIT.call_once(|| {
        let disk = VirtioDisk::open(find()?)?;
        *DISK.lock() = Some(disk);
        Ok(())
    })
}

/// What the boot's [`init`] found: `None` before it ran, `Err(NoDevice)` when there is
/// no disk (the one reason a test that needs it may skip), another error when a disk
/// is there but failed to come up.
pub fn init_result() -> Option<Result<(), DiskError>> {
    INIT.get().copied()
}

/// Runs `f` on the disk; `None` when there is none.
pub fn with<R>(f: impl FnOnce(&mut VirtioDisk) -> R) -> Option<R> {
    DISK.lock().as_mut().map(f)
}

/// True when a disk was opened.
pub fn available() -> bool {
    DISK.lock().is_some()
}

/// Whether the disk's lock is held.
pub fn locked() -> bool {
    DISK.is_locked()
}

/// Releases the disk's lock after a test body that held it was unwound.
pub fn release_after_unwind() {
    crate::arch::sync::force_unlock(&DISK);
}

/// The disk as the memory manager's block device (4 KiB blocks of 8 sectors).
#[derive(Debug, Default)]
pub struct VirtioBacking;

impl VirtioBacking {
    fn transfer(
        block: u64,
        f: impl FnOnce(&mut VirtioDisk, u64) -> Result<(), DiskError>,
    ) -> Result<(), BlockError> {
        with(|disk| {
            if block >= disk.sectors / SECTORS_PER_BLOCK {
                return Err(BlockError::OutOfRange { block });
            }
            f(disk, block * SECTORS_PER_BLOCK).map_err(|_| BlockError::Device)
        })
        .unwrap_or(Err(BlockError::Device))
    }
}

impl BlockDevice for VirtioBacking {
    fn read_page(&mut self, block: u64, buf: &mut [u8; PAGE_BYTES]) -> Result<(), BlockError> {
        Self::transfer(block, |disk, sector| {
            disk.read_sectors(sector, buf)?;
            disk.stats.reads += 1;
            Ok(())
        })
    }

    fn write_page(&mut self, block: u64, buf: &[u8; PAGE_BYTES]) -> Result<(), BlockError> {
        Self::transfer(block, |disk, sector| {
            disk.write_sectors(sector, buf)?;
            disk.stats.writes += 1;
            Ok(())
        })
    }

    fn blocks(&self) -> u64 {
        with(|disk| disk.sectors / SECTORS_PER_BLOCK).unwrap_or(0)
    }

    fn stats(&self) -> IoStats {
        with(|disk| disk.stats).unwrap_or_default()
    }
}

/// The kernel's backing store: the initrd in memory, or the virtio-blk disk
/// (`mm.backing=initrd|virtio`).
#[derive(Debug)]
pub enum KernelDisk {
    /// The initrd image.
    Initrd(MemDisk<&'static mut [u8]>),
    /// The virtio-blk disk.
    Virtio(VirtioBacking),
}

impl KernelDisk {
    /// What the backing store is, for messages.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Initrd(_) => "-initrd image",
            Self::Virtio(_) => "virtio-blk disk",
        }
    }

    /// Block `block` as the device holds it, without counting a transfer (tests compare
    /// it with the page cache).
    pub fn peek(&self, block: u64) -> Result<alloc::boxed::Box<[u8; PAGE_BYTES]>, BlockError> {
        let mut page = alloc::boxed::Box::new([0u8; PAGE_BYTES]);
        match self {
            Self::Initrd(d) => {
                let start = usize::try_from(block)
                    .unwrap_or(usize::MAX)
                    .saturating_mul(PAGE_BYTES);
                let bytes = d.storage().get(start..start + PAGE_BYTES);
                page.copy_from_slice(bytes.ok_or(BlockError::OutOfRange { block })?);
            }
            Self::Virtio(_) => VirtioBacking::transfer(block, |disk, sector| {
                disk.read_sectors(sector, &mut page[..])
            })?,
        }
        Ok(page)
    }
}

impl BlockDevice for KernelDisk {
    fn read_page(&mut self, block: u64, buf: &mut [u8; PAGE_BYTES]) -> Result<(), BlockError> {
        match self {
            Self::Initrd(d) => d.read_page(block, buf),
            Self::Virtio(d) => d.read_page(block, buf),
        }
    }

    fn write_page(&mut self, block: u64, buf: &[u8; PAGE_BYTES]) -> Result<(), BlockError> {
        match self {
            Self::Initrd(d) => d.write_page(block, buf),
            Self::Virtio(d) => d.write_page(block, buf),
        }
    }

    fn blocks(&self) -> u64 {
        match self {
            Self::Initrd(d) => d.blocks(),
            Self::Virtio(d) => d.blocks(),
        }
    }

    fn stats(&self) -> IoStats {
        match self {
            Self::Initrd(d) => d.stats(),
            Self::Virtio(d) => d.stats(),
        }
    }
}
