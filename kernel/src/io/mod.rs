//! I/O: the channel subsystem and virtio-blk over channel I/O (virtio-ccw).
//!
//! The formats of the channel subsystem ([`css`]) and of the virtio-ccw commands
//! ([`virtio_ccw`]) are pure code that unit-tests on the host; so is the virtio-ccw
//! [`Transport`](virtio_drivers::transport::Transport), written against the
//! [`virtio_ccw::Channel`] trait. The machine side (the I/O instructions, interruptions,
//! DMA memory, DIAGNOSE 0x500) is in `arch::css` and `arch::virtio`; `disk` ties them
//! into the virtio-blk block device the memory manager can use as its backing store.

pub mod css;
pub mod virtio_ccw;

#[cfg(target_arch = "s390x")]
pub mod channel;
#[cfg(target_arch = "s390x")]
pub mod disk;
