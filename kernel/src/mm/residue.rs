//! What a piece of work left behind in the memory manager: a [`Snapshot`] before, one
//! after, and [`Snapshot::residue`] names every difference that is not the page cache
//! doing its job (in the spirit of KUnit's resource tracking and Linux's
//! `CONFIG_DEBUG_VM` checks). The ktest runner takes one around every test, so a test
//! that leaks an address space, a pinned page or a DAT table fails by name instead of
//! making some later test run out of memory.
//!
//! Clean page-cache pages that reclaim could free are not residue: reading a file is
//! allowed to leave it cached. Everything else that holds a frame is counted.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::addr::Pfn;
use super::backing::BlockDevice;
use super::hooks::PageStateHooks;
use super::ids::SpaceId;
use super::machine::Machine;
use super::manager::Mm;
use super::page::{Page, PageFlags};

/// How many frames a residue message names before it says "and N more".
const NAMED: usize = 4;

/// The memory manager's holdings at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Frames free or held only by reclaimable page cache (clean, unmapped, unpinned,
    /// on an LRU list): what an allocation can get.
    pub available: usize,
    /// User address spaces, with their VMA count.
    pub spaces: BTreeMap<SpaceId, usize>,
    /// Frames holding DAT tables.
    pub dat_tables: BTreeSet<Pfn>,
    /// Frames with references beyond the page cache's and their PTEs' (pins,
    /// `alloc_page` frames nobody freed): the extra count per frame.
    pub pinned: BTreeMap<Pfn, u32>,
    /// Anonymous pages.
    pub anon: BTreeSet<Pfn>,
    /// Pages some PTE maps.
    pub mapped: BTreeSet<Pfn>,
    /// Page-cache pages with data not written back.
    pub dirty: BTreeSet<Pfn>,
    /// Pages locked, under writeback or in a page-state change: never between two
    /// operations.
    pub transient: BTreeSet<Pfn>,
    /// Page-cache pages on no LRU list (not discarded): reclaim can never free them.
    pub off_lru: BTreeSet<Pfn>,
    /// The reclaim watermarks (low, high), which tests lower to create pressure.
    pub watermarks: (usize, usize),
}

/// One kind of thing a test left behind.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Residue {
    /// How many.
    pub count: usize,
    /// What kind (e.g. "pinned pages").
    pub what: &'static str,
    /// Names of the items (frames, spaces) or a detail, for the message.
    pub items: Vec<String>,
}

impl fmt::Display for Residue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "left {} {}", self.count, self.what)?;
        for (n, item) in self.items.iter().take(NAMED).enumerate() {
            f.write_str(if n == 0 { ": " } else { ", " })?;
            f.write_str(item)?;
        }
        if self.items.len() > NAMED {
            write!(f, " and {} more", self.items.len() - NAMED)?;
        }
        Ok(())
    }
}

/// References the page cache and the PTEs account for.
fn expected_refs(page: &Page) -> u32 {
    u32::from(page.mapping().is_some()) + page.mapcount()
}

fn reclaimable(page: &Page) -> bool {
    page.mapping().is_some()
        && page.test(PageFlags::LRU)
        && page.mapcount() == 0
        && page.refcount() == 1
        && !page.flags().intersects(
            PageFlags::DIRTY
                | PageFlags::LOCKED
                | PageFlags::WRITEBACK
                | PageFlags::STATE_CHANGE
                | PageFlags::DISCARDED,
        )
}

impl Snapshot {
    /// What `mm` holds now. Reads only; O(frames + VMAs).
    pub fn take<M: Machine, D: BlockDevice, H: PageStateHooks>(mm: &Mm<M, D, H>) -> Snapshot {
        let mut s = Snapshot {
            spaces: mm
                .spaces
                .iter()
                .map(|(&id, space)| (id, space.vmas.iter().count()))
                .collect(),
            watermarks: (mm.config.low_watermark, mm.config.high_watermark),
            ..Snapshot::default()
        };
        for (pfn, page) in mm.frames().pages().iter() {
            let flags = page.flags();
            // A deferred frame (a discarded page's, waiting for a grace period) is free
            // as soon as every CPU passed a quiescent point.
            if flags.intersects(PageFlags::FREE | PageFlags::DEFERRED) {
                s.available += 1;
                continue;
            }
            if flags.contains(PageFlags::RESERVED) {
                continue;
            }
            if flags.contains(PageFlags::DAT_TABLE) {
                s.dat_tables.insert(pfn);
                continue;
            }
            if reclaimable(page) {
                s.available += 1;
                continue;
            }
            let extra = page.refcount().saturating_sub(expected_refs(page));
            if extra > 0 {
                s.pinned.insert(pfn, extra);
            }
            if flags.contains(PageFlags::ANON) {
                s.anon.insert(pfn);
            }
            if page.mapcount() > 0 {
                s.mapped.insert(pfn);
            }
            if page.mapping().is_some() && flags.contains(PageFlags::DIRTY) {
                s.dirty.insert(pfn);
            }
            if flags.intersects(PageFlags::LOCKED | PageFlags::WRITEBACK | PageFlags::STATE_CHANGE)
            {
                s.transient.insert(pfn);
            }
            if page.mapping().is_some() && !flags.intersects(PageFlags::LRU | PageFlags::DISCARDED)
            {
                s.off_lru.insert(pfn);
            }
        }
        s
    }

    /// What `after` holds that `self` (taken before) did not; empty when the memory
    /// manager is back where it was.
    pub fn residue(&self, after: &Snapshot) -> Vec<Residue> {
        let mut out = Vec::new();
        let mut push = |what, items: Vec<String>| {
            if !items.is_empty() {
                out.push(Residue {
                    count: items.len(),
                    what,
                    items,
                });
            }
        };
        push(
            "address spaces",
            after
                .spaces
                .iter()
                .filter(|(id, _)| !self.spaces.contains_key(id))
                .map(|(id, vmas)| format!("space {} with {vmas} VMAs", id.get()))
                .collect(),
        );
        push(
            "VMAs in address spaces that existed before",
            after
                .spaces
                .iter()
                .filter_map(|(id, &vmas)| {
                    let before = *self.spaces.get(id)?;
                    (vmas > before).then(|| format!("space {}: {before} -> {vmas}", id.get()))
                })
                .collect(),
        );
        push(
            "DAT table frames",
            new_frames(&self.dat_tables, &after.dat_tables),
        );
        push(
            "pinned pages",
            after
                .pinned
                .iter()
                .filter(|&(pfn, &extra)| self.pinned.get(pfn).is_none_or(|&b| extra > b))
                .map(|(pfn, extra)| format!("frame {:#x} +{extra} references", pfn.as_u64()))
                .collect(),
        );
        push("anonymous pages", new_frames(&self.anon, &after.anon));
        push("mapped pages", new_frames(&self.mapped, &after.mapped));
        push(
            "dirty page-cache pages (not written back)",
            new_frames(&self.dirty, &after.dirty),
        );
        push(
            "pages locked, under writeback or in a state change",
            new_frames(&self.transient, &after.transient),
        );
        push(
            "page-cache pages off the LRU lists",
            new_frames(&self.off_lru, &after.off_lru),
        );
        if after.watermarks != self.watermarks {
            out.push(Residue {
                count: 1,
                what: "changed reclaim watermarks",
                items: alloc::vec![format!(
                    "low/high {}/{}, were {}/{}",
                    after.watermarks.0, after.watermarks.1, self.watermarks.0, self.watermarks.1
                )],
            });
        }
        if after.available < self.available {
            out.push(Residue {
                count: self.available - after.available,
                what: "frames neither free nor reclaimable",
                items: alloc::vec![format!(
                    "{} free or reclaimable before, {} after",
                    self.available, after.available
                )],
            });
        }
        out
    }
}

fn new_frames(before: &BTreeSet<Pfn>, after: &BTreeSet<Pfn>) -> Vec<String> {
    after
        .difference(before)
        .map(|pfn| format!("frame {:#x}", pfn.as_u64()))
        .collect()
}

#[cfg(test)]
mod tests;
