//! The test that is running now, for reports from panic and crash paths.

use super::KTest;
use spin::Mutex;

static CURRENT: Mutex<Option<(&'static KTest, usize)>> = Mutex::new(None);

/// Records `test` (number `n` in its suite) as running, or none.
pub fn set(current: Option<(&'static KTest, usize)>) {
    *CURRENT.lock() = current;
    let indent = if current.is_some() {
        super::ktap::SUBTEST_INDENT
    } else {
        ""
    };
    crate::console::set_report_indent(indent);
}

/// The running test and its number, if any. Never blocks: crash paths call it while
/// the interrupted code may be inside [`set`].
pub fn get() -> Option<(&'static KTest, usize)> {
    CURRENT.try_lock().and_then(|c| *c)
}
