//! The secondary CPUs in the kernel: started at boot from the CPU addresses READ SCP
//! INFO lists, with the outcome kept for the banner and the `smp` suite.

use crate::arch::smp::{self, BringUp, BringUpError};
use crate::println;
use alloc::vec::Vec;

/// What the boot did with the CPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Boot {
    /// The CPU addresses READ SCP INFO listed (the boot CPU among them).
    pub listed: Vec<u16>,
    /// One entry per secondary CPU the kernel tried to start.
    pub bring_up: Vec<BringUp>,
    /// Entries READ SCP INFO announced beyond its SCCB (not started).
    pub truncated: u16,
}

impl Boot {
    /// The CPUs that are running the kernel, CPU 0 included.
    pub fn online(&self) -> usize {
        1 + self.bring_up.iter().filter(|b| b.outcome.is_ok()).count()
    }
}

static BOOT: spin::Once<Boot> = spin::Once::new();

/// Starts every listed CPU other than the boot CPU; one that does not come up is
/// reported and the run goes on with the rest. `refuse` is `smp.fail=`.
pub fn start(cpus: &sclp::CpuAddresses, refuse: Option<u16>, storage_end: u64) -> &'static Boot {
    BOOT.call_once(|| {
        let listed: Vec<u16> = cpus.iter().collect();
        let bring_up = smp::start_secondaries(listed.iter().copied(), refuse, storage_end);
        Boot {
            listed,
            bring_up,
            truncated: cpus.truncated,
        }
    })
}

/// What the boot did with the CPUs (empty before [`start`]).
pub fn boot() -> Boot {
    BOOT.get().cloned().unwrap_or_default()
}

/// Prints the CPU summary for the banner, and a warning per CPU that did not come up.
pub fn print_report(boot: &Boot) {
    let addresses: Vec<alloc::string::String> = crate::arch::smp::cpus()
        .iter()
        .filter(|c| c.state == smp::CpuState::Online)
        .map(|c| alloc::format!("{}@{}", c.nr, c.address))
        .collect();
    println!(
        "smp: {} of {} listed CPUs online (cpu@address: {})",
        boot.online(),
        boot.listed.len().max(1),
        addresses.join(" ")
    );
    for b in &boot.bring_up {
        if let Err(e) = b.outcome {
            println!(
                "# warning: cpu address {} did not come up ({}); the run goes on without it",
                b.address,
                describe(e)
            );
        }
    }
    if boot.truncated > 0 {
        println!(
            "# warning: {} CPU entries did not fit READ SCP INFO's SCCB; those CPUs stay stopped",
            boot.truncated
        );
    }
}

/// A bring-up failure in words.
pub fn describe(e: BringUpError) -> alloc::string::String {
    match e {
        BringUpError::TooManyCpus => {
            alloc::format!("more than {} CPUs", crate::arch::percpu::MAX_CPUS)
        }
        BringUpError::NoMemory => "no memory below 2 GiB for its lowcore and stacks".into(),
        BringUpError::NotOperational(order) => {
            alloc::format!("SIGP {order:?}: not operational")
        }
        BringUpError::Refused(order, status) => {
            alloc::format!("SIGP {order:?} refused, status 0x{status:x}")
        }
        BringUpError::NoHandshake => "restarted but never marked itself online".into(),
    }
}
