//! `cargo xtask`: build, boot and test the zhint kernel under QEMU.
//!
//! | command | does |
//! |---|---|
//! | `build [--release]` | builds the kernel image (`cargo build -p boot --target s390x-unknown-linux-gnu`) |
//! | `run [...] [-- ARGS]` | builds, boots once, streams the console, keeps `target/xtask/run/console.log` |
//! | `test [...] [-- ARGS]` | provisions, host unit tests, then the in-kernel suites for each matrix configuration (one boot each, a seed each), with reports and replay commands; `--seeds N` sweeps seeds; `--shard K/N` runs one CI machine's share of the boots |
//! | `parse FILE` | judges a captured console log with the same verdict, into the same reports |
//! | `provision` | installs the s390x target, QEMU and the host tests' reference consumers ([`provision`]) |
//! | `image --format elf\|raw\|zvm\|lpar [--out DIR] [-- ARGS]` | the kernel as a flat image, z/VM reader deck or HMC `.ins` load ([`image`]) |
//! | `stress [--seeds N] [--minutes M] [--shard K/N --first-seed S] [-j N] [--ops N] [--discard-rate R] [--debug] [--smp K]` | the `cmma::stress` workload per seed under a small page pool, on one CPU or on K at once; totals and replay commands ([`mod@stress`]) |
//! | `bench [boot\|suite\|mm\|pressure\|parallel\|stress\|cold]` | boot time against a stop-at-once ELF; the suite's per-test cost; memory-manager cost per operation and ESSA economy; host pressure with and without hinting; `-j 2` against `-j 1`; stress throughput on 1, 2 and 4 CPUs (default: all but `cold`); `cold`: a clean target directory to the first result |
//!
//! Exit codes: 0 all passed, 1 test failures or a crash, 2 usage or infrastructure errors,
//! 130 interrupted. The kernel talks KTAP v1 over the SCLP console ([`ktap`]); whether a run
//! passed is decided by one rule ([`verdict`], `docs/verdict.md`); a run that crashes or hangs
//! is recovered by rebooting with the same seed and `ktest.skip=N` ([`recovery`]). QEMU loads
//! the standard backing-store image with `-initrd` unless told otherwise ([`backing_store`]).

mod backing_store;
#[cfg(feature = "bench")]
mod bench;
mod boot;
mod cargo;
mod disk;
mod hercules;
mod image;
mod install;
mod interrupt;
mod ktap;
mod matrix;
#[cfg(test)]
mod pipelines;
mod progress;
mod provision;
mod qemu;
mod recovery;
mod report;
mod results;
mod schedule;
mod shard;
mod stress;
mod verdict;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backing_store::Initrd;
use crate::qemu::{Console, Machine};
use crate::report::{LiveView, SuiteReport};
use crate::results::{Counts, TestRecord};

#[derive(Debug, Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, boot and test the zhint kernel under QEMU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Build the kernel image.
    Build {
        /// Build with the release profile.
        #[arg(long)]
        release: bool,
    },
    /// Build the kernel and boot it once, streaming the console.
    Run(RunArgs),
    /// Run the host unit tests and the in-kernel suites, and write reports.
    Test(TestArgs),
    /// Judge a captured console log and turn it into reports.
    #[command(after_help = verdict::RULE)]
    Parse(ParseArgs),
    /// Benchmarks.
    #[cfg(feature = "bench")]
    Bench(bench::BenchArgs),
    /// Benchmarks (xtask reruns itself with its `bench` feature for them).
    #[cfg(not(feature = "bench"))]
    #[command(disable_help_flag = true)]
    Bench {
        /// The arguments of `cargo xtask bench` (see `cargo xtask bench --help`).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Write the kernel as an image for QEMU, zipl, z/VM or an LPAR.
    Image(ImageArgs),
    /// Run the `cmma::stress` workload under many seeds and small page pools.
    Stress(stress::StressArgs),
    /// Install what building and testing need (Rust target, QEMU, the reference consumers
    /// the host tests run); `cargo xtask test` does this first.
    Provision,
    /// One Hercules boot prepared in DIR: its console on stdout (what a `hercules` matrix
    /// entry runs; see xtask/src/hercules.rs).
    #[command(name = "hercules-console", hide = true)]
    HerculesConsole {
        /// The boot's directory.
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
struct ImageArgs {
    /// Image format.
    #[arg(long, value_enum)]
    format: image::Format,
    /// Output folder (default: target/xtask/image/FORMAT).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Build the kernel with the release profile.
    #[arg(long)]
    release: bool,
    /// The backing store the `zvm` deck and the `lpar` load carry as their initrd: a path,
    /// or `none` (default: the standard image; `elf` and `raw` carry none).
    #[arg(long, value_name = "PATH|none")]
    initrd: Option<String>,
    /// Kernel command-line arguments built into the image or its parameter file.
    #[arg(last = true)]
    kernel_args: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Accel {
    Tcg,
    Kvm,
}

impl Accel {
    fn name(self) -> &'static str {
        match self {
            Self::Tcg => "tcg",
            Self::Kvm => "kvm",
        }
    }
}

/// Longest `--timeout` accepted, in seconds: an hour per test or per boot is already far
/// beyond anything the suites need under TCG.
const MAX_TIMEOUT_SECS: u64 = 3600;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ConsoleArg {
    /// The ASCII console (sclpconsole).
    Ascii,
    /// The line-mode console (sclplmconsole).
    LineMode,
}

#[derive(Debug, Args)]
struct RunArgs {
    /// Build with the release profile.
    #[arg(long)]
    release: bool,
    /// QEMU accelerator.
    #[arg(long, value_enum, default_value = "tcg")]
    accel: Accel,
    /// CPU model.
    #[arg(long, default_value = "qemu")]
    cpu: String,
    /// Number of CPUs.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=248))]
    smp: u32,
    /// Memory size (QEMU syntax).
    #[arg(long, default_value = "256M")]
    mem: String,
    /// SCLP console device.
    #[arg(long, value_enum, default_value = "ascii")]
    console: ConsoleArg,
    /// Seconds before QEMU is killed (default 60; none with --gdb; at most 3600).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    timeout: Option<u64>,
    /// Wait for a debugger on tcp::1234 before starting the CPU (adds `-s -S`); the kernel
    /// is built with full debug info (cargo profile `gdb`) unless --release.
    #[arg(long)]
    gdb: bool,
    /// Backing-store image for `-initrd`: a path, or `none` (default: the standard image).
    #[arg(long, value_name = "PATH|none")]
    initrd: Option<String>,
    /// Stream the console as it is (KTAP and all) instead of the kernel's banner and one
    /// line per test (colour on a terminal unless `NO_COLOR` is set); the console log in
    /// target/xtask/run keeps every byte either way.
    #[arg(long)]
    raw: bool,
    /// Kernel command-line arguments.
    #[arg(last = true)]
    kernel_args: Vec<String>,
}

/// In which order the kernel runs the tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Order {
    /// Drawn from each boot's seed (`ktest.shuffle`): order-dependent bugs surface, and the
    /// seed replays the order.
    Shuffled,
    /// Sorted by suite and source position.
    Sorted,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// Run only tests matching GLOB (`suite` or `suite.test`); repeatable.
    #[arg(long, value_name = "GLOB")]
    filter: Vec<String>,
    /// Configurations (or seeds) to run in parallel (default: one per CPU).
    #[arg(short = 'j', long = "jobs", value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: Option<u32>,
    /// Write a JUnit XML report to this file.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// The JUnit dialect: `jenkins` (valid against junit-10.xsd) or `gitlab`.
    #[arg(long, value_enum, default_value = "jenkins")]
    junit_flavor: report::JunitFlavor,
    /// Write a TAP 14 report to this file.
    #[arg(long, value_name = "FILE")]
    tap: Option<PathBuf>,
    /// Matrix entries to run (default: group `default`); repeatable or comma-separated.
    #[arg(long, value_name = "NAME")]
    matrix: Vec<String>,
    /// Run every matrix entry of these groups instead (e.g. `default,hercules`, what CI
    /// runs); repeatable or comma-separated.
    #[arg(long, value_name = "GROUP", conflicts_with = "matrix")]
    group: Vec<String>,
    /// Override the accelerator of every configuration.
    #[arg(long, value_enum)]
    accel: Option<Accel>,
    /// Seconds one test may run before it counts as hung (overrides the matrix; at most 3600).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=MAX_TIMEOUT_SECS))]
    timeout: Option<u64>,
    /// Build the kernel with the release profile.
    #[arg(long)]
    release: bool,
    /// Skip the host unit tests (`cargo test`).
    #[arg(long)]
    no_host: bool,
    /// A seed sweep: run every configuration under N random seeds (no host tests); each
    /// failing seed is printed with its replay command.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=100_000))]
    seeds: Option<u32>,
    /// The sweep's first seed (default: from the clock, printed); the others follow from
    /// it, so every shard of a sweep (`--shard`) plans the same seeds.
    #[arg(long, value_name = "S", requires = "seeds", value_parser = stress::parse_seed)]
    first_seed: Option<u64>,
    /// Run only shard K of N of the planned boots (configurations x seeds), for a CI matrix;
    /// with `--seeds`, needs `--first-seed`. Shard 1 also runs the host tests.
    #[arg(long, value_name = "K/N")]
    shard: Option<shard::Shard>,
    /// Test order inside each boot (default: `shuffled` for a seed sweep, else `sorted`).
    #[arg(long, value_enum)]
    order: Option<Order>,
    /// Kernel arguments appended to every configuration's (e.g. `ktest.seed=N`).
    #[arg(last = true)]
    kernel_args: Vec<String>,
}

#[derive(Debug, Args)]
struct ParseArgs {
    /// The console log.
    file: PathBuf,
    /// Write a JUnit XML report to this file.
    #[arg(long, value_name = "FILE")]
    junit: Option<PathBuf>,
    /// The JUnit dialect: `jenkins` (valid against junit-10.xsd) or `gitlab`.
    #[arg(long, value_enum, default_value = "jenkins")]
    junit_flavor: report::JunitFlavor,
    /// Write a TAP 14 report to this file.
    #[arg(long, value_name = "FILE")]
    tap: Option<PathBuf>,
    /// The log comes from the line-mode console without xtask's boot lines: join its
    /// full-width pieces back into lines.
    #[arg(long)]
    line_mode: bool,
}

/// How a command ended when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Passed,
    Failed,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return usage_error(&error),
    };
    if let Err(error) = interrupt::install() {
        eprintln!("xtask: error: cannot install the Ctrl-C handler: {error:#}");
        return ExitCode::from(2);
    }
    let result = match cli.command {
        Command::HerculesConsole { dir } => {
            return hercules::console(&dir).unwrap_or_else(|error| {
                eprintln!("xtask: error: {}", one_line(&format!("{error:#}")));
                ExitCode::from(2)
            });
        }
        Command::Build { release } => build(release),
        Command::Run(args) => run(args),
        Command::Test(args) => test(args),
        Command::Parse(args) => parse(args),
        #[cfg(feature = "bench")]
        Command::Bench(args) => bench(args),
        #[cfg(not(feature = "bench"))]
        Command::Bench { args } => return cargo::rerun_with_bench(&args),
        Command::Image(args) => image_command(args),
        Command::Stress(args) => stress(&args),
        Command::Provision => provision::provision(true).map(|()| Outcome::Passed),
    };
    match result {
        Ok(Outcome::Passed) => ExitCode::SUCCESS,
        Ok(Outcome::Failed) => ExitCode::from(1),
        Err(error) if error.is::<interrupt::Interrupted>() => {
            eprintln!("xtask: interrupted; QEMU stopped");
            ExitCode::from(130)
        }
        Err(error) => {
            eprintln!("xtask: error: {}", one_line(&format!("{error:#}")));
            ExitCode::from(2)
        }
    }
}

/// Help and version go to stdout with exit 0; every other clap error is one line and exit 2.
fn usage_error(error: &clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(
        error.kind(),
        ErrorKind::DisplayHelp | ErrorKind::DisplayVersion
    ) {
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    if error.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        eprintln!(
            "xtask: usage error: a command is required: build, run, test, parse, stress, bench, image or provision (see `cargo xtask --help`)"
        );
        return ExitCode::from(2);
    }
    let rendered = error.render().to_string();
    let first = rendered
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("invalid usage");
    let reason = first.strip_prefix("error: ").unwrap_or(first);
    eprintln!("xtask: usage error: {reason} (see `cargo xtask --help`)");
    ExitCode::from(2)
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn build(release: bool) -> Result<Outcome> {
    let kernel = cargo::build_kernel(release)?;
    println!("{}", kernel.display());
    Ok(Outcome::Passed)
}

/// Kernel arguments from the command line: words without blanks or quotes (each becomes
/// one word of the kernel command line).
fn check_kernel_args(args: &[String]) -> Result<()> {
    if let Some(bad) = args
        .iter()
        .find(|a| a.is_empty() || a.contains(char::is_whitespace) || a.contains('"'))
    {
        bail!("kernel argument `{bad}`: one word per argument, without blanks or quotes");
    }
    Ok(())
}

fn run(args: RunArgs) -> Result<Outcome> {
    check_kernel_args(&args.kernel_args)?;
    let _lock = cargo::lock("run")?;
    let qemu = install::ensure_qemu()?;
    let kernel = cargo::build_kernel_profile(match (args.release, args.gdb) {
        (true, _) => "release",
        (false, true) => "gdb",
        (false, false) => "dev",
    })?;
    let mut machine = Machine {
        accel: args.accel.name().into(),
        cpu: args.cpu.clone(),
        mem: args.mem.clone(),
        smp: args.smp,
        console: match args.console {
            ConsoleArg::Ascii => Console::Ascii,
            ConsoleArg::LineMode => Console::LineMode,
        },
        initrd: args
            .initrd
            .as_deref()
            .map_or(Initrd::Standard, |value| {
                Initrd::parse(value, &std::env::current_dir().unwrap_or_default())
            })
            .resolve()?,
        ..Machine::default()
    };
    let timeout = match (args.timeout, args.gdb) {
        (Some(seconds), _) => Some(Duration::from_secs(seconds)),
        (None, false) => Some(Duration::from_secs(60)),
        (None, true) => None,
    };
    if args.gdb {
        machine
            .extra_args
            .extend(["-s".to_string(), "-S".to_string()]);
        eprintln!("xtask: QEMU waits for a debugger; attach with:");
        eprintln!(
            "    gdb-multiarch {} -ex 'target remote localhost:1234'",
            kernel.display()
        );
    }
    machine.check_memory()?;
    let run_dir = cargo::xtask_dir("run")?;
    let disk_file = match machine.initrd {
        Some(_) => Some(disk::attach(&mut machine, &run_dir)?),
        None => None,
    };
    let qemu_args = machine.args(&kernel, &args.kernel_args);
    eprintln!("xtask: {}", qemu::display_command(&qemu, &qemu_args));
    let log_path = run_dir.join("console.log");
    let view = LiveView::from_environment();
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let limits = boot::Limits {
        per_test: None,
        total: timeout,
    };
    let outcome = boot::boot_at(
        &qemu,
        &qemu_args,
        limits,
        boot::Sinks {
            log: &mut log,
            echo: if args.raw {
                boot::Echo::Raw
            } else {
                boot::Echo::Banner
            },
            on_record: &mut |record| {
                if !args.raw {
                    println!("{}", view.test_line(None, record));
                }
            },
        },
        boot::Place::default(),
    )?;
    eprintln!("xtask: console log: {}", log_path.display());
    if let Some(error) = outcome.infrastructure_error() {
        bail!("{error}");
    }
    let interrupted = outcome.end == boot::End::Interrupted;
    let mut judged = verdict::Run::new();
    judged.add_boot(outcome.boot, &outcome.how);
    let mut verdict = judged.finish();
    check_disk(&mut verdict, disk_file.as_deref(), &log_path, &mut |_| {})?;
    check_backing_store(&mut verdict, disk_file.is_some(), &log_path, &mut |_| {})?;
    let counts = verdict.counts();
    if let Some(usage) = verdict.infra.first() {
        bail!("{usage}");
    }
    if interrupted {
        return Err(interrupt::Interrupted.into());
    }
    if verdict.passed() {
        eprintln!("xtask: the run passed ({counts})");
        return Ok(Outcome::Passed);
    }
    eprint!("{}", verdict::failure_lines(&verdict));
    let replay_args = replay_kernel_args(&verdict, &args.kernel_args);
    eprintln!(
        "xtask: the run failed ({counts}); replay: cargo xtask run{} -- {}",
        run_flags(&args),
        replay_args.join(" ")
    );
    Ok(Outcome::Failed)
}

/// The `cargo xtask run` flags that rebuild `args`' machine.
fn run_flags(args: &RunArgs) -> String {
    let mut flags = String::new();
    if args.release {
        flags.push_str(" --release");
    }
    if args.accel != Accel::Tcg {
        flags.push_str(&format!(" --accel {}", args.accel.name()));
    }
    if args.cpu != "qemu" {
        flags.push_str(&format!(" --cpu {}", args.cpu));
    }
    if args.smp != 1 {
        flags.push_str(&format!(" --smp {}", args.smp));
    }
    if args.mem != "256M" {
        flags.push_str(&format!(" --mem {}", args.mem));
    }
    if args.console == ConsoleArg::LineMode {
        flags.push_str(" --console line-mode");
    }
    if let Some(initrd) = &args.initrd {
        flags.push_str(&format!(" --initrd {initrd}"));
    }
    flags
}

/// The kernel arguments that replay the first boot of `verdict`: what was given, plus the
/// seed the kernel printed when none was given.
fn replay_kernel_args(verdict: &verdict::Verdict, given: &[String]) -> Vec<String> {
    let mut args = given.to_vec();
    let has_seed = given.iter().any(|a| a.starts_with("ktest.seed="));
    if !has_seed && let Some(seed) = verdict.boots.first().and_then(|b| b.header.seed.clone()) {
        args.push(format!("ktest.seed={seed}"));
    }
    args
}

/// A seed from the operating system's randomness (std's hasher keys).
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, RandomState};
    RandomState::new().hash_one(std::time::SystemTime::now()) >> 1
}

/// The last `ktest.seed=` in `args`, as the kernel reads it (the last one wins).
fn seed_in(args: &[String]) -> Option<&str> {
    args.iter()
        .rev()
        .find_map(|a| a.strip_prefix("ktest.seed="))
}

/// One configuration to boot, with the arguments xtask adds to it.
#[derive(Debug)]
struct Job {
    config: matrix::Config,
    /// Kernel arguments after the configuration's own.
    args: Vec<String>,
    /// Where its console log goes.
    log_dir: PathBuf,
    /// The seed of a seed sweep, for its report name.
    sweep_seed: Option<u64>,
}

impl Job {
    fn label(&self) -> String {
        match self.sweep_seed {
            Some(seed) => format!("{} seed={seed}", self.config.name),
            None => self.config.name.clone(),
        }
    }

    /// One line that replays this job: the same configuration, filter, order and seed.
    fn replay(&self, args: &TestArgs) -> String {
        let mut command = format!("cargo xtask test --no-host --matrix {}", self.config.name);
        for glob in &args.filter {
            command.push_str(&format!(" --filter '{glob}'"));
        }
        if effective_order(args) == Order::Shuffled {
            command.push_str(" --order shuffled");
        }
        if let Some(accel) = args.accel {
            command.push_str(&format!(" --accel {}", accel.name()));
        }
        if let Some(timeout) = args.timeout {
            command.push_str(&format!(" --timeout {timeout}"));
        }
        if args.release {
            command.push_str(" --release");
        }
        let mut kernel_args: Vec<String> = Vec::new();
        let all: Vec<String> = self
            .config
            .append
            .iter()
            .chain(&self.args)
            .cloned()
            .collect();
        if let Some(seed) = seed_in(&all) {
            kernel_args.push(format!("ktest.seed={seed}"));
        }
        kernel_args.extend(
            args.kernel_args
                .iter()
                .filter(|a| !a.starts_with("ktest.seed="))
                .cloned(),
        );
        if !kernel_args.is_empty() {
            command.push_str(&format!(" -- {}", kernel_args.join(" ")));
        }
        command
    }
}

fn test(mut args: TestArgs) -> Result<Outcome> {
    for path in args.junit.iter().chain(&args.tap) {
        report::check_writable(path)?;
    }
    check_kernel_args(&args.kernel_args)?;
    if args.seeds.is_some() && seed_in(&args.kernel_args).is_some() {
        bail!("--seeds draws the seeds itself; drop ktest.seed= from the kernel arguments");
    }
    if let Some(count) = args.seeds {
        if args.shard.is_some() && args.first_seed.is_none() {
            bail!(
                "--shard with --seeds needs --first-seed S, the same on every shard, so that the shards split one sweep"
            );
        }
        let first = *args.first_seed.get_or_insert_with(random_seed);
        println!(
            "seed sweep: {count} seeds from --first-seed {first}{}",
            args.shard
                .map(|s| format!(", shard {s}"))
                .unwrap_or_default()
        );
    }
    let filter_args = filter_args(&args.filter)?;
    let _lock = cargo::lock("test")?;
    let root = cargo::project_root();
    let all = matrix::load(&root.join("qemu-scripts/unittests.cfg"), &root)?;
    let mut configs = matrix::select(&all, &args.matrix, &args.group)?;
    for config in &mut configs {
        if let Some(accel) = args.accel {
            config.machine.accel = accel.name().into();
        }
        if let Some(seconds) = args.timeout {
            config.test_timeout = Duration::from_secs(seconds);
        }
        config.machine.initrd = config.initrd.resolve()?;
    }
    // The host tests run once per plan: on shard 1 of a CI matrix.
    let host = !args.no_host && args.seeds.is_none() && args.shard.is_none_or(|s| s.is_first());
    provision::provision(host)?;
    let view = LiveView::from_environment();
    let mut suites: Vec<SuiteReport> = Vec::new();
    let mut note = report::RunNote::default();
    let jobs = plan_jobs(&configs, &args, &filter_args)?;
    if args.seeds.is_some() {
        // A sweep replaces the previous sweep's logs, and keeps only those of failures.
        let dir = sweep_dir();
        if dir.exists() {
            std::fs::remove_dir_all(&dir)
                .with_context(|| format!("cannot clear {}", dir.display()))?;
        }
    }
    let qualify = jobs.len() > 1;
    let mut infra_errors = Vec::new();
    let mut failed_seeds: Vec<(u64, String)> = Vec::new();
    let qemu_path = if jobs.is_empty() {
        None
    } else {
        Some(install::ensure_qemu()?)
    };
    // The kernel first (the host tests boot it too, and cargo builds one thing at a time in a
    // target directory); then the host tests run beside the boots instead of before them.
    let kernel = cargo::build_kernel(args.release)?;
    let host_kernel = (!args.release).then_some(kernel.as_path());
    let threads = args
        .jobs
        .map_or_else(default_jobs, |n| n as usize)
        .min(jobs.len().max(1));
    let (host_records, runs) = std::thread::scope(|scope| {
        let host_tests = host.then(|| {
            println!("== host unit tests (cargo test), beside the boots");
            scope.spawn(|| run_host_tests(host_kernel, view))
        });
        let runs = match &qemu_path {
            Some(qemu) => run_jobs(&jobs, qemu, &kernel, threads, view, qualify),
            None => Ok(Vec::new()),
        };
        let host_records = host_tests.map(|thread| {
            thread
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("the host-test thread panicked")))
        });
        (host_records, runs)
    });
    if let Some(records) = host_records {
        let records = records?;
        note.interrupted |= records
            .iter()
            .any(|r| r.id.suite == "host" && r.reason.contains("interrupted"));
        suites.extend(report::group_by_suite(&records, None));
    }
    let runs = runs?;
    for (job, run) in jobs.iter().zip(&runs) {
        let label = job.label();
        let Some(run) = run else {
            let mut record = TestRecord::synthesized(
                results::TestId::new("ktap", label.clone()),
                results::Outcome::Error,
                "not run: interrupted (Ctrl-C) before this configuration started",
            );
            record.duration = Some(Duration::ZERO);
            suites.extend(report::group_by_suite(&[record], None));
            note.interrupted = true;
            continue;
        };
        for incident in &run.incidents {
            println!("[{label}] {incident}");
        }
        if let Some(error) = run.infra_error() {
            infra_errors.push(format!("[{label}] {error}"));
        }
        note.interrupted |= run.verdict.interrupted;
        let counts = run.verdict.counts();
        println!(
            "[{label}] {counts} in {} boot(s); console log: {}",
            run.boots,
            run.console_log.display()
        );
        if job.sweep_seed.is_some() && run.verdict.passed() {
            let _ = std::fs::remove_dir_all(&job.log_dir);
        }
        if !run.verdict.passed() && !run.verdict.interrupted {
            let replay = job.replay(&args);
            for line in verdict::failure_lines(&run.verdict).lines() {
                println!("[{label}] {line}");
                println!("[{label}]     replay: {replay}");
            }
            if let Some(seed) = job.sweep_seed {
                failed_seeds.push((seed, replay));
            }
        }
        let mut config_suites =
            report::group_by_suite(&run.verdict.records, qualify.then_some(label.as_str()));
        let mut properties = vec![
            ("configuration".to_string(), job.config.name.clone()),
            (
                "console log".to_string(),
                run.console_log.display().to_string(),
            ),
            ("replay".to_string(), job.replay(&args)),
        ];
        properties.extend(run.verdict.identification());
        for suite in &mut config_suites {
            suite.properties = properties.clone();
        }
        suites.extend(config_suites);
    }
    finish_reports(
        &suites,
        args.junit.as_deref(),
        args.junit_flavor,
        args.tap.as_deref(),
        &note,
    )?;
    if let Some(count) = args.seeds {
        failed_seeds.sort();
        failed_seeds.dedup_by_key(|(seed, _)| *seed);
        for (seed, replay) in &failed_seeds {
            println!("FAILED seed {seed}: replay: {replay}");
        }
        println!("seed sweep: {} of {count} seeds failed", failed_seeds.len());
    }
    for error in &infra_errors {
        eprintln!("xtask: error: {error}");
    }
    let counts = total(&suites);
    report::print_summary(counts);
    if note.interrupted {
        return Err(interrupt::Interrupted.into());
    }
    if !infra_errors.is_empty() {
        bail!(
            "{} configuration(s) hit an infrastructure or usage error",
            infra_errors.len()
        );
    }
    Ok(if counts.failed > 0 {
        Outcome::Failed
    } else {
        Outcome::Passed
    })
}

/// `-j` when not given: one job per CPU.
fn default_jobs() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

/// Runs the host unit tests, shows their failures and a summary line, and returns their
/// records; an interruption becomes one record that says so.
fn run_host_tests(kernel: Option<&Path>, view: LiveView) -> Result<Vec<TestRecord>> {
    let log = cargo::xtask_dir("host")?.join("cargo-test.log");
    let records = match cargo::host_tests(&log, kernel) {
        Ok(records) => records,
        Err(error) if error.is::<interrupt::Interrupted>() => {
            vec![TestRecord::synthesized(
                results::TestId::new("host", "cargo_test"),
                results::Outcome::Error,
                "not run: interrupted (Ctrl-C) while the host tests ran",
            )]
        }
        Err(error) => return Err(error),
    };
    for record in records.iter().filter(|r| r.outcome.is_failure()) {
        view.test(Some("host"), record);
    }
    println!(
        "host unit tests: {} (log: {})",
        Counts::of(&records),
        log.display()
    );
    Ok(records)
}

/// The boots to run: every configuration once, or once per seed of a sweep, each with its
/// own seed unless the command line gives one.
fn plan_jobs(
    configs: &[matrix::Config],
    args: &TestArgs,
    filter_args: &[String],
) -> Result<Vec<Job>> {
    let order_args: Vec<String> = match effective_order(args) {
        Order::Shuffled => vec!["ktest.shuffle".to_string()],
        Order::Sorted => Vec::new(),
    };
    let extra = |seed: Option<u64>| -> Vec<String> {
        let mut extra: Vec<String> = seed
            .map(|s| format!("ktest.seed={s}"))
            .into_iter()
            .collect();
        extra.extend(order_args.iter().cloned());
        extra.extend(filter_args.iter().cloned());
        extra.extend(args.kernel_args.iter().cloned());
        extra
    };
    let mut jobs = Vec::new();
    match args.seeds {
        Some(count) => {
            let sweep_dir = sweep_dir();
            let first = args.first_seed.unwrap_or_else(random_seed);
            for index in 0..u64::from(count) {
                let seed = first.wrapping_add(index.wrapping_mul(0x9e37_79b9_7f4a_7c15)) >> 1;
                for config in configs {
                    jobs.push(Job {
                        config: config.clone(),
                        args: extra(Some(seed)),
                        log_dir: sweep_dir.join(seed.to_string()).join(&config.name),
                        sweep_seed: Some(seed),
                    });
                }
            }
        }
        None => {
            let user_seed = seed_in(&args.kernel_args).is_some();
            for config in configs {
                let seed = (!user_seed && seed_in(&config.append).is_none()).then(random_seed);
                jobs.push(Job {
                    config: config.clone(),
                    args: extra(seed),
                    log_dir: cargo::target_dir().join("xtask").join(&config.name),
                    sweep_seed: None,
                });
            }
        }
    }
    let Some(shard) = args.shard else {
        return Ok(jobs);
    };
    let planned = jobs.len();
    let share = shard.take(jobs);
    if share.is_empty() {
        // A CI machine that ran nothing must not report a pass.
        anyhow::bail!(
            "shard {shard} gets none of the {planned} planned boots: use at most {planned} shards"
        );
    }
    Ok(share)
}

/// Where a seed sweep keeps the console logs of its failing seeds.
fn sweep_dir() -> PathBuf {
    cargo::target_dir().join("xtask").join("seeds")
}

/// The order a `test` runs in: as asked, else shuffled for a seed sweep (that is what a sweep
/// is for) and sorted otherwise.
fn effective_order(args: &TestArgs) -> Order {
    args.order.unwrap_or(if args.seeds.is_some() {
        Order::Shuffled
    } else {
        Order::Sorted
    })
}

fn filter_args(globs: &[String]) -> Result<Vec<String>> {
    if globs.is_empty() {
        return Ok(Vec::new());
    }
    let globs: Vec<&str> = globs
        .iter()
        .flat_map(|g| g.split(','))
        .filter(|g| !g.is_empty())
        .collect();
    if let Some(bad) = globs
        .iter()
        .find(|g| g.contains(char::is_whitespace) || g.contains('"'))
    {
        bail!("--filter `{bad}`: a glob must not contain spaces or quotes");
    }
    if globs.is_empty() {
        bail!("--filter needs at least one glob");
    }
    Ok(vec![format!("ktest.filter={}", globs.join(","))])
}

/// Runs the jobs on `jobs` threads. A job that did not start because the user pressed
/// Ctrl-C is `None`.
fn run_jobs(
    jobs: &[Job],
    qemu_path: &Path,
    kernel: &Path,
    threads: usize,
    view: LiveView,
    qualify: bool,
) -> Result<Vec<Option<recovery::ConfigRun>>> {
    let durations_file = cargo::target_dir().join("xtask").join("durations");
    let names: Vec<&str> = jobs.iter().map(|j| j.config.name.as_str()).collect();
    let start_order = schedule::longest_first(&names, &schedule::load(&durations_file));
    let multi = jobs.iter().map(|j| j.config.machine.smp > 1).collect();
    let queue = Mutex::new(schedule::Queue::new(&start_order, multi));
    let measured: Mutex<schedule::Durations> = Mutex::new(schedule::Durations::new());
    let results: Mutex<Vec<(usize, Result<recovery::ConfigRun>)>> = Mutex::new(Vec::new());
    // A sweep's boots are many and quiet (only failures print): show how far it is.
    let bar = jobs
        .iter()
        .any(|j| j.sweep_seed.is_some())
        .then(|| progress::Bar::steps(jobs.len() as u64, "boots"));
    let failed_boots = AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for _ in 0..threads.min(jobs.len()) {
            scope.spawn(|| {
                loop {
                    if interrupt::requested() {
                        break;
                    }
                    let Some(index) = queue.lock().ok().and_then(|mut q| q.take()) else {
                        break;
                    };
                    let job = &jobs[index];
                    let started = Instant::now();
                    let outcome = run_job(job, qemu_path, kernel, view, qualify);
                    if let Ok(mut queue) = queue.lock() {
                        queue.ended(index);
                    }
                    if outcome.is_ok()
                        && let Ok(mut measured) = measured.lock()
                    {
                        measured.insert(job.config.name.clone(), started.elapsed());
                    }
                    if let Some(bar) = &bar {
                        if !outcome.as_ref().is_ok_and(|run| run.verdict.passed()) {
                            failed_boots.fetch_add(1, Ordering::Relaxed);
                        }
                        bar.message(format!("{} failed", failed_boots.load(Ordering::Relaxed)));
                        bar.inc();
                    }
                    let failed = outcome.is_err();
                    if let Ok(mut results) = results.lock() {
                        results.push((index, outcome));
                    }
                    if failed {
                        break;
                    }
                }
            });
        }
    });
    if let Ok(measured) = measured.into_inner() {
        schedule::save(&durations_file, &measured);
    }
    let results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
    let mut runs: Vec<Option<recovery::ConfigRun>> = jobs.iter().map(|_| None).collect();
    for (index, run) in results {
        runs[index] = Some(run?);
    }
    Ok(runs)
}

fn run_job(
    job: &Job,
    qemu_path: &Path,
    kernel: &Path,
    view: LiveView,
    qualify: bool,
) -> Result<recovery::ConfigRun> {
    let config = &job.config;
    let label = job.label();
    let emulator = match config.emulator {
        matrix::Emulator::Qemu => format!("{} cpu={}", config.machine.accel, config.machine.cpu),
        matrix::Emulator::Hercules => "hercules".to_string(),
    };
    progress::println(&format!(
        "== [{label}] {emulator} mem={} smp={} seed={}",
        config.machine.mem,
        config.machine.smp,
        seed_in(
            &config
                .append
                .iter()
                .chain(&job.args)
                .cloned()
                .collect::<Vec<_>>()
        )
        .unwrap_or("chosen by the kernel")
    ));
    std::fs::create_dir_all(&job.log_dir)
        .with_context(|| format!("cannot create {}", job.log_dir.display()))?;
    let log = job.log_dir.join("console.log");
    let mut config = config.clone();
    // Hercules has no virtio: its backing store is the initrd in the LPAR load.
    let disk_file = match config.machine.initrd {
        Some(_) if config.emulator == matrix::Emulator::Qemu => {
            Some(disk::attach(&mut config.machine, &job.log_dir)?)
        }
        _ => None,
    };
    let config = &config;
    let target = recovery::Target {
        qemu: qemu_path,
        kernel,
        config,
        extra_kernel_args: &job.args,
    };
    let shown = qualify.then_some(label.as_str());
    // A sweep shows failures only: thousands of passing lines would hide them.
    let only_failures = job.sweep_seed.is_some();
    let mut show = |record: &TestRecord| {
        if !only_failures || record.outcome.is_failure() {
            view.test(shown, record);
        }
    };
    let mut run = recovery::run_config(&target, &log, &mut show)?;
    check_disk(&mut run.verdict, disk_file.as_deref(), &log, &mut show)?;
    check_backing_store(
        &mut run.verdict,
        config.machine.initrd.is_some(),
        &log,
        &mut show,
    )?;
    Ok(run)
}

/// A configuration that gives the kernel a backing store must see it taken: a boot whose
/// banner says `mm: off (...)` skips the memory-manager suites, and skips are no failures,
/// so a load that lost its backing store (an LPAR load or a deck whose parameter area does
/// not announce its initrd, a disk not attached) would pass without them. Such a run fails
/// with a record `kernel.backing_store`.
fn check_backing_store(
    verdict: &mut verdict::Verdict,
    given: bool,
    log: &Path,
    show: &mut dyn FnMut(&TestRecord),
) -> Result<()> {
    if !given || verdict.interrupted || !verdict.infra.is_empty() {
        return Ok(());
    }
    let text = std::fs::read(log).with_context(|| format!("reading {}", log.display()))?;
    if let Some(line) = backing_store_missing(&String::from_utf8_lossy(&text)) {
        let mut record = TestRecord::synthesized(
            results::TestId::new("kernel", "backing_store"),
            results::Outcome::Error,
            format!("the configuration gives a backing store, the kernel took none: `{line}`"),
        );
        record.duration = Some(Duration::ZERO);
        show(&record);
        verdict.records.push(record);
    }
    Ok(())
}

/// The first banner line of a console log that says the memory manager is off.
fn backing_store_missing(log: &str) -> Option<&str> {
    log.lines()
        .map(str::trim_end)
        .find(|line| line.starts_with("mm: off"))
}

/// The outside check of the guest's writes: after a run with a disk, the disk file must
/// hold the original bytes and what the guest reported writing (`disk::check`); a
/// mismatch fails the run with a record `disk.contents` that names the block. A run
/// stopped from outside (interrupted, QEMU refused) is not checked: its boots never got
/// to report.
fn check_disk(
    verdict: &mut verdict::Verdict,
    disk_file: Option<&Path>,
    log: &Path,
    show: &mut dyn FnMut(&TestRecord),
) -> Result<()> {
    let Some(path) = disk_file else {
        return Ok(());
    };
    if verdict.interrupted || !verdict.infra.is_empty() {
        return Ok(());
    }
    match disk::check(path, log)? {
        Ok(blocks) => eprintln!(
            "xtask: {}: every block holds the original or what the guest reported writing ({blocks} blocks written)",
            path.display()
        ),
        Err(error) => {
            let record = disk::failure_record(&error);
            show(&record);
            verdict.records.push(record);
        }
    }
    Ok(())
}

fn parse(args: ParseArgs) -> Result<Outcome> {
    for path in args.junit.iter().chain(&args.tap) {
        report::check_writable(path)?;
    }
    let mut file = std::fs::File::open(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let view = LiveView::from_environment();
    let mut show = |record: &TestRecord| view.test(None, record);
    let mut log = verdict::Log::new(args.line_mode);
    let mut buffer = vec![0; 1 << 16];
    loop {
        let n = match std::io::Read::read(&mut file, &mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => {
                return Err(error).with_context(|| format!("cannot read {}", args.file.display()));
            }
        };
        log.feed(&buffer[..n], &mut show);
    }
    let verdict = log.finish(&mut show);
    let mut suites = report::group_by_suite(&verdict.records, None);
    let mut properties = vec![("console log".to_string(), args.file.display().to_string())];
    properties.extend(verdict.identification());
    for suite in &mut suites {
        suite.properties = properties.clone();
    }
    let note = report::RunNote {
        interrupted: verdict.interrupted,
    };
    finish_reports(
        &suites,
        args.junit.as_deref(),
        args.junit_flavor,
        args.tap.as_deref(),
        &note,
    )?;
    if !verdict.passed() {
        print!("{}", verdict::failure_lines(&verdict));
        if let Some(line) = verdict
            .boots
            .first()
            .and_then(|b| b.header.command_line.as_ref())
        {
            let mut replay: Vec<String> = line.split_whitespace().map(str::to_string).collect();
            replay.retain(|a| !a.starts_with("ktest.skip="));
            let replay = replay_kernel_args(&verdict, &replay);
            println!("replay: cargo xtask run -- {}", replay.join(" "));
        }
    }
    let counts = total(&suites);
    report::print_summary(counts);
    if !verdict.infra.is_empty() {
        bail!("{}", verdict.infra.join("; "));
    }
    Ok(if verdict.passed() {
        Outcome::Passed
    } else {
        Outcome::Failed
    })
}

fn finish_reports(
    suites: &[SuiteReport],
    junit: Option<&Path>,
    flavor: report::JunitFlavor,
    tap: Option<&Path>,
    note: &report::RunNote,
) -> Result<()> {
    if let Some(path) = junit {
        report::write_atomically(path, report::junit_xml(suites, flavor, note)?.as_bytes())?;
        println!("JUnit report: {}", path.display());
    }
    if let Some(path) = tap {
        report::write_atomically(path, report::tap14(suites, note).as_bytes())?;
        println!("TAP report: {}", path.display());
    }
    Ok(())
}

fn total(suites: &[SuiteReport]) -> Counts {
    let mut counts = Counts::default();
    for suite in suites {
        counts.merge(Counts::of(&suite.records));
    }
    counts
}

fn image_command(args: ImageArgs) -> Result<Outcome> {
    let kernel = cargo::build_kernel(args.release)?;
    let format = args
        .format
        .to_possible_value()
        .map(|v| v.get_name().to_string());
    let out = match args.out {
        Some(dir) => dir,
        None => cargo::xtask_dir("image")?.join(format.unwrap_or_default()),
    };
    let initrd = match args.initrd.as_deref() {
        Some(value) => Initrd::parse(value, &std::env::current_dir().unwrap_or_default()),
        None if image::carries_initrd(args.format) => Initrd::Standard,
        None => Initrd::None,
    }
    .resolve()?;
    for path in image::write(
        &kernel,
        args.format,
        &out,
        &args.kernel_args,
        initrd.as_deref(),
    )? {
        println!("{}", path.display());
    }
    if let Some(initrd) = &initrd {
        let size = std::fs::metadata(initrd)
            .with_context(|| format!("cannot read {}", initrd.display()))?
            .len();
        eprintln!(
            "xtask: with its {} KiB backing store the kernel needs {} MiB of storage at least (docs/zvm-lpar.md)",
            size >> 10,
            image::minimum_storage_mib(size)
        );
    }
    Ok(Outcome::Passed)
}

fn stress(args: &stress::StressArgs) -> Result<Outcome> {
    Ok(if stress::run(args)? {
        Outcome::Passed
    } else {
        Outcome::Failed
    })
}

#[cfg(feature = "bench")]
fn bench(args: bench::BenchArgs) -> Result<Outcome> {
    bench::run(&args)?;
    Ok(Outcome::Passed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_kernel_without_its_backing_store_is_found_in_the_banner() {
        let on = "memory: 256 MiB\nmm: 512 frames (2048 KiB) at 0x2e1e000, backing store -initrd image: 21588 KiB\n# mm: major faults 2\n";
        assert_eq!(backing_store_missing(on), None);
        let off =
            "xtask: boot 1\nmm: off (no backing store: boot with a virtio-blk disk or -initrd)\r\n";
        assert_eq!(
            backing_store_missing(off),
            Some("mm: off (no backing store: boot with a virtio-blk disk or -initrd)")
        );
    }

    #[test]
    fn cli_parses_the_documented_forms() {
        let cli =
            Cli::try_parse_from(["xtask", "run", "--smp", "2", "--", "panic=now", "a=b"]).unwrap();
        match cli.command {
            Command::Run(args) => {
                assert_eq!(args.smp, 2);
                assert_eq!(args.kernel_args, ["panic=now", "a=b"]);
                assert_eq!(args.timeout, None);
            }
            other => panic!("{other:?}"),
        }
        let cli = Cli::try_parse_from([
            "xtask", "test", "-j", "2", "--matrix", "smp2", "--filter", "arch::*",
        ])
        .unwrap();
        assert!(matches!(
            cli.command,
            Command::Test(TestArgs { jobs: Some(2), .. })
        ));
        assert!(Cli::try_parse_from(["xtask", "bench", "boot", "--repeat", "3"]).is_ok());
        #[cfg(feature = "bench")]
        match Cli::try_parse_from(["xtask", "bench"]).unwrap().command {
            Command::Bench(args) => assert_eq!((args.which, args.repeat), (None, None)),
            other => panic!("{other:?}"),
        }
        match Cli::try_parse_from(["xtask", "run", "--initrd", "none"])
            .unwrap()
            .command
        {
            Command::Run(args) => assert_eq!(args.initrd.as_deref(), Some("none")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_usage_is_rejected() {
        for bad in [
            &["xtask", "run", "--accel", "hvf"][..],
            &["xtask", "run", "--smp", "0"],
            &["xtask", "test", "--timeout", "0"],
            &["xtask", "test", "--timeout", "3601"],
            &["xtask", "run", "--timeout", "100000"],
            &["xtask", "test", "--seeds", "0"],
            &["xtask", "test", "--order", "random"],
            &["xtask", "test", "--junit-flavor", "teamcity"],
            &["xtask", "test", "--bogus"],
            &["xtask", "parse"],
            #[cfg(feature = "bench")]
            &["xtask", "bench", "everything"],
            #[cfg(feature = "bench")]
            &["xtask", "bench", "suite", "--repeat", "0"],
            &["xtask"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    fn test_args(words: &[&str]) -> TestArgs {
        let mut all = vec!["xtask", "test"];
        all.extend(words);
        match Cli::try_parse_from(all).unwrap().command {
            Command::Test(args) => args,
            other => panic!("{other:?}"),
        }
    }

    fn config(name: &str, append: &[&str]) -> matrix::Config {
        let mut config = matrix::parse(&format!("[{name}]\ngroups = default\n"), Path::new("/"))
            .unwrap()
            .remove(0);
        config.append = append.iter().map(|a| a.to_string()).collect();
        config
    }

    #[test]
    fn shards_split_the_planned_boots() {
        let configs = [config("a", &[]), config("b", &[]), config("c", &[])];
        let plan = |shard: &str| plan_jobs(&configs, &test_args(&["--shard", shard]), &[]);
        let names = |shard: &str| -> Vec<String> {
            let jobs = plan(shard).unwrap();
            jobs.into_iter().map(|job| job.config.name).collect()
        };
        assert_eq!(names("1/2"), ["a", "c"]);
        assert_eq!(names("2/2"), ["b"]);
        assert_eq!(names("1/1"), ["a", "b", "c"]);
        assert_eq!(names("3/4"), ["c"]);
        let empty = plan("4/4").unwrap_err().to_string();
        assert_eq!(
            empty,
            "shard 4/4 gets none of the 3 planned boots: use at most 3 shards"
        );
    }

    #[test]
    fn test_takes_kernel_arguments_and_gives_every_configuration_a_seed() {
        let args = test_args(&["--filter", "mm::*", "--", "ktest.seed=42", "mm.debug=1"]);
        assert_eq!(args.kernel_args, ["ktest.seed=42", "mm.debug=1"]);
        let configs = [config("a", &[]), config("b", &["ktest.seed=7"])];
        let filter = filter_args(&args.filter).unwrap();
        let jobs = plan_jobs(&configs, &args, &filter).unwrap();
        for job in &jobs {
            let all: Vec<String> = job.config.append.iter().chain(&job.args).cloned().collect();
            assert_eq!(
                seed_in(&all),
                Some("42"),
                "the command line's seed wins: {all:?}"
            );
            assert!(all.contains(&"ktest.filter=mm::*".to_string()));
            assert!(
                !all.contains(&"ktest.shuffle".to_string()),
                "sorted unless asked"
            );
        }
        assert_eq!(
            jobs[0].replay(&args),
            "cargo xtask test --no-host --matrix a --filter 'mm::*' -- ktest.seed=42 mm.debug=1"
        );

        let args = test_args(&[]);
        let jobs = plan_jobs(&configs, &args, &[]).unwrap();
        let seed_a = seed_in(&jobs[0].args)
            .expect("a seed of its own")
            .to_string();
        assert!(
            jobs[0]
                .replay(&args)
                .ends_with(&format!("-- ktest.seed={seed_a}"))
        );
        let all_b: Vec<String> = jobs[1]
            .config
            .append
            .iter()
            .chain(&jobs[1].args)
            .cloned()
            .collect();
        assert_eq!(
            seed_in(&all_b),
            Some("7"),
            "a configuration's own seed stays"
        );
    }

    #[test]
    fn the_shards_of_a_sweep_split_one_set_of_seeds() {
        let configs = [config("a", &[]), config("b", &[])];
        let boots = |words: &[&str]| -> Vec<(u64, String)> {
            let jobs = plan_jobs(&configs, &test_args(words), &[]).unwrap();
            jobs.into_iter()
                .map(|j| (j.sweep_seed.unwrap(), j.config.name))
                .collect()
        };
        let whole = boots(&["--seeds", "5", "--first-seed", "0x10"]);
        assert_eq!(whole.len(), 10);
        assert_eq!(
            whole,
            boots(&["--seeds", "5", "--first-seed", "16"]),
            "the plan is the seed's"
        );
        let mut shards: Vec<(u64, String)> = (1..=3)
            .flat_map(|k| {
                let shard = format!("{k}/3");
                boots(&["--seeds", "5", "--first-seed", "16", "--shard", &shard])
            })
            .collect();
        let mut expected = whole.clone();
        shards.sort();
        expected.sort();
        assert_eq!(shards, expected, "every boot once, on one shard");
        let unshared = test(test_args(&["--seeds", "4", "--shard", "1/2"]));
        assert!(
            unshared
                .unwrap_err()
                .to_string()
                .contains("needs --first-seed")
        );
        assert!(
            Cli::try_parse_from(["xtask", "test", "--first-seed", "1"]).is_err(),
            "only for a sweep"
        );
    }

    #[test]
    fn a_seed_sweep_shuffles_each_seed_and_replays_one_seed() {
        let args = test_args(&["--seeds", "3", "-j", "2"]);
        let configs = [config("a", &["ktest.seed=7"]), config("b", &[])];
        let jobs = plan_jobs(&configs, &args, &[]).unwrap();
        assert_eq!(jobs.len(), 6);
        let mut seeds: Vec<u64> = jobs.iter().filter_map(|j| j.sweep_seed).collect();
        seeds.dedup();
        assert_eq!(seeds.len(), 3, "each seed runs every configuration");
        for job in &jobs {
            let all: Vec<String> = job.config.append.iter().chain(&job.args).cloned().collect();
            let seed = job.sweep_seed.unwrap().to_string();
            assert_eq!(seed_in(&all), Some(seed.as_str()), "the sweep's seed wins");
            assert!(job.args.contains(&"ktest.shuffle".to_string()));
            assert!(
                job.replay(&args)
                    .ends_with(&format!("--order shuffled -- ktest.seed={seed}")),
                "{}",
                job.replay(&args)
            );
        }
        assert!(
            test(test_args(&["--seeds", "2", "--", "ktest.seed=1"]))
                .unwrap_err()
                .to_string()
                .contains("--seeds draws the seeds itself")
        );
    }

    #[test]
    fn a_directory_as_report_path_is_refused_before_anything_runs() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_str().unwrap();
        for flag in ["--junit", "--tap"] {
            let error = test(test_args(&[flag, path])).unwrap_err().to_string();
            assert!(error.contains("is a directory"), "{error}");
        }
        let parse_args = match Cli::try_parse_from(["xtask", "parse", "x.log", "--junit", path])
            .unwrap()
            .command
        {
            Command::Parse(args) => args,
            other => panic!("{other:?}"),
        };
        assert!(
            parse(parse_args)
                .unwrap_err()
                .to_string()
                .contains("is a directory")
        );
    }

    #[test]
    fn parse_help_states_the_verdict_rule() {
        let help = match Cli::try_parse_from(["xtask", "parse", "--help"]) {
            Err(error) => error.render().to_string(),
            Ok(_) => panic!("--help prints help"),
        };
        assert!(help.contains("A run passes only if every boot"), "{help}");
        assert!(help.contains("exit 2"), "{help}");
    }

    #[test]
    fn filters_become_one_kernel_argument() {
        assert_eq!(
            filter_args(&["a::*".into(), "b.c,d".into()]).unwrap(),
            ["ktest.filter=a::*,b.c,d"]
        );
        assert!(filter_args(&[]).unwrap().is_empty());
        assert!(filter_args(&["a b".into()]).is_err());
    }
}
