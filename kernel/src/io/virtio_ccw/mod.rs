//! virtio over channel I/O (virtio-ccw): the command payloads and a
//! [`Transport`](virtio_drivers::transport::Transport) for the `virtio-drivers` crate.
//!
//! # Why revision 0 (legacy virtio)
//!
//! `virtio-drivers` 0.13 writes the virtqueue (descriptors, available and used rings)
//! and the block request header as native integers, i.e. big-endian on s390x. Virtio 1
//! (virtio-ccw revision 1 and later, `VIRTIO_F_VERSION_1`) defines them as
//! little-endian; only legacy virtio (revision 0) uses the guest's native byte order.
//! So the transport asks for revision 0 and nothing else: a device that refuses it
//! (`force-virtio-1`) gets [`TransportError::RevisionRefused`] instead of rings the
//! device would misread. Revision 0 also never offers feature bits 32 and up, so
//! `VIRTIO_F_VERSION_1` cannot be negotiated by accident.
//!
//! Two consequences of legacy virtio-ccw the driver must respect:
//! - the queue lives in one block with the legacy layout (`requires_legacy_layout`),
//!   and `SET_VQ` cannot shrink a queue (QEMU `virtio_ccw_set_vqs` refuses a smaller
//!   `num`): the device's queue must have exactly the crate's 16 entries
//!   (QEMU: `-device virtio-blk-ccw,queue-size=16`), checked by [`CcwTransport::queue_size`];
//! - the configuration space is in guest (big-endian) order, so a 64-bit field that the
//!   crate reads as two 32-bit halves comes back with its halves swapped: the block
//!   driver reads the capacity itself with [`CcwTransport::read_config_space`] as one
//!   `u64` (see `io::disk`).
//!
//! Completion: classic queue indicators (`SET_IND`): the device ORs bit `1 << queue`
//! into a 64-bit word and makes the subchannel status pending (an unsolicited alert
//! interruption); [`ack_interrupt`](virtio_drivers::transport::Transport::ack_interrupt)
//! swaps the words to 0. Notifications go out with DIAGNOSE 0x500 through
//! [`Channel::notify`], at once or, held back while the driver starts a batch, when it
//! next looks for ends ([`Notifications`]).

mod transport;

#[cfg(test)]
mod fake;
#[cfg(test)]
mod tests;

pub use transport::{CcwTransport, Faults, Notifications};

use super::css::{Completion, IoError, SenseId};
use core::fmt;
use core::sync::atomic::AtomicU64;

/// The virtio-ccw revision the transport drives (see the module docs).
pub const REVISION: u16 = 0;

/// Alignment of the used ring in the legacy layout (the only value QEMU accepts).
pub const LEGACY_ALIGN: u32 = 4096;

/// One subchannel with a virtio device behind it, as the transport uses it.
pub trait Channel {
    /// Runs a channel program of one CCW with `command`, `sli` (suppress length
    /// indication) and `data` as its data area: `data` goes to the device and whatever
    /// the device stores comes back in it.
    fn run(&self, command: u8, sli: bool, data: &mut [u8]) -> Result<Completion, IoError>;
    /// Notifies virtqueue `queue` (DIAGNOSE 0x500); `Err` holds the hypervisor's
    /// negative return code.
    fn notify(&self, queue: u16) -> Result<(), i64>;
    /// The absolute address the device is to use for `word` (an indicator).
    fn address_of(&self, word: &AtomicU64) -> u64;
}

/// Why the transport cannot drive a device, or what went wrong while it did.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum TransportError {
    /// SENSE ID did not name a virtio control unit.
    NotVirtio(Option<SenseId>),
    /// The virtio device id is not one `virtio-drivers` knows.
    UnknownDevice(u8),
    /// The device refused revision 0 (it accepts only virtio 1, whose little-endian
    /// rings `virtio-drivers` cannot write on s390x).
    RevisionRefused,
    /// The device's queue size differs from the driver's and legacy virtio-ccw cannot
    /// change it.
    QueueSize {
        /// The queue.
        queue: u16,
        /// Entries the device has (0: no such queue).
        device: u16,
        /// Entries the driver uses.
        driver: u16,
    },
    /// The crate laid out a queue differently from the legacy layout the device computes.
    Layout {
        /// The queue.
        queue: u16,
    },
    /// A virtio-ccw command failed.
    Command {
        /// Its command code.
        command: u8,
        /// What the channel reported.
        error: IoError,
    },
    /// DIAGNOSE 0x500 returned an error.
    Notify {
        /// The queue.
        queue: u16,
        /// The return code.
        code: i64,
    },
    /// The guest page size is not the 4 KiB the legacy layout is aligned to.
    PageSize(u32),
}

impl fmt::Display for TransportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NotVirtio(id) => write!(f, "not a virtio-ccw device (SENSE ID {id:?})"),
            Self::UnknownDevice(id) => write!(f, "unknown virtio device id {id}"),
            Self::RevisionRefused => f.write_str(
                "the device refused virtio-ccw revision 0 (legacy); it needs virtio 1, whose little-endian rings virtio-drivers cannot drive on s390x",
            ),
            Self::QueueSize { queue, device, driver } => write!(
                f,
                "queue {queue} has {device} entries, the driver uses {driver}, and legacy virtio-ccw cannot resize it (QEMU: queue-size={driver})"
            ),
            Self::Layout { queue } => write!(f, "queue {queue} is not in the legacy layout"),
            Self::Command { command, error } => {
                write!(f, "virtio-ccw command {command:#04x} failed: {error}")
            }
            Self::Notify { queue, code } => write!(f, "notify of queue {queue} failed ({code})"),
            Self::PageSize(size) => write!(f, "guest page size {size} is not 4096"),
        }
    }
}

/// `SET_VIRTIO_REV` payload: revision, length of further data (none).
pub fn revision_payload(revision: u16) -> [u8; 4] {
    let r = revision.to_be_bytes();
    [r[0], r[1], 0, 0]
}

/// `READ_FEAT`/`WRITE_FEAT` payload: 32 feature bits (little-endian, as the device
/// converts them with `cpu_to_le32`) and the index of the 32-bit word.
pub fn features_payload(bits: u32, index: u8) -> [u8; 5] {
    let b = bits.to_le_bytes();
    [b[0], b[1], b[2], b[3], index]
}

/// The feature bits of a `READ_FEAT` reply.
pub fn features_of(payload: &[u8; 5]) -> u32 {
    u32::from_le_bytes([payload[0], payload[1], payload[2], payload[3]])
}

/// `SET_VQ` payload for revision 0: ring address, alignment, queue index, size.
pub fn legacy_vq_payload(desc: u64, queue: u16, num: u16) -> [u8; 16] {
    let mut p = [0u8; 16];
    p[0..8].copy_from_slice(&desc.to_be_bytes());
    p[8..12].copy_from_slice(&LEGACY_ALIGN.to_be_bytes());
    p[12..14].copy_from_slice(&queue.to_be_bytes());
    p[14..16].copy_from_slice(&num.to_be_bytes());
    p
}

/// Where the device puts the available and used rings of a legacy queue of `num`
/// entries at `desc` (QEMU `virtio_queue_update_rings`): avail right after the 16-byte
/// descriptors, used at the next 4 KiB boundary after avail's flags, index and ring.
pub fn legacy_rings(desc: u64, num: u16) -> (u64, u64) {
    let avail = desc + 16 * u64::from(num);
    let used = (avail + 4 + 2 * u64::from(num)).next_multiple_of(u64::from(LEGACY_ALIGN));
    (avail, used)
}
