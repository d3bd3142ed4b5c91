//! `ktest::selftest`: tests that fail on purpose, to prove the harness reports each way
//! of failing correctly and still runs every other test. They carry the `SELFTEST` flag
//! and run only when named in `ktest.selftest=` (xtask's own tests do that), so the
//! normal run stays green.

use kernel::{check_eq, ktest};

kernel::ktest_suite!("ktest::selftest");

ktest! {
    /// A failing check: `not ok`, with the check's diagnostic.
    fn fail(t) [SELFTEST] {
        check_eq!(t, 1 + 1, 3);
    }
}

ktest! {
    /// A panic: `not ok ... # ERROR panic: ...`, `Bail out!`, end of this boot.
    fn panic(_t) [SELFTEST] {
        panic!("deliberate panic from ktest::selftest.panic");
    }
}

ktest! {
    /// An unexpected program interruption: `not ok ... # ERROR program interruption`,
    /// and the run goes on.
    fn pgm(_t) [SELFTEST] {
        kernel::arch::probe::invalid_opcode();
    }
}

ktest! {
    /// A hang: xtask's idle timeout reports it as TIMEOUT and reboots past it. It waits
    /// idly rather than spinning, so it costs no host CPU until then.
    fn hang(_t) [SELFTEST] {
        loop {
            kernel::arch::cpu::enabled_wait_for_external();
        }
    }
}
