//! The service-call control block through which requests and answers pass.

use core::fmt;

use crate::spec::{EXTENDED_SCCB_SIZE, SCCB_SIZE, SccbHeader};

/// The driver's SCCB: 4 KiB aligned, [`EXTENDED_SCCB_SIZE`] long. Every request but READ
/// SCP INFO uses the first page only (and never crosses it); READ SCP INFO may use all of it
/// where the extended-length-SCCB facility is installed.
///
/// The SCLP also requires it to lie below 2 GiB, outside the first 8 KiB and outside the prefix
/// area; where it lives is up to the owner of the [`Sclp`](crate::Sclp) that contains it.
#[repr(C, align(4096))]
pub struct Sccb {
    bytes: [u8; EXTENDED_SCCB_SIZE],
}

impl Sccb {
    /// A zero-filled SCCB.
    pub const fn new() -> Self {
        Self {
            bytes: [0; EXTENDED_SCCB_SIZE],
        }
    }

    /// The first page: every request's SCCB but an extended READ SCP INFO.
    pub fn as_bytes(&self) -> &[u8; SCCB_SIZE] {
        self.bytes
            .first_chunk()
            .expect("the SCCB holds at least one page")
    }

    /// The first page, writable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8; SCCB_SIZE] {
        self.bytes
            .first_chunk_mut()
            .expect("the SCCB holds at least one page")
    }

    /// All of it, for an extended-length READ SCP INFO.
    pub fn as_extended_bytes(&self) -> &[u8; EXTENDED_SCCB_SIZE] {
        &self.bytes
    }

    /// All of it, writable.
    pub fn as_extended_bytes_mut(&mut self) -> &mut [u8; EXTENDED_SCCB_SIZE] {
        &mut self.bytes
    }

    /// The address of the SCCB, which SERVC takes as its second operand (real address: the
    /// kernel runs the SCLP with DAT off or identity-mapped).
    pub fn addr(&self) -> u64 {
        core::ptr::from_ref(self).addr() as u64
    }

    /// The SCCB header as it is now.
    pub fn header(&self) -> SccbHeader {
        SccbHeader::decode(&self.bytes)
    }

    /// Zeroes the first page, so no byte of an earlier request leaks into the next one (the
    /// other pages are never part of a one-page request).
    pub fn clear(&mut self) {
        self.as_bytes_mut().fill(0);
    }

    /// Zeroes all of it, before an extended-length request.
    pub fn clear_extended(&mut self) {
        self.bytes.fill(0);
    }
}

impl Default for Sccb {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Sccb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sccb")
            .field("addr", &format_args!("{:#x}", self.addr()))
            .field("header", &self.header())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sccb_is_page_aligned_and_extended_length() {
        assert_eq!(core::mem::size_of::<Sccb>(), 3 * 4096);
        assert_eq!(core::mem::align_of::<Sccb>(), 4096);
        let sccb = Sccb::new();
        assert_eq!(sccb.addr() % 4096, 0);
    }

    #[test]
    fn clear_zeroes_every_byte() {
        let mut sccb = Sccb::new();
        sccb.as_bytes_mut().fill(0x5A);
        sccb.clear();
        assert!(sccb.as_bytes().iter().all(|&b| b == 0));
    }
}
