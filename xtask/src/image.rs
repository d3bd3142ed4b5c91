//! `cargo xtask image`: the kernel in the forms real machines load.
//!
//! | format | files | loaded by |
//! |---|---|---|
//! | `elf` | `zhint.elf` | QEMU `-kernel` |
//! | `raw` | `zhint.bin`: flat memory image from address 0 | QEMU `-kernel`, zipl, HMC |
//! | `zvm` | `zhint.img` (reader deck), `zhint.parm`, `ZHINT.EXEC`, `vmur.sh`, `README.txt` | z/VM reader IPL |
//! | `lpar` | `zhint.ins`, `zhint.bin`, `zhint.parm` | HMC "Load from Removable Media or Server" |
//!
//! Kernel arguments end up in the kernel's command-line area (0x10480) in every form: written
//! into the image (`elf`, `raw`, `zvm`), or loaded there from the parameter file (`zvm`
//! through the reader loader, `lpar` through the `.ins` file). The `zvm` and `lpar` forms
//! also carry the backing store as an initrd: loaded at [`INITRD_START`] (as QEMU's
//! `-initrd`) and announced in the kernel's parameter area at 0x10408 (start) and 0x10410
//! (size), which xtask fills in the image as QEMU does. QEMU overwrites the command-line area
//! whenever it starts the kernel at 0x10000 (with "" when there is no `-append`), so an image
//! with built-in arguments gets its IPL PSW pointed at `zhint_ipl_direct_entry`, a jump to
//! `_start` that QEMU does not treat as a Linux-style entry. See `docs/zvm-lpar.md`.

mod deck;
mod elf;

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};
use clap::ValueEnum;

pub use elf::Elf;

/// Address of the kernel's command-line area.
pub const COMMAND_LINE: usize = 0x10480;
/// Size of the command-line area including the terminating NUL.
pub const COMMAND_LINE_SIZE: usize = 0xb80;
/// The kernel's parameter area: initrd start at +8, its size at +16 (Linux's layout,
/// which QEMU fills for `-initrd`).
pub const PARM_AREA: usize = 0x10400;
/// Where the loaders put the initrd: QEMU's `INITRD_START` (`hw/s390x/ipl.h`), unless
/// the kernel reaches beyond it (then the next MiB after the kernel).
pub const INITRD_START: u64 = 0x80_0000;

/// The image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// The ELF QEMU boots.
    Elf,
    /// Flat memory image from address 0.
    Raw,
    /// z/VM reader deck with parameter file, CMS EXEC and vmur commands.
    Zvm,
    /// HMC `.ins` load with image and parameter file.
    Lpar,
}

/// Writes the image files of `format` for the kernel ELF `kernel` into `out`, with the
/// backing-store image `initrd` where the format carries one; returns the files.
pub fn write(
    kernel: &Path,
    format: Format,
    out: &Path,
    kernel_args: &[String],
    initrd: Option<&Path>,
) -> Result<Vec<PathBuf>> {
    let bytes =
        std::fs::read(kernel).with_context(|| format!("cannot read {}", kernel.display()))?;
    let initrd = initrd
        .map(|path| std::fs::read(path).with_context(|| format!("cannot read {}", path.display())))
        .transpose()?;
    let files = build(&bytes, format, kernel_args, initrd.as_deref())?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut written = Vec::new();
    for (name, contents) in files {
        let path = out.join(name);
        crate::backing_store::write_if_changed(&path, &contents)?;
        written.push(path);
    }
    Ok(written)
}

/// Whether `format` carries a backing-store image (the others are started by QEMU,
/// which loads one with `-initrd`).
pub fn carries_initrd(format: Format) -> bool {
    matches!(format, Format::Zvm | Format::Lpar)
}

/// The files (name, contents) of `format` for the kernel ELF `elf_bytes`, with the
/// backing-store image `initrd` (only `zvm` and `lpar` carry one).
pub fn build(
    elf_bytes: &[u8],
    format: Format,
    kernel_args: &[String],
    initrd: Option<&[u8]>,
) -> Result<Vec<(String, Vec<u8>)>> {
    let elf = Elf::parse(elf_bytes)?;
    ensure!(
        initrd.is_none() || carries_initrd(format),
        "the {format:?} image carries no initrd: QEMU loads the backing store with -initrd"
    );
    Ok(match format {
        Format::Elf => {
            let mut bytes = elf_bytes.to_vec();
            if !kernel_args.is_empty() {
                patch_elf_command_line(&mut bytes, &elf, kernel_args)?;
            }
            vec![("zhint.elf".into(), bytes)]
        }
        Format::Raw => vec![("zhint.bin".into(), raw_image(&elf, kernel_args)?)],
        Format::Zvm => {
            let mut image = raw_image(&elf, kernel_args)?;
            if let Some(initrd) = initrd {
                set_initrd(&mut image, initrd_start(&elf)?, initrd.len())?;
            }
            let loader_start = usize::try_from(elf.symbol("zhint_ipl_loader")?)?;
            let loader_end = usize::try_from(elf.symbol("__ipl_loader_end")?)?;
            let deck = deck::build(&deck::DeckInput {
                image: &image,
                loader: loader_start..loader_end,
                kernel_records_word: usize::try_from(elf.symbol("zhint_ipl_kernel_records")?)?,
                initrd: initrd.unwrap_or_default(),
            })?;
            vec![
                ("zhint.img".into(), deck),
                (
                    "zhint.parm".into(),
                    deck::parmfile(kernel_args)?.into_bytes(),
                ),
                ("ZHINT.EXEC".into(), ZVM_EXEC.as_bytes().to_vec()),
                ("vmur.sh".into(), ZVM_VMUR.as_bytes().to_vec()),
                ("README.txt".into(), ZVM_README.as_bytes().to_vec()),
            ]
        }
        Format::Lpar => {
            // The parameter file the .ins loads at 0x10480 is the only command line: the
            // image's own area stays zero, so a shorter parameter file leaves no remnant.
            let mut image = raw_image(&elf, &[])?;
            let mut parm = kernel_args.join(" ");
            check_command_line(&parm)?;
            parm.push('\n');
            let mut ins = String::from(LPAR_INS);
            if let Some(initrd) = initrd {
                let start = initrd_start(&elf)?;
                set_initrd(&mut image, start, initrd.len())?;
                ins.push_str(&format!("{LPAR_INITRD} {start:#010x}\n"));
            }
            let mut files = vec![
                ("zhint.ins".into(), ins.into_bytes()),
                ("zhint.bin".into(), image),
                ("zhint.parm".into(), parm.into_bytes()),
            ];
            if let Some(initrd) = initrd {
                files.push((LPAR_INITRD.into(), initrd.to_vec()));
            }
            files
        }
    })
}

/// Where the initrd goes for the kernel `elf`: [`INITRD_START`], or the first MiB
/// boundary after the kernel's end (`__kernel_end`: image, BSS and stacks) if that is
/// higher.
pub fn initrd_start(elf: &Elf) -> Result<u64> {
    let kernel_end = elf.symbol("__kernel_end")?;
    Ok(INITRD_START.max(kernel_end.next_multiple_of(1 << 20)))
}

/// The least storage, in whole MiB, a `zvm` or `lpar` load with an initrd of
/// `initrd_size` bytes boots in: the initrd at [`INITRD_START`], then the kernel's minimum
/// heap, page tables and pool (`layout::minimum_memory`, the rule the kernel itself
/// checks). Unlike under QEMU no firmware sits at the end of storage.
pub fn minimum_storage_mib(initrd_size: u64) -> u64 {
    layout::minimum_memory(INITRD_START + initrd_size).div_ceil(1 << 20)
}

/// Announces an initrd of `size` bytes at `start` in the kernel's parameter area, as QEMU
/// does for `-initrd` (the kernel reads both words, `kernel::arch::image::initrd`).
pub fn set_initrd(image: &mut [u8], start: u64, size: usize) -> Result<()> {
    ensure!(
        start + size as u64 <= 1 << 31,
        "an initrd of {size} bytes at {start:#x} reaches above 2 GiB, which the loaders cannot address"
    );
    let area = image
        .get_mut(PARM_AREA + 8..PARM_AREA + 24)
        .context("the image has no parameter area")?;
    area[..8].copy_from_slice(&start.to_be_bytes());
    area[8..].copy_from_slice(&(size as u64).to_be_bytes());
    Ok(())
}

/// The flat image from address 0, with `kernel_args` in the command-line area and then the
/// IPL PSW aimed at `zhint_ipl_direct_entry` (see the module documentation).
pub fn raw_image(elf: &Elf, kernel_args: &[String]) -> Result<Vec<u8>> {
    ensure!(
        elf.entry == 0x10000,
        "the kernel's entry is {:#x}; the IPL PSW and the loaders start 0x10000",
        elf.entry
    );
    let mut image = elf.flat_image()?;
    if !kernel_args.is_empty() {
        let line = kernel_args.join(" ");
        write_command_line(&mut image, &line)?;
        let entry = elf.symbol("zhint_ipl_direct_entry")?;
        set_ipl_psw(&mut image, entry)?;
    }
    Ok(image)
}

/// Points the short ESA/390 IPL PSW at address 0 to `address` (31-bit addressing).
pub fn set_ipl_psw(image: &mut [u8], address: u64) -> Result<()> {
    ensure!(
        address < 1 << 31,
        "IPL PSW address {address:#x} is above 2 GiB"
    );
    ensure!(image.len() >= 8, "image too short for an IPL PSW");
    image[..4].copy_from_slice(&0x0008_0000u32.to_be_bytes());
    image[4..8].copy_from_slice(&(0x8000_0000 | address as u32).to_be_bytes());
    Ok(())
}

fn check_command_line(line: &str) -> Result<()> {
    ensure!(
        line.len() < COMMAND_LINE_SIZE,
        "kernel arguments: {} bytes, the command-line area holds {}",
        line.len(),
        COMMAND_LINE_SIZE - 1
    );
    ensure!(
        line.bytes().all(|b| (b' '..=b'~').contains(&b)),
        "kernel arguments must be printable ASCII"
    );
    Ok(())
}

/// Writes `line`, NUL-terminated, into the image's command-line area.
pub fn write_command_line(image: &mut [u8], line: &str) -> Result<()> {
    check_command_line(line)?;
    ensure!(
        image.len() >= COMMAND_LINE + COMMAND_LINE_SIZE,
        "image has no command-line area"
    );
    let area = &mut image[COMMAND_LINE..COMMAND_LINE + COMMAND_LINE_SIZE];
    area.fill(0);
    area[..line.len()].copy_from_slice(line.as_bytes());
    Ok(())
}

/// Writes the command line into the ELF file bytes of the segment holding 0x10480.
fn patch_elf_command_line(bytes: &mut [u8], elf: &Elf, kernel_args: &[String]) -> Result<()> {
    let line = kernel_args.join(" ");
    check_command_line(&line)?;
    let segment = elf
        .segments
        .iter()
        .find(|s| {
            s.address as usize <= COMMAND_LINE
                && COMMAND_LINE + COMMAND_LINE_SIZE <= s.address as usize + s.data.len()
        })
        .context("no segment holds the command-line area")?;
    let at = usize::try_from(segment.file_offset)? + COMMAND_LINE - segment.address as usize;
    let area = &mut bytes[at..at + COMMAND_LINE_SIZE];
    area.fill(0);
    area[..line.len()].copy_from_slice(line.as_bytes());
    Ok(())
}

/// The `.ins` file: image at 0 (started through its IPL PSW), parameter file at 0x10480;
/// a line for the initrd follows when the load carries one.
const LPAR_INS: &str = "\
* zhint: HMC \"Load from Removable Media or Server\" (see docs/zvm-lpar.md)
zhint.bin 0x00000000
zhint.parm 0x00010480
";

/// File name of the backing store in an LPAR load.
const LPAR_INITRD: &str = "zhint.initrd";

/// CMS EXEC: punch the deck and the parameter file to our own reader and IPL it.
const ZVM_EXEC: &str = r#"/* ZHINT EXEC: IPL the zhint kernel from this virtual machine's reader.  */
/* Needs ZHINT IMG (RECFM F LRECL 80, binary) and ZHINT PARM on an accessed  */
/* disk. The reader must be empty: the IPL reads its first file.            */
address command
'PIPE CP QUERY RDR * ALL | count lines | var n'
if n > 1 then do
  say 'Your reader is not empty:'
  'CP QUERY RDR * ALL'
  say 'Purge it (CP PURGE RDR ALL) or order ZHINT IMG first, then try again.'
  exit 1
end
'CP SPOOL PUNCH * RDR'
'PUNCH ZHINT IMG * (NOHEADER'
if rc <> 0 then exit rc
'PUNCH ZHINT PARM * (NOHEADER'
if rc <> 0 then exit rc
'CP CHANGE RDR ALL KEEP NOHOLD'
'CP SPOOL CONSOLE START'
'CP IPL 00C CLEAR'
"#;

/// The same from a Linux guest with s390-tools.
const ZVM_VMUR: &str = r#"#!/bin/sh
# Punch the zhint deck and parameter file to USER's reader (default: this guest) from
# Linux on z/VM (s390-tools vmur; the reader/punch devices must be online:
# chccwdev -e 000c 000d). Then IPL the reader of that user: from its console
# `#CP IPL 00C CLEAR`, or for this guest `chreipl ccw 0.0.000c && reboot`.
set -e
cd "$(dirname "$0")"
user=${1:+-u $1}
vmur pun -r $user -N ZHINT.IMG zhint.img
vmur pun -r $user -t -N ZHINT.PARM zhint.parm
echo "Order the reader so that ZHINT IMG comes first, ZHINT PARM second (vmur li; vmur or ID)."
"#;

/// Short how-to next to the z/VM files.
const ZVM_README: &str = "\
zhint for z/VM: reader IPL
==========================
zhint.img    the kernel as a reader deck (80-byte records, punch with NOHEADER)
zhint.parm   kernel arguments (text; becomes EBCDIC on CMS, the loader translates)
ZHINT.EXEC   CMS: punches both to your reader, spools the console, IPLs 00C
vmur.sh      the same from a Linux guest (s390-tools vmur)

From CMS:
  1. Upload zhint.img in binary with fixed 80-byte records as ZHINT IMG
     (ftp: binary, quote site fix 80, put zhint.img zhint.img), zhint.parm as
     text as ZHINT PARM, ZHINT.EXEC as text as ZHINT EXEC.
  2. Run ZHINT. The kernel prints KTAP on your console and ends with
     EXIT: STATUS=n and a disabled wait (see docs/zvm-lpar.md for the PSW).
  3. #CP SPOOL CONSOLE STOP CLOSE * RDR, #CP IPL CMS, RECEIVE or vmur the
     console file, then on the host: cargo xtask parse console.txt
The full procedure: docs/zvm-lpar.md in the zhint repository.
";

#[cfg(test)]
mod tests;
