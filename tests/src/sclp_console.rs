//! `sclp::console`: the SCLP console and READ SCP INFO on the real (or QEMU's) SCLP.

use core::fmt::Write;
use kernel::console::CONSOLE;
use kernel::{check, ktest};

kernel::ktest_suite!("sclp::console");

ktest! {
    /// At least one console event type was accepted by WRITE EVENT MASK.
    fn has_a_console(t) {
        let consoles = CONSOLE.lock().consoles();
        check!(t, consoles.ascii || consoles.line_mode, "{consoles:?}");
    }
}

ktest! {
    /// A write that spans several SCCBs completes without error on the machine's SCLP
    /// (that the bytes arrive intact is checked by the `sclp` crate's host tests against
    /// a fake SCLP; here the real one must accept every request).
    fn long_line_is_written(t) {
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

ktest! {
    /// READ SCP INFO reports memory in whole MiB, at least what QEMU's smallest useful
    /// guest has, and at least one CPU; asking twice gives the same answer.
    fn read_scp_info(t) {
        let first = CONSOLE.lock().read_scp_info();
        let second = CONSOLE.lock().read_scp_info();
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
    /// Every character the KTAP output uses is accepted by the machine's consoles (the
    /// line-mode console translates to EBCDIC; the translation itself is checked byte for
    /// byte in the `sclp` crate's host tests).
    fn ktap_charset(t) {
        let result = writeln!(
            CONSOLE.lock(),
            "    # charset: abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 #:._-=/()!,+*<>'\"[]{{}}|&%$@?;~^`\\"
        );
        check!(t, result.is_ok(), "{result:?}");
    }
}
