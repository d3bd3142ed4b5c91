//! The service-call control block: the one page through which requests and answers pass.

use core::fmt;

use crate::spec::{SCCB_SIZE, SccbHeader};

/// One 4 KiB-aligned SCCB page (8-byte aligned, never crosses a page).
///
/// The SCLP also requires it to lie below 2 GiB, outside the first 8 KiB and outside the prefix
/// area; where it lives is up to the owner of the [`Sclp`](crate::Sclp) that contains it.
#[repr(C, align(4096))]
pub struct Sccb {
    bytes: [u8; SCCB_SIZE],
}

impl Sccb {
    /// A zero-filled SCCB.
    pub const fn new() -> Self {
        Self {
            bytes: [0; SCCB_SIZE],
        }
    }

    /// The whole page.
    pub fn as_bytes(&self) -> &[u8; SCCB_SIZE] {
        &self.bytes
    }

    /// The whole page, writable.
    pub fn as_bytes_mut(&mut self) -> &mut [u8; SCCB_SIZE] {
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

    /// Zeroes the page, so no byte of an earlier request leaks into the next one.
    pub fn clear(&mut self) {
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
    fn sccb_is_one_aligned_page() {
        assert_eq!(core::mem::size_of::<Sccb>(), 4096);
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
