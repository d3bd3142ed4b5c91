//! `arch::protection`: the kernel's own memory is protected: low-address protection,
//! read-only text, unmapped null page and lowcore, guard pages below the stacks, and
//! no-execute data where the CPU has instruction-execution protection; and key-controlled
//! protection (storage keys against the PSW key) where the machine enforces it.

use alloc::boxed::Box;
use core::hint::black_box;
use kernel::arch::interrupts::PgmInfo;
use kernel::arch::storage::{self, key};
use kernel::arch::{image, kspace, probe};
use kernel::machine::Host;
use kernel::machine::{Facilities, facility};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("arch::protection");

ktest! {
    /// A store to real address 0x100 (low-address-protected lowcore) raises a
    /// protection exception.
    fn low_address_protection(t) [EXPECTS_PGM, NO_MM] {
        if let Some(info) = t.expect_pgm(0x04, || probe::rewrite_low_real(0x100)) {
            // With enhanced suppression on protection 2 (facility 131), TEID bits 56, 60
            // and 61 = 1, 0, 0 name low-address protection. Without it they need not
            // (Hercules 3.13 has no facility 131 and stores 0; docs/zvm-lpar.md), and
            // nothing in the TEID says which protection refused the store.
            if Facilities(kernel::arch::cpu::facilities()).has(facility::ESOP2) {
                check_eq!(t, info.teid & 0x8c, 0x80);
            }
        }
        t.expect_pgm(0x04, || probe::rewrite_low_real(0x1f8));
    }
}

ktest! {
    /// Kernel text is mapped read-only: a store raises a protection exception.
    fn text_is_read_only(t) [EXPECTS_PGM, NO_MM] {
        if let Some(info) = t.expect_pgm(0x04, probe::rewrite_kernel_text) {
            check_eq!(t, info.teid & !0xfff, image::layout().text_start);
        }
        check_eq!(t, kspace::kernel_mapping(image::layout().text_start).map(|m| m.0), Some(false));
        check_eq!(t, kspace::kernel_mapping(image::layout().bss_start).map(|m| m.0), Some(true));
    }
}

ktest! {
    /// Page 0 is not mapped: a null dereference raises a page-translation exception.
    fn null_page_is_unmapped(t) [EXPECTS_PGM, NO_MM] {
        if let Some(info) = t.expect_pgm(0x11, || { black_box(probe::load_null()); }) {
            check_eq!(t, info.teid & !0xfff, 0);
        }
        check!(t, kspace::kernel_mapping(0).is_none());
        check!(t, kspace::kernel_mapping(0x1000).is_none());
    }
}

/// Recurses with a 1 KiB frame until the stack runs out.
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 1024];
    frame[(depth % 1024) as usize] = depth as u8;
    black_box(&mut frame);
    if depth == 0 {
        0
    } else {
        recurse(depth - 1) + u64::from(black_box(frame)[0])
    }
}

ktest! {
    /// Every stack has an unmapped guard page below it; running into it is a
    /// translation exception at the guard page, and the kernel names it a stack overflow.
    fn stack_overflow_hits_the_guard_page(t) [EXPECTS_PGM, NO_MM] {
        let guards = image::layout().stack_guards;
        for guard in guards {
            check!(t, kspace::kernel_mapping(guard).is_none(), "guard {guard:#x} mapped");
            check!(t, kspace::kernel_mapping(guard + 4096).is_some(), "stack above {guard:#x} unmapped");
        }
        if let Some(info) = t.expect_pgm(0x11, || { black_box(recurse(black_box(1_000_000))); }) {
            check_eq!(t, kernel::trap::guard_page_hit(&info), Some((0, "boot")));
        }
    }
}

ktest! {
    /// Data is not executable where the CPU has instruction-execution protection
    /// (facility 130): branching into the heap raises a protection exception.
    fn data_is_not_executable(t) [EXPECTS_PGM, NO_MM] {
        if !Facilities(kernel::arch::cpu::facilities()).has(facility::IEP) {
            t.skip("no instruction-execution protection (facility 130) on this CPU model");
            return;
        }
        // The kernel's side: data pages carry the no-exec bit, text does not, IEP is on.
        check_eq!(t, kspace::kernel_mapping(image::layout().bss_start).map(|m| m.1), Some(false));
        check_eq!(t, kspace::kernel_mapping(image::layout().text_start).map(|m| m.1), Some(true));
        check!(t, kernel::arch::cpu::read_cr::<0>() & (1 << 43) != 0, "CR0 IEP bit off");
        let result = {
            let _expected = kernel::trap::expecting();
            kernel::arch::interrupts::catch_pgm(probe::execute_heap)
        };
        match result {
            Err(info) => check_eq!(t, info.code, 0x04),
            // Observed with QEMU 7.2 TCG: facility 130 is reported, the PTE bit and CR0
            // are set, and the fetch still succeeds. Every other host must trap.
            Ok(()) if kernel::machine::host() == Some(kernel::machine::Host::Tcg) => t.skip(
                "QEMU TCG reports facility 130 but does not enforce instruction-execution protection",
            ),
            Ok(()) => check!(t, false, "execution from a no-exec page did not trap"),
        }
    }
}

/// A 4 KiB frame of its own for a storage-key test: nothing else lives in it, so its
/// storage key is the test's to change. Dropping it puts access key 0 and no fetch
/// protection back (keeping the reference and change bits) before the heap reuses it.
#[repr(C, align(4096))]
struct KeyedFrame([u8; 4096]);

impl KeyedFrame {
    fn new(fill: u8) -> Box<Self> {
        Box::new(Self([fill; 4096]))
    }

    fn address(&self) -> u64 {
        self.0.as_ptr() as u64
    }

    /// Sets the access-control bits and the fetch-protection bit to `access` (an
    /// ISKE-style byte: key in bits 0-3, F in bit 4), keeping R and C.
    fn set_key(&self, access: u8) {
        let kept = storage::iske(self.address()) & (key::REFERENCE | key::CHANGE);
        storage::sske(self.address(), access | kept);
    }
}

impl Drop for KeyedFrame {
    fn drop(&mut self) {
        self.set_key(0);
    }
}

/// Runs `f`, which accesses storage under a PSW key, with a program interruption expected.
fn keyed<R>(f: impl FnOnce() -> R) -> Result<R, PgmInfo> {
    let _expected = kernel::trap::expecting();
    kernel::arch::interrupts::catch_pgm(f)
}

/// The reason to skip when an access that key-controlled protection must refuse went
/// through: observed with QEMU 7.2 TCG, which keeps storage keys for their reference
/// and change bits only. Every other host must refuse it.
const TCG_HAS_NO_KEY_PROTECTION: &str =
    "QEMU TCG does not enforce key-controlled protection (storage keys hold R and C only)";

/// Checks that `result` (an access key-controlled protection must refuse) was refused with
/// a protection exception; true when it went through on TCG, where the test then skips.
fn refused<R>(t: &mut kernel::ktest::Test<'_>, result: Result<R, PgmInfo>, what: &str) -> bool {
    match result {
        Err(info) => check!(
            t,
            info.code == 0x04,
            "{what}: program interruption {:#x}",
            info.code
        ),
        Ok(_) if kernel::machine::host() == Some(Host::Tcg) => return true,
        Ok(_) => check!(t, false, "{what} was not refused"),
    }
    false
}

ktest! {
    /// Key-controlled store protection: a store needs PSW key 0 or the frame's access
    /// key; under any other key it is refused with a protection exception and storage
    /// stays as it was.
    fn store_needs_a_matching_storage_key(t) [EXPECTS_PGM, NO_MM] {
        let mut frame = KeyedFrame::new(0x11);
        frame.set_key(0x90);
        check_eq!(t, storage::iske(frame.address()) & (key::ACCESS | key::FETCH_PROTECTION), 0x90);
        check!(t, keyed(|| probe::store_with_key(&mut frame.0[8], 0x22, 9)).is_ok(), "store under the frame's key");
        check_eq!(t, black_box(&frame.0)[8], 0x22);
        check!(t, keyed(|| probe::store_with_key(&mut frame.0[16], 0x33, 0)).is_ok(), "store under key 0");
        check_eq!(t, black_box(&frame.0)[16], 0x33);
        let result = keyed(|| probe::store_with_key(&mut frame.0[24], 0x44, 3));
        let unenforced = refused(t, result, "a store under key 3 to a key-9 frame");
        if unenforced {
            t.skip(TCG_HAS_NO_KEY_PROTECTION);
        } else {
            check_eq!(t, black_box(&frame.0)[24], 0x11);
        }
        // Fetches are not key-controlled without the fetch-protection bit.
        check_eq!(t, keyed(|| probe::load_with_key(&frame.0[32], 3)).ok(), Some(0x11));
    }
}

ktest! {
    /// Fetch protection: with the frame's fetch-protection bit on, a fetch also needs PSW
    /// key 0 or the frame's access key; without the bit the same fetch goes through.
    fn fetch_protection_needs_a_matching_storage_key(t) [EXPECTS_PGM, NO_MM] {
        let frame = KeyedFrame::new(0x5a);
        frame.set_key(0x30 | key::FETCH_PROTECTION);
        check_eq!(t, keyed(|| probe::load_with_key(&frame.0[40], 3)).ok(), Some(0x5a));
        check_eq!(t, keyed(|| probe::load_with_key(&frame.0[40], 0)).ok(), Some(0x5a));
        let result = keyed(|| probe::load_with_key(&frame.0[40], 5));
        let unenforced = refused(t, result, "a fetch under key 5 from a fetch-protected key-3 frame");
        frame.set_key(0x30);
        // Without the bit the same fetch goes through.
        check_eq!(t, keyed(|| probe::load_with_key(&frame.0[40], 5)).ok(), Some(0x5a));
        if unenforced {
            t.skip(TCG_HAS_NO_KEY_PROTECTION);
        }
    }
}
