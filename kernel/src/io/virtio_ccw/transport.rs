//! [`CcwTransport`]: the `virtio-drivers` transport over a [`Channel`].

use super::{
    Channel, REVISION, TransportError, features_of, features_payload, legacy_rings,
    legacy_vq_payload, revision_payload,
};
use crate::io::css::sense_id::{SENSE_ID_BYTES, VIRTIO_CU_TYPE};
use crate::io::css::{IoError, SenseId, command};
use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use spin::Mutex;
use virtio_drivers::transport::{DeviceStatus, DeviceType, InterruptStatus, Transport};
use virtio_drivers::{Error, PhysAddr};
use zerocopy::{FromBytes, Immutable, IntoBytes};

/// The first error of a transport whose trait methods cannot return one (status
/// writes, notifications, queue setup), shared with whoever owns the driver on top.
#[derive(Debug, Default)]
pub struct Faults(Mutex<Option<TransportError>>);

impl Faults {
    /// Records `error` unless an earlier one is recorded.
    pub fn record(&self, error: TransportError) {
        self.0.lock().get_or_insert(error);
    }

    /// The first recorded error, cleared.
    pub fn take(&self) -> Option<TransportError> {
        self.0.lock().take()
    }
}

/// The transport's queue notifications (DIAGNOSE 0x500), shared with the driver's owner,
/// which may hold them back while it starts a batch of requests and send them when it
/// next looks for ends ([`Notifications::flush`]): the device then takes the batch at
/// one notification (Linux: a block plug, flushed before the task sleeps; virtio-blk
/// kicks once per batch). Under QEMU each notification costs a trap, the device's own
/// pass over the queue and a submission to the host kernel.
#[derive(Debug, Default)]
pub struct Notifications {
    held: AtomicBool,
    /// Queues whose notification is held back (bit n: queue n).
    pending: AtomicU64,
    /// Notifications sent.
    sent: AtomicU64,
}

impl Notifications {
    /// Holds back the notifications from now until [`Self::release`].
    pub fn hold(&self) {
        self.held.store(true, Ordering::Relaxed);
    }

    /// Sends later notifications at once again; those held back stay pending.
    pub fn release(&self) {
        self.held.store(false, Ordering::Relaxed);
    }

    /// Notifies each queue whose notification is held back, once; a failure is recorded
    /// in `faults`.
    pub fn flush(&self, channel: &impl Channel, faults: &Faults) {
        let mut pending = self.pending.swap(0, Ordering::Relaxed);
        while pending != 0 {
            let queue = pending.trailing_zeros() as u16;
            pending &= pending - 1;
            self.notify(channel, queue, faults);
        }
    }

    /// Notifications sent so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    /// Notifies `queue` now, or later if held back.
    fn send(&self, channel: &impl Channel, queue: u16, faults: &Faults) {
        if self.held.load(Ordering::Relaxed)
            && let Some(bit) = 1u64.checked_shl(u32::from(queue))
        {
            self.pending.fetch_or(bit, Ordering::Relaxed);
        } else {
            self.notify(channel, queue, faults);
        }
    }

    fn notify(&self, channel: &impl Channel, queue: u16, faults: &Faults) {
        self.sent.fetch_add(1, Ordering::Relaxed);
        if let Err(code) = channel.notify(queue) {
            faults.record(TransportError::Notify { queue, code });
        }
    }
}

/// The two classic indicator words the device sets bits in: queue `n` sets `1 << n`
/// of `queues`, a configuration change bit 0 of `config`. Boxed, so their addresses
/// stay put while the device holds them.
#[derive(Debug, Default)]
struct Indicators {
    queues: AtomicU64,
    config: AtomicU64,
}

/// A virtio-ccw transport (revision 0, classic indicators) over a channel.
#[derive(Debug)]
pub struct CcwTransport<C: Channel> {
    channel: C,
    device_type: DeviceType,
    /// The status last written (revision 0 has no READ_STATUS).
    status: DeviceStatus,
    /// Queues set up (bit n: queue n), which the device cannot report back.
    queues: u64,
    indicators: Box<Indicators>,
    /// Whether the device holds the indicators' addresses (a reset drops them).
    indicators_registered: bool,
    faults: Arc<Faults>,
    notifications: Arc<Notifications>,
}

impl<C: Channel> CcwTransport<C> {
    /// Identifies the device (SENSE ID) and sets revision 0, the first virtio-ccw
    /// command: the subchannel must have been enabled afresh, since the device refuses
    /// a second revision until the subchannel was disabled.
    pub fn new(channel: C) -> Result<Self, TransportError> {
        let mut id = [0u8; SENSE_ID_BYTES];
        channel
            .run(command::SENSE_ID, true, &mut id)
            .map_err(|error| TransportError::Command {
                command: command::SENSE_ID,
                error,
            })?;
        let sense = SenseId::decode(&id);
        let Some(sense) = sense.filter(|s| s.cu_type == VIRTIO_CU_TYPE) else {
            return Err(TransportError::NotVirtio(sense));
        };
        let device_type = DeviceType::try_from(sense.cu_model)
            .map_err(|_| TransportError::UnknownDevice(sense.cu_model))?;
        let mut rev = revision_payload(REVISION);
        match channel.run(command::VIRTIO_SET_REV, false, &mut rev) {
            Ok(_) => {}
            Err(IoError::UnitCheck(sense)) if sense.command_reject() => {
                return Err(TransportError::RevisionRefused);
            }
            Err(error) => {
                return Err(TransportError::Command {
                    command: command::VIRTIO_SET_REV,
                    error,
                });
            }
        }
        Ok(Self {
            channel,
            device_type,
            status: DeviceStatus::empty(),
            queues: 0,
            indicators: Box::default(),
            indicators_registered: false,
            faults: Arc::default(),
            notifications: Arc::default(),
        })
    }

    /// The error log shared with the driver's owner.
    pub fn faults(&self) -> Arc<Faults> {
        Arc::clone(&self.faults)
    }

    /// The notifications, shared with the driver's owner.
    pub fn notifications(&self) -> Arc<Notifications> {
        Arc::clone(&self.notifications)
    }

    /// The channel.
    pub fn channel(&self) -> &C {
        &self.channel
    }

    /// Entries of queue `queue` (READ_VQ_CONF; 0 when the device has no such queue).
    pub fn queue_size(&self, queue: u16) -> Result<u16, TransportError> {
        let mut payload = [0u8; 4];
        payload[0..2].copy_from_slice(&queue.to_be_bytes());
        self.command(command::VIRTIO_READ_VQ_CONF, &mut payload)?;
        Ok(u16::from_be_bytes([payload[2], payload[3]]))
    }

    /// Fails with [`TransportError::QueueSize`] unless queue `queue` has exactly
    /// `entries` entries (legacy virtio-ccw cannot resize a queue).
    pub fn require_queue_size(&self, queue: u16, entries: u16) -> Result<(), TransportError> {
        let device = self.queue_size(queue)?;
        if device == entries {
            Ok(())
        } else {
            Err(TransportError::QueueSize {
                queue,
                device,
                driver: entries,
            })
        }
    }

    /// Reads `len` bytes of configuration space from offset 0 (READ_CONF).
    pub fn read_config(&self, len: usize) -> Result<alloc::vec::Vec<u8>, TransportError> {
        let mut buf = vec![0u8; len];
        self.command(command::VIRTIO_READ_CONF, &mut buf)?;
        Ok(buf)
    }

    fn command(&self, code: u8, data: &mut [u8]) -> Result<(), TransportError> {
        self.channel
            .run(code, false, data)
            .map(|_| ())
            .map_err(|error| TransportError::Command {
                command: code,
                error,
            })
    }

    /// Runs a command whose failure the trait cannot return: recorded in [`Faults`].
    fn command_or_record(&self, code: u8, data: &mut [u8]) -> bool {
        match self.command(code, data) {
            Ok(()) => true,
            Err(e) => {
                self.faults.record(e);
                false
            }
        }
    }

    /// SET_IND and SET_CONF_IND: the device forgets them on every reset, so they are
    /// registered right before DRIVER_OK.
    fn register_indicators(&mut self) {
        let queues = self.channel.address_of(&self.indicators.queues);
        let config = self.channel.address_of(&self.indicators.config);
        self.indicators.queues.store(0, Ordering::Relaxed);
        self.indicators.config.store(0, Ordering::Relaxed);
        let ok = self.command_or_record(command::VIRTIO_SET_IND, &mut queues.to_be_bytes())
            && self.command_or_record(command::VIRTIO_SET_CONF_IND, &mut config.to_be_bytes());
        self.indicators_registered = ok;
    }
}

impl<C: Channel> Transport for CcwTransport<C> {
    fn device_type(&self) -> DeviceType {
        self.device_type
    }

    fn read_device_features(&mut self) -> u64 {
        // Revision 0 offers bits 0-31 only (word 1 reads as zeros).
        let mut payload = features_payload(0, 0);
        if !self.command_or_record(command::VIRTIO_READ_FEAT, &mut payload) {
            return 0;
        }
        u64::from(features_of(&payload))
    }

    fn write_driver_features(&mut self, driver_features: u64) {
        // Bits 32+ were never offered, so never accepted.
        let mut payload = features_payload(driver_features as u32, 0);
        self.command_or_record(command::VIRTIO_WRITE_FEAT, &mut payload);
    }

    fn max_queue_size(&mut self, queue: u16) -> u32 {
        match self.queue_size(queue) {
            Ok(size) => u32::from(size),
            Err(e) => {
                self.faults.record(e);
                0
            }
        }
    }

    fn notify(&mut self, queue: u16) {
        self.notifications.send(&self.channel, queue, &self.faults);
    }

    fn get_status(&self) -> DeviceStatus {
        self.status
    }

    fn set_status(&mut self, status: DeviceStatus) {
        if status.contains(DeviceStatus::DRIVER_OK) && !self.indicators_registered {
            self.register_indicators();
        }
        let mut byte = [status.bits() as u8];
        if self.command_or_record(command::VIRTIO_WRITE_STATUS, &mut byte) {
            self.status = status;
            if status.is_empty() {
                // A reset drops the queues and the indicators.
                self.queues = 0;
                self.indicators_registered = false;
            }
        }
    }

    fn set_guest_page_size(&mut self, guest_page_size: u32) {
        if guest_page_size != super::LEGACY_ALIGN {
            self.faults
                .record(TransportError::PageSize(guest_page_size));
        }
    }

    fn requires_legacy_layout(&self) -> bool {
        true
    }

    fn queue_set(
        &mut self,
        queue: u16,
        size: u32,
        descriptors: PhysAddr,
        driver_area: PhysAddr,
        device_area: PhysAddr,
    ) {
        let num = size as u16;
        if legacy_rings(descriptors, num) != (driver_area, device_area) {
            self.faults.record(TransportError::Layout { queue });
            return;
        }
        let mut payload = legacy_vq_payload(descriptors, queue, num);
        if self.command_or_record(command::VIRTIO_SET_VQ, &mut payload) && queue < 64 {
            self.queues |= 1 << queue;
        }
    }

    fn queue_unset(&mut self, queue: u16) {
        let mut payload = legacy_vq_payload(0, queue, 0);
        self.command_or_record(command::VIRTIO_SET_VQ, &mut payload);
        if queue < 64 {
            self.queues &= !(1 << queue);
        }
    }

    fn queue_used(&mut self, queue: u16) -> bool {
        queue < 64 && self.queues & (1 << queue) != 0
    }

    fn ack_interrupt(&mut self) -> InterruptStatus {
        let mut status = InterruptStatus::empty();
        if self.indicators.queues.swap(0, Ordering::AcqRel) != 0 {
            status |= InterruptStatus::QUEUE_INTERRUPT;
        }
        if self.indicators.config.swap(0, Ordering::AcqRel) != 0 {
            status |= InterruptStatus::DEVICE_CONFIGURATION_INTERRUPT;
        }
        status
    }

    fn read_config_generation(&self) -> u32 {
        // virtio-ccw has no generation counter (Linux does not use one either).
        0
    }

    fn read_config_space<T: FromBytes + IntoBytes>(&self, offset: usize) -> Result<T, Error> {
        let end = offset + size_of::<T>();
        let bytes = self.read_config(end).map_err(|e| {
            self.faults.record(e);
            Error::IoError
        })?;
        T::read_from_bytes(&bytes[offset..end]).map_err(|_| Error::IoError)
    }

    fn write_config_space<T: IntoBytes + Immutable>(
        &mut self,
        offset: usize,
        value: T,
    ) -> Result<(), Error> {
        // WRITE_CONF writes from offset 0: read what precedes the field, patch, write.
        let end = offset + size_of::<T>();
        let mut bytes = self.read_config(end).map_err(|e| {
            self.faults.record(e);
            Error::IoError
        })?;
        bytes[offset..end].copy_from_slice(value.as_bytes());
        self.command(command::VIRTIO_WRITE_CONF, &mut bytes)
            .map_err(|e| {
                self.faults.record(e);
                Error::IoError
            })
    }
}

impl<C: Channel> Drop for CcwTransport<C> {
    /// Resets the device, so it lets go of the indicator words before they are freed.
    fn drop(&mut self) {
        let mut byte = [0u8];
        let _ = self.command(command::VIRTIO_WRITE_STATUS, &mut byte);
    }
}

#[cfg(test)]
impl<C: Channel> CcwTransport<C> {
    /// What the device does for a used buffer of `queue` or a configuration change.
    pub(super) fn device_sets_indicator(&self, queue: Option<u16>) {
        match queue {
            Some(q) => self.indicators.queues.fetch_or(1 << q, Ordering::AcqRel),
            None => self.indicators.config.fetch_or(1, Ordering::AcqRel),
        };
    }
}
