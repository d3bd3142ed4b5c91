//! One boot of the kernel: start QEMU, tee the console to a log, parse KTAP as it arrives, and
//! stop on exit, on a hang (per-test idle limit) or at an overall deadline.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::ktap::{Event, Parser};
use crate::qemu::{Next, QemuExit, RunningQemu};
use crate::results::{BootCollector, TestRecord};

/// How long QEMU may take to exit after the kernel printed `EXIT:` (or after it closed its
/// console) before xtask kills it.
pub const EXIT_GRACE: Duration = Duration::from_secs(5);

/// Time limits of one boot.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Longest time without a new test result (a hung test).
    pub per_test: Option<Duration>,
    /// Longest time for the whole boot.
    pub total: Option<Duration>,
}

/// Why the boot ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// QEMU exited (or was stopped after `EXIT:` and the grace period).
    Exited,
    /// No test result for `per_test`: xtask killed QEMU.
    TestTimeout(Duration),
    /// The boot took longer than `total`: xtask killed QEMU.
    TotalTimeout(Duration),
}

/// Everything one boot produced.
#[derive(Debug)]
pub struct BootOutcome {
    /// Parsed results and markers.
    pub collector: BootCollector,
    /// Why it ended.
    pub end: End,
    /// How QEMU ended.
    pub qemu: QemuExit,
    /// Whether the console printed anything at all.
    pub printed_anything: bool,
    /// Wall-clock time from start to QEMU's exit.
    pub elapsed: Duration,
}

/// Where console bytes go besides the parser.
pub struct Sinks<'a> {
    /// The raw console log (every byte, unchanged).
    pub log: &'a mut File,
    /// Copy the console live to stdout (`cargo xtask run`).
    pub echo: bool,
    /// Called for every finished test.
    pub on_record: &'a mut dyn FnMut(&TestRecord),
}

impl std::fmt::Debug for Sinks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sinks")
            .field("echo", &self.echo)
            .finish_non_exhaustive()
    }
}

/// [`boot`] with the console going only to `log` (no echo, no per-test callback): the
/// benchmarks' way to boot, which read the outcome's collector afterwards.
pub fn boot_quietly(
    qemu_program: &Path,
    qemu_args: &[String],
    limits: Limits,
    log: &mut File,
) -> Result<BootOutcome> {
    boot(
        qemu_program,
        qemu_args,
        limits,
        Sinks {
            log,
            echo: false,
            on_record: &mut |_| {},
        },
    )
}

/// Boots once and returns what happened. Errors are infrastructure errors (QEMU could not be
/// started, the log could not be written) or Ctrl-C; QEMU is killed on every path.
pub fn boot(
    qemu_program: &Path,
    qemu_args: &[String],
    limits: Limits,
    sinks: Sinks<'_>,
) -> Result<BootOutcome> {
    let started = Instant::now();
    let mut qemu = RunningQemu::spawn(qemu_program, qemu_args, sinks.echo)?;
    let mut parser = Parser::new();
    let mut collector = BootCollector::new();
    let mut last_progress = started;
    let mut exit_seen_at: Option<Instant> = None;
    let mut printed_anything = false;
    let mut stdout = std::io::stdout();
    let end = loop {
        let now = Instant::now();
        let mut wait = Duration::from_secs(3600);
        if let Some(limit) = limits.per_test {
            wait = wait.min((last_progress + limit).saturating_duration_since(now));
        }
        if let Some(limit) = limits.total {
            wait = wait.min((started + limit).saturating_duration_since(now));
        }
        if let Some(at) = exit_seen_at {
            wait = wait.min((at + EXIT_GRACE).saturating_duration_since(now));
        }
        match qemu.next(wait)? {
            Next::Data(bytes) => {
                printed_anything = true;
                sinks
                    .log
                    .write_all(&bytes)
                    .context("writing the console log")?;
                if sinks.echo {
                    let _ = stdout.write_all(&bytes).and_then(|()| stdout.flush());
                }
                for event in parser.push(&bytes) {
                    observe(
                        &mut collector,
                        &event,
                        &mut last_progress,
                        &mut exit_seen_at,
                        sinks.on_record,
                    );
                }
            }
            Next::Closed => break End::Exited,
            Next::Idle => {
                let now = Instant::now();
                if exit_seen_at.is_some_and(|at| now >= at + EXIT_GRACE) {
                    // The kernel said it is done but QEMU keeps running: stop it.
                    qemu.kill();
                    break End::Exited;
                }
                if let Some(limit) = limits.total.filter(|&l| now >= started + l) {
                    break End::TotalTimeout(limit);
                }
                if let Some(limit) = limits.per_test.filter(|&l| now >= last_progress + l) {
                    break End::TestTimeout(limit);
                }
            }
        }
    };
    if let Some(event) = parser.finish() {
        observe(
            &mut collector,
            &event,
            &mut last_progress,
            &mut exit_seen_at,
            sinks.on_record,
        );
    }
    if end != End::Exited {
        qemu.kill();
    }
    let qemu = qemu.finish(EXIT_GRACE)?;
    sinks.log.flush().context("writing the console log")?;
    Ok(BootOutcome {
        collector,
        end,
        qemu,
        printed_anything,
        elapsed: started.elapsed(),
    })
}

fn observe(
    collector: &mut BootCollector,
    event: &Event,
    last_progress: &mut Instant,
    exit_seen_at: &mut Option<Instant>,
    on_record: &mut dyn FnMut(&TestRecord),
) {
    if matches!(event, Event::Exit { .. }) {
        *exit_seen_at = Some(Instant::now());
    }
    if let Some(record) = collector.observe(event) {
        *last_progress = Instant::now();
        on_record(record);
    }
}

impl BootOutcome {
    /// Why the kernel did not finish, in one line (`None` when it printed `EXIT:` without
    /// `Bail out!` and xtask did not have to kill QEMU).
    pub fn failure_reason(&self) -> Option<String> {
        match self.end {
            End::TestTimeout(limit) => {
                return Some(format!("timeout: no test result for {} s", limit.as_secs()));
            }
            End::TotalTimeout(limit) => {
                return Some(format!("timeout after {} s", limit.as_secs()));
            }
            End::Exited => {}
        }
        if self.collector.completed() {
            return None;
        }
        if let Some(reason) = self.collector.crash_reason() {
            return Some(reason);
        }
        Some(match self.qemu.status.code() {
            Some(1) => {
                "kernel stopped in a disabled wait (guest panic) without EXIT: line".to_string()
            }
            Some(0) => "QEMU exited without EXIT: line".to_string(),
            _ => format!("QEMU exited ({}) without EXIT: line", self.qemu.status),
        })
    }

    /// An infrastructure problem: QEMU killed from outside, or QEMU refused to start the
    /// kernel (an error on stderr and no console output).
    pub fn infrastructure_error(&self) -> Option<String> {
        if let Some(signal) = self.qemu.killed_from_outside() {
            return Some(format!("QEMU was killed by signal {signal} (not by xtask)"));
        }
        let failed = !self.qemu.status.success() && !self.qemu.killed_by_xtask;
        if failed && !self.printed_anything {
            let detail = self.qemu.last_stderr_line().unwrap_or("no output");
            return Some(format!("QEMU failed ({}): {detail}", self.qemu.status));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_qemu(script: &str, limits: Limits) -> (BootOutcome, Vec<String>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("console.log");
        let mut log = File::create(&log_path).unwrap();
        let mut seen = Vec::new();
        let outcome = boot(
            Path::new("sh"),
            &["-c".into(), script.into()],
            limits,
            Sinks {
                log: &mut log,
                echo: false,
                on_record: &mut |r| seen.push(r.id.to_string()),
            },
        )
        .unwrap();
        (outcome, seen, std::fs::read(log_path).unwrap())
    }

    #[test]
    fn a_clean_run_is_complete_and_logged_byte_for_byte() {
        let script = r"printf 'noise\r\n    # Subtest: s\r\n    ok 1 a\r\n    ok 2 b\r\n# Totals: pass:2 fail:0 skip:0 total:2\r\nEXIT: STATUS=1\r\n'";
        let (outcome, seen, log) = fake_qemu(script, Limits::default());
        assert_eq!(seen, ["s.a", "s.b"]);
        assert_eq!(outcome.end, End::Exited);
        assert_eq!(outcome.failure_reason(), None);
        assert_eq!(outcome.infrastructure_error(), None);
        assert!(log.starts_with(b"noise\r\n    # Subtest"));
    }

    #[test]
    fn a_hung_test_is_killed_after_the_per_test_limit() {
        let script = "printf '    # Subtest: s\\n    ok 1 a\\n'; exec sleep 30";
        let limits = Limits {
            per_test: Some(Duration::from_millis(300)),
            total: None,
        };
        let started = Instant::now();
        let (outcome, seen, _) = fake_qemu(script, limits);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(seen, ["s.a"]);
        assert_eq!(outcome.end, End::TestTimeout(Duration::from_millis(300)));
        assert!(outcome.qemu.killed_by_xtask);
        assert_eq!(
            outcome.infrastructure_error(),
            None,
            "our own kill is not an infrastructure error"
        );
    }

    #[test]
    fn the_total_limit_applies_even_with_output() {
        let script = "while true; do echo tick; sleep 0.05; done";
        let limits = Limits {
            per_test: None,
            total: Some(Duration::from_millis(400)),
        };
        let (outcome, _, _) = fake_qemu(script, limits);
        assert_eq!(outcome.end, End::TotalTimeout(Duration::from_millis(400)));
        assert_eq!(
            outcome.failure_reason().as_deref(),
            Some("timeout after 0 s")
        );
    }

    #[test]
    fn crash_reasons() {
        let (panicked, _, _) = fake_qemu(
            "printf '    # Subtest: s\\n    # panic: boom at x.rs:1\\n    not ok 1 t # ERROR panic: boom\\nBail out! panic\\nEXIT: STATUS=3\\n'; exit 1",
            Limits::default(),
        );
        assert_eq!(
            panicked.failure_reason().as_deref(),
            Some("kernel panicked: boom at x.rs:1")
        );
        let (silent, _, _) = fake_qemu("echo partial; exit 0", Limits::default());
        assert_eq!(
            silent.failure_reason().as_deref(),
            Some("QEMU exited without EXIT: line")
        );
        let (wait, _, _) = fake_qemu("echo partial; exit 1", Limits::default());
        assert!(wait.failure_reason().unwrap().contains("disabled wait"));
        let (refused, _, _) = fake_qemu(
            "echo 'qemu: could not load kernel' >&2; exit 1",
            Limits::default(),
        );
        assert_eq!(
            refused.infrastructure_error().as_deref(),
            Some("QEMU failed (exit status: 1): qemu: could not load kernel")
        );
    }

    #[test]
    fn exit_line_then_no_shutdown_is_cut_after_the_grace_period() {
        let script =
            "printf '# Totals: pass:0 fail:0 skip:0 total:0\\nEXIT: STATUS=1\\n'; exec sleep 30";
        let started = Instant::now();
        let (outcome, _, _) = fake_qemu(script, Limits::default());
        assert!(started.elapsed() >= EXIT_GRACE && started.elapsed() < EXIT_GRACE * 3);
        assert_eq!(outcome.end, End::Exited);
        assert_eq!(outcome.failure_reason(), None);
    }
}
