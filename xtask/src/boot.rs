//! One boot of the kernel: start QEMU, tee the console to a log, judge KTAP as it arrives
//! ([`crate::verdict::Boot`]), and stop on exit, on a hang (per-test idle limit), at an
//! overall deadline or on Ctrl-C. What ended the boot goes into the log as an `xtask:` line,
//! so `cargo xtask parse` of the log reaches the same verdict.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::interrupt::Interrupted;
use crate::ktap::{Lines, Parser};
use crate::qemu::{Next, QemuExit, RunningQemu};
use crate::results::TestRecord;
use crate::verdict::{self, Boot, INTERRUPTED_MARKER, KILLED_MARKER, TIMEOUT_MARKER};

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
    /// The user pressed Ctrl-C: xtask killed QEMU.
    Interrupted,
}

/// Everything one boot produced.
#[derive(Debug)]
pub struct BootOutcome {
    /// The boot as the verdict sees it: results, markers, problems (already ended).
    pub boot: Boot,
    /// Why it ended.
    pub end: End,
    /// How it ended, in the verdict's terms.
    pub how: verdict::End,
    /// How QEMU ended.
    pub qemu: QemuExit,
    /// Whether the console printed anything at all.
    pub printed_anything: bool,
    /// Wall-clock time from start to QEMU's exit.
    pub elapsed: Duration,
    /// Lines this boot added to the log (console and `xtask:` lines).
    pub log_lines: u64,
}

/// Where console bytes go besides the parser.
pub struct Sinks<'a> {
    /// The raw console log (every byte, unchanged).
    pub log: &'a mut File,
    /// What of the console goes live to stdout (`cargo xtask run`).
    pub echo: Echo,
    /// Called for every finished test.
    pub on_record: &'a mut dyn FnMut(&TestRecord),
}

/// What [`boot_at`] copies live to stdout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Echo {
    /// Nothing (the log and the callback have it all).
    Off,
    /// Every byte as it comes (`cargo xtask run --raw`), and QEMU's stderr.
    Raw,
    /// The kernel's banner, the lines before its KTAP document, and QEMU's stderr; the
    /// results come through [`Sinks::on_record`].
    Banner,
}

/// The line to show while the banner lasts ([`Echo::Banner`]): every line before the
/// KTAP document's first (`KTAP version`), which ends it.
fn banner_line<'l>(in_banner: &mut bool, line: &'l [u8]) -> Option<&'l [u8]> {
    *in_banner &= !line.starts_with(b"KTAP version");
    in_banner.then_some(line)
}

impl std::fmt::Debug for Sinks<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sinks")
            .field("echo", &self.echo)
            .finish_non_exhaustive()
    }
}

/// Where in its run a boot stands, for the verdict's line numbers and boot numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// 1-based number of the boot in its run.
    pub number: usize,
    /// Lines already in the log before this boot's console output.
    pub lines_before: u64,
}

impl Default for Place {
    fn default() -> Self {
        Self {
            number: 1,
            lines_before: 0,
        }
    }
}

/// [`boot`] with the console going only to `log` (no echo, no per-test callback): the
/// benchmarks' way to boot, which read the outcome's boot afterwards.
#[cfg(feature = "bench")]
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
            echo: Echo::Off,
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
    let outcome = boot_at(qemu_program, qemu_args, limits, sinks, Place::default())?;
    if outcome.end == End::Interrupted {
        return Err(Interrupted.into());
    }
    Ok(outcome)
}

/// [`boot`] as boot `place.number` of a run, whose log already holds `place.lines_before`
/// lines. Ctrl-C ends the boot with [`End::Interrupted`] instead of an error, so the caller
/// can still report what ran.
pub fn boot_at(
    qemu_program: &Path,
    qemu_args: &[String],
    limits: Limits,
    sinks: Sinks<'_>,
    place: Place,
) -> Result<BootOutcome> {
    boot_with_grace(qemu_program, qemu_args, limits, sinks, place, EXIT_GRACE)
}

/// [`boot_at`] with `grace` instead of [`EXIT_GRACE`] (the tests' way to keep it short).
fn boot_with_grace(
    qemu_program: &Path,
    qemu_args: &[String],
    limits: Limits,
    sinks: Sinks<'_>,
    place: Place,
    grace: Duration,
) -> Result<BootOutcome> {
    let started = Instant::now();
    let mut qemu = RunningQemu::spawn(qemu_program, qemu_args, sinks.echo != Echo::Off)?;
    let mut in_banner = sinks.echo == Echo::Banner;
    let mut lines = Lines::new();
    lines.line_mode = qemu_args.iter().any(|a| a.contains("sclplmconsole"));
    lines.qemu_charset = lines.line_mode;
    let mut judge = Judge {
        parser: Parser::new(),
        boot: Boot::new(place.number),
        first_line: place.lines_before,
        last_progress: started,
        exit_seen_at: None,
    };
    let mut printed_anything = false;
    let mut last_byte = b'\n';
    let mut stdout = std::io::stdout();
    let end = loop {
        let now = Instant::now();
        let mut wait = Duration::from_secs(3600);
        if let Some(limit) = limits.per_test {
            wait = wait.min((judge.last_progress + limit).saturating_duration_since(now));
        }
        if let Some(limit) = limits.total {
            wait = wait.min((started + limit).saturating_duration_since(now));
        }
        if let Some(at) = judge.exit_seen_at {
            wait = wait.min((at + grace).saturating_duration_since(now));
        }
        let next = match qemu.next(wait) {
            Ok(next) => next,
            Err(error) if error.is::<Interrupted>() => break End::Interrupted,
            Err(error) => return Err(error),
        };
        match next {
            Next::Data(bytes) => {
                printed_anything = true;
                last_byte = *bytes.last().unwrap_or(&last_byte);
                sinks
                    .log
                    .write_all(&bytes)
                    .context("writing the console log")?;
                if sinks.echo == Echo::Raw {
                    let _ = stdout.write_all(&bytes).and_then(|()| stdout.flush());
                }
                lines.feed(&bytes);
                while let Some(raw) = lines.next_line() {
                    if let Some(line) = banner_line(&mut in_banner, &raw) {
                        let _ = stdout
                            .write_all(line)
                            .and_then(|()| stdout.write_all(b"\n"));
                    }
                    judge.line(lines.newlines, &raw, sinks.on_record);
                }
            }
            Next::Closed => break End::Exited,
            Next::Idle => {
                let now = Instant::now();
                if judge.exit_seen_at.is_some_and(|at| now >= at + grace) {
                    // The kernel said it is done but QEMU keeps running: stop it.
                    qemu.kill();
                    break End::Exited;
                }
                if let Some(limit) = limits.total.filter(|&l| now >= started + l) {
                    break End::TotalTimeout(limit);
                }
                if let Some(limit) = limits.per_test.filter(|&l| now >= judge.last_progress + l) {
                    break End::TestTimeout(limit);
                }
            }
        }
    };
    if let Some(raw) = lines.finish() {
        judge.line(lines.newlines + 1, &raw, sinks.on_record);
    }
    let mut judged = judge.boot;
    if end != End::Exited {
        qemu.kill();
    }
    let qemu = qemu.finish(grace)?;
    let mut log_lines = lines.newlines;
    // Each boot's output ends with a newline (the line-mode console never writes the last
    // one), so the next boot, or xtask's own line, starts a line of its own.
    if last_byte != b'\n' {
        sinks
            .log
            .write_all(b"\n")
            .context("writing the console log")?;
        log_lines += 1;
    }
    let how = ending(end, &qemu);
    let marker = match &how {
        verdict::End::Hung(reason) => Some(format!("{TIMEOUT_MARKER} {reason}, QEMU killed")),
        verdict::End::Killed(reason) => Some(format!("{KILLED_MARKER} {reason}")),
        verdict::End::Interrupted => Some(format!("{INTERRUPTED_MARKER} (Ctrl-C), QEMU killed")),
        verdict::End::Closed(_) => None,
    };
    if let Some(marker) = marker {
        writeln!(sinks.log, "{marker}").context("writing the console log")?;
        log_lines += 1;
    }
    sinks.log.flush().context("writing the console log")?;
    for record in judged.end(&how) {
        (sinks.on_record)(&record);
    }
    Ok(BootOutcome {
        boot: judged,
        end,
        how,
        qemu,
        printed_anything,
        elapsed: started.elapsed(),
        log_lines,
    })
}

/// The console's lines, judged as they arrive.
struct Judge {
    parser: Parser,
    boot: Boot,
    first_line: u64,
    last_progress: Instant,
    exit_seen_at: Option<Instant>,
}

impl Judge {
    fn line(&mut self, line: u64, raw: &[u8], on_record: &mut dyn FnMut(&TestRecord)) {
        let event = self.parser.parse_line(raw);
        if matches!(event, crate::ktap::Event::Exit { .. }) {
            self.exit_seen_at = Some(Instant::now());
        }
        for record in self.boot.observe(self.first_line + line, &event) {
            self.last_progress = Instant::now();
            on_record(&record);
        }
    }
}

/// How the boot ended, in the verdict's terms.
fn ending(end: End, qemu: &QemuExit) -> verdict::End {
    match end {
        End::TestTimeout(limit) => {
            verdict::End::Hung(format!("timeout: no test result for {} s", limit.as_secs()))
        }
        End::TotalTimeout(limit) => {
            verdict::End::Hung(format!("timeout after {} s", limit.as_secs()))
        }
        End::Interrupted => verdict::End::Interrupted,
        End::Exited => match qemu.killed_from_outside() {
            Some(signal) => {
                verdict::End::Killed(format!("QEMU was killed by signal {signal} (not by xtask)"))
            }
            None => verdict::End::Closed(match qemu.status.code() {
                Some(1) => "the kernel stopped in a disabled wait (guest panic)".to_string(),
                Some(0) => "QEMU exited".to_string(),
                _ => format!("QEMU exited ({})", qemu.status),
            }),
        },
    }
}

impl BootOutcome {
    /// Why the kernel did not finish cleanly, in one line (`None` when it went through its
    /// plan to `EXIT:` and the output had the shape the verdict demands). Failing tests are
    /// not in here: they are records.
    pub fn failure_reason(&self) -> Option<String> {
        self.boot.failure_reason()
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
        fake_qemu_with_grace(script, limits, EXIT_GRACE)
    }

    fn fake_qemu_with_grace(
        script: &str,
        limits: Limits,
        grace: Duration,
    ) -> (BootOutcome, Vec<String>, Vec<u8>) {
        let dir = tempfile::tempdir().unwrap();
        let log_path = dir.path().join("console.log");
        let mut log = File::create(&log_path).unwrap();
        let mut seen = Vec::new();
        let outcome = boot_with_grace(
            Path::new("sh"),
            &["-c".into(), script.into()],
            limits,
            Sinks {
                log: &mut log,
                echo: Echo::Off,
                on_record: &mut |r| seen.push(r.id.to_string()),
            },
            Place::default(),
            grace,
        )
        .unwrap();
        (outcome, seen, std::fs::read(log_path).unwrap())
    }

    /// The start of a run as the kernel prints it, for suite `s` with `tests` tests.
    const START: &str =
        "KTAP version 1\\n1..1\\n    KTAP version 1\\n    # Subtest: s\\n    1..2\\n";

    #[test]
    fn a_clean_run_is_complete_and_logged_byte_for_byte() {
        let script = r"printf 'noise\r\nKTAP version 1\r\n1..1\r\n    # Subtest: s\r\n    1..2\r\n    ok 1 a\r\n    ok 2 b\r\n# s: pass:2 fail:0 skip:0 total:2\r\nok 1 s\r\n# Totals: pass:2 fail:0 skip:0 total:2\r\nEXIT: STATUS=1\r\n'";
        let (outcome, seen, log) = fake_qemu(script, Limits::default());
        assert_eq!(seen, ["s.a", "s.b"]);
        assert_eq!(outcome.end, End::Exited);
        assert_eq!(outcome.failure_reason(), None);
        assert_eq!(outcome.infrastructure_error(), None);
        assert!(outcome.boot.completed());
        assert!(log.starts_with(b"noise\r\nKTAP version 1\r\n"));
    }

    #[test]
    fn a_log_without_a_final_newline_gets_one_before_the_next_line() {
        let (outcome, _, log) = fake_qemu("printf 'EXIT: STATUS=1'", Limits::default());
        assert!(log.ends_with(b"EXIT: STATUS=1\n"), "{log:?}");
        assert_eq!(outcome.log_lines, 1);
    }

    #[test]
    fn a_hung_test_is_killed_after_the_per_test_limit() {
        let script = format!("printf '{START}    ok 1 a\\n'; exec sleep 30");
        let script = script.as_str();
        let limits = Limits {
            per_test: Some(Duration::from_millis(300)),
            total: None,
        };
        let started = Instant::now();
        let (outcome, seen, _) = fake_qemu(script, limits);
        assert!(started.elapsed() < Duration::from_secs(10));
        assert_eq!(
            seen,
            ["s.a", "s.unknown test after a"],
            "the hung test is settled too"
        );
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
            &format!(
                "printf '{START}    # panic: boom at x.rs:1\\n    not ok 1 t # ERROR panic: boom\\nBail out! panic\\nEXIT: STATUS=3\\n'; exit 1"
            ),
            Limits::default(),
        );
        assert_eq!(
            panicked.failure_reason().as_deref(),
            Some("kernel panicked: boom at x.rs:1")
        );
        let (silent, _, _) = fake_qemu("echo partial; exit 0", Limits::default());
        assert_eq!(
            silent.failure_reason().as_deref(),
            Some("QEMU exited before the KTAP header: no test ran")
        );
        let (cut, _, log) = fake_qemu(&format!("printf '{START}    ok 1 a\\n'"), Limits::default());
        assert_eq!(
            cut.failure_reason().as_deref(),
            Some("QEMU exited before the completion marker `EXIT:`")
        );
        assert!(
            !log.ends_with(b"xtask: "),
            "a clean exit of QEMU leaves no marker"
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
        let script = "printf 'KTAP version 1\\n1..1\\n    # Subtest: s\\n    1..1\\n    ok 1 a\\n# s: pass:1 fail:0 skip:0 total:1\\nok 1 s\\n# Totals: pass:1 fail:0 skip:0 total:1\\nEXIT: STATUS=1\\n'; exec sleep 30";
        let grace = Duration::from_millis(300);
        let started = Instant::now();
        let (outcome, _, _) = fake_qemu_with_grace(script, Limits::default(), grace);
        assert!(started.elapsed() >= grace && started.elapsed() < Duration::from_secs(20));
        assert_eq!(outcome.end, End::Exited);
        assert_eq!(outcome.failure_reason(), None);
    }

    #[test]
    fn the_banner_is_the_lines_before_the_ktap_document() {
        let log = [
            "zhint 0.1.0",
            "memory: 256 MiB",
            "KTAP version 1",
            "1..1",
            "zhint again",
        ];
        let mut in_banner = true;
        let shown: Vec<&[u8]> = log
            .iter()
            .filter_map(|l| banner_line(&mut in_banner, l.as_bytes()))
            .collect();
        assert_eq!(shown, [b"zhint 0.1.0".as_slice(), b"memory: 256 MiB"]);
        let mut raw_mode = false;
        assert!(
            log.iter()
                .all(|l| banner_line(&mut raw_mode, l.as_bytes()).is_none())
        );
    }
}
