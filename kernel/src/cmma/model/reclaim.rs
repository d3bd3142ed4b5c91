//! The host's reclaim and discard engine: on request from a test, or on a
//! seeded schedule (reference §1.4 host transitions, §6.3 item 3).
//!
//! A scheduled strike reclaims a frame the guest has hinted: unused, volatile or
//! potentially volatile and still resident. That is where real hosts look first and
//! what makes host pressure reach the guest: Linux KVM drops a guest page the guest
//! marked unused instead of swapping it (`mm/rmap.c` `try_to_unmap_one`, the
//! `pte_unused` case; the usage comes from the PGSTE, `arch/s390/mm/pgtable.c`
//! `ptep_xchg_commit`), and z/VM CP reclaims unused frames and discards volatile
//! ones without paging them out (IBM, "Collaborative memory management assist";
//! Schwidefsky on the host side, 2009, Message-ID 20090330183405.750440da@skybase:
//! "If the page is at the end of the inactive list AND has the volatile state then
//! don't bother with writeback, just throw it away"). The model keeps the hinted
//! frames in the order they were hinted, as the host's inactive list, and each strike
//! takes a seeded random one of the oldest [`SCAN_WINDOW`] that were hinted at least
//! [`DiscardSchedule::min_age`] guest ESSAs ago: Ur and Vr become zero
//! (discarded), a clean Pr too, a dirty Pr is paged out as Sp. A strike that finds no
//! hinted frame reclaims nothing (a stable frame's page-out is invisible to the
//! guest); [`super::Counters::scheduled_strikes`] and
//! [`super::Counters::scheduled_reclaims`] tell
//! the requested rate from the achieved one.

use super::transition::{Effect, reclaim_transition};
use super::{FrameState, HostMemory, HostModel};
use crate::cmma::essa::{ContentState, UsageState};
use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
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
    /// Guest ESSAs a hinted frame waits before a strike may take it (see
    /// [`MIN_AGE_ESSA`], what workloads that touch user memory need to stay live; 0:
    /// the host may take a frame the moment it is hinted).
    pub min_age: u32,
}

/// How many of the oldest hinted frames a strike chooses among, like a host LRU
/// scan that looks at the tail of its inactive list (Schwidefsky, §3.3).
pub const SCAN_WINDOW: u64 = 64;

/// How many guest ESSAs a hinted frame should wait before a strike may take it
/// ([`DiscardSchedule::min_age`]) when the guest touches user memory: 1, so the strike
/// that follows an ESSA never takes the frame that very ESSA hinted. That keeps the
/// guest live at any rate: a fault offers the page it maps right after readpage (or
/// when it maps a cached page) and the access it resolves is retried with no ESSA in
/// between, so it always completes. Any older hinted frame is fair game, as on a real
/// host, so kernel paths that use a page without making it stable first still meet
/// the discard (issue 12 found one in `read_file`).
pub const MIN_AGE_ESSA: u32 = 1;

/// The frames the guest hinted, oldest first: the host's inactive list. Each frame
/// records when it was hinted (guest ESSA count, never 0), so an entry whose frame
/// was made stable or reclaimed meanwhile, or hinted anew, is recognised as stale
/// and dropped when a strike meets it.
#[derive(Debug)]
struct HintedFrames {
    order: VecDeque<(u64, u32)>,
    /// Per frame: the ESSA count when it was hinted, 0 when it is not hinted.
    hinted_at: Vec<u32>,
}

impl HintedFrames {
    fn new(frames: u64) -> Self {
        let frames = usize::try_from(frames).expect("frame count fits in usize");
        HintedFrames {
            order: VecDeque::new(),
            hinted_at: vec![0; frames],
        }
    }

    /// Records the frame's new state at guest ESSA count `now`.
    fn note(&mut self, pfn: u64, state: FrameState, now: u64) {
        let Some(at) = usize::try_from(pfn)
            .ok()
            .and_then(|i| self.hinted_at.get_mut(i))
        else {
            return;
        };
        if !is_discardable(state) {
            *at = 0;
            return;
        }
        // Aged from its latest hint, also when it was hinted already: a read fault in a
        // shared writable mapping hints its page volatile after readpage (ORC 3) and
        // potentially volatile when it maps it writable (ORC 4); aged from the first
        // hint, the strike after ORC 4 took the page the fault had just mapped, the
        // retried access faulted again, and the guest never got on (`--discard-rate
        // 1000`). The older entry in `order` goes stale.
        // Wrapping is harmless: only ages of at most 2^31 ESSAs are compared.
        let hinted = (now as u32).max(1);
        if *at != hinted {
            *at = hinted;
            self.order.push_back((pfn, hinted));
        }
    }

    fn is_current(&self, (pfn, at): (u64, u32)) -> bool {
        usize::try_from(pfn)
            .ok()
            .and_then(|i| self.hinted_at.get(i))
            .is_some_and(|&now| now == at)
    }

    /// Takes one of the oldest [`SCAN_WINDOW`] hinted frames that waited at least
    /// `min_age` ESSAs (at guest ESSA count `now`), chosen by `draw`.
    fn take(&mut self, now: u64, min_age: u32, draw: u64) -> Option<u64> {
        let now = (now as u32).max(1);
        while self.order.front().is_some_and(|&e| !self.is_current(e)) {
            self.order.pop_front();
        }
        let old_enough: Vec<usize> = self
            .order
            .iter()
            .take(SCAN_WINDOW as usize)
            .enumerate()
            .filter(|&(_, &e)| self.is_current(e) && now.wrapping_sub(e.1) >= min_age)
            .map(|(i, _)| i)
            .collect();
        if old_enough.is_empty() {
            return None;
        }
        let index = old_enough[(draw % old_enough.len() as u64) as usize];
        let (pfn, _) = self.order.swap_remove_front(index)?;
        if let Some(at) = usize::try_from(pfn)
            .ok()
            .and_then(|i| self.hinted_at.get_mut(i))
        {
            *at = 0;
        }
        Some(pfn)
    }
}

/// A schedule with its running PRNG and the host's list of hinted frames.
#[derive(Debug)]
pub(super) struct Scheduler {
    schedule: DiscardSchedule,
    rng: Xoshiro256PlusPlus,
    essa_at_last_strike: u64,
    hinted: HintedFrames,
}

impl Scheduler {
    /// A frame changed state at guest ESSA count `now`: the host's list learns of
    /// newly hinted frames and forgets frames that are no longer hinted.
    pub(super) fn note(&mut self, pfn: u64, state: FrameState, now: u64) {
        self.hinted.note(pfn, state, now);
    }
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

    /// Installs (or with `None` removes) the schedule [`HostModel::maybe_reclaim`]
    /// follows. The frames hinted so far join the host's list in frame order.
    pub fn set_schedule(&mut self, schedule: Option<DiscardSchedule>) {
        let frames = self.frames();
        self.scheduler = schedule.map(|schedule| {
            let mut hinted = HintedFrames::new(frames);
            // What the guest hinted before counts as old: the host has had time.
            let long_ago = self
                .counters
                .essa_total()
                .wrapping_sub(u64::from(schedule.min_age));
            for pfn in 0..frames {
                if let Some(state) = self.frame_state(pfn) {
                    hinted.note(pfn, state, long_ago);
                }
            }
            Scheduler {
                schedule,
                rng: Xoshiro256PlusPlus::seed_from_u64(schedule.seed),
                essa_at_last_strike: self.counters.essa_total(),
                hinted,
            }
        });
    }

    /// Empties the installed schedule's list of hinted frames: its strikes take only
    /// frames the guest hints from now on. The frames hinted before stay resident and
    /// hinted. A test aims the strikes at what one operation hints this way, instead of
    /// letting the host reclaim every frame hinted before (with `mm.pool=all`, every free
    /// frame of the pool, each a poisoned and revoked page: ten seconds under TCG).
    pub fn forget_earlier_hints(&mut self) {
        if let Some(scheduler) = self.scheduler.as_mut() {
            scheduler.hinted = HintedFrames::new(scheduler.hinted.hinted_at.len() as u64);
        }
    }

    /// The installed schedule, if any.
    pub fn schedule(&self) -> Option<DiscardSchedule> {
        self.scheduler.as_ref().map(|scheduler| scheduler.schedule)
    }

    /// Lets the host strike if the schedule says so; the glue calls it after each
    /// emulated ESSA. Returns the frame it reclaimed.
    ///
    /// A strike reclaims one of the oldest [`SCAN_WINDOW`] frames the guest hinted
    /// at least [`DiscardSchedule::min_age`] ESSAs ago that is still resident and hinted (see the
    /// module documentation); with none, it reclaims nothing.
    pub fn maybe_reclaim(&mut self, mem: &mut impl HostMemory) -> Option<(u64, ReclaimOutcome)> {
        let essa_total = self.counters.essa_total();
        let scheduler = self.scheduler.as_mut()?;
        if !scheduler.strikes(essa_total) {
            return None;
        }
        self.counters.scheduled_strikes += 1;
        let draw = scheduler.rng.next_u64();
        let min_age = scheduler.schedule.min_age;
        let victim = scheduler.hinted.take(essa_total, min_age, draw)?;
        let usage = self.frame_state(victim).map(|state| state.usage);
        let outcome = self.reclaim(mem, victim);
        self.counters.scheduled_reclaims += 1;
        if outcome == ReclaimOutcome::Discarded && usage != Some(UsageState::Unused) {
            self.counters.scheduled_volatile_discards += 1;
        }
        Some((victim, outcome))
    }
}

/// Whether the host may reclaim the frame without paging out stable contents: the
/// guest hinted it (unused, volatile, potentially volatile) and it is resident.
fn is_discardable(state: FrameState) -> bool {
    state.content == ContentState::Resident && state.usage != UsageState::Stable
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
    use super::super::fake::{Call, FakeMemory, essa};
    use super::super::{FrameState, ModelOptions};
    use super::*;

    const FRAMES: u64 = 8;

    fn setup() -> (HostModel, FakeMemory) {
        (
            HostModel::new(FRAMES, ModelOptions::default()),
            FakeMemory::new(FRAMES),
        )
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
        assert_eq!(
            mem.calls,
            [Call::PageOut(1)],
            "revoked so the next touch is seen"
        );
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
        let mut model = HostModel::new(
            FRAMES,
            ModelOptions {
                clear_change_bit_on_pot_volatile: true,
                ..ModelOptions::default()
            },
        );
        let mut mem = FakeMemory::new(FRAMES);
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

    /// `n` guest ESSAs that change nothing (ORC 0 on frame 0).
    fn age(model: &mut HostModel, mem: &mut FakeMemory, n: u32) {
        for _ in 0..n {
            essa(model, mem, 0, 0);
        }
    }

    #[test]
    fn no_schedule_never_strikes() {
        let (mut model, mut mem) = setup();
        assert_eq!(model.maybe_reclaim(&mut mem), None);
    }

    #[test]
    fn every_nth_essa_strikes_once_per_n_essas() {
        let (mut model, mut mem) = setup();
        for pfn in 0..FRAMES {
            essa(&mut model, &mut mem, 3, pfn);
        }
        model.set_schedule(Some(DiscardSchedule {
            seed: 1,
            rate: DiscardRate::EveryNthEssa(3),
            min_age: 0,
        }));
        let mut strikes = Vec::new();
        for round in 0..9 {
            essa(&mut model, &mut mem, 0, 0);
            if let Some((_, outcome)) = model.maybe_reclaim(&mut mem) {
                assert_eq!(outcome, ReclaimOutcome::Discarded);
                strikes.push(round);
            }
        }
        assert_eq!(strikes, [2, 5, 8]);
        assert_eq!(model.counters().scheduled_strikes, 3);
    }

    #[test]
    fn per_mille_rate_bounds_the_strikes() {
        let strikes_at = |rate| {
            let (mut model, mut mem) = setup();
            model.set_schedule(Some(DiscardSchedule {
                seed: 7,
                rate: DiscardRate::PerMille(rate),
                min_age: 0,
            }));
            for _ in 0..2000 {
                model.maybe_reclaim(&mut mem);
            }
            model.counters().scheduled_strikes
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
            min_age: 0,
        }));
        assert_eq!(
            model.maybe_reclaim(&mut mem),
            Some((5, ReclaimOutcome::Discarded))
        );
        assert_eq!(mem.calls, [Call::Discard(5)]);
    }

    /// 4096 frames of which the guest hinted 10 (far apart, as a page pool is a small
    /// part of storage): every strike reclaims one of them until none is left, and
    /// never a stable frame (issue 12: a random frame plus a 64-frame scan almost
    /// never reached the pool, so host pressure never reached the guest).
    #[test]
    fn strikes_reach_the_hinted_frames_among_many_stable_ones() {
        const MANY: u64 = 4096;
        let mut model = HostModel::new(MANY, ModelOptions::default());
        let mut mem = FakeMemory::new(MANY);
        let hinted: Vec<u64> = (0..10).map(|n| 100 + n * 397).collect();
        for (n, &pfn) in hinted.iter().enumerate() {
            // Unused, volatile and potentially volatile (clean) frames alike.
            essa(&mut model, &mut mem, [2, 3, 4][n % 3], pfn);
        }
        model.set_schedule(Some(DiscardSchedule {
            seed: 11,
            rate: DiscardRate::PerMille(1000),
            min_age: 0,
        }));
        let mut victims: Vec<u64> = (0..20)
            .filter_map(|_| model.maybe_reclaim(&mut mem))
            .map(|(pfn, outcome)| {
                assert_eq!(outcome, ReclaimOutcome::Discarded);
                pfn
            })
            .collect();
        victims.sort_unstable();
        assert_eq!(victims, hinted);
        let counters = model.counters();
        assert_eq!(
            (counters.scheduled_strikes, counters.scheduled_reclaims),
            (20, 10)
        );
        // Frames hinted with ORC 3 and 4: the ones the guest can notice.
        assert_eq!(counters.scheduled_volatile_discards, 6);
        assert_eq!(counters.page_outs, 0);
    }

    #[test]
    fn frames_hinted_later_join_and_frames_made_stable_leave() {
        let (mut model, mut mem) = setup();
        model.set_schedule(Some(DiscardSchedule {
            seed: 5,
            rate: DiscardRate::PerMille(1000),
            min_age: 8,
        }));
        assert_eq!(model.maybe_reclaim(&mut mem), None, "nothing hinted yet");
        essa(&mut model, &mut mem, 3, 2);
        essa(&mut model, &mut mem, 4, 6);
        // The guest stores to frame 6 while it is potentially volatile: paged out.
        mem.store(6);
        essa(&mut model, &mut mem, 1, 2);
        assert_eq!(model.maybe_reclaim(&mut mem), None, "hinted just now");
        age(&mut model, &mut mem, 8);
        assert_eq!(
            model.maybe_reclaim(&mut mem),
            Some((6, ReclaimOutcome::PagedOut))
        );
        assert_eq!(
            model.maybe_reclaim(&mut mem),
            None,
            "frame 2 is stable again"
        );
        // Hinted anew, frame 2 waits its turn again.
        essa(&mut model, &mut mem, 3, 2);
        age(&mut model, &mut mem, 6);
        assert_eq!(model.maybe_reclaim(&mut mem), None);
        age(&mut model, &mut mem, 2);
        assert_eq!(
            model.maybe_reclaim(&mut mem),
            Some((2, ReclaimOutcome::Discarded))
        );
    }

    /// A host that strikes after every ESSA, sparing the frame that ESSA hinted.
    fn strike_after_every_essa(model: &mut HostModel) {
        model.set_schedule(Some(DiscardSchedule {
            seed: 9,
            rate: DiscardRate::PerMille(1000),
            min_age: MIN_AGE_ESSA,
        }));
    }

    /// After `forget_earlier_hints`, strikes pass over the frames hinted before (which
    /// stay as they were) and take the frames hinted since.
    #[test]
    fn forgotten_hints_are_not_struck_and_new_ones_are() {
        let (mut model, mut mem) = setup();
        essa(&mut model, &mut mem, 2, 1);
        essa(&mut model, &mut mem, 3, 2);
        strike_after_every_essa(&mut model);
        model.forget_earlier_hints();
        assert_eq!(model.maybe_reclaim(&mut mem), None);
        essa(&mut model, &mut mem, 3, 6);
        essa(&mut model, &mut mem, 1, 7);
        assert_eq!(
            model.maybe_reclaim(&mut mem),
            Some((6, ReclaimOutcome::Discarded))
        );
        assert_eq!(model.maybe_reclaim(&mut mem), None);
        assert_eq!(
            state(&model, 1),
            (UsageState::Unused, ContentState::Resident)
        );
        assert_eq!(
            state(&model, 2),
            (UsageState::Volatile, ContentState::Resident)
        );
        model.set_schedule(None);
        model.forget_earlier_hints();
        assert_eq!(model.schedule(), None);
    }

    /// With [`MIN_AGE_ESSA`], the strike after an ESSA never takes the frame that ESSA
    /// hinted, but does take one hinted by the ESSA before.
    #[test]
    fn the_strike_after_a_hint_spares_that_frame_only() {
        let (mut model, mut mem) = setup();
        strike_after_every_essa(&mut model);
        essa(&mut model, &mut mem, 3, 4);
        assert_eq!(model.maybe_reclaim(&mut mem), None);
        essa(&mut model, &mut mem, 3, 5);
        assert_eq!(
            model.maybe_reclaim(&mut mem),
            Some((4, ReclaimOutcome::Discarded))
        );
    }

    #[test]
    fn a_frame_hinted_again_is_aged_from_its_latest_hint() {
        let (mut model, mut mem) = setup();
        strike_after_every_essa(&mut model);
        // Volatile, then potentially volatile (a fault maps the page writable): the
        // strike after ORC 4 must spare the frame ORC 4 hinted.
        essa(&mut model, &mut mem, 3, 4);
        assert_eq!(model.maybe_reclaim(&mut mem), None);
        essa(&mut model, &mut mem, 4, 4);
        assert_eq!(model.maybe_reclaim(&mut mem), None);
        essa(&mut model, &mut mem, 3, 5);
        assert_eq!(
            model.maybe_reclaim(&mut mem),
            Some((4, ReclaimOutcome::Discarded))
        );
    }

    #[test]
    fn the_same_seed_replays_the_same_victims() {
        let victims = |seed| {
            let mut model = HostModel::new(1000, ModelOptions::default());
            let mut mem = FakeMemory::new(1000);
            for pfn in (0..1000).step_by(3) {
                essa(&mut model, &mut mem, 3, pfn);
            }
            model.set_schedule(Some(DiscardSchedule {
                seed,
                rate: DiscardRate::PerMille(500),
                min_age: 0,
            }));
            (0..40)
                .map(|_| model.maybe_reclaim(&mut mem).map(|(pfn, _)| pfn))
                .collect::<Vec<_>>()
        };
        assert_eq!(victims(42), victims(42));
        assert_ne!(victims(42), victims(43));
        assert!(victims(42).iter().flatten().all(|pfn| pfn % 3 == 0));
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
