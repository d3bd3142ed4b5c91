//! The software CMMA host ("soft-CMMA", reference §6.3): what a KVM or z/VM
//! host does with ESSA, for a kernel running where ESSA does not execute
//! (QEMU TCG, §4).
//!
//! Per 4 KiB frame the model keeps usage, content and no-DAT in one byte,
//! packed exactly like the ESSA result byte (§1.3). The change bit lives in the
//! memory backend ([`HostMemory`]). The model never holds an impossible state
//! (Up, Vp, Pp, Pz; §1.4); debug builds assert it on every change.
//!
//! ESSA behaves as Linux 6.x KVM (`pgste_perform_essa`, `__do_essa`; see
//! `transition.rs`): no ORC makes a block resident, so a block set stable from the
//! zero state stays "stable, zero" (Sz) until the guest touches it, and ORC 5 leaves
//! a paged-out block paged out. Host reclaim discards U, V and clean P blocks as
//! z/VM does (the 2007 series' 6/6 table); KVM would swap V and P blocks instead.
//!
//! Invariant shared with the backend: a frame is revoked (every DAT mapping of it
//! faults) exactly while its content is not resident, so every guest touch of a
//! paged-out or zero frame reaches [`HostModel::on_access`]: a touch of Sp or Sz/Uz
//! makes the frame resident, a touch of Vz is a block-volatility exception. The one
//! exception: the backend may hand a paged-out frame back on its own when the guest
//! touches it while the model is busy; the model then learns it on its next look at
//! the frame ([`HostMemory::still_paged_out`]).

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
    /// Clear the change bit when a frame enters P (§6.3 item 4), so that reclaim
    /// sees only stores made while the frame was P. KVM does not (it keeps the guest
    /// change bit in the PGSTE) and neither does z/VM, so the default leaves the bit
    /// alone, and the kernel must move hardware dirtiness into its own dirty flag
    /// only after making the page stable (hazard 1 of the series' 6/6).
    pub clear_change_bit_on_pot_volatile: bool,
}

/// The state byte of every frame, and a summary for [`HostModel::snapshot`], which runs
/// twice per test over every frame outside the page pool: one bit per block of
/// [`SUMMARY_BLOCK`] frames, set when a frame of the block takes a state other than plain
/// stable and never cleared. A clear bit vouches for a whole block of plain frames.
#[derive(Debug)]
struct FrameTable {
    bytes: Vec<u8>,
    hinted_blocks: Vec<u64>,
}

/// Frames one summary bit stands for.
const SUMMARY_BLOCK: usize = 64;

impl FrameTable {
    fn new(len: usize) -> FrameTable {
        FrameTable {
            bytes: vec![FrameState::INITIAL.to_byte().raw(); len],
            hinted_blocks: vec![0; len.div_ceil(SUMMARY_BLOCK * 64)],
        }
    }

    fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    fn set(&mut self, index: usize, state: FrameState) {
        self.bytes[index] = state.to_byte().raw();
        if !state.is_plain_stable() {
            let block = index / SUMMARY_BLOCK;
            self.hinted_blocks[block / 64] |= 1 << (block % 64);
        }
    }

    /// Whether a frame of the block of frame `index` may be other than plain stable.
    fn may_hold_hinted(&self, index: usize) -> bool {
        let block = index / SUMMARY_BLOCK;
        self.hinted_blocks[block / 64] & (1 << (block % 64)) != 0
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
        HostModel {
            table: FrameTable::new(len),
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

    /// Whether the model holds the frame as not resident (paged out or zero), so the
    /// backend has it revoked and a DAT fault on it is the model's business. `false`
    /// beyond the configuration.
    pub fn is_revoked(&self, pfn: u64) -> bool {
        self.frame_state(pfn)
            .is_some_and(|state| state.content != ContentState::Resident)
    }

    /// IPL / diag 308 reset: every frame stable with DAT (§5.1 reset, §6.3 item 1).
    ///
    /// As KVM's `s390_reset_cmma`, only the usage and no-DAT bits change: paged-out
    /// frames stay paged out and zero frames stay zero (Sz) until touched.
    pub fn reset(&mut self, mem: &mut impl HostMemory) {
        for pfn in 0..self.frames() {
            let old = self.settle(mem, pfn).expect("pfn within the configuration");
            let transition = Transition {
                state: FrameState::new(UsageState::Stable, old.content, false),
                effect: Effect::None,
            };
            self.commit(mem, pfn, transition);
        }
    }

    /// The frame's state after catching up with a touch the backend handled alone:
    /// a paged-out frame the backend no longer holds out is resident again.
    /// `None` beyond the configuration.
    fn settle(&mut self, mem: &mut impl HostMemory, pfn: u64) -> Option<FrameState> {
        let state = self.frame_state(pfn)?;
        if state.content != ContentState::Preserved || mem.still_paged_out(pfn) {
            return Some(state);
        }
        let resident = FrameState::new(state.usage, ContentState::Resident, state.nodat);
        self.counters.page_ins += 1;
        self.commit(
            mem,
            pfn,
            Transition {
                state: resident,
                effect: Effect::None,
            },
        );
        Some(resident)
    }

    /// Stores the new state and carries out its effect on the backend and counters.
    fn commit(&mut self, mem: &mut impl HostMemory, pfn: u64, transition: Transition) {
        let Transition { state, effect } = transition;
        debug_assert!(
            state.is_legal(),
            "impossible state {state:?} for frame {pfn:#x}"
        );
        let index = usize::try_from(pfn).expect("caller checked the pfn");
        self.table.set(index, state);
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
            Effect::PageOut => {
                self.counters.page_outs += 1;
                mem.page_out(pfn);
            }
            Effect::PageIn => {
                self.counters.page_ins += 1;
                mem.page_in(pfn);
            }
        }
    }
}
