//! The `page_make_volatile` condition check of the guest page hinting series
//! (reference §3.2 patches 1/6-4/6 and the seed 3/6, §6.3 item 6), as a pure
//! function the memory manager calls under the page's state-change lock.

use core::fmt;

/// What the memory manager knows about a page when it tries to make it volatile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PageFacts {
    /// PageDirty: contents not yet written back.
    pub dirty: bool,
    /// PageLocked: someone holds the page lock (I/O, truncation).
    pub locked: bool,
    /// PageWriteback: write-back in flight.
    pub writeback: bool,
    /// PagePrivate: private data attached (buffer heads).
    pub private: bool,
    /// PageUptodate: contents valid.
    pub uptodate: bool,
    /// PageLRU: on an LRU list (not isolated by reclaim or migration).
    pub on_lru: bool,
    /// PageAnon: anonymous memory.
    pub anon: bool,
    /// PageSwapCache: an anonymous page that also lives in the swap cache (2/6).
    pub swap_cache: bool,
    /// PageReserved.
    pub reserved: bool,
    /// PageDiscarded: the host discarded it and `page_discard` has claimed it.
    pub discarded: bool,
    /// `page_mapping() != NULL`: still in a page cache (not truncated).
    pub has_mapping: bool,
    /// The mapping's sticky `mlocked` flag (seed 3/6).
    pub mapping_mlocked: bool,
    /// Page-table mappings of the page (`page_mapcount`).
    pub mapcount: u32,
    /// All references to the page (`page_count`).
    pub refcount: u32,
    /// References the caller accounts for besides the mappings: the page
    /// cache's and the caller's own (the series' `offset`).
    pub caller_refs: u32,
    /// Mapped writable somewhere (4/6 `PG_writable`).
    pub writable_mapped: bool,
}

/// How to make the page volatile (4/6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolatileKind {
    /// Read-only everywhere: ORC 3, volatile.
    Volatile,
    /// Mapped writable: ORC 4, potentially volatile, so the host consults the
    /// change bit before discarding.
    PotVolatile,
}

/// The first condition that keeps a page stable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forbidden {
    /// Dirty data would be lost by a discard.
    Dirty,
    /// Reserved pages are not page cache.
    Reserved,
    /// Write-back in flight.
    Writeback,
    /// Locked: someone is working on the page.
    Locked,
    /// Private data (buffer heads) attached.
    Private,
    /// Already discarded; `page_discard` owns it.
    Discarded,
    /// Contents not valid, nothing to reload them from yet.
    NotUptodate,
    /// Isolated from the LRU.
    OffLru,
    /// Anonymous without a swap-cache copy to reload from.
    Anonymous,
    /// Truncated: no mapping to reload from.
    Truncated,
    /// The mapping had an mlocked VMA once; its pages stay stable (seed 3/6).
    MappingMlocked,
    /// `mapcount + caller_refs != refcount`: someone unknown holds a reference.
    UnknownReferences,
}

impl fmt::Display for Forbidden {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reason = match self {
            Forbidden::Dirty => "dirty",
            Forbidden::Reserved => "reserved",
            Forbidden::Writeback => "under writeback",
            Forbidden::Locked => "locked",
            Forbidden::Private => "has private data",
            Forbidden::Discarded => "already discarded",
            Forbidden::NotUptodate => "not uptodate",
            Forbidden::OffLru => "off the LRU",
            Forbidden::Anonymous => "anonymous without swap cache",
            Forbidden::Truncated => "truncated",
            Forbidden::MappingMlocked => "mapping was mlocked",
            Forbidden::UnknownReferences => "unknown references",
        };
        f.write_str(reason)
    }
}

/// Whether, and how, the page may become volatile.
///
/// Conditions in the order of the series' `check_bits` (1/6; anonymous pages
/// with swap cache allowed by 2/6; `return mapping && !mapping->mlocked` from
/// the seed 3/6), then `check_counts`; the kind follows 4/6.
pub fn volatile_verdict(p: &PageFacts) -> Result<VolatileKind, Forbidden> {
    let bits = [
        (p.dirty, Forbidden::Dirty),
        (p.reserved, Forbidden::Reserved),
        (p.writeback, Forbidden::Writeback),
        (p.locked, Forbidden::Locked),
        (p.private, Forbidden::Private),
        (p.discarded, Forbidden::Discarded),
        (!p.uptodate, Forbidden::NotUptodate),
        (!p.on_lru, Forbidden::OffLru),
        (p.anon && !p.swap_cache, Forbidden::Anonymous),
        (!p.has_mapping, Forbidden::Truncated),
        (p.mapping_mlocked, Forbidden::MappingMlocked),
    ];
    if let Some(&(_, forbidden)) = bits.iter().find(|(fails, _)| *fails) {
        return Err(forbidden);
    }
    if u64::from(p.mapcount) + u64::from(p.caller_refs) != u64::from(p.refcount) {
        return Err(Forbidden::UnknownReferences);
    }
    Ok(if p.writable_mapped {
        VolatileKind::PotVolatile
    } else {
        VolatileKind::Volatile
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clean, uptodate page-cache page on the LRU, mapped twice, looked at by
    /// a caller holding the cache reference and its own: may go volatile.
    fn clean_cache_page() -> PageFacts {
        PageFacts {
            uptodate: true,
            on_lru: true,
            has_mapping: true,
            mapcount: 2,
            caller_refs: 2,
            refcount: 4,
            ..PageFacts::default()
        }
    }

    #[test]
    fn clean_cache_page_goes_volatile() {
        assert_eq!(
            volatile_verdict(&clean_cache_page()),
            Ok(VolatileKind::Volatile)
        );
    }

    #[test]
    fn writable_mapped_page_goes_potentially_volatile() {
        let page = PageFacts {
            writable_mapped: true,
            ..clean_cache_page()
        };
        assert_eq!(volatile_verdict(&page), Ok(VolatileKind::PotVolatile));
    }

    #[test]
    fn unmapped_cache_page_goes_volatile() {
        let page = PageFacts {
            mapcount: 0,
            refcount: 2,
            ..clean_cache_page()
        };
        assert_eq!(volatile_verdict(&page), Ok(VolatileKind::Volatile));
    }

    #[test]
    fn anonymous_page_in_swap_cache_goes_volatile() {
        // 2/6: the swap copy makes an anonymous page reloadable.
        let page = PageFacts {
            anon: true,
            swap_cache: true,
            ..clean_cache_page()
        };
        assert_eq!(volatile_verdict(&page), Ok(VolatileKind::Volatile));
    }

    /// Each case breaks exactly one condition of an otherwise allowed page, so
    /// each test fails if its condition is dropped from `volatile_verdict`.
    fn assert_forbidden(change: impl FnOnce(&mut PageFacts), expected: Forbidden) {
        let mut page = clean_cache_page();
        change(&mut page);
        assert_eq!(volatile_verdict(&page), Err(expected));
    }

    #[test]
    fn dirty_stays_stable() {
        assert_forbidden(|p| p.dirty = true, Forbidden::Dirty);
    }

    #[test]
    fn reserved_stays_stable() {
        assert_forbidden(|p| p.reserved = true, Forbidden::Reserved);
    }

    #[test]
    fn writeback_stays_stable() {
        assert_forbidden(|p| p.writeback = true, Forbidden::Writeback);
    }

    #[test]
    fn locked_stays_stable() {
        assert_forbidden(|p| p.locked = true, Forbidden::Locked);
    }

    #[test]
    fn private_stays_stable() {
        assert_forbidden(|p| p.private = true, Forbidden::Private);
    }

    #[test]
    fn discarded_stays_stable() {
        assert_forbidden(|p| p.discarded = true, Forbidden::Discarded);
    }

    #[test]
    fn not_uptodate_stays_stable() {
        assert_forbidden(|p| p.uptodate = false, Forbidden::NotUptodate);
    }

    #[test]
    fn off_lru_stays_stable() {
        assert_forbidden(|p| p.on_lru = false, Forbidden::OffLru);
    }

    #[test]
    fn anonymous_without_swap_cache_stays_stable() {
        assert_forbidden(|p| p.anon = true, Forbidden::Anonymous);
    }

    #[test]
    fn truncated_stays_stable() {
        assert_forbidden(|p| p.has_mapping = false, Forbidden::Truncated);
    }

    #[test]
    fn mlocked_mapping_stays_stable() {
        // Seed 3/6: "once a file had an mlocked vma all future pages added to
        // it will stay stable", whatever the rest of the page looks like.
        assert_forbidden(|p| p.mapping_mlocked = true, Forbidden::MappingMlocked);
        assert_forbidden(
            |p| {
                p.mapping_mlocked = true;
                p.writable_mapped = true;
            },
            Forbidden::MappingMlocked,
        );
    }

    #[test]
    fn an_extra_reference_stays_stable() {
        assert_forbidden(|p| p.refcount += 1, Forbidden::UnknownReferences);
    }

    #[test]
    fn a_missing_reference_stays_stable() {
        assert_forbidden(|p| p.refcount -= 1, Forbidden::UnknownReferences);
    }

    #[test]
    fn huge_counts_do_not_overflow() {
        assert_forbidden(
            |p| {
                p.mapcount = u32::MAX;
                p.caller_refs = 1;
                p.refcount = 0;
            },
            Forbidden::UnknownReferences,
        );
    }

    #[test]
    fn the_first_failing_condition_is_named() {
        // Order of the series' check_bits: dirty before everything else,
        // counts last.
        assert_forbidden(
            |p| {
                p.dirty = true;
                p.locked = true;
                p.refcount = 0;
            },
            Forbidden::Dirty,
        );
        assert_forbidden(
            |p| {
                p.has_mapping = false;
                p.refcount = 0;
            },
            Forbidden::Truncated,
        );
    }
}
