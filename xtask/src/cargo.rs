//! Calling cargo: building the kernel image, and running the host unit tests.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, bail};

use crate::results::{Outcome, TestId, TestRecord};

/// The kernel's target triple.
pub const KERNEL_TARGET: &str = "s390x-unknown-linux-gnu";

/// The workspace root (the parent of the xtask crate).
pub fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap_or(Path::new("."))
        .to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR`, else `<root>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => project_root().join(dir),
        None => project_root().join("target"),
    }
}

/// Where xtask keeps its logs: `<target>/xtask/<what>`.
pub fn xtask_dir(what: &str) -> Result<PathBuf> {
    let dir = target_dir().join("xtask").join(what);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    Ok(dir)
}

/// Holds `<target>/xtask/<what>.lock` for the life of the returned file, so two xtask
/// commands of the same kind never write into the same logs at once. A second one stops at
/// once with a message instead of waiting.
pub fn lock(what: &str) -> Result<std::fs::File> {
    let dir = target_dir().join("xtask");
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = dir.join(format!("{what}.lock"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "another `cargo xtask {what}` is running in {} (it holds {}); wait for it, or give this one its own CARGO_TARGET_DIR",
            target_dir().display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(error)) => {
            Err(error).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// How `cargo xtask test` hands the kernel it built to the host tests it runs, so they boot
/// that one instead of building their own.
pub const TEST_KERNEL_ENV: &str = "XTASK_TEST_KERNEL";

/// The kernel ELF (debug profile) for tests that boot it: the one `cargo xtask test` built
/// ([`TEST_KERNEL_ENV`]), else built once per test process into a target directory of its
/// own, so the nested cargo never waits for the lock of the `cargo test` running us.
#[cfg(test)]
pub fn test_kernel() -> &'static Path {
    static KERNEL: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    KERNEL.get_or_init(|| {
        if let Some(path) = std::env::var_os(TEST_KERNEL_ENV) {
            return PathBuf::from(path);
        }
        let target = target_dir().join("xtask").join("image-test-kernel");
        let status = cargo()
            .args(["build", "-p", "boot", "--target", KERNEL_TARGET])
            .arg("--target-dir")
            .arg(&target)
            .status()
            .expect("cannot run cargo build for the kernel");
        assert!(status.success(), "kernel build failed");
        target.join(KERNEL_TARGET).join("debug").join("zhint")
    })
}

/// `cargo` (the one running xtask, if any) in the project root.
pub fn cargo() -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(project_root());
    command
}

/// `cargo xtask bench ARGS` in an xtask built without the `bench` feature (what the
/// `cargo xtask` alias builds): runs xtask again with it and ends with its exit status.
#[cfg(not(feature = "bench"))]
pub fn rerun_with_bench(args: &[String]) -> std::process::ExitCode {
    let status = cargo()
        .args([
            "run",
            "--quiet",
            "--package",
            "xtask",
            "--features",
            "bench",
            "--",
            "bench",
        ])
        .args(args)
        .status();
    match status {
        Ok(status) => std::process::ExitCode::from(status.code().map_or(2, |c| c as u8)),
        Err(error) => {
            eprintln!("xtask: error: cannot run cargo for `cargo xtask bench`: {error}");
            std::process::ExitCode::from(2)
        }
    }
}

/// Builds the kernel (`cargo build -p boot --target s390x-unknown-linux-gnu`) and returns the
/// path of the ELF image, read from cargo's artifact messages.
pub fn build_kernel(release: bool) -> Result<PathBuf> {
    build_kernel_profile(if release { "release" } else { "dev" })
}

/// [`build_kernel`] with a cargo profile by name (`dev`, `release`, or `gdb`: the dev
/// profile with full debug info, for a debugger session).
pub fn build_kernel_profile(profile: &str) -> Result<PathBuf> {
    ensure_kernel_target();
    let mut command = cargo();
    command.args([
        "build",
        "-p",
        "boot",
        "--target",
        KERNEL_TARGET,
        "--profile",
        profile,
        "--message-format=json-render-diagnostics",
    ]);
    let output = command
        .stderr(Stdio::inherit())
        .stdin(Stdio::null())
        .output()
        .context("cannot run cargo build")?;
    if !output.status.success() {
        bail!("building the kernel failed ({})", output.status);
    }
    kernel_artifact(&String::from_utf8_lossy(&output.stdout))
        .context("cargo build -p boot produced no executable")
}

/// The executable of the `boot` package among cargo's JSON messages.
fn kernel_artifact(messages: &str) -> Option<PathBuf> {
    messages
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|m| m["reason"] == "compiler-artifact")
        .filter(|m| {
            m["package_id"]
                .as_str()
                .is_some_and(|id| id.contains("/boot#") || id.contains("boot "))
        })
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
}

/// Adds the s390x target with rustup when it is missing (rust-toolchain.toml normally makes
/// rustup install it on first use). Without rustup, the build reports what is wrong.
pub fn ensure_kernel_target() {
    let Ok(output) = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .current_dir(project_root())
        .output()
    else {
        return;
    };
    if output.status.success()
        && !String::from_utf8_lossy(&output.stdout)
            .lines()
            .any(|l| l.trim() == KERNEL_TARGET)
    {
        eprintln!("xtask: adding the Rust target: rustup target add {KERNEL_TARGET}");
        let _ = Command::new("rustup")
            .args(["target", "add", KERNEL_TARGET])
            .current_dir(project_root())
            .status();
    }
}

/// Runs the host unit tests (`cargo test --no-fail-fast` over the workspace's default members,
/// which are exactly the host-testable crates) and returns one record per test. The tests
/// that boot a kernel boot `kernel` (the dev kernel), when given. The raw output goes to
/// `log`; a build failure becomes one failed record, not an infrastructure error.
pub fn host_tests(log: &Path, kernel: Option<&Path>) -> Result<Vec<TestRecord>> {
    let (reader, writer) = std::io::pipe().context("pipe for cargo test")?;
    let mut command = cargo();
    if let Some(kernel) = kernel {
        command.env(TEST_KERNEL_ENV, kernel);
    }
    command
        .args(["test", "--no-fail-fast"])
        .stdin(Stdio::null())
        .stdout(writer.try_clone().context("pipe for cargo test")?)
        .stderr(writer);
    let mut child = command.spawn().context("cannot run cargo test")?;
    drop(command);
    let mut log_file =
        std::fs::File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut parser = LibtestParser::default();
    for line in BufReader::new(reader).split(b'\n') {
        let line = line.context("reading cargo test output")?;
        log_file.write_all(&line)?;
        log_file.write_all(b"\n")?;
        parser.line(&String::from_utf8_lossy(&line));
        if crate::interrupt::requested() {
            let _ = child.kill();
            let _ = child.wait();
            return Err(crate::interrupt::Interrupted.into());
        }
    }
    let status = child.wait().context("waiting for cargo test")?;
    let tail = std::mem::take(&mut parser.tail);
    let mut records = parser.finish();
    if !status.success() && !records.iter().any(|r| r.outcome.is_failure()) {
        let mut record = TestRecord::synthesized(
            TestId::new("host", "cargo_test"),
            Outcome::Error,
            format!(
                "cargo test failed ({status}) without a failing test; see {}",
                log.display()
            ),
        );
        record.diagnostics = tail;
        records.push(record);
    }
    Ok(records)
}

/// Reads libtest's human output (`test name ... ok`) across all test binaries.
#[derive(Debug, Default)]
struct LibtestParser {
    suite: String,
    records: Vec<TestRecord>,
    failure_output: Option<(String, Vec<String>)>,
    tail: Vec<String>,
}

impl LibtestParser {
    fn line(&mut self, line: &str) {
        let line = line.trim_end();
        self.tail.push(line.to_string());
        if self.tail.len() > 20 {
            self.tail.remove(0);
        }
        if let Some(rest) = line.trim_start().strip_prefix("Running ") {
            self.flush_failure_output();
            self.suite = format!("host::{}", binary_name(rest));
        } else if let Some(krate) = line.trim_start().strip_prefix("Doc-tests ") {
            self.flush_failure_output();
            self.suite = format!("host::{}::doc", krate.trim());
        } else if let Some(rest) = line.strip_prefix("test ")
            && let Some((name, verdict)) = rest.rsplit_once(" ... ")
        {
            let (outcome, reason) = match verdict {
                "ok" => (Outcome::Pass, ""),
                "FAILED" => (Outcome::Fail, "failed"),
                v if v.starts_with("ignored") => (
                    Outcome::Skip,
                    v.strip_prefix("ignored, ").unwrap_or("ignored"),
                ),
                _ => return,
            };
            let mut record = TestRecord::synthesized(
                TestId::new(self.suite.clone(), name.trim()),
                outcome,
                reason.to_string(),
            );
            record.duration = Some(Duration::ZERO);
            self.records.push(record);
        } else if let Some(name) = line
            .strip_prefix("---- ")
            .and_then(|l| l.strip_suffix(" stdout ----"))
        {
            self.flush_failure_output();
            self.failure_output = Some((name.to_string(), Vec::new()));
        } else if line == "failures:" || line.starts_with("test result:") {
            self.flush_failure_output();
        } else if let Some((_, output)) = &mut self.failure_output
            && output.len() < 200
        {
            output.push(line.to_string());
        }
    }

    fn flush_failure_output(&mut self) {
        if let Some((name, output)) = self.failure_output.take() {
            let suite = &self.suite;
            if let Some(record) = self
                .records
                .iter_mut()
                .rev()
                .find(|r| r.id.name == name && &r.id.suite == suite)
            {
                record.diagnostics = output.into_iter().filter(|l| !l.is_empty()).collect();
                if let Some(panic) = record
                    .diagnostics
                    .iter()
                    .find(|l| l.contains("panicked at"))
                {
                    record.reason = panic.clone();
                }
            }
        }
    }

    fn finish(mut self) -> Vec<TestRecord> {
        self.flush_failure_output();
        self.records
    }
}

/// `unittests src/lib.rs (target/debug/deps/sclp-0123abcd)` -> `sclp`.
fn binary_name(running: &str) -> String {
    let path = running
        .rsplit_once('(')
        .map_or(running, |(_, p)| p.trim_end_matches(')'));
    let file = path.rsplit('/').next().unwrap_or(path);
    match file.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
        _ => file.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn finds_the_kernel_executable_among_artifacts() {
        let messages = r#"{"reason":"compiler-artifact","package_id":"path+file:///w/kernel#0.1.0","executable":null}
{"reason":"compiler-artifact","package_id":"path+file:///w/boot#0.1.0","executable":"/t/s390x-unknown-linux-gnu/debug/zhint"}
{"reason":"build-finished","success":true}"#;
        assert_eq!(
            kernel_artifact(messages),
            Some(PathBuf::from("/t/s390x-unknown-linux-gnu/debug/zhint"))
        );
        assert_eq!(
            kernel_artifact("{\"reason\":\"build-finished\"}\nnot json"),
            None
        );
    }

    #[test]
    fn parses_libtest_output_of_several_binaries() {
        let output = "\
   Compiling sclp v0.1.0
     Running unittests src/lib.rs (target/debug/deps/sclp-0f1e2d3c4b5a6978)

running 3 tests
test console::tests::writes ... ok
test console::tests::busy ... FAILED
test console::tests::slow ... ignored, needs hardware

failures:

---- console::tests::busy stdout ----

thread 'console::tests::busy' panicked at sclp/src/console.rs:10:5:
assertion failed: ok

failures:
    console::tests::busy

test result: FAILED. 1 passed; 1 failed; 1 ignored; 0 measured; 0 filtered out
     Running unittests src/main.rs (target/debug/deps/xtask-aabbccddeeff0011)
test ktap::tests::x ... ok
   Doc-tests kernel
test kernel/src/lib.rs - foo (line 3) ... ok
";
        let mut parser = LibtestParser::default();
        output.lines().for_each(|l| parser.line(l));
        let records = parser.finish();
        let summary: Vec<_> = records
            .iter()
            .map(|r| (r.id.to_string(), r.outcome))
            .collect();
        assert_eq!(
            summary,
            [
                (
                    "host::sclp.console::tests::writes".to_string(),
                    Outcome::Pass
                ),
                ("host::sclp.console::tests::busy".to_string(), Outcome::Fail),
                ("host::sclp.console::tests::slow".to_string(), Outcome::Skip),
                ("host::xtask.ktap::tests::x".to_string(), Outcome::Pass),
                (
                    "host::kernel::doc.kernel/src/lib.rs - foo (line 3)".to_string(),
                    Outcome::Pass
                ),
            ]
        );
        assert_eq!(
            records[1].reason,
            "thread 'console::tests::busy' panicked at sclp/src/console.rs:10:5:"
        );
        assert_eq!(records[1].diagnostics.len(), 2);
        assert_eq!(records[2].reason, "needs hardware");
    }

    #[test]
    fn a_second_command_of_the_same_kind_stops_with_a_clear_message() {
        let first = lock("lock-selftest").unwrap();
        let error = lock("lock-selftest").unwrap_err().to_string();
        assert!(
            error.contains("another `cargo xtask lock-selftest` is running"),
            "{error}"
        );
        drop(first);
        assert!(lock("lock-selftest").is_ok(), "released with the first");
    }

    /// The proc-macro support crates (`syn` and what it builds on) of a package's build
    /// graph with the features cargo resolves for them: `name version` to features.
    fn macro_support_features(extra: &[&str]) -> BTreeMap<String, String> {
        let output = cargo()
            .args([
                "tree",
                "--quiet",
                "--offline",
                "--edges",
                "normal,build",
                "--prefix",
                "none",
            ])
            .args(["--format", "{p} [{f}]"])
            .args(extra)
            .output()
            .expect("cargo tree runs");
        assert!(output.status.success(), "{output:?}");
        String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter(|l| {
                ["syn ", "proc-macro2 ", "quote ", "unicode-ident "]
                    .iter()
                    .any(|c| l.starts_with(c))
            })
            .filter_map(|l| {
                let (package, features) = l.trim_end_matches(" (*)").split_once(" [")?;
                Some((
                    package.to_owned(),
                    features.trim_end_matches(']').to_owned(),
                ))
            })
            .collect()
    }

    /// A clean checkout's `cargo xtask run` builds xtask, then the kernel. The kernel
    /// build's proc macros run on the host, and cargo reuses the `syn` (and the rest of
    /// the proc-macro support) that the xtask build compiled only if its features are the
    /// same; `boot`'s build dependency on `syn` keeps them so.
    #[test]
    fn the_kernel_build_reuses_the_proc_macro_crates_xtask_built() {
        let xtask = macro_support_features(&["-p", "xtask", "--no-default-features"]);
        let kernel = macro_support_features(&["-p", "boot", "--target", KERNEL_TARGET]);
        assert!(xtask.keys().any(|p| p.starts_with("syn ")), "{xtask:?}");
        for (package, features) in &kernel {
            if let Some(built) = xtask.get(package) {
                assert_eq!(
                    features, built,
                    "the kernel build compiles {package} again with other features"
                );
            }
        }
    }

    #[test]
    fn binary_names_lose_their_hash() {
        assert_eq!(
            binary_name("tests/ktap.rs (target/debug/deps/ktap-0123456789abcdef)"),
            "ktap"
        );
        assert_eq!(
            binary_name("unittests src/lib.rs (target/debug/deps/my-crate-00ff)"),
            "my-crate"
        );
    }
}
