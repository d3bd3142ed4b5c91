//! Invariant checks over a whole [`Mm`] (`mm.debug=1`): the facts that must hold
//! between two memory-manager operations, so a stress run that keeps them can trust
//! that no rule was bent on the way, even where the data happened to survive.
//!
//! [`violations`] reads everything (frame metadata, LRU lists, page caches, every
//! present PTE of every address space) and changes nothing. [`host_violations`] also
//! compares the metadata with the page states the host holds (the model under TCG).
//! Each [`Rule`] says why it matters.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use super::addr::{Pfn, VirtAddr};
use super::backing::BlockDevice;
use super::hooks::PageStateHooks;
use super::ids::SpaceId;
use super::machine::Machine;
use super::manager::Mm;
use super::page::{Page, PageFlags, last};
use super::vma::VmFlags;

/// One invariant of the memory manager and the page-state rules.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Rule {
    /// A dirty page is never volatile: a host discard would lose data not yet written back.
    DirtyVolatile,
    /// An anonymous page is never volatile: there is nothing to reload it from.
    AnonVolatile,
    /// A page mapped by a `VM_LOCKED` VMA is never volatile (the seed, patch 3/6).
    LockedVolatile,
    /// A discarded page is mapped nowhere (`page_discard` unmaps it everywhere).
    DiscardedMapped,
    /// A discarded page is in no page cache and on no LRU list.
    DiscardedCached,
    /// `mapcount` equals the number of PTEs that map the page.
    MapcountMismatch,
    /// `refcount` covers the page cache's reference and one per PTE.
    RefcountTooLow,
    /// A free frame has no references, owner, flags or PTEs.
    FreeInUse,
    /// The `LRU`/`ACTIVE` flags say which list holds the page, and only listed pages have them.
    LruMismatch,
    /// A page-cache entry and its page's owner name each other.
    CacheMismatch,
    /// A PTE maps a page where the reverse map finds it (inside a VMA of its owner).
    RmapMismatch,
    /// A page mapped writable carries `WRITABLE`, so its change bit reaches the dirty flag.
    WritableUntracked,
    /// A file page is mapped writable only in a shared VMA (private VMAs copy on write).
    PrivateWritable,
    /// Between operations no page is locked, under writeback or in a state change.
    TransientFlag,
    /// The host holds a page the kernel knows as dirty, anonymous or stable in a
    /// discardable state (the recorded state drifted from the host's).
    HostState,
    /// No `VM_BUG_ON` of the series fired: `page_discard` met no dirty, under-writeback,
    /// private or unmappable page, no changed page was found discarded ([`Mm::bugs`]).
    SeriesBug,
}

impl Rule {
    /// Every rule, for tests and reports.
    pub const ALL: [Rule; 16] = [
        Rule::DirtyVolatile,
        Rule::AnonVolatile,
        Rule::LockedVolatile,
        Rule::DiscardedMapped,
        Rule::DiscardedCached,
        Rule::MapcountMismatch,
        Rule::RefcountTooLow,
        Rule::FreeInUse,
        Rule::LruMismatch,
        Rule::CacheMismatch,
        Rule::RmapMismatch,
        Rule::WritableUntracked,
        Rule::PrivateWritable,
        Rule::TransientFlag,
        Rule::HostState,
        Rule::SeriesBug,
    ];

    /// What the rule demands, in words.
    pub fn text(self) -> &'static str {
        match self {
            Rule::DirtyVolatile => "a dirty page is never volatile",
            Rule::AnonVolatile => "an anonymous page is never volatile",
            Rule::LockedVolatile => "a page mapped by a VM_LOCKED VMA is never volatile",
            Rule::DiscardedMapped => "a discarded page is mapped nowhere",
            Rule::DiscardedCached => "a discarded page is in no page cache and on no LRU",
            Rule::MapcountMismatch => "mapcount equals the PTEs that map the page",
            Rule::RefcountTooLow => "refcount covers the page cache and every PTE",
            Rule::FreeInUse => "a free frame has no references, owner, flags or PTEs",
            Rule::LruMismatch => "LRU flags match LRU list membership",
            Rule::CacheMismatch => "page cache and page owner agree",
            Rule::RmapMismatch => "every PTE is where the reverse map looks",
            Rule::WritableUntracked => "a page mapped writable is flagged WRITABLE",
            Rule::PrivateWritable => "file pages are writable only in shared VMAs",
            Rule::TransientFlag => "no page stays locked, under writeback or in a state change",
            Rule::HostState => "the host's page state agrees with the kernel's",
            Rule::SeriesBug => "no rule of the series found broken at run time",
        }
    }
}

/// A broken invariant: which rule, where, and the facts that break it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Violation {
    /// The rule broken.
    pub rule: Rule,
    /// The frame concerned.
    pub pfn: Pfn,
    /// The PTE concerned, if any.
    pub at: Option<(SpaceId, VirtAddr)>,
    /// The facts, for the report.
    pub detail: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "mm invariant broken: {} (frame {:?}",
            self.rule.text(),
            self.pfn
        )?;
        if let Some((space, va)) = self.at {
            write!(f, " at {va:?} in space {}", space.get())?;
        }
        write!(f, "): {}", self.detail)
    }
}

/// Checks every invariant; the first violation found, if any.
pub fn check<M: Machine, D: BlockDevice, H: PageStateHooks>(
    mm: &Mm<M, D, H>,
) -> Result<(), Violation> {
    violations(mm).into_iter().next().map_or(Ok(()), Err)
}

/// One PTE that maps a frame.
#[derive(Clone, Copy)]
struct PteRef {
    space: SpaceId,
    va: VirtAddr,
    writable: bool,
}

/// Every invariant violation, in frame order (PTE rules first).
pub fn violations<M: Machine, D: BlockDevice, H: PageStateHooks>(
    mm: &Mm<M, D, H>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    let (in_own_slot, cache_violations) = check_page_caches(mm);
    let ptes = collect_ptes(mm);
    for &(pfn, r) in &ptes {
        check_pte(mm, pfn, r, &mut out);
    }
    // Both in frame order: each frame's PTEs are the run at the front of `rest`.
    let mut rest = &ptes[..];
    for (pfn, page) in mm.frames().pages().iter() {
        let skipped = rest.partition_point(|&(p, _)| p < pfn);
        rest = &rest[skipped..];
        let mapped = rest.partition_point(|&(p, _)| p == pfn);
        if page.test(PageFlags::RESERVED) {
            continue;
        }
        check_page(mm, pfn, page, mapped, &in_own_slot, &mut out);
    }
    check_lru_lists(mm, &mut out);
    out.extend(cache_violations);
    check_page_owners(mm, &in_own_slot, &mut out);
    for bug in mm.bugs() {
        out.push(violation(
            Rule::SeriesBug,
            bug.pfn(),
            None,
            format!("{bug}"),
        ));
    }
    out
}

/// Compares the kernel's page metadata with the host's usage state of each frame
/// (`host_usage`, in the caller's encoding of usage states, `stable` being the stable
/// one; `None`: the host does not know the frame). Dirty and anonymous
/// pages must be stable on the host, and so must pages whose recorded state is stable
/// (the layer skips ESSA on that record).
pub fn host_violations<M: Machine, D: BlockDevice, H: PageStateHooks, S: PartialEq + fmt::Debug>(
    mm: &Mm<M, D, H>,
    stable: S,
    mut host_usage: impl FnMut(Pfn) -> Option<S>,
) -> Vec<Violation> {
    let mut out = Vec::new();
    for (pfn, page) in mm.frames().pages().iter() {
        if page.flags().intersects(
            PageFlags::RESERVED | PageFlags::FREE | PageFlags::DISCARDED | PageFlags::DEFERRED,
        ) {
            continue;
        }
        let Some(usage) = host_usage(pfn) else {
            continue;
        };
        let why = if page.test(PageFlags::DIRTY) {
            "dirty"
        } else if page.test(PageFlags::ANON) {
            "anonymous"
        } else if page.last_state() == last::STABLE {
            "recorded stable"
        } else {
            continue;
        };
        if usage != stable {
            out.push(violation(
                Rule::HostState,
                pfn,
                None,
                format!("{why} page is {usage:?} on the host; {page:?}"),
            ));
        }
    }
    out
}

fn violation(rule: Rule, pfn: Pfn, at: Option<(SpaceId, VirtAddr)>, detail: String) -> Violation {
    Violation {
        rule,
        pfn,
        at,
        detail,
    }
}

/// Every present PTE of every user address space with the frame it maps, in frame order
/// (a sorted list, not a map of lists: the checker runs after every stress operation).
fn collect_ptes<M: Machine, D: BlockDevice, H: PageStateHooks>(
    mm: &Mm<M, D, H>,
) -> Vec<(Pfn, PteRef)> {
    let mut ptes = Vec::new();
    let user = mm.config().user.clone();
    for (&space, s) in &mm.spaces {
        s.dat
            .for_each_pte(mm.machine(), user.clone(), |va, _, pte| {
                let r = PteRef {
                    space,
                    va,
                    writable: !pte.is_protected(),
                };
                ptes.push((pte.pfn(), r));
            });
    }
    // Stable: a frame's PTEs stay in space and address order, as the map kept them.
    ptes.sort_by_key(|&(pfn, _)| pfn);
    ptes
}

/// The rules about one PTE and the page it maps.
fn check_pte<M: Machine, D: BlockDevice, H: PageStateHooks>(
    mm: &Mm<M, D, H>,
    pfn: Pfn,
    r: PteRef,
    out: &mut Vec<Violation>,
) {
    let at = Some((r.space, r.va));
    let Some(page) = mm.page(pfn) else {
        out.push(violation(
            Rule::RmapMismatch,
            pfn,
            at,
            "PTE maps a frame without metadata".into(),
        ));
        return;
    };
    let vma = mm.spaces.get(&r.space).and_then(|s| s.vmas.find(r.va));
    if page
        .flags()
        .intersects(PageFlags::FREE | PageFlags::DEFERRED)
    {
        out.push(violation(
            Rule::FreeInUse,
            pfn,
            at,
            format!("a PTE maps the free frame; {page:?}"),
        ));
        return;
    }
    if page.test(PageFlags::DISCARDED) {
        let locked = vma.is_some_and(|v| v.is_locked());
        out.push(violation(
            Rule::DiscardedMapped,
            pfn,
            at,
            format!("locked VMA: {locked}; {page:?}"),
        ));
    }
    let Some(vma) = vma else {
        out.push(violation(
            Rule::RmapMismatch,
            pfn,
            at,
            format!("PTE outside every VMA; {page:?}"),
        ));
        return;
    };
    let found_by_rmap = if let Some(space) = page.anon_space() {
        space == r.space && page.index() == r.va.page_number()
    } else {
        page.mapping().is_some()
            && vma.mapping() == page.mapping()
            && vma.file_index(r.va) == Some(page.index())
    };
    if !found_by_rmap {
        out.push(violation(
            Rule::RmapMismatch,
            pfn,
            at,
            format!("VMA {vma:?} does not lead to {page:?}"),
        ));
    }
    if r.writable && !page.test(PageFlags::WRITABLE) {
        out.push(violation(
            Rule::WritableUntracked,
            pfn,
            at,
            format!("{page:?}"),
        ));
    }
    if r.writable && !page.test(PageFlags::ANON) && !vma.flags().contains(VmFlags::SHARED) {
        out.push(violation(
            Rule::PrivateWritable,
            pfn,
            at,
            format!("VMA {:?}; {page:?}", vma.flags()),
        ));
    }
    if vma.is_locked() && last::is_discardable(page.last_state()) {
        out.push(violation(
            Rule::LockedVolatile,
            pfn,
            at,
            format!("{page:?}"),
        ));
    }
}

/// The rules about one frame's metadata; `mapped` PTEs map it.
fn check_page<M: Machine, D: BlockDevice, H: PageStateHooks>(
    mm: &Mm<M, D, H>,
    pfn: Pfn,
    page: &Page,
    mapped: usize,
    in_own_slot: &InOwnSlot,
    out: &mut Vec<Violation>,
) {
    let mut push = |rule, detail: String| out.push(violation(rule, pfn, None, detail));
    let free = PageFlags::FREE | PageFlags::DEFERRED;
    if page.flags().intersects(free) {
        let stray = page.flags().bits() & !free.bits();
        if page.refcount() != 0
            || page.mapcount() != 0
            || stray != 0
            || page.index() != 0
            || page.mapping().is_some()
        {
            push(Rule::FreeInUse, format!("{page:?}"));
        }
        return;
    }
    if page.mapcount() as usize != mapped {
        push(Rule::MapcountMismatch, format!("{mapped} PTEs; {page:?}"));
    }
    let cached = in_own_slot.get(mm, pfn);
    let needed =
        u64::from(page.mapcount()) + u64::from(cached) + u64::from(page.test(PageFlags::DAT_TABLE));
    if u64::from(page.refcount()) < needed.max(1) {
        push(
            Rule::RefcountTooLow,
            format!("needs at least {}; {page:?}", needed.max(1)),
        );
    }
    let discardable = last::is_discardable(page.last_state());
    if discardable && page.test(PageFlags::DIRTY) {
        push(Rule::DirtyVolatile, format!("{page:?}"));
    }
    if discardable && page.test(PageFlags::ANON) {
        push(Rule::AnonVolatile, format!("{page:?}"));
    }
    if page.test(PageFlags::DISCARDED) && (cached || page.test(PageFlags::LRU)) {
        push(
            Rule::DiscardedCached,
            format!("in cache: {cached}; {page:?}"),
        );
    }
    if page
        .flags()
        .intersects(PageFlags::LOCKED | PageFlags::WRITEBACK | PageFlags::STATE_CHANGE)
    {
        push(Rule::TransientFlag, format!("{page:?}"));
    }
    if page.test(PageFlags::ACTIVE) && !page.test(PageFlags::LRU) {
        push(
            Rule::LruMismatch,
            format!("active but not on the LRU; {page:?}"),
        );
    }
}

/// Each listed page carries the flags of its list, and every page flagged `LRU` is listed.
fn check_lru_lists<M: Machine, D: BlockDevice, H: PageStateHooks>(
    mm: &Mm<M, D, H>,
    out: &mut Vec<Violation>,
) {
    let pages = mm.frames().pages();
    let lists = [(&mm.lru.active, true), (&mm.lru.inactive, false)];
    let mut listed = 0usize;
    for (list, active) in lists {
        for pfn in list.iter(pages).take(pages.len() + 1) {
            listed += 1;
            let page = &pages[pfn];
            if !page.test(PageFlags::LRU) || page.test(PageFlags::ACTIVE) != active {
                let which = if active { "active" } else { "inactive" };
                out.push(violation(
                    Rule::LruMismatch,
                    pfn,
                    None,
                    format!("on the {which} list; {page:?}"),
                ));
            }
        }
    }
    let flagged = pages.iter().filter(|(_, p)| p.test(PageFlags::LRU)).count();
    if flagged != listed {
        let first = pages
            .iter()
            .find(|(_, p)| p.test(PageFlags::LRU))
            .map_or(Pfn::new(0), |(pfn, _)| pfn);
        out.push(violation(
            Rule::LruMismatch,
            first,
            None,
            format!("{flagged} pages flagged LRU, {listed} on the lists"),
        ));
    }
}

/// Per frame of the page array: whether the page cache slot the page names (its mapping
/// and index) holds it. Built in one pass over the page caches, so the checks of every
/// frame need no lookup (they ran after each stress operation under `mm.debug=1`, and
/// two tree lookups per frame were a third of that run's guest instructions).
struct InOwnSlot(Vec<bool>);

impl InOwnSlot {
    fn get<M: Machine, D: BlockDevice, H: PageStateHooks>(
        &self,
        mm: &Mm<M, D, H>,
        pfn: Pfn,
    ) -> bool {
        let pages = mm.frames().pages();
        pages.contains(pfn) && self.0[pages.link_of(pfn) as usize]
    }
}

/// Each page-cache entry's page names the entry: the violations, and which pages are in
/// the slot they name ([`check_page_owners`] checks the converse).
fn check_page_caches<M: Machine, D: BlockDevice, H: PageStateHooks>(
    mm: &Mm<M, D, H>,
) -> (InOwnSlot, Vec<Violation>) {
    let mut out = Vec::new();
    let pages = mm.frames().pages();
    let mut in_own_slot = InOwnSlot(alloc::vec![false; pages.len()]);
    for (&id, mapping) in &mm.mappings {
        for (index, pfn) in mapping.cached() {
            let Some(page) = mm.page(pfn) else {
                out.push(violation(
                    Rule::CacheMismatch,
                    pfn,
                    None,
                    format!("cached at {index} without metadata"),
                ));
                continue;
            };
            if page.mapping() != Some(id) || page.index() != index || page.test(PageFlags::FREE) {
                let detail = format!("cached as {id:?}[{index}]; {page:?}");
                out.push(violation(Rule::CacheMismatch, pfn, None, detail));
            } else {
                in_own_slot.0[pages.link_of(pfn) as usize] = true;
                if page.test(PageFlags::DISCARDED) {
                    out.push(violation(
                        Rule::DiscardedCached,
                        pfn,
                        None,
                        format!("{page:?}"),
                    ));
                }
            }
        }
    }
    (in_own_slot, out)
}

/// Each page naming a mapping is in that mapping's cache, at its index.
fn check_page_owners<M: Machine, D: BlockDevice, H: PageStateHooks>(
    mm: &Mm<M, D, H>,
    in_own_slot: &InOwnSlot,
    out: &mut Vec<Violation>,
) {
    for (pfn, page) in mm.frames().pages().iter() {
        let Some(id) = page.mapping() else { continue };
        if page
            .flags()
            .intersects(PageFlags::FREE | PageFlags::RESERVED)
            || in_own_slot.get(mm, pfn)
        {
            continue;
        }
        let cached = mm.mapping(id).and_then(|m| m.lookup(page.index()));
        let detail = format!("owner {id:?}[{}] caches {cached:?}; {page:?}", page.index());
        out.push(violation(Rule::CacheMismatch, pfn, None, detail));
    }
}

#[cfg(test)]
mod tests;
