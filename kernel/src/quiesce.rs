//! Quiescent points per CPU, and grace periods over them: the bookkeeping behind the
//! deferred freeing of discarded frames (series patch 6/6).
//!
//! A CPU passes a *quiescent point* where it can hold no stale reference to a frame and
//! no absolute address from a block-volatility exception it has not finished handling:
//! outside every interruption handler and memory-manager operation (between two
//! operations of a test body, between tests, in its idle wait). 6/6 uses the timer tick
//! and the idle notifier for the same purpose. A *grace period* starts at a
//! [`Grace`] snapshot and has elapsed once every CPU that was busy at the snapshot has
//! passed a quiescent point since, or is idle now (an idle CPU holds nothing). A frame
//! freed at the start of a grace period may be reused when it has elapsed.
//!
//! Lock-free: CPUs bump their own counter; anyone can take or test a snapshot.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// One CPU's record.
#[derive(Debug, Default)]
struct Slot {
    /// Quiescent points passed so far.
    passed: AtomicU64,
    /// The CPU waits idle, or for the memory manager's lock between two operations: it
    /// holds nothing and needs no quiescent point.
    idle: AtomicBool,
    /// The CPU runs the kernel (only those take part).
    online: AtomicBool,
    /// The one frame the CPU holds while it waits (frame number + 1; 0: none): the
    /// absolute address of a block-volatility exception it has not handled yet.
    held: AtomicU64,
}

/// Quiescent points of up to a fixed number of CPUs.
#[derive(Debug)]
pub struct Quiescence {
    slots: Vec<Slot>,
}

/// A grace period's start: each busy CPU's count at the snapshot (`None`: not taking
/// part, offline or idle then).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Grace(Vec<Option<u64>>);

impl Grace {
    /// An empty grace period (elapsed) with room for `cpus` CPUs.
    pub fn with_capacity(cpus: usize) -> Self {
        Grace(Vec::with_capacity(cpus))
    }

    /// CPU `cpu` does not hold this grace period up (the CPU that starts it holds
    /// nothing of what it retires).
    pub fn without(&mut self, cpu: usize) {
        if let Some(at) = self.0.get_mut(cpu) {
            *at = None;
        }
    }
}

impl Quiescence {
    /// Room for `cpus` CPUs, all offline.
    pub fn new(cpus: usize) -> Self {
        Quiescence {
            slots: (0..cpus).map(|_| Slot::default()).collect(),
        }
    }

    /// CPU `cpu` runs the kernel from now on (or no longer).
    pub fn set_online(&self, cpu: usize, online: bool) {
        let slot = &self.slots[cpu];
        slot.passed.fetch_add(1, Ordering::AcqRel);
        slot.online.store(online, Ordering::Release);
    }

    /// CPU `cpu` passed a quiescent point: everything it did before is done.
    pub fn quiescent(&self, cpu: usize) {
        // Release: the work before this point happens before anyone who sees the count.
        self.slots[cpu].passed.fetch_add(1, Ordering::Release);
    }

    /// CPU `cpu` starts (true) or ends (false) an idle wait. Both are quiescent points.
    pub fn set_idle(&self, cpu: usize, idle: bool) {
        let slot = &self.slots[cpu];
        slot.passed.fetch_add(1, Ordering::Release);
        slot.idle.store(idle, Ordering::Release);
    }

    /// CPU `cpu` waits holding only `frame` (`None`: it holds again what it held before:
    /// the wait is over). Neither is a quiescent point.
    pub fn set_held(&self, cpu: usize, frame: Option<u64>) {
        let value = frame.map_or(0, |f| f + 1);
        self.slots[cpu].held.store(value, Ordering::Release);
    }

    /// Starts a grace period now, into `grace` (reusing its room: no allocation once
    /// it has held as many CPUs).
    pub fn start_into(&self, grace: &mut Grace) {
        grace.0.clear();
        grace.0.extend(self.slots.iter().map(|s| {
            // The count first: a CPU that leaves its idle wait after this load bumps
            // it, so it is not mistaken for one that passed a point.
            let passed = s.passed.load(Ordering::Acquire);
            let busy = s.online.load(Ordering::Acquire) && !s.idle.load(Ordering::Acquire);
            busy.then_some(passed)
        }));
    }

    /// How many CPUs this records.
    pub fn cpus(&self) -> usize {
        self.slots.len()
    }

    /// Starts a grace period now.
    pub fn start(&self) -> Grace {
        let mut grace = Grace::with_capacity(self.slots.len());
        self.start_into(&mut grace);
        grace
    }

    /// Whether the grace period that started at `grace` has elapsed: every CPU busy at
    /// the start has passed a quiescent point since, or is idle or offline now.
    pub fn elapsed(&self, grace: &Grace) -> bool {
        self.slots.iter().zip(&grace.0).all(|(s, at)| match at {
            None => true,
            Some(at) => {
                s.passed.load(Ordering::Acquire) != *at
                    || s.idle.load(Ordering::Acquire)
                    || !s.online.load(Ordering::Acquire)
            }
        })
    }

    /// Whether the grace period that started at `grace` has elapsed for every frame but
    /// those pushed to `held`: a CPU that has not passed a point since but waits holding
    /// one frame ([`Quiescence::set_held`]) holds up that frame alone.
    pub fn elapsed_but(&self, grace: &Grace, held: &mut Vec<u64>) -> bool {
        for (s, at) in self.slots.iter().zip(&grace.0) {
            let Some(at) = at else { continue };
            if s.passed.load(Ordering::Acquire) != *at
                || s.idle.load(Ordering::Acquire)
                || !s.online.load(Ordering::Acquire)
            {
                continue;
            }
            match s.held.load(Ordering::Acquire) {
                0 => return false,
                frame => held.push(frame - 1),
            }
        }
        true
    }

    /// The CPUs that keep the grace period from elapsing (for reports).
    pub fn holders(&self, grace: &Grace) -> Vec<usize> {
        self.slots
            .iter()
            .zip(&grace.0)
            .enumerate()
            .filter(|(_, (s, at))| {
                at.is_some_and(|at| {
                    s.passed.load(Ordering::Acquire) == at
                        && !s.idle.load(Ordering::Acquire)
                        && s.online.load(Ordering::Acquire)
                })
            })
            .map(|(cpu, _)| cpu)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    #[test]
    fn a_grace_period_waits_for_every_busy_cpu() {
        let q = Quiescence::new(4);
        for cpu in 0..3 {
            q.set_online(cpu, true);
        }
        q.set_idle(2, true);
        let grace = q.start();
        // CPU 3 is offline, CPU 2 idle: only 0 and 1 matter.
        assert!(!q.elapsed(&grace));
        assert_eq!(q.holders(&grace), [0, 1]);
        q.quiescent(0);
        assert_eq!(q.holders(&grace), [1]);
        assert!(!q.elapsed(&grace));
        // CPU 2 waking up is not a point for CPU 1.
        q.set_idle(2, false);
        assert!(!q.elapsed(&grace));
        q.quiescent(1);
        assert!(q.elapsed(&grace));
        assert!(q.holders(&grace).is_empty());
    }

    #[test]
    fn a_cpu_waiting_with_one_frame_holds_up_that_frame_alone() {
        let q = Quiescence::new(3);
        for cpu in 0..3 {
            q.set_online(cpu, true);
        }
        let grace = q.start();
        q.quiescent(0);
        let mut held = Vec::new();
        assert!(!q.elapsed_but(&grace, &mut held), "CPUs 1 and 2 are busy");
        q.set_held(1, Some(0x305c));
        held.clear();
        assert!(!q.elapsed_but(&grace, &mut held), "CPU 2 is busy");
        q.set_held(2, Some(0));
        held.clear();
        assert!(q.elapsed_but(&grace, &mut held));
        assert_eq!(held, [0x305c, 0]);
        assert!(!q.elapsed(&grace), "not for every frame");
        // The wait is over: busy again, not a point.
        q.set_held(1, None);
        held.clear();
        assert!(!q.elapsed_but(&grace, &mut held));
        q.quiescent(1);
        held.clear();
        assert!(q.elapsed_but(&grace, &mut held));
        assert_eq!(held, [0]);
    }

    #[test]
    fn the_starting_cpu_can_leave_itself_out() {
        let q = Quiescence::new(2);
        q.set_online(0, true);
        let mut grace = Grace::with_capacity(2);
        q.start_into(&mut grace);
        assert!(!q.elapsed(&grace), "CPU 0 is busy");
        grace.without(0);
        assert!(q.elapsed(&grace), "one CPU: nothing to wait for");
        q.set_online(1, true);
        q.start_into(&mut grace);
        grace.without(0);
        assert_eq!(q.holders(&grace), [1]);
    }

    #[test]
    fn idle_or_offline_cpus_release_a_grace_period() {
        let q = Quiescence::new(2);
        q.set_online(0, true);
        q.set_online(1, true);
        let grace = q.start();
        q.quiescent(0);
        assert!(!q.elapsed(&grace));
        q.set_idle(1, true);
        assert!(q.elapsed(&grace));
        let grace = q.start();
        assert!(q.elapsed(&grace) || q.holders(&grace) == [0]);
        q.set_online(0, false);
        assert!(q.elapsed(&grace));
    }

    #[test]
    fn nothing_freed_in_a_grace_period_is_seen_by_a_cpu_still_inside_it() {
        // Readers take a value, use it across several steps and pass a quiescent point
        // only when done; a writer retires values and reuses one only after a grace
        // period. A reader must never see a value reused while it holds it. Both sides
        // sleep between looks instead of yielding in a loop: the test runs beside the
        // boots of `cargo xtask test`, and four yielding threads took 5 s of CPU from them.
        // A reader that sees a reuse goes offline and reports it, so the writer's wait
        // for a grace period ends and the test fails instead of hanging.
        const READERS: usize = 3;
        const NAP: std::time::Duration = std::time::Duration::from_micros(20);
        let q = Arc::new(Quiescence::new(READERS + 1));
        for cpu in 0..=READERS {
            q.set_online(cpu, true);
        }
        let current = Arc::new(AtomicUsize::new(1));
        let retired_gen = Arc::new(AtomicUsize::new(0)); // generations reused so far
        let stop = Arc::new(AtomicBool::new(false));
        let readers: Vec<_> = (0..READERS)
            .map(|cpu| {
                let (q, current, retired_gen, stop) = (
                    q.clone(),
                    current.clone(),
                    retired_gen.clone(),
                    stop.clone(),
                );
                std::thread::spawn(move || {
                    // Holds of 1 to 7 naps, different on each reader, so that the
                    // readers do not fall into step with each other and the writer.
                    let mut reused = None;
                    for hold in (1 + cpu..).map(|n| 1 + n * 3 % 7) {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let held = current.load(Ordering::Acquire);
                        for _ in 0..hold {
                            std::thread::sleep(NAP);
                            // The value held may have been retired, never reused.
                            if retired_gen.load(Ordering::Acquire) >= held {
                                reused = Some(held);
                            }
                        }
                        if reused.is_some() {
                            break;
                        }
                        q.quiescent(cpu);
                    }
                    q.set_online(cpu, false);
                    reused
                })
            })
            .collect();
        let writer = READERS;
        for generation in 1..300usize {
            current.store(generation + 1, Ordering::Release);
            let grace = q.start();
            // The writer itself holds nothing of the old generation any more.
            q.quiescent(writer);
            while !q.elapsed(&grace) {
                std::thread::sleep(NAP);
            }
            // Generation `generation` is now unreachable: "reuse" it.
            retired_gen.store(generation, Ordering::Release);
        }
        stop.store(true, Ordering::Relaxed);
        for (cpu, r) in readers.into_iter().enumerate() {
            let reused = r.join().unwrap();
            assert_eq!(reused, None, "reader {cpu} saw the value it held reused");
        }
    }
}
