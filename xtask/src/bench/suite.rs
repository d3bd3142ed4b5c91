//! `cargo xtask bench suite`: the default suite in one boot, on the `[default]` matrix machine
//! (same QEMU, memory and backing store as `cargo xtask test`), after one warm-up run, with
//! the release kernel like the boot benchmark.
//!
//! The kernel prints `# time_us:` before each result and `# run_us:` after the totals, both
//! from the TOD clock. Their difference is what the framework itself costs (registration
//! walk, isolation, KTAP output over SCLP); divided by the number of tests it is the per-test
//! overhead that issue 3 wants below 1 ms of guest time under TCG.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{Stats, header, qemu_version};
use crate::boot::{self, BootOutcome, Limits};
use crate::matrix::Config;
use crate::results::Counts;
use crate::verdict::Boot;

/// Issue 3's target for the framework's guest time per empty test under TCG.
pub const OVERHEAD_TARGET: Duration = Duration::from_millis(1);

/// Longest a whole suite run may take before the benchmark gives up.
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// What one suite run measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SuiteSample {
    /// Host wall time from QEMU start to exit.
    pub wall: Duration,
    /// Guest time of the whole run (`# run_us:`).
    pub run: Duration,
    /// Guest time inside the test bodies (sum of `# time_us:`).
    pub in_tests: Duration,
    /// Number of tests that ran.
    pub tests: usize,
    /// Tests that failed.
    pub failed: usize,
}

impl SuiteSample {
    /// Reads a finished boot. The run must have completed and timed every test, or the
    /// difference between run and test time would not be the framework's.
    pub fn from_boot(collector: &Boot, wall: Duration) -> Result<Self> {
        if !collector.completed() {
            bail!("the suite did not complete (no EXIT: line, or Bail out!)");
        }
        let run_us = collector
            .run_us
            .context("the kernel printed no `# run_us:` line")?;
        if collector.untimed_results > 0 {
            bail!(
                "{} test result(s) came without `# time_us:`",
                collector.untimed_results
            );
        }
        if collector.records.is_empty() {
            bail!("no test ran");
        }
        if collector.tests_time_us > run_us {
            bail!(
                "the tests' time_us sum ({} us) exceeds run_us ({run_us} us)",
                collector.tests_time_us
            );
        }
        Ok(Self {
            wall,
            run: Duration::from_micros(run_us),
            in_tests: Duration::from_micros(collector.tests_time_us),
            tests: collector.records.len(),
            failed: Counts::of(&collector.records).failed,
        })
    }

    /// Guest time the framework spent per test: `(run - in_tests) / tests`.
    pub fn overhead_per_test(&self) -> Duration {
        (self.run - self.in_tests) / self.tests as u32
    }
}

/// The suite benchmark's result (also its JSON form; times in seconds).
#[derive(Debug, Clone, Serialize)]
pub struct SuiteBench {
    /// QEMU version line.
    pub qemu: String,
    /// The matrix entry whose machine ran the suite.
    pub config: String,
    /// The QEMU arguments (kernel path aside).
    pub machine: String,
    /// Kernel arguments.
    pub kernel_args: Vec<String>,
    /// Measured runs (after one warm-up run).
    pub repeat: usize,
    /// Tests per run.
    pub tests: usize,
    /// Most failed tests in any one run (the numbers are suspect when not 0).
    pub failed: usize,
    /// Host wall time of a run, QEMU start to exit.
    pub wall: Stats,
    /// Guest time of the whole run (`# run_us:`).
    pub guest_run: Stats,
    /// Guest time inside the tests (sum of `# time_us:`).
    pub guest_in_tests: Stats,
    /// The framework's guest time per test.
    pub overhead_per_test: Stats,
    /// Issue 3's target for `overhead_per_test` (seconds).
    pub overhead_target: f64,
}

/// Runs the suite benchmark on `config`'s machine (its `initrd` already resolved).
pub fn suite_bench(
    qemu: &Path,
    kernel: &Path,
    config: &Config,
    repeat: usize,
) -> Result<SuiteBench> {
    let args = config.machine.args(kernel, &config.append);
    let mut samples = Vec::with_capacity(repeat);
    for round in 0..=repeat {
        let outcome = boot_once(qemu, &args, config.test_timeout)?;
        let sample = SuiteSample::from_boot(&outcome.boot, outcome.elapsed)
            .with_context(|| format!("suite run {round}"))?;
        if round > 0 {
            samples.push(sample);
        }
    }
    Ok(summarize(
        &samples,
        qemu_version(qemu)?,
        config,
        config.machine.args(Path::new("<image>"), &[]).join(" "),
    ))
}

fn summarize(
    samples: &[SuiteSample],
    qemu: String,
    config: &Config,
    machine: String,
) -> SuiteBench {
    let stats =
        |f: fn(&SuiteSample) -> Duration| Stats::of(&samples.iter().map(f).collect::<Vec<_>>());
    SuiteBench {
        qemu,
        config: config.name.clone(),
        machine,
        kernel_args: config.append.clone(),
        repeat: samples.len(),
        tests: samples.iter().map(|s| s.tests).max().unwrap_or(0),
        failed: samples.iter().map(|s| s.failed).max().unwrap_or(0),
        wall: stats(|s| s.wall),
        guest_run: stats(|s| s.run),
        guest_in_tests: stats(|s| s.in_tests),
        overhead_per_test: stats(SuiteSample::overhead_per_test),
        overhead_target: OVERHEAD_TARGET.as_secs_f64(),
    }
}

fn boot_once(qemu: &Path, args: &[String], per_test: Duration) -> Result<BootOutcome> {
    let mut sink = File::create("/dev/null").context("opening /dev/null")?;
    let outcome = boot::boot_quietly(
        qemu,
        args,
        Limits {
            per_test: Some(per_test),
            total: Some(RUN_LIMIT),
        },
        &mut sink,
    )?;
    if let Some(error) = outcome.infrastructure_error() {
        bail!("{error}");
    }
    if let Some(reason) = outcome.failure_reason() {
        let last = outcome
            .boot
            .records
            .last()
            .map_or("before the first result".to_string(), |r| {
                format!("after {}", r.id)
            });
        bail!("the suite did not run cleanly ({last}): {reason}");
    }
    Ok(outcome)
}

/// The human table.
pub fn table(result: &SuiteBench) -> String {
    let mut out = format!(
        "{}\nsuite: {} tests on [{}], {} runs after a warm-up\n",
        result.qemu, result.tests, result.config, result.repeat
    );
    if result.failed > 0 {
        out.push_str(&format!(
            "warning: {} test(s) failed in some run; the numbers may not be representative\n",
            result.failed
        ));
    }
    out.push_str(&header("suite in one boot"));
    out.push_str(&result.wall.row("wall, QEMU start to exit (ms)", 1e3));
    out.push_str(&result.guest_run.row("guest run_us (ms)", 1e3));
    out.push_str(&result.guest_in_tests.row("guest in test bodies (ms)", 1e3));
    out.push_str(&result.overhead_per_test.row("framework per test (us)", 1e6));
    let verdict = if result.overhead_per_test.median < result.overhead_target {
        "met"
    } else {
        "NOT met"
    };
    out.push_str(&format!(
        "framework cost per test (median) {:.1} us (target < {:.0} us under TCG: {verdict})\n",
        result.overhead_per_test.median * 1e6,
        result.overhead_target * 1e6
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ktap::Parser;

    fn collect(text: &str) -> Boot {
        let mut parser = Parser::new();
        let mut boot = Boot::new(1);
        for (line, event) in parser.push(text.as_bytes()).iter().enumerate() {
            boot.observe(line as u64 + 1, event);
        }
        boot
    }

    const RUN: &str = "KTAP version 1\n1..1\n    KTAP version 1\n    # Subtest: s\n    1..2\n\
        \x20   # time_us: 300\n    ok 1 a\n    # time_us: 500\n    not ok 2 b\nnot ok 1 s\n\
        # Totals: pass:1 fail:1 skip:0 total:2\n# run_us: 2800\nEXIT: STATUS=3\n";

    #[test]
    fn a_sample_splits_run_time_into_tests_and_framework() {
        let sample = SuiteSample::from_boot(&collect(RUN), Duration::from_secs(3)).unwrap();
        assert_eq!(sample.run, Duration::from_micros(2800));
        assert_eq!(sample.in_tests, Duration::from_micros(800));
        assert_eq!((sample.tests, sample.failed), (2, 1));
        assert_eq!(sample.overhead_per_test(), Duration::from_micros(1000));
    }

    #[test]
    fn incomplete_or_untimed_runs_are_rejected() {
        let wall = Duration::from_secs(1);
        let cases = [
            (RUN.replace("EXIT: STATUS=3\n", ""), "did not complete"),
            (RUN.replace("# run_us: 2800\n", ""), "no `# run_us:`"),
            (
                RUN.replace("    # time_us: 500\n", ""),
                "without `# time_us:`",
            ),
            (RUN.replace("run_us: 2800", "run_us: 700"), "exceeds run_us"),
        ];
        for (text, expected) in cases {
            let error = SuiteSample::from_boot(&collect(&text), wall)
                .unwrap_err()
                .to_string();
            assert!(error.contains(expected), "{expected}: {error}");
        }
    }

    #[test]
    fn summary_and_table_report_the_target() {
        let sample = |wall_ms, run_us| SuiteSample {
            wall: Duration::from_millis(wall_ms),
            run: Duration::from_micros(run_us),
            in_tests: Duration::from_micros(1000),
            tests: 10,
            failed: 0,
        };
        let config = Config {
            name: "default".into(),
            emulator: Default::default(),
            machine: Default::default(),
            initrd: Default::default(),
            append: Vec::new(),
            test_timeout: Duration::from_secs(60),
            groups: Vec::new(),
        };
        let samples = [sample(4000, 3000), sample(5000, 4000), sample(4500, 13_000)];
        let bench = summarize(&samples, "QEMU 7.2".into(), &config, "-m 256M".into());
        assert_eq!(bench.tests, 10);
        assert!((bench.overhead_per_test.median - 300e-6).abs() < 1e-9);
        assert!((bench.overhead_per_test.max - 1200e-6).abs() < 1e-9);
        assert!((bench.wall.median - 4.5).abs() < 1e-9);
        let table = table(&bench);
        assert!(
            table.contains(
                "framework cost per test (median) 300.0 us (target < 1000 us under TCG: met)"
            ),
            "{table}"
        );
        let slow = [sample(4000, 30_000)];
        let table = super::table(&summarize(&slow, String::new(), &config, String::new()));
        assert!(table.contains("NOT met"), "{table}");
    }
}
