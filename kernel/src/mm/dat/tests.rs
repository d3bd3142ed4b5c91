use super::*;
use crate::mm::fake::FakeMachine;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use proptest::prelude::*;

/// Hands out frames from a counter (from frame 4 up, as the lowcore is never a table)
/// and tracks which tables are live and which were retired.
struct CountingTables {
    next: u64,
    live: BTreeMap<u64, usize>,
    retired: Vec<(u64, usize)>,
}

impl Default for CountingTables {
    fn default() -> Self {
        Self {
            next: 4,
            live: BTreeMap::new(),
            retired: Vec::new(),
        }
    }
}

impl TableAlloc for CountingTables {
    fn alloc_table(&mut self, count: usize) -> Option<Pfn> {
        let first = self.next;
        if first + count as u64 > 200 {
            return None;
        }
        self.next = first + count as u64;
        self.live.insert(first, count);
        Some(Pfn::new(first))
    }

    fn free_table(&mut self, first: Pfn, count: usize) {
        assert_eq!(
            self.live.remove(&first.as_u64()),
            Some(count),
            "freeing unknown table"
        );
    }

    fn retire_table(&mut self, first: Pfn, count: usize) {
        self.free_table(first, count);
        self.retired.push((first.as_u64(), count));
    }
}

fn machine() -> (FakeMachine, CountingTables) {
    // Frames 0..200 hold tables; data frames are named but never touched.
    (FakeMachine::new(256), CountingTables::default())
}

const USER: u64 = 0x80_0000_0000;

#[test]
fn map_walk_protect_unmap() {
    let (mut mem, mut tables) = machine();
    let mut space = DatSpace::new(&mut mem, &mut tables).unwrap();
    let va = VirtAddr::new(USER + 0x12_3000);
    assert_eq!(space.walk(&mem, va), Walk::NoSegmentTable);
    let slot = space
        .map(&mut mem, &mut tables, va, Pfn::new(0x999), false)
        .unwrap();
    let (addr, pte) = space.walk(&mem, va).valid_pte().unwrap();
    assert_eq!(addr, slot);
    assert_eq!(pte.pfn(), Pfn::new(0x999));
    assert!(pte.is_protected());
    // Its neighbour in the same page table and in the next segment.
    assert!(
        matches!(space.walk(&mem, VirtAddr::new(va.as_u64() + 0x1000)), Walk::Pte { pte, .. } if !pte.is_valid())
    );
    assert_eq!(
        space.walk(&mem, VirtAddr::new(va.as_u64() + (1 << 20))),
        Walk::NoPageTable
    );
    assert_eq!(
        space.map(&mut mem, &mut tables, va, Pfn::new(1), true),
        Err(MmError::AlreadyMapped)
    );
    // Making it writable invalidates the old TLB entry first.
    assert!(space.protect(&mut mem, va, true).unwrap().is_protected());
    assert_eq!(mem.invalidated, [(slot, va)]);
    assert!(!space.walk(&mem, va).valid_pte().unwrap().1.is_protected());
    // No change, no IPTE.
    space.protect(&mut mem, va, true);
    assert_eq!(mem.invalidated.len(), 1);
    assert_eq!(space.unmap(&mut mem, va).unwrap().pfn(), Pfn::new(0x999));
    assert_eq!(mem.invalidated.len(), 2);
    assert!(space.walk(&mem, va).valid_pte().is_none());
    assert_eq!(space.unmap(&mut mem, va), None);
    assert_eq!(mem.invalidated.len(), 2);
}

#[test]
fn tables_in_storage_have_the_architected_layout() {
    let (mut mem, mut tables) = machine();
    let mut space = DatSpace::new(&mut mem, &mut tables).unwrap();
    let va = VirtAddr::new((3 << 31) | (5 << 20) | (7 << 12));
    space
        .map(&mut mem, &mut tables, va, Pfn::new(0x4242), true)
        .unwrap();
    // Hand-walk the way the CPU does, from the ASCE.
    let asce = space.asce();
    assert_eq!(asce.bits() & 0xfff, 0x004);
    let r3 = mem.read_u64(PhysAddr::new(asce.origin().as_u64() + 3 * 8));
    assert_eq!(
        r3 & 0xfff,
        0x004,
        "valid R3 entry, TT=01, TF=TL=0: the first frame"
    );
    let seg = mem.read_u64(PhysAddr::new((r3 & !0xfff) + 5 * 8));
    assert_eq!(seg & 0x7ff, 0, "valid segment entry, TT=00, FC=0");
    let pte = mem.read_u64(PhysAddr::new((seg & !0x7ff) + 7 * 8));
    assert_eq!(pte, 0x424_2000);
    // Unused entries are invalid with the right type bits.
    assert_eq!(mem.read_u64(PhysAddr::new(asce.origin().as_u64())), 0x24);
    assert_eq!(mem.read_u64(PhysAddr::new(r3 & !0xfff)), 0x20);
    assert_eq!(mem.read_u64(PhysAddr::new(seg & !0x7ff)), 0x400);
    // A user space's segment table is the one frame the mapping needs.
    assert!(tables.live.values().all(|&n| n == 1));
    assert_eq!(tables.live.len(), 3);
}

/// Mappings in the first and then the last 512 MiB of a region: the segment table
/// starts as one frame (TF = TL = 3 for a mapping in the last) and grows to the four
/// frames both need, entries kept, the TLB purged before the old frame is retired
/// (a walker without the lock may still read it).
#[test]
fn a_user_segment_table_grows_a_frame_range_at_a_time() {
    let (mut mem, mut tables) = machine();
    let mut space = DatSpace::new(&mut mem, &mut tables).unwrap();
    let high = VirtAddr::new(USER + (3 << 29) + (7 << 20));
    let low = VirtAddr::new(USER + (2 << 20));
    space
        .map(&mut mem, &mut tables, high, Pfn::new(0x300), true)
        .unwrap();
    let r3_addr = PhysAddr::new(space.asce().origin().as_u64() + 8 * region3_index(high) as u64);
    let r3 = Region3Entry::from_bits(mem.read_u64(r3_addr));
    assert_eq!(r3.segment_frames(), 3..=3);
    let (first, count) = r3.segment_table_frames();
    assert_eq!((tables.live.get(&first.as_u64()), count), (Some(&1), 1));
    // Below TF: a segment-translation exception, no page table.
    assert_eq!(space.walk(&mem, low), Walk::NoPageTable);
    assert_eq!(mem.flushes, 0);
    space
        .map(&mut mem, &mut tables, low, Pfn::new(0x200), true)
        .unwrap();
    let grown = Region3Entry::from_bits(mem.read_u64(r3_addr));
    assert_eq!(grown.segment_frames(), 0..=3);
    assert_eq!(grown.segment_table_frames().1, SEGMENT_TABLE_FRAMES);
    assert_eq!(tables.retired, [(first.as_u64(), 1)]);
    assert_eq!(mem.flushes, 1, "the old table retired only after a purge");
    for (va, pfn) in [(high, 0x300), (low, 0x200)] {
        assert_eq!(
            space.walk(&mem, va).valid_pte().unwrap().1.pfn(),
            Pfn::new(pfn)
        );
    }
    // A mapping inside the range grows nothing.
    let middle = VirtAddr::new(USER + (1 << 29));
    space
        .map(&mut mem, &mut tables, middle, Pfn::new(0x100), true)
        .unwrap();
    assert_eq!(Region3Entry::from_bits(mem.read_u64(r3_addr)), grown);
    space.destroy(&mut mem, &mut tables, VirtAddr::new(0)..VirtAddr::new(0));
    assert!(tables.live.is_empty());
}

/// A kernel space's segment tables are whole from the first mapping: other spaces
/// hold copies of its region-third entries, which must never move.
#[test]
fn a_kernel_segment_table_is_whole_from_the_start() {
    let (mut mem, mut tables) = machine();
    let mut kernel = DatSpace::new_kernel(&mut mem, &mut tables).unwrap();
    kernel
        .identity_map(
            &mut mem,
            &mut tables,
            PhysAddr::new(0)..PhysAddr::new(0x1000),
            true,
        )
        .unwrap();
    let r3 = Region3Entry::from_bits(mem.read_u64(kernel.asce().origin()));
    assert_eq!(r3.segment_frames(), 0..=3);
    assert_eq!(
        tables
            .live
            .values()
            .filter(|&&n| n == SEGMENT_TABLE_FRAMES)
            .count(),
        1
    );
    // Far up in the same region: no new segment table.
    kernel
        .map(
            &mut mem,
            &mut tables,
            VirtAddr::new(3 << 29),
            Pfn::new(0x7),
            true,
        )
        .unwrap();
    assert_eq!(
        Region3Entry::from_bits(mem.read_u64(kernel.asce().origin())),
        r3
    );
    assert!(tables.retired.is_empty());
}

#[test]
fn bad_addresses_are_errors() {
    let (mut mem, mut tables) = machine();
    let mut space = DatSpace::new(&mut mem, &mut tables).unwrap();
    assert_eq!(
        space.map(
            &mut mem,
            &mut tables,
            VirtAddr::new(VA_LIMIT),
            Pfn::new(1),
            true
        ),
        Err(MmError::OutOfRange)
    );
    assert_eq!(
        space.map(
            &mut mem,
            &mut tables,
            VirtAddr::new(0x1008),
            Pfn::new(1),
            true
        ),
        Err(MmError::Unaligned)
    );
    assert_eq!(space.walk(&mem, VirtAddr::new(u64::MAX)), Walk::OutOfRange);
    assert_eq!(
        space.identity_map(
            &mut mem,
            &mut tables,
            PhysAddr::new(0)..PhysAddr::new(0x800),
            true
        ),
        Err(MmError::Unaligned)
    );
    let va = VirtAddr::new(USER);
    let mut starved = CountingTables {
        next: 199,
        ..Default::default()
    };
    assert_eq!(
        space.map(&mut mem, &mut starved, va, Pfn::new(1), true),
        Err(MmError::OutOfMemory)
    );
}

#[test]
fn kernel_part_is_shared_and_survives_destroy() {
    let (mut mem, mut tables) = machine();
    let mut kernel = DatSpace::new_kernel(&mut mem, &mut tables).unwrap();
    kernel
        .identity_map(
            &mut mem,
            &mut tables,
            PhysAddr::new(0)..PhysAddr::new(0x30_0000),
            true,
        )
        .unwrap();
    let kernel_tables = tables.live.clone();
    let shared = VirtAddr::new(0)..VirtAddr::new(REGION3_SIZE);
    let mut user = DatSpace::new(&mut mem, &mut tables).unwrap();
    user.share_from(&mut mem, &kernel, shared.clone()).unwrap();
    user.map(
        &mut mem,
        &mut tables,
        VirtAddr::new(USER),
        Pfn::new(0x50),
        true,
    )
    .unwrap();
    let user_tables: Vec<u64> = tables
        .live
        .keys()
        .filter(|k| !kernel_tables.contains_key(k))
        .copied()
        .collect();
    assert_eq!(user_tables.len(), 3, "region-third, segment and page table");
    for pa in [0u64, 0x1000, 0x2f_f000] {
        let (_, pte) = user.walk(&mem, VirtAddr::new(pa)).valid_pte().unwrap();
        assert_eq!(pte.pfn(), PhysAddr::new(pa).pfn());
    }
    assert!(
        user.walk(&mem, VirtAddr::new(0x30_0000))
            .valid_pte()
            .is_none()
    );
    // The kernel does not see the user mapping.
    assert_eq!(kernel.walk(&mem, VirtAddr::new(USER)), Walk::NoSegmentTable);
    // A later kernel mapping in a shared region shows up in the user space too.
    kernel
        .map(
            &mut mem,
            &mut tables,
            VirtAddr::new(0x40_0000),
            Pfn::new(0x400),
            true,
        )
        .unwrap();
    assert!(
        user.walk(&mem, VirtAddr::new(0x40_0000))
            .valid_pte()
            .is_some()
    );
    let mut expected = tables.live.clone();
    expected.retain(|k, _| !user_tables.contains(k));
    user.destroy(&mut mem, &mut tables, shared);
    assert_eq!(tables.live, expected, "exactly the user tables freed");
    assert_eq!(expected.len(), kernel_tables.len() + 1);
    assert_eq!(mem.flushes, 1);
    assert!(
        kernel
            .walk(&mem, VirtAddr::new(0x2f_f000))
            .valid_pte()
            .is_some()
    );
    assert_eq!(
        user_share_misaligned(&mut mem, &mut tables, &kernel),
        Err(MmError::Unaligned)
    );
}

fn user_share_misaligned(
    mem: &mut FakeMachine,
    tables: &mut CountingTables,
    kernel: &DatSpace,
) -> Result<(), MmError> {
    let mut user = DatSpace::new(mem, tables)?;
    user.share_from(mem, kernel, VirtAddr::new(0)..VirtAddr::new(0x1000))
}

proptest! {
    #[test]
    fn walk_agrees_with_a_map_model(ops in proptest::collection::vec((0u8..3, 0u64..64, any::<bool>()), 1..100)) {
        let (mut mem, mut tables) = machine();
        let mut space = DatSpace::new(&mut mem, &mut tables).unwrap();
        let mut model: BTreeMap<u64, (u64, bool)> = BTreeMap::new();
        // Spread pages over several page tables, frames of segment tables (which
        // grow) and regions.
        let va_of = |n: u64| VirtAddr::new(USER + (n % 2) * REGION3_SIZE + (n / 2 % 4) * (1 << 29) + (n / 8 % 2) * (1 << 20) + (n / 16) * 0x1000);
        for (op, n, w) in ops {
            let va = va_of(n);
            match op {
                0 => {
                    let r = space.map(&mut mem, &mut tables, va, Pfn::new(1000 + n), w);
                    match model.entry(n) {
                        alloc::collections::btree_map::Entry::Occupied(_) => {
                            prop_assert_eq!(r, Err(MmError::AlreadyMapped));
                        }
                        alloc::collections::btree_map::Entry::Vacant(slot) => {
                            prop_assert!(r.is_ok());
                            slot.insert((1000 + n, w));
                        }
                    }
                }
                1 => {
                    let old = space.unmap(&mut mem, va);
                    prop_assert_eq!(old.map(|p| p.pfn().as_u64()), model.remove(&n).map(|(p, _)| p));
                }
                _ => {
                    let old = space.protect(&mut mem, va, w);
                    prop_assert_eq!(old.is_some(), model.contains_key(&n));
                    if let Some(e) = model.get_mut(&n) { e.1 = w; }
                }
            }
            for m in 0..64 {
                let got = space.walk(&mem, va_of(m)).valid_pte().map(|(_, p)| (p.pfn().as_u64(), !p.is_protected()));
                prop_assert_eq!(got, model.get(&m).copied());
            }
        }
        let before: Vec<u64> = tables.live.keys().copied().collect();
        prop_assert!(!before.is_empty());
        space.destroy(&mut mem, &mut tables, VirtAddr::new(0)..VirtAddr::new(0));
        prop_assert!(tables.live.is_empty());
    }
}

#[test]
fn identity_map_across_page_tables_maps_every_page_once() {
    let (mut mem, mut tables) = machine();
    let mut space = DatSpace::new(&mut mem, &mut tables).unwrap();
    // From 3 pages below a 1 MiB boundary to 5 pages above the next one: three page
    // tables, partly filled at both ends.
    let start = (1 << 20) - 3 * PAGE_SIZE;
    let end = (2 << 20) + 5 * PAGE_SIZE;
    space
        .identity_map_with(
            &mut mem,
            &mut tables,
            PhysAddr::new(start)..PhysAddr::new(end),
            false,
            true,
        )
        .unwrap();
    let mut va = start - PAGE_SIZE;
    while va <= end {
        let walk = space.walk(&mem, VirtAddr::new(va)).valid_pte();
        if (start..end).contains(&va) {
            let (_, pte) = walk.expect("mapped");
            assert_eq!(pte.pfn().as_u64(), va / PAGE_SIZE);
            assert!(pte.is_protected() && pte.is_no_exec());
        } else {
            assert!(walk.is_none(), "{va:#x} mapped outside the range");
        }
        va += PAGE_SIZE;
    }
    assert_eq!(
        space.identity_map(
            &mut mem,
            &mut tables,
            PhysAddr::new(start)..PhysAddr::new(start + PAGE_SIZE),
            true
        ),
        Err(MmError::AlreadyMapped)
    );
}
