//! Locks that know which CPU holds them, and lock recovery for paths that abandon a
//! holder.
//!
//! The kernel's shared structures sit behind `spin` mutexes. Two paths must release a
//! lock whose guard will never run its destructor: a test body unwound by a program
//! interruption (`trap::catch`), and a CPU the watchdog stopped. On several CPUs they may
//! release only what *that* CPU held, never a lock another CPU holds legitimately at
//! the same moment, so [`CpuMutex`] records its holder.

use super::percpu::{CpuNr, this_cpu};
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicUsize, Ordering};

/// No CPU holds the lock.
const NOBODY: usize = usize::MAX;

/// A `spin::Mutex` that records which CPU holds it.
#[derive(Debug)]
pub struct CpuMutex<T> {
    lock: spin::Mutex<T>,
    holder: AtomicUsize,
}

/// Holds a [`CpuMutex`]; releases it when dropped.
#[derive(Debug)]
pub struct CpuMutexGuard<'a, T> {
    guard: spin::MutexGuard<'a, T>,
    holder: &'a AtomicUsize,
}

impl<T> CpuMutex<T> {
    /// An unlocked mutex around `value`.
    pub const fn new(value: T) -> Self {
        CpuMutex {
            lock: spin::Mutex::new(value),
            holder: AtomicUsize::new(NOBODY),
        }
    }

    /// Spins until the lock is free, then takes it.
    pub fn lock(&self) -> CpuMutexGuard<'_, T> {
        let guard = self.lock.lock();
        self.holder.store(this_cpu(), Ordering::Relaxed);
        CpuMutexGuard {
            guard,
            holder: &self.holder,
        }
    }

    /// Takes the lock if it is free.
    pub fn try_lock(&self) -> Option<CpuMutexGuard<'_, T>> {
        let guard = self.lock.try_lock()?;
        self.holder.store(this_cpu(), Ordering::Relaxed);
        Some(CpuMutexGuard {
            guard,
            holder: &self.holder,
        })
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
        // Before the spin lock opens (the field drops after this): a CPU that takes it
        // next records itself, and nobody sees a stale holder.
        self.holder.store(NOBODY, Ordering::Relaxed);
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
