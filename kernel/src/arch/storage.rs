//! Physical storage, storage keys and TLB maintenance, behind the memory manager's
//! machine traits ([`crate::mm::machine`]): the kernel is identity-mapped, so absolute
//! address = kernel virtual address for every frame.

use crate::mm::addr::{PAGE_BYTES, Pfn, PhysAddr, VirtAddr};
use crate::mm::machine::{PhysMem, StorageKeys, Tlb};
use core::arch::asm;
use core::sync::atomic::{AtomicU64, Ordering};

/// Storage-key bits (the low byte of ISKE's result).
pub mod key {
    /// Access-control bits (the key a PSW key must match, 0 matches every key).
    pub const ACCESS: u8 = 0xf0;
    /// Fetch-protection bit: fetches also need a matching PSW key.
    pub const FETCH_PROTECTION: u8 = 0x08;
    /// Reference bit.
    pub const REFERENCE: u8 = 0x04;
    /// Change bit.
    pub const CHANGE: u8 = 0x02;
}

/// INSERT STORAGE KEY EXTENDED for the frame at `addr`.
pub fn iske(addr: u64) -> u8 {
    let key: u64;
    // SAFETY: ISKE only reads the storage key of an existing frame into a register.
    unsafe { asm!("iske {k}, {a}", k = out(reg) key, a = in(reg) addr, options(nostack, nomem)) };
    key as u8
}

/// SET STORAGE KEY EXTENDED for the frame at `addr`. The kernel uses the reference and
/// change bits; access key 0 and no fetch protection everywhere, except on the frames
/// the `arch::protection` tests probe with other PSW keys.
pub fn sske(addr: u64, key: u8) {
    // SAFETY: the kernel runs with PSW key 0, which matches every access-control value
    // and passes fetch protection, so no access of the kernel's changes; channel
    // programs run with ORB key 0.
    unsafe {
        asm!("sske {k}, {a}", k = in(reg) u64::from(key), a = in(reg) addr, options(nostack, nomem))
    };
}

/// Clears the key bits `bits` (of [`key::REFERENCE`] and [`key::CHANGE`]) of the frame at
/// `addr`. SSKE only when one of them is set: QEMU's TCG flushes every CPU's TLB on each
/// SSKE and RRBE (`HELPER(sske)`, `HELPER(rrbe)` in `target/s390x/tcg/mem_helper.c`),
/// and the memory manager and the host model clear bits that are mostly clear already;
/// ISKE only reads the key. The result is the same as the unconditional instruction's:
/// a bit that is 0 stays 0, and no TLB entry can bypass its recording, since every clear
/// that happens still flushes.
pub fn clear_key_bits(addr: u64, bits: u8) {
    let k = iske(addr);
    if k & bits != 0 {
        sske(addr, k & !bits);
    }
}

/// Resets the reference bit of the frame at `addr`; returns whether it was set. RRBE
/// only when ISKE shows it set (see [`clear_key_bits`]); a reference between the two is
/// one after the reset.
pub fn test_and_clear_reference(addr: u64) -> bool {
    iske(addr) & key::REFERENCE != 0 && rrbe(addr)
}

/// Whether the change bit of the frame at `addr` is set.
pub fn change_bit(addr: u64) -> bool {
    iske(addr) & key::CHANGE != 0
}

/// RESET REFERENCE BIT EXTENDED; returns whether it was set.
fn rrbe(addr: u64) -> bool {
    let cc: u64;
    // SAFETY: RRBE only clears the reference bit and reports the old R/C in the CC.
    unsafe {
        asm!("rrbe 0, {a}", "ipm {cc}", "srl {cc}, 28", a = in(reg) addr, cc = out(reg) cc, options(nostack, nomem));
    }
    cc & 2 != 0
}

/// The machine as the memory manager (the guest) sees it: storage as the guest reaches
/// it, with the host's revocations in force (see [`super::revoke`]): page-table entries
/// read back as the guest stored them, and an access with DAT off to a frame the host
/// took away goes to the host first, as the page tables would send it with DAT on.
#[derive(Debug, Default)]
pub struct Machine;

/// Absolute storage as a host reaches it: no revocation applies. For the host model's
/// glue (walking the guest's tables, poisoning and zeroing frames), never for the guest.
#[derive(Debug, Default)]
pub struct Absolute;

/// The doubleword at `pa` for one single-copy-atomic access (other CPUs change DAT
/// entries concurrently: IPTE, CSP, [`swap_entry`]), in the dev profile cheaper than
/// `read_volatile`, whose precondition check costs more than the access: the host
/// model's DAT walks make hundreds of thousands of them per boot.
///
/// # Safety
/// `pa` must be 8-byte aligned and lie in storage the caller may access at this moment
/// (identity-mapped with DAT on, or any storage with DAT off), and no `&mut` to it may
/// be live while the returned reference is used.
unsafe fn doubleword<'a>(pa: PhysAddr) -> &'a AtomicU64 {
    debug_assert!(pa.as_u64().is_multiple_of(8), "unaligned doubleword {pa:?}");
    // SAFETY: as the caller guarantees; storage is never deallocated.
    unsafe { AtomicU64::from_ptr(pa.as_u64() as *mut u64) }
}

impl PhysMem for Absolute {
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        // SAFETY: `PhysMem` callers pass aligned addresses of DAT tables (and frames they
        // own) in storage, which they reach identity-mapped or with DAT off.
        unsafe { doubleword(pa) }.load(Ordering::Relaxed)
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        // SAFETY: as for `read_u64`; callers write only DAT tables and frames they own.
        unsafe { doubleword(pa) }.store(value, Ordering::Relaxed);
    }

    fn frame(&mut self, pfn: Pfn) -> &mut [u8; PAGE_BYTES] {
        // SAFETY: the frame is identity-mapped; the memory manager hands out one frame
        // to one owner at a time, so no other live reference aliases it.
        unsafe { &mut *(pfn.addr().as_u64() as *mut [u8; PAGE_BYTES]) }
    }

    fn frame_ref(&self, pfn: Pfn) -> &[u8; PAGE_BYTES] {
        // SAFETY: as for `frame`, shared.
        unsafe { &*(pfn.addr().as_u64() as *const [u8; PAGE_BYTES]) }
    }
}

impl PhysMem for Machine {
    fn read_u64(&self, pa: PhysAddr) -> u64 {
        super::revoke::touched(pa.pfn().as_u64());
        Absolute.read_u64(pa)
    }

    fn write_u64(&mut self, pa: PhysAddr, value: u64) {
        super::revoke::touched(pa.pfn().as_u64());
        Absolute.write_u64(pa, value);
    }

    fn frame(&mut self, pfn: Pfn) -> &mut [u8; PAGE_BYTES] {
        super::revoke::touched(pfn.as_u64());
        // SAFETY: as for `Absolute::frame`.
        unsafe { &mut *(pfn.addr().as_u64() as *mut [u8; PAGE_BYTES]) }
    }

    fn frame_ref(&self, pfn: Pfn) -> &[u8; PAGE_BYTES] {
        super::revoke::touched(pfn.as_u64());
        // SAFETY: as for `Absolute::frame`, shared.
        unsafe { &*(pfn.addr().as_u64() as *const [u8; PAGE_BYTES]) }
    }

    fn read_pte(&self, pa: PhysAddr) -> u64 {
        super::revoke::guest_view(self.read_u64(pa))
    }

    fn write_pte(&mut self, pa: PhysAddr, value: u64) {
        super::revoke::touched(pa.pfn().as_u64());
        super::revoke::store_entry(pa, value);
    }
}

/// Fills frame `pfn` with `byte` as the host does (poison, zero): with DAT off, past
/// any revocation.
pub fn fill_frame(pfn: Pfn, byte: u8) {
    super::cpu::with_dat_off(|| Absolute.frame(pfn).fill(byte));
}

fn invalidate_page(pte: PhysAddr, va: VirtAddr) {
    // The page-table origin is the PTE address rounded down to the 2 KiB table.
    let origin = pte.as_u64() & !0x7ff;
    // SAFETY: IPTE sets the invalid bit of the PTE for `va` in the table at `origin`
    // and purges it from every TLB; the caller is about to replace that entry.
    unsafe {
        asm!("ipte {o}, {v}", o = in(reg_addr) origin, v = in(reg_addr) va.as_u64(), options(nostack))
    };
}

fn flush_all() {
    // Every CPU's TLB, not only this one's (PTLB): freed tables may be cached on any
    // CPU that ran in the space. COMPARE AND SWAP AND PURGE with the purge bit in R2
    // purges all CPUs' TLBs (Linux `__tlb_flush_global`; QEMU TCG flushes all vCPUs,
    // synced). The compare-and-swap itself on a local zero word changes nothing.
    let mut word = 0u32;
    // SAFETY: CSP compares the local word with 0 and stores 0 (R1 = r2/r3 pair, both
    // zero); only the purge has an effect, dropping cached translations.
    unsafe {
        asm!(
            "csp %r2, {a}",
            a = in(reg_addr) (&mut word as *mut u32 as u64) | 1,
            inout("r2") 0u64 => _,
            in("r3") 0u64,
            options(nostack),
        )
    };
}

/// Replaces the doubleword at absolute address `addr` (a page-table entry, DAT off) with
/// `new` if it still holds `old`, atomically against every other CPU's stores; with
/// `purge`, every CPU's TLB is purged as well when it did. Returns whether it did.
///
/// COMPARE AND SWAP AND PURGE (CSPG, DAT-enhancement facility): the host model changes
/// entries the memory manager writes under its own lock, so a plain read-modify-write
/// could undo the memory manager's store, and IPTE followed by a store would show other
/// CPUs an invalid entry without the host's bit in between.
pub fn swap_entry(addr: PhysAddr, old: u64, new: u64, purge: bool) -> bool {
    let cc: u64;
    // SAFETY: CSPG compares the doubleword at `addr` (8-byte aligned: an entry of a
    // page table) with r2 and, if equal, stores r3 there and, with the purge bit (bit
    // 63 of the address register), purges every CPU's TLB; the callers run with DAT
    // off, where `addr` is the entry's absolute (= real) address. Only that entry and
    // the TLBs change, and only to a value the caller computed from the one it read.
    unsafe {
        asm!(
            "cspg %r2, {a}",
            "ipm {cc}",
            a = in(reg_addr) addr.as_u64() | u64::from(purge),
            cc = out(reg) cc,
            inout("r2") old => _,
            in("r3") new,
            options(nostack),
        )
    };
    (cc >> 28) & 3 == 0
}

impl Tlb for Absolute {
    fn invalidate_page(&mut self, pte: PhysAddr, va: VirtAddr) {
        invalidate_page(pte, va);
    }

    fn flush_all(&mut self) {
        flush_all();
    }
}

impl Tlb for Machine {
    fn invalidate_page(&mut self, pte: PhysAddr, va: VirtAddr) {
        invalidate_page(pte, va);
    }

    fn flush_all(&mut self) {
        flush_all();
    }
}

impl StorageKeys for Machine {
    fn test_and_clear_reference(&mut self, pfn: Pfn) -> bool {
        test_and_clear_reference(pfn.addr().as_u64())
    }

    fn change_bit(&mut self, pfn: Pfn) -> bool {
        change_bit(pfn.addr().as_u64())
    }

    fn clear_change(&mut self, pfn: Pfn) {
        clear_key_bits(pfn.addr().as_u64(), key::CHANGE);
    }
}

/// Loads the doubleword at real address `addr` (rounded down to 8 bytes) with LURAG:
/// beyond the configured storage it raises an addressing exception (0x05), which is how
/// the kernel finds the end of storage when READ SCP INFO cannot tell.
pub fn load_real(addr: u64) -> u64 {
    let value: u64;
    // SAFETY: a load only, of an aligned real address; beyond storage it is suppressed
    // with an addressing exception, which the caller catches.
    unsafe {
        asm!("lurag {v}, {a}", v = out(reg) value, a = in(reg) addr & !7, options(nostack, readonly));
    }
    value
}
