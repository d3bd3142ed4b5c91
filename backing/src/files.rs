//! The files of the standard backing-store image that xtask builds and QEMU loads with
//! `-initrd`. The in-kernel suites rely on these ids and sizes; one place defines them.
//!
//! The mlock suites each need a file of their own, because a mapping's `mlocked` flag is
//! sticky (the seed): once a file had a locked VMA its pages never become volatile again.

/// A small file (16 pages).
pub const SMALL: u32 = 1;
/// A 1 MiB file.
pub const MEDIUM: u32 = 2;
/// A file whose last page is partial (3 pages + 100 bytes).
pub const PARTIAL: u32 = 3;
/// Two large files (4 MiB and 8 MiB) for memory pressure and the stress test.
pub const LARGE: [u32; 2] = [4, 5];
/// The first of [`SCRATCH_COUNT`] 256 KiB files (ids `SCRATCH..SCRATCH + SCRATCH_COUNT`),
/// one per test that must not share a mapping with another (mlock, page states).
pub const SCRATCH: u32 = 100;
/// How many scratch files there are.
pub const SCRATCH_COUNT: u32 = 33;

/// `(file id, size in bytes)` of every file in the standard image.
pub fn standard() -> alloc::vec::Vec<(u32, u64)> {
    let mut files = alloc::vec![
        (SMALL, 16 * 4096),
        (MEDIUM, 1 << 20),
        (PARTIAL, 3 * 4096 + 100),
        (LARGE[0], 4 << 20),
        (LARGE[1], 8 << 20),
    ];
    files.extend((SCRATCH..SCRATCH + SCRATCH_COUNT).map(|id| (id, 256 << 10)));
    files
}

/// The benchmark file: 100 000 pages, only in the image `cargo xtask bench` builds.
pub const BENCH: u32 = 900;
/// Pages of [`BENCH`].
pub const BENCH_PAGES: u64 = 100_000;

/// The standard files plus the benchmark file.
pub fn with_bench() -> alloc::vec::Vec<(u32, u64)> {
    let mut files = standard();
    files.push((BENCH, BENCH_PAGES * 4096));
    files
}
