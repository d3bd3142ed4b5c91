//! Pure state transitions of the host model: what an ORC or a host reclaim does
//! to one frame, and which side effect the backend must carry out.
//!
//! ESSA follows Linux 6.x KVM: `pgste_perform_essa` (`arch/s390/mm/pgtable.c`)
//! changes the usage (and no-DAT) bits of the PGSTE and sets `_PGSTE_GPS_ZERO`
//! when it returns 1 (the block goes to the CBRL and its preserved copy is
//! dropped); `__do_essa` (`arch/s390/kvm/priv.c`) derives the content state from
//! the host PTE: valid -> resident, invalid -> preserved, invalid + ZERO ->
//! logically zero. No ORC ever makes a block resident; only a guest touch does.
//! Host reclaim follows the z/VM behaviour of the 2007 series (6/6 table), which
//! KVM never shows for V and P blocks (it swaps them like stable ones).

use super::frame::FrameState;
use crate::cmma::essa::{ContentState, Orc, UsageState};

/// The side effect of a transition on the memory backend and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    /// Nothing outside the state byte.
    None,
    /// Content became zero: poison and revoke the frame.
    Discard,
    /// A zero frame was touched: zero-fill it and map it again.
    RestoreZeroed,
    /// The frame entered P: clear its change bit so reclaim can judge it (§6.3 item 4).
    ClearChangeBit,
    /// The host paged the frame out: revoke it, keeping its bytes.
    PageOut,
    /// A paged-out frame was touched: the host brings it back.
    PageIn,
}

/// A new state and the effect that goes with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Transition {
    pub(super) state: FrameState,
    pub(super) effect: Effect,
}

impl Transition {
    const fn to(state: FrameState, effect: Effect) -> Transition {
        Transition { state, effect }
    }
}

/// Applies `orc` to a frame in state `old`, as KVM's `pgste_perform_essa` does
/// (reference §1.2, §5.1).
///
/// `changed` reads the change bit; it is consulted only by ORC 4 on a
/// preserved frame, the one case where KVM looks at it (`PGSTE_GC_BIT`).
pub(super) fn essa_transition(
    old: FrameState,
    orc: Orc,
    changed: impl FnOnce() -> bool,
) -> Transition {
    use ContentState::{Preserved, Resident, Zero};
    let with_usage = |usage| FrameState { usage, ..old };
    let keep = |state| Transition::to(state, Effect::None);
    match orc {
        // ESSA_GET_STATE: nothing changes.
        Orc::GetState => keep(old),
        // ESSA_SET_STABLE: usage S, NODAT cleared; the content stays what it is
        // (a zero block stays Sz until the guest touches it).
        Orc::SetStable => keep(FrameState::new(UsageState::Stable, old.content, false)),
        // ESSA_SET_STABLE_NODAT: usage S and NODAT.
        Orc::SetStableNodat => keep(FrameState::new(UsageState::Stable, old.content, true)),
        // ESSA_SET_STABLE_RESIDENT: usage S only ("we will not make this page
        // resident"); NODAT kept.
        Orc::SetStableResident => keep(with_usage(UsageState::Stable)),
        // ESSA_SET_STABLE_IF_RESIDENT: usage S only if the host PTE is valid; a
        // discarded Vz stays Vz, and that old state is how the guest learns of the
        // discard (§2).
        Orc::SetStableIfResident => match old.content {
            Resident => keep(with_usage(UsageState::Stable)),
            Preserved | Zero => keep(old),
        },
        // ESSA_SET_UNUSED / ESSA_SET_VOLATILE: the usage; an invalid host PTE puts
        // the block on the CBRL (res = 1, ZERO): a preserved copy is dropped now.
        Orc::SetUnused => set_discardable(old, UsageState::Unused),
        Orc::SetVolatile => set_discardable(old, UsageState::Volatile),
        // ESSA_SET_POT_VOLATILE: valid PTE -> P; ZERO -> V; else guest change bit
        // clear -> V and res = 1 (Vz); else S (Sp).
        Orc::SetPotVolatile => match old.content {
            Resident => Transition::to(with_usage(UsageState::PotVolatile), Effect::ClearChangeBit),
            Zero => keep(with_usage(UsageState::Volatile)),
            Preserved if changed() => keep(with_usage(UsageState::Stable)),
            Preserved => Transition::to(
                FrameState::new(UsageState::Volatile, Zero, old.nodat),
                Effect::Discard,
            ),
        },
    }
}

fn set_discardable(old: FrameState, usage: UsageState) -> Transition {
    match old.content {
        ContentState::Preserved => Transition::to(
            FrameState::new(usage, ContentState::Zero, old.nodat),
            Effect::Discard,
        ),
        ContentState::Resident | ContentState::Zero => {
            Transition::to(FrameState { usage, ..old }, Effect::None)
        }
    }
}

/// What a host reclaim of the frame does (reference §1.4 host transitions, §6.3 item 3).
///
/// Sr -> Sp (page out, bytes kept), Ur -> Uz, Vr -> Vz (discard),
/// Pr -> change bit ? Sp : Vz. Frames that are not resident are left alone.
pub(super) fn reclaim_transition(old: FrameState, changed: impl FnOnce() -> bool) -> Transition {
    use ContentState::{Preserved, Resident, Zero};
    if old.content != Resident {
        return Transition::to(old, Effect::None);
    }
    let page_out = Transition::to(
        FrameState::new(UsageState::Stable, Preserved, old.nodat),
        Effect::PageOut,
    );
    let discard = |usage| Transition::to(FrameState::new(usage, Zero, old.nodat), Effect::Discard);
    match old.usage {
        UsageState::Stable => page_out,
        UsageState::Unused => discard(UsageState::Unused),
        UsageState::Volatile => discard(UsageState::Volatile),
        UsageState::PotVolatile if changed() => page_out,
        UsageState::PotVolatile => discard(UsageState::Volatile),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn every_legal_state() -> impl Iterator<Item = FrameState> {
        UsageState::ALL.into_iter().flat_map(|usage| {
            ContentState::ALL.into_iter().flat_map(move |content| {
                [false, true]
                    .into_iter()
                    .map(move |nodat| FrameState::new(usage, content, nodat))
                    .filter(|state| state.is_legal())
            })
        })
    }

    #[test]
    fn no_orc_leads_to_an_impossible_state() {
        for old in every_legal_state() {
            for orc in Orc::ALL {
                for changed in [false, true] {
                    let next = essa_transition(old, orc, || changed).state;
                    assert!(next.is_legal(), "{old:?} --ORC {}--> {next:?}", orc.code());
                }
            }
        }
    }

    #[test]
    fn no_reclaim_leads_to_an_impossible_state() {
        for old in every_legal_state() {
            for changed in [false, true] {
                let next = reclaim_transition(old, || changed).state;
                assert!(next.is_legal(), "{old:?} --reclaim--> {next:?}");
            }
        }
    }

    #[test]
    fn effects_match_content_changes() {
        // Discard exactly when content becomes zero, restore exactly when it stops being
        // zero, page out exactly when a resident frame becomes preserved (the invariant
        // the memory backend relies on: not resident <=> revoked).
        for old in every_legal_state() {
            for changed in [false, true] {
                let mut transitions: Vec<Transition> = Orc::ALL
                    .into_iter()
                    .map(|orc| essa_transition(old, orc, || changed))
                    .collect();
                transitions.push(reclaim_transition(old, || changed));
                for t in transitions {
                    let became_zero =
                        old.content != ContentState::Zero && t.state.content == ContentState::Zero;
                    let left_zero =
                        old.content == ContentState::Zero && t.state.content != ContentState::Zero;
                    assert_eq!(t.effect == Effect::Discard, became_zero, "{old:?} -> {t:?}");
                    assert_eq!(
                        t.effect == Effect::RestoreZeroed,
                        left_zero,
                        "{old:?} -> {t:?}"
                    );
                    let paged_out = old.content == ContentState::Resident
                        && t.state.content == ContentState::Preserved;
                    assert_eq!(t.effect == Effect::PageOut, paged_out, "{old:?} -> {t:?}");
                }
            }
        }
    }

    #[test]
    fn no_orc_makes_a_block_resident() {
        // KVM: the content state comes from the host PTE, which only a guest touch
        // makes valid again (ESSA_SET_STABLE_RESIDENT: "we will not make this page
        // resident").
        for old in every_legal_state().filter(|s| s.content != ContentState::Resident) {
            for orc in Orc::ALL {
                for changed in [false, true] {
                    let t = essa_transition(old, orc, || changed);
                    assert_ne!(
                        t.state.content,
                        ContentState::Resident,
                        "{old:?} ORC {}",
                        orc.code()
                    );
                    assert!(
                        !matches!(t.effect, Effect::RestoreZeroed | Effect::PageIn),
                        "{old:?} ORC {}",
                        orc.code()
                    );
                }
            }
        }
    }

    #[test]
    fn change_bit_is_read_only_where_the_architecture_reads_it() {
        for old in every_legal_state() {
            for orc in Orc::ALL {
                let mut read = false;
                essa_transition(old, orc, || {
                    read = true;
                    false
                });
                let expected = orc == Orc::SetPotVolatile && old.content == ContentState::Preserved;
                assert_eq!(read, expected, "{old:?} ORC {}", orc.code());
            }
        }
    }
}
