//! The verdict on logs the kernel's own runner prints (host-built with a fake executor, so
//! the format is exactly the kernel's), and on every way such a log can be damaged: each
//! damaged log must fail, with a reason that names the test or the line.

use kernel::ktest::runner::{self, Executor, Injection, Options};
use kernel::ktest::{KTest, Test};
use proptest::prelude::*;

use super::*;

fn pass(_: &mut Test<'_>) {}
fn skip(t: &mut Test<'_>) {
    t.skip("no ESSA here");
}
fn fail(t: &mut Test<'_>) {
    kernel::check_eq!(t, 1, 2);
}

const fn d(suite: &'static str, name: &'static str, line: u32, run: fn(&mut Test<'_>)) -> KTest {
    KTest {
        suite,
        name,
        file: "tests/src/t.rs",
        line,
        flags: 0,
        run,
    }
}

static PASSING: [KTest; 6] = [
    d("arch::interrupts", "operation_exception", 10, pass),
    d("arch::interrupts", "privileged_operation", 11, pass),
    d("arch::interrupts", "probe", 12, skip),
    d("mm::frames", "alloc", 20, pass),
    d("mm::frames", "free", 21, pass),
    d("mm::vma", "split", 30, pass),
];

static FAILING: [KTest; 3] = [
    d("a::one", "good", 10, pass),
    d("a::one", "bad", 11, fail),
    d("b::two", "fine", 20, pass),
];

struct Fake {
    clock: u64,
}

impl Executor for Fake {
    fn execute(&mut self, test: &KTest, t: &mut Test<'_>, _: (usize, usize)) -> Result<(), String> {
        (test.run)(t);
        Ok(())
    }
    fn now_us(&mut self) -> u64 {
        self.clock += 17;
        self.clock
    }
    fn inject(
        &mut self,
        _: Injection,
        _: &KTest,
        _: &mut Test<'_>,
        _: (usize, usize),
    ) -> Result<(), String> {
        Ok(())
    }
}

/// What the kernel prints before and after the runner (banner, counters, exit line).
fn boot_text(tests: &[KTest], options: &Options) -> String {
    let mut out = String::from(
        "zhint 0.1.0 - guest page hinting test harness\nmemory: 256 MiB, cpus: 1\ncommand line: [x]\nboot: 100 us of guest time\n",
    );
    let totals = runner::run(tests, options, &mut out, &mut Fake { clock: 0 });
    out.push_str("# cmma: essa by orc [0, 0, 512] (emulated)\n");
    out.push_str(&format!("EXIT: STATUS={}\n", totals.exit_status()));
    out
}

fn options(seed: u64) -> Options {
    Options {
        seed,
        shuffle: true,
        command_line: format!("ktest.seed={seed} ktest.shuffle"),
        ..Options::default()
    }
}

/// A passing console log as `cargo xtask test` keeps it: xtask's boot line, then the boot.
fn passing_log() -> String {
    format!(
        "xtask: boot 1 (default): qemu-system-s390x -append 'ktest.seed=5 ktest.shuffle'\n{}",
        boot_text(&PASSING, &options(5))
    )
}

fn summary(verdict: &Verdict) -> Vec<(String, Outcome)> {
    verdict
        .records
        .iter()
        .map(|r| (r.id.to_string(), r.outcome))
        .collect()
}

#[test]
fn the_kernels_own_passing_output_passes() {
    let verdict = judge(passing_log().as_bytes());
    assert!(verdict.passed(), "{:#?}", verdict.records);
    assert_eq!(
        verdict.counts().to_string(),
        "5 passed, 0 failed, 1 skipped"
    );
    assert_eq!(verdict.boots.len(), 1);
    assert_eq!(verdict.boots[0].header.seed.as_deref(), Some("5"));
    assert_eq!(
        verdict.boots[0].header.command_line.as_deref(),
        Some("ktest.seed=5 ktest.shuffle")
    );
    let located = verdict
        .records
        .iter()
        .find(|r| r.id.name == "split")
        .unwrap();
    assert_eq!(located.location.as_deref(), Some("tests/src/t.rs:30"));
}

#[test]
fn failing_tests_fail_and_the_status_agrees() {
    let log = boot_text(&FAILING, &options(1));
    assert!(log.contains("EXIT: STATUS=3"));
    let verdict = judge(log.as_bytes());
    assert!(!verdict.passed());
    assert!(
        verdict.records.iter().all(|r| r.id.suite != "ktap"),
        "a failing test is no problem with the output: {:#?}",
        verdict.records
    );
    assert_eq!(
        verdict.counts().to_string(),
        "2 passed, 1 failed, 0 skipped"
    );
}

/// Replaces the first line equal to `from` (trimmed) by `to` (several lines, or none).
fn edit(log: &str, from: &str, to: &str) -> String {
    let mut done = false;
    let mut out = String::new();
    for line in log.lines() {
        if !done && line.trim() == from {
            done = true;
            out.push_str(to);
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    assert!(done, "`{from}` not in the log");
    out
}

fn line_with(log: &str, needle: &str) -> String {
    log.lines()
        .find(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("no line with `{needle}`"))
        .trim()
        .to_string()
}

/// The damaged-log corpus: every entry must be red. Built from the kernel runner's own
/// output in the spirit of issue 11's examples.
fn damaged_corpus() -> Vec<(&'static str, String, &'static str)> {
    let good = passing_log();
    let exit = "EXIT: STATUS=1";
    let last_result = good
        .lines()
        .rfind(|l| l.starts_with("    ok "))
        .unwrap()
        .to_string();
    let first_suite_result = line_with(&good, "ok 1 ");
    let first_suite_result = good
        .lines()
        .find(|l| l.starts_with("ok 1 "))
        .unwrap_or(&first_suite_result)
        .to_string();
    let suite_plan = good
        .lines()
        .find(|l| l.starts_with("    1.."))
        .unwrap()
        .trim()
        .to_string();
    let top_plan = good
        .lines()
        .find(|l| l.starts_with("1.."))
        .unwrap()
        .to_string();
    let totals = line_with(&good, "# Totals:");
    let first_test = good
        .lines()
        .find(|l| l.starts_with("    ok 1 "))
        .unwrap()
        .trim()
        .to_string();
    let test_name = first_test.trim_start_matches("ok 1 ").to_string();
    let cut_at_exit = good.split(exit).next().unwrap().to_string();
    let cut_after_last_result = format!(
        "{}\n",
        good.split(&last_result).next().unwrap().to_string() + &last_result
    );
    let last_suite_start = good.rfind("    KTAP version 1\n").unwrap();
    vec![
        (
            "cut after the last result, before EXIT",
            cut_after_last_result,
            "EXIT",
        ),
        ("cut just before EXIT", cut_at_exit, "EXIT"),
        (
            "EXIT: STATUS=3",
            good.replace(exit, "EXIT: STATUS=3"),
            "STATUS=3",
        ),
        (
            "EXIT: STATUS=0",
            good.replace(exit, "EXIT: STATUS=0"),
            "STATUS=0",
        ),
        (
            "a later not ok for a test that said ok",
            edit(
                &good,
                &first_test,
                &format!("    {first_test}\n    not ok 2 {test_name}\n"),
            ),
            "second result",
        ),
        (
            "a not ok appended after EXIT",
            format!("{good}    not ok 1 {test_name}\n"),
            "after the completion marker",
        ),
        (
            "suite plan larger than its results",
            edit(&good, &suite_plan, "    1..9\n"),
            "planned 1..9",
        ),
        (
            "top-level plan larger than the suites",
            edit(&good, &top_plan, "1..7\n"),
            "1..7",
        ),
        (
            "a deleted result line",
            edit(&good, &first_test, ""),
            "no result line",
        ),
        (
            "Bail out! before the last suite",
            format!(
                "{}Bail out! something broke\n{exit}\n",
                &good[..last_suite_start]
            ),
            "Bail out!",
        ),
        (
            "suite-level not ok whose tests all passed",
            edit(
                &good,
                &first_suite_result,
                &format!("not {first_suite_result}\n"),
            ),
            "says not ok",
        ),
        (
            "a suite said ok while a test failed",
            edit(&good, &first_test, &format!("    not {first_test}\n")),
            "a test in it failed",
        ),
        (
            "totals that do not add up",
            edit(&good, &totals, "# Totals: pass:9 fail:0 skip:1 total:10\n"),
            "Totals",
        ),
        (
            "a line that is not KTAP inside the document",
            edit(
                &good,
                &first_test,
                &format!("    {first_test}\nrandom noise\n"),
            ),
            "not a KTAP line",
        ),
        (
            "a result renumbered",
            edit(&good, &first_test, &format!("    ok 5 {test_name}\n")),
            "numbered 5",
        ),
        (
            "a log without results",
            "zhint 0.1.0\nboot: 1 us\n".to_string(),
            "before the KTAP header",
        ),
        ("an empty log", String::new(), "no test result"),
        (
            "KTAP header and plan only",
            "KTAP version 1\n1..0\n# Totals: pass:0 fail:0 skip:0 total:0\nEXIT: STATUS=77\n"
                .to_string(),
            "no test result",
        ),
        (
            "the same run twice in one log",
            format!("{good}{good}"),
            "reported by boot 1 and again by boot 2",
        ),
        (
            "QEMU killed from outside mid-run",
            format!(
                "{}xtask: killed: QEMU was killed by signal 9 (not by xtask)\n",
                &good[..last_suite_start]
            ),
            "not run: QEMU was killed by signal 9 (not by xtask) while",
        ),
        (
            "a hang the host stopped",
            format!(
                "{}xtask: timeout: timeout: no test result for 60 s, QEMU killed\n",
                &good[..last_suite_start]
            ),
            "timeout: no test result for 60 s",
        ),
        (
            "an EXIT before the totals",
            edit(&good, &totals, ""),
            "before the plan completed",
        ),
        (
            "KTAP version 2",
            good.replacen("KTAP version 1", "KTAP version 2", 1),
            "KTAP version 2",
        ),
        (
            "a suite result under another name",
            edit(
                &good,
                &first_suite_result,
                &format!("{}x\n", first_suite_result),
            ),
            "suite result names",
        ),
        (
            "interrupted",
            format!(
                "{}xtask: interrupted (Ctrl-C), QEMU killed\n",
                &good[..last_suite_start]
            ),
            "interrupted",
        ),
    ]
}

#[test]
fn every_damaged_log_is_red_and_says_why() {
    for (what, log, needle) in damaged_corpus() {
        let verdict = judge(log.as_bytes());
        assert!(!verdict.passed(), "{what}: passed\n{log}");
        let reasons: Vec<String> = verdict
            .records
            .iter()
            .filter(|r| r.outcome.is_failure())
            .flat_map(|r| std::iter::once(r.reason.clone()).chain(r.diagnostics.clone()))
            .collect();
        assert!(
            reasons.iter().any(|r| r.contains(needle)),
            "{what}: no reason mentions `{needle}`: {reasons:#?}"
        );
    }
}

/// Writes the corpus to `$ZHINT_DAMAGED_CORPUS` (a folder) when set, so `cargo xtask parse`
/// can be run on each file by hand or by CI.
#[test]
fn the_damaged_corpus_can_be_written_out() {
    let Some(dir) = std::env::var_os("ZHINT_DAMAGED_CORPUS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("00-passing.log"), passing_log()).unwrap();
    for (index, (what, log, _)) in damaged_corpus().into_iter().enumerate() {
        let name: String = what
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        std::fs::write(dir.join(format!("{:02}-{name}.log", index + 1)), log).unwrap();
    }
}

#[test]
fn a_killed_run_lists_every_test_it_never_ran_as_an_error_naming_the_running_one() {
    let good = passing_log();
    let cut = good.find("    ok 2 ").unwrap();
    let log = format!(
        "{}xtask: killed: QEMU was killed by signal 9 (not by xtask)\n",
        &good[..cut]
    );
    let verdict = judge(log.as_bytes());
    assert_eq!(
        verdict.infra,
        ["boot 1: QEMU was killed by signal 9 (not by xtask)"]
    );
    assert_eq!(
        verdict.records.len(),
        6,
        "every planned test: {:#?}",
        verdict.records
    );
    let failed: Vec<&TestRecord> = verdict
        .records
        .iter()
        .filter(|r| r.outcome.is_failure())
        .collect();
    let reported = good[..cut].matches("\n    ok ").count();
    assert_eq!(failed.len(), 6 - reported, "{:#?}", verdict.records);
    assert!(failed.len() >= 2);
    let running = failed[0];
    assert_eq!(running.reason, "QEMU was killed by signal 9 (not by xtask)");
    for record in &failed[1..] {
        assert_eq!(
            record.reason,
            format!(
                "not run: QEMU was killed by signal 9 (not by xtask) while `{}` ran",
                running.id
            )
        );
    }
}

#[test]
fn a_panic_then_a_resumed_boot_settles_every_test_once() {
    let order: Vec<String> = runner::select(&PASSING, &options(5))
        .iter()
        .map(|t| format!("{}.{}", t.suite, t.name))
        .collect();
    let full = boot_text(&PASSING, &options(5));
    // Boot 1: the third test panics (the kernel's panic path), after two results.
    let results: Vec<usize> = full
        .match_indices("\n    ok ")
        .map(|(at, _)| at + 1)
        .collect();
    let third = &order[2];
    let (suite, name) = third.split_once('.').unwrap();
    let cut = results[2];
    let before = &full[..cut];
    let in_suite = before[before.rfind("# Subtest:").unwrap()..]
        .lines()
        .filter(|l| l.starts_with("    ok "))
        .count();
    let boot1 = format!(
        "{before}    # panic: boom at t.rs:1\n    not ok {} {name} # ERROR panic: boom\nBail out! panic in {suite}.{name}\nEXIT: STATUS=3\n",
        in_suite + 1
    );
    let resumed = boot_text(
        &PASSING,
        &Options {
            skip: 3,
            ..options(5)
        },
    );
    let log = format!(
        "xtask: boot 1 (default): q\n{boot1}xtask: boot 2 (default): q ktest.skip=3\n{resumed}"
    );
    let verdict = judge(log.as_bytes());
    assert!(!verdict.passed());
    let got = summary(&verdict);
    assert_eq!(got.len(), 6, "{got:#?}");
    for (index, (id, outcome)) in got.iter().enumerate() {
        assert_eq!(id, &order[index]);
        let expected = if index == 2 {
            Outcome::Error
        } else if id.ends_with(".probe") {
            Outcome::Skip
        } else {
            Outcome::Pass
        };
        assert_eq!(*outcome, expected, "{id}");
    }
    assert_eq!(
        verdict.records[2].reason, "panic: boom",
        "the test that panicked, once, with the kernel's reason"
    );

    // Without the resumed boot (`cargo xtask run`), the tests that never started say
    // which test the kernel panicked in: the third, not the fourth, which never ran.
    let verdict = judge(format!("xtask: boot 1 (default): q\n{boot1}").as_bytes());
    let not_run: Vec<&TestRecord> = verdict
        .records
        .iter()
        .filter(|r| r.reason.starts_with("not run"))
        .collect();
    assert_eq!(not_run.len(), 3, "{:#?}", verdict.records);
    for record in not_run {
        assert!(
            record.reason.ends_with(&format!("while `{third}` ran")),
            "{}",
            record.reason
        );
    }
}

#[test]
fn a_test_that_printed_no_result_is_an_error_and_its_neighbours_keep_theirs() {
    let good = passing_log();
    let second = good
        .lines()
        .find(|l| l.starts_with("    ok 2 "))
        .unwrap()
        .to_string();
    let log = good.replace(&format!("{second}\n"), "\u{1}garbage\n");
    let verdict = judge(log.as_bytes());
    let before = judge(good.as_bytes());
    let tests: Vec<&TestRecord> = verdict
        .records
        .iter()
        .filter(|r| r.id.suite != "ktap")
        .collect();
    assert_eq!(tests.len(), before.records.len());
    let mut missing = 0;
    for (now, was) in tests.iter().zip(&before.records) {
        assert_eq!(now.id, was.id);
        if now.reason == NO_RESULT {
            missing += 1;
            assert_eq!(now.outcome, Outcome::Error);
        } else {
            assert_eq!(now.outcome, was.outcome, "{} keeps its result", now.id);
        }
    }
    assert_eq!(missing, 1, "{:#?}", verdict.records);
    let problems = &verdict.records.last().unwrap().diagnostics;
    assert!(
        problems
            .iter()
            .any(|p| p.contains("not a KTAP line: `\u{1}garbage`")),
        "{problems:#?}"
    );
}

#[test]
fn a_usage_bail_out_is_an_infrastructure_error() {
    let mut out = String::new();
    let totals = runner::run(
        &PASSING,
        &Options {
            filter: vec!["nosuch::*".into()],
            ..Options::default()
        },
        &mut out,
        &mut Fake { clock: 0 },
    );
    out.push_str(&format!("EXIT: STATUS={}\n", totals.exit_status()));
    let verdict = judge(out.as_bytes());
    assert!(!verdict.passed());
    assert_eq!(verdict.infra.len(), 1, "{:?}", verdict.infra);
    assert!(
        verdict.infra[0].contains("nosuch::*") && verdict.infra[0].contains("mm::frames"),
        "names the glob and the suites: {:?}",
        verdict.infra
    );
}

#[test]
fn line_mode_wrapping_is_undone_per_boot() {
    let good = boot_text(&PASSING, &options(5));
    let width = sclp::LINE_MODE_WIDTH;
    // As QEMU shows the line-mode console: every message text object after a newline, long
    // lines in pieces of the width, and an empty piece after an exact fit.
    let mut console = String::from("xtask: boot 1 (lm): qemu -device sclplmconsole,chardev=con0\n");
    for line in good.lines() {
        let line = if line.starts_with("# command line:") {
            format!("{line} {}", "x".repeat(2 * width))
        } else {
            line.to_string()
        };
        let chars: Vec<char> = line.chars().collect();
        for piece in chars.chunks(width) {
            console.push('\n');
            console.extend(piece);
        }
        if chars.is_empty() || chars.len().is_multiple_of(width) {
            console.push('\n');
        }
    }
    let verdict = judge(console.as_bytes());
    assert!(verdict.passed(), "{:#?}", verdict.records);
    assert_eq!(
        verdict.counts().to_string(),
        "5 passed, 0 failed, 1 skipped"
    );
}

#[test]
fn a_crash_report_stays_with_the_test_that_crashed() {
    let full = boot_text(&PASSING, &options(5));
    let cut = full.match_indices("\n    ok ").nth(1).unwrap().0 + 1;
    let log = format!(
        "{}    # unexpected machine-check interruption: code 0x1\n    # r0-r3: 1 2 3 4\nBail out! unexpected interruption\nEXIT: STATUS=3\n",
        &full[..cut]
    );
    let verdict = judge(log.as_bytes());
    let crashed = &verdict.records[1];
    assert_eq!(crashed.outcome, Outcome::Error, "{:#?}", verdict.records);
    assert_eq!(crashed.reason, "Bail out! unexpected interruption");
    assert!(crashed.diagnostics.iter().any(|d| d.starts_with("r0-r3")));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Issue 11: for every prefix of a passing log that lacks its completion marker, the
    /// verdict must not pass. (Every cut point, over logs of random seeds and orders.)
    #[test]
    fn no_prefix_without_the_completion_marker_passes(seed in any::<u64>(), cut in any::<prop::sample::Index>()) {
        let log = format!("xtask: boot 1 (default): q\n{}", boot_text(&PASSING, &options(seed)));
        let marker = log.find("EXIT: STATUS=").unwrap() + "EXIT: STATUS=1".len();
        let at = cut.index(marker);
        let verdict = judge(&log.as_bytes()[..at]);
        prop_assert!(!verdict.passed(), "prefix of {at} bytes passed:\n{}", &log[..at]);
    }

    /// Any single line deleted from a passing log is noticed.
    #[test]
    fn no_log_with_a_ktap_line_deleted_passes(seed in any::<u64>(), pick in any::<prop::sample::Index>()) {
        let log = boot_text(&PASSING, &options(seed));
        let lines: Vec<&str> = log.lines().collect();
        let start = lines.iter().position(|l| *l == "KTAP version 1").unwrap();
        let index = start + pick.index(lines.len() - start);
        let removed = lines[index];
        // Diagnostics (`# ...`) carry no verdict of their own, except the totals lines.
        prop_assume!(!removed.trim_start().starts_with("# ") || removed.contains("pass:"));
        prop_assume!(!removed.trim_start().starts_with("KTAP version") || index == start);
        let damaged: String = lines
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != index)
            .map(|(_, l)| format!("{l}\n"))
            .collect();
        let verdict = judge(damaged.as_bytes());
        prop_assert!(!verdict.passed(), "line {index} `{removed}` deleted and still passed");
    }
}

#[test]
fn the_prefix_property_covers_the_full_log_too() {
    let log = passing_log();
    assert!(judge(log.as_bytes()).passed());
    let marker = log.find("EXIT: STATUS=").unwrap();
    for at in (0..marker + "EXIT: STATUS=1".len()).step_by(7) {
        assert!(!judge(&log.as_bytes()[..at]).passed(), "{at}");
    }
}
