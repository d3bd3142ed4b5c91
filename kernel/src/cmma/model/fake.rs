//! A recording memory backend for host tests of the model.

use super::HostMemory;

/// A backend call, as the fake records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Call {
    ClearChangeBit(u64),
    Discard(u64),
    RestoreZeroed(u64),
}

/// Change bits and revocations of a pretend machine. It panics on a call the
/// backend contract forbids (double discard, restore of a frame never discarded),
/// so every model test also checks the contract.
#[derive(Debug)]
pub(crate) struct FakeMemory {
    pub(super) change: Vec<bool>,
    pub(super) revoked: Vec<bool>,
    pub(super) calls: Vec<Call>,
}

impl FakeMemory {
    pub(crate) fn new(frames: u64) -> FakeMemory {
        let frames = usize::try_from(frames).expect("test sizes fit");
        FakeMemory {
            change: vec![false; frames],
            revoked: vec![false; frames],
            calls: Vec::new(),
        }
    }

    /// A guest store to the frame sets its change bit, as the machine would.
    pub(crate) fn store(&mut self, pfn: u64) {
        assert!(!self.revoked[index(pfn)], "store to revoked frame {pfn}");
        self.change[index(pfn)] = true;
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
        assert!(!self.revoked[index(pfn)], "frame {pfn} discarded twice");
        self.revoked[index(pfn)] = true;
        // §1.4: after a discard the reference and change bits are 0.
        self.change[index(pfn)] = false;
    }

    fn restore_zeroed(&mut self, pfn: u64) {
        self.calls.push(Call::RestoreZeroed(pfn));
        assert!(
            self.revoked[index(pfn)],
            "frame {pfn} restored without a discard"
        );
        self.revoked[index(pfn)] = false;
    }

    fn frames(&self) -> u64 {
        self.revoked.len() as u64
    }
}
