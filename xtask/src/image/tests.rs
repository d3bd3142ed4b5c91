//! Image tests: file layouts on a synthetic ELF, then the real kernel: its loader in the
//! deck, and QEMU boots of raw images (64-bit entry, built-in arguments, 31-bit entry with
//! an EBCDIC parameter file, line-mode console capture parsed like the ASCII one).

use std::time::{Duration, Instant};

use super::*;
use crate::qemu::{Console, Machine, Next, RunningQemu};

#[test]
fn lpar_files_are_the_ins_and_what_it_names() {
    let mut lowcore = vec![0u8; 0x200];
    lowcore[..8].copy_from_slice(&[0, 8, 0, 0, 0x80, 1, 0, 0]);
    let init = vec![0u8; 0x1000];
    let elf = elf::synthetic(0x10000, &[(0, &lowcore), (0x10000, &init)], &[]);
    let args = ["ktest.filter=a.*".to_string(), "ktest.seed=7".to_string()];
    let files = build(&elf, Format::Lpar, &args, None).unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["zhint.ins", "zhint.bin", "zhint.parm"]);
    let ins = String::from_utf8(files[0].1.clone()).unwrap();
    let entries: Vec<&str> = ins.lines().filter(|l| !l.starts_with('*')).collect();
    assert_eq!(entries, ["zhint.bin 0x00000000", "zhint.parm 0x00010480"]);
    assert!(
        ins.lines().next().unwrap().starts_with('*'),
        "comment first"
    );
    let image = &files[1].1;
    assert_eq!(image.len(), 0x11000);
    assert_eq!(
        &image[..8],
        &lowcore[..8],
        "IPL PSW at 0 unchanged: starts _start"
    );
    assert!(
        image[COMMAND_LINE..COMMAND_LINE + COMMAND_LINE_SIZE]
            .iter()
            .all(|&b| b == 0),
        "the parameter file is the only command line"
    );
    assert_eq!(files[2].1, b"ktest.filter=a.* ktest.seed=7\n");
}

#[test]
fn lpar_load_carries_the_initrd_where_the_parameter_area_says() {
    let mut lowcore = vec![0u8; 0x200];
    lowcore[..8].copy_from_slice(&[0, 8, 0, 0, 0x80, 1, 0, 0]);
    let init = vec![0u8; 0x1000];
    let initrd: Vec<u8> = (0..=255u8).cycle().take(5000).collect();
    for (kernel_end, start) in [(0x12_1000u64, 0x80_0000u64), (0x81_2345, 0x90_0000)] {
        let elf = elf::synthetic(
            0x10000,
            &[(0, &lowcore), (0x10000, &init)],
            &[("__kernel_end", kernel_end)],
        );
        let files = build(&elf, Format::Lpar, &[], Some(&initrd)).unwrap();
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["zhint.ins", "zhint.bin", "zhint.parm", "zhint.initrd"]
        );
        let ins = String::from_utf8(files[0].1.clone()).unwrap();
        let entries: Vec<&str> = ins.lines().filter(|l| !l.starts_with('*')).collect();
        let initrd_line = format!("zhint.initrd {start:#010x}");
        assert_eq!(
            entries,
            [
                "zhint.bin 0x00000000",
                "zhint.parm 0x00010480",
                initrd_line.as_str()
            ],
            "kernel end {kernel_end:#x}"
        );
        let image = &files[1].1;
        assert_eq!(&image[PARM_AREA + 8..PARM_AREA + 16], &start.to_be_bytes());
        assert_eq!(
            &image[PARM_AREA + 16..PARM_AREA + 24],
            &5000u64.to_be_bytes()
        );
        assert_eq!(files[3].1, initrd);
    }
    let elf = elf::synthetic(0x10000, &[(0, &lowcore), (0x10000, &init)], &[]);
    let error = build(&elf, Format::Raw, &[], Some(&initrd)).unwrap_err();
    assert!(error.to_string().contains("carries no initrd"), "{error}");
}

#[test]
fn built_in_arguments_land_in_the_command_line_area() {
    let init = vec![0xffu8; 0x1000];
    let elf_bytes = elf::synthetic(
        0x10000,
        &[(0, &[0u8; 0x200][..]), (0x10000, &init)],
        &[("zhint_ipl_direct_entry", 0x2080)],
    );
    let elf = Elf::parse(&elf_bytes).unwrap();
    let image = raw_image(&elf, &["a=1".into(), "b".into()]).unwrap();
    assert_eq!(&image[COMMAND_LINE..COMMAND_LINE + 5], b"a=1 b");
    assert!(
        image[COMMAND_LINE + 5..COMMAND_LINE + COMMAND_LINE_SIZE]
            .iter()
            .all(|&b| b == 0)
    );
    assert_eq!(
        &image[..8],
        &[0, 8, 0, 0, 0x80, 0, 0x20, 0x80],
        "PSW -> direct entry"
    );
    // The ELF form carries the same bytes at the same address.
    let files = build(&elf_bytes, Format::Elf, &["a=1".into(), "b".into()], None).unwrap();
    let patched = Elf::parse(&files[0].1).unwrap().flat_image().unwrap();
    assert_eq!(&patched[COMMAND_LINE..COMMAND_LINE + 6], b"a=1 b\0");
    // Without arguments nothing changes.
    assert_eq!(raw_image(&elf, &[]).unwrap(), elf.flat_image().unwrap());
    let too_long = vec!["x".repeat(COMMAND_LINE_SIZE)];
    assert!(raw_image(&elf, &too_long).is_err());
    assert!(raw_image(&elf, &["caf\u{e9}".into()]).is_err());
}

// ---- the real kernel ----

fn kernel_elf() -> (Vec<u8>, Elf) {
    let bytes = std::fs::read(crate::cargo::test_kernel()).unwrap();
    let elf = Elf::parse(&bytes).unwrap();
    (bytes, elf)
}

/// Boots `image` (`-kernel`, no `-append`, no backing store: the suites these tests run
/// never start the memory manager) and returns the console output.
fn boot(image: &[u8], name: &str, console: Console, extra: &[&str]) -> String {
    boot_until(image, name, console, extra, None)
}

/// [`boot`], stopping QEMU as soon as the output holds `stop`, if given.
fn boot_until(
    image: &[u8],
    name: &str,
    console: Console,
    extra: &[&str],
    stop: Option<&str>,
) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, image).unwrap();
    let machine = Machine {
        console,
        ..Machine::default()
    };
    let mut args = machine.args(&path, &[]);
    args.extend(extra.iter().map(|s| s.to_string()));
    let qemu = crate::install::find_qemu().expect("QEMU is needed for the image boot tests");
    let mut child = RunningQemu::spawn(&qemu, &args, false).unwrap();
    let deadline = Instant::now() + Duration::from_secs(240);
    let mut output = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(
            !left.is_zero(),
            "QEMU did not finish:\n{}",
            String::from_utf8_lossy(&output)
        );
        match child.next(left).unwrap() {
            Next::Data(data) => output.extend(data),
            Next::Idle => {}
            Next::Closed => break,
        }
        if stop.is_some_and(|s| String::from_utf8_lossy(&output).contains(s)) {
            child.kill();
            break;
        }
    }
    child.finish(Duration::from_secs(5)).unwrap();
    String::from_utf8_lossy(&output).into_owned()
}

fn banner_command_line(console: &str) -> Option<&str> {
    console
        .lines()
        .find_map(|l| l.trim().strip_prefix("command line: ["))
        .and_then(|rest| rest.strip_suffix(']'))
}

/// A few fast suites, so the boots stay short.
const QUICK_FILTER: &str = "ktest.filter=arch::interrupts";

/// Booted without arguments the kernel runs every suite; the first passing test already shows
/// that the image came up through its IPL PSW, so the boot stops there.
#[test]
fn raw_image_boots_through_its_ipl_psw_and_runs_tests() {
    let (_, elf) = kernel_elf();
    let image = raw_image(&elf, &[]).unwrap();
    assert_eq!(
        &image[..8],
        &[0, 8, 0, 0, 0x80, 1, 0, 0],
        "short PSW -> 0x10000"
    );
    assert_ne!(
        &image[0x10008..0x1000e],
        b"S390EP",
        "entry taken from the PSW, not the magic"
    );
    let first_pass = "\n    ok 1 ";
    let console = boot_until(&image, "zhint.bin", Console::Ascii, &[], Some(first_pass));
    assert!(console.contains("\nKTAP version 1"), "{console}");
    assert!(console.contains(first_pass), "{console}");
    assert_eq!(banner_command_line(&console), Some(""), "{console}");
}

#[test]
fn raw_image_with_built_in_arguments_shows_them_in_the_banner() {
    let (_, elf) = kernel_elf();
    let args = [QUICK_FILTER.to_string(), "ktest.seed=31337".to_string()];
    let image = raw_image(&elf, &args).unwrap();
    let console = boot(&image, "zhint.bin", Console::Ascii, &[]);
    assert_eq!(
        banner_command_line(&console),
        Some("ktest.filter=arch::interrupts ktest.seed=31337"),
        "{console}"
    );
    assert!(console.contains("seed=31337"), "{console}");
    assert!(console.contains("EXIT: STATUS=1"), "{console}");
}

/// The console holds the banner until the first test body (`console::hold`); a run that
/// stops before one must still show it. `panic=now` panics right after the banner: the
/// panic report (`console::take_over`) sends the held banner first. `hang=now` never ends:
/// its line goes out before the loop.
#[test]
fn held_console_lines_go_out_before_a_panic_or_a_hang_at_boot() {
    let (_, elf) = kernel_elf();
    let image = raw_image(&elf, &["panic=now".into()]).unwrap();
    let console = boot(&image, "zhint.bin", Console::Ascii, &[]);
    assert_eq!(
        banner_command_line(&console),
        Some("panic=now"),
        "{console}"
    );
    assert!(
        console.contains("Bail out! kernel panic: deliberate panic requested by panic=now"),
        "{console}"
    );
    let image = raw_image(&elf, &["hang=now".into()]).unwrap();
    let stop = "hanging as requested by hang=now";
    let console = boot_until(&image, "zhint.bin", Console::Ascii, &[], Some(stop));
    assert_eq!(banner_command_line(&console), Some("hang=now"), "{console}");
    // `boot_until` also returns when QEMU exits: a kernel that ignored `hang=now` and ran
    // its suites would still show the banner.
    assert!(console.contains(stop), "{console}");
}

/// CP037 of printable ASCII, for writing the test's parameter file as CMS would.
fn to_cp037(text: &str) -> Vec<u8> {
    const TABLE: &[u8; 95] = b"\x40\x5a\x7f\x7b\x5b\x6c\x50\x7d\x4d\x5d\x5c\x4e\x6b\x60\x4b\x61\
\xf0\xf1\xf2\xf3\xf4\xf5\xf6\xf7\xf8\xf9\x7a\x5e\x4c\x7e\x6e\x6f\
\x7c\xc1\xc2\xc3\xc4\xc5\xc6\xc7\xc8\xc9\xd1\xd2\xd3\xd4\xd5\xd6\
\xd7\xd8\xd9\xe2\xe3\xe4\xe5\xe6\xe7\xe8\xe9\xba\xe0\xbb\xb0\x6d\
\x79\x81\x82\x83\x84\x85\x86\x87\x88\x89\x91\x92\x93\x94\x95\x96\
\x97\x98\x99\xa2\xa3\xa4\xa5\xa6\xa7\xa8\xa9\xc0\x4f\xd0\xa1";
    text.bytes().map(|b| TABLE[usize::from(b - 0x20)]).collect()
}

/// The loader's parameter-file stage and `_start`'s 31-bit path, on QEMU: the IPL PSW
/// enters `zhint_ipl_test_entry`, which switches to 31-bit addressing (as an ESA/390 or
/// CZAM IPL leaves the CPU) and runs the stage on two blank-padded EBCDIC card records
/// at the parameter buffer, as the reader would have delivered them; then the loader
/// jumps to `_start` in 31-bit mode.
#[test]
fn loader_parm_stage_and_31_bit_entry_boot_on_qemu() {
    let (_, elf) = kernel_elf();
    // Built-in arguments the parameter file must replace.
    let mut image = raw_image(&elf, &["ktest.filter=none.such".into()]).unwrap();
    let mut cards = Vec::new();
    for line in [
        "ktest.filter=arch::interrupts",
        "ktest.seed=4711 x_y-z/A.B,c:*",
    ] {
        let mut record = to_cp037(line);
        record.resize(80, 0x40);
        cards.extend(record);
    }
    let buffer = 0x3000;
    if image.len() < buffer + cards.len() {
        image.resize(buffer + cards.len(), 0);
    }
    assert!(
        image[buffer..buffer + cards.len()].iter().all(|&b| b == 0),
        "buffer is free"
    );
    image[buffer..buffer + cards.len()].copy_from_slice(&cards);
    let length_word = elf.symbol("zhint_ipl_test_parm_bytes").unwrap() as usize;
    image[length_word..length_word + 4].copy_from_slice(&(cards.len() as u32).to_be_bytes());
    set_ipl_psw(&mut image, elf.symbol("zhint_ipl_test_entry").unwrap()).unwrap();
    let console = boot(&image, "zhint-31.bin", Console::Ascii, &[]);
    assert_eq!(
        banner_command_line(&console),
        Some("ktest.filter=arch::interrupts ktest.seed=4711 x_y-z/A.B,c:*"),
        "EBCDIC translated, card padding folded:\n{console}"
    );
    assert!(console.contains("EXIT: STATUS=1"), "{console}");
}

#[test]
fn zvm_deck_of_the_real_kernel_carries_loader_lowcore_and_kernel() {
    let (bytes, elf) = kernel_elf();
    let files = build(&bytes, Format::Zvm, &[QUICK_FILTER.into()], None).unwrap();
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "zhint.img",
            "zhint.parm",
            "ZHINT.EXEC",
            "vmur.sh",
            "README.txt"
        ]
    );
    let deck_bytes = &files[0].1;
    let image = raw_image(&elf, &[QUICK_FILTER.into()]).unwrap();
    let kernel_records = (image.len() - 0x10000).div_ceil(80);
    assert_eq!(deck_bytes.len() % 80, 0);
    assert_eq!(deck_bytes.len() / 80, 23 + 7 + kernel_records);
    let loader = elf.symbol("zhint_ipl_loader").unwrap() as usize;
    assert_eq!(loader, 0x2000);
    let loader_end = elf.symbol("__ipl_loader_end").unwrap() as usize;
    let count_word = elf.symbol("zhint_ipl_kernel_records").unwrap() as usize - loader;
    let in_deck = &deck_bytes[240..240 + (loader_end - loader)];
    assert_eq!(&in_deck[..count_word], &image[loader..loader + count_word]);
    assert_eq!(
        &in_deck[count_word..count_word + 4],
        &(kernel_records as u32).to_be_bytes()
    );
    assert_eq!(
        &in_deck[count_word + 4..],
        &image[loader + count_word + 4..loader_end]
    );
    assert_eq!(
        &deck_bytes[(23 + 7) * 80..(23 + 7) * 80 + 16],
        &image[0x10000..0x10010],
        "kernel records start with _start"
    );
    assert_eq!(files[1].1, format!("{QUICK_FILTER}\n").into_bytes());
}

/// The line-mode console (what z/VM's console and spool files show): every line starts with
/// a newline. `cargo xtask parse` must find the same results in it as in the ASCII capture.
#[test]
fn line_mode_capture_parses_like_the_ascii_capture() {
    let (_, elf) = kernel_elf();
    let args = [QUICK_FILTER.to_string(), "ktest.seed=99".to_string()];
    let image = raw_image(&elf, &args).unwrap();
    let ascii = boot(&image, "zhint.bin", Console::Ascii, &[]);
    let line_mode = boot(&image, "zhint.bin", Console::LineMode, &[]);
    assert!(
        line_mode.starts_with('\n'),
        "line-mode layout: {line_mode:?}"
    );
    let from_ascii = crate::verdict::judge(ascii.as_bytes()).records;
    let from_line_mode = crate::verdict::judge_console(line_mode.as_bytes(), true).records;
    assert!(from_ascii.len() >= 3, "{ascii}");
    // Timings differ between two boots; which tests ran and how they ended must not.
    let summary = |records: &[crate::results::TestRecord]| -> Vec<String> {
        records
            .iter()
            .map(|r| format!("{:?} {:?} {}", r.id, r.outcome, r.reason))
            .collect()
    };
    assert_eq!(summary(&from_line_mode), summary(&from_ascii));
}

/// IPLs `deck` on Hercules from a 3505 card reader (at end of file it reports end of
/// file, like a z/VM reader file); returns the log and the disabled wait's address.
fn ipl_deck_on_hercules(deck_bytes: &[u8]) -> (String, Option<u64>) {
    let dir = tempfile::tempdir().unwrap();
    let deck = dir.path().join("zhint.img");
    std::fs::write(&deck, deck_bytes).unwrap();
    let config = dir.path().join("hercules.cnf");
    std::fs::write(
        &config,
        format!(
            "CPUSERIAL 000001\nCPUMODEL 2064\nMAINSIZE 256\nNUMCPU 1\nMAXCPU 1\nARCHMODE z/Arch\n\
             OSTAILOR QUIET\nCODEPAGE 819/037\n000C 3505 {} ebcdic eof\n",
            deck.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("hercules.rc"),
        "hao tgt HHCCP011I\nhao cmd quit\nipl 000c\n",
    )
    .unwrap();
    let mut filter = crate::hercules::LogFilter::for_ipl("ipl 000c");
    let mut log = String::new();
    let ended = crate::hercules::run(dir.path(), &mut filter, |line, _| {
        log.push_str(line);
        log.push('\n');
        Ok(())
    })
    .expect("cannot run hercules");
    let wait = ended.wait.map(|w| w.address);
    (log, wait)
}

/// The whole z/VM reader path on an emulator with a card reader: Hercules IPLs the deck
/// from a 3505 in ESA/390 mode (a real architecture switch in `_start`), the IPL CCWs read
/// the loader, the loader reads lowcore, kernel and the backing store (initrd) with
/// SSCH/TSCH, and the kernel runs the page-cache suite on the line-mode console against
/// the backing store the deck carried. Needs `hercules` (Debian package `hercules`).
#[test]
#[ignore = "needs the Hercules emulator (apt-get install hercules); run with --ignored"]
fn zvm_deck_ipls_from_a_card_reader_on_hercules() {
    let (bytes, _) = kernel_elf();
    let initrd = std::fs::read(crate::backing_store::ensure_standard().unwrap()).unwrap();
    let filter = "ktest.filter=mm::page_cache";
    let files = build(&bytes, Format::Zvm, &[filter.into()], Some(&initrd)).unwrap();
    let started = Instant::now();
    let (log, wait) = ipl_deck_on_hercules(&files[0].1);
    eprintln!(
        "{} records read and the suite run in {:?}",
        files[0].1.len() / 80,
        started.elapsed()
    );
    assert!(
        log.contains("command line: [ktest.filter=mm::page_cache]"),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "backing store -initrd image: {} KiB",
            initrd.len() >> 10
        )),
        "{log}"
    );
    // Every test of the suite ran against the deck's backing store: none failed, none
    // skipped for want of it.
    let summary = log
        .lines()
        .find(|l| l.starts_with("# mm::page_cache: pass:"))
        .unwrap_or_else(|| panic!("no suite summary:\n{log}"));
    assert!(
        summary.contains(" fail:0 skip:0 ") && !summary.contains("pass:0 "),
        "{summary}\n{log}"
    );
    assert!(log.contains("EXIT: STATUS=1"), "{log}");
    assert_eq!(wait, Some(0x0600_d001), "the kernel's passed wait:\n{log}");
}

/// The loader refuses a deck whose backing store is cut short (wait 0x00f10005) or goes
/// on after it (0x00f10003) instead of starting the kernel on it. Needs `hercules`.
#[test]
#[ignore = "needs the Hercules emulator (apt-get install hercules); run with --ignored"]
fn zvm_deck_with_a_cut_or_overlong_initrd_stops_the_loader_on_hercules() {
    let (bytes, _) = kernel_elf();
    let initrd = vec![0x5au8; 8000]; // 100 records
    // A test not flagged NO_MM beside the quick ones, so the kernel tries the backing
    // store (and one that passes without it).
    let filter = format!("{QUICK_FILTER},cmma::essa.get_state_is_pure");
    let files = build(&bytes, Format::Zvm, &[filter], Some(&initrd)).unwrap();
    let deck = &files[0].1;
    let (log, wait) = ipl_deck_on_hercules(&deck[..deck.len() - 80]);
    assert_eq!(wait, Some(0x00f1_0005), "cut by one record:\n{log}");
    assert!(!log.contains("KTAP"), "{log}");
    let mut longer = deck.clone();
    longer.extend([0x40; 80]);
    let (log, wait) = ipl_deck_on_hercules(&longer);
    assert_eq!(wait, Some(0x00f1_0003), "one record too many:\n{log}");
    let (log, wait) = ipl_deck_on_hercules(deck);
    assert_eq!(
        wait,
        Some(0x0600_d001),
        "the whole deck starts the kernel:\n{log}"
    );
    assert!(
        log.contains("mm: failed to start"),
        "which finds no backing-store image in 0x5a bytes:\n{log}"
    );
}
