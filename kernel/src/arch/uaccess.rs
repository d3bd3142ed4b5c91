//! Loads and stores to user addresses of the current address space, for test bodies
//! and the kernel's own checks. They are safe because they refuse every address outside
//! the user range (so they cannot touch kernel memory, which is identity-mapped below
//! it): a user address is either mapped, or the access faults and the memory manager
//! resolves it, or the fault unwinds to the running test.

use crate::mm::addr::{PAGE_SIZE, VirtAddr};
use crate::mm::manager::{USER_END, USER_START};
use core::arch::asm;

fn check(va: VirtAddr, len: usize) {
    let end = va.as_u64().checked_add(len as u64);
    assert!(
        va >= USER_START && end.is_some_and(|e| e <= USER_END.as_u64()),
        "uaccess outside the user range: {:#x}+{len}",
        va.as_u64()
    );
}

/// Loads the byte at user address `va`.
pub fn read_u8(va: VirtAddr) -> u8 {
    check(va, 1);
    let value: u64;
    // SAFETY: `va` lies in the user range, which never aliases kernel memory; a missing
    // mapping raises a translation exception the kernel resolves or unwinds.
    unsafe {
        asm!("llgc {v}, 0({a})", v = out(reg) value, a = in(reg_addr) va.as_u64(), options(nostack, readonly))
    };
    value as u8
}

/// Stores `value` at user address `va`.
pub fn write_u8(va: VirtAddr, value: u8) {
    check(va, 1);
    // SAFETY: as for `read_u8`; the store only reaches user memory.
    unsafe {
        asm!("stc {v}, 0({a})", v = in(reg) u64::from(value), a = in(reg_addr) va.as_u64(), options(nostack))
    };
}

/// Loads the doubleword at user address `va` (8-byte aligned).
pub fn read_u64(va: VirtAddr) -> u64 {
    check(va, 8);
    let value: u64;
    // SAFETY: as for `read_u8`.
    unsafe {
        asm!("lg {v}, 0({a})", v = out(reg) value, a = in(reg_addr) va.as_u64(), options(nostack, readonly))
    };
    value
}

/// Stores `value` at user address `va` (8-byte aligned).
pub fn write_u64(va: VirtAddr, value: u64) {
    check(va, 8);
    // SAFETY: as for `write_u8`.
    unsafe {
        asm!("stg {v}, 0({a})", v = in(reg) value, a = in(reg_addr) va.as_u64(), options(nostack))
    };
}

/// Copies `buf.len()` bytes from user address `va`.
pub fn read_bytes(va: VirtAddr, buf: &mut [u8]) {
    check(va, buf.len());
    for (at, n) in chunks(va, buf.len()) {
        // SAFETY: the source lies in the user range (checked above) and never aliases
        // kernel memory, a missing mapping faults as in `read_u8`; the destination is
        // `n` bytes of `buf` at `at`.
        unsafe { mvc(buf[at..].as_mut_ptr() as u64, va.as_u64() + at as u64, n) };
    }
}

/// Copies `buf` to user address `va`.
pub fn write_bytes(va: VirtAddr, buf: &[u8]) {
    check(va, buf.len());
    for (at, n) in chunks(va, buf.len()) {
        // SAFETY: as for `read_bytes`, the other way round: only user memory is stored to.
        unsafe { mvc(va.as_u64() + at as u64, buf[at..].as_ptr() as u64, n) };
    }
}

/// The pieces of a copy of `len` bytes at user address `va` as `(offset, length)`: at
/// most 256 bytes (one MVC) and never across a user page, so a translation exception
/// is recognized before the piece moves a byte and the copy resumes with the piece once
/// the fault is resolved.
fn chunks(va: VirtAddr, len: usize) -> impl Iterator<Item = (usize, usize)> {
    let mut at = 0;
    core::iter::from_fn(move || {
        let user = va.as_u64() + at as u64;
        let to_page_end = (PAGE_SIZE - user % PAGE_SIZE) as usize;
        let n = (len - at).min(256).min(to_page_end);
        (n > 0).then(|| {
            at += n;
            (at - n, n)
        })
    })
}

/// MOVE (CHARACTER) of `n` bytes (1 to 256) from `src` to `dst`, through EXECUTE
/// RELATIVE LONG: one instruction per piece instead of a load and a store per word,
/// which under TCG is the difference between a helper call and hundreds of translated
/// instructions.
///
/// # Safety
/// `n` bytes readable at `src` and writable at `dst`, not overlapping; user addresses
/// only as `read_u8` and `write_u8` allow them.
unsafe fn mvc(dst: u64, src: u64, n: usize) {
    debug_assert!((1..=256).contains(&n));
    // SAFETY: the caller's contract; EXRL ORs `n - 1` into the length field of the MVC
    // template, which is skipped when reached in line. The length must not be in r0, for
    // which EXECUTE ORs nothing (the MVC would move one byte): `reg_addr` excludes it.
    unsafe {
        asm!(
            "exrl {len}, 1f",
            "j 2f",
            "1: mvc 0(1,{dst}),0({src})",
            "2:",
            len = in(reg_addr) n - 1,
            dst = in(reg_addr) dst,
            src = in(reg_addr) src,
            options(nostack),
        );
    }
}
