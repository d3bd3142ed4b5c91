//! `smp`: the secondary CPUs. Every CPU READ SCP INFO lists is running the kernel (or
//! was reported as failed), each in its own prefix area; signals between CPUs arrive
//! with their sender; per-CPU state stays per CPU under concurrent interruptions; TLB
//! purges reach every CPU; and the multi-CPU test harness itself reports failures,
//! program interruptions and hangs on any CPU with its number and goes on.

use crate::support::wait_until;
use alloc::vec::Vec;
use core::hint::black_box;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use kernel::arch::cpu::{self, psw_mask, sigp_status};
use kernel::arch::percpu::{CpuNr, MAX_CPUS, PerCpu, this_cpu};
use kernel::arch::smp::{self, BringUpError, CpuState, Signal};
use kernel::arch::storage::Machine;
use kernel::arch::sync::CpuMutex;
use kernel::arch::{interrupts, kspace, probe};
use kernel::ktest::Test;
use kernel::ktest::cpus::RunReport;
use kernel::ktest::smp::{Options, TICK_US, TooFewCpus, run, run_with_first_tick};
use kernel::mm::addr::VirtAddr;
use kernel::mm::dat::Walk;
use kernel::mm::machine::{PhysMem, Tlb};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("smp");

/// How long the signal tests wait for a CPU to take a signal, in microseconds.
const SIGNAL_TIMEOUT_US: u64 = 5_000_000;

/// Rounds of the lock-sleep test before a release that never found its sleeper asleep
/// counts as a failure.
const ATTEMPTS: usize = 5;

ktest! {
    /// Every CPU address READ SCP INFO lists is either running the kernel or reported
    /// with why it did not come up; with `smp.fail=ADDR` exactly that CPU failed, at
    /// SIGP SET PREFIX (a prefix beyond storage), and the others still run.
    fn every_listed_cpu_is_online_or_reported(t) [NO_MM] {
        let boot = kernel::smp::boot();
        let cpus = smp::cpus();
        check_eq!(t, cpus[0].address, cpu::cpu_address());
        check_eq!(t, cpus[0].state, CpuState::Online);
        check!(t, boot.listed.contains(&cpu::cpu_address()), "boot CPU not listed: {:?}", boot.listed);
        check_eq!(t, boot.listed.len(), 1 + boot.bring_up.len());
        let refused = kernel::cmdline::current().smp_fail;
        for b in &boot.bring_up {
            match (b.outcome, refused == Some(b.address)) {
                (Ok(nr), false) => {
                    check_eq!(t, cpus[nr].address, b.address);
                    check_eq!(t, cpus[nr].state, CpuState::Online);
                    check!(t, cpus[nr].starts >= 1);
                }
                (Err(BringUpError::Refused(cpu::SigpOrder::SetPrefix, status)), true) => {
                    check_eq!(t, status, sigp_status::INVALID_PARAMETER);
                }
                (outcome, refuse) => {
                    check!(t, false, "cpu address {}: {outcome:?} (smp.fail names it: {refuse})", b.address);
                }
            }
        }
        check_eq!(t, smp::online().len(), boot.online());
        t.diag(format_args!("{} of {} listed CPUs online", boot.online(), boot.listed.len()));
    }
}

ktest! {
    /// Each CPU runs in its own 8 KiB prefix area: STORE PREFIX on every CPU gives the
    /// lowcore its bring-up allocated (0 for CPU 0), all distinct, 8 KiB aligned, below
    /// 2 GiB; and each CPU's STORE CPU ADDRESS is the address it was started at.
    fn prefix_areas_are_distinct(t) [NO_MM] {
        let online = smp::online().len();
        static PREFIX: PerCpu<AtomicU64> = PerCpu::new([const { AtomicU64::new(u64::MAX) }; MAX_CPUS]);
        static ADDRESS: PerCpu<AtomicU64> = PerCpu::new([const { AtomicU64::new(u64::MAX) }; MAX_CPUS]);
        if !t.on_cpus(online, |c| {
            PREFIX.get().store(cpu::prefix(), Ordering::Relaxed);
            ADDRESS.get().store(u64::from(cpu::cpu_address()), Ordering::Relaxed);
            check_eq!(c, this_cpu(), c.cpu());
        }) {
            return;
        }
        let cpus = smp::cpus();
        let mut seen = Vec::new();
        for nr in smp::online() {
            let prefix = PREFIX.of(nr).load(Ordering::Relaxed);
            check_eq!(t, prefix, cpus[nr].prefix);
            check_eq!(t, ADDRESS.of(nr).load(Ordering::Relaxed), u64::from(cpus[nr].address));
            check_eq!(t, prefix % 8192, 0);
            check!(t, prefix < 1 << 31, "cpu {nr}: prefix {prefix:#x} above 2 GiB");
            check!(t, !seen.contains(&prefix), "cpu {nr}: prefix {prefix:#x} shared");
            seen.push(prefix);
        }
        check_eq!(t, PREFIX.of(0).load(Ordering::Relaxed), 0);
    }
}

ktest! {
    /// SIGP EXTERNAL CALL and EMERGENCY SIGNAL from CPU 0 wake every idle secondary,
    /// which takes each (code 0x1202 / 0x1201) with CPU 0's address as the sender.
    fn signals_reach_every_cpu_with_their_sender(t) [NO_MM] {
        let secondaries: Vec<usize> = smp::online().into_iter().skip(1).collect();
        if secondaries.is_empty() {
            t.skip("no secondary CPU online");
            return;
        }
        for nr in secondaries {
            for (kind, signal) in [(0, Signal::ExternalCall), (1, Signal::EmergencySignal)] {
                let before = smp::signals_received(nr);
                let count = |r: (u64, u64, u16)| if kind == 0 { r.0 } else { r.1 };
                check_eq!(t, smp::send(nr, signal), Ok(()));
                let arrived = wait_until(SIGNAL_TIMEOUT_US, || {
                    count(smp::signals_received(nr)) > count(before)
                });
                check!(t, arrived, "cpu {nr} did not take {signal:?}");
                check_eq!(t, smp::signals_received(nr).2, cpu::cpu_address());
            }
        }
    }
}

ktest! {
    /// A secondary's external call reaches CPU 0 in the middle of a run: CPU 0 runs its
    /// part with external interruptions enabled (for the watchdog) and takes it there.
    fn a_secondary_signals_cpu0_during_a_run(t) [NO_MM] {
        let before = smp::signals_received(0);
        let sent = AtomicUsize::new(0);
        if !t.on_cpus(2, |c| {
            if c.index() == 1 {
                check_eq!(c, smp::send(0, Signal::ExternalCall), Ok(()));
                sent.store(1, Ordering::Release);
            } else {
                // Before the barrier: its wake-up is an external call from CPU 1 too.
                let sending = wait_until(SIGNAL_TIMEOUT_US, || sent.load(Ordering::Acquire) == 1);
                let arrived = sending && wait_until(SIGNAL_TIMEOUT_US, || smp::signals_received(0).0 > before.0);
                check!(c, arrived, "cpu 0 did not take the external call");
            }
            c.barrier();
        }) {
            return;
        }
        check_eq!(t, sent.load(Ordering::Acquire), 1);
        check_eq!(t, smp::signals_received(0).2, smp::cpus()[smp::online()[1]].address);
    }
}

ktest! {
    /// A CPU that finds a lock held sleeps until the holder releases it, instead of
    /// spinning on a host core the holder may need, and the release wakes it with an
    /// external call. Twice: CPU 0 sleeping (it runs enabled, for its watchdog, whose
    /// ticks must not be what wakes it) while CPU 1 holds the lock, then CPU 1 sleeping
    /// (disabled: only the signal can wake it) while CPU 0 holds it. The holder releases
    /// the lock once the other CPU went to sleep, and waits until it has the lock.
    fn a_cpu_waiting_for_a_held_lock_sleeps_until_the_release_wakes_it(t) [NO_MM] {
        static LOCK: CpuMutex<u64> = CpuMutex::new(0);
        static CPUS: [AtomicUsize; 2] = [const { AtomicUsize::new(0) }; 2];
        // What the release did: not yet known, sent a wake-up, found nobody asleep.
        const UNKNOWN: usize = 0;
        const SENT: usize = 1;
        const NONE: usize = 2;
        let mut rounds = 0;
        for sleeper in 0..2 {
            let holder = 1 - sleeper;
            // An enabled sleeper (CPU 0) wakes for its watchdog's ticks and spins a
            // while before it sleeps again: a tick between the holder's look and its
            // release makes the release find it awake and rightly send nothing. Such a
            // round proves nothing and is run again; a release that never wakes a
            // sleeper fails every round.
            for attempt in 1..=ATTEMPTS {
                let taken = AtomicUsize::new(0);
                let release = AtomicUsize::new(UNKNOWN);
                rounds += 1;
                let failures = t.failures();
                if !t.on_cpus(2, |c| {
                    CPUS[c.index()].store(c.cpu(), Ordering::Relaxed);
                    if c.index() == holder {
                        let guard = LOCK.lock();
                        let sleeps = LOCK.sleeps();
                        c.barrier();
                        // Asleep now, not only once (see above).
                        let asleep = wait_until(SIGNAL_TIMEOUT_US, || {
                            LOCK.sleeps() > sleeps && LOCK.has_sleepers()
                        });
                        check!(c, asleep, "the other cpu did not sleep on the held lock");
                        // The sleeper's count of external calls could also be a
                        // barrier's wake-up; the lock's own count is the release's.
                        let wakes = LOCK.wakes();
                        drop(guard);
                        let sent = LOCK.wakes() > wakes;
                        release.store(if sent { SENT } else { NONE }, Ordering::Release);
                        let woken = wait_until(SIGNAL_TIMEOUT_US, || taken.load(Ordering::Acquire) == 1);
                        check!(c, woken, "the other cpu did not take the released lock");
                    } else {
                        c.barrier();
                        let before = smp::signals_received(c.cpu()).0;
                        *LOCK.lock() += 1;
                        taken.store(1, Ordering::Release);
                        let decided = wait_until(SIGNAL_TIMEOUT_US, || release.load(Ordering::Acquire) != UNKNOWN);
                        check!(c, decided, "the holder never said what its release did");
                        if release.load(Ordering::Acquire) == SENT {
                            let (calls, _, sender) = smp::signals_received(c.cpu());
                            check!(c, calls > before, "not woken by an external call");
                            let from = smp::cpus()[CPUS[holder].load(Ordering::Relaxed)].address;
                            check_eq!(c, sender, from);
                        }
                    }
                }) {
                    return;
                }
                // A round that failed a check is not run again.
                if release.load(Ordering::Acquire) == SENT || t.failures() > failures {
                    break;
                }
                t.diag(format_args!("cpu {sleeper} was awake at the release, round {attempt} of {ATTEMPTS}"));
                if attempt == ATTEMPTS {
                    check!(t, false, "the release sent no wake-up in {ATTEMPTS} rounds (cpu {sleeper} sleeping)");
                    return;
                }
            }
        }
        check_eq!(t, *LOCK.lock(), rounds);
    }
}

ktest! {
    /// A multi-CPU run leaves CPU 0 no external call to take later: each secondary's
    /// "job done" signal is taken before the run returns. The secondary ends its part
    /// right after CPU 0 ends its own, so CPU 0 finds the job done with external
    /// interruptions off; then CPU 0 opens a window for them, 50 times. A signal left
    /// pending reached the next test: the lock-sleep test saw its sender be the CPU of
    /// the run before (smp8, ktest.seed=7946897045402592956, shuffled).
    fn a_run_leaves_cpu0_no_external_call_to_take_later(t) [NO_MM] {
        if !t.needs_cpus(2) {
            return;
        }
        let mut late = 0;
        for _ in 0..50 {
            let released = core::sync::atomic::AtomicBool::new(false);
            if !t.on_cpus(2, |c| {
                if c.index() == 0 {
                    released.store(true, Ordering::Release);
                } else {
                    crate::support::spin_until(|| released.load(Ordering::Acquire));
                }
            }) {
                return;
            }
            let before = smp::signals_received(0).0;
            kernel::arch::interrupts::with_external_enabled(|| ());
            if smp::signals_received(0).0 != before {
                late += 1;
            }
        }
        check_eq!(t, late, 0);
    }
}

ktest! {
    /// Per-CPU data stays per CPU: on every CPU at once, each writes its number into its
    /// own slot and, 200 times, takes a program interruption it expects, caught by its
    /// own recovery scope with its own code and address, while the others do the same.
    fn per_cpu_state_under_concurrent_interruptions(t) [NO_MM] {
        static SLOT: PerCpu<AtomicUsize> = PerCpu::new([const { AtomicUsize::new(usize::MAX) }; MAX_CPUS]);
        let online = smp::online().len();
        t.on_cpus(online, |c| {
            SLOT.get().store(c.cpu(), Ordering::Relaxed);
            c.barrier();
            for round in 0..200 {
                let (code, f): (u16, fn()) = if (round + c.index()) % 2 == 0 {
                    (0x01, probe::invalid_opcode)
                } else {
                    (0x06, probe::misaligned_lpswe)
                };
                let info = c.expect_pgm(code, f);
                check!(c, info.is_some_and(|i| i.code == code), "round {round}: {info:?}");
                check_eq!(c, this_cpu(), c.cpu());
                if round % 50 == 0 {
                    c.progress();
                }
            }
            c.barrier();
            for nr in smp::online().into_iter().take(c.cpus()) {
                check_eq!(c, SLOT.of(nr).load(Ordering::Relaxed), nr);
            }
        });
    }
}

ktest! {
    /// Each CPU takes its interruptions on its own stacks: every CPU at once makes
    /// 5000 supervisor calls, each with a value of its own in a register, and gets every
    /// value back (a handler frame shared with another CPU would hand back the other's).
    fn interruption_frames_are_per_cpu(t) [NO_MM] {
        let online = smp::online().len();
        t.on_cpus(online, |c| {
            for i in 0..5000u64 {
                let value = ((c.cpu() as u64) << 32) | i;
                let back = probe::svc_round_trip(value);
                if back != value {
                    check_eq!(c, back, value);
                    return;
                }
                if i % 1000 == 0 {
                    c.progress();
                }
            }
        });
    }
}

ktest! {
    /// Expecting an interruption is per CPU: while CPU 1 expects one, an interruption
    /// CPU 2 did not expect still gets its crash report (exactly one), and CPU 2's
    /// recovery scope, not CPU 1's, catches it.
    fn expectations_are_per_cpu(t) [EXPECTS_PGM, NO_MM] {
        let before = kernel::trap::reports_printed();
        if smp::online().len() >= 3 {
            t.diag(format_args!("one crash report of cpu {}'s caught interruption follows", smp::online()[2]));
        }
        if !t.on_cpus(3, |c| {
            let expecting = (c.index() == 1).then(kernel::trap::expecting);
            c.barrier();
            if c.index() == 2 {
                let caught = kernel::trap::catch(probe::invalid_opcode);
                check!(c, caught.is_err_and(|i| i.code == 0x01), "{caught:?}");
            }
            c.barrier();
            drop(expecting);
        }) {
            return;
        }
        check_eq!(t, kernel::trap::reports_printed(), before + 1);
    }
}

ktest! {
    /// Each secondary runs on its own stack with an unmapped guard page below it: a
    /// runaway recursion on a secondary ends in a translation exception at its guard
    /// page, which the kernel names as that CPU's main stack.
    fn secondary_stacks_have_guard_pages(t) [EXPECTS_PGM, NO_MM] {
        fn recurse(depth: u64) -> u64 {
            let frame = [depth; 64];
            if depth == 0 {
                return 0;
            }
            recurse(depth - 1) + u64::from(black_box(frame)[0] != 0)
        }
        t.on_cpus(2, |c| {
            if c.index() != 1 {
                return;
            }
            let info = c.expect_pgm(0x11, || {
                black_box(recurse(black_box(1_000_000)));
            });
            if let Some(info) = info {
                check_eq!(c, kernel::trap::guard_page_hit(&info), Some((c.cpu(), "main")));
            }
        });
    }
}

/// A page of its own on the heap, which only the test touches.
#[repr(C, align(4096))]
struct Page([u8; 4096]);

/// The kernel's PTE for `va`: its address and value.
fn kernel_pte(va: u64) -> Option<(kernel::mm::addr::PhysAddr, u64)> {
    let space = kspace::kernel_space_view()?;
    match space.walk(&Machine, VirtAddr::new(va)) {
        Walk::Pte { addr, pte } if pte.is_valid() => Some((addr, pte.bits())),
        _ => None,
    }
}

/// CPU 1 caches a translation, CPU 0 takes it away, CPU 1 must fault: `invalidate`
/// runs on CPU 0 between the two accesses, the old PTE is put back afterwards.
fn purge_reaches_other_cpu(
    t: &mut kernel::ktest::Test<'_>,
    invalidate: fn(kernel::mm::addr::PhysAddr, u64, u64),
) {
    let page = alloc::boxed::Box::new(Page([0x5a; 4096]));
    let va = page.0.as_ptr() as u64;
    let Some((pte_addr, pte)) = kernel_pte(va) else {
        check!(t, false, "page {va:#x} not mapped");
        return;
    };
    t.on_cpus(2, |c| {
        for round in 0..20 {
            if c.index() == 1 {
                // Into this CPU's TLB.
                check_eq!(c, read_kernel_byte(va), 0x5a);
            }
            c.barrier();
            if c.index() == 0 {
                invalidate(pte_addr, va, pte);
            }
            c.barrier();
            if c.index() == 1 {
                let info = c.expect_pgm(0x11, || {
                    black_box(read_kernel_byte(va));
                });
                check!(
                    c,
                    info.is_some_and(|i| i.teid & !0xfff == va),
                    "round {round}: {info:?}"
                );
            }
            c.barrier();
            if c.index() == 0 {
                Machine.write_u64(pte_addr, pte);
            }
            c.barrier();
        }
    });
    drop(page);
}

/// Reads the first byte at kernel address `va` through the kernel's map.
fn read_kernel_byte(va: u64) -> u8 {
    Machine.frame_ref(kernel::mm::addr::PhysAddr::new(va).pfn())[0]
}

ktest! {
    /// IPTE invalidates a PTE in every CPU's TLB, not only the issuer's (no
    /// local-clearing control): after CPU 0 invalidates a page, CPU 1, which had just
    /// used the translation, takes a page-translation exception.
    fn ipte_purges_every_cpu(t) [EXPECTS_PGM, NO_MM] {
        purge_reaches_other_cpu(t, |pte_addr, va, _| {
            Machine.invalidate_page(pte_addr, VirtAddr::new(va));
        });
    }
}

ktest! {
    /// The memory manager's full TLB flush (after freeing tables) reaches every CPU:
    /// with the PTE made invalid in storage and the flush issued on CPU 0, CPU 1 can no
    /// longer use the translation it had cached.
    fn full_flush_purges_every_cpu(t) [EXPECTS_PGM, NO_MM] {
        purge_reaches_other_cpu(t, |pte_addr, _, _| {
            Machine.write_u64(pte_addr, kernel::mm::dat::Pte::EMPTY.bits());
            Machine.flush_all();
        });
    }
}

/// The watchdog of a run with a hung part while the other parts make their way to the
/// barrier: long enough that a secondary whose vCPU thread the host holds up is not taken
/// for hung too. Alone, CPU 0 is the only part there is.
fn start_watchdog_ms(cpus: usize) -> u64 {
    if cpus > 1 {
        300
    } else {
        PENDING_TICK_WATCHDOG_MS
    }
}

/// The watchdog once every other part waits at the barrier, where the watchdog never
/// takes a CPU for hung, and the hung part spins: the first of CPU 0's ticks after it
/// finds the part hung. The abort that follows brings the starting limit back for the
/// parts that leave the barrier.
const HUNG_PART_WATCHDOG_MS: u64 = 1;

/// The hung part's watchdog when CPU 0's first tick is already pending as the run
/// starts: two ticks, so that QEMU delivering that tick late, inside the hung part,
/// cannot be what finds it; a tick armed anew must (the watchdog once stopped after the
/// pending tick, and the hung body hung the boot).
const PENDING_TICK_WATCHDOG_MS: u64 = 2 * TICK_US / 1000;

/// A run on `cpus` CPUs in which the part with index `hung` spins forever once the others
/// wait at a barrier, under the watchdog of [`HUNG_PART_WATCHDOG_MS`] from then on
/// ([`PENDING_TICK_WATCHDOG_MS`] with a first tick already pending); CPU 0's watchdog
/// ticks first after `first_tick_us`.
fn run_with_a_hung_part(
    cpus: usize,
    hung: usize,
    first_tick_us: u64,
    seed: u64,
) -> Result<RunReport, TooFewCpus> {
    let options = Options {
        cpus,
        watchdog_ms: start_watchdog_ms(cpus),
        seed,
    };
    let hung_limit_ms = if first_tick_us == 0 {
        PENDING_TICK_WATCHDOG_MS
    } else {
        HUNG_PART_WATCHDOG_MS
    };
    run_with_first_tick(options, first_tick_us, &|c| {
        if c.index() == hung {
            while !c.others_wait_at_the_barrier() {
                c.progress();
            }
            c.set_watchdog_ms(hung_limit_ms);
            loop {
                black_box(());
            }
        }
        c.barrier();
    })
}

ktest! {
    /// The harness: a secondary that stops making progress is found by the watchdog on
    /// CPU 0, reported with where it was, stopped and restarted; the other CPUs leave
    /// their barrier; afterwards the CPU runs the next body normally.
    fn watchdog_stops_a_hung_secondary_and_the_run_goes_on(t) [NO_MM] {
        if !t.needs_cpus(2) {
            return;
        }
        let hung_cpu = smp::online()[1];
        let starts = smp::cpus()[hung_cpu].starts;
        let report = run_with_a_hung_part(smp::online().len().min(3), 1, TICK_US, t.seed());
        let Ok(report) = report else {
            check!(t, false, "{report:?}");
            return;
        };
        check_eq!(t, report.hung(), [hung_cpu]);
        let hung = report.parts[1].hung.unwrap_or_else(|| unreachable!());
        check!(t, hung.idle_us >= 1000 * HUNG_PART_WATCHDOG_MS, "{hung:?}");
        let layout = kernel::arch::image::layout();
        check!(
            t,
            hung.psw.is_some_and(|(_, addr)| (layout.text_start..layout.rodata_end).contains(&addr)),
            "psw {:x?}", hung.psw
        );
        for part in report.parts.iter().filter(|p| p.cpu != hung_cpu) {
            check!(t, part.abandoned, "cpu {} was not released from the barrier", part.cpu);
        }
        check_back_online(t, hung_cpu, starts);
    }
}

/// How long CPU 1 goes on without progress after the abort in
/// `an_abort_restores_the_watchdog_limit_a_body_shortened`: several of CPU 0's ticks, each
/// a look of the watchdog at it.
const LINGER_AFTER_ABORT_US: u64 = 5 * TICK_US;

ktest! {
    /// The harness: an abort brings back the watchdog limit the run started with, so a
    /// part that takes longer to leave than a limit some body shortened is not taken
    /// for hung. CPU 1 runs without progress (under the run's long limit); CPU 0, with
    /// its ticks held off so the watchdog never looks in between, shortens the limit to
    /// 1 ms and takes an unexpected program interruption, which aborts the run. CPU 1
    /// sees the abort and goes on for several ticks before it leaves: with the 1 ms limit
    /// still in force the watchdog would stop it as hung.
    fn an_abort_restores_the_watchdog_limit_a_body_shortened(t) [NO_MM] {
        if !t.needs_cpus(2) {
            return;
        }
        let spinning = AtomicBool::new(false);
        let options = Options { cpus: 2, watchdog_ms: 20_000, seed: t.seed() };
        let report = run(options, &|c| {
            if c.index() == 1 {
                spinning.store(true, Ordering::Release);
                while !c.aborted() {
                    core::hint::spin_loop();
                }
                wait_until(LINGER_AFTER_ABORT_US, || false);
                return;
            }
            while !spinning.load(Ordering::Acquire) {
                core::hint::spin_loop();
            }
            let _quiet = kernel::trap::expecting();
            interrupts::with_external_disabled(|| {
                c.set_watchdog_ms(1);
                probe::invalid_opcode();
            });
        });
        let Ok(report) = report else {
            check!(t, false, "{report:?}");
            return;
        };
        check_eq!(t, report.hung(), Vec::<usize>::new());
        let failures = report.failures_of(report.parts[0].cpu);
        check!(
            t,
            failures.len() == 1 && failures[0].starts_with("program interruption 0x1 at "),
            "{failures:?}"
        );
        check!(t, !report.parts[1].abandoned, "cpu 1 was abandoned, not left on its own");
    }
}

/// CPU `nr`, restarted once since it had `starts` starts, is online again and runs the
/// next multi-CPU body.
fn check_back_online(t: &mut Test<'_>, nr: CpuNr, starts: u64) {
    let after = smp::cpus()[nr];
    check_eq!(t, after.state, CpuState::Online);
    check_eq!(t, after.starts, starts + 1);
    let again = AtomicUsize::new(0);
    t.on_cpus(2, |c| {
        again.fetch_add(1, Ordering::Relaxed);
        c.barrier();
    });
    check_eq!(t, again.load(Ordering::Relaxed), 2);
}

ktest! {
    /// The watchdog's way out for a hung secondary works on a CPU that hangs in an
    /// enabled wait, not only on one that spins: stopped in its idle wait (the PSW it
    /// stops with has the wait bit), restarted, the CPU comes back online, counts one
    /// start, and runs the next job. (QEMU's TCG leaves such a CPU halted after SIGP
    /// RESTART, see `arch::smp::restart`.)
    fn a_cpu_stopped_in_a_wait_restarts_and_runs_the_next_job(t) [NO_MM] {
        if !t.needs_cpus(2) {
            return;
        }
        let nr = smp::online()[1];
        // An idle CPU waits; one that took an interruption just now may not yet be back
        // in its wait, so a few tries, each after a pause.
        let mut waiting = false;
        for _ in 0..5 {
            wait_until(2000, || false);
            let starts = smp::cpus()[nr].starts;
            let status = smp::stop_and_restart(nr);
            check!(t, status.is_some(), "cpu {nr} was not stopped");
            check_back_online(t, nr, starts);
            waiting = status.is_some_and(|s| s.psw.mask & psw_mask::WAIT != 0);
            if waiting || t.failures() > 0 {
                break;
            }
        }
        check!(t, waiting, "cpu {nr} was never stopped in its wait");
    }
}

ktest! {
    /// The harness: CPU 0 hanging in its own part is found by its timer and unwound out
    /// of it; the secondaries are released from their barrier. Twice: with the usual
    /// first tick, and with one already pending when CPU 0 enables external
    /// interruptions, before it enters the body (the watchdog must stay armed for the
    /// body: it once stopped there, and the hung body hung the boot).
    fn watchdog_unwinds_a_hung_cpu0(t) [NO_MM] {
        for first_tick_us in [TICK_US, 0] {
            let report = run_with_a_hung_part(smp::online().len().min(2), 0, first_tick_us, t.seed());
            let Ok(report) = report else {
                check!(t, false, "{report:?}");
                return;
            };
            check_eq!(t, report.hung(), [0]);
            check!(t, report.parts[0].abandoned, "first tick after {first_tick_us} us");
            for part in &report.parts[1..] {
                check!(t, part.abandoned, "cpu {} was not released from the barrier", part.cpu);
            }
        }
    }
}

ktest! {
    /// The harness: a program interruption nobody expected on a secondary fails the run
    /// with that CPU's number and the interruption code; the other CPUs are released
    /// from the barrier they wait at; the run (and the test run) go on.
    fn a_secondarys_program_interruption_fails_the_run_with_its_number(t) [NO_MM] {
        if !t.needs_cpus(2) {
            return;
        }
        let victim = smp::online()[1];
        let options = Options { cpus: smp::online().len().min(3), watchdog_ms: 20_000, seed: t.seed() };
        let report = run(options, &|c| {
            if c.index() == 1 {
                // Quiet: this test expects the crash report's absence of a catcher of
                // its own, not the report itself.
                let _quiet = kernel::trap::expecting();
                probe::invalid_opcode();
            }
            c.barrier();
        });
        let Ok(report) = report else {
            check!(t, false, "{report:?}");
            return;
        };
        check!(t, !report.passed());
        let failures = report.failures_of(victim);
        check!(
            t,
            failures.len() == 1 && failures[0].starts_with("program interruption 0x1 at "),
            "{failures:?}"
        );
        check!(t, report.hung().is_empty());
        for part in report.parts.iter().filter(|p| p.cpu != victim) {
            check!(t, part.abandoned, "cpu {} still waits", part.cpu);
        }
        // The CPU took the interruption in its job and is idle again.
        check_eq!(t, smp::cpus()[victim].state, CpuState::Online);
    }
}

ktest! {
    /// The harness: checks that fail on any CPU are recorded against the test with the
    /// CPU's number, in CPU order, whatever order the CPUs failed in.
    fn failures_are_reported_per_cpu_in_order(t) [NO_MM] {
        if !t.needs_cpus(2) {
            return;
        }
        let cpus = smp::online().len().min(4);
        let options = Options { cpus, watchdog_ms: 20_000, seed: t.seed() };
        let report = run(options, &|c| {
            // Fail in reverse CPU order.
            for _ in 0..(c.cpus() - c.index()) {
                c.barrier();
            }
            check_eq!(c, c.index(), usize::MAX);
            for _ in 0..=c.index() {
                c.barrier();
            }
        });
        let Ok(report) = report else {
            check!(t, false, "{report:?}");
            return;
        };
        let order: Vec<usize> = report.parts.iter().map(|p| p.cpu).collect();
        check_eq!(t, order, smp::online()[..cpus].to_vec());
        for part in &report.parts {
            let failures = report.failures_of(part.cpu);
            check!(t, failures.len() == 1 && failures[0].contains("check_eq failed"), "{failures:?}");
        }
    }
}
