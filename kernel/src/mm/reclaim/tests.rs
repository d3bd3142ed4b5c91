use super::*;
use crate::mm::addr::{PAGE_SIZE, VirtAddr};
use crate::mm::backing::{check_pattern, fill_pattern};
use crate::mm::error::MmError;
use crate::mm::ids::{MappingId, SpaceId};
use crate::mm::mmap::MapSource;
use crate::mm::testing::{
    MappedFile, RecordingHooks, TestMm, map_whole_file, mm_with_file, mmap_file, page_at, test_mm,
    user_read, user_write,
};
use crate::mm::vma::VmFlags;
use alloc::collections::BTreeMap;
use alloc::vec;
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};

const P: u64 = PAGE_SIZE;
const RW: VmFlags = VmFlags::READ.union(VmFlags::WRITE);

/// 96 frames, 16 reserved: at most 80 page-cache pages, minus tables.
const FRAMES: u64 = 96;

#[test]
fn memory_pressure_reads_twice_the_memory_and_verifies_every_byte() {
    let file_pages = 3 * FRAMES;
    let mut mm = test_mm(
        FRAMES,
        &[(1, file_pages * P), (2, file_pages * P)],
        RecordingHooks::default(),
    );
    let f1 = mm.open_file(1).unwrap();
    let f2 = mm.open_file(2).unwrap();
    // Through read(): every page of a file three times the size of memory.
    let mut buf = vec![0u8; P as usize];
    for index in 0..file_pages {
        assert_eq!(mm.read_file(f1, index * P, &mut buf).unwrap(), P as usize);
        assert_eq!(check_pattern(1, index * P, &buf), Ok(()), "page {index}");
    }
    assert!(mm.mapping(f1).unwrap().nrpages() < FRAMES as usize);
    // Through a mapping: faults, reclaim unmaps pages via the reverse map.
    let space = mm.create_space().unwrap();
    let va = mmap_file(&mut mm, space, f2, file_pages * P, VmFlags::READ);
    for index in 0..file_pages {
        user_read(&mut mm, space, page_at(va, index), &mut buf).unwrap();
        assert_eq!(
            check_pattern(2, index * P, &buf),
            Ok(()),
            "mapped page {index}"
        );
    }
    // And once more backwards: everything was evicted and reread correctly.
    for index in (0..file_pages).rev() {
        user_read(&mut mm, space, page_at(va, index), &mut buf).unwrap();
        assert_eq!(
            check_pattern(2, index * P, &buf),
            Ok(()),
            "second pass page {index}"
        );
    }
    let stats = mm.stats();
    assert!(stats.reclaimed as u64 >= 2 * file_pages, "{stats:?}");
    assert!(stats.watermark_reclaims > 0);
    // The backward pass starts with what the forward pass left cached.
    assert!(mm.device().stats().reads >= 3 * file_pages - FRAMES);
    assert!(mm.frames().free_count() > 0);
}

#[test]
fn dirty_pages_are_written_back_under_pressure() {
    let file_pages = 2 * FRAMES;
    let MappedFile {
        mut mm,
        space,
        mapping: m,
        va,
    } = map_whole_file(
        FRAMES,
        5,
        file_pages,
        RW | VmFlags::SHARED,
        RecordingHooks::default(),
    );
    for index in 0..file_pages {
        let stamp = (index as u32).to_be_bytes();
        user_write(
            &mut mm,
            space,
            VirtAddr::new(va.as_u64() + index * P + 16),
            &stamp,
        )
        .unwrap();
    }
    assert!(mm.stats().writebacks > 0);
    let mut buf = vec![0u8; P as usize];
    for index in 0..file_pages {
        mm.read_file(m, index * P, &mut buf).unwrap();
        assert_eq!(&buf[16..20], &(index as u32).to_be_bytes(), "page {index}");
        assert_eq!(check_pattern(5, index * P, &buf[..16]), Ok(()));
        assert_eq!(check_pattern(5, index * P + 20, &buf[20..]), Ok(()));
    }
}

#[test]
fn locked_referenced_and_anonymous_pages_are_not_reclaimed() {
    let mut mm = test_mm(
        FRAMES,
        &[(1, 8 * P), (2, 4 * FRAMES * P)],
        RecordingHooks::default(),
    );
    let locked_file = mm.open_file(1).unwrap();
    let big = mm.open_file(2).unwrap();
    let space = mm.create_space().unwrap();
    let locked = mmap_file(
        &mut mm,
        space,
        locked_file,
        8 * P,
        VmFlags::READ | VmFlags::LOCKED,
    );
    let anon = mm.mmap(space, None, 4 * P, RW, MapSource::Anon).unwrap();
    user_write(&mut mm, space, anon, &[7u8; 4 * 4096]).unwrap();
    let locked_pfns: Vec<_> = (0..8)
        .map(|i| mm.mapping(locked_file).unwrap().lookup(i).unwrap())
        .collect();
    let mut buf = vec![0u8; P as usize];
    for index in 0..4 * FRAMES {
        mm.read_file(big, index * P, &mut buf).unwrap();
    }
    // Drain everything reclaimable: the locked pages must still be there.
    mm.reclaim(FRAMES as usize);
    assert_eq!(mm.mapping(big).unwrap().nrpages(), 0);
    for (i, &pfn) in locked_pfns.iter().enumerate() {
        assert_eq!(
            mm.mapping(locked_file).unwrap().lookup(i as u64),
            Some(pfn),
            "locked page {i} evicted"
        );
    }
    assert!(mm.stats().unmap_refused_locked > 0);
    let mut back = vec![0u8; 4 * 4096];
    let faults = mm.stats().anon_faults;
    user_read(&mut mm, space, anon, &mut back).unwrap();
    assert_eq!(back, vec![7u8; 4 * 4096]);
    assert_eq!(mm.stats().anon_faults, faults, "anonymous pages stayed");
    // After munlock the same pages can go.
    mm.munlock(space, locked, 8 * P).unwrap();
    assert!(
        mm.mapping(locked_file).unwrap().is_mlocked(),
        "munlock keeps the mapping flag"
    );
    mm.reclaim(FRAMES as usize);
    assert_eq!(mm.mapping(locked_file).unwrap().nrpages(), 0);
    assert_eq!(mm.mapping(big).unwrap().nrpages(), 0);
}

#[test]
fn referenced_mapped_pages_survive_aging() {
    let mut mm = test_mm(
        FRAMES,
        &[(1, 4 * P), (2, 40 * P)],
        RecordingHooks::default(),
    );
    let hot = mm.open_file(1).unwrap();
    let cold = mm.open_file(2).unwrap();
    let space = mm.create_space().unwrap();
    let va = mmap_file(&mut mm, space, hot, 4 * P, VmFlags::READ);
    let mut buf = vec![0u8; P as usize];
    user_read(&mut mm, space, va, &mut buf).unwrap();
    for index in 0..40 {
        mm.read_file(cold, index * P, &mut buf).unwrap();
    }
    let hot_pfn = mm.mapping(hot).unwrap().lookup(0).unwrap();
    // The hot page is touched between reclaim passes; the cold ones are not.
    for _ in 0..4 {
        user_read(&mut mm, space, va, &mut buf[..8]).unwrap();
        mm.reclaim(10);
    }
    assert_eq!(mm.mapping(hot).unwrap().lookup(0), Some(hot_pfn));
    assert!(mm.mapping(cold).unwrap().nrpages() <= 40 - 30);
}

#[test]
fn pinned_pages_are_not_freed() {
    let (mut mm, m) = mm_with_file(FRAMES, 1, 4 * P);
    let (pinned, _) = mm.read_cache_page(m, 0).unwrap();
    let mut buf = [0u8; 8];
    mm.read_file(m, P, &mut buf).unwrap();
    let freed = mm.reclaim(10);
    assert_eq!(freed, 1);
    assert_eq!(mm.mapping(m).unwrap().lookup(0), Some(pinned));
    mm.put_page(pinned);
    assert_eq!(mm.reclaim(10), 1);
    assert_eq!(mm.mapping(m).unwrap().nrpages(), 0);
}

/// What each file and each private mapping should contain.
struct Model {
    files: BTreeMap<u32, Vec<u8>>,
    /// Per mapped page of the private areas: its expected bytes (after COW).
    private: BTreeMap<u64, Vec<u8>>,
}

/// Fills the pool with page-cache pages of `mapping`, then takes every free frame
/// and gives back only frames that leave no two contiguous frames free: going up the
/// pool, a taken frame right after a given-back one is kept. Returns the frames kept
/// (the caller puts them).
fn fragment_pool<H: crate::mm::hooks::PageStateHooks>(
    mm: &mut TestMm<H>,
    mapping: MappingId,
    pages: u64,
) -> Vec<Pfn> {
    let mut buf = vec![0u8; P as usize];
    for index in 0..pages {
        mm.read_file(mapping, index * P, &mut buf).unwrap();
    }
    mm.set_watermarks(0, 0);
    let mut taken = Vec::new();
    while mm.frames().free_count() > 0 {
        taken.push(mm.alloc_page().unwrap());
    }
    taken.sort_unstable();
    let mut kept = Vec::new();
    let mut previous_given_back: Option<u64> = None;
    for pfn in taken {
        if previous_given_back.is_some_and(|p| p + 1 == pfn.as_u64()) {
            kept.push(pfn);
            previous_given_back = None;
        } else {
            mm.put_page(pfn);
            previous_given_back = Some(pfn.as_u64());
        }
    }
    kept
}

/// A new space's first mapping needs a segment table and a page table, one frame each,
/// which scattered free frames provide; a mapping 1.5 GiB further in the same region
/// needs a segment table of four contiguous frames, which lumpy reclaim frees.
#[test]
fn segment_tables_take_single_frames_and_grow_by_lumpy_reclaim() {
    let mut mm = test_mm(FRAMES, &[(1, 3 * FRAMES * P)], RecordingHooks::default());
    let mapping = mm.open_file(1).unwrap();
    let kept = fragment_pool(&mut mm, mapping, 2 * FRAMES);
    assert!(mm.frames().free_count() > 4, "{}", mm.frames().free_count());
    assert!(
        !mm.frames().has_free_block(2, 1),
        "the pool is not fragmented"
    );
    let space = mm.create_space().unwrap();
    let va = mmap_file(&mut mm, space, mapping, 4 * P, VmFlags::READ);
    let mut buf = vec![0u8; P as usize];
    user_read(&mut mm, space, page_at(va, 3), &mut buf).unwrap();
    assert_eq!(check_pattern(1, 3 * P, &buf), Ok(()));
    assert_eq!(mm.stats().lumpy_reclaims, 0);
    assert!(
        !mm.frames().has_free_block(2, 1),
        "the pool is not fragmented"
    );
    let far = VirtAddr::new(va.as_u64() + (3 << 29));
    let source = MapSource::File { mapping, offset: 0 };
    assert_eq!(mm.mmap(space, Some(far), P, VmFlags::READ, source), Ok(far));
    user_read(&mut mm, space, far, &mut buf).unwrap();
    assert_eq!(check_pattern(1, 0, &buf), Ok(()));
    assert_eq!(mm.stats().lumpy_reclaims, 1);
    user_read(&mut mm, space, page_at(va, 3), &mut buf).unwrap();
    assert_eq!(check_pattern(1, 3 * P, &buf), Ok(()));
    for pfn in kept {
        mm.put_page(pfn);
    }
    mm.destroy_space(space).unwrap();
    assert!(crate::mm::debug::violations(&mm).is_empty());
}

/// Of two blocks lumpy reclaim could free, each holding one page-cache page, it takes the
/// one whose page no process maps, even when the mapped one comes first.
#[test]
fn lumpy_reclaim_spares_mapped_pages_when_it_can() {
    let mut mm = test_mm(FRAMES, &[(1, 8 * P)], RecordingHooks::default());
    let mapping = mm.open_file(1).unwrap();
    let space = mm.create_space().unwrap();
    let va = mmap_file(&mut mm, space, mapping, 8 * P, VmFlags::READ);
    let mut buf = vec![0u8; P as usize];
    // The space's tables exist before the pool is taken.
    user_read(&mut mm, space, page_at(va, 7), &mut buf).unwrap();
    mm.set_watermarks(0, 0);
    let mut taken = Vec::new();
    while mm.frames().free_count() > 0 {
        taken.push(mm.alloc_page().unwrap());
    }
    let mut whole: Vec<u64> = taken
        .iter()
        .map(|p| p.as_u64())
        .filter(|n| n % 4 == 0 && (1..4).all(|k| taken.contains(&Pfn::new(n + k))))
        .collect();
    whole.sort_unstable();
    // The mapped page goes into the lower block, which a cheapest-first choice would take.
    let (first, second) = (whole[0], whole[1]);
    // The free list is LIFO: the frame given back last is the next one allocated.
    mm.put_page(Pfn::new(first));
    user_read(&mut mm, space, page_at(va, 0), &mut buf).unwrap();
    assert_eq!(
        mm.mapping(mapping).unwrap().lookup(0),
        Some(Pfn::new(first))
    );
    mm.put_page(Pfn::new(second));
    mm.read_file(mapping, 5 * P, &mut buf).unwrap();
    assert_eq!(
        mm.mapping(mapping).unwrap().lookup(5),
        Some(Pfn::new(second))
    );
    for block in [first, second] {
        for n in block + 1..block + 4 {
            mm.put_page(Pfn::new(n));
        }
    }
    taken.retain(|p| ![first, second].contains(&(p.as_u64() & !3)));
    assert!(!mm.frames().has_free_block(4, 4));
    assert!(mm.reclaim_block(4));
    assert_eq!(
        mm.mapping(mapping).unwrap().lookup(0),
        Some(Pfn::new(first)),
        "the mapped page was taken"
    );
    assert_eq!(mm.mapping(mapping).unwrap().lookup(5), None);
    for pfn in taken {
        mm.put_page(pfn);
    }
    mm.destroy_space(space).unwrap();
}

#[test]
fn lumpy_reclaim_never_frees_pinned_frames() {
    let mut mm = test_mm(FRAMES, &[(1, 3 * FRAMES * P)], RecordingHooks::default());
    let mapping = mm.open_file(1).unwrap();
    // The space's one-frame segment table exists before the pool is taken.
    let space = mm.create_space().unwrap();
    let va = mmap_file(&mut mm, space, mapping, P, VmFlags::READ);
    let mut buf = vec![0u8; P as usize];
    user_read(&mut mm, space, va, &mut buf).unwrap();
    mm.set_watermarks(0, 0);
    // Every frame taken and kept except one in each block: nothing lumpy may free.
    let mut taken = Vec::new();
    while mm.frames().free_count() > 0 {
        taken.push(mm.alloc_page().unwrap());
    }
    for &pfn in taken.iter().filter(|p| p.as_u64() % 4 == 1) {
        mm.put_page(pfn);
    }
    assert!(!mm.reclaim_block(4));
    // A mapping 1.5 GiB further needs the segment table to grow to four frames.
    let far = VirtAddr::new(va.as_u64() + (3 << 29));
    let source = MapSource::File { mapping, offset: 0 };
    assert_eq!(mm.mmap(space, Some(far), P, VmFlags::READ, source), Ok(far));
    assert_eq!(
        user_read(&mut mm, space, far, &mut buf),
        Err(MmError::OutOfMemory)
    );
    for pfn in taken.into_iter().filter(|p| p.as_u64() % 4 != 1) {
        mm.put_page(pfn);
    }
    user_read(&mut mm, space, far, &mut buf).unwrap();
    assert_eq!(check_pattern(1, 0, &buf), Ok(()));
}

fn expected_file(id: u32, pages: u64) -> Vec<u8> {
    let mut v = vec![0u8; (pages * P) as usize];
    fill_pattern(id, 0, &mut v);
    v
}

/// A seeded random mix of reads, writes (shared and private), read(), write(),
/// mlock/munlock, sync, truncate and reclaim under memory pressure, checked
/// against a byte model at every read and in full at the end.
#[test]
fn seeded_random_mix_keeps_every_byte() {
    for seed in 0..6u64 {
        run_mix(seed);
    }
}

fn run_mix(seed: u64) {
    const PAGES: u64 = 60;
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
    let mut mm: TestMm = test_mm(
        FRAMES,
        &[(1, PAGES * P), (2, PAGES * P)],
        RecordingHooks::default(),
    );
    let ids: [MappingId; 2] = [mm.open_file(1).unwrap(), mm.open_file(2).unwrap()];
    let space: SpaceId = mm.create_space().unwrap();
    // File 1 shared writable, file 2 private writable, side by side.
    let shared = mmap_file(&mut mm, space, ids[0], PAGES * P, RW | VmFlags::SHARED);
    let private = mmap_file(&mut mm, space, ids[1], PAGES * P, RW);
    let mut model = Model {
        files: BTreeMap::from([(1, expected_file(1, PAGES)), (2, expected_file(2, PAGES))]),
        private: BTreeMap::new(),
    };
    let mut locked: Option<(VirtAddr, u64)> = None;
    for step in 0..600 {
        let page = rng.next_u64() % PAGES;
        let off = rng.next_u64() % (P - 16);
        let byte = (rng.next_u64() & 0xff) as u8;
        let ctx = format_args!("seed {seed} step {step}").to_string();
        match rng.next_u64() % 9 {
            0 => {
                let va = VirtAddr::new(shared.as_u64() + page * P + off);
                user_write(&mut mm, space, va, &[byte; 16]).unwrap();
                let f = model.files.get_mut(&1).unwrap();
                f[(page * P + off) as usize..][..16].fill(byte);
            }
            1 => {
                let va = VirtAddr::new(private.as_u64() + page * P + off);
                user_write(&mut mm, space, va, &[byte; 16]).unwrap();
                let file = &model.files[&2];
                let entry = model
                    .private
                    .entry(page)
                    .or_insert_with(|| file[(page * P) as usize..][..P as usize].to_vec());
                entry[off as usize..][..16].fill(byte);
            }
            2 => {
                let mut got = vec![0u8; 16];
                user_read(
                    &mut mm,
                    space,
                    VirtAddr::new(shared.as_u64() + page * P + off),
                    &mut got,
                )
                .unwrap();
                assert_eq!(
                    got,
                    model.files[&1][(page * P + off) as usize..][..16],
                    "{ctx}"
                );
            }
            3 => {
                let mut got = vec![0u8; 16];
                user_read(
                    &mut mm,
                    space,
                    VirtAddr::new(private.as_u64() + page * P + off),
                    &mut got,
                )
                .unwrap();
                let want = match model.private.get(&page) {
                    Some(p) => p[off as usize..][..16].to_vec(),
                    None => model.files[&2][(page * P + off) as usize..][..16].to_vec(),
                };
                assert_eq!(got, want, "{ctx}");
            }
            4 => {
                // write(2) to file 2: visible to private pages not yet copied.
                mm.write_file(ids[1], page * P + off, &[byte; 16]).unwrap();
                model.files.get_mut(&2).unwrap()[(page * P + off) as usize..][..16].fill(byte);
            }
            5 => {
                if let Some((va, len)) = locked.take() {
                    mm.munlock(space, va, len).unwrap();
                } else {
                    let len = (1 + rng.next_u64() % 8).min(PAGES - page) * P;
                    let va = page_at(shared, page);
                    mm.mlock(space, va, len).unwrap();
                    locked = Some((va, len));
                }
            }
            6 => mm.sync_mapping(ids[(page % 2) as usize]).unwrap(),
            7 => {
                mm.reclaim(1 + (rng.next_u64() % 20) as usize);
            }
            _ => {
                let mut got = vec![0u8; 16];
                let id = 1 + (page % 2) as u32;
                mm.read_file(ids[id as usize - 1], page * P + off, &mut got)
                    .unwrap();
                assert_eq!(
                    got,
                    model.files[&id][(page * P + off) as usize..][..16],
                    "{ctx}"
                );
            }
        }
    }
    // Full verification: both mappings, then the files on the device after sync.
    let mut buf = vec![0u8; P as usize];
    for page in 0..PAGES {
        user_read(&mut mm, space, page_at(shared, page), &mut buf).unwrap();
        assert_eq!(
            buf,
            model.files[&1][(page * P) as usize..][..P as usize],
            "seed {seed} shared page {page}"
        );
        user_read(&mut mm, space, page_at(private, page), &mut buf).unwrap();
        let want = model
            .private
            .get(&page)
            .cloned()
            .unwrap_or_else(|| model.files[&2][(page * P) as usize..][..P as usize].to_vec());
        assert_eq!(buf, want, "seed {seed} private page {page}");
    }
    mm.sync_mapping(ids[0]).unwrap();
    mm.sync_mapping(ids[1]).unwrap();
    for (n, id) in [(0usize, 1u32), (1, 2)] {
        let start = mm.mapping(ids[n]).unwrap().file().start_block as usize * P as usize;
        let disk = &mm.device().inner().storage()[start..start + (PAGES * P) as usize];
        assert!(
            disk == model.files[&id].as_slice(),
            "seed {seed} file {id} on disk"
        );
    }
    assert!(mm.stats().reclaimed > 0, "seed {seed}: no pressure");
}
