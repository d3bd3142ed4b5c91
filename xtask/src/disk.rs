//! The virtio-blk disk a boot gets besides `-initrd`: a fresh copy of the standard
//! backing-store image followed by a zeroed scratch area, made per run in the run's own
//! directory, so the guest may write it (the `io::*` suites write only the scratch
//! area; `mm.backing=virtio` puts the page cache on it) and recovery reboots of the
//! same run see what the guest wrote.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

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
    let file = path.display().to_string().replace(',', ",,");
    [
        "-drive".into(),
        format!("file={file},if=none,id=zhint-disk,format=raw"),
        "-device".into(),
        "virtio-blk-ccw,drive=zhint-disk,queue-size=16".into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drive_and_device_arguments_escape_commas() {
        let a = args(Path::new("/t/a,b/disk.img"));
        assert_eq!(a[0], "-drive");
        assert_eq!(
            a[1],
            "file=/t/a,,b/disk.img,if=none,id=zhint-disk,format=raw"
        );
        assert_eq!(a[3], "virtio-blk-ccw,drive=zhint-disk,queue-size=16");
    }
}
