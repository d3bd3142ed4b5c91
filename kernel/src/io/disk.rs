//! The virtio-blk disk: `virtio-drivers`' `VirtIOBlk` over the virtio-ccw transport,
//! requests completed by I/O interruption, as a [`BlockDevice`] of 4 KiB blocks the
//! memory manager can use as its backing store (`mm.backing=virtio`).
//!
//! One disk at most (the first virtio-blk subchannel), behind a lock: the memory
//! manager's [`VirtioBacking`] and the `io::*` suites both go through it.
//!
//! Requests are asynchronous: the memory manager's page transfers are started and
//! return at once, the page frame itself the data area; they end when the device used
//! them and its notification (an I/O interruption with alert status) was taken. A
//! synchronous request of a caller's buffer (tests, the image header) waits for its own
//! end and files the ends of the others it sees for the memory manager.
//!
//! Every write that succeeded is recorded ([`WriteLog`]) for the report xtask checks the
//! disk file against after the run ([`print_write_report`]).

use super::channel::{self, CcwChannel};
use super::css::sense_id::VIRTIO_BLK_MODEL;
use super::css::{IoError, KERNEL_ISC, SubchannelId};
use super::virtio_ccw::{CcwTransport, Faults, Notifications, TransportError};
use crate::arch::css;
use crate::arch::virtio::{self, Blk};
use crate::mm::addr::PAGE_BYTES;
use crate::mm::backing::writes::WriteLog;
use crate::mm::backing::{
    BlockDevice, Completion, Deferred, Direction, Frame, IoError as BlockError, IoStats, MemDisk,
    Started, Transfer,
};
use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
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
    /// Held back while a request starts: sent when the disk next looks for ends
    /// ([`VirtioDisk::collect`]), so the requests started in between reach the device at
    /// one notification.
    notifications: Arc<Notifications>,
    sectors: u64,
    stats: IoStats,
    /// Requests the device has not completed, with the memory manager's transfer (none
    /// for a synchronous request).
    in_flight: Vec<Request>,
    /// Ended page transfers the memory manager has not polled yet.
    ended: VecDeque<Completion>,
    /// Synchronous requests that ended while another waited: (token, result, buffer).
    ended_sync: Vec<(u16, Result<(), DiskError>, virtio::Buffer)>,
    /// An alert was taken and the used ring not yet found empty since.
    signalled: bool,
    /// Every successful write, for the report.
    written: WriteLog,
}

/// A request in flight.
#[derive(Debug)]
struct Request {
    io: virtio::InFlight,
    /// The memory manager's transfer, or `None` for a synchronous request.
    transfer: Option<Transfer>,
    /// The digests of a write's data, taken when it started (what the device reads
    /// unless the page changes under writeback), recorded once it succeeds.
    written: Option<WriteLog>,
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
        let notifications = transport.notifications();
        let blk = Blk::new(transport).map_err(DiskError::Driver)?;
        if let Some(e) = faults.take() {
            return Err(DiskError::Transport(e));
        }
        Ok(Self {
            sid,
            blk,
            faults,
            notifications,
            sectors,
            stats: IoStats::default(),
            in_flight: Vec::new(),
            ended: VecDeque::new(),
            ended_sync: Vec::new(),
            signalled: false,
            written: WriteLog::new(),
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

    /// Reads `buf.len()` bytes (a non-zero multiple of 512) from `sector` and waits.
    /// The device checks the range: a request past the end fails with
    /// `Driver(IoError)`. With nothing else in flight the device reads into `buf`
    /// itself; otherwise into a copy.
    pub fn read_sectors(&mut self, sector: u64, buf: &mut [u8]) -> Result<(), DiskError> {
        if self.in_flight.is_empty() {
            let result = virtio::read_sectors(&mut self.blk, self.sid, sector, buf);
            return self.check(result);
        }
        let copy = virtio::Buffer::Owned(alloc::vec![0u8; buf.len()].into_boxed_slice());
        let (result, copy) = self.transfer_now(sector, false, copy);
        if let virtio::Buffer::Owned(bytes) = copy {
            buf.copy_from_slice(&bytes);
        }
        result
    }

    /// Writes `buf` (a non-zero multiple of 512 bytes) at `sector` and waits.
    pub fn write_sectors(&mut self, sector: u64, buf: &[u8]) -> Result<(), DiskError> {
        if !self.in_flight.is_empty() {
            let copy = virtio::Buffer::Owned(Box::from(buf));
            return self.transfer_now(sector, true, copy).0;
        }
        let result = virtio::write_sectors(&mut self.blk, self.sid, sector, buf);
        let result = self.check(result);
        if result.is_ok() {
            self.written.record(sector, buf);
        }
        result
    }

    /// Starts a request; `Err` when nothing was started.
    fn start(
        &mut self,
        sector: u64,
        write: bool,
        buf: virtio::Buffer,
        transfer: Option<Transfer>,
    ) -> Result<u16, (DiskError, virtio::Buffer)> {
        // The notification waits for the next look for ends. A failed notification is a
        // transport fault, reported when the request ends. A full queue (16 requests:
        // with indirect descriptors, which the device offers, each takes one) waits for a
        // request to end.
        let mut buf = buf;
        let mut io = loop {
            self.notifications.hold();
            let started = virtio::start(&mut self.blk, sector, write, buf);
            self.notifications.release();
            match started {
                Ok(io) => break io,
                Err((DriverError::QueueFull, back)) if !self.in_flight.is_empty() => {
                    buf = back;
                    self.wait_for_one();
                }
                Err((e, back)) => return Err((DiskError::Driver(e), back)),
            }
        };
        let written = write.then(|| {
            let mut log = WriteLog::new();
            log.record(sector, io.data());
            log
        });
        let token = io.token();
        self.in_flight.push(Request {
            io,
            transfer,
            written,
        });
        Ok(token)
    }

    /// Whether the device has used a request the disk has not ended yet (it may not have
    /// taken the request's interruption yet).
    pub fn device_used(&mut self) -> bool {
        self.notify();
        virtio::next_used(&mut self.blk).is_some()
    }

    /// Device notifications sent so far (DIAGNOSE 0x500).
    pub fn notifications(&self) -> u64 {
        self.notifications.sent()
    }

    /// Sends the notifications held back since the last look for ends.
    fn notify(&self) {
        self.notifications
            .flush(&CcwChannel(self.sid), &self.faults);
    }

    /// Ended page transfers the memory manager has not polled yet.
    pub fn ended_transfers(&self) -> usize {
        self.ended.len()
    }

    /// Ends every request the device used, once its notification was taken (an alert
    /// interruption since the used ring was last found empty); takes no interruption
    /// itself. Notifies the device of the requests started since the last call first:
    /// every wait for an end comes through here.
    pub fn collect(&mut self) {
        self.notify();
        if css::take_alert(self.sid) {
            self.signalled = true;
        }
        while self.signalled {
            let Some(token) = virtio::next_used(&mut self.blk) else {
                self.signalled = false;
                virtio::ack(&mut self.blk);
                break;
            };
            let Some(at) = self.in_flight.iter().position(|r| r.io.token() == token) else {
                panic!("virtio-blk used request {token}, which is not in flight");
            };
            let request = self.in_flight.swap_remove(at);
            let (result, buf) = virtio::complete(&mut self.blk, request.io);
            let result = self.check(result);
            if result.is_ok()
                && let Some(log) = &request.written
            {
                self.written.merge(log);
            }
            match request.transfer {
                Some(transfer) => {
                    if result.is_ok() {
                        match transfer.direction {
                            Direction::Read => self.stats.reads += 1,
                            Direction::Write => self.stats.writes += 1,
                        }
                    }
                    self.ended.push_back(Completion {
                        transfer,
                        result: result.map_err(|_| BlockError::Device),
                    });
                }
                None => self.ended_sync.push((token, result, buf)),
            }
        }
    }

    /// Waits until some request in flight ended.
    fn wait_for_one(&mut self) {
        let before = self.in_flight.len();
        loop {
            self.collect();
            if self.in_flight.len() < before {
                return;
            }
            css::wait_for_io();
        }
    }

    /// Starts a synchronous request on a buffer of its own and waits for its end.
    fn transfer_now(
        &mut self,
        sector: u64,
        write: bool,
        buf: virtio::Buffer,
    ) -> (Result<(), DiskError>, virtio::Buffer) {
        let token = match self.start(sector, write, buf, None) {
            Ok(token) => token,
            Err((e, buf)) => return (Err(e), buf),
        };
        loop {
            self.collect();
            if let Some(at) = self.ended_sync.iter().position(|(t, ..)| *t == token) {
                let (_, result, buf) = self.ended_sync.swap_remove(at);
                return (result, buf);
            }
            css::wait_for_io();
        }
    }

    /// Starts the memory manager's page transfer.
    fn start_transfer(&mut self, transfer: Transfer) -> Started {
        let sector = transfer.block * SECTORS_PER_BLOCK;
        let write = transfer.direction == Direction::Write;
        match self.start(
            sector,
            write,
            virtio::Buffer::Frame(transfer.frame),
            Some(transfer),
        ) {
            Ok(_) => Started::Pending,
            Err(_) => Started::Done(Err(BlockError::Device)),
        }
    }

    /// The next ended page transfer; takes an interruption already pending first.
    fn poll(&mut self) -> Option<Completion> {
        if self.ended.is_empty() && !self.in_flight.is_empty() {
            // Before the window, so an end the notification brings at once is taken.
            self.notify();
            css::open_io_window();
            self.collect();
        }
        self.ended.pop_front()
    }

    /// Waits until a page transfer ended; false when none is in flight.
    fn wait(&mut self) -> bool {
        loop {
            self.collect();
            if !self.ended.is_empty() {
                return true;
            }
            if !self.in_flight.iter().any(|r| r.transfer.is_some()) {
                return false;
            }
            css::wait_for_io();
        }
    }

    /// Requests in flight.
    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }

    /// What the guest wrote so far.
    pub fn write_log(&self) -> &WriteLog {
        &self.written
    }
}

/// Prints the disk's write report (KTAP comments, see `backing::writes`) when there is
/// a disk: xtask checks the disk file against it after the run.
pub fn print_write_report() {
    let lines = match with(|d| d.written.report()) {
        Some(lines) => lines,
        // Not opened because no test needed it: nothing was written to it.
        None if init_result().is_none() => WriteLog::new().report(),
        None => return,
    };
    for line in lines {
        crate::println!("# {line}");
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
    // An unwind out of a request's start leaves the notifications held back.
    with(|d| d.notifications.release());
}

/// The disk as the memory manager's block device (4 KiB blocks of 8 sectors).
#[derive(Debug, Default)]
pub struct VirtioBacking;

impl VirtioBacking {
    /// A synchronous transfer of a caller's buffer; the block is checked against the
    /// capacity first (page transfers leave that to the device, whose error then comes
    /// by interruption like any other).
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

    fn start(&mut self, transfer: Transfer, frame: Frame<'_>) -> Started {
        // The device transfers to the frame itself (identity-mapped): its address and
        // the transfer's frame number name the same memory.
        let addr = match &frame {
            Frame::Read(f) => f.as_ptr(),
            Frame::Write(f) => f.as_ptr(),
        } as u64;
        assert_eq!(
            addr,
            transfer.frame * PAGE_BYTES as u64,
            "a frame not at its address"
        );
        with(|disk| disk.start_transfer(transfer)).unwrap_or(Started::Done(Err(BlockError::Device)))
    }

    fn poll(&mut self) -> Option<Completion> {
        with(VirtioDisk::poll).flatten()
    }

    fn wait(&mut self) -> bool {
        with(VirtioDisk::wait).unwrap_or(false)
    }
}

/// The kernel's backing store: the initrd in memory, or the virtio-blk disk
/// (`mm.backing=initrd|virtio`).
#[derive(Debug)]
pub enum KernelDisk {
    /// The initrd image: memory copies whose ends are reported at the next poll, so
    /// the page cache's I/O windows exist here too.
    Initrd(Deferred<MemDisk<&'static mut [u8]>>),
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
                let bytes = d.inner().storage().get(start..start + PAGE_BYTES);
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

    fn start(&mut self, transfer: Transfer, frame: Frame<'_>) -> Started {
        match self {
            Self::Initrd(d) => d.start(transfer, frame),
            Self::Virtio(d) => d.start(transfer, frame),
        }
    }

    fn poll(&mut self) -> Option<Completion> {
        match self {
            Self::Initrd(d) => d.poll(),
            Self::Virtio(d) => d.poll(),
        }
    }

    fn wait(&mut self) -> bool {
        match self {
            Self::Initrd(d) => d.wait(),
            Self::Virtio(d) => d.wait(),
        }
    }
}
