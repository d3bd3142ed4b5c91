use super::*;
use crate::mm::addr::PAGE_SIZE;
use crate::mm::ids::MappingId;
use crate::mm::mmap::MapSource;
use crate::mm::testing::{RecordingHooks, TestMm, test_mm, user_read, user_write};

const P: u64 = PAGE_SIZE;
const FILE: u32 = 7;

/// A healthy memory manager with every kind of page: a shared file mapping with a
/// read-mapped and a written page, a private mapping with a read-mapped page, an
/// unmapped cached page, a written anonymous page and free frames.
struct World {
    mm: TestMm,
    space: SpaceId,
    mapping: MappingId,
    shared: VirtAddr,
    private: VirtAddr,
    anon: VirtAddr,
}

impl World {
    fn new() -> Self {
        let mut mm = test_mm(128, &[(FILE, 8 * P)], RecordingHooks::default());
        let mapping = mm.open_file(FILE).unwrap();
        let space = mm.create_space().unwrap();
        let file = |offset| MapSource::File { mapping, offset };
        let rw = VmFlags::READ | VmFlags::WRITE;
        let shared = mm
            .mmap(space, None, 2 * P, rw | VmFlags::SHARED, file(0))
            .unwrap();
        let private = mm.mmap(space, None, P, rw, file(2 * P)).unwrap();
        let anon = mm.mmap(space, None, P, rw, MapSource::Anon).unwrap();
        let mut buf = [0u8; 8];
        user_read(&mut mm, space, shared, &mut buf).unwrap();
        user_write(&mut mm, space, page(shared, 1), &buf).unwrap();
        user_read(&mut mm, space, private, &mut buf).unwrap();
        user_write(&mut mm, space, anon, &buf).unwrap();
        mm.read_file(mapping, 5 * P, &mut buf).unwrap();
        let world = World {
            mm,
            space,
            mapping,
            shared,
            private,
            anon,
        };
        assert_eq!(
            violations(&world.mm),
            [],
            "the healthy world breaks no rule"
        );
        world
    }

    fn pfn_at(&self, va: VirtAddr) -> Pfn {
        let dat = &self.mm.space(self.space).unwrap().dat;
        dat.walk(self.mm.machine(), va)
            .valid_pte()
            .expect("mapped")
            .1
            .pfn()
    }

    fn cached(&self, index: u64) -> Pfn {
        self.mm
            .mapping(self.mapping)
            .unwrap()
            .lookup(index)
            .expect("cached")
    }

    fn page(&mut self, pfn: Pfn) -> &mut Page {
        self.mm.page_mut(pfn)
    }

    fn a_free_frame(&self) -> Pfn {
        let pages = self.mm.frames().pages();
        pages
            .iter()
            .find(|(_, p)| p.test(PageFlags::FREE))
            .expect("a free frame")
            .0
    }

    /// The rules broken now; panics unless `rule` is among them.
    fn assert_fires(&self, rule: Rule) -> Vec<Violation> {
        let found = violations(&self.mm);
        assert!(
            found.iter().any(|v| v.rule == rule),
            "{rule:?} did not fire: {found:#?}"
        );
        assert_eq!(check(&self.mm).unwrap_err(), found[0]);
        found
    }
}

fn page(va: VirtAddr, n: u64) -> VirtAddr {
    VirtAddr::new(va.as_u64() + n * P)
}

#[test]
fn dirty_volatile_page_fires() {
    let mut w = World::new();
    let pfn = w.pfn_at(page(w.shared, 1));
    assert!(w.page(pfn).test(PageFlags::DIRTY) || w.page(pfn).test(PageFlags::WRITABLE));
    w.page(pfn).set(PageFlags::DIRTY);
    w.page(pfn).set_last_state(last::POT_VOLATILE);
    let found = w.assert_fires(Rule::DirtyVolatile);
    assert!(
        found[0]
            .to_string()
            .contains("a dirty page is never volatile"),
        "{}",
        found[0]
    );
}

#[test]
fn anonymous_volatile_page_fires() {
    let mut w = World::new();
    let pfn = w.pfn_at(w.anon);
    w.page(pfn).clear(PageFlags::DIRTY);
    w.page(pfn).set_last_state(last::VOLATILE);
    w.assert_fires(Rule::AnonVolatile);
}

#[test]
fn volatile_page_in_a_locked_vma_fires() {
    let mut w = World::new();
    w.mm.mlock(w.space, w.shared, P).unwrap();
    assert_eq!(violations(&w.mm), []);
    let pfn = w.pfn_at(w.shared);
    w.page(pfn).set_last_state(last::VOLATILE);
    let found = w.assert_fires(Rule::LockedVolatile);
    assert_eq!(
        found
            .iter()
            .find(|v| v.rule == Rule::LockedVolatile)
            .unwrap()
            .at,
        Some((w.space, w.shared))
    );
}

#[test]
fn discarded_page_still_mapped_fires() {
    let mut w = World::new();
    let pfn = w.pfn_at(w.private);
    w.page(pfn).set(PageFlags::DISCARDED);
    w.assert_fires(Rule::DiscardedMapped);
}

#[test]
fn discarded_page_still_cached_fires() {
    let mut w = World::new();
    let pfn = w.cached(5);
    w.page(pfn).set(PageFlags::DISCARDED);
    w.assert_fires(Rule::DiscardedCached);
}

#[test]
fn mapcount_without_pte_fires() {
    let mut w = World::new();
    let pfn = w.cached(5);
    w.page(pfn).inc_mapcount();
    w.assert_fires(Rule::MapcountMismatch);
}

#[test]
fn missing_reference_fires() {
    let mut w = World::new();
    let pfn = w.pfn_at(w.shared);
    w.page(pfn).set_refcount(1);
    w.assert_fires(Rule::RefcountTooLow);
}

#[test]
fn free_frame_with_flags_fires() {
    let mut w = World::new();
    let pfn = w.a_free_frame();
    w.page(pfn).set(PageFlags::DIRTY);
    w.assert_fires(Rule::FreeInUse);
}

#[test]
fn pte_to_a_free_frame_fires() {
    let mut w = World::new();
    let free = w.a_free_frame();
    let va = page(w.anon, 4);
    let (machine, mut tables) = (
        &mut w.mm.machine,
        crate::mm::manager::TableFrames {
            frames: &mut w.mm.frames,
            hooks: &mut w.mm.hooks,
        },
    );
    let s = w.mm.spaces.get_mut(&w.space).unwrap();
    s.dat.map(machine, &mut tables, va, free, false).unwrap();
    let found = w.assert_fires(Rule::FreeInUse);
    assert!(
        found
            .iter()
            .any(|v| v.rule == Rule::FreeInUse && v.at == Some((w.space, va)))
    );
}

#[test]
fn lru_flag_without_list_fires() {
    let mut w = World::new();
    let pfn = w.cached(5);
    w.page(pfn).clear(PageFlags::LRU);
    w.assert_fires(Rule::LruMismatch);
    let mut w = World::new();
    let pfn = w.cached(5);
    w.page(pfn).set(PageFlags::ACTIVE);
    w.assert_fires(Rule::LruMismatch);
}

#[test]
fn cache_entry_and_owner_disagreeing_fires() {
    let mut w = World::new();
    let pfn = w.cached(5);
    let mapping = w.mapping;
    w.page(pfn).set_file_owner(Some(mapping), 6);
    w.assert_fires(Rule::CacheMismatch);
}

#[test]
fn page_naming_an_empty_cache_slot_fires() {
    // Only the owner check can see it: no cache entry names the page.
    let mut w = World::new();
    assert!(w.mm.mapping(w.mapping).unwrap().lookup(7).is_none());
    let pfn = w.pfn_at(w.anon);
    let mapping = w.mapping;
    w.page(pfn).set_file_owner(Some(mapping), 7);
    let found = w.assert_fires(Rule::CacheMismatch);
    assert!(
        found
            .iter()
            .any(|v| v.rule == Rule::CacheMismatch && v.detail.contains("caches None")),
        "{found:#?}"
    );
}

#[test]
fn pte_where_rmap_does_not_look_fires() {
    let mut w = World::new();
    let pfn = w.pfn_at(w.anon);
    let (space, vpn) = (w.space, w.anon.page_number());
    w.page(pfn).set_anon_owner(space, vpn + 1);
    w.assert_fires(Rule::RmapMismatch);
}

#[test]
fn writable_pte_without_writable_flag_fires() {
    let mut w = World::new();
    let pfn = w.pfn_at(page(w.shared, 1));
    w.page(pfn).clear(PageFlags::WRITABLE);
    w.assert_fires(Rule::WritableUntracked);
}

#[test]
fn writable_file_page_in_a_private_vma_fires() {
    let mut w = World::new();
    let pfn = w.pfn_at(w.private);
    assert!(
        w.mm.page(pfn).unwrap().mapping().is_some(),
        "read fault maps the cache page"
    );
    w.page(pfn).set(PageFlags::WRITABLE);
    let s = w.mm.spaces.get_mut(&w.space).unwrap();
    s.dat.protect(&mut w.mm.machine, w.private, true);
    w.assert_fires(Rule::PrivateWritable);
}

#[test]
fn page_left_locked_fires() {
    let mut w = World::new();
    let pfn = w.cached(5);
    w.page(pfn).set(PageFlags::LOCKED);
    w.assert_fires(Rule::TransientFlag);
}

/// The host's usage states as the caller encodes them (the checker takes any encoding).
#[derive(Clone, Copy, Debug, PartialEq)]
enum UsageState {
    Stable,
    Volatile,
}

#[test]
fn host_state_disagreeing_fires_only_for_pages_that_must_be_stable() {
    let w = World::new();
    assert_eq!(
        host_violations(&w.mm, UsageState::Stable, |_| Some(UsageState::Stable)),
        []
    );
    assert_eq!(host_violations(&w.mm, UsageState::Stable, |_| None), []);
    let found = host_violations(&w.mm, UsageState::Stable, |_| Some(UsageState::Volatile));
    let dirty = w.pfn_at(page(w.shared, 1));
    let anon = w.pfn_at(w.anon);
    assert!(found.iter().all(|v| v.rule == Rule::HostState));
    assert!(
        found.iter().any(|v| v.pfn == dirty) || !w.mm.page(dirty).unwrap().test(PageFlags::DIRTY)
    );
    assert!(found.iter().any(|v| v.pfn == anon), "{found:#?}");
    // A page the kernel knows as volatile may be anything on the host.
    let clean = w.cached(5);
    assert!(!found.iter().any(|v| v.pfn == clean), "{found:#?}");
}

#[test]
fn a_series_bug_fires() {
    let mut w = World::new();
    let pfn = w.cached(5);
    w.page(pfn).set(PageFlags::DIRTY);
    assert!(w.mm.page_discard(pfn).is_err());
    w.page(pfn).clear(PageFlags::DIRTY);
    let found = w.assert_fires(Rule::SeriesBug);
    assert!(
        found
            .iter()
            .any(|v| v.pfn == pfn && v.detail.contains("dirty"))
    );
    w.mm.take_bugs();
    assert_eq!(violations(&w.mm), []);
}

#[test]
fn rule_texts_are_distinct() {
    let texts: alloc::collections::BTreeSet<_> = Rule::ALL.iter().map(|r| r.text()).collect();
    assert_eq!(texts.len(), Rule::ALL.len(), "rule texts are distinct");
}

/// A seeded random workload over the real operations keeps every rule: the checks
/// raise no false alarm.
#[test]
fn random_operations_keep_every_rule() {
    let mut mm = test_mm(
        96,
        &[(1, 16 * P), (2, 16 * P)],
        RecordingHooks {
            seed_unmap_rule: true,
            ..Default::default()
        },
    );
    let maps = [mm.open_file(1).unwrap(), mm.open_file(2).unwrap()];
    let space = mm.create_space().unwrap();
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let mut regions: Vec<(VirtAddr, u64)> = Vec::new();
    for step in 0..600 {
        match next(9) {
            0 if regions.len() < 6 => {
                let pages = 1 + next(8);
                let flags = match next(3) {
                    0 => VmFlags::READ,
                    1 => VmFlags::READ | VmFlags::WRITE,
                    _ => VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED,
                };
                let source = match next(3) {
                    // Shared anonymous memory is not supported.
                    0 if !flags.contains(VmFlags::SHARED) => MapSource::Anon,
                    0 => MapSource::File {
                        mapping: maps[0],
                        offset: 0,
                    },
                    n => MapSource::File {
                        mapping: maps[n as usize - 1],
                        offset: next(8) * P,
                    },
                };
                regions.push((
                    mm.mmap(space, None, pages * P, flags, source).unwrap(),
                    pages,
                ));
            }
            1 if !regions.is_empty() => {
                let (va, pages) = regions.swap_remove(next(regions.len() as u64) as usize);
                mm.munmap(space, va, pages * P).unwrap();
            }
            2 | 3 if !regions.is_empty() => {
                let (va, pages) = regions[next(regions.len() as u64) as usize];
                let at = page(va, next(pages));
                let writable = mm
                    .space(space)
                    .unwrap()
                    .vmas
                    .find(at)
                    .unwrap()
                    .flags()
                    .contains(VmFlags::WRITE);
                if writable && next(2) == 0 {
                    user_write(&mut mm, space, at, &[step as u8; 3]).unwrap();
                } else {
                    user_read(&mut mm, space, at, &mut [0; 3]).unwrap();
                }
            }
            4 if !regions.is_empty() => {
                let (va, pages) = regions[next(regions.len() as u64) as usize];
                if next(2) == 0 {
                    mm.mlock(space, va, pages * P).unwrap();
                } else {
                    mm.munlock(space, va, pages * P).unwrap();
                }
            }
            5 => {
                let m = maps[next(2) as usize];
                mm.write_file(m, next(16 * P), &[1, 2, 3]).unwrap();
            }
            6 => {
                mm.reclaim(1 + next(8) as usize);
            }
            7 => {
                let m = maps[next(2) as usize];
                if let Some(pfn) = mm.mapping(m).unwrap().lookup(next(16)) {
                    let _ = mm.page_discard(pfn);
                }
            }
            _ => {
                let m = maps[next(2) as usize];
                mm.sync_mapping(m).unwrap();
            }
        }
        assert_eq!(check(&mm), Ok(()), "after step {step}");
    }
}
