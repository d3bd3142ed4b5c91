//! IPL entry (`_start`), the lowcore image and the interruption entry stubs.
//!
//! `_start` runs at 0x10000 and works whether the machine starts it in 64-bit
//! z/Architecture mode (QEMU `-kernel`, PSW restart) or in 31-bit ESA/390 mode (IPL from
//! disk, reader or HMC via the short PSW at 0). The parameter area 0x10400-0x1047f and the
//! command-line area 0x10480-0x10fff are left for the loader (QEMU, zipl, our loaders).
//!
//! Each interruption class has a stub that saves all general registers into a lowcore
//! save area, switches to its own stack, builds a [`kernel::arch::InterruptFrame`]
//! (GPRs, old PSW, FPRs, FPC), calls the Rust handler, and resumes with the (possibly
//! modified) frame. The handlers run with DAT off: the kernel is identity-mapped, so
//! every kernel pointer stays valid.

use core::arch::global_asm;
use kernel::arch::lowcore;

global_asm!(
    r#"
    .section .lowcore, "a"
    .org 0
    # Short ESA/390 IPL PSW (EC, 31-bit, address 0x10000) for disk, reader and HMC IPL;
    # also what diag 308 "load normal" re-reads.
    .long 0x00080000, 0x80010000
    .org 0x1a0
    # z/Architecture new PSWs: restart (QEMU PSW restart and `.ins` loads), then external,
    # SVC, program, machine check and I/O, all 64-bit, disabled, DAT off.
    .quad 0x0000000180000000, _start
    .quad 0x0000000180000000, zhint_ext_entry
    .quad 0x0000000180000000, zhint_svc_entry
    .quad 0x0000000180000000, zhint_pgm_entry
    .quad 0x0000000180000000, zhint_mcck_entry
    .quad 0x0000000180000000, zhint_io_entry

    .section .init, "ax"
    .globl _start
_start:
    # Switch to z/Architecture if we were IPLed in ESA/390 mode (harmless otherwise).
    slr     %r0, %r0
    lhi     %r1, 2
    sigp    %r1, %r0, 0x12
    sam64
    larl    %r1, .Linitial_psw
    lpswe   0(%r1)
.Lin_zarch:
    larl    %r1, .Linitial_cr0
    lctlg   %c0, %c0, 0(%r1)
    # Clear BSS: disk and HMC loaders don't zero it for us.
    larl    %r2, __bss_start
    larl    %r3, __bss_end
    sgr     %r3, %r2
    lghi    %r4, 0
    lghi    %r5, 0
0:  mvcle   %r2, %r4, 0
    jo      0b
    # CPU 0's stacks for the entry stubs, in its lowcore (a secondary's bring-up fills
    # in its own).
    larl    %r1, __pgm_stack_top
    stg     %r1, {pgm_top}
    larl    %r1, __pgm_stack_bottom
    stg     %r1, {pgm_bottom}
    larl    %r1, __irq_stack_top
    stg     %r1, {irq_top}
    larl    %r1, __irq_stack_bottom
    stg     %r1, {irq_bottom}
    larl    %r15, __boot_stack_top
    aghi    %r15, -160
    xc      0(8, %r15), 0(%r15)
    brasl   %r14, boot_main
    j       .

    .balign 8
.Linitial_psw:
    .quad   0x0000000180000000, .Lin_zarch
.Linitial_cr0:
    # AFP-register control (bit 45): the linux-gnu core uses all 16 FPRs.
    .quad   0x0000000000040000

    # Parameter area as Linux lays it out; QEMU stores the initrd start/size here.
    .org    0x400
    .globl  zhint_parmarea
zhint_parmarea:
    .quad   0               # 0x10400 IPL device
    .quad   0               # 0x10408 initrd start
    .quad   0               # 0x10410 initrd size
    .quad   0               # 0x10418 oldmem base
    .quad   0               # 0x10420 oldmem size
    .quad   0               # 0x10428 kernel version offset
    .quad   0xb80           # 0x10430 command-line area size (0x10480-0x10fff)
    .org    0x480
    .globl  zhint_cmdline
zhint_cmdline:
    .fill   0xb80, 1, 0
"#,
    pgm_top = const lowcore::stack::PGM_TOP,
    pgm_bottom = const lowcore::stack::PGM_BOTTOM,
    irq_top = const lowcore::stack::IRQ_TOP,
    irq_bottom = const lowcore::stack::IRQ_BOTTOM,
);

// Where SIGP RESTART sends a secondary CPU (its restart new PSW; see
// `kernel::arch::smp`): DAT off, disabled, 64-bit, with whatever control registers the
// reset left. It loads the control registers and the stack its bring-up stored in its
// lowcore and enters the kernel. A restart after the watchdog stopped the CPU comes here
// too and starts afresh on the same, now abandoned, stack.
global_asm!(
    r#"
    .section .text.zhint_secondary_entry, "ax"
    .globl zhint_secondary_entry
zhint_secondary_entry:
    lctlg   %c0, %c15, {crs}
    lg      %r15, {restart_top}
    aghi    %r15, -160
    xc      0(8, %r15), 0(%r15)
    brasl   %r14, zhint_secondary_main
    j       .
"#,
    crs = const lowcore::CONTROL_REGISTERS,
    restart_top = const lowcore::stack::RESTART_TOP,
);

// One stub per interruption class. Save areas live in the lowcore (real addresses reached
// with base register 0, so with prefixing every CPU saves into its own) and the stub
// resumes through a return-PSW slot outside the low-address-protected 0-511 where the old
// PSWs are; a nested interruption of the same class may overwrite the save area and old
// PSW, because the outer handler has copied both into its frame and writes them back
// before it returns. The stacks are per CPU too: their top and bottom are lowcore fields.
// The frame layout must match `kernel::arch::InterruptFrame`: gprs[16] @0, psw @128,
// fprs[16] @144, fpc @272.
global_asm!(
    r#"
    .macro INT_ENTRY name, save, oldpsw, retpsw, stack, bottom, handler
    .section .text.\name, "ax"
    .globl \name
\name:
    stmg    %r0, %r15, \save
    # Interrupted on this class's own stack (a nested interruption, e.g. an emulated
    # ESSA inside the program-check handler): keep going below the current frame.
    lg      %r15, \save + 120
    lg      %r1, \bottom
    clgr    %r15, %r1
    jl      1f
    lg      %r1, \stack
    clgr    %r15, %r1
    jle     2f
1:  lg      %r15, \stack
2:  aghi    %r15, -(160 + 288)
    xc      0(8, %r15), 0(%r15)
    mvc     160(128, %r15), \save
    mvc     288(16, %r15), \oldpsw
    std     %f0, 304(%r15)
    std     %f1, 312(%r15)
    std     %f2, 320(%r15)
    std     %f3, 328(%r15)
    std     %f4, 336(%r15)
    std     %f5, 344(%r15)
    std     %f6, 352(%r15)
    std     %f7, 360(%r15)
    std     %f8, 368(%r15)
    std     %f9, 376(%r15)
    std     %f10, 384(%r15)
    std     %f11, 392(%r15)
    std     %f12, 400(%r15)
    std     %f13, 408(%r15)
    std     %f14, 416(%r15)
    std     %f15, 424(%r15)
    stfpc   432(%r15)
    la      %r2, 160(%r15)
    brasl   %r14, \handler
    lfpc    432(%r15)
    ld      %f0, 304(%r15)
    ld      %f1, 312(%r15)
    ld      %f2, 320(%r15)
    ld      %f3, 328(%r15)
    ld      %f4, 336(%r15)
    ld      %f5, 344(%r15)
    ld      %f6, 352(%r15)
    ld      %f7, 360(%r15)
    ld      %f8, 368(%r15)
    ld      %f9, 376(%r15)
    ld      %f10, 384(%r15)
    ld      %f11, 392(%r15)
    ld      %f12, 400(%r15)
    ld      %f13, 408(%r15)
    ld      %f14, 416(%r15)
    ld      %f15, 424(%r15)
    mvc     \retpsw(16), 288(%r15)
    mvc     \save(128), 160(%r15)
    lmg     %r0, %r15, \save
    lpswe   \retpsw
    .endm

    INT_ENTRY zhint_ext_entry,  {save_ext},  0x130, {ret_ext},  {irq_top}, {irq_bottom}, zhint_ext_interrupt
    INT_ENTRY zhint_svc_entry,  {save_svc},  0x140, {ret_svc},  {pgm_top}, {pgm_bottom}, zhint_svc_interrupt
    INT_ENTRY zhint_pgm_entry,  {save_pgm},  0x150, {ret_pgm},  {pgm_top}, {pgm_bottom}, zhint_pgm_interrupt
    INT_ENTRY zhint_mcck_entry, {save_mcck}, 0x160, {ret_mcck}, {irq_top}, {irq_bottom}, zhint_mcck_interrupt
    INT_ENTRY zhint_io_entry,   {save_io},   0x170, {ret_io},   {irq_top}, {irq_bottom}, zhint_io_interrupt
"#,
    save_ext = const lowcore::save::EXT,
    save_svc = const lowcore::save::SVC,
    save_pgm = const lowcore::save::PGM,
    save_mcck = const lowcore::save::MCCK,
    save_io = const lowcore::save::IO,
    ret_ext = const lowcore::return_psw::EXT,
    ret_svc = const lowcore::return_psw::SVC,
    ret_pgm = const lowcore::return_psw::PGM,
    ret_mcck = const lowcore::return_psw::MCCK,
    ret_io = const lowcore::return_psw::IO,
    pgm_top = const lowcore::stack::PGM_TOP,
    pgm_bottom = const lowcore::stack::PGM_BOTTOM,
    irq_top = const lowcore::stack::IRQ_TOP,
    irq_bottom = const lowcore::stack::IRQ_BOTTOM,
);
