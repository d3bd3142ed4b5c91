//! The virtio-blk disk a boot gets besides `-initrd`: a fresh copy of the standard
//! backing-store image followed by a zeroed scratch area, made per run in the run's own
//! directory, so the guest may write it (the `io::*` suites write only the scratch
//! area; `mm.backing=virtio` puts the page cache on it) and recovery reboots of the
//! same run see what the guest wrote.
//!
//! After the run, [`check`] compares the file with what it held before (the image, then
//! zeros) and with the writes every boot reported (`# disk-writes:` lines, see
//! `backing::writes`): a block that differs from both fails the run, named. A page of a
//! standard file that the run left changed fails it too: a test that writes a file puts
//! its pattern back, so the suites pass again on a disk that persists between runs (a
//! DASD or minidisk under z/VM, any `-drive` of one's own).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use backing::image::Image;
use backing::writes::{self, BlockWrite, Mismatch, ReportError};

use crate::qemu::Machine;

/// Zeroed bytes after the image: where the `io::virtio_blk` suite writes.
pub const SCRATCH_BYTES: u64 = 1 << 20;

/// File name of the disk inside the run's directory.
pub const FILE_NAME: &str = "disk.img";

/// Creates `<dir>/disk.img` (the standard image, then [`SCRATCH_BYTES`] of zeros) and
/// attaches it to `machine` as a virtio-blk-ccw device. `queue-size=16`: legacy
/// virtio-ccw cannot shrink a queue and `virtio-drivers` uses 16 entries (see
/// `kernel::io::virtio_ccw`).
pub fn attach(machine: &mut Machine, dir: &Path) -> Result<PathBuf> {
    let image = crate::backing_store::ensure_standard()?;
    let path = dir.join(FILE_NAME);
    std::fs::copy(&image, &path)
        .with_context(|| format!("copying {} to {}", image.display(), path.display()))?;
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    let len = file.metadata()?.len();
    file.set_len(len + SCRATCH_BYTES)
        .with_context(|| format!("extending {}", path.display()))?;
    machine.extra_args.extend(args(&path));
    Ok(path)
}

/// The QEMU arguments for the disk at `path` (commas in the path doubled, as QEMU's
/// option syntax wants).
fn args(path: &Path) -> [String; 4] {
    disk_args(path, fast_io())
}

/// [`args`] with or without [`fast_io`]'s options.
fn disk_args(path: &Path, fast: bool) -> [String; 4] {
    let file = path.display().to_string().replace(',', ",,");
    let (aio, ioeventfd) = if fast {
        (",aio=io_uring", ",ioeventfd=off")
    } else {
        ("", "")
    };
    [
        "-drive".into(),
        format!("file={file},if=none,id=zhint-disk,format=raw{aio}"),
        "-device".into(),
        format!("virtio-blk-ccw,drive=zhint-disk,queue-size=16{ioeventfd}"),
    ]
}

/// Whether the disk gets `aio=io_uring` and `ioeventfd=off`. With both, QEMU submits a
/// request in the vCPU thread that notified it, straight to io_uring, instead of
/// waking the main loop, which hands it to a worker thread: the suites' page-cache
/// I/O takes about 40% less time (see `docs/io.md`). Not every QEMU is built
/// with io_uring, and a kernel or a container's seccomp profile may refuse it, so
/// QEMU is asked once per process; where it refuses, the disk has QEMU's defaults.
fn fast_io() -> bool {
    static FAST: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *FAST.get_or_init(|| match io_uring_works() {
        Ok(()) => true,
        Err(why) => {
            eprintln!(
                "xtask: note: the disk uses QEMU's worker threads (slower page-cache I/O), \
                 not io_uring: {why}"
            );
            false
        }
    })
}

/// Whether this QEMU opens an io_uring drive on the standard image ([`probe_io_uring`]).
fn io_uring_works() -> Result<(), String> {
    let qemu = crate::install::find_qemu().map_err(|e| format!("{e:#}"))?;
    let image = crate::backing_store::ensure_standard().map_err(|e| format!("{e:#}"))?;
    probe_io_uring(&qemu, &image, PROBE_TIMEOUT)
}

/// Starts `qemu` without a machine, with a read-only io_uring drive on `image`, and quits
/// it through the monitor: QEMU exits 0 only if it opened the drive. A QEMU that cannot
/// start, fails (the error says why, with the last line QEMU printed) or has not exited
/// after `timeout` (then killed) is a no.
fn probe_io_uring(qemu: &Path, image: &Path, timeout: std::time::Duration) -> Result<(), String> {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    let file = image.display().to_string().replace(',', ",,");
    let mut child = Command::new(qemu)
        .args(["-nodefaults", "-machine", "none", "-display", "none"])
        .args(["-monitor", "stdio", "-drive"])
        .arg(format!(
            "file={file},if=none,format=raw,readonly=on,aio=io_uring"
        ))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", qemu.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // QEMU that failed to open the drive has exited: the write may fail.
        let _ = stdin.write_all(b"quit\n");
    }
    let deadline = std::time::Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    let mut stderr = String::new();
    if let Some(mut pipe) = child.stderr.take() {
        let _ = pipe.read_to_string(&mut stderr);
    }
    let said = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    match status {
        Some(status) if status.success() => Ok(()),
        Some(status) => Err(format!(
            "{} {status} with an io_uring drive: {said}",
            qemu.display()
        )),
        None => Err(format!(
            "{} did not quit within {timeout:?}",
            qemu.display()
        )),
    }
}

/// How long [`probe_io_uring`] waits for QEMU to quit (it takes about 30 ms).
const PROBE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Why the disk's contents fail the run.
#[derive(Debug, PartialEq, Eq)]
pub enum CheckError {
    /// A boot's report is missing or unreadable (boots count from 1).
    Report {
        /// The boot.
        boot: usize,
        /// What is wrong with its report.
        error: ReportError,
    },
    /// The file disagrees with the original and the reports.
    Mismatch(Vec<Mismatch>),
    /// The guest's writes check, but these pages of standard files (`(file id, page)`)
    /// no longer hold the image's pattern at the end of the run.
    LeftChanged(Vec<(u32, u64)>),
}

impl std::fmt::Display for CheckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Report { boot, error } => write!(
                f,
                "boot {boot}: {error}, so the disk's contents cannot be checked"
            ),
            Self::Mismatch(found) => {
                let first: Vec<String> = found.iter().take(3).map(ToString::to_string).collect();
                write!(
                    f,
                    "the disk file does not hold what the guest wrote: {}",
                    first.join("; ")
                )?;
                if found.len() > 3 {
                    write!(f, " (and {} more)", found.len() - 3)?;
                }
                Ok(())
            }
            Self::LeftChanged(pages) => {
                let first: Vec<String> = pages
                    .iter()
                    .take(5)
                    .map(|(file, page)| format!("file {file} page {page}"))
                    .collect();
                write!(
                    f,
                    "the run left {} page(s) of the standard files changed (a test that writes a file must put its pattern back): {}",
                    pages.len(),
                    first.join(", ")
                )?;
                if pages.len() > 5 {
                    write!(f, " (and {} more)", pages.len() - 5)?;
                }
                Ok(())
            }
        }
    }
}

/// The console text of each boot in `log` (split at xtask's boot markers; a log without
/// markers is one boot).
pub fn boots(log: &str) -> Vec<&str> {
    let mut starts: Vec<usize> = log
        .match_indices(crate::verdict::BOOT_MARKER)
        .filter(|(at, _)| *at == 0 || log.as_bytes()[at - 1] == b'\n')
        .map(|(at, _)| at)
        .collect();
    if starts.first() != Some(&0) {
        starts.insert(0, 0);
    }
    starts
        .iter()
        .zip(starts.iter().skip(1).chain([&log.len()]))
        .map(|(&a, &b)| &log[a..b])
        .filter(|text| !text.trim().is_empty())
        .collect()
}

/// Checks the disk file's bytes `disk` against `original` and the reports of the boots in
/// `log`; returns how many blocks the guest reported writing.
pub fn check_bytes(original: &[u8], disk: &[u8], log: &str) -> Result<usize, CheckError> {
    let mut reports: Vec<Vec<BlockWrite>> = Vec::new();
    for (n, text) in boots(log).into_iter().enumerate() {
        let report = writes::parse(text.lines())
            .map_err(|error| CheckError::Report { boot: n + 1, error })?;
        reports.push(report);
    }
    if reports.is_empty() {
        return Err(CheckError::Report {
            boot: 1,
            error: ReportError::Missing,
        });
    }
    let merged = writes::merge(&reports).map_err(|m| CheckError::Mismatch(vec![m]))?;
    let found = writes::verify(original, disk, &merged);
    if !found.is_empty() {
        return Err(CheckError::Mismatch(found));
    }
    let changed = left_changed(original, disk, &merged);
    if changed.is_empty() {
        Ok(merged.len())
    } else {
        Err(CheckError::LeftChanged(changed))
    }
}

/// The pages of the files of the image at the start of `original` that differ in `disk`
/// (the scratch area after the image is the guest's to write). Only blocks in `written`
/// can: [`writes::verify`] has found every other block as it was. An `original` that is
/// not an image has no files.
fn left_changed(original: &[u8], disk: &[u8], written: &[BlockWrite]) -> Vec<(u32, u64)> {
    let Ok(image) = Image::parse(original) else {
        return Vec::new();
    };
    let mut changed = Vec::new();
    for w in written {
        let Some((file, index)) = image.files().iter().find_map(|f| {
            let index = w.block.checked_sub(f.start_block)?;
            (index < f.pages()).then_some((f.id, index))
        }) else {
            continue;
        };
        let start = w.block as usize * backing::PAGE_BYTES;
        let range = start..start + backing::PAGE_BYTES;
        if original.get(range.clone()) != disk.get(range) {
            changed.push((file, index));
        }
    }
    changed.sort_unstable();
    changed
}

/// Checks the disk at `path` after a run whose console log is `log_path`. `Ok(Err(_))` is
/// a verdict (the run fails); `Err(_)` a file that cannot be read.
pub fn check(path: &Path, log_path: &Path) -> Result<Result<usize, CheckError>> {
    let mut original = std::fs::read(crate::backing_store::ensure_standard()?)
        .context("reading the standard backing-store image")?;
    original.resize(original.len() + SCRATCH_BYTES as usize, 0);
    let disk = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let log = std::fs::read(log_path).with_context(|| format!("reading {}", log_path.display()))?;
    Ok(check_bytes(
        &original,
        &disk,
        &String::from_utf8_lossy(&log),
    ))
}

/// The record that fails a run whose disk does not check.
pub fn failure_record(error: &CheckError) -> crate::results::TestRecord {
    let mut record = crate::results::TestRecord::synthesized(
        crate::results::TestId::new("disk", "contents"),
        crate::results::Outcome::Error,
        error.to_string(),
    );
    record.duration = Some(std::time::Duration::ZERO);
    record
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_and_device_arguments_escape_commas() {
        let a = disk_args(Path::new("/t/a,b/disk.img"), false);
        assert_eq!(a[0], "-drive");
        assert_eq!(
            a[1],
            "file=/t/a,,b/disk.img,if=none,id=zhint-disk,format=raw"
        );
        assert_eq!(a[3], "virtio-blk-ccw,drive=zhint-disk,queue-size=16");
        let a = disk_args(Path::new("/t/a,b/disk.img"), true);
        assert_eq!(
            a[1],
            "file=/t/a,,b/disk.img,if=none,id=zhint-disk,format=raw,aio=io_uring"
        );
        assert_eq!(
            a[3],
            "virtio-blk-ccw,drive=zhint-disk,queue-size=16,ioeventfd=off"
        );
    }

    /// The probe says no, and returns, for a QEMU that refuses the drive, one that never
    /// quits, and one that is not there; a QEMU that quits when told says yes.
    #[test]
    fn the_io_uring_probe_says_no_unless_qemu_quits_cleanly() {
        use std::os::unix::fs::PermissionsExt;
        use std::time::{Duration, Instant};
        let dir = tempfile::tempdir().unwrap();
        let image = dir.path().join("image");
        std::fs::write(&image, [0u8; 512]).unwrap();
        let fake = |name: &str, script: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, format!("#!/bin/sh\n{script}\n")).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
            path
        };
        let timeout = Duration::from_millis(300);
        let quits = fake(
            "quits",
            r#"read line; [ "$line" = quit ] && exit 0; exit 3"#,
        );
        assert_eq!(probe_io_uring(&quits, &image, timeout), Ok(()));
        let refuses = fake("refuses", "echo 'aio=io_uring: not supported' >&2; exit 1");
        let why = probe_io_uring(&refuses, &image, timeout).unwrap_err();
        assert!(why.ends_with("aio=io_uring: not supported"), "{why}");
        let hangs = fake("hangs", "exec sleep 600");
        let started = Instant::now();
        let why = probe_io_uring(&hangs, &image, timeout).unwrap_err();
        assert!(why.contains("did not quit"), "{why}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{:?}",
            started.elapsed()
        );
        let why = probe_io_uring(&dir.path().join("missing"), &image, timeout).unwrap_err();
        assert!(why.starts_with("cannot start"), "{why}");
    }

    fn image() -> Vec<u8> {
        (0..6 * 4096).map(|i| (i * 7 % 251) as u8).collect()
    }

    /// A console log of `boots` boots, each with the report of its writes.
    fn log_of(boots: &[&writes::WriteLog]) -> String {
        let mut log = String::new();
        for (n, w) in boots.iter().enumerate() {
            log.push_str(&format!(
                "{}{} (virtio-backing): qemu ...\n",
                crate::verdict::BOOT_MARKER,
                n + 1
            ));
            log.push_str("KTAP version 1\n1..1\nok 1 x\n# Totals: pass:1 fail:0 skip:0 total:1\n");
            for line in w.report() {
                log.push_str(&format!("# {line}\n"));
            }
            log.push_str("EXIT: STATUS=1\n");
        }
        log
    }

    #[test]
    fn the_guests_writes_check_and_a_corrupted_file_or_report_fails_naming_the_block() {
        let original = image();
        let mut disk = original.clone();
        let mut log1 = writes::WriteLog::new();
        disk[4096..8192].fill(0xaa);
        log1.record(8, &disk[4096..8192]);
        let mut log2 = writes::WriteLog::new();
        disk[5 * 4096..5 * 4096 + 1024].fill(0x55);
        log2.record(40, &disk[5 * 4096..5 * 4096 + 1024]);
        let log = log_of(&[&log1, &log2]);
        assert_eq!(boots(&log).len(), 2);
        assert_eq!(check_bytes(&original, &disk, &log), Ok(2));
        // The host corrupts a block nobody wrote, a block the guest wrote, and a sector of
        // a block the guest wrote partly.
        for (at, want) in [
            (3 * 4096 + 9, "block 3 differs from the original at byte 9"),
            (
                4096 + 4000,
                "block 1 does not hold what the guest reported writing",
            ),
            (
                5 * 4096 + 3000,
                "sector 5 of block 5 differs from the original",
            ),
        ] {
            let mut bad = disk.clone();
            bad[at] ^= 0x01;
            let error = check_bytes(&original, &bad, &log).unwrap_err();
            let text = failure_record(&error).reason;
            assert!(text.contains(want), "{text}");
        }
        // A report that lies about a block, or is missing from a boot.
        let lie = log.replacen(
            &format!("{}", log1.blocks()[0]),
            &format!(
                "{}",
                BlockWrite {
                    digest: 1,
                    ..log1.blocks()[0]
                }
            ),
            1,
        );
        assert!(
            matches!(check_bytes(&original, &disk, &lie), Err(CheckError::Mismatch(m)) if matches!(m[..], [Mismatch::Written { block: 1, .. }]))
        );
        let cut: String = log
            .lines()
            .filter(|l| !l.contains("end blocks=1") || l.contains("xtask"))
            .map(|l| format!("{l}\n"))
            .collect();
        let error = check_bytes(&original, &disk, &cut).unwrap_err();
        assert_eq!(
            error,
            CheckError::Report {
                boot: 1,
                error: ReportError::Unterminated
            }
        );
        assert_eq!(
            error.to_string(),
            "boot 1: the `disk-writes:` report has no `end` line, so the disk's contents cannot be checked"
        );
        assert_eq!(
            check_bytes(&original, &disk, "KTAP version 1\nEXIT: STATUS=1\n"),
            Err(CheckError::Report {
                boot: 1,
                error: ReportError::Missing
            })
        );
        // One boot, no marker (`cargo xtask run`), no writes: the untouched file checks.
        assert_eq!(
            check_bytes(
                &original,
                &original,
                "# disk-writes: begin blocks=0\n# disk-writes: end blocks=0\n"
            ),
            Ok(0)
        );
    }

    #[test]
    fn a_file_page_the_run_left_changed_fails_naming_file_and_page() {
        // Header block 0, file 3 in blocks 1-2, file 9 in block 3, then two scratch blocks.
        let mut original = backing::image::build_image(&[(3, 2 * 4096), (9, 100)]);
        assert_eq!(original.len(), 4 * 4096);
        original.resize(6 * 4096, 0);
        let write = |disk: &mut Vec<u8>, log: &mut writes::WriteLog, block: usize, byte: u8| {
            disk[block * 4096..(block + 1) * 4096].fill(byte);
            log.record(block as u64 * 8, &disk[block * 4096..(block + 1) * 4096]);
        };
        // Writes to the scratch area, and a file page written and then put back: clean.
        let mut disk = original.clone();
        let mut log = writes::WriteLog::new();
        write(&mut disk, &mut log, 4, 0xaa);
        write(&mut disk, &mut log, 2, 0x55);
        disk[2 * 4096..3 * 4096].copy_from_slice(&original[2 * 4096..3 * 4096]);
        log.record(16, &disk[2 * 4096..3 * 4096]);
        assert_eq!(check_bytes(&original, &disk, &log_of(&[&log])), Ok(2));
        // File 3's page 1 and file 9's page 0 written and left so: the run fails, naming them.
        write(&mut disk, &mut log, 2, 0x55);
        write(&mut disk, &mut log, 3, 0x66);
        let error = check_bytes(&original, &disk, &log_of(&[&log])).unwrap_err();
        assert_eq!(error, CheckError::LeftChanged(vec![(3, 1), (9, 0)]));
        assert_eq!(
            error.to_string(),
            "the run left 2 page(s) of the standard files changed (a test that writes a file must put its pattern back): file 3 page 1, file 9 page 0"
        );
    }

    #[test]
    fn a_corrupted_disk_file_fails_check_from_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let mut original = std::fs::read(crate::backing_store::ensure_standard().unwrap()).unwrap();
        original.resize(original.len() + SCRATCH_BYTES as usize, 0);
        let disk = dir.path().join(FILE_NAME);
        let log = dir.path().join("console.log");
        std::fs::write(&disk, &original).unwrap();
        std::fs::write(
            &log,
            "# disk-writes: begin blocks=0\n# disk-writes: end blocks=0\n",
        )
        .unwrap();
        assert_eq!(check(&disk, &log).unwrap(), Ok(0));
        original[7 * 4096] ^= 0xff;
        std::fs::write(&disk, &original).unwrap();
        let error = check(&disk, &log).unwrap().unwrap_err();
        assert_eq!(
            error.to_string(),
            "the disk file does not hold what the guest wrote: block 7 differs from the original at byte 0, and the guest did not report writing it"
        );
    }
}
