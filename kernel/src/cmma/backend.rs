//! Which ESSA the kernel uses: the real instruction where it executes (KVM, z/VM), or
//! the host model, reached through the same instruction: under QEMU TCG (and any machine
//! without CMMA) ESSA raises an operation exception, and the program-interruption
//! handler emulates it here, against [`HostModel`].
//!
//! The model's machine side ([`HostMemory`]) is real: the change bit is the storage
//! key's (TCG emulates R/C); a frame that is not resident (paged out or discarded) is
//! revoked through DAT ([`crate::arch::revoke`]), so any access faults and
//! [`on_translation_fault`] hands it to the model, which brings a paged-out or zero
//! frame back or answers with the block-volatility exception (0x1A) z/VM would deliver.
//! A discarded frame is also poisoned, so a stale read is recognizable.

use super::essa::ProgramException;
use super::model::{AccessVerdict, EssaContext, HostMemory, HostModel, ModelOptions};
use crate::arch::cpu::psw_mask;
use crate::arch::interrupts::{InterruptFrame, PgmInfo, catch_pgm};
use crate::arch::percpu::{CpuNr, this_cpu};
use crate::arch::revoke::{self, Kind};
use crate::arch::storage::{change_bit, clear_key_bits, fill_frame, key};
use crate::arch::sync::{CpuMutex, CpuMutexGuard};
use crate::arch::{essa, kspace};
use crate::cmdline::CmmaMode;
use crate::machine::{Facilities, facility};
use crate::mm::addr::{PAGE_SIZE, Pfn};
use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

/// Byte a discarded frame is filled with, so stale reads are recognizable.
pub const POISON: u8 = 0xdb;

/// The ESSA backend in use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// No page hinting: ESSA is never issued.
    Off = 0,
    /// The real instruction.
    Native = 1,
    /// The host model, behind the trapped instruction.
    Model = 2,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Off => "off (no page hinting)",
            Backend::Native => "native ESSA",
            Backend::Model => "host model (ESSA trapped and emulated)",
        })
    }
}

static BACKEND: AtomicU8 = AtomicU8::new(Backend::Off as u8);

/// Facility 147 (ESSA no-DAT, ORC 7), read once at boot: the emulation runs on every
/// trapped ESSA and must not issue STFLE each time.
static FACILITY_147: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);

/// The host model; present when the backend is [`Backend::Model`]. One lock: every
/// CPU's trapped ESSA goes through it, as a host serializes its page-state updates
/// (KVM: the PGSTE lock of each page; here the whole model, which also runs the host's
/// reclaim). It records its holder, so a fault on the CPU that holds it is told apart
/// from another CPU's ESSA in progress (which is waited for).
pub static MODEL: CpuMutex<Option<HostModel>> = CpuMutex::new(None);

/// The model's lock for an interruption handler: waits while another CPU holds it;
/// `None` if this CPU holds it (the interrupted code is inside the model).
fn lock_in_handler() -> Option<CpuMutexGuard<'static, Option<HostModel>>> {
    if MODEL.held_here() {
        None
    } else {
        Some(MODEL.lock())
    }
}

/// Whether ESSA accepts ORC 7 (stable, no DAT): facility 147, read at boot.
pub fn has_nodat() -> bool {
    FACILITY_147.load(Ordering::Relaxed)
}

/// The backend chosen at boot.
pub fn current() -> Backend {
    match BACKEND.load(Ordering::Relaxed) {
        1 => Backend::Native,
        2 => Backend::Model,
        _ => Backend::Off,
    }
}

/// True if ESSA executes on this machine: an operation exception means it is absent
/// (there is no STFLE bit for it).
pub fn probe() -> bool {
    let _expected = crate::trap::expecting();
    catch_pgm(|| essa::essa(0, 0)).is_ok()
}

/// Picks the backend from `cmma=` and the probe. Where ESSA does not execute, the host
/// model stands in for the host whatever the guest does, so that `cmma=off` runs are
/// measured against the same host (every frame stays stable: it can only be paged out).
pub fn select(mode: CmmaMode, native: bool, memory: u64) -> Backend {
    let backend = match (mode, native) {
        (CmmaMode::Off, _) => Backend::Off,
        (CmmaMode::Auto, true) => Backend::Native,
        (CmmaMode::Auto, false) | (CmmaMode::Model, _) => Backend::Model,
    };
    FACILITY_147.store(
        Facilities(crate::arch::cpu::facilities()).has(facility::CMM_NODAT),
        Ordering::Relaxed,
    );
    if backend == Backend::Model || !native {
        // QEMU TCG emulates reference and change bits only after a first key instruction.
        kspace::enable_storage_keys(0);
        let frames = memory / PAGE_SIZE;
        if let Some(kernel) = kspace::kernel_asce() {
            revoke::init(frames, kernel);
        }
        revoke::set_dat_off_touch(touch_with_dat_off);
        *MODEL.lock() = Some(HostModel::new(frames, ModelOptions::default()));
    }
    BACKEND.store(backend as u8, Ordering::Relaxed);
    backend
}

/// The host model's view of the machine.
#[derive(Debug)]
pub struct MachineHost {
    frames: u64,
}

impl MachineHost {
    /// The machine with `frames` frames of storage.
    pub fn new(frames: u64) -> Self {
        MachineHost { frames }
    }
}

impl HostMemory for MachineHost {
    fn change_bit(&mut self, pfn: u64) -> bool {
        change_bit(pfn * PAGE_SIZE)
    }

    fn clear_change_bit(&mut self, pfn: u64) {
        clear_key_bits(pfn * PAGE_SIZE, key::CHANGE);
    }

    fn discard_frame(&mut self, pfn: u64) {
        // Taken away first, poisoned after: another CPU may be reading the frame through
        // a mapping right now, and must fault rather than see the poison (a host, too,
        // unmaps a page before it reuses the frame).
        revoke::revoke(pfn, Kind::Discarded);
        fill_frame(Pfn::new(pfn), POISON);
        clear_reference_and_change(pfn);
    }

    fn restore_zeroed(&mut self, pfn: u64) {
        // A fresh zero frame, as a host maps a zero page on the first touch.
        fill_frame(Pfn::new(pfn), 0);
        clear_reference_and_change(pfn);
        revoke::restore(pfn);
    }

    fn page_out(&mut self, pfn: u64) {
        revoke::revoke(pfn, Kind::PagedOut);
    }

    fn page_in(&mut self, pfn: u64) {
        revoke::restore(pfn);
    }

    fn still_paged_out(&mut self, pfn: u64) -> bool {
        revoke::kind(pfn) == Some(Kind::PagedOut)
    }

    fn frames(&self) -> u64 {
        self.frames
    }
}

/// §1.4: after a discard, and on a fresh zero frame, the reference and change bits are 0.
fn clear_reference_and_change(pfn: u64) {
    clear_key_bits(pfn * PAGE_SIZE, key::CHANGE | key::REFERENCE);
}

/// Whether this CPU holds the model's lock.
pub fn model_held_here() -> bool {
    MODEL.held_here()
}

/// Releases the model's lock if this CPU held it in a test body (inside
/// [`with_model`]) that was cut short by a program interruption.
pub fn release_after_unwind() {
    MODEL.release_held_by(this_cpu());
}

/// Releases the model's lock if the stopped CPU `cpu` held it.
pub fn release_held_by(cpu: CpuNr) {
    MODEL.release_held_by(cpu);
}

/// Runs `f` on the model and its machine side. `None` when there is no model.
pub fn with_model<R>(f: impl FnOnce(&mut HostModel, &mut MachineHost) -> R) -> Option<R> {
    let mut model = MODEL.lock();
    let model = model.as_mut()?;
    let mut host = MachineHost::new(model.frames());
    Some(f(model, &mut host))
}

/// What became of a program interruption that may be a trapped ESSA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emulation {
    /// Not an ESSA the model handles: dispatch the interruption as it is.
    NotEssa,
    /// Emulated; the frame resumes after the instruction with R1 set.
    Done,
    /// The ESSA raises this program exception instead (same old PSW: suppression).
    Raise(u16),
}

/// Emulates a trapped ESSA against the host model.
pub fn emulate(frame: &mut InterruptFrame, info: &PgmInfo) -> Emulation {
    if info.code != 0x01 || info.ilen != 4 || current() != Backend::Model {
        return Emulation::NotEssa;
    }
    let Some((r1, r2, m3)) =
        essa::instruction_at(info.instruction_address()).and_then(essa::decode)
    else {
        return Emulation::NotEssa;
    };
    let ctx = EssaContext {
        orc_raw: m3,
        addr: frame.gprs[usize::from(r2)],
        problem_state: info.psw.mask & psw_mask::PSTATE != 0,
        facility_147: FACILITY_147.load(Ordering::Relaxed),
    };
    let executed = with_model(|model, host| {
        let result = model.essa(host, ctx);
        if result.is_ok() {
            // A discard schedule (the stress test's `ktest.discard_rate=`) lets the host
            // strike between any two ESSAs, as a real host's reclaim can.
            model.maybe_reclaim(host);
        }
        result
    });
    match executed {
        None => Emulation::NotEssa,
        Some(Ok(old)) => {
            let r1 = usize::from(r1);
            // The whole register receives the state byte, as KVM's `__do_essa` does.
            frame.gprs[r1] = u64::from(old.raw());
            Emulation::Done
        }
        Some(Err(exception)) => Emulation::Raise(exception.code()),
    }
}

/// A translation exception at a frame the model revoked: the model decides whether the
/// access proceeds (retried) or becomes a block-volatility or addressing exception.
/// `None` when the fault has nothing to do with the model. The frame is found through
/// the faulting entry (the kernel's identity map, or the current user space's).
///
/// The model's lock may be held by the interrupted code (a host reclaim a test asked
/// for touches a frame the model just paged out): a paged-out frame is then brought
/// back without the model, which catches up later
/// ([`HostMemory::still_paged_out`]); a discarded one cannot be decided and panics.
/// Another CPU's hold (its ESSA being emulated) is waited for.
pub fn on_translation_fault(info: &PgmInfo) -> Option<Option<PgmInfo>> {
    if !matches!(info.code, 0x10 | 0x11) {
        return None;
    }
    let va = crate::mm::addr::VirtAddr::new(info.teid & !0xfff);
    let fault = revoke::fault_at(kspace::current(), va)?;
    let restore_entry = || {
        if let Some(entry) = fault.entry {
            revoke::unrevoke_entry(entry);
        }
    };
    // The host's lock is held until the entry is valid again, so no other CPU's host
    // takes the frame away in between (this CPU holding it: the fallbacks below).
    let mut guard = lock_in_handler();
    let Some(kind) = fault.kind else {
        // The frame came back since this entry was revoked: make it valid, retry.
        restore_entry();
        return Some(None);
    };
    let verdict = match guard.as_mut() {
        Some(model) => {
            let model = model.as_mut()?;
            let mut host = MachineHost::new(model.frames());
            model.on_access(&mut host, fault.pfn)
        }
        None if kind == Kind::PagedOut => {
            revoke::restore(fault.pfn);
            AccessVerdict::Ok
        }
        None => panic!(
            "touch of host-discarded frame {:#x} while the host model is busy",
            fault.pfn
        ),
    };
    Some(match verdict {
        AccessVerdict::Ok => {
            // The model handed the frame back: make this mapping valid again, retry.
            restore_entry();
            None
        }
        AccessVerdict::BlockVolatility { absolute_addr } => Some(PgmInfo {
            code: ProgramException::BlockVolatility.code(),
            teid: absolute_addr,
            ..*info
        }),
        // An addressing exception suppresses: the old PSW points past the instruction
        // (the translation exception it replaces nullified, pointing at it).
        AccessVerdict::Addressing => Some(PgmInfo {
            code: ProgramException::Addressing.code(),
            psw: crate::arch::cpu::Psw {
                addr: info.psw.addr.wrapping_add(u64::from(info.ilen)),
                ..info.psw
            },
            ..*info
        }),
    })
}

/// The host's answer to an access with DAT off to a frame it revoked (see
/// [`revoke::touched`]): whether the access may go on. A paged-out or zero frame is
/// handed back, as on a touch through DAT; a discarded volatile frame may not be
/// touched. With the model held by this CPU, only a paged-out frame can be handed back.
fn touch_with_dat_off(pfn: u64) -> bool {
    match lock_in_handler() {
        Some(mut model) => model.as_mut().is_some_and(|model| {
            let mut host = MachineHost::new(model.frames());
            model.on_access(&mut host, pfn) == AccessVerdict::Ok
        }),
        None if revoke::kind(pfn) == Some(Kind::PagedOut) => {
            revoke::restore(pfn);
            true
        }
        None => false,
    }
}
