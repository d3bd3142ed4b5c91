//! Per-CPU data: which CPU is running, and arrays with one slot per CPU.
//!
//! CPUs are numbered in the order the kernel brought them up: the boot CPU is 0, the
//! secondaries follow in READ SCP INFO order ([`super::smp`]). A CPU finds its number
//! from its CPU address (STORE CPU ADDRESS) through a table filled at bring-up, so the
//! lookup works with DAT on or off, in handlers and in normal code alike (the lowcore,
//! where Linux keeps its per-CPU pointer, is unmapped in the kernel's address space).

use core::sync::atomic::{AtomicU16, AtomicUsize, Ordering};

/// The most CPUs the kernel runs on: QEMU's limit for s390x (248); further CPUs are
/// reported and left stopped.
pub const MAX_CPUS: usize = 248;

/// A CPU's number: 0 for the boot CPU, then in bring-up order.
pub type CpuNr = usize;

/// CPU number + 1 by CPU address (0: not a CPU the kernel knows). READ SCP INFO gives
/// 8-bit addresses; a larger one (not seen on any machine the kernel runs on) is looked
/// up in [`ADDRESSES`].
static NUMBER_OF: [AtomicU16; 256] = [const { AtomicU16::new(0) }; 256];

/// CPU address by number, for the CPUs registered so far.
static ADDRESSES: [AtomicU16; MAX_CPUS] = [const { AtomicU16::new(0) }; MAX_CPUS];

/// CPUs registered (numbers 0..COUNT are valid).
static COUNT: AtomicUsize = AtomicUsize::new(0);

/// Gives the CPU with `address` the next number, or `None` when [`MAX_CPUS`] are
/// registered. Called by CPU 0 only (boot, bring-up), before the CPU runs kernel code.
pub(super) fn register(address: u16) -> Option<CpuNr> {
    let nr = COUNT.load(Ordering::Relaxed);
    if nr >= MAX_CPUS {
        return None;
    }
    ADDRESSES[nr].store(address, Ordering::Relaxed);
    if let Some(slot) = NUMBER_OF.get(usize::from(address)) {
        slot.store(nr as u16 + 1, Ordering::Relaxed);
    }
    // Release: a CPU that sees the new count sees its slots.
    COUNT.store(nr + 1, Ordering::Release);
    Some(nr)
}

/// The number of the CPU with `address`, if registered.
pub fn number_of(address: u16) -> Option<CpuNr> {
    match NUMBER_OF.get(usize::from(address)) {
        Some(slot) => match slot.load(Ordering::Relaxed) {
            0 => None,
            n => Some(usize::from(n) - 1),
        },
        None => (0..registered()).find(|&nr| ADDRESSES[nr].load(Ordering::Relaxed) == address),
    }
}

/// The CPU address of CPU `nr`.
pub fn address_of(nr: CpuNr) -> u16 {
    ADDRESSES[nr].load(Ordering::Relaxed)
}

/// How many CPUs have numbers (the boot CPU and every secondary the kernel tried to
/// start, whether or not it came up).
pub fn registered() -> usize {
    COUNT.load(Ordering::Acquire)
}

/// The number of the CPU this runs on. Before the boot CPU is registered (the first
/// thing `kernel_main` does) there is only CPU 0.
pub fn this_cpu() -> CpuNr {
    number_of(super::cpu::cpu_address()).unwrap_or(0)
}

/// One `T` per CPU. Each CPU normally uses only its own slot ([`PerCpu::get`]); other
/// CPUs may look at it ([`PerCpu::of`]), so slots that are shared that way are atomics.
#[derive(Debug)]
pub struct PerCpu<T>([T; MAX_CPUS]);

impl<T> PerCpu<T> {
    /// One slot per CPU, with these initial values.
    pub const fn new(slots: [T; MAX_CPUS]) -> Self {
        PerCpu(slots)
    }

    /// This CPU's slot.
    pub fn get(&self) -> &T {
        &self.0[this_cpu()]
    }

    /// CPU `nr`'s slot.
    pub fn of(&self, nr: CpuNr) -> &T {
        &self.0[nr]
    }
}
