//! The kernel command line: `key` or `key=value` words separated by blanks.
//!
//! Unknown or malformed arguments never stop the run: each produces a [`Warning`] that
//! the kernel prints, and the argument falls back to its default.

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

/// How the kernel issues ESSA (`cmma=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum CmmaMode {
    /// Use the real instruction where it executes, else the host model.
    #[default]
    Auto,
    /// Never issue ESSA: no page hinting at all.
    Off,
    /// Always use the host model, even where ESSA executes.
    Model,
}

/// As written on the command line (`auto`, `off`, `model`).
impl core::fmt::Display for CmmaMode {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            CmmaMode::Auto => "auto",
            CmmaMode::Off => "off",
            CmmaMode::Model => "model",
        })
    }
}

/// Which device backs the memory manager's files (`mm.backing=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum BackingChoice {
    /// The virtio-blk disk where there is one, else the initrd: under QEMU and KVM
    /// the page cache waits for a real device; z/VM, LPAR and Hercules loads carry the
    /// initrd.
    #[default]
    Auto,
    /// The `-initrd` image in memory.
    Initrd,
    /// The virtio-blk disk (virtio-ccw).
    Virtio,
}

/// A deliberate failure requested on the command line (`panic=now`, `hang=now`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deliberate {
    /// Panic right after the banner.
    Panic,
    /// Spin forever right after the banner.
    Hang,
}

/// Everything the command line can set.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Options {
    /// `ktest.filter=GLOB[,GLOB...]`: run only matching `suite` or `suite.test` names.
    pub filter: Vec<String>,
    /// `ktest.skip=N`: do not run the first N selected tests (resume after a crash).
    pub skip: usize,
    /// `ktest.list`: print the plan and the test descriptors, run nothing.
    pub list: bool,
    /// `ktest.bench`: run the benchmarks (tests flagged `BENCH`) too.
    pub bench: bool,
    /// `ktest.inject=KIND@TEST[,KIND@TEST]`: faults to inject (panic, hang, pgm, garbage,
    /// exit) into the tests matching the `suite.test` glob.
    pub inject: Vec<Inject>,
    /// `ktest.seed=N`: seed for randomized tests (and for the test order under
    /// `ktest.shuffle`).
    pub seed: Option<u64>,
    /// `ktest.shuffle`: run the suites, and the tests inside each suite, in an order drawn
    /// from the seed instead of sorted, so tests that depend on what ran before surface.
    pub shuffle: bool,
    /// `ktest.selftest=fail,panic,pgm,hang`: enable the deliberately failing tests.
    pub selftest: Vec<String>,
    /// `cmma=auto|off|model`.
    pub cmma: CmmaMode,
    /// `panic=now` or `hang=now`.
    pub deliberate: Option<Deliberate>,
    /// `mm.pool=SIZE|all`: bytes of memory the memory manager may use for pages (K/M/G),
    /// or all the storage READ SCP INFO reports above the image, initrd, heap and tables.
    pub mm_pool: Option<u64>,
    /// `mm.debug=1`: check the memory manager's invariants at every test boundary and
    /// after every stress operation.
    pub mm_debug: bool,
    /// `mm.backing=initrd|virtio`: the memory manager's backing store.
    pub mm_backing: BackingChoice,
    /// `ktest.discard_rate=N`: per mille of ESSA executions after which the host model
    /// discards a frame during the stress test (0..=1000).
    pub discard_rate: Option<u16>,
    /// `ktest.stress_ops=N`: operations of the stress test.
    pub stress_ops: Option<u64>,
    /// `smp.fail=ADDR`: bring up the CPU with this address with a prefix beyond the end
    /// of storage, which SIGP SET PREFIX refuses (a test of the bring-up failure path).
    pub smp_fail: Option<u16>,
    /// Every argument as given, for the banner.
    pub raw: String,
}

/// A problem with one argument; the run goes on without it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Warning {
    /// The key is not one the kernel knows.
    Unknown(String),
    /// The key needs a value it did not get, or the value is malformed.
    BadValue {
        /// The argument's key.
        key: String,
        /// The value given (empty when missing).
        value: String,
        /// What would have been accepted.
        expected: &'static str,
    },
    /// The command line holds bytes that are not printable ASCII; they were dropped.
    NotAscii,
    /// The command line fills its whole area without a terminating NUL: the loader may
    /// have cut it off.
    Truncated(usize),
    /// The argument asks for more than there is; the kernel uses less.
    Capped {
        /// The argument's key.
        key: String,
        /// What was asked for.
        asked: String,
        /// What the kernel uses instead, and why.
        got: String,
    },
    /// The argument names something that does not exist, so it has no effect.
    NoEffect {
        /// The argument's key.
        key: String,
        /// Why it changes nothing.
        why: String,
    },
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Warning::Unknown(key) => write!(f, "unknown kernel argument '{key}' ignored"),
            Warning::BadValue {
                key,
                value,
                expected,
            } => write!(
                f,
                "bad value '{value}' for kernel argument '{key}' (expected {expected}); default kept"
            ),
            Warning::NotAscii => f.write_str(
                "command line holds non-printable or non-ASCII bytes; they were dropped",
            ),
            Warning::Truncated(len) => write!(
                f,
                "command line fills its whole {len}-byte area without an end; it may have been cut off"
            ),
            Warning::Capped { key, asked, got } => {
                write!(
                    f,
                    "kernel argument '{key}' asks for {asked}; capped to {got}"
                )
            }
            Warning::NoEffect { key, why } => {
                write!(f, "kernel argument '{key}' has no effect: {why}")
            }
        }
    }
}

/// The options of this boot, once [`set_current`] ran.
static CURRENT: spin::Once<Options> = spin::Once::new();

/// Records the parsed command line for code that runs later (test suites). The first
/// call wins.
pub fn set_current(options: &Options) {
    CURRENT.call_once(|| options.clone());
}

/// The options of this boot (the defaults before [`set_current`] ran).
pub fn current() -> Options {
    CURRENT.get().cloned().unwrap_or_default()
}

/// Parses the command-line area as the loader left it: up to the first NUL; an area
/// without one is parsed whole, with a warning.
pub fn parse_area(area: &[u8]) -> (Options, Vec<Warning>) {
    match area.iter().position(|&b| b == 0) {
        Some(end) => parse(&area[..end]),
        None => {
            let (options, mut warnings) = parse(area);
            warnings.insert(0, Warning::Truncated(area.len()));
            (options, warnings)
        }
    }
}

/// Parses the raw command line.
pub fn parse(raw: &[u8]) -> (Options, Vec<Warning>) {
    let mut warnings = Vec::new();
    let text: String = raw
        .iter()
        .filter_map(|&b| match b {
            b' '..=b'~' => Some(b as char),
            b'\t' | b'\n' | b'\r' => Some(' '),
            _ => None,
        })
        .collect();
    if raw
        .iter()
        .any(|&b| !matches!(b, b' '..=b'~' | b'\t' | b'\n' | b'\r'))
    {
        warnings.push(Warning::NotAscii);
    }
    let mut options = Options {
        raw: text.trim().into(),
        ..Options::default()
    };
    for word in text.split(' ').filter(|w| !w.is_empty()) {
        let (key, value) = match word.split_once('=') {
            Some((k, v)) => (k, Some(v)),
            None => (word, None),
        };
        if let Err(expected) = apply(&mut options, key, value) {
            warnings.push(match expected {
                None => Warning::Unknown(key.into()),
                Some(expected) => Warning::BadValue {
                    key: key.into(),
                    value: value.unwrap_or("").into(),
                    expected,
                },
            });
        }
    }
    (options, warnings)
}

/// Applies one argument. `Err(None)`: unknown key; `Err(Some(what))`: bad value.
fn apply(o: &mut Options, key: &str, value: Option<&str>) -> Result<(), Option<&'static str>> {
    let list = |v: Option<&str>, what| -> Result<Vec<String>, Option<&'static str>> {
        let items: Vec<String> = v
            .unwrap_or("")
            .split(',')
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect();
        if items.is_empty() {
            Err(Some(what))
        } else {
            Ok(items)
        }
    };
    match key {
        "ktest.filter" => o.filter = list(value, "GLOB[,GLOB...]")?,
        "ktest.skip" => o.skip = number(value).ok_or(Some("a decimal number"))? as usize,
        "ktest.seed" => o.seed = Some(number(value).ok_or(Some("a decimal or 0x number"))?),
        "ktest.list" | "ktest.bench" | "ktest.shuffle" => {
            let on = match value {
                None | Some("1") => true,
                Some("0") => false,
                _ => return Err(Some("no value, 0 or 1")),
            };
            match key {
                "ktest.list" => o.list = on,
                "ktest.bench" => o.bench = on,
                _ => o.shuffle = on,
            }
        }
        "ktest.inject" => {
            const WHAT: &str = "KIND@TEST[,KIND@TEST] with KIND panic, hang, pgm, garbage or exit";
            let mut injects = Vec::new();
            for item in list(value, WHAT)? {
                let (kind, target) = item.split_once('@').ok_or(Some(WHAT))?;
                let kind = Injection::from_name(kind).ok_or(Some(WHAT))?;
                if target.is_empty() {
                    return Err(Some(WHAT));
                }
                injects.push(Inject {
                    kind,
                    target: target.into(),
                });
            }
            o.inject = injects;
        }
        "ktest.selftest" => {
            const KNOWN: [&str; 5] = ["fail", "panic", "pgm", "hang", "all"];
            let items = list(value, "a list of fail,panic,pgm,hang,all")?;
            if items.iter().any(|i| !KNOWN.contains(&i.as_str())) {
                return Err(Some("a list of fail,panic,pgm,hang,all"));
            }
            o.selftest = items;
        }
        "cmma" => {
            o.cmma = match value {
                Some("auto") => CmmaMode::Auto,
                Some("off") => CmmaMode::Off,
                Some("model") => CmmaMode::Model,
                _ => return Err(Some("auto, off or model")),
            }
        }
        "mm.pool" => {
            o.mm_pool = Some(match value {
                // All storage above the image, initrd, heap and page tables.
                Some("all") => u64::MAX,
                _ => size(value).ok_or(Some("a size such as 4M or 512K, or all"))?,
            })
        }
        "mm.backing" => {
            o.mm_backing = match value {
                Some("auto") => BackingChoice::Auto,
                Some("initrd") => BackingChoice::Initrd,
                Some("virtio") => BackingChoice::Virtio,
                _ => return Err(Some("auto, initrd or virtio")),
            }
        }
        "mm.debug" => match value {
            None | Some("1") => o.mm_debug = true,
            Some("0") => o.mm_debug = false,
            _ => return Err(Some("no value, 0 or 1")),
        },
        "ktest.discard_rate" => {
            let rate = number(value).filter(|&n| n <= 1000);
            o.discard_rate = Some(rate.ok_or(Some("per mille, 0 to 1000"))? as u16);
        }
        "ktest.stress_ops" => {
            o.stress_ops = Some(number(value).ok_or(Some("a decimal or 0x number"))?)
        }
        "smp.fail" => {
            let address = number(value).and_then(|n| u16::try_from(n).ok());
            o.smp_fail = Some(address.ok_or(Some("a CPU address (decimal or 0x)"))?);
        }
        "panic" | "hang" => match value {
            Some("now") => {
                o.deliberate = Some(if key == "panic" {
                    Deliberate::Panic
                } else {
                    Deliberate::Hang
                })
            }
            _ => return Err(Some("now")),
        },
        _ => return Err(None),
    }
    Ok(())
}

/// A byte count with an optional K, M or G suffix, at least one page.
fn size(value: Option<&str>) -> Option<u64> {
    let v = value?;
    let (digits, shift) = match v.as_bytes().last()? {
        b'K' | b'k' => (&v[..v.len() - 1], 10),
        b'M' | b'm' => (&v[..v.len() - 1], 20),
        b'G' | b'g' => (&v[..v.len() - 1], 30),
        _ => (v, 0),
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1 << shift).filter(|&b| b >= 4096)
}

fn number(value: Option<&str>) -> Option<u64> {
    let v = value?;
    match v.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => v.parse().ok(),
    }
}

/// A fault `ktest.inject=kind@TEST` injects instead of running a test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Injection {
    /// The test panics.
    Panic,
    /// The test never returns.
    Hang,
    /// The test takes an unexpected program interruption.
    Pgm,
    /// Console garbage instead of the test's result line.
    Garbage,
    /// The kernel ends the run (`EXIT: STATUS=1`) in the middle of the test.
    Exit,
}

impl Injection {
    /// The injection named `name` (`panic`, `hang`, `pgm`, `garbage`, `exit`).
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "panic" => Injection::Panic,
            "hang" => Injection::Hang,
            "pgm" => Injection::Pgm,
            "garbage" => Injection::Garbage,
            "exit" => Injection::Exit,
            _ => return None,
        })
    }
}

/// One requested injection: `kind` into the tests matching the `suite.test` glob.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inject {
    /// What to inject.
    pub kind: Injection,
    /// Glob over `suite.test`.
    pub target: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_line_gives_defaults() {
        let (o, w) = parse(b"");
        assert_eq!(o, Options::default());
        assert!(w.is_empty());
    }

    #[test]
    fn known_arguments_are_applied() {
        let (o, w) = parse(
            b"ktest.filter=mm::*,cmma::essa.get ktest.skip=3 ktest.seed=0x10 ktest.list ktest.bench=0 ktest.shuffle cmma=model panic=now",
        );
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.filter, ["mm::*", "cmma::essa.get"]);
        assert_eq!(o.skip, 3);
        assert_eq!(o.seed, Some(16));
        assert!(o.list);
        assert!(!o.bench);
        assert!(o.shuffle);
        assert!(!parse(b"ktest.shuffle=0").0.shuffle);
        assert_eq!(o.cmma, CmmaMode::Model);
        assert_eq!(o.deliberate, Some(Deliberate::Panic));
    }

    #[test]
    fn unknown_and_malformed_arguments_warn_and_keep_defaults() {
        let (o, w) = parse(b"some=arg ktest.skip=abc cmma=maybe ktest.filter= hang=later");
        assert_eq!(o.skip, 0);
        assert_eq!(o.cmma, CmmaMode::Auto);
        assert!(o.filter.is_empty());
        assert_eq!(o.deliberate, None);
        assert_eq!(w.len(), 5);
        assert_eq!(w[0], Warning::Unknown("some".into()));
        assert!(matches!(&w[1], Warning::BadValue { key, .. } if key == "ktest.skip"));
        assert!(w[1].to_string().contains("expected a decimal number"));
    }

    #[test]
    fn injections_name_a_kind_and_a_test() {
        let (o, w) = parse(b"ktest.inject=panic@mm::vma.split,garbage@cmma::*");
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(o.inject.len(), 2);
        assert_eq!(o.inject[0].kind, Injection::Panic);
        assert_eq!(o.inject[1].target, "cmma::*");
        for bad in [
            &b"ktest.inject=boom@x"[..],
            b"ktest.inject=panic",
            b"ktest.inject=panic@",
            b"ktest.inject=",
        ] {
            let (o, w) = parse(bad);
            assert!(o.inject.is_empty());
            assert_eq!(w.len(), 1);
        }
    }

    #[test]
    fn backing_store_is_chosen_at_boot_unless_one_is_asked_for() {
        assert_eq!(parse(b"").0.mm_backing, BackingChoice::Auto);
        assert_eq!(parse(b"mm.backing=auto").0.mm_backing, BackingChoice::Auto);
        assert_eq!(
            parse(b"mm.backing=virtio").0.mm_backing,
            BackingChoice::Virtio
        );
        assert_eq!(
            parse(b"mm.backing=initrd").0.mm_backing,
            BackingChoice::Initrd
        );
        for bad in [&b"mm.backing"[..], b"mm.backing=disk", b"mm.backing="] {
            let (o, w) = parse(bad);
            assert_eq!(o.mm_backing, BackingChoice::Auto);
            assert!(
                matches!(&w[..], [Warning::BadValue { key, .. }] if key == "mm.backing"),
                "{w:?}"
            );
        }
    }

    #[test]
    fn pool_sizes_take_suffixes() {
        assert_eq!(parse(b"mm.pool=4M").0.mm_pool, Some(4 << 20));
        assert_eq!(parse(b"mm.pool=512k").0.mm_pool, Some(512 << 10));
        assert_eq!(parse(b"mm.pool=8192").0.mm_pool, Some(8192));
        assert_eq!(parse(b"mm.pool=all").0.mm_pool, Some(u64::MAX));
        for bad in [
            &b"mm.pool=1"[..],
            b"mm.pool=xM",
            b"mm.pool=",
            b"mm.pool=99999999999G",
        ] {
            let (o, w) = parse(bad);
            assert_eq!(o.mm_pool, None);
            assert_eq!(w.len(), 1, "{}", core::str::from_utf8(bad).unwrap());
        }
    }

    #[test]
    fn the_area_ends_at_the_first_nul_or_warns() {
        let mut area = [b' '; 32];
        area[..10].copy_from_slice(b"ktest.list");
        area[10] = 0;
        area[11..15].copy_from_slice(b"junk");
        let (o, w) = parse_area(&area);
        assert!(o.list && w.is_empty(), "{w:?}");
        let full = [b'x'; 32];
        let (_, w) = parse_area(&full);
        assert_eq!(w[0], Warning::Truncated(32));
        assert!(w[0].to_string().contains("cut off"));
    }

    #[test]
    fn non_ascii_bytes_are_dropped_with_a_warning() {
        let (o, w) = parse(b"ktest.skip=2 \xff\x01ktest.list");
        assert_eq!(w, [Warning::NotAscii]);
        assert_eq!(o.skip, 2);
        assert!(o.list);
    }

    #[test]
    fn stress_arguments_are_parsed_and_checked() {
        let (o, w) = parse(b"mm.debug ktest.discard_rate=25 ktest.stress_ops=0x100");
        assert!(w.is_empty(), "{w:?}");
        assert!(o.mm_debug);
        assert_eq!(o.discard_rate, Some(25));
        assert_eq!(o.stress_ops, Some(256));
        assert!(parse(b"mm.debug=1").0.mm_debug);
        assert!(!parse(b"mm.debug=1 mm.debug=0").0.mm_debug);
        assert_eq!(parse(b"ktest.discard_rate=1000").0.discard_rate, Some(1000));
        for bad in [
            &b"mm.debug=yes"[..],
            b"ktest.discard_rate=1001",
            b"ktest.discard_rate=",
            b"ktest.stress_ops=many",
        ] {
            let (o, w) = parse(bad);
            assert_eq!(w.len(), 1, "{}", core::str::from_utf8(bad).unwrap());
            assert_eq!(
                (o.mm_debug, o.discard_rate, o.stress_ops),
                (false, None, None)
            );
        }
    }

    #[test]
    fn current_is_the_default_until_set() {
        // Host tests share one process: only this test sets it.
        assert_eq!(current(), Options::default());
        let (o, _) = parse(b"mm.debug");
        set_current(&o);
        set_current(&Options::default());
        assert!(current().mm_debug, "the first call wins");
    }

    #[test]
    fn selftest_accepts_only_known_names() {
        assert_eq!(
            parse(b"ktest.selftest=fail,pgm").0.selftest,
            ["fail", "pgm"]
        );
        assert_eq!(parse(b"ktest.selftest=fail,boom").1.len(), 1);
    }

    #[test]
    fn smp_fail_takes_a_cpu_address() {
        assert_eq!(parse(b"smp.fail=2").0.smp_fail, Some(2));
        assert_eq!(parse(b"smp.fail=0x1f").0.smp_fail, Some(0x1f));
        for bad in [&b"smp.fail"[..], b"smp.fail=cpu1", b"smp.fail=70000"] {
            let (o, w) = parse(bad);
            assert_eq!(o.smp_fail, None);
            assert!(matches!(&w[..], [Warning::BadValue { .. }]), "{w:?}");
        }
    }
}
