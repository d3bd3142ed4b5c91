//! Running `qemu-system-s390x`: the command line, and a child process that is always killed.
//!
//! [`RunningQemu`] owns the child: dropping it (on `?`, on panic, on Ctrl-C) kills QEMU and
//! reaps it. When xtask itself dies without a chance to clean up (SIGKILL), the kernel kills
//! QEMU: it starts through util-linux's `setpriv --pdeathsig KILL`, which sets
//! `PR_SET_PDEATHSIG` and then executes QEMU in the same process (xtask keeps no `unsafe`
//! fork hook of its own). The console (QEMU's stdout) is read by a thread and handed over in chunks through
//! a channel, so the caller can wait with a timeout and notice Ctrl-C while QEMU is silent.

use std::io::{Read, Write};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::interrupt;

/// Which SCLP console device carries the kernel's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Console {
    /// The ASCII (VT220) console, `sclpconsole`.
    Ascii,
    /// The line-mode console, `sclplmconsole` (EBCDIC on the wire; QEMU converts).
    LineMode,
}

/// The virtual machine to boot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    /// `tcg` or `kvm`.
    pub accel: String,
    /// CPU model, e.g. `qemu` or `max`.
    pub cpu: String,
    /// Memory size in QEMU syntax, e.g. `256M`.
    pub mem: String,
    /// Number of CPUs.
    pub smp: u32,
    /// Console device.
    pub console: Console,
    /// Backing-store image passed as `-initrd`.
    pub initrd: Option<PathBuf>,
    /// Further QEMU arguments.
    pub extra_args: Vec<String>,
}

impl Default for Machine {
    fn default() -> Self {
        Self {
            accel: "tcg".into(),
            cpu: "qemu".into(),
            mem: "256M".into(),
            smp: 1,
            console: Console::Ascii,
            initrd: None,
            extra_args: Vec::new(),
        }
    }
}

impl Machine {
    /// The `-accel` option: TCG always multi-threaded (one host thread per vCPU), so the
    /// CPUs of the guest really run at the same time. QEMU 7.2 already picks that for
    /// s390x on an x86-64 host (`thread=single` is the way back to one thread for all
    /// vCPUs); saying it keeps it so on any QEMU build.
    fn accel_option(&self) -> String {
        match self.accel.as_str() {
            "tcg" => "tcg,thread=multi".into(),
            other => other.into(),
        }
    }

    /// The QEMU arguments that boot `kernel` with `kernel_args` on this machine.
    pub fn args(&self, kernel: &Path, kernel_args: &[String]) -> Vec<String> {
        let device = match self.console {
            Console::Ascii => "sclpconsole",
            Console::LineMode => "sclplmconsole",
        };
        let mut args: Vec<String> = [
            "-nodefaults",
            "-nographic",
            "-machine",
            "s390-ccw-virtio",
            "-accel",
            &self.accel_option(),
            "-cpu",
            &self.cpu,
            "-m",
            &self.mem,
            "-smp",
            &self.smp.to_string(),
            "-chardev",
            "stdio,id=con0",
            "-device",
            &format!("{device},chardev=con0"),
            "-action",
            "panic=exit-failure",
            "-kernel",
            &kernel.display().to_string(),
        ]
        .map(str::to_string)
        .to_vec();
        if let Some(initrd) = &self.initrd {
            args.extend(["-initrd".to_string(), initrd.display().to_string()]);
        }
        if !kernel_args.is_empty() {
            args.extend(["-append".to_string(), kernel_args.join(" ")]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }
}

/// QEMU's `-m` syntax: a number with an optional suffix (K, M, G, T; no suffix: MiB).
pub fn parse_mem(text: &str) -> Option<u64> {
    let text = text.trim();
    let (digits, shift) = match text.chars().last()?.to_ascii_uppercase() {
        'K' => (&text[..text.len() - 1], 10),
        'M' => (&text[..text.len() - 1], 20),
        'G' => (&text[..text.len() - 1], 30),
        'T' => (&text[..text.len() - 1], 40),
        _ => (text, 20),
    };
    digits.parse::<u64>().ok()?.checked_mul(1 << shift)
}

impl Machine {
    /// Checks before booting that `-m` holds what QEMU loads and what the kernel needs: the
    /// initrd at 8 MiB (`layout::QEMU_INITRD_START`) must end below QEMU's s390-ccw
    /// firmware, which `hw/s390x/ipl.c` places 2 MiB below the end of memory (at most
    /// 2 GiB), and above it the kernel needs `layout::minimum_memory`. Otherwise
    /// QEMU would stop with "could not load initrd" or the kernel with `Bail out! not enough
    /// memory`; this says the same before anything runs, as an error (exit 2).
    pub fn check_memory(&self) -> Result<()> {
        let Some(memory) = parse_mem(&self.mem) else {
            anyhow::bail!(
                "`{}` is not a memory size (QEMU -m syntax, e.g. 256M)",
                self.mem
            );
        };
        let Some(initrd) = &self.initrd else {
            return Ok(());
        };
        let size = std::fs::metadata(initrd)
            .with_context(|| format!("cannot read the backing store {}", initrd.display()))?
            .len();
        let initrd_end = layout::QEMU_INITRD_START + size;
        let firmware = 2 << 20;
        let need = layout::minimum_memory(initrd_end)
            .max(initrd_end + firmware)
            .next_multiple_of(1 << 20);
        if memory < need {
            anyhow::bail!(
                "{}",
                layout::NotEnoughMemory { need, have: memory }.to_string()
                    + &format!(
                        " (-m {}: the {} KiB backing store loads at 8 MiB, QEMU's firmware needs 2 MiB above it, the kernel its heap, tables and pool; use at least {} MiB)",
                        self.mem,
                        size >> 10,
                        need >> 20
                    )
            );
        }
        Ok(())
    }
}

/// Quotes a command line for humans to copy.
pub fn display_command(program: &Path, args: &[String]) -> String {
    let mut words = vec![program.display().to_string()];
    words.extend(args.iter().map(|a| {
        shlex::try_quote(a)
            .map(|q| q.into_owned())
            .unwrap_or_else(|_| a.clone())
    }));
    words.join(" ")
}

/// What waiting for console output produced.
#[derive(Debug)]
pub enum Next {
    /// Console bytes.
    Data(Vec<u8>),
    /// Nothing arrived within the timeout.
    Idle,
    /// QEMU closed its stdout (it exited or is exiting).
    Closed,
}

/// How QEMU ended.
#[derive(Debug)]
pub struct QemuExit {
    /// Its exit status.
    pub status: ExitStatus,
    /// Whether xtask killed it (timeout, Ctrl-C, run over).
    pub killed_by_xtask: bool,
    /// Everything QEMU wrote to stderr.
    pub stderr: String,
}

impl QemuExit {
    /// The signal that killed QEMU, when that was not xtask's doing: an infrastructure error.
    pub fn killed_from_outside(&self) -> Option<i32> {
        self.status.signal().filter(|_| !self.killed_by_xtask)
    }

    /// The last non-empty line QEMU wrote to stderr.
    pub fn last_stderr_line(&self) -> Option<&str> {
        self.stderr
            .lines()
            .rev()
            .map(str::trim)
            .find(|l| !l.is_empty())
    }
}

/// util-linux's tool that starts QEMU with a parent-death signal.
const SETPRIV: &str = "setpriv";

/// A QEMU child process that is killed when dropped.
#[derive(Debug)]
pub struct RunningQemu {
    child: Child,
    console: Receiver<Vec<u8>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    stderr_reader: Option<JoinHandle<()>>,
    killed: bool,
}

impl RunningQemu {
    /// Starts QEMU in its own process group with stdin from `/dev/null`. With `echo_stderr`,
    /// QEMU's stderr is also copied live to ours.
    pub fn spawn(program: &Path, args: &[String], echo_stderr: bool) -> Result<Self> {
        let mut command = match crate::install::find_in_path(Path::new(SETPRIV)) {
            Some(setpriv) => {
                let mut command = Command::new(setpriv);
                command.args(["--pdeathsig", "KILL", "--"]).arg(program);
                command
            }
            None => {
                static WARNED: std::sync::Once = std::sync::Once::new();
                WARNED.call_once(|| {
                    eprintln!(
                        "xtask: warning: {SETPRIV} (util-linux) not found: QEMU will outlive xtask if xtask is killed with SIGKILL"
                    );
                });
                Command::new(program)
            }
        };
        let mut child = command
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let mut stdout = child.stdout.take().context("QEMU stdout")?;
        let mut stderr_pipe = child.stderr.take().context("QEMU stderr")?;
        let (sender, console) = mpsc::channel();
        std::thread::spawn(move || {
            let mut buffer = vec![0; 8192];
            while let Ok(n @ 1..) = stdout.read(&mut buffer) {
                if sender.send(buffer[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr);
        let stderr_reader = std::thread::spawn(move || {
            let mut buffer = vec![0; 4096];
            while let Ok(n @ 1..) = stderr_pipe.read(&mut buffer) {
                if echo_stderr {
                    let _ = std::io::stderr().write_all(&buffer[..n]);
                }
                if let Ok(mut sink) = sink.lock() {
                    sink.extend_from_slice(&buffer[..n]);
                }
            }
        });
        Ok(Self {
            child,
            console,
            stderr,
            stderr_reader: Some(stderr_reader),
            killed: false,
        })
    }

    /// Waits up to `timeout` for console output. Fails with [`interrupt::Interrupted`] when
    /// the user pressed Ctrl-C.
    pub fn next(&mut self, timeout: Duration) -> Result<Next> {
        let deadline = Instant::now() + timeout;
        loop {
            if interrupt::requested() {
                self.kill();
                return Err(interrupt::Interrupted.into());
            }
            let slice = deadline
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100));
            match self.console.recv_timeout(slice) {
                Ok(data) => return Ok(Next::Data(data)),
                Err(RecvTimeoutError::Disconnected) => return Ok(Next::Closed),
                Err(RecvTimeoutError::Timeout) if Instant::now() >= deadline => {
                    return Ok(Next::Idle);
                }
                Err(RecvTimeoutError::Timeout) => {}
            }
        }
    }

    /// Kills QEMU (and anything it started in its process group).
    pub fn kill(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.killed = true;
            let _ = self.child.kill();
        }
    }

    /// Waits up to `grace` for QEMU to exit by itself, kills it after that, and reaps it.
    pub fn finish(mut self, grace: Duration) -> Result<QemuExit> {
        let deadline = Instant::now() + grace;
        let status = loop {
            if let Some(status) = self.child.try_wait().context("waiting for QEMU")? {
                break status;
            }
            if Instant::now() >= deadline || interrupt::requested() {
                self.kill();
                break self.child.wait().context("waiting for QEMU")?;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        if let Some(reader) = self.stderr_reader.take() {
            let _ = reader.join();
        }
        let stderr = self
            .stderr
            .lock()
            .map(|s| String::from_utf8_lossy(&s).into_owned())
            .unwrap_or_default();
        Ok(QemuExit {
            status,
            killed_by_xtask: self.killed,
            stderr,
        })
    }
}

impl Drop for RunningQemu {
    fn drop(&mut self) {
        self.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_like_qemu_and_the_backing_store_must_fit() {
        assert_eq!(parse_mem("256M"), Some(256 << 20));
        assert_eq!(parse_mem("2g"), Some(2 << 30));
        assert_eq!(parse_mem("512"), Some(512 << 20));
        assert_eq!(parse_mem("64K"), Some(64 << 10));
        assert_eq!(parse_mem("lots"), None);
        assert_eq!(parse_mem(""), None);
        let dir = tempfile::tempdir().unwrap();
        let store = dir.path().join("store.img");
        std::fs::write(&store, vec![0u8; 21588 << 10]).unwrap();
        let machine = |mem: &str| Machine {
            mem: mem.into(),
            initrd: Some(store.clone()),
            ..Machine::default()
        };
        machine("32M").check_memory().unwrap();
        machine("256M").check_memory().unwrap();
        let error = machine("24M").check_memory().unwrap_err().to_string();
        assert!(
            error.starts_with("not enough memory: need 32768 KiB, have 24576 KiB (-m 24M: the 21588 KiB backing store"),
            "{error}"
        );
        assert!(
            machine("31M").check_memory().is_err(),
            "QEMU's firmware would overlap the initrd"
        );
        assert!(machine("x").check_memory().is_err());
        let none = Machine {
            mem: "16M".into(),
            ..Machine::default()
        };
        none.check_memory().unwrap();
    }

    #[test]
    fn command_line_has_the_contract_flags() {
        let machine = Machine {
            smp: 2,
            extra_args: vec!["-d".into(), "guest_errors".into()],
            ..Machine::default()
        };
        let args = machine.args(Path::new("/k/zhint"), &["ktest.list".into(), "a=b".into()]);
        let line = args.join(" ");
        assert!(line.starts_with(
            "-nodefaults -nographic -machine s390-ccw-virtio -accel tcg,thread=multi -cpu qemu -m 256M -smp 2"
        ));
        assert!(line.contains(
            "-chardev stdio,id=con0 -device sclpconsole,chardev=con0 -action panic=exit-failure"
        ));
        assert!(
            line.ends_with("-kernel /k/zhint -append ktest.list a=b -d guest_errors"),
            "{line}"
        );
        let lm = Machine {
            console: Console::LineMode,
            ..Machine::default()
        }
        .args(Path::new("k"), &[]);
        assert!(lm.contains(&"sclplmconsole,chardev=con0".to_string()));
        assert!(!lm.contains(&"-append".to_string()));
    }

    #[test]
    fn display_command_quotes_for_the_shell() {
        let shown = display_command(Path::new("qemu"), &["-append".into(), "a b".into()]);
        assert_eq!(shown, "qemu -append 'a b'");
    }

    #[test]
    fn child_is_streamed_and_killed_on_drop() {
        let mut child = RunningQemu::spawn(
            Path::new("sh"),
            &[
                "-c".into(),
                "echo hello; echo oops >&2; exec sleep 30".into(),
            ],
            false,
        )
        .unwrap();
        match child.next(Duration::from_secs(10)).unwrap() {
            Next::Data(data) => assert_eq!(data, b"hello\n"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            child.next(Duration::from_millis(200)).unwrap(),
            Next::Idle
        ));
        let pid = child.child.id();
        let exit = child.finish(Duration::from_millis(50)).unwrap();
        assert!(exit.killed_by_xtask);
        assert_eq!(exit.killed_from_outside(), None);
        assert_eq!(exit.last_stderr_line(), Some("oops"));
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "killed and reaped"
        );
    }

    #[test]
    fn dropping_the_guard_kills_and_reaps() {
        let child = RunningQemu::spawn(Path::new("sleep"), &["30".into()], false).unwrap();
        let pid = child.child.id();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(child);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    /// Helper of [`qemu_never_outlives_xtask_even_on_sigkill`]: starts a QEMU stand-in and
    /// waits to be killed.
    #[test]
    #[ignore = "helper process of qemu_never_outlives_xtask_even_on_sigkill"]
    fn helper_starts_qemu_and_waits() {
        let Some(pidfile) = std::env::var_os("XTASK_HYGIENE_PIDFILE") else {
            return;
        };
        let script = format!("echo $$ > {}; exec sleep 60", Path::new(&pidfile).display());
        let child = RunningQemu::spawn(Path::new("sh"), &["-c".into(), script], false).unwrap();
        std::thread::sleep(Duration::from_secs(60));
        drop(child);
    }

    /// SIGKILL gives xtask no chance to kill QEMU itself: the parent-death signal must.
    #[test]
    fn qemu_never_outlives_xtask_even_on_sigkill() {
        let dir = tempfile::tempdir().unwrap();
        let pidfile = dir.path().join("qemu.pid");
        let mut helper = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "qemu::tests::helper_starts_qemu_and_waits",
                "--ignored",
                "--test-threads=1",
            ])
            .env("XTASK_HYGIENE_PIDFILE", &pidfile)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        let pid = loop {
            if let Some(pid) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|p| p.trim().parse::<u32>().ok())
            {
                break pid;
            }
            assert!(Instant::now() < deadline, "the helper never started QEMU");
            std::thread::sleep(Duration::from_millis(20));
        };
        assert!(alive(pid), "the stand-in runs");
        helper.kill().unwrap(); // SIGKILL
        helper.wait().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while alive(pid) {
            assert!(
                Instant::now() < deadline,
                "QEMU (pid {pid}) outlived the xtask that started it"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Whether `pid` runs (a zombie waiting for its reaper does not).
    fn alive(pid: u32) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
            !status
                .lines()
                .any(|l| l.starts_with("State:") && l.contains('Z'))
        })
    }

    #[test]
    fn a_signal_from_outside_is_reported() {
        let mut child =
            RunningQemu::spawn(Path::new("sh"), &["-c".into(), "kill -9 $$".into()], false)
                .unwrap();
        while !matches!(child.next(Duration::from_secs(10)).unwrap(), Next::Closed) {}
        let exit = child.finish(Duration::from_secs(10)).unwrap();
        assert_eq!(exit.killed_from_outside(), Some(9));
    }
}
