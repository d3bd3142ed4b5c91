//! Everything IPL-format specific in the kernel image: the z/VM reader loader and the
//! character tables it uses for the parameter file.
//!
//! # The reader deck (`cargo xtask image --format zvm`)
//! A z/VM reader IPL reads 80-byte card images. xtask writes the deck, record by record:
//!
//! | records | read by | lands at | contents |
//! |---|---|---|---|
//! | 1 | the IPL itself (24 bytes) | 0x0 | short IPL PSW (ESA/390, 31-bit, 0x2000) and two CCWs |
//! | 2-3 | CCWs of record 1 | 0x18-0xb7 | 20 command-chained READ CCWs |
//! | 4-23 | CCWs of records 2-3 | 0x2000 | this loader (at most 20 x 80 bytes) |
//! | next [`LOWCORE_RECORDS`] | the loader | 0x0 | the image's lowcore (0x0-0x22f) |
//! | next (count patched into the loader) | the loader | 0x10000 | the image from 0x10000 to its end |
//! | the rest of the file | the loader | initrd start (0x10408) | the initrd (backing store), size at 0x10410; none when 0 |
//! | next reader file | the loader | [`PARM_BUFFER`] | the parameter file (optional) |
//!
//! The loader runs in whatever mode the IPL left (ESA/390, or z/Architecture with 31-bit
//! addressing under CZAM), so it uses only ESA/390 instructions and leaves the switch to
//! z/Architecture to `_start`. It reads with SSCH/TSCH, polling, interruptions disabled.
//! The kernel's record count is patched into the loader copy in the deck by xtask, and
//! the initrd's follows from its size in the kernel's parameter area (which xtask fills
//! as QEMU does for `-initrd`), so a short or overlong file is caught instead of started.
//!
//! # The parameter file
//! Punched from CMS it is EBCDIC (CP037), blank-padded 80-byte records; punched raw from
//! Linux it may be ASCII. The loader translates EBCDIC (any byte >= 0x80) to ASCII, turns
//! control characters into blanks, drops leading and trailing blanks, folds runs of blanks
//! (the card boundaries) into one, and stores the result,
//! NUL-terminated, at 0x10480, where the kernel reads its command line whoever wrote it.
//! No parameter file (the reader had no further file): the image's own command line stays.
//!
//! # Disabled waits of the loader (PSW address)
//! | address | meaning |
//! |---|---|
//! | 0x00f10001 | SSCH refused (condition code 1-3) |
//! | 0x00f10002 | fewer than [`LOWCORE_RECORDS`] lowcore records |
//! | 0x00f10003 | the kernel file did not have the record count xtask wrote into the loader, or goes on after the initrd |
//! | 0x00f10004 | TSCH: subchannel not operational |
//! | 0x00f10005 | the file ended inside the initrd |

mod loader;
mod tables;

/// Records of the image's lowcore read to address 0 (0x230 bytes cover the 0x200 of
/// `.lowcore`).
pub const LOWCORE_RECORDS: u32 = 7;
/// Where the loader reads the parameter file before it cleans it up.
pub const PARM_BUFFER: u32 = 0x3000;
/// Most parameter-file records read (36 x 80 = 2880 bytes, below the 0xb80-byte area).
pub const PARM_RECORDS: u32 = 36;
