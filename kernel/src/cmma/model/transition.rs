//! Pure state transitions of the host model: what an ORC or a host reclaim does
//! to one frame, and which side effect the backend must carry out.

use super::frame::FrameState;
use crate::cmma::essa::{ContentState, Orc, UsageState};

/// The side effect of a transition on the memory backend and the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Effect {
    /// Nothing outside the state byte.
    None,
    /// Content became zero: poison and revoke the frame.
    Discard,
    /// A zero frame became stable: zero-fill it and map it again.
    RestoreZeroed,
    /// The frame entered P: clear its change bit so reclaim can judge it (§6.3 item 4).
    ClearChangeBit,
    /// The host paged the frame out, keeping its bytes.
    PageOut,
    /// The host brought a paged-out frame back.
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

/// Applies `orc` to a frame in state `old` (reference §1.2, §6.3 item 2).
///
/// `changed` reads the change bit; it is consulted only by ORC 4 on a
/// preserved frame, the one case where the architecture looks at it.
pub(super) fn essa_transition(
    old: FrameState,
    orc: Orc,
    changed: impl FnOnce() -> bool,
) -> Transition {
    use ContentState::{Preserved, Resident, Zero};
    let with_usage = |usage| FrameState { usage, ..old };
    match orc {
        Orc::GetState => Transition::to(old, Effect::None),
        // §1.2: ORC 1 sets S and (KVM) clears no-DAT.
        Orc::SetStable => make_stable(old, false),
        // §1.2: ORC 7 sets S and no-DAT.
        Orc::SetStableNodat => make_stable(old, true),
        // §1.2: ORC 5 sets S and makes the block resident (architected, z/VM);
        // KVM only sets S, but under this model a paged-out frame is still in
        // place, so bringing it back costs nothing.
        Orc::SetStableResident => match old.content {
            Preserved => Transition::to(
                FrameState::new(UsageState::Stable, Resident, old.nodat),
                Effect::PageIn,
            ),
            Resident | Zero => make_stable(old, old.nodat),
        },
        // §1.2: ORC 6 sets S only if resident; a discarded Vz stays Vz, and
        // that old state is how the guest learns of the discard (§2).
        Orc::SetStableIfResident => match old.content {
            Resident => Transition::to(with_usage(UsageState::Stable), Effect::None),
            Preserved | Zero => Transition::to(old, Effect::None),
        },
        // §1.2 / §1.4: ORC 2 and 3 on a preserved frame drop the copy at once.
        Orc::SetUnused => set_discardable(old, UsageState::Unused),
        Orc::SetVolatile => set_discardable(old, UsageState::Volatile),
        // §1.2 ORC 4: resident -> P, zero -> V, preserved -> change bit ? S : Vz.
        Orc::SetPotVolatile => match old.content {
            Resident => Transition::to(with_usage(UsageState::PotVolatile), Effect::ClearChangeBit),
            Zero => Transition::to(with_usage(UsageState::Volatile), Effect::None),
            Preserved if changed() => Transition::to(with_usage(UsageState::Stable), Effect::None),
            Preserved => Transition::to(
                FrameState::new(UsageState::Volatile, Zero, old.nodat),
                Effect::Discard,
            ),
        },
    }
}

/// Usage := S. A zero frame gets a zero-filled frame at once, as z/VM's host
/// page-management assist supplies one (§5.2), so the model never holds Sz.
fn make_stable(old: FrameState, nodat: bool) -> Transition {
    match old.content {
        ContentState::Zero => Transition::to(
            FrameState::new(UsageState::Stable, ContentState::Resident, nodat),
            Effect::RestoreZeroed,
        ),
        ContentState::Resident | ContentState::Preserved => Transition::to(
            FrameState::new(UsageState::Stable, old.content, nodat),
            Effect::None,
        ),
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
        // Discard exactly when content becomes zero; restore exactly when it stops being zero
        // (the invariant the memory backend relies on: zero <=> revoked).
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
