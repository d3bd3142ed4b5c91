//! Running the in-kernel suites of one configuration so that every test is reported once,
//! even when the kernel panics, hangs or dies.
//!
//! First a `ktest.list` boot names every test in plan order. Then the kernel runs; when a boot
//! ends early, the test that was running (the first listed test without a result) gets an
//! `ERROR` or `TIMEOUT` record, unless the kernel reported it itself before `Bail out!`, and
//! the kernel is booted again with `ktest.skip=<index of the next test without a result>`.
//! [`replay`] applies the same bookkeeping to a captured console log.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::boot::{self, End, Limits, Sinks};
use crate::ktap::{Event, ListedTest, Parser};
use crate::matrix::Config;
use crate::results::{BootCollector, Outcome, TestId, TestRecord};

/// Marker xtask writes into a console log when it kills a hung kernel.
const TIMEOUT_MARKER: &str = "xtask: timeout:";

/// The known tests of one configuration and the results so far.
#[derive(Debug, Default)]
pub struct Tally {
    /// Tests in plan order, from `ktest.list`.
    pub listed: Vec<ListedTest>,
    /// One record per test, in the order they were settled.
    pub records: Vec<TestRecord>,
    /// Plan index of the first test the current boot has not reported yet: every listed
    /// test before it either has a record or got none while later ones did.
    cursor: usize,
}

/// Why a listed test has no result although the kernel went on to the next one.
const NO_RESULT: &str = "no result: the kernel printed no result line for this test";
/// Why a listed test has no result when a captured log ends before the kernel got to it.
pub const NOT_RUN_LOG_ENDS: &str = "not run: the console log ends before this test ran";
/// Why a listed test has no result after a run that finished.
pub const NOT_REPORTED: &str = "no result: the kernel finished the run without reporting this test";

/// How a boot ended, for the bookkeeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// `EXIT:` printed, no `Bail out!`.
    Completed,
    /// Crashed: the one-line reason.
    Crashed(String),
    /// Killed by xtask because the running test hung.
    Hung(String),
}

impl Tally {
    /// Adds a record unless the test already has one; fills in the listed location.
    /// Returns whether it was new.
    pub fn add(&mut self, mut record: TestRecord) -> bool {
        if self.records.iter().any(|r| r.id == record.id) {
            return false;
        }
        if record.location.is_none() {
            record.location = self.listing(&record.id).and_then(|l| l.location.clone());
        }
        self.records.push(record);
        true
    }

    /// A boot starts that runs the plan from index `first` (its `ktest.skip=`).
    pub fn start_boot(&mut self, first: usize) {
        self.cursor = first;
    }

    /// Adds a record the kernel printed. Listed tests this boot passed over without a
    /// result line (console noise where the result should be) are failed first. Returns
    /// every record added, in plan order.
    pub fn observe(&mut self, record: TestRecord) -> Vec<TestRecord> {
        let mut added = Vec::new();
        if let Some(at) = self.position(&record.id)
            && at >= self.cursor
        {
            for index in self.cursor..at {
                let id = TestId::new(
                    self.listed[index].suite.clone(),
                    self.listed[index].name.clone(),
                );
                let gap = TestRecord::synthesized(id, Outcome::Error, NO_RESULT);
                if self.add(gap.clone()) {
                    added.push(gap);
                }
            }
            self.cursor = at + 1;
        }
        if self.add(record.clone()) {
            added.push(self.records.last().cloned().unwrap_or(record));
        }
        added
    }

    fn position(&self, id: &TestId) -> Option<usize> {
        self.listed
            .iter()
            .position(|l| l.suite == id.suite && l.name == id.name)
    }

    /// The listed test this boot was running when it ended: the first one from the cursor
    /// on without a record.
    fn running(&self) -> Option<TestId> {
        self.listed
            .iter()
            .skip(self.cursor)
            .map(|l| TestId::new(l.suite.clone(), l.name.clone()))
            .find(|id| !self.records.iter().any(|r| &r.id == id))
    }

    fn listing(&self, id: &TestId) -> Option<&ListedTest> {
        self.listed
            .iter()
            .find(|l| l.suite == id.suite && l.name == id.name)
    }

    /// Index (in plan order) and id of the first listed test without a record.
    pub fn next_unrecorded(&self) -> Option<(usize, TestId)> {
        self.listed
            .iter()
            .map(|l| TestId::new(l.suite.clone(), l.name.clone()))
            .enumerate()
            .find(|(_, id)| !self.records.iter().any(|r| &r.id == id))
    }

    /// Settles a finished boot: synthesizes the record of the test that was running when it
    /// crashed or hung. Returns the synthesized records (already added).
    pub fn settle(&mut self, boot: &BootCollector, ending: &Ending) -> Vec<TestRecord> {
        let (outcome, reason) = match ending {
            Ending::Completed => return Vec::new(),
            Ending::Crashed(reason) => (Outcome::Error, reason.clone()),
            Ending::Hung(reason) => (Outcome::Timeout, reason.clone()),
        };
        // After `Bail out!` the kernel has already reported the test that panicked.
        let reported_itself = boot.bail_out.is_some()
            && boot
                .records
                .last()
                .is_some_and(|r| r.outcome == Outcome::Error);
        if reported_itself && matches!(ending, Ending::Crashed(_)) {
            return Vec::new();
        }
        if !self.listed.is_empty() {
            let Some(id) = self.running() else {
                return Vec::new();
            };
            let mut record = TestRecord::synthesized(id, outcome, reason);
            attach_trailing(&mut record, boot);
            return if self.add(record.clone()) {
                vec![record]
            } else {
                Vec::new()
            };
        }
        self.settle_unlisted(boot, outcome, reason)
    }

    /// Without a listing only the KTAP plan names what is missing: the running test gets
    /// the crash, and the rest of its suite's plan is failed as not run.
    fn settle_unlisted(
        &mut self,
        boot: &BootCollector,
        outcome: Outcome,
        reason: String,
    ) -> Vec<TestRecord> {
        let suite = boot
            .current_suite
            .clone()
            .unwrap_or_else(|| "kernel".into());
        let after = boot.records.last().map(|r| r.id.name.clone());
        let name = after.map_or("unknown test".into(), |name| {
            format!("unknown test after {name}")
        });
        let mut running =
            TestRecord::synthesized(TestId::new(suite.clone(), name), outcome, reason);
        attach_trailing(&mut running, boot);
        let mut made = vec![running];
        if let Some(plan) = boot.suite_plan {
            let not_run = format!(
                "not run: the kernel stopped after test {} of {plan}",
                boot.suite_results + 1
            );
            for number in boot.suite_results + 2..=plan {
                let id = TestId::new(suite.clone(), format!("test {number} of {plan}"));
                made.push(TestRecord::synthesized(id, Outcome::Error, not_run.clone()));
            }
        }
        made.retain(|record| self.add(record.clone()));
        made
    }

    /// Marks every listed test still without a record as not run (the kernel finished
    /// without reporting them).
    pub fn close(&mut self, reason: &str) -> Vec<TestRecord> {
        let mut added = Vec::new();
        while let Some((_, id)) = self.next_unrecorded() {
            let record = TestRecord::synthesized(id, Outcome::Error, reason);
            self.add(record.clone());
            added.push(record);
        }
        added
    }

    /// Records in plan order, then unlisted ones in arrival order.
    pub fn ordered(mut self) -> Vec<TestRecord> {
        let position = |id: &TestId| {
            self.listed
                .iter()
                .position(|l| l.suite == id.suite && l.name == id.name)
                .unwrap_or(usize::MAX)
        };
        let mut keyed: Vec<_> = std::mem::take(&mut self.records)
            .into_iter()
            .map(|r| (position(&r.id), r))
            .collect();
        keyed.sort_by_key(|(position, _)| *position);
        keyed.into_iter().map(|(_, r)| r).collect()
    }
}

/// The outcome of one configuration.
#[derive(Debug)]
pub struct ConfigRun {
    /// Configuration name.
    pub name: String,
    /// One record per test.
    pub records: Vec<TestRecord>,
    /// How many times the kernel was booted (including the listing boot).
    pub boots: usize,
    /// Crashes and hangs that were recovered from.
    pub incidents: Vec<String>,
    /// An infrastructure error that stopped this configuration.
    pub infra_error: Option<String>,
    /// The raw console log of all boots.
    pub console_log: PathBuf,
}

/// What to boot.
#[derive(Debug)]
pub struct Target<'a> {
    /// The QEMU binary.
    pub qemu: &'a Path,
    /// The kernel image.
    pub kernel: &'a Path,
    /// The configuration.
    pub config: &'a Config,
    /// Kernel arguments added after the configuration's (e.g. `ktest.filter=`).
    pub extra_kernel_args: &'a [String],
}

/// Runs every test of one configuration, recovering from crashes and hangs. `on_record` sees
/// every record (also synthesized ones) as soon as it is known.
pub fn run_config(
    target: &Target<'_>,
    log_path: &Path,
    on_record: &mut dyn FnMut(&TestRecord),
) -> Result<ConfigRun> {
    let config = target.config;
    let mut log =
        File::create(log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let mut run = ConfigRun {
        name: config.name.clone(),
        records: Vec::new(),
        boots: 0,
        incidents: Vec::new(),
        infra_error: None,
        console_log: log_path.to_path_buf(),
    };
    let limits = Limits {
        per_test: Some(config.test_timeout),
        total: None,
    };
    let base_args: Vec<String> = config
        .append
        .iter()
        .chain(target.extra_kernel_args)
        .cloned()
        .collect();
    let mut tally = Tally::default();

    let mut list_args = base_args.clone();
    list_args.push("ktest.list".into());
    let listing = boot_logged(
        target,
        &list_args,
        limits,
        &mut log,
        &mut run.boots,
        &mut |_| {},
    )?;
    if let Some(error) = listing.infrastructure_error() {
        run.infra_error = Some(error);
        return Ok(run);
    }
    tally.listed = listing.collector.listed.clone();
    if listing.collector.exit_status != Some(77) || listing.failure_reason().is_some() {
        let reason = listing.failure_reason().unwrap_or_else(|| {
            format!(
                "ktest.list ended with EXIT: STATUS={:?}, expected 77",
                listing.collector.exit_status
            )
        });
        let record =
            TestRecord::synthesized(TestId::new("ktest", "list"), Outcome::Error, reason.clone());
        on_record(&record);
        run.records.push(record);
        run.incidents
            .push(format!("listing the tests failed: {reason}"));
        return Ok(run);
    }

    let mut skip = 0;
    for _ in 0..=tally.listed.len() {
        let Some((index, _)) = tally.next_unrecorded() else {
            break;
        };
        skip = skip.max(index);
        let mut args = base_args.clone();
        if skip > 0 {
            args.push(format!("ktest.skip={skip}"));
        }
        tally.start_boot(skip);
        let mut live = |record: &TestRecord| {
            for added in tally.observe(record.clone()) {
                on_record(&added);
            }
        };
        let outcome = boot_logged(target, &args, limits, &mut log, &mut run.boots, &mut live)?;
        if let Some(error) = outcome.infrastructure_error() {
            run.infra_error = Some(error);
            break;
        }
        let ending = match (outcome.end, outcome.failure_reason()) {
            (_, None) => Ending::Completed,
            (End::TestTimeout(_), Some(reason)) => {
                writeln!(log, "{TIMEOUT_MARKER} {reason}, QEMU killed")
                    .context("writing the console log")?;
                Ending::Hung(reason)
            }
            (_, Some(reason)) => Ending::Crashed(reason),
        };
        if let Ending::Crashed(reason) | Ending::Hung(reason) = &ending {
            run.incidents.push(format!("boot {}: {reason}", run.boots));
        }
        for record in tally.settle(&outcome.collector, &ending) {
            on_record(&record);
        }
        if ending == Ending::Completed {
            for record in tally.close(NOT_REPORTED) {
                on_record(&record);
            }
            break;
        }
    }
    run.records = tally.ordered();
    Ok(run)
}

fn boot_logged(
    target: &Target<'_>,
    kernel_args: &[String],
    limits: Limits,
    log: &mut File,
    boots: &mut usize,
    on_record: &mut dyn FnMut(&TestRecord),
) -> Result<boot::BootOutcome> {
    *boots += 1;
    let args = target.config.machine.args(target.kernel, kernel_args);
    let command = crate::qemu::display_command(target.qemu, &args);
    writeln!(
        log,
        "xtask: boot {} ({}): {command}",
        boots, target.config.name
    )
    .context("writing the console log")?;
    boot::boot(
        target.qemu,
        &args,
        limits,
        Sinks {
            log,
            echo: false,
            on_record,
        },
    )
}

/// Gives a test that never printed its result what it did print: the diagnostics since
/// the previous result (a crash report, a panic message), or at least the panic.
fn attach_trailing(record: &mut TestRecord, boot: &BootCollector) {
    if boot.trailing.is_empty() {
        if let Some(panic) = &boot.panic_message {
            record.diagnostics.push(format!("panic: {panic}"));
        }
    } else {
        record.diagnostics.extend(boot.trailing.iter().cloned());
    }
}

/// Turns a captured console log (one or several boots, e.g. xtask's own `console.log` or a
/// z/VM spool file) into records, with the same crash bookkeeping as a live run.
pub fn replay(bytes: &[u8]) -> Vec<TestRecord> {
    let mut parser = Parser::new();
    let mut events = parser.push(bytes);
    events.extend(parser.finish());
    let mut tally = Tally::default();
    let mut boot = BootCollector::new();
    let mut hung = None;
    let mut started = false;
    let settle = |tally: &mut Tally, boot: &BootCollector, hung: &Option<String>, next: &str| {
        if boot.is_listing() {
            return;
        }
        let ending = match (hung, boot.completed()) {
            (Some(reason), _) => Ending::Hung(reason.clone()),
            (None, true) => Ending::Completed,
            (None, false) => Ending::Crashed(
                boot.crash_reason()
                    .unwrap_or_else(|| format!("{next} before EXIT: line")),
            ),
        };
        tally.settle(boot, &ending);
    };
    for event in &events {
        if matches!(event, Event::Version { depth: 0, .. }) {
            if started {
                settle(&mut tally, &boot, &hung, "the next boot started");
            }
            boot = BootCollector::new();
            hung = None;
            started = true;
            let first = tally
                .next_unrecorded()
                .map_or(tally.listed.len(), |(index, _)| index);
            tally.start_boot(first);
        }
        if let Event::Noise(text) = event
            && let Some(reason) = text.strip_prefix(TIMEOUT_MARKER)
        {
            hung = Some(reason.trim().trim_end_matches(", QEMU killed").to_string());
        }
        if let Some(record) = boot.observe(event) {
            tally.observe(record.clone());
        }
        if let Event::Listed(listed) = event
            && !tally.listed.contains(listed)
        {
            tally.listed.push(listed.clone());
        }
    }
    if started {
        settle(&mut tally, &boot, &hung, "the console log ends");
        if boot.completed() && !boot.is_listing() {
            tally.close(NOT_REPORTED);
        } else {
            tally.close(NOT_RUN_LOG_ENDS);
        }
    }
    tally.ordered()
}

#[cfg(test)]
mod injection_tests;

#[cfg(test)]
mod tests {
    use super::*;

    const LIST: &str = "\
KTAP version 1
1..2
# test: a.one file=t/a.rs:1 flags=
# test: a.two file=t/a.rs:2 flags=
# test: b.three file=t/b.rs:3 flags=slow
# test: b.four file=t/b.rs:4 flags=
EXIT: STATUS=77
";

    fn summary(records: &[TestRecord]) -> Vec<(String, Outcome)> {
        records
            .iter()
            .map(|r| (r.id.to_string(), r.outcome))
            .collect()
    }

    #[test]
    fn replay_of_a_panic_then_a_hang_then_a_resumed_boot() {
        let log = format!(
            "{LIST}xtask: boot 2 (default): qemu ...
KTAP version 1
1..2
    # Subtest: a
    1..2
    ok 1 one
    # panic: boom at t/a.rs:9
    not ok 2 two # ERROR panic: boom
Bail out! panic in a.two
EXIT: STATUS=3
xtask: boot 3 (default): qemu ... ktest.skip=2
KTAP version 1
1..2
    # Subtest: b
    1..2
xtask: timeout: timeout: no test result for 60 s, QEMU killed
xtask: boot 4 (default): qemu ... ktest.skip=3
KTAP version 1
1..2
    # Subtest: b
    1..2
    ok 4 four
ok 2 b
# Totals: pass:1 fail:0 skip:0 total:1
EXIT: STATUS=3
"
        );
        let records = replay(log.as_bytes());
        assert_eq!(
            summary(&records),
            [
                ("a.one".into(), Outcome::Pass),
                ("a.two".into(), Outcome::Error),
                ("b.three".into(), Outcome::Timeout),
                ("b.four".into(), Outcome::Pass),
            ]
        );
        assert_eq!(records[2].reason, "timeout: no test result for 60 s");
        assert_eq!(records[2].location.as_deref(), Some("t/b.rs:3"));
    }

    #[test]
    fn a_crash_report_stays_with_the_test_that_crashed() {
        let log = format!(
            "{LIST}KTAP version 1
1..2
    # Subtest: a
    1..2
    ok 1 one
    # unexpected machine-check interruption: code 0x1
    # r0-r3: 0000000000000001 0000000000000002 0000000000000003 0000000000000004
Bail out! unexpected interruption
EXIT: STATUS=3
KTAP version 1
1..2
    # Subtest: b
    1..2
    # time_us: 5
    ok 3 three
    ok 4 four
ok 2 b
# Totals: pass:2 fail:0 skip:0 total:2
EXIT: STATUS=1
"
        );
        let records = replay(log.as_bytes());
        assert_eq!(summary(&records)[1], ("a.two".into(), Outcome::Error));
        assert!(
            records[1]
                .diagnostics
                .iter()
                .any(|d| d.starts_with("r0-r3:")),
            "{:?}",
            records[1].diagnostics
        );
        assert!(
            records[2].diagnostics.iter().all(|d| !d.contains("r0-r3")),
            "the dump landed on the next boot's first test: {:?}",
            records[2].diagnostics
        );
    }

    #[test]
    fn replay_marks_the_running_test_when_the_log_is_truncated() {
        let log = format!(
            "{LIST}KTAP version 1\n1..2\n    # Subtest: a\n    1..2\n    ok 1 one\n    # half a li"
        );
        let records = replay(log.as_bytes());
        assert_eq!(summary(&records)[1], ("a.two".into(), Outcome::Error));
        assert_eq!(records[1].reason, "the console log ends before EXIT: line");
        assert_eq!(
            summary(&records)[2..],
            [
                ("b.three".into(), Outcome::Error),
                ("b.four".into(), Outcome::Error)
            ],
            "tests after the crash are not run, not forgotten"
        );
        assert_eq!(records[3].reason, NOT_RUN_LOG_ENDS);
    }

    #[test]
    fn replay_without_a_listing_names_the_unknown_test() {
        let records = replay(b"KTAP version 1\n1..1\n    # Subtest: s\n    1..3\n    ok 1 x\n");
        assert_eq!(
            summary(&records),
            [
                ("s.x".into(), Outcome::Pass),
                ("s.unknown test after x".into(), Outcome::Error),
                ("s.test 3 of 3".into(), Outcome::Error)
            ]
        );
    }

    #[test]
    fn completed_run_closes_unreported_tests() {
        let log = format!(
            "{LIST}KTAP version 1\n1..1\n    # Subtest: a\n    ok 1 one\n    ok 2 two\nok 1 a\n# Totals: pass:2 fail:0 skip:0 total:2\nEXIT: STATUS=1\n"
        );
        let records = replay(log.as_bytes());
        assert_eq!(records.len(), 4);
        assert_eq!(records[2].reason, NOT_REPORTED);
        assert_eq!(records[3].outcome, Outcome::Error);
    }

    #[test]
    fn replay_of_an_early_exit_fails_the_running_test_and_the_rest() {
        let log = format!(
            "{LIST}KTAP version 1\n1..2\n    # Subtest: a\n    1..2\n    ok 1 one\nEXIT: STATUS=1\n"
        );
        let records = replay(log.as_bytes());
        assert_eq!(
            summary(&records),
            [
                ("a.one".into(), Outcome::Pass),
                ("a.two".into(), Outcome::Error),
                ("b.three".into(), Outcome::Error),
                ("b.four".into(), Outcome::Error),
            ]
        );
        assert_eq!(
            records[1].reason,
            "kernel exited (EXIT: STATUS=1) before the plan completed"
        );
        assert_eq!(records[2].reason, NOT_RUN_LOG_ENDS);
    }

    #[test]
    fn a_test_without_a_result_line_fails_and_its_neighbours_keep_theirs() {
        let log = format!(
            "{LIST}KTAP version 1\n1..2\n    # Subtest: a\n    1..2\n    ok 1 one\n\
             \x01#\x7f\nnt ok 1 ##\n    not ok x y\nKTAP versio\n    okay 3\n\
             ok 1 a\n    # Subtest: b\n    1..2\n    ok 1 three\n    ok 2 four\nok 2 b\n\
             # Totals: pass:3 fail:1 skip:0 total:4\nEXIT: STATUS=3\n"
        );
        let records = replay(log.as_bytes());
        assert_eq!(
            summary(&records),
            [
                ("a.one".into(), Outcome::Pass),
                ("a.two".into(), Outcome::Error),
                ("b.three".into(), Outcome::Pass),
                ("b.four".into(), Outcome::Pass),
            ]
        );
        assert_eq!(records[1].reason, NO_RESULT);
    }

    #[test]
    fn a_hang_after_a_missing_result_times_out_the_test_that_hung() {
        let mut tally = Tally {
            listed: parse_list(LIST),
            ..Tally::default()
        };
        tally.start_boot(0);
        let pass = |name: &str| TestRecord::synthesized(TestId::new("b", name), Outcome::Pass, "");
        let added = tally.observe(pass("three"));
        assert_eq!(
            summary(&added),
            [
                ("a.one".into(), Outcome::Error),
                ("a.two".into(), Outcome::Error),
                ("b.three".into(), Outcome::Pass)
            ]
        );
        let made = tally.settle(&BootCollector::new(), &Ending::Hung("slow".into()));
        assert_eq!(summary(&made), [("b.four".into(), Outcome::Timeout)]);
        assert!(tally.observe(pass("three")).is_empty(), "settled once");
    }

    #[test]
    fn tally_settles_each_test_once() {
        let mut tally = Tally {
            listed: parse_list(LIST),
            ..Tally::default()
        };
        assert!(tally.add(TestRecord::synthesized(
            TestId::new("a", "one"),
            Outcome::Pass,
            ""
        )));
        assert!(!tally.add(TestRecord::synthesized(
            TestId::new("a", "one"),
            Outcome::Fail,
            ""
        )));
        assert_eq!(tally.next_unrecorded(), Some((1, TestId::new("a", "two"))));
        let boot = BootCollector::new();
        let made = tally.settle(&boot, &Ending::Hung("slow".into()));
        assert_eq!(summary(&made), [("a.two".into(), Outcome::Timeout)]);
        assert!(tally.settle(&boot, &Ending::Completed).is_empty());
        assert_eq!(tally.close("gone").len(), 2);
        assert_eq!(tally.next_unrecorded(), None);
    }

    fn parse_list(text: &str) -> Vec<ListedTest> {
        Parser::new()
            .push(text.as_bytes())
            .into_iter()
            .filter_map(|e| match e {
                Event::Listed(l) => Some(l),
                _ => None,
            })
            .collect()
    }
}
