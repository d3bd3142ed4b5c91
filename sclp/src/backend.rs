//! The boundary between the driver and the machine: issuing SERVC and waiting for its
//! completion interrupt.

use crate::Sccb;

/// The SERVICE CALL instruction and its completion interrupt. The kernel's arch layer implements
/// this with the real SERVC (`.insn rre,0xb2200000`) and an enabled wait for the service-signal
/// external interrupt (code 0x2401); host tests implement it with a fake SCLP.
///
/// The driver calls `service_call` and, when it returns condition code 0, always
/// `wait_for_completion` before it looks at the SCCB again; it never polls the response code,
/// because z/VM and LPAR complete service calls asynchronously.
///
/// # Safety
/// The driver trusts an implementation to:
/// - hand the SCLP exactly the SCCB it was given (by its real address), and no other;
/// - return from `wait_for_completion` only after the SCLP has finished storing its answer into
///   that SCCB, so that nothing writes to the SCCB while the driver reads or reuses it;
/// - report the condition code and the interruption parameter the machine actually produced.
pub unsafe trait Backend {
    /// Issues SERVC with `command` for the SCCB `sccb`; returns the condition code (0 accepted,
    /// 2 busy, 3 not operational). The SCCB must stay untouched by the driver until
    /// `wait_for_completion` returns.
    fn service_call(&mut self, command: u32, sccb: &mut Sccb) -> u8;

    /// Blocks until the service-signal external interrupt for this request arrives; returns the
    /// interruption parameter (SCCB real address | event-pending bit).
    fn wait_for_completion(&mut self, sccb: &mut Sccb) -> u32;
}
