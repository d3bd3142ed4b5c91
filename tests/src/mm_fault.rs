//! `mm::fault`: demand paging in a user address space on the machine: read faults map
//! page-cache pages whose bytes match the backing-store pattern, private writes copy on
//! write, shared writes dirty the cache page, anonymous memory starts zeroed.

use crate::support::{map_file, model_counters, needs_mm, needs_model, strike_only_new_hints};
use kernel::arch::uaccess;
use kernel::cmma::backend::with_model;
use kernel::cmma::model::{Counters, DiscardRate, DiscardSchedule, MIN_AGE_ESSA};
use kernel::ktest::Test;
use kernel::mm::addr::VirtAddr;
use kernel::mm::backing::{files, pattern, pattern_byte};
use kernel::mm::mmap::MapSource;
use kernel::mm::vma::VmFlags;
use kernel::vm::{self, UserSpace};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("mm::fault");

ktest! {
    /// Reading a mapped file faults every page in (major faults), and every byte is the
    /// file's pattern.
    fn read_fault_maps_file_pages(t) {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let (_, va) = map_file(&space, files::SMALL, 0, 16, VmFlags::READ);
        let before = vm::with(|mm| mm.stats());
        space.enter();
        let mut bad = None;
        for offset in (0..16 * 4096u64).step_by(509) {
            let got = uaccess::read_u8(VirtAddr::new(va.as_u64() + offset));
            if got != pattern_byte(files::SMALL, offset) && bad.is_none() {
                bad = Some((offset, got));
            }
        }
        space.leave();
        let after = vm::with(|mm| mm.stats());
        check_eq!(t, bad, None);
        check!(t, after.major_faults + after.minor_faults >= before.major_faults + before.minor_faults + 16,
            "faults before {before:?} after {after:?}");
    }
}

ktest! {
    /// A private writable mapping: the write copies the page; the file keeps its bytes.
    fn private_write_copies_on_write(t) {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let (_, va) = map_file(&space, files::MEDIUM, 0, 4, VmFlags::READ.union(VmFlags::WRITE));
        space.enter();
        let first = uaccess::read_u8(va);
        uaccess::write_u8(va, !first);
        let mine = uaccess::read_u8(va);
        space.leave();
        check_eq!(t, first, pattern_byte(files::MEDIUM, 0));
        check_eq!(t, mine, !first);
        let mut file = [0u8; 1];
        let read = vm::with(|mm| {
            let mapping = mm.open_file(files::MEDIUM)?;
            mm.read_file(mapping, 0, &mut file)
        });
        check!(t, read.is_ok(), "{read:?}");
        check_eq!(t, file[0], pattern_byte(files::MEDIUM, 0));
        check!(t, vm::with(|mm| mm.stats()).cow_faults >= 1);
    }
}

ktest! {
    /// Anonymous memory reads as zero and keeps what is written.
    fn anonymous_memory_is_zero_filled(t) {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let va = vm::with(|mm| mm.mmap(space.id(), None, 8 * 4096, VmFlags::READ.union(VmFlags::WRITE), MapSource::Anon))
            .expect("anon mmap");
        space.enter();
        let zero = uaccess::read_u64(VirtAddr::new(va.as_u64() + 4096));
        uaccess::write_u64(VirtAddr::new(va.as_u64() + 8192), 0x1122_3344_5566_7788);
        let back = uaccess::read_u64(VirtAddr::new(va.as_u64() + 8192));
        space.leave();
        check_eq!(t, zero, 0);
        check_eq!(t, back, 0x1122_3344_5566_7788);
    }
}

ktest! {
    /// An access outside every VMA is refused by the memory manager and arrives at the
    /// test as a translation exception.
    fn access_outside_vmas_faults(t) [EXPECTS_PGM] {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        space.enter();
        let info = t.expect_pgm(0x3b, || { uaccess::read_u8(VirtAddr::new(1 << 39)); });
        space.leave();
        if let Some(info) = info {
            check_eq!(t, info.teid & !0xfff, 1 << 39);
        }
    }
}

ktest! {
    /// A program interruption that is not a memory fault, taken while a user space is
    /// current, reaches the test as itself, even right after a store fault left a
    /// store-indicating TEID in the lowcore (only DAT and protection exceptions store a
    /// TEID; a stale one once made the memory manager "resolve" an operation exception
    /// and retry it forever).
    fn non_memory_exceptions_in_a_user_space_are_not_faults(t) [EXPECTS_PGM] {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let (_, va) = map_file(&space, files::MEDIUM, 0, 2, VmFlags::READ.union(VmFlags::WRITE));
        let block = crate::support::Block::new();
        space.enter();
        uaccess::write_u64(va, 7);
        let op = t.expect_pgm(0x01, kernel::arch::probe::invalid_opcode);
        uaccess::write_u64(VirtAddr::new(va.as_u64() + 4096), 7);
        // ESSA in problem state: privileged operation where ESSA executes or is emulated;
        // with cmma=off under TCG nobody emulates it, so it stays an operation exception.
        let essa_code = match kernel::cmma::backend::current() {
            kernel::cmma::backend::Backend::Off if !kernel::cmma::backend::probe() => 0x01,
            _ => 0x02,
        };
        t.expect_pgm(essa_code, || kernel::arch::probe::essa_in_problem_state(block.addr()));
        space.leave();
        if let Some(info) = op {
            check_eq!(t, info.teid, 0);
        }
    }
}

ktest! {
    /// A fault while the memory manager's lock is held (user memory touched inside
    /// `vm::with`) cannot be resolved; it unwinds past the lock's guard, and the catch
    /// releases the lock it left behind (the space's drop below would hang otherwise).
    fn fault_inside_the_memory_manager_lock_unwinds(t) [EXPECTS_PGM] {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let (_, va) = map_file(&space, files::SMALL, 0, 1, VmFlags::READ);
        space.enter();
        let result = {
            let _expected = kernel::trap::expecting();
            kernel::trap::catch(|| vm::with(|_| uaccess::read_u8(va)))
        };
        space.leave();
        let code = result.err().map(|i| i.code);
        check!(t, matches!(code, Some(0x10 | 0x11 | 0x3b)), "got {code:?}");
        check!(t, !vm::locked(), "memory manager lock still held");
    }
}

ktest! {
    /// After a fault inside the memory manager's lock was unwound, the memory manager
    /// still resolves faults (this would hang, and time out, if the lock had been left
    /// held). It makes the unwound fault itself, so it holds in any test order (it once
    /// relied on the test before it, and failed when `ktest.shuffle` ran it first).
    fn memory_manager_usable_after_an_unwound_fault(t) [EXPECTS_PGM] {
        if !needs_mm(t) { return; }
        let space = UserSpace::new().expect("space");
        let (mapping, va) = map_file(&space, files::SMALL, 0, 1, VmFlags::READ);
        vm::with(|mm| mm.truncate_inode_pages(mapping, 0)).expect("truncate");
        space.enter();
        let unwound = {
            let _expected = kernel::trap::expecting();
            kernel::trap::catch(|| vm::with(|_| uaccess::read_u8(va)))
        };
        let before = vm::with(|mm| mm.stats().major_faults);
        let byte = uaccess::read_u8(va);
        let after = vm::with(|mm| mm.stats().major_faults);
        space.leave();
        check!(t, unwound.is_err(), "the fault inside the lock was not unwound");
        check_eq!(t, byte, pattern_byte(files::SMALL, 0));
        check!(t, after > before, "the fault after it was no major fault: {before} -> {after}");
    }
}

/// Maps page `page` of `files::MEDIUM` with `flags`, drops it from the page cache, installs
/// a host that strikes after every ESSA and only at frames hinted from then on (so the
/// fault's page is the only one for the strikes during the fault), and reads the word at
/// `offset` through the mapping: the word, and the model's counters before and after.
fn read_under_a_host_striking_after_every_essa(
    t: &mut Test<'_>,
    page: u64,
    flags: VmFlags,
    offset: u64,
) -> (u64, Counters, Counters) {
    let space = UserSpace::new().expect("space");
    let (mapping, va) = map_file(&space, files::MEDIUM, page, 1, flags);
    vm::with(|mm| mm.truncate_inode_pages(mapping, 0)).expect("truncate");
    let schedule = DiscardSchedule {
        seed: t.seed(),
        rate: DiscardRate::PerMille(1000),
        min_age: MIN_AGE_ESSA,
    };
    let before = model_counters();
    strike_only_new_hints(schedule);
    space.enter();
    let word = uaccess::read_u64(VirtAddr::new(va.as_u64() + offset));
    space.leave();
    with_model(|model, _| model.set_schedule(None));
    (word, before, model_counters())
}

ktest! {
    /// The host discards a page between the fault that read it and the PTE that maps it
    /// (the page, hinted volatile after readpage, is taken by the host while the fault
    /// allocates the new space's page tables): the access through the new PTE still
    /// raises the discard fault and the page is reloaded, so the load reads the file,
    /// never the discarded frame's contents. Guards `PhysMem::write_pte` (a mapping made
    /// after the discard is revoked like the kernel's own), without which the load reads
    /// the host model's poison (found by `cargo xtask stress --discard-rate 1000`).
    fn page_discarded_before_it_is_mapped_still_faults(t) [NEEDS_ESSA] {
        if !needs_mm(t) || !needs_model(t, "only the host model discards on a schedule") { return; }
        let (word, before, after) = read_under_a_host_striking_after_every_essa(t, 40, VmFlags::READ, 16);
        let faults = after.discard_faults - before.discard_faults;
        check_eq!(t, word, pattern(files::MEDIUM, 40 * 4096 + 16));
        check!(t, faults >= 1, "the page was not discarded before it was mapped: the test saw no discard fault");
    }
}

ktest! {
    /// A read fault in a shared writable mapping completes under a host that strikes
    /// after every ESSA, and reads the file. The fault hints its page twice: volatile
    /// after readpage (ORC 3), potentially volatile when it maps it writable (ORC 4,
    /// series 4/6); the strike after ORC 4 must spare it, as the strike after any ESSA
    /// spares the frame that ESSA hinted (`MIN_AGE_ESSA`). When the host aged the frame
    /// from its first hint it took the page each time the fault had mapped it, and the
    /// access never completed (`cargo xtask stress --discard-rate 1000`, seed 0x4e21).
    fn shared_writable_read_fault_completes_under_a_host_striking_after_every_essa(t) [NEEDS_ESSA] {
        if !needs_mm(t) || !needs_model(t, "only the host model discards on a schedule") { return; }
        let flags = VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED;
        let (word, before, after) = read_under_a_host_striking_after_every_essa(t, 41, flags, 24);
        check_eq!(t, word, pattern(files::MEDIUM, 41 * 4096 + 24));
        check!(t, after.scheduled_strikes > before.scheduled_strikes, "the host did not strike during the fault");
    }
}
