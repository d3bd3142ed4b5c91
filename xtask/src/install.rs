//! Finding `qemu-system-s390x`, and installing it with the system package manager when missing.
//!
//! Installing needs root or passwordless sudo; otherwise xtask prints the exact command and
//! stops with an infrastructure error (exit 2).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

/// The QEMU binary xtask boots the kernel with.
pub const QEMU: &str = "qemu-system-s390x";

/// The QEMU binary without installing anything: `$QEMU` if set, else `qemu-system-s390x`
/// from `PATH`. What host tests use: they never install (`cargo xtask test` provisions first).
pub fn find_qemu() -> Result<PathBuf> {
    if let Some(explicit) = std::env::var_os("QEMU") {
        let path = PathBuf::from(explicit);
        return find_in_path(&path).with_context(|| format!("$QEMU={} not found", path.display()));
    }
    find_in_path(Path::new(QEMU)).with_context(|| {
        format!("{QEMU} not found; `cargo xtask provision` installs it (or: apt-get install qemu-system-misc)")
    })
}

/// Returns the QEMU binary: `$QEMU` if set, else `qemu-system-s390x` from `PATH`, installed
/// first when it is missing and xtask may install it.
pub fn ensure_qemu() -> Result<PathBuf> {
    if std::env::var_os("QEMU").is_some() {
        return find_qemu();
    }
    if let Some(path) = find_in_path(Path::new(QEMU)) {
        return Ok(path);
    }
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let Some(install) = install_commands(&os_release) else {
        bail!("{QEMU} not found and this distribution is unknown to xtask; install QEMU for s390x");
    };
    let prefix = match privilege() {
        Some(prefix) => prefix,
        None => bail!(
            "{QEMU} not found; install it with: {}",
            install
                .iter()
                .map(|c| format!("sudo {}", c.join(" ")))
                .collect::<Vec<_>>()
                .join(" && ")
        ),
    };
    for command in &install {
        let mut words: Vec<&str> = prefix.to_vec();
        words.extend(command.iter().copied());
        eprintln!("xtask: {QEMU} missing, installing: {}", words.join(" "));
        let status = Command::new(words[0])
            .args(&words[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {}", words[0]))?;
        if !status.success() {
            bail!("`{}` failed ({status})", words.join(" "));
        }
    }
    find_in_path(Path::new(QEMU))
        .with_context(|| format!("{QEMU} still missing after installing it"))
}

/// The package-manager commands that install QEMU for s390x on this distribution.
fn install_commands(os_release: &str) -> Option<Vec<Vec<&'static str>>> {
    let ids: Vec<String> = os_release
        .lines()
        .filter_map(|l| l.strip_prefix("ID=").or_else(|| l.strip_prefix("ID_LIKE=")))
        .flat_map(|v| {
            v.trim_matches('"')
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>()
        })
        .collect();
    let has = |id: &str| ids.iter().any(|i| i == id);
    if has("debian") || has("ubuntu") {
        Some(vec![
            vec!["apt-get", "update"],
            vec!["apt-get", "install", "-y", "qemu-system-misc"],
        ])
    } else if has("fedora") || has("rhel") || has("centos") {
        Some(vec![vec!["dnf", "install", "-y", "qemu-system-s390x"]])
    } else {
        None
    }
}

/// Installs Debian/Ubuntu packages with one `apt-get update` and one `apt-get install` (never
/// several package managers at once: they would fight over the dpkg lock).
pub fn install_debian_packages(packages: &[&str]) -> Result<()> {
    if packages.is_empty() {
        return Ok(());
    }
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let debian = install_commands(&os_release)
        .is_some_and(|commands| commands[0].first() == Some(&"apt-get"));
    let install = format!(
        "apt-get install -y --no-install-recommends {}",
        packages.join(" ")
    );
    if !debian {
        bail!(
            "missing: {}; install them with your package manager",
            packages.join(", ")
        );
    }
    let Some(prefix) = privilege() else {
        bail!(
            "missing: {}; install them with: sudo apt-get update && sudo {install}",
            packages.join(", ")
        );
    };
    let mut install_words = vec!["apt-get", "install", "-y", "--no-install-recommends"];
    install_words.extend(packages.iter().copied());
    for command in [vec!["apt-get", "update"], install_words] {
        let mut words: Vec<&str> = prefix.to_vec();
        words.extend(command.iter().copied());
        eprintln!("xtask: installing: {}", words.join(" "));
        let status = Command::new(words[0])
            .args(&words[1..])
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .with_context(|| format!("cannot run {}", words[0]))?;
        if !status.success() {
            bail!("`{}` failed ({status})", words.join(" "));
        }
    }
    Ok(())
}

/// `apt-get update` (as root or with passwordless sudo), for a fresh machine whose package
/// lists are empty. Returns whether it ran and succeeded.
pub fn apt_update() -> bool {
    let Some(prefix) = privilege() else {
        return false;
    };
    let mut words: Vec<&str> = prefix.to_vec();
    words.extend(["apt-get", "update"]);
    eprintln!("xtask: {}", words.join(" "));
    Command::new(words[0])
        .args(&words[1..])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .stdin(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// `Some([])` as root, `Some(["sudo", "-n"])` with passwordless sudo, else `None`.
fn privilege() -> Option<&'static [&'static str]> {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let is_root = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|uids| uids.split_whitespace().nth(1))
        == Some("0");
    if is_root {
        return Some(&[]);
    }
    let sudo_ok = Command::new("sudo")
        .args(["-n", "true"])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    sudo_ok.then_some(&["sudo", "-n"])
}

/// Resolves a program name through `PATH` (a path with a slash is taken as is).
pub fn find_in_path(program: &Path) -> Option<PathBuf> {
    if program.components().count() > 1 {
        return program.is_file().then(|| program.to_path_buf());
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn package_commands_per_distribution() {
        let debian = install_commands("PRETTY_NAME=\"Debian\"\nID=debian\n").unwrap();
        assert_eq!(debian[1], ["apt-get", "install", "-y", "qemu-system-misc"]);
        let mint = install_commands("ID=linuxmint\nID_LIKE=\"ubuntu debian\"\n").unwrap();
        assert_eq!(mint, debian);
        let fedora = install_commands("ID=fedora\n").unwrap();
        assert_eq!(fedora, [["dnf", "install", "-y", "qemu-system-s390x"]]);
        assert!(install_commands("ID=alpine\n").is_none());
    }

    #[test]
    fn path_lookup() {
        assert!(find_in_path(Path::new("sh")).is_some());
        assert!(find_in_path(Path::new("no-such-program-xtask")).is_none());
        assert!(find_in_path(Path::new("/no/such/file")).is_none());
    }
}
