//! `cmma::stress`: a seeded random mix of mmap, munmap, user loads and stores, file reads
//! and writes, mlock, munlock, truncate, guest reclaim and host discards (on request and
//! on the `ktest.discard_rate=` schedule), checked against an oracle that knows every
//! byte of every scratch file and every mapped region. Contents are verified at random
//! checkpoints and in full at the end; with `mm.debug=1` the memory manager's invariants
//! (`kernel::mm::debug`) are checked after every operation. The seed is printed; replay a
//! failure with `ktest.seed=`. `ktest.stress_ops=` scales the run.

use crate::support::{
    Rng, cached, device_bytes, heap_free, host_reclaim, model_counters, needs_mm, restore_pattern,
    state_counters,
};
use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU64, Ordering};
use kernel::arch::essa::essa;
use kernel::arch::uaccess;
use kernel::cmdline;
use kernel::cmma::backend::{self, Backend, with_model};
use kernel::cmma::essa::{PageStateByte, UsageState};
use kernel::cmma::model::{Counters, DiscardRate, DiscardSchedule, MIN_AGE_ESSA, ReclaimOutcome};
use kernel::cmma::states::last;
use kernel::mm::addr::{PAGE_SIZE, Pfn, VirtAddr};
use kernel::mm::backing::{check_pattern, files, fill_pattern, first_difference};
use kernel::mm::debug::{self, Rule, Violation};
use kernel::mm::ids::MappingId;
use kernel::mm::mmap::MapSource;
use kernel::mm::vma::VmFlags;
use kernel::mm::{MmError, MmStats};
use kernel::vm::{self, UserSpace};
use kernel::{check, check_eq, ktest};

kernel::ktest_suite!("cmma::stress");

/// This suite's scratch files (the other suites use `SCRATCH..SCRATCH + 25` and
/// `SCRATCH + 32`).
const FIRST_FILE: u32 = files::SCRATCH + 25;
const FILE_COUNT: u32 = 7;
const FILE_BYTES: u64 = 256 << 10;
const FILE_PAGES: u64 = FILE_BYTES / PAGE_SIZE;
/// Operations unless `ktest.stress_ops=` says otherwise: a few seconds under TCG.
const DEFAULT_OPS: u64 = 1000;
/// Per mille of ESSAs after which the host discards, unless `ktest.discard_rate=` says.
const DEFAULT_DISCARD_RATE: u16 = 20;
/// Most regions mapped at once (each seed draws its own limit up to this).
const MAX_REGIONS: usize = 8;
/// Anonymous memory is never reclaimed (no swap): keep it small next to the default 2 MiB pool.
const MAX_ANON_PAGES: u64 = 64;
/// Largest region (each seed draws its own limit up to this).
const MAX_REGION_PAGES: u64 = 16;
/// Largest single read or write (each seed draws its own limit up to this).
const MAX_IO: u64 = 3 * PAGE_SIZE;

/// Largest buffer a file check reads into at once.
const VERIFY_CHUNK: usize = 16 << 10;

/// Heap the run needs besides its oracle and regions (buffers, the memory manager's maps).
const HEAP_SLACK: usize = 256 << 10;

/// The workload's shape, drawn from the seed (its own stream, so the operations of a
/// seed change only with it): few large regions and long I/O, or many small ones.
#[derive(Clone, Copy, Debug)]
struct Shape {
    regions: usize,
    region_pages: u64,
    io: u64,
}

impl Shape {
    /// Heap the oracle needs at most with this shape: the files' bytes, the anonymous
    /// regions' bytes, a private copy of every region page, a region read and its
    /// expected bytes.
    fn heap_needed(&self, share: Share) -> usize {
        let page = PAGE_SIZE as usize;
        share.files.len() * FILE_BYTES as usize
            + share.anon_pages as usize * page
            + self.regions * self.region_pages as usize * page
            + 2 * self.region_pages as usize * page
    }

    /// The shape with fewer and smaller regions until it needs at most `heap` bytes; `None`
    /// when even the smallest does not fit.
    fn fitted(mut self, heap: usize, share: Share) -> Option<Self> {
        while self.heap_needed(share) > heap && self.regions > 2 {
            self.regions -= 1;
        }
        while self.heap_needed(share) > heap && self.region_pages > 2 {
            self.region_pages -= 1;
        }
        (self.heap_needed(share) <= heap).then_some(self)
    }

    fn draw(seed: u64) -> Self {
        let mut rng = Rng::new(seed, 1);
        Shape {
            regions: rng.within(2..=MAX_REGIONS as u64) as usize,
            region_pages: rng.within(2..=MAX_REGION_PAGES),
            io: rng.within(64..=MAX_IO),
        }
    }
}

/// One CPU's share of a workload on several CPUs: the scratch files only it uses (so its
/// oracle knows every byte of them) and its anonymous memory (never reclaimed: the
/// CPUs split the limit).
#[derive(Clone, Copy, Debug)]
struct Share {
    files: &'static [u32],
    anon_pages: u64,
}

/// The scratch files, ids in order.
const ALL_FILES: [u32; FILE_COUNT as usize] = {
    let mut ids = [0; FILE_COUNT as usize];
    let mut n = 0;
    while n < ids.len() {
        ids[n] = FIRST_FILE + n as u32;
        n += 1;
    }
    ids
};

impl Share {
    /// The whole workload on one CPU.
    const ALL: Share = Share {
        files: &ALL_FILES,
        anon_pages: MAX_ANON_PAGES,
    };

    /// CPU `index`'s share of `cpus`: a contiguous run of the files (every CPU gets at
    /// least one; `cpus` is at most [`FILE_COUNT`]).
    fn of(index: usize, cpus: usize) -> Share {
        let n = ALL_FILES.len();
        let (start, end) = (index * n / cpus, (index + 1) * n / cpus);
        Share {
            files: &ALL_FILES[start..end],
            anon_pages: MAX_ANON_PAGES / cpus as u64,
        }
    }
}

/// What the oracle expects of one scratch file.
struct FileModel {
    id: u32,
    mapping: MappingId,
    bytes: Vec<u8>,
}

impl FileModel {
    /// Puts the image's pattern back (and writes it back) into every page whose
    /// contents (`bytes`) differ from it.
    fn put_back_pattern(&mut self) -> Step {
        for (index, bytes) in self.bytes.chunks_mut(PAGE_SIZE as usize).enumerate() {
            let offset = index as u64 * PAGE_SIZE;
            if check_pattern(self.id, offset, bytes).is_err() {
                vm::with(|mm| restore_pattern(mm, self.mapping, offset, bytes.len()))
                    .map_err(|e| Failure::Mm("putting the pattern back", e))?;
                fill_pattern(self.id, offset, bytes);
            }
        }
        Ok(())
    }
}

/// What a region maps.
enum Kind {
    /// Anonymous memory: its bytes.
    Anon(Vec<u8>),
    /// File pages from `first_page` on, stores reaching the file.
    Shared { file: usize, first_page: u64 },
    /// File pages from `first_page` on, copied on the first store of each page; until
    /// then a page shows the file.
    Private {
        file: usize,
        first_page: u64,
        copies: Vec<Option<Box<[u8]>>>,
    },
}

/// One mapped region of the test's address space.
struct Region {
    va: VirtAddr,
    pages: u64,
    writable: bool,
    kind: Kind,
}

impl Region {
    fn len(&self) -> u64 {
        self.pages * PAGE_SIZE
    }

    fn addr(&self, offset: u64) -> VirtAddr {
        VirtAddr::new(self.va.as_u64() + offset)
    }

    /// What `len` bytes at `offset` must read as.
    fn expected(&self, files: &[FileModel], offset: u64, len: usize) -> Vec<u8> {
        let mut want = Vec::with_capacity(len);
        for (at, _, n) in page_pieces(offset, len) {
            want.extend_from_slice(self.page_bytes(files, at, n));
        }
        want
    }

    /// What the `n` bytes at `offset`, inside one page, show.
    fn page_bytes<'a>(&'a self, files: &'a [FileModel], offset: u64, n: usize) -> &'a [u8] {
        let (page, in_page) = (offset / PAGE_SIZE, (offset % PAGE_SIZE) as usize);
        let in_file = |file: usize, first_page: u64| {
            let at = ((first_page + page) * PAGE_SIZE) as usize + in_page;
            &files[file].bytes[at..at + n]
        };
        match &self.kind {
            Kind::Anon(bytes) => &bytes[offset as usize..offset as usize + n],
            Kind::Shared { file, first_page } => in_file(*file, *first_page),
            Kind::Private {
                file,
                first_page,
                copies,
            } => match &copies[page as usize] {
                Some(copy) => &copy[in_page..in_page + n],
                None => in_file(*file, *first_page),
            },
        }
    }

    /// The scratch file and the page of it that the byte at `offset` reads from (none
    /// for anonymous memory and private copies).
    fn file_page(&self, offset: u64) -> Option<(usize, u64)> {
        let page = offset / PAGE_SIZE;
        match &self.kind {
            Kind::Anon(_) => None,
            Kind::Shared { file, first_page } => Some((*file, first_page + page)),
            Kind::Private {
                file,
                first_page,
                copies,
            } => copies[page as usize]
                .is_none()
                .then_some((*file, first_page + page)),
        }
    }

    /// Records a store of `data` at `offset`.
    fn store(&mut self, files: &mut [FileModel], offset: u64, data: &[u8]) {
        for (o, i, n) in page_pieces(offset, data.len()) {
            let (page, in_page) = (o / PAGE_SIZE, (o % PAGE_SIZE) as usize);
            let piece = &data[i..i + n];
            match &mut self.kind {
                Kind::Anon(bytes) => bytes[o as usize..o as usize + n].copy_from_slice(piece),
                Kind::Shared { file, first_page } => {
                    let at = ((*first_page + page) * PAGE_SIZE) as usize + in_page;
                    files[*file].bytes[at..at + n].copy_from_slice(piece);
                }
                Kind::Private {
                    file,
                    first_page,
                    copies,
                } => {
                    let copy = copies[page as usize].get_or_insert_with(|| {
                        let at = ((*first_page + page) * PAGE_SIZE) as usize;
                        files[*file].bytes[at..at + PAGE_SIZE as usize].into()
                    });
                    copy[in_page..in_page + n].copy_from_slice(piece);
                }
            }
        }
    }

    /// The region's kind and what the page at `offset` shows, for failure reports.
    fn describe(&self, offset: u64) -> String {
        let page = offset / PAGE_SIZE;
        let flags = if self.writable { "rw" } else { "r" };
        match &self.kind {
            Kind::Anon(_) => format!("{flags} anonymous"),
            Kind::Shared { file, first_page } => {
                format!("{flags} shared (file #{file} from page {first_page})")
            }
            Kind::Private {
                file,
                first_page,
                copies,
            } => format!(
                "{flags} private (file #{file} from page {first_page}, page {page} {})",
                if copies[page as usize].is_some() {
                    "copied"
                } else {
                    "not copied"
                }
            ),
        }
    }

    fn anon_pages(&self) -> u64 {
        match self.kind {
            Kind::Anon(_) => self.pages,
            _ => 0,
        }
    }
}

/// What the run did, for the diagnostics.
#[derive(Default)]
struct Totals {
    ops: u64,
    bytes_verified: u64,
    host_discards_requested: u64,
    /// Pages `mlock` found discarded while it made them present (the seed's rule: a
    /// discarded page may be unmapped even in a locked VMA).
    discards_met_by_mlock: u64,
    checkpoints: u64,
    invariant_checks: u64,
}

/// The run: the space, the oracle, the generator.
struct Stress<'s> {
    space: &'s UserSpace,
    files: Vec<FileModel>,
    regions: Vec<Region>,
    rng: Rng,
    shape: Shape,
    totals: Totals,
    mm_debug: bool,
    model: bool,
    anon_limit: u64,
}

/// Where the kernel and the oracle disagree, or an operation failed.
enum Failure {
    Corrupt {
        what: String,
        object: u64,
        at: u64,
        got: u8,
        want: u8,
        /// What the memory manager, the host and the backing store hold for the page
        /// (`Stress::forensics`), when the bytes belong to a file page.
        page: Option<String>,
    },
    Mm(&'static str, MmError),
    Invariant(Violation),
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Failure::Corrupt {
                what,
                object,
                at,
                got,
                want,
                page,
            } => {
                write!(
                    f,
                    "{what} {object:#x}: byte at offset {at:#x} reads {got:#04x}, the oracle says {want:#04x}"
                )?;
                match page {
                    Some(page) => write!(f, "; {page}"),
                    None => Ok(()),
                }
            }
            Failure::Mm(op, e) => write!(f, "{op} failed: {e}"),
            Failure::Invariant(v) => write!(f, "{v}"),
        }
    }
}

type Step = Result<(), Failure>;

/// `len` bytes from `offset` cut at page boundaries: (offset, index of the piece's first
/// byte in the range, length).
fn page_pieces(offset: u64, len: usize) -> impl Iterator<Item = (u64, usize, usize)> {
    let mut done = 0;
    core::iter::from_fn(move || {
        (done < len).then(|| {
            let at = offset + done as u64;
            let n = ((PAGE_SIZE - at % PAGE_SIZE) as usize).min(len - done);
            done += n;
            (at, done - n, n)
        })
    })
}

/// `what` names the object (a file id or a region address), `base` the offset of `got`.
fn compare(
    what: impl FnOnce(u64) -> String,
    object: u64,
    base: u64,
    got: &[u8],
    want: &[u8],
) -> Step {
    debug_assert_eq!(got.len(), want.len());
    match first_difference(got, want) {
        None => Ok(()),
        Some(i) => {
            let at = base + i as u64;
            Err(Failure::Corrupt {
                what: what(at),
                object,
                at,
                got: got[i],
                want: want[i],
                page: None,
            })
        }
    }
}

impl<'s> Stress<'s> {
    /// The workload of `seed` on `share`; `stream` tells the CPUs of one run apart (0
    /// alone).
    fn new(
        space: &'s UserSpace,
        seed: u64,
        stream: u64,
        shape: Shape,
        share: Share,
    ) -> Result<Self, Failure> {
        let mut files = Vec::new();
        for &id in share.files {
            let mapping =
                vm::with(|mm| mm.open_file(id)).map_err(|e| Failure::Mm("open_file", e))?;
            // Only this suite uses these files, and a workload puts their pattern back
            // when it ends; one cut short may have left pages changed: those get the
            // image's pattern again.
            let mut bytes = vec![0; FILE_BYTES as usize];
            vm::with(|mm| mm.read_file(mapping, 0, &mut bytes))
                .map_err(|e| Failure::Mm("read_file", e))?;
            let mut file = FileModel { id, mapping, bytes };
            file.put_back_pattern()?;
            files.push(file);
        }
        let options = cmdline::current();
        Ok(Stress {
            space,
            files,
            regions: Vec::new(),
            rng: Rng::new(seed, stream),
            shape,
            totals: Totals::default(),
            mm_debug: options.mm_debug,
            model: backend::current() == Backend::Model,
            anon_limit: share.anon_pages,
        })
    }

    /// One random operation.
    fn step(&mut self) -> Step {
        self.totals.ops += 1;
        match self.rng.below(100) {
            0..=9 => self.mmap(),
            10..=15 => self.munmap(),
            16..=40 => self.user_read(),
            41..=60 => self.user_write(),
            61..=68 => self.read_file(),
            69..=76 => self.write_file(),
            77..=78 => self.mlock(),
            79..=81 => self.munlock(),
            82..=84 => self.truncate(),
            85..=89 => self.reclaim(),
            // Discards on request; the schedule (`ktest.discard_rate=`) is the host's
            // main pressure.
            90..=91 => self.host_discard(),
            92..=95 => self.sync(),
            _ => self.checkpoint(),
        }
    }

    fn mmap(&mut self) -> Step {
        if self.regions.len() >= self.shape.regions {
            return self.munmap();
        }
        let pages = 1 + self.rng.below(self.shape.region_pages);
        let anon_pages: u64 = self.regions.iter().map(Region::anon_pages).sum();
        let (flags, kind) = match self.rng.below(4) {
            0 if anon_pages + pages <= self.anon_limit => (
                VmFlags::READ | VmFlags::WRITE,
                Kind::Anon(vec![0; (pages * PAGE_SIZE) as usize]),
            ),
            1 => {
                let (file, first_page) = self.file_window(pages);
                (
                    VmFlags::READ | VmFlags::WRITE,
                    Kind::Private {
                        file,
                        first_page,
                        copies: (0..pages).map(|_| None).collect(),
                    },
                )
            }
            2 => {
                let (file, first_page) = self.file_window(pages);
                (
                    VmFlags::READ | VmFlags::SHARED,
                    Kind::Shared { file, first_page },
                )
            }
            _ => {
                let (file, first_page) = self.file_window(pages);
                (
                    VmFlags::READ | VmFlags::WRITE | VmFlags::SHARED,
                    Kind::Shared { file, first_page },
                )
            }
        };
        let source = match &kind {
            Kind::Anon(_) => MapSource::Anon,
            Kind::Shared { file, first_page }
            | Kind::Private {
                file, first_page, ..
            } => MapSource::File {
                mapping: self.files[*file].mapping,
                offset: first_page * PAGE_SIZE,
            },
        };
        let space = self.space.id();
        let va = vm::with(|mm| mm.mmap(space, None, pages * PAGE_SIZE, flags, source))
            .map_err(|e| Failure::Mm("mmap", e))?;
        let writable = flags.contains(VmFlags::WRITE);
        self.regions.push(Region {
            va,
            pages,
            writable,
            kind,
        });
        Ok(())
    }

    fn file_window(&mut self, pages: u64) -> (usize, u64) {
        (
            self.rng.index(self.files.len()),
            self.rng.below(FILE_PAGES - pages + 1),
        )
    }

    fn munmap(&mut self) -> Step {
        if self.regions.is_empty() {
            return self.mmap();
        }
        let region = self.regions.swap_remove(self.rng.index(self.regions.len()));
        let space = self.space.id();
        vm::with(|mm| mm.munmap(space, region.va, region.len()))
            .map_err(|e| Failure::Mm("munmap", e))
    }

    /// A random `(region, offset, len)` inside one region.
    fn pick_range(&mut self, writable: bool) -> Option<(usize, u64, usize)> {
        let candidates: Vec<usize> = (0..self.regions.len())
            .filter(|&i| !writable || self.regions[i].writable)
            .collect();
        if candidates.is_empty() {
            return None;
        }
        let r = candidates[self.rng.index(candidates.len())];
        let len = self.regions[r].len();
        let offset = self.rng.below(len);
        let n = 1 + self.rng.below(self.shape.io.min(len - offset));
        Some((r, offset, n as usize))
    }

    fn user_read(&mut self) -> Step {
        let Some((r, offset, n)) = self.pick_range(false) else {
            return self.mmap();
        };
        self.verify_region_range(r, offset, n)
    }

    fn verify_region_range(&mut self, r: usize, offset: u64, n: usize) -> Step {
        let region = &self.regions[r];
        let mut got = vec![0; n];
        self.space.enter();
        uaccess::read_bytes(region.addr(offset), &mut got);
        self.space.leave();
        self.totals.bytes_verified += n as u64;
        let want = region.expected(&self.files, offset, n);
        let what = |at| format!("user load in the {} region at", region.describe(at));
        let result = compare(what, region.va.as_u64(), offset, &got, &want);
        self.with_forensics(result, |stress, at| {
            let region = &stress.regions[r];
            let (file, file_page) = region.file_page(at)?;
            Some((file, file_page, Some(region.addr(at))))
        })
    }

    /// Adds [`Stress::forensics`] to a corruption of a file page: `locate` maps the
    /// offset of the wrong byte to (file, page of the file, user address if mapped).
    fn with_forensics(
        &mut self,
        mut result: Step,
        locate: impl FnOnce(&Self, u64) -> Option<(usize, u64, Option<VirtAddr>)>,
    ) -> Step {
        if let Err(Failure::Corrupt { at, page, .. }) = &mut result
            && page.is_none()
        {
            let in_page = (*at % PAGE_SIZE) as usize;
            *page = locate(self, *at)
                .map(|(file, file_page, va)| self.forensics(file, file_page, in_page, va));
        }
        result
    }

    /// What holds page `file_page` of scratch file `file` after a byte `in_page` of it
    /// read wrong: the cached frame and its flags, the host's state of it, the PTE that
    /// maps `va` (if given), and whether a second read (through `va`, or `read_file`)
    /// and the backing store's copy of the page match the oracle, so a report tells a
    /// lost write (the backing store's old bytes) from a foreign or zeroed frame.
    fn forensics(
        &self,
        file: usize,
        file_page: u64,
        in_page: usize,
        va: Option<VirtAddr>,
    ) -> String {
        let model = &self.files[file];
        let start = (file_page * PAGE_SIZE) as usize;
        let oracle = &model.bytes[start..start + PAGE_SIZE as usize];
        let space = self.space.id();
        let (cached, pte, device) = vm::with(|mm| {
            let cached = mm.mapping(model.mapping).and_then(|m| m.lookup(file_page)).map(|pfn| {
                let host = with_model(|m, _| m.frame_state(pfn.as_u64())).flatten();
                let page = mm.page(pfn);
                format!(
                    "cached in frame {:#x} ({:?}, refcount {}, mapcount {}, last state {:#x}, host {host:?})",
                    pfn.as_u64(),
                    page.map(|p| p.flags()),
                    page.map_or(0, |p| p.refcount()),
                    page.map_or(0, |p| p.mapcount()),
                    page.map_or(0, |p| p.last_state()),
                )
            });
            let pte =
                va.map(|va| format!("{:?}", mm.space(space).map(|s| s.walk(mm.machine(), va))));
            let device = device_bytes(mm, model.mapping, file_page * PAGE_SIZE, PAGE_SIZE as usize);
            (cached, pte, device)
        });
        let mut again = vec![0; PAGE_SIZE as usize];
        let second = match va {
            Some(va) => {
                let page_va = VirtAddr::new(va.as_u64() & !(PAGE_SIZE - 1));
                self.space.enter();
                uaccess::read_bytes(page_va, &mut again);
                self.space.leave();
                "a second user load"
            }
            None => {
                let _ =
                    vm::with(|mm| mm.read_file(model.mapping, file_page * PAGE_SIZE, &mut again));
                "a second read_file"
            }
        };
        let differing = |bytes: &[u8]| bytes.iter().zip(oracle).filter(|(a, b)| a != b).count();
        format!(
            "page {file_page} of file {}: {}; pte {}; {second} reads {:#04x} ({} of 4096 bytes differ from the oracle, {} are zero); the backing store holds {:#04x} there ({} bytes differ from the oracle)",
            model.id,
            cached.unwrap_or_else(|| "not cached".into()),
            pte.unwrap_or_else(|| "-".into()),
            again[in_page],
            differing(&again),
            again.iter().filter(|&&b| b == 0).count(),
            device[in_page],
            differing(&device),
        )
    }

    fn user_write(&mut self) -> Step {
        let Some((r, offset, n)) = self.pick_range(true) else {
            return self.mmap();
        };
        let data = self.rng.bytes(n);
        self.space.enter();
        uaccess::write_bytes(self.regions[r].addr(offset), &data);
        self.space.leave();
        self.regions[r].store(&mut self.files, offset, &data);
        Ok(())
    }

    fn file_range(&mut self) -> (usize, u64, usize) {
        let file = self.rng.index(self.files.len());
        let offset = self.rng.below(FILE_BYTES);
        let n = 1 + self.rng.below(self.shape.io.min(FILE_BYTES - offset));
        (file, offset, n as usize)
    }

    fn read_file(&mut self) -> Step {
        let (file, offset, n) = self.file_range();
        self.verify_file_range(file, offset, n)
    }

    /// Reads `n` bytes of `file` at `offset` with `read_file`, in pieces of at most
    /// [`VERIFY_CHUNK`] bytes (so a whole-file check needs no file-sized buffer), and
    /// compares them with the oracle.
    fn verify_file_range(&mut self, file: usize, offset: u64, n: usize) -> Step {
        let mapping = self.files[file].mapping;
        let mut got = vec![0; n.min(VERIFY_CHUNK)];
        let mut done = 0;
        while done < n {
            let piece = &mut got[..(n - done).min(VERIFY_CHUNK)];
            let at = offset + done as u64;
            let read = vm::with(|mm| mm.read_file(mapping, at, piece))
                .map_err(|e| Failure::Mm("read_file", e))?;
            if read != piece.len() {
                return Err(Failure::Mm("read_file (short read)", MmError::BeyondEof));
            }
            self.totals.bytes_verified += read as u64;
            let want = &self.files[file].bytes[at as usize..at as usize + read];
            let result = compare(
                |_| "read_file of file".into(),
                u64::from(self.files[file].id),
                at,
                piece,
                want,
            );
            self.with_forensics(result, |_, at| Some((file, at / PAGE_SIZE, None)))?;
            done += read;
        }
        Ok(())
    }

    fn write_file(&mut self) -> Step {
        let (file, offset, n) = self.file_range();
        let data = self.rng.bytes(n);
        let mapping = self.files[file].mapping;
        let written = vm::with(|mm| mm.write_file(mapping, offset, &data))
            .map_err(|e| Failure::Mm("write_file", e))?;
        if written != n {
            return Err(Failure::Mm("write_file (short write)", MmError::BeyondEof));
        }
        self.files[file].bytes[offset as usize..offset as usize + n].copy_from_slice(&data);
        Ok(())
    }

    /// Locks a region. `make_pages_present` faults a writable region in for writing, so
    /// a private file region gets its copies now (as Linux's `mlock` breaks COW).
    fn mlock(&mut self) -> Step {
        let Some((r, _, _)) = self.pick_range(false) else {
            return self.mmap();
        };
        let (space, va, len) = (self.space.id(), self.regions[r].va, self.regions[r].len());
        let found_discarded = || state_counters().found_discarded;
        let before = found_discarded();
        vm::with(|mm| mm.mlock(space, va, len)).map_err(|e| Failure::Mm("mlock", e))?;
        self.totals.discards_met_by_mlock += found_discarded() - before;
        let region = &mut self.regions[r];
        if let (
            true,
            Kind::Private {
                file,
                first_page,
                copies,
            },
        ) = (region.writable, &mut region.kind)
        {
            for (page, copy) in copies.iter_mut().enumerate() {
                let at = ((*first_page + page as u64) * PAGE_SIZE) as usize;
                copy.get_or_insert_with(|| {
                    self.files[*file].bytes[at..at + PAGE_SIZE as usize].into()
                });
            }
        }
        Ok(())
    }

    fn munlock(&mut self) -> Step {
        let Some((r, _, _)) = self.pick_range(false) else {
            return self.mmap();
        };
        let (space, va, len) = (self.space.id(), self.regions[r].va, self.regions[r].len());
        vm::with(|mm| mm.munlock(space, va, len)).map_err(|e| Failure::Mm("munlock", e))
    }

    /// Drops the cached pages of a file from a random page on. The file keeps its size
    /// (the image fixes it), so the pages are written back first: the next access reads
    /// them from the backing store, and the oracle does not change.
    fn truncate(&mut self) -> Step {
        let file = self.rng.index(self.files.len());
        let from = self.rng.below(FILE_PAGES);
        let mapping = self.files[file].mapping;
        vm::with(|mm| {
            mm.sync_mapping(mapping)?;
            mm.truncate_inode_pages(mapping, from)
        })
        .map_err(|e| Failure::Mm("sync + truncate_inode_pages", e))
    }

    fn reclaim(&mut self) -> Step {
        let target = 1 + self.rng.below(64) as usize;
        vm::with(|mm| mm.reclaim(target));
        Ok(())
    }

    /// The host reclaims the frame of a cached page of a random scratch file, one the
    /// kernel made volatile if there is one (it is discarded), else any (it is paged out
    /// and must survive).
    fn host_discard(&mut self) -> Step {
        if !self.model {
            return self.reclaim();
        }
        let mapping = self.files[self.rng.index(self.files.len())].mapping;
        let (volatile, cached) = vm::with(|mm| {
            let cached: Vec<Pfn> = mm
                .mapping(mapping)
                .map(|m| m.cached().map(|(_, pfn)| pfn).collect())
                .unwrap_or_default();
            let volatile: Vec<Pfn> = cached
                .iter()
                .copied()
                .filter(|&pfn| {
                    mm.page(pfn)
                        .is_some_and(|p| last::is_discardable(p.last_state()))
                })
                .collect();
            (volatile, cached)
        });
        let pool = if volatile.is_empty() {
            cached
        } else {
            volatile
        };
        if pool.is_empty() {
            return Ok(());
        }
        let pfn = pool[self.rng.index(pool.len())];
        let outcome = host_reclaim(pfn);
        if outcome == Some(ReclaimOutcome::Discarded) {
            self.totals.host_discards_requested += 1;
        }
        Ok(())
    }

    fn sync(&mut self) -> Step {
        let mapping = self.files[self.rng.index(self.files.len())].mapping;
        vm::with(|mm| mm.sync_mapping(mapping)).map_err(|e| Failure::Mm("sync_mapping", e))
    }

    /// Verifies one whole file and one whole region.
    fn checkpoint(&mut self) -> Step {
        self.totals.checkpoints += 1;
        let file = self.rng.index(self.files.len());
        self.verify_file_range(file, 0, FILE_BYTES as usize)?;
        if !self.regions.is_empty() {
            let r = self.rng.index(self.regions.len());
            let len = self.regions[r].len() as usize;
            self.verify_region_range(r, 0, len)?;
        }
        Ok(())
    }

    /// Every region and every file, then the files again from the backing store alone:
    /// written back, dropped from the cache, read anew.
    fn verify_all(&mut self) -> Step {
        for r in 0..self.regions.len() {
            let len = self.regions[r].len() as usize;
            self.verify_region_range(r, 0, len)?;
        }
        for file in 0..self.files.len() {
            self.verify_file_range(file, 0, FILE_BYTES as usize)?;
        }
        let space = self.space.id();
        for region in core::mem::take(&mut self.regions) {
            vm::with(|mm| mm.munmap(space, region.va, region.len()))
                .map_err(|e| Failure::Mm("munmap", e))?;
        }
        for file in 0..self.files.len() {
            let mapping = self.files[file].mapping;
            vm::with(|mm| {
                mm.sync_mapping(mapping)?;
                mm.truncate_inode_pages(mapping, 0)
            })
            .map_err(|e| Failure::Mm("sync + truncate_inode_pages", e))?;
            self.verify_file_range(file, 0, FILE_BYTES as usize)?;
        }
        Ok(())
    }

    /// Puts the image's pattern back into every page of the files the workload changed
    /// and writes it back, so a disk that persists between runs holds the image again
    /// (xtask's disk check fails a run that leaves a file page changed).
    fn put_back_pattern(&mut self) -> Step {
        self.files
            .iter_mut()
            .try_for_each(FileModel::put_back_pattern)
    }

    /// With `mm.debug=1`: the memory manager's invariants, and its page states against
    /// the host model's.
    fn invariants(&mut self) -> Step {
        if !self.mm_debug {
            return Ok(());
        }
        self.totals.invariant_checks += 1;
        vm::with(|mm| {
            debug::check(mm)?;
            let host = with_model(|model, _| {
                debug::host_violations(mm, UsageState::Stable, |pfn| {
                    model.frame_state(pfn.as_u64()).map(|s| s.usage)
                })
            });
            match host.and_then(|v| v.into_iter().next()) {
                Some(v) => Err(v),
                None => Ok(()),
            }
        })
        .map_err(Failure::Invariant)
    }
}

/// Installs the host's discard schedule for the run; removed when dropped, so the other
/// suites see a quiet host.
struct ScheduleGuard;

impl ScheduleGuard {
    fn install(seed: u64, per_mille: u16) -> Self {
        let schedule = DiscardSchedule {
            seed,
            rate: DiscardRate::PerMille(per_mille),
            // The workload touches user memory, so the host lets hinted frames age a
            // little (liveness at any rate, see `MIN_AGE_ESSA`).
            min_age: MIN_AGE_ESSA,
        };
        with_model(|model, _| model.set_schedule(Some(schedule)));
        ScheduleGuard
    }
}

impl Drop for ScheduleGuard {
    fn drop(&mut self) {
        with_model(|model, _| model.set_schedule(None));
    }
}

ktest! {
    /// The random workload loses and corrupts no byte: every load, `read_file` and
    /// checkpoint matches the oracle, and at the end every region and every file does,
    /// also after the files were written back and read from the backing store anew.
    /// Guards the whole discard path (page_make_stable before use, page_discard, the
    /// discard fault and refault, dirty pages never volatile, writeback before reclaim,
    /// COW from a stable source) and, with `mm.debug=1`, every rule of `mm::debug`.
    fn random_workload_loses_no_byte(t) {
        if !needs_mm(t) { return; }
        // On several CPUs `random_workload_on_every_cpu_loses_no_byte` runs this workload
        // on each of them (as `cargo xtask stress --smp K` does).
        if kernel::arch::smp::online().len() > 1 {
            t.skip("several CPUs online: random_workload_on_every_cpu_loses_no_byte runs this workload on each");
            return;
        }
        let options = cmdline::current();
        let seed = t.seed();
        let ops = options.stress_ops.unwrap_or(DEFAULT_OPS);
        let rate = options.discard_rate.unwrap_or(DEFAULT_DISCARD_RATE);
        t.diag(format_args!(
            "seed {seed:#x} (replay: ktest.seed={seed:#x}), {ops} operations, host discard rate {rate}/1000 ESSAs, mm.debug={}",
            u8::from(options.mm_debug)
        ));
        // A small heap (small storage, see `kernel::layout`) gets a smaller workload.
        let heap = heap_free().saturating_sub(HEAP_SLACK);
        let drawn = Shape::draw(seed);
        let Some(shape) = drawn.fitted(heap, Share::ALL) else {
            t.skip("the heap is too small for the oracle of the smallest workload");
            return;
        };
        if shape.regions != drawn.regions || shape.region_pages != drawn.region_pages {
            t.diag(format_args!("workload shape reduced to fit {} KiB of free heap", heap >> 10));
        }
        let space = UserSpace::new().expect("user space");
        let mut stress = match Stress::new(&space, seed, 0, shape, Share::ALL) {
            Ok(s) => s,
            Err(e) => { check!(t, false, "{e}"); return; }
        };
        t.diag(format_args!(
            "workload shape: at most {} regions of at most {} pages, I/O up to {} bytes",
            shape.regions, shape.region_pages, shape.io
        ));
        let before: (MmStats, Counters) = (vm::with(|mm| mm.stats()), model_counters());
        let found_discarded_before = state_counters().found_discarded;
        let schedule = stress.model.then(|| ScheduleGuard::install(seed, rate));
        let mut result = stress.invariants();
        while result.is_ok() && stress.totals.ops < ops {
            result = stress.step().and_then(|()| stress.invariants());
        }
        let result = result.and_then(|()| stress.verify_all()).and_then(|()| stress.invariants());
        drop(schedule);
        let result = result.and_then(|()| stress.put_back_pattern());
        if let Err(failure) = &result {
            check!(t, false, "after operation {} of seed {seed:#x}: {failure}", stress.totals.ops);
        }
        let (mm_after, host_after) = (vm::with(|mm| mm.stats()), model_counters());
        let totals = &stress.totals;
        t.diag(format_args!(
            "ops {}, checkpoints {}, bytes verified {}, invariant checks {}",
            totals.ops, totals.checkpoints, totals.bytes_verified, totals.invariant_checks
        ));
        t.diag(format_args!(
            "host discards {} ({} on request), discard faults {}, page_discard {}, refaults (major faults) {}, reclaimed {}, writebacks {}",
            host_after.discards - before.1.discards,
            totals.host_discards_requested,
            host_after.discard_faults - before.1.discard_faults,
            mm_after.discards - before.0.discards,
            mm_after.major_faults - before.0.major_faults,
            mm_after.reclaimed - before.0.reclaimed,
            mm_after.writebacks - before.0.writebacks,
        ));
        // The schedule's requested rate against what reached hinted frames (xtask stress
        // reports both per seed).
        let essa = host_after.essa_total() - before.1.essa_total();
        let strikes = host_after.scheduled_strikes - before.1.scheduled_strikes;
        let reclaims = host_after.scheduled_reclaims - before.1.scheduled_reclaims;
        let volatile = host_after.scheduled_volatile_discards - before.1.scheduled_volatile_discards;
        t.diag(format_args!(
            "essa {essa}, scheduled strikes {strikes}, scheduled reclaims {reclaims}, scheduled volatile discards {volatile} (host rate requested {rate}/1000 ESSAs, achieved {}.{}/1000)",
            reclaims * 1000 / essa.max(1),
            reclaims * 10_000 / essa.max(1) % 10
        ));
        t.diag(format_args!(
            "discards found by make-stable {}, discards met by mlock {}, frames freed after an unseen discard {}",
            state_counters().found_discarded - found_discarded_before,
            totals.discards_met_by_mlock,
            mm_after.freed_discarded - before.0.freed_discarded
        ));
        if let Some(states) = vm::with(|mm| mm.hooks().states().map(|s| s.counters())) {
            t.diag(format_args!(
                "page states (whole boot): made volatile {}, refused {}, found discarded {}, ESSA {} (skipped {})",
                states.made_volatile, states.refused, states.found_discarded, states.essa, states.skipped
            ));
        }
        check_eq!(t, result.is_ok(), true);
    }
}

ktest! {
    /// The workload on every online CPU at once (up to one per scratch file), each CPU
    /// with its own address space, its own files and its own oracle, the host's discard
    /// schedule striking whichever CPU's ESSA it follows: no byte lost or corrupted on
    /// any CPU. The memory manager, the page-state layer and the host model are shared,
    /// so every discard fault, refault, reclaim and writeback races the other CPUs'.
    /// `ktest.stress_ops=` is the total over the CPUs; `cargo xtask stress --smp K`.
    fn random_workload_on_every_cpu_loses_no_byte(t) {
        if !needs_mm(t) { return; }
        let online = kernel::arch::smp::online().len();
        let options = cmdline::current();
        // On one CPU this is `random_workload_loses_no_byte` again: it runs there only
        // as the 1-CPU side of `cargo xtask bench stress` (`ktest.bench`).
        if online < 2 && !options.bench {
            t.skip("one CPU online: random_workload_loses_no_byte runs this workload");
            return;
        }
        let cpus = online.min(FILE_COUNT as usize);
        let seed = t.seed();
        let ops = options.stress_ops.unwrap_or(DEFAULT_OPS);
        let rate = options.discard_rate.unwrap_or(DEFAULT_DISCARD_RATE);
        t.diag(format_args!(
            "seed {seed:#x} (replay: cargo xtask run --smp {online} -- ktest.filter=cmma::stress.random_workload_on_every_cpu_loses_no_byte ktest.seed={seed:#x}), {ops} operations on {cpus} CPUs, host discard rate {rate}/1000 ESSAs, mm.debug={}",
            u8::from(options.mm_debug)
        ));
        let heap = heap_free().saturating_sub(HEAP_SLACK) / cpus;
        // The CPUs split the regions as they split the anonymous memory, so what they map
        // and lock at once stays what one CPU's workload maps and locks.
        let mut drawn = Shape::draw(seed);
        drawn.regions = (drawn.regions / cpus).max(2);
        let shapes: Option<Vec<Shape>> =
            (0..cpus).map(|i| drawn.fitted(heap, Share::of(i, cpus))).collect();
        let Some(shapes) = shapes else {
            t.skip("the heap is too small for the oracles of the smallest workload");
            return;
        };
        let before = (vm::with(|mm| mm.stats()), model_counters());
        let done_ops = AtomicU64::new(0);
        let verified = AtomicU64::new(0);
        let checkpoints = AtomicU64::new(0);
        let invariant_checks = AtomicU64::new(0);
        let met_by_mlock = AtomicU64::new(0);
        let found_discarded_before = state_counters().found_discarded;
        let schedule = (backend::current() == Backend::Model).then(|| ScheduleGuard::install(seed, rate));
        let start = kernel::arch::cpu::tod();
        t.on_cpus(cpus, |c| {
            let index = c.index();
            let share = Share::of(index, cpus);
            let per_cpu = ops / cpus as u64 + u64::from((index as u64) < ops % cpus as u64);
            let space = match UserSpace::new() {
                Ok(space) => space,
                Err(e) => { check!(c, false, "user space: {e:?}"); return; }
            };
            let mut stress = match Stress::new(&space, seed, index as u64, shapes[index], share) {
                Ok(s) => s,
                Err(e) => { check!(c, false, "{e}"); return; }
            };
            let mut result = stress.invariants();
            while result.is_ok() && stress.totals.ops < per_cpu {
                result = stress.step().and_then(|()| stress.invariants());
                c.progress();
            }
            let result = result
                .and_then(|()| stress.verify_all())
                .and_then(|()| stress.invariants())
                .and_then(|()| stress.put_back_pattern());
            if let Err(failure) = &result {
                check!(c, false, "files {:?}: after operation {} of seed {seed:#x} (stream {index}): {failure}",
                    share.files, stress.totals.ops);
            }
            let totals = &stress.totals;
            done_ops.fetch_add(totals.ops, Ordering::Relaxed);
            verified.fetch_add(totals.bytes_verified, Ordering::Relaxed);
            checkpoints.fetch_add(totals.checkpoints, Ordering::Relaxed);
            invariant_checks.fetch_add(totals.invariant_checks, Ordering::Relaxed);
            met_by_mlock.fetch_add(totals.discards_met_by_mlock, Ordering::Relaxed);
        });
        let elapsed_us = kernel::arch::cpu::tod_to_us(kernel::arch::cpu::tod() - start);
        drop(schedule);
        let (mm_after, host_after) = (vm::with(|mm| mm.stats()), model_counters());
        let ops_done = done_ops.load(Ordering::Relaxed);
        // The line `cargo xtask bench stress` reads.
        t.diag(format_args!(
            "bench: op=stress cpus={cpus} ops={ops_done} time_us={elapsed_us} ops_per_s={}",
            ops_done * 1_000_000 / elapsed_us.max(1)
        ));
        // The totals `cargo xtask stress` reads (as the one-CPU workload prints them).
        t.diag(format_args!(
            "ops {ops_done}, cpus {cpus}, checkpoints {}, bytes verified {}, invariant checks {}",
            checkpoints.load(Ordering::Relaxed),
            verified.load(Ordering::Relaxed),
            invariant_checks.load(Ordering::Relaxed)
        ));
        t.diag(format_args!(
            "discards found by make-stable {}, discards met by mlock {}, frames freed after an unseen discard {}",
            state_counters().found_discarded - found_discarded_before,
            met_by_mlock.load(Ordering::Relaxed),
            mm_after.freed_discarded - before.0.freed_discarded
        ));
        t.diag(format_args!(
            "host discards {}, discard faults {}, page_discard {}, refaults (major faults) {}, reclaimed {}, writebacks {}",
            host_after.discards - before.1.discards,
            host_after.discard_faults - before.1.discard_faults,
            mm_after.discards - before.0.discards,
            mm_after.major_faults - before.0.major_faults,
            mm_after.reclaimed - before.0.reclaimed,
            mm_after.writebacks - before.0.writebacks,
        ));
        let essa = host_after.essa_total() - before.1.essa_total();
        t.diag(format_args!(
            "essa {essa}, scheduled strikes {}, scheduled reclaims {}, scheduled volatile discards {}",
            host_after.scheduled_strikes - before.1.scheduled_strikes,
            host_after.scheduled_reclaims - before.1.scheduled_reclaims,
            host_after.scheduled_volatile_discards - before.1.scheduled_volatile_discards,
        ));
    }
}

/// The scratch file of [`invariant_checker_fires_on_broken_rules`]: the stress run's last.
const CHECKER_FILE: u32 = FIRST_FILE + FILE_COUNT - 1;

/// The rules `debug::check` reports now.
fn broken_rules() -> Vec<Rule> {
    vm::with(|mm| debug::violations(mm))
        .iter()
        .map(|v| v.rule)
        .collect()
}

ktest! {
    /// `mm.debug`'s checker fires on the machine when a rule is deliberately broken, and
    /// is quiet again once it is repaired: a page left locked, a reference dropped that
    /// a PTE still needs, and (against the host's own page state, read with ESSA) a dirty
    /// page made volatile. Guards `kernel::mm::debug` itself: a checker that never fires
    /// would let the stress test pass on a broken kernel.
    fn invariant_checker_fires_on_broken_rules(t) [NEEDS_ESSA] {
        if !needs_mm(t) { return; }
        if backend::current() == Backend::Off {
            t.skip("page hinting is off (cmma=off): no host state to compare");
            return;
        }
        let space = UserSpace::new().expect("user space");
        let mapping = vm::with(|mm| mm.open_file(CHECKER_FILE)).expect("scratch file");
        let va = vm::with(|mm| {
            mm.mmap(space.id(), None, PAGE_SIZE, VmFlags::READ | VmFlags::SHARED, MapSource::File { mapping, offset: 0 })
        })
        .expect("mmap");
        space.enter();
        let first = uaccess::read_u8(va);
        space.leave();
        check_eq!(t, broken_rules(), []);
        let Some(pfn) = cached(mapping, 0) else {
            check!(t, false, "the mapped page is not cached");
            return;
        };

        vm::with(|mm| mm.lock_page(pfn));
        let locked = broken_rules();
        vm::with(|mm| mm.unlock_page(pfn));
        check!(t, locked.contains(&Rule::TransientFlag), "page left locked: {locked:?}");

        // Page cache + PTE = 2 references; drop one behind the memory manager's back.
        vm::with(|mm| mm.put_page(pfn));
        let unreferenced = broken_rules();
        vm::with(|mm| mm.get_page(pfn));
        check!(t, unreferenced.contains(&Rule::RefcountTooLow), "reference dropped: {unreferenced:?}");
        check_eq!(t, broken_rules(), []);

        // A dirty page made volatile behind the page-state layer's back.
        let written = vm::with(|mm| mm.write_file(mapping, 0, &[!first]));
        check_eq!(t, written, Ok(1));
        let addr = pfn.addr().as_u64();
        let host_usage = |p: Pfn| (p == pfn).then(|| PageStateByte(essa(0, addr)).usage());
        let before = vm::with(|mm| debug::host_violations(mm, UsageState::Stable, host_usage));
        essa(3, addr);
        let after = vm::with(|mm| debug::host_violations(mm, UsageState::Stable, host_usage));
        essa(1, addr);
        let repaired = vm::with(|mm| debug::host_violations(mm, UsageState::Stable, host_usage));
        check_eq!(t, before.len(), 0);
        check!(t, after.iter().any(|v| v.rule == Rule::HostState && v.pfn == pfn), "dirty page volatile on the host: {after:?}");
        check_eq!(t, repaired.len(), 0);
        check_eq!(t, PageStateByte(essa(0, addr)).usage(), UsageState::Stable);
        if let Some(v) = after.first() {
            t.diag(format_args!("as reported: {v}"));
        }
        // The stress run's oracle expects the image's pattern in this file.
        let restored = vm::with(|mm| mm.write_file(mapping, 0, &[first]));
        check_eq!(t, restored, Ok(1));
        let synced = vm::with(|mm| mm.sync_mapping(mapping));
        check_eq!(t, synced, Ok(()));
        check_eq!(t, broken_rules(), []);
    }
}
