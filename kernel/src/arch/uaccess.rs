//! Loads and stores to user addresses of the current address space, for test bodies
//! and the kernel's own checks. They are safe because they refuse every address outside
//! the user range (so they cannot touch kernel memory, which is identity-mapped below
//! it): a user address is either mapped, or the access faults and the memory manager
//! resolves it, or the fault unwinds to the running test.

use crate::mm::addr::VirtAddr;
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

/// Copies `buf.len()` bytes from user address `va` (word by word where aligned).
pub fn read_bytes(va: VirtAddr, buf: &mut [u8]) {
    check(va, buf.len());
    let mut i = 0;
    while i < buf.len() {
        let a = VirtAddr::new(va.as_u64() + i as u64);
        if a.as_u64().is_multiple_of(8) && buf.len() - i >= 8 {
            buf[i..i + 8].copy_from_slice(&read_u64(a).to_be_bytes());
            i += 8;
        } else {
            buf[i] = read_u8(a);
            i += 1;
        }
    }
}

/// Copies `buf` to user address `va`.
pub fn write_bytes(va: VirtAddr, buf: &[u8]) {
    check(va, buf.len());
    let mut i = 0;
    while i < buf.len() {
        let a = VirtAddr::new(va.as_u64() + i as u64);
        if a.as_u64().is_multiple_of(8) && buf.len() - i >= 8 {
            write_u64(
                a,
                u64::from_be_bytes(buf[i..i + 8].try_into().expect("8 bytes")),
            );
            i += 8;
        } else {
            write_u8(a, buf[i]);
            i += 1;
        }
    }
}
