//! The in-kernel test descriptors: `ktest!` places one `KTest` per test in the
//! `.kernel_tests` section, which the linker script brackets with two symbols. Read here,
//! where the image is put together, and handed to the kernel at start-up: the
//! architecture layer below knows nothing of tests.

use kernel::ktest::KTest;

unsafe extern "C" {
    static __kernel_tests_start: u8;
    static __kernel_tests_end: u8;
}

/// Every test descriptor in the image.
pub fn tests() -> &'static [KTest] {
    // SAFETY: the linker script brackets `.kernel_tests` with these symbols and keeps
    // only that section between them; the section holds only `KTest` statics (8-byte
    // aligned, `#[repr(C)]`, as `ktest!` declares them), built with static relocations
    // so their pointers are valid, and never written.
    unsafe {
        let start = core::ptr::addr_of!(__kernel_tests_start).cast::<KTest>();
        let end = core::ptr::addr_of!(__kernel_tests_end).cast::<KTest>();
        let count = (end as usize - start as usize) / core::mem::size_of::<KTest>();
        core::slice::from_raw_parts(start, count)
    }
}
