//! Multi-CPU tests, the parts that need no machine: the barrier the CPUs of a test meet
//! at, the progress each CPU reports, the watchdog's verdict over them, and the report
//! of a run in the test's KTAP output. The machine side (starting the body on the CPUs,
//! the watchdog's timer, stopping a hung CPU) is [`super::smp`].
//!
//! Everything here is lock-free and allocation-free where the watchdog uses it: it runs
//! in CPU 0's timer interruption, which may have interrupted CPU 0 in the allocator.

use super::test::Test;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};

/// Where one CPU of a multi-CPU test stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Running the body.
    Running = 0,
    /// Waiting at the barrier for the others.
    AtBarrier = 1,
    /// Done: the body returned, was cut short, or the CPU was stopped.
    Done = 2,
}

/// What one CPU last reported: its phase and the time of its last sign of progress.
#[derive(Debug, Default)]
pub struct Progress {
    phase: AtomicU8,
    last: AtomicU64,
}

impl Progress {
    /// A CPU that is running, last seen at `now`.
    pub fn new(now: u64) -> Self {
        Progress {
            phase: AtomicU8::new(Phase::Running as u8),
            last: AtomicU64::new(now),
        }
    }

    /// A sign of progress at time `now`.
    pub fn tick(&self, now: u64) {
        self.last.store(now, Ordering::Relaxed);
    }

    /// Enters `phase` at time `now`.
    pub fn enter(&self, phase: Phase, now: u64) {
        self.tick(now);
        self.phase.store(phase as u8, Ordering::Release);
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Running,
            1 => Phase::AtBarrier,
            _ => Phase::Done,
        }
    }

    /// The time of the last sign of progress.
    pub fn last(&self) -> u64 {
        self.last.load(Ordering::Relaxed)
    }
}

/// The watchdog's verdict over a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Health {
    /// Every running CPU made progress within the limit.
    Healthy,
    /// This many CPUs stopped making progress (each was passed to `on_stuck`).
    Stuck(usize),
    /// CPUs have waited at the barrier beyond the limit for CPUs that finished without
    /// arriving (a body that passes fewer barriers on some CPUs).
    BarrierDeadlock,
}

/// Checks every CPU's progress at time `now`: a running CPU whose last sign of progress
/// is more than `limit` old has stopped making progress and is passed to `on_stuck`. A
/// CPU waiting at the barrier is waiting, not stuck, unless it has waited beyond the
/// limit while some CPU is done: then the barrier can never open. (All CPUs at the
/// barrier at once, or one done while the others are still leaving it, are the normal
/// moments around a barrier and never last that long.)
pub fn check(
    progress: &[Progress],
    now: u64,
    limit: u64,
    mut on_stuck: impl FnMut(usize),
) -> Health {
    let stale = |p: &Progress| now.saturating_sub(p.last()) > limit;
    let mut stuck = 0;
    let (mut stale_waiters, mut done) = (0, 0);
    for (i, p) in progress.iter().enumerate() {
        match p.phase() {
            Phase::Running if stale(p) => {
                stuck += 1;
                on_stuck(i);
            }
            Phase::Running => {}
            Phase::AtBarrier if stale(p) => stale_waiters += 1,
            Phase::AtBarrier => {}
            Phase::Done => done += 1,
        }
    }
    if stuck > 0 {
        Health::Stuck(stuck)
    } else if stale_waiters > 0 && done > 0 {
        Health::BarrierDeadlock
    } else {
        Health::Healthy
    }
}

/// How a CPU waiting at a [`Barrier`] gives its host core away until it is woken, and how
/// the CPU that arrives last (or aborts the run) wakes it: on the machine an enabled wait
/// and SIGP (`arch::sync::WaitQueue`). A waiter that spins instead takes, on a host with
/// fewer cores than virtual CPUs, the core a CPU still on its way to the barrier needs.
pub trait Sleep {
    /// Times a waiter looks at the barrier before it sleeps: CPUs that arrive together
    /// pass without a signal and a wait.
    const SPINS_BEFORE_SLEEP: u32;
    /// Sleeps unless `ready()`; may return early, the caller asks again.
    fn sleep_unless(&self, ready: &dyn Fn() -> bool);
    /// Wakes every CPU that sleeps in [`Sleep::sleep_unless`].
    fn wake_all(&self);
}

/// A barrier for a fixed number of CPUs, reusable (sense by generation): each
/// [`Barrier::wait`] returns once all have arrived, or early when the run is aborted.
#[derive(Debug)]
pub struct Barrier<S> {
    parties: usize,
    arrived: AtomicUsize,
    generation: AtomicUsize,
    sleep: S,
}

/// The barrier was left because the run was aborted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Aborted;

impl<S: Sleep> Barrier<S> {
    /// A barrier for `parties` CPUs whose waiters sleep with `sleep`.
    pub fn new(parties: usize, sleep: S) -> Self {
        Barrier {
            parties,
            arrived: AtomicUsize::new(0),
            generation: AtomicUsize::new(0),
            sleep,
        }
    }

    /// How many parties wait at the barrier in its current round: those that arrived
    /// and have not been released (a round that opened counts from 0 again).
    pub fn waiting(&self) -> usize {
        self.arrived.load(Ordering::Acquire)
    }

    /// Waits until all parties have arrived; `aborted` is asked while waiting (whoever
    /// aborts the run calls [`Barrier::wake_all`] after).
    pub fn wait(&self, aborted: impl Fn() -> bool) -> Result<(), Aborted> {
        let generation = self.generation.load(Ordering::Acquire);
        if self.arrived.fetch_add(1, Ordering::AcqRel) + 1 == self.parties {
            self.arrived.store(0, Ordering::Relaxed);
            // Release: what every party did before arriving is visible after the wait.
            self.generation.fetch_add(1, Ordering::AcqRel);
            self.sleep.wake_all();
            return Ok(());
        }
        let released = || self.generation.load(Ordering::Acquire) != generation;
        loop {
            for _ in 0..S::SPINS_BEFORE_SLEEP {
                if released() {
                    return Ok(());
                }
                if aborted() {
                    return Err(Aborted);
                }
                core::hint::spin_loop();
            }
            self.sleep.sleep_unless(&|| released() || aborted());
        }
    }

    /// Wakes the CPUs that sleep at the barrier, so they see an abort.
    pub fn wake_all(&self) {
        self.sleep.wake_all();
    }
}

/// One line a CPU recorded during a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Message {
    /// A failed check (with its location) or an error: fails the test.
    Failure(String),
    /// A diagnostic.
    Diag(String),
}

/// Where a hung CPU was when the watchdog stopped it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hung {
    /// Microseconds since its last sign of progress.
    pub idle_us: u64,
    /// Its PSW (mask, address), if it could be stored.
    pub psw: Option<(u64, u64)>,
}

/// What one CPU of a run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartReport {
    /// The CPU's number.
    pub cpu: usize,
    /// Its failures and diagnostics, in order.
    pub messages: Vec<Message>,
    /// Set when the watchdog found it hung.
    pub hung: Option<Hung>,
    /// Its body was abandoned because the run was aborted (another CPU failed or hung).
    pub abandoned: bool,
}

/// What a multi-CPU run did, one part per CPU in the order the test numbered them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    /// One per CPU.
    pub parts: Vec<PartReport>,
}

impl RunReport {
    /// Whether nothing failed, hung or was abandoned.
    pub fn passed(&self) -> bool {
        self.parts.iter().all(|p| {
            p.hung.is_none()
                && !p.abandoned
                && !p.messages.iter().any(|m| matches!(m, Message::Failure(_)))
        })
    }

    /// The CPUs (by number) the watchdog found hung.
    pub fn hung(&self) -> Vec<usize> {
        self.parts
            .iter()
            .filter(|p| p.hung.is_some())
            .map(|p| p.cpu)
            .collect()
    }

    /// The failures of CPU number `cpu`.
    pub fn failures_of(&self, cpu: usize) -> Vec<&str> {
        self.parts
            .iter()
            .filter(|p| p.cpu == cpu)
            .flat_map(|p| &p.messages)
            .filter_map(|m| match m {
                Message::Failure(f) => Some(f.as_str()),
                Message::Diag(_) => None,
            })
            .collect()
    }

    /// Records the run in `t`, one CPU after the other: each failure fails the test with
    /// the CPU number in front, a hung CPU fails it with where it was, diagnostics are
    /// printed.
    pub fn record(&self, t: &mut Test<'_>) {
        for part in &self.parts {
            let cpu = part.cpu;
            for m in &part.messages {
                match m {
                    Message::Failure(f) => t.fail_with(format_args!("cpu {cpu}: {f}")),
                    Message::Diag(d) => t.diag(format_args!("cpu {cpu}: {d}")),
                }
            }
            if let Some(h) = part.hung {
                let ms = h.idle_us / 1000;
                match h.psw {
                    Some((mask, addr)) => t.fail_with(format_args!(
                        "cpu {cpu} stopped making progress ({ms} ms without any) at psw {mask:016x} {addr:016x}; stopped and restarted"
                    )),
                    None => t.fail_with(format_args!(
                        "cpu {cpu} stopped making progress ({ms} ms without any); its status could not be stored"
                    )),
                }
            } else if part.abandoned {
                t.diag(format_args!(
                    "cpu {cpu}: body abandoned because another CPU failed or hung"
                ));
            }
        }
        if !self.passed()
            && self.parts.iter().all(|p| p.hung.is_none())
            && self
                .parts
                .iter()
                .all(|p| !p.messages.iter().any(|m| matches!(m, Message::Failure(_))))
        {
            // Abandoned without a cause on record (a barrier nobody could reach).
            t.fail_with(format_args!(
                "the run was aborted: CPUs waited at the barrier for CPUs that had finished"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn the_watchdog_names_running_cpus_without_progress_only() {
        let parts = [
            Progress::new(0),
            Progress::new(0),
            Progress::new(0),
            Progress::new(0),
        ];
        parts[0].tick(90);
        parts[1].enter(Phase::AtBarrier, 140);
        parts[2].enter(Phase::Done, 0);
        let mut stuck = Vec::new();
        assert_eq!(check(&parts, 100, 50, |i| stuck.push(i)), Health::Stuck(1));
        assert_eq!(stuck, [3]);
        parts[0].tick(99);
        parts[3].tick(99);
        assert_eq!(check(&parts, 100, 50, |_| panic!()), Health::Healthy);
        // At the limit is still healthy; beyond it is not.
        assert_eq!(check(&parts, 149, 50, |_| {}), Health::Healthy);
        assert_eq!(check(&parts, 150, 50, |_| {}), Health::Stuck(2));
    }

    #[test]
    fn waiting_long_for_cpus_that_finished_is_a_barrier_deadlock() {
        let parts = [Progress::new(0), Progress::new(0), Progress::new(0)];
        parts[0].enter(Phase::AtBarrier, 0);
        parts[1].enter(Phase::AtBarrier, 0);
        // Everyone at the barrier: the moment before it opens, however late.
        parts[2].enter(Phase::AtBarrier, 0);
        assert_eq!(check(&parts, 1_000, 50, |_| panic!()), Health::Healthy);
        // One left it and finished while the others have not noticed yet: normal.
        parts[2].enter(Phase::Done, 990);
        assert_eq!(check(&parts, 30, 50, |_| panic!()), Health::Healthy);
        // Still waiting long after: the barrier can never open.
        assert_eq!(
            check(&parts, 1_000, 50, |_| panic!()),
            Health::BarrierDeadlock
        );
        parts[0].enter(Phase::Done, 0);
        parts[1].enter(Phase::Done, 0);
        assert_eq!(check(&parts, 1_000_000, 50, |_| {}), Health::Healthy);
    }

    /// Sleeps on a condition variable: the host's stand-in for an enabled wait and SIGP,
    /// with the same contract (the waker makes `ready` true before it wakes).
    #[derive(Debug, Default)]
    struct Condvar {
        lock: std::sync::Mutex<()>,
        cond: std::sync::Condvar,
        sleeps: AtomicUsize,
    }

    impl Sleep for Condvar {
        // The kernel's count (`arch::sync::SPINS_BEFORE_SLEEP`, not built on the host).
        const SPINS_BEFORE_SLEEP: u32 = 256;

        fn sleep_unless(&self, ready: &dyn Fn() -> bool) {
            let guard = self.lock.lock().unwrap();
            if !ready() {
                self.sleeps.fetch_add(1, Ordering::Relaxed);
                // Bounded: a lost wake-up fails the test instead of hanging it.
                let (guard, timeout) = self
                    .cond
                    .wait_timeout(guard, std::time::Duration::from_secs(5))
                    .unwrap();
                assert!(!timeout.timed_out() || ready(), "a sleeper was never woken");
                drop(guard);
            }
        }

        fn wake_all(&self) {
            let _guard = self.lock.lock().unwrap();
            self.cond.notify_all();
        }
    }

    #[test]
    fn the_barrier_holds_every_thread_until_all_arrive_many_times() {
        const THREADS: usize = 4;
        const ROUNDS: usize = 500;
        let barrier = Arc::new(Barrier::new(THREADS, Condvar::default()));
        let counter = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..THREADS)
            .map(|thread| {
                let (barrier, counter) = (barrier.clone(), counter.clone());
                std::thread::spawn(move || {
                    for round in 0..ROUNDS {
                        // One thread late now and then: the others sleep.
                        if round % 50 == thread {
                            std::thread::sleep(std::time::Duration::from_millis(1));
                        }
                        counter.fetch_add(1, Ordering::SeqCst);
                        barrier.wait(|| false).unwrap();
                        // Everyone has counted this round before anyone goes on.
                        assert!(counter.load(Ordering::SeqCst) >= (round + 1) * THREADS);
                        barrier.wait(|| false).unwrap();
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(counter.load(Ordering::SeqCst), THREADS * ROUNDS);
        assert!(
            barrier.sleep.sleeps.load(Ordering::Relaxed) > 0,
            "nobody slept"
        );
    }

    #[test]
    fn waiting_counts_the_current_round_only() {
        let barrier = Arc::new(Barrier::new(2, Condvar::default()));
        assert_eq!(barrier.waiting(), 0);
        let waiter = {
            let barrier = barrier.clone();
            std::thread::spawn(move || barrier.wait(|| false))
        };
        while barrier.waiting() == 0 {
            std::thread::yield_now();
        }
        assert_eq!(barrier.waiting(), 1);
        assert_eq!(barrier.wait(|| false), Ok(()));
        // Open: the waiter may not have noticed yet, but it no longer waits.
        assert_eq!(barrier.waiting(), 0);
        assert_eq!(waiter.join().unwrap(), Ok(()));
    }

    #[test]
    fn an_abort_releases_the_waiters_also_asleep() {
        let barrier = Arc::new(Barrier::new(2, Condvar::default()));
        let abort = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let waiter = {
            let (barrier, abort) = (barrier.clone(), abort.clone());
            std::thread::spawn(move || barrier.wait(|| abort.load(Ordering::Relaxed)))
        };
        while barrier.sleep.sleeps.load(Ordering::Relaxed) == 0 {
            std::thread::yield_now();
        }
        abort.store(true, Ordering::Relaxed);
        barrier.wake_all();
        assert_eq!(waiter.join().unwrap(), Err(Aborted));
    }

    fn recorded(report: &RunReport) -> (String, crate::ktest::Outcome) {
        let mut out = String::new();
        let outcome = {
            let mut t = Test::new(&mut out, "", 1);
            report.record(&mut t);
            t.outcome()
        };
        (out, outcome)
    }

    #[test]
    fn the_report_names_the_cpu_of_every_failure_in_cpu_order() {
        let report = RunReport {
            parts: alloc::vec![
                PartReport {
                    cpu: 0,
                    messages: alloc::vec![Message::Diag("seed 7".into())],
                    ..PartReport::default()
                },
                PartReport {
                    cpu: 2,
                    messages: alloc::vec![Message::Failure("check failed: x at a.rs:1".into())],
                    ..PartReport::default()
                },
                PartReport {
                    cpu: 3,
                    hung: Some(Hung {
                        idle_us: 20_500_000,
                        psw: Some((0x0400_0001_8000_0000, 0x1234)),
                    }),
                    ..PartReport::default()
                },
                PartReport {
                    cpu: 1,
                    abandoned: true,
                    ..PartReport::default()
                },
            ],
        };
        assert!(!report.passed());
        assert_eq!(report.hung(), [3]);
        assert_eq!(report.failures_of(2), ["check failed: x at a.rs:1"]);
        let (out, outcome) = recorded(&report);
        assert_eq!(outcome, crate::ktest::Outcome::Fail(2));
        assert_eq!(
            out,
            "# cpu 0: seed 7\n\
             # cpu 2: check failed: x at a.rs:1\n\
             # cpu 3 stopped making progress (20500 ms without any) at psw 0400000180000000 0000000000001234; stopped and restarted\n\
             # cpu 1: body abandoned because another CPU failed or hung\n"
        );
    }

    #[test]
    fn an_abort_without_a_cause_still_fails_and_a_clean_run_passes() {
        let aborted = RunReport {
            parts: alloc::vec![PartReport {
                cpu: 1,
                abandoned: true,
                ..PartReport::default()
            }],
        };
        assert_eq!(recorded(&aborted).1, crate::ktest::Outcome::Fail(1));
        let clean = RunReport {
            parts: alloc::vec![
                PartReport::default(),
                PartReport {
                    cpu: 1,
                    ..PartReport::default()
                }
            ],
        };
        assert!(clean.passed());
        assert_eq!(
            recorded(&clean),
            (String::new(), crate::ktest::Outcome::Pass)
        );
    }
}
