//! `kernel_main`: from a booted CPU to a finished test run.

use crate::arch::{cpu, image, kspace, storage};
use crate::cmdline::{self, Deliberate};
use crate::io::disk::{KernelDisk, VirtioBacking};
use crate::ktest::{self, runner};
use crate::layout::{self, Layout, PoolRequest};
use crate::machine::{self, Facilities, Host, facility};
use crate::mm::addr::{PAGE_SIZE, Pfn};
use crate::mm::backing::{Deferred, MemDisk};
use crate::{cmma, console, println, shutdown, trap, vm};
use alloc::vec::Vec;

/// `EXIT: STATUS=` of a boot that stops because storage is too small for the kernel: 5,
/// exit code 2 (usage or infrastructure error) in the kvm-unit-tests encoding
/// `(code << 1) | 1` that also gives 1 (passed) and 3 (failed). It follows the line
/// `Bail out! not enough memory: need N KiB, have M KiB` (see `docs/architecture.md`).
pub const NOT_ENOUGH_MEMORY_STATUS: u32 = 5;

/// Called by `boot` on the boot stack, DAT off, interruptions disabled, with the
/// image's test descriptors.
pub fn kernel_main(tests: &'static [ktest::KTest]) -> ! {
    ktest::machine::set_registry(tests);
    let boot_start = cpu::tod();
    crate::arch::smp::init_boot_cpu();
    crate::arch::interrupts::register(crate::trap::handlers(external_interruption));
    if console::init().is_err() {
        // No console: nothing can be reported, so end as a crash QEMU can see.
        cpu::disabled_wait(shutdown::CRASH_WAIT_CODE | 0xc0);
    }
    let facilities = Facilities(cpu::facilities());
    let extended_sccb = facilities.has(facility::EXTENDED_LENGTH_SCCB);
    let info = console::CONSOLE.lock().read_scp_info_with(extended_sccb);
    let (memory, cpus, cpu_addresses) = match &info {
        Ok(i) => (i.memory_bytes, Some(i.cpus), i.cpu_addresses),
        Err(e) => {
            let memory = probe_storage_end();
            let why = if *e == sclp::Error::Response(sclp::spec::response::INSUFFICIENT_SCCB_LENGTH)
            {
                if extended_sccb {
                    ": even the extended SCCB is too short for this many CPUs"
                } else {
                    ": one page is too short for this many CPUs and the extended-length-SCCB facility (140) is not installed"
                }
            } else {
                ""
            };
            println!(
                "# warning: READ SCP INFO failed ({e:?}{why}); storage found by probing: {} MiB, CPU count unknown",
                memory >> 20
            );
            (memory, None, sclp::CpuAddresses::default())
        }
    };
    // The heap does not depend on `mm.pool=`, so it is placed before the command line
    // (which needs the heap) is parsed; the pool is placed after.
    let used_end = used_end();
    let heap = match layout::plan(memory, used_end, PoolRequest::Default) {
        Ok(plan) => plan.heap,
        Err(short) => {
            println!("Bail out! {short}");
            shutdown::exit(NOT_ENOUGH_MEMORY_STATUS)
        }
    };
    crate::arch::heap::init_region(heap.start, heap.end - heap.start);
    let (options, mut warnings) = cmdline::parse_area(image::command_line_area());
    cmdline::set_current(&options);
    let Ok(Layout {
        tables,
        pool: pool_bytes,
        pool_capped_from,
        ..
    }) = layout::plan(memory, used_end, PoolRequest::from_option(options.mm_pool))
    else {
        unreachable!("the minimum did not depend on mm.pool");
    };
    if let (Some(asked), Some(_)) = (pool_capped_from, options.mm_pool) {
        warnings.push(cmdline::Warning::Capped {
            key: "mm.pool".into(),
            asked: alloc::format!("{}", layout::Size(asked)),
            got: alloc::format!(
                "{}: what {} of storage leaves above the image, initrd, heap and page tables",
                layout::Size(pool_bytes.end - pool_bytes.start),
                layout::Size(memory)
            ),
        });
    }
    let pool = Pfn::new(pool_bytes.start / PAGE_SIZE)..Pfn::new(pool_bytes.end / PAGE_SIZE);
    let mapped = pool_bytes.end;
    let protection = match kspace::init(mapped, tables, facilities.has(facility::IEP)) {
        Ok(p) => p,
        Err(e) => panic!("cannot build the kernel address space: {e:?}"),
    };

    // Secondary CPUs need the kernel's address space (their control registers copy it).
    let smp_boot = crate::smp::start(&cpu_addresses, options.smp_fail, memory);

    let host = detect_host();
    machine::set_host(host);
    if host == Host::Lpar {
        // The HMC's integrated ASCII console needs CR LF line ends.
        console::CONSOLE.lock().set_crlf(true);
    }
    let essa_native = cmma::backend::probe();
    let backend = cmma::backend::select(options.cmma, essa_native, memory);
    crate::io::channel::init();
    let tests = ktest::machine::registry();
    if tests.is_empty() {
        panic!("no tests registered: the .kernel_tests section is empty (link problem)");
    }
    let run_options = runner::Options {
        filter: options.filter.clone(),
        skip: options.skip,
        list: options.list,
        seed: options.seed.unwrap_or_else(|| cpu::tod() >> 12),
        shuffle: options.shuffle,
        command_line: options.raw.clone(),
        selftest: options.selftest.clone(),
        bench: options.bench,
        inject: options.inject.clone(),
    };
    // Nothing done at boot that a test does not need: opening the disk and starting the
    // memory manager are half the boot's work under TCG.
    let (disk_status, mm_status) = if runner::needs_memory_manager(tests, &run_options) {
        let disk_status = match crate::io::disk::init() {
            Ok(()) => crate::io::disk::with(|d| {
                alloc::format!("virtio-blk at {}, {} sectors", d.subchannel(), d.sectors())
            })
            .unwrap_or_default(),
            Err(e) => alloc::format!("{e}"),
        };
        (disk_status, start_mm(&options, pool, pool_capped_from))
    } else {
        vm::leave_off();
        (
            alloc::format!("not opened: {NOT_NEEDED}"),
            alloc::format!("not started: {NOT_NEEDED}"),
        )
    };

    // The banner and the runner's lines up to the first test go out together; the boot
    // steps above may hang, so what they print goes out at once.
    console::hold();
    let consoles = console::CONSOLE.lock().consoles();
    println!(
        "zhint {} - guest page hinting test harness",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "memory: {} MiB, cpus: {}, host: {host}, console: {consoles}",
        memory >> 20,
        cpus.map_or_else(
            || alloc::string::String::from("unknown"),
            |n| alloc::format!("{n}")
        )
    );
    crate::smp::print_report(smp_boot);
    println!("facilities: {facilities}");
    println!(
        "essa: {}, cmma={} -> {}",
        if essa_native {
            "executes"
        } else {
            "absent (operation exception)"
        },
        options.cmma,
        backend
    );
    println!(
        "dat: on, storage up to {:#x} identity-mapped with 4 KiB pages; text read-only, lowcore and stack guards unmapped, low-address protection {}, no-exec data {}",
        mapped,
        if protection.low_address { "on" } else { "off" },
        if protection.no_exec_data {
            "on"
        } else {
            "off (no facility 130)"
        }
    );
    println!("disk: {disk_status}");
    println!("mm: {mm_status}");
    println!("command line: [{}]", options.raw);
    for w in &warnings {
        println!("# warning: {w}");
    }

    match options.deliberate {
        Some(Deliberate::Panic) => panic!("deliberate panic requested by panic=now"),
        Some(Deliberate::Hang) => {
            println!("hanging as requested by hang=now");
            console::release();
            #[allow(clippy::empty_loop)]
            loop {}
        }
        None => {}
    }

    println!(
        "boot: {} us of guest time",
        cpu::tod_to_us(cpu::tod().wrapping_sub(boot_start))
    );
    for w in runner::option_warnings(tests, &run_options) {
        println!("# warning: {w}");
    }
    let mut out = console::ConsoleWriter;
    if run_options.list {
        runner::list(tests, &run_options, &mut out);
        crate::io::disk::print_write_report();
        shutdown::exit(77);
    }
    let totals = runner::run(
        tests,
        &run_options,
        &mut out,
        &mut ktest::machine::MachineExecutor,
    );
    print_counters();
    // What the run wrote to the disk: xtask checks the disk file against it.
    crate::io::disk::print_write_report();
    shutdown::exit(totals.exit_status())
}

/// What the banner says of the disk and the memory manager a boot leaves off.
const NOT_NEEDED: &str = "no test this boot runs needs it (all flagged no_mm)";

/// Starts the memory manager over the backing store `mm.backing=` chose, with the frames
/// of `pool`; returns the banner's `mm:` text.
fn start_mm(
    options: &cmdline::Options,
    pool: core::ops::Range<Pfn>,
    pool_capped_from: Option<u64>,
) -> alloc::string::String {
    let frames = pool.end.as_u64() - pool.start.as_u64();
    let pool_start = pool.start.addr().as_u64();
    match backing_store(options.mm_backing) {
        Err(why) => alloc::format!("off ({why})"),
        Ok(disk) => match (disk.name(), vm::init(pool, disk)) {
            (backing, Ok(())) => alloc::format!(
                "{} frames ({} KiB{}) at {:#x}, backing store {backing}: {} KiB",
                frames,
                (frames * PAGE_SIZE) >> 10,
                match (pool_capped_from, options.mm_pool) {
                    (Some(default), None) =>
                        alloc::format!(", not the default {} KiB: storage is short", default >> 10),
                    _ => alloc::string::String::new(),
                },
                pool_start,
                vm::with(|mm| {
                    use crate::mm::backing::BlockDevice;
                    mm.device().blocks() * 4
                })
            ),
            (_, Err(e)) => alloc::format!("failed to start: {e}"),
        },
    }
}

/// The memory manager's backing store as `mm.backing=` chose it, or why there is none.
/// `auto` takes the virtio-blk disk where there is one, else the initrd.
fn backing_store(choice: cmdline::BackingChoice) -> Result<KernelDisk, &'static str> {
    use cmdline::BackingChoice::{Auto, Initrd, Virtio};
    let disk = crate::io::disk::available();
    match choice {
        Virtio | Auto if disk => Ok(KernelDisk::Virtio(VirtioBacking)),
        Virtio => Err("mm.backing=virtio, but no virtio-blk disk"),
        Initrd | Auto => image::take_initrd()
            .map(|initrd| KernelDisk::Initrd(Deferred::new(MemDisk::new(initrd))))
            .ok_or(if choice == Auto {
                "no backing store: boot with a virtio-blk disk or -initrd"
            } else {
                "no backing store: boot with -initrd"
            }),
    }
}

/// The kernel's external interruptions (the machine layer handles the service signal
/// and the SMP signals itself): the clock comparator drives the multi-CPU tests'
/// watchdog; any other code is unexpected.
fn external_interruption(frame: &mut crate::arch::InterruptFrame, code: u16) {
    match code {
        0x1004 => ktest::smp::timer_interrupt(frame),
        _ => crate::trap::unexpected_interruption("external", u64::from(code), frame),
    }
}

/// The end of what the loader put in storage: the image (with BSS and stacks) and the
/// initrd, whichever ends last.
fn used_end() -> u64 {
    let after_initrd = image::initrd().map_or(0, |(start, size)| start + size);
    image::layout().kernel_end.max(after_initrd)
}

/// The end of storage, found by probing when READ SCP INFO cannot tell (Linux does the
/// same in `arch/s390/boot/physmem_info.c`, `search_mem_end`): a binary search over 1 MiB
/// increments for the highest address a real-address load reaches without an addressing
/// exception.
pub fn probe_storage_end() -> u64 {
    const MIB: u64 = 1 << 20;
    let present = |mib: u64| {
        let _expected = trap::expecting();
        trap::catch(|| storage::load_real(mib * MIB - 8)).is_ok()
    };
    // The kernel runs in the first MiB, so 1 MiB is present; 2^24 MiB (16 TiB) is not.
    let (mut low, mut high) = (1, 1 << 24);
    while high - low > 1 {
        let mid = low + (high - low) / 2;
        if present(mid) {
            low = mid;
        } else {
            high = mid;
        }
    }
    low * MIB
}

fn detect_host() -> Host {
    let level = cpu::configuration_level();
    let mut block = alloc::boxed::Box::new(cpu::SysinfoBlock([0; 4096]));
    let s111: Option<Vec<u8>> = cpu::stsi(1, 1, 1, &mut block).map(|()| block.0.to_vec());
    // STSI 3.2.2 only in a VM that 1.1.1 did not already name QEMU's TCG (STSI is slow
    // there).
    let host = machine::detect_host(level, s111.as_deref(), None);
    if level != 3 || host == Host::Tcg {
        return host;
    }
    let s322: Option<Vec<u8>> = cpu::stsi(3, 2, 2, &mut block).map(|()| block.0.to_vec());
    machine::detect_host(level, s111.as_deref(), s322.as_deref())
}

/// What the run did to the host model and the memory manager, as KTAP diagnostics.
fn print_counters() {
    if let Some(c) = cmma::backend::with_model(|model, _| model.counters()) {
        println!(
            "# cmma: essa by orc {:?} (emulated), exceptions {}, discards {}, discard faults {}, page-outs {}, zero restores {}",
            c.essa_by_orc, c.exceptions, c.discards, c.discard_faults, c.page_outs, c.zero_restores
        );
    }
    if vm::available() {
        let (stats, io, states) = vm::with(|mm| {
            use crate::mm::backing::BlockDevice;
            (
                mm.stats(),
                mm.device().stats(),
                mm.hooks().states().map(|s| s.counters()),
            )
        });
        println!(
            "# mm: major faults {}, minor faults {}, cow {}, reclaimed {}, writebacks {}, discards {}, backing-store reads {}, writes {}",
            stats.major_faults,
            stats.minor_faults,
            stats.cow_faults,
            stats.reclaimed,
            stats.writebacks,
            stats.discards,
            io.reads,
            io.writes
        );
        if let Some(s) = states {
            println!(
                "# page states: essa {}, skipped (already in state) {}, made volatile {}, refused {} (mlocked mapping {}), found discarded {}",
                s.essa, s.skipped, s.made_volatile, s.refused, s.refused_mlocked, s.found_discarded
            );
        }
    }
}
