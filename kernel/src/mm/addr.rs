//! Address newtypes: physical and virtual addresses and page frame numbers.
//!
//! Keeping the three apart in the type system is what stops a virtual address
//! from being handed to ESSA or a frame number from being used as a byte offset.

use core::fmt;

/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// Size of a page frame in bytes: the unit of DAT, ESSA and the frame allocator.
pub const PAGE_SIZE: u64 = 1 << PAGE_SHIFT;
/// [`PAGE_SIZE`] as a `usize`, for buffer lengths.
pub const PAGE_BYTES: usize = PAGE_SIZE as usize;
// The backing store pages files in and out in blocks of one page.
const _: () = assert!(backing::PAGE_SIZE == PAGE_SIZE);

/// Rounds `value` down to a multiple of `align` (a power of two).
pub const fn align_down(value: u64, align: u64) -> u64 {
    value & !(align - 1)
}

/// Rounds `value` up to a multiple of `align` (a power of two); `None` on overflow.
pub const fn align_up(value: u64, align: u64) -> Option<u64> {
    match value.checked_add(align - 1) {
        Some(v) => Some(v & !(align - 1)),
        None => None,
    }
}

/// Whether `value` is a multiple of `align` (a power of two).
pub const fn is_aligned(value: u64, align: u64) -> bool {
    value & (align - 1) == 0
}

/// A page frame number: a physical address shifted right by [`PAGE_SHIFT`].
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Pfn(u64);

impl Pfn {
    /// The frame with number `n`.
    pub const fn new(n: u64) -> Self {
        Self(n)
    }

    /// The frame number.
    pub const fn as_u64(self) -> u64 {
        self.0
    }

    /// The physical address of the first byte of the frame.
    pub const fn addr(self) -> PhysAddr {
        PhysAddr(self.0 << PAGE_SHIFT)
    }

    /// The frame `n` frames after this one; `None` on overflow.
    pub const fn checked_add(self, n: u64) -> Option<Self> {
        match self.0.checked_add(n) {
            Some(v) => Some(Self(v)),
            None => None,
        }
    }
}

impl fmt::Debug for Pfn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Pfn({:#x})", self.0)
    }
}

/// Defines an address newtype over `u64` with the methods physical and
/// virtual addresses share; `$unit` names what a page is called in the docs.
macro_rules! address_type {
    ($(#[$meta:meta])* $name:ident, $unit:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
        pub struct $name(u64);

        impl $name {
            /// The address `addr`.
            pub const fn new(addr: u64) -> Self {
                Self(addr)
            }

            /// The address as an integer.
            pub const fn as_u64(self) -> u64 {
                self.0
            }

            #[doc = concat!("Offset of the address within its ", $unit, ".")]
            pub const fn page_offset(self) -> u64 {
                self.0 & (PAGE_SIZE - 1)
            }

            #[doc = concat!("Whether the address is the first byte of a ", $unit, ".")]
            pub const fn is_page_aligned(self) -> bool {
                is_aligned(self.0, PAGE_SIZE)
            }

            /// Rounds down to a multiple of `align` (a power of two).
            pub const fn align_down(self, align: u64) -> Self {
                Self(align_down(self.0, align))
            }

            /// Rounds up to a multiple of `align` (a power of two); `None` on overflow.
            pub const fn align_up(self, align: u64) -> Option<Self> {
                match align_up(self.0, align) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// The address `bytes` further on; `None` on overflow.
            pub const fn checked_add(self, bytes: u64) -> Option<Self> {
                match self.0.checked_add(bytes) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:#x})"), self.0)
            }
        }
    };
}

address_type!(
    /// A physical (real, with prefixing ignored: absolute) address.
    PhysAddr,
    "frame"
);

impl PhysAddr {
    /// The frame containing this address.
    pub const fn pfn(self) -> Pfn {
        Pfn(self.0 >> PAGE_SHIFT)
    }
}

address_type!(
    /// A virtual address, translated by DAT through an address space's ASCE.
    VirtAddr,
    "page"
);

impl VirtAddr {
    /// The virtual page number (address >> [`PAGE_SHIFT`]).
    pub const fn page_number(self) -> u64 {
        self.0 >> PAGE_SHIFT
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pfn_and_phys_addr_convert_both_ways() {
        let pa = PhysAddr::new(0x12_3456);
        assert_eq!(pa.pfn(), Pfn::new(0x123));
        assert_eq!(pa.page_offset(), 0x456);
        assert_eq!(Pfn::new(0x123).addr(), PhysAddr::new(0x12_3000));
        assert!(!pa.is_page_aligned());
        assert!(Pfn::new(7).addr().is_page_aligned());
    }

    #[test]
    fn alignment_helpers_round_and_detect_overflow() {
        assert_eq!(align_down(0x1fff, PAGE_SIZE), 0x1000);
        assert_eq!(align_up(0x1001, PAGE_SIZE), Some(0x2000));
        assert_eq!(align_up(0x2000, PAGE_SIZE), Some(0x2000));
        assert_eq!(align_up(u64::MAX - 5, PAGE_SIZE), None);
        assert!(is_aligned(0x3000, PAGE_SIZE));
        assert!(!is_aligned(0x3008, PAGE_SIZE));
        assert_eq!(
            VirtAddr::new(0x5432).align_down(PAGE_SIZE),
            VirtAddr::new(0x5000)
        );
        assert_eq!(VirtAddr::new(u64::MAX).align_up(PAGE_SIZE), None);
        assert_eq!(
            PhysAddr::new(1).align_up(PAGE_SIZE),
            Some(PhysAddr::new(PAGE_SIZE))
        );
    }

    #[test]
    fn virt_addr_page_number_and_offset() {
        let va = VirtAddr::new(0x80_0000_1234);
        assert_eq!(va.page_number(), 0x800_0001);
        assert_eq!(va.page_offset(), 0x234);
        assert_eq!(va.checked_add(u64::MAX), None);
        assert_eq!(Pfn::new(u64::MAX).checked_add(1), None);
    }
}
