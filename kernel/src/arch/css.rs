//! The channel subsystem: typed wrappers of STSCH, MSCH, SSCH, TSCH, TPI and CSCH, the
//! interruption-subclass mask in CR6, DMA memory below 2 GiB, channel programs that own
//! their memory, and the I/O-interruption path.
//!
//! Safety rests on ownership: a [`ChannelProgram`] owns its CCWs, IDAW lists and data
//! buffers, hands its buffers out only while no I/O runs, and on drop clears a program
//! that still runs (CSCH, then waits for the clear to finish) before any of its memory
//! is freed. So the channel never touches memory Rust code owns elsewhere.
//!
//! Interruptions: the entry stub calls [`io_interruption`], which stores the
//! subchannel's status with TSCH (the interruption leaves the subchannel status
//! pending), keeps the status that ends a started program for [`ChannelProgram::wait`],
//! and hands every interruption to the handler policy code registered with
//! [`set_handler`] (arch knows nothing of what a device means).

use super::InterruptFrame;
use super::cpu::{self, psw_mask};
use super::lowcore;
use crate::io::css::ccw::{DataArea, IDAW_BLOCK, LIMIT_31BIT, Segment};
use crate::io::css::irb::IRB_BYTES;
use crate::io::css::schib::SCHIB_BYTES;
use crate::io::css::{
    Ccw, CcwFlags, Completion, IoError, Irb, Isc, Orb, Schib, SubchannelId, classify,
    instruction_cc,
};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::arch::asm;
use spin::Mutex;

/// A word-aligned buffer for the control blocks the I/O instructions read and store.
#[repr(C, align(8))]
struct Block<const N: usize>([u8; N]);

/// Issues the subchannel instruction `$opcode` (S format: its control block at `$block`,
/// the subsystem-identification word in GR1) and evaluates to its condition code. Use
/// inside `unsafe`, with a `// SAFETY:` comment for what the instruction does with the block.
macro_rules! subchannel_instruction {
    ($opcode:literal, $block:expr, $sid:expr) => {{
        let cc: u64;
        asm!(
            concat!(".insn s,", $opcode, ",0({b})"),
            "ipm {cc}",
            "srl {cc}, 28",
            b = in(reg_addr) $block,
            cc = lateout(reg) cc,
            in("r1") u64::from($sid.word()),
            options(nostack),
        );
        // IPM + SRL set only the low word: the high word keeps whatever the register held.
        (cc & 3) as u8
    }};
}

/// STORE SUBCHANNEL: the SCHIB of `sid`; `Err(NotOperational)` (cc 3) when the
/// subchannel is not provided, which ends an enumeration.
pub fn stsch(sid: SubchannelId) -> Result<Schib, IoError> {
    let mut block = Block([0u8; SCHIB_BYTES]);
    // SAFETY: STSCH stores 52 bytes into the local, word-aligned block; GR1 holds a
    // subsystem-id word with the one bit set (else: operand exception, which
    // `SubchannelId` rules out).
    let cc = unsafe { subchannel_instruction!("0xb2340000", block.0.as_mut_ptr(), sid) };
    match cc {
        0 => Ok(Schib::decode(&block.0)),
        _ => Err(IoError::NotOperational),
    }
}

/// MODIFY SUBCHANNEL with `schib`'s PMCW (enable, ISC, interruption parameter,
/// concurrent sense). cc 1 status pending, 2 busy, 3 not operational.
pub fn msch(sid: SubchannelId, schib: &Schib) -> Result<(), IoError> {
    let block = Block(schib.encode());
    // SAFETY: MSCH only reads the local SCHIB image; changing the PMCW affects nothing
    // but which interruptions the subchannel makes.
    let cc = unsafe { subchannel_instruction!("0xb2320000", block.0.as_ptr(), sid) };
    instruction_cc(cc)
}

/// START SUBCHANNEL with `orb`.
///
/// # Safety
/// The channel program and every byte it addresses must stay allocated and untouched
/// by the CPU until the subchannel has ended the start function (status with primary
/// status stored by TSCH, or a clear function completed).
unsafe fn ssch(sid: SubchannelId, orb: &Orb) -> Result<(), IoError> {
    let block = Block(orb.encode());
    // SAFETY: the ORB image is read during the instruction only; the caller keeps the
    // program alive until the I/O ends.
    let cc = unsafe { subchannel_instruction!("0xb2330000", block.0.as_ptr(), sid) };
    instruction_cc(cc)
}

/// TEST SUBCHANNEL: the IRB when status was pending (cc 0), which also clears it;
/// `Ok(None)` when no status was pending (cc 1); cc 3 not operational.
pub fn tsch(sid: SubchannelId) -> Result<Option<Irb>, IoError> {
    let mut block = Block([0u8; IRB_BYTES]);
    // SAFETY: TSCH stores 96 bytes into the local block.
    let cc = unsafe { subchannel_instruction!("0xb2350000", block.0.as_mut_ptr(), sid) };
    match cc {
        0 => Ok(Some(Irb::decode(&block.0))),
        1 => Ok(None),
        _ => Err(IoError::NotOperational),
    }
}

/// CLEAR SUBCHANNEL: ends whatever the subchannel does; completion is signalled by
/// status pending with the clear function.
pub fn csch(sid: SubchannelId) -> Result<(), IoError> {
    // SAFETY: CSCH takes only GR1 (its second-operand address is ignored); it stops all
    // data transfer of the subchannel.
    let cc = unsafe { subchannel_instruction!("0xb2300000", 0u64, sid) };
    instruction_cc(cc)
}

/// An I/O-interruption code TPI took from the pending interruptions.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct PendingInterruption {
    /// The subchannel (None for an adapter interruption).
    pub sid: Option<SubchannelId>,
    /// The interruption parameter.
    pub intparm: u32,
}

/// TEST PENDING INTERRUPTION: takes one pending I/O interruption of a subclass enabled
/// in CR6 (the PSW I/O mask does not matter) and returns its code, without taking the
/// interruption; the subchannel stays status pending until TSCH.
pub fn tpi() -> Option<PendingInterruption> {
    let mut code = Block([0u8; 8]);
    let cc: u64;
    // SAFETY: with a non-zero operand TPI stores the two-word interruption code into
    // the local block.
    unsafe {
        asm!(
            ".insn s,0xb2360000,0({b})",
            "ipm {cc}",
            "srl {cc}, 28",
            b = in(reg_addr) code.0.as_mut_ptr(),
            cc = lateout(reg) cc,
            options(nostack),
        );
    }
    // IPM + SRL set only the low word: the high word keeps whatever the register held.
    (cc as u32 == 1).then(|| {
        let word = u32::from_be_bytes([code.0[0], code.0[1], code.0[2], code.0[3]]);
        PendingInterruption {
            sid: SubchannelId::from_word(word),
            intparm: u32::from_be_bytes([code.0[4], code.0[5], code.0[6], code.0[7]]),
        }
    })
}

/// Takes every I/O interruption now pending for a subclass enabled in CR6 without
/// opening the I/O mask (TPI, then TSCH and the handler, as the interruption would have);
/// returns how many. QEMU 7.2 keeps an interruption request queued after TSCH collected
/// the status by polling; this clears such leftovers at a known point.
pub fn drain_pending() -> usize {
    let mut taken = 0;
    while let Some(pending) = tpi() {
        let irb = pending.sid.and_then(|s| tsch(s).ok().flatten());
        let id = if pending.sid.is_none() {
            0x8000_0000
        } else {
            0
        };
        dispatch(pending.sid, pending.intparm, id, irb);
        taken += 1;
    }
    taken
}

/// Enables or disables the I/O interruptions of subclass `isc` (CR6).
pub fn set_isc_enabled(isc: Isc, enabled: bool) {
    let cr6 = cpu::read_cr::<6>();
    let new = if enabled {
        cr6 | isc.cr6_bit()
    } else {
        cr6 & !isc.cr6_bit()
    };
    // SAFETY: CR6 only masks I/O interruptions, which the kernel takes in its waits
    // alone; `io_interruption` handles every subclass.
    unsafe { cpu::write_cr::<6>(new) };
}

/// Whether subclass `isc` is enabled in CR6.
pub fn isc_enabled(isc: Isc) -> bool {
    cpu::read_cr::<6>() & isc.cr6_bit() != 0
}

/// Waits with I/O interruptions enabled until one arrives and has been handled (the
/// handler clears WAIT and the I/O mask in the old PSW, so execution resumes here,
/// disabled). Only a subclass enabled in CR6 can end the wait.
pub fn wait_for_io() {
    // SAFETY: the wait PSW adds only the I/O mask and WAIT; `io_interruption` restores
    // all registers and clears both bits.
    unsafe { cpu::continue_with_mask(cpu::current_psw_mask() | psw_mask::IO | psw_mask::WAIT) };
}

/// Opens the I/O mask for one instruction: a pending interruption of an enabled
/// subclass is taken, nothing else happens (tests of subclass masking).
pub fn open_io_window() {
    // SAFETY: the PSW gains only the I/O mask, and the next instruction takes it away
    // again; `io_interruption` returns to whichever was interrupted.
    unsafe {
        cpu::continue_with_mask(cpu::current_psw_mask() | psw_mask::IO);
        cpu::continue_with_mask(cpu::current_psw_mask() & !psw_mask::IO);
    }
}

/// One I/O interruption, as the registered handler sees it.
#[derive(Clone, Copy, Debug)]
pub struct IoInterruption {
    /// The subchannel (None for an adapter interruption).
    pub sid: Option<SubchannelId>,
    /// The interruption parameter (the last ORB's, or the PMCW's).
    pub intparm: u32,
    /// The interruption subclass.
    pub isc: u8,
    /// An adapter (thin) interruption: no subchannel status.
    pub adapter: bool,
    /// The status TSCH stored for the subchannel.
    pub irb: Option<Irb>,
}

/// The policy handler of I/O interruptions.
static HANDLER: Mutex<Option<fn(&IoInterruption)>> = Mutex::new(None);

/// Registers the handler every I/O interruption is handed to (after TSCH).
pub fn set_handler(handler: fn(&IoInterruption)) {
    *HANDLER.lock() = Some(handler);
}

/// Per-subchannel records the interruption path leaves for the kernel's waits: the
/// ending status of a started program until [`ChannelProgram::wait`] takes it, and the
/// unsolicited (alert) statuses not yet consumed by [`take_alert`]. A handful of slots:
/// the kernel drives a few subchannels, one program each at a time.
#[derive(Clone, Copy)]
struct Record {
    sid: SubchannelId,
    ended: Option<Irb>,
    alerts: u32,
}

static RECORDS: Mutex<[Option<Record>; 8]> = Mutex::new([None; 8]);

/// Runs `f` on the record of `sid`, creating it if there is room.
fn with_record<R>(sid: SubchannelId, f: impl FnOnce(&mut Record) -> R) -> Option<R> {
    let mut records = RECORDS.lock();
    let index = records
        .iter()
        .position(|r| matches!(r, Some(r) if r.sid == sid))
        .or_else(|| records.iter().position(Option::is_none))?;
    let record = records[index].get_or_insert(Record {
        sid,
        ended: None,
        alerts: 0,
    });
    Some(f(record))
}

fn take_ended(sid: SubchannelId) -> Option<Irb> {
    with_record(sid, |r| r.ended.take()).flatten()
}

/// Consumes one unsolicited status of `sid` that arrived by interruption (a virtio
/// device's queue notification); false when none arrived since the last call.
pub fn take_alert(sid: SubchannelId) -> bool {
    with_record(sid, |r| {
        let had = r.alerts > 0;
        r.alerts = r.alerts.saturating_sub(1);
        had
    })
    .unwrap_or(false)
}

/// Files the status TSCH collected for `sid` and hands the interruption to the handler.
fn dispatch(sid: Option<SubchannelId>, intparm: u32, id: u32, irb: Option<Irb>) {
    if let (Some(s), Some(irb)) = (sid, irb) {
        with_record(s, |r| {
            if irb.scsw.solicited() {
                if irb.scsw.ends_function() {
                    r.ended = Some(irb);
                }
            } else {
                r.alerts += 1;
            }
        });
    }
    let event = IoInterruption {
        sid,
        intparm,
        isc: ((id >> 27) & 7) as u8,
        adapter: id & 0x8000_0000 != 0,
        irb,
    };
    let handler = *HANDLER.lock();
    if let Some(handler) = handler {
        handler(&event);
    }
}

/// Called by `zhint_io_interrupt` for every I/O interruption.
pub(super) fn io_interruption(frame: &mut InterruptFrame) {
    let id = lowcore::io_identification();
    let adapter = id & 0x8000_0000 != 0;
    let sid = if adapter {
        None
    } else {
        SubchannelId::from_word(lowcore::io_subchannel())
    };
    // The interruption leaves the subchannel status pending: collect the status.
    let irb = sid.and_then(|s| tsch(s).ok().flatten());
    dispatch(sid, lowcore::io_intparm(), id, irb);
    // The interruption ended an enabled wait (`wait_for_io`) or an I/O window: resume
    // after it, disabled.
    frame.psw.mask &= !(psw_mask::WAIT | psw_mask::IO);
}

/// One 4 KiB page of DMA memory: page-aligned, identity-mapped, below 2 GiB (so CCWs,
/// IDAW lists and direct data addresses reach it), zeroed.
#[derive(Debug)]
pub struct DmaPage(Box<PageBytes>);

#[repr(C, align(4096))]
struct PageBytes([u8; 4096]);

impl core::fmt::Debug for PageBytes {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "page@{:#x}", self.0.as_ptr() as u64)
    }
}

impl DmaPage {
    /// A zeroed page from the kernel heap; `Err(NoDmaMemory)` when none is left or the
    /// heap gave one above 2 GiB.
    pub fn new() -> Result<Self, IoError> {
        let layout = core::alloc::Layout::new::<PageBytes>();
        // SAFETY: the layout has a non-zero size.
        let raw = unsafe { alloc::alloc::alloc_zeroed(layout) }.cast::<PageBytes>();
        if raw.is_null() {
            return Err(IoError::NoDmaMemory);
        }
        // SAFETY: `raw` is a fresh, zeroed allocation with `PageBytes`' layout, and
        // zero bytes are a valid `PageBytes`; the box frees it with the same layout.
        let page = Self(unsafe { Box::from_raw(raw) });
        if page.addr() + IDAW_BLOCK > LIMIT_31BIT {
            return Err(IoError::NoDmaMemory);
        }
        Ok(page)
    }

    /// Its absolute (= kernel virtual) address.
    pub fn addr(&self) -> u64 {
        self.0.0.as_ptr() as u64
    }
}

/// A data buffer of a channel program: `len` bytes from `offset` into the first of its
/// pages, which need not be adjacent (the CCW then addresses them through IDAWs).
#[derive(Debug)]
pub struct DmaBuffer {
    pages: Vec<DmaPage>,
    offset: usize,
    len: usize,
}

impl DmaBuffer {
    /// `len` zero bytes starting `offset` bytes into a fresh page.
    pub fn new(offset: usize, len: usize) -> Result<Self, IoError> {
        let count = (offset % 4096 + len).div_ceil(4096).max(1);
        let pages = (0..count)
            .map(|_| DmaPage::new())
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_pages(pages, offset % 4096, len)
    }

    /// `len` bytes starting `offset` into `pages[0]` and continuing at the start of each
    /// following page.
    pub fn from_pages(pages: Vec<DmaPage>, offset: usize, len: usize) -> Result<Self, IoError> {
        if offset >= 4096 || offset + len > pages.len() * 4096 || len > usize::from(u16::MAX) {
            return Err(IoError::BadDataArea);
        }
        Ok(Self { pages, offset, len })
    }

    /// Bytes in the buffer.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the buffer holds no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces of the buffer, one per page, with their absolute addresses.
    pub fn segments(&self) -> Vec<Segment> {
        let mut out = Vec::new();
        let (mut at, mut left) = (self.offset, self.len);
        for page in &self.pages {
            if left == 0 {
                break;
            }
            let n = (4096 - at).min(left);
            out.push(Segment {
                addr: page.addr() + at as u64,
                len: n as u32,
            });
            left -= n;
            at = 0;
        }
        out
    }

    /// Copies the buffer's bytes into `out` (up to the shorter length).
    pub fn read(&self, out: &mut [u8]) {
        let mut done = 0;
        for (page, s) in self.pages.iter().zip(self.segments()) {
            let n = (s.len as usize).min(out.len() - done);
            let start = (s.addr - page.addr()) as usize;
            out[done..done + n].copy_from_slice(&page.0.0[start..start + n]);
            done += n;
        }
    }

    /// Copies `data` into the buffer (up to the shorter length).
    pub fn write(&mut self, data: &[u8]) {
        let mut done = 0;
        let segments = self.segments();
        for (page, s) in self.pages.iter_mut().zip(segments) {
            let n = (s.len as usize).min(data.len() - done);
            let start = (s.addr - page.addr()) as usize;
            page.0.0[start..start + n].copy_from_slice(&data[done..done + n]);
            done += n;
        }
    }
}

/// One CCW of a program: command, flags (command chaining is added between steps),
/// and its data buffer if it moves data.
#[derive(Debug)]
pub struct Step {
    /// Command code.
    pub command: u8,
    /// Flags (SLI, ...).
    pub flags: CcwFlags,
    /// The data area.
    pub data: Option<DmaBuffer>,
}

/// A channel program that owns its CCWs, IDAW lists and data buffers.
#[derive(Debug)]
pub struct ChannelProgram {
    /// The CCWs, then the IDAW lists (doublewords, below 2 GiB).
    control: DmaPage,
    uses_idaws: bool,
    buffers: Vec<Option<DmaBuffer>>,
    running: Option<SubchannelId>,
}

/// Doublewords of a program's control page.
const CONTROL_WORDS: usize = 4096 / 8;

impl ChannelProgram {
    /// Builds the program: one CCW per step, chained, each data buffer addressed
    /// directly or, when it crosses a page or lies above 2 GiB, through IDAWs.
    pub fn new(steps: Vec<Step>) -> Result<Self, IoError> {
        let control = DmaPage::new()?;
        let mut words = alloc::vec![0u64; steps.len()];
        let mut uses_idaws = false;
        let last = steps.len().saturating_sub(1);
        let mut buffers = Vec::with_capacity(steps.len());
        for (i, step) in steps.into_iter().enumerate() {
            let area = match &step.data {
                Some(b) => DataArea::plan(&b.segments()).map_err(|_| IoError::BadDataArea)?,
                None => DataArea::None,
            };
            let mut flags = step.flags;
            if i < last {
                flags = flags.union(CcwFlags::CHAIN_COMMAND);
            }
            let (count, addr) = match area {
                DataArea::None => (0, 0),
                DataArea::Direct { addr, count } => (count, addr),
                DataArea::Indirect { idaws, count } => {
                    uses_idaws = true;
                    flags = flags.union(CcwFlags::IDA);
                    let at = words.len();
                    words.extend_from_slice(&idaws);
                    (count, (control.addr() + 8 * at as u64) as u32)
                }
            };
            words[i] = Ccw {
                command: step.command,
                flags,
                count,
                addr,
            }
            .encode();
            buffers.push(step.data);
        }
        if words.len() > CONTROL_WORDS {
            return Err(IoError::BadDataArea);
        }
        let mut program = Self {
            control,
            uses_idaws,
            buffers,
            running: None,
        };
        for (i, w) in words.iter().enumerate() {
            program.control.0.0[8 * i..8 * i + 8].copy_from_slice(&w.to_be_bytes());
        }
        Ok(program)
    }

    /// The absolute address of the first CCW (the ORB's channel-program address).
    pub fn address(&self) -> u64 {
        self.control.addr()
    }

    /// The CCW at `index` as the channel reads it.
    pub fn ccw(&self, index: usize) -> Ccw {
        let b = &self.control.0.0[8 * index..8 * index + 8];
        Ccw::decode(u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
    }

    /// Whether the program addresses data through IDAWs.
    pub fn uses_idaws(&self) -> bool {
        self.uses_idaws
    }

    /// The data buffer of step `index`; `None` while the program runs.
    pub fn buffer(&self, index: usize) -> Option<&DmaBuffer> {
        self.running
            .is_none()
            .then(|| self.buffers.get(index)?.as_ref())
            .flatten()
    }

    /// The data buffer of step `index` to fill; `None` while the program runs.
    pub fn buffer_mut(&mut self, index: usize) -> Option<&mut DmaBuffer> {
        if self.running.is_some() {
            return None;
        }
        self.buffers.get_mut(index)?.as_mut()
    }

    /// Starts the program on `sid` (SSCH) with `intparm`.
    pub fn start(&mut self, sid: SubchannelId, intparm: u32) -> Result<(), IoError> {
        if self.running.is_some() {
            return Err(IoError::Busy);
        }
        let orb = Orb {
            intparm,
            lpm: 0xff,
            idaws: self.uses_idaws,
            cpa: self.control.addr() as u32,
        };
        // A status left from an earlier program of this subchannel is stale now.
        take_ended(sid);
        // SAFETY: `self` owns the CCWs and buffers; `running` makes `buffer` and
        // `buffer_mut` refuse access and `Drop` clear the subchannel before freeing
        // anything, until `wait`/`poll` has seen the program end.
        unsafe { ssch(sid, &orb)? };
        self.running = Some(sid);
        Ok(())
    }

    /// Waits (enabled for I/O) until the running program's ending status arrives by
    /// interruption. The subchannel's subclass must be enabled in CR6, else use
    /// [`poll`](Self::poll).
    pub fn wait(&mut self) -> Result<Irb, IoError> {
        let sid = self.running.ok_or(IoError::NotOperational)?;
        loop {
            if let Some(irb) = take_ended(sid) {
                self.running = None;
                return Ok(irb);
            }
            wait_for_io();
        }
    }

    /// Collects the ending status with TSCH if it is there (no interruption needed):
    /// `None` while the program still runs.
    pub fn poll(&mut self) -> Option<Result<Irb, IoError>> {
        let sid = self.running?;
        if let Some(irb) = take_ended(sid) {
            self.running = None;
            return Some(Ok(irb));
        }
        match tsch(sid) {
            Ok(Some(irb)) if irb.scsw.ends_function() => {
                self.running = None;
                Some(Ok(irb))
            }
            Ok(_) => None,
            Err(e) => {
                self.running = None;
                Some(Err(e))
            }
        }
    }

    /// Starts the program, waits for its ending by interruption and classifies it.
    pub fn run(&mut self, sid: SubchannelId, intparm: u32) -> Result<Completion, IoError> {
        self.start(sid, intparm)?;
        classify(&self.wait()?)
    }
}

impl Drop for ChannelProgram {
    /// A program still running is cleared before its memory goes back to the heap.
    fn drop(&mut self) {
        let Some(sid) = self.running else { return };
        if csch(sid).is_err() {
            // Not operational: the subchannel no longer does anything.
            return;
        }
        loop {
            if take_ended(sid).is_some() {
                return;
            }
            match tsch(sid) {
                Ok(Some(irb))
                    if irb.scsw.function() & crate::io::css::irb::function::CLEAR != 0 =>
                {
                    return;
                }
                Err(_) => return,
                _ => core::hint::spin_loop(),
            }
        }
    }
}
