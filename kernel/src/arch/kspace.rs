//! The kernel address space: all of storage mapped one to one with 4 KiB pages, so that
//! the host model can revoke a single frame (make every kernel access to it fault, as a
//! host-discarded frame does) through its page-table entry (see [`super::revoke`]).

use super::percpu::{MAX_CPUS, PerCpu};
use super::storage::{self, Machine};
use crate::mm::addr::{PAGE_SIZE, Pfn, PhysAddr, VirtAddr};
use crate::mm::dat::{Asce, DatSpace, Pte, TableAlloc};
use crate::mm::machine::PhysMem;
use crate::mm::manager::USER_START;
use core::sync::atomic::{AtomicU64, Ordering};
use spin::Mutex;

/// Hands out table frames from a region reserved at boot.
#[derive(Debug)]
struct BootTables {
    next: u64,
    end: u64,
}

impl TableAlloc for BootTables {
    fn alloc_table(&mut self, count: usize) -> Option<Pfn> {
        let bytes = count as u64 * PAGE_SIZE;
        let start = self.next.next_multiple_of(PAGE_SIZE);
        (start + bytes <= self.end).then(|| {
            self.next = start + bytes;
            Pfn::new(start / PAGE_SIZE)
        })
    }

    fn free_table(&mut self, _first: Pfn, _count: usize) {
        // Kernel tables live as long as the kernel.
    }
}

static KERNEL: Mutex<Option<DatSpace>> = Mutex::new(None);

/// The ASCE currently in each CPU's CR1.
static CURRENT: PerCpu<AtomicU64> = PerCpu::new([const { AtomicU64::new(0) }; MAX_CPUS]);

/// How many of the kernel's region-third entries (2 GiB each) its identity map uses:
/// the entries a user space must share for the kernel to stay mapped after a switch.
static KERNEL_ENTRIES: AtomicU64 = AtomicU64::new(0);

/// Bytes one region-third entry maps.
const REGION_THIRD_BYTES: u64 = 1 << 31;

/// The lowcore and the null page: never mapped, so null dereferences trap. The CPU
/// reaches the lowcore through real addresses, and the interruption handlers (which read
/// it) run with DAT off.
pub const UNMAPPED_LOW: u64 = 0x2000;

/// CR0 bit 20: instruction-execution-protection control.
const CR0_IEP: u64 = 0x0000_0800_0000_0000;

/// How the kernel's identity map protects the image.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Protection {
    /// Low-address protection (CR0 bit 35): stores to 0-511 and 4096-4607 trap.
    pub low_address: bool,
    /// Instruction-execution protection for everything but the image's text.
    pub no_exec_data: bool,
}

/// Builds the identity map of storage below `memory` with tables from `tables` (at least
/// `layout::tables_size(memory)` bytes) and turns DAT on.
///
/// The lowcore pages and the stacks' guard pages stay unmapped, the image's code and
/// read-only data (0x10000 up to the end of `.kernel_tests`) are mapped read-only, and,
/// where the CPU has facility 130, everything else is mapped no-execute.
pub fn init(
    memory: u64,
    tables: core::ops::Range<u64>,
    iep: bool,
) -> Result<Protection, crate::mm::error::MmError> {
    let layout = super::image::layout();
    let mut alloc = BootTables {
        next: tables.start,
        end: tables.end,
    };
    let mut machine = Machine;
    let mut space = DatSpace::new_kernel(&mut machine, &mut alloc)?;
    let read_only = 0x10000..layout.rodata_end.next_multiple_of(PAGE_SIZE);
    let mut start = UNMAPPED_LOW;
    while start < memory {
        let writable = !read_only.contains(&start);
        let mut end = start;
        while end < memory
            && !layout.stack_guards.contains(&end)
            && read_only.contains(&end) != writable
        {
            end += PAGE_SIZE;
        }
        if end > start {
            let range = PhysAddr::new(start)..PhysAddr::new(end);
            space.identity_map_with(&mut machine, &mut alloc, range, writable, iep && writable)?;
        }
        // Skip a guard page (left unmapped).
        start = if layout.stack_guards.contains(&end) {
            end + PAGE_SIZE
        } else {
            end
        };
    }
    // Protection controls first, so no translation is ever cached without them.
    let mut cr0 = super::cpu::read_cr::<0>() | super::cpu::cr0::LOW_ADDRESS_PROTECTION;
    if iep {
        cr0 |= CR0_IEP;
    }
    // SAFETY: low-address protection only makes stores to 0-511 and 4096-4607 trap, and
    // the kernel stores there nowhere (the entry stubs return through 0x480-0x4cf); IEP
    // makes execution from no-exec pages trap, and the kernel executes only its text.
    unsafe { super::cpu::write_cr::<0>(cr0) };
    // SAFETY: `space` maps every address the kernel touches with DAT on one to one: the
    // image, its stacks, heap, tables and all other storage; what stays unmapped (lowcore,
    // guard pages) is reached only with DAT off or not at all.
    unsafe { super::cpu::dat_on(space.asce().bits()) };
    CURRENT.get().store(space.asce().bits(), Ordering::Relaxed);
    KERNEL_ENTRIES.store(memory.div_ceil(REGION_THIRD_BYTES), Ordering::Relaxed);
    *KERNEL.lock() = Some(space);
    Ok(Protection {
        low_address: true,
        no_exec_data: iep,
    })
}

/// True if `addr` is mapped in the kernel's identity map with the given write permission
/// (for tests of the map itself).
pub fn kernel_mapping(addr: u64) -> Option<(bool, bool)> {
    let guard = KERNEL.lock();
    let space = guard.as_ref()?;
    match space.walk(&Machine, VirtAddr::new(addr)) {
        crate::mm::dat::Walk::Pte { pte, .. } if pte.is_valid() => {
            Some((!pte.is_protected(), !pte.is_no_exec()))
        }
        _ => None,
    }
}

/// A second handle on the kernel's tables, for the memory manager to share into every
/// user address space.
pub fn kernel_space_view() -> Option<DatSpace> {
    KERNEL
        .lock()
        .as_ref()
        .map(|k| DatSpace::from_asce(k.asce()))
}

/// The kernel's ASCE.
pub fn kernel_asce() -> Option<Asce> {
    KERNEL.lock().as_ref().map(DatSpace::asce)
}

/// Announces a user address space (the host model revokes its entries with a frame).
pub fn register_space(asce: Asce) {
    super::revoke::register_space(asce);
}

/// Withdraws a user address space; if it is current, the kernel's becomes current.
pub fn unregister_space(asce: Asce) {
    super::revoke::unregister_space(asce);
    if current() == asce.bits() {
        leave();
    }
}

/// The ASCE in this CPU's CR1.
pub fn current() -> u64 {
    CURRENT.get().load(Ordering::Relaxed)
}

/// Records the ASCE this CPU started with in CR1 (a secondary after SIGP RESTART: the
/// kernel's, from the control registers its bring-up prepared). Read from CR1, not from
/// the kernel's space under its lock: a restart may stop a CPU in its entry and restart
/// it (`smp::restart`), which must not leave a lock held.
pub(super) fn started_in_kernel_space() {
    CURRENT
        .get()
        .store(super::cpu::read_cr::<1>(), Ordering::Relaxed);
}

/// Makes `asce` (a registered user space) the primary address space. Refused (false)
/// unless it is registered and shares the region-third entries of the kernel's identity
/// map, so the kernel stays mapped one to one after the switch. Only the entries the
/// map uses are compared (one for up to 2 GiB of storage), not all of those below
/// [`USER_START`]: the check runs on every switch.
pub fn enter(asce: Asce) -> bool {
    if !super::revoke::is_registered(asce) {
        return false;
    }
    let Some(kernel) = kernel_asce() else {
        return false;
    };
    let kernel_entries = kernel.origin().as_u64();
    let user_entries = asce.origin().as_u64();
    let shared = KERNEL_ENTRIES
        .load(Ordering::Relaxed)
        .min(USER_START.as_u64() / REGION_THIRD_BYTES);
    let same = (0..shared).all(|i| {
        Machine.read_u64(PhysAddr::new(kernel_entries + 8 * i))
            == Machine.read_u64(PhysAddr::new(user_entries + 8 * i))
    });
    if same {
        load(asce.bits());
    }
    same
}

/// Makes the kernel's address space the primary one again.
pub fn leave() {
    if let Some(kernel) = kernel_asce() {
        load(kernel.bits());
    }
}

fn load(asce: u64) {
    // SAFETY: `asce` is the kernel's or a user space that shares the kernel's entries
    // (checked by `enter`), so every kernel address stays mapped one to one.
    unsafe { super::cpu::write_cr::<1>(asce) };
    CURRENT.get().store(asce, Ordering::Relaxed);
}

/// The PTE that maps user address `va` in the current address space, if any, as the
/// memory manager wrote it.
pub fn current_user_pte(va: VirtAddr) -> Option<(PhysAddr, Pte)> {
    let asce = current();
    if kernel_asce().is_some_and(|k| k.bits() == asce) {
        return None;
    }
    let space = DatSpace::from_asce(Asce::region_third(PhysAddr::new(asce & !0xfff)));
    match space.walk(&Machine, va) {
        crate::mm::dat::Walk::Pte { addr, pte } => Some((addr, pte)),
        _ => None,
    }
}

/// Unmaps the page at `addr` from the kernel's identity map (and so from every user
/// space, which shares it): a stack guard page of a secondary CPU. IPTE purges the
/// translation from every CPU's TLB.
pub fn unmap_guard(addr: u64) {
    if let Some(space) = KERNEL.lock().as_mut() {
        space.unmap(&mut Machine, VirtAddr::new(addr));
    }
}

/// True once DAT is on.
pub fn active() -> bool {
    KERNEL.lock().is_some()
}

/// Issues one storage-key instruction so that QEMU TCG starts emulating reference and
/// change bits (it does so only after the first one), and clears the frame's bits.
pub fn enable_storage_keys(pfn: u64) {
    storage::sske(pfn * PAGE_SIZE, 0);
}
