//! `cmma::discard`: what a host does with hinted pages, and what the guest sees: a
//! discarded volatile block raises the block-volatility exception (0x1A) with its
//! absolute address; dirty data is never lost; no ORC makes a block resident, a touch
//! does (KVM); a kernel read of a discarded page-cache page reads the file, not the
//! host's poison; a discard fault on a page nobody references is retried. Only the
//! host model can discard or page out on request (KVM never discards volatile pages;
//! z/VM does so on its own schedule).
//!
//! Files: `SCRATCH + 23` from page 8 on (the page-state suite uses pages 0-1).

use crate::support::{
    Block, cached, check_is, host_reclaim, model_counters, needs_mm_with_model, needs_model,
    state_counters,
};
use core::hint::black_box;
use kernel::arch::cpu::Psw;
use kernel::arch::essa::essa;
use kernel::arch::interrupts::PgmInfo;
use kernel::arch::storage;
use kernel::cmma::essa::{PageStateByte, UsageState};
use kernel::cmma::model::ReclaimOutcome;
use kernel::mm::addr::{PAGE_SIZE, Pfn};
use kernel::mm::backing::{check_pattern, files};
use kernel::mm::error::MmError;
use kernel::mm::machine::PhysMem;
use kernel::vm::{self, FaultOutcome};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("cmma::discard");

/// Why the tests skip without the host model.
const DISCARD_NEEDS_MODEL: &str = "host discards on request need the host model (cmma=model)";

/// The block's absolute address, after making it stable and resident: a frame reused
/// from an earlier test may still count as paged out or zero in the model, and only a
/// touch makes a block resident (no ORC does, as on KVM).
fn resident_addr(b: &Block) -> u64 {
    let a = b.addr();
    essa(1, a);
    black_box(black_box(&b.0)[0]);
    a
}

/// The whole result byte of ORC 0 (extract) for the block at `a`.
fn extract(a: u64) -> u8 {
    essa(0, a)
}

ktest! {
    /// Volatile, discarded, touched: PIC 0x1A, TEID = absolute block address, PSW at
    /// the instruction (retry semantics). ORC 6 then reports the discard (V, zero), and
    /// ORC 1 hands back a zeroed block.
    fn volatile_discard_faults(t) [NEEDS_ESSA, EXPECTS_PGM] {
        if !needs_model(t, DISCARD_NEEDS_MODEL) { return; }
        let mut b = Block::new();
        let a = resident_addr(&b);
        essa(3, a);
        check_eq!(t, host_reclaim(b.pfn()), Some(ReclaimOutcome::Discarded));
        let info = t.expect_pgm(0x1a, || { black_box(black_box(&b.0)[100]); });
        if let Some(info) = info {
            check_eq!(t, info.teid, a);
            check_eq!(t, info.instruction_address(), info.psw.addr);
        }
        let old = PageStateByte(essa(6, a));
        check!(t, old.is_discarded(), "ORC 6 old state {old}");
        check_eq!(t, PageStateByte(essa(0, a)).usage(), UsageState::Volatile);
        essa(1, a);
        let bytes = black_box(&b.0);
        check!(t, bytes.iter().all(|&x| x == 0), "block not zeroed after reuse");
        black_box(&mut b.0)[0] = 1;
    }
}

ktest! {
    /// A stable block is paged out, never discarded: its bytes come back untouched.
    fn stable_is_preserved(t) [NEEDS_ESSA] {
        if !needs_model(t, DISCARD_NEEDS_MODEL) { return; }
        let b = Block::new();
        let a = resident_addr(&b);
        essa(1, a);
        check_eq!(t, host_reclaim(b.pfn()), Some(ReclaimOutcome::PagedOut));
        check!(t, black_box(&b.0).iter().all(|&x| x == 0x5a), "stable contents lost");
    }
}

ktest! {
    /// Potentially volatile and written after the hint (change bit set): the host must
    /// keep it (Sp); the data survives.
    fn dirty_pot_volatile_is_kept(t) [NEEDS_ESSA] {
        if !needs_model(t, DISCARD_NEEDS_MODEL) { return; }
        let mut b = Block::new();
        let a = resident_addr(&b);
        essa(4, a);
        black_box(&mut b.0)[7] = 0xee;
        check_eq!(t, host_reclaim(b.pfn()), Some(ReclaimOutcome::PagedOut));
        check_eq!(t, black_box(&b.0)[7], 0xee);
        check_eq!(t, PageStateByte(essa(0, a)).usage(), UsageState::Stable);
    }
}

ktest! {
    /// Potentially volatile and clean (change bit clear, as after the kernel moved it
    /// into its dirty flag): discarded like a volatile block.
    fn clean_pot_volatile_is_discarded(t) [NEEDS_ESSA, EXPECTS_PGM] {
        if !needs_model(t, DISCARD_NEEDS_MODEL) { return; }
        let b = Block::new();
        let a = resident_addr(&b);
        storage::clear_key_bits(a, storage::key::CHANGE);
        essa(4, a);
        check_eq!(t, host_reclaim(b.pfn()), Some(ReclaimOutcome::Discarded));
        t.expect_pgm(0x1a, || { black_box(black_box(&b.0)[0]); });
        essa(1, a);
    }
}

ktest! {
    /// A block set stable from the zero state stays "stable, zero" (Sz) until touched,
    /// as on KVM (`ESSA_SET_STABLE` changes only the usage; the host maps a zero page on
    /// the first touch): ORC 1, 5 and 6 leave it Sz, the touch reads zeros and makes it
    /// Sr.
    fn stable_block_stays_zero_until_touched(t) [NEEDS_ESSA] {
        if !needs_model(t, DISCARD_NEEDS_MODEL) { return; }
        let b = Block::new();
        let a = resident_addr(&b);
        essa(3, a);
        check_eq!(t, host_reclaim(b.pfn()), Some(ReclaimOutcome::Discarded));
        essa(1, a);
        check_is!(t, extract(a), 0x03, "after ORC 1 (Sz)");
        essa(5, a);
        essa(6, a);
        check_is!(t, extract(a), 0x03, "after ORC 5 and 6 (Sz)");
        check!(t, black_box(&b.0).iter().all(|&x| x == 0), "the first touch does not read zeros");
        check_is!(t, extract(a), 0x00, "after the touch (Sr)");
    }
}

ktest! {
    /// ORC 5 (stable, make resident) does not page a paged-out block in, as on KVM
    /// ("we will not make this page resident"); the guest's touch does, and the block's
    /// bytes are back.
    fn orc_5_leaves_a_paged_out_block_out(t) [NEEDS_ESSA] {
        if !needs_model(t, DISCARD_NEEDS_MODEL) { return; }
        let b = Block::new();
        let a = resident_addr(&b);
        check_eq!(t, host_reclaim(b.pfn()), Some(ReclaimOutcome::PagedOut));
        check_is!(t, extract(a), 0x02, "paged out (Sp)");
        essa(5, a);
        check_is!(t, extract(a), 0x02, "after ORC 5");
        check_eq!(t, black_box(&b.0)[17], 0x5a);
        check_is!(t, extract(a), 0x00, "after the touch (Sr)");
    }
}

ktest! {
    /// A paged-out block the guest touches is resident again: a later extract says so,
    /// and ORC 3 then sets it volatile in place (Vr) instead of dropping a preserved
    /// copy, so the store the touch made survives.
    fn touched_paged_out_block_is_resident(t) [NEEDS_ESSA] {
        if !needs_model(t, DISCARD_NEEDS_MODEL) { return; }
        let mut b = Block::new();
        let a = resident_addr(&b);
        check_eq!(t, host_reclaim(b.pfn()), Some(ReclaimOutcome::PagedOut));
        black_box(&mut b.0)[9] = 0x99;
        check_is!(t, extract(a), 0x00, "after the touch (Sr)");
        let discards = model_counters().discards;
        check_is!(t, essa(3, a), 0x00, "ORC 3 old state");
        check_is!(t, extract(a), 0x0c, "after ORC 3 (Vr)");
        check_is!(t, model_counters().discards, discards, "host discards");
        check_eq!(t, black_box(&b.0)[9], 0x99);
        essa(1, a);
    }
}

ktest! {
    /// A kernel read of a page-cache page the host discarded (`read_file`) reads the
    /// file, not the host's poison: the lookup's ORC 6 finds the discard before the
    /// copy, drops the page and reads it again; no discard fault is needed. Guards the
    /// stabilisation before kernel copies out of page-cache frames.
    fn kernel_read_of_a_discarded_page_reads_the_file(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 23;
        const PAGE: u64 = 8;
        let mut buf = [0u8; PAGE_SIZE as usize];
        let m = vm::with(|mm| {
            let m = mm.open_file(file)?;
            mm.read_file(m, PAGE * PAGE_SIZE, &mut buf[..1])?;
            Ok::<_, MmError>(m)
        });
        let Ok(m) = m else {
            check!(t, false, "read_file: {:?}", m);
            return;
        };
        check_is!(t, cached(m, PAGE).and_then(host_reclaim), Some(ReclaimOutcome::Discarded), "host reclaim");
        let (faults, found) = (model_counters().discard_faults, state_counters().found_discarded);
        let read = vm::with(|mm| mm.read_file(m, PAGE * PAGE_SIZE, &mut buf));
        check_eq!(t, read, Ok(PAGE_SIZE as usize));
        check_eq!(t, check_pattern(file, PAGE * PAGE_SIZE, &buf), Ok(()));
        check_is!(t, state_counters().found_discarded, found + 1, "discards found by ORC 6");
        check_is!(t, model_counters().discard_faults, faults, "discard faults");
    }
}

ktest! {
    /// A discard fault (0x1A) on a page nobody references any more is retried, as the
    /// 6/6 handler does when `get_page_unless_zero` fails (the page was freed since the
    /// host discarded it): the fault glue reports it resolved and changes nothing.
    fn discard_fault_on_an_unreferenced_page_is_retried(t) {
        if !crate::support::needs_mm(t) { return; }
        let free = vm::with(|mm| {
            let base = mm.frames().pages().base().as_u64();
            (base..base + mm.frames().pages().len() as u64)
                .map(Pfn::new)
                .find(|&pfn| mm.frames().is_free(pfn))
        });
        let Some(pfn) = free else {
            t.skip("no free frame in the pool");
            return;
        };
        let before = vm::with(|mm| mm.stats());
        let info = PgmInfo {
            code: 0x1a,
            ilen: 4,
            psw: Psw { mask: 0, addr: 0 },
            teid: pfn.addr().as_u64(),
        };
        check_eq!(t, vm::discard_fault(&info), FaultOutcome::Resolved);
        check_is!(t, vm::with(|mm| mm.stats()), before, "memory-manager counters");
        check!(t, vm::with(|mm| mm.frames().is_free(pfn)), "the frame is no longer free");
    }
}

ktest! {
    /// `page_discard` never makes dirty data disappear (1/6: `VM_BUG_ON(PageDirty)`): a
    /// dirty page forced volatile behind the rules' back (raw ORC 3) and discarded by
    /// the host reaches the discard fault; the memory manager refuses it, reports the
    /// broken rule and keeps the page cached and dirty. (The test takes the report
    /// itself; any other test during which one arrives fails.)
    fn dirty_page_reaching_discard_is_refused_and_reported(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 23;
        const PAGE: u64 = 12;
        let written = vm::with(|mm| {
            let m = mm.open_file(file)?;
            mm.write_file(m, PAGE * PAGE_SIZE, &[0x3c; 8])?;
            Ok::<_, MmError>(m)
        });
        let Ok(m) = written else {
            check!(t, false, "write_file: {:?}", written);
            return;
        };
        let Some(pfn) = cached(m, PAGE) else {
            check!(t, false, "page not cached");
            return;
        };
        essa(3, pfn.addr().as_u64());
        check_eq!(t, host_reclaim(pfn), Some(ReclaimOutcome::Discarded));
        let info = PgmInfo {
            code: 0x1a,
            ilen: 4,
            psw: Psw { mask: 0, addr: 0 },
            teid: pfn.addr().as_u64(),
        };
        let bug = kernel::mm::error::Bug::DiscardDirty(pfn);
        check_eq!(t, vm::discard_fault(&info), FaultOutcome::Refused(MmError::Bug(bug)));
        check_eq!(t, vm::take_bugs(), alloc::vec![bug]);
        check_is!(t, cached(m, PAGE), Some(pfn), "still cached");
        let dirty = vm::with(|mm| mm.page(pfn).map(|p| p.test(kernel::mm::page::PageFlags::DIRTY)));
        check_is!(t, dirty, Some(true), "still dirty");
        // The host lost the data already; drop the page (truncation drops dirty data)
        // so the file on the backing device is what it was.
        check_eq!(t, vm::with(|mm| mm.truncate_inode_pages(m, PAGE)), Ok(()));
    }
}

ktest! {
    /// A minor fault maps a cached page without a state change (series 5/6), even one
    /// the host discarded: the entry the memory manager stores for it is revoked on the
    /// way (the host's frame is gone), so the first access takes the discard fault, the
    /// page is dropped and read again, and the access sees the file's bytes, never the
    /// host's poison.
    fn minor_fault_on_a_discarded_page_takes_the_discard_fault(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 23;
        const PAGE: u64 = 16;
        let mut byte = [0u8; 1];
        let m = vm::with(|mm| {
            let m = mm.open_file(file)?;
            mm.read_file(m, PAGE * PAGE_SIZE, &mut byte)?;
            Ok::<_, MmError>(m)
        });
        let Ok(m) = m else {
            check!(t, false, "read_file: {:?}", m);
            return;
        };
        check_is!(t, cached(m, PAGE).and_then(host_reclaim), Some(ReclaimOutcome::Discarded), "host reclaim");
        let (faults, stats) = (model_counters().discard_faults, vm::with(|mm| mm.stats()));
        let space = vm::UserSpace::new().expect("space");
        let (_, va) = crate::support::map_file(&space, file, PAGE, 1, kernel::mm::vma::VmFlags::READ);
        check_eq!(t, crate::support::read_pages(&space, va, file, PAGE, 1), None);
        let after = vm::with(|mm| mm.stats());
        check_is!(t, model_counters().discard_faults, faults + 1, "discard faults");
        check_is!(t, after.minor_faults, stats.minor_faults + 1, "minor faults");
        check_is!(t, after.major_faults, stats.major_faults + 1, "major faults (the reload)");
        check_is!(t, after.discards, stats.discards + 1, "page_discard");
    }
}

ktest! {
    /// A page read into a frame the host dropped while it was free (Uz, then ORC 1 at
    /// allocation: Sz) holds the file's bytes: the frame is handed back zero-filled
    /// *before* the data arrives, whether the read is a copy through the kernel's
    /// mapping (initrd) or virtio DMA past every page table (`mm.backing=virtio`), never
    /// zero-filled after it.
    fn read_into_a_frame_the_host_dropped_keeps_the_data(t) [NEEDS_ESSA] {
        if !needs_mm_with_model(t) { return; }
        let file = files::SCRATCH + 23;
        const PAGE: u64 = 20;
        let freed = vm::with(|mm| {
            let m = mm.open_file(file)?;
            if let Some(pfn) = mm.find_get_page(m, PAGE) {
                mm.put_page(pfn);
                mm.truncate_inode_pages(m, PAGE)?;
            }
            let high = mm.config().high_watermark + 16;
            mm.reclaim(high.saturating_sub(mm.frames().free_count()));
            let pfn = mm.alloc_page()?;
            // Resident first: a frame the host dropped under an earlier test is stable
            // but still zero and not resident after ORC 1 (Sz, as on KVM) until it is
            // touched, and the host cannot drop it again (found by the seed sweep,
            // ktest.seed=606589707049766568 shuffled).
            mm.machine_mut().frame(pfn).fill(0);
            mm.put_page(pfn);
            Ok::<_, MmError>((m, pfn))
        });
        let Ok((m, pfn)) = freed else {
            check!(t, false, "setting up a free frame: {:?}", freed);
            return;
        };
        check_eq!(t, host_reclaim(pfn), Some(ReclaimOutcome::Discarded));
        let mut buf = [0u8; PAGE_SIZE as usize];
        let read = vm::with(|mm| mm.read_file(m, PAGE * PAGE_SIZE, &mut buf));
        check_eq!(t, read, Ok(PAGE_SIZE as usize));
        check_is!(t, cached(m, PAGE), Some(pfn), "the read took the dropped frame (the free list is LIFO)");
        check_eq!(t, check_pattern(file, PAGE * PAGE_SIZE, &buf), Ok(()));
    }
}
