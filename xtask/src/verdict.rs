//! The verdict: whether a run of the kernel passed, decided in one place for `run`, `test`
//! and `parse` (and documented in `docs/verdict.md` and `cargo xtask parse --help`).
//!
//! [`Boot`] checks one boot's console line by line against the one KTAP v1 document the
//! kernel prints (header, descriptors of the plan, a plan, suites with their plans, totals,
//! `EXIT:`), turns result lines into [`TestRecord`]s and names every deviation with its line.
//! [`Run`] joins the boots of one configuration (recovery boots after a crash) and settles
//! every planned test exactly once; [`Log`] splits a captured console log into boots and
//! feeds them through the same two, a line at a time, so `parse` needs no more memory for a
//! long log than for a short one.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use crate::ktap::{Directive, Event, Lines, ListedTest, Parser, ResultLine};
use crate::results::{Counts, Outcome, TestId, TestRecord};

/// The rule, as `cargo xtask parse --help` shows it.
pub const RULE: &str = "\
Verdict (the same for run, test and parse; docs/verdict.md):
A run passes only if every boot that ran printed one complete KTAP v1 document and reached
its completion marker (`# Totals:` then `EXIT: STATUS=1`, or 77 when every test skipped, the
status agreeing with the results); every planned test (the top-level plan, each suite's plan
and the kernel's `# test:` descriptors) has exactly one final result and none failed; no
`Bail out!`; no suite-level `not ok` and no suite result that contradicts its tests; no test
reported twice; no line inside the document that is not KTAP. Anything else fails (exit 1)
and the reason names the test or the line; planned tests without a result appear in the
reports as errors (`not run: ...`). Infrastructure and usage errors (QEMU could not start or
was killed from outside, a filter that matches no test, unreadable input) exit 2.";

/// Why a planned test has no result although the kernel went on to the next one.
pub const NO_RESULT: &str = "no result: the kernel printed no result line for this test";
/// Why a planned test has no result after a run that finished.
pub const NOT_REPORTED: &str = "no result: the kernel finished the run without reporting this test";

/// Shape problems kept per boot; the rest are counted.
const MAX_PROBLEMS: usize = 32;
/// Boots whose problems get a record of their own; later ones are counted in one more
/// record (a log of thousands of broken boots must not grow without bound).
const MAX_PROBLEM_RECORDS: usize = 100;
/// Diagnostics kept for a test that never printed its result (a crash report).
const MAX_TRAILING: usize = 64;
/// Longest excerpt of an offending line quoted in a problem.
const QUOTE: usize = 100;

/// What the run's KTAP header says about it (`# zhint:` and `# command line:`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Header {
    /// `seed=` as printed.
    pub seed: Option<String>,
    /// `filter=`.
    pub filter: Option<String>,
    /// `skip=`: how many planned tests an earlier boot already ran.
    pub skip: usize,
    /// `order=` (`sorted` or `shuffled`).
    pub order: Option<String>,
    /// The kernel command line.
    pub command_line: Option<String>,
}

impl Header {
    fn read(&mut self, text: &str) -> bool {
        if let Some(line) = text.strip_prefix("command line:") {
            self.command_line = Some(line.trim().to_string());
            return true;
        }
        let Some(fields) = text.strip_prefix("zhint:") else {
            return false;
        };
        for field in fields.split_whitespace() {
            match field.split_once('=') {
                Some(("seed", v)) => self.seed = Some(v.to_string()),
                Some(("filter", v)) => self.filter = Some(v.to_string()),
                Some(("skip", v)) => self.skip = v.parse().unwrap_or(0),
                Some(("order", v)) => self.order = Some(v.to_string()),
                _ => {}
            }
        }
        true
    }
}

/// How a boot's console ended, as far as the host knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum End {
    /// The console closed by itself (QEMU exited, or the log goes on with the next boot or
    /// ends); the text says how, for when the kernel had not finished.
    Closed(String),
    /// The host stopped a test that ran too long.
    Hung(String),
    /// Something outside the kernel ended it: an infrastructure error.
    Killed(String),
    /// The user interrupted xtask.
    Interrupted,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// Before `KTAP version 1`: the banner.
    Preamble,
    /// After the version line, before the plan: identification and descriptors.
    Header,
    /// Between suites.
    Between,
    /// Inside a suite.
    Suite,
    /// After `# Totals:`.
    Closed,
    /// After `EXIT:`.
    Exited,
    /// After `Bail out!`.
    Bailed,
}

#[derive(Debug)]
struct OpenSuite {
    name: String,
    number: u64,
    plan: Option<u64>,
    results: u64,
    counts: Counts,
    line: u64,
    /// Its `# name: pass:...` line was printed.
    totals_seen: bool,
}

/// One boot: its console checked against the KTAP document the kernel prints, its results,
/// and every way it fell short.
#[derive(Debug)]
pub struct Boot {
    /// 1-based number of the boot in its run or log.
    pub number: usize,
    stage: Stage,
    /// The run's identification.
    pub header: Header,
    /// The descriptors (`# test:`): every test of the plan, in run order.
    pub planned: Vec<ListedTest>,
    /// Results of this boot (and the records synthesized for it), in the order settled.
    pub records: Vec<TestRecord>,
    result_lines: HashMap<TestId, u64>,
    /// Index into `planned` of the next test this boot should report.
    next: usize,
    top_plan: Option<u64>,
    suites_closed: u64,
    suite: Option<OpenSuite>,
    counts: Counts,
    problems: Vec<String>,
    problems_dropped: usize,
    crash: Option<String>,
    /// `EXIT: STATUS=` value, if printed.
    pub exit_status: Option<i64>,
    /// `Bail out!` reason, if printed.
    pub bail_out: Option<String>,
    /// A `Bail out! usage: ...`: the command line asked for something impossible.
    pub usage_error: Option<String>,
    /// The last `# panic:` diagnostic, if any.
    pub panic_message: Option<String>,
    trailing: Vec<String>,
    /// The top-level `# run_us:` (guest time of the whole run), if printed.
    pub run_us: Option<u64>,
    /// Sum of the tests' `# time_us:`.
    pub tests_time_us: u64,
    /// Test results that came without `# time_us:`.
    pub untimed_results: usize,
    totals_seen: bool,
    last_result_at: Instant,
    /// Line of the last result line, and of the `Bail out!`: a bail-out right after a
    /// result line is the kernel reporting the test that crashed (its panic path).
    last_result_line: u64,
    bail_line: u64,
    /// The last line number seen.
    pub last_line: u64,
    ended: bool,
}

impl Boot {
    /// A boot whose output starts now.
    pub fn new(number: usize) -> Self {
        Self {
            number,
            stage: Stage::Preamble,
            header: Header::default(),
            planned: Vec::new(),
            records: Vec::new(),
            result_lines: HashMap::new(),
            next: 0,
            top_plan: None,
            suites_closed: 0,
            suite: None,
            counts: Counts::default(),
            problems: Vec::new(),
            problems_dropped: 0,
            crash: None,
            exit_status: None,
            bail_out: None,
            usage_error: None,
            panic_message: None,
            trailing: Vec::new(),
            run_us: None,
            tests_time_us: 0,
            untimed_results: 0,
            totals_seen: false,
            last_result_at: Instant::now(),
            last_result_line: 0,
            bail_line: 0,
            last_line: 0,
            ended: false,
        }
    }

    /// Whether the KTAP document has started (`KTAP version` seen).
    pub fn started(&self) -> bool {
        self.stage != Stage::Preamble
    }

    /// Whether the kernel went through its whole plan and printed its completion marker.
    pub fn completed(&self) -> bool {
        self.stage == Stage::Exited && self.crash.is_none() && self.totals_seen
    }

    /// Why the boot did not end cleanly: the crash, else the first problem with the shape of
    /// its output. Failing tests are not in here; they are records.
    pub fn failure_reason(&self) -> Option<String> {
        if let Some(crash) = &self.crash {
            return Some(crash.clone());
        }
        if let Some(problem) = self.problems.first() {
            return Some(problem.clone());
        }
        (!self.completed()).then(|| "the kernel did not finish its run".to_string())
    }

    /// Every problem with the shape of the output, each naming its line.
    pub fn problems(&self) -> Vec<String> {
        let mut all = self.problems.clone();
        if self.problems_dropped > 0 {
            all.push(format!("({} more problems)", self.problems_dropped));
        }
        all
    }

    fn problem(&mut self, line: u64, text: impl std::fmt::Display) {
        if self.problems.len() < MAX_PROBLEMS {
            self.problems.push(format!("line {line}: {text}"));
        } else {
            self.problems_dropped += 1;
        }
    }

    fn crash(&mut self, reason: String) {
        self.crash.get_or_insert(reason);
    }

    /// The test this boot should report next, by the descriptors.
    fn expected(&self) -> Option<&ListedTest> {
        self.planned.get(self.header.skip + self.next)
    }

    /// Consumes the event of line `line`; returns the records it settled (a result, and
    /// the planned tests it passed over without a result line).
    pub fn observe(&mut self, line: u64, event: &Event) -> Vec<TestRecord> {
        self.last_line = line;
        let mut settled = Vec::new();
        match event {
            Event::Version { depth: 0, version } => {
                if self.stage == Stage::Preamble {
                    if *version != 1 {
                        self.problem(line, format!("KTAP version {version}, expected 1"));
                    }
                    self.stage = Stage::Header;
                } else {
                    self.problem(line, "a second KTAP header inside one boot's document");
                }
            }
            Event::Version { depth: 1, .. } => {
                if self.stage != Stage::Between {
                    self.out_of_place(line, "subtest `KTAP version`");
                }
            }
            Event::Subtest { depth: 1, name } => self.open_suite(line, name),
            Event::Plan { depth: 0, count } => {
                if self.stage == Stage::Header {
                    self.top_plan = Some(*count);
                    self.stage = Stage::Between;
                } else {
                    self.out_of_place(line, "top-level plan");
                }
            }
            Event::Plan { depth: 1, count } => match &mut self.suite {
                Some(suite) if self.stage == Stage::Suite && suite.plan.is_none() => {
                    suite.plan = Some(*count);
                    if suite.results > 0 {
                        self.problem(line, "a suite plan after the suite's first result");
                    }
                }
                _ => self.out_of_place(line, "suite plan"),
            },
            Event::Listed(listed) => {
                if self.stage == Stage::Header {
                    self.planned.push(listed.clone());
                }
            }
            Event::Diagnostic { depth, text } => self.diagnostic(line, *depth, text),
            Event::Result(result) if result.depth == 1 => {
                settled = self.test_result(line, result);
            }
            Event::Result(result) if result.depth == 0 => self.suite_result(line, result),
            Event::Result(result) => {
                self.problem(line, format!("a nested result at depth {}", result.depth))
            }
            Event::BailOut { reason } => {
                if self.stage == Stage::Exited {
                    self.out_of_place(line, "`Bail out!`");
                }
                self.bail_out = Some(reason.clone());
                self.bail_line = line;
                if let Some(usage) = reason.strip_prefix("usage:") {
                    self.usage_error = Some(usage.trim().to_string());
                }
                let crash = match &self.panic_message {
                    Some(message) if self.usage_error.is_none() => {
                        format!("kernel panicked: {message}")
                    }
                    _ => format!("Bail out! {reason}"),
                };
                self.crash(crash);
                self.stage = Stage::Bailed;
            }
            Event::Exit { status } => self.exit(line, *status),
            Event::Noise(text) => {
                if !matches!(self.stage, Stage::Preamble | Stage::Exited | Stage::Bailed) {
                    self.problem(line, format!("not a KTAP line: `{}`", quote(text)));
                }
            }
            Event::Version { .. } | Event::Subtest { .. } | Event::Plan { .. } => {
                self.problem(line, "KTAP nesting deeper than suites and tests");
            }
        }
        settled
    }

    fn out_of_place(&mut self, line: u64, what: &str) {
        let stage = match self.stage {
            Stage::Preamble => "before the `KTAP version 1` header",
            Stage::Header => "before the top-level plan",
            Stage::Between => "between suites",
            Stage::Suite => "inside a suite",
            Stage::Closed => "after `# Totals:`",
            Stage::Exited => "after the completion marker `EXIT:`",
            Stage::Bailed => "after `Bail out!`",
        };
        self.problem(line, format!("{what} {stage}"));
    }

    fn open_suite(&mut self, line: u64, name: &str) {
        if self.stage != Stage::Between {
            self.out_of_place(line, &format!("suite `{name}`"));
            if self.stage != Stage::Suite {
                return;
            }
        }
        if let Some(expected) = self.expected()
            && expected.suite != name
        {
            let expected = format!("{}.{}", expected.suite, expected.name);
            self.problem(
                line,
                format!("suite `{name}` starts, but the plan's next test is `{expected}`"),
            );
        }
        self.suite = Some(OpenSuite {
            name: name.to_string(),
            number: self.suites_closed + 1,
            plan: None,
            results: 0,
            counts: Counts::default(),
            line,
            totals_seen: false,
        });
        self.trailing.clear();
        self.stage = Stage::Suite;
        self.last_result_at = Instant::now();
    }

    fn diagnostic(&mut self, line: u64, depth: usize, text: &str) {
        if let Some(message) = text.strip_prefix("panic:") {
            self.panic_message = Some(message.trim().to_string());
        }
        if depth >= 1 && self.trailing.len() < MAX_TRAILING {
            self.trailing.push(text.to_string());
        }
        if depth != 0 {
            return;
        }
        match self.stage {
            Stage::Header => {
                self.header.read(text);
            }
            Stage::Suite => {
                let Some(suite) = &mut self.suite else { return };
                if let Some(counts) = text
                    .strip_prefix(suite.name.as_str())
                    .and_then(|rest| rest.strip_prefix(':'))
                    .and_then(parse_counts)
                {
                    let got = suite.counts;
                    suite.totals_seen = true;
                    if counts != got {
                        let name = suite.name.clone();
                        self.problem(
                            line,
                            format!(
                                "suite `{name}` totals say {} but its results are {}",
                                show(counts),
                                show(got)
                            ),
                        );
                    }
                }
            }
            Stage::Between => {
                if let Some(counts) = text.strip_prefix("Totals:").and_then(parse_counts) {
                    self.totals(line, counts);
                }
            }
            Stage::Closed => {
                if let Some(us) = text
                    .strip_prefix("run_us:")
                    .and_then(|v| v.trim().parse().ok())
                {
                    self.run_us = Some(us);
                }
            }
            Stage::Preamble | Stage::Exited | Stage::Bailed => {}
        }
    }

    fn totals(&mut self, line: u64, counts: Counts) {
        self.totals_seen = true;
        self.stage = Stage::Closed;
        if let Some(plan) = self.top_plan
            && plan != self.suites_closed
        {
            self.problem(
                line,
                format!(
                    "the plan 1..{plan} announced {plan} suites, {} reported",
                    self.suites_closed
                ),
            );
        }
        if counts != self.counts {
            self.problem(
                line,
                format!(
                    "`# Totals:` say {} but the results are {}",
                    show(counts),
                    show(self.counts)
                ),
            );
        }
        let planned_here = self.planned.len().saturating_sub(self.header.skip);
        if !self.planned.is_empty() && self.next < planned_here {
            let missing: Vec<String> = self.planned[self.header.skip + self.next..]
                .iter()
                .take(5)
                .map(|l| format!("{}.{}", l.suite, l.name))
                .collect();
            self.problem(
                line,
                format!(
                    "{} planned test(s) without a result (first: {})",
                    planned_here - self.next,
                    missing.join(", ")
                ),
            );
        }
    }

    fn test_result(&mut self, line: u64, result: &ResultLine) -> Vec<TestRecord> {
        let mut settled = Vec::new();
        let Some(suite) = self.suite.as_ref().filter(|_| self.stage == Stage::Suite) else {
            self.out_of_place(line, &format!("result `{}`", result.name));
            return settled;
        };
        let id = TestId::new(suite.name.clone(), result.name.clone());
        let (expected_number, plan) = (suite.results + 1, suite.plan);
        if result.number != expected_number {
            self.problem(
                line,
                format!(
                    "`{id}` is numbered {}, expected {expected_number}",
                    result.number
                ),
            );
        }
        match plan {
            None => self.problem(line, format!("`{id}` before its suite's plan")),
            Some(plan) if expected_number > plan => self.problem(
                line,
                format!("`{id}` is result {expected_number} of a suite planned 1..{plan}"),
            ),
            Some(_) => {}
        }
        let location = self.follow_plan(line, &id, &mut settled);
        if let Some(first) = self.result_lines.get(&id).copied() {
            self.problem(
                line,
                format!("a second result for `{id}` (the first at line {first})"),
            );
            let (record, _) = record_from(id.clone(), result, Duration::ZERO);
            if let Some(earlier) = self.records.iter_mut().find(|r| r.id == id)
                && earlier.outcome != record.outcome
            {
                earlier.reason = format!(
                    "contradictory results: {} at line {first}, {} at line {line}",
                    earlier.outcome.label(),
                    record.outcome.label()
                );
                earlier.outcome = Outcome::Error;
                settled.push(earlier.clone());
            }
            return settled;
        }
        self.result_lines.insert(id.clone(), line);
        self.last_result_line = line;
        let now = Instant::now();
        let wall = now - self.last_result_at;
        self.last_result_at = now;
        self.trailing.clear();
        let (mut record, guest_us) = record_from(id, result, wall);
        record.location = location;
        record.boot = Some(self.number);
        record.line = Some(line);
        match guest_us {
            Some(us) => self.tests_time_us += us,
            None => self.untimed_results += 1,
        }
        if let Some(suite) = &mut self.suite {
            suite.results += 1;
            suite.counts.add(record.outcome);
        }
        self.counts.add(record.outcome);
        self.records.push(record.clone());
        settled.push(record);
        settled
    }

    /// Checks `id` against the descriptors: the planned tests it passes over get a record
    /// of their own (they printed no result line). Returns the test's location.
    fn follow_plan(
        &mut self,
        line: u64,
        id: &TestId,
        settled: &mut Vec<TestRecord>,
    ) -> Option<String> {
        if self.planned.is_empty() {
            return None;
        }
        let from = self.header.skip + self.next;
        let found = self.planned[from.min(self.planned.len())..]
            .iter()
            .position(|l| l.suite == id.suite && l.name == id.name)
            .map(|offset| from + offset);
        let Some(at) = found else {
            let known = self
                .planned
                .iter()
                .any(|l| l.suite == id.suite && l.name == id.name);
            let why = if known {
                "a test the plan puts earlier"
            } else {
                "a test the plan does not name"
            };
            self.problem(line, format!("`{id}` is {why}"));
            return None;
        };
        for index in from..at {
            let skipped = self.planned[index].clone();
            let skipped_id = TestId::new(skipped.suite.clone(), skipped.name.clone());
            self.problem(line, format!("no result line for `{skipped_id}`"));
            let mut gap = TestRecord::synthesized(skipped_id.clone(), Outcome::Error, NO_RESULT);
            gap.location = skipped.location;
            gap.boot = Some(self.number);
            gap.duration = Some(Duration::ZERO);
            self.result_lines.insert(skipped_id, line);
            self.counts.add(Outcome::Error);
            if let Some(suite) = &mut self.suite {
                suite.results += 1;
                suite.counts.add(Outcome::Error);
            }
            self.records.push(gap.clone());
            settled.push(gap);
        }
        self.next = at + 1 - self.header.skip;
        self.planned[at].location.clone()
    }

    fn suite_result(&mut self, line: u64, result: &ResultLine) {
        let suite = match self.suite.take() {
            Some(suite) if self.stage == Stage::Suite => suite,
            other => {
                self.suite = other;
                self.out_of_place(line, &format!("suite result `{}`", result.name));
                return;
            }
        };
        self.stage = Stage::Between;
        self.suites_closed += 1;
        let name = &suite.name;
        if result.name != *name {
            self.problem(
                line,
                format!(
                    "suite result names `{}` but the open suite is `{name}` (line {})",
                    result.name, suite.line
                ),
            );
        }
        if result.number != suite.number {
            self.problem(
                line,
                format!(
                    "suite `{name}` is numbered {}, expected {}",
                    result.number, suite.number
                ),
            );
        }
        if let Some(plan) = self.top_plan
            && suite.number > plan
        {
            self.problem(
                line,
                format!(
                    "suite `{name}` is suite {} of a plan 1..{plan}",
                    suite.number
                ),
            );
        }
        match suite.plan {
            Some(plan) if plan != suite.results => self.problem(
                line,
                format!(
                    "suite `{name}` planned 1..{plan} and reported {} result(s)",
                    suite.results
                ),
            ),
            None => self.problem(line, format!("suite `{name}` has no plan")),
            Some(_) => {}
        }
        if !suite.totals_seen {
            self.problem(
                line,
                format!("suite `{name}` closed without its `# {name}: pass:...` totals line"),
            );
        }
        let failed = suite.counts.failed > 0;
        if result.ok == failed {
            let (said, tests) = if result.ok {
                ("ok", "a test in it failed")
            } else {
                ("not ok", "none of its tests failed")
            };
            self.problem(line, format!("suite `{name}` says {said} but {tests}"));
        }
        let all_skipped =
            suite.counts.skipped > 0 && suite.counts.passed == 0 && suite.counts.failed == 0;
        if result.directive == Some(Directive::Skip) && !all_skipped {
            self.problem(
                line,
                format!("suite `{name}` says SKIP but not all of its tests skipped"),
            );
        }
    }

    fn exit(&mut self, line: u64, status: i64) {
        if self.exit_status.is_some() {
            self.problem(line, "a second `EXIT:` line");
            return;
        }
        self.exit_status = Some(status);
        match self.stage {
            Stage::Closed => {
                let expected = if self.counts.failed > 0 {
                    3
                } else if self.counts.passed > 0 {
                    1
                } else {
                    77
                };
                if self.counts == Counts::default() {
                    self.problem(line, "the run reported no test result");
                } else if status != expected {
                    self.problem(
                        line,
                        format!(
                            "EXIT: STATUS={status} contradicts the results ({}: status {expected})",
                            show(self.counts)
                        ),
                    );
                }
            }
            Stage::Bailed => {}
            _ => self.crash(format!(
                "kernel exited (EXIT: STATUS={status}) before the plan completed"
            )),
        }
        self.stage = Stage::Exited;
    }

    /// Ends the boot: settles the test that was running when it stopped (crash, hang,
    /// kill), and names what is missing. Returns the records it synthesized (also kept).
    pub fn end(&mut self, how: &End) -> Vec<TestRecord> {
        if std::mem::replace(&mut self.ended, true) {
            return Vec::new();
        }
        if self.usage_error.is_some() {
            return Vec::new();
        }
        let (outcome, reason) = match how {
            End::Closed(_) if self.completed() => return Vec::new(),
            End::Closed(text) => (
                Outcome::Error,
                self.crash.clone().unwrap_or_else(|| match self.stage {
                    Stage::Preamble => format!("{text} before the KTAP header: no test ran"),
                    Stage::Exited => format!("the run ended without its `# Totals:` ({text})"),
                    _ => format!("{text} before the completion marker `EXIT:`"),
                }),
            ),
            End::Hung(reason) => (Outcome::Timeout, reason.clone()),
            End::Killed(reason) => (Outcome::Error, reason.clone()),
            End::Interrupted => (Outcome::Error, "interrupted (Ctrl-C)".to_string()),
        };
        self.crash(reason.clone());
        if matches!(how, End::Closed(_))
            && self.bail_out.is_some()
            && self.last_result_line + 1 == self.bail_line
            && self
                .records
                .last()
                .is_some_and(|r| r.outcome == Outcome::Error)
        {
            return Vec::new(); // the kernel reported the test that panicked itself
        }
        let mut record = match self.running() {
            Some(listed) => {
                let mut record = TestRecord::synthesized(
                    TestId::new(listed.suite.clone(), listed.name.clone()),
                    outcome,
                    reason,
                );
                record.location = listed.location.clone();
                record
            }
            None if !self.planned.is_empty() || self.suite.is_none() => {
                // Every planned test had its result (or there was no plan at all, nor a
                // suite): the boot itself failed.
                TestRecord::synthesized(
                    TestId::new("kernel", format!("boot {}", self.number)),
                    outcome,
                    reason,
                )
            }
            None => self.unknown_running(outcome, reason),
        };
        record.boot = Some(self.number);
        record.duration = Some(self.last_result_at.elapsed());
        if self.trailing.is_empty() {
            if let Some(panic) = &self.panic_message {
                record.diagnostics.push(format!("panic: {panic}"));
            }
        } else {
            record.diagnostics.extend(self.trailing.iter().cloned());
        }
        let mut made = vec![record];
        if self.planned.is_empty()
            && let Some(suite) = &self.suite
            && let Some(plan) = suite.plan
        {
            let not_run = format!(
                "not run: the kernel stopped after test {} of {plan}",
                suite.results + 1
            );
            for number in suite.results + 2..=plan {
                let id = TestId::new(suite.name.clone(), format!("test {number} of {plan}"));
                let mut record = TestRecord::synthesized(id, Outcome::Error, not_run.clone());
                record.boot = Some(self.number);
                record.duration = Some(Duration::ZERO);
                made.push(record);
            }
        }
        self.records.extend(made.iter().cloned());
        made
    }

    /// The planned test that was running: the first one from this boot's position on
    /// without a result.
    pub fn running(&self) -> Option<&ListedTest> {
        self.planned
            .iter()
            .skip(self.header.skip + self.next)
            .find(|l| {
                !self
                    .result_lines
                    .contains_key(&TestId::new(l.suite.clone(), l.name.clone()))
            })
    }

    /// Without descriptors only the KTAP plan tells what ran: name the test by its place.
    fn unknown_running(&self, outcome: Outcome, reason: String) -> TestRecord {
        let suite = self.suite.as_ref().map_or("kernel", |s| s.name.as_str());
        let name = self
            .records
            .last()
            .filter(|r| r.id.suite == suite)
            .map_or("unknown test".to_string(), |r| {
                format!("unknown test after {}", r.id.name)
            });
        TestRecord::synthesized(TestId::new(suite, name), outcome, reason)
    }
}

fn quote(text: &str) -> String {
    let text = text.trim_end();
    match text.char_indices().nth(QUOTE) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_string(),
    }
}

fn show(c: Counts) -> String {
    format!(
        "pass:{} fail:{} skip:{} total:{}",
        c.passed,
        c.failed,
        c.skipped,
        c.passed + c.failed + c.skipped
    )
}

/// ` pass:P fail:F skip:S total:T` -> counts (the total must add up).
fn parse_counts(text: &str) -> Option<Counts> {
    let mut counts = Counts::default();
    let mut total = None;
    for field in text.split_whitespace() {
        let (key, value) = field.split_once(':')?;
        let value: usize = value.parse().ok()?;
        match key {
            "pass" => counts.passed = value,
            "fail" => counts.failed = value,
            "skip" => counts.skipped = value,
            "total" => total = Some(value),
            _ => return None,
        }
    }
    (total == Some(counts.passed + counts.failed + counts.skipped)).then_some(counts)
}

/// The record of a result line, and the guest time (`# time_us:`) when the kernel printed it.
fn record_from(id: TestId, result: &ResultLine, wall: Duration) -> (TestRecord, Option<u64>) {
    let mut diagnostics = Vec::new();
    let mut guest_us = None;
    for text in &result.diagnostics {
        match text
            .strip_prefix("time_us:")
            .and_then(|v| v.trim().parse().ok())
        {
            Some(us) => guest_us = Some(us),
            None => diagnostics.push(text.clone()),
        }
    }
    let outcome = match (&result.directive, result.ok) {
        (Some(Directive::Skip), _) => Outcome::Skip,
        (Some(Directive::XFail), _) | (Some(Directive::Todo), false) => Outcome::XFail,
        (Some(Directive::Error), _) => Outcome::Error,
        (Some(Directive::Timeout), _) => Outcome::Timeout,
        (_, true) => Outcome::Pass,
        (_, false) => Outcome::Fail,
    };
    let mut record = TestRecord::synthesized(id, outcome, result.reason.clone());
    record.diagnostics = diagnostics;
    record.duration = Some(guest_us.map_or(wall, Duration::from_micros));
    (record, guest_us)
}

/// What a boot of a run was, for reports and replay commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootSummary {
    /// 1-based number.
    pub number: usize,
    /// Its KTAP header.
    pub header: Header,
    /// Why it did not finish, if it did not.
    pub stopped: Option<String>,
}

/// One configuration's boots, joined: every planned test settled exactly once.
#[derive(Debug, Default)]
pub struct Run {
    /// The plan (descriptors of the first boot that printed them), in run order.
    pub plan: Vec<ListedTest>,
    records: Vec<TestRecord>,
    index: HashMap<TestId, usize>,
    /// The boots, in order.
    pub boots: Vec<BootSummary>,
    problem_records: Vec<TestRecord>,
    /// Boots with problems beyond [`MAX_PROBLEM_RECORDS`].
    problem_boots_dropped: usize,
    /// Infrastructure and usage errors (exit 2).
    pub infra: Vec<String>,
    /// Set when the user interrupted the run.
    pub interrupted: bool,
    /// Why the last boot stopped early, with the test it was running.
    stop: Option<String>,
}

impl Run {
    /// A run with no boot yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a finished boot (after [`Boot::end`]).
    pub fn add_boot(&mut self, boot: Boot, how: &End) {
        let number = boot.number;
        let mut problems = boot.problems();
        if self.plan.is_empty() {
            self.plan = boot.planned.clone();
        } else if !boot.planned.is_empty() && boot.planned != self.plan {
            problems.push(format!(
                "boot {number} planned other tests, or another order, than the first boot (was the seed or filter changed?)"
            ));
        }
        // A panic's own result line (`# ERROR panic: ...`) names the test that panicked;
        // the first test without a result never started.
        let panicked = boot
            .records
            .last()
            .filter(|r| r.outcome == Outcome::Error && r.reason.starts_with("panic: "))
            .map(|r| format!("`{}`", r.id));
        let running =
            panicked.or_else(|| boot.running().map(|l| format!("`{}.{}`", l.suite, l.name)));
        let stopped = (!boot.completed()).then(|| boot.failure_reason()).flatten();
        self.stop = stopped.as_ref().map(|reason| {
            let reason = match how {
                End::Killed(reason) => reason.clone(),
                End::Interrupted => "interrupted (Ctrl-C)".to_string(),
                _ => reason.clone(),
            };
            match &running {
                Some(test) => format!("{reason} while {test} ran"),
                None => reason,
            }
        });
        if let End::Killed(reason) = how {
            self.push_infra(format!("boot {number}: {reason}"));
        }
        if matches!(how, End::Interrupted) {
            self.interrupted = true;
        }
        if let Some(usage) = &boot.usage_error {
            self.push_infra(format!("usage: {usage}"));
            problems.insert(0, format!("usage: {usage}"));
        }
        for record in boot.records {
            match self.index.get(&record.id) {
                Some(&at) => {
                    let earlier = &mut self.records[at];
                    problems.push(format!(
                        "`{}` was reported by boot {} and again by boot {number}",
                        record.id,
                        earlier.boot.unwrap_or(0)
                    ));
                    if earlier.outcome != record.outcome {
                        earlier.reason = format!(
                            "contradictory results: {} in boot {}, {} in boot {number}",
                            earlier.outcome.label(),
                            earlier.boot.unwrap_or(0),
                            record.outcome.label()
                        );
                        earlier.outcome = Outcome::Error;
                    }
                }
                None => {
                    self.index.insert(record.id.clone(), self.records.len());
                    self.records.push(record);
                }
            }
        }
        if problems.len() > MAX_PROBLEMS {
            let more = problems.len() - MAX_PROBLEMS;
            problems.truncate(MAX_PROBLEMS);
            problems.push(format!("({more} more problems)"));
        }
        if !problems.is_empty() && self.problem_records.len() >= MAX_PROBLEM_RECORDS {
            self.problem_boots_dropped += 1;
        } else if !problems.is_empty() {
            let mut record = TestRecord::synthesized(
                TestId::new("ktap", format!("boot {number}")),
                Outcome::Error,
                problems[0].clone(),
            );
            record.diagnostics = problems;
            record.duration = Some(Duration::ZERO);
            record.boot = Some(number);
            self.problem_records.push(record);
        }
        self.boots.push(BootSummary {
            number,
            header: boot.header,
            stopped,
        });
    }

    /// Records an infrastructure or usage error (the first few; then how many more).
    pub fn push_infra(&mut self, error: String) {
        const MAX_INFRA: usize = 20;
        match self.infra.len() {
            n if n < MAX_INFRA => self.infra.push(error),
            MAX_INFRA => self.infra.push("(and more)".to_string()),
            _ => {}
        }
    }

    /// Index in the plan and id of the first planned test without a result: where a
    /// recovery boot resumes (`ktest.skip=`).
    pub fn next_unrecorded(&self) -> Option<(usize, TestId)> {
        self.plan
            .iter()
            .map(|l| TestId::new(l.suite.clone(), l.name.clone()))
            .enumerate()
            .find(|(_, id)| !self.index.contains_key(id))
    }

    /// Settles every planned test still without a result and returns the verdict.
    pub fn finish(mut self) -> Verdict {
        let reason = match &self.stop {
            Some(stop) => format!("not run: {stop}"),
            None => NOT_REPORTED.to_string(),
        };
        while let Some((_, id)) = self.next_unrecorded() {
            let mut record = TestRecord::synthesized(id.clone(), Outcome::Error, reason.clone());
            record.location = self
                .plan
                .iter()
                .find(|l| l.suite == id.suite && l.name == id.name)
                .and_then(|l| l.location.clone());
            record.duration = Some(Duration::ZERO);
            self.index.insert(id, self.records.len());
            self.records.push(record);
        }
        if self.problem_boots_dropped > 0 {
            let mut record = TestRecord::synthesized(
                TestId::new("ktap", "more boots"),
                Outcome::Error,
                format!(
                    "{} more boots had problems (the first {MAX_PROBLEM_RECORDS} are reported)",
                    self.problem_boots_dropped
                ),
            );
            record.duration = Some(Duration::ZERO);
            self.problem_records.push(record);
        }
        if self.records.is_empty() && self.problem_records.is_empty() {
            let mut record = TestRecord::synthesized(
                TestId::new("ktap", "log"),
                Outcome::Error,
                "no test result: the console holds no KTAP run",
            );
            record.duration = Some(Duration::ZERO);
            self.problem_records.push(record);
        }
        let position = |id: &TestId| {
            self.plan
                .iter()
                .position(|l| l.suite == id.suite && l.name == id.name)
                .unwrap_or(usize::MAX)
        };
        let mut keyed: Vec<_> = std::mem::take(&mut self.records)
            .into_iter()
            .enumerate()
            .map(|(arrival, r)| ((position(&r.id), arrival), r))
            .collect();
        keyed.sort_by_key(|(key, _)| *key);
        let mut records: Vec<TestRecord> = keyed.into_iter().map(|(_, r)| r).collect();
        records.extend(self.problem_records);
        Verdict {
            records,
            boots: self.boots,
            infra: self.infra,
            interrupted: self.interrupted,
        }
    }
}

/// The outcome of a run: one record per planned test (and per problem), and how to exit.
#[derive(Debug, Clone, Default)]
pub struct Verdict {
    /// Every test's final record, plan order first; problems with the output last.
    pub records: Vec<TestRecord>,
    /// The boots, in order.
    pub boots: Vec<BootSummary>,
    /// Infrastructure and usage errors.
    pub infra: Vec<String>,
    /// Whether the user interrupted the run.
    pub interrupted: bool,
}

impl Verdict {
    /// Whether the run passed: no failing record, no infrastructure error, not interrupted.
    pub fn passed(&self) -> bool {
        self.infra.is_empty()
            && !self.interrupted
            && !self.records.iter().any(|r| r.outcome.is_failure())
    }

    /// Counts over the records.
    pub fn counts(&self) -> Counts {
        Counts::of(&self.records)
    }

    /// One line per boot: seed and command line, for reports.
    pub fn identification(&self) -> Vec<(String, String)> {
        /// Boots named one by one; a log of thousands adds a count instead.
        const MAX_BOOTS: usize = 10;
        let mut properties = Vec::new();
        if self.boots.len() > MAX_BOOTS {
            properties.push((
                "boots".to_string(),
                format!("{} (the first {MAX_BOOTS} are listed)", self.boots.len()),
            ));
        }
        for boot in self.boots.iter().take(MAX_BOOTS) {
            let prefix = if self.boots.len() > 1 {
                format!("boot {} ", boot.number)
            } else {
                String::new()
            };
            if let Some(seed) = &boot.header.seed {
                properties.push((format!("{prefix}seed"), seed.clone()));
            }
            if let Some(line) = &boot.header.command_line {
                properties.push((format!("{prefix}command line"), line.clone()));
            }
            if let Some(order) = &boot.header.order {
                properties.push((format!("{prefix}order"), order.clone()));
            }
            if let Some(stopped) = &boot.stopped {
                properties.push((format!("{prefix}stopped"), stopped.clone()));
            }
        }
        properties
    }
}

/// A captured console log, split into boots and judged a line at a time. Boots start at
/// xtask's `xtask: boot N` lines, or at a new top-level `KTAP version` after a document
/// started (a log from elsewhere, e.g. a z/VM spool file). xtask's `xtask: timeout:`,
/// `xtask: killed:` and `xtask: interrupted` lines say how the boot before them ended.
#[derive(Debug, Default)]
pub struct Log {
    lines: Lines,
    parser: Parser,
    run: Run,
    boot: Option<Boot>,
    ending: Option<End>,
    line: u64,
    boots: usize,
}

/// Marker xtask writes into a console log before each boot.
pub const BOOT_MARKER: &str = "xtask: boot ";
/// Marker xtask writes when it stopped a hung test.
pub const TIMEOUT_MARKER: &str = "xtask: timeout:";
/// Marker xtask writes when QEMU was ended from outside.
pub const KILLED_MARKER: &str = "xtask: killed:";
/// Marker xtask writes when the user interrupted it.
pub const INTERRUPTED_MARKER: &str = "xtask: interrupted";

impl Log {
    /// An empty log. With `line_mode`, wrapping of the line-mode console is undone from the
    /// start (xtask's own logs say so per boot).
    pub fn new(line_mode: bool) -> Self {
        let mut log = Self::default();
        log.lines.line_mode = line_mode;
        log
    }

    /// Feeds bytes; `on_record` sees every record as soon as it is settled.
    pub fn feed(&mut self, bytes: &[u8], on_record: &mut dyn FnMut(&TestRecord)) {
        self.lines.feed(bytes);
        while let Some(line) = self.lines.next_line() {
            self.line(&line, on_record);
        }
    }

    /// Ends the log and returns the verdict.
    pub fn finish(mut self, on_record: &mut dyn FnMut(&TestRecord)) -> Verdict {
        if let Some(line) = self.lines.finish() {
            self.line(&line, on_record);
        }
        self.end_boot("the console log ends", on_record);
        self.run.finish()
    }

    fn line(&mut self, raw: &[u8], on_record: &mut dyn FnMut(&TestRecord)) {
        self.line += 1;
        let text = String::from_utf8_lossy(raw);
        let text = text.trim_end_matches('\r');
        if text.starts_with(BOOT_MARKER) {
            self.end_boot("the next boot started", on_record);
            // xtask's boot line names QEMU's line-mode console: join its pieces and undo
            // QEMU's EBCDIC table.
            self.lines.line_mode = text.contains("sclplmconsole");
            self.lines.qemu_charset = self.lines.line_mode;
            return;
        }
        if let Some(reason) = text.strip_prefix(TIMEOUT_MARKER) {
            self.ending = Some(End::Hung(
                reason.trim().trim_end_matches(", QEMU killed").to_string(),
            ));
            return;
        }
        if let Some(reason) = text.strip_prefix(KILLED_MARKER) {
            self.ending = Some(End::Killed(reason.trim().to_string()));
            return;
        }
        if text.starts_with(INTERRUPTED_MARKER) {
            self.ending = Some(End::Interrupted);
            return;
        }
        let event = self.parser.parse_line(raw);
        if matches!(event, Event::Version { depth: 0, .. })
            && self.boot.as_ref().is_some_and(Boot::started)
        {
            self.end_boot("the next boot started", on_record);
        }
        let number = self.boots + 1;
        let boot = self.boot.get_or_insert_with(|| Boot::new(number));
        for record in boot.observe(self.line, &event) {
            on_record(&record);
        }
    }

    fn end_boot(&mut self, text: &str, on_record: &mut dyn FnMut(&TestRecord)) {
        let ending = self.ending.take();
        let Some(mut boot) = self.boot.take() else {
            return;
        };
        self.boots += 1;
        let how = ending.unwrap_or_else(|| End::Closed(text.to_string()));
        for record in boot.end(&how) {
            on_record(&record);
        }
        self.run.add_boot(boot, &how);
    }
}

/// Judges a whole console log held in memory (tests, small logs).
#[cfg(test)]
pub fn judge(bytes: &[u8]) -> Verdict {
    judge_console(bytes, false)
}

/// [`judge`] for a capture of the line-mode console without xtask's boot lines.
#[cfg(test)]
pub fn judge_console(bytes: &[u8], line_mode: bool) -> Verdict {
    let mut log = Log::new(line_mode);
    log.feed(bytes, &mut |_| {});
    log.finish(&mut |_| {})
}

/// One line per failure, for the summary: `FAIL suite.test: reason`.
pub fn failure_lines(verdict: &Verdict) -> String {
    let mut out = String::new();
    for record in verdict.records.iter().filter(|r| r.outcome.is_failure()) {
        let _ = writeln!(
            out,
            "{} {}: {}",
            record.outcome.label(),
            record.id,
            record.message()
        );
    }
    out
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod reference_tests;
