//! The transport against the fake device: the command sequence of Linux's
//! `virtio_ccw_online` + the virtio core, and every error path.

use super::fake::{self, FakeChannel};
use super::*;
use crate::io::css::command as cmd;
use crate::io::css::error::{ChannelCheck, IoError};
use virtio_drivers::device::common::Feature;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};

fn transport(f: impl FnOnce(&mut fake::Device)) -> CcwTransport<FakeChannel> {
    CcwTransport::new(fake::channel(f)).expect("the fake device is a virtio-blk device")
}

fn log(t: &CcwTransport<FakeChannel>) -> alloc::vec::Vec<u8> {
    t.channel().0.borrow().log.clone()
}

#[test]
fn new_identifies_the_device_then_sets_revision_0_first() {
    let t = transport(|_| {});
    assert_eq!(t.device_type(), DeviceType::Block);
    assert_eq!(log(&t), [cmd::SENSE_ID, cmd::VIRTIO_SET_REV]);
    assert_eq!(t.channel().0.borrow().revision, 0);
    assert_eq!(revision_payload(0), [0, 0, 0, 0]);
}

#[test]
fn a_modern_only_device_is_refused_with_the_reason() {
    let err = CcwTransport::new(fake::channel(|d| d.modern_only = true)).unwrap_err();
    assert_eq!(err, TransportError::RevisionRefused);
    // A revision already set (the subchannel was not disabled in between) is refused too.
    let err = CcwTransport::new(fake::channel(|d| d.revision = 0)).unwrap_err();
    assert_eq!(err, TransportError::RevisionRefused);
    assert!(alloc::format!("{err}").contains("little-endian"));
}

#[test]
fn other_control_units_and_unknown_virtio_ids_are_refused() {
    let err = CcwTransport::new(fake::channel(|d| d.cu_type = 0x3990)).unwrap_err();
    assert!(matches!(err, TransportError::NotVirtio(Some(id)) if id.cu_type == 0x3990));
    let err = CcwTransport::new(fake::channel(|d| d.model = 200)).unwrap_err();
    assert_eq!(err, TransportError::UnknownDevice(200));
}

#[test]
fn begin_and_finish_init_follow_the_virtio_sequence() {
    // Indirect descriptors, event index and one bit the driver does not know.
    let mut t = transport(|d| d.host_features = 0x3000_0040);
    let negotiated = t.begin_init(Feature::all());
    assert_eq!(negotiated.bits(), 0x3000_0000);
    t.finish_init();
    assert_eq!(
        fake::commands(&log(&t), 2),
        [
            cmd::VIRTIO_WRITE_STATUS, // reset
            cmd::VIRTIO_WRITE_STATUS, // ACKNOWLEDGE | DRIVER
            cmd::VIRTIO_READ_FEAT,
            cmd::VIRTIO_WRITE_FEAT,
            cmd::VIRTIO_WRITE_STATUS, // FEATURES_OK
            cmd::VIRTIO_SET_IND,
            cmd::VIRTIO_SET_CONF_IND,
            cmd::VIRTIO_WRITE_STATUS, // DRIVER_OK
        ]
    );
    let d = t.channel().0.borrow();
    assert_eq!(d.guest_features, 0x3000_0000);
    assert_eq!(d.status, 0x0f);
    assert_eq!(d.indicators.len(), 2);
    drop(d);
    assert_eq!(t.get_status().bits(), 0x0f);
    assert!(t.faults().take().is_none());
}

#[test]
fn feature_words_are_little_endian_and_bits_above_31_are_never_written() {
    assert_eq!(
        features_payload(0x1000_0246, 0),
        [0x46, 0x02, 0x00, 0x10, 0]
    );
    assert_eq!(features_of(&[0x46, 0x02, 0x00, 0x10, 0]), 0x1000_0246);
    let mut t = transport(|d| d.host_features = 0x1_0000_0001);
    // Revision 0: the device offers only the low word.
    assert_eq!(t.read_device_features(), 1);
    t.write_driver_features(0x1_0000_0001);
    assert_eq!(t.channel().0.borrow().guest_features, 1);
}

#[test]
fn queue_setup_sends_the_legacy_block_and_checks_the_layout() {
    let mut t = transport(|_| {});
    assert_eq!(t.max_queue_size(0), 16);
    assert_eq!(t.max_queue_size(1), 0);
    let (avail, used) = legacy_rings(0x10_0000, 16);
    assert_eq!((avail, used), (0x10_0100, 0x10_1000));
    assert!(!t.queue_used(0));
    t.queue_set(0, 16, 0x10_0000, avail, used);
    assert!(t.queue_used(0));
    let payload = t.channel().0.borrow().queues[0];
    assert_eq!(payload, legacy_vq_payload(0x10_0000, 0, 16));
    assert_eq!(&payload[8..12], &[0, 0, 0x10, 0]);
    t.queue_unset(0);
    assert!(!t.queue_used(0));
    assert!(t.faults().take().is_none());
    // A layout the device would not compute is refused before the device sees it.
    t.queue_set(0, 16, 0x10_0000, avail, used + 4096);
    assert_eq!(t.faults().take(), Some(TransportError::Layout { queue: 0 }));
}

#[test]
fn a_queue_of_another_size_is_a_clear_error() {
    let t = transport(|d| d.queue_num = 256);
    assert_eq!(
        t.require_queue_size(0, 16),
        Err(TransportError::QueueSize {
            queue: 0,
            device: 256,
            driver: 16
        })
    );
    assert!(
        alloc::format!("{}", t.require_queue_size(0, 16).unwrap_err()).contains("queue-size=16")
    );
    assert_eq!(transport(|_| {}).require_queue_size(0, 16), Ok(()));
}

#[test]
fn config_space_reads_from_offset_0_and_writes_patch_it() {
    let mut t = transport(|d| d.config = fake::config(24));
    let word: u32 = t.read_config_space(4).unwrap();
    assert_eq!(word.to_ne_bytes(), [4, 5, 6, 7]);
    t.write_config_space(8, 0xaabbu16.to_ne_bytes()).unwrap();
    let d = t.channel().0.borrow();
    assert_eq!(&d.config[6..8], &[6, 7]);
    assert_eq!(&d.config[8..10], &0xaabbu16.to_ne_bytes());
    assert_eq!(&d.config[10..12], &[10, 11]);
    drop(d);
    // Past the end of the configuration space: the device refuses the length.
    assert_eq!(
        t.read_config_space::<u64>(20),
        Err(virtio_drivers::Error::IoError)
    );
    assert_eq!(
        t.faults().take(),
        Some(TransportError::Command {
            command: cmd::VIRTIO_READ_CONF,
            error: IoError::Channel(ChannelCheck::Program)
        })
    );
}

#[test]
fn ack_interrupt_swaps_the_indicators() {
    let mut t = transport(|_| {});
    assert!(t.ack_interrupt().is_empty());
    t.device_sets_indicator(Some(0));
    assert_eq!(
        t.ack_interrupt().bits(),
        InterruptStatus::QUEUE_INTERRUPT.bits()
    );
    assert!(t.ack_interrupt().is_empty());
    t.device_sets_indicator(None);
    t.device_sets_indicator(Some(3));
    assert_eq!(
        t.ack_interrupt().bits(),
        (InterruptStatus::QUEUE_INTERRUPT | InterruptStatus::DEVICE_CONFIGURATION_INTERRUPT).bits()
    );
}

#[test]
fn a_reset_drops_queues_and_indicators_and_they_come_back_before_driver_ok() {
    let mut t = transport(|_| {});
    t.begin_init(Feature::empty());
    t.finish_init();
    t.set_status(DeviceStatus::empty());
    assert!(t.channel().0.borrow().indicators.is_empty());
    t.begin_init(Feature::empty());
    t.finish_init();
    assert_eq!(t.channel().0.borrow().indicators.len(), 2);
}

#[test]
fn held_notifications_go_out_once_per_queue_at_the_flush() {
    let mut t = transport(|_| {});
    let n = t.notifications();
    t.notify(0);
    assert_eq!(t.channel().0.borrow().notified, [0], "not held: at once");
    n.hold();
    for queue in [0, 2, 0, 0, 2] {
        t.notify(queue);
    }
    n.release();
    assert_eq!(t.channel().0.borrow().notified, [0], "held back");
    assert_eq!(n.sent(), 1);
    n.flush(t.channel(), &t.faults());
    assert_eq!(t.channel().0.borrow().notified, [0, 0, 2]);
    assert_eq!(n.sent(), 3);
    n.flush(t.channel(), &t.faults());
    assert_eq!(n.sent(), 3, "nothing held back any more");
    // A queue a 64-bit mask cannot hold is notified at once, held or not.
    n.hold();
    t.notify(64);
    n.release();
    assert_eq!(t.channel().0.borrow().notified, [0, 0, 2, 64]);
}

#[test]
fn a_held_notification_that_fails_is_recorded_at_the_flush() {
    let mut t = transport(|d| d.notify_result = -22);
    let n = t.notifications();
    n.hold();
    t.notify(1);
    n.release();
    assert_eq!(t.faults().take(), None);
    n.flush(t.channel(), &t.faults());
    assert_eq!(
        t.faults().take(),
        Some(TransportError::Notify {
            queue: 1,
            code: -22
        })
    );
}

#[test]
fn notify_failures_and_refused_commands_are_recorded() {
    let mut t = transport(|d| d.notify_result = -22);
    t.notify(0);
    assert_eq!(
        t.faults().take(),
        Some(TransportError::Notify {
            queue: 0,
            code: -22
        })
    );
    assert_eq!(t.channel().0.borrow().notified, [0]);
    // The device rejects a status (unit check, command reject): recorded, status kept.
    let mut t = transport(|_| {});
    t.channel().0.borrow_mut().modern_only = true;
    t.channel().0.borrow_mut().revision = -1;
    t.set_status(DeviceStatus::ACKNOWLEDGE);
    assert!(matches!(
        t.faults().take(),
        Some(TransportError::Command { command: cmd::VIRTIO_WRITE_STATUS, error: IoError::UnitCheck(s) }) if s.command_reject()
    ));
    assert_eq!(t.get_status(), DeviceStatus::empty());
}

#[test]
fn dropping_the_transport_resets_the_device() {
    let t = transport(|_| {});
    let device = alloc::rc::Rc::clone(&t.channel().0);
    device.borrow_mut().status = 0x0f;
    drop(t);
    assert_eq!(device.borrow().log.last(), Some(&cmd::VIRTIO_WRITE_STATUS));
    assert_eq!(device.borrow().status, 0);
}
