//! Running the in-kernel suites of one configuration so that every test is reported once,
//! even when the kernel panics, hangs or dies.
//!
//! One boot runs the whole plan and names every test of it (the kernel's `# test:`
//! descriptors, in run order). When a boot ends early, the verdict settles the test that was
//! running ([`crate::verdict::Boot::end`]), and the kernel is booted again with the same
//! command line (the same seed, so the same order) and `ktest.skip=<index of the next test
//! without a result>`. Recovery boots happen only after a crash or a hang.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::boot::{self, End, Limits, Place, Sinks};
use crate::matrix::{Config, Emulator};
use crate::results::TestRecord;
use crate::verdict::{BOOT_MARKER, Run, Verdict};

/// The outcome of one configuration.
#[derive(Debug)]
pub struct ConfigRun {
    /// Records and how the run ended.
    pub verdict: Verdict,
    /// How many times the kernel was booted.
    pub boots: usize,
    /// Crashes and hangs that were recovered from (or not).
    pub incidents: Vec<String>,
    /// The raw console log of all boots.
    pub console_log: PathBuf,
}

impl ConfigRun {
    /// The infrastructure or usage error that stopped this configuration, if any.
    pub fn infra_error(&self) -> Option<String> {
        (!self.verdict.infra.is_empty()).then(|| self.verdict.infra.join("; "))
    }
}

/// What to boot.
#[derive(Debug)]
pub struct Target<'a> {
    /// The QEMU binary.
    pub qemu: &'a Path,
    /// The kernel image.
    pub kernel: &'a Path,
    /// The configuration.
    pub config: &'a Config,
    /// Kernel arguments added after the configuration's (e.g. `ktest.filter=`, a seed).
    pub extra_kernel_args: &'a [String],
}

/// Runs every test of one configuration, recovering from crashes and hangs. `on_record` sees
/// every record (also synthesized ones) as soon as it is known.
pub fn run_config(
    target: &Target<'_>,
    log_path: &Path,
    on_record: &mut dyn FnMut(&TestRecord),
) -> Result<ConfigRun> {
    let config = target.config;
    let mut log =
        File::create(log_path).with_context(|| format!("cannot create {}", log_path.display()))?;
    let limits = Limits {
        per_test: Some(config.test_timeout),
        total: None,
    };
    let kernel_args: Vec<String> = config
        .append
        .iter()
        .chain(target.extra_kernel_args)
        .cloned()
        .collect();
    let mut run = Run::new();
    let mut incidents = Vec::new();
    let mut boots = 0;
    let mut lines = 0;
    let mut skip = 0;
    loop {
        boots += 1;
        let mut args = kernel_args.clone();
        if skip > 0 {
            args.push(format!("ktest.skip={skip}"));
        }
        let (program, qemu_args) = match config.emulator {
            Emulator::Qemu => {
                config.machine.check_memory()?;
                (
                    target.qemu.to_path_buf(),
                    config.machine.args(target.kernel, &args),
                )
            }
            Emulator::Hercules => crate::hercules::prepare(
                log_path.parent().unwrap_or(Path::new(".")),
                target.kernel,
                &config.machine,
                &args,
            )?,
        };
        let command = crate::qemu::display_command(&program, &qemu_args);
        writeln!(log, "{BOOT_MARKER}{boots} ({}): {command}", config.name)
            .context("writing the console log")?;
        lines += 1;
        let outcome = boot::boot_at(
            &program,
            &qemu_args,
            limits,
            Sinks {
                log: &mut log,
                echo: boot::Echo::Off,
                on_record,
            },
            Place {
                number: boots,
                lines_before: lines,
            },
        )?;
        lines += outcome.log_lines;
        let refused = outcome
            .infrastructure_error()
            .filter(|_| outcome.qemu.killed_from_outside().is_none());
        let completed = outcome.boot.completed();
        let stop = refused.is_some()
            || completed
            || outcome.end == End::Interrupted
            || outcome.boot.usage_error.is_some()
            || outcome.qemu.killed_from_outside().is_some();
        if !completed && let Some(reason) = outcome.failure_reason() {
            incidents.push(format!("boot {boots}: {reason}"));
        }
        run.add_boot(outcome.boot, &outcome.how);
        if let Some(error) = refused {
            run.push_infra(error);
        }
        if stop {
            break;
        }
        // A crash or a hang: resume after what the verdict settled, if that is progress.
        match run.next_unrecorded() {
            Some((index, _)) if index > skip && boots <= run.plan.len() => skip = index,
            _ => break,
        }
    }
    Ok(ConfigRun {
        verdict: run.finish(),
        boots,
        incidents,
        console_log: log_path.to_path_buf(),
    })
}

#[cfg(test)]
mod injection_tests;
