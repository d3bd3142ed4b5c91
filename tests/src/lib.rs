//! The in-kernel test suites of zhint, one file per suite, registered with
//! [`kernel::ktest!`] into the `.kernel_tests` link section.
//!
//! `boot` links this crate into the kernel image and calls [`link`], so the linker keeps
//! this crate's object code (and with it every test descriptor).
#![no_std]

extern crate alloc;

#[cfg(target_arch = "s390x")]
mod arch_interrupts;
#[cfg(target_arch = "s390x")]
mod arch_libc;
#[cfg(target_arch = "s390x")]
mod arch_protection;
#[cfg(target_arch = "s390x")]
mod bench_mm;
#[cfg(target_arch = "s390x")]
mod cmma_discard;
#[cfg(target_arch = "s390x")]
mod cmma_economy;
#[cfg(target_arch = "s390x")]
mod cmma_essa;
#[cfg(target_arch = "s390x")]
mod cmma_mlock;
#[cfg(target_arch = "s390x")]
mod cmma_smp;
#[cfg(target_arch = "s390x")]
mod cmma_states;
#[cfg(target_arch = "s390x")]
mod cmma_stress;
#[cfg(target_arch = "s390x")]
mod io_css;
#[cfg(target_arch = "s390x")]
mod io_virtio_blk;
#[cfg(target_arch = "s390x")]
mod ktest_selftest;
#[cfg(target_arch = "s390x")]
mod mm_dat;
#[cfg(target_arch = "s390x")]
mod mm_fault;
#[cfg(target_arch = "s390x")]
mod mm_frames;
#[cfg(target_arch = "s390x")]
mod mm_io;
#[cfg(target_arch = "s390x")]
mod mm_mlock;
#[cfg(target_arch = "s390x")]
mod mm_page_cache;
#[cfg(target_arch = "s390x")]
mod mm_reclaim;
#[cfg(target_arch = "s390x")]
mod mm_residue;
#[cfg(target_arch = "s390x")]
mod mm_vma;
#[cfg(target_arch = "s390x")]
mod sclp_console;
#[cfg(target_arch = "s390x")]
mod smp;
#[cfg(target_arch = "s390x")]
mod support;

/// Called by `boot` so that the linker pulls this crate into the image.
#[inline(never)]
pub fn link() {}
