//! Event counters of the host model, read by tests and `cargo xtask bench`.

/// What the host model has done since it was created. Cheap to copy, so a test
/// can snapshot it before an operation and compare afterwards.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// ESSAs that processed a block, indexed by ORC.
    pub essa_by_orc: [u64; 8],
    /// ESSAs that ended in a program exception or an exception indication.
    pub exceptions: u64,
    /// Frames whose content became zero (each one a `discard_frame` call).
    pub discards: u64,
    /// Accesses answered with a block-volatility exception (0x1A).
    pub discard_faults: u64,
    /// Accesses answered with an addressing exception (strict unused, out of range).
    pub addressing_faults: u64,
    /// Host page-outs: Sr or dirty Pr became Sp.
    pub page_outs: u64,
    /// Paged-out frames brought back by a guest touch.
    pub page_ins: u64,
    /// Zero frames (Uz, Sz) handed back zero-filled on a guest touch (each one a
    /// `restore_zeroed` call).
    pub zero_restores: u64,
    /// Strikes the discard schedule called for (its requested rate).
    pub scheduled_strikes: u64,
    /// Strikes that found a hinted frame and reclaimed it (the achieved rate).
    pub scheduled_reclaims: u64,
    /// Of those, volatile or potentially volatile frames discarded: the ones whose
    /// loss the guest can notice (a discard fault, or make-stable finding it gone).
    pub scheduled_volatile_discards: u64,
}

impl Counters {
    /// ESSAs that processed a block, all ORCs together.
    pub fn essa_total(&self) -> u64 {
        self.essa_by_orc.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_sums_every_orc() {
        let counters = Counters {
            essa_by_orc: [1, 2, 3, 4, 5, 6, 7, 8],
            ..Counters::default()
        };
        assert_eq!(counters.essa_total(), 36);
    }
}
