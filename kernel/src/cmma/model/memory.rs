//! What the host model needs from the machine: change bits and frame revocation.

/// The memory backend under the host model.
///
/// On s390x the arch glue implements it with storage keys (change bit) and DAT
/// (revocation), because QEMU TCG does not enforce key protection (reference
/// §4, §6.3 items 4-5). Host tests use a fake that records the calls.
///
/// A frame whose content is not resident (paged out or discarded) is revoked: every
/// guest access to it faults and reaches [`HostModel::on_access`](super::HostModel::on_access),
/// as every access to a non-resident block reaches a real host. The glue may hand a
/// paged-out frame back on its own when the guest touches it while the model is busy
/// ([`HostMemory::still_paged_out`] then says so, and the model catches up).
pub trait HostMemory {
    /// The change bit of the frame (storage key C, or the glue's emulation of it).
    fn change_bit(&mut self, pfn: u64) -> bool;

    /// Clears the change bit; the model calls it when a frame enters P (§6.3 item 4).
    fn clear_change_bit(&mut self, pfn: u64);

    /// The host discarded the frame: its content is now logically zero.
    ///
    /// The glue poisons the contents, clears R/C and revokes every DAT mapping
    /// of the frame so that any access faults. Called once per transition to
    /// content zero (from resident, or from paged out); never for a frame that is
    /// already zero.
    fn discard_frame(&mut self, pfn: u64);

    /// A discarded frame was touched and is usable again: the glue zero-fills it
    /// and restores its DAT mappings. Called only for frames previously passed to
    /// [`HostMemory::discard_frame`].
    fn restore_zeroed(&mut self, pfn: u64);

    /// The host paged the frame out: its bytes stay where they are (the model's
    /// stand-in for the paging device), but every DAT mapping is revoked so the
    /// next touch is seen. Called only for resident frames.
    fn page_out(&mut self, pfn: u64);

    /// A paged-out frame was touched: the glue restores its DAT mappings. Called
    /// only for frames passed to [`HostMemory::page_out`] and still paged out.
    fn page_in(&mut self, pfn: u64);

    /// Whether a frame passed to [`HostMemory::page_out`] is still out, i.e. the glue
    /// did not hand it back on its own after a touch the model did not see.
    fn still_paged_out(&mut self, pfn: u64) -> bool;

    /// Number of 4 KiB frames in the configuration.
    fn frames(&self) -> u64;
}
