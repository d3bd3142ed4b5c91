use super::*;
use alloc::vec;

fn disk_with(original: &[u8], writes: &[(u64, &[u8])]) -> (Vec<u8>, WriteLog) {
    let mut disk = original.to_vec();
    let mut log = WriteLog::new();
    for &(sector, data) in writes {
        let at = sector as usize * SECTOR_BYTES;
        disk[at..at + data.len()].copy_from_slice(data);
        log.record(sector, data);
    }
    (disk, log)
}

fn original() -> Vec<u8> {
    (0..4 * PAGE_BYTES).map(|i| (i % 253) as u8).collect()
}

#[test]
fn a_disk_holding_what_the_guest_reported_passes() {
    let original = original();
    let page = vec![0x5a; PAGE_BYTES];
    let two = vec![0xa5; 2 * SECTOR_BYTES];
    let (disk, log) = disk_with(&original, &[(8, &page), (25, &two), (8, &page[..512])]);
    let report = log.report();
    assert_eq!(report.len(), 3);
    assert_eq!(report[0], "disk-writes: begin blocks=2");
    let lines: Vec<String> = report.iter().map(|l| format!("# {l}")).collect();
    let parsed = parse(lines.iter().map(String::as_str)).unwrap();
    assert_eq!(parsed, log.blocks());
    assert_eq!(parsed[0].mask, 0xff);
    assert_eq!(
        parsed[1],
        BlockWrite {
            block: 3,
            mask: 0x06,
            digest: parsed[1].digest
        }
    );
    assert_eq!(verify(&original, &disk, &parsed), []);
    // Writing the original bytes back is still a reported write, and checks.
    assert_eq!(verify(&original, &original, &[]), []);
}

#[test]
fn every_kind_of_mismatch_names_the_block() {
    let original = original();
    let page = vec![0x5a; PAGE_BYTES];
    let (disk, log) = disk_with(&original, &[(8, &page), (25, &page[..1024])]);
    let writes = log.blocks();
    // A byte the guest never wrote.
    let mut bad = disk.clone();
    bad[3 * PAGE_BYTES + 100] ^= 1;
    assert_eq!(
        verify(&original, &bad, &writes),
        [Mismatch::UnwrittenSector {
            block: 3,
            sector: 0
        }]
    );
    let mut bad = disk.clone();
    bad[5] ^= 1;
    assert_eq!(
        verify(&original, &bad, &writes),
        [Mismatch::Unwritten {
            block: 0,
            offset: 5
        }]
    );
    // A written block with other data than reported.
    let mut bad = disk.clone();
    bad[PAGE_BYTES + 4095] ^= 0x80;
    let found = verify(&original, &bad, &writes);
    assert!(
        matches!(found[..], [Mismatch::Written { block: 1, reported, .. }] if reported == writes[0].digest)
    );
    assert!(
        found[0]
            .to_string()
            .starts_with("block 1 does not hold what the guest reported")
    );
    // A lying report: a wrong digest, a block past the end, a block it did not write.
    let mut lie = writes.clone();
    lie[1].digest ^= 1;
    assert!(matches!(
        verify(&original, &disk, &lie)[..],
        [Mismatch::Written { block: 3, .. }]
    ));
    let mut lie = writes.clone();
    lie.push(BlockWrite {
        block: 9,
        mask: 1,
        digest: 0,
    });
    assert_eq!(
        verify(&original, &disk, &lie),
        [Mismatch::OutOfRange { block: 9 }]
    );
    assert!(matches!(
        verify(&original, &disk, &writes[..1])[..],
        [Mismatch::Unwritten { block: 3, .. }]
    ));
    assert_eq!(
        verify(&original, &disk[..PAGE_BYTES], &writes),
        [Mismatch::Length {
            expected: 4 * PAGE_BYTES as u64,
            found: PAGE_BYTES as u64
        }]
    );
}

#[test]
fn reports_that_are_not_whole_are_refused() {
    let ok = [
        "# disk-writes: begin blocks=1",
        "# disk-writes: 1:ff:00000000000000aa",
        "# disk-writes: end blocks=1",
    ];
    assert_eq!(
        parse(ok).unwrap(),
        [BlockWrite {
            block: 1,
            mask: 0xff,
            digest: 0xaa
        }]
    );
    assert_eq!(parse(["ok 1 x"]), Err(ReportError::Missing));
    assert_eq!(
        parse(ok[..2].iter().copied()),
        Err(ReportError::Unterminated)
    );
    let count = [
        "# disk-writes: begin blocks=2",
        ok[1],
        "# disk-writes: end blocks=2",
    ];
    assert_eq!(
        parse(count),
        Err(ReportError::Count {
            announced: 2,
            found: 1
        })
    );
    let twice = [ok[0], ok[1], ok[1], ok[2]];
    assert_eq!(parse(twice), Err(ReportError::Duplicate(1)));
    for bad in ["1:ff", "1:00:aa", "x:ff:aa", "1:ff:aa:1", "1:1ff:aa"] {
        let line = format!("# disk-writes: {bad}");
        let lines = [ok[0], line.as_str(), ok[2]];
        assert!(
            matches!(parse(lines), Err(ReportError::Malformed(_))),
            "{bad}"
        );
    }
    assert!(matches!(
        parse([ok[0], ok[0]]),
        Err(ReportError::Malformed(_))
    ));
    assert!(matches!(parse([ok[1]]), Err(ReportError::Malformed(_))));
}

#[test]
fn later_boots_replace_whole_blocks_only() {
    let a = BlockWrite {
        block: 1,
        mask: 0x0f,
        digest: 1,
    };
    let b = BlockWrite {
        block: 1,
        mask: 0xff,
        digest: 2,
    };
    assert_eq!(merge(&[vec![a], vec![b]]), Ok(vec![b]));
    assert_eq!(
        merge(&[vec![b], vec![a]]),
        Err(Mismatch::Overlap { block: 1 })
    );
}
