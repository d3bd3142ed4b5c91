//! SENSE ID data: which control unit and device sit behind a subchannel.

/// Control-unit type of virtio-ccw devices (QEMU `VIRTIO_CCW_CU_TYPE`); the CU model is
/// the virtio device id.
pub const VIRTIO_CU_TYPE: u16 = 0x3832;

/// The virtio device id of a block device.
pub const VIRTIO_BLK_MODEL: u8 = 2;

/// Bytes of the basic SENSE ID data the kernel asks for.
pub const SENSE_ID_BYTES: usize = 8;

/// The basic SENSE ID data.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct SenseId {
    /// Control-unit type.
    pub cu_type: u16,
    /// Control-unit model.
    pub cu_model: u8,
    /// Device type.
    pub dev_type: u16,
    /// Device model.
    pub dev_model: u8,
}

impl SenseId {
    /// Decodes the first 8 bytes SENSE ID stores; `None` unless byte 0 is 0xFF (the
    /// mark of valid extended data).
    pub fn decode(b: &[u8; SENSE_ID_BYTES]) -> Option<Self> {
        (b[0] == 0xff).then(|| Self {
            cu_type: u16::from_be_bytes([b[1], b[2]]),
            cu_model: b[3],
            dev_type: u16::from_be_bytes([b[4], b[5]]),
            dev_model: b[6],
        })
    }

    /// A virtio-ccw device of type `model` (2: block).
    pub fn is_virtio(&self, model: u8) -> bool {
        self.cu_type == VIRTIO_CU_TYPE && self.cu_model == model
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virtio_blk_sense_id_decodes() {
        let id = SenseId::decode(&[0xff, 0x38, 0x32, 0x02, 0x00, 0x00, 0x00, 0x00]).unwrap();
        assert_eq!(id.cu_type, VIRTIO_CU_TYPE);
        assert!(id.is_virtio(VIRTIO_BLK_MODEL));
        assert!(!id.is_virtio(1));
        assert_eq!(SenseId::decode(&[0; 8]), None);
    }
}
