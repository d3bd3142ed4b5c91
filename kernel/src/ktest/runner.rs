//! Selects, orders and runs tests, printing KTAP v1 (see [`super::ktap`]).
//!
//! The runner is machine-independent: an [`Executor`] runs one test body (on s390x under
//! a program-interruption recovery scope) and reads the clock, so the whole output format
//! is unit-tested on the host.

use super::ktap::{self, Counts, Directive, SUBTEST_INDENT};
use super::test::{Outcome, Test};
use super::{KTest, flags, glob};
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;
use rand_xoshiro::Xoshiro256PlusPlus;
use rand_xoshiro::rand_core::{Rng, SeedableRng};

/// What the command line asks of the runner.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// `ktest.filter` globs (empty: all).
    pub filter: Vec<String>,
    /// Do not run the first N selected tests, in run order (resume after a crash).
    pub skip: usize,
    /// Only list the tests.
    pub list: bool,
    /// Seed for randomized tests, and for the order under `shuffle`.
    pub seed: u64,
    /// Run suites and tests in an order drawn from `seed` instead of sorted.
    pub shuffle: bool,
    /// The kernel command line as given, for the KTAP header (replaying a run).
    pub command_line: String,
    /// Enabled self-tests (`fail`, `panic`, `pgm`, `hang`, `all`).
    pub selftest: Vec<String>,
    /// Run the benchmarks (tests flagged `BENCH`) too.
    pub bench: bool,
    /// Faults to inject into named tests (`ktest.inject=`), to test the harness.
    pub inject: Vec<Inject>,
}

pub use crate::cmdline::{Inject, Injection};

/// Console noise that looks almost like KTAP: control characters, a broken result line,
/// a line without an end. The harness must not take any of it for a result.
const GARBAGE: &str = "\u{1}\u{7}\u{1b}[31m#\u{7f}~\nnt ok 1 ##\u{0}\n    not ok x y\nKTAP versio\n    okay 3\n\u{2}\u{3}ok? ok!";

/// Where a test body runs.
pub trait Executor {
    /// Runs `test` with context `t`. `Err(reason)` when it ended abnormally (an
    /// unexpected program interruption); `position` is where the test stands in the
    /// output (suite number, test number) for crash reports.
    fn execute(
        &mut self,
        test: &KTest,
        t: &mut Test<'_>,
        position: (usize, usize),
    ) -> Result<(), String>;
    /// A microsecond clock.
    fn now_us(&mut self) -> u64;
    /// Injects `kind` (never `Garbage`, which the runner prints itself) where `test`
    /// would run; returns like [`Executor::execute`] if the injection returns at all.
    fn inject(
        &mut self,
        kind: Injection,
        test: &KTest,
        t: &mut Test<'_>,
        position: (usize, usize),
    ) -> Result<(), String>;
}

/// Result of a whole run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Counts over every test that ran.
    pub counts: Counts,
    /// Tests selected (including those passed over by `ktest.skip`).
    pub selected: usize,
    /// The run did not start: the command line asked for something impossible (a
    /// `ktest.filter` glob that matches no test). Reported as `Bail out! usage: ...`.
    pub usage_error: bool,
}

impl Totals {
    /// The kvm-unit-tests-style exit status: 1 all passed, 3 failures (or a run that could
    /// not start), 77 all skipped.
    pub fn exit_status(&self) -> u32 {
        if self.counts.fail > 0 || self.usage_error {
            3
        } else if self.counts.pass == 0 {
            77
        } else {
            1
        }
    }
}

/// Whether `test` may run at all under `o`, filter aside: self-tests and benchmarks only
/// when asked for.
fn eligible(test: &KTest, o: &Options) -> bool {
    let selftest_on = |name: &str| o.selftest.iter().any(|s| s == name || s == "all");
    (!test.has(flags::SELFTEST) || selftest_on(test.name)) && (!test.has(flags::BENCH) || o.bench)
}

/// Whether a test this boot runs (the selected ones from `ktest.skip` on) needs the
/// memory manager or the disk: all of them flagged [`flags::NO_MM`] need neither, and a
/// listing runs none.
pub fn needs_memory_manager(tests: &[KTest], o: &Options) -> bool {
    if o.list {
        return false;
    }
    let selected = select(tests, o);
    selected[o.skip.min(selected.len())..]
        .iter()
        .any(|t| !t.has(flags::NO_MM))
}

/// Salt for the order's random stream, so it is not the stream a test draws from the same
/// seed.
const ORDER_SALT: u64 = 0x6f72_6465_725f_6b74;

/// The selected tests in run order: sorted by suite, then source position; under
/// `ktest.shuffle` the suites, and the tests inside each suite, in an order drawn from the
/// seed (a suite's tests stay together, as KTAP nests them). The same seed, filter and
/// kernel give the same order, which `ktest.skip` relies on to resume after a crash.
pub fn select<'t>(tests: &'t [KTest], o: &Options) -> Vec<&'t KTest> {
    let mut selected: Vec<&KTest> = tests
        .iter()
        .filter(|t| glob::selects(&o.filter, t.suite, t.name))
        .filter(|t| eligible(t, o))
        .collect();
    selected
        .sort_by(|a, b| (a.suite, a.file, a.line, a.name).cmp(&(b.suite, b.file, b.line, b.name)));
    if !o.shuffle {
        return selected;
    }
    let mut rng = Xoshiro256PlusPlus::seed_from_u64(o.seed ^ ORDER_SALT);
    let mut groups: Vec<Vec<&KTest>> = suites(&selected).iter().map(|s| s.to_vec()).collect();
    shuffle(&mut groups, &mut rng);
    for group in &mut groups {
        shuffle(group, &mut rng);
    }
    groups.concat()
}

/// Fisher-Yates with `rng`.
fn shuffle<T>(items: &mut [T], rng: &mut Xoshiro256PlusPlus) {
    for i in (1..items.len()).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        items.swap(i, j);
    }
}

/// The `ktest.filter` globs that select no test the run may run (a typo must not pass as
/// an empty, green run).
pub fn unmatched_globs<'o>(tests: &[KTest], o: &'o Options) -> Vec<&'o str> {
    o.filter
        .iter()
        .filter(|glob| {
            !tests.iter().any(|t| {
                eligible(t, o) && glob::selects(core::slice::from_ref(*glob), t.suite, t.name)
            })
        })
        .map(String::as_str)
        .collect()
}

/// Options that select nothing: `ktest.skip` beyond the plan, a `ktest.inject` target that
/// matches no selected test. They would otherwise pass silently; the kernel prints each as a
/// `# warning:` line before the run.
pub fn option_warnings(tests: &[KTest], o: &Options) -> Vec<String> {
    let selected = select(tests, o);
    let mut out = Vec::new();
    if o.skip > selected.len() {
        out.push(alloc::format!(
            "ktest.skip={} is beyond the plan of {} selected tests: none runs",
            o.skip,
            selected.len()
        ));
    }
    for inject in &o.inject {
        let matched = selected
            .iter()
            .any(|t| glob::matches(&inject.target, &alloc::format!("{}.{}", t.suite, t.name)));
        if !matched {
            out.push(alloc::format!(
                "ktest.inject={:?}@{} matches no selected test: nothing is injected",
                inject.kind,
                inject.target
            ));
        }
    }
    out
}

/// Groups consecutive tests of the same suite.
fn suites<'a, 't>(tests: &'a [&'t KTest]) -> Vec<&'a [&'t KTest]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=tests.len() {
        if i == tests.len() || tests[i].suite != tests[start].suite {
            if i > start {
                out.push(&tests[start..i]);
            }
            start = i;
        }
    }
    out
}

/// The diagnostics that identify a run and let the host replay it: seed, filter, skip,
/// order and command line, then one descriptor per selected test, in run order:
/// `# test: <suite>.<name> file=<file>:<line> flags=<list>`. The descriptors name every
/// test of the plan, also those `ktest.skip` passes over, so the host knows what a crash
/// left unrun.
fn identify(out: &mut dyn Write, o: &Options, selected: &[&KTest]) {
    let filter = if o.filter.is_empty() {
        String::from("*")
    } else {
        o.filter.join(",")
    };
    let order = if o.shuffle { "shuffled" } else { "sorted" };
    let _ = writeln!(
        out,
        "# zhint: seed={} filter={} skip={} order={order}",
        o.seed, filter, o.skip
    );
    let _ = writeln!(out, "# command line: {}", o.command_line);
    for t in selected {
        let names: Vec<&str> = flags::NAMES
            .iter()
            .enumerate()
            .filter(|(bit, _)| t.flags & (1 << bit) != 0)
            .map(|(_, n)| *n)
            .collect();
        let _ = writeln!(
            out,
            "# test: {}.{} file={}:{} flags={}",
            t.suite,
            t.name,
            t.file,
            t.line,
            if names.is_empty() {
                String::from("-")
            } else {
                names.join(",")
            }
        );
    }
}

/// `ktest.list`: the descriptors of the tests a run would run, in its order, and nothing
/// else (no KTAP header: a listing is not a test run).
pub fn list(tests: &[KTest], o: &Options, out: &mut dyn Write) -> Totals {
    let selected = select(tests, o);
    identify(out, o, &selected);
    let _ = writeln!(
        out,
        "# plan: {} suites, {} tests",
        suites(&selected).len(),
        selected.len()
    );
    Totals {
        selected: selected.len(),
        ..Totals::default()
    }
}

/// Runs the selected tests from `o.skip` on and prints one KTAP v1 document: the header,
/// the descriptors of every selected test, then a plan that counts exactly the suites this
/// boot runs, each with a plan of exactly the tests it runs, numbered from 1 (a resumed
/// boot reports only what it runs, so its document stands on its own).
pub fn run(tests: &[KTest], o: &Options, out: &mut dyn Write, exec: &mut dyn Executor) -> Totals {
    let selected = select(tests, o);
    let _ = ktap::version(out, "");
    identify(out, o, &selected);
    let mut totals = Totals {
        selected: selected.len(),
        ..Totals::default()
    };
    let unmatched = unmatched_globs(tests, o);
    if !unmatched.is_empty() {
        let mut names: Vec<&str> = tests
            .iter()
            .filter(|t| eligible(t, o))
            .map(|t| t.suite)
            .collect();
        names.sort_unstable();
        names.dedup();
        let _ = writeln!(
            out,
            "Bail out! usage: ktest.filter {} matches no test (suites: {}; self-tests need ktest.selftest=, benchmarks ktest.bench)",
            unmatched.join(","),
            names.join(", ")
        );
        totals.usage_error = true;
        return totals;
    }
    if o.skip > selected.len() {
        let _ = ktap::diagnostic(
            out,
            "",
            format_args!(
                "warning: ktest.skip={} passes over all {} selected tests",
                o.skip,
                selected.len()
            ),
        );
    }
    let to_run = &selected[o.skip.min(selected.len())..];
    let suites = suites(to_run);
    let _ = ktap::plan(out, "", suites.len());
    let run_start = exec.now_us();
    for (suite_index, suite) in suites.iter().enumerate() {
        let name = suite[0].suite;
        let _ = ktap::version(out, SUBTEST_INDENT);
        let _ = ktap::subtest(out, SUBTEST_INDENT, name);
        let _ = ktap::plan(out, SUBTEST_INDENT, suite.len());
        let mut counts = Counts::default();
        for (i, test) in suite.iter().enumerate() {
            let full = alloc::format!("{}.{}", test.suite, test.name);
            let inject = o
                .inject
                .iter()
                .find(|j| glob::matches(&j.target, &full))
                .map(|j| j.kind);
            counts.add(run_one(
                test,
                (suite_index + 1, i + 1),
                o.seed,
                inject,
                out,
                exec,
            ));
        }
        let _ = ktap::totals(out, "", name, counts);
        let directive = if counts.total() > 0 && counts.skip == counts.total() {
            Directive::Skip("all tests skipped")
        } else {
            Directive::None
        };
        let _ = ktap::result(out, "", counts.fail == 0, suite_index + 1, name, directive);
        totals.counts.add(counts);
    }
    let _ = ktap::totals(out, "", "Totals", totals.counts);
    // Guest time of the whole run; with the per-test `time_us` it gives the framework's
    // own cost per test (xtask bench).
    let run_us = exec.now_us().saturating_sub(run_start);
    let _ = ktap::diagnostic(out, "", format_args!("run_us: {run_us}"));
    totals
}

fn run_one(
    test: &KTest,
    position: (usize, usize),
    seed: u64,
    inject: Option<Injection>,
    out: &mut dyn Write,
    exec: &mut dyn Executor,
) -> Counts {
    if inject == Some(Injection::Garbage) {
        // No result line for this test: the harness must notice it is missing.
        let _ = writeln!(out, "{GARBAGE}");
        return Counts {
            fail: 1,
            ..Counts::default()
        };
    }
    let start = exec.now_us();
    let (outcome, error) = {
        let mut t = Test::new(out, SUBTEST_INDENT, seed);
        let error = match inject {
            Some(kind) => exec.inject(kind, test, &mut t, position),
            None => exec.execute(test, &mut t, position),
        }
        .err();
        (t.outcome(), error)
    };
    let elapsed = exec.now_us().saturating_sub(start);
    let _ = ktap::diagnostic(out, SUBTEST_INDENT, format_args!("time_us: {elapsed}"));
    let outcome = match error {
        Some(reason) => Outcome::Error(reason),
        None => outcome,
    };
    let xfail = test.has(flags::XFAIL);
    let n = position.1;
    let (ok, directive, counts) = match (&outcome, xfail) {
        (Outcome::Pass, false) => (
            true,
            Directive::None,
            Counts {
                pass: 1,
                ..Counts::default()
            },
        ),
        (Outcome::Pass, true) => {
            let _ = ktap::diagnostic(
                out,
                SUBTEST_INDENT,
                format_args!("xfail: expected to fail, but passed"),
            );
            (
                false,
                Directive::None,
                Counts {
                    fail: 1,
                    ..Counts::default()
                },
            )
        }
        (Outcome::Fail(_), true) => (
            false,
            Directive::Xfail("expected failure"),
            Counts {
                pass: 1,
                ..Counts::default()
            },
        ),
        (Outcome::Fail(_), false) => (
            false,
            Directive::None,
            Counts {
                fail: 1,
                ..Counts::default()
            },
        ),
        (Outcome::Skip(reason), _) => (
            true,
            Directive::Skip(reason),
            Counts {
                skip: 1,
                ..Counts::default()
            },
        ),
        (Outcome::Error(reason), _) => (
            false,
            Directive::Error(reason),
            Counts {
                fail: 1,
                ..Counts::default()
            },
        ),
    };
    let _ = ktap::result(out, SUBTEST_INDENT, ok, n, test.name, directive);
    counts
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    fn pass(_: &mut Test<'_>) {}
    fn fail(t: &mut Test<'_>) {
        crate::check_eq!(t, 1, 2);
    }
    fn skip(t: &mut Test<'_>) {
        t.skip("no ESSA");
    }
    fn error(_: &mut Test<'_>) {}

    const fn d(
        suite: &'static str,
        name: &'static str,
        line: u32,
        flags: u32,
        run: fn(&mut Test<'_>),
    ) -> KTest {
        KTest {
            suite,
            name,
            file: "t.rs",
            line,
            flags,
            run,
        }
    }

    static TESTS: [KTest; 7] = [
        d("b::two", "fails", 20, 0, fail),
        d("a::one", "second", 11, 0, skip),
        d("a::one", "first", 10, 0, pass),
        d("b::two", "xfails", 21, flags::XFAIL, fail),
        d("b::two", "errors", 22, 0, error),
        d("c::selftest", "panic", 30, flags::SELFTEST, pass),
        d("d::bench", "lookup", 40, flags::BENCH, pass),
    ];

    struct Fake;
    impl Executor for Fake {
        fn execute(
            &mut self,
            test: &KTest,
            t: &mut Test<'_>,
            _: (usize, usize),
        ) -> Result<(), String> {
            if test.name == "errors" {
                return Err("program interruption 0x11 at 0x1000".to_string());
            }
            (test.run)(t);
            Ok(())
        }
        fn now_us(&mut self) -> u64 {
            0
        }
        fn inject(
            &mut self,
            kind: Injection,
            _: &KTest,
            _: &mut Test<'_>,
            _: (usize, usize),
        ) -> Result<(), String> {
            Err(alloc::format!("injected {kind:?}"))
        }
    }

    fn output(o: &Options) -> (String, Totals) {
        let mut s = String::new();
        let totals = run(&TESTS, o, &mut s, &mut Fake);
        // Strip the check location, which depends on this file's line numbers.
        let s = s
            .lines()
            .map(|l| l.split(" at kernel/").next().unwrap())
            .collect::<Vec<_>>()
            .join("\n");
        (s, totals)
    }

    #[test]
    fn only_a_boot_whose_tests_all_carry_no_mm_does_without_the_memory_manager() {
        static SOME: [KTest; 3] = [
            d("a::console", "one", 10, flags::NO_MM, pass),
            d(
                "a::console",
                "two",
                11,
                flags::NO_MM | flags::EXPECTS_PGM,
                pass,
            ),
            d("b::mm", "reads", 20, 0, pass),
        ];
        let with = |filter: &[&str], skip: usize, list: bool| Options {
            filter: filter.iter().map(|f| f.to_string()).collect(),
            skip,
            list,
            ..Options::default()
        };
        assert!(needs_memory_manager(&SOME, &with(&[], 0, false)));
        assert!(!needs_memory_manager(&SOME, &with(&["a::*"], 0, false)));
        assert!(!needs_memory_manager(
            &SOME,
            &with(&["a::console.two"], 0, false)
        ));
        assert!(needs_memory_manager(
            &SOME,
            &with(&["*.two", "b::*"], 0, false)
        ));
        // A resumed boot runs only what follows the skipped tests; a listing runs none.
        assert!(needs_memory_manager(&SOME, &with(&[], 2, false)));
        assert!(!needs_memory_manager(&SOME, &with(&[], 3, false)));
        assert!(!needs_memory_manager(&SOME, &with(&[], 0, true)));
    }

    #[test]
    fn full_run_is_sorted_ktap_with_totals() {
        let (s, totals) = output(&Options {
            seed: 5,
            command_line: "ktest.seed=5".into(),
            ..Options::default()
        });
        let expected = "KTAP version 1
# zhint: seed=5 filter=* skip=0 order=sorted
# command line: ktest.seed=5
# test: a::one.first file=t.rs:10 flags=-
# test: a::one.second file=t.rs:11 flags=-
# test: b::two.fails file=t.rs:20 flags=-
# test: b::two.xfails file=t.rs:21 flags=xfail
# test: b::two.errors file=t.rs:22 flags=-
1..2
    KTAP version 1
    # Subtest: a::one
    1..2
    # time_us: 0
    ok 1 first
    # time_us: 0
    ok 2 second # SKIP no ESSA
# a::one: pass:1 fail:0 skip:1 total:2
ok 1 a::one
    KTAP version 1
    # Subtest: b::two
    1..3
    # check_eq failed: 1 == 2: left: 1, right: 2
    # time_us: 0
    not ok 1 fails
    # check_eq failed: 1 == 2: left: 1, right: 2
    # time_us: 0
    not ok 2 xfails # XFAIL expected failure
    # time_us: 0
    not ok 3 errors # ERROR program interruption 0x11 at 0x1000
# b::two: pass:1 fail:2 skip:0 total:3
not ok 2 b::two
# Totals: pass:2 fail:2 skip:1 total:5
# run_us: 0";
        assert_eq!(s, expected);
        assert_eq!(
            totals.counts,
            Counts {
                pass: 2,
                fail: 2,
                skip: 1
            }
        );
        assert_eq!(totals.exit_status(), 3);
    }

    #[test]
    fn a_resumed_boot_reports_exactly_the_tests_it_runs() {
        let o = Options {
            skip: 3,
            selftest: alloc::vec!["panic".into()],
            ..Options::default()
        };
        let (s, totals) = output(&o);
        assert_eq!(totals.selected, 6);
        assert!(
            s.contains("# test: a::one.first file=t.rs:10"),
            "the descriptors still name the whole plan: {s}"
        );
        assert!(!s.contains("# Subtest: a::one"), "{s}");
        assert!(!s.contains("ok 1 fails"), "{s}");
        let run = s
            .split("\n1..2\n")
            .nth(1)
            .expect("a plan of the 2 suites it runs");
        assert!(
            run.starts_with("    KTAP version 1\n    # Subtest: b::two\n    1..2\n"),
            "{s}"
        );
        assert!(
            run.contains("    not ok 1 xfails # XFAIL"),
            "numbered from 1: {s}"
        );
        assert!(run.contains("    not ok 2 errors # ERROR"), "{s}");
        assert!(run.contains("\nnot ok 1 b::two\n"), "{s}");
        assert!(run.contains("    ok 1 panic\n"), "{s}");
        assert!(run.contains("\nok 2 c::selftest\n"), "{s}");
        assert_eq!(totals.counts.total(), 3);

        let (s, totals) = output(&Options {
            skip: 9,
            ..Options::default()
        });
        assert!(
            s.contains("# warning: ktest.skip=9 passes over all 5 selected tests\n1..0\n"),
            "{s}"
        );
        assert_eq!(totals.counts.total(), 0);
    }

    fn names(selected: &[&KTest]) -> Vec<String> {
        selected
            .iter()
            .map(|t| alloc::format!("{}.{}", t.suite, t.name))
            .collect()
    }

    /// Enough tests in enough suites that two seeds giving one order would be a fluke.
    fn many() -> Vec<KTest> {
        const SUITES: [&str; 6] = ["s::a", "s::b", "s::c", "s::d", "s::e", "s::f"];
        const NAMES: [&str; 5] = ["t0", "t1", "t2", "t3", "t4"];
        let mut tests = Vec::new();
        for (i, suite) in SUITES.iter().enumerate() {
            for (j, name) in NAMES.iter().enumerate() {
                tests.push(d(suite, name, (i * 10 + j) as u32, 0, pass));
            }
        }
        tests
    }

    #[test]
    fn a_shuffled_order_is_a_permutation_drawn_from_the_seed_with_suites_kept_together() {
        let tests = many();
        let sorted = names(&select(&tests, &Options::default()));
        let shuffled = |seed| {
            names(&select(
                &tests,
                &Options {
                    seed,
                    shuffle: true,
                    ..Options::default()
                },
            ))
        };
        let one = shuffled(1);
        assert_eq!(one, shuffled(1), "the same seed gives the same order");
        assert_ne!(one, shuffled(2), "another seed gives another order");
        assert_ne!(one, sorted);
        let mut again = one.clone();
        again.sort();
        assert_eq!(again, sorted, "every test exactly once");
        let suite_order: Vec<&str> = one.iter().map(|n| n.split('.').next().unwrap()).collect();
        let mut runs = suite_order.clone();
        runs.dedup();
        assert_eq!(runs.len(), 6, "each suite's tests stay together: {one:?}");
        assert_ne!(
            runs,
            ["s::a", "s::b", "s::c", "s::d", "s::e", "s::f"],
            "the suites move"
        );
        assert!(
            (1..=8).any(|seed| {
                let order = shuffled(seed);
                let first: Vec<&String> = order.iter().filter(|n| n.starts_with("s::a.")).collect();
                first.windows(2).any(|w| w[0] > w[1])
            }),
            "the tests inside a suite move too"
        );
    }

    #[test]
    fn a_shuffled_resume_runs_exactly_the_rest_of_the_same_order() {
        let tests = many();
        let options = |skip| Options {
            seed: 77,
            shuffle: true,
            skip,
            ..Options::default()
        };
        let order = names(&select(&tests, &options(0)));
        for skip in [0, 1, 4, 5, 13, 29, 30] {
            let mut s = String::new();
            run(&tests, &options(skip), &mut s, &mut Fake);
            let ran: Vec<String> = s
                .lines()
                .filter_map(|l| l.strip_prefix("    ok "))
                .map(|l| l.split_once(' ').unwrap().1.to_string())
                .collect();
            let suite_of = |l: &str| l.strip_prefix("    # Subtest: ").map(str::to_string);
            let mut suite = String::new();
            let mut full = Vec::new();
            for line in s.lines() {
                if let Some(name) = suite_of(line) {
                    suite = name;
                } else if let Some(rest) = line.strip_prefix("    ok ") {
                    full.push(alloc::format!(
                        "{suite}.{}",
                        rest.split_once(' ').unwrap().1
                    ));
                }
            }
            assert_eq!(full, order[skip..], "skip={skip}");
            assert_eq!(ran.len(), 30 - skip);
            let listed: Vec<&str> = s
                .lines()
                .filter_map(|l| l.strip_prefix("# test: "))
                .map(|l| l.split(' ').next().unwrap())
                .collect();
            assert_eq!(listed, order, "every boot names the whole order");
        }
    }

    #[test]
    fn a_filter_glob_that_matches_nothing_is_a_usage_error_naming_the_suites() {
        let (s, totals) = output(&Options {
            filter: alloc::vec!["a::*".into(), "nosuch::*".into()],
            ..Options::default()
        });
        assert!(totals.usage_error);
        assert_eq!(totals.exit_status(), 3);
        assert!(
            s.contains(
                "Bail out! usage: ktest.filter nosuch::* matches no test (suites: a::one, b::two;"
            ),
            "{s}"
        );
        assert!(!s.contains("1.."), "nothing runs: {s}");
        let (_, totals) = output(&Options {
            filter: alloc::vec!["c::selftest".into()],
            ..Options::default()
        });
        assert!(
            totals.usage_error,
            "a self-test that is not enabled runs nowhere"
        );
    }

    #[test]
    fn filter_and_exit_status() {
        let o = Options {
            filter: alloc::vec!["a::one.first".into()],
            ..Options::default()
        };
        let (_, totals) = output(&o);
        assert_eq!(
            totals.counts,
            Counts {
                pass: 1,
                fail: 0,
                skip: 0
            }
        );
        assert_eq!(totals.exit_status(), 1);
        let o = Options {
            filter: alloc::vec!["a::one.second".into()],
            ..Options::default()
        };
        assert_eq!(output(&o).1.exit_status(), 77);
        let o = Options {
            filter: alloc::vec!["nothing".into()],
            ..Options::default()
        };
        assert_eq!(
            output(&o).1.exit_status(),
            3,
            "a filter that matches nothing"
        );
    }

    #[test]
    fn injections_replace_the_named_test_only() {
        let inject = alloc::vec![
            Inject {
                kind: Injection::Pgm,
                target: "a::one.first".into()
            },
            Inject {
                kind: Injection::Garbage,
                target: "b::two.fails".into()
            },
        ];
        let (s, totals) = output(&Options {
            inject,
            ..Options::default()
        });
        assert!(s.contains("not ok 1 first # ERROR injected Pgm"), "{s}");
        assert!(!s.contains("not ok 1 fails"), "{s}");
        assert!(s.contains("nt ok 1 ##"), "{s}");
        assert!(s.contains("not ok 2 xfails # XFAIL"), "{s}");
        assert_eq!(totals.counts.fail, 3);
        assert_eq!(Injection::from_name("exit"), Some(Injection::Exit));
        assert_eq!(Injection::from_name("boom"), None);
    }

    #[test]
    fn benchmarks_run_only_when_asked() {
        let (s, _) = output(&Options::default());
        assert!(!s.contains("d::bench"), "{s}");
        let (s, totals) = output(&Options {
            bench: true,
            filter: alloc::vec!["d::*".into()],
            ..Options::default()
        });
        assert!(s.contains("ok 1 lookup"), "{s}");
        assert_eq!(totals.counts.pass, 1);
    }

    #[test]
    fn options_that_select_nothing_are_warned_about() {
        let quiet = Options {
            skip: 5,
            inject: alloc::vec![Inject {
                kind: Injection::Hang,
                target: "b::two.*".into()
            }],
            ..Options::default()
        };
        assert_eq!(option_warnings(&TESTS, &quiet), Vec::<String>::new());
        let loud = Options {
            skip: 6,
            inject: alloc::vec![Inject {
                kind: Injection::Pgm,
                target: "nothing.here".into()
            }],
            ..Options::default()
        };
        assert_eq!(
            option_warnings(&TESTS, &loud),
            [
                "ktest.skip=6 is beyond the plan of 5 selected tests: none runs",
                "ktest.inject=Pgm@nothing.here matches no selected test: nothing is injected"
            ]
        );
    }

    #[test]
    fn list_prints_descriptors_in_run_order_and_is_no_ktap_run() {
        let mut s = String::new();
        let totals = list(&TESTS, &Options::default(), &mut s);
        assert_eq!(totals.selected, 5);
        assert!(
            s.contains("# test: b::two.xfails file=t.rs:21 flags=xfail\n"),
            "{s}"
        );
        assert!(
            s.contains("# test: a::one.first file=t.rs:10 flags=-\n"),
            "{s}"
        );
        assert!(s.ends_with("# plan: 2 suites, 5 tests\n"), "{s}");
        assert!(!s.contains("KTAP version") && !s.contains("\n1.."), "{s}");
    }
}
