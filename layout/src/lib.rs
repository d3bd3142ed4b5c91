//! Where the kernel puts what it allocates at boot, sized from the storage READ SCP INFO
//! reports: above the image and the initrd come the heap, the kernel's page tables and the
//! memory manager's page pool, in this order; the identity map ends with the pool.
//!
//! Everything is sized from the storage there is, never assumed: the heap wants a
//! sixteenth of storage (at least [`HEAP_WANTED_MIN`]) but makes do with [`HEAP_MIN`],
//! the pool wants `mm.pool=` (default [`DEFAULT_POOL`]) but makes do with [`POOL_MIN`];
//! where not even the minimums fit, [`plan`] says how much is missing and the kernel stops
//! with [`NotEnoughMemory`]'s message instead of crashing while it builds its tables.
//! `cargo xtask` checks the same [`minimum_memory`] before it boots.

//!
//! A crate of its own (the kernel re-exports it as `kernel::layout`), so xtask can check
//! `-m` without building the kernel for the host.
#![cfg_attr(not(test), no_std)]
#![deny(unsafe_code, missing_docs)]

#[cfg(test)]
extern crate alloc;

use core::fmt;
use core::ops::Range;

const PAGE: u64 = 4096;

/// Pool bytes the memory manager gets unless `mm.pool=` says otherwise: 2 MiB, ten times
/// less than the suites' files, so the page cache is always under pressure (and the boot
/// sets only 512 free frames unused, one ESSA each).
pub const DEFAULT_POOL: u64 = 2 << 20;

/// The smallest pool the kernel shrinks the default to when storage is short: 96 frames,
/// what `cargo xtask stress` runs its workload in (the low watermark keeps 32 free).
pub const POOL_MIN: u64 = 384 << 10;

/// The smallest heap the kernel runs with: page metadata, the host model's state table
/// and what most tests allocate. Suites that need more skip (`tests/src/support.rs`).
pub const HEAP_MIN: u64 = 1 << 20;

/// The heap the kernel wants below 64 MiB of storage; above, a sixteenth of storage
/// (at most [`HEAP_WANTED_MAX`]): frame metadata is 64 bytes per 4 KiB frame.
pub const HEAP_WANTED_MIN: u64 = 4 << 20;

/// The most heap the kernel asks for.
pub const HEAP_WANTED_MAX: u64 = 64 << 20;

/// Where QEMU loads the initrd on s390x (`hw/s390x/ipl.c`, `INITRD_START`): the backing
/// store lies from here on when QEMU loads it.
pub const QEMU_INITRD_START: u64 = 0x80_0000;

/// The heap wanted with `memory` bytes of storage.
pub fn heap_wanted(memory: u64) -> u64 {
    (memory / 16).clamp(HEAP_WANTED_MIN, HEAP_WANTED_MAX)
}

/// Bytes of table frames needed to map `memory` bytes one to one with 4 KiB pages: one
/// region-third table, one segment table (4 frames) per 2 GiB, one page table frame per
/// MiB, plus alignment slack.
pub fn tables_size(memory: u64) -> u64 {
    let segments = memory.div_ceil(1 << 20);
    let segment_tables = memory.div_ceil(2 << 30);
    (1 + 4 * segment_tables + segments + 4) * PAGE
}

/// What `mm.pool=` asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PoolRequest {
    /// Nothing: [`DEFAULT_POOL`], smaller if storage is short.
    Default,
    /// This many bytes; capped to what storage holds (with a warning).
    Bytes(u64),
    /// `all`: everything above the heap and the tables.
    All,
}

impl PoolRequest {
    /// The request behind the command line's `mm.pool` value (`u64::MAX` is `all`).
    pub fn from_option(mm_pool: Option<u64>) -> Self {
        match mm_pool {
            None => PoolRequest::Default,
            Some(u64::MAX) => PoolRequest::All,
            Some(bytes) => PoolRequest::Bytes(bytes),
        }
    }
}

/// The boot-time layout of storage above the image and the initrd.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The kernel heap.
    pub heap: Range<u64>,
    /// The kernel's page tables.
    pub tables: Range<u64>,
    /// The memory manager's page pool (page aligned); the identity map ends with it.
    pub pool: Range<u64>,
    /// The pool asked for, when it did not fit and the pool is smaller (not for `all`).
    pub pool_capped_from: Option<u64>,
}

/// Storage is too small for the image, the initrd and the minimum heap, tables and pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct NotEnoughMemory {
    /// Bytes of storage needed.
    pub need: u64,
    /// Bytes of storage there are.
    pub have: u64,
}

impl fmt::Display for NotEnoughMemory {
    /// `not enough memory: need N KiB, have M KiB`, the line `Bail out!` carries and xtask
    /// recognises (see `docs/architecture.md`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not enough memory: need {} KiB, have {} KiB",
            self.need.div_ceil(1024),
            self.have / 1024
        )
    }
}

/// A byte count in the largest binary unit that shows it exactly (`99999 GiB`, `384 KiB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let units = [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")];
        match units
            .iter()
            .find(|&&(shift, _)| self.0 != 0 && self.0.is_multiple_of(1 << shift))
        {
            Some(&(shift, unit)) => write!(f, "{} {unit}", self.0 >> shift),
            None => write!(f, "{} bytes", self.0),
        }
    }
}

/// The least storage a kernel whose image and initrd end at `used_end` boots in.
pub fn minimum_memory(used_end: u64) -> u64 {
    let start = used_end.next_multiple_of(PAGE);
    // The tables grow with storage; size them for the answer (a fixed point, reached in
    // a step or two since one page table maps a MiB).
    let mut need = start + HEAP_MIN + POOL_MIN;
    loop {
        let with_tables = start + HEAP_MIN + tables_size(need) + POOL_MIN;
        if with_tables <= need {
            return need;
        }
        need = with_tables;
    }
}

/// Places heap, tables and pool in `memory` bytes of storage of which `[0, used_end)` hold
/// the image and the initrd. The heap gets [`heap_wanted`] or what is left after the
/// tables and [`POOL_MIN`], at least [`HEAP_MIN`]; the pool gets what was asked for, or
/// what is left, at least [`POOL_MIN`] (or the request, if smaller).
pub fn plan(memory: u64, used_end: u64, pool: PoolRequest) -> Result<Layout, NotEnoughMemory> {
    let need = minimum_memory(used_end);
    if memory < need {
        return Err(NotEnoughMemory { need, have: memory });
    }
    let heap_start = used_end.next_multiple_of(PAGE);
    let tables = tables_size(memory);
    let room = memory - heap_start - tables;
    let heap = heap_wanted(memory).min(room - POOL_MIN).max(HEAP_MIN) / PAGE * PAGE;
    let pool_room = (room - heap) / PAGE * PAGE;
    let (pool_bytes, capped) = match pool {
        PoolRequest::All => (pool_room, None),
        PoolRequest::Default if DEFAULT_POOL <= pool_room => (DEFAULT_POOL, None),
        PoolRequest::Default => (pool_room, Some(DEFAULT_POOL)),
        PoolRequest::Bytes(bytes) if bytes.next_multiple_of(PAGE) <= pool_room => {
            (bytes.next_multiple_of(PAGE), None)
        }
        PoolRequest::Bytes(bytes) => (pool_room, Some(bytes)),
    };
    let heap_end = heap_start + heap;
    let pool_start = heap_end + tables;
    Ok(Layout {
        heap: heap_start..heap_end,
        tables: heap_end..pool_start,
        pool: pool_start..pool_start + pool_bytes,
        pool_capped_from: capped,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;
    /// The standard backing store (21588 KiB) loaded by QEMU at 8 MiB.
    const STANDARD_END: u64 = QEMU_INITRD_START + 21588 * 1024;

    fn fits(layout: &Layout, memory: u64, used_end: u64) {
        assert!(layout.heap.start >= used_end);
        assert!(layout.heap.end <= layout.tables.start);
        assert!(layout.tables.end <= layout.pool.start);
        assert!(layout.pool.end <= memory, "{layout:?} in {memory:#x}");
        assert!(layout.heap.end - layout.heap.start >= HEAP_MIN);
        assert_eq!(layout.pool.start % PAGE, 0);
        assert_eq!(layout.pool.end % PAGE, 0);
        assert!(layout.tables.end - layout.tables.start >= tables_size(layout.pool.end));
    }

    #[test]
    fn plenty_of_storage_gets_what_was_asked_for() {
        let layout = plan(256 * MIB, STANDARD_END, PoolRequest::Default).unwrap();
        fits(&layout, 256 * MIB, STANDARD_END);
        assert_eq!(layout.heap.end - layout.heap.start, 16 * MIB);
        assert_eq!(layout.pool.end - layout.pool.start, DEFAULT_POOL);
        assert_eq!(layout.pool_capped_from, None);
        let all = plan(256 * MIB, STANDARD_END, PoolRequest::All).unwrap();
        fits(&all, 256 * MIB, STANDARD_END);
        assert!(256 * MIB - all.pool.end < PAGE);
    }

    #[test]
    fn every_size_from_the_minimum_up_fits_and_below_it_says_so() {
        let min = minimum_memory(STANDARD_END);
        assert!(min < 32 * MIB, "{} KiB", min / 1024);
        for memory in (min..=300 * MIB).step_by(257 * 1024).chain([min]) {
            for request in [
                PoolRequest::Default,
                PoolRequest::All,
                PoolRequest::Bytes(1 << 40),
                PoolRequest::Bytes(64 * 1024),
            ] {
                let layout = plan(memory, STANDARD_END, request).unwrap();
                fits(&layout, memory, STANDARD_END);
                let pool = layout.pool.end - layout.pool.start;
                assert!(
                    pool >= POOL_MIN.min(64 * 1024),
                    "{pool} at {memory} for {request:?}"
                );
            }
        }
        for memory in [0, MIB, STANDARD_END, min - 1] {
            assert_eq!(
                plan(memory, STANDARD_END, PoolRequest::Default),
                Err(NotEnoughMemory {
                    need: min,
                    have: memory
                })
            );
        }
    }

    #[test]
    fn short_storage_shrinks_the_heap_then_the_pool_and_reports_a_capped_request() {
        let layout = plan(32 * MIB, STANDARD_END, PoolRequest::Default).unwrap();
        fits(&layout, 32 * MIB, STANDARD_END);
        assert!(layout.heap.end - layout.heap.start < HEAP_WANTED_MIN);
        assert_eq!(layout.pool_capped_from, Some(DEFAULT_POOL));
        let asked = plan(64 * MIB, STANDARD_END, PoolRequest::Bytes(99999 << 30)).unwrap();
        assert_eq!(asked.pool_capped_from, Some(99999 << 30));
        fits(&asked, 64 * MIB, STANDARD_END);
        assert_eq!(asked.heap.end - asked.heap.start, HEAP_WANTED_MIN);
    }

    #[test]
    fn the_message_names_both_sizes() {
        let message = NotEnoughMemory {
            need: 31 * MIB + 1,
            have: 24 * MIB,
        }
        .to_string();
        assert_eq!(message, "not enough memory: need 31745 KiB, have 24576 KiB");
    }

    #[test]
    fn sizes_print_in_the_largest_exact_unit() {
        let shown: alloc::vec::Vec<alloc::string::String> =
            [99999 << 30, 384 << 10, 3 << 20, 4097, 0]
                .map(|b| alloc::format!("{}", Size(b)))
                .into();
        assert_eq!(
            shown,
            ["99999 GiB", "384 KiB", "3 MiB", "4097 bytes", "0 bytes"]
        );
    }

    #[test]
    fn the_pool_request_comes_from_the_command_line_value() {
        assert_eq!(PoolRequest::from_option(None), PoolRequest::Default);
        assert_eq!(PoolRequest::from_option(Some(u64::MAX)), PoolRequest::All);
        assert_eq!(
            PoolRequest::from_option(Some(4096)),
            PoolRequest::Bytes(4096)
        );
    }
}
