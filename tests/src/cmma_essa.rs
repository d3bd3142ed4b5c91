//! `cmma::essa`: the ESSA instruction as the kernel issues it (natively, or trapped and
//! emulated by the host model): result bytes, usage-state transitions, exceptions.
//! Written against the architecture, so the same suite checks a real hypervisor (KVM,
//! z/VM) and the model.

use crate::support::Block;
use kernel::arch::essa::essa;
use kernel::arch::probe;
use kernel::cmma::backend::{self, Backend};
use kernel::cmma::essa::{ContentState, PageStateByte, UsageState};
use kernel::ktest::Test;
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("cmma::essa");

/// Skips unless ESSA is in use (natively or through the model).
fn needs_essa(t: &mut Test<'_>) -> bool {
    if backend::current() == Backend::Off {
        t.skip("cmma=off: ESSA is not issued");
        return false;
    }
    true
}

fn usage(byte: u8) -> UsageState {
    PageStateByte(byte).usage()
}

/// Puts the block into `state` from stable.
fn enter(addr: u64, state: UsageState) {
    let orc = match state {
        UsageState::Stable => 1,
        UsageState::Unused => 2,
        UsageState::PotVolatile => 4,
        UsageState::Volatile => 3,
    };
    essa(1, addr);
    essa(orc, addr);
}

ktest! {
    /// ORC 0 reports the state and changes nothing; a fresh allocated block is stable.
    fn get_state_is_pure(t) [NEEDS_ESSA] {
        if !needs_essa(t) { return; }
        let block = Block::new();
        let a = block.addr();
        essa(1, a);
        let first = essa(0, a);
        let second = essa(0, a);
        check_eq!(t, usage(first), UsageState::Stable);
        check_eq!(t, first, second);
        check_eq!(t, PageStateByte(first).exception(), false);
    }
}

ktest! {
    /// Every usage-setting ORC from every usage state, on a resident block: the
    /// returned byte is the whole old state (usage, content resident, no-DAT clear after
    /// ORC 1, no exception) and ORC 0 then shows the whole new one (reference §1.2,
    /// §1.3).
    fn usage_transitions(t) [NEEDS_ESSA] {
        if !needs_essa(t) { return; }
        use UsageState::*;
        let block = Block::new();
        let a = block.addr();
        let byte = |usage| PageStateByte::encode(usage, ContentState::Resident, false).raw();
        // (from, ORC, to) for resident blocks.
        let table: [(UsageState, u8, UsageState); 20] = [
            (Stable, 1, Stable), (Stable, 2, Unused), (Stable, 3, Volatile),
            (Stable, 4, PotVolatile), (Stable, 5, Stable), (Stable, 6, Stable),
            (Unused, 1, Stable), (Unused, 3, Volatile), (Unused, 4, PotVolatile),
            (Unused, 5, Stable), (Unused, 6, Stable),
            (Volatile, 1, Stable), (Volatile, 2, Unused), (Volatile, 4, PotVolatile),
            (Volatile, 6, Stable),
            (PotVolatile, 1, Stable), (PotVolatile, 2, Unused), (PotVolatile, 3, Volatile),
            (PotVolatile, 5, Stable), (PotVolatile, 6, Stable),
        ];
        for (from, orc, to) in table {
            enter(a, from);
            let old = essa(orc, a);
            let new = essa(0, a);
            check!(t, old == byte(from), "ORC {orc} from {from:?}: returned {old:#04x}, want {:#04x}", byte(from));
            check!(t, new == byte(to), "ORC {orc} from {from:?}: now {new:#04x}, want {:#04x}", byte(to));
        }
        essa(1, a);
    }
}

ktest! {
    /// ORC 8 is a specification exception; the block keeps its state.
    fn invalid_orc_is_specification_exception(t) [NEEDS_ESSA, EXPECTS_PGM] {
        if !needs_essa(t) { return; }
        let block = Block::new();
        let a = block.addr();
        essa(1, a);
        if let Some(info) = t.expect_pgm(0x06, || { essa(8, a); }) {
            check_eq!(t, info.ilen, 4);
        }
        check_eq!(t, usage(essa(0, a)), UsageState::Stable);
    }
}

ktest! {
    /// ORC 7 (stable, no-DAT) needs facility 147; without it, a specification exception.
    fn nodat_needs_facility_147(t) [NEEDS_ESSA] {
        if !needs_essa(t) { return; }
        let block = Block::new();
        let a = block.addr();
        let has_147 = kernel::machine::Facilities(kernel::arch::cpu::facilities())
            .has(kernel::machine::facility::CMM_NODAT);
        if has_147 {
            essa(7, a);
            check!(t, PageStateByte(essa(0, a)).nodat(), "no-DAT bit not set by ORC 7");
            essa(1, a);
            check!(t, !PageStateByte(essa(0, a)).nodat(), "ORC 1 must clear no-DAT");
        } else {
            t.expect_pgm(0x06, || { essa(7, a); });
        }
    }
}

ktest! {
    /// ESSA is privileged: problem state gives a privileged-operation exception.
    fn problem_state_is_privileged_operation(t) [NEEDS_ESSA, EXPECTS_PGM] {
        if !needs_essa(t) { return; }
        let block = Block::new();
        t.expect_pgm(0x02, || probe::essa_in_problem_state(block.addr()));
    }
}
