//! Multi-CPU tests on the machine: a body runs on K CPUs at once (CPU 0, which runs the
//! test, and K-1 secondaries), meets at barriers, and records its failures with the CPU
//! number; CPU 0 reports them, in CPU order, when all are done.
//!
//! A watchdog on CPU 0 checks every CPU's progress ([`super::cpus::check`]): from its
//! clock-comparator interruption while CPU 0 runs its own part of the body (which runs
//! with external interruptions enabled for that), and between sleeps while it waits for
//! the others. A secondary without progress for the limit is stopped, its status (PSW)
//! stored and reported, the locks it held released, and it is restarted into its idle
//! loop; CPU 0 itself, when hung in its part, is unwound out of it. Either way the run
//! is aborted: the other CPUs leave their barrier or next progress point, the test fails,
//! and the test run goes on. So does it after a program interruption on any CPU, which
//! fails the test with that CPU's number.
//!
//! Signs of progress: arriving at and leaving a barrier, [`CpuTest::progress`], and
//! every recorded check. A body that loops for long without any must call
//! [`CpuTest::progress`].

use super::cpus::{
    self, Barrier, Health, Hung, Message, PartReport, Phase, Progress, RunReport, Sleep,
};
use super::test::Test;
use crate::arch::cpu::{self, Psw, psw_mask};
use crate::arch::interrupts::{self, ABANDONED, InterruptFrame, PgmInfo};
use crate::arch::percpu::{CpuNr, this_cpu};
use crate::arch::smp;
use crate::arch::sync::{CpuMutex, WaitQueue};
use alloc::format;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// How long a CPU may go without a sign of progress by default: well above any body's
/// gap between progress points under TCG on a busy host, well below xtask's idle
/// timeout.
pub const DEFAULT_WATCHDOG_MS: u64 = 20_000;

/// How often CPU 0 looks at the others while it waits or runs its part: what a hung
/// part costs a test of the watchdog at least, and an interruption of CPU 0's part 200
/// times a second (a few tens of microseconds each under TCG).
pub const TICK_US: u64 = 5_000;

/// How long [`run_with_first_tick`] lets an immediate first tick become pending.
const FIRST_TICK_SETTLE_US: u64 = 5_000;

/// How to run a multi-CPU body.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// How many CPUs run the body (CPU 0 and `cpus - 1` secondaries).
    pub cpus: usize,
    /// How long a CPU may go without a sign of progress before the watchdog stops it.
    pub watchdog_ms: u64,
    /// The run's seed (each CPU derives its own, see [`CpuTest::cpu_seed`]).
    pub seed: u64,
}

/// Not enough CPUs online for the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TooFewCpus {
    /// CPUs the run asked for.
    pub wanted: usize,
    /// CPUs online.
    pub online: usize,
}

/// Where the watchdog found a CPU hung (written in an interruption handler, so plain
/// atomics).
#[derive(Debug, Default)]
struct HungSlot {
    hung: AtomicBool,
    idle_us: AtomicU64,
    stored: AtomicBool,
    psw_mask: AtomicU64,
    psw_addr: AtomicU64,
}

/// The state of one run all its CPUs share, and the watchdog reads from CPU 0's timer
/// interruption (so it is reference-counted and `'static`: the handler holds it through
/// [`ACTIVE`] without borrowing CPU 0's stack).
#[derive(Debug)]
struct Shared {
    cpus: Vec<CpuNr>,
    progress: Vec<Progress>,
    barrier: Barrier<WaitQueue>,
    abort: AtomicBool,
    messages: Vec<CpuMutex<Vec<Message>>>,
    hung: Vec<HungSlot>,
    abandoned: Vec<AtomicBool>,
    /// The watchdog's limit in TOD units; a body may shorten it while it runs.
    limit: AtomicU64,
    /// The limit the run started with, back in force once the run is aborted.
    start_limit: u64,
    seed: u64,
    /// CPU 0 runs its part of the body (the only time its watchdog may unwind it).
    coordinator_in_body: AtomicBool,
}

impl Shared {
    /// Aborts the run: the CPUs leave their barrier (woken if they sleep there) or their
    /// next progress point.
    fn abort(&self) {
        self.abort.store(true, Ordering::Relaxed);
        // The parts leave now, each on its own vCPU thread, which the host may hold up:
        // a short limit a body set for itself must not take one of them for hung.
        self.limit.store(self.start_limit, Ordering::Relaxed);
        self.barrier.wake_all();
    }
}

impl Sleep for WaitQueue {
    const SPINS_BEFORE_SLEEP: u32 = crate::arch::sync::SPINS_BEFORE_SLEEP;

    fn sleep_unless(&self, ready: &dyn Fn() -> bool) {
        WaitQueue::sleep_unless(self, ready);
    }

    fn wake_all(&self) {
        WaitQueue::wake_all(self);
    }
}

/// One run: the shared state and the body.
struct Run<'b> {
    shared: Arc<Shared>,
    body: &'b (dyn Fn(&mut CpuTest<'_>) + Sync),
}

/// The run in progress, for CPU 0's timer interruption. Only CPU 0 touches it, outside
/// the windows where the timer can interrupt it; the handler only tries the lock.
static ACTIVE: spin::Mutex<Option<Arc<Shared>>> = spin::Mutex::new(None);

/// The context one CPU's part of the body gets: its place in the run, the barrier,
/// progress, and non-fatal checks (the `check!` macros work on it).
pub struct CpuTest<'r> {
    index: usize,
    run: &'r Shared,
}

impl fmt::Debug for CpuTest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CpuTest")
            .field("index", &self.index)
            .field("cpu", &self.cpu())
            .finish()
    }
}

impl CpuTest<'_> {
    /// This CPU's place in the run: 0 (CPU 0) to `cpus() - 1`.
    pub fn index(&self) -> usize {
        self.index
    }

    /// This CPU's number.
    pub fn cpu(&self) -> CpuNr {
        self.run.cpus[self.index]
    }

    /// How many CPUs run the body.
    pub fn cpus(&self) -> usize {
        self.run.cpus.len()
    }

    /// The run's seed (the test run's `ktest.seed`).
    pub fn seed(&self) -> u64 {
        self.run.seed
    }

    /// A seed of this CPU's own, derived from the run's seed and [`CpuTest::index`].
    pub fn cpu_seed(&self) -> u64 {
        self.run.seed ^ (self.index as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    fn progress_slot(&self) -> &Progress {
        &self.run.progress[self.index]
    }

    /// A sign of progress; leaves the body at once when the run was aborted (another CPU
    /// failed or hung).
    pub fn progress(&mut self) {
        self.progress_slot().tick(cpu::tod());
        // Between two steps of a body: a quiescent point (deferred frames, 6/6).
        crate::vm::quiescent();
        if self.run.abort.load(Ordering::Relaxed) {
            abandon();
        }
    }

    /// Waits until every CPU of the run has arrived here; leaves the body when the run
    /// is aborted meanwhile.
    pub fn barrier(&mut self) {
        self.progress_slot().enter(Phase::AtBarrier, cpu::tod());
        let aborted = self
            .run
            .barrier
            .wait(|| self.run.abort.load(Ordering::Relaxed));
        self.progress_slot().enter(Phase::Running, cpu::tod());
        crate::vm::quiescent();
        if aborted.is_err() {
            abandon();
        }
    }

    /// Whether every other CPU of the run waits at the barrier in its current round, where
    /// the watchdog does not take it for hung. A body that sets up a race, or a hang, with
    /// the others out of the way polls this (with [`CpuTest::progress`] in between); it
    /// stays false if another part ends without reaching the barrier.
    pub fn others_wait_at_the_barrier(&self) -> bool {
        self.run.barrier.waiting() == self.cpus() - 1
    }

    /// Whether every secondary CPU of the run but this one has left its part (its job
    /// returned), so that the run's end will not wait for it: polled by CPU 0, which
    /// then reaches the end without passing the quiescent point that waiting is (so
    /// without [`CpuTest::progress`], also one, in between).
    pub fn others_have_left(&self) -> bool {
        self.run
            .cpus
            .iter()
            .enumerate()
            .skip(1)
            .filter(|&(i, _)| i != self.index)
            .all(|(_, &nr)| smp::job_finished(nr))
    }

    /// Sets the watchdog's limit until the run ends or is aborted (which brings the
    /// starting limit back). Only a CPU that runs its part is judged by it, so with every
    /// other CPU waiting at the barrier a body can make it short without a CPU that the
    /// host holds up being taken for hung.
    pub fn set_watchdog_ms(&mut self, ms: u64) {
        self.run.limit.store(ms_to_tod(ms), Ordering::Relaxed);
    }

    /// Whether the run was aborted (for bodies that end early on their own).
    pub fn aborted(&self) -> bool {
        self.run.abort.load(Ordering::Relaxed)
    }

    /// Records a failed check at `file:line`; the body goes on.
    pub fn fail_at(&mut self, file: &str, line: u32, message: fmt::Arguments<'_>) {
        self.record(Message::Failure(format!("{message} at {file}:{line}")));
    }

    /// Records a diagnostic, printed with the CPU number when the run is reported.
    pub fn diag(&mut self, message: fmt::Arguments<'_>) {
        self.record(Message::Diag(format!("{message}")));
    }

    /// Runs `f`, which must raise the program interruption `code` on this CPU (see
    /// [`Test::expect_pgm`]); records a failure otherwise.
    #[track_caller]
    pub fn expect_pgm(&mut self, code: u16, f: impl FnOnce()) -> Option<PgmInfo> {
        let at = core::panic::Location::caller();
        match super::machine::expect_pgm(code, f) {
            Ok(info) => Some(info),
            Err((info, message)) => {
                self.fail_at(at.file(), at.line(), format_args!("{message}"));
                info
            }
        }
    }

    fn record(&mut self, message: Message) {
        self.progress_slot().tick(cpu::tod());
        self.run.messages[self.index].lock().push(message);
    }
}

/// A watchdog limit in milliseconds as a TOD-clock interval.
fn ms_to_tod(ms: u64) -> u64 {
    cpu::us_to_tod(ms.saturating_mul(1000))
}

/// Leaves this CPU's part of the body: the run was aborted.
fn abandon() -> ! {
    interrupts::abandon(PgmInfo {
        code: ABANDONED,
        ilen: 0,
        psw: Psw {
            mask: cpu::current_psw_mask(),
            addr: 0,
        },
        teid: 0,
    })
}

/// Runs `body` on `options.cpus` CPUs at once: CPU 0 (this one) and the first online
/// secondaries. Returns what each CPU recorded, where a hung one was, and which were
/// abandoned; the caller decides what that means (see [`Test::on_cpus`]).
pub fn run(
    options: Options,
    body: &(dyn Fn(&mut CpuTest<'_>) + Sync),
) -> Result<RunReport, TooFewCpus> {
    run_with_first_tick(options, TICK_US, body)
}

/// [`run`] with the first tick of CPU 0's watchdog `first_tick_us` microseconds after
/// the start instead of one tick ([`TICK_US`]): with 0 it is pending before CPU 0 enters the
/// body, which the watchdog must survive (a test of the watchdog itself).
pub fn run_with_first_tick(
    options: Options,
    first_tick_us: u64,
    body: &(dyn Fn(&mut CpuTest<'_>) + Sync),
) -> Result<RunReport, TooFewCpus> {
    assert_eq!(this_cpu(), 0, "multi-CPU runs start on CPU 0");
    let online = smp::online();
    if options.cpus == 0 || options.cpus > online.len() {
        return Err(TooFewCpus {
            wanted: options.cpus,
            online: online.len(),
        });
    }
    let cpus: Vec<CpuNr> = online[..options.cpus].to_vec();
    let now = cpu::tod();
    let shared = Arc::new(Shared {
        progress: cpus.iter().map(|_| Progress::new(now)).collect(),
        barrier: Barrier::new(cpus.len(), WaitQueue::new()),
        abort: AtomicBool::new(false),
        messages: cpus.iter().map(|_| CpuMutex::new(Vec::new())).collect(),
        hung: cpus.iter().map(|_| HungSlot::default()).collect(),
        abandoned: cpus.iter().map(|_| AtomicBool::new(false)).collect(),
        limit: AtomicU64::new(ms_to_tod(options.watchdog_ms)),
        start_limit: ms_to_tod(options.watchdog_ms),
        seed: options.seed,
        coordinator_in_body: AtomicBool::new(false),
        cpus,
    });
    {
        let mut active = ACTIVE.lock();
        assert!(active.is_none(), "multi-CPU runs do not nest");
        *active = Some(shared.clone());
    }
    let run = Run { shared, body };
    let shared = &*run.shared;
    let parts: Vec<_> = (1..shared.cpus.len())
        .map(|index| {
            let run = &run;
            move || part(run, index)
        })
        .collect();
    // The secondaries hold grace periods up while they run their parts (6/6).
    for &nr in &shared.cpus[1..] {
        crate::vm::set_cpu_active(nr, true);
    }
    let result = smp::scope(
        |scope| {
            for (job, index) in parts.iter().zip(1..) {
                if let Err(e) = scope.spawn(shared.cpus[index], job) {
                    shared.messages[index]
                        .lock()
                        .push(Message::Failure(format!("could not start its part: {e:?}")));
                    shared.progress[index].enter(Phase::Done, cpu::tod());
                    shared.abort();
                }
            }
            let armed = cpu::tod();
            interrupts::arm_timer(armed + cpu::us_to_tod(first_tick_us));
            if first_tick_us == 0 {
                // QEMU makes a clock-comparator interruption pending from a host timer,
                // not at once: wait (external interruptions still off) so that it is
                // pending when CPU 0 enables them.
                while cpu::tod() < armed + cpu::us_to_tod(FIRST_TICK_SETTLE_US) {
                    core::hint::spin_loop();
                }
            }
            interrupts::with_external_enabled(|| part(&run, 0));
            interrupts::disarm_timer();
        },
        |_| {
            // Waiting for the others, CPU 0 holds nothing.
            crate::vm::quiescent();
            watchdog(shared, None);
            interrupts::arm_timer(cpu::tod() + cpu::us_to_tod(TICK_US));
            cpu::enabled_wait_for_external();
            interrupts::disarm_timer();
        },
    );
    interrupts::disarm_timer();
    for &nr in &shared.cpus[1..] {
        crate::vm::set_cpu_active(nr, false);
    }
    // The secondaries hold nothing now, and CPU 0 neither, out of its part: a quiescent
    // point, for a grace period a secondary started while CPU 0 ran its part (the wait
    // above, which passes one, does not run when the secondaries finished first). Then
    // free what waited, so no later test's allocation frees it.
    if crate::vm::available() {
        crate::vm::quiescent();
        crate::vm::with(|mm| mm.reap_deferred());
    }
    *ACTIVE.lock() = None;
    if let Err(info) = result {
        // Only CPU 0's own bookkeeping runs outside its part's recovery scope.
        shared.messages[0].lock().push(Message::Failure(format!(
            "program interruption 0x{:x} at 0x{:x} outside the body",
            info.code,
            info.instruction_address()
        )));
    }
    Ok(report(shared))
}

/// One CPU's part: the body under a recovery scope, then its outcome.
fn part(run: &Run<'_>, index: usize) {
    let shared = &*run.shared;
    if index > 0 {
        // A body may fault in a page from the virtio-blk disk on this CPU.
        crate::io::channel::enable_here();
    }
    let progress = &shared.progress[index];
    progress.enter(Phase::Running, cpu::tod());
    let mut ctx = CpuTest { index, run: shared };
    let result = crate::trap::catch(|| {
        if index == 0 {
            shared.coordinator_in_body.store(true, Ordering::Relaxed);
        }
        (run.body)(&mut ctx);
    });
    if index == 0 {
        shared.coordinator_in_body.store(false, Ordering::Relaxed);
    }
    crate::trap::restore_kernel_state();
    match result {
        Ok(()) => {}
        Err(info) if info.code == ABANDONED => {
            shared.abandoned[index].store(true, Ordering::Relaxed);
        }
        Err(info) => {
            shared.messages[index].lock().push(Message::Failure(format!(
                "program interruption 0x{:x} at 0x{:x} ilen {} teid 0x{:x}",
                info.code,
                info.instruction_address(),
                info.ilen,
                info.teid
            )));
            shared.abort();
        }
    }
    progress.enter(Phase::Done, cpu::tod());
    if index > 0 {
        // Done: the secondary holds nothing now, and it passes no quiescent point until
        // the run ends; the others may go on freeing frames of discarded pages (6/6).
        crate::vm::set_cpu_active(shared.cpus[index], false);
    }
}

/// Looks at every CPU's progress; stops the hung ones (from CPU 0's timer
/// interruption, `frame` is what it interrupted: CPU 0's own part, which is unwound if it
/// is the one that hangs). Takes no lock and allocates nothing.
fn watchdog(run: &Shared, mut frame: Option<&mut InterruptFrame>) {
    let now = cpu::tod();
    let limit = run.limit.load(Ordering::Relaxed);
    let health = cpus::check(&run.progress, now, limit, |index| {
        let idle = cpu::tod_to_us(now.saturating_sub(run.progress[index].last()));
        let slot = &run.hung[index];
        if index == 0 {
            // CPU 0's own part: only when the timer interrupted it there (not in a wait
            // or an interruption handler, which cannot be unwound).
            let Some(frame) = frame.as_deref_mut() else {
                return;
            };
            if !run.coordinator_in_body.load(Ordering::Relaxed)
                || interrupts::pgm_depth() > 0
                || frame.psw.mask & psw_mask::WAIT != 0
            {
                return;
            }
            note_hung(slot, idle, Some(frame.psw));
            run.coordinator_in_body.store(false, Ordering::Relaxed);
            run.abort();
            let info = PgmInfo {
                code: ABANDONED,
                ilen: 0,
                psw: frame.psw,
                teid: 0,
            };
            interrupts::unwind_to_catcher(frame, &info);
            return;
        }
        let nr = run.cpus[index];
        run.abort();
        let status = smp::stop_and_restart(nr);
        crate::trap::release_locks_held_by(nr);
        run.messages[index].release_held_by(nr);
        note_hung(slot, idle, status.map(|s| s.psw));
        run.progress[index].enter(Phase::Done, cpu::tod());
    });
    if matches!(health, Health::BarrierDeadlock) {
        run.abort();
    }
}

fn note_hung(slot: &HungSlot, idle_us: u64, psw: Option<Psw>) {
    slot.idle_us.store(idle_us, Ordering::Relaxed);
    if let Some(psw) = psw {
        slot.psw_mask.store(psw.mask, Ordering::Relaxed);
        slot.psw_addr.store(psw.addr, Ordering::Relaxed);
        slot.stored.store(true, Ordering::Relaxed);
    }
    slot.hung.store(true, Ordering::Release);
}

/// CPU 0's clock-comparator interruption: the watchdog, while a run is active.
pub fn timer_interrupt(frame: &mut InterruptFrame) {
    interrupts::disarm_timer();
    if this_cpu() != 0 {
        return;
    }
    // CPU 0 holds the lock only outside the windows where its timer is enabled.
    let Some(shared) = ACTIVE.try_lock().and_then(|a| a.clone()) else {
        return;
    };
    watchdog(&shared, Some(frame));
    // Armed again for as long as the run lasts (`run` disarms it when CPU 0's part
    // ends), not only while CPU 0 is inside the body: a tick that came before CPU 0
    // entered the body (its vCPU thread held up for a tick on a loaded host) once ended
    // the watchdog for the rest of the run, and a body that hung then hung the boot
    // (smp.watchdog_unwinds_a_hung_cpu0 timed out under `cargo xtask test` at load 6).
    interrupts::arm_timer(cpu::tod() + cpu::us_to_tod(TICK_US));
}

fn report(run: &Shared) -> RunReport {
    RunReport {
        parts: (0..run.cpus.len())
            .map(|i| {
                run.messages[i].release_held_by(run.cpus[i]);
                let slot = &run.hung[i];
                PartReport {
                    cpu: run.cpus[i],
                    messages: core::mem::take(&mut *run.messages[i].lock()),
                    hung: slot.hung.load(Ordering::Acquire).then(|| Hung {
                        idle_us: slot.idle_us.load(Ordering::Relaxed),
                        psw: slot.stored.load(Ordering::Relaxed).then(|| {
                            (
                                slot.psw_mask.load(Ordering::Relaxed),
                                slot.psw_addr.load(Ordering::Relaxed),
                            )
                        }),
                    }),
                    abandoned: run.abandoned[i].load(Ordering::Relaxed),
                }
            })
            .collect(),
    }
}

impl Test<'_> {
    /// Runs `body` on `cpus` CPUs at once (see [`run`]) and records the outcome: every
    /// failure with its CPU number, a hung CPU with where it was. With fewer CPUs online
    /// the test is skipped; returns whether the body ran.
    pub fn on_cpus(&mut self, cpus: usize, body: impl Fn(&mut CpuTest<'_>) + Sync) -> bool {
        let options = Options {
            cpus,
            watchdog_ms: DEFAULT_WATCHDOG_MS,
            seed: self.seed(),
        };
        match run(options, &body) {
            Ok(report) => {
                report.record(self);
                true
            }
            Err(too_few) => {
                self.skip_for(too_few);
                false
            }
        }
    }

    /// Whether `cpus` CPUs are online; skips the test (as [`Test::on_cpus`] does) if not.
    /// For tests that drive [`run`] or the CPUs themselves.
    pub fn needs_cpus(&mut self, cpus: usize) -> bool {
        let online = smp::online().len();
        if online >= cpus {
            return true;
        }
        self.skip_for(TooFewCpus {
            wanted: cpus,
            online,
        });
        false
    }

    fn skip_for(&mut self, TooFewCpus { wanted, online }: TooFewCpus) {
        self.skip(&format!("needs {wanted} CPUs, {online} online"));
    }
}
