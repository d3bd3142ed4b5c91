//! Test results as xtask reports them (the verdict in [`crate::verdict`] makes them).
//!
//! A test is identified by `(suite, name)`, never by its KTAP number: numbers restart when the
//! host reboots the kernel with `ktest.skip=N`.

use std::fmt;
use std::time::Duration;

/// A test's identity.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TestId {
    /// Suite (KTAP subtest) name, e.g. `arch::interrupts` or `host::sclp`.
    pub suite: String,
    /// Test name inside the suite.
    pub name: String,
}

impl TestId {
    /// A test id from its two parts.
    pub fn new(suite: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            suite: suite.into(),
            name: name.into(),
        }
    }
}

impl fmt::Display for TestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.suite, self.name)
    }
}

/// How a test ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Passed.
    Pass,
    /// Failed an assertion.
    Fail,
    /// Did not run.
    Skip,
    /// Failed as expected (counts as passed).
    XFail,
    /// Could not complete: panic, unexpected interruption, crash.
    Error,
    /// Ran out of time.
    Timeout,
}

impl Outcome {
    /// Whether this outcome counts as a failure.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Fail | Self::Error | Self::Timeout)
    }

    /// The fixed-width label of the live view.
    pub fn label(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skip => "SKIP",
            Self::XFail => "XFAIL",
            Self::Error => "ERROR",
            Self::Timeout => "TIMEOUT",
        }
    }
}

/// One test's final result.
#[derive(Debug, Clone, PartialEq)]
pub struct TestRecord {
    /// Which test.
    pub id: TestId,
    /// How it ended.
    pub outcome: Outcome,
    /// Directive reason or failure message.
    pub reason: String,
    /// Diagnostic lines printed for this test.
    pub diagnostics: Vec<String>,
    /// Guest time (`# time_us:`) when the kernel printed it, else host wall clock.
    pub duration: Option<Duration>,
    /// `file:line` of the test, when known.
    pub location: Option<String>,
    /// The boot (1-based, in its run) that reported or left it, for the replay command.
    pub boot: Option<usize>,
    /// The console-log line of its result line, when it printed one.
    pub line: Option<u64>,
}

impl TestRecord {
    /// A result the host made up for a test the kernel never finished.
    pub fn synthesized(id: TestId, outcome: Outcome, reason: impl Into<String>) -> Self {
        Self {
            id,
            outcome,
            reason: reason.into(),
            diagnostics: Vec::new(),
            duration: None,
            location: None,
            boot: None,
            line: None,
        }
    }

    /// The message a failure report shows: the reason, else the first diagnostic that
    /// records a failed check, else the first diagnostic (a test's opening lines, such
    /// as its seed, say less about what went wrong than the check that failed).
    pub fn message(&self) -> String {
        if !self.reason.is_empty() {
            return self.reason.clone();
        }
        self.diagnostics
            .iter()
            .find(|line| is_failed_check(line))
            .or(self.diagnostics.first())
            .cloned()
            .unwrap_or_else(|| self.outcome.label().to_lowercase())
    }
}

/// Whether a diagnostic is the kernel's record of a failed check (`Test::fail_at`):
/// it ends in ` at FILE.rs:LINE`.
fn is_failed_check(line: &str) -> bool {
    line.rsplit_once(" at ")
        .and_then(|(_, at)| at.rsplit_once(".rs:"))
        .is_some_and(|(file, line)| {
            !file.is_empty() && !line.is_empty() && line.bytes().all(|b| b.is_ascii_digit())
        })
}

/// Passed, failed and skipped counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    /// Passed tests (including expected failures).
    pub passed: usize,
    /// Failed tests (failures, errors, timeouts).
    pub failed: usize,
    /// Skipped tests.
    pub skipped: usize,
}

impl Counts {
    /// Counts a set of records.
    pub fn of<'a>(records: impl IntoIterator<Item = &'a TestRecord>) -> Self {
        let mut counts = Self::default();
        for record in records {
            counts.add(record.outcome);
        }
        counts
    }

    /// Counts one outcome.
    pub fn add(&mut self, outcome: Outcome) {
        match outcome {
            Outcome::Pass | Outcome::XFail => self.passed += 1,
            Outcome::Skip => self.skipped += 1,
            Outcome::Fail | Outcome::Error | Outcome::Timeout => self.failed += 1,
        }
    }

    /// Adds another set of counts.
    pub fn merge(&mut self, other: Self) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.skipped += other.skipped;
    }
}

impl fmt::Display for Counts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_display_is_the_closing_line_format() {
        let counts = Counts {
            passed: 3,
            failed: 1,
            skipped: 2,
        };
        assert_eq!(counts.to_string(), "3 passed, 1 failed, 2 skipped");
        let mut total = counts;
        total.merge(Counts {
            passed: 1,
            failed: 0,
            skipped: 0,
        });
        assert_eq!(total.passed, 4);
    }

    #[test]
    fn a_failure_is_summed_up_by_its_failed_check_not_its_first_diagnostic() {
        let mut record = TestRecord::synthesized(TestId::new("s", "t"), Outcome::Fail, "");
        assert_eq!(record.message(), "fail");
        record.diagnostics = vec![
            "seed 7, 200 iterations; replay: cargo xtask run -- ktest.seed=7".into(),
            "cpu 1: check failed: x == 1: iteration 3 at tests/src/a.rs:12".into(),
            "check failed: y at tests/src/a.rs:20".into(),
        ];
        assert_eq!(
            record.message(),
            "cpu 1: check failed: x == 1: iteration 3 at tests/src/a.rs:12"
        );
        record.diagnostics.drain(1..);
        assert_eq!(record.message(), record.diagnostics[0]);
        for not_a_check in [
            "look at a.rs:",
            "at a.rs:12",
            "look at .rs:1",
            "x at a.rs:1x",
        ] {
            assert!(!is_failed_check(not_a_check), "{not_a_check}");
        }
        record.reason = "hung".into();
        assert_eq!(record.message(), "hung");
    }
}
