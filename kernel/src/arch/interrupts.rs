//! Interruption handlers and recovery from program interruptions.
//!
//! The entry stubs in `boot` save the interrupted context into an [`InterruptFrame`] and
//! call the `zhint_*_interrupt` functions below; whatever the frame holds when they return
//! is what the CPU resumes with. This module decodes the lowcore, handles what belongs to
//! the machine layer itself (the SCLP's service signal, the SMP signals of
//! [`super::smp`], SVC 0), and hands everything else to the [`Handlers`] the kernel
//! registered at start-up: what an interruption *means* is policy, which this layer does
//! not know. It also performs the two machine operations policy can ask for: resume, or
//! unwind to a recovery point set up by [`catch_pgm`].
//!
//! Everything here is per CPU: each CPU has its own nesting depth and its own stack of
//! [`catch_pgm`] scopes.

use super::cpu::{Psw, psw_mask};
use super::lowcore;
use super::percpu::{MAX_CPUS, PerCpu};
use core::arch::global_asm;
use core::sync::atomic::{AtomicPtr, AtomicU32, Ordering};

/// What the kernel does with the interruptions this layer does not handle itself.
#[derive(Clone, Copy, Debug)]
pub struct Handlers {
    /// A program interruption. `depth` is 1, or more when it arrived while the handler
    /// for an earlier one was still running on this CPU.
    pub program: fn(&mut InterruptFrame, &PgmInfo, depth: u32),
    /// An external interruption with this code (not a service signal, external call or
    /// emergency signal).
    pub external: fn(&mut InterruptFrame, code: u16),
    /// An interruption of a class the kernel never enables: its kind ("machine-check",
    /// "I/O", "supervisor-call") and code.
    pub unexpected: fn(kind: &'static str, code: u64, &mut InterruptFrame),
}

static HANDLERS: spin::Once<Handlers> = spin::Once::new();

/// Installs the kernel's handlers; the first call wins. Before it, a program or
/// unexpected interruption ends in a disabled wait at [`UNHANDLED_WAIT`].
pub fn register(handlers: Handlers) {
    HANDLERS.call_once(|| handlers);
}

/// Disabled-wait address when an interruption arrives before [`register`].
pub const UNHANDLED_WAIT: u64 = 0x0bad_0e00;

fn handlers() -> &'static Handlers {
    match HANDLERS.get() {
        Some(h) => h,
        None => super::cpu::disabled_wait(UNHANDLED_WAIT),
    }
}

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

/// Program-interruption handlers running now on this CPU (1 inside the handler, 2
/// nested).
pub fn pgm_depth() -> u32 {
    PGM_DEPTH.get().load(Ordering::Relaxed)
}

/// Program-interruption handlers running (nested ones included), per CPU.
static PGM_DEPTH: PerCpu<AtomicU32> = PerCpu::new([const { AtomicU32::new(0) }; MAX_CPUS]);

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
    let depth = PGM_DEPTH.get();
    let nested = depth.fetch_add(1, Ordering::Relaxed) + 1;
    (handlers().program)(frame, &info, nested);
    depth.fetch_sub(1, Ordering::Relaxed);
}

#[unsafe(no_mangle)]
extern "C" fn zhint_ext_interrupt(frame: &mut InterruptFrame) {
    let code = lowcore::ext_code();
    match code {
        0x2401 => super::sclp::service_signal(lowcore::ext_param()),
        0x1201 | 0x1202 => super::smp::signal_received(code, lowcore::ext_cpu_address()),
        _ => (handlers().external)(frame, code),
    }
    // The interruption ended an enabled wait (`cpu::enabled_wait_for_external`): resume
    // after it, disabled, instead of waiting again; the waiter restores its own mask.
    if frame.psw.mask & psw_mask::WAIT != 0 {
        frame.psw.mask &= !(psw_mask::WAIT | psw_mask::EXT | psw_mask::IO);
    }
}

/// SVC 0 leaves problem state (see [`leave_problem_state`]); anything else is unexpected.
#[unsafe(no_mangle)]
extern "C" fn zhint_svc_interrupt(frame: &mut InterruptFrame) {
    match lowcore::svc_code() {
        0 => frame.psw.mask &= !psw_mask::PSTATE,
        code => (handlers().unexpected)("supervisor-call", u64::from(code), frame),
    }
}

#[unsafe(no_mangle)]
extern "C" fn zhint_mcck_interrupt(frame: &mut InterruptFrame) {
    (handlers().unexpected)("machine-check", lowcore::mcck_code(), frame);
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

/// The innermost active [`catch_pgm`] scope of each CPU (null: none).
static CATCHER: PerCpu<AtomicPtr<Catcher>> =
    PerCpu::new([const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS]);

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

    # zhint_resume_recovery(point: *const RecoveryPoint) -> !: returns 1 from the
    # zhint_call_protected that captured `point`, with its caller's registers.
    .section .text.zhint_resume_recovery, "ax"
    .globl zhint_resume_recovery
zhint_resume_recovery:
    ld      %f8, 80(%r2)
    ld      %f9, 88(%r2)
    ld      %f10, 96(%r2)
    ld      %f11, 104(%r2)
    ld      %f12, 112(%r2)
    ld      %f13, 120(%r2)
    ld      %f14, 128(%r2)
    ld      %f15, 136(%r2)
    lmg     %r6, %r15, 0(%r2)
    lghi    %r2, 1
    br      %r14
"#
);

unsafe extern "C" {
    fn zhint_call_protected(
        point: *mut RecoveryPoint,
        f: extern "C" fn(*mut u8),
        arg: *mut u8,
    ) -> u64;
    fn zhint_resume_recovery(point: *const RecoveryPoint) -> !;
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
    let entry_mask = super::cpu::current_psw_mask();
    let mut catcher = Catcher {
        point: RecoveryPoint::default(),
        caught: None,
        outer: CATCHER.get().load(Ordering::Relaxed),
    };
    CATCHER.get().store(&mut catcher, Ordering::Relaxed);
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
    CATCHER.get().store(catcher.outer, Ordering::Relaxed);
    if unwound != 0 {
        // Resume with the PSW mask the scope was entered with (DAT, external
        // interruptions), whatever state the abandoned code was in.
        // SAFETY: the mask this very code ran with a moment ago.
        unsafe { super::cpu::continue_with_mask(entry_mask) };
    }
    match (unwound, caught, call.result) {
        (0, _, Some(result)) => Ok(result),
        (_, Some(info), _) => Err(info),
        _ => {
            unreachable!("zhint_call_protected returned without a result or a caught interruption")
        }
    }
}

/// True when a [`catch_pgm`] scope is active on this CPU.
pub fn catching() -> bool {
    !CATCHER.get().load(Ordering::Relaxed).is_null()
}

/// Forgets this CPU's nesting depth and recovery scopes: a CPU restarted after the
/// watchdog stopped it starts afresh (its old stack frames are abandoned).
pub(super) fn reset_this_cpu() {
    PGM_DEPTH.get().store(0, Ordering::Relaxed);
    CATCHER
        .get()
        .store(core::ptr::null_mut(), Ordering::Relaxed);
}

/// Not a program-interruption code: a [`catch_pgm`] scope left through [`abandon`] or
/// [`unwind_to_catcher`] for a reason of the kernel's (a watchdog, an aborted multi-CPU
/// test), not because of an interruption.
pub const ABANDONED: u16 = 0;

/// Leaves the innermost [`catch_pgm`] scope of this CPU at once, which returns
/// `Err(info)`; like an unwinding program interruption, it skips the destructors in
/// between. Panics when no scope is active.
pub fn abandon(info: PgmInfo) -> ! {
    let catcher = CATCHER.get().load(Ordering::Relaxed);
    assert!(!catcher.is_null(), "abandon outside a catch_pgm scope");
    // SAFETY: a non-null CATCHER points at a live `Catcher` on a stack frame below this
    // one (scopes are strictly nested and unregistered before returning), and
    // `zhint_resume_recovery` returns from its `zhint_call_protected` with the
    // registers captured there, abandoning every frame in between.
    unsafe {
        (*catcher).caught = Some(info);
        zhint_resume_recovery(&(*catcher).point)
    }
}

/// Makes the interrupted context resume as a return from the innermost
/// `zhint_call_protected` with value 1, recording `info` for [`catch_pgm`]. Returns false
/// (and changes nothing) when no scope is active.
pub fn unwind_to_catcher(frame: &mut InterruptFrame, info: &PgmInfo) -> bool {
    let catcher = CATCHER.get().load(Ordering::Relaxed);
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

/// Runs `f` with external interruptions enabled on this CPU (for the subclasses its CR0
/// enables: the SMP signals, and the clock comparator while [`arm_timer`] is armed).
/// Whatever interrupts `f` runs on the interruption stack and returns to it.
pub fn with_external_enabled<R>(f: impl FnOnce() -> R) -> R {
    with_external(true, f)
}

/// Runs `f` with external interruptions disabled on this CPU: no signal and no
/// clock-comparator tick interrupts it (they stay pending). If a program interruption
/// unwinds out of `f`, the catcher's PSW applies instead.
pub fn with_external_disabled<R>(f: impl FnOnce() -> R) -> R {
    with_external(false, f)
}

fn with_external<R>(enabled: bool, f: impl FnOnce() -> R) -> R {
    let before = super::cpu::current_psw_mask();
    let during = if enabled {
        before | psw_mask::EXT
    } else {
        before & !psw_mask::EXT
    };
    // SAFETY: changes only the external mask: every external interruption the CR0
    // subclasses allow has a handler, and a disabled one stays pending.
    unsafe { super::cpu::continue_with_mask(during) };
    let result = f();
    // SAFETY: back to the mask `f` was entered with.
    unsafe { super::cpu::continue_with_mask(before) };
    result
}

/// Makes a clock-comparator interruption (0x1004) pending on this CPU once the TOD clock
/// passes `deadline`; taken where external interruptions are enabled, and handed to the
/// kernel's external handler, which must [`disarm_timer`] or arm it anew.
pub fn arm_timer(deadline: u64) {
    super::cpu::set_clock_comparator(deadline);
    // SAFETY: the subclass only allows an interruption the kernel handles.
    unsafe { super::cpu::update_cr0(super::cpu::cr0::CLOCK_COMPARATOR, 0) };
}

/// Withdraws [`arm_timer`] on this CPU.
pub fn disarm_timer() {
    // SAFETY: removing a subclass only masks an interruption.
    unsafe { super::cpu::update_cr0(0, super::cpu::cr0::CLOCK_COMPARATOR) };
    super::cpu::set_clock_comparator(u64::MAX);
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
