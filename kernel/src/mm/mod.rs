//! Memory management: frames, heap, DAT address spaces, VMAs, page cache, reclaim, mlock.
