//! Test results as xtask reports them, and the collector that turns KTAP events into them.
//!
//! A test is identified by `(suite, name)`, never by its KTAP number: numbers restart when the
//! host reboots the kernel with `ktest.skip=N`, and console noise may hide lines.

use std::fmt;
use std::time::{Duration, Instant};

use crate::ktap::{Directive, Event, ResultLine};

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

    fn from_result(result: &ResultLine) -> Self {
        match (&result.directive, result.ok) {
            (Some(Directive::Skip), _) => Self::Skip,
            (Some(Directive::XFail), _) | (Some(Directive::Todo), false) => Self::XFail,
            (Some(Directive::Error), _) => Self::Error,
            (Some(Directive::Timeout), _) => Self::Timeout,
            (_, true) => Self::Pass,
            (_, false) => Self::Fail,
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
        }
    }

    /// The message a failure report shows: the reason, else the first diagnostic.
    pub fn message(&self) -> String {
        if !self.reason.is_empty() {
            return self.reason.clone();
        }
        self.diagnostics
            .first()
            .cloned()
            .unwrap_or_else(|| self.outcome.label().to_lowercase())
    }
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

/// What one boot of the kernel printed, collected from its KTAP events.
#[derive(Debug)]
pub struct BootCollector {
    /// Results of tests (depth-1 result lines), in the order printed.
    pub records: Vec<TestRecord>,
    /// `EXIT: STATUS=` value, if printed.
    pub exit_status: Option<i64>,
    /// `Bail out!` reason, if printed.
    pub bail_out: Option<String>,
    /// The last `# panic:` diagnostic, if any.
    pub panic_message: Option<String>,
    /// The suite currently running (last `# Subtest:` at depth 1).
    pub current_suite: Option<String>,
    /// Tests announced by `ktest.list`.
    pub listed: Vec<crate::ktap::ListedTest>,
    /// Number of top-level `KTAP version` lines seen (more than one: several boots in one log).
    pub top_level_headers: usize,
    last_result_at: Instant,
}

impl Default for BootCollector {
    fn default() -> Self {
        Self::new()
    }
}

impl BootCollector {
    /// An empty collector; host wall-clock times count from now.
    pub fn new() -> Self {
        Self {
            records: Vec::new(),
            exit_status: None,
            bail_out: None,
            panic_message: None,
            current_suite: None,
            listed: Vec::new(),
            top_level_headers: 0,
            last_result_at: Instant::now(),
        }
    }

    /// Consumes one event; returns the test record it completed, if any.
    pub fn observe(&mut self, event: &Event) -> Option<&TestRecord> {
        match event {
            Event::Version { depth: 0, .. } => self.top_level_headers += 1,
            Event::Subtest { depth: 1, name } => {
                self.current_suite = Some(name.clone());
                self.last_result_at = Instant::now();
            }
            Event::Diagnostic { text, .. } => {
                if let Some(message) = text.strip_prefix("panic:") {
                    self.panic_message = Some(message.trim().to_string());
                }
            }
            Event::Listed(listed) => self.listed.push(listed.clone()),
            Event::BailOut { reason } => self.bail_out = Some(reason.clone()),
            Event::Exit { status } => self.exit_status = Some(*status),
            Event::Result(result) if result.depth == 1 => {
                let suite = result
                    .path
                    .first()
                    .cloned()
                    .or_else(|| self.current_suite.clone())?;
                let now = Instant::now();
                let wall = now - self.last_result_at;
                self.last_result_at = now;
                self.records.push(record_from(suite, result, wall));
                return self.records.last();
            }
            _ => {}
        }
        None
    }

    /// Whether the kernel ended normally: `EXIT:` printed and no `Bail out!`.
    pub fn completed(&self) -> bool {
        self.exit_status.is_some() && self.bail_out.is_none()
    }

    /// The best one-line description of why this boot crashed.
    pub fn crash_reason(&self) -> Option<String> {
        self.panic_message
            .as_ref()
            .map(|m| format!("kernel panicked: {m}"))
            .or_else(|| self.bail_out.as_ref().map(|r| format!("Bail out! {r}")))
    }
}

fn record_from(suite: String, result: &ResultLine, wall: Duration) -> TestRecord {
    let mut diagnostics = Vec::new();
    let mut guest_time = None;
    for text in &result.diagnostics {
        match text
            .strip_prefix("time_us:")
            .and_then(|us| us.trim().parse::<u64>().ok())
        {
            Some(us) => guest_time = Some(Duration::from_micros(us)),
            None => diagnostics.push(text.clone()),
        }
    }
    TestRecord {
        id: TestId::new(suite, result.name.clone()),
        outcome: Outcome::from_result(result),
        reason: result.reason.clone(),
        diagnostics,
        duration: Some(guest_time.unwrap_or(wall)),
        location: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktap::Parser;

    fn collect(text: &str) -> BootCollector {
        let mut parser = Parser::new();
        let mut collector = BootCollector::new();
        for event in parser.push(text.as_bytes()) {
            collector.observe(&event);
        }
        collector
    }

    #[test]
    fn test_results_become_records_and_suite_lines_do_not() {
        let collector = collect(
            "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..3\n    # time_us: 250\n    ok 1 a\n\
             \x20   # check failed: 1 != 2\n    not ok 2 b\n    not ok 3 c # XFAIL known bug\nnot ok 1 s\nEXIT: STATUS=3\n",
        );
        let outcomes: Vec<_> = collector
            .records
            .iter()
            .map(|r| (r.id.to_string(), r.outcome))
            .collect();
        assert_eq!(
            outcomes,
            [
                ("s.a".into(), Outcome::Pass),
                ("s.b".into(), Outcome::Fail),
                ("s.c".into(), Outcome::XFail)
            ]
        );
        assert_eq!(
            collector.records[0].duration,
            Some(Duration::from_micros(250))
        );
        assert!(
            collector.records[0].diagnostics.is_empty(),
            "time_us is not a diagnostic"
        );
        assert_eq!(collector.records[1].message(), "check failed: 1 != 2");
        assert!(collector.completed());
        assert_eq!(
            Counts::of(&collector.records),
            Counts {
                passed: 2,
                failed: 1,
                skipped: 0
            }
        );
    }

    #[test]
    fn a_panic_is_not_a_completed_boot() {
        let collector = collect(
            "    # Subtest: s\n    # panic: boom at a.rs:3\n    not ok 1 t # ERROR panic: boom\nBail out! panic in s.t\nEXIT: STATUS=3\n",
        );
        assert!(!collector.completed());
        assert_eq!(
            collector.crash_reason().as_deref(),
            Some("kernel panicked: boom at a.rs:3")
        );
        assert_eq!(collector.records[0].outcome, Outcome::Error);
    }

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
}
