//! The panic handler: report the panic in KTAP (inside the running test, if any), then
//! end the run. Panics cannot be caught on s390x (no unwinder); xtask reboots with
//! `ktest.skip=N` to finish the remaining tests.

use crate::arch::percpu::this_cpu;
use crate::arch::smp;
use crate::ktest::ktap::SUBTEST_INDENT;
use crate::{console, ktest, shutdown};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

/// The CPU reporting a panic (`usize::MAX`: none).
static PANICKING: AtomicUsize = AtomicUsize::new(usize::MAX);

/// Called by the image's `#[panic_handler]`.
pub fn handle(info: &core::panic::PanicInfo<'_>) -> ! {
    let me = this_cpu();
    if let Err(first) =
        PANICKING.compare_exchange(usize::MAX, me, Ordering::AcqRel, Ordering::Acquire)
    {
        if first == me {
            // A panic while reporting one: say the least possible.
            shutdown::crash("panic while panicking");
        }
        // Another CPU reports its panic and ends the run: one report is enough.
        crate::arch::cpu::stop_self();
    }
    // Nothing else prints or runs from here on (the run ends with this report).
    smp::stop_others();
    let mut w = console::take_over();
    let location = info.location();
    let (file, line) = location.map_or(("?", 0), |l| (l.file(), l.line()));
    let message = OneLine(info.message());
    match ktest::current::get() {
        Some((test, n)) => {
            let _ = writeln!(
                w,
                "{SUBTEST_INDENT}# panic: {message} at {file}:{line} on cpu {me}"
            );
            let _ = writeln!(
                w,
                "{SUBTEST_INDENT}not ok {n} {} # ERROR panic: {message}",
                test.name
            );
            let _ = writeln!(w, "Bail out! panic in {}.{}", test.suite, test.name);
        }
        None => {
            let _ = writeln!(w, "# panic: {message} at {file}:{line} on cpu {me}");
            let _ = writeln!(w, "Bail out! kernel panic: {message}");
        }
    }
    let _ = writeln!(w, "EXIT: STATUS=3");
    drop(w);
    crate::arch::cpu::disabled_wait(shutdown::CRASH_WAIT_CODE)
}

/// Displays a message with line breaks replaced, so it fits one KTAP line.
struct OneLine<T>(T);

impl<T: fmt::Display> fmt::Display for OneLine<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct NoBreaks<'a, 'b>(&'a mut fmt::Formatter<'b>);
        impl Write for NoBreaks<'_, '_> {
            fn write_str(&mut self, s: &str) -> fmt::Result {
                for (i, part) in s.split(['\n', '\r']).enumerate() {
                    if i > 0 {
                        self.0.write_char(' ')?;
                    }
                    self.0.write_str(part)?;
                }
                Ok(())
            }
        }
        write!(NoBreaks(f), "{}", self.0)
    }
}
