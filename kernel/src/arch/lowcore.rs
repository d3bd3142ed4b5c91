//! Interruption parameters stored by the CPU in the lowcore (z/Architecture PoP,
//! "Assigned Storage Locations"). Read with volatile loads from real addresses; the
//! kernel never moves its prefix, so real == absolute for CPU 0.

/// External-interruption parameter (u32).
const EXT_PARAM: usize = 0x80;
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

fn read_u16(addr: usize) -> u16 {
    // SAFETY: lowcore locations are always mapped (real address, DAT off in handlers,
    // identity-mapped otherwise) and naturally aligned.
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
