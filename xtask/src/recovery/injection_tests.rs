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

const SUITE: &str = "arch::interrupts";
/// The test that gets the fault: third of the suite's seven, so tests run before and after it.
const VICTIM: &str = "specification_exception";
/// The hang test's idle limit: long enough for any healthy test under TCG, short for the test.
const HANG_LIMIT: Duration = Duration::from_secs(3);

fn config(name: &str, append: Vec<String>, test_timeout: Duration) -> Config {
    Config {
        name: name.to_string(),
        machine: Machine {
            initrd: crate::backing_store::ensure_standard().ok(),
            ..Machine::default()
        },
        initrd: Initrd::Standard,
        append,
        test_timeout,
        groups: Vec::new(),
    }
}

/// Runs the suite with `inject` (e.g. `panic`) aimed at [`VICTIM`].
fn run_injected(kind: &str, test_timeout: Duration) -> ConfigRun {
    let qemu = crate::install::ensure_qemu().expect("QEMU is needed for the injection tests");
    let config = config(
        &format!("inject-{kind}"),
        vec![format!("ktest.inject={kind}@{SUITE}.{VICTIM}")],
        test_timeout,
    );
    let dir = tempfile::tempdir().unwrap();
    let filter = [format!("ktest.filter={SUITE}")];
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
    assert_eq!(run.infra_error, None, "{log}");
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
/// starting with `reason`, and every other test passed.
fn assert_only_the_victim_failed(run: &ConfigRun, outcome: Outcome, reason: &str) {
    let summary: Vec<String> = run
        .records
        .iter()
        .map(|r| format!("{} {:?} {}", r.id, r.outcome, r.reason))
        .collect();
    assert_eq!(run.records.len(), 7, "{summary:#?}");
    for record in &run.records {
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

#[test]
fn a_panic_fails_that_test_and_a_reboot_runs_the_rest() {
    let run = run_injected("panic", Duration::from_secs(60));
    assert_only_the_victim_failed(&run, Outcome::Error, "panic: injected panic");
    assert_eq!(run.boots, 3, "listing, the panicking boot, the rest");
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
    assert_eq!(run.boots, 3);
}

#[test]
fn an_unexpected_program_interruption_fails_only_that_test() {
    let run = run_injected("pgm", Duration::from_secs(60));
    assert_only_the_victim_failed(&run, Outcome::Error, "program interruption 0x1");
    assert_eq!(run.boots, 2, "the kernel recovers by itself");
    assert!(run.incidents.is_empty(), "{:?}", run.incidents);
}

#[test]
fn console_garbage_instead_of_a_result_fails_only_that_test() {
    let run = run_injected("garbage", Duration::from_secs(60));
    assert_only_the_victim_failed(&run, Outcome::Error, "no result");
    assert_eq!(run.boots, 2);
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
        run.boots, 3,
        "the early exit must not count as the end of the run"
    );
}

/// A stand-in for QEMU that lists two tests, then reports one and is killed by a signal
/// (as by an OOM killer or an operator) in the middle of the run.
const KILLED_QEMU: &str = r#"#!/bin/sh
case "$*" in
*ktest.list*)
    printf 'KTAP version 1\n1..1\n# test: s.a file=a.rs:1 flags=-\n# test: s.b file=a.rs:2 flags=-\nEXIT: STATUS=77\n'
    exit 0 ;;
esac
printf 'KTAP version 1\n1..1\n    # Subtest: s\n    1..2\n    ok 1 a\n'
kill -9 $$
"#;

#[test]
fn qemu_killed_from_outside_is_an_infrastructure_error() {
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
    let run = run_config(&target, &dir.path().join("console.log"), &mut |_| {}).unwrap();
    assert_eq!(
        run.infra_error.as_deref(),
        Some("QEMU was killed by signal 9 (not by xtask)")
    );
    assert!(
        !run.records.iter().any(|r| r.id.name == "b"),
        "a test that never ran is not reported at all, least of all as passed: {:?}",
        run.records
    );
}
