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
        // The service signal is a floating interruption: any CPU enabled for it may take
        // it. Only the CPU that waits for it enables the subclass, and only while it
        // waits, so the signal always wakes the waiter (the console lock makes it the
        // only one).
        // SAFETY: adding the service-signal subclass only allows an interruption that
        // `zhint_ext_interrupt` handles.
        let before = unsafe { cpu::update_cr0(cr0::SERVICE_SIGNAL, 0) };
        while !SIGNALLED.swap(false, Ordering::Acquire) {
            cpu::enabled_wait_for_external();
        }
        // SAFETY: back to the subclasses this CPU had.
        unsafe { cpu::update_cr0(0, cr0::SERVICE_SIGNAL & !before) };
        PARAMETER.load(Ordering::Relaxed)
    }
}

/// Initializes the console on `sclp` (WRITE EVENT MASK).
pub fn init_console(sclp: &mut sclp::Sclp<ServcBackend>) -> Result<sclp::Consoles, sclp::Error> {
    // SAFETY: the backend is functional: the external new PSW (in the lowcore image)
    // points at the handler, and each wait enables the service-signal subclass; `sclp`
    // lives in a static and never moves.
    unsafe { sclp.init() }
}
