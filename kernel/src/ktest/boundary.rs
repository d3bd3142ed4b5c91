//! The checks at every test boundary. Around each test body the runner takes a
//! [`Boundary`] and then [`Boundary::check`]s it: the memory manager and the host model
//! must be back where the test found them ([`crate::mm::residue`],
//! [`crate::cmma::model::HostSnapshot`]), and with `mm.debug=1` the invariant checker
//! ([`crate::mm::debug`]) runs too. A test that leaves residue fails with a message that
//! names what it left. What can be put back is put back (address spaces of a body cut
//! short, the host's discard schedule), and every test is judged against the state it
//! found, so a leak is blamed on the test that made it and on no later one.

use super::{KTest, Test};
use crate::cmma::backend::with_model;
use crate::cmma::essa::UsageState;
use crate::cmma::model::HostSnapshot;
use crate::mm::debug;
use crate::mm::residue::{Residue, Snapshot};
use crate::{cmdline, vm};
use alloc::vec::Vec;

/// How many invariant violations a failure names.
const VIOLATIONS_NAMED: usize = 4;

/// What a test found: the memory manager's and the host's state before it ran.
#[derive(Debug)]
pub struct Boundary {
    mm: Option<Snapshot>,
    host: Option<HostSnapshot>,
}

/// The host's state of the frames below the page pool: the lowcore, kernel image,
/// initrd, heap and kernel page tables. Nothing above the pool is mapped, and the pool
/// is the memory manager's (without one, every frame is looked at).
fn host_snapshot() -> Option<HostSnapshot> {
    let below_pool = vm::pool().map_or(0..u64::MAX, |p| 0..p.start.as_u64());
    with_model(|model, _| model.snapshot(below_pool))
}

impl Boundary {
    /// The state now, before a test runs.
    pub fn take() -> Boundary {
        Boundary {
            mm: vm::available().then(|| vm::with(|mm| Snapshot::take(mm))),
            host: host_snapshot(),
        }
    }

    /// After the test: fails `t` (at the test's own file and line) for every kind of
    /// residue and, with `mm.debug=1`, for broken invariants; then puts back what it can.
    pub fn check(self, test: &KTest, t: &mut Test<'_>) {
        self.check_with(test, t, cmdline::current().mm_debug);
    }

    /// [`Boundary::check`], with the invariant checker on or off whatever `mm.debug` says.
    pub fn check_with(self, test: &KTest, t: &mut Test<'_>, mm_debug: bool) {
        let mut residue: Vec<Residue> = Vec::new();
        if let Some(before) = &self.mm {
            residue.extend(before.residue(&vm::with(|mm| Snapshot::take(mm))));
        }
        if let (Some(before), Some(after)) = (&self.host, host_snapshot()) {
            residue.extend(before.residue(&after));
        }
        for r in &residue {
            t.fail_at(test.file, test.line, format_args!("residue: {r}"));
        }
        if mm_debug && vm::available() {
            let violations = vm::with(|mm| {
                let mut v = debug::violations(mm);
                let host = with_model(|model, _| {
                    debug::host_violations(mm, UsageState::Stable, |pfn| {
                        model.frame_state(pfn.as_u64()).map(|s| s.usage)
                    })
                });
                v.extend(host.unwrap_or_default());
                v
            });
            for v in violations.iter().take(VIOLATIONS_NAMED) {
                t.fail_at(test.file, test.line, format_args!("mm.debug: {v}"));
            }
            if violations.len() > VIOLATIONS_NAMED {
                t.fail_at(
                    test.file,
                    test.line,
                    format_args!(
                        "mm.debug: and {} more violations",
                        violations.len() - VIOLATIONS_NAMED
                    ),
                );
            }
        }
        self.put_back();
    }

    /// Destroys address spaces the test left, restores the reclaim watermarks and the
    /// discard schedule it found. Pins and leaked frames cannot be put back: their
    /// holder is unknown.
    fn put_back(&self) {
        if let Some(before) = &self.mm {
            vm::destroy_spaces_except(|id| before.spaces.contains_key(&id));
            vm::with(|mm| mm.set_watermarks(before.watermarks.0, before.watermarks.1));
        }
        if let Some(before) = &self.host {
            with_model(|model, _| {
                if model.schedule() != before.schedule {
                    model.set_schedule(before.schedule);
                }
            });
        }
    }
}
