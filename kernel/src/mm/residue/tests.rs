use super::*;
use crate::mm::addr::PAGE_SIZE;
use crate::mm::mmap::MapSource;
use crate::mm::testing::{RecordingHooks, mmap_file, page_at, test_mm, user_read, user_write};
use crate::mm::vma::VmFlags;
use alloc::vec;

const P: u64 = PAGE_SIZE;
const FRAMES: u64 = 96;

fn whats(residue: &[Residue]) -> Vec<&'static str> {
    residue.iter().map(|r| r.what).collect()
}

#[test]
fn reading_files_through_the_cache_and_mappings_leaves_nothing() {
    let mut mm = test_mm(FRAMES, &[(1, 3 * FRAMES * P)], RecordingHooks::default());
    let file = mm.open_file(1).unwrap();
    let before = Snapshot::take(&mm);
    // Enough to put the pool under pressure, through read() and through a mapping.
    let mut buf = vec![0u8; P as usize];
    for index in 0..2 * FRAMES {
        mm.read_file(file, index * P, &mut buf).unwrap();
    }
    let space = mm.create_space().unwrap();
    let va = mmap_file(&mut mm, space, file, 2 * FRAMES * P, VmFlags::READ);
    for index in 0..2 * FRAMES {
        user_read(&mut mm, space, page_at(va, index), &mut buf).unwrap();
    }
    mm.destroy_space(space).unwrap();
    let after = Snapshot::take(&mm);
    assert_eq!(before.residue(&after), []);
    assert!(mm.mapping(file).unwrap().nrpages() > 0, "the cache stays");
}

#[test]
fn a_space_left_behind_is_named_with_its_tables_pages_and_vmas() {
    let mut mm = test_mm(FRAMES, &[(1, 8 * P)], RecordingHooks::default());
    let before = Snapshot::take(&mm);
    let space = mm.create_space().unwrap();
    let va = mm
        .mmap(
            space,
            None,
            2 * P,
            VmFlags::READ | VmFlags::WRITE,
            MapSource::Anon,
        )
        .unwrap();
    user_write(&mut mm, space, va, &[1; 8]).unwrap();
    let residue = before.residue(&Snapshot::take(&mm));
    assert_eq!(
        whats(&residue),
        [
            "address spaces",
            "DAT table frames",
            "anonymous pages",
            "mapped pages",
            "frames neither free nor reclaimable"
        ]
    );
    assert_eq!(
        residue[0].to_string(),
        format!("left 1 address spaces: space {} with 1 VMAs", space.get())
    );
    // Region-third table, segment table (its first frame), page table.
    assert_eq!(residue[1].count, 3);
    assert_eq!(residue[4].count, 3 + 1);
    mm.destroy_space(space).unwrap();
    assert_eq!(before.residue(&Snapshot::take(&mm)), []);
}

#[test]
fn pins_and_unfreed_frames_are_named_by_frame() {
    let mut mm = test_mm(FRAMES, &[(1, 8 * P)], RecordingHooks::default());
    let file = mm.open_file(1).unwrap();
    let mut buf = vec![0u8; P as usize];
    mm.read_file(file, 0, &mut buf).unwrap();
    let before = Snapshot::take(&mm);
    let cached = mm.find_get_page(file, 0).unwrap();
    let frame = mm.alloc_page().unwrap();
    let residue = before.residue(&Snapshot::take(&mm));
    assert_eq!(
        whats(&residue),
        ["pinned pages", "frames neither free nor reclaimable"]
    );
    let mut pins = [cached, frame];
    pins.sort_unstable();
    assert_eq!(
        residue[0].to_string(),
        format!(
            "left 2 pinned pages: frame {:#x} +1 references, frame {:#x} +1 references",
            pins[0].as_u64(),
            pins[1].as_u64()
        )
    );
    assert_eq!(residue[1].count, 2);
    mm.put_page(cached);
    mm.put_page(frame);
    assert_eq!(before.residue(&Snapshot::take(&mm)), []);
}

#[test]
fn unwritten_data_and_stuck_flags_are_residue() {
    let mut mm = test_mm(FRAMES, &[(1, 8 * P)], RecordingHooks::default());
    let file = mm.open_file(1).unwrap();
    let before = Snapshot::take(&mm);
    mm.write_file(file, 3 * P, &[7; 16]).unwrap();
    let pfn = mm.mapping(file).unwrap().lookup(3).unwrap();
    let residue = before.residue(&Snapshot::take(&mm));
    assert_eq!(
        whats(&residue),
        [
            "dirty page-cache pages (not written back)",
            "frames neither free nor reclaimable"
        ]
    );
    mm.sync_mapping(file).unwrap();
    assert_eq!(before.residue(&Snapshot::take(&mm)), []);
    mm.lock_page(pfn);
    mm.lru_del(pfn);
    let residue = before.residue(&Snapshot::take(&mm));
    assert_eq!(
        whats(&residue),
        [
            "pages locked, under writeback or in a state change",
            "page-cache pages off the LRU lists",
            "frames neither free nor reclaimable"
        ]
    );
    assert_eq!(
        residue[0].to_string(),
        format!(
            "left 1 pages locked, under writeback or in a state change: frame {:#x}",
            pfn.as_u64()
        )
    );
}

#[test]
fn watermarks_left_lowered_are_residue() {
    let mut mm = test_mm(FRAMES, &[(1, 8 * P)], RecordingHooks::default());
    let before = Snapshot::take(&mm);
    mm.set_watermarks(0, 0);
    let residue = before.residue(&Snapshot::take(&mm));
    assert_eq!(
        residue[0].to_string(),
        "left 1 changed reclaim watermarks: low/high 0/0, were 8/16"
    );
    mm.set_watermarks(8, 16);
    assert_eq!(before.residue(&Snapshot::take(&mm)), []);
}

#[test]
fn long_lists_name_four_and_count_the_rest() {
    let residue = Residue {
        count: 6,
        what: "anonymous pages",
        items: (0..6).map(|n| format!("frame {n:#x}")).collect(),
    };
    assert_eq!(
        residue.to_string(),
        "left 6 anonymous pages: frame 0x0, frame 0x1, frame 0x2, frame 0x3 and 2 more"
    );
}

#[test]
fn what_existed_before_is_not_blamed() {
    let mut mm = test_mm(FRAMES, &[(1, 8 * P)], RecordingHooks::default());
    let space = mm.create_space().unwrap();
    let held = mm.alloc_page().unwrap();
    let before = Snapshot::take(&mm);
    let va = mm
        .mmap(
            space,
            None,
            P,
            VmFlags::READ | VmFlags::WRITE,
            MapSource::Anon,
        )
        .unwrap();
    let residue = before.residue(&Snapshot::take(&mm));
    assert_eq!(
        residue[0].to_string(),
        format!(
            "left 1 VMAs in address spaces that existed before: space {}: 0 -> 1",
            space.get()
        )
    );
    mm.munmap(space, va, P).unwrap();
    mm.put_page(held);
    assert_eq!(before.residue(&Snapshot::take(&mm)), []);
}
