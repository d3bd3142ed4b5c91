//! `bench::mm`: guest time (TOD clock) per memory-manager operation at 1k, 10k and 100k
//! pages, and the ESSA instructions each operation issues. Printed as
//! `# bench: op=<op> pages=<n> ns_per_op=<t> essa_per_op=<e>` diagnostics that
//! `cargo xtask bench mm` collects. Runs only with `ktest.bench` and needs the benchmark
//! image (file `files::BENCH`, built by `cargo xtask bench`) and a pool that fits.

use crate::support::{map_file, needs_mm, page_va, state_counters};
use kernel::arch::{cpu, uaccess};
use kernel::cmma::backend::with_model;
use kernel::ktest::Test;
use kernel::mm::addr::VirtAddr;
use kernel::mm::backing::files;
use kernel::mm::ids::MappingId;
use kernel::mm::vma::VmFlags;
use kernel::vm::{self, UserSpace};
use kernel::{check, ktest};

kernel::ktest_suite!("bench::mm");

/// Page counts the benchmark scales over.
const SIZES: [u64; 3] = [1_000, 10_000, 100_000];

/// ESSA executed so far: as the host model saw them (every one reaches it), or, with
/// native ESSA, as the page-state layer issued them.
fn essa_count() -> u64 {
    with_model(|model, _| model.counters().essa_total()).unwrap_or_else(|| state_counters().essa)
}

/// Measures `f` (which performs `ops` operations) and prints one bench line.
fn measure(t: &mut Test<'_>, op: &str, pages: u64, ops: u64, f: impl FnOnce()) {
    let essa_before = essa_count();
    let start = cpu::tod();
    f();
    let ticks = cpu::tod().wrapping_sub(start);
    let essa = essa_count() - essa_before;
    let ops = ops.max(1);
    // TOD bit 51 is one microsecond: 4096 ticks per microsecond.
    let ns_per_op = ticks * 1000 / 4096 / ops;
    t.diag(format_args!(
        "bench: op={op} pages={pages} ns_per_op={ns_per_op} essa_per_op={}.{:02}",
        essa / ops,
        essa * 100 / ops % 100
    ));
}

/// The sizes that fit the pool (with room for tables) and the benchmark file.
fn sizes(t: &mut Test<'_>) -> Option<(MappingId, alloc::vec::Vec<u64>)> {
    if !needs_mm(t) {
        return None;
    }
    let (mapping, free, file_pages) = vm::with(|mm| {
        let mapping = mm.open_file(files::BENCH).ok()?;
        let pages = mm.image().file(files::BENCH)?.size.div_ceil(4096);
        Some((mapping, mm.frames().free_count() as u64, pages))
    })
    .map_or((None, 0, 0), |(m, f, p)| (Some(m), f, p));
    let Some(mapping) = mapping else {
        t.skip("no benchmark file in the backing store (cargo xtask bench builds it)");
        return None;
    };
    let fit: alloc::vec::Vec<u64> = SIZES
        .into_iter()
        .filter(|&n| n <= file_pages && n * 10 <= free * 8)
        .collect();
    if fit.is_empty() {
        t.skip("the page pool is too small for 1k pages (use mm.pool=)");
        return None;
    }
    Some((mapping, fit))
}

fn drop_cache(mapping: MappingId) {
    vm::with(|mm| mm.truncate_inode_pages(mapping, 0)).expect("truncate the benchmark file");
}

fn touch(va: VirtAddr, pages: u64) -> u64 {
    let mut sum = 0u64;
    for i in 0..pages {
        sum = sum.wrapping_add(u64::from(uaccess::read_u8(page_va(va, i))));
    }
    sum
}

ktest! {
    /// Page-cache miss (readpage), hit (find_get_page), minor and major faults, and
    /// reclaim, per page, at every size that fits.
    fn page_cache_and_faults(t) [BENCH, SLOW] {
        let Some((mapping, sizes)) = sizes(t) else { return };
        for pages in sizes {
            drop_cache(mapping);
            let mut buf = [0u8; 4096];
            measure(t, "readpage", pages, pages, || {
                vm::with(|mm| {
                    for i in 0..pages {
                        let _ = mm.read_file(mapping, i * 4096, &mut buf);
                    }
                })
            });
            measure(t, "lookup_hit", pages, pages, || {
                vm::with(|mm| {
                    for i in 0..pages {
                        if let Some(pfn) = mm.find_get_page(mapping, i) {
                            mm.put_page(pfn);
                        }
                    }
                })
            });
            let space = UserSpace::new().expect("space");
            let (_, va) = map_file(&space, files::BENCH, 0, pages, VmFlags::READ);
            space.enter();
            measure(t, "minor_fault", pages, pages, || { touch(va, pages); });
            space.leave();
            drop(space);
            let freed = core::cell::Cell::new(0u64);
            measure(t, "reclaim", pages, pages, || {
                freed.set(vm::with(|mm| mm.reclaim(pages as usize)) as u64);
            });
            check!(t, freed.get() > 0, "reclaim freed nothing at {pages} pages");
            drop_cache(mapping);
            let space = UserSpace::new().expect("space");
            let (_, va) = map_file(&space, files::BENCH, 0, pages, VmFlags::READ);
            space.enter();
            measure(t, "major_fault", pages, pages, || { touch(va, pages); });
            space.leave();
        }
    }
}

ktest! {
    /// mlock per page (make_pages_present over a mapped file). Last, because a mapping
    /// that was ever mlocked keeps all its pages stable (the seed).
    fn mlock(t) [BENCH, SLOW] {
        let Some((mapping, sizes)) = sizes(t) else { return };
        for pages in sizes {
            drop_cache(mapping);
            let space = UserSpace::new().expect("space");
            let (_, va) = map_file(&space, files::BENCH, 0, pages, VmFlags::READ);
            let result = core::cell::Cell::new(Ok(()));
            measure(t, "mlock", pages, pages, || {
                result.set(vm::with(|mm| mm.mlock(space.id(), va, pages * 4096)));
            });
            check!(t, result.get().is_ok(), "mlock of {pages} pages: {:?}", result.get());
        }
    }
}

ktest! {
    /// The claim of the CMMA work, in numbers: after the guest filled its page cache with
    /// clean file pages, the host reclaims every frame of the pool. With hinting the host
    /// can drop volatile frames without writing them out; without (`cmma=off`) it must page
    /// out everything. The guest then reads the files again and refaults what was
    /// dropped. `cargo xtask bench` boots once with and once without hinting.
    fn host_pressure(t) [BENCH] {
        if !needs_mm(t) {
            return;
        }
        if kernel::cmma::backend::with_model(|_, _| ()).is_none() {
            t.skip("ESSA executes natively: the host model is not the host here");
            return;
        }
        let space = UserSpace::new().expect("space");
        let file = files::LARGE[0];
        let pages = vm::with(|mm| mm.frames().usable_count() as u64 / 2).min(1024);
        let (_, va) = map_file(&space, file, 0, pages, VmFlags::READ);
        space.enter();
        touch(va, pages);
        space.leave();
        // The page-cache frames: what a host under pressure would like to take back.
        let pool: alloc::vec::Vec<u64> = vm::with(|mm| {
            let pages = mm.frames().pages();
            (0..pages.len() as u64)
                .map(|i| pages.base().as_u64() + i)
                .filter(|&pfn| mm.page(kernel::mm::addr::Pfn::new(pfn)).is_some_and(|p| p.mapping().is_some()))
                .collect()
        });
        let (mut dropped, mut paged_out) = (0u64, 0u64);
        kernel::cmma::backend::with_model(|model, host| {
            use kernel::cmma::model::ReclaimOutcome;
            for &pfn in &pool {
                match model.reclaim(host, pfn) {
                    ReclaimOutcome::Discarded => dropped += 1,
                    ReclaimOutcome::PagedOut => paged_out += 1,
                    _ => {}
                }
            }
        });
        let before = vm::with(|mm| mm.stats());
        space.enter();
        let mut bad = 0u64;
        for i in 0..pages {
            let got = uaccess::read_u8(VirtAddr::new(va.as_u64() + i * 4096 + 7));
            if got != kernel::mm::backing::pattern_byte(file, i * 4096 + 7) {
                bad += 1;
            }
        }
        space.leave();
        let after = vm::with(|mm| mm.stats());
        let hinting = kernel::cmma::backend::current() != kernel::cmma::backend::Backend::Off;
        t.diag(format_args!(
            "bench: op=host_pressure hinting={} cache_frames={} dropped_without_io={dropped} paged_out={paged_out} guest_refaults={}",
            if hinting { "on" } else { "off" },
            pool.len(),
            after.discards - before.discards
        ));
        check!(t, bad == 0, "{bad} pages read back wrong after host reclaim");
        if !hinting {
            check!(t, dropped == 0, "without hinting the host dropped {dropped} frames");
        }
    }
}
