//! Small identifiers that stand in for pointers in the page metadata.
//!
//! `struct page` in Linux points at its `address_space` or `anon_vma`; here a
//! page names its owner by a 32-bit id, which keeps [`Page`](super::page::Page)
//! small and the ownership graph free of references.

use core::num::NonZeroU32;

/// Defines a non-zero 32-bit id newtype; `$zero` says what raw 0 stands for.
macro_rules! id_type {
    ($(#[$meta:meta])* $name:ident, $zero:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
        pub struct $name(NonZeroU32);

        impl $name {
            #[doc = concat!("The id with raw value `raw`; `None` for 0", $zero, ".")]
            pub const fn new(raw: u32) -> Option<Self> {
                match NonZeroU32::new(raw) {
                    Some(v) => Some(Self(v)),
                    None => None,
                }
            }

            /// The raw value (never 0).
            pub const fn get(self) -> u32 {
                self.0.get()
            }
        }
    };
}

id_type!(
    /// Names one page-cache [`Mapping`](super::page_cache::Mapping) (Linux: `address_space`).
    MappingId,
    ", which means \"no mapping\""
);

id_type!(
    /// Names one user address space (Linux: `mm_struct`).
    SpaceId,
    ""
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_is_not_an_id() {
        assert!(MappingId::new(0).is_none());
        assert!(SpaceId::new(0).is_none());
        assert_eq!(MappingId::new(5).map(MappingId::get), Some(5));
        assert_eq!(SpaceId::new(9).map(SpaceId::get), Some(9));
    }
}
