//! How a run ends: `EXIT: STATUS=<n>` on the console (kvm-unit-tests convention; s390x
//! has no guest-controlled exit code), then SIGP STOP, or a disabled wait for a crash.

use crate::arch::cpu;
use crate::console;
use core::fmt::Write;

/// Disabled-wait address of a crash: QEMU reports it as a guest panic (it does not end
/// in 0xfff), so `-action panic=exit-failure` makes QEMU exit 1.
pub const CRASH_WAIT_CODE: u64 = 0x0bad_0000;

/// Prints `EXIT: STATUS=<status>` and stops the CPU (QEMU then exits 0).
pub fn exit(status: u32) -> ! {
    crate::println!("EXIT: STATUS={status}");
    cpu::stop_self()
}

/// Ends the run as a crash: KTAP `Bail out!`, `EXIT: STATUS=3`, disabled wait.
pub fn crash(reason: &str) -> ! {
    console::force_unlock();
    let mut w = console::ConsoleWriter;
    let _ = writeln!(w, "Bail out! {reason}");
    let _ = writeln!(w, "EXIT: STATUS=3");
    cpu::disabled_wait(CRASH_WAIT_CODE)
}
