//! The error type of the memory manager.

use core::fmt;

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
        }
    }
}
