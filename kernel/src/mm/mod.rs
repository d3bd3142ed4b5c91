//! Memory management: frames, DAT address spaces, VMAs, page cache over a
//! backing store, reverse map, LRU reclaim, demand paging and mlock, built the
//! way Linux `mm/` is and with its vocabulary.
//!
//! # Map
//!
//! | module | Linux | holds |
//! |---|---|---|
//! | [`addr`] | | `PAGE_SIZE`, [`addr::Pfn`], [`addr::PhysAddr`], [`addr::VirtAddr`] |
//! | [`ids`] | | [`ids::MappingId`], [`ids::SpaceId`]: small ids instead of pointers |
//! | [`page`] | `struct page`, `mem_map` | [`page::Page`] (flags, counts, owner, LRU links, `last_state`), [`page::PageArray`] |
//! | [`list`] | `list_head` | [`list::PageList`], intrusive through the page metadata |
//! | [`frames`] | page allocator | [`frames::FrameAllocator`] (O(1) free list), [`frames::usable_ranges`] |
//! | [`machine`] | | traits the arch layer implements: [`machine::PhysMem`], [`machine::Tlb`], [`machine::StorageKeys`] |
//! | [`dat`] | `pgtable.h`, `pgalloc.c` | entry encodings, [`dat::DatSpace`] (map, unmap, protect, walk, identity map, kernel sharing) |
//! | [`vma`] | `mmap.c`, `mprotect.c` | [`vma::Vma`], [`vma::VmaTree`]: split/merge, the range operations |
//! | [`backing`] | block layer | [`backing::BlockDevice`], [`backing::MemDisk`], the image format, [`backing::pattern`] |
//! | [`manager`] | `mm_struct`, zones | [`manager::Mm`]: owns everything; frame allocation with watermarks, `put_page` |
//! | [`page_cache`] | `filemap.c` | [`page_cache::Mapping`]; `find_get_page`, `readpage`, writeback, `truncate_inode_pages` |
//! | [`rmap`] | `rmap.c` | reverse map, `try_to_unmap`, `page_remove_rmap` |
//! | [`lru`] | `swap.c` | active/inactive lists, `lru_cache_add`, `mark_page_accessed` |
//! | [`reclaim`] | `vmscan.c` | `reclaim`, `shrink_active_list`, `shrink_page`, lumpy `reclaim_block` for multi-frame DAT tables |
//! | [`residue`] | `CONFIG_DEBUG_VM`, KUnit resources | [`residue::Snapshot`]: what a test left behind (checked after every test) |
//! | [`fault`] | `memory.c` | `handle_fault`, COW, `follow_page`, `get_user_pages`, `make_pages_present` |
//! | [`mlock`] | `mlock.c` | `mlock`, `munlock`, `mlock_fixup` (sets the mapping's `mlocked`) |
//! | [`mmap`] | `mmap.c` | `mmap`, `munmap`, `mprotect` with the page tables kept in line |
//! | [`discard`] | `page-states.c` | `page_discard` (unmaps through `try_to_unmap`), `discard_fault` (0x1A) |
//! | [`hooks`] | `page-states.h` | [`hooks::PageStateHooks`]: where the ESSA layer (issue 5) plugs in |
//! | [`error`] | errno, `VM_BUG_ON` | [`error::MmError`], [`error::Bug`] (a series rule found broken) |
//!
//! # Rules the code keeps
//!
//! - References: the page cache holds one per cached page, each PTE one, each
//!   pin one; the last `put_page` takes the page off the LRU and frees it.
//! - Dirty tracking as on s390 without write notification: shared writable file
//!   pages are mapped writable on any fault, and a store marks only the
//!   storage-key change bit; the bit is moved into the dirty flag when the last
//!   PTE goes and before writeback, only when it is set and after making the
//!   page stable (series patch 6/6, hazard 1). Write faults (and `write_file`)
//!   make the page stable and dirty at once. `readpage` clears the change bit.
//!   Page-table entries are read and written only through
//!   [`machine::PhysMem::read_pte`]/[`machine::PhysMem::write_pte`].
//! - Reclaim never frees locked, under-writeback, pinned, anonymous (no swap)
//!   or `VM_LOCKED`-mapped pages; `try_to_unmap` asks
//!   [`hooks::PageStateHooks::may_unmap_in_locked_vma`] (the seed's discarded-page exception).
//! - A mapping's `mlocked` flag is set by `mlock_fixup` and never cleared.
//! - Page-cache I/O is asynchronous ([`page_cache`]): a page stays locked while its
//!   read is in flight and under writeback while its write is; a frame with a transfer
//!   in flight is never freed (`put_page` checks); an I/O error reaches the waiter as
//!   [`MmError::Io`], never as data.
//! - The kernel is single threaded: [`Mm`] methods take `&mut self`; the
//!   caller serialises (a lock that interrupt context never takes).

pub mod addr;
pub use backing;
pub mod dat;
pub mod debug;
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
pub mod residue;
pub mod rmap;
#[cfg(test)]
pub mod testing;
pub mod vma;

pub use error::MmError;
pub use manager::{Mm, MmConfig, MmStats};
