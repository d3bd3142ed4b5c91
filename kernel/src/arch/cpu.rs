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
    /// Service-signal subclass mask (bit 54).
    pub const SERVICE_SIGNAL: u64 = 0x0000_0000_0000_0200;
}

/// STORE CPU ADDRESS.
pub fn cpu_address() -> u16 {
    let mut addr = 0u16;
    // SAFETY: STAP stores the 16-bit CPU address into a local variable.
    unsafe { asm!("stap 0({p})", p = in(reg_addr) &mut addr, options(nostack)) };
    addr
}

/// SIGP orders used by the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum SigpOrder {
    /// Sense the addressed CPU's status.
    Sense = 1,
    /// Stop the addressed CPU.
    Stop = 5,
    /// Set the architectural mode of all CPUs.
    SetArchitecture = 18,
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

/// Waits with external interruptions enabled until one arrives. The external handler
/// clears WAIT and EXT in the old PSW, so execution resumes here, disabled again.
pub fn enabled_wait_for_external() {
    // SAFETY: the wait PSW adds only EXT and WAIT; the external handler restores all
    // registers and clears both bits, so execution continues after it unchanged.
    unsafe { continue_with_mask(current_psw_mask() | psw_mask::EXT | psw_mask::WAIT) };
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
    (cc == 0).then_some(())
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
