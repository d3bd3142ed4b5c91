//! Virtual memory areas of one address space (Linux: `vm_area_struct` and the
//! `mmap`/`munmap`/`mprotect`/`mlock` VMA surgery of `mm/mmap.c`, `mm/mprotect.c`,
//! `mm/mlock.c`).
//!
//! VMAs are kept in a `BTreeMap` keyed by start address, never overlap, and
//! are always maximally merged: two adjacent VMAs with equal flags and
//! contiguous backing are one VMA. Range operations split at the range ends,
//! change the VMAs inside, and merge again. This module only edits the tree;
//! the caller ([`super::Mm`]) fixes the page tables with the pieces returned.

use alloc::collections::BTreeMap;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use super::addr::{PAGE_SIZE, VirtAddr, is_aligned};
use super::error::MmError;
use super::ids::MappingId;

/// VMA flags (Linux `VM_*`).
#[derive(Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct VmFlags(u32);

impl VmFlags {
    /// Loads allowed (`VM_READ`).
    pub const READ: Self = Self(1 << 0);
    /// Stores allowed (`VM_WRITE`).
    pub const WRITE: Self = Self(1 << 1);
    /// Stores reach the file (`VM_SHARED`); otherwise private copy-on-write.
    pub const SHARED: Self = Self(1 << 2);
    /// Pages are kept present and never reclaimed (`VM_LOCKED`).
    pub const LOCKED: Self = Self(1 << 3);

    /// The access bits `mprotect` changes.
    pub const PROT_MASK: Self = Self(Self::READ.0 | Self::WRITE.0);

    /// No flag.
    pub const fn empty() -> Self {
        Self(0)
    }

    /// Whether every bit of `other` is set.
    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// Union.
    pub const fn union(self, other: Self) -> Self {
        Self(self.0 | other.0)
    }

    /// `self` without the bits of `other`.
    pub const fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// Whether no bit outside READ, WRITE, SHARED and LOCKED is set.
    pub const fn is_valid(self) -> bool {
        self.0 & !0xf == 0
    }

    /// The raw bits.
    pub const fn bits(self) -> u32 {
        self.0
    }
}

impl core::ops::BitOr for VmFlags {
    type Output = Self;
    fn bitor(self, rhs: Self) -> Self {
        self.union(rhs)
    }
}

impl fmt::Debug for VmFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let bit = |flag: Self, c: char| if self.contains(flag) { c } else { '-' };
        write!(
            f,
            "{}{}{}{}",
            bit(Self::READ, 'r'),
            bit(Self::WRITE, 'w'),
            if self.contains(Self::SHARED) {
                's'
            } else {
                'p'
            },
            bit(Self::LOCKED, 'l')
        )
    }
}

/// What a VMA maps.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum Backing {
    /// Anonymous memory, zero-filled on first touch.
    Anon,
    /// A file: page `pgoff` of `mapping` at the VMA start.
    File {
        /// The page-cache mapping of the file.
        mapping: MappingId,
        /// File page index mapped at the VMA start.
        pgoff: u64,
    },
}

/// One virtual memory area: `[start, end)`, page aligned, non-empty.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Vma {
    start: VirtAddr,
    end: VirtAddr,
    flags: VmFlags,
    backing: Backing,
}

impl Vma {
    /// First byte.
    pub fn start(&self) -> VirtAddr {
        self.start
    }

    /// One past the last byte.
    pub fn end(&self) -> VirtAddr {
        self.end
    }

    /// Flags.
    pub fn flags(&self) -> VmFlags {
        self.flags
    }

    /// Backing object.
    pub fn backing(&self) -> Backing {
        self.backing
    }

    /// The file mapping, for file VMAs.
    pub fn mapping(&self) -> Option<MappingId> {
        match self.backing {
            Backing::File { mapping, .. } => Some(mapping),
            Backing::Anon => None,
        }
    }

    /// Number of pages.
    pub fn pages(&self) -> u64 {
        (self.end.as_u64() - self.start.as_u64()) / PAGE_SIZE
    }

    /// Whether `va` is inside.
    pub fn contains(&self, va: VirtAddr) -> bool {
        self.start <= va && va < self.end
    }

    /// Whether the VMA is `VM_LOCKED`.
    pub fn is_locked(&self) -> bool {
        self.flags.contains(VmFlags::LOCKED)
    }

    /// The file page index mapped at `va` (inside the VMA), for file VMAs.
    pub fn file_index(&self, va: VirtAddr) -> Option<u64> {
        match self.backing {
            Backing::File { pgoff, .. } => {
                Some(pgoff + (va.as_u64() - self.start.as_u64()) / PAGE_SIZE)
            }
            Backing::Anon => None,
        }
    }

    /// The address at which file page `index` is mapped, if this VMA maps it.
    pub fn address_of(&self, mapping: MappingId, index: u64) -> Option<VirtAddr> {
        match self.backing {
            Backing::File { mapping: m, pgoff } if m == mapping => {
                let delta = index.checked_sub(pgoff)?;
                (delta < self.pages())
                    .then(|| VirtAddr::new(self.start.as_u64() + delta * PAGE_SIZE))
            }
            _ => None,
        }
    }

    /// The part of the VMA from `at` on (backing offset adjusted).
    fn tail_from(&self, at: VirtAddr) -> Self {
        let backing = match self.backing {
            Backing::File { mapping, pgoff } => Backing::File {
                mapping,
                pgoff: pgoff + (at.as_u64() - self.start.as_u64()) / PAGE_SIZE,
            },
            Backing::Anon => Backing::Anon,
        };
        Self {
            start: at,
            end: self.end,
            flags: self.flags,
            backing,
        }
    }

    /// Whether `next` starts where `self` ends and both can be one VMA (`vma_merge`).
    fn can_merge(&self, next: &Self) -> bool {
        if self.end != next.start || self.flags != next.flags {
            return false;
        }
        match (self.backing, next.backing) {
            (Backing::Anon, Backing::Anon) => true,
            (
                Backing::File {
                    mapping: a,
                    pgoff: p,
                },
                Backing::File {
                    mapping: b,
                    pgoff: q,
                },
            ) => a == b && p + self.pages() == q,
            _ => false,
        }
    }
}

/// The VMAs of one address space, inside its user range.
#[derive(Clone, Debug)]
pub struct VmaTree {
    vmas: BTreeMap<u64, Vma>,
    user: Range<VirtAddr>,
}

impl VmaTree {
    /// An empty tree whose VMAs must lie in `user` (page aligned).
    pub fn new(user: Range<VirtAddr>) -> Self {
        debug_assert!(user.start.is_page_aligned() && user.end.is_page_aligned());
        Self {
            vmas: BTreeMap::new(),
            user,
        }
    }

    /// The range VMAs may occupy.
    pub fn user_range(&self) -> Range<VirtAddr> {
        self.user.clone()
    }

    /// Validates `(addr, len)`: page aligned, non-zero, no overflow, inside the user range.
    pub fn check_range(&self, addr: VirtAddr, len: u64) -> Result<Range<VirtAddr>, MmError> {
        if len == 0 {
            return Err(MmError::ZeroLength);
        }
        if !addr.is_page_aligned() || !is_aligned(len, PAGE_SIZE) {
            return Err(MmError::Unaligned);
        }
        let end = addr.checked_add(len).ok_or(MmError::Overflow)?;
        if addr < self.user.start || end > self.user.end {
            return Err(MmError::OutOfRange);
        }
        Ok(addr..end)
    }

    /// Number of VMAs.
    pub fn len(&self) -> usize {
        self.vmas.len()
    }

    /// Whether there is no VMA.
    pub fn is_empty(&self) -> bool {
        self.vmas.is_empty()
    }

    /// The VMA containing `va` (`find_vma` + containment check).
    pub fn find(&self, va: VirtAddr) -> Option<&Vma> {
        self.vmas
            .range(..=va.as_u64())
            .next_back()
            .map(|(_, v)| v)
            .filter(|v| v.contains(va))
    }

    /// All VMAs in address order.
    pub fn iter(&self) -> impl Iterator<Item = &Vma> + '_ {
        self.vmas.values()
    }

    /// The VMAs overlapping `range`, in address order.
    pub fn overlapping(&self, range: Range<VirtAddr>) -> impl Iterator<Item = &Vma> + '_ {
        let first = self
            .vmas
            .range(..range.start.as_u64())
            .next_back()
            .filter(|(_, v)| v.end > range.start)
            .map(|(&k, _)| k)
            .unwrap_or(range.start.as_u64());
        self.vmas
            .range(first..range.end.as_u64())
            .map(|(_, v)| v)
            .filter(move |v| v.end > range.start)
    }

    /// The VMAs that map file `mapping` (for the reverse map).
    pub fn mapping_vmas(&self, mapping: MappingId) -> impl Iterator<Item = &Vma> + '_ {
        self.vmas
            .values()
            .filter(move |v| v.mapping() == Some(mapping))
    }

    /// Splits the VMA strictly containing `at`, if any (`split_vma`).
    fn split_at(&mut self, at: VirtAddr) {
        let Some((&key, vma)) = self.vmas.range(..at.as_u64()).next_back() else {
            return;
        };
        if vma.end <= at {
            return;
        }
        let tail = vma.tail_from(at);
        self.vmas.get_mut(&key).expect("present").end = at;
        self.vmas.insert(at.as_u64(), tail);
    }

    /// Merges every mergeable neighbour pair touching `range`.
    fn merge_around(&mut self, range: Range<VirtAddr>) {
        let from = self
            .vmas
            .range(..range.start.as_u64())
            .next_back()
            .map_or(range.start.as_u64(), |(&k, _)| k);
        let keys: Vec<u64> = self
            .vmas
            .range(from..=range.end.as_u64())
            .map(|(&k, _)| k)
            .collect();
        let mut current = None::<u64>;
        for key in keys {
            if let Some(prev_key) = current {
                let prev = self.vmas[&prev_key];
                let next = self.vmas[&key];
                if prev.can_merge(&next) {
                    self.vmas.remove(&key);
                    self.vmas.get_mut(&prev_key).expect("present").end = next.end;
                    continue;
                }
            }
            current = Some(key);
        }
    }

    /// Whether `range` is entirely covered by VMAs.
    fn covers(&self, range: Range<VirtAddr>) -> bool {
        let mut cursor = range.start;
        for vma in self.overlapping(range.clone()) {
            if vma.start > cursor {
                return false;
            }
            cursor = vma.end;
        }
        cursor >= range.end
    }

    /// Removes every VMA part inside `range` and returns the removed parts.
    fn remove_range(&mut self, range: Range<VirtAddr>) -> Vec<Vma> {
        self.split_at(range.start);
        self.split_at(range.end);
        let keys: Vec<u64> = self
            .vmas
            .range(range.start.as_u64()..range.end.as_u64())
            .map(|(&k, _)| k)
            .collect();
        keys.into_iter()
            .filter_map(|k| self.vmas.remove(&k))
            .collect()
    }

    fn check_new(flags: VmFlags, backing: Backing) -> Result<(), MmError> {
        if !flags.is_valid() {
            return Err(MmError::PermissionDenied);
        }
        if flags.contains(VmFlags::SHARED) && backing == Backing::Anon {
            // Shared anonymous memory would need a shmem object; not supported.
            return Err(MmError::PermissionDenied);
        }
        Ok(())
    }

    /// `mmap(MAP_FIXED)`: maps `[addr, addr + len)`, replacing whatever was
    /// there; returns the replaced VMA parts, whose pages the caller unmaps.
    pub fn map_fixed(
        &mut self,
        addr: VirtAddr,
        len: u64,
        flags: VmFlags,
        backing: Backing,
    ) -> Result<Vec<Vma>, MmError> {
        let range = self.check_range(addr, len)?;
        Self::check_new(flags, backing)?;
        if let Backing::File { pgoff, .. } = backing {
            pgoff
                .checked_add(len / PAGE_SIZE)
                .ok_or(MmError::Overflow)?;
        }
        let replaced = self.remove_range(range.clone());
        self.vmas.insert(
            range.start.as_u64(),
            Vma {
                start: range.start,
                end: range.end,
                flags,
                backing,
            },
        );
        self.merge_around(range);
        Ok(replaced)
    }

    /// `mmap` without a fixed address: the lowest free range of `len` bytes.
    pub fn map_anywhere(
        &mut self,
        len: u64,
        flags: VmFlags,
        backing: Backing,
    ) -> Result<VirtAddr, MmError> {
        self.check_range(self.user.start, len).map_err(|e| {
            if e == MmError::OutOfRange {
                MmError::NoSpace
            } else {
                e
            }
        })?;
        let mut candidate = self.user.start.as_u64();
        for vma in self.vmas.values() {
            if vma.start.as_u64() - candidate >= len {
                break;
            }
            candidate = candidate.max(vma.end.as_u64());
        }
        if self.user.end.as_u64() - candidate < len {
            return Err(MmError::NoSpace);
        }
        let addr = VirtAddr::new(candidate);
        self.map_fixed(addr, len, flags, backing)?;
        Ok(addr)
    }

    /// `munmap`: removes `[addr, addr + len)` (holes allowed); returns the removed parts.
    pub fn unmap(&mut self, addr: VirtAddr, len: u64) -> Result<Vec<Vma>, MmError> {
        let range = self.check_range(addr, len)?;
        let removed = self.remove_range(range.clone());
        self.merge_around(range);
        Ok(removed)
    }

    /// Applies `change` to every VMA part in `range`, which must be fully
    /// mapped (else [`MmError::NotMapped`] and nothing changes); returns the
    /// parts as they are after the change, before merging.
    fn change_range(
        &mut self,
        addr: VirtAddr,
        len: u64,
        change: impl Fn(VmFlags) -> VmFlags,
    ) -> Result<Vec<Vma>, MmError> {
        let range = self.check_range(addr, len)?;
        if !self.covers(range.clone()) {
            return Err(MmError::NotMapped);
        }
        self.split_at(range.start);
        self.split_at(range.end);
        let mut changed = Vec::new();
        for (_, vma) in self
            .vmas
            .range_mut(range.start.as_u64()..range.end.as_u64())
        {
            vma.flags = change(vma.flags);
            changed.push(*vma);
        }
        self.merge_around(range);
        Ok(changed)
    }

    /// `mprotect`: sets the READ/WRITE bits of `[addr, addr + len)` to those in `prot`.
    pub fn protect(
        &mut self,
        addr: VirtAddr,
        len: u64,
        prot: VmFlags,
    ) -> Result<Vec<Vma>, MmError> {
        if !VmFlags::PROT_MASK.contains(prot) {
            return Err(MmError::PermissionDenied);
        }
        self.change_range(addr, len, |f| f.without(VmFlags::PROT_MASK).union(prot))
    }

    /// `mlock` (`locked`) / `munlock`: sets or clears `VM_LOCKED` on `[addr, addr + len)`.
    pub fn set_locked(
        &mut self,
        addr: VirtAddr,
        len: u64,
        locked: bool,
    ) -> Result<Vec<Vma>, MmError> {
        self.change_range(addr, len, |f| {
            if locked {
                f.union(VmFlags::LOCKED)
            } else {
                f.without(VmFlags::LOCKED)
            }
        })
    }

    /// Checks the structural invariants; a description of the first violation.
    pub fn check_invariants(&self) -> Result<(), &'static str> {
        let mut prev: Option<&Vma> = None;
        for (&key, vma) in &self.vmas {
            if key != vma.start.as_u64() {
                return Err("key differs from start");
            }
            if vma.start >= vma.end {
                return Err("empty VMA");
            }
            if !vma.start.is_page_aligned() || !vma.end.is_page_aligned() {
                return Err("unaligned VMA");
            }
            if vma.start < self.user.start || vma.end > self.user.end {
                return Err("VMA outside the user range");
            }
            if let Some(p) = prev {
                if p.end > vma.start {
                    return Err("overlapping VMAs");
                }
                if p.can_merge(vma) {
                    return Err("mergeable neighbours left unmerged");
                }
            }
            prev = Some(vma);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
