//! Provisioning: everything building and testing need, installed once, before any test runs
//! (`cargo xtask provision`, and the first thing `cargo xtask test` does). Host tests never
//! install anything: they find what is here or fail with the command that provides it.
//!
//! Besides the s390x Rust target, QEMU and Hercules (the `hercules` matrix entry), the host tests check xtask's output with the
//! consumers CI systems use, taken from package registries at pinned versions:
//!
//! | reference | from | checks |
//! |---|---|---|
//! | node `tap-parser` (strict) | npm, [`TAP_PARSER`] | the TAP 14 report |
//! | Linux's `kunit_parser.py` | Debian's [`KUNIT_SOURCE`] (the kernel source tarball; only the two parser files are kept) | every boot's KTAP |
//! | Jenkins xunit `junit-10.xsd` with `xmllint` | PyPI's pytest sdist [`JUNIT_XSD_SDIST`] (which ships the schema for its own tests), checked against [`JUNIT_XSD_SHA256`] | the JUnit report |

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, Result, bail};

use crate::{cargo, install};

/// The strict TAP 14 consumer.
pub const TAP_PARSER: &str = "tap-parser@18.3.4";
/// The Debian package with Linux's source, whose `tools/testing/kunit/` holds the parser
/// (Linux 6.12, the LTS kernel Debian 12 ships as source).
pub const KUNIT_SOURCE: &str = "linux-source-6.12";
/// The pytest source distribution that carries `testing/example_scripts/junit-10.xsd`.
pub const JUNIT_XSD_SDIST: &str = "pytest==8.3.4";
const JUNIT_XSD_IN_SDIST: &str = "pytest-8.3.4/testing/example_scripts/junit-10.xsd";
/// SHA-256 of the schema (the Jenkins xunit plugin's JUnit schema, as pytest ships it).
pub const JUNIT_XSD_SHA256: &str =
    "a1a816f58d1bf95ebabf371994df0b9246dee66ea9572fbec4f9296f1b2c0ff6";

/// Where the reference consumers live: `<target>/reference`.
pub fn reference_dir() -> PathBuf {
    cargo::target_dir().join("reference")
}

/// The `tap-parser` node module.
pub fn tap_parser_module() -> PathBuf {
    reference_dir().join("tap-consumer/node_modules/tap-parser")
}

/// The folder with `kunit_parser.py` and `kunit_printer.py`.
pub fn kunit_dir() -> PathBuf {
    reference_dir().join("kunit")
}

/// The JUnit schema.
pub fn junit_xsd() -> PathBuf {
    reference_dir().join("junit-10.xsd")
}

/// The command that provides what a host test found missing.
#[cfg(test)]
pub const HOW: &str = "`cargo xtask provision` installs it (`cargo xtask test` does that first)";

fn have(program: &str) -> bool {
    install::find_in_path(Path::new(program)).is_some()
}

fn python_has_pip() -> bool {
    Command::new("python3")
        .args(["-m", "pip", "--version"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Installs what is missing. With `references`, also the reference consumers of the host
/// tests.
pub fn provision(references: bool) -> Result<()> {
    cargo::ensure_kernel_target();
    let mut packages = Vec::new();
    if std::env::var_os("QEMU").is_none() && !have(install::QEMU) {
        packages.push("qemu-system-misc");
    }
    // The `hercules` matrix entry (group `default`) boots on Hercules.
    if !have(crate::hercules::PROGRAM) {
        packages.push(crate::hercules::PROGRAM);
    }
    if references {
        for (program, package) in [
            ("node", "nodejs"),
            ("npm", "npm"),
            ("python3", "python3"),
            ("xmllint", "libxml2-utils"),
            ("dpkg-deb", "dpkg"),
            ("xz", "xz-utils"),
        ] {
            if !have(program) {
                packages.push(package);
            }
        }
        if !junit_xsd().exists() && (!have("python3") || !python_has_pip()) {
            packages.push("python3-pip");
        }
    }
    if !packages.is_empty() {
        if packages == ["qemu-system-misc"] {
            install::ensure_qemu()?;
        } else {
            install::install_debian_packages(&packages)?;
        }
    }
    if references {
        std::fs::create_dir_all(reference_dir())
            .with_context(|| format!("cannot create {}", reference_dir().display()))?;
        ensure_tap_parser()?;
        ensure_kunit_parser()?;
        ensure_junit_xsd()?;
    }
    Ok(())
}

fn run(command: &mut Command, what: &str) -> Result<()> {
    let status = command
        .stdin(Stdio::null())
        .status()
        .with_context(|| format!("cannot run {what}"))?;
    if !status.success() {
        bail!("{what} failed ({status})");
    }
    Ok(())
}

fn ensure_tap_parser() -> Result<()> {
    if tap_parser_module().join("package.json").exists() {
        return Ok(());
    }
    eprintln!("xtask: provisioning the TAP 14 reference consumer: npm install {TAP_PARSER}");
    run(
        Command::new("npm")
            .args(["install", "--silent", "--no-audit", "--no-fund", "--prefix"])
            .arg(reference_dir().join("tap-consumer"))
            .arg(TAP_PARSER),
        "npm install",
    )
}

fn ensure_kunit_parser() -> Result<()> {
    let dir = kunit_dir();
    if dir.join("kunit_parser.py").exists() && dir.join("kunit_printer.py").exists() {
        return Ok(());
    }
    eprintln!(
        "xtask: provisioning Linux's kunit_parser.py from Debian's {KUNIT_SOURCE} (about 150 MB, once)"
    );
    let work = reference_dir().join("download");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;
    let download = || {
        run(
            Command::new("apt-get")
                .args(["download", KUNIT_SOURCE])
                .current_dir(&work),
            &format!("apt-get download {KUNIT_SOURCE}"),
        )
    };
    // A fresh machine's package lists may not know the package yet.
    if download().is_err() && (!install::apt_update() || download().is_err()) {
        bail!(
            "cannot download {KUNIT_SOURCE}; run `sudo apt-get update`, then `cargo xtask provision`"
        );
    }
    let deb = std::fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|e| e == "deb"))
        .context("apt-get download left no .deb")?;
    let tarball = format!("./usr/src/{KUNIT_SOURCE}.tar.xz");
    let inside = format!("{KUNIT_SOURCE}/tools/testing/kunit");
    let script = format!(
        "set -o pipefail; dpkg-deb --fsys-tarfile \"$1\" | tar -xO {tarball} | xz -dc | tar -x -C \"$2\" {inside}/kunit_parser.py {inside}/kunit_printer.py"
    );
    run(
        Command::new("bash")
            .args(["-c", &script, "extract"])
            .arg(&deb)
            .arg(&work),
        "extracting kunit_parser.py",
    )?;
    std::fs::create_dir_all(&dir)?;
    for file in ["kunit_parser.py", "kunit_printer.py"] {
        std::fs::rename(work.join(&inside).join(file), dir.join(file))
            .with_context(|| format!("cannot move {file}"))?;
    }
    let version = deb
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    std::fs::write(dir.join("SOURCE"), format!("{version}\n"))?;
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

fn ensure_junit_xsd() -> Result<()> {
    let xsd = junit_xsd();
    if xsd.exists() {
        return check_sha256(&xsd);
    }
    eprintln!("xtask: provisioning the JUnit schema junit-10.xsd from PyPI's {JUNIT_XSD_SDIST}");
    let work = reference_dir().join("download-xsd");
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work)?;
    run(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--quiet",
                "--no-deps",
                "--no-binary",
                ":all:",
            ])
            .arg(JUNIT_XSD_SDIST)
            .arg("-d")
            .arg(&work),
        &format!("pip download {JUNIT_XSD_SDIST}"),
    )?;
    let sdist = std::fs::read_dir(&work)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.to_string_lossy().ends_with(".tar.gz"))
        .context("pip download left no source archive")?;
    run(
        Command::new("tar")
            .arg("-xzf")
            .arg(&sdist)
            .arg("-C")
            .arg(&work)
            .arg(JUNIT_XSD_IN_SDIST),
        "extracting junit-10.xsd",
    )?;
    std::fs::rename(work.join(JUNIT_XSD_IN_SDIST), &xsd)?;
    let _ = std::fs::remove_dir_all(&work);
    check_sha256(&xsd)
}

fn check_sha256(path: &Path) -> Result<()> {
    let output = Command::new("sha256sum")
        .arg(path)
        .output()
        .context("cannot run sha256sum")?;
    let text = String::from_utf8_lossy(&output.stdout);
    if text.split_whitespace().next() != Some(JUNIT_XSD_SHA256) {
        let _ = std::fs::remove_file(path);
        bail!(
            "{} does not have the expected SHA-256 {JUNIT_XSD_SHA256}; removed it",
            path.display()
        );
    }
    Ok(())
}
