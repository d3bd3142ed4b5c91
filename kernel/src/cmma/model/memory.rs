//! What the host model needs from the machine: change bits and frame revocation.

/// The memory backend under the host model.
///
/// On s390x the arch glue implements it with storage keys (change bit) and DAT
/// (revocation), because QEMU TCG does not enforce key protection (reference
/// §4, §6.3 items 4-5). Host tests use a fake that records the calls.
pub trait HostMemory {
    /// The change bit of the frame (storage key C, or the glue's emulation of it).
    fn change_bit(&mut self, pfn: u64) -> bool;

    /// Clears the change bit; the model calls it when a frame enters P (§6.3 item 4).
    fn clear_change_bit(&mut self, pfn: u64);

    /// The host discarded the frame: its content is now logically zero.
    ///
    /// The glue poisons the contents, clears R/C and revokes every DAT mapping
    /// of the frame so that any access faults and reaches
    /// [`HostModel::on_access`](super::HostModel::on_access). Called once per
    /// transition to content zero; never for a frame that is already zero.
    fn discard_frame(&mut self, pfn: u64);

    /// A discarded frame is usable again: the glue zero-fills it and restores
    /// its DAT mappings. Called only for frames previously passed to
    /// [`HostMemory::discard_frame`].
    fn restore_zeroed(&mut self, pfn: u64);

    /// Number of 4 KiB frames in the configuration.
    fn frames(&self) -> u64;
}
