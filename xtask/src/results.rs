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

/// Most diagnostics kept for a test that never printed its result.
const MAX_TRAILING: usize = 64;

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
    /// Diagnostics inside a suite since its last result: what a test that never printed
    /// its result line (a crash, a hang) left, e.g. a crash report's register dump.
    pub trailing: Vec<String>,
    /// The suite currently running (last `# Subtest:` at depth 1).
    pub current_suite: Option<String>,
    /// Tests announced by `ktest.list`.
    pub listed: Vec<crate::ktap::ListedTest>,
    /// Number of top-level `KTAP version` lines seen (more than one: several boots in one log).
    pub top_level_headers: usize,
    /// The top-level `# run_us:` (guest time of the whole run), if printed.
    pub run_us: Option<u64>,
    /// Sum of the tests' `# time_us:` (guest time inside the test bodies).
    pub tests_time_us: u64,
    /// Test results that came without `# time_us:`.
    pub untimed_results: usize,
    /// Whether the run's closing `# Totals:` line (top level) was printed: the kernel went
    /// through its whole plan. An `EXIT:` without it means the kernel stopped early.
    pub totals_seen: bool,
    /// The top-level plan (`1..N` suites), if printed.
    pub top_plan: Option<u64>,
    /// The plan of the suite currently running (`1..N` after its `# Subtest:`).
    pub suite_plan: Option<u64>,
    /// Results printed so far in the suite currently running.
    pub suite_results: u64,
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
            trailing: Vec::new(),
            current_suite: None,
            listed: Vec::new(),
            top_level_headers: 0,
            run_us: None,
            tests_time_us: 0,
            untimed_results: 0,
            totals_seen: false,
            top_plan: None,
            suite_plan: None,
            suite_results: 0,
            last_result_at: Instant::now(),
        }
    }

    /// Consumes one event; returns the test record it completed, if any.
    pub fn observe(&mut self, event: &Event) -> Option<&TestRecord> {
        match event {
            Event::Version { depth: 0, .. } => self.top_level_headers += 1,
            Event::Subtest { depth: 1, name } => {
                self.current_suite = Some(name.clone());
                self.suite_plan = None;
                self.suite_results = 0;
                self.last_result_at = Instant::now();
            }
            Event::Plan { depth: 0, count } => self.top_plan = Some(*count),
            Event::Plan { depth: 1, count } => self.suite_plan = Some(*count),
            Event::Diagnostic { text, depth } => {
                if *depth >= 1 && self.trailing.len() < MAX_TRAILING {
                    self.trailing.push(text.clone());
                }
                if let Some(message) = text.strip_prefix("panic:") {
                    self.panic_message = Some(message.trim().to_string());
                } else if *depth == 0 && text.starts_with("Totals:") {
                    self.totals_seen = true;
                } else if *depth == 0
                    && let Some(us) = microseconds(text, "run_us:")
                {
                    self.run_us = Some(us);
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
                self.suite_results += 1;
                self.trailing.clear();
                let (record, guest_us) = record_from(suite, result, wall);
                match guest_us {
                    Some(us) => self.tests_time_us += us,
                    None => self.untimed_results += 1,
                }
                self.records.push(record);
                return self.records.last();
            }
            _ => {}
        }
        None
    }

    /// Whether the kernel ended normally: `EXIT:` printed, no `Bail out!`, and either the
    /// run's closing `# Totals:` printed or the boot only listed tests (`ktest.list`).
    pub fn completed(&self) -> bool {
        self.exit_status.is_some()
            && self.bail_out.is_none()
            && (self.totals_seen || self.is_listing())
    }

    /// Whether this boot listed tests (`ktest.list`) instead of running them: test lines
    /// (or an empty plan) and no suite started.
    pub fn is_listing(&self) -> bool {
        self.current_suite.is_none()
            && self.records.is_empty()
            && (!self.listed.is_empty() || self.top_plan == Some(0))
    }

    /// The best one-line description of why this boot crashed.
    pub fn crash_reason(&self) -> Option<String> {
        if let Some(message) = &self.panic_message {
            return Some(format!("kernel panicked: {message}"));
        }
        if let Some(reason) = &self.bail_out {
            return Some(format!("Bail out! {reason}"));
        }
        match self.exit_status {
            Some(status) if !self.completed() => Some(format!(
                "kernel exited (EXIT: STATUS={status}) before the plan completed"
            )),
            _ => None,
        }
    }
}

/// `key: N` -> `N`.
fn microseconds(text: &str, key: &str) -> Option<u64> {
    text.strip_prefix(key)?.trim().parse().ok()
}

/// The record of a result line, and the guest time (`# time_us:`) when the kernel printed it.
fn record_from(suite: String, result: &ResultLine, wall: Duration) -> (TestRecord, Option<u64>) {
    let mut diagnostics = Vec::new();
    let mut guest_us = None;
    for text in &result.diagnostics {
        match microseconds(text, "time_us:") {
            Some(us) => guest_us = Some(us),
            None => diagnostics.push(text.clone()),
        }
    }
    let record = TestRecord {
        id: TestId::new(suite, result.name.clone()),
        outcome: Outcome::from_result(result),
        reason: result.reason.clone(),
        diagnostics,
        duration: Some(guest_us.map_or(wall, Duration::from_micros)),
        location: None,
    };
    (record, guest_us)
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
             \x20   # check failed: 1 != 2\n    not ok 2 b\n    not ok 3 c # XFAIL known bug\nnot ok 1 s\n\
             # Totals: pass:2 fail:1 skip:0 total:3\nEXIT: STATUS=3\n",
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
    fn guest_times_are_summed_and_run_us_is_read_at_the_top_level_only() {
        let collector = collect(
            "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..3\n\
             \x20   # time_us: 250\n    ok 1 a\n    # time_us: 40\n    ok 2 b\n    ok 3 c\n\
             ok 1 s\n# Totals: pass:3 fail:0 skip:0 total:3\n# run_us: 1234\n    # run_us: 7\nEXIT: STATUS=1\n",
        );
        assert_eq!(collector.records.len(), 3);
        assert_eq!(collector.tests_time_us, 290);
        assert_eq!(collector.untimed_results, 1);
        assert_eq!(collector.run_us, Some(1234));
        assert_eq!(collect("# run_us: soon\n").run_us, None);
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
    fn an_exit_before_the_closing_totals_is_an_early_exit() {
        let early = collect(
            "KTAP version 1\n1..1\n    # Subtest: s\n    1..3\n    ok 1 a\nEXIT: STATUS=1\n",
        );
        assert!(!early.completed());
        assert_eq!((early.suite_plan, early.suite_results), (Some(3), 1));
        assert_eq!(
            early.crash_reason().as_deref(),
            Some("kernel exited (EXIT: STATUS=1) before the plan completed")
        );
        let listing = collect("KTAP version 1\n1..0\nEXIT: STATUS=77\n");
        assert!(listing.is_listing() && listing.completed());
        assert_eq!(listing.crash_reason(), None);
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
