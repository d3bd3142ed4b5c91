//! `cargo xtask bench cold`: what a newcomer waits for, from a clean target directory to the
//! first test result of `cargo xtask run` (issue 16; run on request only, a run takes a
//! compile of everything).
//!
//! Each run is the README's quick-start command itself, `cargo xtask run --raw` with one
//! short test, in an empty target directory of its own (`CARGO_TARGET_DIR`), with the
//! crates already downloaded (`cargo fetch` first, so the network is not measured). The
//! child's output lines are timed as they arrive, which splits the wait into its phases:
//! building xtask (`cargo run --quiet` is silent until xtask prints), building the kernel (up
//! to cargo's `Finished` line), and booting to the first KTAP line and the first result.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::Stdio;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{Stats, header};
use crate::{cargo, interrupt};

/// The target for a clean checkout to the first KTAP line, in seconds.
pub const TARGET_SECS: f64 = 30.0;

/// Kernel arguments of the measured run: one short test, so the run ends soon after its result.
const KERNEL_ARGS: &str = "ktest.filter=sclp::console.has_a_console";

/// The cold-start benchmark's result (also its JSON form; times in seconds from the start of
/// `cargo xtask run`).
#[derive(Debug, Clone, Serialize)]
pub struct ColdBench {
    /// The command measured.
    pub command: String,
    /// CPUs the host offers this process.
    pub host_cpus: usize,
    /// The load average when the first run started.
    pub load_average: String,
    /// Measured runs.
    pub repeat: usize,
    /// Until xtask's first output (cargo built xtask).
    pub xtask_built: Stats,
    /// Until the kernel build's `Finished` line.
    pub kernel_built: Stats,
    /// Until the line `KTAP version 1`.
    pub first_ktap_line: Stats,
    /// Until the first test result line.
    pub first_result: Stats,
}

/// When each phase of one cold run ended.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
struct Marks {
    xtask_built: Option<Duration>,
    kernel_built: Option<Duration>,
    first_ktap_line: Option<Duration>,
    first_result: Option<Duration>,
}

impl Marks {
    /// Notes what `line`, seen `at`, ends; the first sighting counts.
    fn see(&mut self, line: &str, at: Duration) {
        self.xtask_built.get_or_insert(at);
        let text = line.trim_start();
        if self.kernel_built.is_none() && text.starts_with("Finished ") {
            self.kernel_built = Some(at);
        }
        if self.first_ktap_line.is_none() && text.starts_with("KTAP version 1") {
            self.first_ktap_line = Some(at);
        }
        if self.first_ktap_line.is_some()
            && self.first_result.is_none()
            && (text.starts_with("ok ") || text.starts_with("not ok "))
        {
            self.first_result = Some(at);
        }
    }
}

/// Runs the cold-start benchmark `repeat` times.
pub fn cold_bench(repeat: usize) -> Result<ColdBench> {
    let fetch = cargo::cargo()
        .args(["fetch", "--quiet"])
        .status()
        .context("cannot run cargo fetch")?;
    if !fetch.success() {
        bail!("cargo fetch failed ({fetch}): the crates must be downloaded before a cold run");
    }
    let target = cargo::xtask_dir("bench")?.join("cold-target");
    let load_average = load_average();
    let mut runs = Vec::new();
    for round in 0..repeat {
        if target.exists() {
            std::fs::remove_dir_all(&target)
                .with_context(|| format!("cannot empty {}", target.display()))?;
        }
        let marks = cold_run(&target)?;
        crate::progress::eprintln(&format!(
            "xtask: bench cold: run {}/{repeat}: first KTAP line after {:.1} s",
            round + 1,
            marks.first_ktap_line.unwrap_or_default().as_secs_f64()
        ));
        runs.push(marks);
    }
    let _ = std::fs::remove_dir_all(&target);
    let stats = |pick: fn(&Marks) -> Option<Duration>| {
        Stats::of(
            &runs
                .iter()
                .map(|m| pick(m).unwrap_or_default())
                .collect::<Vec<_>>(),
        )
    };
    Ok(ColdBench {
        command: format!("cargo xtask run --raw -- {KERNEL_ARGS}"),
        host_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
        load_average,
        repeat,
        xtask_built: stats(|m| m.xtask_built),
        kernel_built: stats(|m| m.kernel_built),
        first_ktap_line: stats(|m| m.first_ktap_line),
        first_result: stats(|m| m.first_result),
    })
}

/// One `cargo xtask run` in the empty target directory `target`; every phase must be seen.
fn cold_run(target: &Path) -> Result<Marks> {
    let started = Instant::now();
    let mut child = cargo::cargo()
        .args(["xtask", "run", "--raw", "--", KERNEL_ARGS])
        .env("CARGO_TARGET_DIR", target)
        .env("NO_COLOR", "1")
        .env_remove("CARGO")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run cargo xtask run")?;
    let (sender, lines) = mpsc::channel();
    let stdout = child.stdout.take().context("child stdout")?;
    let stderr = child.stderr.take().context("child stderr")?;
    let readers = [
        spawn_reader(BufReader::new(stdout), sender.clone(), started),
        spawn_reader(BufReader::new(stderr), sender, started),
    ];
    let mut marks = Marks::default();
    let mut transcript = String::new();
    for (line, at) in lines {
        marks.see(&line, at);
        transcript.push_str(&line);
        transcript.push('\n');
        if interrupt::requested() {
            let _ = child.kill();
        }
    }
    for reader in readers {
        let _ = reader.join();
    }
    let status = child.wait().context("waiting for cargo xtask run")?;
    if interrupt::requested() {
        return Err(interrupt::Interrupted.into());
    }
    if !status.success() || marks.first_result.is_none() || marks.kernel_built.is_none() {
        bail!(
            "the cold `cargo xtask run` did not reach a passing result ({status}); its output:\n{transcript}"
        );
    }
    Ok(marks)
}

fn spawn_reader(
    reader: impl BufRead + Send + 'static,
    sender: mpsc::Sender<(String, Duration)>,
    started: Instant,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        for line in reader.lines().map_while(Result::ok) {
            if sender.send((line, started.elapsed())).is_err() {
                break;
            }
        }
    })
}

/// `/proc/loadavg`'s three averages, or `unknown`.
pub fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .map(|text| {
            text.split_whitespace()
                .take(3)
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_else(|| "unknown".into())
}

/// The human table.
pub fn table(result: &ColdBench) -> String {
    let mut out = format!(
        "cold: `{}` in an empty target directory (crates downloaded), {} run(s), {} host CPU(s), load average {} at the start\n",
        result.command, result.repeat, result.host_cpus, result.load_average
    );
    out.push_str(&header("time from the command's start (s)"));
    out.push_str(&result.xtask_built.row("xtask built", 1.0));
    out.push_str(&result.kernel_built.row("kernel built", 1.0));
    out.push_str(&result.first_ktap_line.row("first KTAP line", 1.0));
    out.push_str(&result.first_result.row("first test result", 1.0));
    out.push_str(&format!(
        "first KTAP line (median) {:.1} s: {} the target of {TARGET_SECS:.0} s\n",
        result.first_ktap_line.median,
        if result.first_ktap_line.median < TARGET_SECS {
            "within"
        } else {
            "over"
        }
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_are_read_from_the_output_in_order() {
        let mut marks = Marks::default();
        let s = Duration::from_secs;
        marks.see("   Compiling proc-macro2 v1.0", s(15));
        marks.see("ok 1 stray line before KTAP", s(16));
        marks.see(
            "    Finished `dev` profile [optimized] target(s) in 20.1s",
            s(35),
        );
        marks.see("    Finished again", s(36));
        marks.see("KTAP version 1", s(37));
        marks.see("# Subtest: sclp::console", s(37));
        marks.see("    ok 1 has_a_console", s(38));
        marks.see("ok 1 sclp::console", s(39));
        assert_eq!(
            marks,
            Marks {
                xtask_built: Some(s(15)),
                kernel_built: Some(s(35)),
                first_ktap_line: Some(s(37)),
                first_result: Some(s(38)),
            }
        );
    }

    #[test]
    fn the_table_names_the_command_and_the_target() {
        let stats = |median| Stats {
            min: median,
            median,
            max: median,
        };
        let bench = ColdBench {
            command: "cargo xtask run".into(),
            host_cpus: 2,
            load_average: "0.10 0.20 0.30".into(),
            repeat: 1,
            xtask_built: stats(15.0),
            kernel_built: stats(35.0),
            first_ktap_line: stats(36.0),
            first_result: stats(36.2),
        };
        let table = table(&bench);
        assert!(table.contains("load average 0.10 0.20 0.30"), "{table}");
        assert!(
            table.contains("first KTAP line (median) 36.0 s: over the target of 30 s"),
            "{table}"
        );
    }
}
