//! `memcpy` and friends, which the linux-gnu `compiler_builtins` leaves to libc, and the
//! `rust_eh_personality` symbol that the prebuilt `core` references even with
//! `panic = "abort"`.
//!
//! The bulk work is done by MVCLE/CLCLE (interruptible long moves and compares) in inline
//! assembly, so LLVM cannot turn the bodies back into calls to these very functions and
//! page-sized copies cost one instruction instead of 4096 loop iterations.

use core::arch::asm;

/// # Safety
/// Standard C `memcpy` contract: `n` bytes readable at `src`, writable at `dst`, no overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: MVCLE moves exactly `n` bytes from `src` to `dst`, which the caller
    // guarantees to be valid; it loops on CC 3 (partial completion).
    unsafe {
        asm!(
            "0: mvcle %r2, %r4, 0",
            "jo 0b",
            inout("r2") dst => _, inout("r3") n => _,
            inout("r4") src => _, inout("r5") n => _,
            options(nostack),
        );
    }
    dst
}

/// # Safety
/// Standard C `memmove` contract: `n` bytes readable at `src`, writable at `dst`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize) <= (src as usize) || (dst as usize) >= (src as usize) + n {
        // SAFETY: a forward copy is correct when dst is below src or the ranges are disjoint.
        return unsafe { memcpy(dst, src, n) };
    }
    // Overlapping with `dst` above `src`: backwards, in pieces no longer than the
    // distance, so no piece overlaps its own destination and each is one MVCLE (a byte
    // loop costs a hundred instructions a byte in the dev profile, and Vec and BTreeMap
    // shift elements up this way).
    let distance = dst as usize - src as usize;
    let mut end = n;
    while end > 0 {
        let piece = end.min(distance);
        end -= piece;
        // SAFETY: both ranges lie within the caller's `n` bytes. The piece's destination
        // starts `distance >= piece` above its source, so the two do not overlap, and
        // it writes only at or above `src + end + piece`, while the bytes still to be
        // moved lie below `src + end`.
        unsafe { memcpy(dst.wrapping_add(end), src.wrapping_add(end), piece) };
    }
    dst
}

/// # Safety
/// Standard C `memset` contract: `n` bytes writable at `dst`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, c: i32, n: usize) -> *mut u8 {
    // SAFETY: MVCLE with a zero-length source fills `n` bytes at `dst` with the pad
    // byte (the low byte of the second-operand address); the caller guarantees them.
    unsafe {
        asm!(
            "0: mvcle %r2, %r4, 0({pad})",
            "jo 0b",
            pad = in(reg_addr) (c as u8) as usize,
            inout("r2") dst => _, inout("r3") n => _,
            inout("r4") 0usize => _, inout("r5") 0usize => _,
            options(nostack),
        );
    }
    dst
}

/// # Safety
/// Standard C `memcmp` contract: `n` bytes readable at both pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let (pa, pb): (usize, usize);
    // SAFETY: CLCLE compares up to `n` bytes at both pointers (guaranteed readable by the
    // caller) and leaves r2/r4 at the first difference.
    unsafe {
        asm!(
            "0: clcle %r2, %r4, 0",
            "jo 0b",
            inout("r2") a => pa, inout("r3") n => _,
            inout("r4") b => pb, inout("r5") n => _,
            options(nostack, readonly),
        );
    }
    if pa == a as usize + n {
        return 0;
    }
    // SAFETY: CLCLE stopped inside both ranges at the first unequal byte.
    let (x, y) = unsafe { (*(pa as *const u8), *(pb as *const u8)) };
    i32::from(x) - i32::from(y)
}

/// # Safety
/// Standard C `bcmp` contract: `n` bytes readable at both pointers.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// Referenced by the prebuilt `core`'s DWARF unwind tables; never called with
/// `panic = "abort"`.
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}

/// Referenced by the prebuilt `alloc`'s landing pads; with `panic = "abort"` nothing
/// ever unwinds, so reaching it is a bug: end the run as a crash.
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    kernel::shutdown::crash("_Unwind_Resume called: unwinding is impossible with panic=abort")
}
