//! What a test can change on the host and must put back: the discard schedule, and
//! the page states of frames the memory manager does not own (the kernel image, heap,
//! stacks, tables, the backing store). Those frames are stable and resident for the
//! whole run unless a test hints one on purpose (e.g. a heap block made volatile to be
//! discarded); a test that leaves one hinted hands the host kernel data it may throw
//! away under a later test. The page pool's frames change state all the time and are
//! the memory manager's business (`mm::residue`, `mm::debug`).

use super::{DiscardSchedule, FrameState, HostModel, SUMMARY_BLOCK};
use crate::cmma::essa::PageStateByte;
use crate::mm::residue::Residue;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::vec::Vec;
use core::ops::Range;

/// The host's test-visible setup at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostSnapshot {
    /// The discard schedule installed.
    pub schedule: Option<DiscardSchedule>,
    /// Frames outside the page pool that are not stable with their contents (hinted,
    /// discarded or no-DAT), with their state.
    pub hinted: BTreeMap<u64, FrameState>,
}

impl HostModel {
    /// The schedule and every frame of `frames` that is not plain stable (stable:
    /// resident, paged out or zero). It runs twice per test, so blocks of frames the
    /// table's summary vouches for are passed over without reading them.
    pub fn snapshot(&self, frames: Range<u64>) -> HostSnapshot {
        let table = self.table.bytes();
        let start = usize::try_from(frames.start)
            .unwrap_or(usize::MAX)
            .min(table.len());
        let end = usize::try_from(frames.end)
            .unwrap_or(usize::MAX)
            .clamp(start, table.len());
        let mut hinted = BTreeMap::new();
        let mut at = start;
        while at < end {
            let block_end = ((at / SUMMARY_BLOCK + 1) * SUMMARY_BLOCK).min(end);
            if self.table.may_hold_hinted(at) {
                for (pfn, &byte) in (at..block_end).zip(&table[at..block_end]) {
                    let state = FrameState::from_byte(PageStateByte(byte));
                    if !state.is_plain_stable() {
                        hinted.insert(pfn as u64, state);
                    }
                }
            }
            at = block_end;
        }
        HostSnapshot {
            schedule: self.schedule(),
            hinted,
        }
    }
}

impl HostSnapshot {
    /// What `after` holds that `self` (taken before) did not.
    pub fn residue(&self, after: &HostSnapshot) -> Vec<Residue> {
        let mut out = Vec::new();
        if after.schedule != self.schedule {
            out.push(Residue {
                count: 1,
                what: "host discard schedules",
                items: alloc::vec![format!("{:?} (was {:?})", after.schedule, self.schedule)],
            });
        }
        let hinted: Vec<_> = after
            .hinted
            .iter()
            .filter(|&(pfn, state)| self.hinted.get(pfn) != Some(state))
            .map(|(pfn, state)| format!("frame {pfn:#x} {state:?}"))
            .collect();
        if !hinted.is_empty() {
            out.push(Residue {
                count: hinted.len(),
                what: "frames outside the page pool not stable on the host",
                items: hinted,
            });
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeMemory, essa};
    use super::super::{DiscardRate, ModelOptions};
    use super::*;
    use alloc::string::ToString;

    /// The snapshot against a look at every frame, over ranges that start and end
    /// inside summary blocks, while random ESSAs hint frames and make them stable again:
    /// a block the summary passes over must never hold a hinted frame.
    #[test]
    fn snapshot_finds_every_hinted_frame_the_summary_passes_over() {
        const FRAMES: u64 = 5 * SUMMARY_BLOCK as u64 + 17;
        let mut model = HostModel::new(FRAMES, ModelOptions::default());
        let mut mem = FakeMemory::new(FRAMES);
        let ranges = [
            0..FRAMES,
            1..FRAMES - 1,
            63..65,
            64..128,
            100..300,
            300..FRAMES,
        ];
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for round in 0..2000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Mostly ORC 1 (stable) and 3 (volatile), now and then unused and no-DAT.
            let orc = [1, 1, 3, 3, 2, 7][(seed % 6) as usize];
            essa(&mut model, &mut mem, orc, (seed >> 8) % FRAMES);
            for range in ranges.clone() {
                let every: BTreeMap<u64, FrameState> = range
                    .clone()
                    .filter_map(|pfn| model.frame_state(pfn).map(|s| (pfn, s)))
                    .filter(|(_, state)| !state.is_plain_stable())
                    .collect();
                assert_eq!(
                    model.snapshot(range.clone()).hinted,
                    every,
                    "round {round}, {range:?}"
                );
            }
        }
    }

    #[test]
    fn hinted_frames_outside_the_pool_and_schedules_are_residue() {
        let mut model = HostModel::new(16, ModelOptions::default());
        let mut mem = FakeMemory::new(16);
        // Frames 8.. are the page pool: the memory manager's business.
        let outside = 0..8;
        let before = model.snapshot(outside.clone());
        essa(&mut model, &mut mem, 3, 9);
        assert_eq!(before.residue(&model.snapshot(outside.clone())), []);
        essa(&mut model, &mut mem, 3, 2);
        model.reclaim(&mut mem, 2);
        model.set_schedule(Some(DiscardSchedule {
            seed: 1,
            rate: DiscardRate::PerMille(5),
            min_age: 0,
        }));
        let residue = before.residue(&model.snapshot(outside.clone()));
        assert_eq!(residue.len(), 2);
        assert!(
            residue[0]
                .to_string()
                .starts_with("left 1 host discard schedules: Some(DiscardSchedule"),
            "{}",
            residue[0]
        );
        let state = model.frame_state(2).unwrap();
        assert_eq!(
            residue[1].to_string(),
            format!(
                "left 1 frames outside the page pool not stable on the host: frame 0x2 {state:?}"
            )
        );
        // Put back: stable again (ORC 1), no schedule.
        essa(&mut model, &mut mem, 1, 2);
        model.set_schedule(None);
        assert_eq!(before.residue(&model.snapshot(outside)), []);
    }
}
