use super::*;
use crate::mm::fake::FakeMachine;
use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use proptest::prelude::*;

/// Hands out aligned frames from a counter and tracks which tables are live.
#[derive(Default)]
struct CountingTables {
    next: u64,
    live: BTreeMap<u64, usize>,
}

impl TableAlloc for CountingTables {
    fn alloc_table(&mut self, count: usize) -> Option<Pfn> {
        let first = self.next.next_multiple_of(count as u64);
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
    assert_eq!(r3 & 0xfff, 0x007, "valid R3 entry, TT=01, TL=3");
    let seg = mem.read_u64(PhysAddr::new((r3 & !0xfff) + 5 * 8));
    assert_eq!(seg & 0x7ff, 0, "valid segment entry, TT=00, FC=0");
    let pte = mem.read_u64(PhysAddr::new((seg & !0x7ff) + 7 * 8));
    assert_eq!(pte, 0x424_2000);
    // Unused entries are invalid with the right type bits.
    assert_eq!(mem.read_u64(PhysAddr::new(asce.origin().as_u64())), 0x24);
    assert_eq!(mem.read_u64(PhysAddr::new(r3 & !0xfff)), 0x20);
    assert_eq!(mem.read_u64(PhysAddr::new(seg & !0x7ff)), 0x400);
    // Segment tables are four aligned frames.
    assert!(tables.live.values().any(|&n| n == SEGMENT_TABLE_FRAMES));
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
    let mut kernel = DatSpace::new(&mut mem, &mut tables).unwrap();
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
        // Spread pages over several page tables, segment tables and regions.
        let va_of = |n: u64| VirtAddr::new(USER + (n % 4) * REGION3_SIZE + (n / 4 % 4) * (1 << 20) + (n / 16) * 0x1000);
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
