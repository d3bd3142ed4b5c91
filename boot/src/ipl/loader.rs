//! The z/VM reader loader: entered through the deck's IPL PSW, reads the rest of the
//! kernel, its initrd and the parameter file with SSCH/TSCH, and starts `_start` in the mode the IPL
//! left (see the module documentation of [`super`] for the deck layout).
//!
//! Also here: `zhint_ipl_direct_entry`, the IPL PSW target of raw images with built-in
//! kernel arguments, and `zhint_ipl_test_entry`, which QEMU tests start through a raw image's IPL PSW
//! to run the loader's parameter-file stage and its 31-bit jump to `_start` without a
//! card reader.

use super::{LOWCORE_RECORDS, PARM_BUFFER, PARM_RECORDS};
use core::arch::global_asm;

/// Scratch space after the loader (not in the deck): the ORB, the IRB and the CCWs.
const ORB: u32 = 0x2800;
const IRB: u32 = 0x2820;
const CCWS: u32 = 0x2880;
/// Most records one channel program reads.
const CHUNK_RECORDS: u32 = 20;
/// The kernel's command-line area.
const COMMAND_LINE: u32 = 0x10480;
/// The kernel's parameter area (initrd start at +8, size at +16, as QEMU fills it).
const PARM_AREA: u32 = 0x10400;

global_asm!(
    r#"
    .section .ipl_loader, "ax"
    .globl  zhint_ipl_loader
zhint_ipl_loader:
    # r12 = subsystem id of the reader, stored by the IPL at 0xb8; save it before the
    # lowcore records overwrite that word.
    l       %r12, 0xb8
    # Clear any status the IPL left pending, so the first SSCH is accepted.
    lr      %r1, %r12
    lhi     %r4, {irb}
    tsch    0(%r4)
    # The image's lowcore to 0.
    lhi     %r2, 0
    lhi     %r3, {lowcore_records}
    bras    %r14, .Lread
    chi     %r2, {lowcore_records} * 80
    jne     .Lfail_lowcore
    # The kernel from 0x10000: exactly the record count xtask patched in.
    larl    %r1, .Lkernel_start
    l       %r2, 0(%r1)
    larl    %r1, zhint_ipl_kernel_records
    l       %r3, 0(%r1)
    bras    %r14, .Lread
    larl    %r1, zhint_ipl_kernel_records
    l       %r3, 0(%r1)
    lr      %r0, %r3
    sll     %r0, 4
    sll     %r3, 6
    ar      %r3, %r0            # records * 80
    clr     %r2, %r3
    jne     .Lfail_kernel
    # The initrd (the backing store) follows in the same file, to where the kernel's
    # parameter area, just read with the kernel, says: start at 0x10408, size at 0x10410
    # (xtask keeps both below 4 GiB, so the low words are the values).
    bras    %r14, .Linitrd_records
    ltr     %r3, %r3
    jz      1f
    larl    %r1, .Lparm_area
    l       %r1, 0(%r1)
    l       %r2, 12(%r1)
    bras    %r14, .Lread
    lr      %r6, %r2
    bras    %r14, .Linitrd_records
    lr      %r0, %r3
    sll     %r0, 4
    sll     %r3, 6
    ar      %r3, %r0            # records * 80
    clr     %r6, %r3
    jne     .Lfail_initrd
    # Then end of file: a record more means the file is not the one xtask wrote.
1:  lhi     %r2, {parm_buffer}
    lhi     %r3, 1
    bras    %r14, .Lread
    ltr     %r2, %r2
    jnz     .Lfail_kernel
    # The next reader file, if any, is the parameter file.
    lhi     %r2, {parm_buffer}
    lhi     %r3, {parm_records}
    bras    %r14, .Lread
    lr      %r3, %r2
    lhi     %r2, {parm_buffer}
    bras    %r14, .Lkeep_reader_files
    j       .Linstall_parm

    # Entry of raw images with built-in kernel arguments: QEMU overwrites the command-line
    # area (with "" when there is no -append) only when the entry is 0x10000.
    .globl  zhint_ipl_direct_entry
zhint_ipl_direct_entry:
    larl    %r1, _start
    br      %r1

    # QEMU test entry: 31-bit addressing (as after an ESA/390 or CZAM IPL), then the
    # parameter-file stage on zhint_ipl_test_parm_bytes bytes already at the buffer.
    .globl  zhint_ipl_test_entry
zhint_ipl_test_entry:
    sam31
    larl    %r1, zhint_ipl_test_parm_bytes
    l       %r3, 0(%r1)
    lhi     %r2, {parm_buffer}

    # r2 = parameter file, r3 = its length in bytes (0: none, keep the image's line).
.Linstall_parm:
    ltr     %r3, %r3
    jz      .Lstart_kernel
    # EBCDIC if any byte has the high bit set (ASCII arguments never do).
    larl    %r6, zhint_ipl_ascii_table
    lr      %r4, %r2
    lr      %r5, %r3
0:  cli     0(%r4), 0x7f
    jh      1f
    la      %r4, 1(%r4)
    brct    %r5, 0b
    j       2f
1:  larl    %r6, zhint_ipl_ebcdic_table
    # Translate in place, byte by byte.
2:  lr      %r4, %r2
    lr      %r5, %r3
3:  slr     %r7, %r7
    ic      %r7, 0(%r4)
    ic      %r7, 0(%r7, %r6)
    stc     %r7, 0(%r4)
    la      %r4, 1(%r4)
    brct    %r5, 3b
    # Drop trailing blanks (card padding).
4:  lr      %r4, %r2
    ar      %r4, %r3
    ahi     %r4, -1
    cli     0(%r4), 0x20
    jne     5f
    ahi     %r3, -1
    jnz     4b
    # Copy to the command-line area with runs of blanks (the card boundaries) folded into
    # one, and terminate with NUL.
5:  larl    %r1, .Lcommand_line
    l       %r4, 0(%r1)
    lr      %r5, %r2
    lhi     %r0, 0x20           # "previous byte": drops leading blanks
    ltr     %r3, %r3
    jz      8f
6:  slr     %r7, %r7
    ic      %r7, 0(%r5)
    chi     %r7, 0x20
    jne     7f
    cr      %r0, %r7
    je      9f
7:  stc     %r7, 0(%r4)
    la      %r4, 1(%r4)
    lr      %r0, %r7
9:  la      %r5, 1(%r5)
    brct    %r3, 6b
8:  mvi     0(%r4), 0

.Lstart_kernel:
    larl    %r1, _start
    br      %r1

    # Reads 80-byte records with chains of up to {chunk} READ CCWs.
    # In: r2 = destination, r3 = most records, r12 = subsystem id.
    # Out: r2 = bytes read; stops early at end of file (any ending but channel end/device
    # end, as Linux's reader loader does). Clobbers r0, r1, r4-r11.
.Lread:
    lr      %r9, %r2            # start of the data
    lr      %r10, %r2           # next destination
    lr      %r11, %r3           # records still wanted
.Lread_chunk:
    ltr     %r11, %r11
    jz      .Lread_done
    lr      %r8, %r11           # records in this chain: min(wanted, chunk)
    chi     %r8, {chunk}
    jnh     0f
    lhi     %r8, {chunk}
0:  lhi     %r4, {ccws}
    lr      %r5, %r10
    lr      %r6, %r8
    larl    %r1, .Lread_ccw
    l       %r7, 0(%r1)
1:  st      %r7, 0(%r4)
    st      %r5, 4(%r4)
    la      %r4, 8(%r4)
    la      %r5, 80(%r5)
    brct    %r6, 1b
    ahi     %r4, -8
    ni      1(%r4), 0xbf        # no command chaining after the last CCW
    lhi     %r4, {orb}
    larl    %r1, .Lorb
    mvc     0(12, %r4), 0(%r1)
    xc      12(20, %r4), 12(%r4)
    lr      %r1, %r12
    ssch    0(%r4)
    jnz     .Lfail_ssch
2:  lhi     %r4, {irb}
    lr      %r1, %r12
    tsch    0(%r4)
    jo      .Lfail_tsch         # cc 3: not operational
    jnz     2b                  # cc 1: no status yet
    slr     %r0, %r0
    ic      %r0, 8(%r4)         # device status
    chi     %r0, 0x08           # channel end
    je      3f
    chi     %r0, 0x0c           # channel end + device end
    je      3f
    # End of file (or error): bytes = CCWs ended * 80 - residual of the last one.
    l       %r0, 4(%r4)         # SCSW CCW address: last CCW + 8
    lhi     %r1, {ccws}
    sr      %r0, %r1
    lr      %r1, %r0
    sll     %r1, 3
    sll     %r0, 1
    ar      %r0, %r1            # CCWs ended * 80
    slr     %r1, %r1
    icm     %r1, 3, 10(%r4)     # residual count
    sr      %r0, %r1
    jnm     4f                  # no sensible CCW address: count nothing
    slr     %r0, %r0
4:    ar      %r10, %r0
    j       .Lread_done
3:  lr      %r0, %r8            # the whole chain was read
    lr      %r1, %r8
    sll     %r0, 4
    sll     %r1, 6
    ar      %r0, %r1
    ar      %r10, %r0
    sr      %r11, %r8
    j       .Lread_chunk
.Lread_done:
    lr      %r2, %r10
    sr      %r2, %r9
    br      %r14

    # r3 = records of the initrd: its size (low word at 0x10414) / 80, rounded up.
    # Clobbers r0, r1, r4, r5.
.Linitrd_records:
    larl    %r1, .Lparm_area
    l       %r1, 0(%r1)
    l       %r5, 20(%r1)
    ahi     %r5, 79
    slr     %r4, %r4
    lhi     %r0, 80
    dr      %r4, %r0
    lr      %r3, %r5
    br      %r14

    # Under z/VM (STIDP version code 0xff), CHANGE RDR ALL KEEP NOHOLD, as Linux does, so
    # the files read stay in the reader for the next IPL; then clear any status the
    # command left pending on the reader. Keeps r2 and r3.
.Lkeep_reader_files:
    lhi     %r4, {irb}
    stidp   0(%r4)
    cli     0(%r4), 0xff
    jne     1f
    lr      %r10, %r2
    lr      %r11, %r3
    larl    %r2, .Lchange_rdr
    lhi     %r3, .Lchange_rdr_end - .Lchange_rdr
    .insn   rs, 0x83000000, %r2, %r3, 8(%r0)    # DIAGNOSE 8: CP command
    lr      %r2, %r10
    lr      %r3, %r11
    lhi     %r4, {irb}
    lr      %r1, %r12
    stsch   0(%r4)
    tm      31(%r4), 0xff       # SCSW status control: anything pending?
    jz      1f
    lr      %r1, %r12
    tsch    0(%r4)
1:  br      %r14

.Lfail_ssch:
    larl    %r1, .Lwait_ssch
    lpsw    0(%r1)
.Lfail_lowcore:
    larl    %r1, .Lwait_lowcore
    lpsw    0(%r1)
.Lfail_kernel:
    larl    %r1, .Lwait_kernel
    lpsw    0(%r1)
.Lfail_tsch:
    larl    %r1, .Lwait_tsch
    lpsw    0(%r1)
.Lfail_initrd:
    larl    %r1, .Lwait_initrd
    lpsw    0(%r1)

    .balign 8
    # Disabled-wait short PSWs (EC, wait, 31-bit); the address says what failed.
.Lwait_ssch:    .long 0x000a0000, 0x80f10001
.Lwait_lowcore: .long 0x000a0000, 0x80f10002
.Lwait_kernel:  .long 0x000a0000, 0x80f10003
.Lwait_tsch:    .long 0x000a0000, 0x80f10004
.Lwait_initrd:  .long 0x000a0000, 0x80f10005
    # ORB: format-1 CCWs, all paths; the channel program follows.
.Lorb:          .long 0, 0x0080ff00, {ccws}
    # Format-1 READ, command chaining + suppress length, 80 bytes.
.Lread_ccw:     .long 0x02600050
.Lkernel_start: .long 0x10000
.Lcommand_line: .long {command_line}
.Lparm_area:    .long {parm_area}
    # Patched by xtask in the deck's copy: records of the kernel file.
    .globl  zhint_ipl_kernel_records
zhint_ipl_kernel_records: .long 0
    # Patched by xtask in QEMU test images: parameter bytes at the buffer.
    .globl  zhint_ipl_test_parm_bytes
zhint_ipl_test_parm_bytes: .long 0
.Lchange_rdr:   # EBCDIC "CHANGE RDR ALL KEEP NOHOLD"
    .byte 0xc3, 0xc8, 0xc1, 0xd5, 0xc7, 0xc5, 0x40, 0xd9, 0xc4, 0xd9, 0x40
    .byte 0xc1, 0xd3, 0xd3, 0x40, 0xd2, 0xc5, 0xc5, 0xd7, 0x40, 0xd5, 0xd6
    .byte 0xc8, 0xd6, 0xd3, 0xc4
.Lchange_rdr_end:
    .balign 2
"#,
    lowcore_records = const LOWCORE_RECORDS,
    parm_buffer = const PARM_BUFFER,
    parm_records = const PARM_RECORDS,
    chunk = const CHUNK_RECORDS,
    ccws = const CCWS,
    orb = const ORB,
    irb = const IRB,
    command_line = const COMMAND_LINE,
    parm_area = const PARM_AREA,
);
