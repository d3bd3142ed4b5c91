//! PSW, control registers and the CPU-control instructions: SIGP, STAP, STFLE, STSI,
//! STCK, EPSW, LPSWE (waits).

use core::arch::asm;

/// A 128-bit z/Architecture PSW as stored in the lowcore.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Psw {
    /// Bits 0-63: masks, key, state, condition code, addressing mode.
    pub mask: u64,
    /// Bits 64-127: instruction address.
    pub addr: u64,
}

/// PSW mask bits (z/Architecture PoP, "Program-Status Word").
pub mod psw_mask {
    /// DAT mode (bit 5).
    pub const DAT: u64 = 0x0400_0000_0000_0000;
    /// I/O interruptions enabled (bit 6).
    pub const IO: u64 = 0x0200_0000_0000_0000;
    /// External interruptions enabled (bit 7).
    pub const EXT: u64 = 0x0100_0000_0000_0000;
    /// Machine checks enabled (bit 13).
    pub const MCHECK: u64 = 0x0004_0000_0000_0000;
    /// Wait state (bit 14).
    pub const WAIT: u64 = 0x0002_0000_0000_0000;
    /// Problem state (bit 15).
    pub const PSTATE: u64 = 0x0001_0000_0000_0000;
    /// Extended addressing (bit 31).
    pub const EA: u64 = 0x0000_0001_0000_0000;
    /// Basic addressing (bit 32); with EA: 64-bit mode.
    pub const BA: u64 = 0x0000_0000_8000_0000;
    /// The kernel's PSW: 64-bit, supervisor, key 0, all interruptions disabled.
    pub const KERNEL: u64 = EA | BA;
}

/// Reads the current PSW mask with EXTRACT PSW (the address half is not meaningful).
pub fn current_psw_mask() -> u64 {
    let (hi, lo): (u64, u64);
    // SAFETY: EPSW only reads PSW bits into two registers. Both must avoid r0: an R2
    // field of 0 means "no second register" and leaves bits 32-63 unstored
    // (`reg_addr` is the class without r0).
    unsafe {
        asm!("epsw {hi}, {lo}", hi = out(reg_addr) hi, lo = out(reg_addr) lo, options(nomem, nostack));
    }
    ((hi & 0xffff_ffff) << 32) | (lo & 0xffff_ffff)
}

/// Reads control register `N`.
pub fn read_cr<const N: u8>() -> u64 {
    let mut value = 0u64;
    // SAFETY: STCTG stores one control register to a local variable.
    unsafe {
        asm!("stctg %c{n}, %c{n}, 0({p})", n = const N, p = in(reg_addr) &mut value, options(nostack));
    }
    value
}

/// Stores control registers 0-15.
pub fn store_control_registers() -> [u64; 16] {
    let mut crs = [0u64; 16];
    // SAFETY: STCTG stores the sixteen control registers into the local array.
    unsafe {
        asm!("stctg %c0, %c15, 0({p})", p = in(reg_addr) crs.as_mut_ptr(), options(nostack));
    }
    crs
}

/// Writes control register `N`.
///
/// # Safety
/// Control registers govern DAT (CR1, CR7, CR13), interruption subclasses (CR0, CR6,
/// CR14) and protection; the caller must keep the machine state consistent with them.
pub unsafe fn write_cr<const N: u8>(value: u64) {
    // SAFETY: the caller guarantees the new value is consistent; LCTLG reads a local.
    unsafe {
        asm!("lctlg %c{n}, %c{n}, 0({p})", n = const N, p = in(reg_addr) &value, options(nostack));
    }
}

/// CR0 bits used by the kernel.
pub mod cr0 {
    /// Low-address protection (bit 35).
    pub const LOW_ADDRESS_PROTECTION: u64 = 0x0000_0000_1000_0000;
    /// AFP-register control (bit 45).
    pub const AFP: u64 = 0x0000_0000_0004_0000;
    /// Emergency-signal subclass mask (bit 49).
    pub const EMERGENCY_SIGNAL: u64 = 0x0000_0000_0000_4000;
    /// External-call subclass mask (bit 50).
    pub const EXTERNAL_CALL: u64 = 0x0000_0000_0000_2000;
    /// Clock-comparator subclass mask (bit 52).
    pub const CLOCK_COMPARATOR: u64 = 0x0000_0000_0000_0800;
    /// Service-signal subclass mask (bit 54).
    pub const SERVICE_SIGNAL: u64 = 0x0000_0000_0000_0200;
}

/// Sets the CR0 bits in `set` and clears those in `clear` on this CPU; returns the old
/// CR0.
///
/// # Safety
/// As for [`write_cr`]: the new value must keep the machine state consistent.
pub unsafe fn update_cr0(set: u64, clear: u64) -> u64 {
    let old = read_cr::<0>();
    // SAFETY: the caller vouches for the bits it changes.
    unsafe { write_cr::<0>((old & !clear) | set) };
    old
}

/// STORE CPU ADDRESS.
pub fn cpu_address() -> u16 {
    let mut addr = 0u16;
    // SAFETY: STAP stores the 16-bit CPU address into a local variable.
    unsafe { asm!("stap 0({p})", p = in(reg_addr) &mut addr, options(nostack)) };
    addr
}

/// STORE PREFIX: this CPU's prefix (the absolute address of its lowcore).
pub fn prefix() -> u64 {
    let mut prefix = 0u32;
    // SAFETY: STPX stores the 32-bit prefix register into a local variable.
    unsafe { asm!("stpx 0({p})", p = in(reg_addr) &mut prefix, options(nostack)) };
    u64::from(prefix)
}

/// SIGP orders used by the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SigpOrder {
    /// Sense the addressed CPU's status.
    Sense = 1,
    /// External call (external interruption 0x1202); one may be pending per target.
    ExternalCall = 2,
    /// Emergency signal (external interruption 0x1201); one pending per sender.
    EmergencySignal = 3,
    /// Stop the addressed CPU.
    Stop = 5,
    /// Restart: the addressed CPU takes a restart interruption (restart new PSW).
    Restart = 6,
    /// Initial CPU reset: PSW, prefix and control registers to their reset values.
    InitialCpuReset = 11,
    /// Set the prefix of a stopped CPU (parameter: the new lowcore's address).
    SetPrefix = 13,
    /// Store the status of a stopped CPU at the address in the parameter.
    StoreStatusAtAddress = 14,
    /// Set the architectural mode of all CPUs.
    SetArchitecture = 18,
}

/// SIGP status bits (stored with condition code 1).
pub mod sigp_status {
    /// The order is not implemented.
    pub const INVALID_ORDER: u32 = 0x0000_0002;
    /// The CPU is in the check-stop state.
    pub const CHECK_STOP: u32 = 0x0000_0010;
    /// The CPU is stopped.
    pub const STOPPED: u32 = 0x0000_0040;
    /// An external call is already pending at the CPU.
    pub const EXT_CALL_PENDING: u32 = 0x0000_0080;
    /// The parameter is not valid (e.g. a prefix outside storage).
    pub const INVALID_PARAMETER: u32 = 0x0000_0100;
    /// The CPU is not in a state the order allows (e.g. SET PREFIX while operating).
    pub const INCORRECT_STATE: u32 = 0x0000_0200;
}

/// What a SIGP order came back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SigpResult {
    /// Condition code 0: accepted.
    Accepted,
    /// Condition code 1: not accepted, or done with status (see [`sigp_status`]).
    Status(u32),
    /// Condition code 3: no such CPU.
    NotOperational,
}

/// SIGP that retries while the target is busy (condition code 2: QEMU TCG answers it to
/// any SIGP that meets another CPU's SIGP in progress, and while an order is still
/// pending at the target).
///
/// # Safety
/// As for [`sigp`].
pub unsafe fn sigp_retry(cpu: u16, order: SigpOrder, parameter: u64) -> SigpResult {
    loop {
        // SAFETY: the caller accepts the effect of the order.
        match unsafe { sigp(cpu, order, parameter) } {
            (0, _) => return SigpResult::Accepted,
            (1, status) => return SigpResult::Status(status),
            (2, _) => core::hint::spin_loop(),
            _ => return SigpResult::NotOperational,
        }
    }
}

/// SIGNAL PROCESSOR: returns the condition code and the status word (valid for CC 1).
///
/// # Safety
/// Orders such as STOP change the state of CPUs, possibly the current one.
pub unsafe fn sigp(cpu: u16, order: SigpOrder, parameter: u64) -> (u8, u32) {
    let cc: u64;
    let mut status = parameter;
    // SAFETY: the caller accepts the effect of the order; SIGP only touches r1 (status).
    unsafe {
        asm!(
            "sigp %r1, {cpu}, 0({order})",
            "ipm {cc}",
            "srl {cc}, 28",
            // An odd R1: SIGP takes the parameter from R1 itself (from R1 + 1 when even).
            inout("r1") status,
            cpu = in(reg) u64::from(cpu),
            order = in(reg_addr) order as u64,
            cc = out(reg) cc,
            options(nostack),
        );
    }
    (cc as u8, status as u32)
}

/// Stops this CPU with SIGP STOP. When it is the last running CPU, QEMU exits with 0.
pub fn stop_self() -> ! {
    let me = cpu_address();
    loop {
        // SAFETY: stopping ourselves is the intended end of the run.
        unsafe { sigp(me, SigpOrder::Stop, 0) };
    }
}

/// Loads a disabled-wait PSW whose address carries `code`. On QEMU an address ending in
/// 0xfff is a clean shutdown; anything else is reported as a guest panic.
pub fn disabled_wait(code: u64) -> ! {
    let psw = Psw {
        mask: psw_mask::KERNEL | psw_mask::WAIT,
        addr: code,
    };
    // SAFETY: loading a disabled wait PSW ends execution on this CPU by design.
    unsafe { asm!("lpswe 0({p})", p = in(reg_addr) &psw, options(noreturn)) }
}

/// Waits with external interruptions enabled until one arrives (of a subclass this CPU's
/// CR0 enables). The external handler clears WAIT and EXT in the old PSW, so execution
/// resumes here; the PSW mask is then what it was before the wait.
pub fn enabled_wait_for_external() {
    let before = current_psw_mask();
    // SAFETY: the wait PSW adds only EXT and WAIT; the external handler restores all
    // registers and clears both bits, so execution continues after it unchanged.
    unsafe { continue_with_mask(before | psw_mask::EXT | psw_mask::WAIT) };
    if before & psw_mask::EXT != 0 {
        // SAFETY: back to the mask the caller ran with.
        unsafe { continue_with_mask(before) };
    }
}

/// Waits for a signal from another CPU (external call or emergency signal) alone: the
/// other subclasses the kernel uses are masked in CR0 for the wait. A CPU that runs
/// disabled (a secondary, or any CPU inside an interruption handler) thus takes nothing
/// in the wait it would not have taken without it, and no handler nests in itself.
pub fn wait_for_signal() {
    // SAFETY: masking subclasses only delays interruptions; the two signals are
    // handled by `zhint_ext_interrupt`.
    let before = unsafe {
        update_cr0(
            cr0::EXTERNAL_CALL | cr0::EMERGENCY_SIGNAL,
            cr0::CLOCK_COMPARATOR | cr0::SERVICE_SIGNAL,
        )
    };
    enabled_wait_for_external();
    // SAFETY: back to the subclasses this CPU had.
    unsafe { write_cr::<0>(before) };
}

/// Loads a PSW with `mask` whose address is the next instruction: the one way the
/// kernel changes PSW bits in place (wait, DAT, problem state).
///
/// # Safety
/// The new mask must keep the code that follows runnable: its text mapped and its
/// state valid in the new mode.
pub unsafe fn continue_with_mask(mask: u64) {
    let psw = Psw { mask, addr: 0 };
    // SAFETY: the caller vouches for the mask; the PSW lives on our stack until the
    // LPSWE, which resumes at label 1.
    unsafe {
        asm!(
            "larl {t}, 1f",
            "stg {t}, 8({p})",
            "lpswe 0({p})",
            "1:",
            p = in(reg_addr) &psw,
            t = out(reg) _,
            options(nostack),
        );
    }
}

/// Whether DAT is on (PSW bit 5): off inside interruption handlers and before the
/// kernel's identity map exists.
pub fn dat_enabled() -> bool {
    current_psw_mask() & psw_mask::DAT != 0
}

/// Runs `f` with DAT off, as the interruption handlers run: every access then goes to
/// absolute storage directly, so nothing `f` touches can raise a translation
/// exception. The host model's glue uses it to reach guest memory as a host would,
/// past the guest's own page tables.
pub fn with_dat_off<R>(f: impl FnOnce() -> R) -> R {
    let mask = current_psw_mask();
    if mask & psw_mask::DAT == 0 {
        return f();
    }
    // SAFETY: the kernel's address space maps all storage one to one (`dat_on`), so
    // with DAT off every address the code and its stack use stays the same.
    unsafe { continue_with_mask(mask & !psw_mask::DAT) };
    let result = f();
    // SAFETY: puts back the mask that was in force on entry.
    unsafe { continue_with_mask(mask) };
    result
}

/// STORE FACILITY LIST EXTENDED: facility bits 0..256.
pub fn facilities() -> [u64; 4] {
    let mut list = [0u64; 4];
    // SAFETY: STFLE stores at most r0+1 = 4 doublewords into the local array.
    unsafe {
        asm!(
            "stfle 0({p})",
            p = in(reg_addr) list.as_mut_ptr(),
            inout("r0") 3u64 => _,
            options(nostack),
        );
    }
    list
}

/// STORE SYSTEM INFORMATION for function code `fc`, selectors `sel1`/`sel2` into `block`.
/// Returns `None` when the CPU rejects the request (CC 3).
pub fn stsi(fc: u8, sel1: u8, sel2: u8, block: &mut SysinfoBlock) -> Option<()> {
    let cc: u64;
    // SAFETY: STSI stores at most 4 KiB at the 4 KiB-aligned block.
    unsafe {
        asm!(
            "stsi 0({p})",
            "ipm {cc}",
            "srl {cc}, 28",
            p = in(reg_addr) block.0.as_mut_ptr(),
            inout("r0") (u64::from(fc) << 28) | u64::from(sel1) => _,
            inout("r1") u64::from(sel2) => _,
            cc = out(reg) cc,
            options(nostack),
        );
    }
    // IPM + SRL set only the low word: the high word keeps whatever the register held.
    (cc as u32 == 0).then_some(())
}

/// The configuration level this program runs at (STSI function code 0): 1 basic machine,
/// 2 LPAR, 3 virtual machine.
pub fn configuration_level() -> u8 {
    let level: u64;
    // SAFETY: STSI with function code 0 stores nothing; it returns the level in r0.
    unsafe {
        asm!("stsi 0", inout("r0") 0u64 => level, in("r1") 0u64, options(nostack, nomem));
    }
    (level >> 28) as u8
}

/// A 4 KiB-aligned buffer for STSI.
#[repr(C, align(4096))]
#[derive(Debug)]
pub struct SysinfoBlock(pub [u8; 4096]);

/// SET CLOCK COMPARATOR: a clock-comparator external interruption (0x1004) is pending on
/// this CPU while the TOD clock is past `tod` (taken when CR0 bit 52 and PSW EXT allow).
pub fn set_clock_comparator(tod: u64) {
    // SAFETY: SCKC only reads eight bytes from a local; the interruption it may cause is
    // masked unless the caller enabled it.
    unsafe { asm!("sckc 0({p})", p = in(reg_addr) &tod, options(nostack)) };
}

/// STORE CLOCK: the TOD clock (bit 51 = 1 microsecond).
pub fn tod() -> u64 {
    let mut clock = 0u64;
    // SAFETY: STCK stores eight bytes into a local.
    unsafe { asm!("stck 0({p})", p = in(reg_addr) &mut clock, options(nostack)) };
    clock
}

/// Microseconds between two TOD clock values.
pub fn tod_to_us(ticks: u64) -> u64 {
    ticks >> 12
}

/// TOD clock units in `us` microseconds.
pub fn us_to_tod(us: u64) -> u64 {
    us << 12
}

/// Turns on DAT with `asce` as the primary, secondary and home address space
/// (CR1, CR7, CR13), keeping the rest of the PSW.
///
/// # Safety
/// The tables behind `asce` must map all storage the kernel uses one to one, so the
/// next instruction and all data stay where they are.
pub unsafe fn dat_on(asce: u64) {
    // SAFETY: the caller guarantees an identity map, so loading it changes no address
    // the kernel uses.
    unsafe {
        write_cr::<1>(asce);
        write_cr::<7>(asce);
        write_cr::<13>(asce);
    }
    // SAFETY: continues at the next instruction with DAT on, identity-mapped.
    unsafe { continue_with_mask(current_psw_mask() | psw_mask::DAT) };
}
