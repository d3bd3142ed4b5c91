//! What interruptions mean: the policy behind the handlers in [`crate::arch::interrupts`].
//!
//! A program interruption is, in order: an ESSA to emulate against the host model, a
//! DAT or discard fault for the memory manager, an interruption a test expected (unwound
//! to its [`catch_pgm`](crate::arch::interrupts::catch_pgm) scope), or a crash.

use crate::arch::cpu::{self, psw_mask};
use crate::arch::interrupts::{self, InterruptFrame, PgmInfo};
use crate::ktest::ktap::SUBTEST_INDENT;
use crate::vm::{self, FaultOutcome};
use crate::{console, ktest, shutdown};
use core::fmt::Write;

/// Handles one program interruption; on return the CPU resumes with `frame`.
pub fn program_interruption(frame: &mut InterruptFrame, info: &PgmInfo) {
    use crate::cmma::backend::{self, Emulation};
    let mut info = *info;
    match backend::emulate(frame, &info) {
        Emulation::Done => return,
        Emulation::Raise(code) => info.code = code,
        Emulation::NotEssa => {}
    }
    if interrupts::pgm_depth() > 1 {
        // Only an emulated ESSA may arrive inside the handler; anything else cannot be
        // unwound without abandoning the outer handler half way.
        fatal_nested_program_interruption(frame, &info);
    }
    match backend::on_translation_fault(&info) {
        // The model supplied the frame again: retry the access (the PSW points at it).
        Some(None) => return,
        // Delivered as z/VM would: PIC 0x1A with the absolute address in the TEID.
        Some(Some(delivered)) => info = delivered,
        None => {}
    }
    let outcome = if info.code == 0x1a {
        vm::discard_fault(&info)
    } else {
        vm::translation_fault(&info)
    };
    let refused = match outcome {
        // Resolved by the memory manager: retry the access. Protection exceptions
        // suppress (the old PSW points past the instruction): rewind it, as Linux does.
        FaultOutcome::Resolved => {
            if !interrupts::nullifies(info.code) {
                frame.psw.addr = frame.psw.addr.wrapping_sub(u64::from(info.ilen));
            }
            return;
        }
        FaultOutcome::Refused(e) => Some(Refusal::Refused(e)),
        FaultOutcome::Busy => Some(Refusal::Busy),
        FaultOutcome::NotMine => None,
    };
    let info = &info;
    // Anything not resolved above: a test that runs under `catch_pgm` gets it back
    // (expected or not); the crash report is printed only when no test expected it.
    if interrupts::catching() {
        if !expected() {
            report(frame, "unexpected program interruption", info);
            if let Some(e) = refused {
                note_refusal(e);
            }
        }
        interrupts::unwind_to_catcher(frame, info);
        return;
    }
    report(frame, "unexpected program interruption", info);
    if let Some(e) = refused {
        note_refusal(e);
    }
    shutdown::crash("unexpected program interruption outside a test");
}

/// Why the memory manager did not resolve a fault.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Refused(crate::mm::error::MmError),
    Busy,
}

fn note_refusal(r: Refusal) {
    let indent = indent();
    let mut w = console::ConsoleWriter;
    let _ = match r {
        Refusal::Refused(e) => writeln!(w, "{indent}# memory manager refused the fault: {e:?}"),
        Refusal::Busy => writeln!(
            w,
            "{indent}# fault while the memory manager's lock was held (user memory touched inside vm::with?)"
        ),
    };
}

/// Runs `f` like [`catch_pgm`](crate::arch::interrupts::catch_pgm), and when an
/// interruption unwinds out of it, releases the kernel locks that `f` took and can no
/// longer release (its guards were in the abandoned frames): the memory manager's, the
/// host model's, the console's, the disk's.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, PgmInfo> {
    let held = [
        vm::locked(),
        crate::cmma::backend::model_locked(),
        console::locked(),
        crate::io::disk::locked(),
    ];
    let result = interrupts::catch_pgm(f);
    if result.is_err() {
        if !held[0] {
            vm::release_after_unwind();
        }
        if !held[1] {
            crate::cmma::backend::release_after_unwind();
        }
        if !held[2] {
            console::force_unlock();
        }
        if !held[3] {
            crate::io::disk::release_after_unwind();
        }
    }
    result
}

/// True while a test body waits for a program interruption inside `expect_pgm`.
fn expected() -> bool {
    EXPECTING.load(core::sync::atomic::Ordering::Relaxed)
}

static EXPECTING: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// Marks the program interruptions that arrive until the returned guard is dropped as
/// expected: they are not reported as crashes.
pub fn expecting() -> ExpectGuard {
    ExpectGuard(EXPECTING.swap(true, core::sync::atomic::Ordering::Relaxed))
}

/// Restores the previous expectation when dropped.
#[derive(Debug)]
pub struct ExpectGuard(bool);

impl Drop for ExpectGuard {
    fn drop(&mut self) {
        EXPECTING.store(self.0, core::sync::atomic::Ordering::Relaxed);
    }
}

/// Whether a program interruption may arrive while another is being handled: only an
/// ESSA the host model emulates (the memory manager's page-state hooks issue ESSA while
/// the handler resolves a fault).
pub fn may_nest(info: &PgmInfo) -> bool {
    use crate::arch::essa;
    use crate::cmma::backend::{self, Backend};
    info.code == 0x01
        && backend::current() == Backend::Model
        && essa::instruction_at(info.instruction_address())
            .and_then(essa::decode)
            .is_some()
}

/// A program interruption while handling one: nothing can be trusted any more.
pub fn fatal_nested_program_interruption(frame: &InterruptFrame, info: &PgmInfo) -> ! {
    report(
        frame,
        "program interruption inside the program-interruption handler",
        info,
    );
    shutdown::crash("nested program interruption");
}

/// An interruption of a class the kernel never enables, or an unknown code.
pub fn unexpected_interruption(kind: &str, code: u64, frame: &InterruptFrame) -> ! {
    console::force_unlock();
    let indent = indent();
    let _ = writeln!(
        console::ConsoleWriter,
        "{indent}# unexpected {kind} interruption: code 0x{code:x}"
    );
    registers(frame, indent);
    shutdown::crash("unexpected interruption");
}

/// Puts back what a test may have changed when it was cut short: the expectation flag
/// and the current address space. (Locks its body took are released by [`catch`]; DAT
/// mode and problem state come back with the resumed PSW.)
pub fn restore_kernel_state() {
    EXPECTING.store(false, core::sync::atomic::Ordering::Relaxed);
    vm::reset_address_space();
}

/// Diagnostics go inside the running test's subtest, or at top level.
fn indent() -> &'static str {
    if ktest::current::get().is_some() {
        SUBTEST_INDENT
    } else {
        ""
    }
}

fn report(frame: &InterruptFrame, what: &str, info: &PgmInfo) {
    console::force_unlock();
    let indent = indent();
    let mut w = console::ConsoleWriter;
    let _ = writeln!(
        w,
        "{indent}# {what}: code 0x{:04x} ilen {} at 0x{:x}",
        info.code,
        info.ilen,
        info.instruction_address()
    );
    let _ = writeln!(
        w,
        "{indent}# old psw: 0x{:016x} 0x{:016x} teid: 0x{:016x}",
        info.psw.mask, info.psw.addr, info.teid
    );
    if let Some(stack) = guard_page_hit(info) {
        let _ = writeln!(
            w,
            "{indent}# stack overflow: the {stack} stack ran into its guard page"
        );
    }
    registers(frame, indent);
}

/// The stack whose guard page the failing address lies in, for DAT exceptions.
pub fn guard_page_hit(info: &PgmInfo) -> Option<&'static str> {
    if !matches!(info.code, 0x04 | 0x10 | 0x11) {
        return None;
    }
    let page = info.teid & !0xfff;
    let guards = crate::arch::image::layout().stack_guards;
    ["boot", "program-check", "interruption"]
        .into_iter()
        .zip(guards)
        .find(|&(_, guard)| guard == page)
        .map(|(name, _)| name)
}

fn registers(frame: &InterruptFrame, indent: &str) {
    let mut w = console::ConsoleWriter;
    for (row, regs) in frame.gprs.chunks(4).enumerate() {
        let _ = writeln!(
            w,
            "{indent}# r{}-r{}: {:016x} {:016x} {:016x} {:016x}",
            row * 4,
            row * 4 + 3,
            regs[0],
            regs[1],
            regs[2],
            regs[3]
        );
    }
    let mode = if frame.psw.mask & psw_mask::PSTATE != 0 {
        "problem"
    } else {
        "supervisor"
    };
    let dat = if frame.psw.mask & psw_mask::DAT != 0 {
        "on"
    } else {
        "off"
    };
    let _ = writeln!(
        w,
        "{indent}# state: {mode}, DAT {dat}, cpu {}",
        cpu::cpu_address()
    );
}
