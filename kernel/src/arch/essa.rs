//! EXTRACT AND SET STORAGE ATTRIBUTES (ESSA, `B9AB`, RRF-c): `R1` receives the block's
//! previous state byte, `R2` holds its absolute address, `M3` is the operation request
//! code. Under QEMU TCG the instruction raises an operation exception and
//! [`crate::trap`] emulates it against the host model, so this wrapper is the same on
//! every host.

use core::arch::asm;

/// Issues ESSA with the operation request code `ORC` (0-15: codes above 7 exist only to
/// test the specification exception) for the 4 KiB block at absolute address `addr`.
/// Returns the low byte of R1 (the previous state).
pub fn essa_raw<const ORC: u8>(addr: u64) -> u8 {
    let state: u64;
    // SAFETY: ESSA changes only the host's view of the block's usage state; the kernel's
    // page-state layer decides which state a frame may have. R1 receives the old state.
    unsafe {
        asm!(
            ".insn rrf,0xb9ab0000,{r1},{r2},{m3},0",
            r1 = out(reg) state,
            r2 = in(reg) addr,
            m3 = const ORC,
            options(nostack),
        );
    }
    state as u8
}

/// Issues ESSA with the raw operation request code `orc` 0..=15 (codes above 7 exist to
/// test the specification exception) for the block at absolute address `addr`; returns
/// the raw state byte (see [`essa_raw`]).
pub fn essa(orc: u8, addr: u64) -> u8 {
    match orc {
        0 => essa_raw::<0>(addr),
        1 => essa_raw::<1>(addr),
        2 => essa_raw::<2>(addr),
        3 => essa_raw::<3>(addr),
        4 => essa_raw::<4>(addr),
        5 => essa_raw::<5>(addr),
        6 => essa_raw::<6>(addr),
        7 => essa_raw::<7>(addr),
        8 => essa_raw::<8>(addr),
        9 => essa_raw::<9>(addr),
        10 => essa_raw::<10>(addr),
        11 => essa_raw::<11>(addr),
        12 => essa_raw::<12>(addr),
        13 => essa_raw::<13>(addr),
        14 => essa_raw::<14>(addr),
        _ => essa_raw::<15>(addr),
    }
}

/// Decodes an ESSA instruction from its four bytes: `(r1, r2, m3)`, or `None` when the
/// bytes are not ESSA.
pub fn decode(bytes: [u8; 4]) -> Option<(u8, u8, u8)> {
    (bytes[0] == 0xb9 && bytes[1] == 0xab).then_some((bytes[3] >> 4, bytes[3] & 0xf, bytes[2] >> 4))
}

/// Reads the four instruction bytes at `addr` if they lie in the kernel's text (the
/// only code the kernel runs; identity-mapped, so readable with DAT off too). `None`
/// for any other address: the handler must not touch storage a virtual address names.
pub fn instruction_at(addr: u64) -> Option<[u8; 4]> {
    let layout = super::image::layout();
    let text = 0x10000..layout.rodata_end;
    if !(text.contains(&addr) && text.contains(&(addr + 3))) {
        return None;
    }
    // SAFETY: the four bytes lie in the image's text and read-only data, which exist in
    // real storage at these addresses and are mapped one to one.
    Some(unsafe { (addr as *const [u8; 4]).read_volatile() })
}
