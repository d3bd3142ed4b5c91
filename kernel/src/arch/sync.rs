//! Locks that know which CPU holds them, and lock recovery for paths that abandon a
//! holder.
//!
//! The kernel's shared structures sit behind `spin` mutexes. Two paths must release a
//! lock whose guard will never run its destructor: a test body unwound by a program
//! interruption (`trap::catch`), and a CPU the watchdog stopped. On several CPUs they may
//! release only what *that* CPU held, never a lock another CPU holds legitimately at
//! the same moment, so [`CpuMutex`] records its holder.
//!
//! A CPU that finds a [`CpuMutex`] held spins a short while, then sleeps in an enabled
//! wait until the holder's release signals it (SIGP EXTERNAL CALL). On a host with fewer
//! cores than virtual CPUs (QEMU's TCG on a 2-core machine with 4 vCPUs) a spinning
//! waiter takes the core the holder needs to finish; a sleeping one gives it back, as
//! Linux's s390 spinlocks yield to the holder (`arch_spin_lock_wait`, diagnose 0x9c).
//! The sleeping half is a [`WaitQueue`] of its own, which the barrier of multi-CPU tests
//! uses as well.

use super::percpu::{CpuNr, MAX_CPUS, this_cpu};
use core::mem::ManuallyDrop;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering, fence};

/// No CPU holds the lock.
const NOBODY: usize = usize::MAX;

/// Tries a waiter makes before it sleeps: a lock held only for a few instructions is
/// taken without the cost of a signal and a wait (the barrier of multi-CPU tests spins
/// as long: `ktest::cpus::Sleep`).
pub const SPINS_BEFORE_SLEEP: u32 = 256;

/// One bit per CPU that may sleep on a lock.
type Sleepers = [AtomicU64; MAX_CPUS.div_ceil(64)];

/// CPUs that sleep until another CPU makes what they wait for true and wakes them: the
/// sleeping half of [`CpuMutex`], and of the barrier of multi-CPU tests.
#[derive(Debug)]
pub struct WaitQueue {
    sleepers: Sleepers,
    sleeps: AtomicU64,
    wakes: AtomicU64,
}

impl WaitQueue {
    /// A queue nobody sleeps on.
    pub const fn new() -> Self {
        WaitQueue {
            sleepers: [const { AtomicU64::new(0) }; MAX_CPUS.div_ceil(64)],
            sleeps: AtomicU64::new(0),
            wakes: AtomicU64::new(0),
        }
    }

    /// Waits enabled for an external interruption unless `ready()`. The CPU's bit is set
    /// before `ready` is asked, and a waker makes it true before it reads the bits in
    /// [`WaitQueue::wake_all`] (both with a full fence between): either this CPU sees it
    /// true, or the waker sees the bit and signals it. Any other interruption that ends
    /// the wait returns too: the caller asks again.
    pub fn sleep_unless(&self, ready: impl FnOnce() -> bool) {
        let cpu = this_cpu();
        let (word, bit) = (&self.sleepers[cpu / 64], 1u64 << (cpu % 64));
        word.fetch_or(bit, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        if !ready() {
            self.sleeps.fetch_add(1, Ordering::Relaxed);
            // Enabled already (CPU 0 in a multi-CPU test, for its watchdog): whatever
            // may interrupt the spinning may interrupt the wait. Disabled: the wake-up
            // signal alone.
            if super::cpu::current_psw_mask() & super::cpu::psw_mask::EXT != 0 {
                super::cpu::enabled_wait_for_external();
            } else {
                super::cpu::wait_for_signal();
            }
        }
        word.fetch_and(!bit, Ordering::SeqCst);
    }

    /// Signals every CPU that sleeps on the queue (SIGP EXTERNAL CALL); call it after
    /// making what they wait for true.
    pub fn wake_all(&self) {
        fence(Ordering::SeqCst);
        for (index, word) in self.sleepers.iter().enumerate() {
            if word.load(Ordering::SeqCst) == 0 {
                continue;
            }
            let mut waiting = word.swap(0, Ordering::SeqCst);
            while waiting != 0 {
                let nr = index * 64 + waiting.trailing_zeros() as usize;
                waiting &= waiting - 1;
                // A CPU that went offline sleeps no more.
                if super::smp::send(nr, super::smp::Signal::ExternalCall).is_ok() {
                    self.wakes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// How many times a CPU went to sleep on the queue (counted just before its wait).
    pub fn sleeps(&self) -> u64 {
        self.sleeps.load(Ordering::Relaxed)
    }

    /// Whether some CPU sleeps on the queue now (or is about to, or just woke).
    pub fn has_sleepers(&self) -> bool {
        self.sleepers
            .iter()
            .any(|word| word.load(Ordering::SeqCst) != 0)
    }

    /// How many wake-up signals this queue sent (the barrier and the locks send the
    /// same signal, so a count of external calls alone cannot tell whose it was).
    pub fn wakes(&self) -> u64 {
        self.wakes.load(Ordering::Relaxed)
    }
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

/// A `spin::Mutex` that records which CPU holds it and which CPUs sleep until it is
/// released.
#[derive(Debug)]
pub struct CpuMutex<T> {
    lock: spin::Mutex<T>,
    holder: AtomicUsize,
    waiters: WaitQueue,
}

/// Holds a [`CpuMutex`]; releases it when dropped.
#[derive(Debug)]
pub struct CpuMutexGuard<'a, T> {
    guard: ManuallyDrop<spin::MutexGuard<'a, T>>,
    holder: &'a AtomicUsize,
    waiters: &'a WaitQueue,
}

impl<T> CpuMutex<T> {
    /// An unlocked mutex around `value`.
    pub const fn new(value: T) -> Self {
        CpuMutex {
            lock: spin::Mutex::new(value),
            holder: AtomicUsize::new(NOBODY),
            waiters: WaitQueue::new(),
        }
    }

    /// Takes the lock: at once if it is free, else after spinning a while and then
    /// sleeping until the holder releases it (as often as another CPU takes it first).
    pub fn lock(&self) -> CpuMutexGuard<'_, T> {
        loop {
            for _ in 0..SPINS_BEFORE_SLEEP {
                if let Some(guard) = self.try_lock() {
                    return guard;
                }
                core::hint::spin_loop();
            }
            // Sleeps unless the lock is free: the release clears it before it wakes.
            self.waiters.sleep_unless(|| !self.lock.is_locked());
        }
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Option<CpuMutexGuard<'_, T>> {
        let guard = self.lock.try_lock()?;
        self.holder.store(this_cpu(), Ordering::Relaxed);
        Some(CpuMutexGuard {
            guard: ManuallyDrop::new(guard),
            holder: &self.holder,
            waiters: &self.waiters,
        })
    }

    /// How many times a CPU found the lock held after spinning and went to sleep on it
    /// (counted just before its wait).
    pub fn sleeps(&self) -> u64 {
        self.waiters.sleeps()
    }

    /// How many wake-up signals releases of this lock sent.
    pub fn wakes(&self) -> u64 {
        self.waiters.wakes()
    }

    /// Whether some CPU sleeps waiting for the lock now.
    pub fn has_sleepers(&self) -> bool {
        self.waiters.has_sleepers()
    }

    /// Whether any CPU holds the lock.
    pub fn is_locked(&self) -> bool {
        self.lock.is_locked()
    }

    /// The CPU that holds the lock, if any.
    pub fn holder(&self) -> Option<CpuNr> {
        match self.holder.load(Ordering::Relaxed) {
            NOBODY => None,
            cpu => Some(cpu),
        }
    }

    /// Whether this CPU holds the lock (a fault inside its own critical section).
    pub fn held_here(&self) -> bool {
        self.holder() == Some(this_cpu())
    }

    /// Releases the lock if CPU `cpu` holds it: only for a holder that was interrupted
    /// and will never run again (its stack frames were abandoned by an unwind, or the
    /// CPU was stopped), so no guard is left that could release it a second time.
    pub fn release_held_by(&self, cpu: CpuNr) {
        if self
            .holder
            .compare_exchange(cpu, NOBODY, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
        {
            // SAFETY: `cpu` held the lock and its guard lives in an abandoned stack
            // frame that is never resumed, so it will not unlock again; what it was
            // doing is at worst left half done, which the callers accept (a garbled
            // console line, a test's partial work).
            unsafe { self.lock.force_unlock() };
            self.waiters.wake_all();
        }
    }
}

impl<T> Deref for CpuMutexGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.guard
    }
}

impl<T> DerefMut for CpuMutexGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.guard
    }
}

impl<T> Drop for CpuMutexGuard<'_, T> {
    fn drop(&mut self) {
        // Before the spin lock opens: a CPU that takes it next records itself, and
        // nobody sees a stale holder.
        self.holder.store(NOBODY, Ordering::Relaxed);
        // SAFETY: the guard is dropped here and nowhere else, and not used after.
        unsafe { ManuallyDrop::drop(&mut self.guard) };
        self.waiters.wake_all();
    }
}

/// Releases `lock` whatever holds it: only for paths where the holder was interrupted
/// and will never run again (crash reports, a test body unwound by a program
/// interruption), so no guard is left that could release it a second time.
pub fn force_unlock<T>(lock: &spin::Mutex<T>) {
    if lock.is_locked() {
        // SAFETY: the holder's guard lives in an abandoned stack frame that is never
        // resumed, so it will not unlock again; what it was doing is at worst left half
        // done, which the callers accept (a garbled console line, a test's partial work).
        unsafe { lock.force_unlock() };
    }
}
