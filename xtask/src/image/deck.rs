//! The z/VM reader deck: 80-byte card records (NOHEADER form) that IPL the kernel through
//! the loader in `boot/src/ipl` (its module documentation has the record layout).

use std::ops::Range;

use anyhow::{Context, Result, ensure};

/// Bytes per card record.
pub const RECORD: usize = 80;
/// Where the IPL CCWs put the loader; the deck's IPL PSW points here.
pub const LOADER_ADDR: usize = 0x2000;
/// Records the IPL CCWs in records 2-3 read (the loader's room).
pub const LOADER_RECORDS: usize = 20;
/// Records of the image's lowcore the loader reads to address 0 (as in `boot/src/ipl`).
pub const LOWCORE_RECORDS: usize = 7;
/// Where the kernel part of the image starts.
pub const KERNEL_START: usize = 0x10000;
/// Format-0 READ CCW flags: command chaining + suppress incorrect length.
const CC_SLI: u8 = 0x60;
/// Suppress incorrect length only: the last CCW of a chain.
const SLI: u8 = 0x20;
/// READ command code of a card reader.
const READ: u8 = 0x02;

/// A format-0 CCW (24-bit data address), as the IPL channel program uses.
pub fn ccw0(command: u8, address: usize, flags: u8, count: u16) -> [u8; 8] {
    let a = (address as u32).to_be_bytes();
    let c = count.to_be_bytes();
    [command, a[1], a[2], a[3], flags, 0, c[0], c[1]]
}

/// What the deck carries and where the loader keeps its record count.
pub struct DeckInput<'a> {
    /// The flat memory image from address 0.
    pub image: &'a [u8],
    /// The loader's bytes in the image.
    pub loader: Range<usize>,
    /// Address of the loader's kernel-record-count word (`zhint_ipl_kernel_records`).
    pub kernel_records_word: usize,
    /// The initrd, read after the kernel to where the image's parameter area says (its
    /// size there must be this length; empty: none).
    pub initrd: &'a [u8],
}

/// Builds the deck: IPL records, loader, lowcore records, kernel records.
pub fn build(input: &DeckInput<'_>) -> Result<Vec<u8>> {
    let DeckInput {
        image,
        loader,
        kernel_records_word,
        initrd,
    } = input;
    ensure!(
        loader.start == LOADER_ADDR,
        "the loader is linked at {:#x}, the deck reads it to {LOADER_ADDR:#x}",
        loader.start
    );
    ensure!(
        loader.len() <= LOADER_RECORDS * RECORD,
        "the loader has {} bytes; 20 records hold {}",
        loader.len(),
        LOADER_RECORDS * RECORD
    );
    ensure!(
        loader.contains(kernel_records_word) && loader.contains(&(kernel_records_word + 3)),
        "the record-count word is not inside the loader"
    );
    ensure!(image.len() > KERNEL_START, "the image ends below 0x10000");
    let announced = image
        .get(super::PARM_AREA + 16..super::PARM_AREA + 24)
        .map(|s| u64::from_be_bytes(s.try_into().expect("8 bytes")))
        .context("the image has no parameter area")?;
    ensure!(
        announced == initrd.len() as u64,
        "the parameter area announces an initrd of {announced} bytes, the deck would carry {}",
        initrd.len()
    );
    let lowcore_end = LOWCORE_RECORDS * RECORD;
    for (what, range) in [
        (
            "between the lowcore and the loader",
            lowcore_end..loader.start,
        ),
        ("between the loader and 0x10000", loader.end..KERNEL_START),
    ] {
        if let Some(at) = image[range.clone()].iter().position(|&b| b != 0) {
            anyhow::bail!(
                "the image has data at {:#x}, {what}, which the deck does not carry",
                range.start + at
            );
        }
    }

    let mut deck = Vec::new();
    // Record 1: the IPL reads its first 24 bytes to 0: IPL PSW and two CCWs that read
    // records 2 and 3 (the next 20 CCWs) right behind them.
    let mut first = Vec::with_capacity(RECORD);
    first.extend(0x0008_0000u32.to_be_bytes());
    first.extend((0x8000_0000u32 | LOADER_ADDR as u32).to_be_bytes());
    first.extend(ccw0(READ, 0x18, CC_SLI, RECORD as u16));
    first.extend(ccw0(READ, 0x68, CC_SLI, RECORD as u16));
    first.resize(RECORD, 0x40);
    deck.extend(first);
    // Records 2-3: 20 CCWs reading the loader, one record each.
    for i in 0..LOADER_RECORDS {
        let flags = if i + 1 == LOADER_RECORDS { SLI } else { CC_SLI };
        deck.extend(ccw0(READ, LOADER_ADDR + i * RECORD, flags, RECORD as u16));
    }
    // Records 4-23: the loader, with the kernel's record count patched in.
    let kernel_bytes = image.len() - KERNEL_START;
    let kernel_records = kernel_bytes.div_ceil(RECORD);
    let mut loader_bytes = image[loader.clone()].to_vec();
    let word = kernel_records_word - loader.start;
    loader_bytes[word..word + 4].copy_from_slice(&u32::try_from(kernel_records)?.to_be_bytes());
    loader_bytes.resize(LOADER_RECORDS * RECORD, 0);
    deck.extend(loader_bytes);
    // The lowcore, then the kernel and the initrd, each padded to whole records.
    deck.extend(&image[..lowcore_end]);
    for part in [&image[KERNEL_START..], initrd] {
        deck.extend_from_slice(part);
        deck.resize(deck.len().div_ceil(RECORD) * RECORD, 0);
    }
    Ok(deck)
}

/// The parameter file: the kernel arguments as text lines of at most 80 columns (one
/// blank line when there are none: CMS cannot punch an empty file).
pub fn parmfile(kernel_args: &[String]) -> Result<String> {
    let mut lines: Vec<String> = vec![String::new()];
    for arg in kernel_args {
        ensure!(
            arg.len() <= RECORD,
            "kernel argument `{arg}` is longer than a card (80 columns)"
        );
        let line = lines.last_mut().expect("lines is never empty");
        if line.is_empty() {
            line.push_str(arg);
        } else if line.len() + 1 + arg.len() <= RECORD {
            line.push(' ');
            line.push_str(arg);
        } else {
            lines.push(arg.clone());
        }
    }
    Ok(lines.iter().map(|l| format!("{l}\n")).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Bytes of the fake kernel: past the parameter area, 15 records with the last one
    /// padded.
    const KERNEL_BYTES: usize = 0x470;
    const KERNEL_RECORDS: usize = 15;

    /// A fake image: lowcore pattern, a 100-byte loader with its count word at +8, and
    /// [`KERNEL_BYTES`] kernel bytes with an empty parameter area (no initrd).
    fn fake_image() -> Vec<u8> {
        let mut image = vec![0u8; KERNEL_START + KERNEL_BYTES];
        for (i, b) in image[..0x200].iter_mut().enumerate() {
            *b = (i % 251) as u8 + 1;
        }
        for (i, b) in image[LOADER_ADDR..LOADER_ADDR + 100].iter_mut().enumerate() {
            *b = 0xa0 ^ i as u8;
        }
        for (i, b) in image[KERNEL_START..].iter_mut().enumerate() {
            *b = (i % 7) as u8 + 0x30;
        }
        image[super::super::PARM_AREA..super::super::PARM_AREA + 0x38].fill(0);
        image
    }

    fn input(image: &[u8]) -> DeckInput<'_> {
        DeckInput {
            image,
            loader: LOADER_ADDR..LOADER_ADDR + 100,
            kernel_records_word: LOADER_ADDR + 8,
            initrd: &[],
        }
    }

    /// Decodes a format-0 CCW: (command, address, flags, count).
    fn decode(ccw: &[u8]) -> (u8, usize, u8, u16) {
        let address = u32::from_be_bytes([0, ccw[1], ccw[2], ccw[3]]) as usize;
        (
            ccw[0],
            address,
            ccw[4],
            u16::from_be_bytes([ccw[6], ccw[7]]),
        )
    }

    #[test]
    fn deck_is_whole_records_with_the_expected_count() {
        let image = fake_image();
        let deck = build(&input(&image)).unwrap();
        assert_eq!(deck.len() % RECORD, 0, "NOHEADER: every record is 80 bytes");
        // 1 + 2 + 20 loader + 7 lowcore + the kernel.
        assert_eq!(deck.len() / RECORD, 1 + 2 + 20 + 7 + KERNEL_RECORDS);
    }

    #[test]
    fn first_record_is_the_ipl_psw_and_two_ccws() {
        let image = fake_image();
        let deck = build(&input(&image)).unwrap();
        assert_eq!(
            &deck[..8],
            &[0x00, 0x08, 0x00, 0x00, 0x80, 0x00, 0x20, 0x00],
            "ESA/390 short PSW, 31-bit, loader address"
        );
        assert_eq!(decode(&deck[8..16]), (0x02, 0x18, 0x60, 80));
        assert_eq!(decode(&deck[16..24]), (0x02, 0x68, 0x60, 80));
        assert!(deck[24..80].iter().all(|&b| b == 0x40));
    }

    #[test]
    fn the_ipl_channel_program_reads_the_loader_record_by_record() {
        let image = fake_image();
        let deck = build(&input(&image)).unwrap();
        // What the IPL puts at 0x18-0xb7: records 2 and 3, 20 CCWs.
        let chain = &deck[80..240];
        for (i, ccw) in chain.chunks(8).enumerate() {
            let (command, address, flags, count) = decode(ccw);
            assert_eq!(command, 0x02, "READ");
            assert_eq!(address, 0x2000 + 80 * i, "CCW {i}");
            assert_eq!(count, 80);
            let last = i == 19;
            assert_eq!(
                flags & 0x40 != 0,
                !last,
                "command chaining on all but the last"
            );
            assert_eq!(flags & 0x20, 0x20, "SLI");
            assert_eq!(flags & !0x60, 0, "no other flags");
        }
        // The chain starts right behind the two CCWs of record 1 and ends before the
        // subsystem-id word the IPL stores at 0xb8.
        assert_eq!(0x18 + chain.len(), 0xb8);
    }

    #[test]
    fn loader_lowcore_and_kernel_follow_in_order() {
        let image = fake_image();
        let deck = build(&input(&image)).unwrap();
        let loader = &deck[3 * RECORD..23 * RECORD];
        assert_eq!(&loader[..8], &image[LOADER_ADDR..LOADER_ADDR + 8]);
        assert_eq!(
            &loader[8..12],
            &(KERNEL_RECORDS as u32).to_be_bytes(),
            "kernel record count"
        );
        assert_eq!(
            &loader[12..100],
            &image[LOADER_ADDR + 12..LOADER_ADDR + 100]
        );
        assert!(loader[100..].iter().all(|&b| b == 0));
        assert_eq!(&deck[23 * RECORD..30 * RECORD], &image[..560]);
        assert_eq!(
            &deck[30 * RECORD..30 * RECORD + KERNEL_BYTES],
            &image[KERNEL_START..]
        );
        assert!(deck[30 * RECORD + KERNEL_BYTES..].iter().all(|&b| b == 0));
    }

    #[test]
    fn data_the_deck_would_lose_is_an_error() {
        let mut image = fake_image();
        image[0x1000] = 1;
        assert!(build(&input(&image)).is_err());
        let mut image = fake_image();
        image[0xf000] = 1;
        assert!(build(&input(&image)).is_err());
        let image = fake_image();
        let big = DeckInput {
            loader: LOADER_ADDR..LOADER_ADDR + 1601,
            ..input(&image)
        };
        assert!(build(&big).is_err());
    }

    #[test]
    fn the_initrd_follows_the_kernel_in_whole_records_as_announced() {
        let mut image = fake_image();
        let initrd: Vec<u8> = (0..200u8).collect();
        super::super::set_initrd(&mut image, 0x80_0000, initrd.len()).unwrap();
        let deck = build(&DeckInput {
            initrd: &initrd,
            ..input(&image)
        })
        .unwrap();
        // 1 + 2 + 20 loader + 7 lowcore + the kernel + 3 initrd records (200 bytes).
        assert_eq!(deck.len() / RECORD, 30 + KERNEL_RECORDS + 3);
        let start = (30 + KERNEL_RECORDS) * RECORD;
        assert_eq!(&deck[start..start + 200], &initrd[..]);
        assert!(deck[start + 200..].iter().all(|&b| b == 0), "padding");
        assert_eq!(
            &deck[30 * RECORD..30 * RECORD + KERNEL_BYTES],
            &image[KERNEL_START..],
            "the kernel records carry the parameter area"
        );
        // The loader computes the record count from the parameter area: it must match.
        let wrong = build(&DeckInput {
            initrd: &initrd[..120],
            ..input(&image)
        });
        assert!(
            wrong
                .unwrap_err()
                .to_string()
                .contains("announces an initrd of 200 bytes")
        );
        assert!(
            build(&input(&image)).is_err(),
            "an announced initrd the deck does not carry"
        );
    }

    #[test]
    fn parmfile_wraps_at_80_columns() {
        assert_eq!(parmfile(&[]).unwrap(), "\n");
        let args: Vec<String> = (0..20).map(|i| format!("key{i}=value")).collect();
        let text = parmfile(&args).unwrap();
        assert!(text.lines().all(|l| l.len() <= 80), "{text}");
        assert!(text.lines().count() > 1);
        assert_eq!(text.split_whitespace().collect::<Vec<_>>(), args);
        assert!(parmfile(&["x".repeat(81)]).is_err());
    }
}
