//! The kernel console: the SCLP console behind a lock, and the `print!`/`println!` macros.

use crate::arch::sclp::ServcBackend;
use core::fmt::{self, Write};
use spin::Mutex;

/// The one SCLP console. Interruption handlers that must print while the interrupted
/// code may hold the lock (crash reports) call [`force_unlock`] first.
pub static CONSOLE: Mutex<sclp::Sclp<ServcBackend>> = Mutex::new(sclp::Sclp::new(ServcBackend));

/// Sets up the console (WRITE EVENT MASK). Output before this is lost.
pub fn init() -> Result<sclp::Consoles, sclp::Error> {
    crate::arch::sclp::init_console(&mut CONSOLE.lock())
}

/// Writes formatted text to the console; errors are dropped (there is nowhere to report).
pub fn print(args: fmt::Arguments<'_>) {
    let _ = CONSOLE.lock().write_fmt(args);
}

/// Whether the console lock is held.
pub fn locked() -> bool {
    CONSOLE.is_locked()
}

/// Releases the console lock held by interrupted code, so a crash report can be printed.
pub fn force_unlock() {
    crate::arch::sync::force_unlock(&CONSOLE);
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
