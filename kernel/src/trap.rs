//! What interruptions mean: the policy behind the handlers in [`crate::arch::interrupts`].
//!
//! A program interruption is, in order: an ESSA to emulate against the host model, a
//! DAT or discard fault for the memory manager, an interruption a test expected (unwound
//! to its [`catch_pgm`](crate::arch::interrupts::catch_pgm) scope), or a crash.

use crate::arch::cpu::{self, psw_mask};
use crate::arch::interrupts::{self, InterruptFrame, PgmInfo};
use crate::arch::percpu::{MAX_CPUS, PerCpu, this_cpu};
use crate::vm::{self, FaultOutcome};
use crate::{console, shutdown};
use core::fmt::Write;
use core::sync::atomic::{AtomicBool, Ordering};

/// How deep program interruptions may nest: the handler itself may issue ESSA (the
/// memory manager's page-state hooks), which traps once more where the model emulates
/// it; that emulation issues nothing.
const MAX_PGM_DEPTH: u32 = 2;

/// Handles one program interruption (`depth` > 1: it arrived inside the handler of an
/// earlier one on this CPU); on return the CPU resumes with `frame`.
pub fn program_interruption(frame: &mut InterruptFrame, info: &PgmInfo, depth: u32) {
    use crate::cmma::backend::{self, Emulation};
    if depth > MAX_PGM_DEPTH || (depth > 1 && !may_nest(info)) {
        fatal_nested_program_interruption(frame, info);
    }
    let mut info = *info;
    match backend::emulate(frame, &info) {
        Emulation::Done => return,
        Emulation::Raise(code) => info.code = code,
        Emulation::NotEssa => {}
    }
    if depth > 1 {
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
            report(frame, "unexpected program interruption", info, refused);
        }
        interrupts::unwind_to_catcher(frame, info);
        return;
    }
    report(frame, "unexpected program interruption", info, refused);
    shutdown::crash("unexpected program interruption outside a test");
}

/// The handlers this module gives the machine layer (see
/// [`interrupts::register`](crate::arch::interrupts::register)); `external` is the
/// kernel's dispatcher of external-interruption codes.
pub fn handlers(external: fn(&mut InterruptFrame, u16)) -> crate::arch::interrupts::Handlers {
    crate::arch::interrupts::Handlers {
        program: program_interruption,
        external,
        unexpected: |kind, code, frame| unexpected_interruption(kind, code, frame),
    }
}

/// Why the memory manager did not resolve a fault.
#[derive(Clone, Copy, Debug)]
enum Refusal {
    Refused(crate::mm::error::MmError),
    Busy,
}

fn note_refusal(w: &mut dyn Write, indent: &str, r: Refusal) {
    let _ = match r {
        Refusal::Refused(e) => writeln!(w, "{indent}# memory manager refused the fault: {e:?}"),
        Refusal::Busy => writeln!(
            w,
            "{indent}# fault while the memory manager's lock was held (user memory touched inside vm::with?)"
        ),
    };
}

/// Runs `f` like [`catch_pgm`](crate::arch::interrupts::catch_pgm), and when an
/// interruption unwinds out of it, releases the kernel locks that `f` took on this CPU
/// and can no longer release (its guards were in the abandoned frames): the memory
/// manager's, the host model's, the console's, the disk's. A lock this CPU held before
/// `f` belongs to the caller and stays held; one another CPU holds is not this CPU's to
/// release.
pub fn catch<R>(f: impl FnOnce() -> R) -> Result<R, PgmInfo> {
    let held = [
        vm::held_here(),
        crate::cmma::backend::model_held_here(),
        console::held_here(),
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
            console::release_held_here();
        }
        if !held[3] {
            crate::io::disk::release_after_unwind();
        }
    }
    result
}

/// Releases the kernel locks CPU `cpu` holds: it was stopped (the multi-CPU tests'
/// watchdog), so it will never release them itself. Takes no lock.
pub fn release_locks_held_by(cpu: usize) {
    vm::release_held_by(cpu);
    crate::cmma::backend::release_held_by(cpu);
    console::CONSOLE.release_held_by(cpu);
    crate::arch::heap::release_held_by(cpu);
}

/// True while a test body on this CPU waits for a program interruption inside
/// `expect_pgm`.
fn expected() -> bool {
    EXPECTING.get().load(Ordering::Relaxed)
}

static EXPECTING: PerCpu<AtomicBool> = PerCpu::new([const { AtomicBool::new(false) }; MAX_CPUS]);

/// Marks the program interruptions that arrive on this CPU until the returned guard is
/// dropped as expected: they are not reported as crashes.
pub fn expecting() -> ExpectGuard {
    ExpectGuard(EXPECTING.get().swap(true, Ordering::Relaxed))
}

/// Restores the previous expectation when dropped.
#[derive(Debug)]
pub struct ExpectGuard(bool);

impl Drop for ExpectGuard {
    fn drop(&mut self) {
        EXPECTING.get().store(self.0, Ordering::Relaxed);
    }
}

/// Whether a program interruption may arrive while another is being handled: only an
/// ESSA the host model emulates (the memory manager's page-state hooks issue ESSA while
/// the handler resolves a fault).
fn may_nest(info: &PgmInfo) -> bool {
    use crate::arch::essa;
    use crate::cmma::backend::{self, Backend};
    info.code == 0x01
        && backend::current() == Backend::Model
        && essa::instruction_at(info.instruction_address())
            .and_then(essa::decode)
            .is_some()
}

/// A program interruption while handling one: nothing can be trusted any more.
fn fatal_nested_program_interruption(frame: &InterruptFrame, info: &PgmInfo) -> ! {
    report(
        frame,
        "program interruption inside the program-interruption handler",
        info,
        None,
    );
    shutdown::crash("nested program interruption");
}

/// An interruption of a class the kernel never enables, or an unknown code.
pub fn unexpected_interruption(kind: &str, code: u64, frame: &InterruptFrame) -> ! {
    {
        let mut w = console::lock_for_report();
        let indent = console::report_indent();
        let _ = writeln!(
            w,
            "{indent}# unexpected {kind} interruption: code 0x{code:x}"
        );
        registers(&mut *w, frame, indent);
    }
    shutdown::crash("unexpected interruption");
}

/// Puts back what a test may have changed on this CPU when it was cut short: the
/// expectation flag and the current address space. (Locks its body took are released
/// by [`catch`]; DAT mode and problem state come back with the resumed PSW.)
pub fn restore_kernel_state() {
    EXPECTING.get().store(false, Ordering::Relaxed);
    vm::reset_address_space();
}

/// Crash reports of program interruptions printed so far (expected ones print none).
pub fn reports_printed() -> u64 {
    REPORTS.load(Ordering::Relaxed)
}

static REPORTS: core::sync::atomic::AtomicU64 = core::sync::atomic::AtomicU64::new(0);

fn report(frame: &InterruptFrame, what: &str, info: &PgmInfo, refused: Option<Refusal>) {
    REPORTS.fetch_add(1, Ordering::Relaxed);
    let mut w = console::lock_for_report();
    let w: &mut dyn Write = &mut *w;
    let indent = console::report_indent();
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
    if let Some((cpu, stack)) = guard_page_hit(info) {
        let _ = writeln!(
            w,
            "{indent}# stack overflow: cpu {cpu}'s {stack} stack ran into its guard page"
        );
    }
    registers(w, frame, indent);
    if let Some(r) = refused {
        note_refusal(w, indent, r);
    }
}

/// The CPU and the stack whose guard page the failing address lies in, for DAT
/// exceptions.
pub fn guard_page_hit(info: &PgmInfo) -> Option<(usize, &'static str)> {
    if !matches!(info.code, 0x04 | 0x10 | 0x11) {
        return None;
    }
    let page = info.teid & !0xfff;
    let guards = crate::arch::image::layout().stack_guards;
    ["boot", "program-check", "interruption"]
        .into_iter()
        .zip(guards)
        .find(|&(_, guard)| guard == page)
        .map(|(name, _)| (0, name))
        .or_else(|| crate::arch::smp::stack_guard_of(page).map(|(cpu, kind)| (cpu, kind.name())))
}

fn registers(w: &mut dyn Write, frame: &InterruptFrame, indent: &str) {
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
        "{indent}# state: {mode}, DAT {dat}, cpu {} (address {})",
        this_cpu(),
        cpu::cpu_address()
    );
}
