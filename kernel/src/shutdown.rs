//! How a run ends: `EXIT: STATUS=<n>` on the console (kvm-unit-tests convention; s390x
//! has no guest-controlled exit code), then SIGP STOP, or a disabled wait for a crash.
//! Either way every other CPU is stopped first.

use crate::arch::percpu::this_cpu;
use crate::arch::{cpu, smp};
use crate::console;
use crate::machine::Host;
use core::fmt::Write;

/// Disabled-wait address of a crash: QEMU reports it as a guest panic (it does not end
/// in 0xfff), so `-action panic=exit-failure` makes QEMU exit 1.
pub const CRASH_WAIT_CODE: u64 = 0x0bad_0000;

/// Disabled-wait address base of a finished run on z/VM and in an LPAR ("GOOD"); the low
/// 12 bits carry the exit status, so the operator reads the result from the wait PSW:
/// `0600D001` passed, `0600D04D` all skipped, `0BAD0003` failures, `0BAD0000` a crash.
pub const PASS_WAIT_CODE: u64 = 0x0600_d000;

/// Prints `EXIT: STATUS=<status>` and ends the run: SIGP STOP under QEMU and KVM (QEMU
/// then exits 0), a disabled wait whose address tells pass or fail under z/VM, in an
/// LPAR and on Hercules, where a stopped CPU says nothing to the operator (xtask reads
/// Hercules' wait PSW).
pub fn exit(status: u32) -> ! {
    crate::println!("EXIT: STATUS={status}");
    console::release();
    // This CPU must be the last one running: QEMU ends the run only when every CPU has
    // stopped (a disabled wait, too, counts as a panic only on the last one).
    smp::stop_others();
    if matches!(
        crate::machine::host(),
        Some(Host::Zvm | Host::Lpar | Host::Hercules)
    ) {
        cpu::disabled_wait(wait_code(status));
    }
    cpu::stop_self()
}

/// The disabled-wait address that reports `status` on z/VM and LPAR.
pub fn wait_code(status: u32) -> u64 {
    let base = if status == 1 || status == 77 {
        PASS_WAIT_CODE
    } else {
        CRASH_WAIT_CODE
    };
    base | u64::from(status & 0xfff)
}

/// Ends the run as a crash: KTAP `Bail out!`, `EXIT: STATUS=3`, disabled wait.
pub fn crash(reason: &str) -> ! {
    smp::stop_others();
    let mut w = console::take_over();
    let _ = writeln!(w, "Bail out! {reason} (cpu {})", this_cpu());
    let _ = writeln!(w, "EXIT: STATUS=3");
    drop(w);
    cpu::disabled_wait(CRASH_WAIT_CODE)
}
