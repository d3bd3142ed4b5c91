//! The SERVC backend of the `sclp` crate: the real SERVICE CALL instruction, with
//! completion signalled by the service-signal external interruption (code 0x2401).

use super::cpu::{self, cr0};
use core::arch::asm;
use core::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// Set by the external-interruption handler when a service signal arrives.
static SIGNALLED: AtomicBool = AtomicBool::new(false);
/// Interruption parameter of the last service signal.
static PARAMETER: AtomicU32 = AtomicU32::new(0);

/// Called by the external-interruption handler for code 0x2401.
pub(super) fn service_signal(parameter: u32) {
    PARAMETER.store(parameter, Ordering::Relaxed);
    SIGNALLED.store(true, Ordering::Release);
}

/// The machine's SCLP, reached with SERVC.
#[derive(Debug)]
pub struct ServcBackend;

impl ServcBackend {
    /// Enables the service-signal subclass in CR0 so completions can interrupt.
    pub fn enable_service_signal() {
        // SAFETY: adding the service-signal subclass mask only allows an interruption
        // that `zhint_ext_interrupt` handles.
        unsafe { cpu::write_cr::<0>(cpu::read_cr::<0>() | cr0::SERVICE_SIGNAL) };
    }
}

// SAFETY: `service_call` issues SERVC on the SCCB's real address (the kernel is
// identity-mapped and the SCCB static lies below 2 GiB), and `wait_for_completion`
// returns only after the service-signal interruption for it has arrived.
unsafe impl sclp::Backend for ServcBackend {
    fn service_call(&mut self, command: u32, sccb: &mut sclp::Sccb) -> u8 {
        SIGNALLED.store(false, Ordering::Relaxed);
        let cc: u64;
        // SAFETY: SERVC hands the SCCB to the SCLP, which writes it asynchronously; the
        // driver leaves it untouched until `wait_for_completion` returns.
        unsafe {
            asm!(
                ".insn rre,0xb2200000,{cmd},{addr}",
                "ipm {cc}",
                "srl {cc}, 28",
                cmd = in(reg) u64::from(command),
                addr = in(reg) sccb.addr(),
                cc = out(reg) cc,
                options(nostack),
            );
        }
        cc as u8
    }

    fn wait_for_completion(&mut self, _sccb: &mut sclp::Sccb) -> u32 {
        while !SIGNALLED.swap(false, Ordering::Acquire) {
            cpu::enabled_wait_for_external();
        }
        PARAMETER.load(Ordering::Relaxed)
    }
}

/// Initializes the console on `sclp` (WRITE EVENT MASK) after enabling completions.
pub fn init_console(sclp: &mut sclp::Sclp<ServcBackend>) -> Result<sclp::Consoles, sclp::Error> {
    ServcBackend::enable_service_signal();
    // SAFETY: the backend is functional once the service-signal subclass is enabled and
    // the external new PSW (in the lowcore image) points at the handler; `sclp` lives in
    // a static and never moves.
    unsafe { sclp.init() }
}
