//! The lowcore (prefix area): interruption parameters the CPU stores (z/Architecture PoP,
//! "Assigned Storage Locations") and the kernel's own per-CPU fields.
//!
//! Every CPU reaches its own lowcore at real addresses 0-0x1fff: CPU 0's is absolute
//! 0-0x1fff (prefix 0), each secondary's an 8 KiB area its bring-up allocated
//! ([`super::smp`]). Real addresses are reached only with DAT off (the interruption
//! handlers) because the kernel's address space leaves 0-0x1fff unmapped, so the
//! readers here are for handlers only.
//!
//! The software fields (0x200-0x5ff) are what makes the entry stubs per-CPU: they save
//! registers in the lowcore, so with prefixing each CPU saves into its own, and they find
//! their stacks through the fields below, set for CPU 0 by `_start` and for a
//! secondary by its bring-up.

/// External-interruption parameter (u32).
const EXT_PARAM: usize = 0x80;
/// CPU address of the CPU that sent an external call or emergency signal (u16).
const EXT_CPU_ADDRESS: usize = 0x84;
/// External-interruption code (u16).
const EXT_CODE: usize = 0x86;
/// SVC interruption code (u16).
const SVC_CODE: usize = 0x8a;
/// Program-interruption ILC (u16, bits 13-14 = length in halfwords).
const PGM_ILC: usize = 0x8c;
/// Program-interruption code (u16).
const PGM_CODE: usize = 0x8e;
/// Translation-exception identification (u64).
const TRANS_EXC: usize = 0xa8;
/// Machine-check interruption code (u64).
const MCCK_CODE: usize = 0xe8;
/// I/O interruption subsystem id (u32).
const IO_SUBCHANNEL: usize = 0xb8;
/// I/O interruption parameter (u32).
const IO_INTPARM: usize = 0xbc;
/// I/O interruption-identification word (u32: adapter bit 0, ISC bits 2-4).
const IO_IDENTIFICATION: usize = 0xc0;

/// The restart new PSW: where SIGP RESTART sends a secondary CPU.
pub const RESTART_NEW_PSW: usize = 0x1a0;
/// The first byte after the new PSWs (0x1a0-0x1ff): a secondary's lowcore starts as a
/// copy of CPU 0's up to here.
pub const NEW_PSWS_END: usize = 0x200;

/// Register save areas of the entry stubs, 128 bytes per class.
pub mod save {
    /// External interruptions.
    pub const EXT: usize = 0x200;
    /// Supervisor calls.
    pub const SVC: usize = 0x280;
    /// Program interruptions.
    pub const PGM: usize = 0x300;
    /// Machine checks.
    pub const MCCK: usize = 0x380;
    /// I/O interruptions.
    pub const IO: usize = 0x400;
}

/// Return-PSW slots of the entry stubs (outside the low-address-protected 0-511, where
/// the old PSWs are), 16 bytes per class.
pub mod return_psw {
    /// External interruptions.
    pub const EXT: usize = 0x480;
    /// Supervisor calls.
    pub const SVC: usize = 0x490;
    /// Program interruptions.
    pub const PGM: usize = 0x4a0;
    /// Machine checks.
    pub const MCCK: usize = 0x4b0;
    /// I/O interruptions.
    pub const IO: usize = 0x4c0;
}

/// This CPU's stacks for the entry stubs and for a restart (u64 addresses each).
pub mod stack {
    /// Top of the program-check (and SVC) stack.
    pub const PGM_TOP: usize = 0x4d0;
    /// Lowest address of the program-check stack (above its guard page).
    pub const PGM_BOTTOM: usize = 0x4d8;
    /// Top of the stack for external, I/O and machine-check interruptions.
    pub const IRQ_TOP: usize = 0x4e0;
    /// Lowest address of the interruption stack.
    pub const IRQ_BOTTOM: usize = 0x4e8;
    /// Top of the stack a secondary CPU starts on after SIGP RESTART.
    pub const RESTART_TOP: usize = 0x4f0;
}

/// Control registers 0-15 a secondary CPU loads after SIGP RESTART (16 × u64), before
/// it calls `zhint_secondary_main` on its restart stack.
pub const CONTROL_REGISTERS: usize = 0x500;

/// Size of one CPU's lowcore; its address must be a multiple of it (SIGP SET PREFIX).
pub const SIZE: usize = 0x2000;

const _: () = assert!(return_psw::IO + 16 == stack::PGM_TOP);
const _: () = assert!(save::IO + 128 == return_psw::EXT);
const _: () = assert!(stack::RESTART_TOP + 16 == CONTROL_REGISTERS);

fn read_u16(addr: usize) -> u16 {
    // SAFETY: lowcore locations are real addresses, reached with DAT off in the
    // interruption handlers (the only callers), and naturally aligned.
    unsafe { (addr as *const u16).read_volatile() }
}

fn read_u32(addr: usize) -> u32 {
    // SAFETY: as for `read_u16`.
    unsafe { (addr as *const u32).read_volatile() }
}

fn read_u64(addr: usize) -> u64 {
    // SAFETY: as for `read_u16`.
    unsafe { (addr as *const u64).read_volatile() }
}

/// External-interruption code, e.g. 0x2401 service signal.
pub fn ext_code() -> u16 {
    read_u16(EXT_CODE)
}

/// External-interruption parameter (for a service signal: SCCB address | event pending).
pub fn ext_param() -> u32 {
    read_u32(EXT_PARAM)
}

/// The CPU address of the sender of an external call or emergency signal.
pub fn ext_cpu_address() -> u16 {
    read_u16(EXT_CPU_ADDRESS)
}

/// SVC number of the last SVC interruption.
pub fn svc_code() -> u16 {
    read_u16(SVC_CODE)
}

/// Program-interruption code (PER and transaction bits included).
pub fn pgm_code() -> u16 {
    read_u16(PGM_CODE)
}

/// Length in bytes of the instruction that caused the program interruption (0, 2, 4, 6).
pub fn pgm_ilen() -> u8 {
    (read_u16(PGM_ILC) & 0x6) as u8
}

/// Translation-exception identification of the last program interruption.
pub fn trans_exc_code() -> u64 {
    read_u64(TRANS_EXC)
}

/// Machine-check interruption code.
pub fn mcck_code() -> u64 {
    read_u64(MCCK_CODE)
}

/// Subsystem identification word of the last I/O interruption.
pub fn io_subchannel() -> u32 {
    read_u32(IO_SUBCHANNEL)
}

/// Interruption parameter of the last I/O interruption.
pub fn io_intparm() -> u32 {
    read_u32(IO_INTPARM)
}

/// Interruption-identification word of the last I/O interruption.
pub fn io_identification() -> u32 {
    read_u32(IO_IDENTIFICATION)
}
