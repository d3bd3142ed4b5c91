//! `cargo xtask bench stress`: the stress workload's throughput on 1, 2 and 4 CPUs, side
//! by side in one run (`cmma::stress.random_workload_on_every_cpu_loses_no_byte`: the
//! same seed and the same number of operations, split over the CPUs, each with its own
//! files and oracle, against one memory manager and one host model). Each round boots the
//! three machines in a rotating order; reported are operations per second (guest time,
//! from the kernel's clock) and the ratio of each median to the 1-CPU median.

use std::path::Path;
use std::time::Duration;

use anyhow::{Result, bail};
use serde::Serialize;

use super::line::BenchLine;
use super::{Stats, guest, header, qemu_version};
use crate::backing_store::Initrd;
use crate::boot::Limits;
use crate::cargo;
use crate::qemu::Machine;

/// The CPU counts compared.
pub const CPUS: [u32; 3] = [1, 2, 4];
/// Operations per boot, over all CPUs.
pub const OPS: u64 = 2000;

/// A boot takes tens of seconds under TCG; these only catch a hang.
const LIMITS: Limits = Limits {
    per_test: Some(Duration::from_secs(600)),
    total: Some(Duration::from_secs(900)),
};

/// One `op=stress` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StressSample {
    /// CPUs the workload ran on.
    pub cpus: u64,
    /// Operations done.
    pub ops: u64,
    /// Guest time of the run, microseconds.
    pub time_us: u64,
}

impl StressSample {
    /// The sample of a bench line, `None` for other operations.
    pub fn from_line(line: &BenchLine) -> Option<Result<Self>> {
        if line.op != "stress" {
            return None;
        }
        Some((|| {
            Ok(Self {
                cpus: line.integer("cpus")?,
                ops: line.integer("ops")?,
                time_us: line.integer("time_us")?,
            })
        })())
    }

    /// Operations per second.
    pub fn ops_per_s(&self) -> f64 {
        self.ops as f64 * 1e6 / self.time_us.max(1) as f64
    }
}

/// One CPU count's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct StressSide {
    /// CPUs.
    pub cpus: u32,
    /// Operations per second (guest time).
    pub ops_per_s: Stats,
    /// Median operations per second against the 1-CPU median.
    pub ratio_to_one_cpu: f64,
}

/// The JSON section.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct StressBench {
    /// `qemu --version`.
    pub qemu: String,
    /// Operations per boot, over all CPUs.
    pub ops: u64,
    /// Measured boots per CPU count.
    pub repeat: usize,
    /// One entry per CPU count, in [`CPUS`] order.
    pub sides: Vec<StressSide>,
}

/// The kernel arguments of one boot (`seed`: the round's, the same for every CPU count).
pub fn kernel_args(seed: u64) -> Vec<String> {
    vec![
        "ktest.filter=cmma::stress.random_workload_on_every_cpu_loses_no_byte".into(),
        format!("ktest.seed={seed:#x}"),
        format!("ktest.stress_ops={OPS}"),
        // The workload skips on one CPU outside benchmarks (the 1-CPU workload runs it).
        "ktest.bench".into(),
    ]
}

/// Runs `repeat` rounds of one boot per CPU count.
pub fn stress_bench(qemu: &Path, repeat: usize) -> Result<StressBench> {
    let kernel = cargo::build_kernel(true)?;
    let dir = cargo::xtask_dir("bench")?;
    let mut samples: Vec<Vec<f64>> = vec![Vec::new(); CPUS.len()];
    for round in 0..repeat {
        for k in 0..CPUS.len() {
            // Rotate which CPU count boots first, so a warming host favours none.
            let side = (round + k) % CPUS.len();
            let cpus = CPUS[side];
            let machine = Machine {
                initrd: Initrd::Standard.resolve()?,
                smp: cpus,
                ..Machine::default()
            };
            machine.check_memory()?;
            let args = machine.args(&kernel, &kernel_args(0x5eed + round as u64));
            let log = dir.join(format!("stress-smp{cpus}.log"));
            let lines = guest::boot_for_lines(qemu, &args, LIMITS, &log)?;
            let sample = one_sample(&lines, cpus)?;
            eprintln!(
                "xtask: bench stress: round {}/{repeat}, {cpus} CPU(s): {:.0} ops/s",
                round + 1,
                sample.ops_per_s()
            );
            samples[side].push(sample.ops_per_s());
        }
    }
    Ok(summarize(qemu_version(qemu)?, repeat, &samples))
}

/// The one `op=stress` line of a boot, which must have run on `cpus` CPUs.
fn one_sample(lines: &[BenchLine], cpus: u32) -> Result<StressSample> {
    let found: Vec<StressSample> = lines
        .iter()
        .filter_map(StressSample::from_line)
        .collect::<Result<_>>()?;
    match found.as_slice() {
        [one] if one.cpus == u64::from(cpus) => Ok(*one),
        [one] => bail!(
            "the workload ran on {} CPUs, not {cpus} (are they all online?)",
            one.cpus
        ),
        other => bail!("expected one `op=stress` line, got {}", other.len()),
    }
}

fn summarize(qemu: String, repeat: usize, samples: &[Vec<f64>]) -> StressBench {
    let stats: Vec<Stats> = samples.iter().map(|s| Stats::of_values(s)).collect();
    let one = stats[0].median.max(f64::MIN_POSITIVE);
    StressBench {
        qemu,
        ops: OPS,
        repeat,
        sides: CPUS
            .iter()
            .zip(&stats)
            .map(|(&cpus, &ops_per_s)| StressSide {
                cpus,
                ops_per_s,
                ratio_to_one_cpu: ops_per_s.median / one,
            })
            .collect(),
    }
}

/// The table: operations per second per CPU count, and the ratio to one CPU.
pub fn table(bench: &StressBench) -> String {
    let mut out = format!(
        "stress throughput, {} operations per boot, {} boot(s) per CPU count ({})\n",
        bench.ops, bench.repeat, bench.qemu
    );
    out.push_str(&header("operations per second"));
    for side in &bench.sides {
        out.push_str(&side.ops_per_s.row(&format!("{} CPU(s)", side.cpus), 1.0));
    }
    out.push_str("median against 1 CPU:");
    for side in &bench.sides {
        out.push_str(&format!(
            " {} CPU(s) {:.2}x",
            side.cpus, side.ratio_to_one_cpu
        ));
    }
    out.push('\n');
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(text: &str) -> BenchLine {
        BenchLine::parse(text).unwrap().unwrap()
    }

    #[test]
    fn a_stress_line_becomes_a_sample() {
        let sample = StressSample::from_line(&line(
            "bench: op=stress cpus=2 ops=2000 time_us=4000000 ops_per_s=500",
        ))
        .unwrap()
        .unwrap();
        assert_eq!(sample.cpus, 2);
        assert_eq!(sample.ops_per_s(), 500.0);
        assert!(StressSample::from_line(&line("bench: op=reclaim pages=1")).is_none());
        let broken = line("bench: op=stress cpus=2 ops=x time_us=1");
        assert!(StressSample::from_line(&broken).unwrap().is_err());
    }

    #[test]
    fn a_boot_must_report_once_on_the_cpus_asked_for() {
        let two = line("bench: op=stress cpus=2 ops=10 time_us=10");
        assert!(one_sample(std::slice::from_ref(&two), 2).is_ok());
        let error = one_sample(std::slice::from_ref(&two), 4)
            .unwrap_err()
            .to_string();
        assert!(error.contains("ran on 2 CPUs, not 4"), "{error}");
        assert!(one_sample(&[], 1).is_err());
        assert!(one_sample(&[two.clone(), two], 2).is_err());
    }

    #[test]
    fn ratios_are_to_the_one_cpu_median() {
        let bench = summarize(
            "QEMU".into(),
            2,
            &[vec![100.0, 100.0], vec![150.0, 170.0], vec![200.0, 220.0]],
        );
        let ratios: Vec<f64> = bench.sides.iter().map(|s| s.ratio_to_one_cpu).collect();
        assert_eq!(ratios, [1.0, 1.6, 2.1]);
        let table = table(&bench);
        assert!(table.contains("4 CPU(s) 2.10x"), "{table}");
    }
}
