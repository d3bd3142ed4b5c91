//! The context a test body gets: non-fatal assertions, skips, diagnostics, the seed.

use super::ktap;
use alloc::string::{String, ToString};
use core::fmt::{self, Write};

/// How one test ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every check held.
    Pass,
    /// This many checks failed.
    Fail(u32),
    /// The test skipped itself.
    Skip(String),
    /// The test ended abnormally (program interruption, ...).
    Error(String),
}

/// Handed to every test body.
pub struct Test<'a> {
    out: &'a mut dyn Write,
    indent: &'static str,
    failures: u32,
    skipped: Option<String>,
    seed: u64,
}

impl core::fmt::Debug for Test<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Test")
            .field("failures", &self.failures)
            .field("skipped", &self.skipped)
            .field("seed", &self.seed)
            .finish()
    }
}

impl<'a> Test<'a> {
    /// A fresh context writing diagnostics to `out` at `indent`.
    pub fn new(out: &'a mut dyn Write, indent: &'static str, seed: u64) -> Self {
        Test {
            out,
            indent,
            failures: 0,
            skipped: None,
            seed,
        }
    }

    /// Records a failed check at `file:line`; the test goes on.
    pub fn fail_at(&mut self, file: &str, line: u32, message: fmt::Arguments<'_>) {
        self.failures += 1;
        self.diag(format_args!("{message} at {file}:{line}"));
    }

    /// Records a failure with a message that already says where (a check on another
    /// CPU, reported by the CPU that runs the test); the test goes on.
    pub fn fail_with(&mut self, message: fmt::Arguments<'_>) {
        self.failures += 1;
        self.diag(message);
    }

    /// Prints a diagnostic line (`# ...`) before the test's result.
    pub fn diag(&mut self, message: fmt::Arguments<'_>) {
        let _ = ktap::diagnostic(self.out, self.indent, message);
    }

    /// Marks the test skipped with `reason`; return from the test body right after.
    pub fn skip(&mut self, reason: &str) {
        self.skipped = Some(reason.to_string());
    }

    /// The run's seed (from `ktest.seed=`), for randomized tests.
    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// Failed checks so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The outcome so far: failures win over a skip.
    pub fn outcome(&self) -> Outcome {
        match (&self.skipped, self.failures) {
            (_, n) if n > 0 => Outcome::Fail(n),
            (Some(reason), _) => Outcome::Skip(reason.clone()),
            (None, _) => Outcome::Pass,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_record_failures_with_location_and_keep_going() {
        let mut out = String::new();
        let mut t = Test::new(&mut out, "    ", 7);
        crate::check!(t, 1 + 1 == 2);
        crate::check_eq!(t, 2 + 2, 5);
        crate::check!(t, false, "value {}", 9);
        assert_eq!(t.outcome(), Outcome::Fail(2));
        assert_eq!(t.seed(), 7);
        drop(t);
        let lines: alloc::vec::Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[0].starts_with("    # check_eq failed: 2 + 2 == 5: left: 4, right: 5 at "));
        assert!(lines[0].contains("kernel/src/ktest/test.rs:"));
        assert!(lines[1].starts_with("    # check failed: false: value 9 at "));
    }

    #[test]
    fn skip_unless_failed() {
        let mut out = String::new();
        let mut t = Test::new(&mut out, "", 0);
        t.skip("no ESSA");
        assert_eq!(t.outcome(), Outcome::Skip("no ESSA".into()));
        crate::check!(t, false);
        assert_eq!(t.outcome(), Outcome::Fail(1));
    }
}
