//! Instructions that raise one specific program interruption, for the tests of the
//! interruption path (kvm-unit-tests' `selftest`, `pgm` checks). Each is safe to call:
//! the interruption is suppressed or nullified, so the instruction changes nothing, and
//! the handler either unwinds to the caller's `catch_pgm` scope or reports a crash.

use core::arch::asm;

/// Opcode 0x0000 (never assigned): operation exception (0x01), ILC 1 (2 bytes).
pub fn invalid_opcode() {
    // SAFETY: an unassigned opcode only raises an operation exception.
    unsafe { asm!(".insn e,0x0000", options(nostack, nomem)) };
}

/// STCTG in problem state: privileged-operation exception (0x02), ILC 3 (6 bytes).
pub fn privileged_operation_in_problem_state() {
    super::interrupts::enter_problem_state();
    let mut cr0 = 0u64;
    // SAFETY: in problem state STCTG is suppressed with a privileged-operation exception;
    // should it execute, it only stores CR0 into a local.
    unsafe { asm!("stctg %c0, %c0, 0({p})", p = in(reg_addr) &mut cr0, options(nostack)) };
    super::interrupts::leave_problem_state();
}

/// LPSWE with an operand that is not doubleword aligned: specification exception (0x06),
/// ILC 2 (4 bytes). The PSW is never loaded.
pub fn misaligned_lpswe() {
    let psw = [0u64; 3];
    // SAFETY: the operand address is odd, so LPSWE is suppressed with a specification
    // exception before it reads anything.
    unsafe {
        asm!("lpswe 1({p})", p = in(reg_addr) psw.as_ptr(), options(nostack, readonly));
    }
}

/// STURG to a real address beyond any configured storage: addressing exception (0x05),
/// ILC 2 (4 bytes), whatever the DAT mode.
pub fn store_beyond_storage() {
    // SAFETY: the real address 0xffff_ffff_ffff_f000 lies beyond every machine's storage,
    // so the store is suppressed with an addressing exception.
    unsafe {
        asm!("sturg {v}, {a}", v = in(reg) 0u64, a = in(reg) 0xffff_ffff_ffff_f000u64, options(nostack));
    }
}

/// ESSA (get state) in problem state: privileged-operation exception (0x02) where ESSA
/// exists or is emulated.
pub fn essa_in_problem_state(addr: u64) {
    super::interrupts::enter_problem_state();
    let _ = super::essa::essa(0, addr);
    super::interrupts::leave_problem_state();
}

/// Rewrites the doubleword at real address `addr` (below 512) with its own value using
/// real-address accesses (LURAG/STURG): with low-address protection on, the store raises
/// a protection exception (0x04); without, nothing changes.
pub fn rewrite_low_real(addr: u64) {
    assert!(
        addr < 512 && addr.is_multiple_of(8),
        "only the low-address-protected lowcore"
    );
    // SAFETY: the store writes back the value just loaded from the same real address, with
    // interruptions disabled, so even an unprotected store changes nothing.
    unsafe {
        asm!("lurag {v}, {a}", "sturg {v}, {a}", v = out(reg) _, a = in(reg) addr, options(nostack));
    }
}

/// Copies one byte of the kernel's own text onto itself (MVC): a protection exception
/// (0x04) where the text is mapped read-only; otherwise nothing changes.
pub fn rewrite_kernel_text() {
    let text = super::image::layout().text_start;
    // SAFETY: MVC of a byte onto itself stores the value it just fetched.
    unsafe { asm!("mvc 0(1,{a}), 0({a})", a = in(reg_addr) text, options(nostack)) };
}

/// Loads the doubleword at virtual address 8: a translation exception where page 0 is
/// unmapped (null dereference); otherwise a harmless read of the lowcore.
pub fn load_null() -> u64 {
    let value: u64;
    // SAFETY: a load only; address 8 lies in the lowcore, which is always storage.
    unsafe { asm!("lg {v}, 8", v = out(reg) value, options(nostack, readonly)) };
    value
}

/// Branches to a `BR 14` placed in heap memory: a protection exception (0x04) where data
/// is mapped no-execute (instruction-execution protection); otherwise it just returns.
pub fn execute_heap() {
    let code = alloc::boxed::Box::new([0x07u8, 0xfe]);
    // SAFETY: the two bytes are `br %r14`, so the call returns at once if the fetch is
    // allowed; r14 is the only register the callee touches.
    unsafe {
        asm!("basr %r14, {f}", f = in(reg_addr) code.as_ptr(), out("r14") _, options(nostack));
    }
}

/// SVC 0 in supervisor state with `value` in a register across it: the handler saves the
/// interrupted registers in its frame and resumes with them, so `value` comes back
/// unchanged unless the frame was overwritten meanwhile (by another CPU sharing the
/// stack). Returns the register after the SVC.
pub fn svc_round_trip(value: u64) -> u64 {
    let out: u64;
    // SAFETY: SVC 0 only clears the problem-state bit of the resumed PSW (already clear
    // in supervisor state); every register comes back as it was.
    unsafe { asm!("svc 0", inout("r2") value => out, options(nostack)) };
    out
}

/// Stores `value` into `target` under PSW key `key` (SET PSW KEY FROM ADDRESS around an
/// STC): a protection exception (0x04), and `target` unchanged, where the storage key of
/// its frame refuses stores under that key. Only the STC runs under `key`; an
/// interruption unwinds with the kernel's key 0 ([`super::interrupts::unwind_to_catcher`]
/// loads the kernel mask).
pub fn store_with_key(target: &mut u8, value: u8, key: u8) {
    assert!(key < 16, "a PSW key is 4 bits");
    // SAFETY: STC stores one byte into `target`, which we borrow mutably; between the two
    // SPKAs nothing else is accessed (no stack), so key `key` governs only that store,
    // and key 0 is back before any other access.
    unsafe {
        asm!(
            "spka 0({k})",
            "stc {v}, 0({a})",
            "spka 0",
            k = in(reg_addr) u64::from(key) << 4,
            a = in(reg_addr) target as *mut u8,
            v = in(reg) u64::from(value),
            options(nostack),
        );
    }
}

/// Loads `source` under PSW key `key`: a protection exception (0x04) where its frame is
/// fetch-protected and the frame's access key is neither `key` nor 0.
pub fn load_with_key(source: &u8, key: u8) -> u8 {
    assert!(key < 16, "a PSW key is 4 bits");
    let value: u64;
    // SAFETY: a one-byte load of `source` between two SPKAs, as in `store_with_key`.
    unsafe {
        asm!(
            "spka 0({k})",
            "llgc {v}, 0({a})",
            "spka 0",
            k = in(reg_addr) u64::from(key) << 4,
            a = in(reg_addr) source as *const u8,
            v = out(reg) value,
            options(nostack, readonly),
        );
    }
    value as u8
}
