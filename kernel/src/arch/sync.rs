//! Lock recovery for paths that abandon a lock holder.

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
