//! Taking frames away from the guest the way a host does, for the host model under QEMU
//! TCG: every DAT mapping of a revoked frame faults, while the guest's own view of its
//! page tables stays as the guest wrote it.
//!
//! A real host drops the frame from the guest's absolute storage, which every guest
//! translation reaches. QEMU TCG has no such hook, translates through the guest's own
//! page tables and does not enforce storage-key protection, so a revoked frame is made
//! unreachable through those tables instead: the entry gets the invalid bit plus
//! [`HOST_BIT`] (bit 56, ignored by the CPU) beside the guest's value, in the guest's
//! page-table storage, as KVM keeps its PGSTE beside the PTE. The memory manager reads
//! and writes page-table entries only through `PhysMem::read_pte`/`write_pte`, which
//! [`guest_view`] and [`hardware_entry`] implement: it reads back exactly what it
//! stored, and an entry it stores for a revoked frame is revoked on the way. Where this
//! still leaks: a raw doubleword read of an entry (`read_u64` instead of `read_pte`)
//! sees the host's bits, and the CPU (TPROT, LRA) sees the entry invalid; `mm::dat` is
//! the only code that reads page tables, and it reads entries with `read_pte`.
//!
//! Accesses with DAT off (interruption handlers) bypass page tables altogether; the
//! memory manager's frame accessors check [`kind`] for them (`arch::storage`).
//!
//! Everything here runs without locks the interrupted code may hold and without heap
//! allocation, because a touch of a revoked frame can interrupt any code, including the
//! allocator, and is resolved on this path.

use super::cpu::{dat_enabled, with_dat_off};
use super::storage::{self, Absolute};
use crate::mm::addr::{PAGE_SIZE, PhysAddr, VirtAddr};
use crate::mm::dat::{Asce, DatSpace, Pte};
use crate::mm::machine::PhysMem;
use crate::mm::manager::{USER_END, USER_START};
use core::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use spin::{Mutex, Once};

/// Bit 56 of a page-table entry, ignored by the CPU: the host set the invalid bit of
/// this entry because it took the frame away; the guest's entry is valid.
pub const HOST_BIT: u64 = 0x080;

/// The invalid bit of a page-table entry (an empty entry is the invalid bit alone).
const INVALID: u64 = Pte::EMPTY.bits();

/// Why the host took a frame away.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Paged out: the bytes stay where they are; a touch brings the frame back.
    PagedOut = 1,
    /// Discarded: the content is logically zero.
    Discarded = 2,
}

/// One byte per frame of storage: 0, or the [`Kind`] the frame is revoked for. Lock-free,
/// so the fault path and the DAT-off checks can read it whatever the CPU was doing.
static KINDS: Once<&'static [AtomicU8]> = Once::new();

/// The kernel's ASCE, for walks that must not take the address-space lock.
static KERNEL_ASCE: AtomicU64 = AtomicU64::new(0);

/// User address spaces (ASCE values) whose entries must be revoked with a frame. A real
/// host needs no such list; the model has to find the guest's entries.
static USER_SPACES: Mutex<[u64; MAX_USER_SPACES]> = Mutex::new([0; MAX_USER_SPACES]);

/// Most user address spaces alive at once (the suites use a handful).
pub const MAX_USER_SPACES: usize = 64;

/// Sets up the per-frame table for `frames` frames of storage (once, at boot, when the
/// host model starts) and records the kernel's address space.
pub fn init(frames: u64, kernel: Asce) {
    KERNEL_ASCE.store(kernel.bits(), Ordering::Relaxed);
    KINDS.call_once(|| {
        let len = usize::try_from(frames).expect("frame count fits in usize");
        // Zeroed in one fill (MVCLE), not an element at a time: one byte per frame of
        // storage is 64 Ki elements at 256 MiB, which took ~5 ms of a 30 ms boot under TCG.
        let table = alloc::boxed::Box::<[AtomicU8]>::new_zeroed_slice(len);
        // SAFETY: an all-zero byte is a valid `AtomicU8` (value 0: not revoked).
        alloc::boxed::Box::leak(unsafe { table.assume_init() })
    });
}

/// The host's answer to a touch of a revoked frame with DAT off: whether the access may
/// go on (the frame was handed back). Installed by the host model at boot.
static DAT_OFF_TOUCH: Once<fn(u64) -> bool> = Once::new();

/// Installs what decides about touches of revoked frames outside DAT ([`touched`],
/// [`touched_by_device`]).
pub fn set_dat_off_touch(handler: fn(u64) -> bool) {
    DAT_OFF_TOUCH.call_once(|| handler);
}

/// The kernel is about to access frame `pfn` through the memory manager's accessors.
/// With DAT on the page tables take care of a revoked frame (the access faults); with
/// DAT off nothing would, so the host decides here, as a real host sees every access
/// to guest storage: a paged-out or zero frame is handed back, and a discarded volatile
/// one would be a block-volatility exception inside the interruption handler, which
/// the kernel cannot take (only an emulated ESSA may nest), hence the panic.
///
/// # Panics
/// When the host refuses the access.
pub fn touched(pfn: u64) {
    if kind(pfn).is_some() && !dat_enabled() {
        host_decides(pfn, "the kernel touched");
    }
}

/// A device is about to transfer data to or from frame `pfn` (virtio DMA reaches
/// absolute storage, past every page table): the host sees the access, as a real host
/// does when its device emulation writes guest memory. A paged-out or zero frame is
/// handed back first, so the device's data is not wiped by a later zero-fill.
///
/// # Panics
/// For I/O to a frame the host discarded (the kernel must make a page stable first).
pub fn touched_by_device(pfn: u64) {
    if kind(pfn).is_some() {
        host_decides(pfn, "I/O reached");
    }
}

fn host_decides(pfn: u64, what: &str) {
    let Some(why) = kind(pfn) else {
        return;
    };
    let allowed = match DAT_OFF_TOUCH.get() {
        Some(handler) => handler(pfn),
        None if why == Kind::PagedOut => {
            restore(pfn);
            true
        }
        None => false,
    };
    assert!(
        allowed,
        "block-volatility exception outside DAT: {what} frame {pfn:#x}, which the host discarded, without making it stable first"
    );
}

/// Why frame `pfn` is revoked, if it is.
pub fn kind(pfn: u64) -> Option<Kind> {
    let kinds = KINDS.get()?;
    match kinds
        .get(usize::try_from(pfn).ok()?)?
        .load(Ordering::SeqCst)
    {
        1 => Some(Kind::PagedOut),
        2 => Some(Kind::Discarded),
        _ => None,
    }
}

/// The guest's value of a page-table entry read from storage: without the host's bits.
pub const fn guest_view(raw: u64) -> u64 {
    if raw & HOST_BIT != 0 {
        raw & !(INVALID | HOST_BIT)
    } else {
        raw
    }
}

/// What goes into storage when the guest stores the entry `value`: revoked on the way
/// if it maps a frame the host took away.
pub fn hardware_entry(value: u64) -> u64 {
    let pte = Pte::from_bits(value);
    if pte.is_valid() && kind(pte.pfn().as_u64()).is_some() {
        value | INVALID | HOST_BIT
    } else {
        value
    }
}

/// Announces a user address space, whose entries are revoked with their frames.
///
/// # Panics
/// If more than [`MAX_USER_SPACES`] are registered.
pub fn register_space(asce: Asce) {
    let mut spaces = USER_SPACES.lock();
    let slot = spaces
        .iter_mut()
        .find(|a| **a == 0)
        .expect("more user address spaces than the host model tracks");
    *slot = asce.bits();
}

/// Withdraws a user address space.
pub fn unregister_space(asce: Asce) {
    for a in USER_SPACES.lock().iter_mut().filter(|a| **a == asce.bits()) {
        *a = 0;
    }
}

/// Whether `asce` is a registered user address space.
pub fn is_registered(asce: Asce) -> bool {
    USER_SPACES.lock().contains(&asce.bits())
}

fn space(asce: u64) -> DatSpace {
    DatSpace::from_asce(Asce::region_third(PhysAddr::new(asce & !0xfff)))
}

/// The kernel's identity-map entry of `pfn` (address and raw value), if mapped.
fn kernel_entry(pfn: u64) -> Option<(PhysAddr, u64)> {
    let asce = KERNEL_ASCE.load(Ordering::Relaxed);
    if asce == 0 {
        return None;
    }
    match space(asce).walk(&Absolute, VirtAddr::new(pfn * PAGE_SIZE)) {
        crate::mm::dat::Walk::Pte { addr, .. } => Some((addr, Absolute.read_u64(addr))),
        _ => None,
    }
}

/// Sets the host's bits in the entry at `addr` that was read as `raw`, if it maps frame
/// `pfn`, and purges every CPU's TLB, in one atomic step. The memory manager stores
/// entries under its own lock, which the host does not take: if it stored another entry
/// meanwhile, the new one is looked at again (it stored a revoked frame's entry revoked
/// already, [`store_entry`]; a revoked entry has the invalid bit).
fn revoke_entry(addr: PhysAddr, mut raw: u64, pfn: u64) {
    let maps_frame = |raw| {
        let pte = Pte::from_bits(raw);
        pte.is_valid() && pte.pfn().as_u64() == pfn
    };
    if !maps_frame(raw) {
        return;
    }
    if let Some(hook) = BETWEEN_READ_AND_SWAP.get().copied().flatten() {
        hook(addr);
    }
    while maps_frame(raw) && !storage::swap_entry(addr, raw, raw | INVALID | HOST_BIT, true) {
        raw = Absolute.read_u64(addr);
    }
}

/// Called by [`revoke`] between reading an entry and swapping it (tests that interleave a
/// memory-manager store with a revocation set it).
static BETWEEN_READ_AND_SWAP: Once<Option<fn(PhysAddr)>> = Once::new();

/// Installs the hook [`revoke`] calls with an entry's address after it read the entry
/// and before it swaps it (once per boot: a test that needs to stop the host there).
pub fn set_between_read_and_swap(hook: fn(PhysAddr)) {
    BETWEEN_READ_AND_SWAP.call_once(|| Some(hook));
}

/// Takes frame `pfn` away: every DAT mapping of it faults from now on, the kernel's
/// identity map and every user mapping alike. Already revoked: only the kind changes.
pub fn revoke(pfn: u64, why: Kind) {
    let Some(slot) = KINDS.get().and_then(|k| k.get(pfn as usize)) else {
        return;
    };
    // Several CPUs: the kind first, then the walk, both ordered (SeqCst) against a
    // memory manager storing an entry for this frame at the same time, which stores
    // first and checks the kind after ([`store_entry`]): one of the two sees the other.
    slot.store(why as u8, Ordering::SeqCst);
    with_dat_off(|| {
        if let Some((addr, raw)) = kernel_entry(pfn) {
            revoke_entry(addr, raw, pfn);
        }
        let spaces = USER_SPACES.lock();
        for &asce in spaces.iter().filter(|&&a| a != 0) {
            space(asce).for_each_pte(&Absolute, USER_START..USER_END, |_, addr, _| {
                revoke_entry(addr, Absolute.read_u64(addr), pfn);
            });
        }
    });
}

/// Gives frame `pfn` back: its kernel identity mapping is valid again at once, each
/// user mapping on its next fault ([`unrevoke_entry`]).
pub fn restore(pfn: u64) {
    let Some(slot) = KINDS.get().and_then(|k| k.get(pfn as usize)) else {
        return;
    };
    slot.store(0, Ordering::SeqCst);
    with_dat_off(|| {
        if let Some((addr, raw)) = kernel_entry(pfn)
            && raw & HOST_BIT != 0
        {
            // Making an entry valid needs no purge; atomic, as for a user entry.
            storage::swap_entry(addr, raw, guest_view(raw), false);
        }
    });
}

/// Makes the entry at `addr` what the guest wrote again, if the host's bits are set and
/// its frame is no longer revoked (another CPU's host may have taken it away again
/// since the fault; the caller holds the host's lock, so it cannot do so meanwhile).
pub fn unrevoke_entry(addr: PhysAddr) {
    with_dat_off(|| {
        let raw = Absolute.read_u64(addr);
        if raw & HOST_BIT != 0 && kind(Pte::from_bits(raw).pfn().as_u64()).is_none() {
            // Atomic: the memory manager may store another entry here meanwhile (it
            // unmaps under its own lock), which a plain store would undo.
            storage::swap_entry(addr, raw, guest_view(raw), false);
        }
    });
}

/// Stores the guest's entry `value` at `addr` (the memory manager's `write_pte`):
/// revoked on the way if it maps a frame the host took away, also when another CPU's
/// host revokes the frame while the entry is stored. The store comes first, the check
/// of the frame's kind after (SeqCst), while [`revoke`] sets the kind first and walks
/// the entries after: either this CPU sees the kind, or the revoking CPU sees the entry.
pub fn store_entry(addr: PhysAddr, value: u64) {
    Absolute.write_u64(addr, hardware_entry(value));
    core::sync::atomic::fence(Ordering::SeqCst);
    let pte = Pte::from_bits(value);
    if pte.is_valid() && kind(pte.pfn().as_u64()).is_some() {
        // LURAG, not a relaxed load the compiler could answer with the store above: the
        // point is to see a revoking CPU's swap.
        let raw = storage::load_real(addr.as_u64());
        if raw & HOST_BIT == 0 && Pte::from_bits(raw).is_valid() {
            // The frame went while the entry was stored: the CPUs' TLBs may hold it.
            // Only the kernel's identity map and user entries reach here, both at the
            // address the entry's table maps; purge by the frame's entry alone.
            with_dat_off(|| purge_and_revoke(addr, raw));
        }
    }
}

/// Revokes the entry at `addr` whatever virtual address it maps: IPTE needs the page
/// index, which the entry's table does not record, so every CPU's TLB is purged instead
/// (COMPARE AND SWAP AND PURGE, as after freeing tables).
fn purge_and_revoke(addr: PhysAddr, raw: u64) {
    // If the entry changed since, the host revoked it (or gave the frame back) itself.
    storage::swap_entry(addr, raw, raw | INVALID | HOST_BIT, true);
}

/// A translation exception at `va` that the host caused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HostFault {
    /// The frame the faulting entry maps.
    pub pfn: u64,
    /// The entry, when it is a user mapping (the kernel's identity entry is restored
    /// with the frame).
    pub entry: Option<PhysAddr>,
    /// Why the frame is revoked; `None` when it is no longer (the entry is stale).
    pub kind: Option<Kind>,
}

/// Whether a translation exception at `va` in the current address space (`current`,
/// an ASCE) hit an entry the host revoked, and which frame it maps.
pub fn fault_at(current: u64, va: VirtAddr) -> Option<HostFault> {
    with_dat_off(|| {
        let user = va >= USER_START && va < USER_END;
        let asce = if user {
            current
        } else {
            KERNEL_ASCE.load(Ordering::Relaxed)
        };
        if asce == 0 {
            return None;
        }
        let crate::mm::dat::Walk::Pte { addr, .. } = space(asce).walk(&Absolute, va) else {
            return None;
        };
        let raw = Absolute.read_u64(addr);
        if raw & HOST_BIT == 0 {
            return None;
        }
        let pfn = Pte::from_bits(raw).pfn().as_u64();
        Some(HostFault {
            pfn,
            entry: user.then_some(addr),
            kind: kind(pfn),
        })
    })
}
