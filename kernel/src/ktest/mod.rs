//! The in-kernel test framework: registration without a central list, a test context
//! with non-fatal assertions, and a runner that reports in KTAP v1.
//!
//! Tests are registered with [`ktest!`](crate::ktest!), which places one [`KTest`]
//! descriptor per test in the `.kernel_tests` link section (kept by `boot/link.ld`,
//! bracketed by `__kernel_tests_start`/`__kernel_tests_end`). The runner sorts them, so
//! link order never matters.

#[cfg(target_arch = "s390x")]
pub mod boundary;
pub mod cpus;
#[cfg(target_arch = "s390x")]
pub mod current;
pub mod glob;
pub mod ktap;
#[cfg(target_arch = "s390x")]
pub mod machine;
pub mod runner;
#[cfg(target_arch = "s390x")]
pub mod smp;
mod test;

pub use runner::{Options, Totals};
pub use test::{Outcome, Test};

/// Flags of a test descriptor.
pub mod flags {
    /// The test expects a program interruption (documentation for `ktest.list`).
    pub const EXPECTS_PGM: u32 = 1 << 0;
    /// The test needs ESSA (real or modelled).
    pub const NEEDS_ESSA: u32 = 1 << 1;
    /// The test takes long; xtask gives it more idle time.
    pub const SLOW: u32 = 1 << 2;
    /// A deliberately failing test of the harness itself, run only with `ktest.selftest`.
    pub const SELFTEST: u32 = 1 << 3;
    /// The test is expected to fail (reported as XFAIL; a pass is a failure).
    pub const XFAIL: u32 = 1 << 4;
    /// A benchmark (prints `# bench:` lines), run only with `ktest.bench`.
    pub const BENCH: u32 = 1 << 5;
    /// The test needs neither the memory manager nor the virtio-blk disk: a boot whose
    /// tests all carry it starts neither (nothing done at boot that a test does not need).
    /// A test that carries it wrongly fails when it asks for either in such a boot; in a
    /// boot that also runs a test without it, both are there and it passes.
    pub const NO_MM: u32 = 1 << 6;

    /// Names for `ktest.list`, in bit order.
    pub const NAMES: [&str; 7] = [
        "expects_pgm",
        "needs_essa",
        "slow",
        "selftest",
        "xfail",
        "bench",
        "no_mm",
    ];
}

/// One registered test.
#[repr(C)]
#[derive(Debug)]
pub struct KTest {
    /// Suite name, e.g. `arch::interrupts`.
    pub suite: &'static str,
    /// Test name within the suite.
    pub name: &'static str,
    /// Source file of the test.
    pub file: &'static str,
    /// Line of the test in `file`.
    pub line: u32,
    /// [`flags`] bits.
    pub flags: u32,
    /// The test body.
    pub run: fn(&mut Test<'_>),
}

impl KTest {
    /// True if the descriptor has every bit of `flag`.
    pub fn has(&self, flag: u32) -> bool {
        self.flags & flag == flag
    }
}

/// Names the suite of the tests that [`ktest!`](crate::ktest!) registers in this module.
///
/// ```ignore
/// kernel::ktest_suite!("arch::interrupts");
/// ```
#[macro_export]
macro_rules! ktest_suite {
    ($suite:literal) => {
        /// The suite of this module's tests.
        const KTEST_SUITE: &str = $suite;
    };
}

/// Registers one test of the module's suite (see [`ktest_suite!`](crate::ktest_suite!)),
/// with optional [`flags`] in brackets. One invocation per test, so that `line!()` is
/// the test's own line:
///
/// ```ignore
/// kernel::ktest! {
///     /// Doc comments and attributes are kept on the test function.
///     fn operation_exception(t) [EXPECTS_PGM] {
///         t.expect_pgm(0x01, kernel::arch::probe::invalid_opcode);
///     }
/// }
/// ```
#[macro_export]
macro_rules! ktest {
    (
        $(#[$meta:meta])*
        fn $name:ident($t:ident) $([$($flag:ident),* $(,)?])? $body:block
    ) => {
        $(#[$meta])*
        fn $name($t: &mut $crate::ktest::Test<'_>) $body

        const _: () = {
            #[used]
            #[unsafe(link_section = ".kernel_tests")]
            static DESCRIPTOR: $crate::ktest::KTest = $crate::ktest::KTest {
                suite: KTEST_SUITE,
                name: stringify!($name),
                file: file!(),
                line: line!(),
                flags: 0 $($(| $crate::ktest::flags::$flag)*)?,
                run: $name,
            };
        };
    };
}

/// Records a failure (and goes on) unless `cond` holds.
#[macro_export]
macro_rules! check {
    ($t:expr, $cond:expr $(,)?) => {
        if !$cond {
            $t.fail_at(file!(), line!(), format_args!("check failed: {}", stringify!($cond)));
        }
    };
    ($t:expr, $cond:expr, $($msg:tt)+) => {
        if !$cond {
            $t.fail_at(
                file!(),
                line!(),
                format_args!("check failed: {}: {}", stringify!($cond), format_args!($($msg)+)),
            );
        }
    };
}

/// Records a failure with both values (and goes on) unless `left == right`.
#[macro_export]
macro_rules! check_eq {
    ($t:expr, $left:expr, $right:expr $(,)?) => {
        match (&$left, &$right) {
            (left, right) => {
                if !(*left == *right) {
                    $t.fail_at(
                        file!(),
                        line!(),
                        format_args!(
                            "check_eq failed: {} == {}: left: {:?}, right: {:?}",
                            stringify!($left),
                            stringify!($right),
                            left,
                            right
                        ),
                    );
                }
            }
        }
    };
}
