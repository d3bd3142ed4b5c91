//! Memory management: frames, heap, DAT address spaces, VMAs, page cache, reclaim, mlock.
pub mod addr;
pub mod backing;
pub mod dat;
pub mod discard;
pub mod error;
#[cfg(test)]
pub mod fake;
pub mod fault;
pub mod frames;
pub mod hooks;
pub mod ids;
pub mod list;
pub mod lru;
pub mod machine;
pub mod manager;
pub mod mlock;
pub mod mmap;
pub mod page;
pub mod page_cache;
pub mod reclaim;
pub mod rmap;
#[cfg(test)]
pub mod testing;
pub mod vma;
