//! The runner on the machine: the registry from the link section, execution under a
//! program-interruption recovery scope, the TOD clock, and `expect_pgm`.

use super::boundary::Boundary;
use super::runner::{Executor, Injection};
use super::{KTest, Test, current};
use crate::arch::interrupts::PgmInfo;
use alloc::format;
use alloc::string::String;

/// The image's test descriptors, handed over by `boot` ([`set_registry`]).
static REGISTRY: spin::Once<&'static [KTest]> = spin::Once::new();

/// Records the image's test descriptors (once, at start-up).
pub fn set_registry(tests: &'static [KTest]) {
    REGISTRY.call_once(|| tests);
}

/// Every registered test descriptor (none before [`set_registry`]).
pub fn registry() -> &'static [KTest] {
    REGISTRY.get().copied().unwrap_or(&[])
}

/// Runs test bodies on this CPU.
#[derive(Debug, Default)]
pub struct MachineExecutor;

impl Executor for MachineExecutor {
    fn execute(
        &mut self,
        test: &KTest,
        t: &mut Test<'_>,
        position: (usize, usize),
    ) -> Result<(), String> {
        let test: &'static KTest = registry()
            .iter()
            .find(|r| core::ptr::eq(*r, test))
            .expect("runner only runs registered tests");
        run_registered(test, test, t, position)
    }

    fn inject(
        &mut self,
        kind: Injection,
        test: &KTest,
        t: &mut Test<'_>,
        position: (usize, usize),
    ) -> Result<(), String> {
        fn panic_body(_: &mut Test<'_>) {
            panic!("injected panic (ktest.inject)");
        }
        /// Never returns, idly: to xtask a hang is a test without a result, so it need not
        /// burn a host CPU for the whole idle limit as a spinning loop would under TCG.
        fn hang_body(_: &mut Test<'_>) {
            loop {
                crate::arch::cpu::enabled_wait_for_external();
            }
        }
        fn pgm_body(_: &mut Test<'_>) {
            crate::arch::probe::invalid_opcode();
        }
        let body: fn(&mut Test<'_>) = match kind {
            Injection::Panic => panic_body,
            Injection::Hang => hang_body,
            Injection::Pgm => pgm_body,
            Injection::Exit => crate::shutdown::exit(1),
            Injection::Garbage => unreachable!("the runner prints garbage itself"),
        };
        let registered: &'static KTest = registry()
            .iter()
            .find(|r| core::ptr::eq(*r, test))
            .expect("runner only runs registered tests");
        let injected = KTest {
            run: body,
            ..*registered
        };
        run_registered(registered, &injected, t, position)
    }

    fn now_us(&mut self) -> u64 {
        crate::arch::cpu::tod_to_us(crate::arch::cpu::tod())
    }
}

/// Runs `body` as the registered test `test` (named in crash reports) under a
/// program-interruption recovery scope, then puts the kernel's state back and checks
/// what the test left behind ([`Boundary`]).
fn run_registered(
    test: &'static KTest,
    body: &KTest,
    t: &mut Test<'_>,
    position: (usize, usize),
) -> Result<(), String> {
    let boundary = Boundary::take();
    current::set(Some((test, position.1)));
    // The runner's lines since the last body go out before this one runs (it may hang);
    // its own lines go out as it prints them.
    crate::console::release();
    let result = crate::trap::catch(|| (body.run)(t));
    crate::console::hold();
    current::set(None);
    crate::trap::restore_kernel_state();
    // A rule of the series the memory manager found broken while the test ran (the
    // series' VM_BUG_ONs) fails it, whatever the body checked.
    for bug in crate::vm::take_bugs() {
        t.fail_at(test.file, test.line, format_args!("memory manager: {bug}"));
    }
    boundary.check(test, t);
    result.map_err(|info| {
        format!(
            "program interruption 0x{:x} at 0x{:x} ilen {} teid 0x{:x}",
            info.code,
            info.instruction_address(),
            info.ilen,
            info.teid
        )
    })
}

/// How an `expect_pgm` came out: what arrived, or why that is a failure.
pub(super) fn expect_pgm(
    code: u16,
    f: impl FnOnce(),
) -> Result<PgmInfo, (Option<PgmInfo>, String)> {
    let expecting = crate::trap::expecting();
    let result = crate::trap::catch(f);
    drop(expecting);
    match result {
        Ok(()) => Err((
            None,
            format!("expected program interruption 0x{code:x}, none arrived"),
        )),
        Err(info) if info.code != code => Err((
            Some(info),
            format!(
                "expected program interruption 0x{code:x}, got 0x{:x} at 0x{:x}",
                info.code,
                info.instruction_address()
            ),
        )),
        Err(info) => Ok(info),
    }
}

impl Test<'_> {
    /// Runs `f`, which must raise the program interruption `code` (kvm-unit-tests'
    /// `expect_pgm_int` + `check_pgm_int_code`). Records a failure when nothing or
    /// something else arrived; returns what arrived so the test can check the ILC, PSW
    /// and translation-exception id too.
    #[track_caller]
    pub fn expect_pgm(&mut self, code: u16, f: impl FnOnce()) -> Option<PgmInfo> {
        let at = core::panic::Location::caller();
        match expect_pgm(code, f) {
            Ok(info) => Some(info),
            Err((info, message)) => {
                self.fail_at(at.file(), at.line(), format_args!("{message}"));
                info
            }
        }
    }
}
