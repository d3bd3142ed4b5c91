//! Ctrl-C (and SIGTERM/SIGHUP) handling.
//!
//! QEMU runs in its own process group, so a terminal's Ctrl-C reaches only xtask. The handler
//! just raises a flag; the loops that wait for QEMU poll it, return an error, and the
//! kill-on-drop guard in [`crate::qemu`] ends QEMU on the way out.

use std::sync::atomic::{AtomicBool, Ordering};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Installs the handler; call once at start-up.
pub fn install() -> anyhow::Result<()> {
    ctrlc::set_handler(|| INTERRUPTED.store(true, Ordering::SeqCst))?;
    Ok(())
}

/// Whether the user asked xtask to stop.
pub fn requested() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// The error returned when the user interrupted xtask.
#[derive(Debug)]
pub struct Interrupted;

impl std::fmt::Display for Interrupted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("interrupted")
    }
}

impl std::error::Error for Interrupted {}
