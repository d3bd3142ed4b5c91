//! Reports: the live human view, JUnit XML, TAP 14 and the closing summary line.
//!
//! Files are written atomically (temporary file in the same directory, then rename) so a
//! failed run never leaves a half-written report behind.

use std::fs;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use quick_junit::{NonSuccessKind, Property, Report, TestCase, TestCaseStatus, TestSuite};

use crate::results::{Counts, Outcome, TestRecord};

/// The records of one suite, as they go into a report.
#[derive(Debug, Clone, PartialEq)]
pub struct SuiteReport {
    /// Suite name as shown in reports (qualified with the configuration when several ran).
    pub name: String,
    /// Its tests, in run order.
    pub records: Vec<TestRecord>,
    /// What identifies the run it came from (configuration, seed, command line, ...).
    pub properties: Vec<(String, String)>,
}

/// Groups records by suite, keeping the order in which suites first appear. With a
/// `qualifier` (the configuration name), suite names become `suite [qualifier]`.
pub fn group_by_suite(records: &[TestRecord], qualifier: Option<&str>) -> Vec<SuiteReport> {
    let mut suites: Vec<SuiteReport> = Vec::new();
    for record in records {
        let name = match qualifier {
            Some(q) => format!("{} [{q}]", record.id.suite),
            None => record.id.suite.clone(),
        };
        match suites.iter_mut().find(|s| s.name == name) {
            Some(suite) => suite.records.push(record.clone()),
            None => suites.push(SuiteReport {
                name,
                records: vec![record.clone()],
                properties: Vec::new(),
            }),
        }
    }
    suites
}

/// Which JUnit dialect to write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum JunitFlavor {
    /// Valid against the Jenkins xunit plugin's `junit-10.xsd`: test locations go into the
    /// suite's `<properties>`.
    #[default]
    Jenkins,
    /// GitLab's reading: `file` and `line` attributes on each `<testcase>` (GitLab shows
    /// them), which `junit-10.xsd` does not allow.
    Gitlab,
}

/// What the whole report says about the run besides its suites.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunNote {
    /// The run was interrupted (Ctrl-C): the report is partial.
    pub interrupted: bool,
}

/// JUnit XML: one `<testsuite>` per suite, `classname` = suite name, times in seconds with
/// a time on every test case, every failure and error with its message and a body (the
/// reason and the diagnostics), the run's identification in `<properties>`.
pub fn junit_xml(suites: &[SuiteReport], flavor: JunitFlavor, note: &RunNote) -> Result<String> {
    let mut report = Report::new("zhint");
    let mut total = Duration::ZERO;
    for suite in suites {
        let mut junit_suite = TestSuite::new(suite.name.as_str());
        let mut suite_time = Duration::ZERO;
        for (name, value) in &suite.properties {
            junit_suite.add_property(Property::new(name.as_str(), value.as_str()));
        }
        if note.interrupted {
            junit_suite.add_property(Property::new(
                "interrupted",
                "the run was interrupted (Ctrl-C); tests without a result are errors",
            ));
        }
        for record in &suite.records {
            let mut case = TestCase::new(record.id.name.as_str(), junit_status(record));
            case.set_classname(suite.name.as_str());
            let time = record.duration.unwrap_or_default();
            case.set_time(time);
            suite_time += time;
            if let Some(location) = &record.location {
                let (file, line) = match location.rsplit_once(':') {
                    Some((file, line)) if line.parse::<u32>().is_ok() => (file, Some(line)),
                    _ => (location.as_str(), None),
                };
                match flavor {
                    JunitFlavor::Gitlab => {
                        case.extra.insert("file".into(), file.into());
                        if let Some(line) = line {
                            case.extra.insert("line".into(), line.into());
                        }
                    }
                    JunitFlavor::Jenkins => {
                        junit_suite.add_property(Property::new(
                            format!("location: {}", record.id.name),
                            location.as_str(),
                        ));
                    }
                }
            }
            if !record.diagnostics.is_empty() {
                case.set_system_out(record.diagnostics.join("\n"));
            }
            junit_suite.add_test_case(case);
        }
        junit_suite.set_time(suite_time);
        total += suite_time;
        report.add_test_suite(junit_suite);
    }
    report.set_time(total);
    let xml = report.to_string().context("serializing the JUnit report")?;
    Ok(match flavor {
        JunitFlavor::Jenkins => without_testsuites_skipped(&xml),
        JunitFlavor::Gitlab => xml,
    })
}

/// `junit-10.xsd` allows no `skipped` attribute on `<testsuites>` (quick-junit always writes
/// one); the counts stay on each `<testsuite>`.
fn without_testsuites_skipped(xml: &str) -> String {
    let Some(start) = xml.find("<testsuites") else {
        return xml.to_string();
    };
    let end = xml[start..].find('>').map_or(xml.len(), |e| start + e);
    let tag = &xml[start..end];
    let Some(at) = tag.find(" skipped=\"") else {
        return xml.to_string();
    };
    let value_end = tag[at + 10..]
        .find('"')
        .map_or(tag.len(), |e| at + 10 + e + 1);
    format!("{}{}{}", &xml[..start + at], &tag[value_end..], &xml[end..])
}

fn junit_status(record: &TestRecord) -> TestCaseStatus {
    let mut status = match record.outcome {
        Outcome::Pass | Outcome::XFail => return TestCaseStatus::success(),
        Outcome::Skip => TestCaseStatus::skipped(),
        Outcome::Fail => TestCaseStatus::non_success(NonSuccessKind::Failure),
        Outcome::Error | Outcome::Timeout => {
            let mut status = TestCaseStatus::non_success(NonSuccessKind::Error);
            status.set_type(record.outcome.label());
            status
        }
    };
    status.set_message(record.message());
    if record.outcome != Outcome::Skip || !record.diagnostics.is_empty() {
        let mut body = record.message();
        for diagnostic in &record.diagnostics {
            body.push('\n');
            body.push_str(diagnostic);
        }
        status.set_description(body);
    }
    status
}

/// TAP 14: each suite is an indented subtest with its own plan, closed by a correlated parent
/// test point; the run's identification as comments. Skips use `# SKIP`, expected failures
/// `# TODO`; failure details go in a YAML block. A report without any test is a
/// `Bail out!`, never an empty plan that reads as a passing skip-all.
pub fn tap14(suites: &[SuiteReport], note: &RunNote) -> String {
    let mut out = String::from("TAP version 14\n");
    if note.interrupted {
        out.push_str("# interrupted (Ctrl-C): tests without a result are reported as not ok\n");
    }
    if suites.iter().all(|s| s.records.is_empty()) {
        out.push_str("Bail out! no test results\n");
        return out;
    }
    out.push_str(&format!("1..{}\n", suites.len()));
    for (index, suite) in suites.iter().enumerate() {
        let suite_name = tap_escape(&suite.name);
        out.push_str(&format!("# Subtest: {suite_name}\n"));
        for (name, value) in &suite.properties {
            out.push_str(&format!(
                "    # {}: {}\n",
                tap_escape(name),
                tap_escape(value)
            ));
        }
        out.push_str(&format!("    1..{}\n", suite.records.len()));
        for (number, record) in suite.records.iter().enumerate() {
            tap_test_point(&mut out, number + 1, record);
        }
        let suite_ok = !suite.records.iter().any(|r| r.outcome.is_failure());
        let status = if suite_ok { "ok" } else { "not ok" };
        out.push_str(&format!("{status} {} - {suite_name}\n", index + 1));
    }
    out
}

fn tap_test_point(out: &mut String, number: usize, record: &TestRecord) {
    let name = tap_escape(&record.id.name);
    let reason = tap_escape(&record.reason);
    let line = match record.outcome {
        Outcome::Pass => format!("ok {number} - {name}"),
        Outcome::Skip => format!("ok {number} - {name} # SKIP {reason}"),
        Outcome::XFail => format!("not ok {number} - {name} # TODO expected failure: {reason}"),
        Outcome::Fail | Outcome::Error | Outcome::Timeout => format!("not ok {number} - {name}"),
    };
    out.push_str("    ");
    out.push_str(line.trim_end());
    out.push('\n');
    if record.outcome.is_failure() {
        let yaml = |s: &str| serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into());
        out.push_str("      ---\n");
        out.push_str(&format!("      message: {}\n", yaml(&record.message())));
        out.push_str(&format!(
            "      severity: {}\n",
            record.outcome.label().to_lowercase()
        ));
        if let Some(location) = &record.location {
            out.push_str(&format!("      at: {}\n", yaml(location)));
        }
        if !record.diagnostics.is_empty() {
            out.push_str("      diagnostics:\n");
            for diagnostic in &record.diagnostics {
                out.push_str(&format!("        - {}\n", yaml(diagnostic)));
            }
        }
        out.push_str("      ...\n");
    }
}

fn tap_escape(text: &str) -> String {
    text.replace('\\', "\\\\")
        .replace('#', "\\#")
        .replace(['\n', '\r'], " ")
}

/// Fails early (before any test runs) when `path` cannot be written, or names a directory.
pub fn check_writable(path: &Path) -> Result<()> {
    if path.is_dir() {
        anyhow::bail!(
            "report path {} is a directory; give the file to write",
            path.display()
        );
    }
    let probe = temp_sibling(path)?;
    fs::write(&probe, b"").with_context(|| format!("cannot write report {}", path.display()))?;
    let _ = fs::remove_file(&probe);
    Ok(())
}

/// Writes `contents` to `path` via a temporary file and a rename.
pub fn write_atomically(path: &Path, contents: &[u8]) -> Result<()> {
    let temp = temp_sibling(path)?;
    let result = fs::File::create(&temp)
        .and_then(|mut file| file.write_all(contents).and_then(|()| file.sync_all()))
        .and_then(|()| fs::rename(&temp, path));
    if result.is_err() {
        let _ = fs::remove_file(&temp);
    }
    result.with_context(|| format!("cannot write report {}", path.display()))
}

fn temp_sibling(path: &Path) -> Result<PathBuf> {
    let file_name = path
        .file_name()
        .with_context(|| format!("report path {} has no file name", path.display()))?;
    let mut temp_name = std::ffi::OsString::from(".");
    temp_name.push(file_name);
    temp_name.push(format!(".tmp{}", std::process::id()));
    Ok(path.with_file_name(temp_name))
}

/// The live, one-line-per-test view on stdout.
#[derive(Debug, Clone, Copy)]
pub struct LiveView {
    colour: bool,
}

impl LiveView {
    /// Colour only when stdout is a terminal and `NO_COLOR` is unset or empty.
    pub fn from_environment() -> Self {
        let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        Self {
            colour: std::io::stdout().is_terminal() && !no_color,
        }
    }

    /// The line printed for a finished test (without a newline).
    pub fn test_line(&self, config: Option<&str>, record: &TestRecord) -> String {
        let label = format!("{:<7}", record.outcome.label());
        let label = if self.colour {
            let code = match record.outcome {
                Outcome::Pass => "32",
                Outcome::XFail => "36",
                Outcome::Skip => "33",
                Outcome::Fail | Outcome::Error | Outcome::Timeout => "1;31",
            };
            format!("\x1b[{code}m{label}\x1b[0m")
        } else {
            label
        };
        let prefix = config.map(|c| format!("[{c}] ")).unwrap_or_default();
        let mut line = format!("{prefix}{label} {}", record.id);
        if let Some(time) = record.duration {
            line.push_str(&format!(" ({:.3} s)", time.as_secs_f64()));
        }
        if !record.reason.is_empty() {
            line.push_str(&format!(": {}", record.reason));
        }
        if record.outcome.is_failure() {
            for diagnostic in &record.diagnostics {
                line.push_str(&format!("\n{prefix}        # {diagnostic}"));
            }
        }
        line
    }

    /// Prints a finished test.
    pub fn test(&self, config: Option<&str>, record: &TestRecord) {
        crate::progress::println(&self.test_line(config, record));
    }
}

/// The closing line, alone on its line: `N passed, N failed, N skipped`.
pub fn print_summary(counts: Counts) {
    println!("{counts}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::TestId;

    fn record(
        suite: &str,
        name: &str,
        outcome: Outcome,
        reason: &str,
        diagnostics: &[&str],
    ) -> TestRecord {
        TestRecord {
            id: TestId::new(suite, name),
            outcome,
            reason: reason.into(),
            diagnostics: diagnostics.iter().map(|d| d.to_string()).collect(),
            duration: Some(Duration::from_millis(1500)),
            location: Some("tests/src/x.rs:7".into()),
            boot: Some(1),
            line: None,
        }
    }

    fn sample() -> Vec<SuiteReport> {
        let records = vec![
            record(
                "arch::interrupts",
                "operation_exception",
                Outcome::Pass,
                "",
                &[],
            ),
            record(
                "arch::interrupts",
                "privileged #1",
                Outcome::Fail,
                "",
                &["check_eq failed: left: 0x1, right: 0x2 <&>"],
            ),
            record(
                "arch::interrupts",
                "essa",
                Outcome::Skip,
                "ESSA absent",
                &[],
            ),
            record(
                "sclp::console",
                "boom",
                Outcome::Error,
                "program interruption 0x11",
                &["psw: 0x0704"],
            ),
            record(
                "sclp::console",
                "hang",
                Outcome::Timeout,
                "no output for 5 s",
                &[],
            ),
            record("sclp::console", "known", Outcome::XFail, "bug 12", &[]),
        ];
        let mut suites = group_by_suite(&records, None);
        for suite in &mut suites {
            suite.properties = vec![
                ("seed".into(), "4005141286829207".into()),
                (
                    "command line".into(),
                    "ktest.seed=4005141286829207 ktest.shuffle".into(),
                ),
            ];
        }
        suites
    }

    /// A timeout the host synthesized: no diagnostics, no guest time.
    fn synthesized_timeout() -> Vec<SuiteReport> {
        let mut record = TestRecord::synthesized(
            TestId::new("mm::reclaim", "pressure"),
            Outcome::Timeout,
            "timeout: no test result for 60 s",
        );
        record.duration = None;
        group_by_suite(&[record], None)
    }

    #[test]
    fn grouping_keeps_first_appearance_order_and_qualifies() {
        let records = vec![
            record("b", "1", Outcome::Pass, "", &[]),
            record("a", "1", Outcome::Pass, "", &[]),
            record("b", "2", Outcome::Pass, "", &[]),
        ];
        let suites = group_by_suite(&records, Some("smp2"));
        let names: Vec<_> = suites
            .iter()
            .map(|s| (s.name.as_str(), s.records.len()))
            .collect();
        assert_eq!(names, [("b [smp2]", 2), ("a [smp2]", 1)]);
    }

    #[test]
    fn junit_loads_in_a_junit_consumer_with_the_right_shape() {
        let xml = junit_xml(&sample(), JunitFlavor::Jenkins, &RunNote::default()).unwrap();
        let parsed =
            junit_parser::from_reader(std::io::Cursor::new(xml.as_bytes())).expect("valid JUnit");
        assert_eq!(parsed.suites.len(), 2);
        let interrupts = &parsed.suites[0];
        assert_eq!(interrupts.name, "arch::interrupts");
        assert_eq!(
            (interrupts.tests, interrupts.failures, interrupts.skipped),
            (3, 1, 1)
        );
        let failed = &interrupts.cases[1];
        assert_eq!(failed.classname.as_deref(), Some("arch::interrupts"));
        assert_eq!(failed.time, 1.5);
        assert!(!xml.contains(r#"file="tests/src/x.rs""#), "{xml}");
        assert!(
            xml.contains(r#"<property name="location: privileged #1" value="tests/src/x.rs:7"/>"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<property name="seed" value="4005141286829207"/>"#),
            "{xml}"
        );
        let gitlab = junit_xml(&sample(), JunitFlavor::Gitlab, &RunNote::default()).unwrap();
        assert!(
            gitlab.contains(r#"file="tests/src/x.rs" line="7""#),
            "{gitlab}"
        );
        match &failed.status {
            junit_parser::TestStatus::Failure(f) => {
                assert_eq!(f.message, "check_eq failed: left: 0x1, right: 0x2 <&>");
                // junit-parser drops entity references from element text, so check the rest.
                assert!(
                    f.text.contains("check_eq failed: left: 0x1, right: 0x2"),
                    "{f:?}"
                );
            }
            other => panic!("expected a failure, got {other:?}"),
        }
        let console = &parsed.suites[1];
        assert_eq!((console.tests, console.errors), (3, 2));
        assert!(matches!(
            &console.cases[2].status,
            junit_parser::TestStatus::Success
        ));
    }

    #[test]
    fn tap_has_plan_subtests_directives_and_yaml() {
        let tap = tap14(&sample(), &RunNote::default());
        let expected_start = "TAP version 14\n1..2\n# Subtest: arch::interrupts\n    # seed: 4005141286829207\n    # command line: ktest.seed=4005141286829207 ktest.shuffle\n    1..3\n    ok 1 - operation_exception\n    not ok 2 - privileged \\#1\n      ---\n";
        assert!(tap.starts_with(expected_start), "{tap}");
        assert!(tap.contains("    ok 3 - essa # SKIP ESSA absent\n"));
        assert!(tap.contains("not ok 1 - arch::interrupts\n"));
        assert!(tap.contains("    not ok 3 - known # TODO expected failure: bug 12\n"));
        assert!(tap.ends_with("not ok 2 - sclp::console\n"));
        assert_eq!(
            tap14(&[], &RunNote::default()),
            "TAP version 14\nBail out! no test results\n",
            "never an empty plan, which consumers read as a passing skip-all"
        );
        let interrupted = tap14(&sample(), &RunNote { interrupted: true });
        assert!(interrupted.starts_with("TAP version 14\n# interrupted (Ctrl-C)"));
    }

    /// Runs the TAP through node-tap's `tap-parser` in strict mode, the reference TAP 14
    /// consumer (provisioned by `cargo xtask provision`).
    #[test]
    fn tap_passes_the_strict_tap14_reference_parser() {
        let module = tap_parser_module();
        let broken = "TAP version 14\n1..2\nok 1 - a\nstray line\n";
        // One node process for the four documents (each start costs about 0.15 s of CPU).
        let [sample, empty, interrupted, broken] = tap_parser(
            &module,
            [
                tap14(&sample(), &RunNote::default()),
                tap14(&[], &RunNote::default()),
                tap14(&sample(), &RunNote { interrupted: true }),
                broken.to_string(),
            ],
        );
        let (summary, children) = sample;
        assert_eq!(summary["count"], 2, "{summary}");
        assert_eq!(summary["fail"], 2, "both suites have a failure: {summary}");
        let failures = summary["failures"].as_array().unwrap();
        assert!(
            failures.iter().all(|f| f["tapError"].is_null()),
            "protocol errors: {summary}"
        );
        // tap-parser's `fail` also counts `not ok # TODO` points; `todo` tells them apart.
        assert_eq!(
            children,
            serde_json::json!([[3, 1, 1, 0], [3, 3, 0, 1]]),
            "per-suite count, fail, skip, todo"
        );

        let (empty, _) = empty;
        assert_eq!(empty["ok"], false, "no results is not a pass: {empty}");
        assert_eq!(empty["bailout"], "no test results", "{empty}");
        let (interrupted, _) = interrupted;
        assert!(
            interrupted["failures"]
                .as_array()
                .unwrap()
                .iter()
                .all(|f| f["tapError"].is_null()),
            "{interrupted}"
        );

        let (summary, _) = broken;
        let failures = summary["failures"].as_array().unwrap();
        assert!(
            failures.iter().any(|f| !f["tapError"].is_null()),
            "strict mode must reject: {summary}"
        );
    }

    fn tap_parser_module() -> PathBuf {
        let module = std::env::var_os("TAP_PARSER_MODULE")
            .map_or_else(crate::provision::tap_parser_module, PathBuf::from);
        assert!(
            module.join("package.json").exists(),
            "the TAP reference consumer is missing at {}; {}",
            module.display(),
            crate::provision::HOW
        );
        module
    }

    /// Validates JUnit against the Jenkins xunit plugin's `junit-10.xsd` with xmllint.
    fn validate_junit(xml: &str) -> Result<(), String> {
        let xsd = crate::provision::junit_xsd();
        assert!(
            xsd.exists(),
            "junit-10.xsd is missing at {}; {}",
            xsd.display(),
            crate::provision::HOW
        );
        let mut child = std::process::Command::new("xmllint")
            .args(["--noout", "--schema"])
            .arg(&xsd)
            .arg("-")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run xmllint ({e}); {}", crate::provision::HOW));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(xml.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        if output.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }

    #[test]
    fn junit_is_valid_against_the_jenkins_xunit_schema() {
        let note = RunNote { interrupted: true };
        for suites in [sample(), synthesized_timeout()] {
            let xml = junit_xml(&suites, JunitFlavor::Jenkins, &note).unwrap();
            validate_junit(&xml).unwrap_or_else(|e| panic!("{e}\n{xml}"));
        }
        let gitlab = junit_xml(&sample(), JunitFlavor::Gitlab, &note).unwrap();
        assert!(
            validate_junit(&gitlab).is_err(),
            "the schema rejects GitLab's testcase attributes, so the check can fail"
        );
        assert!(
            validate_junit(&quick_junit_as_is()).is_err(),
            "the schema rejects quick-junit's own `skipped` on <testsuites>"
        );
    }

    /// What quick-junit writes without xtask's adjustment.
    fn quick_junit_as_is() -> String {
        let mut report = Report::new("zhint");
        report.add_test_suite(TestSuite::new("s"));
        report.to_string().unwrap()
    }

    #[test]
    fn every_junit_error_has_a_body_and_a_time() {
        let xml = junit_xml(
            &synthesized_timeout(),
            JunitFlavor::Jenkins,
            &RunNote::default(),
        )
        .unwrap();
        assert!(
            xml.contains(r#"<testcase name="pressure" classname="mm::reclaim" time="0.000">"#),
            "{xml}"
        );
        assert!(
            xml.contains(r#"<error message="timeout: no test result for 60 s" type="TIMEOUT">timeout: no test result for 60 s</error>"#),
            "{xml}"
        );
    }

    /// Parses each document of a JSON array on stdin with its own strict `Parser` and
    /// prints one JSON array of `[summary, per-child [count, fail, skip, todo]]`.
    const NODE_SCRIPT: &str = r#"
        const { Parser } = require(process.argv[1]);
        const parse = tap => new Promise(resolve => {
            const children = [];
            const p = new Parser({ strict: true }, summary => resolve([summary, children]));
            p.on("child", c => c.on("complete", s => children.push([s.count, s.fail, s.skip, s.todo])));
            p.end(tap);
        });
        let input = "";
        process.stdin.on("data", d => input += d).on("end", async () => {
            const out = [];
            for (const tap of JSON.parse(input)) out.push(await parse(tap));
            console.log(JSON.stringify(out));
        });
    "#;

    /// node-tap's `tap-parser` over each of `docs`, in one node process: (summary,
    /// children) per document.
    fn tap_parser<const N: usize>(
        module: &Path,
        docs: [String; N],
    ) -> [(serde_json::Value, serde_json::Value); N] {
        let mut child = std::process::Command::new("node")
            .args(["-e", NODE_SCRIPT])
            .arg(module)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let input = serde_json::to_vec(docs.as_slice()).unwrap();
        child.stdin.take().unwrap().write_all(&input).unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "node failed");
        let parsed: Vec<(serde_json::Value, serde_json::Value)> =
            serde_json::from_slice(&output.stdout).expect("tap-parser printed JSON");
        parsed.try_into().expect("one result per document")
    }

    #[test]
    fn live_view_line_is_plain_without_colour() {
        let view = LiveView { colour: false };
        let rec = record("s", "t", Outcome::Fail, "", &["left: 1"]);
        assert_eq!(
            view.test_line(Some("smp2"), &rec),
            "[smp2] FAIL    s.t (1.500 s)\n[smp2]         # left: 1"
        );
        let coloured =
            LiveView { colour: true }.test_line(None, &record("s", "t", Outcome::Pass, "", &[]));
        assert!(coloured.starts_with("\x1b[32mPASS"));
    }

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("report.xml");
        write_atomically(&path, b"one").unwrap();
        write_atomically(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
        let missing_dir = dir.path().join("nope/report.xml");
        assert!(write_atomically(&missing_dir, b"x").is_err());
        assert!(check_writable(&missing_dir).is_err());
        assert!(check_writable(&path).is_ok());
    }
}
