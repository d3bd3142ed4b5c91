//! What the image and its loader give the kernel: the command line at 0x10480, the
//! initrd location in the parameter area, and the layout symbols of `boot/link.ld`.

unsafe extern "C" {
    static zhint_cmdline: [u8; 0xb80];
    static zhint_parmarea: [u64; 7];
    static __text_start: u8;
    static __rodata_end: u8;
    static __bss_start: u8;
    static __kernel_end: u8;
    static __boot_stack_guard: u8;
    static __pgm_stack_guard: u8;
    static __irq_stack_guard: u8;
}

/// The command-line area as the loader left it (NUL-terminated unless it is full).
pub fn command_line_area() -> &'static [u8] {
    // SAFETY: the command-line area is part of the image and only the loader writes it,
    // before the kernel starts.
    unsafe { &*core::ptr::addr_of!(zhint_cmdline) }
}

/// Start and size of the initrd (our backing store) if the loader placed one.
pub fn initrd() -> Option<(u64, u64)> {
    // SAFETY: the parameter area is part of the image, written only by the loader.
    let parm = unsafe { core::ptr::addr_of!(zhint_parmarea).read_volatile() };
    (parm[2] != 0).then_some((parm[1], parm[2]))
}

/// The initrd's contents, handed out once (to the memory manager's block device).
pub fn take_initrd() -> Option<&'static mut [u8]> {
    static TAKEN: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    let (start, size) = initrd()?;
    if TAKEN.swap(true, core::sync::atomic::Ordering::Relaxed) {
        return None;
    }
    // SAFETY: the loader placed `size` bytes at `start`, in memory the kernel never hands
    // out (heap, tables and frame pool are placed after it), identity-mapped; the flag
    // above makes this the only reference ever created.
    Some(unsafe { core::slice::from_raw_parts_mut(start as *mut u8, size as usize) })
}

fn addr(symbol: &u8) -> u64 {
    symbol as *const u8 as u64
}

/// Address ranges of the loaded image.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Start of kernel text (after the lowcore and `.init`).
    pub text_start: u64,
    /// End of read-only data (text, rodata, test registry).
    pub rodata_end: u64,
    /// Start of BSS.
    pub bss_start: u64,
    /// First byte after the image, its BSS and stacks.
    pub kernel_end: u64,
    /// Guard pages below the boot, program-check and interruption stacks.
    pub stack_guards: [u64; 3],
}

/// The image layout from the linker script.
pub fn layout() -> Layout {
    // SAFETY: only the addresses of linker-script symbols are taken, never their contents.
    unsafe {
        Layout {
            text_start: addr(&__text_start),
            rodata_end: addr(&__rodata_end),
            bss_start: addr(&__bss_start),
            kernel_end: addr(&__kernel_end),
            stack_guards: [
                addr(&__boot_stack_guard),
                addr(&__pgm_stack_guard),
                addr(&__irq_stack_guard),
            ],
        }
    }
}
