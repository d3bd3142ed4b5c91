//! `io::css`: the channel subsystem on the machine: enumeration finds the virtio-blk
//! subchannel, SENSE ID names its control unit, every condition code and ending status
//! comes back typed (not operational, status pending, program check, unit check with
//! its sense bytes), IDAWs carry data across pages that are not adjacent, and the
//! interruption subclass in CR6 decides whether an ending is taken as an interruption,
//! found by TPI, or left pending.

use crate::support::needs_disk;
use alloc::vec;
use kernel::arch::css::{self, ChannelProgram, DmaBuffer, DmaPage, Step};
use kernel::io::channel::{self, interruptions};
use kernel::io::css::irb::{device_status as ds, status_control};
use kernel::io::css::sense_id::{VIRTIO_BLK_MODEL, VIRTIO_CU_TYPE};
use kernel::io::css::{
    CcwFlags, ChannelCheck, IoError, KERNEL_ISC, SubchannelId, SubchannelType, classify, command,
};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("io::css");

/// A program of one SENSE ID (8 bytes, SLI) into `buffer`.
fn sense_id_program(buffer: DmaBuffer) -> ChannelProgram {
    ChannelProgram::new(vec![Step {
        command: command::SENSE_ID,
        flags: CcwFlags::SLI,
        data: Some(buffer),
    }])
    .expect("a one-CCW program")
}

/// A program of one NOP.
fn nop_program() -> ChannelProgram {
    ChannelProgram::new(vec![Step {
        command: command::NOP,
        flags: CcwFlags::default(),
        data: None,
    }])
    .expect("a one-CCW program")
}

/// Keeps the kernel's subclass disabled in CR6 while alive.
struct MaskedIsc;

impl MaskedIsc {
    fn new() -> Self {
        css::set_isc_enabled(KERNEL_ISC, false);
        MaskedIsc
    }

    /// Enables the subclass again but leaves pending interruptions pending.
    fn unmask_only(self) {
        css::set_isc_enabled(KERNEL_ISC, true);
        core::mem::forget(self);
    }
}

impl Drop for MaskedIsc {
    /// Enables the subclass again and takes what QEMU left queued for statuses the test
    /// collected by polling.
    fn drop(&mut self) {
        css::set_isc_enabled(KERNEL_ISC, true);
        css::drain_pending();
    }
}

ktest! {
    /// STSCH over subchannel set 0 finds the disk's subchannel: an I/O subchannel with
    /// a device, enabled in the kernel's subclass; SENSE ID names a virtio-ccw control
    /// unit of model 2 (block).
    fn enumeration_finds_the_virtio_blk_subchannel(t) {
        let Some(disk) = needs_disk(t) else { return };
        let found = channel::enumerate();
        let entry = found.iter().find(|(sid, _)| *sid == disk);
        check!(t, entry.is_some(), "{disk} not among {} subchannels", found.len());
        if let Some((_, schib)) = entry {
            check_eq!(t, schib.pmcw.subchannel_type(), SubchannelType::Io);
            check!(t, schib.pmcw.device_valid());
            check!(t, schib.pmcw.enabled());
            check_eq!(t, schib.pmcw.isc(), KERNEL_ISC);
            check!(t, schib.pmcw.concurrent_sense());
        }
        match channel::sense_id(disk) {
            Ok(Some(id)) => {
                check_eq!(t, id.cu_type, VIRTIO_CU_TYPE);
                check_eq!(t, id.cu_model, VIRTIO_BLK_MODEL);
            }
            other => check!(t, false, "SENSE ID: {other:?}"),
        }
    }
}

ktest! {
    /// A subchannel number past the last one: STSCH, MSCH and SSCH all report cc 3.
    fn missing_subchannel_is_not_operational(t) {
        let Some(_) = needs_disk(t) else { return };
        let last = channel::enumerate().last().map_or(0, |(sid, _)| sid.number());
        let Some(number) = last.checked_add(1) else {
            t.skip("every subchannel number is in use");
            return;
        };
        let missing = SubchannelId::new(0, number);
        check_eq!(t, css::stsch(missing).map(|_| ()), Err(IoError::NotOperational));
        check_eq!(t, css::msch(missing, &Default::default()), Err(IoError::NotOperational));
        check_eq!(t, nop_program().start(missing, 1), Err(IoError::NotOperational));
    }
}

ktest! {
    /// SENSE ID data and the ending status: channel end and device end, residual 0,
    /// and the CCW address 8 past the (only) CCW.
    fn sense_id_ends_with_channel_end_and_device_end(t) {
        let Some(disk) = needs_disk(t) else { return };
        let mut program = sense_id_program(DmaBuffer::new(0, 8).expect("DMA memory"));
        check!(t, program.start(disk, 0x5e15_e1d0).is_ok());
        let irb = program.wait();
        check!(t, irb.is_ok(), "{irb:?}");
        let Ok(irb) = irb else { return };
        check_eq!(t, irb.scsw.device_status(), ds::CHANNEL_END | ds::DEVICE_END);
        check_eq!(t, irb.scsw.subchannel_status(), 0);
        check!(t, irb.scsw.status_control() & status_control::PRIMARY != 0);
        check_eq!(t, u64::from(irb.scsw.ccw_address()), program.address() + 8);
        check_eq!(t, classify(&irb).map(|c| c.residual), Ok(0));
        let mut id = [0u8; 8];
        if let Some(b) = program.buffer(0) {
            b.read(&mut id);
        }
        check_eq!(t, id[..4], [0xff, 0x38, 0x32, VIRTIO_BLK_MODEL]);
    }
}

ktest! {
    /// An invalid command code (0x00) is a channel-program check, typed as such.
    fn invalid_command_code_is_a_program_check(t) {
        let Some(disk) = needs_disk(t) else { return };
        let mut program = ChannelProgram::new(vec![Step { command: 0x00, flags: CcwFlags::default(), data: None }])
            .expect("a one-CCW program");
        check_eq!(t, program.run(disk, 1), Err(IoError::Channel(ChannelCheck::Program)));
        // The subchannel is usable again.
        check!(t, channel::sense_id(disk).is_ok());
    }
}

ktest! {
    /// A command the device does not know: unit check, and the concurrent sense bytes
    /// say command reject.
    fn unknown_command_is_a_unit_check_with_command_reject(t) {
        let Some(disk) = needs_disk(t) else { return };
        let mut data = [0u8; 4];
        match channel::run_one(disk, 0x99, CcwFlags::SLI, &mut data, 0) {
            Err(IoError::UnitCheck(sense)) => {
                check!(t, !sense.bytes().is_empty(), "no concurrent sense");
                check!(t, sense.command_reject(), "sense {:02x?}", sense.bytes());
            }
            other => check!(t, false, "expected a unit check: {other:?}"),
        }
    }
}

ktest! {
    /// A chain of NOP then SENSE ID runs both CCWs: it ends 8 past the second.
    fn chained_program_runs_every_ccw(t) {
        let Some(disk) = needs_disk(t) else { return };
        let mut program = ChannelProgram::new(vec![
            Step { command: command::NOP, flags: CcwFlags::default(), data: None },
            Step {
                command: command::SENSE_ID,
                flags: CcwFlags::SLI,
                data: Some(DmaBuffer::new(0, 8).expect("DMA memory")),
            },
        ])
        .expect("a two-CCW program");
        check!(t, program.ccw(0).flags.contains(CcwFlags::CHAIN_COMMAND));
        check!(t, !program.ccw(1).flags.contains(CcwFlags::CHAIN_COMMAND));
        check!(t, program.start(disk, 2).is_ok());
        let irb = program.wait();
        check!(t, irb.as_ref().is_ok_and(|i| classify(i).is_ok()), "{irb:?}");
        if let Ok(irb) = irb {
            check_eq!(t, u64::from(irb.scsw.ccw_address()), program.address() + 16);
        }
        let mut id = [0u8; 8];
        if let Some(b) = program.buffer(1) {
            b.read(&mut id);
        }
        check_eq!(t, id[0], 0xff);
    }
}

ktest! {
    /// READ_VQ_CONF into a 4-byte area whose first half ends one page and whose second
    /// half starts a page that is not the next one: the CCW addresses it through two
    /// IDAWs, the device reads the queue index from the first page and stores the
    /// queue size at the start of the other, and the page in between stays untouched.
    ///
    /// Each half is one access of the device. A single access that spans an IDAW
    /// boundary (e.g. SENSE ID's 8 bytes split 3 + 5) comes out wrong on QEMU 7.2: its
    /// `ccw_dstream_rw_ida` does not advance the source buffer from one IDAW block to the
    /// next, so the second block gets the first bytes again (see `docs/io.md`).
    fn idaws_carry_data_across_pages_that_are_not_adjacent(t) {
        let Some(disk) = needs_disk(t) else { return };
        let pages = [DmaPage::new(), DmaPage::new(), DmaPage::new()];
        let [Ok(first), Ok(between), Ok(last)] = pages else {
            check!(t, false, "no DMA memory");
            return;
        };
        check!(t, last.addr() != first.addr() + 4096, "the pages are adjacent");
        let buffer = DmaBuffer::from_pages(vec![first, last], 4094, 4).expect("a buffer");
        check_eq!(t, buffer.segments().len(), 2);
        let mut program = ChannelProgram::new(vec![Step {
            command: command::VIRTIO_READ_VQ_CONF,
            flags: CcwFlags::default(),
            data: Some(buffer),
        }])
        .expect("a one-CCW program");
        check!(t, program.uses_idaws());
        check!(t, program.ccw(0).flags.contains(CcwFlags::IDA));
        check_eq!(t, program.run(disk, 3).map(|c| c.residual), Ok(0));
        let mut reply = [0u8; 4];
        if let Some(b) = program.buffer(0) {
            b.read(&mut reply);
        }
        // Queue 0 (the index the zeroed first half asked for) has the device's 16 entries.
        check_eq!(t, reply, [0, 0, 0, kernel::io::disk::QUEUE_ENTRIES as u8]);
        let middle = DmaBuffer::from_pages(vec![between], 0, 4096).expect("a buffer");
        let mut bytes = vec![0u8; 4096];
        middle.read(&mut bytes);
        check!(t, bytes.iter().all(|&b| b == 0), "the page between was written");
    }
}

ktest! {
    /// A buffer inside one page below 2 GiB is addressed directly, without IDAWs.
    fn a_buffer_inside_one_page_needs_no_idaws(t) {
        let Some(disk) = needs_disk(t) else { return };
        let mut program = sense_id_program(DmaBuffer::new(100, 8).expect("DMA memory"));
        check!(t, !program.uses_idaws());
        check!(t, !program.ccw(0).flags.contains(CcwFlags::IDA));
        check!(t, program.run(disk, 4).is_ok());
    }
}

ktest! {
    /// With the subclass enabled, the ending status arrives as an I/O interruption:
    /// one more solicited interruption per program.
    fn enabled_subclass_delivers_the_ending_as_an_interruption(t) {
        let Some(disk) = needs_disk(t) else { return };
        check!(t, css::isc_enabled(KERNEL_ISC));
        let before = interruptions();
        check!(t, nop_program().run(disk, 5).is_ok());
        let after = interruptions();
        check_eq!(t, after.solicited, before.solicited + 1);
    }
}

ktest! {
    /// With the subclass masked in CR6 the ending is neither taken (even with the I/O
    /// mask open) nor seen by TPI; once the subclass is enabled again TPI takes it,
    /// with the subchannel and the ORB's parameter, and TSCH collects the status.
    fn masked_subclass_keeps_the_interruption_pending_until_tpi(t) {
        let Some(disk) = needs_disk(t) else { return };
        let before = interruptions();
        let mut program = nop_program();
        let masked = MaskedIsc::new();
        check!(t, program.start(disk, 0x1234_5678).is_ok());
        css::open_io_window();
        check_eq!(t, interruptions(), before);
        check_eq!(t, css::tpi(), None);
        // Enabled in CR6 again, but the PSW I/O mask stays off: TPI takes the interruption.
        masked.unmask_only();
        let pending = css::tpi();
        check_eq!(t, pending.map(|p| (p.sid, p.intparm)), Some((Some(disk), 0x1234_5678)));
        check_eq!(t, css::tpi(), None);
        css::open_io_window();
        check_eq!(t, interruptions(), before);
        let ended = program.poll();
        check!(t, matches!(&ended, Some(Ok(irb)) if classify(irb).is_ok()), "{ended:?}");
    }
}

ktest! {
    /// A start while the subchannel still has status pending is refused with cc 1.
    fn start_while_status_pending_is_refused(t) {
        let Some(disk) = needs_disk(t) else { return };
        let mut first = nop_program();
        let mut second = nop_program();
        {
            let _masked = MaskedIsc::new();
            check!(t, first.start(disk, 6).is_ok());
            check_eq!(t, second.start(disk, 7), Err(IoError::StatusPending));
            let ended = first.poll();
            check!(t, matches!(ended, Some(Ok(_))), "{ended:?}");
        }
        check!(t, second.run(disk, 8).is_ok());
    }
}
