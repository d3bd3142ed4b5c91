//! What a test can change on the host and must put back: the discard schedule, and
//! the page states of frames the memory manager does not own (the kernel image, heap,
//! stacks, tables, the backing store). Those frames are stable and resident for the
//! whole run unless a test hints one on purpose (e.g. a heap block made volatile to be
//! discarded); a test that leaves one hinted hands the host kernel data it may throw
//! away under a later test. The page pool's frames change state all the time and are
//! the memory manager's business (`mm::residue`, `mm::debug`).

use super::{DiscardSchedule, FrameState, HostModel};
use crate::cmma::essa::{ContentState, PageStateByte, UsageState};
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
    /// resident, paged out or zero). O(frames), reads only; it runs twice per test, so
    /// whole words of stable resident frames are passed over at once.
    pub fn snapshot(&self, frames: Range<u64>) -> HostSnapshot {
        const WORD: usize = 8;
        let stable = FrameState::INITIAL.to_byte().raw();
        let paged_out = FrameState::new(UsageState::Stable, ContentState::Preserved, false)
            .to_byte()
            .raw();
        // Stable and zero (Sz) is what ORC 1 leaves on a discarded block under KVM
        // (`pgste_perform_essa`): the host will not throw it away again.
        let zero = FrameState::new(UsageState::Stable, ContentState::Zero, false)
            .to_byte()
            .raw();
        let plain = |byte: u8| byte == stable || byte == paged_out || byte == zero;
        let all_stable = u64::from_ne_bytes([stable; WORD]);
        let mut hinted = BTreeMap::new();
        let table = self.table.bytes();
        let start = usize::try_from(frames.start)
            .unwrap_or(usize::MAX)
            .min(table.len());
        let end = usize::try_from(frames.end)
            .unwrap_or(usize::MAX)
            .clamp(start, table.len());
        for (word_no, word) in table[start..end].chunks(WORD).enumerate() {
            if word.len() == WORD
                && u64::from_ne_bytes(word.try_into().unwrap_or_default()) == all_stable
            {
                continue;
            }
            for (n, &byte) in word.iter().enumerate() {
                let pfn = (start + word_no * WORD + n) as u64;
                if !plain(byte) {
                    hinted.insert(pfn, FrameState::from_byte(PageStateByte(byte)));
                }
            }
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
