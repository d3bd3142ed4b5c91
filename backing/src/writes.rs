//! What the guest wrote to its disk, as it reports it, and the host's check of the disk
//! file against it (`cargo xtask` after every run with a disk).
//!
//! The guest keeps the digest of the last data it wrote to every 512-byte sector
//! ([`WriteLog`]). At the end of a boot it prints the log grouped by 4 KiB block, one
//! entry per block it wrote: `block:mask:digest` (hex), `mask` the sectors of the block
//! written (bit `n` = sector `n`), `digest` the [`digest`] of those sectors' digests in
//! sector order. The lines are KTAP comments:
//!
//! ```text
//! # disk-writes: begin blocks=3
//! # disk-writes: 14d:ff:9b1f0e6c2d3a4b5c 14e:ff:0123456789abcdef 200:03:fedcba9876543210
//! # disk-writes: end blocks=3
//! ```
//!
//! The host then checks every block of the file: a block nobody wrote must hold its
//! original bytes (the image, then zeros), the written sectors of a written block must
//! have the reported digest and its other sectors their original bytes. A mismatch names
//! the block.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use crate::PAGE_BYTES;

/// Bytes per sector: the unit of virtio-blk requests.
pub const SECTOR_BYTES: usize = 512;
/// Sectors per 4 KiB block.
pub const SECTORS_PER_BLOCK: u64 = (PAGE_BYTES / SECTOR_BYTES) as u64;
/// What starts each report line (after `# `).
pub const PREFIX: &str = "disk-writes:";
/// Entries per report line: a line stays under the 132 columns at which the line-mode
/// console wraps.
const PER_LINE: usize = 4;

/// FNV-1a, 64 bits: small, and the same on both sides (a check of the guest's honesty
/// about its own writes, not a defence against an adversary).
pub fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// The last write to each sector, as digests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WriteLog {
    sectors: BTreeMap<u64, u64>,
}

impl WriteLog {
    /// An empty log.
    pub const fn new() -> Self {
        Self {
            sectors: BTreeMap::new(),
        }
    }

    /// Records that `data` (whole sectors) was written at `sector`.
    pub fn record(&mut self, sector: u64, data: &[u8]) {
        for (n, chunk) in data.chunks(SECTOR_BYTES).enumerate() {
            self.sectors.insert(sector + n as u64, digest(chunk));
        }
    }

    /// Adds the writes of `later`, which happened after this log's.
    pub fn merge(&mut self, later: &WriteLog) {
        self.sectors
            .extend(later.sectors.iter().map(|(&s, &d)| (s, d)));
    }

    /// Number of sectors written.
    pub fn sectors(&self) -> usize {
        self.sectors.len()
    }

    /// The log grouped by block, in block order.
    pub fn blocks(&self) -> Vec<BlockWrite> {
        let mut blocks: Vec<BlockWrite> = Vec::new();
        let mut digests: Vec<u8> = Vec::new();
        for (&sector, &d) in &self.sectors {
            let block = sector / SECTORS_PER_BLOCK;
            if blocks.last().is_none_or(|b| b.block != block) {
                if let Some(last) = blocks.last_mut() {
                    last.digest = digest(&digests);
                }
                digests.clear();
                blocks.push(BlockWrite {
                    block,
                    mask: 0,
                    digest: 0,
                });
            }
            if let Some(last) = blocks.last_mut() {
                last.mask |= 1 << (sector % SECTORS_PER_BLOCK);
            }
            digests.extend_from_slice(&d.to_le_bytes());
        }
        if let Some(last) = blocks.last_mut() {
            last.digest = digest(&digests);
        }
        blocks
    }

    /// The report lines (without the `# ` of a KTAP comment).
    pub fn report(&self) -> Vec<String> {
        let blocks = self.blocks();
        let mut lines = Vec::with_capacity(2 + blocks.len() / PER_LINE);
        lines.push(format!("{PREFIX} begin blocks={}", blocks.len()));
        for chunk in blocks.chunks(PER_LINE) {
            let entries: Vec<String> = chunk.iter().map(|b| format!("{b}")).collect();
            lines.push(format!("{PREFIX} {}", entries.join(" ")));
        }
        lines.push(format!("{PREFIX} end blocks={}", blocks.len()));
        lines
    }
}

/// The guest's word about one block: which sectors it wrote and their digest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlockWrite {
    /// The 4 KiB block.
    pub block: u64,
    /// The sectors of the block written (bit `n` = sector `n` of the block).
    pub mask: u8,
    /// [`digest`] of the written sectors' digests (little-endian), in sector order.
    pub digest: u64,
}

impl fmt::Display for BlockWrite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:x}:{:02x}:{:016x}", self.block, self.mask, self.digest)
    }
}

impl BlockWrite {
    /// The digest `bytes` (the block's 4096 bytes) have over this entry's sectors.
    pub fn digest_of(&self, bytes: &[u8]) -> u64 {
        let mut digests = Vec::new();
        for (n, sector) in bytes.chunks(SECTOR_BYTES).enumerate() {
            if self.mask & (1 << n) != 0 {
                digests.extend_from_slice(&digest(sector).to_le_bytes());
            }
        }
        digest(&digests)
    }
}

/// Why a report cannot be read.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportError {
    /// No `begin` line: the boot printed no report.
    Missing,
    /// A `begin` without its `end` (the boot ended inside the report).
    Unterminated,
    /// An entry or line that is not in the format; the text.
    Malformed(String),
    /// `begin`/`end` announce a count the entries do not have.
    Count {
        /// The announced count.
        announced: usize,
        /// Entries found.
        found: usize,
    },
    /// The same block twice.
    Duplicate(u64),
}

impl fmt::Display for ReportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Missing => f.write_str("no `disk-writes:` report"),
            Self::Unterminated => f.write_str("the `disk-writes:` report has no `end` line"),
            Self::Malformed(t) => write!(f, "malformed `disk-writes:` text `{t}`"),
            Self::Count { announced, found } => write!(
                f,
                "the `disk-writes:` report announces {announced} blocks but lists {found}"
            ),
            Self::Duplicate(b) => write!(f, "the `disk-writes:` report lists block {b} twice"),
        }
    }
}

/// Reads the report out of a boot's console lines (other lines are ignored; a line's
/// text after `# disk-writes:`). Exactly one report per boot.
pub fn parse<'a>(lines: impl IntoIterator<Item = &'a str>) -> Result<Vec<BlockWrite>, ReportError> {
    let mut announced: Option<usize> = None;
    let mut ended = false;
    let mut blocks: Vec<BlockWrite> = Vec::new();
    for line in lines {
        let Some(rest) = line.trim().strip_prefix('#').map(str::trim_start) else {
            continue;
        };
        let Some(body) = rest.strip_prefix(PREFIX).map(str::trim) else {
            continue;
        };
        let malformed = || ReportError::Malformed(String::from(body));
        if let Some(n) = body.strip_prefix("begin blocks=") {
            if announced.is_some() {
                return Err(malformed());
            }
            announced = Some(n.parse().map_err(|_| malformed())?);
        } else if let Some(n) = body.strip_prefix("end blocks=") {
            let count: usize = n.parse().map_err(|_| malformed())?;
            let Some(begin) = announced.filter(|_| !ended) else {
                return Err(malformed());
            };
            for n in [begin, count] {
                if n != blocks.len() {
                    return Err(ReportError::Count {
                        announced: n,
                        found: blocks.len(),
                    });
                }
            }
            ended = true;
        } else {
            if announced.is_none() || ended {
                return Err(malformed());
            }
            for entry in body.split_whitespace() {
                let b = parse_entry(entry)
                    .ok_or_else(|| ReportError::Malformed(String::from(entry)))?;
                if blocks.last().is_some_and(|last| last.block >= b.block) {
                    return Err(if blocks.iter().any(|x| x.block == b.block) {
                        ReportError::Duplicate(b.block)
                    } else {
                        ReportError::Malformed(String::from(entry))
                    });
                }
                blocks.push(b);
            }
        }
    }
    match (announced, ended) {
        (None, _) => Err(ReportError::Missing),
        (Some(_), false) => Err(ReportError::Unterminated),
        (Some(_), true) => Ok(blocks),
    }
}

fn parse_entry(entry: &str) -> Option<BlockWrite> {
    let mut parts = entry.split(':');
    let block = u64::from_str_radix(parts.next()?, 16).ok()?;
    let mask = u8::from_str_radix(parts.next()?, 16).ok()?;
    let digest = u64::from_str_radix(parts.next()?, 16).ok()?;
    (parts.next().is_none() && mask != 0).then_some(BlockWrite {
        block,
        mask,
        digest,
    })
}

/// The reports of successive boots on the same disk as one: a later boot's entry
/// replaces an earlier one for the same block if it wrote at least the same sectors;
/// otherwise the block's contents depend on both boots' data and cannot be checked.
pub fn merge(boots: &[Vec<BlockWrite>]) -> Result<Vec<BlockWrite>, Mismatch> {
    let mut merged: BTreeMap<u64, BlockWrite> = BTreeMap::new();
    for boot in boots {
        for b in boot {
            if let Some(old) = merged.get(&b.block)
                && old.mask & !b.mask != 0
            {
                return Err(Mismatch::Overlap { block: b.block });
            }
            merged.insert(b.block, *b);
        }
    }
    Ok(merged.into_values().collect())
}

/// How the disk file disagrees with the original and the guest's report.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Mismatch {
    /// The file's length is not the original's.
    Length {
        /// The original length.
        expected: u64,
        /// The file's.
        found: u64,
    },
    /// A block the guest did not report writing differs from the original.
    Unwritten {
        /// The block.
        block: u64,
        /// The first differing byte offset in the block.
        offset: usize,
    },
    /// A sector of a written block the guest did not write differs from the original.
    UnwrittenSector {
        /// The block.
        block: u64,
        /// The sector in the block.
        sector: u64,
    },
    /// The written sectors of a block do not have the digest the guest reported.
    Written {
        /// The block.
        block: u64,
        /// The reported digest.
        reported: u64,
        /// The file's.
        found: u64,
    },
    /// The guest reports a block past the end of the disk.
    OutOfRange {
        /// The block.
        block: u64,
    },
    /// Two boots wrote different sectors of one block (see [`merge`]).
    Overlap {
        /// The block.
        block: u64,
    },
}

impl fmt::Display for Mismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Length { expected, found } => {
                write!(f, "the disk file has {found} bytes, the disk {expected}")
            }
            Self::Unwritten { block, offset } => write!(
                f,
                "block {block} differs from the original at byte {offset}, and the guest did not report writing it"
            ),
            Self::UnwrittenSector { block, sector } => write!(
                f,
                "sector {sector} of block {block} differs from the original, and the guest reported writing only other sectors of the block"
            ),
            Self::Written {
                block,
                reported,
                found,
            } => write!(
                f,
                "block {block} does not hold what the guest reported writing (digest {found:016x}, reported {reported:016x})"
            ),
            Self::OutOfRange { block } => {
                write!(
                    f,
                    "the guest reports writing block {block}, past the end of the disk"
                )
            }
            Self::Overlap { block } => write!(
                f,
                "two boots wrote different sectors of block {block}: its contents cannot be checked"
            ),
        }
    }
}

/// Checks the disk file `disk` against `original` (what it held before the run) and the
/// guest's merged report: every mismatch, in block order.
pub fn verify(original: &[u8], disk: &[u8], writes: &[BlockWrite]) -> Vec<Mismatch> {
    let mut found = Vec::new();
    if original.len() != disk.len() {
        found.push(Mismatch::Length {
            expected: original.len() as u64,
            found: disk.len() as u64,
        });
        return found;
    }
    let blocks = disk.len().div_ceil(PAGE_BYTES) as u64;
    let reported: BTreeMap<u64, &BlockWrite> = writes.iter().map(|w| (w.block, w)).collect();
    for w in writes.iter().filter(|w| w.block >= blocks) {
        found.push(Mismatch::OutOfRange { block: w.block });
    }
    for (n, (old, new)) in original
        .chunks(PAGE_BYTES)
        .zip(disk.chunks(PAGE_BYTES))
        .enumerate()
    {
        let block = n as u64;
        match reported.get(&block) {
            None => {
                if let Some(offset) = crate::image::first_difference(old, new) {
                    found.push(Mismatch::Unwritten { block, offset });
                }
            }
            Some(w) => {
                let sectors = old.chunks(SECTOR_BYTES).zip(new.chunks(SECTOR_BYTES));
                if let Some(sector) = sectors
                    .enumerate()
                    .position(|(s, (a, b))| w.mask & (1 << s) == 0 && a != b)
                {
                    found.push(Mismatch::UnwrittenSector {
                        block,
                        sector: sector as u64,
                    });
                }
                let digest = w.digest_of(new);
                if digest != w.digest {
                    found.push(Mismatch::Written {
                        block,
                        reported: w.digest,
                        found: digest,
                    });
                }
            }
        }
    }
    found
}

#[cfg(test)]
mod tests;
