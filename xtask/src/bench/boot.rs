//! `cargo xtask bench boot`: how long QEMU takes to boot and stop our kernel, against the
//! floor of QEMU booting a minimal ELF that stops at once, on the same QEMU with the same
//! flags and memory, in interleaved runs after a warm-up of each.

use std::fs::File;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde::Serialize;

use super::{Stats, qemu_version};
use crate::boot::{self, Limits};
use crate::qemu::Machine;

/// Load address and entry point of QEMU's `-kernel` protocol.
const ENTRY: u64 = 0x10000;
/// The image covers the kernel command-line area (0x10480..0x11000) like a real kernel, so QEMU
/// treats both images the same way.
const IMAGE_END: usize = 0x11000;
/// File offset of the loadable segment (page-aligned, after the ELF and program headers).
const SEGMENT_OFFSET: usize = 0x1000;

/// The machine code at 0x10000: store the CPU address, then SIGP STOP to it.
const STOP_CODE: [u8; 16] = [
    0xb2, 0x12, 0x02, 0x80, // stap  0x280
    0x48, 0x10, 0x02, 0x80, // lh    %r1,0x280
    0xae, 0x21, 0x00, 0x05, // sigp  %r2,%r1,5 (stop)
    0xa7, 0xf4, 0x00, 0x00, // j     . (never reached)
];

/// A minimal big-endian ELF64 for s390x: one PT_LOAD at address 0 holding a short IPL PSW
/// (pointing at 0x10000, as in our kernel's lowcore) and [`STOP_CODE`] at 0x10000.
pub fn stop_elf() -> Vec<u8> {
    let mut elf = Vec::with_capacity(SEGMENT_OFFSET + IMAGE_END);
    elf.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 2, 1, 0]); // ELFCLASS64, ELFDATA2MSB, EV_CURRENT
    elf.resize(16, 0);
    elf.extend_from_slice(&2u16.to_be_bytes()); // ET_EXEC
    elf.extend_from_slice(&22u16.to_be_bytes()); // EM_S390
    elf.extend_from_slice(&1u32.to_be_bytes()); // EV_CURRENT
    elf.extend_from_slice(&ENTRY.to_be_bytes()); // e_entry
    elf.extend_from_slice(&64u64.to_be_bytes()); // e_phoff
    elf.extend_from_slice(&0u64.to_be_bytes()); // e_shoff
    elf.extend_from_slice(&0u32.to_be_bytes()); // e_flags
    elf.extend_from_slice(&64u16.to_be_bytes()); // e_ehsize
    elf.extend_from_slice(&56u16.to_be_bytes()); // e_phentsize
    elf.extend_from_slice(&1u16.to_be_bytes()); // e_phnum
    elf.extend_from_slice(&[0; 6]); // e_shentsize, e_shnum, e_shstrndx
    elf.extend_from_slice(&1u32.to_be_bytes()); // PT_LOAD
    elf.extend_from_slice(&7u32.to_be_bytes()); // PF_R | PF_W | PF_X
    elf.extend_from_slice(&(SEGMENT_OFFSET as u64).to_be_bytes()); // p_offset
    elf.extend_from_slice(&0u64.to_be_bytes()); // p_vaddr
    elf.extend_from_slice(&0u64.to_be_bytes()); // p_paddr
    elf.extend_from_slice(&(IMAGE_END as u64).to_be_bytes()); // p_filesz
    elf.extend_from_slice(&(IMAGE_END as u64).to_be_bytes()); // p_memsz
    elf.extend_from_slice(&0x1000u64.to_be_bytes()); // p_align
    elf.resize(SEGMENT_OFFSET, 0);
    let mut image = vec![0u8; IMAGE_END];
    // Short PSW: 31-bit addressing, short-format bit, address 0x10000.
    image[..8].copy_from_slice(&[0x00, 0x08, 0x00, 0x00, 0x80, 0x01, 0x00, 0x00]);
    image[ENTRY as usize..ENTRY as usize + STOP_CODE.len()].copy_from_slice(&STOP_CODE);
    elf.extend_from_slice(&image);
    elf
}

/// Issue 16's target for the boot ratio against the floor.
pub const TARGET_RATIO: f64 = 1.1;

/// The boot benchmark's result (also its JSON form).
#[derive(Debug, Clone, Serialize)]
pub struct BootBench {
    /// QEMU version line.
    pub qemu: String,
    /// The QEMU arguments shared by both sides (kernel path aside).
    pub machine: String,
    /// Measured runs per side (after one warm-up run each).
    pub repeat: usize,
    /// Our kernel, QEMU start to exit.
    pub kernel: Stats,
    /// The stop-at-once ELF, QEMU start to exit.
    pub floor: Stats,
    /// `kernel.median / floor.median` (issue 16's target: at most [`TARGET_RATIO`]).
    pub ratio: f64,
    /// Kernel arguments used for our kernel.
    pub kernel_args: Vec<String>,
}

/// Runs the boot benchmark.
pub fn boot_bench(
    qemu: &Path,
    kernel: &Path,
    floor_elf: &Path,
    machine: &Machine,
    kernel_args: &[String],
    repeat: usize,
) -> Result<BootBench> {
    let mut kernel_times = Vec::new();
    let mut floor_times = Vec::new();
    for round in 0..=repeat {
        let kernel_time = time_boot(qemu, &machine.args(kernel, kernel_args), true)?;
        let floor_time = time_boot(qemu, &machine.args(floor_elf, &[]), false)?;
        if round > 0 {
            kernel_times.push(kernel_time);
            floor_times.push(floor_time);
        }
    }
    let kernel = Stats::of(&kernel_times);
    let floor = Stats::of(&floor_times);
    let args = machine.args(Path::new("<image>"), &[]);
    Ok(BootBench {
        qemu: qemu_version(qemu)?,
        machine: args.join(" "),
        repeat,
        kernel,
        floor,
        ratio: kernel.median / floor.median,
        kernel_args: kernel_args.to_vec(),
    })
}

fn time_boot(qemu: &Path, args: &[String], expect_exit_line: bool) -> Result<Duration> {
    let mut sink = File::create("/dev/null").context("opening /dev/null")?;
    let limits = Limits {
        per_test: None,
        total: Some(Duration::from_secs(120)),
    };
    let outcome = boot::boot_quietly(qemu, args, limits, &mut sink)?;
    if let Some(error) = outcome.infrastructure_error() {
        bail!("{error}");
    }
    if expect_exit_line {
        if let Some(reason) = outcome.failure_reason() {
            bail!("the kernel did not boot cleanly: {reason}");
        }
    } else if !outcome.qemu.status.success() || outcome.qemu.killed_by_xtask {
        bail!(
            "the stop-at-once ELF did not stop QEMU cleanly ({})",
            outcome.qemu.status
        );
    }
    Ok(outcome.elapsed)
}

/// The human table.
pub fn table(result: &BootBench) -> String {
    let row = |name: &str, s: &Stats| {
        format!(
            "{name:<24} {:>9.1} {:>9.1} {:>9.1}\n",
            s.min * 1e3,
            s.median * 1e3,
            s.max * 1e3
        )
    };
    let mut out = format!(
        "{}\n{} runs each after a warm-up, interleaved\n",
        result.qemu, result.repeat
    );
    out.push_str(&format!(
        "{:<24} {:>9} {:>9} {:>9}\n",
        "boot to exit (ms)", "min", "median", "max"
    ));
    out.push_str(&row("zhint kernel", &result.kernel));
    out.push_str(&row("stop-at-once ELF (floor)", &result.floor));
    out.push_str(&format!(
        "floor: the same QEMU, machine, memory and backing store with an ELF that stops at once:\n  {}\nkernel arguments of the zhint side: {}\n",
        result.machine,
        result.kernel_args.join(" ")
    ));
    out.push_str(&format!(
        "ratio against the floor (median) {:.2} (target <= {TARGET_RATIO})\n",
        result.ratio
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_elf_has_the_promised_layout() {
        let elf = stop_elf();
        assert_eq!(&elf[..6], &[0x7f, b'E', b'L', b'F', 2, 2]);
        assert_eq!(u16::from_be_bytes([elf[18], elf[19]]), 22, "EM_S390");
        assert_eq!(
            u64::from_be_bytes(elf[24..32].try_into().unwrap()),
            0x10000,
            "entry"
        );
        let phdr = &elf[64..120];
        assert_eq!(
            u32::from_be_bytes(phdr[..4].try_into().unwrap()),
            1,
            "PT_LOAD"
        );
        assert_eq!(
            u64::from_be_bytes(phdr[16..24].try_into().unwrap()),
            0,
            "vaddr 0"
        );
        let image = &elf[SEGMENT_OFFSET..];
        assert_eq!(image.len(), IMAGE_END);
        assert_eq!(
            &image[4..8],
            &[0x80, 0x01, 0x00, 0x00],
            "short PSW points at 0x10000"
        );
        assert_eq!(
            &image[0x10000..0x10004],
            &[0xb2, 0x12, 0x02, 0x80],
            "stap first"
        );
    }

    /// Boots the generated ELF in the real QEMU when it is installed: it must stop at once.
    #[test]
    fn stop_elf_stops_qemu() {
        let Some(qemu) = crate::install::find_in_path(Path::new(crate::install::QEMU)) else {
            eprintln!("SKIPPED: {} not installed", crate::install::QEMU);
            return;
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stop.elf");
        std::fs::write(&path, stop_elf()).unwrap();
        let elapsed = time_boot(&qemu, &Machine::default().args(&path, &[]), false).unwrap();
        assert!(elapsed < Duration::from_secs(20), "{elapsed:?}");
    }
}
