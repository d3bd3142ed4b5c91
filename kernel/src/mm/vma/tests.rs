use super::*;
use alloc::vec;
use proptest::prelude::*;
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};

const BASE: u64 = 0x80_0000_0000;
const PAGES: u64 = 48;

fn va(page: u64) -> VirtAddr {
    VirtAddr::new(BASE + page * PAGE_SIZE)
}

fn tree() -> VmaTree {
    VmaTree::new(va(0)..va(PAGES))
}

fn file(m: u32, pgoff: u64) -> Backing {
    Backing::File {
        mapping: MappingId::new(m).unwrap(),
        pgoff,
    }
}

const RW: VmFlags = VmFlags::READ.union(VmFlags::WRITE);

fn spans(t: &VmaTree) -> Vec<(u64, u64, VmFlags)> {
    t.iter()
        .map(|v| {
            (
                (v.start().as_u64() - BASE) / PAGE_SIZE,
                (v.end().as_u64() - BASE) / PAGE_SIZE,
                v.flags(),
            )
        })
        .collect()
}

#[test]
fn bad_arguments_are_errors_not_panics() {
    let mut t = tree();
    assert_eq!(
        t.map_fixed(va(0), 0, RW, Backing::Anon),
        Err(MmError::ZeroLength)
    );
    assert_eq!(
        t.map_fixed(VirtAddr::new(BASE + 1), PAGE_SIZE, RW, Backing::Anon),
        Err(MmError::Unaligned)
    );
    assert_eq!(
        t.map_fixed(va(0), 100, RW, Backing::Anon),
        Err(MmError::Unaligned)
    );
    assert_eq!(
        t.unmap(VirtAddr::new(!0xfff), 2 * PAGE_SIZE),
        Err(MmError::Overflow)
    );
    assert_eq!(
        t.map_fixed(va(PAGES - 1), 2 * PAGE_SIZE, RW, Backing::Anon),
        Err(MmError::OutOfRange)
    );
    assert_eq!(
        t.map_fixed(VirtAddr::new(0), PAGE_SIZE, RW, Backing::Anon),
        Err(MmError::OutOfRange)
    );
    assert_eq!(
        t.map_fixed(va(0), PAGE_SIZE, RW | VmFlags::SHARED, Backing::Anon),
        Err(MmError::PermissionDenied)
    );
    assert_eq!(
        t.map_fixed(va(0), PAGE_SIZE, RW, file(1, u64::MAX)),
        Err(MmError::Overflow)
    );
    assert_eq!(
        t.protect(va(0), PAGE_SIZE, VmFlags::LOCKED),
        Err(MmError::PermissionDenied)
    );
    assert_eq!(
        t.map_anywhere(PAGE_SIZE * (PAGES + 1), RW, Backing::Anon),
        Err(MmError::NoSpace)
    );
    assert!(t.is_empty());
}

#[test]
fn split_and_merge_on_mprotect_and_mlock() {
    let mut t = tree();
    t.map_fixed(va(4), 8 * PAGE_SIZE, RW, file(1, 10)).unwrap();
    let changed = t.protect(va(6), 2 * PAGE_SIZE, VmFlags::READ).unwrap();
    assert_eq!(changed.len(), 1);
    assert_eq!(changed[0].file_index(va(6)), Some(12));
    assert_eq!(spans(&t), [(4, 6, RW), (6, 8, VmFlags::READ), (8, 12, RW)]);
    assert_eq!(t.find(va(9)).unwrap().file_index(va(9)), Some(15));
    // Restoring the protection merges back into one VMA with the original offset.
    t.protect(va(6), 2 * PAGE_SIZE, RW).unwrap();
    assert_eq!(spans(&t), [(4, 12, RW)]);
    assert_eq!(t.find(va(4)).unwrap().backing(), file(1, 10));
    // mlock over a hole fails and changes nothing.
    assert_eq!(
        t.set_locked(va(2), 4 * PAGE_SIZE, true),
        Err(MmError::NotMapped)
    );
    assert_eq!(spans(&t), [(4, 12, RW)]);
    t.set_locked(va(5), PAGE_SIZE, true).unwrap();
    assert_eq!(t.len(), 3);
    assert!(t.find(va(5)).unwrap().is_locked());
    t.set_locked(va(4), 8 * PAGE_SIZE, false).unwrap();
    assert_eq!(spans(&t), [(4, 12, RW)]);
}

#[test]
fn unmap_punches_holes_and_keeps_offsets() {
    let mut t = tree();
    t.map_fixed(va(0), 10 * PAGE_SIZE, RW, file(2, 0)).unwrap();
    let removed = t.unmap(va(3), 2 * PAGE_SIZE).unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!((removed[0].start(), removed[0].end()), (va(3), va(5)));
    assert_eq!(removed[0].file_index(va(3)), Some(3));
    assert_eq!(t.find(va(7)).unwrap().file_index(va(7)), Some(7));
    assert!(t.find(va(4)).is_none());
    // Remapping the same file pages closes the hole and merges.
    let replaced = t.map_fixed(va(3), 2 * PAGE_SIZE, RW, file(2, 3)).unwrap();
    assert!(replaced.is_empty());
    assert_eq!(t.len(), 1);
    // A different offset does not merge; unmapping a hole is fine.
    t.map_fixed(va(20), PAGE_SIZE, RW, file(2, 99)).unwrap();
    t.map_fixed(va(21), PAGE_SIZE, RW, file(2, 0)).unwrap();
    assert_eq!(t.len(), 3);
    assert_eq!(t.unmap(va(30), PAGE_SIZE).unwrap(), vec![]);
    let vmas: Vec<_> = t.mapping_vmas(MappingId::new(2).unwrap()).collect();
    assert_eq!(vmas.len(), 3);
    assert_eq!(
        vmas[2].address_of(MappingId::new(2).unwrap(), 0),
        Some(va(21))
    );
    assert_eq!(vmas[0].address_of(MappingId::new(2).unwrap(), 10), None);
    assert_eq!(vmas[0].address_of(MappingId::new(3).unwrap(), 1), None);
    assert_eq!(t.overlapping(va(9)..va(21)).count(), 2);
}

#[test]
fn map_anywhere_takes_the_lowest_hole_that_fits() {
    let mut t = tree();
    t.map_fixed(va(0), 2 * PAGE_SIZE, RW, Backing::Anon)
        .unwrap();
    t.map_fixed(va(3), PAGE_SIZE, VmFlags::READ, Backing::Anon)
        .unwrap();
    t.map_fixed(va(8), PAGE_SIZE, VmFlags::READ, Backing::Anon)
        .unwrap();
    assert_eq!(t.map_anywhere(2 * PAGE_SIZE, RW, file(1, 0)), Ok(va(4)));
    assert_eq!(t.map_anywhere(PAGE_SIZE, RW, file(1, 0)), Ok(va(2)));
    assert_eq!(t.map_anywhere(3 * PAGE_SIZE, RW, file(1, 0)), Ok(va(9)));
    t.check_invariants().unwrap();
}

/// What the reference model stores per page.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct ModelPage {
    flags: VmFlags,
    /// `None` = anonymous, else (mapping, file page index).
    file: Option<(u32, u64)>,
}

#[derive(Clone, Debug)]
enum Op {
    MapFixed {
        page: u64,
        len: u64,
        flags: VmFlags,
        file: Option<(u32, u64)>,
    },
    MapAnywhere {
        len: u64,
        flags: VmFlags,
    },
    Unmap {
        page: u64,
        len: u64,
    },
    Protect {
        page: u64,
        len: u64,
        write: bool,
    },
    Lock {
        page: u64,
        len: u64,
        lock: bool,
    },
    Raw {
        addr: u64,
        len: u64,
    },
}

fn page_arg() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 0..PAGES, 1 => PAGES..PAGES + 4]
}

fn len_arg() -> impl Strategy<Value = u64> {
    prop_oneof![8 => 1u64..12, 1 => Just(0u64)]
}

fn op() -> impl Strategy<Value = Op> {
    let flags = (any::<bool>(), any::<bool>()).prop_map(|(w, s)| {
        let mut f = VmFlags::READ;
        if w {
            f = f | VmFlags::WRITE;
        }
        if s {
            f = f | VmFlags::SHARED;
        }
        f
    });
    prop_oneof![
        (
            page_arg(),
            len_arg(),
            flags.clone(),
            proptest::option::of((1u32..3, 0u64..20))
        )
            .prop_map(|(page, len, mut flags, file)| {
                if file.is_none() {
                    flags = flags.without(VmFlags::SHARED);
                }
                Op::MapFixed {
                    page,
                    len,
                    flags,
                    file,
                }
            }),
        (len_arg(), flags).prop_map(|(len, flags)| Op::MapAnywhere {
            len,
            flags: flags.without(VmFlags::SHARED)
        }),
        (page_arg(), len_arg()).prop_map(|(page, len)| Op::Unmap { page, len }),
        (page_arg(), len_arg(), any::<bool>()).prop_map(|(page, len, write)| Op::Protect {
            page,
            len,
            write
        }),
        (page_arg(), len_arg(), any::<bool>()).prop_map(|(page, len, lock)| Op::Lock {
            page,
            len,
            lock
        }),
        (any::<u64>(), any::<u64>()).prop_map(|(addr, len)| Op::Raw { addr, len }),
    ]
}

/// Applies `op` to the model; `Err` is the error the tree must return.
fn model_apply(model: &mut [Option<ModelPage>], op: &Op) -> Result<(), MmError> {
    let range = |page: u64, len: u64| -> Result<core::ops::Range<usize>, MmError> {
        if len == 0 {
            return Err(MmError::ZeroLength);
        }
        if page + len > PAGES {
            return Err(MmError::OutOfRange);
        }
        Ok(page as usize..(page + len) as usize)
    };
    match *op {
        Op::MapFixed {
            page,
            len,
            flags,
            file,
        } => {
            let r = range(page, len)?;
            for (i, slot) in model[r.clone()].iter_mut().enumerate() {
                *slot = Some(ModelPage {
                    flags,
                    file: file.map(|(m, off)| (m, off + i as u64)),
                });
            }
            Ok(())
        }
        Op::MapAnywhere { len, flags } => {
            if len == 0 {
                return Err(MmError::ZeroLength);
            }
            let start = (0..=PAGES.saturating_sub(len))
                .find(|&s| {
                    model[s as usize..(s + len) as usize]
                        .iter()
                        .all(Option::is_none)
                })
                .filter(|_| len <= PAGES)
                .ok_or(MmError::NoSpace)?;
            for slot in &mut model[start as usize..(start + len) as usize] {
                *slot = Some(ModelPage { flags, file: None });
            }
            Ok(())
        }
        Op::Unmap { page, len } => {
            let r = range(page, len)?;
            model[r].fill(None);
            Ok(())
        }
        Op::Protect { page, len, write }
        | Op::Lock {
            page,
            len,
            lock: write,
        } => {
            let r = range(page, len)?;
            if model[r.clone()].iter().any(Option::is_none) {
                return Err(MmError::NotMapped);
            }
            for p in model[r].iter_mut().flatten() {
                p.flags = match op {
                    Op::Protect { .. } if write => p.flags | VmFlags::WRITE,
                    Op::Protect { .. } => p.flags.without(VmFlags::WRITE),
                    _ if write => p.flags | VmFlags::LOCKED,
                    _ => p.flags.without(VmFlags::LOCKED),
                };
            }
            Ok(())
        }
        Op::Raw { addr, len } => {
            if len == 0 {
                Err(MmError::ZeroLength)
            } else if addr % PAGE_SIZE != 0 || len % PAGE_SIZE != 0 {
                Err(MmError::Unaligned)
            } else if addr.checked_add(len).is_none() {
                Err(MmError::Overflow)
            } else if addr < BASE || addr + len > BASE + PAGES * PAGE_SIZE {
                Err(MmError::OutOfRange)
            } else {
                let r = (addr - BASE) / PAGE_SIZE..(addr - BASE + len) / PAGE_SIZE;
                model[r.start as usize..r.end as usize].fill(None);
                Ok(())
            }
        }
    }
}

fn tree_apply(t: &mut VmaTree, op: &Op) -> Result<(), MmError> {
    let file_backing = |f: Option<(u32, u64)>| f.map_or(Backing::Anon, |(m, off)| file(m, off));
    match *op {
        Op::MapFixed {
            page,
            len,
            flags,
            file,
        } => t
            .map_fixed(va(page), len * PAGE_SIZE, flags, file_backing(file))
            .map(drop),
        Op::MapAnywhere { len, flags } => t
            .map_anywhere(len * PAGE_SIZE, flags, Backing::Anon)
            .map(drop),
        Op::Unmap { page, len } => t.unmap(va(page), len * PAGE_SIZE).map(drop),
        Op::Protect { page, len, write } => {
            let prot = if write { RW } else { VmFlags::READ };
            t.protect(va(page), len * PAGE_SIZE, prot).map(drop)
        }
        Op::Lock { page, len, lock } => t.set_locked(va(page), len * PAGE_SIZE, lock).map(drop),
        Op::Raw { addr, len } => t.unmap(VirtAddr::new(addr), len).map(drop),
    }
}

fn compare(t: &VmaTree, model: &[Option<ModelPage>]) -> Result<(), TestCaseError> {
    t.check_invariants().map_err(TestCaseError::fail)?;
    for (i, want) in model.iter().enumerate() {
        let addr = va(i as u64);
        let got = t.find(addr).map(|v| ModelPage {
            flags: v.flags(),
            file: v.mapping().map(|m| (m.get(), v.file_index(addr).unwrap())),
        });
        prop_assert_eq!(got, *want, "page {}", i);
    }
    // Maximal merging: the VMA count equals the number of runs of mergeable pages.
    let mut runs = 0;
    for i in 0..model.len() {
        let Some(cur) = model[i] else { continue };
        let continues = i > 0
            && model[i - 1].is_some_and(|prev| {
                prev.flags == cur.flags
                    && match (prev.file, cur.file) {
                        (None, None) => true,
                        (Some((a, p)), Some((b, q))) => a == b && p + 1 == q,
                        _ => false,
                    }
            });
        if !continues {
            runs += 1;
        }
    }
    prop_assert_eq!(t.len(), runs);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]
    #[test]
    fn vma_tree_matches_per_page_model(ops in proptest::collection::vec(op(), 1..40)) {
        let mut t = tree();
        let mut model = vec![None; PAGES as usize];
        for op in &ops {
            let want = model_apply(&mut model, op);
            let got = tree_apply(&mut t, op);
            prop_assert_eq!(got, want, "{:?}", op);
            compare(&t, &model)?;
        }
    }
}

/// The same check driven by a seeded generator, for long random sequences
/// (replay a failure by its seed).
#[test]
fn long_seeded_sequences_match_the_model() {
    for seed in 0..16u64 {
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(seed);
        let mut t = tree();
        let mut model = vec![None; PAGES as usize];
        for step in 0..2000 {
            let page = rng.next_u64() % (PAGES + 2);
            let len = rng.next_u64() % 10;
            let flag = rng.next_u64() % 2 == 0;
            let op = match rng.next_u64() % 5 {
                0 => Op::MapFixed {
                    page,
                    len,
                    flags: if flag {
                        RW
                    } else {
                        VmFlags::READ | VmFlags::SHARED
                    },
                    file: Some((1 + (rng.next_u64() % 2) as u32, rng.next_u64() % 8)),
                },
                1 => Op::MapAnywhere { len, flags: RW },
                2 => Op::Unmap { page, len },
                3 => Op::Protect {
                    page,
                    len,
                    write: flag,
                },
                _ => Op::Lock {
                    page,
                    len,
                    lock: flag,
                },
            };
            let want = model_apply(&mut model, &op);
            let got = tree_apply(&mut t, &op);
            assert_eq!(got, want, "seed {seed} step {step} {op:?}");
            if let Err(e) = compare(&t, &model) {
                panic!("seed {seed} step {step} {op:?}: {e}");
            }
        }
    }
}
