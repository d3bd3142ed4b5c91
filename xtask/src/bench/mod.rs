//! `cargo xtask bench [boot|suite|mm|pressure|parallel|stress]`: side-by-side performance numbers
//! (issue 8).
//!
//! Every benchmark reports min, median and max over `--repeat` runs, prints a table and adds
//! its section to the JSON file. Without a name, all of them run, in the order below.
//!
//! | benchmark | measures |
//! |---|---|
//! | [`boot`] | QEMU start to exit, our kernel against a stop-at-once ELF (ratio) |
//! | [`suite`] | the default suite in one boot: host wall time, guest run time, framework cost per test |
//! | [`mm`] | guest ns and ESSA per memory-manager operation at 1k, 10k and 100k pages |
//! | [`pressure`] | host reclaim of the page cache with hinting on and off (`cmma=off`) |
//! | [`parallel`] | `cargo xtask test -j 2` against `-j 1` on the default matrix (ratio) |
//! | [`stress`] | the stress workload's operations per second on 1, 2 and 4 CPUs (ratios) |
//! | [`cold`] | a clean target directory to the first result of `cargo xtask run` (on request only) |

pub mod boot;
pub mod cold;
pub mod guest;
pub mod line;
pub mod mm;
pub mod parallel;
pub mod plot;
pub mod pressure;
pub mod store;
pub mod stress;
pub mod suite;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, ValueEnum};
use serde::Serialize;

use crate::backing_store::Initrd;
use crate::qemu::Machine;
use crate::{cargo, install, matrix, report};

/// A benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchKind {
    /// Boot to exit: our kernel against a stop-at-once ELF.
    Boot,
    /// The default suite in one boot; the framework's cost per test.
    Suite,
    /// Memory-manager operations at 1k, 10k and 100k pages: guest ns and ESSA per operation.
    Mm,
    /// Host reclaim of the page cache with hinting on and off.
    Pressure,
    /// `cargo xtask test -j 2` against `-j 1` on the default matrix.
    Parallel,
    /// The stress workload's throughput on 1, 2 and 4 CPUs.
    Stress,
    /// A clean target directory to the first result of `cargo xtask run` (only when named:
    /// every run compiles everything).
    Cold,
}

impl BenchKind {
    fn name(self) -> &'static str {
        match self {
            Self::Boot => "boot",
            Self::Suite => "suite",
            Self::Mm => "mm",
            Self::Pressure => "pressure",
            Self::Parallel => "parallel",
            Self::Stress => "stress",
            Self::Cold => "cold",
        }
    }

    /// Measured runs when `--repeat` is not given: the memory-manager boots take about a
    /// minute each (a 420 MB backing store, 100k pages under TCG), the others seconds.
    fn default_repeat(self) -> usize {
        match self {
            Self::Mm | Self::Pressure | Self::Stress | Self::Cold => 3,
            Self::Boot | Self::Suite | Self::Parallel => 10,
        }
    }
}

/// `cargo xtask bench` arguments.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Which benchmark (default: all).
    #[arg(value_enum)]
    pub which: Option<BenchKind>,
    /// Write the results as JSON.
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Measured runs per side (default: 10; 3 for mm, pressure, stress and cold).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
    pub repeat: Option<u64>,
    /// Write SVG charts (mm: ns per operation against pages; pressure: host reclaim) here.
    #[arg(long, value_name = "DIR")]
    pub plot: Option<PathBuf>,
    /// Kernel arguments for our kernel in the boot benchmark (default: run one short test;
    /// a run of no test is no pass under the verdict, and a filter that matches nothing is
    /// a usage error).
    #[arg(
        long,
        value_name = "ARGS",
        default_value = "ktest.filter=sclp::console.has_a_console"
    )]
    pub append: String,
}

impl BenchArgs {
    /// Measured runs for `kind`: `--repeat`, else the benchmark's own default.
    fn repeat_for(&self, kind: BenchKind) -> usize {
        self.repeat.map_or(kind.default_repeat(), |n| n as usize)
    }
}

/// Minimum, median and maximum of a set of durations, in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Stats {
    /// Fastest run.
    pub min: f64,
    /// Median run.
    pub median: f64,
    /// Slowest run.
    pub max: f64,
}

impl Stats {
    /// Statistics of `samples` (must not be empty).
    pub fn of(samples: &[Duration]) -> Self {
        let seconds: Vec<f64> = samples.iter().map(Duration::as_secs_f64).collect();
        Self::of_values(&seconds)
    }

    /// Statistics of plain numbers (must not be empty); for counts rather than times.
    pub fn of_values(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        let n = sorted.len();
        let median = if n % 2 == 1 {
            sorted[n / 2]
        } else {
            (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
        };
        Self {
            min: sorted[0],
            median,
            max: sorted[n - 1],
        }
    }

    /// A table row: `name`, then min, median and max multiplied by `scale`.
    fn row(&self, name: &str, scale: f64) -> String {
        format!(
            "{name:<34} {:>9.1} {:>9.1} {:>9.1}\n",
            self.min * scale,
            self.median * scale,
            self.max * scale
        )
    }
}

/// The header row of a min/median/max table.
fn header(title: &str) -> String {
    format!("{title:<34} {:>9} {:>9} {:>9}\n", "min", "median", "max")
}

/// The JSON file: one section per benchmark that ran.
#[derive(Debug, Default, Serialize)]
pub struct BenchReport {
    /// `cargo xtask bench boot`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot: Option<boot::BootBench>,
    /// `cargo xtask bench suite`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub suite: Option<suite::SuiteBench>,
    /// `cargo xtask bench mm`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mm: Option<mm::MmBench>,
    /// `cargo xtask bench pressure`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pressure: Option<pressure::PressureBench>,
    /// `cargo xtask bench parallel`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parallel: Option<parallel::ParallelBench>,
    /// `cargo xtask bench stress`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stress: Option<stress::StressBench>,
    /// `cargo xtask bench cold`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cold: Option<cold::ColdBench>,
}

/// Runs the chosen benchmarks (all without a name), prints their tables, writes the JSON.
pub fn run(args: &BenchArgs) -> Result<BenchReport> {
    if let Some(path) = &args.json {
        report::check_writable(path)?;
    }
    if let Some(dir) = &args.plot {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create the plot folder {}", dir.display()))?;
    }
    let kinds = match args.which {
        Some(kind) => vec![kind],
        None => vec![
            BenchKind::Boot,
            BenchKind::Suite,
            BenchKind::Mm,
            BenchKind::Pressure,
            BenchKind::Parallel,
            BenchKind::Stress,
        ],
    };
    let qemu = install::ensure_qemu()?;
    let mut result = BenchReport::default();
    let bar = crate::progress::Bar::steps(kinds.len() as u64, "benchmarks");
    for kind in kinds {
        let repeat = args.repeat_for(kind);
        bar.message(format!("(now: {})", kind.name()));
        crate::progress::eprintln(&format!(
            "xtask: bench {}: {repeat} measured run(s) per side",
            kind.name()
        ));
        let table = match kind {
            BenchKind::Boot => {
                let bench = run_boot(&qemu, &args.append, repeat)?;
                let table = boot::table(&bench);
                result.boot = Some(bench);
                table
            }
            BenchKind::Suite => {
                let bench = run_suite(&qemu, repeat)?;
                let table = suite::table(&bench);
                result.suite = Some(bench);
                table
            }
            BenchKind::Mm => {
                let bench = mm::mm_bench(&qemu, repeat)?;
                if let Some(dir) = &args.plot {
                    let path = dir.join(plot::MM_FILE);
                    plot::mm_chart(&bench, &path)?;
                    crate::progress::eprintln(&format!(
                        "xtask: bench mm: chart {}",
                        path.display()
                    ));
                }
                let table = mm::table(&bench);
                result.mm = Some(bench);
                table
            }
            BenchKind::Pressure => {
                let bench = pressure::pressure_bench(&qemu, repeat)?;
                if let Some(dir) = &args.plot {
                    let path = dir.join(plot::PRESSURE_FILE);
                    plot::pressure_chart(&bench, &path)?;
                    crate::progress::eprintln(&format!(
                        "xtask: bench pressure: chart {}",
                        path.display()
                    ));
                }
                let table = pressure::table(&bench);
                result.pressure = Some(bench);
                table
            }
            BenchKind::Parallel => {
                let bench = parallel::parallel_bench(&qemu, repeat)?;
                let table = parallel::table(&bench);
                result.parallel = Some(bench);
                table
            }
            BenchKind::Stress => {
                let bench = stress::stress_bench(&qemu, repeat)?;
                let table = stress::table(&bench);
                result.stress = Some(bench);
                table
            }
            BenchKind::Cold => {
                let bench = cold::cold_bench(repeat)?;
                let table = cold::table(&bench);
                result.cold = Some(bench);
                table
            }
        };
        crate::progress::println(&table);
        bar.inc();
    }
    drop(bar);
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&result).context("serializing the benchmark")?;
        report::write_atomically(path, json.as_bytes())?;
        println!("JSON: {}", path.display());
    }
    Ok(result)
}

fn run_boot(qemu: &Path, append: &str, repeat: usize) -> Result<boot::BootBench> {
    let kernel = cargo::build_kernel(true)?;
    let floor = cargo::xtask_dir("bench")?.join("stop-at-once.elf");
    std::fs::write(&floor, boot::stop_elf())
        .with_context(|| format!("cannot write {}", floor.display()))?;
    let kernel_args: Vec<String> = shlex::split(append).context("--append: unbalanced quotes")?;
    // Both sides get the same machine, the backing store included, so QEMU's loading of it
    // costs the same on both.
    let machine = Machine {
        initrd: Initrd::Standard.resolve()?,
        ..Machine::default()
    };
    boot::boot_bench(qemu, &kernel, &floor, &machine, &kernel_args, repeat)
}

fn run_suite(qemu: &Path, repeat: usize) -> Result<suite::SuiteBench> {
    let kernel = cargo::build_kernel(true)?;
    let mut config = default_config()?;
    config.machine.initrd = config.initrd.resolve()?;
    suite::suite_bench(qemu, &kernel, &config, repeat)
}

/// The `[default]` entry of the checked-in matrix: the machine `cargo xtask test` boots first.
fn default_config() -> Result<matrix::Config> {
    let root = cargo::project_root();
    let all = matrix::load(&root.join("qemu-scripts/unittests.cfg"), &root)?;
    let mut chosen = matrix::select(&all, &["default".to_string()], &[])?;
    chosen.pop().context("the matrix has no [default] entry")
}

/// The first line of `qemu --version`.
pub fn qemu_version(qemu: &Path) -> Result<String> {
    let version = std::process::Command::new(qemu)
        .arg("--version")
        .output()
        .context("qemu --version")?;
    Ok(String::from_utf8_lossy(&version.stdout)
        .lines()
        .next()
        .unwrap_or("")
        .to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_min_median_max() {
        let ms = |v: &[u64]| {
            v.iter()
                .map(|&m| Duration::from_millis(m))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            Stats::of(&ms(&[30, 10, 20])),
            Stats {
                min: 0.01,
                median: 0.02,
                max: 0.03
            }
        );
        assert_eq!(Stats::of(&ms(&[40, 10, 20, 30])).median, 0.025);
    }

    #[test]
    fn rows_scale_and_align() {
        let stats = Stats {
            min: 0.001,
            median: 0.0025,
            max: 0.01,
        };
        let row = stats.row("x (ms)", 1e3);
        assert_eq!(row.len(), header("x").len());
        assert!(row.ends_with("      1.0       2.5      10.0\n"), "{row:?}");
    }

    #[test]
    fn repeat_defaults_per_benchmark_unless_given() {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            bench: BenchArgs,
        }
        let parse = |args: &[&str]| {
            <Cli as clap::Parser>::try_parse_from(
                std::iter::once("bench").chain(args.iter().copied()),
            )
            .unwrap()
            .bench
        };
        let args = parse(&["mm", "--plot", "out"]);
        assert_eq!(args.which, Some(BenchKind::Mm));
        assert_eq!(args.plot, Some(PathBuf::from("out")));
        assert_eq!(args.repeat_for(BenchKind::Mm), 3);
        assert_eq!(args.repeat_for(BenchKind::Pressure), 3);
        assert_eq!(args.repeat_for(BenchKind::Boot), 10);
        let args = parse(&["--repeat", "5"]);
        assert_eq!(args.which, None);
        assert_eq!(args.repeat_for(BenchKind::Mm), 5);
        assert_eq!(args.repeat_for(BenchKind::Suite), 5);
    }

    #[test]
    fn only_sections_that_ran_are_in_the_json() {
        let json = serde_json::to_value(BenchReport::default()).unwrap();
        assert_eq!(json, serde_json::json!({}));
    }

    #[test]
    fn the_default_matrix_entry_is_found() {
        let config = default_config().unwrap();
        assert_eq!(config.name, "default");
        assert_eq!(config.initrd, Initrd::Standard);
    }
}
