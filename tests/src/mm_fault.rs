//! `mm::fault`: demand paging in a user address space on the machine: read faults map
//! page-cache pages whose bytes match the backing-store pattern, private writes copy on
//! write, shared writes dirty the cache page, anonymous memory starts zeroed.

use crate::support::{map_file, needs_mm};
use kernel::arch::uaccess;
use kernel::mm::addr::VirtAddr;
use kernel::mm::backing::{files, pattern_byte};
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
