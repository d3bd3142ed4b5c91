//! Just enough of ELF64 big-endian (the kernel's format) to lay out a memory image: the
//! PT_LOAD segments and the symbol table.

use std::collections::HashMap;

use anyhow::{Context, Result, bail, ensure};

const PT_LOAD: u32 = 1;
const SHT_SYMTAB: u32 = 2;
const EM_S390: u16 = 22;

/// One loadable segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Segment {
    /// Physical (load) address.
    pub address: u64,
    /// Where its bytes start in the file.
    pub file_offset: u64,
    /// Its bytes in the file (`p_filesz`; the rest up to `p_memsz` is zero).
    pub data: Vec<u8>,
}

/// The parts of the kernel ELF the image formats need.
#[derive(Debug, Clone)]
pub struct Elf {
    /// Entry address.
    pub entry: u64,
    /// PT_LOAD segments with file bytes, in file order.
    pub segments: Vec<Segment>,
    symbols: HashMap<String, u64>,
}

fn be16(b: &[u8], at: usize) -> Result<u16> {
    let s = b.get(at..at + 2).context("ELF truncated")?;
    Ok(u16::from_be_bytes([s[0], s[1]]))
}

fn be32(b: &[u8], at: usize) -> Result<u32> {
    let s = b.get(at..at + 4).context("ELF truncated")?;
    Ok(u32::from_be_bytes(s.try_into()?))
}

fn be64(b: &[u8], at: usize) -> Result<u64> {
    let s = b.get(at..at + 8).context("ELF truncated")?;
    Ok(u64::from_be_bytes(s.try_into()?))
}

fn range(b: &[u8], offset: u64, size: u64) -> Result<&[u8]> {
    let start = usize::try_from(offset)?;
    let end = start
        .checked_add(usize::try_from(size)?)
        .context("ELF range overflows")?;
    b.get(start..end).context("ELF range outside the file")
}

impl Elf {
    /// Parses an s390x ELF64 executable.
    pub fn parse(bytes: &[u8]) -> Result<Self> {
        ensure!(bytes.starts_with(b"\x7fELF"), "not an ELF file");
        ensure!(
            bytes.get(4) == Some(&2) && bytes.get(5) == Some(&2),
            "not a big-endian ELF64 file"
        );
        ensure!(be16(bytes, 18)? == EM_S390, "not an s390 ELF file");
        let entry = be64(bytes, 24)?;
        let phoff = be64(bytes, 32)?;
        let shoff = be64(bytes, 40)?;
        let phentsize = u64::from(be16(bytes, 54)?);
        let phnum = u64::from(be16(bytes, 56)?);
        let shentsize = u64::from(be16(bytes, 58)?);
        let shnum = u64::from(be16(bytes, 60)?);

        let mut segments = Vec::new();
        for i in 0..phnum {
            let ph = usize::try_from(phoff + i * phentsize)?;
            if be32(bytes, ph)? != PT_LOAD {
                continue;
            }
            let offset = be64(bytes, ph + 8)?;
            let address = be64(bytes, ph + 24)?;
            let filesz = be64(bytes, ph + 32)?;
            if filesz > 0 {
                let data = range(bytes, offset, filesz)?.to_vec();
                segments.push(Segment {
                    address,
                    file_offset: offset,
                    data,
                });
            }
        }

        let mut symbols = HashMap::new();
        for i in 0..shnum {
            let sh = usize::try_from(shoff + i * shentsize)?;
            if be32(bytes, sh + 4)? != SHT_SYMTAB {
                continue;
            }
            let table = range(bytes, be64(bytes, sh + 24)?, be64(bytes, sh + 32)?)?;
            let link = u64::from(be32(bytes, sh + 40)?);
            let strtab_header = usize::try_from(shoff + link * shentsize)?;
            let strings = range(
                bytes,
                be64(bytes, strtab_header + 24)?,
                be64(bytes, strtab_header + 32)?,
            )?;
            for symbol in table.chunks_exact(24) {
                let name_at = usize::try_from(be32(symbol, 0)?)?;
                let name = strings
                    .get(name_at..)
                    .context("symbol name outside strtab")?;
                let end = name.iter().position(|&b| b == 0).unwrap_or(name.len());
                if end > 0 {
                    let name = String::from_utf8_lossy(&name[..end]).into_owned();
                    symbols.insert(name, be64(symbol, 8)?);
                }
            }
        }
        Ok(Self {
            entry,
            segments,
            symbols,
        })
    }

    /// The address of symbol `name`.
    pub fn symbol(&self, name: &str) -> Result<u64> {
        match self.symbols.get(name) {
            Some(&address) => Ok(address),
            None => bail!("the kernel has no symbol `{name}`"),
        }
    }

    /// The flat memory image from address 0 to the end of the last segment's file bytes
    /// (BSS beyond it is cleared by `_start`); gaps are zero.
    pub fn flat_image(&self) -> Result<Vec<u8>> {
        let end = self
            .segments
            .iter()
            .map(|s| s.address + s.data.len() as u64)
            .max()
            .context("the kernel has no loadable bytes")?;
        ensure!(
            end <= 1 << 31,
            "the image ends above 2 GiB ({end:#x}): no flat image"
        );
        let mut image = vec![0; usize::try_from(end)?];
        for segment in &self.segments {
            let start = usize::try_from(segment.address)?;
            image[start..start + segment.data.len()].copy_from_slice(&segment.data);
        }
        Ok(image)
    }
}

/// A minimal ELF with the given segments and symbols, for tests of the image builders.
#[cfg(test)]
pub fn synthetic(entry: u64, segments: &[(u64, &[u8])], symbols: &[(&str, u64)]) -> Vec<u8> {
    let mut strtab = vec![0u8];
    let mut symtab = vec![0u8; 24];
    for (name, value) in symbols {
        let mut symbol = vec![0u8; 24];
        symbol[0..4].copy_from_slice(&(strtab.len() as u32).to_be_bytes());
        symbol[8..16].copy_from_slice(&value.to_be_bytes());
        symtab.extend(symbol);
        strtab.extend(name.as_bytes());
        strtab.push(0);
    }
    let phoff = 64u64;
    let data_start = phoff + 56 * segments.len() as u64;
    let mut out = vec![0u8; data_start as usize];
    let mut headers = Vec::new();
    for (address, data) in segments {
        let mut ph = vec![0u8; 56];
        ph[0..4].copy_from_slice(&PT_LOAD.to_be_bytes());
        ph[8..16].copy_from_slice(&(out.len() as u64).to_be_bytes());
        ph[16..24].copy_from_slice(&address.to_be_bytes());
        ph[24..32].copy_from_slice(&address.to_be_bytes());
        ph[32..40].copy_from_slice(&(data.len() as u64).to_be_bytes());
        ph[40..48].copy_from_slice(&(data.len() as u64).to_be_bytes());
        headers.extend(ph);
        out.extend(*data);
    }
    out[phoff as usize..data_start as usize].copy_from_slice(&headers);
    let symtab_at = out.len() as u64;
    out.extend(&symtab);
    let strtab_at = out.len() as u64;
    out.extend(&strtab);
    let shoff = out.len() as u64;
    let mut section = |kind: u32, offset: u64, size: u64, link: u32| {
        let mut sh = vec![0u8; 64];
        sh[4..8].copy_from_slice(&kind.to_be_bytes());
        sh[24..32].copy_from_slice(&offset.to_be_bytes());
        sh[32..40].copy_from_slice(&size.to_be_bytes());
        sh[40..44].copy_from_slice(&link.to_be_bytes());
        out.extend(sh);
    };
    section(0, 0, 0, 0);
    section(SHT_SYMTAB, symtab_at, symtab.len() as u64, 2);
    section(3, strtab_at, strtab.len() as u64, 0);
    out[0..4].copy_from_slice(b"\x7fELF");
    out[4] = 2;
    out[5] = 2;
    out[6] = 1;
    out[18..20].copy_from_slice(&EM_S390.to_be_bytes());
    out[24..32].copy_from_slice(&entry.to_be_bytes());
    out[32..40].copy_from_slice(&phoff.to_be_bytes());
    out[40..48].copy_from_slice(&shoff.to_be_bytes());
    out[54..56].copy_from_slice(&56u16.to_be_bytes());
    out[56..58].copy_from_slice(&(segments.len() as u16).to_be_bytes());
    out[58..60].copy_from_slice(&64u16.to_be_bytes());
    out[60..62].copy_from_slice(&3u16.to_be_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_and_symbols_make_a_flat_image() {
        let bytes = synthetic(
            0x10000,
            &[(0, b"PSW!"), (0x20, b"code")],
            &[("_start", 0x10000), ("x", 0x22)],
        );
        let elf = Elf::parse(&bytes).unwrap();
        assert_eq!(elf.entry, 0x10000);
        assert_eq!(elf.symbol("x").unwrap(), 0x22);
        assert!(elf.symbol("missing").is_err());
        let image = elf.flat_image().unwrap();
        assert_eq!(image.len(), 0x24);
        assert_eq!(&image[..4], b"PSW!");
        assert_eq!(&image[4..0x20], &[0; 0x1c]);
        assert_eq!(&image[0x20..], b"code");
    }

    #[test]
    fn other_files_are_rejected() {
        assert!(Elf::parse(b"not an elf").is_err());
        let mut little = synthetic(0, &[(0, b"x")], &[]);
        little[5] = 1;
        assert!(Elf::parse(&little).is_err());
        let mut truncated = synthetic(0, &[(0, b"x")], &[]);
        truncated.truncate(70);
        assert!(Elf::parse(&truncated).is_err());
    }
}
