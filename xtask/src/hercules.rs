//! Booting the kernel on Hercules (3.13, Debian package `hercules`), the second
//! z/Architecture implementation the matrix runs the suites on (`emulator = hercules`).
//!
//! Each boot is the LPAR load of `cargo xtask image --format lpar` (kernel, parameter file
//! and the backing store as initrd, see [`crate::image`]) started by Hercules' list-directed
//! IPL (`ipl zhint.ins`) in ESA/390 mode, so `_start` switches to z/Architecture as on real
//! machines. Hercules has no console of its own for the kernel: the SCLP line-mode messages
//! go into its log between its own messages. So a boot runs through `xtask hercules-console
//! DIR` ([`console`]), which starts Hercules, keeps its whole log in `DIR/hercules.log`, and
//! prints only the kernel's console to its stdout (the line-mode pieces joined back into
//! lines), where [`crate::boot`] judges it like QEMU's. Hercules always exits 0; what the
//! kernel ended with is its wait PSW, which `hercules-console` turns into its exit status as
//! QEMU does (0 passed, 1 failures or a crash; see [`exit_status`]).
//!
//! The configuration makes the log usable as a console (observed with 3.13-7):
//! `OSTAILOR QUIET` (no trace of every program interruption the tests cause on purpose),
//! `CODEPAGE 819/037` (the default table turns `[`, `]` and others into blanks),
//! `MAXCPU` = `NUMCPU` (READ SCP INFO lists all `MAXCPU` installed CPUs, 8 by default).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::image::{self, Format};
use crate::ktap::Lines;
use crate::qemu::{Machine, Next, RunningQemu};

/// The emulator binary.
pub const PROGRAM: &str = "hercules";
/// The hidden xtask command a boot runs ([`console`]).
pub const CONSOLE_COMMAND: &str = "hercules-console";
/// Hercules' whole log, next to the console log.
pub const LOG_FILE: &str = "hercules.log";
/// The list-directed IPL file of the LPAR load.
const INS_FILE: &str = "zhint.ins";

/// Writes the boot's files into `dir` (the LPAR load of `kernel` with `initrd` and
/// `kernel_args`, `hercules.cnf`, `hercules.rc`) and returns the command whose stdout is
/// the kernel's console: this xtask's `hercules-console DIR`.
pub fn prepare(
    dir: &Path,
    kernel: &Path,
    machine: &Machine,
    kernel_args: &[String],
) -> Result<(PathBuf, Vec<String>)> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    if let Some(initrd) = &machine.initrd {
        let size = std::fs::metadata(initrd)
            .with_context(|| format!("cannot read the backing store {}", initrd.display()))?
            .len();
        check_storage(megabytes(&machine.mem)?, size)?;
    }
    image::write(
        kernel,
        Format::Lpar,
        dir,
        kernel_args,
        machine.initrd.as_deref(),
    )?;
    write_file(&dir.join("hercules.cnf"), &configuration(machine)?)?;
    write_file(&dir.join("hercules.rc"), &script())?;
    let xtask = std::env::current_exe().context("cannot find the xtask executable")?;
    Ok((
        xtask,
        vec![CONSOLE_COMMAND.to_string(), dir.display().to_string()],
    ))
}

fn write_file(path: &Path, text: &str) -> Result<()> {
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}

/// `hercules.cnf` for `machine`: its memory and CPUs, z/Architecture, and the settings that
/// make the log a console (module documentation). Hercules needs one device at least: a
/// card reader with nothing in it.
fn configuration(machine: &Machine) -> Result<String> {
    let megabytes = megabytes(&machine.mem)?;
    let cpus = machine.smp;
    Ok(format!(
        "# zhint on Hercules (written by cargo xtask, see xtask/src/hercules.rs)\n\
         CPUSERIAL 000001\n\
         CPUMODEL  2064\n\
         MAINSIZE  {megabytes}\n\
         NUMCPU    {cpus}\n\
         MAXCPU    {cpus}\n\
         ARCHMODE  z/Arch\n\
         OSTAILOR  QUIET\n\
         CODEPAGE  819/037\n\
         000C      3505 /dev/null\n"
    ))
}

/// `hercules.rc`: quit at the first disabled wait (the Hercules Automatic Operator fires on
/// the message), then IPL the LPAR load.
fn script() -> String {
    format!("hao tgt HHCCP011I\nhao cmd quit\nipl {INS_FILE}\n")
}

/// Megabytes of a QEMU-style memory size (`256M`, `1G`, a plain number is MiB).
fn megabytes(size: &str) -> Result<u64> {
    let (digits, unit) = match size.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => size.split_at(at),
        None => (size, "M"),
    };
    let number: u64 = digits
        .parse()
        .with_context(|| format!("memory size `{size}`: not a number"))?;
    let megabytes = match unit {
        "M" | "m" => number,
        "G" | "g" => number * 1024,
        _ => bail!("memory size `{size}`: Hercules takes whole megabytes (M or G)"),
    };
    Ok(megabytes)
}

/// Fails, as `Machine::check_memory` does for QEMU, when `megabytes` of storage cannot
/// hold the LPAR load with an initrd of `initrd_size` bytes (the kernel would stop with
/// `Bail out! not enough memory`).
fn check_storage(megabytes: u64, initrd_size: u64) -> Result<()> {
    let need = image::minimum_storage_mib(initrd_size);
    if megabytes < need {
        bail!(
            "{} (Hercules MAINSIZE {megabytes}: the {} KiB backing store loads at 8 MiB, the kernel needs its heap, tables and pool above it; use at least {need}M)",
            layout::NotEnoughMemory {
                need: need << 20,
                have: megabytes << 20
            },
            initrd_size >> 10
        );
    }
    Ok(())
}

/// What ended a Hercules boot: the PSW of the first disabled wait, if any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitPsw {
    /// The PSW mask (first 64 bits).
    pub mask: u64,
    /// The instruction address: the kernel's and the loaders' wait codes.
    pub address: u64,
}

/// The kernel's console in Hercules' log, line by line: the lines between the IPL command
/// and the first disabled wait that are not Hercules' own messages.
#[derive(Debug)]
pub struct LogFilter {
    /// The script line that IPLs the kernel.
    ipl: String,
    /// The IPL command has been echoed: the kernel may print.
    started: bool,
    /// The CPU entered a disabled wait: the kernel is done.
    stopped: bool,
    /// The previous line was a Hercules message, which may go on in lines indented by
    /// [`CONTINUATION`].
    in_message: bool,
    /// The PSW of the disabled wait, once its line went by.
    pub wait: Option<WaitPsw>,
}

/// How Hercules indents the further lines of a message (e.g. the PSW after `HHCCP011I`).
const CONTINUATION: &str = "          ";

impl LogFilter {
    /// A filter before the IPL of the LPAR load ([`script`]).
    pub fn new() -> Self {
        Self::for_ipl(&format!("ipl {INS_FILE}"))
    }

    /// A filter for a log whose script IPLs with `ipl` (e.g. `ipl 000c`, a card reader).
    pub fn for_ipl(ipl: &str) -> Self {
        Self {
            ipl: ipl.to_string(),
            started: false,
            stopped: false,
            in_message: false,
            wait: None,
        }
    }

    /// The kernel's console line in `line` (one log line without its newline), or `None`
    /// for Hercules' own output.
    pub fn console_line<'a>(&mut self, line: &'a str) -> Option<&'a str> {
        // Hercules' colour prefix (OPTION_MSGCLR; every SCLP message carries one, which
        // the daemon-mode log usually, not always, strips: `logger.c`).
        let line = match line.strip_prefix("<pnl") {
            Some(rest) => rest.split_once('>').map_or(line, |(_, text)| text),
            None => line,
        };
        if self.stopped {
            self.find_wait_psw(line);
            return None;
        }
        if !self.started {
            self.started = line.trim() == self.ipl;
            return None;
        }
        if is_message(line) {
            self.in_message = true;
            if line[10..].starts_with("CPU") && line.contains("Disabled wait state") {
                self.stopped = true;
            }
            self.find_wait_psw(line);
            return None;
        }
        if self.in_message && line.starts_with(CONTINUATION) && !line[10..].starts_with(' ') {
            return None;
        }
        self.in_message = false;
        if is_cpu_trace(line) {
            return None;
        }
        Some(line)
    }

    fn find_wait_psw(&mut self, line: &str) {
        if self.wait.is_none() && self.stopped {
            self.wait = parse_psw(line);
        }
    }
}

/// `HHCxxnnnS ` at the start of a line: a Hercules message (prefix, component, number,
/// severity).
fn is_message(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 10
        && b.starts_with(b"HHC")
        && b[3..5].iter().all(u8::is_ascii_uppercase)
        && b[5..8].iter().all(u8::is_ascii_digit)
        && b[8].is_ascii_uppercase()
        && b[9] == b' '
}

/// `CPUnnnn: `: Hercules' trace of a CPU event (e.g. a SIGP order), not a message.
fn is_cpu_trace(line: &str) -> bool {
    let b = line.as_bytes();
    b.len() > 9
        && b.starts_with(b"CPU")
        && b[3..7].iter().all(u8::is_ascii_hexdigit)
        && b[7..9] == *b": "
}

/// The PSW Hercules prints after `HHCCP011I`, anywhere in `line` (its indentation may be
/// separated from it by other messages): `PSW=mmmmmmmm mmmmmmmm aaaaaaaaaaaaaaaa` in
/// z/Architecture mode, `PSW=mmmmmmmm aaaaaaaa` (mask, addressing mode and address) in
/// ESA/390 mode, where the reader loader runs.
fn parse_psw(line: &str) -> Option<WaitPsw> {
    let at = line.find("PSW=")?;
    let words: Vec<u64> = line[at + 4..]
        .split_whitespace()
        .map_while(|w| u64::from_str_radix(w, 16).ok())
        .collect();
    match words[..] {
        [high, low, address, ..] => Some(WaitPsw {
            mask: (high << 32) | low,
            address,
        }),
        [mask, address] => Some(WaitPsw {
            mask: mask << 32,
            address: address & 0x7fff_ffff,
        }),
        _ => None,
    }
}

/// The exit status of `hercules-console` for how the boot ended, as QEMU would have
/// ended: 0 for the kernel's "passed" wait (`0600Dnnn`, `kernel::shutdown`), 1 for its
/// failure or crash wait (`0BADnnnn`, QEMU's guest panic), and 3 with the reason
/// otherwise (a loader's wait, or no disabled wait at all).
pub fn exit_status(wait: Option<WaitPsw>) -> (u8, Option<String>) {
    match wait {
        Some(psw) if psw.address & !0xfff == 0x0600_d000 => (0, None),
        Some(psw) if psw.address & !0xffff == 0x0bad_0000 => (1, None),
        Some(psw) if psw.address & !0xf == 0x00f1_0000 => (
            3,
            Some(format!(
                "the reader loader stopped: disabled wait {:08X} (docs/zvm-lpar.md)",
                psw.address
            )),
        ),
        Some(psw) => (
            3,
            Some(format!(
                "disabled wait PSW {:016X} {:016X}, not the kernel's",
                psw.mask, psw.address
            )),
        ),
        None => (
            3,
            Some("Hercules ended without a disabled wait".to_string()),
        ),
    }
}

/// How long Hercules may take to quit after the first disabled wait before xtask kills it.
/// Hercules 3.13-7 now and then deadlocks in the `quit` the automatic operator issues
/// (seen about once in 30 reader IPLs: three threads asleep on futexes, SIGTERM blocked, so
/// `timeout` cannot end it either); the boot is over at the wait, whatever Hercules does next.
pub const QUIT_GRACE: Duration = Duration::from_secs(5);

/// How a Hercules run ended.
#[derive(Debug)]
pub struct Ended {
    /// The first disabled wait's PSW.
    pub wait: Option<WaitPsw>,
    /// Hercules did not quit within [`QUIT_GRACE`] of the wait and was killed.
    pub killed_after_wait: bool,
}

/// Runs Hercules in `dir` on `hercules.cnf` with the script `hercules.rc`, writes its whole
/// log to `DIR/hercules.log`, and hands every log line to `on_line` (with `filter`'s view of
/// it: the kernel's console line, or `None` for Hercules' own output). Ends when Hercules
/// quits, or [`QUIT_GRACE`] after the first disabled wait (then Hercules is killed).
pub fn run(
    dir: &Path,
    filter: &mut LogFilter,
    on_line: impl FnMut(&str, Option<&str>) -> Result<()>,
) -> Result<Ended> {
    let hercules = crate::install::find_in_path(Path::new(PROGRAM)).with_context(|| {
        format!(
            "{PROGRAM} not found; `cargo xtask provision` installs it (Debian package `hercules`)"
        )
    })?;
    run_program(&hercules, dir, QUIT_GRACE, filter, on_line)
}

/// [`run`] with the emulator binary `hercules` and the time it may take to quit after the
/// wait (the tests' stand-ins are killed sooner).
fn run_program(
    hercules: &Path,
    dir: &Path,
    quit_grace: Duration,
    filter: &mut LogFilter,
    mut on_line: impl FnMut(&str, Option<&str>) -> Result<()>,
) -> Result<Ended> {
    let log_path = dir.join(LOG_FILE);
    let mut log = std::fs::File::create(&log_path)
        .with_context(|| format!("cannot create {}", log_path.display()))?;
    // `env` sets the directory and the script variable; Hercules reads `.ins` paths
    // relative to the file and its script from $HERCULES_RC.
    let args: Vec<String> = vec![
        "-C".into(),
        dir.display().to_string(),
        "HERCULES_RC=hercules.rc".into(),
        hercules.display().to_string(),
        "-d".into(),
        "-f".into(),
        "hercules.cnf".into(),
    ];
    let mut child = RunningQemu::spawn(Path::new("env"), &args, false)?;
    let mut raw = Lines::new();
    let mut feed = |line: &[u8], filter: &mut LogFilter| -> Result<()> {
        let text = String::from_utf8_lossy(line);
        let kept = filter.console_line(&text);
        on_line(&text, kept)
    };
    let mut quit_by: Option<Instant> = None;
    let mut grace = Duration::from_secs(10);
    loop {
        let limit = match quit_by {
            Some(deadline) if Instant::now() >= deadline => {
                grace = Duration::ZERO;
                break;
            }
            Some(deadline) => deadline.saturating_duration_since(Instant::now()),
            None => Duration::from_secs(3600),
        };
        match child.next(limit)? {
            Next::Data(bytes) => {
                log.write_all(&bytes).context("writing the Hercules log")?;
                raw.feed(&bytes);
                while let Some(line) = raw.next_line() {
                    feed(&line, filter)?;
                }
                if filter.wait.is_some() && quit_by.is_none() {
                    quit_by = Some(Instant::now() + quit_grace);
                }
            }
            Next::Idle => {}
            Next::Closed => break,
        }
    }
    if let Some(line) = raw.finish() {
        feed(&line, filter)?;
    }
    let exit = child.finish(grace)?;
    let killed_after_wait = exit.killed_by_xtask && filter.wait.is_some();
    if !exit.status.success() && !killed_after_wait {
        bail!(
            "Hercules failed ({}): {}",
            exit.status,
            exit.last_stderr_line().unwrap_or("no output")
        );
    }
    Ok(Ended {
        wait: filter.wait,
        killed_after_wait,
    })
}

/// `xtask hercules-console DIR`: runs Hercules on the files [`prepare`] wrote into `dir`,
/// prints the kernel's console (joined line-mode pieces, one line each, flushed at once),
/// keeps Hercules' whole log in `DIR/hercules.log`, and ends with [`exit_status`].
pub fn console(dir: &Path) -> Result<ExitCode> {
    let mut filter = LogFilter::new();
    let mut console = Lines::new();
    console.line_mode = true;
    let mut stdout = std::io::stdout().lock();
    let ended = run(dir, &mut filter, |_, kept| {
        if let Some(kept) = kept {
            console.feed(kept.as_bytes());
            console.feed(b"\n");
            while let Some(joined) = console.next_line() {
                stdout.write_all(&joined)?;
                stdout.write_all(b"\n")?;
            }
            stdout.flush()?;
        }
        Ok(())
    })?;
    if let Some(rest) = console.finish() {
        stdout.write_all(&rest)?;
        stdout.write_all(b"\n")?;
    }
    stdout.flush()?;
    let log_path = dir.join(LOG_FILE);
    if ended.killed_after_wait {
        eprintln!(
            "xtask: Hercules did not quit within {QUIT_GRACE:?} of the disabled wait and was killed (log: {})",
            log_path.display()
        );
    }
    let (status, reason) = exit_status(ended.wait);
    if let Some(reason) = reason {
        eprintln!("{reason} (log: {})", log_path.display());
    }
    Ok(ExitCode::from(status))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The console lines `log` yields.
    fn filtered(log: &str) -> (Vec<String>, LogFilter) {
        let mut filter = LogFilter::new();
        let lines = log
            .lines()
            .filter_map(|l| filter.console_line(l).map(str::to_string))
            .collect();
        (lines, filter)
    }

    /// The shape of a real log (Hercules 3.13-7, abridged): banner, script echo, IPL,
    /// architecture switch, the kernel's lines, the disabled wait with its PSW split by
    /// the automatic operator's message, shutdown.
    const LOG: &str = "\
Hercules Version 3.13
  Debian
HHCCP002I CPU0000 thread started: tid=7F6117B1C6C0, pid=31434, priority=15
HHCAO001I Hercules Automatic Operator thread started;
          tid=7F61177186C0, pri=0, pid=31434
hao tgt HHCCP011I
ipl zhint.ins
HHCPN013I EOF reached on SCRIPT file. Processing complete.
HHCCP007I CPU0000 architecture mode set to ESA/390
CPU0000: SIGP Set architecture mode (12) CPU0000, PARM 00000002: CC 0
HHCCP007I CPU0000 architecture mode set to z/Arch
zhint 0.1.0 - guest page hinting test harness
HHCCP041I SYSCONS interface active
KTAP version 1
<pnl,color(green,black)># test: a.b file=x.rs:1 flags=-
    ok 1 b
          indented by the kernel, not a continuation
EXIT: STATUS=1
HHCCP011I CPU0000: Disabled wait state
          HHCAO003I Firing command: 'quit'
quit
PSW=00020001 80000000 000000000600D001
HHCIN900I Begin Hercules shutdown
";

    #[test]
    fn only_the_kernels_lines_pass_and_the_wait_psw_is_read() {
        let (lines, filter) = filtered(LOG);
        assert_eq!(
            lines,
            [
                "zhint 0.1.0 - guest page hinting test harness",
                "KTAP version 1",
                "# test: a.b file=x.rs:1 flags=-",
                "    ok 1 b",
                "          indented by the kernel, not a continuation",
                "EXIT: STATUS=1",
            ]
        );
        assert_eq!(
            filter.wait,
            Some(WaitPsw {
                mask: 0x0002_0001_8000_0000,
                address: 0x0600_d001
            })
        );
        assert_eq!(exit_status(filter.wait), (0, None));
    }

    #[test]
    fn continuation_lines_of_a_message_are_hercules_own() {
        let log = "ipl zhint.ins\nHHCCP014I CPU0000: Operation exception CODE=0001 ILC=4\n          PSW=04002001 80000000 00000000000915B8\n    ok 2 c\n";
        assert_eq!(filtered(log).0, ["    ok 2 c"]);
        assert_eq!(filtered(log).1.wait, None, "not a disabled wait");
    }

    #[test]
    fn esa390_wait_psws_of_the_loader_are_read_too() {
        let log =
            "ipl 000c\nHHCCP011I CPU0000: Disabled wait state\n          PSW=000A0000 80F10005\n";
        let mut filter = LogFilter::for_ipl("ipl 000c");
        log.lines()
            .for_each(|l| assert_eq!(filter.console_line(l), None));
        assert_eq!(
            filter.wait,
            Some(WaitPsw {
                mask: 0x000a_0000_0000_0000,
                address: 0x00f1_0005
            })
        );
    }

    #[test]
    fn wait_codes_become_qemus_exit_statuses() {
        let psw = |address| {
            Some(WaitPsw {
                mask: 0x0002_0001_8000_0000,
                address,
            })
        };
        assert_eq!(exit_status(psw(0x0600_d04d)).0, 0, "all skipped");
        assert_eq!(exit_status(psw(0x0bad_0003)).0, 1, "failures");
        assert_eq!(exit_status(psw(0x0bad_0000)).0, 1, "crash");
        let (status, reason) = exit_status(psw(0x00f1_0003));
        assert_eq!(status, 3);
        assert!(
            reason
                .unwrap()
                .contains("reader loader stopped: disabled wait 00F10003")
        );
        assert_eq!(exit_status(psw(0xdead)).0, 3);
        assert_eq!(
            exit_status(None),
            (3, Some("Hercules ended without a disabled wait".into()))
        );
    }

    #[test]
    fn line_mode_pieces_stay_whole_lines_for_the_joiner() {
        // A 132-column piece and its rest arrive as two log lines; the filter passes both
        // unchanged (trailing blank included) for `Lines` to join.
        let piece = format!("{}x ", "a".repeat(sclp::LINE_MODE_WIDTH - 2));
        let log = format!("ipl zhint.ins\n{piece}\nrest\n");
        let (lines, _) = filtered(&log);
        let mut joiner = Lines::new();
        joiner.line_mode = true;
        for line in &lines {
            joiner.feed(line.as_bytes());
            joiner.feed(b"\n");
        }
        assert_eq!(
            joiner.next_line().unwrap(),
            format!("{piece}rest").into_bytes()
        );
    }

    /// A stand-in for Hercules that stops at a disabled wait and never quits, as 3.13-7
    /// sometimes does: the run ends [`QUIT_GRACE`] after the wait, with the wait read.
    #[test]
    fn hercules_that_does_not_quit_after_the_wait_is_killed() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-hercules");
        std::fs::write(
            &fake,
            "#!/bin/sh\nprintf 'ipl zhint.ins\\nEXIT: STATUS=1\\nHHCCP011I CPU0000: Disabled wait state\\n          PSW=00020000 80000000 000000000600D001\\n'\nexec sleep 600\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut filter = LogFilter::new();
        let mut console = Vec::new();
        let started = std::time::Instant::now();
        let grace = Duration::from_millis(300);
        let ended = run_program(&fake, dir.path(), grace, &mut filter, |_, kept| {
            console.extend(kept.map(str::to_string));
            Ok(())
        })
        .unwrap();
        let took = started.elapsed();
        assert!(
            took >= grace && took < grace + Duration::from_secs(5),
            "{took:?}"
        );
        assert!(ended.killed_after_wait);
        assert_eq!(ended.wait.map(|w| w.address), Some(0x0600_d001));
        assert_eq!(console, ["EXIT: STATUS=1"]);
        assert!(
            std::fs::read_to_string(dir.path().join(LOG_FILE))
                .unwrap()
                .contains("PSW=00020000")
        );
    }

    /// Without a disabled wait, a Hercules that exits is no pass: no wait PSW, status 3.
    #[test]
    fn hercules_that_exits_without_a_wait_is_not_a_pass() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let fake = dir.path().join("fake-hercules");
        std::fs::write(
            &fake,
            "#!/bin/sh\nprintf 'ipl zhint.ins\\nKTAP version 1\\n'\n",
        )
        .unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        let mut filter = LogFilter::new();
        let ended = run_program(&fake, dir.path(), QUIT_GRACE, &mut filter, |_, _| Ok(())).unwrap();
        assert!(!ended.killed_after_wait);
        assert_eq!(ended.wait, None);
        assert_eq!(exit_status(ended.wait).0, 3);
    }

    #[test]
    fn memory_sizes() {
        assert_eq!(megabytes("256M").unwrap(), 256);
        assert_eq!(megabytes("2G").unwrap(), 2048);
        assert_eq!(megabytes("512").unwrap(), 512);
        assert!(megabytes("32M").is_ok());
        assert!(megabytes("1T").is_err());
        assert!(megabytes("lots").is_err());
    }

    #[test]
    fn storage_below_the_kernels_minimum_is_refused_before_booting() {
        let initrd = 21588 << 10;
        let need = image::minimum_storage_mib(initrd);
        assert!(check_storage(need, initrd).is_ok());
        let error = check_storage(need - 1, initrd).unwrap_err().to_string();
        assert!(
            error.starts_with("not enough memory: need ")
                && error.contains(&format!("use at least {need}M")),
            "{error}"
        );
    }

    #[test]
    fn configuration_and_script() {
        let machine = Machine {
            mem: "128M".into(),
            smp: 2,
            ..Machine::default()
        };
        let cnf = configuration(&machine).unwrap();
        for line in [
            "MAINSIZE  128",
            "NUMCPU    2",
            "MAXCPU    2",
            "ARCHMODE  z/Arch",
            "OSTAILOR  QUIET",
            "CODEPAGE  819/037",
        ] {
            assert!(cnf.lines().any(|l| l == line), "{line} in\n{cnf}");
        }
        assert_eq!(script(), "hao tgt HHCCP011I\nhao cmd quit\nipl zhint.ins\n");
    }
}
