//! `arch::interrupts`: program interruptions arrive with the right code, ILC and old
//! PSW, the test that expected them goes on, and so does the kernel.

use kernel::arch::cpu::psw_mask;
use kernel::arch::probe;
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("arch::interrupts");

ktest! {
    /// An unassigned opcode: operation exception, ILC 2, old PSW after the instruction.
    fn operation_exception(t) [EXPECTS_PGM, NO_MM] {
        if let Some(info) = t.expect_pgm(0x01, probe::invalid_opcode) {
            check_eq!(t, info.ilen, 2);
            check_eq!(t, info.psw.addr, info.instruction_address() + 2);
            check_eq!(t, info.psw.mask & psw_mask::PSTATE, 0);
        }
    }
}

ktest! {
    /// A privileged instruction (STCTG, 6 bytes) in problem state: privileged-operation
    /// exception with the problem-state bit in the old PSW; the kernel is back in
    /// supervisor state afterwards.
    fn privileged_operation(t) [EXPECTS_PGM, NO_MM] {
        if let Some(info) = t.expect_pgm(0x02, probe::privileged_operation_in_problem_state) {
            check_eq!(t, info.ilen, 6);
            check!(t, info.psw.mask & psw_mask::PSTATE != 0, "old PSW mask {:#x}", info.psw.mask);
        }
        check_eq!(t, kernel::arch::cpu::current_psw_mask() & psw_mask::PSTATE, 0);
    }
}

ktest! {
    /// A misaligned LPSWE operand: specification exception.
    fn specification_exception(t) [EXPECTS_PGM, NO_MM] {
        if let Some(info) = t.expect_pgm(0x06, probe::misaligned_lpswe) {
            check_eq!(t, info.ilen, 4);
        }
    }
}

ktest! {
    /// A store beyond the configured storage: addressing exception.
    fn addressing_exception(t) [EXPECTS_PGM, NO_MM] {
        if let Some(info) = t.expect_pgm(0x05, probe::store_beyond_storage) {
            check_eq!(t, info.ilen, 4);
        }
    }
}

ktest! {
    /// `expect_pgm` fails a test when nothing arrives (checked on a scratch context, so
    /// this test stays green).
    fn expect_pgm_without_interruption_fails(t) [NO_MM] {
        let mut scratch = alloc::string::String::new();
        let mut inner = kernel::ktest::Test::new(&mut scratch, "", 0);
        let got = inner.expect_pgm(0x01, || {});
        check!(t, got.is_none());
        check_eq!(t, inner.failures(), 1);
        check!(t, scratch.contains("none arrived"), "{}", scratch);
    }
}

ktest! {
    /// A different code than expected is a failure too, and reports both codes.
    fn expect_pgm_wrong_code_fails(t) [NO_MM] {
        let mut scratch = alloc::string::String::new();
        let mut inner = kernel::ktest::Test::new(&mut scratch, "", 0);
        let got = inner.expect_pgm(0x06, probe::invalid_opcode);
        check_eq!(t, got.map(|i| i.code), Some(0x01));
        check_eq!(t, inner.failures(), 1);
        check!(t, scratch.contains("expected program interruption 0x6, got 0x1"), "{}", scratch);
    }
}

ktest! {
    /// After an interruption was caught, the kernel's state is intact: interruptions
    /// still disabled, supervisor state, 64-bit mode.
    fn state_survives_caught_interruptions(t) [NO_MM] {
        let _ = t.expect_pgm(0x01, probe::invalid_opcode);
        let mask = kernel::arch::cpu::current_psw_mask();
        check_eq!(t, mask & (psw_mask::EXT | psw_mask::IO | psw_mask::PSTATE), 0);
        check_eq!(t, mask & (psw_mask::EA | psw_mask::BA), psw_mask::EA | psw_mask::BA);
    }
}
