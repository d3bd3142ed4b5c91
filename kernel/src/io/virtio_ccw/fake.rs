//! A virtio-ccw device in software for the host tests, following QEMU 7.2's
//! `virtio_ccw_cb` for the commands the transport issues: exact lengths unless SLI,
//! command reject (unit check, sense byte 0x80) for refused commands, a program check
//! for a wrong length.

use super::Channel;
use crate::io::css::command;
use crate::io::css::error::{ChannelCheck, Completion, IoError, Sense};
use alloc::rc::Rc;
use alloc::vec::Vec;
use core::cell::RefCell;
use core::sync::atomic::AtomicU64;

/// The state of the fake device.
#[derive(Debug)]
pub struct Device {
    /// The control-unit type SENSE ID reports.
    pub cu_type: u16,
    /// The virtio device id.
    pub model: u8,
    /// The highest revision accepted, and whether revision 0 is refused.
    pub max_revision: u16,
    /// Refuses revision 0 (`force-virtio-1`).
    pub modern_only: bool,
    /// The negotiated revision (-1: none yet).
    pub revision: i32,
    /// Feature bits offered.
    pub host_features: u64,
    /// Feature bits the driver wrote.
    pub guest_features: u64,
    /// Status byte.
    pub status: u8,
    /// Queue size of queue 0.
    pub queue_num: u16,
    /// SET_VQ payloads received.
    pub queues: Vec<[u8; 16]>,
    /// Indicator addresses received (SET_IND, SET_CONF_IND).
    pub indicators: Vec<u64>,
    /// Configuration space.
    pub config: Vec<u8>,
    /// Every command, in order.
    pub log: Vec<u8>,
    /// Notified queues.
    pub notified: Vec<u16>,
    /// What DIAGNOSE 0x500 returns.
    pub notify_result: i64,
}

impl Default for Device {
    fn default() -> Self {
        Self {
            cu_type: 0x3832,
            model: 2,
            max_revision: 2,
            modern_only: false,
            revision: -1,
            host_features: 0x1000_0246,
            guest_features: 0,
            status: 0,
            queue_num: 16,
            queues: Vec::new(),
            indicators: Vec::new(),
            config: (0u8..60).collect(),
            log: Vec::new(),
            notified: Vec::new(),
            notify_result: 0,
        }
    }
}

/// The fake as a [`Channel`].
#[derive(Debug, Default)]
pub struct FakeChannel(pub Rc<RefCell<Device>>);

const REJECT: IoError = IoError::UnitCheck(Sense::new_const(0x80));
const BAD_LENGTH: IoError = IoError::Channel(ChannelCheck::Program);

fn exact(data: &[u8], len: usize, sli: bool) -> Result<(), IoError> {
    if data.len() == len || (sli && data.len() >= len) {
        Ok(())
    } else {
        Err(BAD_LENGTH)
    }
}

impl Channel for FakeChannel {
    fn run(&self, code: u8, sli: bool, data: &mut [u8]) -> Result<Completion, IoError> {
        let mut d = self.0.borrow_mut();
        d.log.push(code);
        let done = Ok(Completion { residual: 0 });
        if d.modern_only
            && d.revision < 0
            && code != command::VIRTIO_SET_REV
            && code != command::SENSE_ID
        {
            return Err(REJECT);
        }
        match code {
            command::SENSE_ID => {
                let id = [
                    0xff,
                    (d.cu_type >> 8) as u8,
                    d.cu_type as u8,
                    d.model,
                    0,
                    0,
                    0,
                    0,
                ];
                let n = data.len().min(8);
                data[..n].copy_from_slice(&id[..n]);
                done
            }
            command::VIRTIO_SET_REV => {
                exact(data, 4, sli)?;
                let rev = u16::from_be_bytes([data[0], data[1]]);
                if d.revision >= 0 || rev > d.max_revision || (d.modern_only && rev == 0) {
                    return Err(REJECT);
                }
                d.revision = i32::from(rev);
                done
            }
            command::VIRTIO_READ_FEAT => {
                exact(data, 5, sli)?;
                let bits = match data[4] {
                    0 => d.host_features as u32,
                    1 if d.revision >= 1 => (d.host_features >> 32) as u32,
                    _ => 0,
                };
                data[..4].copy_from_slice(&bits.to_le_bytes());
                done
            }
            command::VIRTIO_WRITE_FEAT => {
                exact(data, 5, sli)?;
                let bits = u32::from_le_bytes([data[0], data[1], data[2], data[3]]);
                if data[4] == 0 {
                    d.guest_features = (d.guest_features & !0xffff_ffff) | u64::from(bits);
                }
                done
            }
            command::VIRTIO_WRITE_STATUS => {
                exact(data, 1, sli)?;
                d.status = data[0];
                if data[0] == 0 {
                    d.indicators.clear();
                    d.queues.clear();
                }
                done
            }
            command::VIRTIO_READ_VQ_CONF => {
                exact(data, 4, sli)?;
                let index = u16::from_be_bytes([data[0], data[1]]);
                let num = if index == 0 { d.queue_num } else { 0 };
                data[2..4].copy_from_slice(&num.to_be_bytes());
                done
            }
            command::VIRTIO_SET_VQ => {
                exact(data, 16, sli)?;
                let mut p = [0u8; 16];
                p.copy_from_slice(data);
                let num = u16::from_be_bytes([p[14], p[15]]);
                let desc = u64::from_be_bytes(p[0..8].try_into().unwrap());
                if desc != 0 && (num < d.queue_num || p[8..12] != 4096u32.to_be_bytes()) {
                    return Err(BAD_LENGTH);
                }
                d.queues.push(p);
                done
            }
            command::VIRTIO_SET_IND | command::VIRTIO_SET_CONF_IND => {
                exact(data, 8, sli)?;
                let addr = u64::from_be_bytes(data[..8].try_into().unwrap());
                d.indicators.push(addr);
                done
            }
            command::VIRTIO_READ_CONF => {
                if !sli && data.len() > d.config.len() {
                    return Err(BAD_LENGTH);
                }
                let n = data.len().min(d.config.len());
                data[..n].copy_from_slice(&d.config[..n]);
                Ok(Completion {
                    residual: (data.len() - n) as u16,
                })
            }
            command::VIRTIO_WRITE_CONF => {
                if !sli && data.len() > d.config.len() {
                    return Err(BAD_LENGTH);
                }
                let n = data.len().min(d.config.len());
                d.config[..n].copy_from_slice(&data[..n]);
                done
            }
            _ => Err(REJECT),
        }
    }

    fn notify(&self, queue: u16) -> Result<(), i64> {
        let mut d = self.0.borrow_mut();
        d.notified.push(queue);
        if d.notify_result < 0 {
            Err(d.notify_result)
        } else {
            Ok(())
        }
    }

    fn address_of(&self, word: &AtomicU64) -> u64 {
        word as *const AtomicU64 as u64
    }
}

/// A channel over a fake device with `f` applied to its defaults.
pub fn channel(f: impl FnOnce(&mut Device)) -> FakeChannel {
    let mut d = Device::default();
    f(&mut d);
    FakeChannel(Rc::new(RefCell::new(d)))
}

/// The commands of `log` after the first `skip`.
pub fn commands(log: &[u8], skip: usize) -> Vec<u8> {
    log.iter().skip(skip).copied().collect()
}

/// A configuration space of `n` bytes 0, 1, 2, ...
pub fn config(n: u8) -> Vec<u8> {
    (0..n).collect()
}
