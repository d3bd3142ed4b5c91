//! `mm::residue`: the check the runner makes at every test boundary
//! (`kernel::ktest::boundary`), run here around a scratch body on the machine: what a
//! test leaves behind in the memory manager or on the host fails it with a message that
//! names the thing, and what can be put back (address spaces of a body cut short, the
//! discard schedule) is put back so that later tests are judged on their own.

use crate::support::{Block, map_anon, needs_mm, needs_model};
use alloc::string::String;
use kernel::arch::essa::essa;
use kernel::arch::uaccess;
use kernel::cmma::backend::with_model;
use kernel::cmma::model::{DiscardRate, DiscardSchedule};
use kernel::ktest::boundary::Boundary;
use kernel::ktest::{KTest, Test};
use kernel::mm::addr::VirtAddr;
use kernel::mm::backing::files;
use kernel::vm::{self, UserSpace};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("mm::residue");

/// The descriptor the scratch check names in its messages.
const SCRATCH: KTest = KTest {
    suite: "mm::residue",
    name: "scratch",
    file: "scratch.rs",
    line: 7,
    flags: 0,
    run: |_| {},
};

/// Runs the boundary check taken in `boundary` against a scratch test (invariant
/// checker as `mm.debug` says); its report and failure count.
fn scratch_check(boundary: Boundary) -> (String, u32) {
    scratch_check_with(boundary, kernel::cmdline::current().mm_debug)
}

/// [`scratch_check`] with the invariant checker on or off.
fn scratch_check_with(boundary: Boundary, mm_debug: bool) -> (String, u32) {
    let mut out = String::new();
    let mut scratch = Test::new(&mut out, "", 0);
    boundary.check_with(&SCRATCH, &mut scratch, mm_debug);
    let failures = scratch.failures();
    drop(scratch);
    (out, failures)
}

ktest! {
    /// A body that leaves an address space (with an anonymous page, its tables and a
    /// VMA) and an unfreed frame fails, naming the space and the frame; the space is
    /// destroyed afterwards, the frame (whose holder the check cannot know) stays
    /// until its owner frees it. Guards `Boundary::check` and `mm::residue`: without
    /// them a leak only shows when some later test runs out of memory (issue 12).
    fn leaked_space_and_frame_are_named(t) {
        if !needs_mm(t) { return; }
        let boundary = Boundary::take();
        let space = UserSpace::new().expect("space");
        let id = space.id();
        let va = map_anon(&space, 1);
        space.enter();
        uaccess::write_u64(VirtAddr::new(va.as_u64()), 0x7e57);
        space.leave();
        // As a body cut short by a program interruption would: its drop never runs.
        core::mem::forget(space);
        let frame = vm::with(|mm| mm.alloc_page()).expect("a frame");
        let (report, failures) = scratch_check(boundary);
        let space_gone = vm::with(|mm| mm.space(id).is_none());
        vm::with(|mm| mm.put_page(frame));
        t.diag(format_args!("scratch report: {}", report.trim_end().replace('\n', " | ")));
        let line = |text: &str| report.lines().any(|l| l.starts_with(&alloc::format!("# residue: {text}")) && l.ends_with(" at scratch.rs:7"));
        check!(t, line(&alloc::format!("left 1 address spaces: space {} with 1 VMAs", id.get())), "{report}");
        check!(t, line(&alloc::format!("left 1 pinned pages: frame {:#x} +1 references", frame.as_u64())), "{report}");
        check!(t, line("left 1 anonymous pages"), "{report}");
        check!(t, line("left 1 mapped pages"), "{report}");
        check!(t, line("left 3 DAT table frames"), "{report}");
        check!(t, failures >= 5, "{failures} failures");
        check!(t, space_gone, "the leaked space was not destroyed");
    }
}

ktest! {
    /// A body that leaves a heap block volatile on the host, or a discard schedule
    /// installed, fails naming the frame and the schedule; the schedule is removed.
    /// Guards the host half of the boundary check (`HostModel::snapshot`): a heap
    /// frame left volatile could be discarded under a later test's kernel data.
    fn host_state_left_behind_is_named(t) [NEEDS_ESSA] {
        if !needs_model(t, "the host's state is read from the host model (cmma=model)") { return; }
        let block = Block::new();
        let boundary = Boundary::take();
        essa(3, block.addr());
        let schedule = DiscardSchedule { seed: 5, rate: DiscardRate::PerMille(0), min_age: 0 };
        with_model(|model, _| model.set_schedule(Some(schedule)));
        let (report, failures) = scratch_check(boundary);
        essa(1, block.addr());
        let installed = with_model(|model, _| model.schedule()).flatten();
        t.diag(format_args!("scratch report: {}", report.trim_end().replace('\n', " | ")));
        check!(t, report.contains(&alloc::format!("# residue: left 1 frames outside the page pool not stable on the host: frame {:#x} ", block.pfn().as_u64())), "{report}");
        check!(t, report.contains("# residue: left 1 host discard schedules: Some(DiscardSchedule { seed: 5"), "{report}");
        check_eq!(t, failures, 2);
        check_eq!(t, installed, None);
    }
}

ktest! {
    /// With `mm.debug=1` the boundary also runs the invariant checker: a body that leaves
    /// a page-cache page locked fails with the broken rule named (and, as residue, the
    /// locked page). Guards the `mm.debug` half of `Boundary::check`, which the matrix
    /// entry `mm-debug` turns on for every test.
    fn broken_invariant_at_the_boundary_is_named(t) {
        if !needs_mm(t) { return; }
        let mapping = vm::with(|mm| mm.open_file(files::MEDIUM)).expect("a standard file");
        let mut page = alloc::vec![0u8; 16];
        let read = vm::with(|mm| mm.read_file(mapping, 0, &mut page));
        check_eq!(t, read, Ok(16));
        let Some(pfn) = vm::with(|mm| mm.mapping(mapping).and_then(|m| m.lookup(0))) else {
            check!(t, false, "the page just read is not cached");
            return;
        };
        let boundary = Boundary::take();
        vm::with(|mm| mm.lock_page(pfn));
        let (report, failures) = scratch_check_with(boundary, true);
        vm::with(|mm| mm.unlock_page(pfn));
        t.diag(format_args!("scratch report: {}", report.trim_end().replace('\n', " | ")));
        check!(t, report.lines().any(|l| l.starts_with("# mm.debug: mm invariant broken: no page stays locked, under writeback or in a state change")), "{report}");
        check!(t, report.contains(&alloc::format!("# residue: left 1 pages locked, under writeback or in a state change: frame {:#x}", pfn.as_u64())), "{report}");
        check!(t, failures >= 2, "{failures} failures");
    }
}
