//! The error type of the memory manager.

use core::fmt;

use super::addr::Pfn;
use super::backing::IoError;

/// Why a memory-management operation failed. Bad arguments are errors, never panics.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum MmError {
    /// An address or length is not page aligned (`EINVAL`).
    Unaligned,
    /// A length of zero (`EINVAL`).
    ZeroLength,
    /// `address + length` overflows (`EINVAL`/`ENOMEM`).
    Overflow,
    /// The range leaves the user part of the address space (`ENOMEM`).
    OutOfRange,
    /// Part of the range is not mapped by any VMA (`ENOMEM` from `mprotect`/`mlock`).
    NotMapped,
    /// No VMA allows this access (`SIGSEGV`).
    AccessViolation,
    /// A file page beyond the end of the file (`SIGBUS`).
    BeyondEof,
    /// No free frame, even after reclaim (`ENOMEM`).
    OutOfMemory,
    /// No space left in the virtual address range for a new mapping (`ENOMEM`).
    NoSpace,
    /// A page is already mapped at this address (DAT level).
    AlreadyMapped,
    /// The address space, mapping or file does not exist (`EBADF`/`ESRCH`).
    NoSuchObject,
    /// A mapping asks for more than the object allows, e.g. write on a read-only file (`EACCES`).
    PermissionDenied,
    /// The backing store failed.
    Io(IoError),
    /// A rule of the page-hinting series found broken (see [`Bug`]).
    Bug(Bug),
}

/// A rule of the page-hinting series found broken at run time, where the series has a
/// `VM_BUG_ON`: the memory manager refuses the operation (so the breach loses nothing
/// more), records it (`Mm::bugs`, the invariant checker reports it) and the test that
/// ran fails.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Bug {
    /// `page_discard` met a dirty page: the host would have thrown away data not yet
    /// written back (1/6: `VM_BUG_ON(PageDirty(page))`).
    DiscardDirty(Pfn),
    /// `page_discard` met a page under writeback (1/6: `VM_BUG_ON(PageWriteback(page))`).
    DiscardWriteback(Pfn),
    /// `page_discard` met a page with private data (1/6: `VM_BUG_ON(PagePrivate(page))`).
    DiscardPrivate(Pfn),
    /// `page_discard` could not unmap the page everywhere (1/6: `VM_BUG_ON(page_mapped(page))`
    /// after `page_unmap_all`; the seed's exception in `try_to_unmap_one` is what lets a
    /// discarded page leave a `VM_LOCKED` VMA).
    DiscardStillMapped(Pfn),
    /// The storage-key change bit was set, yet making the page stable found it discarded
    /// (6/6 `page_remove_rmap`: `VM_BUG_ON(!stable)`).
    ChangedPageDiscarded(Pfn),
}

impl Bug {
    /// The frame concerned.
    pub fn pfn(self) -> Pfn {
        match self {
            Self::DiscardDirty(p)
            | Self::DiscardWriteback(p)
            | Self::DiscardPrivate(p)
            | Self::DiscardStillMapped(p)
            | Self::ChangedPageDiscarded(p) => p,
        }
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (what, pfn) = match self {
            Self::DiscardDirty(p) => ("page_discard of a dirty page", p),
            Self::DiscardWriteback(p) => ("page_discard of a page under writeback", p),
            Self::DiscardPrivate(p) => ("page_discard of a page with private data", p),
            Self::DiscardStillMapped(p) => ("page_discard left the page mapped", p),
            Self::ChangedPageDiscarded(p) => ("a page with its change bit set was discarded", p),
        };
        write!(f, "{what} (frame {:#x})", pfn.as_u64())
    }
}

impl From<IoError> for MmError {
    fn from(e: IoError) -> Self {
        Self::Io(e)
    }
}

impl fmt::Display for MmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unaligned => f.write_str("address or length not page aligned"),
            Self::ZeroLength => f.write_str("zero length"),
            Self::Overflow => f.write_str("address range overflows"),
            Self::OutOfRange => f.write_str("address range outside the user range"),
            Self::NotMapped => f.write_str("address range not fully mapped"),
            Self::AccessViolation => f.write_str("access not allowed by the VMA"),
            Self::BeyondEof => f.write_str("file page beyond end of file"),
            Self::OutOfMemory => f.write_str("out of memory"),
            Self::NoSpace => f.write_str("no free virtual address range"),
            Self::AlreadyMapped => f.write_str("page already mapped"),
            Self::NoSuchObject => f.write_str("no such address space, mapping or file"),
            Self::PermissionDenied => f.write_str("permission denied"),
            Self::Io(e) => write!(f, "backing store: {e}"),
            Self::Bug(b) => write!(f, "series rule broken: {b}"),
        }
    }
}
