//! The kernel console: the SCLP console behind a lock, and the `print!`/`println!` macros.
//!
//! One SCLP serves all CPUs: the lock makes each `print!` one request (so lines from
//! different CPUs never mix within a line), and makes the CPU that holds it the only one
//! that waits for the SCLP's service signal. Reports from interruption handlers hold the
//! lock for the whole report ([`lock_for_report`]).

use crate::arch::percpu::this_cpu;
use crate::arch::sclp::ServcBackend;
use crate::arch::sync::{CpuMutex, CpuMutexGuard};
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicUsize, Ordering};

/// The one SCLP console.
pub static CONSOLE: CpuMutex<sclp::Sclp<ServcBackend>> =
    CpuMutex::new(sclp::Sclp::new(ServcBackend));

/// Sets up the console (WRITE EVENT MASK). Output before this is lost.
pub fn init() -> Result<sclp::Consoles, sclp::Error> {
    crate::arch::sclp::init_console(&mut CONSOLE.lock())
}

/// Writes formatted text to the console; errors are dropped (there is nowhere to report).
pub fn print(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Holds completed lines until [`release`]: for output that cannot hang (the banner, the
/// runner's lines between two test bodies), which then costs one SCLP request per console
/// for as many lines as an SCCB carries instead of one per line. Every path that ends the
/// run or reports from an interruption handler releases first.
pub fn hold() {
    CONSOLE.lock().hold();
}

/// Writes the held lines and writes each line as it completes again (before a test body,
/// which may hang, and before the machine stops).
pub fn release() {
    let _ = CONSOLE.lock().release();
}

/// `guard` with the held lines written and nothing held from now on.
fn released(
    mut guard: CpuMutexGuard<'static, sclp::Sclp<ServcBackend>>,
) -> CpuMutexGuard<'static, sclp::Sclp<ServcBackend>> {
    let _ = guard.release();
    guard
}

/// Whether this CPU holds the console lock.
pub fn held_here() -> bool {
    CONSOLE.held_here()
}

/// The console for a report from an interruption handler: if the interrupted code on
/// this CPU was printing, its request is abandoned (it never resumes); a print on
/// another CPU is waited for.
pub fn lock_for_report() -> CpuMutexGuard<'static, sclp::Sclp<ServcBackend>> {
    CONSOLE.release_held_by(this_cpu());
    released(CONSOLE.lock())
}

/// The console for the last words of a run, whoever holds it: only after every other
/// CPU was stopped, so no holder resumes.
pub fn take_over() -> CpuMutexGuard<'static, sclp::Sclp<ServcBackend>> {
    if let Some(holder) = CONSOLE.holder() {
        CONSOLE.release_held_by(holder);
    }
    released(CONSOLE.lock())
}

/// Releases the console lock if this CPU holds it: code on this CPU that held it was
/// abandoned (a test body unwound by a program interruption).
pub fn release_held_here() {
    CONSOLE.release_held_by(this_cpu());
}

/// A `fmt::Write` that takes the console lock per write, for long-lived writers such as
/// the test runner (test bodies may print in between).
#[derive(Debug, Clone, Copy, Default)]
pub struct ConsoleWriter;

impl Write for ConsoleWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        CONSOLE.lock().write_str(s)
    }
}

/// Prints to the SCLP console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => { $crate::console::print(format_args!($($arg)*)) };
}

/// Prints a line to the SCLP console.
#[macro_export]
macro_rules! println {
    () => { $crate::print!("\n") };
    ($($arg:tt)*) => { $crate::console::print(format_args!("{}\n", format_args!($($arg)*))) };
}

/// Spaces before each line of a report from an interruption or crash path.
static REPORT_INDENT: AtomicUsize = AtomicUsize::new(0);

/// The deepest [`set_report_indent`] keeps.
const MAX_INDENT: &str = "        ";

/// Sets the indentation of reports from interruption and crash paths (which know
/// nothing of tests): the test runner sets its subtest's while a test runs, so those
/// reports land inside that subtest.
pub fn set_report_indent(indent: &str) {
    REPORT_INDENT.store(indent.len().min(MAX_INDENT.len()), Ordering::Relaxed);
}

/// The indentation for a report printed now.
pub fn report_indent() -> &'static str {
    &MAX_INDENT[..REPORT_INDENT.load(Ordering::Relaxed)]
}
