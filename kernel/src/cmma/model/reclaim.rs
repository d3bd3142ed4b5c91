//! The host's reclaim and discard engine: on request from a test, or on a
//! seeded schedule (reference §1.4 host transitions, §6.3 item 3).

use super::transition::{Effect, reclaim_transition};
use super::{HostMemory, HostModel};
use crate::cmma::essa::{ContentState, UsageState};
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};

/// What a host reclaim did to a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReclaimOutcome {
    /// Sr or dirty Pr became Sp; the bytes stay where they are.
    PagedOut,
    /// Ur, Vr or clean Pr became zero; the backend poisoned and revoked it.
    Discarded,
    /// The frame was not resident; nothing to reclaim.
    NotResident,
    /// The pfn is beyond the configuration.
    NoSuchFrame,
}

/// How often [`HostModel::maybe_reclaim`] strikes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiscardRate {
    /// On each call, with this probability in thousandths (1000 = every call).
    PerMille(u16),
    /// On the first call after at least this many further ESSAs (0 = never).
    EveryNthEssa(u64),
}

/// A deterministic host-reclaim schedule: the same seed and the same calls
/// reclaim the same frames, so a failing run can be replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DiscardSchedule {
    /// Seed of the victim choice and of `PerMille` draws.
    pub seed: u64,
    /// When to strike.
    pub rate: DiscardRate,
}

/// How far past its random starting frame the engine looks for a frame it can
/// discard, like a host LRU scan that throws away volatile pages instead of
/// writing them out (Schwidefsky, §3.3).
pub const SCAN_WINDOW: u64 = 64;

/// A schedule with its running PRNG.
#[derive(Debug)]
pub(super) struct Scheduler {
    schedule: DiscardSchedule,
    rng: Xoshiro256PlusPlus,
    essa_at_last_strike: u64,
}

impl HostModel {
    /// Host reclaim of one frame, as a test requests it: Sr -> Sp,
    /// Ur -> Uz, Vr -> Vz, Pr -> change bit ? Sp : Vz (§1.4, §6.3 item 3).
    pub fn reclaim(&mut self, mem: &mut impl HostMemory, pfn: u64) -> ReclaimOutcome {
        let Some(old) = self.frame_state(pfn) else {
            return ReclaimOutcome::NoSuchFrame;
        };
        let transition = reclaim_transition(old, || mem.change_bit(pfn));
        let outcome = match transition.effect {
            Effect::PageOut => ReclaimOutcome::PagedOut,
            Effect::Discard => ReclaimOutcome::Discarded,
            _ => ReclaimOutcome::NotResident,
        };
        self.commit(mem, pfn, transition);
        outcome
    }

    /// Installs (or with `None` removes) the schedule [`HostModel::maybe_reclaim`] follows.
    pub fn set_schedule(&mut self, schedule: Option<DiscardSchedule>) {
        self.scheduler = schedule.map(|schedule| Scheduler {
            schedule,
            rng: Xoshiro256PlusPlus::seed_from_u64(schedule.seed),
            essa_at_last_strike: self.counters.essa_total(),
        });
    }

    /// The installed schedule, if any.
    pub fn schedule(&self) -> Option<DiscardSchedule> {
        self.scheduler.as_ref().map(|scheduler| scheduler.schedule)
    }

    /// Lets the host strike if the schedule says so; the glue calls it at ESSA
    /// time and on allocation slow paths. Returns the frame it reclaimed.
    ///
    /// A strike picks a random frame and scans up to [`SCAN_WINDOW`] frames from
    /// there for a resident U, V or P frame; if there is none it reclaims the
    /// picked frame (a stable one is paged out).
    pub fn maybe_reclaim(&mut self, mem: &mut impl HostMemory) -> Option<(u64, ReclaimOutcome)> {
        let frames = self.frames();
        let essa_total = self.counters.essa_total();
        let scheduler = self.scheduler.as_mut()?;
        if frames == 0 || !scheduler.strikes(essa_total) {
            return None;
        }
        let start = scheduler.rng.next_u64() % frames;
        let victim = (0..SCAN_WINDOW.min(frames))
            .map(|offset| (start + offset) % frames)
            .find(|&pfn| {
                self.frame_state(pfn)
                    .is_some_and(|state| is_discardable(state.usage, state.content))
            })
            .unwrap_or(start);
        Some((victim, self.reclaim(mem, victim)))
    }
}

fn is_discardable(usage: UsageState, content: ContentState) -> bool {
    content == ContentState::Resident && usage != UsageState::Stable
}

impl Scheduler {
    fn strikes(&mut self, essa_total: u64) -> bool {
        match self.schedule.rate {
            DiscardRate::PerMille(rate) => self.rng.next_u64() % 1000 < u64::from(rate),
            DiscardRate::EveryNthEssa(0) => false,
            DiscardRate::EveryNthEssa(n) => {
                let due = essa_total.saturating_sub(self.essa_at_last_strike) >= n;
                if due {
                    self.essa_at_last_strike = essa_total;
                }
                due
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{Call, FakeMemory};
    use super::super::{EssaContext, FRAME_SHIFT, FrameState, ModelOptions};
    use super::*;

    const FRAMES: u64 = 8;

    fn setup() -> (HostModel, FakeMemory) {
        (
            HostModel::new(FRAMES, ModelOptions::default()),
            FakeMemory::new(FRAMES),
        )
    }

    fn essa(model: &mut HostModel, mem: &mut FakeMemory, orc_raw: u8, pfn: u64) {
        let ctx = EssaContext {
            orc_raw,
            addr: pfn << FRAME_SHIFT,
            problem_state: false,
            facility_147: true,
        };
        model.essa(mem, ctx).expect("ESSA succeeds");
    }

    fn state(model: &HostModel, pfn: u64) -> (UsageState, ContentState) {
        let (usage, content, _) = model.state(pfn);
        (usage, content)
    }

    #[test]
    fn stable_frames_are_paged_out_and_keep_their_bytes() {
        let (mut model, mut mem) = setup();
        assert_eq!(model.reclaim(&mut mem, 1), ReclaimOutcome::PagedOut);
        assert_eq!(
            state(&model, 1),
            (UsageState::Stable, ContentState::Preserved)
        );
        assert!(mem.calls.is_empty(), "a page-out is invisible to the guest");
        assert_eq!(model.counters().page_outs, 1);
    }

    #[test]
    fn unused_and_volatile_frames_are_discarded() {
        for (orc, usage) in [(2, UsageState::Unused), (3, UsageState::Volatile)] {
            let (mut model, mut mem) = setup();
            essa(&mut model, &mut mem, orc, 1);
            assert_eq!(model.reclaim(&mut mem, 1), ReclaimOutcome::Discarded);
            assert_eq!(state(&model, 1), (usage, ContentState::Zero));
            assert_eq!(mem.calls, [Call::Discard(1)]);
            assert_eq!(model.counters().discards, 1);
        }
    }

    #[test]
    fn clean_pot_volatile_frames_are_discarded_as_volatile() {
        let (mut model, mut mem) = setup();
        mem.change[1] = true;
        essa(&mut model, &mut mem, 4, 1);
        assert_eq!(model.reclaim(&mut mem, 1), ReclaimOutcome::Discarded);
        assert_eq!(state(&model, 1), (UsageState::Volatile, ContentState::Zero));
    }

    #[test]
    fn dirty_pot_volatile_frames_are_paged_out_as_stable() {
        let (mut model, mut mem) = setup();
        essa(&mut model, &mut mem, 4, 1);
        // The guest stores after the frame entered P: the change bit decides.
        mem.store(1);
        assert_eq!(model.reclaim(&mut mem, 1), ReclaimOutcome::PagedOut);
        assert_eq!(
            state(&model, 1),
            (UsageState::Stable, ContentState::Preserved)
        );
    }

    #[test]
    fn entering_p_clears_a_stale_change_bit() {
        // §6.3 item 4: a store *before* ORC 4 must not save the frame from discard.
        let (mut model, mut mem) = setup();
        mem.store(1);
        essa(&mut model, &mut mem, 4, 1);
        assert_eq!(model.reclaim(&mut mem, 1), ReclaimOutcome::Discarded);
    }

    #[test]
    fn frames_that_are_not_resident_are_left_alone() {
        let (mut model, mut mem) = setup();
        essa(&mut model, &mut mem, 3, 1);
        model.reclaim(&mut mem, 1);
        model.reclaim(&mut mem, 2);
        mem.calls.clear();
        assert_eq!(model.reclaim(&mut mem, 1), ReclaimOutcome::NotResident);
        assert_eq!(model.reclaim(&mut mem, 2), ReclaimOutcome::NotResident);
        assert_eq!(
            state(&model, 2),
            (UsageState::Stable, ContentState::Preserved)
        );
        assert!(mem.calls.is_empty());
        assert_eq!(model.reclaim(&mut mem, FRAMES), ReclaimOutcome::NoSuchFrame);
    }

    #[test]
    fn no_schedule_never_strikes() {
        let (mut model, mut mem) = setup();
        assert_eq!(model.maybe_reclaim(&mut mem), None);
    }

    #[test]
    fn every_nth_essa_strikes_once_per_n_essas() {
        let (mut model, mut mem) = setup();
        model.set_schedule(Some(DiscardSchedule {
            seed: 1,
            rate: DiscardRate::EveryNthEssa(3),
        }));
        let mut strikes = Vec::new();
        for round in 0..9 {
            essa(&mut model, &mut mem, 0, 0);
            if model.maybe_reclaim(&mut mem).is_some() {
                strikes.push(round);
            }
        }
        assert_eq!(strikes, [2, 5, 8]);
    }

    #[test]
    fn per_mille_rate_bounds_the_strikes() {
        let strikes_at = |rate| {
            let (mut model, mut mem) = setup();
            model.set_schedule(Some(DiscardSchedule {
                seed: 7,
                rate: DiscardRate::PerMille(rate),
            }));
            (0..2000)
                .filter(|_| model.maybe_reclaim(&mut mem).is_some())
                .count()
        };
        assert_eq!(strikes_at(0), 0);
        assert_eq!(strikes_at(1000), 2000);
        let half = strikes_at(500);
        assert!((800..1200).contains(&half), "{half} strikes at 50%");
    }

    #[test]
    fn strikes_prefer_discardable_frames() {
        let (mut model, mut mem) = setup();
        essa(&mut model, &mut mem, 3, 5);
        model.set_schedule(Some(DiscardSchedule {
            seed: 3,
            rate: DiscardRate::PerMille(1000),
        }));
        // The whole memory fits in the scan window, so the volatile frame goes first.
        assert_eq!(
            model.maybe_reclaim(&mut mem),
            Some((5, ReclaimOutcome::Discarded))
        );
        assert_eq!(mem.calls, [Call::Discard(5)]);
    }

    #[test]
    fn the_same_seed_replays_the_same_victims() {
        let victims = |seed| {
            let mut model = HostModel::new(1000, ModelOptions::default());
            let mut mem = FakeMemory::new(1000);
            model.set_schedule(Some(DiscardSchedule {
                seed,
                rate: DiscardRate::PerMille(1000),
            }));
            (0..20)
                .map(|_| model.maybe_reclaim(&mut mem).map(|(pfn, _)| pfn))
                .collect::<Vec<_>>()
        };
        assert_eq!(victims(42), victims(42));
        assert_ne!(victims(42), victims(43));
    }

    #[test]
    fn frame_state_stays_initial_elsewhere() {
        let (mut model, mut mem) = setup();
        essa(&mut model, &mut mem, 2, 3);
        model.reclaim(&mut mem, 3);
        for pfn in (0..FRAMES).filter(|&pfn| pfn != 3) {
            assert_eq!(model.frame_state(pfn), Some(FrameState::INITIAL));
        }
    }
}
