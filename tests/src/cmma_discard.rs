//! `cmma::discard`: what a host does with hinted pages, and what the guest sees: a
//! discarded volatile block raises the block-volatility exception (0x1A) with its
//! absolute address; dirty data is never lost. Only the host model can discard on
//! request (KVM never discards volatile pages; z/VM does so on its own schedule).

use crate::support::{Block, host_reclaim, needs_model};
use core::hint::black_box;
use kernel::arch::essa::essa;
use kernel::arch::storage;
use kernel::cmma::essa::{PageStateByte, UsageState};
use kernel::cmma::model::ReclaimOutcome;
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("cmma::discard");

/// Why the tests skip without the host model.
const DISCARD_NEEDS_MODEL: &str = "host discards on request need the host model (cmma=model)";

/// The block's absolute address, after making it stable and resident (ORC 5): a frame
/// reused from an earlier test may still count as paged out in the model.
fn resident_addr(b: &Block) -> u64 {
    let a = b.addr();
    essa(5, a);
    a
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
        storage::sske(a, storage::iske(a) & !storage::key::CHANGE);
        essa(4, a);
        check_eq!(t, host_reclaim(b.pfn()), Some(ReclaimOutcome::Discarded));
        t.expect_pgm(0x1a, || { black_box(black_box(&b.0)[0]); });
        essa(1, a);
    }
}
