//! The software CMMA host ("soft-CMMA", reference §6.3): what a KVM or z/VM
//! host does with ESSA, for a kernel running where ESSA does not execute
//! (QEMU TCG, §4).
//!
//! Per 4 KiB frame the model keeps usage, content and no-DAT in one byte,
//! packed exactly like the ESSA result byte (§1.3). The change bit lives in the
//! memory backend ([`HostMemory`]). The model never holds an impossible state
//! (Up, Vp, Pp, Pz; §1.4); debug builds assert it on every change.
//!
//! Invariant shared with the backend: a frame's content is zero exactly while
//! the backend has it revoked (between [`HostMemory::discard_frame`] and
//! [`HostMemory::restore_zeroed`]). Consequently the model never holds Sz:
//! when a zero frame becomes stable (ORC 1, 5, 7, reset) it gets a zero-filled
//! frame at once, as z/VM's host page-management assist supplies one (§5.2),
//! instead of on first touch. A GET after that reports Sr where KVM would
//! report Sz until the first touch.

mod access;
mod counters;
mod essa;
mod frame;
mod memory;
mod reclaim;
mod residue;
mod transition;

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod proptests;

pub use access::AccessVerdict;
pub use counters::Counters;
pub use essa::{BadAddress, EssaContext};
pub use frame::FrameState;
pub use memory::HostMemory;
pub use reclaim::{DiscardRate, DiscardSchedule, MIN_AGE_ESSA, ReclaimOutcome, SCAN_WINDOW};
pub use residue::HostSnapshot;

use crate::cmma::essa::{ContentState, PageStateByte, UsageState};
use alloc::vec;
use alloc::vec::Vec;
use transition::{Effect, Transition};

/// Frame size the model works in; ESSA ignores address bits 52-63 (§1.1).
pub const FRAME_SHIFT: u32 = 12;

/// Behaviour choices where real hosts differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ModelOptions {
    /// What ESSA does with an address beyond the configuration.
    pub bad_address: BadAddress,
    /// Answer a touch of a discarded unused frame with an addressing exception
    /// (0x05), which the architecture allows ("might be recognized", §1.4),
    /// instead of quietly supplying a zero frame as KVM does (§5.1).
    pub strict_unused: bool,
    /// Leave the change bit alone when a frame enters P, as KVM (guest change
    /// bit in the PGSTE) and z/VM do. By default the model clears it on entry
    /// (§6.3 item 4), so that reclaim sees only stores made while the frame was
    /// P; that is safe only if the kernel has moved any earlier hardware
    /// dirtiness into its own dirty flag before issuing ORC 4.
    pub preserve_change_bit: bool,
}

/// The state byte of every frame, in a heap vector or in memory the caller set aside.
#[derive(Debug)]
enum FrameTable {
    Owned(Vec<u8>),
    Borrowed(&'static mut [u8]),
}

impl FrameTable {
    fn bytes(&self) -> &[u8] {
        match self {
            FrameTable::Owned(bytes) => bytes,
            FrameTable::Borrowed(bytes) => bytes,
        }
    }

    fn bytes_mut(&mut self) -> &mut [u8] {
        match self {
            FrameTable::Owned(bytes) => bytes,
            FrameTable::Borrowed(bytes) => bytes,
        }
    }
}

/// The software host: page states of every frame, the discard engine and counters.
#[derive(Debug)]
pub struct HostModel {
    table: FrameTable,
    options: ModelOptions,
    counters: Counters,
    scheduler: Option<reclaim::Scheduler>,
}

impl HostModel {
    /// A model of `frames` frames, all stable and resident, table on the heap.
    ///
    /// # Panics
    /// If `frames` does not fit in `usize`.
    pub fn new(frames: u64, options: ModelOptions) -> HostModel {
        let len = usize::try_from(frames).expect("frame count fits in usize");
        HostModel::with_table(
            FrameTable::Owned(vec![FrameState::INITIAL.to_byte().raw(); len]),
            options,
        )
    }

    /// A model that keeps its table in `storage`, one byte per frame, for use
    /// before the heap exists. Every frame starts stable and resident.
    pub fn with_storage(storage: &'static mut [u8], options: ModelOptions) -> HostModel {
        storage.fill(FrameState::INITIAL.to_byte().raw());
        HostModel::with_table(FrameTable::Borrowed(storage), options)
    }

    fn with_table(table: FrameTable, options: ModelOptions) -> HostModel {
        HostModel {
            table,
            options,
            counters: Counters::default(),
            scheduler: None,
        }
    }

    /// Number of frames modelled.
    pub fn frames(&self) -> u64 {
        self.table.bytes().len() as u64
    }

    /// The options the model was built with.
    pub fn options(&self) -> ModelOptions {
        self.options
    }

    /// What the model has done so far.
    pub fn counters(&self) -> Counters {
        self.counters
    }

    /// The frame's state, or `None` beyond the configuration.
    pub fn frame_state(&self, pfn: u64) -> Option<FrameState> {
        let index = usize::try_from(pfn).ok()?;
        let byte = *self.table.bytes().get(index)?;
        Some(FrameState::from_byte(PageStateByte(byte)))
    }

    /// The frame's (usage, content, nodat), for tests.
    ///
    /// # Panics
    /// If `pfn` is beyond the configuration.
    pub fn state(&self, pfn: u64) -> (UsageState, ContentState, bool) {
        let state = self.frame_state(pfn).expect("pfn within the configuration");
        (state.usage, state.content, state.nodat)
    }

    /// Whether the backend has the frame revoked (its content is zero), so a
    /// DAT fault on it is the model's business. `false` beyond the configuration.
    pub fn is_revoked(&self, pfn: u64) -> bool {
        self.frame_state(pfn)
            .is_some_and(|state| state.content == ContentState::Zero)
    }

    /// IPL / diag 308 reset: every frame stable with DAT (§5.1 reset, §6.3 item 1).
    ///
    /// Paged-out frames stay paged out (Sp is legal); discarded frames get
    /// zero-filled frames, keeping the model free of Sz.
    pub fn reset(&mut self, mem: &mut impl HostMemory) {
        for pfn in 0..self.frames() {
            let old = self.frame_state_unchecked(pfn);
            let transition = match old.content {
                ContentState::Zero => Transition {
                    state: FrameState::INITIAL,
                    effect: Effect::RestoreZeroed,
                },
                ContentState::Resident | ContentState::Preserved => Transition {
                    state: FrameState::new(UsageState::Stable, old.content, false),
                    effect: Effect::None,
                },
            };
            self.commit(mem, pfn, transition);
        }
    }

    fn frame_state_unchecked(&self, pfn: u64) -> FrameState {
        self.frame_state(pfn).expect("caller checked the pfn")
    }

    /// Stores the new state and carries out its effect on the backend and counters.
    fn commit(&mut self, mem: &mut impl HostMemory, pfn: u64, transition: Transition) {
        let Transition { state, effect } = transition;
        debug_assert!(
            state.is_legal(),
            "impossible state {state:?} for frame {pfn:#x}"
        );
        let index = usize::try_from(pfn).expect("caller checked the pfn");
        self.table.bytes_mut()[index] = state.to_byte().raw();
        if let Some(scheduler) = &mut self.scheduler {
            scheduler.note(pfn, state, self.counters.essa_total());
        }
        match effect {
            Effect::None => {}
            Effect::Discard => {
                self.counters.discards += 1;
                mem.discard_frame(pfn);
            }
            Effect::RestoreZeroed => {
                self.counters.zero_restores += 1;
                mem.restore_zeroed(pfn);
            }
            Effect::ClearChangeBit => mem.clear_change_bit(pfn),
            Effect::PageOut => self.counters.page_outs += 1,
            Effect::PageIn => self.counters.page_ins += 1,
        }
    }
}
