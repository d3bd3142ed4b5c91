//! `cargo xtask`: build, boot and test the zhint kernel under QEMU.
//!
//! | command | does |
//! |---|---|
//! | `build [--release]` | builds the kernel image (`cargo build -p boot --target s390x-unknown-linux-gnu`) |
//! | `run [...] [-- ARGS]` | builds, boots once, streams the console, keeps `target/xtask/run/console.log` |
//! | `test [...]` | host unit tests, then the in-kernel suites for each matrix configuration, with reports |
//! | `parse FILE` | turns a captured console log into the same reports |
//! | `image --format elf\|raw\|zvm\|lpar [--out DIR] [-- ARGS]` | the kernel as a flat image, z/VM reader deck or HMC `.ins` load ([`image`]) |
//! | `stress [--seeds N] [--minutes M] [-j N] [--ops N] [--discard-rate R] [--debug]` | the `cmma::stress` workload per seed under a small page pool; totals and replay commands ([`stress`]) |
//! | `bench [boot\|suite\|mm\|pressure\|parallel]` | boot time against a stop-at-once ELF; the suite's per-test cost; memory-manager cost per operation and ESSA economy; host pressure with and without hinting; `-j 2` against `-j 1` (default: all) |
//!
//! Exit codes: 0 all passed, 1 test failures or a crash, 2 usage or infrastructure errors,
//! 130 interrupted. The kernel talks KTAP v1 over the SCLP console ([`ktap`]); a run that
//! crashes or hangs is recovered by rebooting with `ktest.skip=N` ([`recovery`]). QEMU loads the
//! standard backing-store image with `-initrd` unless told otherwise ([`backing_store`]).

mod backing_store;
mod bench;
mod boot;
mod cargo;
mod image;
mod install;
mod interrupt;
mod ktap;
mod matrix;
mod qemu;
mod recovery;
mod report;
mod results;
mod stress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::backing_store::Initrd;
use crate::qemu::Machine;
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
    /// Turn a captured console log into reports.
    Parse(ParseArgs),
    /// Benchmarks.
    Bench(bench::BenchArgs),
    /// Write the kernel as an image for QEMU, zipl, z/VM or an LPAR.
    Image(ImageArgs),
    /// Run the `cmma::stress` workload under many seeds and small page pools.
    Stress(stress::StressArgs),
}

#[derive(Debug, Args)]
struct ImageArgs {
    /// Image format.
    #[arg(long, value_enum)]
    format: image::Format,
    /// Output folder (default: target/xtask/image/<format>).
    #[arg(long, value_name = "DIR")]
    out: Option<PathBuf>,
    /// Build the kernel with the release profile.
    #[arg(long)]
    release: bool,
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
    /// Seconds before QEMU is killed (default 60; none with --gdb).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// Wait for a debugger on tcp::1234 before starting the CPU (adds `-s -S`).
    #[arg(long)]
    gdb: bool,
    /// Backing-store image for `-initrd`: a path, or `none` (default: the standard image).
    #[arg(long, value_name = "PATH|none")]
    initrd: Option<String>,
    /// Kernel command-line arguments.
    #[arg(last = true)]
    kernel_args: Vec<String>,
}

#[derive(Debug, Args)]
struct TestArgs {
    /// Run only tests matching GLOB (`suite` or `suite.test`); repeatable.
    #[arg(long, value_name = "GLOB")]
    filter: Vec<String>,
    /// Configurations to run in parallel.
    #[arg(short = 'j', long = "jobs", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: u32,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Write a TAP 14 report.
    #[arg(long, value_name = "PATH")]
    tap: Option<PathBuf>,
    /// Matrix entries to run (default: group `default`); repeatable or comma-separated.
    #[arg(long, value_name = "NAME")]
    matrix: Vec<String>,
    /// Override the accelerator of every configuration.
    #[arg(long, value_enum)]
    accel: Option<Accel>,
    /// Seconds one test may run before it counts as hung (overrides the matrix).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: Option<u64>,
    /// Build the kernel with the release profile.
    #[arg(long)]
    release: bool,
    /// Skip the host unit tests (`cargo test`).
    #[arg(long)]
    no_host: bool,
}

#[derive(Debug, Args)]
struct ParseArgs {
    /// The console log.
    file: PathBuf,
    /// Write a JUnit XML report.
    #[arg(long, value_name = "PATH")]
    junit: Option<PathBuf>,
    /// Write a TAP 14 report.
    #[arg(long, value_name = "PATH")]
    tap: Option<PathBuf>,
}

/// How a command ended when it did not fail outright.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
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
        Command::Build { release } => build(release),
        Command::Run(args) => run(args),
        Command::Test(args) => test(args),
        Command::Parse(args) => parse(args),
        Command::Bench(args) => bench(args),
        Command::Image(args) => image_command(args),
        Command::Stress(args) => stress(&args),
    };
    match result {
        Ok(Verdict::Passed) => ExitCode::SUCCESS,
        Ok(Verdict::Failed) => ExitCode::from(1),
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
            "xtask: usage error: a command is required: build, run, test, parse, stress, bench or image (see `cargo xtask --help`)"
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

fn build(release: bool) -> Result<Verdict> {
    let kernel = cargo::build_kernel(release)?;
    println!("{}", kernel.display());
    Ok(Verdict::Passed)
}

fn run(args: RunArgs) -> Result<Verdict> {
    let qemu = install::ensure_qemu()?;
    let kernel = cargo::build_kernel(args.release)?;
    let mut machine = Machine {
        accel: args.accel.name().into(),
        cpu: args.cpu,
        mem: args.mem,
        smp: args.smp,
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
    let qemu_args = machine.args(&kernel, &args.kernel_args);
    eprintln!("xtask: {}", qemu::display_command(&qemu, &qemu_args));
    let log_path = cargo::xtask_dir("run")?.join("console.log");
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    let limits = boot::Limits {
        per_test: None,
        total: timeout,
    };
    let outcome = boot::boot(
        &qemu,
        &qemu_args,
        limits,
        boot::Sinks {
            log: &mut log,
            echo: true,
            on_record: &mut |_| {},
        },
    )?;
    eprintln!("xtask: console log: {}", log_path.display());
    if let Some(error) = outcome.infrastructure_error() {
        bail!("{error}");
    }
    if let Some(reason) = outcome.failure_reason() {
        eprintln!("xtask: {reason}");
        return Ok(Verdict::Failed);
    }
    let counts = Counts::of(&outcome.collector.records);
    match outcome.collector.exit_status {
        Some(1) | Some(77) => {
            eprintln!("xtask: kernel exited cleanly ({counts})");
            Ok(Verdict::Passed)
        }
        status => {
            eprintln!(
                "xtask: kernel reported failures (EXIT: STATUS={}; {counts})",
                status.unwrap_or_default()
            );
            Ok(Verdict::Failed)
        }
    }
}

fn test(args: TestArgs) -> Result<Verdict> {
    for path in args.junit.iter().chain(&args.tap) {
        report::check_writable(path)?;
    }
    let root = cargo::project_root();
    let all = matrix::load(&root.join("qemu-scripts/unittests.cfg"), &root)?;
    let mut configs = matrix::select(&all, &args.matrix)?;
    for config in &mut configs {
        if let Some(accel) = args.accel {
            config.machine.accel = accel.name().into();
        }
        if let Some(seconds) = args.timeout {
            config.test_timeout = Duration::from_secs(seconds);
        }
        config.machine.initrd = config.initrd.resolve()?;
    }
    let filter_args = filter_args(&args.filter)?;
    let view = LiveView::from_environment();
    let mut suites: Vec<SuiteReport> = Vec::new();
    let mut infra_errors = Vec::new();

    if !args.no_host {
        println!("== host unit tests (cargo test)");
        let log = cargo::xtask_dir("host")?.join("cargo-test.log");
        let records = cargo::host_tests(&log)?;
        for record in records.iter().filter(|r| r.outcome.is_failure()) {
            view.test(Some("host"), record);
        }
        println!(
            "host unit tests: {} (log: {})",
            Counts::of(&records),
            log.display()
        );
        suites.extend(report::group_by_suite(&records, None));
    }

    let qemu_path = install::ensure_qemu()?;
    let kernel = cargo::build_kernel(args.release)?;
    let qualify = configs.len() > 1;
    let runs = run_configs(
        &configs,
        &qemu_path,
        &kernel,
        &filter_args,
        args.jobs as usize,
        view,
        qualify,
    )?;
    for run in &runs {
        for incident in &run.incidents {
            println!("[{}] recovered: {incident}", run.name);
        }
        if run.records.is_empty() && run.infra_error.is_none() {
            println!("[{}] warning: no test matched (check --filter)", run.name);
        }
        if let Some(error) = &run.infra_error {
            infra_errors.push(format!("[{}] {error}", run.name));
        }
        println!(
            "[{}] {} in {} boot(s); console log: {}",
            run.name,
            Counts::of(&run.records),
            run.boots,
            run.console_log.display()
        );
        suites.extend(report::group_by_suite(
            &run.records,
            qualify.then_some(run.name.as_str()),
        ));
    }
    finish_reports(&suites, args.junit.as_deref(), args.tap.as_deref())?;
    for error in &infra_errors {
        eprintln!("xtask: error: {error}");
    }
    let counts = total(&suites);
    report::print_summary(counts);
    if !infra_errors.is_empty() {
        bail!(
            "{} configuration(s) hit an infrastructure error",
            infra_errors.len()
        );
    }
    Ok(if counts.failed > 0 {
        Verdict::Failed
    } else {
        Verdict::Passed
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
    Ok(vec![format!("ktest.filter={}", globs.join(","))])
}

fn run_configs(
    configs: &[matrix::Config],
    qemu_path: &Path,
    kernel: &Path,
    filter_args: &[String],
    jobs: usize,
    view: LiveView,
    qualify: bool,
) -> Result<Vec<recovery::ConfigRun>> {
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<(usize, Result<recovery::ConfigRun>)>> = Mutex::new(Vec::new());
    std::thread::scope(|scope| {
        for _ in 0..jobs.min(configs.len()) {
            scope.spawn(|| {
                loop {
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    let Some(config) = configs.get(index) else {
                        break;
                    };
                    let outcome =
                        run_one_config(config, qemu_path, kernel, filter_args, view, qualify);
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
    let mut results = results
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
    results.sort_by_key(|(index, _)| *index);
    results.into_iter().map(|(_, run)| run).collect()
}

fn run_one_config(
    config: &matrix::Config,
    qemu_path: &Path,
    kernel: &Path,
    filter_args: &[String],
    view: LiveView,
    qualify: bool,
) -> Result<recovery::ConfigRun> {
    println!(
        "== [{}] {} cpu={} mem={} smp={}",
        config.name,
        config.machine.accel,
        config.machine.cpu,
        config.machine.mem,
        config.machine.smp
    );
    let log = cargo::xtask_dir(&config.name)?.join("console.log");
    let target = recovery::Target {
        qemu: qemu_path,
        kernel,
        config,
        extra_kernel_args: filter_args,
    };
    let label = qualify.then_some(config.name.as_str());
    recovery::run_config(&target, &log, &mut |record: &TestRecord| {
        view.test(label, record)
    })
}

fn parse(args: ParseArgs) -> Result<Verdict> {
    for path in args.junit.iter().chain(&args.tap) {
        report::check_writable(path)?;
    }
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let records = recovery::replay(&bytes);
    let view = LiveView::from_environment();
    for record in &records {
        view.test(None, record);
    }
    let suites = report::group_by_suite(&records, None);
    finish_reports(&suites, args.junit.as_deref(), args.tap.as_deref())?;
    let counts = total(&suites);
    report::print_summary(counts);
    if records.is_empty() {
        eprintln!("xtask: no test results in {}", args.file.display());
        return Ok(Verdict::Failed);
    }
    Ok(if counts.failed > 0 {
        Verdict::Failed
    } else {
        Verdict::Passed
    })
}

fn finish_reports(suites: &[SuiteReport], junit: Option<&Path>, tap: Option<&Path>) -> Result<()> {
    if let Some(path) = junit {
        report::write_atomically(path, report::junit_xml(suites)?.as_bytes())?;
        println!("JUnit report: {}", path.display());
    }
    if let Some(path) = tap {
        report::write_atomically(path, report::tap14(suites).as_bytes())?;
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

fn image_command(args: ImageArgs) -> Result<Verdict> {
    let kernel = cargo::build_kernel(args.release)?;
    let format = args
        .format
        .to_possible_value()
        .map(|v| v.get_name().to_string());
    let out = match args.out {
        Some(dir) => dir,
        None => cargo::xtask_dir("image")?.join(format.unwrap_or_default()),
    };
    for path in image::write(&kernel, args.format, &out, &args.kernel_args)? {
        println!("{}", path.display());
    }
    Ok(Verdict::Passed)
}

fn stress(args: &stress::StressArgs) -> Result<Verdict> {
    Ok(if stress::run(args)? {
        Verdict::Passed
    } else {
        Verdict::Failed
    })
}

fn bench(args: bench::BenchArgs) -> Result<Verdict> {
    bench::run(&args)?;
    Ok(Verdict::Passed)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Command::Test(TestArgs { jobs: 2, .. })
        ));
        assert!(Cli::try_parse_from(["xtask", "bench", "boot", "--repeat", "3"]).is_ok());
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
            &["xtask", "test", "--bogus"],
            &["xtask", "parse"],
            &["xtask", "bench", "everything"],
            &["xtask", "bench", "suite", "--repeat", "0"],
            &["xtask"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
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
