//! `cargo xtask bench pressure`: the claim of the CMMA work in numbers. The guest fills its
//! page cache with clean file pages, the host (the kernel's host model) reclaims every
//! page-cache frame, and the guest reads the file again (`bench::mm.host_pressure`).
//!
//! Two sides, identical but for `cmma=`: hinting on (`cmma=model`) and off (`cmma=off`),
//! on the same QEMU, memory, pool, image and kernel. Each side boots once to warm up, then
//! the sides alternate which boots first in each round. Reported per side: the page-cache
//! frames, how many the host could drop without writing them out, how many it had to page
//! out, and how many guest refaults the drops caused.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::line::BenchLine;
use super::{Stats, guest, qemu_version};
use crate::backing_store::Initrd;
use crate::boot::Limits;
use crate::cargo;
use crate::qemu::Machine;

/// Kernel arguments both sides share.
pub const COMMON_ARGS: [&str; 3] = [
    "ktest.bench",
    "ktest.filter=bench::mm.host_pressure",
    // The test caches up to 1024 pages, half the usable frames: 16 MiB fits all 1024.
    "mm.pool=16M",
];

/// One boot takes seconds; these only catch a hang.
const LIMITS: Limits = Limits {
    per_test: Some(Duration::from_secs(120)),
    total: Some(Duration::from_secs(300)),
};

/// One `op=host_pressure` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PressureSample {
    /// Whether the kernel ran with hinting.
    pub hinting: bool,
    /// Page-cache frames the host reclaimed.
    pub cache_frames: u64,
    /// Frames the host dropped without writing them out (volatile).
    pub dropped_without_io: u64,
    /// Frames the host had to page out.
    pub paged_out: u64,
    /// Discard faults the guest took reading the file again.
    pub guest_refaults: u64,
}

impl PressureSample {
    /// The sample of a bench line, `None` for other operations.
    pub fn from_line(line: &BenchLine) -> Option<Result<Self>> {
        if line.op != "host_pressure" {
            return None;
        }
        Some((|| {
            let hinting = match line.get("hinting")? {
                "on" => true,
                "off" => false,
                other => bail!("op=host_pressure: hinting={other} is neither on nor off"),
            };
            Ok(Self {
                hinting,
                cache_frames: line.integer("cache_frames")?,
                dropped_without_io: line.integer("dropped_without_io")?,
                paged_out: line.integer("paged_out")?,
                guest_refaults: line.integer("guest_refaults")?,
            })
        })())
    }
}

/// One side's counts (min, median, max over the runs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PressureSide {
    /// Page-cache frames the host reclaimed.
    pub cache_frames: Stats,
    /// Frames dropped without writing them out.
    pub dropped_without_io: Stats,
    /// Frames paged out.
    pub paged_out: Stats,
    /// Guest refaults (discard faults).
    pub guest_refaults: Stats,
}

impl PressureSide {
    /// Statistics of `samples` (must not be empty).
    pub fn of(samples: &[PressureSample]) -> Self {
        let stats = |f: fn(&PressureSample) -> u64| {
            Stats::of_values(&samples.iter().map(|s| f(s) as f64).collect::<Vec<_>>())
        };
        Self {
            cache_frames: stats(|s| s.cache_frames),
            dropped_without_io: stats(|s| s.dropped_without_io),
            paged_out: stats(|s| s.paged_out),
            guest_refaults: stats(|s| s.guest_refaults),
        }
    }
}

/// The host-pressure benchmark's result (also its JSON form).
#[derive(Debug, Clone, Serialize)]
pub struct PressureBench {
    /// QEMU version line.
    pub qemu: String,
    /// The QEMU arguments (kernel and image paths aside), the same on both sides.
    pub machine: String,
    /// Kernel arguments both sides share; they differ only in `cmma=model` / `cmma=off`.
    pub kernel_args: Vec<String>,
    /// Measured runs per side (after one warm-up run each).
    pub repeat: usize,
    /// `cmma=model`.
    pub hinting_on: PressureSide,
    /// `cmma=off`.
    pub hinting_off: PressureSide,
    /// Median page-outs without hinting minus median page-outs with it.
    pub page_outs_avoided: f64,
}

/// Runs the host-pressure benchmark.
pub fn pressure_bench(qemu: &Path, repeat: usize) -> Result<PressureBench> {
    let kernel = cargo::build_kernel(true)?;
    let machine = Machine {
        initrd: Initrd::Standard.resolve()?,
        ..Machine::default()
    };
    let side_args = |hinting: bool| {
        let mut args: Vec<String> = COMMON_ARGS.map(str::to_string).to_vec();
        args.push(if hinting { "cmma=model" } else { "cmma=off" }.to_string());
        machine.args(&kernel, &args)
    };
    let log_dir = cargo::xtask_dir("bench")?;
    let mut samples: [Vec<PressureSample>; 2] = [Vec::new(), Vec::new()];
    for round in 0..=repeat {
        let order = if round % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for hinting in order {
            let name = if hinting { "on" } else { "off" };
            let log = log_dir.join(format!("pressure-{name}-{round}.log"));
            let lines = guest::boot_for_lines(qemu, &side_args(hinting), LIMITS, &log)?;
            let sample = one_sample(&lines, hinting)
                .with_context(|| format!("bench pressure, hinting {name}, run {round}"))?;
            if round > 0 {
                samples[usize::from(hinting)].push(sample);
            }
        }
        let label = if round == 0 { "warm-up" } else { "round" };
        eprintln!("xtask: bench pressure: {label} {round}/{repeat} done");
    }
    let [off, on] = samples;
    Ok(summarize(
        &on,
        &off,
        qemu_version(qemu)?,
        machine.args(Path::new("<image>"), &[]).join(" "),
    ))
}

/// The one `host_pressure` sample of a boot, which must have run with `hinting` as asked.
fn one_sample(lines: &[BenchLine], hinting: bool) -> Result<PressureSample> {
    let mut samples = lines
        .iter()
        .filter_map(PressureSample::from_line)
        .collect::<Result<Vec<_>>>()?;
    if samples.len() != 1 {
        bail!("{} op=host_pressure lines instead of one", samples.len());
    }
    let sample = samples.remove(0);
    if sample.hinting != hinting {
        bail!(
            "the kernel reported hinting={} where it should be {}",
            if sample.hinting { "on" } else { "off" },
            if hinting { "on" } else { "off" }
        );
    }
    Ok(sample)
}

fn summarize(
    on: &[PressureSample],
    off: &[PressureSample],
    qemu: String,
    machine: String,
) -> PressureBench {
    let hinting_on = PressureSide::of(on);
    let hinting_off = PressureSide::of(off);
    PressureBench {
        qemu,
        machine,
        kernel_args: COMMON_ARGS.map(str::to_string).to_vec(),
        repeat: on.len(),
        page_outs_avoided: hinting_off.paged_out.median - hinting_on.paged_out.median,
        hinting_on,
        hinting_off,
    }
}

/// A count: the median, with the range when the runs disagree.
fn count(stats: &Stats) -> String {
    if stats.min == stats.max {
        format!("{:.0}", stats.median)
    } else {
        format!("{:.0} ({:.0}-{:.0})", stats.median, stats.min, stats.max)
    }
}

/// The human table.
pub fn table(result: &PressureBench) -> String {
    let mut out = format!(
        "{}\nhost pressure: the guest caches clean file pages, the host reclaims every \
         page-cache frame,\nthe guest reads the file again; {} run(s) per side after a \
         warm-up, interleaved\n",
        result.qemu, result.repeat
    );
    out.push_str(&format!(
        "{:<30} {:>18} {:>18}\n",
        "frames", "hinting on", "hinting off"
    ));
    let (on, off) = (&result.hinting_on, &result.hinting_off);
    let rows: [(&str, &Stats, &Stats); 4] = [
        (
            "page cache reclaimed by host",
            &on.cache_frames,
            &off.cache_frames,
        ),
        (
            "dropped without I/O",
            &on.dropped_without_io,
            &off.dropped_without_io,
        ),
        ("paged out (host write I/O)", &on.paged_out, &off.paged_out),
        ("guest refaults", &on.guest_refaults, &off.guest_refaults),
    ];
    for (name, on, off) in rows {
        out.push_str(&format!(
            "{name:<30} {:>18} {:>18}\n",
            count(on),
            count(off)
        ));
    }
    let needed = off.paged_out.median;
    let share = if needed > 0.0 {
        100.0 * result.page_outs_avoided / needed
    } else {
        0.0
    };
    out.push_str(&format!(
        "host page-outs avoided by hinting: {:.0} of {:.0} ({share:.0}%), at the cost of {:.0} guest refault(s)\n",
        result.page_outs_avoided, needed, on.guest_refaults.median
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(hinting: bool, dropped: u64, paged_out: u64) -> PressureSample {
        PressureSample {
            hinting,
            cache_frames: dropped + paged_out,
            dropped_without_io: dropped,
            paged_out,
            guest_refaults: dropped,
        }
    }

    fn lines(texts: &[&str]) -> Vec<BenchLine> {
        texts
            .iter()
            .map(|t| BenchLine::parse(t).unwrap().unwrap())
            .collect()
    }

    const ON: &str = "bench: op=host_pressure hinting=on cache_frames=512 dropped_without_io=500 paged_out=12 guest_refaults=500";

    #[test]
    fn a_boot_gives_exactly_one_sample_of_the_asked_side() {
        let other = "bench: op=reclaim pages=1 ns_per_op=1 essa_per_op=1.00";
        assert_eq!(
            one_sample(&lines(&[other, ON]), true).unwrap(),
            PressureSample {
                hinting: true,
                cache_frames: 512,
                dropped_without_io: 500,
                paged_out: 12,
                guest_refaults: 500
            }
        );
        let error = one_sample(&lines(&[ON]), false).unwrap_err().to_string();
        assert!(
            error.contains("hinting=on where it should be off"),
            "{error}"
        );
        assert!(one_sample(&lines(&[ON, ON]), true).is_err());
        assert!(one_sample(&lines(&[other]), true).is_err());
        let odd = ON.replace("hinting=on", "hinting=maybe");
        let error = format!("{:#}", one_sample(&lines(&[&odd]), true).unwrap_err());
        assert!(error.contains("hinting=maybe"), "{error}");
    }

    #[test]
    fn summary_and_table_compare_the_sides() {
        let on = [
            sample(true, 1024, 0),
            sample(true, 1020, 4),
            sample(true, 1024, 0),
        ];
        let off = [sample(false, 0, 1024); 3];
        let bench = summarize(&on, &off, "QEMU 7.2".into(), "-m 256M".into());
        assert_eq!(bench.repeat, 3);
        assert_eq!(bench.hinting_on.paged_out.max, 4.0);
        assert_eq!(bench.page_outs_avoided, 1024.0);
        let table = table(&bench);
        assert!(
            table.contains("dropped without I/O              1024 (1020-1024)                  0"),
            "{table}"
        );
        assert!(
            table.contains("paged out (host write I/O)                0 (0-4)               1024"),
            "{table}"
        );
        assert!(
            table.contains("host page-outs avoided by hinting: 1024 of 1024 (100%), at the cost of 1024 guest refault(s)"),
            "{table}"
        );
    }
}
