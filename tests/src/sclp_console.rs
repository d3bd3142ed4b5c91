//! `sclp::console`: the SCLP console and READ SCP INFO on the real (or QEMU's) SCLP.

use core::fmt::Write;
use kernel::arch::cpu;
use kernel::console::CONSOLE;
use kernel::machine::{Facilities, facility};
use kernel::{check, check_eq, ktest};
use sclp::ScpInfo;
use sclp::spec::response::INSUFFICIENT_SCCB_LENGTH;

kernel::ktest_suite!("sclp::console");

ktest! {
    /// At least one console event type was accepted by WRITE EVENT MASK.
    fn has_a_console(t) [NO_MM] {
        let consoles = CONSOLE.lock().consoles();
        check!(t, consoles.ascii || consoles.line_mode, "{consoles:?}");
    }
}

ktest! {
    /// A write that spans several SCCBs completes without error on the machine's SCLP
    /// (that the bytes arrive intact is checked by the `sclp` crate's host tests against
    /// a fake SCLP; here the real one must accept every request).
    fn long_line_is_written(t) [NO_MM] {
        let mut console = CONSOLE.lock();
        let mut result = console.write_str("    # long line:");
        for i in 0..300 {
            if result.is_ok() {
                result = write!(console, " {i}");
            }
        }
        if result.is_ok() {
            result = console.write_str("\n");
        }
        drop(console);
        check!(t, result.is_ok(), "{result:?}");
    }
}

/// READ SCP INFO as the kernel issues it: with the extended-length SCCB where facility 140
/// is installed, else one page; `Err(skip reason)` when one page cannot hold this many
/// CPUs' entries (the kernel then probes storage instead, see `storage_probe_*`).
fn kernel_read_scp_info() -> Result<Result<ScpInfo, sclp::Error>, &'static str> {
    let extended = Facilities(cpu::facilities()).has(facility::EXTENDED_LENGTH_SCCB);
    match CONSOLE.lock().read_scp_info_with(extended) {
        Err(sclp::Error::Response(INSUFFICIENT_SCCB_LENGTH)) if !extended => Err(
            "one page is too short for this many CPUs and facility 140 (extended-length SCCB) is not installed",
        ),
        other => Ok(other),
    }
}

ktest! {
    /// READ SCP INFO reports memory in whole MiB, at least what QEMU's smallest useful
    /// guest has, and at least one CPU; asking twice gives the same answer.
    fn read_scp_info(t) [NO_MM] {
        let (first, second) = match (kernel_read_scp_info(), kernel_read_scp_info()) {
            (Ok(first), Ok(second)) => (first, second),
            (Err(reason), _) | (_, Err(reason)) => { t.skip(reason); return; }
        };
        match (first, second) {
            (Ok(a), Ok(b)) => {
                check!(t, a.memory_bytes >= 16 << 20, "memory {}", a.memory_bytes);
                check!(t, a.memory_bytes % (1 << 20) == 0, "memory {}", a.memory_bytes);
                check!(t, a.cpus >= 1, "cpus {}", a.cpus);
                check!(t, a.memory_bytes == b.memory_bytes && a.cpus == b.cpus);
            }
            (a, b) => check!(t, false, "READ SCP INFO failed: {a:?} / {b:?}"),
        }
    }
}

ktest! {
    /// Probing storage with real-address loads (the kernel's fallback when READ SCP INFO
    /// fails, e.g. with 248 CPUs and no extended-length SCCB) finds the size READ SCP INFO
    /// reports. Guards `start::probe_storage_end`.
    fn storage_probe_agrees_with_read_scp_info(t) [NO_MM] {
        let probed = kernel::start::probe_storage_end();
        t.diag(format_args!("probed: {} MiB", probed >> 20));
        match kernel_read_scp_info() {
            Ok(Ok(info)) => check_eq!(t, probed, info.memory_bytes),
            Ok(Err(e)) => check!(t, false, "READ SCP INFO failed: {e:?}"),
            Err(reason) => t.skip(reason),
        }
    }
}

ktest! {
    /// Every character the KTAP output uses is accepted by the machine's consoles (the
    /// line-mode console translates to EBCDIC; the translation itself is checked byte for
    /// byte in the `sclp` crate's host tests).
    fn ktap_charset(t) [NO_MM] {
        let result = writeln!(
            CONSOLE.lock(),
            "    # charset: abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 #:._-=/()!,+*<>'\"[]{{}}|&%$@?;~^`\\"
        );
        check!(t, result.is_ok(), "{result:?}");
    }
}
