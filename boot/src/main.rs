//! The zhint kernel image: IPL entry, lowcore image, interrupt entry stubs and the
//! C-library symbols the prebuilt `core` expects. Everything else is in the `kernel`
//! crate; the in-kernel test suites come from the `tests` crate, linked in here because
//! this is the one crate that sees both.
#![no_std]
#![no_main]
#![cfg_attr(not(target_arch = "s390x"), allow(dead_code))]

#[cfg(target_arch = "s390x")]
mod entry;
#[cfg(target_arch = "s390x")]
mod ipl;
#[cfg(target_arch = "s390x")]
mod libc;
#[cfg(target_arch = "s390x")]
mod registry;

/// First Rust code, called by `_start` on the boot stack with DAT off, interrupts
/// disabled, CR0 AFP set and BSS cleared.
#[cfg(target_arch = "s390x")]
#[unsafe(no_mangle)]
extern "C" fn boot_main() -> ! {
    // Referencing the suites crate makes the linker pull in its test descriptors.
    tests::link();
    kernel::start::kernel_main(registry::tests())
}

#[cfg(target_arch = "s390x")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    kernel::panic::handle(info)
}
