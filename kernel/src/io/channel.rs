//! The kernel's use of the channel subsystem: finding subchannels, enabling them for
//! the kernel's interruption subclass, SENSE ID, the I/O-interruption handler, and the
//! [`Channel`](super::virtio_ccw::Channel) the virtio-ccw transport runs its commands on.

use super::css::sense_id::SENSE_ID_BYTES;
use super::css::{
    CcwFlags, Completion, IoError, Isc, KERNEL_ISC, Schib, SenseId, SubchannelId, SubchannelType,
    command,
};
use super::virtio_ccw::Channel;
use crate::arch::css::{self, ChannelProgram, DmaBuffer, IoInterruption, Step};
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};

/// Subchannel numbers of subchannel set 0 that enumeration looks at. The scan ends at
/// the first number STSCH reports not operational (cc 3), as kvm-unit-tests'
/// `css_enumerate` does: QEMU and Hercules number subchannels densely from 0 in creation
/// order. Scanning all 65536 numbers (as Linux does, for hot plug) costs tens of
/// milliseconds of TCG guest time at every boot.
const SUBCHANNELS: core::ops::RangeInclusive<u16> = 0..=0xffff;

/// How often MSCH is retried when the subchannel is busy or has status pending (KUT
/// `css_enable` retries 5 times; status pending is cleared with TSCH in between).
const MSCH_RETRIES: usize = 5;

/// I/O interruptions the kernel took, by kind.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Every I/O interruption.
    pub total: u64,
    /// Those carrying the ending status of a started program.
    pub solicited: u64,
    /// Unsolicited status (a virtio queue notification: alert status).
    pub unsolicited: u64,
    /// Interruptions whose subchannel had no status pending any more (collected earlier
    /// by polling).
    pub spurious: u64,
    /// Adapter interruptions.
    pub adapter: u64,
}

static TOTAL: AtomicU64 = AtomicU64::new(0);
static SOLICITED: AtomicU64 = AtomicU64::new(0);
static UNSOLICITED: AtomicU64 = AtomicU64::new(0);
static ADAPTER: AtomicU64 = AtomicU64::new(0);
static SPURIOUS: AtomicU64 = AtomicU64::new(0);

fn on_io_interruption(event: &IoInterruption) {
    TOTAL.fetch_add(1, Ordering::Relaxed);
    let counter = match (event.adapter, event.irb) {
        (true, _) => &ADAPTER,
        (false, Some(irb)) if irb.scsw.solicited() => &SOLICITED,
        (false, Some(_)) => &UNSOLICITED,
        (false, None) => &SPURIOUS,
    };
    counter.fetch_add(1, Ordering::Relaxed);
}

/// The I/O interruptions taken so far.
pub fn interruptions() -> Counts {
    Counts {
        total: TOTAL.load(Ordering::Relaxed),
        solicited: SOLICITED.load(Ordering::Relaxed),
        unsolicited: UNSOLICITED.load(Ordering::Relaxed),
        adapter: ADAPTER.load(Ordering::Relaxed),
        spurious: SPURIOUS.load(Ordering::Relaxed),
    }
}

/// Registers the I/O-interruption handler and enables the kernel's subclass in CR6.
pub fn init() {
    css::set_handler(on_io_interruption);
    css::set_isc_enabled(KERNEL_ISC, true);
}

/// Enables the kernel's subclass in this CPU's CR6 (a secondary CPU, which started
/// with CPU 0's control registers from before [`init`]), so a disk request this CPU
/// waits for can end its wait: I/O interruptions are floating, and only a CPU in an
/// enabled I/O wait (`css::wait_for_io`) takes one.
pub fn enable_here() {
    css::set_isc_enabled(KERNEL_ISC, true);
}

/// The I/O subchannels with a device attached, in subchannel-number order, up to the
/// first subchannel number that is not provided.
pub fn enumerate() -> Vec<(SubchannelId, Schib)> {
    let mut found = Vec::new();
    for number in SUBCHANNELS {
        let sid = SubchannelId::new(0, number);
        let Ok(schib) = css::stsch(sid) else {
            break;
        };
        if schib.pmcw.subchannel_type() == SubchannelType::Io && schib.pmcw.device_valid() {
            found.push((sid, schib));
        }
    }
    found
}

/// Enables `sid` for I/O in subclass `isc` with concurrent sense, its number as the
/// interruption parameter; returns the SCHIB as the machine then reports it.
pub fn enable(sid: SubchannelId, isc: Isc) -> Result<Schib, IoError> {
    modify(sid, |pmcw| {
        pmcw.set_enabled(true);
        pmcw.set_isc(isc);
        pmcw.set_concurrent_sense(true);
        pmcw.intparm = sid.word();
    })
}

/// Disables `sid` (a virtio device then forgets its revision).
pub fn disable(sid: SubchannelId) -> Result<Schib, IoError> {
    modify(sid, |pmcw| pmcw.set_enabled(false))
}

fn modify(sid: SubchannelId, change: impl Fn(&mut super::css::Pmcw)) -> Result<Schib, IoError> {
    let mut last = IoError::Busy;
    for _ in 0..MSCH_RETRIES {
        let mut schib = css::stsch(sid)?;
        change(&mut schib.pmcw);
        match css::msch(sid, &schib) {
            Ok(()) => {
                let now = css::stsch(sid)?;
                let mut want = schib.pmcw;
                change(&mut want);
                if now.pmcw.enabled() == want.enabled() && now.pmcw.isc() == want.isc() {
                    return Ok(now);
                }
                last = IoError::Unexpected {
                    device: 0,
                    subchannel: 0,
                };
            }
            Err(IoError::StatusPending) => {
                // Stale status (e.g. from before a reboot): collect it and retry.
                let _ = css::tsch(sid);
                last = IoError::StatusPending;
            }
            Err(IoError::NotOperational) => return Err(IoError::NotOperational),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Runs a one-CCW program on `sid` (completion by interruption) with `data` copied into
/// a DMA buffer starting `offset` bytes into its first page, and copied back after.
pub fn run_one(
    sid: SubchannelId,
    command: u8,
    flags: CcwFlags,
    data: &mut [u8],
    offset: usize,
) -> Result<Completion, IoError> {
    let mut buffer = DmaBuffer::new(offset, data.len())?;
    buffer.write(data);
    let mut program = ChannelProgram::new(vec![Step {
        command,
        flags,
        data: Some(buffer),
    }])?;
    let completion = program.run(sid, sid.word())?;
    if let Some(buffer) = program.buffer(0) {
        buffer.read(data);
    }
    Ok(completion)
}

/// SENSE ID: which control unit and device are behind `sid` (`None`: no valid data).
pub fn sense_id(sid: SubchannelId) -> Result<Option<SenseId>, IoError> {
    let mut data = [0u8; SENSE_ID_BYTES];
    run_one(sid, command::SENSE_ID, CcwFlags::SLI, &mut data, 0)?;
    Ok(SenseId::decode(&data))
}

/// A subchannel as the virtio-ccw transport's channel.
#[derive(Clone, Copy, Debug)]
pub struct CcwChannel(pub SubchannelId);

impl Channel for CcwChannel {
    fn run(&self, command: u8, sli: bool, data: &mut [u8]) -> Result<Completion, IoError> {
        let flags = if sli {
            CcwFlags::SLI
        } else {
            CcwFlags::default()
        };
        run_one(self.0, command, flags, data, 0)
    }

    fn notify(&self, queue: u16) -> Result<(), i64> {
        crate::arch::virtio::notify(self.0, queue)
    }

    fn address_of(&self, word: &AtomicU64) -> u64 {
        // Identity-mapped kernel memory: the address is the absolute address.
        word as *const AtomicU64 as u64
    }
}
