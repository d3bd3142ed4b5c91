//! Property tests of the host model over random ESSA / reclaim / access sequences.

use super::fake::{FakeMemory, Revoked};
use super::{
    AccessVerdict, BadAddress, DiscardRate, DiscardSchedule, EssaContext, FRAME_SHIFT, FrameState,
    HostModel, ModelOptions,
};
use crate::cmma::essa::{ContentState, Orc, PageStateByte, UsageState};
use proptest::prelude::*;

const FRAMES: u64 = 6;

#[derive(Debug, Clone)]
enum Op {
    Essa {
        orc_raw: u8,
        pfn: u64,
        problem_state: bool,
        facility_147: bool,
    },
    Reclaim(u64),
    MaybeReclaim,
    Access(u64),
    /// The backend hands a paged-out frame back without the model (a touch while
    /// the model is busy).
    TouchBehindTheModelsBack(u64),
    Store(u64),
    Reset,
}

fn op() -> impl Strategy<Value = Op> {
    // One pfn past the end exercises the address checks.
    let pfn = 0..=FRAMES;
    prop_oneof![
        8 => (0u8..=9, pfn.clone(), prop::bool::weighted(0.05), prop::bool::weighted(0.8)).prop_map(
            |(orc_raw, pfn, problem_state, facility_147)| Op::Essa { orc_raw, pfn, problem_state, facility_147 }
        ),
        3 => pfn.clone().prop_map(Op::Reclaim),
        2 => Just(Op::MaybeReclaim),
        2 => pfn.clone().prop_map(Op::Access),
        1 => (0..FRAMES).prop_map(Op::TouchBehindTheModelsBack),
        2 => (0..FRAMES).prop_map(Op::Store),
        1 => Just(Op::Reset),
    ]
}

fn options() -> impl Strategy<Value = ModelOptions> {
    (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(
        |(exception_bit, strict_unused, clear_change_bit_on_pot_volatile)| ModelOptions {
            bad_address: if exception_bit {
                BadAddress::ExceptionIndication
            } else {
                BadAddress::Addressing
            },
            strict_unused,
            clear_change_bit_on_pot_volatile,
        },
    )
}

fn schedule() -> impl Strategy<Value = Option<DiscardSchedule>> {
    prop::option::of((
        any::<u64>(),
        prop_oneof![
            (0u16..=1000).prop_map(DiscardRate::PerMille),
            (0u64..5).prop_map(DiscardRate::EveryNthEssa),
        ],
    ))
    .prop_map(|schedule| {
        schedule.map(|(seed, rate)| DiscardSchedule {
            seed,
            rate,
            min_age: 0,
        })
    })
}

fn check_invariants(model: &HostModel, mem: &FakeMemory) -> Result<(), TestCaseError> {
    for pfn in 0..FRAMES {
        let state = model.frame_state(pfn).expect("in range");
        prop_assert!(
            state.is_legal(),
            "frame {} in impossible state {:?}",
            pfn,
            state
        );
        // Not resident <=> revoked; a paged-out frame the backend handed back on its
        // own stays Preserved in the model until its next look.
        let revoked = mem.revoked[pfn as usize];
        let agrees = match state.content {
            ContentState::Resident => revoked == Revoked::No,
            ContentState::Preserved => revoked != Revoked::Discarded,
            ContentState::Zero => revoked == Revoked::Discarded,
        };
        prop_assert!(agrees, "frame {} {:?} backend {:?}", pfn, state, revoked);
    }
    let counters = model.counters();
    let discarded = mem
        .revoked
        .iter()
        .filter(|&&r| r == Revoked::Discarded)
        .count() as u64;
    prop_assert_eq!(counters.discards - counters.zero_restores, discarded);
    Ok(())
}

/// Frame states and change bits, to compare across a host reclaim.
fn snapshot(model: &HostModel, mem: &FakeMemory) -> Vec<(FrameState, bool)> {
    (0..FRAMES)
        .map(|pfn| {
            (
                model.frame_state(pfn).expect("in range"),
                mem.change[pfn as usize],
            )
        })
        .collect()
}

/// The host discards only what the guest gave up: Ur, Vr, or Pr not stored to
/// since it entered P (§1.4). Stable and dirty frames are never lost.
fn check_host_discards(
    before: &[(FrameState, bool)],
    model: &HostModel,
) -> Result<(), TestCaseError> {
    for (pfn, &(old, changed)) in (0..FRAMES).zip(before) {
        let new = model.frame_state(pfn).expect("in range");
        if old.content != ContentState::Zero && new.content == ContentState::Zero {
            let disposable = match old.usage {
                UsageState::Unused | UsageState::Volatile => true,
                UsageState::PotVolatile => !changed,
                UsageState::Stable => false,
            };
            prop_assert!(
                disposable,
                "host discarded frame {} in {:?} (changed {})",
                pfn,
                old,
                changed
            );
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn random_sequences_keep_every_invariant(
        options in options(),
        schedule in schedule(),
        ops in prop::collection::vec(op(), 1..80),
    ) {
        let mut model = HostModel::new(FRAMES, options);
        let mut mem = FakeMemory::new(FRAMES);
        model.set_schedule(schedule);
        for op in ops {
            match op {
                Op::Essa { orc_raw, pfn, problem_state, facility_147 } => {
                    let before = model.frame_state(pfn);
                    let mem_was_out = pfn < FRAMES && mem.revoked[pfn as usize] == Revoked::PagedOut;
                    let ctx = EssaContext { orc_raw, addr: pfn << FRAME_SHIFT, problem_state, facility_147 };
                    let result = model.essa(&mut mem, ctx);
                    match (result, before) {
                        // The result byte is the state before the call (§1.3).
                        (Ok(byte), Some(before)) => {
                            // A frame touched behind the model's back reads as resident.
                            let settled = if before.content == ContentState::Preserved && !mem_was_out {
                                FrameState { content: ContentState::Resident, ..before }
                            } else {
                                before
                            };
                            prop_assert_eq!(byte, settled.to_byte());
                        }
                        (Ok(byte), None) => {
                            let orc = Orc::try_from(orc_raw).expect("a valid ORC got past the checks");
                            prop_assert_eq!(byte, PageStateByte::exception_indication(orc));
                        }
                        (Err(_), Some(before)) => prop_assert_eq!(model.frame_state(pfn), Some(before)),
                        (Err(_), None) => {}
                    }
                    let before = snapshot(&model, &mem);
                    model.maybe_reclaim(&mut mem);
                    check_host_discards(&before, &model)?;
                }
                Op::Reclaim(pfn) => {
                    let before = snapshot(&model, &mem);
                    model.reclaim(&mut mem, pfn);
                    check_host_discards(&before, &model)?;
                }
                Op::MaybeReclaim => {
                    let before = snapshot(&model, &mem);
                    model.maybe_reclaim(&mut mem);
                    check_host_discards(&before, &model)?;
                }
                Op::Access(pfn) => {
                    let before = model.frame_state(pfn);
                    let verdict = model.on_access(&mut mem, pfn);
                    let discarded = before.is_some_and(|state| state.to_byte().is_discarded());
                    prop_assert_eq!(matches!(verdict, AccessVerdict::BlockVolatility { .. }), discarded);
                    if verdict == AccessVerdict::Ok {
                        prop_assert!(!model.is_revoked(pfn));
                        prop_assert!(pfn >= FRAMES || !mem.is_revoked(pfn));
                    }
                }
                Op::TouchBehindTheModelsBack(pfn) => {
                    if mem.revoked[pfn as usize] == Revoked::PagedOut {
                        mem.touch_behind_the_models_back(pfn);
                    }
                }
                Op::Store(pfn) => {
                    // Only a frame the guest can reach takes a store.
                    if !mem.is_revoked(pfn) {
                        mem.store(pfn);
                    }
                }
                Op::Reset => {
                    model.reset(&mut mem);
                    for pfn in 0..FRAMES {
                        let (usage, _, nodat) = model.state(pfn);
                        prop_assert_eq!((usage, nodat), (UsageState::Stable, false));
                    }
                }
            }
            check_invariants(&model, &mem)?;
        }
    }
}
