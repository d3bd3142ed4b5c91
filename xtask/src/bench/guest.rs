//! One boot of a benchmark suite (`bench::*`): every benchmark test must pass, since a
//! skipped or failed one prints no numbers or wrong ones, and its `# bench:` lines are
//! returned. The console goes to a log file, kept for when a run goes wrong.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result, bail};

use super::line::{self, BenchLine};
use crate::boot::{self, Limits};
use crate::results::{Outcome, TestRecord};

/// Boots QEMU with `args`, writes the console to `log`, and returns the benchmark lines.
pub fn boot_for_lines(
    qemu: &Path,
    args: &[String],
    limits: Limits,
    log: &Path,
) -> Result<Vec<BenchLine>> {
    let mut sink = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let outcome = boot::boot_quietly(qemu, args, limits, &mut sink)?;
    let see_log = || format!("see {}", log.display());
    if let Some(error) = outcome.infrastructure_error() {
        bail!("{error}; {}", see_log());
    }
    if let Some(reason) = outcome.failure_reason() {
        bail!(
            "the benchmark boot did not end cleanly: {reason}; {}",
            see_log()
        );
    }
    check_all_ran(&outcome.boot.records).with_context(see_log)?;
    line::collect(&outcome.boot.records)
}

/// Errors unless at least one test ran and every test passed.
fn check_all_ran(records: &[TestRecord]) -> Result<()> {
    if records.is_empty() {
        bail!("no benchmark ran (is `ktest.bench` on the command line, and the filter right?)");
    }
    for record in records {
        match record.outcome {
            Outcome::Pass => {}
            Outcome::Skip => bail!("{} was skipped: {}", record.id, record.message()),
            other => bail!(
                "{} ended {}: {}",
                record.id,
                other.label(),
                record.message()
            ),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::TestId;

    #[test]
    fn only_all_passed_counts() {
        let record = |outcome, reason: &str| {
            TestRecord::synthesized(TestId::new("bench::mm", "mlock"), outcome, reason)
        };
        assert!(check_all_ran(&[record(Outcome::Pass, "")]).is_ok());
        let error = check_all_ran(&[]).unwrap_err().to_string();
        assert!(error.contains("no benchmark ran"), "{error}");
        let error = check_all_ran(&[record(Outcome::Pass, ""), record(Outcome::Skip, "pool")])
            .unwrap_err()
            .to_string();
        assert_eq!(error, "bench::mm.mlock was skipped: pool");
        let error = check_all_ran(&[record(Outcome::Fail, "mlock of 1000 pages")])
            .unwrap_err()
            .to_string();
        assert_eq!(error, "bench::mm.mlock ended FAIL: mlock of 1000 pages");
    }

    #[test]
    fn a_clean_boot_returns_its_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("console.log");
        // A stand-in for QEMU that prints what the kernel would.
        let script = "printf 'KTAP version 1\\n1..1\\n    KTAP version 1\\n    # Subtest: bench::mm\\n    1..1\\n    # bench: op=reclaim pages=1000 ns_per_op=5 essa_per_op=1.00\\n    ok 1 t\\n# bench::mm: pass:1 fail:0 skip:0 total:1\\nok 1 bench::mm\\n# Totals: pass:1 fail:0 skip:0 total:1\\nEXIT: STATUS=1\\n'";
        let limits = Limits::default();
        let lines =
            boot_for_lines(Path::new("sh"), &["-c".into(), script.into()], limits, &log).unwrap();
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].integer("ns_per_op").unwrap(), 5);
        assert!(
            std::fs::read_to_string(&log)
                .unwrap()
                .contains("op=reclaim")
        );
        let crash = "printf 'KTAP version 1\\n1..1\\n'";
        let error = boot_for_lines(Path::new("sh"), &["-c".into(), crash.into()], limits, &log)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("did not end cleanly") && error.contains("see "),
            "{error}"
        );
    }
}
