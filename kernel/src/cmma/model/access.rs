//! What the host does when the guest touches a frame (reference §1.4, §2, §6.3 item 5).

use super::transition::{Effect, Transition};
use super::{FRAME_SHIFT, FrameState, HostMemory, HostModel};
use crate::cmma::essa::{ContentState, UsageState};

/// The model's answer to a guest access, for the fault glue to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessVerdict {
    /// The access may proceed; retry it. Any frame the model had revoked has
    /// been handed back (zero-filled) through [`HostMemory::restore_zeroed`].
    Ok,
    /// Deliver a block-volatility exception (PIC 0x1A) with the frame's
    /// absolute address in the TEID, as z/VM would (§2).
    BlockVolatility {
        /// Absolute address of the 4 KiB block.
        absolute_addr: u64,
    },
    /// Deliver an addressing exception (PIC 0x05).
    Addressing,
}

impl HostModel {
    /// The guest touched frame `pfn`; the fault glue calls this when an access
    /// faults on a frame the model revoked (see [`HostModel::is_revoked`]), and
    /// DMA/copy routines may call it as an explicit check (§6.3 item 5).
    ///
    /// - Vz: block-volatility exception; the state stays Vz until the guest
    ///   changes it (§1.4: "any access -> discard fault").
    /// - Uz, Sz: a fresh zero frame (Ur, Sr), as KVM maps a zero page on the first
    ///   touch (`set_pte_at` clears `_PGSTE_GPS_ZERO`, §5.1); for Uz with
    ///   [`ModelOptions::strict_unused`](super::ModelOptions::strict_unused), an
    ///   addressing exception instead (§1.4: "might be recognized").
    /// - Sp: brought back (Sr) (§1.4 host transition Sp -> Sr).
    /// - Resident frames: no change.
    /// - Beyond the configuration: addressing exception.
    pub fn on_access(&mut self, mem: &mut impl HostMemory, pfn: u64) -> AccessVerdict {
        let Some(old) = self.settle(mem, pfn) else {
            self.counters.addressing_faults += 1;
            return AccessVerdict::Addressing;
        };
        let transition = match (old.usage, old.content) {
            (UsageState::Volatile, ContentState::Zero) => {
                self.counters.discard_faults += 1;
                return AccessVerdict::BlockVolatility {
                    absolute_addr: pfn << FRAME_SHIFT,
                };
            }
            (UsageState::Unused, ContentState::Zero) if self.options.strict_unused => {
                self.counters.addressing_faults += 1;
                return AccessVerdict::Addressing;
            }
            // Pz cannot exist (ORC 4 on a zero block gives Vz).
            (usage, ContentState::Zero) => Transition {
                state: FrameState::new(usage, ContentState::Resident, old.nodat),
                effect: Effect::RestoreZeroed,
            },
            (usage, ContentState::Preserved) => Transition {
                state: FrameState::new(usage, ContentState::Resident, old.nodat),
                effect: Effect::PageIn,
            },
            (_, ContentState::Resident) => return AccessVerdict::Ok,
        };
        self.commit(mem, pfn, transition);
        AccessVerdict::Ok
    }
}

#[cfg(test)]
mod tests {
    use super::super::ModelOptions;
    use super::super::fake::{Call, FakeMemory, essa};
    use super::*;

    const FRAMES: u64 = 4;

    fn setup(strict_unused: bool) -> (HostModel, FakeMemory) {
        let options = ModelOptions {
            strict_unused,
            ..ModelOptions::default()
        };
        (HostModel::new(FRAMES, options), FakeMemory::new(FRAMES))
    }

    /// Sets the usage with `orc`, then lets the host reclaim the frame.
    fn discarded(orc: u8, pfn: u64, strict_unused: bool) -> (HostModel, FakeMemory) {
        let (mut model, mut mem) = setup(strict_unused);
        essa(&mut model, &mut mem, orc, pfn);
        model.reclaim(&mut mem, pfn);
        mem.calls.clear();
        (model, mem)
    }

    #[test]
    fn discarded_volatile_frame_raises_block_volatility_with_its_absolute_address() {
        let (mut model, mut mem) = discarded(3, 3, false);
        assert!(model.is_revoked(3));
        let verdict = model.on_access(&mut mem, 3);
        assert_eq!(
            verdict,
            AccessVerdict::BlockVolatility {
                absolute_addr: 0x3000
            }
        );
        // The fault repeats until the guest deals with the discard.
        assert_eq!(model.on_access(&mut mem, 3), verdict);
        assert_eq!(
            model.state(3),
            (UsageState::Volatile, ContentState::Zero, false)
        );
        assert!(mem.calls.is_empty());
        assert_eq!(model.counters().discard_faults, 2);
    }

    #[test]
    fn discarded_unused_frame_comes_back_zeroed() {
        let (mut model, mut mem) = discarded(2, 1, false);
        assert_eq!(model.on_access(&mut mem, 1), AccessVerdict::Ok);
        assert_eq!(mem.calls, [Call::RestoreZeroed(1)]);
        assert_eq!(
            model.state(1),
            (UsageState::Unused, ContentState::Resident, false)
        );
        assert!(!model.is_revoked(1));
        assert!(!mem.is_revoked(1));
        assert_eq!(model.counters().zero_restores, 1);
    }

    #[test]
    fn strict_mode_answers_unused_touches_with_addressing() {
        let (mut model, mut mem) = discarded(2, 1, true);
        assert_eq!(model.on_access(&mut mem, 1), AccessVerdict::Addressing);
        assert!(mem.calls.is_empty());
        assert!(model.is_revoked(1));
        assert_eq!(model.counters().addressing_faults, 1);
    }

    #[test]
    fn paged_out_frame_comes_back_when_touched() {
        let (mut model, mut mem) = discarded(1, 2, false);
        assert_eq!(model.state(2).1, ContentState::Preserved);
        assert!(model.is_revoked(2), "the next touch must reach the host");
        assert_eq!(model.on_access(&mut mem, 2), AccessVerdict::Ok);
        assert_eq!(
            model.state(2),
            (UsageState::Stable, ContentState::Resident, false)
        );
        assert_eq!(mem.calls, [Call::PageIn(2)]);
        assert_eq!(model.counters().page_ins, 1);
    }

    #[test]
    fn a_touch_the_backend_handled_alone_is_caught_up_with() {
        // The glue hands a paged-out frame back itself when the model is busy; the
        // model's next look at the frame finds it resident.
        let (mut model, mut mem) = discarded(1, 2, false);
        mem.touch_behind_the_models_back(2);
        essa(&mut model, &mut mem, 3, 2);
        assert_eq!(
            model.state(2),
            (UsageState::Volatile, ContentState::Resident, false),
            "ORC 3 on a resident block keeps its bytes"
        );
        assert!(mem.calls.is_empty());
        assert_eq!(model.counters().page_ins, 1);
    }

    #[test]
    fn a_stable_zero_frame_gets_a_zero_frame_when_touched() {
        // KVM: ORC 1 on a discarded block leaves it Sz; the first touch maps a zero page.
        let (mut model, mut mem) = discarded(2, 1, true);
        essa(&mut model, &mut mem, 1, 1);
        assert_eq!(
            model.state(1),
            (UsageState::Stable, ContentState::Zero, false)
        );
        assert!(mem.calls.is_empty());
        assert_eq!(model.on_access(&mut mem, 1), AccessVerdict::Ok);
        assert_eq!(mem.calls, [Call::RestoreZeroed(1)]);
        assert_eq!(
            model.state(1),
            (UsageState::Stable, ContentState::Resident, false)
        );
    }

    #[test]
    fn resident_frames_need_nothing() {
        let (mut model, mut mem) = setup(true);
        for (pfn, orc) in [(0, 1), (1, 2), (2, 3), (3, 4)] {
            essa(&mut model, &mut mem, orc, pfn);
        }
        mem.calls.clear();
        let before: Vec<_> = (0..FRAMES).map(|pfn| model.state(pfn)).collect();
        for pfn in 0..FRAMES {
            assert_eq!(model.on_access(&mut mem, pfn), AccessVerdict::Ok);
        }
        let after: Vec<_> = (0..FRAMES).map(|pfn| model.state(pfn)).collect();
        assert_eq!(before, after);
        assert!(mem.calls.is_empty());
    }

    #[test]
    fn access_beyond_memory_is_an_addressing_exception() {
        let (mut model, mut mem) = setup(false);
        assert_eq!(model.on_access(&mut mem, FRAMES), AccessVerdict::Addressing);
        assert!(!model.is_revoked(FRAMES));
    }
}
