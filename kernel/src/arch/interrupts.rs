//! Interruption handlers and recovery from program interruptions.
//!
//! The entry stubs in `boot` save the interrupted context into an [`InterruptFrame`] and
//! call the `zhint_*_interrupt` functions below; whatever the frame holds when they return
//! is what the CPU resumes with. Policy (what a program interruption means) lives in
//! [`crate::trap`]; this module only decodes the lowcore and performs the two machine
//! operations policy can ask for: resume, or unwind to a recovery point set up by
//! [`catch_pgm`].

use super::cpu::{Psw, psw_mask};
use super::lowcore;
use core::arch::global_asm;
use core::sync::atomic::{AtomicPtr, Ordering};

/// The interrupted context, as laid out by the entry stubs in `boot/src/entry.rs`.
#[repr(C)]
#[derive(Debug)]
pub struct InterruptFrame {
    /// General registers 0-15.
    pub gprs: [u64; 16],
    /// The old PSW; the CPU resumes with it.
    pub psw: Psw,
    /// Floating-point registers 0-15 (LLVM may spill GPRs to them).
    pub fprs: [u64; 16],
    /// Floating-point control register.
    pub fpc: u32,
    _pad: u32,
}

const _: () = assert!(core::mem::size_of::<InterruptFrame>() == 280);
const _: () = assert!(core::mem::offset_of!(InterruptFrame, psw) == 128);
const _: () = assert!(core::mem::offset_of!(InterruptFrame, fpc) == 272);

/// What the CPU reported for one program interruption.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PgmInfo {
    /// Interruption code without the PER and transaction bits.
    pub code: u16,
    /// Length of the instruction in bytes (the ILC times two).
    pub ilen: u8,
    /// The old PSW (for suppressing exceptions it points after the instruction, for
    /// nullifying ones at it).
    pub psw: Psw,
    /// Translation-exception identification (valid for DAT and protection exceptions).
    pub teid: u64,
}

impl PgmInfo {
    /// Address of the instruction that caused the interruption.
    pub fn instruction_address(&self) -> u64 {
        if nullifies(self.code) {
            self.psw.addr
        } else {
            self.psw.addr.wrapping_sub(u64::from(self.ilen))
        }
    }
}

/// True for program interruptions that nullify (the old PSW points at the instruction,
/// so resuming retries it): DAT exceptions and the block-volatility exception.
pub fn nullifies(code: u16) -> bool {
    matches!(code, 0x10 | 0x11 | 0x1a | 0x38..=0x3b)
}

/// True for the program interruptions that store a translation-exception
/// identification: protection, segment and page translation, block volatility, and
/// the ASCE-type and region-translation exceptions.
pub fn stores_teid(code: u16) -> bool {
    matches!(code, 0x04 | 0x10 | 0x11 | 0x1a | 0x38..=0x3b)
}

/// Program-interruption handlers running now (1 inside the handler, 2 nested).
pub fn pgm_depth() -> u32 {
    PGM_DEPTH.load(Ordering::Relaxed)
}

/// Program-interruption handlers running (nested ones included).
static PGM_DEPTH: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// How deep program interruptions may nest: the handler itself may issue ESSA (the
/// memory manager's page-state hooks), which traps once more where the model emulates
/// it; that emulation issues nothing.
const MAX_PGM_DEPTH: u32 = 2;

#[unsafe(no_mangle)]
extern "C" fn zhint_pgm_interrupt(frame: &mut InterruptFrame) {
    let code = lowcore::pgm_code() & 0x7f;
    let info = PgmInfo {
        code,
        ilen: lowcore::pgm_ilen(),
        psw: frame.psw,
        // Only DAT, protection and block-volatility exceptions store a TEID; for
        // any other code the lowcore still holds an earlier fault's, which must not
        // be mistaken for this one's.
        teid: if stores_teid(code) {
            lowcore::trans_exc_code()
        } else {
            0
        },
    };
    let depth = PGM_DEPTH.fetch_add(1, Ordering::Relaxed);
    if depth >= MAX_PGM_DEPTH || (depth > 0 && !crate::trap::may_nest(&info)) {
        crate::trap::fatal_nested_program_interruption(frame, &info);
    }
    crate::trap::program_interruption(frame, &info);
    PGM_DEPTH.fetch_sub(1, Ordering::Relaxed);
}

#[unsafe(no_mangle)]
extern "C" fn zhint_ext_interrupt(frame: &mut InterruptFrame) {
    let code = lowcore::ext_code();
    if code == 0x2401 {
        super::sclp::service_signal(lowcore::ext_param());
    } else {
        crate::trap::unexpected_interruption("external", u64::from(code), frame);
    }
    // The interruption ended an enabled wait (`cpu::enabled_wait_for_external`): resume
    // after it, disabled, instead of waiting again.
    frame.psw.mask &= !(psw_mask::WAIT | psw_mask::EXT | psw_mask::IO);
}

/// SVC 0 leaves problem state (see [`leave_problem_state`]); anything else is unexpected.
#[unsafe(no_mangle)]
extern "C" fn zhint_svc_interrupt(frame: &mut InterruptFrame) {
    match lowcore::svc_code() {
        0 => frame.psw.mask &= !psw_mask::PSTATE,
        code => crate::trap::unexpected_interruption("supervisor-call", u64::from(code), frame),
    }
}

#[unsafe(no_mangle)]
extern "C" fn zhint_mcck_interrupt(frame: &mut InterruptFrame) {
    crate::trap::unexpected_interruption("machine-check", lowcore::mcck_code(), frame);
}

/// Every I/O interruption: status collected, then handed to the registered handler
/// ([`super::css`]).
#[unsafe(no_mangle)]
extern "C" fn zhint_io_interrupt(frame: &mut InterruptFrame) {
    super::css::io_interruption(frame);
}

/// Callee-saved state captured by `zhint_call_protected`: r6-r15 at its entry
/// (r14 = return address, r15 = caller's stack pointer) and f8-f15.
#[repr(C)]
#[derive(Debug, Default)]
struct RecoveryPoint {
    gprs: [u64; 10],
    fprs: [u64; 8],
}

/// One active [`catch_pgm`] scope; they nest through `outer`.
struct Catcher {
    point: RecoveryPoint,
    caught: Option<PgmInfo>,
    outer: *mut Catcher,
}

/// The innermost active [`catch_pgm`] scope (null: none).
static CATCHER: AtomicPtr<Catcher> = AtomicPtr::new(core::ptr::null_mut());

// zhint_call_protected(point: *mut RecoveryPoint, f: extern "C" fn(*mut u8), arg: *mut u8) -> u64
// Returns 0 when `f` returns; [`unwind_to_catcher`] makes it return 1 instead.
global_asm!(
    r#"
    .section .text.zhint_call_protected, "ax"
    .globl zhint_call_protected
zhint_call_protected:
    stmg    %r6, %r15, 0(%r2)
    std     %f8, 80(%r2)
    std     %f9, 88(%r2)
    std     %f10, 96(%r2)
    std     %f11, 104(%r2)
    std     %f12, 112(%r2)
    std     %f13, 120(%r2)
    std     %f14, 128(%r2)
    std     %f15, 136(%r2)
    stmg    %r6, %r15, 48(%r15)
    lgr     %r1, %r15
    aghi    %r15, -160
    stg     %r1, 0(%r15)
    lgr     %r2, %r4
    basr    %r14, %r3
    lmg     %r6, %r15, 160+48(%r15)
    lghi    %r2, 0
    br      %r14
"#
);

unsafe extern "C" {
    fn zhint_call_protected(
        point: *mut RecoveryPoint,
        f: extern "C" fn(*mut u8),
        arg: *mut u8,
    ) -> u64;
}

/// Runs `f`; a program interruption that policy does not resolve unwinds back here and
/// is returned as `Err`. Nested scopes catch innermost first.
///
/// Unwinding skips destructors of `f`'s locals (like a C `longjmp`): code run under
/// `catch_pgm` must not hold locks or own resources across a possible interruption.
pub fn catch_pgm<F: FnOnce() -> R, R>(f: F) -> Result<R, PgmInfo> {
    struct Call<F, R> {
        f: Option<F>,
        result: Option<R>,
    }
    extern "C" fn trampoline<F: FnOnce() -> R, R>(arg: *mut u8) {
        // SAFETY: `arg` is the `Call` on `catch_pgm`'s stack, alive for this call.
        let call = unsafe { &mut *(arg as *mut Call<F, R>) };
        if let Some(f) = call.f.take() {
            call.result = Some(f());
        }
    }
    let mut call = Call {
        f: Some(f),
        result: None,
    };
    let mut catcher = Catcher {
        point: RecoveryPoint::default(),
        caught: None,
        outer: CATCHER.load(Ordering::Relaxed),
    };
    CATCHER.store(&mut catcher, Ordering::Relaxed);
    // SAFETY: the recovery point and the call record live on this stack frame until
    // `zhint_call_protected` returns, normally or through `unwind_to_catcher`, which
    // restores exactly the callee-saved registers captured at its entry.
    let unwound = unsafe {
        zhint_call_protected(
            &mut catcher.point,
            trampoline::<F, R>,
            &mut call as *mut Call<F, R> as *mut u8,
        )
    };
    // SAFETY: read back through a volatile load: the handler wrote `caught` behind the
    // compiler's back while this frame was suspended.
    let caught = unsafe { core::ptr::read_volatile(&catcher.caught) };
    CATCHER.store(catcher.outer, Ordering::Relaxed);
    match (unwound, caught, call.result) {
        (0, _, Some(result)) => Ok(result),
        (_, Some(info), _) => Err(info),
        _ => {
            unreachable!("zhint_call_protected returned without a result or a caught interruption")
        }
    }
}

/// True when a [`catch_pgm`] scope is active.
pub fn catching() -> bool {
    !CATCHER.load(Ordering::Relaxed).is_null()
}

/// Makes the interrupted context resume as a return from the innermost
/// `zhint_call_protected` with value 1, recording `info` for [`catch_pgm`]. Returns false
/// (and changes nothing) when no scope is active.
pub fn unwind_to_catcher(frame: &mut InterruptFrame, info: &PgmInfo) -> bool {
    let catcher = CATCHER.load(Ordering::Relaxed);
    if catcher.is_null() {
        return false;
    }
    // SAFETY: a non-null CATCHER points at a live `Catcher` on a stack frame below the
    // interrupted one (scopes are strictly nested and unregistered before returning).
    let catcher = unsafe { &mut *catcher };
    catcher.caught = Some(*info);
    frame.gprs[6..16].copy_from_slice(&catcher.point.gprs);
    frame.fprs[8..16].copy_from_slice(&catcher.point.fprs);
    frame.gprs[2] = 1;
    frame.psw = Psw {
        mask: (frame.psw.mask & psw_mask::DAT) | psw_mask::KERNEL,
        addr: catcher.point.gprs[8], // r14 at entry: the return address
    };
    true
}

/// Switches the CPU to problem state (for tests of privileged-operation exceptions).
/// Undo it with [`leave_problem_state`].
pub fn enter_problem_state() {
    // SAFETY: continues at the next instruction with only the problem-state bit added;
    // the kernel stays mapped and SVC 0 returns to supervisor state.
    unsafe { super::cpu::continue_with_mask(super::cpu::current_psw_mask() | psw_mask::PSTATE) };
}

/// Returns to supervisor state with SVC 0 (handled by `zhint_svc_interrupt`).
pub fn leave_problem_state() {
    // SAFETY: SVC 0 only clears the problem-state bit of the resumed PSW.
    unsafe { core::arch::asm!("svc 0", options(nostack)) };
}
