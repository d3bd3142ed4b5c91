//! A recording memory backend for host tests of the model.

use super::{EssaContext, FRAME_SHIFT, HostMemory, HostModel};

/// A backend call, as the fake records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    ClearChangeBit(u64),
    Discard(u64),
    RestoreZeroed(u64),
    PageOut(u64),
    PageIn(u64),
}

/// Why a frame of the fake is revoked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Revoked {
    /// Reachable.
    No,
    /// Discarded (content zero).
    Discarded,
    /// Paged out (bytes kept).
    PagedOut,
}

/// Change bits and revocations of a pretend machine. It panics on a call the
/// backend contract forbids (double discard, restore of a frame never discarded,
/// page-in of a frame not paged out), so every model test also checks the contract.
#[derive(Debug)]
pub(crate) struct FakeMemory {
    pub(super) change: Vec<bool>,
    pub(super) revoked: Vec<Revoked>,
    pub(super) calls: Vec<Call>,
}

impl FakeMemory {
    pub(crate) fn new(frames: u64) -> FakeMemory {
        let frames = usize::try_from(frames).expect("test sizes fit");
        FakeMemory {
            change: vec![false; frames],
            revoked: vec![Revoked::No; frames],
            calls: Vec::new(),
        }
    }

    /// A guest store to the frame sets its change bit, as the machine would.
    pub(crate) fn store(&mut self, pfn: u64) {
        assert_eq!(
            self.revoked[index(pfn)],
            Revoked::No,
            "store to revoked frame {pfn}"
        );
        self.change[index(pfn)] = true;
    }

    /// The glue hands a paged-out frame back on its own, as the machine glue does
    /// when the guest touches it while the model is busy.
    pub(crate) fn touch_behind_the_models_back(&mut self, pfn: u64) {
        assert_eq!(self.revoked[index(pfn)], Revoked::PagedOut);
        self.revoked[index(pfn)] = Revoked::No;
    }

    /// Whether the frame is revoked for any reason.
    pub(crate) fn is_revoked(&self, pfn: u64) -> bool {
        self.revoked[index(pfn)] != Revoked::No
    }
}

fn index(pfn: u64) -> usize {
    usize::try_from(pfn).expect("test sizes fit")
}

impl HostMemory for FakeMemory {
    fn change_bit(&mut self, pfn: u64) -> bool {
        self.change[index(pfn)]
    }

    fn clear_change_bit(&mut self, pfn: u64) {
        self.calls.push(Call::ClearChangeBit(pfn));
        self.change[index(pfn)] = false;
    }

    fn discard_frame(&mut self, pfn: u64) {
        self.calls.push(Call::Discard(pfn));
        assert_ne!(
            self.revoked[index(pfn)],
            Revoked::Discarded,
            "frame {pfn} discarded twice"
        );
        self.revoked[index(pfn)] = Revoked::Discarded;
        // §1.4: after a discard the reference and change bits are 0.
        self.change[index(pfn)] = false;
    }

    fn restore_zeroed(&mut self, pfn: u64) {
        self.calls.push(Call::RestoreZeroed(pfn));
        assert_eq!(
            self.revoked[index(pfn)],
            Revoked::Discarded,
            "frame {pfn} restored without a discard"
        );
        self.revoked[index(pfn)] = Revoked::No;
    }

    fn page_out(&mut self, pfn: u64) {
        self.calls.push(Call::PageOut(pfn));
        assert_eq!(
            self.revoked[index(pfn)],
            Revoked::No,
            "frame {pfn} paged out while not resident"
        );
        self.revoked[index(pfn)] = Revoked::PagedOut;
    }

    fn page_in(&mut self, pfn: u64) {
        self.calls.push(Call::PageIn(pfn));
        assert_eq!(
            self.revoked[index(pfn)],
            Revoked::PagedOut,
            "frame {pfn} paged in while not paged out"
        );
        self.revoked[index(pfn)] = Revoked::No;
    }

    fn still_paged_out(&mut self, pfn: u64) -> bool {
        self.revoked[index(pfn)] == Revoked::PagedOut
    }

    fn frames(&self) -> u64 {
        self.revoked.len() as u64
    }
}

/// Executes ESSA with the raw `orc_raw` for frame `pfn` in supervisor state with facility
/// 147, and expects it to succeed (the tests' usual case; exception tests build their own
/// [`EssaContext`]).
pub(crate) fn essa(model: &mut HostModel, mem: &mut FakeMemory, orc_raw: u8, pfn: u64) {
    let ctx = EssaContext {
        orc_raw,
        addr: pfn << FRAME_SHIFT,
        problem_state: false,
        facility_147: true,
    };
    model.essa(mem, ctx).expect("ESSA succeeds");
}
