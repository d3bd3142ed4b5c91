//! Every boot's console output is one KTAP v1 document that Linux's own KUnit parser
//! (`tools/testing/kunit/kunit_parser.py`, provisioned from Debian's Linux source) reads with
//! zero errors and the same counts as xtask: checked on real kernel output, booted here,
//! for a full run, a run on the line-mode console, a resumed boot and a boot with a failure.

use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::*;
use crate::backing_store::Initrd;
use crate::matrix::Config;
use crate::qemu::{Console, Machine};
use crate::recovery::{Target, run_config};

/// The KTAP documents of a console log, one per boot, as the verdict reads them: the
/// line-mode console's wrapping undone, xtask's own lines left out.
fn documents(log: &[u8]) -> Vec<String> {
    let mut lines = Lines::new();
    lines.feed(log);
    let mut boots: Vec<String> = Vec::new();
    let mut take = |raw: Vec<u8>, lines: &mut Lines| {
        let text = String::from_utf8_lossy(&raw)
            .trim_end_matches('\r')
            .to_string();
        if text.starts_with(BOOT_MARKER) {
            lines.line_mode = text.contains("sclplmconsole");
            lines.qemu_charset = lines.line_mode;
            boots.push(String::new());
        } else if !text.starts_with("xtask: ") {
            if boots.is_empty() {
                boots.push(String::new());
            }
            let boot = boots.last_mut().unwrap();
            boot.push_str(&text);
            boot.push('\n');
        }
    };
    while let Some(raw) = lines.next_line() {
        take(raw, &mut lines);
    }
    if let Some(raw) = lines.finish() {
        take(raw, &mut lines);
    }
    boots
}

#[derive(Debug, PartialEq, Eq)]
struct KunitCounts {
    errors: u64,
    passed: u64,
    failed: u64,
    skipped: u64,
}

/// Runs Linux's parser over one boot's document.
fn kunit(document: &str) -> (KunitCounts, serde_json::Value) {
    let dir = crate::provision::kunit_dir();
    assert!(
        dir.join("kunit_parser.py").exists(),
        "Linux's kunit_parser.py is missing in {}; {}",
        dir.display(),
        crate::provision::HOW
    );
    let mut child = Command::new("python3")
        .args(["-c", include_str!("kunit_check.py")])
        .arg(&dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs the KUnit parser");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(document.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    assert!(output.status.success(), "kunit_parser failed");
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).expect("one JSON line");
    let n = |key: &str| json[key].as_u64().unwrap();
    let counts = KunitCounts {
        errors: n("errors"),
        passed: n("passed"),
        failed: n("failed") + n("crashed"),
        skipped: n("skipped"),
    };
    (counts, json)
}

fn config(name: &str, console: Console, append: &[&str]) -> Config {
    Config {
        name: name.to_string(),
        emulator: crate::matrix::Emulator::Qemu,
        machine: Machine {
            console,
            initrd: crate::backing_store::ensure_standard().ok(),
            ..Machine::default()
        },
        initrd: Initrd::Standard,
        append: append.iter().map(|a| a.to_string()).collect(),
        test_timeout: Duration::from_secs(60),
        groups: Vec::new(),
    }
}

/// Boots `config` (one boot: none of these crash) and checks its document with kunit.
fn check(config: &Config) {
    let qemu = crate::install::find_qemu().expect("QEMU is needed for the reference check");
    let dir = tempfile::tempdir().unwrap();
    let log_path = dir.path().join("console.log");
    let target = Target {
        qemu: &qemu,
        kernel: crate::cargo::test_kernel(),
        config,
        extra_kernel_args: &[],
    };
    let run = run_config(&target, &log_path, &mut |_| {}).unwrap();
    let log = std::fs::read(&log_path).unwrap();
    assert_eq!(run.boots, 1, "{}", String::from_utf8_lossy(&log));
    let problems: Vec<&TestRecord> = run
        .verdict
        .records
        .iter()
        .filter(|r| r.id.suite == "ktap")
        .collect();
    assert!(
        problems.is_empty(),
        "[{}] xtask found problems in the kernel's own output: {problems:#?}",
        config.name
    );
    let docs = documents(&log);
    assert_eq!(docs.len(), 1);
    // What this boot printed (a resumed boot's plan leaves out what it passed over, which
    // the run's verdict rightly counts as missing).
    let ours = crate::results::Counts::of(run.verdict.records.iter().filter(|r| r.line.is_some()));
    let (theirs, json) = kunit(&docs[0]);
    assert_eq!(
        theirs,
        KunitCounts {
            errors: 0,
            passed: ours.passed as u64,
            failed: ours.failed as u64,
            skipped: ours.skipped as u64,
        },
        "[{}] kunit_parser: {json}\nxtask: {ours}",
        config.name
    );
    assert!(ours.passed > 0, "a real run");
}

// Linux's parser reads every boot with zero errors and xtask's counts: the whole suite
// sorted; shuffled on the line-mode console with a command line that fills exactly two of
// its 132-column pieces (the header line `# command line: ...` must come back whole); a
// resumed boot (its plans count only what it runs); and a boot with a failing test. One
// test each, so they boot side by side.

/// Every suite and test. A shorter stress workload and a small page pool (less for the
/// pressure tests to read) print the same lines and cost a second less of host CPU.
#[test]
fn linux_kunit_parser_reads_a_full_sorted_run() {
    check(&config(
        "full",
        Console::Ascii,
        &["ktest.seed=1", "ktest.stress_ops=100", "mm.pool=384K"],
    ));
}

#[test]
fn linux_kunit_parser_reads_a_shuffled_line_mode_run_with_a_two_piece_command_line() {
    let line_mode_args = [
        "ktest.seed=2",
        "ktest.shuffle",
        "ktest.filter=arch::*,sclp::*,cmma::essa",
    ];
    let prefix = format!(
        "# command line: {} ktest.stress_ops=",
        line_mode_args.join(" ")
    );
    let long = format!(
        "ktest.stress_ops={}",
        "1".repeat(2 * sclp::LINE_MODE_WIDTH - prefix.len())
    );
    let mut with_long: Vec<&str> = line_mode_args.to_vec();
    with_long.push(&long);
    check(&config("shuffled-line-mode", Console::LineMode, &with_long));
}

#[test]
fn linux_kunit_parser_reads_a_resumed_boot() {
    check(&config(
        "resumed",
        Console::Ascii,
        &[
            "ktest.seed=3",
            "ktest.shuffle",
            // 16 tests in 3 suites of at most 7: the first suite of any order is passed
            // over whole, the second perhaps in part.
            "ktest.skip=8",
            "ktest.filter=arch::*,sclp::*",
        ],
    ));
}

#[test]
fn linux_kunit_parser_reads_a_boot_with_a_failing_test() {
    check(&config(
        "failing",
        Console::Ascii,
        &[
            "ktest.seed=4",
            "ktest.selftest=fail",
            "ktest.filter=ktest::*,arch::interrupts",
        ],
    ));
}

#[test]
fn documents_undo_line_mode_wrapping_and_drop_xtask_lines() {
    let width = sclp::LINE_MODE_WIDTH;
    let long = "y".repeat(width + 3);
    let log = format!(
        "xtask: boot 1 (a): q sclplmconsole\n\nKTAP version 1\n{}\n{}\nxtask: boot 2 (b): q\nKTAP version 1\n",
        &long[..width],
        &long[width..]
    );
    assert_eq!(
        documents(log.as_bytes()),
        [
            format!("\nKTAP version 1\n{long}\n"),
            "KTAP version 1\n".to_string()
        ]
    );
}
