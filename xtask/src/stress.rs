//! `cargo xtask stress`: the `cmma::stress` workload under many seeds, under real memory
//! pressure, with the totals of what was checked and a replay command for every failure.
//!
//! Each seed is one boot with `ktest.filter=cmma::stress.<workload> ktest.seed=<seed>` (the
//! workload on one CPU, or with `--smp K` on K CPUs at once) and a page pool
//! (`mm.pool=`) several times smaller than the data the workload keeps alive, so the page
//! cache must reclaim, write back and refault all the time.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;

use crate::boot::{self, Limits, Sinks};
use crate::qemu::Machine;
use crate::results::{Outcome, TestRecord};

/// The suite the command runs.
const SUITE: &str = "cmma::stress";
/// The workload's test on one CPU, whose diagnostics carry the totals.
const WORKLOAD: &str = "random_workload_loses_no_byte";
/// The workload on every CPU at once (`--smp K`).
const SMP_WORKLOAD: &str = "random_workload_on_every_cpu_loses_no_byte";
/// Most CPUs `--smp` takes: the workload gives each CPU scratch files of its own.
pub const MAX_SMP: u32 = 7;
/// Bytes the workload keeps alive (`tests/src/cmma_stress.rs`): 7 scratch files of
/// 256 KiB in the page cache, plus at most 64 pages of anonymous memory.
pub const WORKLOAD_BYTES: u64 = 7 * (256 << 10) + 64 * 4096;
/// Default page pool: `WORKLOAD_BYTES` is 5.3 times this.
const DEFAULT_POOL: &str = "384K";

/// Options of `cargo xtask stress`.
#[derive(Debug, Args)]
pub struct StressArgs {
    /// Seeds to run (default 4 when --minutes is not given either).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    seeds: Option<u64>,
    /// Run only shard K of N of the seeds (seed i belongs to shard i mod N + 1), for a CI matrix;
    /// needs `--first-seed` so every shard counts from the same seed.
    #[arg(long, value_name = "K/N", requires = "first_seed")]
    shard: Option<crate::shard::Shard>,
    /// Start no new seed after this many minutes.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    minutes: Option<u64>,
    /// Kernels to run at once.
    #[arg(short = 'j', long = "jobs", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    jobs: u32,
    /// Operations per seed (`ktest.stress_ops=`).
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u64).range(1..))]
    ops: u64,
    /// Host discards per mille of ESSAs (`ktest.discard_rate=`).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(0..=1000))]
    discard_rate: u16,
    /// Check the memory manager's invariants after every operation (`mm.debug=1`).
    #[arg(long)]
    debug: bool,
    /// Page pool of the memory manager (`mm.pool=`, K or M suffix).
    #[arg(long, default_value = DEFAULT_POOL, value_parser = parse_size)]
    pool: u64,
    /// First seed (default: from the clock, printed); seeds count up from it.
    #[arg(long, value_parser = parse_seed)]
    first_seed: Option<u64>,
    /// Seconds one seed may run before it counts as hung.
    #[arg(long, default_value_t = 300, value_parser = clap::value_parser!(u64).range(1..))]
    timeout: u64,
    /// Build the kernel with the release profile.
    #[arg(long)]
    release: bool,
    /// CPUs: with more than one, the workload runs on all of them at once, each with its
    /// own files and oracle (`cmma::stress.random_workload_on_every_cpu_loses_no_byte`).
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=MAX_SMP as i64))]
    smp: u32,
}

impl StressArgs {
    /// The test that runs the workload and reports its totals.
    fn workload(&self) -> &'static str {
        if self.smp > 1 { SMP_WORKLOAD } else { WORKLOAD }
    }
}

/// `4M`, `384K` or a byte count, as the kernel's `mm.pool=` takes it (at least one page).
fn parse_size(text: &str) -> Result<u64, String> {
    let (digits, shift) = match text.as_bytes().last() {
        Some(b'k' | b'K') => (&text[..text.len() - 1], 10),
        Some(b'm' | b'M') => (&text[..text.len() - 1], 20),
        _ => (text, 0),
    };
    let bytes = digits
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(1 << shift))
        .ok_or_else(|| format!("`{text}` is not a size such as 384K or 1M"))?;
    if bytes < 4096 {
        return Err(format!("`{text}` is smaller than one page"));
    }
    Ok(bytes)
}

pub(crate) fn parse_seed(text: &str) -> Result<u64, String> {
    let parsed = match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => text.parse(),
    };
    parsed.map_err(|_| format!("`{text}` is not a decimal or 0x number"))
}

/// What the workload reported for one seed, by key (`ops`, `host discards`, ...).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Totals(BTreeMap<String, u64>);

impl Totals {
    /// Reads `key N` pairs from the workload's diagnostics, e.g. `ops 1000, checkpoints
    /// 36` or `host discards 40 (18 on request), refaults (major faults) 471`: the key is
    /// the words before the first number of each comma-separated piece.
    pub fn from_diagnostics<'a>(lines: impl IntoIterator<Item = &'a String>) -> Self {
        let mut totals = Self::default();
        for line in lines {
            for piece in line.split(", ") {
                let words: Vec<&str> = piece.split_whitespace().collect();
                let Some(at) = words.iter().position(|w| w.parse::<u64>().is_ok()) else {
                    continue;
                };
                if at == 0 {
                    continue;
                }
                let value = words[at].parse::<u64>().unwrap_or_default();
                *totals.0.entry(words[..at].join(" ")).or_default() += value;
            }
        }
        totals
    }

    /// The value of `key`, 0 when not reported.
    pub fn get(&self, key: &str) -> u64 {
        self.0.get(key).copied().unwrap_or_default()
    }

    fn merge(&mut self, other: &Self) {
        for (key, value) in &other.0 {
            *self.0.entry(key.clone()).or_default() += value;
        }
    }

    /// The closing summary: operations, the host's achieved rate, what reached the
    /// guest (discard faults, discards found by make-stable or met by mlock), refaults
    /// and bytes verified.
    fn summary(&self) -> String {
        let mut parts = vec![
            format!("operations {}", self.get("ops")),
            self.achieved_rate(),
        ];
        parts.extend(
            [
                ("host discards", "host discards"),
                (
                    "of volatile pages by the schedule",
                    "scheduled volatile discards",
                ),
                ("discard faults", "discard faults"),
                (
                    "discards found by make-stable",
                    "discards found by make-stable",
                ),
                ("discards met by mlock", "discards met by mlock"),
                (
                    "frames freed after an unseen discard",
                    "frames freed after an unseen discard",
                ),
                ("refaults", "refaults (major faults)"),
                ("reclaimed", "reclaimed"),
                ("writebacks", "writebacks"),
                ("checkpoints", "checkpoints"),
                ("invariant checks", "invariant checks"),
                ("bytes verified", "bytes verified"),
            ]
            .iter()
            .map(|(label, key)| format!("{label} {}", self.get(key))),
        );
        parts.join(", ")
    }

    /// Host reclaims of hinted frames per 1000 ESSAs: the schedule's achieved rate (the
    /// requested one counts every strike, also those that found no hinted frame).
    fn achieved_rate(&self) -> String {
        let essa = self.get("essa");
        let reclaims = self.get("scheduled reclaims");
        let per_mille = if essa == 0 {
            0.0
        } else {
            reclaims as f64 * 1000.0 / essa as f64
        };
        format!(
            "host rate achieved {per_mille:.1}/1000 ESSAs ({reclaims} reclaims of hinted frames in {essa} ESSAs)"
        )
    }
}

/// How one seed ended.
#[derive(Debug)]
struct SeedRun {
    seed: u64,
    /// `None` when every test passed; else why not.
    failure: Option<String>,
    /// An infrastructure error (QEMU could not run), not a kernel failure.
    infra_error: Option<String>,
    totals: Totals,
    /// The host discard rate asked for (`--discard-rate`), per mille of ESSAs.
    requested_rate: u16,
    elapsed: Duration,
    log: PathBuf,
}

/// Everything one seed needs.
struct Plan<'a> {
    qemu: &'a Path,
    kernel: &'a Path,
    machine: Machine,
    args: &'a StressArgs,
    log_dir: PathBuf,
}

impl Plan<'_> {
    fn kernel_args(&self, seed: u64) -> Vec<String> {
        kernel_args(self.args, seed)
    }
}

fn kernel_args(args: &StressArgs, seed: u64) -> Vec<String> {
    let mut kernel = vec![
        format!("ktest.filter={SUITE}.{}", args.workload()),
        format!("ktest.seed={seed:#x}"),
        format!("ktest.stress_ops={}", args.ops),
        format!("ktest.discard_rate={}", args.discard_rate),
        format!("mm.pool={}K", args.pool >> 10),
    ];
    if args.debug {
        kernel.push("mm.debug=1".into());
    }
    kernel
}

/// The command that boots one seed again, alone, with the console on the terminal.
fn replay_command(args: &StressArgs, seed: u64) -> String {
    let smp = if args.smp > 1 {
        format!(" --smp {}", args.smp)
    } else {
        String::new()
    };
    format!(
        "cargo xtask run{smp} --timeout {} -- {}",
        args.timeout,
        kernel_args(args, seed).join(" ")
    )
}

/// Runs `cargo xtask stress`. Returns whether every seed passed; infrastructure errors are
/// errors.
pub fn run(args: &StressArgs) -> Result<bool> {
    let qemu = crate::install::ensure_qemu()?;
    let kernel = crate::cargo::build_kernel(args.release)?;
    let machine = Machine {
        initrd: Some(crate::backing_store::ensure_standard()?),
        smp: args.smp,
        ..Machine::default()
    };
    machine.check_memory()?;
    let first_seed = args.first_seed.unwrap_or_else(random_seed);
    let seeds = match (args.seeds, args.minutes) {
        (None, None) => Some(4),
        (seeds, _) => seeds,
    };
    let deadline = args
        .minutes
        .map(|m| Instant::now() + Duration::from_secs(m * 60));
    println!(
        "== stress: {SUITE}.{}, {} CPU(s), seeds from {first_seed:#x}{}{}, {} ops each, discard rate {}/1000, pool {} KiB (the workload keeps {} KiB alive: {:.1}x), mm.debug={}, -j {}",
        args.workload(),
        args.smp,
        seeds.map_or(String::new(), |n| format!(", {n} seeds")),
        args.minutes
            .map_or(String::new(), |m| format!(", for {m} minutes")),
        args.ops,
        args.discard_rate,
        args.pool >> 10,
        WORKLOAD_BYTES >> 10,
        WORKLOAD_BYTES as f64 / args.pool as f64,
        u8::from(args.debug),
        args.jobs,
    );
    let plan = Plan {
        qemu: &qemu,
        kernel: &kernel,
        machine,
        args,
        log_dir: crate::cargo::xtask_dir("stress")?,
    };
    let started = Instant::now();
    let runs = run_seeds(&plan, first_seed, seeds, deadline)?;

    let mut totals = Totals::default();
    let mut failed = Vec::new();
    let mut infra = Vec::new();
    for run in &runs {
        totals.merge(&run.totals);
        if let Some(error) = &run.infra_error {
            infra.push(format!("seed {:#x}: {error}", run.seed));
        } else if run.failure.is_some() {
            failed.push(run);
        }
    }
    println!(
        "stress totals over {} seeds in {:.0} s: {}",
        runs.len(),
        started.elapsed().as_secs_f64(),
        totals.summary()
    );
    for run in &failed {
        println!(
            "FAILED seed {:#x}: {}\n    replay: {}\n    console log: {}",
            run.seed,
            run.failure.as_deref().unwrap_or_default(),
            replay_command(args, run.seed),
            run.log.display()
        );
    }
    println!(
        "{} seeds passed, {} failed",
        runs.len() - failed.len() - infra.len(),
        failed.len()
    );
    if !infra.is_empty() {
        bail!(
            "{} seed(s) hit an infrastructure error: {}",
            infra.len(),
            infra.join("; ")
        );
    }
    Ok(failed.is_empty())
}

/// A random starting seed, so repeated runs cover new ground, also two started in the
/// same second: the OS-seeded keys of std's `RandomState` hash the clock's nanoseconds.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(nanos);
    hasher.finish()
}

fn run_seeds(
    plan: &Plan<'_>,
    first_seed: u64,
    seeds: Option<u64>,
    deadline: Option<Instant>,
) -> Result<Vec<SeedRun>> {
    let next = AtomicU64::new(0);
    let runs: Mutex<Vec<SeedRun>> = Mutex::new(Vec::new());
    let errors: Mutex<Vec<anyhow::Error>> = Mutex::new(Vec::new());
    let started = Instant::now();
    let bar = match (seeds, deadline) {
        (_, Some(deadline)) => crate::progress::Bar::time(deadline - started),
        (Some(n), None) => {
            let owned = match plan.args.shard {
                Some(shard) => (0..n).filter(|&i| shard.owns(i as usize)).count() as u64,
                None => n,
            };
            crate::progress::Bar::steps(owned, "seeds")
        }
        (None, None) => unreachable!("seeds or minutes"),
    };
    let failures = AtomicU64::new(0);
    std::thread::scope(|scope| {
        for _ in 0..plan.args.jobs {
            scope.spawn(|| {
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let index = next.fetch_add(1, Ordering::SeqCst);
                    if seeds.is_some_and(|n| index >= n) {
                        break;
                    }
                    if plan
                        .args
                        .shard
                        .is_some_and(|shard| !shard.owns(index as usize))
                    {
                        continue;
                    }
                    match run_seed(plan, first_seed.wrapping_add(index)) {
                        Ok(run) => {
                            crate::progress::println(&seed_line(&run));
                            if run.failure.is_some() || run.infra_error.is_some() {
                                failures.fetch_add(1, Ordering::Relaxed);
                            }
                            bar.message(format!("{} failed", failures.load(Ordering::Relaxed)));
                            match deadline {
                                Some(_) => bar.set_position(started.elapsed().as_secs()),
                                None => bar.inc(),
                            }
                            if let Ok(mut runs) = runs.lock() {
                                runs.push(run);
                            }
                        }
                        Err(error) => {
                            if let Ok(mut errors) = errors.lock() {
                                errors.push(error);
                            }
                            break;
                        }
                    }
                }
            });
        }
    });
    let mut errors = errors
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
    if !errors.is_empty() {
        return Err(errors.swap_remove(0));
    }
    let mut runs = runs
        .into_inner()
        .map_err(|_| anyhow::anyhow!("a worker thread panicked"))?;
    runs.sort_by_key(|r| r.seed);
    Ok(runs)
}

fn seed_line(run: &SeedRun) -> String {
    let verdict = match (&run.infra_error, &run.failure) {
        (Some(error), _) => format!("ERROR {error}"),
        (None, Some(reason)) => format!("FAIL  {reason}"),
        (None, None) => "PASS ".to_string(),
    };
    format!(
        "seed {:#x} {verdict} ops {}, host rate requested {}/1000, {}, discard faults {}, refaults {}, bytes verified {} ({:.1} s)",
        run.seed,
        run.totals.get("ops"),
        run.requested_rate,
        run.totals.achieved_rate(),
        run.totals.get("discard faults"),
        run.totals.get("refaults (major faults)"),
        run.totals.get("bytes verified"),
        run.elapsed.as_secs_f64()
    )
}

/// Boots one seed. The console log is kept only when the seed did not pass.
fn run_seed(plan: &Plan<'_>, seed: u64) -> Result<SeedRun> {
    let log_path = plan.log_dir.join(format!("seed-{seed:#x}.log"));
    let mut log =
        File::create(&log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let qemu_args = plan.machine.args(plan.kernel, &plan.kernel_args(seed));
    let limits = Limits {
        per_test: Some(Duration::from_secs(plan.args.timeout)),
        total: Some(Duration::from_secs(plan.args.timeout * 2)),
    };
    let mut records = Vec::new();
    let outcome = boot::boot(
        plan.qemu,
        &qemu_args,
        limits,
        Sinks {
            log: &mut log,
            echo: boot::Echo::Off,
            on_record: &mut |r| records.push(r.clone()),
        },
    )?;
    let infra_error = outcome.infrastructure_error();
    let failure = judge(&records, outcome.failure_reason(), plan.args.workload());
    let workload = records.iter().find(|r| r.id.name == plan.args.workload());
    let totals = workload.map_or_else(Totals::default, |r| {
        Totals::from_diagnostics(&r.diagnostics)
    });
    if failure.is_none() && infra_error.is_none() {
        let _ = std::fs::remove_file(&log_path);
    }
    Ok(SeedRun {
        seed,
        failure,
        infra_error,
        totals,
        requested_rate: plan.args.discard_rate,
        elapsed: outcome.elapsed,
        log: log_path,
    })
}

/// Why a seed did not pass: the boot did not finish, the workload did not report, or a test
/// failed (with its first failure message).
fn judge(records: &[TestRecord], boot_failure: Option<String>, workload: &str) -> Option<String> {
    if let Some(reason) = boot_failure {
        return Some(reason);
    }
    if let Some(bad) = records.iter().find(|r| r.outcome.is_failure()) {
        // The workload prints its settings first; the failed check says what went wrong.
        let check = bad
            .diagnostics
            .iter()
            .find(|d| d.starts_with("check") && d.contains("failed"));
        let message = match check {
            Some(check) if bad.reason.is_empty() => check.clone(),
            _ => bad.message(),
        };
        return Some(format!("{}: {message}", bad.id));
    }
    match records.iter().find(|r| r.id.name == workload) {
        None => Some(format!("{SUITE}.{workload} did not report")),
        Some(r) if r.outcome == Outcome::Skip => {
            Some(format!("{SUITE}.{workload} skipped: {}", r.reason))
        }
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::TestId;

    fn args(extra: &[&str]) -> StressArgs {
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: StressArgs,
        }
        let argv = std::iter::once("stress").chain(extra.iter().copied());
        <Cli as clap::Parser>::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn the_workload_diagnostics_become_totals() {
        let lines = [
            "seed 0x7 (replay: ktest.seed=0x7), 1000 operations, host discard rate 20/1000 ESSAs, mm.debug=0".to_string(),
            "ops 1000, checkpoints 36, bytes verified 16120884, invariant checks 0".to_string(),
            "host discards 40 (18 on request), discard faults 4, page_discard 4, refaults (major faults) 471, reclaimed 3701, writebacks 382".to_string(),
        ];
        let mut totals = Totals::from_diagnostics(&lines);
        assert_eq!(totals.get("ops"), 1000);
        assert_eq!(totals.get("bytes verified"), 16_120_884);
        assert_eq!(totals.get("host discards"), 40);
        assert_eq!(totals.get("refaults (major faults)"), 471);
        assert_eq!(totals.get("operations"), 0, "a number first is not a key");
        totals.merge(&totals.clone());
        assert_eq!(totals.get("reclaimed"), 7402);
        assert!(
            totals.summary().starts_with(
                "operations 2000, host rate achieved 0.0/1000 ESSAs (0 reclaims of hinted frames in 0 ESSAs), host discards 80, of volatile pages by the schedule 0, discard faults 8, discards found by make-stable 0, discards met by mlock 0, frames freed after an unseen discard 0, refaults 942"
            ),
            "{}",
            totals.summary()
        );
    }

    #[test]
    fn the_achieved_rate_comes_from_the_schedule_counters() {
        let lines = [
            "essa 9037, scheduled strikes 9037, scheduled reclaims 2315, scheduled volatile discards 468 (host rate requested 1000/1000 ESSAs, achieved 256.1/1000)".to_string(),
            "discards found by make-stable 1, discards met by mlock 2".to_string(),
        ];
        let totals = Totals::from_diagnostics(&lines);
        assert_eq!(totals.get("scheduled volatile discards"), 468);
        assert_eq!(totals.get("discards met by mlock"), 2);
        assert_eq!(
            totals.achieved_rate(),
            "host rate achieved 256.2/1000 ESSAs (2315 reclaims of hinted frames in 9037 ESSAs)"
        );
    }

    #[test]
    fn random_seeds_differ_within_one_second() {
        let seeds: std::collections::BTreeSet<u64> = (0..64).map(|_| random_seed()).collect();
        assert_eq!(seeds.len(), 64);
    }

    #[test]
    fn the_replay_command_repeats_the_seed_exactly() {
        let args = args(&[
            "--ops",
            "500",
            "--discard-rate",
            "100",
            "--debug",
            "--pool",
            "1M",
        ]);
        assert_eq!(
            replay_command(&args, 0x2a),
            "cargo xtask run --timeout 300 -- ktest.filter=cmma::stress.random_workload_loses_no_byte ktest.seed=0x2a ktest.stress_ops=500 ktest.discard_rate=100 mm.pool=1024K mm.debug=1"
        );
        let default = self::args(&[]);
        assert!(
            WORKLOAD_BYTES >= 4 * default.pool,
            "the default pool gives at least 4x pressure"
        );
    }

    #[test]
    fn bad_options_are_refused() {
        #[derive(clap::Parser, Debug)]
        struct Cli {
            #[command(flatten)]
            args: StressArgs,
        }
        for bad in [
            &["--seeds", "0"][..],
            &["--discard-rate", "1001"],
            &["--pool", "100"],
            &["--pool", "lots"],
            &["--first-seed", "0xzz"],
            &["-j", "0"],
        ] {
            let argv = std::iter::once("stress").chain(bad.iter().copied());
            assert!(
                <Cli as clap::Parser>::try_parse_from(argv).is_err(),
                "{bad:?}"
            );
        }
        assert_eq!(parse_seed("0x10"), Ok(16));
        assert_eq!(parse_size("384k"), Ok(384 << 10));
    }

    #[test]
    fn more_than_one_cpu_runs_the_workload_on_every_cpu() {
        let one = args(&[]);
        assert_eq!(one.smp, 1);
        assert!(kernel_args(&one, 1)[0].ends_with(&format!(".{WORKLOAD}")));
        assert!(!replay_command(&one, 1).contains("--smp"));
        let four = args(&["--smp", "4"]);
        assert_eq!(
            kernel_args(&four, 1)[0],
            format!("ktest.filter={SUITE}.{SMP_WORKLOAD}")
        );
        assert!(replay_command(&four, 1).starts_with("cargo xtask run --smp 4 "));
        let too_many = (MAX_SMP + 1).to_string();
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            args: StressArgs,
        }
        assert!(<Cli as clap::Parser>::try_parse_from(["stress", "--smp", &too_many]).is_err());
        assert!(<Cli as clap::Parser>::try_parse_from(["stress", "--smp", "0"]).is_err());
    }

    #[test]
    fn a_seed_passes_only_when_the_workload_passed() {
        let record =
            |name: &str, outcome| TestRecord::synthesized(TestId::new(SUITE, name), outcome, "why");
        assert_eq!(
            judge(&[record(WORKLOAD, Outcome::Pass)], None, WORKLOAD),
            None
        );
        assert!(
            judge(
                &[record(WORKLOAD, Outcome::Pass)],
                Some("timeout".into()),
                WORKLOAD
            )
            .is_some()
        );
        assert_eq!(
            judge(
                &[
                    record(WORKLOAD, Outcome::Pass),
                    record("other", Outcome::Fail)
                ],
                None,
                WORKLOAD
            )
            .as_deref(),
            Some("cmma::stress.other: why")
        );
        let mut failed = record(WORKLOAD, Outcome::Fail);
        failed.reason.clear();
        failed.diagnostics = vec![
            "seed 0x1 ...".into(),
            "check failed: false: after operation 19".into(),
        ];
        assert_eq!(
            judge(&[failed], None, WORKLOAD).as_deref(),
            Some(
                "cmma::stress.random_workload_loses_no_byte: check failed: false: after operation 19"
            )
        );
        assert!(
            judge(&[], None, WORKLOAD)
                .unwrap()
                .contains("did not report")
        );
        assert!(
            judge(&[record(WORKLOAD, Outcome::Skip)], None, WORKLOAD)
                .unwrap()
                .contains("skipped")
        );
    }
}
