//! `cargo xtask bench parallel`: the wall time of `cargo xtask test --no-host -j 2` against
//! `-j 1` on the default matrix (issue 8).
//!
//! Each side runs this very xtask binary as a child, so the number is the command's, kernel
//! build check and report writing included. The kernel and the backing store are built first
//! so neither side pays for them, and the two sides alternate which goes first in each round
//! so neither always runs on colder caches.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{Stats, header, qemu_version};
use crate::backing_store::Initrd;
use crate::{cargo, interrupt, matrix};

/// The parallel benchmark's result (also its JSON form; times in seconds).
#[derive(Debug, Clone, Serialize)]
pub struct ParallelBench {
    /// QEMU version line.
    pub qemu: String,
    /// The configurations of the default matrix group.
    pub configs: Vec<String>,
    /// CPUs the host offers this process.
    pub host_cpus: usize,
    /// Measured runs per side.
    pub repeat: usize,
    /// `cargo xtask test --no-host -j 1`.
    pub jobs_1: Stats,
    /// `cargo xtask test --no-host -j 2`.
    pub jobs_2: Stats,
    /// `jobs_2.median / jobs_1.median`.
    pub ratio: f64,
    /// The best ratio two jobs can reach on equally long configurations with two CPUs.
    pub ideal_ratio: f64,
    /// Runs that reported test failures (exit status 1); their times still count.
    pub runs_with_failures: usize,
}

/// The best `-j 2` / `-j 1` ratio for `configs` equally long configurations: two at a time
/// need `ceil(n / 2)` slots instead of `n`.
pub fn ideal_ratio(configs: usize) -> f64 {
    if configs == 0 {
        return 1.0;
    }
    configs.div_ceil(2) as f64 / configs as f64
}

/// Runs the parallel benchmark.
pub fn parallel_bench(qemu: &Path, repeat: usize) -> Result<ParallelBench> {
    let root = cargo::project_root();
    let all = matrix::load(&root.join("qemu-scripts/unittests.cfg"), &root)?;
    let configs: Vec<String> = matrix::select(&all, &[], &[])?
        .into_iter()
        .map(|c| c.name)
        .collect();
    cargo::build_kernel(false)?;
    Initrd::Standard.resolve()?;
    let program = std::env::current_exe().context("locating the xtask binary")?;
    let log_dir = cargo::xtask_dir("bench")?;
    let mut times = [Vec::new(), Vec::new()];
    let mut runs_with_failures = 0;
    for round in 0..repeat {
        let order: [u32; 2] = if round % 2 == 0 { [1, 2] } else { [2, 1] };
        for jobs in order {
            let log = log_dir.join(format!("parallel-j{jobs}.log"));
            let (elapsed, failures) = time_test_command(&program, jobs, &log)?;
            eprintln!(
                "xtask: bench parallel: round {}/{repeat}, -j {jobs}: {:.0} ms",
                round + 1,
                elapsed.as_secs_f64() * 1e3
            );
            runs_with_failures += usize::from(failures);
            times[jobs as usize - 1].push(elapsed);
        }
    }
    let jobs_1 = Stats::of(&times[0]);
    let jobs_2 = Stats::of(&times[1]);
    Ok(ParallelBench {
        qemu: qemu_version(qemu)?,
        host_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        repeat,
        ratio: jobs_2.median / jobs_1.median,
        ideal_ratio: ideal_ratio(configs.len()),
        configs,
        jobs_1,
        jobs_2,
        runs_with_failures,
    })
}

/// Runs `xtask test --no-host -j JOBS` with its output in `log`; returns the wall time and
/// whether tests failed. Anything but "passed" or "tests failed" is an error.
fn time_test_command(program: &Path, jobs: u32, log: &Path) -> Result<(Duration, bool)> {
    let output = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let errors = output.try_clone().context("duplicating the log handle")?;
    let started = Instant::now();
    let status = Command::new(program)
        .args(["test", "--no-host", "-j", &jobs.to_string()])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(output)
        .stderr(errors)
        .status()
        .with_context(|| format!("cannot run {}", program.display()))?;
    let elapsed = started.elapsed();
    if interrupt::requested() {
        return Err(interrupt::Interrupted.into());
    }
    match status.code() {
        Some(0) => Ok((elapsed, false)),
        Some(1) => Ok((elapsed, true)),
        _ => bail!(
            "`xtask test -j {jobs}` ended with {status}; see {}",
            PathBuf::from(log).display()
        ),
    }
}

/// The human table.
pub fn table(result: &ParallelBench) -> String {
    let mut out = format!(
        "{}\nparallel: `cargo xtask test --no-host` on [{}], {} run(s) per side, {} host CPU(s)\n",
        result.qemu,
        result.configs.join(", "),
        result.repeat,
        result.host_cpus
    );
    if result.runs_with_failures > 0 {
        out.push_str(&format!(
            "warning: {} run(s) reported test failures\n",
            result.runs_with_failures
        ));
    }
    out.push_str(&header("default matrix wall time (ms)"));
    out.push_str(&result.jobs_1.row("-j 1", 1e3));
    out.push_str(&result.jobs_2.row("-j 2", 1e3));
    out.push_str(&format!(
        "ratio -j 2 / -j 1 (median) {:.2} (ideal {:.2} for {} equal configurations)\n",
        result.ratio,
        result.ideal_ratio,
        result.configs.len()
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ideal_ratio_counts_slots() {
        assert_eq!(ideal_ratio(0), 1.0);
        assert_eq!(ideal_ratio(1), 1.0);
        assert_eq!(ideal_ratio(2), 0.5);
        assert!((ideal_ratio(3) - 2.0 / 3.0).abs() < 1e-12);
    }

    #[test]
    fn the_table_shows_both_sides_and_the_ratio() {
        let stats = |median| Stats {
            min: median - 0.1,
            median,
            max: median + 0.1,
        };
        let bench = ParallelBench {
            qemu: "QEMU".into(),
            configs: vec!["a".into(), "b".into(), "c".into()],
            host_cpus: 2,
            repeat: 3,
            jobs_1: stats(3.0),
            jobs_2: stats(2.1),
            ratio: 0.7,
            ideal_ratio: ideal_ratio(3),
            runs_with_failures: 1,
        };
        let table = table(&bench);
        assert!(
            table.contains("on [a, b, c], 3 run(s) per side, 2 host CPU(s)"),
            "{table}"
        );
        assert!(table.contains("warning: 1 run(s)"), "{table}");
        assert!(
            table.contains("-j 2") && table.contains("2100.0"),
            "{table}"
        );
        assert!(
            table.contains(
                "ratio -j 2 / -j 1 (median) 0.70 (ideal 0.67 for 3 equal configurations)"
            ),
            "{table}"
        );
    }

    #[test]
    fn exit_statuses_map_to_pass_failures_and_errors() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        // A stand-in for the xtask binary that echoes its arguments and exits with `status`.
        let run = |status: u8| {
            let fake = dir.path().join(format!("exit{status}"));
            std::fs::write(&fake, format!("#!/bin/sh\necho \"$@\"\nexit {status}\n")).unwrap();
            std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
            time_test_command(&fake, 2, &log)
        };
        assert!(!run(0).unwrap().1);
        assert_eq!(
            std::fs::read_to_string(&log).unwrap(),
            "test --no-host -j 2\n"
        );
        assert!(run(1).unwrap().1);
        let error = run(2).unwrap_err().to_string();
        assert!(error.contains("-j 2") && error.contains("see "), "{error}");
    }
}
