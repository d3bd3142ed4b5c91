//! The backing-store image format and the deterministic file contents.
//!
//! Layout (all integers big-endian, blocks of 4 KiB):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `ZHINTBS1` |
//! | 8 | 4 | version (1) |
//! | 12 | 4 | number of files |
//! | 16 | 4 | header blocks (the file table included) |
//! | 20 | 4 | reserved, 0 |
//! | 24 | 8 | total blocks of the image |
//! | 32 | 24 x n | file table: id (4), reserved (4), size in bytes (8), start block (8) |
//!
//! File data follows the header, each file starting on a block boundary, in
//! table order. Byte `o` of file `f` is byte `o % 8` of the big-endian word
//! [`pattern`]`(f, o - o % 8)`; bytes past the size up to the block end are 0.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use crate::{BlockDevice, IoError, PAGE_BYTES, PAGE_SIZE};

/// The image magic.
pub const MAGIC: [u8; 8] = *b"ZHINTBS1";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
const HEADER_FIXED: usize = 32;
const ENTRY_SIZE: usize = 24;

/// The content word at byte `offset` (rounded down to 8) of file `file_id`:
/// a splitmix64 mix of both, so every word of every file differs and any
/// misplaced, stale or zero page is detected.
pub const fn pattern(file_id: u32, offset: u64) -> u64 {
    let mut z = ((file_id as u64) << 40) ^ (offset >> 3);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The byte at `offset` of file `file_id`.
pub const fn pattern_byte(file_id: u32, offset: u64) -> u8 {
    pattern(file_id, offset & !7).to_be_bytes()[(offset & 7) as usize]
}

/// Fills `buf` with the contents of file `file_id` from byte `offset` on.
pub fn fill_pattern(file_id: u32, offset: u64, buf: &mut [u8]) {
    // Whole words between the bytes up to the first word boundary and after the last:
    // the suites fill and check megabytes under TCG, where a loop per byte costs several
    // times the work of a loop per word.
    let (head, words) = split_words(offset, buf.len());
    let (first, rest) = buf.split_at_mut(head);
    let (middle, last) = rest.split_at_mut(words);
    for (i, byte) in first.iter_mut().enumerate() {
        *byte = pattern_byte(file_id, offset + i as u64);
    }
    let mut o = offset + head as u64;
    for word in middle.chunks_exact_mut(8) {
        word.copy_from_slice(&pattern(file_id, o).to_be_bytes());
        o += 8;
    }
    for (i, byte) in last.iter_mut().enumerate() {
        *byte = pattern_byte(file_id, o + i as u64);
    }
}

/// Checks `buf` against the contents of file `file_id` from byte `offset`;
/// `Err(o)` names the first byte offset (in the file) that differs.
pub fn check_pattern(file_id: u32, offset: u64, buf: &[u8]) -> Result<(), u64> {
    let check_bytes = |start: u64, bytes: &[u8]| match bytes
        .iter()
        .enumerate()
        .find(|&(i, &b)| b != pattern_byte(file_id, start + i as u64))
    {
        Some((i, _)) => Err(start + i as u64),
        None => Ok(()),
    };
    let (head, words) = split_words(offset, buf.len());
    check_bytes(offset, &buf[..head])?;
    let mut o = offset + head as u64;
    for word in buf[head..head + words].chunks_exact(8) {
        let got = u64::from_be_bytes(word.try_into().expect("8 bytes"));
        let diff = got ^ pattern(file_id, o);
        if diff != 0 {
            // Big-endian: the first differing byte holds the highest differing bit.
            return Err(o + u64::from(diff.leading_zeros() / 8));
        }
        o += 8;
    }
    check_bytes(o, &buf[head + words..])
}

/// The index of the first byte in which `a` and `b` differ (the shorter length if one
/// is a prefix of the other), or `None` if they are equal. A doubleword at a time:
/// slice `==` compiles to CLC on s390x, which QEMU's TCG runs a byte at a time in a
/// helper (`do_helper_clc`), and the suites compare megabytes.
pub fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    let len = a.len().min(b.len());
    let words = len & !7;
    let pairs = a[..words].chunks_exact(8).zip(b[..words].chunks_exact(8));
    for (i, (x, y)) in pairs.enumerate() {
        let x = u64::from_be_bytes(x.try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(y.try_into().expect("8 bytes"));
        if x != y {
            // Big-endian: the first differing byte holds the highest differing bit.
            return Some(i * 8 + ((x ^ y).leading_zeros() / 8) as usize);
        }
    }
    (words..len)
        .find(|&i| a[i] != b[i])
        .or((a.len() != b.len()).then_some(len))
}

/// A buffer of `len` bytes at file offset `offset` as (bytes before the first word
/// boundary, bytes of whole words); the rest follows the last word.
fn split_words(offset: u64, len: usize) -> (usize, usize) {
    let head = ((offset.wrapping_neg() & 7) as usize).min(len);
    (head, (len - head) & !7)
}

/// One file of the image.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct FileEntry {
    /// The file id (also the [`pattern`] seed).
    pub id: u32,
    /// Size in bytes.
    pub size: u64,
    /// First block of the data.
    pub start_block: u64,
}

impl FileEntry {
    /// Number of pages (blocks) the data occupies.
    pub fn pages(&self) -> u64 {
        self.size.div_ceil(PAGE_SIZE)
    }

    /// The device block holding file page `index`, if inside the file.
    pub fn block_of(&self, index: u64) -> Option<u64> {
        (index < self.pages()).then(|| self.start_block + index)
    }
}

/// Why an image was rejected.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum ImageError {
    /// Not even the fixed header is there.
    TooShort,
    /// The magic is wrong: this is not a backing-store image.
    BadMagic,
    /// A version this code does not read.
    BadVersion(u32),
    /// The header, the file table or a file's data runs past the end.
    Truncated,
    /// A file starts inside the header or another file, or two files share an id.
    Inconsistent,
    /// Reading the device failed.
    Io(IoError),
}

impl fmt::Display for ImageError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooShort => f.write_str("image shorter than its header"),
            Self::BadMagic => f.write_str("bad magic: not a backing-store image"),
            Self::BadVersion(v) => write!(f, "unsupported image version {v}"),
            Self::Truncated => f.write_str("image truncated"),
            Self::Inconsistent => f.write_str("overlapping files or duplicate ids"),
            Self::Io(e) => write!(f, "reading the image: {e}"),
        }
    }
}

fn be_u32(bytes: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(bytes[at..at + 4].try_into().expect("4 bytes"))
}

fn be_u64(bytes: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(bytes[at..at + 8].try_into().expect("8 bytes"))
}

/// A parsed image: its file table.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Image {
    files: Vec<FileEntry>,
    total_blocks: u64,
}

impl Image {
    /// Parses a header (at least the header blocks; the data need not follow,
    /// but `total_blocks` must fit in `available_blocks`).
    fn parse_header(bytes: &[u8], available_blocks: u64) -> Result<Self, ImageError> {
        if bytes.len() < HEADER_FIXED {
            return Err(ImageError::TooShort);
        }
        if bytes[..8] != MAGIC {
            return Err(ImageError::BadMagic);
        }
        let version = be_u32(bytes, 8);
        if version != VERSION {
            return Err(ImageError::BadVersion(version));
        }
        let count = be_u32(bytes, 12) as usize;
        let header_blocks = u64::from(be_u32(bytes, 16));
        let total_blocks = be_u64(bytes, 24);
        let table_end = count
            .checked_mul(ENTRY_SIZE)
            .and_then(|t| t.checked_add(HEADER_FIXED))
            .ok_or(ImageError::Truncated)?;
        if (table_end as u64).div_ceil(PAGE_SIZE) > header_blocks || table_end > bytes.len() {
            return Err(ImageError::Truncated);
        }
        if total_blocks > available_blocks || header_blocks > total_blocks {
            return Err(ImageError::Truncated);
        }
        let mut files: Vec<FileEntry> = (0..count)
            .map(|i| {
                let at = HEADER_FIXED + i * ENTRY_SIZE;
                FileEntry {
                    id: be_u32(bytes, at),
                    size: be_u64(bytes, at + 8),
                    start_block: be_u64(bytes, at + 16),
                }
            })
            .collect();
        let mut by_start = files.clone();
        by_start.sort_unstable_by_key(|f| f.start_block);
        let mut next_free = header_blocks;
        for file in &by_start {
            if file.start_block < next_free {
                return Err(ImageError::Inconsistent);
            }
            let end = file
                .start_block
                .checked_add(file.pages())
                .ok_or(ImageError::Truncated)?;
            if end > total_blocks {
                return Err(ImageError::Truncated);
            }
            next_free = end;
        }
        let mut ids: Vec<u32> = files.iter().map(|f| f.id).collect();
        ids.sort_unstable();
        if ids.windows(2).any(|w| w[0] == w[1]) {
            return Err(ImageError::Inconsistent);
        }
        files.shrink_to_fit();
        Ok(Self {
            files,
            total_blocks,
        })
    }

    /// Parses a whole image held in memory.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        Self::parse_header(bytes, (bytes.len() / PAGE_BYTES) as u64)
    }

    /// Reads and parses the header from a device.
    pub fn load<D: BlockDevice + ?Sized>(dev: &mut D) -> Result<Self, ImageError> {
        let mut block = [0u8; PAGE_BYTES];
        dev.read_page(0, &mut block).map_err(|e| match e {
            IoError::OutOfRange { .. } => ImageError::TooShort,
            other => ImageError::Io(other),
        })?;
        if block[..8] != MAGIC {
            return Err(ImageError::BadMagic);
        }
        let header_blocks = u64::from(be_u32(&block, 16)).max(1);
        if header_blocks > dev.blocks() {
            return Err(ImageError::Truncated);
        }
        let mut header = Vec::with_capacity(header_blocks as usize * PAGE_BYTES);
        header.extend_from_slice(&block);
        for b in 1..header_blocks {
            dev.read_page(b, &mut block).map_err(ImageError::Io)?;
            header.extend_from_slice(&block);
        }
        Self::parse_header(&header, dev.blocks())
    }

    /// The file table, in image order.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// The file with id `id`.
    pub fn file(&self, id: u32) -> Option<FileEntry> {
        self.files.iter().copied().find(|f| f.id == id)
    }

    /// Blocks the image occupies.
    pub fn total_blocks(&self) -> u64 {
        self.total_blocks
    }
}

/// Builds an image holding files `(id, size in bytes)` with [`pattern`] contents.
///
/// # Panics
/// If two files share an id (a bug in the caller, xtask).
pub fn build_image(files: &[(u32, u64)]) -> Vec<u8> {
    let mut ids: Vec<u32> = files.iter().map(|f| f.0).collect();
    ids.sort_unstable();
    assert!(ids.windows(2).all(|w| w[0] != w[1]), "duplicate file id");
    let table_end = HEADER_FIXED + ENTRY_SIZE * files.len();
    let header_blocks = (table_end as u64).div_ceil(PAGE_SIZE).max(1);
    let mut next = header_blocks;
    let mut entries = Vec::with_capacity(files.len());
    for &(id, size) in files {
        entries.push(FileEntry {
            id,
            size,
            start_block: next,
        });
        next += size.div_ceil(PAGE_SIZE);
    }
    let total_blocks = next;
    let mut image = vec![0u8; usize::try_from(total_blocks).expect("image fits") * PAGE_BYTES];
    image[..8].copy_from_slice(&MAGIC);
    image[8..12].copy_from_slice(&VERSION.to_be_bytes());
    image[12..16].copy_from_slice(&(files.len() as u32).to_be_bytes());
    image[16..20].copy_from_slice(&(header_blocks as u32).to_be_bytes());
    image[24..32].copy_from_slice(&total_blocks.to_be_bytes());
    for (i, e) in entries.iter().enumerate() {
        let at = HEADER_FIXED + i * ENTRY_SIZE;
        image[at..at + 4].copy_from_slice(&e.id.to_be_bytes());
        image[at + 8..at + 16].copy_from_slice(&e.size.to_be_bytes());
        image[at + 16..at + 24].copy_from_slice(&e.start_block.to_be_bytes());
        let start = e.start_block as usize * PAGE_BYTES;
        fill_pattern(e.id, 0, &mut image[start..start + e.size as usize]);
    }
    image
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemDisk;

    #[test]
    fn first_difference_finds_the_first_differing_byte() {
        let a: Vec<u8> = (0..37u8).collect();
        assert_eq!(first_difference(&a, &a), None);
        assert_eq!(first_difference(&[], &[]), None);
        for at in 0..a.len() {
            let mut b = a.clone();
            b[at] ^= 0x80;
            b[a.len() - 1] ^= 1;
            assert_eq!(first_difference(&a, &b), Some(at), "at {at}");
            assert_eq!(first_difference(&b, &a), Some(at), "at {at}");
        }
        let mut b = a.clone();
        b[10] ^= 1;
        b[13] ^= 0x40;
        assert_eq!(first_difference(&a, &b), Some(10), "two in one doubleword");
        assert_eq!(first_difference(&a, &a[..20]), Some(20));
        assert_eq!(first_difference(&a[..9], &a), Some(9));
    }

    #[test]
    fn pattern_differs_between_files_and_offsets() {
        let words: Vec<u64> = (0..4)
            .flat_map(|f| (0..64).map(move |o| pattern(f, o * 8)))
            .collect();
        let mut sorted = words.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), words.len());
        assert_eq!(
            pattern(3, 16),
            pattern(3, 23),
            "same word for every byte in it"
        );
        assert!(words.iter().all(|&w| w != 0));
    }

    #[test]
    fn fill_and_check_agree_and_locate_the_first_bad_byte() {
        let mut buf = [0u8; 100];
        fill_pattern(7, 4096, &mut buf);
        assert_eq!(check_pattern(7, 4096, &buf), Ok(()));
        assert_eq!(buf[..8], pattern(7, 4096).to_be_bytes());
        buf[42] ^= 1;
        assert_eq!(check_pattern(7, 4096, &buf), Err(4096 + 42));
        assert!(check_pattern(8, 4096, &buf).is_err());
        // Unaligned windows agree with the aligned fill.
        let mut whole = [0u8; 64];
        fill_pattern(3, 0, &mut whole);
        let mut part = [0u8; 13];
        fill_pattern(3, 5, &mut part);
        assert_eq!(part, whole[5..18]);
        assert_eq!(check_pattern(3, 5, &whole[5..40]), Ok(()));
        assert_eq!(pattern_byte(3, 9), whole[9]);
    }

    #[test]
    fn every_window_agrees_with_the_bytes_and_names_the_first_bad_one() {
        let whole: Vec<u8> = (0..48).map(|o| pattern_byte(6, 1000 + o)).collect();
        for start in 0..whole.len() {
            for end in start..=whole.len() {
                let offset = 1000 + start as u64;
                let mut window = vec![0; end - start];
                fill_pattern(6, offset, &mut window);
                assert_eq!(window, whole[start..end], "fill {start}..{end}");
                assert_eq!(check_pattern(6, offset, &window), Ok(()));
                for bad in 0..window.len() {
                    let mut broken = window.clone();
                    broken[bad] ^= 0x80;
                    broken[window.len() - 1] ^= 0x01;
                    assert_eq!(
                        check_pattern(6, offset, &broken),
                        Err(offset + bad as u64),
                        "check {start}..{end}, bad {bad}"
                    );
                }
            }
        }
    }

    #[test]
    fn build_then_parse_round_trips() {
        let image = build_image(&[(1, 10_000), (5, 0), (2, 4096), (9, 1)]);
        let parsed = Image::parse(&image).unwrap();
        let files = parsed.files();
        assert_eq!(files.len(), 4);
        assert_eq!(
            files[0],
            FileEntry {
                id: 1,
                size: 10_000,
                start_block: 1
            }
        );
        assert_eq!(files[1].pages(), 0);
        assert_eq!(
            files[2],
            FileEntry {
                id: 2,
                size: 4096,
                start_block: 4
            }
        );
        assert_eq!(files[3].start_block, 5);
        assert_eq!(parsed.total_blocks(), 6);
        assert_eq!(image.len(), 6 * PAGE_BYTES);
        let f1 = parsed.file(1).unwrap();
        let data = &image[PAGE_BYTES..PAGE_BYTES + 10_000];
        assert_eq!(check_pattern(1, 0, data), Ok(()));
        assert!(
            image[PAGE_BYTES + 10_000..4 * PAGE_BYTES]
                .iter()
                .all(|&b| b == 0)
        );
        assert_eq!(f1.block_of(2), Some(3));
        assert_eq!(f1.block_of(3), None);
        assert_eq!(parsed.file(3), None);
        // The same through a block device.
        let mut disk = MemDisk::new(image);
        assert_eq!(Image::load(&mut disk).unwrap(), parsed);
    }

    #[test]
    fn a_large_file_table_spans_several_header_blocks() {
        let files: Vec<(u32, u64)> = (0..400).map(|i| (i, 8)).collect();
        let image = build_image(&files);
        let parsed = Image::parse(&image).unwrap();
        assert_eq!(parsed.files().len(), 400);
        assert_eq!(parsed.file(0).unwrap().start_block, 3);
        let mut disk = MemDisk::new(image);
        assert_eq!(Image::load(&mut disk).unwrap(), parsed);
    }

    #[test]
    fn rejects_bad_images() {
        let good = build_image(&[(1, 8192), (2, 100)]);
        assert_eq!(Image::parse(&good[..10]), Err(ImageError::TooShort));
        let mut bad = good.clone();
        bad[0] = b'X';
        assert_eq!(Image::parse(&bad), Err(ImageError::BadMagic));
        let mut bad = good.clone();
        bad[11] = 2;
        assert_eq!(Image::parse(&bad), Err(ImageError::BadVersion(2)));
        assert_eq!(
            Image::parse(&good[..3 * PAGE_BYTES]),
            Err(ImageError::Truncated)
        );
        // A file claiming more data than the image holds.
        let mut bad = good.clone();
        bad[32 + 24 + 8..32 + 24 + 16].copy_from_slice(&(1u64 << 40).to_be_bytes());
        assert_eq!(Image::parse(&bad), Err(ImageError::Truncated));
        // A file table longer than the header.
        let mut bad = good.clone();
        bad[12..16].copy_from_slice(&1000u32.to_be_bytes());
        assert_eq!(Image::parse(&bad), Err(ImageError::Truncated));
        // A file starting inside the header; two files with one id.
        let mut bad = good.clone();
        bad[32 + 16..32 + 24].copy_from_slice(&0u64.to_be_bytes());
        assert_eq!(Image::parse(&bad), Err(ImageError::Inconsistent));
        let mut bad = good.clone();
        bad[32 + 24..32 + 28].copy_from_slice(&1u32.to_be_bytes());
        assert_eq!(Image::parse(&bad), Err(ImageError::Inconsistent));
        let mut empty = MemDisk::new(Vec::new());
        assert_eq!(Image::load(&mut empty), Err(ImageError::TooShort));
    }

    #[test]
    #[should_panic(expected = "duplicate")]
    fn build_rejects_duplicate_ids() {
        build_image(&[(1, 1), (1, 2)]);
    }
}
