//! The machine side of virtio-ccw: the `virtio-drivers` HAL, DIAGNOSE 0x500 and block
//! requests completed by I/O interruption.
//!
//! The kernel is identity-mapped, so a buffer's kernel address is its absolute address
//! and "sharing" a buffer with the device is the identity. Virtqueue memory may lie
//! anywhere: `SET_VQ` and the ring descriptors carry 64-bit addresses (only CCWs and
//! their data need 31-bit addresses, see [`super::css::DmaPage`]).

use super::css;
use crate::io::css::SubchannelId;
use crate::mm::manager::USER_START;
use alloc::boxed::Box;
use core::alloc::Layout;
use core::arch::asm;
use core::ptr::NonNull;
use virtio_drivers::device::blk::{BlkReq, BlkResp, VirtIOBlk};
use virtio_drivers::transport::Transport;
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

/// The `virtio-drivers` HAL of the kernel: DMA memory from the kernel heap,
/// identity-mapped.
#[derive(Debug)]
pub struct KernelHal;

fn dma_layout(pages: usize) -> Option<Layout> {
    Layout::from_size_align(pages.checked_mul(PAGE_SIZE)?, PAGE_SIZE).ok()
}

/// The absolute address of a kernel buffer: its address, the kernel being
/// identity-mapped below the user range.
fn identity(addr: u64, len: usize) -> PhysAddr {
    assert!(
        addr + len as u64 <= USER_START.as_u64(),
        "virtio buffer at {addr:#x} is not identity-mapped kernel memory"
    );
    addr
}

// SAFETY: `dma_alloc` hands out fresh, zeroed, page-aligned heap memory that nothing
// else references until `dma_dealloc` returns it with the same layout; `share` returns
// the absolute address of kernel memory, which is its identity-mapped address.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(layout) = dma_layout(pages).filter(|l| l.size() > 0) else {
            return (0, NonNull::dangling());
        };
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc::alloc_zeroed(layout) };
        match NonNull::new(raw) {
            Some(ptr) => (identity(raw as u64, layout.size()), ptr),
            // `Dma::new` turns a zero address into `Error::DmaError`.
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        let Some(layout) = dma_layout(pages) else {
            return -1;
        };
        // SAFETY: the caller passes back what `dma_alloc` returned for `pages` pages.
        unsafe { alloc::alloc::dealloc(vaddr.as_ptr(), layout) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, _size: usize) -> NonNull<u8> {
        // Only the PCI transport maps BARs; virtio-ccw has no MMIO at all.
        panic!("virtio-ccw has no MMIO regions (asked to map {paddr:#x})");
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        let addr = identity(buffer.as_ptr().cast::<u8>() as u64, buffer.len());
        // The device reaches the buffer past every page table: a frame the host model
        // took away must be handed back first (paged out, zero), or refused (discarded).
        let frames =
            addr / PAGE_SIZE as u64..(addr + buffer.len() as u64).div_ceil(PAGE_SIZE as u64);
        for pfn in frames {
            super::revoke::touched_by_device(pfn);
        }
        addr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

/// DIAGNOSE 0x500, subcode 3 (virtio-ccw notify): tells the device behind `sid` that
/// queue `queue` has new buffers. `Err` holds the negative return code (e.g. -EINVAL
/// for a subchannel without a virtio device).
pub fn notify(sid: SubchannelId, queue: u16) -> Result<(), i64> {
    let result: i64;
    // SAFETY: the hypercall only makes the device read the queue's rings, which the
    // driver set up with SET_VQ and whose buffers the `virtio-drivers` queue keeps
    // borrowed until they are used; r4 is a cookie the host may ignore.
    unsafe {
        asm!(
            "diag %r2, %r4, 0x500",
            in("r1") 3u64,
            inlateout("r2") u64::from(sid.word()) => result,
            in("r3") u64::from(queue),
            in("r4") 0u64,
            options(nostack),
        );
    }
    if result < 0 { Err(result) } else { Ok(()) }
}

/// A virtio-blk driver on the kernel's HAL.
pub type Blk<T> = VirtIOBlk<KernelHal, T>;

/// Waits until the device has used request `token` and its notification, an I/O
/// interruption of subchannel `sid` with unsolicited (alert) status, has been taken:
/// enabled for I/O in between. Waiting for the interruption too, not only the used ring
/// (which the device may fill before the guest looks), leaves no status pending behind
/// a request, so completion is by interruption every time.
fn wait_used<T: Transport>(blk: &mut Blk<T>, sid: SubchannelId, token: u16) {
    let mut used = false;
    let mut signalled = false;
    while !(used && signalled) {
        // Both checked with interruptions disabled: what the device does after the
        // checks stays pending and ends the wait at once.
        used = used
            || match blk.peek_used() {
                Some(t) if t == token => true,
                Some(other) => {
                    panic!("virtio-blk used request {other}, but only {token} is outstanding")
                }
                None => false,
            };
        signalled = signalled || css::take_alert(sid);
        if !(used && signalled) {
            css::wait_for_io();
        }
    }
    blk.ack_interrupt();
}

/// Reads `buf.len()` bytes (a multiple of 512) from sector `sector` of the device
/// behind `sid`, completed by interruption. `buf` must be kernel memory.
pub fn read_sectors<T: Transport>(
    blk: &mut Blk<T>,
    sid: SubchannelId,
    sector: u64,
    buf: &mut [u8],
) -> Result<(), virtio_drivers::Error> {
    let mut req = BlkReq::default();
    let mut resp = BlkResp::default();
    // SAFETY: `req`, `buf` and `resp` stay borrowed here, untouched, until the device
    // has used the request (`wait_used` returns only then) and it is completed with the
    // same buffers.
    unsafe {
        let token = blk.read_blocks_nb(sector as usize, &mut req, buf, &mut resp)?;
        wait_used(blk, sid, token);
        blk.complete_read_blocks(token, &req, buf, &mut resp)
    }
}

/// Writes `buf` (a multiple of 512 bytes) to sector `sector`, completed by interruption.
pub fn write_sectors<T: Transport>(
    blk: &mut Blk<T>,
    sid: SubchannelId,
    sector: u64,
    buf: &[u8],
) -> Result<(), virtio_drivers::Error> {
    let mut req = BlkReq::default();
    let mut resp = BlkResp::default();
    // SAFETY: as for `read_sectors`.
    unsafe {
        let token = blk.write_blocks_nb(sector as usize, &mut req, buf, &mut resp)?;
        wait_used(blk, sid, token);
        blk.complete_write_blocks(token, &req, buf, &mut resp)
    }
}

/// The data area of a request in flight.
#[derive(Debug)]
pub enum Buffer {
    /// A buffer the request owns (a copy for a synchronous caller).
    Owned(Box<[u8]>),
    /// The 4 KiB page frame `pfn`, which the memory manager lends: it keeps the frame
    /// allocated and does not touch its contents (read) or free it (write) until the
    /// request completed (the page is locked or under writeback until then).
    Frame(u64),
}

impl Buffer {
    fn bytes(&mut self) -> &mut [u8] {
        match self {
            Self::Owned(b) => b,
            // SAFETY: the frame is identity-mapped kernel memory that the memory manager
            // lent to this request (see `Buffer::Frame`): nothing else references its
            // contents while the request owns it.
            Self::Frame(pfn) => unsafe {
                &mut *((*pfn * PAGE_SIZE as u64) as *mut [u8; PAGE_SIZE])
            },
        }
    }
}

/// A block request the device has not completed: everything `virtio-drivers` must get
/// back to complete it, kept at fixed heap addresses while the device owns them.
#[derive(Debug)]
pub struct InFlight {
    token: u16,
    write: bool,
    req: Box<BlkReq>,
    resp: Box<BlkResp>,
    buf: Buffer,
}

impl InFlight {
    /// The token `virtio-drivers` gave the request (what the used ring returns).
    pub fn token(&self) -> u16 {
        self.token
    }

    /// The request's data (for a write, what the device reads).
    pub fn data(&mut self) -> &[u8] {
        self.buf.bytes()
    }
}

/// Starts a request on `buf` at `sector` (a read into it, or a write of it) and returns
/// at once; [`complete`] ends it once [`next_used`] returned its token. On an error
/// nothing was started and the buffer comes back.
pub fn start<T: Transport>(
    blk: &mut Blk<T>,
    sector: u64,
    write: bool,
    mut buf: Buffer,
) -> Result<InFlight, (virtio_drivers::Error, Buffer)> {
    let mut req = Box::new(BlkReq::default());
    let mut resp = Box::new(BlkResp::default());
    // SAFETY: `req`, `resp` and the buffer live on the heap (or in a lent frame) at
    // addresses that do not change when the boxes move; `InFlight` owns them until
    // `complete` hands them back to the driver with the same token, and `Drop` of a
    // disk with requests in flight is not possible (the disk lives for the whole run).
    let token = unsafe {
        if write {
            blk.write_blocks_nb(sector as usize, &mut req, buf.bytes(), &mut resp)
        } else {
            blk.read_blocks_nb(sector as usize, &mut req, buf.bytes(), &mut resp)
        }
    };
    match token {
        Ok(token) => Ok(InFlight {
            token,
            write,
            req,
            resp,
            buf,
        }),
        Err(e) => Err((e, buf)),
    }
}

/// The token of the next request the device has used, if any.
pub fn next_used<T: Transport>(blk: &mut Blk<T>) -> Option<u16> {
    blk.peek_used()
}

/// Completes `request`, which must be the next used one ([`next_used`]): its result
/// (the device's status) and its buffer.
pub fn complete<T: Transport>(
    blk: &mut Blk<T>,
    mut request: InFlight,
) -> (Result<(), virtio_drivers::Error>, Buffer) {
    let InFlight {
        token,
        write,
        ref req,
        ref mut resp,
        ref mut buf,
    } = request;
    // SAFETY: the same request, buffers and token `start` handed to the driver.
    let result = unsafe {
        if write {
            blk.complete_write_blocks(token, req, buf.bytes(), resp)
        } else {
            blk.complete_read_blocks(token, req, buf.bytes(), resp)
        }
    };
    (result, request.buf)
}

/// Acknowledges the device's interrupt indicators after its used ring was drained.
pub fn ack<T: Transport>(blk: &mut Blk<T>) {
    blk.ack_interrupt();
}
