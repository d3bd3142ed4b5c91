//! `kernel_main`: from a booted CPU to a finished test run.

use crate::arch::{cpu, image, kspace};
use crate::cmdline::{self, Deliberate};
use crate::io::disk::{KernelDisk, VirtioBacking};
use crate::ktest::{self, runner};
use crate::machine::{self, Facilities, Host, facility};
use crate::mm::addr::{PAGE_SIZE, Pfn};
use crate::mm::backing::MemDisk;
use crate::{cmma, console, println, shutdown, vm};

/// Memory the memory manager may use for pages unless `mm.pool=` says otherwise: 2 MiB,
/// ten times less than the suites' files, so the page cache is always under pressure
/// (and the boot sets only 512 free frames unused, one ESSA each).
const DEFAULT_POOL: u64 = 2 << 20;
use alloc::vec::Vec;

/// Heap size: enough for frame metadata (64 bytes per 4 KiB frame) and test data.
fn heap_size(memory: u64) -> u64 {
    (memory / 16).clamp(4 << 20, 64 << 20)
}

/// Called by `boot` on the boot stack, DAT off, interruptions disabled.
pub fn kernel_main() -> ! {
    let boot_start = cpu::tod();
    if console::init().is_err() {
        // No console: nothing can be reported, so end as a crash QEMU can see.
        cpu::disabled_wait(shutdown::CRASH_WAIT_CODE | 0xc0);
    }
    let info = console::CONSOLE.lock().read_scp_info();
    let (memory, cpus) = match &info {
        Ok(i) => (i.memory_bytes, i.cpus),
        Err(e) => {
            println!("# warning: READ SCP INFO failed ({e:?}); assuming 64 MiB, 1 CPU");
            (64 << 20, 1)
        }
    };
    let heap_end = init_heap(memory);
    let (options, warnings) = cmdline::parse_area(image::command_line_area());
    cmdline::set_current(&options);

    // Above the heap: the kernel's page tables, then the memory manager's pool. The
    // identity map covers everything up to the pool's end; storage beyond it is never used.
    let tables = heap_end..heap_end + kspace::tables_size(memory);
    let pool_start = tables.end.next_multiple_of(PAGE_SIZE);
    let pool_bytes = options
        .mm_pool
        .unwrap_or(DEFAULT_POOL)
        .min(memory.saturating_sub(pool_start));
    let pool = Pfn::new(pool_start / PAGE_SIZE)..Pfn::new((pool_start + pool_bytes) / PAGE_SIZE);
    let mapped = pool_start + pool_bytes;
    let facilities = Facilities(cpu::facilities());
    let protection = match kspace::init(mapped, tables, facilities.has(facility::IEP)) {
        Ok(p) => p,
        Err(e) => panic!("cannot build the kernel address space: {e:?}"),
    };

    let host = detect_host();
    machine::set_host(host);
    if host == Host::Lpar {
        // The HMC's integrated ASCII console needs CR LF line ends.
        console::CONSOLE.lock().set_crlf(true);
    }
    let essa_native = cmma::backend::probe();
    let backend = cmma::backend::select(options.cmma, essa_native, memory);
    crate::io::channel::init();
    let disk_status = match crate::io::disk::init() {
        Ok(()) => crate::io::disk::with(|d| {
            alloc::format!("virtio-blk at {}, {} sectors", d.subchannel(), d.sectors())
        })
        .unwrap_or_default(),
        Err(e) => alloc::format!("{e}"),
    };
    let mm_status = match backing_store(options.mm_backing) {
        Err(why) => alloc::format!("off ({why})"),
        Ok(disk) => match vm::init(pool.clone(), disk) {
            Ok(()) => alloc::format!(
                "{} frames ({} KiB) at {:#x}, backing store {:?}: {} KiB",
                pool.end.as_u64() - pool.start.as_u64(),
                pool_bytes >> 10,
                pool_start,
                options.mm_backing,
                vm::with(|mm| {
                    use crate::mm::backing::BlockDevice;
                    mm.device().blocks() * 4
                })
            ),
            Err(e) => alloc::format!("failed to start: {e}"),
        },
    };

    let consoles = console::CONSOLE.lock().consoles();
    println!(
        "zhint {} - guest page hinting test harness",
        env!("CARGO_PKG_VERSION")
    );
    println!(
        "memory: {} MiB, cpus: {cpus}, host: {host}, console: {consoles:?}",
        memory >> 20
    );
    println!("facilities: {facilities}");
    println!(
        "essa: {}, cmma: {:?} -> {}",
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
            #[allow(clippy::empty_loop)]
            loop {}
        }
        None => {}
    }

    println!(
        "boot: {} us of guest time",
        cpu::tod_to_us(cpu::tod().wrapping_sub(boot_start))
    );
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
    let mut out = console::ConsoleWriter;
    if run_options.list {
        runner::list(tests, &run_options, &mut out);
        shutdown::exit(77);
    }
    let totals = runner::run(
        tests,
        &run_options,
        &mut out,
        &mut ktest::machine::MachineExecutor,
    );
    print_counters();
    shutdown::exit(totals.exit_status())
}

/// The memory manager's backing store as `mm.backing=` chose it, or why there is none.
fn backing_store(choice: cmdline::BackingChoice) -> Result<KernelDisk, &'static str> {
    match choice {
        cmdline::BackingChoice::Initrd => image::take_initrd()
            .map(|initrd| KernelDisk::Initrd(MemDisk::new(initrd)))
            .ok_or("no backing store: boot with -initrd"),
        cmdline::BackingChoice::Virtio if crate::io::disk::available() => {
            Ok(KernelDisk::Virtio(VirtioBacking))
        }
        cmdline::BackingChoice::Virtio => Err("mm.backing=virtio, but no virtio-blk disk"),
    }
}

/// Places the heap after the image and the initrd; returns its end.
fn init_heap(memory: u64) -> u64 {
    let layout = image::layout();
    let after_initrd = image::initrd().map_or(0, |(start, size)| start + size);
    let start = layout.kernel_end.max(after_initrd).next_multiple_of(4096);
    let size = heap_size(memory).min(memory.saturating_sub(start));
    crate::arch::heap::init_region(start, size);
    start + size
}

fn detect_host() -> Host {
    let level = cpu::configuration_level();
    if level != 3 {
        return machine::detect_host(level, None, None);
    }
    let mut block = alloc::boxed::Box::new(cpu::SysinfoBlock([0; 4096]));
    let s111: Option<Vec<u8>> = cpu::stsi(1, 1, 1, &mut block).map(|()| block.0.to_vec());
    // STSI 3.2.2 only when 1.1.1 did not already name QEMU's TCG (STSI is slow there).
    if machine::detect_host(level, s111.as_deref(), None) == Host::Tcg {
        return Host::Tcg;
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
