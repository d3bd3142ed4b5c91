//! The CPU entries of READ SCP INFO: which CPU addresses the configuration has.

use crate::spec::read_info;

/// Where the CPU entries start when the answer leaves `offset_cpu` at 0 (SCLPs without
/// the extended-length-SCCB facility; kvm-unit-tests `ReadInfo`).
pub const DEFAULT_CPU_ENTRIES_OFFSET: usize = 128;

/// A set of 8-bit CPU addresses (the CPU entry's byte 0), in a 256-bit map.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuAddresses {
    bits: [u64; 4],
    /// Entries the answer announced that lie beyond the bytes that were parsed (a
    /// configuration too large for the SCCB).
    pub truncated: u16,
}

impl CpuAddresses {
    /// Reads `count` 16-byte CPU entries at `offset` (or at
    /// [`DEFAULT_CPU_ENTRIES_OFFSET`] when it is 0) from an answer page.
    pub fn parse(bytes: &[u8], count: u16, offset: u16) -> Self {
        let offset = match usize::from(offset) {
            0 => DEFAULT_CPU_ENTRIES_OFFSET,
            o => o,
        };
        let mut set = CpuAddresses::default();
        for i in 0..usize::from(count) {
            let at = offset + i * read_info::CPU_ENTRY_SIZE;
            match bytes.get(at..at + read_info::CPU_ENTRY_SIZE) {
                Some(entry) => set.insert(entry[0]),
                None => set.truncated += 1,
            }
        }
        set
    }

    fn insert(&mut self, address: u8) {
        self.bits[usize::from(address / 64)] |= 1 << (address % 64);
    }

    /// Whether `address` is in the set.
    pub fn contains(&self, address: u16) -> bool {
        address < 256 && self.bits[usize::from(address / 64)] & (1 << (address % 64)) != 0
    }

    /// The addresses in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = u16> + '_ {
        (0..256u16).filter(|&a| self.contains(a))
    }

    /// How many addresses the set holds.
    pub fn len(&self) -> usize {
        self.bits.iter().map(|w| w.count_ones() as usize).sum()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(offset: usize, addresses: &[u8]) -> std::vec::Vec<u8> {
        let mut page = std::vec![0; 4096];
        for (i, &a) in addresses.iter().enumerate() {
            page[offset + 16 * i] = a;
            page[offset + 16 * i + 14] = 0; // CPU type: CP
        }
        page
    }

    #[test]
    fn entries_at_the_announced_offset_in_any_order() {
        let page = entries(144, &[3, 0, 7, 1]);
        let set = CpuAddresses::parse(&page, 4, 144);
        assert_eq!(set.iter().collect::<std::vec::Vec<_>>(), [0, 1, 3, 7]);
        assert_eq!(set.len(), 4);
        assert!(set.contains(7) && !set.contains(2) && !set.contains(300));
        assert_eq!(set.truncated, 0);
    }

    #[test]
    fn offset_zero_means_128_and_entries_past_the_page_are_counted() {
        let page = entries(128, &[0, 1]);
        assert_eq!(
            CpuAddresses::parse(&page, 2, 0)
                .iter()
                .collect::<std::vec::Vec<_>>(),
            [0, 1]
        );
        // 248 entries after 144 bytes do not fit one page: 3952 / 16 = 247 do.
        let set = CpuAddresses::parse(&std::vec![0; 4096], 248, 144);
        assert_eq!(set.truncated, 1);
        assert_eq!(set.len(), 1); // all parsed entries had address 0
    }
}
