//! Secondary CPUs: bring-up, signals between CPUs, running work on a CPU, and stopping
//! a CPU that hangs.
//!
//! Bring-up follows Linux (`smp.c __cpu_up`) and kvm-unit-tests (`smp_cpu_setup`): for
//! every CPU address READ SCP INFO lists, SIGP INITIAL CPU RESET, an 8 KiB lowcore below
//! 2 GiB filled from CPU 0's (new PSWs) with the CPU's own stacks, control registers and
//! a restart new PSW that enters `zhint_secondary_entry`, SIGP SET PREFIX, SIGP RESTART,
//! and a handshake: the CPU marks itself online. A CPU that fails any step is reported
//! and left alone; the others go on.
//!
//! A secondary then idles in an enabled wait for an external call. [`Scope::spawn`]
//! hands it a job (a closure borrowed from the caller) and signals it; [`scope`] does not
//! return before every job it spawned has finished or its CPU was stopped
//! ([`stop_and_restart`]: SIGP STOP, STORE STATUS AT ADDRESS, RESTART, which puts the CPU
//! back into its idle loop on a fresh stack).
//!
//! Signals ([`send`]): SIGP EXTERNAL CALL (code 0x1202; at most one pending per target,
//! a second is "already signalled") and EMERGENCY SIGNAL (0x1201; one pending per
//! sender). Each CPU enables both subclasses in CR0; they are taken only where the
//! kernel waits with external interruptions enabled.

use super::cpu::{self, Psw, SigpOrder, SigpResult, cr0, psw_mask, sigp_status};
use super::interrupts::{self, PgmInfo};
use super::percpu::{self, CpuNr, MAX_CPUS, PerCpu, this_cpu};
use super::{kspace, lowcore};
use alloc::boxed::Box;
use alloc::vec::Vec;
use core::marker::PhantomData;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU16, AtomicU64, AtomicUsize, Ordering, fence};

/// Bytes of each secondary CPU's stack for its idle loop and the jobs it runs.
pub const MAIN_STACK: usize = 64 << 10;
/// Bytes of each secondary CPU's program-check stack.
pub const PGM_STACK: usize = 32 << 10;
/// Bytes of each secondary CPU's stack for external, I/O and machine-check
/// interruptions.
pub const IRQ_STACK: usize = 32 << 10;
const GUARD: usize = 4096;
const STACKS: usize = GUARD + MAIN_STACK + GUARD + PGM_STACK + GUARD + IRQ_STACK;

/// How long a restarted CPU may take to mark itself online, in microseconds. Generous:
/// under TCG a new vCPU thread may wait for a busy host.
const ONLINE_TIMEOUT_US: u64 = 5_000_000;

/// Where a CPU stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum CpuState {
    /// No bring-up was tried (or the number is unused).
    Absent = 0,
    /// Bring-up in progress.
    Starting = 1,
    /// Running the kernel: idle, or running a job.
    Online = 2,
    /// Bring-up failed; the CPU is left stopped.
    Failed = 3,
}

/// Why a CPU did not come up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BringUpError {
    /// More CPUs than [`MAX_CPUS`].
    TooManyCpus,
    /// Its lowcore or stacks do not fit in the heap (below 2 GiB).
    NoMemory,
    /// SIGP answered condition code 3 for this order: no such CPU.
    NotOperational(SigpOrder),
    /// SIGP refused this order with this status (see [`sigp_status`]).
    Refused(SigpOrder, u32),
    /// Restarted, but it did not mark itself online in time.
    NoHandshake,
}

/// The outcome of one CPU's bring-up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BringUp {
    /// The CPU's address.
    pub address: u16,
    /// Its number, or why it is not running.
    pub outcome: Result<CpuNr, BringUpError>,
}

/// Which stack of a CPU a guard page protects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StackKind {
    /// The stack the CPU starts on and runs jobs on.
    Main,
    /// The program-check stack.
    ProgramCheck,
    /// The stack of external, I/O and machine-check interruptions.
    Interruption,
}

impl StackKind {
    /// The stack's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            StackKind::Main => "main",
            StackKind::ProgramCheck => "program-check",
            StackKind::Interruption => "interruption",
        }
    }
}

/// A CPU's lowcore: 8 KiB, 8 KiB aligned (SIGP SET PREFIX).
#[repr(C, align(8192))]
struct Lowcore([u8; lowcore::SIZE]);

/// The status SIGP STORE STATUS AT ADDRESS stores (the layout of lowcore 0x1200-0x13ff:
/// FPRs, GPRs, PSW, prefix, FPC, TOD programmable register, CPU timer, clock comparator,
/// access and control registers), 512-byte aligned.
#[repr(C, align(512))]
#[derive(Clone, Copy, Debug)]
pub struct StoredStatus {
    /// Floating-point registers 0-15.
    pub fprs: [u64; 16],
    /// General registers 0-15.
    pub gprs: [u64; 16],
    /// The PSW.
    pub psw: Psw,
    _reserved: u64,
    /// The prefix.
    pub prefix: u32,
    /// Floating-point control register.
    pub fpc: u32,
    _reserved2: u32,
    /// TOD programmable register.
    pub todpr: u32,
    /// CPU timer.
    pub cpu_timer: u64,
    /// Clock comparator.
    pub clock_comparator: u64,
    _reserved3: u64,
    /// Access registers 0-15.
    pub ars: [u32; 16],
    /// Control registers 0-15.
    pub crs: [u64; 16],
}

const _: () = assert!(core::mem::size_of::<StoredStatus>() == 512);
const _: () = assert!(core::mem::offset_of!(StoredStatus, psw) == 0x100);
const _: () = assert!(core::mem::offset_of!(StoredStatus, prefix) == 0x118);
const _: () = assert!(core::mem::offset_of!(StoredStatus, crs) == 0x180);

/// What a secondary CPU owns, allocated at bring-up and kept for the life of the
/// kernel (its lowcore is in use as long as the CPU runs).
struct CpuArea {
    lowcore: &'static mut Lowcore,
    stacks: &'static mut [u8],
    status: &'static mut StoredStatus,
}

/// Addresses of a CPU's area, readable by any CPU.
#[derive(Debug)]
struct AreaAddrs {
    lowcore: AtomicU64,
    stacks: AtomicU64,
    status: AtomicU64,
}

static AREAS: PerCpu<AreaAddrs> = PerCpu::new(
    [const {
        AreaAddrs {
            lowcore: AtomicU64::new(0),
            stacks: AtomicU64::new(0),
            status: AtomicU64::new(0),
        }
    }; MAX_CPUS],
);

static STATE: PerCpu<AtomicU8> = PerCpu::new([const { AtomicU8::new(0) }; MAX_CPUS]);

/// How often each CPU went online (1 after bring-up, +1 per restart that brought it
/// online): its entry copies the number of the start it answers from [`START_REQUESTS`],
/// so a start that took more than one SIGP RESTART (see [`restart`]) counts once.
static STARTS: PerCpu<AtomicU64> = PerCpu::new([const { AtomicU64::new(0) }; MAX_CPUS]);

/// The number of the start [`restart`] is waiting for: one more than [`STARTS`].
static START_REQUESTS: PerCpu<AtomicU64> = PerCpu::new([const { AtomicU64::new(0) }; MAX_CPUS]);

/// How long [`restart`] first gives a CPU to come online before it stops it and restarts
/// it again, in microseconds; doubled after each try, so a vCPU thread the host holds up
/// for long is not restarted over and over.
const RESTART_RETRY_US: u64 = 5_000;

fn state_of(nr: CpuNr) -> CpuState {
    match STATE.of(nr).load(Ordering::Acquire) {
        1 => CpuState::Starting,
        2 => CpuState::Online,
        3 => CpuState::Failed,
        _ => CpuState::Absent,
    }
}

/// Registers the boot CPU as CPU 0 and enables the SMP signals on it. The first thing
/// `kernel_main` does.
pub fn init_boot_cpu() {
    if percpu::registered() == 0 {
        let _ = percpu::register(cpu::cpu_address());
    }
    STATE.of(0).store(CpuState::Online as u8, Ordering::Release);
    STARTS.of(0).store(1, Ordering::Relaxed);
    START_REQUESTS.of(0).store(1, Ordering::Relaxed);
    // SAFETY: the two subclasses only allow interruptions `zhint_ext_interrupt` handles,
    // and only where the kernel waits enabled.
    unsafe { cpu::update_cr0(cr0::EXTERNAL_CALL | cr0::EMERGENCY_SIGNAL, 0) };
}

/// A CPU the kernel knows: its number, address and state.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CpuInfo {
    /// Its number.
    pub nr: CpuNr,
    /// Its CPU address.
    pub address: u16,
    /// Where it stands.
    pub state: CpuState,
    /// How often it went online (restarts by [`stop_and_restart`] count).
    pub starts: u64,
    /// Its prefix (lowcore address): 0 for CPU 0.
    pub prefix: u64,
}

/// Every CPU the kernel numbered, in number order.
pub fn cpus() -> Vec<CpuInfo> {
    (0..percpu::registered())
        .map(|nr| CpuInfo {
            nr,
            address: percpu::address_of(nr),
            state: state_of(nr),
            starts: STARTS.of(nr).load(Ordering::Relaxed),
            prefix: AREAS.of(nr).lowcore.load(Ordering::Relaxed),
        })
        .collect()
}

/// The numbers of the CPUs that are online, CPU 0 first.
pub fn online() -> Vec<CpuNr> {
    (0..percpu::registered())
        .filter(|&nr| state_of(nr) == CpuState::Online)
        .collect()
}

/// Starts every CPU in `addresses` other than this one, in order; one that fails is
/// reported in the result and the rest go on. `refuse` names a CPU address whose
/// bring-up uses a prefix beyond the end of storage, which SIGP SET PREFIX must refuse
/// (the `smp.fail=` test of the failure path); `storage_end` is the end of storage.
pub fn start_secondaries(
    addresses: impl Iterator<Item = u16>,
    refuse: Option<u16>,
    storage_end: u64,
) -> Vec<BringUp> {
    let me = cpu::cpu_address();
    let mut results = Vec::new();
    for address in addresses.filter(|&a| a != me) {
        let outcome = match percpu::register(address) {
            None => Err(BringUpError::TooManyCpus),
            Some(nr) => {
                STATE
                    .of(nr)
                    .store(CpuState::Starting as u8, Ordering::Release);
                let bad_prefix = (refuse == Some(address))
                    .then(|| (storage_end.next_multiple_of(lowcore::SIZE as u64)).min(0x7fff_e000));
                let outcome = bring_up(nr, address, bad_prefix).map(|()| nr);
                if outcome.is_err() {
                    STATE
                        .of(nr)
                        .store(CpuState::Failed as u8, Ordering::Release);
                    // Leave it stopped, whatever step failed.
                    // SAFETY: stopping a CPU that runs no kernel code changes nothing.
                    unsafe { cpu::sigp_retry(address, SigpOrder::Stop, 0) };
                }
                outcome
            }
        };
        results.push(BringUp { address, outcome });
    }
    results
}

fn allocate_area() -> Option<CpuArea> {
    use alloc::alloc::{Layout, alloc_zeroed};
    // SAFETY: both layouts have a non-zero size; a null result is handled.
    let (lowcore, stacks) = unsafe {
        (
            alloc_zeroed(Layout::new::<Lowcore>()) as *mut Lowcore,
            alloc_zeroed(Layout::from_size_align(STACKS, 4096).ok()?),
        )
    };
    if lowcore.is_null() || stacks.is_null() {
        return None;
    }
    let status = Box::leak(Box::new(StoredStatus {
        fprs: [0; 16],
        gprs: [0; 16],
        psw: Psw { mask: 0, addr: 0 },
        _reserved: 0,
        prefix: 0,
        fpc: 0,
        _reserved2: 0,
        todpr: 0,
        cpu_timer: 0,
        clock_comparator: 0,
        _reserved3: 0,
        ars: [0; 16],
        crs: [0; 16],
    }));
    // SAFETY: freshly allocated, zeroed, never freed: these references are the only
    // ones (the CPU reaches its lowcore through its prefix, not through them).
    Some(unsafe {
        CpuArea {
            lowcore: &mut *lowcore,
            stacks: core::slice::from_raw_parts_mut(stacks, STACKS),
            status,
        }
    })
}

fn bring_up(nr: CpuNr, address: u16, bad_prefix: Option<u64>) -> Result<(), BringUpError> {
    let area = allocate_area().ok_or(BringUpError::NoMemory)?;
    let lowcore_addr = area.lowcore as *const Lowcore as u64;
    if lowcore_addr + lowcore::SIZE as u64 > 0x8000_0000 {
        return Err(BringUpError::NoMemory);
    }
    let stacks = area.stacks.as_ptr() as u64;
    let main_top = stacks + (GUARD + MAIN_STACK) as u64;
    let pgm_bottom = main_top + GUARD as u64;
    let pgm_top = pgm_bottom + PGM_STACK as u64;
    let irq_bottom = pgm_top + GUARD as u64;
    let irq_top = irq_bottom + IRQ_STACK as u64;
    for guard in [stacks, main_top, pgm_top] {
        kspace::unmap_guard(guard);
    }

    let lc = &mut area.lowcore.0;
    copy_new_psws(lc);
    let entry = Psw {
        mask: psw_mask::KERNEL,
        addr: zhint_secondary_entry as *const () as u64,
    };
    put(lc, lowcore::RESTART_NEW_PSW, entry.mask);
    put(lc, lowcore::RESTART_NEW_PSW + 8, entry.addr);
    put(lc, lowcore::stack::PGM_TOP, pgm_top);
    put(lc, lowcore::stack::PGM_BOTTOM, pgm_bottom);
    put(lc, lowcore::stack::IRQ_TOP, irq_top);
    put(lc, lowcore::stack::IRQ_BOTTOM, irq_bottom);
    put(lc, lowcore::stack::RESTART_TOP, main_top);
    let mut crs = cpu::store_control_registers();
    // This CPU's controls (AFP, protection, the SMP subclasses), not its waits: the
    // service signal and the clock comparator are enabled only by the CPU that waits
    // for them.
    crs[0] &= !(cr0::SERVICE_SIGNAL | cr0::CLOCK_COMPARATOR);
    if let Some(asce) = kspace::kernel_asce() {
        crs[1] = asce.bits();
        crs[7] = asce.bits();
        crs[13] = asce.bits();
    }
    for (i, cr) in crs.iter().enumerate() {
        put(lc, lowcore::CONTROL_REGISTERS + 8 * i, *cr);
    }
    let addrs = AREAS.of(nr);
    addrs.lowcore.store(lowcore_addr, Ordering::Relaxed);
    addrs.stacks.store(stacks, Ordering::Relaxed);
    addrs
        .status
        .store(area.status as *mut StoredStatus as u64, Ordering::Relaxed);
    // The CPU reads all of it with its own loads once restarted.
    fence(Ordering::SeqCst);

    let order = |order: SigpOrder, parameter: u64| {
        // SAFETY: these orders address the CPU being brought up, which runs no kernel
        // code yet; its prefix area is the one prepared above.
        match unsafe { cpu::sigp_retry(address, order, parameter) } {
            SigpResult::Accepted => Ok(()),
            SigpResult::Status(status) => Err(BringUpError::Refused(order, status)),
            SigpResult::NotOperational => Err(BringUpError::NotOperational(order)),
        }
    };
    order(SigpOrder::InitialCpuReset, 0)?;
    order(SigpOrder::SetPrefix, bad_prefix.unwrap_or(lowcore_addr))?;
    match restart(nr, address) {
        Restart::Online => Ok(()),
        Restart::Refused(SigpResult::Status(status)) => {
            Err(BringUpError::Refused(SigpOrder::Restart, status))
        }
        Restart::Refused(_) => Err(BringUpError::NotOperational(SigpOrder::Restart)),
        Restart::NoHandshake => Err(BringUpError::NoHandshake),
    }
}

/// How a [`restart`] ended.
enum Restart {
    /// The CPU marked itself online.
    Online,
    /// SIGP RESTART was not accepted.
    Refused(SigpResult),
    /// The CPU did not come online within [`ONLINE_TIMEOUT_US`], or could not be stopped
    /// for another try; it was stopped where that was possible.
    NoHandshake,
}

/// Restarts the stopped CPU `nr` (at `address`) into `zhint_secondary_entry` and waits
/// until it is online. A CPU that does not come online within [`RESTART_RETRY_US`] is
/// stopped and restarted again: QEMU's TCG leaves a CPU that was stopped in a wait halted
/// after SIGP RESTART (`s390_cpu_set_state` keeps a CPU whose PSW has the wait bit halted,
/// and `sigp_restart` loads the restart PSW only after that, `target/s390x/sigp.c`), where
/// the architecture has it run the restart PSW; stopped again, its PSW is the restart PSW,
/// and the next restart runs it. A CPU that was merely slow is restarted from the top,
/// which its entry allows (it takes no lock before it marks itself online) and counts its
/// start once ([`STARTS`]).
fn restart(nr: CpuNr, address: u16) -> Restart {
    let before = STARTS.of(nr).load(Ordering::Acquire);
    let ticket = before + 1;
    START_REQUESTS.of(nr).store(ticket, Ordering::Release);
    let deadline = cpu::tod().saturating_add(cpu::us_to_tod(ONLINE_TIMEOUT_US));
    let mut wait_us = RESTART_RETRY_US;
    loop {
        // SAFETY: the CPU is stopped (by the caller, or below); neither its entry nor its
        // idle loop holds anything another CPU needs. Its restart new PSW enters
        // `zhint_secondary_entry`.
        let order = unsafe { cpu::sigp_retry(address, SigpOrder::Restart, 0) };
        if order != SigpResult::Accepted {
            return Restart::Refused(order);
        }
        let retry = cpu::tod().saturating_add(cpu::us_to_tod(wait_us));
        while STARTS.of(nr).load(Ordering::Acquire) != ticket {
            if cpu::tod() > deadline {
                // A CPU that comes online after it was given up must not run.
                stop(
                    address,
                    cpu::tod().saturating_add(cpu::us_to_tod(STOP_TIMEOUT_US)),
                );
                return Restart::NoHandshake;
            }
            if cpu::tod() > retry {
                break;
            }
            core::hint::spin_loop();
        }
        if STARTS.of(nr).load(Ordering::Acquire) == ticket {
            return Restart::Online;
        }
        if !stop(address, deadline) {
            return Restart::NoHandshake;
        }
        // Stopped: the CPU may have marked itself online between the check above and the
        // stop, and then be stopped in its idle wait, which the next restart must not
        // take for a CPU that runs.
        STATE
            .of(nr)
            .store(CpuState::Starting as u8, Ordering::Release);
        STARTS.of(nr).store(before, Ordering::Release);
        wait_us = wait_us.saturating_mul(2);
    }
}

/// SIGP STOP for the CPU at `address`, then SIGP SENSE until it reports stopped (the stop
/// takes effect asynchronously); false if the order was refused or `deadline` (TOD)
/// passed first.
fn stop(address: u16, deadline: u64) -> bool {
    // SAFETY: stopping a secondary abandons what it runs; the callers accept that.
    if unsafe { cpu::sigp_retry(address, SigpOrder::Stop, 0) } != SigpResult::Accepted {
        return false;
    }
    // SAFETY: SENSE changes nothing.
    while !stopped(unsafe { cpu::sigp_retry(address, SigpOrder::Sense, 0) }) {
        if cpu::tod() > deadline {
            return false;
        }
        core::hint::spin_loop();
    }
    true
}

fn put(lc: &mut [u8; lowcore::SIZE], offset: usize, value: u64) {
    lc[offset..offset + 8].copy_from_slice(&value.to_be_bytes());
}

/// Copies this CPU's lowcore up to the new PSWs (real 0-0x1ff) into `lc`, as Linux's
/// `pcpu_alloc_lowcore` does: the new PSWs are the same on every CPU.
fn copy_new_psws(lc: &mut [u8; lowcore::SIZE]) {
    let mut mask = 0u8;
    // SAFETY: with DAT off for two MVCs (STNSM clears the DAT bit, SSM restores the
    // system mask), real 0-0x1ff is this CPU's lowcore; the target is heap storage,
    // identity-mapped, so its address is the same with DAT off. Interruptions stay
    // disabled (the kernel runs disabled here), so nothing else runs in between.
    unsafe {
        core::arch::asm!(
            "stnsm 0({m}), 0xfb",
            "mvc 0(256,{dst}), 0({src})",
            "mvc 256(256,{dst}), 256({src})",
            "ssm 0({m})",
            m = in(reg_addr) &mut mask,
            dst = in(reg_addr) lc.as_mut_ptr(),
            src = in(reg_addr) 0u64,
            options(nostack),
        );
    }
}

unsafe extern "C" {
    fn zhint_secondary_entry();
}

/// Where a secondary CPU enters Rust after SIGP RESTART (`zhint_secondary_entry`, DAT off,
/// on its main stack, control registers loaded): turn DAT on, mark online, idle.
#[unsafe(no_mangle)]
extern "C" fn zhint_secondary_main() -> ! {
    // SAFETY: CR1/7/13 hold the kernel's ASCE (from the bring-up's control registers),
    // which maps everything the kernel uses one to one.
    unsafe { cpu::continue_with_mask(cpu::current_psw_mask() | psw_mask::DAT) };
    let nr = this_cpu();
    interrupts::reset_this_cpu();
    kspace::started_in_kernel_space();
    STATE
        .of(nr)
        .store(CpuState::Online as u8, Ordering::Release);
    STARTS.of(nr).store(
        START_REQUESTS.of(nr).load(Ordering::Acquire),
        Ordering::Release,
    );
    idle(nr)
}

/// The job a CPU runs: a closure borrowed for the duration of a [`scope`].
struct JobRef(*const (dyn Fn() + Sync));

/// The job handed to each CPU (null: none). A pointer to a [`JobRef`] that the
/// [`Scope`] owns and frees once the job has finished; swapped out, never locked, so a
/// CPU stopped at any point leaves nothing held.
static JOB: PerCpu<AtomicPtr<JobRef>> =
    PerCpu::new([const { AtomicPtr::new(core::ptr::null_mut()) }; MAX_CPUS]);

const JOB_IDLE: u8 = 0;
const JOB_ASSIGNED: u8 = 1;
const JOB_RUNNING: u8 = 2;
const JOB_DONE: u8 = 3;
/// The job has finished and its CPU is signalling the dispatcher; `JOB_DONE` follows.
const JOB_SIGNALLING: u8 = 4;

static JOB_STATE: PerCpu<AtomicU8> = PerCpu::new([const { AtomicU8::new(0) }; MAX_CPUS]);

/// Whether the last job handed to CPU `nr` has returned (or the CPU was stopped): what a
/// [`scope`] waits for before it ends.
pub fn job_finished(nr: CpuNr) -> bool {
    matches!(
        JOB_STATE.of(nr).load(Ordering::Acquire),
        JOB_SIGNALLING | JOB_DONE
    )
}

/// The CPU that hands out jobs (and is signalled when one finishes).
static DISPATCHER: AtomicUsize = AtomicUsize::new(0);

fn idle(nr: CpuNr) -> ! {
    loop {
        if JOB_STATE.of(nr).load(Ordering::Acquire) == JOB_ASSIGNED {
            let job = JOB.of(nr).swap(core::ptr::null_mut(), Ordering::Acquire);
            JOB_STATE.of(nr).store(JOB_RUNNING, Ordering::Relaxed);
            if !job.is_null() {
                // SAFETY: `scope` keeps the `JobRef` and the closure it points to alive
                // until this job is done (or this CPU was stopped, which abandons this
                // frame).
                unsafe { (*(*job).0)() };
            }
            // Finished, but the signal still to come: `scope` waits for it, so that it
            // takes the signal before it returns instead of leaving it to arrive in
            // whatever the dispatcher runs next.
            JOB_STATE.of(nr).store(JOB_SIGNALLING, Ordering::Release);
            let _ = send(DISPATCHER.load(Ordering::Relaxed), Signal::ExternalCall);
            JOB_STATE.of(nr).store(JOB_DONE, Ordering::Release);
        } else {
            cpu::enabled_wait_for_external();
        }
    }
}

/// Why a job could not be handed to a CPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpawnError {
    /// The CPU is not online (or is this CPU).
    NotOnline,
    /// The CPU still runs a job.
    Busy,
}

/// Jobs handed to other CPUs; see [`scope`].
#[derive(Debug)]
pub struct Scope<'env> {
    spawned: spin::Mutex<Vec<(CpuNr, *mut JobRef)>>,
    _env: PhantomData<&'env ()>,
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        for &(_, job) in self.spawned.get_mut().iter() {
            // SAFETY: allocated by `spawn` with `Box::into_raw`; `scope` drops the
            // scope only after every job finished or its CPU was stopped, and the CPU
            // swapped the pointer out of its slot (or `stop` cleared it), so nothing
            // uses it any more.
            drop(unsafe { Box::from_raw(job) });
        }
    }
}

/// Runs `body`, which may hand jobs to other CPUs with [`Scope::spawn`], then calls
/// `wait` until every spawned job has finished or its CPU was stopped
/// ([`stop_and_restart`]); `wait` should sleep or check for hung CPUs in between. Returns what
/// `body` returned, or the program interruption that cut it short: the jobs it spawned
/// are waited for either way, so nothing they borrow goes out of scope while they run.
/// Before it returns it enables external interruptions for a moment, to take the
/// finished jobs' signals: any other pending external interruption is taken there too.
pub fn scope<'env, R>(
    body: impl FnOnce(&Scope<'env>) -> R,
    mut wait: impl FnMut(&Scope<'env>),
) -> Result<R, PgmInfo> {
    let scope = Scope {
        spawned: spin::Mutex::new(Vec::new()),
        _env: PhantomData,
    };
    DISPATCHER.store(this_cpu(), Ordering::Relaxed);
    let result = interrupts::catch_pgm(|| body(&scope));
    while !scope.all_finished() {
        wait(&scope);
    }
    // The finished jobs' signals are pending if this CPU saw the jobs finish with
    // external interruptions off: once every one is sent, they are taken here, and cannot
    // reach a test that runs next and counts the external calls this CPU receives, or
    // from whom (found by a seed sweep: smp8, ktest.seed=7946897045402592956, shuffled).
    while scope.signalling() {
        core::hint::spin_loop();
    }
    interrupts::with_external_enabled(|| ());
    result
}

impl<'env> Scope<'env> {
    /// Hands `job` to CPU `nr` and signals it.
    pub fn spawn(&self, nr: CpuNr, job: &'env (dyn Fn() + Sync)) -> Result<(), SpawnError> {
        if nr == this_cpu() || nr >= percpu::registered() || state_of(nr) != CpuState::Online {
            return Err(SpawnError::NotOnline);
        }
        let job_state = JOB_STATE.of(nr);
        if !matches!(job_state.load(Ordering::Acquire), JOB_IDLE | JOB_DONE) {
            return Err(SpawnError::Busy);
        }
        let job: *const (dyn Fn() + Sync + 'env) = job;
        // SAFETY: only the lifetime changes; `scope` waits until this job has finished
        // or the CPU was stopped before `'env` can end.
        let job: *const (dyn Fn() + Sync + 'static) = unsafe { core::mem::transmute(job) };
        let job = Box::into_raw(Box::new(JobRef(job)));
        self.spawned.lock().push((nr, job));
        JOB.of(nr).store(job, Ordering::Release);
        job_state.store(JOB_ASSIGNED, Ordering::Release);
        let _ = send(nr, Signal::ExternalCall);
        Ok(())
    }

    /// The CPUs jobs were handed to.
    pub fn spawned(&self) -> Vec<CpuNr> {
        self.spawned.lock().iter().map(|&(nr, _)| nr).collect()
    }

    /// Whether CPU `nr`'s job has finished (or the CPU was stopped).
    pub fn finished(&self, nr: CpuNr) -> bool {
        job_finished(nr)
    }

    fn all_finished(&self) -> bool {
        self.spawned.lock().iter().all(|&(nr, _)| self.finished(nr))
    }

    /// Whether a CPU whose job finished has yet to send its signal.
    fn signalling(&self) -> bool {
        self.spawned
            .lock()
            .iter()
            .any(|&(nr, _)| JOB_STATE.of(nr).load(Ordering::Acquire) == JOB_SIGNALLING)
    }
}

/// How long [`stop_and_restart`] waits for a CPU to stop, in microseconds.
const STOP_TIMEOUT_US: u64 = 2_000_000;

/// Stops secondary CPU `nr` (which hangs in its job), stores its status, and restarts
/// it: it returns to its idle loop on a fresh stack, and its job counts as finished.
/// Returns the stored status (where it was), or `None` if the CPU could not be stopped
/// or its status not stored. Takes no lock, so it may run in an interruption handler.
/// Locks the CPU held stay held: the caller releases them (see
/// [`CpuMutex::release_held_by`](super::sync::CpuMutex::release_held_by)).
pub fn stop_and_restart(nr: CpuNr) -> Option<StoredStatus> {
    let address = percpu::address_of(nr);
    let status_addr = AREAS.of(nr).status.load(Ordering::Relaxed);
    if nr == this_cpu() || status_addr == 0 {
        return None;
    }
    let deadline = cpu::tod().saturating_add(cpu::us_to_tod(STOP_TIMEOUT_US));
    if !stop(address, deadline) {
        return None;
    }
    // SAFETY: the CPU is stopped; the status area is its own, 512-byte aligned, below
    // 2 GiB (heap), and nothing else writes it.
    let stored = unsafe { cpu::sigp_retry(address, SigpOrder::StoreStatusAtAddress, status_addr) };
    fence(Ordering::SeqCst);
    // SAFETY: written by the machine just now; read as plain data.
    let status = (stored == SigpResult::Accepted)
        .then(|| unsafe { core::ptr::read_volatile(status_addr as *const StoredStatus) });
    JOB.of(nr).store(core::ptr::null_mut(), Ordering::Release);
    JOB_STATE.of(nr).store(JOB_DONE, Ordering::Release);
    STATE
        .of(nr)
        .store(CpuState::Starting as u8, Ordering::Release);
    if !matches!(restart(nr, address), Restart::Online) {
        STATE
            .of(nr)
            .store(CpuState::Failed as u8, Ordering::Release);
    }
    status
}

/// Whether SIGP SENSE reports the CPU stopped (or gone).
fn stopped(sense: SigpResult) -> bool {
    match sense {
        SigpResult::Status(s) => s & sigp_status::STOPPED != 0,
        SigpResult::NotOperational => true,
        SigpResult::Accepted => false,
    }
}

/// A signal from one CPU to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    /// SIGP EXTERNAL CALL (external interruption 0x1202).
    ExternalCall,
    /// SIGP EMERGENCY SIGNAL (external interruption 0x1201).
    EmergencySignal,
}

/// Why a signal was not sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignalError {
    /// No such CPU (or not online).
    NotOnline,
    /// SIGP refused with this status.
    Refused(u32),
}

/// Signals CPU `nr`. An external call while one is already pending counts as sent (the
/// target will take the pending one).
pub fn send(nr: CpuNr, signal: Signal) -> Result<(), SignalError> {
    if nr >= percpu::registered() || state_of(nr) != CpuState::Online {
        return Err(SignalError::NotOnline);
    }
    let order = match signal {
        Signal::ExternalCall => SigpOrder::ExternalCall,
        Signal::EmergencySignal => SigpOrder::EmergencySignal,
    };
    // SAFETY: both orders only make an external interruption pending at the target,
    // which the kernel handles.
    match unsafe { cpu::sigp_retry(percpu::address_of(nr), order, 0) } {
        SigpResult::Accepted => Ok(()),
        SigpResult::Status(s) if s & sigp_status::EXT_CALL_PENDING != 0 => Ok(()),
        SigpResult::Status(s) => Err(SignalError::Refused(s)),
        SigpResult::NotOperational => Err(SignalError::NotOnline),
    }
}

/// Signals taken per CPU: external calls, emergency signals.
static RECEIVED: PerCpu<[AtomicU64; 2]> =
    PerCpu::new([const { [AtomicU64::new(0), AtomicU64::new(0)] }; MAX_CPUS]);

/// CPU address of the sender of the last signal each CPU took.
static LAST_SENDER: PerCpu<AtomicU16> = PerCpu::new([const { AtomicU16::new(0) }; MAX_CPUS]);

/// Called by the external-interruption handler for 0x1201 and 0x1202.
pub(super) fn signal_received(code: u16, sender: u16) {
    let nr = this_cpu();
    let kind = usize::from(code == 0x1201);
    LAST_SENDER.of(nr).store(sender, Ordering::Relaxed);
    RECEIVED.of(nr)[kind].fetch_add(1, Ordering::Release);
}

/// How many signals of each kind CPU `nr` has taken, and the CPU address of the last
/// sender.
pub fn signals_received(nr: CpuNr) -> (u64, u64, u16) {
    let r = RECEIVED.of(nr);
    (
        r[0].load(Ordering::Acquire),
        r[1].load(Ordering::Acquire),
        LAST_SENDER.of(nr).load(Ordering::Relaxed),
    )
}

/// The CPU whose stack guard page `page` is, and which stack it guards (secondary
/// CPUs; CPU 0's guards are in the image layout).
pub fn stack_guard_of(page: u64) -> Option<(CpuNr, StackKind)> {
    (1..percpu::registered()).find_map(|nr| {
        let stacks = AREAS.of(nr).stacks.load(Ordering::Relaxed);
        if stacks == 0 {
            return None;
        }
        let main_guard = stacks;
        let pgm_guard = main_guard + (GUARD + MAIN_STACK) as u64;
        let irq_guard = pgm_guard + (GUARD + PGM_STACK) as u64;
        [
            (main_guard, StackKind::Main),
            (pgm_guard, StackKind::ProgramCheck),
            (irq_guard, StackKind::Interruption),
        ]
        .into_iter()
        .find(|&(g, _)| g == page)
        .map(|(_, kind)| (nr, kind))
    })
}

/// Stops every other CPU (SIGP STOP, not waited for): the end of a run, so that this CPU
/// is the last one running (QEMU ends the run when the last CPU stops) and nothing else
/// prints or touches storage any more.
pub fn stop_others() {
    let me = this_cpu();
    for nr in (0..percpu::registered()).filter(|&nr| nr != me) {
        if matches!(state_of(nr), CpuState::Online | CpuState::Starting) {
            // SAFETY: the run is ending; what the CPU was doing is abandoned.
            unsafe { cpu::sigp_retry(percpu::address_of(nr), SigpOrder::Stop, 0) };
        }
    }
}
