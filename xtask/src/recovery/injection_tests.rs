//! The harness survives its kernel, proven on the real kernel: each `ktest.inject=` fault
//! goes into one test in the middle of `arch::interrupts`, the suite runs through
//! [`run_config`] (the recovery loop of `cargo xtask test`), and exactly that test must fail
//! with the right reason while every other test keeps its true result. A QEMU killed from
//! outside must be an infrastructure error, never passing tests.

use std::path::Path;
use std::time::Duration;

use super::*;
use crate::backing_store::Initrd;
use crate::qemu::Machine;
use crate::results::Outcome;

const SUITE: &str = "arch::interrupts";
/// The test that gets the fault: third of the suite's seven, so tests run before and after it.
const VICTIM: &str = "specification_exception";
/// The hang test's idle limit: long enough for any healthy test under TCG, short for the test.
const HANG_LIMIT: Duration = Duration::from_secs(3);

/// A configuration without a backing store: the suites these tests run never start the
/// memory manager (and QEMU would load 22 MB into guest memory at every boot for nothing);
/// the test of a corrupt backing store gives its own.
fn config(name: &str, append: Vec<String>, test_timeout: Duration) -> Config {
    Config {
        name: name.to_string(),
        emulator: crate::matrix::Emulator::Qemu,
        machine: Machine::default(),
        initrd: Initrd::None,
        append,
        test_timeout,
        groups: Vec::new(),
    }
}

/// Runs the suite with `inject` (e.g. `panic`) aimed at [`VICTIM`].
fn run_injected(kind: &str, test_timeout: Duration) -> ConfigRun {
    run_injected_with(kind, test_timeout, &[])
}

/// [`run_injected`] with more kernel arguments (e.g. a shuffled order).
fn run_injected_with(kind: &str, test_timeout: Duration, more: &[&str]) -> ConfigRun {
    run_injected_on(kind, test_timeout, more, crate::qemu::Console::Ascii)
}

/// [`run_injected_with`] on the given console.
fn run_injected_on(
    kind: &str,
    test_timeout: Duration,
    more: &[&str],
    console: crate::qemu::Console,
) -> ConfigRun {
    let qemu = crate::install::find_qemu().expect("QEMU is needed for the injection tests");
    let mut config = config(
        &format!("inject-{kind}"),
        vec![format!("ktest.inject={kind}@{SUITE}.{VICTIM}")],
        test_timeout,
    );
    config.machine.console = console;
    let dir = tempfile::tempdir().unwrap();
    let mut filter = vec![format!("ktest.filter={SUITE}")];
    filter.extend(more.iter().map(|a| a.to_string()));
    let target = Target {
        qemu: &qemu,
        kernel: crate::cargo::test_kernel(),
        config: &config,
        extra_kernel_args: &filter,
    };
    let mut live = Vec::new();
    let run = run_config(&target, &dir.path().join("console.log"), &mut |r| {
        live.push(r.id.clone())
    })
    .unwrap();
    let log = std::fs::read_to_string(dir.path().join("console.log")).unwrap_or_default();
    assert_eq!(run.infra_error(), None, "{log}");
    let mut seen = live.clone();
    seen.sort();
    seen.dedup();
    assert_eq!(
        seen.len(),
        live.len(),
        "every test reported live exactly once"
    );
    run
}

/// Asserts the run has all seven tests, the victim failed with `outcome` and a reason
/// starting with `reason`, and every other test passed. (Problems with the shape of the
/// output are records of the `ktap` suite; see [`ktap_problems`].)
fn assert_only_the_victim_failed(run: &ConfigRun, outcome: Outcome, reason: &str) {
    let tests: Vec<&crate::results::TestRecord> = run
        .verdict
        .records
        .iter()
        .filter(|r| r.id.suite != "ktap")
        .collect();
    let summary: Vec<String> = run
        .verdict
        .records
        .iter()
        .map(|r| format!("{} {:?} {}", r.id, r.outcome, r.reason))
        .collect();
    assert_eq!(tests.len(), 7, "{summary:#?}");
    assert!(!run.verdict.passed(), "a run with a failure never passes");
    for record in tests {
        assert_eq!(record.id.suite, SUITE, "{summary:#?}");
        if record.id.name == VICTIM {
            assert_eq!(record.outcome, outcome, "{summary:#?}");
            assert!(
                record.reason.starts_with(reason),
                "reason `{}` should start with `{reason}`",
                record.reason
            );
        } else {
            assert_eq!(record.outcome, Outcome::Pass, "{summary:#?}");
        }
    }
}

/// The records of problems with the output's shape.
fn ktap_problems(run: &ConfigRun) -> Vec<String> {
    run.verdict
        .records
        .iter()
        .filter(|r| r.id.suite == "ktap")
        .flat_map(|r| r.diagnostics.clone())
        .collect()
}

#[test]
fn a_panic_fails_that_test_and_a_reboot_runs_the_rest() {
    let run = run_injected("panic", Duration::from_secs(60));
    assert_only_the_victim_failed(&run, Outcome::Error, "panic: injected panic");
    assert!(ktap_problems(&run).is_empty(), "{:?}", ktap_problems(&run));
    assert_eq!(run.boots, 2, "the panicking boot, then one for the rest");
    assert!(
        run.incidents[0].contains("kernel panicked"),
        "{:?}",
        run.incidents
    );
}

#[test]
fn a_hang_times_out_that_test_and_a_reboot_runs_the_rest() {
    let run = run_injected("hang", HANG_LIMIT);
    assert_only_the_victim_failed(&run, Outcome::Timeout, "timeout: no test result for 3 s");
    assert_eq!(run.boots, 2);
}

#[test]
fn an_unexpected_program_interruption_fails_only_that_test() {
    let run = run_injected("pgm", Duration::from_secs(60));
    assert_only_the_victim_failed(&run, Outcome::Error, "program interruption 0x1");
    assert_eq!(run.boots, 1, "the kernel recovers by itself");
    assert!(ktap_problems(&run).is_empty(), "{:?}", ktap_problems(&run));
    assert!(run.incidents.is_empty(), "{:?}", run.incidents);
}

#[test]
fn console_garbage_instead_of_a_result_fails_only_that_test() {
    let run = run_injected("garbage", Duration::from_secs(60));
    assert_only_the_victim_failed(&run, Outcome::Error, "no result");
    assert_eq!(run.boots, 1);
    let problems = ktap_problems(&run);
    assert!(
        problems.iter().any(|p| p.contains("not a KTAP line"))
            && problems
                .iter()
                .any(|p| p.contains(&format!("no result line for `{SUITE}.{VICTIM}`"))),
        "the garbage and the missing line are named: {problems:#?}"
    );
}

#[test]
fn an_early_exit_fails_that_test_and_a_reboot_runs_the_rest() {
    let run = run_injected("exit", Duration::from_secs(60));
    assert_only_the_victim_failed(
        &run,
        Outcome::Error,
        "kernel exited (EXIT: STATUS=1) before the plan completed",
    );
    assert_eq!(
        run.boots, 2,
        "the early exit must not count as the end of the run"
    );
}

/// The line-mode console as QEMU shows it: `Bail out!` must still read as `Bail out!` (QEMU
/// decodes `!` as `]`), and the panic must be reported as on the ASCII console.
#[test]
fn a_panic_on_the_line_mode_console_reads_as_on_the_ascii_console() {
    let run = run_injected_on(
        "panic",
        Duration::from_secs(60),
        &[],
        crate::qemu::Console::LineMode,
    );
    assert_only_the_victim_failed(&run, Outcome::Error, "panic: injected panic");
    assert!(ktap_problems(&run).is_empty(), "{:?}", ktap_problems(&run));
    assert!(
        run.incidents[0].contains("kernel panicked"),
        "{:?}",
        run.incidents
    );
}

/// A panic in a shuffled order: the recovery boot resumes in the same order (same seed), so
/// every test still gets exactly its own result.
#[test]
fn a_panic_in_a_shuffled_order_resumes_in_the_same_order() {
    for seed in ["ktest.seed=1", "ktest.seed=7"] {
        let run = run_injected_with("panic", Duration::from_secs(60), &["ktest.shuffle", seed]);
        assert_only_the_victim_failed(&run, Outcome::Error, "panic: injected panic");
        assert!(ktap_problems(&run).is_empty(), "{:?}", ktap_problems(&run));
        assert_eq!(run.boots, 2);
        assert_eq!(
            run.verdict.boots[0].header.order.as_deref(),
            Some("shuffled")
        );
    }
}

/// A filter glob that matches nothing is a usage error that names the suites, not a green
/// empty run.
#[test]
fn a_filter_that_matches_nothing_is_a_usage_error_naming_the_suites() {
    let qemu = crate::install::find_qemu().expect("QEMU is needed for the injection tests");
    let config = config("nothing", Vec::new(), Duration::from_secs(30));
    let dir = tempfile::tempdir().unwrap();
    let filter = ["ktest.filter=nosuch::*".to_string()];
    let target = Target {
        qemu: &qemu,
        kernel: crate::cargo::test_kernel(),
        config: &config,
        extra_kernel_args: &filter,
    };
    let run = run_config(&target, &dir.path().join("console.log"), &mut |_| {}).unwrap();
    let error = run.infra_error().expect("a usage error");
    assert!(
        error.contains("nosuch::*") && error.contains("arch::interrupts"),
        "{error}"
    );
    assert!(!run.verdict.passed());
    assert_eq!(run.boots, 1);
}

/// A stand-in for QEMU that plans two tests, reports one and is killed by a signal (as by an
/// OOM killer or an operator) in the middle of the run.
const KILLED_QEMU: &str = r#"#!/bin/sh
printf 'KTAP version 1\n# zhint: seed=1 filter=* skip=0 order=sorted\n# test: s.a file=a.rs:1 flags=-\n# test: s.b file=a.rs:2 flags=-\n# test: s.c file=a.rs:3 flags=-\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..3\n    ok 1 a\n'
kill -9 $$
"#;

#[test]
fn qemu_killed_from_outside_is_an_infrastructure_error_and_nothing_vanishes() {
    let dir = tempfile::tempdir().unwrap();
    let qemu = dir.path().join("qemu");
    std::fs::write(&qemu, KILLED_QEMU).unwrap();
    std::fs::set_permissions(&qemu, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let config = config("killed", Vec::new(), Duration::from_secs(30));
    let target = Target {
        qemu: &qemu,
        kernel: Path::new("zhint"),
        config: &config,
        extra_kernel_args: &[],
    };
    let log = dir.path().join("console.log");
    let run = run_config(&target, &log, &mut |_| {}).unwrap();
    assert_eq!(
        run.infra_error().as_deref(),
        Some("boot 1: QEMU was killed by signal 9 (not by xtask)")
    );
    let summary: Vec<(String, Outcome, String)> = run
        .verdict
        .records
        .iter()
        .map(|r| (r.id.to_string(), r.outcome, r.reason.clone()))
        .collect();
    assert_eq!(
        summary,
        [
            ("s.a".to_string(), Outcome::Pass, String::new()),
            (
                "s.b".to_string(),
                Outcome::Error,
                "QEMU was killed by signal 9 (not by xtask)".to_string()
            ),
            (
                "s.c".to_string(),
                Outcome::Error,
                "not run: QEMU was killed by signal 9 (not by xtask) while `s.b` ran".to_string()
            ),
        ]
    );
    let parsed = crate::verdict::judge(&std::fs::read(&log).unwrap());
    assert_eq!(
        parsed
            .records
            .iter()
            .map(|r| (r.id.to_string(), r.outcome, r.reason.clone()))
            .collect::<Vec<_>>(),
        summary,
        "`cargo xtask parse` of the log reaches the same verdict"
    );
    assert_eq!(parsed.infra, run.verdict.infra);
}

/// Only an absent backing store may skip: one that is present but not a backing-store image,
/// or the real image cut short, makes every test that needs it fail with the reason.
#[test]
fn a_corrupt_or_truncated_backing_store_fails_and_never_skips() {
    let qemu = crate::install::find_qemu().expect("QEMU is needed for the injection tests");
    let dir = tempfile::tempdir().unwrap();
    let standard = std::fs::read(crate::backing_store::ensure_standard().unwrap()).unwrap();
    let random: Vec<u8> = (0..200_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cases = [
        ("random bytes", random, "bad magic"),
        (
            "cut short",
            standard[..standard.len() / 3].to_vec(),
            "image truncated",
        ),
    ];
    for (what, bytes, reason) in cases {
        let image = dir.path().join("store.img");
        std::fs::write(&image, &bytes).unwrap();
        let mut config = config("corrupt", Vec::new(), Duration::from_secs(60));
        config.machine.initrd = Some(image.clone());
        config.initrd = Initrd::File(image);
        let filter = ["ktest.filter=mm::frames".to_string()];
        let target = Target {
            qemu: &qemu,
            kernel: crate::cargo::test_kernel(),
            config: &config,
            extra_kernel_args: &filter,
        };
        let run = run_config(&target, &dir.path().join("console.log"), &mut |_| {}).unwrap();
        assert!(!run.verdict.passed(), "{what}");
        let tests: Vec<_> = run
            .verdict
            .records
            .iter()
            .filter(|r| r.id.suite == "mm::frames")
            .collect();
        assert!(!tests.is_empty());
        for record in tests {
            assert_eq!(record.outcome, Outcome::Fail, "{what}: {record:?}");
            assert!(
                record.message().contains(reason) && record.message().contains("unusable"),
                "{what}: {}",
                record.message()
            );
        }
    }
}
