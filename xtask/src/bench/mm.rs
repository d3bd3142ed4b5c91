//! `cargo xtask bench mm`: guest time (TOD clock) and ESSA executions per memory-manager
//! operation at 1k, 10k and 100k pages, from the kernel's `bench::mm` suite.
//!
//! Every run is one boot of the release kernel with 2 GiB of memory, a 1200 MiB page pool
//! and the benchmark backing store ([`super::store`]), after one warm-up boot whose numbers
//! are dropped. Only `page_cache_and_faults` and `mlock` run: `host_pressure` has its own
//! benchmark ([`super::pressure`]) and would otherwise see the benchmark file's pages.
//!
//! Two verdicts per operation: the scaling ratio (slowest median ns/op over the three sizes
//! divided by the fastest; flat cost means at most [`SCALING_GOAL`]) and the measured ESSA
//! per operation next to the minimum the page-state rules need ([`ESSA_MINIMUM`]).

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::line::BenchLine;
use super::{Stats, guest, qemu_version, store};
use crate::boot::Limits;
use crate::cargo;
use crate::qemu::Machine;

/// Page counts the kernel measures at; every operation must report all of them.
pub const SIZES: [u64; 3] = [1_000, 10_000, 100_000];

/// Flat cost per operation: the slowest size at most this many times the fastest.
pub const SCALING_GOAL: f64 = 2.0;

/// Guest memory: the pool plus the kernel, the 420 MB backing store QEMU loads into guest
/// memory, and slack.
pub const MEM: &str = "2G";

/// The kernel arguments of every run.
pub const KERNEL_ARGS: [&str; 3] = [
    "ktest.bench",
    "ktest.filter=bench::mm.page_cache_and_faults,bench::mm.mlock",
    // 100k pages plus page tables and the page cache's own frames; the kernel skips any
    // size that does not fit, which the summary then reports as missing.
    "mm.pool=1200M",
];

/// A run may go this long without a test result (the 100k-page sizes take a while under TCG).
const PER_TEST_LIMIT: Duration = Duration::from_secs(900);
/// Longest one run may take.
const RUN_LIMIT: Duration = Duration::from_secs(1800);

/// The minimum ESSA per operation the page-state rules need in this benchmark, and why.
pub struct EssaMinimum {
    /// The `op=` name.
    pub op: &'static str,
    /// ESSA executions per operation.
    pub minimum: f64,
    /// Which state changes the rules require.
    pub reason: &'static str,
}

/// The operations in table order, with their ESSA minimum.
pub const ESSA_MINIMUM: [EssaMinimum; 6] = [
    EssaMinimum {
        op: "readpage",
        minimum: 2.0,
        reason: "page-cache miss: the new frame goes unused -> stable when allocated, and \
                 stable -> volatile on the release after the copy (the reader's reference \
                 keeps it stable while it copies)",
    },
    EssaMinimum {
        op: "lookup_hit",
        minimum: 2.0,
        reason: "the cached page is volatile (that is the point of hinting), so the lookup \
                 must make it stable (ORC 6, which also reveals a host discard) and the \
                 release makes it volatile again; a page that is already stable needs 0",
    },
    EssaMinimum {
        op: "minor_fault",
        minimum: 0.0,
        reason: "series 5/6: the fault maps the cached volatile page read-only without a \
                 state change (were it discarded, the access would take the discard fault)",
    },
    EssaMinimum {
        op: "major_fault",
        minimum: 2.0,
        reason: "as readpage: unused -> stable at allocation, volatile after the read; \
                 mapping it read-only needs no further change",
    },
    EssaMinimum {
        op: "reclaim",
        minimum: 1.0,
        reason: "the freed frame goes unused (free -> unused)",
    },
    EssaMinimum {
        op: "mlock",
        minimum: 1.0,
        reason: "the cache is dropped first, so mlock faults every page in: unused -> \
                 stable at allocation, and an mlocked mapping keeps it stable; a page \
                 already stable would need 0, a volatile one 1",
    },
];

/// One `op=... pages=... ns_per_op=... essa_per_op=...` line.
#[derive(Debug, Clone, PartialEq)]
pub struct MmSample {
    /// Operation.
    pub op: String,
    /// Pages the operation ran over.
    pub pages: u64,
    /// Guest nanoseconds per operation.
    pub ns_per_op: u64,
    /// ESSA executions per operation.
    pub essa_per_op: f64,
}

impl MmSample {
    /// The sample of a bench line, `None` for operations this benchmark does not report.
    pub fn from_line(line: &BenchLine) -> Option<Result<Self>> {
        ESSA_MINIMUM.iter().find(|m| m.op == line.op)?;
        Some((|| {
            Ok(Self {
                op: line.op.clone(),
                pages: line.integer("pages")?,
                ns_per_op: line.integer("ns_per_op")?,
                essa_per_op: line.decimal("essa_per_op")?,
            })
        })())
    }
}

/// One operation at one size over all runs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MmRow {
    /// Operation.
    pub op: String,
    /// Pages.
    pub pages: u64,
    /// Guest nanoseconds per operation (min, median, max over the runs).
    pub ns_per_op: Stats,
    /// ESSA executions per operation (min, median, max over the runs).
    pub essa_per_op: Stats,
}

/// One operation over all sizes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpSummary {
    /// Operation.
    pub op: String,
    /// Slowest median ns/op over the sizes divided by the fastest.
    pub scaling: f64,
    /// Whether `scaling` is within [`SCALING_GOAL`].
    pub flat: bool,
    /// The highest median ESSA per operation over the sizes.
    pub essa_per_op: f64,
    /// What the page-state rules need ([`ESSA_MINIMUM`]).
    pub essa_minimum: f64,
}

/// The memory-manager benchmark's result (also its JSON form).
#[derive(Debug, Clone, Serialize)]
pub struct MmBench {
    /// QEMU version line.
    pub qemu: String,
    /// The QEMU arguments (kernel and image paths aside).
    pub machine: String,
    /// Kernel arguments.
    pub kernel_args: Vec<String>,
    /// Measured runs (after one warm-up run).
    pub repeat: usize,
    /// One row per operation and size, in table order.
    pub rows: Vec<MmRow>,
    /// One summary per operation.
    pub ops: Vec<OpSummary>,
    /// [`SCALING_GOAL`].
    pub scaling_goal: f64,
}

/// Runs the memory-manager benchmark.
pub fn mm_bench(qemu: &Path, repeat: usize) -> Result<MmBench> {
    let kernel = cargo::build_kernel(true)?;
    let machine = Machine {
        mem: MEM.into(),
        initrd: Some(store::ensure_bench_store()?),
        ..Machine::default()
    };
    let kernel_args: Vec<String> = KERNEL_ARGS.map(str::to_string).to_vec();
    let args = machine.args(&kernel, &kernel_args);
    let log_dir = cargo::xtask_dir("bench")?;
    let limits = Limits {
        per_test: Some(PER_TEST_LIMIT),
        total: Some(RUN_LIMIT),
    };
    let mut runs = Vec::with_capacity(repeat);
    for round in 0..=repeat {
        let log = log_dir.join(format!("mm-{round}.log"));
        let samples = guest::boot_for_lines(qemu, &args, limits, &log)?
            .iter()
            .filter_map(MmSample::from_line)
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("bench mm run {round}"))?;
        let label = if round == 0 { "warm-up" } else { "run" };
        eprintln!(
            "xtask: bench mm: {label} {round}/{repeat}: {} lines",
            samples.len()
        );
        if round > 0 {
            runs.push(samples);
        }
    }
    let (rows, ops) = summarize(&runs)?;
    Ok(MmBench {
        qemu: qemu_version(qemu)?,
        machine: machine.args(Path::new("<image>"), &[]).join(" "),
        kernel_args,
        repeat,
        rows,
        ops,
        scaling_goal: SCALING_GOAL,
    })
}

/// Rows per (operation, size) and one summary per operation. Every run must report every
/// operation at every size exactly once: a missing size usually means the pool or the
/// backing store was too small, and would make the scaling ratio meaningless.
pub fn summarize(runs: &[Vec<MmSample>]) -> Result<(Vec<MmRow>, Vec<OpSummary>)> {
    if runs.is_empty() {
        bail!("no benchmark run to summarize");
    }
    let mut rows = Vec::new();
    let mut ops = Vec::new();
    for minimum in &ESSA_MINIMUM {
        let op = minimum.op;
        let mut op_rows = Vec::new();
        for pages in SIZES {
            let mut ns = Vec::new();
            let mut essa = Vec::new();
            for (run, samples) in runs.iter().enumerate() {
                let mut matching = samples.iter().filter(|s| s.op == op && s.pages == pages);
                let sample = matching.next().with_context(|| {
                    format!(
                        "run {}: no op={op} pages={pages} (did the pool or the backing store not fit?)",
                        run + 1
                    )
                })?;
                if matching.next().is_some() {
                    bail!("run {}: op={op} pages={pages} reported twice", run + 1);
                }
                ns.push(sample.ns_per_op as f64);
                essa.push(sample.essa_per_op);
            }
            op_rows.push(MmRow {
                op: op.to_string(),
                pages,
                ns_per_op: Stats::of_values(&ns),
                essa_per_op: Stats::of_values(&essa),
            });
        }
        let scaling = scaling_ratio(op_rows.iter().map(|r| r.ns_per_op.median));
        ops.push(OpSummary {
            op: op.to_string(),
            scaling,
            flat: scaling <= SCALING_GOAL,
            essa_per_op: op_rows
                .iter()
                .map(|r| r.essa_per_op.median)
                .fold(0.0, f64::max),
            essa_minimum: minimum.minimum,
        });
        rows.extend(op_rows);
    }
    Ok((rows, ops))
}

/// Largest over smallest of `values` (1.0 for fewer than two; infinite if one is zero and
/// another is not: an operation the clock could not resolve at one size is not flat).
pub fn scaling_ratio(values: impl IntoIterator<Item = f64>) -> f64 {
    let (min, max) = values
        .into_iter()
        .fold((f64::INFINITY, 0.0f64), |(lo, hi), v| {
            (lo.min(v), hi.max(v))
        });
    if max == 0.0 {
        return 1.0;
    }
    max / min
}

/// How the measured ESSA count compares with the minimum, in words.
fn essa_verdict(measured: f64, minimum: f64) -> String {
    // The kernel prints two decimals.
    if (measured - minimum).abs() < 0.005 {
        "at the minimum".to_string()
    } else if measured > minimum {
        format!("ABOVE the minimum by {:.2}", measured - minimum)
    } else {
        format!(
            "BELOW the minimum by {:.2}: a state change the rules need is missing",
            minimum - measured
        )
    }
}

/// The human table.
pub fn table(result: &MmBench) -> String {
    let mut out = format!(
        "{}\nbench::mm: guest time per operation (TOD clock), {} run(s) after a warm-up boot\n\
         machine: -m {MEM}, kernel: {}\n",
        result.qemu,
        result.repeat,
        result.kernel_args.join(" ")
    );
    out.push_str(&format!(
        "{:<12} {:>7} {:>9} {:>9} {:>9} {:>8}\n",
        "ns per op", "pages", "min", "median", "max", "ESSA/op"
    ));
    for row in &result.rows {
        out.push_str(&format!(
            "{:<12} {:>7} {:>9.0} {:>9.0} {:>9.0} {:>8.2}\n",
            row.op,
            row.pages,
            row.ns_per_op.min,
            row.ns_per_op.median,
            row.ns_per_op.max,
            row.essa_per_op.median
        ));
    }
    out.push_str(&format!(
        "\n{:<12} {:>8} {:>8} {:>8}  verdict (scaling: median ns/op, slowest size over fastest, goal <= {:.0}x)\n",
        "op", "scaling", "ESSA/op", "minimum", result.scaling_goal
    ));
    for (index, op) in result.ops.iter().enumerate() {
        let flat = if op.flat { "flat" } else { "NOT flat" };
        out.push_str(&format!(
            "{:<12} {:>7.2}x {:>8.2} {:>8.0}  {flat}; ESSA {} [{}]\n",
            op.op,
            op.scaling,
            op.essa_per_op,
            op.essa_minimum,
            essa_verdict(op.essa_per_op, op.essa_minimum),
            index + 1
        ));
    }
    out.push_str("minimum ESSA per operation under the page-state rules:\n");
    for (index, minimum) in ESSA_MINIMUM.iter().enumerate() {
        out.push_str(&format!(
            "[{}] {}: {}\n",
            index + 1,
            minimum.op,
            minimum.reason
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(op: &str, pages: u64, ns_per_op: u64, essa_per_op: f64) -> MmSample {
        MmSample {
            op: op.into(),
            pages,
            ns_per_op,
            essa_per_op,
        }
    }

    /// A full run: every operation at every size, costing `ns(op index, pages)`.
    fn run(ns: impl Fn(usize, u64) -> u64) -> Vec<MmSample> {
        let mut samples = Vec::new();
        for (index, minimum) in ESSA_MINIMUM.iter().enumerate() {
            for pages in SIZES {
                samples.push(sample(minimum.op, pages, ns(index, pages), minimum.minimum));
            }
        }
        samples
    }

    #[test]
    fn lines_become_samples_and_other_ops_are_ignored() {
        let parse = |text: &str| BenchLine::parse(text).unwrap().unwrap();
        let line = parse("bench: op=minor_fault pages=10000 ns_per_op=13073 essa_per_op=2.00");
        assert_eq!(
            MmSample::from_line(&line).unwrap().unwrap(),
            sample("minor_fault", 10_000, 13_073, 2.0)
        );
        let other = parse("bench: op=host_pressure hinting=on cache_frames=1");
        assert!(MmSample::from_line(&other).is_none());
        let broken = parse("bench: op=mlock pages=1000 ns_per_op=x essa_per_op=1.00");
        assert!(MmSample::from_line(&broken).unwrap().is_err());
    }

    #[test]
    fn scaling_is_slowest_over_fastest() {
        assert_eq!(scaling_ratio([100.0, 300.0, 150.0]), 3.0);
        assert_eq!(scaling_ratio([200.0]), 1.0);
        assert_eq!(scaling_ratio([0.0, 0.0]), 1.0);
        assert_eq!(scaling_ratio([0.0, 5.0]), f64::INFINITY);
    }

    #[test]
    fn summary_takes_medians_per_size_and_ratios_per_op() {
        // readpage (index 0) grows 3x from 1k to 100k pages; the rest are flat.
        let cost = |base: u64| {
            move |op: usize, pages: u64| {
                if op == 0 {
                    base * (1 + 2 * u64::from(pages == 100_000))
                } else {
                    base
                }
            }
        };
        let runs = [run(cost(100)), run(cost(110)), run(cost(1000))];
        let (rows, ops) = summarize(&runs).unwrap();
        assert_eq!(rows.len(), ESSA_MINIMUM.len() * SIZES.len());
        let first = &rows[0];
        assert_eq!((first.op.as_str(), first.pages), ("readpage", 1000));
        assert_eq!(
            first.ns_per_op,
            Stats {
                min: 100.0,
                median: 110.0,
                max: 1000.0
            }
        );
        assert_eq!(rows[2].ns_per_op.median, 330.0);
        assert!((ops[0].scaling - 3.0).abs() < 1e-12);
        assert!(!ops[0].flat);
        assert_eq!(ops[1].scaling, 1.0);
        assert!(ops[1].flat);
        assert_eq!(ops[4].op, "reclaim");
        assert_eq!((ops[4].essa_per_op, ops[4].essa_minimum), (1.0, 1.0));
    }

    #[test]
    fn missing_or_repeated_sizes_are_errors() {
        let mut short = run(|_, _| 5);
        short.retain(|s| !(s.op == "mlock" && s.pages == 100_000));
        let error = summarize(&[run(|_, _| 5), short]).unwrap_err().to_string();
        assert!(error.contains("run 2: no op=mlock pages=100000"), "{error}");
        let mut twice = run(|_, _| 5);
        twice.push(sample("reclaim", 1000, 5, 1.0));
        let error = summarize(&[twice]).unwrap_err().to_string();
        assert!(error.contains("reported twice"), "{error}");
        assert!(summarize(&[]).is_err());
    }

    #[test]
    fn essa_verdicts_are_honest() {
        assert_eq!(essa_verdict(2.0, 2.0), "at the minimum");
        assert_eq!(essa_verdict(2.5, 2.0), "ABOVE the minimum by 0.50");
        assert!(essa_verdict(1.0, 2.0).starts_with("BELOW the minimum by 1.00"));
    }

    #[test]
    fn the_table_has_every_row_verdict_and_footnote() {
        let mut runs = [run(|_, _| 1000)];
        // lookup_hit (index 1) above its minimum at one size.
        runs[0][4].essa_per_op = 3.0;
        let (rows, ops) = summarize(&runs).unwrap();
        let bench = MmBench {
            qemu: "QEMU 7.2".into(),
            machine: String::new(),
            kernel_args: KERNEL_ARGS.map(str::to_string).to_vec(),
            repeat: 1,
            rows,
            ops,
            scaling_goal: SCALING_GOAL,
        };
        let table = table(&bench);
        assert!(
            table.contains("readpage        1000      1000      1000      1000     2.00"),
            "{table}"
        );
        assert!(
            table.contains(
                "lookup_hit      1.00x     3.00        2  flat; ESSA ABOVE the minimum by 1.00 [2]"
            ),
            "{table}"
        );
        assert!(table.contains("[6] mlock: "), "{table}");
        // Three sizes and the summary line.
        assert_eq!(
            table.lines().filter(|l| l.starts_with("mlock ")).count(),
            4,
            "{table}"
        );
    }
}
